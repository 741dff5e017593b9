//! How a scored record is written. `--format` chooses:
//!
//! - `json` (the default, and what Kafka outputs carry): the scored record
//!   as one JSON object per line, Zeek's key names.
//! - `tsv`: a Zeek log (`#path azw_scores`) for tools that read Zeek logs,
//!   `azw-infer`'s own reader included; `csv`: the same columns with a
//!   header row, for spreadsheets.
//! - `ecs`, `eve`, `notice`, `notice-json`: what SIEMs take as they are
//!   ([`super::siem`]): Elastic Common Schema documents, Suricata EVE
//!   alerts, a Zeek `notice.log` (TSV or JSON). EVE and notice are alert
//!   formats: they carry anomalies and detections, not every record.
//!
//! Every format carries the record's Community ID, context fields and the
//! sensor's name (`--sensor`). Free text in a record (the uid and proto of
//! a JSON log, context values, the learned values in `top_features`) was
//! chosen by whoever sent the traffic, so each format escapes it
//! ([`crate::escape`]): no output line carries a raw control, C1 or bidi
//! character, and every record is one line.
//!
//! - JSON (json, ecs, eve, notice-json): serde_json escapes C0 controls;
//!   DEL, C1 and bidi characters are written as `\uXXXX` too (same text
//!   for a JSON reader).
//! - TSV (tsv, notice): Zeek's `\xHH` escapes, extended to C1 and bidi
//!   characters.
//! - CSV: text cells get [`escape::terminal`]'s visible escapes and a `'`
//!   before a leading `=`, `+`, `-` or `@` (formula injection);
//!   `top_features` and `context` are JSON, the same objects as in the
//!   JSON output, so a `;` or `,` in a value cannot be mistaken for a
//!   separator.

use std::io::{self, Write};

use compact_str::CompactString;
use serde::Serialize;

use crate::alert::Alert;
use crate::detect::Detection;
use crate::escape;
use crate::score::{Contribution, ScoredRecord};

/// The `--format` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordFormat {
    /// One JSON object per line, Zeek's key names.
    #[default]
    Json,
    /// Zeek's TSV log format, with its `#` header (`#path azw_scores`).
    Tsv,
    /// Comma-separated values with a header row.
    Csv,
    /// Elastic Common Schema documents, one per line.
    Ecs,
    /// Suricata EVE `alert` events, one per line (anomalies and
    /// detections only).
    Eve,
    /// A Zeek `notice.log` in TSV (anomalies and detections only).
    Notice,
    /// A Zeek `notice.log` in JSON, one notice per line.
    NoticeJson,
}

impl std::str::FromStr for RecordFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<RecordFormat, String> {
        RecordFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown format `{s}`: choose json, tsv, csv, ecs, eve, notice or notice-json"
                )
            })
    }
}

/// What every record and detection of one output is stamped with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The sensor's name (`--sensor`; the host name by default); empty:
    /// none is written.
    pub sensor: String,
}

/// The columns of TSV and CSV, with their Zeek types.
const COLUMNS: [(&str, &str); 19] = [
    ("ts", "time"),
    ("uid", "string"),
    ("module", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("trans_depth", "count"),
    ("trans_id", "count"),
    ("community_id", "string"),
    ("direction", "string"),
    ("score", "double"),
    ("threshold", "double"),
    ("anomaly", "bool"),
    ("top_features", "vector[string]"),
    ("context", "vector[string]"),
    ("sensor", "string"),
    ("detection", "string"),
];

/// A Zeek TSV header for `path` with these columns (no `#open`: a header
/// that changes with the time could not tell our own file on reopen).
pub(super) fn tsv_header(path: &str, columns: &[(&str, &str)]) -> Vec<u8> {
    let mut h = format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n"
    );
    h.push_str("#fields\t");
    h.push_str(
        &columns
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join("\t"),
    );
    h.push_str("\n#types\t");
    h.push_str(
        &columns
            .iter()
            .map(|(_, t)| *t)
            .collect::<Vec<_>>()
            .join("\t"),
    );
    h.push('\n');
    h.into_bytes()
}

impl RecordFormat {
    pub const ALL: [RecordFormat; 7] = [
        RecordFormat::Json,
        RecordFormat::Tsv,
        RecordFormat::Csv,
        RecordFormat::Ecs,
        RecordFormat::Eve,
        RecordFormat::Notice,
        RecordFormat::NoticeJson,
    ];

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            RecordFormat::Json => "json",
            RecordFormat::Tsv => "tsv",
            RecordFormat::Csv => "csv",
            RecordFormat::Ecs => "ecs",
            RecordFormat::Eve => "eve",
            RecordFormat::Notice => "notice",
            RecordFormat::NoticeJson => "notice-json",
        }
    }

    /// True for the formats with one JSON document per line (what a Kafka
    /// message can carry).
    pub fn is_json_lines(self) -> bool {
        matches!(
            self,
            RecordFormat::Json | RecordFormat::Ecs | RecordFormat::Eve | RecordFormat::NoticeJson
        )
    }

    /// What a new (empty) file starts with.
    pub fn header(self) -> Vec<u8> {
        match self {
            RecordFormat::Tsv => tsv_header("azw_scores", &COLUMNS),
            RecordFormat::Notice => super::siem::notice_header(),
            RecordFormat::Csv => {
                let mut out = Vec::new();
                let mut w = csv::Writer::from_writer(&mut out);
                // Writing to a Vec cannot fail.
                let _ = w.write_record(COLUMNS.iter().map(|(n, _)| *n));
                drop(w);
                out
            }
            _ => Vec::new(),
        }
    }

    /// Appends one detection, with its line ending. JSON has the whole
    /// detection; TSV and CSV keep their columns: the entity's hosts, the
    /// score and threshold, `anomaly` true, the first uid, `detection` the
    /// detector's name, and in `top_features` the detector's name
    /// (`detection=beacon`) then the evidence as `name=value` items. The
    /// SIEM formats write it as an alert of the detector.
    pub fn write_detection(
        self,
        d: &Detection,
        stamp: &Stamp,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let start = out.len();
        match self {
            RecordFormat::Json => {
                serde_json::to_writer(&mut *out, d)?;
                append_sensor(out, start, stamp);
                out.push(b'\n');
                escape::json_in_place(out, start);
                Ok(())
            }
            RecordFormat::Tsv | RecordFormat::Csv => {
                self.write_row(&detection_row(d), Some(d.detection.name()), stamp, out)
            }
            _ => super::siem::write_detection(self, d, stamp, out),
        }
    }

    /// Appends one alert, with its line ending: JSON (the alert object)
    /// for json, tsv and csv (whose columns are a record's: alerts go to
    /// a file of their own there), the SIEM formats' alert documents
    /// otherwise.
    pub fn write_alert(self, a: &Alert, stamp: &Stamp, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            RecordFormat::Json | RecordFormat::Tsv | RecordFormat::Csv => {
                let start = out.len();
                serde_json::to_writer(&mut *out, a)?;
                append_sensor(out, start, stamp);
                out.push(b'\n');
                escape::json_in_place(out, start);
                Ok(())
            }
            _ => super::siem::write_alert(self, a, stamp, out),
        }
    }

    /// True when alerts can share the records' output (the JSON formats;
    /// TSV and CSV have a record's columns).
    pub fn takes_alerts(self) -> bool {
        !matches!(self, RecordFormat::Tsv | RecordFormat::Csv)
    }

    /// Appends one record, with its line ending (nothing for a record an
    /// alert format does not carry).
    pub fn write(self, record: &ScoredRecord, stamp: &Stamp, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            RecordFormat::Json => {
                let start = out.len();
                record.write_json(out)?;
                append_sensor(out, start, stamp);
                out.push(b'\n');
                escape::json_in_place(out, start);
                Ok(())
            }
            RecordFormat::Tsv | RecordFormat::Csv => self.write_row(record, None, stamp, out),
            _ => super::siem::write_record(self, record, stamp, out),
        }
    }

    fn write_row(
        self,
        record: &ScoredRecord,
        detection: Option<&str>,
        stamp: &Stamp,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        if self == RecordFormat::Tsv {
            let fields = fields(record, detection, stamp, "-");
            let line: Vec<String> = fields
                .into_iter()
                .map(|f| match f {
                    Field::Text(t) => escape::tsv_field(&t, false),
                    Field::Plain(p) => p,
                    Field::List(items) if items.is_empty() => "(empty)".into(),
                    Field::List(items) => items
                        .iter()
                        .map(|i| escape::tsv_field(i, true))
                        .collect::<Vec<_>>()
                        .join(","),
                    // TSV lists are Field::List; a JSON field stays one cell.
                    Field::Json(j) => escape::tsv_field(&j.to_string(), false),
                })
                .collect();
            out.write_all(line.join("\t").as_bytes())?;
            return out.write_all(b"\n");
        }
        let fields = fields(record, detection, stamp, "");
        let cells: Vec<std::borrow::Cow<'_, str>> = fields
            .iter()
            .map(|f| match f {
                Field::Text(t) => escape::csv_cell(t),
                Field::Plain(p) => p.into(),
                // `fields` builds CSV's lists as JSON cells, never as lists.
                Field::List(_) => "".into(),
                Field::Json(j) => json_cell(j).into(),
            })
            .collect();
        let mut w = csv::Writer::from_writer(out);
        w.write_record(cells.iter().map(|c| c.as_bytes()))?;
        w.flush()
    }
}

/// Appends `"sensor": ...` to the JSON object that `out[start..]` holds.
fn append_sensor(out: &mut Vec<u8>, start: usize, stamp: &Stamp) {
    if stamp.sensor.is_empty() || out.last() != Some(&b'}') || out.len() <= start + 1 {
        return;
    }
    out.pop();
    if out.len() > start + 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"sensor\":");
    // Serializing a string to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &stamp.sensor);
    out.push(b'}');
}

/// A detection as a row of the TSV and CSV columns.
pub(super) fn detection_row(d: &Detection) -> ScoredRecord {
    let mut top = vec![Contribution {
        feature: "detection".into(),
        share: 0.0,
        observed: Some(d.detection.name().into()),
        expected: None,
    }];
    if let Some(domain) = &d.domain {
        top.push(Contribution {
            feature: "domain".into(),
            share: 0.0,
            observed: Some(crate::score::bounded(domain, 256)),
            expected: None,
        });
    }
    top.extend(d.evidence.iter().map(|(k, v)| Contribution {
        feature: k.clone(),
        share: 0.0,
        observed: Some(crate::score::bounded(
            &v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            256,
        )),
        expected: None,
    }));
    ScoredRecord {
        uid: d.uids.first().map(CompactString::from),
        orig_h: Some(d.src),
        resp_h: d.dst,
        resp_p: d.resp_p,
        severity: Some(d.severity),
        top_features: Some(top),
        ..ScoredRecord::score_only(d.module, Some(d.ts), d.score, d.threshold, true)
    }
}

/// A JSON value as a CSV cell: no raw control, C1 or bidi character.
fn json_cell(v: &impl Serialize) -> String {
    let mut bytes = Vec::new();
    // Serializing strings and finite numbers to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut bytes, v);
    escape::json_in_place(&mut bytes, 0);
    String::from_utf8(bytes).unwrap_or_default()
}

/// A context value as text (TSV's `name=value` items): strings as they
/// are, lists joined with `,` (escaped inside a TSV set item).
pub(super) fn context_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(context_text).collect::<Vec<_>>().join(","),
        serde_json::Value::Bool(b) => if *b { "T" } else { "F" }.into(),
        other => other.to_string(),
    }
}

enum Field {
    /// Free text (a uid, a feature name): escaped for TSV.
    Text(String),
    /// A number, address or word that needs no escaping.
    Plain(String),
    /// TSV: a vector of free-text items.
    List(Vec<String>),
    /// CSV: a JSON cell.
    Json(serde_json::Value),
}

/// The columns of [`COLUMNS`] for one record; `unset` for a missing value
/// (`-` for TSV, where lists are [`Field::List`]; empty for CSV, where they
/// are JSON).
fn fields(r: &ScoredRecord, detection: Option<&str>, stamp: &Stamp, unset: &str) -> Vec<Field> {
    let tsv = !unset.is_empty();
    let plain = |v: Option<String>| Field::Plain(v.unwrap_or_else(|| unset.to_owned()));
    let text = |v: Option<&str>| {
        v.map(|t| Field::Text(t.to_owned()))
            .unwrap_or_else(|| plain(None))
    };
    let top = r.top_features.as_deref().unwrap_or_default();
    let top_field = if top.is_empty() {
        plain(None)
    } else if tsv {
        Field::List(top.iter().map(ToString::to_string).collect())
    } else {
        Field::Json(serde_json::to_value(top).unwrap_or_default())
    };
    let context: serde_json::Map<String, serde_json::Value> =
        r.context.to_map().into_iter().collect();
    let context_field = if context.is_empty() {
        plain(None)
    } else if tsv {
        Field::List(
            context
                .iter()
                .map(|(k, v)| format!("{k}={}", context_text(v)))
                .collect(),
        )
    } else {
        Field::Json(serde_json::Value::Object(context))
    };
    vec![
        plain(r.ts.map(|t| format!("{t:.6}"))),
        text(r.uid.as_deref()),
        Field::Plain(r.module.to_string()),
        plain(r.orig_h.map(|a| a.to_string())),
        plain(r.orig_p.map(|p| p.to_string())),
        plain(r.resp_h.map(|a| a.to_string())),
        plain(r.resp_p.map(|p| p.to_string())),
        text(r.proto.as_deref()),
        plain(r.trans_depth.map(|p| p.to_string())),
        plain(r.trans_id.map(|p| p.to_string())),
        text(r.community_id.as_deref()),
        plain(r.direction.as_ref().map(|d| d.to_string())),
        Field::Plain(r.score.to_string()),
        Field::Plain(r.threshold.to_string()),
        // Zeek's TSV writes booleans as T and F; CSV readers know true/false.
        Field::Plain(
            match (tsv, r.anomaly) {
                (true, true) => "T",
                (true, false) => "F",
                (false, true) => "true",
                (false, false) => "false",
            }
            .to_owned(),
        ),
        top_field,
        context_field,
        text(Some(stamp.sensor.as_str()).filter(|s| !s.is_empty())),
        text(detection),
    ]
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::score::Contribution;
    use crate::zeek::{LineParser, Parsed};
    use crate::LogKind;

    pub(crate) fn stamp() -> Stamp {
        Stamp {
            sensor: "sensor-1".into(),
        }
    }

    pub(crate) fn record(anomaly: bool) -> ScoredRecord {
        let mut context = std::collections::BTreeMap::new();
        context.insert("query".into(), serde_json::json!("example.com"));
        context.insert("answers".into(), serde_json::json!(["10.0.0.1", "a,b"]));
        context.insert("rcode_name".into(), serde_json::json!("NOERROR"));
        ScoredRecord {
            ts: Some(1521911851.136272),
            uid: Some("C0FSyu33TMaXqq4vR8".into()),
            module: LogKind::DNS,
            orig_h: Some("10.164.94.120".parse().unwrap()),
            orig_p: Some(39489),
            resp_h: Some("10.47.3.142".parse().unwrap()),
            resp_p: Some(53),
            proto: Some("udp".into()),
            trans_depth: None,
            trans_id: Some(4711),
            community_id: crate::community_id::CommunityId::parse("1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
            direction: Some("internal".into()),
            score: 0.4641,
            threshold: 0.2618,
            anomaly,
            severity: anomaly.then_some(crate::severity::Severity::Medium),
            p_normal: anomaly.then_some(3e-5),
            top_features: anomaly.then(|| {
                vec![
                    Contribution {
                        feature: "user_agent".into(),
                        share: 0.75,
                        observed: Some("Mozilla/5.0 (X11, Linux)\tx".into()),
                        expected: Some("never seen in training".into()),
                    },
                    Contribution {
                        feature: "rcode".into(),
                        share: 0.25,
                        observed: Some("3".into()),
                        expected: Some("1% of training records".into()),
                    },
                ]
            }),
            context: context.into(),
            model: None,
            line_hash: None,
        }
    }

    fn parse_tsv(bytes: &[u8], path: &str) -> Vec<crate::zeek::Record> {
        let mut parser = LineParser::new("out.log", Some(path));
        let mut records = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if let Parsed::Record(r) = parser.parse_line(line, i as u64 + 1).unwrap() {
                records.push(r);
            }
        }
        records
    }

    /// TSV output is a Zeek log our own reader reads back, value for value.
    #[test]
    fn tsv_reads_back_as_a_zeek_log() {
        let mut bytes = RecordFormat::Tsv.header();
        RecordFormat::Tsv
            .write(&record(true), &stamp(), &mut bytes)
            .unwrap();
        let mut unset = record(false);
        unset.uid = None;
        unset.orig_h = None;
        unset.context.clear();
        RecordFormat::Tsv
            .write(&unset, &Stamp::default(), &mut bytes)
            .unwrap();
        let records = parse_tsv(&bytes, "azw_scores");
        assert_eq!(records.len(), 2);
        let r = &records[0];
        assert_eq!(r.get("uid").as_str(), Some("C0FSyu33TMaXqq4vR8"));
        assert_eq!(
            r.get("id.resp_h").as_addr(),
            Some("10.47.3.142".parse().unwrap())
        );
        assert_eq!(r.get("id.resp_p").as_f64(), Some(53.0));
        assert_eq!(r.get("score").as_f64(), Some(0.4641));
        assert_eq!(r.get("trans_id").as_f64(), Some(4711.0));
        assert_eq!(
            r.get("community_id").as_str(),
            Some("1:d/FP5EW3wiY1vCndhwleRRKHowQ=")
        );
        assert_eq!(r.get("sensor").as_str(), Some("sensor-1"));
        assert_eq!(r.ts(), Some(1521911851.136272));
        let top: Vec<String> = r
            .get("top_features")
            .as_list()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            top,
            [
                "user_agent=Mozilla/5.0 (X11, Linux)\tx: never seen in training (75%)",
                "rcode=3: 1% of training records (25%)"
            ]
        );
        let context: Vec<String> = r
            .get("context")
            .as_list()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            context,
            [
                "answers=10.0.0.1,a,b",
                "query=example.com",
                "rcode_name=NOERROR"
            ]
        );
        assert!(records[1].get("uid").as_str().is_none());
        assert!(records[1].get("id.orig_h").as_addr().is_none());
        assert!(records[1].get("sensor").is_unset());
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let mut bytes = RecordFormat::Csv.header();
        RecordFormat::Csv
            .write(&record(true), &stamp(), &mut bytes)
            .unwrap();
        RecordFormat::Csv
            .write(&record(false), &stamp(), &mut bytes)
            .unwrap();
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        assert_eq!(header[0], "ts");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][1], "C0FSyu33TMaXqq4vR8");
        assert_eq!(&rows[0][col("anomaly")], "true");
        let top: Vec<Contribution> = serde_json::from_str(&rows[0][col("top_features")]).unwrap();
        assert_eq!(Some(top), record(true).top_features);
        let context: serde_json::Value = serde_json::from_str(&rows[0][col("context")]).unwrap();
        assert_eq!(context["answers"][1], "a,b");
        assert_eq!(&rows[1][col("anomaly")], "false");
        assert_eq!(&rows[1][col("top_features")], "");
        assert_eq!(&rows[1][col("sensor")], "sensor-1");
    }

    /// A record whose every free text is hostile: uid and proto (a JSON
    /// log can hold anything there), context values, and the values in
    /// its top features.
    pub(crate) fn hostile_record() -> ScoredRecord {
        let mut r = record(true);
        r.uid = Some("=cmd|' /C calc'!A0".into());
        r.proto = Some("\x1b[2J\x07".into());
        r.top_features = Some(
            crate::escape::tests::HOSTILE
                .iter()
                .map(|v| Contribution {
                    feature: "user_agent".into(),
                    share: 0.1,
                    observed: Some((*v).to_owned()),
                    expected: Some(format!("never {v}")),
                })
                .collect(),
        );
        for (i, v) in crate::escape::tests::HOSTILE.iter().enumerate() {
            r.context.insert(format!("f{i}"), serde_json::json!(v));
        }
        r.context.insert(
            "list".into(),
            serde_json::json!(crate::escape::tests::HOSTILE),
        );
        r.context.insert(
            "service".into(),
            serde_json::json!(crate::escape::tests::HOSTILE[0]),
        );
        r
    }

    fn hostile_stamp() -> Stamp {
        Stamp {
            sensor: "sensor\u{202e}\x1b".into(),
        }
    }

    /// Every format: no raw control, C1 or bidi byte anywhere but the line
    /// ends (and TSV's tab separators), one record per line.
    fn assert_lines(format: RecordFormat) -> Vec<u8> {
        let header = format.header();
        let header_lines = header.iter().filter(|b| **b == b'\n').count();
        let mut bytes = header;
        for _ in 0..3 {
            format
                .write(&hostile_record(), &hostile_stamp(), &mut bytes)
                .unwrap();
        }
        let text = std::str::from_utf8(&bytes).unwrap();
        let separator = if matches!(format, RecordFormat::Tsv | RecordFormat::Notice) {
            "\t"
        } else {
            ""
        };
        let cells = text.replace('\n', "");
        crate::escape::tests::assert_inert(&cells.replace(separator, ""));
        assert_eq!(text.lines().count(), header_lines + 3, "{text}");
        bytes
    }

    #[test]
    fn hostile_text_stays_inert_in_every_format() {
        for format in RecordFormat::ALL {
            let bytes = assert_lines(format);
            if format.is_json_lines() {
                for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                    assert!(v.is_object(), "{format:?}");
                }
            }
        }
    }

    #[test]
    fn hostile_text_reads_back_from_json() {
        let bytes = assert_lines(RecordFormat::Json);
        let first = bytes.split(|b| *b == b'\n').next().unwrap();
        let back: ScoredRecord = serde_json::from_slice(first).unwrap();
        assert_eq!(back, hostile_record());
        let v: serde_json::Value = serde_json::from_slice(first).unwrap();
        assert_eq!(v["sensor"], hostile_stamp().sensor);
    }

    #[test]
    fn hostile_text_reads_back_from_tsv() {
        let bytes = assert_lines(RecordFormat::Tsv);
        let records = parse_tsv(&bytes, "azw_scores");
        assert_eq!(records.len(), 3);
        let want = hostile_record();
        assert_eq!(records[0].get("uid").as_str(), want.uid.as_deref());
        assert_eq!(records[0].get("proto").as_str(), want.proto.as_deref());
        assert_eq!(
            records[0].get("sensor").as_str(),
            Some(hostile_stamp().sensor.as_str())
        );
    }

    #[test]
    fn hostile_text_reads_back_from_csv() {
        let bytes = assert_lines(RecordFormat::Csv);
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        for row in reader.records() {
            let row = row.unwrap();
            assert_eq!(row.len(), COLUMNS.len());
            for cell in row.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "formula: {cell:?}"
                );
            }
            // The top features are a JSON list: values with `;`, `,` and
            // `"` come back whole.
            let top: Vec<Contribution> = serde_json::from_str(&row[15]).unwrap();
            assert_eq!(Some(top), hostile_record().top_features);
        }
    }

    #[test]
    fn json_is_the_scored_record() {
        let mut bytes = RecordFormat::Json.header();
        assert!(bytes.is_empty());
        RecordFormat::Json
            .write(&record(true), &Stamp::default(), &mut bytes)
            .unwrap();
        let back: ScoredRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, record(true));
        assert!(!String::from_utf8_lossy(&bytes).contains("sensor"));
    }

    #[test]
    fn formats_parse_by_name() {
        for f in RecordFormat::ALL {
            assert_eq!(f.name().parse::<RecordFormat>(), Ok(f));
        }
        assert_eq!(
            "NOTICE-JSON".parse::<RecordFormat>(),
            Ok(RecordFormat::NoticeJson)
        );
        assert!("xml"
            .parse::<RecordFormat>()
            .unwrap_err()
            .contains("notice-json"));
    }
}
