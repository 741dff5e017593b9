//! The three tools' command lines, in one place so each tool can check a
//! shared config file against all of them (a key at the top of the file
//! must be some tool's flag).

pub mod eval;
pub mod infer;
pub mod train;

use clap::Command;

use super::config::command;

/// Every tool's command line, as the tools parse it.
pub fn all() -> Vec<(&'static str, Command)> {
    vec![
        ("azw-train", command::<train::Args>("azw-train")),
        ("azw-infer", command::<infer::Args>("azw-infer")),
        ("azw-eval", command::<eval::Args>("azw-eval")),
    ]
}
