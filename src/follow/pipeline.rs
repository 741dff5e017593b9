//! Live scoring: one thread per module follows its log and scores records;
//! one writer appends their output and checkpoints.
//!
//! Only the writer touches the output and the checkpoint, so "the output
//! holds everything before these positions" is true by construction: a
//! batch's position is recorded after its bytes are written, and the
//! checkpoint is saved after the output is synced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::checkpoint::{Checkpoint, Position, CHECKPOINT_VERSION};
use super::follower::Follower;
use crate::model::{self, Model};
use crate::module::Module;
use crate::reload::Reloader;
use crate::score::Scorer;
use crate::sink::{OutputSpec, Publisher, RecordFormat, Sink};
use crate::zeek::Parsed;

/// Settings of a live run.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub log_dir: PathBuf,
    pub modules: Vec<Module>,
    pub model_dir: PathBuf,
    pub output: OutputSpec,
    pub format: RecordFormat,
    /// Extra librdkafka settings for a Kafka output.
    pub kafka_config: Vec<(String, String)>,
    pub state_dir: PathBuf,
    pub only_anomalies: bool,
    /// How often an idle module looks for new data (file events wake it
    /// sooner).
    pub poll: Duration,
    pub checkpoint_every: Duration,
    pub stats_every: Duration,
    /// How often a model file is checked for replacement.
    pub reload_every: Duration,
}

/// Set by signal handlers (or tests): stop, or reopen the output.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    pub stop: Arc<AtomicBool>,
    pub reopen: Arc<AtomicBool>,
}

/// Counters of one module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleStats {
    pub lines: u64,
    pub scored: u64,
    pub skipped: u64,
    pub anomalies: u64,
    pub written: u64,
    pub lag_bytes: u64,
    pub model_reloads: u64,
}

struct Batch {
    module: Module,
    bytes: Vec<u8>,
    position: Option<Position>,
    stats: ModuleStats,
}

enum Message {
    Batch(Batch),
    Done(Module),
    /// A module could not hand its records to the output (a Kafka output
    /// refused them): the run stops with an error and saves nothing more.
    Failed(Module, String),
}

/// Runs until [`Controls::stop`] is set; returns each module's counters.
pub fn run_live(
    opts: &LiveOptions,
    controls: &Controls,
) -> anyhow::Result<BTreeMap<Module, ModuleStats>> {
    let checkpoint = Checkpoint::load(&opts.state_dir)?.unwrap_or(Checkpoint {
        version: CHECKPOINT_VERSION,
        ..Checkpoint::default()
    });
    let mut scorers = Vec::new();
    for &module in &opts.modules {
        let path = opts.model_dir.join(model::file_name(module));
        let (model, encoder) = Model::load_for(&path, module).with_context(|| {
            format!("{module}: train a model first (azw-train --modules {module})")
        })?;
        scorers.push((module, path, Scorer::new(model, encoder)));
    }
    let output_name = opts.output.to_string();
    let cut_to = match &checkpoint.output {
        Some(o) if *o != output_name => {
            tracing::warn!(
                "the checkpoint was taken with the output {o}, now it is {output_name}: appending without cutting anything"
            );
            None
        }
        _ => Some(checkpoint.output_len),
    };
    let mut output = Sink::open(&opts.output, cut_to, opts.format, &opts.kafka_config)?;
    let publisher = output.publisher();
    if checkpoint.modules.is_empty() {
        tracing::info!(
            "no checkpoint in {}: starting with the live files",
            opts.state_dir.display()
        );
    } else {
        tracing::info!(
            "resuming from the checkpoint in {}",
            opts.state_dir.display()
        );
    }
    let (tx, rx) = mpsc::sync_channel::<Message>(64);
    std::thread::scope(|scope| {
        for (module, model_path, scorer) in scorers {
            let tx = tx.clone();
            let resume = checkpoint.modules.get(&module).cloned();
            let publisher = publisher.clone();
            scope.spawn(move || {
                let thread = ModuleThread {
                    module,
                    opts,
                    controls,
                    publisher,
                    tx,
                };
                thread.run(model_path, scorer, resume)
            });
        }
        drop(tx);
        let result = write_loop(rx, &mut output, checkpoint.modules.clone(), opts, controls);
        if result.is_err() {
            // The module threads notice a closed channel only when they next
            // send; an idle one would keep the scope, and the process, alive.
            controls.stop.store(true, Ordering::SeqCst);
        }
        result
    })
}

/// The writer: appends batches, checkpoints, logs stats.
fn write_loop(
    rx: Receiver<Message>,
    output: &mut Sink,
    mut positions: BTreeMap<Module, Position>,
    opts: &LiveOptions,
    controls: &Controls,
) -> anyhow::Result<BTreeMap<Module, ModuleStats>> {
    let mut stats: BTreeMap<Module, ModuleStats> = opts
        .modules
        .iter()
        .map(|m| (*m, ModuleStats::default()))
        .collect();
    let mut running = opts.modules.len();
    let mut failure: Option<anyhow::Error> = None;
    let mut dirty = false;
    let mut last_checkpoint = Instant::now();
    let mut last_stats = Instant::now();
    let save = |output: &mut Sink, positions: &BTreeMap<Module, Position>| -> anyhow::Result<()> {
        output.sync()?;
        Checkpoint {
            version: CHECKPOINT_VERSION,
            output_len: output.len(),
            output: Some(opts.output.to_string()),
            modules: positions.clone(),
        }
        .save(&opts.state_dir)?;
        Ok(())
    };
    while running > 0 {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Message::Batch(_)) if failure.is_some() => {}
            Ok(Message::Batch(b)) => {
                output.write_lines(&b.bytes)?;
                if let Some(p) = b.position {
                    // A module's first position is saved at once: until it
                    // is, a restart would start over from the live file.
                    let first = positions.insert(b.module, p).is_none();
                    if first {
                        save(output, &positions)?;
                        last_checkpoint = Instant::now();
                    }
                }
                let s = stats.entry(b.module).or_default();
                *s = b.stats;
                dirty = true;
            }
            Ok(Message::Done(module)) => {
                tracing::debug!("{module}: stopped");
                running -= 1;
            }
            Ok(Message::Failed(module, e)) => {
                // The others are stopped and drained; no checkpoint is saved
                // past what the output is known to hold.
                controls.stop.store(true, Ordering::SeqCst);
                failure.get_or_insert(anyhow::anyhow!("{module}: {e}"));
                running -= 1;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if controls.reopen.swap(false, Ordering::SeqCst) && failure.is_none() {
            save(output, &positions)?;
            output.reopen()?;
            tracing::info!("output reopened (SIGHUP)");
            dirty = true;
        }
        if dirty && failure.is_none() && last_checkpoint.elapsed() >= opts.checkpoint_every {
            save(output, &positions)?;
            dirty = false;
            last_checkpoint = Instant::now();
        }
        if last_stats.elapsed() >= opts.stats_every {
            log_stats(&stats);
            last_stats = Instant::now();
        }
    }
    if let Some(e) = failure {
        log_stats(&stats);
        return Err(e.context("stopped without saving a checkpoint past the last one"));
    }
    save(output, &positions)?;
    log_stats(&stats);
    Ok(stats)
}

fn log_stats(stats: &BTreeMap<Module, ModuleStats>) {
    for (m, s) in stats {
        tracing::info!(
            "{m}: {} lines read, {} scored, {} skipped, {} anomalies, {} written, {} bytes behind the live file",
            s.lines,
            s.scored,
            s.skipped,
            s.anomalies,
            s.written,
            s.lag_bytes
        );
    }
}

/// A module's thread: follow, score, hand batches to the writer.
struct ModuleThread<'a> {
    module: Module,
    opts: &'a LiveOptions,
    controls: &'a Controls,
    /// Set for a Kafka output: records are published from here, and the
    /// writer's sync waits for the brokers' acknowledgements.
    publisher: Option<Publisher>,
    tx: SyncSender<Message>,
}

impl ModuleThread<'_> {
    fn run(self, model_path: PathBuf, mut scorer: Scorer, resume: Option<Position>) {
        let (module, opts) = (self.module, self.opts);
        let mut follower = Follower::new(module, &opts.log_dir, resume);
        let mut stats = ModuleStats::default();
        let mut reload = Reloader::new(model_path);
        let wake = Wake::new(follower.live_path().parent().unwrap_or(Path::new(".")));
        let mut skips_logged = 0u64;
        while !self.controls.stop.load(Ordering::SeqCst) {
            if let Some(new) = reload.check(module, opts.reload_every) {
                scorer = new;
                stats.model_reloads += 1;
            }
            let step = follower.step();
            let mut bytes = Vec::new();
            for line in step.lines {
                stats.lines += 1;
                match line.parsed {
                    Ok(Parsed::Record(r)) => match scorer.score(&r) {
                        Ok(s) => {
                            stats.scored += 1;
                            stats.anomalies += u64::from(s.anomaly);
                            if s.anomaly || !opts.only_anomalies {
                                let start = bytes.len();
                                // Writing to a Vec cannot fail.
                                let _ = opts.format.write(&s, &mut bytes);
                                stats.written += 1;
                                if let Some(p) = &self.publisher {
                                    if let Err(e) = p.publish(&s, &bytes[start..]) {
                                        // Nothing of this step is checkpointed:
                                        // a restart scores it again.
                                        let _ =
                                            self.tx.send(Message::Failed(module, format!("{e:#}")));
                                        return;
                                    }
                                    bytes.truncate(start);
                                }
                            }
                        }
                        Err(e) => {
                            stats.skipped += 1;
                            tracing::warn!("{module}: line {}: cannot score: {e}", r.line());
                        }
                    },
                    Ok(Parsed::Nothing) => {}
                    Err(e) => {
                        stats.skipped += 1;
                        // Every skip is counted; the first ones are logged with
                        // file and line, then one in a thousand.
                        if skips_logged < 100 || stats.skipped % 1000 == 0 {
                            tracing::warn!("{e}");
                            skips_logged += 1;
                        }
                    }
                }
            }
            stats.lag_bytes = step.lag_bytes;
            let idle = step.idle;
            if !bytes.is_empty() || step.position.is_some() {
                let batch = Batch {
                    module,
                    bytes,
                    position: step.position,
                    stats,
                };
                if self.tx.send(Message::Batch(batch)).is_err() {
                    return;
                }
            }
            if idle {
                wake.wait(opts.poll);
            }
        }
        let _ = self.tx.send(Message::Done(module));
    }
}

/// Wakes a waiting module early on file events in its live folder; polling
/// covers what events miss (they coalesce, overflow, and stop when the
/// folder is replaced).
struct Wake {
    rx: Option<Receiver<()>>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl Wake {
    fn new(dir: &Path) -> Wake {
        use notify::Watcher;
        let (tx, rx) = mpsc::channel();
        let watcher = notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
            let _ = tx.send(());
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

    fn wait(&self, poll: Duration) {
        match &self.rx {
            Some(rx) => {
                if rx.recv_timeout(poll).is_ok() {
                    while rx.try_recv().is_ok() {}
                }
            }
            None => std::thread::sleep(poll),
        }
    }
}
