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

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value as Json};

use super::record::{Record, Schema};
use super::tsv::unescape;
use super::value::{clip, ScalarType, Value};

/// Keeps the schema of the previous line, so consecutive lines with the same
/// keys share one.
#[derive(Debug, Default, Clone)]
pub(crate) struct JsonState {
    schema: Option<Arc<Schema>>,
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
        let entries: Entries =
            serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let mut names: Vec<Cow<'_, str>> = Vec::with_capacity(entries.0.len());
        let mut values = Vec::with_capacity(entries.0.len());
        let mut path = None;
        for (key, raw) in entries.0 {
            match raw {
                Raw::Object(inner) => {
                    let mut nested_names = Vec::new();
                    flatten(&inner, &key, &mut nested_names, &mut values, &mut path)?;
                    names.extend(nested_names.into_iter().map(Cow::Owned));
                }
                Raw::Value(v) => {
                    if key == "_path" {
                        path = v.as_str().map(str::to_owned);
                    }
                    let v = pin(&key, v).map_err(|reason| format!("field `{key}`: {reason}"))?;
                    names.push(key);
                    values.push(v);
                }
            }
        }
        let schema = match &self.schema {
            Some(s)
                if s.names()
                    .iter()
                    .map(String::as_str)
                    .eq(names.iter().map(|n| n.as_ref())) =>
            {
                s.clone()
            }
            _ => {
                let s = Arc::new(Schema::new(
                    names.into_iter().map(Cow::into_owned).collect(),
                ));
                self.schema = Some(s.clone());
                s
            }
        };
        Ok(JsonLine {
            record: Record::new(schema, values, line_no),
            path,
        })
    }
}

/// The entries of a JSON object in file order, keys borrowed from the line
/// where they need no unescaping, values read straight into [`Value`]s: the
/// line is parsed once, without an intermediate `serde_json::Value` tree.
struct Entries<'a>(Vec<(Cow<'a, str>, Raw)>);

/// A value as read: ours, or a nested object to flatten (`{"id": {...}}`).
enum Raw {
    Value(Value),
    Object(Map<String, Json>),
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

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntriesVisitor;
        impl<'de> Visitor<'de> for EntriesVisitor {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(24));
                while let Some(Key(key)) = map.next_key()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Entries(entries))
            }
        }
        d.deserialize_map(EntriesVisitor)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RawVisitor;
        impl<'de> Visitor<'de> for RawVisitor {
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
                Ok(Raw::Value(Value::Str(unescape(v.as_bytes()).into_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
                Ok(Raw::Value(Value::Unset))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4));
                while let Some(item) = seq.next_element::<Raw>()? {
                    items.push(match item {
                        Raw::Value(v) => v,
                        Raw::Object(o) => Value::Str(Json::Object(o).to_string()),
                    });
                }
                Ok(Raw::Value(Value::List(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Raw, A::Error> {
                Map::deserialize(de::value::MapAccessDeserializer::new(map)).map(Raw::Object)
            }
        }
        d.deserialize_any(RawVisitor)
    }
}

/// Gives a well-known field its type, whatever its JSON form.
fn pin(name: &str, value: Value) -> Result<Value, String> {
    if value.is_unset() {
        return Ok(value);
    }
    match (pinned(name), value) {
        (None, v) => Ok(v),
        (Some(Pinned::Time), Value::Str(s)) => parse_time(&s).map(Value::Real),
        (Some(Pinned::Time), v) => match v.as_f64() {
            Some(t) if t.is_finite() && !matches!(v, Value::Bool(_)) => Ok(Value::Real(t)),
            _ => Err(format!("invalid time `{}`", clip(&v.to_string()))),
        },
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
        let value =
            pin(&name, infer(json)).map_err(|reason| format!("field `{name}`: {reason}"))?;
        names.push(name);
        values.push(value);
    }
    Ok(())
}

/// The type a well-known field must have, whatever its JSON form.
fn pinned(name: &str) -> Option<Pinned> {
    match name {
        "ts" | "_write_ts" => Some(Pinned::Time),
        "id.orig_h" | "id.resp_h" => Some(Pinned::Scalar(ScalarType::Addr)),
        "id.orig_p" | "id.resp_p" => Some(Pinned::Scalar(ScalarType::Port)),
        _ => None,
    }
}

enum Pinned {
    Time,
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
        Json::String(s) => Value::Str(unescape(s.as_bytes()).into_owned()),
        Json::Array(a) => Value::List(a.iter().map(infer).collect()),
        Json::Object(o) => Value::Str(Json::Object(o.clone()).to_string()),
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
}
