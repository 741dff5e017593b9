//! A model flagging far more records than its calibration says it would.
//!
//! Why: a model trained on another network, or on this one before a site
//! change (Zeek's `local_nets` set, a new service, a renumbering), flags
//! nearly every record. Nothing failed, so nothing said so: a review
//! replayed a capture with a model of another network and got 13,001
//! anomalies of 13,001 records, two critical alerts and no warning. The
//! threshold was chosen to flag a known share of normal traffic
//! ([`crate::model::Threshold::expected_fpr`]), so a share many times that
//! over thousands of records is either one attack flooding the log or a
//! model that no longer fits; the warning names the feature that explains
//! most of them, which tells the two apart (`local_resp` is the site,
//! `resp_p` may be a scan). Counted where every mode counts its
//! anomalies ([`super::Lane`]), so replay, live and Kafka warn alike.

use std::collections::HashMap;

/// Records a window holds before it starts afresh.
const WINDOW: u64 = 10_000;
/// Records needed before a share is believed.
const MIN_RECORDS: u64 = 1_000;
/// Times the expected share the flagged one must reach...
const FACTOR: f64 = 20.0;
/// ...and at least this share: a model expecting 0.1% that flags 2% is
/// worth a look at its alerts, not a warning.
const MIN_SHARE: f64 = 0.05;
/// Records scored between two warnings while the share stays high.
const REPEAT: u64 = 1_000_000;
/// Distinct features counted (names come from the model's table, which is
/// far smaller; the bound is for a damaged or hostile model).
const MAX_FEATURES: usize = 256;

/// What a window of records says when its share of anomalies is too high.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TooMany {
    pub flagged: u64,
    pub scored: u64,
    /// The feature that explains most anomalies, and how many it explains.
    pub top: Option<(String, u64)>,
}

impl TooMany {
    /// The warning, for a model expecting `expected` (a share) of normal
    /// records above its threshold.
    pub fn message(&self, module: impl std::fmt::Display, expected: f64) -> String {
        let share = |n: u64| 100.0 * n as f64 / self.scored.max(1) as f64;
        let top = match &self.top {
            Some((feature, n)) => format!(
                "; the top feature of {:.0}% of them is `{}`",
                100.0 * *n as f64 / self.flagged.max(1) as f64,
                crate::escape::terminal(feature)
            ),
            None => String::new(),
        };
        format!(
            "{module}: {} of the last {} records scored ({:.1}%) are anomalies, where the model expects {:.2}% of normal traffic{top}. Unless they are one attack, this traffic is unlike the model's training (another network, or a change of the site such as Zeek's local_nets): once it is normal here, train the model again on this sensor's logs (azw-train)",
            self.flagged,
            self.scored,
            share(self.flagged),
            100.0 * expected,
        )
    }
}

/// The share of anomalies over the last window of records.
#[derive(Debug, Default)]
pub(crate) struct Drift {
    scored: u64,
    flagged: u64,
    /// Per feature, the anomalies it explained most of.
    tops: HashMap<String, u64>,
    /// Records to score before the next warning may be given.
    quiet: u64,
}

impl Drift {
    /// Counts one scored record; says so when the window's share of
    /// anomalies reaches the bar for a model expecting `expected`.
    pub fn count(&mut self, anomaly: bool, top: Option<&str>, expected: f64) -> Option<TooMany> {
        self.scored += 1;
        self.quiet = self.quiet.saturating_sub(1);
        if anomaly {
            self.flagged += 1;
            if let Some(f) = top {
                let room = self.tops.len() < MAX_FEATURES;
                match self.tops.get_mut(f) {
                    Some(n) => *n += 1,
                    None if room => {
                        self.tops.insert(f.to_owned(), 1);
                    }
                    None => {}
                }
            }
        }
        let checked = self.scored >= MIN_RECORDS && self.scored.is_multiple_of(MIN_RECORDS);
        if !checked {
            return None;
        }
        let share = self.flagged as f64 / self.scored as f64;
        let bar = (FACTOR * expected).max(MIN_SHARE);
        let warn = (share >= bar && self.quiet == 0).then(|| TooMany {
            flagged: self.flagged,
            scored: self.scored,
            top: self
                .tops
                .iter()
                .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
                .map(|(f, n)| (f.clone(), *n)),
        });
        if warn.is_some() {
            self.quiet = REPEAT;
        }
        if warn.is_some() || self.scored >= WINDOW {
            *self = Drift {
                quiet: self.quiet,
                ..Drift::default()
            };
        }
        warn
    }

    /// A new model: what the old one flagged says nothing of it.
    pub fn restart(&mut self) {
        *self = Drift::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(drift: &mut Drift, n: u64, every: u64, top: &str) -> Vec<TooMany> {
        (0..n)
            .filter_map(|i| drift.count(i % every == 0, Some(top), 0.001))
            .collect()
    }

    #[test]
    fn a_model_flagging_everything_is_told_once_a_million_records() {
        let mut d = Drift::default();
        let warned = run(&mut d, 999, 1, "local_resp");
        assert!(warned.is_empty(), "not before 1,000 records");
        let warned = run(&mut d, 1, 1, "local_resp");
        assert_eq!(
            warned,
            vec![TooMany {
                flagged: 1000,
                scored: 1000,
                top: Some(("local_resp".into(), 1000))
            }]
        );
        let text = warned[0].message("CONN", 0.001);
        assert!(
            text.contains("1000 of the last 1000 records scored (100.0%)"),
            "{text}"
        );
        assert!(text.contains("expects 0.10%"), "{text}");
        assert!(text.contains("`local_resp`"), "{text}");
        assert!(run(&mut d, REPEAT - 1, 1, "local_resp").is_empty());
        assert_eq!(run(&mut d, 1000, 1, "local_resp").len(), 1);
    }

    #[test]
    fn the_expected_share_and_a_little_more_are_not_told() {
        let mut d = Drift::default();
        // 1 in 25 = 4%: above 20 times 0.1%, below the 5% floor.
        assert!(run(&mut d, 200_000, 25, "resp_p").is_empty());
        // 1 in 10 = 10%: told, at the first thousand.
        let mut d = Drift::default();
        let warned = run(&mut d, 1000, 10, "resp_p");
        assert_eq!(warned.len(), 1);
        assert_eq!(warned[0].flagged, 100);
    }

    /// A burst is measured over its window, which starts afresh every
    /// 10,000 records: an old quiet stretch does not hide a new flood.
    #[test]
    fn a_flood_after_a_quiet_window_is_told() {
        let mut d = Drift::default();
        assert!(run(&mut d, 25_000, 1000, "x").is_empty());
        let warned = run(&mut d, 5_000, 1, "history");
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert_eq!(warned[0].top.as_ref().unwrap().0, "history");
    }

    #[test]
    fn a_new_model_starts_afresh() {
        let mut d = Drift::default();
        assert_eq!(run(&mut d, 1000, 1, "x").len(), 1);
        d.restart();
        assert_eq!(run(&mut d, 1000, 1, "x").len(), 1);
    }
}
