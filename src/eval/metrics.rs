//! Detection metrics of scores against ground truth.
//!
//! Higher scores mean more anomalous; positives are the malicious items.
//! Tied scores are never broken by input order: ROC-AUC is the
//! Mann-Whitney U statistic with average ranks (a tie between a benign and a
//! malicious item counts one half), and average precision follows
//! scikit-learn's `average_precision_score`, with all items of one score
//! taken at once (one step of the precision-recall curve per distinct
//! score).

use std::collections::BTreeMap;

use serde::Serialize;

/// One scored item (a uid) with its truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub malicious: bool,
    /// The detailed label ("" when there is none).
    pub detail: String,
}

impl Scored {
    pub fn new(score: f64, malicious: bool, detail: impl Into<String>) -> Scored {
        Scored {
            score,
            malicious,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("nothing to measure: no labeled item was scored")]
    Empty,
    #[error("only one class in the test set ({benign} benign, {malicious} malicious): ROC-AUC and average precision need both benign and malicious items (check the label column, or that the test part holds some of each)")]
    OneClass { benign: usize, malicious: usize },
    #[error("{0} scores are not numbers (NaN)")]
    NotANumber(usize),
}

/// Counts and rates when everything scoring above a threshold is flagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AtThreshold {
    pub threshold: f64,
    pub true_positives: usize,
    pub false_positives: usize,
    pub true_negatives: usize,
    pub false_negatives: usize,
    /// `None` when nothing is flagged.
    pub precision: Option<f64>,
    pub recall: f64,
    /// `None` when precision is undefined or both are 0.
    pub f1: Option<f64>,
    pub false_positive_rate: f64,
}

/// The best recall while the false-positive rate stays within a budget.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecallAtFpr {
    pub max_fpr: f64,
    pub recall: f64,
    /// The false-positive rate actually reached.
    pub fpr: f64,
    /// Flag scores at or above this to get it (`None`: flag nothing).
    pub min_score: Option<f64>,
}

/// Detection of one detailed label at the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetailRow {
    pub malicious: bool,
    pub detail: String,
    pub count: usize,
    pub flagged: usize,
    /// flagged / count: recall for a malicious label, false-positive rate
    /// for a benign one.
    pub share: f64,
}

/// Everything `azw-eval` reports for one set of scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub items: usize,
    pub malicious: usize,
    pub benign: usize,
    pub roc_auc: f64,
    pub average_precision: f64,
    pub at_threshold: AtThreshold,
    pub recall_at_fpr: Vec<RecallAtFpr>,
    pub by_detail: Vec<DetailRow>,
}

/// The false-positive budgets `recall_at_fpr` reports.
pub const FPR_BUDGETS: [f64; 2] = [0.001, 0.01];

fn check(items: &[Scored]) -> Result<(usize, usize), MetricsError> {
    if items.is_empty() {
        return Err(MetricsError::Empty);
    }
    let nan = items.iter().filter(|s| s.score.is_nan()).count();
    if nan > 0 {
        return Err(MetricsError::NotANumber(nan));
    }
    let malicious = items.iter().filter(|s| s.malicious).count();
    let benign = items.len() - malicious;
    if malicious == 0 || benign == 0 {
        return Err(MetricsError::OneClass { benign, malicious });
    }
    Ok((malicious, benign))
}

/// ROC-AUC: the probability that a random malicious item scores above a
/// random benign one, ties counting one half (Mann-Whitney U with average
/// ranks).
pub fn roc_auc(items: &[Scored]) -> Result<f64, MetricsError> {
    let (pos, neg) = check(items)?;
    let mut order: Vec<&Scored> = items.iter().collect();
    order.sort_by(|a, b| a.score.total_cmp(&b.score));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && order[j + 1].score == order[i].score {
            j += 1;
        }
        // Ranks i+1..=j+1 share their mean.
        let avg = (i + j + 2) as f64 / 2.0;
        rank_sum += avg * order[i..=j].iter().filter(|s| s.malicious).count() as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// One point per distinct score, from the highest down: cumulative true and
/// false positives when every item scoring at or above `score` is flagged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    pub score: f64,
    pub tp: usize,
    pub fp: usize,
}

/// The operating points of all thresholds, highest score first.
pub fn operating_points(items: &[Scored]) -> Vec<CurvePoint> {
    let mut order: Vec<&Scored> = items.iter().collect();
    order.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0, 0);
    let mut i = 0;
    while i < order.len() {
        let score = order[i].score;
        while i < order.len() && order[i].score == score {
            if order[i].malicious {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push(CurvePoint { score, tp, fp });
    }
    out
}

/// Average precision, scikit-learn style: the sum over distinct scores of
/// (recall gained) x (precision there).
pub fn average_precision(items: &[Scored]) -> Result<f64, MetricsError> {
    let (pos, _) = check(items)?;
    let mut ap = 0.0;
    let mut last_recall = 0.0;
    for p in operating_points(items) {
        let recall = p.tp as f64 / pos as f64;
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        ap += (recall - last_recall) * precision;
        last_recall = recall;
    }
    Ok(ap)
}

/// Flags every item scoring strictly above `threshold` (as the scorer
/// does) and counts.
pub fn at_threshold(items: &[Scored], threshold: f64) -> AtThreshold {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for s in items {
        match (s.score > threshold, s.malicious) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let precision = (tp + fp > 0).then(|| tp as f64 / (tp + fp) as f64);
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        0.0
    };
    let f1 = precision
        .filter(|p| p + recall > 0.0)
        .map(|p| 2.0 * p * recall / (p + recall));
    let fpr = if fp + tn > 0 {
        fp as f64 / (fp + tn) as f64
    } else {
        0.0
    };
    AtThreshold {
        threshold,
        true_positives: tp,
        false_positives: fp,
        true_negatives: tn,
        false_negatives: fn_,
        precision,
        recall,
        f1,
        false_positive_rate: fpr,
    }
}

/// The highest recall of any threshold whose false-positive rate is at most
/// `max_fpr`. Thresholds sit between distinct scores, so tied items are
/// flagged together or not at all.
pub fn recall_at_fpr(items: &[Scored], max_fpr: f64) -> Result<RecallAtFpr, MetricsError> {
    let (pos, neg) = check(items)?;
    let mut best = RecallAtFpr {
        max_fpr,
        recall: 0.0,
        fpr: 0.0,
        min_score: None,
    };
    for p in operating_points(items) {
        let fpr = p.fp as f64 / neg as f64;
        if fpr > max_fpr {
            break;
        }
        best.recall = p.tp as f64 / pos as f64;
        best.fpr = fpr;
        best.min_score = Some(p.score);
    }
    Ok(best)
}

/// Per detailed label (malicious ones first, then benign), how many items
/// score above the threshold.
pub fn by_detail(items: &[Scored], threshold: f64) -> Vec<DetailRow> {
    let mut groups: BTreeMap<(bool, &str), (usize, usize)> = BTreeMap::new();
    for s in items {
        let e = groups.entry((!s.malicious, s.detail.as_str())).or_default();
        e.0 += 1;
        e.1 += usize::from(s.score > threshold);
    }
    groups
        .into_iter()
        .map(|((benign, detail), (count, flagged))| DetailRow {
            malicious: !benign,
            detail: detail.to_owned(),
            count,
            flagged,
            share: flagged as f64 / count as f64,
        })
        .collect()
}

/// All of the above.
pub fn evaluate(items: &[Scored], threshold: f64) -> Result<Metrics, MetricsError> {
    let (malicious, benign) = check(items)?;
    Ok(Metrics {
        items: items.len(),
        malicious,
        benign,
        roc_auc: roc_auc(items)?,
        average_precision: average_precision(items)?,
        at_threshold: at_threshold(items, threshold),
        recall_at_fpr: FPR_BUDGETS
            .iter()
            .map(|&f| recall_at_fpr(items, f))
            .collect::<Result<_, _>>()?,
        by_detail: by_detail(items, threshold),
    })
}

/// The ROC curve as (false-positive rate, true-positive rate) points,
/// starting at (0, 0) and ending at (1, 1).
pub fn roc_curve(items: &[Scored]) -> Result<Vec<(f64, f64)>, MetricsError> {
    let (pos, neg) = check(items)?;
    let mut out = vec![(0.0, 0.0)];
    out.extend(
        operating_points(items)
            .into_iter()
            .map(|p| (p.fp as f64 / neg as f64, p.tp as f64 / pos as f64)),
    );
    Ok(out)
}

/// The precision-recall curve as (recall, precision) points, one per
/// distinct score, highest score first.
pub fn pr_curve(items: &[Scored]) -> Result<Vec<(f64, f64)>, MetricsError> {
    let (pos, _) = check(items)?;
    Ok(operating_points(items)
        .into_iter()
        .map(|p| (p.tp as f64 / pos as f64, p.tp as f64 / (p.tp + p.fp) as f64))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(scores: &[f64], labels: &[u8]) -> Vec<Scored> {
        scores
            .iter()
            .zip(labels)
            .map(|(&s, &l)| Scored::new(s, l == 1, if l == 1 { "m" } else { "" }))
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn the_textbook_case() {
        // scikit-learn's documented example: roc_auc_score = 0.75,
        // average_precision_score = 0.8333...
        let v = items(&[0.1, 0.4, 0.35, 0.8], &[0, 0, 1, 1]);
        assert!(close(roc_auc(&v).unwrap(), 0.75));
        assert!(close(average_precision(&v).unwrap(), 5.0 / 6.0));
    }

    #[test]
    fn ties_count_one_half_and_are_taken_together() {
        // Scores 1 2 2 3, truth 0 0 1 1: ranks 1, 2.5, 2.5, 4; the positive
        // ranks sum to 6.5, U = 6.5 - 3 = 3.5 of 4 pairs.
        let v = items(&[1.0, 2.0, 2.0, 3.0], &[0, 0, 1, 1]);
        assert!(close(roc_auc(&v).unwrap(), 0.875));
        // Steps: score 3 -> recall 1/2 at precision 1; score 2 -> recall 1
        // at precision 2/3. AP = 0.5 * 1 + 0.5 * 2/3.
        assert!(close(average_precision(&v).unwrap(), 0.5 + 1.0 / 3.0));
        // The order of tied items changes nothing.
        let w = items(&[3.0, 2.0, 2.0, 1.0], &[1, 1, 0, 0]);
        assert_eq!(roc_auc(&v), roc_auc(&w));
        assert_eq!(average_precision(&v), average_precision(&w));
    }

    #[test]
    fn all_tied_is_chance() {
        let v = items(&[0.5; 4], &[0, 1, 0, 1]);
        assert!(close(roc_auc(&v).unwrap(), 0.5));
        assert!(close(average_precision(&v).unwrap(), 0.5));
        // One threshold only: flag all or nothing.
        let r = recall_at_fpr(&v, 0.01).unwrap();
        assert_eq!((r.recall, r.min_score), (0.0, None));
    }

    #[test]
    fn perfect_and_inverted() {
        let v = items(&[1.0, 2.0, 3.0, 4.0], &[0, 0, 1, 1]);
        assert_eq!(roc_auc(&v).unwrap(), 1.0);
        assert_eq!(average_precision(&v).unwrap(), 1.0);
        let w = items(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 0, 0]);
        assert_eq!(roc_auc(&w).unwrap(), 0.0);
        // Recall 1/2 at precision 1/3, recall 1 at precision 1/2.
        assert!(close(average_precision(&w).unwrap(), 0.5 / 3.0 + 0.5 * 0.5));
    }

    #[test]
    fn one_class_is_a_clear_error() {
        let v = items(&[1.0, 2.0], &[0, 0]);
        let e = roc_auc(&v).unwrap_err();
        assert_eq!(
            e,
            MetricsError::OneClass {
                benign: 2,
                malicious: 0
            }
        );
        assert!(e.to_string().contains("only one class"), "{e}");
        assert!(evaluate(&items(&[1.0], &[1]), 0.5).is_err());
        assert_eq!(evaluate(&[], 0.5).unwrap_err(), MetricsError::Empty);
        assert_eq!(
            roc_auc(&items(&[f64::NAN, 1.0], &[0, 1])).unwrap_err(),
            MetricsError::NotANumber(1)
        );
    }

    #[test]
    fn counts_at_the_threshold() {
        // Flag > 2.5: items 3, 4, 5 -> tp 2, fp 1, tn 2, fn 0.
        let v = items(&[1.0, 2.0, 3.0, 4.0, 5.0], &[0, 0, 1, 0, 1]);
        let t = at_threshold(&v, 2.5);
        assert_eq!(
            (
                t.true_positives,
                t.false_positives,
                t.true_negatives,
                t.false_negatives
            ),
            (2, 1, 2, 0)
        );
        assert!(close(t.precision.unwrap(), 2.0 / 3.0));
        assert!(close(t.recall, 1.0));
        assert!(close(t.f1.unwrap(), 0.8));
        assert!(close(t.false_positive_rate, 1.0 / 3.0));
        // A score equal to the threshold is not flagged.
        let t = at_threshold(&v, 3.0);
        assert_eq!((t.true_positives, t.false_negatives), (1, 1));
        // Nothing flagged: precision and F1 are undefined, not 0 or 1.
        let t = at_threshold(&v, 9.0);
        assert_eq!((t.precision, t.f1, t.recall), (None, None, 0.0));
    }

    #[test]
    fn recall_within_a_false_positive_budget() {
        // 1,000 benign items scoring 0..999, 10 malicious: 5 above all
        // benign, 5 tied with the top benign ones.
        let mut v: Vec<Scored> = (0..1000)
            .map(|i| Scored::new(f64::from(i), false, ""))
            .collect();
        for i in 0..5 {
            v.push(Scored::new(2000.0 + f64::from(i), true, "a"));
        }
        for i in 0..5 {
            v.push(Scored::new(999.0 - f64::from(i) * 5.0, true, "b"));
        }
        // 0.1% of 1,000 = 1 false positive: flag >= 999 -> 6 of 10 found.
        let r = recall_at_fpr(&v, 0.001).unwrap();
        assert_eq!((r.recall, r.fpr, r.min_score), (0.6, 0.001, Some(999.0)));
        // 1% = 10 false positives: flag >= 990 (benign 990..=999) finds the
        // five above all, 999 and 994; going down to 989 would cost 11.
        let r = recall_at_fpr(&v, 0.01).unwrap();
        assert_eq!((r.recall, r.min_score), (0.7, Some(990.0)));
        assert!(close(r.fpr, 0.01));
        let m = evaluate(&v, 1000.0).unwrap();
        assert_eq!(m.recall_at_fpr.len(), 2);
        assert_eq!((m.malicious, m.benign, m.items), (10, 1000, 1010));
        // Per detailed label at threshold 1000: all of "a", none of "b",
        // no benign one.
        let rows: Vec<_> = m
            .by_detail
            .iter()
            .map(|r| (r.malicious, r.detail.as_str(), r.count, r.flagged))
            .collect();
        assert_eq!(
            rows,
            [(true, "a", 5, 5), (true, "b", 5, 0), (false, "", 1000, 0)]
        );
    }

    #[test]
    fn curves_run_from_corner_to_corner() {
        let v = items(&[1.0, 2.0, 2.0, 3.0], &[0, 0, 1, 1]);
        let roc = roc_curve(&v).unwrap();
        assert_eq!(roc, [(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        let pr = pr_curve(&v).unwrap();
        assert_eq!(pr, [(0.5, 1.0), (1.0, 2.0 / 3.0), (1.0, 0.5)]);
        // Trapezoids under the ROC points give the same AUC as the ranks.
        let area: f64 = roc
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!(close(area, roc_auc(&v).unwrap()));
    }
}
