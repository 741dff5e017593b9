//! Per-record cost of KitNET: `execute` (scoring, `&self`, caller scratch) and
//! `train` (one SGD step of the ensemble and output layer, i.e. the phase
//! after the feature map), on the reference fixtures `small` (8 features) and
//! `seed_defaults_scaled` (34 features, AutoZeekWatch's m=30, lr=0.001,
//! hr=0.5), and on a synthetic 100-feature stream; plus the feature mapper's
//! per-record update. Criterion's "time" is the time of one record.
//!
//! The reference KitNET-py needs 122 us / 284 us (execute / train) per record
//! on `small` and 64 us / 178 us on `seed_defaults_scaled`.
//!
//! Run: `cargo bench --bench kitnet` (add `-- execute` etc. to filter).

use std::hint::black_box;
use std::time::Duration;

use autozeekwatch::kitnet::{KitNet, KitNetParams, Mode};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Case {
    name: &'static str,
    n: usize,
    params: KitNetParams,
    train: Vec<Vec<f64>>,
    test: Vec<Vec<f64>>,
}

fn fixture(name: &'static str) -> Case {
    let path = format!(
        "{}/tests/data/kitnet/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = &v["params"];
    let params = KitNetParams::reference(
        p["max_autoencoder_size"].as_u64().unwrap() as usize,
        p["fm_grace"].as_u64().unwrap(),
        p["ad_grace"].as_u64().unwrap(),
        p["learning_rate"].as_f64().unwrap(),
        p["hidden_ratio"].as_f64().unwrap(),
    );
    let rows: Vec<Vec<f64>> = serde_json::from_value(v["rows"].clone()).unwrap();
    let n_train = v["n_train"].as_u64().unwrap() as usize;
    Case {
        name,
        n: p["n"].as_u64().unwrap() as usize,
        params,
        train: rows[..n_train].to_vec(),
        test: rows[n_train..].to_vec(),
    }
}

/// 100 features driven by 10 latent factors plus noise (a small LCG keeps it
/// deterministic without a dependency).
fn synthetic_100() -> Case {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut uniform = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut rows = Vec::with_capacity(3500);
    for _ in 0..3500 {
        let latent: Vec<f64> = (0..10).map(|_| uniform() * 2.0 - 1.0).collect();
        let row = (0..100)
            .map(|i| latent[i % 10] * (1.0 + (i / 10) as f64) + 0.1 * uniform())
            .collect();
        rows.push(row);
    }
    let params = KitNetParams::reference(30, 500, 2000, 0.001, 0.5);
    let test = rows.split_off(3000);
    Case {
        name: "synthetic_100",
        n: 100,
        params,
        train: rows,
        test,
    }
}

fn trained(case: &Case, mode: Mode) -> KitNet {
    let params = KitNetParams {
        mode,
        ..case.params.clone()
    };
    let mut model = KitNet::new(case.n, params).unwrap();
    match mode {
        // As the reference is used: process() through the grace periods.
        Mode::Reference => {
            for x in &case.train {
                model.process(x).unwrap();
            }
        }
        Mode::Product => {
            model.fit(|| case.train.iter()).unwrap();
        }
    }
    model
}

fn bench(c: &mut Criterion) {
    let cases = [
        fixture("small"),
        fixture("seed_defaults_scaled"),
        synthetic_100(),
    ];
    for case in &cases {
        let mut group = c.benchmark_group(format!("kitnet/{}", case.name));
        group.throughput(Throughput::Elements(1));
        for mode in [Mode::Product, Mode::Reference] {
            let label = match mode {
                Mode::Product => "product",
                Mode::Reference => "reference",
            };
            let model = trained(case, mode);
            let mut scratch = model.scratch();
            let mut i = 0;
            group.bench_function(format!("execute/{label}"), |b| {
                b.iter(|| {
                    let x = &case.test[i % case.test.len()];
                    i += 1;
                    model.execute_with(black_box(x), &mut scratch).unwrap()
                })
            });
            // The block pass: 64 records per call, figures per record.
            let block: Vec<f64> = case
                .test
                .iter()
                .cycle()
                .take(64)
                .flatten()
                .copied()
                .collect();
            let mut scores = vec![0.0; 64];
            let mut block_scratch = model.block_scratch();
            group.throughput(Throughput::Elements(64));
            group.bench_function(format!("execute_block64/{label}"), |b| {
                b.iter(|| {
                    model
                        .execute_block(black_box(&block), &mut scores, &mut block_scratch)
                        .unwrap()
                })
            });
            group.throughput(Throughput::Elements(1));
            let mut learner = model.clone();
            let mut i = 0;
            group.bench_function(format!("train/{label}"), |b| {
                b.iter(|| {
                    let x = &case.train[i % case.train.len()];
                    i += 1;
                    learner.train(black_box(x)).unwrap()
                })
            });
        }
        // Phase 1: one record into the correlation statistics (O(n^2)).
        let mut mapper = KitNet::new(case.n, KitNetParams::default()).unwrap();
        let mut i = 0;
        group.bench_function("observe", |b| {
            b.iter(|| {
                let x = &case.train[i % case.train.len()];
                i += 1;
                mapper.observe(black_box(x)).unwrap()
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench
}
criterion_main!(benches);
