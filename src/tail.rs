//! The tail of normal scores: where to put a threshold that flags a given
//! share of normal traffic, from fewer records than that share asks for.
//!
//! The empirical 0.999 quantile of 260 held-out scores is their maximum,
//! and on small held-out sets it flagged 12.7% and 51% of benign test
//! traffic instead of 0.1%. Extreme value theory gives the tail a shape:
//! above a high enough level `u`, excesses follow a generalised Pareto
//! distribution (Pickands-Balkema-de Haan), so the quantile is
//! extrapolated from the fitted tail instead of read off the last few
//! points (peaks over threshold, as in SPOT, Siffer et al., KDD 2017).
//!
//! The fit is made on the logarithm of the scores: KitNET's
//! reconstruction errors are close to log-normal (its authors fit exactly
//! that), and on the log scale their tail is light enough for a fit on a
//! few dozen points to extrapolate sanely. The shape is bounded by
//! [`MAX_SHAPE`]: a handful of outliers above a level otherwise makes the
//! unconstrained fit's shape explode (3.0 on one dev set, a threshold
//! twenty-five times the largest score).
//!
//! The fit is the maximum-likelihood one, found over the single parameter
//! `theta = xi / sigma` of the profile likelihood (Grimshaw, 1993), on a
//! grid refined by golden-section search: no optimiser crate, no starting
//! point to get wrong, and it cannot diverge.

use serde::{Deserialize, Serialize};

/// Fewer excesses than this make no fit; the threshold is then the
/// empirical quantile, and the model says so.
pub const MIN_EXCESSES: usize = 10;

/// The largest shape allowed (log scale): beyond it the fit is refitted
/// with this shape. The smallest is 0 (see [`fit_gpd`]).
pub const MAX_SHAPE: f64 = 0.5;

/// Added to scores before their logarithm: a score of 0 stays finite.
const LOG_FLOOR: f64 = 1e-12;

fn to_log(score: f64) -> f64 {
    (score.max(0.0) + LOG_FLOOR).ln()
}

fn from_log(x: f64) -> f64 {
    (x.exp() - LOG_FLOOR).max(0.0)
}

/// A generalised Pareto fit of the log-scores above `level` (a score).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TailFit {
    /// Scores fitted: every score above this.
    pub level: f64,
    /// Scale and shape of the excesses of `ln(score)` over `ln(level)`.
    pub sigma: f64,
    pub xi: f64,
    /// How many scores lie above `level`, of how many.
    pub excesses: u64,
    pub scores: u64,
}

impl TailFit {
    /// Fits the tail of `sorted` (ascending, finite) scores. `None` when
    /// there are too few distinct high scores to fit anything.
    pub fn fit(sorted: &[f64]) -> Option<TailFit> {
        let n = sorted.len();
        let k = excess_count(n);
        if k < MIN_EXCESSES || n <= k {
            return None;
        }
        let level = sorted[n - k - 1];
        let excesses: Vec<f64> = sorted[n - k..]
            .iter()
            .map(|s| to_log(*s) - to_log(level))
            .filter(|y| *y > 0.0)
            .collect();
        if excesses.len() < MIN_EXCESSES {
            return None;
        }
        let (sigma, xi) = fit_gpd(&excesses)?;
        Some(TailFit {
            level,
            sigma,
            xi,
            excesses: excesses.len() as u64,
            scores: n as u64,
        })
    }

    /// The score that normal traffic exceeds with probability `p`.
    pub fn quantile(&self, p: f64) -> f64 {
        let share = self.excesses as f64 / self.scores as f64;
        let r = (p / share).max(f64::MIN_POSITIVE);
        let y = if self.xi.abs() < 1e-9 {
            -self.sigma * r.ln()
        } else {
            self.sigma / self.xi * (r.powf(-self.xi) - 1.0)
        };
        from_log(to_log(self.level) + y)
    }

    /// The probability that a normal score exceeds `score`, for scores
    /// above the fitted level (below it, the tail model does not apply and
    /// the share above the level is returned).
    pub fn exceedance(&self, score: f64) -> f64 {
        let share = self.excesses as f64 / self.scores as f64;
        let y = (to_log(score) - to_log(self.level)).max(0.0);
        let tail = if self.xi.abs() < 1e-9 {
            (-y / self.sigma).exp()
        } else {
            let base = 1.0 + self.xi * y / self.sigma;
            if base <= 0.0 {
                0.0
            } else {
                base.powf(-1.0 / self.xi)
            }
        };
        share * tail
    }
}

/// How [`TailFit::bounded`] moved a quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Not at all.
    None,
    /// Down to the largest score.
    AtLargest,
    /// Down to this many times the largest score.
    Span(f64),
}

impl TailFit {
    /// `fitted` (a quantile of this fit, for the rate `p`) bounded by the
    /// scores it was fitted on, whose largest is `max`.
    ///
    /// A fit on a few dozen scores can put its quantile far past every
    /// score (a review's sensor: conn at 6 times the largest of 7,623
    /// held-out scores, weird at product mode's cap of 4 against 0.44), and
    /// a threshold there flags nothing, ever. Two bounds:
    /// - with at least `1 / p` scores the quantile lies within their range,
    ///   so it is at most their maximum (exceeded by about one normal record
    ///   in n + 1, no more than asked);
    /// - with fewer, it goes past their maximum, but (on the log scale the
    ///   fit is made on) no further than the maximum lies above the fitted
    ///   tail's level: never further past the data than its tail spans.
    ///
    /// Training's threshold and a rate asked for at run time
    /// (`--threshold rate:`) are both bounded so.
    pub fn bounded(&self, fitted: f64, p: f64, max: f64) -> (f64, Bound) {
        if !max.is_finite() || max <= 0.0 {
            return (fitted, Bound::None);
        }
        if self.scores as f64 * p >= 1.0 {
            return match fitted > max {
                true => (max, Bound::AtLargest),
                false => (fitted, Bound::None),
            };
        }
        let span = (max / self.level.max(f64::MIN_POSITIVE)).max(1.0);
        let furthest = max * span;
        match fitted > furthest {
            true => (furthest, Bound::Span(span)),
            false => (fitted, Bound::None),
        }
    }
}

/// How many of `n` scores form the tail: the top 2%, but at least
/// `sqrt(n)` and at most a quarter, so a few hundred held-out records
/// still give a fit on a dozen or more points.
fn excess_count(n: usize) -> usize {
    let n_f = n as f64;
    let k = (0.02 * n_f).max(n_f.sqrt()).min(n_f / 4.0);
    k.round() as usize
}

/// Maximum-likelihood `(sigma, xi)` of positive excesses.
fn fit_gpd(y: &[f64]) -> Option<(f64, f64)> {
    let k = y.len() as f64;
    let mean = y.iter().sum::<f64>() / k;
    let max = y.iter().copied().fold(0.0, f64::max);
    if !(mean > 0.0 && max.is_finite()) {
        return None;
    }
    // Profile log-likelihood at theta (xi = mean ln(1 + theta y), sigma =
    // xi / theta); theta -> 0 is the exponential.
    let profile = |theta: f64| -> f64 {
        if theta.abs() < 1e-12 / mean {
            return -k * mean.ln() - k;
        }
        let mut s = 0.0;
        for v in y {
            let a = 1.0 + theta * v;
            if a <= 0.0 {
                return f64::NEG_INFINITY;
            }
            s += a.ln();
        }
        let xi = s / k;
        let sigma = xi / theta;
        if sigma.is_nan() || sigma <= 0.0 {
            return f64::NEG_INFINITY;
        }
        -k * sigma.ln() - (1.0 + 1.0 / xi) * s
    };
    // Grid: negative theta down to just above -1/max, positive theta on a
    // log scale up to 1000/mean.
    let mut grid: Vec<f64> = (1..100)
        .map(|i| -(1.0 - 1e-6) / max * f64::from(i) / 100.0)
        .collect();
    grid.push(0.0);
    grid.extend((0..=120).map(|i| 1e-4 / mean * 10f64.powf(f64::from(i) / 20.0)));
    grid.sort_by(f64::total_cmp);
    let values: Vec<f64> = grid.iter().map(|t| profile(*t)).collect();
    let best = (0..grid.len()).max_by(|a, b| values[*a].total_cmp(&values[*b]))?;
    let lo = grid[best.saturating_sub(1)];
    let hi = grid[(best + 1).min(grid.len() - 1)];
    let theta = golden_max(&profile, lo, hi, 60);
    let theta = if profile(theta) >= values[best] {
        theta
    } else {
        grid[best]
    };
    if theta.abs() < 1e-12 / mean {
        return Some((mean, 0.0));
    }
    let xi = y.iter().map(|v| (1.0 + theta * v).ln()).sum::<f64>() / k;
    let sigma = xi / theta;
    if !(sigma.is_finite() && sigma > 0.0 && xi.is_finite()) {
        return None;
    }
    if xi < 0.0 {
        // A bounded tail fitted on a few dozen points mostly says the
        // sample ended; the exponential tail (its maximum-likelihood scale
        // is the mean excess) errs on the side of fewer false positives.
        return Some((mean, 0.0));
    }
    if xi <= MAX_SHAPE {
        return Some((sigma, xi));
    }
    // The shape at its bound; the scale that fits best with it (the
    // log-likelihood is unimodal in ln sigma for a fixed shape).
    let xi = MAX_SHAPE;
    let loglik = |ln_sigma: f64| -> f64 {
        let sigma = ln_sigma.exp();
        -k * ln_sigma - (1.0 + 1.0 / xi) * y.iter().map(|v| (xi * v / sigma).ln_1p()).sum::<f64>()
    };
    let ln_sigma = golden_max(&loglik, (mean * 1e-4).ln(), (max * 10.0).ln(), 100);
    Some((ln_sigma.exp(), xi))
}

/// The maximum of a unimodal `f` on `[lo, hi]`.
fn golden_max(f: &dyn Fn(f64) -> f64, mut lo: f64, mut hi: f64, steps: usize) -> f64 {
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - g * (hi - lo);
    let mut b = lo + g * (hi - lo);
    let (mut fa, mut fb) = (f(a), f(b));
    for _ in 0..steps {
        if fa < fb {
            lo = a;
            a = b;
            fa = fb;
            b = lo + g * (hi - lo);
            fb = f(b);
        } else {
            hi = b;
            b = a;
            fb = fa;
            a = hi - g * (hi - lo);
            fa = f(a);
        }
    }
    (lo + hi) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic uniform numbers in (0, 1).
    fn uniforms(n: usize, mut state: u64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            })
            .collect()
    }

    fn sorted(mut v: Vec<f64>) -> Vec<f64> {
        v.sort_by(f64::total_cmp);
        v
    }

    /// Log-normal-like scores, `exp` of an exponential: the 0.999
    /// quantile is 1000; from 300 scores the empirical one is simply their
    /// maximum.
    #[test]
    fn extrapolates_the_tail_from_few_scores() {
        let mut errs = Vec::new();
        for seed in 1..=40 {
            let s = sorted(uniforms(300, seed).iter().map(|u| 1.0 / u).collect());
            let fit = TailFit::fit(&s).expect("fits");
            errs.push(fit.quantile(0.001) / 1000.0);
        }
        errs.sort_by(f64::total_cmp);
        let median = errs[errs.len() / 2];
        assert!((0.7..1.4).contains(&median), "median ratio {median}");
    }

    /// Scores whose logarithm is generalised Pareto with shape 0.3: the
    /// fitted shape comes out near it and the quantile near the true one.
    #[test]
    fn heavy_tails_get_a_positive_shape() {
        let gpd = |u: f64| ((u.powf(-0.3) - 1.0) / 0.3).exp();
        let s = sorted(uniforms(20_000, 7).into_iter().map(gpd).collect());
        let fit = TailFit::fit(&s).unwrap();
        assert!((fit.xi - 0.3).abs() < 0.15, "xi {}", fit.xi);
        let truth = gpd(0.001);
        let q = fit.quantile(0.001);
        assert!((q.ln() / truth.ln() - 1.0).abs() < 0.1, "{q} vs {truth}");
        let p = fit.exceedance(q);
        assert!(
            (p / 0.001 - 1.0).abs() < 1e-6,
            "exceedance inverts quantile: {p}"
        );
        assert!(fit.exceedance(s[s.len() / 2]) <= fit.excesses as f64 / fit.scores as f64);
    }

    /// A few outliers far above an otherwise tight tail: the shape stays
    /// bounded and the threshold stays near the data.
    #[test]
    fn outliers_do_not_make_the_threshold_explode() {
        let mut v: Vec<f64> = uniforms(870, 5).iter().map(|u| 0.03 * u).collect();
        v.extend([
            0.19, 0.195, 0.199, 0.0321, 0.0322, 0.0323, 0.0324, 0.0325, 0.0326, 0.0327,
        ]);
        let s = sorted(v);
        let fit = TailFit::fit(&s).unwrap();
        assert!(fit.xi <= MAX_SHAPE);
        let q = fit.quantile(0.001);
        assert!(q < 2.0 * 0.199, "{q}");
    }

    #[test]
    fn too_few_or_degenerate_scores_are_not_fitted() {
        assert!(
            TailFit::fit(&[1.0; 30]).is_none(),
            "no excesses over a flat tail"
        );
        assert!(TailFit::fit(&sorted(uniforms(20, 3))).is_none());
        assert!(TailFit::fit(&[]).is_none());
    }
}
