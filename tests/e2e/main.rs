//! End-to-end tests: the real binaries on real Zeek logs, in one test
//! binary (one link, one place for the helpers in [`util`]).
//!
//! Tests that need the team's corpus (`../shared/data`) are reported as
//! ignored on a clone without it; `build.rs` tells them apart.

mod util;

mod eval_cli;
mod hostile_output;
mod hostile_pipeline;
mod hostile_reader;
mod infer_live;
#[cfg(feature = "kafka")]
mod kafka;
mod kitnet_reference;
mod ops;
mod reader;
mod replay_cli;
mod shared_data;
mod siem_formats;
mod site;
mod tables;
mod train_cli;
mod traps;
