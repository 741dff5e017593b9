//! Detectors over entities: what only shows over time, in many records of
//! the same hosts (beacons), found as the records stream by.
//!
//! - [`rita`]: RITA v5's beacon score of one pair over one window.
//! - [`beacon`]: the streaming beacon detector over conn records.

pub mod beacon;
pub mod rita;

pub use beacon::{BaselineLearner, BeaconDetection, BeaconDetector, BeaconParams};
