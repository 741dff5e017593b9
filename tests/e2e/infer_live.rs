//! `azw-infer` live mode against a simulated Zeek: a writer appends real conn
//! lines (from `examples/logs/`) to `current/conn.log` and rotates it the way
//! Zeek and its archiver do (rename in `current/`, a new file with a fresh
//! header, gzip into a dated folder). Every input uid must come out exactly
//! once: through rotations, through `kill -9` and restarts (with rotations
//! while the process is down), and through a model replaced mid-run.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{root, train, Infer};

/// The example conn log: header lines and data lines.
fn conn_tsv() -> (Vec<String>, Vec<String>) {
    let text = fs::read_to_string(root().join("examples/logs/conn.log")).unwrap();
    let (header, data): (Vec<String>, Vec<String>) = text
        .lines()
        .map(str::to_owned)
        .partition(|l| l.starts_with('#'));
    let header = header
        .into_iter()
        .filter(|l| !l.starts_with("#close"))
        .collect();
    (header, data)
}

/// The uids of TSV lines, in order.
fn uids(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| uid_of(l)).collect()
}

fn uid_of(line: &str) -> String {
    line.split('\t').nth(1).unwrap_or("?").to_owned()
}

/// A stand-in for Zeek: writes lines to `current/conn.log` and rotates.
struct SimZeek {
    dir: PathBuf,
    header: Vec<String>,
    hour: u32,
    rotations: u32,
}

impl SimZeek {
    fn new(dir: &Path, header: Vec<String>) -> SimZeek {
        fs::create_dir_all(dir.join("current")).unwrap();
        SimZeek {
            dir: dir.to_owned(),
            header,
            hour: 0,
            rotations: 0,
        }
    }

    fn live(&self) -> PathBuf {
        self.dir.join("current/conn.log")
    }

    fn stamp(&self) -> (String, String) {
        let day = 19 + self.hour / 24;
        let h = self.hour % 24;
        (format!("2024-04-{day:02}"), format!("{h:02}"))
    }

    fn write(&mut self, lines: &[String]) {
        let new = fs::metadata(self.live()).map_or(true, |m| m.len() == 0);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.live())
            .unwrap();
        let mut buf = String::new();
        if new {
            let (day, h) = self.stamp();
            for l in &self.header {
                if l.starts_with("#open") {
                    buf.push_str(&format!("#open\t{day}-{h}-00-00\n"));
                } else {
                    buf.push_str(l);
                    buf.push('\n');
                }
            }
        }
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        if let (Some(a), Some(b)) = (lines.first(), lines.last()) {
            eprintln!(
                "sim: hour {} wrote {} lines {}..{}",
                self.hour,
                lines.len(),
                uid_of(a),
                uid_of(b)
            );
        }
        f.write_all(buf.as_bytes()).unwrap();
    }

    /// Rename away, then gzip into the dated folder (through a temporary
    /// name, as an archiver does), then remove the renamed file.
    fn rotate(&mut self) {
        if !self.live().exists() {
            return;
        }
        let (day, h) = self.stamp();
        let spool = self.dir.join(format!("current/conn.{day}-{h}-00-00.log"));
        fs::rename(self.live(), &spool).unwrap();
        let archive_dir = self.dir.join(&day);
        fs::create_dir_all(&archive_dir).unwrap();
        let next = (h.parse::<u32>().unwrap() + 1) % 24;
        let archive = archive_dir.join(format!("conn.{h}:00:00-{next:02}:00:00.log.gz"));
        let tmp = archive.with_extension("tmp");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&tmp).unwrap(), flate2::Compression::fast());
        enc.write_all(&fs::read(&spool).unwrap()).unwrap();
        enc.finish().unwrap();
        fs::rename(&tmp, &archive).unwrap();
        fs::remove_file(&spool).unwrap();
        eprintln!("sim: rotated hour {} to {}", self.hour, archive.display());
        self.hour += 1;
        self.rotations += 1;
    }
}

/// A temporary Zeek log folder with a simulated Zeek writing the example
/// conn lines (returned) into it.
fn simulated_zeek() -> (tempfile::TempDir, Vec<String>, SimZeek) {
    let dir = tempfile::tempdir().unwrap();
    let (header, data) = conn_tsv();
    let zeek = SimZeek::new(dir.path(), header);
    (dir, data, zeek)
}

/// Waits until the process has opened its output (and cut it back to the
/// checkpoint), so what the output holds from now on is its doing.
fn wait_ready(infer: &Infer) {
    let start = Instant::now();
    loop {
        let log = fs::read_to_string(&infer.log).unwrap_or_default();
        if log.contains("resuming from the checkpoint") || log.contains("no checkpoint in") {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "azw-infer did not start:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(dir: &Path, models: &Path, run: u32) -> Infer {
    start_in(dir, models, run, &["--checkpoint-ms", "100"])
}

/// uid -> how many times it is in the output.
fn output_uids(dir: &Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let text = fs::read_to_string(dir.join("scores.json")).unwrap_or_default();
    // A line still being written has no newline yet.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in complete.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad output line {line:?}: {e}"));
        *seen
            .entry(v["uid"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    seen
}

/// Waits until the output holds at least `n` records.
fn wait_for(dir: &Path, n: usize) {
    let start = Instant::now();
    loop {
        let have = output_uids(dir).values().sum::<usize>();
        if have >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {n} records, have {have}\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the runs logged, for failure messages.
fn logs(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            format!(
                "== {}\n{}",
                p.display(),
                fs::read_to_string(p).unwrap_or_default()
            )
        })
        .collect()
}

fn assert_exactly_once(dir: &Path, uids: &[String]) {
    let seen = output_uids(dir);
    let missing: Vec<_> = uids.iter().filter(|u| !seen.contains_key(*u)).collect();
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} uids lost, e.g. {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(5)],
        logs(dir)
    );
    assert!(
        doubled.is_empty(),
        "{} uids written twice, e.g. {:?}\n{}",
        doubled.len(),
        &doubled[..doubled.len().min(5)],
        logs(dir)
    );
    assert_eq!(seen.len(), uids.len());
}

/// A small deterministic generator for the test's random choices.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn twenty_rotations_lose_nothing() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    for (i, chunk) in data.chunks(18).enumerate() {
        for pair in chunk.chunks(3) {
            zeek.write(pair);
            std::thread::sleep(Duration::from_millis(3));
        }
        if i < 20 {
            zeek.rotate();
        }
    }
    assert_eq!(zeek.rotations, 20);
    wait_for(dir.path(), data.len());
    let log = infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data));
    assert!(log.contains("was rotated"), "{log}");
}

#[test]
fn kill_9_and_restart_ten_times_with_rotations_while_down() {
    let dir = tempfile::tempdir().unwrap();
    eprintln!("sim: dir {}", dir.path().display());
    let (header, data) = conn_tsv();
    let mut zeek = SimZeek::new(dir.path(), header);
    let mut rng = Lcg(42);
    let mut next = 0usize;
    let mut rotated_while_down = 0;
    for run in 0..10 {
        let mut infer = start(dir.path(), crate::util::models(), run);
        if run == 0 {
            // A first start follows whatever file is live when it looks:
            // let it see the first file before the stress begins.
            zeek.write(&data[..5]);
            next = 5;
            wait_for(dir.path(), 5);
        }
        // Write a random stretch, rotating now and then, while it runs.
        let end = (next + 20 + rng.below(20) as usize).min(data.len());
        while next < end {
            let k = (1 + rng.below(4) as usize).min(end - next);
            zeek.write(&data[next..next + k]);
            next += k;
            if rng.below(8) == 0 {
                zeek.rotate();
            }
            std::thread::sleep(Duration::from_millis(rng.below(15)));
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        infer.kill9();
        eprintln!("sim: killed run {run}");
        // While it is down: more lines and a rotation (every other run).
        let end = (next + 5 + rng.below(10) as usize).min(data.len());
        zeek.write(&data[next..end]);
        next = end;
        if run % 2 == 0 {
            zeek.rotate();
            rotated_while_down += 1;
        }
    }
    // The rest, with a last run that ends cleanly.
    let infer = start(dir.path(), crate::util::models(), 10);
    zeek.write(&data[next..]);
    wait_for(dir.path(), data.len());
    infer.terminate();
    assert!(rotated_while_down >= 5);
    assert_exactly_once(dir.path(), &uids(&data));
}

/// The output length a checkpoint names (0 before there is one).
fn checkpointed_len(dir: &Path) -> u64 {
    let text = fs::read_to_string(dir.join("state/checkpoint.json")).unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&text)
        .map_or(0, |v| v["output_len"].as_u64().unwrap_or(0))
}

/// The output length of the first checkpoint that names any (a log
/// type's first position is saved at once), waited for.
fn first_checkpoint(dir: &Path) -> u64 {
    let asked = Instant::now();
    while checkpointed_len(dir) == 0 && asked.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = checkpointed_len(dir);
    assert!(first > 0, "no checkpoint named the output\n{}", logs(dir));
    first
}

/// `--checkpoint-mb-per-hour`: a budget far below the state's size (a
/// few KB against 1 KB an hour) keeps the checkpoint from being rewritten
/// every `--checkpoint-ms` (the wait is an hour), while without one (0) it
/// is; then `kill -9` cuts the output back to the old checkpoint, and the
/// restart scores everything since (through a rotation) and writes each
/// record once.
#[test]
fn a_write_budget_spaces_checkpoints_and_a_kill_still_writes_each_record_once() {
    let (header, data) = conn_tsv();
    let half = data.len() / 2;
    for budget in ["0", "0.001"] {
        let dir = tempfile::tempdir().unwrap();
        let mut zeek = SimZeek::new(dir.path(), header.clone());
        let args = ["--checkpoint-ms", "100", "--checkpoint-mb-per-hour", budget];
        let mut infer = start_in(dir.path(), crate::util::models(), 0, &args);
        zeek.write(&data[..5]);
        wait_for(dir.path(), 5);
        // A log type's first position is checkpointed at once, whatever
        // the budget.
        let first = first_checkpoint(dir.path());
        zeek.write(&data[5..half]);
        wait_for(dir.path(), half);
        // Ten times --checkpoint-ms.
        std::thread::sleep(Duration::from_millis(1000));
        let later = checkpointed_len(dir.path());
        let written = fs::metadata(dir.path().join("scores.json")).unwrap().len();
        if budget == "0" {
            assert_eq!(later, written, "no budget: saved every 100 ms");
            infer.terminate();
            continue;
        }
        assert_eq!(later, first, "within the budget: not saved again yet");
        assert!(written > first);
        infer.kill9();
        zeek.rotate();
        zeek.write(&data[half..]);
        let infer = start_in(dir.path(), crate::util::models(), 1, &args);
        wait_for(dir.path(), data.len());
        let log = infer.terminate();
        assert!(log.contains("written after the last checkpoint"), "{log}");
        assert_exactly_once(dir.path(), &uids(&data));
    }
}

#[test]
fn model_replaced_mid_run_and_a_bad_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    fs::create_dir_all(&models).unwrap();
    fs::copy(
        crate::util::models().join("conn.model.json"),
        models.join("conn.model.json"),
    )
    .unwrap();
    let (header, data) = conn_tsv();
    let mut zeek = SimZeek::new(&dir.path().join("zeek"), header);
    let zdir = dir.path().join("zeek");
    let infer = start(&zdir, &models, 0);
    let third = data.len() / 3;
    zeek.write(&data[..third]);
    wait_for(&zdir, third);
    // A broken file first: refused, the old model keeps scoring.
    let broken = models.join("broken.tmp");
    fs::write(
        &broken,
        "{\"format\": \"autozeekwatch-model\", \"format_version\": 1, \"trunc",
    )
    .unwrap();
    // Settled (written a minute ago): a file changed moments ago is looked
    // at again as one still being copied, and refused once settled.
    fs::File::options()
        .append(true)
        .open(&broken)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    fs::rename(&broken, models.join("conn.model.json")).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    zeek.write(&data[third..2 * third]);
    wait_for(&zdir, 2 * third);
    // Then a good new model (another seed), as the nightly cron writes it.
    train(&models, "conn", &["--seed", "7"]);
    std::thread::sleep(Duration::from_millis(1500));
    zeek.write(&data[2 * third..]);
    wait_for(&zdir, data.len());
    let log = infer.terminate();
    assert!(log.contains("refused the new model"), "{log}");
    assert!(log.contains("switched to the new model"), "{log}");
    assert_exactly_once(&zdir, &uids(&data));
}

/// The nightly model learnt a beacon as normal (it ran through its
/// training history): a run that hot-reloads it stops reporting that
/// beacon, as a run started on it does. The detectors kept the first
/// model's baseline until a restart.
#[test]
fn a_reloaded_model_s_normal_beacon_is_no_longer_reported() {
    let (header, data) = conn_with_behaviours();
    let beacon_detections = |models: &Path, reload_to: Option<&Path>| -> usize {
        let dir = tempfile::tempdir().unwrap();
        let mine = dir.path().join("models");
        fs::create_dir_all(&mine).unwrap();
        fs::copy(models.join("conn.model.json"), mine.join("conn.model.json")).unwrap();
        let zdir = dir.path().join("zeek");
        let mut zeek = SimZeek::new(&zdir, header.clone());
        let infer = start_in(
            &zdir,
            &mine,
            0,
            &["--checkpoint-ms", "100", "--warm-hours", "0"],
        );
        if let Some(new) = reload_to {
            let tmp = mine.join("conn.model.json.tmp");
            fs::copy(new.join("conn.model.json"), &tmp).unwrap();
            fs::rename(&tmp, mine.join("conn.model.json")).unwrap();
            let start = Instant::now();
            while !fs::read_to_string(&infer.log)
                .unwrap_or_default()
                .contains("switched to the new model")
            {
                assert!(start.elapsed() < Duration::from_secs(30), "no reload");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        zeek.write(&data);
        wait_for_all(&zdir, &uids(&data));
        infer.terminate();
        output_lines(&zdir)
            .iter()
            .filter(|l| l.contains("\"detection\":\"beacon\"") && l.contains("192.168.33.77"))
            .count()
    };
    // A model trained on history holding the beacon knows it.
    let hist = tempfile::tempdir().unwrap();
    let log = hist.path().join("conn.log");
    fs::write(
        &log,
        [header.clone(), data.clone()].concat().join("\n") + "\n",
    )
    .unwrap();
    let knows = hist.path().join("models");
    crate::util::train_from(&log, &knows, "conn", &[]);
    let first = crate::util::models();
    assert!(
        beacon_detections(first, None) > 0,
        "the first model reports it"
    );
    assert_eq!(
        beacon_detections(&knows, None),
        0,
        "a model that knows it does not"
    );
    assert_eq!(
        beacon_detections(first, Some(&knows)),
        0,
        "nor once reloaded"
    );
}

#[test]
fn malformed_live_lines_are_counted_and_scoring_goes_on() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..10]);
    zeek.write(&["this is not a conn record".to_owned()]);
    zeek.write(&data[10..20]);
    wait_for(dir.path(), 20);
    let log = infer.terminate();
    assert!(
        log.contains("current/conn.log:19: skipped malformed line: 1 columns, but the #fields header names 20"),
        "{log}"
    );
    assert!(log.contains("1 skipped"), "{log}");
    assert_exactly_once(dir.path(), &uids(&data[..20]));
}

#[test]
fn json_live_file_and_partial_last_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("current")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut flate2::read::GzDecoder::new(
            File::open(root().join("examples/logs/conn.json.gz")).unwrap(),
        ),
        &mut text,
    )
    .unwrap();
    let lines: Vec<&str> = text.lines().take(50).collect();
    let infer = start(dir.path(), crate::util::models(), 0);
    let live = dir.path().join("current/conn.log");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&live)
        .unwrap();
    for l in &lines[..49] {
        writeln!(f, "{l}").unwrap();
    }
    // Half a line: not scored until its newline arrives.
    let last = lines[49];
    f.write_all(&last.as_bytes()[..last.len() / 2]).unwrap();
    f.flush().unwrap();
    wait_for(dir.path(), 49);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(output_uids(dir.path()).len(), 49, "a partial line waits");
    writeln!(f, "{}", &last[last.len() / 2..]).unwrap();
    wait_for(dir.path(), 50);
    infer.terminate();
    let uids: Vec<String> = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["uid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_exactly_once(dir.path(), &uids);
}

/// Zeek's `current` is often a symlink to a spool folder that moves.
#[test]
fn current_symlink_that_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (header, data) = conn_tsv();
    let spool1 = dir.path().join("spool1");
    let spool2 = dir.path().join("spool2");
    fs::create_dir_all(&spool1).unwrap();
    fs::create_dir_all(&spool2).unwrap();
    std::os::unix::fs::symlink(&spool1, dir.path().join("current")).unwrap();
    let mut zeek = SimZeek::new(dir.path(), header.clone());
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..20]);
    wait_for(dir.path(), 20);
    zeek.write(&data[20..30]);
    // The spool moves: a new live file behind a replaced symlink.
    let mut second = SimZeek::new(&spool2.join("fake-root"), header);
    second.write(&data[30..60]);
    fs::rename(
        spool2.join("fake-root/current/conn.log"),
        spool2.join("conn.log"),
    )
    .unwrap();
    let tmp_link = dir.path().join("current.new");
    std::os::unix::fs::symlink(&spool2, &tmp_link).unwrap();
    fs::rename(&tmp_link, dir.path().join("current")).unwrap();
    wait_for(dir.path(), 60);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[..60]));
}

/// A live file cut to nothing and written again (copytruncate) is read
/// again from its start.
#[test]
fn truncated_live_file_is_read_again() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..15]);
    wait_for(dir.path(), 15);
    File::create(zeek.live()).unwrap(); // truncates
    std::thread::sleep(Duration::from_millis(300));
    zeek.write(&data[15..25]);
    wait_for(dir.path(), 25);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[..25]));
}

/// logrotate moves the output away and sends SIGHUP: the next records go to
/// a new file at the same path, and none is lost or doubled across the two.
#[test]
fn sighup_reopens_the_output() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..10]);
    wait_for(dir.path(), 10);
    fs::rename(
        dir.path().join("scores.json"),
        dir.path().join("scores.json.1"),
    )
    .unwrap();
    infer.hup();
    std::thread::sleep(Duration::from_millis(300));
    zeek.write(&data[10..20]);
    wait_for(dir.path(), 10);
    let log = infer.terminate();
    assert!(log.contains("output reopened"), "{log}");
    let rotated = fs::read_to_string(dir.path().join("scores.json.1")).unwrap();
    let current = fs::read_to_string(dir.path().join("scores.json")).unwrap();
    let mut seen: Vec<String> = rotated
        .lines()
        .chain(current.lines())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["uid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    seen.sort();
    let mut expected: Vec<String> = data[..20].iter().map(|l| uid_of(l)).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

/// logrotate moves the output, SIGHUP reopens it, and the process dies
/// before its next timed checkpoint: the restart must neither repeat the
/// records already in the rotated file nor leave a broken line.
#[test]
fn sighup_then_kill_9_repeats_nothing() {
    let (dir, data, mut zeek) = simulated_zeek();
    let mut infer = start_with(dir.path(), 0, &["--checkpoint-ms", "600000"]);
    zeek.write(&data[..30]);
    wait_for(dir.path(), 30);
    fs::rename(
        dir.path().join("scores.json"),
        dir.path().join("scores.json.1"),
    )
    .unwrap();
    infer.hup();
    let started = Instant::now();
    while !infer.log().contains("output reopened") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            infer.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    infer.kill9();
    zeek.write(&data[30..40]);
    let infer = start_with(dir.path(), 1, &[]);
    wait_for(dir.path(), 10);
    infer.terminate();
    let mut seen: Vec<String> = ["scores.json.1", "scores.json"]
        .iter()
        .flat_map(|f| {
            fs::read_to_string(dir.path().join(f))
                .unwrap()
                .lines()
                .map(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .unwrap_or_else(|e| panic!("broken line {l:?}: {e}"))["uid"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    seen.sort();
    let mut expected = uids(&data[..40]);
    expected.sort();
    assert_eq!(seen, expected, "{}", logs(dir.path()));
}

/// Two processes on one state folder would corrupt each other's output:
/// the second is refused with a message that says why.
#[test]
fn a_second_process_on_the_same_state_dir_is_refused() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..5]);
    wait_for(dir.path(), 5);
    let second = infer_command(dir.path(), crate::util::models(), "other.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(err.contains("another azw-infer is running"), "{err}");
    zeek.write(&data[5..10]);
    wait_for(dir.path(), 10);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[..10]));
}

/// A first start (no checkpoint) must not cut an existing output: one of
/// ours is appended to, anything else is refused and left as it was.
#[test]
fn a_first_start_never_cuts_an_existing_file() {
    let (dir, data, mut zeek) = simulated_zeek();
    let foreign = "#separator \\x09\n#path\tconn\nsomebody's data\n";
    fs::write(dir.path().join("scores.json"), foreign).unwrap();
    let refused = infer_command(dir.path(), crate::util::models(), "scores.json")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{err}");
    assert!(err.contains("not an autozeekwatch"), "{err}");
    assert_eq!(
        fs::read_to_string(dir.path().join("scores.json")).unwrap(),
        foreign
    );

    // An output of ours, with its checkpoint moved away: appended to.
    fs::remove_file(dir.path().join("scores.json")).unwrap();
    let infer = start(dir.path(), crate::util::models(), 1);
    zeek.write(&data[..10]);
    wait_for(dir.path(), 10);
    infer.terminate();
    let before = fs::read_to_string(dir.path().join("scores.json")).unwrap();
    fs::remove_dir_all(dir.path().join("state")).unwrap();
    zeek.rotate();
    let infer = start(dir.path(), crate::util::models(), 2);
    zeek.write(&data[10..15]);
    wait_for(dir.path(), 15);
    // Said as a warning: without its checkpoint the run cannot tell what
    // the output already holds, and the live files it reads again from
    // their start are written again.
    let said = infer.terminate();
    assert!(
        said.contains("WARN") && said.contains(&format!("already holds {} bytes", before.len())),
        "{said}"
    );
    let after = fs::read_to_string(dir.path().join("scores.json")).unwrap();
    assert!(after.starts_with(&before), "the earlier records were cut");
}

/// `start` with the shared model and `extra` flags.
fn start_with(dir: &Path, run: u32, extra: &[&str]) -> Infer {
    start_in(dir, crate::util::models(), run, extra)
}

/// Starts `azw-infer` on `dir` (its output `scores.json`, its state in
/// `state/`) with `extra` flags, and waits until it runs.
fn start_in(dir: &Path, models: &Path, run: u32, extra: &[&str]) -> Infer {
    start_following(dir, models, "conn", "scores.json", run, extra)
}

/// [`start_in`] following `modules` (`dns,conn`) into `output` (in `dir`,
/// or a path).
fn start_following(
    dir: &Path,
    models: &Path,
    modules: &str,
    output: &str,
    run: u32,
    extra: &[&str],
) -> Infer {
    let log = dir.join(format!("infer-{run}.log"));
    let child = modules_command(dir, models, output, modules)
        .args(["--poll-ms", "50", "--stats-secs", "3600"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let infer = Infer { child, log };
    wait_ready(&infer);
    infer
}

/// `azw-infer` following `dir` with the CONN model in `models`, into `output`
/// (in `dir`), its state in `dir/state`.
fn infer_command(dir: &Path, models: &Path, output: &str) -> Command {
    modules_command(dir, models, output, "conn")
}

/// [`infer_command`] following `modules`.
fn modules_command(dir: &Path, models: &Path, output: &str, modules: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_azw-infer"));
    cmd.args(["--log-dir", dir.to_str().unwrap(), "--modules", modules])
        .args(["--model-dir", models.to_str().unwrap()])
        .args(["--output", dir.join(output).to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()]);
    cmd
}

/// A live file that is one endless line (8 GiB of zeros, sparse on disk):
/// SIGTERM is still honoured at once, since a step reads a bounded amount.
#[test]
fn sigterm_is_honoured_while_a_huge_line_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let (header, _) = conn_tsv();
    let zeek = SimZeek::new(dir.path(), header.clone());
    fs::write(zeek.live(), header.join("\n") + "\n").unwrap();
    File::options()
        .append(true)
        .open(zeek.live())
        .unwrap()
        .set_len(8 << 30)
        .unwrap();
    let mut infer = start(dir.path(), crate::util::models(), 0);
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    let status = infer.sigterm();
    let took = asked.elapsed();
    assert!(status.success(), "{}", infer.log());
    assert!(
        took < Duration::from_secs(2),
        "stopped {took:?} after SIGTERM"
    );
}

/// Started before Zeek wrote its first conn record: it checkpoints, says
/// what it waits for (a log type this Zeek never writes looked like a
/// quiet network), then follows the file once it appears.
#[test]
fn a_live_file_not_there_yet_is_said_and_followed_once_it_is() {
    let (dir, data, mut zeek) = simulated_zeek();
    assert!(!zeek.live().exists());
    let infer = start(dir.path(), crate::util::models(), 0);
    // A first checkpoint is saved before anything is written (a run whose
    // first one failed had written what no checkpoint covered, and wrote
    // it again after a restart).
    let checkpoint = dir.path().join("state/checkpoint.json");
    let asked = Instant::now();
    while !checkpoint.exists() && asked.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let saved: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&checkpoint).unwrap()).unwrap();
    assert_eq!(saved["output_len"], 0, "{saved}");
    // The log type waits for its first file (a position of no bytes): a
    // restart reads what Zeek rotated meanwhile.
    assert_eq!(saved["modules"]["CONN"]["fingerprint"]["len"], 0, "{saved}");
    assert_eq!(saved["modules"]["CONN"]["offset"], 0, "{saved}");
    // The follower's first look may come after that checkpoint (the
    // writer saves it as the followers start): the file is written once
    // it has said it waits, or the file would be there at its first look.
    let waiting = format!("CONN: waiting for {}", zeek.live().display());
    while !infer.log().contains(&waiting) && asked.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(20));
    }
    zeek.write(&data[..10]);
    wait_for(dir.path(), 10);
    let log = infer.terminate();
    assert!(log.contains(&waiting), "{log}");
    assert!(log.contains("CONN: following"), "{log}");
    assert!(!log.contains("has not appeared"), "{log}");
    assert_exactly_once(dir.path(), &uids(&data[..10]));
}

/// The output deleted under the running process: later records go to a
/// new file at the path, not to the deleted inode.
#[test]
fn a_deleted_output_is_written_anew() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..10]);
    wait_for(dir.path(), 10);
    fs::remove_file(dir.path().join("scores.json")).unwrap();
    zeek.write(&data[10..25]);
    wait_for(dir.path(), 15);
    let log = infer.terminate();
    assert!(log.contains("deleted or replaced"), "{log}");
    assert_exactly_once(dir.path(), &uids(&data[10..25]));
}

/// Another log type's file at `current/conn.log` (its `#path` says dns):
/// its records are counted as skipped, never scored by the conn model.
#[test]
fn a_foreign_log_at_the_live_path_is_not_scored() {
    let dir = tempfile::tempdir().unwrap();
    let (header, data) = conn_tsv();
    let foreign: Vec<String> = header
        .iter()
        .map(|l| {
            if l.starts_with("#path") {
                "#path\tdns".to_owned()
            } else {
                l.clone()
            }
        })
        .collect();
    let mut zeek = SimZeek::new(dir.path(), foreign);
    let infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..10]);
    let started = Instant::now();
    while !infer.log().contains("holds `dns` records") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            infer.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Zeek rotates and writes a real conn log again: that one is scored.
    zeek.rotate();
    zeek.header = conn_tsv().0;
    zeek.write(&data[10..20]);
    wait_for(dir.path(), 10);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[10..20]));
}

/// The output deleted, the next records written to a new file, and the
/// process killed before its next timed checkpoint: the restart neither
/// cuts the new file mid-record nor writes its records twice.
#[test]
fn a_deleted_output_then_kill_9_repeats_nothing() {
    let (dir, data, mut zeek) = simulated_zeek();
    let mut infer = start_with(dir.path(), 0, &["--checkpoint-ms", "600000"]);
    zeek.write(&data[..30]);
    wait_for(dir.path(), 30);
    fs::remove_file(dir.path().join("scores.json")).unwrap();
    zeek.write(&data[30..35]);
    wait_for(dir.path(), 5);
    infer.kill9();
    zeek.write(&data[35..40]);
    let infer = start_with(dir.path(), 1, &[]);
    wait_for(dir.path(), 10);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[30..40]));
}

/// The output moved away while the run was down (rotated): the restart
/// writes a new file, which the checkpoint names with the first records
/// written to it, so a kill before the timed checkpoint repeats nothing
/// there (the checkpoint naming the moved file would not let the next
/// restart cut the new one).
#[test]
fn an_output_moved_away_while_down_then_kill_9_repeats_nothing() {
    let (dir, data, mut zeek) = simulated_zeek();
    let flags = ["--checkpoint-ms", "600000"];
    let infer = start_with(dir.path(), 0, &flags);
    zeek.write(&data[..30]);
    wait_for(dir.path(), 30);
    infer.terminate();
    let output = dir.path().join("scores.json");
    fs::rename(&output, dir.path().join("scores.json.1")).unwrap();
    let mut infer = start_with(dir.path(), 1, &flags);
    zeek.write(&data[30..35]);
    wait_for(dir.path(), 5);
    wait_checkpoint_names(dir.path(), &output);
    infer.kill9();
    zeek.write(&data[35..40]);
    let infer = start_with(dir.path(), 2, &flags);
    wait_for(dir.path(), 10);
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data[30..40]));
}

/// A conn line in the example log's columns.
#[allow(clippy::too_many_arguments)]
fn conn_line(
    ts: f64,
    uid: &str,
    (src, sport): (&str, u16),
    (dst, dport): (&str, u16),
    state: &str,
    duration: f64,
    orig_bytes: u64,
    resp_bytes: u64,
) -> String {
    format!(
        "{ts:.6}\t{uid}\t{src}\t{sport}\t{dst}\t{dport}\ttcp\t-\t{duration:.6}\t{orig_bytes}\t{resp_bytes}\t{state}\t-\t0\tShADadFf\t6\t{}\t5\t{}\t(empty)",
        orig_bytes + 300,
        resp_bytes + 260
    )
}

/// The example conn lines with three behaviours added, in time order: a
/// host beaconing every 300 s (with jitter) for six hours, a port scan and
/// a six-hour connection.
pub(crate) fn conn_with_behaviours() -> (Vec<String>, Vec<String>) {
    let (header, data) = conn_tsv();
    let mut rng = Lcg(7);
    let base = 1_379_288_667.0;
    let mut lines: Vec<(f64, String)> = data
        .into_iter()
        .map(|l| (l.split('\t').next().unwrap().parse().unwrap(), l))
        .collect();
    for i in 0..72 {
        let ts = base + 600.0 + f64::from(i) * 300.0 + rng.below(40) as f64;
        let line = conn_line(
            ts,
            &format!("CBeacon{i:04}"),
            ("192.168.33.77", 40_000 + i as u16),
            ("203.0.113.7", 443),
            "SF",
            0.3,
            517,
            1_200,
        );
        lines.push((ts, line));
    }
    for port in 1..=100u16 {
        let ts = base + 900.0 + f64::from(port) * 0.05;
        let line = conn_line(
            ts,
            &format!("CScan{port:04}"),
            ("192.168.33.66", 50_000),
            ("192.168.33.1", port),
            "REJ",
            0.0,
            0,
            0,
        );
        lines.push((ts, line));
    }
    lines.push((
        base + 1200.0,
        conn_line(
            base + 1200.0,
            "CLongSession1",
            ("192.168.33.10", 51_000),
            ("198.51.100.20", 22),
            "SF",
            6.0 * 3600.0,
            90_000,
            2_000_000,
        ),
    ));
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    (header, lines.into_iter().map(|(_, l)| l).collect())
}

/// The output's lines (complete ones only).
fn output_lines(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string(dir.join("scores.json")).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(str::to_owned).collect()
}

/// Waits until every line of `uids` has been scored into the output.
fn wait_for_all(dir: &Path, uids: &[String]) {
    let start = Instant::now();
    loop {
        let seen: std::collections::HashSet<String> = output_lines(dir)
            .iter()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["uid"].as_str().map(str::to_owned)
            })
            .collect();
        if uids.iter().all(|u| seen.contains(u)) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "timed out: {} of {} records\n{}",
            seen.len(),
            uids.len(),
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The detectors' and the alerts' state is part of the checkpoint: a run
/// killed with `kill -9` five times (rotations while it is down) writes,
/// byte for byte, the output of a run never interrupted, detections
/// included, and the same alerts (`--alerts FILE`, cut back on restart
/// like the output); `--replay` of the same lines writes that output too,
/// and the same alerts, closing at the end of its input those the live
/// runs still hold open.
#[test]
fn detections_after_kill_9_are_byte_identical_to_an_uninterrupted_run_and_to_replay() {
    let (header, data) = conn_with_behaviours();
    let uids = uids(&data);
    let flags_in = |dir: &Path| -> Vec<String> {
        ["--checkpoint-ms", "100", "--scan-external", "--alerts"]
            .iter()
            .map(|s| s.to_string())
            .chain([dir.join("alerts.json").to_str().unwrap().to_owned()])
            .collect()
    };

    // Uninterrupted.
    let calm = tempfile::tempdir().unwrap();
    let calm_flags = flags_in(calm.path());
    let flags: Vec<&str> = calm_flags.iter().map(String::as_str).collect();
    let mut zeek = SimZeek::new(calm.path(), header.clone());
    let infer = start_with(calm.path(), 0, &flags);
    for (i, chunk) in data.chunks(40).enumerate() {
        zeek.write(chunk);
        if i % 3 == 2 {
            zeek.rotate();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    wait_for_all(calm.path(), &uids);
    infer.terminate();
    let expected = output_lines(calm.path());

    // Killed and restarted.
    let rough = tempfile::tempdir().unwrap();
    let rough_flags = flags_in(rough.path());
    let flags: Vec<&str> = rough_flags.iter().map(String::as_str).collect();
    let mut zeek = SimZeek::new(rough.path(), header.clone());
    let mut rng = Lcg(99);
    let mut next = 0;
    for run in 0..5 {
        let mut infer = start_with(rough.path(), run, &flags);
        if run == 0 {
            // A first start follows whatever file is live when it looks:
            // let it see the first file before the stress begins.
            zeek.write(&data[..5]);
            next = 5;
            wait_for_all(rough.path(), &uids[..5]);
        }
        let end = (next + 60 + rng.below(60) as usize).min(data.len());
        while next < end {
            let k = (1 + rng.below(12) as usize).min(end - next);
            zeek.write(&data[next..next + k]);
            next += k;
            if rng.below(6) == 0 {
                zeek.rotate();
            }
            std::thread::sleep(Duration::from_millis(rng.below(10)));
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        infer.kill9();
        let end = (next + 10).min(data.len());
        zeek.write(&data[next..end]);
        next = end;
        zeek.rotate();
    }
    let infer = start_with(rough.path(), 9, &flags);
    zeek.write(&data[next..]);
    wait_for_all(rough.path(), &uids);
    infer.terminate();
    let got = output_lines(rough.path());

    let kinds = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["detection"].as_str().map(str::to_owned)
            })
            .collect()
    };
    let found = kinds(&expected);
    eprintln!("detections: {found:?}");
    for kind in ["beacon", "port_scan", "long_connection"] {
        assert!(found.iter().any(|k| k == kind), "no {kind}: {found:?}");
    }
    assert_eq!(expected.len(), got.len(), "{}", logs(rough.path()));
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(e, g, "line {i} differs\n{}", logs(rough.path()));
    }

    // Replay of the same lines.
    let file = calm.path().join("all.log");
    fs::write(&file, header.join("\n") + "\n" + &data.join("\n") + "\n").unwrap();
    // A replay of them, `args` then `path` last.
    let replay = |args: &[&str], path: PathBuf| {
        crate::util::succeed(
            Command::new(env!("CARGO_BIN_EXE_azw-infer"))
                .args(["--modules", "conn", "--scan-external", "--model-dir"])
                .arg(crate::util::models())
                .arg("--replay")
                .arg(&file)
                .args(args)
                .arg(path),
        )
    };
    replay(&["--output"], calm.path().join("replay.json"));
    let replayed = fs::read_to_string(calm.path().join("replay.json")).unwrap();
    assert_eq!(replayed.lines().collect::<Vec<_>>(), expected);

    // The alerts: the same after kill -9, and those of replay.
    let alerts = |dir: &Path, name: &str| -> Vec<String> {
        fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    };
    let calm_alerts = alerts(calm.path(), "alerts.json");
    let rough_alerts = alerts(rough.path(), "alerts.json");
    assert!(
        calm_alerts
            .iter()
            .any(|l| l.contains("\"detectors\":[\"beacon\"")),
        "{calm_alerts:#?}"
    );
    assert_eq!(calm_alerts, rough_alerts, "{}", logs(rough.path()));
    replay(
        &["--output", "-", "--alerts"],
        calm.path().join("replay-alerts.json"),
    );
    let replay_alerts = alerts(calm.path(), "replay-alerts.json");
    assert!(replay_alerts.len() > calm_alerts.len());
    assert_eq!(replay_alerts[..calm_alerts.len()], calm_alerts[..]);
    // Replay closes every alert it opened; live holds them open.
    let states = |lines: &[String], state: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!("\"state\":\"{state}\"")))
            .count()
    };
    assert_eq!(
        states(&replay_alerts, "open"),
        states(&replay_alerts, "closed")
    );
}

/// Warm start: with no checkpoint, the detectors first read the last hours
/// of rotated history (here a beacon's first 68 connections, found there
/// and not written again); with `--warm-hours 0` they start empty.
#[test]
fn a_first_start_warms_the_detectors_from_the_rotated_history() {
    let (header, data) = conn_with_behaviours();
    let beacon: Vec<String> = data
        .iter()
        .filter(|l| l.contains("CBeacon"))
        .cloned()
        .collect();
    let (old, new) = beacon.split_at(beacon.len() - 4);
    let run = |warm: &str| -> String {
        let dir = tempfile::tempdir().unwrap();
        let mut zeek = SimZeek::new(dir.path(), header.clone());
        for chunk in old.chunks(12) {
            zeek.write(chunk);
            zeek.rotate();
        }
        let infer = start_with(
            dir.path(),
            0,
            &["--checkpoint-ms", "100", "--warm-hours", warm],
        );
        zeek.write(new);
        wait_for_all(dir.path(), &uids(new));
        infer.terminate()
    };
    let warm = run("24");
    let line = warm
        .lines()
        .find(|l| l.contains("read the last 24 h of history first"))
        .unwrap_or_else(|| panic!("no warm-up:\n{warm}"));
    assert!(line.contains(": 68 records in 6 files"), "{line}");
    let found: u32 = line
        .rsplit_once('(')
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(found >= 1, "the beacon is found in the history: {line}");
    assert!(!run("0").contains("history first"));
}

/// Thirty refused connections from `src` to ports nobody uses, a second
/// apart from `at`, uids `C<tag>0000` on: anomalies, and an alert.
fn probes(src: &str, tag: &str, at: f64) -> Vec<String> {
    (0..30u16)
        .map(|i| {
            conn_line(
                at + f64::from(i),
                &format!("C{tag}{i:04}"),
                (src, 41_000 + i),
                ("192.168.33.1", 31_000 + 7 * i),
                "REJ",
                0.0,
                0,
                0,
            )
        })
        .collect()
}

/// Whether the alerts file `alerts` holds an alert about `host`.
fn alerted(alerts: &Path, host: &str) -> bool {
    fs::read_to_string(alerts)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(&format!("\"entity\":\"{host}\"")))
}

/// Waits (20 s at most) until the checkpoint in `dir/state` names the file
/// now at `path` (by device and inode).
fn wait_checkpoint_names(dir: &Path, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(path).unwrap();
    let file = format!("[{},{}]", m.dev(), m.ino());
    let checkpoint = dir.join("state/checkpoint.json");
    let names_it = || {
        let text = fs::read_to_string(&checkpoint).unwrap_or_default();
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        text.contains(&file)
    };
    let start = Instant::now();
    while !names_it() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the checkpoint does not name {} {file} within 20 s\n{}",
            path.display(),
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last record time of the example conn log.
fn last_ts(data: &[String]) -> f64 {
    data.last()
        .and_then(|l| l.split('\t').next())
        .and_then(|t| t.parse().ok())
        .unwrap()
}

/// The alerts' own output (`--alerts FILE`) deleted, the next alerts
/// written to a new file, and the process killed before its next timed
/// checkpoint: the restart writes none of the new file's alerts again
/// (the new file is checkpointed as soon as it is made, as the records'
/// output is).
#[test]
fn a_deleted_alerts_file_then_kill_9_repeats_no_alert() {
    let (header, data) = conn_tsv();
    let base = last_ts(&data);
    let dir = tempfile::tempdir().unwrap();
    let alerts = dir.path().join("alerts.json");
    let flags = [
        "--checkpoint-ms",
        "600000",
        "--alerts",
        alerts.to_str().unwrap(),
        "--alert-lateness",
        "0",
    ];
    let alerted = |host: &str| alerted(&alerts, host);
    let wait_alerted = |host: &str| {
        let start = Instant::now();
        while !alerted(host) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no alert for {host} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // Each burst's alert is written once later records move time on.
    let burst = |host: &str, tag: &str, at: f64| -> Vec<String> {
        let mut lines = probes(host, tag, at);
        lines.extend(data.iter().take(3).enumerate().map(|(i, l)| {
            let mut f: Vec<String> = l.split('\t').map(str::to_owned).collect();
            f[0] = format!("{:.6}", at + 90.0 + i as f64);
            f[1] = format!("C{tag}Later{i}");
            f.join("\t")
        }));
        lines
    };
    let mut zeek = SimZeek::new(dir.path(), header);
    let mut infer = start_with(dir.path(), 0, &flags);
    let first: Vec<String> = data
        .iter()
        .cloned()
        .chain(burst("192.168.33.66", "One", base + 10.0))
        .collect();
    zeek.write(&first);
    wait_for_all(dir.path(), &uids(&first));
    wait_alerted("192.168.33.66");
    fs::remove_file(&alerts).unwrap();
    let second = burst("192.168.33.67", "Two", base + 200.0);
    zeek.write(&second);
    wait_for_all(dir.path(), &uids(&second));
    wait_alerted("192.168.33.67");
    // Killed once the checkpoint names the new file (at once: the timed
    // one is ten minutes away), which it must before any crash.
    wait_checkpoint_names(dir.path(), &alerts);
    infer.kill9();
    let infer = start_with(dir.path(), 1, &flags);
    let third = burst("192.168.33.68", "Three", base + 400.0);
    zeek.write(&third);
    wait_for_all(dir.path(), &uids(&third));
    wait_alerted("192.168.33.68");
    let log = infer.terminate();
    let text = fs::read_to_string(&alerts).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for line in text.lines() {
        assert!(seen.insert(line), "written twice: {line}\n{log}");
    }
    assert!(
        !alerted("192.168.33.66"),
        "the deleted file's alert is not written again"
    );
}

/// Allowlists apply at scoring time and are re-read while azw-infer runs:
/// a rule written mid-run drops one source's records and keeps another's
/// anomalies from alerting within seconds, with nothing reprocessed, and
/// the stats line counts both; a rule for the scanners' target then keeps
/// a new scanner from alerting (no anomaly, no alert).
#[test]
fn an_allowlist_changed_mid_run_suppresses_within_seconds() {
    let (header, data) = conn_tsv();
    let base = last_ts(&data);
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.toml");
    fs::write(
        &allow,
        "# nothing of ours yet\n[[rule]]\ndomain = \"example.invalid\"\naction = \"drop\"\n",
    )
    .unwrap();

    // Without a rule, both hosts' probes are scored and are anomalies.
    let mut zeek = SimZeek::new(dir.path(), header.clone());
    let alerts = dir.path().join("alerts.json");
    let infer = start_with(
        dir.path(),
        0,
        &[
            "--checkpoint-ms",
            "100",
            "--allowlist",
            allow.to_str().unwrap(),
            "--alerts",
            alerts.to_str().unwrap(),
            "--alert-lateness",
            "0",
        ],
    );
    let alerted = |host: &str| alerted(&alerts, host);
    let before: Vec<String> = data
        .iter()
        .cloned()
        .chain(probes("192.168.33.66", "Drop", base + 10.0))
        .chain(probes("192.168.33.67", "Quiet", base + 50.0))
        .collect();
    zeek.write(&before);
    wait_for_all(dir.path(), &uids(&before));
    let anomalous = |prefix: &str| -> (usize, usize) {
        let lines = output_lines(dir.path());
        let of: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v["uid"].as_str().is_some_and(|u| u.starts_with(prefix)))
            .collect();
        let flagged = of.iter().filter(|v| v["anomaly"] == true).count();
        (of.len(), flagged)
    };
    let (n, flagged) = anomalous("CDrop");
    assert_eq!(n, 30);
    assert!(flagged > 0, "the probes are anomalies without a rule");
    let (_, quiet_flagged) = anomalous("CQuiet");
    assert!(quiet_flagged > 0, "the probes are anomalies without a rule");

    // The rules change while it runs.
    fs::write(
        &allow,
        "[[rule]]\ncomment = \"a scanner we run\"\nsource = \"192.168.33.66\"\naction = \"drop\"\n\n\
         [[rule]]\ncomment = \"a host we watch elsewhere\"\nsource = \"192.168.33.67/32\"\naction = \"no_alert\"\nexpires = \"2999-01-01\"\n",
    )
    .unwrap();
    let start = Instant::now();
    loop {
        let log = fs::read_to_string(dir.path().join("infer-0.log")).unwrap_or_default();
        if log.contains("2 rules in force") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the changed allowlist was not taken within 10 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let dropped = probes("192.168.33.66", "Drop2", base + 100.0);
    let quiet = probes("192.168.33.67", "Quiet2", base + 150.0);
    zeek.write(&dropped);
    zeek.write(&quiet);
    wait_for_all(dir.path(), &uids(&quiet));
    assert!(
        alerted("192.168.33.66"),
        "the probes before the rule are an alert"
    );

    // A rule for the scanners' target: whoever probes it stops alerting.
    fs::write(
        &allow,
        "[[rule]]\ncomment = \"the scanners' target\"\ndestination = \"192.168.33.1/32\"\naction = \"no_alert\"\n\n\
         [[rule]]\nsource = \"192.168.33.66\"\naction = \"drop\"\n\n\
         [[rule]]\nsource = \"192.168.33.67\"\naction = \"no_alert\"\n",
    )
    .unwrap();
    let start = Instant::now();
    while !fs::read_to_string(dir.path().join("infer-0.log"))
        .unwrap_or_default()
        .contains("3 rules in force")
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the target's rule was not taken within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let target = probes("192.168.33.68", "Target", base + 200.0);
    zeek.write(&target);
    wait_for_all(dir.path(), &uids(&target));
    let log = infer.terminate();
    assert_eq!(anomalous("CTarget"), (30, 0), "written, none an anomaly");
    assert!(
        !alerted("192.168.33.68"),
        "no alert for what probes the target"
    );
    assert_eq!(
        anomalous("CDrop2"),
        (0, 0),
        "dropped records are not written"
    );
    assert_eq!(anomalous("CQuiet2"), (30, 0), "written, none an anomaly");
    // Written as ordinary records: no severity for a SIEM to alert on.
    assert!(output_lines(dir.path())
        .iter()
        .filter(|l| l.contains("\"uid\":\"CQuiet2"))
        .all(|l| !l.contains("\"severity\"")));
    // What was written before the change stays as it was.
    assert_eq!(anomalous("CDrop").1, flagged);
    assert!(
        log.contains("allowlist: 30 dropped"),
        "the stats count the dropped records:\n{log}"
    );
    let kept: u64 = log
        .rsplit_once("dropped, ")
        .and_then(|(_, r)| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of silenced anomalies:\n{log}"));
    assert!(kept > 0, "{log}");
}

/// The state folder removed under a running azw-infer: its next
/// checkpoint stops the run, saying why, instead of making the folder
/// again without its lock (a second process then started on it, and the
/// two wrote over each other's checkpoints).
#[test]
fn a_state_folder_removed_while_running_stops_the_run() {
    let (dir, data, mut zeek) = simulated_zeek();
    let mut infer = start(dir.path(), crate::util::models(), 0);
    zeek.write(&data[..10]);
    wait_for(dir.path(), 10);
    fs::remove_dir_all(dir.path().join("state")).unwrap();
    zeek.write(&data[10..20]);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = infer.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "still running:\n{}",
            infer.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(1), "{}", infer.log());
    assert!(
        infer
            .log()
            .contains("removed or replaced while this process ran"),
        "{}",
        infer.log()
    );
    assert!(
        !dir.path().join("state").exists(),
        "the state folder was made again"
    );
}

/// Starts azw-infer on `dir` for `modules`, checkpointing every 100 ms
/// (within the budget `extra` may set).
fn start_modules(dir: &Path, modules: &str, run: u32, extra: &[&str]) -> Infer {
    let args: Vec<&str> = ["--checkpoint-ms", "100"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    start_following(
        dir,
        crate::util::models(),
        modules,
        "scores.json",
        run,
        &args,
    )
}

/// How often each of `uids` is in the output.
fn uid_counts(dir: &Path, uids: &[String]) -> Vec<usize> {
    let seen = output_uids(dir);
    uids.iter()
        .map(|u| seen.get(u).copied().unwrap_or(0))
        .collect()
}

fn wait_for_uids(dir: &Path, uids: &[String]) {
    let start = Instant::now();
    while uid_counts(dir, uids).contains(&0) {
        assert!(start.elapsed() < Duration::from_secs(60), "{}", logs(dir));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A log type added to a resumed run (`--modules` extended, or a model
/// appearing under ALL, which restarts the run in-process) starts at its
/// live file, and that start is saved at once: before, it waited for the
/// next timed save (with the write budget, up to an hour), and a kill
/// before it, with a Zeek rotation in between, started the restart at the
/// new live file, and the rotated file's records were lost (the output
/// having been cut back). With and without a budget.
#[test]
fn a_module_added_to_a_resumed_run_keeps_its_records_through_a_rotation_and_a_kill() {
    let (header, data) = conn_tsv();
    let dns = crate::util::example_text("dns.log.gz");
    let dns: String = dns.lines().take(8 + 20).map(|l| format!("{l}\n")).collect();
    let conn = uids(&data[..20]);
    for budget in ["0", "0.001"] {
        let dir = tempfile::tempdir().unwrap();
        let mut zeek = SimZeek::new(dir.path(), header.clone());
        fs::write(dir.path().join("current/dns.log"), &dns).unwrap();
        let args = ["--checkpoint-mb-per-hour", budget];
        // A run that follows dns only: its checkpoint has a position.
        let infer = start_modules(dir.path(), "dns", 0, &args);
        let start = Instant::now();
        while output_lines(dir.path()).len() < 10 {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{}",
                logs(dir.path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        infer.terminate();
        // conn is added.
        zeek.write(&data[..10]);
        let mut infer = start_modules(dir.path(), "dns,conn", 1, &args);
        wait_for_uids(dir.path(), &conn[..10]);
        std::thread::sleep(Duration::from_millis(1000));
        infer.kill9();
        let cp = fs::read_to_string(dir.path().join("state/checkpoint.json")).unwrap();
        let cp: serde_json::Value = serde_json::from_str(&cp).unwrap();
        eprintln!(
            "budget {budget}: checkpointed modules {:?}",
            cp["modules"]
                .as_object()
                .map(|m| m.keys().collect::<Vec<_>>())
        );
        zeek.rotate();
        zeek.write(&data[10..20]);
        let infer = start_modules(dir.path(), "dns,conn", 2, &args);
        wait_for_uids(dir.path(), &conn[10..20]);
        std::thread::sleep(Duration::from_millis(500));
        infer.terminate();
        let counts = uid_counts(dir.path(), &conn);
        assert!(
            counts.iter().all(|n| *n == 1),
            "budget {budget}: conn uid counts {counts:?}\n{}",
            logs(dir.path())
        );
    }
}

/// Zeek rotates (renamed, gzipped into dated folders) several times
/// within one budget window while azw-infer runs; then kill -9, another
/// rotation while down, restart: each record once.
#[test]
fn rotations_within_a_budget_window_then_kill_9_write_each_record_once() {
    let (dir, data, mut zeek) = simulated_zeek();
    let args = [
        "--checkpoint-ms",
        "100",
        "--checkpoint-mb-per-hour",
        "0.001",
    ];
    let mut infer = start_in(dir.path(), crate::util::models(), 0, &args);
    zeek.write(&data[..5]);
    wait_for(dir.path(), 5);
    let first = first_checkpoint(dir.path());
    let mut next = 5;
    for _ in 0..4 {
        zeek.write(&data[next..next + 30]);
        next += 30;
        wait_for(dir.path(), next);
        zeek.rotate();
    }
    zeek.write(&data[next..next + 10]);
    next += 10;
    wait_for(dir.path(), next);
    assert_eq!(checkpointed_len(dir.path()), first);
    infer.kill9();
    zeek.rotate();
    zeek.write(&data[next..]);
    let infer = start_in(dir.path(), crate::util::models(), 1, &args);
    wait_for(dir.path(), data.len());
    infer.terminate();
    assert_exactly_once(dir.path(), &uids(&data));
}

/// The first save after a restart waits B/budget from when the resumed
/// checkpoint was saved, not from the restart: crashes closer together
/// than the wait still move the checkpoint on (before, it never moved,
/// and what each crash scored again grew without bound).
#[test]
fn crashes_closer_than_the_budget_wait_still_move_the_checkpoint() {
    let (dir, data, mut zeek) = simulated_zeek();
    let infer = start_in(
        dir.path(),
        crate::util::models(),
        0,
        &["--checkpoint-mb-per-hour", "0"],
    );
    zeek.write(&data[..5]);
    wait_for(dir.path(), 5);
    infer.terminate();
    let cp = dir.path().join("state/checkpoint.json");
    let size = fs::metadata(&cp).unwrap().len() as f64;
    // A budget that makes the wait about 6 s.
    let budget = format!("{}", size * 3600.0 / 6.0 / 1e6);
    eprintln!("checkpoint {size} bytes, budget {budget} MB/h");
    let args = [
        "--checkpoint-ms",
        "100",
        "--checkpoint-mb-per-hour",
        &budget,
    ];
    let saved_at = fs::metadata(&cp).unwrap().modified().unwrap();
    let mut next = 5;
    for run in 1..=4 {
        let mut infer = start_in(dir.path(), crate::util::models(), run, &args);
        zeek.write(&data[next..next + 10]);
        next += 10;
        wait_for(dir.path(), next);
        std::thread::sleep(Duration::from_millis(4000));
        infer.kill9();
    }
    let age = saved_at.elapsed().unwrap();
    let moved = fs::metadata(&cp).unwrap().modified().unwrap() != saved_at;
    assert!(
        moved,
        "the checkpoint is {age:?} old (the wait is ~6 s) after 4 crashes 4 s apart; a fifth restart scores all {} records since again",
        next - 5
    );
}

/// logrotate moves the output while azw-infer is down after a kill: the
/// restart finds the moved file by its identity and cuts what it holds
/// past the checkpoint, which is scored again into the new file (before,
/// all of it, up to an hour under the budget, was written twice).
#[test]
fn an_output_rotated_while_down_is_cut_where_it_went() {
    for budget in ["0", "0.001"] {
        let (dir, data, mut zeek) = simulated_zeek();
        let args = ["--checkpoint-ms", "100", "--checkpoint-mb-per-hour", budget];
        let mut infer = start_in(dir.path(), crate::util::models(), 0, &args);
        zeek.write(&data[..5]);
        wait_for(dir.path(), 5);
        std::thread::sleep(Duration::from_millis(300));
        zeek.write(&data[5..40]);
        wait_for(dir.path(), 40);
        std::thread::sleep(Duration::from_millis(1000));
        infer.kill9();
        fs::rename(
            dir.path().join("scores.json"),
            dir.path().join("scores.json.1"),
        )
        .unwrap();
        zeek.write(&data[40..50]);
        let infer = start_in(dir.path(), crate::util::models(), 1, &args);
        std::thread::sleep(Duration::from_millis(1500));
        infer.terminate();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for f in ["scores.json.1", "scores.json"] {
            for l in fs::read_to_string(dir.path().join(f)).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                *seen
                    .entry(v["uid"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
        let doubled = seen.values().filter(|n| **n > 1).count();
        let missing = uids(&data[..50])
            .iter()
            .filter(|u| !seen.contains_key(*u))
            .count();
        eprintln!("budget {budget}: {doubled} uids written twice, {missing} missing");
        assert_eq!(
            (doubled, missing),
            (0, 0),
            "budget {budget}\n{}",
            logs(dir.path())
        );
        let log = fs::read_to_string(dir.path().join("infer-1.log")).unwrap();
        assert!(
            log.contains("is now") && log.contains("scores.json.1"),
            "{log}"
        );
    }
}

/// Two instances write their outputs into one folder (one logrotate glob,
/// with compress). A is killed; while it is down its output is rotated and
/// compressed (its inode freed) and B's output is rotated too, so B's next
/// write makes a new b.json, which ext4 gives the freed inode. A's restart
/// must not find b.json by that inode and cut it (it did: B lost 55
/// checkpointed records, and its next writes left a run of NUL bytes).
/// Where the file system does not give the inode again, this holds
/// trivially.
#[test]
fn a_restart_never_cuts_another_instance_s_output_given_the_freed_inode() {
    use std::os::unix::fs::MetadataExt;
    let out = tempfile::tempdir().unwrap();
    let (da, data, mut za) = simulated_zeek();
    let (db, _, mut zb) = simulated_zeek();
    let a_out = out.path().join("a.json");
    let b_out = out.path().join("b.json");
    let lines = |p: &Path| fs::read_to_string(p).unwrap_or_default().lines().count();
    let wait_lines = |p: &Path, n: usize| {
        let t = Instant::now();
        while lines(p) < n {
            assert!(t.elapsed() < Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let run = |dir: &Path, out: &Path, n: u32| {
        let args = [
            "--checkpoint-ms",
            "100",
            "--checkpoint-mb-per-hour",
            "0.001",
        ];
        let out = out.to_str().unwrap();
        start_following(dir, crate::util::models(), "conn", out, n, &args)
    };
    let a = run(da.path(), &a_out, 0);
    let b = run(db.path(), &b_out, 0);
    za.write(&data[..5]);
    zb.write(&data[..5]);
    wait_lines(&a_out, 5);
    wait_lines(&b_out, 5);
    std::thread::sleep(Duration::from_millis(300));
    za.write(&data[5..40]);
    wait_lines(&a_out, 40);
    let mut a = a;
    a.kill9();
    let x = fs::metadata(&a_out).unwrap().ino();
    // logrotate on out/*.json, compress, no SIGHUP for A (it is down).
    fs::rename(&a_out, out.path().join("a.json.1")).unwrap();
    fs::rename(&b_out, out.path().join("b.json.1")).unwrap();
    fs::write(out.path().join("a.json.1.gz"), b"gz").unwrap();
    fs::remove_file(out.path().join("a.json.1")).unwrap();
    // B's next records go to a new b.json.
    zb.write(&data[5..60]);
    wait_lines(&b_out, 55);
    std::thread::sleep(Duration::from_millis(300));
    let b_ino = fs::metadata(&b_out).unwrap().ino();
    let b_len = fs::metadata(&b_out).unwrap().len();
    eprintln!("a.json's inode {x}; the new b.json's {b_ino} ({b_len} bytes)");
    let a2 = run(da.path(), &a_out, 1);
    std::thread::sleep(Duration::from_millis(500));
    let after = fs::metadata(&b_out).unwrap().len();
    zb.write(&data[60..70]);
    std::thread::sleep(Duration::from_millis(1000));
    let bytes = fs::read(&b_out).unwrap();
    let nul = bytes.iter().filter(|c| **c == 0).count();
    let log = fs::read_to_string(da.path().join("infer-1.log")).unwrap();
    eprintln!("A's restart log:\n{log}");
    eprintln!(
        "b.json: {b_len} bytes before A's restart, {after} after; then B wrote on: {} bytes, {nul} NUL",
        bytes.len()
    );
    a2.terminate();
    b.terminate();
    assert_eq!(after, b_len, "A's restart cut B's output");
}

/// Live mode names an alert's peers as replay does, from the names it
/// learnt before a restart: the example HTTP records (whose Hosts name
/// the servers of the example conn records) are read and checkpointed by
/// a first run; a second, resumed run reads the conn records, and the
/// alerts it writes, names included, are the first lines of a replay's of
/// the same two files (a replay closes the rest at the end of its input).
#[test]
fn live_alerts_name_peers_from_names_learnt_before_a_restart_as_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    train(&models, "conn,http", &[]);
    let current = dir.path().join("current");
    fs::create_dir_all(&current).unwrap();
    let http = crate::util::example_text("http.log");
    let conn = crate::util::example_text("conn.log");
    let uids_of = |text: &str| -> Vec<String> {
        let mut u: Vec<String> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(uid_of)
            .collect();
        u.sort();
        u.dedup();
        u
    };
    let alerts_file = dir.path().join("alerts.json");
    let flags = [
        "--checkpoint-ms",
        "100",
        "--alert-lateness",
        "60",
        "--alerts",
        alerts_file.to_str().unwrap(),
    ];
    let start =
        |run: u32| start_following(dir.path(), &models, "conn,http", "scores.json", run, &flags);

    fs::write(current.join("http.log"), &http).unwrap();
    let infer = start(0);
    wait_for_uids(dir.path(), &uids_of(&http));
    infer.terminate();
    fs::write(current.join("conn.log"), &conn).unwrap();
    let infer = start(1);
    wait_for_uids(dir.path(), &uids_of(&conn));
    // The alert stage folds what its watermark passes as it reads.
    std::thread::sleep(Duration::from_millis(500));
    infer.terminate();
    let live: Vec<String> = fs::read_to_string(dir.path().join("alerts.json"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();

    let logs = dir.path().join("replayed");
    fs::create_dir_all(&logs).unwrap();
    fs::write(logs.join("http.log"), &http).unwrap();
    fs::write(logs.join("conn.log"), &conn).unwrap();
    let alerts = dir.path().join("replay-alerts.json");
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", logs.to_str().unwrap(), "--modules", "conn,http"])
            .args(["--model-dir", models.to_str().unwrap(), "-q"])
            .args(["--alert-lateness", "60", "--output"])
            .arg(dir.path().join("replay.json"))
            .arg("--alerts")
            .arg(&alerts),
    );
    let replayed: Vec<String> = fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(
        live.iter()
            .any(|l| l.contains("\"names\":[\"ajax.googleapis.com\"]")),
        "{live:#?}\n{}",
        self::logs(dir.path())
    );
    assert!(replayed.len() > live.len(), "{replayed:#?}\n{live:#?}");
    assert_eq!(replayed[..live.len()], live[..]);
}

/// A first live start learns the alerts' names book from the rotated
/// history too: the example HTTP records, archived in a dated folder,
/// name the servers of the conn records the live file then holds, and
/// the alerts name them from the first. With `--warm-hours 0` (and
/// before 2026-12-07, always) the book started empty.
#[test]
fn a_first_start_names_alerted_peers_from_the_rotated_history() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    train(&models, "conn,http", &[]);
    let http = crate::util::example_text("http.log");
    let conn = crate::util::example_text("conn.log");
    let conn_uids: Vec<String> = {
        let mut u: Vec<String> = (conn.lines())
            .filter(|l| !l.starts_with('#'))
            .map(uid_of)
            .collect();
        u.sort();
        u.dedup();
        u
    };
    let run = |warm: &str| -> (Vec<String>, String) {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("2024-04-19");
        fs::create_dir_all(&day).unwrap();
        let mut enc = flate2::write::GzEncoder::new(
            File::create(day.join("http.00:00:00-01:00:00.log.gz")).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(http.as_bytes()).unwrap();
        enc.finish().unwrap();
        let current = dir.path().join("current");
        fs::create_dir_all(&current).unwrap();
        fs::write(current.join("conn.log"), &conn).unwrap();
        let alerts = dir.path().join("alerts.json");
        let infer = start_following(
            dir.path(),
            &models,
            "conn,http",
            "scores.json",
            0,
            &[
                "--checkpoint-ms",
                "100",
                "--alert-lateness",
                "60",
                "--warm-hours",
                warm,
                "--alerts",
                alerts.to_str().unwrap(),
            ],
        );
        wait_for_uids(dir.path(), &conn_uids);
        std::thread::sleep(Duration::from_millis(500));
        let log = infer.terminate();
        let lines = fs::read_to_string(&alerts)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        (lines, log)
    };
    let named = |lines: &[String]| {
        lines
            .iter()
            .any(|l| l.contains("\"names\":[\"ajax.googleapis.com\"]"))
    };
    let (warm, log) = run("24");
    assert!(!warm.is_empty(), "{log}");
    assert!(named(&warm), "{warm:#?}\n{log}");
    let line = (log.lines())
        .find(|l| l.contains("of history first"))
        .unwrap_or_else(|| panic!("no warm-up:\n{log}"));
    assert!(!line.contains("; 0 names"), "{line}");
    let (cold, log) = run("0");
    assert!(!cold.is_empty(), "{log}");
    assert!(!named(&cold), "{cold:#?}");
}
