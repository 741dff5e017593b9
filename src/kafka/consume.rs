//! The consumer loop: poll, route, score, write, and now and then make the
//! output durable and then commit the offsets.
//!
//! Delivery is at-least-once. An offset is committed only after every
//! record before it has been written and synced (or acknowledged by the
//! brokers, for a Kafka output), so a crash loses nothing. What can repeat:
//! the records scored after the last commit, when the process dies, are
//! scored again by whoever consumes the partition next. A clean rebalance
//! repeats nothing: partitions are committed as they are revoked. Zeek's
//! `uid` (with the module) identifies duplicates downstream. With a state
//! directory ([`super::state`]) a member that restarts over its own
//! committed offsets resumes its state and cuts its file output back to
//! them: exactly once into a file while it keeps its partitions.
//!
//! With a repartition topic ([`super::repartition`]) the loop does two
//! jobs for the partitions it holds: input records are re-published keyed
//! by originator (their offsets committed once the brokers acknowledged
//! them), and records of the repartition topic are scored, after being held
//! briefly to be scored in event-time order ([`super::reorder`]; their
//! offsets committed only up to the first one still held).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, RebalanceProtocol,
};
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::reorder::{Held, Limits, Origin, Taken};
use super::repartition::{self, Forwarder, Repartition};
use super::route::{self, module_of_log, module_of_topic};
use super::state::{MemberState, VERSION};
use crate::alert::{AlertSetup, AlertTarget};
use crate::detect::DetectOptions;
use crate::follow::OutputMark;
use crate::log_kind::LogKind;
use crate::pipeline::parallel::score_parallel;
use crate::pipeline::resume::{self, StageState};
use crate::pipeline::{
    Controls, Emitter, Lane, LaneOptions, LaneStats, Output, RunError, Throttle,
};
use crate::score::RecordOptions;
use crate::sink::{self, sync_then, OutputSpec, RecordFormat, Sink, SinkError, SinkOptions, Stamp};
use crate::zeek::{LineParser, Parsed, ReadError, Record};

/// Settings of a Kafka run.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `HOST:PORT`, or several separated by commas.
    pub brokers: String,
    pub topics: Vec<String>,
    /// The consumer group: processes with the same group share the
    /// partitions.
    pub group: String,
    pub modules: Vec<LogKind>,
    pub model_dir: PathBuf,
    pub output: OutputSpec,
    pub format: RecordFormat,
    /// The sensor name every output line carries.
    pub stamp: Stamp,
    /// What each scored record carries besides its score.
    pub record: RecordOptions,
    /// The allowlist file ([`crate::allow`]).
    pub allowlist: Option<std::path::PathBuf>,
    /// Alerts per host, and where they go (`None`: no alerts).
    pub alerts: Option<crate::alert::AlertSetup>,
    pub only_anomalies: bool,
    /// How often the output is synced and the offsets committed.
    pub commit_every: Duration,
    pub stats_every: Duration,
    pub reload_every: Duration,
    /// Extra librdkafka settings (`key=value`), for the consumer and a
    /// Kafka output alike (security, timeouts).
    pub config: Vec<(String, String)>,
    /// The detectors that run. Their state lives in this member: a host's
    /// records must all reach it (input keyed by host, `repartition`, or
    /// one member); it starts from the models' baselines, or from the
    /// saved state (`state_dir`).
    pub detect: DetectOptions,
    /// Re-publish the input keyed by originator and score from there, for
    /// input topics not keyed by host.
    pub repartition: Option<Repartition>,
    /// Where this member saves its state with each commit, and resumes it
    /// from ([`super::state`]); `None`: every start is afresh.
    pub state_dir: Option<PathBuf>,
    /// Threads that score a batch's long runs of one log type (at least
    /// one; `azw-infer --threads`, default one per processor).
    pub threads: usize,
}

/// Counters of a Kafka run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// Per module; `lines` counts messages.
    pub modules: BTreeMap<LogKind, LaneStats>,
    /// Messages of log types not scored here (`files`, `weird`, a module
    /// without a model), by log type.
    pub ignored: BTreeMap<String, u64>,
    /// Messages whose log type could not be told.
    pub unrouted: u64,
    pub commits: u64,
    /// Input messages re-published to the repartition topic, and those
    /// among them without an originator (all sent under one key).
    pub forwarded: u64,
    pub without_originator: u64,
}

/// Distinct log types counted by name in [`KafkaStats::ignored`]; the
/// names come from producers, so the rest are counted under one key.
const IGNORED_NAMES: usize = 64;

/// The key the log types past [`IGNORED_NAMES`] are counted under.
const OTHER_NAMES: &str = "(other log types)";

impl KafkaStats {
    fn ignore(&mut self, log: &str) {
        let name = crate::escape::terminal(log);
        let key = if self.ignored.contains_key(name.as_ref()) || self.ignored.len() < IGNORED_NAMES
        {
            name.into_owned()
        } else {
            OTHER_NAMES.to_owned()
        };
        *self.ignored.entry(key).or_default() += 1;
    }
}

/// The consumer's context: logs partition assignments (so an operator, and
/// the tests, see the group share and take over partitions), and commits a
/// partition's progress just before it is handed to another member, so a
/// clean rebalance (a member joining or leaving) scores nothing twice.
struct GroupContext {
    progress: Mutex<Progress>,
    /// Signalled when the output comes back to the progress (see
    /// [`GroupContext::progress_with_output`]).
    returned: Condvar,
    /// Records behind the newest, summed over the partitions held, from
    /// the last statistics (-1: not known yet).
    lag: AtomicI64,
}

impl GroupContext {
    /// Nothing written or committed yet; `repartition`: the repartition
    /// topic and how long its records are held.
    fn new(
        sink: Box<dyn Sink>,
        forwarder: Option<Forwarder>,
        repartition: Option<(String, Duration)>,
        state_dir: Option<PathBuf>,
    ) -> Self {
        let hold = repartition.as_ref().map_or(Duration::ZERO, |r| r.1);
        GroupContext {
            progress: Mutex::new(Progress {
                saved_files: (None, None),
                sink,
                lent: false,
                pending: HashMap::new(),
                uncommitted: 0,
                commits: 0,
                failed: None,
                poisoned: false,
                forwarder,
                repartition_topic: repartition.map(|r| r.0),
                held: Held::new(Limits::new(hold)),
                unsynced: false,
                taken: Taken::default(),
                committed: BTreeMap::new(),
                state_dir,
                state_stale: false,
                revoked: Vec::new(),
            }),
            returned: Condvar::new(),
            lag: AtomicI64::new(-1),
        }
    }

    /// The progress. If a thread panicked while holding it, what it holds
    /// may be ahead of the output: it is poisoned, so nothing more is
    /// committed (not even by the revoke that leaving the group runs).
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| {
            let mut progress = p.into_inner();
            progress.poison();
            progress
        })
    }

    /// The progress with the output in it: while a batch is scored on the
    /// consumer's thread, a rebalance callback (in the poll of the thread
    /// taking the next batch) waits here until the batch is written and
    /// counted as handled, so the commit before a revoke includes it.
    fn progress_with_output(&self) -> MutexGuard<'_, Progress> {
        let progress = self.progress();
        self.returned
            .wait_while(progress, |p| p.lent)
            .unwrap_or_else(|p| {
                let mut progress = p.into_inner();
                progress.poison();
                progress
            })
    }
}

impl ClientContext for GroupContext {
    fn stats(&self, statistics: Statistics) {
        let lags = statistics
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            // Partition -1 is librdkafka's own; -1 lag means not known.
            .filter(|(p, s)| **p >= 0 && s.consumer_lag >= 0)
            .map(|(_, s)| s.consumer_lag);
        self.lag.store(lags.sum(), Ordering::SeqCst);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut progress = self.progress_with_output();
            // The saved state cannot be brought up to date from here (the
            // loop holds it): it goes before this commit moves the offsets
            // past it, and the loop saves it again.
            if let Err(e) = progress.forget_saved_state() {
                progress.failed = Some(e);
                progress.poison();
                return;
            }
            if let Err(e) = progress.commit(consumer, tpl) {
                // Returned by the loop after the poll that ran this.
                progress.failed = Some(e);
            }
            progress.revoked.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            );
            // What the next owner commits is no longer this member's.
            progress.keep_committed(|topic, p| tpl.find_partition(topic, p).is_none());
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let incremental = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        if matches!(rebalance, Rebalance::Assign(_))
            || (incremental && matches!(rebalance, Rebalance::Revoke(_)))
        {
            // After an eager revoke nothing is assigned until the assign
            // that follows: only then is it known what stays here.
            let assigned = consumer.assignment().unwrap_or_default();
            self.progress().keep_held(&assigned);
        }
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!("kafka: assigned partitions {}", describe(tpl))
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!("kafka: revoked partitions {}", describe(tpl))
            }
            Rebalance::Error(e) => tracing::warn!("kafka: rebalance failed: {e}"),
        }
    }
}

/// The files (device and inode) a member's output and its alerts' own
/// output write now.
type OutputFiles = (Option<(u64, u64)>, Option<(u64, u64)>);

fn files(sink: &dyn Sink) -> OutputFiles {
    (sink.identity(), sink.alert_part().and_then(Sink::identity))
}

/// What has been written and not yet committed, with the sink it went to.
/// Shared by the loop and the rebalance callback (which runs inside
/// `poll`, so the loop never holds it across a poll).
struct Progress {
    sink: Box<dyn Sink>,
    /// The output is lent to the thread scoring a batch; `sink` is a
    /// stand-in until it comes back.
    lent: bool,
    /// The next offset to commit, per topic and partition: one past the
    /// last message handled (scored, skipped or ignored).
    pending: HashMap<String, HashMap<i32, i64>>,
    uncommitted: u64,
    commits: u64,
    /// An error inside the rebalance callback, for the loop to return.
    failed: Option<RunError>,
    /// Set when the run failed: from then on nothing is committed.
    poisoned: bool,
    /// With `--kafka-state-dir`: where the member's state is saved. A
    /// commit the loop did not save the state for first (a revoke's)
    /// removes the saved state before it commits, and sets `state_stale`
    /// so the loop saves it again soon.
    state_dir: Option<PathBuf>,
    state_stale: bool,
    /// The files the output and the alerts' own output wrote at the last
    /// save of the state (at the start: those the resumed state names, if
    /// any): one deleted or replaced since is saved at once, as a live run
    /// does, since a restart does not cut back a file the state does not
    /// name and would write again what it wrote there since.
    saved_files: OutputFiles,
    /// Partitions revoked in a rebalance since the loop last looked: their
    /// messages still in its batch are dropped.
    revoked: Vec<(String, i32)>,
    /// Re-publishes input records, when repartitioning.
    forwarder: Option<Forwarder>,
    /// The repartition topic, when repartitioning.
    repartition_topic: Option<String>,
    /// Records of the repartition topic waiting to be scored in order.
    held: Held<(LogKind, Record)>,
    /// Held records were scored since the last sync. Their offsets may no
    /// longer be pending (their partition was revoked meanwhile), yet the
    /// output must still be synced before the run ends.
    unsynced: bool,
    /// The messages of the repartition topic taken (held or scored)
    /// already.
    taken: Taken,
    /// The offsets this member committed, per topic and partition, for
    /// the partitions it still holds: what its saved state belongs to.
    committed: BTreeMap<String, BTreeMap<i32, i64>>,
}

impl Progress {
    /// Lends the output to the thread scoring a batch.
    fn lend_output(&mut self) -> Box<dyn Sink> {
        self.lent = true;
        std::mem::replace(&mut self.sink, Box::new(Lent))
    }

    fn give_back_output(&mut self, output: Box<dyn Sink>) {
        self.sink = output;
        self.lent = false;
    }

    /// After a failure: forget what is pending and commit nothing more.
    fn poison(&mut self) {
        self.poisoned = true;
        self.pending.clear();
        self.uncommitted = 0;
    }

    /// Whether a message of the repartition topic is new here (false: it
    /// was taken before a rebalance that kept its partition here).
    fn first_time(&mut self, partition: i32, offset: i64) -> bool {
        self.taken.first_time(partition, offset)
    }

    /// Forgets the held records (and what was seen) of the repartition
    /// topic's partitions not in `assigned`: their next owner reads them
    /// again from the committed offset.
    fn keep_held(&mut self, assigned: &TopicPartitionList) {
        self.keep_committed(|topic, p| assigned.find_partition(topic, p).is_some());
        let Some(topic) = self.repartition_topic.as_deref() else {
            return;
        };
        let mine = |p: i32| assigned.find_partition(topic, p).is_some();
        self.held.retain_partitions(mine);
        self.taken.retain_partitions(mine);
    }

    /// Nothing was written since the last commit: a commit would do
    /// nothing.
    fn nothing_to_commit(&self) -> bool {
        self.pending.is_empty() && !self.unsynced
    }

    /// Forgets the committed offsets of the partitions `keep` refuses
    /// (handed to another member): the saved state no longer names them.
    fn keep_committed(&mut self, keep: impl Fn(&str, i32) -> bool) {
        for (topic, parts) in self.committed.iter_mut() {
            parts.retain(|p, _| keep(topic, *p));
        }
        self.committed.retain(|_, parts| !parts.is_empty());
    }

    /// Removes the saved state (with `--kafka-state-dir`), before a commit
    /// it does not name: a restart then starts afresh rather than resume a
    /// state older than the offsets, and cut output that was committed.
    fn forget_saved_state(&mut self) -> Result<(), RunError> {
        let Some(dir) = self.state_dir.as_deref() else {
            return Ok(());
        };
        if self.nothing_to_commit() {
            return Ok(());
        }
        MemberState::forget(dir).map_err(RunError::from)?;
        self.state_stale = true;
        Ok(())
    }

    /// The offsets the member's state stands for once the pending ones of
    /// `assigned` are committed: what a state saved before that commit
    /// names.
    fn to_commit(&self, assigned: &TopicPartitionList) -> BTreeMap<String, BTreeMap<i32, i64>> {
        let mut offsets = self.committed.clone();
        for e in assigned.elements() {
            if let Some(next) = self
                .pending
                .get(e.topic())
                .and_then(|p| p.get(&e.partition()))
            {
                offsets
                    .entry(e.topic().to_owned())
                    .or_default()
                    .insert(e.partition(), *next);
            }
        }
        offsets
    }

    fn handled(&mut self, topic: &str, partition: i32, offset: i64) {
        match self.pending.get_mut(topic) {
            Some(p) => {
                p.insert(partition, offset + 1);
            }
            None => {
                self.pending
                    .insert(topic.to_owned(), HashMap::from([(partition, offset + 1)]));
            }
        }
        self.uncommitted += 1;
    }

    /// Makes the output durable, then commits the pending offsets of
    /// `partitions` (the assignment, or the partitions being revoked) and
    /// forgets them; what is pending for partitions not in the list and not
    /// assigned any more is dropped. A failed commit is not fatal: the
    /// records are written, and the worst outcome is that they are scored
    /// again. A failed sync is.
    fn commit(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        partitions: &TopicPartitionList,
    ) -> Result<(), RunError> {
        if self.nothing_to_commit() || self.poisoned {
            return Ok(());
        }
        let pending = &mut self.pending;
        let commits = &mut self.commits;
        let committed = &mut self.committed;
        let forwarder = self.forwarder.as_ref();
        let floors = self
            .repartition_topic
            .as_deref()
            .map(|t| (t, self.held.floors()));
        let result = sync_then(self.sink.as_mut(), |_| {
            // Input offsets only once what was re-published is in the
            // repartition topic.
            if let Some(f) = forwarder {
                f.acknowledged()?;
            }
            commit_pending(consumer, partitions, pending, floors, commits, committed)
        });
        match result {
            Err(RunError::Sink(e) | RunError::Output(e)) => {
                self.poison();
                return Err(RunError::Output(e));
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        self.uncommitted = self.pending.values().map(|p| p.len() as u64).sum();
        self.unsynced = false;
        result
    }
}

/// Commits the pending offsets of `partitions` and forgets them; what is
/// pending for partitions not in the list and not assigned any more is
/// dropped. Called only once the output is durable. `floors`: the
/// repartition topic and, per partition, the first offset still held: a
/// partition is committed up to it and stays pending.
fn commit_pending(
    consumer: &BaseConsumer<GroupContext>,
    partitions: &TopicPartitionList,
    pending: &mut HashMap<String, HashMap<i32, i64>>,
    floors: Option<(&str, HashMap<i32, i64>)>,
    commits: &mut u64,
    committed: &mut BTreeMap<String, BTreeMap<i32, i64>>,
) -> Result<(), RunError> {
    {
        let mut tpl = TopicPartitionList::new();
        for e in partitions.elements() {
            let Some(parts) = pending.get_mut(e.topic()) else {
                continue;
            };
            let Some(next) = parts.remove(&e.partition()) else {
                continue;
            };
            let floor = floors
                .as_ref()
                .filter(|(t, _)| *t == e.topic())
                .and_then(|(_, f)| f.get(&e.partition()).copied());
            let at = match floor {
                Some(f) if f < next => {
                    parts.insert(e.partition(), next);
                    f
                }
                _ => next,
            };
            tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(at))
                .map_err(|e| RunError::Kafka(format!("kafka: {e}")))?;
        }
        let assigned = consumer.assignment().unwrap_or_default();
        for (topic, parts) in pending.iter_mut() {
            parts.retain(|p, _| assigned.find_partition(topic, *p).is_some());
        }
        pending.retain(|_, parts| !parts.is_empty());
        if tpl.count() == 0 {
            return Ok(());
        }
        // A failed commit is not fatal: the records are written, and the
        // worst outcome is that they are scored again.
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                *commits += 1;
                for e in tpl.elements() {
                    if let Offset::Offset(o) = e.offset() {
                        committed
                            .entry(e.topic().to_owned())
                            .or_default()
                            .insert(e.partition(), o);
                    }
                }
            }
            Err(e) => {
                // Still to commit: the next commit tries again (and a
                // saved state names them, not the older offsets).
                for el in tpl.elements() {
                    if let Offset::Offset(o) = el.offset() {
                        let parts = pending.entry(el.topic().to_owned()).or_default();
                        let next = parts.entry(el.partition()).or_insert(o);
                        *next = (*next).max(o);
                    }
                }
                tracing::warn!(
                    "kafka: offsets not committed ({e}); the records since the last commit may be scored again"
                )
            }
        }
        Ok(())
    }
}

/// `topic[0,1,3] other[2]`, topics and partitions in order.
fn describe(tpl: &TopicPartitionList) -> String {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for e in tpl.elements() {
        by_topic
            .entry(e.topic().to_owned())
            .or_default()
            .push(e.partition());
    }
    if by_topic.is_empty() {
        return "(none)".into();
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{t}[{}]", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One module's lane and the parser of its messages.
struct Route {
    lane: Lane,
    parser: LineParser,
}

/// Consumes until [`Controls::stop`] is set, then syncs, commits and leaves
/// the group (so the others take the partitions over at once).
pub fn run_kafka(opts: &KafkaOptions, controls: &Controls) -> Result<KafkaStats, RunError> {
    if opts.topics.is_empty() {
        return Err(RunError::Kafka(
            "no topics to consume: give --topics (for example zeek-conn,zeek-dns, or zeek)".into(),
        ));
    }
    let lane_opts = LaneOptions {
        only_anomalies: opts.only_anomalies,
        reload_every: Some(opts.reload_every),
        record: opts.record.clone(),
        allowlist: opts.allowlist.clone(),
    };
    if opts.state_dir.is_some() && opts.repartition.is_some() {
        return Err(RunError::Kafka(
            "--kafka-state-dir cannot be used with --repartition-topic yet: after a restart the records re-published since the last save would be re-published and scored again; drop one of them (with a repartition topic every start is afresh)".into(),
        ));
    }
    // Held while the run lasts: one member per state directory.
    let lock = opts
        .state_dir
        .as_deref()
        .map(crate::pipeline::live::lock_state_dir)
        .transpose()?;
    let resume = match &opts.state_dir {
        Some(dir) => resumable(opts, dir)?,
        None => None,
    };
    let mut lanes: HashMap<LogKind, Route> = HashMap::new();
    for &module in &opts.modules {
        let mut lane = Lane::load(module, &opts.model_dir, &lane_opts)
            .map_err(|error| RunError::Model { module, error })?;
        if let Some(saved) = &resume {
            resume::resume_context(&mut lane, saved.context.get(&module));
        }
        let parser = LineParser::new("kafka", Some(module.log_path()));
        lanes.insert(module, Route { lane, parser });
    }
    let fresh = Emitter::for_lanes(
        lanes.values_mut().map(|r| &mut r.lane),
        &opts.detect,
        opts.alerts.is_some(),
    );
    let saved = resume.as_ref().and_then(|s| s.detectors.as_ref());
    let (mut emitter, _) = resume::resume_detectors(fresh, saved);
    // A resumed member cuts its file outputs back to the saved lengths:
    // what lies beyond was written after the last save and is consumed
    // again.
    let sink_opts = SinkOptions {
        format: opts.format,
        stamp: opts.stamp.clone(),
        cut_to: resume
            .as_ref()
            .and_then(|s| resume::cut_to(s.output.as_ref(), &opts.output)),
        kafka_config: opts.config.clone(),
    };
    let mut sink = sink::open(&opts.output, &sink_opts)?;
    let mut saved_files = (sink_opts.cut_to.and_then(|c| c.file), None);
    if let Some(setup) = &opts.alerts {
        // Alerts of their own go through the same sink as the records
        // (split inside), so both are durable before offsets are
        // committed.
        let alerts_cut = match &setup.target {
            AlertTarget::Own(spec) => resume
                .as_ref()
                .and_then(|s| resume::cut_to(s.alerts_output.as_ref(), spec)),
            AlertTarget::Output => None,
        };
        saved_files.1 = alerts_cut.and_then(|c| c.file);
        let alert_opts = SinkOptions {
            cut_to: alerts_cut,
            ..sink_opts.clone()
        };
        if let Some(alerts) = setup.open_sink(&alert_opts)? {
            sink = Box::new(sink::Split {
                records: sink,
                alerts,
            });
        }
        emitter = emitter.with_alerts(setup.opts, &opts.modules, false, None);
        let saved = resume.as_ref().and_then(|s| s.alerts.as_ref());
        resume::resume_alerts(&mut emitter, saved, setup, &opts.modules);
    }
    let consumer = connect(opts, sink)?;
    consumer.context().progress().saved_files = saved_files;
    if let Some(saved) = resume {
        consumer.context().progress().committed = saved.offsets;
    }
    let mut run = Run {
        opts,
        lock: lock.as_ref(),
        lanes,
        emitter,
        outputs: Vec::new(),
        threads: opts.threads.max(1),
        intake: Intake {
            opts,
            // Reads `_path` of records that neither topic nor wrapper place.
            untyped: LineParser::new("kafka", None),
            stats: KafkaStats::default(),
            warnings: Throttle::default(),
            batch: Vec::new(),
            batch_bytes: 0,
            topics: Vec::new(),
        },
    };
    tracing::info!(
        "kafka: {} scoring threads for a batch's long runs of one log type",
        run.threads
    );
    let result = run.consume(&consumer, controls);
    if let Some(f) = &consumer.context().progress().forwarder {
        run.intake.stats.forwarded = f.forwarded;
        run.intake.stats.without_originator = f.without_originator;
    }
    if result.is_err() {
        // Nothing after the last good commit may be committed now, not even
        // by the revoke that leaving the group runs: those records may not
        // be in the output.
        consumer.context().progress().poison();
    }
    run.intake.stats.commits = consumer.context().progress().commits;
    // Dropping the consumer leaves the group (its revoke commits nothing
    // more: all is committed, or the progress is poisoned).
    drop(consumer);
    result?;
    let mut stats = run.intake.stats;
    for (module, route) in run.lanes {
        stats.modules.insert(module, *route.lane.stats());
    }
    Ok(stats)
}

/// Commits the progress of every partition held.
fn commit_all(consumer: &BaseConsumer<GroupContext>) -> Result<(), RunError> {
    let assigned = consumer.assignment().unwrap_or_default();
    consumer.context().progress().commit(consumer, &assigned)
}

/// The state saved in `dir`, if the group's committed offsets are still
/// the ones it was saved at (see [`super::state`]); said either way.
fn resumable(opts: &KafkaOptions, dir: &Path) -> Result<Option<MemberState>, RunError> {
    let Some(saved) = MemberState::load(dir)? else {
        tracing::info!(
            "kafka: no saved state in {}: this member starts afresh",
            dir.display()
        );
        return Ok(None);
    };
    let file = MemberState::file(dir);
    let mut tpl = TopicPartitionList::new();
    for (topic, parts) in &saved.offsets {
        for &p in parts.keys() {
            tpl.add_partition(topic, p);
        }
    }
    let committed = if tpl.count() == 0 {
        TopicPartitionList::new()
    } else {
        // A client of its own that joins no group: it only asks the
        // group's coordinator for the committed offsets.
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &opts.brokers)
            .set("group.id", &opts.group)
            .set("enable.auto.commit", "false");
        for (k, v) in &opts.config {
            cc.set(k, v);
        }
        let client: BaseConsumer = cc.create().map_err(|e| {
            RunError::Kafka(format!(
                "cannot create a Kafka client for {}: {e}",
                opts.brokers
            ))
        })?;
        client
            .committed_offsets(tpl, Duration::from_secs(15))
            .map_err(|e| {
                RunError::Kafka(format!(
                    "cannot read group {}'s committed offsets from {} (to check the state saved in {}): {e}",
                    opts.group,
                    opts.brokers,
                    file.display()
                ))
            })?
    };
    let offset = |topic: &str, partition: i32| match committed
        .find_partition(topic, partition)
        .map(|e| e.offset())
    {
        Some(Offset::Offset(o)) => Some(o),
        _ => None,
    };
    match saved.mismatch(&opts.group, offset) {
        None => {
            let partitions: usize = saved.offsets.values().map(BTreeMap::len).sum();
            tracing::info!(
                "kafka: resuming the state saved in {} with the offsets of {partitions} partitions",
                file.display()
            );
            Ok(Some(saved))
        }
        Some(why) => {
            tracing::warn!(
                "kafka: the state saved in {} is not resumed: {why}; this member starts afresh (records since the group's last commit may be scored again)",
                file.display()
            );
            // Gone now, so that it cannot come back later (after a switch
            // of group and back) over output written since.
            MemberState::forget(dir)?;
            Ok(None)
        }
    }
}

fn connect(
    opts: &KafkaOptions,
    sink: Box<dyn Sink>,
) -> Result<BaseConsumer<GroupContext>, RunError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        // Offsets are committed by hand, after the output is durable.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // A new group starts at the oldest record kept: nothing is skipped.
        .set("auto.offset.reset", "earliest")
        // Larger fetches than librdkafka's 1 MiB per partition: with a
        // backlog, consumption through Tansu measured ~1.6x faster (see
        // benches/kafka.rs). Overridable with --kafka-config.
        .set("max.partition.fetch.bytes", "8388608")
        // Keep more fetched ahead: with librdkafka's 100,000 the consumer
        // waited for fetches between batches (benches/kafka.rs: 105,000 ->
        // 137,000 records/s, 2026-12-06). The memory stays bounded by
        // queued.max.messages.kbytes (64 MiB by default).
        .set("queued.min.messages", "1000000")
        // Once that queue is full, librdkafka waits this long before it
        // fetches again (1 s by default): with a backlog, a member drained
        // its 64 MiB in under a second and then waited for the rest of it
        // with nothing to score (benches/kafka.rs, 2026-12-06: stalls of
        // 80-190 ms, 6 in 12 consumer runs; with 20 ms, 1 in 12).
        .set("fetch.queue.backoff.ms", "20")
        // Statistics (for the lag in the stats line) as often as the line.
        .set(
            "statistics.interval.ms",
            opts.stats_every
                .as_millis()
                .clamp(1000, 86_400_000)
                .to_string(),
        );
    for (k, v) in &opts.config {
        cc.set(k, v);
    }
    let forwarder = opts
        .repartition
        .as_ref()
        .map(|r| Forwarder::connect(r, &opts.brokers, &opts.config))
        .transpose()?;
    let consumer: BaseConsumer<GroupContext> = cc
        .create_with_context(GroupContext::new(
            sink,
            forwarder,
            opts.repartition.as_ref().map(|r| (r.topic.clone(), r.hold)),
            opts.state_dir.clone(),
        ))
        .map_err(|e| {
            RunError::Kafka(format!(
                "cannot create a Kafka consumer for {}: {e}",
                opts.brokers
            ))
        })?;
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(15))
        .map_err(|e| {
            RunError::Kafka(format!(
                "cannot reach the Kafka brokers {}: {e}",
                opts.brokers
            ))
        })?;
    for topic in &opts.topics {
        if !metadata.topics().iter().any(|t| t.name() == topic) {
            tracing::warn!(
                "kafka: topic {topic} does not exist yet on {}; waiting for it",
                opts.brokers
            );
        }
    }
    let mut topics: Vec<&str> = opts.topics.iter().map(String::as_str).collect();
    if let Some(r) = &opts.repartition {
        repartition::ensure_topic(r, &opts.topics, &opts.brokers, &opts.config, &metadata)?;
        topics.push(&r.topic);
    }
    consumer
        .subscribe(&topics)
        .map_err(|e| RunError::Kafka(format!("cannot subscribe to {}: {e}", topics.join(","))))?;
    tracing::info!(
        "kafka: joining group {} on {} for topics {}",
        opts.group,
        opts.brokers,
        topics.join(",")
    );
    Ok(consumer)
}

struct Run<'a> {
    opts: &'a KafkaOptions,
    /// With `--kafka-state-dir`, its lock, held while the run lasts; the
    /// state is saved through it.
    lock: Option<&'a crate::follow::StateLock>,
    lanes: HashMap<LogKind, Route>,
    emitter: Emitter,
    outputs: Vec<Output>,
    /// Scoring threads for a batch's long runs of one log type.
    threads: usize,
    intake: Intake<'a>,
}

/// Taking messages from the consumer and routing them to a log type: what
/// a thread of its own does while a batch is scored (see
/// [`Run::score_batch`]), so it touches no lane.
struct Intake<'a> {
    opts: &'a KafkaOptions,
    untyped: LineParser,
    stats: KafkaStats,
    /// Warnings about messages no lane took.
    warnings: Throttle,
    /// Messages taken from the consumer's queue and not yet scored
    /// (without a repartition topic): scored together, on threads, and
    /// only then counted as handled, so no commit passes them.
    batch: Vec<Batched>,
    /// Bytes of the batch's messages.
    batch_bytes: usize,
    /// The names of the topics messages came from (those subscribed to
    /// and the repartition topic: a few), shared by the batched messages
    /// rather than copied into each.
    topics: Vec<Arc<str>>,
}

/// What [`Intake::route`] made of a message: what is left to do with it
/// needs a lane (batched for later, or with a repartition topic, now).
enum Routed<'m> {
    /// Batched, ignored, forwarded or said: nothing more to do.
    Done,
    /// For `module`, but no record: counted and said by its lane.
    Refused { module: LogKind, why: String },
    /// A record of `module`: parsed already (`_path` told its type) or
    /// its body.
    Record {
        module: LogKind,
        parsed: Option<Record>,
        body: &'m [u8],
    },
}

/// A message in a batch: where it came from, and its record if it has one
/// to score.
struct Batched {
    topic: Arc<str>,
    partition: i32,
    offset: i64,
    record: Option<(LogKind, Pending)>,
}

/// A batched message's record: parsed already (its log type needed it),
/// or its body, parsed where the batch is scored (on the reading thread of
/// a long run, while the rest of the batch is scored and written).
enum Pending {
    Parsed(Record),
    Raw(Vec<u8>),
    /// No record (not a JSON object): said, and counted by the lane, in
    /// its place in the batch.
    Refused(String),
}

/// The record of a batched message (`None`: a blank message); a message
/// that is no record is a skip, said by topic, partition and offset as the
/// message-by-message path says it.
fn parse_pending(
    parser: &mut LineParser,
    pending: Pending,
    (module, message): (LogKind, &Batched),
) -> Result<Option<Record>, String> {
    let Batched {
        topic,
        partition,
        offset,
        ..
    } = message;
    let body = match pending {
        Pending::Parsed(r) => return Ok(Some(r)),
        Pending::Refused(why) => return Err(why),
        Pending::Raw(body) => body,
    };
    match parser.parse_line(&body, *offset as u64) {
        Ok(Parsed::Record(r)) => Ok(Some(r)),
        Ok(Parsed::Nothing) => Ok(None),
        Err(e) => Err(format!(
            "{module}: {topic}/{partition} offset {offset}: skipped malformed record: {}",
            reason(&e)
        )),
    }
}

/// Messages taken into one batch at most: what the consumer has already
/// fetched, up to this many messages or bytes (a producer's megabyte
/// records cannot make a batch hold gigabytes). Each batch starts and
/// drains a scoring pipeline (reading, workers, writing), idle at both
/// ends: 16,384 rather than 4,096 took the Kafka bench from 0.68-0.71x to
/// 0.75-0.82x of replay (three rounds each, alternated), and 65,536 rather
/// than 16,384 did as well or better in each of four alternated pairs of
/// runs (one scoring thread: 0.70x-0.87x against 0.58x-0.81x; the host's
/// load moved both by more than that). With messages of a few hundred
/// bytes both bounds are near (65,536 of 500 bytes are 32 MiB), and the
/// records parsed from a batch hold a few times its bytes while it is
/// scored: tens of megabytes. A revoke waits for the batch being scored, a
/// third of a second at 200,000 records/s.
const BATCH: usize = 65_536;
const BATCH_BYTES: usize = 32 << 20;

/// Records of one log type in a row that are scored on threads
/// ([`crate::pipeline::parallel`]); shorter runs (a topic mixing log types)
/// are scored one by one, as starting threads would cost more.
const PARALLEL_RUN: usize = 256;

impl Run<'_> {
    /// The loop, until stopped (then a last commit) or an error.
    fn consume(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        controls: &Controls,
    ) -> Result<(), RunError> {
        let opts = self.opts;
        // Timed commits come less often when saving the member's state is
        // costly ([`crate::pipeline::cadence`]).
        let mut cadence = crate::pipeline::cadence::Cadence::new(opts.commit_every);
        let mut last_stats = Instant::now();
        let mut last_publish = Instant::now();
        while !controls.stop.load(Ordering::SeqCst) {
            crate::metrics::global().heartbeat();
            if last_publish.elapsed() >= Duration::from_secs(1) {
                for (module, route) in &self.lanes {
                    crate::metrics::global().publish(*module, route.lane.stats());
                }
                crate::metrics::global()
                    .detections(self.emitter.written().iter().map(|(k, n)| (k, *n)));
                if let Some(a) = self.emitter.alerts() {
                    crate::metrics::global().alerts(a.stats(), a.open_alerts());
                }
                last_publish = Instant::now();
            }
            self.check_models();
            // Messages taken while the last batch was scored are scored
            // without waiting for more.
            let wait = match self.intake.batch.is_empty() {
                true => Duration::from_millis(100),
                false => Duration::ZERO,
            };
            let polled = consumer.poll(wait);
            let mut progress = self.intake.after_poll(consumer)?;
            match polled {
                // Idle: let readers of the output see what was written.
                None => progress.sink.flush().map_err(RunError::Output)?,
                Some(Ok(message)) => self.handle(&message, &mut progress)?,
                Some(Err(e)) => warn(&mut self.intake.warnings, format_args!("kafka: {e}")),
            }
            drop(progress);
            // What the consumer has fetched already joins the batch (which
            // holds messages only when batching).
            if !self.intake.batch.is_empty() {
                self.intake.fill(consumer, None)?;
            }
            let batched = !self.intake.batch.is_empty();
            self.score_batch(consumer, true)?;
            let mut progress = consumer.context().progress();
            self.release(&mut progress, false)?;
            // A batch scored and nothing taken meanwhile (caught up): what
            // was scored reaches readers of the output now, not after the
            // next poll's wait. (Not per message when repartitioning, which
            // batches nothing.)
            if batched && self.intake.batch.is_empty() {
                progress.sink.flush().map_err(RunError::Output)?;
            }
            // Commit on time, or sooner under a heavy backlog so a crash
            // repeats little.
            let new_file = progress.state_dir.is_some()
                && !progress.lent
                && files(progress.sink.as_ref()) != progress.saved_files;
            let due = (progress.uncommitted > 0 || progress.unsynced || progress.state_stale)
                && (cadence.due()
                    || (progress.uncommitted >= 100_000 && cadence.early_allowed())
                    || new_file);
            drop(progress);
            if due {
                let started = Instant::now();
                self.checkpoint(consumer)?;
                crate::metrics::global().checkpoint_saved();
                // No write budget: offsets are committed with the state,
                // and a member's crash hands what came after them to
                // another member, scored and written again.
                cadence.saved(started, 0);
            }
            if controls.reopen.swap(false, Ordering::SeqCst) {
                self.checkpoint(consumer)?;
                consumer
                    .context()
                    .progress()
                    .sink
                    .reopen()
                    .map_err(RunError::Output)?;
                // The saved output is the new file from now on. Nothing was
                // consumed since the checkpoint, so the state stands for the
                // offsets that checkpoint saved: the ones it committed, or,
                // when that commit failed (not fatal), the pending ones it
                // still has to commit. (The committed ones alone named
                // offsets older than the state: a crash before the next
                // checkpoint resumed it and counted the records between
                // them twice.)
                let assigned = consumer.assignment().unwrap_or_default();
                let offsets = consumer.context().progress().to_commit(&assigned);
                self.save_state(consumer, offsets)?;
                tracing::info!("output reopened (SIGHUP)");
            }
            if last_stats.elapsed() >= opts.stats_every {
                self.log_stats();
                log_repartition(consumer);
                log_lag(consumer);
                last_stats = Instant::now();
            }
        }
        // A clean stop scores what is batched or held (in order) before
        // the last commit, so nothing taken is read again.
        self.score_batch(consumer, false)?;
        self.release(&mut consumer.context().progress(), true)?;
        self.checkpoint(consumer)?;
        self.log_stats();
        log_repartition(consumer);
        Ok(())
    }

    /// Makes the output durable and commits the offsets; with
    /// `--kafka-state-dir`, the state is saved in between, naming the
    /// offsets about to be committed and the output's durable length. A
    /// crash, or a failed commit, between the save and the commit leaves a
    /// state whose offsets the group does not have: a restart starts
    /// afresh (at least once), never resumes a state that counted records
    /// it will read again.
    fn checkpoint(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), RunError> {
        if self.opts.state_dir.is_some() {
            let assigned = consumer.assignment().unwrap_or_default();
            let mut progress = consumer.context().progress();
            if progress.poisoned {
                return Ok(());
            }
            if let Err(e) = progress.sink.sync() {
                progress.poison();
                return Err(RunError::Output(e));
            }
            let offsets = progress.to_commit(&assigned);
            drop(progress);
            self.save_state(consumer, offsets)?;
        }
        commit_all(consumer)
    }

    /// Saves the member's state (with `--kafka-state-dir`) as standing for
    /// `offsets`, with the outputs' lengths now (synced by the caller).
    fn save_state(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    ) -> Result<(), RunError> {
        let (Some(dir), Some(lock)) = (self.opts.state_dir.as_deref(), self.lock) else {
            return Ok(());
        };
        let mut progress = consumer.context().progress();
        if progress.poisoned {
            return Ok(());
        }
        let unsaveable = |e: serde_json::Error| RunError::Io {
            path: MemberState::file(dir),
            source: e.into(),
        };
        let mark = |sink: &dyn Sink, name: String| {
            sink.size().map(|len| OutputMark {
                name,
                len,
                id: sink.identity(),
            })
        };
        let own_alerts = self.opts.alerts.as_ref().and_then(AlertSetup::own_name);
        let alerts_output = match (progress.sink.alert_part(), own_alerts) {
            (Some(a), Some(name)) => mark(a, name),
            _ => None,
        };
        let lanes = self.lanes.values().map(|r| &r.lane);
        let state = StageState::capture(lanes, &self.emitter).map_err(unsaveable)?;
        let size = MemberState {
            version: VERSION,
            group: self.opts.group.clone(),
            offsets,
            output: mark(progress.sink.as_ref(), self.opts.output.to_string()),
            alerts_output,
            context: state.context,
            detectors: state.detectors,
            alerts: state.alerts,
        }
        .save(lock)
        .map_err(RunError::from)?;
        crate::metrics::global().checkpoint_size(size);
        progress.state_stale = false;
        progress.saved_files = files(progress.sink.as_ref());
        Ok(())
    }

    /// Scores the batch's records in order (long runs of one log type on
    /// threads), writes what came of them, and only then counts its
    /// messages as handled. With `overlap`, a thread takes the next
    /// messages from the consumer meanwhile (into the next batch), so
    /// taking and scoring overlap, as reading and scoring do in replay.
    ///
    /// While the batch is scored its output is lent out of the progress;
    /// a revoke in the other thread's poll waits for it to come back, with
    /// the batch counted as handled, before committing
    /// ([`GroupContext::progress_with_output`]): a clean rebalance still
    /// scores nothing twice.
    fn score_batch(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        overlap: bool,
    ) -> Result<(), RunError> {
        if self.intake.batch.is_empty() {
            return Ok(());
        }
        let mut batch = std::mem::take(&mut self.intake.batch);
        self.intake.batch_bytes = 0;
        let ctx = consumer.context();
        let stop = AtomicBool::new(!overlap);
        let mut lent = LentOutput::new(ctx, &stop);
        let Run {
            lanes,
            emitter,
            outputs,
            threads,
            intake,
            ..
        } = self;
        let mut scoring = Scoring {
            lanes,
            emitter,
            outputs,
        };
        let (scored, taken) = std::thread::scope(|scope| {
            let taking = overlap.then(|| scope.spawn(|| intake.fill(consumer, Some(&stop))));
            let scored = scoring.score_batch(&mut batch, *threads, lent.output());
            lent.give_back(scored.as_ref().ok().map(|()| &batch[..]));
            drop(lent);
            let taken = taking.map_or(Ok(()), |t| {
                t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
            });
            (scored, taken)
        });
        scored?;
        taken
    }

    /// The lanes and what they write through, to score records one by one.
    fn scoring(&mut self) -> Scoring<'_> {
        Scoring {
            lanes: &mut self.lanes,
            emitter: &mut self.emitter,
            outputs: &mut self.outputs,
        }
    }

    /// Scores the held records that are due (`all`: every one), earliest
    /// first.
    fn release(&mut self, progress: &mut Progress, all: bool) -> Result<(), RunError> {
        let now = Instant::now();
        loop {
            let entry = if all {
                progress.held.pop()
            } else {
                progress.held.pop_due(now)
            };
            let Some(entry) = entry else {
                return Ok(());
            };
            let (module, record) = entry.item;
            progress.unsynced = true;
            self.scoring()
                .score(module, &record, progress.sink.as_mut())?;
        }
    }

    fn check_models(&mut self) {
        for route in self.lanes.values_mut() {
            if route.lane.check_model() {
                self.emitter.rebase(&mut route.lane);
            }
        }
    }

    /// Takes one message: batched (scored later, in [`Run::score_batch`])
    /// or, with a repartition topic, forwarded, held or scored now.
    fn handle(
        &mut self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        progress: &mut Progress,
    ) -> Result<(), RunError> {
        // Without a repartition topic, messages are scored in batches and
        // count as handled once scored (`score_batch`).
        if progress.repartition_topic.is_none() {
            return self.intake.take_batched(message, progress);
        }
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let repartitioned = progress.repartition_topic.as_deref() == Some(topic);
        if repartitioned && !progress.first_time(partition, offset) {
            return Ok(());
        }
        progress.handled(topic, partition, offset);
        let (module, parsed, body) = match self.intake.route(message, progress)? {
            Routed::Done => return Ok(()),
            Routed::Refused { module, why } => {
                if let Some(route) = self.lanes.get_mut(&module) {
                    route.lane.count_line();
                    route.lane.skip(format_args!("{why}"));
                }
                return Ok(());
            }
            Routed::Record {
                module,
                parsed,
                body,
            } => (module, parsed, body),
        };
        let Some(Route { lane, parser }) = self.lanes.get_mut(&module) else {
            self.intake.stats.ignore(module.log_path());
            return Ok(());
        };
        let parsed = match parsed {
            Some(r) => Ok(Parsed::Record(r)),
            None => parser.parse_line(body, offset as u64),
        };
        let record: Record = match parsed {
            Ok(Parsed::Record(r)) => r,
            Ok(Parsed::Nothing) => {
                lane.count_line();
                return Ok(());
            }
            Err(e) => {
                lane.count_line();
                let reason = reason(&e);
                lane.skip(format_args!(
                    "{module}: {topic}/{partition} offset {offset}: skipped malformed record: {reason}"
                ));
                return Ok(());
            }
        };
        match repartitioned {
            true => {
                let origin = Origin {
                    partition,
                    offset,
                    bytes: message.payload_len(),
                };
                self.hold(progress, module, record, origin)
            }
            false => {
                lane.count_line();
                self.scoring()
                    .score(module, &record, progress.sink.as_mut())
            }
        }
    }

    /// Holds a record of the repartition topic to be scored in time order;
    /// one without a usable `ts` has no place in that order and is scored
    /// at once.
    fn hold(
        &mut self,
        progress: &mut Progress,
        module: LogKind,
        record: Record,
        origin: Origin,
    ) -> Result<(), RunError> {
        match record.ts().filter(|t| t.is_finite()) {
            Some(ts) if progress.held.holds() => {
                let uid = record.get("uid").as_str().unwrap_or_default().to_owned();
                progress
                    .held
                    .push((ts, uid), origin, Instant::now(), (module, record));
                Ok(())
            }
            _ => self
                .scoring()
                .score(module, &record, progress.sink.as_mut()),
        }
    }

    fn log_stats(&self) {
        for route in self.lanes.values() {
            tracing::info!("{}", route.lane.stats_line());
        }
        if self.emitter.stage().is_active() {
            tracing::info!("{}", self.emitter.detections_line());
        }
        if let Some(a) = self.emitter.alerts() {
            tracing::info!("{}", a.stats_line());
        }
        let stats = &self.intake.stats;
        if !stats.ignored.is_empty() || stats.unrouted > 0 {
            let ignored: Vec<String> = stats
                .ignored
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let line = format!(
                "kafka: not scored here: {} (no model or not asked for); {} without a log type",
                if ignored.is_empty() {
                    "none".into()
                } else {
                    ignored.join(", ")
                },
                stats.unrouted
            );
            // Their offsets are committed like the others' (a stuck group
            // helps nobody), so records no module could claim are a warning:
            // a topic name that names no log type, most likely.
            if stats.unrouted > 0 {
                tracing::warn!("{line}");
            } else {
                tracing::info!("{line}");
            }
        }
    }
}

/// Logs what the repartitioning did: records re-published (and how many
/// had no originator: all of those go to one partition) and held.
impl<'a> Intake<'a> {
    /// The progress after a poll: a failure in the rebalance callback is
    /// returned; the batch's messages of partitions revoked in it are
    /// dropped (not scored here, not committed: the next owner scores
    /// them, so a clean rebalance still scores nothing twice).
    fn after_poll<'c>(
        &mut self,
        consumer: &'c BaseConsumer<GroupContext>,
    ) -> Result<MutexGuard<'c, Progress>, RunError> {
        let mut progress = consumer.context().progress();
        if let Some(e) = progress.failed.take() {
            tracing::error!("kafka: failed while handing partitions over in a rebalance");
            return Err(e);
        }
        if !progress.revoked.is_empty() {
            let revoked = std::mem::take(&mut progress.revoked);
            self.batch.retain(|b| {
                !revoked
                    .iter()
                    .any(|(t, p)| **t == *b.topic && *p == b.partition)
            });
        }
        Ok(progress)
    }

    /// Adds messages to the batch (batching only) until it is full; with
    /// `stop` (a batch is being scored on another thread) until that is
    /// set, waiting for messages meanwhile; without, only what the
    /// consumer has fetched already.
    fn fill(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        stop: Option<&AtomicBool>,
    ) -> Result<(), RunError> {
        // Short, so the scoring thread is not kept waiting when it ends.
        let wait = match stop {
            Some(_) => Duration::from_millis(2),
            None => Duration::ZERO,
        };
        while self.batch.len() < BATCH
            && self.batch_bytes < BATCH_BYTES
            && !stop.is_some_and(|s| s.load(Ordering::SeqCst))
        {
            let polled = consumer.poll(wait);
            let mut progress = self.after_poll(consumer)?;
            match polled {
                Some(Ok(message)) => self.take_batched(&message, &mut progress)?,
                Some(Err(e)) => {
                    warn(&mut self.warnings, format_args!("kafka: {e}"));
                    if stop.is_none() {
                        break;
                    }
                }
                None if stop.is_none() => break,
                None => {}
            }
        }
        Ok(())
    }

    /// Puts a message in the batch (without a repartition topic): every
    /// message, so that its offset counts as handled in its turn, with its
    /// record or why it has none if it is for a module here.
    fn take_batched(
        &mut self,
        message: &rdkafka::message::BorrowedMessage<'_>,
        progress: &mut Progress,
    ) -> Result<(), RunError> {
        self.batch_bytes += message.payload_len();
        let topic = match self.topics.iter().find(|t| ***t == *message.topic()) {
            Some(t) => Arc::clone(t),
            None => {
                let t: Arc<str> = message.topic().into();
                self.topics.push(Arc::clone(&t));
                t
            }
        };
        self.batch.push(Batched {
            topic,
            partition: message.partition(),
            offset: message.offset(),
            record: None,
        });
        let pending = match self.route(message, progress)? {
            Routed::Done => return Ok(()),
            Routed::Refused { module, why } => (module, Pending::Refused(why)),
            Routed::Record {
                module,
                parsed: Some(record),
                ..
            } => (module, Pending::Parsed(record)),
            // Parsed where the batch is scored.
            Routed::Record { module, body, .. } => (module, Pending::Raw(body.to_vec())),
        };
        if let Some(last) = self.batch.last_mut() {
            last.record = Some(pending);
        }
        Ok(())
    }

    /// Which module's lane a message's record goes to, from its wrapper,
    /// its topic or its `_path`; forwards it first when repartitioning.
    /// What no lane takes is counted and said here.
    fn route<'m>(
        &mut self,
        message: &'m rdkafka::message::BorrowedMessage<'_>,
        progress: &mut Progress,
    ) -> Result<Routed<'m>, RunError> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let Some(payload) = message.payload() else {
            // A tombstone or empty message carries no record.
            return Ok(Routed::Done);
        };
        let repartitioned = progress.repartition_topic.as_deref() == Some(topic);
        let unwrapped = route::unwrap(payload);
        // A re-published record is routed by the topic it came from.
        let routing_topic = match repartitioned {
            true => repartition::input_topic(message).unwrap_or(topic),
            false => topic,
        };
        let mut module = match &unwrapped.log {
            Some(log) => match module_of_log(log, &self.opts.modules) {
                Some(m) => Some(m),
                None => {
                    // Not re-published either: no member would score it.
                    self.stats.ignore(log);
                    return Ok(Routed::Done);
                }
            },
            None => module_of_topic(routing_topic, &self.opts.modules),
        };
        if !repartitioned {
            if let Some(forwarder) = progress.forwarder.as_mut() {
                // Stage one: to the repartition topic, scored from there.
                forwarder.forward(message, unwrapped.body)?;
                return Ok(Routed::Done);
            }
        }
        if !unwrapped.body.trim_ascii_start().starts_with(b"{") {
            // Checked here, not left to the parser: a parser takes its
            // format from the first line it sees, and one stray `#` line
            // would make it read every later JSON record as TSV. (A wrapped
            // record is an object by construction, so only the topic can
            // have placed this one.)
            let why = format!(
                "{topic}/{partition} offset {offset}: skipped: not a JSON object (Zeek's Kafka writer sends JSON)"
            );
            return Ok(match module {
                Some(module) => Routed::Refused { module, why },
                None => {
                    self.stats.unrouted += 1;
                    warn(&mut self.warnings, format_args!("{why}"));
                    Routed::Done
                }
            });
        }
        let mut parsed = None;
        if module.is_none() {
            // Neither wrapper nor topic name: the record's `_path` decides.
            match self.untyped.parse_line(unwrapped.body, offset as u64) {
                Ok(Parsed::Record(r)) => {
                    let path = r.get("_path").as_str().map(str::to_owned);
                    match path
                        .as_deref()
                        .map(|p| (p, module_of_log(p, &self.opts.modules)))
                    {
                        Some((_, Some(m))) => {
                            module = Some(m);
                            parsed = Some(r);
                        }
                        Some((p, None)) => {
                            self.stats.ignore(p);
                            return Ok(Routed::Done);
                        }
                        None => {
                            self.stats.unrouted += 1;
                            warn(&mut self.warnings, format_args!(
                                "{topic}/{partition} offset {offset}: cannot tell the log type (no wrapper key, no log type in the topic name, no `_path`); skipped"
                            ));
                            return Ok(Routed::Done);
                        }
                    }
                }
                Ok(Parsed::Nothing) => return Ok(Routed::Done),
                Err(e) => {
                    self.stats.unrouted += 1;
                    let reason = reason(&e);
                    warn(
                        &mut self.warnings,
                        format_args!("{topic}/{partition} offset {offset}: skipped: {reason}"),
                    );
                    return Ok(Routed::Done);
                }
            }
        }
        let Some(module) = module else {
            return Ok(Routed::Done);
        };
        if !self.opts.modules.contains(&module) {
            self.stats.ignore(module.log_path());
            return Ok(Routed::Done);
        }
        Ok(Routed::Record {
            module,
            parsed,
            body: unwrapped.body,
        })
    }
}

/// The lanes and what they write through: what scores a batch, on the
/// consumer's thread while the intake takes the next one.
struct Scoring<'r> {
    lanes: &'r mut HashMap<LogKind, Route>,
    emitter: &'r mut Emitter,
    outputs: &'r mut Vec<Output>,
}

impl Scoring<'_> {
    /// Scores the batch's records in order (long runs of one log type on
    /// `threads`) and writes what came of them to `sink`.
    fn score_batch(
        &mut self,
        batch: &mut [Batched],
        threads: usize,
        sink: &mut dyn Sink,
    ) -> Result<(), RunError> {
        // The records, each with the index of its message (named only
        // when it is no record).
        let records: Vec<(LogKind, Pending, usize)> = batch
            .iter_mut()
            .enumerate()
            .filter_map(|(i, b)| b.record.take().map(|(m, p)| (m, p, i)))
            .collect();
        let mut records = records.into_iter().peekable();
        let batch = &*batch;
        while let Some(first) = records.next() {
            let module = first.0;
            let mut run = vec![first];
            while let Some(next) = records.next_if(|r| r.0 == module) {
                run.push(next);
            }
            if run.len() < PARALLEL_RUN {
                for (_, pending, i) in run {
                    let Some(route) = self.lanes.get_mut(&module) else {
                        break;
                    };
                    route.lane.count_line();
                    match parse_pending(&mut route.parser, pending, (module, &batch[i])) {
                        Ok(Some(record)) => self.score(module, &record, sink)?,
                        Ok(None) => {}
                        Err(why) => route.lane.skip(format_args!("{why}")),
                    }
                }
                continue;
            }
            let Some(Route { lane, parser }) = self.lanes.get_mut(&module) else {
                continue;
            };
            // Messages that are no record are counted and said once the
            // run is scored (the lane is the workers' until then).
            let mut refused: Vec<String> = Vec::new();
            let lines = run.into_iter().filter_map(|(_, pending, i)| {
                match parse_pending(parser, pending, (module, &batch[i])) {
                    Ok(record) => record.map(Ok),
                    Err(why) => {
                        refused.push(why);
                        None
                    }
                }
            });
            let (outputs, emitter) = (&mut *self.outputs, &mut *self.emitter);
            score_parallel(lines, threads, lane, |lane, scored| {
                lane.take(scored, outputs);
                emitter.emit(outputs, sink, None)?;
                let newest = lane.newest_time();
                emitter.progress(module, newest, crate::alert::Reading::CaughtUp, sink)?;
                Ok::<_, SinkError>(true)
            })
            .map_err(RunError::Output)?;
            for why in refused {
                lane.count_line();
                lane.skip(format_args!("{why}"));
            }
        }
        Ok(())
    }

    /// Scores one record in its module's lane and writes what came of it.
    fn score(
        &mut self,
        module: LogKind,
        record: &Record,
        sink: &mut dyn Sink,
    ) -> Result<(), RunError> {
        let Some(route) = self.lanes.get_mut(&module) else {
            return Ok(());
        };
        route.lane.record(record, self.outputs);
        let newest = route.lane.newest_time();
        self.emitter
            .emit(self.outputs, sink, None)
            .map_err(RunError::Output)?;
        self.emitter
            .progress(module, newest, crate::alert::Reading::CaughtUp, sink)
            .map_err(RunError::Output)
    }
}

/// The output, lent out of the progress while a batch is scored on the
/// consumer's thread (the other thread polls meanwhile, and a revoke in
/// its poll must wait for the batch before it syncs and commits). Given
/// back on every path: counted as handled when scored, and even when the
/// scoring failed or panicked (the progress is then poisoned, so nothing
/// more is committed), so a waiting revoke never waits for ever.
struct LentOutput<'c> {
    ctx: &'c GroupContext,
    output: Option<Box<dyn Sink>>,
    /// What [`LentOutput::output`] gives once the output went back.
    stand_in: Lent,
    stop: &'c AtomicBool,
}

impl<'c> LentOutput<'c> {
    fn new(ctx: &'c GroupContext, stop: &'c AtomicBool) -> Self {
        let output = ctx.progress().lend_output();
        LentOutput {
            ctx,
            output: Some(output),
            stand_in: Lent,
            stop,
        }
    }

    fn output(&mut self) -> &mut dyn Sink {
        match &mut self.output {
            Some(output) => output.as_mut(),
            None => &mut self.stand_in,
        }
    }

    /// Gives the output back with, under the same lock, what came of the
    /// batch: `Some`, all of it was written and its messages now count as
    /// handled; `None`, the scoring failed (the run ends with its error):
    /// the progress is poisoned, so the revoke waiting for the output
    /// commits nothing, as when the loop itself fails.
    fn give_back(&mut self, scored: Option<&[Batched]>) {
        let mut progress = self.ctx.progress();
        if let Some(output) = self.output.take() {
            progress.give_back_output(output);
        }
        match scored {
            Some(batch) => {
                for b in batch {
                    progress.handled(&b.topic, b.partition, b.offset);
                }
            }
            None => progress.poison(),
        }
    }
}

impl Drop for LentOutput<'_> {
    fn drop(&mut self) {
        if self.output.is_some() {
            // Not given back: the scoring panicked.
            self.give_back(None);
        }
        self.ctx.returned.notify_all();
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Where the output would be while it is lent out: any use is an error
/// (never reached: the progress is only written with the output in it).
struct Lent;

impl Lent {
    fn error() -> SinkError {
        SinkError::Refused {
            target: "output".into(),
            reason:
                "in use by the thread scoring a batch (a bug in autozeekwatch: please report it)"
                    .into(),
        }
    }
}

impl Sink for Lent {
    fn write(&mut self, _: &crate::score::ScoredRecord) -> Result<(), SinkError> {
        Err(Lent::error())
    }
    fn write_detection(&mut self, _: &crate::detect::Detection) -> Result<(), SinkError> {
        Err(Lent::error())
    }
    fn write_alert(&mut self, _: &crate::alert::Alert) -> Result<(), SinkError> {
        Err(Lent::error())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Err(Lent::error())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Err(Lent::error())
    }
}

fn log_repartition(consumer: &BaseConsumer<GroupContext>) {
    let progress = consumer.context().progress();
    if let (Some(f), Some(topic)) = (&progress.forwarder, &progress.repartition_topic) {
        tracing::info!(
            "kafka: repartition: {} re-published to {topic} ({} without id.orig_h), {} held for ordering",
            f.forwarded,
            f.without_originator,
            progress.held.len()
        );
    }
}

/// Logs how far behind the newest records this member is, over the
/// partitions it holds: what an operator watches to know whether to add
/// consumers. From librdkafka's statistics (no request to the brokers, so
/// the loop never waits for it). Some Kafka-compatible brokers, Tansu among
/// them, report high-water marks loosely; the figure is then only a hint.
///
/// A member that holds no partition says so: it read "0 records behind",
/// as one that had caught up does, while it waited to be assigned some
/// (found by a review).
fn log_lag(consumer: &BaseConsumer<GroupContext>) {
    if consumer.assignment().is_ok_and(|a| a.count() == 0) {
        tracing::info!(
            "kafka: holds no partition: waiting for the group to assign some (more members than partitions, a rebalance, or no subscribed topic)"
        );
        return;
    }
    let lag = consumer.context().lag.load(Ordering::SeqCst);
    if lag >= 0 {
        tracing::info!("kafka: {lag} records behind the newest, over the partitions held");
    }
}

/// The reason alone: the parser's file and line are meaningless for a
/// message, which is named by topic, partition and offset instead.
fn reason(e: &ReadError) -> String {
    match e {
        ReadError::Malformed { reason, .. } | ReadError::NotALog { reason, .. } => reason.clone(),
        other => other.to_string(),
    }
}

/// Logs within the throttle (all are counted by the caller).
fn warn(throttle: &mut Throttle, message: std::fmt::Arguments<'_>) {
    if throttle.allow() {
        tracing::warn!("{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_types_named_by_producers_are_counted_in_bounded_memory() {
        let mut stats = KafkaStats::default();
        for i in 0..10_000 {
            stats.ignore(&format!("made-up-{i}\u{1b}[2J"));
        }
        stats.ignore("made-up-0\u{1b}[2J");
        assert_eq!(stats.ignored.len(), IGNORED_NAMES + 1);
        assert_eq!(stats.ignored[OTHER_NAMES], 10_000 - IGNORED_NAMES as u64);
        assert_eq!(stats.ignored["made-up-0\\x1b[2J"], 2);
        assert!(stats.ignored.keys().all(|k| !k.contains('\u{1b}')));
    }

    /// An output that takes everything.
    struct Accepting;

    impl Sink for Accepting {
        fn write(&mut self, _: &crate::score::ScoredRecord) -> Result<(), SinkError> {
            Ok(())
        }
        fn write_detection(&mut self, _: &crate::detect::Detection) -> Result<(), SinkError> {
            Ok(())
        }
        fn write_alert(&mut self, _: &crate::alert::Alert) -> Result<(), SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    fn context() -> GroupContext {
        GroupContext::new(Box::new(Accepting), None, None, None)
    }

    /// A batch's long run of one log type in a lane with an allowlist is
    /// scored on threads with the allowlist applied: the 44 example SSH
    /// records cycled to a run of 440, a rule dropping one host's: the
    /// same counts as the records scored one by one.
    #[test]
    fn an_allowlist_applies_to_a_batch_long_run() {
        let dir = tempfile::tempdir().unwrap();
        let model = crate::model::tests::ssh_model();
        model
            .save(&dir.path().join(crate::model::file_name(LogKind::SSH)))
            .unwrap();
        let allow = dir.path().join("allow.toml");
        std::fs::write(
            &allow,
            "[[rule]]\nsource = \"10.128.0.19\"\naction = \"drop\"\n",
        )
        .unwrap();
        let opts = crate::pipeline::LaneOptions {
            allowlist: Some(allow),
            ..Default::default()
        };
        let lane = Lane::load(LogKind::SSH, dir.path(), &opts).unwrap();
        let parser = LineParser::new("kafka", Some(LogKind::SSH.log_path()));
        let mut lanes = HashMap::from([(LogKind::SSH, Route { lane, parser })]);
        let records = crate::zeek::testutil::example_records("ssh");
        assert_eq!(records.len(), 44);
        let batch_records: Vec<Record> = records.iter().cycle().take(440).cloned().collect();
        let mut batch: Vec<Batched> = batch_records
            .iter()
            .enumerate()
            .map(|(i, r)| Batched {
                record: Some((LogKind::SSH, Pending::Parsed(r.clone()))),
                ..message(i as i64)
            })
            .collect();
        assert!(batch.len() >= PARALLEL_RUN);
        let (mut emitter, mut outputs) = (Emitter::records_only(), Vec::new());
        let mut scoring = Scoring {
            lanes: &mut lanes,
            emitter: &mut emitter,
            outputs: &mut outputs,
        };
        scoring.score_batch(&mut batch, 2, &mut Accepting).unwrap();
        let got = *lanes[&LogKind::SSH].lane.stats();
        // The same records one by one through a lane of their own, as
        // live mode scores them.
        let mut alone = Lane::load(LogKind::SSH, dir.path(), &opts).unwrap();
        for b in &batch_records {
            alone.count_line();
            alone.record(b, &mut Vec::new());
        }
        let want = *alone.stats();
        assert!(want.dropped >= 10 && want.scored >= 10, "{want:?}");
        assert_eq!(got, want);
    }

    fn message(offset: i64) -> Batched {
        Batched {
            topic: "zeek-conn".into(),
            partition: 3,
            offset,
            record: None,
        }
    }

    /// What a revoke's callback sees once it may commit: whether the output
    /// is back, the offset pending for the batch's partition, and whether
    /// the progress is poisoned.
    fn revoke_sees(ctx: &GroupContext) -> (bool, Option<i64>, bool) {
        let p = ctx.progress_with_output();
        let next = p.pending.get("zeek-conn").and_then(|m| m.get(&3)).copied();
        (p.lent, next, p.poisoned)
    }

    /// The other thread's revoke waits while a batch is scored, and then
    /// commits it with the rest: a clean rebalance scores nothing twice.
    #[test]
    fn a_revoke_waits_for_the_batch_being_scored_and_commits_it() {
        let ctx = context();
        let stop = AtomicBool::new(false);
        let batch = [message(41), message(42)];
        std::thread::scope(|s| {
            let mut lent = LentOutput::new(&ctx, &stop);
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let ctx = &ctx;
            let revoke = s.spawn(move || {
                started_tx.send(()).unwrap();
                revoke_sees(ctx)
            });
            started_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(100));
            assert!(
                !revoke.is_finished(),
                "the revoke went on while the batch was scored"
            );
            assert!(
                ctx.progress().sink.flush().is_err(),
                "the stand-in took a write"
            );
            lent.output().flush().unwrap();
            lent.give_back(Some(&batch));
            drop(lent);
            assert_eq!(revoke.join().unwrap(), (false, Some(43), false));
        });
        assert!(
            stop.load(Ordering::SeqCst),
            "the intake was not told to stop"
        );
        assert!(
            ctx.progress().sink.flush().is_ok(),
            "the output did not come back"
        );
    }

    /// A batch whose scoring failed or panicked is not handled and nothing
    /// more is committed (the progress is poisoned); the waiting revoke is
    /// let go either way.
    #[test]
    fn a_failed_or_panicked_batch_lets_the_revoke_go_and_is_not_committed() {
        let ctx = context();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let mut lent = LentOutput::new(&ctx, &stop);
            let revoke = s.spawn(|| revoke_sees(&ctx));
            lent.give_back(None);
            drop(lent);
            assert_eq!(revoke.join().unwrap(), (false, None, true));
        });
        let ctx = context();
        let stop = AtomicBool::new(false);
        let (lent_tx, lent_rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let (ctx, stop) = (&ctx, &stop);
            let revoke = s.spawn(move || {
                lent_rx.recv().unwrap();
                revoke_sees(ctx)
            });
            let scoring = s.spawn(move || {
                let _lent = LentOutput::new(ctx, stop);
                lent_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                panic!("scoring failed (on purpose)");
            });
            assert!(scoring.join().is_err());
            assert_eq!(revoke.join().unwrap(), (false, None, true));
        });
        assert!(stop.load(Ordering::SeqCst));
    }
}
