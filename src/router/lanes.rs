//! Per-partition produce ordering on one client connection.
//!
//! A producer pipelines several Produce requests on a connection; per partition, the broker must
//! see its batches in the order the client sent them (sequence numbers for idempotent producers,
//! plain record order for everyone else). When fairlead starts sending a partition somewhere new
//! (a proactive reroute after learning of a leader change), batches still in flight to the old
//! place may fail and be replayed to the new one; a new batch sent there first would overtake
//! them. So a partition's batches may only go to a new route once everything in flight on the
//! old route has been resolved (answered, or replayed and answered): the new batch waits.
//!
//! A route is one upstream connection (Kafka orders requests per connection, not per broker).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::leadership::TopicRef;

#[derive(Debug, Clone, Copy)]
struct Lane {
    in_flight: u32,
    route: u64,
    /// A batch of this partition was replayed and later ones may meet a sequence gap.
    recovering: bool,
}

#[derive(Default)]
pub struct Lanes {
    lanes: Mutex<HashMap<(TopicRef, i32), Lane>>,
    released: Notify,
}

impl Lanes {
    /// Waits until each partition can go on its route without overtaking earlier batches, then
    /// counts them in flight. Returns whether it had to wait.
    pub async fn acquire(&self, wanted: &[((TopicRef, i32), u64)]) -> bool {
        let mut waited = false;
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut lanes = self.lanes.lock().unwrap();
                let clear = wanted.iter().all(|(k, route)| {
                    lanes
                        .get(k)
                        .is_none_or(|l| l.in_flight == 0 || l.route == *route)
                });
                if clear {
                    for (k, route) in wanted {
                        let l = lanes.entry(k.clone()).or_insert(Lane {
                            in_flight: 0,
                            route: *route,
                            recovering: false,
                        });
                        l.in_flight += 1;
                        l.route = *route;
                    }
                    return waited;
                }
            }
            waited = true;
            notified.await;
        }
    }

    /// The batches of these partitions (one each) are resolved.
    pub fn release<'a>(&self, keys: impl IntoIterator<Item = &'a (TopicRef, i32)>) {
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

    /// A batch of this partition is being replayed: until the lane drains, an out-of-order
    /// sequence error on a later batch is fairlead's doing and that batch is replayed too.
    pub fn mark_recovering(&self, key: &(TopicRef, i32)) {
        if let Some(l) = self.lanes.lock().unwrap().get_mut(key) {
            l.recovering = true;
        }
    }

    pub fn recovering(&self, key: &(TopicRef, i32)) -> bool {
        self.lanes
            .lock()
            .unwrap()
            .get(key)
            .is_some_and(|l| l.recovering)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn key(p: i32) -> (TopicRef, i32) {
        (
            TopicRef::Name(kafka_protocol::protocol::StrBytes::from_static_str("t")),
            p,
        )
    }

    #[tokio::test]
    async fn same_route_pipelines_new_route_waits_for_the_old_one_to_drain() {
        let lanes = Arc::new(Lanes::default());
        assert!(!lanes.acquire(&[(key(0), 1)]).await);
        assert!(!lanes.acquire(&[(key(0), 1)]).await, "same route: no wait");
        assert!(
            !lanes.acquire(&[(key(1), 2)]).await,
            "other partition: no wait"
        );
        let l2 = lanes.clone();
        let waiter = tokio::spawn(async move { l2.acquire(&[(key(0), 2)]).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "route change must wait for in-flight batches"
        );
        lanes.release(&[key(0)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !waiter.is_finished(),
            "one batch still in flight on the old route"
        );
        lanes.release(&[key(0)]);
        assert!(tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap());
    }
}
