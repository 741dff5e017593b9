//! How long after Zeek writes a line its scored record is in the output, in
//! live mode with the default settings (250 ms poll, file events on).
//!
//! Appends 40 conn lines one by one (200 ms apart) to `current/conn.log` in
//! a temporary Zeek directory and times each until its `uid` appears in the
//! output file. Prints min / median / p95 / max. Run:
//! `cargo bench --bench live_latency`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use autozeekwatch::features::LocalNets;
use autozeekwatch::kitnet::KitNetParams;
use autozeekwatch::model::file_name;
use autozeekwatch::pipeline::{run_live, Controls, LiveOptions};
use autozeekwatch::sink::{OutputSpec, RecordFormat};
use autozeekwatch::train::{self, TrainOptions};
use autozeekwatch::zeek::layout::DateRange;
use autozeekwatch::LogKind;

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let models = tmp.path().join("models");
    let opts = TrainOptions {
        log_dir: root.join("examples/logs"),
        range: DateRange::default(),
        params: KitNetParams {
            learning_rate: 0.1,
            ..KitNetParams::default()
        },
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
    model.save(&models.join(file_name(LogKind::CONN))).unwrap();

    let text = std::fs::read_to_string(root.join("examples/logs/conn.log")).unwrap();
    let header: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with('#') && !l.starts_with("#close"))
        .collect();
    let data: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .take(40)
        .collect();
    let zeek = tmp.path().join("zeek");
    std::fs::create_dir_all(zeek.join("current")).unwrap();
    let live = zeek.join("current/conn.log");
    std::fs::write(&live, header.join("\n") + "\n").unwrap();
    let output = tmp.path().join("scores.json");

    let live_opts = LiveOptions {
        log_dir: zeek.clone(),
        modules: vec![LogKind::CONN],
        model_dir: models,
        output: OutputSpec::File(output.clone()),
        format: RecordFormat::Json,
        stamp: Default::default(),
        record: Default::default(),
        allowlist: None,
        kafka_config: Vec::new(),
        state_dir: tmp.path().join("state"),
        only_anomalies: false,
        poll: Duration::from_millis(250),
        checkpoint_every: Duration::from_secs(1),
        checkpoint_mb_per_hour: 1024.0,
        stats_every: Duration::from_secs(3600),
        reload_every: Duration::from_secs(1),
        detect: Default::default(),
        warm_hours: 0,
        alerts: None,
    };
    let controls = Controls::default();
    let mut latencies = Vec::new();
    std::thread::scope(|s| {
        let runner = s.spawn(|| run_live(&live_opts, &controls).unwrap());
        std::thread::sleep(Duration::from_millis(500));
        for line in &data {
            let uid = line.split('\t').nth(1).unwrap();
            let mut f = OpenOptions::new().append(true).open(&live).unwrap();
            writeln!(f, "{line}").unwrap();
            drop(f);
            let t0 = Instant::now();
            loop {
                if std::fs::read_to_string(&output)
                    .unwrap_or_default()
                    .contains(uid)
                {
                    latencies.push(t0.elapsed());
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(10),
                    "record never appeared"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        controls
            .stop
            .store(true, std::sync::atomic::Ordering::SeqCst);
        runner.join().unwrap();
    });
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = latencies.len();
    println!(
        "live latency, line written -> scored record in the output ({n} lines): min {:.1} ms, median {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        ms(latencies[0]),
        ms(latencies[n / 2]),
        ms(latencies[(n * 95 / 100).min(n - 1)]),
        ms(latencies[n - 1])
    );
}
