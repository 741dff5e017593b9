//! A log file an attacker shaped, through the whole replay pipeline: the
//! reader (decompression, header, every field), the features, KitNET, the
//! detectors and the alert stage, and every output format. The first
//! byte picks the log type, the rest is the file.
//!
//! Beyond "no panic, no hang" (libFuzzer's own checks), every output must
//! stay well formed whatever the input held: each JSON-lines document
//! parses, each TSV and notice line has its header's columns, each CSV
//! row its header's fields. A field that breaks out of its place in a
//! SIEM's document or a column is an injection.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, file)) = data.split_first() else {
        return;
    };
    let module = common::MODULES[usize::from(pick) % common::MODULES.len()];
    let path = common::scratch().join(format!("{}.log", module.log_path()));
    std::fs::write(&path, file).expect("scratch file");
    common::replay_and_check(module, &path);
});
