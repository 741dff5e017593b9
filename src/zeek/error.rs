//! Errors of the log reader. Every one names the file; a skipped line also
//! names its line number, so an operator can open the file at the spot.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// One line could not be read as a record. Reading goes on; the reader
    /// counts it in [`super::ReadStats::malformed`].
    #[error("{}:{line}: skipped malformed line: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: u64,
        reason: String,
    },

    /// The file is not a Zeek log (no `#` header and no JSON object on its
    /// first line). Nothing is read from it.
    #[error("{}: not a Zeek log: {reason}", file.display())]
    NotALog { file: PathBuf, reason: String },

    /// The file's `#path` or `_path` names another log than the one asked for.
    #[error("{}: holds `{found}` records, expected `{expected}`", file.display())]
    WrongPath {
        file: PathBuf,
        expected: String,
        found: String,
    },

    /// The gzip stream is damaged or cut short. The records before the damage
    /// have been yielded; the rest of the file is lost.
    #[error("{}: damaged after line {line}: {source} (the records before it were read)", file.display())]
    Corrupt {
        file: PathBuf,
        line: u64,
        #[source]
        source: std::io::Error,
    },

    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    /// A skipped line: the reader carries on after it. Every other error ends
    /// the file.
    pub fn is_skip(&self) -> bool {
        matches!(self, ReadError::Malformed { .. })
    }
}
