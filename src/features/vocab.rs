//! Vocabularies for categorical features, learned from the training data.
//!
//! The training data is not trusted: whoever can send traffic chooses the
//! user agents, host names and MIME types Zeek logs. The counter therefore
//! keeps a bounded summary whatever the values (at most [`CAPACITY`] values
//! of at most [`MAX_VALUE_BYTES`] bytes each), and each value costs a
//! bounded amount of work, so a flood of distinct values can neither grow
//! memory nor slow training down.

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use serde::{Deserialize, Serialize};

/// Values seen less often than this share of the records go to "other":
/// one column per rare value would only add noise.
pub const MIN_SHARE: f64 = 0.0005;

/// How many distinct values a counter tracks. A value whose share of the
/// records is at least `MIN_SHARE + 1 / CAPACITY` (0.06%) is always learned
/// with a count at most `total / CAPACITY` below its true count, and exactly
/// when it never had to be evicted (always, with fewer distinct values than
/// this). A value rarer than [`MIN_SHARE`] is never learned.
pub const CAPACITY: usize = 10_000;

/// Longest category value used as it is, in bytes. A longer one becomes a
/// bounded key, [`bounded_key`], so a 2 kB user agent costs no more memory
/// than a 256-byte one.
pub const MAX_VALUE_BYTES: usize = 256;

/// Hex digits of the hash that ends a bounded key.
const HASH_DIGITS: usize = 16;
/// Marks a value cut short in its bounded key.
const CUT_MARK: &str = "\u{2026}";

/// The key a category value is counted and looked up under: the value
/// itself up to [`MAX_VALUE_BYTES`]; a longer one is cut at a character
/// boundary and ends with `…` and a 64-bit hash of the whole value.
///
/// Hashed rather than only truncated, so that long values that share their
/// first bytes (user agents with a long common prefix, or an attacker's
/// values made to look like a learned one) stay distinct values instead of
/// falling into one learned column; the readable prefix stays, for people.
/// The hash (FNV-1a) is stable across versions and platforms because keys
/// are stored in model files; it is not collision-resistant against a
/// crafted value, which at worst lands a record in a learned long value's
/// column instead of `<other>`.
pub fn bounded_key(value: &str) -> Cow<'_, str> {
    if value.len() <= MAX_VALUE_BYTES {
        return Cow::Borrowed(value);
    }
    let mut end = MAX_VALUE_BYTES - CUT_MARK.len() - HASH_DIGITS;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}{CUT_MARK}{:0width$x}",
        &value[..end],
        crate::fnv::fnv1a64(value.as_bytes()),
        width = HASH_DIGITS
    ))
}

/// Counts the values of one categorical feature during training: a
/// Space-Saving summary (Metwally, Agrawal and El Abbadi, 2005).
///
/// At most `capacity` values are tracked. A new value, once the summary is
/// full, takes the place of the least counted one and inherits its count
/// (an overestimate by at most that count, remembered as the value's
/// `error`), so a frequent value that arrives late still climbs to the top.
/// The least counted value is found with a binary min-heap over the slots,
/// so every value costs O(log capacity) steps: training time stays linear
/// in the records whatever their values (the previous counter pruned all
/// 50,000 tracked values on every new one once it was full).
///
/// Each value is hashed once (SipHash with a random key, as the standard
/// library's maps: the values are an attacker's to choose, so their hashes
/// must not be), and a value taking a slot reuses the slot's buffer: the
/// survey of a training history spent half its time in the map before.
#[derive(Debug, Clone)]
pub struct VocabCounter {
    capacity: usize,
    hasher: RandomState,
    /// Slot numbers, found by their key's hash.
    index: HashTable<usize>,
    slots: Vec<Slot>,
    /// Slot numbers, a min-heap by count.
    heap: Vec<usize>,
    total: u64,
    /// Work done: one step per value plus one per heap move.
    steps: u64,
}

#[derive(Debug, Clone)]
struct Slot {
    key: String,
    /// The key's hash, so that a slot changing hands rehashes nothing.
    hash: u64,
    /// Upper bound of the value's count.
    count: u64,
    /// By how much `count` may overstate it.
    error: u64,
    /// Where the slot sits in the heap.
    at: usize,
}

impl Default for VocabCounter {
    fn default() -> Self {
        VocabCounter::with_capacity(CAPACITY)
    }
}

impl VocabCounter {
    /// A counter tracking at most `capacity` (at least 1) values.
    pub fn with_capacity(capacity: usize) -> VocabCounter {
        VocabCounter {
            capacity: capacity.max(1),
            hasher: RandomState::new(),
            index: HashTable::new(),
            slots: Vec::new(),
            heap: Vec::new(),
            total: 0,
            steps: 0,
        }
    }

    pub fn add(&mut self, value: &str) {
        self.total += 1;
        self.steps += 1;
        let key = bounded_key(value);
        let key: &str = key.as_ref();
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        if let Some(&slot) = self.index.find(hash, |&s| slots[s].key == key) {
            self.slots[slot].count += 1;
            self.sift_down(self.slots[slot].at);
        } else if self.slots.len() < self.capacity {
            self.insert(key, hash);
        } else {
            self.replace_least(key, hash);
        }
    }

    /// Values counted, with repeats.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The `n` most counted values with their guaranteed counts (`count -
    /// error`, never more than seen), most frequent first, ties by value.
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut kept: Vec<(&str, u64)> = self
            .slots
            .iter()
            .map(|s| (s.key.as_ref(), s.count - s.error))
            .filter(|(_, c)| *c > 0)
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        kept.truncate(n);
        kept.into_iter().map(|(v, c)| (v.to_owned(), c)).collect()
    }

    /// Values tracked now (at most the capacity).
    pub fn tracked(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of the tracked keys (at most capacity x [`MAX_VALUE_BYTES`]).
    pub fn tracked_bytes(&self) -> usize {
        self.slots.iter().map(|s| s.key.len()).sum()
    }

    /// Work done so far, in steps: a measure of time that tests can bound
    /// without a clock.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    fn insert(&mut self, key: &str, hash: u64) {
        let slot = self.slots.len();
        let at = self.heap.len();
        self.slots.push(Slot {
            key: key.to_owned(),
            hash,
            count: 1,
            error: 0,
            at,
        });
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| slots[s].hash);
        self.heap.push(slot);
        self.sift_up(at);
    }

    /// The least counted value gives its slot to `key`.
    fn replace_least(&mut self, key: &str, hash: u64) {
        let slot = self.heap[0];
        if let Ok(entry) = self.index.find_entry(self.slots[slot].hash, |&s| s == slot) {
            entry.remove();
        }
        let s = &mut self.slots[slot];
        s.error = s.count;
        s.count += 1;
        s.key.clear();
        s.key.push_str(key);
        s.hash = hash;
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| slots[s].hash);
        self.sift_down(0);
    }

    fn count_at(&self, at: usize) -> u64 {
        self.slots[self.heap[at]].count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.steps += 1;
        self.heap.swap(a, b);
        self.slots[self.heap[a]].at = a;
        self.slots[self.heap[b]].at = b;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut least = at;
            if left < self.heap.len() && self.count_at(left) < self.count_at(least) {
                least = left;
            }
            if right < self.heap.len() && self.count_at(right) < self.count_at(least) {
                least = right;
            }
            if least == at {
                return;
            }
            self.swap(at, least);
            at = least;
        }
    }

    /// The most frequent values, at most `max_values`, each seen in at
    /// least [`MIN_SHARE`] of the records; ties break by value so training
    /// twice on the same data gives the same columns. A value's count is
    /// its guaranteed count (`count - error`): never more than it was
    /// seen, so a flood cannot push a rare value over the bar.
    pub fn finish(&self, max_values: usize) -> Vocabulary {
        let min = ((self.total as f64) * MIN_SHARE).ceil().max(1.0) as u64;
        let mut kept: Vec<(&str, u64)> = self
            .slots
            .iter()
            .map(|s| (s.key.as_ref(), s.count - s.error))
            .filter(|(_, c)| *c >= min)
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        kept.truncate(max_values);
        let covered: u64 = kept.iter().map(|(_, c)| c).sum();
        Vocabulary {
            values: kept.iter().map(|(v, _)| (*v).to_owned()).collect(),
            counts: kept.iter().map(|(_, c)| *c).collect(),
            other: self.total - covered,
        }
    }
}

/// The learned values of one categorical feature, stored in the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub values: Vec<String>,
    /// How often each value was seen in training.
    pub counts: Vec<u64>,
    /// How many training records fell into "other".
    pub other: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_frequent_values_in_order() {
        let mut c = VocabCounter::default();
        for v in ["tcp", "udp", "tcp", "icmp", "tcp", "udp"] {
            c.add(v);
        }
        let v = c.finish(2);
        assert_eq!(v.values, ["tcp", "udp"]);
        assert_eq!(v.counts, [3, 2]);
        assert_eq!(v.other, 1);
    }

    /// 100,000 distinct 2 kB values, each seen twice (an attacker's user
    /// agents), among which one value is truly frequent: what is tracked
    /// stays bounded in count and bytes all along, the work per value is
    /// bounded (counted in steps, not timed), and the frequent value is
    /// still learned with its exact count.
    #[test]
    fn a_flood_of_distinct_long_values_stays_bounded() {
        let mut c = VocabCounter::default();
        let n = 100_000;
        for i in 0..n {
            let value = format!("{i:08}{}", "x".repeat(2000));
            c.add(&value);
            c.add(&value);
            if i % 100 == 0 {
                c.add("Mozilla/5.0");
            }
            if i % 1000 == 0 {
                assert!(c.tracked() <= CAPACITY, "after {i}: {}", c.tracked());
                let bytes = c.tracked_bytes();
                assert!(
                    bytes <= CAPACITY * MAX_VALUE_BYTES,
                    "after {i}: {bytes} bytes"
                );
            }
        }
        let per_add = c.steps() as f64 / c.total as f64;
        assert!(per_add <= 40.0, "{per_add} steps per value");
        let v = c.finish(10);
        assert_eq!(v.values, ["Mozilla/5.0"]);
        assert_eq!(v.counts, [n as u64 / 100]);
    }

    /// With a tiny capacity: a value that becomes frequent late still
    /// displaces the rare ones, and the rare ones, however many, never get
    /// a guaranteed count above what they were seen.
    #[test]
    fn space_saving_finds_late_frequent_values() {
        let mut c = VocabCounter::with_capacity(4);
        for i in 0..1000 {
            c.add(&format!("rare{i}"));
        }
        for _ in 0..500 {
            c.add("late");
        }
        assert!(c.tracked() <= 4);
        let v = c.finish(10);
        assert_eq!(v.values[0], "late");
        assert!(v.counts[0] <= 500 && v.counts[0] >= 500 - 1000 / 4, "{v:?}");
        // Each rare value was seen once: its guaranteed count says no more.
        assert!(v.counts[1..].iter().all(|c| *c == 1), "{v:?}");
        assert_eq!(v.other, 1500 - v.counts.iter().sum::<u64>());
    }

    #[test]
    fn long_values_become_bounded_keys() {
        assert_eq!(bounded_key("short"), "short");
        let exact = "é".repeat(MAX_VALUE_BYTES / 2);
        assert_eq!(bounded_key(&exact), exact.as_str());
        let long = format!("{exact}!");
        let key = bounded_key(&long);
        assert!(key.len() <= MAX_VALUE_BYTES, "{}", key.len());
        assert!(key.starts_with("éé") && key.contains(CUT_MARK), "{key}");
        assert_ne!(key, bounded_key(&format!("{exact}?")));
        assert_eq!(key, bounded_key(&key), "a key is its own key");
    }

    #[test]
    fn rare_values_go_to_other() {
        let mut c = VocabCounter::default();
        for _ in 0..10_000 {
            c.add("common");
        }
        for i in 0..4 {
            c.add(&format!("rare{i}"));
        }
        let v = c.finish(10);
        assert_eq!(v.values, ["common"]);
        assert_eq!(v.other, 4);
    }
}

/// The vocabularies learned from the bundled example logs (every record of
/// every module), pinned as the counter before the bounded summary learned
/// them: a change of counter must not change what normal data teaches.
#[cfg(test)]
mod examples {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::Vocabulary;
    use crate::features::{Frequencies, LocalNets, VocabLearner};
    use crate::log_kind::LogKind;
    use crate::zeek::layout::{self, DateRange};
    use crate::zeek::Records;

    const PINNED: &str = include_str!("example_vocabularies.json");

    /// Per module, its vocabularies and its rarities' frequencies.
    type Learned = BTreeMap<String, (BTreeMap<String, Vocabulary>, BTreeMap<String, Frequencies>)>;

    fn learn_examples() -> Learned {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs");
        let mut all = BTreeMap::new();
        for module in LogKind::CLASSIC {
            let files = layout::discover(&dir, module.log_path(), DateRange::default()).unwrap();
            let paths = files.into_iter().map(|f| f.path).collect();
            let mut learner = VocabLearner::new(crate::tables::built_in(module));
            for record in Records::new(paths, Some(module.log_path()), true) {
                learner.observe(&record);
            }
            let set = learner.finish(LocalNets::default());
            all.insert(module.to_string(), (set.vocabularies, set.frequencies));
        }
        all
    }

    /// Set `AZW_PIN_VOCABULARIES=1` to rewrite the pinned file (only when a
    /// change of the learned vocabularies is intended).
    #[test]
    fn example_vocabularies_are_unchanged() {
        let learned = learn_examples();
        if std::env::var_os("AZW_PIN_VOCABULARIES").is_some() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/features/example_vocabularies.json");
            let text = serde_json::to_string_pretty(&learned).unwrap() + "\n";
            std::fs::write(path, text).unwrap();
            return;
        }
        let pinned: Learned = serde_json::from_str(PINNED).unwrap();
        assert_eq!(learned, pinned);
    }
}
