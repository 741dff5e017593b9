//! The formats a SIEM takes as they are: Elastic Common Schema (`ecs`),
//! Suricata's EVE alerts (`eve`) and a Zeek `notice.log` (`notice`, TSV;
//! `notice-json`). Elastic's, Corelight's and Security Onion's Zeek and
//! Suricata pipelines already turn the last two into alerts.
//!
//! One severity scale serves all of them ([`crate::severity`]): a
//! record's from the probability of normal traffic scoring as high (the
//! model's calibration), a detection's from how far past its threshold
//! it is. The risk score (0-100) orders them by severity, then by the
//! score's ratio to its threshold ([`risk_score`]).
//!
//! The rule that fired is the model (`autozeekwatch-conn`, versioned by
//! its training time) or the detector (`autozeekwatch-beacon`, versioned
//! by this program's version).

use std::io;
use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::format::{context_text, detection_row, tsv_header, RecordFormat, Stamp};
use crate::alert::{Alert, Role, State};
use crate::detect::attack::{self, Attack, Term};
use crate::detect::{Detection, DetectorKind};
use crate::escape;
use crate::fnv::Fnv;
use crate::score::ScoredRecord;
use crate::severity::Severity;

/// The ECS version the documents follow.
pub const ECS_VERSION: &str = "8.11.0";

/// `score / threshold`, 0 for a score or threshold that makes no ratio.
fn ratio(score: f64, threshold: f64) -> f64 {
    let r = if threshold > 0.0 {
        score / threshold
    } else if score > threshold {
        f64::INFINITY
    } else {
        0.0
    };
    if r.is_nan() {
        0.0
    } else {
        r.max(0.0)
    }
}

/// The 0-100 risk score of a document of `severity`: its severity's band
/// ([`risk_band`]), and within it the ratio `r` of score to threshold,
/// `low + width (1 - 1/r)` (the threshold at the band's bottom, never its
/// top). A document not flagged (`Info`) is below every flagged one:
/// `80 r / (1 + r)`, under 40.
///
/// Why bands: the ratio alone put every beacon (a RITA score of at most
/// 1, against 0.9) near 52, below records barely past a threshold whose
/// scores spread further, while `event.severity` said the opposite; a SIEM
/// sorting by risk must see the same order as one sorting by severity.
pub fn risk_score(score: f64, threshold: f64, severity: Severity) -> f64 {
    let r = ratio(score, threshold);
    let (low, width) = risk_band(severity);
    let risk = if severity == Severity::Info {
        if r.is_infinite() {
            width
        } else {
            (80.0 * r / (1.0 + r)).min(width)
        }
    } else if r.is_infinite() {
        low + width
    } else {
        low + width * (1.0 - 1.0 / r.max(1.0))
    };
    // Rounded down to a hundredth, so that no band reaches the next.
    ((risk * 100.0).floor() / 100.0).min(low + width - 0.01)
}

/// A severity's band of risk: its lowest score and its width. Info
/// 0-40, low 40-60, medium 60-80, high 80-95, critical 95-100.
fn risk_band(s: Severity) -> (f64, f64) {
    match s {
        Severity::Info => (0.0, 40.0),
        Severity::Low => (40.0, 20.0),
        Severity::Medium => (60.0, 20.0),
        Severity::High => (80.0, 15.0),
        Severity::Critical => (95.0, 5.0),
    }
}

/// Whether the record's protocol has ports: not one of Zeek's
/// `unknown_transport` (IGMP, GRE), whose ports it writes as 0; the
/// documents leave them out.
fn has_ports(r: &ScoredRecord) -> bool {
    r.proto.as_deref() != Some("unknown_transport")
}

/// ISO-8601 UTC with microseconds: `2018-03-24T17:17:31.136272Z`
/// (`suricata`: `+0000` instead of `Z`, as EVE writes it); `None` for a
/// missing time, one no calendar holds (an attacker's `1e300`), or one
/// the pipeline does not believe ([`crate::plausible`]: before 1970, or
/// over a day past this machine's clock), which it warns of and then
/// wrote as `1969-12-31T23:59:55Z` or the year 5138, untagged, where no
/// dashboard's time window finds it.
fn iso8601(ts: Option<f64>, suricata: bool) -> Option<String> {
    let t = ts.filter(|t| t.is_finite() && believed(*t))?;
    let secs = t.floor();
    let micros = ((t - secs) * 1e6).round().min(999_999.0) as u32;
    let at = chrono::DateTime::from_timestamp(secs as i64, micros * 1000)?;
    Some(format_time(at, suricata))
}

/// [`crate::plausible::Plausible::believes`], one per writing thread: the
/// clock is read only when a time is later than the bound last read, not
/// for every document.
fn believed(t: f64) -> bool {
    thread_local! {
        static BELIEF: std::cell::Cell<crate::plausible::Plausible> =
            std::cell::Cell::new(crate::plausible::Plausible::default());
    }
    BELIEF.with(|b| {
        let mut belief = b.get();
        let believed = belief.believes(t);
        b.set(belief);
        believed
    })
}

/// Whether a JSON count is past ECS's `long`, which is signed (an
/// attacker's 18446744073709551615 bytes in a JSON log): written, the
/// SIEM's mapping refuses the whole document.
fn past_ecs_long(v: &Value) -> bool {
    v.is_u64() && !v.is_i64()
}

fn format_time(at: chrono::DateTime<chrono::Utc>, suricata: bool) -> String {
    let base = at.format("%Y-%m-%dT%H:%M:%S%.6f");
    if suricata {
        format!("{base}+0000")
    } else {
        format!("{base}Z")
    }
}

/// The tag of an ECS document whose `@timestamp` is the time it was
/// written, its record having no usable time: Logstash's name for the
/// same case, which Elastic users already filter on.
const TIME_SUBSTITUTED_TAG: &str = "_dateparsefailure";

/// A document's own time, which every document needs: the record's, or
/// the current time when it has none usable (`true`: the caller marks
/// the document, so that a SIEM's timeline is not silently wrong).
fn document_time(ts: Option<f64>, suricata: bool) -> (String, bool) {
    match iso8601(ts, suricata) {
        Some(at) => (at, false),
        None => (format_time(chrono::Utc::now(), suricata), true),
    }
}

/// ECS's `network.transport` and EVE's `proto`: the IANA keyword, in
/// lower case for ECS (`ipv6-icmp` for ICMP over IPv6); none for Zeek's
/// `unknown_transport`, which is no keyword.
fn transport(proto: Option<&str>, v6: bool) -> Option<String> {
    let p = proto?.to_ascii_lowercase();
    Some(match p.as_str() {
        "icmp" if v6 => "ipv6-icmp".into(),
        "unknown_transport" => return None,
        _ => p,
    })
}

/// The host name of an HTTP `Host` header or a TLS server name, for
/// ECS's `url.domain`: without a port (`example.com:8080`); an IPv6
/// literal keeps its brackets, as ECS asks (`[2001:db8::1]:80` is
/// `[2001:db8::1]`); none when nothing is left.
fn domain_of_host(host: &str) -> Option<&str> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.find(']').map_or(host, |end| &host[..=end])
    } else {
        match host.rsplit_once(':') {
            // One colon, digits after it: a port. (Two or more colons
            // without brackets are a bare IPv6 address.)
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => host,
        }
    };
    (!name.is_empty()).then_some(name)
}

/// Whether `d` is a host name, as `destination.domain` holds one: labels
/// of letters, digits, `-` and `_` between single dots, 253 bytes at most,
/// and not an address (in `destination.ip` already). A Host header or SNI
/// is the client's to write: `ev"il.com`, a NUL, a right-to-left mark or
/// a 512-byte string went into the field a SIEM's domain rules and
/// lookups read; `url.domain` keeps what was sent.
fn is_host_name(d: &str) -> bool {
    let d = d.strip_suffix('.').unwrap_or(d);
    !d.is_empty()
        && d.len() <= 253
        && d.parse::<IpAddr>().is_err()
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// ECS's `tls.version_protocol` and `tls.version` of Zeek's SSL
/// `version` (`TLSv12`: `tls`, `1.2`; `SSLv3`: `ssl`, `3.0`; a draft,
/// `TLSv13-draft23`, is its version's); `None` for anything else.
fn tls_version(zeek: &str) -> Option<(&'static str, String)> {
    let (protocol, number) = [("DTLSv", "dtls"), ("TLSv", "tls"), ("SSLv", "ssl")]
        .into_iter()
        .find_map(|(prefix, name)| zeek.strip_prefix(prefix).map(|n| (name, n)))?;
    let number = number.split_once("-draft").map_or(number, |(n, _)| n);
    let version = match number.as_bytes() {
        [major] if major.is_ascii_digit() => format!("{}.0", *major as char),
        [major, minor] if major.is_ascii_digit() && minor.is_ascii_digit() => {
            format!("{}.{}", *major as char, *minor as char)
        }
        _ => return None,
    };
    Some((protocol, version))
}

/// The application protocol: conn's `service` (its first guess), else
/// what the log type is about.
fn app_protocol(r: &ScoredRecord) -> Option<String> {
    if let Some(s) = r.context.get("service").as_ref().and_then(Value::as_str) {
        let first = s.split(',').next().unwrap_or_default().trim();
        if !first.is_empty() {
            // Zeek's conn says `ssl` where its ssl log's own documents say
            // `tls`: one name for one protocol in a SIEM.
            let first = first.to_ascii_lowercase();
            return Some(match first.as_str() {
                "ssl" => "tls".into(),
                _ => first,
            });
        }
    }
    match r.module.log_path() {
        "dns" => Some("dns".into()),
        "http" => Some("http".into()),
        "ssl" => Some("tls".into()),
        "ssh" => Some("ssh".into()),
        _ => None,
    }
}

/// Suricata's signature ids are ours in one range (1,947,000 + n), stable
/// across versions: the classic log types' anomalies, then the detectors,
/// then a site's own log types by a hash of their name.
fn signature_id(r: Option<&ScoredRecord>, d: Option<DetectorKind>) -> u64 {
    const BASE: u64 = 1_947_000;
    if let Some(d) = d {
        return BASE + 100 + DetectorKind::ALL.iter().position(|k| *k == d).unwrap_or(0) as u64;
    }
    let module = r.map_or("", |r| r.module.log_path());
    match crate::log_kind::LogKind::CLASSIC
        .iter()
        .position(|k| k.log_path() == module)
    {
        Some(i) => BASE + 1 + i as u64,
        None => {
            // FNV-1a of the name, into 800 ids after the detectors'.
            let h = crate::fnv::fnv1a64(module.as_bytes());
            BASE + 200 + h % 800
        }
    }
}

/// Zeek's note name of a detector: `AutoZeekWatch::Port_Scan`.
pub fn note(d: Option<DetectorKind>) -> &'static str {
    match d {
        None => "AutoZeekWatch::Anomaly",
        Some(DetectorKind::Beacon) => "AutoZeekWatch::Beacon",
        Some(DetectorKind::LongConnection) => "AutoZeekWatch::Long_Connection",
        Some(DetectorKind::HostSweep) => "AutoZeekWatch::Host_Sweep",
        Some(DetectorKind::PortScan) => "AutoZeekWatch::Port_Scan",
        Some(DetectorKind::DnsTunnel) => "AutoZeekWatch::DNS_Tunnel",
        Some(DetectorKind::NxdomainBurst) => "AutoZeekWatch::NXDOMAIN_Burst",
        Some(DetectorKind::LargeUpload) => "AutoZeekWatch::Large_Upload",
    }
}

/// The explanation's features as text, `; `-separated (a detection's row
/// names the detector first; the texts that use this name it already).
fn features_text(r: &ScoredRecord) -> String {
    r.top_features
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|c| c.feature != "detection")
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One line of text for a person: why the record or detection fired.
fn reason(r: &ScoredRecord, d: Option<&Detection>) -> String {
    let why = features_text(r);
    match d {
        Some(d) => format!(
            "{} {}: {}{}",
            d.detection,
            d.entity(),
            d.measured(),
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            }
        ),
        None if r.anomaly => format!(
            "{} anomaly: score {} above the model's threshold {}: {why}",
            r.module.log_path(),
            short(r.score),
            short(r.threshold)
        ),
        None => format!(
            "{} record: score {}, threshold {}",
            r.module.log_path(),
            short(r.score),
            short(r.threshold)
        ),
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// An ECS document's `@timestamp`, tagged when it is the current time
/// ([`document_time`]): records and alerts alike.
fn put_ecs_timestamp(doc: &mut Map<String, Value>, ts: Option<f64>) {
    let (at, substituted) = document_time(ts, false);
    doc.insert("@timestamp".into(), Value::String(at));
    if substituted {
        put(doc, "tags", json!([TIME_SUBSTITUTED_TAG]));
    }
}

/// An EVE event's mark that its `timestamp` is the time it was written
/// ([`document_time`]): EVE has no `tags`, so the ECS tag goes where
/// Suricata's rules put their own labels, `alert.metadata`, which
/// Elastic's and Splunk's Suricata inputs keep.
fn tag_substituted_time(metadata: &mut Map<String, Value>, substituted: bool) {
    if substituted {
        metadata.insert("tags".into(), json!([TIME_SUBSTITUTED_TAG]));
    }
}

/// `event.start` and `event.end`, both or neither: a span with an end
/// no calendar holds is no span.
fn put_span(doc: &mut Map<String, Value>, start: f64, end: f64) {
    if let (Some(s), Some(e)) = (iso8601(Some(start), false), iso8601(Some(end), false)) {
        put(doc, "event.start", json!(s));
        put(doc, "event.end", json!(e));
    }
}

/// Inserts `value` at a dotted `path` of nested objects.
fn put(doc: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut at = doc;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.insert(part.to_owned(), value);
            return;
        }
        let next = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        let Value::Object(m) = next else { return };
        at = m;
    }
}

/// A finite number as JSON (a non-finite one is left out).
fn num(v: f64) -> Option<Value> {
    serde_json::Number::from_f64(v).map(Value::Number)
}

fn ip(a: Option<IpAddr>) -> Option<Value> {
    a.map(|a| Value::String(a.to_string()))
}

/// The context fields that have an ECS home: (Zeek field of a log type,
/// ECS field).
const ECS_CONTEXT: [(&str, &str, &str); 16] = [
    ("conn", "orig_bytes", "source.bytes"),
    ("conn", "resp_bytes", "destination.bytes"),
    ("dns", "query", "dns.question.name"),
    ("dns", "qtype_name", "dns.question.type"),
    ("dns", "rcode_name", "dns.response_code"),
    ("http", "method", "http.request.method"),
    ("http", "uri", "url.original"),
    ("http", "host", "url.domain"),
    ("http", "host", "destination.domain"),
    ("http", "status_code", "http.response.status_code"),
    ("http", "user_agent", "user_agent.original"),
    ("ssl", "server_name", "tls.client.server_name"),
    ("ssl", "server_name", "destination.domain"),
    ("ssl", "ja3", "tls.client.ja3"),
    ("ssl", "version", "tls.version"),
    ("ssh", "client", "user_agent.original"),
];

/// What every ECS document of ours says of its source: the sensor (when
/// named) and the product.
fn ecs_observer(doc: &mut Map<String, Value>, stamp: &Stamp) {
    if !stamp.sensor.is_empty() {
        put(doc, "observer.name", json!(stamp.sensor));
    }
    put(doc, "observer.type", json!("ids"));
    put(doc, "observer.vendor", json!("autozeekwatch"));
    put(doc, "observer.product", json!("autozeekwatch"));
}

/// The ECS categorisation of every document of ours: network traffic,
/// judged by an intrusion detection system.
fn ecs_classification(doc: &mut Map<String, Value>) {
    put(
        doc,
        "event.category",
        json!(["network", "intrusion_detection"]),
    );
    put(doc, "event.type", json!(["info"]));
    put(doc, "event.module", json!("autozeekwatch"));
}

/// What a detection is in ATT&CK's terms: whether its source is outside
/// is the scan detector's word (it knows the local networks), and a
/// beacon says whether it is of pings.
fn detection_attack(d: &Detection) -> Attack {
    attack::of(d.detection, d.src_local.map(|local| !local), d.over_icmp())
}

/// The ATT&CK terms of an alert's detectors, each once, in order.
fn alert_attacks(a: &Alert) -> Vec<Attack> {
    let outside = a.local.map(|local| !local);
    // An alert restored from a checkpoint older than `variants`, with no
    // detection since, knows its detectors' kinds alone: none was over
    // ICMP as far as it knows (a detection since fills them in: Open::add).
    let variants: Vec<(DetectorKind, bool)> = match a.variants.is_empty() {
        true => a.detectors.iter().map(|kind| (*kind, false)).collect(),
        false => a.variants.iter().copied().collect(),
    };
    once(
        variants
            .into_iter()
            .map(|(kind, icmp)| attack::of(kind, outside, icmp)),
    )
}

/// `items` without repeats, in order.
fn once<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for t in items {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// The tactics, techniques and sub-techniques of `attacks`, each once, in
/// order: what both ECS and EVE write.
fn attack_terms(attacks: &[Attack]) -> [Vec<Term>; 3] {
    [
        once(attacks.iter().map(|a| a.tactic)),
        once(attacks.iter().filter_map(|a| a.technique)),
        once(attacks.iter().filter_map(|a| a.subtechnique)),
    ]
}

/// ECS `threat.*`: the framework, and the tactics, techniques and
/// sub-techniques (arrays). Nothing without any.
fn ecs_threat(doc: &mut Map<String, Value>, attacks: &[Attack]) {
    if attacks.is_empty() {
        return;
    }
    put(doc, "threat.framework", json!(attack::FRAMEWORK));
    let paths = [
        "threat.tactic",
        "threat.technique",
        "threat.technique.subtechnique",
    ];
    for (path, terms) in paths.into_iter().zip(attack_terms(attacks)) {
        if terms.is_empty() {
            continue;
        }
        let ids: Vec<&str> = terms.iter().map(|t| t.id).collect();
        let names: Vec<&str> = terms.iter().map(|t| t.name).collect();
        let references: Vec<String> = terms.iter().map(Term::reference).collect();
        put(doc, &format!("{path}.id"), json!(ids));
        put(doc, &format!("{path}.name"), json!(names));
        put(doc, &format!("{path}.reference"), json!(references));
    }
}

/// EVE's alert metadata in the `mitre_*` keys of Emerging Threats' rules
/// (and `mitre_subtechnique_*`, as community rules write them), which
/// Suricata dashboards read. Nothing without any.
fn eve_threat(metadata: &mut Map<String, Value>, attacks: &[Attack]) {
    let keys = ["tactic", "technique", "subtechnique"];
    for (key, terms) in keys.into_iter().zip(attack_terms(attacks)) {
        if terms.is_empty() {
            continue;
        }
        let ids: Vec<&str> = terms.iter().map(|t| t.id).collect();
        let names: Vec<String> = terms
            .iter()
            .map(|t| attack::metadata_name(t.name))
            .collect();
        metadata.insert(format!("mitre_{key}_id"), json!(ids));
        metadata.insert(format!("mitre_{key}_name"), json!(names));
    }
}

/// A document's `event.id`, the same whenever the same log lines are
/// scored by the same model again (a replay run twice, a Kafka batch
/// delivered again after a crash), so that a SIEM keying documents on it
/// keeps one of each: a detection's from the detector, what it names,
/// when and its score; a record's from its model and the fields that tell
/// one Zeek log line from another (uid and, for one connection's many
/// requests or queries, `trans_depth` and `trans_id`; its time and
/// 5-tuple for logs without a uid) and, when the scorer was asked for it
/// ([`crate::score::RecordOptions::line_ids`], as `--format ecs` does),
/// the hash of all its values: lines alike in all of those (a packet's
/// weirds, a certificate chain's x509 lines, one connection's
/// long-connection reports) are apart by the rest.
fn ecs_event_id(r: &ScoredRecord, d: Option<&Detection>) -> String {
    let mut h = Fnv::new();
    let mut field = |bytes: &[u8]| {
        // Length first: ("ab", "c") and ("a", "bc") differ.
        h.write(&(bytes.len() as u64).to_le_bytes());
        h.write(bytes);
    };
    match d {
        Some(d) => {
            field(b"detection");
            field(d.detection.name().as_bytes());
            field(d.module.log_path().as_bytes());
            field(d.entity().as_bytes());
            for t in [d.ts, d.first_ts, d.score] {
                field(&t.to_bits().to_le_bytes());
            }
        }
        None => {
            field(b"record");
            field(r.module.log_path().as_bytes());
            field(
                r.model
                    .as_ref()
                    .map_or("", |m| m.created.as_str())
                    .as_bytes(),
            );
            field(r.uid.as_deref().unwrap_or("").as_bytes());
            field(&r.ts.unwrap_or(f64::NAN).to_bits().to_le_bytes());
            for a in [r.orig_h, r.resp_h] {
                match a {
                    Some(IpAddr::V4(v4)) => field(&v4.octets()),
                    Some(IpAddr::V6(v6)) => field(&v6.octets()),
                    None => field(&[]),
                }
            }
            let port = |p: Option<u16>| p.map(u64::from);
            for n in [port(r.orig_p), port(r.resp_p), r.trans_depth, r.trans_id] {
                field(&n.unwrap_or(u64::MAX).to_le_bytes());
            }
            if let Some(line) = r.line_hash {
                field(&line.to_le_bytes());
            }
        }
    }
    format!(
        "azw-{}-{:016x}",
        if d.is_some() { "d" } else { "r" },
        h.finish()
    )
}

/// An ECS document for a record, or for a detection (`d`) made into a
/// row first.
fn ecs(r: &ScoredRecord, d: Option<&Detection>, stamp: &Stamp) -> Value {
    let mut doc = Map::new();
    let alert = r.anomaly || d.is_some();
    // An alert is low at least (a detection at exactly its threshold);
    // anything else is info, whatever the numbers.
    let severity = if alert {
        d.map_or(r.severity, |d| Some(d.severity))
            .unwrap_or(Severity::Low)
            .max(Severity::Low)
    } else {
        Severity::Info
    };
    put_ecs_timestamp(&mut doc, r.ts);
    put(&mut doc, "ecs.version", json!(ECS_VERSION));
    // The text an analyst reads first; an ordinary record has nothing to
    // say beyond its fields (and a million of them would say it again).
    if alert {
        put(&mut doc, "message", Value::String(reason(r, d)));
    }
    put(
        &mut doc,
        "event.kind",
        json!(if alert { "alert" } else { "event" }),
    );
    put(&mut doc, "event.id", json!(ecs_event_id(r, d)));
    ecs_classification(&mut doc);
    put(
        &mut doc,
        "event.dataset",
        json!(format!("autozeekwatch.{}", r.module.log_path())),
    );
    put(&mut doc, "event.severity", json!(severity.ecs()));
    let risk = risk_score(r.score, r.threshold, severity);
    put(&mut doc, "event.risk_score", json!(risk));
    put(&mut doc, "event.risk_score_norm", json!(risk));
    if alert {
        put(&mut doc, "event.reason", Value::String(reason(r, d)));
    }
    if let Some(dur) = r.context.get("duration").as_ref().and_then(Value::as_f64) {
        if (0.0..1e9).contains(&dur) {
            put(
                &mut doc,
                "event.duration",
                json!((dur * 1e9).round() as u64),
            );
        }
    }
    match d {
        Some(d) => {
            // The evidence's span: a beacon is reported hours after it
            // began.
            if d.first_ts <= d.last_ts {
                put_span(&mut doc, d.first_ts, d.last_ts);
            }
            put(
                &mut doc,
                "rule.name",
                json!(format!("autozeekwatch {} detector", d.detection)),
            );
            put(
                &mut doc,
                "rule.id",
                json!(format!("autozeekwatch-{}", d.detection)),
            );
            put(&mut doc, "rule.version", json!(env!("CARGO_PKG_VERSION")));
            put(&mut doc, "rule.category", json!("behaviour"));
            ecs_threat(&mut doc, &[detection_attack(d)]);
        }
        None => {
            let module = r.module.log_path();
            put(
                &mut doc,
                "rule.name",
                json!(format!("autozeekwatch {module} model")),
            );
            put(
                &mut doc,
                "rule.id",
                json!(format!("autozeekwatch-{module}")),
            );
            if let Some(m) = &r.model {
                put(&mut doc, "rule.version", json!(m.created));
            }
            put(&mut doc, "rule.category", json!("anomaly"));
        }
    }
    put(&mut doc, "rule.ruleset", json!("autozeekwatch"));
    if let Some(v) = ip(r.orig_h) {
        put(&mut doc, "source.ip", v);
    }
    if let Some(p) = r.orig_p.filter(|_| has_ports(r)) {
        put(&mut doc, "source.port", json!(p));
    }
    if let Some(v) = ip(r.resp_h) {
        put(&mut doc, "destination.ip", v);
    }
    if let Some(p) = r.resp_p.filter(|_| has_ports(r)) {
        put(&mut doc, "destination.port", json!(p));
    }
    let v6 = r.orig_h.is_some_and(|a| a.is_ipv6());
    if let Some(t) = transport(r.proto.as_deref(), v6) {
        put(&mut doc, "network.transport", json!(t));
    }
    if let Some(p) = app_protocol(r) {
        put(&mut doc, "network.protocol", json!(p));
    }
    if let Some(dir) = &r.direction {
        put(&mut doc, "network.direction", json!(dir.as_str()));
    }
    if let Some(c) = &r.community_id {
        put(&mut doc, "network.community_id", json!(c));
    }
    ecs_observer(&mut doc, stamp);
    if let Some(uid) = &r.uid {
        put(&mut doc, "zeek.session_id", json!(uid));
        put(&mut doc, "log.id.uid", json!(uid));
    }
    let context = r.context.to_map();
    for (module, field, path) in ECS_CONTEXT {
        if r.module.log_path() != module {
            continue;
        }
        let Some(v) = context.get(field) else {
            continue;
        };
        let v = match path {
            "source.bytes" | "destination.bytes" | "http.response.status_code" => {
                match v.as_u64().filter(|_| !past_ecs_long(v)) {
                    Some(n) => json!(n),
                    None => continue,
                }
            }
            "url.domain" => match v.as_str().and_then(domain_of_host) {
                Some(d) => json!(d),
                None => continue,
            },
            // A name, not an address: an IP literal is in
            // `destination.ip` already.
            "destination.domain" => match v.as_str().and_then(domain_of_host) {
                Some(d) if is_host_name(d) => json!(d),
                _ => continue,
            },
            "tls.version" => match v.as_str().and_then(tls_version) {
                Some((protocol, version)) => {
                    put(&mut doc, "tls.version_protocol", json!(protocol));
                    json!(version)
                }
                None => continue,
            },
            _ => json!(context_text(v)),
        };
        put(&mut doc, path, v);
    }
    if let Some(id) = r.trans_id {
        put(&mut doc, "dns.id", json!(id.to_string()));
    }
    // Everything else of ours, under our own names: the Zeek fields under
    // `zeek.<log type>` (as Elastic's Zeek integration has them), the
    // score under `autozeekwatch`.
    let module = r.module.log_path();
    for (k, v) in &context {
        // Left out here too (a Zeek count is mapped as a long).
        if past_ecs_long(v) {
            continue;
        }
        put(
            &mut doc,
            &format!("zeek.{module}.{}", k.replace('.', "_")),
            v.clone(),
        );
    }
    if let Some(t) = r.trans_depth {
        put(&mut doc, &format!("zeek.{module}.trans_depth"), json!(t));
    }
    let mut ours = Map::new();
    if let Some(s) = num(r.score) {
        ours.insert("score".into(), s);
    }
    if let Some(t) = num(r.threshold) {
        ours.insert("threshold".into(), t);
    }
    ours.insert("anomaly".into(), json!(r.anomaly));
    match d {
        Some(d) => {
            ours.insert("detection".into(), json!(d.detection.name()));
            // The host, as an alert document's `entity` is (one type for
            // one field in an index); the pair apart.
            ours.insert("entity".into(), json!(d.src.to_string()));
            if d.dst.is_some() || d.domain.is_some() {
                ours.insert("pair".into(), json!(d.entity()));
            }
            ours.insert("uids".into(), json!(d.uids));
            ours.insert("evidence".into(), Value::Object(d.evidence.clone()));
            if let Some(dom) = &d.domain {
                ours.insert("domain".into(), json!(dom));
            }
        }
        None => {
            if let Some(top) = &r.top_features {
                ours.insert(
                    "top_features".into(),
                    serde_json::to_value(top).unwrap_or_default(),
                );
            }
        }
    }
    doc.insert("autozeekwatch".into(), Value::Object(ours));
    Value::Object(doc)
}

/// A Suricata EVE `alert` event.
fn eve(r: &ScoredRecord, d: Option<&Detection>, stamp: &Stamp) -> Value {
    let mut doc = Map::new();
    let (at, substituted) = document_time(r.ts, true);
    doc.insert("timestamp".into(), json!(at));
    doc.insert("event_type".into(), json!("alert"));
    if let Some(a) = ip(r.orig_h) {
        doc.insert("src_ip".into(), a);
    }
    let v6 = r.orig_h.is_some_and(|a| a.is_ipv6());
    // Zeek logs an ICMP message's type as the originator's "port", and as
    // the responder's the counterpart type of a request or reply, the code
    // of any other. Suricata writes no ports for ICMP, but its type and
    // code.
    let icmp = r
        .proto
        .as_deref()
        .filter(|p| p.eq_ignore_ascii_case("icmp"))
        // ICMPv6 over IPv6, as the Community ID reads Zeek's `icmp`.
        .and_then(|p| crate::community_id::protocol_number(p, v6));
    if let Some(number) = icmp {
        if let Some(t) = r.orig_p {
            doc.insert("icmp_type".into(), json!(t));
            let one_way = crate::community_id::icmp_counterpart(number, t).is_none();
            if let (true, Some(code)) = (one_way, r.resp_p) {
                doc.insert("icmp_code".into(), json!(code));
            }
        }
    } else if let Some(p) = r.orig_p.filter(|_| has_ports(r)) {
        doc.insert("src_port".into(), json!(p));
    }
    if let Some(a) = ip(r.resp_h) {
        doc.insert("dest_ip".into(), a);
    }
    if let (None, Some(p)) = (icmp, r.resp_p.filter(|_| has_ports(r))) {
        doc.insert("dest_port".into(), json!(p));
    }
    if let Some(p) = transport(r.proto.as_deref(), v6) {
        let p = match p.as_str() {
            "ipv6-icmp" => "IPv6-ICMP".to_owned(),
            other => other.to_ascii_uppercase(),
        };
        doc.insert("proto".into(), json!(p));
    }
    if let Some(c) = &r.community_id {
        doc.insert("community_id".into(), json!(c));
    }
    if let Some(p) = app_protocol(r) {
        doc.insert("app_proto".into(), json!(p));
    }
    if !stamp.sensor.is_empty() {
        doc.insert("host".into(), json!(stamp.sensor));
    }
    let signature = match d {
        Some(d) => format!("AutoZeekWatch {} {}", d.detection, d.entity()),
        None => format!("AutoZeekWatch {} anomaly", r.module.log_path()),
    };
    // Suricata's classification names.
    let category = match d.map(|d| d.detection) {
        Some(DetectorKind::HostSweep | DetectorKind::PortScan) => "Detection of a Network Scan",
        Some(DetectorKind::LargeUpload) => "Large Scale Information Leak",
        _ => "Potentially Bad Traffic",
    };
    let mut metadata = Map::new();
    metadata.insert("score".into(), json!([short(r.score)]));
    metadata.insert("threshold".into(), json!([short(r.threshold)]));
    metadata.insert("reason".into(), json!([reason(r, d)]));
    if let Some(uid) = &r.uid {
        metadata.insert("uid".into(), json!([uid]));
    }
    tag_substituted_time(&mut metadata, substituted);
    if let Some(d) = d {
        metadata.insert("uids".into(), json!(d.uids));
        eve_threat(&mut metadata, &[detection_attack(d)]);
    }
    doc.insert(
        "alert".into(),
        json!({
            "action": "allowed",
            "gid": 1,
            "signature_id": signature_id(Some(r), d.map(|d| d.detection)),
            "rev": 1,
            "signature": signature,
            "category": category,
            "severity": r.severity.unwrap_or(Severity::Low).max(Severity::Low).eve(),
            "metadata": Value::Object(metadata),
        }),
    );
    // EVE's own protocol objects where a context field has a home.
    let context = r.context.to_map();
    let ctx = |f: &str| context.get(f).map(context_text);
    match r.module.log_path() {
        "http" => {
            let mut h = Map::new();
            for (field, key) in [
                ("host", "hostname"),
                ("uri", "url"),
                ("user_agent", "http_user_agent"),
                ("method", "http_method"),
            ] {
                if let Some(v) = ctx(field) {
                    h.insert(key.into(), json!(v));
                }
            }
            if let Some(s) = context.get("status_code").and_then(Value::as_u64) {
                h.insert("status".into(), json!(s));
            }
            if !h.is_empty() {
                doc.insert("http".into(), Value::Object(h));
            }
        }
        "ssl" => {
            let mut t = Map::new();
            if let Some(v) = ctx("server_name") {
                t.insert("sni".into(), json!(v));
            }
            if let Some(v) = ctx("version") {
                t.insert("version".into(), json!(v));
            }
            if let Some(v) = ctx("ja3") {
                t.insert("ja3".into(), json!({ "hash": v }));
            }
            if !t.is_empty() {
                doc.insert("tls".into(), Value::Object(t));
            }
        }
        "dns" => {
            if let Some(q) = ctx("query") {
                let mut dns = Map::new();
                dns.insert("rrname".into(), json!(q));
                if let Some(t) = ctx("qtype_name") {
                    dns.insert("rrtype".into(), json!(t));
                }
                if let Some(id) = r.trans_id {
                    dns.insert("id".into(), json!(id));
                }
                doc.insert("dns".into(), json!({ "query": [Value::Object(dns)] }));
            }
        }
        _ => {}
    }
    let mut zeek = Map::new();
    zeek.insert("module".into(), json!(r.module.log_path()));
    if let Some(uid) = &r.uid {
        zeek.insert("uid".into(), json!(uid));
    }
    for (k, v) in &context {
        zeek.insert(k.clone(), v.clone());
    }
    doc.insert("zeek".into(), Value::Object(zeek));
    Value::Object(doc)
}

/// The columns of our `notice.log`: Zeek's `Notice::Info` fields that
/// apply (with `community_id`, which Zeek's community-id policy adds).
const NOTICE_COLUMNS: [(&str, &str); 17] = [
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("note", "enum"),
    ("msg", "string"),
    ("sub", "string"),
    ("src", "addr"),
    ("dst", "addr"),
    ("p", "port"),
    ("peer_descr", "string"),
    ("actions", "set[enum]"),
    ("suppress_for", "interval"),
    ("community_id", "string"),
];

pub(super) fn notice_header() -> Vec<u8> {
    tsv_header("notice", &NOTICE_COLUMNS)
}

/// A notice's values, in [`NOTICE_COLUMNS`] order.
fn notice_values(r: &ScoredRecord, d: Option<&Detection>, stamp: &Stamp) -> Vec<Value> {
    let msg = match d {
        Some(d) => format!("{} {}: {}", d.detection, d.entity(), d.measured()),
        None => format!(
            "{} anomaly: score {} above the model's threshold {}",
            r.module.log_path(),
            short(r.score),
            short(r.threshold)
        ),
    };
    let sub = features_text(r);
    let opt_str = |v: Option<&str>| v.map_or(Value::Null, |s| json!(s));
    vec![
        r.ts.and_then(num).unwrap_or(Value::Null),
        opt_str(r.uid.as_deref()),
        ip(r.orig_h).unwrap_or(Value::Null),
        r.orig_p.map_or(Value::Null, |p| json!(p)),
        ip(r.resp_h).unwrap_or(Value::Null),
        r.resp_p.map_or(Value::Null, |p| json!(p)),
        opt_str(r.proto.as_deref()),
        json!(note(d.map(|d| d.detection))),
        json!(msg),
        if sub.is_empty() {
            Value::Null
        } else {
            json!(sub)
        },
        ip(r.orig_h).unwrap_or(Value::Null),
        ip(r.resp_h).unwrap_or(Value::Null),
        r.resp_p.map_or(Value::Null, |p| json!(p)),
        opt_str(Some(stamp.sensor.as_str()).filter(|s| !s.is_empty())),
        json!(["Notice::ACTION_LOG"]),
        json!(3600.0),
        opt_str(r.community_id.as_deref()),
    ]
}

fn notice_json(r: &ScoredRecord, d: Option<&Detection>, stamp: &Stamp) -> Value {
    let mut doc = Map::new();
    for ((name, _), v) in NOTICE_COLUMNS.iter().zip(notice_values(r, d, stamp)) {
        if !v.is_null() {
            doc.insert((*name).to_owned(), v);
        }
    }
    Value::Object(doc)
}

fn notice_tsv(r: &ScoredRecord, d: Option<&Detection>, stamp: &Stamp, out: &mut Vec<u8>) {
    notice_cells(notice_values(r, d, stamp), out);
}

/// A notice row from its values, in [`NOTICE_COLUMNS`] order.
fn notice_cells(values: Vec<Value>, out: &mut Vec<u8>) {
    let cells: Vec<String> = NOTICE_COLUMNS
        .iter()
        .zip(values)
        .map(|((_, ty), v)| match v {
            Value::Null => "-".to_owned(),
            Value::String(s) if *ty == "addr" || *ty == "port" => s,
            Value::String(s) => escape::tsv_field(&s, false),
            Value::Array(items) => items
                .iter()
                .map(|i| escape::tsv_field(&context_text(i), true))
                .collect::<Vec<_>>()
                .join(","),
            Value::Number(n) if *ty == "time" || *ty == "interval" => {
                format!("{:.6}", n.as_f64().unwrap_or(0.0))
            }
            other => other.to_string(),
        })
        .collect();
    out.extend_from_slice(cells.join("\t").as_bytes());
    out.push(b'\n');
}

fn json_line(v: &Value, out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    serde_json::to_writer(&mut *out, v)?;
    out.push(b'\n');
    escape::json_in_place(out, start);
    Ok(())
}

/// A record in a SIEM format; EVE and notice carry only anomalies.
pub(super) fn write_record(
    format: RecordFormat,
    r: &ScoredRecord,
    stamp: &Stamp,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    match format {
        RecordFormat::Ecs => json_line(&ecs(r, None, stamp), out),
        _ if !r.anomaly => Ok(()),
        RecordFormat::Eve => json_line(&eve(r, None, stamp), out),
        RecordFormat::NoticeJson => json_line(&notice_json(r, None, stamp), out),
        RecordFormat::Notice => {
            notice_tsv(r, None, stamp, out);
            Ok(())
        }
        // The plain formats are written by the caller.
        _ => Ok(()),
    }
}

/// A detection in a SIEM format.
pub(super) fn write_detection(
    format: RecordFormat,
    d: &Detection,
    stamp: &Stamp,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let r = detection_row(d);
    match format {
        RecordFormat::Ecs => json_line(&ecs(&r, Some(d), stamp), out),
        RecordFormat::Eve => json_line(&eve(&r, Some(d), stamp), out),
        RecordFormat::NoticeJson => json_line(&notice_json(&r, Some(d), stamp), out),
        RecordFormat::Notice => {
            notice_tsv(&r, Some(d), stamp, out);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The note of a host alert in `notice.log`.
pub const ALERT_NOTE: &str = "AutoZeekWatch::Host_Alert";

/// An alert's risk score (0-100): the bottom of its severity's band
/// ([`risk_band`]): an alert has no single score to place within it.
fn alert_risk(s: Severity) -> f64 {
    risk_band(s).0
}

/// Our own fields of an alert (ECS `autozeekwatch`, EVE's object of the
/// same name): the alert as the JSON format writes it.
fn alert_fields(a: &Alert) -> Value {
    serde_json::to_value(a).unwrap_or_default()
}

/// An alert in a SIEM format.
pub(super) fn write_alert(
    format: RecordFormat,
    a: &Alert,
    stamp: &Stamp,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    match format {
        RecordFormat::Ecs => json_line(&ecs_alert(a, stamp), out),
        RecordFormat::Eve => json_line(&eve_alert(a, stamp), out),
        RecordFormat::NoticeJson => {
            let mut doc = Map::new();
            for ((name, _), v) in NOTICE_COLUMNS.iter().zip(alert_notice_values(a, stamp)) {
                if !v.is_null() {
                    doc.insert((*name).to_owned(), v);
                }
            }
            json_line(&Value::Object(doc), out)
        }
        RecordFormat::Notice => {
            notice_cells(alert_notice_values(a, stamp), out);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An ECS document for an alert: `event.kind` alert, its id in
/// `event.id` (an index keyed by it keeps the latest state of each
/// alert), its span in `event.start`/`event.end`, the host as
/// `source.ip` (or `destination.ip` when it was the target), it and its
/// top peers in `related.ip`.
fn ecs_alert(a: &Alert, stamp: &Stamp) -> Value {
    let mut doc = Map::new();
    put_ecs_timestamp(&mut doc, Some(a.last_ts));
    put(&mut doc, "ecs.version", json!(ECS_VERSION));
    put(&mut doc, "message", json!(a.reason));
    put(&mut doc, "event.kind", json!("alert"));
    put(&mut doc, "event.id", json!(a.alert));
    ecs_classification(&mut doc);
    put(&mut doc, "event.dataset", json!("autozeekwatch.alert"));
    put(
        &mut doc,
        "event.action",
        json!(format!("alert-{}", state_name(a.state))),
    );
    put(&mut doc, "event.severity", json!(a.severity.ecs()));
    // Which revision: an update and the closing can share a time.
    put(&mut doc, "event.sequence", json!(a.revision));
    let risk = alert_risk(a.severity);
    put(&mut doc, "event.risk_score", json!(risk));
    put(&mut doc, "event.risk_score_norm", json!(risk));
    put(&mut doc, "event.reason", json!(a.reason));
    put_span(&mut doc, a.start(), a.last_ts);
    put(&mut doc, "rule.name", json!("autozeekwatch host alert"));
    put(&mut doc, "rule.id", json!("autozeekwatch-alert"));
    put(&mut doc, "rule.version", json!(env!("CARGO_PKG_VERSION")));
    put(&mut doc, "rule.category", json!("alert"));
    put(&mut doc, "rule.ruleset", json!("autozeekwatch"));
    ecs_threat(&mut doc, &alert_attacks(a));
    let host = json!(a.entity.to_string());
    match a.role {
        Role::Source => put(&mut doc, "source.ip", host),
        Role::Target => put(&mut doc, "destination.ip", host),
    }
    let mut related: Vec<String> = vec![a.entity.to_string()];
    related.extend(a.top_peers.iter().map(|p| p.ip.to_string()));
    put(&mut doc, "related.ip", json!(related));
    // What the host called its peers (TLS server names, HTTP Hosts, DNS
    // queries): what a SIEM search for a domain finds the alert by.
    put_distinct(
        &mut doc,
        "related.hosts",
        a.top_peers.iter().flat_map(|p| &p.names),
    );
    // And the user agents its requests to them gave (a keyword field
    // holds a list as well as one): those the alert holds as they were
    // sent. One it escaped or cut is not what the records' documents
    // hold, and a pivot on it found none; it stays in the alert's own
    // `top_peers`.
    let agents = (a.top_peers.iter().flat_map(|p| &p.user_agents))
        .filter(|ua| !ua.contains('\\') && !ua.ends_with("..."));
    put_distinct(&mut doc, "user_agent.original", agents);
    ecs_observer(&mut doc, stamp);
    doc.insert("autozeekwatch".into(), alert_fields(a));
    Value::Object(doc)
}

/// Puts `values` at `path` as a list, each once in first-seen order;
/// nothing when there are none.
fn put_distinct<'a>(
    doc: &mut Map<String, Value>,
    path: &str,
    values: impl Iterator<Item = &'a String>,
) {
    let mut seen: Vec<&str> = Vec::new();
    for v in values {
        if !seen.contains(&v.as_str()) {
            seen.push(v);
        }
    }
    if !seen.is_empty() {
        put(doc, path, json!(seen));
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Open => "open",
        State::Update => "update",
        State::Closed => "closed",
    }
}

/// A Suricata EVE `alert` event for an alert.
fn eve_alert(a: &Alert, stamp: &Stamp) -> Value {
    let mut doc = Map::new();
    let (at, substituted) = document_time(Some(a.last_ts), true);
    doc.insert("timestamp".into(), json!(at));
    doc.insert("event_type".into(), json!("alert"));
    let (host_key, peer_key) = match a.role {
        Role::Source => ("src_ip", "dest_ip"),
        Role::Target => ("dest_ip", "src_ip"),
    };
    doc.insert(host_key.into(), json!(a.entity.to_string()));
    if let Some(p) = a.top_peers.first() {
        doc.insert(peer_key.into(), json!(p.ip.to_string()));
    }
    if !stamp.sensor.is_empty() {
        doc.insert("host".into(), json!(stamp.sensor));
    }
    let mut metadata = Map::new();
    metadata.insert("alert_id".into(), json!([a.alert]));
    metadata.insert("state".into(), json!([state_name(a.state)]));
    metadata.insert("revision".into(), json!([a.revision.to_string()]));
    metadata.insert("reason".into(), json!([a.reason]));
    metadata.insert("uids".into(), json!(a.uids));
    tag_substituted_time(&mut metadata, substituted);
    eve_threat(&mut metadata, &alert_attacks(a));
    doc.insert(
        "alert".into(),
        json!({
            "action": "allowed",
            "gid": 1,
            "signature_id": 1_947_050,
            "rev": 1,
            "signature": format!("AutoZeekWatch host alert {}", a.entity),
            "category": "Potentially Bad Traffic",
            "severity": a.severity.eve(),
            "metadata": Value::Object(metadata),
        }),
    );
    doc.insert("autozeekwatch".into(), alert_fields(a));
    Value::Object(doc)
}

/// An alert's notice: `AutoZeekWatch::Host_Alert`, the host as `src`
/// (or `dst` when it was the target), the sentence as `msg`, the state,
/// severity and uids in `sub`.
fn alert_notice_values(a: &Alert, stamp: &Stamp) -> Vec<Value> {
    let host = Value::String(a.entity.to_string());
    let (src, dst) = match a.role {
        Role::Source => (host, Value::Null),
        Role::Target => (Value::Null, host),
    };
    let sub = format!(
        "alert={} state={} severity={} uids={}",
        a.alert,
        state_name(a.state),
        a.severity,
        a.uids.join(",")
    );
    vec![
        num(a.last_ts).unwrap_or(Value::Null),
        a.uids.first().map_or(Value::Null, |u| json!(u)),
        src.clone(),
        Value::Null,
        dst.clone(),
        Value::Null,
        Value::Null,
        json!(ALERT_NOTE),
        json!(a.reason),
        json!(sub),
        src,
        dst,
        Value::Null,
        if stamp.sensor.is_empty() {
            Value::Null
        } else {
            json!(stamp.sensor)
        },
        json!(["Notice::ACTION_LOG"]),
        json!(3600.0),
        Value::Null,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeek::{LineParser, Parsed};

    /// ECS's forms of Zeek's values: TLS versions as numbers with their
    /// protocol apart, no transport for `unknown_transport`, one name for
    /// TLS.
    #[test]
    fn zeek_values_take_ecs_forms() {
        assert_eq!(tls_version("TLSv12"), Some(("tls", "1.2".into())));
        assert_eq!(tls_version("TLSv13"), Some(("tls", "1.3".into())));
        assert_eq!(tls_version("SSLv3"), Some(("ssl", "3.0".into())));
        assert_eq!(tls_version("DTLSv10"), Some(("dtls", "1.0".into())));
        assert_eq!(tls_version("TLSv13-draft23"), Some(("tls", "1.3".into())));
        for odd in ["", "TLSv", "TLSv123", "tlsv12", "TLSv1x", "unknown-64282"] {
            assert_eq!(tls_version(odd), None, "{odd}");
        }
        assert_eq!(transport(Some("unknown_transport"), false), None);
        assert_eq!(transport(Some("ICMP"), true).as_deref(), Some("ipv6-icmp"));
        assert_eq!(transport(Some("tcp"), false).as_deref(), Some("tcp"));
    }

    /// EVE writes an ICMP record's type and code, not ports: Zeek's
    /// responder "port" is the reply type of an echo, the code of a
    /// destination unreachable.
    #[test]
    fn eve_writes_icmp_type_and_code_not_ports() {
        let eve = |orig_p: u16, resp_p: u16| {
            let mut r = crate::sink::format::tests::record(true);
            r.proto = Some("icmp".into());
            (r.orig_p, r.resp_p) = (Some(orig_p), Some(resp_p));
            let mut bytes = Vec::new();
            RecordFormat::Eve
                .write(&r, &Stamp::default(), &mut bytes)
                .unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()
        };
        let echo = eve(8, 0);
        assert_eq!(echo["icmp_type"], 8);
        assert!(echo.get("icmp_code").is_none(), "{echo}");
        assert!(
            echo.get("src_port").is_none() && echo.get("dest_port").is_none(),
            "{echo}"
        );
        let unreachable = eve(3, 1);
        assert_eq!(
            (
                unreachable["icmp_type"].as_u64(),
                unreachable["icmp_code"].as_u64()
            ),
            (Some(3), Some(1))
        );
    }

    /// Risk follows severity first, then the ratio to the threshold: a
    /// high beacon (RITA 0.95 against 0.9) above a low anomaly ten times
    /// past its threshold (the review found beacons at 52, below records
    /// barely flagged at 74).
    #[test]
    fn risk_follows_severity_then_the_ratio_to_the_threshold() {
        use Severity::*;
        assert_eq!(risk_score(0.2, 0.2, Low), 40.0);
        assert_eq!(risk_score(0.4, 0.2, Low), 50.0);
        assert_eq!(risk_score(2.0, 0.2, Low), 58.0);
        assert_eq!(risk_score(0.2, 0.2, Medium), 60.0);
        assert_eq!(risk_score(0.95, 0.9, High), 80.78);
        assert_eq!(risk_score(1e9, 1.0, High), 94.99);
        assert_eq!(risk_score(1.0, 0.0, Critical), 99.99);
        assert_eq!(risk_score(0.1, 0.2, Info), 26.66);
        assert_eq!(risk_score(0.0, 0.2, Info), 0.0);
        assert_eq!(risk_score(5.0, 0.2, Info), 39.99);
        assert_eq!(risk_score(f64::NAN, 0.2, Low), 40.0);
        assert!(risk_score(1e300, 1e-300, Critical) < 100.0);
        assert!(risk_score(0.95, 0.9, High) > risk_score(2.0, 0.2, Low));
        // Bands never overlap, whatever the ratio.
        let all = [Info, Low, Medium, High, Critical];
        for w in all.windows(2) {
            let top = risk_score(f64::INFINITY, 0.0, w[0]);
            assert!(
                top < risk_score(0.0, 0.2, w[1]).max(risk_band(w[1]).0),
                "{w:?}"
            );
        }
        // An alert sits at its severity's bottom: alerts sort as records.
        assert_eq!(alert_risk(High), 80.0);
    }

    #[test]
    fn hosts_are_domains_without_their_port() {
        for (host, want) in [
            ("example.com", Some("example.com")),
            ("Example.com:8080", Some("Example.com")),
            ("[2001:db8::1]:80", Some("[2001:db8::1]")),
            ("[2001:db8::1]", Some("[2001:db8::1]")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("10.0.0.1:", Some("10.0.0.1")),
            (":80", None),
            ("  ", None),
            ("a:b", Some("a:b")),
        ] {
            assert_eq!(domain_of_host(host), want, "{host:?}");
        }
    }

    /// ECS's `long` is signed: a byte count past it is left out.
    #[test]
    fn counts_past_an_ecs_long_are_left_out() {
        let mut r = crate::sink::format::tests::record(false);
        r.module = crate::LogKind::CONN;
        let mut context = std::collections::BTreeMap::new();
        context.insert("orig_bytes".into(), json!(u64::MAX));
        context.insert("resp_bytes".into(), json!(i64::MAX as u64));
        r.context = context.into();
        let doc = ecs(&r, None, &Stamp::default());
        assert!(doc["source"].get("bytes").is_none(), "{doc}");
        assert!(doc["zeek"]["conn"].get("orig_bytes").is_none(), "{doc}");
        assert_eq!(doc["destination"]["bytes"], json!(i64::MAX), "{doc}");
        assert_eq!(doc["zeek"]["conn"]["resp_bytes"], json!(i64::MAX), "{doc}");
    }

    #[test]
    fn only_host_names_are_destination_domains() {
        for good in ["example.com", "Example.COM.", "a-b_c.d1", "localhost"] {
            assert!(is_host_name(good), "{good}");
        }
        let long = "a".repeat(254);
        for bad in [
            "ev\"il.com",
            "host\u{0}nul",
            "x\u{202e}moc.live",
            "exa mple.com",
            "a..b",
            ".",
            "",
            long.as_str(),
            "10.0.0.1",
            "[2001:db8::1]",
            "2001:db8::1",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_iso8601() {
        assert_eq!(
            iso8601(Some(1521911851.136272), false).unwrap(),
            "2018-03-24T17:17:31.136272Z"
        );
        assert_eq!(
            iso8601(Some(0.0), true).unwrap(),
            "1970-01-01T00:00:00.000000+0000"
        );
        // Out of range: none, never a panic; a document's own time is
        // then the current one, said as such.
        for t in [
            1e300,
            -1e300,
            f64::NAN,
            f64::INFINITY,
            -5.0,
            99_999_999_999.0,
        ] {
            assert_eq!(iso8601(Some(t), false), None, "{t}");
            let (at, substituted) = document_time(Some(t), true);
            assert!(substituted && at.ends_with("+0000"), "{t}: {at}");
        }
        assert_eq!(
            document_time(Some(0.0), false),
            ("1970-01-01T00:00:00.000000Z".to_owned(), false)
        );
    }

    /// The notice log is a Zeek log our own reader reads, with the
    /// anomaly's note and Zeek's types.
    #[test]
    fn notice_reads_back_as_a_zeek_log() {
        let stamp = Stamp {
            sensor: "s1".into(),
        };
        let mut bytes = RecordFormat::Notice.header();
        let anomaly = crate::sink::format::tests::record(true);
        RecordFormat::Notice
            .write(&anomaly, &stamp, &mut bytes)
            .unwrap();
        // Not an anomaly: no notice.
        RecordFormat::Notice
            .write(
                &crate::sink::format::tests::record(false),
                &stamp,
                &mut bytes,
            )
            .unwrap();
        let mut parser = LineParser::new("notice.log", Some("notice"));
        let mut records = Vec::new();
        for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
            if let Parsed::Record(r) = parser.parse_line(line, i as u64 + 1).unwrap() {
                records.push(r);
            }
        }
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.get("note").as_str(), Some("AutoZeekWatch::Anomaly"));
        assert_eq!(r.get("uid").as_str(), anomaly.uid.as_deref());
        assert_eq!(r.get("src").as_addr(), anomaly.orig_h);
        assert_eq!(r.get("p").as_f64(), Some(53.0));
        assert_eq!(r.get("peer_descr").as_str(), Some("s1"));
        assert_eq!(r.get("suppress_for").as_f64(), Some(3600.0));
        assert!(r
            .get("sub")
            .as_str()
            .unwrap()
            .starts_with("user_agent=Mozilla/5.0 (X11, Linux)\tx: never seen in training (75%)"));
    }

    #[test]
    fn ecs_names_the_model_and_maps_the_context() {
        let mut r = crate::sink::format::tests::record(true);
        r.model = Some(std::sync::Arc::new(crate::score::ModelRef {
            module: r.module,
            created: "2026-01-02T03:04:05Z".into(),
        }));
        let doc = ecs(&r, None, &Stamp::default());
        assert_eq!(doc["rule"]["id"], "autozeekwatch-dns");
        assert_eq!(doc["rule"]["version"], "2026-01-02T03:04:05Z");
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["dns"]["question"]["name"], "example.com");
        assert_eq!(doc["dns"]["id"], "4711");
        assert_eq!(doc["network"]["transport"], "udp");
        assert_eq!(doc["network"]["protocol"], "dns");
        assert_eq!(doc["zeek"]["dns"]["answers"][1], "a,b");
        assert!(doc.get("observer").unwrap().get("name").is_none());
        let mut normal = crate::sink::format::tests::record(false);
        normal.orig_h = Some("fe80::1".parse().unwrap());
        normal.proto = Some("icmp".into());
        let doc = ecs(&normal, None, &Stamp::default());
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["event"]["severity"], 0);
        assert_eq!(doc["network"]["transport"], "ipv6-icmp");
        assert!(doc["event"].get("reason").is_none());
        // IGMP has no ports: none in the document (Zeek writes 0s).
        normal.proto = Some("unknown_transport".into());
        (normal.orig_p, normal.resp_p) = (Some(0), Some(0));
        let doc = ecs(&normal, None, &Stamp::default());
        assert!(doc["source"].get("port").is_none(), "{doc}");
        assert!(doc["destination"].get("port").is_none(), "{doc}");
        assert!(doc["source"].get("ip").is_some(), "{doc}");
        normal.anomaly = true;
        let mut bytes = Vec::new();
        RecordFormat::Eve
            .write(&normal, &Stamp::default(), &mut bytes)
            .unwrap();
        let eve: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(
            eve.get("src_port").is_none() && eve.get("dest_port").is_none(),
            "{eve}"
        );
        assert!(eve.get("src_ip").is_some(), "{eve}");
    }

    /// A record whose time no calendar holds is written at the current
    /// time, tagged so a SIEM can tell; its detection's span, which would
    /// be made up, is left out.
    #[test]
    fn a_record_without_a_usable_time_is_tagged_and_has_no_span() {
        let mut r = crate::sink::format::tests::record(true);
        let doc = ecs(&r, None, &Stamp::default());
        assert!(doc.get("tags").is_none(), "{doc}");
        r.ts = Some(1e300);
        let mut d = detection(DetectorKind::Beacon, Some(true));
        d.last_ts = 1e300;
        let doc = ecs(&r, Some(&d), &Stamp::default());
        assert_eq!(doc["tags"], json!([TIME_SUBSTITUTED_TAG]), "{doc}");
        assert!(
            doc["@timestamp"].as_str().unwrap().starts_with("20"),
            "{doc}"
        );
        assert!(doc["event"].get("start").is_none(), "{doc}");
        assert!(doc["event"].get("end").is_none(), "{doc}");
        d.last_ts = d.ts;
        let doc = ecs(&r, Some(&d), &Stamp::default());
        assert!(doc["event"].get("start").is_some(), "{doc}");
    }

    /// EVE says it too, in the alert's metadata, and only then.
    #[test]
    fn an_eve_event_without_a_usable_time_is_tagged() {
        let mut r = crate::sink::format::tests::record(true);
        let tags = |doc: &Value| doc["alert"]["metadata"].get("tags").cloned();
        assert_eq!(tags(&eve(&r, None, &Stamp::default())), None);
        r.ts = Some(1e300);
        let doc = eve(&r, None, &Stamp::default());
        assert_eq!(tags(&doc), Some(json!([TIME_SUBSTITUTED_TAG])), "{doc}");
        assert!(
            doc["timestamp"].as_str().unwrap().starts_with("20"),
            "{doc}"
        );
    }

    /// An alert's user agents go into `user_agent.original` only as they
    /// were sent: one it escaped or cut would match no record's document.
    #[test]
    fn an_alerts_user_agents_are_the_ones_sent() {
        use crate::alert::fold::PeerCount;
        use crate::alert::{Item, Open};
        let item = Item::of_detection(&detection(DetectorKind::Beacon, None)).unwrap();
        let mut alert = Open::new(&item).alert(State::Open);
        alert.top_peers = vec![PeerCount {
            ip: "10.0.0.9".parse().unwrap(),
            count: 3,
            names: Vec::new(),
            user_agents: vec![
                "Mozilla/5.0 (X11)".into(),
                r"evil\x1b[31mred".into(),
                format!("{}...", "a".repeat(157)),
            ],
        }];
        let doc = ecs_alert(&alert, &Stamp::default());
        assert_eq!(doc["user_agent"]["original"], json!(["Mozilla/5.0 (X11)"]));
        assert_eq!(
            doc["autozeekwatch"]["top_peers"][0]["user_agents"]
                .as_array()
                .map(Vec::len),
            Some(3)
        );
    }

    /// An alert's time is its newest item's: unusable, both formats say so.
    #[test]
    fn an_alert_without_a_usable_time_is_tagged_in_ecs_and_eve() {
        use crate::alert::{Item, Open};
        let stamp = Stamp::default();
        let item = Item::of_detection(&detection(DetectorKind::Beacon, None)).unwrap();
        let mut alert = Open::new(&item).alert(State::Open);
        assert!(ecs_alert(&alert, &stamp).get("tags").is_none());
        assert!(eve_alert(&alert, &stamp)["alert"]["metadata"]
            .get("tags")
            .is_none());
        alert.last_ts = f64::INFINITY;
        assert_eq!(
            ecs_alert(&alert, &stamp)["tags"],
            json!([TIME_SUBSTITUTED_TAG])
        );
        assert_eq!(
            eve_alert(&alert, &stamp)["alert"]["metadata"]["tags"],
            json!([TIME_SUBSTITUTED_TAG])
        );
    }

    fn detection(kind: DetectorKind, src_local: Option<bool>) -> Detection {
        Detection {
            ts: 1_700_000_000.0,
            detection: kind,
            module: crate::LogKind::CONN,
            src: "198.51.100.9".parse().unwrap(),
            dst: None,
            resp_p: None,
            domain: None,
            score: 40.0,
            threshold: 20.0,
            severity: Severity::Medium,
            first_ts: 1_699_999_000.0,
            last_ts: 1_700_000_000.0,
            uids: vec!["C1".into()],
            evidence: Default::default(),
            src_local,
        }
    }

    /// `event.id` is the same for the same line scored again, and tells
    /// apart what a SIEM must keep apart: another request of the same
    /// connection, another model, a detection of the record's pair.
    #[test]
    fn ecs_event_ids_are_stable_and_tell_documents_apart() {
        let r = crate::sink::format::tests::record(true);
        let id = |r: &ScoredRecord, d: Option<&Detection>| {
            ecs(r, d, &Stamp::default())["event"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let first = id(&r, None);
        assert!(first.starts_with("azw-r-") && first.len() == 22, "{first}");
        assert_eq!(first, id(&r.clone(), None));
        let mut next_request = r.clone();
        next_request.trans_id = Some(r.trans_id.unwrap_or(0) + 1);
        let mut other_model = r.clone();
        other_model.model = Some(std::sync::Arc::new(crate::score::ModelRef {
            module: r.module,
            created: "2026-12-06T00:00:00Z".into(),
        }));
        // Alike in all of those but another line (a packet's second weird).
        let mut other_line = r.clone();
        other_line.line_hash = Some(1);
        let mut third_line = r.clone();
        third_line.line_hash = Some(2);
        let d = detection(DetectorKind::Beacon, None);
        let mut later = d.clone();
        later.ts += 3600.0;
        let ids = [
            first,
            id(&next_request, None),
            id(&other_model, None),
            id(&other_line, None),
            id(&third_line, None),
            id(&r, Some(&d)),
            id(&r, Some(&later)),
        ];
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(ids[5].starts_with("azw-d-"));
        assert_eq!(ids[5], id(&r, Some(&d.clone())));
    }

    /// A detection's ATT&CK terms in ECS and EVE: a sweep from outside is
    /// reconnaissance, from inside discovery (the detector's word first,
    /// then the record's direction); a DNS tunnel names its sub-technique;
    /// EVE takes Emerging Threats' metadata keys.
    #[test]
    fn detections_carry_their_attack_terms() {
        let mut r = crate::sink::format::tests::record(true);
        r.direction = Some("outbound".into());
        let stamp = Stamp::default();
        let outside = ecs(
            &r,
            Some(&detection(DetectorKind::HostSweep, Some(false))),
            &stamp,
        );
        assert_eq!(outside["threat"]["framework"], "MITRE ATT&CK");
        assert_eq!(outside["threat"]["tactic"]["id"], json!(["TA0043"]));
        assert_eq!(outside["threat"]["technique"]["id"], json!(["T1595"]));
        assert_eq!(
            outside["threat"]["technique"]["subtechnique"]["reference"],
            json!(["https://attack.mitre.org/techniques/T1595/001/"])
        );
        // The record's direction is not the detector's word: the scan
        // detector's `src_local` is (here: ours).
        r.direction = Some("inbound".into());
        let inside = ecs(
            &r,
            Some(&detection(DetectorKind::PortScan, Some(true))),
            &stamp,
        );
        assert_eq!(inside["threat"]["tactic"]["name"], json!(["Discovery"]));
        assert_eq!(
            inside["threat"]["technique"]["name"],
            json!(["Network Service Discovery"])
        );
        assert!(inside["threat"]["technique"].get("subtechnique").is_none());
        let dns = ecs(&r, Some(&detection(DetectorKind::DnsTunnel, None)), &stamp);
        assert_eq!(
            dns["threat"]["technique"]["subtechnique"]["id"],
            json!(["T1071.004"])
        );
        let mut pings = detection(DetectorKind::Beacon, None);
        pings
            .evidence
            .insert(crate::detect::beacon::ICMP_EVIDENCE.into(), json!(true));
        let pings = ecs(&r, Some(&pings), &stamp);
        assert_eq!(pings["threat"]["technique"]["id"], json!(["T1095"]));
        let long = ecs(
            &r,
            Some(&detection(DetectorKind::LongConnection, None)),
            &stamp,
        );
        assert_eq!(long["threat"]["tactic"]["id"], json!(["TA0011"]));
        assert!(long["threat"].get("technique").is_none());
        // A model's anomaly names no technique.
        assert!(ecs(&r, None, &stamp).get("threat").is_none());
        let eve = eve(
            &r,
            Some(&detection(DetectorKind::NxdomainBurst, None)),
            &stamp,
        );
        let m = &eve["alert"]["metadata"];
        assert_eq!(m["mitre_tactic_name"], json!(["Command_And_Control"]));
        assert_eq!(m["mitre_technique_id"], json!(["T1568"]));
        assert_eq!(
            m["mitre_subtechnique_name"],
            json!(["Domain_Generation_Algorithms"])
        );
        assert!(super::eve(&r, None, &stamp)["alert"]["metadata"]
            .get("mitre_tactic_id")
            .is_none());
    }

    #[test]
    fn an_alert_of_a_beacon_of_pings_names_its_technique() {
        use crate::alert::{Item, Open};
        let stamp = Stamp::default();
        let beacon = |icmp: bool, ts: f64| {
            let mut d = detection(DetectorKind::Beacon, None);
            d.ts = ts;
            if icmp {
                d.evidence
                    .insert(crate::detect::beacon::ICMP_EVIDENCE.into(), json!(true));
            }
            Item::of_detection(&d).unwrap()
        };
        let techniques = |a: &Alert| ecs_alert(a, &stamp)["threat"]["technique"]["id"].clone();
        let mut open = Open::new(&beacon(true, 10.0));
        assert_eq!(techniques(&open.alert(State::Open)), json!(["T1095"]));
        // The same host's beacon over TCP too: both techniques.
        open.add(&beacon(false, 20.0));
        let both = open.alert(State::Update);
        assert_eq!(techniques(&both), json!(["T1071", "T1095"]));
        assert_eq!(
            eve_alert(&both, &stamp)["alert"]["metadata"]["mitre_technique_id"],
            json!(["T1071", "T1095"])
        );
        // Restored from a checkpoint that kept kinds alone: as before; and
        // a detection after the restore adds its terms to theirs, even of
        // a kind it had (a TCP beacon's T1071 stays beside the pings').
        let mut old = both.clone();
        old.variants.clear();
        assert_eq!(techniques(&old), json!(["T1071"]));
        let mut saved = serde_json::to_value(Open::new(&beacon(false, 10.0))).unwrap();
        saved.as_object_mut().unwrap().remove("variants");
        let mut restored: Open = serde_json::from_value(saved).unwrap();
        assert_eq!(techniques(&restored.alert(State::Open)), json!(["T1071"]));
        restored.add(&beacon(true, 30.0));
        assert_eq!(
            techniques(&restored.alert(State::Update)),
            json!(["T1071", "T1095"])
        );
        // And the open alert's variants survive its checkpoint.
        let saved: Open = serde_json::from_str(&serde_json::to_string(&open).unwrap()).unwrap();
        assert_eq!(saved.alert(State::Update).variants, both.variants);
    }

    #[test]
    fn signature_ids_are_stable_and_in_range() {
        let r = crate::sink::format::tests::record(true);
        assert_eq!(signature_id(Some(&r), None), 1_947_002);
        assert_eq!(signature_id(None, Some(DetectorKind::Beacon)), 1_947_100);
        let mut site = r.clone();
        site.module = crate::LogKind::new("weird").unwrap();
        let id = signature_id(Some(&site), None);
        assert!((1_947_200..1_948_000).contains(&id));
        assert_eq!(id, signature_id(Some(&site), None));
    }
}
