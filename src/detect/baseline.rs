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
use super::upload::{KnownVolume, UploadLearner, UploadParams};
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
    /// A model trained before this detector has none: it runs with its
    /// defaults and knows no pairs until the next training (the lane says
    /// so at start).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "upload_baseline"
    )]
    pub large_upload: Option<Known<UploadParams, KnownVolume>>,
}

fn upload_baseline<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Known<UploadParams, KnownVolume>>, D::Error> {
    super::lenient_part("the model's large_upload baseline", d)
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
                large_upload: Some(Known {
                    params: UploadParams::default(),
                    known: Vec::new(),
                }),
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
        if let Some(u) = &self.large_upload {
            let p = &u.params;
            let positive = |v: f64| v.partial_cmp(&0.0) == Some(std::cmp::Ordering::Greater);
            if too_many(u.known.len())
                || u.known.iter().any(|k| !(k.2 >= 0.0 && k.2.is_finite()))
                || !positive(p.threshold_bytes)
                || !(p.min_ratio >= 0.0 && p.min_ratio.is_finite())
                || p.window_seconds == 0
                || p.max_pairs == 0
            {
                return Err((
                    "detectors.large_upload",
                    "out of range (a positive threshold and window, a ratio of 0 or more, at most 100000 known pairs, each with a finite number of bytes)"
                        .into(),
                ));
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
        if let Some(u) = &self.large_upload {
            out.push(format!(
                "large_upload: a local host sending one outside host {} or more within {} h, at least {} times what it received; {} pairs known from training (each reported past twice the most it sent within a day there)",
                crate::score::bytes(u.params.threshold_bytes),
                u.params.window_seconds / 3600,
                u.params.min_ratio,
                u.known.len()
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
    upload: Option<UploadLearner>,
    plausible: crate::plausible::Plausible,
}

impl Learner {
    pub fn new(module: LogKind) -> Learner {
        let defaults = Baseline::defaults_for(module);
        Learner {
            plausible: Default::default(),
            module,
            beacon: defaults.beacon.map(|_| BaselineLearner::default()),
            long: defaults
                .long_connection
                .map(|l| LongConnLearner::new(l.params)),
            dns: defaults
                .dns_tunnel
                .map(|d| DnsTunnelLearner::new(&d.params)),
            upload: defaults.large_upload.map(|u| UploadLearner::new(u.params)),
        }
    }

    pub fn observe(&mut self, record: &Record) {
        let observation = Observation::of(self.module, record);
        // Times the detectors do not believe when scoring
        // ([`crate::plausible`]) are not learnt from either: one record
        // dated 2100 held a pair's or a domain's window open for the whole
        // history, which then reached the threshold and was learnt as
        // normal, never to be reported.
        if observation
            .as_ref()
            .is_some_and(|o| !self.plausible.believes(o.ts()))
        {
            return;
        }
        match observation {
            Some(Observation::Conn(c)) => {
                if let Some(b) = &mut self.beacon {
                    b.observe(c.src, c.dst, c.answered());
                }
                if let Some(l) = &mut self.long {
                    l.observe(&c);
                }
                if let Some(u) = &mut self.upload {
                    u.observe(&c);
                }
            }
            Some(Observation::Dns(d)) => {
                if let Some(l) = &mut self.dns {
                    l.observe(&d);
                }
            }
            // Names are the alerts' (no detector learns them).
            Some(Observation::Name(_)) | None => {}
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
        if let (Some(k), Some(l)) = (&mut b.large_upload, self.upload) {
            k.known = l.finish();
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large_upload baseline of another format (known pairs without
    /// their volume, from a build between releases) is left out, and the
    /// model's other detectors load.
    #[test]
    fn an_upload_baseline_of_another_format_is_left_out() {
        let mut b = serde_json::to_value(Baseline::defaults_for(LogKind::CONN)).unwrap();
        b["large_upload"]["known"] = serde_json::json!([["10.0.0.5", "203.0.113.9"]]);
        let read: Baseline = serde_json::from_value(b.clone()).unwrap();
        assert!(read.large_upload.is_none() && read.beacon.is_some());
        b["large_upload"]["known"] = serde_json::json!([["10.0.0.5", "203.0.113.9", 2e9]]);
        let read: Baseline = serde_json::from_value(b).unwrap();
        assert_eq!(read.large_upload.unwrap().known.len(), 1);
    }
    use crate::zeek::Value;

    /// The example conn record `r` at `ts`, with its own uid and lasting
    /// half an hour.
    fn at(r: &Record, ts: f64, uid: &str) -> Record {
        let s = r.schema();
        let mut values = r.values().to_vec();
        values[s.index_of("ts").unwrap()] = Value::Real(ts);
        values[s.index_of("uid").unwrap()] = Value::Str(uid.into());
        values[s.index_of("duration").unwrap()] = Value::Real(1800.0);
        Record::new(s.clone(), values, r.line())
    }

    /// Training takes no time the detectors do not believe when scoring:
    /// one record of a pair dated 2100 held the pair's window open for
    /// the whole history, so half an hour a day for two weeks reached the
    /// long-connection threshold and the pair was learnt as normal.
    #[test]
    fn a_time_not_believed_teaches_nothing() {
        let records = crate::zeek::testutil::example_records("conn");
        let r = &records[0];
        let known = |glitch: Option<f64>| {
            let mut l = Learner::new(LogKind::CONN);
            if let Some(ts) = glitch {
                l.observe(&at(r, ts, "Cglitch"));
            }
            for day in 0..14 {
                let ts = 1_713_571_200.0 + f64::from(day) * 86_400.0;
                l.observe(&at(r, ts, &format!("C{day}")));
            }
            l.finish().long_connection.unwrap().known
        };
        assert!(known(None).is_empty());
        for glitch in [4_102_444_800.0, 1e200] {
            assert!(known(Some(glitch)).is_empty(), "after a record at {glitch}");
        }
    }
}
