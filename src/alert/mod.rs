//! Alerts per host: a host's flagged records (every log type) and
//! detections fold into one alert while they keep coming, so an analyst
//! gets one line per incident instead of one per record.
//!
//! The stage sits after the scorer and the detectors, in the
//! [`crate::pipeline::Emitter`], the same in replay, live following, Kafka
//! and `azw-eval`. What makes the alerts the same in every mode:
//!
//! - **Event time.** An alert closes when `quiet` seconds of event time
//!   pass without a new item of its host, never by the wall clock.
//! - **One order.** Items are held and folded in time order (ties by
//!   content, [`Item::order`]), not in arrival order: live mode reads the
//!   log types on threads of their own, and replay an hour's file of each
//!   after another (loose files one log type after another).
//!   They are released when the watermark passes them: the slowest log
//!   type still reading, less `lateness` seconds (in replay a log type
//!   not yet read holds everything back; one read to its end holds
//!   nothing). An item older than the watermark when it arrives (a
//!   connection logged hours after it began) still folds into its host's
//!   alert, counted as late: only then can modes differ.
//! - **Closing in order.** Before an item folds in, every alert whose
//!   quiet period ended before it closes, in the order their periods
//!   ended; so the sequence of written alerts is a function of the items.
//! - **Exactly once.** The whole stage (held items, open alerts) is part
//!   of live mode's checkpoint.
//!
//! Memory is bounded: at most [`AlertOptions::max_open`] open alerts (the
//! one whose quiet period ends first is closed to make room) and
//! [`AlertOptions::max_pending`] held items (the oldest is released
//! early), each counted.
//!
//! So is what an analyst is sent: a flood of new hosts (spoofed sources,
//! one flagged record each) opened an alert per source, 1.95 million
//! lines in a 30-minute review. Past [`AlertOptions::max_new_per_minute`]
//! new alerts in a minute of event time, a new alert that is one flagged
//! record of a host not known to be local ([`Open::may_wait`]) is held
//! back: it still folds, and is written once it has a second item or a
//! detection. A local host's alert, one with a detection or with two
//! items is never held back, so a flood cannot hide them. Held back
//! alerts are counted, those never written too, and each stormy minute is
//! logged.

pub mod fold;
pub mod names;

use std::cmp::Ordering;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use fold::{host_of, Alert, Item, Open, Role, Sample, State};

use crate::detect::Detection;
use crate::log_kind::LogKind;
use crate::score::ScoredRecord;
use crate::severity::Severity;
use crate::sink::{OutputSpec, RecordFormat, SinkError, SinkOptions};

/// `--alerts`: where alerts go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertTarget {
    /// Into the scored records' output, beside them.
    Output,
    /// An output of their own.
    Own(OutputSpec),
}

impl std::str::FromStr for AlertTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<AlertTarget, String> {
        if s == "output" {
            return Ok(AlertTarget::Output);
        }
        s.parse().map(AlertTarget::Own)
    }
}

/// `--alerts` and its settings, for a run.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSetup {
    pub target: AlertTarget,
    pub opts: AlertOptions,
}

impl AlertSetup {
    /// The alerts' format: the records' when it can carry them, else JSON
    /// (TSV and CSV have a record's columns).
    pub fn format(records: RecordFormat) -> RecordFormat {
        if records.takes_alerts() {
            records
        } else {
            RecordFormat::Json
        }
    }

    /// The alerts' own output, opened as `sink::open` opens outputs
    /// (`None` when they go beside the records).
    pub fn open_sink(
        &self,
        opts: &SinkOptions,
    ) -> Result<Option<Box<dyn crate::sink::Sink>>, SinkError> {
        match &self.target {
            AlertTarget::Output => Ok(None),
            AlertTarget::Own(spec) => {
                let opts = SinkOptions {
                    format: AlertSetup::format(opts.format),
                    ..opts.clone()
                };
                crate::sink::open(spec, &opts).map(Some)
            }
        }
    }

    /// The alerts' own output's name (`None` beside the records).
    pub fn own_name(&self) -> Option<String> {
        match &self.target {
            AlertTarget::Output => None,
            AlertTarget::Own(spec) => Some(spec.to_string()),
        }
    }
}

/// How alerts fold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlertOptions {
    /// Seconds without a new item after which an alert closes.
    pub quiet: f64,
    /// Seconds the watermark stays behind the log types' newest records.
    pub lateness: f64,
    /// An alert longer than this closes and its host's next item opens
    /// another (a host anomalous all week is seven alerts, not one that
    /// never closes).
    pub max_span: f64,
    /// Alerts below this are not written.
    pub min_severity: Severity,
    pub max_open: usize,
    pub max_pending: usize,
    /// New alerts written per minute of event time, at most (0: no
    /// limit); see the module's documentation.
    #[serde(default = "default_new_per_minute")]
    pub max_new_per_minute: u32,
}

fn default_new_per_minute() -> u32 {
    100
}

impl Default for AlertOptions {
    fn default() -> AlertOptions {
        AlertOptions {
            quiet: 12.0 * 3600.0,
            lateness: 600.0,
            max_span: 7.0 * 86_400.0,
            min_severity: Severity::Low,
            max_open: 100_000,
            max_pending: 200_000,
            max_new_per_minute: default_new_per_minute(),
        }
    }
}

/// How far a log type has been read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reading {
    /// Not started (replay: a log type after the current one).
    NotStarted,
    /// Reading a backlog: its newest record bounds the watermark.
    Behind,
    /// Up with its live file: it holds nothing back (it would hold
    /// everything while its log type is quiet).
    CaughtUp,
    /// Read to its end (replay).
    Finished,
}

/// Counters of the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertStats {
    pub items: u64,
    /// Flagged records without time or addresses (no host to alert
    /// on), and items timed more than a day past the wall clock.
    pub unplaced: u64,
    /// Items that arrived behind the watermark.
    pub late: u64,
    /// Names (TLS server names, HTTP Hosts, DNS answers) read after items
    /// of their time had folded in ([`names`]).
    #[serde(default)]
    pub late_names: u64,
    /// Items released before the watermark passed them (too many held).
    pub forced: u64,
    /// Alerts closed early to make room.
    pub evicted: u64,
    /// Alerts held back by the limit of new alerts a minute (some written
    /// later).
    #[serde(default)]
    pub held_back: u64,
    /// Of those, the ones closed without ever being written.
    #[serde(default)]
    pub held_unwritten: u64,
    pub opened: u64,
    pub written: u64,
}

/// Held items in time order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Held(Item);

impl PartialEq for Held {
    fn eq(&self, other: &Held) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Held) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Held) -> Ordering {
        self.0.order(&other.0)
    }
}

/// New alerts written in the current minute of event time, against
/// [`AlertOptions::max_new_per_minute`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Storm {
    /// The minute (event time / 60); items late into an earlier minute
    /// count in this one.
    minute: i64,
    written: u32,
    /// Alerts held back in this minute.
    held: u64,
}

impl Storm {
    /// Whether a new alert at `ts` may be written now (and counts it):
    /// always when `exempt` or without a limit.
    fn admit(&mut self, ts: f64, limit: u32, exempt: bool) -> bool {
        let minute = (ts / 60.0).floor() as i64;
        self.pass(minute, limit);
        if exempt || limit == 0 || self.written < limit {
            self.written = self.written.saturating_add(1);
            return true;
        }
        self.held += 1;
        false
    }

    /// Moves on to `minute` when it is a later one, ending the current.
    fn pass(&mut self, minute: i64, limit: u32) {
        if minute > self.minute {
            self.end_minute(limit);
            self.minute = minute;
        }
    }

    /// Logs what the current minute held back, and starts afresh.
    fn end_minute(&mut self, limit: u32) {
        if self.held > 0 {
            tracing::warn!(
                "alerts: {} new alerts in the minute from {} held back (more than {} new alerts a minute: a flood of sources, spoofed or scanning?); each is one flagged record of an outside host, written if another item or a detection of it comes",
                self.held,
                chrono::DateTime::from_timestamp(self.minute.saturating_mul(60), 0)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                limit
            );
        }
        self.written = 0;
        self.held = 0;
    }
}

/// "No record yet": the lowest time there is, and unlike minus
/// infinity, JSON can hold it (the stage is saved in checkpoints).
const NO_TIME: f64 = f64::MIN;

/// What an alert is of: a host, and whether it sent the traffic or was
/// reached by it. A host's inbound and outbound activity are two alerts:
/// folded into one, the first item's role named both (a server's
/// outbound connections under "target"), and unrelated inbound noise
/// raised its outbound alert's severity.
type Key = (IpAddr, Role);

/// A deadline key: when an alert's quiet period ends, then its host.
type Deadline = (u64, Key);

fn deadline_key(t: f64, key: Key) -> Deadline {
    (ordered_bits(t), key)
}

impl Open {
    fn key(&self) -> Key {
        (self.entity, self.role)
    }
}

/// The open alerts as saved in a checkpoint: a list (each alert carries
/// its host and role); a checkpoint older than the role in the key holds
/// them by host.
mod saved_open {
    use super::{Key, Open};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;
    use std::net::IpAddr;

    pub fn serialize<S: Serializer>(open: &HashMap<Key, Open>, s: S) -> Result<S::Ok, S::Error> {
        let mut list: Vec<&Open> = open.values().collect();
        list.sort_by_key(|o| o.key());
        list.serialize(s)
    }

    /// A list, or an older checkpoint's map by host; read through a JSON
    /// value (checkpoints are JSON) so that a damaged alert is named by
    /// its own error, not "matched no variant".
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<HashMap<Key, Open>, D::Error> {
        use serde::de::Error;
        let open: Vec<Open> = match serde_json::Value::deserialize(d)? {
            list @ serde_json::Value::Array(_) => {
                serde_json::from_value(list).map_err(D::Error::custom)?
            }
            by_host => serde_json::from_value::<HashMap<IpAddr, Open>>(by_host)
                .map_err(D::Error::custom)?
                .into_values()
                .collect(),
        };
        Ok(open.into_iter().map(|o| (o.key(), o)).collect())
    }
}

/// An f64's bits in an order that sorts like the number (finite values).
fn ordered_bits(t: f64) -> u64 {
    let b = t.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

/// The alert stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertStage {
    #[serde(skip)]
    opts: AlertOptions,
    /// Items not yet folded in, the earliest on top.
    pending: BinaryHeap<Reverse<Held>>,
    #[serde(with = "saved_open")]
    open: HashMap<Key, Open>,
    /// Open alerts by the end of their quiet period.
    #[serde(skip)]
    deadlines: BTreeSet<Deadline>,
    reading: BTreeMap<LogKind, (f64, Reading)>,
    /// The time of the last item folded in (or watermark reached).
    clock: f64,
    stats: AlertStats,
    #[serde(default)]
    storm: Storm,
    /// What each host's peers were called, for the alerts' peers (a
    /// checkpoint from before starts without).
    #[serde(default)]
    names: names::Names,
    /// Open alerts name their peers as items fold (false in a checkpoint
    /// from before, see [`AlertStage::resumed`]).
    #[serde(default)]
    peers_named: bool,
    /// Which record times are believed ([`crate::plausible`]): not one
    /// from the far future (it would close every alert and make every
    /// later item late), nor a negative one (an alert opened in 1969).
    #[serde(skip)]
    plausible: crate::plausible::Plausible,
}

impl AlertStage {
    /// A stage for the log types `modules`; `hold_unstarted`: a log type
    /// not yet read holds every item back (replay reads them one after
    /// the other).
    pub fn new(opts: AlertOptions, modules: &[LogKind], hold_unstarted: bool) -> AlertStage {
        let start = if hold_unstarted {
            Reading::NotStarted
        } else {
            Reading::CaughtUp
        };
        AlertStage {
            opts,
            pending: BinaryHeap::new(),
            open: HashMap::new(),
            deadlines: BTreeSet::new(),
            reading: modules.iter().map(|m| (*m, (NO_TIME, start))).collect(),
            clock: NO_TIME,
            stats: AlertStats::default(),
            storm: Storm::default(),
            names: names::Names::default(),
            peers_named: true,
            plausible: Default::default(),
        }
    }

    /// A saved stage (a checkpoint's) with the options of this run. Log
    /// types no longer followed are forgotten (they would hold the
    /// watermark for ever); the others report again as they read.
    pub fn resumed(mut self, opts: AlertOptions, modules: &[LogKind]) -> AlertStage {
        self.opts = opts;
        self.reading.retain(|m, _| modules.contains(m));
        for r in self.reading.values_mut() {
            r.1 = Reading::CaughtUp;
        }
        self.deadlines = self
            .open
            .values()
            .map(|o| deadline_key(o.last_ts + opts.quiet, o.key()))
            .collect();
        // Saved by the build that named peers from the book when writing
        // an alert: its open alerts take their names now (they would close
        // without them). Not for later stages: an alert named as its items
        // folded must not take names read since.
        if !self.peers_named {
            for o in self.open.values_mut() {
                o.name_from(&self.names);
            }
            self.peers_named = true;
        }
        for m in modules {
            self.reading
                .entry(*m)
                .or_insert((NO_TIME, Reading::CaughtUp));
        }
        self
    }

    pub fn stats(&self) -> &AlertStats {
        &self.stats
    }

    pub fn open_alerts(&self) -> usize {
        self.open.len()
    }

    /// The counters as one log line.
    pub fn stats_line(&self) -> String {
        let s = &self.stats;
        format!(
            "alerts: {} open, {} opened, {} lines written, from {} items ({} late, {} names of peers late, {} folded early, {} closed early, {} without a host, {} held back in floods, {} of them never written)",
            self.open.len(),
            s.opened,
            s.written,
            s.items,
            s.late,
            s.late_names,
            s.forced,
            s.evicted,
            s.unplaced,
            s.held_back,
            s.held_unwritten
        )
    }

    /// Takes a written record: a flagged one becomes an item.
    pub fn offer_record(&mut self, r: &ScoredRecord, out: &mut Vec<Alert>) {
        if !r.anomaly {
            return;
        }
        match Item::of_record(r) {
            Some(item) => self.hold(item, out),
            None => self.stats.unplaced += 1,
        }
    }

    /// Takes the names a record gave its server (TLS server name, HTTP
    /// Host, DNS answers) and its HTTP user agent, for the alerts' peers.
    pub fn learn_names(&mut self, o: &crate::detect::Observation) {
        use crate::detect::Observation;
        let named = match o {
            Observation::Name(n) => self.names.learn_name(n),
            Observation::Dns(d) => self.names.learn_dns(d),
            Observation::Conn(_) => false,
        };
        // Items of its time (up to the clock: an item is named by names
        // first seen no later than it) may have folded in without it: a
        // live run and a replay can differ there, as for late items.
        if named && o.ts() <= self.clock {
            self.stats.late_names += 1;
        }
    }

    pub fn offer_detection(&mut self, d: &Detection, out: &mut Vec<Alert>) {
        if let Some(item) = Item::of_detection(d) {
            self.hold(item, out);
        }
    }

    fn hold(&mut self, item: Item, out: &mut Vec<Alert>) {
        if !self.plausible.believes(item.ts) {
            self.stats.unplaced += 1;
            return;
        }
        self.stats.items += 1;
        if item.ts < self.clock {
            self.stats.late += 1;
        }
        self.pending.push(Reverse(Held(item)));
        while self.pending.len() > self.opts.max_pending {
            if let Some(Reverse(Held(oldest))) = self.pending.pop() {
                self.stats.forced += 1;
                self.fold(oldest, out);
            }
        }
    }

    /// Records how far `module` has been read (its newest record's time)
    /// and folds in what the watermark now passes.
    pub fn progress(
        &mut self,
        module: LogKind,
        newest: f64,
        reading: Reading,
        out: &mut Vec<Alert>,
    ) {
        let entry = self.reading.entry(module).or_insert((NO_TIME, reading));
        // A record from the far future (a clock glitch, a forged line)
        // would close every alert and make every later item late.
        if self.plausible.believes(newest) {
            entry.0 = entry.0.max(newest);
        }
        entry.1 = reading;
        let w = self.watermark();
        self.release(w, out);
    }

    /// The end of the input (replay, evaluation): everything held folds
    /// in and every alert closes.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        self.release(f64::INFINITY, out);
        let mut all: Vec<Deadline> = self
            .open
            .values()
            .map(|o| deadline_key(o.last_ts + self.opts.quiet, o.key()))
            .collect();
        all.sort();
        for (_, key) in all {
            self.close(key, out);
        }
        self.storm.end_minute(self.opts.max_new_per_minute);
    }

    /// Items up to here can fold: no log type still reading can bring an
    /// older one (unless late).
    fn watermark(&self) -> f64 {
        let newest = self
            .reading
            .values()
            .map(|(t, _)| *t)
            .fold(f64::NEG_INFINITY, f64::max);
        let bound = self
            .reading
            .values()
            .map(|(t, r)| match r {
                Reading::NotStarted => f64::NEG_INFINITY,
                Reading::Behind => *t,
                Reading::CaughtUp => newest,
                Reading::Finished => f64::INFINITY,
            })
            .fold(f64::INFINITY, f64::min);
        bound - self.opts.lateness
    }

    fn release(&mut self, watermark: f64, out: &mut Vec<Alert>) {
        while self.pending.peek().is_some_and(|h| h.0 .0.ts <= watermark) {
            if let Some(Reverse(Held(item))) = self.pending.pop() {
                self.fold(item, out);
            }
        }
        if watermark.is_finite() && watermark > self.clock {
            self.clock = watermark;
            self.close_until(watermark, out);
            // No item on time can come into an earlier minute now: its
            // storm is logged without waiting for the next new alert.
            let minute = (watermark / 60.0).floor() as i64;
            self.storm.pass(minute, self.opts.max_new_per_minute);
        }
    }

    /// Closes, in order, the alerts whose quiet period ended before `t`.
    fn close_until(&mut self, t: f64, out: &mut Vec<Alert>) {
        let limit = ordered_bits(t);
        while let Some(&(d, key)) = self.deadlines.first() {
            if d >= limit {
                break;
            }
            self.close(key, out);
        }
    }

    /// Closes `key`'s alert; whether a closing was written (only of an
    /// alert written before).
    fn close(&mut self, key: Key, out: &mut Vec<Alert>) -> bool {
        let Some(open) = self.open.remove(&key) else {
            return false;
        };
        self.deadlines
            .remove(&deadline_key(open.last_ts + self.opts.quiet, key));
        if !open.was_written() {
            if open.held_back {
                self.stats.held_unwritten += 1;
            }
            return false;
        }
        self.stats.written += 1;
        out.push(open.alert(State::Closed));
        true
    }

    fn fold(&mut self, item: Item, out: &mut Vec<Alert>) {
        if item.ts > self.clock {
            self.close_until(item.ts, out);
            self.clock = item.ts;
        }
        let key = (item.entity, item.role);
        let fits = self.open.get(&key).map(|o| {
            item.ts <= o.last_ts + self.opts.quiet
                && item.ts >= o.first_ts - self.opts.quiet
                && item.ts.max(o.last_ts) - item.ts.min(o.first_ts) <= self.opts.max_span
        });
        match fits {
            Some(true) => {}
            Some(false) => {
                self.close(key, out);
            }
            None => {}
        }
        if !self.open.contains_key(&key) && self.open.len() >= self.opts.max_open {
            if let Some(&(_, first)) = self.deadlines.first() {
                self.stats.evicted += 1;
                if self.close(first, out) {
                    if let Some(a) = out.last_mut() {
                        a.closed_early = true;
                    }
                }
            }
        }
        let quiet = self.opts.quiet;
        let min = self.opts.min_severity;
        let open = match self.open.get_mut(&key) {
            Some(o) => {
                self.deadlines.remove(&deadline_key(o.last_ts + quiet, key));
                o.add(&item);
                o
            }
            None => {
                self.stats.opened += 1;
                self.open.entry(key).or_insert_with(|| Open::new(&item))
            }
        };
        self.deadlines
            .insert(deadline_key(open.last_ts + quiet, key));
        if let Some(peer) = item.peer {
            // The name a client used: the peer's for the host, or, for a
            // host reached from outside, the host's for the peer.
            let (client, server) = item.role.client_server(item.entity, peer);
            // A late item (older than the alert's newest) does not
            // replace the names a newer one gave.
            let newest = item.ts >= open.last_ts;
            open.name_peer(peer, self.names.of(client, server, item.ts), newest);
        }
        if !open.was_written()
            && open.severity() >= min
            && !self
                .storm
                .admit(item.ts, self.opts.max_new_per_minute, !open.may_wait())
        {
            if !open.held_back {
                open.held_back = true;
                self.stats.held_back += 1;
            }
            return;
        }
        if let Some(state) = open.due(min) {
            self.stats.written += 1;
            out.push(open.alert(state));
        }
    }
}

#[cfg(test)]
mod tests;
