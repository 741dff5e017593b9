//! Detectors over entities: what only shows over time, in many records of
//! the same hosts (beacons, long connections, scans, DNS tunnels, large
//! uploads), found as the records stream by, in event time, with bounded
//! memory.
//!
//! - [`observation`]: the few fields of a record the detectors use.
//! - [`rita`]: RITA v5's beacon score of one pair over one window.
//! - [`beacon`], [`long_conn`], [`scan`], [`dns_tunnel`], [`upload`]: the
//!   detectors.
//! - [`baseline`]: what they learn from training (the site's normal).
//! - [`stage`]: all of them as one pipeline stage, with serialisable state.
//! - [`detection`]: what they report; [`attack`]: in MITRE ATT&CK's terms.

pub mod attack;
pub mod baseline;
pub mod beacon;
pub(crate) mod bounded;
pub mod detection;
pub mod dns_tunnel;
pub mod long_conn;
pub mod observation;
pub mod rita;
pub mod scan;
pub mod stage;
pub mod upload;

pub use baseline::Baseline;
pub use beacon::{BaselineLearner, BeaconDetector, BeaconParams};
pub use detection::{Detection, DetectorKind};
pub use observation::Observation;
pub use stage::{DetectOptions, DetectStage, ModuleDetectors};

/// Reads a detector's optional part (its state in a checkpoint, its
/// baseline in a model) so that a part that cannot be read, written by a
/// build whose format for it differed, is left out with a warning: that
/// detector starts empty or with its defaults, and the others keep theirs
/// (one unreadable part threw every detector's state away).
fn lenient_part<'de, D, T>(what: &str, d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::Deserialize;
    // Kept as its text, not parsed into a `Value` first: a full detector's
    // state as a tree of values took ten times its own size (1.2 GB more
    // to resume 200,000 upload pairs).
    let raw = Box::<serde_json::value::RawValue>::deserialize(d)?;
    if raw.get() == "null" {
        return Ok(None);
    }
    match serde_json::from_str(raw.get()) {
        Ok(part) => Ok(Some(part)),
        Err(e) => {
            tracing::warn!("{what} cannot be read ({e}): it is left out");
            Ok(None)
        }
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    use std::net::IpAddr;

    use super::observation::ConnFacts;

    pub fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A conn record's facts: `bytes` sent by the originator; answered
    /// means the responder sent payload back.
    pub fn conn(src: IpAddr, dst: IpAddr, ts: f64, bytes: f64, answered: bool) -> ConnFacts {
        ConnFacts {
            ts,
            uid: None,
            src,
            dst,
            orig_p: Some(40_000),
            resp_p: Some(80),
            icmp: false,
            duration: 1.0,
            orig_bytes: bytes,
            orig_ip_bytes: bytes,
            resp_bytes: if answered { 100.0 } else { 0.0 },
            resp_ip_bytes: 0.0,
            unanswered: !answered,
            open: false,
        }
    }
}
