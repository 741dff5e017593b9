//! The Kafka sink: scored records published to a topic, keyed by the
//! connection so that one connection's records (its conn, dns, http, ...
//! lines share Zeek's `uid`) land in one partition, in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use super::{RecordFormat, Sink, SinkError, Stamp};
use crate::alert::Alert;
use crate::detect::Detection;
use crate::score::ScoredRecord;

/// How long a flush waits for the broker before the run gives up (and its
/// offsets or checkpoint stay where they were, so nothing is lost).
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// Counts the records the broker did not take, for [`KafkaSink::sync`]
/// (and the repartitioning's producer, `crate::kafka`).
#[derive(Default)]
pub(crate) struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::SeqCst);
            let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// A producer publishing to one topic.
pub struct KafkaSink {
    producer: Arc<ThreadedProducer<Deliveries>>,
    topic: Arc<str>,
    brokers: Arc<str>,
    /// The record's JSON line, reused.
    line: Vec<u8>,
    /// A JSON-lines format ([`RecordFormat::is_json_lines`]): one
    /// document per message.
    format: RecordFormat,
    stamp: Stamp,
}

impl KafkaSink {
    /// Connects and checks that the broker answers, so a wrong address is
    /// an error at start, not a silent queue. `config`: extra librdkafka
    /// settings (`key=value`), such as security ones.
    pub fn connect(
        brokers: &str,
        topic: &str,
        config: &[(String, String)],
        format: RecordFormat,
        stamp: Stamp,
    ) -> Result<KafkaSink, SinkError> {
        let producer = producer(brokers, config, &[])?;
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(15))
            .map_err(|e| {
                SinkError::Kafka(format!(
                    "cannot reach the Kafka brokers {brokers} (output topic {topic}): {e}"
                ))
            })?;
        // A missing topic on brokers that do not create topics would
        // otherwise show only minutes later, as failed deliveries.
        if let Some(e) = metadata.topics().first().and_then(|t| t.error()) {
            return Err(SinkError::Kafka(format!(
                "the output topic {topic} on {brokers} is not usable ({}): create it, or let the brokers create topics",
                RDKafkaErrorCode::from(e)
            )));
        }
        Ok(KafkaSink {
            producer: Arc::new(producer),
            topic: topic.into(),
            brokers: brokers.into(),
            line: Vec::new(),
            format,
            stamp,
        })
    }

    /// Queues one JSON line (without its newline) under `key`. Waits while
    /// the producer's queue is full rather than dropping.
    fn publish(&self, key: Option<&str>, line: &[u8]) -> Result<(), SinkError> {
        let mut message = BaseRecord::to(&self.topic).payload(line);
        if let Some(k) = key {
            message = message.key(k);
        }
        send_waiting(&self.producer, message).map_err(|e| {
            SinkError::Kafka(format!(
                "cannot publish to {}/{}: {e}",
                self.brokers, self.topic
            ))
        })
    }

    /// Returns once the broker has acknowledged every record published so
    /// far; fails if it refused any, so the caller does not record progress
    /// past records that are not in the topic. A failure sticks: every
    /// later sync fails too, since the lost records are gone for good.
    fn acknowledged(&self) -> Result<(), SinkError> {
        acknowledged(&self.producer, "scored records", &self.brokers, &self.topic)
    }
}

/// An idempotent producer (`acks=all`, retries that can neither reorder
/// nor double a key's records within its partition) for `brokers`, with
/// `settings` and then the user's `config` (minus the consumer's own).
pub(crate) fn producer(
    brokers: &str,
    config: &[(String, String)],
    settings: &[(&str, &str)],
) -> Result<ThreadedProducer<Deliveries>, SinkError> {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        // Records wait up to 5 ms to be sent in batches.
        .set("linger.ms", "5")
        .set("enable.idempotence", "true");
    for (k, v) in settings {
        cc.set(*k, *v);
    }
    // One --kafka-config list serves the consumer and the producers; the
    // consumer's own settings would only draw warnings here.
    for (k, v) in config.iter().filter(|(k, _)| !consumer_only(k)) {
        cc.set(k, v);
    }
    cc.create_with_context(Deliveries::default())
        .map_err(|e| SinkError::Kafka(format!("cannot create a Kafka producer for {brokers}: {e}")))
}

/// Queues a message, waiting while the producer's queue is full rather
/// than dropping it (the queue bounds memory; waiting slows the reader).
pub(crate) fn send_waiting(
    producer: &ThreadedProducer<Deliveries>,
    mut message: BaseRecord<'_, str, [u8]>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(message) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                message = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Returns once the brokers have acknowledged every message sent so far;
/// fails if they refused any (`what` they were, for the message), so the
/// caller records no progress past messages that are not in the topic. A
/// failure sticks: every later call fails too, the lost messages being
/// gone for good.
pub(crate) fn acknowledged(
    producer: &ThreadedProducer<Deliveries>,
    what: &str,
    brokers: &str,
    topic: &str,
) -> Result<(), SinkError> {
    producer.flush(FLUSH_TIMEOUT).map_err(|e| {
        SinkError::Kafka(format!(
            "the Kafka brokers {brokers} did not acknowledge the {what} in {FLUSH_TIMEOUT:?}: {e}"
        ))
    })?;
    let context = producer.context();
    let failed = context.failed.load(Ordering::SeqCst);
    if failed > 0 {
        let first = context
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        return Err(SinkError::Kafka(format!(
            "{failed} {what} were refused by {brokers}/{topic}: {first}"
        )));
    }
    Ok(())
}

impl KafkaSink {
    /// Formats one document and publishes it under `key`; an alert format
    /// that skips the item (a record that is no anomaly) publishes
    /// nothing.
    fn publish_one(
        &mut self,
        key: Option<&str>,
        fill: impl FnOnce(RecordFormat, &Stamp, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> Result<(), SinkError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        // Writing to a Vec cannot fail.
        let _ = fill(self.format, &self.stamp, &mut line);
        let result = match line.strip_suffix(b"\n") {
            None | Some([]) => Ok(()),
            Some(payload) => self.publish(key, payload),
        };
        self.line = line;
        result
    }
}

impl Sink for KafkaSink {
    fn write(&mut self, record: &ScoredRecord) -> Result<(), SinkError> {
        let key = key(record);
        self.publish_one(key.as_deref(), |f, stamp, out| f.write(record, stamp, out))
    }

    /// Keyed by the source host, so one host's detections stay in order.
    fn write_detection(&mut self, detection: &Detection) -> Result<(), SinkError> {
        let key = detection.src.to_string();
        self.publish_one(Some(&key), |f, stamp, out| {
            f.write_detection(detection, stamp, out)
        })
    }

    /// Keyed by the alert's host, so its updates stay in order.
    fn write_alert(&mut self, alert: &Alert) -> Result<(), SinkError> {
        let key = alert.entity.to_string();
        self.publish_one(Some(&key), |f, stamp, out| f.write_alert(alert, stamp, out))
    }

    /// The producer sends on its own within `linger.ms`.
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn sync(&mut self) -> Result<(), SinkError> {
        self.acknowledged()
    }
}

/// librdkafka settings that only a consumer takes.
fn consumer_only(key: &str) -> bool {
    const PREFIXES: [&str; 9] = [
        "group.",
        "session.timeout",
        "heartbeat.",
        "auto.offset.",
        "enable.auto.",
        "auto.commit.",
        "max.poll.",
        "fetch.",
        "partition.assignment",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p))
}

/// The partitioning key: Zeek's `uid` (shared by a connection's records
/// across log types); without one, the address pair.
fn key(record: &ScoredRecord) -> Option<String> {
    if let Some(uid) = &record.uid {
        return Some(uid.to_string());
    }
    match (record.orig_h, record.resp_h) {
        (Some(a), Some(b)) => Some(format!("{a}-{b}")),
        _ => None,
    }
}
