//! The model file: one per module, versioned and self-describing.
//!
//! It is JSON, so a person can read it (`azw-train --inspect` prints the
//! summary) and a newer autozeekwatch can tell an old file from a broken
//! one. It holds everything scoring needs and nothing from the code: the
//! feature table and vocabularies it was trained with, the local networks,
//! the KitNET state, the threshold, and where the training data came from.
//!
//! Writing is atomic (temp file in the same folder, fsync, rename, fsync of
//! the folder): a nightly cron job killed mid-write leaves the old model in
//! place, and a running `azw-infer` never sees half a file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::features::{Encoder, FeatureSet};
use crate::kitnet::KitNet;
use crate::module::Module;

/// Written in every model file; a file without it is not ours.
pub const MAGIC: &str = "autozeekwatch-model";
/// Bumped when the file's meaning changes; older readers refuse newer files.
pub const FORMAT_VERSION: u32 = 1;

/// The file name of a module's model in a model folder.
pub fn file_name(module: Module) -> String {
    format!("{}.model.json", module.log_path())
}

/// The model of one module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub format_version: u32,
    /// The autozeekwatch version that trained it.
    pub crate_version: String,
    pub module: Module,
    /// When it was trained (RFC 3339, UTC).
    pub created: String,
    pub threshold: Threshold,
    pub training: TrainingInfo,
    /// Column names, in vector order (for people and for explanations).
    pub columns: Vec<String>,
    pub features: FeatureSet,
    pub kitnet: KitNet,
}

/// The score above which a record is flagged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub value: f64,
    /// How it was chosen, in words (`quantile 0.999 of 1,234 held-out
    /// training records`).
    pub method: String,
    /// The false-positive rate on normal traffic it was chosen for.
    pub target_fpr: f64,
}

/// Where the training data came from and what it looked like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    pub log_dir: String,
    pub files: Vec<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    /// `ts` of the first and last record read.
    pub first_ts: Option<f64>,
    pub last_ts: Option<f64>,
    /// Records read, of which trained on and held out for the threshold.
    pub records: u64,
    pub trained_records: u64,
    pub held_out_records: u64,
    /// Lines skipped as malformed, and files that failed (damaged, not logs).
    pub skipped_lines: u64,
    pub failed_files: Vec<String>,
    pub epochs: usize,
    pub feature_map_records: u64,
    /// Score quantiles of the held-out records: `(q, score)`.
    pub score_quantiles: Vec<(f64, f64)>,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{}: cannot read the model: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an autozeekwatch model, or damaged (truncated or edited): {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    #[error("{}: written by a newer autozeekwatch (model format {found}, this one reads up to {FORMAT_VERSION}); upgrade autozeekwatch or retrain with this version", path.display())]
    TooNew { path: PathBuf, found: u32 },
    #[error("{}: inconsistent model: {reason}", path.display())]
    Inconsistent { path: PathBuf, reason: String },
    #[error("{}: cannot write the model: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Just the fields that say what a file is, read before the rest so a newer
/// format is reported as such rather than as damage.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<u32>,
}

impl Model {
    /// Reads and checks a model file; the encoder is ready for scoring.
    pub fn load(path: &Path) -> Result<(Model, Encoder), ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        let corrupt = |reason: String| ModelError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let header: Header = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.format.as_deref() != Some(MAGIC) {
            return Err(corrupt(format!("no `\"format\": \"{MAGIC}\"` field")));
        }
        match header.format_version {
            Some(v) if v > FORMAT_VERSION => {
                return Err(ModelError::TooNew {
                    path: path.to_owned(),
                    found: v,
                })
            }
            Some(_) => {}
            None => return Err(corrupt("no format_version".into())),
        }
        let model: Model = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let encoder = model.check().map_err(|reason| ModelError::Inconsistent {
            path: path.to_owned(),
            reason,
        })?;
        Ok((model, encoder))
    }

    /// Builds the encoder and checks that the parts agree.
    pub fn check(&self) -> Result<Encoder, String> {
        if self.features.module != self.module {
            return Err(format!(
                "features are for {}, model for {}",
                self.features.module, self.module
            ));
        }
        let encoder = Encoder::new(self.features.clone()).map_err(|e| e.to_string())?;
        if encoder.columns() != self.columns.as_slice() {
            return Err("the column list does not match the feature table".into());
        }
        if self.kitnet.n_features() != encoder.len() {
            return Err(format!(
                "KitNET expects {} features, the feature table makes {}",
                self.kitnet.n_features(),
                encoder.len()
            ));
        }
        if !self.kitnet.is_trained() {
            return Err("KitNET is not trained".into());
        }
        if !self.threshold.value.is_finite() {
            return Err("the threshold is not a number".into());
        }
        Ok(encoder)
    }

    /// Writes the model atomically: a crash at any point leaves either the
    /// old file or the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let err = |source| ModelError::Write {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        {
            let mut w = BufWriter::new(tmp.as_file_mut());
            serde_json::to_writer_pretty(&mut w, self).map_err(|e| err(e.into()))?;
            w.write_all(b"\n").map_err(err)?;
            w.flush().map_err(err)?;
        }
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        // The rename itself must reach the disk too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A summary for people (`azw-train --inspect`).
    pub fn describe(&self) -> String {
        use std::fmt::Write as _;
        let t = &self.training;
        let mut s = String::new();
        let _ = writeln!(s, "module:          {}", self.module);
        let _ = writeln!(
            s,
            "model format:    {} (written by autozeekwatch {})",
            self.format_version, self.crate_version
        );
        let _ = writeln!(s, "trained:         {} in {:.1} s", self.created, t.seconds);
        let _ = writeln!(s, "log dir:         {}", t.log_dir);
        let _ = writeln!(
            s,
            "date range:      {} to {}",
            t.start_date.as_deref().unwrap_or("(first)"),
            t.end_date.as_deref().unwrap_or("(last)")
        );
        let _ = writeln!(s, "files:           {}", t.files.len());
        if let (Some(a), Some(b)) = (t.first_ts, t.last_ts) {
            let _ = writeln!(s, "record times:    {} to {}", fmt_ts(a), fmt_ts(b));
        }
        let _ = writeln!(
            s,
            "records:         {} read, {} trained on ({} epochs), {} held out for the threshold",
            t.records, t.trained_records, t.epochs, t.held_out_records
        );
        let _ = writeln!(
            s,
            "skipped:         {} malformed lines, {} failed files",
            t.skipped_lines,
            t.failed_files.len()
        );
        let p = self.kitnet.params();
        let map = self.kitnet.feature_map().unwrap_or(&[]);
        let _ = writeln!(
            s,
            "KitNET:          {:?} mode, {} features in {} autoencoders (max size {}), lr {}, hidden ratio {}, seed {}",
            p.mode,
            self.columns.len(),
            map.len(),
            p.max_autoencoder_size,
            p.learning_rate,
            p.hidden_ratio,
            p.seed
        );
        let _ = writeln!(
            s,
            "threshold:       {:.6} ({})",
            self.threshold.value, self.threshold.method
        );
        let quantiles: Vec<String> = t
            .score_quantiles
            .iter()
            .map(|(q, v)| format!("q{q}={v:.6}"))
            .collect();
        let _ = writeln!(s, "held-out scores: {}", quantiles.join(" "));
        let _ = writeln!(
            s,
            "local networks:  {}",
            self.features
                .local_nets
                .nets()
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let _ = writeln!(
            s,
            "features:        {} columns from {} fields",
            self.columns.len(),
            self.features.features.len()
        );
        for (name, vocab) in &self.features.vocabularies {
            let _ = writeln!(
                s,
                "  {name}: {} values learned: {}",
                vocab.values.len(),
                vocab.values.join(", ")
            );
        }
        s
    }
}

fn fmt_ts(ts: f64) -> String {
    // Relative captures start near 0: show those as seconds.
    if ts < 1e8 {
        return format!("{ts:.3} s");
    }
    chrono::DateTime::from_timestamp(ts as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| format!("{ts}"))
}
