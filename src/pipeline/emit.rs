//! The last stage before the sink, the same in every mode: the lanes'
//! outputs in input order, scored records written as they come, and the
//! observations run through the detection stage, whose detections are
//! written right after the record that completed them.

use crate::allow::Allowlist;
use crate::detect::{DetectOptions, DetectStage, Detection, Observation};
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
}

impl Emitter {
    /// An emitter with the detectors of `lanes`' models that `opts`
    /// selects; the lanes start copying out observations for them.
    pub fn for_lanes<'a>(
        lanes: impl IntoIterator<Item = &'a mut Lane>,
        opts: &DetectOptions,
    ) -> Emitter {
        let mut detect = DetectStage::new(opts);
        let mut allow = None;
        let mut lanes: Vec<&mut Lane> = lanes.into_iter().collect();
        for lane in lanes.iter_mut() {
            if let Some(d) = lane.detectors(opts) {
                detect.add(lane.module(), d);
            }
            if allow.is_none() {
                allow = lane.allowlist_path().and_then(super::lane::open_allowlist);
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
        e
    }

    /// Moves `other`'s allowlist here (a resumed emitter takes the fresh
    /// one's).
    pub fn take_allowlist(&mut self, other: &mut Emitter) {
        self.allow = other.allow.take();
    }

    /// Detections an allowlist rule kept from the output.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
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
        }
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
                }
                Output::Observed(o) => {
                    self.detect.observe(&o, &mut self.found);
                    if let Some(allow) = &mut self.allow {
                        allow.check();
                        let before = self.found.len();
                        self.found.retain(|d| !allow.silences_detection(d));
                        self.suppressed += (before - self.found.len()) as u64;
                    }
                    for d in self.found.drain(..) {
                        if self.logged.allow() {
                            tracing::info!(
                                "{}: {} {} (score {:.3}, threshold {})",
                                d.module,
                                d.detection,
                                crate::escape::terminal(&d.entity()),
                                d.score,
                                d.threshold
                            );
                        }
                        sink.write_detection(&d)?;
                        if self.first.len() < Self::KEPT {
                            self.first.push(d);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
