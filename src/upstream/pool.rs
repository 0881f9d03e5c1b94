//! Upstream connections per broker, opened on first use. One pool holds fairlead's own
//! connections (Metadata, log checks); each client connection has another for the requests it
//! has rerouted or replayed, so no client waits behind another's request: a broker answers the
//! requests of one connection one at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::{Upstream, UpstreamConfig, UpstreamError};

pub struct Pool {
    cfg: UpstreamConfig,
    /// Where its connections come from: made by fairlead, or lent (see [`Lenders`]).
    source: Source,
    conns: Mutex<HashMap<i32, Arc<Upstream>>>,
    /// One connect at a time per node, so a burst of reroutes opens one connection, not many.
    connecting: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    /// Nodes whose last connection attempt failed (for the admin view).
    unreachable: Mutex<HashMap<i32, String>>,
    /// The version of the cluster's broker list this pool was last pruned at.
    brokers_version: AtomicU64,
}

impl Pool {
    pub fn new(cfg: UpstreamConfig) -> Self {
        Pool::with_source(cfg, Source::Connect)
    }

    /// A pool whose connections are those a principal's clients authenticated themselves.
    pub fn borrowing(cfg: UpstreamConfig, lenders: Arc<Lenders>, principal: PrincipalKey) -> Self {
        Pool::with_source(cfg, Source::Borrow(lenders, principal))
    }

    fn with_source(cfg: UpstreamConfig, source: Source) -> Self {
        Pool {
            cfg,
            source,
            conns: Mutex::default(),
            connecting: Mutex::default(),
            unreachable: Mutex::default(),
            brokers_version: AtomicU64::new(0),
        }
    }

    /// A live connection to `node` at `addr`, connecting if needed.
    pub async fn get(&self, node: i32, addr: &str) -> Result<Arc<Upstream>, UpstreamError> {
        if let Source::Borrow(lenders, principal) = &self.source {
            return lenders
                .lend(principal, node, addr)
                .ok_or(UpstreamError::NotAsClient { node });
        }
        if let Some(up) = self.live(node, addr) {
            return Ok(up);
        }
        let gate = self
            .connecting
            .lock()
            .unwrap()
            .entry(node)
            .or_default()
            .clone();
        let _g = gate.lock().await;
        if let Some(up) = self.live(node, addr) {
            return Ok(up);
        }
        let up = match Upstream::connect(node, addr, &self.cfg, false).await {
            Ok(up) => up,
            Err(e) => {
                self.unreachable.lock().unwrap().insert(node, e.to_string());
                return Err(e);
            }
        };
        self.unreachable.lock().unwrap().remove(&node);
        self.conns.lock().unwrap().insert(node, up.clone());
        Ok(up)
    }

    /// A connection to `node` at `addr` that can be had without waiting: `Some(Ok)` one is
    /// open, `Some(Err)` none may be had (no connection of the principal to lend), `None` one
    /// must be opened first (see [`Pool::get`]).
    pub fn ready(&self, node: i32, addr: &str) -> Option<Result<Arc<Upstream>, UpstreamError>> {
        if let Source::Borrow(lenders, principal) = &self.source {
            return Some(
                lenders
                    .lend(principal, node, addr)
                    .ok_or(UpstreamError::NotAsClient { node }),
            );
        }
        self.live(node, addr).map(Ok)
    }

    /// The current connection to `node` if it is open and still points at `addr`.
    pub fn live(&self, node: i32, addr: &str) -> Option<Arc<Upstream>> {
        let conns = self.conns.lock().unwrap();
        conns
            .get(&node)
            .filter(|u| u.usable() && u.addr() == addr)
            .cloned()
    }

    /// Why the last attempt to connect to `node` failed, if it did.
    pub fn unreachable(&self, node: i32) -> Option<String> {
        self.unreachable.lock().unwrap().get(&node).cloned()
    }

    /// The broker list version the pool was last pruned at (see `retain`).
    pub fn brokers_version(&self) -> u64 {
        self.brokers_version.load(Ordering::Acquire)
    }

    /// Keeps only the connections to nodes that `keep` names (the others left the cluster),
    /// noting the broker list `version` they were checked against. A dropped connection closes
    /// once the requests in flight on it are answered.
    pub fn retain(&self, version: u64, keep: impl Fn(i32) -> bool) {
        self.conns.lock().unwrap().retain(|node, _| keep(*node));
        self.unreachable
            .lock()
            .unwrap()
            .retain(|node, _| keep(*node));
        self.brokers_version.store(version, Ordering::Release);
    }

    /// Nodes with a connection in the pool (open or not).
    pub fn nodes(&self) -> Vec<i32> {
        let mut n: Vec<i32> = self.conns.lock().unwrap().keys().copied().collect();
        n.sort_unstable();
        n
    }
}

enum Source {
    Connect,
    Borrow(Arc<Lenders>, PrincipalKey),
}

/// A principal as the brokers know it: (mechanism, name).
pub type PrincipalKey = (String, String);

/// The broker connections clients authenticated themselves (SASL passthrough), by principal
/// and broker: where fairlead cannot open a connection as a client (a SCRAM exchange cannot be
/// replayed), these are the only ones that may carry its rerouted requests. A lent connection
/// carries its owner's requests too; one whose owner is re-authenticating (KIP-368) is not
/// lent until that ends (`Upstream::send` refuses then).
#[derive(Default)]
pub struct Lenders {
    by: Mutex<HashMap<PrincipalKey, HomesByNode>>,
}

/// One principal's authenticated connections, by broker node.
type HomesByNode = HashMap<i32, Vec<Weak<Upstream>>>;

impl Lenders {
    /// `up`, to broker `node`, is authenticated as `principal`.
    pub fn register(&self, principal: &PrincipalKey, up: &Arc<Upstream>) {
        let mut by = self.by.lock().unwrap();
        let homes = by
            .entry(principal.clone())
            .or_default()
            .entry(up.node())
            .or_default();
        homes.retain(|w| w.strong_count() > 0);
        if !homes
            .iter()
            .any(|w| w.upgrade().is_some_and(|h| h.id() == up.id()))
        {
            homes.push(Arc::downgrade(up));
        }
    }

    /// An open connection to `node` at `addr` authenticated as `principal`, the least busy.
    pub fn lend(&self, principal: &PrincipalKey, node: i32, addr: &str) -> Option<Arc<Upstream>> {
        let mut by = self.by.lock().unwrap();
        let homes = by.get_mut(principal)?.get_mut(&node)?;
        homes.retain(|w| w.strong_count() > 0);
        homes
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|u| u.usable() && u.lendable() && u.addr() == addr)
            .min_by_key(|u| u.in_flight())
    }
}
