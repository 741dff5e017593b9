//! RITA v5's beacon score of one pair over one window, so our detections
//! can be read on the scale SOC teams already know (and checked against
//! `../shared/tools/rita_beacon.py`, itself checked against RITA's tests).
//!
//! Four parts, equally weighted, each in [0, 1]:
//! - **timestamps**: the intervals between connections are regular (their
//!   Bowley skewness is near 0 and their median absolute deviation small
//!   against the median);
//! - **data sizes**: the bytes sent each time are regular, the same way;
//! - **histogram**: the connections per hour bin are even (coefficient of
//!   variation) or fall into two levels (bimodal: a beacon that sleeps at
//!   night);
//! - **duration**: the pair is seen over much of the window, or in a long
//!   run of consecutive hours.
//!
//! Written from the specification in `rita_beacon.py`'s docstring (RITA's
//! `analysis/beacons.go` and the montanaflynn/stats quartile, median and
//! MAD it uses), rounding included, so the scores agree to the third
//! decimal.

/// Bins of the histogram over the window (RITA fixes 24, one per hour of a
/// day's window).
pub const BINS: usize = 24;
/// Hours with connections needed before the duration part counts.
const DURATION_MIN_HOURS: usize = 6;
/// A run of this many consecutive hours is a fully consistent beacon.
const DURATION_IDEAL_HOURS: f64 = 12.0;
/// Bar heights within 5% of the tallest count as one level.
const HISTOGRAM_SENSITIVITY: f64 = 0.05;
/// Bars set aside before the bimodal fit (an odd hour).
const BIMODAL_OUTLIERS: usize = 1;
/// Hours with connections needed before the bimodal fit counts.
const BIMODAL_MIN_HOURS: usize = 11;

/// The parts of a pair's beacon score.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BeaconScore {
    pub timestamps: f64,
    pub sizes: f64,
    pub duration: f64,
    pub histogram: f64,
    /// The equally weighted sum, rounded to three decimals.
    pub score: f64,
}

/// Go's `math.Round` (halves away from zero), to three decimals.
fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ceil3(x: f64) -> f64 {
    (x * 1000.0).ceil() / 1000.0
}

/// Median of a sorted slice (the mean of the middle two for even length).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n.is_multiple_of(2) {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    } else {
        sorted[n / 2]
    }
}

/// Quartiles as montanaflynn/stats computes them: Q1 and Q3 are the
/// medians of the lower and upper halves, the middle value left out of
/// both for odd lengths.
fn quartiles(sorted: &[f64]) -> (f64, f64, f64) {
    let n = sorted.len();
    let (lo_end, hi_start) = if n.is_multiple_of(2) {
        (n / 2, n / 2)
    } else {
        ((n - 1) / 2, (n - 1) / 2 + 1)
    };
    (
        median(&sorted[..lo_end]),
        median(sorted),
        median(&sorted[hi_start..]),
    )
}

/// `(1 - |Bowley skewness|) and the MAD score` averaged, of sorted values.
/// A skewness is only taken when the quartiles are at least 10 apart and
/// the median differs from both (else it is 0: perfectly regular).
fn statistical_score(sorted: &[f64], default_mad_score: f64) -> f64 {
    let (q1, q2, q3) = quartiles(sorted);
    let spread = q3 - q1;
    let skew = if spread >= 10.0 && q2 != q1 && q2 != q3 {
        (q1 + q3 - 2.0 * q2) / spread
    } else {
        0.0
    };
    let med = median(sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - med).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median(&deviations);
    let mut mad_score = if med >= 1.0 {
        (med - mad) / med
    } else {
        default_mad_score
    };
    if mad_score.is_nan() || mad_score < 0.0 {
        mad_score = 0.0;
    }
    round3(((1.0 - skew.abs()) + mad_score) / 2.0)
}

/// The score of a pair's connections: whole-second timestamps and the
/// bytes sent each time, within the window `[win_min, win_max]`. `None`
/// when RITA would drop the pair (fewer than 4 timestamps or 3 non-zero
/// intervals, an empty window).
pub fn score(ts: &mut [u32], bytes: &mut [f64], win_min: u32, win_max: u32) -> Option<BeaconScore> {
    if win_max <= win_min || ts.len() < 4 || bytes.len() < 3 {
        return None;
    }
    ts.sort_unstable();
    // Intervals, as RITA takes them: unsigned 32-bit differences of the
    // sorted list, zeros dropped for the statistics.
    let mut deltas: Vec<f64> = ts
        .windows(2)
        .map(|w| f64::from(w[1].wrapping_sub(w[0])))
        .collect();
    if deltas.iter().filter(|d| **d > 0.0).count() < 3 {
        return None;
    }
    deltas.sort_by(f64::total_cmp);
    let first_nonzero = deltas.iter().position(|d| *d > 0.0).unwrap_or(0);
    let timestamps = statistical_score(&deltas[first_nonzero..], 1.0);

    bytes.sort_by(f64::total_cmp);
    let sizes = statistical_score(bytes, 0.0);

    let (histogram, bars, longest) = histogram_score(ts, win_min, win_max);
    let duration = if bars >= DURATION_MIN_HOURS {
        let span = f64::from(ts[ts.len() - 1] - ts[0]) / f64::from(win_max - win_min);
        let coverage = ceil3(span).min(1.0);
        let consistency = ceil3(longest as f64 / DURATION_IDEAL_HOURS).min(1.0);
        coverage.max(consistency)
    } else {
        0.0
    };
    let score = round3(timestamps * 0.25 + sizes * 0.25 + duration * 0.25 + histogram * 0.25);
    Some(BeaconScore {
        timestamps,
        sizes,
        duration,
        histogram,
        score,
    })
}

/// The histogram part, the number of bins with connections and the
/// longest run of such bins (wrapping around the window's end, at most
/// [`BINS`]), of sorted timestamps.
fn histogram_score(ts: &[u32], win_min: u32, win_max: u32) -> (f64, usize, usize) {
    let step = f64::from(win_max - win_min) / BINS as f64;
    let mut edges = [0.0; BINS + 1];
    for (i, e) in edges.iter_mut().enumerate() {
        *e = f64::from(win_min) + i as f64 * step;
    }
    edges[BINS] = f64::from(win_max);
    // Timestamps before the first edge land in the first bin, at or after
    // the last edge in the last one.
    let mut hist = [0u64; BINS];
    let mut bin = 0;
    for t in ts {
        let t = f64::from(*t);
        while bin + 1 < BINS && t >= edges[bin + 1] {
            bin += 1;
        }
        hist[bin] += 1;
    }
    let bars = hist.iter().filter(|h| **h > 0).count();
    let tallest = hist.iter().copied().max().unwrap_or(0);
    let level = (tallest as f64 * HISTOGRAM_SENSITIVITY).ceil();
    let mut levels: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for h in hist.iter().filter(|h| **h > 0) {
        let l = ((*h as f64 / level).floor() * level) as u64;
        *levels.entry(l).or_default() += 1;
    }
    let (mut longest, mut run) = (0, 0);
    for i in 0..2 * BINS {
        if hist[i % BINS] > 0 {
            run += 1;
        } else {
            longest = longest.max(run);
            run = 0;
        }
    }
    let longest = longest.max(run).min(BINS);

    // Evenness: 1 - coefficient of variation of the bins (0 beyond 1).
    let total: u64 = hist.iter().sum();
    let cv_score = if total == 0 {
        0.0
    } else {
        let mean = total as f64 / BINS as f64;
        let var = hist.iter().map(|h| (*h as f64 - mean).powi(2)).sum::<f64>() / BINS as f64;
        let cv = var.sqrt() / mean.abs();
        if cv > 1.0 {
            0.0
        } else {
            round3(1.0 - cv).min(1.0)
        }
    };
    // Two levels: the two most common bar heights cover the bars.
    let bimodal = if bars >= BIMODAL_MIN_HOURS {
        let mut counts: Vec<usize> = levels.values().copied().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top2 = counts.iter().take(2).sum::<usize>() as f64;
        let adjusted = (bars.saturating_sub(BIMODAL_OUTLIERS) as f64).max(1.0);
        round3(top2 / adjusted).min(1.0)
    } else {
        0.0
    };
    (cv_score.max(bimodal), bars, longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A perfect beacon: every 300 s, 1,049 bytes, for a whole day.
    #[test]
    fn a_perfect_beacon_scores_one() {
        let start = 1_700_000_000u32;
        let mut ts: Vec<u32> = (0..288).map(|i| start + i * 300).collect();
        let mut bytes = vec![1049.0; ts.len()];
        let s = score(&mut ts, &mut bytes, start, start + 86_400).unwrap();
        assert_eq!(s.timestamps, 1.0);
        assert_eq!(s.sizes, 1.0);
        assert_eq!(s.histogram, 1.0);
        assert_eq!(s.duration, 1.0);
        assert_eq!(s.score, 1.0);
    }

    /// Jitter of 200-350 s (RITA's planted beacon) keeps it high; random
    /// traffic in a few hours scores low.
    #[test]
    fn jitter_keeps_a_beacon_high_and_bursts_score_low() {
        let start = 1_700_000_000u32;
        let mut state = 12345u64;
        let mut next = |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) % m
        };
        let mut ts = Vec::new();
        let mut t = start;
        while t < start + 86_400 {
            ts.push(t);
            t += 200 + next(151) as u32;
        }
        let mut bytes: Vec<f64> = ts.iter().map(|_| 1000.0 + next(20) as f64).collect();
        let beacon = score(&mut ts, &mut bytes, start, start + 86_400).unwrap();
        assert!(beacon.score > 0.85, "{beacon:?}");

        let mut ts: Vec<u32> = (0..60).map(|_| start + next(3 * 3600) as u32).collect();
        let mut bytes: Vec<f64> = ts.iter().map(|_| next(100_000) as f64).collect();
        let bursty = score(&mut ts, &mut bytes, start, start + 86_400).unwrap();
        assert!(bursty.score < 0.6, "{bursty:?}");
    }

    #[test]
    fn too_few_connections_are_not_scored() {
        let mut ts = vec![1, 2, 3];
        let mut b = vec![1.0; 3];
        assert!(score(&mut ts, &mut b, 0, 100).is_none());
        let mut ts = vec![5, 5, 5, 5, 6];
        let mut b = vec![1.0; 5];
        assert!(
            score(&mut ts, &mut b, 0, 100).is_none(),
            "3 non-zero intervals needed"
        );
    }

    #[test]
    fn quartiles_follow_montanaflynn() {
        assert_eq!(quartiles(&[1.0, 2.0, 3.0, 4.0]), (1.5, 2.5, 3.5));
        assert_eq!(quartiles(&[1.0, 2.0, 3.0, 4.0, 5.0]), (1.5, 3.0, 4.5));
    }
}
