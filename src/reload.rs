//! Model hot reload: the nightly retraining replaces a model file; a running
//! scorer switches to it without a restart. A file that does not load (half
//! copied, damaged, another module's, a newer format) is refused with an
//! error and the running model stays.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::model::Model;
use crate::module::Module;
use crate::score::Scorer;

/// Watches one model file (by modification time and length).
pub struct Reloader {
    path: PathBuf,
    loaded: Option<(SystemTime, u64)>,
    refused: Option<(SystemTime, u64)>,
    last_check: Instant,
}

impl Reloader {
    pub fn new(path: PathBuf) -> Reloader {
        let loaded = stamp(&path);
        Reloader {
            path,
            loaded,
            refused: None,
            last_check: Instant::now(),
        }
    }

    pub fn check(&mut self, module: Module, every: Duration) -> Option<Scorer> {
        if self.last_check.elapsed() < every {
            return None;
        }
        self.last_check = Instant::now();
        let now = stamp(&self.path)?;
        if Some(now) == self.loaded || Some(now) == self.refused {
            return None;
        }
        match Model::load_for(&self.path, module) {
            Ok((model, _)) if model.module != module => {
                tracing::error!(
                    "{module}: refused the new model {}: it is a {} model; keeping the running one",
                    self.path.display(),
                    model.module
                );
                self.refused = Some(now);
                None
            }
            Ok((model, encoder)) => {
                tracing::info!(
                    "{module}: switched to the new model {} (trained {}, threshold {:.6})",
                    self.path.display(),
                    model.created,
                    model.threshold.value
                );
                self.loaded = Some(now);
                Some(Scorer::new(model, encoder))
            }
            Err(e) => {
                tracing::error!("{module}: refused the new model: {e}; keeping the running one");
                self.refused = Some(now);
                None
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
