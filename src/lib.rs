//! autozeekwatch: unsupervised anomaly detection for Zeek logs.
//!
//! Data flows one way, and each stage is a module:
//! log files ([`zeek`]) -> records -> feature vectors ([`features`]) ->
//! [`kitnet`] -> scored records -> sinks.

#[doc(hidden)]
pub mod cli;
pub mod eval;
pub mod features;
pub mod follow;
pub mod kitnet;
pub mod model;
pub mod module;
pub mod score;
pub mod train;
pub mod zeek;

pub use module::Module;
