//! The reader on real logs kept in `tests/data/zeek/` (see SOURCES.md there):
//! the malformed cases found in the wild, each with its exact skip count and
//! message, and the TSV and JSON forms of one log reading the same.

use std::path::{Path, PathBuf};

use autozeekwatch::zeek::{Format, LineParser, LogReader, Parsed, ReadError, Record, Value};
use proptest::prelude::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/zeek")
        .join(name)
}

/// Reads a whole file: records, skip messages, and the fatal error if any.
fn read_all(path: &Path, expected: Option<&str>) -> (Vec<Record>, Vec<String>, Option<ReadError>) {
    let mut records = Vec::new();
    let mut skips = Vec::new();
    let mut fatal = None;
    for item in LogReader::open(path, expected).unwrap() {
        match item {
            Ok(r) => records.push(r),
            Err(e) if e.is_skip() => skips.push(e.to_string()),
            Err(e) => fatal = Some(e),
        }
    }
    (records, skips, fatal)
}

fn msg(file: &str, rest: &str) -> String {
    format!("{}{rest}", fixture(file).display())
}

#[test]
fn truncated_last_line_is_one_skip() {
    let (records, skips, fatal) = read_all(&fixture("rita-truncated-conn.log"), Some("conn"));
    assert_eq!(records.len(), 58);
    assert_eq!(
        skips,
        [msg(
            "rita-truncated-conn.log",
            ":67: skipped malformed line: 9 columns, but the #fields header names 21"
        )]
    );
    assert!(fatal.is_none());
}

#[test]
fn impossible_port_and_cut_json_are_skipped() {
    let (records, skips, _) = read_all(&fixture("rita-truncated-conn-json.log"), Some("conn"));
    assert_eq!(records.len(), 2);
    assert_eq!(
        skips,
        [
            msg("rita-truncated-conn-json.log", ":3: skipped malformed line: field `id.orig_p`: invalid port `93145`"),
            msg("rita-truncated-conn-json.log", ":4: skipped malformed line: invalid JSON: EOF while parsing a string at line 1 column 281"),
        ]
    );
}

#[test]
fn invented_column_with_missing_value_is_one_skip() {
    let (records, skips, _) = read_all(&fixture("rita-has-unknown-field-http.log"), Some("http"));
    assert_eq!(records.len(), 4);
    assert_eq!(skips.len(), 1, "{skips:?}");
    assert!(
        skips[0].contains("29 columns, but the #fields header names 30"),
        "{}",
        skips[0]
    );
}

#[test]
fn literal_tab_separator_and_trailing_tabs() {
    let (records, skips, fatal) = read_all(&fixture("rita-literal-tab-http.log"), Some("http"));
    assert_eq!((records.len(), skips.len()), (40, 0), "{skips:?}");
    assert!(fatal.is_none());
    let first = &records[0];
    assert_eq!(first.get("method"), &Value::Str("GET".into()));
    assert_eq!(first.get("agent_hostname"), &Value::Str("Carol".into()));
    assert_eq!(first.values().len(), 31);
}

#[test]
fn stray_tab_before_separator() {
    let (records, skips, _) = read_all(&fixture("slips-stray-tab-conn.log"), Some("conn"));
    assert_eq!((records.len(), skips.len()), (141, 0));
    assert_eq!(records[0].get("proto"), &Value::Str("udp".into()));
}

#[test]
fn crlf_json() {
    let (records, skips, _) = read_all(&fixture("slips-crlf-arp.log"), None);
    assert_eq!((records.len(), skips.len()), (2, 0));
}

#[test]
fn corrupt_gzip_keeps_the_records_before_the_damage() {
    let path = fixture("zat-http.log.corrupt.gz");
    let (records, _, fatal) = read_all(&path, Some("http"));
    let fatal = fatal.expect("the damage is reported");
    assert!(matches!(fatal, ReadError::Corrupt { .. }));
    let text = fatal.to_string();
    assert!(
        text.starts_with(&format!("{}: damaged after line", path.display())),
        "{text}"
    );
    assert!(!records.is_empty(), "records before the damage are yielded");
    assert!(records.iter().all(|r| r.get("uid").as_str().is_some()));
}

#[test]
fn text_file_is_reported_not_parsed() {
    let (records, skips, fatal) = read_all(&fixture("rita-text-file.log"), Some("conn"));
    assert!(records.is_empty() && skips.is_empty());
    let text = fatal.unwrap().to_string();
    assert!(text.contains("not a Zeek log"), "{text}");
}

/// Fields that exist in one form only by construction: the JSON writer's own
/// metadata.
const JSON_ONLY: &[&str] = &["_path", "_write_ts"];

/// Unset, an empty set and an empty string all mean "nothing here": the TSV
/// writer prints `-` or `(empty)` where the JSON writer omits the key.
fn nothing(v: &Value) -> bool {
    matches!(v, Value::Unset) || v.as_list().is_some_and(|l| l.is_empty()) || v.as_str() == Some("")
}

fn assert_same_records(tsv: &Path, json: &Path, log: &str) -> usize {
    let (a, skips_a, fatal_a) = read_all(tsv, Some(log));
    let (b, skips_b, fatal_b) = read_all(json, Some(log));
    assert!(skips_a.is_empty() && skips_b.is_empty() && fatal_a.is_none() && fatal_b.is_none());
    assert_eq!(a.len(), b.len(), "record counts differ");
    for (ra, rb) in a.iter().zip(&b) {
        for name in ra.schema().names().iter().chain(rb.schema().names()) {
            if JSON_ONLY.contains(&name.as_str()) {
                continue;
            }
            let (va, vb) = (ra.get(name), rb.get(name));
            assert!(
                (nothing(va) && nothing(vb)) || va.same_as(vb),
                "{}:{} vs {}:{}: `{name}` is {va:?} in TSV but {vb:?} in JSON",
                tsv.display(),
                ra.line(),
                json.display(),
                rb.line()
            );
        }
    }
    a.len()
}

#[test]
fn tsv_and_json_forms_read_the_same() {
    for (tsv, json, log) in [
        ("rita-valid-http.tsv.gz", "rita-valid-http.json.gz", "http"),
        ("zed-dns.tsv.gz", "zed-dns.json.gz", "dns"),
        ("zed-ssl.tsv.gz", "zed-ssl.json.gz", "ssl"),
        // ISO-8601 validity times in JSON; subjects with `\,`, written
        // `\\,` in TSV.
        ("zed-x509.tsv.gz", "zed-x509.json.gz", "x509"),
    ] {
        assert_eq!(assert_same_records(&fixture(tsv), &fixture(json), log), 300);
    }
}

/// The whole files, when the team's corpus is beside the repository.
#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data beside the repository"
)]
fn tsv_and_json_forms_read_the_same_in_the_whole_corpus() {
    let data = crate::util::shared_data();
    for (tsv, json, log, n) in [
        (
            "rita-activecm/valid_tsv/http.log.gz",
            "rita-activecm/valid_json/http.log.gz",
            "http",
            27_204,
        ),
        (
            "zed-sample-data/zeek-default/dns.log.gz",
            "zed-sample-data/zeek-json/dns.json.gz",
            "dns",
            53_615,
        ),
        (
            "zed-sample-data/zeek-default/ssl.log.gz",
            "zed-sample-data/zeek-json/ssl.json.gz",
            "ssl",
            49_474,
        ),
        (
            "zed-sample-data/zeek-default/x509.log.gz",
            "zed-sample-data/zeek-json/x509.json.gz",
            "x509",
            348,
        ),
    ] {
        assert_eq!(
            assert_same_records(&data.join(tsv), &data.join(json), log),
            n
        );
    }
}

const HEADER: &str =
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n\
#fields\tts\tuid\tid.orig_h\tid.orig_p\tduration\tlocal_orig\ttunnel_parents\n\
#types\ttime\tstring\taddr\tport\tinterval\tbool\tset[string]\n";

fn parse_lines(parser: &mut LineParser, text: &[u8]) -> (usize, usize) {
    let (mut ok, mut skipped) = (0, 0);
    for (i, line) in text.split(|b| *b == b'\n').enumerate() {
        match parser.parse_line(line, i as u64 + 1) {
            Ok(Parsed::Record(_)) => ok += 1,
            Ok(Parsed::Nothing) => {}
            Err(e) if e.is_skip() => skipped += 1,
            Err(_) => break,
        }
    }
    (ok, skipped)
}

/// A header directive as the reader knows it, or garbled.
fn directive() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("#separator "),
        Just("#separator\t"),
        Just(" \t#separator "),
        Just("#set_separator\t"),
        Just("#empty_field\t"),
        Just("#unset_field\t"),
        Just("#fields\t"),
        Just("#types\t"),
        Just("#path\t"),
        Just("#open\t"),
        Just("#close\t"),
        Just("#"),
    ]
}

/// A separator or marker value, including the empty, escaped, broken,
/// multi-byte and non-UTF-8 ones a hostile header could declare.
fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(String::new()),
        2 => Just("\t".to_owned()),
        2 => Just(",".to_owned()),
        1 => Just("\\x09".to_owned()),
        1 => Just("\\t".to_owned()),
        1 => Just("\\x".to_owned()),
        1 => Just("\\x0".to_owned()),
        1 => Just("\\xff".to_owned()),
        1 => Just("\\xe2\\x80\\xa8".to_owned()),
        1 => Just("::".to_owned()),
        1 => Just("é".to_owned()),
        1 => Just("-".to_owned()),
        1 => Just("(empty)".to_owned()),
        1 => "[ -~]{0,40}",
        1 => "\\PC{0,6}",
    ]
}

/// A column name.
fn name() -> impl Strategy<Value = String> {
    "(ts|uid|id\\.orig_h|id\\.orig_p|duration|tunnel_parents|x|)"
}

/// A column type, containers often.
fn zeek_type() -> impl Strategy<Value = String> {
    "(time|string|addr|port|interval|bool|count|int|set\\[string\\]|set\\[count\\]|vector\\[addr\\]|vector\\[interval\\]|set\\[|\\]|)"
}

/// A field value: typed-looking, lists in any separator, markers, noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[-0-9a-f.:,()\\\\xT]{0,12}",
        "(1|-|\\(empty\\)|a,b|1,2|::1,10\\.0\\.0\\.1|a::b|aéb|1\\.5)",
        "\\PC{0,6}",
    ]
}

/// Items joined by a separator, most often the tab: a data line, or the
/// list of a `#fields` or `#types` line.
fn joined(item: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    let sep = prop_oneof![3 => Just("\t".to_owned()), 1 => separator()];
    (proptest::collection::vec(item, 0..5), sep).prop_map(|(items, sep)| items.join(&sep))
}

/// One line of a hostile TSV log: a directive with a random value, a
/// `#fields` or `#types` list, or a data line.
fn tsv_line() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (directive(), separator()).prop_map(|(d, v)| format!("{d}{v}")),
        2 => joined(name()).prop_map(|v| format!("#fields\t{v}")),
        2 => joined(zeek_type()).prop_map(|v| format!("#types\t{v}")),
        1 => (directive(), joined(value())).prop_map(|(d, v)| format!("{d}{v}")),
        6 => joined(value()),
    ]
}

/// What a line is, by the reader's rules: blank, a header, or data.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Blank,
    Header,
    Data,
}

fn kind(line: &[u8]) -> Kind {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match line.trim_ascii_start().first() {
        None => Kind::Blank,
        Some(b'#') => Kind::Header,
        Some(_) => Kind::Data,
    }
}

proptest! {
    /// Random header lines (any separator, set separator, empty and unset
    /// marker, field list, type list, path) between data lines: the parser
    /// never panics, every data line is a record or a skip, a header line
    /// is taken or skipped, nothing ends the stream, and the reader counts
    /// exactly those records and skips.
    #[test]
    fn hostile_tsv_headers_never_panic(lines in proptest::collection::vec(tsv_line(), 0..40)) {
        let text = format!("#separator \\x09\n{}\n", lines.join("\n"));
        let mut parser = LineParser::new("prop.log", None);
        let (mut records, mut skips) = (0u64, 0u64);
        for (i, line) in text.as_bytes().split(|b| *b == b'\n').enumerate() {
            let result = parser.parse_line(line, i as u64 + 1);
            match (kind(line), &result) {
                (Kind::Data, Ok(Parsed::Record(_))) => records += 1,
                (Kind::Data | Kind::Header, Err(e)) if e.is_skip() => {
                    let msg = e.to_string();
                    let at = format!("prop.log:{}: ", i + 1);
                    prop_assert!(msg.starts_with(&at), "{}", msg);
                    skips += 1;
                }
                (Kind::Header | Kind::Blank, Ok(Parsed::Nothing)) => {}
                (k, r) => prop_assert!(false, "line {}: {:?} gave {:?}", i + 1, k, r),
            }
        }
        let mut reader = LogReader::from_reader("prop.log", std::io::Cursor::new(text.into_bytes()), None).unwrap();
        prop_assert!(reader.by_ref().all(|r| r.as_ref().map_or_else(ReadError::is_skip, |_| true)));
        prop_assert_eq!((reader.stats().records, reader.stats().malformed), (records, skips));
    }

    /// Whatever follows a valid TSV header, the parser never panics and
    /// every data line is either a record or a counted skip.
    #[test]
    fn tsv_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut parser = LineParser::new("prop.log", Some("conn"));
        let mut text = HEADER.as_bytes().to_vec();
        text.extend_from_slice(&body);
        let _ = parse_lines(&mut parser, &text);
        prop_assert_eq!(parser.format(), Some(Format::Tsv));
    }

    /// Lines shaped like TSV records, with random field contents.
    #[test]
    fn tsv_fields_never_panic(fields in proptest::collection::vec("[-0-9a-f.:,()\\\\xT]{0,12}", 0..9)) {
        let mut parser = LineParser::new("prop.log", Some("conn"));
        let text = format!("{HEADER}{}\n", fields.join("\t"));
        let (ok, skipped) = parse_lines(&mut parser, text.as_bytes());
        prop_assert!(ok + skipped <= 1);
    }

    /// Arbitrary bytes and JSON-ish lines after a valid JSON record.
    #[test]
    fn json_parser_never_panics(
        body in proptest::collection::vec(any::<u8>(), 0..400),
        key in "(ts|id\\.orig_p|id\\.resp_h|_path|x)",
        value in "(-?[0-9]{1,20}(\\.[0-9]{0,8})?|\"[^\"\\\\]{0,16}\"|true|null|\\[\\]|\\{\\})",
    ) {
        let mut parser = LineParser::new("prop.log", Some("conn"));
        let mut text = br#"{"ts":1.0,"uid":"C"}"#.to_vec();
        text.extend_from_slice(format!("\n{{\"{key}\":{value}}}\n").as_bytes());
        text.extend_from_slice(&body);
        let (ok, _) = parse_lines(&mut parser, &text);
        prop_assert!(ok >= 1);
        prop_assert_eq!(parser.format(), Some(Format::Json));
    }
}
