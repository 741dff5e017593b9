//! Zeek's JSON lines, in the three flavours seen in the wild: Zeek's own
//! writer (epoch `ts`, unset fields omitted), json-streaming-logs (ISO-8601
//! `ts`, `_path`, `_write_ts`), and JSON converted by other tools (other
//! spacing and key order, sometimes nested `id` objects).
//!
//! JSON carries no Zeek types, so values are typed by their JSON form, with
//! a few well-known fields pinned (`ts` is a time even when written as an ISO
//! string; the connection's addresses and ports are addresses and ports).

use std::borrow::Cow;
use std::sync::Arc;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use super::record::{Record, Schema};
use super::tsv::unescape_json;
use super::value::{clip, ScalarType, Value};

/// How many distinct key sets [`JsonState`] remembers. Zeek's JSON writer
/// leaves unset fields out, so one conn log alternates between a handful of
/// key sets (with or without `service`, `duration`, the byte counts...).
const SCHEMAS_KEPT: usize = 8;

/// Keeps the schemas of recent lines, so lines with the same keys share one
/// even when lines with other keys come between them: a shared schema costs
/// nothing per line, and consumers that resolve field positions once per
/// schema (the feature encoder) keep their work.
#[derive(Debug, Default, Clone)]
pub(crate) struct JsonState {
    /// Most recently used first, at most [`SCHEMAS_KEPT`].
    schemas: Vec<Arc<Schema>>,
}

/// One parsed line: the record and its `_path`, if it names one.
#[derive(Debug)]
pub(crate) struct JsonLine {
    pub record: Record,
    pub path: Option<String>,
}

impl JsonState {
    pub(crate) fn parse(&mut self, line: &[u8], line_no: u64) -> Result<JsonLine, String> {
        let text = std::str::from_utf8(line).map_err(|_| "invalid UTF-8".to_string())?;
        if !text.trim_start().starts_with('{') {
            return Err("JSON line is not an object".into());
        }
        let expected = self.schemas.first().cloned();
        let mut builder = Builder::new(expected.as_deref());
        let mut de = serde_json::Deserializer::from_str(text);
        (&mut builder)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| format!("invalid JSON: {e}"))?;
        // A field that is not of its pinned type fails the line, but only
        // once the whole line is known to be JSON (that error comes first).
        if let Some(error) = builder.error {
            return Err(error);
        }
        let schema = match (builder.names, &expected) {
            (None, Some(s)) if builder.matched == s.len() => s.clone(),
            (names, _) => {
                let names = names.unwrap_or_else(|| match &expected {
                    Some(s) => s.names()[..builder.matched]
                        .iter()
                        .map(|n| Cow::Borrowed(n.as_str()))
                        .collect(),
                    None => Vec::new(),
                });
                self.schema_for(names)
            }
        };
        Ok(JsonLine {
            record: Record::new(schema, builder.values, line_no),
            path: builder.path,
        })
    }

    /// The remembered schema with these names, made the most recent, or a
    /// new one (forgetting the least recently used).
    fn schema_for(&mut self, names: Vec<Cow<'_, str>>) -> Arc<Schema> {
        let same = |s: &Arc<Schema>| {
            s.len() == names.len()
                && s.names()
                    .iter()
                    .zip(&names)
                    .all(|(a, b)| a.as_str() == b.as_ref())
        };
        match self.schemas.iter().position(same) {
            Some(i) => self.schemas[..=i].rotate_right(1),
            None => {
                let schema = Arc::new(Schema::new(
                    names.into_iter().map(Cow::into_owned).collect(),
                ));
                self.schemas.truncate(SCHEMAS_KEPT - 1);
                self.schemas.insert(0, schema);
            }
        }
        self.schemas[0].clone()
    }
}

/// Collects one line's values in file order, straight from the JSON text
/// (no intermediate tree), with pinned fields typed as they are read. The
/// names are checked against the previous line's schema as they come and
/// only collected from the first one that differs, so a line with the same
/// keys as the one before allocates no names at all.
struct Builder<'a> {
    /// The schema this line most likely shares.
    expected: Option<&'a Schema>,
    /// How many names matched `expected`'s first names, while all have.
    matched: usize,
    /// All names so far, once one differed from `expected`.
    names: Option<Vec<Cow<'a, str>>>,
    values: Vec<Value>,
    path: Option<String>,
    /// The first field that is not of its pinned type.
    error: Option<String>,
}

impl<'a> Builder<'a> {
    fn new(expected: Option<&'a Schema>) -> Builder<'a> {
        Builder {
            expected,
            matched: 0,
            names: None,
            values: Vec::with_capacity(expected.map_or(24, Schema::len)),
            path: None,
            error: None,
        }
    }

    fn push_name(&mut self, name: Cow<'a, str>) {
        if let Some(names) = &mut self.names {
            names.push(name);
            return;
        }
        let known: &'a [String] = self.expected.map_or(&[], Schema::names);
        if known.get(self.matched).map(String::as_str) == Some(name.as_ref()) {
            self.matched += 1;
            return;
        }
        let mut names = Vec::with_capacity(known.len().max(self.matched + 1));
        names.extend(
            known[..self.matched]
                .iter()
                .map(|n| Cow::Borrowed(n.as_str())),
        );
        names.push(name);
        self.names = Some(names);
    }

    fn fail(&mut self, error: String) {
        self.error.get_or_insert(error);
    }

    /// One top-level entry: a value, or a nested object to flatten.
    fn push(&mut self, key: Cow<'a, str>, pinned: Option<Pinned>, raw: Raw) {
        match raw {
            Raw::Object(inner) => {
                let mut nested = Vec::new();
                let flat = flatten(&inner, &key, &mut nested, &mut self.values, &mut self.path);
                if let Err(e) = flat {
                    self.fail(e);
                }
                for name in nested {
                    self.push_name(Cow::Owned(name));
                }
            }
            Raw::Value(v) => {
                if key == "_path" {
                    self.path = v.as_str().map(str::to_owned);
                }
                let v = match pinned {
                    None => v,
                    Some(_) => pin(pinned, v).unwrap_or_else(|reason| {
                        self.fail(format!("field `{key}`: {reason}"));
                        Value::Unset
                    }),
                };
                self.values.push(v);
                self.push_name(key);
            }
        }
    }
}

/// An object key, borrowed when the JSON text allows.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The line's top-level object, read into the builder.
impl<'de: 'a, 'a> DeserializeSeed<'de> for &mut Builder<'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        struct LineVisitor<'b, 'a>(&'b mut Builder<'a>);
        impl<'de: 'a, 'a> Visitor<'de> for LineVisitor<'_, 'a> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some(Key(key)) = map.next_key()? {
                    let pinned = pinned(&key);
                    let raw = map.next_value_seed(RawSeed { pinned })?;
                    self.0.push(key, pinned, raw);
                }
                Ok(())
            }
        }
        d.deserialize_map(LineVisitor(self))
    }
}

/// A value as read: ours, or a nested object to flatten (`{"id": {...}}`).
enum Raw {
    Value(Value),
    Object(Map<String, Json>),
}

/// Reads one value, knowing its field's pinned type: an address is parsed
/// from the borrowed JSON string, never copied into a `String` first.
#[derive(Clone, Copy)]
struct RawSeed {
    pinned: Option<Pinned>,
}

impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Value(Value::Bool(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Value(Value::Count(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Value(match u64::try_from(v) {
            Ok(c) => Value::Count(c),
            Err(_) => Value::Int(v),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Value(Value::Real(v)))
    }
    // Zeek's JSON writer, like its TSV writer, writes non-printable
    // bytes as `\xHH` text.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        let text = unescape_str(v);
        if self.pinned == Some(Pinned::Scalar(ScalarType::Addr)) {
            if let Ok(a) = ScalarType::Addr.parse_value(&text) {
                return Ok(Raw::Value(a));
            }
            // Not an address: kept as text, for `pin` to report.
        }
        Ok(Raw::Value(Value::Str(text.into())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Value(Value::Unset))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        // No room reserved without a hint (serde_json gives none): a line
        // of empty arrays (`[[],[],...]`) then costs a few bytes each, not a
        // 4-value allocation each.
        let mut items = Vec::with_capacity(
            seq.size_hint()
                .unwrap_or(0)
                .min(super::value::MAX_LIST_ELEMENTS),
        );
        while let Some(item) = seq.next_element_seed(RawSeed { pinned: None })? {
            if items.len() == super::value::MAX_LIST_ELEMENTS {
                continue;
            }
            items.push(match item {
                Raw::Value(v) => v,
                Raw::Object(o) => Value::Str(Json::Object(o).to_string().into()),
            });
        }
        Ok(Raw::Value(Value::List(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw, A::Error> {
        Map::deserialize(de::value::MapAccessDeserializer::new(map)).map(Raw::Object)
    }
}

/// [`unescape_json`] for text that is already a `str`: without a backslash there
/// is nothing to undo, and no need to check the UTF-8 again.
fn unescape_str(text: &str) -> Cow<'_, str> {
    if text.as_bytes().contains(&b'\\') {
        unescape_json(text.as_bytes())
    } else {
        Cow::Borrowed(text)
    }
}

/// Gives a well-known field (`pinned`, from [`pinned`]) its type, whatever
/// its JSON form.
fn pin(pinned: Option<Pinned>, value: Value) -> Result<Value, String> {
    if value.is_unset() {
        return Ok(value);
    }
    match (pinned, value) {
        (None, v) => Ok(v),
        // Unset as converters from TSV write it, for a time that may be.
        (Some(Pinned::OptionalTime), Value::Str(s)) if matches!(&*s, "-" | "" | "(empty)") => {
            Ok(Value::Unset)
        }
        (Some(Pinned::Time | Pinned::OptionalTime), Value::Str(s)) => {
            parse_time(&s).map(Value::Real)
        }
        (Some(Pinned::Time | Pinned::OptionalTime), v) => match v.as_f64() {
            Some(t) if t.is_finite() && !matches!(v, Value::Bool(_)) => Ok(Value::Real(t)),
            _ => Err(format!("invalid time `{}`", clip(&v.to_string()))),
        },
        // Already parsed from the JSON string (`RawSeed`).
        (Some(Pinned::Scalar(ScalarType::Addr)), v @ Value::Addr(_)) => Ok(v),
        // The common case of the arm below, without printing and re-parsing.
        (Some(Pinned::Scalar(ScalarType::Port)), Value::Count(c)) => match u16::try_from(c) {
            Ok(p) => Ok(Value::Count(p.into())),
            Err(_) => Err(format!("invalid port `{}`", clip(&c.to_string()))),
        },
        // The common cases of the arms below, without printing and
        // re-parsing.
        (Some(Pinned::Scalar(ScalarType::Count)), v @ Value::Count(_)) => Ok(v),
        (Some(Pinned::Scalar(ScalarType::Real)), v @ Value::Real(_)) => Ok(v),
        (Some(Pinned::Scalar(ScalarType::Real)), Value::Count(c)) => Ok(Value::Real(c as f64)),
        // Zeek's unset and empty markers, as converters from TSV write
        // them: unset, as TSV reads `-` (a scan's S0 connections have no
        // duration or byte counts, and were skipped whole).
        (Some(Pinned::Scalar(_)), Value::Str(s)) if matches!(&*s, "-" | "" | "(empty)") => {
            Ok(Value::Unset)
        }
        (Some(Pinned::Scalar(ty)), Value::Str(s)) => ty.parse_value(&s),
        (Some(Pinned::Scalar(ty)), v @ (Value::Count(_) | Value::Int(_) | Value::Real(_))) => {
            ty.parse_value(&v.to_string())
        }
        (Some(Pinned::Scalar(_)), v) => Err(format!("unexpected `{}`", clip(&v.to_string()))),
    }
}

fn flatten(
    object: &Map<String, Json>,
    prefix: &str,
    names: &mut Vec<String>,
    values: &mut Vec<Value>,
    path: &mut Option<String>,
) -> Result<(), String> {
    for (key, json) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let Json::Object(inner) = json {
            flatten(inner, &name, names, values, path)?;
            continue;
        }
        if name == "_path" {
            *path = json.as_str().map(str::to_owned);
        }
        let value = pin(pinned(&name), infer(json))
            .map_err(|reason| format!("field `{name}`: {reason}"))?;
        names.push(name);
        values.push(value);
    }
    Ok(())
}

/// The type a well-known field must have, whatever its JSON form.
///
/// Beside the time and the connection's addresses and ports, Zeek's
/// counts and intervals of the logs with built-in tables, by names that
/// are of the same type in every Zeek log that has them (not `version`:
/// a count in ssh.log, text in ssl.log). A TSV log declares them in
/// `#types` and a value that is not of its type is a skipped line; in
/// JSON, `"orig_bytes": -5`, `1e30`, `"abc"` or `true` was scored (as a
/// 999999999999997568 TB upload) and written on into ECS documents
/// whose mapping wants a number, which a SIEM then refuses.
fn pinned(name: &str) -> Option<Pinned> {
    match name {
        "ts" | "_write_ts" => Some(Pinned::Time),
        // The other times of Zeek's logs, which json-streaming-logs
        // writes in ISO-8601 as it does `ts` (x509's validity read as
        // unset from such JSON: every certificate's validity was 0 s, and
        // 49 of WRCCDC's were anomalies TSV did not flag).
        "certificate.not_valid_before" | "certificate.not_valid_after"
        // kerberos, smb_files, ocsp
        | "till" | "times.modified" | "times.accessed" | "times.created" | "times.changed"
        | "thisUpdate" | "nextUpdate" | "revoketime" => Some(Pinned::OptionalTime),
        "id.orig_h" | "id.resp_h" => Some(Pinned::Scalar(ScalarType::Addr)),
        "id.orig_p" | "id.resp_p" => Some(Pinned::Scalar(ScalarType::Port)),
        // conn (and conn_long, open_conn)
        "orig_bytes" | "resp_bytes" | "missed_bytes" | "orig_pkts" | "orig_ip_bytes"
        | "resp_pkts" | "resp_ip_bytes" | "ip_proto"
        // dns
        | "trans_id" | "qclass" | "qtype" | "rcode"
        // http
        | "trans_depth" | "request_body_len" | "response_body_len" | "status_code"
        | "info_code"
        // ssh, files
        | "auth_attempts" | "depth" | "seen_bytes" | "total_bytes" | "missing_bytes"
        | "overflow_bytes" => Some(Pinned::Scalar(ScalarType::Count)),
        "duration" | "rtt" => Some(Pinned::Scalar(ScalarType::Real)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pinned {
    /// `ts`: a record's time, never unset.
    Time,
    /// A time that a record may leave unset.
    OptionalTime,
    Scalar(ScalarType),
}

/// Types a value by its JSON form alone.
fn infer(json: &Json) -> Value {
    match json {
        Json::Null => Value::Unset,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(c) = n.as_u64() {
                Value::Count(c)
            } else if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else {
                // serde_json never yields a non-finite float.
                Value::Real(n.as_f64().unwrap_or_default())
            }
        }
        // Zeek's JSON writer, like its TSV writer, writes non-printable
        // bytes as `\xHH` text.
        Json::String(s) => Value::Str(unescape_json(s.as_bytes()).into()),
        Json::Array(a) => Value::List(
            a.iter()
                .take(super::value::MAX_LIST_ELEMENTS)
                .map(infer)
                .collect(),
        ),
        Json::Object(o) => Value::Str(Json::Object(o.clone()).to_string().into()),
    }
}

/// An ISO-8601 time as json-streaming-logs writes it
/// (`2018-03-24T17:15:21.400000Z`), or a number in a string.
fn parse_time(s: &str) -> Result<f64, String> {
    if let Ok(t) = s.trim().parse::<f64>() {
        if t.is_finite() {
            return Ok(t);
        }
    }
    let dt = chrono::DateTime::parse_from_rfc3339(s)
        .map_err(|_| format!("invalid time `{}`", clip(s)))?;
    Ok(dt.timestamp() as f64 + f64::from(dt.timestamp_subsec_nanos()) / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<JsonLine, String> {
        JsonState::default().parse(line.as_bytes(), 1)
    }

    #[test]
    fn zeek_writer_flavour() {
        let l = parse(r#"{"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1","id.orig_p":53,"local_orig":true,"tunnel_parents":[]}"#)
            .unwrap();
        let r = l.record;
        assert_eq!(r.ts(), Some(1.5));
        assert_eq!(
            r.get("id.orig_h"),
            &Value::Addr("10.0.0.1".parse().unwrap())
        );
        assert_eq!(r.get("id.orig_p"), &Value::Count(53));
        assert_eq!(r.get("local_orig"), &Value::Bool(true));
        assert_eq!(r.get("tunnel_parents"), &Value::List(vec![]));
        assert!(r.get("duration").is_unset());
        assert!(l.path.is_none());
    }

    /// An array keeps its first [`MAX_LIST_ELEMENTS`] elements (the rest
    /// are read past), and the keys after it are read.
    #[test]
    fn arrays_keep_their_first_elements() {
        use super::super::value::MAX_LIST_ELEMENTS;
        let items = vec!["[]"; 3 * MAX_LIST_ELEMENTS].join(",");
        let l = parse(&format!(r#"{{"ts":1.5,"answers":[{items}],"uid":"C1"}}"#)).unwrap();
        let Value::List(kept) = l.record.get("answers") else {
            panic!("not a list");
        };
        assert_eq!(kept.len(), MAX_LIST_ELEMENTS);
        assert_eq!(l.record.get("uid"), &Value::Str("C1".into()));
        // In a nested object too (flattened to `x.y`).
        let l = parse(&format!(r#"{{"ts":1.5,"x":{{"y":[{items}]}}}}"#)).unwrap();
        let Value::List(kept) = l.record.get("x.y") else {
            panic!("not a list: {:?}", l.record.get("x.y"));
        };
        assert_eq!(kept.len(), MAX_LIST_ELEMENTS);
    }

    #[test]
    fn streaming_flavour_iso_time_and_path() {
        let l = parse(r#"{"_path":"dns","_write_ts":"2018-03-24T17:15:21.400000Z","ts":"2018-03-24T17:15:20.600843Z","rtt":0.5}"#)
            .unwrap();
        assert_eq!(l.path.as_deref(), Some("dns"));
        let ts = l.record.ts().unwrap();
        assert!((ts - 1_521_911_720.600843).abs() < 1e-6, "{ts}");
    }

    #[test]
    fn nested_objects_flatten_to_zeek_names() {
        let r = parse(r#"{"id": {"orig_h": "::1", "resp_p": 443}}"#)
            .unwrap()
            .record;
        assert_eq!(r.get("id.orig_h").as_addr(), Some("::1".parse().unwrap()));
        assert_eq!(r.get("id.resp_p"), &Value::Count(443));
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(parse("{\"ts\":1").unwrap_err().starts_with("invalid JSON"));
        assert_eq!(parse("[1,2]").err().unwrap(), "JSON line is not an object");
        assert_eq!(
            parse(r#"{"id.orig_p":93145}"#).err().unwrap(),
            "field `id.orig_p`: invalid port `93145`"
        );
        assert_eq!(
            parse(r#"{"id.orig_h":"nope"}"#).err().unwrap(),
            "field `id.orig_h`: invalid address `nope`"
        );
        assert_eq!(
            JsonState::default()
                .parse(b"{\"a\":\"\xff\"}", 1)
                .err()
                .unwrap(),
            "invalid UTF-8"
        );
    }

    #[test]
    fn same_keys_share_a_schema() {
        let mut st = JsonState::default();
        let a = st.parse(br#"{"a":1}"#, 1).unwrap().record;
        let b = st.parse(br#"{"a":2}"#, 2).unwrap().record;
        assert!(Arc::ptr_eq(a.schema(), b.schema()));
    }

    #[test]
    fn alternating_keys_share_their_schemas() {
        let mut st = JsonState::default();
        let lines: [&[u8]; 5] = [
            br#"{"ts":1,"service":"dns","id.resp_p":53}"#,
            br#"{"ts":2,"id.resp_p":80}"#,
            br#"{"ts":3,"service":"ssl","id.resp_p":443}"#,
            br#"{"ts":4}"#,
            br#"{"ts":5,"id.resp_p":22}"#,
        ];
        let r: Vec<Record> = lines
            .iter()
            .zip(1..)
            .map(|(l, n)| st.parse(l, n).unwrap().record)
            .collect();
        assert!(Arc::ptr_eq(r[0].schema(), r[2].schema()));
        assert!(Arc::ptr_eq(r[1].schema(), r[4].schema()));
        assert!(!Arc::ptr_eq(r[0].schema(), r[1].schema()));
        assert_eq!(r[3].schema().names(), ["ts"]);
        assert_eq!(r[2].get("service").as_str(), Some("ssl"));
        assert_eq!(r[4].get("id.resp_p"), &Value::Count(22));
        assert!(r[4].get("service").is_unset());
    }

    #[test]
    fn pinned_fields_accept_other_json_forms() {
        let r = parse(r#"{"id.orig_h":"10.0.0.1","id.resp_p":"443","id.orig_p":80.0}"#)
            .unwrap()
            .record;
        assert_eq!(
            r.get("id.orig_h"),
            &Value::Addr("10.0.0.1".parse().unwrap())
        );
        assert_eq!(r.get("id.resp_p"), &Value::Count(443));
        assert_eq!(r.get("id.orig_p"), &Value::Count(80));
        assert_eq!(
            parse(r#"{"ts":1,"id.resp_p":-1}"#).err().unwrap(),
            "field `id.resp_p`: invalid port `-1`"
        );
        assert!(parse(r#"{"id.orig_h":"nope","ts":1"#)
            .unwrap_err()
            .starts_with("invalid JSON"));
    }

    /// Zeek's counts and intervals are typed as a TSV header types them:
    /// what TSV would skip is a skipped line, what it reads is read alike.
    #[test]
    fn counts_and_intervals_are_typed_as_tsv_types_them() {
        for bad in [r#"-5"#, "1e30", "1.5", r#""abc""#, "true", "[1]"] {
            let line = format!(r#"{{"ts":1,"orig_bytes":{bad}}}"#);
            let e = parse(&line).err().unwrap_or_else(|| panic!("{bad} read"));
            assert!(e.starts_with("field `orig_bytes`: "), "{bad}: {e}");
        }
        let bad = parse(r#"{"ts":1,"duration":"1e400"}"#).err().unwrap();
        assert_eq!(bad, "field `duration`: invalid number `1e400`");
        let r = parse(
            r#"{"ts":1,"orig_bytes":"12","resp_bytes":7,"duration":5,"rtt":0.25,"qtype":null}"#,
        )
        .unwrap()
        .record;
        assert_eq!(r.get("orig_bytes"), &Value::Count(12));
        assert_eq!(r.get("resp_bytes"), &Value::Count(7));
        assert_eq!(r.get("duration"), &Value::Real(5.0));
        assert_eq!(r.get("rtt"), &Value::Real(0.25));
        assert!(r.get("qtype").is_unset());
        // Unset as converters from TSV write it, as TSV reads it.
        let r = parse(
            r#"{"ts":1,"duration":"-","orig_bytes":"","resp_bytes":"(empty)","id.resp_p":"-"}"#,
        )
        .unwrap()
        .record;
        for f in ["duration", "orig_bytes", "resp_bytes", "id.resp_p"] {
            assert!(r.get(f).is_unset(), "{f}: {:?}", r.get(f));
        }
        // Times beside `ts`, in ISO-8601 as json-streaming-logs writes
        // them, or as numbers, read as TSV's `time`.
        let r = parse(
            r#"{"ts":1,"certificate.not_valid_before":"2011-09-10T12:15:02.000000Z","certificate.not_valid_after":1315656902,"till":"-"}"#,
        )
        .unwrap()
        .record;
        assert_eq!(
            r.get("certificate.not_valid_before"),
            &Value::Real(1_315_656_902.0)
        );
        assert_eq!(
            r.get("certificate.not_valid_after"),
            &Value::Real(1_315_656_902.0)
        );
        assert!(r.get("till").is_unset());
        let bad = parse(r#"{"ts":1,"certificate.not_valid_after":"soon"}"#)
            .err()
            .unwrap();
        assert_eq!(
            bad,
            "field `certificate.not_valid_after`: invalid time `soon`"
        );
        // A name pinned nowhere keeps its JSON form.
        let r = parse(r#"{"ts":1,"version":2,"other":-5}"#).unwrap().record;
        assert_eq!(r.get("version"), &Value::Count(2));
        assert_eq!(r.get("other"), &Value::Int(-5));
    }

    /// Zeek's JSON writer escapes bytes that are not UTF-8 and control
    /// characters as `\xHH`, never printable ASCII: `\x41` is text an
    /// attacker wrote, kept as it is (it was read as `A`, and an
    /// allowlist's domain or a detector saw another name than the log's).
    #[test]
    fn only_zeek_s_own_escapes_are_decoded() {
        let r =
            parse(r#"{"host":"a\\x2eexample.com","ua":"\\x41BC","ctl":"a\\x01b","bin":"\\xff"}"#)
                .unwrap()
                .record;
        assert_eq!(r.get("host").as_str(), Some("a\\x2eexample.com"));
        assert_eq!(r.get("ua").as_str(), Some("\\x41BC"));
        assert_eq!(r.get("ctl").as_str(), Some("a\u{1}b"));
        assert_eq!(r.get("bin").as_str(), Some("\u{fffd}"));
        // An address spelled with escapes is no address.
        assert!(parse(r#"{"id.orig_h":"10.0.0.\\x31"}"#).is_err());
    }

    /// Nesting is bounded by serde_json's recursion limit (128): deeper
    /// arrays or `id` objects are a skipped line, not a stack overflow,
    /// even on a thread with a small stack.
    #[test]
    fn deep_nesting_is_a_skip() {
        let outcomes = std::thread::Builder::new()
            .stack_size(512 << 10)
            .spawn(|| {
                let mut outcomes = Vec::new();
                for depth in [100, 126, 127, 128, 129, 10_000, 200_000] {
                    let arrays = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
                    let objects = format!(
                        "{{{}\"orig_p\":1{}}}",
                        "\"id\":{".repeat(depth),
                        "}".repeat(depth)
                    );
                    outcomes.push((depth, parse(&arrays).is_ok(), parse(&objects).is_ok()));
                }
                outcomes
            })
            .unwrap()
            .join()
            .expect("no stack overflow or panic");
        for (depth, arrays, objects) in outcomes {
            // The line's own object is one level of the 128.
            assert_eq!(arrays, depth < 127, "arrays {depth} deep");
            assert_eq!(objects, depth < 127, "objects {depth} deep");
        }
        let err = parse(&format!("{{\"a\":{}", "[".repeat(1000))).unwrap_err();
        assert!(err.contains("recursion limit exceeded"), "{err}");
    }

    /// Numbers beyond any type, odd escapes and times: a value or a skip.
    #[test]
    fn extreme_values_never_panic() {
        let r =
            parse(r#"{"a":123456789012345678901234567890,"b":-9223372036854775809,"c":1e-400}"#)
                .unwrap()
                .record;
        assert_eq!(r.get("a"), &Value::Real(1.2345678901234568e29));
        assert!(matches!(r.get("b"), Value::Real(_)));
        assert_eq!(r.get("c"), &Value::Real(0.0));
        assert!(parse(r#"{"a":1e400}"#)
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert!(parse(r#"{"ts":1e308,"id.orig_p":1e300}"#)
            .unwrap_err()
            .contains("invalid port"));
        assert!(parse(r#"{"a":"\ud800"}"#)
            .unwrap_err()
            .starts_with("invalid JSON"));
        for line in [
            r#"{"ts":"99999999999-01-01T00:00:00Z"}"#,
            r#"{"ts":"-inf"}"#,
            r#"{"ts":"NaN"}"#,
            r#"{"ts":true}"#,
            r#"{"id.orig_h":"\\xff\\x00"}"#,
            r#"{"a":"\\x","b":"\\xZZ","c":"\u0000"}"#,
            r#"{"id":{"orig_h":{"x":[{"y":null}]}},"id.orig_h":"::1"}"#,
            r#"{"id":1,"id":{"orig_p":2},"":3,"":{}}"#,
        ] {
            let _ = parse(line);
        }
    }
}
