//! Which log type a file holds, so that a model only ever sees records of
//! its own type.
//!
//! A file's content decides (`#path` in a TSV header, `_path` in a JSON
//! record); its name (`conn.log`, `dns.00:00:00-01:00:00.log.gz`,
//! `conn.json.gz`) only when the content does not say. A folder's files are
//! picked by name by [`layout::discover`]; a file named directly, which
//! discovery hands to every log type, is checked here.

use std::io::Read;
use std::path::Path;

use crate::log_kind::LogKind;
use crate::zeek::layout::{self, DateRange, LayoutError, LogFile};

/// How much of a file's (decompressed) start is looked at.
const HEAD: u64 = 1 << 16;

/// The log type `path` declares in its content, else the one its name
/// gives; `None` if neither tells (or the file cannot be read: the reader
/// reports that when it opens it).
pub fn log_type_of_file(path: &Path) -> Option<String> {
    let named = named_log_type(path);
    match declared_log_type(path) {
        // The name decides where the content declares another log type's
        // path its records may carry (RITA's JSON open_conn says conn).
        Some(d)
            if (named.as_deref())
                .is_some_and(|n| !n.eq_ignore_ascii_case(&d) && LogKind::path_fits(n, &d)) =>
        {
            named
        }
        Some(d) => Some(d),
        None => named,
    }
}

/// The files of `module` under `root`: a folder's by name, a file named
/// directly only if it holds that log type.
pub fn files_of(
    root: &Path,
    module: LogKind,
    range: DateRange,
) -> Result<Vec<LogFile>, LayoutError> {
    let files = layout::discover(root, module.log_path(), range)?;
    if !crate::safe_fs::is_regular(root) {
        return Ok(files);
    }
    Ok(files
        .into_iter()
        .filter(|f| log_type_of_file(&f.path).is_some_and(|p| module.is_path(&p)))
        .collect())
}

/// `#path` of a TSV header or `_path` of the first JSON record.
fn declared_log_type(path: &Path) -> Option<String> {
    let file = crate::safe_fs::open_regular(path).ok()?;
    let (_, text) = crate::compress::decompressed(file).ok()?;
    let mut bytes = Vec::new();
    text.take(HEAD).read_to_end(&mut bytes).ok()?;
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).trim_ascii())
        .filter(|l| !l.is_empty());
    let first = lines.next()?;
    if first.starts_with(b"{") {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "_path")]
            path: Option<String>,
        }
        return serde_json::from_slice::<Probe>(first).ok()?.path;
    }
    std::iter::once(first)
        .chain(lines)
        .take_while(|l| l.starts_with(b"#"))
        .find_map(|l| l.strip_prefix(b"#path"))
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
}

/// The log type in a Zeek file name: what precedes the first dot.
fn named_log_type(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    layout::parse_log_name(name)
        .map(|n| n.log_path.to_owned())
        .or_else(|| {
            name.split_once('.')
                .map(|(stem, _)| stem.to_owned())
                .filter(|s| !s.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, text: &str, gzip: bool) -> std::path::PathBuf {
        let p = dir.join(name);
        let mut f = std::fs::File::create(&p).unwrap();
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            gz.finish().unwrap();
        } else {
            f.write_all(text.as_bytes()).unwrap();
        }
        p
    }

    #[test]
    fn content_decides_over_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let tsv = write(
            dir.path(),
            "conn.log",
            "#separator \\x09\n#set_separator\t,\n#path\tdns\n#fields\tts\n",
            false,
        );
        assert_eq!(log_type_of_file(&tsv).as_deref(), Some("dns"));
        let json = write(
            dir.path(),
            "x.json.gz",
            "{\"_path\":\"http\",\"ts\":1}\n",
            true,
        );
        assert_eq!(log_type_of_file(&json).as_deref(), Some("http"));
        let unnamed = write(dir.path(), "conn.json.gz", "{\"ts\":1}\n", true);
        assert_eq!(log_type_of_file(&unnamed).as_deref(), Some("conn"));
        let rotated = write(
            dir.path(),
            "ssl.00:00:00-01:00:00.log.gz",
            "{\"ts\":1}\n",
            true,
        );
        assert_eq!(log_type_of_file(&rotated).as_deref(), Some("ssl"));
    }

    /// RITA's JSON open_conn records say `"_path":"conn"`: a file named
    /// open_conn is open_conn's all the same; a conn file is conn's.
    #[test]
    fn an_open_conn_file_may_say_conn() {
        let dir = tempfile::tempdir().unwrap();
        let line = "{\"_path\":\"conn\",\"ts\":1}\n";
        let open = write(dir.path(), "open_conn.log", line, false);
        assert_eq!(log_type_of_file(&open).as_deref(), Some("open_conn"));
        let conn = write(dir.path(), "conn.log", line, false);
        assert_eq!(log_type_of_file(&conn).as_deref(), Some("conn"));
        let other = write(
            dir.path(),
            "open_conn.2.log",
            "{\"_path\":\"dns\"}\n",
            false,
        );
        assert_eq!(log_type_of_file(&other).as_deref(), Some("dns"));
    }

    #[test]
    fn a_file_named_directly_goes_to_its_own_type_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "conn.json.gz", "{\"ts\":1}\n", true);
        for m in LogKind::CLASSIC {
            let got = files_of(&p, m, DateRange::default()).unwrap();
            assert_eq!(got.len(), usize::from(m == LogKind::CONN), "{m}");
        }
    }
}
