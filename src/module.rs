//! The Zeek logs autozeekwatch models, one model per module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A kind of Zeek log with its own feature table and model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Module {
    Conn,
    Dns,
    Http,
    Ssh,
    Ssl,
}

impl Module {
    pub const ALL: [Module; 5] = [
        Module::Conn,
        Module::Dns,
        Module::Http,
        Module::Ssh,
        Module::Ssl,
    ];

    /// The Zeek log path (`conn` for `conn.log`).
    pub fn log_path(self) -> &'static str {
        match self {
            Module::Conn => "conn",
            Module::Dns => "dns",
            Module::Http => "http",
            Module::Ssh => "ssh",
            Module::Ssl => "ssl",
        }
    }

    /// Parses a `--modules` value: names separated by commas or given one by
    /// one, in any case, or `ALL`. Duplicates are dropped; order is kept.
    pub fn parse_list<S: AsRef<str>>(items: &[S]) -> Result<Vec<Module>, UnknownModule> {
        let mut out = Vec::new();
        for item in items {
            for name in item
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                let add: Vec<Module> = if name.eq_ignore_ascii_case("all") {
                    Module::ALL.to_vec()
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

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Module::Conn => "CONN",
            Module::Dns => "DNS",
            Module::Http => "HTTP",
            Module::Ssh => "SSH",
            Module::Ssl => "SSL",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown module `{0}`: choose from CONN, DNS, HTTP, SSH, SSL or ALL")]
pub struct UnknownModule(pub String);

impl FromStr for Module {
    type Err = UnknownModule;

    fn from_str(s: &str) -> Result<Module, UnknownModule> {
        Module::ALL
            .into_iter()
            .find(|m| m.log_path().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownModule(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lists_parse_like_the_cli_promises() {
        assert_eq!(
            Module::parse_list(&["CONN,dns"]).unwrap(),
            [Module::Conn, Module::Dns]
        );
        assert_eq!(
            Module::parse_list(&["conn", "DNS", "conn"]).unwrap(),
            [Module::Conn, Module::Dns]
        );
        assert_eq!(Module::parse_list(&["all"]).unwrap(), Module::ALL);
        let err = Module::parse_list(&["conn,smtp"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown module `smtp`: choose from CONN, DNS, HTTP, SSH, SSL or ALL"
        );
    }
}
