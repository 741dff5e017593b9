//! One file read incrementally: complete lines only, with the offset after
//! each, and the parser state (TSV header) that goes with the position.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::identity::{is_compressed, open_decompressed, Fingerprint, FINGERPRINT_BYTES};
use crate::safe_fs::open_regular;
use crate::zeek::{LineParser, Parsed, ReadError};

/// Bytes read from the file per call.
const CHUNK: usize = 1 << 16;
/// Bytes read in one [`Source::read`] at most, so that a step returns
/// (and a stop is noticed) within a fraction of a second even while a
/// gigabyte-long line is being read past, and so that a step's lines (a
/// batch waiting for the writer, up to [`crate::pipeline::live`]'s queue
/// of them) hold a few megabytes even when each is near the line cap.
const MAX_BYTES_PER_READ: u64 = 4 << 20;
/// Parsed records one [`Source::read`] returns at most, in
/// [`crate::zeek::Record::heap_bytes`]: lines of many tiny cells (`-`, or
/// short JSON keys) parse to ten or more times their bytes.
const MAX_PARSED_BYTES_PER_READ: usize = 4 << 20;

/// A line read from a source: what it parsed to, and the offset just after it.
pub struct Line {
    pub parsed: Result<Parsed, ReadError>,
    pub end: u64,
}

/// What the newline scan found next.
enum Raw {
    /// A line, with its newline if it had one.
    Line(Vec<u8>),
    /// A line longer than the cap, dropped: its length in bytes.
    TooLong(u64),
}

/// A file being read: the live log (plain, may grow) or a rotated one
/// (plain or gzip, complete).
pub struct Source {
    path: PathBuf,
    /// What messages call the file: its path, or where it went once it was
    /// renamed away while open ([`Source::moved`]). `path` stays what it
    /// was opened as: the follower's positions and rotation days go by it.
    name: PathBuf,
    input: Box<dyn Read + Send>,
    /// Device and inode of a plain file, to see whether the live path still
    /// names it.
    id: Option<(u64, u64)>,
    /// The open plain file, for its size and first bytes: asking the path
    /// could see the next file after a rotation.
    handle: Option<File>,
    /// Offset after the last complete line handed out.
    offset: u64,
    /// Bytes read from the input so far (decompressed).
    read_total: u64,
    /// Bytes read; `pending[start..]` follows `offset` (an incomplete line).
    pending: Vec<u8>,
    start: usize,
    /// `pending[start..scanned]` holds no newline: never scanned twice.
    scanned: usize,
    /// Bytes of an overlong line dropped so far, while skipping to its end.
    skipping: Option<u64>,
    max_line: usize,
    /// A read error met after some lines: those are handed out first, the
    /// error with the next read.
    deferred: Option<io::Error>,
    /// The file's first bytes, for its fingerprint.
    head: Vec<u8>,
    log_path: String,
    parser: LineParser,
    line_no: u64,
    eof: bool,
    /// The length of the unterminated line at `offset` handed out before
    /// (by [`Source::finish`], or as told), or 0: if the line there turns
    /// out to be exactly that long, it is not handed out again. Always at
    /// `offset`: set only there, and spent by the first line read from it.
    handed_out: u64,
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
    path_id_or_error(path).ok().flatten()
}

/// What a path names now: a file's identity (`Ok(None)` where there is
/// none), or the error of looking. A path that names nothing is
/// `NotFound` (or `NotADirectory`, a folder on the way replaced by a
/// file); any other error says nothing of what it names.
pub fn path_id_or_error(path: &Path) -> io::Result<Option<(u64, u64)>> {
    std::fs::metadata(path).map(|m| file_id(&m))
}

/// Whether looking up a path failed because it names nothing.
pub fn names_nothing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Whether an error reading a gzip archive may go away: a stream cut short
/// is what an archive still being written looks like.
pub fn may_be_unfinished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}

impl Source {
    /// Opens a regular file (anything else is refused without blocking) and
    /// skips to `offset`, replaying the header lines before it so the
    /// parser knows the columns.
    ///
    /// The longest line kept is the readers' cap ([`crate::zeek::max_line`],
    /// `--max-line-bytes`): a longer one is skipped as malformed without
    /// being held in memory, so one runaway line (a writer bug, a hostile
    /// file) can neither exhaust memory nor hold back the lines after it.
    pub fn open(path: &Path, log_path: &str, offset: u64) -> io::Result<Source> {
        Source::open_capped(path, log_path, offset, crate::zeek::max_line())
    }

    fn open_capped(
        path: &Path,
        log_path: &str,
        offset: u64,
        max_line: usize,
    ) -> io::Result<Source> {
        let plain = !is_compressed(path)?;
        let (input, handle): (Box<dyn Read + Send>, Option<File>) = if plain {
            let file = open_regular(path)?;
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
            name: path.to_owned(),
            input,
            id,
            handle,
            offset: 0,
            read_total: 0,
            pending: Vec::new(),
            start: 0,
            scanned: 0,
            skipping: None,
            max_line,
            deferred: None,
            head: Vec::new(),
            log_path: log_path.to_owned(),
            parser: LineParser::new(path, Some(log_path)),
            line_no: 0,
            eof: false,
            handed_out: 0,
        };
        source.skip_to(offset)?;
        if source.handle.is_none() && source.offset < offset {
            // An archive holds the whole file: shorter than the checkpoint
            // means it is still being written.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("ends at byte {}, before byte {offset}", source.offset),
            ));
        }
        Ok(source)
    }

    /// Replays the lines before `offset` through the parser (headers set
    /// its state; records are dropped: they were scored before).
    fn skip_to(&mut self, offset: u64) -> io::Result<()> {
        while self.offset < offset {
            match self.next_line(u64::MAX)? {
                Some(Raw::Line(line)) if self.offset + line.len() as u64 > offset => {
                    // The offset is not at a line end: not the file the
                    // checkpoint was taken on. Start the line here.
                    self.start -= line.len();
                    self.scanned = self.start;
                    break;
                }
                Some(raw) => {
                    self.offset += raw_len(&raw);
                    let _ = self.parse(raw);
                }
                None => break,
            }
        }
        Ok(())
    }

    /// The line at the current offset was handed out before, `len` bytes
    /// without a newline, when this file was finished while it could still
    /// grow (its live path named nothing for a moment). Should that line
    /// end there, it was complete then and is not handed out again; should
    /// it go on, what was handed out was part of it, and it is read whole.
    /// `at` is the offset the line was at: a file opened at an offset that
    /// is no line end (not the file the offset was taken on) starts before
    /// it, and no line there is taken for it.
    pub fn handed_out_before(&mut self, at: u64, len: u64) {
        self.handed_out = if at == self.offset { len } else { 0 };
    }

    /// The length of the unterminated line at [`Source::offset`] handed out
    /// already (by [`Source::finish`], or as [`Source::handed_out_before`]
    /// was told), or 0: for whoever opens this file again from there.
    pub fn handed_out(&self) -> u64 {
        self.handed_out
    }

    /// Whether `raw`, the complete line at the current offset, is the one
    /// handed out before; asked once, as that line is read.
    fn handed_out_again(&mut self, raw: &Raw) -> bool {
        let len = std::mem::take(&mut self.handed_out);
        // Without its newline.
        len > 0 && raw_len(raw).checked_sub(1) == Some(len)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file as messages name it (see [`Source::moved`]).
    pub fn name(&self) -> &Path {
        &self.name
    }

    /// The file was renamed away while open: messages about the lines read
    /// from now on name `name` (where those lines are now, at the same line
    /// numbers), since its old path names the next file.
    pub fn moved(&mut self, name: PathBuf) {
        self.parser.rename(&name);
        self.name = name;
    }

    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn id(&self) -> Option<(u64, u64)> {
        self.id
    }

    /// Lines parsed so far (the damaged line of a broken archive is the
    /// next one).
    pub fn line_no(&self) -> u64 {
        self.line_no
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

    /// True when the open plain file no longer holds what was read from it:
    /// it is shorter than what was read, or its first bytes changed. That is
    /// a truncation in place (a writer restarted, or logrotate's
    /// copytruncate), even when the file grew again past the old offset,
    /// which its size alone cannot tell.
    pub fn replaced_in_place(&self) -> bool {
        use std::os::unix::fs::FileExt;
        let Some(handle) = &self.handle else {
            return false;
        };
        if self.size() < self.read_total {
            return true;
        }
        let mut now = vec![0u8; self.head.len()];
        match handle.read_exact_at(&mut now, 0) {
            Ok(()) => now != self.head,
            Err(_) => true,
        }
    }

    /// Starts over from the first byte of the same open plain file, which
    /// was cut in place and written again: following the handle, not the
    /// path, still reads it if it was renamed away meanwhile.
    pub fn rewind(&mut self) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let Some(handle) = self.handle.as_mut() else {
            return Err(io::Error::other("a compressed file cannot be rewound"));
        };
        // The input is a clone of this handle: they share the file offset.
        handle.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        self.read_total = 0;
        self.pending.clear();
        (self.start, self.scanned) = (0, 0);
        self.skipping = None;
        self.deferred = None;
        self.handed_out = 0;
        self.head.clear();
        self.parser = LineParser::new(&self.name, Some(&self.log_path));
        self.line_no = 0;
        self.eof = false;
        Ok(())
    }

    /// Reads what is there now and returns up to `max` complete lines. An
    /// error after some lines is returned by the next call, so the lines
    /// read before a damaged spot are never dropped.
    pub fn read(&mut self, max: usize) -> io::Result<Vec<Line>> {
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        let mut out = Vec::new();
        let budget = self.read_total.saturating_add(MAX_BYTES_PER_READ);
        let mut held = 0;
        while out.len() < max && held < MAX_PARSED_BYTES_PER_READ {
            match self.next_line(budget) {
                Ok(Some(raw)) => {
                    if self.handed_out_again(&raw) {
                        self.offset += raw_len(&raw);
                        self.line_no += 1;
                        continue;
                    }
                    self.offset += raw_len(&raw);
                    let line = self.parse(raw);
                    if let Ok(Parsed::Record(r)) = &line.parsed {
                        held += r.heap_bytes();
                    }
                    out.push(line);
                }
                Ok(None) => break,
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    self.deferred = Some(e);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// At the end of a file that will not grow (rotated away), an
    /// unterminated last line is a line too. The offset stays before it,
    /// and it is remembered as handed out ([`Source::handed_out`]): a file
    /// finished while it could still grow (its live path named nothing for
    /// a moment) may come back, and that line end there after all.
    pub fn finish(&mut self) -> Option<Line> {
        let rest = self.pending.len() - self.start;
        let raw = match self.skipping.take() {
            Some(dropped) => Raw::TooLong(dropped + rest as u64),
            None if rest == 0 => return None,
            None => Raw::Line(self.pending[self.start..].to_vec()),
        };
        self.pending.clear();
        (self.start, self.scanned) = (0, 0);
        let len = raw_len(&raw);
        if self.handed_out == len {
            return None;
        }
        self.handed_out = len;
        let mut line = self.parse(raw);
        line.end = self.offset + len;
        Some(line)
    }

    /// The next complete line, reading more input as needed; `None` when
    /// the input has no complete line now, or when `budget` (a total of
    /// bytes read) is reached first ([`Source::at_eof`] tells them apart).
    /// Each byte is scanned for a newline once, and no more than the cap is
    /// held.
    fn next_line(&mut self, budget: u64) -> io::Result<Option<Raw>> {
        loop {
            if let Some(i) = memchr_newline(&self.pending[self.scanned..]) {
                let end = self.scanned + i + 1;
                let line = &self.pending[self.start..end];
                let raw = match self.skipping.take() {
                    Some(dropped) => Raw::TooLong(dropped + line.len() as u64),
                    None if line.len() > self.max_line + 1 => Raw::TooLong(line.len() as u64),
                    None => Raw::Line(line.to_vec()),
                };
                (self.start, self.scanned) = (end, end);
                return Ok(Some(raw));
            }
            self.scanned = self.pending.len();
            self.drop_overlong();
            if self.read_total >= budget || !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// A line already longer than the cap is dropped as it is read; only
    /// its length is kept.
    fn drop_overlong(&mut self) {
        let held = self.pending.len() - self.start;
        if self.skipping.is_some() || held > self.max_line {
            *self.skipping.get_or_insert(0) += held as u64;
            self.pending.truncate(self.start);
            self.scanned = self.start;
        }
    }

    /// Reads one chunk after the unconsumed bytes; false at the end of the
    /// input for now.
    fn fill(&mut self) -> io::Result<bool> {
        self.pending.drain(..self.start);
        self.scanned -= self.start;
        self.start = 0;
        let have = self.pending.len();
        self.pending.reserve_exact(CHUNK);
        self.pending.resize(have + CHUNK, 0);
        let n = loop {
            match self.input.read(&mut self.pending[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.pending.truncate(have);
                    return Err(e);
                }
            }
        };
        self.pending.truncate(have + n);
        self.eof = n == 0;
        self.read_total += n as u64;
        if self.head.len() < FINGERPRINT_BYTES {
            let take = n.min(FINGERPRINT_BYTES - self.head.len());
            self.head
                .extend_from_slice(&self.pending[have..have + take]);
        }
        Ok(n > 0)
    }

    fn parse(&mut self, raw: Raw) -> Line {
        self.line_no += 1;
        let parsed = match raw {
            Raw::Line(mut line) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                self.parser.parse_line(&line, self.line_no)
            }
            Raw::TooLong(len) => Err(ReadError::Malformed {
                file: self.name.clone(),
                line: self.line_no,
                reason: format!(
                    "longer than {} bytes ({len} bytes); not held in memory",
                    self.max_line
                ),
            }),
        };
        Line {
            parsed,
            end: self.offset,
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.pending.capacity()
    }
}

fn raw_len(raw: &Raw) -> u64 {
    match raw {
        Raw::Line(l) => l.len() as u64,
        Raw::TooLong(n) => *n,
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn append(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    }

    const RECORD: &[u8] = br#"{"_path":"conn","ts":1.0,"uid":"C1"}"#;

    /// A line far over the cap, written in pieces with reads in between,
    /// is never held: memory stays at about the cap plus a chunk.
    #[test]
    fn an_overlong_line_is_dropped_as_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        append(&path, RECORD);
        append(&path, b"\n");
        let cap = 4 * CHUNK;
        let mut s = Source::open_capped(&path, "conn", 0, cap).unwrap();
        assert_eq!(s.read(10).unwrap().len(), 1);
        for _ in 0..64 {
            append(&path, &[b'x'; CHUNK / 2 + 7]);
            assert!(s.read(10).unwrap().is_empty());
            assert!(s.held() <= cap + 2 * CHUNK, "holds {} bytes", s.held());
        }
        append(&path, b"tail\n");
        append(&path, RECORD);
        append(&path, b"\n");
        let lines = s.read(10).unwrap();
        assert_eq!(lines.len(), 2);
        let long = 64 * (CHUNK / 2 + 7) as u64 + 5;
        let err = lines[0].parsed.as_ref().unwrap_err().to_string();
        assert!(
            err.contains(":2:") && err.contains(&format!("({long} bytes)")),
            "{err}"
        );
        assert!(lines[1].parsed.is_ok());
        assert_eq!(lines[1].end, std::fs::metadata(&path).unwrap().len());
    }

    /// The cap is exact: a line one byte over it is skipped even when its
    /// newline comes in the same read.
    #[test]
    fn the_cap_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        let cap = 100;
        let fits = format!("{{\"uid\":\"{}\"}}", "a".repeat(cap - 10));
        assert_eq!(fits.len(), cap);
        append(&path, format!("{fits}\n{fits}b\n").as_bytes());
        let mut s = Source::open_capped(&path, "conn", 0, cap).unwrap();
        let lines = s.read(10).unwrap();
        assert!(lines[0].parsed.is_ok());
        let err = lines[1].parsed.as_ref().unwrap_err().to_string();
        assert!(err.contains("longer than 100 bytes (102 bytes)"), "{err}");
    }

    /// An unterminated overlong last line of a rotated file is one
    /// malformed line too.
    #[test]
    fn an_overlong_last_line_is_finished_as_malformed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        append(&path, &[b'y'; 3 * CHUNK]);
        let mut s = Source::open_capped(&path, "conn", 0, CHUNK).unwrap();
        assert!(s.read(10).unwrap().is_empty());
        let line = s.finish().unwrap();
        assert!(line.parsed.is_err());
        assert_eq!(line.end, 3 * CHUNK as u64);
        assert!(s.finish().is_none());
    }

    /// Lines split across reads come out whole; offsets are line ends.
    #[test]
    fn partial_lines_wait_for_their_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        append(&path, &RECORD[..10]);
        let mut s = Source::open(&path, "conn", 0).unwrap();
        assert!(s.read(10).unwrap().is_empty());
        append(&path, &RECORD[10..]);
        append(&path, b"\n");
        let lines = s.read(10).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].end, RECORD.len() as u64 + 1);
        let again = Source::open(&path, "conn", lines[0].end).unwrap();
        assert_eq!(again.offset(), lines[0].end);
    }

    /// A line handed out unterminated is dropped when it comes whole at the
    /// offset it was at, and only there: a file opened at an offset that
    /// is no line end starts before it, and its line there is read.
    #[test]
    fn a_line_handed_out_is_dropped_only_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        let (a, b) = (
            &br#"{"_path":"conn","uid":"C1"}"#[..],
            &br#"{"_path":"conn","uid":"C2"}"#[..],
        );
        append(&path, &[a, b"\n", b, b"\n"].concat());
        let at = a.len() as u64 + 1;
        let mut s = Source::open(&path, "conn", at).unwrap();
        s.handed_out_before(at, b.len() as u64);
        assert!(s.read(10).unwrap().is_empty());
        assert_eq!(s.offset(), at + b.len() as u64 + 1);
        // Opened within the second line: it starts at that line's start.
        let mut s = Source::open(&path, "conn", at + 3).unwrap();
        s.handed_out_before(at + 3, b.len() as u64);
        assert_eq!(s.read(10).unwrap().len(), 1);
    }

    /// A cut or rewritten file is told apart from one that only grew.
    #[test]
    fn replaced_in_place_sees_truncation_and_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        append(&path, b"{\"a\":1}\n");
        let mut s = Source::open(&path, "conn", 0).unwrap();
        s.read(10).unwrap();
        append(&path, b"{\"a\":2}\n");
        assert!(!s.replaced_in_place());
        std::fs::write(&path, b"{\"b\":1}\n{\"b\":2}\n{\"b\":3}\n").unwrap();
        assert!(s.replaced_in_place());
    }
}
