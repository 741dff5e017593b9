//! Reads every real log listed in `../shared/data/FILES.tsv` (the team's
//! corpus of ~1,170 logs from real Zeek and Bro deployments) when it is
//! present beside the repository, and checks each file's records plus its
//! skipped lines against the `records` column. On a clone without
//! `../shared` the test is reported as ignored; the repository's own
//! fixtures (`tests/e2e/reader.rs`) cover the same cases.

use autozeekwatch::zeek::{LogReader, ReadError};

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn every_log_in_the_shared_corpus_reads_completely() {
    let dir = crate::util::shared_data();
    let table = std::fs::read_to_string(dir.join("FILES.tsv")).unwrap();
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_path, c_format, c_log, c_records) =
        (col("path"), col("format"), col("log_path"), col("records"));
    let mut failures = Vec::new();
    let mut files = 0;
    for row in lines {
        let cells: Vec<&str> = row.split('\t').collect();
        let path = dir.join(cells[c_path]);
        let expected: u64 = cells[c_records].parse().unwrap();
        files += 1;
        let mut reader = LogReader::open(&path, None).unwrap();
        let mut fatal = Vec::new();
        for item in reader.by_ref() {
            if let Err(e) = item {
                if !e.is_skip() {
                    fatal.push(e);
                }
            }
        }
        let stats = reader.stats();
        if stats.malformed > 0 {
            eprintln!(
                "{}: {} records, {} malformed",
                cells[c_path], stats.records, stats.malformed
            );
        }
        if cells[c_format] == "non-log/malformed" {
            if !matches!(fatal.as_slice(), [ReadError::NotALog { .. }]) || stats.records != 0 {
                failures.push(format!(
                    "{}: expected to be reported as not a log, got {fatal:?} {stats:?}",
                    cells[c_path]
                ));
            }
            continue;
        }
        if !fatal.is_empty() {
            failures.push(format!("{}: {}", cells[c_path], fatal[0]));
        }
        if stats.records + stats.malformed != expected {
            failures.push(format!(
                "{}: {} records + {} malformed != {expected}",
                cells[c_path], stats.records, stats.malformed
            ));
        }
        let declared = cells[c_log];
        if !declared.is_empty() && reader.declared_path().is_some_and(|p| p != declared) {
            failures.push(format!(
                "{}: #path {:?} != {declared}",
                cells[c_path],
                reader.declared_path()
            ));
        }
    }
    assert!(files > 1000, "FILES.tsv lists {files} files");
    assert!(
        failures.is_empty(),
        "{} of {files} files failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Our RITA score of the planted beacon in `missing_host` over RITA's own
/// window agrees with RITA's integration test (0.963, 331 connections).
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn rita_score_of_the_planted_beacon_matches_ritas() {
    use autozeekwatch::detect::rita;
    let dir = crate::util::shared_data().join("rita-activecm/missing_host");
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for day in ["2024-04-20", "2024-04-21"] {
        for e in std::fs::read_dir(dir.join(day)).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("conn.")
            {
                files.push(p);
            }
        }
    }
    files.sort();
    let (win_min, win_max) = (1_713_657_591u32, 1_713_743_991u32);
    // RITA reads from the start of the window's first hour.
    let from = win_min - win_min % 3600;
    let (mut ts, mut bytes) = (Vec::new(), Vec::new());
    for r in autozeekwatch::zeek::Records::new(files, Some("conn"), true) {
        let (Some(o), Some(d)) = (r.get("id.orig_h").as_addr(), r.get("id.resp_h").as_addr())
        else {
            continue;
        };
        let t = r.ts().unwrap() as u32;
        if (o.to_string(), d.to_string()) == ("73.54.23.243".into(), "64.225.56.201".into())
            && (from..=win_max).contains(&t)
        {
            ts.push(t);
            bytes.push(r.get("orig_ip_bytes").as_f64().unwrap());
        }
    }
    assert_eq!(ts.len(), 331);
    let s = rita::score(&mut ts, &mut bytes, win_min, win_max).unwrap();
    assert_eq!(s.score, 0.963, "{s:?}");
}

/// The streaming beacon detector on `missing_host`: known pairs from
/// 2024-04-19 (without the planted pair's records), then 04-20 and 04-21
/// as Zeek wrote them.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn the_planted_beacon_is_the_top_detection_within_two_hours() {
    use autozeekwatch::detect::{BeaconDetector, BeaconParams};
    let dir = crate::util::shared_data().join("rita-activecm/missing_host");
    let conn = |day: &str| {
        let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.join(day))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("conn.")
            })
            .collect();
        files.sort();
        autozeekwatch::zeek::Records::new(files, Some("conn"), true)
    };
    let planted = (
        "73.54.23.243".parse().unwrap(),
        "64.225.56.201".parse().unwrap(),
    );
    let feed = |d: &mut BeaconDetector, r: &autozeekwatch::zeek::Record| {
        let (Some(o), Some(t)) = (r.get("id.orig_h").as_addr(), r.get("id.resp_h").as_addr())
        else {
            return None;
        };
        let answered = r.get("resp_bytes").as_f64().unwrap_or(0.0) > 0.0;
        let bytes = r.get("orig_ip_bytes").as_f64().unwrap_or(0.0);
        d.observe(o, t, r.ts()?, bytes, answered)
            .map(|x| (r.ts().unwrap(), x))
    };
    let mut baseline = autozeekwatch::detect::BaselineLearner::default();
    for r in conn("2024-04-19") {
        let (Some(o), Some(t)) = (r.get("id.orig_h").as_addr(), r.get("id.resp_h").as_addr())
        else {
            continue;
        };
        if (o, t) != planted {
            baseline.observe(o, t, r.get("resp_bytes").as_f64().unwrap_or(0.0) > 0.0);
        }
    }
    let known = baseline.finish(&BeaconParams::default());
    let mut live = BeaconDetector::new(BeaconParams::default()).with_known(known.clone());
    let mut first_planted = None;
    let mut found: Vec<(f64, autozeekwatch::detect::BeaconDetection)> = Vec::new();
    for r in conn("2024-04-20").chain(conn("2024-04-21")) {
        let pair = (r.get("id.orig_h").as_addr(), r.get("id.resp_h").as_addr());
        if pair == (Some(planted.0), Some(planted.1)) && first_planted.is_none() {
            first_planted = r.ts();
        }
        if let Some(x) = feed(&mut live, &r) {
            found.push(x);
        }
    }
    let mut best: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for (_, d) in &found {
        let e = best
            .entry((d.src.to_string(), d.dst.to_string()))
            .or_default();
        *e = e.max(d.parts.score);
    }
    eprintln!(
        "{} known pairs from training; detected: {best:?}",
        known.len()
    );
    let planted_key = (planted.0.to_string(), planted.1.to_string());
    let top = best.iter().max_by(|a, b| a.1.total_cmp(b.1)).unwrap();
    assert_eq!(top.0, &planted_key, "{best:?}");
    assert!(best.len() <= 6, "at most 5 other pairs: {best:?}");
    let (at, _) = found
        .iter()
        .find(|(_, d)| (d.src, d.dst) == planted)
        .unwrap();
    let after = at - first_planted.unwrap();
    eprintln!("planted pair detected {after:.0} s after its first record");
    assert!(after <= 7200.0, "{after} s");
}
