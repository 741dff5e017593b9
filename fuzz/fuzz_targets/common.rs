//! What the replay targets share: the models, a scratch folder, the
//! replay itself into every output format, and the checks of each
//! format's documents.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use autozeekwatch::alert::{Alert, AlertOptions};
use autozeekwatch::detect::{DetectOptions, Detection};
use autozeekwatch::features::Encoder;
use autozeekwatch::model::{self, Model};
use autozeekwatch::pipeline::{replay, Emitter, Lane, LaneOptions, TopAnomalies};
use autozeekwatch::score::{ScoredRecord, Scorer};
use autozeekwatch::sink::{RecordFormat, Sink, SinkError, Stamp};
use autozeekwatch::LogKind;
use serde_json::Value;

pub const MODULES: [LogKind; 5] = [
    LogKind::CONN,
    LogKind::DNS,
    LogKind::HTTP,
    LogKind::SSH,
    LogKind::SSL,
];

/// Where `run.sh` trained the models (on the bundled example logs).
pub fn models() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("AZW_FUZZ_MODELS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models"));
        assert!(
            dir.join("conn.model.json").is_file(),
            "no models in {}: run fuzz/run.sh, which trains them",
            dir.display()
        );
        dir
    })
}

/// The models, loaded once (loading took most of a run's time).
pub fn loaded() -> &'static [(Model, Encoder)] {
    static MODELS: OnceLock<Vec<(Model, Encoder)>> = OnceLock::new();
    MODELS.get_or_init(|| {
        MODULES
            .iter()
            .map(|&m| Model::load_for(&models().join(model::file_name(m)), m).expect("model"))
            .collect()
    })
}

/// A scratch folder of this process's, for the file the replay reads.
pub fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("azw-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

/// Every format at once, each into its own buffer. A format that fails
/// to write is a finding: a file sink would end the run on it.
pub struct AllFormats {
    outs: Vec<(RecordFormat, Vec<u8>)>,
    /// The alerts of the formats that do not take them (JSON lines).
    aside: Vec<u8>,
    stamp: Stamp,
}

impl AllFormats {
    fn new() -> AllFormats {
        AllFormats {
            outs: RecordFormat::ALL
                .into_iter()
                .map(|f| (f, f.header()))
                .collect(),
            aside: Vec::new(),
            stamp: Stamp {
                sensor: "fuzz\tsensor\"\n".into(),
            },
        }
    }
}

impl Sink for AllFormats {
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError> {
        for (f, out) in &mut self.outs {
            f.write(record, &self.stamp, out)
                .unwrap_or_else(|e| panic!("{}: writing failed: {e}", f.name()));
        }
        Ok(())
    }
    fn write_detection(&mut self, d: &Detection) -> Result<(), SinkError> {
        for (f, out) in &mut self.outs {
            f.write_detection(d, &self.stamp, out)
                .unwrap_or_else(|e| panic!("{}: writing failed: {e}", f.name()));
        }
        Ok(())
    }
    fn write_alert(&mut self, a: &Alert) -> Result<(), SinkError> {
        for (f, out) in &mut self.outs {
            // TSV's and CSV's alerts go to a file of their own, in JSON.
            let out = if f.takes_alerts() {
                out
            } else {
                &mut self.aside
            };
            f.write_alert(a, &self.stamp, out)
                .unwrap_or_else(|e| panic!("{}: writing failed: {e}", f.name()));
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Panics (a finding) when an output is not well formed.
pub fn check(format: RecordFormat, out: &[u8]) {
    let text =
        std::str::from_utf8(out).unwrap_or_else(|e| panic!("{}: not UTF-8: {e}", format.name()));
    match format {
        f if f.is_json_lines() => {
            for line in text.lines() {
                let doc = serde_json::from_str::<Value>(line)
                    .unwrap_or_else(|e| panic!("{}: a line is not JSON ({e}): {line:?}", f.name()));
                match f {
                    RecordFormat::Ecs => check_ecs(&doc),
                    RecordFormat::Eve => check_eve(&doc),
                    _ => {}
                }
            }
        }
        RecordFormat::Csv => {
            let mut r = csv::ReaderBuilder::new().from_reader(out);
            let width = r.headers().expect("CSV header").len();
            for row in r.records() {
                let row = row.unwrap_or_else(|e| panic!("csv: a row does not parse: {e}"));
                assert_eq!(
                    row.len(),
                    width,
                    "csv: a row has {} fields: {row:?}",
                    row.len()
                );
            }
        }
        f => {
            // TSV and notice.log: a `#fields` header, then rows of as
            // many tab-separated columns.
            let mut width = None;
            for line in text.lines() {
                if let Some(fields) = line.strip_prefix("#fields\t") {
                    width = Some(fields.split('\t').count());
                } else if line.starts_with('#') {
                } else {
                    let w = width.unwrap_or_else(|| panic!("{}: a row before #fields", f.name()));
                    let n = line.split('\t').count();
                    assert_eq!(
                        n,
                        w,
                        "{}: a row of {n} columns, not {w}: {line:?}",
                        f.name()
                    );
                }
            }
        }
    }
}

/// What a SIEM's index mapping refuses a whole document for: a field
/// of ECS's type `ip`, `long` (non-negative here), `date` or a port
/// that is none.
pub fn check_ecs(doc: &Value) {
    let at = |path: &str| path.split('.').try_fold(doc, |v, k| v.get(k));
    let date = |path: &str| {
        if let Some(v) = at(path) {
            let t = v
                .as_str()
                .unwrap_or_else(|| panic!("ecs: {path} is no string: {doc}"));
            assert!(is_iso8601(t), "ecs: {path} is no date: {t:?}");
        }
    };
    date("@timestamp");
    assert!(at("@timestamp").is_some(), "ecs: no @timestamp: {doc}");
    for path in ["event.start", "event.end", "event.created"] {
        date(path);
    }
    for path in ["source.ip", "destination.ip", "host.ip"] {
        if let Some(v) = at(path) {
            ip(v, path, doc);
        }
    }
    if let Some(Value::Array(ips)) = at("related.ip") {
        for v in ips {
            ip(v, "related.ip", doc);
        }
    }
    for path in ["source.port", "destination.port", "url.port"] {
        if let Some(v) = at(path) {
            assert!(v.as_u64().is_some_and(|p| p <= 65535), "ecs: {path} {v}");
        }
    }
    for path in [
        "source.bytes",
        "destination.bytes",
        "source.packets",
        "destination.packets",
        "network.bytes",
        "event.severity",
        "event.duration",
        "event.sequence",
        "http.response.status_code",
    ] {
        if let Some(v) = at(path) {
            assert!(
                v.as_u64().is_some_and(|n| n <= i64::MAX as u64),
                "ecs: {path} is no long: {v}"
            );
        }
    }
    if let Some(v) = at("event.risk_score_norm") {
        assert!(
            v.as_f64().is_some_and(|r| (0.0..=100.0).contains(&r)),
            "ecs: risk {v}"
        );
    }
    if let Some(v) = at("network.community_id") {
        let c = v.as_str().unwrap_or_default();
        assert!(
            c.len() == 30 && c.starts_with("1:") && c.ends_with('='),
            "ecs: community id {v}"
        );
    }
}

/// Suricata's EVE: addresses, ports and the time as Suricata writes them.
pub fn check_eve(doc: &Value) {
    let t = doc["timestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("eve: no timestamp: {doc}"));
    assert!(is_iso8601(t), "eve: timestamp {t:?}");
    for key in ["src_ip", "dest_ip"] {
        if let Some(v) = doc.get(key) {
            ip(v, key, doc);
        }
    }
    for key in ["src_port", "dest_port"] {
        if let Some(v) = doc.get(key) {
            assert!(v.as_u64().is_some_and(|p| p <= 65535), "eve: {key} {v}");
        }
    }
    if let Some(v) = doc.get("flow_id") {
        assert!(v.as_u64().is_some(), "eve: flow_id {v}");
    }
}

pub fn ip(v: &Value, path: &str, doc: &Value) {
    let ok = v
        .as_str()
        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
    assert!(ok, "{path} is no address: {v} in {doc}");
}

/// `2024-04-19T12:00:00.123456Z` or with an offset (`+00:00`, or
/// `+0000` as Suricata writes it): what ECS's `date` and EVE's timestamp
/// take.
pub fn is_iso8601(t: &str) -> bool {
    let b = t.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed {
        return false;
    }
    let mut rest = &t[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return false;
        }
        rest = &frac[n..];
    }
    // `Z`, `+01:00`, or Suricata's `+0100`.
    let offset = rest.as_bytes();
    rest == "Z"
        || (matches!(offset.first(), Some(b'+' | b'-'))
            && matches!(offset.len(), 5 | 6)
            && (offset.len() == 5 || offset[3] == b':')
            && offset[1..]
                .iter()
                .enumerate()
                .all(|(i, c)| c.is_ascii_digit() || (offset.len() == 6 && i == 2)))
}

/// Replays `path` as a log of `module` (one of [`MODULES`]) into every
/// format, with the detectors and alerts, then checks each output.
pub fn replay_and_check(module: LogKind, path: &Path) {
    let i = MODULES
        .iter()
        .position(|m| *m == module)
        .expect("a module with a model");
    let (model, encoder) = &loaded()[i];
    let scorer = Scorer::new(model.clone(), encoder.clone());
    let mut lane = Lane::new(scorer, &LaneOptions::default());
    let mut emitter = Emitter::for_lanes([&mut lane], &DetectOptions::default(), true).with_alerts(
        AlertOptions::default(),
        &[module],
        true,
        None,
    );
    let mut sink = AllFormats::new();
    let mut top = TopAnomalies::new(5);
    let stop = Arc::new(AtomicBool::new(false));
    // Errors are fine (a damaged file says so); panics and hangs are not.
    let _ = replay::score_files(
        &[path.to_owned()],
        &mut lane,
        &mut emitter,
        &mut sink,
        &mut top,
        &stop,
        1,
    );
    let _ = emitter.finish(&mut sink);
    for (format, out) in &sink.outs {
        check(*format, out);
    }
    check(RecordFormat::Json, &sink.aside);
}
