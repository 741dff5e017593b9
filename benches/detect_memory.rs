//! Memory per key of each detector, and the detection stage's throughput
//! on its own: one million distinct keys (the worst case: a flood of new
//! pairs, sources or domains, one record each), the heap in use counted by
//! a counting allocator before and after (resident memory would count what
//! the allocator keeps from an earlier detector). Run with
//! `cargo bench --bench detect_memory`.
//!
//! The context features' state is measured the same way, per statistic
//! (a key per record, three half-lives where the statistic takes them).
//!
//! The target (#13): 1,000,000 keys in at most 256 MiB. Measured
//! 2026-12-05 (entries in a slot vector indexed by a table of u32, first
//! allocations of one element): beacon 147.3 MiB (154 bytes per key),
//! long_connection 132.1 MiB (138), scan 128.3 MiB (134), dns (2 maps)
//! 233.6 MiB (244); before, with whole entries in the hash table: 304.5,
//! 258.0, 286.3 and 482.5 MiB (319, 270, 300, 505 bytes per key).
//! long_connection with its list of conn_long-reported connections (empty
//! here, 24 bytes): 155.0 MiB (162 bytes per key). 2026-12-07: scan
//! 130.2 MiB (136; each attempt keeps its time), dns 241.3 MiB (252; each
//! source its last NXDOMAIN name), large_upload 200.7 MiB (210; six
//! 4-hour buckets of the day per pair); then, with what came back summed
//! in f64, 223.6 MiB (234; the buckets as three arrays, 24 bytes a pair
//! less than six structs of three fields); beacon, keeping its pair's
//! responder port and when another was last used, 162.6 MiB (170).
//! The alerts' names of peers (`alert::names`, one 30-byte name a pair):
//! 134.9 MiB (141), after 203.6 MiB (213) with a name list's first growth
//! to four.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use autozeekwatch::alert::names::Names;
use autozeekwatch::detect::beacon::{BeaconDetector, BeaconParams};
use autozeekwatch::detect::dns_tunnel::{DnsTunnelDetector, DnsTunnelParams};
use autozeekwatch::detect::long_conn::{LongConnDetector, LongConnParams};
use autozeekwatch::detect::observation::{ConnFacts, DnsFacts, NameFacts};
use autozeekwatch::detect::scan::{ScanDetector, ScanParams};
use autozeekwatch::detect::upload::{UploadDetector, UploadParams};
use autozeekwatch::features::context::{ContextDef, ContextStat, FeatureState};
use autozeekwatch::features::LocalNets;
use autozeekwatch::log_kind::LogKind;
use autozeekwatch::zeek::Value;

const KEYS: u32 = 1_000_000;

/// The system allocator, counting the bytes in use.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        IN_USE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        IN_USE.fetch_add(new_size, Ordering::Relaxed);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes in use.
fn rss() -> u64 {
    IN_USE.load(Ordering::Relaxed) as u64
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
        resp_ip_bytes: 1600.0,
        unanswered: true,
        open: false,
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
        "{name:<16} {KEYS} keys: {:>6.1} MiB of heap, {:>4} bytes per key, {:>9.0} records/s",
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
        "large_upload",
        || {
            UploadDetector::new(
                UploadParams {
                    max_pairs: KEYS as usize,
                    ..UploadParams::default()
                },
                LocalNets::default(),
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
                answers: Vec::new(),
            });
        },
    );
    // The alerts' names of peers: one 30-byte server name a pair.
    measure(
        "peer names",
        || Names::with_cap(KEYS as usize),
        |n, i| {
            n.learn_name(&NameFacts {
                ts: 1_700_000_000.0,
                log: LogKind::SSL,
                client: addr(i),
                server: addr(i.wrapping_mul(7)),
                name: format!("h{i:09}.cdn.example-provider.com").into(),
                agent: None,
            });
        },
    );
    // And with a 68-byte user agent (an HTTP request's).
    measure(
        "peer names and agents",
        || Names::with_cap(KEYS as usize),
        |n, i| {
            n.learn_name(&NameFacts {
                ts: 1_700_000_000.0,
                log: LogKind::HTTP,
                client: addr(i),
                server: addr(i.wrapping_mul(7)),
                name: format!("h{i:09}.cdn.example-provider.com").into(),
                agent: Some(format!("Mozilla/5.0 (Windows NT 10.0; Win64; x64) {i:010}").into()),
            });
        },
    );
    for stat in [
        ContextStat::Damped,
        ContextStat::Gap,
        ContextStat::Distinct,
        ContextStat::FirstSeen,
    ] {
        let def = ContextDef {
            stat,
            by: vec!["id.orig_h".into()],
            half_lives: vec![60, 3600, 86_400],
            domain: false,
            max_keys: KEYS as usize,
            min_gap: 0,
        };
        let mut out = vec![0.0; def.column_suffixes().len()];
        measure(
            &format!("context {}", stat.name()),
            || FeatureState::new(&def),
            |s, i| {
                let key = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let value = Value::Count(u64::from(i % 1000));
                s.apply(
                    &def,
                    Some(key),
                    &value,
                    Some(1_700_000_000.0 + f64::from(i)),
                    &mut out,
                );
            },
        );
    }
}
