//! What the detectors take from a record: a few typed fields, copied out
//! when the record is scored, so that detection can run apart from
//! scoring (in live mode, on the writer's thread, beside the checkpoint)
//! and every mode feeds the detectors the same values in the same order.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use compact_str::CompactString;

use crate::log_kind::LogKind;
use crate::zeek::{Record, Schema, Value};

/// The longest query name kept (DNS names are at most 253 bytes; a JSON
/// log can carry anything).
const MAX_QUERY: usize = 255;
/// The longest uid kept (Zeek's are 18 characters).
const MAX_UID: usize = 64;
/// The largest duration (a year, in seconds) and byte count (a petabyte)
/// taken from a record.
const MAX_DURATION: f64 = 365.0 * 86_400.0;
const MAX_BYTES: f64 = 1e15;

/// The fields an observation is made of, in [`FIELDS`] order.
#[derive(Clone, Copy)]
enum Field {
    Ts,
    Uid,
    OrigH,
    RespH,
    OrigP,
    RespP,
    Proto,
    Duration,
    OrigBytes,
    OrigIpBytes,
    RespBytes,
    RespIpBytes,
    ConnState,
    Query,
    Rcode,
    Answers,
    ServerName,
    Host,
    UserAgent,
}

const FIELDS: [&str; 19] = [
    "ts",
    "uid",
    "id.orig_h",
    "id.resp_h",
    "id.orig_p",
    "id.resp_p",
    "proto",
    "duration",
    "orig_bytes",
    "orig_ip_bytes",
    "resp_bytes",
    "resp_ip_bytes",
    "conn_state",
    "query",
    "rcode",
    "answers",
    "server_name",
    "host",
    "user_agent",
];

/// The columns of [`FIELDS`] in the schema of the last record
/// ([`Observation::of_with`]).
#[derive(Debug, Clone, Default)]
pub struct ObservationColumns {
    schema: Option<Arc<Schema>>,
    columns: [Option<usize>; FIELDS.len()],
}

impl ObservationColumns {
    fn resolve(&mut self, record: &Record) {
        let schema = record.schema();
        if self.schema.as_ref().is_some_and(|s| Arc::ptr_eq(s, schema)) {
            return;
        }
        self.columns = FIELDS.map(|f| schema.index_of(f));
        self.schema = Some(schema.clone());
    }
}

/// One record, as the detectors (and the alerts' names of peers,
/// [`crate::alert::names`]) see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Observation {
    Conn(ConnFacts),
    Dns(DnsFacts),
    /// The name a client gave its server: a TLS server name (SNI) or an
    /// HTTP Host, and an HTTP request's user agent.
    Name(NameFacts),
}

/// The name a client used for the server it connected to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NameFacts {
    pub ts: f64,
    pub log: LogKind,
    pub client: IpAddr,
    pub server: IpAddr,
    /// As logged, at most [`MAX_QUERY`] bytes (checked where it is kept);
    /// empty for an HTTP request without a Host.
    pub name: Box<str>,
    /// An HTTP request's user agent, as logged, at most [`MAX_QUERY`]
    /// bytes (escaped where it is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<str>>,
}

/// A conn record's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnFacts {
    pub ts: f64,
    pub uid: Option<CompactString>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// For ICMP, Zeek's orig_p is the message type and resp_p the code.
    pub orig_p: Option<u16>,
    pub resp_p: Option<u16>,
    pub icmp: bool,
    /// Seconds; 0 when Zeek left it unset.
    pub duration: f64,
    pub orig_bytes: f64,
    /// What the originator sent with IP headers (RITA's beacon sizes).
    pub orig_ip_bytes: f64,
    pub resp_bytes: f64,
    /// What the responder sent with IP headers (0 when not logged): the
    /// packets seen, which bound `resp_bytes` (see [`ConnFacts::received`]).
    #[serde(default)]
    pub resp_ip_bytes: f64,
    /// Zeek's `conn_state`, when it is one of the states that mean the
    /// responder never took part (a refused or unanswered attempt).
    pub unanswered: bool,
    /// An interim record of a connection still open (`conn_long.log`):
    /// its duration and bytes are those so far, and its uid comes back,
    /// in later interim records and in the final conn record.
    #[serde(default)]
    pub open: bool,
}

impl ConnFacts {
    /// Whether the responder sent payload: what makes a connection count
    /// for beacons (a refused scanner's does not).
    pub fn answered(&self) -> bool {
        self.resp_bytes > 0.0
    }

    /// What the originator sent, as far as the packets seen show: Zeek's
    /// `orig_bytes` comes from TCP sequence numbers, and a connection seen
    /// in part (a capture gap, a forged jump of the sequence) can read as
    /// gigabytes never on the wire, while `orig_ip_bytes` counts the
    /// packets seen (headers included, so it bounds the payload from
    /// above). Without it (a log lacking the column), `orig_bytes`.
    pub fn sent(&self) -> f64 {
        bounded(self.orig_bytes, self.orig_ip_bytes)
    }

    /// What the responder sent, bounded the same way by `resp_ip_bytes`.
    pub fn received(&self) -> f64 {
        bounded(self.resp_bytes, self.resp_ip_bytes)
    }
}

fn bounded(payload: f64, on_wire: f64) -> f64 {
    if on_wire > 0.0 {
        payload.min(on_wire)
    } else {
        payload
    }
}

/// A dns record's facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsFacts {
    pub ts: f64,
    pub uid: Option<CompactString>,
    pub src: IpAddr,
    /// Lower case, without a trailing dot, at most 255 bytes.
    pub query: Option<Box<str>>,
    pub rcode: Option<u16>,
    /// The addresses among the answers (the first [`MAX_ANSWERS`]): what
    /// the client was told `query` is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<IpAddr>,
}

/// The answers' addresses a dns observation keeps.
const MAX_ANSWERS: usize = 8;

impl Observation {
    /// The facts of `record` for the detectors of `module`, or `None` when
    /// no detector looks at this log type or the record lacks what they
    /// need (a time and the hosts).
    pub fn of(module: LogKind, record: &Record) -> Option<Observation> {
        Observation::facts(module, |f| record.get(FIELDS[f as usize]))
    }

    /// [`Observation::of`] for a stream of records, the fields' columns
    /// looked up once per schema (`columns` keeps them).
    pub fn of_with(
        module: LogKind,
        record: &Record,
        columns: &mut ObservationColumns,
    ) -> Option<Observation> {
        static UNSET: Value = Value::Unset;
        columns.resolve(record);
        Observation::facts(module, |f| match columns.columns[f as usize] {
            Some(i) => record.at(i),
            None => &UNSET,
        })
    }

    fn facts<'r>(module: LogKind, get: impl Fn(Field) -> &'r Value) -> Option<Observation> {
        let ts = get(Field::Ts)
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)?;
        let uid = get(Field::Uid)
            .as_str()
            .map(|u| truncate(u, MAX_UID).into());
        let src = get(Field::OrigH).as_addr()?;
        match module {
            LogKind::CONN | LogKind::CONN_LONG | LogKind::OPEN_CONN => {
                // Bounded, so sums over many records stay finite (and
                // serialisable): a year of duration, a petabyte.
                let num = |field: Field, max: f64| {
                    get(field)
                        .as_f64()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                        .map_or(0.0, |v| v.min(max))
                };
                let resp_bytes = num(Field::RespBytes, MAX_BYTES);
                let state = get(Field::ConnState).as_str().unwrap_or("");
                Some(Observation::Conn(ConnFacts {
                    ts,
                    uid,
                    src,
                    dst: get(Field::RespH).as_addr()?,
                    orig_p: port(get(Field::OrigP).as_f64()),
                    resp_p: port(get(Field::RespP).as_f64()),
                    icmp: get(Field::Proto)
                        .as_str()
                        .is_some_and(|p| p.eq_ignore_ascii_case("icmp")),
                    duration: num(Field::Duration, MAX_DURATION),
                    orig_bytes: num(Field::OrigBytes, MAX_BYTES),
                    orig_ip_bytes: num(Field::OrigIpBytes, MAX_BYTES),
                    resp_bytes,
                    resp_ip_bytes: num(Field::RespIpBytes, MAX_BYTES),
                    unanswered: resp_bytes == 0.0 && UNANSWERED.contains(&state),
                    open: module != LogKind::CONN,
                }))
            }
            LogKind::DNS => Some(Observation::Dns(DnsFacts {
                ts,
                uid,
                src,
                // Cut first, then trim: a cut name never ends in a dot.
                query: get(Field::Query).as_str().map(|q| {
                    let q = truncate(q, MAX_QUERY).trim_end_matches('.');
                    q.to_ascii_lowercase().into()
                }),
                rcode: port(get(Field::Rcode).as_f64()),
                answers: get(Field::Answers)
                    .as_list()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(Value::as_addr)
                    .take(MAX_ANSWERS)
                    .collect(),
            })),
            LogKind::SSL | LogKind::HTTP => {
                let name = match module {
                    LogKind::SSL => get(Field::ServerName),
                    _ => get(Field::Host),
                }
                .as_str()
                .unwrap_or_default();
                let agent = match module {
                    LogKind::HTTP => get(Field::UserAgent).as_str().filter(|a| !a.is_empty()),
                    _ => None,
                };
                if name.is_empty() && agent.is_none() {
                    return None;
                }
                Some(Observation::Name(NameFacts {
                    ts,
                    log: module,
                    client: src,
                    server: get(Field::RespH).as_addr()?,
                    name: truncate(name, MAX_QUERY).into(),
                    agent: agent.map(|a| truncate(a, MAX_QUERY).into()),
                }))
            }
            _ => None,
        }
    }

    /// The module whose detectors take the observation: the log type it
    /// came from, but conn for `conn_long` (see [`feeds`]).
    pub fn module(&self) -> LogKind {
        match self {
            Observation::Conn(_) => LogKind::CONN,
            Observation::Dns(_) => LogKind::DNS,
            Observation::Name(n) => n.log,
        }
    }

    /// The record's time.
    pub fn ts(&self) -> f64 {
        match self {
            Observation::Conn(c) => c.ts,
            Observation::Dns(d) => d.ts,
            Observation::Name(n) => n.ts,
        }
    }
}

/// The module whose detectors a log type's records feed when that is
/// another module's: `conn_long` records (the zeek-long-connections
/// package's interim reports of open connections) feed conn's
/// long-connection detector, so that a long connection is found while it
/// is still open, and counted once with its final conn record. So do
/// `open_conn` records (RITA's zeek-open-connections package).
pub fn feeds(module: LogKind) -> Option<LogKind> {
    [LogKind::CONN_LONG, LogKind::OPEN_CONN]
        .contains(&module)
        .then_some(LogKind::CONN)
}

/// Conn states in which the responder never answered: no handshake
/// (S0), refused (REJ), reset before answering (RSTOS0, RSTRH), or only
/// one side seen (SH, SHR, OTH).
const UNANSWERED: [&str; 7] = ["S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"];

fn port(v: Option<f64>) -> Option<u16> {
    v.filter(|p| p.fract() == 0.0 && (0.0..=65535.0).contains(p))
        .map(|p| p as u16)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zeek::testutil::record;
    use crate::zeek::Value;

    /// What names a server: an SSL record's server name, an HTTP record's
    /// Host, a DNS record's address answers (not its CNAMEs, at most
    /// [`MAX_ANSWERS`]); a record without one names nothing.
    #[test]
    fn names_come_from_sni_host_and_dns_answers() {
        let addr = |s: &str| Value::Addr(s.parse().unwrap());
        let base = [
            ("ts", Value::Real(10.0)),
            ("id.orig_h", addr("10.0.0.1")),
            ("id.resp_h", addr("192.0.2.1")),
        ];
        let with = |extra: (&str, Value)| {
            let mut fields = base.to_vec();
            fields.push(extra);
            record(&fields)
        };
        let ssl = with(("server_name", Value::Str("c2.example.com".into())));
        let Some(Observation::Name(n)) = Observation::of(LogKind::SSL, &ssl) else {
            panic!("no name");
        };
        assert_eq!((n.log, &*n.name), (LogKind::SSL, "c2.example.com"));
        assert_eq!(
            (n.client, n.server),
            ("10.0.0.1".parse().unwrap(), "192.0.2.1".parse().unwrap())
        );
        let http = with(("host", Value::Str("www.example.org:8080".into())));
        let Some(Observation::Name(n)) = Observation::of(LogKind::HTTP, &http) else {
            panic!("no name");
        };
        assert_eq!(&*n.name, "www.example.org:8080");
        assert_eq!(Observation::of(LogKind::HTTP, &record(&base)), None);
        let empty = with(("host", Value::Str("".into())));
        assert_eq!(Observation::of(LogKind::HTTP, &empty), None);
        // A request without a Host still tells its user agent (a beacon
        // to a bare address); an SSL record has none.
        let agent = with((
            "user_agent",
            Value::Str("Modzilla/0.0001 (Atari 7800)".into()),
        ));
        let Some(Observation::Name(n)) = Observation::of(LogKind::HTTP, &agent) else {
            panic!("no user agent");
        };
        assert_eq!(
            (&*n.name, n.agent.as_deref()),
            ("", Some("Modzilla/0.0001 (Atari 7800)"))
        );
        assert_eq!(Observation::of(LogKind::SSL, &agent), None);

        let mut answers = vec![Value::Str("cdn.example.net".into())];
        answers.extend((1..=20).map(|i| Value::Str(format!("198.51.100.{i}").into())));
        let dns = with(("answers", Value::List(answers)));
        let Some(Observation::Dns(d)) = Observation::of(LogKind::DNS, &dns) else {
            panic!("no dns facts");
        };
        assert_eq!(d.answers.len(), MAX_ANSWERS);
        assert_eq!(d.answers[0], "198.51.100.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn conn_facts_read_states_and_hostile_values() {
        let r = record(&[
            ("ts", Value::Real(10.0)),
            ("uid", Value::Str("C".repeat(500).into())),
            ("id.orig_h", Value::Addr("10.0.0.1".parse().unwrap())),
            ("id.resp_h", Value::Addr("10.0.0.2".parse().unwrap())),
            ("id.resp_p", Value::Count(70_000)),
            ("duration", Value::Real(f64::NAN)),
            ("conn_state", Value::Str("REJ".into())),
        ]);
        let Some(Observation::Conn(c)) = Observation::of(LogKind::CONN, &r) else {
            panic!("no facts");
        };
        assert_eq!(c.uid.as_deref().map(str::len), Some(MAX_UID));
        assert_eq!((c.resp_p, c.duration, c.unanswered), (None, 0.0, true));
        assert!(Observation::of(LogKind::HTTP, &r).is_none());
    }

    #[test]
    fn huge_numbers_are_capped_and_a_cut_query_ends_without_a_dot() {
        let r = record(&[
            ("ts", Value::Real(10.0)),
            ("id.orig_h", Value::Addr("10.0.0.1".parse().unwrap())),
            ("id.resp_h", Value::Addr("10.0.0.2".parse().unwrap())),
            ("duration", Value::Real(1e308)),
            ("orig_bytes", Value::Real(1e308)),
        ]);
        let Some(Observation::Conn(c)) = Observation::of(LogKind::CONN, &r) else {
            panic!("no facts");
        };
        assert_eq!((c.duration, c.orig_bytes), (MAX_DURATION, MAX_BYTES));
        let q = format!("{}.{}.éxample.com.zzz", "x".repeat(240), "é");
        let r = record(&[
            ("ts", Value::Real(10.0)),
            ("id.orig_h", Value::Addr("10.0.0.1".parse().unwrap())),
            ("query", Value::Str(q.into())),
        ]);
        let Some(Observation::Dns(d)) = Observation::of(LogKind::DNS, &r) else {
            panic!("no facts");
        };
        let query = d.query.unwrap();
        assert!(query.len() <= MAX_QUERY && !query.ends_with('.'), "{query}");
        assert!(crate::detect::dns_tunnel::split_registered(&query).is_some());
    }

    #[test]
    fn dns_queries_are_lower_case_without_the_root_dot() {
        let r = record(&[
            ("ts", Value::Real(10.0)),
            ("id.orig_h", Value::Addr("10.0.0.1".parse().unwrap())),
            ("query", Value::Str("WWW.Example.COM.".into())),
            ("rcode", Value::Count(3)),
        ]);
        let Some(Observation::Dns(d)) = Observation::of(LogKind::DNS, &r) else {
            panic!("no facts");
        };
        assert_eq!(d.query.as_deref(), Some("www.example.com"));
        assert_eq!(d.rcode, Some(3));
    }
}
