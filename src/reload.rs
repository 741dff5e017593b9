//! Model hot reload: the nightly retraining replaces a model file; a running
//! scorer switches to it without a restart. A file that does not load (half
//! copied, damaged, another module's, a newer format) is refused with an
//! error and the running model stays.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::log_kind::LogKind;
use crate::model::Model;
use crate::score::Scorer;

/// How long after its last change a model that does not load is taken
/// to be still being written, rather than refused.
const SETTLE: Duration = Duration::from_secs(5);

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

    pub fn check(&mut self, module: LogKind, every: Duration) -> Option<Scorer> {
        if self.last_check.elapsed() < every {
            return None;
        }
        self.last_check = Instant::now();
        let now = stamp(&self.path)?;
        if Some(now) == self.loaded || Some(now) == self.refused {
            return None;
        }
        match Model::load_for(&self.path, module) {
            Ok((model, encoder)) => {
                tracing::info!(
                    "{module}: switched to the new model {} (trained {}, threshold {:.6})",
                    self.path.display(),
                    model.created,
                    model.threshold.value
                );
                self.loaded = Some(now);
                crate::metrics::global().model_loaded(
                    module,
                    model.threshold.value,
                    &model.created,
                );
                Some(Scorer::new(model, encoder))
            }
            // Changed moments ago: a copy in place (`cp`, `scp`) may still
            // be being written. Said quietly and looked at again; refused
            // as an error once it has settled (each check of a copy in
            // progress was an ERROR line, which pages people).
            Err(e) if now.0.elapsed().is_ok_and(|age| age < SETTLE) => {
                tracing::info!(
                    "{module}: the new model {} cannot be read yet ({e}); it changed moments ago (still being written?): looking again",
                    self.path.display()
                );
                None
            }
            Err(e) => {
                tracing::error!("{module}: refused the new model: {e}; keeping the running one");
                self.refused = Some(now);
                crate::metrics::global().model_refused(module);
                None
            }
        }
    }
}

/// A file's modification time and length: what tells a replaced file
/// (also the allowlist's watch, and `azw-infer`'s for new modules'
/// models).
pub fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::ssh_model;

    fn save(model: &Model, path: &Path) {
        model.save(path).unwrap();
    }

    #[test]
    fn a_replaced_model_is_taken_and_a_bad_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.model.json");
        save(ssh_model(), &path);
        let mut reload = Reloader::new(path.clone());
        assert!(
            reload.check(LogKind::SSH, Duration::ZERO).is_none(),
            "unchanged"
        );

        // Damaged (half copied): while it changed moments ago, looked at
        // again; once settled, refused, and not tried again until it
        // changes.
        std::fs::write(&path, b"{\"format\": \"autozeekwatch-model\"").unwrap();
        assert!(reload.check(LogKind::SSH, Duration::ZERO).is_none());
        assert_eq!(reload.refused, None, "still being written, maybe");
        let minute_ago = SystemTime::now() - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(minute_ago)
            .unwrap();
        assert!(reload.check(LogKind::SSH, Duration::ZERO).is_none());
        assert_eq!(reload.refused, stamp(&path));

        // Another log type's model: refused.
        let mut other = ssh_model().clone();
        other.module = LogKind::DNS;
        other.features.module = LogKind::DNS;
        std::thread::sleep(Duration::from_millis(10));
        save(&other, &path);
        assert!(reload.check(LogKind::SSH, Duration::ZERO).is_none());

        // A good one: taken.
        let mut newer = ssh_model().clone();
        newer.threshold.value *= 0.5;
        std::thread::sleep(Duration::from_millis(10));
        save(&newer, &path);
        let scorer = reload
            .check(LogKind::SSH, Duration::ZERO)
            .expect("the new model");
        assert_eq!(scorer.model().threshold.value, newer.threshold.value);
        assert!(
            reload.check(LogKind::SSH, Duration::ZERO).is_none(),
            "taken once"
        );
    }

    #[test]
    fn checks_wait_for_their_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh.model.json");
        save(ssh_model(), &path);
        let mut reload = Reloader::new(path.clone());
        let mut newer = ssh_model().clone();
        newer.threshold.value *= 0.5;
        std::thread::sleep(Duration::from_millis(10));
        save(&newer, &path);
        assert!(reload
            .check(LogKind::SSH, Duration::from_secs(3600))
            .is_none());
        assert!(reload.check(LogKind::SSH, Duration::ZERO).is_some());
    }
}
