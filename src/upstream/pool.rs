//! Upstream connections per broker, opened on first use. One pool holds fairlead's own
//! connections (Metadata, log checks: one per broker); others hold the connections that carry
//! what clients' requests fairlead reroutes or replays, shared by every client connection of one
//! identity (see `reroutes`).
//!
//! A broker answers the requests of one connection one at a time, in order: a shared connection
//! would make every client wait behind another's produce in purgatory or fetch long-poll. So a
//! shared pool keeps up to [`Limits::per_broker`] connections to each broker and hands out the
//! one with the fewest requests in flight, opening another while every one is busy and the bound
//! is not reached; a connection unused for [`Limits::idle_close`] is closed.
//!
//! A producer's batches are another matter (issue 20): two applications of one pod must never
//! share a broker connection, or one's replay, waiting for its replicas, holds up the other's
//! batches. A request for a producer names it ([`Owner`]), and the pool gives each producer
//! connections of its own: the one it used last, else one nobody uses, else a new one while under
//! the bound, else one another producer used but no longer does (nothing in flight, no lane
//! holding it). Only when every connection carries another producer's batches right now is one
//! opened past the bound: at most one more per producer busy with that broker at that moment, so
//! the bound holds for everything but the producers replaying at once, and the idle close takes
//! the extra ones back. Requests of no producer (fetches, offsets, coordinators) keep off the
//! producers' connections while the bound allows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Upstream, UpstreamConfig, UpstreamError};
use crate::metrics::RerouteConnection;

/// How many connections a pool keeps to one broker, and for how long unused.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_broker: usize,
    /// None: kept until the broker leaves the cluster or the connection fails.
    pub idle_close: Option<Duration>,
}

impl Limits {
    /// fairlead's own requests: one connection per broker, kept.
    pub const OWN: Limits = Limits {
        per_broker: 1,
        idle_close: None,
    };
}

pub struct Pool {
    cfg: UpstreamConfig,
    /// Where its connections come from: made by fairlead, or lent (see [`Lenders`]).
    source: Source,
    limits: Limits,
    /// Counted in `fairlead_upstream_reroute_connections` (a shared reroute pool).
    counted: bool,
    conns: Mutex<HashMap<i32, Vec<Held>>>,
    /// One connect at a time per node, so a burst of reroutes opens one connection, not many.
    connecting: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
    /// Nodes whose last connection attempt failed (for the admin view).
    unreachable: Mutex<HashMap<i32, String>>,
    /// The version of the cluster's broker list this pool was last pruned at.
    brokers_version: AtomicU64,
}

/// A connection in the pool.
struct Held {
    up: Arc<Upstream>,
    /// When it was last handed out, had requests in flight or was held outside the pool (a
    /// lane's batches): the idle clock starts after that.
    last_used: Instant,
    /// The producer it was last handed to, if any.
    owner: Option<Owner>,
    _gauge: Option<RerouteConnection>,
}

impl Held {
    /// Something uses it now: requests in flight, or held outside the pool (a lane, a job).
    fn busy(&self) -> bool {
        self.up.in_flight() > 0 || Arc::strong_count(&self.up) > 1
    }
}

/// A producer, for the pool to keep its batches on connections of its own: an opaque tag (a
/// hash of the producer's identity, `router::lanes::Producer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(pub u64);

impl Pool {
    /// fairlead's own connections: one per broker.
    pub fn new(cfg: UpstreamConfig) -> Self {
        Pool::with_source(cfg, Source::Connect, Limits::OWN, false)
    }

    /// A pool of connections shared by clients for what fairlead reroutes or replays, within
    /// `limits` (see `reroutes`).
    pub fn shared(cfg: UpstreamConfig, limits: Limits) -> Self {
        Pool::with_source(cfg, Source::Connect, limits, true)
    }

    /// A pool whose connections are those a principal's clients authenticated themselves.
    pub fn borrowing(cfg: UpstreamConfig, lenders: Arc<Lenders>, principal: PrincipalKey) -> Self {
        Pool::with_source(cfg, Source::Borrow(lenders, principal), Limits::OWN, false)
    }

    fn with_source(cfg: UpstreamConfig, source: Source, limits: Limits, counted: bool) -> Self {
        Pool {
            cfg,
            source,
            limits: Limits {
                per_broker: limits.per_broker.max(1),
                ..limits
            },
            counted,
            conns: Mutex::default(),
            connecting: Mutex::default(),
            unreachable: Mutex::default(),
            brokers_version: AtomicU64::new(0),
        }
    }

    /// A live connection to `node` at `addr` for `owner`'s requests (see the module header):
    /// for a producer, one of its own; for anything else an idle one, else a new one while under
    /// the bound, else the least busy.
    pub async fn get(
        &self,
        node: i32,
        addr: &str,
        owner: Option<Owner>,
    ) -> Result<Arc<Upstream>, UpstreamError> {
        if let Some(ready) = self.ready(node, addr, owner) {
            return ready;
        }
        let gate = self
            .connecting
            .lock()
            .unwrap()
            .entry(node)
            .or_default()
            .clone();
        let _g = gate.lock().await;
        if let Some(up) = self.pick(node, addr, owner) {
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
        self.conns
            .lock()
            .unwrap()
            .entry(node)
            .or_default()
            .push(Held {
                up: up.clone(),
                last_used: Instant::now(),
                owner,
                _gauge: self.counted.then(RerouteConnection::kept),
            });
        Ok(up)
    }

    /// A connection to `node` at `addr` that can be had without waiting: `Some(Ok)` one is
    /// open, `Some(Err)` none may be had (no connection of the principal to lend), `None` one
    /// must be opened first (see [`Pool::get`]).
    pub fn ready(
        &self,
        node: i32,
        addr: &str,
        owner: Option<Owner>,
    ) -> Option<Result<Arc<Upstream>, UpstreamError>> {
        if let Source::Borrow(lenders, principal) = &self.source {
            return Some(
                lenders
                    .lend(principal, node, addr)
                    .ok_or(UpstreamError::NotAsClient { node }),
            );
        }
        self.pick(node, addr, owner).map(Ok)
    }

    /// A connection to `node` at `addr` to use without opening one (None: open another; see the
    /// module header). Closed connections, those near the end of their SASL session and those to
    /// an old address of the node are forgotten here (their requests in flight still get their
    /// answers).
    fn pick(&self, node: i32, addr: &str, owner: Option<Owner>) -> Option<Arc<Upstream>> {
        let mut conns = self.conns.lock().unwrap();
        let held = conns.get_mut(&node)?;
        held.retain(|h| h.up.usable() && h.up.addr() == addr);
        let under_bound = held.len() < self.limits.per_broker;
        let i = match owner {
            Some(_) => for_producer(held, owner, under_bound)?,
            None => for_others(held, under_bound)?,
        };
        let h = &mut held[i];
        h.last_used = Instant::now();
        if owner.is_some() {
            h.owner = owner;
        }
        Some(h.up.clone())
    }

    /// Closes the connections unused for the pool's idle time: nothing in flight, not held
    /// by anything but the pool (a lane with batches in flight holds its connection), not
    /// handed out since. Dropped here, a connection closes (its writer ends and shuts it down).
    pub fn close_idle(&self) {
        let Some(idle) = self.limits.idle_close else {
            return;
        };
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap();
        for held in conns.values_mut() {
            held.retain_mut(|h| {
                if h.up.is_closed() {
                    return false;
                }
                if h.busy() {
                    h.last_used = now;
                }
                now.duration_since(h.last_used) < idle
            });
        }
        conns.retain(|_, held| !held.is_empty());
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

    /// Connections in the pool (open or not).
    pub fn len(&self) -> usize {
        self.conns.lock().unwrap().values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The connection with the fewest requests in flight among those `pick` accepts.
fn least_busy(held: &[Held], pick: impl Fn(&Held) -> bool) -> Option<usize> {
    (0..held.len())
        .filter(|&i| pick(&held[i]))
        .min_by_key(|&i| held[i].up.in_flight())
}

/// A producer's connection: an idle one of its own, else an idle one no producer uses, else (a
/// new one while under the bound) the least busy of its own, else one another producer used but
/// no longer uses (nothing in flight, no lane holding it), the longest unused. None: open one.
fn for_producer(held: &[Held], owner: Option<Owner>, under_bound: bool) -> Option<usize> {
    let mine = least_busy(held, |h| h.owner == owner);
    if let Some(i) = mine.filter(|&i| held[i].up.in_flight() == 0) {
        return Some(i);
    }
    if let Some(i) = least_busy(held, |h| h.owner.is_none() && !h.busy()) {
        return Some(i);
    }
    if under_bound {
        return None;
    }
    mine.or_else(|| {
        (0..held.len())
            .filter(|&i| !held[i].busy())
            .min_by_key(|&i| held[i].last_used)
    })
}

/// A connection for a request of no producer: the least busy of those no producer uses, if it is
/// idle or the bound is reached; past the bound, the least busy of all. None: open one.
fn for_others(held: &[Held], under_bound: bool) -> Option<usize> {
    if under_bound {
        return least_busy(held, |h| h.owner.is_none()).filter(|&i| held[i].up.in_flight() == 0);
    }
    least_busy(held, |h| h.owner.is_none()).or_else(|| least_busy(held, |_| true))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::tests::{broker, request};

    fn shared(per_broker: usize, idle: Duration) -> Pool {
        Pool::shared(
            UpstreamConfig::plain(Duration::from_secs(1), 1 << 20),
            Limits {
                per_broker,
                idle_close: Some(idle),
            },
        )
    }

    #[tokio::test]
    async fn an_idle_connection_is_reused_a_busy_one_gets_company_up_to_the_bound() {
        let (addr, _b) = broker().await;
        let pool = shared(2, Duration::from_secs(60));
        let a = pool.get(1, &addr, None).await.unwrap();
        assert_eq!(
            pool.get(1, &addr, None).await.unwrap().id(),
            a.id(),
            "idle: reused"
        );
        let _wait_a = a.send(request(), true).unwrap();
        let b = pool.get(1, &addr, None).await.unwrap();
        assert_ne!(b.id(), a.id(), "a is busy: another is opened");
        let _wait_b = b.send(request(), true).unwrap();
        let _wait_b2 = b.send(request(), true).unwrap();
        let c = pool.get(1, &addr, None).await.unwrap();
        assert_eq!(c.id(), a.id(), "at the bound: the least busy");
        assert_eq!(pool.len(), 2);
    }

    const A: Option<Owner> = Some(Owner(1));
    const B: Option<Owner> = Some(Owner(2));
    const C: Option<Owner> = Some(Owner(3));

    #[tokio::test]
    async fn producers_never_share_a_connection_while_either_uses_it() {
        let (addr, _b) = broker().await;
        let pool = shared(2, Duration::from_secs(60));
        let a = pool.get(1, &addr, A).await.unwrap();
        let b = pool.get(1, &addr, B).await.unwrap();
        assert_ne!(
            a.id(),
            b.id(),
            "idle or not, another producer's is not taken"
        );
        assert_eq!(
            pool.get(1, &addr, A).await.unwrap().id(),
            a.id(),
            "A's own again"
        );
        assert_eq!(
            pool.get(1, &addr, B).await.unwrap().id(),
            b.id(),
            "B's own again"
        );
        // A producer whose connection is busy gets another while under the bound, as any
        // request does; at the bound it stays on its own.
        let bigger = shared(3, Duration::from_secs(60));
        let a1 = bigger.get(1, &addr, A).await.unwrap();
        let _wait_a1 = a1.send(request(), true).unwrap();
        let a2 = bigger.get(1, &addr, A).await.unwrap();
        assert_ne!(a1.id(), a2.id(), "busy, under the bound: another");
        let _wait_a2 = a2.send(request(), true).unwrap();
        let _b1 = bigger.get(1, &addr, B).await.unwrap();
        let _wait_a2b = a2.send(request(), true).unwrap();
        let again = bigger.get(1, &addr, A).await.unwrap();
        assert_eq!(again.id(), a1.id(), "at the bound: its own least busy");
        let fetch = pool.get(1, &addr, None).await.unwrap();
        assert!(
            fetch.id() == a.id() || fetch.id() == b.id(),
            "at the bound, a request of no producer takes the least busy"
        );
        drop(fetch);
        // At the bound, with both in use (A's held by its lane, B's with a request in flight):
        // a third producer gets a connection of its own, past the bound.
        let _wait_b = b.send(request(), true).unwrap();
        drop(b);
        let c = pool.get(1, &addr, C).await.unwrap();
        assert!(
            c.id() != a.id() && pool.len() == 3,
            "past the bound, not shared"
        );
        // Once A and C let go of theirs, the bound is back in force: a fourth producer takes
        // the one unused longest (A's) rather than open a fourth, and never B's, still busy.
        let a_id = a.id();
        drop((a, c));
        let d = pool.get(1, &addr, Some(Owner(4))).await.unwrap();
        assert_eq!(pool.len(), 3, "reused, not opened");
        assert_eq!(d.id(), a_id, "the one unused longest");
        assert_eq!(
            pool.get(1, &addr, Some(Owner(4))).await.unwrap().id(),
            a_id,
            "now D's own"
        );
    }

    #[tokio::test]
    async fn requests_of_no_producer_keep_off_producers_connections_under_the_bound() {
        let (addr, _b) = broker().await;
        let pool = shared(3, Duration::from_secs(60));
        let a = pool.get(1, &addr, A).await.unwrap();
        let fetch = pool.get(1, &addr, None).await.unwrap();
        assert_ne!(fetch.id(), a.id(), "under the bound: one of its own");
        let _poll = fetch.send(request(), true).unwrap();
        // A producer takes a connection no producer uses only while it is idle.
        let b = pool.get(1, &addr, B).await.unwrap();
        assert!(b.id() != fetch.id() && b.id() != a.id());
        assert_eq!(pool.len(), 3);
    }

    #[tokio::test]
    async fn only_a_connection_nobody_uses_is_closed_when_idle() {
        let (addr, _b) = broker().await;
        let idle = Duration::from_millis(50);
        let pool = shared(4, idle);
        let cfg = UpstreamConfig::plain(Duration::from_secs(1), 1 << 20);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let up = Upstream::connect(1, &addr, &cfg, false).await.unwrap();
            ids.push(up.id());
            pool.conns.lock().unwrap().entry(1).or_default().push(Held {
                up,
                last_used: Instant::now(),
                owner: None,
                _gauge: None,
            });
        }
        let held = |i: usize| pool.conns.lock().unwrap()[&1][i].up.clone();
        let busy = held(0);
        let _wait = busy.send(request(), true).unwrap();
        // Held outside the pool, as a lane holds its connection while its batches are in flight.
        let pinned = held(1);
        drop(busy);
        tokio::time::sleep(idle * 2).await;
        pool.close_idle();
        let left = |pool: &Pool| -> Vec<u64> {
            pool.conns.lock().unwrap()[&1]
                .iter()
                .map(|h| h.up.id())
                .collect()
        };
        assert_eq!(
            left(&pool),
            ids[..2],
            "the unused one is closed, not the others"
        );
        drop(pinned);
        pool.close_idle();
        assert_eq!(
            left(&pool),
            ids[..2],
            "idle from its release on, not before"
        );
        tokio::time::sleep(idle * 2).await;
        pool.close_idle();
        assert_eq!(left(&pool), ids[..1], "released, then idle: closed");
    }
}
