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
pub(crate) mod kafka;
mod siem;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use file::{is_replaceable_output, FileSink};
pub use format::{RecordFormat, Stamp};
#[cfg(feature = "kafka")]
pub use kafka::KafkaSink;
pub use siem::risk_score;

use crate::alert::Alert;
use crate::detect::Detection;
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

/// Why a sink failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing, syncing or reopening the output failed.
    #[error("{target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The output would destroy or mix into a file that is not ours.
    #[error("{target}: {reason}")]
    Refused { target: String, reason: String },
    /// A Kafka output could not take or deliver the records.
    #[error("{0}")]
    Kafka(String),
}

impl SinkError {
    /// True when the reader of standard output went away (`| head`): not a
    /// failure of ours, the run ends quietly.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, SinkError::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// Where scored records go: one interface for a file, standard output and
/// Kafka, so replay, live following, Kafka consumption and the benchmarks
/// drive outputs the same way.
///
/// Progress follows one rule (see [`sync_then`]): a source records how far
/// it got (a checkpoint, committed offsets) only after [`Sink::sync`]
/// returned, so a crash can repeat records but never lose one.
pub trait Sink: Send {
    /// Queues one record (it may sit in a buffer until [`Sink::flush`]).
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError>;

    /// Queues one detection, beside the records, the same way.
    fn write_detection(&mut self, detection: &Detection) -> Result<(), SinkError>;

    /// Queues one alert (opened, updated or closed), the same way.
    fn write_alert(&mut self, alert: &Alert) -> Result<(), SinkError>;

    /// Hands what was written to the reader side (the OS, the producer):
    /// someone tailing the output sees it. Not yet durable.
    fn flush(&mut self) -> Result<(), SinkError>;

    /// Everything written so far is durable when this returns `Ok`
    /// (fsynced, or acknowledged by the brokers).
    fn sync(&mut self) -> Result<(), SinkError>;

    /// Starts a new file at the output's path (SIGHUP, after logrotate
    /// moved it); a sink without a path has nothing to reopen.
    fn reopen(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// The output's length in bytes, for a sink that can be cut back to a
    /// checkpoint after a crash (a file); `None` for the others.
    fn size(&self) -> Option<u64> {
        None
    }

    /// Which file the output is (device, inode), for a sink that can be
    /// cut back: a checkpoint records it, so that only the very file it
    /// measured is ever cut, and a change (the file deleted or replaced)
    /// is checkpointed at once.
    fn identity(&self) -> Option<(u64, u64)> {
        None
    }

    /// The alerts' own output, for a sink that writes them apart
    /// ([`Split`]): its length and identity are checkpointed too.
    fn alert_part(&self) -> Option<&dyn Sink> {
        None
    }
}

/// Records and detections to one sink, alerts to another: one sink to
/// whoever makes outputs durable before recording progress (the Kafka
/// consumer), so both are synced before an offset is committed.
pub struct Split {
    pub records: Box<dyn Sink>,
    pub alerts: Box<dyn Sink>,
}

impl Sink for Split {
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError> {
        self.records.write(record)
    }

    fn write_detection(&mut self, detection: &Detection) -> Result<(), SinkError> {
        self.records.write_detection(detection)
    }

    fn write_alert(&mut self, alert: &Alert) -> Result<(), SinkError> {
        self.alerts.write_alert(alert)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.alerts.flush()?;
        self.records.flush()
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.alerts.sync()?;
        self.records.sync()
    }

    fn reopen(&mut self) -> Result<(), SinkError> {
        self.alerts.reopen()?;
        self.records.reopen()
    }

    fn size(&self) -> Option<u64> {
        self.records.size()
    }

    fn identity(&self) -> Option<(u64, u64)> {
        self.records.identity()
    }

    fn alert_part(&self) -> Option<&dyn Sink> {
        Some(self.alerts.as_ref())
    }
}

/// The one progress rule: makes `sink` durable, then records progress
/// with `commit` (given what is durable: the output's length and file, if
/// it has them). When the sync fails, nothing is committed and the error
/// is returned: the records since the last commit will be derived again
/// after a restart.
pub fn sync_then<T, E: From<SinkError>>(
    sink: &mut dyn Sink,
    commit: impl FnOnce(Durable) -> Result<T, E>,
) -> Result<T, E> {
    sink.sync()?;
    // Both read after the sync: a sync can move a file output to a new
    // file at its path (the old one deleted or replaced), and a length
    // must be named with the file it is the length of.
    commit(Durable {
        len: sink.size(),
        identity: sink.identity(),
    })
}

/// What [`sync_then`] made durable: the output's length and its file's
/// device and inode (a file output's; `None` for others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durable {
    pub len: Option<u64>,
    pub identity: Option<(u64, u64)>,
}

/// Where a restart cuts an output file back to: its length at the last
/// checkpoint, and which file that was (device and inode), when the
/// checkpoint knows. A file that is not that one (rotated, replaced) is
/// appended to and nothing of it is cut; it is checked on the file opened,
/// not on the path before opening, so a rename between the two cannot make
/// a restart cut another file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    pub len: u64,
    pub file: Option<(u64, u64)>,
}

/// How an output is opened.
#[derive(Debug, Clone, Default)]
pub struct SinkOptions {
    pub format: RecordFormat,
    /// What every record and detection is stamped with (the sensor name).
    pub stamp: Stamp,
    /// A file's length at the last checkpoint of the run writing it: what
    /// lies beyond was written by a run that died before its checkpoint
    /// and will be derived again, so it is cut. `None`: append, cut nothing.
    pub cut_to: Option<Cut>,
    /// Extra librdkafka settings for a Kafka output (`key`, `value`).
    pub kafka_config: Vec<(String, String)>,
}

/// Opens `spec`. A file is appended to (after cutting back to
/// `opts.cut_to`); an existing file that is not an autozeekwatch output of
/// the same format is refused, never overwritten or mixed into.
pub fn open(spec: &OutputSpec, opts: &SinkOptions) -> Result<Box<dyn Sink>, SinkError> {
    match spec {
        OutputSpec::Stdout => Ok(Box::new(
            FileSink::stdout(opts.format)?.with_stamp(opts.stamp.clone()),
        )),
        OutputSpec::File(p) => Ok(Box::new(
            FileSink::open(p, opts.cut_to, opts.format)?.with_stamp(opts.stamp.clone()),
        )),
        OutputSpec::Kafka { .. } if !opts.format.is_json_lines() => Err(SinkError::Refused {
            target: spec.to_string(),
            reason: format!(
                "a Kafka message carries one JSON document: use --format json, ecs, eve or notice-json, not {}",
                opts.format.name()
            ),
        }),
        #[cfg(feature = "kafka")]
        OutputSpec::Kafka { brokers, topic } => Ok(Box::new(KafkaSink::connect(
            brokers,
            topic,
            &opts.kafka_config,
            opts.format,
            opts.stamp.clone(),
        )?)),
        #[cfg(not(feature = "kafka"))]
        OutputSpec::Kafka { .. } => Err(SinkError::Refused {
            target: spec.to_string(),
            reason: "this build has no Kafka support; build it with `cargo build --release --features kafka`".into(),
        }),
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

    /// A sink whose sync fails on demand, recording the order of calls.
    struct Flaky {
        fail_sync: bool,
        calls: Vec<&'static str>,
    }

    impl Sink for Flaky {
        fn write_alert(&mut self, _: &Alert) -> Result<(), SinkError> {
            Ok(())
        }
        fn write_detection(&mut self, _: &Detection) -> Result<(), SinkError> {
            Ok(())
        }
        fn write(&mut self, _: &ScoredRecord) -> Result<(), SinkError> {
            self.calls.push("write");
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn sync(&mut self) -> Result<(), SinkError> {
            self.calls.push("sync");
            if self.fail_sync {
                return Err(SinkError::Kafka("brokers gone".into()));
            }
            Ok(())
        }
        fn size(&self) -> Option<u64> {
            Some(42)
        }
    }

    #[test]
    fn progress_is_committed_only_after_the_sink_is_durable() {
        let mut sink = Flaky {
            fail_sync: false,
            calls: Vec::new(),
        };
        let mut committed = None;
        sync_then::<_, SinkError>(&mut sink, |durable| {
            committed = durable.len;
            Ok(())
        })
        .unwrap();
        assert_eq!(committed, Some(42));
        assert_eq!(sink.calls, ["sync"]);

        let mut sink = Flaky {
            fail_sync: true,
            calls: Vec::new(),
        };
        let mut called = false;
        let r = sync_then::<_, SinkError>(&mut sink, |_| {
            called = true;
            Ok(())
        });
        assert!(r.is_err());
        assert!(!called, "a failed sync must not be followed by a commit");
    }
}
