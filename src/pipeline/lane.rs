//! A lane: one log type's stage from parsed lines to the scored records
//! that reach the output. It holds the scorer, the model reloader, the
//! output filter and the counters, so that replay, live following, Kafka
//! consumption, `azw-eval` and the benchmarks all score the same way.
//!
//! Sources differ in where lines come from and how progress is recorded;
//! everything a record goes through between being parsed and being handed
//! to a [`crate::sink::Sink`] is here, once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::allow::{Action, Allowlist, Rules};

use crate::detect::observation::ObservationColumns;
use crate::detect::{Baseline, DetectOptions, DetectorKind, ModuleDetectors, Observation};
use crate::features::ContextState;
use crate::kitnet::KitNetError;
use crate::log_kind::LogKind;
use crate::model::{self, Model, ModelError};
use crate::reload::Reloader;
use crate::score::{RecordOptions, ScoredRecord, Scorer};
use crate::zeek::{Parsed, ReadError, Record};

/// How a lane filters and reloads.
#[derive(Debug, Clone, Default)]
pub struct LaneOptions {
    /// Hand out only the records flagged as anomalies (all are counted).
    pub only_anomalies: bool,
    /// How often the model file is checked for a replacement; `None`
    /// never reloads (replay, evaluation).
    pub reload_every: Option<Duration>,
    /// Rules that drop records or keep them from alerting, re-read when
    /// the file changes ([`crate::allow`]).
    pub allowlist: Option<PathBuf>,
    /// What each scored record carries besides its score (context
    /// fields, Community ID seed).
    pub record: RecordOptions,
}

/// Counters of one lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaneStats {
    /// Data lines (or messages) that reached the lane: records and
    /// malformed lines, not headers. The same count in every mode.
    pub lines: u64,
    pub scored: u64,
    /// Malformed lines and records that could not be scored.
    pub skipped: u64,
    /// Of `skipped`: lines (messages) that are not a record of this log
    /// type (cut, bad values, over the line cap).
    pub malformed: u64,
    /// Of `skipped`: records the model could not score.
    pub unscorable: u64,
    /// The newest record time read, in whole seconds (0 before the
    /// first): how far behind real time the stream is.
    pub newest_ts: u64,
    pub anomalies: u64,
    /// Records handed out for the output.
    pub written: u64,
    pub model_reloads: u64,
    /// Records an allowlist rule dropped before scoring.
    pub dropped: u64,
    /// Anomalies an allowlist rule kept from alerting (written as normal
    /// records, not counted in `anomalies`).
    pub unalerted: u64,
    /// How many bytes the live file has beyond what was read (live mode).
    pub lag_bytes: u64,
}

/// What a lane hands on for one record, in this order: the scored record
/// (when it goes to the output), then what the detectors take from it
/// (when some detector watches this log type). Sources pass outputs to
/// [`super::Emitter`] in input order, which writes the records and runs
/// the detectors.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one of these a record; a box would be an allocation each
pub enum Output {
    Scored(ScoredRecord),
    Observed(Observation),
}

/// What a [`LaneWorker`] made of one line, for [`Lane::take`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // nearly every line is a record
pub enum Scored {
    /// A record: its time, line number, score (or why it has none) and,
    /// when some detector watches this log type and it scored, what the
    /// detectors take from it.
    Record {
        ts: Option<f64>,
        line: u64,
        result: Result<ScoredRecord, KitNetError>,
        observation: Option<Observation>,
        /// An anomaly an allowlist rule kept from alerting (written as
        /// an ordinary record).
        silenced: bool,
    },
    /// A record an allowlist rule dropped before scoring: not scored,
    /// written or watched; its time still counts.
    Dropped { ts: Option<f64> },
    /// A line that is not a record of this log type, and why.
    Malformed(String),
}

/// The stateless half of a lane: scoring with a trained model needs no
/// state that another record changes, so several workers (threads) can
/// score the lines of one stream, each a block at a time, while the
/// [`Lane`] applies everything that depends on the order (counters,
/// filtering, warnings) as it [`Lane::take`]s the results in input order.
#[derive(Clone)]
pub struct LaneWorker {
    scorer: Scorer,
    observe: bool,
    observe_columns: ObservationColumns,
    results: Vec<Result<ScoredRecord, KitNetError>>,
}

impl LaneWorker {
    /// Records scored together by [`Scorer::score_block`]: enough to fill
    /// the block pass, few enough that their feature vectors stay in cache.
    pub const BLOCK: usize = 64;

    /// Scores `lines` (a reader's output, fatal errors left out), appending
    /// one [`Scored`] per line to `out`, in order. The lines are only
    /// borrowed, so that the thread that read them can free them:
    /// allocator arenas are per thread, and freeing another thread's memory
    /// in bulk was measured at a tenth of replay's time.
    /// `vectors`: the records' feature vectors, one after the other, their
    /// context features made on the reading thread (a model with context
    /// features: [`crate::features::Encoder::encode_context`]); completed
    /// here. `dropped`: per line, whether an allowlist rule dropped it on
    /// the reading thread (it has no vector); `rules`: the allowlist's
    /// rules that judged them, for its `no_alert` rules.
    pub fn score(
        &mut self,
        lines: &[Result<Record, ReadError>],
        dropped: &[bool],
        rules: Option<&Rules>,
        mut vectors: Option<&mut [f64]>,
        out: &mut Vec<Scored>,
    ) {
        let module = self.scorer.module();
        let is_dropped = |i: usize| dropped.get(i).copied().unwrap_or(false);
        let records: Vec<&Record> = kept_records(lines, dropped).collect();
        self.results.clear();
        let n = self.scorer.encoder().len();
        for (b, block) in records.chunks(Self::BLOCK).enumerate() {
            let at = b * Self::BLOCK * n;
            match vectors
                .as_deref_mut()
                .and_then(|v| v.get_mut(at..at + block.len() * n))
            {
                Some(v) => self
                    .scorer
                    .score_context_encoded(block, v, &mut self.results),
                None => self.scorer.score_block(block, &mut self.results),
            }
        }
        drop(records);
        let observe = self.observe;
        let mut results = self.results.drain(..);
        for (i, line) in lines.iter().enumerate() {
            out.push(match line {
                Ok(record) if is_dropped(i) => Scored::Dropped { ts: record.ts() },
                Ok(record) => {
                    // One result per record (`score_block`'s contract); a
                    // missing one would be a bug, counted as unscorable.
                    let mut result = results.next().unwrap_or_else(|| {
                        Err(KitNetError::NotTrained("no result for this record".into()))
                    });
                    let silenced = match (&mut result, rules) {
                        (Ok(s), Some(rules)) if s.anomaly && rules.silences(s, record) => {
                            silence(s);
                            true
                        }
                        _ => false,
                    };
                    let observation = if observe && result.is_ok() {
                        Observation::of_with(module, record, &mut self.observe_columns)
                    } else {
                        None
                    };
                    Scored::Record {
                        ts: record.ts(),
                        line: record.line(),
                        result,
                        observation,
                        silenced,
                    }
                }
                Err(e) => Scored::Malformed(e.to_string()),
            });
        }
    }
}

/// One log type's scoring stage.
pub struct Lane {
    scorer: Scorer,
    plausible: crate::plausible::Plausible,
    /// Records whose time was not believed ([`crate::plausible`]).
    unbelieved: u64,
    reload: Option<(Reloader, Duration)>,
    /// Applied to a reloaded model's scorer too.
    record: RecordOptions,
    only_anomalies: bool,
    /// Copy out observations for the detectors.
    observe: bool,
    stats: LaneStats,
    warnings: Throttle,
    allow: Option<Allowlist>,
    /// Whether the model flags far more than it expects to (`None`: not
    /// watched, as in an evaluation of labeled attacks).
    drift: Option<super::drift::Drift>,
}

impl Lane {
    /// Loads `<model_dir>/<module>.model.json`; a model of another log
    /// type, a damaged or out-of-range one is refused.
    pub fn load(module: LogKind, model_dir: &Path, opts: &LaneOptions) -> Result<Lane, ModelError> {
        let path = model_dir.join(model::file_name(module));
        // Stamped before it is loaded: a model written in between (the
        // nightly training) is seen as new at the first check; stamped
        // after, it passed for the one loaded until the next night's.
        let reload = opts
            .reload_every
            .map(|every| (Reloader::new(path.clone()), every));
        let (model, encoder) = Model::load_for(&path, module)?;
        let mut lane = Lane::new(Scorer::new(model, encoder), opts);
        lane.reload = reload;
        Ok(lane)
    }

    /// A lane for a model already in memory (evaluation, benchmarks); it
    /// never reloads.
    pub fn new(scorer: Scorer, opts: &LaneOptions) -> Lane {
        Lane {
            plausible: Default::default(),
            unbelieved: 0,
            scorer: scorer
                .with_options(&opts.record)
                .anomalies_only(opts.only_anomalies),
            reload: None,
            record: opts.record.clone(),
            only_anomalies: opts.only_anomalies,
            observe: false,
            stats: LaneStats::default(),
            warnings: Throttle::default(),
            allow: opts.allowlist.as_deref().map(open_allowlist),
            drift: Some(Default::default()),
        }
    }

    /// This lane without the warning that its model flags far more than
    /// it expects ([`super::drift`]): for inputs chosen to be anomalous.
    pub fn without_drift(mut self) -> Lane {
        self.drift = None;
        self
    }

    pub fn module(&self) -> LogKind {
        self.scorer.module()
    }

    /// The allowlist file this lane applies, if any.
    pub fn allowlist_path(&self) -> Option<&Path> {
        self.allow.as_ref().map(Allowlist::path)
    }

    /// The time of the newest record read (minus infinity before the
    /// first), for the alert stage's watermark.
    pub fn newest_time(&self) -> f64 {
        match self.stats.newest_ts {
            0 => f64::NEG_INFINITY,
            t => t as f64,
        }
    }

    /// The severity a flag needs (`--min-severity`), for the detections
    /// too.
    pub fn min_severity(&self) -> crate::severity::Severity {
        self.record.judge.min_severity
    }

    /// The detectors this lane's model describes (its training baseline,
    /// or the defaults for a model trained before detectors existed), and
    /// from now on the lane copies out observations for them. `None` when
    /// no selected detector watches this log type.
    pub fn detectors(&mut self, opts: &DetectOptions) -> Option<ModuleDetectors> {
        let model = self.scorer.model();
        let defaults = Baseline::defaults_for(model.module);
        let mut baseline = if model.detectors.is_empty() {
            defaults.clone()
        } else {
            model.detectors.clone()
        };
        // A detector newer than the model runs with its defaults, as all
        // do for a model older than the detectors.
        if baseline.large_upload.is_none() && defaults.large_upload.is_some() {
            baseline.large_upload = defaults.large_upload;
            if !model.detectors.is_empty() && opts.enabled.contains(&DetectorKind::LargeUpload) {
                tracing::info!(
                    "{}: the model predates the large_upload detector: it runs with its defaults and knows no upload of this site (a backup is reported); retrain to teach it",
                    model.module
                );
            }
        }
        // Overrides are checked when parsed; one out of range for this
        // model keeps the model's settings (and says so).
        let baseline = opts.overrides.apply(&baseline).unwrap_or_else(|why| {
            tracing::warn!(
                "{}: detector settings not applied ({why}): the model's stay",
                model.module
            );
            baseline
        });
        let d = ModuleDetectors::new(&baseline, &model.features.local_nets, opts);
        if d.is_empty() {
            return None;
        }
        if model.detectors.is_empty() {
            tracing::info!(
                "{}: the model has no detector baseline (trained by an older azw-train): detectors run with their defaults and know nothing of this site; retrain to teach them",
                model.module
            );
        }
        self.observe = true;
        Some(d)
    }

    /// From now on the lane copies out observations for another module's
    /// detectors (see [`crate::detect::observation::feeds`]).
    pub fn observe_for_others(&mut self) {
        self.observe = true;
    }

    pub fn stats(&self) -> &LaneStats {
        &self.stats
    }

    /// The context state of the records so far (for the checkpoint).
    pub fn context(&self) -> &crate::features::ContextState {
        self.scorer.context()
    }

    /// Continues from a saved context state; false if it was made for other
    /// context features (the lane's stays as it was).
    pub fn resume_context(&mut self, state: crate::features::ContextState) -> bool {
        self.scorer.resume_context(state)
    }

    /// Lets a record of history update the context, without scoring or
    /// counting it (warm start).
    pub fn warm(&mut self, record: &Record) {
        self.scorer.warm(record);
    }

    /// Switches to a replaced model file, if it is time to look and it
    /// loads; a bad one is refused (and logged) and the running one stays.
    /// The allowlist is looked at too, so a changed rule is in force (and
    /// logged) even before the next record comes. True when the model
    /// changed: its detectors' baseline is the emitter's to take
    /// ([`super::Emitter::rebase`]).
    pub fn check_model(&mut self) -> bool {
        if let Some(allow) = &mut self.allow {
            allow.check();
        }
        let module = self.module();
        if let Some((reload, every)) = &mut self.reload {
            if let Some(new) = reload.check(module, *every) {
                let new = new
                    .with_options(&self.record)
                    .anomalies_only(self.only_anomalies);
                let old = std::mem::replace(&mut self.scorer, new);
                if !old.hand_over_context(&mut self.scorer) && !self.scorer.context().is_empty() {
                    tracing::info!(
                        "{module}: the new model's context features differ from the old one's: their state starts afresh"
                    );
                }
                self.stats.model_reloads += 1;
                if let Some(d) = &mut self.drift {
                    d.restart();
                }
                return true;
            }
        }
        false
    }

    /// Takes one parsed line: a record is scored, a header passes (not
    /// counted), a malformed line is counted and logged (the first hundred,
    /// then one in a thousand). What goes on is appended to `out`.
    pub fn line(&mut self, parsed: Result<Parsed, ReadError>, out: &mut Vec<Output>) {
        match parsed {
            Ok(Parsed::Record(r)) => {
                self.stats.lines += 1;
                self.record(&r, out);
            }
            Ok(Parsed::Nothing) => {}
            Err(e) => {
                self.stats.lines += 1;
                self.skip(format_args!("{e}"));
            }
        }
    }

    /// [`Lane::line`] of each of `lines`, in order, with the same outputs,
    /// counters and allowlist decisions, but the records scored a block at
    /// a time ([`Scorer::score_block`]: the same scores, bit for bit).
    /// Live mode takes a follower's batch this way: one record at a time,
    /// KitNET's forward pass was most of the writer's time, and a restart
    /// catching up on what came since its checkpoint (an hour of records,
    /// with the write budget) waited on it. A lone record costs a few
    /// microseconds more (its block is padded to eight lanes), nothing next
    /// to live mode's millisecond of latency. Warnings may come in another
    /// order within a block: a malformed line's at once, a scored record's
    /// (a time not believed) when its block is scored.
    pub fn lines(
        &mut self,
        lines: impl IntoIterator<Item = Result<Parsed, ReadError>>,
        out: &mut Vec<Output>,
    ) {
        let mut block: Vec<Record> = Vec::with_capacity(LaneWorker::BLOCK);
        // The rules the block's records were judged by (one version a
        // block: a reload scores what was gathered under the old ones).
        let mut rules = self.allow.as_ref().map(|a| Arc::clone(a.rules()));
        for parsed in lines {
            let record = match parsed {
                Ok(Parsed::Record(r)) => r,
                Ok(Parsed::Nothing) => continue,
                Err(e) => {
                    self.stats.lines += 1;
                    self.skip(format_args!("{e}"));
                    continue;
                }
            };
            self.stats.lines += 1;
            let dropped = self.dropped(&record);
            let current = self.allow.as_ref().map(|a| a.rules());
            if let (Some(r), Some(now)) = (&rules, current) {
                if !Arc::ptr_eq(r, now) {
                    let now = Arc::clone(now);
                    self.score_gathered(&mut block, rules.as_deref(), out);
                    rules = Some(now);
                }
            }
            if dropped {
                continue;
            }
            block.push(record);
            if block.len() == LaneWorker::BLOCK {
                self.score_gathered(&mut block, rules.as_deref(), out);
            }
        }
        self.score_gathered(&mut block, rules.as_deref(), out);
    }

    /// Scores the records [`Lane::lines`] gathered, judged by `rules`, and
    /// takes them as [`Lane::record`] does; empties `block`.
    fn score_gathered(
        &mut self,
        block: &mut Vec<Record>,
        rules: Option<&Rules>,
        out: &mut Vec<Output>,
    ) {
        if block.is_empty() {
            return;
        }
        let records: Vec<&Record> = block.iter().collect();
        let mut results = Vec::with_capacity(records.len());
        self.scorer.score_block(&records, &mut results);
        drop(records);
        for (record, result) in block.drain(..).zip(results) {
            self.take_result(&record, result, rules, out);
        }
    }

    /// Whether the allowlist (looked at again first) drops `record` before
    /// it is scored; a dropped record is counted, and its time noted.
    fn dropped(&mut self, record: &Record) -> bool {
        let module = self.scorer.module();
        let Some(allow) = &mut self.allow else {
            return false;
        };
        allow.check();
        if allow.before_scoring(module, record) != Some(Action::Drop) {
            return false;
        }
        self.note_time(record.ts());
        self.stats.dropped += 1;
        true
    }

    /// Takes `record`'s scoring result, one record at a time or from a
    /// block: an anomaly a `no_alert` rule of `rules` matches is silenced,
    /// the detectors' facts are copied out, and the record is counted and
    /// appended to `out`.
    fn take_result(
        &mut self,
        record: &Record,
        result: Result<ScoredRecord, KitNetError>,
        rules: Option<&Rules>,
        out: &mut Vec<Output>,
    ) {
        let result = result.map(|mut s| {
            if s.anomaly && rules.is_some_and(|r| r.silences(&s, record)) {
                silence(&mut s);
                self.stats.unalerted += 1;
            }
            s
        });
        let observation = if self.observe && result.is_ok() {
            Observation::of(self.module(), record)
        } else {
            None
        };
        self.count_record(record.ts(), record.line(), result, observation, out);
    }

    /// Scores one record that was counted as a line by its source,
    /// appending what goes on to `out`. A record that cannot be scored is
    /// skipped, and not observed either: every mode skips the same ones.
    pub fn record(&mut self, record: &Record, out: &mut Vec<Output>) {
        if self.dropped(record) {
            return;
        }
        let result = self.scorer.score(record);
        let rules = self.allow.as_ref().map(|a| Arc::clone(a.rules()));
        self.take_result(record, result, rules.as_deref(), out);
    }

    /// For [`super::parallel`]: the allowlist, taken out to decide on the
    /// reading thread, in order, which records it drops before they are
    /// encoded; [`Lane::resume_allowlist`] puts it back.
    pub fn take_allowlist(&mut self) -> Option<Allowlist> {
        self.allow.take()
    }

    pub fn resume_allowlist(&mut self, allow: Option<Allowlist>) {
        if allow.is_some() {
            self.allow = allow;
        }
    }

    /// For [`super::parallel`]: the encoder and the context state, taken
    /// out to encode on the reading thread, in order; `None` when the
    /// model has no context features (the workers encode).
    pub fn take_encoding(
        &mut self,
    ) -> Option<(std::sync::Arc<crate::features::Encoder>, ContextState)> {
        if self.scorer.context().is_empty() {
            return None;
        }
        let encoder = self.scorer.encoder().clone();
        Some((encoder, self.scorer.take_context()))
    }

    /// A worker scoring for this lane (its model, its detectors' needs),
    /// for [`Lane::take`].
    pub fn worker(&self) -> LaneWorker {
        LaneWorker {
            scorer: self.scorer.clone(),
            observe: self.observe,
            observe_columns: ObservationColumns::default(),
            results: Vec::new(),
        }
    }

    /// Takes what a [`LaneWorker`] made of one line, as [`Lane::line`]
    /// takes the line itself: the same counters, filter and warnings, and
    /// the same outputs appended to `out`. Called in input order.
    pub fn take(&mut self, scored: Scored, out: &mut Vec<Output>) {
        self.stats.lines += 1;
        match scored {
            Scored::Record {
                ts,
                line,
                result,
                observation,
                silenced,
            } => {
                self.stats.unalerted += u64::from(silenced);
                self.count_record(ts, line, result, observation, out)
            }
            Scored::Dropped { ts } => {
                self.note_time(ts);
                self.stats.dropped += 1;
            }
            Scored::Malformed(why) => self.skip(format_args!("{why}")),
        }
    }

    fn count_record(
        &mut self,
        ts: Option<f64>,
        line: u64,
        result: Result<ScoredRecord, KitNetError>,
        observation: Option<Observation>,
        out: &mut Vec<Output>,
    ) {
        self.note_time(ts);
        match result {
            Ok(s) => {
                self.stats.scored += 1;
                self.stats.anomalies += u64::from(s.anomaly);
                self.count_drift(&s);
                if s.anomaly || !self.only_anomalies {
                    self.stats.written += 1;
                    out.push(Output::Scored(s));
                }
                out.extend(observation.map(Output::Observed));
            }
            Err(e) => {
                let module = self.module();
                self.stats.unscorable += 1;
                self.stats.skipped += 1;
                if self.warnings.allow() {
                    tracing::warn!("{module}: line {line}: cannot score: {e}");
                }
            }
        }
    }

    /// Warns when the model flags far more than its calibration expects
    /// ([`super::drift`]).
    fn count_drift(&mut self, s: &ScoredRecord) {
        let Some(drift) = &mut self.drift else {
            return;
        };
        let top = s
            .top_features
            .as_ref()
            .and_then(|t| t.first())
            .map(|c| c.feature.as_str());
        let th = &self.scorer.model().threshold;
        let expected = th.expected_fpr.unwrap_or(th.target_fpr);
        if let Some(too_many) = drift.count(s.anomaly, top, expected) {
            tracing::warn!("{}", too_many.message(self.scorer.module(), expected));
        }
    }

    /// Keeps the newest record time read (how far behind real time), of
    /// the times believed ([`crate::plausible`]): one record from the far
    /// future would otherwise stand as the newest for good, holding the
    /// alert watermark and reading as no lag at all.
    fn note_time(&mut self, ts: Option<f64>) {
        let Some(ts) = ts else {
            return;
        };
        if self.plausible.believes(ts) {
            self.stats.newest_ts = self.stats.newest_ts.max(ts as u64);
            return;
        }
        self.unbelieved += 1;
        if crate::plausible::worth_logging(self.unbelieved) {
            // 1e308 in three characters, not three hundred digits.
            let ts = match ts.abs() < 1e12 {
                true => format!("{ts}"),
                false => format!("{ts:e}"),
            };
            tracing::warn!(
                "{}: a record at time {ts} (more than a day past this machine's clock, or before 1970) is scored, but its time is not taken: not for the lag, the alerts' clock, the detectors or the context features ({} so far); check the sensor's clock",
                self.module(),
                self.unbelieved
            );
        }
    }

    /// Counts a line that reached this lane but carries no record to score
    /// (a malformed message), logging `why` within the throttle.
    pub fn skip(&mut self, why: std::fmt::Arguments<'_>) {
        self.stats.skipped += 1;
        self.stats.malformed += 1;
        if self.warnings.allow() {
            tracing::warn!("{why}");
        }
    }

    /// Counts a line (message) that [`Lane::record`] did not see.
    pub fn count_line(&mut self) {
        self.stats.lines += 1;
    }

    pub fn set_lag(&mut self, bytes: u64) {
        self.stats.lag_bytes = bytes;
    }

    /// The counters as one log line.
    pub fn stats_line(&self) -> String {
        let s = &self.stats;
        format!(
            "{}: {} lines read, {} scored, {} skipped, {} anomalies, {} written, {} model reloads, {} bytes behind the live file{}",
            self.module(),
            s.lines,
            s.scored,
            s.skipped,
            s.anomalies,
            s.written,
            s.model_reloads,
            s.lag_bytes,
            if self.allow.is_some() {
                format!(
                    "; allowlist: {} dropped, {} anomalies kept from alerting",
                    s.dropped, s.unalerted
                )
            } else {
                String::new()
            }
        )
    }
}

/// The records of `lines` an allowlist did not drop (`dropped`: per line;
/// short or empty, none), in order: those that have feature vectors. The
/// reading thread encodes them and the worker scores them, so both take
/// them from here and the vectors line up with the records.
pub(crate) fn kept_records<'l>(
    lines: &'l [Result<Record, ReadError>],
    dropped: &'l [bool],
) -> impl Iterator<Item = &'l Record> + 'l {
    let is_dropped = |i: usize| dropped.get(i).copied().unwrap_or(false);
    (lines.iter().enumerate())
        .filter(move |(i, _)| !is_dropped(*i))
        .filter_map(|(_, l)| l.as_ref().ok())
}

/// An anomaly a `no_alert` rule keeps from alerting: written as an
/// ordinary record, without severity either (a SIEM would still see one),
/// the explanation kept.
fn silence(s: &mut ScoredRecord) {
    s.anomaly = false;
    s.severity = None;
    s.p_normal = None;
}

/// Opens an allowlist for a lane; the tools check the file before a run
/// starts, so a failure here (the file changed in between) is logged and
/// the lane runs without its rules until the file loads.
pub(crate) fn open_allowlist(path: &Path) -> Allowlist {
    Allowlist::open_or_wait(path, crate::allow::CHECK_EVERY)
}

/// Lets the first hundred warnings through, then one in a thousand: every
/// problem is counted, and a flood of bad lines cannot flood the log.
#[derive(Debug, Default, Clone)]
pub struct Throttle {
    seen: u64,
}

impl Throttle {
    pub fn allow(&mut self) -> bool {
        self.seen += 1;
        self.seen <= 100 || self.seen.is_multiple_of(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_the_first_hundred_through_then_one_in_a_thousand() {
        let mut t = Throttle::default();
        let allowed = (0..5000).filter(|_| t.allow()).count();
        // 1..=100, then 1000, 2000, 3000, 4000, 5000.
        assert_eq!(allowed, 105);
    }

    /// A record dated in the far future, before 1970 or not a number is
    /// scored, but its time is not the lane's newest (the alert stage's
    /// watermark and the lag metric): one such record held them for good.
    #[test]
    fn a_time_not_believed_is_not_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::tests::ssh_model().clone();
        model
            .save(&dir.path().join(model::file_name(LogKind::SSH)))
            .unwrap();
        let mut lane = Lane::load(LogKind::SSH, dir.path(), &LaneOptions::default()).unwrap();
        let records = crate::zeek::testutil::example_records("ssh");
        let newest = records.iter().filter_map(Record::ts).fold(0.0, f64::max);
        let at = |r: &Record, ts: f64| {
            let mut values = r.values().to_vec();
            values[r.schema().index_of("ts").unwrap()] = crate::zeek::Value::Real(ts);
            Record::new(r.schema().clone(), values, r.line())
        };
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if i == 3 {
                for ts in [4_102_444_800.0, 1e200, -5.0, f64::NAN] {
                    lane.line(Ok(Parsed::Record(at(r, ts))), &mut out);
                }
            }
            lane.line(Ok(Parsed::Record(r.clone())), &mut out);
        }
        assert_eq!(lane.stats().scored, records.len() as u64 + 4);
        assert_eq!(lane.stats().newest_ts, newest as u64);
    }
}

#[cfg(test)]
/// `Lane::lines` against `Lane::line` on each line, for several models
/// (context features or none, product and reference KitNET, conn's
/// observations for the detectors), anomalies mixed with normal records,
/// `--only-anomalies` or not, malformed and empty lines, and an allowlist
/// rewritten mid-stream (drop and `no_alert` rules, one on a feature) at
/// several points of a batch: the same outputs and counters in batches of
/// every size.
mod lines_tests {
    use super::*;
    use crate::allow::Allowlist;

    fn stream(records: &[Record]) -> Vec<Result<Parsed, ReadError>> {
        let mut lines = Vec::new();
        for (i, r) in records.iter().cycle().take(1500).enumerate() {
            if i % 13 == 0 {
                lines.push(Err(ReadError::Malformed {
                    file: "x".into(),
                    line: i as u64,
                    reason: "cut".into(),
                }));
            }
            if i % 17 == 0 {
                lines.push(Ok(Parsed::Nothing));
            }
            lines.push(Ok(Parsed::Record(r.clone())));
        }
        lines
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        module: LogKind,
        dir: &Path,
        opts: &LaneOptions,
        allow: &Path,
        (a, b): (&str, &str),
        switch: usize,
        records: &[Record],
        batch: Option<usize>,
    ) -> (Vec<String>, LaneStats) {
        std::fs::write(allow, a).unwrap();
        let mut lane = Lane::load(module, dir, opts).unwrap();
        lane.observe_for_others();
        lane.resume_allowlist(Some(Allowlist::open(allow, Duration::ZERO).unwrap()));
        let mut out = Vec::new();
        let mut lines = stream(records)
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                if i == switch {
                    std::fs::write(allow, b).unwrap();
                }
                l
            })
            .peekable();
        match batch {
            None => lines.for_each(|l| lane.line(l, &mut out)),
            Some(n) => {
                while lines.peek().is_some() {
                    lane.lines(lines.by_ref().take(n), &mut out);
                }
            }
        }
        (
            out.iter().map(|o| format!("{o:?}")).collect(),
            *lane.stats(),
        )
    }

    #[test]
    fn lines_take_what_line_after_line_takes() {
        use crate::kitnet::Mode;
        for (module, log, mode) in [
            (LogKind::SSH, "ssh", Mode::Product),
            (LogKind::CONN, "conn", Mode::Product),
            (LogKind::CONN, "conn", Mode::Reference),
            (LogKind::DNS, "dns", Mode::Product),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let records: Vec<Record> = crate::zeek::testutil::example_records(log)
                .into_iter()
                .take(1000)
                .collect();
            let mut model = crate::model::tests::example_model(module, mode);
            let path = dir.path().join(model::file_name(module));
            model.save(&path).unwrap();
            let (m, e) = Model::load_for(&path, module).unwrap();
            let mut s = Scorer::new(m, e);
            let mut scores: Vec<f64> = records.iter().map(|r| s.score(r).unwrap().score).collect();
            scores.sort_by(f64::total_cmp);
            model.threshold.value = scores[scores.len() / 2];
            model.save(&path).unwrap();
            let addr = |f: &str| -> Vec<String> {
                let mut v: Vec<String> = records
                    .iter()
                    .filter_map(|r| r.get(f).as_addr())
                    .map(|a| a.to_string())
                    .collect();
                v.sort();
                v.dedup();
                v
            };
            let (o, r) = (addr("id.orig_h"), addr("id.resp_h"));
            let a = format!("[[rule]]\nsource = \"{}\"\naction = \"drop\"\n\n[[rule]]\nsource = \"{}\"\naction = \"no_alert\"\n", o[0], o[1 % o.len()]);
            let b = format!("[[rule]]\ndestination = \"{}\"\naction = \"drop\"\n\n[[rule]]\nsource = \"{}\"\naction = \"no_alert\"\n\n[[rule]]\nfeature = \"resp_p\"\naction = \"no_alert\"\n# longer\n", r[0], o[2 % o.len()]);
            let allow = dir.path().join("allow.toml");
            for only in [false, true] {
                let opts = LaneOptions {
                    only_anomalies: only,
                    ..Default::default()
                };
                for switch in [0usize, 5, 100, 333, 700] {
                    let go = |batch| {
                        let rules = (a.as_str(), b.as_str());
                        run(
                            module,
                            dir.path(),
                            &opts,
                            &allow,
                            rules,
                            switch,
                            &records,
                            batch,
                        )
                    };
                    let want = go(None);
                    assert!(
                        want.1.dropped > 0 && want.1.anomalies > 0,
                        "{module} {:?}",
                        want.1
                    );
                    assert!(want.1.scored > want.1.anomalies);
                    if module == LogKind::CONN {
                        assert!(want.0.iter().any(|o| o.starts_with("Observed")));
                    }
                    for n in [1, 3, 64, 65, 200, 5000] {
                        let got = go(Some(n));
                        assert_eq!(
                            got.1, want.1,
                            "{module} {mode:?} only {only} switch {switch} batch {n}"
                        );
                        assert!(got.0 == want.0, "{module} {mode:?} only {only} switch {switch} batch {n}: outputs differ");
                    }
                }
                eprintln!("{module} {mode:?} only={only} ok");
            }
        }
    }
}
