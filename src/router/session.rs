//! A client connection as the router sees it: who the client is, and its own connection to the
//! broker it chose ("home").
//!
//! The home carries everything not rerouted. If that broker goes away, the client connection
//! survives: the home is re-established (to the same broker, or any other for a bootstrap
//! connection or when it is down), and fairlead returns to the client's own broker once it is
//! back. A client that authenticated itself (SASL passthrough) pins its home: a new broker
//! connection would not carry its identity, so losing it closes the client connection.
//!
//! The session also knows whose authority the client's requests carry (`identity`) and which
//! connections to the other brokers may carry what is rerouted or replayed: a pool shared with
//! every client connection of the same identity (`upstream::reroutes`), bounded per broker so
//! that no client waits behind another's long request (`upstream::pool`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
};
use tracing::{debug, info, warn};

use super::identity::Identity;
use super::Router;
use crate::cluster::Cluster;
use crate::codec::header::RequestHeader;
use crate::codec::message::{decode_body, decode_response};
use crate::metrics::{self, NotAbsorbed};
use crate::security::principal::{Exchange, Outcome, Presentable, Principal};
use crate::security::sasl::{Credentials, Mechanism};
use crate::security::SaslMode;
use crate::upstream::pool::{Lenders, Pool, PrincipalKey};
use crate::upstream::reroutes::Reroutes;
use crate::upstream::{Upstream, UpstreamConfig, UpstreamError};

/// Numbers client connections (for the order of their coordinator requests, `lanes`).
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// One client connection's state in the router.
pub struct Session {
    /// Unique per client connection: the lanes of its coordinator requests are its own.
    pub connection: u64,
    pub home: Home,
    /// "<client ip>/<client id>" (and its principal in passthrough): a producer, for its
    /// partitions' order (see `lanes`).
    name: Mutex<ClientName>,
    /// Whose authority its requests carry, and the connections to other brokers that may carry
    /// them (see `identity`).
    authority: Mutex<Authority>,
    /// SASL passthrough: the client's own exchange, followed to learn its principal.
    exchange: Mutex<Exchange>,
    upstream_cfg: UpstreamConfig,
    /// Clients' own authenticated connections, shared by every session (see `Lenders`).
    lenders: Arc<Lenders>,
    /// The reroute pools of every identity (see `upstream::reroutes`).
    reroutes: Arc<Reroutes>,
}

impl Session {
    /// Connects a new client connection's home (None: no broker reachable, logged and
    /// counted: the client connection is closed).
    pub async fn open(router: &Router, peer: IpAddr, node: Option<i32>) -> Option<Session> {
        let home = Home::open(&router.cluster, node).await?;
        let upstream_cfg = router.cluster.upstream_cfg.clone();
        let authority = match upstream_cfg.security.sasl_mode {
            SaslMode::Passthrough => Authority::anonymous(),
            SaslMode::Sidecar => Authority {
                identity: Identity::Fairlead,
                pool: Some(router.reroutes.fairlead()),
                opens_until: None,
            },
        };
        Some(Session {
            connection: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            home,
            name: Mutex::new(ClientName::new(peer.to_string())),
            authority: Mutex::new(authority),
            exchange: Mutex::default(),
            upstream_cfg,
            lenders: router.lenders.clone(),
            reroutes: router.reroutes.clone(),
        })
    }

    /// The producer name of a request's sender (recomputed only when its client id changes).
    pub fn name(&self, frame: &[u8], hdr: &RequestHeader) -> Arc<str> {
        self.name.lock().unwrap().of(frame, hdr)
    }

    /// The connections to other brokers that may carry this client's requests, or why none
    /// may (its requests then go only on its own broker connection).
    pub fn reroutes(&self) -> Result<Arc<Pool>, NotAbsorbed> {
        let mut authority = self.authority.lock().unwrap();
        if let Some(why) = authority.identity.unroutable() {
            return Err(why);
        }
        if authority
            .opens_until
            .is_some_and(|t| SystemTime::now() + TOKEN_MARGIN >= t)
        {
            // The client's token expires: from now on only its principal's own connections.
            if let Identity::Client(p) = &authority.identity {
                let key = (p.mechanism.name().to_string(), p.name.clone());
                authority.pool = Some(Arc::new(Pool::borrowing(
                    self.upstream_cfg.clone(),
                    self.lenders.clone(),
                    key,
                )));
            }
            authority.opens_until = None;
        }
        authority
            .pool
            .clone()
            .ok_or(NotAbsorbed::NoConnectionAsClient)
    }

    /// Follows the client's own SASL exchange (passthrough): its handshake and the first
    /// message of each exchange.
    pub fn relay_request(&self, hdr: &RequestHeader, frame: &Bytes) {
        if self.upstream_cfg.security.sasl_mode != SaslMode::Passthrough {
            return;
        }
        let (Some(api), Some(at)) = (hdr.known, hdr.body_offset) else {
            return;
        };
        let v = hdr.api_version;
        match api {
            ApiKey::SaslHandshake => {
                if let Ok(r) = decode_body::<SaslHandshakeRequest>(frame, at, api, v) {
                    self.exchange
                        .lock()
                        .unwrap()
                        .handshake(r.mechanism.as_str());
                }
            }
            ApiKey::SaslAuthenticate => {
                if let Ok(r) = decode_body::<SaslAuthenticateRequest>(frame, at, api, v) {
                    self.exchange.lock().unwrap().authenticate(&r.auth_bytes);
                }
            }
            _ => {}
        }
    }

    /// The broker's answer to the client's SaslAuthenticate: once the exchange succeeded, the
    /// client is its principal, and connections fairlead opens with what it presented may carry
    /// its requests.
    pub fn relay_answer(&self, hdr: &RequestHeader, answer: &Bytes) {
        if hdr.known != Some(ApiKey::SaslAuthenticate) {
            return;
        }
        if self.upstream_cfg.security.sasl_mode != SaslMode::Passthrough {
            // A client's own SASL in sidecar mode: nobody borrows its connection.
            self.home.current().exchange_done();
            return;
        }
        let code = decode_response::<SaslAuthenticateResponse>(
            answer,
            ApiKey::SaslAuthenticate,
            hdr.api_version,
        )
        .map_or(-1, |r| r.error_code);
        let outcome = self.exchange.lock().unwrap().answered(code);
        if matches!(outcome, Outcome::Continuing) {
            return;
        }
        let home = self.home.current();
        home.exchange_done();
        let mut authority = self.authority.lock().unwrap();
        let Outcome::Authenticated(p) = outcome else {
            *authority = Authority::anonymous();
            self.name.lock().unwrap().set_principal(String::new());
            return;
        };
        // KIP-368: re-authentication may not change the principal.
        if let Identity::Client(before) = &authority.identity {
            if before.name != p.name || before.mechanism != p.mechanism {
                *authority = Authority::anonymous();
                self.name.lock().unwrap().set_principal(String::new());
                return;
            }
        }
        self.name
            .lock()
            .unwrap()
            .set_principal(format!("{}:{}", p.mechanism.name(), p.name));
        let key = (p.mechanism.name().to_string(), p.name.clone());
        self.lenders.register(&key, &home);
        debug!(
            principal = p.name.as_str(),
            mechanism = p.mechanism.name(),
            "client authenticated itself"
        );
        *authority = self.authority_of(p, key);
    }

    /// The authority of a client authenticated as `p`: connections opened with what it
    /// presented (its PLAIN credentials; its bearer token until it expires), shared only with
    /// clients of the same principal that presented the same (`Reroutes::as_client`), else
    /// those of its principal's own clients (`Lenders`).
    fn authority_of(&self, p: Principal, key: PrincipalKey) -> Authority {
        let (credentials, opens_until) = match &p.presentable {
            Presentable::Plain { username, password } => (
                Some(Credentials {
                    mechanism: Mechanism::Plain,
                    username: username.clone(),
                    password: password.clone(),
                }),
                None,
            ),
            Presentable::Bearer { token, expires } => (
                Some(Credentials {
                    mechanism: Mechanism::OAuthBearer,
                    username: p.name.clone(),
                    password: token.clone(),
                }),
                *expires,
            ),
            Presentable::Nothing => (None, None),
        };
        let pool = match credentials {
            Some(c) => self.reroutes.as_client(&key, c),
            None => Arc::new(Pool::borrowing(
                self.upstream_cfg.clone(),
                self.lenders.clone(),
                key,
            )),
        };
        Authority {
            identity: Identity::Client(Arc::new(p)),
            pool: Some(pool),
            opens_until,
        }
    }
}

/// How long before a client's token expires fairlead stops opening connections with it.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Whose authority a session's requests carry, and what carries them to other brokers.
struct Authority {
    identity: Identity,
    /// None: nothing but the client's own connection.
    pool: Option<Arc<Pool>>,
    /// The pool opens connections with the client's token, which expires then.
    opens_until: Option<SystemTime>,
}

impl Authority {
    fn anonymous() -> Authority {
        Authority {
            identity: Identity::Anonymous,
            pool: None,
            opens_until: None,
        }
    }
}

/// The client's connection to its broker, replaceable when that broker goes away.
pub struct Home {
    cluster: Arc<Cluster>,
    /// The broker the client chose (None: the bootstrap port).
    node: Option<i32>,
    /// Shared with the background task that returns the home to the client's own broker.
    current: Arc<Mutex<Arc<Upstream>>>,
    /// One reconnect at a time.
    reconnect: tokio::sync::Mutex<()>,
    /// While the home is another broker than the client's own (it was down), when fairlead
    /// last tried to go back to the client's own: at most once a second, in the background.
    returning: Mutex<Option<Instant>>,
    /// The client authenticated (SASL) on this connection: a new broker connection would not
    /// be authenticated, so losing it must close the client connection.
    pinned: AtomicBool,
}

impl Home {
    async fn open(cluster: &Arc<Cluster>, node: Option<i32>) -> Option<Home> {
        let first = match cluster.connect_home(node, true).await {
            Ok(up) => up,
            Err(e) => {
                warn!(error = %e, "no broker reachable for this client: closing its connection");
                metrics::connection_closed(metrics::Closed::NoBroker);
                return None;
            }
        };
        debug!(broker = first.node(), "client connected");
        Some(Home {
            cluster: cluster.clone(),
            node,
            current: Arc::new(Mutex::new(first)),
            reconnect: tokio::sync::Mutex::new(()),
            returning: Mutex::default(),
            pinned: AtomicBool::new(false),
        })
    }

    /// A client that authenticates pins its home: see `pinned`.
    pub fn pin_if_authenticating(&self, hdr: &RequestHeader) {
        if matches!(
            hdr.known,
            Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
        ) {
            self.pinned.store(true, Ordering::Relaxed);
        }
    }

    /// The home connection as it is now.
    pub fn current(&self) -> Arc<Upstream> {
        self.current.lock().unwrap().clone()
    }

    /// Whether the client authenticated itself on its home (see `pinned`).
    pub fn pinned(&self) -> bool {
        self.pinned.load(Ordering::Relaxed)
    }

    /// The home connection, re-established if it was lost (and the client did not
    /// authenticate on it).
    pub async fn get(&self) -> Result<Arc<Upstream>, UpstreamError> {
        let cur = self.current.lock().unwrap().clone();
        if cur.usable() {
            if self.node.is_some_and(|n| n != cur.node()) {
                self.go_back();
            }
            return Ok(cur);
        }
        let _one = self.reconnect.lock().await;
        let cur = self.current.lock().unwrap().clone();
        if cur.usable() {
            return Ok(cur);
        }
        if self.pinned() {
            return Err(UpstreamError::Closed {
                node: cur.node(),
                addr: cur.addr().to_string(),
                reason: "authenticated connection lost".into(),
            });
        }
        let up = self.cluster.connect_home(self.node, true).await?;
        info!(
            old_node = cur.node(),
            new_node = up.node(),
            "client's broker connection re-established"
        );
        *self.current.lock().unwrap() = up.clone();
        Ok(up)
    }

    /// The home stands in for the client's own broker, which was down: try, in the background
    /// and at most once a second, to connect to it again, and make it the home once it answers.
    /// Otherwise the client's requests would go to the stand-in for as long as the connection
    /// lives, long after its broker came back.
    fn go_back(&self) {
        const EVERY: Duration = Duration::from_secs(1);
        {
            let mut last = self.returning.lock().unwrap();
            if last.is_some_and(|t| t.elapsed() < EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let (cluster, node) = (self.cluster.clone(), self.node);
        let current = Arc::downgrade(&self.current);
        tokio::spawn(async move {
            let Ok(up) = cluster.connect_home(node, false).await else {
                return;
            };
            let Some(current) = current.upgrade() else {
                return;
            };
            let mut cur = current.lock().unwrap();
            info!(
                old_node = cur.node(),
                new_node = up.node(),
                "client's broker is back: its connection returns to it"
            );
            *cur = up;
        });
    }
}

/// Who a producer is, for per-producer ordering: its address and client id, computed once per
/// connection (and again if the client id changes). In SASL passthrough, its principal too: a
/// batch joins the connection its producer's lane is using (`lanes`), and two clients of one
/// address and client id that authenticated as different principals are not one producer: one's
/// batch on the other's connection would be written with the other's authority (issue 23).
struct ClientName {
    ip: String,
    client_id: Vec<u8>,
    /// SASL passthrough: "<mechanism>:<user>" once the client authenticated (else empty), so
    /// producers of different principals never share a lane or its connection (`lanes`).
    principal: String,
    name: Arc<str>,
}

impl ClientName {
    fn new(ip: String) -> Self {
        let name: Arc<str> = format!("{ip}/").into();
        ClientName {
            ip,
            client_id: Vec::new(),
            principal: String::new(),
            name,
        }
    }

    fn set_principal(&mut self, principal: String) {
        if principal != self.principal {
            self.principal = principal;
            self.rename();
        }
    }

    fn rename(&mut self) {
        let id = String::from_utf8_lossy(&self.client_id);
        self.name = match self.principal.as_str() {
            "" => format!("{}/{id}", self.ip),
            p => format!("{}/{id}/{p}", self.ip),
        }
        .into();
    }

    fn of(&mut self, frame: &[u8], hdr: &RequestHeader) -> Arc<str> {
        let id = client_id(frame, hdr).unwrap_or_default();
        if id != self.client_id.as_slice() {
            self.client_id = id.to_vec();
            self.rename();
        }
        self.name.clone()
    }
}

/// The client id of a request (header v1+: a nullable INT16-length string after the
/// correlation id).
fn client_id<'a>(frame: &'a [u8], hdr: &RequestHeader) -> Option<&'a [u8]> {
    hdr.body_offset?;
    let at = crate::codec::LEN_PREFIX + 8;
    let len = i16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]);
    frame.get(at + 2..at + 2 + usize::try_from(len).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(principal: Option<(&str, &str)>) -> Arc<str> {
        let mut n = ClientName::new("10.0.0.1".into());
        n.client_id = b"app".to_vec();
        n.rename();
        n.set_principal(principal.map_or(String::new(), |(m, u)| format!("{m}:{u}")));
        n.name.clone()
    }

    #[test]
    fn two_principals_of_one_address_and_client_id_are_two_producers() {
        assert_eq!(&*named(None), "10.0.0.1/app");
        let alice = named(Some(("SCRAM-SHA-512", "alice")));
        assert_ne!(alice, named(Some(("SCRAM-SHA-512", "bob"))));
        assert_ne!(alice, named(None));
        // Another connection of the same principal is the same producer.
        assert_eq!(alice, named(Some(("SCRAM-SHA-512", "alice"))));
    }
}
