//! KitNET against the reference vectors in `tests/data/kitnet/` (made by
//! running KitNET-py itself; see the README there), and product mode on the
//! same streams.

use autozeekwatch::kitnet::{initial_weights, KitNet, KitNetParams, Mode, PRODUCT_SCORE_BOUND};

/// A minimal JSON reader whose numbers go through `str::parse::<f64>`, which
/// rounds correctly. serde_json (without its `float_roundtrip` feature) can
/// be one ulp off, and the initial weights are compared bit for bit.
mod json {
    #[derive(Debug)]
    pub enum J {
        Num(f64),
        Arr(Vec<J>),
        Obj(Vec<(String, J)>),
        Other,
    }

    impl J {
        pub fn get(&self, key: &str) -> &J {
            match self {
                J::Obj(kv) => {
                    &kv.iter()
                        .find(|(k, _)| k == key)
                        .unwrap_or_else(|| panic!("no key {key}"))
                        .1
                }
                _ => panic!("not an object"),
            }
        }
        pub fn f64(&self) -> f64 {
            match self {
                J::Num(v) => *v,
                other => panic!("not a number: {other:?}"),
            }
        }
        pub fn usize(&self) -> usize {
            let v = self.f64();
            assert!(v >= 0.0 && v.fract() == 0.0);
            v as usize
        }
        pub fn arr(&self) -> &[J] {
            match self {
                J::Arr(v) => v,
                other => panic!("not an array: {other:?}"),
            }
        }
        pub fn vec_f64(&self) -> Vec<f64> {
            self.arr().iter().map(J::f64).collect()
        }
        pub fn vec_usize(&self) -> Vec<usize> {
            self.arr().iter().map(J::usize).collect()
        }
    }

    pub fn parse(text: &str) -> J {
        let b = text.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i);
        skip(b, &mut i);
        assert_eq!(i, b.len(), "trailing characters");
        v
    }

    fn skip(b: &[u8], i: &mut usize) {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    }

    fn string(b: &[u8], i: &mut usize) -> String {
        assert_eq!(b[*i], b'"');
        *i += 1;
        let start = *i;
        while b[*i] != b'"' {
            assert_ne!(b[*i], b'\\', "escapes are not needed by the fixtures");
            *i += 1;
        }
        *i += 1;
        String::from_utf8(b[start..*i - 1].to_vec()).unwrap()
    }

    fn value(b: &[u8], i: &mut usize) -> J {
        skip(b, i);
        match b[*i] {
            b'{' => {
                *i += 1;
                let mut kv = Vec::new();
                loop {
                    skip(b, i);
                    if b[*i] == b'}' {
                        *i += 1;
                        return J::Obj(kv);
                    }
                    let k = string(b, i);
                    skip(b, i);
                    assert_eq!(b[*i], b':');
                    *i += 1;
                    kv.push((k, value(b, i)));
                    skip(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            b'[' => {
                *i += 1;
                let mut v = Vec::new();
                loop {
                    skip(b, i);
                    if b[*i] == b']' {
                        *i += 1;
                        return J::Arr(v);
                    }
                    v.push(value(b, i));
                    skip(b, i);
                    if b[*i] == b',' {
                        *i += 1;
                    }
                }
            }
            b'"' => {
                string(b, i);
                J::Other
            }
            b't' | b'f' | b'n' => {
                while *i < b.len() && b[*i].is_ascii_alphabetic() {
                    *i += 1;
                }
                J::Other
            }
            _ => {
                let start = *i;
                while *i < b.len()
                    && matches!(b[*i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                {
                    *i += 1;
                }
                let s = std::str::from_utf8(&b[start..*i]).unwrap();
                J::Num(s.parse().unwrap_or_else(|e| panic!("bad number {s}: {e}")))
            }
        }
    }
}

use json::J;

struct Params {
    n: usize,
    max_autoencoder_size: usize,
    fm_grace: u64,
    ad_grace: u64,
    learning_rate: f64,
    hidden_ratio: f64,
}

struct Fixture {
    params: Params,
    rows: Vec<Vec<f64>>,
    n_train: usize,
    feature_map: Vec<Vec<usize>>,
    execute_scores: Vec<f64>,
    anomalous_test_rows: usize,
}

fn data_path(name: &str) -> String {
    format!("{}/tests/data/kitnet/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Fixture {
    let text = std::fs::read_to_string(data_path(&format!("{name}.json")))
        .unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"));
    let j = json::parse(&text);
    let p = j.get("params");
    let f = Fixture {
        params: Params {
            n: p.get("n").usize(),
            max_autoencoder_size: p.get("max_autoencoder_size").usize(),
            fm_grace: p.get("fm_grace").usize() as u64,
            ad_grace: p.get("ad_grace").usize() as u64,
            learning_rate: p.get("learning_rate").f64(),
            hidden_ratio: p.get("hidden_ratio").f64(),
        },
        rows: j.get("rows").arr().iter().map(J::vec_f64).collect(),
        n_train: j.get("n_train").usize(),
        feature_map: j
            .get("feature_map")
            .arr()
            .iter()
            .map(J::vec_usize)
            .collect(),
        execute_scores: j.get("execute_scores").vec_f64(),
        anomalous_test_rows: j.get("anomalous_test_rows").usize(),
    };
    assert_eq!(f.rows.len(), f.n_train + f.execute_scores.len());
    assert!(f.rows.iter().all(|r| r.len() == f.params.n));
    f
}

fn reference_params(p: &Params) -> KitNetParams {
    KitNetParams::reference(
        p.max_autoencoder_size,
        p.fm_grace,
        p.ad_grace,
        p.learning_rate,
        p.hidden_ratio,
    )
}

/// Feed the training rows through `process`, as the reference run did, and
/// score the rest with `execute`.
fn reference_run(f: &Fixture) -> (KitNet, Vec<f64>) {
    let mut model = KitNet::new(f.params.n, reference_params(&f.params)).unwrap();
    for x in &f.rows[..f.n_train] {
        model.process(x).unwrap();
    }
    let mut scratch = model.scratch();
    let scores = f.rows[f.n_train..]
        .iter()
        .map(|x| model.execute_with(x, &mut scratch).unwrap())
        .collect();
    (model, scores)
}

fn check_reference(name: &str) {
    let f = load(name);
    let (model, scores) = reference_run(&f);
    assert_eq!(
        model.feature_map().unwrap(),
        &f.feature_map[..],
        "{name}: feature map"
    );
    let mut worst = 0.0f64;
    for (i, (got, want)) in scores.iter().zip(&f.execute_scores).enumerate() {
        let rel = (got - want).abs() / want.abs();
        assert!(
            rel <= 1e-9,
            "{name}: test row {i}: score {got} vs reference {want} (relative {rel:e})"
        );
        worst = worst.max(rel);
    }
    println!(
        "{name}: {} scores, worst relative difference {worst:e}",
        scores.len()
    );
}

#[test]
fn reference_small() {
    check_reference("small");
}

#[test]
fn reference_seed_defaults_scaled() {
    check_reference("seed_defaults_scaled");
}

#[test]
fn reference_ensemble_of_singletons() {
    check_reference("ensemble_of_singletons");
}

#[test]
fn reference_constant_column() {
    check_reference("constant_column");
}

#[test]
fn reference_onehot_ties() {
    check_reference("onehot_ties");
}

#[test]
fn reference_initial_weights() {
    let text = std::fs::read_to_string(data_path("initial_weights.json")).unwrap();
    let j = json::parse(&text);
    let n_visible = j.get("n_visible").usize();
    let (n_hidden, w) = initial_weights(n_visible, j.get("hidden_ratio").f64(), 1234);
    assert_eq!(n_hidden, j.get("n_hidden").usize());
    let rows = j.get("W").arr();
    assert_eq!(rows.len(), n_visible);
    let want_flat: Vec<f64> = rows.iter().flat_map(J::vec_f64).collect();
    assert_eq!(w, want_flat, "bit-exact initial weights");
}

/// ROC-AUC: the probability that an anomalous row outscores a normal one
/// (ties count half).
fn roc_auc(normal: &[f64], anomalous: &[f64]) -> f64 {
    let mut wins = 0.0;
    for a in anomalous {
        for n in normal {
            wins += if a > n {
                1.0
            } else if a == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (normal.len() * anomalous.len()) as f64
}

fn auc_of(f: &Fixture, scores: &[f64]) -> f64 {
    let split = scores.len() - f.anomalous_test_rows;
    roc_auc(&scores[..split], &scores[split..])
}

/// Product mode trained with `fit` (3 epochs over the training rows).
fn product_fit(f: &Fixture) -> (KitNet, Vec<f64>) {
    let params = KitNetParams {
        mode: Mode::Product,
        epochs: 3,
        ..reference_params(&f.params)
    };
    let mut model = KitNet::new(f.params.n, params).unwrap();
    let train = &f.rows[..f.n_train];
    model.fit(|| train.iter()).unwrap();
    let mut scratch = model.scratch();
    let scores = f.rows[f.n_train..]
        .iter()
        .map(|x| model.execute_with(x, &mut scratch).unwrap())
        .collect();
    (model, scores)
}

/// Product mode fed exactly like the reference (`process` with the same
/// grace periods).
fn product_process(f: &Fixture) -> Vec<f64> {
    let params = KitNetParams {
        mode: Mode::Product,
        ..reference_params(&f.params)
    };
    let mut model = KitNet::new(f.params.n, params).unwrap();
    for x in &f.rows[..f.n_train] {
        model.process(x).unwrap();
    }
    f.rows[f.n_train..]
        .iter()
        .map(|x| model.execute(x).unwrap())
        .collect()
}

const CASES: [&str; 5] = [
    "small",
    "seed_defaults_scaled",
    "ensemble_of_singletons",
    "constant_column",
    "onehot_ties",
];

/// The figures recorded in the module documentation come from this test's
/// output (`cargo test --test kitnet_reference -- --nocapture roc`).
#[test]
fn product_mode_roc_auc_per_fixture() {
    println!(
        "{:<24} {:>10} {:>16} {:>14} {:>12}",
        "fixture", "reference", "product/process", "product/fit", "max score"
    );
    for name in CASES {
        let f = load(name);
        let reference = auc_of(&f, &f.execute_scores);
        let (_, fit_scores) = product_fit(&f);
        let fit = auc_of(&f, &fit_scores);
        let process = auc_of(&f, &product_process(&f));
        let max = fit_scores.iter().copied().fold(0.0, f64::max);
        println!("{name:<24} {reference:>10.4} {process:>16.4} {fit:>14.4} {max:>12.4}");
        assert!(fit_scores
            .iter()
            .all(|s| s.is_finite() && *s <= PRODUCT_SCORE_BOUND));
        assert!(fit >= 0.9, "{name}: product-mode ROC-AUC {fit} is too low");
    }
}

/// Constant in training, moving in the anomalies: the reference reaches
/// ~5e16; product mode stays bounded and still ranks the anomalies first.
#[test]
fn product_mode_constant_column_is_bounded_and_separates() {
    let f = load("constant_column");
    let split = f.execute_scores.len() - f.anomalous_test_rows;
    assert!(f.execute_scores[split..].iter().any(|&s| s > 1e16));
    let (model, scores) = product_fit(&f);
    let normal_max = scores[..split].iter().copied().fold(0.0, f64::max);
    let anomalous_min = scores[split..]
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min);
    assert!(scores.iter().all(|&s| s <= PRODUCT_SCORE_BOUND));
    assert!(
        anomalous_min > normal_max,
        "{anomalous_min} vs {normal_max}"
    );
    // The moving constant (feature 0) is named by the explanation.
    let e = model.explain(&f.rows[f.rows.len() - 1]).unwrap();
    assert_eq!(e.top(1)[0].0, 0, "{:?}", e.top(3));
}

/// One-hot columns never set in training take values in the anomalies.
#[test]
fn product_mode_onehot_unseen_columns_are_bounded_and_separate() {
    let f = load("onehot_ties");
    let split = f.execute_scores.len() - f.anomalous_test_rows;
    assert!(f.execute_scores[split..].iter().any(|&s| s > 1e15));
    let (_, scores) = product_fit(&f);
    assert!(scores.iter().all(|&s| s <= PRODUCT_SCORE_BOUND));
    assert!(auc_of(&f, &scores) > 0.99);
}

/// Counts heap allocations made by the current thread, so the hot path can be
/// checked to allocate nothing while other tests run in parallel.
mod alloc_count {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static COUNT: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    pub fn allocations() -> u64 {
        COUNT.with(|c| c.get())
    }
}

#[global_allocator]
static ALLOCATOR: alloc_count::Counting = alloc_count::Counting;

/// Scoring, training and `process` do not touch the heap once warm.
#[test]
fn hot_path_does_not_allocate() {
    let f = load("seed_defaults_scaled");
    for mode in [Mode::Reference, Mode::Product] {
        let params = KitNetParams {
            mode,
            ..reference_params(&f.params)
        };
        let mut model = KitNet::new(f.params.n, params).unwrap();
        for x in &f.rows[..f.n_train] {
            model.process(x).unwrap();
        }
        let test = &f.rows[f.n_train..];
        let mut scratch = model.scratch();
        let mut learner = model.clone();
        // Warm-up: the first call of each sizes its buffers.
        model.execute_with(&test[0], &mut scratch).unwrap();
        model.process(&test[0]).unwrap();
        learner.train(&test[0]).unwrap();

        let before = alloc_count::allocations();
        let mut total = 0.0;
        for x in test {
            total += model.execute_with(x, &mut scratch).unwrap();
            total += model.process(x).unwrap().unwrap_or(0.0);
            learner.train(x).unwrap();
        }
        let allocated = alloc_count::allocations() - before;
        assert!(total.is_finite());
        assert_eq!(
            allocated, 0,
            "{mode:?}: {allocated} allocations in the hot path"
        );
        // The counter does count: the convenience `execute` makes a scratch.
        let before = alloc_count::allocations();
        model.execute(&test[0]).unwrap();
        assert!(alloc_count::allocations() > before);
    }
}
