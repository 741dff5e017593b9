//! The records of several files in a row, as one stream.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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

/// What a first pass read of each file, for later passes over the same
/// files to check against. Training reads the history several times and
/// chooses its held-out records and its sample by position; a file
/// removed, cut or grown in between (Zeek's log expiry, a hand) gives a
/// later pass other records at the same positions, so that records held
/// out in one pass are trained on in another.
#[derive(Debug, Default)]
pub struct FirstPass {
    records: HashMap<PathBuf, u64>,
    /// Per file found changed (each once, whichever pass found it), what
    /// changed.
    changed: Mutex<Vec<(PathBuf, String)>>,
}

impl FirstPass {
    pub fn of(totals: &StreamTotals) -> FirstPass {
        let mut records = HashMap::new();
        for (path, stats) in &totals.files {
            // A file listed twice is read twice, the same each time.
            records.insert(path.clone(), stats.records);
        }
        FirstPass {
            records,
            changed: Mutex::default(),
        }
    }

    /// The files a later pass read otherwise, in words, one each.
    pub fn changed(&self) -> Vec<String> {
        let changed = self.changed.lock();
        changed.map_or_else(
            |_| Vec::new(),
            |c| c.iter().map(|(_, w)| w.clone()).collect(),
        )
    }

    /// Whether some file was found changed: the passes after it need not
    /// run.
    pub fn any_changed(&self) -> bool {
        self.changed.lock().is_ok_and(|c| !c.is_empty())
    }

    /// Notes (and logs) `path` if it gave `now` records where the first
    /// pass had another number.
    fn check(&self, path: &Path, now: u64) {
        let then = self.records.get(path).copied().unwrap_or(0);
        if then == now {
            return;
        }
        let what = format!(
            "{}: {then} records in the first pass, {now} in a later one (changed or removed while training read it)",
            crate::escape::terminal(&path.display().to_string())
        );
        if let Ok(mut changed) = self.changed.lock() {
            if !changed.iter().any(|(p, _)| p == path) {
                tracing::warn!("{what}");
                changed.push((path.to_owned(), what));
            }
        }
    }
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
    first: Option<Arc<FirstPass>>,
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
            first: None,
        }
    }

    /// Checks each file's records against what `first` read of it, noting
    /// there the files that changed ([`FirstPass::changed`]).
    pub fn checked_against(mut self, first: Arc<FirstPass>) -> Records {
        self.first = Some(first);
        self
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
            if let Some(first) = &self.first {
                first.check(r.file(), stats.records);
            }
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
                Err(e) => {
                    if let Some(first) = &self.first {
                        first.check(&path, 0);
                    }
                    self.fail(path, e.to_string());
                }
            }
        }
    }
}
