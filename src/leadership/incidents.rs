//! One INFO line per leadership change, saying what fairlead did about it.
//!
//! A leader change opens an incident for its partition. For the next [`WINDOW`] fairlead counts
//! the partition requests it rerouted and the leadership errors it absorbed for that partition,
//! and when the window closes (or the partition moves again) it logs one line: topic,
//! partition, old and new leader, requests rerouted, errors absorbed, and the time from the
//! first error to the last absorbed answer. No per-request INFO lines.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::info;

use super::{LeaderChange, Leadership, TopicRef};

/// How long after a leader change its requests are counted.
pub const WINDOW: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Incident {
    old_leader: i32,
    new_leader: i32,
    epoch: i32,
    opened: Instant,
    rerouted: u64,
    absorbed: u64,
    first_error: Option<Instant>,
    last_absorbed: Option<Instant>,
}

/// What an incident amounted to, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub topic: String,
    pub partition: i32,
    pub old_leader: i32,
    pub new_leader: i32,
    pub leader_epoch: i32,
    pub rerouted: u64,
    pub absorbed: u64,
    pub took: Duration,
}

#[derive(Default)]
pub struct Incidents {
    open: Mutex<HashMap<String, HashMap<i32, Incident>>>,
    /// Cheap check on the request path: nothing to count when no incident is open.
    count: AtomicUsize,
}

impl Incidents {
    pub fn leader_changed(&self, c: &LeaderChange) {
        let mut open = self.open.lock().unwrap();
        let parts = open.entry(c.topic.clone()).or_default();
        let old_leader = match parts.remove(&c.partition) {
            Some(prev) => {
                self.count.fetch_sub(1, Ordering::Relaxed);
                log(&close(&c.topic, c.partition, &prev));
                prev.new_leader
            }
            None => c.old_leader,
        };
        parts.insert(
            c.partition,
            Incident {
                old_leader,
                new_leader: c.new_leader,
                epoch: c.epoch,
                opened: Instant::now(),
                rerouted: 0,
                absorbed: 0,
                first_error: None,
                last_absorbed: None,
            },
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` requests for the partition went somewhere other than where the client sent them.
    pub fn rerouted(&self, l: &Leadership, topic: &TopicRef, partition: i32) {
        self.with(l, topic, partition, |i| i.rerouted += 1);
    }

    /// A leadership error came back for the partition.
    pub fn error_seen(&self, l: &Leadership, topic: &TopicRef, partition: i32) {
        self.with(l, topic, partition, |i| {
            i.first_error.get_or_insert_with(Instant::now);
        });
    }

    /// A leadership error of the partition was replaced by a broker's answer.
    pub fn absorbed(&self, l: &Leadership, topic: &TopicRef, partition: i32) {
        self.with(l, topic, partition, |i| {
            i.absorbed += 1;
            i.last_absorbed = Some(Instant::now());
        });
    }

    fn with(
        &self,
        l: &Leadership,
        topic: &TopicRef,
        partition: i32,
        f: impl FnOnce(&mut Incident),
    ) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let name = match topic {
            TopicRef::Name(n) => std::borrow::Cow::Borrowed(n.as_str()),
            TopicRef::Id(_) => match l.name_of(topic) {
                Some(n) => std::borrow::Cow::Owned(n),
                None => return,
            },
        };
        let mut open = self.open.lock().unwrap();
        if let Some(i) = open
            .get_mut(name.as_ref())
            .and_then(|p| p.get_mut(&partition))
        {
            f(i);
        }
    }

    /// Closes and logs the incidents whose window is over; returns them.
    pub fn sweep(&self) -> Vec<Closed> {
        let mut closed = Vec::new();
        let mut open = self.open.lock().unwrap();
        for (topic, parts) in open.iter_mut() {
            parts.retain(|p, i| {
                if i.opened.elapsed() < WINDOW {
                    return true;
                }
                closed.push(close(topic, *p, i));
                false
            });
        }
        open.retain(|_, parts| !parts.is_empty());
        self.count.fetch_sub(closed.len(), Ordering::Relaxed);
        drop(open);
        for c in &closed {
            log(c);
        }
        closed
    }
}

fn close(topic: &str, partition: i32, i: &Incident) -> Closed {
    let took = match (i.first_error, i.last_absorbed) {
        (Some(a), Some(b)) if b > a => b - a,
        _ => Duration::ZERO,
    };
    Closed {
        topic: topic.to_string(),
        partition,
        old_leader: i.old_leader,
        new_leader: i.new_leader,
        leader_epoch: i.epoch,
        rerouted: i.rerouted,
        absorbed: i.absorbed,
        took,
    }
}

fn log(c: &Closed) {
    if c.rerouted == 0 && c.absorbed == 0 {
        // Nobody was sending to it: nothing absorbed, nothing to report above DEBUG.
        tracing::debug!(
            topic = c.topic.as_str(),
            partition = c.partition,
            old_leader = c.old_leader,
            new_leader = c.new_leader,
            "leadership change (no traffic)"
        );
        return;
    }
    info!(
        topic = c.topic.as_str(),
        partition = c.partition,
        old_leader = c.old_leader,
        new_leader = c.new_leader,
        leader_epoch = c.leader_epoch,
        requests_rerouted = c.rerouted,
        errors_absorbed = c.absorbed,
        took_ms = c.took.as_millis() as u64,
        "leadership change absorbed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn change(p: i32, old: i32, new: i32) -> LeaderChange {
        LeaderChange {
            topic: "t".into(),
            partition: p,
            old_leader: old,
            new_leader: new,
            epoch: 1,
        }
    }

    #[test]
    fn counts_per_partition_and_closes_on_the_next_change() {
        let inc = Incidents::default();
        let l = Leadership::new();
        let t = TopicRef::Name(StrBytes::from_static_str("t"));
        inc.rerouted(&l, &t, 0); // nothing open: not counted
        inc.leader_changed(&change(0, 1, 2));
        inc.rerouted(&l, &t, 0);
        inc.rerouted(&l, &t, 0);
        inc.error_seen(&l, &t, 0);
        inc.absorbed(&l, &t, 0);
        inc.rerouted(&l, &t, 1); // another partition: no incident
        inc.leader_changed(&change(0, 2, 3));
        // the first incident closed with its counts; the second one is open
        assert_eq!(inc.count.load(Ordering::Relaxed), 1);
        let open = inc.open.lock().unwrap();
        let i = &open["t"][&0];
        assert_eq!((i.old_leader, i.new_leader, i.rerouted), (2, 3, 0));
    }

    #[test]
    fn the_window_closes_incidents() {
        let inc = Incidents::default();
        inc.leader_changed(&change(0, 1, 2));
        assert!(inc.sweep().is_empty());
        inc.open
            .lock()
            .unwrap()
            .get_mut("t")
            .unwrap()
            .get_mut(&0)
            .unwrap()
            .opened -= WINDOW;
        let closed = inc.sweep();
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].old_leader, closed[0].new_leader), (1, 2));
        assert_eq!(inc.count.load(Ordering::Relaxed), 0);
    }
}
