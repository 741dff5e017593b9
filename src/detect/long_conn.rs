//! Long connections: a pair whose connections add up to hours within a
//! day (a reverse shell kept open, a tunnel, an exfiltration trickle), or
//! one connection that long on its own.
//!
//! Zeek writes a conn record when the connection ends, with its whole
//! duration, so a connection open for six hours is seen once, at its end.
//! Where the zeek-long-connections package runs, `conn_long.log` reports
//! open connections at set durations (interim conn records, the duration
//! so far, the same uid each time): those reports feed this detector too
//! ([`super::observation::feeds`]), so a long connection is found while it
//! is still open. A connection is counted once whatever the number of its
//! reports: each pair remembers the uids of its last few reported
//! connections and what was counted of them, so an interim report adds
//! only the time since the one before, the final conn record only what the
//! reports had not counted, and a report read after the final record (a
//! replay reads conn.log before conn_long.log) adds nothing (final records
//! of a minute or more are remembered for that, when a conn_long lane
//! feeds the detector).
//!
//! Pairs that were as long in the training history (a backup job, a VPN,
//! an admin's SSH session) are the site's normal: the model carries them
//! and they are not reported.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;

/// Settings, with the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongConnParams {
    /// A pair is reported when its durations within one window add up to
    /// this many seconds (default 4 h).
    pub threshold_seconds: f64,
    /// The tumbling window per pair, in seconds of event time (1 day).
    pub window_seconds: u32,
    pub max_pairs: usize,
}

impl Default for LongConnParams {
    fn default() -> Self {
        LongConnParams {
            threshold_seconds: 4.0 * 3600.0,
            window_seconds: 86_400,
            max_pairs: 200_000,
        }
    }
}

/// Connections of one pair whose reports are remembered, at most: more
/// open at once between two hosts is rare, and an older one forgotten is
/// at worst counted again by its final record.
pub const REPORTED_PER_PAIR: usize = 4;

/// The shortest connection whose final record is remembered against
/// reports read after it: the package reports at 10 minutes at the
/// earliest by default; a minute leaves room for sites that report sooner,
/// and keeps the many short connections out of the pairs' memory.
pub const REPORTABLE_SECONDS: f64 = 60.0;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pair {
    window_start: f64,
    total: f64,
    connections: u64,
    longest: f64,
    bytes: f64,
    first_ts: f64,
    reported: bool,
    uids: SampleUids,
    /// Connections seen in `conn_long` reports, newest last: what of
    /// them is counted in `total` and `bytes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<Counted>,
}

/// A reported connection and how much of it is counted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counted {
    uid: Box<str>,
    duration: f64,
    bytes: f64,
    /// Its final conn record was read: later reports add nothing.
    closed: bool,
}

/// The streaming long-connection detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LongConnDetector {
    params: LongConnParams,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    /// From the model, not the checkpoint.
    #[serde(skip)]
    known: HashSet<(IpAddr, IpAddr)>,
    /// Whether conn_long reports feed this detector (a CONN_LONG lane
    /// runs beside conn's): only then are final records remembered
    /// against reports read after them. From the run, not the checkpoint.
    #[serde(skip)]
    reports: bool,
}

impl LongConnDetector {
    pub fn new(params: LongConnParams) -> LongConnDetector {
        LongConnDetector {
            pairs: BoundedMap::new(params.max_pairs),
            params,
            known: HashSet::new(),
            reports: false,
        }
    }

    /// conn_long reports feed this detector from now on.
    pub fn expect_reports(&mut self) {
        self.reports = true;
    }

    pub fn with_known(mut self, known: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> Self {
        self.known.extend(known);
        self
    }

    #[cfg(test)]
    pub(crate) fn expects_reports(&self) -> bool {
        self.reports
    }

    /// Takes the settings and known entities of a freshly built detector
    /// (from the model now in use), keeping this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.known = fresh.known;
        // conn_long's reports still feed this detector after a model
        // reload, whose fresh detectors are built without knowing it.
        self.reports |= fresh.reports;
    }

    /// One conn record, or one interim report of an open connection
    /// (`c.open`, from `conn_long`); a pair is reported once per window,
    /// when its total first reaches the threshold.
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        // A report without a uid cannot be told from the next one of the
        // same connection: it is left out rather than counted twice.
        if c.duration <= 0.0 || (c.open && c.uid.is_none()) || self.known.contains(&(c.src, c.dst))
        {
            return None;
        }
        let p = &self.params;
        // A connection's time is its start; it lasted until ts + duration.
        let end = c.ts + c.duration;
        let pair = self.pairs.touch((c.src, c.dst), Pair::default);
        if pair.connections == 0 || c.ts >= pair.window_start + f64::from(p.window_seconds) {
            // The reported connections stay: one still open is counted
            // from where its reports got to.
            let seen = std::mem::take(&mut pair.seen);
            *pair = Pair {
                window_start: c.ts,
                first_ts: c.ts,
                seen,
                ..Pair::default()
            };
        }
        let bytes = c.orig_bytes + c.resp_bytes;
        let uid = c.uid.as_deref();
        let at = uid.and_then(|u| pair.seen.iter().position(|s| &*s.uid == u));
        let (duration, added_bytes) = match at {
            Some(i) => {
                let s = &mut pair.seen[i];
                if s.closed {
                    return None;
                }
                let added = (
                    (c.duration - s.duration).max(0.0),
                    (bytes - s.bytes).max(0.0),
                );
                s.duration = s.duration.max(c.duration);
                s.bytes = s.bytes.max(bytes);
                s.closed = !c.open;
                added
            }
            None => {
                // A final record is remembered too when reports of it may
                // still be read (replay reads conn.log first), but only
                // for connections long enough to have been reported.
                let remember = c.open || (self.reports && c.duration >= REPORTABLE_SECONDS);
                if let (true, Some(u)) = (remember, uid) {
                    if pair.seen.len() >= REPORTED_PER_PAIR {
                        pair.seen.remove(0);
                    }
                    pair.seen.push(Counted {
                        uid: u.into(),
                        duration: c.duration,
                        bytes,
                        closed: !c.open,
                    });
                }
                pair.connections += 1;
                pair.uids.push(uid);
                (c.duration, bytes)
            }
        };
        pair.total += duration;
        pair.longest = pair.longest.max(c.duration);
        pair.bytes += added_bytes;
        pair.first_ts = pair.first_ts.min(c.ts);
        if pair.reported || pair.total < p.threshold_seconds {
            return None;
        }
        pair.reported = true;
        // Milliseconds and whole bytes: sums of Zeek's microsecond
        // durations carry float noise (16759.115085999998 s) that says
        // nothing to an analyst.
        let ms = |v: f64| (v * 1e3).round() / 1e3;
        let mut evidence = serde_json::Map::new();
        evidence.insert("connections".into(), pair.connections.into());
        evidence.insert("longest_seconds".into(), ms(pair.longest).into());
        evidence.insert("bytes".into(), (pair.bytes.round() as u64).into());
        if c.open {
            // Found from a conn_long report: the connection had not ended.
            evidence.insert("still_open".into(), true.into());
        }
        // Known when the connection ended (or was last reported), not at
        // its start: the detection is stamped then, and its evidence
        // never ends after its own time.
        let uids = pair.uids.with_latest(c.uid.as_deref());
        let on = Detection::of_pair(DetectorKind::LongConnection, c, pair.first_ts, end, uids);
        Some(Detection {
            score: ms(pair.total),
            threshold: p.threshold_seconds,
            evidence,
            ..on
        })
    }
}

/// Learns the pairs that were long in the training history.
#[derive(Debug)]
pub struct LongConnLearner {
    detector: LongConnDetector,
    known: Vec<(IpAddr, IpAddr)>,
}

impl LongConnLearner {
    pub fn new(params: LongConnParams) -> LongConnLearner {
        LongConnLearner {
            detector: LongConnDetector::new(params),
            known: Vec::new(),
        }
    }

    pub fn observe(&mut self, c: &ConnFacts) {
        if let Some(d) = self.detector.observe(c) {
            if self.known.len() < super::baseline::MAX_KNOWN {
                self.known.extend(d.dst.map(|dst| (d.src, dst)));
            }
        }
    }

    pub fn finish(mut self) -> Vec<(IpAddr, IpAddr)> {
        self.known.sort_unstable();
        self.known.dedup();
        self.known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::{conn, ip};

    #[test]
    fn a_six_hour_connection_is_reported_once_and_short_ones_never() {
        let mut d = LongConnDetector::new(LongConnParams::default());
        let (a, b) = (ip("10.0.0.5"), ip("203.0.113.9"));
        let mut found = Vec::new();
        for i in 0..2000 {
            let t = 1_700_000_000.0 + f64::from(i) * 30.0;
            let mut short = conn(ip("10.0.0.6"), b, t, 300.0, true);
            short.duration = 2.0;
            found.extend(d.observe(&short));
        }
        let mut long = conn(a, b, 1_700_010_000.0, 300.0, true);
        long.duration = 6.0 * 3600.0;
        long.uid = Some("CLong".into());
        found.extend(d.observe(&long));
        found.extend(d.observe(&long));
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!((f.src, f.dst, f.score), (a, Some(b), 6.0 * 3600.0));
        assert_eq!(f.uids, ["CLong"]);
        // Stamped when it ended, the time its evidence ends.
        assert_eq!((f.ts, f.last_ts), (1_700_010_000.0 + 6.0 * 3600.0, f.ts));
        assert!(f.evidence["bytes"].is_u64(), "{:?}", f.evidence);
    }

    /// A 6 h connection reported open every hour (conn_long), then its
    /// final conn record: found at the 4 h report, and its time counted
    /// once, in either order of the logs.
    #[test]
    fn a_connection_reported_while_open_is_found_early_and_counted_once() {
        let (a, b) = (ip("10.0.0.5"), ip("203.0.113.9"));
        let start = 1_700_000_000.0;
        let record = |hours: f64, open: bool| {
            let mut c = conn(a, b, start, 300.0 * hours, true);
            c.duration = hours * 3600.0;
            c.uid = Some("CLong6h".into());
            c.open = open;
            c
        };
        let reports: Vec<ConnFacts> = (1..=5).map(|h| record(f64::from(h), true)).collect();
        let last = record(6.0, false);

        let mut d = LongConnDetector::new(LongConnParams::default());
        let mut found = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            if let Some(f) = d.observe(r) {
                found.push((i + 1, f));
            }
        }
        assert_eq!(found.len(), 1);
        let (hour, f) = &found[0];
        assert_eq!(*hour, 4, "found at the 4 h report, while still open");
        assert_eq!(f.score, 4.0 * 3600.0, "not 1 + 2 + 3 + 4 hours");
        assert_eq!(f.evidence["still_open"], true);
        assert_eq!(f.evidence["connections"], 1);
        assert!(d.observe(&last).is_none(), "reported once");
        let pair = d.pairs.get(&(a, b)).unwrap();
        assert_eq!((pair.total, pair.connections), (6.0 * 3600.0, 1));

        // Summed, the reports and the record would pass 7 h; counted once
        // the connection does not, whichever log is read first.
        let params = LongConnParams {
            threshold_seconds: 7.0 * 3600.0,
            ..LongConnParams::default()
        };
        let mut d = LongConnDetector::new(params.clone());
        assert!(reports
            .iter()
            .chain([&last])
            .all(|r| d.observe(r).is_none()));
        let mut d = LongConnDetector::new(params.clone());
        d.expect_reports();
        assert!([&last]
            .into_iter()
            .chain(&reports)
            .all(|r| d.observe(r).is_none()));
        assert_eq!(d.pairs.get(&(a, b)).unwrap().total, 6.0 * 3600.0);
        // Without conn_long in the run, final records are not remembered.
        let mut d = LongConnDetector::new(params);
        assert!(d.observe(&last).is_none());
        assert!(d.pairs.get(&(a, b)).unwrap().seen.is_empty());

        // A report read out of order (3 h after 4 h) adds nothing and
        // forgets nothing: the final record still adds only its last 2 h.
        let mut d = LongConnDetector::new(LongConnParams::default());
        for h in [1.0, 4.0, 3.0] {
            d.observe(&record(h, true));
        }
        d.observe(&last);
        let pair = d.pairs.get(&(a, b)).unwrap();
        assert_eq!((pair.total, pair.connections), (6.0 * 3600.0, 1));

        // A report without a uid cannot be deduplicated: left out.
        let mut d = LongConnDetector::new(LongConnParams::default());
        let mut anonymous = record(5.0, true);
        anonymous.uid = None;
        assert!(d.observe(&anonymous).is_none());
        assert!(d.pairs.get(&(a, b)).is_none());
    }

    #[test]
    fn reported_connections_per_pair_are_bounded() {
        let (a, b) = (ip("10.0.0.5"), ip("203.0.113.9"));
        let mut d = LongConnDetector::new(LongConnParams::default());
        for i in 0..100 {
            let mut c = conn(a, b, 1_700_000_000.0 + f64::from(i), 10.0, true);
            c.duration = 60.0;
            c.uid = Some(format!("C{i}").into());
            c.open = true;
            d.observe(&c);
        }
        let pair = d.pairs.get(&(a, b)).unwrap();
        assert_eq!(pair.seen.len(), REPORTED_PER_PAIR);
        assert_eq!(pair.connections, 100);
    }

    #[test]
    fn pairs_long_in_training_are_not_reported() {
        let (a, b) = (ip("10.0.0.5"), ip("10.9.9.9"));
        let mut c = conn(a, b, 1_700_000_000.0, 10.0, true);
        c.duration = 5.0 * 3600.0;
        let mut learner = LongConnLearner::new(LongConnParams::default());
        learner.observe(&c);
        let mut d = LongConnDetector::new(LongConnParams::default()).with_known(learner.finish());
        c.ts += 10.0 * 86_400.0;
        assert!(d.observe(&c).is_none());
    }
}
