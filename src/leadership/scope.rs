//! Which topics fairlead keeps leadership for: the ones its clients use.
//!
//! fairlead runs in every pod of a fleet, in front of clusters of 10^4 to 10^5 partitions. What
//! it asks the cluster, and what it holds, must follow what its own clients use, never the
//! cluster's size. So it tracks a topic only once a client uses it:
//! - a request names it (Produce, Fetch, ListOffsets...): [`super::Leadership::route_of`] stamps
//!   the topic on every routed request; a topic fairlead does not know yet is *wanted*, and the
//!   next refresh asks for it ([`Scope::want`]: at most once per topic per [`WANT_EVERY`]);
//! - a client asks Metadata for it by name (an answer for every topic teaches fairlead only about
//!   topics it already tracks).
//!
//! Its own Metadata requests name exactly the tracked and wanted topics. A topic no client used
//! for `forget_after` is dropped at the next periodic refresh, and so is one the cluster says
//! does not exist. Tracked and wanted topics together are capped at `max_topics`: a client naming
//! 100,000 unknown topics can neither make fairlead hold them nor refresh in a loop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// How often one wanted topic may start a refresh: a flood of requests naming a topic the
/// cluster does not have costs one Metadata request per topic per interval.
pub const WANT_EVERY: Duration = Duration::from_secs(1);

/// Milliseconds since fairlead started: when a topic was last used. A plain integer, so a
/// stamp costs one relaxed store on the routing path.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// When something was last used ([`now_ms`]).
#[derive(Debug, Default)]
pub struct Stamp(AtomicU64);

impl Stamp {
    pub fn at(ms: u64) -> Stamp {
        Stamp(AtomicU64::new(ms))
    }

    pub fn touch(&self, ms: u64) {
        // Only a changed value is stored: most stamps on a busy topic are in the same ms, and
        // a load keeps the cache line shared between the threads that route it.
        if self.0.load(Ordering::Relaxed) < ms {
            self.0.store(ms, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Clone for Stamp {
    fn clone(&self) -> Stamp {
        Stamp::at(self.get())
    }
}

/// The bounds of what fairlead tracks (config `metadata_max_topics`,
/// `metadata_forget_after_ms`).
pub use crate::config::MetadataScope as Limits;

/// A topic a request named before fairlead knew it (or a partition of it).
#[derive(Debug, Clone, Copy)]
struct Wanted {
    /// When a refresh was last started for it.
    asked_at: u64,
    /// Not answered yet: fairlead's next Metadata request names it.
    pending: bool,
}

/// Topics asked for by requests before fairlead knew them, with the bounds.
#[derive(Default)]
pub struct Scope {
    pub limits: Limits,
    wanted: DashMap<String, Wanted>,
    /// When answered entries were last swept ([`Scope::sweep`]).
    swept_at: AtomicU64,
}

impl Scope {
    pub fn new(limits: Limits) -> Scope {
        Scope {
            limits,
            ..Scope::default()
        }
    }

    /// A request named `topic`, which fairlead does not track (`tracked` is then the number of
    /// topics it does), or a partition of it fairlead does not know (`tracked` is `None`).
    /// Whether a refresh should be started for it now: not if one was started for it less than
    /// [`WANT_EVERY`] ago (even if the cluster answered that it has no such topic), nor when a
    /// new topic would take the tracked and wanted topics past the cap.
    pub fn want(&self, topic: &str, tracked: Option<usize>, now: u64) -> bool {
        if let Some(mut w) = self.wanted.get_mut(topic) {
            if now.saturating_sub(w.asked_at) < WANT_EVERY.as_millis() as u64 {
                return false;
            }
            *w = Wanted {
                asked_at: now,
                pending: true,
            };
            return true;
        }
        let full = |n: usize| n + self.wanted.len() >= self.limits.max_topics;
        if tracked.is_some_and(full) {
            self.sweep(now);
            if tracked.is_some_and(full) {
                crate::metrics::topic_refused();
                return false;
            }
        }
        self.wanted.insert(
            topic.to_string(),
            Wanted {
                asked_at: now,
                pending: true,
            },
        );
        true
    }

    #[cfg(test)]
    pub fn is_wanted(&self, topic: &str) -> bool {
        self.wanted.get(topic).is_some_and(|w| w.pending)
    }

    /// The cluster answered for `topic` (learned, or said it does not exist): it is not asked
    /// for again, and its entry only holds back another refresh for it until [`WANT_EVERY`].
    pub fn answered(&self, topic: &str) {
        if let Some(mut w) = self.wanted.get_mut(topic) {
            w.pending = false;
        }
    }

    /// The topics fairlead's next Metadata request names beside the tracked ones.
    pub fn wanted_names(&self) -> impl Iterator<Item = String> + '_ {
        self.wanted
            .iter()
            .filter(|e| e.pending)
            .map(|e| e.key().clone())
    }

    /// Whether something last used at `used` is forgotten at `now`.
    pub fn unused(&self, used: u64, now: u64) -> bool {
        now.saturating_sub(used) >= self.limits.forget_after.as_millis() as u64
    }

    /// Drops answered entries that no longer hold anything back, and pending ones no request
    /// asked for within `forget_after` (the cluster never answered for them).
    pub fn forget_wanted(&self, now: u64) {
        self.wanted
            .retain(|_, w| !self.unused(w.asked_at, now) && (w.pending || Self::holding(w, now)));
        crate::capacity::shrink_dash(&self.wanted);
        self.swept_at.store(now, Ordering::Relaxed);
    }

    fn holding(w: &Wanted, now: u64) -> bool {
        now.saturating_sub(w.asked_at) < WANT_EVERY.as_millis() as u64
    }

    /// [`Scope::forget_wanted`] when the cap is reached, at most once per [`WANT_EVERY`]: a
    /// flood of distinct unknown topics fills the cap, and answered entries must not keep new
    /// topics out until the next periodic refresh.
    fn sweep(&self, now: u64) {
        let last = self.swept_at.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WANT_EVERY.as_millis() as u64
            && self
                .swept_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.forget_wanted(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(max_topics: usize) -> Scope {
        Scope::new(Limits {
            max_topics,
            forget_after: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_wanted_topic_starts_at_most_one_refresh_per_interval() {
        let s = scope(10);
        assert!(s.want("t", Some(0), 1_000));
        assert!(!s.want("t", Some(0), 1_500));
        assert!(!s.want("t", Some(0), 1_999));
        assert!(s.want("t", Some(0), 2_000));
        assert!(
            s.want("u", Some(0), 2_000),
            "another topic is not held back"
        );
        assert!(
            s.want("known", None, 2_000),
            "a partition of a tracked topic"
        );
        assert!(!s.want("known", None, 2_001));
    }

    #[test]
    fn tracked_and_wanted_topics_are_capped_together() {
        let s = scope(3);
        assert!(s.want("a", Some(1), 0));
        assert!(s.want("b", Some(1), 0));
        assert!(!s.want("c", Some(1), 0), "1 tracked + 2 wanted reach 3");
        assert!(!s.is_wanted("c"));
        assert!(s.want("tracked", None, 0), "no new topic: not capped");
        s.answered("a");
        s.answered("tracked");
        assert!(
            s.want("c", Some(1), 1_500),
            "answered entries stop counting once they hold nothing back"
        );
    }

    #[test]
    fn wanted_topics_are_forgotten_when_no_one_asks_again() {
        let s = scope(10);
        s.want("old", Some(0), 0);
        s.want("new", Some(0), 50_000);
        s.forget_wanted(60_000);
        assert!(!s.is_wanted("old"));
        assert!(s.is_wanted("new"));
    }

    #[test]
    fn an_answered_topic_is_not_asked_for_again_nor_refreshed_for_within_the_interval() {
        let s = scope(10);
        assert!(s.want("gone", Some(0), 0));
        s.answered("gone");
        assert!(!s.is_wanted("gone"));
        assert_eq!(s.wanted_names().count(), 0);
        assert!(!s.want("gone", Some(0), 500), "the cluster just said no");
        assert!(s.want("gone", Some(0), 1_000));
    }

    #[test]
    fn answered_entries_make_room_under_the_cap_once_they_hold_nothing_back() {
        let s = scope(2);
        assert!(s.want("a", Some(0), 0));
        assert!(s.want("b", Some(0), 0));
        s.answered("a");
        s.answered("b");
        assert!(
            !s.want("c", Some(0), 500),
            "a and b still hold back their refreshes"
        );
        assert!(
            s.want("c", Some(0), 1_500),
            "swept: a and b no longer count"
        );
    }

    #[test]
    fn a_stamp_only_moves_forward() {
        let st = Stamp::at(5);
        st.touch(3);
        assert_eq!(st.get(), 5);
        st.touch(9);
        assert_eq!(st.get(), 9);
    }
}
