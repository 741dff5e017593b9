//! Where Zeek keeps its logs, and which files hold one log path.
//!
//! Zeek's log directory holds one folder per day of history,
//! `YYYY-MM-DD/<path>.HH:MM:SS-HH:MM:SS.log.gz`, and `current/<path>.log`,
//! the files being written now (archives may be gzip, bzip2 or zstd,
//! told by their content, [`crate::compress`]). Training reads the history and never
//! `current/`. A flat folder of logs (`conn.log`, `dns.log.gz`, ...) and a
//! single file are accepted too, because that is how captures are shared.
//!
//! Only regular files are logs: a FIFO among them would block the reader and
//! a device (a link to `/dev/zero`) would never end, so in a folder they are
//! skipped with a warning, and named directly they are an error.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use crate::compress::Compression;

/// One historical file of a log path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// The day folder it came from, if any.
    pub date: Option<NaiveDate>,
    /// The start of its rotation interval as written in the name
    /// (`00:00:00`), if any; orders the files of one day.
    pub interval: Option<String>,
}

/// An inclusive range of days; either end may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateRange {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

impl DateRange {
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.start.is_none_or(|s| day >= s) && self.end.is_none_or(|e| day <= e)
    }

    pub fn is_open(&self) -> bool {
        self.start.is_none() && self.end.is_none()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{}: no such file or directory (give the folder that holds Zeek's dated log folders, a folder of logs, or one log file)", .0.display())]
    Missing(PathBuf),
    #[error("{}: {kind}, not a log file or a folder (only regular files are read)", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    /// (The I/O error is in the message, not chained: printed with its
    /// causes, it said "Permission denied" twice.)
    /// A path this user may not reach: a folder on the way cannot be
    /// searched, or the file itself cannot be looked at.
    #[error("{}: cannot be read ({cause}): this user may not read it or search a folder on its path; let it read the logs (e.g. add it to the group that owns them) or give a path it can read", path.display())]
    Denied {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{}: {cause}", path.display())]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The name of a Zeek log file, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogName<'a> {
    /// The log path: `conn` in `conn.00:00:00-01:00:00.log.gz`.
    pub log_path: &'a str,
    /// The rotation interval, if the name has one.
    pub interval: Option<&'a str>,
}

/// Takes a file name apart:
/// `<path>[.<interval>].(log|json)[.labeled][.gz|.bz2|.zst]`.
/// Returns `None` for anything else (`conn-summary.log` is the log path
/// `conn-summary`, so asking for `conn` never picks it up).
pub fn parse_log_name(name: &str) -> Option<LogName<'_>> {
    let mut parts = name.split('.');
    let log_path = parts.next().filter(|p| !p.is_empty())?;
    let mut rest: Vec<&str> = parts.collect();
    if rest
        .last()
        .is_some_and(|e| Compression::EXTENSIONS.contains(e))
    {
        rest.pop();
    }
    if rest.last() == Some(&"labeled") {
        rest.pop();
    }
    if !matches!(rest.pop(), Some("log" | "json")) {
        return None;
    }
    let interval = match rest.as_slice() {
        [] => None,
        [i] if i.bytes().all(|b| b.is_ascii_digit() || b":_-".contains(&b)) => Some(*i),
        _ => return None,
    };
    Some(LogName { log_path, interval })
}

/// The ending of a file named as a log of `log_path` but for an ending
/// that is no archive read here (`conn.00:00:00-01:00:00.log.xz`): said,
/// rather than a history passed over in silence.
fn unread_archive<'a>(name: &'a str, log_path: &str) -> Option<&'a str> {
    let (stem, ext) = name.rsplit_once('.')?;
    let compressed = [
        "xz", "lz4", "lzma", "zip", "7z", "br", "z", "Z", "bz", "zstd",
    ];
    let named = parse_log_name(stem).is_some_and(|n| n.log_path == log_path);
    (named && compressed.contains(&ext)).then_some(ext)
}

/// Whether `name` is how logrotate names a rotated log of `log_path`:
/// `conn.log.1`, `conn.log.2.gz`.
fn logrotate_name(name: &str, log_path: &str) -> bool {
    let Some(rest) = name
        .strip_prefix(log_path)
        .and_then(|r| r.strip_prefix(".log."))
    else {
        return false;
    };
    let number = match rest.rsplit_once('.') {
        Some((n, ext)) if Compression::EXTENSIONS.contains(&ext) => n,
        _ => rest,
    };
    !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

/// The day a folder is named for (`2024-04-19`), if it is.
fn day_of(dir: &Path) -> Option<NaiveDate> {
    parse_day(dir.file_name()?.to_str()?)
}

fn parse_day(name: &str) -> Option<NaiveDate> {
    if name.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(name, "%Y-%m-%d").ok()
}

/// Why `root` could not be looked at or listed, with what to do about it.
fn unreadable(root: &Path, e: std::io::Error) -> LayoutError {
    let path = root.to_owned();
    match e.kind() {
        std::io::ErrorKind::NotFound => LayoutError::Missing(path),
        std::io::ErrorKind::PermissionDenied => LayoutError::Denied { path, cause: e },
        _ => LayoutError::Io { path, cause: e },
    }
}

/// The historical files of `log_path` under `root`, oldest first.
///
/// `root` may be Zeek's log directory (dated folders; `current/` is
/// skipped), a flat folder of logs, or a single file (taken as it is). With a
/// date range, only files in dated folders within it are used.
pub fn discover(
    root: &Path,
    log_path: &str,
    range: DateRange,
) -> Result<Vec<LogFile>, LayoutError> {
    let meta = std::fs::metadata(root).map_err(|e| unreadable(root, e))?;
    if meta.is_file() {
        // A file named directly keeps the day of its folder and the hour of
        // its name: a replay of files from several days reads them in time
        // order across log types.
        let name = root
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        return Ok(vec![LogFile {
            path: root.to_owned(),
            date: root.parent().and_then(day_of),
            interval: parse_log_name(name).and_then(|n| n.interval.map(str::to_owned)),
        }]);
    }
    if !meta.is_dir() {
        return Err(LayoutError::NotAFile {
            path: root.to_owned(),
            kind: crate::safe_fs::describe(&meta.file_type()),
        });
    }
    let mut found = Vec::new();
    let root_day = day_of(root);
    for entry in read_dir_sorted(root)? {
        let name = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if entry.is_dir() && parse_log_name(name).is_none() {
            if let Some(day) = parse_day(name).filter(|d| range.contains(*d)) {
                // One day that cannot be listed (its permissions changed)
                // is said and passed over: it stopped the whole run, every
                // night, and the other days' models went stale.
                if let Err(e) = collect(&entry, log_path, Some(day), &mut found) {
                    tracing::warn!("{e}; that day is skipped");
                }
            }
        } else if root_day.map_or(range.is_open(), |d| range.contains(d)) {
            // A day's folder named itself (`--replay .../2024-04-19`): its
            // files are of that day, and a date range takes them when it
            // holds the day (a range refused them all, then said their
            // dates were outside it).
            collect_file(&entry, log_path, root_day, &mut found);
        }
    }
    found.sort_by(order);
    Ok(found)
}

fn order(a: &LogFile, b: &LogFile) -> Ordering {
    (a.date, &a.interval, &a.path).cmp(&(b.date, &b.interval, &b.path))
}

fn collect(
    dir: &Path,
    log_path: &str,
    day: Option<NaiveDate>,
    out: &mut Vec<LogFile>,
) -> Result<(), LayoutError> {
    for entry in read_dir_sorted(dir)? {
        collect_file(&entry, log_path, day, out);
    }
    Ok(())
}

/// Adds `path` if it is named as a log of `log_path`. One so named that
/// is no regular file (a FIFO, a device, a folder, a link that leads
/// nowhere) is added too: its reader refuses it without blocking, naming
/// what it is, and it counts as an input that could not be read (exit 2),
/// as a damaged archive does. (Skipped here with a warning, or in
/// silence for a folder, the run said it had read everything.)
fn collect_file(path: &Path, log_path: &str, day: Option<NaiveDate>, out: &mut Vec<LogFile>) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Some(parsed) = parse_log_name(name).filter(|n| n.log_path == log_path) else {
        if let Some(ext) = unread_archive(name, log_path) {
            tracing::warn!(
                "{}: skipped: archives ending .{ext} are not read (gzip, bzip2 and zstd are): decompress it, or set the archiver's compression to one of those",
                path.display()
            );
        } else if logrotate_name(name, log_path) {
            tracing::warn!(
                "{}: skipped: a folder is read for Zeek's names, and this is logrotate's (its number orders it against its siblings only, not against the other log types' files): name it directly (--replay FILE, --log-dir FILE), oldest first, or rename it as Zeek names rotated logs ({log_path}.HH:MM:SS-HH:MM:SS.log)",
                path.display()
            );
        }
        return;
    };
    out.push(LogFile {
        path: path.to_owned(),
        date: day,
        interval: parsed.interval.map(str::to_owned),
    });
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, LayoutError> {
    let io = |cause| unreadable(dir, cause);
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeek::testutil::mkfifo;

    /// A day's folder named as the root gives its files its day, and a
    /// date range takes them when it holds that day (and only then).
    #[test]
    fn a_day_folder_named_itself_is_of_its_day() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("2024-04-19");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(day.join("conn.00:00:00-01:00:00.log"), "").unwrap();
        let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let range = |start: &str, end: &str| DateRange {
            start: Some(date(start)),
            end: Some(date(end)),
        };
        let found = discover(&day, "conn", DateRange::default()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].date, Some(date("2024-04-19")));
        assert_eq!(found[0].interval.as_deref(), Some("00:00:00-01:00:00"));
        assert_eq!(
            discover(&day, "conn", range("2024-04-19", "2024-04-19"))
                .unwrap()
                .len(),
            1
        );
        assert!(discover(&day, "conn", range("2024-04-20", "2024-04-21"))
            .unwrap()
            .is_empty());
        // Named directly, a file keeps its folder's day and its hour.
        let file = discover(
            &day.join("conn.00:00:00-01:00:00.log"),
            "conn",
            DateRange::default(),
        )
        .unwrap();
        assert_eq!(file[0].date, Some(date("2024-04-19")));
        assert_eq!(file[0].interval.as_deref(), Some("00:00:00-01:00:00"));
        // Another folder's files have no day.
        let plain = dir.path().join("logs");
        std::fs::create_dir_all(&plain).unwrap();
        std::fs::write(plain.join("conn.log"), "").unwrap();
        assert_eq!(
            discover(&plain, "conn", DateRange::default()).unwrap()[0].date,
            None
        );
    }

    #[test]
    fn names_match_the_log_path_exactly() {
        let p = |n| parse_log_name(n).map(|l| (l.log_path, l.interval));
        assert_eq!(p("conn.log"), Some(("conn", None)));
        assert_eq!(
            p("conn.00:00:00-01:00:00.log.gz"),
            Some(("conn", Some("00:00:00-01:00:00")))
        );
        assert_eq!(
            p("open_conn.17_32_32-18_00_00.log.gz"),
            Some(("open_conn", Some("17_32_32-18_00_00")))
        );
        assert_eq!(p("conn.log.labeled"), Some(("conn", None)));
        assert_eq!(p("dns.json.gz"), Some(("dns", None)));
        assert_eq!(p("conn-summary.log").unwrap().0, "conn-summary");
        assert_eq!(p("conn_long.log").unwrap().0, "conn_long");
        assert_eq!(p("conn.log.corrupt.gz"), None);
        assert_eq!(
            p("conn.00:00:00-01:00:00.log.bz2"),
            Some(("conn", Some("00:00:00-01:00:00")))
        );
        assert_eq!(p("dns.00:00:00-01:00:00.log.zst").unwrap().0, "dns");
        assert_eq!(p("conn.00:00:00-01:00:00.log.xz"), None);
        assert_eq!(
            unread_archive("conn.00:00:00-01:00:00.log.xz", "conn"),
            Some("xz")
        );
        assert_eq!(unread_archive("conn.00:00:00-01:00:00.log.xz", "dns"), None);
        assert_eq!(unread_archive("conn.log.gz", "conn"), None);
        assert!(logrotate_name("conn.log.1", "conn"));
        assert!(logrotate_name("conn.log.12.gz", "conn"));
        assert!(logrotate_name("conn.log.2.zst", "conn"));
        assert!(!logrotate_name("conn.log.1", "dns"));
        assert!(!logrotate_name("conn.log.gz", "conn"));
        assert!(!logrotate_name("conn.log.x", "conn"));
        assert!(!logrotate_name("conn_long.log.1", "conn"));
        assert_eq!(p("README.md"), None);
        assert_eq!(p(".log"), None);
    }

    /// A log in a folder this user may not search (tests run as root,
    /// who may search every folder, hence the error made by hand): the
    /// message says what to do, not only "Permission denied".
    #[test]
    fn a_path_this_user_may_not_read_is_said_with_what_to_do() {
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = unreadable(Path::new("/srv/zeek/conn.log"), denied);
        let text = e.to_string();
        assert!(
            text.starts_with("/srv/zeek/conn.log: cannot be read"),
            "{text}"
        );
        assert!(
            text.contains("may not read it or search a folder on its path"),
            "{text}"
        );
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = unreadable(Path::new("/srv/zeek"), gone);
        assert!(matches!(e, LayoutError::Missing(_)), "{e}");
    }

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"").unwrap();
    }

    #[test]
    fn dated_layout_in_time_order_without_current() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "2024-04-20/conn.01:00:00-02:00:00.log.gz",
            "2024-04-20/conn.00:00:00-01:00:00.log.gz",
            "2024-04-19/conn.23:00:00-00:00:00.log.gz",
            "2024-04-19/conn-summary.23:00:00-00:00:00.log.gz",
            "2024-04-19/dns.23:00:00-00:00:00.log.gz",
            "current/conn.log",
            "notes/conn.log",
        ] {
            touch(root, rel);
        }
        let names = |range| -> Vec<String> {
            discover(root, "conn", range)
                .unwrap()
                .iter()
                .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            names(DateRange::default()),
            [
                "2024-04-19/conn.23:00:00-00:00:00.log.gz",
                "2024-04-20/conn.00:00:00-01:00:00.log.gz",
                "2024-04-20/conn.01:00:00-02:00:00.log.gz"
            ]
        );
        let day = NaiveDate::from_ymd_opt(2024, 4, 20).unwrap();
        assert_eq!(
            names(DateRange {
                start: Some(day),
                end: None
            })
            .len(),
            2
        );
        assert_eq!(
            names(DateRange {
                start: None,
                end: Some(day.pred_opt().unwrap())
            })
            .len(),
            1
        );
    }

    #[test]
    fn flat_folder_and_single_file() {
        let dir = tempfile::tempdir().unwrap();
        touch(dir.path(), "conn.log");
        touch(dir.path(), "conn_json.log");
        touch(dir.path(), "dns.log");
        let found = discover(dir.path(), "conn", DateRange::default()).unwrap();
        assert_eq!(found.len(), 1);
        let single = discover(&dir.path().join("dns.log"), "conn", DateRange::default()).unwrap();
        assert_eq!(single.len(), 1, "a single file is taken as given");
        let err = discover(&dir.path().join("nope"), "conn", DateRange::default()).unwrap_err();
        assert!(err.to_string().contains("no such file or directory"));
    }

    /// A FIFO, a link to a device or a folder named as a log is listed,
    /// in a flat folder and in a dated one, for its reader to refuse (it
    /// never blocks: `safe_fs`) and the run to count as an input it could
    /// not read; a folder named as a day is searched, not listed.
    #[test]
    fn special_files_in_folders_are_listed_for_their_reader_to_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(root, "conn.log");
        touch(root, "2024-04-19/conn.00:00:00-01:00:00.log.gz");
        mkfifo(&root.join("conn.01_00_00-02_00_00.log"));
        mkfifo(&root.join("2024-04-19/conn.01:00:00-02:00:00.log"));
        std::os::unix::fs::symlink("/dev/zero", root.join("conn.02_00_00-03_00_00.log")).unwrap();
        std::fs::create_dir(root.join("conn.03_00_00-04_00_00.log")).unwrap();
        let found: Vec<String> = discover(root, "conn", DateRange::default())
            .unwrap()
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            found,
            [
                "conn.log",
                "conn.01_00_00-02_00_00.log",
                "conn.02_00_00-03_00_00.log",
                "conn.03_00_00-04_00_00.log",
                "2024-04-19/conn.00:00:00-01:00:00.log.gz",
                "2024-04-19/conn.01:00:00-02:00:00.log",
            ]
        );
    }

    /// A special file named directly is an error that says what it is.
    #[test]
    fn a_special_file_named_directly_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("conn.log");
        mkfifo(&fifo);
        let err = discover(&fifo, "conn", DateRange::default()).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let err = discover(Path::new("/dev/zero"), "conn", DateRange::default()).unwrap_err();
        assert!(err.to_string().contains("a character device"), "{err}");
    }
}
