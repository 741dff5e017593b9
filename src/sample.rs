//! A uniform sample of a record stream that is read several times
//! (`azw-train --max-records`).
//!
//! Training streams the history once per pass (survey, feature map,
//! epochs, threshold) instead of holding it, so a sample must be the same
//! records in every pass, and known without holding the records. Each
//! record gets a pseudo-random key from its position in the stream and
//! the seed ([`key`]); the sample is the `k` records with the smallest
//! keys (bottom-k sampling). That is a uniform sample without
//! replacement of the whole stream, whatever its order or date range, the
//! same for the same seed, and decided by one number once the first pass
//! has seen every key: the largest key kept ([`Sample::keeps`]). Later
//! passes keep a record when its key is at most that, and so select the
//! very same records without any memory.
//!
//! The first pass holds the `k` smallest keys seen so far in a heap
//! ([`BottomK`]): 16 bytes per sampled record, freed when it ends, and
//! nothing that grows with the history.

use std::collections::BinaryHeap;

/// The key of the record at `position` (0 for the first) under `seed`.
///
/// A bijective mix (splitmix64's finaliser) of the position offset by the
/// mixed seed: distinct positions get distinct keys, so the `k` smallest
/// are always exactly `k` records, with no ties to break.
pub fn key(seed: u64, position: u64) -> u64 {
    mix(position.wrapping_add(mix(seed ^ 0x5851_F42D_4C95_7F2D)))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Which records the passes keep: those whose [`key`] is at most the
/// largest key of the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    seed: u64,
    max_key: u64,
}

impl Sample {
    /// Every record (what a stream no longer than the sample gives).
    pub fn all(seed: u64) -> Sample {
        Sample {
            seed,
            max_key: u64::MAX,
        }
    }

    /// Whether the record at `position` is in the sample.
    pub fn keeps(&self, position: u64) -> bool {
        key(self.seed, position) <= self.max_key
    }

    /// Whether it keeps every record.
    pub fn is_all(&self) -> bool {
        self.max_key == u64::MAX
    }
}

/// The first pass's choice of the sample: the `k` smallest keys offered,
/// each with a few bits about its record (which holdout would hold it
/// out), so that what the sample holds is counted exactly before the
/// next pass.
#[derive(Debug)]
pub struct BottomK {
    seed: u64,
    k: usize,
    /// A max-heap of (key, tags): its top is the largest key kept.
    heap: BinaryHeap<(u64, u8)>,
    offered: u64,
}

impl BottomK {
    /// A sample of at most `k` records (at least one) under `seed`.
    pub fn new(k: u64, seed: u64) -> BottomK {
        BottomK {
            seed,
            k: usize::try_from(k.max(1)).unwrap_or(usize::MAX),
            heap: BinaryHeap::new(),
            offered: 0,
        }
    }

    /// Offers the record at `position`, with `tags` to count later.
    /// Positions must be offered once each.
    pub fn offer(&mut self, position: u64, tags: u8) {
        self.offered += 1;
        let key = key(self.seed, position);
        if self.heap.len() < self.k {
            self.heap.push((key, tags));
        } else if let Some(mut top) = self.heap.peek_mut() {
            if key < top.0 {
                *top = (key, tags);
            }
        }
    }

    /// Records offered.
    pub fn offered(&self) -> u64 {
        self.offered
    }

    /// Records in the sample (`min(k, offered)`).
    pub fn len(&self) -> u64 {
        self.heap.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Sampled records whose tags have every bit of `mask` set.
    pub fn count_tagged(&self, mask: u8) -> u64 {
        self.heap.iter().filter(|(_, t)| t & mask == mask).count() as u64
    }

    /// The sample, for the next passes: every record when no more than
    /// `k` were offered.
    pub fn finish(self) -> Sample {
        if self.offered <= self.k as u64 {
            return Sample::all(self.seed);
        }
        Sample {
            seed: self.seed,
            max_key: self.heap.peek().map_or(u64::MAX, |(k, _)| *k),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(k: u64, n: u64, seed: u64) -> Sample {
        let mut b = BottomK::new(k, seed);
        for i in 0..n {
            b.offer(i, 0);
        }
        assert!(b.len() <= k, "bounded by k");
        b.finish()
    }

    #[test]
    fn keeps_exactly_k_the_same_in_every_pass() {
        let s = choose(1000, 100_000, 7);
        let first: Vec<u64> = (0..100_000).filter(|i| s.keeps(*i)).collect();
        assert_eq!(first.len(), 1000);
        // A later pass asks again: the same records, with no state.
        let again: Vec<u64> = (0..100_000).filter(|i| s.keeps(*i)).collect();
        assert_eq!(first, again);
        assert_eq!(
            choose(1000, 100_000, 7),
            s,
            "the same seed, the same sample"
        );
        let other = choose(1000, 100_000, 8);
        let shared = first.iter().filter(|i| other.keeps(**i)).count();
        assert!(
            shared < 100,
            "another seed, another sample ({shared} shared)"
        );
    }

    #[test]
    fn a_short_stream_is_kept_whole() {
        let s = choose(1000, 500, 1);
        assert!(s.is_all());
        assert!((0..500).all(|i| s.keeps(i)));
        assert!(choose(500, 500, 1).is_all());
        assert!(!choose(499, 500, 1).is_all());
    }

    #[test]
    fn is_uniform_over_the_stream() {
        // 10,000 of 1,000,000: each tenth of the stream gets about 1,000
        // (binomial, sd about 30), and so does every residue mod 10 (no
        // bias to positions, e.g. to every 10th record held out).
        let n = 1_000_000;
        let s = choose(10_000, n, 1234);
        let mut by_tenth = [0u32; 10];
        let mut by_residue = [0u32; 10];
        for i in (0..n).filter(|i| s.keeps(*i)) {
            by_tenth[(i * 10 / n) as usize] += 1;
            by_residue[(i % 10) as usize] += 1;
        }
        for c in by_tenth.iter().chain(&by_residue) {
            assert!((850..=1150).contains(c), "{by_tenth:?} {by_residue:?}");
        }
        // Kept positions of many seeds: each position about equally often.
        let mut hits = [0u32; 100];
        for seed in 0..2000 {
            let s = choose(10, 100, seed);
            for (i, h) in hits.iter_mut().enumerate() {
                *h += u32::from(s.keeps(i as u64));
            }
        }
        // Each position is kept with probability 0.1: 200 of 2000 (sd 13).
        assert!(hits.iter().all(|h| (140..=260).contains(h)), "{hits:?}");
    }

    #[test]
    fn counts_tags_of_the_sample() {
        let mut b = BottomK::new(100, 3);
        for i in 0..10_000u64 {
            b.offer(i, u8::from(i % 10 == 9) | (u8::from(i % 2 == 0) << 1));
        }
        assert_eq!(b.len(), 100);
        assert_eq!(b.offered(), 10_000);
        let s = {
            let held = b.count_tagged(1);
            let even = b.count_tagged(2);
            let sample_held = (0..10_000u64).filter(|i| i % 10 == 9);
            let s = Sample {
                seed: 3,
                max_key: b.heap.peek().unwrap().0,
            };
            assert_eq!(held, sample_held.filter(|i| s.keeps(*i)).count() as u64);
            assert_eq!(
                even,
                (0..10_000u64).filter(|i| i % 2 == 0 && s.keeps(*i)).count() as u64
            );
            assert!(b.count_tagged(0) == 100);
            s
        };
        assert_eq!(b.finish(), s);
    }

    #[test]
    fn keys_are_distinct() {
        let mut keys: Vec<u64> = (0..100_000).map(|i| key(42, i)).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), 100_000);
        assert_eq!(BottomK::new(0, 1).k, 1, "at least one record");
    }
}
