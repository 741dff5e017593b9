//! What has been scored and written: per module, the file and offset, with
//! the output's length at that moment.
//!
//! The checkpoint is written only after the output was flushed and synced,
//! so everything before `output_len` is on disk and every record before a
//! module's offset is in it. At start the output is cut back to
//! `output_len` and each module resumes from its offset: what was written
//! after the last checkpoint is derived again, so nothing is lost and
//! nothing is doubled.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::identity::Fingerprint;
use crate::log_kind::LogKind;

pub const CHECKPOINT_VERSION: u32 = 1;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where one module's reading stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The file's identity (its first bytes, decompressed).
    pub fingerprint: Fingerprint,
    /// Where the file was when last read (a hint: it may have been renamed
    /// or archived since).
    pub path: PathBuf,
    /// Decompressed bytes consumed, up to the end of the last scored line.
    pub offset: u64,
    /// The length of the unterminated line at `offset` already handed out
    /// as a file's last line (its live path named nothing for a moment),
    /// or 0: should that line end there, it is not scored again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub handed_out: u64,
    /// A day no later than the file's rotation day, taken from rotation
    /// names (never from record times, which a clock or a forged record can
    /// put years ahead), to start the archive search there.
    pub day: Option<NaiveDate>,
    /// The rotation time (from its name) of the file read to its end
    /// before this one: should this one be gone at a restart (expired, or
    /// deleted while azw-infer was down), the rotated files after that
    /// one are the ones that came after it. Not a clock's reading: two
    /// rotation names compare whatever time zone Zeek names them in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<chrono::NaiveDateTime>,
}

impl Position {
    /// Where a log type stands that had no file (or an empty one) when the
    /// run started, and none read since: every file rotated after
    /// `follows` is new, then the live file from its start. Saved like a
    /// file's position, so a restart reads what Zeek wrote and rotated
    /// while the run was down (without it, a quiet log type's files rotated
    /// then were lost: a review lost 600 of 700 records). Its fingerprint
    /// is of no bytes, which no file has ([`super::identity::fingerprint`]
    /// gives an empty file none), so it never stands for a file.
    pub fn waiting(
        path: PathBuf,
        day: Option<NaiveDate>,
        follows: chrono::NaiveDateTime,
    ) -> Position {
        Position {
            fingerprint: Fingerprint { len: 0, crc: 0 },
            path,
            offset: 0,
            handed_out: 0,
            day,
            follows: Some(follows),
        }
    }

    /// A [`Position::waiting`]: no file read yet.
    pub fn is_waiting(&self) -> bool {
        self.fingerprint.len == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// The output file's length when the positions were taken.
    pub output_len: u64,
    /// The output it was taken of (`--output` as given), so that a run with
    /// another output does not cut that one back to this length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The output file's device and inode when the positions were taken:
    /// only that very file is cut back to `output_len` (a file at the same
    /// path that replaced it is appended to instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_id: Option<(u64, u64)>,
    pub modules: BTreeMap<LogKind, Position>,
    /// The detection stage's state at these positions
    /// ([`crate::detect::DetectStage`]), so that after a restart the
    /// detectors continue exactly where the output stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<SavedState>,
    /// Each log type's context state at these positions
    /// ([`crate::features::ContextState`]): the context features of the
    /// next record after a restart are those of an uninterrupted run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<LogKind, SavedState>,
    /// The alert stage's state at these positions ([`crate::alert`]):
    /// open alerts and the flagged records not yet folded in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<SavedState>,
    /// The alerts' own output (`--alerts FILE`) at these positions, cut
    /// back to it on a restart like the records' output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_output: Option<OutputMark>,
}

/// An output file's name, length and identity at a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputMark {
    pub name: String,
    pub len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<(u64, u64)>,
}

/// Serialised state kept as the JSON text it was written as: serialised
/// once when saving, parsed by whoever owns its type when loading.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState(Box<serde_json::value::RawValue>);

impl SavedState {
    pub fn of<T: Serialize>(state: &T) -> Result<SavedState, serde_json::Error> {
        serde_json::value::to_raw_value(state).map(SavedState)
    }

    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    /// The size of the saved text, in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }
}

impl PartialEq for SavedState {
    fn eq(&self, other: &SavedState) -> bool {
        self.0.get() == other.0.get()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: damaged checkpoint ({reason}); move it away to start afresh, as a first start does (live mode: from the live files; Kafka: from the group's committed offsets)", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The disk filled while the state was written: it is written whole
    /// beside the copy it replaces, so it needs its own size free.
    #[error("{}: no room to save the state: it takes {} and is written beside the copy it replaces, so that much must be free in {} ({})", path.display(), crate::score::bytes(*needed as f64), path.parent().unwrap_or(path).display(), if *kept { "the last saved copy is kept" } else { "none was saved before" })]
    NoRoom {
        path: PathBuf,
        needed: u64,
        /// Whether an older copy is there (and kept).
        kept: bool,
    },
    #[error("{}: the state folder was removed or replaced while this process ran (its lock file is not the one this process holds); stopped, so that no other process shares it: start again", dir.display())]
    LockLost { dir: PathBuf },
}

/// The exclusive lock on a state folder's `lock` file, held while a run
/// lasts: one process per state folder. Saves go through it
/// ([`save_json`]), and each first checks that the folder still holds this
/// very lock file: a folder removed under a running process was recreated
/// by its next save without a lock, a second process started on it, and
/// the two wrote over each other's checkpoints.
#[derive(Debug)]
pub struct StateLock {
    _file: std::fs::File,
    dir: PathBuf,
    id: (u64, u64),
}

/// Why a state folder could not be locked.
#[derive(Debug)]
pub enum LockFailure {
    /// Another process holds it.
    Held,
    Io(PathBuf, std::io::Error),
}

/// The lock file's name in a state folder.
pub const LOCK_FILE: &str = "lock";

impl StateLock {
    /// Creates the folder if needed and takes its lock without waiting.
    pub fn take(dir: &Path) -> Result<StateLock, LockFailure> {
        use std::os::unix::fs::MetadataExt;
        std::fs::create_dir_all(dir).map_err(|e| LockFailure::Io(dir.to_owned(), e))?;
        let path = dir.join(LOCK_FILE);
        let io = |e| LockFailure::Io(path.clone(), e);
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(LockFailure::Held),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let meta = file.metadata().map_err(io)?;
        Ok(StateLock {
            _file: file,
            dir: dir.to_owned(),
            id: (meta.dev(), meta.ino()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the folder's lock file is still the one held.
    fn still_held(&self) -> Result<(), CheckpointError> {
        use std::os::unix::fs::MetadataExt;
        let now = std::fs::symlink_metadata(self.dir.join(LOCK_FILE)).ok();
        match now.map(|m| (m.dev(), m.ino())) {
            Some(id) if id == self.id => Ok(()),
            _ => Err(CheckpointError::LockLost {
                dir: self.dir.clone(),
            }),
        }
    }
}

impl Checkpoint {
    pub fn file(state_dir: &Path) -> PathBuf {
        state_dir.join("checkpoint.json")
    }

    /// The saved checkpoint, or `None` on a first start.
    pub fn load(state_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        load_json(
            &Checkpoint::file(state_dir),
            |cp: &Checkpoint| cp.version,
            CHECKPOINT_VERSION,
        )
    }

    /// Saves it as `checkpoint.json` ([`save_json`]): its size in bytes.
    pub fn save(&self, lock: &StateLock) -> Result<u64, CheckpointError> {
        save_json(lock, "checkpoint.json", self)
    }
}

/// The largest state file read back (a context of 1,000,000 keys saves
/// about 300 MB).
pub const MAX_STATE_BYTES: u64 = 4 << 30;

/// Reads a state file written by [`save_json`]: `None` when there is
/// none; damaged, or of a newer format than `current` (by `version`), an
/// error that says to move it away (it is never overwritten behind the
/// operator's back).
pub fn load_json<T: serde::de::DeserializeOwned>(
    path: &Path,
    version: impl Fn(&T) -> u32,
    current: u32,
) -> Result<Option<T>, CheckpointError> {
    // Opened without blocking (a FIFO put there is refused) and capped,
    // so a hostile file can neither hang a start nor exhaust memory.
    let bytes = match crate::safe_fs::read_capped(path, MAX_STATE_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let value: T = serde_json::from_slice(&bytes).map_err(|e| CheckpointError::Corrupt {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    if version(&value) > current {
        return Err(CheckpointError::Corrupt {
            path: path.to_owned(),
            reason: format!(
                "written by a newer autozeekwatch (version {})",
                version(&value)
            ),
        });
    }
    Ok(Some(value))
}

/// The name every temporary file of [`save_json`] starts with: one left
/// by a run killed while saving is found by it and removed
/// ([`remove_unfinished_saves`]).
const SAVE_PREFIX: &str = ".azw-save-";

/// Removes the temporary files of saves that never finished (a run killed
/// while saving: a state can be hundreds of megabytes, and a service
/// killed again and again would fill the disk with them). Only for a
/// folder whose lock this process holds: another process's save in
/// progress would look the same.
pub fn remove_unfinished_saves(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let unfinished = entry.file_name().to_string_lossy().starts_with(SAVE_PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_file());
        if unfinished && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            "{}: removed {removed} unfinished state file(s) of a run that stopped while saving",
            dir.display()
        );
    }
}

/// Writes `value` as `name` in the locked state folder: whole to a
/// temporary file beside it, synced, then renamed over the old one (and
/// the folder synced), so a crash leaves the old file or the new, never
/// half of one. A folder that is no longer the locked one is an error
/// ([`StateLock`]); it is never created again here. Returns the file's
/// size in bytes (what the checkpoints' write budget counts).
pub fn save_json<T: Serialize>(
    lock: &StateLock,
    name: &str,
    value: &T,
) -> Result<u64, CheckpointError> {
    lock.still_held()?;
    let dir = lock.dir();
    let path = dir.join(name);
    let io = |source| CheckpointError::Io {
        path: path.clone(),
        source,
    };
    let io = |source| no_room_or(source, &path, value, io);
    let mut tmp = tempfile::Builder::new()
        .prefix(SAVE_PREFIX)
        .tempfile_in(dir)
        .map_err(io)?;
    serde_json::to_writer_pretty(tmp.as_file_mut(), value).map_err(|e| io(e.into()))?;
    tmp.as_file_mut().write_all(b"\n").map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    let size = tmp.as_file().metadata().map_err(io)?.len();
    tmp.persist(&path).map_err(|e| io(e.error))?;
    let _ = crate::safe_fs::sync_dir(dir);
    Ok(size)
}

/// A full disk (or quota) while saving `value` as `path`, said with the
/// room the state needs (measured then, by writing it again to nowhere);
/// any other error as `other` makes it.
fn no_room_or<T: Serialize>(
    source: std::io::Error,
    path: &Path,
    value: &T,
    other: impl FnOnce(std::io::Error) -> CheckpointError,
) -> CheckpointError {
    match source.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            CheckpointError::NoRoom {
                path: path.to_owned(),
                needed: serialized_len(value),
                kept: path.exists(),
            }
        }
        _ => other(source),
    }
}

/// The bytes [`save_json`] writes for `value`.
fn serialized_len<T: Serialize>(value: &T) -> u64 {
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(1);
    let _ = serde_json::to_writer_pretty(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full disk names the room the state needs: what a save of it
    /// writes, to the byte.
    #[test]
    fn a_full_disk_says_how_much_room_the_state_needs() {
        let dir = tempfile::tempdir().unwrap();
        let lock = StateLock::take(dir.path()).unwrap();
        let value = serde_json::json!({"keys": vec![1.5f64; 3000]});
        save_json(&lock, "state.json", &value).unwrap();
        let written = std::fs::metadata(dir.path().join("state.json"))
            .unwrap()
            .len();
        let path = dir.path().join("state.json");
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = no_room_or(full, &path, &value, |_| unreachable!());
        assert!(
            matches!(e, CheckpointError::NoRoom { needed, .. } if needed == written),
            "{e}"
        );
        let text = e.to_string();
        let want = format!(
            "no room to save the state: it takes {}",
            crate::score::bytes(written as f64)
        );
        assert!(text.contains(&want), "{text}");
        assert!(text.contains(" kB "), "{text}");
        assert!(text.contains("the last saved copy is kept"), "{text}");
        // A first save: no older copy to speak of.
        let first = dir.path().join("never-saved.json");
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let text = no_room_or(full, &first, &value, |_| unreachable!()).to_string();
        assert!(text.contains("none was saved before"), "{text}");
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let e = no_room_or(other, &path, &value, |source| CheckpointError::Io {
            path: path.clone(),
            source,
        });
        assert!(matches!(e, CheckpointError::Io { .. }));
    }

    #[test]
    fn round_trip_and_first_start() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), None);
        let mut cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            output_len: 1234,
            ..Checkpoint::default()
        };
        cp.modules.insert(
            LogKind::CONN,
            Position {
                fingerprint: Fingerprint { len: 4096, crc: 7 },
                path: "current/conn.log".into(),
                offset: 99,
                handed_out: 0,
                day: NaiveDate::from_ymd_opt(2024, 4, 19),
                follows: None,
            },
        );
        let lock = StateLock::take(dir.path()).unwrap();
        cp.save(&lock).unwrap();
        assert_eq!(Checkpoint::load(dir.path()).unwrap(), Some(cp));
        std::fs::write(Checkpoint::file(dir.path()), b"{\"version\":").unwrap();
        assert!(Checkpoint::load(dir.path())
            .unwrap_err()
            .to_string()
            .contains("damaged checkpoint"));
    }

    /// A state folder removed (or replaced) under a running process is
    /// not recreated by its next save, which would hold no lock: a second
    /// process could start on it, and the two overwrite each other's
    /// checkpoints. The save is refused, saying why.
    #[test]
    fn a_state_folder_removed_while_locked_is_never_saved_into_again() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("state");
        let lock = StateLock::take(&dir).unwrap();
        let cp = Checkpoint {
            version: CHECKPOINT_VERSION,
            ..Default::default()
        };
        cp.save(&lock).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let e = cp.save(&lock).unwrap_err().to_string();
        assert!(
            e.contains("removed or replaced while this process ran"),
            "{e}"
        );
        assert!(!dir.exists(), "the folder was made again");
        // Made again by hand, or by another process, with its own lock.
        let other = StateLock::take(&dir).unwrap();
        assert!(cp.save(&lock).is_err());
        cp.save(&other).unwrap();
    }
}
