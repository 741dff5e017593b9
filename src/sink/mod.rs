//! Where scored records go: a file, standard output, or (with the `kafka`
//! feature) a Kafka topic.
//!
//! Every sink has one notion of progress: [`Sink::sync`] returns once all
//! that was written is durable (fsynced, or acknowledged by the brokers).
//! Callers record their progress (a checkpoint, committed offsets) only
//! after it, so a crash can repeat records but never lose one.

mod file;
mod format;
#[cfg(feature = "kafka")]
mod kafka;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use file::FileSink;
pub use format::RecordFormat;
#[cfg(feature = "kafka")]
pub use kafka::KafkaSink;

use crate::score::ScoredRecord;

/// The `--output` argument: `-`, a file path, or `kafka://HOST:PORT/TOPIC`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputSpec {
    Stdout,
    File(PathBuf),
    /// `brokers`: `HOST:PORT`, or several separated by commas.
    Kafka {
        brokers: String,
        topic: String,
    },
}

impl FromStr for OutputSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<OutputSpec, String> {
        if s == "-" {
            return Ok(OutputSpec::Stdout);
        }
        if let Some(rest) = s.strip_prefix("kafka://") {
            return match rest.split_once('/') {
                Some((brokers, topic)) if !brokers.is_empty() && !topic.is_empty() && !topic.contains('/') => {
                    Ok(OutputSpec::Kafka {
                        brokers: brokers.to_owned(),
                        topic: topic.to_owned(),
                    })
                }
                _ => Err(format!(
                    "`{s}`: a Kafka output is kafka://HOST:PORT/TOPIC (several brokers: kafka://h1:9092,h2:9092/TOPIC)"
                )),
            };
        }
        if s.is_empty() {
            return Err("an empty output path: give a file, `-` or kafka://HOST:PORT/TOPIC".into());
        }
        Ok(OutputSpec::File(PathBuf::from(s)))
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutputSpec::Stdout => f.write_str("standard output"),
            OutputSpec::File(p) => write!(f, "{}", p.display()),
            OutputSpec::Kafka { brokers, topic } => write!(f, "kafka://{brokers}/{topic}"),
        }
    }
}

impl OutputSpec {
    pub fn file(&self) -> Option<&Path> {
        match self {
            OutputSpec::File(p) => Some(p),
            _ => None,
        }
    }
}

/// An open sink.
pub enum Sink {
    File(FileSink),
    #[cfg(feature = "kafka")]
    Kafka(KafkaSink),
}

impl Sink {
    /// Opens the output. `cut_to`: for a file, its length at the last
    /// checkpoint (see [`FileSink::open`]). `format`: how records are
    /// written (Kafka outputs take JSON only). `kafka_config`: extra librdkafka
    /// settings for a Kafka output.
    pub fn open(
        spec: &OutputSpec,
        cut_to: Option<u64>,
        format: RecordFormat,
        #[cfg_attr(not(feature = "kafka"), allow(unused_variables))] kafka_config: &[(
            String,
            String,
        )],
    ) -> anyhow::Result<Sink> {
        match spec {
            OutputSpec::Stdout => Ok(Sink::File(FileSink::open(None, None, format)?)),
            OutputSpec::File(p) => Ok(Sink::File(FileSink::open(Some(p), cut_to, format)?)),
            #[cfg(feature = "kafka")]
            OutputSpec::Kafka { .. } if format != RecordFormat::Json => Err(anyhow::anyhow!(
                "{spec}: Kafka outputs carry JSON records; drop --format {format:?}"
            )),
            #[cfg(feature = "kafka")]
            OutputSpec::Kafka { brokers, topic } => Ok(Sink::Kafka(KafkaSink::connect(
                brokers,
                topic,
                kafka_config,
            )?)),
            #[cfg(not(feature = "kafka"))]
            OutputSpec::Kafka { .. } => Err(anyhow::anyhow!(
                "{spec}: this azw-infer was built without Kafka support; build it with `cargo build --release --features kafka`"
            )),
        }
    }

    /// A handle for threads that publish records one by one (a Kafka
    /// output, where each record needs its own key); `None` for a file,
    /// where they hand whole batches of lines to [`Sink::write_lines`].
    pub fn publisher(&self) -> Option<Publisher> {
        match self {
            Sink::File(_) => None,
            #[cfg(feature = "kafka")]
            Sink::Kafka(k) => Some(Publisher(k.clone())),
        }
    }

    /// Appends JSON lines (a file) ; a Kafka sink takes records through its
    /// [`Publisher`] instead, so it is handed none.
    pub fn write_lines(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File(f) => f.write(bytes),
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => {
                debug_assert!(bytes.is_empty(), "records for Kafka go through a Publisher");
                Ok(())
            }
        }
    }

    /// Writes one record (`line`: a buffer to reuse). A file sees it after
    /// the next [`Sink::flush`] or [`Sink::sync`].
    pub fn write_record(
        &mut self,
        record: &ScoredRecord,
        line: &mut Vec<u8>,
    ) -> anyhow::Result<()> {
        line.clear();
        self.format().write(record, line)?;
        match self {
            Sink::File(f) => Ok(f.append(line)?),
            #[cfg(feature = "kafka")]
            Sink::Kafka(k) => k.publish(record, line),
        }
    }

    /// How records are written: what [`Sink::write_lines`] expects.
    pub fn format(&self) -> RecordFormat {
        match self {
            Sink::File(f) => f.format(),
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => RecordFormat::Json,
        }
    }

    /// Hands what was written to the OS (a file) or leaves it to the
    /// producer's own batching (Kafka).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => Ok(f.flush()?),
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => Ok(()),
        }
    }

    /// Everything written so far is durable when this returns Ok.
    pub fn sync(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => Ok(f.sync()?),
            #[cfg(feature = "kafka")]
            Sink::Kafka(k) => k.sync(),
        }
    }

    /// A file's length (what a checkpoint records); 0 for the others.
    pub fn len(&self) -> u64 {
        match self {
            Sink::File(f) => f.len(),
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// SIGHUP: a file is reopened (logrotate moved it); others have
    /// nothing to reopen.
    pub fn reopen(&mut self) -> anyhow::Result<()> {
        match self {
            Sink::File(f) => f.reopen(),
            #[cfg(feature = "kafka")]
            Sink::Kafka(_) => Ok(()),
        }
    }
}

/// Publishes records one at a time (see [`Sink::publisher`]).
#[derive(Clone)]
pub struct Publisher(
    #[cfg(feature = "kafka")] KafkaSink,
    #[cfg(not(feature = "kafka"))] std::convert::Infallible,
);

impl Publisher {
    /// `line`: the record's JSON line, as a file would get it.
    pub fn publish(&self, record: &ScoredRecord, line: &[u8]) -> anyhow::Result<()> {
        #[cfg(feature = "kafka")]
        {
            self.0.publish(record, line)
        }
        #[cfg(not(feature = "kafka"))]
        {
            let _ = (record, line);
            match self.0 {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!("-".parse(), Ok(OutputSpec::Stdout));
        assert_eq!(
            "scores.json".parse(),
            Ok(OutputSpec::File(PathBuf::from("scores.json")))
        );
        assert_eq!(
            "kafka://127.0.0.1:9092,b2:9092/azw-scores".parse(),
            Ok(OutputSpec::Kafka {
                brokers: "127.0.0.1:9092,b2:9092".into(),
                topic: "azw-scores".into()
            })
        );
        for bad in [
            "kafka://",
            "kafka://host:9092",
            "kafka:///t",
            "kafka://h/t/u",
            "",
        ] {
            assert!(bad.parse::<OutputSpec>().is_err(), "{bad}");
        }
    }
}
