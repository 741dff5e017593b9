//! Labeled Zeek logs: rows with their ground truth, label columns apart.
//!
//! Labeled captures add label columns to Zeek's TSV, in two layouts:
//!
//! - Stratosphere (CTU captures, the IDPS comparison tool): tab columns
//!   `label` and `detailedlabel` (`Benign`, `Malicious`, `Background`, or
//!   `(empty)` for rows nobody labeled).
//! - IoT-23: the last field name is `tunnel_parents   label   detailed-label`
//!   and each row's last column holds the three values joined by three spaces
//!   (`-   Malicious   PartOfAHorizontalPortScan`); the `#types` entry is
//!   joined the same way.
//!
//! This is a light pass of its own over the lines (plain or gzip), not the
//! Zeek reader: it finds the label columns from the `#fields` header, splits
//! the joined IoT-23 column, and keeps each row's other columns as written,
//! so they can be written back as a plain Zeek log the reader and the models
//! never see a label in.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::BufRead;

use crate::zeek::CappedLines;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The names label columns go by.
const LABEL_FIELDS: &[&str] = &["label"];
const DETAIL_FIELDS: &[&str] = &["detailedlabel", "detailed-label", "detailed_label"];
/// IoT-23 joins its last three columns with this.
const JOIN: &str = "   ";

/// Ground truth of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Benign,
    Malicious,
}

impl Class {
    pub fn is_malicious(self) -> bool {
        self == Class::Malicious
    }
}

/// Reads a label value, in any case: `Malicious...` and `Benign...` count
/// (`malicious`, `Malicious-C&C`); `Background`, `Unknown`, `(empty)`, `-`
/// and anything else are unlabeled and left out of every measurement. The
/// 0/1 of a labels file count too.
pub fn parse_class(value: &str) -> Option<Class> {
    let v = value.trim().to_ascii_lowercase();
    if v.starts_with("malicious") || v == "1" {
        Some(Class::Malicious)
    } else if v.starts_with("benign") || v == "0" {
        Some(Class::Benign)
    } else {
        None
    }
}

/// A detailed label as people read it: the unset marks become empty.
pub fn clean_detail(value: &str) -> String {
    let v = value.trim();
    if v == "-" || v == "(empty)" {
        String::new()
    } else {
        v.to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no `#fields` header: not a Zeek TSV log (labeled logs are Zeek TSV with label columns)", path.display())]
    NoFields { path: PathBuf },
    #[error("{}: no `label` column in the `#fields` header ({fields}): not a labeled log", path.display())]
    NoLabel { path: PathBuf, fields: String },
    #[error("{}:{line}: {reason}", path.display())]
    Labels {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// The header of a run of rows, with the label columns taken out.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// `#separator`, `#set_separator`, `#empty_field`, `#unset_field` and
    /// `#path` lines as written, to write the rows back.
    pub meta: Vec<String>,
    pub fields: Vec<String>,
    pub types: Vec<String>,
    /// The row separator.
    pub separator: String,
}

impl Header {
    /// The header of a plain Zeek TSV log of these rows.
    pub fn to_tsv(&self) -> String {
        let mut s = String::new();
        for m in &self.meta {
            let _ = writeln!(s, "{m}");
        }
        let _ = writeln!(s, "#open\t2020-01-01-00-00-00");
        let _ = writeln!(s, "#fields\t{}", self.fields.join("\t"));
        if !self.types.is_empty() {
            let _ = writeln!(s, "#types\t{}", self.types.join("\t"));
        }
        s
    }
}

/// One labeled row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Index of its header in [`LabeledLog::headers`].
    pub header: usize,
    pub ts: f64,
    pub uid: Option<String>,
    /// `None`: unlabeled (background, unknown, empty).
    pub class: Option<Class>,
    /// The detailed label (empty when there is none).
    pub detail: String,
    /// The line with the label columns taken out, separator-joined.
    pub line: String,
}

/// A labeled log read whole.
#[derive(Debug, Clone)]
pub struct LabeledLog {
    pub path: PathBuf,
    /// `#path` of the file, if it says.
    pub log_path: Option<String>,
    pub headers: Vec<Header>,
    pub rows: Vec<Row>,
    /// Data lines that could not be read (wrong column count, no `ts`).
    pub skipped: u64,
    /// The first few reasons, for the report.
    pub skip_reasons: Vec<String>,
    /// Whether the IoT-23 joined layout was found.
    pub joined_layout: bool,
}

/// Where the label columns of a header are.
#[derive(Debug, Clone)]
struct Layout {
    /// Index of the joined IoT-23 column in the raw split, if any.
    joined: Option<usize>,
    /// Number of raw columns a line has.
    raw_columns: usize,
    label: usize,
    detail: Option<usize>,
    ts: Option<usize>,
    uid: Option<usize>,
    /// Expanded column indices kept for the features.
    keep: Vec<usize>,
}

/// Opens a file, plain or compressed (found from the content,
/// [`crate::compress`]). Only a regular file: a FIFO would block and a
/// device never end.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let (_, text) = crate::compress::decompressed(crate::safe_fs::open_regular(path)?)?;
    Ok(text)
}

/// Does the file look like a labeled log (a `label` column in `#fields`)?
/// Reads only its header.
pub fn is_labeled(path: &Path) -> std::io::Result<bool> {
    let mut lines = CappedLines::new(open(path)?);
    for _ in 0..64 {
        let line = match lines.next_line()? {
            None => break,
            Some(Err(_)) => return Ok(false),
            Some(Ok(line)) => line,
        };
        let text = String::from_utf8_lossy(line);
        let text = text.trim_start_matches('\t').trim_end_matches(['\r', '\n']);
        if let Some(rest) = text.strip_prefix("#fields") {
            return Ok(expand(rest.trim_start_matches(['\t', ' ']).split('\t'))
                .iter()
                .any(|f| LABEL_FIELDS.contains(&f.as_str())));
        }
        if !text.starts_with('#') && !text.is_empty() {
            return Ok(false);
        }
    }
    Ok(false)
}

/// Splits joined names (`tunnel_parents   label   detailed-label`).
fn expand<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out = Vec::new();
    for item in items {
        if item.contains(JOIN) {
            out.extend(item.split(JOIN).map(|s| s.trim().to_owned()));
        } else {
            out.push(item.to_owned());
        }
    }
    out
}

/// Decodes `\xHH` escapes of a `#separator` value.
fn unescape_separator(raw: &str) -> String {
    let mut out = Vec::new();
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1] == b'x' {
            if let Some(v) = std::str::from_utf8(&b[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        if b[i..].starts_with(b"\\t") {
            out.push(b'\t');
            i += 2;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl LabeledLog {
    /// Reads a labeled log: every data row with its class and detailed
    /// label, and the rest of its columns for writing back.
    pub fn read(path: &Path) -> Result<LabeledLog, LabelError> {
        let io = |source| LabelError::Io {
            path: path.to_owned(),
            source,
        };
        let mut lines = CappedLines::new(open(path).map_err(io)?);
        let mut log = LabeledLog {
            path: path.to_owned(),
            log_path: None,
            headers: Vec::new(),
            rows: Vec::new(),
            skipped: 0,
            skip_reasons: Vec::new(),
            joined_layout: false,
        };
        let mut separator = "\t".to_owned();
        let mut meta: Vec<(String, String)> = Vec::new();
        let mut raw_fields: Option<Vec<String>> = None;
        let mut raw_types: Vec<String> = Vec::new();
        let mut layout: Option<Layout> = None;
        let mut line_no = 0u64;
        while let Some(line) = lines.next_line().map_err(io)? {
            line_no += 1;
            let line = match line {
                Ok(line) => line,
                Err(bytes) => {
                    // Held in memory only up to the cap, then skipped.
                    log.skipped += 1;
                    if log.skip_reasons.len() < 5 {
                        log.skip_reasons.push(format!(
                            "{}:{line_no}: line of {bytes} bytes, longer than {} (--max-line-bytes)",
                            path.display(),
                            crate::zeek::max_line()
                        ));
                    }
                    continue;
                }
            };
            let text = String::from_utf8_lossy(line);
            let text = text.trim_end_matches(['\r', '\n']);
            if text.is_empty() {
                continue;
            }
            let head = text.trim_start_matches('\t');
            if head.starts_with('#') {
                let (key, value) = match head.find(['\t', ' ']) {
                    Some(i) => (&head[..i], &head[i + 1..]),
                    None => (head, ""),
                };
                match key {
                    "#separator" => {
                        separator = unescape_separator(value.trim());
                        if separator.is_empty() {
                            separator = "\t".into();
                        }
                        set_meta(&mut meta, key, format!("{key} {}", value.trim()));
                    }
                    "#set_separator" | "#empty_field" | "#unset_field" => {
                        let v = value.split(separator.as_str()).next().unwrap_or("");
                        set_meta(&mut meta, key, format!("{key}{separator}{v}"));
                    }
                    "#path" => {
                        let v = value.split(separator.as_str()).next().unwrap_or("").trim();
                        log.log_path = Some(v.to_owned());
                        set_meta(&mut meta, key, format!("{key}{separator}{v}"));
                    }
                    "#fields" => {
                        raw_fields =
                            Some(value.split(separator.as_str()).map(str::to_owned).collect());
                        raw_types.clear();
                        layout = None;
                    }
                    "#types" => {
                        raw_types = value.split(separator.as_str()).map(str::to_owned).collect();
                        layout = None;
                    }
                    _ => {}
                }
                continue;
            }
            let Some(fields) = raw_fields.as_ref() else {
                return Err(LabelError::NoFields {
                    path: path.to_owned(),
                });
            };
            if layout.is_none() {
                let (l, header) = make_layout(path, fields, &raw_types, &meta, &separator)?;
                log.joined_layout |= l.joined.is_some();
                log.headers.push(header);
                layout = Some(l);
            }
            let l = layout.as_ref().expect("set above");
            match split_row(text, &separator, l) {
                Ok((ts, uid, class, detail, kept)) => log.rows.push(Row {
                    header: log.headers.len() - 1,
                    ts,
                    uid,
                    class,
                    detail,
                    line: kept,
                }),
                Err(reason) => {
                    log.skipped += 1;
                    if log.skip_reasons.len() < 5 {
                        log.skip_reasons
                            .push(format!("{}:{line_no}: {reason}", path.display()));
                    }
                }
            }
        }
        if raw_fields.is_none() {
            return Err(LabelError::NoFields {
                path: path.to_owned(),
            });
        }
        Ok(log)
    }

    /// Counts of benign, malicious and unlabeled rows.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.rows {
            match r.class {
                Some(Class::Benign) => c.0 += 1,
                Some(Class::Malicious) => c.1 += 1,
                None => c.2 += 1,
            }
        }
        c
    }
}

fn set_meta(meta: &mut Vec<(String, String)>, key: &str, line: String) {
    match meta.iter_mut().find(|(k, _)| k == key) {
        Some(m) => m.1 = line,
        None => meta.push((key.to_owned(), line)),
    }
}

fn make_layout(
    path: &Path,
    raw_fields: &[String],
    raw_types: &[String],
    meta: &[(String, String)],
    separator: &str,
) -> Result<(Layout, Header), LabelError> {
    let joined = raw_fields.iter().position(|f| f.contains(JOIN));
    let fields = expand(raw_fields.iter().map(String::as_str));
    let types = expand(raw_types.iter().map(String::as_str));
    let find = |names: &[&str]| {
        fields
            .iter()
            .position(|f| names.contains(&f.to_ascii_lowercase().as_str()))
    };
    let Some(label) = find(LABEL_FIELDS) else {
        return Err(LabelError::NoLabel {
            path: path.to_owned(),
            fields: fields.join(" "),
        });
    };
    let detail = find(DETAIL_FIELDS);
    let keep: Vec<usize> = (0..fields.len())
        .filter(|&i| i != label && Some(i) != detail)
        .collect();
    let header = Header {
        meta: meta.iter().map(|(_, l)| l.clone()).collect(),
        fields: keep.iter().map(|&i| fields[i].clone()).collect(),
        types: if types.len() == fields.len() {
            keep.iter().map(|&i| types[i].clone()).collect()
        } else {
            Vec::new()
        },
        separator: separator.to_owned(),
    };
    let layout = Layout {
        joined,
        raw_columns: raw_fields.len(),
        label,
        detail,
        ts: fields.iter().position(|f| f == "ts"),
        uid: fields.iter().position(|f| f == "uid"),
        keep,
    };
    Ok((layout, header))
}

type SplitRow = (f64, Option<String>, Option<Class>, String, String);

fn split_row(text: &str, separator: &str, l: &Layout) -> Result<SplitRow, String> {
    let raw: Vec<&str> = text.split(separator).collect();
    // Trailing empty columns are tolerated, like the Zeek reader does.
    let mut n = raw.len();
    while n > l.raw_columns && raw[n - 1].is_empty() {
        n -= 1;
    }
    if n != l.raw_columns {
        return Err(format!(
            "{n} columns, but the #fields header names {}",
            l.raw_columns
        ));
    }
    let mut cols: Vec<&str> = Vec::with_capacity(l.keep.len() + 2);
    for (i, c) in raw[..n].iter().enumerate() {
        if Some(i) == l.joined {
            let parts: Vec<&str> = c.split(JOIN).collect();
            if parts.len() != 3 {
                return Err(format!(
                    "the joined last column `{c}` is not three values separated by three spaces"
                ));
            }
            cols.extend(parts.iter().map(|p| p.trim()));
        } else {
            cols.push(c);
        }
    }
    let ts_text = l.ts.map(|i| cols[i]).unwrap_or("");
    let ts: f64 = ts_text
        .parse()
        .ok()
        .filter(|t: &f64| t.is_finite())
        .ok_or_else(|| format!("no usable ts (`{ts_text}`)"))?;
    let uid = l
        .uid
        .map(|i| cols[i])
        .filter(|u| *u != "-" && !u.is_empty())
        .map(str::to_owned);
    let class = parse_class(cols[l.label]);
    let detail = l.detail.map(|i| clean_detail(cols[i])).unwrap_or_default();
    let kept: Vec<&str> = l.keep.iter().map(|&i| cols[i]).collect();
    Ok((ts, uid, class, detail, kept.join(separator)))
}

/// Ground truth by uid, from a labels file: `uid<TAB>label[<TAB>detail]`,
/// where the label is 0/1 or a label word (`Malicious`, `benign`); lines
/// starting with `#` and unlabeled rows are skipped. The format of
/// `make_eval_set.py`'s `labels.tsv`.
pub fn read_labels_file(path: &Path) -> Result<HashMap<String, (Class, String)>, LabelError> {
    let io = |source| LabelError::Io {
        path: path.to_owned(),
        source,
    };
    let mut lines = CappedLines::new(open(path).map_err(io)?);
    let mut out: HashMap<String, (Class, String)> = HashMap::new();
    let mut i = 0usize;
    while let Some(line) = lines.next_line().map_err(io)? {
        i += 1;
        // A line over the cap holds no label we could use.
        let Ok(line) = line else { continue };
        let text = String::from_utf8_lossy(line);
        let line = text.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split('\t');
        let uid = parts.next().unwrap_or("").trim();
        let Some(label) = parts.next() else {
            return Err(LabelError::Labels {
                path: path.to_owned(),
                line: i as u64,
                reason: "expected `uid<TAB>label[<TAB>detail]`".into(),
            });
        };
        let Some(class) = parse_class(label) else {
            continue;
        };
        let detail = parts.next().map(clean_detail).unwrap_or_default();
        merge(&mut out, uid.to_owned(), class, detail);
    }
    Ok(out)
}

/// Adds a row's truth to a uid: a uid with any malicious row is malicious
/// (and keeps that row's detailed label).
pub fn merge(
    map: &mut HashMap<String, (Class, String)>,
    uid: String,
    class: Class,
    detail: String,
) {
    match map.get_mut(&uid) {
        Some(e) => {
            if class > e.0 {
                *e = (class, detail);
            }
        }
        None => {
            map.insert(uid, (class, detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn classes_in_any_case() {
        assert_eq!(parse_class("Malicious"), Some(Class::Malicious));
        assert_eq!(parse_class(" MALICIOUS "), Some(Class::Malicious));
        assert_eq!(parse_class("benign"), Some(Class::Benign));
        assert_eq!(parse_class("1"), Some(Class::Malicious));
        assert_eq!(parse_class("0"), Some(Class::Benign));
        for unlabeled in ["Background", "Unknown", "(empty)", "-", ""] {
            assert_eq!(parse_class(unlabeled), None, "{unlabeled}");
        }
    }

    #[test]
    fn stratosphere_columns_are_found_and_taken_out() {
        let f = write(
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
             #fields\tts\tuid\tproto\tlabel\tdetailedlabel\n#types\ttime\tstring\tenum\tstring\tstring\n\
             2.5\tC2\tudp\tMalicious\tC&C\n1.5\tC1\ttcp\tBenign\t(empty)\n3.0\tC3\ttcp\tBackground\t(empty)\n\
             4.0\tC4\ttcp\tBenign\n",
        );
        let log = LabeledLog::read(f.path()).unwrap();
        assert_eq!(log.log_path.as_deref(), Some("conn"));
        assert!(!log.joined_layout);
        assert_eq!(log.headers[0].fields, ["ts", "uid", "proto"]);
        assert_eq!(log.headers[0].types, ["time", "string", "enum"]);
        assert_eq!(log.rows.len(), 3);
        assert_eq!(log.skipped, 1, "the short line");
        let r = &log.rows[0];
        assert_eq!(
            (r.ts, r.uid.as_deref(), r.class, r.detail.as_str()),
            (2.5, Some("C2"), Some(Class::Malicious), "C&C")
        );
        assert_eq!(r.line, "2.5\tC2\tudp");
        assert_eq!(log.rows[1].detail, "");
        assert_eq!(log.rows[2].class, None);
        assert_eq!(log.counts(), (1, 1, 1));
        let header = log.headers[0].to_tsv();
        assert!(header.contains("#fields\tts\tuid\tproto\n"), "{header}");
        assert!(!header.contains("label"), "{header}");
    }

    #[test]
    fn iot23_joined_column_is_split() {
        let f = write(
            "#separator \\x09\n#path\tconn\n\
             #fields\tts\tuid\tproto\ttunnel_parents   label   detailed-label\n\
             #types\ttime\tstring\tenum\tset[string]   string   string\n\
             1.0\tCa\ttcp\t-   Malicious   PartOfAHorizontalPortScan\n\
             2.0\tCb\tudp\t(empty)   benign   -\n\
             3.0\tCc\tudp\t-   Malicious\n",
        );
        let log = LabeledLog::read(f.path()).unwrap();
        assert!(log.joined_layout);
        assert_eq!(
            log.headers[0].fields,
            ["ts", "uid", "proto", "tunnel_parents"]
        );
        assert_eq!(
            log.headers[0].types,
            ["time", "string", "enum", "set[string]"]
        );
        assert_eq!(log.rows.len(), 2);
        assert_eq!(log.skipped, 1);
        assert_eq!(log.rows[0].class, Some(Class::Malicious));
        assert_eq!(log.rows[0].detail, "PartOfAHorizontalPortScan");
        assert_eq!(log.rows[0].line, "1.0\tCa\ttcp\t-");
        assert_eq!(log.rows[1].class, Some(Class::Benign));
        assert_eq!(log.rows[1].line, "2.0\tCb\tudp\t(empty)");
        assert!(is_labeled(f.path()).unwrap());
    }

    #[test]
    fn unlabeled_logs_are_refused_with_a_reason() {
        let f = write("#fields\tts\tuid\n#types\ttime\tstring\n1.0\tC1\n");
        assert!(!is_labeled(f.path()).unwrap());
        let err = LabeledLog::read(f.path()).unwrap_err();
        assert!(err.to_string().contains("no `label` column"), "{err}");
        let f = write("{\"ts\": 1}\n");
        assert!(matches!(
            LabeledLog::read(f.path()),
            Err(LabelError::NoFields { .. })
        ));
    }

    #[test]
    fn labels_file_takes_words_or_digits_and_malicious_wins() {
        let f = write("# uid label detail\nC1\t1\tC&C\nC2\t0\t\nC3\tBackground\nC1\t0\nC4\tbenign\nC4\tMalicious\tDDoS\n");
        let m = read_labels_file(f.path()).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["C1"], (Class::Malicious, "C&C".to_owned()));
        assert_eq!(m["C2"], (Class::Benign, String::new()));
        assert_eq!(m["C4"], (Class::Malicious, "DDoS".to_owned()));
        let bad = write("C1\n");
        assert!(read_labels_file(bad.path()).is_err());
    }

    /// A FIFO or a device given as a labeled log or a labels file is
    /// refused at once: it would block or never end.
    #[test]
    fn special_files_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("conn.log.labeled");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send((is_labeled(&fifo).is_err(), read_labels_file(&fifo).is_err()));
        });
        let refused = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO blocks");
        assert_eq!(refused, (true, true));
        let err = read_labels_file(Path::new("/dev/zero")).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }
}
