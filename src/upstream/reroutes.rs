//! The connections that carry what fairlead reroutes or replays for clients, shared by every
//! client connection of one identity, so their number follows the brokers and identities in
//! use, not the client connections: 1,000 client connections rerouting to 50 brokers would
//! otherwise hold 50,000 broker connections.
//!
//! Whose connections may carry a client's request is `router::identity`'s rule, and sharing
//! never widens it:
//!
//! * Sidecar mode, or no SASL: every client acts as fairlead's identity, and one set of pools
//!   serves them all ([`Reroutes::fairlead`]). It is not the pool of fairlead's own requests
//!   (`Cluster::pool`): nothing a client asks a broker to wait for may delay a Metadata refresh.
//! * SASL passthrough, a client that presented credentials fairlead can present again (PLAIN
//!   credentials, an OAUTHBEARER token): one pool per principal *and* credential
//!   ([`Reroutes::as_client`]). Two principals never share a connection, and neither do two
//!   clients of one principal that presented different credentials (a password being rotated,
//!   two tokens): each connection carries only requests of clients that could have opened it
//!   themselves.
//! * SCRAM (nothing fairlead can present again): the principal's own connections, lent
//!   (`pool::Lenders`), per principal as before.
//!
//! Within a pool, `pool::Limits` bound the connections per broker and close idle ones.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::pool::{Limits, Pool, PrincipalKey};
use super::UpstreamConfig;
use crate::security::sasl::Credentials;

pub struct Reroutes {
    cfg: UpstreamConfig,
    limits: Limits,
    /// Sidecar mode or no SASL: every client's, with fairlead's credentials.
    fairlead: Arc<Pool>,
    /// SASL passthrough: by principal and credential. Held by the sessions that use it: a pool
    /// no client connection uses any more is dropped with its connections.
    as_client: Mutex<HashMap<ClientKey, Weak<Pool>>>,
    /// Keys the credential fingerprints: random per process, so a fingerprint says nothing
    /// about a password outside it.
    fingerprint_key: [u8; 32],
}

/// A principal and a fingerprint of the exact credentials it presented.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    principal: PrincipalKey,
    credential: [u8; 32],
}

impl Reroutes {
    pub fn new(cfg: UpstreamConfig, limits: Limits) -> Reroutes {
        Reroutes {
            fairlead: Arc::new(Pool::shared(cfg.clone(), limits)),
            cfg,
            limits,
            as_client: Mutex::default(),
            fingerprint_key: rand::random(),
        }
    }

    /// Sidecar mode, or no SASL: the connections every client's rerouted requests share.
    pub fn fairlead(&self) -> Arc<Pool> {
        self.fairlead.clone()
    }

    /// SASL passthrough: the connections opened with `credentials`, which the broker accepted
    /// from a client as `principal`, shared only with clients that presented the same.
    pub fn as_client(&self, principal: &PrincipalKey, credentials: Credentials) -> Arc<Pool> {
        let key = ClientKey {
            principal: principal.clone(),
            credential: self.fingerprint(&credentials),
        };
        let mut pools = self.as_client.lock().unwrap();
        if let Some(p) = pools.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        pools.retain(|_, p| p.strong_count() > 0);
        let pool = Arc::new(Pool::shared(self.cfg.as_client(credentials), self.limits));
        pools.insert(key, Arc::downgrade(&pool));
        pool
    }

    /// Closes every pool's idle connections (see `Pool::close_idle`).
    pub fn close_idle(&self) {
        self.fairlead.close_idle();
        let pools: Vec<Arc<Pool>> = {
            let mut pools = self.as_client.lock().unwrap();
            pools.retain(|_, p| p.strong_count() > 0);
            pools.values().filter_map(Weak::upgrade).collect()
        };
        for p in pools {
            p.close_idle();
        }
    }

    /// How often to look for idle connections: a quarter of the idle time, so one closes
    /// within 25% of it, at most every 5 s.
    pub fn close_idle_every(&self) -> Option<Duration> {
        self.limits
            .idle_close
            .map(|d| (d / 4).clamp(Duration::from_millis(25), Duration::from_secs(5)))
    }

    /// Closes idle connections every [`Reroutes::close_idle_every`], in the background, for as
    /// long as `this` lives (nothing outside a runtime: the codec benchmarks).
    pub fn start_closing_idle(this: &Arc<Reroutes>) {
        let (Some(every), Ok(rt)) = (
            this.close_idle_every(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let weak = Arc::downgrade(this);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(r) => r.close_idle(),
                    None => return,
                }
            }
        });
    }

    /// Connections held by every pool (open or not).
    pub fn len(&self) -> usize {
        let pools: Vec<Arc<Pool>> = self
            .as_client
            .lock()
            .unwrap()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        self.fairlead.len() + pools.iter().map(|p| p.len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// HMAC-SHA-256 of the mechanism, user and secret: equal only for the same credentials.
    fn fingerprint(&self, c: &Credentials) -> [u8; 32] {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.fingerprint_key).expect("HMAC takes any key");
        for part in [
            c.mechanism.name().as_bytes(),
            c.username.as_bytes(),
            c.password.expose().as_bytes(),
        ] {
            // Length-prefixed: ("ab", "c") and ("a", "bc") must differ.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::sasl::{Mechanism, Secret};

    fn plain(user: &str, password: &str) -> Credentials {
        Credentials {
            mechanism: Mechanism::Plain,
            username: user.into(),
            password: Secret::new(password.into()),
        }
    }

    fn reroutes() -> Reroutes {
        Reroutes::new(
            UpstreamConfig::plain(Duration::from_secs(1), 1 << 20),
            Limits {
                per_broker: 4,
                idle_close: Some(Duration::from_secs(60)),
            },
        )
    }

    fn key(user: &str) -> PrincipalKey {
        ("PLAIN".into(), user.into())
    }

    #[test]
    fn a_pool_is_shared_only_by_one_principal_presenting_the_same_credentials() {
        let r = reroutes();
        let alice = r.as_client(&key("alice"), plain("alice", "s1"));
        assert!(Arc::ptr_eq(
            &alice,
            &r.as_client(&key("alice"), plain("alice", "s1"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &r.as_client(&key("alice"), plain("alice", "s2"))
        ));
        assert!(!Arc::ptr_eq(
            &alice,
            &r.as_client(&key("bob"), plain("alice", "s1"))
        ));
        assert!(!Arc::ptr_eq(&alice, &r.fairlead()));
    }

    #[test]
    fn a_pool_no_session_holds_is_forgotten() {
        let r = reroutes();
        drop(r.as_client(&key("alice"), plain("alice", "s1")));
        let _bob = r.as_client(&key("bob"), plain("bob", "s"));
        assert_eq!(
            r.as_client.lock().unwrap().len(),
            1,
            "alice's pool, which no session holds, is gone"
        );
    }

    #[test]
    fn fingerprints_separate_the_parts() {
        let r = reroutes();
        assert_ne!(
            r.fingerprint(&plain("ab", "c")),
            r.fingerprint(&plain("a", "bc"))
        );
        assert_eq!(
            r.fingerprint(&plain("a", "b")),
            r.fingerprint(&plain("a", "b"))
        );
    }
}
