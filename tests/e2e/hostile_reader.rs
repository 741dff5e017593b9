//! The reader against hostile input, through the real `azw-infer` and
//! `azw-train`: special files in a log folder or named directly, and a gzip
//! bomb (a line of zeros that never ends) among the logs.
//!
//! Every binary here runs under a time limit and a data-size limit, so a
//! regression (a FIFO that blocks, a line held in memory) fails the test
//! rather than hanging the run or eating the machine; its peak resident
//! memory is measured from its own `wait4`.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::util::{models, root, tempdir};

/// What a finished binary did.
struct Run {
    status: ExitStatus,
    stderr: String,
    /// Peak resident memory, KiB.
    max_rss_kib: i64,
}

/// The most a guarded binary may map for data: far above what a reader with
/// bounded lines needs, far below what would hurt the machine.
const DATA_LIMIT: libc::rlim_t = 1 << 30;

/// Runs `cmd` to its end, killing it and failing the test after `secs`.
fn run_guarded(mut cmd: Command, secs: u64) -> Run {
    let dir = tempdir("guard");
    let err_path = dir.join("stderr");
    // SAFETY: setrlimit is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: DATA_LIMIT,
                rlim_max: DATA_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // Reaped below by `wait4`, which also reports the child's peak memory.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data, filled in by wait4.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child only.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        let stderr = || fs::read_to_string(&err_path).unwrap_or_default();
        if done == pid {
            return Run {
                status: ExitStatus::from_raw(status),
                stderr: stderr(),
                max_rss_kib: usage.ru_maxrss,
            };
        }
        assert_eq!(done, 0, "wait4: {}", std::io::Error::last_os_error());
        if Instant::now() > deadline {
            // SAFETY: signals and reaps our own child, which has not been
            // reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("did not finish within {secs} s (it blocks):\n{}", stderr());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn replay(input: &Path, output: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azw-infer"));
    cmd.arg("--replay")
        .arg(input)
        .args(["--modules", "CONN", "--model-dir"])
        .arg(models())
        .arg("--output")
        .arg(output);
    cmd
}

fn train(log_dir: &Path, model_dir: &Path) -> Command {
    let mut cmd = crate::util::azw_train();
    cmd.arg("--log-dir")
        .arg(log_dir)
        .args(["--modules", "CONN", "--model-dir"])
        .arg(model_dir);
    cmd
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A log folder holding the example conn log, and the number of records
/// in it.
fn conn_folder(name: &str) -> (crate::util::TestDir, usize) {
    let dir = tempdir(name);
    fs::copy(root().join("examples/logs/conn.log"), dir.join("conn.log")).unwrap();
    let records = crate::util::example_text("conn.log")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count();
    (dir, records)
}

/// Scored records in a replay output.
fn scored(output: &Path) -> Vec<String> {
    fs::read_to_string(output)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"uid\""))
        .map(str::to_owned)
        .collect()
}

/// A FIFO, a link that loops and a folder, each named as a rotated conn
/// log: replay and training read the rest, name each, and exit 2 (inputs
/// that could not be read), not 0 as if everything had been.
#[test]
fn replay_and_training_skip_a_fifo_in_the_log_folder() {
    let (dir, records) = conn_folder("fifo-folder");
    mkfifo(&dir.join("conn.01_00_00-02_00_00.log"));
    std::os::unix::fs::symlink("loop-b", dir.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", dir.join("loop-b")).unwrap();
    std::os::unix::fs::symlink("loop-a", dir.join("conn.02_00_00-03_00_00.log")).unwrap();
    fs::create_dir(dir.join("conn.03_00_00-04_00_00.log")).unwrap();
    let said = |stderr: &str| {
        ["a FIFO", "conn.02_00_00-03_00_00.log", "a folder"]
            .iter()
            .all(|s| stderr.contains(s))
    };
    let out = dir.join("scores.json");
    let run = run_guarded(replay(&dir, &out), 60);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(said(&run.stderr), "{}", run.stderr);
    assert!(run.stderr.contains("3 of 4 input files"), "{}", run.stderr);
    assert_eq!(scored(&out).len(), records);

    let run = run_guarded(train(&dir, &dir.join("models")), 120);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(said(&run.stderr), "{}", run.stderr);
    assert!(dir.join("models/conn.model.json").is_file());
}

#[test]
fn a_special_file_named_directly_is_refused_clearly() {
    let dir = tempdir("fifo-direct");
    let fifo = dir.join("conn.log");
    mkfifo(&fifo);
    for input in [fifo.as_path(), Path::new("/dev/zero")] {
        let run = run_guarded(replay(input, &dir.join("scores.json")), 60);
        assert!(!run.status.success(), "{}", run.stderr);
        assert!(
            run.stderr.contains("a FIFO") || run.stderr.contains("a character device"),
            "{}",
            run.stderr
        );
        let run = run_guarded(train(input, &dir.join("models")), 60);
        assert!(!run.status.success(), "{}", run.stderr);
        assert!(
            run.stderr.contains("a FIFO") || run.stderr.contains("a character device"),
            "{}",
            run.stderr
        );
    }
}

/// A log named like a rotated conn log that is a link to `/dev/zero` (an
/// endless stream of zeros): skipped, not read forever.
#[test]
fn a_link_to_dev_zero_in_the_log_folder_is_skipped() {
    let (dir, records) = conn_folder("dev-zero");
    std::os::unix::fs::symlink("/dev/zero", dir.join("conn.01_00_00-02_00_00.log")).unwrap();
    let out = dir.join("scores.json");
    let run = run_guarded(replay(&dir, &out), 60);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("a character device"), "{}", run.stderr);
    assert_eq!(scored(&out).len(), records);
}

/// One gzip member holding `bytes`.
fn gzip_member(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Uncompressed size of the bomb's line of zeros.
const BOMB_MIB: usize = 128;

/// A rotated conn log whose header is followed by `BOMB_MIB` MiB of zeros
/// without a newline, then one good record (uid `Cbombsurvivor1`): gzip
/// members of 1 MiB of zeros repeated, about 1 KiB each, so the file is
/// small and the decompressed stream huge.
fn write_bomb(path: &Path) {
    let text = crate::util::example_text("conn.log");
    let header: String = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("#close"))
        .map(|l| format!("{l}\n"))
        .collect();
    let last = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
    let mut fields: Vec<&str> = last.split('\t').collect();
    fields[1] = "Cbombsurvivor1";
    let mut file = File::create(path).unwrap();
    file.write_all(&gzip_member(header.as_bytes())).unwrap();
    let zeros = gzip_member(&vec![0u8; 1 << 20]);
    for _ in 0..BOMB_MIB {
        file.write_all(&zeros).unwrap();
    }
    let tail = format!("\n{}\n", fields.join("\t"));
    file.write_all(&gzip_member(tail.as_bytes())).unwrap();
}

/// Resident memory a reader with a 1 MiB line cap stays under, whatever
/// the line: far below the bomb's size.
const MAX_RSS_KIB: i64 = 64 << 10;

#[test]
fn a_gzip_bomb_streams_through_replay_and_training_in_bounded_memory() {
    let (dir, records) = conn_folder("gzip-bomb");
    write_bomb(&dir.join("conn.01_00_00-02_00_00.log.gz"));
    let out = dir.join("scores.json");
    let run = run_guarded(replay(&dir, &out), 120);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "replay peaked at {} KiB for a {BOMB_MIB} MiB line",
        run.max_rss_kib
    );
    assert!(
        run.stderr.contains("line longer than 1048576 bytes"),
        "{}",
        run.stderr
    );
    let scored = scored(&out);
    assert_eq!(
        scored.len(),
        records + 1,
        "the record after the bomb is read"
    );
    assert!(scored.iter().any(|l| l.contains("Cbombsurvivor1")));

    let run = run_guarded(train(&dir, &dir.join("models")), 300);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "training peaked at {} KiB for a {BOMB_MIB} MiB line",
        run.max_rss_kib
    );
}

/// Lines just under the 1 MiB cap, many of them: a 900 KB `service`
/// (text) and a `tunnel_parents` of 999,000 empty elements (a set, each
/// element a 32-byte value). Replay held 512 such records a chunk, a dozen
/// chunks in flight, and training 1,024 a batch: hundreds of megabytes
/// from a file of a few hundred kilobytes. Now chunks and batches close at
/// a byte budget, and sets keep their first 1,024 elements.
#[test]
fn many_lines_near_the_cap_stream_in_bounded_memory() {
    let dir = tempdir("near-cap");
    let text = crate::util::example_text("conn.log");
    let header: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("#close"))
        .collect();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let fields: Vec<&str> = header
        .iter()
        .find_map(|l| l.strip_prefix("#fields\t"))
        .unwrap()
        .split('\t')
        .collect();
    let column = |name: &str| fields.iter().position(|f| *f == name).unwrap();
    let (service, parents) = (column("service"), column("tunnel_parents"));
    // Made and freed before the binaries start: a child's peak memory
    // counts what it shared with this process when it was forked.
    let n = 400;
    let gz = {
        let mut body = header.join("\n") + "\n";
        let (long_text, long_set) = ("x".repeat(900_000), ",".repeat(999_000));
        for i in 0..n {
            let mut row: Vec<&str> = rows[i % rows.len()].split('\t').collect();
            if i % 4 == 0 {
                row[parents] = &long_set;
            } else {
                row[service] = &long_text;
            }
            body.push_str(&row.join("\t"));
            body.push('\n');
        }
        gzip_member(body.as_bytes())
    };
    fs::write(dir.join("conn.log.gz"), gz).unwrap();
    let out = dir.join("scores.json");
    let run = run_guarded(replay(&dir, &out), 120);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(scored(&out).len(), n, "every record scored");
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "replay peaked at {} KiB",
        run.max_rss_kib
    );
    let run = run_guarded(train(&dir, &dir.join("models")), 300);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "training peaked at {} KiB",
        run.max_rss_kib
    );
}

/// azw-eval reads labeled logs with its own reader: a line of zeros there
/// (a gzip bomb) is skipped in bounded memory too, and the evaluation runs
/// on the rest.
#[test]
fn a_gzip_bomb_in_a_labeled_log_is_skipped_by_azw_eval() {
    let dir = tempdir("eval-bomb");
    let labeled =
        std::fs::read_to_string(crate::util::root().join("tests/data/eval/ctu4-conn.log.labeled"))
            .unwrap();
    let path = dir.join("conn.log.labeled.gz");
    let mut file = File::create(&path).unwrap();
    let (head, rows): (Vec<&str>, Vec<&str>) = labeled
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .partition(|l| l.starts_with('#'));
    let half = rows.len() / 2;
    let text = |lines: &[&str]| lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    file.write_all(&gzip_member(text(&head).as_bytes()))
        .unwrap();
    file.write_all(&gzip_member(text(&rows[..half]).as_bytes()))
        .unwrap();
    let zeros = gzip_member(&vec![0u8; 1 << 20]);
    for _ in 0..BOMB_MIB {
        file.write_all(&zeros).unwrap();
    }
    file.write_all(&gzip_member(
        format!("\n{}", text(&rows[half..])).as_bytes(),
    ))
    .unwrap();
    drop(file);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azw-eval"));
    cmd.arg(&path).args(["--modules", "conn", "--json"]);
    cmd.current_dir(&*dir);
    let run = run_guarded(cmd, 300);
    assert!(run.status.success(), "{}", run.stderr);
    assert!(
        run.max_rss_kib < MAX_RSS_KIB,
        "azw-eval peaked at {} KiB for a {BOMB_MIB} MiB line",
        run.max_rss_kib
    );
}
