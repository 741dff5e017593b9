//! KitNET in pure Rust: an ensemble of small autoencoders over groups of
//! correlated features, whose reconstruction errors are scored by one more
//! autoencoder (Mirsky et al., "Kitsune", NDSS 2018).
//!
//! No I/O here: the caller feeds feature vectors (`&[f64]`, one record at a
//! time) and gets scores back. The whole model is `Serialize`/`Deserialize`
//! so a model file can hold it; loading validates every array size, so a
//! corrupt file is an error, never a panic.
//! Every float in the state is finite (the training minima and maxima are
//! only stored once seen), so JSON can hold it. serde_json *prints* each
//! f64 exactly, but without its `float_roundtrip` feature it may *parse* one
//! ulp off, so a reloaded model's scores can differ in the last bits; enable
//! that feature (or use a binary format) for bit-identical reloads.
//!
//! # Two modes
//!
//! [`Mode::Reference`] computes what KitNET-py (as vendored in pysad 0.2.0,
//! which the Python AutoZeekWatch uses) computes, number for number: the
//! correlation feature mapper, SciPy's single-linkage order and tie-breaking,
//! MT19937 `RandomState(1234)` weights, `(x - min) / (max - min + 1e-16)`
//! normalisation and the scalar bias updates. Only summation order differs,
//! and the fixture tests (`tests/e2e/kitnet_reference.rs`) hold every score to a
//! relative 1e-9 of the reference's.
//!
//! [`Mode::Product`] (the default) keeps the algorithm and fixes the
//! reference's known weaknesses:
//!
//! * **Bounded normalisation.** Inputs are still scaled by their training
//!   minimum and maximum, but a value outside the training range is squashed:
//!   the identity on [0, 1]; beyond, an excess of `u` ranges becomes
//!   `u / (1 + u/3)`, continuous with slope 1 at the edge, increasing, and
//!   bounded by 3. Normalised inputs thus lie in `[-3, 4]`: a wild value moves
//!   its reconstruction error by a bounded amount, and a bigger excursion
//!   still scores higher. (The bound 3 was chosen on the fixtures: with
//!   `process`-style training, `seed_defaults_scaled` separates its anomalies
//!   with ROC-AUC 0.948 for a bound of 1, 0.969 for 3 and 0.976 for 10, and
//!   the reference gets 0.973; a large bound lets one value dominate again.)
//!   A feature that was *constant* in training (zero range; a one-hot column
//!   never set) maps its training value to 0 and any other value to +1 or
//!   -1: one full "training range" of deviation. In the reference that
//!   division by `1e-16` makes scores of 1e16 that swamp every other signal;
//!   here an unseen category raises its autoencoder's error clearly while the
//!   rest of the record still counts (`constant_column` and `onehot_ties`,
//!   and the unit tests, check both).
//! * **The same for the output layer**, whose inputs are the ensemble's RMSEs:
//!   they are normalised and squashed the same way, so no single autoencoder
//!   can dominate the final score. Every product-mode score lies in
//!   `[0, PRODUCT_SCORE_BOUND]` (= 4).
//! * **Per-unit bias updates** (the proper gradient) instead of one scalar
//!   mean added to every bias.
//! * **Overflow-free logistic**: the argument of `exp` is clamped to
//!   `[-708, 709]`, which keeps it finite, and NaN maps to a finite value, so
//!   whatever the weights, no score is NaN or infinite (a proptest checks
//!   arbitrary finite inputs, including +-1e300).
//! * **Learning from all the history**: [`KitNet::train`] never stops (in
//!   either mode; only [`KitNet::process`] switches to scoring after the grace
//!   periods, as the reference does), and [`KitNet::fit`] runs the feature
//!   mapper on the first `fm_grace + 1` records and then `epochs` passes over
//!   the whole history, streaming it again for each pass.
//!   Product mode also forgets the output layer's input range at the start of
//!   every epoch after the first, so that it is the range of the *trained*
//!   ensemble's errors, not of its random start.
//! * **Non-finite inputs are rejected** with an error naming the feature
//!   (in both modes), never scored.
//! * Weight initialisation is still MT19937 (`seed`, 1234 by default, every
//!   autoencoder from the same seed as the reference does).
//!
//! # Training a model over a large history
//!
//! ```
//! use autozeekwatch::kitnet::{KitNet, KitNetParams};
//! # fn history() -> impl Iterator<Item = Vec<f64>> {
//! #     (0..400).map(|i| { let t = i as f64; vec![t.sin(), t.cos(), (t * 0.3).sin(), 1.0] })
//! # }
//! let params = KitNetParams { fm_grace: 100, ad_grace: 200, epochs: 2, ..KitNetParams::default() };
//! let mut model = KitNet::new(4, params)?;
//! // `history` re-reads the data for each pass: nothing is held in memory.
//! let report = model.fit(|| history())?;
//! assert_eq!(report.records_per_epoch, 400);
//! let mut scratch = model.scratch();
//! let score = model.execute_with(&[0.1, 0.9, 0.2, 1.0], &mut scratch)?;
//! assert!(score.is_finite());
//! # Ok::<(), autozeekwatch::kitnet::KitNetError>(())
//! ```
//!
//! # Separation on the reference fixtures
//!
//! ROC-AUC of the normal against the anomalous test rows of each fixture
//! (`cargo test --test kitnet_reference -- --nocapture roc`), reference scores
//! as recorded from KitNET-py, product mode trained like the reference
//! (`process`, same grace periods) and with [`KitNet::fit`] (3 epochs over the
//! training rows):
//!
//! | fixture | reference | product, process | product, fit | max product score |
//! |---|---|---|---|---|
//! | small | 0.9998 | 0.9999 | 1.0000 | 1.33 |
//! | seed_defaults_scaled | 0.9733 | 0.9692 | 1.0000 | 1.23 |
//! | ensemble_of_singletons | 1.0000 | 1.0000 | 1.0000 | 0.88 |
//! | constant_column | 1.0000 | 1.0000 | 1.0000 | 1.98 (reference: 5.5e16) |
//! | onehot_ties | 1.0000 | 1.0000 | 1.0000 | 1.53 (reference: 8.0e15) |
//!
//! # Performance notes
//!
//! Each autoencoder's `W` is one contiguous, row-major `Vec<f64>`. Encoding
//! (and the back-propagated error in training) is `vector x W`, done four
//! rows at a time so the short output vector is loaded and stored once per
//! four rows; decoding is one short dot product (four accumulators) per row.
//! The logistic function runs in its own loop over a buffer; product mode's
//! `exp` is written in `math.rs` (branch-free, so it vectorises), reference
//! mode's is libm's.
//! Training buffers live inside each autoencoder; scoring uses a
//! caller-owned [`Scratch`], so [`KitNet::execute_with`] takes `&self`, does
//! not allocate (a test counts allocations), and one model can serve many
//! threads.
//!
//! [`KitNet::execute_block`] scores many records at once for replay: each
//! autoencoder runs over eight records side by side (`[f64; 8]` per unit),
//! every lane doing exactly the one-record arithmetic in the same order, so
//! the scores are the same bits (unit and property tests) while the loops
//! become SIMD (AVX2 when the processor has it, chosen at run time). On
//! `seed_defaults_scaled` (`cargo bench --bench kitnet`, busy machine):
//! 1.24 M records/s with libm's `exp`, 1.57-1.65 M with `math.rs`'s,
//! against 0.84-0.94 M one record at a time.
//!
//! Why plain slices rather than `ndarray` (which the design card named): the
//! vectors are tiny (1 to ~30 inputs per autoencoder, a handful of hidden
//! units), so the cost is per-call overhead, not arithmetic: shape checks,
//! views and temporaries of a general n-d array library are of the order of
//! the work itself, and a BLAS-backed `dot` only pays off far above these
//! sizes. Plain slices let the compiler see the whole loop nest and fuse it.
//! Measured (in a scratch crate outside the repository, `ndarray` 0.16, the
//! `seed_defaults_scaled` shapes: autoencoders of 3, 3 and 28 inputs and an
//! output layer of 3; min of 300 x 500 records, busy 2-core machine, all with
//! libm's `exp`): one record's execute took 836-850 ns here, 2015-2048 ns
//! for a direct `ndarray` port of the NumPy code (a temporary per step) and
//! 1144-1188 ns for `ndarray` with preallocated buffers, `Zip` and
//! `general_mat_vec_mul`; callgrind counted 9.6k, 23.6k and 13.6k
//! instructions per record.
//!
//! Measured per record on the development machine (2 cores shared with a
//! concurrent build; the minimum of 300 runs of 500 records, best of three
//! runs), against KitNET-py's 122 us / 284 us (execute / train) on `small`
//! and 64 us / 178 us on `seed_defaults_scaled`; `train` is one step of the
//! ensemble and output layer:
//!
//! | case | execute, reference / product | train, reference / product |
//! |---|---|---|
//! | `small` (8 features) | 0.44 / 0.44 us | 0.57 / 0.55 us |
//! | `seed_defaults_scaled` (34) | 0.83 / 0.86 us | 1.30 / 1.33 us |
//! | synthetic, 100 features | 2.0 / 2.1 us | 3.4 / 3.4 us |
//!
//! `cargo bench --bench kitnet` (criterion, means) gave 1.3-3.5x these
//! figures while the other core was busy with builds and tests (load ~4.5 on
//! 2 cores; e.g. 1.13 / 1.31 us to execute and 2.27 / 2.70 us to train on
//! `seed_defaults_scaled`); it also measures the feature mapper's per-record
//! update (`observe`, O(n^2): ~0.35-0.53 us at 34 features, ~2.7 us at 100).

mod autoencoder;
mod mapper;
mod math;
mod rng;

use serde::{Deserialize, Serialize};

use autoencoder::{Autoencoder, Buffers, Lanes, LANES};
use mapper::CorrelationStats;

/// Records per block handed from the reading thread to the training
/// thread in [`KitNet::fit`]: enough that a hand-over costs nothing next to
/// training them, few enough to stay in cache.
const TRAIN_BLOCK: usize = 256;

/// Product-mode scores lie in `[0, PRODUCT_SCORE_BOUND]`: every normalised
/// input lies in `[-3, 4]` and every reconstruction in `[0, 1]`.
pub const PRODUCT_SCORE_BOUND: f64 = 1.0 + autoencoder::EXCURSION;

/// Which arithmetic the model uses; see the module documentation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Exactly KitNET-py's computation, weaknesses included.
    Reference,
    /// Bounded, numerically safe, learns from the whole history.
    #[default]
    Product,
}

/// Everything that can go wrong; the messages are meant for the person
/// running the tool.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KitNetError {
    #[error("invalid KitNET parameter `{name}`: {reason}")]
    InvalidParam { name: &'static str, reason: String },
    #[error("a record has {got} features but the model expects {expected}")]
    LengthMismatch { expected: usize, got: usize },
    #[error("feature {index} is {value}: records with NaN or infinite values cannot be learned or scored")]
    NonFiniteInput { index: usize, value: f64 },
    #[error("too few records for {what}: got {got}, need at least {needed}")]
    TooFewRecords {
        what: &'static str,
        got: u64,
        needed: u64,
    },
    #[error("the model cannot score yet: {0}")]
    NotTrained(String),
    #[error("the feature map is already built; the correlation statistics are gone")]
    FeatureMapAlreadyBuilt,
    #[error("invalid feature map: {0}")]
    InvalidFeatureMap(String),
    #[error("the correlation distance between features {i} and {j} is not finite (the statistics overflowed)")]
    NonFiniteDistance { i: usize, j: usize },
}

/// Short for `Result<T, KitNetError>`.
pub type Result<T> = std::result::Result<T, KitNetError>;

/// Hyper-parameters, as the user writes them; [`KitNetParams::check`] turns
/// them into [`ValidKitNetParams`], which is what a model holds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KitNetParams {
    /// Largest number of features in one ensemble autoencoder (`m`),
    /// clamped to the number of features.
    pub max_autoencoder_size: usize,
    /// The feature mapper learns from the first `fm_grace + 1` records.
    pub fm_grace: u64,
    /// Records the ensemble trains on before [`KitNet::process`] starts
    /// scoring.
    pub ad_grace: u64,
    pub learning_rate: f64,
    /// Hidden units per autoencoder: `ceil(n_visible * hidden_ratio)`.
    pub hidden_ratio: f64,
    pub mode: Mode,
    /// Seed of the MT19937 weight initialisation (the reference uses 1234).
    pub seed: u32,
    /// Passes over the history made by [`KitNet::fit`].
    pub epochs: usize,
}

impl Default for KitNetParams {
    /// AutoZeekWatch's training defaults (m=30, FM=5000, AD=50000, lr=0.001,
    /// hr=0.5), in product mode with 3 epochs.
    fn default() -> Self {
        Self {
            max_autoencoder_size: 30,
            fm_grace: 5000,
            ad_grace: 50_000,
            learning_rate: 0.001,
            hidden_ratio: 0.5,
            mode: Mode::Product,
            seed: 1234,
            epochs: 3,
        }
    }
}

impl KitNetParams {
    /// Parameters of the reference computation (seed 1234, one epoch).
    pub fn reference(
        max_autoencoder_size: usize,
        fm_grace: u64,
        ad_grace: u64,
        learning_rate: f64,
        hidden_ratio: f64,
    ) -> Self {
        Self {
            max_autoencoder_size,
            fm_grace,
            ad_grace,
            learning_rate,
            hidden_ratio,
            mode: Mode::Reference,
            seed: 1234,
            epochs: 1,
        }
    }

    /// Validate once, so the hot path never has to.
    pub fn check(&self) -> Result<ValidKitNetParams> {
        let bad = |name, reason: &str| {
            Err(KitNetError::InvalidParam {
                name,
                reason: reason.to_string(),
            })
        };
        if self.max_autoencoder_size == 0 {
            return bad("max_autoencoder_size", "must be at least 1");
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 10.0)
        {
            return bad("learning_rate", "must be a number in (0, 10]");
        }
        if !(self.hidden_ratio.is_finite() && self.hidden_ratio > 0.0 && self.hidden_ratio <= 16.0)
        {
            return bad("hidden_ratio", "must be a number in (0, 16]");
        }
        if self.fm_grace.checked_add(self.ad_grace).is_none() {
            return bad("ad_grace", "fm_grace + ad_grace overflows");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be at least 1");
        }
        Ok(ValidKitNetParams(self.clone()))
    }
}

/// Parameters that passed [`KitNetParams::check`]. A model file's copy is
/// checked again on load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(try_from = "KitNetParams", into = "KitNetParams")]
pub struct ValidKitNetParams(KitNetParams);

impl TryFrom<KitNetParams> for ValidKitNetParams {
    type Error = KitNetError;
    fn try_from(p: KitNetParams) -> Result<Self> {
        p.check()
    }
}

impl From<ValidKitNetParams> for KitNetParams {
    fn from(p: ValidKitNetParams) -> Self {
        p.0
    }
}

impl std::ops::Deref for ValidKitNetParams {
    type Target = KitNetParams;
    fn deref(&self) -> &KitNetParams {
        &self.0
    }
}

/// Caller-owned buffers for [`KitNet::execute_with`], from
/// [`KitNet::scratch`]. A scratch made for another model still works (it is
/// grown once on first use).
#[derive(Clone, Debug, Default)]
pub struct Scratch {
    xn: Vec<f64>,
    y: Vec<f64>,
    z: Vec<f64>,
    s: Vec<f64>,
}

impl Scratch {
    /// Grow (never shrink) to `n_visible`, `n_hidden` and `n_ensemble`.
    fn fit(&mut self, (nv, nh, ne): (usize, usize, usize)) {
        for (v, n) in [
            (&mut self.xn, nv),
            (&mut self.z, nv),
            (&mut self.y, nh),
            (&mut self.s, ne),
        ] {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        }
    }

    fn buffers(&mut self) -> (Buffers<'_>, &mut [f64]) {
        (
            Buffers {
                xn: &mut self.xn,
                y: &mut self.y,
                z: &mut self.z,
            },
            &mut self.s,
        )
    }
}

/// Caller-owned buffers for [`KitNet::execute_block`], from
/// [`KitNet::block_scratch`] (or `default()`: grown on first use).
#[derive(Clone, Debug, Default)]
pub struct BlockScratch {
    xn: Vec<Lanes>,
    y: Vec<Lanes>,
    z: Vec<Lanes>,
    s: Vec<Lanes>,
}

impl BlockScratch {
    /// Grow (never shrink) to the largest autoencoder's `n_visible` and
    /// `n_hidden` and the ensemble size: the block pass runs one
    /// autoencoder at a time over all the block's records.
    fn fit(&mut self, (nv, nh, ne): (usize, usize, usize)) {
        for (v, n) in [
            (&mut self.xn, nv),
            (&mut self.z, nv),
            (&mut self.y, nh),
            (&mut self.s, ne),
        ] {
            if v.len() < n {
                v.resize(n, [0.0; LANES]);
            }
        }
    }
}

/// Why a record scored as it did: [`KitNet::explain`].
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// The same number [`KitNet::execute`] returns.
    pub score: f64,
    /// Per input feature, its share of the reconstruction error; sums to 1.
    pub contributions: Vec<f64>,
    /// Per ensemble autoencoder (feature-map order), its share of the output
    /// layer's squared error; sums to 1.
    pub autoencoder_shares: Vec<f64>,
}

impl Explanation {
    /// The `k` features with the largest shares, largest first.
    pub fn top(&self, k: usize) -> Vec<(usize, f64)> {
        let mut v: Vec<(usize, f64)> = self.contributions.iter().copied().enumerate().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(k);
        v
    }
}

/// What [`KitNet::fit`] did, so a tiny history is reported, not hidden.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FitReport {
    /// Records the feature mapper learned from (0 if the map already existed).
    pub feature_map_records: u64,
    /// True when the history was shorter than `fm_grace + 1` records and the
    /// map was built from all of it.
    pub feature_map_from_short_history: bool,
    /// Records in one pass over the history.
    pub records_per_epoch: u64,
    pub epochs: usize,
    /// True when one pass had fewer records than `ad_grace`.
    pub fewer_records_than_ad_grace: bool,
}

/// The model: feature mapper, ensemble layer and output layer.
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(try_from = "KitNetState")]
pub struct KitNet {
    n_features: usize,
    params: ValidKitNetParams,
    /// Records given to training (the reference's `n_trained`): it decides
    /// the phase in [`KitNet::train`] and [`KitNet::process`].
    n_trained: u64,
    /// Present until the feature map is built.
    stats: Option<CorrelationStats>,
    feature_map: Option<Vec<Vec<usize>>>,
    ensemble: Vec<Autoencoder>,
    output: Option<Autoencoder>,
    /// Training steps of the ensemble and output layer.
    n_detector_updates: u64,
    /// Set by [`KitNet::fit`] and [`KitNet::finish_training`]:
    /// [`KitNet::process`] then only scores.
    training_finished: bool,
    /// Buffers for `process` (scoring) and for the ensemble's RMSEs in
    /// training, so neither allocates per record.
    #[serde(skip)]
    own: Scratch,
    /// Product mode: a group per feature; the feature map clusters within
    /// groups only (see [`KitNet::set_feature_groups`]). Used once, when
    /// the map is built; the map itself is what the model keeps.
    #[serde(skip)]
    groups: Vec<u8>,
}

#[derive(Deserialize)]
struct KitNetState {
    n_features: usize,
    params: ValidKitNetParams,
    n_trained: u64,
    stats: Option<CorrelationStats>,
    feature_map: Option<Vec<Vec<usize>>>,
    ensemble: Vec<Autoencoder>,
    output: Option<Autoencoder>,
    n_detector_updates: u64,
    training_finished: bool,
}

impl TryFrom<KitNetState> for KitNet {
    type Error = String;

    fn try_from(s: KitNetState) -> std::result::Result<Self, String> {
        if s.n_features == 0 {
            return Err("model has no features".into());
        }
        if let Some(stats) = &s.stats {
            stats.check()?;
            if stats.n() != s.n_features {
                return Err("correlation statistics do not match the number of features".into());
            }
        }
        match (&s.feature_map, &s.output) {
            (None, None) if s.ensemble.is_empty() => {
                if s.stats.is_none() {
                    return Err("model has neither statistics nor a feature map".into());
                }
            }
            (Some(map), Some(out)) => {
                validate_map(map, s.n_features).map_err(|e| e.to_string())?;
                if s.ensemble.len() != map.len()
                    || s.ensemble
                        .iter()
                        .zip(map)
                        .any(|(ae, c)| ae.n_visible() != c.len())
                    || out.n_visible() != map.len()
                {
                    return Err("autoencoders do not match the feature map".into());
                }
            }
            _ => return Err("inconsistent model: feature map and autoencoders disagree".into()),
        }
        Ok(Self {
            n_features: s.n_features,
            params: s.params,
            n_trained: s.n_trained,
            stats: s.stats,
            feature_map: s.feature_map,
            ensemble: s.ensemble,
            output: s.output,
            n_detector_updates: s.n_detector_updates,
            training_finished: s.training_finished,
            own: Scratch::default(),
            groups: Vec::new(),
        })
    }
}

fn validate_map(map: &[Vec<usize>], n_features: usize) -> Result<()> {
    if map.is_empty() {
        return Err(KitNetError::InvalidFeatureMap("no clusters".into()));
    }
    for (a, c) in map.iter().enumerate() {
        if c.is_empty() {
            return Err(KitNetError::InvalidFeatureMap(format!(
                "cluster {a} is empty"
            )));
        }
        if let Some(&f) = c.iter().find(|&&f| f >= n_features) {
            return Err(KitNetError::InvalidFeatureMap(format!(
                "cluster {a} names feature {f}, but there are only {n_features} features"
            )));
        }
    }
    Ok(())
}

/// The reference's initial `W` of one autoencoder (`n_visible x n_hidden`,
/// row-major, `n_hidden = ceil(n_visible * hidden_ratio)`), as
/// `RandomState(seed).uniform(-1/n_visible, 1/n_visible)` draws it. Exposed so
/// that the initialisation can be checked against the reference.
pub fn initial_weights(n_visible: usize, hidden_ratio: f64, seed: u32) -> (usize, Vec<f64>) {
    let n_hidden = autoencoder::hidden_size(n_visible, hidden_ratio);
    (
        n_hidden,
        autoencoder::initial_weights(n_visible, n_hidden, seed),
    )
}

impl KitNet {
    /// A fresh model for records of `n_features` values.
    pub fn new(n_features: usize, params: KitNetParams) -> Result<Self> {
        let params = params.check()?;
        if n_features == 0 {
            return Err(KitNetError::InvalidParam {
                name: "n_features",
                reason: "a record needs at least one feature".into(),
            });
        }
        Ok(Self {
            n_features,
            params,
            n_trained: 0,
            stats: Some(CorrelationStats::new(n_features)),
            feature_map: None,
            ensemble: Vec::new(),
            output: None,
            n_detector_updates: 0,
            training_finished: false,
            own: Scratch::default(),
            groups: Vec::new(),
        })
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn params(&self) -> &ValidKitNetParams {
        &self.params
    }

    pub fn mode(&self) -> Mode {
        self.params.mode
    }

    /// The clusters of features, one per ensemble autoencoder, once built.
    pub fn feature_map(&self) -> Option<&[Vec<usize>]> {
        self.feature_map.as_deref()
    }

    /// The smallest and largest value each input feature took in
    /// training (what its autoencoder normalised by), `None` before
    /// training or for a feature outside the map. Explanations compare a
    /// record's value with it.
    pub fn input_ranges(&self) -> Vec<Option<(f64, f64)>> {
        let mut out = vec![None; self.n_features];
        if let Some(map) = &self.feature_map {
            for (ae, cluster) in self.ensemble.iter().zip(map) {
                for (i, &f) in cluster.iter().enumerate() {
                    if let Some(slot) = out.get_mut(f) {
                        *slot = ae
                            .input_range(i)
                            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite());
                    }
                }
            }
        }
        out
    }

    /// Records given to training so far (feature mapper and ensemble).
    pub fn n_trained(&self) -> u64 {
        self.n_trained
    }

    /// Training steps of the anomaly detector (records times epochs).
    pub fn n_detector_updates(&self) -> u64 {
        self.n_detector_updates
    }

    /// True once the ensemble has learned from at least one record, i.e.
    /// [`KitNet::execute`] can score.
    pub fn is_trained(&self) -> bool {
        self.n_detector_updates() > 0
    }

    /// True when [`KitNet::process`] scores instead of learning.
    pub fn is_training_finished(&self) -> bool {
        self.training_finished || self.n_trained > self.params.fm_grace + self.params.ad_grace
    }

    /// Mark training as over: from now on [`KitNet::process`] only scores.
    /// Fails if the model cannot score yet.
    pub fn finish_training(&mut self) -> Result<()> {
        self.ensure_trained()?;
        self.training_finished = true;
        Ok(())
    }

    fn check_input(&self, x: &[f64]) -> Result<()> {
        if x.len() != self.n_features {
            return Err(KitNetError::LengthMismatch {
                expected: self.n_features,
                got: x.len(),
            });
        }
        if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(KitNetError::NonFiniteInput { index, value });
        }
        Ok(())
    }

    fn ensure_trained(&self) -> Result<()> {
        if self.feature_map.is_none() {
            let seen = self.stats.as_ref().map_or(0, |s| s.count());
            return Err(KitNetError::NotTrained(format!(
                "no feature map yet: {seen} of the {} records the feature mapper needs \
                 (fm_grace + 1) have been seen; train on more records, or build the map \
                 from what there is with build_feature_map() or fit()",
                self.params.fm_grace + 1
            )));
        }
        if !self.is_trained() {
            return Err(KitNetError::NotTrained(
                "the feature map is built but the autoencoders have not learned from any record"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The reference's `process`: learn from the record while in the grace
    /// periods (`None`), score it afterwards (`Some(score)`).
    pub fn process(&mut self, x: &[f64]) -> Result<Option<f64>> {
        if self.is_training_finished() {
            let mut scratch = std::mem::take(&mut self.own);
            let r = self.execute_with(x, &mut scratch);
            self.own = scratch;
            r.map(Some)
        } else {
            self.train(x).map(|_| None)
        }
    }

    /// The reference's `train`: the first `fm_grace + 1` records feed the
    /// feature mapper (which then builds the map and the autoencoders), every
    /// later record trains the ensemble and the output layer. Unlike
    /// [`KitNet::process`] it never stops learning.
    pub fn train(&mut self, x: &[f64]) -> Result<()> {
        self.check_input(x)?;
        if self.feature_map.is_none() {
            let fm = self.params.fm_grace;
            if let Some(stats) = self.stats.as_mut() {
                stats.update(x);
            }
            if self.n_trained >= fm {
                self.build_feature_map()?;
            }
        } else {
            self.train_detector(x);
        }
        self.n_trained += 1;
        Ok(())
    }

    /// Feed one record to the feature mapper only (phase 1 by hand). Use
    /// with [`KitNet::build_feature_map`], e.g. on a sample of the history.
    pub fn observe(&mut self, x: &[f64]) -> Result<()> {
        self.check_input(x)?;
        match self.stats.as_mut() {
            Some(stats) if self.feature_map.is_none() => stats.update(x),
            _ => return Err(KitNetError::FeatureMapAlreadyBuilt),
        }
        self.n_trained += 1;
        Ok(())
    }

    /// End phase 1: cluster the features from the records seen so far and
    /// create the autoencoders. Product mode needs at least 2 records (one
    /// record has no correlations and no ranges: the model would be useless).
    pub fn build_feature_map(&mut self) -> Result<&[Vec<usize>]> {
        let stats = self
            .stats
            .as_ref()
            .filter(|_| self.feature_map.is_none())
            .ok_or(KitNetError::FeatureMapAlreadyBuilt)?;
        let needed = match self.params.mode {
            Mode::Reference => 1,
            Mode::Product => 2,
        };
        if stats.count() < needed {
            return Err(KitNetError::TooFewRecords {
                what: "the feature map",
                got: stats.count(),
                needed,
            });
        }
        let (size, mode) = (self.params.max_autoencoder_size, self.params.mode);
        let map = match mode {
            Mode::Product => mapper::feature_map_grouped(stats, size, mode, &self.groups)?,
            Mode::Reference => mapper::feature_map(stats, size, mode)?,
        };
        self.install_map(map);
        Ok(self.feature_map.as_deref().unwrap_or(&[]))
    }

    /// Product mode: features of different groups (one per feature, e.g.
    /// per-record and context columns) are never put in one autoencoder
    /// when the map is built. Reference mode ignores it (the reference
    /// clusters all features together).
    pub fn set_feature_groups(&mut self, groups: Vec<u8>) {
        self.groups = groups;
    }

    /// Use a feature map from elsewhere (the reference's `feature_map`
    /// argument) instead of learning one. Every feature index must exist.
    pub fn set_feature_map(&mut self, map: Vec<Vec<usize>>) -> Result<()> {
        if self.feature_map.is_some() {
            return Err(KitNetError::FeatureMapAlreadyBuilt);
        }
        validate_map(&map, self.n_features)?;
        self.install_map(map);
        Ok(())
    }

    /// Phase 1 from a sample (for instance the first `fm_grace + 1`
    /// records): observe each record, then build the map.
    pub fn learn_feature_map<I, R>(&mut self, sample: I) -> Result<&[Vec<usize>]>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[f64]>,
    {
        for x in sample {
            self.observe(x.as_ref())?;
        }
        self.build_feature_map()
    }

    fn install_map(&mut self, map: Vec<Vec<usize>>) {
        let p = &self.params;
        self.ensemble = map
            .iter()
            .map(|c| Autoencoder::new(c.len(), p.hidden_ratio, p.seed))
            .collect();
        self.output = Some(Autoencoder::new(map.len(), p.hidden_ratio, p.seed));
        self.feature_map = Some(map);
        self.stats = None;
    }

    /// One training step of the ensemble and output layer (map present).
    fn train_detector(&mut self, x: &[f64]) {
        let (mode, lr) = (self.params.mode, self.params.learning_rate);
        let (Some(map), Some(output)) = (self.feature_map.as_ref(), self.output.as_mut()) else {
            return;
        };
        let s = &mut self.own.s;
        if s.len() < self.ensemble.len() {
            s.resize(self.ensemble.len(), 0.0);
        }
        for ((ae, cluster), si) in self.ensemble.iter_mut().zip(map).zip(s.iter_mut()) {
            *si = ae.train(|i| x[cluster[i]], mode, lr);
        }
        output.train(|i| s[i], mode, lr);
        self.n_detector_updates += 1;
    }

    /// Train on a whole history, streamed `1 + epochs` times at most by
    /// `pass` (each call must start the history from the beginning):
    ///
    /// 1. if there is no feature map yet, the first `fm_grace + 1` records
    ///    build it (all of them if the history is shorter; reported in the
    ///    [`FitReport`]);
    /// 2. `epochs` passes train the autoencoders on every record, with no
    ///    `ad_grace` cut-off.
    ///
    /// Afterwards training is finished: [`KitNet::process`] only scores.
    /// For a fallible source, use the same steps by hand:
    /// [`KitNet::observe`], [`KitNet::build_feature_map`], then for each pass
    /// [`KitNet::start_epoch`] (from the second on) and [`KitNet::train`] on
    /// every record, then [`KitNet::finish_training`].
    pub fn fit<F, I, R>(&mut self, mut pass: F) -> Result<FitReport>
    where
        F: FnMut() -> I,
        I: IntoIterator<Item = R>,
        R: AsRef<[f64]>,
    {
        let fm_records = self.params.fm_grace.saturating_add(1);
        let mut feature_map_records = 0;
        let mut short = false;
        if self.feature_map.is_none() {
            for x in pass()
                .into_iter()
                .take(usize::try_from(fm_records).unwrap_or(usize::MAX))
            {
                self.observe(x.as_ref())?;
                feature_map_records += 1;
            }
            short = feature_map_records < fm_records;
            self.build_feature_map()?;
        }
        let mut records_per_epoch = 0;
        for epoch in 0..self.params.epochs {
            if epoch > 0 {
                self.start_epoch();
            }
            let n = self.train_pass(pass())?;
            if n == 0 {
                return Err(KitNetError::TooFewRecords {
                    what: "training the autoencoders",
                    got: 0,
                    needed: 1,
                });
            }
            records_per_epoch = n;
        }
        self.training_finished = true;
        Ok(FitReport {
            feature_map_records,
            feature_map_from_short_history: short,
            records_per_epoch,
            epochs: self.params.epochs,
            fewer_records_than_ad_grace: records_per_epoch < self.params.ad_grace,
        })
    }

    /// One epoch of [`KitNet::fit`]: every record of `records` trains the
    /// ensemble and the output layer, in order; returns how many.
    ///
    /// Three threads share the work. This one produces the records (the
    /// caller's iterator reads, parses and encodes), checks them and hands
    /// them on in blocks of [`TRAIN_BLOCK`]; the ensemble's autoencoders,
    /// independent of each other given the feature map, are split in two
    /// groups of about equal cost, one trained by each of two threads; the
    /// second thread also trains the output layer on each record's RMSEs
    /// once both groups have them, while the first goes on with the next
    /// block. Every autoencoder still learns from the records in order, one
    /// step at a time, with the same arithmetic: the model is the same bits
    /// as training record by record (`fit_trains_the_same_bits_as_record_by_record`).
    /// The first record that cannot be learned (wrong length, not finite)
    /// ends the pass with its error, every record before it learned.
    fn train_pass<I, R>(&mut self, records: I) -> Result<u64>
    where
        I: IntoIterator<Item = R>,
        R: AsRef<[f64]>,
    {
        use std::sync::mpsc::sync_channel;
        use std::sync::Arc;

        let nf = self.n_features;
        let (mode, lr) = (self.params.mode, self.params.learning_rate);
        let KitNet {
            ensemble,
            feature_map,
            output,
            ..
        } = self;
        let (Some(map), Some(output)) = (feature_map.as_ref(), output.as_mut()) else {
            return Err(KitNetError::NotTrained("no feature map".into()));
        };
        let ne = ensemble.len();
        // Cost of a training step ~ the weights; the output layer's counts
        // on the second thread's side from the start.
        let cost = |ae: &Autoencoder| ae.n_visible() * ae.n_hidden() + ae.n_visible();
        let mut order: Vec<usize> = (0..ne).collect();
        order.sort_by_key(|&a| std::cmp::Reverse(cost(&ensemble[a])));
        let mut load = [0, cost(output)];
        let mut second = vec![false; ne];
        for a in order {
            let g = usize::from(load[0] > load[1]);
            second[a] = g == 1;
            load[g] += cost(&ensemble[a]);
        }
        type Group<'a> = Vec<(usize, &'a mut Autoencoder, &'a [usize])>;
        let (mut first, mut other): (Group<'_>, Group<'_>) = (Vec::new(), Vec::new());
        for (a, (ae, cluster)) in ensemble.iter_mut().zip(map).enumerate() {
            if second[a] {
                other.push((a, ae, cluster));
            } else {
                first.push((a, ae, cluster));
            }
        }
        // RMSEs of one group for one block, autoencoder by autoencoder.
        let train_group = move |group: &mut Group<'_>, block: &[f64], rmse: &mut Vec<f64>| {
            rmse.clear();
            for (_, ae, cluster) in group.iter_mut() {
                for x in block.chunks_exact(nf) {
                    rmse.push(ae.train(|i| x[cluster[i]], mode, lr));
                }
            }
        };

        let first_ids: Vec<usize> = first.iter().map(|(a, _, _)| *a).collect();
        let (n, refused) = std::thread::scope(|scope| {
            let (to_first, first_blocks) = sync_channel::<Arc<Vec<f64>>>(2);
            let (to_other, other_blocks) = sync_channel::<Arc<Vec<f64>>>(2);
            let (first_done, first_rmse) = sync_channel::<Vec<f64>>(4);
            scope.spawn(move || {
                let mut group = first;
                for block in first_blocks {
                    let mut rmse = Vec::new();
                    train_group(&mut group, &block, &mut rmse);
                    if first_done.send(rmse).is_err() {
                        break;
                    }
                }
            });
            let trainer = scope.spawn(move || -> u64 {
                let mut group = other;
                let mut mine = Vec::new();
                let mut s = vec![0.0; ne];
                let mut n = 0u64;
                for block in other_blocks {
                    train_group(&mut group, &block, &mut mine);
                    let Ok(theirs) = first_rmse.recv() else {
                        break;
                    };
                    let records = block.len() / nf;
                    for r in 0..records {
                        for (k, &a) in first_ids.iter().enumerate() {
                            s[a] = theirs[k * records + r];
                        }
                        for (k, (a, _, _)) in group.iter().enumerate() {
                            s[*a] = mine[k * records + r];
                        }
                        output.train(|i| s[i], mode, lr);
                        n += 1;
                    }
                }
                n
            });
            let mut block = Vec::with_capacity(TRAIN_BLOCK * nf);
            let mut refused = None;
            // Dropping `send` closes both channels: the threads finish.
            let send = move |block: Vec<f64>| {
                let block = Arc::new(block);
                to_first.send(Arc::clone(&block)).is_ok() && to_other.send(block).is_ok()
            };
            for x in records {
                let x = x.as_ref();
                if x.len() != nf {
                    refused = Some(KitNetError::LengthMismatch {
                        expected: nf,
                        got: x.len(),
                    });
                    break;
                }
                if let Some((index, &value)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                    refused = Some(KitNetError::NonFiniteInput { index, value });
                    break;
                }
                block.extend_from_slice(x);
                if block.len() == TRAIN_BLOCK * nf {
                    let full = std::mem::replace(&mut block, Vec::with_capacity(TRAIN_BLOCK * nf));
                    if !send(full) {
                        break;
                    }
                }
            }
            if !block.is_empty() {
                send(block);
            }
            drop(send);
            let n = match trainer.join() {
                Ok(n) => n,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (n, refused)
        });
        self.n_trained += n;
        self.n_detector_updates += n;
        match refused {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Call before every pass over the history after the first, when
    /// training by hand as [`KitNet::fit`] does. In product mode the output
    /// layer then re-learns the range of the ensemble's errors from this
    /// pass, instead of keeping the range of the untrained ensemble's first
    /// errors (which are much larger). A no-op in reference mode.
    pub fn start_epoch(&mut self) {
        if self.params.mode == Mode::Product {
            if let Some(out) = self.output.as_mut() {
                out.reset_range();
            }
        }
    }

    /// Buffers for [`KitNet::execute_with`].
    pub fn scratch(&self) -> Scratch {
        let mut scratch = Scratch::default();
        scratch.fit(self.scratch_sizes());
        scratch
    }

    /// Score one record (allocates a [`Scratch`]; prefer
    /// [`KitNet::execute_with`] in a loop).
    pub fn execute(&self, x: &[f64]) -> Result<f64> {
        let mut scratch = self.scratch();
        self.execute_with(x, &mut scratch)
    }

    /// Score one record without allocating and without changing the model.
    pub fn execute_with(&self, x: &[f64], scratch: &mut Scratch) -> Result<f64> {
        self.ensure_trained()?;
        self.check_input(x)?;
        let (Some(map), Some(output)) = (self.feature_map.as_ref(), self.output.as_ref()) else {
            return Err(KitNetError::NotTrained("no feature map".into()));
        };
        scratch.fit(self.scratch_sizes());
        Ok(match self.params.mode {
            Mode::Reference => self.execute_layers::<false>(x, map, output, scratch),
            Mode::Product => self.execute_layers::<true>(x, map, output, scratch),
        })
    }

    /// [`KitNet::execute_with`] layer by layer: each stage of the forward
    /// pass runs over the whole ensemble (its units side by side in the
    /// scratch buffers) before the next, so the logistic of all the hidden
    /// units, then of all the reconstructions, is one loop of independent
    /// `exp` calls. A one-feature autoencoder (common: most features are
    /// clusters of their own) is otherwise a short chain of dependent calls,
    /// and the pipeline idles waiting on each. The arithmetic of every
    /// number is that of [`Autoencoder::forward`], so the scores are
    /// bit-identical to it (and to [`KitNet::explain`]).
    fn execute_layers<const PRODUCT: bool>(
        &self,
        x: &[f64],
        map: &[Vec<usize>],
        output: &Autoencoder,
        scratch: &mut Scratch,
    ) -> f64 {
        let Scratch { xn, y, z, s } = scratch;
        let (mut v, mut h) = (0, 0);
        for (ae, cluster) in self.ensemble.iter().zip(map) {
            let (nv, nh) = (ae.n_visible(), ae.n_hidden());
            if ae.is_single() {
                (xn[v], y[h]) = ae.hidden_pre_single::<PRODUCT>(x[cluster[0]]);
            } else {
                ae.hidden_pre::<PRODUCT>(|i| x[cluster[i]], &mut xn[v..v + nv], &mut y[h..h + nh]);
            }
            v += nv;
            h += nh;
        }
        autoencoder::sigmoid_all::<PRODUCT>(&mut y[..h]);
        let (mut v, mut h) = (0, 0);
        for ae in &self.ensemble {
            let (nv, nh) = (ae.n_visible(), ae.n_hidden());
            if ae.is_single() {
                z[v] = ae.visible_pre_single(y[h]);
            } else {
                ae.visible_pre(&y[h..h + nh], &mut z[v..v + nv]);
            }
            v += nv;
            h += nh;
        }
        autoencoder::sigmoid_all::<PRODUCT>(&mut z[..v]);
        let mut v = 0;
        for (ae, si) in self.ensemble.iter().zip(s.iter_mut()) {
            let nv = ae.n_visible();
            *si = autoencoder::rmse(&xn[v..v + nv], &z[v..v + nv], |_, _| {});
            v += nv;
        }
        let s = &s[..self.ensemble.len()];
        let mode = if PRODUCT {
            Mode::Product
        } else {
            Mode::Reference
        };
        output.forward(|i| s[i], mode, Buffers { xn, y, z }, |_, _| {})
    }

    /// Buffers for [`KitNet::execute_block`].
    pub fn block_scratch(&self) -> BlockScratch {
        let mut scratch = BlockScratch::default();
        scratch.fit(self.block_scratch_sizes());
        scratch
    }

    /// Score many records at once: `xs` holds `scores.len()` records of
    /// [`KitNet::n_features`] values one after the other, and `scores`
    /// receives their scores, bit for bit those of
    /// [`KitNet::execute_with`]. Fails as `execute_with` fails, on the first
    /// record that it would refuse, before scoring any.
    ///
    /// Why: replay and other bulk scoring run each autoencoder over eight
    /// records side by side, which the compiler turns into SIMD (using
    /// AVX2 where the processor has it, detected at run time; an AVX-512
    /// build was measured no faster); one record at a
    /// time leaves most of the vector units idle. Live mode scores each
    /// batch it reads this way too (a batch of one as it arrives).
    pub fn execute_block(
        &self,
        xs: &[f64],
        scores: &mut [f64],
        scratch: &mut BlockScratch,
    ) -> Result<()> {
        let expected = scores.len().saturating_mul(self.n_features);
        let (map, output) = self.block_inputs(xs, expected, scratch)?;
        let product = self.params.mode == Mode::Product;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor has AVX2 (checked just above), the one
            // requirement of a `target_feature(enable = "avx2")` function.
            unsafe { self.execute_blocks_avx2(xs, scores, map, output, scratch, product) };
            return Ok(());
        }
        if product {
            self.execute_blocks::<true>(xs, scores, map, output, scratch);
        } else {
            self.execute_blocks::<false>(xs, scores, map, output, scratch);
        }
        Ok(())
    }

    /// [`KitNet::execute_blocks`] compiled for AVX2: the same source, so
    /// the same operations in the same order, in wider registers (without
    /// FMA, which would round differently: Rust never fuses a multiply and
    /// an add unless asked to).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn execute_blocks_avx2(
        &self,
        xs: &[f64],
        scores: &mut [f64],
        map: &[Vec<usize>],
        output: &Autoencoder,
        scratch: &mut BlockScratch,
        product: bool,
    ) {
        if product {
            self.execute_blocks::<true>(xs, scores, map, output, scratch);
        } else {
            self.execute_blocks::<false>(xs, scores, map, output, scratch);
        }
    }

    /// The block pass, inputs checked: [`LANES`] records at a time, the
    /// last block padded with zeros (whose scores are dropped).
    #[inline(always)]
    fn execute_blocks<const PRODUCT: bool>(
        &self,
        xs: &[f64],
        scores: &mut [f64],
        map: &[Vec<usize>],
        output: &Autoencoder,
        scratch: &mut BlockScratch,
    ) {
        let nf = self.n_features;
        let BlockScratch { xn, y, z, s } = scratch;
        for (rows, out) in xs.chunks(LANES * nf).zip(scores.chunks_mut(LANES)) {
            for ((ae, cluster), si) in self.ensemble.iter().zip(map).zip(s.iter_mut()) {
                let get = |i: usize| column(rows, nf, cluster[i]);
                *si = ae.forward_lanes::<PRODUCT>(get, xn, y, z, |_, _| {});
            }
            let s = &s[..self.ensemble.len()];
            let rmse = output.forward_lanes::<PRODUCT>(|i| s[i], xn, y, z, |_, _| {});
            out.copy_from_slice(&rmse[..out.len()]);
        }
    }

    /// What the block passes check first: a trained model, `expected`
    /// numbers in `xs`, every record's inputs as [`KitNet::execute_with`]
    /// checks them; the feature map and output layer, and the scratch
    /// grown to fit.
    fn block_inputs(
        &self,
        xs: &[f64],
        expected: usize,
        scratch: &mut BlockScratch,
    ) -> Result<(&[Vec<usize>], &Autoencoder)> {
        self.ensure_trained()?;
        if xs.len() != expected {
            return Err(KitNetError::LengthMismatch {
                expected,
                got: xs.len(),
            });
        }
        for x in xs.chunks_exact(self.n_features.max(1)) {
            self.check_input(x)?;
        }
        let (Some(map), Some(output)) = (self.feature_map.as_ref(), self.output.as_ref()) else {
            return Err(KitNetError::NotTrained("no feature map".into()));
        };
        scratch.fit(self.block_scratch_sizes());
        Ok((map, output))
    }

    /// The largest autoencoder's visible and hidden units, and the
    /// ensemble size.
    fn block_scratch_sizes(&self) -> (usize, usize, usize) {
        self.ensemble
            .iter()
            .chain(self.output.as_ref())
            .fold((0, 0, self.ensemble.len()), |(v, h, n), a| {
                (v.max(a.n_visible()), h.max(a.n_hidden()), n)
            })
    }

    /// Scratch sizes: the visible and hidden units of the whole ensemble
    /// (which [`KitNet::execute_with`] lays side by side) or of the output
    /// layer, whichever is larger, and the ensemble size.
    fn scratch_sizes(&self) -> (usize, usize, usize) {
        let (v, h) = self
            .ensemble
            .iter()
            .fold((0, 0), |(v, h), a| (v + a.n_visible(), h + a.n_hidden()));
        let (ov, oh) = self
            .output
            .as_ref()
            .map_or((0, 0), |o| (o.n_visible(), o.n_hidden()));
        (v.max(ov), h.max(oh), self.ensemble.len())
    }

    /// Which input features made this record's score, for reporting an
    /// anomaly (allocates).
    ///
    /// The output layer's squared reconstruction error is split over the
    /// ensemble autoencoders (coordinate `a` of the output layer is
    /// autoencoder `a`'s RMSE), and each autoencoder's share is split over
    /// its input features in proportion to their squared reconstruction
    /// errors. Both splits are in normalised units, so the shares of features
    /// with very different scales are comparable. When an error is exactly
    /// zero its share is spread evenly, so the shares always sum to 1.
    pub fn explain(&self, x: &[f64]) -> Result<Explanation> {
        self.ensure_trained()?;
        self.check_input(x)?;
        let (Some(map), Some(output)) = (self.feature_map.as_ref(), self.output.as_ref()) else {
            return Err(KitNetError::NotTrained("no feature map".into()));
        };
        let mode = self.params.mode;
        let mut scratch = self.scratch();
        let (mut buf, s) = scratch.buffers();
        let mut per_feature: Vec<Vec<f64>> = Vec::with_capacity(map.len());
        for ((ae, cluster), si) in self.ensemble.iter().zip(map).zip(s.iter_mut()) {
            let mut errs = vec![0.0; cluster.len()];
            *si = ae.forward(
                |i| x[cluster[i]],
                mode,
                buf.reborrow(),
                |i, e2| errs[i] = e2,
            );
            per_feature.push(errs);
        }
        let mut out_errs = vec![0.0; map.len()];
        let s = &s[..];
        let score = output.forward(|i| s[i], mode, buf, |i, e2| out_errs[i] = e2);
        Ok(self.explanation(score, map, &out_errs, &per_feature))
    }

    /// The explanation made of a record's squared errors: the output
    /// layer's per autoencoder, and each autoencoder's per input feature
    /// (one pass or the block pass: the same arithmetic).
    fn explanation(
        &self,
        score: f64,
        map: &[Vec<usize>],
        out_errs: &[f64],
        per_feature: &[Vec<f64>],
    ) -> Explanation {
        let autoencoder_shares = normalise_shares(out_errs);
        let mut contributions = vec![0.0; self.n_features];
        for ((cluster, errs), &share) in map.iter().zip(per_feature).zip(&autoencoder_shares) {
            for (&f, w) in cluster.iter().zip(normalise_shares(errs)) {
                contributions[f] += share * w;
            }
        }
        Explanation {
            score,
            contributions,
            autoencoder_shares,
        }
    }

    /// [`KitNet::explain`] of several records (their vectors one after the
    /// other), [`LANES`] at a time through the block pass: the same
    /// numbers, bit for bit (`explain_block_matches_explain` in
    /// `kitnet/tests.rs`), for a fraction of the time when many records
    /// are explained, as when an attack makes many of them anomalous (one
    /// at a time, the one-record pass was about 10 us a record).
    pub fn explain_block(
        &self,
        xs: &[f64],
        scratch: &mut BlockScratch,
    ) -> Result<Vec<Explanation>> {
        let nf = self.n_features.max(1);
        let expected = xs.len().next_multiple_of(nf);
        let (map, output) = self.block_inputs(xs, expected, scratch)?;
        let mut out = Vec::with_capacity(xs.len() / nf);
        for rows in xs.chunks(LANES * nf) {
            if self.params.mode == Mode::Product {
                self.explain_lanes::<true>(rows, map, output, scratch, &mut out);
            } else {
                self.explain_lanes::<false>(rows, map, output, scratch, &mut out);
            }
        }
        Ok(out)
    }

    /// Up to [`LANES`] records' explanations (their rows, inputs checked),
    /// appended to `out`: [`KitNet::explain`]'s arithmetic, lane by lane.
    fn explain_lanes<const PRODUCT: bool>(
        &self,
        rows: &[f64],
        map: &[Vec<usize>],
        output: &Autoencoder,
        scratch: &mut BlockScratch,
        out: &mut Vec<Explanation>,
    ) {
        let nf = self.n_features;
        let BlockScratch { xn, y, z, s } = scratch;
        let mut per_feature: Vec<Vec<Lanes>> = Vec::with_capacity(map.len());
        for ((ae, cluster), si) in self.ensemble.iter().zip(map).zip(s.iter_mut()) {
            let get = |i: usize| column(rows, nf, cluster[i]);
            let mut errs = vec![[0.0; LANES]; cluster.len()];
            *si = ae.forward_lanes::<PRODUCT>(get, xn, y, z, |i, e2| errs[i] = *e2);
            per_feature.push(errs);
        }
        let s = &s[..self.ensemble.len()];
        let mut out_errs = vec![[0.0; LANES]; map.len()];
        let rmse = output.forward_lanes::<PRODUCT>(|i| s[i], xn, y, z, |i, e2| out_errs[i] = *e2);
        for r in 0..rows.len() / nf {
            let lane = |v: &[Lanes]| v.iter().map(|e| e[r]).collect::<Vec<f64>>();
            let errs: Vec<Vec<f64>> = per_feature.iter().map(|e| lane(e)).collect();
            out.push(self.explanation(rmse[r], map, &lane(&out_errs), &errs));
        }
    }
}

/// Input `f` of each record of a block's `rows` (`nf` numbers a record),
/// side by side; lanes past the last record are zero.
#[inline(always)]
fn column(rows: &[f64], nf: usize, f: usize) -> Lanes {
    let mut lane = [0.0; LANES];
    for (v, row) in lane.iter_mut().zip(rows.chunks_exact(nf)) {
        *v = row[f];
    }
    lane
}

/// `v / sum(v)`, or uniform when the sum is zero or not finite.
fn normalise_shares(v: &[f64]) -> Vec<f64> {
    let total: f64 = v.iter().sum();
    if total > 0.0 && total.is_finite() {
        v.iter().map(|e| e / total).collect()
    } else {
        vec![1.0 / v.len() as f64; v.len()]
    }
}

#[cfg(test)]
mod tests;
