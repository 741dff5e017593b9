//! `azw-train`: learn what normal looks like from Zeek's historical logs,
//! one model per module.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod cli;

use anyhow::{bail, Context};
use autozeekwatch::escape;
use autozeekwatch::features::{table, DEFAULT_LOCAL_NETS};
use autozeekwatch::model::Model;
use autozeekwatch::train::{self, TrainError};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;
use cli::args::train::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

fn main() -> ExitCode {
    let args: Args = cli::config::parse("azw-train");
    let bars = MultiProgress::new();
    if !std::io::stderr().is_terminal() || args.log.quiet {
        bars.set_draw_target(ProgressDrawTarget::hidden());
    }
    cli::init_logging(&args.log, Some(bars.clone()));
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
    if let Some(name) = &args.list_features {
        let module: LogKind = name.parse()?;
        list_features(module)?;
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
    let modules = LogKind::parse_list(&args.modules)?;
    if modules.is_empty() {
        bail!("--modules names no module: choose from CONN, DNS, HTTP, SSH, SSL or ALL");
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

fn list_features(module: LogKind) -> std::io::Result<()> {
    cli::outln!("{module} features")?;
    cli::outln!("  {:<37} {:<24} transform", "name", "field")?;
    for def in table(module) {
        cli::outln!(
            "  {:<37} {:<24} {}",
            def.name,
            def.field,
            def.transform.describe()
        )?;
    }
    cli::outln!(
        "Categories learn their values from the training data, plus one `<other>` column each."
    )?;
    cli::outln!("Default local networks: {}", DEFAULT_LOCAL_NETS.join(" "))?;
    Ok(())
}
