//! Following live Zeek logs: rotation, restarts, checkpoints.
//!
//! - [`identity`]: fingerprints that survive renames and gzip; rotated files
//!   in time order.
//! - [`Source`]: one file read incrementally, complete lines only.
//! - [`Follower`]: one module's live log through rotations and restarts.
//! - [`Checkpoint`]: per module, file and offset, with the output length.
//! - [`run_live`]: the threads (one per module, one writer) and signals.

mod checkpoint;
mod follower;
pub mod identity;
mod pipeline;
mod source;

pub use checkpoint::{Checkpoint, CheckpointError, Position};
pub use follower::{Follower, Step};
pub use pipeline::{run_live, Controls, LiveOptions, ModuleStats};
pub use source::{Line, Source};

#[cfg(test)]
mod tests;
