//! Live scoring: one thread per log type follows its log and parses it;
//! one writer scores the records through their log type's [`Lane`], runs
//! the detectors, hands the output to the sink and checkpoints.
//!
//! Only the writer touches the lanes, the sink and the checkpoint, so "the
//! output holds everything before these positions" is true by
//! construction, and so is "the context and detector state is that of
//! these positions": a batch's position is recorded after its records are
//! scored and written, and the checkpoint, state included, is saved only
//! after the sink is durable ([`sync_then`]).
//! The state folder is locked for the whole run, so a second process on the
//! same checkpoint is refused instead of corrupting the output.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::{Duration, Instant, SystemTime};

use super::resume::{self, StageState};
use super::{Controls, Emitter, Lane, LaneOptions, LaneStats, RunError};
use crate::alert::{AlertSetup, AlertTarget, Reading};
use crate::detect::DetectOptions;
use crate::follow::{
    Checkpoint, Follower, Line, LockFailure, OutputMark, Position, StateLock, CHECKPOINT_VERSION,
};
use crate::log_kind::LogKind;
use crate::score::RecordOptions;
use crate::sink::{self, sync_then, Cut, OutputSpec, RecordFormat, Sink, SinkOptions, Stamp};

/// The lock file in the state folder.
pub use crate::follow::LOCK_FILE;

/// Settings of a live run.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub log_dir: PathBuf,
    pub modules: Vec<LogKind>,
    pub model_dir: PathBuf,
    pub output: OutputSpec,
    pub format: RecordFormat,
    /// The sensor name every output line carries.
    pub stamp: Stamp,
    /// What each scored record carries besides its score.
    pub record: RecordOptions,
    /// The allowlist file ([`crate::allow`]).
    pub allowlist: Option<PathBuf>,
    /// Extra librdkafka settings for a Kafka output.
    pub kafka_config: Vec<(String, String)>,
    pub state_dir: PathBuf,
    pub only_anomalies: bool,
    /// How often an idle log type looks for new data (file events wake it
    /// sooner).
    pub poll: Duration,
    pub checkpoint_every: Duration,
    /// The checkpoints' write budget, in megabytes an hour (0: none): a
    /// large state is saved less often ([`super::cadence`]).
    pub checkpoint_mb_per_hour: f64,
    pub stats_every: Duration,
    /// How often a model file is checked for replacement.
    pub reload_every: Duration,
    /// The detectors that run.
    pub detect: DetectOptions,
    /// On a start without saved detector state, the hours of rotated
    /// history the detectors read first (0: none).
    pub warm_hours: u32,
    /// Alerts per host, and where they go (`None`: no alerts).
    pub alerts: Option<AlertSetup>,
}

/// Whether a restart cuts every output back to the checkpoint (files do;
/// standard output and Kafka cannot be cut): only then does a longer wait
/// between checkpoints cost nothing but scoring again, so only then does
/// the write budget space them. Records sent to Kafka after the last
/// checkpoint are sent again after a crash, and an hour of them is too
/// many duplicates.
fn outputs_cut_back(output: &OutputSpec, alerts: Option<&AlertSetup>) -> bool {
    let alerts_cut = match alerts {
        Some(AlertSetup {
            target: AlertTarget::Own(spec),
            ..
        }) => spec.file().is_some(),
        _ => true,
    };
    output.file().is_some() && alerts_cut
}

/// A log type's parsed lines and where its reading stands after them.
struct Batch {
    module: LogKind,
    lines: Vec<Line>,
    position: Option<Position>,
    lag_bytes: u64,
    /// Rotated files are being read or wait to be.
    backlog: bool,
}

enum Message {
    Batch(Batch),
    Done(LogKind),
    /// A log type's thread failed or panicked: the run stops with an error
    /// and saves nothing more.
    Failed(LogKind, String),
}

/// Runs until [`Controls::stop`] is set; returns each log type's counters.
pub fn run_live(
    opts: &LiveOptions,
    controls: &Controls,
) -> Result<BTreeMap<LogKind, LaneStats>, RunError> {
    let lock = lock_state_dir(&opts.state_dir)?;
    let checkpoint = Checkpoint::load(&opts.state_dir)?;
    // A log type never read before starts where its live file starts now,
    // before the warm-up: see [`Follower::live_start`].
    let saved_positions = checkpoint.as_ref().map(|c| &c.modules);
    let starts: BTreeMap<LogKind, Position> = opts
        .modules
        .iter()
        .filter(|m| !saved_positions.is_some_and(|p| p.contains_key(m)))
        .filter_map(|&m| Some((m, Follower::live_start(m, &opts.log_dir)?)))
        .collect();
    let lane_opts = LaneOptions {
        only_anomalies: opts.only_anomalies,
        reload_every: Some(opts.reload_every),
        record: opts.record.clone(),
        allowlist: opts.allowlist.clone(),
    };
    let mut lanes = Vec::new();
    for &module in &opts.modules {
        let lane = Lane::load(module, &opts.model_dir, &lane_opts)
            .map_err(|error| RunError::Model { module, error })?;
        lanes.push(lane);
    }
    let saved_context = checkpoint
        .as_ref()
        .map(|c| c.context.clone())
        .unwrap_or_default();
    let mut cold = Vec::new();
    for lane in &mut lanes {
        if resume::resume_context(lane, saved_context.get(&lane.module())) {
            cold.push(lane.module());
        }
    }
    let fresh = Emitter::for_lanes(lanes.iter_mut(), &opts.detect, opts.alerts.is_some());
    let saved = checkpoint.as_ref().and_then(|c| c.detectors.as_ref());
    let (mut emitter, resumed) = resume::resume_detectors(fresh, saved);
    let warm_detectors = !resumed && emitter.stage().is_active();
    // The alerts first: a stage that starts afresh learns its names book
    // from the history too, so the first alerts after a first start name
    // their peers (it started empty: an hour of alerts without names).
    let mut warm_names = false;
    if let Some(setup) = &opts.alerts {
        let resumed;
        (emitter, resumed) = with_alerts(emitter, setup, opts, checkpoint.as_ref())?;
        // Only on a first start: the follower's starts name only the
        // modules it starts afresh, and a restart that resumes files
        // would read their names twice, some before their time.
        warm_names = !resumed && checkpoint.is_none();
    }
    if opts.warm_hours > 0 && (warm_detectors || warm_names || !cold.is_empty()) {
        let r = super::warm::warm_up(
            &mut super::warm::Warming {
                emitter: (warm_detectors || warm_names).then_some(&mut emitter),
                detectors: warm_detectors,
                names: warm_names,
                lanes: lanes
                    .iter_mut()
                    .filter(|l| cold.contains(&l.module()))
                    .collect(),
            },
            &opts.log_dir,
            &opts.modules,
            opts.warm_hours,
            &starts,
            &controls.stop,
        );
        tracing::info!(
            "the context, detectors and alerts' names read the last {} h of history first: {} records in {} files ({} detections there, not written; {} names)",
            opts.warm_hours,
            r.records,
            r.files,
            r.detections,
            r.names
        );
    }
    let output_name = opts.output.to_string();
    let cut_to = match &checkpoint {
        // The sink checks that the file it opens is the one measured.
        Some(c) if c.output.as_deref() == Some(&output_name) => Some(Cut {
            len: c.output_len,
            file: c.output_id,
        }),
        Some(c) => {
            tracing::warn!(
                "the checkpoint was taken with the output {}, now it is {output_name}: appending without cutting anything",
                c.output.as_deref().unwrap_or("(unknown)")
            );
            None
        }
        None => None,
    };
    let mut output = sink::open(
        &opts.output,
        &SinkOptions {
            format: opts.format,
            stamp: opts.stamp.clone(),
            cut_to,
            kafka_config: opts.kafka_config.clone(),
        },
    )?;
    // The files the checkpoint names: a file found replaced at the start
    // (rotated while the run was down) is checkpointed with the first
    // records, as one replaced mid-run is.
    let alerts_name = opts.alerts.as_ref().and_then(AlertSetup::own_name);
    let saved_files = checkpoint.as_ref().map_or((None, None), |c| {
        (
            c.output_id
                .filter(|_| c.output.as_deref() == Some(&output_name)),
            c.alerts_output
                .as_ref()
                .filter(|m| Some(&m.name) == alerts_name.as_ref())
                .and_then(|m| m.id),
        )
    });
    let had_checkpoint = checkpoint.is_some();
    // The checkpoint resumed from paces the first save as a save of this
    // run would: its size, and when it was saved.
    let resumed = had_checkpoint
        .then(|| std::fs::metadata(Checkpoint::file(&opts.state_dir)).ok())
        .flatten()
        .map(|m| (m.len(), m.modified().unwrap_or_else(|_| SystemTime::now())));
    if let Some((size, saved)) = resumed {
        crate::metrics::global().checkpoint_resumed(saved, size);
    }
    let mut positions = checkpoint.map(|c| c.modules).unwrap_or_default();
    // Nothing read yet: a checkpoint is saved before anything is written.
    // So is one with a log type never read before (a module added to
    // --modules, or a model new under ALL): until its start is saved, a
    // restart after Zeek rotated would begin at the next live file and
    // lose what this run wrote of the old one.
    let first_start = positions.is_empty() || !starts.is_empty();
    positions.extend(starts);
    if !had_checkpoint {
        match output.size().filter(|&n| n > 0) {
            // A checkpoint lost (the state folder removed, or a damaged one
            // moved away as its error says) with the output kept: the live
            // files are read from their start again, and what they hold is
            // already in the output (a review found 300 records twice, said
            // only in an info line).
            Some(bytes) => tracing::warn!(
                "no checkpoint in {}, but the output {output_name} already holds {bytes} bytes: the live files are read from their start and appended, so records already written are written again; to avoid that, move the output away (or give another --output) before starting",
                opts.state_dir.display()
            ),
            None => tracing::info!(
                "no checkpoint in {}: starting with the live files (appending to the output)",
                opts.state_dir.display()
            ),
        }
    } else if positions.is_empty() {
        tracing::info!(
            "resuming from the checkpoint in {}, saved before any file was read: starting with the live files",
            opts.state_dir.display()
        );
    } else {
        tracing::info!(
            "resuming from the checkpoint in {}",
            opts.state_dir.display()
        );
    }
    // Batches waiting for the writer: each a step's lines, a few
    // megabytes at most, so the queue stays a few dozen whatever the lines.
    let (tx, rx) = mpsc::sync_channel::<Message>(8);
    std::thread::scope(|scope| {
        for lane in &lanes {
            let tx = tx.clone();
            let module = lane.module();
            let resume = positions.get(&module).cloned();
            scope.spawn(move || follow_guarded(module, resume, opts, controls, tx));
        }
        drop(tx);
        let mut writer = Writer {
            lock: &lock,
            opts,
            output: output.as_mut(),
            positions: positions.clone(),
            lanes: lanes.into_iter().map(|l| (l.module(), l)).collect(),
            saved_identity: saved_files.0,
            saved_alerts_identity: saved_files.1,
            emitter,
            first_start,
            resumed,
        };
        // A panic here (a bug) must end the process, as it does anywhere
        // else, so that its supervisor restarts it: without the stop below,
        // the following threads would wait for it forever, alive and idle.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| writer.run(rx, controls)));
        // LogKind threads notice a closed channel only when they next send;
        // an idle one would keep the scope, and the process, alive.
        controls.stop.store(true, Ordering::SeqCst);
        result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Adds the alert stage to `emitter`: its own output opened (cut back to
/// the checkpoint's length, as the records' output is), its state resumed
/// from the checkpoint (and whether it was).
fn with_alerts(
    emitter: Emitter,
    setup: &AlertSetup,
    opts: &LiveOptions,
    checkpoint: Option<&Checkpoint>,
) -> Result<(Emitter, bool), RunError> {
    let cut_to = match &setup.target {
        AlertTarget::Own(spec) => {
            resume::cut_to(checkpoint.and_then(|c| c.alerts_output.as_ref()), spec)
        }
        AlertTarget::Output => None,
    };
    let sink = setup.open_sink(&SinkOptions {
        format: opts.format,
        stamp: opts.stamp.clone(),
        cut_to,
        kafka_config: opts.kafka_config.clone(),
    })?;
    let mut emitter = emitter.with_alerts(setup.opts, &opts.modules, false, sink);
    let saved = checkpoint.and_then(|c| c.alerts.as_ref());
    let resumed = resume::resume_alerts(&mut emitter, saved, setup, &opts.modules);
    Ok((emitter, resumed))
}

/// Holds an exclusive lock on `<state_dir>/lock` while the run lasts
/// ([`StateLock`]), and removes what a run killed while saving left.
pub(crate) fn lock_state_dir(dir: &Path) -> Result<StateLock, RunError> {
    match StateLock::take(dir) {
        Ok(lock) => {
            crate::follow::remove_unfinished_saves(dir);
            Ok(lock)
        }
        Err(LockFailure::Held) => Err(RunError::StateLocked {
            dir: dir.to_owned(),
        }),
        Err(LockFailure::Io(path, cause)) => Err(RunError::StateDir { path, cause }),
    }
}

/// The writer: scores batches, hands them to the sink, checkpoints, logs
/// stats.
struct Writer<'a> {
    opts: &'a LiveOptions,
    /// The state folder's, held while the run lasts; checkpoints are saved
    /// through it.
    lock: &'a StateLock,
    output: &'a mut dyn Sink,
    positions: BTreeMap<LogKind, Position>,
    /// No log type was read before this run (the positions are the live
    /// files' starts, if any).
    first_start: bool,
    /// The size of the checkpoint this run resumed from, and when it was
    /// saved.
    resumed: Option<(u64, SystemTime)>,
    /// Each log type's scoring stage: here, so that its context state is
    /// saved with the positions it belongs to.
    lanes: BTreeMap<LogKind, Lane>,
    /// The output's identity at the last checkpoint.
    saved_identity: Option<(u64, u64)>,
    /// The identity of the alerts' own output (`--alerts FILE`) at the
    /// last checkpoint.
    saved_alerts_identity: Option<(u64, u64)>,
    /// The detection stage: here, beside the sink and the checkpoint, so
    /// its state is saved with the positions it belongs to.
    emitter: Emitter,
}

/// Says how large the checkpoint is and how long the next waits, when the
/// write budget stretches the wait past a minute (with the stats, once a
/// `--stats-secs`): an operator sizing the disk, or wondering why the
/// checkpoint's age passes a minute, reads it here.
fn log_cadence(cadence: &super::cadence::Cadence) {
    let interval = cadence.interval();
    if interval > super::cadence::LONGEST {
        tracing::info!(
            "checkpoint: {:.1} MB; the next waits at least {} s after it (--checkpoint-mb-per-hour)",
            cadence.size() as f64 / 1e6,
            interval.as_secs()
        );
    }
}

impl Writer<'_> {
    fn run(
        &mut self,
        rx: Receiver<Message>,
        controls: &Controls,
    ) -> Result<BTreeMap<LogKind, LaneStats>, RunError> {
        let mut running = self.opts.modules.len();
        let mut dirty = false;
        // Without a position yet (a first start), a checkpoint first, of
        // the output's length and the warmed state, before anything is
        // written: a run whose first checkpoint then failed (a full disk)
        // had written records no checkpoint covered, and its restart read
        // the live files from their start again and wrote them twice. Now
        // the restart cuts them, as after any crash; and a state folder
        // with no room stops the run before it writes anything.
        let mut cadence = super::cadence::Cadence::new(self.opts.checkpoint_every);
        let (mut size, mut age) = (0, Duration::ZERO);
        if self.first_start {
            size = self.save()?;
        } else if let Some((bytes, saved)) = self.resumed {
            size = bytes;
            // Saved "in the future" (the clock stepped back since): its
            // age cannot be told, so the next save is due at once, as
            // after an old one, and a crash loop still moves it on.
            age = SystemTime::now()
                .duration_since(saved)
                .unwrap_or(Duration::MAX);
        }
        if outputs_cut_back(&self.opts.output, self.opts.alerts.as_ref()) {
            cadence = cadence
                .with_budget(self.opts.checkpoint_mb_per_hour, size)
                .saved_ago(age);
        }
        let mut last_stats = Instant::now();
        while running > 0 {
            crate::metrics::global().heartbeat();
            for lane in self.lanes.values_mut() {
                if lane.check_model() {
                    self.emitter.rebase(lane);
                }
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Message::Batch(b)) => match self.take(b) {
                    Ok(Some(size)) => {
                        dirty = false;
                        cadence.saved_out_of_turn(size);
                    }
                    Ok(None) => dirty = true,
                    Err(e) => {
                        self.log_stats();
                        return Err(e);
                    }
                },
                Ok(Message::Done(module)) => {
                    tracing::debug!("{module}: stopped");
                    running -= 1;
                }
                Ok(Message::Failed(module, reason)) => {
                    // The others are stopped; no checkpoint is saved past
                    // what the output is known to hold.
                    controls.stop.store(true, Ordering::SeqCst);
                    self.log_stats();
                    return Err(RunError::LaneFailed { module, reason });
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if controls.reopen.swap(false, Ordering::SeqCst) {
                let _ = self.save()?;
                self.output.reopen()?;
                if let Some(a) = self.emitter.alert_sink() {
                    a.reopen()?;
                }
                // At once: a checkpoint still holding the old file's length
                // would, after a crash, leave the new file uncut and its
                // records scored twice.
                let size = self.save()?;
                tracing::info!("output reopened (SIGHUP)");
                dirty = false;
                cadence.saved_out_of_turn(size);
            }
            if dirty && cadence.due() {
                let started = Instant::now();
                let size = self.save()?;
                dirty = false;
                cadence.saved(started, size);
                tracing::debug!(
                    "checkpoint of {size} bytes saved in {:?}; the next in {:?} at the earliest",
                    started.elapsed(),
                    cadence.interval()
                );
            }
            if last_stats.elapsed() >= self.opts.stats_every {
                self.log_stats();
                log_cadence(&cadence);
                last_stats = Instant::now();
            }
        }
        let _ = self.save()?;
        self.log_stats();
        Ok(self.lanes.iter().map(|(m, l)| (*m, *l.stats())).collect())
    }

    /// Scores a batch's lines and writes what comes out, then records its
    /// position. Returns the size of the checkpoint it had to save at
    /// once, if it did.
    fn take(&mut self, b: Batch) -> Result<Option<u64>, RunError> {
        let mut records = Vec::new();
        let (stats, newest) = match self.lanes.get_mut(&b.module) {
            Some(lane) => {
                lane.lines(b.lines.into_iter().map(|l| l.parsed), &mut records);
                lane.set_lag(b.lag_bytes);
                (*lane.stats(), lane.newest_time())
            }
            None => (LaneStats::default(), f64::NEG_INFINITY),
        };
        self.emitter
            .emit(&mut records, self.output, None)
            .map_err(RunError::Output)?;
        // Behind in time: a backlog of rotated files (after downtime), or
        // the live file ahead of what was read.
        let reading = if b.lag_bytes > 0 || b.backlog {
            Reading::Behind
        } else {
            Reading::CaughtUp
        };
        self.emitter
            .progress(b.module, newest, reading, self.output)
            .map_err(RunError::Output)?;
        if let Some(a) = self.emitter.alert_sink() {
            a.flush().map_err(RunError::Output)?;
        }
        self.output.flush().map_err(RunError::Output)?;
        // A log type's first position is saved at once: until it is, a
        // restart would start over from the live file (or, from a waiting
        // one, read again every file rotated since the start).
        let first = b.position.is_some_and(|p| {
            self.positions
                .insert(b.module, p)
                .is_none_or(|old| old.is_waiting())
        });
        // So is a new output file (the old one deleted or replaced), the
        // records' or the alerts' own: a crash before the next checkpoint
        // would write what went to the new file since then again.
        let saved = if first
            || self.output.identity() != self.saved_identity
            || self.alerts_identity() != self.saved_alerts_identity
        {
            Some(self.save()?)
        } else {
            None
        };
        crate::metrics::global().publish(b.module, &stats);
        crate::metrics::global().detections(self.emitter.written().iter().map(|(k, n)| (k, *n)));
        if let Some(a) = self.emitter.alerts() {
            crate::metrics::global().alerts(a.stats(), a.open_alerts());
        }
        Ok(saved)
    }

    /// Saves a checkpoint: its size in bytes.
    fn save(&mut self) -> Result<u64, RunError> {
        let (opts, positions) = (self.opts, &self.positions);
        let state =
            StageState::capture(self.lanes.values(), &self.emitter).map_err(|e| RunError::Io {
                path: Checkpoint::file(&opts.state_dir),
                source: e.into(),
            })?;
        // The alerts' own output is made durable first: the checkpoint
        // names its length.
        let alerts_name = opts.alerts.as_ref().and_then(AlertSetup::own_name);
        let alerts_output = match (self.emitter.alert_sink(), alerts_name) {
            (Some(a), Some(name)) => {
                a.sync().map_err(RunError::Output)?;
                Some(OutputMark {
                    name,
                    len: a.size().unwrap_or(0),
                    id: a.identity(),
                })
            }
            _ => None,
        };
        let saved = sync_then(self.output, |durable| {
            Checkpoint {
                version: CHECKPOINT_VERSION,
                output_len: durable.len.unwrap_or(0),
                output: Some(opts.output.to_string()),
                output_id: durable.identity,
                modules: positions.clone(),
                detectors: state.detectors,
                context: state.context,
                alerts: state.alerts,
                alerts_output: alerts_output.clone(),
            }
            .save(self.lock)
            .map(|size| (durable.identity, size))
            .map_err(RunError::from)
        })
        .map_err(|e| match e {
            RunError::Sink(s) => RunError::Output(s),
            other => other,
        })?;
        let (saved, size) = saved;
        self.saved_identity = saved;
        self.saved_alerts_identity = alerts_output.and_then(|m| m.id);
        crate::metrics::global().checkpoint_saved();
        crate::metrics::global().checkpoint_size(size);
        Ok(size)
    }

    /// The file the alerts' own output (`--alerts FILE`) writes now.
    fn alerts_identity(&mut self) -> Option<(u64, u64)> {
        self.emitter.alert_sink().and_then(|a| a.identity())
    }

    fn log_stats(&self) {
        for lane in self.lanes.values() {
            tracing::info!("{}", lane.stats_line());
        }
        if self.emitter.stage().is_active() {
            tracing::info!("{}", self.emitter.detections_line());
        }
        if let Some(a) = self.emitter.alerts() {
            tracing::info!("{}", a.stats_line());
        }
    }
}

/// Runs a log type's thread; a panic becomes a failure of the run, never a
/// silently dead thread.
fn follow_guarded(
    module: LogKind,
    resume: Option<Position>,
    opts: &LiveOptions,
    controls: &Controls,
    tx: SyncSender<Message>,
) {
    guarded(module, &tx, || follow(module, resume, opts, controls, &tx));
}

/// Runs `body`, then tells the writer how it ended: [`Message::Done`], or
/// [`Message::Failed`] with the panic's message.
fn guarded(module: LogKind, tx: &SyncSender<Message>, body: impl FnOnce()) {
    let last = match std::panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(()) => Message::Done(module),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Message::Failed(
                module,
                format!("the thread following the log stopped: {what}"),
            )
        }
    };
    let _ = tx.send(last);
}

/// Follows and parses, hands batches to the writer.
fn follow(
    module: LogKind,
    resume: Option<Position>,
    opts: &LiveOptions,
    controls: &Controls,
    tx: &SyncSender<Message>,
) {
    let mut follower = Follower::new(module, &opts.log_dir, resume);
    let wake = Wake::new(follower.live_path().parent().unwrap_or(Path::new(".")));
    let mut sent: Option<Position> = None;
    while !controls.stop.load(Ordering::SeqCst) {
        let step = follower.step();
        // An idle step that moved nothing sends nothing: the writer would
        // only sync and checkpoint the same state again.
        let moved = step.position.is_some() && step.position != sent;
        if !step.lines.is_empty() || moved {
            sent.clone_from(&step.position);
            let batch = Batch {
                module,
                lines: step.lines,
                position: step.position,
                lag_bytes: step.lag_bytes,
                backlog: step.backlog,
            };
            if tx.send(Message::Batch(batch)).is_err() {
                return;
            }
        }
        if step.idle {
            wake.wait(opts.poll);
        }
    }
}

/// Wakes a waiting log type early on file events in its live folder;
/// polling covers what events miss (they coalesce, overflow, and stop when
/// the folder is replaced).
struct Wake {
    rx: Option<Receiver<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Wake {
    fn new(dir: &Path) -> Wake {
        use notify::Watcher;
        // One pending wake is all a waiting log type needs. The queue
        // was unbounded and emptied only by an idle step: while a
        // follower stayed busy (catching up, a slow output), every write
        // Zeek made to any log in the folder queued a message, and the
        // process grew by hundreds of MB a day (found by a review).
        let (tx, rx) = mpsc::sync_channel(1);
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.as_ref().is_ok_and(wakes) || res.is_err() {
                let _ = tx.try_send(());
            }
        })
        .ok()
        .and_then(|mut w| {
            w.watch(dir, notify::RecursiveMode::NonRecursive)
                .ok()
                .map(|_| w)
        });
        Wake {
            rx: watcher.is_some().then_some(rx),
            _watcher: watcher,
        }
    }

    /// Waits for a file event or `poll`; whether an event came.
    fn wait(&self, poll: Duration) -> bool {
        match &self.rx {
            Some(rx) => {
                let woken = rx.recv_timeout(poll).is_ok();
                while rx.try_recv().is_ok() {}
                woken
            }
            None => {
                std::thread::sleep(poll);
                false
            }
        }
    }
}

/// Whether a file event in the live folder may mean new lines or a new
/// file: not an open, read or close without writing. Those come from
/// readers, this process first: each idle look lists the folder, which
/// inotify reports as an open of it, and woke the next look at once (a
/// log type whose live file was rotated and not yet made again, a quiet
/// DNS at night, kept a core busy; found by a review).
fn wakes(event: &notify::Event) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reading the live folder and its files (what every idle look does)
    /// does not wake a waiting log type; writing and making files do.
    #[test]
    fn only_writes_wake_a_waiting_log_type() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dns.log");
        std::fs::write(&log, "#separator \\x09\n").unwrap();
        let wake = Wake::new(dir.path());
        assert!(wake.rx.is_some(), "no file events on this machine");
        for _ in 0..5 {
            let listed = std::fs::read_dir(dir.path()).unwrap().count();
            assert_eq!(listed, 1);
            std::fs::read(&log).unwrap();
            let _ = std::fs::File::open(dir.path().join("conn.log"));
        }
        assert!(!wake.wait(Duration::from_millis(500)), "woken by reading");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"#path\tdns\n").unwrap();
        assert!(wake.wait(Duration::from_secs(10)), "not woken by a write");
        std::fs::write(dir.path().join("conn.log"), "").unwrap();
        assert!(
            wake.wait(Duration::from_secs(10)),
            "not woken by a new file"
        );
    }

    /// However many events come while a log type is busy, at most one
    /// wake waits for it: the queue does not grow with the folder's
    /// writes.
    #[test]
    fn writes_while_busy_leave_one_wake_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("weird.log");
        let wake = Wake::new(dir.path());
        assert!(wake.rx.is_some(), "no file events on this machine");
        let mut f = std::fs::File::create(&log).unwrap();
        for _ in 0..20_000 {
            std::io::Write::write_all(&mut f, b"x\n").unwrap();
        }
        drop(f);
        // The watcher's thread delivers the events (inotify coalesces
        // some: the unbounded queue held thousands of these writes'); one
        // more may land while the queue is drained.
        std::thread::sleep(Duration::from_secs(1));
        let rx = wake.rx.as_ref().unwrap();
        let queued = rx.try_iter().count();
        assert!(queued <= 2, "{queued} wakes queued");
    }

    /// A state folder that cannot be made names the flag and what to do
    /// (it said the path and "Permission denied" alone).
    #[test]
    fn a_state_folder_that_cannot_be_made_says_which_flag() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"").unwrap();
        let err = lock_state_dir(&file.join("state")).unwrap_err();
        assert!(matches!(err, RunError::StateDir { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("--state-dir") && text.contains("give a folder"),
            "{text}"
        );
    }

    /// The write budget spaces checkpoints only where a crash repeats
    /// nothing: every output a file, which a restart cuts back.
    #[test]
    fn only_outputs_a_restart_cuts_back_take_the_write_budget() {
        let file: OutputSpec = "scores.json".parse().unwrap();
        let kafka: OutputSpec = "kafka://localhost:9092/scores".parse().unwrap();
        let alerts = |target: &OutputSpec| AlertSetup {
            target: AlertTarget::Own(target.clone()),
            opts: crate::alert::AlertOptions::default(),
        };
        let beside = AlertSetup {
            target: AlertTarget::Output,
            opts: crate::alert::AlertOptions::default(),
        };
        assert!(outputs_cut_back(&file, None));
        assert!(outputs_cut_back(&file, Some(&beside)));
        assert!(outputs_cut_back(&file, Some(&alerts(&file))));
        assert!(!outputs_cut_back(&file, Some(&alerts(&kafka))));
        assert!(!outputs_cut_back(&file, Some(&alerts(&OutputSpec::Stdout))));
        assert!(!outputs_cut_back(&OutputSpec::Stdout, None));
        assert!(!outputs_cut_back(&kafka, None));
        assert!(!outputs_cut_back(&kafka, Some(&beside)));
    }

    #[test]
    fn a_panicking_thread_is_reported_as_a_failure() {
        let (tx, rx) = mpsc::sync_channel(4);
        guarded(LogKind::DNS, &tx, || panic!("boom at line 7"));
        guarded(LogKind::CONN, &tx, || {});
        match rx.recv().unwrap() {
            Message::Failed(LogKind::DNS, why) => assert!(why.contains("boom at line 7"), "{why}"),
            _ => panic!("expected a failure"),
        }
        assert!(matches!(rx.recv().unwrap(), Message::Done(LogKind::CONN)));
    }

    #[test]
    fn the_state_folder_admits_one_process() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_state_dir(dir.path()).unwrap();
        let second = lock_state_dir(dir.path()).unwrap_err();
        assert!(second.to_string().contains("another azw-infer"), "{second}");
        drop(first);
        assert!(lock_state_dir(dir.path()).is_ok());
    }

    /// A save killed half way leaves its temporary file; the next process
    /// to hold the folder removes it (and nothing else), one refused the
    /// folder removes nothing.
    #[test]
    fn unfinished_saves_are_removed_by_whoever_holds_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let (leftover, others) = (
            dir.path().join(".azw-save-Ab12Cd"),
            [".tmpXYZ", "checkpoint.json"],
        );
        for name in others {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        let first = lock_state_dir(dir.path()).unwrap();
        std::fs::write(&leftover, "half a state").unwrap();
        assert!(lock_state_dir(dir.path()).is_err());
        assert!(
            leftover.exists(),
            "a process refused the folder removes nothing"
        );
        drop(first);
        let _held = lock_state_dir(dir.path()).unwrap();
        assert!(!leftover.exists());
        for name in others {
            assert!(dir.path().join(name).exists(), "{name}");
        }
    }
}
