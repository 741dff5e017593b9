//! Which module a Kafka message belongs to, and where its Zeek record is.
//!
//! The zeek-kafka plugin publishes JSON in two layouts: one topic per log
//! type (`zeek-conn`, `conn`, ...), each message a plain record; or one
//! topic for everything with each record wrapped in its log type
//! (`{"conn": {...}}`, the plugin's `tag_json`). A record's module is, in
//! this order: the wrapper's key, a log type named in the topic, the
//! record's `_path` (looked at by the caller, once parsed).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::log_kind::LogKind;

/// The module of `known` whose log type is `name` (`conn`, `x509`, ...).
pub fn module_of_log(name: &str, known: &[LogKind]) -> Option<LogKind> {
    known.iter().copied().find(|m| m.is_path(name))
}

/// The module of `known` a topic carries, if its name says: a log type
/// stands in it between characters that are not letters or digits (or
/// the ends), as in `zeek-conn`, `zeek_dns`, `sensor1.http`, `conn` or
/// `zeek-known_services`; the longest wins (`zeek_smb_files` is smb_files,
/// not files). `zeek` alone says nothing.
pub fn module_of_topic(topic: &str, known: &[LogKind]) -> Option<LogKind> {
    let topic = topic.to_ascii_lowercase();
    let bytes = topic.as_bytes();
    let boundary = |i: Option<&u8>| i.is_none_or(|b| !b.is_ascii_alphanumeric());
    known
        .iter()
        .copied()
        .filter(|m| {
            let name = m.log_path();
            topic.match_indices(name).any(|(at, _)| {
                boundary(at.checked_sub(1).and_then(|i| bytes.get(i)))
                    && boundary(bytes.get(at + name.len()))
            })
        })
        .max_by_key(|m| m.log_path().len())
}

/// A message's payload, unwrapped.
#[derive(Debug, PartialEq, Eq)]
pub struct Unwrapped<'a> {
    /// The wrapper's key (`conn` in `{"conn": {...}}`), if wrapped.
    pub log: Option<Cow<'a, str>>,
    /// The record's JSON object.
    pub body: &'a [u8],
}

/// Finds the record in a payload: a JSON object with exactly one key whose
/// value is an object is a wrapped record (a plain Zeek record always has
/// more than one field, so the two cannot be confused). Anything else is
/// returned as it is, for the record parser to judge.
pub fn unwrap(payload: &[u8]) -> Unwrapped<'_> {
    let plain = Unwrapped {
        log: None,
        body: payload,
    };
    if !first_value_is_object(payload) {
        return plain;
    }
    let Ok(text) = std::str::from_utf8(payload) else {
        return plain;
    };
    match serde_json::from_str::<BTreeMap<Cow<'_, str>, &RawValue>>(text) {
        Ok(map) if map.len() == 1 => {
            let (key, value) = map.into_iter().next().expect("one entry");
            Unwrapped {
                log: Some(key),
                body: value.get().as_bytes(),
            }
        }
        _ => plain,
    }
}

/// The longest originator address taken as a partitioning key: an IPv6
/// address with a zone fits; anything longer is no address.
const MAX_ORIGINATOR: usize = 64;

/// The originator (`id.orig_h`) of a record's JSON object, to key it by
/// when repartitioning: Zeek's flat `"id.orig_h"` or a converted record's
/// nested `"id": {"orig_h": ...}`. Only these fields are kept while the
/// object is read; `None` for anything else (not JSON, no such field, not
/// a string, too long to be an address).
pub fn originator(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow, default)]
        orig_h: Option<Cow<'a, str>>,
    }
    #[derive(serde::Deserialize)]
    struct Keys<'a> {
        #[serde(rename = "id.orig_h", borrow, default)]
        flat: Option<Cow<'a, str>>,
        /// Read apart, so that an `id` of another kind (x509's is a
        /// string) does not hide a flat `id.orig_h`.
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
    }
    let Keys { flat, id } = serde_json::from_slice(body).ok()?;
    let host = flat.or_else(|| serde_json::from_str::<Id<'_>>(id?.get()).ok()?.orig_h)?;
    let host = host.trim();
    (!host.is_empty() && host.len() <= MAX_ORIGINATOR).then(|| host.to_owned())
}

/// A cheap test that rules out nearly every plain record before a full
/// parse: is the first key's value an object (`{"conn": {`)?
fn first_value_is_object(payload: &[u8]) -> bool {
    let mut rest = payload.trim_ascii_start();
    let Some(r) = rest.strip_prefix(b"{") else {
        return false;
    };
    rest = r.trim_ascii_start();
    let Some(r) = rest.strip_prefix(b"\"") else {
        return false;
    };
    // Skip the key, honouring escapes.
    let mut i = 0;
    while i < r.len() {
        match r[i] {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    let Some(after_key) = r.get(i + 1..) else {
        return false;
    };
    let after_key = after_key.trim_ascii_start();
    after_key
        .strip_prefix(b":")
        .is_some_and(|v| v.trim_ascii_start().starts_with(b"{"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_module() {
        let known = LogKind::CLASSIC;
        let of = |t| module_of_topic(t, &known);
        assert_eq!(of("zeek-conn"), Some(LogKind::CONN));
        assert_eq!(of("zeek_DNS"), Some(LogKind::DNS));
        assert_eq!(of("sensor1.http.v2"), Some(LogKind::HTTP));
        assert_eq!(of("ssl"), Some(LogKind::SSL));
        assert_eq!(of("zeek"), None);
        // A word must match whole: `connections` is not `conn`.
        assert_eq!(of("connections"), None);
        assert_eq!(of("zeek-files"), None);
        // Any log type with a model, underscores and all.
        let k = |n| LogKind::new(n).unwrap();
        let known = [k("files"), k("smb_files"), k("known_services"), k("x509")];
        let of = |t| module_of_topic(t, &known);
        assert_eq!(of("zeek-files"), Some(k("files")));
        assert_eq!(of("zeek_smb_files"), Some(k("smb_files")));
        assert_eq!(of("site1.known_services"), Some(k("known_services")));
        assert_eq!(of("zeek-X509-v2"), Some(k("x509")));
        assert_eq!(of("zeek-services"), None);
        assert_eq!(module_of_log("X509", &known), Some(k("x509")));
        assert_eq!(module_of_log("conn", &known), None);
    }

    #[test]
    fn wrapped_records_are_unwrapped() {
        let m = br#"{"conn": {"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1"}}"#;
        let u = unwrap(m);
        assert_eq!(u.log.as_deref(), Some("conn"));
        assert_eq!(u.body, br#"{"ts":1.5,"uid":"C1","id.orig_h":"10.0.0.1"}"#);
    }

    #[test]
    fn plain_records_pass_through() {
        for m in [
            &br#"{"ts":1.5,"uid":"C1"}"#[..],
            // Nested `id` first (converted JSON): more than one key.
            br#"{"id":{"orig_h":"10.0.0.1"},"ts":1.5}"#,
            br#"{"_path":"conn","ts":1.5}"#,
            b"not json",
            br#"{"conn": {"ts":1.5"#,
            b"",
        ] {
            let u = unwrap(m);
            assert_eq!(u.log, None, "{}", String::from_utf8_lossy(m));
            assert_eq!(u.body, m);
        }
    }

    #[test]
    fn escaped_keys_are_read() {
        let u = unwrap(br#"{"c\"onn" : {"a":1,"b":2}}"#);
        assert_eq!(u.log.as_deref(), Some("c\"onn"));
    }

    #[test]
    fn originators_are_read_flat_or_nested() {
        let of = |m: &[u8]| originator(m);
        assert_eq!(
            of(br#"{"ts":1.5,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2"}"#).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            of(br#"{"id":{"orig_h":"fe80::1%eth0","resp_h":"x"},"ts":1}"#).as_deref(),
            Some("fe80::1%eth0")
        );
        assert_eq!(
            of(br#"{"id.orig_h":"10.0.0.\u0031"}"#).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(
            of(br#"{"id":"FXaQ1","id.orig_h":"10.0.0.3"}"#).as_deref(),
            Some("10.0.0.3")
        );
        // Hostile or foreign input: no key, never a panic.
        let deep = "[".repeat(100_000);
        let long = format!(r#"{{"id.orig_h":"{}"}}"#, "a".repeat(1000));
        for m in [
            &b"not json"[..],
            b"",
            br#"{"ts":1.5,"uid":"C1"}"#,
            br#"{"id.orig_h":12}"#,
            br#"{"id.orig_h":""}"#,
            br#"{"id":"10.0.0.1"}"#,
            br#"{"id":{"orig_h":["10.0.0.1"]}}"#,
            br#"{"id.orig_h":"10.0.0.1""#,
            br#"[1,2]"#,
            deep.as_bytes(),
            long.as_bytes(),
        ] {
            assert_eq!(
                of(m),
                None,
                "{}",
                String::from_utf8_lossy(&m[..m.len().min(80)])
            );
        }
    }
}
