//! The curves of an evaluation as one SVG: ROC (linear and with a log
//! false-positive axis, where the budgets that matter in operations live),
//! precision-recall, and the score distributions of benign and malicious
//! items with the model's threshold.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::metrics::{self, Metrics, Scored};

#[derive(Debug, thiserror::Error)]
#[error("{}: cannot draw the plot: {message}", path.display())]
pub struct PlotError {
    pub path: std::path::PathBuf,
    pub message: String,
}

const BENIGN: RGBColor = RGBColor(31, 119, 180);
const MALICIOUS: RGBColor = RGBColor(214, 39, 40);
const CURVE: RGBColor = RGBColor(44, 44, 44);
const LOWEST_FPR: f64 = 1e-4;
const BINS: usize = 60;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error + 'static>>;

/// Writes the four panels to `path` (SVG). `title` heads the picture.
pub fn write_svg(path: &Path, title: &str, items: &[Scored], m: &Metrics) -> Result<(), PlotError> {
    let err = |message: String| PlotError {
        path: path.to_owned(),
        message,
    };
    let roc = metrics::roc_curve(items).map_err(|e| err(e.to_string()))?;
    let pr = metrics::pr_curve(items).map_err(|e| err(e.to_string()))?;
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    draw(&root, title, items, m, &roc, &pr).map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn draw(
    root: &Area<'_>,
    title: &str,
    items: &[Scored],
    m: &Metrics,
    roc: &[(f64, f64)],
    pr: &[(f64, f64)],
) -> DrawResult {
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 24))?;
    let panels = root.split_evenly((2, 2));
    let at = &m.at_threshold;
    let point = (at.false_positive_rate, at.recall);

    // ROC, linear.
    let mut c = ChartBuilder::on(&panels[0])
        .caption(format!("ROC (AUC {:.4})", m.roc_auc), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("false-positive rate")
        .y_desc("recall (true-positive rate)")
        .draw()?;
    c.draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], CURVE.mix(0.3)))?;
    c.draw_series(LineSeries::new(roc.iter().copied(), CURVE.stroke_width(2)))?;
    c.draw_series([Circle::new(point, 5, MALICIOUS.filled())])?
        .label(format!(
            "model threshold: recall {:.3}, FPR {:.4}",
            at.recall, at.false_positive_rate
        ))
        .legend(|(x, y)| Circle::new((x + 10, y), 5, MALICIOUS.filled()));
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;

    // ROC, log false-positive axis.
    let mut c = ChartBuilder::on(&panels[1])
        .caption(
            "ROC, false-positive rate on a log scale",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((LOWEST_FPR..1f64).log_scale(), 0f64..1.0001f64)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("false-positive rate")
        .y_desc("recall")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    let clamped = roc.iter().map(|&(x, y)| (x.max(LOWEST_FPR), y));
    c.draw_series(LineSeries::new(clamped, CURVE.stroke_width(2)))?;
    for r in &m.recall_at_fpr {
        let x = r.max_fpr.max(LOWEST_FPR);
        c.draw_series(LineSeries::new([(x, 0.0), (x, 1.0)], BLACK.mix(0.25)))?;
        c.draw_series([Text::new(
            format!("{:.3} at {}%", r.recall, r.max_fpr * 100.0),
            (x * 1.1, 0.05 + if r.max_fpr < 0.005 { 0.08 } else { 0.0 }),
            ("sans-serif", 14),
        )])?;
    }
    c.draw_series([Circle::new(
        (point.0.max(LOWEST_FPR), point.1),
        5,
        MALICIOUS.filled(),
    )])?;

    // Precision-recall.
    let base = m.malicious as f64 / m.items as f64;
    let mut c = ChartBuilder::on(&panels[2])
        .caption(
            format!("precision-recall (AP {:.4})", m.average_precision),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1.0001f64)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("recall")
        .y_desc("precision")
        .draw()?;
    c.draw_series(LineSeries::new([(0.0, base), (1.0, base)], CURVE.mix(0.3)))?
        .label(format!("chance: {:.3} malicious", base))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], CURVE.mix(0.3)));
    let mut pts = vec![(0.0, pr.first().map_or(1.0, |p| p.1))];
    pts.extend(pr.iter().copied());
    c.draw_series(LineSeries::new(pts, CURVE.stroke_width(2)))?;
    if let Some(p) = at.precision {
        c.draw_series([Circle::new((at.recall, p), 5, MALICIOUS.filled())])?
            .label(format!(
                "model threshold: precision {p:.3}, recall {:.3}",
                at.recall
            ))
            .legend(|(x, y)| Circle::new((x + 10, y), 5, MALICIOUS.filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;

    // Score distributions.
    draw_histograms(&panels[3], items, at.threshold)?;
    Ok(())
}

/// Share of each class per bin of log10(score).
fn draw_histograms(area: &Area<'_>, items: &[Scored], threshold: f64) -> DrawResult {
    // No threshold (a scored output without one) draws no line.
    let threshold = if threshold.is_finite() {
        threshold
    } else {
        0.0
    };
    let positive: Vec<f64> = items
        .iter()
        .map(|s| s.score)
        .filter(|s| *s > 0.0 && s.is_finite())
        .collect();
    let lo = positive
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(if threshold > 0.0 {
            threshold
        } else {
            f64::INFINITY
        });
    let hi = positive.iter().copied().fold(0.0, f64::max).max(threshold);
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (1e-6, 1.0)
    };
    let (llo, lhi) = (lo.log10(), hi.log10() + 1e-9);
    let width = (lhi - llo) / BINS as f64;
    let bin_of = |s: f64| {
        (((s.max(lo)).log10() - llo) / width)
            .floor()
            .clamp(0.0, (BINS - 1) as f64) as usize
    };
    let mut counts = [[0usize; BINS]; 2];
    let mut totals = [0usize; 2];
    for s in items {
        let k = usize::from(s.malicious);
        counts[k][bin_of(s.score)] += 1;
        totals[k] += 1;
    }
    let share = |k: usize, b: usize| counts[k][b] as f64 / totals[k].max(1) as f64;
    let top = (0..BINS)
        .flat_map(|b| [share(0, b), share(1, b)])
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let mut c = ChartBuilder::on(area)
        .caption(
            "score distribution (share of each class per bin)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..top)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("anomaly score (log scale)")
        .y_desc("share of class")
        .x_label_formatter(&|v| format!("{v:.0e}"))
        .draw()?;
    let edge = |b: usize| 10f64.powf(llo + b as f64 * width);
    for (k, color, name) in [(0, BENIGN, "benign"), (1, MALICIOUS, "malicious")] {
        c.draw_series((0..BINS).filter(|&b| counts[k][b] > 0).map(|b| {
            Rectangle::new(
                [(edge(b), 0.0), (edge(b + 1), share(k, b))],
                color.mix(0.45).filled(),
            )
        }))?
        .label(format!("{name} ({})", totals[k]))
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.mix(0.45).filled())
        });
    }
    if threshold > 0.0 {
        c.draw_series(LineSeries::new(
            [(threshold, 0.0), (threshold, top)],
            BLACK.stroke_width(2),
        ))?
        .label(format!("threshold {threshold:.4}"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_the_four_panels() {
        let mut items: Vec<Scored> = (1..=200)
            .map(|i| Scored::new(f64::from(i) * 0.001, false, ""))
            .collect();
        items.extend((1..=20).map(|i| Scored::new(0.25 + f64::from(i) * 0.01, true, "scan")));
        let m = metrics::evaluate(&items, 0.19).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval.svg");
        write_svg(&path, "test run", &items, &m).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        for text in [
            "ROC (AUC 1.0000)",
            "precision-recall (AP 1.0000)",
            "score distribution",
            "threshold 0.1900",
            "test run",
        ] {
            assert!(svg.contains(text), "missing `{text}`");
        }
    }
}
