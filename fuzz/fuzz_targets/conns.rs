//! Conn records built from the fuzzer's bytes, so that the detectors and
//! the alert stage see what they need to act (the replay target's byte
//! mutations rarely make a pair that beacons, a sweep or a long
//! connection): a few hosts and ports, times that step forward, sizes and
//! durations, and attacker text in the string fields. Written as Zeek
//! would (JSON, or TSV with Zeek's escapes), replayed through the whole
//! pipeline, and every output checked as the replay target checks it.
#![no_main]

#[path = "common.rs"]
mod common;

use std::fmt::Write as _;

use autozeekwatch::LogKind;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

#[derive(Arbitrary, Debug)]
struct Input {
    json: bool,
    /// Seconds after 2024-04-19 the first record is at.
    start: u16,
    conns: Vec<Conn>,
}

#[derive(Arbitrary, Debug)]
struct Conn {
    /// Seconds after the record before (a beacon repeats one).
    step: u16,
    /// Milliseconds added to that.
    jitter: u16,
    orig: u8,
    resp: u8,
    resp_p: u16,
    proto: u8,
    duration: u32,
    orig_bytes: u32,
    resp_bytes: u32,
    state: u8,
    service: Option<String>,
    history: String,
    uid: String,
}

/// Sources and destinations: the site's, the internet's, IPv6.
const HOSTS: [&str; 8] = [
    "10.0.0.5",
    "10.0.0.6",
    "192.168.1.20",
    "203.0.113.7",
    "198.51.100.23",
    "64.225.56.201",
    "2001:db8::1",
    "fe80::1",
];
const STATES: [&str; 6] = ["SF", "S0", "REJ", "RSTO", "OTH", "S1"];
const PROTOS: [&str; 3] = ["tcp", "udp", "icmp"];

/// Zeek's TSV escapes: a tab, a newline, a backslash and other control
/// bytes as `\xHH`; an empty string is `(empty)`, an unset one `-`.
fn tsv(s: &str) -> String {
    if s.is_empty() {
        return "(empty)".into();
    }
    if s == "-" {
        return "\\x2d".into();
    }
    let mut out = String::new();
    for c in s.chars() {
        if c.is_control() || c == '\\' {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fuzz_target!(|input: Input| {
    let mut ts = 1_713_484_800.0 + f64::from(input.start);
    let mut log = String::new();
    if !input.json {
        log.push_str("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n");
        log.push_str("#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\thistory\torig_pkts\tresp_pkts\n");
        log.push_str("#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring\tstring\tcount\tcount\n");
    }
    for (n, c) in input.conns.iter().take(3_000).enumerate() {
        ts += f64::from(c.step) + f64::from(c.jitter) / 1000.0;
        let orig = HOSTS[usize::from(c.orig) % HOSTS.len()];
        let resp = HOSTS[usize::from(c.resp) % HOSTS.len()];
        let orig_p = 49_152 + (n % 16_000) as u16;
        let proto = PROTOS[usize::from(c.proto) % PROTOS.len()];
        let state = STATES[usize::from(c.state) % STATES.len()];
        let duration = f64::from(c.duration) / 1000.0;
        let (opkts, rpkts) = (c.orig_bytes / 500 + 1, c.resp_bytes / 500 + 1);
        if input.json {
            let mut r = json!({
                "ts": ts, "uid": c.uid, "id.orig_h": orig, "id.orig_p": orig_p,
                "id.resp_h": resp, "id.resp_p": c.resp_p, "proto": proto,
                "duration": duration, "orig_bytes": c.orig_bytes, "resp_bytes": c.resp_bytes,
                "conn_state": state, "history": c.history, "orig_pkts": opkts, "resp_pkts": rpkts,
            });
            if let Some(s) = &c.service {
                r["service"] = json!(s);
            }
            log.push_str(&r.to_string());
        } else {
            let service = c.service.as_deref().map_or("-".into(), tsv);
            let _ = write!(
                log,
                "{ts:.6}\t{}\t{orig}\t{orig_p}\t{resp}\t{}\t{proto}\t{service}\t{duration:.6}\t{}\t{}\t{state}\t{}\t{opkts}\t{rpkts}",
                tsv(&c.uid),
                c.resp_p,
                c.orig_bytes,
                c.resp_bytes,
                tsv(&c.history),
            );
        }
        log.push('\n');
    }
    let path = common::scratch().join("conn.log");
    std::fs::write(&path, log).expect("scratch file");
    common::replay_and_check(LogKind::CONN, &path);
});
