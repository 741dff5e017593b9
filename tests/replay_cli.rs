//! `azw-infer --replay` through the real binary on the example logs: every
//! record scored once, in each output format, and the scored record's
//! fields match the log line they came from.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use autozeekwatch::zeek::LogReader;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("azw-replay-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// CONN and DNS models trained once on the examples.
fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempdir("models");
        let out = Command::new(env!("CARGO_BIN_EXE_azw-train"))
            .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
            .args([
                "--modules",
                "conn,dns",
                "--model-dir",
                dir.to_str().unwrap(),
                "-q",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", root().join("examples/logs").to_str().unwrap()])
        .args(["--model-dir", models().to_str().unwrap(), "-q"])
        .args(args)
        .output()
        .unwrap()
}

/// (module, uid, ts) of every record in the example logs of one module.
fn example_records(module: &str, log: &str) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(root().join("examples/logs")).unwrap() {
        let path = entry.unwrap().path();
        if !path.file_name().unwrap().to_str().unwrap().starts_with(log) {
            continue;
        }
        for r in LogReader::open(&path, Some(log)).unwrap() {
            let r = r.unwrap();
            out.push((
                module.to_owned(),
                r.get("uid").as_str().unwrap().to_owned(),
                r.ts().unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

fn expected() -> Vec<(String, String, f64)> {
    let mut all = example_records("CONN", "conn");
    all.extend(example_records("DNS", "dns"));
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    all
}

#[test]
fn json_replay_scores_every_record_once() {
    let dir = tempdir("json");
    let scores = dir.join("scores.json");
    let out = replay(&[
        "--modules",
        "conn,dns",
        "--output",
        scores.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("top anomalies") || stderr.contains("no anomalies"),
        "{stderr}"
    );
    let mut got = Vec::new();
    let mut anomalies = 0;
    for line in fs::read_to_string(&scores).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let anomaly = v["anomaly"].as_bool().unwrap();
        let (score, threshold) = (
            v["score"].as_f64().unwrap(),
            v["threshold"].as_f64().unwrap(),
        );
        assert_eq!(anomaly, score > threshold, "{line}");
        assert_eq!(anomaly, v.get("top_features").is_some(), "{line}");
        anomalies += usize::from(anomaly);
        for key in ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto"] {
            assert!(v.get(key).is_some(), "{key} missing: {line}");
        }
        got.push((
            v["module"].as_str().unwrap().to_owned(),
            v["uid"].as_str().unwrap().to_owned(),
            v["ts"].as_f64().unwrap(),
        ));
    }
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, expected());

    // --only-anomalies keeps exactly the flagged ones.
    let only = dir.join("only.json");
    let out = replay(&[
        "--modules",
        "conn,dns",
        "--only-anomalies",
        "--output",
        only.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let kept = fs::read_to_string(&only).unwrap();
    assert_eq!(kept.lines().count(), anomalies);
    assert!(kept.lines().all(|l| l.contains("\"anomaly\":true")));
}

#[test]
fn tsv_replay_is_a_zeek_log() {
    let dir = tempdir("tsv");
    let scores = dir.join("scores.log");
    let out = replay(&[
        "--modules",
        "conn,dns",
        "--format",
        "tsv",
        "--output",
        scores.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = LogReader::open(&scores, Some("azw_scores")).unwrap();
    let mut got = Vec::new();
    for r in reader.by_ref() {
        let r = r.unwrap();
        assert!(r.get("score").as_f64().is_some());
        got.push((
            r.get("module").as_str().unwrap().to_owned(),
            r.get("uid").as_str().unwrap().to_owned(),
            r.ts().unwrap(),
        ));
    }
    assert_eq!(reader.stats().malformed, 0);
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, expected());
}

#[test]
fn csv_replay_has_one_row_per_record() {
    let dir = tempdir("csv");
    let scores = dir.join("scores.csv");
    let out = replay(&[
        "--modules",
        "conn",
        "--format",
        "csv",
        "--output",
        scores.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_path(&scores).unwrap();
    let header = reader.headers().unwrap().clone();
    let col: BTreeMap<&str, usize> = header.iter().enumerate().map(|(i, h)| (h, i)).collect();
    let mut got = Vec::new();
    for row in reader.records() {
        let row = row.unwrap();
        let anomaly: bool = row[col["anomaly"]].parse().unwrap();
        assert_eq!(anomaly, !row[col["top_features"]].is_empty());
        got.push((
            row[col["module"]].to_owned(),
            row[col["uid"]].to_owned(),
            row[col["ts"]].parse::<f64>().unwrap(),
        ));
    }
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, example_records("CONN", "conn"));
}

#[test]
fn replay_refuses_a_kafka_output_clearly() {
    let out = replay(&[
        "--modules",
        "conn",
        "--output",
        "kafka://127.0.0.1:9/scores",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--replay writes to a file or standard output"),
        "{stderr}"
    );
}
