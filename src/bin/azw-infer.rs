//! `azw-infer`: score Zeek logs with the trained models, live or replayed.

mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use autozeekwatch::detect::DetectOptions;
use autozeekwatch::escape::terminal;
use autozeekwatch::model;
use autozeekwatch::pipeline::{self, run_live, Controls, Lane, LaneOptions, LiveOptions};
use autozeekwatch::score::ScoredRecord;
use autozeekwatch::sink::{self, OutputSpec, RecordFormat, Sink, SinkOptions};
use autozeekwatch::LogKind;
use clap::Parser;

/// Score Zeek logs with the models `azw-train` wrote: one line per log
/// record (JSON; or Zeek TSV or CSV with --format) with its anomaly score, the threshold verdict, Zeek's `uid` and
/// `ts`, the connection 5-tuple and, for anomalies, the features that
/// contributed most.
///
/// Live (default): follows `<log-dir>/current/<module>.log` as Zeek writes
/// it, through hourly rotations (the old file is finished to its last line
/// first) and restarts (a checkpoint in --state-dir records what was
/// written; after `kill -9` the output is cut back to it and scoring
/// resumes: no record lost, none written twice, even if Zeek rotated while
/// azw-infer was down). SIGINT/SIGTERM: finish, flush, checkpoint, exit 0.
/// SIGHUP: reopen the output (for logrotate). A replaced model file (the
/// nightly retraining) is picked up without a restart; a bad one is refused
/// and the running model stays.
///
/// Replay (--replay): scores historical files or folders once, in order.
///
/// Kafka (--source kafka, in builds with the `kafka` feature): consumes the
/// JSON records Zeek's loggers publish (one topic per log type, or one topic
/// with records wrapped as {"conn": {...}}) in a consumer group: start more
/// processes with the same --group to share the partitions. Offsets are
/// committed after the scored records are durable, and as partitions are
/// handed to another member (at-least-once: after a crash some records may
/// be scored twice; `uid` tells them).
///
/// Examples:
///   azw-infer --log-dir /opt/zeek/logs --modules CONN,DNS --output /var/log/azw/scores.json
///   azw-infer --replay /opt/zeek/logs/2024-04-19 --modules CONN --only-anomalies
///   azw-infer --source kafka --brokers kafka1:9092 --topics zeek-conn,zeek-dns --group azw \
///             --output kafka://kafka1:9092/azw-scores
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    read: cli::ReadArgs,

    /// Zeek's log directory; its `current/` folder is followed.
    #[arg(long, env = "AZW_LOG_DIR", required_unless_present_any = ["replay", "topics"])]
    log_dir: Option<PathBuf>,

    /// Score these historical files or folders once, in order, and exit.
    #[arg(long, num_args = 1.., conflicts_with = "log_dir")]
    replay: Vec<PathBuf>,

    /// Where records come from: `file` (Zeek's log directory, or --replay)
    /// or `kafka` (--brokers, --topics, --group).
    #[arg(long, value_enum, default_value_t = SourceKind::File, env = "AZW_SOURCE")]
    source: SourceKind,

    /// Kafka: the brokers to bootstrap from, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "AZW_KAFKA_BROKERS", required_if_eq("source", "kafka"))]
    brokers: Option<String>,

    /// Kafka: the topics to consume, comma-separated. The module of a
    /// record comes from its wrapper key ({"conn": {...}}), else a log type
    /// named in the topic (zeek-conn, zeek_dns), else its `_path`.
    #[arg(long, value_delimiter = ',', num_args = 1.., env = "AZW_KAFKA_TOPICS", required_if_eq("source", "kafka"))]
    topics: Vec<String>,

    /// Kafka: the consumer group; processes in one group share the
    /// partitions.
    #[arg(long, default_value = "azw-infer", env = "AZW_KAFKA_GROUP")]
    group: String,

    /// Kafka: an extra librdkafka setting for the consumer and a Kafka
    /// output, KEY=VALUE, repeatable (security.protocol=ssl,
    /// session.timeout.ms=10000, auto.offset.reset=latest, ...).
    #[arg(long = "kafka-config", value_parser = key_value)]
    kafka_config: Vec<(String, String)>,

    /// Modules to score: log types with a model (CONN, DNS, FILES, X509, a
    /// site's own ...) or ALL (every model in --model-dir), comma-separated
    /// or repeated, any case.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "ALL", env = "AZW_MODULES")]
    modules: Vec<String>,

    /// Where the models are (`<module>.model.json`).
    #[arg(long, default_value = "models", env = "AZW_MODEL_DIR")]
    model_dir: PathBuf,

    /// Where the scored records go: a file, `-` for standard output, or
    /// kafka://HOST:PORT/TOPIC (keyed by `uid`, so one connection's records
    /// stay in order). Exactly-once across restarts of the live file mode
    /// needs a file; the others are at-least-once.
    #[arg(long, default_value = "-", env = "AZW_OUTPUT")]
    output: OutputSpec,

    /// How each scored record is written: json (one object per line),
    /// tsv (a Zeek log, `#path azw_scores`, which Zeek tools read) or csv
    /// (with a header row). Kafka outputs are JSON.
    #[arg(long, default_value = "json", value_parser = parse_format, env = "AZW_FORMAT")]
    format: RecordFormat,

    /// Where live mode keeps its checkpoint (`checkpoint.json`).
    #[arg(long, default_value = "azw-state", env = "AZW_STATE_DIR")]
    state_dir: PathBuf,

    /// Write only the records flagged as anomalies (detections are
    /// always written).
    #[arg(long)]
    only_anomalies: bool,

    /// The detectors that watch behaviour over time and write detections
    /// beside the scored records: all (default), none, or a list of
    /// beacon, long_connection, host_sweep, port_scan (scan: both),
    /// dns_tunnel, nxdomain_burst. Their settings and the entities normal
    /// at this site come from the models (`azw-train --inspect` shows
    /// them).
    #[arg(long, default_value = "all", value_parser = DetectOptions::parse, env = "AZW_DETECTORS")]
    detectors: DetectOptions,

    /// On a live start without a checkpoint, the detectors first read this
    /// many hours of the rotated history (by the rotation times in the
    /// file names), so a beacon that began yesterday is known at once; 0
    /// starts them empty.
    #[arg(long, default_value_t = 24, env = "AZW_WARM_HOURS")]
    warm_hours: u32,

    /// Report scans by sources outside the site's networks too (by default
    /// only local sources: scans from the internet are an exposed
    /// sensor's weather).
    #[arg(long, env = "AZW_SCAN_EXTERNAL")]
    scan_external: bool,

    /// How often an idle module checks its file, in milliseconds (file
    /// events wake it sooner).
    #[arg(long, default_value_t = 250)]
    poll_ms: u64,

    /// How often the output is synced and the checkpoint (or the Kafka
    /// offsets) written, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    checkpoint_ms: u64,

    /// How often each module's counters are logged, in seconds.
    #[arg(long, default_value_t = 60)]
    stats_secs: u64,

    /// Only warnings and errors.
    #[arg(short, long)]
    quiet: bool,

    /// Debug logging.
    #[arg(short, long)]
    verbose: bool,
}

impl Args {
    fn detect_options(&self) -> DetectOptions {
        DetectOptions {
            scan_external: self.scan_external,
            ..self.detectors.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SourceKind {
    File,
    Kafka,
}

fn parse_format(s: &str) -> Result<RecordFormat, String> {
    s.parse()
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

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
    let args = Args::parse();
    cli::init_logging(args.quiet, args.verbose, None);
    if let Err(e) = registered {
        return cli::report(&anyhow::Error::new(e).context("cannot install signal handlers"));
    }
    match run(args, &controls) {
        Ok(code) => code,
        Err(e) => cli::report(&e),
    }
}

/// The modules to run: those asked for, or under ALL those with a model
/// (a model carries its table, so any log type with a model can be scored).
fn modules(args: &Args) -> anyhow::Result<Vec<LogKind>> {
    let all = args.modules.iter().any(|m| m.eq_ignore_ascii_case("all"));
    let with_model = model::modules_in(&args.model_dir);
    let mut modules = LogKind::parse_list(&args.modules, &with_model)?;
    if all {
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

fn run(args: Args, controls: &Controls) -> anyhow::Result<ExitCode> {
    args.read.apply();
    let modules = modules(&args)?;
    if args.source == SourceKind::Kafka {
        kafka(&args, modules, controls)?;
        return Ok(ExitCode::SUCCESS);
    }
    if !args.topics.is_empty() || args.brokers.is_some() {
        bail!("--topics and --brokers are for --source kafka");
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
    let opts = LiveOptions {
        log_dir,
        modules,
        model_dir: args.model_dir.clone(),
        output: args.output.clone(),
        format: args.format,
        kafka_config: args.kafka_config.clone(),
        state_dir: args.state_dir.clone(),
        only_anomalies: args.only_anomalies,
        poll: Duration::from_millis(args.poll_ms.max(10)),
        checkpoint_every: Duration::from_millis(args.checkpoint_ms),
        stats_every: Duration::from_secs(args.stats_secs.max(1)),
        reload_every: Duration::from_secs(1),
        detect: args.detect_options(),
        warm_hours: args.warm_hours,
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
    run_live(&opts, controls)?;
    tracing::info!("stopped; checkpoint written");
    Ok(ExitCode::SUCCESS)
}

/// Scores files once. A file output is written to a temporary file beside
/// it and renamed into place at the end, so it is never seen half-written;
/// an existing file is replaced only if it is an output of ours, never an
/// input, a link or anything that is not a regular file.
fn replay(args: &Args, modules: &[LogKind], controls: &Controls) -> anyhow::Result<ExitCode> {
    let lane_opts = LaneOptions {
        only_anomalies: args.only_anomalies,
        reload_every: None,
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
        ..SinkOptions::default()
    };
    let (mut out, tmp): (Box<dyn Sink>, Option<tempfile::NamedTempFile>) = match &args.output {
        OutputSpec::Stdout => (sink::open(&args.output, &opts)?, None),
        OutputSpec::Kafka { .. } => {
            bail!("--replay writes to a file or standard output; Kafka outputs are for --source kafka and live mode")
        }
        OutputSpec::File(target) => {
            check_replay_target(target, &args.replay, args.format)?;
            let dir = target
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            let spec = OutputSpec::File(tmp.path().to_owned());
            (sink::open(&spec, &opts)?, Some(tmp))
        }
    };
    let mut emitter = pipeline::Emitter::for_lanes(lanes.iter_mut(), &args.detect_options());
    let report = pipeline::replay(
        &args.replay,
        &mut lanes,
        &mut emitter,
        out.as_mut(),
        &controls.stop,
    )?;
    out.sync()?;
    drop(out);
    if report.stopped {
        bail!("stopped before the end; {} left as it was", args.output);
    }
    if let (Some(tmp), Some(target)) = (tmp, args.output.file()) {
        tmp.persist(target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        eprintln!(
            "scores written to {}",
            terminal(&target.display().to_string())
        );
    }
    print_top(report.top.records());
    print_detections(&emitter);
    if report.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} of {} input files could not be read (named in the warnings above)",
        report.failed.len(),
        report.files
    );
    Ok(ExitCode::from(cli::EXIT_INPUT_FAILED))
}

/// Refuses a replay output that would destroy something not ours: one of
/// the inputs, a symbolic link, a device, or a file that is not an output
/// of this format.
fn check_replay_target(
    target: &Path,
    inputs: &[PathBuf],
    format: RecordFormat,
) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(target) else {
        return Ok(());
    };
    let shown = terminal(&target.display().to_string()).into_owned();
    if meta.file_type().is_symlink() || !meta.is_file() {
        bail!("--output {shown}: not a regular file (a link, device or folder); give a plain file path");
    }
    let canonical = std::fs::canonicalize(target)?;
    for input in inputs {
        let input = std::fs::canonicalize(input).unwrap_or_else(|_| input.clone());
        if canonical == input {
            bail!("--output {shown} is one of the inputs of --replay; write the scores elsewhere");
        }
    }
    if !sink::is_replaceable_output(target, format)? {
        bail!(
            "--output {shown}: exists and is not an autozeekwatch {} output; it is left as it is (replay replaces only its own outputs): choose another --output, or move it away",
            format.name()
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
    eprintln!("{}", stage.found_line());
    let first = emitter.first_detections();
    let total: u64 = stage.found().values().sum();
    if !first.is_empty() {
        eprintln!(
            "{} (score / threshold, detector, entity, first seen .. last seen, uids):",
            if total as usize > first.len() {
                format!("the first {}", first.len())
            } else {
                "all".into()
            }
        );
    }
    for d in first {
        let line = format!(
            "  {:.3} / {}  {} {} {:.0}..{:.0} {}",
            d.score,
            d.threshold,
            d.detection,
            d.entity(),
            d.first_ts,
            d.last_ts,
            d.uids.join(",")
        );
        eprintln!("{}", terminal(&line));
    }
}

fn print_top(top: &[ScoredRecord]) {
    if top.is_empty() {
        eprintln!("no anomalies above the models' thresholds");
        return;
    }
    eprintln!("top anomalies (score / threshold, module, ts, uid, 5-tuple, why):");
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for s in top {
        let why = s
            .top_features
            .as_deref()
            .unwrap_or_default()
            .iter()
            .take(3)
            .map(|c| format!("{} {:.0}%", c.feature, c.share * 100.0))
            .collect::<Vec<_>>()
            .join(", ");
        let line = format!(
            "  {:.3} / {:.3}  {:<4} {} {} {}:{} -> {}:{} {}  [{why}]",
            s.score,
            s.threshold,
            s.module,
            show(s.ts.map(|t| format!("{t:.6}"))),
            show(s.uid.clone()),
            show(s.orig_h.map(|a| a.to_string())),
            show(s.orig_p.map(|p| p.to_string())),
            show(s.resp_h.map(|a| a.to_string())),
            show(s.resp_p.map(|p| p.to_string())),
            show(s.proto.clone()),
        );
        eprintln!("{}", terminal(&line));
    }
}

#[cfg(feature = "kafka")]
fn kafka(args: &Args, modules: Vec<LogKind>, controls: &Controls) -> anyhow::Result<()> {
    use autozeekwatch::kafka::{run_kafka, KafkaOptions};
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
        only_anomalies: args.only_anomalies,
        commit_every: Duration::from_millis(args.checkpoint_ms),
        stats_every: Duration::from_secs(args.stats_secs.max(1)),
        reload_every: Duration::from_secs(1),
        config: args.kafka_config.clone(),
        detect: args.detect_options(),
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
