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
//! answered. A producer is identified by its producer id and epoch, or, without one, by its
//! address, client id and principal (see [`Producer`]).
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

use std::collections::{HashMap, VecDeque};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::leadership::coordinators::CoordinatorKey;
use crate::leadership::TopicRef;
use crate::upstream::pool::Owner;
use crate::upstream::Upstream;

/// How long after a leader change non-idempotent batches of a partition go one at a time.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LaneKey {
    /// A producer's partition, across the producer's connections.
    Partition {
        producer: Producer,
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

/// Who a producer is, across its connections. An idempotent or transactional producer is its
/// producer id and epoch: unique to one producer instance, so two applications never share a
/// lane (nor, through it, a broker connection) even with the same client id from the same
/// address, as every application of a pod has (127.0.0.1; librdkafka's default client id is
/// "rdkafka", two JVMs both have "producer-1"). Any other producer is named by its address,
/// client id and, in SASL passthrough, its principal (`session::ClientName`): the only handle
/// that spans its connections. Two such producers of one principal with one client id in one
/// pod share lanes (each waits on the other's replays; neither acts with the other's authority).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Producer {
    Id { id: i64, epoch: i16 },
    Named(Arc<str>),
}

impl Producer {
    /// The producer as the reroute pools know it: a tag that keeps its batches on broker
    /// connections of its own (`upstream::pool`).
    pub fn owner(&self) -> Owner {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        Owner(h.finish())
    }
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
    /// Requests queued for this lane, oldest first (see [`Ticket`]): one goes only when every
    /// request queued before it has gone or given up, so a later batch never overtakes an
    /// earlier one that is waiting, even when it could join the lane's connection at once.
    queue: VecDeque<u64>,
}

impl Lane {
    fn new(node: i32) -> Lane {
        Lane {
            in_flight: 0,
            node,
            upstream: None,
            recovering: false,
            held: false,
            queue: VecDeque::new(),
        }
    }

    /// Whether request `id`, first in this lane's queue, may go to `node` now.
    fn clear_for(&self, id: u64, node: i32, alone: bool) -> bool {
        self.queue.front() == Some(&id)
            && (self.in_flight == 0
                || (!alone
                    && !self.held
                    && self.node == node
                    && self.upstream.as_ref().is_some_and(|u| u.usable())))
    }
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

/// A lane a request takes: a [`Want`] whose connection is chosen when the lane is granted.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: LaneKey,
    pub node: i32,
    pub alone: bool,
}

#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<HashMap<LaneKey, Lane>>,
    released: Notify,
    next_ticket: AtomicU64,
}

/// A request's place in the queues of its lanes, taken in request order on the client
/// connection's reader (`partitioned::dispatch`) and kept until the lanes are granted or the
/// ticket is dropped: the reader can go on reading while the request waits, and no later
/// request of the same lanes goes first. Dropped before it is granted, it leaves the queues.
pub struct Ticket<L: Deref<Target = Lanes> = Arc<Lanes>> {
    lanes: L,
    id: u64,
    claims: Vec<Claim>,
    granted: bool,
}

impl Lanes {
    /// Queues a request for `claims`' lanes, behind every request queued before it.
    pub fn enqueue(self: &Arc<Self>, claims: Vec<Claim>) -> Ticket {
        Ticket::new(self.clone(), claims)
    }

    /// Waits until every batch can go without overtaking an earlier batch of its lane, counts
    /// them in flight, and returns the connection each must use (the lane's own when it is
    /// already sending to that node). The bool says whether it had to wait.
    pub async fn acquire(&self, wanted: Vec<Want>) -> (Vec<Option<Arc<Upstream>>>, bool) {
        let mut claims = Vec::with_capacity(wanted.len());
        let mut ups = Vec::with_capacity(wanted.len());
        for w in wanted {
            ups.push((w.node, w.upstream));
            claims.push(Claim {
                key: w.key,
                node: w.node,
                alone: w.alone,
            });
        }
        let upstream_of = |node: i32| {
            ups.iter()
                .find(|(n, _)| *n == node)
                .and_then(|(_, u)| u.clone())
        };
        let mut ticket = Ticket::new(self, claims);
        match ticket.take(upstream_of, None).await {
            Ok(granted) => granted,
            Err(Expired) => unreachable!("no deadline"),
        }
    }

    /// Grants request `id` its lanes if each is free for it (it is first in the lane's queue,
    /// and the lane is empty or it may join the lane's connection): counts its batches in
    /// flight and returns the connection each must use.
    fn grant(
        &self,
        id: u64,
        claims: &[Claim],
        upstream_of: impl Fn(i32) -> Option<Arc<Upstream>>,
    ) -> Option<Vec<Option<Arc<Upstream>>>> {
        let mut map = self.lanes.lock().unwrap();
        let clear = claims.iter().all(|c| {
            map.get(&c.key)
                .is_some_and(|l| l.clear_for(id, c.node, c.alone))
        });
        if !clear {
            return None;
        }
        let mut chosen = Vec::with_capacity(claims.len());
        for c in claims {
            let l = map.get_mut(&c.key).expect("queued lane");
            l.queue.retain(|t| *t != id);
            if l.in_flight == 0 {
                l.node = c.node;
                l.upstream = upstream_of(c.node);
            }
            l.in_flight += 1;
            chosen.push(l.upstream.clone());
        }
        drop(map);
        // The next request queued on these lanes may now go too (it may join the connection).
        self.released.notify_waiters();
        Some(chosen)
    }

    /// One batch of each of these lanes is resolved.
    pub fn release<'a>(&self, keys: impl IntoIterator<Item = &'a LaneKey>) {
        let mut lanes = self.lanes.lock().unwrap();
        for k in keys {
            if let Some(l) = lanes.get_mut(k) {
                l.in_flight = l.in_flight.saturating_sub(1);
                if l.in_flight == 0 {
                    if l.queue.is_empty() {
                        lanes.remove(k);
                        crate::capacity::shrink(&mut lanes);
                    } else {
                        // Drained: what held it is over; the next request starts it afresh.
                        l.upstream = None;
                        l.recovering = false;
                        l.held = false;
                    }
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

/// A ticket's lanes were not granted before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expired;

impl<L: Deref<Target = Lanes>> Ticket<L> {
    fn new(lanes: L, claims: Vec<Claim>) -> Ticket<L> {
        let id = lanes.next_ticket.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = lanes.lanes.lock().unwrap();
            for c in &claims {
                map.entry(c.key.clone())
                    .or_insert_with(|| Lane::new(c.node))
                    .queue
                    .push_back(id);
            }
        }
        Ticket {
            lanes,
            id,
            claims,
            granted: false,
        }
    }

    /// The lanes, if every one can be taken now: each batch counted in flight, with the
    /// connection it must use (the lane's own when it is already sending to that node, else
    /// `upstream_of(node)`).
    pub fn try_take(
        &mut self,
        upstream_of: impl Fn(i32) -> Option<Arc<Upstream>>,
    ) -> Option<Vec<Option<Arc<Upstream>>>> {
        let chosen = self.lanes.grant(self.id, &self.claims, upstream_of)?;
        self.granted = true;
        Some(chosen)
    }

    /// The lane of each claim, in claim order.
    pub fn keys(&self) -> impl Iterator<Item = &LaneKey> {
        self.claims.iter().map(|c| &c.key)
    }

    /// The node each claim now goes to, in claim order (connecting may change it).
    pub fn retarget(&mut self, nodes: impl Iterator<Item = i32>) {
        for (c, node) in self.claims.iter_mut().zip(nodes) {
            c.node = node;
        }
    }

    /// Waits for the lanes (see [`Ticket::try_take`]) until `deadline`. The bool says whether it
    /// had to wait.
    pub async fn take(
        &mut self,
        upstream_of: impl Fn(i32) -> Option<Arc<Upstream>>,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Option<Arc<Upstream>>>, bool), Expired> {
        let mut waited = false;
        loop {
            let notified = self.lanes.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(chosen) = self.lanes.grant(self.id, &self.claims, &upstream_of) {
                self.granted = true;
                return Ok((chosen, waited));
            }
            waited = true;
            match deadline {
                None => notified.await,
                Some(d) => {
                    if tokio::time::timeout_at(d.into(), notified).await.is_err() {
                        return Err(Expired);
                    }
                }
            }
        }
    }
}

impl<L: Deref<Target = Lanes>> Drop for Ticket<L> {
    fn drop(&mut self) {
        if self.granted {
            return;
        }
        let mut map = self.lanes.lanes.lock().unwrap();
        for c in &self.claims {
            if let Some(l) = map.get_mut(&c.key) {
                l.queue.retain(|t| *t != self.id);
                if l.in_flight == 0 && l.queue.is_empty() {
                    map.remove(&c.key);
                    crate::capacity::shrink(&mut map);
                }
            }
        }
        drop(map);
        self.lanes.released.notify_waiters();
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
            producer: Producer::Named(client.into()),
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
    async fn the_lanes_of_a_burst_of_producers_give_their_room_back_when_they_drain() {
        let lanes = Arc::new(Lanes::default());
        let (a, _la) = upstream().await;
        let producers: Vec<String> = (0..10_000).map(|i| format!("p{i}")).collect();
        for p in &producers {
            lanes.acquire(vec![want(p, 0, 1, &a)]).await;
        }
        let full = lanes.lanes.lock().unwrap().capacity();
        assert!(full >= 10_000);
        for p in &producers {
            lanes.release(&[key(p, 0)]);
        }
        let left = lanes.lanes.lock().unwrap().capacity();
        assert!(left < 100, "{left} of {full} lanes' room kept");
        // Tickets dropped before their grant free theirs too.
        let tickets: Vec<Ticket> = producers
            .iter()
            .map(|p| {
                lanes.enqueue(vec![Claim {
                    key: key(p, 0),
                    node: 1,
                    alone: false,
                }])
            })
            .collect();
        assert!(lanes.lanes.lock().unwrap().capacity() >= 10_000);
        drop(tickets);
        assert!(lanes.lanes.lock().unwrap().capacity() < 100);
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

    fn claim(client: &str, p: i32, node: i32) -> Claim {
        Claim {
            key: key(client, p),
            node,
            alone: false,
        }
    }

    /// Issue 20, item 5: the reader queues a request and reads on. A later request of the lane
    /// that could join the lane's connection at once still waits for the earlier one queued
    /// for another node; a ticket dropped unfinished leaves the queue.
    #[tokio::test]
    async fn tickets_go_in_the_order_they_were_queued() {
        let lanes = Arc::new(Lanes::default());
        let (a, _la) = upstream().await;
        let (b, _lb) = upstream().await;
        let on = |up: &Arc<Upstream>| {
            let up = up.clone();
            move |_| Some(up.clone())
        };
        // x/0 in flight to node 1 on a.
        let mut first = lanes.enqueue(vec![claim("x", 0, 1)]);
        assert!(first.try_take(on(&a)).is_some());
        // Queued for node 2: waits for the lane to drain.
        let mut second = lanes.enqueue(vec![claim("x", 0, 2)]);
        assert!(second.try_take(on(&b)).is_none());
        // Queued after it for node 1: could join a, but must not overtake the second.
        let mut third = lanes.enqueue(vec![claim("x", 0, 1), claim("x", 1, 1)]);
        assert!(third.try_take(on(&a)).is_none());
        // x/1 alone: queued behind the third, which claims it too.
        let mut fourth = lanes.enqueue(vec![claim("x", 1, 1)]);
        assert!(
            fourth.try_take(on(&a)).is_none(),
            "x/1 is queued behind the third request"
        );
        // Another producer's lane is not held by x's queues.
        let mut other = lanes.enqueue(vec![claim("y", 0, 1)]);
        assert!(other.try_take(on(&a)).is_some());
        lanes.release(&[key("y", 0)]);
        drop(fourth);
        lanes.release(&[key("x", 0)]);
        let (c, waited) = second.take(on(&b), None).await.unwrap();
        assert!(!waited);
        assert_eq!(c[0].as_ref().unwrap().id(), b.id());
        // The third now waits for the second's batch (node 2) to drain.
        assert!(third.try_take(on(&a)).is_none());
        let expired = lanes
            .enqueue(vec![claim("x", 0, 2)])
            .take(on(&b), Some(Instant::now() + Duration::from_millis(30)))
            .await;
        assert_eq!(
            expired.unwrap_err(),
            Expired,
            "behind the third, past its deadline"
        );
        lanes.release(&[key("x", 0)]);
        let (c, _) = third.take(on(&a), None).await.unwrap();
        assert!(c.iter().all(|u| u.as_ref().unwrap().id() == a.id()));
        lanes.release(&[key("x", 0), key("x", 1)]);
        assert!(lanes.is_empty(), "nothing queued or in flight is left");
    }
}
