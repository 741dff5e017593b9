//! One host's alert while it is open: what its flagged records and
//! detections add up to, bounded however many there are, and the alert
//! written from it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::names::PeerNames;
use crate::detect::{Detection, DetectorKind};
use crate::fnv::{fnv1a64, Fnv};
use crate::log_kind::LogKind;
use crate::score::ScoredRecord;
use crate::severity::Severity;

/// Peers, features and uids an alert keeps: enough to pivot on, bounded
/// against a host that talks to the whole internet.
const MAX_PEERS: usize = 256;
const MAX_FEATURES: usize = 64;
const MAX_UIDS: usize = 5;
/// What an alert shows of them.
const SHOWN: usize = 5;
/// A uid or feature name longer than this is cut (they come from logs).
const MAX_TEXT: usize = 128;
/// The most text of context fields a sample keeps.
const MAX_SAMPLE_BYTES: usize = 2048;

/// Which end of the traffic the alert's host was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// It sent the flagged traffic.
    Source,
    /// It was reached by it (an inbound anomaly: the local host hit from
    /// outside).
    Target,
}

impl Role {
    /// The client and the server of an alert's host and `peer`, whose
    /// names the host used ([`super::names`]): for a host reached from
    /// outside, the names the peer used for it.
    pub fn client_server(self, host: IpAddr, peer: IpAddr) -> (IpAddr, IpAddr) {
        match self {
            Role::Source => (host, peer),
            Role::Target => (peer, host),
        }
    }
}

/// The host a record's alert names, its peer and its role: the source,
/// except for inbound traffic, whose host is the local one reached.
/// `None` without a source address, or with the unspecified one (`::`,
/// `0.0.0.0`: a machine asking for an address, DHCP or IPv6 duplicate
/// address detection, which names no host an analyst can find).
pub fn host_of(
    orig: Option<IpAddr>,
    resp: Option<IpAddr>,
    direction: Option<&str>,
) -> Option<(IpAddr, Option<IpAddr>, Role)> {
    let orig = orig.filter(|a| !a.is_unspecified());
    match (orig, resp) {
        (Some(o), Some(d)) if direction == Some("inbound") && !d.is_unspecified() => {
            Some((d, Some(o), Role::Target))
        }
        (Some(o), d) => Some((o, d, Role::Source)),
        (None, _) => None,
    }
}

/// What a flagged record or a detection brings to an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub ts: f64,
    pub module: LogKind,
    pub entity: IpAddr,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    pub severity: Severity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_normal: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The top features' names and shares (records only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub features: Vec<(String, f64)>,
    /// The record's context fields and how far above its threshold it
    /// scored (records only): the alert shows its most anomalous record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// Tells apart items of equal time, from their content only, so that
    /// the order (and so every alert) is the same whatever order the log
    /// types arrived in.
    pub tiebreak: u64,
    /// When a detection's evidence began, before `ts` (when it was
    /// reported): a beacon is reported once it has gone on for hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// Whether `entity` is in the local networks, when the item tells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// A detection whose evidence is ICMP ([`Detection::over_icmp`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub icmp: bool,
    /// A detection saying only that its behaviour goes on (a beacon's
    /// `still_beaconing`): it keeps the alert open but is no new evidence,
    /// so it is not counted (ten reminders of one beacon would otherwise
    /// raise its alert a level, for lasting two days).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reminder: bool,
}

/// Whether a record's alert host is in the local networks, from the
/// record's direction: an inbound record's host is the local one reached;
/// an outbound or internal record's source is local, an external one's
/// not.
fn host_is_local(direction: Option<&str>) -> Option<bool> {
    match direction? {
        "inbound" | "outbound" | "internal" => Some(true),
        "external" => Some(false),
        _ => None,
    }
}

impl Item {
    /// A flagged record's item; `None` for a record not flagged or
    /// without time or addresses. Its host is the source, except for
    /// inbound traffic, whose host is the local one reached.
    pub fn of_record(r: &ScoredRecord) -> Option<Item> {
        if !r.anomaly {
            return None;
        }
        let ts = r.ts.filter(|t| t.is_finite())?;
        let (entity, peer, role) = host_of(r.orig_h, r.resp_h, r.direction.as_deref())?;
        let uid = r.uid.as_deref().map(|u| crate::score::bounded(u, MAX_TEXT));
        let ratio = if r.threshold > 0.0 && r.score.is_finite() {
            r.score / r.threshold
        } else {
            1.0
        };
        let sample = Sample {
            module: r.module,
            uid: uid.clone(),
            peer,
            resp_p: r.resp_p,
            ratio: (ratio * 1000.0).round() / 1000.0,
            context: bounded_context(&r.context.to_map()),
        };
        let mut h = Fnv::new();
        h.write(uid.as_deref().unwrap_or("").as_bytes());
        h.write(entity.to_string().as_bytes());
        h.write(peer.map(|p| p.to_string()).unwrap_or_default().as_bytes());
        h.write(&r.orig_p.unwrap_or(0).to_le_bytes());
        h.write(&r.resp_p.unwrap_or(0).to_le_bytes());
        h.write(&r.trans_depth.unwrap_or(0).to_le_bytes());
        h.write(&r.trans_id.unwrap_or(0).to_le_bytes());
        h.write(&r.score.to_bits().to_le_bytes());
        Some(Item {
            ts,
            module: r.module,
            entity,
            role,
            peer,
            severity: r.severity.unwrap_or(Severity::Low),
            p_normal: r.p_normal,
            detector: None,
            uid,
            features: r
                .top_features
                .iter()
                .flatten()
                .take(SHOWN)
                .map(|c| (crate::score::bounded(&c.feature, MAX_TEXT), c.share))
                .collect(),
            sample: Some(sample),
            tiebreak: h.finish(),
            since: None,
            local: host_is_local(r.direction.as_deref()),
            icmp: false,
            reminder: false,
        })
    }

    /// A detection's item: its source host, its destination the peer.
    pub fn of_detection(d: &Detection) -> Option<Item> {
        let ts = Some(d.ts).filter(|t| t.is_finite())?;
        let uid = d.uids.last().map(|u| crate::score::bounded(u, MAX_TEXT));
        let mut h = Fnv::new();
        h.write(d.detection.name().as_bytes());
        h.write(d.entity().as_bytes());
        h.write(&d.score.to_bits().to_le_bytes());
        Some(Item {
            ts,
            module: d.module,
            entity: d.src,
            role: Role::Source,
            peer: d.dst,
            severity: d.severity,
            p_normal: None,
            detector: Some(d.detection),
            uid,
            features: Vec::new(),
            sample: None,
            tiebreak: h.finish(),
            // Not a time of the future nor before 1970 (the evidence's
            // times were believed when taken; this guards a bug).
            since: Some(d.first_ts).filter(|t| t.is_finite() && *t >= 0.0 && *t < ts),
            local: d.src_local,
            icmp: d.over_icmp(),
            reminder: d.still_going(),
        })
    }

    /// The order items fold in: time, then content.
    pub fn order(&self, other: &Item) -> std::cmp::Ordering {
        self.ts
            .total_cmp(&other.ts)
            .then_with(|| self.module.log_path().cmp(other.module.log_path()))
            .then_with(|| self.tiebreak.cmp(&other.tiebreak))
            .then_with(|| self.uid.cmp(&other.uid))
    }
}

/// What an alert shows of its most anomalous record: what an analyst
/// reads first (the DNS query, the HTTP host and user agent, the TLS
/// server name), without opening the records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub module: LogKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp_p: Option<u16>,
    /// Score over threshold.
    pub ratio: f64,
    /// The record's context fields (as bounded as the record's).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<String, serde_json::Value>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A host's alert while open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub id: String,
    pub entity: IpAddr,
    pub role: Role,
    pub first_ts: f64,
    pub last_ts: f64,
    /// The earliest [`Item::since`] of its detections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since: Option<f64>,
    pub records: u64,
    pub detections: u64,
    /// Reminders that a reported behaviour goes on, not counted in
    /// `detections` ([`Item::reminder`]).
    #[serde(default)]
    reminders: u64,
    /// Records and detections by peer, the first [`MAX_PEERS`] peers.
    peers: BTreeMap<IpAddr, u64>,
    /// Items whose peer found the list full.
    peers_beyond: u64,
    /// The most severe item's severity.
    item_severity: Severity,
    p_min: Option<f64>,
    modules: BTreeSet<LogKind>,
    detectors: BTreeSet<DetectorKind>,
    /// Per feature: records it was among the top of, and its summed share.
    features: BTreeMap<String, (u64, f64)>,
    uids: Vec<String>,
    last_uid: Option<String>,
    /// The most anomalous record's context.
    #[serde(default)]
    sample: Option<Sample>,
    /// Whether the host is local, from the first item that told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    local: Option<bool>,
    /// Its detectors, each with whether a detection of it was over ICMP
    /// (a kind can come both ways): what the ATT&CK terms are named from.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    variants: BTreeSet<(DetectorKind, bool)>,
    /// The severity last written, and the count at which to write the
    /// next update.
    written: Option<Severity>,
    next_update: u64,
    /// Documents written of it (open and updates): the next one's
    /// [`Alert::revision`].
    #[serde(default)]
    revisions: u64,
    /// Held back by the limit of new alerts a minute (counted once).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) held_back: bool,
    /// What the host called its peers and the user agents it gave them,
    /// as known when each peer's latest item folded in: kept with the
    /// alert, so its closing (hours later, when the names book may have
    /// moved on) says what its opening did. At most [`NAMED_PEERS`] peers,
    /// the busiest.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    named: BTreeMap<IpAddr, PeerNames>,
    /// Whether its evidence is kept to tell agreement ([`Open::agreement`]);
    /// not for an alert restored from a checkpoint older than that: any
    /// two kinds in it agree, as they did then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    keeps_evidence: bool,
    /// What each peer was flagged by and on which connections, the first
    /// [`MAX_SEEN`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<(IpAddr, Evidence)>,
    /// The detectors of its detections that name no one peer (a sweep of
    /// many hosts): they speak of the host as a whole.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    hostwide: BTreeSet<DetectorKind>,
}

/// What agreed.
enum Agreement {
    /// Two kinds of evidence, by name, and the peer they agree about
    /// (none for a detection of no one peer).
    Named(&'static str, &'static str, Option<IpAddr>),
    /// Two kinds in an alert restored from a checkpoint older than the
    /// evidence kept.
    Unnamed,
}

/// The (peer, evidence) pairs an open alert keeps to tell agreement: a
/// bound on what a host flagged with many peers costs (about 2 KiB).
const MAX_SEEN: usize = 64;

/// What an item told of a peer: its log type or detector, and its
/// connection (the uid's hash; an item without a uid, its own content's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Evidence(Kind, u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Log(LogKind),
    Detector(DetectorKind),
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Log(m) => m.log_path(),
            Kind::Detector(d) => d.name(),
        }
    }
}

impl Evidence {
    fn of(item: &Item) -> Evidence {
        let kind = match item.detector {
            Some(d) => Kind::Detector(d),
            None => Kind::Log(item.module),
        };
        Evidence(
            kind,
            item.uid
                .as_deref()
                .map_or(item.tiebreak, |u| fnv1a64(u.as_bytes())),
        )
    }
}

/// Peers an open alert keeps names of: as many as it shows.
const NAMED_PEERS: usize = SHOWN;

/// What happened to an alert, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Open,
    Update,
    Closed,
}

/// An alert as written: the whole picture at the time, so that a SIEM
/// keeping the latest document per `alert` id has it all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable for the alert's life: `azw-` and 16 hex digits.
    pub alert: String,
    pub state: State,
    pub entity: IpAddr,
    pub role: Role,
    pub severity: Severity,
    pub first_ts: f64,
    pub last_ts: f64,
    /// When the behaviour its detections report began, when that is
    /// before `first_ts`: a beacon is reported, and its alert opened,
    /// once it has gone on for hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// Flagged records and detections folded in.
    pub records: u64,
    pub detections: u64,
    /// Reminders that a detection still goes on (`still_beaconing`),
    /// folded in but not counted in `detections`: the run's summary
    /// counts every detection written, so the two read apart.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reminders: u64,
    /// Distinct peers (at least: counting stops at 256).
    pub peers: u64,
    pub top_peers: Vec<PeerCount>,
    /// Why `severity` is above its most severe item's ([`Open::raised_for`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub raised_for: Vec<String>,
    pub modules: Vec<LogKind>,
    pub detectors: Vec<DetectorKind>,
    /// The lowest probability of normal traffic scoring as high, over its
    /// records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_normal: Option<f64>,
    pub top_features: Vec<FeatureCount>,
    /// The first uids and the latest: what an analyst pivots on.
    pub uids: Vec<String>,
    /// Its most anomalous record: log type, uid, peer, port, score over
    /// threshold and context fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// One sentence for the analyst.
    pub reason: String,
    /// Whether its host is in the local networks, when its items told
    /// (`direction` of its records; the scan detector): what tells a
    /// scan's discovery by a host of ours from reconnaissance from
    /// outside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// Closed to make room (`--alert` caps: more hosts alerting at once
    /// than open alerts are kept), not after a quiet period: the activity
    /// may go on, and its next item opens a new alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_early: bool,
    /// Which document of the alert this is: 1 for its opening, then one
    /// more for each update and its closing. Two can share a time (an
    /// update and the closing after the same item), so a SIEM keeping
    /// the latest per `alert` orders by this, not by the time (ECS
    /// `event.sequence`).
    #[serde(default)]
    pub revision: u64,
    /// Its detectors, each with whether a detection of it was over ICMP,
    /// for the SIEM writers' ATT&CK terms (empty for an alert restored
    /// from an older checkpoint: [`Alert::detectors`] then stand alone).
    /// Not written: the terms are.
    #[serde(skip)]
    pub variants: BTreeSet<(DetectorKind, bool)>,
}

impl Alert {
    /// When what it reports began: its detections' evidence, or its first
    /// item.
    pub fn start(&self) -> f64 {
        self.since.map_or(self.first_ts, |s| s.min(self.first_ts))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerCount {
    pub ip: IpAddr,
    pub count: u64,
    /// What the host called it (TLS server names, HTTP Hosts, DNS
    /// queries), the most recently first seen first, as known when the
    /// peer's latest item folded in ([`super::names`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// The user agents of the host's HTTP requests to it (of the peer's
    /// to the host, for a host reached from outside), as `names`,
    /// escaped for a terminal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_agents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureCount {
    pub feature: String,
    /// Records it was among the top features of.
    pub records: u64,
    /// Its mean share of their scores. An alert's are ranked by the
    /// shares summed (`records` times this).
    pub share: f64,
}

impl Open {
    /// A new alert with `item` in it.
    pub fn new(item: &Item) -> Open {
        let mut h = Fnv::new();
        h.write(item.entity.to_string().as_bytes());
        h.write(&item.ts.to_bits().to_le_bytes());
        h.write(&item.tiebreak.to_le_bytes());
        let mut open = Open {
            id: format!("azw-{:016x}", h.finish()),
            entity: item.entity,
            role: item.role,
            first_ts: item.ts,
            last_ts: item.ts,
            since: None,
            records: 0,
            detections: 0,
            reminders: 0,
            peers: BTreeMap::new(),
            peers_beyond: 0,
            item_severity: item.severity,
            p_min: None,
            modules: BTreeSet::new(),
            detectors: BTreeSet::new(),
            features: BTreeMap::new(),
            uids: Vec::new(),
            last_uid: None,
            sample: None,
            local: None,
            variants: BTreeSet::new(),
            written: None,
            next_update: 2,
            revisions: 0,
            held_back: false,
            named: BTreeMap::new(),
            keeps_evidence: true,
            seen: Vec::new(),
            hostwide: BTreeSet::new(),
        };
        open.add(item);
        open
    }

    pub fn add(&mut self, item: &Item) {
        self.first_ts = self.first_ts.min(item.ts);
        self.last_ts = self.last_ts.max(item.ts);
        if let Some(t) = item.since {
            self.since = Some(self.since.map_or(t, |s| s.min(t)));
        }
        // A detection's word on the host wins over its records' (the scan
        // detector's local networks are the conn model's; a record's
        // direction comes from its own log type's model).
        self.local = match (item.detector, item.local) {
            (Some(_), Some(local)) => Some(local),
            _ => self.local.or(item.local),
        };
        // A reminder counts when it is the alert's first word of its
        // detector or of its peer (an alert it opens, after a warm-up or a
        // closing, would otherwise hold "0 detections").
        let counted = !item.reminder
            || item.detector.is_some_and(|d| !self.detectors.contains(&d))
            || item.peer.is_some_and(|p| !self.peers.contains_key(&p));
        if self.keeps_evidence {
            self.note(item);
        }
        match item.detector {
            Some(d) => {
                // Restored from a checkpoint older than `variants`: its
                // kinds so far count as not over ICMP, as they were named.
                if self.variants.is_empty() {
                    self.variants = self.detectors.iter().map(|k| (*k, false)).collect();
                }
                self.detections += u64::from(counted);
                self.reminders += u64::from(!counted);
                self.detectors.insert(d);
                self.variants.insert((d, item.icmp));
            }
            None => {
                self.records += 1;
                self.modules.insert(item.module);
            }
        }
        if let Some(peer) = item.peer {
            if let Some(n) = self.peers.get_mut(&peer) {
                // As the detections count: a peer's count is its items.
                *n += u64::from(counted);
            } else if self.peers.len() < MAX_PEERS {
                self.peers.insert(peer, 1);
            } else {
                self.peers_beyond += 1;
            }
        }
        self.item_severity = self.item_severity.max(item.severity);
        if let Some(p) = item.p_normal {
            self.p_min = Some(self.p_min.map_or(p, |m| m.min(p)));
        }
        for (name, share) in &item.features {
            if let Some(f) = self.features.get_mut(name) {
                f.0 += 1;
                f.1 += share;
            } else if self.features.len() < MAX_FEATURES {
                self.features.insert(name.clone(), (1, *share));
            }
        }
        if let Some(sample) = &item.sample {
            // The highest ratio; the earlier of equals (items come in
            // time order), so every mode keeps the same one.
            if self.sample.as_ref().is_none_or(|s| sample.ratio > s.ratio) {
                self.sample = Some(sample.clone());
            }
        }
        if let Some(uid) = &item.uid {
            if self.uids.len() < MAX_UIDS {
                if !self.uids.contains(uid) {
                    self.uids.push(uid.clone());
                }
            } else if !self.uids.contains(uid) {
                self.last_uid = Some(uid.clone());
            }
        }
    }

    /// Keeps what `item` (not folded in yet) tells for [`Open::agreement`].
    fn note(&mut self, item: &Item) {
        let evidence = Evidence::of(item);
        match (item.peer, item.detector) {
            (None, Some(d)) => {
                self.hostwide.insert(d);
            }
            (None, None) => {}
            (Some(peer), _) => {
                if self.seen.len() < MAX_SEEN && !self.seen.contains(&(peer, evidence)) {
                    self.seen.push((peer, evidence));
                }
            }
        }
    }

    /// Whether two kinds of evidence agree about one thing, in words
    /// (`conn and beacon about 203.0.113.7`, for `raised_for`). About one
    /// peer: a model's records and a detection, or two detectors; or two
    /// log types each of which flagged a connection the other did not.
    /// An HTTP request and the file it fetched are one connection seen
    /// twice (a Trickbot host's downloads were flagged in http and files
    /// alike): they do not agree. A detection of no one peer (a sweep)
    /// agrees with any other kind the alert holds. Of different peers
    /// nothing agrees: the internet's scanners hitting a server are
    /// flagged in its conn and http logs alike, each scanner once. Read
    /// off what the alert holds, so the order its items came in does not
    /// matter (Kafka's log types hold nothing back), as long as a host
    /// has no more than [`MAX_SEEN`] of them.
    fn agreement(&self) -> Option<Agreement> {
        for d in &self.hostwide {
            let other = (self.modules.iter().next().map(|m| m.log_path()))
                .or_else(|| self.detectors.iter().find(|k| *k != d).map(|k| k.name()));
            if let Some(o) = other {
                return Some(Agreement::Named(o, d.name(), None));
            }
        }
        let peers: BTreeSet<IpAddr> = self.seen.iter().map(|(p, _)| *p).collect();
        for peer in peers {
            let mut by_kind: BTreeMap<Kind, BTreeSet<u64>> = BTreeMap::new();
            for (_, e) in self.seen.iter().filter(|(p, _)| *p == peer) {
                by_kind.entry(e.0).or_default().insert(e.1);
            }
            for (a, ua) in &by_kind {
                for (b, ub) in by_kind.range(a..).skip(1) {
                    let agree = match (a, b) {
                        (Kind::Log(_), Kind::Log(_)) => !ua.is_subset(ub) && !ub.is_subset(ua),
                        _ => true,
                    };
                    if agree {
                        return Some(Agreement::Named(a.name(), b.name(), Some(peer)));
                    }
                }
            }
        }
        None
    }

    /// The alert's severity: its most severe item's, one level up when it
    /// holds ten or more, and one more when two kinds of evidence agree
    /// ([`Open::agreement`]): a host flagged again and again, or by both a
    /// model and a detector, is worth more than its worst line.
    pub fn severity(&self) -> Severity {
        let (many, agreed) = self.raisings();
        self.raised_by(usize::from(many) + usize::from(agreed.is_some()))
    }

    /// Its most severe item's severity, raised `levels` times.
    fn raised_by(&self, levels: usize) -> Severity {
        (0..levels).fold(self.item_severity.max(Severity::Low), |s, _| s.raised())
    }

    /// What raises it: ten items or more, and what agreed (for an alert
    /// restored from an older checkpoint, two kinds, unnamed).
    fn raisings(&self) -> (bool, Option<Agreement>) {
        let many = self.records + self.detections >= 10;
        let agreed = if self.keeps_evidence {
            self.agreement()
        } else {
            (self.modules.len() + self.detectors.len() >= 2).then_some(Agreement::Unnamed)
        };
        (many, agreed)
    }

    /// Why its severity is above its most severe item's: `12 items`,
    /// `conn and beacon about 203.0.113.7` (what an analyst asks of a
    /// critical alert made of low items).
    pub fn raised_for(&self) -> Vec<String> {
        let (many, agreed) = self.raisings();
        let mut why = Vec::new();
        if many {
            why.push(format!("{} items", self.records + self.detections));
        }
        why.extend(agreed.map(|a| match a {
            Agreement::Unnamed => "two kinds of evidence".into(),
            Agreement::Named(a, b, None) => format!("{a} and {b}"),
            Agreement::Named(a, b, Some(peer)) => format!("{a} and {b} about {peer}"),
        }));
        why
    }

    /// Whether to write it now, and as what: the first time it reaches
    /// `min`, then when its severity rises or its count doubles.
    pub fn due(&mut self, min: Severity) -> Option<State> {
        let severity = self.severity();
        if severity < min {
            return None;
        }
        let count = self.records + self.detections;
        let state = match self.written {
            None => State::Open,
            Some(w) if severity > w || count >= self.next_update => State::Update,
            Some(_) => return None,
        };
        self.revisions = self.written_revisions() + 1;
        self.written = Some(severity);
        while self.next_update <= count {
            self.next_update = self.next_update.saturating_mul(2);
        }
        Some(state)
    }

    /// Documents written of it: at least one once written, for an alert
    /// restored from a checkpoint from before revisions were counted
    /// (its next update was numbered 1 again, as its opening).
    fn written_revisions(&self) -> u64 {
        match self.written {
            Some(_) => self.revisions.max(1),
            None => self.revisions,
        }
    }

    /// Whether it was ever written (a closing is written only then).
    pub fn was_written(&self) -> bool {
        self.written.is_some()
    }

    /// Names `peer` (after an item of it folded in) by `names`, the names
    /// book's at that item's time; `replace`: over names it has (not for
    /// a late item, whose names are older). Past [`NAMED_PEERS`] a peer
    /// takes the place of the named one that [`Open::alert`] would show
    /// last (fewest items, then the highest address), if it would be
    /// shown before it: the peers named are those shown, ties included.
    pub(crate) fn name_peer(&mut self, peer: IpAddr, names: PeerNames, replace: bool) {
        if names.is_empty() || !replace && self.named.contains_key(&peer) {
            return;
        }
        if !self.named.contains_key(&peer) && self.named.len() >= NAMED_PEERS {
            // Shown before: more items, then the lower address.
            let rank = |p: &IpAddr| {
                (
                    std::cmp::Reverse(self.peers.get(p).copied().unwrap_or(0)),
                    *p,
                )
            };
            let Some(last) = self.named.keys().max_by_key(|p| rank(p)).copied() else {
                return;
            };
            if rank(&peer) > rank(&last) {
                return;
            }
            self.named.remove(&last);
        }
        self.named.insert(peer, names);
    }

    /// Names its busiest peers from `book` as of its last item, if it has
    /// none named: an alert resumed from a checkpoint of the build that
    /// named peers from the book when writing, not as items folded.
    pub(crate) fn name_from(&mut self, book: &super::names::Names) {
        if !self.named.is_empty() {
            return;
        }
        let mut peers: Vec<(u64, IpAddr)> = self.peers.iter().map(|(p, n)| (*n, *p)).collect();
        peers.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, peer) in peers.into_iter().take(NAMED_PEERS) {
            let (client, server) = self.role.client_server(self.entity, peer);
            let names = book.of(client, server, self.last_ts);
            if !names.is_empty() {
                self.named.insert(peer, names);
            }
        }
    }

    /// Whether the limit of new alerts a minute may hold it back: one
    /// flagged record of a host not known to be local, without a
    /// detection, what a flood of spoofed or scanning sources is made of.
    /// A local host's alert, a second item or a detection is never held:
    /// a flood must not hide what an analyst has to see.
    pub(crate) fn may_wait(&self) -> bool {
        self.records + self.detections <= 1 && self.detections == 0 && self.local != Some(true)
    }

    pub fn alert(&self, state: State) -> Alert {
        let mut top_peers: Vec<PeerCount> = self
            .peers
            .iter()
            .map(|(ip, count)| {
                let named = self.named.get(ip).cloned().unwrap_or_default();
                PeerCount {
                    ip: *ip,
                    count: *count,
                    names: named.names,
                    user_agents: named.agents,
                }
            })
            .collect();
        top_peers.sort_by(|a, b| b.count.cmp(&a.count).then(a.ip.cmp(&b.ip)));
        top_peers.truncate(SHOWN);
        // By how much of the records' scores each made (its shares
        // summed), not by how many records listed it: a feature on every
        // record's list at 1% is not what made the alert.
        let mut ranked: Vec<(&String, &(u64, f64))> = self.features.iter().collect();
        ranked.sort_by(|(a, (an, asum)), (b, (bn, bsum))| {
            (bsum.total_cmp(asum)).then(bn.cmp(an)).then(a.cmp(b))
        });
        let top_features: Vec<FeatureCount> = (ranked.into_iter())
            .take(SHOWN)
            .map(|(name, (n, sum))| FeatureCount {
                feature: name.clone(),
                records: *n,
                share: ((sum / *n as f64) * 1000.0).round() / 1000.0,
            })
            .collect();
        let mut uids = self.uids.clone();
        uids.extend(self.last_uid.iter().cloned());
        let raised_for = self.raised_for();
        let mut alert = Alert {
            alert: self.id.clone(),
            state,
            entity: self.entity,
            role: self.role,
            severity: self.raised_by(raised_for.len()),
            first_ts: self.first_ts,
            last_ts: self.last_ts,
            since: self.since.filter(|t| *t < self.first_ts),
            records: self.records,
            detections: self.detections,
            reminders: self.reminders,
            peers: self.peers.len() as u64,
            top_peers,
            raised_for,
            modules: self.modules.iter().copied().collect(),
            detectors: self.detectors.iter().copied().collect(),
            p_normal: self.p_min,
            top_features,
            uids,
            sample: self.sample.clone(),
            reason: String::new(),
            local: self.local,
            closed_early: false,
            revision: match state {
                State::Closed => self.written_revisions() + 1,
                _ => self.revisions.max(1),
            },
            variants: self.variants.clone(),
        };
        alert.reason = reason(&alert, self.peers_beyond > 0);
        alert
    }
}

/// `10.0.0.5 (source): 12 flagged conn, http records and a beacon
/// detection over 40 min, 3 peers; mostly resp_p, orig_bytes`.
fn reason(a: &Alert, more_peers: bool) -> String {
    let mut parts = Vec::new();
    if a.records > 0 {
        let modules: Vec<&str> = a.modules.iter().map(|m| m.log_path()).collect();
        parts.push(format!(
            "{} flagged {} record{}",
            a.records,
            modules.join(", "),
            if a.records == 1 { "" } else { "s" }
        ));
    }
    if a.detections > 0 {
        let detectors: Vec<&str> = a.detectors.iter().map(|d| d.name()).collect();
        let reminders = match a.reminders {
            0 => String::new(),
            1 => " (and a reminder it goes on)".into(),
            n => format!(" (and {n} reminders it goes on)"),
        };
        parts.push(format!(
            "{} {} detection{}{reminders}",
            a.detections,
            detectors.join(", "),
            if a.detections == 1 { "" } else { "s" }
        ));
    }
    // One record has no span (a detection has its evidence's); items
    // within a minute, none worth a number.
    let span = a.last_ts - a.start();
    let span = if a.records <= 1 && a.detections == 0 {
        String::new()
    } else if span >= 3600.0 {
        format!(" over {:.1} h", span / 3600.0)
    } else if span >= 60.0 {
        format!(" over {:.0} min", span / 60.0)
    } else {
        " within a minute".into()
    };
    let mut s = format!(
        "{} ({}): {}{span}, {}{} peer{}",
        a.entity,
        match a.role {
            Role::Source => "source",
            Role::Target => "target",
        },
        parts.join(" and "),
        a.peers,
        if more_peers { "+" } else { "" },
        if a.peers == 1 { "" } else { "s" }
    );
    // The busiest peer's name and user agent, which an address alone
    // does not tell.
    if let Some(p) =
        (a.top_peers.first()).filter(|p| !p.names.is_empty() || !p.user_agents.is_empty())
    {
        s.push_str(" (");
        if a.peers > 1 {
            s.push_str("most often ");
        }
        s.push_str(&p.ip.to_string());
        if !p.names.is_empty() {
            s.push_str(match a.role {
                Role::Source => ": ",
                Role::Target => ", asking for ",
            });
            s.push_str(&p.names.join(", "));
        }
        if !p.user_agents.is_empty() {
            let quoted: Vec<String> = p.user_agents.iter().map(|u| format!("\"{u}\"")).collect();
            s.push_str(if p.user_agents.len() == 1 {
                "; user agent "
            } else {
                "; user agents "
            });
            s.push_str(&quoted.join(", "));
        }
        s.push(')');
    }
    // The features that made the scores: the first, and the others of
    // a share of 1% or more.
    let made: Vec<&str> = (a.top_features.iter().enumerate())
        .filter(|(i, f)| *i == 0 || f.share >= 0.01)
        .map(|(_, f)| f.feature.as_str())
        .collect();
    if !made.is_empty() {
        s.push_str("; mostly ");
        s.push_str(&made.join(", "));
    }
    s
}

/// The context a sample keeps: the record's fields in order until
/// [`MAX_SAMPLE_BYTES`] of their text (a held item or an open alert stays
/// small whatever a record's DNS answers or user agent hold).
fn bounded_context(
    context: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, serde_json::Value> {
    let mut kept = BTreeMap::new();
    let mut bytes = 0;
    for (k, v) in context {
        let size = k.len() + v.to_string().len();
        if bytes + size > MAX_SAMPLE_BYTES {
            break;
        }
        bytes += size;
        kept.insert(k.clone(), v.clone());
    }
    kept
}
