//! Beacons, streaming: per (source, destination) pair, RITA's score over
//! the last 24 hours of event time, updated as conn records arrive.
//!
//! What differs from RITA, and why:
//! - **Answered connections only.** A beacon talks to something that
//!   answers. On an internet-facing sensor, RITA's 90 pairs at 0.7 or more
//!   are nearly all scanners whose connections were refused (REJ, no
//!   payload back), regular because scanners are. Only connections whose
//!   responder sent payload (`resp_bytes > 0`) count here; a beacon whose
//!   server is down is missed until it answers again.
//! - **Known pairs.** Pairs that talked again and again in the training
//!   history (at least [`BeaconParams::min_connections`] answered
//!   connections: NTP, update checks, the regulars of an internet-facing
//!   sensor) are the site's normal: the model carries them
//!   ([`BaselineLearner`]) and they are not scored. A beacon is news when
//!   the pair is; like every detector trained on history, one already
//!   beaconing during training is learned as normal.
//! - **Streaming.** The window ends at the newest record's time (event
//!   time, never the clock) and starts 24 hours before, or at the first
//!   record when there is less history; a pair is rescored when a record
//!   of it arrives and [`BeaconParams::rescore_seconds`] of event time have
//!   passed since its last score. Records arrive out of time order (conn
//!   records are written when connections close); the score sorts.
//!
//! Memory is bounded: at most [`BeaconParams::max_pairs`] pairs (the
//! least recently seen are dropped first) of at most
//! [`BeaconParams::max_events`] connections each (the oldest go first).

use std::collections::{HashMap, HashSet, VecDeque};

/// The evidence key of a beacon whose connections are ICMP.
pub const ICMP_EVIDENCE: &str = "icmp";
/// The evidence key of a beacon reported again only because it goes on.
pub const STILL_EVIDENCE: &str = "still_beaconing";
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;
use super::rita;
use crate::log_kind::LogKind;

/// Settings of the beacon detector, with the defaults documented in the
/// README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BeaconParams {
    /// The sliding window, in seconds of event time (RITA: 24 h).
    pub window_seconds: u32,
    /// A pair is a beacon at this score or above (RITA's "high" band
    /// starts at 0.9 in its installed configuration).
    pub threshold: f64,
    /// Connections needed before a pair is scored (RITA: 4).
    pub min_connections: usize,
    /// Event time between two scores of one pair.
    pub rescore_seconds: u32,
    /// A pair still at or above the threshold is reported again after
    /// this much event time, stronger or not: a beacon that goes on for
    /// days keeps its alert open (the alerts' quiet period is 12 h by
    /// default) and the detections say it is still going.
    #[serde(default = "default_repeat_seconds")]
    pub repeat_seconds: u32,
    pub max_pairs: usize,
    pub max_events: usize,
}

impl Default for BeaconParams {
    fn default() -> Self {
        BeaconParams {
            window_seconds: 86_400,
            threshold: 0.9,
            min_connections: 4,
            rescore_seconds: 300,
            repeat_seconds: default_repeat_seconds(),
            max_pairs: 200_000,
            max_events: 8_192,
        }
    }
}

/// Six hours: half the alerts' default quiet period, so a beacon that
/// goes on is reported twice within it.
fn default_repeat_seconds() -> u32 {
    6 * 3600
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Pair {
    /// (whole-second time, bytes sent), in arrival order; bytes saturate
    /// at 4 GiB, far above a beacon's.
    events: VecDeque<(u32, u32)>,
    last_scored: Option<u32>,
    /// The best score reported and when the last report was, so an
    /// unchanged beacon is not repeated at every rescore: an update needs
    /// a higher score and an hour, or [`BeaconParams::repeat_seconds`].
    reported: Option<(f64, u32)>,
    uids: SampleUids,
    /// When the record of the first uid kept was: once it is out of the
    /// window, the uid goes with it (a detection's uids are of its
    /// evidence: the first one kept for ever sent an analyst to a record
    /// a day before the window, found by a review).
    #[serde(default)]
    uid_at: u32,
    #[serde(default)]
    resp_port: PortSeen,
}

/// The responder port a beacon names, when every connection in its window
/// used it: what an analyst checks first of a beacon (443, 53, 4444) and a
/// SIEM's `destination.port`. RITA scores a pair over all its ports, and
/// events keep no port (memory), so a pair keeps the port of its newest
/// connection, and the newest time of any connection on another (records
/// come out of order: a long connection's is written when it closes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct PortSeen {
    /// None for pings (their "ports" are ICMP type and code), port 0
    /// (transports without ports) or unset.
    port: Option<u16>,
    /// The newest connection on `port`; 0 before any (or in a checkpoint
    /// from before ports were kept).
    newest: u32,
    /// The newest connection on any other port.
    others_newest: u32,
}

impl PortSeen {
    fn saw(&mut self, port: Option<u16>, t: u32) {
        if port == self.port {
            self.newest = self.newest.max(t);
        } else if t >= self.newest {
            self.others_newest = self.others_newest.max(self.newest);
            (self.port, self.newest) = (port, t);
        } else {
            self.others_newest = self.others_newest.max(t);
        }
    }

    /// The port, if every connection from `oldest` on used it.
    fn of_window(&self, oldest: u32) -> Option<u16> {
        self.port.filter(|_| oldest > self.others_newest)
    }
}

/// The streaming beacon detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BeaconDetector {
    params: BeaconParams,
    pairs: BoundedMap<(IpAddr, IpAddr), Pair>,
    /// From the model, not the checkpoint.
    #[serde(skip)]
    known: HashSet<(IpAddr, IpAddr)>,
    first_ts: Option<u32>,
    newest_ts: u32,
}

impl BeaconDetector {
    pub fn new(params: BeaconParams) -> BeaconDetector {
        BeaconDetector {
            pairs: BoundedMap::new(params.max_pairs),
            params,
            known: HashSet::new(),
            first_ts: None,
            newest_ts: 0,
        }
    }

    /// Pairs that beaconed in training: not reported.
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

    pub fn params(&self) -> &BeaconParams {
        &self.params
    }

    /// Pairs tracked now, and dropped for room so far.
    pub fn tracked(&self) -> (usize, u64) {
        (self.pairs.len(), self.pairs.evicted())
    }

    /// One conn record. Returns a detection when the pair's score reaches
    /// the threshold, an update when it has risen since it was last
    /// reported (at most one an hour of event time), and a reminder when
    /// it is still at the threshold [`BeaconParams::repeat_seconds`] after
    /// the last report (evidence `still_beaconing`).
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        if !c.answered() || c.ts > f64::from(u32::MAX) || self.known.contains(&(c.src, c.dst)) {
            return None;
        }
        let t = c.ts as u32;
        self.first_ts = Some(self.first_ts.map_or(t, |f| f.min(t)));
        self.newest_ts = self.newest_ts.max(t);
        let window_end = self.newest_ts;
        let window_start = window_end
            .saturating_sub(self.params.window_seconds)
            .max(self.first_ts.unwrap_or(0));
        let p = &self.params;
        let pair = self.pairs.touch((c.src, c.dst), Pair::default);
        if pair.resp_port.newest == 0 {
            // Fresh, or from a checkpoint from before ports were kept:
            // what it holds used ports unknown.
            let held = pair.events.iter().map(|e| e.0).max();
            pair.resp_port.others_newest = held.unwrap_or(0);
        }
        if pair.events.capacity() == 0 {
            // Room for one event only: most pairs of a flood (or of a
            // busy site) never see a second, and the default first
            // allocation holds four (#13, memory per key).
            pair.events.reserve_exact(1);
        }
        pair.events
            .push_back((t, c.orig_ip_bytes.min(f64::from(u32::MAX)) as u32));
        if pair.uid_at < window_start {
            pair.uids = SampleUids::default();
        }
        if pair.uids.is_empty() {
            pair.uids.push(c.uid.as_deref());
            pair.uid_at = t;
        }
        let port = c.resp_p.filter(|&p| p != 0 && !c.icmp);
        if pair.events.len() == 1 {
            // Nothing older in its window: start afresh.
            pair.resp_port = PortSeen::default();
        }
        pair.resp_port.saw(port, t);
        if pair.events.len() > p.max_events {
            pair.events.pop_front();
        }
        if pair.events.len() < p.min_connections
            || pair
                .last_scored
                .is_some_and(|s| t < s.saturating_add(p.rescore_seconds))
        {
            return None;
        }
        pair.last_scored = Some(t);
        pair.events.retain(|(e, _)| *e >= window_start);
        if pair.events.len() < p.min_connections {
            return None;
        }
        let mut ts: Vec<u32> = pair.events.iter().map(|e| e.0).collect();
        let mut sizes: Vec<f64> = pair.events.iter().map(|e| f64::from(e.1)).collect();
        let parts = rita::score(&mut ts, &mut sizes, window_start, window_end)?;
        let stronger =
            |(score, at): (f64, u32)| parts.score > score && t >= at.saturating_add(3600);
        let still = |(_, at): (f64, u32)| t >= at.saturating_add(p.repeat_seconds);
        if parts.score < p.threshold || pair.reported.is_some_and(|r| !stronger(r) && !still(r)) {
            return None;
        }
        let reminder = pair.reported.is_some_and(|r| !stronger(r));
        // The best score reported stays the bar for an update: a reminder
        // at a lower score would otherwise make every rise after it news.
        let best = pair
            .reported
            .map_or(parts.score, |(s, _)| s.max(parts.score));
        pair.reported = Some((best, t));
        let mut evidence = serde_json::Map::new();
        if reminder {
            evidence.insert(STILL_EVIDENCE.into(), true.into());
        }
        evidence.insert("connections".into(), ts.len().into());
        evidence.insert("window_start".into(), window_start.into());
        evidence.insert("window_end".into(), window_end.into());
        if let Ok(serde_json::Value::Object(parts)) = serde_json::to_value(parts) {
            evidence.extend(parts.into_iter().filter(|(k, _)| k != "score"));
        }
        // A beacon of pings is no application protocol (ATT&CK tells them
        // apart, `super::attack`); said by the connection that completed it.
        if c.icmp {
            evidence.insert(ICMP_EVIDENCE.into(), true.into());
        }
        Some(Detection {
            ts: c.ts,
            detection: DetectorKind::Beacon,
            module: LogKind::CONN,
            src: c.src,
            dst: Some(c.dst),
            resp_p: pair.resp_port.of_window(ts[0]),
            domain: None,
            score: parts.score,
            threshold: p.threshold,
            severity: crate::severity::Severity::Low,
            first_ts: f64::from(ts[0]),
            last_ts: f64::from(ts[ts.len() - 1]),
            uids: pair.uids.with_latest(c.uid.as_deref()),
            evidence,
            src_local: None,
        })
    }
}

/// Learns the known pairs from the training history: those with at least
/// `min_connections` answered connections. Bounded: at most
/// [`BaselineLearner::MAX_COUNTED`] pairs are counted and
/// [`super::baseline::MAX_KNOWN`] kept (the most frequent).
#[derive(Debug, Default)]
pub struct BaselineLearner {
    counts: HashMap<(IpAddr, IpAddr), u64>,
}

impl BaselineLearner {
    pub const MAX_COUNTED: usize = 1 << 20;

    pub fn observe(&mut self, src: IpAddr, dst: IpAddr, answered: bool) {
        if !answered {
            return;
        }
        if let Some(c) = self.counts.get_mut(&(src, dst)) {
            *c += 1;
        } else if self.counts.len() < Self::MAX_COUNTED {
            self.counts.insert((src, dst), 1);
        }
    }

    /// The known pairs, most frequent first (ties by address, so the same
    /// history gives the same list).
    pub fn finish(&self, params: &BeaconParams) -> Vec<(IpAddr, IpAddr)> {
        let mut known: Vec<_> = self
            .counts
            .iter()
            .filter(|(_, c)| **c >= params.min_connections as u64)
            .map(|(k, c)| (*c, *k))
            .collect();
        known.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        known.truncate(super::baseline::MAX_KNOWN);
        known.into_iter().map(|(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::{conn, ip};

    /// A jittered beacon among random traffic is detected within hours,
    /// once; refused scanner connections never are.
    #[test]
    fn a_beacon_is_found_and_scanners_are_not() {
        let mut d = BeaconDetector::new(BeaconParams::default());
        let start = 1_713_571_200.0;
        let (bot, c2) = (ip("10.0.0.5"), ip("203.0.113.7"));
        let mut state = 7u64;
        let mut rnd = |m: u64| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) % m
        };
        let mut found = Vec::new();
        let mut t = start;
        while t < start + 2.0 * 86_400.0 {
            if let Some(det) = d.observe(&conn(bot, c2, t, 1049.0 + rnd(5) as f64, true)) {
                found.push((t - start, det));
            }
            // A scanner every 60 s, refused; a browsing host at random.
            for k in 0..5 {
                let s = t + f64::from(k) * 60.0;
                assert!(d
                    .observe(&conn(ip("45.1.2.3"), bot, s, 60.0, false))
                    .is_none());
                let web = ip(&format!("198.51.100.{}", rnd(200)));
                d.observe(&conn(
                    ip("10.0.0.9"),
                    web,
                    s + rnd(60) as f64,
                    rnd(50_000) as f64,
                    true,
                ));
            }
            t += 200.0 + rnd(151) as f64;
        }
        assert!(!found.is_empty());
        let (after, first) = &found[0];
        assert_eq!((first.src, first.dst), (bot, Some(c2)));
        assert_eq!(first.resp_p, Some(80), "the port all its connections used");
        assert!(*after <= 2.0 * 3600.0, "found after {after} s");
        assert!(
            found.iter().all(|(_, f)| (f.src, f.dst) == (bot, Some(c2))),
            "{found:?}"
        );
        assert!(
            found.len() <= 48,
            "at most one report an hour: {}",
            found.len()
        );
        let still = |d: &Detection| d.still_going();
        assert!(
            found.windows(2).all(|w| if still(&w[1].1) {
                w[1].0 >= w[0].0 + 6.0 * 3600.0
            } else {
                w[1].1.score > w[0].1.score && w[1].0 >= w[0].0 + 3600.0
            }),
            "updates when stronger, an hour apart, or still beaconing six hours on"
        );
        // The beacon goes on for two days: it is never silent for longer
        // than the reminder (plus a rescore and a gap between its
        // connections), so its alert, closed after 12 quiet hours, stays
        // open while it lasts.
        let silent = found
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .chain(std::iter::once(2.0 * 86_400.0 - found.last().unwrap().0))
            .fold(0.0, f64::max);
        assert!(silent <= 6.0 * 3600.0 + 700.0, "silent for {silent} s");
        assert!(found.iter().any(|(_, d)| still(d)), "{found:?}");
    }

    /// A detection's uids are of its window: over three days of a beacon,
    /// each one's first uid is of a record in the window its evidence
    /// spans (the pair's first uid was kept for ever: a day before it).
    #[test]
    fn a_detection_s_uids_are_of_its_window() {
        let mut d = BeaconDetector::new(BeaconParams::default());
        let start = 1_713_571_200.0;
        let mut found = Vec::new();
        let mut t = start;
        let mut i = 0u32;
        while t < start + 3.0 * 86_400.0 {
            let mut c = conn(ip("10.0.0.5"), ip("203.0.113.7"), t, 1049.0, true);
            c.uid = Some(format!("C{}", t as u64).into());
            found.extend(d.observe(&c));
            i += 1;
            t += 250.0 + f64::from(i % 7) * 10.0;
        }
        assert!(found.len() > 3, "{found:?}");
        let mut later = 0;
        for det in &found {
            let at = |u: &String| u[1..].parse::<f64>().unwrap();
            let window_start = det.evidence["window_start"].as_f64().unwrap();
            let first = at(&det.uids[0]);
            assert!(
                (window_start..=det.ts).contains(&first),
                "uid of {first} outside {window_start}..{}: {det:?}",
                det.ts
            );
            later += usize::from(window_start > start);
        }
        assert!(later > 0, "no detection of a window after the first");
    }

    /// Conn records arrive out of time order (written when connections
    /// close): a beacon whose records arrive minutes out of order is found
    /// within a quarter hour of the in-order run and scores as high, and a saved and restored detector
    /// continues exactly as one that never stopped.
    #[test]
    fn reordering_within_minutes_and_a_restore_change_nothing() {
        let (bot, c2) = (ip("10.0.0.5"), ip("203.0.113.7"));
        let mut events: Vec<f64> = (0..400)
            .map(|i| 1_700_000_000.0 + f64::from(i) * 300.0 + f64::from(i * 37 % 41))
            .collect();
        let run = |events: &[f64]| -> Vec<(f64, f64)> {
            let mut d = BeaconDetector::new(BeaconParams::default());
            events
                .iter()
                .filter_map(|&t| d.observe(&conn(bot, c2, t, 700.0, true)))
                .map(|x| (x.ts, x.score))
                .collect()
        };
        let in_order = run(&events);
        // Every third record arrives 400 s late (its connection closed
        // later): records come in out of time order.
        let mut arrival: Vec<(f64, f64)> = events
            .iter()
            .enumerate()
            .map(|(i, &t)| (if i % 3 == 0 { t + 400.0 } else { t }, t))
            .collect();
        arrival.sort_by(|a, b| a.0.total_cmp(&b.0));
        events = arrival.into_iter().map(|(_, t)| t).collect();
        let shuffled = run(&events);
        assert!(!in_order.is_empty() && !shuffled.is_empty());
        let best = |v: &[(f64, f64)]| v.iter().map(|x| x.1).fold(0.0, f64::max);
        assert!(
            (best(&in_order) - best(&shuffled)).abs() < 0.01,
            "{in_order:?} {shuffled:?}"
        );
        assert!((shuffled[0].0 - in_order[0].0).abs() <= 900.0);

        // Save halfway, restore, go on: the same detections as without.
        let mut whole = BeaconDetector::new(BeaconParams::default());
        let mut first = BeaconDetector::new(BeaconParams::default());
        let (a, b) = events.split_at(events.len() / 2);
        let mut expected = Vec::new();
        for &t in a.iter().chain(b) {
            expected.extend(whole.observe(&conn(bot, c2, t, 700.0, true)));
        }
        let mut got = Vec::new();
        for &t in a {
            got.extend(first.observe(&conn(bot, c2, t, 700.0, true)));
        }
        let saved = serde_json::to_string(&first).unwrap();
        let mut restored: BeaconDetector = serde_json::from_str(&saved).unwrap();
        for &t in b {
            got.extend(restored.observe(&conn(bot, c2, t, 700.0, true)));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn known_beacons_are_not_reported_and_memory_is_capped() {
        let params = BeaconParams {
            max_pairs: 10,
            ..BeaconParams::default()
        };
        let (ntp_client, ntp) = (ip("10.0.0.1"), ip("91.189.91.157"));
        let mut d = BeaconDetector::new(params).with_known([(ntp_client, ntp)]);
        for i in 0..1000 {
            let t = 1_700_000_000.0 + f64::from(i) * 1024.0;
            assert!(d.observe(&conn(ntp_client, ntp, t, 76.0, true)).is_none());
            d.observe(&conn(
                ip(&format!("10.1.{}.{}", i / 250, i % 250)),
                ntp,
                t,
                1.0,
                true,
            ));
        }
        let (pairs, evicted) = d.tracked();
        assert!(pairs <= 10 && evicted > 900, "{pairs} {evicted}");
    }

    /// A beacon names its responder port when every connection in its
    /// window used it; a pair over several ports, of pings (whose "ports"
    /// are ICMP type and code) or of port 0 names none. One connection to
    /// another port names none only while it is in the window, and a
    /// checkpoint from before names a port once a window has passed.
    #[test]
    fn a_beacon_names_its_port_only_when_its_window_used_one() {
        let (a, b) = (ip("10.0.0.5"), ip("203.0.113.7"));
        let t0 = 1_713_571_200.0;
        let every_5_min =
            |d: &mut BeaconDetector, from: u32, to: u32, port: &dyn Fn(u32) -> u16, icmp: bool| {
                (from..to)
                    .filter_map(|i| {
                        let mut c = conn(a, b, t0 + 300.0 * f64::from(i), 900.0, true);
                        c.resp_p = Some(port(i));
                        c.icmp = icmp;
                        d.observe(&c)
                    })
                    .collect::<Vec<Detection>>()
            };
        let first = |port: &dyn Fn(u32) -> u16, icmp: bool| {
            let mut d = BeaconDetector::new(BeaconParams::default());
            every_5_min(&mut d, 0, 100, port, icmp).remove(0)
        };
        assert_eq!(first(&|_| 4444, false).resp_p, Some(4444));
        assert_eq!(first(&|i| 80 + (i % 2) as u16, false).resp_p, None);
        assert_eq!(first(&|_| 0, true).resp_p, None, "pings");
        assert_eq!(first(&|_| 0, false).resp_p, None, "no transport port");

        // One connection to port 80, then two days to 443: named once the
        // port-80 connection has left the window.
        let mut d = BeaconDetector::new(BeaconParams::default());
        let found = every_5_min(&mut d, 0, 576, &|i| if i == 0 { 80 } else { 443 }, false);
        assert_eq!(found[0].resp_p, None, "{:?}", found[0]);
        assert_eq!(found.last().unwrap().resp_p, Some(443));

        // A checkpoint from before keeps its events but has no port.
        let mut d = BeaconDetector::new(BeaconParams::default());
        every_5_min(&mut d, 0, 3, &|_| 8080, false);
        let mut saved = serde_json::to_value(&d).unwrap();
        let text = saved.to_string();
        assert!(text.contains("\"port\":8080"), "{text}");
        for entry in saved["pairs"]["entries"].as_array_mut().unwrap() {
            let pair = entry[1].as_object_mut().unwrap();
            pair.remove("resp_port");
        }
        let mut old: BeaconDetector = serde_json::from_value(saved).unwrap();
        let found = every_5_min(&mut old, 3, 576, &|_| 80, false);
        assert_eq!(found[0].resp_p, None, "3 connections to 8080 in its window");
        assert_eq!(found.last().unwrap().resp_p, Some(80));

        // Out of order: a long connection to port 80, written a day after
        // it began, among two days to 443, then connections to 80: none
        // named while 443's are in the window.
        let mut d = BeaconDetector::new(BeaconParams::default());
        every_5_min(&mut d, 0, 600, &|_| 443, false);
        let mut late = conn(a, b, t0 + 300.0 * 600.0 - 86_400.0, 900.0, true);
        late.resp_p = Some(80);
        d.observe(&late);
        let found = every_5_min(&mut d, 600, 700, &|_| 80, false);
        assert!(!found.is_empty());
        assert!(found.iter().all(|f| f.resp_p.is_none()), "{found:?}");

        // The same second on two ports is not one port.
        let mut seen = PortSeen::default();
        seen.saw(Some(80), 1_000);
        seen.saw(Some(443), 1_000);
        assert_eq!(seen.of_window(1_000), None);
        assert_eq!(seen.of_window(1_001), Some(443));
    }
}
