//! The SIEM formats through the real `azw-infer`, on the example conn log
//! with a beacon, a port scan and a long session added: ECS documents
//! checked field by field against the ECS definitions, the notice log read
//! back by our own Zeek reader (and by zat when it is installed), EVE
//! alerts, and what every record carries (Community ID, context, sensor,
//! explanations with observed and expected values).

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use autozeekwatch::zeek::LogReader;
use serde_json::{json, Value};

use crate::util::{models, root, tempdir, TestDir};

/// The conn log with behaviours, written into `dir`.
fn behaviours_log(dir: &Path) -> PathBuf {
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let log = dir.join("conn.log");
    fs::write(&log, header.join("\n") + "\n" + &data.join("\n") + "\n").unwrap();
    log
}

/// Replays `log` with `--format format` and `extra`; the output's text.
fn replay(dir: &TestDir, log: &Path, format: &str, extra: &[&str]) -> String {
    replay_with(models(), dir, log, format, extra)
}

/// [`replay`] with the models in `model_dir`.
fn replay_with(
    model_dir: &Path,
    dir: &TestDir,
    log: &Path,
    format: &str,
    extra: &[&str],
) -> String {
    let out = dir.join(format!("out-{format}-{}", extra.len()));
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", log.to_str().unwrap(), "--scan-external", "-q"])
            .args(["--model-dir", model_dir.to_str().unwrap()])
            .args([
                "--modules",
                "conn",
                "--sensor",
                "sensor-7",
                "--format",
                format,
            ])
            .arg("--output")
            .arg(&out)
            .args(extra),
    );
    fs::read_to_string(out).unwrap()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The Community ID (seed 0) of a JSON record's addresses and ports, with
/// `proto`.
fn community_id_of(
    v: &Value,
    proto: Option<&str>,
) -> Option<autozeekwatch::community_id::CommunityId> {
    let addr = |k: &str| v[k].as_str().and_then(|a| a.parse::<IpAddr>().ok());
    let port = |k: &str| v[k].as_u64().map(|p| p as u16);
    autozeekwatch::community_id::for_zeek(
        0,
        addr("id.orig_h"),
        port("id.orig_p"),
        addr("id.resp_h"),
        port("id.resp_p"),
        proto,
    )
}

/// (records, anomalies, detections) of the JSON output.
fn counts(json: &[Value]) -> (usize, usize, usize) {
    let detections = json.iter().filter(|v| v.get("detection").is_some()).count();
    let anomalies = json.iter().filter(|v| v["anomaly"] == true).count();
    (json.len() - detections, anomalies, detections)
}

#[test]
fn json_records_carry_context_community_id_and_explanations() {
    let dir = tempdir("siem-json");
    let log = behaviours_log(&dir);
    let json = json_lines(&replay(&dir, &log, "json", &[]));
    let (records, anomalies, detections) = counts(&json);
    assert!(anomalies > 0 && detections > 0, "{anomalies} {detections}");
    let mut explained = 0;
    for v in &json {
        assert_eq!(v["sensor"], "sensor-7", "{v}");
        if v.get("detection").is_some() {
            continue;
        }
        // The Community ID is the spec's, computed from the 5-tuple.
        let want = community_id_of(v, v["proto"].as_str());
        assert_eq!(v["community_id"].as_str(), want.as_deref(), "{v}");
        assert!(want.is_some(), "{v}");
        // The conn defaults, as far as the record has them.
        let ctx = v["context"].as_object().unwrap();
        assert!(ctx.contains_key("conn_state"), "{v}");
        assert!(ctx.keys().all(|k| [
            "service",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "history"
        ]
        .contains(&k.as_str())));
        if v["anomaly"] == true {
            let top = v["top_features"].as_array().unwrap();
            assert!(!top.is_empty());
            // Features, not columns: no `name=value` or `name:c` names.
            for t in top {
                let f = t["feature"].as_str().unwrap();
                assert!(!f.contains('=') && !f.contains(':'), "{t}");
            }
            if top
                .iter()
                .any(|t| t.get("observed").is_some() && t.get("expected").is_some())
            {
                explained += 1;
            }
        }
    }
    assert_eq!(records, crate::infer_live::conn_with_behaviours().1.len());
    assert_eq!(
        explained, anomalies,
        "every anomaly says what was seen and expected"
    );

    // Selected context: one field, or none.
    let one = json_lines(&replay(
        &dir,
        &log,
        "json",
        &["--context-fields", "conn.history"],
    ));
    assert!(one
        .iter()
        .filter(|v| v.get("context").is_some())
        .all(|v| v["context"].as_object().unwrap().keys().eq(["history"])));
    let none = replay(
        &dir,
        &log,
        "json",
        &["--context-fields", "none", "--community-id-seed", "1"],
    );
    assert!(!none.contains("\"context\""));
    assert!(!none.contains(json[0]["community_id"].as_str().unwrap()));
}

/// The ECS definitions of the fields we write (a copy of the entries of
/// elastic/ecs `generated/ecs/ecs_flat.yml`, Apache-2.0; see
/// tests/data/ecs/README.md).
fn ecs_fields() -> serde_json::Map<String, Value> {
    let text = fs::read_to_string(root().join("tests/data/ecs/ecs_fields_used.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["fields"].as_object().unwrap().clone()
}

/// Every leaf of a document, by dotted path.
fn leaves<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, out);
            }
        }
        _ => out.push((prefix.to_owned(), v)),
    }
}

/// Checks one ECS value against its definition; `Err` says why not.
fn check_ecs(path: &str, def: &Value, v: &Value) -> Result<(), String> {
    let array_ok = def["normalize"]
        .as_array()
        .is_some_and(|n| n.iter().any(|x| x == "array"));
    let items: Vec<&Value> = match v {
        Value::Array(a) if array_ok => a.iter().collect(),
        Value::Array(_) => return Err(format!("{path}: an array, but ECS has one value")),
        v => vec![v],
    };
    let ty = def["type"].as_str().unwrap();
    for item in items {
        let ok = match ty {
            "keyword" | "constant_keyword" | "wildcard" | "text" | "match_only_text" => {
                item.is_string()
            }
            "long" => item.is_i64() || item.is_u64(),
            "float" | "double" | "scaled_float" | "half_float" => item.is_number(),
            "ip" => item.as_str().is_some_and(|s| s.parse::<IpAddr>().is_ok()),
            "date" => item
                .as_str()
                .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
            other => return Err(format!("{path}: type {other} not handled by this test")),
        };
        if !ok {
            return Err(format!("{path}: {item} is not a {ty}"));
        }
        for key in ["allowed_values", "expected_values"] {
            if let Some(allowed) = def[key].as_array() {
                if !allowed.contains(item) {
                    return Err(format!("{path}: {item} is not among {allowed:?}"));
                }
            }
        }
    }
    Ok(())
}

/// The examples' models take 192.168.33.0/24 for the internet: its
/// scanners are reconnaissance.
#[test]
fn ecs_documents_follow_the_ecs_definitions() {
    let (_, inside, outside) = check_ecs_documents(models(), "siem-ecs");
    assert!(outside > 0 && inside == 0, "{outside} {inside}");
}

/// Models whose local networks hold 192.168.33.0/24: its scanners are
/// discovery by hosts of ours, and their alerts say so.
#[test]
fn scans_from_a_local_host_are_discovery() {
    let dir = tempdir("siem-ecs-local");
    let models = dir.join("models");
    crate::util::train(&models, "conn", &["--local-nets", "192.168.33.0/24"]);
    let (_, inside, outside) = check_ecs_documents(&models, "siem-ecs-local-run");
    assert!(inside > 0 && outside == 0, "{outside} {inside}");
    let log = behaviours_log(&dir);
    let with = ["--alerts", "output"];
    let ecs = json_lines(&replay_with(&models, &dir, &log, "ecs", &with));
    let scans: Vec<&Value> = ecs
        .iter()
        .filter(|d| d["event"]["dataset"] == "autozeekwatch.alert")
        .filter(|d| {
            d["autozeekwatch"]["detectors"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "port_scan" || k == "host_sweep"))
        })
        .collect();
    assert!(!scans.is_empty());
    for a in scans {
        assert_eq!(a["autozeekwatch"]["local"], true, "{a}");
        let tactics = a["threat"]["tactic"]["id"].as_array().unwrap();
        assert!(tactics.contains(&json!("TA0007")), "{a}");
        assert!(!tactics.contains(&json!("TA0043")), "{a}");
    }
}

/// Replays the behaviours with `models` in JSON and ECS, checks every ECS
/// document against the ECS definitions and each detection's ATT&CK
/// terms; the counts of beacons, scans from inside and from outside.
fn check_ecs_documents(models: &Path, name: &str) -> (usize, usize, usize) {
    let dir = tempdir(name);
    let log = behaviours_log(&dir);
    let replay = |dir: &TestDir, log: &Path, format: &str, extra: &[&str]| {
        replay_with(models, dir, log, format, extra)
    };
    let json = json_lines(&replay(&dir, &log, "json", &[]));
    let (records, anomalies, detections) = counts(&json);
    let ecs = json_lines(&replay(&dir, &log, "ecs", &[]));
    assert_eq!(ecs.len(), records + detections);
    // One `event.id` per document, the same when the logs are replayed
    // again (a SIEM keying on it keeps one copy).
    let ids = |docs: &[Value]| -> Vec<String> {
        docs.iter()
            .map(|d| d["event"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let again = json_lines(&replay(&dir, &log, "ecs", &[]));
    assert_eq!(ids(&ecs), ids(&again));
    assert_eq!(ids(&ecs).iter().collect::<BTreeSet<_>>().len(), ecs.len());
    let fields = ecs_fields();
    let mut kinds = BTreeSet::new();
    let mut rules = BTreeSet::new();
    let mut used = BTreeSet::new();
    // Beacons; scans from inside; scans and sweeps from outside.
    let mut scans = (0, 0, 0);
    for doc in &ecs {
        let mut all = Vec::new();
        leaves("", doc, &mut all);
        for (path, v) in all {
            match fields.get(&path) {
                Some(def) => {
                    check_ecs(&path, def, v).unwrap_or_else(|e| panic!("{e}\n{doc}"));
                    used.insert(path);
                }
                // Not ECS: Elastic's Zeek integration's names, and ours.
                None => assert!(
                    path == "log.id.uid"
                        || path.starts_with("zeek.")
                        || path.starts_with("autozeekwatch."),
                    "{path} is neither an ECS field nor in our namespaces"
                ),
            }
        }
        let risk = doc["event"]["risk_score_norm"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&risk), "{doc}");
        assert_eq!(doc["observer"]["name"], "sensor-7");
        kinds.insert(doc["event"]["kind"].as_str().unwrap().to_owned());
        rules.insert(doc["rule"]["id"].as_str().unwrap().to_owned());
        // ATT&CK: a detection's terms; a model's anomaly names none. A
        // scan is discovery when the detector found its source in the
        // model's local networks (`src_local` of its JSON line), else
        // reconnaissance.
        let threat = |path: &str| doc["threat"].pointer(path).cloned();
        let src_local = |kind: &str| {
            json.iter()
                .find(|j| j["detection"] == kind && j["id.orig_h"] == doc["source"]["ip"])
                .and_then(|j| j["src_local"].as_bool())
                .unwrap_or_else(|| panic!("no {kind} JSON line for {doc}"))
        };
        match doc["rule"]["id"].as_str().unwrap() {
            "autozeekwatch-beacon" => {
                assert_eq!(threat("/framework"), Some(json!("MITRE ATT&CK")));
                assert_eq!(threat("/tactic/id"), Some(json!(["TA0011"])), "{doc}");
                assert_eq!(threat("/technique/id"), Some(json!(["T1071"])), "{doc}");
                scans.0 += 1;
            }
            rule @ ("autozeekwatch-port_scan" | "autozeekwatch-host_sweep") => {
                let kind = rule.trim_start_matches("autozeekwatch-");
                if src_local(kind) {
                    let technique = if kind == "port_scan" {
                        "T1046"
                    } else {
                        "T1018"
                    };
                    assert_eq!(threat("/tactic/name"), Some(json!(["Discovery"])), "{doc}");
                    assert_eq!(threat("/technique/id"), Some(json!([technique])), "{doc}");
                    assert_eq!(
                        threat("/technique/reference"),
                        Some(json!([format!(
                            "https://attack.mitre.org/techniques/{technique}/"
                        )]))
                    );
                    scans.1 += 1;
                } else {
                    assert_eq!(
                        threat("/tactic/name"),
                        Some(json!(["Reconnaissance"])),
                        "{doc}"
                    );
                    assert_eq!(threat("/technique/id"), Some(json!(["T1595"])), "{doc}");
                    scans.2 += 1;
                }
            }
            // Exfiltration over any protocol: no one technique.
            "autozeekwatch-large_upload" => {
                assert_eq!(threat("/tactic/id"), Some(json!(["TA0010"])), "{doc}");
                assert_eq!(threat("/technique"), None, "{doc}");
            }
            // Command and control over any protocol: no one technique.
            "autozeekwatch-long_connection" => {
                assert_eq!(threat("/tactic/id"), Some(json!(["TA0011"])), "{doc}");
                assert_eq!(threat("/technique"), None, "{doc}");
            }
            _ => assert!(doc.get("threat").is_none(), "{doc}"),
        }
        let alert = doc["event"]["kind"] == "alert";
        assert_eq!(
            alert,
            doc["autozeekwatch"]["anomaly"] == true
                || doc["autozeekwatch"].get("detection").is_some(),
            "{doc}"
        );
        if alert {
            assert!(doc["event"]["reason"]
                .as_str()
                .is_some_and(|r| !r.is_empty()));
        }
        // Risk sorts as severity does: each severity in its own band
        // (not flagged 0-40, low 40-60, medium 60-80, high 80-95,
        // critical 95-100).
        let bands = [
            (0.0, 40.0),
            (40.0, 60.0),
            (60.0, 80.0),
            (80.0, 95.0),
            (95.0, 100.0),
        ];
        let (lo, hi) = bands[doc["event"]["severity"].as_u64().unwrap() as usize];
        assert!(risk >= lo && risk < hi, "risk {risk} of {doc}");
        assert_eq!(alert, risk >= 40.0, "{doc}");
    }
    assert_eq!(
        ecs.iter().filter(|d| d["event"]["kind"] == "alert").count(),
        anomalies + detections
    );
    assert_eq!(
        kinds,
        BTreeSet::from(["alert".to_owned(), "event".to_owned()])
    );
    assert!(scans.0 > 0, "{scans:?}");
    for rule in [
        "autozeekwatch-conn",
        "autozeekwatch-port_scan",
        "autozeekwatch-beacon",
    ] {
        assert!(rules.contains(rule), "{rule} missing: {rules:?}");
    }
    for f in [
        "@timestamp",
        "event.kind",
        "event.category",
        "event.dataset",
        "event.severity",
        "event.risk_score",
        "event.risk_score_norm",
        "event.reason",
        "rule.name",
        "rule.id",
        "rule.version",
        "source.ip",
        "source.port",
        "destination.ip",
        "destination.port",
        "network.transport",
        "network.direction",
        "network.community_id",
        "observer.name",
    ] {
        assert!(used.contains(f), "{f} never written");
    }
    scans
}

/// Alerts (`--alerts output`) in every format beside the records: ECS
/// alert documents valid against the ECS definitions (with `event.id`
/// the alert's id, its span in `event.start`/`event.end`, the host and
/// its peers in `related.ip`), EVE alerts, and notices
/// (`AutoZeekWatch::Host_Alert`) that our reader reads back; as many of
/// each as the JSON output has alert lines.
#[test]
fn alerts_in_every_format_follow_their_schemas() {
    let dir = tempdir("siem-alerts");
    let log = behaviours_log(&dir);
    let with = ["--alerts", "output"];
    let json = json_lines(&replay(&dir, &log, "json", &with));
    let alerts: Vec<&Value> = json.iter().filter(|v| v.get("alert").is_some()).collect();
    assert!(alerts.len() >= 3, "{alerts:#?}");
    for a in &alerts {
        assert!(a["alert"].as_str().unwrap().starts_with("azw-"));
        assert!(["open", "update", "closed"].contains(&a["state"].as_str().unwrap()));
        assert!(["low", "medium", "high", "critical"].contains(&a["severity"].as_str().unwrap()));
        assert!(!a["reason"].as_str().unwrap().is_empty());
        assert_eq!(a["sensor"], "sensor-7");
    }
    let ecs = json_lines(&replay(&dir, &log, "ecs", &with));
    let docs: Vec<&Value> = ecs
        .iter()
        .filter(|d| d["event"]["dataset"] == "autozeekwatch.alert")
        .collect();
    assert_eq!(docs.len(), alerts.len());
    let fields = ecs_fields();
    for (doc, a) in docs.iter().zip(&alerts) {
        let mut all = Vec::new();
        leaves("", doc, &mut all);
        for (path, v) in all {
            match fields.get(&path) {
                Some(def) => check_ecs(&path, def, v).unwrap_or_else(|e| panic!("{e}\n{doc}")),
                None => assert!(path.starts_with("autozeekwatch."), "{path} is not ECS"),
            }
        }
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["id"], a["alert"]);
        assert!(doc["event"]["start"].is_string() && doc["event"]["end"].is_string());
        assert!(doc["related"]["ip"]
            .as_array()
            .is_some_and(|ips| !ips.is_empty()));
        let sev = doc["event"]["severity"].as_u64().unwrap();
        assert!((1..=4).contains(&sev), "{doc}");
        // Its detectors' ATT&CK tactics, each once; none without any. A
        // scan's follows whether the alert's host is local.
        let detectors = a["detectors"].as_array().unwrap();
        let tactics = doc["threat"]["tactic"]["id"].as_array();
        let mut want = Vec::new();
        for d in detectors {
            let t = match d.as_str().unwrap() {
                "port_scan" | "host_sweep" if a["local"] == false => "TA0043",
                "port_scan" | "host_sweep" => "TA0007",
                "large_upload" => "TA0010",
                _ => "TA0011",
            };
            if !want.contains(&json!(t)) {
                want.push(json!(t));
            }
        }
        match tactics {
            Some(t) => assert_eq!(t, &want, "{doc}"),
            None => assert!(want.is_empty(), "{doc}"),
        }
    }
    assert!(
        docs.iter().any(|d| d.get("threat").is_some()),
        "no alert of a detection: {docs:#?}"
    );
    let eve = json_lines(&replay(&dir, &log, "eve", &with));
    // Emerging Threats' metadata keys, as Suricata dashboards read them.
    assert!(
        eve.iter().any(|e| {
            let m = &e["alert"]["metadata"];
            m["mitre_tactic_name"] == json!(["Command_And_Control"])
                && m["mitre_technique_name"] == json!(["Application_Layer_Protocol"])
        }),
        "no EVE alert with ATT&CK metadata"
    );
    let eve_alerts = eve
        .iter()
        .filter(|e| {
            e["alert"]["signature"]
                .as_str()
                .is_some_and(|s| s.starts_with("AutoZeekWatch host alert "))
        })
        .count();
    assert_eq!(eve_alerts, alerts.len());
    replay(&dir, &log, "notice", &with);
    let notes = notes_of(&dir.join("out-notice-2"));
    assert_eq!(
        notes
            .iter()
            .filter(|n| *n == "AutoZeekWatch::Host_Alert")
            .count(),
        alerts.len()
    );
    // TSV has a record's columns: alerts go to a file of their own.
    let refused = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", log.to_str().unwrap(), "--modules", "conn"])
        .args(["--model-dir", models().to_str().unwrap()])
        .args(["--format", "tsv", "--alerts", "output", "--output", "-"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a file of their own"));
}

/// The notes of a notice log read by our own Zeek reader, in order.
fn notes_of(path: &Path) -> Vec<String> {
    let mut reader = LogReader::open(path, Some("notice")).unwrap();
    let mut notes = Vec::new();
    for r in reader.by_ref() {
        let r = r.unwrap();
        assert!(r.get("msg").as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(r.get("peer_descr").as_str(), Some("sensor-7"));
        assert!(r.ts().is_some());
        notes.push(r.get("note").as_str().unwrap().to_owned());
    }
    assert_eq!(reader.stats().malformed, 0);
    notes
}

#[test]
fn notice_log_reads_back_and_matches_its_json_twin() {
    let dir = tempdir("siem-notice");
    let log = behaviours_log(&dir);
    let json = json_lines(&replay(&dir, &log, "json", &[]));
    let (_, anomalies, detections) = counts(&json);
    replay(&dir, &log, "notice", &[]);
    let notes = notes_of(&dir.join("out-notice-0"));
    assert_eq!(notes.len(), anomalies + detections);
    for n in [
        "AutoZeekWatch::Anomaly",
        "AutoZeekWatch::Port_Scan",
        "AutoZeekWatch::Beacon",
    ] {
        assert!(notes.iter().any(|x| x == n), "{n} missing: {notes:?}");
    }
    let twin = json_lines(&replay(&dir, &log, "notice-json", &[]));
    let twin_notes: Vec<String> = twin
        .iter()
        .map(|v| v["note"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(twin_notes, notes);
    assert!(twin
        .iter()
        .all(|v| v["actions"] == serde_json::json!(["Notice::ACTION_LOG"])));
}

#[test]
fn eve_alerts_for_anomalies_and_detections() {
    let dir = tempdir("siem-eve");
    let log = behaviours_log(&dir);
    let json = json_lines(&replay(&dir, &log, "json", &[]));
    let (_, anomalies, detections) = counts(&json);
    let eve = json_lines(&replay(&dir, &log, "eve", &[]));
    assert_eq!(eve.len(), anomalies + detections);
    for e in &eve {
        assert_eq!(e["event_type"], "alert");
        assert_eq!(e["host"], "sensor-7");
        let ts = e["timestamp"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.6f%z").is_ok(),
            "{ts}"
        );
        let a = &e["alert"];
        assert!((1..=3).contains(&a["severity"].as_u64().unwrap()), "{e}");
        assert!((1_947_000..1_948_000).contains(&a["signature_id"].as_u64().unwrap()));
        assert!(a["signature"]
            .as_str()
            .unwrap()
            .starts_with("AutoZeekWatch "));
    }
    assert!(eve.iter().any(|e| e.get("community_id").is_some()));
}

/// zat (a Python package that reads Zeek logs into pandas) reads our
/// notice log, alerts included. Reported as ignored where zat is not installed (build.rs
/// looks for it; `python3 -m pip install zat`, then rebuild).
#[test]
#[cfg_attr(not(zat), ignore = "zat is not installed (python3 -m pip install zat)")]
fn zat_reads_the_notice_log() {
    let dir = tempdir("siem-zat");
    let log = behaviours_log(&dir);
    replay(&dir, &log, "notice", &["--alerts", "output"]);
    let path = dir.join("out-notice-2");
    let ours = notes_of(&path);
    assert!(ours.iter().any(|n| n == "AutoZeekWatch::Host_Alert"));
    let script = r#"
import sys
from zat.log_to_dataframe import LogToDataFrame
df = LogToDataFrame().create_dataframe(sys.argv[1])
print(len(df))
for n in df['note']:
    print(n)
"#;
    let python = std::env::var("AZW_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = crate::util::succeed(Command::new(python).args(["-c", script]).arg(&path));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next().unwrap().parse::<usize>().unwrap(), ours.len());
    let theirs: Vec<&str> = lines.collect();
    assert_eq!(theirs, ours);
}

/// Live mode writes what replay writes, in a SIEM format too: the same
/// conn log, followed as Zeek's live file, gives the same ECS documents
/// and the same notice log, line for line.
#[test]
fn live_mode_writes_the_formats_as_replay_does() {
    let dir = tempdir("siem-live");
    let log = behaviours_log(&dir);
    for (format, name) in [("ecs", "scores.ecs"), ("notice", "notice.log")] {
        let expected = replay(&dir, &log, format, &[]);
        let got = live(&dir, &log, format, name, &[], expected.lines().count());
        assert_eq!(got, expected, "{format}");
    }
}

/// An allowlist decides in live mode, a record at a time, what replay
/// decides on its scoring threads (drops on the reading thread, `no_alert`
/// on the workers; the log's 533 records are two chunks of up to 512, so
/// two of the three workers score): the same bytes,
/// with a rule dropping the port scanner and one keeping the beacon's
/// host from alerting, every record above a threshold of 0.001 so that
/// the silencing shows. Live mode is the independent reference here: it
/// never scores on threads.
#[test]
fn an_allowlist_decides_live_as_replay_on_threads_does() {
    let dir = tempdir("allow-live");
    let log = behaviours_log(&dir);
    let allow = dir.join("allow.toml");
    fs::write(
        &allow,
        "[[rule]]\nsource = \"192.168.33.66\"\naction = \"drop\"\n\n\
         [[rule]]\nsource = \"192.168.33.77\"\naction = \"no_alert\"\n",
    )
    .unwrap();
    // The threshold, then replay's threads (live mode has none).
    let flag_all = ["--threshold", "0.001", "--threads", "3"];
    let rules = ["--allowlist", allow.to_str().unwrap()];
    let records = |text: &str, uid: &str| -> Vec<Value> {
        text.lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["uid"].as_str().is_some_and(|u| u.starts_with(uid)))
            .collect()
    };
    let flagged = |v: &[Value]| v.iter().filter(|r| r["anomaly"] == true).count();
    let unruled = replay(&dir, &log, "json", &flag_all);
    assert_eq!(records(&unruled, "CScan").len(), 100);
    assert!(flagged(&records(&unruled, "CBeacon")) > 60);

    let expected = replay(&dir, &log, "json", &[&flag_all[..], &rules[..]].concat());
    assert!(
        records(&expected, "CScan").is_empty(),
        "the scanner dropped"
    );
    let beacon = records(&expected, "CBeacon");
    assert_eq!(beacon.len(), 72);
    assert_eq!(flagged(&beacon), 0, "the beacon's host kept from alerting");
    assert!(
        flagged(&records(&expected, "C")) > 100,
        "the others flagged"
    );

    let got = live(
        &dir,
        &log,
        "json",
        "scores.json",
        &[&flag_all[..2], &rules[..]].concat(),
        expected.lines().count(),
    );
    assert_eq!(got, expected);
}

/// Live mode on a copy of `log` in a `current/` folder, with `--format
/// format` into `name` and `extra`, until it has written `lines` lines;
/// the output's text.
fn live(
    dir: &TestDir,
    log: &Path,
    format: &str,
    name: &str,
    extra: &[&str],
    lines: usize,
) -> String {
    let logs = dir.join(format!("zeek-{format}-{name}"));
    fs::create_dir_all(logs.join("current")).unwrap();
    fs::copy(log, logs.join("current/conn.log")).unwrap();
    let out = logs.join(name);
    let stderr = logs.join("infer.log");
    let child = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--log-dir", logs.to_str().unwrap(), "--modules", "conn"])
        .args(["--model-dir", models().to_str().unwrap()])
        .args(["--state-dir", logs.join("state").to_str().unwrap()])
        .args([
            "--scan-external",
            "--sensor",
            "sensor-7",
            "--format",
            format,
        ])
        .args([
            "--poll-ms",
            "50",
            "--checkpoint-ms",
            "100",
            "--warm-hours",
            "0",
        ])
        .arg("--output")
        .arg(&out)
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let infer = crate::util::Infer { child, log: stderr };
    let started = std::time::Instant::now();
    while fs::read_to_string(&out).unwrap_or_default().lines().count() < lines {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{format}: live output incomplete\n{}",
            infer.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    infer.terminate();
    fs::read_to_string(&out).unwrap()
}

/// A user agent full of terminal escapes, a forged line and a bidi
/// override reaches every format's context as inert text, and the JSON
/// formats give it back unchanged.
#[test]
fn a_hostile_user_agent_is_inert_in_every_format() {
    let dir = tempdir("siem-hostile");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::write(
        logs.join("http.log"),
        crate::hostile_output::hostile_http_log(),
    )
    .unwrap();
    let models = dir.join("models");
    crate::util::train_from(&logs, &models, "http", &[]);
    let raw = autozeekwatch::zeek::LogReader::open(logs.join("http.log"), Some("http"))
        .unwrap()
        .filter_map(Result::ok)
        .find_map(|r| {
            r.get("user_agent")
                .as_str()
                .filter(|ua| ua.contains('\x1b'))
                .map(str::to_owned)
        })
        .unwrap();
    for format in ["json", "tsv", "csv", "ecs", "eve", "notice", "notice-json"] {
        let out = dir.join(format!("out.{format}"));
        let run = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args([
                "--replay",
                logs.to_str().unwrap(),
                "--modules",
                "http",
                "-q",
            ])
            .args(["--model-dir", models.to_str().unwrap(), "--format", format])
            .args(["--sensor", "s1", "--output", out.to_str().unwrap()])
            // Alerts beside the records (they carry the worst record's
            // context, user agent included), where the format takes them;
            // every record flagged, so there are some.
            .args(match format {
                "tsv" | "csv" => &[][..],
                _ => &["--alerts", "output", "--threshold", "0"][..],
            })
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let bytes = fs::read(&out).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        let cells = if matches!(format, "tsv" | "notice") {
            text.replace('\t', " ")
        } else {
            text.to_string()
        };
        crate::hostile_output::assert_inert(format, cells.as_bytes());
        if format == "json" {
            assert!(text.contains("\"alert\":\"azw-"), "no alert line");
        }
        let back = |v: &Value| -> Vec<String> {
            let mut all = Vec::new();
            leaves("", v, &mut all);
            all.into_iter()
                .filter_map(|(_, v)| v.as_str().map(str::to_owned))
                .collect()
        };
        match format {
            "json" | "ecs" => {
                let found = json_lines(&text).iter().flat_map(back).any(|s| s == raw);
                assert!(found, "{format}: the user agent does not come back whole");
            }
            "tsv" => {
                let mut reader = LogReader::open(&out, Some("azw_scores")).unwrap();
                let found = reader.by_ref().filter_map(Result::ok).any(|r| {
                    r.get("context")
                        .as_list()
                        .unwrap_or_default()
                        .iter()
                        .any(|v| v.as_str() == Some(&format!("user_agent={raw}")))
                });
                assert!(found, "tsv: the user agent does not read back");
                assert_eq!(reader.stats().malformed, 0);
            }
            _ => {}
        }
    }
}

/// Trains `modules` on the example logs in `dir` and replays all of the
/// examples with them, in `format`, detectors off; the output's path.
fn replay_examples(dir: &TestDir, modules: &str, format: &str) -> PathBuf {
    let models = dir.join("models");
    crate::util::train(&models, modules, &[]);
    let out = dir.join(format!("examples.{format}"));
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", root().join("examples/logs").to_str().unwrap()])
            .args(["--model-dir", models.to_str().unwrap(), "-q"])
            .args([
                "--modules",
                modules,
                "--format",
                format,
                "--detectors",
                "none",
            ])
            .arg("--output")
            .arg(&out),
    );
    out
}

/// HTTP, SSL and SSH logs have no `proto` column: their records carry the
/// Community ID of their connection all the same (TCP implied), the one
/// its conn record has, so an analyst pivots from a TLS anomaly to the
/// connection and to Suricata. Before, none of them had one.
#[test]
fn every_log_type_s_records_carry_their_connection_s_community_id() {
    let dir = tempdir("siem-cid");
    let out = replay_examples(&dir, "conn,http,ssl,ssh", "json");
    let json = json_lines(&fs::read_to_string(&out).unwrap());
    // A record's 5-tuple without the protocol: the example HTTP log has
    // hand-made records under real uids with another port.
    let tuple = |v: &Value| {
        let f = |k: &str| v[k].to_string();
        [
            f("id.orig_h"),
            f("id.orig_p"),
            f("id.resp_h"),
            f("id.resp_p"),
        ]
    };
    let mut conn: std::collections::HashMap<String, (String, [String; 4])> = Default::default();
    for v in json.iter().filter(|v| v["module"] == "CONN") {
        if let (Some(u), Some(c)) = (v["uid"].as_str(), v["community_id"].as_str()) {
            conn.insert(u.to_owned(), (c.to_owned(), tuple(v)));
        }
    }
    let mut matched = std::collections::BTreeMap::<String, usize>::new();
    for v in json.iter().filter(|v| v["module"] != "CONN") {
        let module = v["module"].as_str().unwrap().to_owned();
        let Some(cid) = v["community_id"].as_str() else {
            // Only an SSL record whose transport is not known (TLS 1.3
            // not established: QUIC's look the same) has none.
            assert_eq!(module, "SSL", "{v}");
            assert!(v.get("proto").is_none(), "{v}");
            continue;
        };
        assert_eq!(v["proto"], "tcp", "{v}");
        let want = community_id_of(v, Some("tcp"));
        assert_eq!(Some(cid), want.as_deref(), "{v}");
        // Every record of a connection the conn log has carries its ID.
        if let Some((conn_cid, conn_tuple)) = v["uid"].as_str().and_then(|u| conn.get(u)) {
            if *conn_tuple == tuple(v) {
                assert_eq!(cid, conn_cid, "{v}");
                *matched.entry(module).or_default() += 1;
            }
        }
    }
    for module in ["HTTP", "SSL"] {
        assert!(matched.get(module).is_some_and(|n| *n > 0), "{matched:?}");
    }
}

/// SSL and HTTP documents in ECS: `tls.version` as ECS has it (`1.2`,
/// the protocol apart in `tls.version_protocol`, where Zeek says
/// `TLSv12`), the protocol called `tls` as in the conn documents of the
/// same connections, the server's name in `destination.domain` (and an
/// HTTP Host's in `url.domain`, without its port), and every field valid
/// against the ECS definitions.
#[test]
fn ssl_and_http_documents_take_ecs_forms() {
    let dir = tempdir("siem-ssl");
    let out = replay_examples(&dir, "conn,ssl,http", "ecs");
    let fields = ecs_fields();
    let (mut versions, mut protocols) = (BTreeSet::new(), BTreeSet::new());
    let mut domains = (0, 0);
    for doc in json_lines(&fs::read_to_string(&out).unwrap()) {
        // A name, not an address: an IP literal is no destination.domain.
        let named = |name: &str| name.parse::<IpAddr>().is_err();
        if let Some(name) = doc["zeek"]["ssl"]["server_name"].as_str() {
            match named(name) {
                true => assert_eq!(doc["destination"]["domain"], name, "{doc}"),
                false => assert!(doc["destination"].get("domain").is_none(), "{doc}"),
            }
            domains.0 += usize::from(named(name));
        }
        if let Some(host) = doc["zeek"]["http"]["host"].as_str() {
            let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
            assert_eq!(doc["url"]["domain"], name, "{doc}");
            match named(name) {
                true => assert_eq!(doc["destination"]["domain"], name, "{doc}"),
                false => assert!(doc["destination"].get("domain").is_none(), "{doc}"),
            }
            domains.1 += usize::from(named(name));
        }
        let mut all = Vec::new();
        leaves("", &doc, &mut all);
        for (path, v) in all {
            if let Some(def) = fields.get(&path) {
                check_ecs(&path, def, v).unwrap_or_else(|e| panic!("{e}\n{doc}"));
            }
        }
        if let Some(p) = doc["network"]["protocol"].as_str() {
            protocols.insert(p.to_owned());
        }
        if let Some(zeek) = doc["zeek"]["ssl"]["version"].as_str() {
            let (protocol, number) = zeek.split_once('v').unwrap();
            // A draft is its version's (`TLSv13-draft23`).
            let number = number.split('-').next().unwrap();
            let number = match number.len() {
                1 => format!("{number}.0"),
                _ => format!("{}.{}", &number[..1], &number[1..]),
            };
            assert_eq!(doc["tls"]["version"], number, "{doc}");
            assert_eq!(
                doc["tls"]["version_protocol"],
                protocol.to_lowercase(),
                "{doc}"
            );
            versions.insert(zeek.to_owned());
        }
    }
    assert!(versions.len() >= 2, "{versions:?}");
    assert!(domains.0 > 0 && domains.1 > 0, "{domains:?}");
    assert!(
        protocols.contains("tls") && !protocols.contains("ssl"),
        "{protocols:?}"
    );
}
