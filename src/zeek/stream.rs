//! The records of several files in a row, as one stream.

use std::path::PathBuf;

use super::reader::{max_line, LogReader, ReadStats};
use super::record::Record;

/// Totals over the files of a stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamTotals {
    pub records: u64,
    pub malformed: u64,
    /// Files that ended in an error (damaged, not a log, unreadable), with
    /// the message. Their records before the error were yielded.
    pub failed: Vec<(PathBuf, String)>,
    /// Per file: its path and counts.
    pub files: Vec<(PathBuf, ReadStats)>,
}

/// Yields the records of `files` in order. Malformed lines are skipped and
/// counted; a file that fails is reported and the next one is read.
pub struct Records {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<LogReader>,
    log_path: Option<String>,
    quiet: bool,
    max_line: usize,
    totals: StreamTotals,
}

impl Records {
    /// `log_path` is checked against each file's `#path`/`_path`. With
    /// `quiet`, problems are counted but not logged (a later pass over files
    /// whose problems were already reported).
    pub fn new(files: Vec<PathBuf>, log_path: Option<&str>, quiet: bool) -> Records {
        Records {
            files: files.into_iter(),
            current: None,
            log_path: log_path.map(str::to_owned),
            quiet,
            max_line: max_line(),
            totals: StreamTotals::default(),
        }
    }

    /// Skips lines longer than `max` bytes in every file, holding no more
    /// than `max` bytes of one (see [`LogReader::with_max_line`]).
    pub fn with_max_line(mut self, max: usize) -> Records {
        self.max_line = max;
        self
    }

    pub fn totals(&self) -> &StreamTotals {
        &self.totals
    }

    fn close_current(&mut self) {
        if let Some(r) = self.current.take() {
            let stats = r.stats();
            self.totals.records += stats.records;
            self.totals.malformed += stats.malformed;
            self.totals.files.push((r.file().to_owned(), stats));
        }
    }

    fn fail(&mut self, path: PathBuf, message: String) {
        if !self.quiet {
            tracing::warn!("{message}");
        }
        self.totals.failed.push((path, message));
    }
}

impl Iterator for Records {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some(reader) = self.current.as_mut() {
                match reader.next() {
                    Some(Ok(record)) => return Some(record),
                    Some(Err(e)) if e.is_skip() => continue,
                    Some(Err(e)) => {
                        let path = reader.file().to_owned();
                        self.close_current();
                        self.fail(path, e.to_string());
                    }
                    None => self.close_current(),
                }
                continue;
            }
            let path = self.files.next()?;
            match LogReader::open(&path, self.log_path.as_deref()) {
                Ok(r) => {
                    let r = r.with_max_line(self.max_line);
                    self.current = Some(if self.quiet { r.quiet() } else { r });
                }
                Err(e) => self.fail(path, e.to_string()),
            }
        }
    }
}
