//! The kinds of Zeek log autozeekwatch models, one model each. The CLI
//! calls them modules (`--modules CONN,DNS`), as the Python tool does.
//!
//! A kind is a Zeek log path (`conn` for `conn.log`), open to any log that
//! has a feature table (see [`crate::tables`]): the five classic ones have
//! constants, the others (`files`, `x509`, a site's `myapp`) are made by
//! [`LogKind::new`]. Names are interned, so a kind stays a `Copy` word that
//! compares as its text.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A kind of Zeek log with its own feature table and model: its log path,
/// in lower case. Shown and serialized in upper case (`CONN`), as before
/// kinds were open.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKind(&'static str);

/// The longest log path accepted.
pub const MAX_NAME_LEN: usize = 64;
/// How many distinct names one process interns at most (each is kept for
/// the life of the process).
const MAX_INTERNED: usize = 4096;

static INTERNED: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());

impl LogKind {
    pub const CONN: LogKind = LogKind("conn");
    pub const DNS: LogKind = LogKind("dns");
    pub const HTTP: LogKind = LogKind("http");
    pub const SSH: LogKind = LogKind("ssh");
    pub const SSL: LogKind = LogKind("ssl");
    /// The zeek-long-connections package's log of still-open connections,
    /// whose records also feed conn's long-connection detector.
    pub const CONN_LONG: LogKind = LogKind("conn_long");
    /// RITA's zeek-open-connections package's log, the same kind of
    /// reports (conn's fields, hourly while a connection is open past an
    /// hour): RITA's `missing_host` holds a three-day SSH session only
    /// there.
    pub const OPEN_CONN: LogKind = LogKind("open_conn");

    /// The five modules of the first versions.
    pub const CLASSIC: [LogKind; 5] = [
        LogKind::CONN,
        LogKind::DNS,
        LogKind::HTTP,
        LogKind::SSH,
        LogKind::SSL,
    ];

    /// The kind of the log path `name`, in any case: 1 to
    /// [`MAX_NAME_LEN`] ASCII letters, digits, `_` or `-`, starting with a
    /// letter or digit (what Zeek's log paths are).
    pub fn new(name: &str) -> Result<LogKind, InvalidLogKind> {
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(InvalidLogKind::Name(name.to_owned()));
        }
        let lower = name.to_ascii_lowercase();
        if let Some(k) = LogKind::CLASSIC.iter().find(|k| k.0 == lower) {
            return Ok(*k);
        }
        let mut interned = INTERNED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = interned.get(lower.as_str()) {
            return Ok(LogKind(s));
        }
        if interned.len() >= MAX_INTERNED {
            return Err(InvalidLogKind::TooMany);
        }
        let s: &'static str = Box::leak(lower.into_boxed_str());
        interned.insert(s);
        Ok(LogKind(s))
    }

    /// The Zeek log path (`conn` for `conn.log`).
    pub fn log_path(self) -> &'static str {
        self.0
    }

    /// Whether records declaring `declared` (a `#path` or `_path`) belong
    /// in a log of type `log` (both in any case): its own, or conn's in an
    /// open_conn log, which RITA's zeek-open-connections writes with
    /// conn's path in its JSON (RITA's
    /// `json_with_all_fields/open_conn.log`: every line was skipped). Not
    /// [`LogKind::is_path`]: conn records routed by their path stay
    /// conn's.
    pub fn path_fits(log: &str, declared: &str) -> bool {
        log.eq_ignore_ascii_case(declared)
            || log.eq_ignore_ascii_case(LogKind::OPEN_CONN.0)
                && declared.eq_ignore_ascii_case(LogKind::CONN.0)
    }

    /// Whether `path` (a `#path` or `_path`, in any case) is this kind's.
    pub fn is_path(self, path: &str) -> bool {
        self.0.eq_ignore_ascii_case(path.trim())
    }

    /// The kinds named in a `--modules` value: names separated by commas
    /// or spaces (`AZW_MODULES="CONN DNS"`) or given one by one, in any
    /// case; `ALL` stands for `all`. Duplicates are dropped; order is
    /// kept. Whether a name has a table or a model is the caller's to
    /// check.
    pub fn parse_list<S: AsRef<str>>(
        items: &[S],
        all: &[LogKind],
    ) -> Result<Vec<LogKind>, InvalidLogKind> {
        let mut out = Vec::new();
        for item in items {
            for name in item
                .as_ref()
                .split(|c: char| c == ',' || c.is_whitespace())
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let add: Vec<LogKind> = if name.eq_ignore_ascii_case("all") {
                    all.to_vec()
                } else {
                    vec![name.parse()?]
                };
                for m in add {
                    if !out.contains(&m) {
                        out.push(m);
                    }
                }
            }
        }
        Ok(out)
    }
}

impl fmt::Display for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            fmt::Write::write_char(f, c.to_ascii_uppercase())?;
        }
        Ok(())
    }
}

impl fmt::Debug for LogKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLogKind {
    #[error("`{0}` is not a log type: a Zeek log path is 1 to {MAX_NAME_LEN} letters, digits, `_` or `-` (conn, dns, x509, known_services)")]
    Name(String),
    #[error("too many distinct log types in one process (at most {MAX_INTERNED})")]
    TooMany,
}

impl FromStr for LogKind {
    type Err = InvalidLogKind;

    fn from_str(s: &str) -> Result<LogKind, InvalidLogKind> {
        LogKind::new(s)
    }
}

impl Serialize for LogKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LogKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<LogKind, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(d)?;
        LogKind::new(&name).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_parse_like_the_cli_promises() {
        let all = LogKind::CLASSIC;
        assert_eq!(
            LogKind::parse_list(&["CONN,dns"], &all).unwrap(),
            [LogKind::CONN, LogKind::DNS]
        );
        assert_eq!(
            LogKind::parse_list(&["conn", "DNS", "conn"], &all).unwrap(),
            [LogKind::CONN, LogKind::DNS]
        );
        assert_eq!(LogKind::parse_list(&["all"], &all).unwrap(), all);
        assert_eq!(
            LogKind::parse_list(&["CONN DNS", " ssl ,http"], &all).unwrap(),
            [LogKind::CONN, LogKind::DNS, LogKind::SSL, LogKind::HTTP]
        );
        let err = LogKind::parse_list(&["conn,sm/tp"], &all).unwrap_err();
        assert!(
            err.to_string().starts_with("`sm/tp` is not a log type"),
            "{err}"
        );
    }

    #[test]
    fn open_kinds_are_interned_and_keep_the_classic_spelling() {
        let a = LogKind::new("Known_Services").unwrap();
        let b: LogKind = "known_services".parse().unwrap();
        assert_eq!(a, b);
        assert!(std::ptr::eq(a.log_path(), b.log_path()));
        assert_eq!(a.to_string(), "KNOWN_SERVICES");
        assert_eq!(LogKind::new("CONN").unwrap(), LogKind::CONN);
        assert_eq!(serde_json::to_string(&LogKind::CONN).unwrap(), "\"CONN\"");
        let x: LogKind = serde_json::from_str("\"X509\"").unwrap();
        assert_eq!(x.log_path(), "x509");
        // Classic order is alphabetical, as the enum's was.
        let mut sorted = LogKind::CLASSIC;
        sorted.sort();
        assert_eq!(sorted, LogKind::CLASSIC);
        for bad in ["", "a b", "../x", "-x", &"a".repeat(65)] {
            assert!(LogKind::new(bad).is_err(), "{bad:?}");
        }
    }
}
