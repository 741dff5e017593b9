//! autozeekwatch: unsupervised anomaly detection for Zeek logs.
//!
//! Data flows one way, and each stage is a module:
//! log files ([`zeek`]) -> records -> feature vectors -> [`kitnet`] -> scored records -> sinks.

pub mod kitnet;
pub mod zeek;
