//! autozeekwatch: unsupervised anomaly detection for Zeek logs.
//!
//! Data flows one way, and each stage is a module:
//! log files ([`zeek`]) -> records -> feature vectors ([`features`], by
//! the log type's table: [`tables`]) ->
//! [`kitnet`] -> scored records ([`score`], with their context and
//! [`community_id`]) -> sinks ([`sink`], in JSON, TSV, CSV or a SIEM's
//! format). Records come from files, followed live ([`follow`]) or
//! replayed, or from Kafka topics ([`kafka`]).

pub mod alert;
pub mod allow;
pub mod aside;
pub mod community_id;
pub mod compress;
pub mod detect;
pub mod escape;
pub mod eval;
pub mod features;
mod fnv;
pub mod follow;
pub mod kafka;
pub mod kitnet;
pub mod log_kind;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod plausible;
pub mod reload;
pub mod route;
pub mod safe_fs;
pub mod sample;
pub mod score;
pub mod severity;
pub mod sink;
pub mod tables;
pub mod tail;
pub mod train;
pub mod zeek;

pub use log_kind::LogKind;
