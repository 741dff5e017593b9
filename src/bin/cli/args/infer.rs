//! `azw-infer`'s command line (every flag also an `AZW_` variable and a
//! config-file key, see [`super::super::config`]).

use std::path::PathBuf;

use autozeekwatch::alert::{AlertOptions, AlertSetup, AlertTarget};
use autozeekwatch::detect::stage::Overrides;
use autozeekwatch::detect::DetectOptions;
use autozeekwatch::score::{ContextFields, RecordOptions};
use autozeekwatch::severity::{JudgeOptions, Levels, Severity, ThresholdOverride};
use autozeekwatch::sink::{OutputSpec, RecordFormat, Stamp};
use clap::Parser;

use super::super::{LogArgs, ReadArgs};

/// Score Zeek logs with the models `azw-train` wrote: one line per log
/// record with its anomaly score, the threshold verdict, Zeek's `uid` and
/// `ts`, the connection 5-tuple and its Community ID, the fields an analyst
/// looks at first (--context-fields), the sensor's name and, for
/// anomalies, the features that contributed most, each with the value seen
/// and what training saw (`resp_p=445: never seen in training (45%)`).
/// --format chooses JSON (default), Zeek TSV, CSV, or a SIEM's own: ECS,
/// Suricata EVE alerts, a Zeek notice.log.
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
/// be scored twice; `uid` tells them). Context features and detectors need
/// all of a host's records in one member: for topics not keyed by host,
/// --repartition-topic re-publishes records keyed by `id.orig_h` and
/// scores from there.
///
/// Alerts (--alerts): a host's flagged records and detections, every log
/// type, folded into one alert that opens, updates and closes, with a
/// calibrated severity (--min-severity); --threshold changes what is
/// flagged without retraining.
///
/// Examples:
///   azw-infer --log-dir /opt/zeek/logs --modules CONN,DNS --output /var/log/azw/scores.json
///   azw-infer --log-dir /opt/zeek/logs --modules ALL --output scores.json --alerts alerts.json --min-severity medium
///   azw-infer --replay /opt/zeek/logs/2024-04-19 --modules CONN --only-anomalies
///   azw-infer --source kafka --brokers kafka1:9092 --topics zeek-conn,zeek-dns --group azw \
///             --output kafka://kafka1:9092/azw-scores
#[derive(Parser, Debug)]
#[command(version, verbatim_doc_comment)]
pub struct Args {
    #[command(flatten)]
    pub read: ReadArgs,

    /// Zeek's log directory; its `current/` folder is followed.
    #[arg(long, env = "AZW_LOG_DIR", required_unless_present_any = ["replay", "topics", "print_config"])]
    pub log_dir: Option<PathBuf>,

    /// Score these historical files or folders once, in order, and exit.
    #[arg(long, num_args = 1.., conflicts_with = "log_dir")]
    pub replay: Vec<PathBuf>,

    /// Where records come from: `file` (Zeek's log directory, or --replay)
    /// or `kafka` (--brokers, --topics, --group).
    #[arg(long, value_enum, default_value_t = SourceKind::File, env = "AZW_SOURCE")]
    pub source: SourceKind,

    /// Kafka: the brokers to bootstrap from, HOST:PORT[,HOST:PORT...].
    #[arg(long, env = "AZW_KAFKA_BROKERS")]
    pub brokers: Option<String>,

    /// Kafka: the topics to consume, comma-separated. The module of a
    /// record comes from its wrapper key ({"conn": {...}}), else a log type
    /// named in the topic (zeek-conn, zeek_dns), else its `_path`.
    #[arg(long, value_delimiter = ',', num_args = 1.., env = "AZW_KAFKA_TOPICS")]
    pub topics: Vec<String>,

    /// Kafka: the consumer group; processes in one group share the
    /// partitions.
    #[arg(long, default_value = "azw-infer", env = "AZW_KAFKA_GROUP")]
    pub group: String,

    /// Kafka: re-publish every input record to this topic keyed by its
    /// originator (`id.orig_h`) and score from there, so that all of a
    /// host's records reach one member of the group, as context features
    /// and detectors need. For input topics not keyed by host (zeek-kafka
    /// keys by nothing); created when missing. Not one of --topics.
    #[arg(long, value_name = "TOPIC", env = "AZW_KAFKA_REPARTITION_TOPIC")]
    pub repartition_topic: Option<String>,

    /// Kafka: the partitions of the repartition topic. It is created with
    /// this many (default: as many as the input topic with the most); an
    /// existing one with another count is refused.
    #[arg(long, value_name = "N", requires = "repartition_topic", value_parser = clap::value_parser!(u16).range(1..), env = "AZW_KAFKA_REPARTITION_PARTITIONS")]
    pub repartition_partitions: Option<u16>,

    /// Kafka: how long records of the repartition topic are held so that
    /// each member scores them in event-time order (the input partitions
    /// interleave at random): until the newest `ts` seen, or the clock, is
    /// this far past theirs, or 100,000 records are held. 0 scores them on
    /// arrival.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=86_400), env = "AZW_KAFKA_REPARTITION_HOLD_SECS")]
    pub repartition_hold_secs: u64,

    /// Kafka: where this member keeps its context, detector and alert
    /// state (`kafka-checkpoint.json`), saved at each commit with the
    /// offsets committed. At the next start it is resumed if the group's
    /// committed offsets are still the saved ones, and a file output is cut
    /// back to its length then, so a member restarted (even after kill -9)
    /// writes what it would have written without stopping. Otherwise
    /// (another member consumed its partitions meanwhile: use one member,
    /// or static membership with --kafka-config group.instance.id=NAME) it
    /// starts afresh and says why. One directory per member; not with
    /// --repartition-topic. Default: no state kept, every start afresh.
    #[arg(long, value_name = "DIR", env = "AZW_KAFKA_STATE_DIR")]
    pub kafka_state_dir: Option<PathBuf>,

    /// Kafka: an extra librdkafka setting for the consumer and a Kafka
    /// output, KEY=VALUE, repeatable (security.protocol=ssl,
    /// session.timeout.ms=10000, auto.offset.reset=latest, ...).
    #[arg(long = "kafka-config", value_parser = key_value)]
    pub kafka_config: Vec<(String, String)>,

    /// Modules to score: log types with a model (CONN, DNS, FILES, X509, a
    /// site's own ...) or ALL (every model in --model-dir), comma-separated
    /// or repeated, any case.
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "ALL", env = "AZW_MODULES")]
    pub modules: Vec<String>,

    /// Where the models are (`<module>.model.json`).
    #[arg(long, default_value = "models", env = "AZW_MODEL_DIR")]
    pub model_dir: PathBuf,

    /// Where the scored records go: a file, `-` for standard output, or
    /// kafka://HOST:PORT/TOPIC (keyed by `uid`, so one connection's records
    /// stay in order). Exactly-once across restarts of the live file mode
    /// needs a file; the others are at-least-once.
    #[arg(long, default_value = "-", env = "AZW_OUTPUT")]
    pub output: OutputSpec,

    /// How each scored record and detection is written:
    ///   json         one object per line, Zeek's key names (default)
    ///   tsv          a Zeek log (`#path azw_scores`) that Zeek tools read
    ///   csv          the same columns, with a header row
    ///   ecs          Elastic Common Schema documents (event.kind alert for
    ///                anomalies and detections, event otherwise)
    ///   eve          Suricata EVE `alert` events
    ///   notice       a Zeek notice.log (TSV), note AutoZeekWatch::Anomaly,
    ///                AutoZeekWatch::Beacon, ...
    ///   notice-json  the same notices as JSON lines
    /// eve, notice and notice-json are alert formats: only anomalies and
    /// detections are written. Kafka outputs take the JSON ones.
    #[arg(long, default_value = "json", value_parser = parse_format, env = "AZW_FORMAT", verbatim_doc_comment)]
    pub format: RecordFormat,

    /// The sensor's name, in every output line (ECS observer.name, EVE
    /// host, notice peer_descr); the host name by default.
    #[arg(long, value_name = "NAME", value_parser = sensor_name, env = "AZW_SENSOR")]
    pub sensor: Option<String>,

    /// The fields of each log type every record carries as context:
    /// `default` (conn service, duration, orig_bytes, resp_bytes,
    /// conn_state, history; dns query, qtype_name, rcode_name, answers;
    /// http method, host, uri, status_code, user_agent; ssl version,
    /// server_name, ja3, ja3s, ja4, ja4s; ssh client, server,
    /// auth_success; files fuid, source, mime_type, filename, conn_uids,
    /// tx_hosts, rx_hosts, sha1), `none`, or a list of module.field
    /// (`default,http.referrer` adds to the defaults). Values are cut at
    /// 512 characters and 16 list elements. HTTP's trans_depth and DNS's
    /// trans_id are always written.
    #[arg(long, value_name = "FIELDS", default_value = "default", value_parser = ContextFields::parse, env = "AZW_CONTEXT_FIELDS")]
    pub context_fields: ContextFields,

    /// The Community ID seed (0 unless every tool of the site uses
    /// another); the same flow gets the same ID in Zeek, Suricata and here
    /// only with the same seed.
    #[arg(
        long,
        value_name = "SEED",
        default_value_t = 0,
        env = "AZW_COMMUNITY_ID_SEED"
    )]
    pub community_id_seed: u16,

    /// Where live mode keeps its checkpoint (`checkpoint.json`).
    #[arg(long, default_value = "azw-state", env = "AZW_STATE_DIR")]
    pub state_dir: PathBuf,

    /// Write only the records flagged as anomalies (detections are
    /// always written).
    #[arg(long)]
    pub only_anomalies: bool,

    /// Flag records above this score instead of the model's threshold,
    /// without retraining: a score for every model (0.25), a share of
    /// normal traffic to flag, placed by each model's calibration
    /// (rate:1e-4), or per log type (conn=0.25,dns=rate:1e-5). The
    /// model's threshold is the default.
    #[arg(long, value_name = "SPEC", value_parser = parse_threshold, env = "AZW_THRESHOLD")]
    pub threshold: Option<ThresholdOverride>,

    /// Flag only anomalies, detections and alerts of this severity or
    /// above: low (everything above the threshold, the default), medium
    /// (a score normal traffic reaches once in 10,000 records or less),
    /// high (once in 100,000), critical (once in a million). Records carry
    /// their `severity` and `p_normal` (that probability, from the
    /// model's held-out scores and their tail fit).
    #[arg(long, value_name = "LEVEL", default_value = "low", value_parser = parse_severity, env = "AZW_MIN_SEVERITY")]
    pub min_severity: Severity,

    /// Fold anomalies and detections into alerts per host and write them
    /// here: a file, `-`, kafka://HOST:PORT/TOPIC, or `output` (into
    /// --output, beside the records). An alert gathers a host's flagged
    /// records and detections (all log types; an inbound anomaly counts
    /// for the local host it reached) until --alert-quiet seconds pass
    /// without one; it is written when opened, updated (same `alert` id)
    /// when its severity rises or its count doubles, and closed. Off by
    /// default. In --format json (or tsv/csv: alerts are then JSON lines
    /// in their own file), ecs, eve, notice or notice-json.
    #[arg(long, value_name = "TARGET", value_parser = parse_alerts, env = "AZW_ALERTS")]
    pub alerts: Option<AlertTarget>,

    /// An alert closes after this many seconds (event time) without a new
    /// flagged record or detection of its host (default 12 h: an incident
    /// per host and day, not per burst); one open for a week closes and
    /// its host's next item opens another.
    #[arg(long, value_name = "SECONDS", default_value_t = 43_200, value_parser = clap::value_parser!(u32).range(1..), env = "AZW_ALERT_QUIET")]
    pub alert_quiet: u32,

    /// At most this many new alerts are written per minute of event time
    /// while new hosts flood in (0: no limit). Past it, a new alert that
    /// is one flagged record of a host not known to be local (a spoofed
    /// or scanning source) is held back: still folded, and written once a
    /// second item or a detection of it comes. A local host's alert, or
    /// one with a detection, is never held back. The log says how many
    /// each stormy minute held back.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 100,
        env = "AZW_ALERTS_PER_MINUTE"
    )]
    pub alerts_per_minute: u32,

    /// Flagged records are put in time order across log types before they
    /// fold into alerts, waiting this many seconds (event time) for the
    /// slower log types; alerts are the same in replay, live and Kafka when
    /// no log type lags more (Kafka: set it to the consumers' skew).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        env = "AZW_ALERT_LATENESS"
    )]
    pub alert_lateness: u32,

    /// Allowlist: a TOML file of rules applied at scoring time, re-read
    /// within seconds when it changes (no restart, no reprocessing). Each
    /// `[[rule]]` names any of source, destination (address or CIDR), port,
    /// domain (and its subdomains), module, feature (an anomaly explained by
    /// that column), detector (beacon, port_scan, ...), an optional expires
    /// (2027-01-31) and comment, and an action: "drop" (not scored, written
    /// or watched) or "no_alert" (written, but not an anomaly, and matching
    /// detections not written). Counted in the stats line and /metrics.
    /// See the README's "Allowlists".
    #[arg(long, value_name = "FILE")]
    pub allowlist: Option<PathBuf>,

    /// Replay and Kafka: threads that score (reading has one more, writing
    /// is on the main thread); default: one per processor. The output is
    /// the same, byte for byte, whatever the number (an --allowlist
    /// included). On a machine shared with a Kafka broker or other work,
    /// fewer threads than processors can be faster.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024), env = "AZW_THREADS")]
    pub threads: Option<u16>,

    /// The detectors that watch behaviour over time and write detections
    /// beside the scored records: all (default), none, or a list of
    /// beacon, long_connection, host_sweep, port_scan (scan: both),
    /// dns_tunnel, nxdomain_burst, large_upload. Their settings and the
    /// entities normal at this site come from the models (`azw-train
    /// --inspect` shows them).
    #[arg(long, default_value = "all", value_parser = DetectOptions::parse, env = "AZW_DETECTORS")]
    pub detectors: DetectOptions,

    /// On a live start without a checkpoint, the detectors first read this
    /// many hours of the rotated history (by the rotation times in the
    /// file names), so a beacon that began yesterday is known at once; 0
    /// starts them empty.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(0..=8760), env = "AZW_WARM_HOURS")]
    pub warm_hours: u32,

    /// Report scans by sources outside the site's networks too (by default
    /// only local sources: scans from the internet are an exposed
    /// sensor's weather).
    #[arg(long, env = "AZW_SCAN_EXTERNAL")]
    pub scan_external: bool,

    /// A pair is a beacon at this RITA score or above (0 to 1; the model's,
    /// 0.9 by default).
    #[arg(long, value_name = "SCORE", value_parser = unit_interval, env = "AZW_BEACON_THRESHOLD")]
    pub beacon_threshold: Option<f64>,

    /// A pair is a long connection when its connections add up to this
    /// many hours within a day (the model's, 4 by default). With CONN_LONG
    /// or OPEN_CONN in --modules, the reports of open connections of the
    /// zeek-long-connections package or of RITA's zeek-open-connections
    /// count too, each connection once, so one is found while still open.
    #[arg(long, value_name = "HOURS", value_parser = positive_hours, env = "AZW_LONG_CONNECTION_HOURS")]
    pub long_connection_hours: Option<f64>,

    /// The window of the scan detectors, in seconds (the model's, 300).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..), env = "AZW_SCAN_WINDOW")]
    pub scan_window: Option<u32>,

    /// Hosts tried without answer within the window that make a sweep
    /// (the model's, 64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..100_000), env = "AZW_SWEEP_HOSTS")]
    pub sweep_hosts: Option<u64>,

    /// Ports of one host tried without answer within the window that make
    /// a port scan (the model's, 64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..=65_536), env = "AZW_SCAN_PORTS")]
    pub scan_ports: Option<u64>,

    /// Distinct names under one registered domain within an hour that make
    /// a DNS tunnel (the model's, 200).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..1_000_000), env = "AZW_DNS_TUNNEL_NAMES")]
    pub dns_tunnel_names: Option<u64>,

    /// NXDOMAIN answers to one host within 5 minutes that make a burst (the
    /// model's, 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(2..), env = "AZW_NXDOMAIN_ANSWERS")]
    pub nxdomain_answers: Option<u64>,

    /// A local host sending one outside host this many gigabytes within a
    /// day (at least twice what it received) is a large upload (the
    /// model's, 1 by default; 0.5 is 500 MB).
    #[arg(long, value_name = "GB", value_parser = positive_gigabytes, env = "AZW_UPLOAD_GB")]
    pub upload_gb: Option<f64>,

    /// How often an idle module checks its file, in milliseconds (file
    /// events wake it sooner).
    #[arg(long, default_value_t = 250)]
    pub poll_ms: u64,

    /// How often the output is synced and the checkpoint (or the Kafka
    /// offsets) written, in milliseconds; less often while checkpoints are
    /// costly (a large context and detector state): each waits at least 20
    /// times as long as the last took, at most a minute, and, following
    /// logs into a file, see --checkpoint-mb-per-hour.
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_ms: u64,

    /// Following logs into files (the output and any --alerts file), the
    /// checkpoints write at most about this many megabytes an hour: after
    /// one of B MB the next waits B / MB-per-hour hours, at most one hour
    /// (at 1,024: a 150 MB state every 9 minutes, 3 MB every 10 s, up to
    /// 284 KB every second, as --checkpoint-ms 1000 says).
    /// A busy sensor's state rewritten every minute would wear out an SSD
    /// (375 GB a day for 260 MB). The cost is a crash's: the records since the last
    /// checkpoint are scored again on restart, and the output is cut back,
    /// so nothing is lost or written twice. 0: no budget. Standard output,
    /// Kafka outputs and the Kafka source, which cannot be cut back, keep
    /// the time rule alone.
    #[arg(long, value_name = "MB", default_value_t = 1024.0, value_parser = write_budget, env = "AZW_CHECKPOINT_MB_PER_HOUR")]
    pub checkpoint_mb_per_hour: f64,

    /// How often each module's counters are logged, in seconds.
    #[arg(long, default_value_t = 60)]
    pub stats_secs: u64,

    /// Serve Prometheus metrics at http://ADDR/metrics (per module:
    /// lines read, scored, skipped, anomalies, records written, bytes
    /// behind the live file, model threshold and age, reloads and
    /// refusals; the last checkpoint's age and size). Off by default; e.g.
    /// 127.0.0.1:9911.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Args {
    /// What every output line is stamped with.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            sensor: self.sensor.clone().unwrap_or_else(hostname),
        }
    }

    /// What each scored record carries besides its score.
    pub fn record_options(&self) -> RecordOptions {
        RecordOptions {
            context: self.context_fields.clone(),
            community_id_seed: self.community_id_seed,
            line_ids: self.format == RecordFormat::Ecs,
            judge: JudgeOptions {
                threshold: self.threshold.clone().unwrap_or_default(),
                min_severity: self.min_severity,
                levels: Levels::default(),
            },
        }
    }

    /// `--alerts` and its settings; alerts beside TSV or CSV records
    /// are refused (those columns are a record's).
    pub fn alert_setup(&self) -> Result<Option<AlertSetup>, String> {
        let Some(target) = &self.alerts else {
            return Ok(None);
        };
        // The records' own output named again: standard output is shared
        // (two writers would interleave), anything else is refused.
        let target = match target {
            AlertTarget::Own(spec) if same_output(spec, &self.output) => match spec {
                OutputSpec::Stdout => &AlertTarget::Output,
                _ => {
                    return Err(format!(
                        "--alerts {spec}: this is --output too; give `--alerts output` to write them there, beside the records, or another file"
                    ))
                }
            },
            t => t,
        };
        if *target == AlertTarget::Output && !self.format.takes_alerts() {
            return Err(format!(
                "--alerts output: a {} output has a record's columns; write the alerts to a file of their own (--alerts alerts.json)",
                self.format.name()
            ));
        }
        Ok(Some(AlertSetup {
            target: target.clone(),
            opts: AlertOptions {
                quiet: f64::from(self.alert_quiet),
                lateness: f64::from(self.alert_lateness),
                min_severity: self.min_severity,
                max_new_per_minute: self.alerts_per_minute,
                ..AlertOptions::default()
            },
        }))
    }

    pub fn detect_options(&self) -> DetectOptions {
        DetectOptions {
            scan_external: self.scan_external,
            overrides: Overrides {
                beacon_threshold: self.beacon_threshold,
                long_connection_seconds: self.long_connection_hours.map(|h| h * 3600.0),
                scan_window_seconds: self.scan_window,
                sweep_hosts: self.sweep_hosts.map(|n| n as usize),
                scan_ports: self.scan_ports.map(|n| n as usize),
                dns_tunnel_names: self.dns_tunnel_names.map(|n| n as usize),
                nxdomain_answers: self.nxdomain_answers,
                upload_bytes: self.upload_gb.map(|gb| gb * 1e9),
            },
            ..self.detectors.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    File,
    Kafka,
}

pub fn parse_format(s: &str) -> Result<RecordFormat, String> {
    s.parse()
}

/// Whether two outputs are one: equal, or files at one absolute path
/// (`./out.json` and `out.json`).
fn same_output(a: &OutputSpec, b: &OutputSpec) -> bool {
    match (a.file(), b.file()) {
        (Some(x), Some(y)) => {
            let abs = |p: &std::path::Path| {
                std::fs::canonicalize(p)
                    .or_else(|_| std::path::absolute(p))
                    .unwrap_or_else(|_| p.to_owned())
            };
            abs(x) == abs(y)
        }
        _ => a == b,
    }
}

fn parse_threshold(s: &str) -> Result<ThresholdOverride, String> {
    s.parse()
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
}

fn parse_alerts(s: &str) -> Result<AlertTarget, String> {
    s.parse()
}

pub fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}`: expected KEY=VALUE")),
    }
}

/// A value in [0, 1].
fn unit_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}`: give a number from 0 to 1")),
    }
}

/// A positive, finite number of hours.
fn positive_hours(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 24.0 * 365.0 => Ok(v),
        _ => Err(format!("`{s}`: give a positive number of hours")),
    }
}

/// `--checkpoint-mb-per-hour`: 0 (no budget), or 0.001 to 1,000,000 MB.
fn write_budget(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v == 0.0 || (v.is_finite() && (0.001..=1e6).contains(&v)) => Ok(v),
        _ => Err(format!(
            "`{s}`: give megabytes an hour from 0.001 to 1000000, or 0 for no budget"
        )),
    }
}

/// Gigabytes, 1 MB to 1 PB (the largest byte count a record is taken at).
fn positive_gigabytes(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.001..=1e6).contains(&v) => Ok(v),
        _ => Err(format!(
            "`{s}`: give a number of gigabytes from 0.001 (1 MB) to 1000000 (1 PB)"
        )),
    }
}

/// A sensor name: printable text, at most 255 bytes (it is written into
/// every line of every format).
fn sensor_name(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 255 || s.chars().any(autozeekwatch::escape::is_hostile) {
        return Err(format!(
            "`{}`: a sensor name is 1 to 255 bytes of printable text",
            autozeekwatch::escape::terminal(s)
        ));
    }
    Ok(s.to_owned())
}

/// This machine's host name (the default sensor name), or `unknown`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at
    // most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    match std::str::from_utf8(&buf[..end]) {
        Ok(name) if rc == 0 && sensor_name(name).is_ok() => name.to_owned(),
        _ => "unknown".into(),
    }
}
