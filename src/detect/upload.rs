//! Large uploads: a local host sending one outside host a gigabyte or more
//! within a day, at least twice what it got back (an archive pushed to a
//! cloud account or a server of the attacker's, a database dump over SCP).
//!
//! KitNET does not see this. Product mode squashes sheer volume, so that
//! one outlying field cannot swamp an autoencoder: an SSH connection
//! scored 0.008 at 2 kB and 0.038 at 1 TB against a threshold of 0.191.
//! And an upload spread over many connections is many ordinary records.
//! So the bytes are added up per pair, in event time, like the
//! long-connection detector's durations.
//!
//! - Only connections a local host opened to an outside one count. A
//!   local server's answers to outside callers (downloads from a public
//!   web server) would drown the rest, and inside the site, copying to a
//!   file share is the everyday.
//! - What the host sent is Zeek's `orig_bytes`, but never more than
//!   `orig_ip_bytes` when that is known: `orig_bytes` comes from TCP
//!   sequence numbers, and a connection seen in part (a capture gap, a
//!   sequence wrap) can read as gigabytes that were never on the wire,
//!   while `orig_ip_bytes` counts the packets seen.
//! - A video call or a file sync sends about what it receives; pushing
//!   data out sends far more than comes back. A pair is reported only
//!   while it has sent at least `min_ratio` (2) times what it received.
//! - Pairs that sent as much within a day of the training history (an
//!   off-site backup) are the site's normal: the model carries them and
//!   they are not reported.
//! - Final conn records only: an upload still going on is found when its
//!   connection ends (conn_long's interim reports feed only the
//!   long-connection detector).

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;
use crate::features::LocalNets;
use crate::log_kind::LogKind;

/// Settings, with the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadParams {
    /// A pair is reported when what the local host sent within one window
    /// adds up to this many bytes (default 1 GB).
    pub threshold_bytes: f64,
    /// ... and is at least this many times what it received (default 2).
    pub min_ratio: f64,
    /// The tumbling window per pair, in seconds of event time (1 day).
    pub window_seconds: u32,
    pub max_pairs: usize,
}

impl Default for UploadParams {
    fn default() -> Self {
        UploadParams {
            threshold_bytes: 1e9,
            min_ratio: 2.0,
            window_seconds: 86_400,
            max_pairs: 200_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pair {
    window_start: f64,
    first_ts: f64,
    sent: f64,
    received: f64,
    connections: u64,
    /// The most one connection sent.
    largest: f64,
    reported: bool,
    uids: SampleUids,
}

/// The streaming large-upload detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadDetector {
    params: UploadParams,
    /// The site's networks; `None` while learning, when every pair counts
    /// (training's pairs are only ever skipped, whichever way they ran).
    local: Option<LocalNets>,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    /// From the model, not the checkpoint.
    #[serde(skip)]
    known: HashSet<(IpAddr, IpAddr)>,
}

/// What the originator of `c` sent, as far as the packets seen show.
pub fn sent_bytes(c: &ConnFacts) -> f64 {
    if c.orig_ip_bytes > 0.0 {
        c.orig_bytes.min(c.orig_ip_bytes)
    } else {
        c.orig_bytes
    }
}

impl UploadDetector {
    pub fn new(params: UploadParams, local: LocalNets) -> UploadDetector {
        UploadDetector {
            pairs: BoundedMap::new(params.max_pairs),
            params,
            local: Some(local),
            known: HashSet::new(),
        }
    }

    pub fn with_known(mut self, known: impl IntoIterator<Item = (IpAddr, IpAddr)>) -> Self {
        self.known.extend(known);
        self
    }

    /// Takes the settings, site and known pairs of a freshly built
    /// detector (from the model now in use), keeping this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.local = fresh.local;
        self.known = fresh.known;
    }

    /// Whether `c` is a local host's upload to an outside one.
    fn outbound(&self, c: &ConnFacts) -> bool {
        match &self.local {
            Some(local) => local.contains(c.src) && !local.contains(c.dst),
            None => true,
        }
    }

    /// One final conn record; a pair is reported once per window, when
    /// what it sent first reaches the threshold at the ratio.
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        let sent = sent_bytes(c);
        // Nothing sent adds nothing: such records (most of a scan, many
        // refused attempts) do not take a pair's room.
        if c.open || sent <= 0.0 || !self.outbound(c) || self.known.contains(&(c.src, c.dst)) {
            return None;
        }
        let p = &self.params;
        let end = c.ts + c.duration;
        let pair = self.pairs.touch((c.src, c.dst), Pair::default);
        if pair.connections == 0 || c.ts >= pair.window_start + f64::from(p.window_seconds) {
            *pair = Pair {
                window_start: c.ts,
                first_ts: c.ts,
                ..Pair::default()
            };
        }
        pair.sent += sent;
        pair.received += c.resp_bytes;
        pair.connections += 1;
        pair.largest = pair.largest.max(sent);
        pair.first_ts = pair.first_ts.min(c.ts);
        pair.uids.push(c.uid.as_deref());
        if pair.reported || pair.sent < p.threshold_bytes || pair.sent < p.min_ratio * pair.received
        {
            return None;
        }
        pair.reported = true;
        let whole = |v: f64| v.round() as u64;
        let mut evidence = serde_json::Map::new();
        evidence.insert("connections".into(), pair.connections.into());
        evidence.insert("received_bytes".into(), whole(pair.received).into());
        evidence.insert(
            "largest_connection_bytes".into(),
            whole(pair.largest).into(),
        );
        // Stamped when the connection that crossed the threshold ended:
        // by then its bytes were sent.
        Some(Detection {
            ts: end,
            detection: DetectorKind::LargeUpload,
            module: LogKind::CONN,
            src: c.src,
            dst: Some(c.dst),
            resp_p: c.resp_p,
            domain: None,
            score: pair.sent.round(),
            threshold: p.threshold_bytes,
            severity: crate::severity::Severity::Medium,
            first_ts: pair.first_ts,
            last_ts: end,
            uids: pair.uids.with_latest(c.uid.as_deref()),
            evidence,
            src_local: None,
        })
    }
}

/// Learns the pairs that sent as much in the training history.
#[derive(Debug)]
pub struct UploadLearner {
    detector: UploadDetector,
    known: Vec<(IpAddr, IpAddr)>,
}

impl UploadLearner {
    pub fn new(params: UploadParams) -> UploadLearner {
        let mut detector = UploadDetector::new(params, LocalNets::default());
        // Training does not know the site's networks yet (they are the
        // scoring run's): every pair is learnt, which only ever spares one.
        detector.local = None;
        UploadLearner {
            detector,
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

    const DAY: f64 = 86_400.0;

    fn detector() -> UploadDetector {
        UploadDetector::new(UploadParams::default(), LocalNets::default())
    }

    /// A connection from `src` to `dst` at `ts` sending `sent` bytes and
    /// receiving `received`.
    fn upload(src: &str, dst: &str, ts: f64, sent: f64, received: f64) -> ConnFacts {
        let mut c = conn(ip(src), ip(dst), ts, sent, received > 0.0);
        c.orig_ip_bytes = sent * 1.03;
        c.resp_bytes = received;
        c.duration = 600.0;
        c.uid = Some(format!("C{}", ts as u64).into());
        c
    }

    /// 1.2 GB pushed out in 300 MB pieces is found once, at the piece
    /// that crosses 1 GB, with the evidence an analyst checks; the same
    /// bytes to an inside host, from an outside host, or in a call that
    /// receives as much as it sends are not.
    #[test]
    fn a_gigabyte_pushed_out_is_found_once_and_only_outbound() {
        let t0 = 1_713_571_200.0;
        let mut d = detector();
        let found: Vec<Detection> = (0..4)
            .filter_map(|i| {
                d.observe(&upload(
                    "10.0.0.5",
                    "203.0.113.9",
                    t0 + f64::from(i) * 3600.0,
                    300e6,
                    2e6,
                ))
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.detection, DetectorKind::LargeUpload);
        assert_eq!((f.score, f.threshold), (1.2e9, 1e9));
        assert_eq!((f.first_ts, f.ts), (t0, t0 + 3.0 * 3600.0 + 600.0));
        assert_eq!(
            f.uids,
            [
                format!("C{}", t0 as u64),
                format!("C{}", t0 as u64 + 3 * 3600)
            ]
        );
        assert_eq!(f.evidence["connections"], 4);
        assert_eq!(f.evidence["received_bytes"], 8_000_000);
        assert_eq!(f.evidence["largest_connection_bytes"], 300_000_000);
        assert_eq!(f.measured(), "1.2 GB sent, at or above 1 GB");

        for (src, dst, received) in [
            ("10.0.0.5", "10.0.0.9", 0.0),       // inside the site
            ("203.0.113.9", "10.0.0.5", 0.0),    // a local server's answers
            ("10.0.0.5", "198.51.100.7", 1.0e9), // a call: sent about what came back
        ] {
            let mut d = detector();
            for i in 0..4 {
                let c = upload(src, dst, t0 + f64::from(i) * 3600.0, 300e6, received / 4.0);
                assert!(d.observe(&c).is_none(), "{src} -> {dst}");
            }
        }
    }

    /// A day's window: 600 MB today and 600 MB tomorrow is no gigabyte
    /// within a day; 1 GB each day is reported each day.
    #[test]
    fn the_window_is_a_day_and_each_day_is_reported() {
        let t0 = 1_713_571_200.0;
        let mut d = detector();
        let spread = [0.0, 1.2 * DAY]
            .iter()
            .filter_map(|&t| d.observe(&upload("10.0.0.5", "203.0.113.9", t0 + t, 600e6, 0.0)))
            .count();
        assert_eq!(spread, 0);
        let mut d = detector();
        let daily = (0..3)
            .filter_map(|day| {
                let t = t0 + f64::from(day) * 1.1 * DAY;
                d.observe(&upload("10.0.0.5", "203.0.113.9", t, 1.1e9, 0.0))
            })
            .count();
        assert_eq!(daily, 3);
    }

    /// Zeek's orig_bytes of a connection seen in part can read as
    /// gigabytes never sent (sequence numbers across a gap): the packets
    /// seen bound it.
    #[test]
    fn bytes_never_on_the_wire_do_not_count() {
        let mut d = detector();
        let mut c = upload("10.0.0.5", "203.0.113.9", 1_713_571_200.0, 4.2e9, 0.0);
        c.orig_ip_bytes = 52_000.0;
        assert_eq!(sent_bytes(&c), 52_000.0);
        assert!(d.observe(&c).is_none());
        // Without orig_ip_bytes (a log without the column), orig_bytes it is.
        c.orig_ip_bytes = 0.0;
        assert!(d.observe(&c).is_some());
    }

    /// A pair that uploaded as much in training (an off-site backup) is
    /// not reported; the learner learns it whichever way it ran.
    #[test]
    fn pairs_that_uploaded_in_training_are_not_reported() {
        let c = upload("10.0.0.5", "203.0.113.9", 1_713_571_200.0, 2e9, 0.0);
        let mut learner = UploadLearner::new(UploadParams::default());
        learner.observe(&c);
        learner.observe(&upload(
            "203.0.113.1",
            "198.51.100.2",
            1_713_571_200.0,
            2e9,
            0.0,
        ));
        let known = learner.finish();
        assert_eq!(known.len(), 2);
        let mut d = detector().with_known(known);
        let mut later = c.clone();
        later.ts += 10.0 * DAY;
        assert!(d.observe(&later).is_none());
        let mut other = later;
        other.dst = ip("203.0.113.10");
        assert!(d.observe(&other).is_some(), "another destination is news");
    }

    /// The state survives a checkpoint: a restart in the middle of an
    /// upload reports it as an uninterrupted run does.
    #[test]
    fn a_restart_in_the_middle_reports_as_an_uninterrupted_run() {
        let t0 = 1_713_571_200.0;
        let pieces: Vec<ConnFacts> = (0..6)
            .map(|i| {
                upload(
                    "10.0.0.5",
                    "203.0.113.9",
                    t0 + f64::from(i) * 60.0,
                    250e6,
                    1e3,
                )
            })
            .collect();
        let mut whole = detector();
        let want: Vec<Detection> = pieces.iter().filter_map(|c| whole.observe(c)).collect();
        let mut first = detector();
        let mut got: Vec<Detection> = pieces[..2]
            .iter()
            .filter_map(|c| first.observe(c))
            .collect();
        let saved = serde_json::to_string(&first).unwrap();
        let mut again: UploadDetector = serde_json::from_str(&saved).unwrap();
        again.take_baseline(detector());
        got.extend(pieces[2..].iter().filter_map(|c| again.observe(c)));
        assert_eq!(got, want);
        assert_eq!(got.len(), 1);
    }
}
