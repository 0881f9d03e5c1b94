//! The ports clients connect to: the bootstrap port, and one port per broker node.
//!
//! Broker node N is served at `node_port_base + N` (by default the bootstrap port + 1 + N), a
//! fixed mapping, so several fairlead replicas agree on it without sharing state. A port is
//! bound the moment fairlead first hears of its broker, synchronously, before the response
//! naming it reaches a client; the bound socket then goes to the accept loops
//! (`listener::run`) over a channel that `server` creates and hands to both sides. Brokers that
//! leave are simply no longer advertised.
//!
//! A broker port that cannot be bound (another process holds it) is tried again with back-off
//! (100 ms doubling to 5 s) for as long as the broker is in the cluster, logged at each failure
//! (once a minute once the back-off is at its cap), counted in
//! `fairlead_broker_port_bind_failures_total` and `fairlead_broker_ports_unbound`, and named by
//! /readyz. Until it is bound it is never given to a client: [`Advertised`] is the only way an
//! address reaches a response, and it knows bound ports only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};

use crate::metrics;

/// A bound socket on its way to its accept loop; `None` node = bootstrap.
pub type Bound = (Option<i32>, std::net::TcpListener);

/// The first wait before a failed broker port is tried again; doubled after each failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two tries: how long a freed port may stay unbound.
pub const MAX_RETRY: Duration = Duration::from_secs(5);
/// Once the back-off is at its cap, a failure is logged at most this often (each line says how
/// many tries failed since the last).
pub const LOG_EVERY: Duration = Duration::from_secs(60);

pub struct Ports {
    /// The bootstrap address; broker ports are bound on its IP.
    listen: SocketAddr,
    /// Broker node N is served on `node_port_base + N`.
    node_port_base: u16,
    /// What is bound and what is waiting for a retry, under one lock so that a port is never
    /// both.
    state: Mutex<State>,
    /// Where bound sockets go to be served (`listener::run`).
    to_listener: mpsc::UnboundedSender<Bound>,
    /// Wakes the retry loop (`server`) when a port fails for the first time.
    failed: Notify,
}

#[derive(Default)]
struct State {
    /// Addresses bound (bootstrap under `None`): the only ones clients are given.
    bound: HashMap<Option<i32>, SocketAddr>,
    /// Brokers in the cluster whose port could not be bound (yet).
    unbound: BTreeMap<i32, Unbound>,
}

/// A broker port that could not be bound, and when to try it again.
struct Unbound {
    /// `None`: the node id maps to no port (`node_port_base + id` is not in 1..=65535); never
    /// retried, but still reported.
    addr: Option<SocketAddr>,
    /// The first failure: how long the port has been unbound.
    since: Instant,
    /// Failed tries so far (for /readyz and the log).
    failures: u64,
    /// The last failure's reason, e.g. "Address already in use".
    error: String,
    /// The wait after the next failure.
    backoff: Duration,
    next_try: Instant,
    /// When a failure was last logged (see [`log_failure`]).
    last_logged: Instant,
    /// Failures since the last log line.
    unlogged: u64,
}

/// A broker port not bound (yet), as /readyz and tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnboundPort {
    pub node: i32,
    /// `None`: the node id maps to no port.
    pub addr: Option<SocketAddr>,
    pub failures: u64,
    pub error: String,
    pub since: Instant,
}

impl Ports {
    /// `to_listener` receives every socket this binds.
    pub fn new(
        listen: SocketAddr,
        node_port_base: u16,
        to_listener: mpsc::UnboundedSender<Bound>,
    ) -> Ports {
        Ports {
            listen,
            node_port_base,
            state: Mutex::default(),
            to_listener,
            failed: Notify::new(),
        }
    }

    /// Binds the bootstrap port.
    pub fn bind_bootstrap(&self) -> std::io::Result<SocketAddr> {
        let mut state = self.state.lock().unwrap();
        self.bind(&mut state, None, self.listen)
    }

    /// Binds the port of broker `node` if it is neither bound nor waiting for a retry.
    /// Synchronous on purpose: the port must accept connections before a response naming it
    /// reaches a client. On failure the port is left to the retry loop ([`Ports::retry_due`]).
    pub fn ensure_node(&self, node: i32) {
        let mut state = self.state.lock().unwrap();
        if state.bound.contains_key(&Some(node)) || state.unbound.contains_key(&node) {
            return;
        }
        let now = Instant::now();
        let Some(addr) = self.node_addr(node) else {
            warn!(
                node,
                base = self.node_port_base,
                "broker id does not map to a port: clients are not given this broker; its partitions and coordinators are named as another broker"
            );
            state
                .unbound
                .insert(node, Unbound::new(None, now, "no port".into()));
            metrics::broker_port_bind_failed();
            metrics::broker_ports_unbound(state.unbound.len());
            return;
        };
        if let Err(e) = self.bind(&mut state, Some(node), addr) {
            warn!(
                node,
                addr = %addr,
                error = %e,
                retry_in_ms = FIRST_RETRY.as_millis() as u64,
                "cannot listen for broker; clients are not given its port until it is bound (its partitions and coordinators are named as another broker meanwhile)"
            );
            state
                .unbound
                .insert(node, Unbound::new(Some(addr), now, e.to_string()));
            metrics::broker_port_bind_failed();
            metrics::broker_ports_unbound(state.unbound.len());
            self.failed.notify_one();
        }
    }

    /// Tries again every broker port whose back-off has run out, and forgets those of brokers no
    /// longer in the cluster (`in_cluster`). Returns when the next try is due (`None`: nothing
    /// left to retry).
    pub fn retry_due(&self, now: Instant, in_cluster: impl Fn(i32) -> bool) -> Option<Instant> {
        let mut state = self.state.lock().unwrap();
        let before = state.unbound.len();
        state.unbound.retain(|node, _| {
            let keep = in_cluster(*node);
            if !keep {
                info!(
                    node,
                    "broker left the cluster: no longer trying to listen for it"
                );
            }
            keep
        });
        let due: Vec<(i32, SocketAddr)> = state
            .unbound
            .iter()
            .filter(|(_, u)| u.next_try <= now)
            .filter_map(|(n, u)| Some((*n, u.addr?)))
            .collect();
        for (node, addr) in due {
            match self.bind(&mut state, Some(node), addr) {
                Ok(_) => {
                    let u = state.unbound.remove(&node).expect("due above");
                    info!(
                        node,
                        addr = %addr,
                        failures = u.failures,
                        unbound_ms = now.duration_since(u.since).as_millis() as u64,
                        "broker port bound after failing: clients are given it from now on"
                    );
                }
                Err(e) => {
                    metrics::broker_port_bind_failed();
                    let u = state.unbound.get_mut(&node).expect("due above");
                    if u.failed(now, e.to_string()) {
                        warn!(
                            node,
                            addr = %addr,
                            error = %e,
                            failures = u.failures,
                            failures_since_last_line = u.unlogged,
                            unbound_ms = now.duration_since(u.since).as_millis() as u64,
                            retry_in_ms = u.next_try.duration_since(now).as_millis() as u64,
                            "still cannot listen for broker; its port is not given to clients"
                        );
                        u.logged(now);
                    }
                }
            }
        }
        if before > 0 {
            metrics::broker_ports_unbound(state.unbound.len());
        }
        state
            .unbound
            .values()
            .filter(|u| u.addr.is_some())
            .map(|u| u.next_try)
            .min()
    }

    /// Resolves when a broker port failed since the last call (see `ensure_node`).
    pub async fn failed(&self) {
        self.failed.notified().await
    }

    /// The broker ports not bound, by node id.
    pub fn unbound(&self) -> Vec<UnboundPort> {
        let state = self.state.lock().unwrap();
        state
            .unbound
            .iter()
            .map(|(node, u)| UnboundPort {
                node: *node,
                addr: u.addr,
                failures: u.failures,
                error: u.error.clone(),
                since: u.since,
            })
            .collect()
    }

    /// Why fairlead is not ready as far as its ports go: every broker port in the cluster that
    /// is not bound, e.g. "broker ports not bound (retrying): node 2 127.0.0.1:9095 (Address
    /// in use (os error 98); 7 tries over 3s)". `None`: all bound.
    pub fn unbound_report(&self) -> Option<String> {
        let unbound = self.unbound();
        if unbound.is_empty() {
            return None;
        }
        let list: Vec<String> = unbound
            .iter()
            .map(|u| {
                let addr = u.addr.map_or("(no port)".to_string(), |a| a.to_string());
                format!(
                    "node {} {addr} ({}; {} tries over {}s)",
                    u.node,
                    u.error,
                    u.failures,
                    u.since.elapsed().as_secs()
                )
            })
            .collect();
        Some(format!(
            "broker ports not bound (retrying): {}",
            list.join(", ")
        ))
    }

    /// What clients may be told about brokers now: `host` and the ports bound.
    pub fn advertised(&self, host: &StrBytes) -> Advertised {
        let state = self.state.lock().unwrap();
        Advertised::new(
            host.clone(),
            state
                .bound
                .iter()
                .filter_map(|(node, addr)| Some(((*node)?, addr.port())))
                .collect(),
        )
    }

    /// Addresses bound so far (bootstrap under `None`).
    pub fn bound(&self) -> HashMap<Option<i32>, SocketAddr> {
        self.state.lock().unwrap().bound.clone()
    }

    /// Where broker `node` is served; `None` if `node_port_base + node` is no port (port 0
    /// would bind a random one).
    fn node_addr(&self, node: i32) -> Option<SocketAddr> {
        let port = u16::try_from(self.node_port_base as i64 + node as i64)
            .ok()
            .filter(|p| *p != 0)?;
        Some(SocketAddr::new(self.listen.ip(), port))
    }

    fn bind(
        &self,
        state: &mut State,
        node: Option<i32>,
        addr: SocketAddr,
    ) -> std::io::Result<SocketAddr> {
        if let Some(a) = state.bound.get(&node) {
            return Ok(*a);
        }
        // std's bind sets SO_REUSEADDR on Unix, so a restarted fairlead can bind at once.
        let sock = std::net::TcpListener::bind(addr)?;
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        state.bound.insert(node, local);
        let _ = self.to_listener.send((node, sock));
        match node {
            None => info!(addr = %local, "listening for clients (bootstrap)"),
            Some(n) => info!(addr = %local, node = n, "listening for clients of broker"),
        }
        Ok(local)
    }
}

impl Unbound {
    fn new(addr: Option<SocketAddr>, now: Instant, error: String) -> Unbound {
        Unbound {
            addr,
            since: now,
            failures: 1,
            error,
            backoff: next_backoff(FIRST_RETRY),
            next_try: now + FIRST_RETRY,
            last_logged: now,
            unlogged: 0,
        }
    }

    /// Another failed try: schedules the next. Returns whether to log this one.
    fn failed(&mut self, now: Instant, error: String) -> bool {
        self.failures += 1;
        self.unlogged += 1;
        self.error = error;
        let waited = self.backoff;
        self.next_try = now + waited;
        self.backoff = next_backoff(waited);
        log_failure(waited, now.duration_since(self.last_logged))
    }

    fn logged(&mut self, now: Instant) {
        self.last_logged = now;
        self.unlogged = 0;
    }
}

/// The wait after `d`: doubled, at most [`MAX_RETRY`].
fn next_backoff(d: Duration) -> Duration {
    (d * 2).min(MAX_RETRY)
}

/// Whether a failed try is logged: every one while the back-off still grows (the first six,
/// over about 3 s), then one a [`LOG_EVERY`] (a port held for hours must not flood the log).
fn log_failure(waiting: Duration, since_logged: Duration) -> bool {
    waiting < MAX_RETRY || since_logged >= LOG_EVERY
}

/// What clients may be told about brokers at one moment: the brokers whose ports are bound, at
/// `host`. Every broker address fairlead puts in a response comes from here, so a client is
/// never given a port that refuses it.
///
/// A broker whose port is not bound is left out of broker lists, and where a response names it
/// as a partition's leader or a key's coordinator, another broker whose port is bound
/// stands in ([`Advertised::stand_in`]). Any broker port serves any partition and any group or
/// transaction: fairlead routes partition requests by its own leadership knowledge and
/// coordinator requests to the coordinator it knows, whichever port they came in on. Leaving
/// the broker out without a stand-in (leader or coordinator unknown) would stall its partitions
/// and answer COORDINATOR_NOT_AVAILABLE to its groups for as long as the port is held (measured
/// with Java and librdkafka clients: README, "Running it"). The leader epochs are left as the broker said: they still fence
/// stale requests, and when the port is bound again the same epoch names the real leader.
#[derive(Debug, Clone)]
pub struct Advertised {
    host: StrBytes,
    ports: BTreeMap<i32, u16>,
}

impl Advertised {
    /// Brokers by node id, each with the port it is bound at, at `host`.
    pub fn new(host: StrBytes, ports: BTreeMap<i32, u16>) -> Advertised {
        Advertised { host, ports }
    }

    /// Where clients reach broker `node`; `None` while its port is not bound.
    pub fn address(&self, node: i32) -> Option<(StrBytes, i32)> {
        self.ports
            .get(&node)
            .map(|p| (self.host.clone(), i32::from(*p)))
    }

    pub fn is_bound(&self, node: i32) -> bool {
        self.ports.contains_key(&node)
    }

    /// The broker a client is told leads or coordinates what `node` does: `node` itself when
    /// its port is bound (or it is no broker: -1); else the first of `preferred` (a partition's
    /// replicas, in assignment order: stable across answers, and a replica can serve a
    /// rack-aware consumer's fetch itself) whose port is bound; else the next broker above
    /// `node`, wrapping around, whose port is bound; -1 (no leader) when no broker port is
    /// bound.
    pub fn stand_in(&self, node: i32, preferred: &[i32]) -> i32 {
        if node < 0 || self.is_bound(node) {
            return node;
        }
        if let Some(r) = preferred.iter().find(|r| self.is_bound(**r)) {
            return *r;
        }
        self.ports
            .range(node..)
            .chain(self.ports.range(..node))
            .map(|(n, _)| *n)
            .next()
            .unwrap_or(-1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> (Ports, mpsc::UnboundedReceiver<Bound>, u16) {
        let (tx, rx) = mpsc::unbounded_channel();
        // Node n is served on base + n; the tests occupy ports they pick themselves.
        let base = 0;
        (
            Ports::new("127.0.0.1:0".parse().unwrap(), base, tx),
            rx,
            base,
        )
    }

    /// A port held by someone else (listening, as a real occupant would be).
    fn occupied() -> (std::net::TcpListener, i32) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port as i32)
    }

    #[test]
    fn back_off_doubles_from_100_ms_to_5_s() {
        let mut d = FIRST_RETRY;
        let mut waits = vec![d];
        for _ in 0..8 {
            d = next_backoff(d);
            waits.push(d);
        }
        let ms: Vec<u128> = waits.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }

    #[test]
    fn every_failure_is_logged_until_the_back_off_is_at_its_cap_then_one_a_minute() {
        assert!(log_failure(Duration::from_millis(3200), Duration::ZERO));
        assert!(!log_failure(MAX_RETRY, Duration::from_secs(59)));
        assert!(log_failure(MAX_RETRY, LOG_EVERY));
    }

    #[test]
    fn a_held_port_is_retried_with_back_off_and_bound_once_freed() {
        let (ports, mut rx, _) = ports();
        let (holder, node) = occupied();
        ports.ensure_node(node);
        assert!(rx.try_recv().is_err(), "nothing bound");
        let u = ports.unbound();
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].node, u[0].failures), (node, 1));
        assert!(ports
            .unbound_report()
            .unwrap()
            .contains(&format!("node {node} 127.0.0.1:{node} (")));
        assert!(!ports.advertised(&"h".into()).is_bound(node));

        // Not due yet: no try. Due: one try, which fails, and the wait doubles.
        let t0 = u[0].since;
        let next = ports.retry_due(t0, |_| true).unwrap();
        assert_eq!(next, t0 + FIRST_RETRY);
        assert_eq!(ports.unbound()[0].failures, 1);
        let next = ports.retry_due(t0 + FIRST_RETRY, |_| true).unwrap();
        assert_eq!(next, t0 + FIRST_RETRY + Duration::from_millis(200));
        assert_eq!(ports.unbound()[0].failures, 2);
        // ensure_node does not try a port the retry loop owns.
        ports.ensure_node(node);
        assert_eq!(ports.unbound()[0].failures, 2);

        drop(holder);
        assert_eq!(ports.retry_due(next, |_| true), None, "nothing left");
        let (got, sock) = rx
            .try_recv()
            .expect("the freed port went to the accept loops");
        assert_eq!(got, Some(node));
        assert_eq!(sock.local_addr().unwrap().port() as i32, node);
        assert!(ports.unbound().is_empty());
        assert_eq!(ports.unbound_report(), None);
        let adv = ports.advertised(&"h".into());
        assert_eq!(adv.address(node), Some(("h".into(), node)));
    }

    #[test]
    fn a_broker_that_left_is_no_longer_retried_and_is_tried_afresh_when_back() {
        let (ports, _rx, _) = ports();
        let (_holder, node) = occupied();
        ports.ensure_node(node);
        let t0 = ports.unbound()[0].since;
        assert_eq!(ports.retry_due(t0, |n| n != node), None);
        assert!(ports.unbound().is_empty(), "forgotten");
        ports.ensure_node(node);
        assert_eq!(ports.unbound()[0].failures, 1, "tried again on its return");
    }

    #[test]
    fn a_node_id_with_no_port_is_reported_and_never_tried() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let ports = Ports::new("127.0.0.1:0".parse().unwrap(), 65_000, tx);
        ports.ensure_node(1000);
        ports.ensure_node(-65_000); // port 0
        let u = ports.unbound();
        assert_eq!(
            u.iter().map(|u| (u.node, u.addr)).collect::<Vec<_>>(),
            vec![(-65_000, None), (1000, None)]
        );
        assert_eq!(ports.retry_due(Instant::now(), |_| true), None);
        assert!(ports
            .unbound_report()
            .unwrap()
            .contains("node 1000 (no port)"));
    }

    fn advertised(bound: &[i32]) -> Advertised {
        Advertised::new(
            "h".into(),
            bound.iter().map(|n| (*n, 9000 + *n as u16)).collect(),
        )
    }

    #[test]
    fn only_bound_brokers_have_an_address() {
        let a = advertised(&[1, 3]);
        assert_eq!(a.address(1), Some(("h".into(), 9001)));
        assert_eq!(a.address(2), None);
    }

    #[test]
    fn a_bound_broker_stands_in_for_an_unbound_one() {
        let a = advertised(&[1, 3, 5]);
        assert_eq!(a.stand_in(3, &[2, 1]), 3, "bound: itself");
        assert_eq!(a.stand_in(-1, &[1]), -1, "no leader stays no leader");
        assert_eq!(a.stand_in(2, &[2, 5, 1]), 5, "first bound replica");
        assert_eq!(a.stand_in(2, &[2]), 3, "next bound broker above");
        assert_eq!(a.stand_in(6, &[]), 1, "wrapping around");
        assert_eq!(advertised(&[]).stand_in(2, &[1]), -1, "no port bound");
    }
}
