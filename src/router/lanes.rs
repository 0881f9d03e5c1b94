//! Per-partition produce ordering, per producer; and the order of a client connection's
//! requests to one group or transaction coordinator.
//!
//! A producer pipelines several Produce requests; per partition, the broker must see its
//! batches in the order the producer sent them (sequence numbers for idempotent producers, plain
//! record order for everyone else). Kafka keeps the order of requests on one connection, not
//! across connections. Two things would break it through fairlead:
//!
//! * fairlead learns that a partition moved while batches are in flight to its old leader: those
//!   fail and are replayed to the new leader, and a new batch sent there first would overtake
//!   them;
//! * the producer itself switches connections for a partition (its own metadata refresh) while
//!   fairlead is still replaying its earlier batches on the old connection.
//!
//! So each producer's partition has a lane: the batches in flight, the node they go to and the
//! one upstream connection carrying them. A new batch for the same node joins the lane's
//! connection (same connection, same order), whichever client connection it came from. A batch
//! for another node waits until the lane is empty: everything earlier answered, or replayed and
//! answered. A producer is identified by its address and client id, and in SASL passthrough by
//! its principal too: a lane's connection carries one principal's authority, and only that
//! principal's batches may join it (issue 23).
//!
//! Two more holds keep the order where the broker cannot: while a batch of the lane is being
//! replayed, new batches wait; and for a short while after the partition's leader changed
//! ([`SETTLE`]), a non-idempotent batch waits for the lane to drain. The new leader may refuse
//! a first batch (it has not taken over yet) and accept the next one a moment later; an
//! idempotent producer's next batch would then be refused as out of sequence and replayed in
//! order, a non-idempotent one would be written first.
//!
//! Coordinator requests (a group's commits, a transactional id's requests) take lanes too, one
//! per client connection and key: while one is being replayed to a coordinator that moved, a
//! later one for the same key that would go elsewhere waits, so an older offset commit cannot
//! land after a newer one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::leadership::coordinators::CoordinatorKey;
use crate::leadership::TopicRef;
use crate::upstream::Upstream;

/// How long after a leader change non-idempotent batches of a partition go one at a time.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LaneKey {
    /// A producer's partition; the producer is "<client ip>/<client id>" (with its principal in
    /// SASL passthrough: `session::ClientName`), across its
    /// connections.
    Partition {
        client: Arc<str>,
        topic: TopicRef,
        partition: i32,
    },
    /// The requests of one client connection for one consumer group or transactional id (see
    /// `coordinator`): per connection, because group members may share an address and client id
    /// and must never share a broker connection (a JoinGroup long poll would hold the others').
    Coordinator {
        connection: u64,
        key: CoordinatorKey,
    },
}

#[derive(Debug)]
struct Lane {
    in_flight: u32,
    node: i32,
    /// The connection every batch in flight in this lane went out on.
    upstream: Option<Arc<Upstream>>,
    /// A batch was replayed: a later one may meet a sequence gap (see `retry`).
    recovering: bool,
    /// A request of the lane is being sent again: later ones wait for the lane to drain, even
    /// to the same node (coordinator lanes; see [`Lanes::hold`]).
    held: bool,
}

/// A batch that wants to go out: its lane, the node it goes to, and the connection it would use.
pub struct Want {
    pub key: LaneKey,
    pub node: i32,
    pub upstream: Option<Arc<Upstream>>,
    /// Wait for the lane to drain even when it goes to the same node: a non-idempotent batch
    /// within [`SETTLE`] of its partition's leader change.
    pub alone: bool,
}

#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    released: Notify,
}

impl Lanes {
    /// Waits until every batch can go without overtaking an earlier batch of its lane, counts
    /// them in flight, and returns the connection each must use (the lane's own when it is
    /// already sending to that node). The bool says whether it had to wait.
    pub async fn acquire(&self, wanted: Vec<Want>) -> (Vec<Option<Arc<Upstream>>>, bool) {
        let mut waited = false;
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut lanes = self.lanes.lock().unwrap();
                let clear = wanted.iter().all(|w| match lanes.get(&w.key) {
                    None => true,
                    Some(l) => {
                        l.in_flight == 0
                            || (!w.alone
                                && !l.held
                                && l.node == w.node
                                && l.upstream.as_ref().is_some_and(|u| u.usable()))
                    }
                });
                if clear {
                    let mut chosen = Vec::with_capacity(wanted.len());
                    for w in wanted {
                        let l = lanes.entry(w.key).or_insert(Lane {
                            in_flight: 0,
                            node: w.node,
                            upstream: None,
                            recovering: false,
                            held: false,
                        });
                        if l.in_flight == 0 {
                            l.node = w.node;
                            l.upstream = w.upstream;
                        }
                        l.in_flight += 1;
                        chosen.push(l.upstream.clone());
                    }
                    return (chosen, waited);
                }
            }
            waited = true;
            notified.await;
        }
    }

    /// One batch of each of these lanes is resolved.
    pub fn release<'a>(&self, keys: impl IntoIterator<Item = &'a LaneKey>) {
        let mut lanes = self.lanes.lock().unwrap();
        for k in keys {
            if let Some(l) = lanes.get_mut(k) {
                l.in_flight = l.in_flight.saturating_sub(1);
                if l.in_flight == 0 {
                    lanes.remove(k);
                }
            }
        }
        drop(lanes);
        self.released.notify_waiters();
    }

    /// A batch of this lane is being replayed (from the decision on, through any wait or
    /// metadata refresh before it is re-sent): until the lane drains, an out-of-order sequence
    /// error on a later batch is fairlead's doing and that batch is replayed too.
    pub fn mark_recovering(&self, key: &LaneKey) {
        if let Some(l) = self.lanes.lock().unwrap().get_mut(key) {
            l.recovering = true;
        }
    }

    /// A request of this lane is being sent again: until the lane drains, later requests wait
    /// rather than join its connection (a coordinator could otherwise apply a later commit
    /// before an earlier one it asked to be sent again).
    pub fn hold(&self, key: &LaneKey) {
        if let Some(l) = self.lanes.lock().unwrap().get_mut(key) {
            l.held = true;
        }
    }

    /// Whether no other batch of this lane is in flight; if so, the lane is held (see
    /// [`Lanes::hold`]) in the same step, so nothing sent later can reach the broker before the
    /// one in flight is sent again.
    pub fn hold_if_alone(&self, key: &LaneKey) -> bool {
        let mut lanes = self.lanes.lock().unwrap();
        match lanes.get_mut(key) {
            Some(l) if l.in_flight <= 1 => {
                l.held = true;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    pub fn recovering(&self, key: &LaneKey) -> bool {
        self.lanes
            .lock()
            .unwrap()
            .get(key)
            .is_some_and(|l| l.recovering)
    }

    /// Lanes with batches in flight (for tests and the admin view).
    pub fn len(&self) -> usize {
        self.lanes.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamConfig;
    use kafka_protocol::protocol::StrBytes;
    use std::time::Duration;

    fn key(client: &str, p: i32) -> LaneKey {
        LaneKey::Partition {
            client: client.into(),
            topic: TopicRef::Name(StrBytes::from_static_str("t")),
            partition: p,
        }
    }

    fn want(client: &str, p: i32, node: i32, up: &Arc<Upstream>) -> Want {
        Want {
            key: key(client, p),
            node,
            upstream: Some(up.clone()),
            alone: false,
        }
    }

    async fn upstream() -> (Arc<Upstream>, tokio::net::TcpListener) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cfg = UpstreamConfig::plain(Duration::from_secs(1), 1 << 20);
        (
            Upstream::connect(1, &l.local_addr().unwrap().to_string(), &cfg, false)
                .await
                .unwrap(),
            l,
        )
    }

    #[tokio::test]
    async fn same_node_joins_the_lane_connection_another_node_waits_for_the_lane_to_drain() {
        let lanes = Arc::new(Lanes::default());
        let (a, _la) = upstream().await;
        let (b, _lb) = upstream().await;
        let (c, waited) = lanes.acquire(vec![want("x", 0, 1, &a)]).await;
        assert!(!waited);
        assert_eq!(c[0].as_ref().unwrap().id(), a.id());
        // Same producer, same node, another connection (e.g. the producer switched connections):
        // it goes on the lane's connection, keeping the order.
        let (c, waited) = lanes.acquire(vec![want("x", 0, 1, &b)]).await;
        assert!(!waited);
        assert_eq!(c[0].as_ref().unwrap().id(), a.id());
        // Another producer or another partition: its own lane.
        let (c, _) = lanes
            .acquire(vec![want("y", 0, 1, &b), want("x", 1, 1, &b)])
            .await;
        assert_eq!(c[0].as_ref().unwrap().id(), b.id());
        assert_eq!(c[1].as_ref().unwrap().id(), b.id());
        // Another node: waits until both earlier batches of x/0 are resolved.
        let l2 = lanes.clone();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { l2.acquire(vec![want("x", 0, 2, &b2)]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a new node must wait for the batches in flight"
        );
        lanes.release(&[key("x", 0)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one batch still in flight");
        lanes.release(&[key("x", 0)]);
        let (c, waited) = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(waited);
        assert_eq!(c[0].as_ref().unwrap().id(), b.id());
    }

    #[tokio::test]
    async fn a_batch_that_goes_alone_waits_for_the_lane_to_drain_even_to_the_same_node() {
        let lanes = Arc::new(Lanes::default());
        let (a, _la) = upstream().await;
        lanes.acquire(vec![want("x", 0, 1, &a)]).await;
        let l2 = lanes.clone();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            let mut w = want("x", 0, 1, &a2);
            w.alone = true;
            l2.acquire(vec![w]).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "a batch going alone must not join the lane's connection"
        );
        lanes.release(&[key("x", 0)]);
        let (_, waited) = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(waited);
    }
}
