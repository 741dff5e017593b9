//! `azw-infer`: score Zeek logs with the trained models, live or replayed.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use autozeekwatch::alert::{AlertSetup, AlertTarget};
use autozeekwatch::escape::terminal;
use autozeekwatch::model;
use autozeekwatch::pipeline::{self, run_live, Controls, Lane, LaneOptions, LiveOptions};
use autozeekwatch::score::ScoredRecord;
use autozeekwatch::sink::{self, OutputSpec, RecordFormat, Sink, SinkOptions};
use autozeekwatch::LogKind;
use cli::args::infer::{Args, SourceKind};

fn main() -> ExitCode {
    // Signals first, so a stop during start-up is a clean stop too.
    let controls = Controls::default();
    // The first SIGINT/SIGTERM asks for a clean stop; a second one, while
    // the first is being honoured, exits at once.
    let registered = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]
        .into_iter()
        .flat_map(|sig| {
            [
                signal_hook::flag::register_conditional_shutdown(sig, 1, controls.stop.clone()),
                signal_hook::flag::register(sig, controls.stop.clone()),
            ]
        })
        .chain(std::iter::once(signal_hook::flag::register(
            signal_hook::consts::SIGHUP,
            controls.reopen.clone(),
        )))
        .collect::<Result<Vec<_>, _>>();
    let args: Args = cli::config::parse("azw-infer");
    cli::init_logging(&args.log, None);
    if let Err(e) = registered {
        return cli::report(&anyhow::Error::new(e).context("cannot install signal handlers"));
    }
    match run(args, &controls) {
        Ok(code) => code,
        Err(e) => cli::report(&e),
    }
}

/// True if `--modules` asks for ALL: the modules that have a model.
fn all_modules(args: &Args) -> bool {
    args.modules.iter().any(|m| m.eq_ignore_ascii_case("all"))
}

/// The modules to run: those asked for, or under ALL those with a model
/// (a model carries its table, so any log type with a model can be scored).
fn modules(args: &Args) -> anyhow::Result<Vec<LogKind>> {
    if args.model_dir.exists() && !args.model_dir.is_dir() {
        bail!(
            "--model-dir {}: not a folder (it names a file: give the folder the models are in)",
            terminal(&args.model_dir.display().to_string())
        );
    }
    let with_model = model::modules_in(&args.model_dir);
    let mut modules = LogKind::parse_list(&args.modules, &with_model)?;
    if all_modules(args) {
        modules.retain(|m| args.model_dir.join(model::file_name(*m)).exists());
    }
    if modules.is_empty() {
        bail!(
            "no model in {} for the modules asked for: train them first (azw-train --log-dir ... --model-dir {})",
            args.model_dir.display(),
            args.model_dir.display()
        );
    }
    Ok(modules)
}

/// The fewest records a model should rest on (azw-train's default
/// --min-records): a model below it is used, with a warning.
const FEW_RECORDS: u64 = 100;

/// Tells the metrics which models are in use, and warns about models
/// trained on too few records. (Loading errors are left to the lanes,
/// which report them.)
fn note_models(args: &Args, modules: &[LogKind]) {
    for &module in modules {
        let path = args.model_dir.join(model::file_name(module));
        let Ok((m, _)) = model::Model::load_for(&path, module) else {
            continue;
        };
        autozeekwatch::metrics::global().model_loaded(module, m.threshold.value, &m.created);
        autozeekwatch::metrics::global().publish(module, &Default::default());
        if m.training.trained_records < FEW_RECORDS {
            tracing::warn!(
                "{module}: the model {} was trained on only {} records (fewer than {FEW_RECORDS}): expect many false alarms; retrain on more history (azw-train --min-records)",
                path.display(),
                m.training.trained_records
            );
        }
    }
}

/// Tells systemd (Type=notify) that the service is ready once the live
/// run's (or the Kafka consumer's) loop goes round, and feeds its watchdog
/// (WatchdogSec=) as long as the loop keeps going round; without
/// NOTIFY_SOCKET it does nothing.
fn notify_systemd() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let watchdog = sd_notify::watchdog_enabled();
    let every = watchdog.map_or(Duration::from_secs(1), |w| {
        (w / 2).min(Duration::from_secs(1))
    });
    let fresh = watchdog.unwrap_or(Duration::from_secs(10));
    let _ = std::thread::Builder::new()
        .name("systemd".into())
        .spawn(move || {
            let mut ready = false;
            loop {
                let alive = autozeekwatch::metrics::global()
                    .last_heartbeat()
                    .is_some_and(|t| t.elapsed() < fresh);
                if alive && !ready {
                    ready = sd_notify::notify(&[sd_notify::NotifyState::Ready]).is_ok();
                }
                if alive && watchdog.is_some() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                }
                std::thread::sleep(every);
            }
        });
}

fn run(args: Args, controls: &Controls) -> anyhow::Result<ExitCode> {
    if args.source == SourceKind::Kafka {
        // Checked here, not by clap: --print-config prints a Kafka
        // member's settings before they are complete.
        let missing: Vec<&str> = [
            (args.brokers.is_none(), "--brokers HOST:PORT"),
            (args.topics.is_empty(), "--topics TOPIC[,TOPIC...]"),
        ]
        .into_iter()
        .filter_map(|(missing, flag)| missing.then_some(flag))
        .collect();
        if !missing.is_empty() {
            bail!("--source kafka needs {}", missing.join(" and "));
        }
    }
    args.read.apply();
    let modules = modules(&args)?;
    note_models(&args, &modules);
    if let Some(path) = &args.allowlist {
        // Checked before anything runs: a typo in a rule is an error to
        // fix, not a run that silently suppresses nothing.
        let rules = autozeekwatch::allow::Rules::load(path)
            .with_context(|| "--allowlist: fix the file, or leave the flag out")?;
        tracing::info!("allowlist {}: {} rules", path.display(), rules.len());
    }
    // Metrics are for the long runs (live, Kafka), not a replay, which
    // would otherwise fight the service for the config file's port.
    if args.replay.is_empty() {
        if let Some(addr) = args.metrics_listen {
            let bound = autozeekwatch::metrics::serve(addr)
                .with_context(|| format!("--metrics-listen {addr}: cannot listen"))?;
            tracing::info!("metrics at http://{bound}/metrics");
        }
    }
    if args.source == SourceKind::Kafka {
        // Ready (and the watchdog fed) once the consumer loop goes round.
        notify_systemd();
        kafka(&args, modules, controls)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.topics.is_empty() || args.brokers.is_some() || args.repartition_topic.is_some() {
        bail!("--topics, --brokers and --repartition-topic are for --source kafka");
    }
    if !args.replay.is_empty() {
        return replay(&args, &modules, controls);
    }
    let log_dir = args.log_dir.clone().context("--log-dir is required")?;
    if !log_dir.is_dir() {
        bail!(
            "{}: no such directory (give Zeek's log directory, the one that holds current/)",
            log_dir.display()
        );
    }
    if cli::is_zeek_current(&log_dir) {
        bail!(
            "{}: this is Zeek's live folder itself; give its parent, Zeek's log directory (azw-infer follows <log-dir>/current/<log>.log)",
            log_dir.display()
        );
    }
    if !log_dir.join("current").is_dir() {
        bail!(
            "{}: no current/ folder here, so there is no live log to follow; give Zeek's log directory (the one that holds current/ and the dated folders), or score files with --replay",
            log_dir.display()
        );
    }
    notify_systemd();
    let mut modules = modules;
    loop {
        let opts = LiveOptions {
            log_dir: log_dir.clone(),
            modules: modules.clone(),
            model_dir: args.model_dir.clone(),
            output: args.output.clone(),
            format: args.format,
            stamp: args.stamp(),
            record: args.record_options(),
            allowlist: args.allowlist.clone(),
            kafka_config: args.kafka_config.clone(),
            state_dir: args.state_dir.clone(),
            only_anomalies: args.only_anomalies,
            poll: Duration::from_millis(args.poll_ms.max(10)),
            checkpoint_every: Duration::from_millis(args.checkpoint_ms),
            checkpoint_mb_per_hour: args.checkpoint_mb_per_hour,
            stats_every: Duration::from_secs(args.stats_secs.max(1)),
            reload_every: Duration::from_secs(1),
            detect: args.detect_options(),
            warm_hours: args.warm_hours,
            alerts: args.alert_setup().map_err(anyhow::Error::msg)?,
        };
        tracing::info!(
            "following {} for {} (output {}, checkpoint in {})",
            opts.log_dir.join("current").display(),
            opts.modules
                .iter()
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            args.output,
            opts.state_dir.display()
        );
        // Under ALL, a model that appears for a module not followed yet
        // (its first training) stops this run cleanly and starts one with
        // it, from the checkpoint: nothing lost, nothing repeated.
        let run = Controls {
            stop: Default::default(),
            reopen: controls.reopen.clone(),
        };
        let added = std::sync::Mutex::new(Vec::new());
        let result = std::thread::scope(|scope| {
            let watch = scope.spawn(|| watch_new_models(&args, &modules, controls, &run, &added));
            let result = run_live(&opts, &run);
            run.stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = watch.join();
            result
        });
        result?;
        let added = added.into_inner().unwrap_or_default();
        if controls.stop.load(std::sync::atomic::Ordering::SeqCst) || added.is_empty() {
            break;
        }
        for m in &added {
            tracing::info!(
                "{m}: a model appeared in {}; following {m} too",
                args.model_dir.display()
            );
        }
        note_models(&args, &added);
        modules.extend(added);
        modules.sort();
    }
    tracing::info!("stopped; checkpoint written");
    Ok(ExitCode::SUCCESS)
}

/// Until `run` stops: passes a stop signal on to the run, and under ALL
/// stops it when a model appears for a module that is not followed (noted
/// in `added`).
fn watch_new_models(
    args: &Args,
    running: &[LogKind],
    controls: &Controls,
    run: &Controls,
    added: &std::sync::Mutex<Vec<LogKind>>,
) {
    use std::sync::atomic::Ordering;
    let all = all_modules(args);
    let mut last_look = std::time::Instant::now();
    // A new module's model that does not load is said once, and read
    // again only when its file changes (it was read every second, and
    // nobody told why the module was not scored).
    let mut refused: std::collections::HashMap<LogKind, Option<(std::time::SystemTime, u64)>> =
        Default::default();
    while !run.stop.load(Ordering::SeqCst) {
        if controls.stop.load(Ordering::SeqCst) {
            run.stop.store(true, Ordering::SeqCst);
            return;
        }
        if all && last_look.elapsed() >= Duration::from_secs(1) {
            last_look = std::time::Instant::now();
            let new: Vec<LogKind> = model::modules_in(&args.model_dir)
                .into_iter()
                .filter(|m| !running.contains(m))
                .filter(|m| {
                    let path = args.model_dir.join(model::file_name(*m));
                    let stamp = autozeekwatch::reload::stamp(&path);
                    if stamp.is_none() || refused.get(m) == Some(&stamp) {
                        return false;
                    }
                    match model::Model::load_for(&path, *m) {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::error!("{m}: the new model is not scored: {e}");
                            refused.insert(*m, stamp);
                            false
                        }
                    }
                })
                .collect();
            if !new.is_empty() {
                *added.lock().unwrap_or_else(|p| p.into_inner()) = new;
                run.stop.store(true, Ordering::SeqCst);
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Scores files once. A file output is written to a temporary file beside
/// it and renamed into place at the end, so it is never seen half-written;
/// an existing file is replaced only if it is an output of ours, never an
/// input, a link or anything that is not a regular file.
fn replay(args: &Args, modules: &[LogKind], controls: &Controls) -> anyhow::Result<ExitCode> {
    let lane_opts = LaneOptions {
        only_anomalies: args.only_anomalies,
        reload_every: None,
        record: args.record_options(),
        allowlist: args.allowlist.clone(),
    };
    let mut lanes = modules
        .iter()
        .map(|&m| {
            Lane::load(m, &args.model_dir, &lane_opts)
                .map_err(|error| pipeline::RunError::Model { module: m, error })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = SinkOptions {
        format: args.format,
        stamp: args.stamp(),
        ..SinkOptions::default()
    };
    let (mut out, tmp): (Box<dyn Sink>, Option<tempfile::NamedTempFile>) = match &args.output {
        OutputSpec::Stdout => (sink::open(&args.output, &opts)?, None),
        OutputSpec::Kafka { .. } => {
            bail!("--replay writes to a file or standard output; Kafka outputs are for --source kafka and live mode")
        }
        OutputSpec::File(target) => {
            check_replay_target("--output", target, &args.replay, args.format)?;
            check_not_live_output(target, &args.state_dir)?;
            let (sink, tmp) = open_aside(target, &opts)?;
            (sink, Some(tmp))
        }
    };
    let alert_setup = args.alert_setup().map_err(anyhow::Error::msg)?;
    let mut emitter = pipeline::Emitter::for_lanes(
        lanes.iter_mut(),
        &args.detect_options(),
        alert_setup.is_some(),
    );
    let mut alerts_tmp = None;
    if let Some(setup) = alert_setup {
        let (sink, tmp) = replay_alert_sink(args, &setup, &opts)?;
        alerts_tmp = tmp;
        emitter = emitter.with_alerts(setup.opts, modules, true, sink);
    }
    let report = pipeline::replay(
        &args.replay,
        &mut lanes,
        &mut emitter,
        out.as_mut(),
        &controls.stop,
        args.threads
            .map_or_else(pipeline::parallel::default_threads, usize::from),
    );
    // A sink names the partial file it writes (`.scores.json.XXXXXX.partial`);
    // the user named --output and --alerts.
    // The alerts' own file, written beside its target until the end.
    let alerts_file = match (&alerts_tmp, args.alerts.as_ref()) {
        (Some(_), Some(AlertTarget::Own(OutputSpec::File(f)))) => Some(f.as_path()),
        _ => None,
    };
    let unwritten = || match alerts_file {
        Some(alerts) => format!(
            "cannot write the replay's outputs ({} and {} left as they were)",
            args.output,
            alerts.display()
        ),
        None => format!("cannot write {} (left as it was)", args.output),
    };
    let report = match report {
        Err(e @ (pipeline::RunError::Output(_) | pipeline::RunError::Sink(_))) => {
            return Err(anyhow::Error::from(e).context(unwritten()))
        }
        other => other?,
    };
    out.sync().with_context(unwritten)?;
    if let Some(a) = emitter.alert_sink() {
        a.sync().with_context(unwritten)?;
    }
    if report.stopped {
        bail!("stopped before the end; {} left as it was", args.output);
    }
    // Both files are moved into place before anything is said: the
    // records and their alerts are of one run.
    let mut placed = Vec::new();
    if let (Some(tmp), Some(target)) = (tmp, args.output.file()) {
        put_in_place(tmp, target)?;
        placed.push(("scores", target));
    }
    if let (Some(tmp), Some(target)) = (alerts_tmp, alerts_file) {
        put_in_place(tmp, target)?;
        placed.push(("alerts", target));
    }
    // The sink held the output's lock until now: a replay starting
    // meanwhile takes its partial file for one in use, not a stale one.
    drop(out);
    for (what, target) in placed.iter().rev() {
        cli::errln!(
            "{what} written to {}",
            terminal(&target.display().to_string())
        );
    }
    print_alerts(&emitter);
    print_top(report.top.records());
    print_detections(&emitter);
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    cli::errln!(
        "{} of {} input files could not be read (named in the warnings above)",
        report.failed.len(),
        report.files
    );
    Ok(ExitCode::from(cli::EXIT_INPUT_FAILED))
}

/// Opens a temporary file beside `target` to write a replay's output
/// into; it replaces `target` only when the replay is complete.
fn open_aside(target: &Path, opts: &SinkOptions) -> anyhow::Result<(Box<dyn Sink>, TempOutput)> {
    let dir = autozeekwatch::aside::folder(target);
    // Named after the target (the sink locks it while it writes): a
    // replay killed meanwhile leaves a file the next one removes
    // (autozeekwatch::aside).
    let tmp = autozeekwatch::aside::create_unlocked(target)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let spec = OutputSpec::File(tmp.path().to_owned());
    Ok((sink::open(&spec, opts)?, tmp))
}

/// A replay's output file while it is written, moved into place at the
/// end.
type TempOutput = tempfile::NamedTempFile;

/// Moves a complete replay output over `target`, and makes the move
/// durable (the folder synced): the bytes were synced already, and a
/// power cut must not bring back the old file.
fn put_in_place(tmp: TempOutput, target: &Path) -> anyhow::Result<()> {
    tmp.persist(target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    autozeekwatch::safe_fs::sync_dir(autozeekwatch::aside::folder(target))
        .with_context(|| format!("cannot make {} durable", target.display()))
}

/// The alerts' own sink (none: beside the records) and, for a file, where
/// it is written until the end.
type AlertOutput = (Option<Box<dyn Sink>>, Option<TempOutput>);

/// The alerts' own output in a replay: standard output as it is, a file
/// written aside and moved into place at the end (as the records are).
fn replay_alert_sink(
    args: &Args,
    setup: &AlertSetup,
    opts: &SinkOptions,
) -> anyhow::Result<AlertOutput> {
    let AlertTarget::Own(spec) = &setup.target else {
        return Ok((None, None));
    };
    let format = AlertSetup::format(args.format);
    let opts = SinkOptions {
        format,
        ..opts.clone()
    };
    match spec {
        OutputSpec::Stdout => Ok((Some(sink::open(spec, &opts)?), None)),
        OutputSpec::Kafka { .. } => {
            bail!("--replay writes alerts to a file or standard output; Kafka outputs are for --source kafka and live mode")
        }
        OutputSpec::File(target) => {
            if args.output.file() == Some(target.as_path()) {
                bail!("--alerts {}: this is --output too; give `--alerts output` to write them there, beside the records", terminal(&target.display().to_string()));
            }
            check_replay_target("--alerts", target, &args.replay, format)?;
            let (sink, tmp) = open_aside(target, &opts)?;
            Ok((Some(sink), Some(tmp)))
        }
    }
}

/// The alerts of a replay, in brief.
fn print_alerts(emitter: &pipeline::Emitter) {
    let Some(a) = emitter.alerts() else {
        return;
    };
    let s = a.stats();
    cli::errln!(
        "alerts: {} opened from {} flagged records and detections ({} line{} written, each an opening, update or closing){}",
        s.opened,
        s.items,
        s.written,
        if s.written == 1 { "" } else { "s" },
        if s.late + s.forced + s.evicted + s.late_names > 0 {
            format!(
                "; {} arrived late, {} folded early (too many held), {} closed early (too many open), {} names of peers read after their time",
                s.late, s.forced, s.evicted, s.late_names
            )
        } else {
            String::new()
        }
    );
    if s.held_back > 0 {
        cli::errln!(
            "alerts: {} held back by --alerts-per-minute, {} of them never written (one flagged record of an outside host each: a flood of new sources)",
            s.held_back,
            s.held_unwritten
        );
    }
    for a in emitter.top_alerts() {
        let line = format!(
            "  {:<8} {}  [{}]  {}",
            a.severity.name(),
            a.reason,
            a.alert,
            a.uids.join(",")
        );
        cli::errln!("{}", terminal(&line));
    }
}

/// Refuses a replay output that would destroy something not ours: one of
/// the inputs, a symbolic link, a device, or a file that is not an output
/// of this format.
fn check_replay_target(
    flag: &str,
    target: &Path,
    inputs: &[PathBuf],
    format: RecordFormat,
) -> anyhow::Result<()> {
    let shown = terminal(&target.display().to_string()).into_owned();
    // It is read to tell whether it is ours: one this user cannot read (or
    // whose folder it cannot search) is refused, saying so.
    let unreadable = |e: std::io::Error| {
        anyhow::anyhow!(
            "{flag} {shown}: cannot be checked ({e}): replay replaces only its own outputs, and this one cannot be told one; it is left as it is: choose another {flag}, or give this user access to it and its folder"
        )
    };
    let meta = match std::fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(unreadable(e)),
    };
    if meta.file_type().is_symlink() || !meta.is_file() {
        bail!(
            "{flag} {shown}: not a regular file (a link, device or folder); give a plain file path"
        );
    }
    let canonical = std::fs::canonicalize(target).map_err(unreadable)?;
    for input in inputs {
        let input = std::fs::canonicalize(input).unwrap_or_else(|_| input.clone());
        if canonical == input {
            bail!("{flag} {shown} is one of the inputs of --replay; write the scores elsewhere");
        }
    }
    if !sink::is_replaceable_output(target, format).map_err(unreadable)? {
        bail!(
            "{flag} {shown}: exists and is not an autozeekwatch {} output; it is left as it is (replay replaces only its own outputs): choose another {flag}, or move it away",
            format.name()
        );
    }
    Ok(())
}

/// Refuses a replay output that is the output of the live run whose
/// checkpoint is in `state_dir` (a shared config file names both): replay
/// would replace the live scores.
fn check_not_live_output(target: &Path, state_dir: &Path) -> anyhow::Result<()> {
    let Ok(Some(checkpoint)) = autozeekwatch::follow::Checkpoint::load(state_dir) else {
        return Ok(());
    };
    let Some(live) = checkpoint.output.as_deref().map(Path::new) else {
        return Ok(());
    };
    let same = match (std::fs::canonicalize(live), std::fs::canonicalize(target)) {
        (Ok(a), Ok(b)) => a == b,
        _ => live == target,
    };
    if same {
        bail!(
            "--output {}: this is the live run's output (its checkpoint is in {}); replay would replace it: give --replay another --output, or - for standard output",
            terminal(&target.display().to_string()),
            terminal(&state_dir.display().to_string())
        );
    }
    Ok(())
}

/// The detections of a replay: counts by detector, then the first ones.
fn print_detections(emitter: &pipeline::Emitter) {
    let stage = emitter.stage();
    if !stage.is_active() {
        return;
    }
    cli::errln!("{}", emitter.detections_line());
    let first = emitter.first_detections();
    let total: u64 = emitter.written().values().sum();
    if !first.is_empty() {
        cli::errln!(
            "{} (detector, entity: score against threshold, first seen .. last seen, uids):",
            if total as usize > first.len() {
                format!("the first {}", first.len())
            } else {
                "all".into()
            }
        );
    }
    for d in first {
        let line = format!(
            "  {} {}: {}  {:.0}..{:.0} {}",
            d.detection,
            d.entity(),
            d.measured(),
            d.first_ts,
            d.last_ts,
            d.uids.join(",")
        );
        cli::errln!("{}", terminal(&line));
    }
}

fn print_top(top: &[ScoredRecord]) {
    if top.is_empty() {
        cli::errln!("no anomalies above the models' thresholds");
        return;
    }
    cli::errln!("top anomalies (score / threshold, module, ts, uid, 5-tuple, why):");
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for s in top {
        let why = s
            .top_features
            .as_deref()
            .unwrap_or_default()
            .iter()
            .take(3)
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!(
            "  {:.3} / {:.3}  {:<4} {} {} {}:{} -> {}:{} {}  [{why}]",
            s.score,
            s.threshold,
            s.module,
            // A forged 1e308 in its exponent form, not 309 digits.
            show(s.ts.map(|t| match t.abs() < 1e12 {
                true => format!("{t:.6}"),
                false => format!("{t:e}"),
            })),
            show(s.uid.as_ref().map(ToString::to_string)),
            show(s.orig_h.map(|a| a.to_string())),
            show(s.orig_p.map(|p| p.to_string())),
            show(s.resp_h.map(|a| a.to_string())),
            show(s.resp_p.map(|p| p.to_string())),
            show(s.proto.as_ref().map(ToString::to_string)),
        );
        cli::errln!("{}", terminal(&line));
    }
}

#[cfg(feature = "kafka")]
fn kafka(args: &Args, modules: Vec<LogKind>, controls: &Controls) -> anyhow::Result<()> {
    use autozeekwatch::kafka::{run_kafka, KafkaOptions, Repartition};
    let opts = KafkaOptions {
        brokers: args
            .brokers
            .clone()
            .context("--brokers is required with --source kafka")?,
        topics: args.topics.clone(),
        group: args.group.clone(),
        modules,
        model_dir: args.model_dir.clone(),
        output: args.output.clone(),
        format: args.format,
        stamp: args.stamp(),
        record: args.record_options(),
        allowlist: args.allowlist.clone(),
        alerts: args.alert_setup().map_err(anyhow::Error::msg)?,
        only_anomalies: args.only_anomalies,
        commit_every: Duration::from_millis(args.checkpoint_ms),
        stats_every: Duration::from_secs(args.stats_secs.max(1)),
        reload_every: Duration::from_secs(1),
        config: args.kafka_config.clone(),
        detect: args.detect_options(),
        repartition: args.repartition_topic.clone().map(|topic| Repartition {
            topic,
            partitions: args.repartition_partitions.map(i32::from),
            hold: Duration::from_secs(args.repartition_hold_secs),
        }),
        state_dir: args.kafka_state_dir.clone(),
        threads: args.threads.map_or_else(
            autozeekwatch::pipeline::parallel::default_threads,
            usize::from,
        ),
    };
    tracing::info!(
        "consuming {} from {} in group {} for {} (output {})",
        opts.topics.join(","),
        opts.brokers,
        opts.group,
        opts.modules
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        opts.output
    );
    let stats = run_kafka(&opts, controls)?;
    tracing::info!(
        "stopped after {} offset commits; offsets committed",
        stats.commits
    );
    Ok(())
}

#[cfg(not(feature = "kafka"))]
fn kafka(_: &Args, _: Vec<LogKind>, _: &Controls) -> anyhow::Result<()> {
    bail!("this azw-infer was built without Kafka support; build it with `cargo build --release --features kafka`")
}
