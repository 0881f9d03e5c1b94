//! fairlead's view of the cluster: who leads each partition (with its leader epoch), and where
//! each broker is.
//!
//! Fed by fairlead's own Metadata requests ([`refresh`]), by Metadata responses passing through to
//! clients, and by KIP-951 `CurrentLeader` hints in Produce and Fetch responses; only for the
//! topics fairlead's clients use ([`scope`]). Every update is
//! epoch-guarded: an older leader epoch never overwrites a newer one, so a stale Metadata answer
//! from a lagging broker cannot route traffic back to a former leader.

pub mod coordinators;
pub mod incidents;
pub mod refresh;
pub mod scope;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};
use tracing::warn;

use dashmap::DashMap;
use kafka_protocol::messages::MetadataResponse;
use serde::Serialize;
use uuid::Uuid;

use crate::metrics;
use crate::protocol::UNKNOWN_TOPIC_OR_PARTITION;
use scope::{now_ms, Scope, Stamp};

/// A set of topic names for lookups from a hot loop: foldhash, not SipHash (the names come
/// from fairlead's own maps and requests, not from a party that could aim at collisions).
pub type TopicSet = std::collections::HashSet<String, foldhash::fast::RandomState>;

/// How a request or response names a topic: by name, or by id (Fetch v13+, Produce v13+).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicRef {
    Name(kafka_protocol::protocol::StrBytes),
    Id(Uuid),
}

impl std::fmt::Display for TopicRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TopicRef::Name(n) => f.write_str(n.as_str()),
            TopicRef::Id(id) => write!(f, "{id}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl Broker {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub leader: i32,
    /// -1 when the source did not say (Metadata before v7).
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// When fairlead saw its leader change; None while it has the leader fairlead first saw.
    pub changed_at: Option<SystemTime>,
}

#[derive(Debug, Clone, Default)]
pub struct TopicState {
    pub id: Uuid,
    pub partitions: Vec<Option<PartitionState>>,
    /// When a client last used the topic ([`scope::now_ms`]).
    pub used: Stamp,
}

/// One leadership change that an update caused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderChange {
    pub topic: String,
    pub partition: i32,
    pub old_leader: i32,
    pub new_leader: i32,
    pub epoch: i32,
}

/// What a source says about one partition. `replicas`/`isr` are `None` when the source does not
/// say (a KIP-951 hint names only the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Option<Vec<i32>>,
    pub isr: Option<Vec<i32>>,
}

impl Observed {
    pub fn leader(leader: i32, epoch: i32) -> Observed {
        Observed {
            leader,
            epoch,
            replicas: None,
            isr: None,
        }
    }
}

/// A partition as routing sees it (see [`Leadership::route_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub leader: i32,
    pub epoch: i32,
    pub changed_at: Option<SystemTime>,
    /// The client's broker holds a replica (it may serve rack-aware fetches).
    pub home_is_replica: bool,
}

/// A partition's leader as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    pub node: i32,
    pub epoch: i32,
}

#[derive(Default)]
pub struct Leadership {
    topics: DashMap<String, TopicState>,
    topic_names: DashMap<Uuid, String>,
    /// The names of topics forgotten for want of use, by id, so a client that comes back to
    /// one by id (Fetch v13+ names topics only by id) starts a refresh for it: fairlead can ask
    /// the cluster only by name. As many as topics may be tracked, the oldest dropped first.
    forgotten_ids: Mutex<ForgottenIds>,
    /// Replaced whole on each update, so readers take a cheap snapshot.
    brokers: RwLock<Arc<BTreeMap<i32, Broker>>>,
    /// Bumped whenever the broker list changes (see [`Leadership::brokers_version`]).
    brokers_version: AtomicU64,
    /// Bumped by every refresh from the cluster; see [`refresh::Refresher`].
    generation: AtomicU64,
    /// When fairlead last heard a full broker list from the cluster.
    last_metadata: RwLock<Option<Instant>>,
    /// Which broker coordinates each consumer group and transactional id.
    pub coordinators: coordinators::Coordinators,
    /// Topics wanted but not known yet, and the bounds of what is tracked.
    scope: Scope,
    /// `topics.len()`, kept beside it for the gauge (reading the map's length while an entry
    /// of it is held would deadlock).
    tracked: std::sync::atomic::AtomicUsize,
}

impl Leadership {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_limits(limits: scope::Limits) -> Self {
        Leadership {
            scope: Scope::new(limits),
            ..Self::default()
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn last_metadata(&self) -> Option<Instant> {
        *self.last_metadata.read().unwrap()
    }

    pub fn leader(&self, topic: &str, partition: i32) -> Option<Leader> {
        let t = self.topics.get(topic)?;
        let p = t
            .partitions
            .get(usize::try_from(partition).ok()?)?
            .as_ref()?;
        (p.leader >= 0).then_some(Leader {
            node: p.leader,
            epoch: p.epoch,
        })
    }

    /// The leader of a partition named either way.
    pub fn leader_of(&self, topic: &TopicRef, partition: i32) -> Option<Leader> {
        match topic {
            TopicRef::Name(n) => self.leader(n.as_str(), partition),
            TopicRef::Id(id) => self.leader(self.topic_names.get(id)?.as_str(), partition),
        }
    }

    /// What routing needs about a partition, read in place (no copies: this runs for every
    /// partition of every routed request).
    pub fn route_of(&self, topic: &TopicRef, partition: i32, home: i32) -> Option<Route> {
        let look = |name: &str| -> Option<Route> {
            let t = self.topics.get(name)?;
            t.used.touch(now_ms());
            let p = t
                .partitions
                .get(usize::try_from(partition).ok()?)?
                .as_ref()?;
            Some(Route {
                leader: p.leader,
                epoch: p.epoch,
                changed_at: p.changed_at,
                home_is_replica: p.replicas.contains(&home),
            })
        };
        match topic {
            TopicRef::Name(n) => look(n.as_str()),
            TopicRef::Id(id) => look(self.topic_names.get(id)?.as_str()),
        }
    }

    pub fn partition_of(&self, topic: &TopicRef, partition: i32) -> Option<PartitionState> {
        match topic {
            TopicRef::Name(n) => self.partition(n.as_str(), partition),
            TopicRef::Id(id) => self.partition(self.topic_names.get(id)?.as_str(), partition),
        }
    }

    /// The topic's name, resolving an id.
    pub fn name_of(&self, topic: &TopicRef) -> Option<String> {
        match topic {
            TopicRef::Name(n) => Some(n.to_string()),
            TopicRef::Id(id) => self.topic_name(id),
        }
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionState> {
        let t = self.topics.get(topic)?;
        t.partitions.get(usize::try_from(partition).ok()?)?.clone()
    }

    pub fn topic_name(&self, id: &Uuid) -> Option<String> {
        self.topic_names.get(id).map(|n| n.clone())
    }

    pub fn topic_id(&self, topic: &str) -> Option<Uuid> {
        self.topics
            .get(topic)
            .map(|t| t.id)
            .filter(|id| !id.is_nil())
    }

    pub fn brokers(&self) -> Arc<BTreeMap<i32, Broker>> {
        self.brokers.read().unwrap().clone()
    }

    /// Changes whenever the broker list does: connection pools compare it with the version they
    /// last pruned at, to drop connections to brokers that left.
    pub fn brokers_version(&self) -> u64 {
        self.brokers_version.load(Ordering::Acquire)
    }

    /// Where fairlead's own requests go, in the order to try: the known brokers, rotated by
    /// `turn` (so one slow broker is not always asked first), then the bootstrap addresses (node
    /// `BOOTSTRAP_NODE`).
    pub fn ask_order(&self, bootstrap: &[String], turn: u64) -> Vec<(i32, String)> {
        let mut targets: Vec<(i32, String)> =
            self.brokers().values().map(|b| (b.id, b.addr())).collect();
        if !targets.is_empty() {
            let k = (turn % targets.len() as u64) as usize;
            targets.rotate_left(k);
        }
        targets.extend(
            bootstrap
                .iter()
                .map(|a| (crate::upstream::BOOTSTRAP_NODE, a.clone())),
        );
        targets
    }

    pub fn broker(&self, id: i32) -> Option<Broker> {
        self.brokers.read().unwrap().get(&id).cloned()
    }

    pub fn topics_snapshot(&self) -> BTreeMap<String, TopicState> {
        self.topics
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Replaces the broker list (Metadata always lists every live broker). Returns the ids
    /// that were not known before.
    pub fn set_brokers(&self, brokers: impl IntoIterator<Item = Broker>) -> Vec<i32> {
        let new: BTreeMap<i32, Broker> = brokers.into_iter().map(|b| (b.id, b)).collect();
        let mut cur = self.brokers.write().unwrap();
        let added = new
            .keys()
            .filter(|id| !cur.contains_key(id))
            .copied()
            .collect();
        if **cur != new {
            *cur = Arc::new(new);
            self.brokers_version.fetch_add(1, Ordering::AcqRel);
        }
        *self.last_metadata.write().unwrap() = Some(Instant::now());
        added
    }

    /// Adds or updates one broker without dropping others (KIP-951 node endpoints name only the
    /// brokers relevant to one response).
    pub fn upsert_broker(&self, b: Broker) -> bool {
        let mut cur = self.brokers.write().unwrap();
        if cur.get(&b.id) == Some(&b) {
            return false;
        }
        let added = !cur.contains_key(&b.id);
        let mut next = (**cur).clone();
        next.insert(b.id, b);
        *cur = Arc::new(next);
        self.brokers_version.fetch_add(1, Ordering::AcqRel);
        added
    }

    /// Records a partition's state if it is not older than what is known.
    pub fn update_partition(
        &self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        seen: Observed,
    ) -> Option<LeaderChange> {
        let Observed {
            leader,
            epoch,
            replicas,
            isr,
        } = seen;
        let idx = usize::try_from(partition).ok()?;
        let mut t = match self.topics.get_mut(topic) {
            Some(t) => t,
            None if self.topics.len() >= self.scope.limits.max_topics => {
                metrics::topic_refused();
                return None;
            }
            None => self.topics.entry(topic.to_string()).or_insert_with(|| {
                metrics::topics_tracked(self.tracked.fetch_add(1, Ordering::Relaxed) + 1);
                TopicState {
                    used: Stamp::at(now_ms()),
                    ..TopicState::default()
                }
            }),
        };
        if !topic_id.is_nil() && t.id != topic_id {
            if !t.id.is_nil() {
                // The topic was deleted and re-created: forget the old incarnation.
                self.topic_names.remove(&t.id);
                t.partitions.clear();
            }
            t.id = topic_id;
            self.topic_names.insert(topic_id, topic.to_string());
        }
        if t.partitions.len() <= idx {
            t.partitions.resize(idx + 1, None);
        }
        let slot = &mut t.partitions[idx];
        match slot {
            Some(cur) => {
                // An unknown epoch (-1) only replaces another unknown epoch.
                let newer = epoch > cur.epoch
                    || (epoch == cur.epoch && epoch >= 0)
                    || (epoch < 0 && cur.epoch < 0);
                if !newer {
                    return None;
                }
                let change = (cur.leader != leader).then(|| LeaderChange {
                    topic: topic.to_string(),
                    partition,
                    old_leader: cur.leader,
                    new_leader: leader,
                    epoch,
                });
                if change.is_some() {
                    cur.changed_at = Some(SystemTime::now());
                }
                cur.leader = leader;
                cur.epoch = epoch;
                if let Some(r) = replicas {
                    cur.replicas = r;
                }
                if let Some(i) = isr {
                    cur.isr = i;
                }
                if change.is_some() {
                    metrics::leader_changed();
                }
                change
            }
            None => {
                *slot = Some(PartitionState {
                    leader,
                    epoch,
                    replicas: replicas.unwrap_or_default(),
                    isr: isr.unwrap_or_default(),
                    changed_at: None,
                });
                None
            }
        }
    }

    /// Applies a Metadata response (fairlead's own or one passing through to a client).
    /// Topics fairlead tracks are updated, and a topic the cluster says does not exist is
    /// dropped; a topic not tracked yet is learned only if `learn_new` says so (fairlead's own
    /// answers: every topic, it asked for them; a client's: the topics it asked for by name).
    /// Returns the brokers not known before and the leadership changes it caused.
    pub fn apply_metadata(
        &self,
        resp: &MetadataResponse,
        learn_new: &dyn Fn(&str) -> bool,
    ) -> (Vec<i32>, Vec<LeaderChange>) {
        let added = self.set_brokers(resp.brokers.iter().map(|b| Broker {
            id: b.node_id.0,
            host: b.host.to_string(),
            port: b.port,
            rack: b.rack.as_ref().map(|r| r.to_string()),
        }));
        let mut changes = Vec::new();
        for t in &resp.topics {
            let Some(name) = t.name.as_ref() else {
                continue;
            };
            // The topic does not exist (deleted, or never created).
            if t.error_code == UNKNOWN_TOPIC_OR_PARTITION {
                self.forget_topic(name.as_str());
                continue;
            }
            if t.error_code != 0
                || !(self.topics.contains_key(name.as_str()) || learn_new(name.as_str()))
            {
                continue;
            }
            self.scope.answered(name.as_str());
            // A topic's metadata lists every partition, 0..n-1: an index outside that is a
            // broken response, and must not size the partition table (2^31 slots abort).
            let count = t.partitions.len();
            for p in &t.partitions {
                if usize::try_from(p.partition_index).map_or(true, |i| i >= count) {
                    warn!(
                        topic = %name.as_str(),
                        partition = p.partition_index,
                        partitions = count,
                        "ignoring a metadata partition index outside the topic's partition count"
                    );
                    continue;
                }
                // A partition without a leader (5) keeps its last known leader: requests to it
                // will fail and be retried once the election is over.
                if p.error_code != 0 && p.leader_id.0 < 0 {
                    continue;
                }
                let replicas = p.replica_nodes.iter().map(|b| b.0).collect();
                let isr = p.isr_nodes.iter().map(|b| b.0).collect();
                let seen = Observed {
                    leader: p.leader_id.0,
                    epoch: p.leader_epoch,
                    replicas: Some(replicas),
                    isr: Some(isr),
                };
                if let Some(c) =
                    self.update_partition(name.as_str(), t.topic_id, p.partition_index, seen)
                {
                    changes.push(c);
                }
            }
        }
        (added, changes)
    }

    /// A request named a partition of `topic` whose leader fairlead does not know: whether to
    /// refresh for it now (see [`Scope::want`]). A topic named by an id fairlead never had a
    /// name for is learned only from Metadata answers (a refresh cannot ask for an id); one it
    /// forgot is asked for by its old name.
    pub fn want(&self, topic: &TopicRef) -> bool {
        let name = match topic {
            TopicRef::Name(n) => n.to_string(),
            TopicRef::Id(id) => match self.name_of(topic) {
                Some(n) => n,
                None => match self.forgotten_ids.lock().unwrap().name(id) {
                    Some(n) => n,
                    None => return false,
                },
            },
        };
        let tracked = (!self.topics.contains_key(&name)).then(|| self.topics.len());
        self.scope.want(&name, tracked, now_ms())
    }

    /// The topics fairlead's own Metadata requests name: every tracked and wanted topic.
    pub fn scope_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.topics.iter().map(|e| e.key().clone()).collect();
        names.extend(
            self.scope
                .wanted_names()
                .filter(|w| !self.topics.contains_key(w)),
        );
        names
    }

    /// The topics fairlead tracks, and those a request asked for, as they are now: taken once
    /// for a pass over a Metadata answer instead of a look in both maps (a lock and a SipHash
    /// each) for every topic of it, which cost 2 ms in an answer of 20,000 topics (12% of
    /// fairlead's CPU per answer, perf, 2026-12-06).
    pub fn in_scope(&self) -> TopicSet {
        self.topics
            .iter()
            .map(|t| t.key().clone())
            .chain(self.scope.wanted_names())
            .collect()
    }

    /// Drops the topics no client used within `forget_after`, the wanted topics no request
    /// asked for again, and the coordinators no request used. Returns the topics dropped.
    pub fn forget_unused(&self, now: u64) -> usize {
        let unused: Vec<String> = self
            .topics
            .iter()
            .filter(|t| self.scope.unused(t.used.get(), now))
            .map(|t| t.key().clone())
            .collect();
        for name in &unused {
            self.forget_topic(name);
        }
        crate::capacity::shrink_dash(&self.topics);
        crate::capacity::shrink_dash(&self.topic_names);
        self.scope.forget_wanted(now);
        self.coordinators
            .forget_unused(now, self.scope.limits.forget_after);
        metrics::topics_forgotten(unused.len());
        unused.len()
    }

    fn forget_topic(&self, name: &str) {
        self.scope.answered(name);
        if let Some((_, t)) = self.topics.remove(name) {
            if !t.id.is_nil() {
                self.topic_names.remove(&t.id);
                let cap = self.scope.limits.max_topics;
                self.forgotten_ids
                    .lock()
                    .unwrap()
                    .remember(t.id, name.to_string(), cap);
            }
            metrics::topics_tracked(self.tracked.fetch_sub(1, Ordering::Relaxed) - 1);
        }
    }
}

/// Forgotten topics' names by id, at most a bound of them, the oldest dropped first.
#[derive(Default)]
struct ForgottenIds {
    names: HashMap<Uuid, String>,
    order: VecDeque<Uuid>,
}

impl ForgottenIds {
    fn remember(&mut self, id: Uuid, name: String, cap: usize) {
        if self.names.insert(id, name).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > cap {
            if let Some(old) = self.order.pop_front() {
                self.names.remove(&old);
            }
        }
    }

    fn name(&self, id: &Uuid) -> Option<String> {
        self.names.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upd(l: &Leadership, leader: i32, epoch: i32) -> Option<LeaderChange> {
        l.update_partition("t", Uuid::nil(), 0, Observed::leader(leader, epoch))
    }

    #[test]
    fn an_older_epoch_never_overwrites_a_newer_one() {
        let l = Leadership::new();
        upd(&l, 1, 5);
        assert_eq!(upd(&l, 2, 6).unwrap().new_leader, 2);
        assert!(upd(&l, 1, 5).is_none());
        assert_eq!(l.leader("t", 0), Some(Leader { node: 2, epoch: 6 }));
        // same epoch refreshes replicas/isr but is not a change
        assert!(upd(&l, 2, 6).is_none());
        // unknown epochs do not overwrite known ones
        assert!(upd(&l, 3, -1).is_none());
        assert_eq!(l.leader("t", 0).unwrap().node, 2);
    }

    fn answer(topics: &[(&str, i16)]) -> MetadataResponse {
        use kafka_protocol::messages::metadata_response::{
            MetadataResponsePartition, MetadataResponseTopic,
        };
        use kafka_protocol::messages::{BrokerId, TopicName};
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .enumerate()
                .map(|(i, (name, error))| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName((*name).to_string().into())))
                        .with_topic_id(Uuid::from_u128(i as u128 + 1))
                        .with_error_code(*error)
                        .with_partitions(if *error == 0 {
                            vec![MetadataResponsePartition::default()
                                .with_leader_id(BrokerId(1))
                                .with_leader_epoch(3)]
                        } else {
                            vec![]
                        })
                })
                .collect(),
        )
    }

    fn names(l: &Leadership) -> Vec<String> {
        l.topics_snapshot().into_keys().collect()
    }

    #[test]
    fn an_answer_teaches_tracked_topics_and_those_asked_for_only() {
        let l = Leadership::new();
        upd(&l, 1, 1); // "t" is tracked
        let r = answer(&[("t", 0), ("asked", 0), ("other", 0)]);
        l.apply_metadata(&r, &|n| n == "asked");
        assert_eq!(names(&l), ["asked", "t"]);
        assert_eq!(l.leader("t", 0), Some(Leader { node: 1, epoch: 3 }));
        assert!(l.leader("other", 0).is_none());
    }

    #[test]
    fn a_topic_the_cluster_says_does_not_exist_is_dropped() {
        let l = Leadership::new();
        l.apply_metadata(&answer(&[("t", 0)]), &|_| true);
        let id = l.topic_id("t").unwrap();
        l.apply_metadata(&answer(&[("t", UNKNOWN_TOPIC_OR_PARTITION)]), &|_| true);
        assert!(names(&l).is_empty());
        assert!(l.topic_name(&id).is_none());
    }

    #[test]
    fn unused_topics_are_forgotten_and_used_ones_kept() {
        let l = Leadership::with_limits(scope::Limits {
            max_topics: 10,
            forget_after: std::time::Duration::from_millis(100),
        });
        l.apply_metadata(&answer(&[("used", 0), ("idle", 0)]), &|_| true);
        let idle_id = l.topic_id("idle").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let used = TopicRef::Name("used".into());
        assert!(l.route_of(&used, 0, 1).is_some());
        assert_eq!(l.forget_unused(now_ms()), 1);
        assert_eq!(names(&l), ["used"]);
        assert!(l.topic_name(&idle_id).is_none());
        assert_eq!(l.scope_names(), ["used"]);
        // A client comes back to the forgotten topic by id (a Fetch v13+): fairlead asks for it
        // again by the name it had; an id it never knew starts nothing.
        assert!(l.want(&TopicRef::Id(idle_id)));
        assert_eq!(l.scope_names(), ["used", "idle"]);
        assert!(!l.want(&TopicRef::Id(Uuid::from_u128(7))));
    }

    #[test]
    fn forgotten_ids_are_bounded_oldest_out_first() {
        let mut f = ForgottenIds::default();
        for i in 0..5u128 {
            f.remember(Uuid::from_u128(i), format!("t{i}"), 3);
        }
        assert_eq!(f.name(&Uuid::from_u128(1)), None);
        assert_eq!(f.name(&Uuid::from_u128(2)).as_deref(), Some("t2"));
        assert_eq!(f.names.len(), 3);
    }

    #[test]
    fn no_more_than_max_topics_are_tracked() {
        let l = Leadership::with_limits(scope::Limits {
            max_topics: 2,
            forget_after: std::time::Duration::from_secs(60),
        });
        l.apply_metadata(&answer(&[("a", 0), ("b", 0), ("c", 0)]), &|_| true);
        assert_eq!(names(&l), ["a", "b"]);
        assert!(
            !l.want(&TopicRef::Name("d".into())),
            "no room for a wanted topic"
        );
        assert!(
            l.want(&TopicRef::Name("a".into())),
            "a tracked topic's unknown partition may still refresh"
        );
    }

    #[test]
    fn a_recreated_topic_forgets_the_old_partitions() {
        let l = Leadership::new();
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        l.update_partition("t", a, 0, Observed::leader(1, 9));
        l.update_partition("t", b, 0, Observed::leader(2, 0));
        assert_eq!(l.leader("t", 0), Some(Leader { node: 2, epoch: 0 }));
        assert_eq!(l.topic_name(&b).as_deref(), Some("t"));
        assert!(l.topic_name(&a).is_none());
    }
}
