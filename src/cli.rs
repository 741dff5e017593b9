//! What the binaries share: logging that does not tear progress bars, the
//! exit-code convention, and the model settings of azw-train and azw-eval.

use std::io::{self, Write};
use std::path::PathBuf;

use anyhow::Context;

use indicatif::MultiProgress;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::features::LocalNets;
use crate::kitnet::{KitNetParams, Mode};
use crate::train::TrainOptions;
use crate::zeek::layout::DateRange;

/// Sends log lines to stderr, pausing the progress bars while a line is
/// written so the two never interleave.
#[derive(Clone)]
pub struct LogWriter(Option<MultiProgress>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.0 {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        self.clone()
    }
}

/// Logs at `info` (or `warn` with `quiet`, `debug` with `verbose`); the
/// `RUST_LOG` variable overrides.
pub fn init_logging(quiet: bool, verbose: bool, bars: Option<MultiProgress>) {
    let level = if quiet {
        "warn"
    } else if verbose {
        "debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter(bars))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

/// Prints an error with its causes and returns the failure exit code.
pub fn report(err: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("error: {err:#}");
    std::process::ExitCode::FAILURE
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

    /// Learning rate of the autoencoders. The default is KitNET's own; the
    /// Python tool's 0.001 leaves them undertrained (ROC-AUC 0.80 instead of
    /// 0.999 on the labeled dev set, see the README).
    #[arg(long, default_value_t = 0.1)]
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
    /// score quantile 1 - FPR of held-out training records.
    #[arg(long, default_value_t = 0.001)]
    pub threshold_fpr: f64,

    /// Hold every n-th record out of training to set the threshold
    /// (1: no holdout, the threshold comes from training scores).
    #[arg(long, default_value_t = 10)]
    pub holdout_every: u64,

    /// Local networks for traffic direction (like Zeek's Site::local_nets),
    /// comma-separated CIDR blocks. Default: private, CGNAT, link-local and
    /// loopback ranges of IPv4 and IPv6.
    #[arg(long, value_delimiter = ',')]
    pub local_nets: Vec<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KitMode {
    Product,
    Reference,
}

impl ModelArgs {
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
        if self.holdout_every == 0 {
            anyhow::bail!("--holdout-every must be at least 1");
        }
        let local_nets = if self.local_nets.is_empty() {
            LocalNets::default()
        } else {
            LocalNets::parse(&self.local_nets)
                .map_err(anyhow::Error::msg)
                .context("--local-nets")?
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
            threshold_fpr: self.threshold_fpr,
            holdout_every: self.holdout_every,
        })
    }
}
