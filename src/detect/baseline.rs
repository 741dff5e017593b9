//! What the detectors learn from the training history and a model carries:
//! their settings and the entities that were already "detected" in normal
//! traffic (pairs that recur, long sessions, busy domains), which are the
//! site's normal and not reported. Learned by `azw-train` in the same pass
//! that learns the vocabularies.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::beacon::{BaselineLearner, BeaconParams};
use super::dns_tunnel::{DnsTunnelLearner, DnsTunnelParams};
use super::long_conn::{LongConnLearner, LongConnParams};
use super::observation::Observation;
use super::scan::ScanParams;
use crate::log_kind::LogKind;
use crate::zeek::Record;

/// The detectors' part of a model (conn and dns models; empty for others).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beacon: Option<Known<BeaconParams, (IpAddr, IpAddr)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub long_connection: Option<Known<LongConnParams, (IpAddr, IpAddr)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanParams>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_tunnel: Option<Known<DnsTunnelParams, String>>,
}

/// A detector's settings and what it knows from training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known<P, K> {
    pub params: P,
    pub known: Vec<K>,
}

/// The most entities of one kind a model keeps.
pub const MAX_KNOWN: usize = 100_000;

impl Baseline {
    pub fn is_empty(&self) -> bool {
        *self == Baseline::default()
    }

    /// What a model trained before the detectors existed gets: default
    /// settings, nothing known.
    pub fn defaults_for(module: LogKind) -> Baseline {
        match module {
            LogKind::CONN => Baseline {
                beacon: Some(Known {
                    params: BeaconParams::default(),
                    known: Vec::new(),
                }),
                long_connection: Some(Known {
                    params: LongConnParams::default(),
                    known: Vec::new(),
                }),
                scan: Some(ScanParams::default()),
                dns_tunnel: None,
            },
            LogKind::DNS => Baseline {
                dns_tunnel: Some(Known {
                    params: DnsTunnelParams::default(),
                    known: Vec::new(),
                }),
                ..Baseline::default()
            },
            _ => Baseline::default(),
        }
    }

    /// Checks what a model file says, naming the part that is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let too_many = |n: usize| n > MAX_KNOWN;
        if let Some(b) = &self.beacon {
            let p = &b.params;
            if too_many(b.known.len())
                || !(0.0..=1.0).contains(&p.threshold)
                || p.window_seconds == 0
                || p.min_connections < 4
                || p.max_pairs == 0
                || p.max_events < 4
            {
                return Err(("detectors.beacon", "out of range (threshold in [0, 1], a window, at least 4 connections, at most 100000 known pairs)".into()));
            }
        }
        if let Some(l) = &self.long_connection {
            let p = &l.params;
            if too_many(l.known.len())
                || p.threshold_seconds.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
                || p.window_seconds == 0
                || p.max_pairs == 0
            {
                return Err((
                    "detectors.long_connection",
                    "out of range (a positive threshold and window, at most 100000 known pairs)"
                        .into(),
                ));
            }
        }
        if let Some(p) = &self.scan {
            if p.window_seconds == 0 || p.sweep_hosts < 2 || p.scan_ports < 2 || p.max_sources == 0
            {
                return Err((
                    "detectors.scan",
                    "out of range (a window, at least 2 hosts and 2 ports)".into(),
                ));
            }
        }
        if let Some(d) = &self.dns_tunnel {
            let p = &d.params;
            if too_many(d.known.len())
                || p.window_seconds == 0
                || p.nxdomain_window_seconds == 0
                || p.distinct_names < 2
                || p.nxdomain_answers < 2
                || p.max_domains == 0
                || p.max_sources == 0
            {
                return Err(("detectors.dns_tunnel", "out of range (windows, at least 2 names and 2 answers, at most 100000 known domains)".into()));
            }
        }
        Ok(())
    }

    /// One line per detector, for `azw-train --inspect`.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(b) = &self.beacon {
            out.push(format!(
                "beacon: a pair scoring {} or more (RITA's score) over {} h of answered connections; {} pairs known from training",
                b.params.threshold,
                b.params.window_seconds / 3600,
                b.known.len()
            ));
        }
        if let Some(l) = &self.long_connection {
            out.push(format!(
                "long_connection: a pair connected {} h or more within {} h; {} pairs known from training",
                l.params.threshold_seconds / 3600.0,
                l.params.window_seconds / 3600,
                l.known.len()
            ));
        }
        if let Some(s) = &self.scan {
            out.push(format!(
                "scan: {} hosts, or {} ports of one host, tried without answer within {} s by a {} source",
                s.sweep_hosts,
                s.scan_ports,
                s.window_seconds,
                if s.scan_external { "any" } else { "local" }
            ));
        }
        if let Some(d) = &self.dns_tunnel {
            out.push(format!(
                "dns_tunnel: {} distinct names under one domain within {} s, or {} NXDOMAIN answers to one host within {} s; {} domains known from training",
                d.params.distinct_names,
                d.params.window_seconds,
                d.params.nxdomain_answers,
                d.params.nxdomain_window_seconds,
                d.known.len()
            ));
        }
        out
    }
}

/// Learns a [`Baseline`] from the training records of one module.
#[derive(Debug)]
pub struct Learner {
    module: LogKind,
    beacon: Option<BaselineLearner>,
    long: Option<LongConnLearner>,
    dns: Option<DnsTunnelLearner>,
}

impl Learner {
    pub fn new(module: LogKind) -> Learner {
        let defaults = Baseline::defaults_for(module);
        Learner {
            module,
            beacon: defaults.beacon.map(|_| BaselineLearner::default()),
            long: defaults
                .long_connection
                .map(|l| LongConnLearner::new(l.params)),
            dns: defaults
                .dns_tunnel
                .map(|d| DnsTunnelLearner::new(&d.params)),
        }
    }

    pub fn observe(&mut self, record: &Record) {
        match Observation::of(self.module, record) {
            Some(Observation::Conn(c)) => {
                if let Some(b) = &mut self.beacon {
                    b.observe(c.src, c.dst, c.answered());
                }
                if let Some(l) = &mut self.long {
                    l.observe(&c);
                }
            }
            Some(Observation::Dns(d)) => {
                if let Some(l) = &mut self.dns {
                    l.observe(&d);
                }
            }
            None => {}
        }
    }

    pub fn finish(self) -> Baseline {
        let mut b = Baseline::defaults_for(self.module);
        if let (Some(k), Some(l)) = (&mut b.beacon, self.beacon) {
            k.known = l.finish(&k.params);
        }
        if let (Some(k), Some(l)) = (&mut b.long_connection, self.long) {
            k.known = l.finish();
        }
        if let (Some(k), Some(l)) = (&mut b.dns_tunnel, self.dns) {
            k.known = l.finish();
        }
        b
    }
}
