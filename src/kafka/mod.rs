//! Kafka as a source: Zeek's loggers publish records to topics (the
//! zeek-kafka plugin), and any number of `azw-infer` processes in one
//! consumer group share the partitions and score them.
//!
//! - [`route`]: which module a message belongs to (topic name, wrapper key
//!   or `_path`), and the originator it is repartitioned by. Plain code,
//!   built and tested without the feature.
//! - [`reorder`]: records of the repartition topic held briefly and handed
//!   out in event-time order. Plain code too.
//! - `run_kafka` (feature `kafka`): the consumer loop, with offsets
//!   committed only after the scored records are durable (at-least-once).
//! - `repartition` (feature `kafka`): the repartition topic (created when
//!   missing) and the producer that re-publishes records keyed by
//!   originator.
//! - `state` (feature `kafka`): a member's context, detector and alert
//!   state, saved with the offsets it commits and resumed when they are
//!   still the group's.

pub mod reorder;
pub mod route;

#[cfg(feature = "kafka")]
mod consume;
#[cfg(feature = "kafka")]
mod repartition;
#[cfg(feature = "kafka")]
pub mod state;

#[cfg(feature = "kafka")]
pub use consume::{run_kafka, KafkaOptions, KafkaStats};
#[cfg(feature = "kafka")]
pub use repartition::Repartition;
