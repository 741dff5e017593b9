//! Following one module's live log through Zeek's rotations.
//!
//! The follower reads `current/<log>.log` as it grows. When the live path
//! names another file (Zeek renamed the old one away), it drains the old
//! handle to its last line, then looks for files rotated in between (renamed
//! in `current/` or archived in the dated folders, found by fingerprint and
//! ordered by their rotation time) and reads those before the new live
//! file. After a restart it finds the checkpointed file the same way, even
//! once gzipped, and finishes it first.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::checkpoint::Position;
use super::identity::{matches, rotated_files, Fingerprint, FingerprintCache};
use super::source::{path_id, Line, Source};
use crate::module::Module;

/// Lines handed out per step, so one busy module cannot starve the writer.
const MAX_LINES_PER_STEP: usize = 5_000;
/// How often a rotated file that fails to read (an archive still being
/// written) is tried again before it is given up.
const MAX_RETRIES: u32 = 20;

/// What a step produced.
pub struct Step {
    pub lines: Vec<Line>,
    /// Where the module stands after these lines, if it is reading a file
    /// with an identity yet.
    pub position: Option<Position>,
    /// True when there was nothing to read: wait before the next step.
    pub idle: bool,
    /// How many bytes the live file has beyond what was read.
    pub lag_bytes: u64,
}

enum Reading {
    /// A rotated file from the queue.
    Rotated(Source),
    Live(Source),
    Nothing,
}

pub struct Follower {
    module: Module,
    log_dir: PathBuf,
    current_dir: PathBuf,
    live_path: PathBuf,
    reading: Reading,
    /// Rotated files to read before the live one, oldest first.
    queue: VecDeque<(PathBuf, u32)>,
    /// A live file opened while rotated files are still queued.
    waiting_live: Option<Source>,
    /// The last position handed out (kept while nothing is open).
    last_position: Option<Position>,
    /// Fingerprints of the rotated files read lately, so a file seen both
    /// renamed and archived is read once.
    done: Vec<Fingerprint>,
    /// The last file read to its end: files rotated after it are read
    /// before the live one.
    finished: Option<Fingerprint>,
    /// The rotated files at the last look, to skip looking again when
    /// nothing changed.
    last_listing: Vec<PathBuf>,
    fingerprints: FingerprintCache,
}

impl Follower {
    /// `resume`: the module's checkpointed position, if any. Without one,
    /// the live file is read from its start.
    pub fn new(module: Module, log_dir: &Path, resume: Option<Position>) -> Follower {
        let current_dir = log_dir.join("current");
        let live_path = current_dir.join(format!("{}.log", module.log_path()));
        let mut f = Follower {
            module,
            log_dir: log_dir.to_owned(),
            current_dir,
            live_path,
            reading: Reading::Nothing,
            queue: VecDeque::new(),
            waiting_live: None,
            last_position: resume.clone(),
            done: Vec::new(),
            finished: None,
            last_listing: Vec::new(),
            fingerprints: FingerprintCache::default(),
        };
        if let Some(pos) = resume {
            f.resume(pos);
        }
        f
    }

    pub fn live_path(&self) -> &Path {
        &self.live_path
    }

    /// Finds the checkpointed file: the live one, a renamed one or an
    /// archive; files rotated after it are queued.
    fn resume(&mut self, pos: Position) {
        let log = self.module.log_path();
        if matches(&self.live_path, pos.fingerprint) {
            match Source::open(&self.live_path, log, pos.offset) {
                Ok(s) => {
                    tracing::info!(
                        "{}: resuming {} at byte {}",
                        self.module,
                        self.live_path.display(),
                        pos.offset
                    );
                    self.reading = Reading::Live(s);
                }
                Err(e) => tracing::error!(
                    "{}: cannot reopen {}: {e}",
                    self.module,
                    self.live_path.display()
                ),
            }
            return;
        }
        let since = pos.day.and_then(|d| d.pred_opt());
        let rotated = rotated_files(&self.log_dir, &self.current_dir, log, since);
        match rotated.iter().position(|p| matches(p, pos.fingerprint)) {
            Some(i) => {
                tracing::info!(
                    "{}: the checkpointed file was rotated while stopped; finishing {} from byte {}, then {} later rotated files, then the live file",
                    self.module,
                    rotated[i].display(),
                    pos.offset,
                    rotated.len() - i - 1
                );
                match Source::open(&rotated[i], log, pos.offset) {
                    Ok(s) => self.reading = Reading::Rotated(s),
                    Err(e) => tracing::error!("{}: cannot read {}: {e}", self.module, rotated[i].display()),
                }
                self.queue.extend(rotated[i + 1..].iter().map(|p| (p.clone(), 0)));
            }
            None => tracing::warn!(
                "{}: the checkpointed file ({}, byte {}) is neither the live file nor among the rotated ones; records written to it after the checkpoint may be missing. Continuing with the live file",
                self.module,
                pos.path.display(),
                pos.offset
            ),
        }
    }

    /// Reads what is available now.
    pub fn step(&mut self) -> Step {
        let log = self.module.log_path();
        loop {
            match std::mem::replace(&mut self.reading, Reading::Nothing) {
                Reading::Nothing => {
                    if let Some((path, tries)) = self.queue.pop_front() {
                        // A file seen both renamed and archived is read once.
                        let fp = self.fingerprints.get(&path);
                        if fp.is_some_and(|fp| self.done.contains(&fp)) {
                            continue;
                        }
                        match Source::open(&path, log, 0) {
                            Ok(s) => {
                                tracing::info!(
                                    "{}: reading rotated file {}",
                                    self.module,
                                    path.display()
                                );
                                self.reading = Reading::Rotated(s);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                                // Moved on (a renamed file archived): look again.
                                tracing::debug!(
                                    "{}: {} moved; looking for it again",
                                    self.module,
                                    path.display()
                                );
                                self.queue.clear();
                                self.last_listing.clear();
                                if let Some(fp) = self.finished {
                                    self.catch_up(fp);
                                }
                            }
                            Err(e) => {
                                self.retry(path, tries, &e.to_string());
                                return self.idle(0);
                            }
                        }
                        continue;
                    }
                    if let Some(live) = self.waiting_live.take() {
                        self.reading = Reading::Live(live);
                        continue;
                    }
                    if let Some(fp) = self.finished {
                        // Files may have come and gone while none was open.
                        self.catch_up(fp);
                        if self.queue.is_empty() && self.waiting_live.is_none() {
                            return self.idle(0);
                        }
                        continue;
                    }
                    match Source::open(&self.live_path, log, 0) {
                        Ok(s) => {
                            tracing::info!(
                                "{}: following {}",
                                self.module,
                                self.live_path.display()
                            );
                            self.reading = Reading::Live(s);
                            continue;
                        }
                        Err(_) => return self.idle(0),
                    }
                }
                Reading::Rotated(mut s) => match s.read(MAX_LINES_PER_STEP) {
                    Ok(mut lines) => {
                        if s.at_eof() && lines.len() < MAX_LINES_PER_STEP {
                            lines.extend(s.finish());
                            self.done.extend(s.fingerprint());
                            self.finished = s.fingerprint().or(self.finished);
                            let position = self.position_of(&s);
                            return self.produce(lines, position, 0);
                        }
                        let position = self.position_of(&s);
                        self.reading = Reading::Rotated(s);
                        return self.produce(lines, position, 0);
                    }
                    Err(e) => {
                        // A damaged or unfinished archive: try again later.
                        let path = s.path().to_owned();
                        tracing::warn!("{}: {}: {e}", self.module, path.display());
                        self.retry(path, 0, &e.to_string());
                        return self.idle(0);
                    }
                },
                Reading::Live(mut s) => {
                    let lines = match s.read(MAX_LINES_PER_STEP) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::warn!("{}: {}: {e}", self.module, s.path().display());
                            Vec::new()
                        }
                    };
                    if !lines.is_empty() || !s.at_eof() {
                        let position = self.position_of(&s);
                        let lag = s.size().saturating_sub(s.offset());
                        self.reading = Reading::Live(s);
                        return self.produce(lines, position, lag);
                    }
                    // At the end of the live file: has Zeek rotated it, or
                    // cut it short?
                    let now = path_id(&self.live_path);
                    if now.is_some() && now == s.id() {
                        if s.size() < s.offset() {
                            tracing::warn!(
                                "{}: {} was truncated; reading it again from the start",
                                self.module,
                                s.path().display()
                            );
                            self.reading = Reading::Nothing;
                            continue;
                        }
                        self.reading = Reading::Live(s);
                        return self.idle(0);
                    }
                    // Rotated: the old handle still reads the renamed file.
                    let mut lines = s.read(usize::MAX).unwrap_or_default();
                    lines.extend(s.finish());
                    tracing::info!(
                        "{}: {} was rotated; finished it at byte {}",
                        self.module,
                        s.path().display(),
                        s.offset()
                    );
                    let position = self.position_of(&s);
                    if let Some(fp) = s.fingerprint() {
                        self.done.push(fp);
                        self.finished = Some(fp);
                        self.last_listing.clear();
                        self.catch_up(fp);
                    }
                    return self.produce(lines, position, 0);
                }
            }
        }
    }

    /// After the file `fp` was read to its end: open the live file first,
    /// then list the rotated files, so every file rotated before the live
    /// one was created is seen; those rotated after `fp` are queued.
    fn catch_up(&mut self, fp: Fingerprint) {
        let log = self.module.log_path();
        self.waiting_live = Source::open(&self.live_path, log, 0).ok();
        let live_id = self.waiting_live.as_ref().and_then(Source::id);
        let since = self
            .last_position
            .as_ref()
            .and_then(|p| p.day)
            .and_then(|d| d.pred_opt());
        let rotated = rotated_files(&self.log_dir, &self.current_dir, log, since);
        if rotated == self.last_listing {
            return;
        }
        self.last_listing = rotated.clone();
        let Some(i) = rotated
            .iter()
            .position(|p| self.fingerprints.get(p) == Some(fp))
        else {
            return;
        };
        for p in &rotated[i + 1..] {
            if live_id.is_some() && path_id(p) == live_id {
                continue;
            }
            self.queue.push_back((p.clone(), 0));
        }
        if self.done.len() > 1000 {
            self.done.drain(..500);
        }
    }

    fn retry(&mut self, path: PathBuf, tries: u32, why: &str) {
        if tries < MAX_RETRIES {
            self.queue.push_front((path, tries + 1));
        } else {
            tracing::error!(
                "{}: giving up on {} after {MAX_RETRIES} tries: {why}",
                self.module,
                path.display()
            );
        }
    }

    fn position_of(&mut self, s: &Source) -> Option<Position> {
        let fp = s.fingerprint()?;
        let day = s
            .day()
            .or_else(|| self.last_position.as_ref().and_then(|p| p.day));
        let pos = Position {
            fingerprint: fp,
            path: s.path().to_owned(),
            offset: s.offset(),
            day,
        };
        self.last_position = Some(pos.clone());
        Some(pos)
    }

    fn produce(&mut self, lines: Vec<Line>, position: Option<Position>, lag_bytes: u64) -> Step {
        Step {
            idle: lines.is_empty(),
            lines,
            position: position.or_else(|| self.last_position.clone()),
            lag_bytes,
        }
    }

    fn idle(&self, lag_bytes: u64) -> Step {
        Step {
            lines: Vec::new(),
            position: self.last_position.clone(),
            idle: true,
            lag_bytes,
        }
    }
}
