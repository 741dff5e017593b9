//! Scans: a source that tries many hosts (a sweep) or many ports of one
//! host (a port scan) within minutes, counted over unanswered attempts
//! only (refused, never answered, half open), so a busy client that talks
//! to hundreds of servers is not a scanner.
//!
//! By default only sources inside the site's networks are watched: an
//! internal host scanning is discovery by an intruder or a worm, while scans from
//! the internet hitting an exposed sensor are its weather (RITA's
//! `missing_host` has dozens a day). `scan_external` watches all.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::ConnFacts;
use crate::features::LocalNets;
use crate::log_kind::LogKind;

/// Settings, with the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanParams {
    /// The tumbling window per source, in seconds of event time.
    pub window_seconds: u32,
    /// Distinct hosts tried without answer in a window that make a sweep.
    pub sweep_hosts: usize,
    /// Distinct ports of one host tried without answer that make a scan.
    pub scan_ports: usize,
    /// Watch sources outside the site's networks too.
    pub scan_external: bool,
    pub max_sources: usize,
}

impl Default for ScanParams {
    fn default() -> Self {
        ScanParams {
            window_seconds: 300,
            sweep_hosts: 64,
            scan_ports: 64,
            scan_external: false,
            max_sources: 100_000,
        }
    }
}

/// The most distinct (host, port) attempts kept per source and window:
/// enough for a sweep and a port scan at the default thresholds many
/// times over, and a bound on what one scanner costs (40 KiB).
const MAX_ATTEMPTS: usize = 2048;

/// What one source tried in its current window: its distinct (host, port)
/// attempts in one short list, searched linearly (a list costs far less
/// memory per source than hash sets; scanners are few, and their list is
/// capped).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Source {
    window_start: Option<f64>,
    /// Distinct (host, port) attempts; port 0 for ICMP.
    attempts: Vec<Attempt>,
    hosts: u32,
    swept: bool,
    scanned: bool,
    /// The counts last reported (0: at the threshold, from a checkpoint
    /// from before these were kept).
    #[serde(default)]
    swept_at: u16,
    #[serde(default)]
    scanned_at: u16,
    /// The host of the port scan reported (a hash; 0: unknown, from a
    /// checkpoint from before): only its growth is reported again.
    #[serde(default)]
    scanned_host: u32,
    uids: SampleUids,
}

/// The evidence key of a detection that says a scan reported in its
/// window has doubled: no new scan for alerts to count, but its size.
pub const GROWN_EVIDENCE: &str = "still_scanning";

/// A host as 32 bits, never 0 (0 is "unknown"), from its address's
/// bytes.
fn host_hash(host: IpAddr) -> u32 {
    let h = match host {
        IpAddr::V4(a) => crate::fnv::fnv1a64(&a.octets()),
        IpAddr::V6(a) => crate::fnv::fnv1a64(&a.octets()),
    };
    ((h >> 32) as u32 ^ h as u32).max(1)
}

/// Whether `count` is worth a report: the threshold reached, or twice
/// what was reported (`at`, or the threshold if reported before `at` was
/// kept). Some(true): a report of growth.
fn report(count: usize, threshold: usize, reported: bool, at: u16) -> Option<bool> {
    if count < threshold {
        return None;
    }
    if !reported {
        return Some(false);
    }
    (count >= 2 * threshold.max(usize::from(at))).then_some(true)
}

/// A host and port tried, and when: whole seconds after the window's
/// start, saturating at 18 h (a port scan's detection starts at its
/// host's first attempt, not the source's). A checkpoint from before the
/// time holds `[host, port]`: its attempts count from the window's start.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Attempt(IpAddr, u16, #[serde(default)] u16);

/// The streaming scan detector over conn records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanDetector {
    params: ScanParams,
    local: LocalNets,
    sources: BoundedMap<IpAddr, Source>,
}

impl ScanDetector {
    pub fn new(params: ScanParams, local: LocalNets) -> ScanDetector {
        ScanDetector {
            sources: BoundedMap::new(params.max_sources),
            params,
            local,
        }
    }

    /// Takes the settings and site of a freshly built detector, keeping
    /// this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.local = fresh.local;
    }

    /// One conn record; each source is reported once per window and kind
    /// when it reaches the threshold, and again each time its count
    /// doubles (at most six times: attempts are capped at 2,048): a
    /// sweep of 1,000 hosts was reported as one of 64, a medium
    /// detection; at four times the threshold it is high.
    pub fn observe(&mut self, c: &ConnFacts) -> Option<Detection> {
        if !c.unanswered
            || !(self.params.scan_external || self.local.contains(c.src))
            || self.local.is_broadcast(c.dst)
            || c.icmp && !is_echo_request(c.orig_p)
        {
            return None;
        }
        let p = &self.params;
        let s = self.sources.touch(c.src, Source::default);
        let window_start = match s.window_start {
            Some(start) if c.ts < start + f64::from(p.window_seconds) => start,
            _ => {
                *s = Source {
                    window_start: Some(c.ts),
                    ..Source::default()
                };
                c.ts
            }
        };
        s.uids.push(c.uid.as_deref());
        // An ICMP "port" is a message code: never a port scan.
        let port = if c.icmp { 0 } else { c.resp_p.unwrap_or(0) };
        let mut ports_of_dst = 0;
        let tried = |a: &Attempt| (a.0, a.1) == (c.dst, port);
        if !s.attempts.iter().any(tried) && s.attempts.len() < MAX_ATTEMPTS {
            if !s.attempts.iter().any(|a| a.0 == c.dst) {
                s.hosts += 1;
            }
            if s.attempts.capacity() == 0 {
                // Room for one attempt only: most sources try one host
                // in a window, and the default first allocation holds
                // four (#13, memory per key).
                s.attempts.reserve_exact(1);
            }
            let at = (c.ts - window_start).clamp(0.0, f64::from(u16::MAX)) as u16;
            s.attempts.push(Attempt(c.dst, port, at));
        }
        if !c.icmp && c.resp_p.is_some() {
            ports_of_dst = s.attempts.iter().filter(|a| a.0 == c.dst).count();
        }
        let count = |n: usize| u16::try_from(n).unwrap_or(u16::MAX);
        // A port scan is of one host: another host's ports, after it, are
        // not its growth (they read as "still scanning" a scan never
        // reported), and are not reported: one port scan a window.
        // Hashed only once the port count is worth a report: not for every
        // unanswered attempt.
        let same_host =
            |s: &Source| !s.scanned || s.scanned_host == 0 || s.scanned_host == host_hash(c.dst);
        let (kind, score, threshold, dst, grown) = if let Some(grown) =
            report(ports_of_dst, p.scan_ports, s.scanned, s.scanned_at).filter(|_| same_host(s))
        {
            s.scanned = true;
            s.scanned_at = count(ports_of_dst);
            s.scanned_host = host_hash(c.dst);
            (
                DetectorKind::PortScan,
                ports_of_dst,
                p.scan_ports,
                Some(c.dst),
                grown,
            )
        } else if let Some(grown) = report(s.hosts as usize, p.sweep_hosts, s.swept, s.swept_at) {
            s.swept = true;
            s.swept_at = count(s.hosts as usize);
            (
                DetectorKind::HostSweep,
                s.hosts as usize,
                p.sweep_hosts,
                None,
                grown,
            )
        } else {
            return None;
        };
        let mut evidence = serde_json::Map::new();
        evidence.insert("window_seconds".into(), p.window_seconds.into());
        if grown {
            evidence.insert(GROWN_EVIDENCE.into(), true.into());
        }
        // A port scan is of one host: its evidence, first time and uids
        // are that host's. (They were the source's whole window: another
        // host's connection, a start minutes before the first probe of
        // this one, and every host the source tried.)
        let (first_ts, uids) = if kind == DetectorKind::PortScan {
            let at = s
                .attempts
                .iter()
                .filter(|a| a.0 == c.dst)
                .map(|a| a.2)
                .min();
            let first = window_start + f64::from(at.unwrap_or(0));
            // Said in words beside the score: the ports of this host, and
            // every host the source tried in the window (a review read a
            // scan of eight hosts as a scan of one).
            evidence.insert("distinct_ports".into(), ports_of_dst.into());
            evidence.insert("hosts_tried_in_window".into(), s.hosts.into());
            (first, c.uid.iter().map(|u| u.to_string()).collect())
        } else {
            evidence.insert("distinct_hosts".into(), s.hosts.into());
            (window_start, s.uids.with_latest(c.uid.as_deref()))
        };
        if let Some(port) = c.resp_p {
            evidence.insert("last_port".into(), port.into());
        }
        Some(Detection {
            ts: c.ts,
            detection: kind,
            module: LogKind::CONN,
            src: c.src,
            dst,
            resp_p: None,
            domain: None,
            score: score as f64,
            threshold: threshold as f64,
            severity: crate::severity::Severity::Low,
            first_ts,
            last_ts: c.ts,
            uids,
            evidence,
            src_local: Some(self.local.contains(c.src)),
        })
    }
}

/// An ICMP echo request (ping) of IPv4 (type 8) or IPv6 (128): the only
/// ICMP a sweep is made of. Neighbour discovery (IPv6 types 133-137)
/// reaches every host of a link by design.
fn is_echo_request(icmp_type: Option<u16>) -> bool {
    matches!(icmp_type, Some(8 | 128))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::{conn, ip};

    fn refused(src: &str, dst: &str, port: u16, ts: f64) -> ConnFacts {
        let mut c = conn(ip(src), ip(dst), ts, 60.0, false);
        c.resp_p = Some(port);
        c.unanswered = true;
        c
    }

    fn site() -> LocalNets {
        LocalNets::parse(&["10.0.0.0/8"]).unwrap()
    }

    /// Found once at the threshold, then said again (a reminder for the
    /// alerts, with the new size) each time the count doubles: the SOC
    /// review's sweep of 130 hosts was reported as one of 64.
    #[test]
    fn a_port_scan_and_a_sweep_by_a_local_host_are_found_once_and_told_as_they_grow() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let t = 1_700_000_000.0;
        let scan: Vec<_> = (0..1000u16)
            .filter_map(|p| d.observe(&refused("10.0.0.66", "10.0.0.1", p, t + f64::from(p) * 0.1)))
            .collect();
        let scores: Vec<f64> = scan.iter().map(|d| d.score).collect();
        assert_eq!(scores, [64.0, 128.0, 256.0, 512.0], "{scan:?}");
        assert!(scan
            .iter()
            .all(|d| d.detection == DetectorKind::PortScan && d.dst == Some(ip("10.0.0.1"))));
        let grown: Vec<bool> = scan.iter().map(|d| d.still_going()).collect();
        assert_eq!(grown, [false, true, true, true]);
        // At four times the threshold it is graded high.
        let graded: Vec<_> = scan.iter().map(|d| d.graded()).collect();
        use crate::severity::Severity::{High, Medium};
        assert_eq!(graded, [Medium, Medium, High, High]);
        let sweep: Vec<_> = (0..250u8)
            .filter_map(|h| d.observe(&refused("10.0.0.77", &format!("10.0.5.{h}"), 445, t)))
            .collect();
        let scores: Vec<f64> = sweep.iter().map(|d| d.score).collect();
        assert_eq!(scores, [64.0, 128.0]);
        assert!(sweep.iter().all(|d| d.detection == DetectorKind::HostSweep));
        assert_eq!(sweep[1].evidence["distinct_hosts"], 128);
        // A source saved before the counts were kept was reported at the
        // threshold: its next report is at twice it.
        let (swept, swept_at) = (true, 0);
        assert_eq!(report(127, 64, swept, swept_at), None);
        assert_eq!(report(128, 64, swept, swept_at), Some(true));
    }

    /// A port scan's detection is its host's: it starts at the first
    /// probe of that host and names a connection to it, even when the
    /// source tried another host first in the window.
    #[test]
    fn a_port_scan_is_told_by_its_own_hosts_attempts() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let t = 1_700_000_000.0;
        let mut other = refused("10.0.0.66", "192.168.1.205", 443, t);
        other.uid = Some("COther".into());
        assert!(d.observe(&other).is_none());
        let found: Vec<_> = (0..100u16)
            .filter_map(|p| {
                let mut c = refused("10.0.0.66", "10.0.2.21", p, t + 136.0 + f64::from(p) * 0.1);
                c.uid = Some(format!("CProbe{p}").into());
                d.observe(&c)
            })
            .collect();
        assert_eq!(found.len(), 1, "{found:?}");
        let scan = &found[0];
        assert_eq!(scan.first_ts, t + 136.0);
        assert_eq!(scan.uids, ["CProbe63"]);
        assert!(
            !scan.evidence.contains_key("distinct_hosts"),
            "{:?}",
            scan.evidence
        );
        // Its ports, and the hosts the source tried in the window, said.
        assert_eq!(scan.evidence["distinct_ports"], 64, "{:?}", scan.evidence);
        assert_eq!(
            scan.evidence["hosts_tried_in_window"], 2,
            "{:?}",
            scan.evidence
        );
        // A source saved before attempts had their time reads back.
        let old = r#"{"window_start":1.0,"attempts":[["10.0.0.1",80]],"hosts":1,"swept":false,"scanned":false,"uids":{}}"#;
        let s: Source = serde_json::from_str(old).unwrap();
        assert_eq!(s.attempts[0].2, 0);
    }

    #[test]
    fn busy_clients_and_internet_scanners_are_not_scans() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let t = 1_700_000_000.0;
        for h in 0..250u8 {
            // Answered: a busy client.
            let mut c = conn(
                ip("10.0.0.8"),
                ip(&format!("198.51.100.{h}")),
                t,
                500.0,
                true,
            );
            c.resp_p = Some(443);
            assert!(d.observe(&c).is_none());
            // Refused, but from the internet.
            assert!(d
                .observe(&refused("45.1.2.3", "10.0.0.1", u16::from(h), t))
                .is_none());
        }
        let mut all = ScanDetector::new(
            ScanParams {
                scan_external: true,
                ..ScanParams::default()
            },
            site(),
        );
        let n = (0..250u16)
            .filter_map(|p| all.observe(&refused("45.1.2.3", "10.0.0.1", p, t)))
            .filter(|d| !d.still_going())
            .count();
        assert_eq!(n, 1);
    }

    #[test]
    fn neighbour_discovery_and_multicast_are_not_sweeps_but_pings_are() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let icmp = |t: u16, h: u8| {
            let mut c = refused("10.0.0.1", &format!("10.0.7.{h}"), 0, 1e9);
            (c.icmp, c.orig_p) = (true, Some(t));
            c
        };
        let nd = (0..250u8).filter_map(|h| d.observe(&icmp(135, h))).count();
        let mcast = (0..250u16)
            .filter_map(|p| d.observe(&refused("10.0.0.2", "224.0.0.251", p, 1e9)))
            .count();
        assert_eq!((nd, mcast), (0, 0));
        let pings: Vec<_> = (0..250u8)
            .filter_map(|h| d.observe(&icmp(8, h)))
            .filter(|d| !d.still_going())
            .collect();
        assert_eq!(pings.len(), 1);
        assert_eq!(pings[0].detection, DetectorKind::HostSweep);
    }

    /// A flood of spoofed scanners (a million sources) holds at most the
    /// cap's worth of memory.
    #[test]
    fn a_flood_of_sources_is_held_to_the_cap() {
        let params = ScanParams {
            max_sources: 10_000,
            ..ScanParams::default()
        };
        let mut d = ScanDetector::new(params, site());
        let ((), peak) = crate::zeek::testutil::peak_heap(|| {
            for i in 0..1_000_000u32 {
                let src = std::net::Ipv4Addr::from(0x0a00_0000 | (i & 0xff_ffff));
                d.observe(&refused(
                    &src.to_string(),
                    "10.0.0.1",
                    445,
                    1e9 + f64::from(i),
                ));
            }
        });
        // About 136 bytes per source (benches/detect_memory.rs), and the
        // table's headroom: well under 8 MiB for 10,000.
        assert!(peak < 8 << 20, "{peak} bytes");
    }

    /// A port scan of a second host in the window is not the first's
    /// growth (the review found it reported as "still scanning" a scan
    /// never reported): one port scan a window, grown only on its host.
    #[test]
    fn a_port_scan_of_another_host_is_not_the_first_one_s_growth() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let t = 1_700_000_000.0;
        let mut out: Vec<_> = (0..64u16)
            .filter_map(|p| d.observe(&refused("10.0.0.66", "10.0.0.1", p, t)))
            .collect();
        out.extend(
            (0..128u16).filter_map(|p| d.observe(&refused("10.0.0.66", "10.0.0.2", p, t + 1.0))),
        );
        out.extend(
            (64..128u16).filter_map(|p| d.observe(&refused("10.0.0.66", "10.0.0.1", p, t + 2.0))),
        );
        let seen: Vec<_> = (out.iter())
            .map(|d| (d.dst, d.score, d.still_going()))
            .collect();
        let one = Some(ip("10.0.0.1"));
        assert_eq!(seen, [(one, 64.0, false), (one, 128.0, true)]);
    }

    #[test]
    fn a_slow_scan_spread_over_windows_is_not_reported() {
        let mut d = ScanDetector::new(ScanParams::default(), site());
        let found = (0..1000u16)
            .filter_map(|p| {
                d.observe(&refused(
                    "10.0.0.66",
                    "10.0.0.1",
                    p,
                    1e9 + f64::from(p) * 10.0,
                ))
            })
            .count();
        assert_eq!(found, 0, "30 ports per 5-minute window stay under 64");
    }
}
