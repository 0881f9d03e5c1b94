//! Group and transaction coordinators: which broker coordinates each consumer group and each
//! transactional id, as fairlead last learned it.
//!
//! Learned from FindCoordinator answers passing through to clients, and from fairlead's own
//! FindCoordinator when a coordinator error comes back ([`Finder::find`]). Lookups are
//! single-flight per key type and batched where the broker speaks FindCoordinator v4+
//! (KIP-699): while one lookup is out, the keys that came up meanwhile wait and go out together
//! in the next one, so a broker restart that moves a hundred groups costs a few requests, not a
//! hundred. Every answer is stamped; a caller that routed by an older answer than the cache now
//! holds takes the newer one without asking again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use super::refresh::negotiate;
use super::scope::{now_ms, Stamp};
use super::Leadership;
use crate::upstream::pool::Pool;
use crate::upstream::RequestError;

/// FindCoordinator v4 batches keys (KIP-699); v5 and v6 add nothing fairlead asks for.
const PREFERRED_VERSION: i16 = 4;

/// What a coordinator coordinates (FindCoordinator key_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyType {
    Group,
    Transaction,
}

impl KeyType {
    pub fn from_wire(t: i8) -> Option<KeyType> {
        match t {
            0 => Some(KeyType::Group),
            1 => Some(KeyType::Transaction),
            _ => None,
        }
    }

    fn wire(self) -> i8 {
        match self {
            KeyType::Group => 0,
            KeyType::Transaction => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            KeyType::Group => "group",
            KeyType::Transaction => "transaction",
        }
    }
}

/// A consumer group or a transactional id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CoordinatorKey {
    pub kind: KeyType,
    pub id: String,
}

impl CoordinatorKey {
    pub fn group(id: &str) -> CoordinatorKey {
        CoordinatorKey {
            kind: KeyType::Group,
            id: id.to_string(),
        }
    }

    pub fn transaction(id: &str) -> CoordinatorKey {
        CoordinatorKey {
            kind: KeyType::Transaction,
            id: id.to_string(),
        }
    }
}

/// A coordinator as fairlead knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub node: i32,
    /// Orders what was learned: a larger stamp is a later answer.
    pub stamp: u64,
    pub learned_at: SystemTime,
}

/// The coordinators fairlead has learned, each with when a request last used it (entries no
/// request used for `metadata_forget_after_ms` are dropped: see `super::scope`).
#[derive(Default)]
pub struct Coordinators {
    known: DashMap<CoordinatorKey, (Known, Stamp)>,
    stamps: AtomicU64,
}

impl Coordinators {
    pub fn get(&self, key: &CoordinatorKey) -> Option<Known> {
        self.known.get(key).map(|e| {
            e.1.touch(now_ms());
            e.0
        })
    }

    /// Drops the coordinators no request used within `after` of `now` ([`now_ms`]).
    pub fn forget_unused(&self, now: u64, after: Duration) {
        let after = after.as_millis() as u64;
        self.known
            .retain(|_, (_, used)| now.saturating_sub(used.get()) < after);
        crate::capacity::shrink_dash(&self.known);
    }

    /// Records that `node` coordinates `key` (the latest answer wins). Returns the stamp.
    pub fn learn(&self, key: CoordinatorKey, node: i32) -> u64 {
        let stamp = self.stamps.fetch_add(1, Ordering::AcqRel) + 1;
        let known = Known {
            node,
            stamp,
            learned_at: SystemTime::now(),
        };
        if let Some((old, _)) = self.known.insert(key.clone(), (known, Stamp::at(now_ms()))) {
            if old.node != node {
                debug!(
                    key_type = key.kind.label(),
                    key = key.id.as_str(),
                    old = old.node,
                    new = node,
                    "coordinator moved"
                );
            }
        }
        stamp
    }

    /// Every coordinator known, in key order (for the admin view).
    pub fn snapshot(&self) -> BTreeMap<CoordinatorKey, Known> {
        self.known
            .iter()
            .map(|e| (e.key().clone(), e.value().0))
            .collect()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FindError {
    /// The cluster has no coordinator for the key right now (being elected or loading):
    /// COORDINATOR_NOT_AVAILABLE (15) or another code, from the broker asked.
    #[error("no coordinator for {key_type} {key:?} yet (error {code})")]
    NotAvailable {
        key_type: &'static str,
        key: String,
        code: i16,
    },
    #[error("no broker answered FindCoordinator: {0}")]
    NoBroker(String),
}

/// The keys waiting for a lookup of one key type, and the lookup in flight.
#[derive(Default)]
struct Lookups {
    waiting: Mutex<HashSet<String>>,
    flight: tokio::sync::Mutex<()>,
}

/// fairlead's own FindCoordinator requests.
pub struct Finder {
    leadership: Arc<Leadership>,
    pool: Arc<Pool>,
    bootstrap: Vec<String>,
    timeout: Duration,
    version: AtomicI16,
    groups: Lookups,
    transactions: Lookups,
}

impl Finder {
    pub fn new(
        leadership: Arc<Leadership>,
        pool: Arc<Pool>,
        bootstrap: Vec<String>,
        timeout: Duration,
    ) -> Finder {
        Finder {
            leadership,
            pool,
            bootstrap,
            timeout,
            version: AtomicI16::new(-1),
            groups: Lookups::default(),
            transactions: Lookups::default(),
        }
    }

    /// The coordinator of `key`, asked of the cluster unless an answer newer than `seen` (the
    /// stamp of the answer the caller routed by; 0: none) is already known. Gives up at
    /// `deadline`.
    pub async fn find(
        &self,
        key: &CoordinatorKey,
        seen: u64,
        deadline: Instant,
    ) -> Result<Known, FindError> {
        let coordinators = &self.leadership.coordinators;
        let lookups = match key.kind {
            KeyType::Group => &self.groups,
            KeyType::Transaction => &self.transactions,
        };
        lookups.waiting.lock().unwrap().insert(key.id.clone());
        let _flight = lookups.flight.lock().await;
        if let Some(k) = coordinators.get(key).filter(|k| k.stamp > seen) {
            return Ok(k);
        }
        // This lookup asks for every key that came up meanwhile, this one included (an earlier
        // lookup may have taken it and got no coordinator for it).
        let mut ids: Vec<String> = lookups.waiting.lock().unwrap().drain().collect();
        if !ids.contains(&key.id) {
            ids.push(key.id.clone());
        }
        let answers = self.ask(key.kind, &ids, deadline).await?;
        let mut mine = None;
        for (id, node, code) in answers {
            let found = (code == 0 && node >= 0).then(|| {
                coordinators.learn(
                    CoordinatorKey {
                        kind: key.kind,
                        id: id.clone(),
                    },
                    node,
                )
            });
            if id == key.id {
                mine = Some((found, code));
            }
        }
        match mine {
            Some((Some(_), _)) => Ok(coordinators.get(key).expect("just learned")),
            Some((None, code)) => Err(FindError::NotAvailable {
                key_type: key.kind.label(),
                key: key.id.clone(),
                code,
            }),
            None => Err(FindError::NoBroker(format!(
                "the answer did not name {:?}",
                key.id
            ))),
        }
    }

    /// One FindCoordinator (v4+: all keys at once; before v4: one request per key), to the
    /// first broker that answers. Returns (key, node, error code) per key.
    async fn ask(
        &self,
        kind: KeyType,
        ids: &[String],
        deadline: Instant,
    ) -> Result<Vec<(String, i32, i16)>, FindError> {
        let turn = self.leadership.coordinators.stamps.load(Ordering::Relaxed);
        let targets = self.leadership.ask_order(&self.bootstrap, turn);
        let mut last = String::from("no broker known");
        for (node, addr) in targets {
            let timeout = self
                .timeout
                .min(deadline.saturating_duration_since(Instant::now()));
            if timeout.is_zero() {
                break;
            }
            match self.ask_one(node, &addr, kind, ids, timeout).await {
                Ok(answers) => return Ok(answers),
                Err(e) => {
                    debug!(node, addr, error = %e, "FindCoordinator failed");
                    last = e.to_string();
                }
            }
        }
        Err(FindError::NoBroker(last))
    }

    async fn ask_one(
        &self,
        node: i32,
        addr: &str,
        kind: KeyType,
        ids: &[String],
        timeout: Duration,
    ) -> Result<Vec<(String, i32, i16)>, RequestError> {
        let up = self.pool.get(node, addr, None).await?;
        let mut version = self.version.load(Ordering::Relaxed);
        if version < 0 {
            version = negotiate(&up, ApiKey::FindCoordinator, PREFERRED_VERSION, timeout).await?;
            self.version.store(version, Ordering::Relaxed);
        }
        if version >= 4 {
            let req = FindCoordinatorRequest::default()
                .with_key_type(kind.wire())
                .with_coordinator_keys(
                    ids.iter()
                        .map(|i| StrBytes::from_string(i.clone()))
                        .collect(),
                );
            let resp: FindCoordinatorResponse = up
                .request(ApiKey::FindCoordinator, version, &req, timeout)
                .await?;
            return Ok(resp
                .coordinators
                .iter()
                .map(|c| (c.key.to_string(), c.node_id.0, c.error_code))
                .collect());
        }
        let mut answers = Vec::with_capacity(ids.len());
        for id in ids {
            let req = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(id.clone()))
                .with_key_type(kind.wire());
            let resp: FindCoordinatorResponse = up
                .request(ApiKey::FindCoordinator, version, &req, timeout)
                .await?;
            answers.push((id.clone(), resp.node_id.0, resp.error_code));
        }
        Ok(answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_answer_wins_and_is_stamped_later() {
        let c = Coordinators::default();
        let g = CoordinatorKey::group("g");
        let first = c.learn(g.clone(), 1);
        let second = c.learn(g.clone(), 2);
        assert!(second > first);
        assert_eq!(c.get(&g).map(|k| k.node), Some(2));
        assert!(c.get(&CoordinatorKey::transaction("g")).is_none());
    }
}
