//! A Kafka member's state, saved with the offsets it belongs to.
//!
//! Live mode keeps its context, detector and alert state in its checkpoint
//! beside the file positions; a Kafka member's positions are the offsets
//! its group commits, which live on the brokers. So the member keeps its
//! state in a file of its own (`--kafka-state-dir`), and every commit goes
//! in three steps: the outputs made durable; the state saved, naming the
//! offsets about to be committed and the outputs' lengths; the commit. A
//! commit the loop cannot save the state for first (a partition revoked in
//! a rebalance, committed from inside the consumer's callback) removes the
//! saved state before it commits.
//!
//! At the next start the file is believed only if the group's committed
//! offsets for the partitions it names are exactly the saved ones: the
//! state is resumed, and a file output is cut back to its saved length
//! (what lies beyond was written after the save and is consumed again), so
//! a restarted member writes what an uninterrupted one would have.
//! Otherwise (another member consumed the partitions, the process died or
//! the commit failed between the save and the commit, the group is
//! another) the file is removed and the member starts afresh, saying why,
//! delivering at least once as without the file. A commit never moves past
//! a saved state that could be resumed, so a resumed state never counts a
//! record twice and a cut never removes a committed record.
//!
//! Not with a repartition topic: records re-published after the last save
//! would be re-published again after a restart, and taken twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::follow::{load_json, save_json, CheckpointError, OutputMark, SavedState, StateLock};
use crate::log_kind::LogKind;

/// The file in the state directory.
pub const FILE: &str = "kafka-checkpoint.json";
pub const VERSION: u32 = 1;

/// What a member saves after a commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    pub version: u32,
    /// The consumer group: another group's offsets say nothing of this
    /// state.
    pub group: String,
    /// Per topic and partition, the offset committed: every message
    /// before it is reflected in the state and in the output.
    pub offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// The records' output (a file) and its length at the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputMark>,
    /// The alerts' own output, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_output: Option<OutputMark>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub context: BTreeMap<LogKind, SavedState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<SavedState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<SavedState>,
}

impl MemberState {
    pub fn file(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The saved state, if any. A damaged file is an error (it is not
    /// overwritten behind the operator's back).
    pub fn load(dir: &Path) -> Result<Option<MemberState>, CheckpointError> {
        let path = MemberState::file(dir);
        let state = load_json(&path, |s: &MemberState| s.version, VERSION)?;
        // Names as Kafka allows them (a name with a NUL byte would not
        // even reach the brokers): anything else is damage, said as such.
        let bad = state.as_ref().and_then(|s| {
            s.offsets.keys().find(|t| {
                t.is_empty()
                    || t.len() > 249
                    || !t
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
            })
        });
        if let Some(topic) = bad {
            return Err(CheckpointError::Corrupt {
                path,
                reason: format!(
                    "{} is not a Kafka topic name",
                    crate::escape::terminal(topic)
                ),
            });
        }
        Ok(state)
    }

    /// Removes the saved state (and makes the removal durable): done
    /// before a commit it does not name, and when it is not resumed.
    pub fn forget(dir: &Path) -> Result<(), CheckpointError> {
        let path = MemberState::file(dir);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(CheckpointError::Io { path, source }),
        }
        crate::safe_fs::sync_dir(dir).map_err(|source| CheckpointError::Io { path, source })
    }

    /// Written whole to a temporary file, synced and renamed over the old
    /// one: a crash leaves the old state or the new, never half of one.
    pub fn save(&self, lock: &StateLock) -> Result<u64, CheckpointError> {
        save_json(lock, FILE, self)
    }

    /// Why the state cannot be resumed, given the group's committed
    /// offsets (`None` for a partition without one); `None` when it can.
    pub fn mismatch(
        &self,
        group: &str,
        committed: impl Fn(&str, i32) -> Option<i64>,
    ) -> Option<String> {
        if self.group != group {
            return Some(format!(
                "it was saved by a member of group {}, not {group}",
                crate::escape::terminal(&self.group)
            ));
        }
        for (topic, parts) in &self.offsets {
            for (&partition, &saved) in parts {
                let now = committed(topic, partition);
                if now != Some(saved) {
                    return Some(format!(
                        "{}/{partition} was saved at offset {saved} and the group's committed offset is now {} (another member consumed it, or this one stopped between a commit and its save)",
                        crate::escape::terminal(topic),
                        now.map_or("none".to_owned(), |o| o.to_string())
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> MemberState {
        MemberState {
            version: VERSION,
            group: "azw".into(),
            offsets: BTreeMap::from([("zeek-conn".to_owned(), BTreeMap::from([(0, 120), (1, 7)]))]),
            output: Some(OutputMark {
                name: "out.json".into(),
                len: 4096,
                id: Some((1, 2)),
            }),
            alerts_output: None,
            context: BTreeMap::new(),
            detectors: Some(SavedState::of(&vec![1, 2, 3]).unwrap()),
            alerts: None,
        }
    }

    #[test]
    fn saved_state_reads_back_and_a_damaged_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(MemberState::load(dir.path()).unwrap(), None);
        let lock = StateLock::take(dir.path()).unwrap();
        state().save(&lock).unwrap();
        assert_eq!(MemberState::load(dir.path()).unwrap(), Some(state()));
        std::fs::write(MemberState::file(dir.path()), b"{\"version\":1,").unwrap();
        let e = MemberState::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("damaged"), "{e}");
        // A topic name the brokers would not take (a NUL byte) is damage
        // too, not a panic when the offsets are looked up.
        let mut s = state();
        s.offsets
            .insert("zeek\u{0}conn".into(), BTreeMap::from([(0, 1)]));
        s.save(&lock).unwrap();
        let e = MemberState::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a Kafka topic name"), "{e}");
        MemberState::forget(dir.path()).unwrap();
        assert_eq!(MemberState::load(dir.path()).unwrap(), None);
        MemberState::forget(dir.path()).unwrap();
    }

    #[test]
    fn resumed_only_when_every_saved_offset_is_the_committed_one() {
        let s = state();
        let committed = |t: &str, p: i32| match (t, p) {
            ("zeek-conn", 0) => Some(120),
            ("zeek-conn", 1) => Some(7),
            _ => None,
        };
        assert_eq!(s.mismatch("azw", committed), None);
        let why = s.mismatch("other", committed).unwrap();
        assert!(why.contains("group azw"), "{why}");
        let advanced = |t: &str, p: i32| if p == 1 { Some(9) } else { committed(t, p) };
        let why = s.mismatch("azw", advanced).unwrap();
        assert!(
            why.contains("zeek-conn/1") && why.contains("offset 7") && why.contains(" 9 "),
            "{why}"
        );
        let why = s.mismatch("azw", |_, _| None).unwrap();
        assert!(why.contains("is now none"), "{why}");
    }
}
