//! Replay: historical files scored once, in order, through the same lanes
//! and sinks as live mode.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::parallel::{score_parallel, End};
use super::{Emitter, Lane, LaneStats, RunError};
use crate::alert::Reading;
use crate::log_kind::LogKind;
use crate::route;
use crate::score::ScoredRecord;
use crate::sink::Sink;
use crate::zeek::layout::{DateRange, LogFile};
use crate::zeek::LogReader;

/// What a replay did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Per log type, in the order scored.
    pub lanes: Vec<(LogKind, LaneStats)>,
    /// Files read (to the end or to the damage).
    pub files: u64,
    /// Files that could not be read, or broke off (damaged, not a log of
    /// the type their name says), with why. Their records before the
    /// damage were scored.
    pub failed: Vec<(PathBuf, String)>,
    /// The highest-scoring anomalies.
    pub top: TopAnomalies,
    /// True if a stop was asked for before the end.
    pub stopped: bool,
}

/// Scores every file of each lane's log type under `inputs` (files or
/// folders) into `sink`, files in time order, the log types' files of one
/// hour after another's ([`next_lane`]). A file is
/// given to the lane of the log type its content declares (its name when
/// the content does not say), never to another. Checks `stop` between
/// records. The sink is flushed, not synced: the caller decides what
/// durable means for its output.
///
/// Each file is read on a thread of its own and scored on `threads`
/// more ([`super::parallel`]); the output is the same, byte for byte,
/// whatever `threads` is.
pub fn replay(
    inputs: &[PathBuf],
    lanes: &mut [Lane],
    emitter: &mut Emitter,
    sink: &mut dyn Sink,
    stop: &Arc<AtomicBool>,
    threads: usize,
) -> Result<ReplayReport, RunError> {
    let mut report = ReplayReport::default();
    // A file named directly that no selected log type claims is said so,
    // not passed over in silence (a typo'd --modules read nothing and
    // exited 0).
    for root in inputs.iter().filter(|r| crate::safe_fs::is_regular(r)) {
        let claimed = lanes.iter().any(|lane| {
            route::files_of(root, lane.module(), DateRange::default()).is_ok_and(|f| !f.is_empty())
        });
        if !claimed {
            // Not read, so its type is unknown: a failed input (exit 2),
            // not one of another log type passed over.
            if let Err(e) = crate::safe_fs::open_regular(root) {
                let why = format!("{}: cannot be read: {e}; skipped", root.display());
                tracing::warn!("{why}");
                report.failed.push((root.clone(), why));
                report.files += 1;
                continue;
            }
            let what = match route::log_type_of_file(root) {
                Some(t) => format!("holds a {} log", crate::escape::terminal(&t)),
                None => "says no log type (no #path or _path, and not a Zeek log's name)".into(),
            };
            tracing::warn!(
                "{}: {what}, none of the log types asked for; skipped (see --modules)",
                root.display()
            );
        }
    }
    let mut queues = queues_of(inputs, lanes.iter().map(Lane::module))?;
    report.files += queues.iter().map(|q| q.len() as u64).sum::<u64>();
    // Nothing to read is no replay: it said "0 lines read" and exited 0,
    // as if the logs had been normal (a folder of logrotate's names, an
    // empty one, a wrong --modules).
    if report.files == 0 {
        let modules: Vec<String> = lanes.iter().map(|l| l.module().to_string()).collect();
        if inputs.iter().all(|r| crate::safe_fs::is_regular(r)) {
            // Each named directly, and each said above to be of another
            // log type, or of none.
            return Err(RunError::NoInput(format!(
                "none of the files named holds a log of {} (see the warnings above, and --modules)",
                modules.join(", ")
            )));
        }
        let inputs: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        let log = lanes.first().map_or("conn", |l| l.module().log_path());
        return Err(RunError::NoInput(format!(
            "no log of {} in {}: a folder is read for Zeek's names of them ({log}.log, {log}.00:00:00-01:00:00.log.gz, plain or in dated folders such as 2024-04-19/); name any other file directly",
            modules.join(", "),
            inputs.join(", "),
        )));
    }
    // Read (or begun): a stopped replay reports these.
    let mut started: Vec<bool> = queues.iter().map(VecDeque::is_empty).collect();
    // A log type without files holds nothing back.
    for (lane, _) in lanes.iter().zip(&queues).filter(|(_, q)| q.is_empty()) {
        emitter.progress(lane.module(), lane.newest_time(), Reading::Finished, sink)?;
        tracing::info!("{}", lane.stats_line());
    }
    // The log types are read together, an hour's file of each at a time
    // (Zeek's dated folders), not one log type's whole history after
    // another: the alert stage folds each host's items of every log type
    // in time order, and releases them once every log type has read past
    // them, so it held all but the last log type's items (up to its cap,
    // then released them early, out of order) and alerts differed from
    // live mode's; and conn_long's interim records reached the
    // long-connection detector after every conn record. Files without a
    // date or hour in their path (a folder of conn.log, dns.log ...) go
    // first, a log type's after another's as before.
    while let Some(i) = next_lane(&queues) {
        let Some(file) = queues[i].pop_front() else {
            break;
        };
        let lane = &mut lanes[i];
        started[i] = true;
        let top = &mut report.top;
        if let Some(why) = score_file(&file.path, lane, emitter, sink, top, stop, threads)? {
            tracing::warn!("{why}");
            report.failed.push((file.path, why));
        }
        if stop.load(Ordering::Relaxed) {
            report.stopped = true;
            break;
        }
        if queues[i].is_empty() {
            emitter.progress(lane.module(), lane.newest_time(), Reading::Finished, sink)?;
            tracing::info!("{}", lane.stats_line());
        }
    }
    for (lane, _) in lanes.iter().zip(&started).filter(|(_, s)| **s) {
        report.lanes.push((lane.module(), *lane.stats()));
    }
    if !report.stopped {
        emitter.finish(sink)?;
    }
    sink.flush()?;
    Ok(report)
}

/// Each of `modules`' files under `inputs`, in its time order (the
/// queues [`next_lane`] takes from).
fn queues_of(
    inputs: &[PathBuf],
    modules: impl Iterator<Item = LogKind>,
) -> Result<Vec<VecDeque<LogFile>>, RunError> {
    modules
        .map(|module| {
            let mut files = VecDeque::new();
            for root in inputs {
                files.extend(route::files_of(root, module, DateRange::default())?);
            }
            Ok(files)
        })
        .collect()
}

/// The lane whose next file comes first: by the day and hour in its path
/// (a file without them first), then in the lanes' order; `None` when
/// every file is read.
fn next_lane(queues: &[VecDeque<LogFile>]) -> Option<usize> {
    queues
        .iter()
        .enumerate()
        .filter_map(|(i, q)| q.front().map(|f| ((f.date, f.interval.as_deref()), i)))
        .min()
        .map(|(_, i)| i)
}

/// Scores `files`, in order, with one lane (no routing: the caller chose
/// them) on `threads` scoring threads; returns the files that failed, with
/// why. Stops early when `stop` is set.
pub fn score_files(
    files: &[PathBuf],
    lane: &mut Lane,
    emitter: &mut Emitter,
    sink: &mut dyn Sink,
    top: &mut TopAnomalies,
    stop: &Arc<AtomicBool>,
    threads: usize,
) -> Result<Vec<(PathBuf, String)>, RunError> {
    let mut failed = Vec::new();
    for path in files {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        if let Some(why) = score_file(path, lane, emitter, sink, top, stop, threads)? {
            failed.push((path.clone(), why));
        }
    }
    emitter.progress(lane.module(), lane.newest_time(), Reading::Finished, sink)?;
    Ok(failed)
}

/// Scores one file; returns why it failed, if it did.
fn score_file(
    path: &std::path::Path,
    lane: &mut Lane,
    emitter: &mut Emitter,
    sink: &mut dyn Sink,
    top: &mut TopAnomalies,
    stop: &Arc<AtomicBool>,
    threads: usize,
) -> Result<Option<String>, RunError> {
    let reader = match LogReader::open(path, Some(lane.module().log_path())) {
        Ok(r) => r.quiet().with_stop(Arc::clone(stop)),
        Err(e) => return Ok(Some(e.to_string())),
    };
    let mut outputs = Vec::new();
    let end = score_parallel(reader, threads, lane, |lane, scored| {
        lane.take(scored, &mut outputs);
        emitter.emit(&mut outputs, sink, Some(top))?;
        emitter.progress(lane.module(), lane.newest_time(), Reading::Behind, sink)?;
        Ok::<_, RunError>(!stop.load(Ordering::Relaxed))
    })?;
    Ok(match end {
        End::Failed(why) => Some(why),
        End::Done | End::Stopped => None,
    })
}

/// The highest-scoring anomalies seen, best first.
#[derive(Debug, Clone)]
pub struct TopAnomalies {
    keep: usize,
    records: Vec<ScoredRecord>,
}

impl Default for TopAnomalies {
    fn default() -> TopAnomalies {
        TopAnomalies::new(10)
    }
}

impl TopAnomalies {
    pub fn new(keep: usize) -> TopAnomalies {
        TopAnomalies {
            keep,
            records: Vec::with_capacity(keep + 1),
        }
    }

    /// Keeps `s` if it is an anomaly among the `keep` highest so far.
    pub fn offer(&mut self, s: &ScoredRecord) {
        let full = self.records.len() == self.keep;
        if !s.anomaly
            || self.keep == 0
            || full && self.records.last().is_some_and(|l| l.score >= s.score)
        {
            return;
        }
        let at = self.records.partition_point(|t| t.score >= s.score);
        self.records.insert(at, s.clone());
        self.records.truncate(self.keep);
    }

    pub fn records(&self) -> &[ScoredRecord] {
        &self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order the files of `roots` are read in, as `day/name`.
    fn read_order(roots: &[PathBuf]) -> Vec<String> {
        let mut queues = queues_of(roots, [LogKind::CONN, LogKind::DNS].into_iter()).unwrap();
        let mut order = Vec::new();
        while let Some(i) = next_lane(&queues) {
            let f = queues[i].pop_front().unwrap();
            let day = f
                .path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            order.push(format!(
                "{day}/{}",
                f.path.file_name().unwrap().to_string_lossy()
            ));
        }
        order
    }

    /// Day folders named as roots (`--replay .../2024-04-19 .../2024-04-20`),
    /// or their files named one by one, are read day by day, an hour of
    /// each log type at a time: their files' day is their folder's (it
    /// was unknown, so the second day's first hours came before the first
    /// day's last).
    #[test]
    fn days_named_as_roots_or_file_by_file_are_read_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut days = Vec::new();
        let mut files = Vec::new();
        let mut expected = Vec::new();
        for day in ["2024-04-19", "2024-04-20"] {
            let d = dir.path().join(day);
            std::fs::create_dir_all(&d).unwrap();
            for h in 0..3 {
                for log in ["conn", "dns"] {
                    let name = format!("{log}.{h:02}:00:00-{:02}:00:00.log", h + 1);
                    std::fs::write(d.join(&name), "").unwrap();
                    expected.push(format!("{day}/{name}"));
                    files.push(d.join(&name));
                }
            }
            days.push(d);
        }
        assert_eq!(read_order(&days), expected);
        // Named file by file, the log types one after the other.
        files.sort_by_key(|f| !f.to_string_lossy().contains("/conn."));
        assert_eq!(read_order(&files), expected);
    }
}
