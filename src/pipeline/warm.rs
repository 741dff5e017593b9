//! Warm start: on a first live start (no checkpoint), the context features
//! and the detectors read the last hours of Zeek's rotated history before
//! following the live files, so the first hour after a start does not look
//! like a new network (a beacon that began yesterday is still a beacon at
//! 00:05, and a host's usual peers are not all "first seen").
//!
//! Nothing of these records is scored or written, and what the detectors
//! would have reported from history is counted, not repeated.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{NaiveDateTime, NaiveTime};

use super::{Emitter, Lane};
use crate::detect::Observation;
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

/// What reads the history: the detectors (when they start cold) and the
/// lanes whose context starts cold.
pub struct Warming<'a> {
    pub emitter: Option<&'a mut Emitter>,
    pub lanes: Vec<&'a mut Lane>,
}

/// Feeds the last `hours` of history of each module to what warms on it.
pub fn warm_up(
    warming: &mut Warming<'_>,
    log_dir: &Path,
    modules: &[LogKind],
    hours: u32,
    stop: &AtomicBool,
) -> WarmReport {
    let mut report = WarmReport::default();
    for &module in modules {
        let mut lane = warming.lanes.iter_mut().find(|l| l.module() == module);
        let mut emitter = warming
            .emitter
            .as_deref_mut()
            .filter(|e| e.stage().watches(module));
        if lane.is_none() && emitter.is_none() {
            continue;
        }
        let files = recent_files(log_dir, module, hours);
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
                report.detections += e.absorb(&o) as u64;
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
}
