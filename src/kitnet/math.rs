//! The logistic function, about a third of the time of scoring a record
//! (a 34-feature model evaluates ~57 of them per record).
//!
//! It calls the platform's `exp` (glibc's is table-driven and short). An
//! inlined, branch-free `exp` (Cody-Waite reduction and a degree-13
//! polynomial, vectorisable) was tried and measured *slower* on the
//! development machine: 615-715 ns against 445 ns per `execute` on `small`,
//! ~960 ns against ~860 ns on `seed_defaults_scaled` (min of 300 x 500 runs),
//! because on baseline x86-64 (no FMA) its 13-step dependency chain costs
//! more than the call. What did pay off is keeping the logistic in its own
//! loop over a buffer instead of inside the dot-product loop.

/// `exp(-708)` is still a normal number and `exp(709)` is finite.
const EXP_MIN: f64 = -708.0;
const EXP_MAX: f64 = 709.0;

/// The reference's `1 / (1 + exp(-t))`, exactly. (Where `exp` overflows the
/// result is 0, as in NumPy; NaN stays NaN.)
#[inline(always)]
pub(crate) fn sigmoid_reference(t: f64) -> f64 {
    1.0 / (1.0 + (-t).exp())
}

/// The product-mode logistic: `exp`'s argument is kept in range, and NaN
/// maps to a finite value (`f64::max`/`min` return the non-NaN operand), so
/// no pre-activation can make a score NaN.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp() would keep NaN, which is the point here
pub(crate) fn sigmoid_product(t: f64) -> f64 {
    let m = (-t).max(EXP_MIN).min(EXP_MAX);
    1.0 / (1.0 + m.exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoids_are_finite_and_saturate() {
        assert_eq!(sigmoid_reference(0.0), 0.5);
        assert_eq!(sigmoid_reference(1e6), 1.0);
        assert_eq!(sigmoid_reference(-1e6), 0.0);
        assert!(sigmoid_reference(f64::NAN).is_nan());
        assert!(sigmoid_product(f64::NAN).is_finite());
        assert_eq!(sigmoid_product(f64::INFINITY), 1.0);
        assert!(sigmoid_product(f64::NEG_INFINITY) > 0.0);
        for i in -300..300 {
            let t = i as f64 * 0.1;
            assert_eq!(sigmoid_product(t), sigmoid_reference(t));
        }
    }
}
