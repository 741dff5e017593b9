//! What a detector reports: an entity (a host, a pair, a domain), a score
//! in the detector's own unit next to the threshold it crossed, the
//! evidence an analyst checks first, and sample uids to pivot on.

use std::net::IpAddr;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::log_kind::LogKind;
use crate::severity::Severity;

/// The detectors, by the name written in the `detection` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// A pair talking at regular intervals (score: RITA's, 0 to 1).
    Beacon,
    /// A pair connected for a long time in total (score: seconds).
    LongConnection,
    /// A source trying many hosts (score: distinct unanswered hosts).
    HostSweep,
    /// A source trying many ports of one host (score: distinct
    /// unanswered ports).
    PortScan,
    /// Many distinct names under one registered domain (score: distinct
    /// names).
    DnsTunnel,
    /// A source whose queries fail by the dozen (score: NXDOMAIN answers).
    NxdomainBurst,
    /// A local host sending an outside one far more than it gets back
    /// (score: bytes sent).
    LargeUpload,
}

impl DetectorKind {
    /// (New kinds go last: an EVE alert's signature id is the position.)
    pub const ALL: [DetectorKind; 7] = [
        DetectorKind::Beacon,
        DetectorKind::LongConnection,
        DetectorKind::HostSweep,
        DetectorKind::PortScan,
        DetectorKind::DnsTunnel,
        DetectorKind::NxdomainBurst,
        DetectorKind::LargeUpload,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Beacon => "beacon",
            DetectorKind::LongConnection => "long_connection",
            DetectorKind::HostSweep => "host_sweep",
            DetectorKind::PortScan => "port_scan",
            DetectorKind::DnsTunnel => "dns_tunnel",
            DetectorKind::NxdomainBurst => "nxdomain_burst",
            DetectorKind::LargeUpload => "large_upload",
        }
    }
}

impl std::fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One detection, written to the output beside the scored records (one
/// JSON line with a `detection` key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// The event time of the record that completed the evidence.
    pub ts: f64,
    pub detection: DetectorKind,
    pub module: LogKind,
    #[serde(rename = "id.orig_h")]
    pub src: IpAddr,
    #[serde(rename = "id.resp_h", skip_serializing_if = "Option::is_none", default)]
    pub dst: Option<IpAddr>,
    #[serde(rename = "id.resp_p", skip_serializing_if = "Option::is_none", default)]
    pub resp_p: Option<u16>,
    /// The registered domain, for DNS detectors.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub domain: Option<String>,
    pub score: f64,
    pub threshold: f64,
    /// How serious ([`Detection::graded`]), set by the detection stage.
    #[serde(default)]
    pub severity: Severity,
    /// The time span of the evidence.
    pub first_ts: f64,
    pub last_ts: f64,
    /// A few records of the evidence, newest last.
    pub uids: Vec<String>,
    /// Detector-specific figures (counts, parts of a score, examples).
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// Whether the source is in the local networks, where the detector
    /// knows (the scan detector): a scan from inside is discovery by a
    /// host of ours, from outside reconnaissance ([`super::attack`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_local: Option<bool>,
}

impl Detection {
    /// A `kind` detection of the pair of conn record `c`, known when `c`
    /// ended (`end`; its evidence from `first_ts`): the rest (score,
    /// threshold, evidence) is the detector's. Stamped at the end, not at
    /// the start, so its evidence never ends after its own time.
    pub(crate) fn of_pair(
        kind: DetectorKind,
        c: &super::observation::ConnFacts,
        first_ts: f64,
        end: f64,
        uids: Vec<String>,
    ) -> Detection {
        Detection {
            ts: end,
            detection: kind,
            module: LogKind::CONN,
            src: c.src,
            dst: Some(c.dst),
            resp_p: c.resp_p,
            domain: None,
            score: 0.0,
            threshold: 0.0,
            severity: Severity::Medium,
            first_ts,
            last_ts: end,
            uids,
            evidence: serde_json::Map::new(),
            src_local: None,
        }
    }

    /// A detection's severity from how far past its threshold it is, in
    /// its detector's unit: a beacon (RITA's score, 0 to 1, threshold 0.9
    /// by default) is high from 0.95, the counting detectors (hosts,
    /// ports, names, seconds) from four times their threshold; anything
    /// else detected is medium. Detections are rarer than anomalies and
    /// each rests on many records, so none is merely low.
    pub fn graded(&self) -> Severity {
        let high = match self.detection {
            DetectorKind::Beacon => self.score >= 0.95_f64.max(self.threshold),
            _ => self.threshold > 0.0 && self.score >= 4.0 * self.threshold,
        };
        if high {
            Severity::High
        } else {
            Severity::Medium
        }
    }

    /// Whether its evidence is ICMP (a beacon of pings): what names its
    /// ATT&CK technique a non-application-layer protocol.
    pub fn over_icmp(&self) -> bool {
        self.evidence_says(super::beacon::ICMP_EVIDENCE)
    }

    /// Whether it only says that its behaviour goes on (a beacon's
    /// reminder, a scan grown twice as large): no new detection, for
    /// alerts to count.
    pub fn still_going(&self) -> bool {
        self.evidence_says(super::beacon::STILL_EVIDENCE)
            || self.evidence_says(super::scan::GROWN_EVIDENCE)
    }

    /// Whether the evidence holds `key` as `true`.
    fn evidence_says(&self, key: &str) -> bool {
        self.evidence.get(key) == Some(&serde_json::Value::Bool(true))
    }

    /// Its score against its threshold, in the detector's units, for the
    /// messages an analyst reads: `score 0.946, at or above 0.9`,
    /// `4.66 h connected, at or above 4 h`, `64 unanswered ports, at or
    /// above 64` (it was `score 64.0000 at or above 64.0000` for all).
    pub fn measured(&self) -> String {
        let amount = |v: f64| -> String {
            match self.detection {
                DetectorKind::Beacon => format!("{:.3}", v)
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_owned(),
                DetectorKind::LongConnection => crate::score::span(v),
                DetectorKind::HostSweep
                | DetectorKind::PortScan
                | DetectorKind::DnsTunnel
                | DetectorKind::NxdomainBurst => crate::score::number(v.round()),
                DetectorKind::LargeUpload => crate::score::bytes(v),
            }
        };
        let what = match self.detection {
            DetectorKind::Beacon => "score",
            DetectorKind::LongConnection => "connected",
            DetectorKind::HostSweep => "unanswered hosts",
            DetectorKind::PortScan => "unanswered ports",
            DetectorKind::DnsTunnel => "distinct names",
            DetectorKind::NxdomainBurst => "NXDOMAIN answers",
            DetectorKind::LargeUpload => "sent",
        };
        let score = amount(self.score);
        let shown = match self.detection {
            DetectorKind::Beacon => format!("{what} {score}"),
            _ => format!("{score} {what}"),
        };
        format!("{shown}, at or above {}", amount(self.threshold))
    }

    /// The entity as one string, for logs and summaries:
    /// `10.0.0.5 -> 203.0.113.7`, `10.0.0.5 -> example.com`, `10.0.0.5`.
    pub fn entity(&self) -> String {
        match (&self.dst, &self.domain) {
            (Some(d), _) => format!("{} -> {d}", self.src),
            (None, Some(dom)) => format!("{} -> {dom}", self.src),
            (None, None) => self.src.to_string(),
        }
    }
}

/// The uids an analyst pivots on: the first record of the evidence, kept
/// inline (Zeek's uids fit a `CompactString` without a heap allocation),
/// and the record that completed it, known when the detection is made.
/// One inline uid per key keeps a million keys cheap.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleUids {
    first: Option<CompactString>,
}

impl SampleUids {
    pub fn push(&mut self, uid: Option<&str>) {
        if self.first.is_none() {
            self.first = uid.map(CompactString::from);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The first uid and `latest` (the record at hand), without repeats.
    pub fn with_latest(&self, latest: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = self.first.iter().map(|u| u.to_string()).collect();
        if let Some(l) = latest {
            if out.first().map(String::as_str) != Some(l) {
                out.push(l.to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(detection: DetectorKind, score: f64, threshold: f64) -> Detection {
        Detection {
            ts: 1e9,
            detection,
            module: LogKind::CONN,
            src: "10.0.0.5".parse().unwrap(),
            dst: None,
            resp_p: None,
            domain: None,
            score,
            threshold,
            severity: Severity::Medium,
            first_ts: 1e9,
            last_ts: 1e9,
            uids: Vec::new(),
            evidence: Default::default(),
            src_local: None,
        }
    }

    /// Each detector's score is said in its own units (every one read
    /// "score 64.0000 at or above 64.0000", and a long connection's
    /// seconds carried float noise: 16759.115085999998).
    #[test]
    fn a_detection_is_measured_in_its_detectors_units() {
        let cases = [
            (
                DetectorKind::Beacon,
                0.946_12,
                0.9,
                "score 0.946, at or above 0.9",
            ),
            (
                DetectorKind::LongConnection,
                16_759.115_085_999_998,
                14_400.0,
                "4.66 h connected, at or above 4 h",
            ),
            (
                DetectorKind::PortScan,
                64.0,
                64.0,
                "64 unanswered ports, at or above 64",
            ),
            (
                DetectorKind::HostSweep,
                129.0,
                64.0,
                "129 unanswered hosts, at or above 64",
            ),
            (
                DetectorKind::DnsTunnel,
                200.0,
                200.0,
                "200 distinct names, at or above 200",
            ),
            (
                DetectorKind::NxdomainBurst,
                100.0,
                100.0,
                "100 NXDOMAIN answers, at or above 100",
            ),
            (
                DetectorKind::LargeUpload,
                4_213_000_000.0,
                1e9,
                "4.21 GB sent, at or above 1 GB",
            ),
        ];
        for (kind, score, threshold, said) in cases {
            assert_eq!(found(kind, score, threshold).measured(), said);
        }
    }
}
