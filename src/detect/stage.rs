//! The detection stage: every module's detectors, fed the observations
//! of scored records in input order, in every mode. Its whole state
//! serialises, so live mode checkpoints it with the offsets and a restart
//! continues exactly where the output stopped.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::beacon::BeaconDetector;
use super::detection::{Detection, DetectorKind};
use super::dns_tunnel::DnsTunnelDetector;
use super::long_conn::LongConnDetector;
use super::observation::Observation;
use super::scan::ScanDetector;
use super::upload::UploadDetector;
use crate::features::LocalNets;
use crate::log_kind::LogKind;

/// Which detectors run and the overrides of the model's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectOptions {
    /// The detectors that run (default all).
    pub enabled: Vec<DetectorKind>,
    /// Watch scans by sources outside the site's networks too.
    pub scan_external: bool,
    /// Overrides of the thresholds and windows the models carry.
    #[serde(default)]
    pub overrides: Overrides,
}

/// Thresholds and windows that replace the model's, at scoring time
/// (`azw-infer --beacon-threshold` and the like); `None` keeps the
/// model's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    pub beacon_threshold: Option<f64>,
    pub long_connection_seconds: Option<f64>,
    pub scan_window_seconds: Option<u32>,
    pub sweep_hosts: Option<usize>,
    pub scan_ports: Option<usize>,
    pub dns_tunnel_names: Option<usize>,
    pub nxdomain_answers: Option<u64>,
    #[serde(default)]
    pub upload_bytes: Option<f64>,
}

impl Overrides {
    /// The baseline with these settings in place, checked like a model's.
    pub fn apply(&self, baseline: &Baseline) -> Result<Baseline, String> {
        let mut b = baseline.clone();
        if let Some(k) = &mut b.beacon {
            k.params.threshold = self.beacon_threshold.unwrap_or(k.params.threshold);
        }
        if let Some(k) = &mut b.long_connection {
            let p = &mut k.params;
            p.threshold_seconds = self.long_connection_seconds.unwrap_or(p.threshold_seconds);
        }
        if let Some(p) = &mut b.scan {
            p.window_seconds = self.scan_window_seconds.unwrap_or(p.window_seconds);
            p.sweep_hosts = self.sweep_hosts.unwrap_or(p.sweep_hosts);
            p.scan_ports = self.scan_ports.unwrap_or(p.scan_ports);
        }
        if let Some(k) = &mut b.dns_tunnel {
            let p = &mut k.params;
            p.distinct_names = self.dns_tunnel_names.unwrap_or(p.distinct_names);
            p.nxdomain_answers = self.nxdomain_answers.unwrap_or(p.nxdomain_answers);
        }
        if let Some(k) = &mut b.large_upload {
            let p = &mut k.params;
            p.threshold_bytes = self.upload_bytes.unwrap_or(p.threshold_bytes);
        }
        b.check()
            .map_err(|(field, why)| format!("{field}: {why}"))?;
        Ok(b)
    }
}

impl Default for DetectOptions {
    fn default() -> Self {
        let mut enabled = DetectorKind::ALL.to_vec();
        enabled.sort();
        DetectOptions {
            enabled,
            scan_external: false,
            overrides: Overrides::default(),
        }
    }
}

impl DetectOptions {
    /// Nothing runs (`--detectors none`).
    pub fn none() -> DetectOptions {
        DetectOptions {
            enabled: Vec::new(),
            scan_external: false,
            overrides: Overrides::default(),
        }
    }

    /// Parses `--detectors`: `all`, `none`, or names separated by commas
    /// (`beacon,dns_tunnel`; `scan` means both host_sweep and port_scan).
    pub fn parse(list: &str) -> Result<DetectOptions, String> {
        let mut enabled = Vec::new();
        for name in list
            .split(|c: char| c == ',' || c.is_whitespace())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let add: Vec<DetectorKind> = match name.to_ascii_lowercase().as_str() {
                "all" => DetectorKind::ALL.to_vec(),
                "none" => Vec::new(),
                "scan" => vec![DetectorKind::HostSweep, DetectorKind::PortScan],
                other => match DetectorKind::ALL.into_iter().find(|k| k.name() == other) {
                    Some(k) => vec![k],
                    None => {
                        let names: Vec<&str> = DetectorKind::ALL.iter().map(|k| k.name()).collect();
                        return Err(format!(
                            "unknown detector `{name}`: choose all, none, scan or some of {}",
                            names.join(", ")
                        ));
                    }
                },
            };
            for k in add {
                if !enabled.contains(&k) {
                    enabled.push(k);
                }
            }
        }
        enabled.sort();
        Ok(DetectOptions {
            enabled,
            ..DetectOptions::none()
        })
    }

    pub fn any(&self) -> bool {
        !self.enabled.is_empty()
    }

    fn on(&self, kind: DetectorKind) -> bool {
        self.enabled.contains(&kind)
    }
}

/// One module's detectors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ModuleDetectors {
    beacon: Option<BeaconDetector>,
    long_connection: Option<LongConnDetector>,
    scan: Option<ScanDetector>,
    dns_tunnel: Option<DnsTunnelDetector>,
    #[serde(default, deserialize_with = "upload_state")]
    large_upload: Option<UploadDetector>,
}

fn upload_state<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<UploadDetector>, D::Error> {
    super::lenient_part("the large_upload detector's saved state", d)
}

impl ModuleDetectors {
    /// The detectors a model's baseline describes, as `opts` selects them.
    pub fn new(baseline: &Baseline, local: &LocalNets, opts: &DetectOptions) -> ModuleDetectors {
        ModuleDetectors {
            beacon: baseline
                .beacon
                .as_ref()
                .filter(|_| opts.on(DetectorKind::Beacon))
                .map(|b| BeaconDetector::new(b.params.clone()).with_known(b.known.iter().copied())),
            long_connection: baseline
                .long_connection
                .as_ref()
                .filter(|_| opts.on(DetectorKind::LongConnection))
                .map(|l| {
                    LongConnDetector::new(l.params.clone()).with_known(l.known.iter().copied())
                }),
            scan: baseline
                .scan
                .as_ref()
                .filter(|_| opts.on(DetectorKind::HostSweep) || opts.on(DetectorKind::PortScan))
                .map(|s| {
                    let mut params = s.clone();
                    params.scan_external |= opts.scan_external;
                    ScanDetector::new(params, local.clone())
                }),
            dns_tunnel: baseline
                .dns_tunnel
                .as_ref()
                .filter(|_| {
                    opts.on(DetectorKind::DnsTunnel) || opts.on(DetectorKind::NxdomainBurst)
                })
                .map(|d| {
                    DnsTunnelDetector::new(d.params.clone()).with_known(d.known.iter().cloned())
                }),
            large_upload: baseline
                .large_upload
                .as_ref()
                .filter(|_| opts.on(DetectorKind::LargeUpload))
                .map(|u| {
                    UploadDetector::new(u.params.clone(), local.clone())
                        .with_known(u.known.iter().copied())
                }),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.beacon.is_none()
            && self.long_connection.is_none()
            && self.scan.is_none()
            && self.dns_tunnel.is_none()
            && self.large_upload.is_none()
    }

    /// Keeps this state for the detectors `fresh` has, with `fresh`'s
    /// settings and known entities; detectors only `fresh` has start
    /// empty, those it lacks are dropped.
    fn resume(&mut self, fresh: ModuleDetectors) {
        fn keep<D>(saved: &mut Option<D>, fresh: Option<D>, take: impl FnOnce(&mut D, D)) {
            *saved = match (saved.take(), fresh) {
                (Some(mut s), Some(f)) => {
                    take(&mut s, f);
                    Some(s)
                }
                (_, f) => f,
            };
        }
        keep(
            &mut self.beacon,
            fresh.beacon,
            BeaconDetector::take_baseline,
        );
        keep(
            &mut self.long_connection,
            fresh.long_connection,
            LongConnDetector::take_baseline,
        );
        keep(&mut self.scan, fresh.scan, ScanDetector::take_baseline);
        keep(
            &mut self.dns_tunnel,
            fresh.dns_tunnel,
            DnsTunnelDetector::take_baseline,
        );
        keep(
            &mut self.large_upload,
            fresh.large_upload,
            UploadDetector::take_baseline,
        );
    }

    /// conn_long reports feed these detectors (see
    /// [`LongConnDetector::expect_reports`]).
    pub fn expect_reports(&mut self) {
        if let Some(l) = &mut self.long_connection {
            l.expect_reports();
        }
    }

    fn observe(&mut self, o: &Observation, out: &mut Vec<Detection>) {
        match o {
            // An interim report of an open connection is the same
            // connection again: only the long-connection detector, which
            // counts each uid once, may see it. (Not large_upload: replay
            // reads conn.log, then conn_long.log, so the reports of a day
            // come after the final records of the days after it, out of
            // time order for a sliding window; see upload.rs.)
            Observation::Conn(c) if c.open => {
                out.extend(self.long_connection.as_mut().and_then(|d| d.observe(c)));
            }
            Observation::Conn(c) => {
                out.extend(self.beacon.as_mut().and_then(|d| d.observe(c)));
                out.extend(self.long_connection.as_mut().and_then(|d| d.observe(c)));
                out.extend(self.scan.as_mut().and_then(|d| d.observe(c)));
                out.extend(self.large_upload.as_mut().and_then(|d| d.observe(c)));
            }
            Observation::Dns(d) => {
                if let Some(det) = &mut self.dns_tunnel {
                    out.extend(det.observe(d));
                }
            }
            Observation::Name(_) => {}
        }
    }
}

/// Every module's detectors. (What they found is counted where it is
/// written: [`crate::pipeline::Emitter::detections_line`]. A checkpoint
/// from before holds a `found` count too, which is passed over.)
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DetectStage {
    modules: BTreeMap<LogKind, ModuleDetectors>,
    /// The selection the stage was built with, so a checkpoint taken with
    /// other settings is not resumed as if it matched.
    options: Option<DetectOptions>,
    /// Records whose time is not believed ([`crate::plausible`]), left
    /// out: one dated in the far future would become every window's
    /// newest time (and the beacon detector's, saved in checkpoints) and
    /// keep it, shutting a detector off or keeping windows open for ever.
    #[serde(default, skip_serializing_if = "is_zero")]
    unbelieved: u64,
    #[serde(skip)]
    plausible: crate::plausible::Plausible,
}

/// Detectors added since checkpoints began to save the selection: a saved
/// selection that is the fresh one without them is the same choice (`all`
/// before they existed, `all` now), and they start empty. Otherwise every
/// upgrade that adds a detector threw the others' state away ("ran with
/// other --detectors settings") though nothing was changed.
const ADDED_SINCE: [DetectorKind; 1] = [DetectorKind::LargeUpload];

fn same_choice(saved: Option<&DetectOptions>, fresh: Option<&DetectOptions>) -> bool {
    match (saved, fresh) {
        (Some(s), Some(f)) if s != f => {
            let mut f = f.clone();
            f.enabled
                .retain(|k| s.enabled.contains(k) || !ADDED_SINCE.contains(k));
            *s == f
        }
        (s, f) => s == f,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DetectStage {
    pub fn new(opts: &DetectOptions) -> DetectStage {
        DetectStage {
            options: Some(opts.clone()),
            ..DetectStage::default()
        }
    }

    /// Adds a module's detectors (from its model's baseline); a module
    /// without any is left out.
    pub fn add(&mut self, module: LogKind, detectors: ModuleDetectors) {
        if !detectors.is_empty() {
            self.modules.insert(module, detectors);
        }
    }

    /// Another lane's records feed `module`'s detectors (conn_long's,
    /// conn's).
    pub fn expect_reports(&mut self, module: LogKind) {
        if let Some(d) = self.modules.get_mut(&module) {
            d.expect_reports();
        }
    }

    /// True when `module` has detectors.
    pub fn watches(&self, module: LogKind) -> bool {
        self.modules.contains_key(&module)
    }

    /// True when some module has detectors (a stage worth saving).
    pub fn is_active(&self) -> bool {
        !self.modules.is_empty()
    }

    /// A saved stage continued with the detectors of `fresh` (built from
    /// the models now in use): the state of each module `fresh` has is
    /// kept, with `fresh`'s settings and known entities. `None` when the
    /// saved stage ran with other detector options.
    pub fn resume(mut self, fresh: DetectStage) -> Option<DetectStage> {
        if !same_choice(self.options.as_ref(), fresh.options.as_ref()) {
            return None;
        }
        self.options = fresh.options;
        let mut modules = BTreeMap::new();
        for (module, f) in fresh.modules {
            let mut d = self.modules.remove(&module).unwrap_or_default();
            d.resume(f);
            modules.insert(module, d);
        }
        self.modules = modules;
        Some(self)
    }

    /// Gives `module`'s detectors `fresh`'s settings and known entities
    /// (a new model's), keeping their state ([`ModuleDetectors::resume`]).
    pub fn rebase(&mut self, module: LogKind, fresh: ModuleDetectors) {
        let d = self.modules.entry(module).or_default();
        d.resume(fresh);
        if d.is_empty() {
            self.modules.remove(&module);
        }
    }

    pub fn options(&self) -> Option<&DetectOptions> {
        self.options.as_ref()
    }

    /// Runs the module's detectors on one observation, appending what they
    /// find to `out`.
    pub fn observe(&mut self, o: &Observation, out: &mut Vec<Detection>) {
        if !self.modules.contains_key(&o.module()) {
            return;
        }
        // Counted here, logged by the lane that read it.
        if !self.plausible.believes(o.ts()) {
            self.unbelieved += 1;
            return;
        }
        if let Some(d) = self.modules.get_mut(&o.module()) {
            let before = out.len();
            d.observe(o, out);
            // One detector finds two kinds (sweeps and port scans, tunnels
            // and NXDOMAIN bursts): only the kinds asked for are reported.
            if let Some(opts) = &self.options {
                let mut i = before;
                while i < out.len() {
                    if opts.on(out[i].detection) {
                        i += 1;
                    } else {
                        out.remove(i);
                    }
                }
            }
            for found in &mut out[before..] {
                found.severity = found.graded();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::beacon::BeaconParams;
    use crate::detect::long_conn::LongConnParams;
    use crate::detect::testkit::{conn, ip};

    /// A beacon's detections, with one record dated `glitch` from another
    /// host among its first hour's, the stage saved and restored after it.
    fn beacon_detections(glitch: Option<f64>) -> (Vec<(u64, DetectorKind)>, u64) {
        let mut stage = DetectStage::new(&DetectOptions::default());
        stage.add(
            LogKind::CONN,
            ModuleDetectors {
                beacon: Some(BeaconDetector::new(BeaconParams::default())),
                long_connection: Some(LongConnDetector::new(LongConnParams::default())),
                ..ModuleDetectors::default()
            },
        );
        let (bot, c2) = (ip("10.0.0.5"), ip("203.0.113.7"));
        let start = 1_713_571_200.0;
        let mut found = Vec::new();
        for i in 0..600u32 {
            let t = start + f64::from(i) * 300.0 + f64::from(i * 7 % 11);
            if i == 10 {
                if let Some(ts) = glitch {
                    let other = conn(ip("10.0.0.9"), ip("198.51.100.1"), ts, 500.0, true);
                    stage.observe(&Observation::Conn(other), &mut found);
                    let saved = serde_json::to_string(&stage).unwrap();
                    stage = serde_json::from_str(&saved).unwrap();
                }
            }
            let beat = conn(bot, c2, t, 1049.0, true);
            stage.observe(&Observation::Conn(beat), &mut found);
        }
        let found = found.iter().map(|d| (d.ts as u64, d.detection)).collect();
        (found, stage.unbelieved)
    }

    /// A new model's baseline reaches running detectors (a hot reload):
    /// the beacon it knows as normal is no longer reported, and the pairs
    /// the detector was tracking stay.
    #[test]
    fn a_new_models_baseline_reaches_the_running_detectors() {
        let (bot, c2) = (ip("10.0.0.5"), ip("203.0.113.7"));
        let beacon = || BeaconDetector::new(BeaconParams::default());
        let mut stage = DetectStage::new(&DetectOptions::default());
        stage.add(
            LogKind::CONN,
            ModuleDetectors {
                beacon: Some(beacon()),
                long_connection: Some(LongConnDetector::new(LongConnParams::default())),
                ..ModuleDetectors::default()
            },
        );
        // conn_long's reports feed conn's long-connection detector.
        stage.expect_reports(LogKind::CONN);
        let start = 1_713_571_200.0;
        let beats = |stage: &mut DetectStage, from: u32, to: u32| {
            let mut found = Vec::new();
            for i in from..to {
                let t = start + f64::from(i) * 300.0 + f64::from(i * 7 % 11);
                let beat = conn(bot, c2, t, 1049.0, true);
                stage.observe(&Observation::Conn(beat), &mut found);
            }
            found
        };
        assert!(!beats(&mut stage, 0, 300).is_empty());
        let tracked = |stage: &DetectStage| {
            stage.modules[&LogKind::CONN]
                .beacon
                .as_ref()
                .unwrap()
                .tracked()
                .0
        };
        let before = tracked(&stage);
        stage.rebase(
            LogKind::CONN,
            ModuleDetectors {
                beacon: Some(beacon().with_known([(bot, c2)])),
                long_connection: Some(LongConnDetector::new(LongConnParams::default())),
                ..ModuleDetectors::default()
            },
        );
        assert_eq!(tracked(&stage), before, "the state stays");
        let long = stage.modules[&LogKind::CONN].long_connection.as_ref();
        assert!(long.unwrap().expects_reports(), "conn_long still feeds it");
        let after = beats(&mut stage, 300, 900);
        assert!(after.is_empty(), "{after:?}");
        // A model with no detector for the module takes them away.
        stage.rebase(LogKind::CONN, ModuleDetectors::default());
        assert!(!stage.watches(LogKind::CONN));
    }

    /// A checkpoint saved with every detector of its day resumes under
    /// today's `all`, whose new detector starts empty (an upgrade threw
    /// every detector's state away); another choice still does not.
    #[test]
    fn a_checkpoint_of_all_before_a_new_detector_resumes_under_all() {
        let saved_with = |enabled: Vec<DetectorKind>| {
            let opts = DetectOptions {
                enabled,
                ..DetectOptions::default()
            };
            let mut stage = DetectStage::new(&opts);
            stage.add(
                LogKind::CONN,
                ModuleDetectors {
                    beacon: Some(BeaconDetector::new(BeaconParams::default())),
                    ..ModuleDetectors::default()
                },
            );
            let beat = conn(
                ip("10.0.0.5"),
                ip("203.0.113.7"),
                1_713_571_200.0,
                1049.0,
                true,
            );
            stage.observe(&Observation::Conn(beat), &mut Vec::new());
            // As an older build wrote it: no large_upload anywhere.
            let json = serde_json::to_string(&stage)
                .unwrap()
                .replace(r#","large_upload":null"#, "")
                .replace(r#","upload_bytes":null"#, "");
            assert!(!json.contains("upload"), "{json}");
            serde_json::from_str::<DetectStage>(&json).unwrap()
        };
        let fresh = || {
            let mut stage = DetectStage::new(&DetectOptions::default());
            stage.add(
                LogKind::CONN,
                ModuleDetectors {
                    beacon: Some(BeaconDetector::new(BeaconParams::default())),
                    large_upload: Some(UploadDetector::new(
                        Default::default(),
                        LocalNets::default(),
                    )),
                    ..ModuleDetectors::default()
                },
            );
            stage
        };
        let before: Vec<DetectorKind> = DetectorKind::ALL
            .into_iter()
            .filter(|k| !ADDED_SINCE.contains(k))
            .collect();
        let resumed = saved_with(before).resume(fresh()).expect("the same choice");
        let conn = &resumed.modules[&LogKind::CONN];
        assert_eq!(
            conn.beacon.as_ref().unwrap().tracked().0,
            1,
            "the beacon's state stays"
        );
        assert!(conn.large_upload.is_some(), "the new detector runs, empty");
        assert_eq!(resumed.options, Some(DetectOptions::default()));
        assert!(saved_with(vec![DetectorKind::Beacon])
            .resume(fresh())
            .is_none());

        // A large_upload state of another format (a build between
        // releases) is left out; the other detectors keep theirs.
        let mut saved = serde_json::to_value(fresh()).unwrap();
        let conn = &mut saved["modules"]["CONN"];
        conn["large_upload"] = serde_json::json!({"pairs": {"entries": [[1, true]]}});
        let read: DetectStage = serde_json::from_value(saved).unwrap();
        let conn = &read.modules[&LogKind::CONN];
        assert!(conn.beacon.is_some() && conn.large_upload.is_none());
    }

    /// A record dated in 2100 (a clock glitch, a forged line), before
    /// 1970 or not a number is left out of the detectors: it had made the
    /// beacon detector's newest time 2100 for good (saved in checkpoints),
    /// so no beacon was found again.
    #[test]
    fn a_record_from_the_far_future_shuts_no_detector_off() {
        let (want, none) = beacon_detections(None);
        assert!(
            want.iter().any(|(_, k)| *k == DetectorKind::Beacon),
            "{want:?}"
        );
        assert_eq!(none, 0);
        for glitch in [4_102_444_800.0, 1e200, -1e200, f64::NAN, f64::INFINITY] {
            let (got, unbelieved) = beacon_detections(Some(glitch));
            assert_eq!(got, want, "after a record at {glitch}");
            assert_eq!(unbelieved, 1);
        }
        // A time within the day ahead is believed.
        let soon = crate::plausible::latest() - 3_600.0;
        assert_eq!(beacon_detections(Some(soon)).1, 0);
    }
}
