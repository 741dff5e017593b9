//! A map with a cap on its keys, for detector state that an attacker can
//! grow (every spoofed source, every random subdomain is a new key).
//!
//! When the map is full, the eighth of the entries seen least recently is
//! dropped at once: one O(n) selection per n/8 insertions keeps insertion
//! amortised O(1), where dropping one entry at a time would scan the whole
//! map for every new key of a flood.

use std::hash::Hash;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

/// A map of at most `cap` keys; the least recently touched go first.
///
/// Iteration order, eviction and serialisation depend only on the
/// sequence of operations (a fixed hasher, ties broken by key), so the
/// same input gives the same state in every mode.
#[derive(Debug, Clone)]
pub struct BoundedMap<K, V> {
    cap: usize,
    entries: FxHashMap<K, (u64, V)>,
    tick: u64,
    evicted: u64,
}

impl<K: Eq + Hash + Clone + Ord, V> BoundedMap<K, V> {
    pub fn new(cap: usize) -> BoundedMap<K, V> {
        BoundedMap {
            cap: cap.max(1),
            entries: FxHashMap::default(),
            tick: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Keys dropped for room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    #[cfg(test)]
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(_, v)| v)
    }

    /// The entry for `key`, created with `make` (after making room) when
    /// it is new; either way it becomes the most recently touched.
    pub fn touch(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if !self.entries.contains_key(&key) && self.entries.len() >= self.cap {
            self.make_room();
        }
        let e = self.entries.entry(key).or_insert_with(|| (tick, make()));
        e.0 = tick;
        &mut e.1
    }

    /// Drops the least recently touched eighth (at least one entry).
    fn make_room(&mut self) {
        let drop = (self.entries.len() / 8).max(1);
        let mut ticks: Vec<u64> = self.entries.values().map(|(t, _)| *t).collect();
        let (_, nth, _) = ticks.select_nth_unstable(drop - 1);
        let oldest_kept = *nth;
        // Ticks are unique, so exactly `drop` entries are at or below it.
        self.entries.retain(|_, (t, _)| *t > oldest_kept);
        self.evicted += drop as u64;
    }
}

/// The serialised form: entries in recency order, oldest first, so a
/// restored map evicts in the same order as the one that was saved.
#[derive(Serialize, Deserialize)]
struct Saved<K, V> {
    cap: usize,
    evicted: u64,
    entries: Vec<(K, V)>,
}

impl<K, V> Serialize for BoundedMap<K, V>
where
    K: Serialize + Eq + Hash + Clone + Ord,
    V: Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(&u64, &K, &V)> =
            self.entries.iter().map(|(k, (t, v))| (t, k, v)).collect();
        entries.sort_unstable_by_key(|e| *e.0);
        Saved {
            cap: self.cap,
            evicted: self.evicted,
            entries: entries.into_iter().map(|(_, k, v)| (k, v)).collect(),
        }
        .serialize(s)
    }
}

impl<'de, K, V> Deserialize<'de> for BoundedMap<K, V>
where
    K: Deserialize<'de> + Eq + Hash + Clone + Ord,
    V: Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let saved = Saved::<K, V>::deserialize(d)?;
        let mut map = BoundedMap::new(saved.cap);
        for (k, v) in saved.entries {
            map.touch(k, || v);
        }
        map.evicted = saved.evicted;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_touched_keys_go_first_and_the_cap_holds() {
        let mut m = BoundedMap::new(16);
        for i in 0..16u32 {
            *m.touch(i, || 0) += 1;
        }
        // Touch the first four again: they are now the most recent.
        for i in 0..4u32 {
            *m.touch(i, || 0) += 1;
        }
        m.touch(100, || 0);
        assert_eq!(m.len(), 15, "an eighth (2) dropped, one added");
        assert!(m.get(&4).is_none() && m.get(&5).is_none());
        assert_eq!(m.get(&0), Some(&2));
        for i in 200..10_000u32 {
            m.touch(i, || 0);
            assert!(m.len() <= 16);
        }
        assert!(m.evicted() > 9_000);
    }

    #[test]
    fn a_saved_map_restores_with_the_same_recency() {
        let mut m = BoundedMap::new(8);
        for i in [5u32, 1, 7, 3, 2] {
            m.touch(i, || i * 10);
        }
        m.touch(5, || 0);
        let json = serde_json::to_string(&m).unwrap();
        let mut back: BoundedMap<u32, u32> = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        for i in 100..104 {
            m.touch(i, || 0);
            back.touch(i, || 0);
        }
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        assert!(back.get(&1).is_none(), "the oldest went first");
    }
}
