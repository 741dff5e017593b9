//! Files written beside their target and moved over it once complete.
//!
//! A replay's output and a model are written to a temporary file in the
//! target's folder and renamed over the target at the end, so nobody ever
//! reads half of one. A run killed before the end (kill -9, the OOM killer,
//! a power cut) leaves that temporary file behind: a replay's can hold
//! gigabytes, it was hidden under a random name, and every killed run added
//! one. So the temporary file is named after its target
//! (`.scores.json.Ab12Cd.partial`) and locked (`flock`) while it is
//! written, and the next write to the same target removes the ones that no
//! process holds and nothing has written to for a minute (a file is
//! created a moment before it is locked).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tempfile::NamedTempFile;

/// The end of every partial file's name.
const SUFFIX: &str = ".partial";
/// Random characters in a partial file's name.
const RANDOM: usize = 6;
/// Bytes of the target's name kept in a partial file's name: with the dot,
/// the random part and the suffix it stays under the 255 bytes a file name
/// may have.
const NAME_BYTES: usize = 200;
/// A partial file written to this recently may have just been created by
/// a run that has not locked it yet.
const SETTLED: Duration = Duration::from_secs(60);

/// Creates the partial file of `target`, locked, in `target`'s folder
/// (with the mode [`create_unlocked`] gives). It replaces `target` when
/// persisted; dropped, it is removed. Before that, partial files of the
/// same target left by runs that ended before their end are removed, each
/// logged as a warning.
pub fn create(target: &Path) -> io::Result<NamedTempFile> {
    let file = create_unlocked(target)?;
    lock(file.as_file())?;
    Ok(file)
}

/// [`create`] for a writer that opens the file by its path and locks it
/// itself, as [`crate::sink::FileSink`] does: a lock taken here would
/// stand in its way.
///
/// The file gets the mode and group of the `target` it will replace when
/// this user owns it, or else a new file's mode (0666 less the umask): not
/// a temporary file's 0600, which
/// made every replay's output and alerts unreadable to the log shipper
/// that reads them as another user, and undid a `chmod` of the target on
/// each run.
pub fn create_unlocked(target: &Path) -> io::Result<NamedTempFile> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = folder(target);
    let prefix = prefix(target)?;
    for stale in sweep(dir, &prefix) {
        tracing::warn!(
            "removed {}: the unfinished output of a run that stopped before its end",
            crate::escape::terminal(&stale.display().to_string())
        );
    }
    // The target's permission bits alone (not set-user-id and the like),
    // of a file this user owns: another's, in a shared folder, must not
    // choose the mode (an empty 0666 file made world-writable output).
    // SAFETY: geteuid takes nothing, cannot fail and touches no memory.
    let me = unsafe { libc::geteuid() };
    let own = std::fs::metadata(target)
        .ok()
        .filter(|m| m.is_file() && m.uid() == me);
    let mode = own
        .as_ref()
        .map_or(0o666, |m| m.permissions().mode() & 0o777);
    // Created with that mode (less the umask) from the start, so that it is
    // never open to more than the target for a moment; then exactly the
    // target's mode and group (which a shipper may read it through).
    let file = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(SUFFIX)
        .rand_bytes(RANDOM)
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)?;
    if let Some(meta) = own {
        // A group this user is not in is refused: the folder's default is
        // kept then.
        let _ = std::os::unix::fs::fchown(file.as_file(), None, Some(meta.gid()));
        file.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

/// The folder `target` is in (`.` for a bare name): where its partial
/// file is made, and the folder to sync once it is moved into place.
pub fn folder(target: &Path) -> &Path {
    target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `.<target's name>.`, the name cut to [`NAME_BYTES`].
fn prefix(target: &Path) -> io::Result<OsString> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", target.display()),
        )
    })?;
    let bytes = name.as_bytes();
    let mut prefix = Vec::with_capacity(NAME_BYTES + 2);
    prefix.push(b'.');
    prefix.extend_from_slice(&bytes[..bytes.len().min(NAME_BYTES)]);
    prefix.push(b'.');
    Ok(OsString::from_vec(prefix))
}

/// Takes the file's exclusive lock without waiting (`flock`, as
/// [`crate::sink::FileSink`] takes its output's). A file system without
/// locks leaves the file unlocked: it is still written (and a partial file
/// there is never removed).
fn lock(file: &File) -> io::Result<()> {
    match file.try_lock() {
        Ok(()) | Err(std::fs::TryLockError::Error(_)) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
    }
}

/// Removes the partial files in `dir` named `<prefix><random><SUFFIX>`
/// that are regular files, unlocked and settled; returns their paths.
/// Anything it cannot read or remove is left alone.
fn sweep(dir: &Path, prefix: &OsStr) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefix = prefix.as_bytes();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.as_bytes();
        let ours = name.len() == prefix.len() + RANDOM + SUFFIX.len()
            && name.starts_with(prefix)
            && name.ends_with(SUFFIX.as_bytes());
        if !ours {
            continue;
        }
        let path = entry.path();
        // Not followed: a link or a folder by that name is somebody else's.
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let settled = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age >= SETTLED);
        if !meta.is_file() || !settled {
            continue;
        }
        // Held by a run still writing it: not ours to remove. Nor where
        // the file system cannot tell (no locks). The lock is released
        // when this handle closes, so the file is removed while it is
        // held.
        let Ok(file) = crate::safe_fs::open_regular(&path) else {
            continue;
        };
        if file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        let _ = crate::safe_fs::sync_dir(dir);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A partial file of `target` named by hand, its time set back `age`.
    fn partial(dir: &Path, target: &str, random: &str, age: Duration) -> PathBuf {
        let path = dir.join(format!(".{target}.{random}{SUFFIX}"));
        let f = File::create(&path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        path
    }

    const OLD: Duration = Duration::from_secs(3600);

    #[test]
    fn a_partial_file_takes_its_target_s_mode_or_a_new_file_s() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // A new target: what a file made by this process gets (0666 less
        // its umask), seen on a file made the ordinary way.
        let plain = dir.path().join("plain");
        File::create(&plain).unwrap();
        let new = create_unlocked(&dir.path().join("new.json")).unwrap();
        assert_eq!(mode(new.path()), mode(&plain));
        // An existing one keeps its mode, past the umask, without the
        // set-user-id bit.
        let target = dir.path().join("scores.json");
        File::create(&target).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o4664)).unwrap();
        let partial = create_unlocked(&target).unwrap();
        assert_eq!(mode(partial.path()), 0o664);
        partial.persist(&target).unwrap();
        assert_eq!(mode(&target), 0o664);
        // And its group, where this user may give it (root, as tests run
        // in CI: another group than its own).
        use std::os::unix::fs::MetadataExt;
        if std::os::unix::fs::chown(&target, None, Some(65534)).is_ok() {
            let partial = create_unlocked(&target).unwrap();
            assert_eq!(std::fs::metadata(partial.path()).unwrap().gid(), 65534);
        }
    }

    #[test]
    fn a_killed_run_s_partial_file_is_removed_by_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scores.json");
        let stale = partial(dir.path(), "scores.json", "Ab12Cd", OLD);
        let mut file = create(&target).unwrap();
        assert!(!stale.exists());
        let name = file
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            name.starts_with(".scores.json.") && name.ends_with(".partial"),
            "{name}"
        );
        file.write_all(b"{}\n").unwrap();
        file.persist(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"{}\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the target is left");
    }

    #[test]
    fn a_partial_file_being_written_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("scores.json");
        // Another run's, locked; then aged as a slow run's would be.
        let other = create(&target).unwrap();
        other
            .as_file()
            .set_modified(SystemTime::now() - OLD)
            .unwrap();
        let mine = create(&target).unwrap();
        assert!(other.path().exists(), "a locked partial file was removed");
        assert_ne!(other.path(), mine.path());
    }

    #[test]
    fn a_fresh_unlocked_partial_file_is_left_alone() {
        // Created by a run that has not locked it yet.
        let dir = tempfile::tempdir().unwrap();
        let fresh = partial(dir.path(), "scores.json", "Ab12Cd", Duration::ZERO);
        let _mine = create(&dir.path().join("scores.json")).unwrap();
        assert!(fresh.exists());
    }

    #[test]
    fn only_the_target_s_own_partial_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keep = [
            partial(d, "other.json", "Ab12Cd", OLD),
            partial(d, "scores.json", "Ab12Cde", OLD),
            partial(d, "scores.jso", "nAb12C", OLD),
            d.join(".scores.json.Ab12Cd.part"),
        ];
        std::fs::write(&keep[3], b"").unwrap();
        // A link by a partial file's name is not followed, nor removed.
        let victim = d.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let link = d.join(".scores.json.Zz99Zz.partial");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        // Nor a folder.
        let folder = d.join(".scores.json.Yy88Yy.partial");
        std::fs::create_dir(&folder).unwrap();
        let _mine = create(&d.join("scores.json")).unwrap();
        for k in keep.iter().chain([&link, &folder, &victim]) {
            assert!(
                std::fs::symlink_metadata(k).is_ok(),
                "{} was removed",
                k.display()
            );
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[test]
    fn a_long_target_name_still_makes_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = "s".repeat(250);
        let stale = partial(dir.path(), &"s".repeat(NAME_BYTES), "Ab12Cd", OLD);
        let file = create(&dir.path().join(&name)).unwrap();
        assert!(!stale.exists());
        file.persist(dir.path().join(&name)).unwrap();
    }
}
