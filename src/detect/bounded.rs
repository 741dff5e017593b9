//! A map with a cap on its keys, for detector state that an attacker can
//! grow (every spoofed source, every random subdomain is a new key).
//!
//! When the map is full, the eighth of the entries seen least recently is
//! dropped at once: one O(n) selection per n/8 insertions keeps insertion
//! amortised O(1), where dropping one entry at a time would scan the whole
//! map for every new key of a flood.
//!
//! Memory (#13: a million keys in at most 256 MiB): the entries live in a
//! dense vector of slots, and the hash table holds only their 4-byte
//! indices. A table of whole entries doubles to 2^21 buckets past 917,504
//! entries, so every byte of key and value counted twice at a million
//! keys; here a slot is paid once (the vector grows no further than the
//! cap) and the table costs about 10 bytes a key.

use std::hash::{BuildHasher, Hash};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

/// One entry: its key, when it was last touched, its value.
#[derive(Debug, Clone)]
struct Slot<K, V> {
    key: K,
    tick: u64,
    value: V,
}

/// A map of at most `cap` keys; the least recently touched go first.
///
/// Iteration order, eviction and serialisation depend only on the
/// sequence of operations (slots in insertion order, ticks unique), so
/// the same input gives the same state in every mode.
#[derive(Debug, Clone)]
pub struct BoundedMap<K, V> {
    cap: usize,
    /// Indices into `slots`, found by the hash of the slot's key.
    index: HashTable<u32>,
    slots: Vec<Slot<K, V>>,
    tick: u64,
    evicted: u64,
}

/// FxHash: fast, and the same in every run (only the table's layout
/// depends on it, never what the map holds or how it is saved).
fn hash_of<K: Hash>(key: &K) -> u64 {
    FxBuildHasher.hash_one(key)
}

impl<K: Eq + Hash + Clone + Ord, V> BoundedMap<K, V> {
    pub fn new(cap: usize) -> BoundedMap<K, V> {
        BoundedMap {
            // Slots are numbered with u32.
            cap: cap.clamp(1, u32::MAX as usize),
            index: HashTable::new(),
            slots: Vec::new(),
            tick: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Keys dropped for room so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(hash, |&i| slots[i as usize].key == *key)
            .map(|&i| i as usize)
    }

    /// The entry for `key`, left where it is in the order of eviction.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(hash_of(key), key).map(|i| &self.slots[i].value)
    }

    /// The entry for `key`, created with `make` (after making room) when
    /// it is new; either way it becomes the most recently touched.
    pub fn touch(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        self.touch_ranked(key, make, |_| 0.0)
    }

    /// [`BoundedMap::touch`], but room is made by dropping the eighth of
    /// the lowest `rank`, the least recently touched first among equals:
    /// for a detector whose keys are worth keeping by what they hold, not
    /// by when they were seen (a pair halfway to a gigabyte must not be
    /// pushed out by a busy site's thousands of small pairs).
    pub fn touch_ranked(
        &mut self,
        key: K,
        make: impl FnOnce() -> V,
        rank: impl Fn(&V) -> f64,
    ) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        let hash = hash_of(&key);
        if let Some(i) = self.find(hash, &key) {
            let slot = &mut self.slots[i];
            slot.tick = tick;
            return &mut slot.value;
        }
        if self.slots.len() >= self.cap {
            self.make_room(rank);
        }
        if self.slots.len() == self.slots.capacity() {
            // Doubling, but never past the cap: at the cap, a doubled
            // vector would leave up to half its slots unused for good.
            let more = self.slots.capacity().max(4);
            self.slots
                .reserve_exact(more.min(self.cap - self.slots.len()));
        }
        let i = self.slots.len();
        self.slots.push(Slot {
            key,
            tick,
            value: make(),
        });
        let slots = &self.slots;
        self.index
            .insert_unique(hash, i as u32, |&j| hash_of(&slots[j as usize].key));
        &mut self.slots[i].value
    }

    /// Drops the eighth (at least one entry) of the lowest rank, the
    /// least recently touched first among equals.
    fn make_room(&mut self, rank: impl Fn(&V) -> f64) {
        let drop = (self.slots.len() / 8).max(1);
        let order = |a: &(f64, u64), b: &(f64, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        let last_dropped = {
            let mut keys: Vec<(f64, u64)> = self
                .slots
                .iter()
                .map(|s| (rank(&s.value), s.tick))
                .collect();
            *keys.select_nth_unstable_by(drop - 1, order).1
        };
        // Ticks are unique, so exactly `drop` entries are at or below it.
        self.slots.retain(|s| {
            order(&(rank(&s.value), s.tick), &last_dropped) == std::cmp::Ordering::Greater
        });
        // The kept slots moved: index them again (O(n) once per n/8
        // insertions, like the selection).
        self.index.clear();
        let slots = &self.slots;
        for (i, s) in slots.iter().enumerate() {
            self.index.insert_unique(hash_of(&s.key), i as u32, |&j| {
                hash_of(&slots[j as usize].key)
            });
        }
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
        let mut entries: Vec<(&u64, &K, &V)> = self
            .slots
            .iter()
            .map(|s| (&s.tick, &s.key, &s.value))
            .collect();
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

    /// The slots move when an eighth is dropped: every key kept must
    /// still be found with its value, against a plain list kept in
    /// recency order.
    #[test]
    fn after_many_evictions_every_kept_key_is_found() {
        let mut m = BoundedMap::new(100);
        let mut model: Vec<(u32, u32)> = Vec::new();
        let mut state = 11u64;
        for _ in 0..20_000 {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            let k = ((state >> 33) % 400) as u32;
            *m.touch(k, || 0) += 1;
            match model.iter().position(|e| e.0 == k) {
                Some(p) => {
                    let mut e = model.remove(p);
                    e.1 += 1;
                    model.push(e);
                }
                None => {
                    if model.len() >= 100 {
                        model.drain(..model.len() / 8);
                    }
                    model.push((k, 1));
                }
            }
            assert_eq!(m.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(m.get(k), Some(v));
        }
        assert!(m.evicted() > 0);
    }

    /// Ranked, the lowest rank goes first whatever its recency; equals go
    /// least recently touched first.
    #[test]
    fn a_ranked_map_drops_the_lowest_rank_first() {
        let mut m = BoundedMap::new(8);
        for i in 0..8u32 {
            m.touch(i, || if i == 0 { 100 } else { i });
        }
        // 0 is the least recent but holds the most: 1 goes.
        m.touch_ranked(50, || 0, |v| f64::from(*v));
        assert!(m.get(&1).is_none() && m.get(&0).is_some());
        // 50 holds nothing, the lowest: it goes next, however recent.
        m.touch_ranked(51, || 7, |v| f64::from(*v));
        assert!(m.get(&50).is_none() && m.get(&2).is_some());
        // Equal ranks: the least recently touched.
        let mut m = BoundedMap::new(4);
        for i in 0..4u32 {
            m.touch(i, || 1);
        }
        m.touch(0, || 1);
        m.touch_ranked(9, || 1, |v| f64::from(*v));
        assert!(m.get(&1).is_none() && m.get(&0).is_some());
        assert_eq!(m.evicted(), 1);
    }

    /// The saved form is the one checkpoints already hold: entries as
    /// (key, value) pairs, oldest first.
    #[test]
    fn the_saved_form_is_unchanged() {
        let json = r#"{"cap":8,"evicted":3,"entries":[[1,10],[7,70],[5,50]]}"#;
        let m: BoundedMap<u32, u32> = serde_json::from_str(json).unwrap();
        assert_eq!((m.len(), m.evicted(), m.get(&7)), (3, 3, Some(&70)));
        assert_eq!(serde_json::to_string(&m).unwrap(), json);
    }
}
