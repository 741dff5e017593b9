//! Zeek's TSV ("ASCII") format: `#` header lines, then one record per line.
//!
//! The header is a little state machine, because real logs bend it: a header
//! can be repeated mid-file (concatenated logs), `#close` can come before the
//! data, `#separator` can be written as `\x09` or as a literal `\t`, or carry
//! a stray tab in front, and data lines can end in extra empty columns.

use std::borrow::Cow;
use std::sync::Arc;

use super::record::{Record, Schema};
use super::value::{ScalarType, Value, ZeekType};

/// The header state of one TSV stream.
#[derive(Debug, Clone)]
pub(crate) struct TsvHeader {
    separator: Vec<u8>,
    set_separator: Vec<u8>,
    empty_field: Vec<u8>,
    unset_field: Vec<u8>,
    /// `#path`, once seen.
    pub(crate) path: Option<String>,
    fields: Vec<String>,
    types: Vec<ZeekType>,
    /// Built from `fields` at the first data line after they change.
    schema: Option<Arc<Schema>>,
    /// Where the columns of the line being parsed are (kept to reuse its
    /// memory).
    spans: Vec<(usize, usize)>,
}

impl Default for TsvHeader {
    fn default() -> Self {
        TsvHeader {
            separator: b"\t".to_vec(),
            set_separator: b",".to_vec(),
            empty_field: b"(empty)".to_vec(),
            unset_field: b"-".to_vec(),
            path: None,
            fields: Vec::new(),
            types: Vec::new(),
            schema: None,
            spans: Vec::new(),
        }
    }
}

/// What a header line changed, for the caller's checks.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    Path(String),
    Other,
}

/// Is this line a header line? Tolerates the stray leading whitespace some
/// tools write before `#separator`.
pub(crate) fn is_header_line(line: &[u8]) -> bool {
    line.trim_ascii_start().first() == Some(&b'#')
}

/// The longest separator or set separator accepted. Zeek writes one byte;
/// a few more are fine, but finding a separator costs up to its length at
/// every byte of a line, so a hostile header must not make splitting a line
/// quadratic.
const MAX_SEPARATOR: usize = 16;

impl TsvHeader {
    /// Applies one `#` line. `Err` says why a directive cannot be used (an
    /// empty or overlong separator): the line is then a malformed one and
    /// the value before it stays, so the lines after it still parse.
    pub(crate) fn apply(&mut self, line: &[u8]) -> Result<Directive, String> {
        let line = line.trim_ascii_start();
        if let Some(rest) = line.strip_prefix(b"#separator") {
            // `#separator \x09`: the value follows a space, not the separator
            // (which is not known yet).
            let value = unescape_directive(rest.trim_ascii());
            self.separator = checked_separator("#separator", value, &self.separator)?;
            return Ok(Directive::Other);
        }
        let mut parts = split(line, &self.separator);
        let key = parts.next().unwrap_or_default();
        let values: Vec<&[u8]> = parts.collect();
        let first = values.first().copied().unwrap_or_default();
        match key {
            b"#set_separator" => {
                let value = unescape_directive(first);
                self.set_separator =
                    checked_separator("#set_separator", value, &self.set_separator)?;
            }
            b"#empty_field" => self.empty_field = first.to_vec(),
            b"#unset_field" => self.unset_field = first.to_vec(),
            b"#path" => {
                let path = String::from_utf8_lossy(first).into_owned();
                self.path = Some(path.clone());
                return Ok(Directive::Path(path));
            }
            b"#fields" => {
                let mut names: Vec<String> = values
                    .iter()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .collect();
                // Trailing tabs on the header line are not columns.
                while names.last().is_some_and(|n| n.is_empty()) {
                    names.pop();
                }
                self.fields = names;
                self.types.clear();
                self.schema = None;
            }
            b"#types" => {
                self.types = values
                    .iter()
                    .map(|v| ZeekType::parse(&String::from_utf8_lossy(v)))
                    .collect();
                self.schema = None;
            }
            // `#open`, `#close` and comments carry nothing a record needs.
            _ => {}
        }
        Ok(Directive::Other)
    }

    /// Parses one data line into a record, or says why it cannot.
    pub(crate) fn parse(&mut self, line: &[u8], line_no: u64) -> Result<Record, String> {
        if self.fields.is_empty() {
            return Err("data line before any #fields header".into());
        }
        let Ok(text) = std::str::from_utf8(line) else {
            return Err("invalid UTF-8".into());
        };
        let n = self.fields.len();
        let schema = self
            .schema
            .get_or_insert_with(|| Arc::new(Schema::new(self.fields.clone())))
            .clone();
        // One pass finds the columns: the first `n` are kept, and the
        // count is checked first, so a short line says so rather than
        // failing on whichever value lands in the wrong column. Extra
        // columns are tolerated only when empty (trailing tabs).
        let mut spans = std::mem::take(&mut self.spans);
        spans.clear();
        let mut columns = 0;
        let mut extra = false;
        for (start, end) in split_spans(line, &self.separator) {
            if columns < n {
                spans.push((start, end));
            } else {
                extra |= end > start;
            }
            columns += 1;
        }
        if columns < n || extra {
            self.spans = spans;
            return Err(format!(
                "{columns} columns, but the #fields header names {n}"
            ));
        }
        let mut values = Vec::with_capacity(n);
        for (i, &(start, end)) in spans.iter().enumerate() {
            let ty = self.types.get(i).copied().unwrap_or(ZeekType::Text);
            // A column of a UTF-8 line is UTF-8 itself unless an odd
            // separator cut a character (then it is decoded lossily).
            match self.value(&line[start..end], text.get(start..end), ty) {
                Ok(value) => values.push(value),
                Err(reason) => {
                    self.spans = spans;
                    return Err(format!("field `{}`: {reason}", self.fields[i]));
                }
            }
        }
        self.spans = spans;
        Ok(Record::new(schema, values, line_no))
    }

    /// One column's value; `text`: the same bytes as text, when they are
    /// UTF-8 (known from the line's check).
    fn value(&self, raw: &[u8], text: Option<&str>, ty: ZeekType) -> Result<Value, String> {
        if raw == self.unset_field.as_slice() {
            return Ok(Value::Unset);
        }
        match ty {
            ZeekType::Set(elem) | ZeekType::Vector(elem) => {
                if raw == self.empty_field.as_slice() {
                    return Ok(Value::List(Vec::new()));
                }
                split(raw, &self.set_separator)
                    .take(super::value::MAX_LIST_ELEMENTS)
                    .map(|e| {
                        if e == self.unset_field.as_slice() {
                            Ok(Value::Unset)
                        } else {
                            elem.parse_value(&unescape(e))
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::List)
            }
            ZeekType::Text if raw == self.empty_field.as_slice() => {
                Ok(Value::Str(Default::default()))
            }
            scalar => {
                let scalar = scalar.scalar().unwrap_or(ScalarType::Text);
                match text {
                    Some(t) => scalar.parse_value(&unescape_str(t)),
                    None => scalar.parse_value(&unescape(raw)),
                }
            }
        }
    }
}

/// A separator from a header, if it can split lines: not empty (there is
/// nothing to find) and at most [`MAX_SEPARATOR`] bytes. Otherwise the
/// reason, naming the `current` separator that stays.
fn checked_separator(directive: &str, value: Vec<u8>, current: &[u8]) -> Result<Vec<u8>, String> {
    let problem = if value.is_empty() {
        "is empty".to_owned()
    } else if value.contains(&b'\r') {
        // The whole file read as one line: it ends its lines in CR alone.
        "runs on past a carriage return: this file's lines end in CR alone (old Mac line endings), where Zeek writes LF; convert its CRs to LFs".to_owned()
    } else if value.len() > MAX_SEPARATOR {
        format!("is longer than {MAX_SEPARATOR} bytes")
    } else {
        return Ok(value);
    };
    Err(format!(
        "`{directive}` {problem}; keeping `{}`",
        current.escape_ascii()
    ))
}

/// Splits on a separator of one or more bytes (never empty: see
/// [`checked_separator`]).
fn split<'a>(line: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(line);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, sep) {
            Some(at) => {
                rest = Some(&current[at + sep.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// [`split`], as the byte ranges of the parts in `line`.
fn split_spans<'a>(line: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = (usize, usize)> + 'a {
    let mut from = Some(0);
    std::iter::from_fn(move || {
        let start = from?;
        match find(&line[start..], sep) {
            Some(at) => {
                from = Some(start + at + sep.len());
                Some((start, start + at))
            }
            None => {
                from = None;
                Some((start, line.len()))
            }
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memchr(*b, haystack),
        // Unreachable through a header; an empty needle must not reach
        // `windows`, which panics on 0.
        [] => None,
        _ => haystack.windows(needle.len()).position(|w| w == needle),
    }
}

/// Decodes Zeek's escapes in a TSV value: `\xHH` for the separator and
/// non-printable bytes, and `\\` for a backslash (recent Zeek; older
/// versions wrote `\x5c`). The bytes may not be UTF-8 (binary payload in a
/// URI), so they are decoded lossily rather than rejected. Read left to
/// right, so `\\x41` is a backslash and the text `x41`: left as `\\`, a
/// certificate's `O=VMware\, Inc` read as `O=VMware\\, Inc` from TSV and as
/// itself from JSON, and a model trained on one format found every such
/// issuer unseen in the other.
pub(crate) fn unescape(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        // The line was checked to be UTF-8 before it was split.
        return String::from_utf8_lossy(raw);
    }
    Cow::Owned(String::from_utf8_lossy(&unescape_bytes(raw, |_| true, true)).into_owned())
}

/// [`unescape`] for a JSON log's string. Zeek's JSON writer escapes only
/// bytes that are not UTF-8 and control characters (it has no separator
/// to escape), never printable ASCII: a `\x41` there is the text itself,
/// which an attacker wrote to be read as `A` (an allowlisted domain, a
/// user agent the detectors know), and is kept as it is.
pub(crate) fn unescape_json(raw: &[u8]) -> Cow<'_, str> {
    if !raw.contains(&b'\\') {
        return String::from_utf8_lossy(raw);
    }
    let escaped = |b: u8| !(0x20..0x7f).contains(&b);
    Cow::Owned(String::from_utf8_lossy(&unescape_bytes(raw, escaped, false)).into_owned())
}

/// [`unescape`] of a value already known to be UTF-8: borrowed as it is
/// when it has no escape (nearly every value).
fn unescape_str(text: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\\', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    unescape(text.as_bytes())
}

/// The bytes `\xHH` escapes stand for, those `decodes` takes, and with
/// `backslash` a backslash for `\\`; anything else is kept as it is.
fn unescape_bytes(raw: &[u8], decodes: impl Fn(u8) -> bool, backslash: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if backslash && raw[i] == b'\\' && raw.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
            continue;
        }
        if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'x') {
            if let Some(byte) = raw
                .get(i + 2..i + 4)
                .and_then(hex_byte)
                .filter(|b| decodes(*b))
            {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    out
}

/// A directive value: `\xHH` escapes plus the C-style `\t` that some tools
/// write for the tab. Kept as bytes: a separator is matched byte for byte,
/// and a lossy decoding would turn `\xff` into a different, three-byte one.
fn unescape_directive(raw: &[u8]) -> Vec<u8> {
    match raw {
        b"\\t" => b"\t".to_vec(),
        _ => unescape_bytes(raw, |_| true, false),
    }
}

fn hex_byte(h: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(h).ok()?;
    u8::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(lines: &[&str]) -> TsvHeader {
        let mut h = TsvHeader::default();
        for l in lines {
            h.apply(l.as_bytes()).unwrap();
        }
        h
    }

    const CONN: &[&str] = &[
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        "#fields\tts\tuid\tid.orig_h\tid.orig_p\tduration\tlocal_orig\ttunnel_parents\tservice",
        "#types\ttime\tstring\taddr\tport\tinterval\tbool\tset[string]\tstring",
    ];

    #[test]
    fn parses_typed_values_unset_and_empty() {
        let mut h = header(CONN);
        assert_eq!(h.path.as_deref(), Some("conn"));
        let r = h
            .parse(b"1.5\tCabc\t10.0.0.1\t53\t-\tT\t(empty)\t(empty)", 8)
            .unwrap();
        assert_eq!(r.get("ts"), &Value::Real(1.5));
        assert_eq!(
            r.get("id.orig_h").as_addr(),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(r.get("id.orig_p"), &Value::Count(53));
        assert!(r.get("duration").is_unset());
        assert_eq!(r.get("local_orig"), &Value::Bool(true));
        assert_eq!(r.get("tunnel_parents"), &Value::List(vec![]));
        assert_eq!(r.get("service"), &Value::Str("".into()));
    }

    /// A set keeps its first [`MAX_LIST_ELEMENTS`] elements: a line of a
    /// million commas is not a million values.
    #[test]
    fn sets_keep_their_first_elements() {
        use super::super::value::MAX_LIST_ELEMENTS;
        let mut h = header(CONN);
        let parents: Vec<String> = (0..3 * MAX_LIST_ELEMENTS)
            .map(|i| format!("C{i}"))
            .collect();
        let line = format!("1\tC\t::1\t1\t0.5\tF\t{}\tx", parents.join(","));
        let r = h.parse(line.as_bytes(), 1).unwrap();
        let Value::List(kept) = r.get("tunnel_parents") else {
            panic!("not a list");
        };
        assert_eq!(kept.len(), MAX_LIST_ELEMENTS);
        assert_eq!(
            kept[MAX_LIST_ELEMENTS - 1],
            Value::Str(parents[MAX_LIST_ELEMENTS - 1].as_str().into())
        );
        assert_eq!(
            r.get("service"),
            &Value::Str("x".into()),
            "the columns after it"
        );
    }

    #[test]
    fn sets_and_escapes() {
        let mut h = header(CONN);
        let r = h
            .parse(b"1\tC\t::1\t1\t0.5\tF\ta,b\\x2cc\tx\\x09y", 1)
            .unwrap();
        assert_eq!(
            r.get("tunnel_parents"),
            &Value::List(vec![Value::Str("a".into()), Value::Str("b,c".into())])
        );
        assert_eq!(r.get("service"), &Value::Str("x\ty".into()));
    }

    /// Zeek writes a backslash as `\\` (older versions `\x5c`): read as one
    /// backslash, left to right, so `\\x41` stays the text `\x41`.
    #[test]
    fn an_escaped_backslash_is_one_backslash() {
        let mut h = header(CONN);
        let line = r"1|C|::1|1|0.5|F|a\\,b|O=VMware\\, Inc \\x41 \x5c".replace('|', "\t");
        let r = h.parse(line.as_bytes(), 1).unwrap();
        assert_eq!(
            r.get("tunnel_parents"),
            &Value::List(vec![Value::Str(r"a\".into()), Value::Str("b".into())])
        );
        assert_eq!(
            r.get("service"),
            &Value::Str(r"O=VMware\, Inc \x41 \".into())
        );
        // JSON has no such escape: its `\\` is two backslashes of the text.
        assert_eq!(unescape_json(br"a\\b"), r"a\\b");
    }

    #[test]
    fn literal_tab_separator_and_trailing_tabs() {
        let mut h = header(&[
            "#separator \\t",
            "#fields\ta\tb\t",
            "#types\tcount\tstring\t",
        ]);
        let r = h.parse(b"1\tx\t", 1).unwrap();
        assert_eq!(r.values().len(), 2);
        assert_eq!(r.get("a"), &Value::Count(1));
        assert!(h.parse(b"1\tx\tsurprise", 2).is_err());
    }

    #[test]
    fn stray_tab_before_separator() {
        assert!(is_header_line(b"\t#separator \\x09"));
        let mut h = header(&["\t#separator \\x09", "#fields\ta", "#types\tcount"]);
        assert_eq!(h.parse(b"7", 1).unwrap().get("a"), &Value::Count(7));
    }

    #[test]
    fn bad_lines_say_why() {
        let mut h = header(CONN);
        let e = h.parse(b"1\tC\t10.0.0.1\t53", 3).unwrap_err();
        assert_eq!(e, "4 columns, but the #fields header names 8");
        let e = h.parse(b"x\tC\t10.0.0.1\t53\t-\tT\t-\t-", 3).unwrap_err();
        assert_eq!(e, "field `ts`: invalid number `x`");
        let e = h
            .parse(b"1\tC\t10.0.0.1\t99999\t-\tT\t-\t-", 3)
            .unwrap_err();
        assert_eq!(e, "field `id.orig_p`: invalid port `99999`");
        let e = h.parse(b"1\tC\t10.0.0.1\t1\t-\tT\t-\t\xff", 3).unwrap_err();
        assert_eq!(e, "invalid UTF-8");
        let mut empty = TsvHeader::default();
        assert!(empty
            .parse(b"1\t2", 1)
            .unwrap_err()
            .contains("before any #fields"));
    }

    /// A separator that cannot split a line is refused, naming the one
    /// that stays; the header keeps working with it.
    #[test]
    fn unusable_separators_are_refused() {
        let mut h = header(CONN);
        assert_eq!(
            h.apply(b"#set_separator\t").unwrap_err(),
            "`#set_separator` is empty; keeping `,`"
        );
        assert_eq!(
            h.apply(b"#separator ").unwrap_err(),
            "`#separator` is empty; keeping `\\t`"
        );
        let long = format!("#separator {}", "\\x2c".repeat(17));
        assert_eq!(
            h.apply(long.as_bytes()).unwrap_err(),
            "`#separator` is longer than 16 bytes; keeping `\\t`"
        );
        // A file whose lines end in CR alone reads as one line.
        let e = h
            .apply(b"#separator \\x09\r#set_separator\t,\r#fields\tts")
            .unwrap_err();
        assert!(e.contains("lines end in CR alone"), "{e}");
        let r = h.parse(b"1\tC\t::1\t1\t0.5\tF\ta,b\tx", 1).unwrap();
        assert_eq!(r.get("tunnel_parents").as_list().map(<[_]>::len), Some(2));
    }

    /// Multi-byte separators split; a non-UTF-8 one is kept as its bytes.
    #[test]
    fn multi_byte_separators() {
        let mut h = header(&[
            "#separator \\xe2\\x80\\xa8",
            "#set_separator\u{2028}::",
            "#fields\u{2028}a\u{2028}b",
            "#types\u{2028}count\u{2028}set[count]",
        ]);
        let r = h.parse("7\u{2028}1::2::3".as_bytes(), 1).unwrap();
        assert_eq!(r.get("a"), &Value::Count(7));
        assert_eq!(r.get("b").as_list().map(<[_]>::len), Some(3));
        h.apply(b"#separator \\xff").unwrap();
        assert_eq!(h.separator, b"\xff");
    }

    /// Empty markers are taken literally: an empty column is then unset.
    #[test]
    fn empty_markers() {
        let mut h = header(&[
            "#separator \\x09",
            "#empty_field\t",
            "#unset_field\t",
            "#fields\ta\tb",
            "#types\tset[string]\tstring",
        ]);
        let r = h.parse(b"\t", 1).unwrap();
        assert!(r.get("a").is_unset() && r.get("b").is_unset());
        let r = h.parse(b"x,y\tz", 2).unwrap();
        assert_eq!(r.get("a").as_list().map(<[_]>::len), Some(2));
    }

    #[test]
    fn repeated_header_switches_schema() {
        let mut h = header(CONN);
        h.apply(b"#fields\tts\textra").unwrap();
        h.apply(b"#types\ttime\tcount").unwrap();
        let r = h.parse(b"2\t3", 20).unwrap();
        assert_eq!(r.get("extra"), &Value::Count(3));
        assert!(r.get("uid").is_unset());
    }
}
