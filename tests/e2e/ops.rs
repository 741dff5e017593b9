//! Running autozeekwatch as infrastructure (#15): the config file and the
//! `AZW_` variables, the metrics endpoint scraped by a real HTTP client
//! while records flow, JSON logs, systemd's readiness and watchdog, man
//! pages and completions, and the traps a new user falls into, each
//! through the real binaries.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::{example_text, models, root, tempdir, Infer, TestDir};

const INFER: &str = env!("CARGO_BIN_EXE_azw-infer");
const TRAIN: &str = env!("CARGO_BIN_EXE_azw-train");
const EVAL: &str = env!("CARGO_BIN_EXE_azw-eval");

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The example conn log's header and data lines (TSV).
fn conn_lines() -> (String, Vec<String>) {
    let text = example_text("conn.log");
    let mut header = String::new();
    let mut data = Vec::new();
    for line in text.lines() {
        if line.starts_with("#close") {
            continue;
        }
        if line.starts_with('#') {
            header.push_str(line);
            header.push('\n');
        } else {
            data.push(line.to_owned());
        }
    }
    (header, data)
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Waits (bounded) until `done` holds for the text of `path`.
fn wait_until(what: &str, log: &Path, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The complete lines of a JSON output, parsed.
fn output_records(path: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// One sample's value in Prometheus' text format.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().parse().unwrap())
    })
}

fn scrape(addr: &str) -> String {
    ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap()
}

/// The text of every `fields.message` of a JSON log.
fn json_messages(log: &str) -> Vec<String> {
    log.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {l:?}"));
            v["fields"]["message"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

#[test]
fn a_config_file_alone_runs_live_scoring_and_the_metrics_count_the_records() {
    let dir = tempdir("ops-metrics");
    fs::create_dir_all(dir.join("current")).unwrap();
    let live = dir.join("current/conn.log");
    let output = dir.join("scores.json");
    let config = dir.join("azw.toml");
    fs::write(
        &config,
        format!(
            "# shared by the tools\nlog-dir = {:?}\nmodel-dir = {:?}\nstate-dir = {:?}\n\n[azw-infer]\nmodules = [\"CONN\"]\noutput = {:?}\nmetrics-listen = \"127.0.0.1:0\"\npoll-ms = 50\ncheckpoint-ms = 100\nlog-format = \"json\"\n",
            dir.to_str().unwrap(),
            models().to_str().unwrap(),
            dir.join("state").to_str().unwrap(),
            output.to_str().unwrap(),
        ),
    )
    .unwrap();
    let log = dir.join("infer.log");
    let child = Command::new(INFER)
        .env("AZW_CONFIG", &config)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let infer = Infer {
        child,
        log: log.clone(),
    };
    let mut addr = String::new();
    wait_until("the metrics address", &log, || {
        let text = infer.log();
        // Only complete lines are JSON yet.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        if let Some(a) = json_messages(complete).iter().find_map(|m| {
            m.strip_prefix("metrics at http://")
                .and_then(|r| r.strip_suffix("/metrics"))
                .map(str::to_owned)
        }) {
            addr = a;
        }
        !addr.is_empty() && complete.contains("no checkpoint in")
    });
    let before = scrape(&addr);
    assert_eq!(
        sample(&before, "azw_lines_read_total{module=\"CONN\"}"),
        Some(0.0),
        "{before}"
    );
    let threshold = sample(&before, "azw_model_threshold{module=\"CONN\"}").unwrap();
    assert!(threshold > 0.0, "{before}");

    let (header, data) = conn_lines();
    let (first, rest) = data.split_at(data.len() / 2);
    append(&live, &format!("{header}{}\n", first.join("\n")));
    // Scraped while the rest is written, in pieces.
    let mut written = first.len();
    for chunk in rest.chunks(50) {
        append(&live, &format!("{}\n", chunk.join("\n")));
        written += chunk.len();
        let m = scrape(&addr);
        let read = sample(&m, "azw_lines_read_total{module=\"CONN\"}").unwrap();
        assert!(read <= written as f64, "{read} read of {written} written");
    }
    assert_eq!(written, data.len());
    wait_until("every record in the output", &log, || {
        output_records(&output).len() == data.len()
    });
    let mut m = scrape(&addr);
    wait_until("the counters to catch up", &log, || {
        m = scrape(&addr);
        sample(&m, "azw_lines_read_total{module=\"CONN\"}") == Some(data.len() as f64)
    });
    let records = output_records(&output);
    let anomalies = records.iter().filter(|r| r["anomaly"] == true).count();
    let n = data.len() as f64;
    assert_eq!(
        sample(&m, "azw_records_scored_total{module=\"CONN\"}"),
        Some(n),
        "{m}"
    );
    assert_eq!(
        sample(&m, "azw_lines_skipped_total{module=\"CONN\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "azw_lines_malformed_total{module=\"CONN\"}"),
        Some(0.0)
    );
    // The example records are of 2013: years behind real time.
    let behind = sample(&m, "azw_behind_seconds{module=\"CONN\"}").unwrap();
    assert!(behind > 3e8, "{m}");
    assert_eq!(
        sample(&m, "azw_records_written_total{module=\"CONN\"}"),
        Some(records.len() as f64)
    );
    assert_eq!(
        sample(&m, "azw_anomalies_total{module=\"CONN\"}"),
        Some(anomalies as f64)
    );
    assert_eq!(
        sample(&m, "azw_model_threshold{module=\"CONN\"}"),
        Some(threshold)
    );
    assert_eq!(
        records[0]["threshold"]
            .as_f64()
            .map(|t| (t - threshold).abs() < 1e-3),
        Some(true),
        "the output's threshold is the model's"
    );
    assert!(
        sample(&m, "azw_last_checkpoint_age_seconds").is_some(),
        "{m}"
    );
    assert!(sample(&m, "azw_model_age_seconds{module=\"CONN\"}").is_some());
    assert!(m.contains("# TYPE azw_lines_read_total counter"));
    // Anything but GET /metrics is refused.
    let other = ureq::get(&format!("http://{addr}/other")).call();
    assert!(
        matches!(other, Err(ureq::Error::StatusCode(404))),
        "{other:?}"
    );

    let log_text = infer.terminate();
    // Every log line is a JSON object (--log-format json from the file).
    let messages = json_messages(&log_text);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("stopped; checkpoint written")),
        "{log_text}"
    );
}

fn print_config(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(INFER);
    cmd.args(args).arg("--print-config");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// `--print-config` alone (no config file, no --log-dir) prints the
/// defaults, for each tool: it was refused for want of --log-dir, which
/// it only prints.
#[test]
fn print_config_needs_nothing_else() {
    for tool in [INFER, TRAIN] {
        let out = Command::new(tool)
            .arg("--print-config")
            .env("AZW_CONFIG", "")
            .env_remove("AZW_LOG_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{tool}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(
            setting(&text, "model-dir").ends_with("# default"),
            "{tool}:\n{text}"
        );
    }
    // A Kafka member's settings too, before its brokers and topics are
    // given; running without them says what is missing.
    let kafka = |args: &[&str]| {
        Command::new(INFER)
            .args(["--source", "kafka"])
            .args(args)
            .env("AZW_CONFIG", "")
            .output()
            .unwrap()
    };
    let out = kafka(&["--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        setting(&stdout(&out), "source"),
        "source = \"kafka\"  # command line"
    );
    let out = kafka(&["--topics", "zeek-conn"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--source kafka needs --brokers"),
        "{}",
        stderr(&out)
    );
}

/// The setting line of `key` in --print-config's output.
fn setting<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("{key} not in\n{text}"))
}

#[test]
fn flags_win_over_variables_over_the_file_over_defaults() {
    let dir = tempdir("ops-precedence");
    let config = dir.join("azw.toml");
    fs::write(
        &config,
        "poll-ms = 1\ncheckpoint-ms = 2\nstats-secs = 3\nmin-records = 5  # azw-train's, shared\n\n[azw-infer]\npoll-ms = 100\ncheckpoint-ms = 200\nstats-secs = 300\nonly-anomalies = true\n\n[azw-train]\nepochs = 9\n",
    )
    .unwrap();
    let text = print_config(
        &[
            "--config",
            config.to_str().unwrap(),
            "--replay",
            "x",
            "--stats-secs",
            "9",
        ],
        &[("AZW_CHECKPOINT_MS", "30"), ("AZW_STATS_SECS", "70")],
    );
    assert_eq!(
        setting(&text, "poll-ms"),
        "poll-ms = 100  # config file line 7"
    );
    assert_eq!(
        setting(&text, "checkpoint-ms"),
        "checkpoint-ms = 30  # AZW_CHECKPOINT_MS"
    );
    assert_eq!(
        setting(&text, "stats-secs"),
        "stats-secs = 9  # command line"
    );
    assert_eq!(setting(&text, "format"), "format = \"json\"  # default");
    assert_eq!(
        setting(&text, "only-anomalies"),
        "only-anomalies = true  # config file line 10"
    );
    // The effective settings read back as a config file, to the same.
    let again = dir.join("again.toml");
    fs::write(&again, &text).unwrap();
    let back = print_config(&["--config", again.to_str().unwrap(), "--replay", "x"], &[]);
    assert!(back.contains("checkpoint-ms = 30  # config file"), "{back}");

    // AZW_CONFIG names the file too; an empty one reads none.
    let text = print_config(
        &["--replay", "x"],
        &[("AZW_CONFIG", config.to_str().unwrap())],
    );
    assert!(text.contains("poll-ms = 100"), "{text}");
    let text = print_config(&["--replay", "x"], &[("AZW_CONFIG", "")]);
    assert!(text.contains("# config file: none") && text.contains("poll-ms = 250  # default"));

    // A file's log-dir gives way to a --replay given on the command line
    // (they conflict), instead of failing.
    fs::write(&config, format!("log-dir = {:?}\n", dir.to_str().unwrap())).unwrap();
    let text = print_config(
        &["--config", config.to_str().unwrap(), "--replay", "x"],
        &[],
    );
    assert!(text.contains("# log-dir = (not set)"), "{text}");
}

#[test]
fn unknown_keys_and_bad_values_are_refused_with_file_and_line() {
    let dir = tempdir("ops-unknown");
    let config = dir.join("azw.toml");
    let run = |bin: &str, text: &str| {
        fs::write(&config, text).unwrap();
        let out = Command::new(bin)
            .args(["--config", config.to_str().unwrap(), "--print-config"])
            .args(
                ["--replay", "x", "--inspect", "x"]
                    .iter()
                    .take(if bin == INFER { 2 } else { 0 }),
            )
            .output()
            .unwrap();
        assert!(!out.status.success(), "accepted:\n{text}");
        stderr(&out)
    };
    let shown = config.display().to_string();
    let err = run(INFER, "model-dir = \"m\"\n\n# typo\nmodel-dri = \"m\"\n");
    assert!(
        err.contains(&format!("{shown} line 4")) && err.contains("`model-dri`"),
        "{err}"
    );
    let err = run(TRAIN, "[azw-train]\nepochs = 2\nstate-dir = \"s\"\n");
    assert!(
        err.contains(&format!("{shown} line 3")) && err.contains("not a flag of azw-train"),
        "{err}"
    );
    let err = run(EVAL, "[azw-evl]\njson = true\n");
    assert!(err.contains(&format!("{shown} line 1")), "{err}");
    let err = run(INFER, "[azw-infer]\nonly-anomalies = \"yes\"\n");
    assert!(err.contains("line 2") && err.contains("switch"), "{err}");
    let err = run(INFER, "[azw-infer]\npoll-ms = \"soon\"\n");
    assert!(err.contains("line 2") && err.contains("--poll-ms"), "{err}");
    let err = run(INFER, "poll-ms = 1\npoll-ms = 2\n");
    assert!(err.contains("line 2"), "{err}");
    // A --config that does not exist is an error, not silence.
    let out = Command::new(INFER)
        .args([
            "--config",
            dir.join("nope.toml").to_str().unwrap(),
            "--replay",
            "x",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("nope.toml"));
}

/// Every flag of every tool shows its AZW_ variable in --help.
#[test]
fn every_flag_has_an_environment_twin() {
    for bin in [TRAIN, INFER, EVAL] {
        let out = Command::new(bin).arg("--help").output().unwrap();
        let help = stdout(&out);
        // Options start a line with `-x, --name` or `--name`; the text after
        // an option up to the next one is its description.
        let mut options: Vec<(String, String)> = Vec::new();
        for line in help.lines() {
            let t = line.trim_start();
            let indent = line.len() - t.len();
            let long = t
                .strip_prefix('-')
                .filter(|_| (1..=6).contains(&indent))
                .and_then(|_| t.split_whitespace().find(|w| w.starts_with("--")));
            match long {
                Some(l) => options.push((l.trim_end_matches(',').to_owned(), String::new())),
                None => {
                    if let Some((_, text)) = options.last_mut() {
                        text.push_str(line);
                    }
                }
            }
        }
        let flags: Vec<&(String, String)> = options
            .iter()
            .filter(|(l, _)| {
                !["--help", "--version", "--print-config", "--generate"].contains(&l.as_str())
            })
            .collect();
        assert!(flags.len() > 15, "{bin}: {flags:?}");
        for (long, text) in flags {
            assert!(
                text.contains("[env: AZW_"),
                "{bin} {long} has no AZW_ variable: {text}"
            );
        }
    }
}

#[test]
fn man_pages_and_completions_are_made_from_the_command_lines() {
    for (bin, name, flag) in [
        (TRAIN, "azw-train", "min-records"),
        (INFER, "azw-infer", "metrics-listen"),
        (EVAL, "azw-eval", "train-share"),
    ] {
        let man = Command::new(bin)
            .args(["--generate", "man"])
            .output()
            .unwrap();
        assert!(man.status.success());
        let text = stdout(&man);
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{text}");
        assert!(text.contains(&format!(".TH {name}")), "{}", &text[..200]);
        assert!(
            text.contains(&flag.replace('-', "\\-")),
            "{name}: no {flag}"
        );
        for shell in ["bash", "zsh", "fish"] {
            let out = Command::new(bin)
                .args(["--generate", shell])
                .output()
                .unwrap();
            assert!(out.status.success());
            assert!(stdout(&out).contains(flag), "{name} {shell}");
        }
    }
    let out = Command::new(INFER)
        .args(["--generate", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn systemd_hears_ready_and_the_watchdog_from_a_live_run() {
    let dir = tempdir("ops-notify");
    fs::create_dir_all(dir.join("current")).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let log = dir.join("infer.log");
    let child = Command::new(INFER)
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "conn"])
        .args(["--model-dir", models().to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args(["--output", dir.join("scores.json").to_str().unwrap()])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let infer = Infer { child, log };
    let mut heard = Vec::new();
    let mut buf = [0u8; 256];
    while !(heard.iter().any(|m| m == "READY=1")
        && heard.iter().filter(|m| *m == "WATCHDOG=1").count() >= 2)
    {
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no notification ({e}); heard {heard:?}\n{}", infer.log()),
        };
        heard.push(String::from_utf8_lossy(&buf[..n]).trim().to_owned());
    }
    // Ready comes before the first watchdog ping, once the run goes round.
    assert_eq!(heard[0], "READY=1", "{heard:?}");
    assert!(infer.log().contains("no checkpoint in"));
    infer.terminate();
}

fn trained_ssh(dir: &TestDir, extra: &[&str]) -> Output {
    // The real default --min-records: not the tests' lower one.
    Command::new(TRAIN)
        .env_remove("AZW_MIN_RECORDS")
        .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
        .args([
            "--modules",
            "SSH",
            "--model-dir",
            dir.to_str().unwrap(),
            "-q",
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_model_of_too_few_records_is_refused_unless_asked_for_and_then_warned_about() {
    let dir = tempdir("ops-few");
    let out = trained_ssh(&dir, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("SSH: trained on only 40 records, fewer than --min-records 100"),
        "{err}"
    );
    assert!(!dir.join("ssh.model.json").exists());

    let out = trained_ssh(&dir, &["--min-records", "40"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let replay = Command::new(INFER)
        .args([
            "--replay",
            root().join("examples/logs/ssh.log.gz").to_str().unwrap(),
        ])
        .args(["--modules", "SSH", "--model-dir", dir.to_str().unwrap()])
        .args(["--output", dir.join("scores.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(
        stderr(&replay).contains("trained on only 40 records (fewer than 100)"),
        "{}",
        stderr(&replay)
    );

    // Under ALL, modules with too little traffic are left out with a
    // warning and the others trained.
    let all = tempdir("ops-few-all");
    let out = Command::new(TRAIN)
        .env_remove("AZW_MIN_RECORDS")
        .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
        .args(["--model-dir", all.to_str().unwrap(), "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut have: Vec<String> = fs::read_dir(&*all)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    have.sort();
    assert_eq!(
        have,
        [
            "conn.model.json",
            "dns.model.json",
            "http.model.json",
            "ssl.model.json"
        ]
    );
    assert!(
        stderr(&out).contains("SSH: trained on only"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn only_missing_trains_the_modules_without_a_model() {
    let dir = tempdir("ops-missing");
    let train = |extra: &[&str]| {
        crate::util::azw_train()
            .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
            .args([
                "--modules",
                "CONN,SSH",
                "--model-dir",
                dir.to_str().unwrap(),
            ])
            .arg("--only-missing")
            .args(extra)
            .output()
            .unwrap()
    };
    fs::copy(
        models().join("conn.model.json"),
        dir.join("conn.model.json"),
    )
    .unwrap();
    let before = fs::read(dir.join("conn.model.json")).unwrap();
    let out = train(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.join("ssh.model.json").exists());
    assert_eq!(fs::read(dir.join("conn.model.json")).unwrap(), before);
    let out = train(&[]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("nothing to train"),
        "{}",
        stdout(&out)
    );
    // A damaged model (cut short, as by a full disk) does not load:
    // azw-infer refuses to start on it and says what to run, and
    // --only-missing trains it again.
    fs::write(dir.join("conn.model.json"), &before[..before.len() / 2]).unwrap();
    let infer = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--replay", root().join("examples/logs").to_str().unwrap()])
        .args(["--modules", "CONN", "--model-dir", dir.to_str().unwrap()])
        .args(["--output", dir.join("s.json").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(infer.status.code(), Some(1));
    assert!(
        stderr(&infer).contains("--only-missing retrains a model that does not load"),
        "{}",
        stderr(&infer)
    );
    let out = train(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("trained again (--only-missing)"),
        "{}",
        stderr(&out)
    );
    assert!(autozeekwatch::model::Model::load(&dir.join("conn.model.json")).is_ok());
}

#[test]
fn a_start_date_after_the_history_names_the_history_found() {
    let dir = tempdir("ops-dates");
    fs::create_dir_all(dir.join("2024-04-19")).unwrap();
    fs::create_dir_all(dir.join("2024-04-21")).unwrap();
    let log = example_text("conn.log");
    fs::write(dir.join("2024-04-19/conn.00:00:00-01:00:00.log"), &log).unwrap();
    fs::write(dir.join("2024-04-21/conn.00:00:00-01:00:00.log"), &log).unwrap();
    for modules in ["CONN", "ALL"] {
        let out = crate::util::azw_train()
            .args(["--log-dir", dir.to_str().unwrap(), "--modules", modules])
            .args(["--start-date", "2030-01-01", "--dry-run"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("the history there spans 2024-04-19 to 2024-04-21"),
            "{modules}: {}",
            stderr(&out)
        );
    }
    // --last-days counts back from today: old history is outside it too.
    let out = crate::util::azw_train()
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "CONN"])
        .args(["--last-days", "7", "--dry-run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("spans 2024-04-19 to 2024-04-21"));
    // ... and ends today: a folder dated in the future (a clock that ran
    // ahead) is never expired, and was read every night.
    fs::create_dir_all(dir.join("2099-01-01")).unwrap();
    fs::write(dir.join("2099-01-01/conn.00:00:00-01:00:00.log"), &log).unwrap();
    let out = crate::util::azw_train()
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "CONN"])
        .args(["--last-days", "7", "--dry-run"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("spans 2024-04-19 to 2099-01-01"),
        "{}",
        stderr(&out)
    );
}

/// The unit's start step (`azw-train --only-missing` on every start, with
/// the shipped `modules = ["ALL"]`): once some module has a model, those
/// without one that have no logs or too few records are nothing to train,
/// not an error. It failed on them, so the service never started again
/// after its first start. With no model at all it still fails.
#[test]
fn only_missing_under_all_is_fine_with_quiet_log_types() {
    let dir = tempdir("ops-missing-all");
    let day = dir.join("logs/2024-04-19");
    fs::create_dir_all(&day).unwrap();
    fs::write(
        day.join("conn.00:00:00-01:00:00.log"),
        example_text("conn.log"),
    )
    .unwrap();
    // Three ssh records: too few for a model.
    let ssh = example_text("ssh.log.gz");
    let few: Vec<&str> = ssh
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .scan(0, |n, l| {
            *n += usize::from(!l.starts_with('#'));
            Some((*n, l))
        })
        .take_while(|(n, _)| *n <= 3)
        .map(|(_, l)| l)
        .collect();
    fs::write(day.join("ssh.00:00:00-01:00:00.log"), few.join("\n") + "\n").unwrap();
    let models = dir.join("models");
    let train = || {
        crate::util::azw_train()
            .args(["--log-dir", dir.join("logs").to_str().unwrap()])
            .args(["--modules", "ALL", "--only-missing", "-q"])
            .args(["--model-dir", models.to_str().unwrap()])
            .output()
            .unwrap()
    };
    // No model yet, and only ssh's few records: still an error.
    let conn = day.join("conn.00:00:00-01:00:00.log");
    fs::rename(&conn, dir.join("conn.log.away")).unwrap();
    assert!(!train().status.success());
    fs::rename(dir.join("conn.log.away"), &conn).unwrap();
    // The first start trains conn; ssh has too few.
    let out = train();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(models.join("conn.model.json").exists());
    // Every later start: ssh still too few, dns and the rest no logs.
    let out = train();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing trained"), "{}", stdout(&out));
    fs::remove_file(day.join("ssh.00:00:00-01:00:00.log")).unwrap();
    let out = train();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("have no logs"), "{}", stdout(&out));
}

/// Under ALL a module whose files could not be read is an error, not a
/// quiet log type skipped: its model stopped being renewed in silence.
#[test]
fn all_damaged_files_of_a_module_are_an_error_under_all() {
    let dir = tempdir("ops-damaged");
    let day = dir.join("2024-04-19");
    fs::create_dir_all(&day).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(example_text("conn.log").as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    fs::write(day.join("conn.00:00:00-01:00:00.log.gz"), &gz[..200]).unwrap();
    // A healthy dns log beside it is trained.
    fs::write(
        day.join("dns.00:00:00-01:00:00.log"),
        example_text("dns.log.gz"),
    )
    .unwrap();
    let out = crate::util::azw_train()
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "ALL", "-q"])
        .args(["--model-dir", dir.join("models").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("1 of them could not be read"),
        "{}",
        stderr(&out)
    );
    assert!(dir.join("models/dns.model.json").exists());
}

/// One damaged file among healthy ones: the model is trained on what was
/// read, and the summary says so under the table (it said "files 2,
/// skipped 0", the damage in a warning scrolled away), and so does the
/// exit status: 2, as for a replay (it was 0, so a nightly job's
/// monitoring never saw it).
#[test]
fn a_damaged_file_among_others_is_said_in_the_summary_and_exit_status() {
    let dir = tempdir("ops-one-damaged");
    let day = dir.join("2024-04-19");
    fs::create_dir_all(&day).unwrap();
    let text = example_text("conn.log");
    fs::write(day.join("conn.00:00:00-01:00:00.log"), &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    fs::write(
        day.join("conn.01:00:00-02:00:00.log.gz"),
        &gz[..gz.len() / 2],
    )
    .unwrap();
    let out = crate::util::azw_train()
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "CONN"])
        .args(["--min-records", "20"])
        .args(["--model-dir", dir.join("models").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(dir.join("models/conn.model.json").exists());
    assert!(
        stdout(&out).contains("CONN: 1 of its files could not be read, or not to their end"),
        "{}",
        stdout(&out)
    );
}

/// A module named without logs is an error, but the others are trained:
/// one quiet log type kept every model from being renewed.
#[test]
fn a_named_module_without_logs_does_not_stop_the_others() {
    let dir = tempdir("ops-named-quiet");
    let out = crate::util::azw_train()
        .args([
            "--log-dir",
            root().join("examples/logs/conn.log").to_str().unwrap(),
        ])
        .args(["--modules", "CONN,SSH", "-q"])
        .args(["--model-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(dir.join("conn.model.json").exists(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SSH: no `ssh` logs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn all_modules_on_one_file_trains_the_module_it_holds() {
    let dir = tempdir("ops-one-file");
    let out = crate::util::azw_train()
        .args([
            "--log-dir",
            root().join("examples/logs/conn.log").to_str().unwrap(),
        ])
        .args([
            "--modules",
            "ALL",
            "--model-dir",
            dir.to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let have: Vec<String> = fs::read_dir(&*dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(have, ["conn.model.json"]);
}

/// Under ALL, a model trained for a module after azw-infer started (its
/// first training) is picked up without a restart, from the checkpoint.
#[test]
fn a_model_for_a_new_module_is_picked_up_without_a_restart() {
    let dir = tempdir("ops-new-module");
    let model_dir = dir.join("models");
    fs::create_dir_all(dir.join("current")).unwrap();
    fs::create_dir_all(&model_dir).unwrap();
    fs::copy(
        models().join("conn.model.json"),
        model_dir.join("conn.model.json"),
    )
    .unwrap();
    let output = dir.join("scores.json");
    let log = dir.join("infer.log");
    let child = Command::new(INFER)
        .args(["--log-dir", dir.to_str().unwrap(), "--modules", "ALL"])
        .args(["--model-dir", model_dir.to_str().unwrap()])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args(["--output", output.to_str().unwrap()])
        .args(["--poll-ms", "50", "--checkpoint-ms", "100"])
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let infer = Infer {
        child,
        log: log.clone(),
    };
    wait_until("the start", &log, || {
        infer.log().contains("no checkpoint in")
    });
    let (header, data) = conn_lines();
    append(
        &dir.join("current/conn.log"),
        &format!("{header}{}\n", data.join("\n")),
    );
    let dns = example_text("dns.log.gz");
    let dns_records = dns.lines().filter(|l| !l.starts_with('#')).count();
    append(&dir.join("current/dns.log"), &dns);
    wait_until("the conn records", &log, || {
        output_records(&output).len() == data.len()
    });
    // The first training of DNS writes its model (atomically).
    let tmp = model_dir.join(".dns.tmp");
    fs::copy(models().join("dns.model.json"), &tmp).unwrap();
    fs::rename(&tmp, model_dir.join("dns.model.json")).unwrap();
    wait_until("the dns records", &log, || {
        output_records(&output).len() == data.len() + dns_records
    });
    let records = output_records(&output);
    let dns_out = records.iter().filter(|r| r["module"] == "DNS").count();
    assert_eq!(dns_out, dns_records);
    // Nothing twice: every conn uid once.
    let conn_out = records.iter().filter(|r| r["module"] == "CONN").count();
    assert_eq!(conn_out, data.len());
    let text = infer.terminate();
    assert!(text.contains("DNS: a model appeared"), "{text}");
}

/// The service's config file names its output; a replay run by hand with
/// that file must not replace the live scores with its own.
#[test]
fn a_replay_with_the_services_config_leaves_the_live_output_alone() {
    let dir = tempdir("ops-replay-live");
    fs::create_dir_all(dir.join("current")).unwrap();
    let output = dir.join("scores.json");
    let config = dir.join("azw.toml");
    fs::write(
        &config,
        format!(
            "log-dir = {:?}\nmodel-dir = {:?}\n[azw-infer]\nmodules = [\"CONN\"]\nstate-dir = {:?}\noutput = {:?}\npoll-ms = 50\nmetrics-listen = \"127.0.0.1:0\"\n",
            dir.to_str().unwrap(),
            models().to_str().unwrap(),
            dir.join("state").to_str().unwrap(),
            output.to_str().unwrap()
        ),
    )
    .unwrap();
    let log = dir.join("infer.log");
    let child = Command::new(INFER)
        .env("AZW_CONFIG", &config)
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let infer = Infer {
        child,
        log: log.clone(),
    };
    wait_until("the start", &log, || {
        infer.log().contains("no checkpoint in")
    });
    let (header, data) = conn_lines();
    append(
        &dir.join("current/conn.log"),
        &format!("{header}{}\n", data.join("\n")),
    );
    wait_until("the records", &log, || {
        output_records(&output).len() == data.len()
    });
    infer.terminate();
    let live = fs::read(&output).unwrap();

    let conn = root().join("examples/logs/conn.log");
    let replay = Command::new(INFER)
        .env("AZW_CONFIG", &config)
        .args(["--replay", conn.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!replay.status.success());
    assert!(
        stderr(&replay).contains("the live run's output"),
        "{}",
        stderr(&replay)
    );
    assert_eq!(fs::read(&output).unwrap(), live);
    // To standard output it runs (and needs no metrics port).
    let replay = Command::new(INFER)
        .env("AZW_CONFIG", &config)
        .args(["--replay", conn.to_str().unwrap(), "--output", "-"])
        .output()
        .unwrap();
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert_eq!(stdout(&replay).lines().count(), data.len());
    assert!(!stderr(&replay).contains("metrics at"));
}

/// Models trained by root under a strict umask stay readable by the
/// service's own user (0644), so it is never told to "train a model
/// first" about a model it cannot read.
#[test]
fn models_are_written_readable_by_the_service_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("ops-umask");
    let out = Command::new("sh")
        .args(["-c", "umask 077; exec \"$0\" \"$@\"", TRAIN])
        .env("AZW_MIN_RECORDS", crate::util::TEST_MIN_RECORDS)
        .args(["--log-dir", root().join("examples/logs").to_str().unwrap()])
        .args([
            "--modules",
            "SSH",
            "--model-dir",
            dir.to_str().unwrap(),
            "-q",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = fs::metadata(dir.join("ssh.model.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644, "{mode:o}");
}
