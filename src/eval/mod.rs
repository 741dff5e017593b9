//! Measuring detection on labeled Zeek logs (`azw-eval`).
//!
//! - [`labels`]: reads labeled logs (Stratosphere's `label`/`detailedlabel`
//!   columns, IoT-23's joined last column) and labels files; the label
//!   columns are taken out of the rows before anything else sees them.
//! - [`metrics`]: ROC-AUC, average precision, counts at the model's
//!   threshold, recall within false-positive budgets, recall per detailed
//!   label.
//! - [`plot`]: the curves and score distributions as an SVG.
//!
//! The default protocol, the same as `shared/tools/make_eval_set.py`: the
//! rows of the labeled logs are ordered by `ts`; the first half (in rows,
//! background rows included) is history and the rest is live traffic. The
//! model trains on the benign rows of the history only, with
//! [`crate::train::train_module`] as `azw-train` does, and every benign or
//! malicious row of the live part is scored. Rows are grouped by `uid`: an
//! item's score is the highest of its records, and it is malicious if any
//! of its rows is.

pub mod hosts;
pub mod labels;
pub mod metrics;
pub mod plot;

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::features::Encoder;
use crate::log_kind::LogKind;
use crate::model::Model;
use crate::pipeline::{replay, Lane, LaneOptions, RunError, TopAnomalies};
use crate::score::{ScoredRecord, Scorer};
use crate::sink::{Sink, SinkError};
use crate::train::{self, TrainError, TrainOptions};
use crate::zeek::layout::LogFile;
use labels::{Class, LabeledLog};
use metrics::{Metrics, Scored};

/// Ground truth by uid: class and detailed label.
pub type Truth = HashMap<String, (Class, String)>;

/// Which rows of which logs: `(log index, row index)`.
pub type RowRefs = Vec<(usize, usize)>;

/// The default protocol's split: rows ordered by `ts` (stable, so rows
/// with equal `ts` keep their order); the first `train_share` of all rows is
/// history, of which the benign rows train; every labeled row of the rest
/// is tested.
pub fn split_by_time(logs: &[LabeledLog], train_share: f64) -> (RowRefs, RowRefs) {
    let mut all: RowRefs = logs
        .iter()
        .enumerate()
        .flat_map(|(l, log)| (0..log.rows.len()).map(move |r| (l, r)))
        .collect();
    all.sort_by(|a, b| logs[a.0].rows[a.1].ts.total_cmp(&logs[b.0].rows[b.1].ts));
    let cut = ((all.len() as f64) * train_share).floor() as usize;
    let cut = cut.min(all.len());
    let row = |&(l, r): &(usize, usize)| &logs[l].rows[r];
    let train = all[..cut]
        .iter()
        .copied()
        .filter(|x| row(x).class == Some(Class::Benign))
        .collect();
    let test = all[cut..]
        .iter()
        .copied()
        .filter(|x| row(x).class.is_some())
        .collect();
    (train, test)
}

/// Writes rows as a plain Zeek TSV log without label columns, repeating the
/// header whenever the rows' header changes.
pub fn write_rows(
    path: &Path,
    logs: &[LabeledLog],
    rows: &[(usize, usize)],
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut w = BufWriter::new(std::fs::File::create(path)?);
    let mut current: Option<(usize, usize)> = None;
    for &(l, r) in rows {
        let row = &logs[l].rows[r];
        if current != Some((l, row.header)) {
            w.write_all(logs[l].headers[row.header].to_tsv().as_bytes())?;
            current = Some((l, row.header));
        }
        w.write_all(row.line.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.write_all(b"#close\t2020-01-01-23-59-59\n")?;
    w.flush()
}

/// The ground truth of rows, by uid (rows without a uid cannot be joined to
/// scores and are counted apart).
pub fn truth_of(logs: &[LabeledLog], rows: &[(usize, usize)]) -> (Truth, usize) {
    let mut truth = Truth::new();
    let mut no_uid = 0;
    for &(l, r) in rows {
        let row = &logs[l].rows[r];
        match (&row.uid, row.class) {
            (Some(uid), Some(class)) => {
                labels::merge(&mut truth, uid.clone(), class, row.detail.clone())
            }
            (None, Some(_)) => no_uid += 1,
            _ => {}
        }
    }
    (truth, no_uid)
}

/// Trains a module's model on the given files, like `azw-train`.
pub fn train(
    module: LogKind,
    files: &[PathBuf],
    opts: &TrainOptions,
    bar: &dyn crate::train::Progress,
) -> Result<Model, TrainError> {
    let files: Vec<LogFile> = files
        .iter()
        .map(|p| LogFile {
            path: p.clone(),
            date: None,
            interval: None,
        })
        .collect();
    // The site, as azw-train learns it: from the conn history's marks.
    let mut opts = opts.clone();
    if module == LogKind::CONN {
        train::learn_site_from(&paths_of(&files), &mut opts);
    }
    train::train_module(module, &files, &opts, bar)
}

fn paths_of(files: &[LogFile]) -> Vec<PathBuf> {
    files.iter().map(|f| f.path.clone()).collect()
}

/// Scores of a replay, by uid (the highest of a uid's records).
#[derive(Debug, Clone, Default)]
pub struct UidScores {
    pub scores: HashMap<String, f64>,
    /// Each uid's alert host ([`crate::alert::Item::of_record`]'s rule).
    pub hosts: HashMap<String, std::net::IpAddr>,
    /// The closed alerts; `None` when the scores carried none (alerts
    /// were not asked for).
    pub alerts: Option<Vec<crate::alert::Alert>>,
    pub records: u64,
    pub malformed: u64,
    pub seconds: f64,
    pub threshold: f64,
}

/// Scores the records of `files` with a model, through the same lane and
/// file loop as `azw-infer --replay`, keeping each uid's highest score.
pub fn score_files(
    module: LogKind,
    model: Model,
    encoder: Encoder,
    files: &[PathBuf],
) -> Result<UidScores, RunError> {
    debug_assert_eq!(model.module, module);
    let started = Instant::now();
    let threshold = model.threshold.value;
    // Labeled attacks flag far more than normal traffic on purpose: no
    // warning that the model no longer fits.
    let mut lane = Lane::new(Scorer::new(model, encoder), &LaneOptions::default()).without_drift();
    let mut sink = UidMax::default();
    let mut top = TopAnomalies::new(0);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    // Every alert counts in the evaluation: the flood limit decides what
    // an analyst is shown, not what was found.
    let alerts = crate::alert::AlertOptions {
        max_new_per_minute: 0,
        ..crate::alert::AlertOptions::default()
    };
    let mut emitter =
        crate::pipeline::Emitter::records_only().with_alerts(alerts, &[module], true, None);
    for (path, why) in replay::score_files(
        files,
        &mut lane,
        &mut emitter,
        &mut sink,
        &mut top,
        &stop,
        crate::pipeline::parallel::default_threads(),
    )? {
        tracing::warn!("{}: {why}", path.display());
    }
    emitter.finish(&mut sink)?;
    let stats = lane.stats();
    Ok(UidScores {
        scores: sink.scores,
        hosts: sink.hosts,
        alerts: Some(sink.alerts),
        records: stats.scored,
        malformed: stats.skipped,
        seconds: started.elapsed().as_secs_f64(),
        threshold,
    })
}

/// A sink that keeps the highest score of each uid, its host, and the
/// closed alerts.
#[derive(Default)]
struct UidMax {
    scores: HashMap<String, f64>,
    hosts: HashMap<String, std::net::IpAddr>,
    alerts: Vec<crate::alert::Alert>,
}

impl Sink for UidMax {
    /// Evaluation measures records; it runs no detectors.
    fn write_detection(&mut self, _: &crate::detect::Detection) -> Result<(), SinkError> {
        Ok(())
    }
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError> {
        if let Some(uid) = &record.uid {
            let e = self
                .scores
                .entry(uid.to_string())
                .or_insert(f64::NEG_INFINITY);
            *e = e.max(record.score);
            if let Some((h, _, _)) =
                crate::alert::host_of(record.orig_h, record.resp_h, record.direction.as_deref())
            {
                self.hosts.entry(uid.to_string()).or_insert(h);
            }
        }
        Ok(())
    }
    fn write_alert(&mut self, alert: &crate::alert::Alert) -> Result<(), SinkError> {
        if alert.state == crate::alert::State::Closed {
            self.alerts.push(alert.clone());
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Why a scores file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScoresError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Scores from an `azw-infer` output (JSON lines with `uid`, `score`,
/// `threshold`, `module`), for one module, by uid.
pub fn read_scores(path: &Path, module: LogKind) -> Result<UidScores, ScoresError> {
    use std::io::BufRead;
    let io = |source| ScoresError::Io {
        path: path.to_owned(),
        source,
    };
    let bad = |line: usize, reason: &str| ScoresError::Line {
        path: path.to_owned(),
        line,
        reason: reason.to_owned(),
    };
    let reader = labels::open(path).map_err(io)?;
    let mut out = UidScores {
        threshold: f64::NAN,
        ..UidScores::default()
    };
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| bad(i + 1, "not a JSON line of scores"))?;
        // A detection (beacon, scan...) is about an entity, not a record:
        // its score and threshold are in the detector's unit.
        if v.get("detection").is_some() {
            continue;
        }
        // An alert is about a host; the closed ones are its final state.
        if v.get("alert").is_some() {
            let a: crate::alert::Alert =
                serde_json::from_value(v).map_err(|e| bad(i + 1, &format!("not an alert: {e}")))?;
            out.alerts.get_or_insert_with(Vec::new).push(a);
            continue;
        }
        let m = v
            .get("module")
            .and_then(|m| m.as_str())
            .and_then(|m| m.parse::<LogKind>().ok());
        if m.is_some_and(|m| m != module) {
            continue;
        }
        let score = v
            .get("score")
            .and_then(|s| s.as_f64())
            .ok_or_else(|| bad(i + 1, "no numeric `score`"))?;
        out.records += 1;
        if let Some(t) = v.get("threshold").and_then(|t| t.as_f64()) {
            out.threshold = t;
        }
        if let Some(uid) = v.get("uid").and_then(|u| u.as_str()) {
            let e = out
                .scores
                .entry(uid.to_owned())
                .or_insert(f64::NEG_INFINITY);
            *e = e.max(score);
            let addr = |k: &str| {
                v.get(k)
                    .and_then(|a| a.as_str())
                    .and_then(|a| a.parse().ok())
            };
            let direction = v.get("direction").and_then(|d| d.as_str());
            if let Some((h, _, _)) =
                crate::alert::host_of(addr("id.orig_h"), addr("id.resp_h"), direction)
            {
                out.hosts.entry(uid.to_owned()).or_insert(h);
            }
        }
    }
    out.alerts = out.alerts.map(latest_states);
    Ok(out)
}

/// Each alert's last state (a live output ends with alerts still open:
/// their latest update is what they are).
pub fn latest_states(alerts: Vec<crate::alert::Alert>) -> Vec<crate::alert::Alert> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut kept: Vec<crate::alert::Alert> = Vec::new();
    for a in alerts {
        match by_id.get(&a.alert) {
            Some(&i) => kept[i] = a,
            None => {
                by_id.insert(a.alert.clone(), kept.len());
                kept.push(a);
            }
        }
    }
    kept
}

/// The alerts of an alerts file (`azw-infer --alerts FILE`, JSON
/// lines), each in its last state; other lines are refused with their
/// number.
pub fn read_alerts(path: &Path) -> Result<Vec<crate::alert::Alert>, ScoresError> {
    use std::io::BufRead;
    let io = |source| ScoresError::Io {
        path: path.to_owned(),
        source,
    };
    let mut alerts = Vec::new();
    for (i, line) in labels::open(path).map_err(io)?.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let a: crate::alert::Alert =
            serde_json::from_str(&line).map_err(|e| ScoresError::Line {
                path: path.to_owned(),
                line: i + 1,
                reason: format!("not an alert of azw-infer --alerts (JSON): {e}"),
            })?;
        alerts.push(a);
    }
    Ok(latest_states(alerts))
}

/// Joins scores to the truth: the scored items, and how many labeled uids
/// had no score (never scored: a line the reader skipped, or missing from
/// the scores file).
pub fn join(scores: &HashMap<String, f64>, truth: &Truth) -> (Vec<Scored>, usize) {
    let mut items = Vec::with_capacity(truth.len());
    let mut unscored = 0;
    let mut uids: Vec<&String> = truth.keys().collect();
    uids.sort();
    for uid in uids {
        let (class, detail) = &truth[uid];
        match scores.get(uid) {
            Some(&score) => items.push(Scored::new(score, class.is_malicious(), detail.clone())),
            None => unscored += 1,
        }
    }
    (items, unscored)
}

/// The model an evaluation trained, in brief.
#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub threshold: f64,
    pub threshold_method: String,
    /// The false-positive rate the threshold was set for, the one the
    /// model expects on normal traffic, and how many normal scores that
    /// rests on: shown beside the rate measured on the benign test uids.
    pub target_fpr: f64,
    pub expected_fpr: Option<f64>,
    pub threshold_scores: u64,
    pub trained_records: u64,
    pub held_out_records: u64,
    pub epochs: usize,
    pub learning_rate: f64,
    pub seed: u32,
    pub train_seconds: f64,
}

impl ModelSummary {
    pub fn of(model: &Model) -> ModelSummary {
        let p = model.kitnet.params();
        ModelSummary {
            threshold: model.threshold.value,
            threshold_method: model.threshold.method.clone(),
            target_fpr: model.threshold.target_fpr,
            expected_fpr: model.threshold.expected_fpr,
            threshold_scores: model.threshold.scores,
            trained_records: model.training.trained_records,
            held_out_records: model.training.held_out_records,
            epochs: model.training.epochs,
            learning_rate: p.learning_rate,
            seed: p.seed,
            train_seconds: model.training.seconds,
        }
    }
}

/// What `azw-eval` reports for one module.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub module: LogKind,
    /// How train and test were chosen, in words.
    pub protocol: String,
    pub inputs: Vec<String>,
    /// Rows given to training (benign history).
    pub train_rows: u64,
    /// Labeled test rows, and the uids they make.
    pub test_rows: u64,
    pub test_uids: usize,
    /// Test records scored, and their rate.
    pub scored_records: u64,
    pub records_per_second: Option<f64>,
    /// Labeled uids that got no score, and labeled rows without a uid:
    /// neither is in the metrics.
    pub unscored_uids: usize,
    pub rows_without_uid: usize,
    pub model: Option<ModelSummary>,
    pub metrics: Metrics,
    /// Alert-level figures, when there were alerts to measure.
    pub hosts: Option<hosts::HostLevel>,
}

fn pct(v: f64) -> String {
    format!("{:.2}%", v * 100.0)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

impl Report {
    /// The report as a table for people.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let m = &self.metrics;
        let t = &m.at_threshold;
        let mut s = String::new();
        let _ = writeln!(s, "{} evaluation", self.module);
        let _ = writeln!(s, "  protocol:        {}", self.protocol);
        let _ = writeln!(s, "  inputs:          {}", self.inputs.join(" "));
        let _ = writeln!(
            s,
            "  train:           {} benign rows{}",
            self.train_rows,
            self.model.as_ref().map_or(String::new(), |x| format!(
                " ({} trained on, {} held out for the threshold; {} epochs, lr {}, seed {}, {:.1} s)",
                x.trained_records, x.held_out_records, x.epochs, x.learning_rate, x.seed, x.train_seconds
            ))
        );
        let _ = writeln!(
            s,
            "  test:            {} labeled rows, {} uids: {} malicious, {} benign{}",
            self.test_rows,
            self.test_uids,
            m.malicious,
            m.benign,
            self.records_per_second.map_or(String::new(), |r| format!(
                " ({} records scored, {r:.0} records/s)",
                self.scored_records
            ))
        );
        if self.unscored_uids > 0 || self.rows_without_uid > 0 {
            let _ = writeln!(
                s,
                "  not measured:    {} labeled uids without a score, {} labeled rows without a uid",
                self.unscored_uids, self.rows_without_uid
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "  {:<34} {:>10}", "metric (per uid)", "value");
        let _ = writeln!(s, "  {:<34} {:>10.4}", "ROC-AUC", m.roc_auc);
        let _ = writeln!(
            s,
            "  {:<34} {:>10.4}",
            "average precision", m.average_precision
        );
        let _ = writeln!(s, "  {:<34} {:>10.6}", "model threshold", t.threshold);
        let _ = writeln!(s, "  {:<34} {:>10}", "  precision", opt(t.precision));
        let _ = writeln!(s, "  {:<34} {:>10.4}", "  recall", t.recall);
        let _ = writeln!(s, "  {:<34} {:>10}", "  F1", opt(t.f1));
        let _ = writeln!(
            s,
            "  {:<34} {:>10}",
            "  false-positive rate",
            pct(t.false_positive_rate)
        );
        if let Some(x) = &self.model {
            let _ = writeln!(
                s,
                "  {:<34} {:>10}  (target {}, from {} normal scores; measured/expected {})",
                "  expected by the model",
                x.expected_fpr.map_or("unknown".into(), pct),
                pct(x.target_fpr),
                x.threshold_scores,
                x.expected_fpr
                    .filter(|e| *e > 0.0)
                    .map_or("n/a".into(), |e| format!(
                        "{:.2}x",
                        t.false_positive_rate / e
                    ))
            );
        }
        let _ = writeln!(
            s,
            "  {:<34} {:>10}",
            "  flagged (TP / FP)",
            format!("{} / {}", t.true_positives, t.false_positives)
        );
        for r in &m.recall_at_fpr {
            let _ = writeln!(
                s,
                "  {:<34} {:>10.4}",
                format!("recall at FPR <= {}", pct(r.max_fpr)),
                r.recall
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<10} {:<36} {:>8} {:>8} {:>9}",
            "class", "detailed label", "uids", "flagged", "share"
        );
        for d in &m.by_detail {
            let _ = writeln!(
                s,
                "  {:<10} {:<36} {:>8} {:>8} {:>9}",
                if d.malicious { "malicious" } else { "benign" },
                // A dataset's own text: escaped, as every field from a log.
                if d.detail.is_empty() {
                    "(none)".into()
                } else {
                    crate::escape::terminal(&d.detail)
                },
                d.count,
                d.flagged,
                pct(d.share)
            );
        }
        let _ = writeln!(s, "  (share: recall for malicious labels, false-positive rate for benign ones, at the model threshold)");
        if let Some(h) = &self.hosts {
            let _ = writeln!(s);
            s.push_str(&h.to_text());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{LocalNets, VocabLearner};
    use crate::zeek::LogReader;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/eval")
            .join(name)
    }

    fn encode_all(path: &Path, encoder: &Encoder) -> Vec<Vec<f64>> {
        let mut context = encoder.context();
        LogReader::open(path, Some("conn"))
            .unwrap()
            .map(|r| {
                let r = r.unwrap();
                let mut v = encoder.vector();
                encoder.encode(&r, &mut context, &mut v);
                v
            })
            .collect()
    }

    /// The feature encoder reads only the fields its table names, so the
    /// label columns the Zeek reader keeps as extra fields never reach a
    /// vector: the labeled file, the same rows with their labels flipped,
    /// and the rows with the label columns taken out all encode the same.
    #[test]
    fn label_columns_never_reach_the_features() {
        for name in [
            "ctu4-conn.log.labeled",
            "ctu4-iot23-layout.conn.log.labeled",
        ] {
            let src = fixture(name);
            let log = LabeledLog::read(&src).unwrap();
            let (b, m, _) = log.counts();
            assert!(b > 0 && m > 0, "{name}: both classes");
            let dir = tempfile::tempdir().unwrap();
            // Stripped: every row, label columns out.
            let all: RowRefs = (0..log.rows.len()).map(|r| (0, r)).collect();
            let stripped = dir.path().join("conn.log");
            write_rows(&stripped, std::slice::from_ref(&log), &all).unwrap();
            // Flipped: the labeled file with every label word swapped.
            let text = std::fs::read_to_string(&src).unwrap();
            let flipped_text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with('#') {
                        l.to_owned()
                    } else if l.contains("Malicious") {
                        l.replace("Malicious", "Benign")
                    } else {
                        l.replace("Benign", "Malicious")
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            assert_ne!(flipped_text, text);
            let flipped = dir.path().join("flipped.conn.log");
            std::fs::write(&flipped, flipped_text + "\n").unwrap();

            let mut learner = VocabLearner::new(crate::tables::built_in(LogKind::CONN));
            for r in LogReader::open(&stripped, Some("conn")).unwrap() {
                learner.observe(&r.unwrap());
            }
            let encoder = Encoder::new(learner.finish(LocalNets::default())).unwrap();
            let a = encode_all(&src, &encoder);
            let s = encode_all(&stripped, &encoder);
            let f = encode_all(&flipped, &encoder);
            assert_eq!(
                a.len(),
                log.rows.len(),
                "{name}: the reader reads every labeled row"
            );
            assert_eq!(a, s, "{name}: with and without label columns");
            assert_eq!(a, f, "{name}: labels flipped");
            // And the labeled file does carry its labels as extra fields, so
            // the equality above is not vacuous.
            let first = LogReader::open(&src, Some("conn"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            assert!(first.fields().any(|(k, _)| k.contains("label")), "{name}");
            assert!(!encoder.columns().iter().any(|c| c.contains("label")));
        }
    }

    #[test]
    fn time_split_trains_on_early_benign_rows_only() {
        let log = LabeledLog::read(&fixture("ctu4-conn.log.labeled")).unwrap();
        let logs = [log];
        let (train, test) = split_by_time(&logs, 0.5);
        let rows = &logs[0].rows;
        let n = rows.len();
        let max_train_ts = train
            .iter()
            .map(|&(_, r)| rows[r].ts)
            .fold(f64::MIN, f64::max);
        let min_test_ts = test
            .iter()
            .map(|&(_, r)| rows[r].ts)
            .fold(f64::MAX, f64::min);
        assert!(max_train_ts <= min_test_ts);
        assert!(train
            .iter()
            .all(|&(_, r)| rows[r].class == Some(Class::Benign)));
        assert!(test.iter().all(|&(_, r)| rows[r].class.is_some()));
        let labeled = rows.iter().filter(|r| r.class.is_some()).count();
        let early_benign = {
            let mut ts: Vec<f64> = rows.iter().map(|r| r.ts).collect();
            ts.sort_by(f64::total_cmp);
            let cut = ts[n / 2];
            rows.iter()
                .filter(|r| r.ts < cut && r.class == Some(Class::Benign))
                .count()
        };
        assert!(
            train.len() >= early_benign,
            "{} vs {early_benign}",
            train.len()
        );
        assert!(train.len() + test.len() <= labeled);
        let (truth, no_uid) = truth_of(&logs, &test);
        assert_eq!(no_uid, 0);
        assert!(truth.values().any(|(c, _)| c.is_malicious()));
    }

    #[test]
    fn detections_in_a_scores_file_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.json");
        std::fs::write(
            &path,
            concat!(
                r#"{"uid":"C1","module":"CONN","score":0.5,"threshold":0.25,"anomaly":true}"#,
                "\n",
                r#"{"ts":1.0,"detection":"beacon","module":"CONN","id.orig_h":"10.0.0.1","score":0.95,"threshold":0.9,"first_ts":0.0,"last_ts":1.0,"uids":["C1"],"evidence":{}}"#,
                "\n",
            ),
        )
        .unwrap();
        let s = read_scores(&path, LogKind::CONN).unwrap();
        assert_eq!((s.records, s.threshold), (1, 0.25));
        assert_eq!(s.scores["C1"], 0.5);
    }

    #[test]
    fn uid_scores_join_the_truth_and_count_the_missing() {
        let mut truth = Truth::new();
        truth.insert("a".into(), (Class::Malicious, "scan".into()));
        truth.insert("b".into(), (Class::Benign, String::new()));
        truth.insert("c".into(), (Class::Benign, String::new()));
        let scores: HashMap<String, f64> = [
            ("a".to_owned(), 2.0),
            ("b".to_owned(), 1.0),
            ("z".to_owned(), 9.0),
        ]
        .into();
        let (items, unscored) = join(&scores, &truth);
        assert_eq!(unscored, 1);
        assert_eq!(
            items,
            [Scored::new(2.0, true, "scan"), Scored::new(1.0, false, "")]
        );
    }
}
