//! Warm start: on a first live start (no checkpoint), the context features,
//! the detectors and the alerts' names book read the last hours of Zeek's
//! rotated history before following the live files, so the first hour
//! after a start does not look like a new network (a beacon that began
//! yesterday is still a beacon at 00:05, a host's usual peers are not all
//! "first seen", and an alert names the peer its host looked up
//! yesterday).
//!
//! Nothing of these records is scored or written, and what the detectors
//! would have reported from history is counted, not repeated.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{NaiveDateTime, NaiveTime};

use super::{Emitter, Lane};
use crate::detect::Observation;
use crate::follow::identity::matches;
use crate::follow::Position;
use crate::log_kind::LogKind;
use crate::route;
use crate::zeek::layout::{DateRange, LogFile};
use crate::zeek::Records;

/// What a warm-up read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WarmReport {
    pub files: usize,
    pub records: u64,
    /// Detections the history held (not written).
    pub detections: u64,
    /// Records that named a server for the alerts' names book.
    pub names: u64,
}

/// When a rotated file's interval started, from its folder and name
/// (`conn.00:00:00-01:00:00.log.gz`, or with `_` for `:`).
fn start_of(f: &LogFile) -> Option<NaiveDateTime> {
    let start = f.interval.as_deref()?.split('-').next()?.replace('_', ":");
    let time = NaiveTime::parse_from_str(&start, "%H:%M:%S").ok()?;
    Some(f.date?.and_time(time))
}

/// The rotated files of `module` under `log_dir` that began within
/// `hours` of the newest one, oldest first.
pub fn recent_files(log_dir: &Path, module: LogKind, hours: u32) -> Vec<LogFile> {
    let Ok(files) = route::files_of(log_dir, module, DateRange::default()) else {
        return Vec::new();
    };
    let Some(newest) = files.iter().filter_map(start_of).max() else {
        return Vec::new();
    };
    let since = chrono::Duration::try_hours(i64::from(hours))
        .and_then(|d| newest.checked_sub_signed(d))
        .unwrap_or(NaiveDateTime::MIN);
    files
        .into_iter()
        .filter(|f| start_of(f).is_some_and(|s| s >= since))
        .collect()
}

/// `files` without the one that starts as `start` (the live file when the
/// run began, rotated since) and those after it: the follower reads them,
/// from `start`. Zeek rotates every log at once, so a log type warmed after
/// another can find the file that was live at the start already archived:
/// read by both, its records were counted twice (a review's finding).
fn before_start(mut files: Vec<LogFile>, start: Option<&Position>) -> Vec<LogFile> {
    // A log type waiting for its first file: the files rotated after the
    // one it follows are the follower's (read here too, their records
    // reached the detectors twice: a review's finding).
    if let Some(follows) = start.filter(|p| p.is_waiting()).and_then(|p| p.follows) {
        files.retain(|f| {
            crate::follow::identity::rotation_time(&f.path).is_none_or(|t| t <= follows)
        });
        return files;
    }
    if let Some(p) = start {
        // Searched from the newest: the file, if there, was rotated last.
        if let Some(i) = files.iter().rposition(|f| matches(&f.path, p.fingerprint)) {
            files.truncate(i);
        }
    }
    files
}

/// What reads the history: the detectors and the alerts' names book of
/// `emitter` (each when it starts cold), and the lanes whose context
/// starts cold.
pub struct Warming<'a> {
    pub emitter: Option<&'a mut Emitter>,
    pub detectors: bool,
    pub names: bool,
    pub lanes: Vec<&'a mut Lane>,
}

/// The log types whose records name servers ([`Observation::Name`],
/// [`Observation::Dns`]).
const NAMING: [LogKind; 3] = [LogKind::DNS, LogKind::SSL, LogKind::HTTP];

/// Feeds the last `hours` of history of each module to what warms on it,
/// up to the file each module's follower starts with (`starts`).
pub fn warm_up(
    warming: &mut Warming<'_>,
    log_dir: &Path,
    modules: &[LogKind],
    hours: u32,
    starts: &BTreeMap<LogKind, Position>,
    stop: &AtomicBool,
) -> WarmReport {
    let mut report = WarmReport::default();
    for &module in modules {
        let mut lane = warming.lanes.iter_mut().find(|l| l.module() == module);
        let names = warming.names && NAMING.contains(&module);
        let detectors = warming.detectors
            && (warming.emitter.as_deref()).is_some_and(|e| e.stage().watches(module));
        let mut emitter = warming
            .emitter
            .as_deref_mut()
            .filter(|_| detectors || names);
        if lane.is_none() && emitter.is_none() {
            continue;
        }
        let files = before_start(recent_files(log_dir, module, hours), starts.get(&module));
        report.files += files.len();
        let paths = files.into_iter().map(|f| f.path).collect();
        for record in Records::new(paths, Some(module.log_path()), false) {
            if stop.load(Ordering::Relaxed) {
                return report;
            }
            report.records += 1;
            if let Some(l) = lane.as_deref_mut() {
                l.warm(&record);
            }
            if let (Some(e), Some(o)) = (emitter.as_deref_mut(), Observation::of(module, &record)) {
                if names && e.learn_names(&o) {
                    report.names += 1;
                }
                if detectors {
                    report.detections += e.absorb(&o) as u64;
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_names_give_the_start_of_their_interval() {
        let file = |interval: &str| LogFile {
            path: "x".into(),
            date: chrono::NaiveDate::from_ymd_opt(2024, 4, 19),
            interval: Some(interval.into()),
        };
        let at = |h, m| {
            chrono::NaiveDate::from_ymd_opt(2024, 4, 19)
                .unwrap()
                .and_hms_opt(h, m, 0)
        };
        assert_eq!(start_of(&file("13:00:00-14:00:00")), at(13, 0));
        assert_eq!(start_of(&file("17_32_00-18_00_00")), at(17, 32));
        assert_eq!(start_of(&file("garbage")), None);
    }

    /// The file live when the run began, archived during the warm-up, is
    /// left to the follower (and a later one with it); without a start,
    /// or with one not archived yet, every file is read.
    #[test]
    fn the_file_the_follower_starts_with_is_not_warmed_on() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("2024-04-19");
        std::fs::create_dir(&day).unwrap();
        let mut files = Vec::new();
        for h in 0..4 {
            let path = day.join(format!("conn.0{h}:00:00-0{}:00:00.log", h + 1));
            let text = format!("#open\t2024-04-19-0{h}-00-00\n{{\"n\":{h}}}\n");
            std::fs::write(&path, text).unwrap();
            files.push(LogFile {
                path,
                date: None,
                interval: None,
            });
        }
        let start_of = |i: usize| Position {
            fingerprint: crate::follow::identity::fingerprint(&files[i].path, None)
                .unwrap()
                .unwrap(),
            path: files[i].path.clone(),
            offset: 0,
            handed_out: 0,
            day: None,
            follows: None,
        };
        let kept = |start: Option<&Position>| before_start(files.clone(), start).len();
        assert_eq!(kept(Some(&start_of(2))), 2);
        assert_eq!(kept(Some(&start_of(3))), 3);
        assert_eq!(kept(None), 4);
        let mut live = start_of(0);
        live.fingerprint.crc ^= 1;
        assert_eq!(kept(Some(&live)), 4);
        // Waiting for a first file: what was rotated after the one it
        // follows is the follower's.
        let rotated: Vec<LogFile> = [
            "2024-04-19/conn.00:00:00-01:00:00.log.gz",
            "2024-04-19/conn.01:00:00-02:00:00.log.gz",
            "conn.log",
        ]
        .iter()
        .map(|p| LogFile {
            path: std::path::PathBuf::from(p),
            date: None,
            interval: None,
        })
        .collect();
        let at = |h: u32| {
            chrono::NaiveDate::from_ymd_opt(2024, 4, 19)
                .unwrap()
                .and_hms_opt(h, 0, 0)
                .unwrap()
        };
        let waiting = Position::waiting(std::path::PathBuf::from("current/conn.log"), None, at(0));
        let names = |files: Vec<LogFile>| -> Vec<String> {
            files.iter().map(|f| f.path.display().to_string()).collect()
        };
        assert_eq!(
            names(before_start(rotated.clone(), Some(&waiting))),
            ["2024-04-19/conn.00:00:00-01:00:00.log.gz", "conn.log"]
        );
        let waiting = Position::waiting(std::path::PathBuf::from("current/conn.log"), None, at(1));
        assert_eq!(before_start(rotated, Some(&waiting)).len(), 3);
    }
}
