//! One file read incrementally: complete lines only, with the offset after
//! each, and the parser state (TSV header) that goes with the position.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::identity::{is_gzip, open_decompressed, Fingerprint, FINGERPRINT_BYTES};
use crate::zeek::{LineParser, Parsed, ReadError};

/// Bytes read from the file per call.
const CHUNK: usize = 1 << 16;

/// A line read from a source: what it parsed to, and the offset just after it.
pub struct Line {
    pub parsed: Result<Parsed, ReadError>,
    pub end: u64,
}

/// A file being read: the live log (plain, may grow) or a rotated one
/// (plain or gzip, complete).
pub struct Source {
    path: PathBuf,
    input: Box<dyn Read + Send>,
    /// Device and inode of a plain file, to see whether the live path still
    /// names it.
    id: Option<(u64, u64)>,
    /// The open plain file, for its size: asking the path could see the
    /// next file after a rotation.
    handle: Option<File>,
    /// Offset after the last complete line handed out.
    offset: u64,
    /// Bytes read after `offset` (an incomplete last line).
    pending: Vec<u8>,
    /// The file's first bytes, for its fingerprint.
    head: Vec<u8>,
    parser: LineParser,
    line_no: u64,
    day: Option<NaiveDate>,
    eof: bool,
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// The identity of whatever a path names now.
pub fn path_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().as_ref().and_then(file_id)
}

impl Source {
    /// Opens a file and skips to `offset`, replaying the header lines before
    /// it so the parser knows the columns.
    pub fn open(path: &Path, log_path: &str, offset: u64) -> io::Result<Source> {
        let plain = !is_gzip(path)?;
        let (input, handle): (Box<dyn Read + Send>, Option<File>) = if plain {
            let file = File::open(path)?;
            let handle = file.try_clone()?;
            (Box::new(file), Some(handle))
        } else {
            (open_decompressed(path)?, None)
        };
        let id = match &handle {
            Some(h) => h.metadata().ok().as_ref().and_then(file_id),
            None => None,
        };
        let mut source = Source {
            path: path.to_owned(),
            input,
            id,
            handle,
            offset: 0,
            pending: Vec::new(),
            head: Vec::new(),
            parser: LineParser::new(path, Some(log_path)),
            line_no: 0,
            day: None,
            eof: false,
        };
        source.skip_to(offset)?;
        Ok(source)
    }

    /// Replays the lines before `offset` through the parser (headers set
    /// its state; records are dropped: they were scored before).
    fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        while self.offset < offset {
            match self.next_line()? {
                Some(line) => {
                    if self.offset + line.len() as u64 > offset {
                        // The offset is not at a line end: not the file the
                        // checkpoint was taken on. Start the line here.
                        self.pending.splice(0..0, line);
                        break;
                    }
                    self.offset += line.len() as u64;
                    let _ = self.parse(&line[..line.len() - 1]);
                }
                None => break,
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn id(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// The day its records start (from the first `ts` seen).
    pub fn day(&self) -> Option<NaiveDate> {
        self.day
    }

    /// The size of the open file now (0 for a compressed one).
    pub fn size(&self) -> u64 {
        self.handle
            .as_ref()
            .and_then(|h| h.metadata().ok())
            .map_or(0, |m| m.len())
    }

    /// True when the last read found no more data.
    pub fn at_eof(&self) -> bool {
        self.eof
    }

    /// The file's fingerprint so far; `None` while it is empty.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        (!self.head.is_empty()).then(|| Fingerprint {
            len: self.head.len() as u64,
            crc: crc32fast::hash(&self.head),
        })
    }

    /// Reads what is there now and returns up to `max` complete lines.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<Line>> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(line) = self.next_line()? else { break };
            self.offset += line.len() as u64;
            out.push(self.parse(&line[..line.len() - 1]));
        }
        Ok(out)
    }

    /// At the end of a file that will not grow (rotated away), an
    /// unterminated last line is a line too.
    pub fn finish(&mut self) -> Option<Line> {
        if self.pending.is_empty() {
            return None;
        }
        let line = std::mem::take(&mut self.pending);
        self.offset += line.len() as u64;
        Some(self.parse(&line))
    }

    /// The next complete line (with its newline), reading more input as
    /// needed; `None` when the input has no complete line now.
    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
                let rest = self.pending.split_off(nl + 1);
                return Ok(Some(std::mem::replace(&mut self.pending, rest)));
            }
            let mut chunk = vec![0u8; CHUNK];
            let n = match self.input.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.eof = true;
                return Ok(None);
            }
            self.eof = false;
            if self.head.len() < FINGERPRINT_BYTES {
                let take = n.min(FINGERPRINT_BYTES - self.head.len());
                self.head.extend_from_slice(&chunk[..take]);
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
    }

    fn parse(&mut self, line: &[u8]) -> Line {
        self.line_no += 1;
        let parsed = self.parser.parse_line(line, self.line_no);
        if self.day.is_none() {
            if let Ok(Parsed::Record(r)) = &parsed {
                self.day = r
                    .ts()
                    .and_then(|t| chrono::DateTime::from_timestamp(t as i64, 0))
                    .map(|d| d.date_naive());
            }
        }
        Line {
            parsed,
            end: self.offset,
        }
    }
}
