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
use autozeekwatch::model::{self, Model};
use autozeekwatch::tables::{Table, Tables};
use autozeekwatch::train::{self, TrainError};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;
use cli::args::train::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn main() -> ExitCode {
    let args: Args = cli::config::parse("azw-train");
    let bars = MultiProgress::new();
    let terminal = std::io::stderr().is_terminal();
    if !terminal || args.log.quiet {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    // Without a terminal the bars are hidden, and log lines stand in.
    let progress_lines = !terminal && !args.log.quiet;
    cli::init_logging(&args.log, Some(bars.clone()));
    match run(args, &bars, progress_lines) {
        Ok(code) => code,
        Err(e) => cli::report(&e),
    }
}

fn run(args: Args, bars: &MultiProgress, progress_lines: bool) -> anyhow::Result<ExitCode> {
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
    let mut modules: Vec<LogKind> = tables.parse_modules(&args.modules)?;
    if modules.is_empty() {
        bail!("--modules names no module: name log types with a table (azw-train --list-features lists them) or ALL");
    }
    // With --only-missing, whether some module asked for has a model: then
    // the missing ones that have no logs, or too few records, are not an
    // error (under ALL). The unit's start step runs this on every start;
    // a site always has quiet log types, and failing on them kept the
    // service from starting again after its first start.
    let mut some_model = false;
    if args.only_missing {
        // A model that does not load counts as missing: azw-infer refuses
        // to start on it, and the unit's start step ran this, found the
        // file there, and left the service failing until the night's
        // training.
        let loads = |m: &LogKind| {
            let path = args.model_dir.join(model::file_name(*m));
            if !path.exists() {
                return false;
            }
            match model::Model::load(&path) {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(
                        "{m}: {}; trained again (--only-missing)",
                        escape::terminal(&e.to_string())
                    );
                    false
                }
            }
        };
        let (have, missing): (Vec<LogKind>, Vec<LogKind>) = modules.iter().partition(|m| loads(m));
        for m in &have {
            tracing::info!(
                "{m}: has a model in {}, skipped (--only-missing)",
                args.model_dir.display()
            );
        }
        if missing.is_empty() {
            cli::outln!(
                "every module asked for has a model in {}; nothing to train",
                args.model_dir.display()
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        some_model = !have.is_empty();
        modules = missing;
    }
    let quiet_ones_are_fine = all && some_model;
    let today = chrono::Local::now().date_naive();
    let (start_date, end_date) = match args.last_days {
        Some(0) => bail!("--last-days must be at least 1"),
        // Up to today: a folder dated in the future (a sensor's clock that
        // ran ahead) is never expired by Zeek, and was read every night.
        Some(n) => (
            Some(today - chrono::Days::new(u64::from(n) - 1)),
            Some(args.end_date.unwrap_or(today)),
        ),
        None => (args.start_date, args.end_date),
    };
    let range = DateRange {
        start: start_date,
        end: end_date,
    };
    if let (Some(s), Some(e)) = (range.start, range.end) {
        if s > e {
            bail!("--start-date {s} is after --end-date {e}");
        }
    }
    let mut opts = args.model.train_options(log_dir, range)?;

    // Which files each module will read. A module named without logs is an
    // error, but the others still train (it stopped them all, so one quiet
    // log type kept every model from being renewed).
    let mut jobs = Vec::new();
    let mut without_logs = Vec::new();
    for &module in &modules {
        match train::find_files(module, &opts) {
            Ok(files) => jobs.push((module, files)),
            Err(TrainError::NoFiles { .. }) if all => {
                tracing::info!("{module}: no logs, skipped");
            }
            Err(e @ TrainError::NoFiles { .. }) => {
                without_logs.push(format!("{e}{}", history_found(&opts, &[module])));
            }
            Err(e) => return Err(e.into()),
        }
    }
    if jobs.is_empty() && quiet_ones_are_fine {
        cli::outln!(
            "the modules without a model in {} have no logs under {}; nothing to train (the others keep theirs)",
            args.model_dir.display(),
            opts.log_dir.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() && !without_logs.is_empty() {
        bail!("{}", without_logs.join("\n"));
    }
    // Said here for the dry run and the training alike; either fails.
    for e in &without_logs {
        cli::error_line(e);
    }
    if jobs.is_empty() {
        bail!(
            "no logs of any module under {}{} (expected dated folders YYYY-MM-DD/conn.*.log.gz, or conn.log, dns.log ... in the folder)",
            opts.log_dir.display(),
            history_found(&opts, &modules)
        );
    }

    if !args.dry_run {
        // Before hours of training, not after: a model folder that cannot
        // be written (read-only, another owner's) fails now. (A full disk
        // is found only when the model is written: the old model stays.)
        check_writable(&args.model_dir)?;
        // Nor a model path that holds something not ours (a folder,
        // another program's file): it would be found after training.
        for (module, _) in &jobs {
            model::check_replaceable(&args.model_dir.join(model::file_name(*module)))?;
        }
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
        return Ok(if !without_logs.is_empty() {
            ExitCode::FAILURE
        } else if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(cli::EXIT_INPUT_FAILED)
        });
    }

    // The first pass counts the records as it reads them: no total, so
    // no bar or time left (it showed a full bar and `21504/0`).
    let counting = ProgressStyle::with_template("{msg:<24} {pos} records ({per_sec})")
        .expect("valid template");
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(module, files)| {
                let bar = cli::Bar::new(
                    bars.add(ProgressBar::no_length().with_style(counting.clone())),
                    progress_lines,
                );
                bar.bar.enable_steady_tick(Duration::from_millis(200));
                let opts = &opts;
                let model_dir = &args.model_dir;
                let min_records = args.min_records;
                scope.spawn(move || {
                    tracing::info!("{module}: training on {} files", files.len());
                    let result = train::train_module(*module, files, opts, &bar)
                        .map_err(anyhow::Error::from)
                        .and_then(|model| {
                            let n = model.training.trained_records;
                            if n < min_records {
                                return Err(anyhow::Error::new(TooFewRecords(format!(
                                    "{module}: trained on only {n} records, fewer than --min-records {min_records}: a model of so few records flags much of tomorrow's normal traffic, so it is not written (add more days of history, leave {module} out of --modules, or lower --min-records)"
                                ))));
                            }
                            Ok(train::save(&model, model_dir).map(|path| (model, path))?)
                        });
                    bar.bar.finish_and_clear();
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
    let mut failed = without_logs.len();
    let mut trained = 0;
    let mut sampled = Vec::new();
    let mut in_sample = Vec::new();
    let mut unread = Vec::new();
    for (module, result) in results {
        match result {
            Ok((m, path)) => {
                let t = &m.training;
                if let Some(n) = opts.max_records {
                    sampled.push(match &t.sample {
                        Some(x) => format!(
                            "{module}: sampled {} of {} records (--max-records {n}, seed {}): {} trained on, {} held out",
                            x.sampled, t.records, x.seed, t.trained_records, t.held_out_records
                        ),
                        None => format!(
                            "{module}: sampled {0} of {0} records (all of them: no more than --max-records {n})",
                            t.records
                        ),
                    });
                }
                cli::outln!(
                    "{:<6} {:>6} {:>10} {:>10} {:>8} {:>11.6} {:>9} {:>8} {:>8.1}  {}",
                    module.to_string(),
                    t.files.len(),
                    t.records,
                    t.trained_records,
                    t.skipped_lines,
                    m.threshold.value,
                    held_out(&m.threshold),
                    m.threshold
                        .expected_fpr
                        .map_or("?".to_owned(), |e| format!("{:.3}%", e * 100.0)),
                    t.seconds,
                    path.display()
                )?;
                if m.threshold.in_sample {
                    in_sample.push(module.to_string());
                }
                if !t.failed_files.is_empty() {
                    unread.push(format!(
                        "{module}: {} of its files could not be read, or not to their end (named in the warnings above): the model rests on what was read",
                        t.failed_files.len()
                    ));
                }
                trained += 1;
            }
            // Under ALL a module with too little traffic (fewer than
            // --min-records, or too few to learn from at all: a handful of
            // kerberos or smtp records) is left out, as one without logs
            // is, and said so.
            Err(e)
                if all
                    && (e.downcast_ref::<TooFewRecords>().is_some()
                        || matches!(
                            e.downcast_ref::<TrainError>(),
                            Some(TrainError::TooFewRecords { failed: 0, .. })
                        )) =>
            {
                tracing::warn!("{}; skipped", escape::terminal(&e.to_string()));
            }
            Err(e) => {
                failed += 1;
                cli::error_line(&cli::causes(&e));
            }
        }
    }
    if !in_sample.is_empty() {
        cli::outln!(
            "*: {}: fewer than {} records were held out, so the threshold rests on the training records' own scores, which run low: expect more anomalies than exp.FPR says (train on more history)",
            in_sample.join(", "),
            autozeekwatch::train::MIN_HELD_OUT
        )?;
    }
    for line in sampled.iter().chain(&unread) {
        cli::outln!("{line}")?;
    }
    if failed == 0 && trained == 0 && quiet_ones_are_fine {
        cli::outln!(
            "the modules without a model in {} have too few records for one yet; nothing trained (the others keep theirs)",
            args.model_dir.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    if failed == 0 && trained == 0 {
        cli::error_line(&format!(
            "no module had enough records for a model (--min-records {})",
            args.min_records
        ));
        return Ok(ExitCode::FAILURE);
    }
    // A model resting on part of the history is written (the old one
    // was older still), but the run says so in its exit status as a
    // replay does (2): a nightly job's monitoring sees a day of damaged
    // logs, which a warning in a mailed log hid behind exit 0.
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else if unread.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(cli::EXIT_INPUT_FAILED)
    })
}

/// The summary's held-out cell: the scores the threshold rests on, marked
/// `*` (said under the table) when they are the training records' own.
fn held_out(t: &autozeekwatch::model::Threshold) -> String {
    match t.in_sample {
        true => format!("{}*", t.scores),
        false => t.scores.to_string(),
    }
}

/// A module whose model would rest on fewer than --min-records records.
#[derive(Debug)]
struct TooFewRecords(String);

impl std::fmt::Display for TooFewRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TooFewRecords {}

/// The days of history there are, for a message about a date range that
/// holds none: " (the history under DIR spans 2024-04-19 to 2024-04-21)".
fn history_found(opts: &train::TrainOptions, modules: &[LogKind]) -> String {
    if opts.range.is_open() {
        return String::new();
    }
    let mut open = opts.clone();
    open.range = DateRange::default();
    let days: Vec<chrono::NaiveDate> = modules
        .iter()
        .filter_map(|m| train::find_files(*m, &open).ok())
        .flatten()
        .filter_map(|f| f.date)
        .collect();
    match (days.iter().min(), days.iter().max()) {
        (Some(first), Some(last)) => format!(
            "; the history there spans {first} to {last}, outside {} to {}",
            opts.range.start.map_or("the first day".into(), |d| d.to_string()),
            opts.range.end.map_or("the last day".into(), |d| d.to_string())
        ),
        _ if modules.iter().any(|m| train::find_files(*m, &open).is_ok()) => {
            "; the logs there are not in dated folders, so no date range applies to them (leave out --start-date/--end-date/--last-days)".to_owned()
        }
        _ => String::new(),
    }
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
            def.describe()
        )?;
    }
    cli::outln!(
        "Categories learn their values from the training data, plus one `<other>` column each."
    )?;
    cli::outln!("Default local networks: {}", DEFAULT_LOCAL_NETS.join(" "))?;
    Ok(())
}

/// Whether models can be written in `dir` (made if missing): a file is
/// created there and removed.
fn check_writable(dir: &std::path::Path) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| {
        anyhow::anyhow!(
            "cannot write models in {}: {e}; nothing was trained (give a folder this user can write, --model-dir)",
            dir.display()
        )
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    tempfile::Builder::new()
        .prefix(".azw-train-check")
        .tempfile_in(dir)
        .map(drop)
        .map_err(fail)
}
