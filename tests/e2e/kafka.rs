//! `azw-infer --source kafka` against a real Kafka-compatible broker
//! (Tansu, started here on a free loopback port; `.ci/run` installs it):
//! real conn and dns records from `examples/logs/` are produced to topics,
//! and the real binary consumes them in a consumer group.
//!
//! Nothing asserts on consumer lag: Tansu's high-watermark figures are not
//! reliable.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::broker::Broker;
use crate::util::{example_text, root, tempdir, Infer};

/// The JSON lines of an example log (plain or gzipped).
fn example_json(name: &str) -> Vec<String> {
    example_text(name)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// JSON records as Kafka messages keyed by their uid, as a Zeek logger
/// keyed by connection would send them.
fn keyed_by_uid(lines: &[String]) -> Vec<(Option<String>, Vec<u8>)> {
    lines
        .iter()
        .map(|l| (Some(uid_of(l)), l.clone().into_bytes()))
        .collect()
}

fn uid_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["uid"].as_str().unwrap().to_owned()
}

/// Starts `azw-infer --source kafka` on `broker`, its log in
/// `dir/<name>.log`. `models`: the model folder (default: the shared one).
/// A member of `group` (its `--topics`, `--group` and `--modules`)
/// writing its scores to `out`.
fn member(broker: &Broker, dir: &Path, name: &str, group: &[&str], out: &Path) -> Infer {
    let output = ["--output", out.to_str().unwrap()];
    consume(broker, dir, name, None, &[group, &output[..]].concat())
}

/// A member `name` of `group` scoring topic `zeek-conn` as conn records,
/// with `args` (its output among them).
fn conn_member(broker: &Broker, dir: &Path, name: &str, group: &str, args: &[&str]) -> Infer {
    let topic = [
        "--topics",
        "zeek-conn",
        "--group",
        group,
        "--modules",
        "conn",
    ];
    consume(broker, dir, name, None, &[&topic[..], args].concat())
}

/// Whether a member's log says it was assigned partitions (not none).
fn was_assigned(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("kafka: assigned partitions") && !l.contains("(none)"))
}

fn consume(broker: &Broker, dir: &Path, name: &str, models: Option<&Path>, args: &[&str]) -> Infer {
    let log = dir.join(format!("{name}.log"));
    let child = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--source", "kafka", "--brokers", &broker.addr])
        .args([
            "--model-dir",
            models.unwrap_or(crate::util::models()).to_str().unwrap(),
        ])
        .args(if args.contains(&"--checkpoint-ms") {
            &[][..]
        } else {
            &["--checkpoint-ms", "200"][..]
        })
        .args(if args.contains(&"--stats-secs") {
            &[][..]
        } else {
            &["--stats-secs", "5"][..]
        })
        // Tansu declares a member dead after the session timeout; keep the
        // take-over quick.
        .args(["--kafka-config", "session.timeout.ms=6000"])
        .args(["--kafka-config", "heartbeat.interval.ms=500"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Infer { child, log }
}

/// The uids of the records in a scores file (only complete lines;
/// detections and alerts left out), each with its count.
fn scored_uids(path: &Path) -> BTreeMap<String, usize> {
    let text = fs::read_to_string(path).unwrap_or_default();
    // A last line without its newline is still being written.
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut out = BTreeMap::new();
    for line in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", path.display()));
        if v.get("detection").is_some() || v.get("alert").is_some() {
            continue;
        }
        let uid = v["uid"].as_str();
        let uid =
            uid.unwrap_or_else(|| panic!("{}: a record without a uid: {line}", path.display()));
        *out.entry(uid.to_owned()).or_insert(0) += 1;
    }
    out
}

/// Writes `lines` to `dir/conn.json` and replays them with the shared
/// models and `args` into `dir/<out>`: what a Kafka consumer of the same
/// records is compared with. Returns the input file and the output.
fn replay_of(
    dir: &Path,
    lines: &[String],
    args: &[&str],
    out: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = dir.join("conn.json");
    if !file.exists() {
        fs::write(&file, lines.join("\n") + "\n").unwrap();
    }
    let output = dir.join(out);
    crate::util::succeed(
        Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--replay", file.to_str().unwrap(), "--modules", "conn"])
            .args(args)
            .args(["--model-dir", crate::util::models().to_str().unwrap()])
            .args(["--output", output.to_str().unwrap()]),
    );
    (file, output)
}

fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Two consumers in one group share a 4-partition topic; one is killed
/// with SIGKILL mid-stream; the survivor takes its partitions over and every
/// uid is scored at least once.
#[test]
fn a_group_shares_partitions_and_survives_a_member() {
    let broker = Broker::start();
    let topic = "zeek-conn";
    broker.create_topic(topic, 4);
    let lines = example_json("conn.json.gz");
    let messages = keyed_by_uid(&lines);
    let all: BTreeSet<String> = lines.iter().map(|l| uid_of(l)).collect();
    assert!(all.len() > 500, "{} uids", all.len());
    let (first, second) = messages.split_at(messages.len() / 2);

    let dir = tempdir("group");
    let (out_a, out_b) = (dir.join("a.json"), dir.join("b.json"));
    let group = [
        "--topics",
        topic,
        "--group",
        "azw-test",
        "--modules",
        "conn",
    ];
    let mut a = member(&broker, &dir, "a", &group, &out_a);
    let b = member(&broker, &dir, "b", &group, &out_b);
    let logs = || format!("--- a:\n{}\n--- b:\n{}", a_log(&dir), b_log(&dir));
    fn a_log(dir: &Path) -> String {
        fs::read_to_string(dir.join("a.log")).unwrap_or_default()
    }
    fn b_log(dir: &Path) -> String {
        fs::read_to_string(dir.join("b.log")).unwrap_or_default()
    }

    // Both members hold partitions before anything is produced, so both
    // take a share of the first half.
    wait_for(
        "both consumers to be assigned partitions",
        Duration::from_secs(120),
        || {
            let (la, lb) = (a_log(&dir), b_log(&dir));
            let holds = |l: &str| {
                l.lines()
                    .rev()
                    .find(|x| {
                        x.contains("kafka: assigned partitions")
                            || x.contains("kafka: revoked partitions")
                    })
                    .is_some_and(|x| x.contains("assigned") && !x.contains("(none)"))
            };
            holds(&la) && holds(&lb)
        },
        logs,
    );
    broker.produce(topic, first);
    let first_uids: BTreeSet<String> = first.iter().map(|(k, _)| k.clone().unwrap()).collect();
    wait_for(
        "the first half to be scored",
        Duration::from_secs(120),
        || {
            let mut seen = scored_uids(&out_a);
            seen.extend(scored_uids(&out_b));
            first_uids.iter().all(|u| seen.contains_key(u))
        },
        logs,
    );
    let (by_a, by_b) = (scored_uids(&out_a).len(), scored_uids(&out_b).len());
    assert!(
        by_a > 0 && by_b > 0,
        "the group did not share the work: a {by_a}, b {by_b}\n{}",
        logs()
    );

    // Member a dies without a word; the second half goes to partitions it
    // held too.
    a.kill9();
    broker.produce(topic, second);
    wait_for(
        "every uid to be scored after the kill",
        Duration::from_secs(180),
        || {
            let mut seen = scored_uids(&out_a);
            seen.extend(scored_uids(&out_b));
            all.iter().all(|u| seen.contains_key(u))
        },
        logs,
    );
    let log_b = b.terminate();
    assert!(
        log_b.contains(&format!("kafka: assigned partitions {topic}[0,1,2,3]")),
        "the survivor did not take over all partitions:\n{log_b}"
    );
    // Records of the second half on a's former partitions can only have
    // been scored by b.
    let second_uids: BTreeSet<String> = second.iter().map(|(k, _)| k.clone().unwrap()).collect();
    let seen_b = scored_uids(&out_b);
    assert!(second_uids.iter().all(|u| seen_b.contains_key(u)));

    // b committed its offsets when it stopped: a new member of the group
    // starts after them and has nothing to score.
    let out_c = dir.join("c.json");
    let c = member(&broker, &dir, "c", &group, &out_c);
    wait_for(
        "the new member to be assigned the partitions",
        Duration::from_secs(120),
        || {
            c.log()
                .contains(&format!("kafka: assigned partitions {topic}[0,1,2,3]"))
        },
        || c.log(),
    );
    // One new record: c scores it, and only it, once it has fetched from
    // the committed offsets.
    let marker = lines[0].replacen("\"uid\":\"", "\"uid\":\"Cmarker", 1);
    broker.produce(topic, &[(Some("Cmarker".into()), marker.into_bytes())]);
    wait_for(
        "the new member to score the new record",
        Duration::from_secs(60),
        || !scored_uids(&out_c).is_empty(),
        || c.log(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let log_c = c.terminate();
    let seen_c: Vec<String> = scored_uids(&out_c).into_keys().collect();
    assert!(
        seen_c.len() == 1 && seen_c[0].starts_with("Cmarker"),
        "records were scored again after a clean stop: {} records\n{log_c}",
        seen_c.len()
    );
}

/// The output broker dies and the scored records of the second half are
/// refused: azw-infer exits with an error and commits nothing it could not
/// deliver, so a new member scores them (at-least-once holds across a sink
/// failure). Commits are ten minutes apart here, so nothing is committed
/// before the failure either: the new member must score every record.
#[test]
fn a_refused_output_commits_nothing() {
    let input = Broker::start();
    let output = Broker::start();
    input.create_topic("zeek-conn", 2);
    output.create_topic("azw-scores", 1);
    let messages = keyed_by_uid(&example_json("conn.json.gz"));
    let (first, second) = messages.split_at(messages.len() / 2);
    let dir = tempdir("refused");
    let sink = format!("kafka://{}/azw-scores", output.addr);
    let group = [
        "--topics",
        "zeek-conn",
        "--group",
        "azw-refused",
        "--modules",
        "conn",
    ];
    let mut a = consume(
        &input,
        &dir,
        "a",
        None,
        &[
            &group[..],
            &["--output", &sink, "--checkpoint-ms", "600000"],
            &["--kafka-config", "message.timeout.ms=2000"],
        ]
        .concat(),
    );
    input.produce("zeek-conn", first);
    assert_eq!(
        output.read_all("azw-scores", 1, first.len()).len(),
        first.len(),
        "{}",
        a.log()
    );
    drop(output);
    input.produce("zeek-conn", second);
    // Past the delivery timeout, then a stop: the last sync fails.
    std::thread::sleep(Duration::from_secs(4));
    let status = a.sigterm();
    let log_a = a.log();
    assert!(
        !status.success(),
        "a refused output must fail the run:\n{log_a}"
    );
    assert!(log_a.contains("refused"), "{log_a}");

    let out_b = dir.join("b.json");
    let b = member(&input, &dir, "b", &group, &out_b);
    wait_for(
        "the new member to score every record again",
        Duration::from_secs(120),
        || scored_uids(&out_b).len() == messages.len(),
        || format!("--- a:\n{log_a}\n--- b:\n{}", b.log()),
    );
    b.terminate();
}

/// A member joining takes partitions over from a member that has scored
/// records it has not committed yet (it commits every ten minutes here): the
/// old owner commits as the partitions are revoked, so nothing is scored
/// twice.
#[test]
fn a_clean_rebalance_scores_nothing_twice() {
    let broker = Broker::start();
    let topic = "zeek-conn";
    broker.create_topic(topic, 4);
    let messages = keyed_by_uid(&example_json("conn.json.gz"));
    let (first, second) = messages.split_at(messages.len() / 2);
    let dir = tempdir("handover");
    let (out_a, out_b) = (dir.join("a.json"), dir.join("b.json"));
    let args = |out: &Path| -> Vec<String> {
        [
            "--topics",
            topic,
            "--group",
            "azw-handover",
            "--modules",
            "conn",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain(["--checkpoint-ms".into(), "600000".into()])
        .chain(["--output".into(), out.to_str().unwrap().to_owned()])
        .collect()
    };
    let args_a = args(&out_a);
    let args_a: Vec<&str> = args_a.iter().map(String::as_str).collect();
    let a = consume(&broker, &dir, "a", None, &args_a);
    broker.produce(topic, first);
    wait_for(
        "a to score the first half alone",
        Duration::from_secs(120),
        || scored_uids(&out_a).len() == first.len(),
        || a.log(),
    );
    let args_b = args(&out_b);
    let args_b: Vec<&str> = args_b.iter().map(String::as_str).collect();
    let b = consume(&broker, &dir, "b", None, &args_b);
    wait_for(
        "b to take partitions from a",
        Duration::from_secs(120),
        || was_assigned(&b.log()),
        || format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log()),
    );
    broker.produce(topic, second);
    let total = |a: &Path, b: &Path| {
        let mut seen = scored_uids(a);
        for (uid, n) in scored_uids(b) {
            *seen.entry(uid).or_insert(0) += n;
        }
        seen
    };
    wait_for(
        "every record to be scored",
        Duration::from_secs(120),
        || total(&out_a, &out_b).len() == messages.len(),
        || format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log()),
    );
    let (log_a, log_b) = (a.terminate(), b.terminate());
    let seen = total(&out_a, &out_b);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "scored twice: {twice:?}\n--- a:\n{log_a}\n--- b:\n{log_b}"
    );
    assert!(
        !scored_uids(&out_b).is_empty(),
        "b scored nothing:\n{log_b}"
    );
}

/// A member that holds no partition (one partition, two members) says so
/// in its stats lines, not "0 records behind" as a member that caught up;
/// the member that holds it never says so once it has it.
#[test]
fn a_member_without_partitions_says_so() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let dir = tempdir("idle-member");
    // A member of the group, its stats every second, writing NAME.json.
    let start = |name: &str| {
        let out = dir.join(format!("{name}.json"));
        let args = ["--stats-secs", "1", "--output", out.to_str().unwrap()];
        conn_member(&broker, &dir, name, "azw-idle", &args)
    };
    let a = start("a");
    wait_for(
        "a to be assigned the partition",
        Duration::from_secs(120),
        || was_assigned(&a.log()),
        || a.log(),
    );
    let b = start("b");
    // What a member's log says after its last assignment.
    fn since_assigned(log: &str) -> Option<(bool, Vec<&str>)> {
        let lines: Vec<&str> = log.lines().collect();
        let at = lines
            .iter()
            .rposition(|l| l.contains("kafka: assigned partitions"))?;
        Some((!lines[at].contains("(none)"), lines[at + 1..].to_vec()))
    }
    let says_none = |lines: &[&str]| {
        lines
            .iter()
            .any(|l| l.contains("kafka: holds no partition"))
    };
    // Once b has joined, one member holds the partition and the other,
    // assigned none, says so at its next stats line.
    wait_for(
        "the member assigned none to say it holds no partition",
        Duration::from_secs(120),
        || {
            let (la, lb) = (a.log(), b.log());
            match (since_assigned(&la), since_assigned(&lb)) {
                (Some((true, _)), Some((false, idle))) | (Some((false, idle)), Some((true, _))) => {
                    says_none(&idle)
                }
                _ => false,
            }
        },
        || format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log()),
    );
    // Two more stats lines of the holder's.
    std::thread::sleep(Duration::from_millis(2_500));
    let (log_a, log_b) = (a.terminate(), b.terminate());
    let holder = [&log_a, &log_b]
        .into_iter()
        .find(|l| since_assigned(l).is_some_and(|(holds, _)| holds))
        .unwrap();
    let (_, after) = since_assigned(holder).unwrap();
    assert!(
        !says_none(&after),
        "the holder says it holds none:\n{holder}"
    );
}

/// One `zeek` topic with records wrapped in their log type, as zeek-kafka's
/// `tag_json` writes them; the scores are published to a Kafka topic keyed
/// by uid. Log types without a model and broken messages are counted and
/// passed over; a replaced model is picked up.
#[test]
fn a_wrapped_topic_is_scored_into_a_kafka_topic() {
    let broker = Broker::start();
    broker.create_topic("zeek", 2);
    broker.create_topic("azw-scores", 3);
    let conn = example_json("conn.json.gz");
    let dns = example_json("dns.json");
    let mut messages: Vec<(Option<String>, Vec<u8>)> = Vec::new();
    for (i, (c, d)) in conn.iter().zip(dns.iter().cycle()).enumerate() {
        messages.push((None, format!("{{\"conn\": {c}}}").into_bytes()));
        if i < dns.len() {
            messages.push((None, format!("{{\"dns\":{d}}}").into_bytes()));
        }
    }
    messages.push((None, br#"{"files": {"ts": 1.0, "fuid": "F1"}}"#.to_vec()));
    messages.push((
        None,
        br#"{"conn": {"ts": 1.0, "uid": "Cbroken", "id.orig_p": "x"}}"#.to_vec(),
    ));
    let want: BTreeSet<(String, String)> = conn
        .iter()
        .map(|l| ("CONN".to_owned(), uid_of(l)))
        .chain(dns.iter().map(|l| ("DNS".to_owned(), uid_of(l))))
        .collect();

    let dir = tempdir("wrapped");
    let models = dir.join("models");
    fs::create_dir_all(&models).unwrap();
    for f in ["conn.model.json", "dns.model.json"] {
        fs::copy(crate::util::models().join(f), models.join(f)).unwrap();
    }
    let infer = consume(
        &broker,
        &dir,
        "infer",
        Some(&models),
        &[
            "--topics",
            "zeek",
            "--group",
            "azw-wrapped",
            "--modules",
            "conn,dns",
            "--output",
            &format!("kafka://{}/azw-scores", broker.addr),
        ],
    );
    broker.produce("zeek", &messages);
    let scores = broker.read_all("azw-scores", 3, conn.len() + dns.len());
    let mut got = BTreeSet::new();
    for (key, payload) in &scores {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let uid = v["uid"].as_str().unwrap().to_owned();
        assert_eq!(
            key.as_deref(),
            Some(uid.as_str()),
            "scores are keyed by uid"
        );
        assert!(
            v["score"].is_number() && v["anomaly"].is_boolean(),
            "{payload}"
        );
        got.insert((v["module"].as_str().unwrap().to_owned(), uid));
    }
    let missing: Vec<_> = want.difference(&got).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} of {} not scored, e.g. {missing:?}\n{}",
        want.difference(&got).count(),
        want.len(),
        infer.log()
    );

    // The nightly retraining replaces a model: a damaged file is refused,
    // a good one is switched to.
    fs::write(models.join("dns.model.json"), b"{ not a model").unwrap();
    fs::copy(
        crate::util::models().join("conn.model.json"),
        models.join("conn.model.json.tmp"),
    )
    .unwrap();
    fs::rename(
        models.join("conn.model.json.tmp"),
        models.join("conn.model.json"),
    )
    .unwrap();
    // The copy may keep the old modification time; make it differ.
    let f = fs::File::options()
        .append(true)
        .open(models.join("conn.model.json"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    wait_for(
        "the model change to be seen",
        Duration::from_secs(30),
        || {
            let l = infer.log();
            l.contains("CONN: switched to the new model")
                && l.contains("DNS: refused the new model")
        },
        || infer.log(),
    );
    let log = infer.terminate();
    assert!(log.contains("not scored here: files 1"), "{log}");
    assert!(log.contains("skipped malformed record"), "{log}");
}

/// A log type with a model from a site's own table is routed like the
/// built-in ones: by a topic that names it (`site1.myapp`) and by a wrapper
/// key (`{"myapp": {...}}` on the shared `zeek` topic).
#[test]
fn a_site_log_type_is_routed_by_topic_and_by_wrapper() {
    let broker = Broker::start();
    broker.create_topic("site1.myapp", 1);
    broker.create_topic("zeek", 1);
    let dir = tempdir("kafka-myapp");
    let models = crate::tables::train_myapp(&dir);
    let record = |i: usize| {
        format!(
            r#"{{"ts":{}.5,"uid":"CK{i}","id.orig_h":"10.0.0.10","id.orig_p":40000,"id.resp_h":"10.0.1.5","id.resp_p":8443,"user":"alice","action":"read","bytes":2000,"ok":true}}"#,
            1_713_590_000 + i
        )
    };
    let plain: Vec<_> = (0..10).map(|i| (None, record(i).into_bytes())).collect();
    let wrapped: Vec<_> = (10..20)
        .map(|i| (None, format!("{{\"myapp\": {}}}", record(i)).into_bytes()))
        .collect();
    let scores = dir.join("scores.json");
    let infer = consume(
        &broker,
        &dir,
        "infer",
        Some(&models),
        &[
            "--topics",
            "site1.myapp,zeek",
            "--group",
            "azw-myapp",
            "--output",
            scores.to_str().unwrap(),
        ],
    );
    broker.produce("site1.myapp", &plain);
    broker.produce("zeek", &wrapped);
    wait_for(
        "20 MYAPP records",
        Duration::from_secs(60),
        || scored_uids(&scores).len() == 20,
        || infer.log(),
    );
    infer.terminate();
    let text = fs::read_to_string(&scores).unwrap();
    assert!(
        text.lines().all(|l| l.contains("\"module\":\"MYAPP\"")),
        "{text}"
    );
}

/// Live file mode can publish to Kafka too: the records of a live conn log
/// appear in the scores topic, keyed by uid, and the checkpoint follows.
#[test]
fn live_files_publish_to_kafka() {
    let broker = Broker::start();
    broker.create_topic("azw-scores", 2);
    let dir = tempdir("live");
    let current = dir.join("logs/current");
    fs::create_dir_all(&current).unwrap();
    fs::copy(
        root().join("examples/logs/conn.log"),
        current.join("conn.log"),
    )
    .unwrap();
    let text = fs::read_to_string(current.join("conn.log")).unwrap();
    let want: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split('\t').nth(1).unwrap().to_owned())
        .collect();
    let infer = follow_live(&dir, &broker, &[]);
    let records = text.lines().filter(|l| !l.starts_with('#')).count();
    let scores = broker.read_all("azw-scores", 2, records);
    let mut got = BTreeSet::new();
    for (key, payload) in &scores {
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let uid = v["uid"].as_str().unwrap().to_owned();
        assert_eq!(key.as_deref(), Some(uid.as_str()));
        got.insert(uid);
    }
    let log = infer.terminate();
    assert_eq!(got, want, "{log}");
    // The checkpoint (saved after the brokers acknowledged) reached the
    // end of the file.
    let checkpoint: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("state/checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(
        checkpoint["modules"]["CONN"]["offset"].as_u64(),
        Some(text.len() as u64),
        "{checkpoint}"
    );
}

/// `azw-infer` following `dir/logs/current/conn.log` into the broker's
/// `azw-scores` topic, checkpointing in `dir/state`.
fn follow_live(dir: &Path, broker: &Broker, extra: &[&str]) -> Infer {
    let log = dir.join("infer.log");
    let child = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--log-dir", dir.join("logs").to_str().unwrap()])
        .args([
            "--modules",
            "conn",
            "--model-dir",
            crate::util::models().to_str().unwrap(),
        ])
        .args(["--state-dir", dir.join("state").to_str().unwrap()])
        .args(["--output", &format!("kafka://{}/azw-scores", broker.addr)])
        .args(["--checkpoint-ms", "200"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Infer { child, log }
}

/// Live file mode whose Kafka output dies: azw-infer exits non-zero by
/// itself (for systemd to restart it), and its checkpoint never passes the
/// records the brokers did not acknowledge.
#[test]
fn live_files_stop_when_the_kafka_output_fails() {
    let broker = Broker::start();
    broker.create_topic("azw-scores", 1);
    let dir = tempdir("live-fail");
    let current = dir.join("logs/current");
    fs::create_dir_all(&current).unwrap();
    let text = fs::read_to_string(root().join("examples/logs/conn.log")).unwrap();
    let (header, data): (Vec<&str>, Vec<&str>) = text
        .lines()
        .filter(|l| !l.starts_with("#close"))
        .partition(|l| l.starts_with('#'));
    let (first, second) = data.split_at(data.len() / 2);
    let first_text: String = header
        .iter()
        .chain(first)
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(current.join("conn.log"), &first_text).unwrap();
    let mut infer = follow_live(
        &dir,
        &broker,
        &["--kafka-config", "message.timeout.ms=2000"],
    );
    let got = broker.read_all("azw-scores", 1, first.len());
    assert_eq!(got.len(), first.len(), "{}", infer.log());
    drop(broker);
    let mut live = fs::OpenOptions::new()
        .append(true)
        .open(current.join("conn.log"))
        .unwrap();
    for l in second {
        writeln!(live, "{l}").unwrap();
    }
    drop(live);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = infer.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "azw-infer did not stop on a dead output:\n{}",
            infer.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = infer.log();
    assert!(!status.success(), "a dead output must fail the run:\n{log}");
    let checkpoint: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("state/checkpoint.json")).unwrap())
            .unwrap();
    let offset = checkpoint["modules"]["CONN"]["offset"].as_u64().unwrap();
    assert!(
        offset <= first_text.len() as u64,
        "checkpoint at {offset}, past the {} bytes delivered:\n{log}",
        first_text.len()
    );
}

/// A TSV line of `header`'s columns as a Zeek JSON record.
fn tsv_to_json(header: &[String], line: &str) -> String {
    let row = |tag: &str| -> Vec<String> {
        header
            .iter()
            .find_map(|h| h.strip_prefix(tag))
            .unwrap()
            .split('\t')
            .map(str::to_owned)
            .collect()
    };
    let (names, types) = (row("#fields\t"), row("#types\t"));
    let mut obj = serde_json::Map::new();
    for ((name, ty), value) in names.iter().zip(&types).zip(line.split('\t')) {
        if value == "-" || value == "(empty)" {
            continue;
        }
        let v = match ty.as_str() {
            "time" | "interval" | "double" | "count" | "port" | "int" => {
                serde_json::Value::Number(value.parse().unwrap())
            }
            "bool" => serde_json::Value::Bool(value == "T"),
            _ => serde_json::Value::String(value.to_owned()),
        };
        obj.insert(name.clone(), v);
    }
    serde_json::Value::Object(obj).to_string()
}

/// The detectors and alerts run the same through Kafka as in replay: the
/// same input (a beacon, a port scan and a six-hour connection among the
/// example conn records, on one partition) gives the same detections, in
/// order, and the same alerts (`--alerts output`).
#[test]
fn detections_through_kafka_are_those_of_replay() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let json: Vec<String> = data.iter().map(|l| tsv_to_json(&header, l)).collect();
    let dir = tempdir("kafka-detect");
    let detections = |path: &Path| -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("detection").is_some())
            .collect()
    };
    let flags = ["--scan-external", "--alerts", "output"];
    replay_of(&dir, &json, &flags, "replay.json");
    let expected = detections(&dir.join("replay.json"));
    let kinds: BTreeSet<&str> = expected
        .iter()
        .map(|v| v["detection"].as_str().unwrap())
        .collect();
    for kind in ["beacon", "long_connection", "port_scan"] {
        assert!(kinds.contains(kind), "{kinds:?}");
    }

    let out = dir.join("kafka.json");
    let output = out.to_str().unwrap();
    let infer = conn_member(
        &broker,
        &dir,
        "infer",
        "azw-detect",
        &["--scan-external", "--alerts", "output", "--output", output],
    );
    broker.produce("zeek-conn", &keyed_by_uid(&json));
    wait_for(
        "every record scored",
        Duration::from_secs(90),
        || {
            fs::read_to_string(&out)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("\"uid\":"))
                .count()
                >= json.len()
        },
        || infer.log(),
    );
    infer.terminate();
    assert_eq!(detections(&out), expected);
    // The same alerts: those the consumer wrote are replay's first ones
    // (replay closes the rest at the end of its input).
    let alerts = |path: &Path| -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v.get("alert").is_some())
            .collect()
    };
    let (replayed, consumed) = (alerts(&dir.join("replay.json")), alerts(&out));
    assert!(!consumed.is_empty());
    assert!(replayed.len() > consumed.len());
    assert_eq!(replayed[..consumed.len()], consumed[..]);
}

/// An allowlist applies through Kafka as in replay, also to a batch's
/// long runs of one log type (scored on threads): every example conn
/// record is in the topic before the member starts, so its first batch is
/// one run of 555, and a rule dropping the busiest host leaves the same
/// records as replay with the same rule. (Until 2026-12-06 such runs were
/// scored without the allowlist.)
#[test]
fn an_allowlist_applies_through_kafka_as_in_replay() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let json = example_json("conn.json.gz");
    let dir = tempdir("kafka-allow");
    let allow = dir.join("allow.toml");
    fs::write(
        &allow,
        "[[rule]]\nsource = \"fe80::d6c1:c8ff:fe1c:ea4f\"\naction = \"drop\"\n",
    )
    .unwrap();
    let allow = allow.to_str().unwrap();
    replay_of(&dir, &json, &["--allowlist", allow], "replay.json");
    let expected = scored_uids(&dir.join("replay.json"));
    let kept = expected.values().sum::<usize>();
    assert!(
        kept + 150 < json.len(),
        "the rule dropped {} of {}",
        json.len() - kept,
        json.len()
    );

    broker.produce("zeek-conn", &keyed_by_uid(&json));
    let out = dir.join("kafka.json");
    let output = out.to_str().unwrap();
    let args = ["--allowlist", allow, "--output", output];
    let infer = conn_member(&broker, &dir, "infer", "azw-allow", &args);
    wait_for(
        "the first batch scored",
        Duration::from_secs(90),
        || scored_uids(&out).values().sum::<usize>() >= kept,
        || infer.log(),
    );
    let log = infer.terminate();
    let dropped = json.len() - kept;
    assert!(
        log.contains(&format!("allowlist: {dropped} dropped")),
        "{log}"
    );
    let consumed = scored_uids(&out);
    assert_eq!(consumed.len(), expected.len(), "records written\n{log}");
    assert_eq!(consumed, expected);
}

/// `--threads` applies to a Kafka member as to replay, and changes nothing
/// written: the example conn records four times over (distinct uids; more
/// than three chunks of 512, so three workers all score), all in the topic
/// before the members start (so they come in long runs, scored on
/// threads), scored by a member with one scoring thread and by one with
/// three (each its own group) give the same bytes, and the scores replay
/// gives.
#[test]
fn the_scoring_threads_of_a_kafka_member_change_nothing_written() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let examples = example_json("conn.json.gz");
    let json: Vec<String> = (0..4)
        .flat_map(|copy| {
            examples
                .iter()
                .map(move |l| l.replacen("\"uid\":\"C", &format!("\"uid\":\"C{copy}x"), 1))
        })
        .collect();
    assert!(json.len() > 3 * 512);
    let dir = tempdir("kafka-threads");
    replay_of(&dir, &json, &[], "replay.json");
    let expected = scored_uids(&dir.join("replay.json"));
    assert_eq!(expected.values().sum::<usize>(), json.len());
    let scores = |path: &Path| -> BTreeMap<String, serde_json::Value> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["uid"].as_str().unwrap().to_owned(), v["score"].clone()))
            .collect()
    };
    let replayed = scores(&dir.join("replay.json"));
    assert!(
        replayed.values().all(|s| s.as_f64().is_some()),
        "every record has a score"
    );
    broker.produce("zeek-conn", &keyed_by_uid(&json));
    let members: Vec<(Infer, std::path::PathBuf)> = ["1", "3"]
        .iter()
        .map(|threads| {
            let out = dir.join(format!("kafka-{threads}.json"));
            let args = ["--threads", threads, "--output", out.to_str().unwrap()];
            let name = format!("infer-{threads}");
            let group = format!("azw-threads-{threads}");
            (conn_member(&broker, &dir, &name, &group, &args), out)
        })
        .collect();
    let mut written = Vec::new();
    for ((infer, out), threads) in members.into_iter().zip(["1", "3"]) {
        wait_for(
            "every record scored",
            Duration::from_secs(90),
            || scored_uids(&out).values().sum::<usize>() >= json.len(),
            || infer.log(),
        );
        let log = infer.terminate();
        assert!(
            log.contains(&format!("kafka: {threads} scoring threads")),
            "{log}"
        );
        assert_eq!(scored_uids(&out), expected, "{threads} threads\n{log}");
        assert!(
            scores(&out) == replayed,
            "{threads} threads: not replay's scores"
        );
        written.push(fs::read(&out).unwrap());
    }
    assert!(
        written[0] == written[1],
        "1 and 3 scoring threads wrote different bytes"
    );
}

/// The SIEM formats through Kafka are those of replay: the same input
/// scored by replay into an ECS file and by a Kafka consumer into an ECS
/// topic gives the same documents (records and detections) in the same
/// order, each one message; and an alert format (notice-json) carries the
/// same notices. A non-JSON format is refused for a Kafka output.
#[test]
fn siem_formats_through_kafka_are_those_of_replay() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    broker.create_topic("azw-ecs", 1);
    broker.create_topic("azw-notice", 1);
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let json: Vec<String> = data.iter().map(|l| tsv_to_json(&header, l)).collect();
    let dir = tempdir("kafka-siem");
    let replay = |format: &str| -> Vec<serde_json::Value> {
        let flags = ["--scan-external", "--sensor", "s1", "--format", format];
        let (_, out) = replay_of(&dir, &json, &flags, &format!("replay.{format}"));
        fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let ecs = replay("ecs");
    let notices = replay("notice-json");
    assert!(ecs.len() > json.len(), "records and detections");
    assert!(!notices.is_empty());

    let refused = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args([
            "--source",
            "kafka",
            "--brokers",
            &broker.addr,
            "--topics",
            "zeek-conn",
        ])
        .args(["--model-dir", crate::util::models().to_str().unwrap()])
        .args(["--modules", "conn", "--format", "notice"])
        .args(["--output", &format!("kafka://{}/azw-notice", broker.addr)])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("one JSON document"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    broker.produce("zeek-conn", &keyed_by_uid(&json));
    for (topic, format, group, want) in [
        ("azw-ecs", "ecs", "azw-siem-ecs", &ecs),
        ("azw-notice", "notice-json", "azw-siem-notice", &notices),
    ] {
        let infer = conn_member(
            &broker,
            &dir,
            group,
            group,
            &[
                "--scan-external",
                "--sensor",
                "s1",
                "--format",
                format,
                "--output",
                &format!("kafka://{}/{topic}", broker.addr),
            ],
        );
        let got = broker.read_all(topic, 1, want.len());
        infer.terminate();
        let got: Vec<serde_json::Value> = got
            .iter()
            .map(|(_, m)| serde_json::from_str(m).unwrap())
            .collect();
        assert_eq!(&got, want, "{format}");
    }
}

/// The score of each uid in a scores file (complete lines).
fn scores_by_uid(path: &Path) -> BTreeMap<String, Vec<serde_json::Value>> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for line in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(uid) = v["uid"].as_str() {
            out.entry(uid.to_owned())
                .or_default()
                .push(v["score"].clone());
        }
    }
    out
}

/// Stops members at once (SIGTERM to all, then waits), so that none sees
/// another leave; each must exit 0. Returns their logs.
fn stop_together(members: Vec<Infer>) -> Vec<String> {
    for m in &members {
        crate::util::signal(&m.child, "TERM");
    }
    members
        .into_iter()
        .map(|mut m| {
            let status = m.child.wait().unwrap();
            let log = m.log();
            assert!(status.success(), "SIGTERM exits 0, got {status}:\n{log}");
            log
        })
        .collect()
}

/// The records held for ordering, summed over `logs`' last stats lines.
fn held(logs: &[String]) -> usize {
    logs.iter()
        .map(|l| {
            l.lines()
                .rev()
                .find_map(|x| {
                    let rest = x.split(" re-published to ").nth(1)?;
                    let n = rest.split("), ").nth(1)?.split(' ').next()?;
                    n.parse::<usize>().ok()
                })
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until every member holds its share of the records and all of
/// them are held (the figures, refreshed every second, stay at `want` for
/// three seconds), then stops the members together and returns the
/// scores written to `outputs`.
fn scored_once_held(
    members: Vec<Infer>,
    outputs: &[&Path],
    want: usize,
) -> BTreeMap<String, Vec<serde_json::Value>> {
    let logs = || members.iter().map(Infer::log).collect::<Vec<_>>();
    let mut steady_since: Option<Instant> = None;
    wait_for(
        &format!("{want} records held for ordering"),
        Duration::from_secs(120),
        || {
            if held(&logs()) != want {
                steady_since = None;
                return false;
            }
            steady_since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_secs(3)
        },
        || logs().join("\n---\n"),
    );
    let logs = stop_together(members);
    let mut scores: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for out in outputs {
        for (uid, s) in scores_by_uid(out) {
            scores.entry(uid).or_default().extend(s);
        }
    }
    assert!(
        scores.values().all(|s| s.len() == 1),
        "a uid scored twice:\n{}",
        logs.join("\n---\n")
    );
    scores
}

/// Issue #13: a conn topic of three partitions keyed by uid (a host's
/// records spread over all three), scored with conn's context features
/// through a repartition topic keyed by `id.orig_h`: one member and two
/// members of a group give every uid the same score, and the score a
/// replay of the same records (in time order) gives. Without the
/// repartition topic the group's scores differ from replay's, which shows
/// that the comparison can fail.
#[test]
fn repartitioned_members_score_as_one_and_as_replay() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 3);
    let mut lines = example_json("conn.json.gz");
    let time = |l: &String| serde_json::from_str::<serde_json::Value>(l).unwrap()["ts"].as_f64();
    lines.sort_by(|a, b| {
        time(a)
            .unwrap()
            .total_cmp(&time(b).unwrap())
            .then_with(|| uid_of(a).cmp(&uid_of(b)))
    });
    let dir = tempdir("repartition");
    replay_of(&dir, &lines, &[], "replay.json");
    let expected = scores_by_uid(&dir.join("replay.json"));
    assert_eq!(expected.len(), lines.len());
    let model: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(crate::util::models().join("conn.model.json")).unwrap(),
    )
    .unwrap();
    assert!(
        model.to_string().contains("first_seen"),
        "the conn model has no context features"
    );
    broker.produce("zeek-conn", &keyed_by_uid(&lines));

    let member = |name: &str, group: &str, extra: &[&str]| {
        let out = dir.join(format!("{name}.json"));
        let output = ["--stats-secs", "1", "--output", out.to_str().unwrap()];
        let args = [&output[..], extra].concat();
        (conn_member(&broker, &dir, name, group, &args), out)
    };
    // Held far longer than the records' 111 s span: each member scores its
    // share in time order when stopped, however the input interleaved.
    let repartition = [
        "--repartition-topic",
        "azw-repartition",
        "--repartition-hold-secs",
        "3600",
    ];

    // (a) One member.
    let (a, out_a) = member("one", "azw-one", &repartition);
    let one = scored_once_held(vec![a], &[&out_a], lines.len());
    let log = fs::read_to_string(dir.join("one.log")).unwrap();
    assert!(
        log.contains("created the repartition topic azw-repartition with 3 partitions"),
        "{log}"
    );
    assert_eq!(one, expected, "one member with repartitioning vs replay");

    // (b) Two members of another group, through a repartition topic of
    // four partitions. The second joins once the first holds every record:
    // the first keeps the held records of the partitions it keeps (and
    // skips them as they are fetched again from the committed offset), and
    // the second reads the others from where nothing was committed.
    let repartition_b = [
        "--repartition-topic",
        "azw-repartition-b",
        "--repartition-partitions",
        "4",
        "--repartition-hold-secs",
        "3600",
    ];
    let (b1, out_b1) = member("b1", "azw-two", &repartition_b);
    wait_for(
        "the first member to hold every record",
        Duration::from_secs(120),
        || held(&[b1.log()]) == lines.len(),
        || b1.log(),
    );
    let (b2, out_b2) = member("b2", "azw-two", &repartition_b);
    wait_for(
        "the second member to be given part of the repartition topic",
        Duration::from_secs(120),
        || {
            b2.log().lines().any(|l| {
                l.contains("kafka: assigned partitions") && l.contains("azw-repartition-b[")
            })
        },
        || format!("{}\n---\n{}", b1.log(), b2.log()),
    );
    let both = scored_once_held(vec![b1, b2], &[&out_b1, &out_b2], lines.len());
    let (share1, share2) = (scores_by_uid(&out_b1).len(), scores_by_uid(&out_b2).len());
    assert!(
        share1 > 0 && share2 > 0,
        "the two members did not share the work: {share1} and {share2}"
    );
    assert_eq!(both, expected, "two members with repartitioning vs replay");

    // A repartition topic that cannot be right is refused, saying what to do.
    for (topic, partitions, why) in [
        (
            "azw-repartition-b",
            "2",
            "has 4 partitions, not the 2 of --repartition-partitions: give --repartition-partitions 4",
        ),
        ("zeek-conn", "3", "is also one of --topics"),
    ] {
        let refused = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
            .args(["--source", "kafka", "--brokers", &broker.addr])
            .args(["--topics", "zeek-conn", "--group", "azw-refused"])
            .args(["--modules", "conn", "--model-dir"])
            .arg(crate::util::models())
            .args(["--repartition-topic", topic])
            .args(["--repartition-partitions", partitions])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success() && stderr.contains(why), "{stderr}");
    }

    // (c) Without repartitioning, the group scores each record as its
    // partition delivers it: some host's context differs from replay's.
    let (c1, out_c1) = member("c1", "azw-plain", &[]);
    let (c2, out_c2) = member("c2", "azw-plain", &[]);
    wait_for(
        "every record scored without repartitioning",
        Duration::from_secs(120),
        || {
            let mut seen = scored_uids(&out_c1);
            seen.extend(scored_uids(&out_c2));
            seen.len() == lines.len()
        },
        || format!("{}\n---\n{}", c1.log(), c2.log()),
    );
    stop_together(vec![c1, c2]);
    let mut plain = scores_by_uid(&out_c1);
    plain.extend(scores_by_uid(&out_c2));
    let differ = plain
        .iter()
        .filter(|(uid, s)| expected.get(*uid).is_none_or(|e| e[0] != s[0]))
        .count();
    assert!(
        differ > 0,
        "without repartitioning the scores were replay's too"
    );
}

/// Repartitioning a wrapped `zeek` topic: conn records are re-published
/// unchanged keyed by their `id.orig_h` and scored from the repartition
/// topic; a record without an originator goes under the key `-`; a log type
/// without a model is not re-published at all.
#[test]
fn a_wrapped_topic_is_repartitioned_by_originator() {
    let broker = Broker::start();
    broker.create_topic("zeek", 2);
    let conn: Vec<String> = example_json("conn.json.gz").into_iter().take(40).collect();
    let mut messages: Vec<(Option<String>, Vec<u8>)> = conn
        .iter()
        .map(|c| (Some(uid_of(c)), format!("{{\"conn\": {c}}}").into_bytes()))
        .collect();
    messages.push((None, br#"{"files": {"ts": 1.0, "fuid": "F1"}}"#.to_vec()));
    let orphan = br#"{"conn": {"ts": 1.0, "uid": "Corphan", "proto": "tcp"}}"#;
    messages.push((None, orphan.to_vec()));
    let dir = tempdir("kafka-repartition-wrapped");
    let out = dir.join("scores.json");
    let infer = consume(
        &broker,
        &dir,
        "infer",
        None,
        &[
            "--topics",
            "zeek",
            "--group",
            "azw-rewrapped",
            "--modules",
            "conn",
            "--repartition-topic",
            "azw-rp",
            "--repartition-hold-secs",
            "0",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    broker.produce("zeek", &messages);
    wait_for(
        "every conn record scored",
        Duration::from_secs(90),
        || scored_uids(&out).len() == conn.len() + 1,
        || infer.log(),
    );
    let log = infer.terminate();
    assert!(
        log.contains("41 re-published to azw-rp (1 without id.orig_h)"),
        "{log}"
    );
    assert!(log.contains("not scored here: files 1"), "{log}");
    let republished = broker.read_all("azw-rp", 2, conn.len() + 1);
    let mut want: BTreeSet<(Option<String>, String)> = conn
        .iter()
        .map(|c| {
            let v: serde_json::Value = serde_json::from_str(c).unwrap();
            let host = v["id.orig_h"].as_str().unwrap().to_owned();
            (Some(host), format!("{{\"conn\": {c}}}"))
        })
        .collect();
    want.insert((
        Some("-".into()),
        String::from_utf8(orphan.to_vec()).unwrap(),
    ));
    let got: BTreeSet<(Option<String>, String)> = republished.into_iter().collect();
    assert_eq!(got, want);
}

/// Complete lines of a JSON output that are scored records (not
/// detections, not alerts).
fn records_written(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("alert").is_none() && v.get("detection").is_none())
        .count()
}

/// A member killed with SIGKILL mid-stream and started again with its
/// `--kafka-state-dir` writes what replay writes, line for line: its
/// context (the conn model's pair gaps), detector and alert state resume
/// with the offsets it committed, and its output is cut back to what was
/// committed. (With the state left unread at the restart, the context
/// starts cold and the first record after it differs: mutation tried.)
#[test]
fn a_member_killed_and_restarted_with_its_state_writes_what_replay_writes() {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let json: Vec<String> = data.iter().map(|l| tsv_to_json(&header, l)).collect();
    let dir = tempdir("kafka-state");
    let flags = ["--scan-external", "--alerts", "output"];
    replay_of(&dir, &json, &flags, "replay.json");
    let lines = |path: &Path| -> (Vec<String>, Vec<String>) {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .partition(|l| !l.contains("\"alert\":"))
    };
    let (expected, expected_alerts) = lines(&dir.join("replay.json"));

    let run = |name: &str, group: &str, state: &Path, out: &Path| {
        let mut args = flags.to_vec();
        args.extend(["--output", out.to_str().unwrap()]);
        args.extend(["--kafka-state-dir", state.to_str().unwrap()]);
        conn_member(&broker, &dir, name, group, &args)
    };
    let third = json.len() / 3;
    let (first, rest) = json.split_at(third);
    let (second, last) = rest.split_at(third);
    let (state, out) = (dir.join("state-a"), dir.join("kafka.json"));
    broker.produce("zeek-conn", &keyed_by_uid(first));
    let mut a = run("a1", "azw-state", &state, &out);
    wait_for(
        "the first third scored and its state saved",
        Duration::from_secs(90),
        || records_written(&out) >= third && state.join("kafka-checkpoint.json").exists(),
        || a.log(),
    );
    // Killed while the second third streams in: past its last commit,
    // maybe in the middle of a line.
    broker.produce("zeek-conn", &keyed_by_uid(second));
    wait_for(
        "the second third being scored",
        Duration::from_secs(90),
        || records_written(&out) > third + 20,
        || a.log(),
    );
    a.kill9();
    broker.produce("zeek-conn", &keyed_by_uid(last));
    let b = run("a2", "azw-state", &state, &out);
    wait_for(
        "every record scored after the restart",
        Duration::from_secs(90),
        || records_written(&out) >= json.len(),
        || b.log(),
    );
    let log = b.terminate();
    assert!(log.contains("resuming the state saved in"), "{log}");
    let (got, alerts) = lines(&out);
    assert_eq!(got.len(), expected.len(), "{log}");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "line {} differs from replay's\n{log}", i + 1);
    }
    assert!(!alerts.is_empty());
    assert_eq!(expected_alerts[..alerts.len()], alerts[..]);
}

/// `--kafka-state-dir` with a repartition topic is refused before anything
/// is consumed, saying why (a restart would re-publish and score again
/// what it re-published since the last save).
#[test]
fn a_state_dir_with_a_repartition_topic_is_refused() {
    let dir = tempdir("kafka-state-refused");
    let out = Command::new(env!("CARGO_BIN_EXE_azw-infer"))
        .args(["--source", "kafka", "--brokers", "127.0.0.1:9"])
        .args(["--topics", "zeek-conn", "--modules", "conn"])
        .args(["--model-dir", crate::util::models().to_str().unwrap()])
        .args(["--repartition-topic", "azw-by-host"])
        .args(["--kafka-state-dir", dir.join("state").to_str().unwrap()])
        .args(["--output", dir.join("out.json").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--kafka-state-dir cannot be used with --repartition-topic"),
        "{err}"
    );
    assert!(!dir.join("out.json").exists());
}

/// A member with `--kafka-state-dir` through a rebalance (a second member
/// joins: its revoke commits without a save, so the saved state is removed
/// first and saved again after), then killed with SIGKILL and restarted at
/// once with its directory: whether it resumes (its offsets still the
/// group's) or starts afresh (the other member moved them on), nothing is
/// lost: every uid is in one of the outputs, the restarted member's output
/// holds only whole JSON lines, and when it resumed it scored nothing of
/// its own twice.
#[test]
fn a_member_with_its_state_loses_nothing_through_a_rebalance_and_a_kill() {
    let broker = Broker::start();
    let topic = "zeek-conn";
    broker.create_topic(topic, 4);
    let lines = example_json("conn.json.gz");
    let third: Vec<String> = lines
        .iter()
        .map(|l| l.replacen("\"uid\":\"", "\"uid\":\"Cthird", 1))
        .collect();
    let all: BTreeSet<String> = lines.iter().chain(&third).map(|l| uid_of(l)).collect();
    let messages = keyed_by_uid(&lines);
    let (first, second) = messages.split_at(messages.len() / 2);
    let dir = tempdir("kafka-state-group");
    let (out_a, out_b, state) = (dir.join("a.json"), dir.join("b.json"), dir.join("state-a"));
    let group = ["--topics", topic, "--group", "azw-sg", "--modules", "conn"];
    let member_a = |name: &str| {
        let args = ["--output", out_a.to_str().unwrap()];
        let state = ["--kafka-state-dir", state.to_str().unwrap()];
        consume(
            &broker,
            &dir,
            name,
            None,
            &[&group[..], &args, &state].concat(),
        )
    };
    let seen = || {
        let mut s = scored_uids(&out_a);
        s.extend(scored_uids(&out_b));
        s
    };
    let mut a = member_a("a1");
    broker.produce(topic, first);
    wait_for(
        "member a to score the first half",
        Duration::from_secs(120),
        || scored_uids(&out_a).len() >= first.len() && state.join("kafka-checkpoint.json").exists(),
        || a.log(),
    );
    let b = member(&broker, &dir, "b", &group, &out_b);
    wait_for(
        "member b to be assigned partitions",
        Duration::from_secs(120),
        || was_assigned(&b.log()),
        || format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log()),
    );
    broker.produce(topic, second);
    wait_for(
        "the second half scored by the group",
        Duration::from_secs(120),
        || {
            let s = seen();
            lines.iter().all(|l| s.contains_key(&uid_of(l)))
        },
        || format!("--- a:\n{}\n--- b:\n{}", a.log(), b.log()),
    );
    a.kill9();
    let a2 = member_a("a2");
    broker.produce(topic, &keyed_by_uid(&third));
    wait_for(
        "every uid scored after the restart",
        Duration::from_secs(180),
        || {
            let s = seen();
            all.iter().all(|u| s.contains_key(u))
        },
        || format!("--- a2:\n{}\n--- b:\n{}", a2.log(), b.log()),
    );
    let log_b = b.terminate();
    let log_a = a2.terminate();
    let resumed = log_a.contains("resuming the state saved in");
    eprintln!(
        "the restarted member {}",
        if resumed {
            "resumed its state"
        } else {
            "started afresh"
        }
    );
    assert!(
        resumed || log_a.contains("is not resumed") || log_a.contains("no saved state"),
        "{log_a}"
    );
    // Whole lines only (scored_uids panics on a torn one), every uid kept.
    let a_uids = scored_uids(&out_a);
    let s = seen();
    let lost: Vec<&String> = all.iter().filter(|u| !s.contains_key(*u)).collect();
    assert!(
        lost.is_empty(),
        "lost {lost:?}\n--- a2:\n{log_a}\n--- b:\n{log_b}"
    );
    if resumed {
        let twice: Vec<_> = a_uids.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "scored twice after resuming: {twice:?}\n{log_a}"
        );
    }
}

/// A member's output deleted mid-run, its next records written to a new
/// file, and the member killed long before its next timed commit: its
/// state names the new file as soon as the file is made, as a live run's
/// checkpoint does, so the restart writes none of that file's records
/// again (without it, the restart resumed the older state, could not cut
/// a file that state does not name, and wrote them twice).
#[test]
fn a_deleted_output_then_kill_9_repeats_nothing_through_kafka() {
    a_new_output_then_kill_9_repeats_nothing(false);
}

/// The same with the output moved away while the member was stopped (a
/// rotation): the restart writes a new file, which its state names with
/// the first records, not at the timed commit.
#[test]
fn an_output_moved_away_while_down_then_kill_9_repeats_nothing_through_kafka() {
    a_new_output_then_kill_9_repeats_nothing(true);
}

/// A member writes a first part, its output goes (deleted while it runs,
/// or moved away while it is stopped), it writes a second part into a new
/// file and is killed, and a restarted member writes the third: every
/// record of the new file is there once.
fn a_new_output_then_kill_9_repeats_nothing(while_down: bool) {
    let broker = Broker::start();
    broker.create_topic("zeek-conn", 1);
    let (header, data) = crate::infer_live::conn_with_behaviours();
    let json: Vec<String> = data.iter().map(|l| tsv_to_json(&header, l)).collect();
    let dir = tempdir("kafka-new-file");
    let (state, out) = (dir.join("state"), dir.join("kafka.json"));
    let args = [
        "--checkpoint-ms",
        "600000",
        "--output",
        out.to_str().unwrap(),
        "--kafka-state-dir",
        state.to_str().unwrap(),
    ];
    let (first, rest) = json.split_at(json.len() * 2 / 5);
    let (second, third) = rest.split_at(rest.len() * 2 / 3);
    broker.produce("zeek-conn", &keyed_by_uid(first));
    let mut a = conn_member(&broker, &dir, "n1", "azw-new-file", &args);
    wait_for(
        "the first part scored",
        Duration::from_secs(90),
        || records_written(&out) >= first.len(),
        || a.log(),
    );
    if while_down {
        a.terminate();
        fs::rename(&out, dir.join("kafka.json.1")).unwrap();
        a = conn_member(&broker, &dir, "n1b", "azw-new-file", &args);
    } else {
        // A first save of the state (the timed one is ten minutes away).
        a.hup();
        wait_for(
            "the state saved at the reopen",
            Duration::from_secs(30),
            || a.log().contains("output reopened (SIGHUP)"),
            || a.log(),
        );
        fs::remove_file(&out).unwrap();
    }
    broker.produce("zeek-conn", &keyed_by_uid(second));
    wait_for(
        "the second part scored into a new file",
        Duration::from_secs(90),
        || records_written(&out) >= second.len(),
        || a.log(),
    );
    let new_file = {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&out).unwrap();
        format!("[{},{}]", m.dev(), m.ino())
    };
    let state_file = state.join("kafka-checkpoint.json");
    wait_for(
        "the state naming the new file",
        Duration::from_secs(20),
        || {
            let text = fs::read_to_string(&state_file).unwrap_or_default();
            let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            text.contains(&new_file)
        },
        || a.log(),
    );
    a.kill9();
    broker.produce("zeek-conn", &keyed_by_uid(third));
    let b = conn_member(&broker, &dir, "n2", "azw-new-file", &args);
    wait_for(
        "the last part scored after the restart",
        Duration::from_secs(90),
        || {
            let got = scored_uids(&out);
            third.iter().all(|l| got.contains_key(&uid_of(l)))
        },
        || b.log(),
    );
    let log = b.terminate();
    let got = scored_uids(&out);
    for line in second.iter().chain(third) {
        let uid = uid_of(line);
        assert_eq!(got.get(&uid), Some(&1), "{uid} in the new file\n{log}");
    }
    assert_eq!(got.len(), second.len() + third.len(), "{log}");
}

/// Alerts through Kafka name their peers as replay and live mode do: the
/// example HTTP records, on a topic of their own and consumed first, name
/// the servers of the example conn records that come after them, on
/// theirs.
#[test]
fn alerts_through_kafka_name_their_peers() {
    let broker = Broker::start();
    broker.create_topic("zeek-http", 1);
    broker.create_topic("zeek-conn", 1);
    let dir = tempdir("kafka-names");
    let models = dir.join("models");
    crate::util::train(&models, "conn,http", &[]);
    let json_of = |name: &str| -> Vec<String> {
        let text = example_text(name);
        let header: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| tsv_to_json(&header, l))
            .collect()
    };
    let (http, conn) = (json_of("http.log"), json_of("conn.log"));
    let out = dir.join("scores.json");
    let infer = consume(
        &broker,
        &dir,
        "infer",
        Some(&models),
        &[
            "--topics",
            "zeek-http,zeek-conn",
            "--group",
            "azw-names",
            "--modules",
            "conn,http",
            "--alerts",
            "output",
            "--alert-lateness",
            "60",
            "--output",
            out.to_str().unwrap(),
        ],
    );
    let http_uids: BTreeSet<String> = http.iter().map(|l| uid_of(l)).collect();
    broker.produce("zeek-http", &keyed_by_uid(&http));
    wait_for(
        "the http records scored",
        Duration::from_secs(90),
        || scored_uids(&out).len() >= http_uids.len(),
        || infer.log(),
    );
    broker.produce("zeek-conn", &keyed_by_uid(&conn));
    let named = || {
        fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("\"alert\":"))
            .any(|l| l.contains("\"names\":[\"ajax.googleapis.com\"]"))
    };
    wait_for(
        "an alert naming ajax.googleapis.com",
        Duration::from_secs(90),
        named,
        || infer.log(),
    );
    infer.terminate();
}
