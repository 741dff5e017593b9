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
//!
//! Reading trusts nothing: the file is read through [`safe_fs::read_capped`]
//! (a FIFO or device is refused, a file over [`MAX_MODEL_BYTES`] too), it
//! must be the model of the module it is loaded for ([`Model::load_for`]),
//! its checksum must match, and every value must lie in the range scoring
//! can use; each refusal names the file and the field.
//!
//! # Format 2: the checksum
//!
//! Format 2 (this version) ends every file with a `checksum` member, the
//! CRC-32 of the exact bytes before it: `..., "kitnet": {...},\n  "checksum":
//! "crc32:0123abcd"\n}\n`. Those bytes are the canonical serialization
//! [`Model::save`] writes, so a file damaged on disk, or edited (even
//! reformatted) by hand, is refused rather than scored with: a CRC-32
//! catches every single-bit error and every burst up to 32 bits. It is not
//! a signature: whoever can write the model folder can write a valid file.
//!
//! Format 1 files (autozeekwatch before the checksum) have none; they are
//! still loaded, with a warning to retrain, so an upgrade does not stop
//! scoring until the next nightly training. A file that says format 1 but
//! carries a checksum is verified all the same.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::escape;
use crate::features::{Encoder, FeatureSet};
use crate::kitnet::{KitNet, Mode, PRODUCT_SCORE_BOUND};
use crate::log_kind::LogKind;
use crate::safe_fs;

/// Written in every model file; a file without it is not ours.
pub const MAGIC: &str = "autozeekwatch-model";
/// Bumped when the file's meaning changes; older readers refuse newer files.
/// 2: a CRC-32 checksum ends the file (see the module documentation).
/// 3: a context feature may count only gaps between sessions (`min_gap`),
/// which a format-2 reader would not know of and silently ignore, scoring
/// with every gap counted. A model without it is still written as format 2
/// ([`Model::needed_format`]), so older readers keep reading it.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format still read: format 1, without a checksum, with a
/// warning.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Largest model file read. Real models are tens of kilobytes to a few
/// megabytes (the largest tables, 30-input autoencoders over ~150 columns);
/// the cap keeps a wrong path (a huge log, a disk image) from being read
/// into memory whole.
pub const MAX_MODEL_BYTES: u64 = 256 << 20;

/// What precedes the checksum's hex digits at the end of a format-2 file.
const SEAL_HEAD: &[u8] = b",\n  \"checksum\": \"crc32:";
/// What follows them.
const SEAL_TAIL: &[u8] = b"\"\n}\n";
/// Hex digits of a CRC-32.
const SEAL_DIGITS: usize = 8;
const SEAL_LEN: usize = SEAL_HEAD.len() + SEAL_DIGITS + SEAL_TAIL.len();

/// The file name of a module's model in a model folder.
pub fn file_name(module: LogKind) -> String {
    format!("{}.model.json", module.log_path())
}

/// The modules with a model file in `dir` (`<log>.model.json`), in name
/// order; nothing if `dir` cannot be read.
pub fn modules_in(dir: &Path) -> Vec<LogKind> {
    let mut found: Vec<LogKind> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let log = name.to_str()?.strip_suffix(".model.json")?;
            LogKind::new(log).ok().filter(|k| k.log_path() == log)
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The model of one module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub format: String,
    pub format_version: u32,
    /// The autozeekwatch version that trained it.
    pub crate_version: String,
    pub module: LogKind,
    /// When it was trained (RFC 3339, UTC).
    pub created: String,
    pub threshold: Threshold,
    pub training: TrainingInfo,
    /// Column names, in vector order (for people and for explanations).
    pub columns: Vec<String>,
    pub features: FeatureSet,
    pub kitnet: KitNet,
    /// What the detectors learned from the training history: their
    /// settings and the entities normal here (conn and dns models).
    #[serde(default, skip_serializing_if = "crate::detect::Baseline::is_empty")]
    pub detectors: crate::detect::Baseline,
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
    /// How many normal scores it rests on (held-out records, or all
    /// records when too few were held out).
    #[serde(default)]
    pub scores: u64,
    /// Too few records were held out, so `scores` are the training
    /// records' own: a model scores what it learned from low, so the
    /// threshold is likely low and flags more than `expected_fpr`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_sample: bool,
    /// The share of normal traffic it is expected to flag: the target
    /// when the tail fit or the scores can resolve it, else the best the
    /// scores can tell (`1 / scores` for their maximum).
    #[serde(default)]
    pub expected_fpr: Option<f64>,
    /// The generalised Pareto fit of the normal scores' tail, when there
    /// were enough of them (see [`crate::tail`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tail: Option<crate::tail::TailFit>,
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
    /// The sample KitNET learned from (`--max-records`), when the history
    /// had more records than that; `trained_records` and
    /// `held_out_records` then count the sample's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<SampleInfo>,
}

/// How a model's records were sampled from its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleInfo {
    /// `--max-records`.
    pub max_records: u64,
    /// The seed that chose the sample (`--seed`).
    pub seed: u64,
    /// Records in the sample, of the `records` read.
    pub sampled: u64,
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
    #[error("{}: is the {found} model, but the {expected} model was expected here (a misnamed or misplaced file?)", path.display())]
    WrongModule {
        path: PathBuf,
        found: LogKind,
        expected: LogKind,
    },
    #[error("{}: damaged or edited (checksum {found:08x} where the file says {stored:08x}); retrain, or restore the file as azw-train wrote it", path.display())]
    Checksum {
        path: PathBuf,
        stored: u32,
        found: u32,
    },
    #[error("{}: field `{field}` {reason}", path.display())]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: cannot write the model: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {what}, not a model autozeekwatch wrote, so it is not replaced; nothing was trained (move it away, or give another --model-dir)", path.display())]
    NotOurs { path: PathBuf, what: String },
}

/// How far into a file its format name is looked for: the first key
/// azw-train writes.
const MAGIC_WITHIN: usize = 4096;

/// Whether a model may be written at `path`: nothing is there, or an
/// empty file, or a file that says it is an autozeekwatch model (damaged
/// or not): what azw-train replaces is its own, never a file of someone
/// else's at that name, nor a folder (found after a whole training, where
/// it could be before: by a review).
pub fn check_replaceable(path: &Path) -> Result<(), ModelError> {
    let not_ours = |what: &str| ModelError::NotOurs {
        path: path.to_owned(),
        what: what.to_owned(),
    };
    // Through a link: the rename puts the model in the link's place.
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ModelError::Write {
                path: path.to_owned(),
                source,
            })
        }
    };
    if meta.is_dir() {
        return Err(not_ours("a folder"));
    }
    if !meta.is_file() {
        return Err(not_ours("not a regular file (a pipe, socket or device)"));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut head = Vec::new();
    safe_fs::open_regular(path)
        .and_then(|f| {
            std::io::Read::read_to_end(&mut std::io::Read::take(f, MAGIC_WITHIN as u64), &mut head)
        })
        .map_err(|source| ModelError::Write {
            path: path.to_owned(),
            source,
        })?;
    let magic = format!("\"{MAGIC}\"");
    if memchr::memmem::find(&head, magic.as_bytes()).is_none() {
        return Err(not_ours(
            "a file that does not say it is an autozeekwatch model",
        ));
    }
    Ok(())
}

/// Just the fields that say what a file is, read before the rest so a newer
/// format is reported as such rather than as damage.
#[derive(Deserialize)]
struct Header {
    format: Option<String>,
    format_version: Option<u32>,
}

/// A field of a model with a value outside what scoring can use.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Its path in the file (`threshold.value`, `kitnet`).
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field `{}` {}", self.field, self.reason)
    }
}

fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

impl Model {
    /// Reads and checks the model of `module`: a model of another module
    /// (a DNS model saved as `conn.model.json`) is refused. What scoring
    /// should call.
    pub fn load_for(path: &Path, module: LogKind) -> Result<(Model, Encoder), ModelError> {
        let (model, encoder) = Model::load(path)?;
        if model.module != module {
            return Err(ModelError::WrongModule {
                path: path.to_owned(),
                found: model.module,
                expected: module,
            });
        }
        Ok((model, encoder))
    }

    /// Reads and checks a model file of any module (for `--inspect`); the
    /// encoder is ready for scoring.
    pub fn load(path: &Path) -> Result<(Model, Encoder), ModelError> {
        let bytes =
            safe_fs::read_capped(path, MAX_MODEL_BYTES).map_err(|source| ModelError::Io {
                path: path.to_owned(),
                source,
            })?;
        let corrupt = |reason: String| ModelError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        // What the file is, first: a newer format may seal differently.
        let header: Header = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if header.format.as_deref() != Some(MAGIC) {
            return Err(corrupt(format!("no `\"format\": \"{MAGIC}\"` field")));
        }
        let version = match header.format_version {
            Some(v) if v > FORMAT_VERSION => {
                return Err(ModelError::TooNew {
                    path: path.to_owned(),
                    found: v,
                })
            }
            Some(v) if v < OLDEST_FORMAT_VERSION => {
                return Err(corrupt(format!("model format {v} does not exist")))
            }
            Some(v) => v,
            None => return Err(corrupt("no format_version".into())),
        };
        verify_seal(path, &bytes, version)?;
        let model: Model = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let encoder = model.validate().map_err(|e| ModelError::Invalid {
            path: path.to_owned(),
            field: e.field,
            reason: e.reason,
        })?;
        Ok((model, encoder))
    }

    /// Builds the encoder and checks that the parts agree and every value
    /// is in range; the message names the field.
    pub fn check(&self) -> Result<Encoder, String> {
        self.validate().map_err(|e| e.to_string())
    }

    /// [`Model::check`], with the field apart for [`ModelError::Invalid`].
    /// The KitNET arrays were checked as they were read (sizes against
    /// the feature map, every weight, bias and training range finite).
    pub fn validate(&self) -> Result<Encoder, FieldError> {
        if self.features.module != self.module {
            return Err(field_error(
                "features.module",
                format!(
                    "is {}, but the model is for {}",
                    self.features.module, self.module
                ),
            ));
        }
        self.check_vocabularies()?;
        let encoder = Encoder::new(self.features.clone())
            .map_err(|e| field_error("features", e.to_string()))?;
        if encoder.columns() != self.columns.as_slice() {
            return Err(field_error(
                "columns",
                "does not match the feature table and vocabularies",
            ));
        }
        if self.kitnet.n_features() != encoder.len() {
            return Err(field_error(
                "kitnet.n_features",
                format!(
                    "is {}, but the feature table makes {} columns",
                    self.kitnet.n_features(),
                    encoder.len()
                ),
            ));
        }
        if !self.kitnet.is_trained() {
            return Err(field_error("kitnet", "holds a model that is not trained"));
        }
        self.check_threshold()?;
        if let Err((field, why)) = self.detectors.check() {
            return Err(field_error(field, why));
        }
        Ok(encoder)
    }

    /// The threshold must be a score KitNET can produce: a finite,
    /// non-negative reconstruction error, at most [`PRODUCT_SCORE_BOUND`]
    /// in product mode (above it nothing would ever be flagged; below 0
    /// everything would).
    fn check_threshold(&self) -> Result<(), FieldError> {
        let value = self.threshold.value;
        let (ok, range) = match self.kitnet.mode() {
            Mode::Product => (
                (0.0..=PRODUCT_SCORE_BOUND).contains(&value),
                format!("[0, {PRODUCT_SCORE_BOUND}] (product mode)"),
            ),
            Mode::Reference => (
                value.is_finite() && value >= 0.0,
                "[0, infinity) (reference mode), finite".to_owned(),
            ),
        };
        if !ok {
            return Err(field_error(
                "threshold.value",
                format!("is {value}: a threshold must be a score in {range}"),
            ));
        }
        let fpr = self.threshold.target_fpr;
        if !(0.0..=1.0).contains(&fpr) {
            return Err(field_error(
                "threshold.target_fpr",
                format!("is {fpr}: a rate must be in [0, 1]"),
            ));
        }
        Ok(())
    }

    /// One count per learned value, and no value twice (a second copy
    /// would be a column no record can reach).
    fn check_vocabularies(&self) -> Result<(), FieldError> {
        for (name, vocab) in &self.features.vocabularies {
            let field = |what: &str| format!("features.vocabularies.{name}.{what}");
            if vocab.counts.len() != vocab.values.len() {
                return Err(field_error(
                    &field("counts"),
                    format!(
                        "has {} counts for {} values",
                        vocab.counts.len(),
                        vocab.values.len()
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(v) = vocab.values.iter().find(|v| !seen.insert(v.as_str())) {
                return Err(field_error(
                    &field("values"),
                    format!("holds {} twice", escape::terminal(v)),
                ));
            }
        }
        Ok(())
    }

    /// Writes the model atomically: a crash at any point leaves either the
    /// old file or the new one, never a mix.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let err = |source| ModelError::Write {
            path: path.to_owned(),
            source,
        };
        check_replaceable(path)?;
        let dir = crate::aside::folder(path);
        std::fs::create_dir_all(dir).map_err(err)?;
        let bytes = self.sealed().map_err(|e| err(e.into()))?;
        // Named after the model and locked while written: a run killed
        // meanwhile leaves a file the next save removes ([`crate::aside`]).
        let mut tmp = crate::aside::create(path).map_err(err)?;
        // Readable by all, as a file written with the usual umask would be:
        // a temporary file is 0600, and a model trained by root would stay
        // unreadable to the service account that scores with it. A model
        // describes normal traffic; it holds no secret.
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(err)?;
        }
        tmp.as_file_mut().write_all(&bytes).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        // The rename itself must reach the disk too.
        let _ = safe_fs::sync_dir(dir);
        Ok(())
    }

    /// The oldest format that holds the model: 3 when a context feature
    /// counts only gaps between sessions (which a format-2 reader would
    /// ignore), else 2.
    pub fn needed_format(&self) -> u32 {
        let sessions = self.features.features.iter().any(
            |f| matches!(&f.transform, crate::features::Transform::Context(c) if c.min_gap > 0),
        );
        if sessions {
            3
        } else {
            2
        }
    }

    /// The file's bytes: the pretty-printed model in the oldest current
    /// format that holds it, its closing brace replaced by the checksum
    /// member.
    fn sealed(&self) -> serde_json::Result<Vec<u8>> {
        let mut current = std::borrow::Cow::Borrowed(self);
        let format = self.needed_format();
        if self.format_version != format {
            current.to_mut().format_version = format;
        }
        Ok(seal(serde_json::to_vec_pretty(&*current)?))
    }

    /// A summary for people (`azw-train --inspect`). Every text that came
    /// from the file, above all the learned values, which the traffic
    /// chose, is shown through [`escape::terminal`]: a model cannot write
    /// escape sequences or extra lines to the terminal.
    pub fn describe(&self) -> String {
        use escape::terminal as shown;
        use std::fmt::Write as _;
        let t = &self.training;
        let mut s = String::new();
        let _ = writeln!(s, "module:          {}", self.module);
        let _ = writeln!(
            s,
            "model format:    {} (written by autozeekwatch {})",
            self.format_version,
            shown(&self.crate_version)
        );
        let _ = writeln!(
            s,
            "trained:         {} in {:.1} s",
            shown(&self.created),
            t.seconds
        );
        let _ = writeln!(s, "log dir:         {}", shown(&t.log_dir));
        let _ = writeln!(
            s,
            "date range:      {} to {}",
            shown(t.start_date.as_deref().unwrap_or("(first)")),
            shown(t.end_date.as_deref().unwrap_or("(last)"))
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
        if let Some(x) = &t.sample {
            let _ = writeln!(
                s,
                "sample:          sampled {} of {} records (--max-records {}, seed {}): a uniform sample of the whole history; the vocabularies and detectors learned from every record",
                x.sampled, t.records, x.max_records, x.seed
            );
        }
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
            self.threshold.value,
            shown(&self.threshold.method)
        );
        let th = &self.threshold;
        let _ = writeln!(
            s,
            "expected FPR:    {} on normal traffic (target {}), resting on {} normal scores{}",
            th.expected_fpr
                .map_or("unknown".to_owned(), |e| format!("{:.3}%", e * 100.0)),
            format_args!("{:.3}%", th.target_fpr * 100.0),
            th.scores,
            th.tail.map_or(String::new(), |t| format!(
                "; tail: {} scores above {:.6}, generalised Pareto sigma {:.4} xi {:.3}",
                t.excesses, t.level, t.sigma, t.xi
            ))
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
        let _ = writeln!(s, "  from:          {}", self.features.local_nets_origin);
        for line in self.detectors.describe() {
            let _ = writeln!(s, "detector:        {line}");
        }
        let _ = writeln!(
            s,
            "features:        {} columns from {} fields",
            self.columns.len(),
            self.features.features.len()
        );
        let _ = writeln!(
            s,
            "feature table:   {}",
            shown(
                self.features
                    .table_origin
                    .as_deref()
                    .unwrap_or("not recorded (a model from before tables were files)")
            )
        );
        for (name, vocab) in &self.features.vocabularies {
            let values: Vec<_> = vocab.values.iter().map(|v| shown(v)).collect();
            let _ = writeln!(
                s,
                "  {}: {} values learned: {}",
                shown(name),
                vocab.values.len(),
                values.join(", ")
            );
        }
        for (name, f) in &self.features.frequencies {
            const SHOWN: usize = 8;
            let values: Vec<_> = f
                .values
                .iter()
                .take(SHOWN)
                .map(|(v, n)| format!("{} {n}", shown(v)))
                .collect();
            let more = f.values.len().saturating_sub(SHOWN);
            let _ = writeln!(
                s,
                "  {}: rarity over {} training records, {} values kept{}: {}{}",
                shown(name),
                f.total,
                f.values.len(),
                if f.contexts.is_empty() {
                    String::new()
                } else {
                    format!(" in {} contexts", f.contexts.len())
                },
                values.join(", "),
                if more > 0 {
                    format!(", ... {more} more")
                } else {
                    String::new()
                }
            );
        }
        s
    }
}

/// A pretty-printed JSON object with its closing brace replaced by the
/// checksum member: the bytes of a format-2 file.
fn seal(mut bytes: Vec<u8>) -> Vec<u8> {
    // A pretty-printed object ends with a newline and its brace.
    debug_assert!(bytes.ends_with(b"\n}"));
    bytes.truncate(bytes.len().saturating_sub(2));
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(SEAL_HEAD);
    bytes.extend_from_slice(format!("{crc:08x}").as_bytes());
    bytes.extend_from_slice(SEAL_TAIL);
    bytes
}

/// The checksum a file ends with, and the bytes it covers; `None` for a
/// file that does not end with one. The digits must be lowercase hex, as
/// written: another spelling of the same number is an edit.
fn split_seal(bytes: &[u8]) -> Option<(&[u8], u32)> {
    let content_len = bytes.len().checked_sub(SEAL_LEN)?;
    let (content, seal) = bytes.split_at(content_len);
    let digits = seal.strip_prefix(SEAL_HEAD)?.strip_suffix(SEAL_TAIL)?;
    if !digits
        .iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
    Some((content, crc))
}

/// Checks the checksum; format 1 files may lack one (a warning), later
/// formats must have it.
fn verify_seal(path: &Path, bytes: &[u8], version: u32) -> Result<(), ModelError> {
    match split_seal(bytes) {
        Some((content, stored)) => {
            let found = crc32fast::hash(content);
            if found != stored {
                return Err(ModelError::Checksum {
                    path: path.to_owned(),
                    stored,
                    found,
                });
            }
        }
        None if version >= 2 => {
            return Err(ModelError::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "model format {version} ends with a checksum, and this file does not (damaged, or edited by hand); retrain"
                ),
            })
        }
        None => tracing::warn!(
            "{}: model format {version} has no checksum, so damage cannot be detected; retrain to write one with a checksum",
            path.display()
        ),
    }
    Ok(())
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

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::{mpsc, OnceLock};
    use std::time::Duration;

    use super::*;
    use crate::features::LocalNets;
    use crate::kitnet::KitNetParams;
    use crate::score::{ScoredRecord, Scorer};
    use crate::train::{self, TrainOptions};
    use crate::zeek::layout::{self, DateRange};
    use crate::zeek::{Record, Records};

    fn examples() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs")
    }

    /// A small SSH model (44 example records), trained once per test run.
    pub(crate) fn ssh_model() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| example_model(LogKind::SSH, KitNetParams::default().mode))
    }

    /// A small model of `module`'s example logs in KitNET `mode` (short
    /// grace periods, two epochs).
    pub(crate) fn example_model(module: LogKind, mode: crate::kitnet::Mode) -> Model {
        let opts = TrainOptions {
            log_dir: examples(),
            range: DateRange::default(),
            params: KitNetParams {
                fm_grace: 20,
                ad_grace: 20,
                learning_rate: 0.1,
                epochs: 2,
                mode,
                ..KitNetParams::default()
            },
            local_nets: LocalNets::default(),
            local_nets_origin: Default::default(),
            threshold_fpr: 0.001,
            holdout_every: 10,
            tables: crate::tables::Tables::built_in().clone(),
            max_records: None,
        };
        let files = train::find_files(module, &opts).unwrap();
        train::train_module(module, &files, &opts, &train::NoProgress).unwrap()
    }

    /// The example SSH log's text (decompressed).
    pub(crate) fn ssh_log_text() -> String {
        use std::io::Read;
        let raw = std::fs::read(examples().join("ssh.log.gz")).unwrap();
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn ssh_records() -> Vec<Record> {
        let files = layout::discover(&examples(), "ssh", DateRange::default()).unwrap();
        let paths = files.into_iter().map(|f| f.path).collect();
        Records::new(paths, Some("ssh"), true).take(20).collect()
    }

    fn scores(model: Model, encoder: Encoder, records: &[Record]) -> Vec<ScoredRecord> {
        let mut scorer = Scorer::new(model, encoder);
        records.iter().map(|r| scorer.score(r).unwrap()).collect()
    }

    /// The error of a load that must fail (without printing the model).
    fn load_err(path: &Path, module: LogKind) -> String {
        match Model::load_for(path, module) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    fn saved(dir: &Path, name: &str, model: &Model) -> PathBuf {
        let path = dir.join(name);
        model.save(&path).unwrap();
        path
    }

    #[test]
    fn saved_models_are_readable_by_the_service_account() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "ssh.model.json", ssh_model());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{mode:o}");
    }

    #[test]
    fn a_model_of_another_module_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "conn.model.json", ssh_model());
        let err = load_err(&path, LogKind::CONN);
        assert!(
            err.contains("conn.model.json") && err.contains("SSH") && err.contains("CONN"),
            "{err}"
        );
        assert!(Model::load_for(&path, LogKind::SSH).is_ok());
    }

    #[test]
    fn thresholds_out_of_range_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [-1.0, 1e300, 5.0] {
            let mut model = ssh_model().clone();
            model.threshold.value = bad;
            let path = saved(dir.path(), "ssh.model.json", &model);
            let err = load_err(&path, LogKind::SSH);
            assert!(
                err.contains("ssh.model.json") && err.contains("threshold.value"),
                "{bad}: {err}"
            );
        }
        let mut model = ssh_model().clone();
        model.threshold.value = f64::NAN;
        let err = model.check().unwrap_err();
        assert!(err.contains("threshold.value"), "{err}");
    }

    /// Every single-bit flip of a model file is refused or changes
    /// nothing: 2000 flips at positions drawn with a fixed seed.
    #[test]
    fn bit_flips_are_refused_or_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "ssh.model.json", ssh_model());
        let good = std::fs::read(&path).unwrap();
        let records = ssh_records();
        let (m, e) = Model::load_for(&path, LogKind::SSH).unwrap();
        let want = scores(m, e, &records);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut silent = Vec::new();
        for _ in 0..2000 {
            // xorshift64: a fixed, dependency-free sequence of positions.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let bit = (state % (good.len() as u64 * 8)) as usize;
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &bytes).unwrap();
            if let Ok((m, e)) = Model::load_for(&path, LogKind::SSH) {
                if scores(m, e, &records) != want {
                    silent.push(bit);
                }
            }
        }
        assert!(
            silent.is_empty(),
            "{} flips changed scores silently",
            silent.len()
        );
    }

    /// The training range of an autoencoder must not be inverted; the
    /// error names the file and the field.
    #[test]
    fn an_inverted_training_range_is_refused() {
        let mut json = serde_json::to_value(ssh_model()).unwrap();
        let output = &mut json["kitnet"]["output"];
        output["min"][0] = serde_json::json!(2.0);
        output["max"][0] = serde_json::json!(1.0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.model.json");
        std::fs::write(&path, seal(serde_json::to_vec_pretty(&json).unwrap())).unwrap();
        let err = load_err(&path, LogKind::SSH);
        assert!(
            err.contains("ssh.model.json") && err.contains("`min` exceeds `max`"),
            "{err}"
        );
    }

    /// Format 1 files (before the checksum) still load, with a warning; a
    /// format 2 file without its checksum is refused.
    #[test]
    fn format_1_loads_and_format_2_needs_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let path = saved(dir.path(), "ssh.model.json", ssh_model());
        let sealed = std::fs::read(&path).unwrap();
        let (content, _) = split_seal(&sealed).unwrap();
        let mut unsealed = content.to_vec();
        unsealed.extend_from_slice(b"\n}\n");
        std::fs::write(&path, &unsealed).unwrap();
        let err = load_err(&path, LogKind::SSH);
        assert!(err.contains("checksum"), "{err}");
        let v1 = String::from_utf8(unsealed).unwrap().replacen(
            "\"format_version\": 2",
            "\"format_version\": 1",
            1,
        );
        std::fs::write(&path, v1).unwrap();
        let (model, _) = Model::load_for(&path, LogKind::SSH).unwrap();
        assert_eq!(model.threshold, ssh_model().threshold);
        // Saving it again writes the oldest current format that holds it
        // (no gaps between sessions: 2), sealed.
        model.save(&path).unwrap();
        let (again, _) = Model::load_for(&path, LogKind::SSH).unwrap();
        assert_eq!(again.format_version, 2);
    }

    /// Gaps between sessions (`min_gap`) mean format 3: a format-2 reader
    /// would ignore them and score every gap; without them a model stays
    /// format 2, readable by older versions.
    #[test]
    fn gaps_between_sessions_need_format_3() {
        let mut model = ssh_model().clone();
        assert_eq!(model.needed_format(), 2);
        let gap = model
            .features
            .features
            .iter_mut()
            .find_map(|f| match &mut f.transform {
                crate::features::Transform::Context(c)
                    if c.stat == crate::features::context::ContextStat::Gap =>
                {
                    Some(c)
                }
                _ => None,
            })
            .expect("the ssh table has a gap feature");
        gap.min_gap = 60;
        assert_eq!(model.needed_format(), 3);
        let bytes = model.sealed().unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\"format_version\": 3"));
    }

    /// Learned values are the traffic's: `--inspect` shows them escaped,
    /// one line per vocabulary whatever they hold.
    #[test]
    fn describe_escapes_learned_values() {
        let mut model = ssh_model().clone();
        let plain_lines = model.describe().lines().count();
        let freq = model.features.frequencies.get_mut("client").unwrap();
        freq.values
            .extend(crate::escape::tests::HOSTILE.map(|h| (h.to_owned(), 1)));
        let vocab = model.features.vocabularies.get_mut("version").unwrap();
        vocab
            .values
            .extend(crate::escape::tests::HOSTILE.map(String::from));
        let text = model.describe();
        crate::escape::tests::assert_inert(&text.replace('\n', ""));
        assert_eq!(text.lines().count(), plain_lines);
        assert!(text.contains("\\x1b[2J"), "{text}");
    }

    /// A FIFO or a device given as the model is refused at once (a thread
    /// with a deadline turns a hang into a failure).
    #[test]
    fn fifos_and_devices_are_refused_promptly() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("conn.model.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for path in [fifo, PathBuf::from("/dev/zero")] {
            let (tx, rx) = mpsc::channel();
            let p = path.clone();
            std::thread::spawn(move || {
                let _ = tx.send(
                    Model::load_for(&p, LogKind::CONN)
                        .err()
                        .map(|e| e.to_string()),
                );
            });
            let result = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("loading {} hangs", path.display()));
            let err = result.unwrap_or_else(|| panic!("{} was accepted", path.display()));
            assert!(err.contains("not a regular file"), "{err}");
        }
    }
}
