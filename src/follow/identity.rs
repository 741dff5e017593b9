//! Which file is which, across renames and gzip.
//!
//! Zeek renames the live file away every hour and an archiver gzips it into
//! a dated folder, so neither a path nor an inode identifies a log for long.
//! What survives is the content: a CRC of the first bytes of the
//! *decompressed* file. Every TSV log starts with the same header except for
//! `#open`, so the fingerprint covers up to [`FINGERPRINT_BYTES`] bytes,
//! which reach into the records (whose `uid`s are random) as soon as the
//! file has any.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

use crate::safe_fs::open_regular;
use crate::zeek::layout::parse_log_name;

/// How much of a file's start the fingerprint covers.
pub const FINGERPRINT_BYTES: usize = 4096;

/// A CRC-32 of the first `len` decompressed bytes of a file. Two files with
/// the same fingerprint have the same first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u64,
    pub crc: u32,
}

/// Whether a file is compressed (an archive, complete), by its magic
/// bytes. Only a regular file is opened: a FIFO or a device in the log
/// folder is an error, never a hang.
pub fn is_compressed(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; crate::compress::MAGIC_BYTES];
    let n = crate::compress::read_up_to(&mut open_regular(path)?, &mut magic)?;
    Ok(crate::compress::Compression::of(&magic[..n])?.is_some())
}

/// Opens a regular file for reading its decompressed content (the
/// compression is recognised by its magic bytes).
pub fn open_decompressed(path: &Path) -> io::Result<Box<dyn Read + Send>> {
    let (_, text) = crate::compress::decompressed(open_regular(path)?)?;
    Ok(Box::new(text))
}

/// The fingerprint of a file's first `len` decompressed bytes (at most
/// [`FINGERPRINT_BYTES`]; fewer if the file is shorter). `None` for an empty
/// file, which has no identity yet.
pub fn fingerprint(path: &Path, len: Option<u64>) -> io::Result<Option<Fingerprint>> {
    let want = len
        .map_or(FINGERPRINT_BYTES, |l| l as usize)
        .min(FINGERPRINT_BYTES);
    let mut buf = vec![0u8; want];
    let n = crate::compress::read_up_to(&mut open_decompressed(path)?, &mut buf)?;
    if n == 0 || len.is_some_and(|l| n as u64 != l) {
        return Ok(None);
    }
    Ok(Some(Fingerprint {
        len: n as u64,
        crc: crc32fast::hash(&buf[..n]),
    }))
}

/// Whether the file's first `len` decompressed bytes cannot be read
/// because it ends short: an archive still being written (or cut short).
pub fn ends_short(path: &Path, len: u64) -> bool {
    let read =
        open_decompressed(path).and_then(|input| io::copy(&mut input.take(len), &mut io::sink()));
    read.is_err_and(|e| e.kind() == io::ErrorKind::UnexpectedEof)
}

/// Does this file start with the fingerprinted bytes? (It may have grown
/// since: for finding a checkpointed file.)
pub fn matches(path: &Path, fp: Fingerprint) -> bool {
    matches!(fingerprint(path, Some(fp.len)), Ok(Some(found)) if found == fp)
}

/// Fingerprints of rotated files, remembered by path, size and modification
/// time, so looking for a file among the archives does not decompress every
/// archive on every look.
#[derive(Debug, Default)]
pub struct FingerprintCache {
    known: std::collections::HashMap<PathBuf, (u64, Option<std::time::SystemTime>, Fingerprint)>,
}

impl FingerprintCache {
    /// The file's fingerprint as it is now: the whole of a short file, or
    /// its first [`FINGERPRINT_BYTES`]. For files that no longer grow, so a
    /// header-only file cannot stand for a longer one.
    pub fn get(&mut self, path: &Path) -> Option<Fingerprint> {
        let meta = std::fs::metadata(path).ok()?;
        let (len, mtime) = (meta.len(), meta.modified().ok());
        if let Some((l, m, fp)) = self.known.get(path) {
            if *l == len && *m == mtime {
                return Some(*fp);
            }
        }
        let fp = fingerprint(path, None).ok()??;
        if self.known.len() > 10_000 {
            self.known.clear();
        }
        self.known.insert(path.to_owned(), (len, mtime, fp));
        Some(fp)
    }
}

/// [`rotation_key`] as one time, to compare with a checkpoint's
/// [`crate::follow::Position::follows`].
pub fn rotation_time(path: &Path) -> Option<chrono::NaiveDateTime> {
    rotation_key(path).map(|(day, time)| day.and_time(time))
}

/// Where a rotated file stands in time, from its name: the archive form
/// `YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log.gz` or the form Zeek gives the
/// renamed file before archiving, `conn.YYYY-MM-DD-HH-MM-SS.log`.
pub fn rotation_key(path: &Path) -> Option<(NaiveDate, NaiveTime)> {
    let name = path.file_name()?.to_str()?;
    let interval = parse_log_name(name)?.interval?;
    if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(interval, "%Y-%m-%d-%H-%M-%S") {
        return Some((dt.date(), dt.time()));
    }
    let day = path.parent()?.file_name()?.to_str()?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let start = interval.get(..8)?.replace('_', ":");
    let time = NaiveTime::parse_from_str(&start, "%H:%M:%S").ok()?;
    Some((day, time))
}

/// The rotated files of a log path, oldest first: renamed files in the live
/// folder and archives in the dated folders from `since` on. `since` must
/// come from rotation names (never from record times, which a sensor's
/// clock or a forged record can put anywhere). A renamed file comes before
/// an archive with the same rotation time: it is complete, while the
/// archive may still be being written.
pub fn rotated_files(
    log_dir: &Path,
    current: &Path,
    log_path: &str,
    since: Option<NaiveDate>,
) -> Vec<PathBuf> {
    let mut found: Vec<((NaiveDate, NaiveTime), bool, PathBuf)> = Vec::new();
    let mut consider = |p: PathBuf| {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        let Some(parsed) = parse_log_name(name) else {
            return;
        };
        if parsed.log_path != log_path || parsed.interval.is_none() {
            return;
        }
        if let Some(key) = rotation_key(&p) {
            let archived = !p.starts_with(current);
            found.push((key, archived, p));
        }
    };
    for entry in read_dir(current) {
        consider(entry);
    }
    for dir in read_dir(log_dir) {
        let Some(day) = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| NaiveDate::parse_from_str(n, "%Y-%m-%d").ok())
        else {
            continue;
        };
        if since.is_some_and(|s| day < s) || !dir.is_dir() {
            continue;
        }
        for entry in read_dir(&dir) {
            consider(entry);
        }
    }
    found.sort();
    found.into_iter().map(|(_, _, p)| p).collect()
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    #[test]
    fn fingerprint_survives_gzip_and_growth() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("conn.log");
        std::fs::write(&plain, b"#separator \\x09\n#fields\tts\n1\n").unwrap();
        let fp = fingerprint(&plain, None).unwrap().unwrap();
        assert_eq!(fp.len, 29);
        // The file grows: the prefix still matches.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&plain)
            .unwrap()
            .write_all(b"2\n")
            .unwrap();
        assert!(matches(&plain, fp));
        // Gzipped into an archive: still the same file.
        let gz = dir.path().join("conn.00:00:00-01:00:00.log.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(&std::fs::read(&plain).unwrap()).unwrap();
        enc.finish().unwrap();
        assert!(matches(&gz, fp));
        // Another file is not.
        let other = dir.path().join("other.log");
        std::fs::write(&other, b"#separator \\x09\n#fields\tts\n3\n").unwrap();
        assert!(!matches(&other, fp));
        assert_eq!(fingerprint(&dir.path().join("empty"), None).ok(), None);
    }

    #[test]
    fn rotation_keys_order_both_name_forms() {
        let a = rotation_key(Path::new("/logs/2024-04-19/conn.23:00:00-00:00:00.log.gz")).unwrap();
        let b = rotation_key(Path::new("/logs/current/conn.2024-04-20-00-00-00.log")).unwrap();
        let c = rotation_key(Path::new("/logs/2024-04-20/conn.01:00:00-02:00:00.log.gz")).unwrap();
        assert!(a < b && b < c);
        assert_eq!(rotation_key(Path::new("/logs/current/conn.log")), None);
    }

    /// The renamed file and its archive have the same rotation time; the
    /// renamed one, complete, comes first (the archive may be half written).
    #[test]
    fn a_renamed_file_comes_before_its_archive() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "2024-04-19/conn.05:00:00-06:00:00.log.gz",
            "current/conn.2024-04-19-05-00-00.log",
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let files = rotated_files(root, &root.join("current"), "conn", None);
        assert!(files[0].starts_with(root.join("current")), "{files:?}");
        assert_eq!(files.len(), 2);
    }

    #[test]
    fn rotated_files_lists_spool_and_archives_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "2024-04-19/conn.23:00:00-00:00:00.log.gz",
            "2024-04-18/conn.23:00:00-00:00:00.log.gz",
            "2024-04-19/dns.23:00:00-00:00:00.log.gz",
            "current/conn.2024-04-20-00-00-00.log",
            "current/conn.log",
        ] {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let files = rotated_files(
            root,
            &root.join("current"),
            "conn",
            NaiveDate::from_ymd_opt(2024, 4, 19),
        );
        let rel: Vec<_> = files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "2024-04-19/conn.23:00:00-00:00:00.log.gz",
                "current/conn.2024-04-20-00-00-00.log"
            ]
        );
    }
}
