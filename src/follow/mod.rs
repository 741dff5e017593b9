//! Following live Zeek logs: rotation, restarts, checkpoints.
//!
//! - [`identity`]: fingerprints that survive renames and gzip; rotated files
//!   in time order.
//! - [`Source`]: one file read incrementally, complete lines only.
//! - [`Follower`]: one module's live log through rotations and restarts.
//! - [`Checkpoint`]: per module, file and offset, with the output length.
//!
//! The threads that score what is followed are in [`crate::pipeline::live`].

mod checkpoint;
mod follower;
pub mod identity;
mod source;

pub use checkpoint::{
    load_json, remove_unfinished_saves, save_json, Checkpoint, CheckpointError, LockFailure,
    OutputMark, Position, SavedState, StateLock, CHECKPOINT_VERSION, LOCK_FILE,
};
pub use follower::{Follower, Step};
pub use source::{Line, Source};

#[cfg(test)]
mod tests;
