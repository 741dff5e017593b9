//! How a scored record is written: a JSON line (the default, and what Kafka
//! outputs carry), a Zeek TSV line (for tools that read Zeek logs, including
//! `azw-infer`'s own reader), or a CSV row (for spreadsheets and SIEM
//! imports). The columns are the same in all three.
//!
//! Free text in a record (the uid and proto of a JSON log, the learned
//! values in `top_features`) was chosen by whoever sent the traffic, so
//! each format escapes it ([`crate::escape`]): no output line carries a raw
//! control, C1 or bidi character, and every record is one line.
//!
//! - JSON: serde_json escapes C0 controls; DEL, C1 and bidi characters are
//!   written as `\uXXXX` too (same text for a JSON reader).
//! - TSV: Zeek's `\xHH` escapes, extended to C1 and bidi characters.
//! - CSV: text cells get [`escape::terminal`]'s visible escapes and a `'`
//!   before a leading `=`, `+`, `-` or `@` (formula injection);
//!   `top_features` is a JSON list, `[{"feature":"rcode=3","share":0.25}]`,
//!   the same objects as in the JSON output, so a `;` or `,` in a learned
//!   value cannot be mistaken for a separator.

use std::io::{self, Write};

use serde::Serialize;

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
}

impl std::str::FromStr for RecordFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<RecordFormat, String> {
        RecordFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown format `{s}`: choose json, tsv or csv"))
    }
}

/// The columns of TSV and CSV, with their Zeek types.
const COLUMNS: [(&str, &str); 12] = [
    ("ts", "time"),
    ("uid", "string"),
    ("module", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("score", "double"),
    ("threshold", "double"),
    ("anomaly", "bool"),
    ("top_features", "vector[string]"),
];

impl RecordFormat {
    pub const ALL: [RecordFormat; 3] = [RecordFormat::Json, RecordFormat::Tsv, RecordFormat::Csv];

    /// The name `--format` takes.
    pub fn name(self) -> &'static str {
        match self {
            RecordFormat::Json => "json",
            RecordFormat::Tsv => "tsv",
            RecordFormat::Csv => "csv",
        }
    }

    /// What a new (empty) file starts with.
    pub fn header(self) -> Vec<u8> {
        let names = || COLUMNS.iter().map(|(n, _)| *n);
        match self {
            RecordFormat::Json => Vec::new(),
            RecordFormat::Tsv => {
                let mut h = String::from(
                    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tazw_scores\n",
                );
                h.push_str("#fields\t");
                h.push_str(&names().collect::<Vec<_>>().join("\t"));
                h.push_str("\n#types\t");
                h.push_str(
                    &COLUMNS
                        .iter()
                        .map(|(_, t)| *t)
                        .collect::<Vec<_>>()
                        .join("\t"),
                );
                h.push('\n');
                h.into_bytes()
            }
            RecordFormat::Csv => {
                let mut out = Vec::new();
                let mut w = csv::Writer::from_writer(&mut out);
                // Writing to a Vec cannot fail.
                let _ = w.write_record(names());
                drop(w);
                out
            }
        }
    }

    /// Appends one detection, with its line ending. JSON has the whole
    /// detection; TSV and CSV keep their columns: the entity's hosts, the
    /// score and threshold, `anomaly` true, the first uid, and in
    /// `top_features` the detector's name (`detection=beacon`) then the
    /// evidence as `name=value` items (their share column is 0).
    pub fn write_detection(self, d: &Detection, out: &mut Vec<u8>) -> io::Result<()> {
        if self == RecordFormat::Json {
            let start = out.len();
            serde_json::to_writer(&mut *out, d)?;
            out.push(b'\n');
            escape::json_in_place(out, start);
            return Ok(());
        }
        let mut top = vec![Contribution {
            feature: format!("detection={}", d.detection),
            share: 1.0,
        }];
        if let Some(domain) = &d.domain {
            top.push(Contribution {
                feature: format!("domain={domain}"),
                share: 0.0,
            });
        }
        top.extend(d.evidence.iter().map(|(k, v)| Contribution {
            feature: format!(
                "{k}={}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            ),
            share: 0.0,
        }));
        let row = ScoredRecord {
            ts: Some(d.ts),
            uid: d.uids.first().cloned(),
            module: d.module,
            orig_h: Some(d.src),
            orig_p: None,
            resp_h: d.dst,
            resp_p: d.resp_p,
            proto: None,
            score: d.score,
            threshold: d.threshold,
            anomaly: true,
            top_features: Some(top),
        };
        self.write(&row, out)
    }

    /// Appends one record, with its line ending.
    pub fn write(self, record: &ScoredRecord, out: &mut Vec<u8>) -> io::Result<()> {
        match self {
            RecordFormat::Json => {
                let start = out.len();
                record.write_json_line(out)?;
                escape::json_in_place(out, start);
                Ok(())
            }
            RecordFormat::Tsv => {
                let fields = fields(record, "-", |f| {
                    f.iter()
                        .map(|(name, share)| escape::tsv_field(&format!("{name}:{share}"), true))
                        .collect::<Vec<_>>()
                        .join(",")
                });
                let line: Vec<String> = fields
                    .into_iter()
                    .map(|f| match f {
                        Field::Text(t) => escape::tsv_field(&t, false),
                        Field::Plain(p) => p,
                    })
                    .collect();
                out.write_all(line.join("\t").as_bytes())?;
                out.write_all(b"\n")
            }
            RecordFormat::Csv => {
                let fields = fields(record, "", csv_top_features);
                let cells: Vec<std::borrow::Cow<'_, str>> = fields
                    .iter()
                    .map(|f| match f {
                        Field::Text(t) => escape::csv_cell(t),
                        Field::Plain(p) => p.into(),
                    })
                    .collect();
                let mut w = csv::Writer::from_writer(out);
                w.write_record(cells.iter().map(|c| c.as_bytes()))?;
                w.flush()
            }
        }
    }
}

/// One element of CSV's `top_features` list: the JSON output's shape.
#[derive(Serialize)]
struct TopFeature<'a> {
    feature: &'a str,
    share: f64,
}

/// CSV's `top_features` cell: a JSON list, unambiguous whatever the
/// learned values hold, with no raw control, C1 or bidi character.
fn csv_top_features(top: &[(&str, f64)]) -> String {
    let list: Vec<TopFeature<'_>> = top
        .iter()
        .map(|&(feature, share)| TopFeature { feature, share })
        .collect();
    let mut bytes = Vec::new();
    // Serializing strings and finite numbers to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut bytes, &list);
    escape::json_in_place(&mut bytes, 0);
    String::from_utf8(bytes).unwrap_or_default()
}

enum Field {
    /// Free text (a uid, a feature name): escaped for TSV.
    Text(String),
    /// A number, address or word that needs no escaping.
    Plain(String),
}

/// The columns of [`COLUMNS`] for one record; `unset` for a missing value.
fn fields(
    r: &ScoredRecord,
    unset: &str,
    features: impl Fn(&[(&str, f64)]) -> String,
) -> Vec<Field> {
    let plain = |v: Option<String>| Field::Plain(v.unwrap_or_else(|| unset.to_owned()));
    let top: Vec<(&str, f64)> = r
        .top_features
        .iter()
        .flatten()
        .map(|c| (c.feature.as_str(), c.share))
        .collect();
    vec![
        plain(r.ts.map(|t| format!("{t:.6}"))),
        r.uid
            .clone()
            .map(Field::Text)
            .unwrap_or_else(|| plain(None)),
        Field::Plain(r.module.to_string()),
        plain(r.orig_h.map(|a| a.to_string())),
        plain(r.orig_p.map(|p| p.to_string())),
        plain(r.resp_h.map(|a| a.to_string())),
        plain(r.resp_p.map(|p| p.to_string())),
        r.proto
            .clone()
            .map(Field::Text)
            .unwrap_or_else(|| plain(None)),
        Field::Plain(r.score.to_string()),
        Field::Plain(r.threshold.to_string()),
        // Zeek's TSV writes booleans as T and F; CSV readers know true/false.
        Field::Plain(
            match (unset.is_empty(), r.anomaly) {
                (false, true) => "T",
                (false, false) => "F",
                (true, true) => "true",
                (true, false) => "false",
            }
            .to_owned(),
        ),
        if top.is_empty() {
            plain(None)
        } else {
            // Already escaped element by element for TSV.
            Field::Plain(features(&top))
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::Contribution;
    use crate::zeek::{LineParser, Parsed};
    use crate::LogKind;

    fn record(anomaly: bool) -> ScoredRecord {
        ScoredRecord {
            ts: Some(1521911851.136272),
            uid: Some("C0FSyu33TMaXqq4vR8".into()),
            module: LogKind::Dns,
            orig_h: Some("10.164.94.120".parse().unwrap()),
            orig_p: Some(39489),
            resp_h: Some("10.47.3.142".parse().unwrap()),
            resp_p: Some(53),
            proto: Some("udp".into()),
            score: 0.4641,
            threshold: 0.2618,
            anomaly,
            top_features: anomaly.then(|| {
                vec![
                    Contribution {
                        feature: "user_agent=Mozilla/5.0 (X11, Linux)\tx".into(),
                        share: 0.75,
                    },
                    Contribution {
                        feature: "rcode=3".into(),
                        share: 0.25,
                    },
                ]
            }),
        }
    }

    /// TSV output is a Zeek log our own reader reads back, value for value.
    #[test]
    fn tsv_reads_back_as_a_zeek_log() {
        let mut bytes = RecordFormat::Tsv.header();
        RecordFormat::Tsv.write(&record(true), &mut bytes).unwrap();
        let mut unset = record(false);
        unset.uid = None;
        unset.orig_h = None;
        RecordFormat::Tsv.write(&unset, &mut bytes).unwrap();
        let mut parser = LineParser::new("scores.log", Some("azw_scores"));
        let mut records = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if let Parsed::Record(r) = parser.parse_line(line, i as u64 + 1).unwrap() {
                records.push(r);
            }
        }
        assert_eq!(records.len(), 2);
        let r = &records[0];
        assert_eq!(r.get("uid").as_str(), Some("C0FSyu33TMaXqq4vR8"));
        assert_eq!(
            r.get("id.resp_h").as_addr(),
            Some("10.47.3.142".parse().unwrap())
        );
        assert_eq!(r.get("id.resp_p").as_f64(), Some(53.0));
        assert_eq!(r.get("score").as_f64(), Some(0.4641));
        assert_eq!(r.ts(), Some(1521911851.136272));
        let top = format!("{:?}", r.get("top_features"));
        assert!(
            top.contains("(X11, Linux)\\tx:0.75") && top.contains("rcode=3:0.25"),
            "{top}"
        );
        assert!(records[1].get("uid").as_str().is_none());
        assert!(records[1].get("id.orig_h").as_addr().is_none());
    }

    #[test]
    fn csv_has_a_header_and_quotes_what_needs_it() {
        let mut bytes = RecordFormat::Csv.header();
        RecordFormat::Csv.write(&record(true), &mut bytes).unwrap();
        RecordFormat::Csv.write(&record(false), &mut bytes).unwrap();
        let mut reader = csv::Reader::from_reader(&bytes[..]);
        let header: Vec<String> = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(header[0], "ts");
        assert_eq!(header[11], "top_features");
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][1], "C0FSyu33TMaXqq4vR8");
        assert_eq!(&rows[0][10], "true");
        assert_eq!(
            &rows[0][11],
            r#"[{"feature":"user_agent=Mozilla/5.0 (X11, Linux)\tx","share":0.75},{"feature":"rcode=3","share":0.25}]"#
        );
        assert_eq!(&rows[1][10], "false");
        assert_eq!(&rows[1][11], "");
    }

    /// A record whose every free text is hostile: uid and proto (a JSON
    /// log can hold anything there) and the learned values in its top
    /// features.
    fn hostile_record() -> ScoredRecord {
        let mut r = record(true);
        r.uid = Some("=cmd|' /C calc'!A0".into());
        r.proto = Some("\x1b[2J\x07".into());
        r.top_features = Some(
            crate::escape::tests::HOSTILE
                .iter()
                .map(|v| Contribution {
                    feature: format!("user_agent={v}"),
                    share: 0.1,
                })
                .collect(),
        );
        r
    }

    /// Every format: no raw control, C1 or bidi byte anywhere but the line
    /// ends (and TSV's tab separators), one record per line.
    fn assert_lines(format: RecordFormat, header_lines: usize) -> Vec<u8> {
        let mut bytes = format.header();
        for _ in 0..3 {
            format.write(&hostile_record(), &mut bytes).unwrap();
        }
        let text = std::str::from_utf8(&bytes).unwrap();
        let separator = if format == RecordFormat::Tsv {
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
    fn hostile_text_stays_inert_in_json() {
        let bytes = assert_lines(RecordFormat::Json, 0);
        let first = bytes.split(|b| *b == b'\n').next().unwrap();
        let back: ScoredRecord = serde_json::from_slice(first).unwrap();
        assert_eq!(back, hostile_record());
    }

    #[test]
    fn hostile_text_stays_inert_in_tsv() {
        let bytes = assert_lines(RecordFormat::Tsv, 7);
        let mut parser = LineParser::new("scores.log", Some("azw_scores"));
        let mut records = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if let Parsed::Record(r) = parser.parse_line(line, i as u64 + 1).unwrap() {
                records.push(r);
            }
        }
        assert_eq!(records.len(), 3);
        let want = hostile_record();
        assert_eq!(records[0].get("uid").as_str(), want.uid.as_deref());
        assert_eq!(records[0].get("proto").as_str(), want.proto.as_deref());
    }

    #[test]
    fn hostile_text_stays_inert_in_csv() {
        let bytes = assert_lines(RecordFormat::Csv, 1);
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
            let top: Vec<Contribution> = serde_json::from_str(&row[11]).unwrap();
            assert_eq!(Some(top), hostile_record().top_features);
        }
    }

    #[test]
    fn json_is_the_scored_record() {
        let mut bytes = RecordFormat::Json.header();
        assert!(bytes.is_empty());
        RecordFormat::Json.write(&record(true), &mut bytes).unwrap();
        let back: ScoredRecord = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, record(true));
    }
}
