//! Following one module's live log through Zeek's rotations.
//!
//! The follower reads `current/<log>.log` as it grows. When the live path
//! names another file (Zeek renamed the old one away), it drains the old
//! handle to its last line, then looks for files rotated in between (renamed
//! in `current/` or archived in the dated folders, found by fingerprint and
//! ordered by their rotation time) and reads those before the new live
//! file. After a restart it finds the checkpointed file the same way, even
//! once gzipped, and finishes it first.
//!
//! What it promises (the model test in `tests/model.rs` checks exactly
//! this): every complete line comes out at most once, in file order, and
//! every line of a file that Zeek rotates (renamed, gzipped, or copied away
//! by copytruncate) comes out, across restarts from any checkpoint it
//! handed out. What a live file held past the last line read when it was
//! cut in place without a copy (a writer restart) is gone, and so is the
//! rest of a damaged archive after the damage (reported as a skipped line).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::checkpoint::Position;
use super::identity::{
    matches, rotated_files, rotation_key, rotation_time, Fingerprint, FingerprintCache,
};
use super::source::{may_be_unfinished, names_nothing, path_id, path_id_or_error, Line, Source};
use crate::log_kind::LogKind;
use crate::zeek::ReadError;

/// Lines handed out per step, so one busy module cannot starve the writer.
const MAX_LINES_PER_STEP: usize = 5_000;
/// How often a rotated file whose gzip stream ends short (an archive still
/// being written) is tried again, each time from where it stopped, before
/// what could be read is all there is. Counted over the file's whole
/// reading and never reset, so a broken archive cannot hold the files after
/// it back for ever (one try per idle step: about 10 s at a 250 ms poll).
const MAX_RETRIES: u32 = 40;
/// Decisions (open, finish, skip a file) in one step before it returns
/// anyway: a guard against a state that would make no progress.
const MAX_TURNS: usize = 1_000;

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
    /// True while rotated files are being read or wait to be: the module
    /// is behind in time whatever `lag_bytes` says (it measures the live
    /// file only).
    pub backlog: bool,
}

enum Reading {
    /// A rotated file, and how often it was tried already.
    Rotated {
        source: Source,
        tries: u32,
    },
    Live(Source),
    /// The checkpointed position, not found yet while an archive that may
    /// be it is still being written, and how often it was looked for.
    Resuming {
        pos: Position,
        tries: u32,
    },
    Nothing,
}

/// A rotated file waiting to be read.
struct Queued {
    path: PathBuf,
    /// Where to start: 0, or a checkpointed or reached offset.
    offset: u64,
    /// Failed tries so far (an archive still being written).
    tries: u32,
    /// Its identity, when known, to find it again if it moves before it
    /// is opened (a renamed file gzipped meanwhile).
    fingerprint: Option<Fingerprint>,
    /// The length of an unterminated line at `offset` handed out before
    /// ([`Source::handed_out_before`]), or 0.
    handed_out: u64,
}

impl Queued {
    fn new(path: PathBuf) -> Queued {
        Queued {
            path,
            offset: 0,
            tries: 0,
            fingerprint: None,
            handed_out: 0,
        }
    }
}

/// Where a file finished through its open handle was read to.
#[derive(Clone, Copy)]
struct End {
    /// Its device and inode.
    id: (u64, u64),
    /// After its last complete line.
    offset: u64,
    /// The length of the unterminated line after `offset` handed out as
    /// its last line, or 0: should the file come back, that line is not
    /// handed out again if it ends there.
    handed_out: u64,
}

/// The last file read to its end.
#[derive(Clone, Copy)]
struct Finished {
    fingerprint: Fingerprint,
    /// Its rotation time, from its name (a file read from the live path
    /// and found under no rotated name has none).
    rotated: Option<chrono::NaiveDateTime>,
    /// A day no later than its rotation day, from rotation names: files
    /// rotated after it are in this day's folder or later ones.
    day: Option<NaiveDate>,
    /// The file's identity and the offset it was read to, when it was
    /// finished through an open handle: a live file whose path named
    /// nothing for a moment (a `current` link made again) is finished as
    /// if rotated, and when the path names it again it goes on from there
    /// ([`Follower::came_back`]).
    end: Option<End>,
}

/// What a decision led to: decide again, or hand this step out.
enum Next {
    Again,
    Give(Step),
}

pub struct Follower {
    module: LogKind,
    log_dir: PathBuf,
    current_dir: PathBuf,
    live_path: PathBuf,
    reading: Reading,
    /// Rotated files to read before the live one, oldest first.
    queue: VecDeque<Queued>,
    /// A live file opened while rotated files are still queued.
    waiting_live: Option<Source>,
    /// The last position handed out (kept while nothing is open).
    last_position: Option<Position>,
    /// Fingerprints of the rotated files read lately, so a file seen both
    /// renamed and archived is read once.
    done: Vec<Fingerprint>,
    /// Files rotated after it are read before the live one.
    finished: Option<Finished>,
    /// The rotated files at the last look, to skip looking again when
    /// nothing changed.
    last_listing: Vec<PathBuf>,
    fingerprints: FingerprintCache,
    /// Rotated files given up as damaged.
    damaged: u64,
    /// The last problem with the live path, so a poll does not repeat it.
    live_problem: Option<String>,
    /// The rotation time of the file before the one resumed, until one is
    /// finished here ([`Position::follows`]).
    follows: Option<chrono::NaiveDateTime>,
    /// Whether any file of the log type was opened since the start.
    found: bool,
    /// Since when no file of it was found, and whether that was said as a
    /// warning ([`NEVER_FOUND`]).
    missing: Option<(std::time::Instant, bool)>,
    /// Reads of the live file that failed in a row: the 1st, 10th,
    /// 100th... is logged, not every poll's and every wake's.
    read_errors: u64,
}

/// How long a log type's live file may be missing from the start before
/// a warning says so: a log type this Zeek does not write, or a
/// `--log-dir` that is not its log directory, looked like a quiet network.
/// (A file missing after one was followed is Zeek's rotation, or a quiet
/// hour: not said.)
const NEVER_FOUND: std::time::Duration = std::time::Duration::from_secs(600);

impl Follower {
    /// `resume`: the module's checkpointed position, if any. Without one,
    /// the live file is read from its start.
    pub fn new(module: LogKind, log_dir: &Path, resume: Option<Position>) -> Follower {
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
            damaged: 0,
            live_problem: None,
            // A checkpointed position: a file of it was read before.
            found: resume.as_ref().is_some_and(|p| !p.is_waiting()),
            missing: None,
            follows: resume.as_ref().and_then(|p| p.follows),
            read_errors: 0,
        };
        if let Some(pos) = resume {
            f.resume(pos, 0);
        }
        f
    }

    pub fn live_path(&self) -> &Path {
        &self.live_path
    }

    /// Where a first start (no checkpoint) begins `module`: the start of
    /// its live file as it is now, named by its fingerprint, or, while
    /// there is no live file or it is empty, a [`Position::waiting`] for
    /// the next. Taken before the warm-up reads a day of history (minutes
    /// on a busy sensor) and handed to [`Follower::new`] as a checkpointed
    /// position: a rotation in between is then followed to the rotated
    /// file, which was otherwise never read (found by a review: 500
    /// records of the file live at the start missing, the next file read
    /// from its start).
    ///
    /// What it follows is the newest rotated file now (of yesterday or
    /// today), or when there is none, every file rotated from yesterday
    /// on: should the live file be gone at a restart, the files rotated
    /// after it are read (with none named, a review lost two archives
    /// still on disk).
    pub fn live_start(module: LogKind, log_dir: &Path) -> Option<Position> {
        Follower::live_start_on(module, log_dir, chrono::Local::now().date_naive())
    }

    /// [`Follower::live_start`] on the day `today`.
    pub(crate) fn live_start_on(
        module: LogKind,
        log_dir: &Path,
        today: NaiveDate,
    ) -> Option<Position> {
        let path = log_dir
            .join("current")
            .join(format!("{}.log", module.log_path()));
        let yesterday = today.pred_opt()?;
        let follows = rotated_files(
            log_dir,
            &log_dir.join("current"),
            module.log_path(),
            Some(yesterday),
        )
        .last()
        .and_then(|p| rotation_time(p))
        .unwrap_or_else(|| {
            yesterday.and_time(chrono::NaiveTime::MIN) - chrono::TimeDelta::seconds(1)
        });
        // Rotated today at the earliest (a later day only narrows the
        // search less).
        let day = Some(today);
        Some(
            match super::identity::fingerprint(&path, None).ok().flatten() {
                Some(fingerprint) => Position {
                    fingerprint,
                    path,
                    offset: 0,
                    handed_out: 0,
                    day,
                    follows: Some(follows),
                },
                None => Position::waiting(path, day, follows),
            },
        )
    }

    /// Rotated files given up as damaged so far (each was also handed out
    /// as a skipped line naming the file and how far it was read).
    pub fn damaged_files(&self) -> u64 {
        self.damaged
    }

    /// Finds the checkpointed file: the live one, a renamed one or an
    /// archive; files rotated after it are queued. While it is not found
    /// and an archive that may be it is still being written (too little of
    /// it decodes to tell: bzip2 and zstd decode nothing of a block until it
    /// is whole), it is looked for again on later steps, a bounded number
    /// of times: taken for gone, the file would be lost, or read again
    /// from its start as one rotated after it (found by a review).
    fn resume(&mut self, pos: Position, tries: u32) {
        let log = self.module.log_path();
        if pos.is_waiting() {
            let after = self.rotated_after(&pos, pos.day);
            if !after.is_empty() {
                tracing::info!(
                    "{}: no file was read before the stop; reading the {} files rotated since, then the live file",
                    self.module,
                    after.len()
                );
                self.queue = after.into_iter().map(Queued::new).collect();
            }
            // Else the live file, when it comes, from its start.
            return;
        }
        if matches(&self.live_path, pos.fingerprint) {
            match Source::open(&self.live_path, log, pos.offset) {
                Ok(mut s) => {
                    s.handed_out_before(pos.offset, pos.handed_out);
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
        // The day only narrows the first look, and only if it is not in the
        // future: a checkpoint written by an older version took it from a
        // record time, which can be anything.
        let tomorrow = chrono::Local::now().date_naive().succ_opt();
        let hint = pos.day.filter(|d| Some(*d) <= tomorrow);
        let found = self
            .find_rotated(pos.fingerprint, hint)
            .or_else(|| self.find_rotated(pos.fingerprint, None));
        match found {
            Some((rotated, i)) => {
                tracing::info!(
                    "{}: the file to continue was rotated since its position was taken (while stopped, or during the warm-up of a first start); finishing {} from byte {}, then {} later rotated files, then the live file",
                    self.module,
                    rotated[i].display(),
                    pos.offset,
                    rotated.len() - i - 1
                );
                self.queue_from(rotated, i, (pos.offset, pos.handed_out), pos.fingerprint);
            }
            None if tries < MAX_RETRIES
                && self.an_archive_is_being_written(pos.fingerprint, hint) =>
            {
                tracing::debug!(
                    "{}: the checkpointed file ({}) is not found yet, and an archive is still being written; looking again (try {} of {MAX_RETRIES})",
                    self.module,
                    pos.path.display(),
                    tries + 1
                );
                self.reading = Reading::Resuming {
                    pos,
                    tries: tries + 1,
                };
            }
            None => {
                let after = self.rotated_after(&pos, hint);
                tracing::warn!(
                    "{}: the checkpointed file ({}, byte {}) is neither the live file nor among the rotated ones (expired or deleted while stopped?); what was written to it after the checkpoint is lost. Continuing with the {} files rotated after it, then the live file",
                    self.module,
                    pos.path.display(),
                    pos.offset,
                    after.len()
                );
                if !after.is_empty() {
                    self.queue = after.into_iter().map(Queued::new).collect();
                    return;
                }
                // Held from now, so a rotation before the first step still
                // finds it through the handle.
                if let Ok(live) = Source::open(&self.live_path, log, 0) {
                    self.reading = Reading::Live(live);
                }
            }
        }
    }

    /// Whether a rotated file (from `since` on) cannot be told to be the
    /// fingerprinted one or not because it ends short: an archive still
    /// being written.
    fn an_archive_is_being_written(&self, fp: Fingerprint, since: Option<NaiveDate>) -> bool {
        let rotated = rotated_files(
            &self.log_dir,
            &self.current_dir,
            self.module.log_path(),
            since.and_then(|d| d.pred_opt()),
        );
        rotated
            .iter()
            .any(|p| super::identity::ends_short(p, fp.len))
    }

    /// The rotated files that came after the checkpointed file `pos`, which
    /// is gone: by their rotation names, those rotated after it (a rotated
    /// file itself), or after the file finished before it (it was the
    /// live file then: the files after that one are it, gone, and those
    /// after it). Nothing when neither is known (a first start, or a
    /// position of a build that did not keep it). Not by modification
    /// times: an archive written after the checkpoint may hold a file
    /// rotated and read before it (a property test found one read twice).
    fn rotated_after(&self, pos: &Position, since: Option<NaiveDate>) -> Vec<PathBuf> {
        let key = rotation_time(&pos.path).or(pos.follows);
        let Some(key) = key else {
            return Vec::new();
        };
        let log = self.module.log_path();
        let since = since.map_or(key.date(), |d| d.min(key.date())).pred_opt();
        let rotated = rotated_files(&self.log_dir, &self.current_dir, log, since);
        let after = |p: &PathBuf| rotation_time(p).is_some_and(|t| t > key);
        rotated.into_iter().filter(after).collect()
    }

    /// The rotated files (from `since` on) and the index of the newest one
    /// that starts with the fingerprinted bytes (of its renamed and archived
    /// forms, the first). Searched from the newest, so the look costs what
    /// was rotated since, not the whole history.
    fn find_rotated(
        &self,
        fp: Fingerprint,
        since: Option<NaiveDate>,
    ) -> Option<(Vec<PathBuf>, usize)> {
        let since = since.and_then(|d| d.pred_opt());
        let rotated = rotated_files(
            &self.log_dir,
            &self.current_dir,
            self.module.log_path(),
            since,
        );
        let mut i = rotated.iter().rposition(|p| matches(p, fp))?;
        // The same file both renamed and being archived: the renamed copy
        // (listed just before) is complete, the archive may not be yet.
        while i > 0 && matches(&rotated[i - 1], fp) {
            i -= 1;
        }
        Some((rotated, i))
    }

    /// Queues `rotated[i]` from `offset` and every file rotated after it.
    /// `at`: the offset in `rotated[i]` and the length of the line there
    /// already handed out ([`Source::handed_out_before`]).
    fn queue_from(
        &mut self,
        rotated: Vec<PathBuf>,
        i: usize,
        (offset, handed_out): (u64, u64),
        fp: Fingerprint,
    ) {
        self.queue.clear();
        let mut files = rotated.into_iter().skip(i);
        if let Some(path) = files.next() {
            self.queue.push_back(Queued {
                offset,
                handed_out,
                fingerprint: Some(fp),
                ..Queued::new(path)
            });
        }
        self.queue.extend(files.map(Queued::new));
    }

    /// Reads what is available now: lines of one file, with the position
    /// after them.
    pub fn step(&mut self) -> Step {
        for _ in 0..MAX_TURNS {
            let next = match std::mem::replace(&mut self.reading, Reading::Nothing) {
                Reading::Nothing => self.open_next(),
                Reading::Rotated { source, tries } => self.read_rotated(source, tries),
                Reading::Live(source) => self.read_live(source),
                Reading::Resuming { pos, tries } => {
                    self.resume(pos, tries);
                    match self.reading {
                        Reading::Resuming { .. } => Next::Give(self.idle(0)),
                        _ => Next::Again,
                    }
                }
            };
            if let Next::Give(step) = next {
                return step;
            }
        }
        self.idle(0)
    }

    /// Nothing is open: the next queued rotated file, else a last look for
    /// files rotated after the last one finished (while the queue was read,
    /// Zeek may have rotated again, or logrotate copied the live file away),
    /// else the live file.
    fn open_next(&mut self) -> Next {
        if let Some(queued) = self.queue.pop_front() {
            return self.open_queued(queued);
        }
        let Some(finished) = self.finished else {
            return self.open_live();
        };
        self.catch_up(finished);
        if !self.queue.is_empty() {
            return Next::Again;
        }
        match self.waiting_live.take() {
            Some(live) => {
                self.reading = Reading::Live(self.came_back(live));
                Next::Again
            }
            None => Next::Give(self.idle(0)),
        }
    }

    /// The live file, opened from its start, or, when it is the very file
    /// just finished (the same file, starting with the same bytes: its
    /// path named nothing for a moment, and it was taken for rotated),
    /// opened again where that one was read to, so no line is read twice.
    fn came_back(&mut self, live: Source) -> Source {
        let Some(finished) = self.finished else {
            return live;
        };
        let Some(end) = finished.end else {
            return live;
        };
        if live.id() != Some(end.id) || !matches(&self.live_path, finished.fingerprint) {
            return live;
        }
        let offset = end.offset;
        match Source::open(&self.live_path, self.module.log_path(), offset) {
            Ok(mut again) => {
                again.handed_out_before(offset, end.handed_out);
                tracing::info!(
                    "{}: {} is the file finished before (its path named nothing for a moment); going on from byte {offset}",
                    self.module,
                    self.live_path.display()
                );
                again
            }
            Err(_) => live,
        }
    }

    /// Opens the live file from its start; idle while there is none (or it
    /// is not a regular file, which is said once).
    fn open_live(&mut self) -> Next {
        match Source::open(&self.live_path, self.module.log_path(), 0) {
            Ok(s) => {
                tracing::info!("{}: following {}", self.module, self.live_path.display());
                self.live_problem = None;
                self.found = true;
                self.reading = Reading::Live(s);
                Next::Again
            }
            Err(e) => {
                let problem = e.to_string();
                if e.kind() != std::io::ErrorKind::NotFound
                    && self.live_problem.as_ref() != Some(&problem)
                {
                    tracing::warn!("{}: {}: {problem}", self.module, self.live_path.display());
                }
                if e.kind() == std::io::ErrorKind::NotFound {
                    self.never_found();
                }
                self.live_problem = Some(problem);
                Next::Give(self.idle(0))
            }
        }
    }

    /// Says that the live file is not there yet, when no file of the log
    /// type was found since the start: at once, and as a warning once it
    /// has been so for [`NEVER_FOUND`].
    fn never_found(&mut self) {
        if self.found {
            return;
        }
        let log = self.module.log_path();
        let path = self.live_path.display();
        match &mut self.missing {
            None => {
                tracing::info!(
                    "{}: waiting for {path} (Zeek makes it with its first {log} record)",
                    self.module
                );
                self.missing = Some((std::time::Instant::now(), false));
            }
            Some((since, said @ false)) if since.elapsed() >= NEVER_FOUND => {
                tracing::warn!(
                    "{}: {path} has not appeared in {} minutes: does this Zeek write {log}.log, and is --log-dir its log directory (the one holding current/)? Leave {} out of --modules if it writes none",
                    self.module,
                    NEVER_FOUND.as_secs() / 60,
                    self.module
                );
                *said = true;
            }
            Some(_) => {}
        }
    }

    /// A queued rotated file: skipped if it was read under another name,
    /// looked for again if it moved, tried again later if it is an archive
    /// still being written.
    fn open_queued(&mut self, q: Queued) -> Next {
        let fp = self.fingerprints.get(&q.path);
        if q.offset == 0 && fp.is_some_and(|fp| self.done.contains(&fp)) {
            return Next::Again;
        }
        match Source::open(&q.path, self.module.log_path(), q.offset) {
            Ok(mut source) => {
                source.handed_out_before(q.offset, q.handed_out);
                self.found = true;
                tracing::info!(
                    "{}: reading rotated file {} from byte {}",
                    self.module,
                    q.path.display(),
                    q.offset
                );
                self.reading = Reading::Rotated {
                    source,
                    tries: q.tries,
                };
                Next::Again
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(
                    "{}: {} moved; looking for it again",
                    self.module,
                    q.path.display()
                );
                self.look_again(&q);
                Next::Again
            }
            Err(e) if may_be_unfinished(&e) && q.tries < MAX_RETRIES => self.retry(q, &e),
            Err(e) => {
                let error = ReadError::Io {
                    file: q.path.clone(),
                    source: e,
                };
                tracing::error!("{}: giving up on a rotated file: {error}", self.module);
                self.damaged += 1;
                if let Some(fp) = fp {
                    self.mark_finished(fp, &q.path);
                }
                Next::Give(self.produce(vec![error_line(error, q.offset)], None, 0))
            }
        }
    }

    /// A queued file moved before it was opened (a renamed file archived):
    /// find it again by its fingerprint, or list again from the last file
    /// finished.
    fn look_again(&mut self, q: &Queued) {
        self.queue.clear();
        self.last_listing.clear();
        match q.fingerprint {
            Some(fp) => match self.find_rotated(fp, None) {
                Some((rotated, i)) => self.queue_from(rotated, i, (q.offset, q.handed_out), fp),
                None => tracing::warn!(
                    "{}: {} vanished before it was read from byte {}",
                    self.module,
                    q.path.display(),
                    q.offset
                ),
            },
            None => {
                if let Some(finished) = self.finished {
                    self.catch_up(finished);
                }
            }
        }
    }

    /// An archive that ends short may still be being written: it is tried
    /// again on a later step, from the offset reached.
    fn retry(&mut self, q: Queued, e: &std::io::Error) -> Next {
        tracing::debug!(
            "{}: {} ends short ({e}); trying again from byte {} (try {} of {MAX_RETRIES})",
            self.module,
            q.path.display(),
            q.offset,
            q.tries + 1
        );
        self.queue.push_front(Queued {
            tries: q.tries + 1,
            ..q
        });
        Next::Give(self.idle(0))
    }

    /// A rotated file: bounded batches until its end, then it is finished.
    fn read_rotated(&mut self, mut source: Source, tries: u32) -> Next {
        let mut lines = match source.read(MAX_LINES_PER_STEP) {
            Ok(lines) => lines,
            Err(e) => return self.rotated_failed(source, tries, e),
        };
        if !source.at_eof() || lines.len() == MAX_LINES_PER_STEP {
            let position = self.position_of(&source);
            let more = !source.at_eof();
            self.reading = Reading::Rotated { source, tries };
            return Next::Give(self.produce_more(lines, position, 0, more));
        }
        // An unterminated last line is handed out, and the offset stays
        // before it: should the file come back, that line is not handed out
        // again if it ends there, and read whole if it grew.
        lines.extend(source.finish());
        let position = self.position_of(&source);
        if let Some(fp) = source.fingerprint() {
            self.mark_finished(fp, source.path());
            if let Some(f) = &mut self.finished {
                f.end = source.id().map(|id| End {
                    id,
                    offset: source.offset(),
                    handed_out: source.handed_out(),
                });
            }
        }
        if lines.is_empty() {
            return Next::Again;
        }
        Next::Give(self.produce(lines, position, 0))
    }

    /// A rotated file failed after the lines already handed out: an archive
    /// cut short is tried again from there (a bounded number of times);
    /// anything else, or too many tries, gives the rest of it up, and the
    /// damage is handed out as a skipped line that says how far it got.
    fn rotated_failed(&mut self, source: Source, tries: u32, e: std::io::Error) -> Next {
        let path = source.path().to_owned();
        if may_be_unfinished(&e) && tries < MAX_RETRIES {
            let queued = Queued {
                path,
                offset: source.offset(),
                tries,
                fingerprint: source.fingerprint(),
                handed_out: source.handed_out(),
            };
            return self.retry(queued, &e);
        }
        self.damaged += 1;
        tracing::error!(
            "{}: {} is damaged after line {} (byte {} of its content); the lines before were read, the rest is lost: {e}",
            self.module,
            source.name().display(),
            source.line_no(),
            source.offset()
        );
        let position = self.position_of(&source);
        if let Some(fp) = source.fingerprint() {
            self.mark_finished(fp, &path);
        }
        let error = ReadError::Corrupt {
            file: source.name().to_owned(),
            line: source.line_no(),
            source: e,
        };
        Next::Give(self.produce(vec![error_line(error, source.offset())], position, 0))
    }

    /// The live file: its new lines, unless it was cut in place; at its
    /// end, whether Zeek renamed it away.
    fn read_live(&mut self, mut source: Source) -> Next {
        if source.fingerprint().is_none() && self.rotated_before_first_byte() {
            return Next::Again;
        }
        if source.replaced_in_place() {
            let (at, fp) = ((source.offset(), source.handed_out()), source.fingerprint());
            return self.cut_in_place(source, at, fp);
        }
        if !self.still_live(&source) {
            // Checked before reading, so that the lines read from the old
            // handle are named in the file they are in now.
            return self.rotated_away(source);
        }
        let before = ((source.offset(), source.handed_out()), source.fingerprint());
        let lines = match source.read(MAX_LINES_PER_STEP) {
            Ok(lines) => {
                self.read_errors = 0;
                lines
            }
            Err(e) => {
                // Tried again at the next wake or poll: returned as more to
                // read, an error that lasts (EIO, NFS's ESTALE) spun a core
                // and wrote a warning on every pass (found by a review).
                self.read_errors += 1;
                if crate::plausible::worth_logging(self.read_errors) {
                    tracing::warn!(
                        "{}: {}: {e} (read failed {} time(s) in a row; tried again at each poll)",
                        self.module,
                        source.path().display(),
                        self.read_errors
                    );
                }
                self.reading = Reading::Live(source);
                return Next::Give(self.idle(0));
            }
        };
        if !lines.is_empty() && source.replaced_in_place() {
            // Cut while reading: these lines may be the new content seen
            // from the old offset.
            return self.cut_in_place(source, before.0, before.1);
        }
        if !lines.is_empty() || !source.at_eof() {
            let position = self.position_of(&source);
            let lag = source.size().saturating_sub(source.offset());
            let more = !source.at_eof();
            self.reading = Reading::Live(source);
            return Next::Give(self.produce_more(lines, position, lag, more));
        }
        if self.still_live(&source) {
            self.reading = Reading::Live(source);
            return Next::Give(self.idle(0));
        }
        self.rotated_away(source)
    }

    /// Renamed away: the old handle still reads it; it is finished as a
    /// rotated file, then what was rotated after it is looked for. Its
    /// lines from now on are named where the file went: the live path
    /// names the next file, so `current/conn.log:11` would send an analyst
    /// to the wrong line (found by an operator's review).
    fn rotated_away(&mut self, mut source: Source) -> Next {
        let now = self.renamed_to(&source);
        tracing::info!(
            "{}: {} was rotated (now {}); finishing it from byte {}",
            self.module,
            source.path().display(),
            now.display(),
            source.offset()
        );
        source.moved(now);
        self.last_listing.clear();
        self.reading = Reading::Rotated { source, tries: 0 };
        Next::Again
    }

    /// Where the live file `source` went: the file in the live folder that
    /// is the same file (Zeek renames it there); else a rotated file that
    /// starts with what was read of it (archived meanwhile: the same lines
    /// under the same numbers); else, deleted or moved out of reach, its
    /// old path said to be rotated since.
    fn renamed_to(&self, source: &Source) -> PathBuf {
        let same_file = source.id().and_then(|id| {
            let entries = std::fs::read_dir(&self.current_dir).ok()?;
            entries
                .filter_map(|e| Some(e.ok()?.path()))
                .find(|p| path_id(p) == Some(id))
        });
        // Rotated after the last file finished: no earlier day.
        let since = self.finished.and_then(|f| f.day);
        same_file
            .or_else(|| {
                let fp = source.fingerprint()?;
                self.find_rotated(fp, since)
                    .map(|(mut rotated, i)| rotated.swap_remove(i))
            })
            .unwrap_or_else(|| format!("{} (since rotated)", self.live_path.display()).into())
    }

    /// Before the first byte of a live file is read, files rotated after
    /// the last one finished come first: nothing identifies the live
    /// file's content yet, so a copytruncate (or a rename) now could not be
    /// told apart from new lines later. True if some were queued (the live
    /// file is opened again after them).
    fn rotated_before_first_byte(&mut self) -> bool {
        let Some(finished) = self.finished else {
            return false;
        };
        self.catch_up(finished);
        self.waiting_live = None;
        !self.queue.is_empty()
    }

    /// Does the live path still name this file? Yes too when that cannot
    /// be told (a folder's permissions changed for a moment): the handle
    /// still reads it, and taking it for rotated would read the file
    /// again from its start once the path can be looked up.
    fn still_live(&self, source: &Source) -> bool {
        match path_id_or_error(&self.live_path) {
            Ok(now) => now.is_some() && now == source.id(),
            Err(e) => !names_nothing(&e),
        }
    }

    /// The live file was cut in place, at `offset` into the content
    /// fingerprinted `fp`. With copytruncate that content lives on in a
    /// copy among the rotated files: it is finished from `offset`, then the
    /// files rotated after it and the live file from its start. Without a
    /// copy (a writer restart) what was not read yet is gone, and the same
    /// file is read again from its start (through its handle, in case it
    /// was renamed away meanwhile).
    /// `at`: the offset read to and the length of the line there already
    /// handed out ([`Source::handed_out_before`]).
    fn cut_in_place(
        &mut self,
        mut source: Source,
        at: (u64, u64),
        fp: Option<Fingerprint>,
    ) -> Next {
        let offset = at.0;
        // The copy was made after the last file finished: no earlier day.
        let since = self.finished.and_then(|f| f.day);
        let copy = fp.and_then(|fp| self.find_rotated(fp, since).map(|found| (found, fp)));
        match copy {
            Some(((rotated, i), fp)) => {
                tracing::warn!(
                    "{}: {} was truncated in place; finishing its copy {} from byte {}, then reading it again from the start",
                    self.module,
                    self.live_path.display(),
                    rotated[i].display(),
                    offset
                );
                self.queue_from(rotated, i, at, fp);
            }
            None => {
                tracing::warn!(
                    "{}: {} was truncated in place (no copy found; whatever it held past byte {offset} is lost); reading it again from the start",
                    self.module,
                    self.live_path.display()
                );
                match source.rewind() {
                    Ok(()) => self.reading = Reading::Live(source),
                    Err(e) => tracing::error!("{}: {}: {e}", self.module, self.live_path.display()),
                }
            }
        }
        Next::Again
    }

    /// After the file `finished` was read to its end: open the live file
    /// first, then list the rotated files, so every file rotated before the
    /// live one was created is seen; those rotated after it are queued.
    fn catch_up(&mut self, finished: Finished) {
        let log = self.module.log_path();
        self.waiting_live = Source::open(&self.live_path, log, 0).ok();
        let live_id = self.waiting_live.as_ref().and_then(Source::id);
        let since = finished.day.and_then(|d| d.pred_opt());
        let rotated = rotated_files(&self.log_dir, &self.current_dir, log, since);
        if rotated == self.last_listing {
            return;
        }
        self.last_listing = rotated.clone();
        // The finished file is the one with its fingerprint, or, written
        // on since it was finished (a short file's fingerprint is all of
        // it), the same file still starting with what was read.
        let grown = |p: &PathBuf| {
            finished.end.is_some_and(|end| path_id(p) == Some(end.id))
                && matches(p, finished.fingerprint)
        };
        let Some(i) = rotated
            .iter()
            .rposition(|p| self.fingerprints.get(p) == Some(finished.fingerprint) || grown(p))
        else {
            return;
        };
        if let Some((day, time)) = rotation_key(&rotated[i]) {
            self.finished = Some(Finished {
                day: Some(day),
                rotated: Some(day.and_time(time)),
                ..finished
            });
        }
        // The finished file itself, renamed, if it grew past where it was
        // read to: it was finished through its handle when its live path
        // named nothing for a moment, and written on before Zeek renamed
        // it (those lines were lost: found by a review).
        if let Some(end) = finished.end {
            // (Past a last line handed out unterminated: that line alone
            // is no growth.)
            let read_to = end.offset + end.handed_out;
            let grew = std::fs::metadata(&rotated[i]).is_ok_and(|m| m.len() > read_to);
            if path_id(&rotated[i]) == Some(end.id) && grew {
                self.queue.push_back(Queued {
                    offset: end.offset,
                    handed_out: end.handed_out,
                    fingerprint: Some(finished.fingerprint),
                    ..Queued::new(rotated[i].clone())
                });
            }
        }
        for p in &rotated[i + 1..] {
            if live_id.is_some() && path_id(p) == live_id {
                continue;
            }
            self.queue.push_back(Queued::new(p.clone()));
        }
    }

    /// Remembers a file read to its end (or given up), so it is not read
    /// again under another name and files rotated after it come next.
    fn mark_finished(&mut self, fp: Fingerprint, path: &Path) {
        if self.done.len() > 1000 {
            self.done.drain(..500);
        }
        self.done.push(fp);
        // A file finished under no rotation name (its live path named
        // nothing) came after the one finished before it, as the next does.
        let before = self.follows();
        self.finished = Some(Finished {
            fingerprint: fp,
            rotated: rotation_time(path).or(before),
            day: self.rotation_day(path),
            end: None,
        });
    }

    /// A day no later than the file's rotation day: from its rotation name,
    /// or (the live file) that of the file finished before it. Never from a
    /// record time.
    fn rotation_day(&self, path: &Path) -> Option<NaiveDate> {
        rotation_key(path)
            .map(|(day, _)| day)
            .or(self.finished.and_then(|f| f.day))
    }

    /// The rotation time of the last file finished (that of the file
    /// before the resumed one, until one is): what the file read now
    /// came after ([`Position::follows`]).
    fn follows(&self) -> Option<chrono::NaiveDateTime> {
        match self.finished {
            Some(f) => f.rotated,
            None => self.follows,
        }
    }

    fn position_of(&mut self, s: &Source) -> Option<Position> {
        let fp = s.fingerprint()?;
        let pos = Position {
            fingerprint: fp,
            path: s.path().to_owned(),
            offset: s.offset(),
            handed_out: s.handed_out(),
            day: self.rotation_day(s.path()),
            follows: self.follows(),
        };
        self.last_position = Some(pos.clone());
        Some(pos)
    }

    /// A step with `lines`; idle (wait before the next) only if there are
    /// none and none are waiting to be read (`more`: the read stopped at
    /// its byte budget, not at the end of the input).
    fn produce(&mut self, lines: Vec<Line>, position: Option<Position>, lag_bytes: u64) -> Step {
        self.produce_more(lines, position, lag_bytes, false)
    }

    fn produce_more(
        &mut self,
        lines: Vec<Line>,
        position: Option<Position>,
        lag_bytes: u64,
        more: bool,
    ) -> Step {
        Step {
            idle: lines.is_empty() && !more,
            lines,
            position: position.or_else(|| self.last_position.clone()),
            lag_bytes,
            backlog: self.in_backlog(),
        }
    }

    fn idle(&self, lag_bytes: u64) -> Step {
        Step {
            lines: Vec::new(),
            position: self.last_position.clone(),
            idle: true,
            lag_bytes,
            backlog: self.in_backlog(),
        }
    }

    /// Reading a rotated file, or some wait to be read.
    fn in_backlog(&self) -> bool {
        matches!(self.reading, Reading::Rotated { .. }) || !self.queue.is_empty()
    }
}

/// A file's failure, handed out like a malformed line so it is counted and
/// logged with the rest.
fn error_line(error: ReadError, end: u64) -> Line {
    Line {
        parsed: Err(error),
        end,
    }
}

#[cfg(test)]
mod never_found_tests {
    use super::*;

    /// Missing from the start: said at once, warned once after
    /// [`NEVER_FOUND`]; missing after one was found (rotation): neither.
    #[test]
    fn a_live_file_never_found_is_warned_of_once_after_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = Follower::new(LogKind::DNS, dir.path(), None);
        f.never_found();
        assert!(matches!(f.missing, Some((_, false))));
        let long_ago = std::time::Instant::now()
            .checked_sub(NEVER_FOUND + std::time::Duration::from_secs(1))
            .unwrap();
        f.missing = Some((long_ago, false));
        f.never_found();
        assert!(matches!(f.missing, Some((_, true))));
        f.never_found();
        assert!(matches!(f.missing, Some((_, true))));
        let mut followed = Follower::new(LogKind::DNS, dir.path(), None);
        followed.found = true;
        followed.never_found();
        assert!(followed.missing.is_none());
        // Restarted from a checkpoint: its file was found before.
        let pos = Position {
            path: dir.path().join("current/dns.log"),
            fingerprint: Fingerprint { len: 4, crc: 1 },
            offset: 10,
            handed_out: 0,
            day: None,
            follows: None,
        };
        let mut resumed = Follower::new(LogKind::DNS, dir.path(), Some(pos));
        resumed.never_found();
        assert!(resumed.missing.is_none());
    }
}
