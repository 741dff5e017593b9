//! Tells the end-to-end tests whether the team's corpus of real logs
//! (`../shared/data`, or `AZW_SHARED_DATA`) is beside the repository: the
//! tests that need it are ignored, and reported so, without it. The same
//! for zat (a Python reader of Zeek logs, `AZW_PYTHON` or `python3`): the
//! test that reads our notice log with it is ignored where it is missing.

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
    println!("cargo::rustc-check-cfg=cfg(zat)");
    println!("cargo::rerun-if-env-changed=AZW_PYTHON");
    let python = std::env::var("AZW_PYTHON").unwrap_or_else(|_| "python3".into());
    let zat = std::process::Command::new(python)
        .args(["-c", "import zat.log_to_dataframe"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if zat {
        println!("cargo::rustc-cfg=zat");
    }
}
