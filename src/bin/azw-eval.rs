//! `azw-eval`: measure detection on labeled Zeek logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
mod cli;

use autozeekwatch::eval::labels::{self, LabeledLog};
use autozeekwatch::eval::{self, metrics, plot, ModelSummary, Report, Truth, UidScores};
use autozeekwatch::train::TrainOptions;
use autozeekwatch::zeek::layout::{self, DateRange};
use autozeekwatch::LogKind;
use cli::args::eval::Args;

fn main() -> ExitCode {
    let args: Args = cli::config::parse("azw-eval");
    cli::init_logging(&args.log, None);
    match run(args) {
        Ok(code) => code,
        Err(e) => cli::report(&e),
    }
}

/// The module a file holds: its `#path`, else its name.
/// Only log types in `asked` (every table under ALL) are recognised; a file
/// that says nothing goes to `asked_one`'s only module, if there is one.
fn module_of(
    path: &Path,
    log_path: Option<&str>,
    asked: &[LogKind],
    asked_one: &[LogKind],
) -> anyhow::Result<LogKind> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let from_name = layout::parse_log_name(name).map(|n| n.log_path);
    for candidate in [log_path, from_name].into_iter().flatten() {
        if let Some(m) = asked.iter().find(|m| m.is_path(candidate)) {
            return Ok(*m);
        }
    }
    if let [only] = asked_one {
        return Ok(*only);
    }
    bail!(
        "{}: cannot tell which log this is (no `#path` header, and the name is not conn.log..., dns.log...); name one module with --modules",
        path.display()
    )
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.read.apply();
    let all = args.modules.iter().any(|m| m.eq_ignore_ascii_case("all"));
    let asked = args.train_args.tables()?.parse_modules(&args.modules)?;
    let asked_one: Vec<LogKind> = if all { Vec::new() } else { asked.clone() };
    if !(args.train_share > 0.0 && args.train_share < 1.0) {
        bail!("--train-share must be between 0 and 1 (0.5: the first half is history)");
    }
    if args.logs.is_empty() && args.test.is_empty() && args.scores.is_none() {
        bail!("give labeled logs (azw-eval conn.log.labeled), or --train and --test, or --scores with --labels");
    }
    let opts = train_options(&args)?;
    let work = match &args.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            Workdir::Kept(dir.clone())
        }
        None => Workdir::Temp(tempfile::tempdir().context("cannot create a temporary folder")?),
    };

    let jobs = if let Some(scores) = &args.scores {
        scores_jobs(&args, scores, &asked, all)?
    } else if !args.logs.is_empty() {
        default_jobs(&args, &asked_one, all, &asked, work.path())?
    } else {
        explicit_jobs(&args, &asked_one, all, &asked, work.path())?
    };
    if jobs.is_empty() {
        bail!(
            "none of the inputs holds the modules asked for ({})",
            args.modules.join(",")
        );
    }

    let several = jobs.len() > 1;
    let mut reports = Vec::new();
    let mut failed = false;
    for job in jobs {
        let module = job.module;
        match evaluate(job, &opts, work.path()) {
            Ok((report, items)) => {
                if !args.no_plot {
                    let path = plot_path(&args.plot, module, several);
                    let title = format!(
                        "azw-eval {module}: {} uids ({} malicious)",
                        report.metrics.items, report.metrics.malicious
                    );
                    plot::write_svg(&path, &title, &items, &report.metrics)?;
                    tracing::info!("{module}: plot written to {}", path.display());
                }
                reports.push(report);
            }
            Err(e) => {
                failed = true;
                let e = cli::causes(&e);
                cli::error_line(&format!("{module}: {e}"));
            }
        }
    }
    if args.json {
        // Labels are the dataset's text: characters that reorder or hide
        // text (U+202E) are escaped as in every JSON output.
        let mut json = serde_json::to_vec_pretty(&reports)?;
        autozeekwatch::escape::json_in_place(&mut json, 0);
        cli::outln!("{}", String::from_utf8_lossy(&json))?;
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                cli::outln!()?;
            }
            cli::out!("{}", r.to_text())?;
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

enum Workdir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl Workdir {
    fn path(&self) -> &Path {
        match self {
            Workdir::Kept(p) => p,
            Workdir::Temp(t) => t.path(),
        }
    }
}

fn plot_path(plot: &Path, module: LogKind, several: bool) -> PathBuf {
    if !several {
        return plot.to_owned();
    }
    let stem = plot
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("azw-eval");
    let ext = plot.extension().and_then(|s| s.to_str()).unwrap_or("svg");
    plot.with_file_name(format!("{stem}-{}.{ext}", module.log_path()))
}

fn train_options(args: &Args) -> anyhow::Result<TrainOptions> {
    args.train_args
        .train_options(PathBuf::new(), DateRange::default())
}

/// One module's evaluation, ready to run.
struct Job {
    module: LogKind,
    protocol: String,
    inputs: Vec<String>,
    kind: JobKind,
}

enum JobKind {
    /// Train on `train`, score `test`, compare with `truth`.
    Model {
        train: Vec<PathBuf>,
        train_rows: u64,
        test: Vec<PathBuf>,
        test_rows: u64,
        truth: Truth,
        rows_without_uid: usize,
    },
    /// Compare existing scores with `truth`.
    Scores {
        scores: UidScores,
        truth: Truth,
        /// The model that made them, when --model names it.
        model: Option<ModelSummary>,
    },
}

fn wanted(module: LogKind, asked: &[LogKind], all: bool) -> bool {
    all || asked.contains(&module)
}

fn read_labeled(path: &Path) -> anyhow::Result<LabeledLog> {
    let log = LabeledLog::read(path)?;
    if log.skipped > 0 {
        tracing::warn!(
            "{}: {} data lines skipped (first: {})",
            path.display(),
            log.skipped,
            log.skip_reasons.first().map(String::as_str).unwrap_or("")
        );
    }
    let (b, m, u) = log.counts();
    tracing::info!(
        "{}: {} rows: {b} benign, {m} malicious, {u} unlabeled{}",
        path.display(),
        log.rows.len(),
        if log.joined_layout {
            " (IoT-23 layout)"
        } else {
            ""
        }
    );
    Ok(log)
}

fn write_labels(path: &Path, truth: &Truth) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut uids: Vec<_> = truth.iter().collect();
    uids.sort();
    for (uid, (class, detail)) in uids {
        let _ = writeln!(s, "{uid}\t{}\t{detail}", u8::from(class.is_malicious()));
    }
    std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))
}

fn default_jobs(
    args: &Args,
    asked_one: &[LogKind],
    all: bool,
    asked: &[LogKind],
    work: &Path,
) -> anyhow::Result<Vec<Job>> {
    let mut by_module: BTreeMap<LogKind, Vec<LabeledLog>> = BTreeMap::new();
    for path in &args.logs {
        let log = read_labeled(path)?;
        let module = module_of(path, log.log_path.as_deref(), asked, asked_one)?;
        by_module.entry(module).or_default().push(log);
    }
    let mut jobs = Vec::new();
    for (module, logs) in by_module {
        if !wanted(module, asked, all) {
            tracing::info!("{module}: not in --modules, skipped");
            continue;
        }
        let (train, test) = eval::split_by_time(&logs, args.train_share);
        let rows: usize = logs.iter().map(|l| l.rows.len()).sum();
        let dir = work.join(module.log_path());
        let train_path = dir.join("train").join(format!("{}.log", module.log_path()));
        let test_path = dir.join("test").join(format!("{}.log", module.log_path()));
        eval::write_rows(&train_path, &logs, &train)
            .with_context(|| format!("cannot write {}", train_path.display()))?;
        eval::write_rows(&test_path, &logs, &test)
            .with_context(|| format!("cannot write {}", test_path.display()))?;
        let (truth, rows_without_uid) = eval::truth_of(&logs, &test);
        write_labels(&dir.join("labels.tsv"), &truth)?;
        let cut = ((rows as f64) * args.train_share).floor() as usize;
        jobs.push(Job {
            module,
            protocol: format!(
                "default: {rows} rows ordered by ts; the benign rows of the first {cut} ({:.0}%) train, the labeled rows of the other {} are scored",
                args.train_share * 100.0,
                rows - cut
            ),
            inputs: logs.iter().map(|l| l.path.display().to_string()).collect(),
            kind: JobKind::Model {
                train: vec![train_path],
                train_rows: train.len() as u64,
                test: vec![test_path],
                test_rows: test.len() as u64,
                truth,
                rows_without_uid,
            },
        });
    }
    Ok(jobs)
}

/// The files of --train/--test arguments: folders are searched for each
/// module's logs; files are taken as they are.
fn expand(
    paths: &[PathBuf],
    asked_one: &[LogKind],
    asked: &[LogKind],
) -> anyhow::Result<BTreeMap<LogKind, Vec<PathBuf>>> {
    let mut out: BTreeMap<LogKind, Vec<PathBuf>> = BTreeMap::new();
    for p in paths {
        if p.is_dir() {
            // Under ALL, `asked` is every table.
            for m in asked.iter().copied() {
                let files = layout::discover(p, m.log_path(), DateRange::default())?;
                out.entry(m)
                    .or_default()
                    .extend(files.into_iter().map(|f| f.path));
            }
        } else {
            if !p.exists() {
                bail!("{}: no such file or directory", p.display());
            }
            let log_path = if labels::is_labeled(p)? {
                LabeledLog::read(p).ok().and_then(|l| l.log_path)
            } else {
                None
            };
            let m = module_of(p, log_path.as_deref(), asked, asked_one)?;
            out.entry(m).or_default().push(p.clone());
        }
    }
    out.retain(|_, v| !v.is_empty());
    Ok(out)
}

fn explicit_jobs(
    args: &Args,
    asked_one: &[LogKind],
    all: bool,
    asked: &[LogKind],
    work: &Path,
) -> anyhow::Result<Vec<Job>> {
    let train = expand(&args.train, asked_one, asked)?;
    let test = expand(&args.test, asked_one, asked)?;
    let labels_file = args
        .labels
        .as_ref()
        .map(|p| labels::read_labels_file(p))
        .transpose()?;
    let mut jobs = Vec::new();
    for (module, test_files) in test {
        if !wanted(module, asked, all) {
            continue;
        }
        let Some(train_files) = train.get(&module) else {
            bail!(
                "{module}: --test has {} logs but --train has none",
                module.log_path()
            );
        };
        let dir = work.join(module.log_path());
        // Training files: labeled ones give their benign rows.
        let mut train_paths = Vec::new();
        let mut train_rows = 0u64;
        for (i, f) in train_files.iter().enumerate() {
            if labels::is_labeled(f)? {
                let log = read_labeled(f)?;
                let logs = [log];
                let benign: eval::RowRefs = (0..logs[0].rows.len())
                    .filter(|&r| logs[0].rows[r].class == Some(labels::Class::Benign))
                    .map(|r| (0, r))
                    .collect();
                let out = dir
                    .join("train")
                    .join(format!("{}.{i}.log", module.log_path()));
                eval::write_rows(&out, &logs, &benign)?;
                train_rows += benign.len() as u64;
                train_paths.push(out);
            } else {
                train_paths.push(f.clone());
            }
        }
        // Test files: labeled ones give their labeled rows and the truth.
        let mut test_paths = Vec::new();
        let mut truth = Truth::new();
        let mut test_rows = 0u64;
        let mut rows_without_uid = 0;
        for (i, f) in test_files.iter().enumerate() {
            if labels::is_labeled(f)? {
                let logs = [read_labeled(f)?];
                let labeled: eval::RowRefs = (0..logs[0].rows.len())
                    .filter(|&r| logs[0].rows[r].class.is_some())
                    .map(|r| (0, r))
                    .collect();
                let out = dir
                    .join("test")
                    .join(format!("{}.{i}.log", module.log_path()));
                eval::write_rows(&out, &logs, &labeled)?;
                let (t, n) = eval::truth_of(&logs, &labeled);
                for (uid, (class, detail)) in t {
                    labels::merge(&mut truth, uid, class, detail);
                }
                rows_without_uid += n;
                test_rows += labeled.len() as u64;
                test_paths.push(out);
            } else {
                let Some(l) = &labels_file else {
                    bail!(
                        "{}: not a labeled log; give its ground truth with --labels",
                        f.display()
                    );
                };
                test_paths.push(f.clone());
                for (uid, (class, detail)) in l {
                    labels::merge(&mut truth, uid.clone(), *class, detail.clone());
                }
            }
        }
        write_labels(&dir.join("labels.tsv"), &truth)?;
        let inputs = train_files
            .iter()
            .chain(&test_files)
            .map(|p| p.display().to_string())
            .collect();
        jobs.push(Job {
            module,
            protocol: format!(
                "explicit: train on {} (benign rows of labeled logs, all rows of unlabeled ones), score {}",
                train_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" "),
                test_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" ")
            ),
            inputs,
            kind: JobKind::Model {
                train: train_paths,
                train_rows,
                test: test_paths,
                test_rows,
                truth,
                rows_without_uid,
            },
        });
    }
    Ok(jobs)
}

fn scores_jobs(
    args: &Args,
    scores: &Path,
    asked: &[LogKind],
    all: bool,
) -> anyhow::Result<Vec<Job>> {
    let labels_path = args.labels.as_ref().context("--scores needs --labels")?;
    let truth = labels::read_labels_file(labels_path)?;
    // Under ALL, `asked` is every table.
    let modules: Vec<LogKind> = asked.to_vec();
    let made_by = match &args.model {
        Some(path) => Some(ModelSummary::of(
            &autozeekwatch::model::Model::load(path)?.0,
        )),
        None => None,
    };
    let mut jobs = Vec::new();
    for module in modules {
        let mut s = eval::read_scores(scores, module)?;
        if let Some(path) = &args.alerts {
            let mut alerts = s.alerts.take().unwrap_or_default();
            alerts.extend(eval::read_alerts(path)?);
            s.alerts = Some(eval::latest_states(alerts));
        }
        if s.records == 0 {
            if !all {
                bail!("{}: no {module} scores", scores.display());
            }
            continue;
        }
        if !s.threshold.is_finite() {
            tracing::warn!(
                "{}: the scores carry no `threshold`: nothing counts as flagged (ROC-AUC, average precision and recall at FPR do not need one)",
                scores.display()
            );
            s.threshold = f64::INFINITY;
        }
        jobs.push(Job {
            module,
            protocol: format!(
                "scored output {} against {}",
                scores.display(),
                labels_path.display()
            ),
            inputs: vec![
                scores.display().to_string(),
                labels_path.display().to_string(),
            ],
            kind: JobKind::Scores {
                scores: s,
                truth: truth.clone(),
                model: made_by.clone(),
            },
        });
    }
    Ok(jobs)
}

fn evaluate(
    job: Job,
    opts: &TrainOptions,
    work: &Path,
) -> anyhow::Result<(Report, Vec<metrics::Scored>)> {
    let module = job.module;
    let (scores, truth, model, train_rows, test_rows, rows_without_uid) = match job.kind {
        JobKind::Scores {
            scores,
            truth,
            model,
        } => (scores, truth, model, 0, 0, 0),
        JobKind::Model {
            train,
            train_rows,
            test,
            test_rows,
            truth,
            rows_without_uid,
        } => {
            tracing::info!("{module}: training on {train_rows} benign rows");
            let mut o = opts.clone();
            o.log_dir = work.to_owned();
            let model = eval::train(module, &train, &o, &autozeekwatch::train::NoProgress)?;
            let path = work
                .join(module.log_path())
                .join(autozeekwatch::model::file_name(module));
            model.save(&path)?;
            let encoder = model
                .check()
                .map_err(anyhow::Error::msg)
                .context("the trained model")?;
            let summary = ModelSummary::of(&model);
            tracing::info!("{module}: scoring {test_rows} labeled rows");
            let scores = eval::score_files(module, model, encoder, &test)?;
            (
                scores,
                truth,
                Some(summary),
                train_rows,
                test_rows,
                rows_without_uid,
            )
        }
    };
    let (items, unscored) = eval::join(&scores.scores, &truth);
    if unscored > 0 {
        tracing::warn!("{module}: {unscored} labeled uids got no score (lines the reader skipped, or missing from the scores); they are not measured");
    }
    let m = metrics::evaluate(&items, scores.threshold)?;
    let hosts = scores
        .alerts
        .as_ref()
        .map(|alerts| eval::hosts::host_level(&truth, &scores.hosts, alerts));
    let rate = (scores.seconds > 0.0).then(|| scores.records as f64 / scores.seconds);
    let report = Report {
        module,
        protocol: job.protocol,
        inputs: job.inputs,
        train_rows,
        test_rows,
        test_uids: truth.len(),
        scored_records: scores.records,
        records_per_second: rate,
        unscored_uids: unscored,
        rows_without_uid,
        model,
        metrics: m,
        hosts,
    };
    Ok((report, items))
}
