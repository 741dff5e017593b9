//! Reading Zeek logs: files in, typed records out.
//!
//! - [`layout`]: which files hold a log path (dated folders, rotation names).
//! - [`LogReader`]: one file, plain or gzip, TSV or JSON (found from the
//!   content), streamed record by record; malformed lines are skipped,
//!   counted and logged with file and line.
//! - [`LineParser`]: the same parsing without I/O, for following live files.
//! - [`Records`]: the records of several files in a row.
//! - [`Record`] and [`Value`]: what a line becomes.

mod error;
mod json;
pub mod layout;
mod reader;
mod record;
mod stream;
#[cfg(test)]
pub(crate) mod testutil;
mod tsv;
mod value;

pub use error::ReadError;
pub use reader::{
    max_line, set_max_line, CappedLines, Format, LineParser, LogReader, Parsed, ReadStats,
    DEFAULT_MAX_LINE,
};
pub(crate) use record::NameMap;
pub use record::{Record, Schema};
pub use stream::{FirstPass, Records, StreamTotals};
pub use value::{Value, ZeekType};
