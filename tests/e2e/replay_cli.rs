//! `azw-infer --replay` through the real binary on the example logs: every
//! record scored once, in each output format, and the scored record's
//! fields match the log line they came from.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use autozeekwatch::zeek::LogReader;

use crate::util::{root, tempdir};

/// Runs `azw-infer --replay` on the example logs; returns its standard
/// error, and whether it succeeded.
fn replay(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", root().join("examples/logs").to_str().unwrap()])
        .args(["--model-dir", crate::util::models().to_str().unwrap(), "-q"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replays `modules` into `path` in `format`; it must succeed.
fn replay_into(modules: &str, format: &str, path: &Path, extra: &[&str]) -> String {
    let (ok, stderr) = replay(
        &[
            &[
                "--modules",
                modules,
                "--format",
                format,
                "--output",
                path.to_str().unwrap(),
            ][..],
            extra,
        ]
        .concat(),
    );
    assert!(ok, "{stderr}");
    stderr
}

/// Sorts (module, uid, ts) triples.
fn sorted(mut v: Vec<(String, String, f64)>) -> Vec<(String, String, f64)> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
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
    sorted(out)
}

fn conn_and_dns() -> Vec<(String, String, f64)> {
    sorted(
        [
            example_records("CONN", "conn"),
            example_records("DNS", "dns"),
        ]
        .concat(),
    )
}

#[test]
fn json_replay_scores_every_record_once() {
    let dir = tempdir("json");
    let scores = dir.join("scores.json");
    let stderr = replay_into("conn,dns", "json", &scores, &[]);
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
    assert_eq!(sorted(got), conn_and_dns());

    // --only-anomalies keeps exactly the flagged ones.
    let only = dir.join("only.json");
    replay_into("conn,dns", "json", &only, &["--only-anomalies"]);
    let kept = fs::read_to_string(&only).unwrap();
    assert_eq!(kept.lines().count(), anomalies);
    assert!(kept.lines().all(|l| l.contains("\"anomaly\":true")));
}

#[test]
fn tsv_replay_is_a_zeek_log() {
    let dir = tempdir("tsv");
    let scores = dir.join("scores.log");
    replay_into("conn,dns", "tsv", &scores, &[]);
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
    assert_eq!(sorted(got), conn_and_dns());
}

#[test]
fn csv_replay_has_one_row_per_record() {
    let dir = tempdir("csv");
    let scores = dir.join("scores.csv");
    replay_into("conn", "csv", &scores, &[]);
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
    assert_eq!(sorted(got), example_records("CONN", "conn"));
}

#[test]
fn replay_refuses_a_kafka_output_clearly() {
    let (ok, stderr) = replay(&[
        "--modules",
        "conn",
        "--output",
        "kafka://127.0.0.1:9/scores",
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("--replay writes to a file or standard output"),
        "{stderr}"
    );
}

/// A file named directly that holds none of the log types asked for (a
/// dns log under `--modules conn`, a file that says no log type) is said
/// so with its name, not read as nothing in silence; the conn log beside
/// it is scored.
#[test]
fn a_file_of_another_log_type_is_named_not_passed_over() {
    let dir = tempdir("replay-unclaimed");
    let nameless = dir.join("nul0.log");
    fs::write(&nameless, "#separator \\x09\n#fields\tts\tuid\n1.0\tC1\n").unwrap();
    let out = dir.join("scores.json");
    let logs = root().join("examples/logs");
    let run = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .arg("--replay")
        .args([
            logs.join("dns.log.gz"),
            nameless.clone(),
            logs.join("conn.log"),
        ])
        .args(["--model-dir", crate::util::models().to_str().unwrap()])
        .args(["--modules", "conn", "-q", "--output", out.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("dns.log.gz: holds a dns log, none of the log types asked for; skipped"),
        "{stderr}"
    );
    assert!(stderr.contains("nul0.log: holds a nul0 log"), "{stderr}");
    assert!(!stderr.contains("conn.log: holds"), "{stderr}");
    assert!(!fs::read_to_string(&out).unwrap().is_empty());
}

/// Detections in every format: in JSON a line with a `detection` key, in
/// TSV (a Zeek log our own reader reads) and CSV a row of the same columns
/// with the detector's name first in `top_features`; `--detectors none`
/// writes none.
#[test]
fn detections_are_written_in_every_format() {
    let dir = tempdir("detect-formats");
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let log = dir.join("conn.log");
    fs::write(&log, header.join("\n") + "\n" + &data.join("\n") + "\n").unwrap();
    let run = |format: &str, out: &str, extra: &[&str]| {
        let out = dir.join(out);
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", log.to_str().unwrap(), "--scan-external", "-q"])
                .args(["--model-dir", crate::util::models().to_str().unwrap()])
                .args(["--modules", "conn", "--format", format, "--output"])
                .arg(&out)
                .args(extra),
        );
        out
    };
    let kinds = ["beacon", "long_connection", "port_scan"];

    let json = fs::read_to_string(run("json", "d.json", &[])).unwrap();
    let mut found: Vec<String> = Vec::new();
    for line in json.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(k) = v["detection"].as_str() {
            found.push(k.to_owned());
            assert!(v["score"].as_f64().unwrap() >= v["threshold"].as_f64().unwrap());
            assert!(!v["uids"].as_array().unwrap().is_empty(), "{line}");
        }
    }
    for k in kinds {
        assert!(found.iter().any(|f| f == k), "{k} missing: {found:?}");
    }

    let tsv = run("tsv", "d.log", &[]);
    let mut reader = LogReader::open(&tsv, Some("azw_scores")).unwrap();
    let mut tsv_found = Vec::new();
    let mut records = 0;
    for r in reader.by_ref() {
        let r = r.unwrap();
        let first = r
            .get("top_features")
            .as_list()
            .and_then(|l| l.first())
            .and_then(|v| v.as_str().map(str::to_owned));
        match r.get("detection").as_str() {
            Some(kind) => {
                assert_eq!(first, Some(format!("detection={kind}")));
                tsv_found.push(kind.to_owned());
            }
            None => records += 1,
        }
    }
    assert_eq!(reader.stats().malformed, 0);
    assert_eq!(records, data.len());
    assert_eq!(tsv_found, found);

    let csv_out = run("csv", "d.csv", &[]);
    let mut reader = csv::Reader::from_path(&csv_out).unwrap();
    let col = reader
        .headers()
        .unwrap()
        .iter()
        .position(|h| h == "top_features")
        .unwrap();
    let csv_found: Vec<String> = reader
        .records()
        .filter_map(|row| {
            let cell = row.unwrap()[col].to_owned();
            let v: serde_json::Value = serde_json::from_str(&cell).ok()?;
            (v[0]["feature"] == "detection").then(|| v[0]["observed"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(csv_found, found);

    // Only the kinds asked for, though one detector finds two.
    let only = fs::read_to_string(run("json", "only.json", &["--detectors", "port_scan"])).unwrap();
    let only: Vec<String> = only
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["detection"].as_str().map(str::to_owned)
        })
        .collect();
    assert!(
        !only.is_empty() && only.iter().all(|k| k == "port_scan"),
        "{only:?}"
    );

    // Thresholds from the command line replace the model's.
    let low = fs::read_to_string(run("json", "low.json", &["--scan-ports", "8"])).unwrap();
    let scan: serde_json::Value = low
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["detection"] == "port_scan")
        .unwrap();
    assert_eq!(
        (scan["score"].as_f64(), scan["threshold"].as_f64()),
        (Some(8.0), Some(8.0))
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", log.to_str().unwrap(), "--beacon-threshold", "2"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("from 0 to 1"));

    let none = fs::read_to_string(run("json", "n.json", &["--detectors", "none"])).unwrap();
    assert_eq!(none.lines().count(), data.len());
    assert!(!none.contains("\"detection\""));
}

/// Scoring runs on `--threads` threads, reading on one more, and the
/// records are taken back in input order: the output, the counts and the
/// summary are the same bytes on one thread as on several, in every
/// format, with and without `--only-anomalies`, and with malformed lines
/// among the records (each file is many chunks of lines long).
#[test]
fn replay_output_is_byte_identical_whatever_the_number_of_threads() {
    let dir = tempdir("replay-threads");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    // The example conn log three times over, with malformed lines between.
    let text = fs::read_to_string(root().join("examples/logs/conn.log")).unwrap();
    let (header, data): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .partition(|l| l.starts_with('#'));
    let mut log = header.join("\n") + "\n";
    for round in 0..3 {
        for (i, line) in data.iter().enumerate() {
            if i % 97 == round {
                log.push_str("not\ta\tconn\trecord\n");
            }
            log.push_str(line);
            log.push('\n');
        }
    }
    fs::write(logs.join("conn.log"), log).unwrap();
    // A conn model without the context columns, whose records are encoded
    // and scored on the worker threads (a model with them, below, has its
    // context columns encoded on the reading thread, in order).
    let tables = dir.join("tables");
    fs::create_dir_all(&tables).unwrap();
    let conn_table = fs::read_to_string(root().join("tables/conn.toml")).unwrap();
    let plain: Vec<&str> = conn_table
        .lines()
        .filter(|l| !l.contains("by = ["))
        .collect();
    assert!(
        plain.len() < conn_table.lines().count(),
        "the table has context columns"
    );
    fs::write(tables.join("conn.toml"), plain.join("\n")).unwrap();
    let models = dir.join("models");
    crate::util::train(&models, "conn", &["--tables", tables.to_str().unwrap()]);
    let allow = dir.join("allow.toml");
    fs::write(
        &allow,
        "[[rule]]\ndomain = \"example.invalid\"\naction = \"drop\"\n",
    )
    .unwrap();
    let run = |models: &std::path::Path, threads: &str, format: &str, extra: &[&str]| {
        let out = dir.join(format!("scores-{threads}.{format}"));
        let run = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", logs.to_str().unwrap()])
            .arg("--model-dir")
            .arg(models)
            .args([
                "--modules",
                "conn",
                "--format",
                format,
                "--threads",
                threads,
            ])
            .args(["--output", out.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
        assert!(run.status.success(), "{stderr}");
        // The summary on standard error, without the timestamps of log
        // lines and the output's name.
        let summary: Vec<String> = stderr
            .lines()
            .map(|l| l.replace(out.to_str().unwrap(), "OUT"))
            .map(|l| match l.split_once("Z ") {
                Some((ts, rest)) if ts.starts_with(|c: char| c.is_ascii_digit()) => rest.to_owned(),
                _ => l,
            })
            .collect();
        (fs::read(out).unwrap(), summary)
    };
    for (format, extra) in [
        ("json", &[][..]),
        ("tsv", &[][..]),
        ("json", &["--only-anomalies"][..]),
    ] {
        let (one, one_summary) = run(&models, "1", format, extra);
        assert!(
            one.len() > 10_000 || !extra.is_empty(),
            "{format}: {} bytes",
            one.len()
        );
        for threads in ["2", "3"] {
            let (many, summary) = run(&models, threads, format, extra);
            assert!(
                one == many,
                "{format}, {threads} threads: the output differs"
            );
            assert_eq!(one_summary, summary, "{format}, {threads} threads");
        }
    }
    // With the context columns (the built-in table) the reading thread
    // encodes in order and the workers score: the same bytes on 1, 2 and 3
    // threads, and with an allowlist whose rule drops nothing here (its
    // rules go with the chunks; unit test
    // `pipeline::parallel::tests::an_allowlist_on_threads_writes_what_one_record_at_a_time_writes`
    // compares drops and `no_alert` with the one-record path).
    let context = crate::util::models();
    let (one, _) = run(context, "1", "json", &[]);
    for threads in ["2", "3"] {
        assert!(
            run(context, threads, "json", &[]).0 == one,
            "{threads} threads, context"
        );
    }
    let (allowlisted, _) = run(
        context,
        "2",
        "json",
        &["--allowlist", allow.to_str().unwrap()],
    );
    assert!(
        allowlisted == one,
        "an allowlist that drops nothing changed the output"
    );
}

/// A runtime threshold and a minimum severity change what is flagged
/// without retraining: every anomaly carries its severity and the
/// probability of normal traffic scoring as high (falling as the score
/// rises); a rate flags more than the model's threshold, an
/// unreachable score flags nothing, `--min-severity` keeps only the
/// anomalies at or above it, and a bad value is refused with what to
/// give.
#[test]
fn runtime_thresholds_and_minimum_severity_judge_without_retraining() {
    let dir = tempdir("judge");
    let run = |name: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let path = dir.join(name);
        replay_into("conn", "json", &path, extra);
        fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("score").is_some() && v.get("detection").is_none())
            .collect()
    };
    let flagged = |v: &[serde_json::Value]| v.iter().filter(|r| r["anomaly"] == true).count();
    let model = run("model.json", &["--detectors", "none"]);
    let base = flagged(&model);
    assert!(base > 0);
    let mut judged: Vec<(f64, f64)> = Vec::new();
    for r in model.iter().filter(|r| r["anomaly"] == true) {
        let s = r["severity"].as_str().unwrap();
        assert!(["low", "medium", "high", "critical"].contains(&s), "{r}");
        judged.push((
            r["score"].as_f64().unwrap(),
            r["p_normal"].as_f64().unwrap(),
        ));
    }
    assert!(model
        .iter()
        .filter(|r| r["anomaly"] == false)
        .all(|r| r.get("severity").is_none()));
    judged.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(judged.windows(2).all(|w| w[1].1 <= w[0].1), "{judged:?}");

    let loose = run(
        "rate.json",
        &["--detectors", "none", "--threshold", "rate:0.05"],
    );
    assert!(flagged(&loose) > base, "{} <= {base}", flagged(&loose));
    let threshold = loose[0]["threshold"].as_f64().unwrap();
    assert!(threshold < model[0]["threshold"].as_f64().unwrap());
    let none = run(
        "high.json",
        &["--detectors", "none", "--threshold", "conn=1e9"],
    );
    assert_eq!(flagged(&none), 0);
    assert_eq!(none.len(), model.len());

    let severe = run(
        "severe.json",
        &[
            "--detectors",
            "none",
            "--threshold",
            "rate:0.05",
            "--min-severity",
            "medium",
        ],
    );
    let kept: Vec<&serde_json::Value> = severe.iter().filter(|r| r["anomaly"] == true).collect();
    assert!(kept.len() < flagged(&loose));
    assert!(kept.iter().all(|r| r["severity"] != "low"), "{kept:?}");

    for (flag, bad, says) in [
        ("--threshold", "lots", "give a score"),
        ("--threshold", "rate:2", "above 0 and below 1"),
        ("--min-severity", "severe", "low, medium, high or critical"),
    ] {
        let (ok, stderr) = replay(&["--modules", "conn", "--output", "-", flag, bad]);
        assert!(!ok);
        assert!(stderr.contains(says), "{stderr}");
    }
}

/// RITA's zeek-open-connections package writes `open_conn.log`, the same
/// kind of reports as conn_long: its records feed the conn model's
/// long-connection detector, so RITA's three-day SSH session, which
/// conn.log never holds, is found at its 4 h report (the SOC review found
/// it unread).
#[test]
fn open_conn_reports_find_a_session_conn_log_never_holds() {
    let data = root().join("tests/data/open_conn");
    let dir = tempdir("open-conn");
    crate::util::train(&dir, "conn", &[]);
    // A day of reports of one connection: a model of them, however small.
    crate::util::train_from(&data, &dir, "open_conn", &["--min-records", "20"]);
    let out = dir.join("scores.json");
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", data.to_str().unwrap()])
            .args(["--model-dir", dir.to_str().unwrap(), "-q"])
            .args([
                "--modules",
                "CONN,OPEN_CONN",
                "--output",
                out.to_str().unwrap(),
            ]),
    );
    let lines: Vec<serde_json::Value> = fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let scored = lines.iter().filter(|v| v["module"] == "OPEN_CONN").count();
    assert_eq!(scored, 24, "each report scored by its own model");
    let found: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["detection"] == "long_connection")
        .collect();
    assert_eq!(
        found.len(),
        1,
        "counted once, whatever the reports: {found:?}"
    );
    let d = found[0];
    assert_eq!(
        (
            d["id.orig_h"].as_str(),
            d["id.resp_h"].as_str(),
            d["id.resp_p"].as_u64()
        ),
        (Some("73.54.23.243"), Some("64.225.56.201"), Some(22))
    );
    assert_eq!(d["module"], "CONN", "the conn model's detector");
    assert_eq!(d["evidence"]["still_open"], true, "{d}");
    assert_eq!(d["uids"], serde_json::json!(["C3ZW8c1wDLCz4w18d8"]));
    // At the first report, 4 h after the session began.
    let start = 1_713_470_872.451_585;
    assert!(
        (d["ts"].as_f64().unwrap() - (start + 14_400.964_662)).abs() < 1e-3,
        "{d}"
    );
}

/// `conn_long.log` (the zeek-long-connections package's reports of open
/// connections, hand-made in tests/data/conn_long): a CONN_LONG model
/// trains on its history like any log type, and its records feed the conn
/// model's long-connection detector. A 6 h connection reported every hour
/// is found at its 4 h report, before its conn record exists; with the
/// record, it is still found once, and counted once: at a 7 h threshold
/// the reports and the record (6 h counted once, 21 h summed) find nothing.
/// The connection pushes out 250 MB an hour: the large-upload detector,
/// which conn_long's reports do not feed, finds it once, from its final
/// record, however the logs are read (the reports summed with it would be
/// 5.25 GB, twice past the report at 1.5 GB).
#[test]
fn conn_long_reports_find_a_long_connection_while_it_is_open() {
    let data = root().join("tests/data/conn_long");
    let dir = tempdir("conn-long");
    // The fixture's site is 10.0.0.0/8 (the examples' is learnt).
    crate::util::train(&dir, "conn", &["--local-nets", "10.0.0.0/8"]);
    crate::util::train_from(&data.join("train"), &dir, "conn_long", &[]);
    let long = |folder: &str, modules: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let out = dir.join(format!("{folder}-{}.json", modules.replace(',', "-")));
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", data.join(folder).to_str().unwrap()])
                .args(["--model-dir", dir.to_str().unwrap(), "-q"])
                .args(["--modules", modules, "--output", out.to_str().unwrap()])
                .args(extra),
        );
        let text = fs::read_to_string(&out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let scored = lines
            .iter()
            .filter(|v| v.get("detection").is_none())
            .count();
        assert!(
            scored > 0,
            "the conn_long records are scored by their model"
        );
        lines
            .into_iter()
            .filter(|v| v["detection"] == "long_connection" || v["detection"] == "large_upload")
            .collect()
    };
    let of = |found: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        found
            .iter()
            .filter(|v| v["detection"] == kind)
            .cloned()
            .collect()
    };

    // Still open: no conn record yet.
    let both = long("open", "conn,conn_long", &[]);
    assert!(of(&both, "large_upload").is_empty(), "{both:?}");
    let found = of(&both, "long_connection");
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(
        (d["id.orig_h"].as_str(), d["id.resp_h"].as_str()),
        (Some("10.0.1.66"), Some("198.51.100.7"))
    );
    assert_eq!(d["module"], "CONN", "the conn model's detector");
    assert_eq!(
        d["score"].as_f64(),
        Some(14_400.25),
        "found at the 4 h report: {d}"
    );
    assert_eq!(d["evidence"]["still_open"], true, "{d}");
    assert_eq!(d["evidence"]["connections"], 1, "{d}");
    assert_eq!(d["uids"], serde_json::json!(["CL6hrOpen0000001"]));

    // Closed, in either order of the logs: found once by each detector,
    // the upload from the final record.
    for modules in ["conn_long,conn", "conn,conn_long"] {
        let both = long("closed", modules, &[]);
        for kind in ["long_connection", "large_upload"] {
            let found = of(&both, kind);
            assert_eq!(found.len(), 1, "{modules} {kind}: {both:?}");
            assert_eq!(found[0]["id.resp_h"], "198.51.100.7");
        }
        let upload = &of(&both, "large_upload")[0];
        assert_eq!(upload["score"].as_f64(), Some(1_500_300_000.0), "{upload}");
        assert_eq!(upload["id.orig_h"], "10.0.1.66");
    }
    // Without the reports the conn record alone finds it, at its end.
    let both = long("closed", "conn", &[]);
    let uploads = of(&both, "large_upload");
    assert_eq!(uploads.len(), 1, "{both:?}");
    assert_eq!(uploads[0]["score"].as_f64(), Some(1_500_300_000.0));
    assert!(uploads[0]["evidence"].get("still_open").is_none());
    let found = of(&both, "long_connection");
    assert_eq!(found.len(), 1);
    assert!(found[0]["evidence"].get("still_open").is_none());
    assert_eq!(found[0]["score"].as_f64(), Some(21_612.75));
    // Counted once: 6 h < 7 h, where the sum of every report and the
    // record (21 h) would pass.
    for modules in ["conn_long,conn", "conn,conn_long"] {
        let found = long("closed", modules, &["--long-connection-hours", "7"]);
        assert!(
            of(&found, "long_connection").is_empty(),
            "{modules}: {found:?}"
        );
    }

    // The hourly reports of one connection share its uid, start time and
    // 5-tuple: in ECS each is still a document of its own (a SIEM keying
    // on `event.id` kept one of the six).
    let ecs = dir.join("open.ecs.json");
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", data.join("open").to_str().unwrap()])
            .args(["--model-dir", dir.to_str().unwrap(), "-q"])
            .args(["--modules", "conn_long", "--format", "ecs"])
            .args(["--output", ecs.to_str().unwrap()]),
    );
    let text = fs::read_to_string(&ecs).unwrap();
    let docs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let uid = "CL6hrOpen0000001";
    let reports: Vec<&str> = docs
        .iter()
        .filter(|d| d["zeek"]["session_id"] == uid)
        .map(|d| d["event"]["id"].as_str().unwrap())
        .collect();
    assert!(
        reports.len() >= 5,
        "{} reports of {uid}: {text}",
        reports.len()
    );
    let distinct: std::collections::BTreeSet<&str> = reports.iter().copied().collect();
    assert_eq!(distinct.len(), reports.len(), "{reports:?}");
}

/// A replay killed with SIGKILL leaves its unfinished output beside the
/// target (named after it); the next replay into the same file removes it
/// and says so, and leaves nothing of its own. Before, each killed run left
/// a hidden `.tmpXXXXXX` of any size, never removed.
#[test]
fn a_killed_replay_s_unfinished_output_is_removed_by_the_next() {
    let dir = tempdir("replay-killed");
    // Large enough that the replay is still running once its output exists.
    let example = crate::util::example_text("conn.log");
    let (header, body): (Vec<&str>, Vec<&str>) = example.lines().partition(|l| l.starts_with('#'));
    let body = body.join("\n") + "\n";
    let log = dir.join("conn.log");
    fs::write(&log, header.join("\n") + "\n" + &body.repeat(150)).unwrap();
    let out = dir.join("scores.json");
    let replay = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_azw-infer"));
        c.args(["--replay", log.to_str().unwrap(), "--modules", "conn", "-q"])
            .args(["--model-dir", crate::util::models().to_str().unwrap()])
            .args(["--output", out.to_str().unwrap()]);
        c
    };
    let partials = || -> Vec<std::path::PathBuf> {
        fs::read_dir(&*dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with(".scores.json.") && name.ends_with(".partial")
            })
            .collect()
    };
    let mut child = replay()
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while partials().is_empty() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the replay ended first: {}",
            fs::read_to_string(dir.join("stderr")).unwrap()
        );
        assert!(started.elapsed().as_secs() < 60, "no partial output");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = partials();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(!out.exists());
    // Killed over a minute ago (a partial file is left alone for its first
    // minute: its run may not have locked it yet).
    fs::File::options()
        .write(true)
        .open(&left[0])
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(120))
        .unwrap();
    let run = replay().output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stderr.contains("the unfinished output of a run that stopped before its end"),
        "{stderr}"
    );
    assert!(
        stderr.contains(left[0].file_name().unwrap().to_str().unwrap()),
        "{stderr}"
    );
    assert!(partials().is_empty(), "{:?}", partials());
    // Every record once (besides the detectors' lines).
    let text = fs::read_to_string(&out).unwrap();
    let records = text
        .lines()
        .filter(|l| !l.contains("\"detection\""))
        .count();
    assert_eq!(records, body.lines().count() * 150);
}

/// A full log disk (standard error to /dev/full) stops no tool: every
/// tool panicked at its first log line (exit 101, nothing done), and the
/// nightly training, logging to /var/log, stopped with it. Training
/// writes its models and replay both its outputs, complete; a summary
/// that cannot reach a full standard output is an error that says so.
#[test]
fn a_full_log_disk_stops_no_tool() {
    let dir = tempdir("full-stderr");
    let full =
        || std::process::Stdio::from(fs::File::options().write(true).open("/dev/full").unwrap());
    let models = dir.join("models");
    let train = crate::util::azw_train()
        .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
        .args(["--modules", "conn", "--model-dir", models.to_str().unwrap()])
        .stderr(full())
        .output()
        .unwrap();
    assert!(train.status.success(), "{:?}", train.status);
    assert!(models.join("conn.model.json").is_file());
    let (out, alerts) = (dir.join("scores.json"), dir.join("alerts.json"));
    let replay = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args([
            "--replay",
            root().join("examples/logs/conn.log").to_str().unwrap(),
        ])
        .args(["--modules", "conn", "--model-dir", models.to_str().unwrap()])
        .args(["--output", out.to_str().unwrap()])
        .args(["--alerts", alerts.to_str().unwrap(), "--threshold", "0.02"])
        .stderr(full())
        .output()
        .unwrap();
    assert!(replay.status.success(), "{:?}", replay.status);
    let records = fs::read_to_string(&out).unwrap();
    assert!(records.lines().count() > 300, "{records}");
    assert!(fs::read_to_string(&alerts).unwrap().lines().count() > 0);
    // Standard output full as well: the models are written, and the
    // summary's failure is said (where it can be) and is an error.
    let again = dir.join("models2");
    let train = crate::util::azw_train()
        .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
        .args(["--modules", "conn", "--model-dir", again.to_str().unwrap()])
        .stdout(full())
        .output()
        .unwrap();
    assert_eq!(train.status.code(), Some(1));
    assert!(again.join("conn.model.json").is_file());
    let stderr = String::from_utf8_lossy(&train.stderr);
    assert!(
        stderr.contains("cannot write to standard output"),
        "{stderr}"
    );
}

/// A replay whose output cannot be written (here a file size limit, as a
/// full disk would) says which output it could not write, not only the
/// hidden partial file, leaves the target as it was and no partial file.
#[test]
fn a_replay_that_cannot_write_names_its_output() {
    use std::os::unix::process::CommandExt;
    let dir = tempdir("replay-efbig");
    let out = dir.join("scores.json");
    fs::write(&out, b"").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azw-infer"));
    cmd.args([
        "--replay",
        root().join("examples/logs/conn.log").to_str().unwrap(),
    ])
    .args([
        "--modules",
        "conn",
        "--model-dir",
        crate::util::models().to_str().unwrap(),
    ])
    .args(["--output", out.to_str().unwrap(), "-q"]);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: 16 << 10,
                rlim_max: 16 << 10,
            };
            match libc::setrlimit(libc::RLIMIT_FSIZE, &limit) {
                0 => Ok(()),
                _ => Err(std::io::Error::last_os_error()),
            }
        });
    }
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot write {} (left as it was)", out.display())),
        "{stderr}"
    );
    assert_eq!(fs::read(&out).unwrap(), b"", "the target was touched");
    let left: Vec<_> = fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("scores.json")],
        "{left:?}"
    );
}

/// The example conn.log with `rows` after its records, in `dir`: each row
/// is the first record with the named fields replaced, and `@after` the
/// seconds after the log's last record it is timed at.
fn example_conn_with(dir: &Path, rows: &[Vec<(&str, String)>]) -> std::path::PathBuf {
    let example = crate::util::example_text("conn.log");
    let fields: Vec<&str> = example
        .lines()
        .find(|l| l.starts_with("#fields"))
        .unwrap()
        .split('\t')
        .skip(1)
        .collect();
    let body: Vec<&str> = example.lines().filter(|l| !l.starts_with('#')).collect();
    let last_ts = body
        .iter()
        .map(|l| l.split('\t').next().unwrap().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    let mut text: Vec<String> = example
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .map(str::to_owned)
        .collect();
    for set in rows {
        let mut row: Vec<String> = body[0].split('\t').map(str::to_owned).collect();
        for (name, value) in set {
            let (name, value) = match *name {
                "@after" => (
                    "ts",
                    format!("{:.6}", last_ts + value.parse::<f64>().unwrap()),
                ),
                name => (name, value.clone()),
            };
            let at = fields.iter().position(|f| *f == name).unwrap();
            row[at] = value;
        }
        text.push(row.join("\t"));
    }
    let log = dir.join("conn.log");
    fs::write(&log, text.join("\n") + "\n").unwrap();
    log
}

/// 1.2 GB pushed out of the site over three connections. Product mode
/// squashes sheer volume, so the model alone would not tell it from a
/// small upload; the large-upload detector reports the pair once, as the
/// JSON output's detection line, an ECS alert filed under Exfiltration,
/// and an alert on the local host; above a threshold raised past it
/// (`--upload-gb`), nothing.
#[test]
fn a_gigabyte_pushed_out_is_one_large_upload_in_every_format() {
    let dir = tempdir("large-upload");
    // A host of the examples' local network (learnt from Zeek's local_orig).
    let (src, dst) = ("192.168.0.77", "198.51.100.200");
    let rows: Vec<Vec<(&str, String)>> = (0..3u32)
        .map(|i| {
            vec![
                ("@after", (600.0 + f64::from(i) * 3600.0).to_string()),
                ("uid", format!("CUpload00000000{i}")),
                ("id.orig_h", src.into()),
                ("id.orig_p", (50_000 + i).to_string()),
                ("id.resp_h", dst.into()),
                ("id.resp_p", "443".into()),
                ("proto", "tcp".into()),
                ("service", "ssl".into()),
                ("duration", "1800.000000".into()),
                ("orig_bytes", "400000000".into()),
                ("resp_bytes", "1500000".into()),
                ("conn_state", "SF".into()),
                ("missed_bytes", "0".into()),
                ("history", "ShADadFf".into()),
                ("orig_pkts", "280000".into()),
                ("orig_ip_bytes", "411200000".into()),
                ("resp_pkts", "140000".into()),
                ("resp_ip_bytes", "7100000".into()),
            ]
        })
        .collect();
    let log = example_conn_with(&dir, &rows);

    let run = |format: &str, extra: &[&str]| -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let (out, alerts) = (
            dir.join(format!("out.{format}")),
            dir.join(format!("alerts.{format}")),
        );
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", log.to_str().unwrap(), "--modules", "conn", "-q"])
                .args(["--model-dir", crate::util::models().to_str().unwrap()])
                .args(["--format", format, "--output", out.to_str().unwrap()])
                .args(["--alerts", alerts.to_str().unwrap()])
                .args(extra),
        );
        let lines = |p: &Path| -> Vec<serde_json::Value> {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        (lines(&out), lines(&alerts))
    };

    let (json, alerts) = run("json", &[]);
    let found: Vec<&serde_json::Value> = json
        .iter()
        .filter(|v| v["detection"] == "large_upload")
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let d = found[0];
    assert_eq!(
        (d["id.orig_h"].as_str(), d["id.resp_h"].as_str()),
        (Some(src), Some(dst))
    );
    assert_eq!(
        (d["score"].as_f64(), d["threshold"].as_f64()),
        (Some(1.2e9), Some(1e9)),
        "{d}"
    );
    assert_eq!(
        d["uids"],
        serde_json::json!(["CUpload000000000", "CUpload000000002"])
    );
    assert_eq!(d["evidence"]["connections"], 3, "{d}");
    assert_eq!(d["evidence"]["received_bytes"], 4_500_000, "{d}");
    let alert = alerts
        .iter()
        .find(|a| {
            a["detectors"]
                .as_array()
                .is_some_and(|k| k.contains(&serde_json::json!("large_upload")))
        })
        .unwrap_or_else(|| panic!("no large_upload alert: {alerts:?}"));
    assert_eq!(
        (alert["entity"].as_str(), alert["role"].as_str()),
        (Some(src), Some("source")),
        "{alert}"
    );

    let (ecs, _) = run("ecs", &[]);
    let doc = ecs
        .iter()
        .find(|d| d["rule"]["id"] == "autozeekwatch-large_upload")
        .unwrap_or_else(|| panic!("no large_upload document"));
    assert_eq!(
        doc["threat"]["tactic"]["id"],
        serde_json::json!(["TA0010"]),
        "{doc}"
    );
    assert_eq!(
        doc["threat"]["tactic"]["name"],
        serde_json::json!(["Exfiltration"])
    );
    assert!(doc["threat"].get("technique").is_none(), "{doc}");
    assert!(
        doc["message"]
            .as_str()
            .unwrap()
            .contains("1.2 GB sent, at or above 1 GB"),
        "{doc}"
    );

    let (json, _) = run("json", &["--upload-gb", "1.5"]);
    assert!(
        !json.iter().any(|v| v["detection"] == "large_upload"),
        "1.2 GB is under 1.5 GB"
    );
}

/// A flood of 3,000 new sources in 90 seconds of event time, every record
/// flagged (`--threshold` near 0): at most 100 alerts open a minute in
/// the output, and every one with `--alerts-per-minute 0`.
#[test]
fn a_flood_of_new_sources_opens_at_most_100_alerts_a_minute() {
    let dir = tempdir("alert-flood");
    let rows: Vec<Vec<(&str, String)>> = (0..3_000u32)
        .map(|i| {
            vec![
                ("@after", (600.0 + f64::from(i) * 0.03).to_string()),
                ("uid", format!("CFlood{i:010}")),
                ("id.orig_h", format!("198.18.{}.{}", i >> 8, i & 255)),
                ("id.resp_h", "203.0.113.5".into()),
            ]
        })
        .collect();
    let log = example_conn_with(&dir, &rows);
    let opened = |extra: &[&str]| -> BTreeMap<i64, usize> {
        let alerts = dir.join("alerts.json");
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", log.to_str().unwrap(), "--modules", "conn", "-q"])
                .args(["--model-dir", crate::util::models().to_str().unwrap()])
                .args(["--output", dir.join("out.json").to_str().unwrap()])
                .args(["--alerts", alerts.to_str().unwrap(), "--threshold", "1e-9"])
                .args(extra),
        );
        let mut per_minute = BTreeMap::new();
        for line in fs::read_to_string(&alerts).unwrap().lines() {
            let a: serde_json::Value = serde_json::from_str(line).unwrap();
            if a["state"] == "open" && a["entity"].as_str().unwrap().starts_with("198.18.") {
                let minute = (a["last_ts"].as_f64().unwrap() / 60.0).floor() as i64;
                *per_minute.entry(minute).or_insert(0) += 1;
            }
        }
        per_minute
    };
    let all = opened(&["--alerts-per-minute", "0"]);
    assert_eq!(all.values().sum::<usize>(), 3_000, "{all:?}");
    let limited = opened(&[]);
    assert!(limited.values().all(|&n| n <= 100), "{limited:?}");
    assert!(
        limited.len() >= 2,
        "the flood spans two minutes or more: {limited:?}"
    );
}

/// A dated history is read an hour at a time across log types: conn's
/// first hour, dns's first hour, then the second hours, as Zeek wrote
/// them and as live mode reads them. Replay read each log type's whole
/// history after the other's, so the alert stage held every conn item
/// until dns was read (at its cap releasing them early, out of order).
#[test]
fn a_dated_history_is_read_hour_by_hour_across_log_types() {
    let dir = tempdir("replay-hourly");
    let day = dir.join("logs/2013-09-15");
    fs::create_dir_all(&day).unwrap();
    let mut sizes = Vec::new();
    for (module, file) in [("conn", "conn.log"), ("dns", "dns.log.gz")] {
        let text = crate::util::example_text(file);
        let (header, body): (Vec<&str>, Vec<&str>) = text
            .lines()
            .filter(|l| !l.starts_with("#close"))
            .partition(|l| l.starts_with('#'));
        let half = body.len() / 2;
        for (hour, part) in [(0, &body[..half]), (1, &body[half..])] {
            let name = format!("{module}.0{hour}:00:00-0{}:00:00.log", hour + 1);
            let lines: Vec<&str> = header.iter().chain(part).copied().collect();
            fs::write(day.join(name), lines.join("\n") + "\n").unwrap();
            sizes.push((module.to_uppercase(), part.len()));
        }
    }
    let out = dir.join("scores.json");
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", dir.join("logs").to_str().unwrap()])
            .args(["--model-dir", crate::util::models().to_str().unwrap(), "-q"])
            .args(["--modules", "CONN,DNS", "--output", out.to_str().unwrap()]),
    );
    // The output's runs of one log type, with their lengths.
    let mut runs: Vec<(String, usize)> = Vec::new();
    for line in fs::read_to_string(&out).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v.get("detection").is_some() {
            continue;
        }
        let module = v["module"].as_str().unwrap().to_owned();
        match runs.last_mut() {
            Some((m, n)) if *m == module => *n += 1,
            _ => runs.push((module, 1)),
        }
    }
    // conn 00, dns 00, conn 01, dns 01 (the files' order in `sizes`).
    let expected = vec![
        sizes[0].clone(),
        sizes[2].clone(),
        sizes[1].clone(),
        sizes[3].clone(),
    ];
    assert_eq!(runs, expected);
}

/// An alert names its top peers by what its host called them: the TLS
/// server names, HTTP Hosts and DNS answers of the example logs (every
/// record, flagged or not), and tells the user agents of its HTTP
/// requests to them. Each name and user agent shown is checked against
/// the logs: a record from the alert's host to that peer with it, no
/// later than the alert's last item. In ECS the names are
/// `related.hosts`, the user agents `user_agent.original`.
#[test]
fn alerts_name_their_peers_by_what_the_host_called_them() {
    use std::collections::BTreeSet;
    use std::net::IpAddr;
    let dir = tempdir("replay-names");
    let models = dir.join("models");
    crate::util::train(&models, "ALL", &["--min-records", "20"]);
    let run = |format: &str| -> Vec<serde_json::Value> {
        let alerts = dir.join(format!("alerts.{format}.json"));
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", root().join("examples/logs").to_str().unwrap()])
                .args(["--model-dir", models.to_str().unwrap(), "-q"])
                .args(["--format", format, "--output"])
                .arg(dir.join(format!("scores.{format}.json")))
                .arg("--alerts")
                .arg(&alerts),
        );
        fs::read_to_string(&alerts)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // Every (client, server, name, time) the example logs tell, and
    // every (client, server, user agent, time), the agent escaped as
    // alerts show it.
    let mut told: Vec<(IpAddr, IpAddr, String, f64)> = Vec::new();
    let mut agents: Vec<(IpAddr, IpAddr, String, f64)> = Vec::new();
    for entry in fs::read_dir(root().join("examples/logs")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let (log, fields): (&str, &[&str]) = match file.split('.').next().unwrap() {
            "ssl" => ("ssl", &["server_name"]),
            "http" => ("http", &["host"]),
            "dns" => ("dns", &["query"]),
            _ => continue,
        };
        for r in LogReader::open(&path, Some(log)).unwrap() {
            let r = r.unwrap();
            let (Some(ts), Some(client)) = (r.ts(), r.get("id.orig_h").as_addr()) else {
                continue;
            };
            if let (Some(agent), Some(server)) = (
                r.get("user_agent").as_str().filter(|a| !a.is_empty()),
                r.get("id.resp_h").as_addr(),
            ) {
                let shown = autozeekwatch::escape::terminal(agent.trim()).into_owned();
                agents.push((client, server, shown, ts));
            }
            let Some(name) = r.get(fields[0]).as_str() else {
                continue;
            };
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let servers: Vec<IpAddr> = if log == "dns" {
                r.get("answers")
                    .as_list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.as_addr())
                    .collect()
            } else {
                r.get("id.resp_h").as_addr().into_iter().collect()
            };
            for server in servers {
                told.push((client, server, name.clone(), ts));
            }
        }
    }
    let alerts = run("json");
    let (mut named, mut with_agents) = (0, 0);
    for a in &alerts {
        let host: IpAddr = a["entity"].as_str().unwrap().parse().unwrap();
        let last = a["last_ts"].as_f64().unwrap();
        for p in a["top_peers"].as_array().unwrap() {
            let peer: IpAddr = p["ip"].as_str().unwrap().parse().unwrap();
            let (client, server) = match a["role"].as_str().unwrap() {
                "source" => (host, peer),
                _ => (peer, host),
            };
            for name in p["names"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap();
                named += 1;
                assert!(
                    told.iter().any(|(c, s, n, ts)| (*c, *s) == (client, server)
                        && n == name
                        && *ts <= last),
                    "{name} for {client} -> {server} is in no log by {last}: {a}"
                );
            }
            for agent in p["user_agents"].as_array().into_iter().flatten() {
                let agent = agent.as_str().unwrap();
                with_agents += 1;
                assert!(
                    agents
                        .iter()
                        .any(|(c, s, u, ts)| (*c, *s) == (client, server)
                            && u == agent
                            && *ts <= last),
                    "user agent {agent} of {client} -> {server} is in no log by {last}: {a}"
                );
            }
        }
    }
    assert!(named > 0, "no alert names a peer: {alerts:#?}");
    assert!(with_agents > 0, "no alert tells a user agent: {alerts:#?}");
    // The busiest named peer is in the sentence.
    let googleapis = alerts
        .iter()
        .find(|a| a["entity"] == "192.168.33.10" && a["state"] == "closed")
        .expect("an alert of 192.168.33.10");
    assert_eq!(
        googleapis["top_peers"][0]["names"],
        serde_json::json!(["ajax.googleapis.com"])
    );
    assert!(
        googleapis["reason"]
            .as_str()
            .unwrap()
            .contains(
                "(most often 74.125.129.95: ajax.googleapis.com; user agent \"Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1; Trident/4.0)\")"
            ),
        "{googleapis}"
    );

    // ECS: the names as `related.hosts`, beside the addresses.
    let ecs = run("ecs");
    let hosts: BTreeSet<&str> = ecs
        .iter()
        .flat_map(|d| d["related"]["hosts"].as_array().into_iter().flatten())
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(hosts.contains("ajax.googleapis.com"), "{hosts:?}");
    // And the user agents as `user_agent.original`.
    assert!(
        ecs.iter()
            .any(|d| d["user_agent"]["original"].as_array().is_some_and(|a| a
                .iter()
                .any(|u| u.as_str().unwrap().starts_with("Mozilla/4.0")))),
        "{ecs:#?}"
    );
}

/// ZeekControl and zeek-archiver can archive with bzip2 or zstd instead of
/// gzip: a history in either trains the same model and replays to the
/// same bytes, and an archive in a compression not read (xz) is named in
/// a warning rather than passed over in silence.
#[test]
fn a_history_archived_with_bzip2_or_zstd_is_read_as_a_gzip_one() {
    use std::io::Write;
    let dir = tempdir("replay-compressions");
    let text = crate::util::example_text("conn.log");
    let (header, body): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .partition(|l| l.starts_with('#'));
    let half = body.len() / 2;
    let compress = |ext: &str, bytes: &[u8]| -> Vec<u8> {
        match ext {
            "gz" => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            "bz2" => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap()
            }
            "zst" => zstd::encode_all(bytes, 3).unwrap(),
            _ => unreachable!(),
        }
    };
    let mut outputs = Vec::new();
    for ext in ["gz", "bz2", "zst"] {
        let day = dir.join(ext).join("2013-09-15");
        fs::create_dir_all(&day).unwrap();
        for (hour, part) in [(0, &body[..half]), (1, &body[half..])] {
            let name = format!("conn.0{hour}:00:00-0{}:00:00.log.{ext}", hour + 1);
            let lines: Vec<&str> = header.iter().chain(part).copied().collect();
            let plain = lines.join("\n") + "\n";
            fs::write(day.join(name), compress(ext, plain.as_bytes())).unwrap();
        }
        // An xz archive of the same log: named, not read.
        fs::write(
            day.join("conn.02:00:00-03:00:00.log.xz"),
            [0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4],
        )
        .unwrap();
        let models = dir.join(ext).join("models");
        crate::util::train_from(&dir.join(ext), &models, "CONN", &["--min-records", "20"]);
        let out = dir.join(ext).join("scores.json");
        let run = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", dir.join(ext).to_str().unwrap()])
            .args(["--model-dir", models.to_str().unwrap()])
            .args(["--modules", "CONN", "--output", out.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        assert!(
            stderr.contains(
                "conn.02:00:00-03:00:00.log.xz: skipped: archives ending .xz are not read"
            ),
            "{stderr}"
        );
        outputs.push(fs::read_to_string(&out).unwrap());
    }
    let records = outputs[0]
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("detection").is_none())
        .count();
    assert_eq!(records, body.len());
    assert_eq!(outputs[0], outputs[1], "bzip2");
    assert_eq!(outputs[0], outputs[2], "zstd");
}

/// A model of another network flags most of a sensor's records: the
/// replay warns, naming the feature behind most of them. A model of the
/// sensor's own traffic, on the same records, is silent.
#[test]
fn a_model_of_another_network_is_said_to_flag_far_more_than_it_expects() {
    let dir = tempdir("drift");
    let site = root().join("tests/data/site/2024-04-19");
    let own = dir.join("own");
    crate::util::train_from(&site, &own, "CONN", &[]);
    let warning = "are anomalies, where the model expects";
    for (models, warns) in [(crate::util::models(), true), (own.as_path(), false)] {
        let out = crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--replay", site.to_str().unwrap(), "--modules", "CONN"])
                .args(["--model-dir", models.to_str().unwrap(), "-q", "--output"])
                .arg(dir.join("scores.json")),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.contains(warning),
            warns,
            "{}: {stderr}",
            models.display()
        );
        if warns {
            assert!(
                stderr.contains("CONN: ") && stderr.contains("the top feature of"),
                "{stderr}"
            );
        }
    }
}

/// A folder with nothing a replay reads (empty, or logs under logrotate's
/// names) fails with what it reads and what to do, and each logrotate
/// file is named; it said "0 lines read" and exited 0, as if the logs
/// had been normal. Named directly, the same file is read.
#[test]
fn a_folder_with_no_log_it_reads_is_an_error_that_says_what_is_read() {
    let dir = tempdir("no-input");
    let rotated = dir.join("rotated");
    fs::create_dir_all(&rotated).unwrap();
    fs::copy(
        root().join("examples/logs/conn.log"),
        rotated.join("conn.log.1"),
    )
    .unwrap();
    let empty = dir.join("empty");
    fs::create_dir_all(&empty).unwrap();
    let run = |input: &Path| {
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", input.to_str().unwrap(), "--modules", "CONN"])
            .args(["--model-dir", crate::util::models().to_str().unwrap(), "-q"])
            .arg("--output")
            .arg(dir.join("scores.json"))
            .output()
            .unwrap()
    };
    for input in [&rotated, &empty] {
        let out = run(input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("no log of CONN in"), "{stderr}");
        assert_eq!(
            stderr.contains("conn.log.1: skipped: a folder is read for Zeek's names"),
            input == &rotated,
            "{stderr}"
        );
    }
    let out = run(&rotated.join("conn.log.1"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
