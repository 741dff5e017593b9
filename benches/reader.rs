//! Reader throughput in records/s: conn logs as TSV and JSON, plain and gzip.
//!
//! The input is the bundled example conn logs (`examples/logs/`), their data
//! lines repeated to 50,000 records and held in memory, so the figure is the
//! parser and decompressor, not the disk. Run: `cargo bench --bench reader`.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use autozeekwatch::zeek::LogReader;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const RECORDS: usize = 50_000;

fn example(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/logs")
        .join(name);
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_end(&mut raw)
        .or_else(|_| {
            std::fs::File::open(&path).and_then(|mut f| {
                raw.clear();
                f.read_to_end(&mut raw)
            })
        })
        .unwrap();
    raw
}

/// The header lines once, then the data lines repeated to `RECORDS`.
fn inflate(log: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = log
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let (header, data): (Vec<&[u8]>, Vec<&[u8]>) = lines
        .iter()
        .partition(|l| l[0] == b'#' && !l.starts_with(b"#close"));
    let data: Vec<&[u8]> = data.into_iter().filter(|l| l[0] != b'#').collect();
    let mut out = Vec::new();
    for h in header {
        out.extend_from_slice(h);
        out.push(b'\n');
    }
    for l in data.iter().cycle().take(RECORDS) {
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn count(bytes: &[u8]) -> usize {
    LogReader::from_reader("bench", Cursor::new(bytes.to_vec()), Some("conn"))
        .unwrap()
        .filter(Result::is_ok)
        .count()
}

fn bench(c: &mut Criterion) {
    let tsv = inflate(&example("conn.log"));
    let json = inflate(&example("conn.json.gz"));
    let cases = [
        ("conn_tsv_plain", tsv.clone()),
        ("conn_tsv_gz", gzip(&tsv)),
        ("conn_json_plain", json.clone()),
        ("conn_json_gz", gzip(&json)),
    ];
    let mut group = c.benchmark_group("reader");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);
    for (name, bytes) in &cases {
        assert_eq!(count(bytes), RECORDS, "{name}: every record reads");
        group.bench_function(*name, |b| b.iter(|| count(bytes)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
