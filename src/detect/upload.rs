//! Large uploads: a local host sending one outside host a gigabyte or more
//! within a day, at least twice what it got back (an archive pushed to a
//! cloud account or a server of the attacker's, a database dump over SCP).
//!
//! KitNET does not see this. Product mode squashes sheer volume, so that
//! one outlying field cannot swamp an autoencoder: an SSH connection
//! scored 0.008 at 2 kB and 0.038 at 1 TB against a threshold of 0.191.
//! And an upload spread over many connections is many ordinary records.
//! So the bytes are added up per pair, in event time.
//!
//! - **What counts.** Connections a local host opened to an outside one
//!   ([`ConnFacts::sent`]: `orig_bytes` bounded by the packets seen).
//!   Not a local server's answers to outside callers (downloads from a
//!   public web server would drown the rest), nor traffic inside the
//!   site, nor to broadcast or multicast addresses (IPTV, cameras).
//! - **A sliding day.** Bytes are kept in six buckets of four hours, so
//!   what a pair sent in the last 20 to 24 hours is known whenever its
//!   first record came (a tumbling day from the first record missed 1.2 GB
//!   sent across its end).
//! - **Pushing out.** A video call or a file sync sends about what it
//!   receives; pushing data out sends far more than comes back: a pair is
//!   reported only while it has sent at least `min_ratio` (2) times what
//!   it received ([`ConnFacts::received`], bounded the same way, so one
//!   forged sequence jump cannot claim gigabytes came back).
//! - **Reported** when the day's bytes first reach the threshold, again
//!   each time they double (graded on the total), and a day after the
//!   last report while still at the threshold (an upload going on for
//!   days keeps its alert open). A first report again only once they fell
//!   under half the threshold: a steady upload's day dips under it each
//!   time a bucket slides out, and was reported every four hours.
//! - **The evidence is the day's**: its connections and bytes received,
//!   and its start, the first record still in the window (once that has
//!   slid out, the start of the oldest bucket with bytes).
//! - **The site's normal.** Training learns, for each pair that sent 50 MB
//!   or more within a day at the ratio (an off-site backup, a speed test),
//!   the most it sent; such a pair is reported only past twice that (and
//!   the threshold), so lowering `--upload-gb` does not report training's
//!   traffic.
//! - **Bounded.** At most `max_pairs` pairs; when full, the pairs that sent
//!   least within the day go first, so a busy site's many small pairs do
//!   not push out one halfway to a gigabyte.
//! - **When the bytes count.** In the bucket of the connection's end,
//!   when its record is written, not of its start: a connection of 30
//!   hours is not left out of the day as a record logged late. But a
//!   record moves its pair's window at most one bucket past the newer of
//!   the pair's newest bucket and its own start (a new pair's, a day past
//!   its start), so one record of an odd duration (up to a year is read)
//!   cannot wipe its pair's day or move its window far ahead, where every
//!   later record would be too old to count.
//! - Final conn records only: an upload still going on is found when its
//!   connection ends. conn_long's interim reports feed only the
//!   long-connection detector: a replay reads conn.log, then
//!   conn_long.log, so a day's reports come after the final records of
//!   the days after it, out of time order for a sliding window; and
//!   telling each report's connection from its final record needs every
//!   reported connection remembered until both were read, which does not
//!   stay bounded over a replay of weeks.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;
use crate::features::LocalNets;

/// Settings, with the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadParams {
    /// A pair is reported when what the local host sent within the window
    /// adds up to this many bytes (default 1 GB).
    pub threshold_bytes: f64,
    /// ... and is at least this many times what it received (default 2).
    pub min_ratio: f64,
    /// The sliding window, in seconds of event time (1 day), kept in
    /// [`BUCKETS`] buckets.
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

/// The window's buckets: the window slides by a sixth of itself.
pub const BUCKETS: usize = 6;

/// The least a pair sent within a day, at the ratio, for training to
/// learn it.
pub const LEARN_FLOOR: f64 = 50e6;

/// A pair known from training and the most it sent within a day there.
pub type KnownVolume = (IpAddr, IpAddr, f64);

/// The window's bytes and connections, by bucket number (event time /
/// bucket length) modulo [`BUCKETS`]. Three arrays, not six structs of
/// three fields: without the structs' padding a pair is 24 bytes smaller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Buckets {
    sent: [f64; BUCKETS],
    /// In f64 too: summed in f32, a day's 3 GB lost every 100-byte answer
    /// after it, and the evidence was off by a few bytes.
    received: [f64; BUCKETS],
    connections: [u32; BUCKETS],
}

impl Buckets {
    /// Whether anything was counted in bucket `i`.
    fn moved(&self, i: usize) -> bool {
        self.sent[i] > 0.0 || self.received[i] > 0.0
    }

    fn clear(&mut self, i: usize) {
        (self.sent[i], self.received[i], self.connections[i]) = (0.0, 0.0, 0);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Pair {
    buckets: Buckets,
    /// The newest bucket's number.
    newest: i64,
    /// When the day's bytes began (the first record still in the window,
    /// or once that has slid out, the start of the oldest bucket holding
    /// bytes), and the first uid while it is in the window.
    first_ts: f64,
    uids: SampleUids,
    /// The day's bytes when last reported (0: not reported since the
    /// day's bytes were last under half the threshold), and when.
    reported: f64,
    reported_ts: f64,
}

impl Pair {
    /// The window's totals: sent, received, connections.
    fn totals(&self) -> (f64, f64, u64) {
        let b = &self.buckets;
        (
            b.sent.iter().sum(),
            b.received.iter().sum(),
            b.connections.iter().map(|&c| u64::from(c)).sum(),
        )
    }

    /// Slides the window to bucket `n` (a newer one), emptying those that
    /// fall out of it.
    fn slide_to(&mut self, n: i64) {
        let gap = n.saturating_sub(self.newest);
        for k in 1..=gap.min(BUCKETS as i64) {
            self.buckets.clear(slot(self.newest + k));
        }
        self.newest = n;
    }

    /// The bucket numbers of the window, oldest first.
    fn numbers(&self) -> impl Iterator<Item = i64> {
        let newest = self.newest;
        (0..BUCKETS as i64).rev().map(move |back| newest - back)
    }

    /// What eviction keeps pairs by: what they sent within the day as of
    /// bucket `n` (only their buckets still in that day count).
    fn rank(&self, n: i64) -> f64 {
        self.numbers()
            .filter(|&m| m > n - BUCKETS as i64)
            .map(|m| self.buckets.sent[slot(m)])
            .sum()
    }

    /// Once the first record of the day's bytes has slid out of the
    /// window, the day begins at the oldest bucket still holding bytes,
    /// and its first uid is no longer in it.
    fn begin_within(&mut self, bucket_seconds: f64) {
        let oldest = self.newest - (BUCKETS as i64 - 1);
        if (self.first_ts / bucket_seconds).floor() as i64 >= oldest {
            return;
        }
        if let Some(m) = self.numbers().find(|&m| self.buckets.moved(slot(m))) {
            self.first_ts = m as f64 * bucket_seconds;
            self.uids = SampleUids::default();
        }
    }
}

fn slot(n: i64) -> usize {
    n.rem_euclid(BUCKETS as i64) as usize
}

/// The streaming large-upload detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadDetector {
    params: UploadParams,
    /// The site's networks; `None` while learning, when every pair counts
    /// (training's pairs are only ever spared, whichever way they ran).
    local: Option<LocalNets>,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    /// The pairs training knows, and the most each sent within a day
    /// there. From the model, not the checkpoint.
    #[serde(skip)]
    known: HashMap<(IpAddr, IpAddr), f64>,
}

/// A pair's state after a record: its window's totals, and when the
/// record's bytes counted (its end, bounded as its bucket is).
struct Day {
    sent: f64,
    received: f64,
    at: f64,
}

impl UploadDetector {
    pub fn new(params: UploadParams, local: LocalNets) -> UploadDetector {
        UploadDetector {
            pairs: BoundedMap::new(params.max_pairs),
            params,
            local: Some(local),
            known: HashMap::new(),
        }
    }

    pub fn with_known(mut self, known: impl IntoIterator<Item = KnownVolume>) -> Self {
        self.known
            .extend(known.into_iter().map(|(src, dst, most)| ((src, dst), most)));
        self
    }

    /// Takes the settings, site and known pairs of a freshly built
    /// detector (from the model now in use), keeping this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.local = fresh.local;
        self.known = fresh.known;
    }

    /// Whether `c` is a local host's upload to an outside unicast one.
    fn outbound(&self, c: &ConnFacts) -> bool {
        match &self.local {
            Some(local) => {
                local.contains(c.src) && !local.contains(c.dst) && !local.is_broadcast(c.dst)
            }
            None => true,
        }
    }

    fn bucket_seconds(&self) -> f64 {
        (f64::from(self.params.window_seconds) / BUCKETS as f64).max(1.0)
    }

    /// Adds what `c` sent and received to its pair's window; `None` when
    /// it does not count.
    fn add(&mut self, c: &ConnFacts) -> Option<(Day, &mut Pair)> {
        let (sent, received) = (c.sent(), c.received());
        // A record that moved nothing adds nothing: such records (most of
        // a scan, many refused attempts) do not take a pair's room. One
        // that only received counts (an FTP download's data channels are
        // opened by the local host, which sends nothing on them).
        if c.open || (sent <= 0.0 && received <= 0.0) || !self.outbound(c) {
            return None;
        }
        let bucket_seconds = self.bucket_seconds();
        let half = self.params.threshold_bytes / 2.0;
        let bucket = |t: f64| (t / bucket_seconds).floor() as i64;
        let (start, end) = (bucket(c.ts), bucket(c.ts + c.duration));
        let pair = self
            .pairs
            .touch_ranked((c.src, c.dst), Pair::default, |p| p.rank(start));
        let fresh = !(0..BUCKETS).any(|i| pair.buckets.moved(i));
        let n = if fresh {
            end.min(start + BUCKETS as i64)
        } else {
            end.min(pair.newest.max(start) + 1)
        };
        if pair.newest + (BUCKETS as i64) <= n || fresh {
            // A new episode: nothing of the pair is left in the window.
            *pair = Pair {
                newest: n,
                first_ts: c.ts,
                ..Pair::default()
            };
        } else if n > pair.newest {
            pair.slide_to(n);
            pair.begin_within(bucket_seconds);
            if pair.totals().0 < half {
                // Well under the threshold again: the next crossing is
                // news. (Not merely under it: the day's bytes of a steady
                // upload dip under it each time a bucket slides out.)
                pair.reported = 0.0;
            }
        } else if n + (BUCKETS as i64) <= pair.newest {
            // Older than the window (a record logged a day late).
            return None;
        }
        let (b, i) = (&mut pair.buckets, slot(n));
        b.sent[i] += sent;
        b.received[i] += received;
        b.connections[i] = b.connections[i].saturating_add(1);
        pair.first_ts = pair.first_ts.min(c.ts);
        pair.uids.push(c.uid.as_deref());
        let (sent, received, _) = pair.totals();
        let at = (c.ts + c.duration).min((n + 1) as f64 * bucket_seconds);
        Some((Day { sent, received, at }, pair))
    }

    /// One final conn record: the pair is reported when its day's bytes
    /// first reach the threshold at the ratio, again when they double, and
    /// a day after its last report while still there.
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        let p = self.params.clone();
        let known = self.known.get(&(c.src, c.dst)).copied();
        let (day, pair) = self.add(c)?;
        let bar = p.threshold_bytes.max(2.0 * known.unwrap_or(0.0));
        let again = pair.reported > 0.0
            && day.sent < 2.0 * pair.reported
            && day.at < pair.reported_ts + f64::from(p.window_seconds);
        if day.sent < bar || day.sent < p.min_ratio * day.received || again {
            return None;
        }
        pair.reported = day.sent;
        pair.reported_ts = day.at;
        let (_, _, connections) = pair.totals();
        let whole = |v: f64| v.round() as u64;
        let mut evidence = serde_json::Map::new();
        evidence.insert("connections".into(), connections.into());
        evidence.insert("received_bytes".into(), whole(day.received).into());
        if let Some(most) = known {
            // Known from training: reported past twice its most there.
            evidence.insert("training_most_bytes".into(), whole(most).into());
        }
        let uids = pair.uids.with_latest(c.uid.as_deref());
        // Stamped when the connection that crossed the bar ended (by then
        // its bytes were sent), bounded as its bucket is.
        let on = Detection::of_pair(DetectorKind::LargeUpload, c, pair.first_ts, day.at, uids);
        Some(Detection {
            score: day.sent.round(),
            threshold: bar,
            evidence,
            ..on
        })
    }
}

/// Learns, for each pair that sent [`LEARN_FLOOR`] or more within a day
/// at the ratio in the training history, the most it sent.
#[derive(Debug)]
pub struct UploadLearner {
    detector: UploadDetector,
    most: HashMap<(IpAddr, IpAddr), f64>,
}

impl UploadLearner {
    pub fn new(params: UploadParams) -> UploadLearner {
        let mut detector = UploadDetector::new(params, LocalNets::default());
        // The networks are learnt in the same pass as this (the model's
        // site), so not known yet: every pair is learnt, which only ever
        // spares one.
        detector.local = None;
        UploadLearner {
            detector,
            most: HashMap::new(),
        }
    }

    pub fn observe(&mut self, c: &ConnFacts) {
        let ratio = self.detector.params.min_ratio;
        let Some((day, _)) = self.detector.add(c) else {
            return;
        };
        if day.sent < LEARN_FLOOR || day.sent < ratio * day.received {
            return;
        }
        let full = self.most.len() >= super::baseline::MAX_KNOWN;
        match self.most.get_mut(&(c.src, c.dst)) {
            Some(most) => *most = most.max(day.sent),
            None if !full => {
                self.most.insert((c.src, c.dst), day.sent);
            }
            None => {}
        }
    }

    pub fn finish(self) -> Vec<KnownVolume> {
        let mut known: Vec<KnownVolume> = self
            .most
            .into_iter()
            .map(|((src, dst), most)| (src, dst, most.round()))
            .collect();
        known.sort_unstable_by_key(|k| (k.0, k.1));
        known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::{conn, ip};

    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86_400.0;
    const T0: f64 = 1_713_571_200.0;

    fn detector() -> UploadDetector {
        UploadDetector::new(UploadParams::default(), LocalNets::default())
    }

    /// A connection from `src` to `dst` at `ts` sending `sent` bytes and
    /// receiving `received`, each with its packets' bytes logged.
    fn upload(src: &str, dst: &str, ts: f64, sent: f64, received: f64) -> ConnFacts {
        let mut c = conn(ip(src), ip(dst), ts, sent, received > 0.0);
        c.orig_ip_bytes = sent * 1.03;
        c.resp_bytes = received;
        c.resp_ip_bytes = received * 1.03 + 40.0;
        c.duration = 600.0;
        c.uid = Some(format!("C{}", ts as u64).into());
        c
    }

    fn out(src: &str, ts: f64, sent: f64) -> ConnFacts {
        upload(src, "203.0.113.9", ts, sent, 0.0)
    }

    /// Records of `pieces` (hours after T0, bytes) from 10.0.0.5 to
    /// 203.0.113.9 into `d`: what was reported.
    fn feed(d: &mut UploadDetector, pieces: &[(f64, f64)]) -> Vec<Detection> {
        pieces
            .iter()
            .filter_map(|&(h, sent)| d.observe(&out("10.0.0.5", T0 + h * HOUR, sent)))
            .collect()
    }

    /// 1.2 GB pushed out in 300 MB pieces is found once, at the piece
    /// that crosses 1 GB, with the evidence an analyst checks; the same
    /// bytes inside the site, from an outside host, to broadcast or
    /// multicast, or in a call that receives as much as it sends are not.
    #[test]
    fn a_gigabyte_pushed_out_is_found_once_and_only_outbound() {
        let mut d = detector();
        let found: Vec<Detection> = (0..4)
            .filter_map(|i| {
                let c = upload(
                    "10.0.0.5",
                    "203.0.113.9",
                    T0 + f64::from(i) * HOUR,
                    300e6,
                    2e6,
                );
                d.observe(&c)
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        assert_eq!(f.detection, DetectorKind::LargeUpload);
        assert_eq!((f.score, f.threshold), (1.2e9, 1e9));
        assert_eq!((f.first_ts, f.ts), (T0, T0 + 3.0 * HOUR + 600.0));
        let uid = |h: u64| format!("C{}", T0 as u64 + h * 3600);
        assert_eq!(f.uids, [uid(0), uid(3)]);
        assert_eq!(f.evidence["connections"], 4);
        assert_eq!(f.evidence["received_bytes"], 8_000_000);
        assert_eq!(f.measured(), "1.2 GB sent, at or above 1 GB");

        for (src, dst, received) in [
            ("10.0.0.5", "10.0.0.9", 0.0),        // inside the site
            ("203.0.113.9", "10.0.0.5", 0.0),     // a local server's answers
            ("10.0.0.5", "239.255.1.1", 0.0),     // multicast (IPTV)
            ("10.0.0.5", "ff0e::1", 0.0),         // IPv6 multicast
            ("10.0.0.5", "255.255.255.255", 0.0), // limited broadcast
            ("10.0.0.5", "198.51.100.7", 1.0e9),  // a call: sent about what came back
        ] {
            let mut d = detector();
            for i in 0..4 {
                let c = upload(src, dst, T0 + f64::from(i) * HOUR, 300e6, received / 4.0);
                assert!(d.observe(&c).is_none(), "{src} -> {dst}");
            }
        }
    }

    /// The day slides: 600 MB on either side of a day after a pair's first
    /// (tiny) record is found, where a tumbling day from that record
    /// missed it; 600 MB a day apart is not a gigabyte within a day.
    #[test]
    fn the_day_slides_whenever_the_pair_began() {
        let mut d = detector();
        let found = feed(&mut d, &[(0.0, 1e3), (23.8, 600e6), (24.05, 600e6)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].score, 1.2e9);
        assert_eq!(
            found[0].evidence["connections"], 2,
            "the 1 kB is out of the day"
        );
        let mut d = detector();
        assert!(feed(&mut d, &[(0.0, 600e6), (30.0, 600e6)]).is_empty());
    }

    /// Reported again when the day's bytes double (50 GB in 6.6 h was one
    /// detection of "2.5 GB sent"), and a day after the last report while
    /// still at the threshold; the doubling ones are high.
    #[test]
    fn a_growing_or_lasting_upload_is_reported_again() {
        let mut d = detector();
        let pieces: Vec<(f64, f64)> = (0..20).map(|i| (f64::from(i) * 0.33, 2.5e9)).collect();
        let found = feed(&mut d, &pieces);
        let scores: Vec<f64> = found.iter().map(|f| f.score).collect();
        assert_eq!(scores, [2.5e9, 5e9, 10e9, 20e9, 40e9]);
        assert!(found[1..]
            .iter()
            .all(|f| f.graded() == crate::severity::Severity::High));
        // 300 MB every 4 hours for three days: 1.8 GB a day, reported
        // once a day.
        let mut d = detector();
        let steady: Vec<(f64, f64)> = (0..18).map(|i| (f64::from(i) * 4.0, 300e6)).collect();
        let found = feed(&mut d, &steady);
        let hours: Vec<f64> = found
            .iter()
            .map(|f| ((f.ts - 600.0 - T0) / HOUR).round())
            .collect();
        assert_eq!(hours, [12.0, 36.0, 60.0], "{found:?}");
        // About 1 GB a day, 42 MB an hour for four days: once a day (the
        // day's bytes dip under 1 GB each time a bucket slides out; they
        // were reported every 4 hours).
        let mut d = detector();
        let hourly: Vec<(f64, f64)> = (0..96).map(|h| (f64::from(h), 42e6)).collect();
        let found = feed(&mut d, &hourly);
        let hours: Vec<f64> = found
            .iter()
            .map(|f| ((f.ts - 600.0 - T0) / HOUR).round())
            .collect();
        assert_eq!(hours, [23.0, 47.0, 71.0, 95.0], "{found:?}");
        // Quiet for a day, then again: news at once.
        let mut d = detector();
        assert_eq!(feed(&mut d, &[(0.0, 1.2e9), (30.0, 1.2e9)]).len(), 2);
    }

    /// The evidence is the day's: once a pair's first record has slid out
    /// of the window, the day begins at the oldest bucket holding bytes,
    /// and the first uid is one within it (990 MB sent 32 h before was
    /// shown as the evidence's start beside the day's connections).
    #[test]
    fn the_evidence_is_of_the_day_reported() {
        let mut d = detector();
        let mut big = out("10.0.0.5", T0, 990e6);
        big.uid = Some("Cbig".into());
        assert!(d.observe(&big).is_none());
        let mut pieces: Vec<(f64, f64)> = (1..8).map(|i| (f64::from(i) * 4.0, 1e3)).collect();
        pieces.extend([(30.0, 400e6), (31.0, 400e6), (32.0, 400e6)]);
        let found = feed(&mut d, &pieces);
        assert_eq!(found.len(), 1, "{found:?}");
        let f = &found[0];
        // At 32 h the window is the buckets from 12 h on.
        assert_eq!(f.first_ts, T0 + 12.0 * HOUR, "the oldest bucket with bytes");
        assert!(!f.uids.iter().any(|u| u == "Cbig"), "{f:?}");
        assert_eq!(
            f.evidence["connections"], 8,
            "five of 1 kB and three of 400 MB"
        );
    }

    /// Zeek's orig_bytes and resp_bytes of a connection seen in part can
    /// read as gigabytes never sent (sequence numbers across a gap, or a
    /// forged jump): the packets seen bound both, so one such connection
    /// neither makes an upload nor hides one by the ratio.
    #[test]
    fn bytes_never_on_the_wire_do_not_count() {
        let mut d = detector();
        let mut c = out("10.0.0.5", T0, 4.2e9);
        c.orig_ip_bytes = 52_000.0;
        assert_eq!(c.sent(), 52_000.0);
        assert!(d.observe(&c).is_none());
        // Without orig_ip_bytes (a log without the column), orig_bytes.
        c.orig_ip_bytes = 0.0;
        assert!(d.observe(&c).is_some());

        let mut d = detector();
        let mut fake = out("10.0.0.5", T0, 1e3);
        fake.resp_bytes = 4e9;
        fake.resp_ip_bytes = 52_000.0;
        assert_eq!(fake.received(), 52_000.0);
        assert!(d.observe(&fake).is_none());
        assert_eq!(feed(&mut d, &[(1.0, 600e6), (2.0, 600e6)]).len(), 1);
    }

    /// A pair that uploaded in training (an off-site backup, a speed test)
    /// is reported only past twice the most it sent within a day there,
    /// so a threshold lowered under it does not report training's traffic.
    #[test]
    fn pairs_that_uploaded_in_training_are_reported_past_twice_their_most() {
        let mut learner = UploadLearner::new(UploadParams::default());
        for (i, sent) in [(0, 40e6), (1, 68e6)] {
            learner.observe(&out("10.0.0.5", T0 + f64::from(i) * HOUR, sent));
        }
        // Learnt whichever way it ran; under 50 MB a day it is not.
        learner.observe(&upload("203.0.113.1", "198.51.100.2", T0, 2e9, 0.0));
        learner.observe(&out("10.0.0.6", T0, 20e6));
        let known = learner.finish();
        assert_eq!(known.len(), 2, "{known:?}");
        assert!(known.contains(&(ip("10.0.0.5"), ip("203.0.113.9"), 108e6)));

        let low = UploadParams {
            threshold_bytes: 100e6,
            ..UploadParams::default()
        };
        let mut d = UploadDetector::new(low, LocalNets::default()).with_known(known);
        let later = T0 + 10.0 * DAY;
        assert!(d.observe(&out("10.0.0.5", later, 108e6)).is_none());
        let f = d.observe(&out("10.0.0.5", later + HOUR, 120e6)).unwrap();
        assert_eq!((f.score, f.threshold), (228e6, 216e6));
        assert_eq!(f.evidence["training_most_bytes"], 108_000_000);
        assert!(
            d.observe(&out("10.0.0.7", later, 110e6)).is_some(),
            "another pair is news"
        );
    }

    /// A busy site's thousands of small pairs do not push out a pair
    /// halfway to a gigabyte (they did, least recently used first).
    #[test]
    fn small_pairs_do_not_push_out_one_halfway_to_a_gigabyte() {
        let params = UploadParams {
            max_pairs: 1_000,
            ..UploadParams::default()
        };
        let mut d = UploadDetector::new(params, LocalNets::default());
        assert!(d.observe(&out("10.0.0.5", T0, 600e6)).is_none());
        for i in 0..20_000u32 {
            let src = format!("10.1.{}.{}", i >> 8, i & 255);
            let c = upload(&src, "198.51.100.9", T0 + f64::from(i) * 0.5, 600.0, 0.0);
            assert!(d.observe(&c).is_none());
        }
        assert!(d.pairs.evicted() > 19_000);
        assert!(d
            .observe(&out("10.0.0.5", T0 + 3.0 * HOUR, 600e6))
            .is_some());
    }

    /// The state survives a checkpoint: a restart in the middle of an
    /// upload reports it as an uninterrupted run does.
    #[test]
    fn a_restart_in_the_middle_reports_as_an_uninterrupted_run() {
        let pieces: Vec<ConnFacts> = (0..12)
            .map(|i| out("10.0.0.5", T0 + f64::from(i) * 1_800.0, 250e6))
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
        assert_eq!(got.len(), 2, "at 1 GB and at 2 GB");
    }

    /// A connection of 30 hours that sent 2 GB counts in the day it ended,
    /// not as a record from before the window: its pair's later records
    /// had moved the window past its start.
    #[test]
    fn a_connection_longer_than_the_window_counts_when_it_ended() {
        let mut d = detector();
        assert!(d.observe(&out("10.0.0.5", T0 + 29.0 * HOUR, 1e6)).is_none());
        let mut long = out("10.0.0.5", T0, 2e9);
        long.duration = 30.0 * HOUR;
        let f = d.observe(&long).expect("2 GB sent within the day it ended");
        assert_eq!(f.score, 2e9 + 1e6);
        assert_eq!(f.ts, T0 + 30.0 * HOUR);
    }

    /// What came back counts on connections that sent nothing (an FTP
    /// download's data channels, opened by the local host), and is added
    /// exactly: 5 GB back makes 1.2 GB out no upload, and a thousand
    /// 100-byte answers after 3.2 GB are all in the evidence.
    #[test]
    fn what_came_back_counts_whole_even_where_nothing_was_sent() {
        let mut d = detector();
        for i in 0..5 {
            let c = upload("10.0.0.5", "203.0.113.9", T0 + f64::from(i), 0.0, 1e9);
            assert!(d.observe(&c).is_none());
        }
        let ups: Vec<Detection> = (0..3)
            .filter_map(|i| d.observe(&out("10.0.0.5", T0 + 60.0 + f64::from(i), 400e6)))
            .collect();
        assert!(ups.is_empty(), "it received 5 GB: {ups:?}");

        let mut d = detector();
        assert!(d
            .observe(&upload("10.0.0.5", "203.0.113.9", T0, 0.0, 3.2e9))
            .is_none());
        for i in 0..1000 {
            let c = upload(
                "10.0.0.5",
                "203.0.113.9",
                T0 + 1.0 + f64::from(i),
                0.0,
                100.0,
            );
            assert!(d.observe(&c).is_none());
        }
        let f = d
            .observe(&out("10.0.0.5", T0 + 2000.0, 7e9))
            .expect("7 GB out, more than twice what came back");
        assert_eq!(f.evidence["received_bytes"], 3_200_100_000u64);
        assert_eq!(f.evidence["connections"], 1002);
    }

    /// One record of a year's duration does not move its pair's window a
    /// year ahead (every later record would be too old to count).
    #[test]
    fn an_odd_duration_does_not_blind_its_pair() {
        let mut d = detector();
        let mut odd = out("10.0.0.5", T0, 1_000.0);
        odd.duration = 365.0 * DAY;
        assert!(d.observe(&odd).is_none());
        let found = feed(
            &mut d,
            &[(25.0, 300e6), (26.0, 300e6), (27.0, 300e6), (28.0, 300e6)],
        );
        assert_eq!(found.len(), 1, "{found:?}");
    }

    /// An odd duration in the middle of an upload neither wipes the day
    /// (900 MB before it, 300 MB after: one detection at 1.2 GB) nor dates
    /// a detection a year ahead; nor does another pair's newer record
    /// change where this pair's bytes count.
    #[test]
    fn an_odd_duration_mid_upload_keeps_the_day_and_its_time() {
        let mut d = detector();
        assert!(feed(&mut d, &[(0.0, 300e6), (1.0, 300e6), (2.0, 300e6)]).is_empty());
        assert!(d.observe(&out("10.0.0.9", T0 + 30.0 * DAY, 1e3)).is_none());
        let mut odd = out("10.0.0.5", T0 + 2.5 * HOUR, 1e3);
        odd.duration = 365.0 * DAY;
        assert!(d.observe(&odd).is_none());
        let found = feed(&mut d, &[(3.0, 300e6)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].score, 1.2e9 + 1e3);

        let mut d = detector();
        let mut odd = out("10.0.0.5", T0, 2e9);
        odd.duration = 365.0 * DAY;
        let f = d.observe(&odd).expect("2 GB");
        assert!(f.ts <= T0 + DAY + 4.0 * HOUR, "stamped {} s on", f.ts - T0);
    }
}
