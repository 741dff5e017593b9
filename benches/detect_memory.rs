//! Memory per key of each detector, and the detection stage's throughput
//! on its own: one million distinct keys (the worst case: a flood of new
//! pairs, sources or domains, one record each), resident memory read from
//! /proc before and after. Run with `cargo bench --bench detect_memory`.
//!
//! The target (#13): 1,000,000 keys in at most 256 MiB.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use autozeekwatch::detect::beacon::{BeaconDetector, BeaconParams};
use autozeekwatch::detect::dns_tunnel::{DnsTunnelDetector, DnsTunnelParams};
use autozeekwatch::detect::long_conn::{LongConnDetector, LongConnParams};
use autozeekwatch::detect::observation::{ConnFacts, DnsFacts};
use autozeekwatch::detect::scan::{ScanDetector, ScanParams};
use autozeekwatch::features::LocalNets;

const KEYS: u32 = 1_000_000;

/// Resident memory in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)))
}

fn conn(i: u32) -> ConnFacts {
    ConnFacts {
        ts: 1_700_000_000.0 + f64::from(i) * 0.001,
        uid: Some(format!("C{i:017}").into()),
        src: addr(i),
        dst: IpAddr::V4(Ipv4Addr::from(0xcb00_7100 ^ i.rotate_left(7))),
        orig_p: Some(40_000),
        resp_p: Some(443),
        icmp: false,
        duration: 1.0,
        orig_bytes: 500.0,
        orig_ip_bytes: 800.0,
        resp_bytes: 1500.0,
        unanswered: true,
    }
}

fn measure<T>(name: &str, build: impl FnOnce() -> T, mut feed: impl FnMut(&mut T, u32)) {
    let before = rss();
    let mut d = build();
    let started = Instant::now();
    for i in 0..KEYS {
        feed(&mut d, i);
    }
    let secs = started.elapsed().as_secs_f64();
    let used = rss().saturating_sub(before);
    println!(
        "{name:<16} {KEYS} keys: {:>6.1} MiB resident, {:>4} bytes per key, {:>9.0} records/s",
        used as f64 / (1 << 20) as f64,
        used / u64::from(KEYS),
        f64::from(KEYS) / secs
    );
    drop(d);
}

fn main() {
    measure(
        "beacon",
        || {
            BeaconDetector::new(BeaconParams {
                max_pairs: KEYS as usize,
                ..BeaconParams::default()
            })
        },
        |d, i| {
            d.observe(&conn(i));
        },
    );
    measure(
        "long_connection",
        || {
            LongConnDetector::new(LongConnParams {
                max_pairs: KEYS as usize,
                ..LongConnParams::default()
            })
        },
        |d, i| {
            d.observe(&conn(i));
        },
    );
    measure(
        "scan",
        || {
            ScanDetector::new(
                ScanParams {
                    max_sources: KEYS as usize,
                    ..ScanParams::default()
                },
                LocalNets::parse(&["10.0.0.0/8"]).unwrap(),
            )
        },
        |d, i| {
            d.observe(&conn(i));
        },
    );
    measure(
        "dns (2 maps)",
        || {
            DnsTunnelDetector::new(DnsTunnelParams {
                max_domains: KEYS as usize,
                max_sources: KEYS as usize,
                ..DnsTunnelParams::default()
            })
        },
        |d, i| {
            d.observe(&DnsFacts {
                ts: 1_700_000_000.0,
                uid: Some(format!("C{i:017}").into()),
                src: addr(i),
                query: Some(format!("x{i}.d{i}.com").into()),
                rcode: Some(3),
            });
        },
    );
}
