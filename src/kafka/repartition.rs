//! Repartitioning by originator, the way Kafka Streams repartitions: when
//! the input topics are not keyed by the source host (zeek-kafka keys by
//! nothing, or by `uid`), every member re-publishes each input record to a
//! repartition topic keyed by its `id.orig_h`, and the same group scores
//! that topic. Kafka's partitioner puts one key in one partition, so all of
//! a host's records reach the one member that holds its context state and
//! its detectors.
//!
//! The input offsets are committed only after the brokers acknowledged the
//! re-published records (see `Progress::commit` in `consume`), so nothing
//! is lost between the two topics; a crash re-publishes, at worst, what was
//! forwarded since the last commit (at-least-once, as everywhere).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use crate::pipeline::RunError;
use crate::sink::kafka::{acknowledged, producer, send_waiting, Deliveries};

/// The header that carries the input topic of a re-published record: its
/// name may be what tells the record's log type (`zeek-conn`).
pub const TOPIC_HEADER: &str = "azw-topic";

/// The key of records without an originator (not JSON, a log type without
/// `id.orig_h`): one stable key, so their order is kept too. Zeek's mark
/// of an unset field; not empty, since librdkafka's default partitioner
/// scatters empty keys at random.
const NO_ORIGINATOR: &str = "-";

/// How records are repartitioned.
#[derive(Debug, Clone)]
pub struct Repartition {
    /// The repartition topic; the group consumes it besides the inputs.
    pub topic: String,
    /// Partitions to create it with; when it exists, the count it must
    /// have. `None`: the most partitions of an input topic, or whatever an
    /// existing topic has.
    pub partitions: Option<i32>,
    /// How long records of the repartition topic are held to be scored in
    /// event-time order (see [`super::reorder`]); zero scores on arrival.
    pub hold: Duration,
}

/// Checks that the repartition topic is usable, creating it when missing.
/// `metadata` is the brokers' (all topics), `inputs` the topics consumed.
pub fn ensure_topic(
    opts: &Repartition,
    inputs: &[String],
    brokers: &str,
    config: &[(String, String)],
    metadata: &Metadata,
) -> Result<(), RunError> {
    let topic = &opts.topic;
    if inputs.iter().any(|t| t == topic) {
        return Err(RunError::Kafka(format!(
            "--repartition-topic {topic} is also one of --topics: give the repartition topic a name of its own (for example azw-repartition)"
        )));
    }
    let partitions = |name: &str| {
        metadata
            .topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len() as i32)
    };
    if let Some(have) = partitions(topic) {
        return match opts.partitions {
            Some(want) if want != have => Err(RunError::Kafka(format!(
                "the repartition topic {topic} on {brokers} has {have} partitions, not the {want} of --repartition-partitions: give --repartition-partitions {have} (or none), or use a new topic name (adding partitions to it would move hosts between members)"
            ))),
            _ => {
                tracing::info!("kafka: repartitioning through {topic} ({have} partitions)");
                Ok(())
            }
        };
    }
    let want = match opts.partitions {
        Some(n) => n,
        None => inputs.iter().filter_map(|t| partitions(t)).max().ok_or_else(|| {
            RunError::Kafka(format!(
                "cannot tell how many partitions the repartition topic {topic} needs: none of the input topics {} exists yet on {brokers}; give --repartition-partitions N, or create {topic} yourself",
                inputs.join(",")
            ))
        })?,
    };
    create_topic(topic, want, brokers, config)?;
    tracing::info!("kafka: created the repartition topic {topic} with {want} partitions");
    Ok(())
}

/// Creates `topic` with `partitions` partitions and the brokers' default
/// replication. A topic created meanwhile by another member is fine.
fn create_topic(
    topic: &str,
    partitions: i32,
    brokers: &str,
    config: &[(String, String)],
) -> Result<(), RunError> {
    let refused = |why: String| {
        RunError::Kafka(format!(
            "cannot create the repartition topic {topic} on {brokers} ({why}): create it yourself with {partitions} partitions (kafka-topics.sh --create --topic {topic} --partitions {partitions}), or let azw-infer's user create topics"
        ))
    };
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers);
    for (k, v) in config.iter().filter(|(k, _)| admin_takes(k)) {
        cc.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> =
        cc.create().map_err(|e| refused(e.to_string()))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results =
        block_on(admin.create_topics([&new], &options)).map_err(|e| refused(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(refused(code.to_string())),
        }
    }
    Ok(())
}

/// Settings an admin client takes from --kafka-config: the connection's
/// (security, SASL, SSL, timeouts of sockets), not a consumer's or a
/// producer's.
fn admin_takes(key: &str) -> bool {
    [
        "security.",
        "sasl.",
        "ssl.",
        "socket.",
        "client.",
        "broker.",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// Runs a future to its end on this thread. The admin client completes its
/// futures from its own polling thread, so no async runtime is needed.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// Re-publishes input records to the repartition topic.
pub struct Forwarder {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    brokers: String,
    /// Records re-published, and those without an originator among them.
    pub forwarded: u64,
    pub without_originator: u64,
}

impl Forwarder {
    pub fn connect(
        opts: &Repartition,
        brokers: &str,
        config: &[(String, String)],
    ) -> Result<Forwarder, RunError> {
        // A smaller queue than librdkafka's 1 GiB: what waits for the
        // brokers is bounded, and a full queue slows the reading instead.
        let producer = producer(brokers, config, &[("queue.buffering.max.kbytes", "65536")])
            .map_err(RunError::Output)?;
        Ok(Forwarder {
            producer,
            topic: opts.topic.clone(),
            brokers: brokers.to_owned(),
            forwarded: 0,
            without_originator: 0,
        })
    }

    /// Queues `message`'s payload, unchanged, keyed by the originator of
    /// the record in `body` (its unwrapped JSON), with its topic in a
    /// header. The payload is a message's: its size is bounded by the
    /// brokers' message size.
    pub fn forward(&mut self, message: &impl Message, body: &[u8]) -> Result<(), RunError> {
        let key = super::route::originator(body);
        if key.is_none() {
            self.without_originator += 1;
        }
        let headers = OwnedHeaders::new().insert(Header {
            key: TOPIC_HEADER,
            value: Some(message.topic()),
        });
        let record = BaseRecord::to(&self.topic)
            .payload(message.payload().unwrap_or_default())
            .key(key.as_deref().unwrap_or(NO_ORIGINATOR))
            .headers(headers);
        send_waiting(&self.producer, record).map_err(|e| {
            RunError::Kafka(format!(
                "cannot re-publish to the repartition topic {}/{}: {e}",
                self.brokers, self.topic
            ))
        })?;
        self.forwarded += 1;
        Ok(())
    }

    /// Waits for the brokers to acknowledge what was re-published: only
    /// then may the input offsets be committed.
    pub fn acknowledged(&self) -> Result<(), RunError> {
        acknowledged(
            &self.producer,
            "re-published records",
            &self.brokers,
            &self.topic,
        )
        .map_err(RunError::Output)
    }
}

/// The input topic a re-published record came from, if its header names
/// one (in UTF-8).
pub fn input_topic(message: &impl Message) -> Option<&str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == TOPIC_HEADER)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}
