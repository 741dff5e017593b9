//! The file sink: scored records appended to a file, or written to
//! standard output.
//!
//! A file sink never destroys what it did not write: an existing file is
//! appended to only if it already is an autozeekwatch output of the same
//! format, anything but a regular file is refused, and only bytes past a
//! checkpoint of ours are ever cut. If the file is deleted or replaced
//! under the running process, the sink notices before its next write and
//! starts a new file at the path, so no record goes to a deleted inode.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{Cut, RecordFormat, Sink, SinkError, Stamp};
use crate::alert::Alert;
use crate::detect::Detection;
use crate::score::ScoredRecord;

/// Bytes gathered before they are handed to the OS.
const BUFFER: usize = 1 << 16;

/// Bytes written between two requests to the kernel to start writing the
/// file back ([`start_writeback`]).
const WRITEBACK: u64 = 8 << 20;

/// An open output file.
struct Output {
    path: PathBuf,
    file: File,
    /// Device and inode, to notice the path naming another file.
    id: (u64, u64),
    /// Bytes written since writing back was last started.
    unstarted: u64,
    /// Whether anything reached the file (or it was made or cut) since its
    /// last `fsync`. A sync with nothing new skips the `fsync`: a Kafka
    /// member with `--kafka-state-dir` syncs the output before saving its
    /// state and again in the commit that follows, and the second found
    /// nothing to make durable.
    unsynced: bool,
    /// `fsync`s done, for tests.
    #[cfg(test)]
    syncs: u64,
}

/// Asks the kernel to start writing the file's dirty pages to disk, without
/// waiting. A checkpoint's `fsync` then waits only for the last few
/// megabytes: left to the kernel, a second of a busy Kafka member's output
/// (about 100 MB) was still in memory at its commit, and the `fsync` took
/// 17-28 ms, with nothing scored meanwhile. Advisory: an error shows at the
/// next `fsync`. Linux only; elsewhere the kernel's own writeback.
fn start_writeback(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: the descriptor is the open file's, borrowed for the
        // call; no memory is passed. Offset 0 and length 0: the whole file.
        let _ =
            unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// The most entries of the output's folder looked through for the file a
/// checkpoint measured: a stat each, so a folder of millions cannot stall
/// a start.
const MAX_LOOKED_AT: usize = 100_000;

/// The output path no longer names the file the last checkpoint measured.
/// When logrotate renamed it within its folder (`scores.json.1`, or
/// `scores.json-20261207` with `dateext`), what it holds past the
/// checkpoint will be scored again into the new file: it is cut there, so
/// that the records are still written once (between checkpoints, which
/// the write budget spaces up to an hour, that is a great many).
///
/// A file is cut only when all of these hold: it has the device and inode
/// the checkpoint measured, its name starts with the output's (an inode
/// freed when the old file was compressed is soon given to a new file,
/// perhaps another instance's output in the same folder), no process holds
/// its lock (a running writer's, ours included, is never touched), it is
/// an output of this format, and it is at least as long as measured. Any
/// other file, or one compressed or moved elsewhere, is left as it is,
/// said with what that costs.
fn cut_where_it_went(path: &Path, id: (u64, u64), len: u64, format: RecordFormat) {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
    let found = std::fs::read_dir(dir).ok().and_then(|entries| {
        entries
            .take(MAX_LOOKED_AT)
            .flatten()
            .find(|e| {
                // DirEntry::metadata does not follow a symbolic link.
                e.file_name().as_bytes().starts_with(name)
                    && e.metadata()
                        .is_ok_and(|m| m.is_file() && (m.dev(), m.ino()) == id)
            })
            .map(|e| e.path())
    });
    let Some(old) = found else {
        tracing::warn!(
            "{}: not the file the last checkpoint measured (deleted, replaced, or rotated out of its folder or compressed since): appending without cutting anything; records written to the old file after that checkpoint are written again",
            path.display()
        );
        return;
    };
    match cut_renamed(&old, id, len, format) {
        Ok(0) => tracing::info!(
            "{}: the file the last checkpoint measured is now {}, and holds nothing after it",
            path.display(),
            old.display()
        ),
        Ok(cut) => tracing::info!(
            "{}: the file the last checkpoint measured is now {} (renamed since): cutting the {cut} bytes written to it after that checkpoint; they will be scored again into {}",
            path.display(),
            old.display(),
            path.display()
        ),
        Err(e) => tracing::warn!(
            "{}: the file the last checkpoint measured is now {}, which could not be cut ({e}): records written to it after that checkpoint are written again",
            path.display(),
            old.display()
        ),
    }
}

/// Cuts `old` (checked again to be the file `id`, opened without following
/// a link or blocking) to `len`: the bytes cut.
fn cut_renamed(old: &Path, id: (u64, u64), len: u64, format: RecordFormat) -> io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(old)?;
    let meta = file.metadata()?;
    if !meta.is_file() || (meta.dev(), meta.ino()) != id {
        return Err(io::Error::other("it was replaced while being looked at"));
    }
    // Held until the cut is done (the file is closed on return).
    if let Err(std::fs::TryLockError::WouldBlock) = file.try_lock() {
        return Err(io::Error::other(
            "a running process writes it (its lock is held)",
        ));
    }
    if meta.len() < len || !is_our_output(&mut file, format)? {
        return Err(io::Error::other(format!(
            "it is not the {} output the checkpoint measured ({} bytes, shorter than {len}, or of another format)",
            format.name(),
            meta.len()
        )));
    }
    if meta.len() == len {
        return Ok(0);
    }
    file.set_len(len)?;
    file.sync_all()?;
    Ok(meta.len() - len)
}

/// A file appended to, cut back to a checkpointed length at start and
/// reopened on request (logrotate); or standard output.
pub struct FileSink {
    output: Option<Output>,
    /// Formatted records not yet handed to the OS.
    pending: Vec<u8>,
    /// Bytes in the file, pending ones included.
    len: u64,
    format: RecordFormat,
    /// The sensor name every record carries.
    stamp: Stamp,
}

impl FileSink {
    /// Standard output (its length is not tracked: it cannot be cut back).
    pub fn stdout(format: RecordFormat) -> Result<FileSink, SinkError> {
        let mut sink = FileSink {
            output: None,
            pending: Vec::with_capacity(BUFFER),
            len: 0,
            format,
            stamp: Stamp::default(),
        };
        sink.pending.extend_from_slice(&format.header());
        Ok(sink)
    }

    /// Opens `path` for appending. `cut_to`: the file's length at the last
    /// checkpoint of the run that writes it; anything after it was written
    /// by a run that died before checkpointing and will be derived again,
    /// so it is cut, if the file opened is the one the checkpoint measured.
    /// `None` cuts nothing. A new or empty file starts with the format's
    /// header.
    pub fn open(
        path: &Path,
        cut_to: Option<Cut>,
        format: RecordFormat,
    ) -> Result<FileSink, SinkError> {
        let err = |source: io::Error| SinkError::Io {
            target: path.display().to_string(),
            source,
        };
        let refuse = |reason: String| SinkError::Refused {
            target: path.display().to_string(),
            reason,
        };
        let existed = std::fs::symlink_metadata(path);
        if let Ok(meta) = &existed {
            if meta.file_type().is_symlink() {
                return Err(refuse(
                    "is a symbolic link; give the real path of the output file".into(),
                ));
            }
            if !meta.is_file() {
                return Err(refuse(
                    "is not a regular file; the output must be a file (or `-`)".into(),
                ));
            }
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        // One writer a file: two runs appending to one output (each with
        // its own state folder) would write over each other's records,
        // and each one's restart would cut the other's. The lock goes
        // with the file when the run ends, however it ends. (Where the
        // file system has no locks, the output is written unlocked.)
        match file.try_lock() {
            Ok(()) | Err(std::fs::TryLockError::Error(_)) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(refuse(
                    "is being written by another process; give each run its own --output".into(),
                ))
            }
        }
        let meta = file.metadata().map_err(err)?;
        if existed.is_err() {
            // A new file's name is made durable too: a checkpoint will name
            // this file, and after a power cut it must still be there.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            crate::safe_fs::sync_dir(dir.unwrap_or(Path::new("."))).map_err(err)?;
        }
        let on_disk = meta.len();
        let id = (meta.dev(), meta.ino());
        // A run killed while writing the first record of the very file a
        // checkpoint of ours measured empty leaves half a line that tells
        // nothing, and must not keep the service from starting again (an
        // alerts file, or an output of anomalies only, stays empty for
        // hours, named by every checkpoint, until its first line). Only
        // that: one unfinished line that starts as ours do; a file of
        // someone else's written over ours in place is still refused.
        let measured_empty = matches!(
            cut_to,
            Some(Cut { file: Some(f), len }) if f == id && len == 0
        );
        let torn_first = measured_empty && is_a_torn_first_line(&mut file, format).map_err(err)?;
        if on_disk > 0 && !torn_first && !is_our_output(&mut file, format).map_err(err)? {
            return Err(refuse(format!(
                "exists and is not an autozeekwatch {} output; it is left as it is: choose another --output, or move it away",
                format.name()
            )));
        }
        let cut_to = match cut_to {
            Some(Cut { file: Some(f), len }) if f != id => {
                cut_where_it_went(path, f, len, format);
                None
            }
            cut => cut.map(|c| c.len),
        };
        let len = match cut_to {
            Some(cut) if on_disk > cut => {
                tracing::info!(
                    "{}: cutting {} bytes written after the last checkpoint; they will be scored again",
                    path.display(),
                    on_disk - cut
                );
                file.set_len(cut).map_err(err)?;
                cut
            }
            Some(cut) if on_disk < cut => {
                tracing::warn!(
                    "{}: shorter than at the last checkpoint (rotated or edited?); appending",
                    path.display()
                );
                on_disk
            }
            _ => on_disk,
        };
        // A last line without its newline is a record cut short (a run
        // killed mid-write, a full disk): the next record would be glued
        // to it, and the two lost to a JSON-lines reader. It goes: a
        // record cut short was never checkpointed, so a run that resumes
        // derives it again.
        let whole = complete_lines(&mut file, len).map_err(err)?;
        let len = if whole < len {
            tracing::warn!(
                "{}: cutting an unfinished last line ({} bytes) left by a run that stopped mid-write",
                path.display(),
                len - whole
            );
            file.set_len(whole).map_err(err)?;
            whole
        } else {
            len
        };
        // Only the start of the header (a run stopped while writing it):
        // records appended after it would have no `#fields` line, and no
        // reader could read them. It is written anew; there is nothing
        // else in the file to lose.
        let header = format.header();
        let len = if len > 0 && len < header.len() as u64 {
            tracing::warn!(
                "{}: holds only the start of its header ({len} bytes); writing the header anew",
                path.display()
            );
            file.set_len(0).map_err(err)?;
            0
        } else {
            len
        };
        file.seek(SeekFrom::Start(len)).map_err(err)?;
        let mut sink = FileSink {
            output: Some(Output {
                path: path.to_owned(),
                file,
                id,
                unstarted: 0,
                unsynced: true,
                #[cfg(test)]
                syncs: 0,
            }),
            pending: Vec::with_capacity(BUFFER),
            len,
            format,
            stamp: Stamp::default(),
        };
        if len == 0 {
            sink.append(&format.header());
        }
        Ok(sink)
    }

    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// The same sink, stamping records with `stamp` (the sensor name).
    pub fn with_stamp(mut self, stamp: Stamp) -> FileSink {
        self.stamp = stamp;
        self
    }

    fn target(&self) -> String {
        match &self.output {
            Some(o) => o.path.display().to_string(),
            None => "standard output".into(),
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        self.len += bytes.len() as u64;
    }

    /// Hands the pending bytes to the OS: into the file the path names now,
    /// or with `same_file` into the open one (before a reopen, whose old
    /// file they belong to).
    fn write_pending(&mut self, same_file: bool) -> Result<(), SinkError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !same_file {
            self.follow_path()?;
        }
        let result = match &mut self.output {
            Some(o) => {
                // Set first: a write that fails half way still left bytes.
                o.unsynced = true;
                o.file.write_all(&self.pending).map(|()| {
                    o.unstarted += self.pending.len() as u64;
                    if o.unstarted >= WRITEBACK {
                        start_writeback(&o.file);
                        o.unstarted = 0;
                    }
                })
            }
            None => {
                let mut out = io::stdout().lock();
                out.write_all(&self.pending).and_then(|()| out.flush())
            }
        };
        result.map_err(|source| SinkError::Io {
            target: self.target(),
            source,
        })?;
        self.pending.clear();
        Ok(())
    }

    /// The output file cut shorter in place (logrotate's `copytruncate`):
    /// writing on at the offset reached left a hole of NUL bytes where it
    /// was cut, which no JSON reader reads past, and every restart refused
    /// the file as not ours (found by a review). Written on at its end
    /// instead, its header first if it is empty; what was written between
    /// the copy and the cut is lost, as with any copytruncate.
    fn follow_truncation(&mut self) -> Result<(), SinkError> {
        let Some(o) = &mut self.output else {
            return Ok(());
        };
        let err = |source| SinkError::Io {
            target: o.path.display().to_string(),
            source,
        };
        let handed = self.len - self.pending.len() as u64;
        let on_disk = o.file.metadata().map_err(err)?.len();
        if on_disk >= handed {
            return Ok(());
        }
        tracing::warn!(
            "{}: the output file was cut to {on_disk} bytes in place (logrotate's copytruncate?); writing on at its end",
            o.path.display()
        );
        let end = o.file.seek(SeekFrom::End(0)).map_err(err)?;
        o.unsynced = true;
        self.len = end + self.pending.len() as u64;
        if end == 0 {
            let mut header = self.format.header();
            if !header.is_empty() {
                self.len += header.len() as u64;
                header.append(&mut self.pending);
                self.pending = header;
            }
        }
        Ok(())
    }

    /// If the output file was deleted or replaced, starts a new one at its
    /// path (pending bytes go there, after its header).
    fn follow_path(&mut self) -> Result<(), SinkError> {
        let Some(o) = &self.output else {
            return Ok(());
        };
        let now = std::fs::metadata(&o.path).ok().map(|m| (m.dev(), m.ino()));
        if now == Some(o.id) {
            return self.follow_truncation();
        }
        tracing::warn!(
            "{}: the output file was deleted or replaced; writing to a new file at its path",
            o.path.display()
        );
        // What went to the old file before it was deleted or moved is made
        // durable there: a checkpoint taken after this covers it.
        o.file.sync_data().map_err(|source| SinkError::Io {
            target: o.path.display().to_string(),
            source,
        })?;
        let path = o.path.clone();
        // A folder removed with the file is said as such: "No such file or
        // directory" for a file about to be created told nothing.
        let folder = path.parent().filter(|d| !d.as_os_str().is_empty());
        if let Some(dir) = folder.filter(|d| !d.is_dir()) {
            return Err(SinkError::Io {
                target: path.display().to_string(),
                source: io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "its folder {} was removed; make it again (or give another --output) and start again",
                        dir.display()
                    ),
                ),
            });
        }
        // Opened before anything is taken: if it fails, the pending bytes
        // are still here (and counted), not lost with an error.
        let new = FileSink::open(&path, None, self.format)?;
        let pending = std::mem::take(&mut self.pending);
        let stamp = std::mem::take(&mut self.stamp);
        *self = new.with_stamp(stamp);
        // The new file's length: its header, then the records not yet
        // written anywhere.
        self.append(&pending[..]);
        Ok(())
    }
}

impl FileSink {
    /// Formats one line into the buffer (counting its length), writing
    /// the buffer out once it is full.
    fn queue(
        &mut self,
        fill: impl FnOnce(RecordFormat, &Stamp, &mut Vec<u8>) -> io::Result<()>,
    ) -> Result<(), SinkError> {
        let before = self.pending.len();
        // Writing to a Vec cannot fail.
        let _ = fill(self.format, &self.stamp, &mut self.pending);
        self.len += (self.pending.len() - before) as u64;
        if self.pending.len() >= BUFFER {
            self.write_pending(false)?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError> {
        self.queue(|f, stamp, out| f.write(record, stamp, out))
    }

    fn write_detection(&mut self, detection: &Detection) -> Result<(), SinkError> {
        self.queue(|f, stamp, out| f.write_detection(detection, stamp, out))
    }

    fn write_alert(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.queue(|f, stamp, out| f.write_alert(alert, stamp, out))
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.write_pending(false)
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.write_pending(false)?;
        if let Some(o) = self.output.as_mut().filter(|o| o.unsynced) {
            o.file.sync_data().map_err(|source| SinkError::Io {
                target: o.path.display().to_string(),
                source,
            })?;
            o.unsynced = false;
            #[cfg(test)]
            {
                o.syncs += 1;
            }
        }
        Ok(())
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        let Some(path) = self.output.as_ref().map(|o| o.path.clone()) else {
            return Ok(());
        };
        self.write_pending(true)?;
        self.sync()?;
        // The old file's lock goes first: the path may still name it (a
        // log rotation that copies and truncates), and a second open of it
        // could not take the lock. Taken back if the new open fails.
        let old = self.output.as_ref().map(|o| &o.file);
        if let Some(f) = old {
            let _ = f.unlock();
        }
        match FileSink::open(&path, None, self.format) {
            Ok(new) => {
                let stamp = std::mem::take(&mut self.stamp);
                *self = new.with_stamp(stamp);
            }
            Err(e) => {
                if let Some(f) = old {
                    let _ = f.try_lock();
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn size(&self) -> Option<u64> {
        self.output.as_ref().map(|_| self.len)
    }

    fn identity(&self) -> Option<(u64, u64)> {
        self.output.as_ref().map(|o| o.id)
    }
}

/// The length of `file`'s first `len` bytes up to the end of their last
/// complete line (0 when there is none).
fn complete_lines(file: &mut File, len: u64) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// True if `path` is a regular file that is empty or already an
/// autozeekwatch output of `format`: one an output may replace or append to.
pub fn is_replaceable_output(path: &Path, format: RecordFormat) -> io::Result<bool> {
    let mut file = crate::safe_fs::open_regular(path)?;
    Ok(file.metadata()?.len() == 0 || is_our_output(&mut file, format)?)
}

/// The file's first 64 KiB: our lines are short, so it holds the first
/// one whole.
fn head(file: &mut File) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    Read::by_ref(file).take(1 << 16).read_to_end(&mut head)?;
    Ok(head)
}

/// Whether the file holds one unfinished JSON line and nothing else: what
/// a run killed while writing its first record leaves. (A format with a
/// header is recognised by as much of its header as was written.)
fn is_a_torn_first_line(file: &mut File, format: RecordFormat) -> io::Result<bool> {
    if !format.header().is_empty() {
        return Ok(false);
    }
    let head = head(file)?;
    let whole = file.metadata()?.len() == head.len() as u64;
    Ok(whole && head.starts_with(b"{\"") && !head.contains(&b'\n'))
}

/// True if the file starts the way an autozeekwatch output of `format`
/// does: the TSV or CSV header, or a JSON scored record.
fn is_our_output(file: &mut File, format: RecordFormat) -> io::Result<bool> {
    let head = head(file)?;
    let header = format.header();
    if !header.is_empty() {
        let n = header.len().min(head.len());
        return Ok(head[..n] == header[..n]);
    }
    let first = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(first) else {
        return Ok(false);
    };
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_default();
    // Each JSON format is told by what its first line must hold.
    Ok(match format {
        RecordFormat::Ecs => text(&v["event"]["module"]) == "autozeekwatch",
        RecordFormat::Eve => text(&v["alert"]["signature"]).starts_with("AutoZeekWatch "),
        RecordFormat::NoticeJson => text(&v["note"]).starts_with("AutoZeekWatch::"),
        // A scored record, or an alert (`--alerts FILE`).
        _ => {
            v["module"].is_string() && v["score"].as_f64().is_some_and(f64::is_finite)
                || text(&v["alert"]).starts_with("azw-") && v["entity"].is_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_kind::LogKind;

    fn record(uid: &str) -> ScoredRecord {
        ScoredRecord {
            uid: Some(uid.into()),
            ..ScoredRecord::score_only(LogKind::CONN, Some(1.5), 0.25, 0.5, false)
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A sync makes what was written durable once: a second with nothing
    /// written since costs no `fsync`, and anything written (a record, a
    /// buffered one flushed first, a new file's creation) makes the next
    /// sync do one.
    #[test]
    fn a_sync_with_nothing_new_does_no_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        let syncs = |s: &FileSink| s.output.as_ref().unwrap().syncs;
        s.sync().unwrap();
        assert_eq!(syncs(&s), 1, "a new file is made durable");
        s.sync().unwrap();
        assert_eq!(syncs(&s), 1);
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        s.sync().unwrap();
        assert_eq!(syncs(&s), 2);
        s.write(&record("b")).unwrap();
        s.flush().unwrap();
        s.sync().unwrap();
        assert_eq!(syncs(&s), 3, "bytes flushed before the sync");
        assert_eq!(lines(&p).len(), 2);
        drop(s);
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.sync().unwrap();
        assert_eq!(syncs(&s), 1, "a reopened file is synced once");
    }

    /// A sync that finds the output deleted writes to a new file at its
    /// path, and what it reports as durable is that file's length and
    /// identity (a live checkpoint names them together; it once took the
    /// identity before the sync, naming the old file with the new length).
    #[test]
    fn what_a_sync_made_durable_names_the_file_it_is_in() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        let old = s.identity();
        s.write(&record("b")).unwrap();
        // Deleted under the writer, and a file put in its place first so
        // that the new one cannot reuse the old inode.
        std::fs::remove_file(&p).unwrap();
        let _other = std::fs::File::create(dir.path().join("other")).unwrap();
        let durable = crate::sink::sync_then::<_, SinkError>(&mut s, Ok).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_ne!(durable.identity, old);
        assert_eq!(durable.identity, Some((meta.dev(), meta.ino())));
        assert_eq!(durable.len, Some(meta.len()));
        assert_eq!(
            lines(&p).len(),
            1,
            "the record not yet written went to the new file"
        );
    }

    /// A record cut short by a run that died mid-write is not glued to
    /// the next one: appending first cuts the unfinished line (also one
    /// longer than the search's 64 KiB step), and every line parses.
    #[test]
    fn an_unfinished_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        for fragment in ["{\"ts\":1.5,\"uid\":\"b".to_owned(), "x".repeat(70_000)] {
            let p = dir.path().join("scores.json");
            let _ = std::fs::remove_file(&p);
            let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
            s.write(&record("a")).unwrap();
            s.sync().unwrap();
            drop(s);
            let whole = std::fs::metadata(&p).unwrap().len();
            let mut f = OpenOptions::new().append(true).open(&p).unwrap();
            f.write_all(fragment.as_bytes()).unwrap();
            drop(f);
            let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
            assert_eq!(s.size(), Some(whole));
            s.write(&record("c")).unwrap();
            s.sync().unwrap();
            let got = lines(&p);
            assert_eq!(got.len(), 2, "{got:?}");
            for l in &got {
                serde_json::from_str::<serde_json::Value>(l).unwrap();
            }
        }
    }

    /// A run killed while writing its very first record leaves half a
    /// line and nothing else: the restart takes the file its checkpoint
    /// measured (empty then) as ours and starts it anew, where the line
    /// alone would have had it refused; without that checkpoint the file
    /// is still refused, being no output of ours by its content.
    #[test]
    fn a_torn_first_line_in_the_file_a_checkpoint_measured_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        let measured = Cut {
            len: 0,
            file: s.identity(),
        };
        drop(s);
        // Someone else's text written over it in place (the same file): not
        // a torn line of ours, refused and left as it is.
        for foreign in ["notes\n", "no newline", "{\"a\":1}\n{\"b"] {
            std::fs::write(&p, foreign).unwrap();
            assert!(FileSink::open(&p, Some(measured), RecordFormat::Json).is_err());
            assert_eq!(std::fs::read_to_string(&p).unwrap(), foreign);
        }
        std::fs::write(&p, "{\"ts\":1.5,\"uid\":\"b").unwrap();
        let e = FileSink::open(&p, None, RecordFormat::Json).err().unwrap();
        assert!(e.to_string().contains("not an autozeekwatch"), "{e}");
        let other = Cut {
            file: Some((0, 0)),
            ..measured
        };
        assert!(FileSink::open(&p, Some(other), RecordFormat::Json).is_err());
        let later = Cut {
            len: 10,
            ..measured
        };
        assert!(FileSink::open(&p, Some(later), RecordFormat::Json).is_err());
        let mut s = FileSink::open(&p, Some(measured), RecordFormat::Json).unwrap();
        assert_eq!(s.size(), Some(0));
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        let got = lines(&p);
        assert_eq!(got.len(), 1, "{got:?}");
        serde_json::from_str::<serde_json::Value>(&got[0]).unwrap();
    }

    /// One writer a file: a second sink on an output being written is
    /// refused with what to do; once the first ends, or after it reopens
    /// its output (SIGHUP), the file is taken as before.
    #[test]
    fn an_output_has_one_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut first = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        first.write(&record("a")).unwrap();
        first.sync().unwrap();
        let e = FileSink::open(&p, None, RecordFormat::Json).err().unwrap();
        assert!(e.to_string().contains("another process"), "{e}");
        first.reopen().unwrap();
        first.write(&record("b")).unwrap();
        first.sync().unwrap();
        assert!(FileSink::open(&p, None, RecordFormat::Json).is_err());
        drop(first);
        let mut again = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        again.write(&record("c")).unwrap();
        again.sync().unwrap();
        assert_eq!(lines(&p).len(), 3);
    }

    /// The file measured, renamed in its folder while the run was down
    /// (logrotate), is cut where it went; a file that only has its
    /// identity (an inode number given again) but is no output of ours,
    /// or is shorter than measured, is left as it is.
    #[test]
    fn the_file_measured_is_cut_where_it_went_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        let measured = Cut {
            len: s.size().unwrap(),
            file: s.identity(),
        };
        s.write(&record("b")).unwrap();
        s.sync().unwrap();
        drop(s);
        let rotated = dir.path().join("scores.json.1");
        std::fs::rename(&p, &rotated).unwrap();
        let s = FileSink::open(&p, Some(measured), RecordFormat::Json).unwrap();
        assert_eq!(s.size(), Some(0));
        drop(s);
        assert_eq!(lines(&rotated).len(), 1);
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), measured.len);
        // Not ours: someone's text file with the identity the checkpoint
        // names (as if its inode number had been given again).
        let theirs = dir.path().join("notes.txt");
        std::fs::write(&theirs, "not an output of ours, long enough to cut\n").unwrap();
        let id = std::fs::metadata(&theirs)
            .map(|m| (m.dev(), m.ino()))
            .unwrap();
        let q = dir.path().join("other.json");
        let cut = Cut {
            len: 4,
            file: Some(id),
        };
        drop(FileSink::open(&q, Some(cut), RecordFormat::Json).unwrap());
        assert_eq!(
            std::fs::read_to_string(&theirs).unwrap(),
            "not an output of ours, long enough to cut\n"
        );
        // Ours but shorter than measured: left too.
        let short = Cut {
            len: measured.len + 1000,
            file: std::fs::metadata(&rotated)
                .map(|m| Some((m.dev(), m.ino())))
                .unwrap(),
        };
        std::fs::remove_file(&q).unwrap();
        drop(FileSink::open(&q, Some(short), RecordFormat::Json).unwrap());
        assert_eq!(std::fs::metadata(&rotated).unwrap().len(), measured.len);
    }

    /// Another running writer's output with the identity a checkpoint
    /// names (ext4 gives a freed inode to the next new file: another
    /// instance's output in the same folder): never cut, though its name
    /// starts with ours and it is of our format; nor a file of the
    /// identity whose name is not the output's.
    #[test]
    fn a_file_another_writer_holds_is_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path().join("scores.json.b");
        let mut sb = FileSink::open(&b, None, RecordFormat::Json).unwrap();
        for i in 0..10 {
            sb.write(&record(&format!("b{i}"))).unwrap();
        }
        sb.sync().unwrap();
        let b_len = std::fs::metadata(&b).unwrap().len();
        let cut = Cut {
            len: b_len / 10,
            file: sb.identity(),
        };
        let a = dir.path().join("scores.json");
        drop(FileSink::open(&a, Some(cut), RecordFormat::Json).unwrap());
        assert_eq!(std::fs::metadata(&b).unwrap().len(), b_len, "locked: cut");
        // Its writer gone (no lock), but named otherwise: left too.
        drop(sb);
        let c = dir.path().join("other.json");
        std::fs::remove_file(&a).unwrap();
        drop(FileSink::open(&c, Some(cut), RecordFormat::Json).unwrap());
        assert_eq!(
            std::fs::metadata(&b).unwrap().len(),
            b_len,
            "not our name: cut"
        );
        // Named as ours and unlocked: cut (what a rotation while down is).
        std::fs::remove_file(&c).unwrap();
        drop(FileSink::open(&a, Some(cut), RecordFormat::Json).unwrap());
        assert_eq!(std::fs::metadata(&b).unwrap().len(), cut.len);
    }

    #[test]
    fn cut_back_removes_only_what_follows_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        let checkpoint = s.size().unwrap();
        s.write(&record("b")).unwrap();
        s.sync().unwrap();
        let measured = Cut {
            len: checkpoint,
            file: s.identity(),
        };
        drop(s);
        assert_eq!(lines(&p).len(), 2);
        // Another file at the path (renamed into place between the
        // checkpoint and the restart): nothing of it is cut.
        let other = dir.path().join("other.json");
        std::fs::copy(&p, &other).unwrap();
        std::fs::rename(&p, dir.path().join("old.json")).unwrap();
        std::fs::rename(&other, &p).unwrap();
        let s = FileSink::open(&p, Some(measured), RecordFormat::Json).unwrap();
        assert_eq!(s.size(), Some(std::fs::metadata(&p).unwrap().len()));
        assert_eq!(lines(&p).len(), 2);
        drop(s);
        // The file measured: cut back to the checkpoint, and so is any
        // file by a checkpoint that names none (made before identities).
        std::fs::rename(dir.path().join("old.json"), &p).unwrap();
        let s = FileSink::open(
            &p,
            Some(Cut {
                file: None,
                ..measured
            }),
            RecordFormat::Json,
        );
        assert_eq!(s.unwrap().size(), Some(checkpoint));
        assert_eq!(lines(&p).len(), 1);
        let mut s = FileSink::open(&p, Some(measured), RecordFormat::Json).unwrap();
        assert_eq!(s.size(), Some(checkpoint));
        s.write(&record("c")).unwrap();
        s.sync().unwrap();
        let got = lines(&p);
        assert_eq!(got.len(), 2);
        assert!(
            got[0].contains("\"a\"") && got[1].contains("\"c\""),
            "{got:?}"
        );
        // Without a checkpoint nothing is cut.
        drop(s);
        let s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        assert_eq!(s.size(), Some(std::fs::metadata(&p).unwrap().len()));
    }

    #[test]
    fn a_file_that_is_not_ours_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("conn.log");
        let text = "#separator \\x09\n#path\tconn\n";
        std::fs::write(&p, text).unwrap();
        for format in [RecordFormat::Json, RecordFormat::Tsv, RecordFormat::Csv] {
            let cut = Cut { len: 0, file: None };
            let e = FileSink::open(&p, Some(cut), format).err().unwrap();
            assert!(e.to_string().contains("not an autozeekwatch"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        // A TSV output of ours is appended to.
        let q = dir.path().join("scores.log");
        let mut s = FileSink::open(&q, None, RecordFormat::Tsv).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        drop(s);
        let mut s = FileSink::open(&q, None, RecordFormat::Tsv).unwrap();
        s.write(&record("b")).unwrap();
        s.sync().unwrap();
        let text = std::fs::read_to_string(&q).unwrap();
        assert_eq!(text.matches("#fields").count(), 1, "{text}");
        assert!(text.contains("\ta\t") && text.contains("\tb\t"), "{text}");
    }

    /// Every JSON format recognises its own output (live mode appends to
    /// it after a restart) and refuses the others'.
    #[test]
    fn each_json_format_knows_its_own_output() {
        let dir = tempfile::tempdir().unwrap();
        let mut anomaly = record("a");
        anomaly.anomaly = true;
        let formats = [
            RecordFormat::Json,
            RecordFormat::Ecs,
            RecordFormat::Eve,
            RecordFormat::NoticeJson,
        ];
        for f in formats {
            let p = dir.path().join(f.name());
            let mut s = FileSink::open(&p, None, f).unwrap();
            s.write(&anomaly).unwrap();
            s.sync().unwrap();
            drop(s);
            for g in formats {
                assert_eq!(
                    FileSink::open(&p, None, g).is_ok(),
                    f == g,
                    "{} output opened as {}",
                    f.name(),
                    g.name()
                );
            }
        }
    }

    #[test]
    fn symlinks_and_devices_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("out.json");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert!(FileSink::open(&link, None, RecordFormat::Json).is_err());
        assert!(FileSink::open(Path::new("/dev/null"), None, RecordFormat::Json).is_err());
    }

    /// A TSV output holding only the start of its header (a run stopped
    /// while writing it) gets its whole header before any record.
    #[test]
    fn a_header_cut_short_is_written_anew() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.tsv");
        let header = RecordFormat::Tsv.header();
        let three = header
            .split_inclusive(|b| *b == b'\n')
            .take(3)
            .flatten()
            .copied();
        std::fs::write(&p, three.collect::<Vec<u8>>()).unwrap();
        let mut s = FileSink::open(&p, None, RecordFormat::Tsv).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        let text = std::fs::read(&p).unwrap();
        assert!(
            text.starts_with(&header),
            "{}",
            String::from_utf8_lossy(&text)
        );
        assert_eq!(
            lines(&p)
                .iter()
                .filter(|l| l.starts_with("#fields"))
                .count(),
            1
        );
    }

    #[test]
    fn a_deleted_output_is_noticed_and_written_anew() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        std::fs::remove_file(&p).unwrap();
        s.write(&record("b")).unwrap();
        s.sync().unwrap();
        let got = lines(&p);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].contains("\"b\""));
        assert_eq!(s.size(), Some(std::fs::metadata(&p).unwrap().len()));
    }

    /// logrotate's copytruncate cuts the output in place: it is written on
    /// at its end (a TSV one with its header again), with no hole of NUL
    /// bytes where it was cut, and reopened as ours.
    #[test]
    fn an_output_cut_in_place_is_written_on_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        for format in [RecordFormat::Json, RecordFormat::Tsv] {
            let p = dir.path().join(format!("scores.{format:?}"));
            let mut s = FileSink::open(&p, None, format).unwrap();
            s.write(&record("a")).unwrap();
            s.sync().unwrap();
            std::fs::copy(&p, dir.path().join("copy")).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(0)
                .unwrap();
            s.write(&record("b")).unwrap();
            s.sync().unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert!(!bytes.contains(&0), "{format:?}: a hole of NUL bytes");
            let got = lines(&p);
            let records: Vec<&String> = got.iter().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(records.len(), 1, "{format:?}: {got:?}");
            assert!(
                records[0].contains("\"b\"") || records[0].contains("\tb\t"),
                "{got:?}"
            );
            assert_eq!(
                got.iter().filter(|l| l.starts_with("#fields")).count(),
                usize::from(format == RecordFormat::Tsv)
            );
            assert_eq!(s.size(), Some(bytes.len() as u64));
            drop(s);
            let mut again = FileSink::open(&p, None, format).unwrap();
            again.write(&record("c")).unwrap();
            again.sync().unwrap();
            assert_eq!(lines(&p).len(), got.len() + 1);
        }
    }

    #[test]
    fn an_output_folder_removed_is_said_as_such() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        std::fs::create_dir(&dir).unwrap();
        let p = dir.join("scores.json");
        let mut s = FileSink::open(&p, None, RecordFormat::Json).unwrap();
        s.write(&record("a")).unwrap();
        s.sync().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        s.write(&record("b")).unwrap();
        let e = s.sync().unwrap_err().to_string();
        assert!(e.contains("was removed; make it again"), "{e}");
    }

    #[test]
    fn reopen_starts_a_new_file_after_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("scores.csv");
        let mut s = FileSink::open(&p, None, RecordFormat::Csv).unwrap();
        s.write(&record("a")).unwrap();
        std::fs::rename(&p, dir.path().join("scores.csv.1")).unwrap();
        s.reopen().unwrap();
        s.write(&record("b")).unwrap();
        s.sync().unwrap();
        assert_eq!(lines(&dir.path().join("scores.csv.1")).len(), 2);
        let new = lines(&p);
        assert_eq!(new.len(), 2, "header and one record: {new:?}");
        assert_eq!(s.size(), Some(std::fs::metadata(&p).unwrap().len()));
    }
}
