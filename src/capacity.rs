//! Maps give their memory back when they empty. A `HashMap` never shrinks on its own: one that
//! once held an entry per connection of a burst (10,000 producers' lanes, a flood of topics
//! or groups) would keep room for all of them after they are gone (issue 20, item 4). Callers
//! call these after removing entries; they shrink a map whose entries fill less than a quarter
//! of its room to twice its entries, so an insert or removal costs O(1) amortized.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

use dashmap::DashMap;

/// Below this much room a map is left as it is: too small to matter.
const FLOOR: usize = 64;

fn sparse(len: usize, capacity: usize) -> bool {
    capacity > FLOOR && len.saturating_mul(4) < capacity
}

/// Shrinks `map` if it is sparse (see the module's doc).
pub fn shrink<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if sparse(map.len(), map.capacity()) {
        map.shrink_to(map.len() * 2);
    }
}

/// Shrinks `map`'s shards if the map is sparse: locks each shard in turn, so call it from a
/// periodic sweep, not per request.
pub fn shrink_dash<K: Eq + Hash + Clone, V, S: BuildHasher + Clone>(map: &DashMap<K, V, S>) {
    if sparse(map.len(), map.capacity()) {
        map.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_after_a_burst_gives_its_room_back() {
        let mut m: HashMap<u64, [u8; 64]> = HashMap::new();
        for i in 0..10_000 {
            m.insert(i, [0; 64]);
        }
        let full = m.capacity();
        assert!(full >= 10_000);
        for i in 0..10_000 {
            m.remove(&i);
            shrink(&mut m);
        }
        assert!(
            m.capacity() <= FLOOR,
            "capacity {} of {full} kept",
            m.capacity()
        );
    }

    #[test]
    fn a_map_in_use_is_not_shrunk_on_every_removal() {
        let mut m: HashMap<u64, u64> = (0..1000).map(|i| (i, i)).collect();
        let cap = m.capacity();
        // Half gone: still more than a quarter full, so the room stays for the next burst.
        // (capacity() counts the room left before a resize, which deleted slots also take.)
        for i in 0..500 {
            m.remove(&i);
            shrink(&mut m);
        }
        assert!(m.capacity() > cap * 3 / 4, "{} of {cap}", m.capacity());
        // Nine in ten gone: shrunk, to room for twice what is left.
        for i in 500..900 {
            m.remove(&i);
            shrink(&mut m);
        }
        assert!(m.capacity() < cap / 2, "{} of {cap}", m.capacity());
        assert!(m.capacity() >= 100);
    }

    #[test]
    fn a_small_map_is_left_alone() {
        let mut m: HashMap<u64, u64> = (0..40).map(|i| (i, i)).collect();
        let cap = m.capacity();
        m.clear();
        shrink(&mut m);
        assert_eq!(m.capacity(), cap);
    }

    #[test]
    fn a_dashmap_swept_after_a_burst_gives_its_room_back() {
        let m: DashMap<u64, [u8; 64]> = DashMap::new();
        for i in 0..10_000 {
            m.insert(i, [0; 64]);
        }
        let full = m.capacity();
        m.retain(|k, _| *k < 10);
        shrink_dash(&m);
        assert!(
            m.capacity() < full / 20,
            "capacity {} of {full} kept",
            m.capacity()
        );
        assert_eq!(m.len(), 10);
    }
}
