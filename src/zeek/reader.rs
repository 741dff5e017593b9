//! Reading one log file, or one stream of lines, into records.
//!
//! [`LineParser`] knows the formats and holds no I/O, so the live follower can
//! feed it lines as Zeek writes them. [`LogReader`] puts a file behind it:
//! gzip is recognised by its magic bytes and the format by the first line,
//! never by the file name; lines are streamed, so memory stays flat whatever
//! the file size. A line is held only up to [`DEFAULT_MAX_LINE`] bytes (or
//! the cap set with `with_max_line`): a longer one is read past and skipped,
//! so a line without end (a gzip bomb of zeros) costs time, never memory.

use std::io::{self, BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::error::ReadError;
use super::json::JsonState;
use super::record::Record;
use super::tsv::{is_header_line, Directive, TsvHeader};
use crate::log_kind::LogKind;
use crate::safe_fs;

/// The longest line read by default, 1 MiB. Zeek's own lines are a few
/// KiB at most (a long URI, many DNS answers); a longer line is damage or
/// an attack, and holding it would let one line take the process's memory.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// The cap every parser starts with: [`DEFAULT_MAX_LINE`] unless the
/// binaries' `--max-line-bytes` set another at start. Process-wide on
/// purpose: it is a safety limit like an rlimit, the same for replay,
/// training, live following and Kafka, and it spares every reader's
/// constructor a parameter.
static MAX_LINE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_LINE);

/// Sets the line cap of parsers made from now on (at least 1 KiB, so a
/// typo cannot make every record "too long").
pub fn set_max_line(bytes: usize) {
    MAX_LINE.store(bytes.max(1024), Ordering::Relaxed);
}

/// The line cap new parsers get.
pub fn max_line() -> usize {
    MAX_LINE.load(Ordering::Relaxed)
}

/// Why a line over the cap is skipped.
fn too_long(max: usize) -> String {
    format!("line longer than {max} bytes")
}

/// The format of a log, as found in its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tsv,
    Json,
}

/// What one line turned out to be.
#[derive(Debug)]
pub enum Parsed {
    Record(Record),
    /// A header line, a comment or a blank line.
    Nothing,
}

/// Turns lines into records for one stream. Holds the detected format and
/// the TSV header state; no I/O.
#[derive(Debug, Clone)]
pub struct LineParser {
    file: PathBuf,
    format: Option<Format>,
    tsv: TsvHeader,
    json: JsonState,
    expected_path: Option<String>,
    /// The other log type a `#path` header declared, until a header names
    /// the expected one again: the lines in between are not ours to score
    /// (a live file can be replaced by another log's).
    foreign_path: Option<String>,
    /// Whether a `#path` naming the expected log was seen: after it, one
    /// naming another is a change within the stream, whose lines are
    /// skipped (counted) until ours returns, not the whole file refused
    /// after its first records were scored.
    path_accepted: bool,
    max_line: usize,
    /// The last JSON key set found to be a Zeek record's
    /// ([`is_zeek_record`]): lines share a handful of schemas, so the
    /// check costs a pointer comparison per line.
    zeek_schema: Option<std::sync::Arc<super::Schema>>,
}

/// The fields every log type scored here has at least one of. A JSON
/// object with none (`{}`, another program's `{"level":"info",...}` in
/// the log or on the topic) is no Zeek record: scored, it read as a record
/// of no time, addresses or values, all of its features at their defaults.
const ZEEK_KEYS: [&str; 4] = ["ts", "uid", "id.orig_h", "id.resp_h"];

fn is_zeek_record(schema: &super::Schema) -> bool {
    ZEEK_KEYS.iter().any(|k| schema.index_of(k).is_some())
}

impl LineParser {
    /// `file` names the stream in messages. With `expected_path`, a `#path`
    /// or `_path` naming another log is an error.
    pub fn new(file: impl Into<PathBuf>, expected_path: Option<&str>) -> LineParser {
        LineParser {
            file: file.into(),
            format: None,
            tsv: TsvHeader::default(),
            json: JsonState::default(),
            expected_path: expected_path.map(str::to_owned),
            foreign_path: None,
            path_accepted: false,
            max_line: max_line(),
            zeek_schema: None,
        }
    }

    /// Skips lines longer than `max` bytes (without their line ending) as
    /// malformed; the default is [`DEFAULT_MAX_LINE`]. The parser only sees
    /// lines already read: whoever reads them should stop at the same cap
    /// ([`LogReader`] does).
    pub fn with_max_line(mut self, max: usize) -> LineParser {
        self.max_line = max;
        self
    }

    /// The longest line parsed, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The format, once the first non-blank line has been seen.
    pub fn format(&self) -> Option<Format> {
        self.format
    }

    /// The log path the stream declares (`#path`), if any.
    pub fn declared_path(&self) -> Option<&str> {
        self.tsv.path.as_deref()
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Names the stream `file` in later messages: a followed file renamed
    /// away while it is read has its later lines there, not at its old
    /// path (which names the next file by then).
    pub fn rename(&mut self, file: impl Into<PathBuf>) {
        self.file = file.into();
    }

    /// Parses one line (without its line ending; a trailing `\r` is
    /// dropped). `Err` with [`ReadError::is_skip`] is a malformed line; any
    /// other error means the stream is not a log of the expected kind.
    pub fn parse_line(&mut self, line: &[u8], line_no: u64) -> Result<Parsed, ReadError> {
        if line.len() > self.max_line {
            return Err(self.malformed(line_no, too_long(self.max_line)));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            return Ok(Parsed::Nothing);
        }
        let format = match self.format {
            Some(f) => f,
            None => {
                let f = self.detect(line)?;
                self.format = Some(f);
                f
            }
        };
        let skip = |reason: String| ReadError::Malformed {
            file: self.file.clone(),
            line: line_no,
            reason,
        };
        match format {
            Format::Tsv => {
                if is_header_line(line) {
                    if let Directive::Path(found) = self.tsv.apply(line).map_err(skip)? {
                        self.foreign_path = None;
                        if let Err(e) = self.check_path(&found) {
                            let changed = self.path_accepted.then(|| {
                                skip(format!(
                                    "`#path` changes to `{found}` within the file; its lines are skipped until a `#path` names `{}` again",
                                    self.expected_path.as_deref().unwrap_or_default()
                                ))
                            });
                            self.foreign_path = Some(found);
                            return Err(changed.unwrap_or(e));
                        }
                        self.path_accepted = true;
                    }
                    return Ok(Parsed::Nothing);
                }
                if let Some(found) = &self.foreign_path {
                    return Err(skip(format!(
                        "a `{found}` record (the file's `#path`), not scored as `{}`",
                        self.expected_path.as_deref().unwrap_or_default()
                    )));
                }
                self.tsv
                    .parse(line, line_no)
                    .map(Parsed::Record)
                    .map_err(skip)
            }
            Format::Json => {
                let parsed = self.json.parse(line, line_no).map_err(skip)?;
                if let (Some(found), Some(expected)) = (&parsed.path, &self.expected_path) {
                    if !LogKind::path_fits(expected, found) {
                        return Err(skip(format!("`_path` is `{found}`, expected `{expected}`")));
                    }
                }
                let schema = parsed.record.schema();
                let known =
                    (self.zeek_schema.as_ref()).is_some_and(|s| std::sync::Arc::ptr_eq(s, schema));
                if !known {
                    if !is_zeek_record(schema) {
                        return Err(skip(
                            "a JSON object with none of `ts`, `uid`, `id.orig_h`, `id.resp_h`: not a Zeek record (another program's line in this log or topic?)".into(),
                        ));
                    }
                    self.zeek_schema = Some(schema.clone());
                }
                Ok(Parsed::Record(parsed.record))
            }
        }
    }

    fn malformed(&self, line: u64, reason: String) -> ReadError {
        ReadError::Malformed {
            file: self.file.clone(),
            line,
            reason,
        }
    }

    fn detect(&self, first: &[u8]) -> Result<Format, ReadError> {
        let trimmed = first.trim_ascii_start();
        let trimmed = trimmed.strip_prefix(b"\xef\xbb\xbf").unwrap_or(trimmed);
        match trimmed.first() {
            Some(b'#') => Ok(Format::Tsv),
            Some(b'{') => Ok(Format::Json),
            _ => Err(ReadError::NotALog {
                file: self.file.clone(),
                reason: format!(
                    "its first line is neither a `#` header nor a JSON object: `{}`",
                    super::value::clip(&String::from_utf8_lossy(first))
                ),
            }),
        }
    }

    fn check_path(&self, found: &str) -> Result<(), ReadError> {
        match &self.expected_path {
            Some(expected) if !LogKind::path_fits(expected, found) => Err(ReadError::WrongPath {
                file: self.file.clone(),
                expected: expected.clone(),
                found: found.to_owned(),
            }),
            _ => Ok(()),
        }
    }
}

/// Counts for one file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records yielded.
    pub records: u64,
    /// Lines skipped as malformed.
    pub malformed: u64,
    /// Lines read, headers and blanks included.
    pub lines: u64,
    /// Bytes of (decompressed) input consumed, up to the end of the last
    /// complete line.
    pub bytes: u64,
}

/// How many malformed lines of one file are logged one by one; the rest are
/// counted and summed up at the end, so a broken file cannot flood the log.
const LOGGED_SKIPS_PER_FILE: u64 = 10;

/// The line buffer's usual size; it grows for longer lines (up to the cap)
/// and shrinks back after a line over the cap.
const LINE_CAPACITY: usize = 1024;

/// What [`read_line_capped`] found.
#[derive(Debug, PartialEq, Eq)]
enum LineRead {
    /// The end of the input.
    End,
    /// A line is in the buffer: `bytes` long, its newline (if any) included.
    Line { bytes: usize },
    /// A line over the cap was read past and thrown away: `bytes` long, its
    /// newline (if any) included. The buffer is empty.
    TooLong { bytes: u64 },
}

/// Reads one line into `buf`, holding at most `max` bytes of it plus the
/// newline: the rest of a longer line is consumed in `input`'s own buffer
/// and dropped, so memory stays bounded however long it is. Looks at each
/// buffered chunk once (memchr), with one `fill_buf`/`consume` pair per
/// chunk, as `read_until` does.
fn read_line_capped(
    input: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
    stop: Option<&AtomicBool>,
) -> io::Result<LineRead> {
    buf.clear();
    let mut total: u64 = 0;
    let mut too_long = false;
    loop {
        let chunk = match input.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        let (used, ended) = match memchr::memchr(b'\n', chunk) {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            let content = buf.len() + used - usize::from(ended);
            if content > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..used]);
            }
        }
        input.consume(used);
        total += used as u64;
        if ended {
            break;
        }
        // Reading past a line of gigabytes takes seconds: a stop asked for
        // meanwhile is honoured now, not at its end.
        if too_long && stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(io::Error::other(
                "stopped while reading past an overlong line",
            ));
        }
    }
    Ok(match (total, too_long) {
        (0, _) => LineRead::End,
        (bytes, true) => {
            buf.shrink_to(LINE_CAPACITY);
            LineRead::TooLong { bytes }
        }
        (bytes, false) => LineRead::Line {
            bytes: bytes as usize,
        },
    })
}

/// The lines of any input under a cap, for readers of log-like files that
/// are not records (labeled logs, label files): a line longer than `max`
/// is read past in bounded memory and reported by its length.
pub struct CappedLines<R> {
    input: R,
    line: Vec<u8>,
    max: usize,
}

impl<R: BufRead> CappedLines<R> {
    /// With the readers' cap ([`max_line`]).
    pub fn new(input: R) -> CappedLines<R> {
        CappedLines {
            input,
            line: Vec::with_capacity(LINE_CAPACITY),
            max: max_line(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// The next line without its newline (`Ok(Some(Ok(line)))`), the length
    /// of one over the cap (`Ok(Some(Err(bytes)))`), or the end.
    pub fn next_line(&mut self) -> io::Result<Option<Result<&[u8], u64>>> {
        Ok(
            match read_line_capped(&mut self.input, &mut self.line, self.max, None)? {
                LineRead::End => None,
                LineRead::TooLong { bytes } => Some(Err(bytes)),
                LineRead::Line { .. } => {
                    Some(Ok(self.line.strip_suffix(b"\n").unwrap_or(&self.line)))
                }
            },
        )
    }
}

/// Streams the records of one log file (plain or gzip, TSV or JSON).
///
/// As an iterator it yields records and skipped lines (errors with
/// [`ReadError::is_skip`]), each skip also logged as a warning. A fatal error
/// (not a log, a damaged gzip stream, an I/O error) is yielded once and ends
/// the iteration.
pub struct LogReader {
    input: Box<dyn BufRead + Send>,
    parser: LineParser,
    line: Vec<u8>,
    stats: ReadStats,
    finished: bool,
    compression: Option<crate::compress::Compression>,
    log_skips: bool,
    /// Set from outside to end the reading early (a signal).
    stop: Option<Arc<AtomicBool>>,
}

impl LogReader {
    /// Opens a file. Fails only if it cannot be opened or is not a regular
    /// file (a FIFO would block, a device such as `/dev/zero` never ends);
    /// what it holds is found out while reading.
    pub fn open(
        path: impl AsRef<Path>,
        expected_path: Option<&str>,
    ) -> Result<LogReader, ReadError> {
        let path = path.as_ref();
        let io_err = |source| ReadError::Io {
            file: path.to_owned(),
            source,
        };
        let file = safe_fs::open_regular(path).map_err(io_err)?;
        LogReader::from_reader(path, file, expected_path).map_err(io_err)
    }

    /// Reads from any byte source; `name` is used in messages.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        source: impl Read + Send + 'static,
        expected_path: Option<&str>,
    ) -> io::Result<LogReader> {
        let (compression, input) = crate::compress::decompressed(source)?;
        Ok(LogReader {
            input,
            parser: LineParser::new(name, expected_path),
            line: Vec::with_capacity(LINE_CAPACITY),
            stats: ReadStats::default(),
            finished: false,
            compression,
            log_skips: true,
            stop: None,
        })
    }

    /// Skips lines longer than `max` bytes (without their newline), holding
    /// no more than `max` bytes of one; the default is [`DEFAULT_MAX_LINE`].
    pub fn with_max_line(mut self, max: usize) -> LogReader {
        self.parser = self.parser.with_max_line(max);
        self
    }

    /// Do not log skipped lines (for a second pass over a file whose
    /// problems were already reported).
    pub fn quiet(mut self) -> LogReader {
        self.log_skips = false;
        self
    }

    /// Ends the reading with an error as soon as `stop` is set, even in
    /// the middle of an overlong line (records are checked by the caller).
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> LogReader {
        self.stop = Some(stop);
        self
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    pub fn format(&self) -> Option<Format> {
        self.parser.format()
    }

    /// How the file was compressed, if it was.
    pub fn compression(&self) -> Option<crate::compress::Compression> {
        self.compression
    }

    pub fn file(&self) -> &Path {
        self.parser.file()
    }

    /// The log path the file declares (`#path`), once its header is read.
    pub fn declared_path(&self) -> Option<&str> {
        self.parser.declared_path()
    }

    fn finish(&mut self) {
        self.finished = true;
        if self.log_skips && self.stats.malformed > LOGGED_SKIPS_PER_FILE {
            tracing::warn!(
                file = %self.file().display(),
                "{} malformed lines skipped in all ({} more than were logged)",
                self.stats.malformed,
                self.stats.malformed - LOGGED_SKIPS_PER_FILE
            );
        }
    }

    /// Counts a skipped line, and logs the first few of a file.
    fn skipped(&mut self, e: ReadError) -> ReadError {
        self.stats.malformed += 1;
        if self.log_skips && self.stats.malformed <= LOGGED_SKIPS_PER_FILE {
            tracing::warn!("{e}");
        }
        e
    }

    fn read_error(&self, source: io::Error) -> ReadError {
        let file = self.file().to_owned();
        match source.kind() {
            // A decoder's (zstd's are `Other`), not the disk's.
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::Other
                if self.compression.is_some() =>
            {
                ReadError::Corrupt {
                    file,
                    line: self.stats.lines,
                    source,
                }
            }
            _ => ReadError::Io { file, source },
        }
    }
}

impl Iterator for LogReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let max = self.parser.max_line();
            let stop = self.stop.as_deref();
            let n = match read_line_capped(self.input.as_mut(), &mut self.line, max, stop) {
                Ok(LineRead::End) => {
                    self.finish();
                    return None;
                }
                Ok(LineRead::Line { bytes }) => bytes,
                Ok(LineRead::TooLong { bytes }) => {
                    self.stats.lines += 1;
                    self.stats.bytes += bytes;
                    let e = self.parser.malformed(self.stats.lines, too_long(max));
                    return Some(Err(self.skipped(e)));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let err = self.read_error(e);
                    self.finish();
                    return Some(Err(err));
                }
            };
            self.stats.lines += 1;
            self.stats.bytes += n as u64;
            let line_no = self.stats.lines;
            let body = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
            match self.parser.parse_line(body, line_no) {
                Ok(Parsed::Nothing) => continue,
                Ok(Parsed::Record(r)) => {
                    self.stats.records += 1;
                    return Some(Ok(r));
                }
                Err(e) if e.is_skip() => return Some(Err(self.skipped(e))),
                Err(e) => {
                    self.finish();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeek::testutil::{mkfifo, peak_heap, within, Repeat};
    use std::io::Write;

    fn reader(bytes: &[u8]) -> LogReader {
        LogReader::from_reader("mem.log", io::Cursor::new(bytes.to_vec()), Some("conn")).unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    const TSV: &[u8] = b"#separator \\x09\n#path\tconn\n#fields\tts\tuid\n#types\ttime\tstring\n1.0\tA\r\n\n2.0\tB\n#close\t2024\n";

    #[test]
    fn tsv_with_crlf_blank_lines_and_close() {
        let mut r = reader(TSV);
        let uids: Vec<String> = r
            .by_ref()
            .map(|x| x.unwrap().get("uid").to_string())
            .collect();
        assert_eq!(uids, ["A", "B"]);
        assert_eq!(r.format(), Some(Format::Tsv));
        assert_eq!(r.stats().records, 2);
        assert_eq!(r.stats().bytes, TSV.len() as u64);
    }

    #[test]
    fn gzip_is_found_by_content() {
        let mut r = reader(&gzip(TSV));
        assert_eq!(r.compression(), Some(crate::compress::Compression::Gzip));
        assert_eq!(r.by_ref().filter(Result::is_ok).count(), 2);
    }

    #[test]
    fn truncated_gzip_yields_records_then_names_the_file() {
        let mut body = TSV.to_vec();
        for i in 0..2000 {
            body.extend_from_slice(format!("{i}.5\tC{i}\n").as_bytes());
        }
        let gz = gzip(&body);
        let cut = &gz[..gz.len() / 2];
        let results: Vec<_> = reader(cut).collect();
        let (ok, err): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
        assert!(ok.len() > 10, "records before the damage are kept");
        assert_eq!(err.len(), 1);
        let msg = err[0].as_ref().unwrap_err().to_string();
        assert!(msg.starts_with("mem.log: damaged after line"), "{msg}");
    }

    /// A live file whose header names another log type: its records are
    /// skipped (never scored by this model) until a header names ours.
    #[test]
    fn lines_under_a_foreign_path_are_skipped_until_ours_returns() {
        let mut p = LineParser::new("current/conn.log", Some("conn"));
        let lines: [&[u8]; 7] = [
            b"#separator \\x09",
            b"#path\tdns",
            b"#fields\tts\tuid",
            b"1.5\tCdns",
            b"#path\tconn",
            b"#fields\tts\tuid",
            b"2.5\tCconn",
        ];
        let got: Vec<_> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| p.parse_line(l, i as u64 + 1))
            .collect();
        assert!(matches!(got[1], Err(ReadError::WrongPath { .. })));
        assert!(
            got[3].as_ref().is_err_and(ReadError::is_skip),
            "{:?}",
            got[3]
        );
        match &got[6] {
            Ok(Parsed::Record(r)) => assert_eq!(r.get("uid").as_str(), Some("Cconn")),
            other => panic!("{other:?}"),
        }
    }

    /// A file whose `#path` changes after its records began: the other
    /// log's lines are counted skips, and the reading goes on (the records
    /// after `#path` names ours again are scored), as live mode does.
    #[test]
    fn a_path_changed_within_a_file_skips_its_lines_and_reads_on() {
        let text = b"#separator \\x09\n#path\tconn\n#fields\tts\tuid\n1\tA\n\
#path\tdns\n#fields\tts\tquery\n2\tq1\n3\tq2\n#path\tconn\n#fields\tts\tuid\n4\tB\n";
        let mut r = reader(text);
        let got: Vec<_> = r.by_ref().collect();
        let uids: Vec<String> = got
            .iter()
            .filter_map(|x| x.as_ref().ok())
            .map(|rec| rec.get("uid").to_string())
            .collect();
        assert_eq!(uids, ["A", "B"]);
        let errors: Vec<&ReadError> = got.iter().filter_map(|x| x.as_ref().err()).collect();
        assert!(errors.iter().all(|e| e.is_skip()), "{errors:?}");
        assert!(
            errors[0]
                .to_string()
                .contains("`#path` changes to `dns` within the file"),
            "{}",
            errors[0]
        );
        // The header and the two dns lines.
        assert_eq!(r.stats().malformed, 3);
        assert_eq!(r.stats().records, 2);
    }

    #[test]
    fn wrong_path_is_fatal_for_tsv() {
        let results: Vec<_> = reader(b"#path\tdns\n#fields\tts\n1\n").collect();
        assert_eq!(results.len(), 1);
        assert_eq!(
            results[0].as_ref().unwrap_err().to_string(),
            "mem.log: holds `dns` records, expected `conn`"
        );
    }

    /// RITA writes its JSON open_conn records with `_path` conn.
    #[test]
    fn an_open_conn_log_may_say_conn() {
        let text = b"{\"_path\":\"conn\",\"ts\":1}\n{\"_path\":\"dns\",\"ts\":2}\n";
        let r = LogReader::from_reader(
            "open_conn.log",
            io::Cursor::new(text.to_vec()),
            Some("open_conn"),
        )
        .unwrap();
        let ok: Vec<bool> = r.map(|x| x.is_ok()).collect();
        assert_eq!(ok, [true, false]);
        let results: Vec<_> = reader(b"{\"_path\":\"open_conn\",\"ts\":1}\n").collect();
        assert!(results[0].is_err(), "a conn log is no open_conn log");
    }

    #[test]
    fn json_path_mismatch_is_a_skip() {
        let results: Vec<_> =
            reader(b"{\"_path\":\"conn\",\"ts\":1}\n{\"_path\":\"dns\",\"ts\":2}\n").collect();
        assert!(results[0].is_ok());
        assert_eq!(
            results[1].as_ref().unwrap_err().to_string(),
            "mem.log:2: skipped malformed line: `_path` is `dns`, expected `conn`"
        );
    }

    /// Another program's JSON in a Zeek log (or on its Kafka topic) is a
    /// counted skip, not a record of nothing scored with every feature at
    /// its default; a Zeek record with few fields still reads.
    #[test]
    fn json_objects_that_are_no_zeek_record_are_skipped() {
        let results: Vec<_> = reader(
            b"{}\n{\"level\":\"info\",\"msg\":\"started\"}\n{\"ts\":1}\n{\"uid\":\"C1\"}\n{\"x\":1}\n{\"ts\":2,\"uid\":\"C2\"}\n",
        )
        .collect();
        let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [false, false, true, true, false, true]);
        assert!(
            skip_reason(&results[1]).contains("not a Zeek record"),
            "{:?}",
            results[1]
        );
    }

    #[test]
    fn text_is_not_a_log() {
        let results: Vec<_> = reader(b"Lorem ipsum dolor\nsit amet\n").collect();
        assert_eq!(results.len(), 1);
        assert!(matches!(results[0], Err(ReadError::NotALog { .. })));
    }

    #[test]
    fn empty_input_is_an_empty_log() {
        let mut r = reader(b"");
        assert!(r.next().is_none());
        assert_eq!(r.format(), None);
    }

    const CONN_HEADER: &[u8] =
        b"#separator \\x09\n#path\tconn\n#fields\tts\tuid\n#types\ttime\tstring\n";

    fn skip_reason(item: &Result<Record, ReadError>) -> String {
        match item {
            Err(e @ ReadError::Malformed { reason, .. }) if e.is_skip() => reason.clone(),
            other => panic!("expected a skipped line, got {other:?}"),
        }
    }

    /// A 50 MB line is skipped without ever being held: the reader's heap
    /// stays near the 1 MiB cap, and the record after it is read.
    #[test]
    fn a_huge_line_is_skipped_in_bounded_memory() {
        let huge = Repeat::new(b'x', 50 << 20, b"\n3.0\tC\n");
        let source = io::Cursor::new(CONN_HEADER).chain(huge);
        let ((stats, items), peak) = peak_heap(|| {
            let mut r = LogReader::from_reader("huge.log", source, Some("conn")).unwrap();
            let items: Vec<_> = r.by_ref().collect();
            (r.stats(), items)
        });
        assert!(peak < 4 << 20, "{peak} bytes of heap for a 50 MB line");
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(skip_reason(&items[0]), "line longer than 1048576 bytes");
        assert!(items[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .starts_with("huge.log:5: "));
        assert_eq!(items[1].as_ref().unwrap().get("uid").as_str(), Some("C"));
        assert_eq!((stats.records, stats.malformed, stats.lines), (1, 1, 6));
        assert_eq!(stats.bytes, CONN_HEADER.len() as u64 + (50 << 20) + 1 + 6);
    }

    /// Zeros without a newline, gzipped on the fly (a gzip bomb): one
    /// skipped line, read in bounded memory, not a fatal error.
    #[test]
    fn a_gzip_bomb_of_zeros_is_one_skipped_line() {
        let zeros = Repeat::new(0, 16 << 20, b"");
        let bomb = flate2::read::GzEncoder::new(zeros, flate2::Compression::fast());
        let (items, peak) = peak_heap(|| {
            LogReader::from_reader("bomb.log.gz", bomb, None)
                .unwrap()
                .collect::<Vec<_>>()
        });
        assert!(peak < 4 << 20, "{peak} bytes of heap for a gzip bomb");
        assert_eq!(items.len(), 1, "{items:?}");
        assert!(skip_reason(&items[0]).starts_with("line longer than"));
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("conn.log");
        mkfifo(&fifo);
        let msg = within(10, move || match LogReader::open(&fifo, Some("conn")) {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        });
        let msg = msg.expect("a FIFO is refused");
        assert!(msg.contains("a FIFO"), "{msg}");
    }

    #[test]
    fn a_device_is_refused() {
        match LogReader::open("/dev/zero", None) {
            Ok(_) => panic!("/dev/zero was opened as a log"),
            Err(e) => assert!(e.to_string().contains("character device"), "{e}"),
        }
    }

    proptest::proptest! {
        /// Any bytes after a TSV header or a JSON line, plain or gzipped,
        /// with any line cap: no panic; every line is a record, a skip or
        /// nothing; nothing ends the file early (unless the cap is below
        /// the header's lines, when the body may be found not to be a log);
        /// and the counts add up.
        #[test]
        fn any_bytes_read_to_the_end(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            json in proptest::prelude::any::<bool>(),
            gz in proptest::prelude::any::<bool>(),
            max in 0usize..80,
        ) {
            let mut text = if json { b"{\"ts\":1}\n".to_vec() } else { CONN_HEADER.to_vec() };
            text.extend_from_slice(&body);
            let input = if gz { gzip(&text) } else { text.clone() };
            let mut r = LogReader::from_reader("any.log", io::Cursor::new(input), None)
                .unwrap()
                .with_max_line(max);
            let (mut records, mut skips, mut fatal) = (0, 0, false);
            for item in r.by_ref() {
                match item {
                    Ok(_) => records += 1,
                    Err(e) if e.is_skip() => skips += 1,
                    Err(ReadError::NotALog { .. }) if max < 20 => fatal = true,
                    Err(e) => proptest::prop_assert!(false, "fatal: {}", e),
                }
            }
            let stats = r.stats();
            proptest::prop_assert_eq!((stats.records, stats.malformed), (records, skips));
            if fatal {
                return Ok(());
            }
            proptest::prop_assert_eq!(stats.bytes, text.len() as u64);
            let lines = text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() as u64;
            proptest::prop_assert!(stats.lines >= lines && records + skips <= stats.lines);
        }
    }

    /// A line of exactly the cap is read; one byte more is skipped.
    #[test]
    fn the_cap_is_inclusive() {
        let text = b"{\"ts\":1}\n{\"ts\":2}\n{\"ts\":12}\n{\"ts\":3}";
        let r = reader(text).with_max_line(8);
        let items: Vec<_> = r.collect();
        assert_eq!(items.len(), 4);
        assert!(items[0].is_ok() && items[1].is_ok() && items[3].is_ok());
        assert_eq!(
            items[2].as_ref().unwrap_err().to_string(),
            "mem.log:3: skipped malformed line: line longer than 8 bytes"
        );
        let mut p = LineParser::new("p.log", None).with_max_line(8);
        assert!(p.parse_line(b"{\"ts\":1}", 1).is_ok());
        assert!(p.parse_line(b"{\"ts\":12}", 2).unwrap_err().is_skip());
    }

    /// `Records` passes its cap to every file.
    #[test]
    fn records_cap_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        let mut text = CONN_HEADER.to_vec();
        text.extend_from_slice(b"1.0\tA\n2.0\tBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\n3.0\tC\n");
        std::fs::write(&path, text).unwrap();
        let mut records =
            super::super::Records::new(vec![path], Some("conn"), true).with_max_line(24);
        assert_eq!(records.by_ref().count(), 2);
        assert_eq!(records.totals().malformed, 1);
    }

    /// An empty `#set_separator` cannot split a set: the header line is a
    /// skip and the previous separator stays (it used to panic).
    #[test]
    fn an_empty_set_separator_is_a_skip_not_a_panic() {
        let mut p = LineParser::new("mem.log", None);
        let header = [
            "#separator \\x09",
            "#set_separator\t",
            "#fields\tts\ttunnel_parents",
            "#types\ttime\tset[string]",
        ];
        let results: Vec<_> = header
            .iter()
            .zip(1..)
            .map(|(l, n)| p.parse_line(l.as_bytes(), n).map(|_| ()))
            .collect();
        let Parsed::Record(r) = p.parse_line(b"1.0\ta,b", 5).unwrap() else {
            panic!("not a record");
        };
        assert_eq!(r.get("tunnel_parents").as_list().map(<[_]>::len), Some(2));
        let err = results[1].as_ref().unwrap_err();
        assert!(err.is_skip());
        assert!(err.to_string().starts_with("mem.log:2: "), "{err}");
        assert!(err.to_string().contains("#set_separator"), "{err}");
    }
}
