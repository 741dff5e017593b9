//! Training and replay-scoring throughput in records/s, conn TSV and JSON.
//!
//! Input: the bundled example conn logs (`examples/logs/`), their records
//! repeated to 20,000 and written to a temporary folder (TSV as is, JSON as
//! Zeek's JSON writer lays it out), so the figures cover reading, features,
//! KitNET and (for replay) writing the JSON output. Run:
//! `cargo bench --bench pipeline`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use autozeekwatch::features::LocalNets;
use autozeekwatch::kitnet::KitNetParams;
use autozeekwatch::score::Scorer;
use autozeekwatch::train::{self, TrainOptions};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::zeek::Records;
use autozeekwatch::Module;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use indicatif::ProgressBar;

const RECORDS: usize = 20_000;

fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/logs")
        .join(name);
    let raw = std::fs::read(&path).unwrap();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        raw
    }
}

/// Header lines once, data lines repeated to `RECORDS`.
fn inflate(log: &[u8]) -> Vec<u8> {
    let mut header = Vec::new();
    let mut data = Vec::new();
    for line in log.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        if line[0] == b'#' {
            if !line.starts_with(b"#close") {
                header.push(line);
            }
        } else {
            data.push(line);
        }
    }
    let mut out = Vec::new();
    for l in header
        .into_iter()
        .chain(data.iter().cycle().take(RECORDS).copied())
    {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn options(dir: &Path) -> TrainOptions {
    TrainOptions {
        log_dir: dir.to_owned(),
        range: DateRange::default(),
        params: KitNetParams {
            learning_rate: 0.1,
            epochs: 1,
            ..KitNetParams::default()
        },
        local_nets: LocalNets::default(),
        threshold_fpr: 0.001,
        holdout_every: 10,
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [("tsv", "conn.log"), ("json", "conn.json.gz")];
    let mut dirs = Vec::new();
    for (kind, name) in cases {
        let dir = tmp.path().join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        write(&dir, "conn.log", &inflate(&example(name)));
        dirs.push((kind, dir));
    }

    let mut group = c.benchmark_group("train");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (kind, dir) in &dirs {
        let opts = options(dir);
        let files = train::find_files(Module::Conn, &opts).unwrap();
        group.bench_function(format!("conn_{kind}_1_epoch"), |b| {
            b.iter(|| {
                train::train_module(Module::Conn, &files, &opts, &ProgressBar::hidden()).unwrap()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (kind, dir) in &dirs {
        let opts = options(dir);
        let files = train::find_files(Module::Conn, &opts).unwrap();
        let model =
            train::train_module(Module::Conn, &files, &opts, &ProgressBar::hidden()).unwrap();
        let encoder = model.check().unwrap();
        let scorer = Scorer::new(model, encoder);
        let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
        group.bench_function(format!("conn_{kind}"), |b| {
            b.iter(|| {
                let mut scorer = scorer.clone();
                let mut out = Vec::with_capacity(RECORDS * 300);
                let mut n = 0;
                for r in Records::new(paths.clone(), Some("conn"), true) {
                    let s = scorer.score(&r).unwrap();
                    serde_json::to_writer(&mut out, &s).unwrap();
                    out.push(b'\n');
                    n += 1;
                }
                assert_eq!(n, RECORDS);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
