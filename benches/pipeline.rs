//! Training and replay-scoring throughput in records/s, conn TSV and JSON.
//!
//! Input: the bundled example conn logs (`examples/logs/`), their records
//! repeated to 20,000 and written to a temporary folder (TSV as is, JSON as
//! Zeek's JSON writer lays it out), so the figures cover reading, features,
//! KitNET and (for replay) writing the JSON output. Replay runs the shipped
//! code path: `pipeline::replay` with a lane into a file sink, as
//! `azw-infer --replay` does. Run: `cargo bench --bench pipeline`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use autozeekwatch::detect::DetectOptions;
use autozeekwatch::features::LocalNets;
use autozeekwatch::kitnet::KitNetParams;
use autozeekwatch::pipeline::{self, Emitter, Lane, LaneOptions};
use autozeekwatch::score::Scorer;
use autozeekwatch::sink::{FileSink, RecordFormat};
use autozeekwatch::tables::Tables;
use autozeekwatch::train::{self, NoProgress, TrainOptions};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

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
        local_nets_origin: Default::default(),
        threshold_fpr: 0.001,
        holdout_every: 10,
        tables: autozeekwatch::tables::Tables::built_in().clone(),
        max_records: None,
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
        let files = train::find_files(LogKind::CONN, &opts).unwrap();
        group.bench_function(format!("conn_{kind}_1_epoch"), |b| {
            b.iter(|| train::train_module(LogKind::CONN, &files, &opts, &NoProgress).unwrap())
        });
    }
    group.finish();

    // The conn table without its context columns: the ratio of the two
    // is the cost of the context features.
    let plain_tables = tmp.path().join("tables");
    std::fs::create_dir_all(&plain_tables).unwrap();
    let conn_table = include_str!("../tables/conn.toml");
    let without: Vec<&str> = conn_table
        .lines()
        .filter(|l| !l.contains("by = ["))
        .collect();
    std::fs::write(plain_tables.join("conn.toml"), without.join("\n")).unwrap();
    let tables = [
        ("no_context", Tables::with_dir(&plain_tables).unwrap()),
        ("context", Tables::built_in().clone()),
    ];

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (kind, dir) in &dirs {
        for (table_name, table) in &tables {
            let opts = TrainOptions {
                tables: table.clone(),
                ..options(dir)
            };
            let files = train::find_files(LogKind::CONN, &opts).unwrap();
            let model = train::train_module(LogKind::CONN, &files, &opts, &NoProgress).unwrap();
            let encoder = model.check().unwrap();
            let scorer = Scorer::new(model, encoder);
            let out = dir.join("scores.json");
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            // Without and with the detectors (beacon, long connections,
            // scans): the ratio of the two is the cost of watching
            // behaviour. On one scoring thread and on two (reading has one
            // more); a model with context features scores on one whatever
            // is asked.
            for (detect, threads) in [
                (DetectOptions::none(), 1),
                (DetectOptions::default(), 1),
                (DetectOptions::default(), 2),
            ] {
                let name = if detect.any() { "detectors" } else { "plain" };
                group.bench_function(
                    format!("conn_{kind}_{table_name}_{name}_threads{threads}"),
                    |b| {
                        b.iter(|| {
                            let _ = std::fs::remove_file(&out);
                            let mut lanes = [Lane::new(scorer.clone(), &LaneOptions::default())];
                            let mut emitter = Emitter::for_lanes(lanes.iter_mut(), &detect, false);
                            let mut sink = FileSink::open(&out, None, RecordFormat::Json).unwrap();
                            let report = pipeline::replay(
                                &[dir.join("conn.log")],
                                &mut lanes,
                                &mut emitter,
                                &mut sink,
                                &stop,
                                threads,
                            )
                            .unwrap();
                            assert_eq!(report.lanes[0].1.scored, RECORDS as u64);
                            report.files
                        })
                    },
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
