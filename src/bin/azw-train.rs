//! `azw-train`: learn what normal looks like from Zeek's historical logs,
//! one model per module.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod cli;

use anyhow::{bail, Context};
use autozeekwatch::escape;
use autozeekwatch::features::DEFAULT_LOCAL_NETS;
use autozeekwatch::model::Model;
use autozeekwatch::tables::{Table, Tables};
use autozeekwatch::train::{self, TrainError};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;
use chrono::NaiveDate;
use clap::Parser;
use cli::ModelArgs;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Learn what normal traffic looks like from Zeek's historical logs and
/// write one model per module: per Zeek log type with a feature table
/// (conn, dns, http, ssh, ssl, files, weird, x509, notice ... built in;
/// your own with --tables).
///
/// Reads Zeek's log directory: dated folders
/// `YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log.gz` (never `current/`), or a flat
/// folder of logs, or one log file; TSV or JSON, plain or gzip. Every record
/// is used (streamed several times, never held in memory). Models go to
/// `<model-dir>/<module>.model.json`, replaced atomically, so a nightly cron
/// job can retrain while `azw-infer` runs.
///
/// Examples:
///   azw-train --log-dir /opt/zeek/logs --modules CONN,DNS
///   azw-train --log-dir /opt/zeek/logs --modules ALL --start-date 2024-04-20 --dry-run
///   azw-train --inspect models/conn.model.json
///   azw-train --list-features DNS
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
struct Args {
    #[command(flatten)]
    read: cli::ReadArgs,

    /// Zeek's log directory (dated folders), a folder of logs, or one file.
    #[arg(long, env = "AZW_LOG_DIR", required_unless_present_any = ["inspect", "list_features"])]
    log_dir: Option<PathBuf>,

    /// Modules to train: log types with a table (CONN, DNS, HTTP, FILES,
    /// X509, a --tables one ...; `--list-features` lists them) or ALL,
    /// comma-separated or repeated, any case. With ALL, modules without
    /// logs, or with too few records to learn from, are skipped.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "ALL", env = "AZW_MODULES")]
    modules: Vec<String>,

    /// Where to write the models.
    #[arg(long, default_value = "models", env = "AZW_MODEL_DIR")]
    model_dir: PathBuf,

    /// First day of history to use (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_date)]
    start_date: Option<NaiveDate>,

    /// Last day of history to use (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_date)]
    end_date: Option<NaiveDate>,

    #[command(flatten)]
    model: ModelArgs,

    /// List the files and record counts per module that would be used, then
    /// stop.
    #[arg(long)]
    dry_run: bool,

    /// Print the metadata of model files and stop.
    #[arg(long, num_args = 1.., value_name = "MODEL")]
    inspect: Vec<PathBuf>,

    /// Print a module's feature table and where it came from (built in,
    /// or a --tables file), and stop; without a module, list the tables.
    #[arg(long, value_name = "MODULE", num_args = 0..=1, default_missing_value = "")]
    list_features: Option<String>,

    /// Only warnings and errors.
    #[arg(short, long)]
    quiet: bool,

    /// Debug logging.
    #[arg(short, long)]
    verbose: bool,
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date: write it as YYYY-MM-DD, e.g. 2024-04-20"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bars = MultiProgress::new();
    if !std::io::stderr().is_terminal() || args.quiet {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    cli::init_logging(args.quiet, args.verbose, Some(bars.clone()));
    match run(args, &bars) {
        Ok(code) => code,
        Err(e) => cli::report(&e),
    }
}

fn run(args: Args, bars: &MultiProgress) -> anyhow::Result<ExitCode> {
    args.read.apply();
    if !args.inspect.is_empty() {
        return inspect(&args.inspect);
    }
    let tables = args.model.tables()?;
    if let Some(name) = &args.list_features {
        if name.trim().is_empty() {
            list_tables(&tables)?;
        } else {
            let [module] = tables.parse_modules(&[name])?[..] else {
                bail!("--list-features takes one module");
            };
            let table = tables.get(module).context("no table")?;
            list_features(table)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let log_dir = args.log_dir.clone().context("--log-dir is required")?;
    if cli::is_zeek_current(&log_dir) {
        bail!(
            "{}: this is Zeek's live folder, whose files are still being written; azw-train learns from the rotated history: give its parent, Zeek's log directory",
            log_dir.display()
        );
    }
    let all = args.modules.iter().any(|m| m.eq_ignore_ascii_case("all"));
    let modules: Vec<LogKind> = tables.parse_modules(&args.modules)?;
    if modules.is_empty() {
        bail!("--modules names no module: name log types with a table (azw-train --list-features lists them) or ALL");
    }
    let range = DateRange {
        start: args.start_date,
        end: args.end_date,
    };
    if let (Some(s), Some(e)) = (range.start, range.end) {
        if s > e {
            bail!("--start-date {s} is after --end-date {e}");
        }
    }
    let mut opts = args.model.train_options(log_dir, range)?;

    // Which files each module will read.
    let mut jobs = Vec::new();
    for module in modules {
        match train::find_files(module, &opts) {
            Ok(files) => jobs.push((module, files)),
            Err(TrainError::NoFiles { .. }) if all => {
                tracing::info!("{module}: no logs, skipped");
            }
            Err(e) => return Err(e.into()),
        }
    }
    if jobs.is_empty() {
        bail!(
            "no logs of any module under {} (expected dated folders YYYY-MM-DD/conn.*.log.gz, or conn.log, dns.log ... in the folder)",
            opts.log_dir.display()
        );
    }

    if !args.dry_run {
        train::learn_site(&mut opts)?;
    }

    if args.dry_run {
        let mut failed = 0;
        for (module, files) in &jobs {
            let totals = train::count(*module, files);
            cli::outln!(
                "{module}: {} files, {} records, {} malformed lines",
                files.len(),
                totals.records,
                totals.malformed
            )?;
            for (path, stats) in &totals.files {
                cli::outln!(
                    "  {}\t{} records\t{} malformed",
                    path.display(),
                    stats.records,
                    stats.malformed
                )?;
            }
            for (_, msg) in &totals.failed {
                failed += 1;
                cli::outln!("  FAILED {}", autozeekwatch::escape::terminal(msg))?;
            }
        }
        return Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(cli::EXIT_INPUT_FAILED)
        });
    }

    let style = ProgressStyle::with_template(
        "{msg:<24} [{bar:30}] {pos}/{len} records ({per_sec}, {eta} left)",
    )
    .expect("valid template")
    .progress_chars("=> ");
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(module, files)| {
                let bar = cli::Bar(bars.add(ProgressBar::new(0).with_style(style.clone())));
                bar.0.enable_steady_tick(Duration::from_millis(200));
                let opts = &opts;
                let model_dir = &args.model_dir;
                scope.spawn(move || {
                    tracing::info!("{module}: training on {} files", files.len());
                    let result = train::train_module(*module, files, opts, &bar)
                        .and_then(|model| train::save(&model, model_dir).map(|path| (model, path)));
                    bar.0.finish_and_clear();
                    (*module, result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a training thread panicked"))
            .collect()
    });

    cli::outln!(
        "{:<6} {:>6} {:>10} {:>10} {:>8} {:>11} {:>9} {:>8} {:>8}  model",
        "module",
        "files",
        "records",
        "trained",
        "skipped",
        "threshold",
        "held-out",
        "exp.FPR",
        "seconds"
    )?;
    let mut failed = 0;
    for (module, result) in results {
        match result {
            Ok((m, path)) => {
                let t = &m.training;
                cli::outln!(
                    "{:<6} {:>6} {:>10} {:>10} {:>8} {:>11.6} {:>9} {:>8} {:>8.1}  {}",
                    module.to_string(),
                    t.files.len(),
                    t.records,
                    t.trained_records,
                    t.skipped_lines,
                    m.threshold.value,
                    m.threshold.scores,
                    m.threshold
                        .expected_fpr
                        .map_or("?".to_owned(), |e| format!("{:.3}%", e * 100.0)),
                    t.seconds,
                    path.display()
                )?;
            }
            // Under ALL, a log type with a table but little history (a
            // handful of kerberos or smtp records) is passed over.
            Err(e @ TrainError::TooFewRecords { .. }) if all => {
                tracing::warn!("{}; skipped", escape::terminal(&e.to_string()));
            }
            Err(e) => {
                failed += 1;
                eprintln!("error: {}", escape::terminal(&e.to_string()));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn inspect(paths: &[PathBuf]) -> anyhow::Result<ExitCode> {
    for (i, path) in paths.iter().enumerate() {
        let (model, _) = Model::load(path)?;
        if i > 0 {
            cli::outln!()?;
        }
        // describe() escapes the model's texts; the path is shown the same way.
        cli::outln!("{}", escape::terminal(&path.display().to_string()))?;
        cli::out!("{}", model.describe())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn list_tables(tables: &Tables) -> std::io::Result<()> {
    cli::outln!("{:<16} {:<40} table", "module", "one record is")?;
    for kind in tables.kinds() {
        let Some(t) = tables.get(kind) else { continue };
        cli::outln!(
            "{:<16} {:<40} {}",
            kind.to_string(),
            escape::terminal(&t.description),
            escape::terminal(&t.origin.to_string())
        )?;
    }
    Ok(())
}

fn list_features(table: &Table) -> std::io::Result<()> {
    cli::outln!(
        "{} features ({} log: {})",
        table.log,
        table.log.log_path(),
        escape::terminal(&table.description)
    )?;
    cli::outln!("table: {}", escape::terminal(&table.origin.to_string()))?;
    cli::outln!("  {:<37} {:<24} transform", "name", "field")?;
    for def in &table.features {
        cli::outln!(
            "  {:<37} {:<24} {}",
            escape::terminal(&def.name),
            escape::terminal(&def.field),
            def.transform.describe()
        )?;
    }
    cli::outln!(
        "Categories learn their values from the training data, plus one `<other>` column each."
    )?;
    cli::outln!("Default local networks: {}", DEFAULT_LOCAL_NETS.join(" "))?;
    Ok(())
}
