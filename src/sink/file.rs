//! The file sink: a file the scored records are appended to, or standard
//! output.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::RecordFormat;

/// A file, appended to, cut back to a checkpointed length at start and
/// reopened on request (logrotate); or standard output.
pub struct FileSink {
    path: Option<PathBuf>,
    file: Option<io::BufWriter<File>>,
    len: u64,
    format: RecordFormat,
}

impl FileSink {
    /// `path`: `None` for standard output. `cut_to`: the file's length at
    /// the last checkpoint; anything after it was written by a run that
    /// died before checkpointing and will be derived again, so it is cut.
    /// `None` appends to whatever is there. An empty file (or standard
    /// output) starts with the format's header, if it has one.
    pub fn open(
        path: Option<&Path>,
        cut_to: Option<u64>,
        format: RecordFormat,
    ) -> anyhow::Result<FileSink> {
        let Some(path) = path else {
            let mut sink = FileSink {
                path: None,
                file: None,
                len: 0,
                format,
            };
            sink.write(&format.header())?;
            return Ok(sink);
        };
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the output {}", path.display()))?;
        let on_disk = file.metadata()?.len();
        let checkpoint_len = cut_to.unwrap_or(on_disk);
        let len = if on_disk > checkpoint_len {
            tracing::info!(
                "{}: cutting {} bytes written after the last checkpoint; they will be scored again",
                path.display(),
                on_disk - checkpoint_len
            );
            file.set_len(checkpoint_len)?;
            checkpoint_len
        } else {
            if on_disk < checkpoint_len {
                tracing::warn!(
                    "{}: shorter than at the last checkpoint (rotated or edited?); appending",
                    path.display()
                );
            }
            on_disk
        };
        let mut file = file;
        io::Seek::seek(&mut file, io::SeekFrom::Start(len))?;
        let mut sink = FileSink {
            path: Some(path.to_owned()),
            file: Some(io::BufWriter::with_capacity(1 << 16, file)),
            len,
            format,
        };
        if len == 0 {
            sink.write(&format.header())?;
        }
        Ok(sink)
    }

    pub fn format(&self) -> RecordFormat {
        self.format
    }

    /// The file's length (0 for standard output, which cannot be cut back).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends and hands the bytes to the OS (readers see them at once);
    /// [`FileSink::sync`] makes them durable.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.append(bytes)?;
        self.flush()
    }

    /// Appends without handing the bytes to the OS yet (they sit in the
    /// buffer until [`FileSink::flush`], [`FileSink::sync`] or a full
    /// buffer): for callers that write record by record.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.write_all(bytes)?,
            None => return io::stdout().lock().write_all(bytes),
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Hands buffered bytes to the OS: readers see them.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => io::stdout().lock().flush(),
        }
    }

    /// Everything written so far is on disk when this returns.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()?;
            f.get_ref().sync_data()?;
        }
        Ok(())
    }

    /// After logrotate moved the file away: start a new one at the path.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        if let Some(path) = self.path.clone() {
            self.sync()?;
            *self = FileSink::open(Some(&path), None, self.format)?;
        }
        Ok(())
    }
}
