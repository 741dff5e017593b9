//! The scoring pipeline, the same in every mode: a source of parsed lines,
//! one [`Lane`] per log type that turns them into scored records, and one
//! [`Sink`](crate::sink::Sink) they go to.
//!
//! - [`lane`]: scorer, model reloader, output filter and counters.
//! - [`emit`]: the lanes' outputs to the sink, through the detectors
//!   ([`crate::detect`]).
//! - [`replay`]: historical files scored once, in order.
//! - [`parallel`]: a stream read on one thread, scored on several, taken
//!   back in input order (replay).
//! - [`live`]: Zeek's live logs followed through rotations and restarts.
//! - [`cadence`]: when live and Kafka runs checkpoint (less often when a
//!   checkpoint is costly).
//! - Kafka consumption lives in [`crate::kafka`] and uses the same lanes.
//!
//! Progress follows one rule everywhere ([`crate::sink::sync_then`]): the
//! sink is made durable first, then the source's position (a checkpoint,
//! committed offsets) is recorded.

pub mod cadence;
mod drift;
pub mod emit;
pub mod lane;
pub mod live;
pub mod parallel;
pub mod replay;
pub(crate) mod resume;
pub mod warm;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

pub use emit::Emitter;
pub use lane::{Lane, LaneOptions, LaneStats, LaneWorker, Output, Scored, Throttle};
pub use live::{run_live, LiveOptions};
pub use replay::{replay, ReplayReport, TopAnomalies};

use crate::follow::CheckpointError;
use crate::log_kind::LogKind;
use crate::model::ModelError;
use crate::sink::SinkError;
use crate::zeek::layout::LayoutError;

/// Set by signal handlers (or tests): stop, or reopen the output.
#[derive(Debug, Clone, Default)]
pub struct Controls {
    pub stop: Arc<AtomicBool>,
    pub reopen: Arc<AtomicBool>,
}

/// Why a run stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// (The model error is shown in the message, not chained, so it is
    /// printed once.)
    #[error("{module}: {error}{}", train_hint(.module, .error))]
    Model { module: LogKind, error: ModelError },
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state folder is in use by another running azw-infer.
    #[error("{}: another azw-infer is running with this state directory (it holds the lock {}); stop it, or give each process its own (--state-dir, --kafka-state-dir)", dir.display(), dir.join(live::LOCK_FILE).display())]
    StateLocked { dir: PathBuf },
    /// The state folder, or its lock file, could not be made or opened
    /// (`cause` is said in the message, not chained after the advice).
    #[error("{}: the state directory (--state-dir, --kafka-state-dir) cannot be made or locked: {cause}; give a folder this user can write (the packaged service's is /var/lib/autozeekwatch/state), or make this one writable by it", path.display())]
    StateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A log type's thread failed or panicked; the run stops so a
    /// supervisor restarts it from the last checkpoint.
    #[error("{module}: {reason}")]
    LaneFailed { module: LogKind, reason: String },
    /// The output did not take the records; nothing past the last durable
    /// point was recorded.
    #[error("{0}; stopped without recording progress past the last checkpoint")]
    Output(SinkError),
    #[error("{0}")]
    Kafka(String),
    /// Nothing to read: a replay found no log of any log type asked for.
    #[error("{0}")]
    NoInput(String),
}

/// "Train a model first" is the advice only where there is no model file:
/// an unreadable, damaged or foreign one needs something else (its own
/// message says what).
fn train_hint(module: &LogKind, error: &ModelError) -> String {
    match error {
        ModelError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            // A log type without a built-in table is trained only with a
            // table of one's own: "azw-train --modules FOO" alone was
            // refused as an unknown module.
            if crate::tables::Tables::built_in().get(*module).is_some() {
                format!("; train a model first (azw-train --modules {module})")
            } else {
                format!(
                    "; train a model first: {module} has no built-in feature table, so give it one (azw-train --modules {module} --tables DIR, with DIR/{}.toml), or check the name (--help lists the log types)",
                    module.log_path()
                )
            }
        }
        // The unit's start step (`azw-train --only-missing`) trains it
        // again; said, so that a damaged model is not a restart loop
        // without a way out.
        ModelError::Corrupt { .. } if crate::tables::Tables::built_in().get(*module).is_some() => {
            format!("; train it again (azw-train --modules {module}; --only-missing retrains a model that does not load)")
        }
        _ => String::new(),
    }
}

impl RunError {
    /// True when the run ended because the reader of standard output went
    /// away (`| head`): the caller ends quietly and successfully.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            RunError::Sink(e) | RunError::Output(e) => e.is_broken_pipe(),
            _ => false,
        }
    }
}
