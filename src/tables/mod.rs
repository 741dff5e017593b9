//! Feature tables as data: one TOML file per log type, `<log path>.toml`,
//! saying which field becomes which columns.
//!
//! ```toml
//! description = "one record per login of our app"
//! features = [
//!   { field = "user", transform = "rarity" },
//!   { name = "user_given_host", field = "user", transform = "rarity", given = ["id.orig_h"] },
//!   { field = "bytes", transform = "log1p" },
//!   { field = "method", transform = "category", max_values = 8 },
//! ]
//! ```
//!
//! The built-in tables (`tables/*.toml` in the repository) are compiled
//! in; [`Tables::load_dir`] adds a site's own or replaces built-in ones.
//! A table is checked when it is read: unknown keys, unknown transforms,
//! parameters missing or given to a transform that takes none, duplicate
//! feature names; each error names the file, the line and the key.
//!
//! A model stores the table it was trained with and where it came from
//! ([`Table::origin`]), so scoring never needs the files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;
use toml::Spanned;

use crate::features::{FeatureDef, Transform, TransformParams};
use crate::log_kind::LogKind;

/// The built-in tables: `(log path, TOML text)`.
const BUILT_IN: &[(&str, &str)] = &[
    ("conn", include_str!("../../tables/conn.toml")),
    ("conn_long", include_str!("../../tables/conn_long.toml")),
    ("open_conn", include_str!("../../tables/open_conn.toml")),
    ("dns", include_str!("../../tables/dns.toml")),
    ("http", include_str!("../../tables/http.toml")),
    ("ssh", include_str!("../../tables/ssh.toml")),
    ("ssl", include_str!("../../tables/ssl.toml")),
    ("dhcp", include_str!("../../tables/dhcp.toml")),
    ("dpd", include_str!("../../tables/dpd.toml")),
    ("files", include_str!("../../tables/files.toml")),
    ("kerberos", include_str!("../../tables/kerberos.toml")),
    ("notice", include_str!("../../tables/notice.toml")),
    ("ntp", include_str!("../../tables/ntp.toml")),
    ("sip", include_str!("../../tables/sip.toml")),
    ("smtp", include_str!("../../tables/smtp.toml")),
    ("weird", include_str!("../../tables/weird.toml")),
    ("x509", include_str!("../../tables/x509.toml")),
    ("ftp", include_str!("../../tables/ftp.toml")),
    (
        "known_services",
        include_str!("../../tables/known_services.toml"),
    ),
    ("pe", include_str!("../../tables/pe.toml")),
    ("radius", include_str!("../../tables/radius.toml")),
    ("snmp", include_str!("../../tables/snmp.toml")),
    ("software", include_str!("../../tables/software.toml")),
    ("tunnel", include_str!("../../tables/tunnel.toml")),
];

/// The largest table file read.
const MAX_TABLE_BYTES: u64 = 1 << 20;

/// Where a table came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableOrigin {
    /// Compiled in from `tables/<log>.toml`.
    BuiltIn,
    /// Read from a file; `replaces` is true when a built-in table of the
    /// same log type was replaced.
    File { path: PathBuf, replaces: bool },
}

impl fmt::Display for TableOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableOrigin::BuiltIn => f.write_str("built-in"),
            TableOrigin::File { path, replaces } => {
                write!(f, "{}", path.display())?;
                if *replaces {
                    f.write_str(" (replaces the built-in table)")?;
                }
                Ok(())
            }
        }
    }
}

/// One log type's feature table.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub log: LogKind,
    /// What one record of the log is, in words.
    pub description: String,
    pub features: Vec<FeatureDef>,
    pub origin: TableOrigin,
}

/// A table that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{}: cannot read the table: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {}{message}", path.display(), key.as_deref().map(|k| format!("`{k}` ")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: usize,
        /// The key at fault (`features[3].transform`), when one is.
        key: Option<String>,
        message: String,
    },
    #[error("{}: the file name must be the log's path, `<path>.toml` (conn.toml, myapp.toml): {source}", path.display())]
    Name {
        path: PathBuf,
        #[source]
        source: crate::log_kind::InvalidLogKind,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    description: String,
    features: Spanned<Vec<Spanned<RawFeature>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeature {
    name: Option<Spanned<String>>,
    field: Spanned<String>,
    transform: Spanned<String>,
    max_values: Option<Spanned<usize>>,
    chars: Option<Spanned<String>>,
    given: Option<Spanned<Vec<String>>>,
    to: Option<Spanned<String>>,
    by: Option<Spanned<Vec<String>>>,
    half_lives: Option<Spanned<Vec<u32>>>,
    domain: Option<Spanned<bool>>,
    max_keys: Option<Spanned<usize>>,
    min_gap: Option<Spanned<u32>>,
}

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The lines of a text, to name the line of many offsets: [`line_of`] for
/// each of a file's entries counted from the top each time, quadratic in
/// them (an allowlist of 60,000 rules took 100 s to load, and a live
/// reload stalled scoring as long; found by a review).
pub(crate) struct Lines(Vec<usize>);

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        Lines(memchr::memchr_iter(b'\n', text.as_bytes()).collect())
    }

    /// What [`line_of`] says of `offset`.
    pub(crate) fn of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

impl Table {
    /// Reads a table from its TOML `text`; `path` names it in errors (and
    /// its file name is the log's path).
    pub fn parse(
        log: LogKind,
        text: &str,
        path: &Path,
        origin: TableOrigin,
    ) -> Result<Table, TableError> {
        let invalid = |offset: usize, key: Option<String>, message: String| TableError::Invalid {
            path: path.to_owned(),
            line: line_of(text, offset),
            key,
            message,
        };
        let raw: RawTable = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(offset, None, e.message().trim().to_owned())
        })?;
        if raw.features.get_ref().is_empty() {
            return Err(invalid(
                raw.features.span().start,
                Some("features".into()),
                "is empty: a table needs at least one feature".into(),
            ));
        }
        let mut features = Vec::new();
        let lines = Lines::new(text);
        let mut names = BTreeMap::new();
        for (i, f) in raw.features.into_inner().into_iter().enumerate() {
            let at = f.span().start;
            let f = f.into_inner();
            let key = |k: &str| Some(format!("features[{i}].{k}"));
            let field = f.field.get_ref().trim().to_owned();
            if field.is_empty() {
                return Err(invalid(
                    f.field.span().start,
                    key("field"),
                    "is empty: name the Zeek field the feature reads".into(),
                ));
            }
            let name = match &f.name {
                Some(n) if n.get_ref().trim().is_empty() => {
                    return Err(invalid(n.span().start, key("name"), "is empty".into()))
                }
                Some(n) => n.get_ref().trim().to_owned(),
                None => field.clone(),
            };
            if let Some(first) = names.insert(name.clone(), lines.of(at)) {
                return Err(invalid(
                    at,
                    key("name"),
                    format!("`{name}` is already the name of the feature on line {first}; give this one another `name`"),
                ));
            }
            let params = TransformParams {
                max_values: f.max_values.as_ref().map(|v| *v.get_ref()),
                chars: f.chars.as_ref().map(|v| v.get_ref().clone()),
                given: f.given.as_ref().map(|v| v.get_ref().clone()),
                to: f.to.as_ref().map(|v| v.get_ref().clone()),
                by: f.by.as_ref().map(|v| v.get_ref().clone()),
                half_lives: f.half_lives.as_ref().map(|v| v.get_ref().clone()),
                domain: f.domain.as_ref().map(|v| *v.get_ref()),
                max_keys: f.max_keys.as_ref().map(|v| *v.get_ref()),
                min_gap: f.min_gap.as_ref().map(|v| *v.get_ref()),
            };
            let transform = Transform::from_parts(f.transform.get_ref().trim(), params).map_err(
                |(k, why)| {
                    let offset = match k {
                        "max_values" => f.max_values.as_ref().map(|v| v.span().start),
                        "chars" => f.chars.as_ref().map(|v| v.span().start),
                        "given" => f.given.as_ref().map(|v| v.span().start),
                        "to" => f.to.as_ref().map(|v| v.span().start),
                        "by" => f.by.as_ref().map(|v| v.span().start),
                        "half_lives" => f.half_lives.as_ref().map(|v| v.span().start),
                        "domain" => f.domain.as_ref().map(|v| v.span().start),
                        "max_keys" => f.max_keys.as_ref().map(|v| v.span().start),
                        "min_gap" => f.min_gap.as_ref().map(|v| v.span().start),
                        _ => None,
                    };
                    let offset = offset.unwrap_or(if k == "transform" {
                        f.transform.span().start
                    } else {
                        at
                    });
                    invalid(offset, key(k), why)
                },
            )?;
            features.push(FeatureDef {
                name,
                field,
                transform,
            });
        }
        Ok(Table {
            log,
            description: raw.description,
            features,
            origin,
        })
    }

    /// The origin as the model stores it.
    pub fn origin_text(&self) -> String {
        self.origin.to_string()
    }
}

/// The built-in table of `log`; panics if there is none (for tests and
/// benchmarks of the classic modules).
pub fn built_in(log: LogKind) -> &'static Table {
    Tables::built_in()
        .get(log)
        .unwrap_or_else(|| panic!("no built-in table for {log}"))
}

/// The tables in use: the built-in ones, plus or replaced by a site's.
#[derive(Debug, Clone, PartialEq)]
pub struct Tables {
    tables: BTreeMap<LogKind, Table>,
}

impl Tables {
    /// The built-in tables (parsed once per process).
    pub fn built_in() -> &'static Tables {
        static BUILT: OnceLock<Tables> = OnceLock::new();
        BUILT.get_or_init(|| {
            let tables = BUILT_IN
                .iter()
                .map(|(name, text)| {
                    let log = LogKind::new(name).expect("a built-in table's name is a log path");
                    let path = PathBuf::from(format!("tables/{name}.toml"));
                    let table = Table::parse(log, text, &path, TableOrigin::BuiltIn)
                        .unwrap_or_else(|e| panic!("built-in table: {e}"));
                    (log, table)
                })
                .collect();
            Tables { tables }
        })
    }

    /// The built-in tables with those in `dir` (every `*.toml` file in
    /// it, or `dir` itself if it is a file) added or replacing.
    pub fn with_dir(dir: &Path) -> Result<Tables, TableError> {
        let mut t = Tables::built_in().clone();
        t.load_dir(dir)?;
        Ok(t)
    }

    /// Adds the tables in `dir` (every `*.toml` file, or `dir` itself if it
    /// is a file), replacing tables of the same log type.
    pub fn load_dir(&mut self, dir: &Path) -> Result<(), TableError> {
        let io = |source| TableError::Io {
            path: dir.to_owned(),
            source,
        };
        let meta = std::fs::metadata(dir).map_err(io)?;
        let files = if meta.is_file() {
            vec![dir.to_owned()]
        } else {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(dir).map_err(io)? {
                let path = entry.map_err(io)?.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    files.push(path);
                }
            }
            files.sort();
            files
        };
        for path in files {
            let table = self.read_file(&path)?;
            self.tables.insert(table.log, table);
        }
        Ok(())
    }

    fn read_file(&self, path: &Path) -> Result<Table, TableError> {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let log = LogKind::new(stem).map_err(|source| TableError::Name {
            path: path.to_owned(),
            source,
        })?;
        let bytes = crate::safe_fs::read_capped(path, MAX_TABLE_BYTES).map_err(|source| {
            TableError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
        let text = String::from_utf8(bytes).map_err(|_| TableError::Invalid {
            path: path.to_owned(),
            line: 1,
            key: None,
            message: "is not UTF-8 text".into(),
        })?;
        let replaces = Tables::built_in().tables.contains_key(&log);
        Table::parse(
            log,
            &text,
            path,
            TableOrigin::File {
                path: path.to_owned(),
                replaces,
            },
        )
    }

    /// The table of `log`, if there is one.
    pub fn get(&self, log: LogKind) -> Option<&Table> {
        self.tables.get(&log)
    }

    /// Every log type with a table, in name order.
    pub fn kinds(&self) -> Vec<LogKind> {
        self.tables.keys().copied().collect()
    }

    /// The modules named in a `--modules` value (see
    /// [`LogKind::parse_list`]; `ALL` is every table); a name without a
    /// table is refused with the names there are.
    pub fn parse_modules<S: AsRef<str>>(&self, items: &[S]) -> Result<Vec<LogKind>, UnknownModule> {
        let kinds = LogKind::parse_list(items, &self.kinds()).map_err(|e| UnknownModule {
            name: e.to_string(),
            known: self.known(),
        })?;
        match kinds.iter().find(|k| !self.tables.contains_key(k)) {
            Some(k) => Err(UnknownModule {
                name: format!("unknown module `{}`", k.log_path()),
                known: self.known(),
            }),
            None => Ok(kinds),
        }
    }

    fn known(&self) -> String {
        self.kinds()
            .iter()
            .map(|k| k.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A `--modules` name without a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: choose from {known} or ALL (a log type of your own needs a table: --tables DIR with <path>.toml)")]
pub struct UnknownModule {
    name: String,
    known: String,
}

#[cfg(test)]
mod tests;
