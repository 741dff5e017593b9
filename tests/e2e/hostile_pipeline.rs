//! What must hold whatever the inputs and outputs are: a model sees only
//! its own log type, replay never destroys a file that is not its output,
//! and exit codes say what happened.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::util::{models, root, tempdir};

fn infer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--model-dir", models().to_str().unwrap(), "-q"])
        .args(args)
        .output()
        .unwrap()
}

fn example(name: &str) -> String {
    root()
        .join("examples/logs")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn modules_in(text: &str) -> Vec<String> {
    let mut m: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["module"].to_string())
        .collect();
    m.sort();
    m.dedup();
    m
}

#[test]
fn a_file_named_directly_is_scored_by_its_own_model_only() {
    // The default --modules ALL has CONN and DNS models here.
    let out = infer(&["--replay", &example("conn.json.gz")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(modules_in(&text), ["\"CONN\""]);
    let records = crate::util::example_text("conn.json.gz").lines().count();
    assert_eq!(text.lines().count(), records);
}

#[test]
fn training_on_one_file_writes_only_its_model() {
    let dir = tempdir("one-file");
    crate::util::train_from(Path::new(&example("conn.json.gz")), &dir, "ALL", &[]);
    let mut written: Vec<String> = fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, ["conn.model.json"]);
}

#[test]
fn replay_never_replaces_an_input_a_link_or_a_foreign_file() {
    let dir = tempdir("targets");
    let input = dir.join("conn.log");
    fs::copy(example("conn.log"), &input).unwrap();
    let original = fs::read(&input).unwrap();
    let input_s = input.to_str().unwrap();
    let out = infer(&["--replay", input_s, "--output", input_s]);
    assert!(!out.status.success());
    assert_eq!(
        fs::read(&input).unwrap(),
        original,
        "the input was replaced"
    );

    let kept = dir.join("notes.txt");
    fs::write(&kept, "not ours\n").unwrap();
    let link = dir.join("scores.json");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    let out = infer(&["--replay", input_s, "--output", link.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read_to_string(&kept).unwrap(), "not ours\n");

    let out = infer(&["--replay", input_s, "--output", kept.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an autozeekwatch"));
    assert_eq!(fs::read_to_string(&kept).unwrap(), "not ours\n");

    // Its own earlier output is replaced.
    let scores = dir.join("scores2.json");
    for _ in 0..2 {
        let out = infer(&["--replay", input_s, "--output", scores.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        fs::read_to_string(&scores).unwrap().lines().count(),
        original
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count()
    );
}

#[test]
fn replay_exits_2_when_an_input_cannot_be_read() {
    let dir = tempdir("failing");
    fs::write(dir.join("conn.log"), "this is not a Zeek log\n").unwrap();
    let out = infer(&["--replay", dir.to_str().unwrap(), "--modules", "conn"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not be read"), "{err}");
}

/// `| head`: the reader goes away after one line; the tool ends quietly
/// with success instead of "Broken pipe" or a panic.
fn closed_pipe(cmd: &mut Command) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}

#[test]
fn a_closed_standard_output_is_a_quiet_success() {
    let logs = root().join("examples/logs");
    let logs = logs.to_str().unwrap();
    closed_pipe(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--model-dir", models().to_str().unwrap(), "-q"])
            .args(["--replay", logs, "--output", "-"]),
    );
    closed_pipe(crate::util::azw_train().args(["--log-dir", logs, "--dry-run"]));
    closed_pipe(
        crate::util::azw_train()
            .arg("--inspect")
            .arg(models().join("conn.model.json")),
    );
    closed_pipe(Command::new(env!("CARGO_BIN_EXE_azw-infer")).args(["--generate", "man"]));
    closed_pipe(crate::util::azw_train().args(["--generate", "bash"]));
}

/// A FIFO where a log or a model should be: refused, no hang.
#[test]
fn fifos_are_refused_without_hanging() {
    let dir = tempdir("fifo");
    let logs = dir.join("logs");
    fs::create_dir_all(&logs).unwrap();
    fs::copy(example("conn.log"), logs.join("conn.log")).unwrap();
    mkfifo(&logs.join("dns.log"));
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--model-dir", models().to_str().unwrap(), "-q"])
            .args(["--replay", logs.to_str().unwrap()]),
    );
    assert!(out.status.code().is_some(), "{out:?}");
    let models_dir = dir.join("models");
    fs::create_dir_all(&models_dir).unwrap();
    mkfifo(&models_dir.join("conn.model.json"));
    let out = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args([
                "--model-dir",
                models_dir.to_str().unwrap(),
                "--modules",
                "conn",
            ])
            .args(["--replay", logs.to_str().unwrap()]),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FIFO"),
        "{out:?}"
    );
    // The config file of each program, a FIFO or a device: refused with
    // the reason (each blocked in its open for good, or read /dev/zero
    // until the memory ran out).
    let fifo = dir.join("azw.toml");
    mkfifo(&fifo);
    for config in [fifo.as_path(), Path::new("/dev/zero")] {
        for program in [
            env!("CARGO_BIN_EXE_azw-infer"),
            env!("CARGO_BIN_EXE_azw-train"),
            env!("CARGO_BIN_EXE_azw-eval"),
        ] {
            let out = run_with_timeout(Command::new(program).arg("--config").arg(config));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{program}: {stderr}");
            assert!(stderr.contains("not a regular file"), "{program}: {stderr}");
        }
    }
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Runs a command that must end by itself within 30 s (a hang fails the
/// test instead of stalling the suite).
fn run_with_timeout(cmd: &mut Command) -> Output {
    // Standard output is not read while waiting: it goes nowhere, so a
    // full pipe cannot stall the child.
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("hung on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn lines_over_the_cap_are_skipped_and_counted() {
    let dir = tempdir("cap");
    let text = fs::read_to_string(example("conn.log")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let first_data = lines.iter().position(|l| !l.starts_with('#')).unwrap();
    let records = lines.iter().filter(|l| !l.starts_with('#')).count();
    lines[first_data].push_str(&"x".repeat(5000));
    fs::write(dir.join("conn.log"), lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--model-dir", models().to_str().unwrap()])
        .args(["--replay", dir.join("conn.log").to_str().unwrap()])
        .args(["--max-line-bytes", "4096"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        records - 1
    );
    assert!(err.contains("longer than 4096 bytes"), "{err}");
    assert!(err.contains("1 skipped"), "{err}");
}

/// Replay reading past one endless line (64 GiB of zeros, sparse on disk)
/// stops at once on SIGTERM and leaves the output as it was.
#[test]
fn replay_honours_sigterm_inside_a_huge_line() {
    let dir = tempdir("replay-term");
    let log = dir.join("conn.log");
    fs::write(&log, "#separator \\x09\n#path\tconn\n").unwrap();
    fs::File::options()
        .append(true)
        .open(&log)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let out = dir.join("scores.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args([
            "--model-dir",
            models().to_str().unwrap(),
            "--modules",
            "conn",
        ])
        .args(["--replay", log.to_str().unwrap()])
        .args(["--output", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let asked = std::time::Instant::now();
    crate::util::signal(&child, "TERM");
    while child.try_wait().unwrap().is_none() {
        if asked.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("replay did not stop within 20 s of SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let took = asked.elapsed();
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        took < std::time::Duration::from_secs(2),
        "took {took:?}: {err}"
    );
    assert!(!output.status.success(), "{err}");
    assert!(err.contains("stopped before the end"), "{err}");
    assert!(!out.exists(), "a half output was left");
}
