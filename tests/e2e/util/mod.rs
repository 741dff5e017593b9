//! Helpers shared by the end-to-end tests: where the examples are, fresh
//! folders, training through the real `azw-train`, and a running
//! `azw-infer` whose log the test can read while it runs.

#![allow(dead_code)]

#[cfg(feature = "kafka")]
pub mod broker;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A new empty folder, unique to this test process and `name`.
pub fn tempdir(name: &str) -> TestDir {
    TestDir(
        tempfile::Builder::new()
            .prefix(&format!("azw-test-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// A temporary folder, removed when the test ends (pass or fail); reads as
/// a [`Path`].
pub struct TestDir(tempfile::TempDir);

impl std::ops::Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// The fewest records the tests' models are trained on: the example logs
/// are small (44 SSH records), so the tests lower azw-train's default
/// `--min-records` (100) to this; `ops.rs` checks the default itself.
pub const TEST_MIN_RECORDS: &str = "20";

/// Runs `cmd` to its end and asserts that it succeeded, showing its
/// standard error when not; its output.
#[track_caller]
pub fn succeed(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The real `azw-train`, with [`TEST_MIN_RECORDS`].
pub fn azw_train() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azw-train"));
    cmd.env("AZW_MIN_RECORDS", TEST_MIN_RECORDS);
    cmd
}

/// CONN and DNS models trained once per test process on the examples, in
/// the build's own scratch folder (`target/tmp`).
pub fn models() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-models-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        train(&dir, "conn,dns", &[]);
        dir
    })
}

/// The team's corpus of real logs (`../shared/data`, or `AZW_SHARED_DATA`).
/// Tests that need it are marked
/// `#[cfg_attr(not(shared_data), ignore = ...)]` (build.rs sets the cfg when
/// the corpus is there), so a clone without it reports them as ignored,
/// never as passed; one that runs without it anyway fails here.
pub fn shared_data() -> PathBuf {
    let dir = std::env::var_os("AZW_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    assert!(
        dir.join("FILES.tsv").is_file(),
        "this test needs the team's corpus at {} (FILES.tsv not found)",
        dir.display()
    );
    dir
}

/// Trains `modules` (comma-separated) on the example logs into `dir` with
/// the real `azw-train`.
pub fn train(dir: &Path, modules: &str, extra: &[&str]) {
    train_from(&root().join("examples/logs"), dir, modules, extra);
}

/// Trains `modules` on the logs at `logs` (a folder or one file) into `dir`.
pub fn train_from(logs: &Path, dir: &Path, modules: &str, extra: &[&str]) {
    crate::util::succeed(
        crate::util::azw_train()
            .args(["--log-dir", logs.to_str().unwrap()])
            .args([
                "--modules",
                modules,
                "--model-dir",
                dir.to_str().unwrap(),
                "-q",
            ])
            .args(extra),
    );
}

/// The text of an example log, decompressed if it is gzipped.
pub fn example_text(name: &str) -> String {
    let raw = fs::read(root().join("examples/logs").join(name)).unwrap();
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return String::from_utf8(raw).unwrap();
    }
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Sends `child` the signal `name` (`TERM`, `HUP`) without waiting for it.
pub fn signal(child: &Child, name: &str) {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args([format!("-{name}"), pid])
        .status()
        .unwrap()
        .success());
}

/// A running `azw-infer` with its standard error in `log`.
pub struct Infer {
    pub child: Child,
    pub log: PathBuf,
}

impl Infer {
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to flush or checkpoint.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGHUP: reopen the output (what logrotate sends).
    pub fn hup(&self) {
        signal(&self.child, "HUP");
    }

    /// SIGTERM, and the exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        signal(&self.child, "TERM");
        self.child.wait().unwrap()
    }

    /// SIGTERM; the exit status must be success. Returns the log.
    pub fn terminate(mut self) -> String {
        let status = self.sigterm();
        let log = self.log();
        assert!(status.success(), "SIGTERM exits 0, got {status}:\n{log}");
        log
    }
}

impl Drop for Infer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
