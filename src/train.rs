//! The training pipeline: a module's historical logs in, a model file out.
//!
//! The history is streamed several times instead of held in memory, so
//! memory stays flat whatever its size:
//!
//! 1. survey: count records, learn the category vocabularies, note the time
//!    span and every problem (logged once, here);
//! 2. KitNET's feature mapper on the first `fm_grace + 1` training records;
//! 3. `epochs` passes of the autoencoders over every training record (the
//!    Python tool stops after its first 55,000);
//! 4. score the held-out records (every `holdout_every`-th hour, never
//!    trained on) and set the threshold that flags `threshold_fpr` of them
//!    (from a fit of their tail when they are too few to measure it).
//!
//! With `max_records` (`--max-records`), passes 2 to 4 use a uniform
//! sample of that many records of the whole history, chosen in pass 1 and
//! the same in every pass ([`crate::sample`]): their cost is then that of
//! the sample (plus reading the history), and memory stays flat (16 bytes
//! per sampled record during pass 1, nothing after).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;
use std::time::Instant;

use crate::features::{
    DirectionSurvey, Encoder, FieldCache, LocalNets, NetsOrigin, SiteLearner, VocabLearner,
};
use crate::kitnet::{KitNet, KitNetError, KitNetParams};
use crate::log_kind::LogKind;
use crate::model::{self, Model, SampleInfo, Threshold, TrainingInfo, FORMAT_VERSION, MAGIC};
use crate::sample::{BottomK, Sample};
use crate::tables::{Table, Tables};
use crate::tail::{self, Bound, TailFit};
use crate::zeek::layout::{self, DateRange, LogFile};
use crate::zeek::{FirstPass, Record, Records, StreamTotals};

/// Fewer training records than this make no useful model.
pub const MIN_TRAINING_RECORDS: u64 = 20;
/// Below this many held-out records the threshold is taken from the scores
/// of all records instead (and the model says so).
pub const MIN_HELD_OUT: u64 = 50;
/// Held-out scores kept for the threshold (a uniform sample beyond it).
const MAX_KEPT_SCORES: usize = 200_000;

/// Settings of one training run.
/// Where long work reports how far it got: a progress bar in the
/// binaries, nothing in tests and benchmarks ([`NoProgress`]).
pub trait Progress: Sync {
    /// The amount of work, in records.
    fn set_length(&self, _total: u64) {}
    fn inc(&self, _n: u64) {}
    /// What is being done now.
    fn set_message(&self, _message: String) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub log_dir: PathBuf,
    pub range: DateRange,
    pub params: KitNetParams,
    pub local_nets: LocalNets,
    /// Where `local_nets` came from: [`learn_site`] replaces the defaults
    /// with the networks Zeek marks local.
    pub local_nets_origin: NetsOrigin,
    /// Share of normal records the threshold may flag (0.001: 0.1%).
    pub threshold_fpr: f64,
    /// Every n-th record is held out of training to set the threshold.
    pub holdout_every: u64,
    /// The feature tables: the built-in ones, or with a site's own
    /// (`--tables`).
    pub tables: Tables,
    /// Use at most this many records of the history (`--max-records`): a
    /// uniform sample of all of it, the same in every pass and for the same
    /// seed (`params.seed`), see [`crate::sample`]. `None`: every record.
    pub max_records: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("{module}: no `{log}` logs under {} (looked for {log}.log, {log}.*.log.gz (or .bz2, .zst) and dated folders YYYY-MM-DD/{log}.*; `current/` is never used for training){range}", dir.display())]
    NoFiles {
        module: LogKind,
        log: &'static str,
        dir: PathBuf,
        range: String,
    },
    #[error("{module}: only {records} usable records in {files} files{}; at least {MIN_TRAINING_RECORDS} are needed to learn what normal looks like ({})", failed_text(*.failed), advice(*.module, *.failed))]
    TooFewRecords {
        module: LogKind,
        records: u64,
        files: usize,
        /// Of `files`, those that could not be read: then the history is
        /// damaged, not quiet, and it is an error even under ALL.
        failed: usize,
    },
    #[error("{module}: {source}")]
    KitNet {
        module: LogKind,
        #[source]
        source: KitNetError,
    },
    #[error(transparent)]
    Model(#[from] model::ModelError),
    #[error("{module}: no feature table for this log type (add one with --tables DIR holding {log}.toml)")]
    NoTable { module: LogKind, log: &'static str },
    #[error("{module}: {} log file(s) changed while training read them, so its passes read different records ({}); no model was written (the old one stays): train again", changed.len(), changed.first().map_or("", String::as_str))]
    HistoryChanged {
        module: LogKind,
        /// Per file, what the first pass and a later one read.
        changed: Vec<String>,
    },
    #[error("--max-records {0}: the sample leaves fewer than {MIN_TRAINING_RECORDS} records to train on once the threshold's are held out; a useful model needs thousands")]
    SampleTooSmall(u64),
}

/// The historical files of a module, oldest first.
pub fn find_files(module: LogKind, opts: &TrainOptions) -> Result<Vec<LogFile>, TrainError> {
    let files = crate::route::files_of(&opts.log_dir, module, opts.range)?;
    if files.is_empty() {
        let range = if opts.range.is_open() {
            String::new()
        } else {
            format!(
                " between {} and {}",
                opts.range
                    .start
                    .map_or("the first day".into(), |d| d.to_string()),
                opts.range
                    .end
                    .map_or("the last day".into(), |d| d.to_string())
            )
        };
        return Err(TrainError::NoFiles {
            module,
            log: module.log_path(),
            dir: opts.log_dir.clone(),
            range,
        });
    }
    Ok(files)
}

/// Conn records read at most to learn the site's networks (the newest).
pub const SITE_SURVEY_RECORDS: u64 = 2_000_000;

/// Learns the site's local networks from the conn history's `local_orig`
/// / `local_resp` marks (Zeek's `Site::local_nets`), for every module:
/// dns, http, ssl and ssh logs carry no marks. Replaces the defaults when
/// Zeek marked anything local; with networks given, warns about local
/// addresses they miss. Reads the newest conn files first, at most
/// [`SITE_SURVEY_RECORDS`] records. Without conn logs, nothing changes.
pub fn learn_site(opts: &mut TrainOptions) -> Result<(), TrainError> {
    let mut files = crate::route::files_of(&opts.log_dir, LogKind::CONN, opts.range)?;
    files.reverse();
    learn_site_from(&paths(&files), opts);
    Ok(())
}

/// [`learn_site`] from these conn files (read in this order).
pub fn learn_site_from(conn_files: &[PathBuf], opts: &mut TrainOptions) {
    if conn_files.is_empty() {
        return;
    }
    let mut learner = SiteLearner::default();
    let records = Records::new(conn_files.to_vec(), Some(LogKind::CONN.log_path()), true);
    for r in records.take(SITE_SURVEY_RECORDS as usize) {
        learner.observe(
            r.get("id.orig_h").as_addr(),
            r.get("id.resp_h").as_addr(),
            r.get("local_orig").as_bool(),
            r.get("local_resp").as_bool(),
        );
    }
    match (&opts.local_nets_origin, learner.finish()) {
        (NetsOrigin::Defaults, Some((nets, origin))) => {
            tracing::info!(
                "local networks {origin}: {}",
                nets.nets()
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            opts.local_nets = nets;
            opts.local_nets_origin = origin;
        }
        (NetsOrigin::Given, Some(_)) => {
            let (outside, n) = learner.local_outside(&opts.local_nets, 5);
            if n > 0 {
                let shown: Vec<String> = outside.iter().map(|a| a.to_string()).collect();
                tracing::warn!(
                    "Zeek marks {n} addresses local (local_orig/local_resp) that --local-nets does not hold, e.g. {}: their traffic counts as external; add their networks, or leave --local-nets out to learn them from Zeek",
                    shown.join(", ")
                );
            }
        }
        _ => {}
    }
}

/// Counts the records of each file, for `--dry-run`.
pub fn count(module: LogKind, files: &[LogFile]) -> StreamTotals {
    let mut records = Records::new(paths(files), Some(module.log_path()), false);
    records.by_ref().for_each(drop);
    records.totals().clone()
}

fn paths(files: &[LogFile]) -> Vec<PathBuf> {
    files.iter().map(|f| f.path.clone()).collect()
}

/// What the first pass found.
struct Survey {
    encoder: Encoder,
    /// What the detectors learned (conn, dns).
    detectors: crate::detect::Baseline,
    /// How records are held out of training, and how many were (of the
    /// sample, when there is one).
    holdout: Holdout,
    held_out: u64,
    /// The records the later passes use (every one without
    /// `--max-records`), and how many that is.
    sample: Sample,
    sampled: u64,
    totals: StreamTotals,
    first_ts: Option<f64>,
    last_ts: Option<f64>,
}

fn survey(table: &Table, files: &[LogFile], opts: &TrainOptions, bar: &dyn Progress) -> Survey {
    let module = table.log;
    let every = opts.holdout_every;
    // Both holdouts are counted, and the vocabularies learned for both,
    // because which one fits is known only at the end: a few hours of
    // history have too few whole hours to hold out.
    let mut held_out = [0u64; 2];
    let mut direction = DirectionSurvey::default();
    let mut detectors = crate::detect::baseline::Learner::new(module);
    // The sample is chosen here, among all records, each tagged with the
    // holdouts that would hold it out (bit k for `Holdout::BOTH[k]`), so
    // that how many it trains on and holds out is known exactly at the end.
    // The vocabularies and the detectors' baselines still learn from every
    // record: they are counts, bounded by their own caps, and cost little
    // next to KitNET, which is what sees only the sample.
    let seed = u64::from(opts.params.seed);
    let mut sampler = opts.max_records.map(|n| BottomK::new(n, seed));
    let (mut first_ts, mut last_ts) = (None::<f64>, None::<f64>);
    let mut plausible = crate::plausible::Plausible::default();
    // Four threads share the pass (it is a fifth of training's work, and
    // would otherwise leave the second core idle): one reads and parses,
    // one per holdout learns its vocabularies (the costliest part), and
    // this one does the rest. Each learner still sees every record in
    // order, so the model is the same bits.
    let (totals, [hours_learner, by_record_learner]) = std::thread::scope(|scope| {
        let (batches, reader) = read_ahead(scope, paths(files), module.log_path(), None, 3);
        let [mine, hours, by_record] = <[_; 3]>::try_from(batches)
            .unwrap_or_else(|_| unreachable!("read_ahead returns one receiver per consumer"));
        let learn = |holdout: Holdout, batches: Receiver<Batch>| {
            scope.spawn(move || {
                let mut learner = VocabLearner::new(table);
                for (start, batch) in batches {
                    for (i, r) in (start..).zip(batch.iter()) {
                        // The vocabularies come from the training records
                        // only, like everything else the model learns.
                        if !holdout.holds_out(i, r.ts(), every) {
                            learner.observe(r);
                        }
                    }
                }
                learner
            })
        };
        let learners = [
            learn(Holdout::Hours, hours),
            learn(Holdout::Records, by_record),
        ];
        for (start, batch) in mine {
            for (i, r) in (start..).zip(batch.iter()) {
                // The history's span, of the times believed (one line at
                // -1e200 turned the context's warm-up exclusion off).
                if let Some(ts) = r.ts().filter(|t| plausible.believes(*t)) {
                    first_ts = Some(first_ts.map_or(ts, |t| t.min(ts)));
                    last_ts = Some(last_ts.map_or(ts, |t| t.max(ts)));
                }
                let (orig, resp) = (r.get("id.orig_h").as_addr(), r.get("id.resp_h").as_addr());
                direction.observe(&opts.local_nets, orig, resp);
                detectors.observe(r);
                let mut tags = 0u8;
                for (k, holdout) in Holdout::BOTH.iter().enumerate() {
                    if holdout.holds_out(i, r.ts(), every) {
                        held_out[k] += 1;
                        tags |= 1 << k;
                    }
                }
                if let Some(s) = &mut sampler {
                    s.offer(i, tags);
                }
            }
            bar.inc(batch.len() as u64);
        }
        (join(reader), learners.map(join))
    });
    let total = totals.records;
    // Whether whole hours can be held out is a question about the history,
    // asked of all of it; the sample then holds out what falls in them.
    let k = usize::from(!Holdout::fits(held_out[0], total));
    let holdout = Holdout::BOTH[k];
    let (sample, sampled, held_out) = match sampler {
        Some(s) if s.offered() > s.len() => {
            let (n, h) = (s.len(), s.count_tagged(1 << k));
            (s.finish(), n, h)
        }
        _ => (Sample::all(seed), total, held_out[k]),
    };
    let learner = if k == 0 {
        hours_learner
    } else {
        by_record_learner
    };
    let mut set = learner.finish(opts.local_nets.clone());
    set.local_nets_origin = opts.local_nets_origin.clone();
    let encoder = Encoder::new(set).expect("a learned feature set has every vocabulary");
    if let Some(warning) = direction.warning(&opts.local_nets_origin) {
        tracing::warn!("{module}: {warning}");
    }
    Survey {
        encoder,
        detectors: detectors.finish(),
        holdout,
        held_out,
        sample,
        sampled,
        totals,
        first_ts,
        last_ts,
    }
}

fn failed_text(failed: usize) -> String {
    match failed {
        0 => String::new(),
        n => format!(" ({n} of them could not be read: see the warnings above)"),
    }
}

fn advice(module: LogKind, failed: usize) -> String {
    match failed {
        0 => format!("add more days of history, or leave {module} out of --modules"),
        _ => "repair or remove the damaged files, or add more days of history".to_owned(),
    }
}

/// Records handed over at once from the reading thread of a pass
/// ([`read_ahead`]): enough that a hand-over costs nothing next to parsing
/// them, few enough that the batches in flight hold little memory.
const READ_BATCH: usize = 1024;
/// Batches in flight per consumer of [`read_ahead`] at most, so that
/// memory stays bounded however far the reading runs ahead.
const BATCHES_IN_FLIGHT: usize = 4;
/// A batch is handed over sooner once its records hold this many bytes
/// ([`Record::heap_bytes`]): 1,024 lines near the 1 MiB line cap held a
/// gigabyte a batch.
const READ_BATCH_BYTES: usize = 4 << 20;

/// A batch of parsed records and the position of its first in the stream.
type Batch = (u64, Arc<Vec<Record>>);

/// Reads and parses `files` on a thread of its own, handing the records
/// over in batches, in order, to each of `consumers` receivers (the same
/// batches to each). Parsing is about a third of a pass that encodes or
/// learns from every record; on a thread of its own it overlaps with that
/// work. Reading stops early when every receiver is dropped. The thread
/// returns the stream's totals. A first pass (`first`: `None`) says what
/// is wrong with the files; a later one only what differs from the first
/// ([`Records::checked_against`]).
fn read_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    files: Vec<PathBuf>,
    log_path: &'static str,
    first: Option<Arc<FirstPass>>,
    consumers: usize,
) -> (Vec<Receiver<Batch>>, ScopedJoinHandle<'scope, StreamTotals>) {
    let (senders, receivers): (Vec<SyncSender<Batch>>, Vec<Receiver<Batch>>) = (0..consumers)
        .map(|_| sync_channel(BATCHES_IN_FLIGHT))
        .unzip();
    let reader = scope.spawn(move || {
        let mut records = Records::new(files, Some(log_path), first.is_some());
        if let Some(first) = first {
            records = records.checked_against(first);
        }
        let mut start = 0u64;
        loop {
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut bytes = 0;
            while batch.len() < READ_BATCH && bytes < READ_BATCH_BYTES {
                let Some(record) = records.next() else {
                    break;
                };
                bytes += record.heap_bytes();
                batch.push(record);
            }
            if batch.is_empty() {
                break;
            }
            let n = batch.len() as u64;
            let batch = Arc::new(batch);
            let mut delivered = false;
            for s in &senders {
                delivered |= s.send((start, Arc::clone(&batch))).is_ok();
            }
            if !delivered {
                break;
            }
            start += n;
        }
        records.totals().clone()
    });
    (receivers, reader)
}

/// The value of a finished scoped thread, its panic passed on.
fn join<T>(handle: ScopedJoinHandle<'_, T>) -> T {
    match handle.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Seconds of traffic held out together: records of one hour.
///
/// Held-out records set the threshold, so they must look like traffic the
/// model has not seen: the next day's, not the neighbours of training
/// records. Every 10th record, interleaved with training, shared every
/// scanner, host and value with it; on the HTTP dev set the threshold so
/// set flagged 0.58% of the next days' benign records instead of 0.1%.
/// Whole hours held out carry their own new scanners and values, as the
/// future does (0.09% there).
pub const HOLDOUT_BLOCK_SECONDS: f64 = 3600.0;

/// How records are held out of training to set the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holdout {
    /// Every n-th hour (records without a time: by position).
    Hours,
    /// Every n-th record: for history of a few hours, whose whole hours
    /// are too few to hold out.
    Records,
}

impl Holdout {
    const BOTH: [Holdout; 2] = [Holdout::Hours, Holdout::Records];

    /// Whether the record at `index` (with time `ts`) is held out.
    pub fn holds_out(self, index: u64, ts: Option<f64>, every: u64) -> bool {
        if every <= 1 {
            return false;
        }
        let block = match (self, ts) {
            (Holdout::Hours, Some(t)) if t.is_finite() && t >= 0.0 => {
                (t / HOLDOUT_BLOCK_SECONDS) as u64
            }
            _ => index,
        };
        block % every == every - 1
    }

    /// Whether holding out whole hours leaves enough on both sides: at
    /// least [`MIN_HELD_OUT`] records held out and at most a third.
    fn fits(held_out: u64, total: u64) -> bool {
        held_out >= MIN_HELD_OUT && held_out * 3 <= total
    }

    pub fn describe(self, every: u64) -> String {
        match self {
            Holdout::Hours => format!("every {every}th hour held out"),
            Holdout::Records => {
                format!("every {every}th record held out (too few hours to hold out whole ones)")
            }
        }
    }
}

/// Trains one module's model from its files.
pub fn train_module(
    module: LogKind,
    files: &[LogFile],
    opts: &TrainOptions,
    bar: &dyn Progress,
) -> Result<Model, TrainError> {
    let started = Instant::now();
    let log_path = module.log_path();
    let table = opts.tables.get(module).ok_or(TrainError::NoTable {
        module,
        log: log_path,
    })?;
    if let Some(n) = opts.max_records.filter(|n| *n < MIN_TRAINING_RECORDS) {
        return Err(TrainError::SampleTooSmall(n));
    }
    bar.set_message(format!("{module}: reading"));
    let survey = survey(table, files, opts, bar);
    let total = survey.totals.records;
    let held_out = survey.held_out;
    let holdout = survey.holdout;
    let sample = survey.sample;
    let trained = survey.sampled - held_out;
    if trained < MIN_TRAINING_RECORDS {
        if let (false, Some(n)) = (sample.is_all(), opts.max_records) {
            return Err(TrainError::SampleTooSmall(n));
        }
        return Err(TrainError::TooFewRecords {
            module,
            records: total,
            files: files.len(),
            failed: survey.totals.failed.len(),
        });
    }
    let encoder = &survey.encoder;
    // Later passes must read what the first one did: held-out records and
    // the sample are chosen by position.
    let first = Arc::new(FirstPass::of(&survey.totals));
    let changed = || {
        let changed = first.changed();
        match changed.is_empty() {
            true => Ok(()),
            false => Err(TrainError::HistoryChanged { module, changed }),
        }
    };
    let kit_err = |source| TrainError::KitNet { module, source };
    let mut kitnet = KitNet::new(encoder.len(), opts.params.clone()).map_err(kit_err)?;
    kitnet.set_feature_groups(encoder.column_groups().to_vec());
    let every = opts.holdout_every;
    let file_paths = paths(files);
    let passes = opts.params.epochs as u64;
    bar.set_length(total * (2 + passes));
    let pass_no = std::cell::Cell::new(0u64);
    let report = kitnet.fit(|| {
        pass_no.set(pass_no.get() + 1);
        let p = pass_no.get();
        // The first call feeds the feature mapper; the rest are epochs.
        bar.set_message(if p == 1 {
            format!("{module}: feature map")
        } else {
            format!("{module}: epoch {}/{passes}", p - 1)
        });
        // Every pass streams the history from its start with a fresh
        // context, and held-out records update it too: each record sees
        // the context it will see when scored. So do the records left
        // out of a sample: the records of a sample are far apart, and a
        // context of them alone would call every pair new and every gap
        // long. Without context features they are only read.
        let mut context = encoder.context();
        let mut cache = FieldCache::default();
        let mut scratch = encoder.vector();
        // A history found changed fails the training once fitted: the
        // passes left run on nothing rather than for hours.
        let files = match first.any_changed() {
            true => Vec::new(),
            false => file_paths.clone(),
        };
        Records::new(files, Some(log_path), true)
            .checked_against(Arc::clone(&first))
            .enumerate()
            .filter_map(move |(i, r)| {
                bar.inc(1);
                if !sample.keeps(i as u64) {
                    encoder.update_context(&r, &mut cache, &mut context, &mut scratch);
                    return None;
                }
                let mut v = encoder.vector();
                encoder.encode_with(&r, &mut cache, &mut context, &mut v);
                (!holdout.holds_out(i as u64, r.ts(), every)).then_some(v)
            })
    });
    // Said before what fitting made of a history that changed under it.
    changed()?;
    let report = report.map_err(kit_err)?;
    if report.feature_map_from_short_history {
        tracing::warn!(
            "{module}: {} training records, no more than the feature mapper's grace (--grace-feature-mapping {}): the feature map was learned from all of them, and the autoencoders train on the same records",
            trained,
            opts.params.fm_grace
        );
    }

    // Threshold: scores of records the model never trained on.
    bar.set_message(format!("{module}: threshold"));
    let use_all = held_out < MIN_HELD_OUT;
    // The first stretch of the history has no context yet (every pair is
    // new): its scores say how a cold start looks, not how the network
    // does, and would set the threshold for a warm run too high. They are
    // left out when enough scores remain (a short history keeps them).
    let warm_up = encoder.context_warm_up();
    let warm_until = survey.first_ts.map_or(f64::NEG_INFINITY, |t| t + warm_up);
    let n_features = encoder.len();
    // Three threads share the pass: one reads and parses, this one encodes
    // in order (the context is sequential) and hands the vectors of the
    // scored records on in blocks, and the third scores them, in order,
    // into the reservoirs (whose sampling depends on the order): the same
    // scores in the same order as one thread's.
    let (all_scores, warm_scores) = std::thread::scope(|scope| {
        let check = Some(Arc::clone(&first));
        let (mut batches, reader) = read_ahead(scope, file_paths.clone(), log_path, check, 1);
        let Some(batches) = batches.pop() else {
            unreachable!("read_ahead returns one receiver per consumer")
        };
        // A block: the vectors of scored records back to back, and per
        // record whether it is past the context's warm-up.
        let (to_scorer, blocks) = sync_channel::<(Vec<f64>, Vec<bool>)>(BATCHES_IN_FLIGHT);
        let kitnet = &kitnet;
        let scorer = scope.spawn(move || -> Result<_, KitNetError> {
            let mut warm_scores = Reservoir::new(MAX_KEPT_SCORES);
            let mut all_scores = Reservoir::new(MAX_KEPT_SCORES);
            let mut scratch = kitnet.scratch();
            for (vectors, warm) in blocks {
                for (v, warm) in vectors.chunks_exact(n_features).zip(warm) {
                    let score = kitnet.execute_with(v, &mut scratch)?;
                    all_scores.push(score);
                    if warm {
                        warm_scores.push(score);
                    }
                }
            }
            Ok((all_scores, warm_scores))
        });
        let mut v = encoder.vector();
        let mut context = encoder.context();
        let mut cache = FieldCache::default();
        let new_block = || {
            (
                Vec::with_capacity(READ_BATCH * n_features),
                Vec::with_capacity(READ_BATCH),
            )
        };
        let mut block = new_block();
        'read: for (start, batch) in batches {
            for (i, r) in (start..).zip(batch.iter()) {
                // The records not scored only update the context (nothing
                // without context features).
                let scored = sample.keeps(i) && (use_all || holdout.holds_out(i, r.ts(), every));
                if !scored {
                    encoder.update_context(r, &mut cache, &mut context, &mut v);
                    continue;
                }
                encoder.encode_with(r, &mut cache, &mut context, &mut v);
                block.0.extend_from_slice(&v);
                block.1.push(r.ts().is_none_or(|t| t >= warm_until));
                // The scorer hangs up only on an error, which it returns.
                if block.1.len() == READ_BATCH
                    && to_scorer
                        .send(std::mem::replace(&mut block, new_block()))
                        .is_err()
                {
                    break 'read;
                }
            }
            bar.inc(batch.len() as u64);
        }
        if !block.1.is_empty() {
            // An error is the scorer's to return.
            let _ = to_scorer.send(block);
        }
        drop(to_scorer);
        let scores = join(scorer);
        join(reader);
        scores
    })
    .map_err(kit_err)?;
    changed()?;
    let cold = all_scores.seen - warm_scores.seen;
    let warm_enough = warm_scores.seen >= MIN_HELD_OUT.max(all_scores.seen / 2);
    let (scores, skipped) = if cold > 0 && warm_enough {
        (warm_scores, cold)
    } else {
        (all_scores, 0)
    };
    let scored = scores.seen;
    let mut scores = scores.into_sorted();
    if scores.is_empty() {
        return Err(TrainError::TooFewRecords {
            module,
            records: total,
            files: files.len(),
            failed: survey.totals.failed.len(),
        });
    }
    let after = if skipped > 0 {
        format!(
            ", after the first {} of context warm-up",
            crate::features::context::span_text(warm_up)
        )
    } else {
        String::new()
    };
    let of_sample = if sample.is_all() {
        String::new()
    } else {
        format!(", in a sample of {} of {total} records", survey.sampled)
    };
    let which = if use_all {
        format!("all {scored} training records (only {held_out} held out){of_sample}{after}")
    } else {
        format!(
            "{scored} held-out training records ({}){of_sample}{after}",
            holdout.describe(every)
        )
    };
    let mut cut = choose_threshold(&scores, opts.threshold_fpr, &which);
    // A tail fit of few scores can extrapolate past the largest score
    // product mode gives, which the model's range check refuses.
    if opts.params.mode == crate::kitnet::Mode::Product
        && cut.value > crate::kitnet::PRODUCT_SCORE_BOUND
    {
        cut.value = crate::kitnet::PRODUCT_SCORE_BOUND;
        cut.method.push_str(&format!(
            ", capped at product mode's largest score {}",
            crate::kitnet::PRODUCT_SCORE_BOUND
        ));
    }
    if let Some(warning) = &cut.warning {
        tracing::warn!("{module}: {warning}");
    }
    let quantiles = [0.5, 0.9, 0.99, 0.999, 1.0]
        .iter()
        .map(|&p| (p, quantile(&scores, p)))
        .collect();
    scores.clear();

    let range = opts.range;
    let mut model = Model {
        format: MAGIC.to_owned(),
        format_version: FORMAT_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_owned(),
        module,
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        threshold: Threshold {
            value: cut.value,
            method: cut.method,
            target_fpr: opts.threshold_fpr,
            scores: scored,
            in_sample: use_all,
            expected_fpr: cut.expected_fpr,
            tail: cut.tail,
        },
        training: TrainingInfo {
            log_dir: opts.log_dir.display().to_string(),
            files: files.iter().map(|f| f.path.display().to_string()).collect(),
            start_date: range.start.map(|d| d.to_string()),
            end_date: range.end.map(|d| d.to_string()),
            first_ts: survey.first_ts,
            last_ts: survey.last_ts,
            records: total,
            trained_records: trained,
            held_out_records: held_out,
            skipped_lines: survey.totals.malformed,
            failed_files: survey
                .totals
                .failed
                .iter()
                .map(|(_, m)| m.clone())
                .collect(),
            epochs: report.epochs,
            feature_map_records: report.feature_map_records,
            score_quantiles: quantiles,
            seconds: started.elapsed().as_secs_f64(),
            sample: (!sample.is_all()).then(|| SampleInfo {
                max_records: opts.max_records.unwrap_or(survey.sampled),
                seed: u64::from(opts.params.seed),
                sampled: survey.sampled,
            }),
        },
        columns: encoder.columns().to_vec(),
        features: encoder.feature_set().clone(),
        kitnet,
        detectors: survey.detectors,
    };
    model.format_version = model.needed_format();
    Ok(model)
}

/// Writes a module's model into `model_dir`, atomically.
pub fn save(model: &Model, model_dir: &Path) -> Result<PathBuf, TrainError> {
    let path = model_dir.join(model::file_name(model.module));
    model.save(&path)?;
    Ok(path)
}

/// A threshold and how far to trust it.
#[derive(Debug, Clone)]
struct Cut {
    value: f64,
    method: String,
    expected_fpr: Option<f64>,
    tail: Option<TailFit>,
    /// Said once at training time, when the scores cannot support the
    /// target.
    warning: Option<String>,
}

/// The threshold flagging `fpr` of normal traffic, from the sorted normal
/// scores (`which` says what they are, for the model's record).
///
/// Where the scores resolve the target (at least ten of them above it) it
/// is their empirical quantile; beyond, the quantile of a generalised
/// Pareto fit of their tail ([`crate::tail`]), never below the empirical
/// one of the same rank, and bounded ([`TailFit::bounded`]).
/// Without enough scores for a fit it is their maximum, and the warning
/// says what rate that can promise.
fn choose_threshold(sorted: &[f64], fpr: f64, which: &str) -> Cut {
    let n = sorted.len();
    let q = 1.0 - fpr;
    let resolved = fpr * n as f64 >= tail::MIN_EXCESSES as f64;
    let tail = TailFit::fit(sorted);
    if resolved {
        return Cut {
            value: quantile(sorted, q),
            method: format!("empirical quantile {q} of the scores of {which}"),
            expected_fpr: Some(fpr),
            tail,
            warning: None,
        };
    }
    let need = (tail::MIN_EXCESSES as f64 / fpr).ceil();
    match tail {
        Some(fit) => {
            let fitted = fit.quantile(fpr).max(quantile(sorted, q));
            // Never past what the scores support ([`TailFit::bounded`]).
            let largest = sorted.last().copied().unwrap_or(f64::NAN);
            let (value, bound) = fit.bounded(fitted, fpr, largest);
            Cut {
                value,
                method: format!(
                    "quantile {q} of a generalised Pareto fit of the top {} scores of {which}{}",
                    fit.excesses,
                    bound_note(bound, fitted)
                ),
                // The fit's rate, unless the scores themselves say more:
                // a threshold at their maximum is exceeded by about one
                // normal record in n + 1, whatever a light fitted tail says.
                // Brought back to their maximum from past it, the fit is
                // what was wrong: the scores' rate alone.
                expected_fpr: Some(match bound {
                    Bound::AtLargest => empirical_exceedance(sorted, value),
                    _ => fit.exceedance(value).max(empirical_exceedance(sorted, value)),
                }),
                tail,
                warning: (n as f64 * fpr < 1.0).then(|| {
                    format!(
                        "the threshold for --threshold-fpr {fpr} rests on {n} normal scores, extrapolated from their tail; {need} would measure it (more history, or a lower --holdout-every)"
                    )
                }),
            }
        }
        None => Cut {
            value: sorted.last().copied().unwrap_or(f64::NAN),
            method: format!("maximum of the scores of {which} (too few to fit their tail)"),
            expected_fpr: (n > 0).then(|| 1.0 / n as f64),
            tail: None,
            warning: Some(format!(
                "only {n} normal scores to set the threshold: it is their maximum, which flags about {:.2}% of normal traffic, not the {:.3}% asked for; {need} scores would measure it (more history, or a lower --holdout-every)",
                100.0 / n.max(1) as f64,
                fpr * 100.0
            )),
        },
    }
}

/// What the threshold's method says of how [`TailFit::bounded`] moved the
/// fit's quantile (`fitted`).
fn bound_note(bound: Bound, fitted: f64) -> String {
    match bound {
        Bound::None => String::new(),
        Bound::AtLargest => format!(", at most their largest ({fitted:.6} fitted past it)"),
        Bound::Span(span) => format!(
            ", bounded at {span:.2} times their largest, as far past it as their tail spans ({fitted:.6} fitted)"
        ),
    }
}

/// The share of normal scores at or above `value`, as an estimate for
/// the next one: `k / (n + 1)`.
fn empirical_exceedance(sorted: &[f64], value: f64) -> f64 {
    let at_or_above = sorted.len() - sorted.partition_point(|s| *s < value);
    at_or_above as f64 / (sorted.len() + 1) as f64
}

/// The nearest-rank quantile of sorted scores.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A uniform sample of at most `cap` values (Algorithm R), with a fixed
/// seed so the same data gives the same threshold.
struct Reservoir {
    cap: usize,
    values: Vec<f64>,
    seen: u64,
    state: u64,
}

impl Reservoir {
    fn new(cap: usize) -> Reservoir {
        Reservoir {
            cap,
            values: Vec::new(),
            seen: 0,
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn push(&mut self, v: f64) {
        self.seen += 1;
        if self.values.len() < self.cap {
            self.values.push(v);
            return;
        }
        // xorshift64*: enough for sampling, no dependency.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) % self.seen;
        if (r as usize) < self.cap {
            self.values[r as usize] = v;
        }
    }

    fn into_sorted(mut self) -> Vec<f64> {
        self.values.sort_by(f64::total_cmp);
        self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let s: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&s, 0.999), 999.0);
        assert_eq!(quantile(&s, 1.0), 1000.0);
        assert_eq!(quantile(&s, 0.5), 500.0);
        assert_eq!(quantile(&s[..1], 0.999), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn thresholds_and_the_rate_they_promise() {
        let scores: Vec<f64> = (1..=100_000).map(|i| f64::from(i) / 1e5).collect();
        let cut = choose_threshold(&scores, 0.001, "test");
        assert_eq!(cut.value, quantile(&scores, 0.999), "measurable: empirical");
        assert_eq!(cut.expected_fpr, Some(0.001));
        assert!(cut.warning.is_none());

        // 900 scores for a 0.1% target: extrapolated, never below their
        // maximum's rank, and never promising less than the target.
        let few: Vec<f64> = (1..=900).map(|i| (f64::from(i) / 900.0).powi(4)).collect();
        let cut = choose_threshold(&few, 0.001, "test");
        assert!(cut.value >= quantile(&few, 0.999));
        assert!(cut.tail.is_some());
        let e = cut.expected_fpr.unwrap();
        assert!((0.000_999..0.01).contains(&e), "{e}");
        if cut.value == few[few.len() - 1] {
            assert!(e >= 1.0 / 901.0, "at their maximum: one in n + 1");
        }
        assert!(cut.warning.unwrap().contains("rests on 900 normal scores"));

        let tiny = [0.1, 0.2, 0.3];
        let cut = choose_threshold(&tiny, 0.001, "test");
        assert_eq!(cut.value, 0.3, "too few to fit: their maximum");
        assert!(cut.warning.unwrap().contains("only 3 normal scores"));
    }

    /// A fit past every score is brought back: to the largest score when
    /// there are enough scores for the rate, else no further past it than
    /// the tail spans; a fit within the bounds is kept.
    #[test]
    fn a_tail_fit_far_past_the_scores_is_bounded() {
        let fit = |level: f64, scores: u64| TailFit {
            level,
            sigma: 1.0,
            xi: 0.5,
            excesses: 40,
            scores,
        };
        // What training does with the fit's quantile: bounds it by the
        // largest score, and says how in the method.
        let bounded = |sorted: &[f64], fit: &TailFit, fpr: f64, fitted: f64| {
            let (value, bound) = fit.bounded(fitted, fpr, sorted[sorted.len() - 1]);
            (value, bound_note(bound, fitted))
        };
        let many: Vec<f64> = (1..=2000).map(|i| f64::from(i) / 2000.0).collect();
        let (v, why) = bounded(&many, &fit(0.98, 2000), 0.001, 5.0);
        assert_eq!(v, 1.0);
        assert!(
            why.contains("at most their largest (5.000000 fitted"),
            "{why}"
        );
        assert_eq!(
            bounded(&many, &fit(0.98, 2000), 0.001, 0.99),
            (0.99, String::new())
        );
        let few: Vec<f64> = (1..=300).map(|i| f64::from(i) / 300.0).collect();
        let (v, why) = bounded(&few, &fit(0.5, 300), 0.001, 10.0);
        assert_eq!(v, 2.0, "the top half spans a factor of 2 past 0.5");
        assert!(why.contains("bounded at 2.00 times their largest"), "{why}");
        assert_eq!(
            bounded(&few, &fit(0.5, 300), 0.001, 1.5),
            (1.5, String::new())
        );
        // Through `choose_threshold`: 5,000 scores for a 0.1% rate (5
        // expected above it), whose top 2% spread evenly on the log scale
        // up to a ceiling (as a sensor's did): the fit's exponential tail
        // goes on past the ceiling, the threshold stops at it.
        let mut scores: Vec<f64> = (0..4900).map(|i| 0.1 + f64::from(i) / 49_000.0).collect();
        scores.extend((1..=100).map(|j| 0.2 * (f64::from(j) / 100.0).exp()));
        let cut = choose_threshold(&scores, 0.001, "test");
        assert_eq!(cut.value, scores[scores.len() - 1], "{cut:?}");
        assert!(cut.method.contains("at most their largest"), "{cut:?}");
        assert!(cut.expected_fpr.unwrap() <= 0.001, "{cut:?}");
    }

    #[test]
    fn holdout_takes_every_nth() {
        let held: Vec<u64> = (0..30)
            .filter(|i| Holdout::Hours.holds_out(*i, None, 10))
            .collect();
        assert_eq!(held, [9, 19, 29], "by position without a time");
        let hour = HOLDOUT_BLOCK_SECONDS;
        let held: Vec<u64> = (0..30)
            .filter(|h| Holdout::Hours.holds_out(0, Some(*h as f64 * hour + 1.5), 10))
            .collect();
        assert_eq!(held, [9, 19, 29], "by hour with one");
        let held: Vec<u64> = (0..30)
            .filter(|i| Holdout::Records.holds_out(*i, Some(5.0), 10))
            .collect();
        assert_eq!(held, [9, 19, 29], "by position, whatever the time");
        for h in Holdout::BOTH {
            assert!(
                !(0..30).any(|i| h.holds_out(i, Some(i as f64), 1)),
                "1 disables the holdout"
            );
        }
        assert!(Holdout::fits(100, 1000));
        assert!(!Holdout::fits(10, 1000), "too few held out");
        assert!(!Holdout::fits(600, 1000), "too few left to train");
    }

    /// A log of `n` conn records whose `ts` is their position.
    fn numbered_log(dir: &Path, n: u64) -> PathBuf {
        let mut text =
            String::from("#separator \\x09\n#path\tconn\n#fields\tts\tuid\n#types\ttime\tstring\n");
        for i in 0..n {
            text.push_str(&format!("{i}\tC{i}\n"));
        }
        let path = dir.join("conn.log");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Removes a file when the first epoch starts: Zeek's log expiry, or
    /// a hand, between training's passes.
    struct RemoveAtEpoch(std::sync::Mutex<Option<PathBuf>>);

    impl Progress for RemoveAtEpoch {
        fn set_message(&self, message: String) {
            if message.contains("epoch 1/") {
                if let Some(p) = self.0.lock().unwrap().take() {
                    std::fs::remove_file(p).unwrap();
                }
            }
        }
    }

    #[test]
    fn a_file_removed_between_passes_fails_the_training_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let day = |d: &str| {
            let folder = dir.path().join(d);
            std::fs::create_dir(&folder).unwrap();
            folder
        };
        // Two days of the example conn log.
        let text =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs/conn.log"))
                .unwrap();
        let first = day("2024-04-19").join("conn.00:00:00-01:00:00.log");
        std::fs::write(&first, &text).unwrap();
        std::fs::write(day("2024-04-20").join("conn.00:00:00-01:00:00.log"), &text).unwrap();
        let opts = TrainOptions {
            log_dir: dir.path().to_owned(),
            range: DateRange::default(),
            params: KitNetParams {
                fm_grace: 50,
                ad_grace: 50,
                epochs: 3,
                ..KitNetParams::default()
            },
            local_nets: Default::default(),
            local_nets_origin: Default::default(),
            threshold_fpr: 0.01,
            holdout_every: 10,
            tables: Tables::built_in().clone(),
            max_records: None,
        };
        let files = find_files(LogKind::CONN, &opts).unwrap();
        assert_eq!(files.len(), 2);
        // Untouched, it trains.
        train_module(LogKind::CONN, &files, &opts, &NoProgress).unwrap();
        let bar = RemoveAtEpoch(std::sync::Mutex::new(Some(first.clone())));
        let err = train_module(LogKind::CONN, &files, &opts, &bar).unwrap_err();
        assert!(bar.0.lock().unwrap().is_none(), "the file was removed");
        let TrainError::HistoryChanged { changed, .. } = &err else {
            panic!("{err}");
        };
        // Once, though three epochs came after the removal.
        assert_eq!(changed.len(), 1, "{changed:?}");
        let text = err.to_string();
        assert!(text.contains("conn.00:00:00-01:00:00.log"), "{text}");
        assert!(
            text.contains("in a later one (changed or removed"),
            "{text}"
        );
        assert!(text.contains("no model was written"), "{text}");
    }

    #[test]
    fn read_ahead_hands_every_consumer_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * READ_BATCH as u64 + 7;
        let log = numbered_log(dir.path(), n);
        let (seen, totals) = std::thread::scope(|scope| {
            let (batches, reader) = read_ahead(scope, vec![log], "conn", None, 2);
            let seen: Vec<Vec<(u64, f64)>> = batches
                .into_iter()
                .map(|rx| {
                    scope.spawn(move || {
                        rx.into_iter()
                            .flat_map(|(start, b)| {
                                (start..)
                                    .zip(b.iter().map(|r| r.ts().unwrap()))
                                    .collect::<Vec<_>>()
                            })
                            .collect()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(join)
                .collect();
            (seen, join(reader))
        });
        assert_eq!(totals.records, n);
        for s in seen {
            assert_eq!(s.len() as u64, n);
            assert!(
                s.iter().all(|&(i, ts)| ts == i as f64),
                "positions and order kept"
            );
        }
    }

    #[test]
    fn read_ahead_stops_when_its_consumers_hang_up() {
        let dir = tempfile::tempdir().unwrap();
        let log = numbered_log(dir.path(), 20 * READ_BATCH as u64);
        let totals = std::thread::scope(|scope| {
            let (mut batches, reader) = read_ahead(scope, vec![log], "conn", None, 1);
            let rx = batches.pop().unwrap();
            assert_eq!(rx.recv().unwrap().0, 0);
            drop(rx);
            join(reader)
        });
        assert!(
            totals.records < 20 * READ_BATCH as u64,
            "read {} records",
            totals.records
        );
    }

    #[test]
    fn reservoir_is_bounded_and_keeps_the_first_values_when_small() {
        let mut r = Reservoir::new(10);
        for i in 0..5 {
            r.push(f64::from(i));
        }
        assert_eq!(r.into_sorted(), [0.0, 1.0, 2.0, 3.0, 4.0]);
        let mut r = Reservoir::new(100);
        for i in 0..100_000 {
            r.push(f64::from(i));
        }
        assert_eq!(r.seen, 100_000);
        let s = r.into_sorted();
        assert_eq!(s.len(), 100);
        assert!(s[99] > 50_000.0, "late values get in");
    }
}
