//! Long connections: a pair whose connections add up to hours within a
//! day (a reverse shell kept open, a tunnel, an exfiltration trickle), or
//! one connection that long on its own.
//!
//! Zeek writes a conn record when the connection ends, with its whole
//! duration, so a connection open for six hours is seen once, at its end.
//! Pairs that were as long in the training history (a backup job, a VPN,
//! an admin's SSH session) are the site's normal: the model carries them
//! and they are not reported.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;
use crate::log_kind::LogKind;

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
}

/// The streaming long-connection detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LongConnDetector {
    params: LongConnParams,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    /// From the model, not the checkpoint.
    #[serde(skip)]
    known: HashSet<(IpAddr, IpAddr)>,
}

impl LongConnDetector {
    pub fn new(params: LongConnParams) -> LongConnDetector {
        LongConnDetector {
            pairs: BoundedMap::new(params.max_pairs),
            params,
            known: HashSet::new(),
        }
    }

    pub fn with_known(mut self, known: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> Self {
        self.known.extend(known);
        self
    }

    /// Takes the settings and known entities of a freshly built detector
    /// (from the model now in use), keeping this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.known = fresh.known;
    }

    /// One conn record; a pair is reported once per window, when its total
    /// first reaches the threshold.
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        if c.duration <= 0.0 || self.known.contains(&(c.src, c.dst)) {
            return None;
        }
        let p = &self.params;
        // A connection's time is its start; it lasted until ts + duration.
        let end = c.ts + c.duration;
        let pair = self.pairs.touch((c.src, c.dst), Pair::default);
        if pair.connections == 0 || c.ts >= pair.window_start + f64::from(p.window_seconds) {
            *pair = Pair {
                window_start: c.ts,
                first_ts: c.ts,
                ..Pair::default()
            };
        }
        pair.total += c.duration;
        pair.connections += 1;
        pair.longest = pair.longest.max(c.duration);
        pair.bytes += c.orig_bytes + c.resp_bytes;
        pair.first_ts = pair.first_ts.min(c.ts);
        pair.uids.push(c.uid.as_deref());
        if pair.reported || pair.total < p.threshold_seconds {
            return None;
        }
        pair.reported = true;
        let mut evidence = serde_json::Map::new();
        evidence.insert("connections".into(), pair.connections.into());
        evidence.insert("longest_seconds".into(), pair.longest.into());
        evidence.insert("bytes".into(), pair.bytes.into());
        Some(Detection {
            ts: c.ts,
            detection: DetectorKind::LongConnection,
            module: LogKind::CONN,
            src: c.src,
            dst: Some(c.dst),
            resp_p: c.resp_p,
            domain: None,
            score: pair.total,
            threshold: p.threshold_seconds,
            severity: crate::severity::Severity::Low,
            first_ts: pair.first_ts,
            last_ts: end,
            uids: pair.uids.with_latest(c.uid.as_deref()),
            evidence,
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
