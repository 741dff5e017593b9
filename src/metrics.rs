//! The running process's counters for Prometheus, and a minimal HTTP
//! server for them (`GET /metrics`, text exposition format 0.0.4).
//!
//! The lanes' own counters ([`LaneStats`]) are what is published, so the
//! stats log line and the metrics always agree: the live writer publishes
//! each module's counters and the detect stage's counts with every batch, the model reloader its loads
//! and refusals, the checkpoint its saves. One registry per process
//! ([`global`]); nothing is recorded where no one publishes.
//!
//! The server runs on its own thread and answers each connection on a
//! thread of its own, at most [`MAX_CLIENTS`] at once (more are closed at
//! once); it reads at most [`MAX_REQUEST`] bytes of a request, which must
//! come whole within [`CLIENT_TIMEOUT`] (a timeout per read let one client
//! sending a byte every few seconds hold the one server thread, and every
//! scrape failed while it did: found by a review), and answers only
//! `GET /metrics` (and `/` with a pointer to it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::log_kind::LogKind;
use crate::pipeline::LaneStats;

/// The most bytes of a request read before answering.
pub const MAX_REQUEST: usize = 8 * 1024;

/// How long a client may take to send its whole request, and to read the
/// answer (a scraper sends its request in one packet).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections answered at once: a scraper or two, and room for a few
/// slow ones without turning the scraper away.
pub const MAX_CLIENTS: usize = 8;

/// What one module has published.
#[derive(Debug, Clone, Default)]
struct Module {
    stats: LaneStats,
    model_threshold: Option<f64>,
    /// When the model in use was trained (seconds since the epoch).
    model_created: Option<f64>,
    model_refusals: u64,
}

#[derive(Debug, Default)]
struct State {
    modules: BTreeMap<LogKind, Module>,
    /// Detections written, per detector.
    detections: BTreeMap<String, u64>,
    /// The alert stage's counters and open alerts, when alerts are on.
    alerts: Option<(crate::alert::AlertStats, usize)>,
    last_checkpoint: Option<SystemTime>,
    checkpoint_bytes: Option<u64>,
    heartbeat: Option<Instant>,
}

/// The process's metrics.
#[derive(Debug, Default)]
pub struct Registry {
    state: Mutex<State>,
}

/// The one registry of this process.
pub fn global() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Registry {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state)
    }

    /// A module's counters as its lane has them now.
    pub fn publish(&self, module: LogKind, stats: &LaneStats) {
        self.with(|s| s.modules.entry(module).or_default().stats = *stats);
    }

    /// The model a module now scores with: its threshold, and when it was
    /// trained (the model's `created`, RFC 3339).
    pub fn model_loaded(&self, module: LogKind, threshold: f64, created: &str) {
        let created = chrono::DateTime::parse_from_rfc3339(created)
            .ok()
            .map(|t| t.timestamp_millis() as f64 / 1000.0);
        self.with(|s| {
            let m = s.modules.entry(module).or_default();
            m.model_threshold = Some(threshold);
            m.model_created = created;
        });
    }

    /// The detections written so far, per detector (the detect stage's
    /// counts).
    pub fn detections<K: std::fmt::Display>(&self, found: impl IntoIterator<Item = (K, u64)>) {
        let found: BTreeMap<String, u64> =
            found.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
        self.with(|s| s.detections = found);
    }

    /// The alert stage's counters and how many alerts are open.
    pub fn alerts(&self, stats: &crate::alert::AlertStats, open: usize) {
        self.with(|s| s.alerts = Some((*stats, open)));
    }

    /// A replaced model file that was refused (the running model stays).
    pub fn model_refused(&self, module: LogKind) {
        self.with(|s| s.modules.entry(module).or_default().model_refusals += 1);
    }

    /// A checkpoint was saved.
    pub fn checkpoint_saved(&self) {
        self.with(|s| s.last_checkpoint = Some(SystemTime::now()));
    }

    /// A run resumed from a checkpoint of `bytes` saved at `saved`: its
    /// age and size are known before this run saves one (which the write
    /// budget may put off for up to an hour).
    pub fn checkpoint_resumed(&self, saved: SystemTime, bytes: u64) {
        self.with(|s| {
            s.last_checkpoint = Some(saved);
            s.checkpoint_bytes = Some(bytes);
        });
    }

    /// A state file (a checkpoint, a Kafka member's state) of `bytes` was
    /// written: its size, to size the disk and its write budget by.
    pub fn checkpoint_size(&self, bytes: u64) {
        self.with(|s| s.checkpoint_bytes = Some(bytes));
    }

    /// The run's main loop went round: it is alive (systemd's watchdog).
    pub fn heartbeat(&self) {
        self.with(|s| s.heartbeat = Some(Instant::now()));
    }

    /// When the main loop last went round; `None` before it started.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.with(|s| s.heartbeat)
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let now = SystemTime::now();
        self.with(|s| render(s, now))
    }
}

fn render(s: &State, now: SystemTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP azw_build_info The running autozeekwatch.\n# TYPE azw_build_info gauge\nazw_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    type Get = fn(&Module) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 14] = [
        ("azw_lines_read_total", "counter", "Data lines (records and malformed lines) read.", |m| Some(m.stats.lines as f64)),
        ("azw_records_scored_total", "counter", "Records scored.", |m| Some(m.stats.scored as f64)),
        ("azw_lines_skipped_total", "counter", "Lines skipped: malformed, over the line cap, or not scorable (each logged, throttled).", |m| Some(m.stats.skipped as f64)),
        ("azw_lines_malformed_total", "counter", "Of the skipped lines: not a record of this log type (cut, bad values, over the line cap).", |m| Some(m.stats.malformed as f64)),
        ("azw_records_unscorable_total", "counter", "Of the skipped lines: records the model could not score.", |m| Some(m.stats.unscorable as f64)),
        ("azw_anomalies_total", "counter", "Records scored above the model's threshold (alerts).", |m| Some(m.stats.anomalies as f64)),
        ("azw_records_written_total", "counter", "Scored records handed to the output.", |m| Some(m.stats.written as f64)),
        ("azw_allowlist_dropped_total", "counter", "Records an allowlist rule dropped before scoring.", |m| Some(m.stats.dropped as f64)),
        ("azw_allowlist_unalerted_total", "counter", "Anomalies an allowlist rule kept from alerting.", |m| Some(m.stats.unalerted as f64)),
        ("azw_model_reloads_total", "counter", "Replaced model files taken without a restart.", |m| Some(m.stats.model_reloads as f64)),
        ("azw_model_refusals_total", "counter", "Replaced model files refused (damaged, foreign, incompatible); the running model stayed.", |m| Some(m.model_refusals as f64)),
        ("azw_behind_bytes", "gauge", "Bytes of the live file not read yet.", |m| Some(m.stats.lag_bytes as f64)),
        ("azw_model_threshold", "gauge", "The threshold of the model in use.", |m| m.model_threshold),
        ("azw_model_created_timestamp_seconds", "gauge", "When the model in use was trained.", |m| m.model_created),
    ];
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (module, m) in &s.modules {
            if let Some(v) = get(m) {
                let _ = writeln!(out, "{name}{{module=\"{module}\"}} {v}");
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP azw_detections_total Detections written (behaviour over time: beacons, scans, tunnels...), per detector.\n# TYPE azw_detections_total counter"
    );
    for (detector, n) in &s.detections {
        let _ = writeln!(out, "azw_detections_total{{detector=\"{detector}\"}} {n}");
    }
    if let Some((a, open)) = &s.alerts {
        for (name, kind, help, v) in [
            (
                "azw_alerts_opened_total",
                "counter",
                "Alerts opened (one per host and incident).",
                a.opened as f64,
            ),
            (
                "azw_alert_lines_total",
                "counter",
                "Alert lines written: opened, updated and closed.",
                a.written as f64,
            ),
            ("azw_alerts_open", "gauge", "Alerts open now.", *open as f64),
            (
                "azw_alert_items_total",
                "counter",
                "Flagged records and detections folded into alerts.",
                a.items as f64,
            ),
            (
                "azw_alert_items_late_total",
                "counter",
                "Items that arrived behind the alert watermark (--alert-lateness).",
                a.late as f64,
            ),
            (
                "azw_alert_names_late_total",
                "counter",
                "Names of peers (TLS server names, HTTP Hosts, DNS answers) read after items of their time had folded into alerts.",
                a.late_names as f64,
            ),
            (
                "azw_alerts_evicted_total",
                "counter",
                "Alerts closed early to stay within the open-alert cap.",
                a.evicted as f64,
            ),
            (
                "azw_alerts_held_back_total",
                "counter",
                "Alerts held back by the limit of new alerts a minute (--alerts-per-minute).",
                a.held_back as f64,
            ),
            (
                "azw_alerts_held_unwritten_total",
                "counter",
                "Alerts held back by the limit and closed without being written (one flagged record of an outside host each).",
                a.held_unwritten as f64,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP azw_behind_seconds Seconds between now and the newest record time read (event time: how late the stream is, including Zeek's own delay in writing a connection).\n# TYPE azw_behind_seconds gauge"
    );
    for (module, m) in &s.modules {
        if m.stats.newest_ts > 0 {
            let _ = writeln!(
                out,
                "azw_behind_seconds{{module=\"{module}\"}} {}",
                (unix(now) - m.stats.newest_ts as f64).max(0.0)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP azw_model_age_seconds Seconds since the model in use was trained.\n# TYPE azw_model_age_seconds gauge"
    );
    for (module, m) in &s.modules {
        if let Some(created) = m.model_created {
            let _ = writeln!(
                out,
                "azw_model_age_seconds{{module=\"{module}\"}} {}",
                (unix(now) - created).max(0.0)
            );
        }
    }
    if let Some(t) = s.last_checkpoint {
        let _ = writeln!(
            out,
            "# HELP azw_last_checkpoint_timestamp_seconds When the last checkpoint was saved.\n# TYPE azw_last_checkpoint_timestamp_seconds gauge\nazw_last_checkpoint_timestamp_seconds {}",
            unix(t)
        );
        let _ = writeln!(
            out,
            "# HELP azw_last_checkpoint_age_seconds Seconds since the last checkpoint was saved.\n# TYPE azw_last_checkpoint_age_seconds gauge\nazw_last_checkpoint_age_seconds {}",
            now.duration_since(t).unwrap_or_default().as_secs_f64()
        );
    }
    if let Some(bytes) = s.checkpoint_bytes {
        let _ = writeln!(
            out,
            "# HELP azw_last_checkpoint_bytes The size of the last checkpoint (or Kafka member state) written.\n# TYPE azw_last_checkpoint_bytes gauge\nazw_last_checkpoint_bytes {bytes}"
        );
    }
    out
}

/// Serves [`global`]'s metrics at `http://addr/metrics` from a thread of
/// its own, for as long as the process runs. Returns the address bound
/// (port 0 picks a free one).
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            let busy = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
                            busy.fetch_sub(1, Ordering::SeqCst);
                            tracing::debug!("metrics: {MAX_CLIENTS} connections open; one closed");
                            continue;
                        }
                        let done = Arc::clone(&busy);
                        let spawned = std::thread::Builder::new()
                            .name("metrics client".into())
                            .spawn(move || {
                                let mut stream = stream;
                                if let Err(e) = answer(&mut stream, global()) {
                                    tracing::debug!("metrics: a request failed: {e}");
                                }
                                // Uncounted before the close the client
                                // sees: a scrape right after it is taken
                                // (the tests' scrape beside seven slow
                                // clients was closed on a loaded host).
                                done.fetch_sub(1, Ordering::SeqCst);
                                drop(stream);
                            });
                        if let Err(e) = spawned {
                            busy.fetch_sub(1, Ordering::SeqCst);
                            tracing::warn!("metrics: cannot answer a connection: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::warn!("metrics: cannot accept a connection: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
    Ok(bound)
}

/// Reads one request (bounded in size and time) and answers it.
fn answer(stream: &mut TcpStream, registry: &Registry) -> std::io::Result<()> {
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut request = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request did not come in time",
            ));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = request.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            registry.render(),
        ),
        ("GET", "/") => (
            "200 OK",
            "text/plain; charset=utf-8",
            "autozeekwatch: metrics at /metrics\n".to_owned(),
        ),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found: the metrics are at /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The update keeps the test building when LaneStats gains counters.
    #[allow(clippy::needless_update)]
    fn counters_are_rendered_per_module() {
        let r = Registry::default();
        let stats = LaneStats {
            lines: 12,
            scored: 10,
            skipped: 2,
            malformed: 1,
            unscorable: 1,
            newest_ts: 1_000_000_000,
            anomalies: 3,
            written: 10,
            model_reloads: 1,
            lag_bytes: 77,
            ..LaneStats::default()
        };
        r.publish(LogKind::CONN, &stats);
        r.model_loaded(LogKind::CONN, 0.25, "2026-12-01T10:00:00Z");
        r.model_refused(LogKind::DNS);
        r.detections([("beacon", 2u64)]);
        assert!(!r.render().contains("azw_alerts_open"));
        assert!(!r.render().contains("azw_last_checkpoint_bytes"));
        r.checkpoint_size(152_000_000);
        r.alerts(
            &crate::alert::AlertStats {
                opened: 4,
                items: 9,
                ..Default::default()
            },
            2,
        );
        let text = r.render();
        for line in [
            "azw_lines_read_total{module=\"CONN\"} 12",
            "azw_records_scored_total{module=\"CONN\"} 10",
            "azw_lines_skipped_total{module=\"CONN\"} 2",
            "azw_lines_malformed_total{module=\"CONN\"} 1",
            "azw_records_unscorable_total{module=\"CONN\"} 1",
            "azw_anomalies_total{module=\"CONN\"} 3",
            "azw_behind_bytes{module=\"CONN\"} 77",
            "azw_model_threshold{module=\"CONN\"} 0.25",
            "azw_model_created_timestamp_seconds{module=\"CONN\"} 1796119200",
            "azw_model_refusals_total{module=\"DNS\"} 1",
            "azw_detections_total{detector=\"beacon\"} 2",
            "azw_alerts_opened_total 4",
            "azw_alerts_open 2",
            "azw_alert_items_total 9",
            "azw_last_checkpoint_bytes 152000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert!(!text.contains("azw_model_threshold{module=\"DNS\"}"));
        let behind: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("azw_behind_seconds{module=\"CONN\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            behind > 700_000_000.0,
            "records of 2001 are years behind: {behind}"
        );
    }

    #[test]
    fn the_server_answers_get_metrics_and_refuses_the_rest() {
        let addr = serve("127.0.0.1:0".parse().unwrap()).unwrap();
        global().publish(LogKind::SSH, &LaneStats::default());
        let ask = |request: &[u8]| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(request).unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        };
        let ok = ask(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("azw_lines_read_total{module=\"SSH\"} 0"),
            "{ok}"
        );
        assert!(ask(b"GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(ask(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // A request without an end is read only up to the bound.
        let big = vec![b'a'; MAX_REQUEST * 4];
        let mut s = TcpStream::connect(addr).unwrap();
        let _ = s.write_all(&big);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.is_empty() || out.starts_with("HTTP/1.1 405"), "{out}");

        // Clients that send a byte now and then hold neither the server
        // nor their connection past the deadline: a scrape beside them is
        // answered, and they are closed.
        let slow: Vec<TcpStream> = (0..MAX_CLIENTS - 1)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"G").unwrap();
                s
            })
            .collect();
        let mut scrape = TcpStream::connect(addr).unwrap();
        scrape.set_read_timeout(Some(CLIENT_TIMEOUT / 2)).unwrap();
        scrape.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut scraped = String::new();
        scrape.read_to_string(&mut scraped).unwrap();
        assert!(scraped.starts_with("HTTP/1.1 200 OK\r\n"), "{scraped}");
        let started = Instant::now();
        for mut s in slow {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            // A byte a second: a timeout per read never closed it.
            loop {
                assert!(
                    started.elapsed() < CLIENT_TIMEOUT * 3,
                    "a slow client is still open"
                );
                if s.write_all(b"E").is_err() {
                    break;
                }
                match s.read(&mut [0u8; 64]) {
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    _ => break,
                }
            }
        }
    }
}
