//! DNS as a channel: tunnels and C2 over DNS encode data in the names they
//! ask for, so one registered domain collects hundreds of distinct names
//! within the hour (`<data>.t.example.com`); algorithmically generated
//! domains show as a host whose queries fail (NXDOMAIN) by the dozen.
//!
//! The registered domain comes from the public suffix list (`psl`, which
//! compiles the list in): `a.b.example.co.uk` counts under
//! `example.co.uk`. Reverse lookups (`.arpa`) are not counted: a resolver
//! asks for thousands of them. Domains that had as many names in the
//! training history (CDNs, DNS blocklists, telemetry) are the site's
//! normal: the model carries them and they are not reported.

use std::collections::HashSet;
use std::net::IpAddr;

use compact_str::CompactString;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

use super::bounded::BoundedMap;
use super::detection::{Detection, DetectorKind, SampleUids};
use super::observation::DnsFacts;
use crate::log_kind::LogKind;

/// Settings, with the defaults documented in the README.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsTunnelParams {
    /// The tumbling window per domain, in seconds of event time (1 h).
    pub window_seconds: u32,
    /// Distinct names under one registered domain in a window that make a
    /// tunnel.
    pub distinct_names: usize,
    /// The tumbling window per source for NXDOMAIN bursts (5 min).
    pub nxdomain_window_seconds: u32,
    /// NXDOMAIN answers to one source in a window that make a burst.
    pub nxdomain_answers: u64,
    pub max_domains: usize,
    pub max_sources: usize,
}

impl Default for DnsTunnelParams {
    fn default() -> Self {
        DnsTunnelParams {
            window_seconds: 3600,
            distinct_names: 200,
            nxdomain_window_seconds: 300,
            nxdomain_answers: 100,
            max_domains: 100_000,
            max_sources: 100_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Domain {
    window_start: Option<f64>,
    /// Hashes of the distinct names (the part left of the domain), up to
    /// the threshold; a set once there are more than a few.
    names: Names,
    name_bytes: u64,
    first_source: Option<IpAddr>,
    more_sources: bool,
    reported: bool,
    uids: SampleUids,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Source {
    window_start: Option<f64>,
    nxdomains: u64,
    /// The hash of the name of the last NXDOMAIN counted: a resolver's
    /// retry of it, or its answer logged twice, is not counted again.
    #[serde(default)]
    last_name: u64,
    reported: bool,
    uids: SampleUids,
}

/// The streaming DNS tunnel and NXDOMAIN burst detector over dns records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsTunnelDetector {
    params: DnsTunnelParams,
    domains: BoundedMap<CompactString, Domain>,
    sources: BoundedMap<IpAddr, Source>,
    /// From the model, not the checkpoint.
    #[serde(skip)]
    known: HashSet<Box<str>>,
}

/// The registered domain of a (lower-case) query name, and the part left
/// of it; `None` for reverse lookups and names without a registrable
/// domain.
pub fn split_registered(query: &str) -> Option<(&str, &str)> {
    if query.ends_with(".arpa") || query == "arpa" {
        return None;
    }
    let domain = psl::domain_str(query)?;
    // The list may hand back the domain without a dot the query ends
    // with: split on what the query really ends with, never by index.
    let sub = query.strip_suffix(domain)?.trim_end_matches('.');
    Some((domain, sub))
}

/// Distinct name hashes: a short list while there are few (most domains
/// see a handful of names), a set beyond. The set is boxed: few domains
/// need it, and inline it would make every domain's entry 8 bytes larger
/// (#13, memory per key).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Names {
    Few(Vec<u64>),
    Many(Box<FxHashSet<u64>>),
}

impl Default for Names {
    fn default() -> Self {
        Names::Few(Vec::new())
    }
}

impl Names {
    const FEW: usize = 16;

    fn len(&self) -> usize {
        match self {
            Names::Few(v) => v.len(),
            Names::Many(s) => s.len(),
        }
    }

    /// True if `h` is new.
    fn insert(&mut self, h: u64) -> bool {
        match self {
            Names::Few(v) if v.contains(&h) => false,
            Names::Few(v) if v.len() < Self::FEW => {
                if v.capacity() == 0 {
                    // Room for one name only: most domains see one, and
                    // the default first allocation holds four.
                    v.reserve_exact(1);
                }
                v.push(h);
                true
            }
            Names::Few(v) => {
                let mut set: FxHashSet<u64> = v.drain(..).collect();
                set.insert(h);
                *self = Names::Many(Box::new(set));
                true
            }
            Names::Many(s) => s.insert(h),
        }
    }
}

/// A stable hash of a name: FxHash is the same in every run and build,
/// so a checkpointed set means the same after a restart.
fn name_hash(s: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = rustc_hash::FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

impl DnsTunnelDetector {
    pub fn new(params: DnsTunnelParams) -> DnsTunnelDetector {
        DnsTunnelDetector {
            domains: BoundedMap::new(params.max_domains),
            sources: BoundedMap::new(params.max_sources),
            params,
            known: HashSet::new(),
        }
    }

    pub fn with_known(mut self, known: impl IntoIterator<Item = String>) -> Self {
        self.known.extend(known.into_iter().map(Into::into));
        self
    }

    /// Takes the settings and known entities of a freshly built detector
    /// (from the model now in use), keeping this one's state.
    pub fn take_baseline(&mut self, fresh: Self) {
        self.params = fresh.params;
        self.known = fresh.known;
    }

    /// One dns record: up to one detection of each kind.
    pub fn observe(&mut self, d: &DnsFacts) -> Vec<Detection> {
        let mut out = Vec::new();
        out.extend(self.nxdomain(d));
        out.extend(self.names(d));
        out
    }

    fn names(&mut self, d: &DnsFacts) -> Option<Detection> {
        let query = d.query.as_deref()?;
        let (domain, sub) = split_registered(query)?;
        if sub.is_empty() || self.known.contains(domain) {
            return None;
        }
        let p = &self.params;
        let e = self
            .domains
            .touch(CompactString::from(domain), Domain::default);
        let start = match e.window_start {
            Some(s) if d.ts < s + f64::from(p.window_seconds) => s,
            _ => {
                *e = Domain {
                    window_start: Some(d.ts),
                    ..Domain::default()
                };
                d.ts
            }
        };
        e.uids.push(d.uid.as_deref());
        if e.names.len() < p.distinct_names && e.names.insert(name_hash(sub)) {
            e.name_bytes += sub.len() as u64;
        }
        match e.first_source {
            None => e.first_source = Some(d.src),
            Some(s) if s != d.src => e.more_sources = true,
            Some(_) => {}
        }
        if e.reported || e.names.len() < p.distinct_names {
            return None;
        }
        e.reported = true;
        let mut evidence = serde_json::Map::new();
        evidence.insert("window_seconds".into(), p.window_seconds.into());
        evidence.insert(
            "sources".into(),
            if e.more_sources { "several" } else { "one" }.into(),
        );
        evidence.insert(
            "mean_name_length".into(),
            (e.name_bytes as f64 / e.names.len() as f64).into(),
        );
        evidence.insert("example".into(), query.into());
        Some(Detection {
            ts: d.ts,
            detection: DetectorKind::DnsTunnel,
            module: LogKind::DNS,
            src: d.src,
            dst: None,
            resp_p: None,
            domain: Some(domain.to_owned()),
            score: e.names.len() as f64,
            threshold: p.distinct_names as f64,
            severity: crate::severity::Severity::Low,
            first_ts: start,
            last_ts: d.ts,
            uids: e.uids.with_latest(d.uid.as_deref()),
            evidence,
            src_local: None,
        })
    }

    /// A burst of names that do not exist (a DGA's guesses). Reverse
    /// lookups (`.arpa`) are not counted: a host resolving the addresses
    /// of its peers, or of a sweep, gets NXDOMAIN for most of them, and
    /// that is no domain generation.
    fn nxdomain(&mut self, d: &DnsFacts) -> Option<Detection> {
        if d.rcode != Some(3) {
            return None;
        }
        let name = d.query.as_deref().unwrap_or_default();
        if name == "arpa" || name.ends_with(".arpa") {
            return None;
        }
        let name = name_hash(name);
        let p = &self.params;
        let s = self.sources.touch(d.src, Source::default);
        let start = match s.window_start {
            Some(st) if d.ts < st + f64::from(p.nxdomain_window_seconds) => st,
            _ => {
                *s = Source {
                    window_start: Some(d.ts),
                    ..Source::default()
                };
                d.ts
            }
        };
        if s.nxdomains > 0 && s.last_name == name {
            return None;
        }
        s.last_name = name;
        s.nxdomains += 1;
        s.uids.push(d.uid.as_deref());
        if s.reported || s.nxdomains < p.nxdomain_answers {
            return None;
        }
        s.reported = true;
        let mut evidence = serde_json::Map::new();
        evidence.insert("window_seconds".into(), p.nxdomain_window_seconds.into());
        if let Some(q) = &d.query {
            evidence.insert("last_query".into(), q.to_string().into());
        }
        Some(Detection {
            ts: d.ts,
            detection: DetectorKind::NxdomainBurst,
            module: LogKind::DNS,
            src: d.src,
            dst: None,
            resp_p: None,
            domain: None,
            score: s.nxdomains as f64,
            threshold: p.nxdomain_answers as f64,
            severity: crate::severity::Severity::Low,
            first_ts: start,
            last_ts: d.ts,
            uids: s.uids.with_latest(d.uid.as_deref()),
            evidence,
            src_local: None,
        })
    }
}

/// Learns the domains with many names in the training history: those
/// that reach half the threshold in a window.
#[derive(Debug)]
pub struct DnsTunnelLearner {
    detector: DnsTunnelDetector,
    known: Vec<String>,
}

impl DnsTunnelLearner {
    pub fn new(params: &DnsTunnelParams) -> DnsTunnelLearner {
        let half = DnsTunnelParams {
            distinct_names: (params.distinct_names / 2).max(1),
            ..params.clone()
        };
        DnsTunnelLearner {
            detector: DnsTunnelDetector::new(half),
            known: Vec::new(),
        }
    }

    pub fn observe(&mut self, d: &DnsFacts) {
        if let Some(found) = self.detector.names(d) {
            if self.known.len() < super::baseline::MAX_KNOWN {
                self.known.extend(found.domain);
            }
        }
    }

    pub fn finish(mut self) -> Vec<String> {
        self.known.sort_unstable();
        self.known.dedup();
        self.known
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::testkit::ip;

    fn query(src: &str, q: &str, rcode: u16, ts: f64) -> DnsFacts {
        DnsFacts {
            ts,
            uid: Some("Cq".into()),
            src: ip(src),
            query: Some(q.into()),
            rcode: Some(rcode),
            answers: Vec::new(),
        }
    }

    #[test]
    fn registered_domains_follow_the_public_suffix_list() {
        assert_eq!(
            split_registered("a.b.example.co.uk"),
            Some(("example.co.uk", "a.b"))
        );
        assert_eq!(split_registered("example.com"), Some(("example.com", "")));
        assert_eq!(split_registered("4.3.2.1.in-addr.arpa"), None);
    }

    #[test]
    fn a_tunnel_of_500_subdomains_is_found_once_and_busy_normal_domains_are_not() {
        let mut d = DnsTunnelDetector::new(DnsTunnelParams::default());
        let t = 1_700_000_000.0;
        let mut found = Vec::new();
        for i in 0..500u32 {
            let data = format!("{:016x}{i}", u64::from(i).wrapping_mul(0x9e3779b97f4a7c15));
            found.extend(d.observe(&query(
                "10.0.0.5",
                &format!("{data}.t.evil-c2.net"),
                0,
                t + f64::from(i),
            )));
            // A browser asking the same few names again and again.
            for host in ["www", "mail", "cdn"] {
                found.extend(d.observe(&query("10.0.0.6", &format!("{host}.example.com"), 0, t)));
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].detection, DetectorKind::DnsTunnel);
        assert_eq!(found[0].domain.as_deref(), Some("evil-c2.net"));
        assert_eq!(found[0].score, 200.0);
    }

    #[test]
    fn domains_busy_in_training_are_known() {
        let mut learner = DnsTunnelLearner::new(&DnsTunnelParams::default());
        for i in 0..150 {
            learner.observe(&query(
                "10.0.0.1",
                &format!("x{i}.cdn-telemetry.com"),
                0,
                1e9,
            ));
        }
        let known = learner.finish();
        assert_eq!(known, ["cdn-telemetry.com"]);
        let mut d = DnsTunnelDetector::new(DnsTunnelParams::default()).with_known(known);
        let n: usize = (0..500)
            .map(|i| {
                d.observe(&query(
                    "10.0.0.1",
                    &format!("y{i}.cdn-telemetry.com"),
                    0,
                    2e9,
                ))
                .len()
            })
            .sum();
        assert_eq!(n, 0);
    }

    #[test]
    fn an_nxdomain_burst_is_found_once_per_window() {
        let mut d = DnsTunnelDetector::new(DnsTunnelParams::default());
        let n: Vec<_> = (0..1000)
            .flat_map(|i| {
                d.observe(&query(
                    "10.0.0.9",
                    &format!("q{i}.invalid"),
                    3,
                    1e9 + f64::from(i) * 0.1,
                ))
            })
            .collect();
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].detection, DetectorKind::NxdomainBurst);
    }

    /// Reverse lookups of a subnet, each asked twice, and one name retried
    /// 300 times: no burst (the zed sample's resolver made 104 NXDOMAIN
    /// answers for 52 `in-addr.arpa` names, reported as a DGA).
    #[test]
    fn reverse_lookups_and_retries_are_no_nxdomain_burst() {
        let mut d = DnsTunnelDetector::new(DnsTunnelParams::default());
        let mut found = Vec::new();
        for i in 0..300u32 {
            let ptr = format!("{}.20.0.50.in-addr.arpa", i % 150);
            for _ in 0..2 {
                found.extend(d.observe(&query("10.47.2.10", &ptr, 3, 1e9 + f64::from(i))));
            }
            found.extend(d.observe(&query(
                "10.47.2.11",
                "wpad.corp.example",
                3,
                1e9 + f64::from(i),
            )));
        }
        assert!(found.is_empty(), "{found:?}");
        // The same guesses each asked twice still make a burst, at its
        // 100th distinct name.
        let mut found = Vec::new();
        for i in 0..150u32 {
            for _ in 0..2 {
                found.extend(d.observe(&query(
                    "10.47.2.12",
                    &format!("x{i}q.example"),
                    3,
                    1e9 + 1.0,
                )));
            }
        }
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].score, 100.0);
    }
}
