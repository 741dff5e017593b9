//! What the binaries share: logging that does not tear progress bars, the
//! exit-code convention, standard output that a closed pipe ends quietly,
//! and the model settings of azw-train and azw-eval. The library knows
//! nothing of this: clap, indicatif, tracing-subscriber and anyhow are the
//! binaries' alone.
//!
//! Exit codes: 0 done (also when the reader of standard output went away,
//! as with `| head`); 1 failed; 2 done, but some input files could not be
//! read (each is named in a warning), like ripgrep's 2.

#![allow(dead_code)] // each binary uses its own part

pub mod args;
pub mod config;

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;

use indicatif::{MultiProgress, ProgressBar};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use autozeekwatch::features::{LocalNets, NetsOrigin};
use autozeekwatch::kitnet::{KitNetParams, Mode};
use autozeekwatch::tables::Tables;
use autozeekwatch::train::{Progress, TrainOptions};
use autozeekwatch::zeek::layout::DateRange;

/// The exit code of a run that finished but could not read some inputs.
pub const EXIT_INPUT_FAILED: u8 = 2;

/// `println!` that returns the error instead of panicking when standard
/// output is closed; [`report`] turns a broken pipe into a quiet exit 0.
#[allow(unused_macros)]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot write to standard output: {e}"))
        })
    }};
}
#[allow(unused_imports)]
pub(crate) use outln;

/// `eprintln!` that never panics: a log disk that is full (standard
/// error to a file on it) made every tool panic at its first line, before
/// doing any work, and the nightly training stopped with it. What cannot
/// be said is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}
#[allow(unused_imports)]
pub(crate) use errln;

/// `print!` without the newline, as [`outln!`].
#[allow(unused_macros)]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}
#[allow(unused_imports)]
pub(crate) use out;

/// True if `dir` is Zeek's live folder: a folder named `current`, or a
/// link named so or pointing to one (Zeek's `current` is often a link to
/// the spool).
pub fn is_zeek_current(dir: &std::path::Path) -> bool {
    let named = dir
        .canonicalize()
        .ok()
        .and_then(|c| c.file_name().map(|n| n == "current"))
        .unwrap_or(false)
        || dir.file_name().is_some_and(|n| n == "current");
    named && dir.is_dir()
}

/// A progress bar as the library's [`Progress`]; without a terminal (cron,
/// a unit's start step), where the bar is hidden, a log line every
/// [`Bar::LOG_EVERY`] instead: a night's training on a busy sensor was
/// hours without a word between "training on N files" and its summary.
pub struct Bar {
    pub bar: ProgressBar,
    /// When the last line was logged, when lines stand in for the bar.
    logged: Option<std::sync::Mutex<std::time::Instant>>,
}

impl Bar {
    pub const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

    /// `lines`: log a line now and then (the bar is not drawn).
    pub fn new(bar: ProgressBar, lines: bool) -> Bar {
        Bar {
            bar,
            logged: lines.then(|| std::sync::Mutex::new(std::time::Instant::now())),
        }
    }

    /// The line standing in for the bar, when one is due.
    fn log_if_due(&self) {
        let Some(Ok(mut last)) = self.logged.as_ref().map(|m| m.try_lock()) else {
            return;
        };
        if last.elapsed() < Self::LOG_EVERY {
            return;
        }
        *last = std::time::Instant::now();
        let done = self.bar.position();
        let rate = self.bar.per_sec();
        match self.bar.length().filter(|n| *n > 0) {
            Some(total) => tracing::info!(
                "{}: {done} of {total} records ({rate:.0}/s, {} s left)",
                self.bar.message(),
                self.bar.eta().as_secs()
            ),
            None => tracing::info!("{}: {done} records ({rate:.0}/s)", self.bar.message()),
        }
    }
}

impl Progress for Bar {
    fn set_length(&self, total: u64) {
        // Known from the second pass on: a bar, and the time left.
        if total > 0 && self.bar.length().is_none_or(|n| n == 0) {
            self.bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg:<24} [{bar:30}] {pos}/{len} records ({per_sec}, {eta} left)",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
        }
        self.bar.set_length(total);
    }
    fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.log_if_due();
    }
    fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }
}

/// Sends log lines to stderr, pausing the progress bars while a line is
/// written so the two never interleave; `json` for JSON lines.
#[derive(Clone)]
pub struct LogWriter {
    bars: Option<MultiProgress>,
    json: bool,
}

impl Write for LogWriter {
    /// One call is one formatted event. Control characters inside it (a
    /// newline or escape sequence in an attacker's user agent) are shown
    /// escaped, so a log line can be neither forged nor turned into
    /// terminal commands.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.strip_suffix(b"\n") {
            Some(body) => (body, "\n"),
            None => (buf, ""),
        };
        let text = String::from_utf8_lossy(body);
        let line = if self.json {
            format!("{}{end}", json_safe(&text))
        } else {
            format!("{}{end}", autozeekwatch::escape::terminal(&text))
        };
        // A log line that cannot be written (a full log disk) is dropped:
        // returned, the error made tracing print its own complaint with
        // `eprintln!`, which panicked, and the tool stopped.
        let _ = match &self.bars {
            Some(bars) => bars.suspend(|| io::stderr().write_all(line.as_bytes())),
            None => io::stderr().write_all(line.as_bytes()),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

/// How the tools log (to standard error).
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Only warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,

    /// Debug logging.
    #[arg(short, long)]
    pub verbose: bool,

    /// `text` (one line per event) or `json` (one JSON object per event,
    /// with `timestamp`, `level` and `fields.message`, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Set when the logs are JSON: errors then go through the log too, so a
/// shipper sees every line as JSON.
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Prints an error line: `error: ...` on standard error, or a JSON log
/// event at level ERROR under `--log-format json`.
pub fn error_line(message: &str) {
    if JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("{message}");
    } else {
        errln!("error: {}", autozeekwatch::escape::terminal(message));
    }
}

/// Logs at `info` (or `warn` with `quiet`, `debug` with `verbose`); the
/// `RUST_LOG` variable overrides.
pub fn init_logging(log: &LogArgs, bars: Option<MultiProgress>) {
    let level = if log.quiet {
        "warn"
    } else if log.verbose {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter {
            bars,
            json: log.log_format == LogFormat::Json,
        })
        .with_target(false)
        // Colours are escape sequences, which the writer escapes.
        .with_ansi(false);
    JSON_LOGS.store(
        log.log_format == LogFormat::Json,
        std::sync::atomic::Ordering::Relaxed,
    );
    let _ = match log.log_format {
        LogFormat::Text => builder.try_init(),
        // JSON escapes control characters itself; the writer's escaping
        // then leaves the line as it is (it holds none).
        LogFormat::Json => builder.json().try_init(),
    };
}

/// A JSON line with the characters a terminal or viewer would act on
/// (which JSON allows raw: C1 controls, bidirectional overrides, line
/// separators) written as `\uXXXX` escapes: the same JSON value, safe to
/// show. (JSON already escapes the ASCII controls.)
fn json_safe(line: &str) -> std::borrow::Cow<'_, str> {
    autozeekwatch::escape::json_text(line)
}

/// Prints an error with its causes and returns the failure exit code; a
/// closed standard output (`| head`) ends quietly with success.
pub fn report(err: &anyhow::Error) -> std::process::ExitCode {
    if is_broken_pipe(err) {
        return std::process::ExitCode::SUCCESS;
    }
    error_line(&causes(err));
    std::process::ExitCode::FAILURE
}

/// An error and its causes, `: ` between them, as `{:#}` writes them, but
/// each cause once: the library's errors name their cause in their own
/// text (`PATH: No space left on device`) and keep it as their source too,
/// which `{:#}` printed a second time.
pub fn causes(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        // Said already at the end of the text before it (a short cause
        // found elsewhere in the text is still said).
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use autozeekwatch::pipeline::RunError;
    use autozeekwatch::sink::SinkError;
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<SinkError>()
                .is_some_and(SinkError::is_broken_pipe)
            || cause
                .downcast_ref::<RunError>()
                .is_some_and(RunError::is_broken_pipe)
    })
}

/// How logs are read, for all three tools.
#[derive(clap::Args, Debug, Clone)]
pub struct ReadArgs {
    /// The longest log line read, in bytes: a longer one is skipped and
    /// counted without being held in memory (a line an attacker made huge,
    /// a file of zeros), in every mode.
    #[arg(long, default_value_t = autozeekwatch::zeek::DEFAULT_MAX_LINE, env = "AZW_MAX_LINE_BYTES")]
    pub max_line_bytes: usize,
}

impl ReadArgs {
    /// Applies the settings to every reader made from now on.
    pub fn apply(&self) {
        autozeekwatch::zeek::set_max_line(self.max_line_bytes);
    }
}

/// The model settings `azw-train` and `azw-eval` share (flattened into
/// both command lines), checked once into [`TrainOptions`].
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Largest number of features in one KitNET autoencoder.
    #[arg(long, default_value_t = 30)]
    pub max_size_ae: usize,

    /// Records the feature mapper learns the feature clusters from.
    #[arg(long, default_value_t = 5000)]
    pub grace_feature_mapping: u64,

    /// Records the reference mode trains on before it only scores; product
    /// mode trains on all records and only reports when there are fewer.
    #[arg(long, default_value_t = 50_000)]
    pub grace_anomaly_detector: u64,

    /// Learning rate of the autoencoders. The Python tool's 0.001 leaves
    /// them undertrained (ROC-AUC 0.80 instead of 0.999 on the labeled dev
    /// set); KitNET's own 0.1 makes a model trained on a small history a
    /// matter of luck (ROC-AUC 0.54 to 0.998 by --seed on the HTTP beacon
    /// set, HTTP table without context columns). 0.03 gives the same
    /// ranking for every seed tried on both dev sets, at a small cost in
    /// average precision on the beacon set (see the README).
    #[arg(long, default_value_t = 0.03)]
    pub learning_rate: f64,

    /// Hidden units per autoencoder, as a share of its inputs.
    #[arg(long, default_value_t = 0.5)]
    pub hidden_ratio: f64,

    /// Passes over the whole history.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,

    /// Seed of the weight initialisation (same data + seed = same model).
    #[arg(long, default_value_t = 1234)]
    pub seed: u32,

    /// `product` (bounded, learns from all history) or `reference`
    /// (KitNET-py's exact computation, weaknesses included).
    #[arg(long, value_enum, default_value_t = KitMode::Product)]
    pub kitnet_mode: KitMode,

    /// Share of normal records the threshold may flag: the threshold is the
    /// score quantile 1 - FPR of held-out training records, extrapolated
    /// from a fit of their tail when they are too few to measure it
    /// (`--inspect` says how many it rests on and what rate it expects).
    #[arg(long, default_value_t = 0.001)]
    pub threshold_fpr: f64,

    /// Hold every n-th hour of history out of training to set the
    /// threshold (records without a time: every n-th record). Whole hours,
    /// so the held-out traffic has its own new hosts and values, as
    /// tomorrow's will (1: no holdout, the threshold comes from training
    /// scores).
    #[arg(long, default_value_t = 10)]
    pub holdout_every: u64,

    /// Local networks for traffic direction (like Zeek's Site::local_nets),
    /// comma-separated CIDR blocks. Default: learned from the conn
    /// history's local_orig/local_resp (what Zeek's Site::local_nets marks
    /// local), else the private, CGNAT, link-local and loopback ranges of
    /// IPv4 and IPv6. `--inspect` shows which.
    #[arg(long, value_delimiter = ',')]
    pub local_nets: Vec<String>,

    /// Train on at most N records per module: a uniform sample of the whole
    /// history (every day of the date range alike), chosen by --seed, the
    /// same records in every pass, so the same history and seed give the
    /// same model. The passes over KitNET then cost N records whatever
    /// the history's size (each pass still reads all of it, and context
    /// features still follow every record); memory stays flat (16 bytes
    /// per sampled record while choosing). The summary says how many were
    /// sampled. Default: every record.
    #[arg(long, value_name = "N")]
    pub max_records: Option<u64>,

    /// Feature tables of your own: a folder of `<log path>.toml` files (or
    /// one such file) that add log types (`myapp.toml` for `myapp.log`) or
    /// replace built-in tables of the same name. See the README's "Adding
    /// a log type"; `azw-train --list-features NAME` shows a table.
    #[arg(long, value_name = "DIR", env = "AZW_TABLES")]
    pub tables: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KitMode {
    Product,
    Reference,
}

impl ModelArgs {
    /// The built-in tables, with those of `--tables`.
    pub fn tables(&self) -> anyhow::Result<Tables> {
        match &self.tables {
            None => Ok(Tables::built_in().clone()),
            Some(dir) => Ok(Tables::with_dir(dir).context("--tables")?),
        }
    }

    /// Checks the settings; `log_dir` and `range` say where the history is.
    pub fn train_options(
        &self,
        log_dir: PathBuf,
        range: DateRange,
    ) -> anyhow::Result<TrainOptions> {
        if !(self.threshold_fpr > 0.0 && self.threshold_fpr < 1.0) {
            anyhow::bail!(
                "--threshold-fpr must be between 0 and 1 (0.001 flags 0.1% of normal traffic)"
            );
        }
        if let Some(n) = self
            .max_records
            .filter(|n| *n < autozeekwatch::train::MIN_TRAINING_RECORDS)
        {
            anyhow::bail!(
                "--max-records {n}: a model needs at least {} records (and thousands to be useful)",
                autozeekwatch::train::MIN_TRAINING_RECORDS
            );
        }
        if self.holdout_every == 0 {
            anyhow::bail!("--holdout-every must be at least 1");
        }
        let (local_nets, local_nets_origin) = if self.local_nets.is_empty() {
            (LocalNets::default(), NetsOrigin::Defaults)
        } else {
            let nets = LocalNets::parse(&self.local_nets)
                .map_err(anyhow::Error::msg)
                .context("--local-nets")?;
            (nets, NetsOrigin::Given)
        };
        let params = KitNetParams {
            max_autoencoder_size: self.max_size_ae,
            fm_grace: self.grace_feature_mapping,
            ad_grace: self.grace_anomaly_detector,
            learning_rate: self.learning_rate,
            hidden_ratio: self.hidden_ratio,
            mode: match self.kitnet_mode {
                KitMode::Product => Mode::Product,
                KitMode::Reference => Mode::Reference,
            },
            seed: self.seed,
            epochs: self.epochs,
        };
        params.check().context("KitNET parameters")?;
        Ok(TrainOptions {
            log_dir,
            range,
            params,
            local_nets,
            local_nets_origin,
            threshold_fpr: self.threshold_fpr,
            holdout_every: self.holdout_every,
            tables: self.tables()?,
            max_records: self.max_records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tag character in a JSON log line stays valid JSON and reads back
    /// as itself (`\ue0041` read as U+E004 and a `1`).
    #[test]
    fn json_log_lines_escape_past_the_bmp_as_surrogate_pairs() {
        let line = serde_json::to_string(&serde_json::json!({"m": "a\u{e0041}b\u{200b}"})).unwrap();
        let safe = json_safe(&line).into_owned();
        assert!(safe.is_ascii(), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["m"], "a\u{e0041}b\u{200b}", "{safe}");
    }

    /// A cause the error's own text names is said once.
    #[test]
    fn each_cause_is_said_once() {
        let full = || io::Error::from_raw_os_error(28);
        let e = anyhow::Error::from(autozeekwatch::follow::CheckpointError::Io {
            path: "st/checkpoint.json".into(),
            source: full(),
        });
        let said = causes(&e);
        assert_eq!(said.matches("No space left on device").count(), 1, "{said}");
        assert!(said.starts_with("st/checkpoint.json: "), "{said}");
        // A context above it, and a cause the text does not name, are kept.
        let e = e.context("cannot write scores.json");
        assert!(causes(&e).starts_with("cannot write scores.json: st/checkpoint.json: "));
        let e = anyhow::Error::from(full()).context("saving");
        assert_eq!(causes(&e), format!("saving: {}", full()));
        // A short cause that the text holds elsewhere is still said.
        let e = anyhow::anyhow!("EOF").context("EOF in the header, then");
        assert_eq!(causes(&e), "EOF in the header, then: EOF");
    }
}
