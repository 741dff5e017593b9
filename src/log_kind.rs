//! The kinds of Zeek log autozeekwatch models, one model each. The CLI
//! calls them modules (`--modules CONN,DNS`), as the Python tool does.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of Zeek log with its own feature table and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LogKind {
    Conn,
    Dns,
    Http,
    Ssh,
    Ssl,
}

impl LogKind {
    pub const ALL: [LogKind; 5] = [
        LogKind::Conn,
        LogKind::Dns,
        LogKind::Http,
        LogKind::Ssh,
        LogKind::Ssl,
    ];

    /// The Zeek log path (`conn` for `conn.log`).
    pub fn log_path(self) -> &'static str {
        match self {
            LogKind::Conn => "conn",
            LogKind::Dns => "dns",
            LogKind::Http => "http",
            LogKind::Ssh => "ssh",
            LogKind::Ssl => "ssl",
        }
    }

    /// Parses a `--modules` value: names separated by commas or spaces
    /// (`AZW_MODULES="CONN DNS"`) or given one by one, in any case, or
    /// `ALL`. Duplicates are dropped; order is kept.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<LogKind>, UnknownLogKind> {
        let mut out = Vec::new();
        for item in items {
            for name in item
                .as_ref()
                .split(|c: char| c == ',' || c.is_whitespace())
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let add: Vec<LogKind> = if name.eq_ignore_ascii_case("all") {
                    LogKind::ALL.to_vec()
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
        f.write_str(match self {
            LogKind::Conn => "CONN",
            LogKind::Dns => "DNS",
            LogKind::Http => "HTTP",
            LogKind::Ssh => "SSH",
            LogKind::Ssl => "SSL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown module `{0}`: choose from CONN, DNS, HTTP, SSH, SSL or ALL")]
pub struct UnknownLogKind(pub String);

impl FromStr for LogKind {
    type Err = UnknownLogKind;

    fn from_str(s: &str) -> Result<LogKind, UnknownLogKind> {
        LogKind::ALL
            .into_iter()
            .find(|m| m.log_path().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownLogKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_parse_like_the_cli_promises() {
        assert_eq!(
            LogKind::parse_list(&["CONN,dns"]).unwrap(),
            [LogKind::Conn, LogKind::Dns]
        );
        assert_eq!(
            LogKind::parse_list(&["conn", "DNS", "conn"]).unwrap(),
            [LogKind::Conn, LogKind::Dns]
        );
        assert_eq!(LogKind::parse_list(&["all"]).unwrap(), LogKind::ALL);
        assert_eq!(
            LogKind::parse_list(&["CONN DNS", " ssl ,http"]).unwrap(),
            [LogKind::Conn, LogKind::Dns, LogKind::Ssl, LogKind::Http]
        );
        let err = LogKind::parse_list(&["conn,smtp"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown module `smtp`: choose from CONN, DNS, HTTP, SSH, SSL or ALL"
        );
    }
}
