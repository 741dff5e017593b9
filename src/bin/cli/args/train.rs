//! `azw-train`'s command line (every flag also an `AZW_` variable and a
//! config-file key, see [`super::super::config`]).

use std::path::PathBuf;

use chrono::NaiveDate;
use clap::Parser;

use super::super::{LogArgs, ModelArgs, ReadArgs};

/// Learn what normal traffic looks like from Zeek's historical logs and
/// write one model per module: per Zeek log type with a feature table
/// (conn, dns, http, ssh, ssl, files, weird, x509, notice ... built in;
/// your own with --tables).
///
/// Reads Zeek's log directory: dated folders
/// `YYYY-MM-DD/conn.HH:MM:SS-HH:MM:SS.log.gz` (never `current/`), or a flat
/// folder of logs, or one log file; TSV or JSON, plain or gzip. Every record
/// is used (streamed several times, never held in memory), or a uniform
/// sample of the whole history with --max-records. Models go to
/// `<model-dir>/<module>.model.json`, replaced atomically, so a nightly cron
/// job can retrain while `azw-infer` runs.
///
/// Examples:
///   azw-train --log-dir /opt/zeek/logs --modules CONN,DNS
///   azw-train --log-dir /opt/zeek/logs --modules ALL --start-date 2024-04-20 --dry-run
///   azw-train --log-dir /opt/zeek/logs --last-days 7 --max-records 20000000
///   azw-train --log-dir /opt/zeek/logs --modules CONN,CONN_LONG
///   azw-train --inspect models/conn.model.json
///   azw-train --list-features DNS
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Zeek's log directory (dated folders), a folder of logs, or one file.
    #[arg(long, env = "AZW_LOG_DIR", required_unless_present_any = ["inspect", "list_features", "print_config"])]
    pub log_dir: Option<PathBuf>,

    /// Modules to train: log types with a table (CONN, DNS, HTTP, FILES,
    /// X509, a --tables one ...; `--list-features` lists them) or ALL,
    /// comma-separated or repeated, any case. With ALL, modules without
    /// logs, or with too few records to learn from, are skipped.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "ALL", env = "AZW_MODULES")]
    pub modules: Vec<String>,

    /// Where to write the models.
    #[arg(long, default_value = "models", env = "AZW_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// First day of history to use (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_date)]
    pub start_date: Option<NaiveDate>,

    /// Last day of history to use (YYYY-MM-DD, inclusive).
    #[arg(long, value_parser = parse_date)]
    pub end_date: Option<NaiveDate>,

    /// Use only the last N days of history (today and the N-1 days
    /// before, none after today; for the nightly retraining and the config
    /// file, where a fixed --start-date would go stale).
    #[arg(long, value_name = "N", conflicts_with = "start_date")]
    pub last_days: Option<u32>,

    /// The fewest records a module's model may be trained on: below it
    /// training refuses (a model of a handful of records flags most of
    /// tomorrow's traffic; between 100 and a few thousand its threshold is
    /// extrapolated, and azw-train says so). Lower it only for tests and
    /// demos.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_records: u64,

    /// Train only the modules that have no model in --model-dir yet, and
    /// succeed at once when none is missing (the service's start step).
    /// With ALL, once some module has a model, those without one that have
    /// no logs or too few records are nothing to train, not an error.
    #[arg(long)]
    pub only_missing: bool,

    #[command(flatten)]
    pub model: ModelArgs,

    /// List the files and record counts per module that would be used, then
    /// stop.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the metadata of model files and stop.
    #[arg(long, num_args = 1.., value_name = "MODEL")]
    pub inspect: Vec<PathBuf>,

    /// Print a module's feature table and where it came from (built in,
    /// or a --tables file), and stop; without a module, list the tables.
    #[arg(long, value_name = "MODULE", num_args = 0..=1, default_missing_value = "")]
    pub list_features: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date: write it as YYYY-MM-DD, e.g. 2024-04-20"))
}
