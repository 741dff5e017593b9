//! Tells the end-to-end tests whether the team's corpus of real logs
//! (`../shared/data`, or `AZW_SHARED_DATA`) is beside the repository: the
//! tests that need it are ignored, and reported so, without it.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_data)");
    println!("cargo::rerun-if-env-changed=AZW_SHARED_DATA");
    let dir = std::env::var_os("AZW_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
                .join("../shared/data")
        });
    let index = dir.join("FILES.tsv");
    println!("cargo::rerun-if-changed={}", index.display());
    if index.is_file() {
        println!("cargo::rustc-cfg=shared_data");
    }
}
