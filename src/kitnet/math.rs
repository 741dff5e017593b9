//! The logistic function, about a third of the time of scoring a record
//! (a 34-feature model evaluates ~57 of them per record).
//!
//! Reference mode calls the platform's `exp` (glibc's), as NumPy does.
//! Product mode uses [`exp_product_array`], written here: branch-free, so
//! that a loop of them over the records of a block (`KitNet::execute_block`)
//! becomes SIMD, which a call into libm never can. Both the block pass and
//! the one-record pass (and training) use it, so their scores stay the same
//! bits. It works on an array step by step: one number at a time its
//! 13-step dependency chain is slower than glibc's call (615-715 ns against
//! 445 ns per `execute` on `small` on baseline x86-64, no FMA), and even
//! eight at a time (two AVX2 registers) the chain's latency, not the
//! arithmetic, set the pace; sixteen at a time the chains overlap
//! (`autoencoder::sigmoid_all`).

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
pub(crate) fn sigmoid_product(t: f64) -> f64 {
    let mut v = [t];
    sigmoid_product_array(&mut v);
    v[0]
}

/// [`sigmoid_product`] of `N` numbers at once: each goes through the same
/// operations as it would alone, so the results have the same bits.
#[inline(always)]
#[allow(clippy::manual_clamp)] // clamp() would keep NaN, which is the point here
pub(crate) fn sigmoid_product_array<const N: usize>(v: &mut [f64; N]) {
    for t in v.iter_mut() {
        *t = (-*t).max(EXP_MIN).min(EXP_MAX);
    }
    exp_product_array(v);
    for t in v.iter_mut() {
        *t = 1.0 / (1.0 + *t);
    }
}

/// `1.5 * 2^52`: adding it rounds a number below 2^51 to an integer, which
/// then sits in the low bits of the sum.
const ROUND: f64 = 6_755_399_441_055_744.0;
/// `ln 2` split (fdlibm's constants, given by their bits) so that
/// `k * LN2_HI` is exact for `|k| < 2^20`.
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);

/// `1/n!` for `n` in `0..=13`: `e^r`'s Taylor coefficients.
const EXP_TAYLOR: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// `e^x` in place for every `x` in `[EXP_MIN, EXP_MAX]` (the caller
/// clamps), within about one unit in the last place: `x = k ln 2 + r` with
/// `|r| <= ln 2 / 2`, `e^r` by its Taylor polynomial of degree 13 (the
/// first term left out is below 2^-57 of the result), times `2^k` built in
/// the exponent bits. No branch, no table, no call: each step is one loop
/// across the array, which vectorises, and the array's `N` Horner chains
/// are independent, so they overlap.
#[inline(always)]
#[allow(clippy::needless_range_loop)] // the same index into three arrays
pub(crate) fn exp_product_array<const N: usize>(x: &mut [f64; N]) {
    let mut shifted = [0.0f64; N];
    let mut r = [0.0f64; N];
    for i in 0..N {
        shifted[i] = x[i] * std::f64::consts::LOG2_E + ROUND;
        let k = shifted[i] - ROUND;
        r[i] = (x[i] - k * LN2_HI) - k * LN2_LO;
    }
    // Horner, from 1/13! down to 1.
    let mut p = [EXP_TAYLOR[13]; N];
    for &c in EXP_TAYLOR[..13].iter().rev() {
        for i in 0..N {
            p[i] = p[i] * r[i] + c;
        }
    }
    // k is in [-1022, 1023] for x in [-708, 709], so 2^k is a normal
    // number: its biased exponent k + 1023 in bits 52..63.
    for i in 0..N {
        let k_int = shifted[i].to_bits().wrapping_sub(ROUND.to_bits());
        x[i] = p[i] * f64::from_bits(k_int.wrapping_add(1023) << 52);
    }
}

/// [`exp_product_array`] of one number.
#[cfg(test)]
fn exp_product(x: f64) -> f64 {
    let mut v = [x];
    exp_product_array(&mut v);
    v[0]
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
            let (p, r) = (sigmoid_product(t), sigmoid_reference(t));
            assert!((p - r).abs() <= 2.0 * f64::EPSILON * r, "{t}: {p} vs {r}");
        }
    }

    /// The array form gives every element the bits of the one-at-a-time
    /// form, also at NaN, the infinities, the clamps and signed zeros.
    #[test]
    fn the_array_logistic_is_the_scalar_one_bit_for_bit() {
        let mut special = vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            EXP_MIN,
            EXP_MAX,
            -EXP_MIN,
            -EXP_MAX,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e-300,
        ];
        special.extend((-4000..4000).map(|i| i as f64 * 0.1371));
        for chunk in special.chunks(16) {
            let mut a = [0.5f64; 16];
            a[..chunk.len()].copy_from_slice(chunk);
            let want: Vec<u64> = a.iter().map(|&t| sigmoid_product(t).to_bits()).collect();
            sigmoid_product_array(&mut a);
            let got: Vec<u64> = a.iter().map(|t| t.to_bits()).collect();
            assert_eq!(got, want, "{chunk:?}");
        }
    }

    /// The logistic's bits, pinned: computed by ab89685's one-at-a-time
    /// `sigmoid_product` (before the array form) and checked equal, so a
    /// change of its operations shows here, not only in scores.
    #[test]
    fn the_logistic_keeps_its_bits() {
        let pinned: [(f64, u64); 18] = [
            (-745.5, 0x0008bfe55de02338),
            (-708.0, 0x0017c8ab2288c9ac),
            (-50.25, 0x3b66b30390494d8e),
            (-3.0, 0x3fa848343c905445),
            (-1.0, 0x3fd136561454ba86),
            (-0.5, 0x3fd829a0565978de),
            (-1e-9, 0x3fdfffffffbb47d0),
            (0.0, 0x3fe0000000000000),
            (1e-9, 0x3fe0000000225c18),
            (0.3, 0x3fe261d545e46a8b),
            (1.0, 0x3fe764d4f5d5a2bd),
            (2.5, 0x3fed9291ddb596f8),
            (7.75, 0x3feffc790e6d5532),
            (36.0, 0x3feffffffffffffe),
            (300.0, 0x3ff0000000000000),
            (709.0, 0x3ff0000000000000),
            (800.0, 0x3ff0000000000000),
            (f64::NAN, 0x3ff0000000000000),
        ];
        for (x, bits) in pinned {
            let got = sigmoid_product(x).to_bits();
            assert_eq!(got, bits, "sigmoid_product({x:?}): {got:#018x}");
        }
    }

    /// Within two units in the last place of libm's `exp` over the whole
    /// clamped range, exact at 0, and finite and positive at both ends.
    #[test]
    fn exp_product_is_close_to_libm() {
        assert_eq!(exp_product(0.0), 1.0);
        assert!(exp_product(EXP_MAX).is_finite());
        assert!(exp_product(EXP_MIN) > 0.0);
        let mut worst = 0.0f64;
        let n = 200_000;
        for i in 0..=n {
            let x = EXP_MIN + (EXP_MAX - EXP_MIN) * (i as f64 / n as f64);
            let (a, b) = (exp_product(x), x.exp());
            assert!(a.is_finite() && a > 0.0, "{x}");
            worst = worst.max((a - b).abs() / b);
        }
        for i in -1000..=1000 {
            let x = i as f64 * 1e-3;
            let (a, b) = (exp_product(x), x.exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst <= 2.0 * f64::EPSILON, "relative error {worst:e}");
    }
}
