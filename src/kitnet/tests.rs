//! Behaviour of the whole model on synthetic streams (the reference fixtures
//! are in `tests/e2e/kitnet_reference.rs`).

use super::*;
use proptest::prelude::*;
use rng::Mt19937;

/// A deterministic stream: two correlated groups, a one-hot block of 4
/// columns where column 3 is never set, and a constant column.
fn record(rng: &mut Mt19937) -> Vec<f64> {
    let a = rng.uniform(-1.0, 1.0);
    let b = rng.uniform(0.0, 10.0);
    let cat = (rng.next_u32() % 3) as usize;
    let mut x = vec![
        a,
        2.0 * a + 0.1 * rng.uniform(-1.0, 1.0),
        -a,
        b,
        b * b / 10.0,
        b + rng.uniform(0.0, 0.5),
        0.0,
        0.0,
        0.0,
        0.0,
        5.0,
    ];
    x[6 + cat] = 1.0;
    x
}

const N: usize = 11;
const UNSEEN_CATEGORY: usize = 9;
const CONSTANT: usize = 10;

fn stream(seed: u32, n: usize) -> Vec<Vec<f64>> {
    let mut rng = Mt19937::new(seed);
    (0..n).map(|_| record(&mut rng)).collect()
}

fn params(mode: Mode) -> KitNetParams {
    KitNetParams {
        max_autoencoder_size: 4,
        fm_grace: 200,
        ad_grace: 1000,
        learning_rate: 0.1,
        hidden_ratio: 0.75,
        mode,
        seed: 1234,
        epochs: 3,
    }
}

fn trained(mode: Mode) -> KitNet {
    let mut m = KitNet::new(N, params(mode)).unwrap();
    for x in stream(1, 1201) {
        assert_eq!(m.process(&x).unwrap(), None);
    }
    assert!(m.is_training_finished());
    m
}

fn max_score(m: &KitNet, rows: &[Vec<f64>]) -> f64 {
    let mut scratch = m.scratch();
    rows.iter()
        .map(|x| m.execute_with(x, &mut scratch).unwrap())
        .fold(0.0, f64::max)
}

#[test]
fn invalid_parameters_are_rejected_with_their_name() {
    let bad = |f: fn(&mut KitNetParams)| {
        let mut p = KitNetParams::default();
        f(&mut p);
        match KitNet::new(3, p) {
            Err(KitNetError::InvalidParam { name, .. }) => name,
            other => panic!("expected an error, got {other:?}"),
        }
    };
    assert_eq!(bad(|p| p.max_autoencoder_size = 0), "max_autoencoder_size");
    assert_eq!(bad(|p| p.learning_rate = f64::NAN), "learning_rate");
    assert_eq!(bad(|p| p.learning_rate = 0.0), "learning_rate");
    assert_eq!(bad(|p| p.hidden_ratio = -1.0), "hidden_ratio");
    assert_eq!(bad(|p| p.epochs = 0), "epochs");
    assert!(matches!(
        KitNet::new(0, KitNetParams::default()),
        Err(KitNetError::InvalidParam {
            name: "n_features",
            ..
        })
    ));
}

#[test]
fn nan_and_inf_inputs_are_errors_naming_the_feature() {
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    let mut x = stream(1, 1).remove(0);
    x[4] = f64::NAN;
    let err = m.process(&x).unwrap_err();
    assert!(
        matches!(err, KitNetError::NonFiniteInput { index: 4, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("feature 4"), "{err}");
    assert_eq!(m.n_trained(), 0, "a rejected record is not learned");

    let m = trained(Mode::Product);
    let mut x = stream(2, 1).remove(0);
    x[7] = f64::NEG_INFINITY;
    assert!(matches!(
        m.execute(&x),
        Err(KitNetError::NonFiniteInput { index: 7, .. })
    ));
    assert!(matches!(
        m.explain(&x),
        Err(KitNetError::NonFiniteInput { .. })
    ));
    assert!(matches!(
        m.execute(&x[..5]),
        Err(KitNetError::LengthMismatch {
            expected: 11,
            got: 5
        })
    ));
}

#[test]
fn process_learns_during_the_grace_periods_then_scores() {
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    let rows = stream(3, 1300);
    for (i, x) in rows.iter().enumerate() {
        let out = m.process(x).unwrap();
        assert_eq!(out.is_some(), i > 1200, "record {i}");
        if i == 200 {
            assert!(m.feature_map().is_some());
        }
    }
    assert_eq!(m.n_detector_updates(), 1000);
}

#[test]
fn constant_feature_moving_raises_the_score_without_exploding() {
    let normal = stream(4, 300);
    let mut moved = normal.clone();
    for x in &mut moved {
        x[CONSTANT] = 6.0;
    }
    let product = trained(Mode::Product);
    let reference = trained(Mode::Reference);
    let (p_normal, p_moved) = (max_score(&product, &normal), max_score(&product, &moved));
    let r_moved = max_score(&reference, &moved);
    assert!(r_moved > 1e10, "the reference explodes: {r_moved}");
    assert!(p_moved <= PRODUCT_SCORE_BOUND, "bounded: {p_moved}");
    assert!(
        p_moved > 1.5 * p_normal,
        "an unseen value must still stand out: {p_moved} vs {p_normal}"
    );
    // Every moved record scores above every normal one.
    let mut s = product.scratch();
    let min_moved = moved
        .iter()
        .map(|x| product.execute_with(x, &mut s).unwrap())
        .fold(f64::INFINITY, f64::min);
    assert!(min_moved > p_normal, "{min_moved} vs {p_normal}");
}

#[test]
fn unseen_category_is_clear_but_does_not_swamp_other_signals() {
    let product = trained(Mode::Product);
    let normal = stream(5, 300);
    let p_normal = max_score(&product, &normal);
    let unseen: Vec<Vec<f64>> = normal
        .iter()
        .map(|x| {
            let mut x = x.clone();
            x[6..10].fill(0.0);
            x[UNSEEN_CATEGORY] = 1.0;
            x
        })
        .collect();
    let p_unseen = max_score(&product, &unseen);
    assert!(
        p_unseen > p_normal && p_unseen <= PRODUCT_SCORE_BOUND,
        "{p_unseen} vs {p_normal}"
    );

    // Not swamped: an unseen category *plus* a broken correlation scores
    // higher than the unseen category alone.
    let mut scratch = product.scratch();
    let mut higher = 0;
    for x in &unseen {
        let mut both = x.clone();
        both[1] = -both[1] + 3.0;
        both[4] += 20.0;
        let a = product.execute_with(x, &mut scratch).unwrap();
        let b = product.execute_with(&both, &mut scratch).unwrap();
        higher += usize::from(b > a);
    }
    assert!(higher >= 290, "{higher} of 300");

    // The explanation points at the unseen column.
    let e = product.explain(&unseen[0]).unwrap();
    assert_eq!(e.top(1)[0].0, UNSEEN_CATEGORY, "{:?}", e.top(3));
}

#[test]
fn too_few_records_is_a_clear_error_or_a_reported_choice() {
    let rows = stream(6, 150);
    // process(): fewer records than the grace periods means no scores, and
    // execute says why.
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    for x in &rows {
        assert_eq!(m.process(x).unwrap(), None);
    }
    let err = m.execute(&rows[0]).unwrap_err();
    assert!(matches!(err, KitNetError::NotTrained(_)));
    assert!(err.to_string().contains("150 of the 201"), "{err}");

    // fit(): the map is built from all 150 records, and the report says so.
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    let report = m.fit(|| rows.iter()).unwrap();
    assert_eq!(
        report,
        FitReport {
            feature_map_records: 150,
            feature_map_from_short_history: true,
            records_per_epoch: 150,
            epochs: 3,
            fewer_records_than_ad_grace: true,
        }
    );
    assert!(m.is_trained() && m.is_training_finished());
    assert_eq!(m.n_detector_updates(), 450);
    assert!(m.process(&rows[0]).unwrap().is_some());

    // One record cannot make a model.
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    let err = m.fit(|| rows[..1].iter()).unwrap_err();
    assert!(
        matches!(
            err,
            KitNetError::TooFewRecords {
                got: 1,
                needed: 2,
                ..
            }
        ),
        "{err}"
    );
    // No records at all.
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    assert!(m.fit(|| rows[..0].iter()).is_err());
    assert!(m.finish_training().is_err());
}

#[test]
fn fit_streams_the_history_once_per_epoch_and_learns_from_all_of_it() {
    let rows = stream(7, 3000);
    let mut calls = 0;
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    let report = m
        .fit(|| {
            calls += 1;
            rows.iter()
        })
        .unwrap();
    assert_eq!(calls, 4, "one pass for the map, three epochs");
    assert_eq!(report.feature_map_records, 201);
    assert!(!report.feature_map_from_short_history);
    assert_eq!(report.records_per_epoch, 3000);
    assert_eq!(m.n_detector_updates(), 9000);
}

#[test]
fn staged_training_by_hand_matches_fit() {
    let rows = stream(8, 800);
    let mut a = KitNet::new(N, params(Mode::Product)).unwrap();
    a.fit(|| rows.iter()).unwrap();
    let mut b = KitNet::new(N, params(Mode::Product)).unwrap();
    b.learn_feature_map(&rows[..201]).unwrap();
    for epoch in 0..3 {
        if epoch > 0 {
            b.start_epoch();
        }
        for x in &rows {
            b.train(x).unwrap();
        }
    }
    b.finish_training().unwrap();
    assert_eq!(a.feature_map(), b.feature_map());
    for x in stream(9, 20) {
        assert_eq!(a.execute(&x).unwrap(), b.execute(&x).unwrap());
    }
}

/// serde_json prints every f64 exactly (shortest round-trip form), but
/// without its `float_roundtrip` feature its parser may be one ulp off; with a
/// binary format (or that feature) the scores are bit-identical.
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

#[test]
fn serde_round_trip_keeps_every_score() {
    for mode in [Mode::Reference, Mode::Product] {
        let m = trained(mode);
        let json = serde_json::to_string(&m).unwrap();
        let back: KitNet = serde_json::from_str(&json).unwrap();
        // A serde round trip through an exact in-memory format is bit-exact.
        let exact: KitNet = serde_json::from_value(serde_json::to_value(&m).unwrap()).unwrap();
        for x in stream(10, 50) {
            let s = m.execute(&x).unwrap();
            assert!(same(s, back.execute(&x).unwrap()));
            assert_eq!(s, exact.execute(&x).unwrap());
        }
        // Continued training after loading gives the same model too.
        let (mut m2, mut back2) = (m.clone(), back);
        for x in stream(11, 20) {
            m2.train(&x).unwrap();
            back2.train(&x).unwrap();
        }
        let x = stream(12, 1).remove(0);
        assert!(same(m2.execute(&x).unwrap(), back2.execute(&x).unwrap()));
    }
    // A model still in the feature-mapping phase round-trips as well.
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    for x in stream(13, 50) {
        m.train(&x).unwrap();
    }
    let back: KitNet = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.n_trained(), 50);
    assert!(back.feature_map().is_none());
}

#[test]
fn corrupt_model_files_are_errors_not_panics() {
    let m = trained(Mode::Product);
    let mut v: serde_json::Value = serde_json::to_value(&m).unwrap();
    v["ensemble"][0]["w"] = serde_json::json!([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]);
    assert!(serde_json::from_value::<KitNet>(v).is_err());

    let mut v: serde_json::Value = serde_json::to_value(&m).unwrap();
    v["feature_map"][0][0] = serde_json::json!(99);
    assert!(serde_json::from_value::<KitNet>(v).is_err());

    let mut v: serde_json::Value = serde_json::to_value(&m).unwrap();
    v["params"]["learning_rate"] = serde_json::json!(-1.0);
    assert!(serde_json::from_value::<KitNet>(v).is_err());

    // A model still in phase 1 whose statistics are for another width.
    let mut early = KitNet::new(N, params(Mode::Product)).unwrap();
    early.train(&stream(16, 1)[0]).unwrap();
    let mut v: serde_json::Value = serde_json::to_value(&early).unwrap();
    v["n_features"] = serde_json::json!(N + 1);
    assert!(serde_json::from_value::<KitNet>(v).is_err());
}

#[test]
fn a_scratch_from_another_model_still_works() {
    let m = trained(Mode::Product);
    let mut small = Scratch::default();
    let x = stream(14, 1).remove(0);
    assert_eq!(
        m.execute_with(&x, &mut small).unwrap(),
        m.execute(&x).unwrap()
    );
}

#[test]
fn explanation_shares_sum_to_one() {
    let m = trained(Mode::Product);
    let mut x = stream(15, 1).remove(0);
    x[3] = 100.0;
    let e = m.explain(&x).unwrap();
    assert_eq!(e.score, m.execute(&x).unwrap());
    assert_eq!(e.contributions.len(), N);
    assert!((e.contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!((e.autoencoder_shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(e.contributions.iter().all(|c| (0.0..=1.0).contains(c)));
}

#[test]
fn a_given_feature_map_is_used_and_checked() {
    let mut m = KitNet::new(3, params(Mode::Product)).unwrap();
    assert!(m.set_feature_map(vec![vec![0, 5]]).is_err());
    assert!(m.set_feature_map(vec![vec![]]).is_err());
    m.set_feature_map(vec![vec![2, 0], vec![1]]).unwrap();
    m.train(&[1.0, 2.0, 3.0]).unwrap();
    m.train(&[2.0, 1.0, 0.0]).unwrap();
    assert_eq!(m.feature_map().unwrap(), &[vec![2, 0], vec![1]]);
    assert!(m.execute(&[1.5, 1.5, 1.5]).unwrap().is_finite());
    assert!(matches!(
        m.observe(&[0.0; 3]),
        Err(KitNetError::FeatureMapAlreadyBuilt)
    ));
}

/// Finite numbers of any magnitude, with plenty of repeats and zeros.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(1.0),
        -1e3..1e3f64,
        -1e300..1e300f64,
        any::<f64>().prop_filter("finite", |v| v.is_finite()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn product_scores_are_always_finite(
        train in prop::collection::vec(prop::collection::vec(value(), 5), 2..40),
        probe in prop::collection::vec(prop::collection::vec(value(), 5), 1..10),
        lr in 0.001..10.0f64,
    ) {
        let p = KitNetParams {
            max_autoencoder_size: 2,
            fm_grace: 5,
            ad_grace: 10,
            learning_rate: lr,
            hidden_ratio: 0.75,
            mode: Mode::Product,
            seed: 1,
            epochs: 2,
        };
        let mut m = KitNet::new(5, p).unwrap();
        m.fit(|| train.iter()).unwrap();
        let mut scratch = m.scratch();
        for x in probe.iter().chain(train.iter()) {
            let s = m.execute_with(x, &mut scratch).unwrap();
            prop_assert!(s.is_finite() && (0.0..=PRODUCT_SCORE_BOUND).contains(&s), "score {}", s);
            let e = m.explain(x).unwrap();
            prop_assert!(e.contributions.iter().all(|c| c.is_finite()));
        }
    }
}

/// `execute_with` runs the ensemble layer by layer, `explain` one
/// autoencoder at a time: the scores must be the same bits.
#[test]
fn layered_execution_matches_one_autoencoder_at_a_time() {
    for mode in [Mode::Product, Mode::Reference] {
        let m = trained(mode);
        let mut scratch = m.scratch();
        for x in stream(21, 50) {
            let fast = m.execute_with(&x, &mut scratch).unwrap();
            assert_eq!(fast.to_bits(), m.explain(&x).unwrap().score.to_bits());
        }
    }
}

/// Scores of `rows` by [`KitNet::execute_block`] and by the portable block
/// pass (no AVX2), next to those of `execute_with`: all must be the same
/// bits.
fn assert_block_matches(m: &KitNet, rows: &[Vec<f64>]) {
    let xs: Vec<f64> = rows.concat();
    let mut scratch = m.scratch();
    let want: Vec<u64> = rows
        .iter()
        .map(|x| m.execute_with(x, &mut scratch).unwrap().to_bits())
        .collect();
    let mut block = m.block_scratch();
    let mut got = vec![f64::NAN; rows.len()];
    m.execute_block(&xs, &mut got, &mut block).unwrap();
    let got: Vec<u64> = got.iter().map(|s| s.to_bits()).collect();
    assert_eq!(got, want, "execute_block");
    let (map, output) = (m.feature_map().unwrap(), m.output.as_ref().unwrap());
    let mut portable = vec![f64::NAN; rows.len()];
    let mut fresh = BlockScratch::default();
    fresh.fit(m.block_scratch_sizes());
    match m.mode() {
        Mode::Product => m.execute_blocks::<true>(&xs, &mut portable, map, output, &mut fresh),
        Mode::Reference => m.execute_blocks::<false>(&xs, &mut portable, map, output, &mut fresh),
    }
    let portable: Vec<u64> = portable.iter().map(|s| s.to_bits()).collect();
    assert_eq!(portable, want, "portable block pass");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        let mut avx2 = vec![f64::NAN; rows.len()];
        let product = m.mode() == Mode::Product;
        // SAFETY: the processor has AVX2.
        unsafe { m.execute_blocks_avx2(&xs, &mut avx2, map, output, &mut fresh, product) };
        let avx2: Vec<u64> = avx2.iter().map(|s| s.to_bits()).collect();
        assert_eq!(avx2, want, "AVX2 block pass");
    }
}

#[test]
fn block_matches_per_record() {
    for mode in [Mode::Product, Mode::Reference] {
        let m = trained(mode);
        // 203 records: full blocks and a partial one; then far outside the
        // training range, and a block of one.
        let mut rows = stream(31, 203);
        rows.push(vec![
            1e300, -1e300, 0.0, 5e-324, 1e9, -7.0, 1.0, 1.0, 1.0, 1.0, -5.0,
        ]);
        assert_block_matches(&m, &rows);
        assert_block_matches(&m, &rows[..1]);
        assert_block_matches(&m, &[]);
    }
}

/// `explain_block` gives each record what `explain` gives it, bit for bit:
/// full blocks, a partial one, a record far outside the training range.
#[test]
fn explain_block_matches_explain() {
    for mode in [Mode::Product, Mode::Reference] {
        let m = trained(mode);
        let mut rows = stream(37, 19);
        rows.push(vec![
            1e300, -1e300, 0.0, 5e-324, 1e9, -7.0, 1.0, 1.0, 1.0, 1.0, -5.0,
        ]);
        let mut scratch = m.block_scratch();
        let got = m.explain_block(&rows.concat(), &mut scratch).unwrap();
        assert_eq!(got.len(), rows.len());
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for (row, g) in rows.iter().zip(&got) {
            let want = m.explain(row).unwrap();
            assert_eq!(g.score.to_bits(), want.score.to_bits(), "{mode:?}");
            assert_eq!(
                bits(&g.contributions),
                bits(&want.contributions),
                "{mode:?}"
            );
            assert_eq!(
                bits(&g.autoencoder_shares),
                bits(&want.autoencoder_shares),
                "{mode:?}"
            );
        }
        assert!(m.explain_block(&[], &mut scratch).unwrap().is_empty());
        assert!(matches!(
            m.explain_block(&rows.concat()[1..], &mut scratch),
            Err(KitNetError::LengthMismatch { .. })
        ));
    }
}

#[test]
fn block_refuses_what_execute_with_refuses() {
    let m = trained(Mode::Product);
    let mut block = m.block_scratch();
    let mut rows = stream(5, 9);
    let mut scores = vec![0.0; 9];
    let short = rows.concat();
    assert!(matches!(
        m.execute_block(&short[1..], &mut scores, &mut block),
        Err(KitNetError::LengthMismatch { .. })
    ));
    rows[7][3] = f64::INFINITY;
    let want = m.execute(&rows[7]).unwrap_err();
    assert_eq!(
        m.execute_block(&rows.concat(), &mut scores, &mut block),
        Err(want)
    );
    let untrained = KitNet::new(N, params(Mode::Product)).unwrap();
    assert!(matches!(
        untrained.execute_block(&[], &mut [], &mut BlockScratch::default()),
        Err(KitNetError::NotTrained(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Random models (autoencoders of up to 9 inputs and 7 hidden units, so
    /// every branch of the four-row and four-accumulator loops runs) and
    /// random blocks, in both modes: the block pass gives the bits of the
    /// one-record pass.
    #[test]
    fn block_scores_are_bit_identical(
        train in prop::collection::vec(prop::collection::vec(value(), 9), 3..30),
        probe in prop::collection::vec(prop::collection::vec(value(), 9), 0..30),
        max_ae in 1usize..10,
        ratio in 0.2..0.8f64,
        reference in any::<bool>(),
    ) {
        let p = KitNetParams {
            max_autoencoder_size: max_ae,
            fm_grace: 2,
            ad_grace: 10,
            learning_rate: 0.1,
            hidden_ratio: ratio,
            mode: if reference { Mode::Reference } else { Mode::Product },
            seed: 7,
            epochs: 1,
        };
        let mut m = KitNet::new(9, p).unwrap();
        if m.fit(|| train.iter()).is_ok() {
            let rows: Vec<Vec<f64>> = probe.iter().chain(train.iter()).cloned().collect();
            assert_block_matches(&m, &rows);
        }
    }
}

/// `fit` trains on a thread of its own while the records are produced:
/// the model is the same bits as one trained record by record (every
/// weight, both modes, a history of several blocks and a partial one).
#[test]
fn fit_trains_the_same_bits_as_record_by_record() {
    for mode in [Mode::Product, Mode::Reference] {
        let rows = stream(12, 3 * TRAIN_BLOCK + 77);
        let mut a = KitNet::new(N, params(mode)).unwrap();
        a.fit(|| rows.iter()).unwrap();
        let mut b = KitNet::new(N, params(mode)).unwrap();
        b.learn_feature_map(&rows[..201]).unwrap();
        for epoch in 0..3 {
            if epoch > 0 {
                b.start_epoch();
            }
            for x in &rows {
                b.train(x).unwrap();
            }
        }
        b.finish_training().unwrap();
        let (a, b) = (
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap(),
        );
        assert!(a == b, "{mode:?}: the models differ");
    }
}

/// A record `fit` cannot learn, deep in a pass, is its error, whether the
/// reading side (wrong length) or the training side (not finite) finds it.
#[test]
fn fit_reports_a_bad_record_in_the_middle_of_a_pass() {
    let mut rows = stream(13, 2 * TRAIN_BLOCK + 10);
    rows[TRAIN_BLOCK + 3][2] = f64::NAN;
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    assert!(matches!(
        m.fit(|| rows.iter()),
        Err(KitNetError::NonFiniteInput { index: 2, .. })
    ));
    rows[TRAIN_BLOCK + 3][2] = 0.0;
    rows[TRAIN_BLOCK + 5].pop();
    let mut m = KitNet::new(N, params(Mode::Product)).unwrap();
    assert!(matches!(
        m.fit(|| rows.iter()),
        Err(KitNetError::LengthMismatch { got, .. }) if got == N - 1
    ));
}
