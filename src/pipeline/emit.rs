//! The last stage before the sink, the same in every mode: the lanes'
//! outputs in input order, scored records written as they come, and the
//! observations run through the detection stage, whose detections are
//! written right after the record that completed them.

use crate::alert::{Alert, AlertOptions, AlertStage, Reading};
use crate::allow::Allowlist;
use crate::detect::{DetectOptions, DetectStage, Detection, Observation};
use crate::log_kind::LogKind;
use crate::sink::{Sink, SinkError};

use super::lane::{Lane, Output, Throttle};
use super::replay::TopAnomalies;

/// Runs the detection stage between the lanes and the sink.
#[derive(Default)]
pub struct Emitter {
    detect: DetectStage,
    found: Vec<Detection>,
    logged: Throttle,
    /// The first detections, for a summary at the end of a replay.
    first: Vec<Detection>,
    /// The lanes' allowlist: matching detections are not written.
    allow: Option<Allowlist>,
    /// Detections the allowlist kept out.
    suppressed: u64,
    /// Detections written, per detector (the stage counts all it found,
    /// `--min-severity` and the allowlist included).
    written: std::collections::BTreeMap<crate::detect::DetectorKind, u64>,
    /// Folds flagged records and detections into alerts per host.
    alerts: Option<AlertStage>,
    /// Where alerts go when not into the records' sink.
    alert_sink: Option<Box<dyn Sink>>,
    /// Alerts made, not yet written.
    made: Vec<Alert>,
    /// Detections below this are not written (`--min-severity`).
    min_severity: crate::severity::Severity,
    /// The most severe closed alerts, for a summary at the end of a
    /// replay.
    top_alerts: Vec<Alert>,
}

impl Emitter {
    /// An emitter with the detectors of `lanes`' models that `opts`
    /// selects; the lanes start copying out observations for them, and,
    /// with `names` (an alert stage will follow), the names their records
    /// give servers.
    pub fn for_lanes<'a>(
        lanes: impl IntoIterator<Item = &'a mut Lane>,
        opts: &DetectOptions,
        names: bool,
    ) -> Emitter {
        let mut detect = DetectStage::new(opts);
        let mut allow = None;
        let mut min_severity = crate::severity::Severity::Low;
        let mut lanes: Vec<&mut Lane> = lanes.into_iter().collect();
        for lane in lanes.iter_mut() {
            if let Some(d) = lane.detectors(opts) {
                detect.add(lane.module(), d);
            }
            if allow.is_none() {
                allow = lane.allowlist_path().map(super::lane::open_allowlist);
            }
            min_severity = lane.min_severity();
        }
        // Lanes whose records name servers (TLS server names, HTTP Hosts,
        // DNS answers) copy them out for the alerts' peers
        // ([`crate::alert::names`]); not without alerts (a tenth more
        // time for a replay of DNS records).
        for lane in lanes.iter_mut().filter(|_| names) {
            if [LogKind::DNS, LogKind::SSL, LogKind::HTTP].contains(&lane.module()) {
                lane.observe_for_others();
            }
        }
        // Lanes whose records feed another module's detectors (conn_long's
        // feed conn's) copy out observations when that module has some.
        for lane in lanes {
            match crate::detect::observation::feeds(lane.module()) {
                Some(m) if detect.watches(m) => {
                    lane.observe_for_others();
                    detect.expect_reports(m);
                }
                Some(m) if opts.any() => tracing::warn!(
                    "{}: its records feed the {m} model's detectors, but {m} is not scored here: add {m} to --modules",
                    lane.module()
                ),
                _ => {}
            }
        }
        let mut e = Emitter::with_stage(detect);
        e.allow = allow;
        e.min_severity = min_severity;
        e
    }

    /// After `lane` switched to a new model: its detectors take that
    /// model's baseline (settings, and the pairs and domains normal at
    /// this site, learnt by the nightly training) and keep their state, as
    /// a resumed checkpoint does. They kept the first model's until a
    /// restart, so what the new model knows as normal was still reported.
    pub fn rebase(&mut self, lane: &mut Lane) {
        let Some(opts) = self.detect.options().cloned() else {
            return;
        };
        if let Some(fresh) = lane.detectors(&opts) {
            self.detect.rebase(lane.module(), fresh);
        }
    }

    /// Moves `other`'s allowlist (and minimum severity) here (a resumed
    /// emitter takes the fresh one's).
    pub fn take_allowlist(&mut self, other: &mut Emitter) {
        self.allow = other.allow.take();
        self.min_severity = other.min_severity;
    }

    /// Detections an allowlist rule kept from the output.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }

    /// The detections written, by detector, and how many an allowlist
    /// silenced, as one line: `detections: 2 beacon, 1 port_scan (3 more
    /// silenced by the allowlist)`. (The detectors' own counts include
    /// what was silenced and what `--min-severity` left out: a summary
    /// of those said "11 beacon" when none was written.)
    pub fn detections_line(&self) -> String {
        let parts: Vec<String> = self
            .written
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let mut line = if parts.is_empty() {
            "detections: none".to_owned()
        } else {
            format!("detections: {}", parts.join(", "))
        };
        if self.suppressed > 0 {
            line += &format!(" ({} more silenced by the allowlist)", self.suppressed);
        }
        line
    }

    /// Detections written so far, per detector (what `/metrics` counts).
    pub fn written(&self) -> &std::collections::BTreeMap<crate::detect::DetectorKind, u64> {
        &self.written
    }

    /// An emitter resuming a saved stage (a checkpoint's).
    pub fn with_stage(detect: DetectStage) -> Emitter {
        Emitter {
            detect,
            found: Vec::new(),
            logged: Throttle::default(),
            first: Vec::new(),
            allow: None,
            suppressed: 0,
            written: Default::default(),
            alerts: None,
            alert_sink: None,
            made: Vec::new(),
            min_severity: crate::severity::Severity::Low,
            top_alerts: Vec::new(),
        }
    }

    /// Folds what this emitter writes into alerts per host
    /// ([`crate::alert`]) for the log types `modules`, written to
    /// `sink` (`None`: beside the records). `hold_unstarted`: the log
    /// types are not all read from the start (replay).
    pub fn with_alerts(
        mut self,
        opts: AlertOptions,
        modules: &[LogKind],
        hold_unstarted: bool,
        sink: Option<Box<dyn Sink>>,
    ) -> Emitter {
        self.alerts = Some(AlertStage::new(opts, modules, hold_unstarted));
        self.alert_sink = sink;
        self
    }

    /// Continues a saved alert stage (a checkpoint's).
    pub fn resume_alerts(&mut self, saved: AlertStage, opts: AlertOptions, modules: &[LogKind]) {
        self.alerts = Some(saved.resumed(opts, modules));
    }

    /// The most severe closed alerts so far (at most [`Emitter::KEPT`]),
    /// most severe first.
    pub fn top_alerts(&self) -> &[Alert] {
        &self.top_alerts
    }

    /// The alert stage, for the checkpoint and the counters.
    pub fn alerts(&self) -> Option<&AlertStage> {
        self.alerts.as_ref()
    }

    /// The alerts' own output, to sync with the records'.
    pub fn alert_sink(&mut self) -> Option<&mut (dyn Sink + 'static)> {
        self.alert_sink.as_deref_mut()
    }

    /// Records how far `module` has been read, writing the alerts that
    /// the progress completes.
    pub fn progress(
        &mut self,
        module: LogKind,
        newest: f64,
        reading: Reading,
        sink: &mut dyn Sink,
    ) -> Result<(), SinkError> {
        if let Some(a) = &mut self.alerts {
            a.progress(module, newest, reading, &mut self.made);
        }
        self.write_alerts(sink)
    }

    /// The end of the input (replay, evaluation): every alert closes.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if let Some(a) = &mut self.alerts {
            a.finish(&mut self.made);
        }
        self.write_alerts(sink)?;
        if let Some(s) = &mut self.alert_sink {
            s.flush()?;
        }
        Ok(())
    }

    fn write_alerts(&mut self, sink: &mut dyn Sink) -> Result<(), SinkError> {
        if self.made.is_empty() {
            return Ok(());
        }
        let out: &mut dyn Sink = match &mut self.alert_sink {
            Some(s) => s.as_mut(),
            None => sink,
        };
        for a in self.made.drain(..) {
            out.write_alert(&a)?;
            if a.state == crate::alert::State::Closed {
                keep_top(&mut self.top_alerts, a);
            }
        }
        Ok(())
    }

    /// No detectors: only records are written (evaluation).
    pub fn records_only() -> Emitter {
        Emitter::default()
    }

    pub fn stage(&self) -> &DetectStage {
        &self.detect
    }

    /// The first [`Emitter::KEPT`] detections, in the order found.
    pub fn first_detections(&self) -> &[Detection] {
        &self.first
    }

    pub const KEPT: usize = 20;

    /// Runs the detectors on an observation from history (a warm-up):
    /// nothing is written; returns how many detections it completed.
    /// Gives the alerts' names book what `o` names (history read before a
    /// first start); whether it named something.
    pub fn learn_names(&mut self, o: &Observation) -> bool {
        let named = matches!(o, Observation::Name(_) | Observation::Dns(_));
        if let (true, Some(a)) = (named, &mut self.alerts) {
            a.learn_names(o);
            return true;
        }
        false
    }

    pub fn absorb(&mut self, o: &Observation) -> usize {
        self.detect.observe(o, &mut self.found);
        let n = self.found.len();
        self.found.clear();
        n
    }

    /// Writes `outputs` (drained) to `sink` in order, offering scored
    /// records to `top` and running observations through the detectors.
    pub fn emit(
        &mut self,
        outputs: &mut Vec<Output>,
        sink: &mut dyn Sink,
        mut top: Option<&mut TopAnomalies>,
    ) -> Result<(), SinkError> {
        for output in outputs.drain(..) {
            match output {
                Output::Scored(s) => {
                    if let Some(top) = top.as_deref_mut() {
                        top.offer(&s);
                    }
                    sink.write(&s)?;
                    if let Some(a) = &mut self.alerts {
                        a.offer_record(&s, &mut self.made);
                    }
                }
                Output::Observed(o) => {
                    if let Some(a) = &mut self.alerts {
                        a.learn_names(&o);
                    }
                    if let crate::detect::Observation::Name(_) = o {
                        continue;
                    }
                    self.detect.observe(&o, &mut self.found);
                    // `--min-severity`: detections below it are not
                    // written (nor alerted on).
                    let min = self.min_severity;
                    self.found.retain(|d| d.severity >= min);
                    if let Some(allow) = &mut self.allow {
                        allow.check();
                        let before = self.found.len();
                        self.found.retain(|d| !allow.silences_detection(d));
                        self.suppressed += (before - self.found.len()) as u64;
                    }
                    for d in self.found.drain(..) {
                        if self.logged.allow() {
                            tracing::info!(
                                "{}: {} {} ({})",
                                d.module,
                                d.detection,
                                crate::escape::terminal(&d.entity()),
                                d.measured()
                            );
                        }
                        sink.write_detection(&d)?;
                        *self.written.entry(d.detection).or_default() += 1;
                        if let Some(a) = &mut self.alerts {
                            a.offer_detection(&d, &mut self.made);
                        }
                        if self.first.len() < Self::KEPT {
                            self.first.push(d);
                        }
                    }
                }
            }
        }
        self.write_alerts(sink)
    }
}

/// Keeps `a` among the [`Emitter::KEPT`] most severe (then largest, then
/// first) alerts.
fn keep_top(top: &mut Vec<Alert>, a: Alert) {
    let key = |a: &Alert| {
        (
            std::cmp::Reverse(a.severity),
            std::cmp::Reverse(a.records + a.detections),
        )
    };
    let at = top.partition_point(|t| key(t) <= key(&a));
    if at < Emitter::KEPT {
        top.insert(at, a);
        top.truncate(Emitter::KEPT);
    }
}
