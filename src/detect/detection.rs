//! What a detector reports: an entity (a host, a pair, a domain), a score
//! in the detector's own unit next to the threshold it crossed, the
//! evidence an analyst checks first, and sample uids to pivot on.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::log_kind::LogKind;

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
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 6] = [
        DetectorKind::Beacon,
        DetectorKind::LongConnection,
        DetectorKind::HostSweep,
        DetectorKind::PortScan,
        DetectorKind::DnsTunnel,
        DetectorKind::NxdomainBurst,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Beacon => "beacon",
            DetectorKind::LongConnection => "long_connection",
            DetectorKind::HostSweep => "host_sweep",
            DetectorKind::PortScan => "port_scan",
            DetectorKind::DnsTunnel => "dns_tunnel",
            DetectorKind::NxdomainBurst => "nxdomain_burst",
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
    /// The time span of the evidence.
    pub first_ts: f64,
    pub last_ts: f64,
    /// A few records of the evidence, newest last.
    pub uids: Vec<String>,
    /// Detector-specific figures (counts, parts of a score, examples).
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

impl Detection {
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

/// A handful of recent uids, for the analyst's pivot: at most `N`, the
/// oldest dropped first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecentUids(Vec<Box<str>>);

impl RecentUids {
    pub const N: usize = 3;

    pub fn push(&mut self, uid: Option<&str>) {
        if let Some(u) = uid {
            if self.0.len() == Self::N {
                self.0.remove(0);
            }
            self.0.push(u.into());
        }
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().map(|u| u.to_string()).collect()
    }
}
