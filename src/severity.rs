//! How serious a flagged record is, in words an analyst sorts by: the
//! probability that normal traffic scores as high ([`Calibration`]), cut
//! into four levels ([`Levels`]).
//!
//! A score's ratio to the threshold means different things in different
//! models (one model's scores are spread over three decades, another's
//! over one), so severity is read off each model's own record of what its
//! normal traffic scored: the held-out score quantiles and the
//! generalised Pareto fit of their tail that training stores
//! ([`crate::model::Threshold`], [`crate::tail`]). A level then means the
//! same in every model: `high` is a score normal traffic reaches about
//! once in 100,000 records.

use serde::{Deserialize, Serialize};

use crate::model::Model;
use crate::tail::TailFit;

/// Four levels above `info`, ordered.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Not flagged.
    Info,
    /// Flagged: above the threshold, as often as the model expects of
    /// normal traffic.
    #[default]
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const LEVELS: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// One level up (critical stays critical).
    pub fn raised(self) -> Severity {
        match self {
            Severity::Info => Severity::Low,
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        }
    }

    /// ECS `event.severity`: 0 (info) to 4 (critical).
    pub fn ecs(self) -> u8 {
        self as u8
    }

    /// Suricata's `alert.severity`: 1 is the most severe, 3 the least.
    pub fn eve(self) -> u8 {
        match self {
            Severity::Critical | Severity::High => 1,
            Severity::Medium => 2,
            Severity::Low | Severity::Info => 3,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Severity, String> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Severity::Info),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "`{s}` is no severity: choose low, medium, high or critical"
            )),
        }
    }
}

/// The probabilities (of a normal record scoring as high) at or below
/// which a flagged record is medium, high and critical. A flagged record
/// above `medium` is low.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    pub medium: f64,
    pub high: f64,
    pub critical: f64,
}

impl Default for Levels {
    /// Medium: once in 10,000 normal records; high: once in 100,000;
    /// critical: once in a million (about a day of a small sensor's conn
    /// log).
    fn default() -> Levels {
        Levels {
            medium: 1e-4,
            high: 1e-5,
            critical: 1e-6,
        }
    }
}

impl Levels {
    /// The level of a flagged record whose score normal traffic reaches
    /// with probability `p`.
    pub fn of(&self, p: f64) -> Severity {
        if p <= self.critical {
            Severity::Critical
        } else if p <= self.high {
            Severity::High
        } else if p <= self.medium {
            Severity::Medium
        } else {
            Severity::Low
        }
    }
}

/// What a model knows of its normal scores' distribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// `(p, score)`: normal traffic scores above `score` with probability
    /// `p`; `p` descending, scores ascending.
    points: Vec<(f64, f64)>,
    tail: Option<TailFit>,
    /// How many normal scores the points rest on.
    scores: u64,
    /// The model's threshold and the share of normal traffic it expects
    /// above it (not for a threshold resting on the training records'
    /// own scores, whose share is known to be too low).
    flagged: Option<(f64, f64)>,
}

impl Calibration {
    pub fn of(model: &Model) -> Calibration {
        let scores = model
            .threshold
            .scores
            .max(model.training.held_out_records)
            .max(1);
        let mut points: Vec<(f64, f64)> = model
            .training
            .score_quantiles
            .iter()
            .filter(|(q, s)| q.is_finite() && s.is_finite() && (0.0..=1.0).contains(q))
            // The maximum is exceeded by no held-out score: the chance of
            // that is below one in `scores`.
            .map(|&(q, s)| ((1.0 - q).max(1.0 / (scores as f64 + 1.0)), s))
            .collect();
        points.sort_by(|a, b| a.1.total_cmp(&b.1));
        let t = &model.threshold;
        let flagged = t
            .expected_fpr
            .filter(|p| !t.in_sample && *p > 0.0 && *p < 1.0 && t.value.is_finite())
            .map(|p| (t.value, p));
        Calibration {
            points,
            tail: t.tail,
            scores,
            flagged,
        }
    }

    /// The probability that a normal record scores `score` or more: the
    /// tail fit above its level, else interpolated (on the log scale of
    /// both) between the stored quantiles. Beyond the highest held-out
    /// score without a tail fit, it is at most one in the number of
    /// scores: no smaller probability can be claimed from them.
    ///
    /// At or above the model's threshold it is at most the share the model
    /// expects there: where the threshold was bounded by the largest
    /// held-out score, the fit claimed more (0.28% at a threshold no
    /// held-out score passed, where the model expects 0.024%), so a record
    /// just flagged seemed more common than flagged records can be.
    pub fn p_normal(&self, score: f64) -> f64 {
        let p = self.p_fitted(score);
        match self.flagged {
            Some((threshold, share)) if score >= threshold => p.min(share),
            _ => p,
        }
    }

    /// [`Calibration::p_normal`] from the fit and the quantiles alone.
    fn p_fitted(&self, score: f64) -> f64 {
        if !score.is_finite() {
            return if score > 0.0 { 0.0 } else { 1.0 };
        }
        if let Some(t) = &self.tail {
            if score >= t.level {
                return t.exceedance(score).clamp(0.0, 1.0);
            }
        }
        let floor = 1.0 / (self.scores as f64 + 1.0);
        let Some(&(p_first, s_first)) = self.points.first() else {
            return 1.0;
        };
        if score <= s_first {
            return p_first.max(0.5);
        }
        for w in self.points.windows(2) {
            let ((p0, s0), (p1, s1)) = (w[0], w[1]);
            if score <= s1 {
                if s1 <= s0 || s0 <= 0.0 || p0 <= 0.0 || p1 <= 0.0 {
                    return p1;
                }
                let f = (score.ln() - s0.ln()) / (s1.ln() - s0.ln());
                return (p0.ln() + f * (p1.ln() - p0.ln())).exp();
            }
        }
        floor
    }

    /// The score normal traffic exceeds with probability `p` (a runtime
    /// threshold asked for as a rate): the tail fit's quantile where it
    /// applies, else the stored quantile nearest above.
    pub fn score_at(&self, p: f64) -> Option<f64> {
        if !(p > 0.0 && p < 1.0) {
            return None;
        }
        if let Some(t) = &self.tail {
            let share = t.excesses as f64 / t.scores.max(1) as f64;
            if p <= share {
                // Bounded as training bounds its threshold: the fit's own
                // quantile brought back a threshold that flags nothing.
                let largest = self.points.last().map_or(f64::NAN, |&(_, s)| s);
                return Some(t.bounded(t.quantile(p), p, largest).0);
            }
        }
        // The inverse of `p_normal`'s interpolation between the quantiles.
        for w in self.points.windows(2) {
            let ((p0, s0), (p1, s1)) = (w[0], w[1]);
            if p <= p0 && p >= p1 {
                if p0 <= p1 || s0 <= 0.0 || s1 <= 0.0 {
                    return Some(s1);
                }
                let f = (p.ln() - p0.ln()) / (p1.ln() - p0.ln());
                return Some((s0.ln() + f * (s1.ln() - s0.ln())).exp());
            }
        }
        let first = self.points.first()?;
        Some(if p > first.0 {
            first.1
        } else {
            self.points.last()?.1
        })
    }
}

/// How a scorer judges a record: its threshold (the model's, unless
/// overridden at run time), the calibration and the levels.
#[derive(Debug, Clone, PartialEq)]
pub struct Judge {
    pub threshold: f64,
    pub calibration: Calibration,
    pub levels: Levels,
    /// Flagged records below this are not flagged.
    pub min_severity: Severity,
}

impl Judge {
    /// `None` and `Low`: the model's threshold decides alone.
    pub fn new(model: &Model, opts: &JudgeOptions) -> Judge {
        let calibration = Calibration::of(model);
        let threshold = match opts.threshold.for_module(model.module.log_path()) {
            Some(ThresholdValue::Score(s)) => s,
            Some(ThresholdValue::Rate(p)) => calibration.score_at(p).unwrap_or_else(|| {
                tracing::warn!(
                    "{}: the model stores no held-out scores to place rate:{p}; its own threshold stays",
                    model.module
                );
                model.threshold.value
            }),
            None => model.threshold.value,
        };
        Judge {
            threshold,
            calibration,
            levels: opts.levels,
            min_severity: opts.min_severity.max(Severity::Low),
        }
    }

    /// Whether `score` is flagged, and if so its severity and the
    /// probability of normal traffic scoring as high.
    pub fn judge(&self, score: f64) -> Option<(Severity, f64)> {
        if score.is_nan() || score <= self.threshold {
            return None;
        }
        let p = self.calibration.p_normal(score);
        let severity = self.levels.of(p);
        (severity >= self.min_severity).then_some((severity, p))
    }
}

/// A runtime threshold: a score, or a rate of normal traffic to flag.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Score(f64),
    /// Flag this share of normal traffic (`1e-4`), placed by each model's
    /// calibration.
    Rate(f64),
}

/// `--threshold`: for every model (`0.25`, `rate:1e-4`) or per log type
/// (`conn=0.25,dns=rate:1e-4`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdOverride {
    all: Option<ThresholdValue>,
    by_module: Vec<(String, ThresholdValue)>,
}

impl ThresholdOverride {
    pub fn for_module(&self, module: &str) -> Option<ThresholdValue> {
        self.by_module
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(module))
            .map(|(_, v)| *v)
            .or(self.all)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.by_module.is_empty()
    }
}

fn parse_value(s: &str) -> Result<ThresholdValue, String> {
    let s = s.trim();
    if let Some(rate) = s.strip_prefix("rate:") {
        let p: f64 = rate
            .parse()
            .map_err(|_| format!("`{rate}` is no rate: give one like rate:1e-4"))?;
        if !(p > 0.0 && p < 1.0) {
            return Err(format!("rate:{rate}: a rate is above 0 and below 1"));
        }
        return Ok(ThresholdValue::Rate(p));
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is no threshold: give a score (0.25) or a rate (rate:1e-4)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{s}: a threshold is a score, 0 or more"));
    }
    Ok(ThresholdValue::Score(v))
}

impl std::str::FromStr for ThresholdOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<ThresholdOverride, String> {
        let mut out = ThresholdOverride::default();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((module, value)) => {
                    let module = module.trim();
                    if module.is_empty() {
                        return Err(format!("`{item}`: name the log type before `=`"));
                    }
                    out.by_module
                        .push((module.to_ascii_lowercase(), parse_value(value)?));
                }
                None => out.all = Some(parse_value(item)?),
            }
        }
        if out.is_empty() {
            return Err(
                "an empty threshold: give a score (0.25), a rate (rate:1e-4) or MODULE=VALUE items"
                    .into(),
            );
        }
        Ok(out)
    }
}

/// How records are judged at run time: `--threshold`, `--min-severity`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JudgeOptions {
    pub threshold: ThresholdOverride,
    pub min_severity: Severity,
    pub levels: Levels,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calibration(tail: Option<TailFit>) -> Calibration {
        Calibration {
            points: vec![
                (0.5, 0.01),
                (0.1, 0.02),
                (0.01, 0.05),
                (0.001, 0.1),
                (1.0 / 10_001.0, 0.2),
            ],
            tail,
            scores: 10_000,
            flagged: None,
        }
    }

    #[test]
    fn probabilities_fall_as_scores_rise_and_meet_the_quantiles() {
        let c = calibration(None);
        assert!((c.p_normal(0.1) - 0.001).abs() < 1e-12);
        assert!((c.p_normal(0.05) - 0.01).abs() < 1e-12);
        let between = c.p_normal(0.07);
        assert!(between < 0.01 && between > 0.001, "{between}");
        assert_eq!(c.p_normal(0.001), 0.5);
        // Beyond every held-out score, no claim below one in their count.
        assert!((c.p_normal(5.0) - 1.0 / 10_001.0).abs() < 1e-15);
        let mut last = 1.0;
        for i in 0..200 {
            let p = c.p_normal(i as f64 * 0.002);
            assert!(p <= last, "not monotone at {i}");
            last = p;
        }
    }

    #[test]
    fn the_tail_fit_extrapolates_beyond_the_held_out_scores() {
        // A Pareto tail (exponential on the log scale): heavy enough that
        // the fit's quantile stays within its bound.
        let sorted: Vec<f64> = (1..=10_000)
            .map(|i| 1e-3 * (1.0 - i as f64 / 10_001.0).powf(-0.5))
            .collect();
        let tail = TailFit::fit(&sorted).expect("a fit");
        let mut c = calibration(Some(tail));
        // The largest held-out score is the fitted scores'.
        c.points.last_mut().unwrap().1 = sorted[9_999];
        let far = c.p_normal(sorted[9_999] * 10.0);
        assert!(far < 1e-4, "{far}");
        let q = c.score_at(1e-5).unwrap();
        assert!((c.p_normal(q) - 1e-5).abs() < 1e-7, "{}", c.p_normal(q));
    }

    /// 5,000 held-out scores whose tail fit's 0.1% quantile lies past
    /// the largest of them (a threshold bounded by it), without a
    /// threshold of the model's; and that largest score.
    fn bounded_by_the_largest() -> (Calibration, f64) {
        let mut sorted: Vec<f64> = (0..4900).map(|i| 0.1 + f64::from(i) / 49_000.0).collect();
        sorted.extend((1..=100).map(|j| 0.2 * (f64::from(j) / 100.0).exp()));
        let tail = TailFit::fit(&sorted).expect("a fit");
        let largest = sorted[sorted.len() - 1];
        assert!(tail.quantile(0.001) > largest, "the fit goes past it");
        let c = Calibration {
            points: vec![(0.5, sorted[2500]), (1.0 / 5001.0, largest)],
            tail: Some(tail),
            scores: 5000,
            flagged: None,
        };
        (c, largest)
    }

    /// A rate asked for at run time is bounded as training's threshold is
    /// ([`TailFit::bounded`]): with enough scores, at most the largest.
    #[test]
    fn a_rate_is_bounded_by_the_scores_as_trainings_threshold_is() {
        let (c, largest) = bounded_by_the_largest();
        assert_eq!(c.score_at(0.001), Some(largest));
    }

    /// A record at a threshold bounded by the largest held-out score is
    /// no more common than the model says flagged records are, whatever
    /// the fit claims there; past where the fit falls below that share,
    /// the fit speaks again.
    #[test]
    fn a_flagged_score_is_no_more_common_than_the_model_expects() {
        let (mut c, largest) = bounded_by_the_largest();
        let expected = 1.0 / 5001.0;
        let fitted = c.p_normal(largest);
        assert!(fitted > 2.0 * expected, "the fit claims more: {fitted}");
        c.flagged = Some((largest, expected));
        assert_eq!(c.p_normal(largest), expected);
        assert_eq!(c.p_normal(largest * 0.99), c.p_fitted(largest * 0.99));
        let far = largest * 50.0;
        assert!(c.p_fitted(far) < expected);
        assert_eq!(c.p_normal(far), c.p_fitted(far));
        let mut last = 1.0;
        for i in 0..400 {
            let p = c.p_normal(f64::from(i) * largest / 100.0);
            assert!(p <= last, "not monotone at {i}");
            last = p;
        }
    }

    #[test]
    fn a_rate_between_the_quantiles_is_placed_between_them() {
        let c = calibration(None);
        let s = c.score_at(0.005).unwrap();
        assert!(s > 0.05 && s < 0.1, "{s}");
        assert!((c.p_normal(s) - 0.005).abs() < 1e-9, "{}", c.p_normal(s));
        assert_eq!(c.score_at(0.9), Some(0.01));
        assert_eq!(c.score_at(1e-9), Some(0.2));
        assert_eq!(c.score_at(0.0), None);
    }

    #[test]
    fn levels_cut_the_probability() {
        let l = Levels::default();
        assert_eq!(l.of(1e-3), Severity::Low);
        assert_eq!(l.of(1e-4), Severity::Medium);
        assert_eq!(l.of(5e-6), Severity::High);
        assert_eq!(l.of(1e-7), Severity::Critical);
        assert_eq!(Severity::High.raised(), Severity::Critical);
        assert_eq!(Severity::Critical.raised(), Severity::Critical);
    }

    #[test]
    fn thresholds_parse_for_all_or_per_log_type_and_say_what_is_wrong() {
        let t: ThresholdOverride = "0.25".parse().unwrap();
        assert_eq!(t.for_module("conn"), Some(ThresholdValue::Score(0.25)));
        let t: ThresholdOverride = "CONN=rate:1e-4, dns=0.3".parse().unwrap();
        assert_eq!(t.for_module("conn"), Some(ThresholdValue::Rate(1e-4)));
        assert_eq!(t.for_module("dns"), Some(ThresholdValue::Score(0.3)));
        assert_eq!(t.for_module("http"), None);
        for bad in ["", "x", "conn=", "rate:2", "=0.3", "-1", "rate:abc"] {
            let err = bad.parse::<ThresholdOverride>().unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
        assert!("high".parse::<Severity>().is_ok());
        assert!("severe"
            .parse::<Severity>()
            .unwrap_err()
            .contains("low, medium, high or critical"));
    }
}
