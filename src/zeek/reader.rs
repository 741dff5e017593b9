//! Reading one log file, or one stream of lines, into records.
//!
//! [`LineParser`] knows the formats and holds no I/O, so the live follower can
//! feed it lines as Zeek writes them. [`LogReader`] puts a file behind it:
//! gzip is recognised by its magic bytes and the format by the first line,
//! never by the file name; lines are streamed, so memory stays flat whatever
//! the file size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::error::ReadError;
use super::json::JsonState;
use super::record::Record;
use super::tsv::{is_header_line, Directive, TsvHeader};

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
        }
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

    /// Parses one line (without its line ending; a trailing `\r` is
    /// dropped). `Err` with [`ReadError::is_skip`] is a malformed line; any
    /// other error means the stream is not a log of the expected kind.
    pub fn parse_line(&mut self, line: &[u8], line_no: u64) -> Result<Parsed, ReadError> {
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
                        self.check_path(&found)?;
                    }
                    return Ok(Parsed::Nothing);
                }
                self.tsv
                    .parse(line, line_no)
                    .map(Parsed::Record)
                    .map_err(skip)
            }
            Format::Json => {
                let parsed = self.json.parse(line, line_no).map_err(skip)?;
                if let (Some(found), Some(expected)) = (&parsed.path, &self.expected_path) {
                    if found != expected {
                        return Err(skip(format!("`_path` is `{found}`, expected `{expected}`")));
                    }
                }
                Ok(Parsed::Record(parsed.record))
            }
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
            Some(expected) if expected != found => Err(ReadError::WrongPath {
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
    gzip: bool,
    log_skips: bool,
}

impl LogReader {
    /// Opens a file. Fails only if it cannot be opened; what it holds is
    /// found out while reading.
    pub fn open(
        path: impl AsRef<Path>,
        expected_path: Option<&str>,
    ) -> Result<LogReader, ReadError> {
        let path = path.as_ref();
        let io_err = |source| ReadError::Io {
            file: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        LogReader::from_reader(path, file, expected_path).map_err(io_err)
    }

    /// Reads from any byte source; `name` is used in messages.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        source: impl Read + Send + 'static,
        expected_path: Option<&str>,
    ) -> io::Result<LogReader> {
        let mut raw = BufReader::with_capacity(1 << 16, source);
        let gzip = raw.fill_buf()?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn BufRead + Send> = if gzip {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(raw)))
        } else {
            Box::new(raw)
        };
        Ok(LogReader {
            input,
            parser: LineParser::new(name, expected_path),
            line: Vec::with_capacity(1024),
            stats: ReadStats::default(),
            finished: false,
            gzip,
            log_skips: true,
        })
    }

    /// Do not log skipped lines (for a second pass over a file whose
    /// problems were already reported).
    pub fn quiet(mut self) -> LogReader {
        self.log_skips = false;
        self
    }

    pub fn stats(&self) -> ReadStats {
        self.stats
    }

    pub fn format(&self) -> Option<Format> {
        self.parser.format()
    }

    pub fn is_gzip(&self) -> bool {
        self.gzip
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

    fn read_error(&self, source: io::Error) -> ReadError {
        let file = self.file().to_owned();
        match source.kind() {
            io::ErrorKind::InvalidData
            | io::ErrorKind::InvalidInput
            | io::ErrorKind::UnexpectedEof
                if self.gzip =>
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
            self.line.clear();
            let n = match self.input.read_until(b'\n', &mut self.line) {
                Ok(0) => {
                    self.finish();
                    return None;
                }
                Ok(n) => n,
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
                Err(e) if e.is_skip() => {
                    self.stats.malformed += 1;
                    if self.log_skips && self.stats.malformed <= LOGGED_SKIPS_PER_FILE {
                        tracing::warn!("{e}");
                    }
                    return Some(Err(e));
                }
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
        assert!(r.is_gzip());
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

    #[test]
    fn wrong_path_is_fatal_for_tsv() {
        let results: Vec<_> = reader(b"#path\tdns\n#fields\tts\n1\n").collect();
        assert_eq!(results.len(), 1);
        assert_eq!(
            results[0].as_ref().unwrap_err().to_string(),
            "mem.log: holds `dns` records, expected `conn`"
        );
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
