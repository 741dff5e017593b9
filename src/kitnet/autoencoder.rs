//! One KitNET autoencoder (the reference's `dA`): a single hidden layer with
//! tied weights, trained by one SGD step per record, scoring a record by the
//! RMSE of its reconstruction.
//!
//! The hot path is written for tiny dense vectors (typically 1 to 30 inputs):
//! `W` is one contiguous row-major `n_visible x n_hidden` slice, so encoding is
//! a sequence of row AXPYs and decoding a sequence of row dot products, and
//! training fuses decoding, the output error and the back-propagated hidden
//! error into one pass over `W` plus one update pass. Training buffers live
//! inside the autoencoder (`&mut self` anyway); execution uses slices the
//! caller owns, so a shared model can be executed from many threads without
//! allocating.

use serde::{Deserialize, Serialize};

use super::math;
use super::rng::Mt19937;
use super::Mode;

/// The reference's `1e-16` in the normalisation denominator.
const REFERENCE_EPS: f64 = 1e-16;

#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(try_from = "AutoencoderState")]
pub(crate) struct Autoencoder {
    n_visible: usize,
    n_hidden: usize,
    /// `n_visible x n_hidden`, row-major; the decoder uses its transpose.
    w: Vec<f64>,
    hbias: Vec<f64>,
    vbias: Vec<f64>,
    /// Training minimum and maximum of each input. They are only meaningful
    /// once `n_trained > 0`; keeping them finite (instead of the reference's
    /// initial +-inf) lets JSON model files hold them.
    min: Vec<f64>,
    max: Vec<f64>,
    n_trained: u64,
    /// `1 / (max - min)`, or 0 for a zero (or unusable) range: derived from
    /// `min`/`max`, recomputed on load, used by product mode.
    #[serde(skip)]
    inv_range: Vec<f64>,
    #[serde(skip)]
    buf: TrainBuffers,
}

/// Caller-owned buffers for [`Autoencoder::forward`].
pub(crate) struct Buffers<'a> {
    pub(crate) xn: &'a mut [f64],
    pub(crate) y: &'a mut [f64],
    pub(crate) z: &'a mut [f64],
}

impl Buffers<'_> {
    pub(crate) fn reborrow(&mut self) -> Buffers<'_> {
        Buffers {
            xn: self.xn,
            y: self.y,
            z: self.z,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct TrainBuffers {
    xn: Vec<f64>,
    y: Vec<f64>,
    e: Vec<f64>,
    d: Vec<f64>,
}

/// What a model file holds for one autoencoder; checked before use so that a
/// corrupt file gives an error instead of an out-of-bounds panic.
#[derive(Deserialize)]
struct AutoencoderState {
    n_visible: usize,
    n_hidden: usize,
    w: Vec<f64>,
    hbias: Vec<f64>,
    vbias: Vec<f64>,
    min: Vec<f64>,
    max: Vec<f64>,
    n_trained: u64,
}

impl TryFrom<AutoencoderState> for Autoencoder {
    type Error = String;

    fn try_from(s: AutoencoderState) -> Result<Self, String> {
        let (nv, nh) = (s.n_visible, s.n_hidden);
        if nv == 0 || nh == 0 {
            return Err("an autoencoder has no visible or no hidden units".into());
        }
        if s.w.len() != nv.saturating_mul(nh)
            || s.hbias.len() != nh
            || s.vbias.len() != nv
            || s.min.len() != nv
            || s.max.len() != nv
        {
            return Err(format!(
                "autoencoder arrays do not match its {nv} x {nh} shape"
            ));
        }
        let arrays = [
            ("w", &s.w),
            ("hbias", &s.hbias),
            ("vbias", &s.vbias),
            ("min", &s.min),
            ("max", &s.max),
        ];
        for (name, values) in arrays {
            if let Some(i) = values.iter().position(|x| !x.is_finite()) {
                return Err(format!(
                    "autoencoder field `{name}` holds a non-finite number at index {i}"
                ));
            }
        }
        // Training only ever widens [min, max]: an inverted range is damage.
        if let Some(i) = s.min.iter().zip(&s.max).position(|(lo, hi)| lo > hi) {
            return Err(format!(
                "autoencoder field `min` exceeds `max` at index {i}"
            ));
        }
        let inv_range = s
            .min
            .iter()
            .zip(&s.max)
            .map(|(&lo, &hi)| inverse_range(lo, hi))
            .collect();
        Ok(Self {
            n_visible: nv,
            n_hidden: nh,
            w: s.w,
            hbias: s.hbias,
            vbias: s.vbias,
            min: s.min,
            max: s.max,
            n_trained: s.n_trained,
            inv_range,
            buf: TrainBuffers::default(),
        })
    }
}

/// `ceil(n_visible * hidden_ratio)`, computed in f64 as NumPy does.
pub(crate) fn hidden_size(n_visible: usize, hidden_ratio: f64) -> usize {
    ((n_visible as f64 * hidden_ratio).ceil() as usize).max(1)
}

/// The reference's initial `W`: row-major draws of
/// `RandomState(seed).uniform(-1/n_visible, 1/n_visible)`.
pub(crate) fn initial_weights(n_visible: usize, n_hidden: usize, seed: u32) -> Vec<f64> {
    let mut rng = Mt19937::new(seed);
    let a = 1.0 / n_visible as f64;
    (0..n_visible * n_hidden)
        .map(|_| rng.uniform(-a, a))
        .collect()
}

/// `1 / (max - min)`, or 0 when the range is zero or too small to invert.
/// A range that overflows is inverted from the halves, which cannot.
pub(crate) fn inverse_range(min: f64, max: f64) -> f64 {
    let r = max - min;
    if r.is_nan() || r <= 0.0 {
        return 0.0;
    }
    let inv = if r.is_finite() {
        1.0 / r
    } else {
        0.5 / (0.5 * max - 0.5 * min)
    };
    if inv.is_finite() {
        inv
    } else {
        0.0
    }
}

/// How far beyond its training range (in ranges) a product-mode input can
/// reach: normalised values lie in `(-EXCURSION, 1 + EXCURSION)`.
///
/// Chosen on the fixtures (`process`-trained ROC-AUC of `seed_defaults_scaled`:
/// 0.948 with 1, 0.969 with 3, 0.976 with 10; 1.0 with all three when trained
/// by `fit`): 1 compresses moderate anomalies too much, while a large bound
/// lets one wild value dominate again.
pub(crate) const EXCURSION: f64 = 3.0;

/// Product-mode bound on a min/max-normalised value: the identity on
/// [0, 1]; beyond it, an excess `u` becomes `u / (1 + u / E)` with
/// `E = EXCURSION`, which has slope 1 at the edge (C1), is increasing (a
/// bigger excursion still scores higher) and tends to `E`. It is computed as
/// `E - E / (1 + u / E)`, which is exactly `E` (not NaN) for an infinite
/// excess, so the result always lies in `[-E, 1 + E]`.
#[inline(always)]
pub(crate) fn squash(t: f64) -> f64 {
    if t > 1.0 {
        1.0 + (EXCURSION - EXCURSION / (1.0 + (t - 1.0) / EXCURSION))
    } else if t < 0.0 {
        -(EXCURSION - EXCURSION / (1.0 - t / EXCURSION))
    } else {
        t
    }
}

/// Product-mode normalisation of one input.
#[inline(always)]
fn product_normalise(x: f64, min: f64, inv: f64) -> f64 {
    if inv > 0.0 {
        squash((x - min) * inv)
    } else if x > min {
        1.0
    } else if x < min {
        -1.0
    } else {
        0.0
    }
}

#[inline(always)]
fn reference_normalise(x: f64, min: f64, max: f64) -> f64 {
    (x - min) / (max - min + REFERENCE_EPS)
}

/// Dot product with four independent accumulators: the chain of dependent
/// additions, not the multiplications, bounds a short dot product.
#[inline(always)]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f64; 4];
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `out[j] += sum_i c[i] * W[i][j]` (a vector times `W`), four rows at a
/// time so that `out` is loaded and stored once per four rows: with rows of
/// a dozen elements the loads, stores and loop set-up, not the arithmetic,
/// are the cost.
#[inline(always)]
fn accumulate_rows(w: &[f64], c: &[f64], out: &mut [f64]) {
    let nh = out.len();
    let mut blocks = w.chunks_exact(4 * nh);
    let mut cs = c.chunks_exact(4);
    for (block, c4) in (&mut blocks).zip(&mut cs) {
        let (r0, rest) = block.split_at(nh);
        let (r1, rest) = rest.split_at(nh);
        let (r2, r3) = rest.split_at(nh);
        let (c0, c1, c2, c3) = (c4[0], c4[1], c4[2], c4[3]);
        for ((((o, &a), &b), &cc), &d) in out.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
            *o += ((c0 * a + c1 * b) + c2 * cc) + c3 * d;
        }
    }
    for (&ci, row) in cs
        .remainder()
        .iter()
        .zip(blocks.remainder().chunks_exact(nh))
    {
        for (o, &wij) in out.iter_mut().zip(row) {
            *o += ci * wij;
        }
    }
}

/// `y = sigmoid(xn . W + hbias)`.
#[inline(always)]
fn encode<const PRODUCT: bool>(w: &[f64], hbias: &[f64], xn: &[f64], y: &mut [f64]) {
    y.fill(0.0);
    accumulate_rows(w, xn, y);
    for (yj, &b) in y.iter_mut().zip(hbias) {
        *yj += b;
    }
    sigmoid_all::<PRODUCT>(y);
}

/// `z = sigmoid(y . W^T + vbias)`: one short dot product per row of `W`.
#[inline(always)]
fn decode<const PRODUCT: bool>(w: &[f64], vbias: &[f64], y: &[f64], z: &mut [f64]) {
    let nh = y.len();
    for ((zi, row), &b) in z.iter_mut().zip(w.chunks_exact(nh)).zip(vbias) {
        *zi = dot(row, y) + b;
    }
    sigmoid_all::<PRODUCT>(z);
}

/// Records scored side by side by [`Autoencoder::forward_lanes`]: eight
/// f64 fill one AVX-512 register, two AVX2 ones or four SSE2 ones.
pub(crate) const LANES: usize = 8;

/// One number per record of a block.
pub(crate) type Lanes = [f64; LANES];

/// The logistic of every lane of every unit, in place.
#[inline(always)]
fn sigmoid_units<const PRODUCT: bool>(units: &mut [Lanes]) {
    sigmoid_all::<PRODUCT>(units.as_flattened_mut());
}

/// Numbers per [`math::sigmoid_product_array`] call: four AVX2 registers,
/// two AVX-512 ones. (32 was slower on models of small autoencoders, and
/// 16 lanes per block instead of 8 slower still: the products spill.)
const SIGMOID_GROUP: usize = 16;

/// The logistic of every element, in place. Product mode takes
/// [`SIGMOID_GROUP`] numbers at a time through
/// [`math::sigmoid_product_array`] (the same bits as one at a time, see
/// there), which cut the block pass by 13-22% on the kitnet bench;
/// reference mode calls libm's `exp` for each, in a loop of its own so
/// that the calls are independent and overlap.
#[inline(always)]
pub(crate) fn sigmoid_all<const PRODUCT: bool>(v: &mut [f64]) {
    if PRODUCT {
        let mut groups = v.chunks_exact_mut(SIGMOID_GROUP);
        for g in &mut groups {
            let g: &mut [f64; SIGMOID_GROUP] = g.try_into().expect("chunks_exact");
            math::sigmoid_product_array(g);
        }
        for t in groups.into_remainder() {
            *t = math::sigmoid_product(*t);
        }
    } else {
        for t in v.iter_mut() {
            *t = math::sigmoid_reference(*t);
        }
    }
}

/// The RMSE between the normalised inputs and their reconstruction;
/// `sink(i, e_i^2)` sees each squared error.
#[inline(always)]
pub(crate) fn rmse(xn: &[f64], z: &[f64], mut sink: impl FnMut(usize, f64)) -> f64 {
    let mut sse = 0.0;
    for (i, (&xi, &zi)) in xn.iter().zip(z).enumerate() {
        let e2 = (xi - zi) * (xi - zi);
        sse += e2;
        sink(i, e2);
    }
    (sse / xn.len() as f64).sqrt()
}

impl Autoencoder {
    pub(crate) fn new(n_visible: usize, hidden_ratio: f64, seed: u32) -> Self {
        let n_hidden = hidden_size(n_visible, hidden_ratio);
        Self {
            n_visible,
            n_hidden,
            w: initial_weights(n_visible, n_hidden, seed),
            hbias: vec![0.0; n_hidden],
            vbias: vec![0.0; n_visible],
            min: vec![0.0; n_visible],
            max: vec![0.0; n_visible],
            n_trained: 0,
            inv_range: vec![0.0; n_visible],
            buf: TrainBuffers::default(),
        }
    }

    pub(crate) fn n_visible(&self) -> usize {
        self.n_visible
    }

    /// The training minimum and maximum of input `i`, once trained.
    pub(crate) fn input_range(&self, i: usize) -> Option<(f64, f64)> {
        if self.n_trained == 0 {
            return None;
        }
        Some((*self.min.get(i)?, *self.max.get(i)?))
    }

    pub(crate) fn n_hidden(&self) -> usize {
        self.n_hidden
    }

    /// Forget the training range (product mode re-learns the output layer's
    /// input range at the start of each epoch; see `KitNet::fit`).
    pub(crate) fn reset_range(&mut self) {
        self.n_trained = 0;
    }

    /// One SGD step on the record whose `i`-th input is `get(i)`; returns the
    /// training RMSE (computed before the update, as the reference does).
    pub(crate) fn train(&mut self, get: impl Fn(usize) -> f64, mode: Mode, lr: f64) -> f64 {
        match mode {
            Mode::Reference => self.train_impl::<false>(get, lr),
            Mode::Product => self.train_impl::<true>(get, lr),
        }
    }

    fn train_impl<const PRODUCT: bool>(&mut self, get: impl Fn(usize) -> f64, lr: f64) -> f64 {
        let (nv, nh) = (self.n_visible, self.n_hidden);
        if self.buf.xn.len() != nv || self.buf.y.len() != nh {
            self.buf = TrainBuffers {
                xn: vec![0.0; nv],
                y: vec![0.0; nh],
                e: vec![0.0; nv],
                d: vec![0.0; nh],
            };
        }
        if self.inv_range.len() != nv {
            self.inv_range = vec![0.0; nv];
        }
        let Self {
            w,
            hbias,
            vbias,
            min,
            max,
            inv_range,
            buf,
            n_trained,
            ..
        } = self;
        let TrainBuffers { xn, y, e, d } = buf;

        // Range update first, then normalise the same record with it.
        let first = *n_trained == 0;
        for i in 0..nv {
            let x = get(i);
            if first {
                min[i] = x;
                max[i] = x;
                inv_range[i] = 0.0;
            } else if x > max[i] || x < min[i] {
                if x > max[i] {
                    max[i] = x;
                }
                if x < min[i] {
                    min[i] = x;
                }
                inv_range[i] = inverse_range(min[i], max[i]);
            }
            xn[i] = if PRODUCT {
                product_normalise(x, min[i], inv_range[i])
            } else {
                reference_normalise(x, min[i], max[i])
            };
        }

        encode::<PRODUCT>(w, hbias, xn, y);

        // Decode into `e` (pre-activations, then the logistic in its own
        // loop so it vectorises), then the output error.
        decode::<PRODUCT>(w, vbias, y, e);
        let mut sse = 0.0;
        for (ei, &xi) in e.iter_mut().zip(xn.iter()) {
            let err = xi - *ei;
            *ei = err;
            sse += err * err;
        }
        // Back-propagated hidden error, with the weights before the update.
        d.fill(0.0);
        accumulate_rows(w, e, d);
        for (dj, &yj) in d.iter_mut().zip(y.iter()) {
            *dj = *dj * yj * (1.0 - yj);
        }

        for ((row, &xi), &ei) in w.chunks_exact_mut(nh).zip(xn.iter()).zip(e.iter()) {
            for ((wij, &dj), &yj) in row.iter_mut().zip(d.iter()).zip(y.iter()) {
                *wij += lr * (xi * dj + ei * yj);
            }
        }

        if PRODUCT {
            for (b, &dj) in hbias.iter_mut().zip(d.iter()) {
                *b += lr * dj;
            }
            for (b, &ei) in vbias.iter_mut().zip(e.iter()) {
                *b += lr * ei;
            }
        } else {
            // The reference adds the *mean* gradient, one scalar, to every
            // bias (`numpy.mean` of a 1-D vector).
            let dh = lr * (d.iter().sum::<f64>() / nh as f64);
            for b in hbias.iter_mut() {
                *b += dh;
            }
            let dv = lr * (e.iter().sum::<f64>() / nv as f64);
            for b in vbias.iter_mut() {
                *b += dv;
            }
        }

        *n_trained += 1;
        (sse / nv as f64).sqrt()
    }

    /// Reconstruction RMSE of a record, with caller-owned buffers of at least
    /// `n_visible` (`xn`, `z`) and `n_hidden` (`y`) elements. `sink(i, e_i^2)`
    /// sees each input's squared error (a no-op closure costs nothing).
    #[inline]
    pub(crate) fn forward(
        &self,
        get: impl Fn(usize) -> f64,
        mode: Mode,
        buf: Buffers<'_>,
        sink: impl FnMut(usize, f64),
    ) -> f64 {
        match mode {
            Mode::Reference => self.forward_impl::<false>(get, buf, sink),
            Mode::Product => self.forward_impl::<true>(get, buf, sink),
        }
    }

    #[inline(always)]
    fn forward_impl<const PRODUCT: bool>(
        &self,
        get: impl Fn(usize) -> f64,
        buf: Buffers<'_>,
        sink: impl FnMut(usize, f64),
    ) -> f64 {
        let (nv, nh) = (self.n_visible, self.n_hidden);
        let xn = &mut buf.xn[..nv];
        let y = &mut buf.y[..nh];
        let z = &mut buf.z[..nv];
        self.hidden_pre::<PRODUCT>(get, xn, y);
        sigmoid_all::<PRODUCT>(y);
        self.visible_pre(y, z);
        sigmoid_all::<PRODUCT>(z);
        rmse(xn, z, sink)
    }

    /// The first stage of [`Autoencoder::forward`]: normalises the inputs
    /// into `xn` (`n_visible` long) and writes the hidden pre-activations
    /// `xn . W + hbias` into `y` (`n_hidden` long), without the logistic.
    ///
    /// The stages are separate so that `KitNet::execute_with` can run each
    /// one over the whole ensemble and then the logistic over all its units
    /// in one loop: the `exp` calls are then independent of each other and
    /// overlap, where one autoencoder at a time makes a chain of dependent
    /// calls. Every number is computed exactly as in a one-by-one pass.
    #[inline(always)]
    pub(crate) fn hidden_pre<const PRODUCT: bool>(
        &self,
        get: impl Fn(usize) -> f64,
        xn: &mut [f64],
        y: &mut [f64],
    ) {
        for (i, ((v, &lo), (&hi, &inv))) in xn
            .iter_mut()
            .zip(&self.min)
            .zip(self.max.iter().zip(&self.inv_range))
            .enumerate()
        {
            let x = get(i);
            *v = if PRODUCT {
                product_normalise(x, lo, inv)
            } else {
                reference_normalise(x, lo, hi)
            };
        }
        y.fill(0.0);
        accumulate_rows(&self.w, xn, y);
        for (yj, &b) in y.iter_mut().zip(&self.hbias) {
            *yj += b;
        }
    }

    /// True for an autoencoder of one input and one hidden unit: the
    /// correlation clustering gives every feature that moves with no other
    /// a cluster of its own, so these are most of a typical ensemble (24 of
    /// the 29 of the example conn model).
    #[inline(always)]
    pub(crate) fn is_single(&self) -> bool {
        self.n_visible == 1 && self.n_hidden == 1
    }

    /// [`Autoencoder::hidden_pre`] of a single-unit autoencoder
    /// ([`Autoencoder::is_single`]) for input `x`: its normalised input and
    /// hidden pre-activation. The same operations in the same order as the
    /// general loops (which start from a zero sum), so the same bits, without
    /// the loops' set-up, which costs more than the arithmetic at this size.
    #[inline(always)]
    pub(crate) fn hidden_pre_single<const PRODUCT: bool>(&self, x: f64) -> (f64, f64) {
        let xn = if PRODUCT {
            product_normalise(x, self.min[0], self.inv_range[0])
        } else {
            reference_normalise(x, self.min[0], self.max[0])
        };
        let mut y = 0.0;
        y += xn * self.w[0];
        (xn, y + self.hbias[0])
    }

    /// [`Autoencoder::visible_pre`] of a single-unit autoencoder, from its
    /// hidden activation (`dot` also starts from a zero sum).
    #[inline(always)]
    pub(crate) fn visible_pre_single(&self, y: f64) -> f64 {
        let mut z = 0.0;
        z += self.w[0] * y;
        z + self.vbias[0]
    }

    /// The second stage: the reconstruction's pre-activations
    /// `y . W^T + vbias` into `z`, from the hidden activations `y`.
    #[inline(always)]
    pub(crate) fn visible_pre(&self, y: &[f64], z: &mut [f64]) {
        let nh = y.len();
        for ((zi, row), &b) in z.iter_mut().zip(self.w.chunks_exact(nh)).zip(&self.vbias) {
            *zi = dot(row, y) + b;
        }
    }

    /// [`Autoencoder::forward`] of [`LANES`] records at once, each lane of
    /// a `[f64; LANES]` one record: `get(i)` gives input `i` of every lane,
    /// and the result is every lane's RMSE. The buffers hold at least
    /// `n_visible` (`xn`, `z`) and `n_hidden` (`y`) lane arrays.
    ///
    /// Why lanes: one record's autoencoder is a handful of numbers, too few
    /// for SIMD (and most of an ensemble is one-input autoencoders), while
    /// the same operation on eight records side by side is a loop the
    /// compiler vectorises. Each lane performs exactly the operations of
    /// [`Autoencoder::forward`] on its record, in the same order (the same
    /// four-row blocks of `accumulate_rows`, the same four accumulators of
    /// `dot`, each sum started from zero), so every lane's result has the
    /// same bits as the one-record pass; `block_matches_per_record` in
    /// `kitnet/tests.rs` checks it.
    #[inline(always)]
    pub(crate) fn forward_lanes<const PRODUCT: bool>(
        &self,
        get: impl Fn(usize) -> Lanes,
        xn: &mut [Lanes],
        y: &mut [Lanes],
        z: &mut [Lanes],
        mut sink: impl FnMut(usize, &Lanes),
    ) -> Lanes {
        let (nv, nh) = (self.n_visible, self.n_hidden);
        let (xn, y, z) = (&mut xn[..nv], &mut y[..nh], &mut z[..nv]);
        for (i, (v, ((&lo, &hi), &inv))) in xn
            .iter_mut()
            .zip(self.min.iter().zip(&self.max).zip(&self.inv_range))
            .enumerate()
        {
            let x = get(i);
            for (vr, &xr) in v.iter_mut().zip(&x) {
                *vr = if PRODUCT {
                    product_normalise(xr, lo, inv)
                } else {
                    reference_normalise(xr, lo, hi)
                };
            }
        }

        // Encoding: `accumulate_rows`, lane by lane.
        y.fill([0.0; LANES]);
        let mut blocks = self.w.chunks_exact(4 * nh);
        let mut rows = xn.chunks_exact(4);
        for (block, c) in (&mut blocks).zip(&mut rows) {
            let (r0, rest) = block.split_at(nh);
            let (r1, rest) = rest.split_at(nh);
            let (r2, r3) = rest.split_at(nh);
            for ((((o, &a), &b), &cc), &d) in y.iter_mut().zip(r0).zip(r1).zip(r2).zip(r3) {
                for r in 0..LANES {
                    o[r] += ((c[0][r] * a + c[1][r] * b) + c[2][r] * cc) + c[3][r] * d;
                }
            }
        }
        for (ci, row) in rows
            .remainder()
            .iter()
            .zip(blocks.remainder().chunks_exact(nh))
        {
            for (o, &wij) in y.iter_mut().zip(row) {
                for r in 0..LANES {
                    o[r] += ci[r] * wij;
                }
            }
        }
        for (yj, &b) in y.iter_mut().zip(&self.hbias) {
            for v in yj.iter_mut() {
                *v += b;
            }
        }
        sigmoid_units::<PRODUCT>(y);

        // Decoding: `dot` with its four accumulators, lane by lane.
        for ((zi, row), &b) in z.iter_mut().zip(self.w.chunks_exact(nh)).zip(&self.vbias) {
            let mut acc = [[0.0f64; LANES]; 4];
            let (wc, yc) = (row.chunks_exact(4), y.chunks_exact(4));
            let (wr, yr) = (wc.remainder(), yc.remainder());
            for (w4, y4) in wc.zip(yc) {
                for k in 0..4 {
                    for r in 0..LANES {
                        acc[k][r] += w4[k] * y4[k][r];
                    }
                }
            }
            for r in 0..LANES {
                zi[r] = (acc[0][r] + acc[1][r]) + (acc[2][r] + acc[3][r]);
            }
            for (&wk, yk) in wr.iter().zip(yr) {
                for r in 0..LANES {
                    zi[r] += wk * yk[r];
                }
            }
            for v in zi.iter_mut() {
                *v += b;
            }
        }
        sigmoid_units::<PRODUCT>(z);

        // `rmse`, lane by lane.
        // `sink(i, e_i^2)` sees each input's squared errors, as `rmse`'s.
        let mut sse = [0.0f64; LANES];
        for (i, (xi, zi)) in xn.iter().zip(z.iter()).enumerate() {
            let mut e2 = [0.0f64; LANES];
            for r in 0..LANES {
                e2[r] = (xi[r] - zi[r]) * (xi[r] - zi[r]);
                sse[r] += e2[r];
            }
            sink(i, &e2);
        }
        let n = nv as f64;
        for v in sse.iter_mut() {
            *v = (*v / n).sqrt();
        }
        sse
    }

    #[cfg(test)]
    pub(crate) fn weights(&self) -> &[f64] {
        &self.w
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squash_is_continuous_monotone_and_bounded() {
        assert_eq!(squash(0.0), 0.0);
        assert_eq!(squash(1.0), 1.0);
        assert_eq!(squash(0.5), 0.5);
        assert!((squash(1.0 + 1e-9) - (1.0 + 1e-9)).abs() < 1e-15);
        assert!((squash(-1e-9) + 1e-9).abs() < 1e-15);
        assert_eq!(squash(f64::INFINITY), 1.0 + EXCURSION);
        assert_eq!(squash(f64::NEG_INFINITY), -EXCURSION);
        assert!(squash(1e300) <= 1.0 + EXCURSION && squash(1e300) > 3.9);
        assert!(squash(-1e300) >= -EXCURSION && squash(-1e300) < -2.9);
        let mut prev = squash(-1e300);
        for k in -300..300 {
            let t = k as f64 * 0.37;
            let s = squash(t);
            assert!(
                s > prev && s > -EXCURSION && s < 1.0 + EXCURSION,
                "{t}: {s}"
            );
            prev = s;
        }
        // Equal to u / (1 + u / E) where that form is finite.
        for &t in &[1.5, 2.0, 11.0, 1e6, -0.5, -7.0] {
            let u: f64 = if t > 1.0 { t - 1.0 } else { -t };
            let v = u / (1.0 + u / EXCURSION);
            let want = if t > 1.0 { 1.0 + v } else { -v };
            assert!((squash(t) - want).abs() < 1e-14);
        }
    }

    #[test]
    fn inverse_range_handles_zero_tiny_and_overflowing_ranges() {
        assert_eq!(inverse_range(3.0, 3.0), 0.0);
        assert_eq!(inverse_range(0.0, 2.0), 0.5);
        assert_eq!(inverse_range(0.0, 5e-324), 0.0);
        let inv = inverse_range(-1e308, 1e308);
        assert!(inv > 0.0 && inv.is_finite());
    }

    /// The reference `dA.train`, written naively (NumPy shapes, no fusion).
    struct Naive {
        w: Vec<Vec<f64>>,
        hb: Vec<f64>,
        vb: Vec<f64>,
        min: Vec<f64>,
        max: Vec<f64>,
    }

    impl Naive {
        #[allow(clippy::needless_range_loop)] // index form mirrors the NumPy code
        fn train(&mut self, x: &[f64], lr: f64) -> f64 {
            let (nv, nh) = (self.w.len(), self.hb.len());
            let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
            for i in 0..nv {
                self.max[i] = self.max[i].max(x[i]);
                self.min[i] = self.min[i].min(x[i]);
            }
            let xn: Vec<f64> = (0..nv)
                .map(|i| (x[i] - self.min[i]) / (self.max[i] - self.min[i] + 1e-16))
                .collect();
            let y: Vec<f64> = (0..nh)
                .map(|j| sig((0..nv).map(|i| xn[i] * self.w[i][j]).sum::<f64>() + self.hb[j]))
                .collect();
            let z: Vec<f64> = (0..nv)
                .map(|i| sig((0..nh).map(|j| y[j] * self.w[i][j]).sum::<f64>() + self.vb[i]))
                .collect();
            let e: Vec<f64> = (0..nv).map(|i| xn[i] - z[i]).collect();
            let d: Vec<f64> = (0..nh)
                .map(|j| (0..nv).map(|i| e[i] * self.w[i][j]).sum::<f64>() * y[j] * (1.0 - y[j]))
                .collect();
            for i in 0..nv {
                for j in 0..nh {
                    self.w[i][j] += lr * (xn[i] * d[j] + e[i] * y[j]);
                }
            }
            let md = lr * (d.iter().sum::<f64>() / nh as f64);
            self.hb.iter_mut().for_each(|b| *b += md);
            let me = lr * (e.iter().sum::<f64>() / nv as f64);
            self.vb.iter_mut().for_each(|b| *b += me);
            (e.iter().map(|v| v * v).sum::<f64>() / nv as f64).sqrt()
        }
    }

    #[test]
    fn reference_training_matches_a_naive_transcription() {
        let (nv, lr) = (7, 0.1);
        let mut ae = Autoencoder::new(nv, 0.75, 1234);
        let nh = ae.n_hidden();
        let mut naive = Naive {
            w: ae.weights().chunks(nh).map(|r| r.to_vec()).collect(),
            hb: vec![0.0; nh],
            vb: vec![0.0; nv],
            min: vec![f64::INFINITY; nv],
            max: vec![f64::NEG_INFINITY; nv],
        };
        let mut rng = Mt19937::new(99);
        for _ in 0..200 {
            let x: Vec<f64> = (0..nv).map(|_| rng.uniform(-3.0, 5.0)).collect();
            let a = ae.train(|i| x[i], Mode::Reference, lr);
            let b = naive.train(&x, lr);
            assert!((a - b).abs() <= 1e-12 * b.abs(), "{a} vs {b}");
        }
        for (row, nrow) in ae.weights().chunks(nh).zip(&naive.w) {
            for (a, b) in row.iter().zip(nrow) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-3));
            }
        }
    }

    #[test]
    fn forward_matches_training_rmse_before_update() {
        let mut ae = Autoencoder::new(5, 0.5, 7);
        let rows = [[1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 1.0, 0.0, 4.0, 9.0]];
        for r in &rows {
            ae.train(|i| r[i], Mode::Product, 0.1);
        }
        let probe = [1.5, 1.5, 1.5, 4.0, 6.0];
        let (mut xn, mut y, mut z) = (vec![0.0; 5], vec![0.0; 3], vec![0.0; 5]);
        let buf = Buffers {
            xn: &mut xn,
            y: &mut y,
            z: &mut z,
        };
        let before = ae.forward(|i| probe[i], Mode::Product, buf, |_, _| {});
        // Within the seen range the range update is a no-op, so the training
        // RMSE is the same number.
        let during = ae.train(|i| probe[i], Mode::Product, 0.1);
        assert_eq!(before, during);
    }
}
