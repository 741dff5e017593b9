//! `azw-eval`'s command line (every flag also an `AZW_` variable and a
//! config-file key, see [`super::super::config`]).

use std::path::PathBuf;

use clap::Parser;

use super::super::{LogArgs, ModelArgs, ReadArgs};

/// Measure how well autozeekwatch finds the malicious records of labeled
/// Zeek logs: ROC-AUC, average precision, precision/recall/F1 and
/// false-positive rate at the model's threshold, recall at 0.1% and 1%
/// false positives, recall per detailed label, and a plot of the curves.
///
/// Labeled logs are Zeek TSV with label columns, as published: Stratosphere's
/// `label` and `detailedlabel` tab columns, or IoT-23's last column
/// `tunnel_parents   label   detailed-label` (three values joined by three
/// spaces). Labels are read in any case; rows labeled `Background`,
/// `Unknown` or `(empty)` are left out. Label columns never reach the
/// features: they are taken out before the model sees a row.
///
/// Default protocol (LABELED_LOG... alone; the same as the team's
/// make_eval_set.py): all rows ordered by ts; the first half (--train-share)
/// is history, the rest live traffic. The model trains on the benign rows
/// of the history only, exactly as azw-train trains; every benign or
/// malicious row of the rest is scored. Scores and labels are compared per
/// uid: a uid scores the highest of its records and is malicious if any of
/// its rows is.
///
/// Examples:
///   azw-eval conn.log.labeled --modules CONN
///   azw-eval --train history/ --test capture.conn.log.labeled --json
///   azw-eval --scores scored.json --labels labels.tsv --modules CONN
///   azw-eval conn.log.labeled --learning-rate 0.1 --epochs 3 --plot roc.svg
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Labeled logs for the default protocol (plain or gzip).
    #[arg(value_name = "LABELED_LOG", conflicts_with_all = ["train", "test", "scores"])]
    pub logs: Vec<PathBuf>,

    /// Modules to evaluate: log types with a table (CONN, DNS, HTTP, FILES,
    /// a --tables one ...) or ALL (every module the inputs hold). An
    /// input's module comes from its `#path` header or its file name.
    #[arg(long, value_delimiter = ',', default_value = "ALL")]
    pub modules: Vec<String>,

    /// Train on these logs instead (files or folders). In a labeled log only
    /// the benign rows are used; an unlabeled log is taken as normal.
    #[arg(long, num_args = 1.., requires = "test")]
    pub train: Vec<PathBuf>,

    /// Score these logs: labeled logs, or unlabeled ones with --labels.
    #[arg(long, num_args = 1.., requires = "train")]
    pub test: Vec<PathBuf>,

    /// Ground truth by uid for unlabeled --test logs or for --scores:
    /// `uid<TAB>label[<TAB>detailed label]`, label 0/1 or a label word.
    #[arg(long)]
    pub labels: Option<PathBuf>,

    /// Measure an existing scored output (azw-infer's JSON lines) against
    /// --labels instead of training a model. Alert lines in it
    /// (`azw-infer --alerts output`) are measured per host too.
    #[arg(long, requires = "labels")]
    pub scores: Option<PathBuf>,

    /// The alerts of the --scores (`azw-infer --alerts FILE`, JSON), when
    /// they were written to a file of their own: measured per host
    /// (precision and recall over hosts, per minimum severity).
    #[arg(long, requires = "scores", value_name = "FILE")]
    pub alerts: Option<PathBuf>,

    /// The model that made the --scores: its expected false-positive rate
    /// is then printed beside the measured one.
    #[arg(long, requires = "scores", value_name = "FILE")]
    pub model: Option<PathBuf>,

    /// Share of the rows (in time order) that is history in the default
    /// protocol.
    #[arg(long, default_value_t = 0.5)]
    pub train_share: f64,

    /// Print the report as JSON (an array, one object per module).
    #[arg(long)]
    pub json: bool,

    /// Where to write the SVG of the curves and score distributions (with
    /// several modules, the module's name is added before `.svg`).
    #[arg(long, default_value = "azw-eval.svg")]
    pub plot: PathBuf,

    /// Write no plot.
    #[arg(long)]
    pub no_plot: bool,

    /// Keep the split and the model in this folder (`train/`, `test/`,
    /// `labels.tsv`, `<module>.model.json`) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,

    #[command(flatten)]
    pub train_args: ModelArgs,

    #[command(flatten)]
    pub log: LogArgs,
}
