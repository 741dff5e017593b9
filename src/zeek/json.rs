//! Zeek's JSON lines, in the three flavours seen in the wild: Zeek's own
//! writer (epoch `ts`, unset fields omitted), json-streaming-logs (ISO-8601
//! `ts`, `_path`, `_write_ts`), and JSON converted by other tools (other
//! spacing and key order, sometimes nested `id` objects).
//!
//! JSON carries no Zeek types, so values are typed by their JSON form, with
//! a few well-known fields pinned (`ts` is a time even when written as an ISO
//! string; the connection's addresses and ports are addresses and ports).

use std::sync::Arc;

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
        let object: Map<String, Json> = match serde_json::from_str(text) {
            Ok(Json::Object(o)) => o,
            Ok(_) => return Err("JSON line is not an object".into()),
            Err(e) => return Err(format!("invalid JSON: {e}")),
        };
        let mut names = Vec::with_capacity(object.len());
        let mut values = Vec::with_capacity(object.len());
        let mut path = None;
        flatten(&object, "", &mut names, &mut values, &mut path)?;
        let schema = match &self.schema {
            Some(s) if s.names() == names.as_slice() => s.clone(),
            _ => {
                let s = Arc::new(Schema::new(names));
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
        let value = convert(&name, json).map_err(|reason| format!("field `{name}`: {reason}"))?;
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

fn convert(name: &str, json: &Json) -> Result<Value, String> {
    if json.is_null() {
        return Ok(Value::Unset);
    }
    match (pinned(name), json) {
        (Some(Pinned::Time), Json::String(s)) => parse_time(s).map(Value::Real),
        (Some(Pinned::Time), _) => match json.as_f64() {
            Some(t) if t.is_finite() => Ok(Value::Real(t)),
            _ => Err(format!("invalid time `{}`", clip(&json.to_string()))),
        },
        (Some(Pinned::Scalar(ty)), Json::String(s)) => ty.parse_value(s),
        (Some(Pinned::Scalar(ty)), Json::Number(n)) => ty.parse_value(&n.to_string()),
        (Some(Pinned::Scalar(_)), other) => {
            Err(format!("unexpected `{}`", clip(&other.to_string())))
        }
        (None, _) => Ok(infer(json)),
    }
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
