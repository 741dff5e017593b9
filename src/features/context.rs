//! Context: what a record's source, pair or service did before it.
//!
//! A record alone cannot show a beacon (its gaps are steady), a scan (its
//! destinations are many) or a host that suddenly sends a thousand times
//! its usual bytes. The context transforms of a table keep state per key
//! (the source host, the pair, the service, the source and a domain) and
//! give KitNET columns read from that state *before* the record updates it,
//! so a record is compared with what came before it, never with itself.
//!
//! Everything runs on event time (the record's `ts`), never the wall
//! clock, so a replay, a live run and a Kafka consumer given the same
//! records in the same order compute the same columns, and the state is
//! part of the live checkpoint. Conn records are written when connections
//! close, so they arrive out of `ts` order: a record older than its key's
//! newest one decays nothing and adds no gap, which bounds what a
//! reordering can do to the statistics without holding records back.
//!
//! Statistics decay with half-lives (Kitsune's damped windows, over flows
//! instead of packets): after one half-life a past record weighs half.
//! Keys are 64-bit hashes of the key's fields, so an attacker's long names
//! cost nothing, and each feature keeps at most `max_keys` of them: when
//! full, the eighth with the least decayed weight goes (a flood of new
//! keys evicts the other one-off keys before a steady beacon's).

use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

use crate::zeek::Value;

/// The most half-lives a feature takes (each is a set of columns).
pub const MAX_HALF_LIVES: usize = 3;
/// Keys a feature tracks unless its table says otherwise.
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// The most keys a feature may be given.
pub const MAX_MAX_KEYS: usize = 10_000_000;
/// The most fields a key is made of.
pub const MAX_BY: usize = 3;
/// Bytes of a text field that go into a key (the rest of an attacker's
/// megabyte host name adds nothing).
const KEY_TEXT_BYTES: usize = 255;
/// The largest coefficient of variation reported: a few wild gaps must not
/// outweigh every other column.
const MAX_CV: f64 = 10.0;

/// What a context feature keeps per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextStat {
    /// Damped weight, mean and standard deviation of `ln(1 + field)` per
    /// key (`by`): how much and how steadily a host, pair or service sends.
    /// The deviation of the logarithm is the scale-free spread of sizes
    /// (close to their coefficient of variation when it is small).
    Damped,
    /// Per key (`by` and the field): seconds since the key's previous
    /// record, and the damped mean and coefficient of variation of those
    /// gaps. A beacon's gaps are steady (small CV); a person's are not.
    Gap,
    /// Per key (`by`): whether the field's value is new for the key, and the
    /// damped count of new values (fan-out: distinct destinations or ports
    /// of a source).
    Distinct,
    /// Per key (`by` and the field): whether the key was never seen, and
    /// per half-life how recently it was first seen (`2^(-age/h)`: 1 for
    /// a key first seen now, towards 0 for an old one). Bounded, unlike an
    /// age, which would grow past anything training saw.
    FirstSeen,
}

impl ContextStat {
    pub const NAMES: [&'static str; 4] = ["damped", "gap", "distinct", "first_seen"];

    pub fn from_name(name: &str) -> Option<ContextStat> {
        Some(match name {
            "damped" => ContextStat::Damped,
            "gap" => ContextStat::Gap,
            "distinct" => ContextStat::Distinct,
            "first_seen" => ContextStat::FirstSeen,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ContextStat::Damped => "damped",
            ContextStat::Gap => "gap",
            ContextStat::Distinct => "distinct",
            ContextStat::FirstSeen => "first_seen",
        }
    }

    /// Whether the field is part of the key (rather than the value the
    /// statistic is about).
    pub fn field_in_key(self) -> bool {
        matches!(self, ContextStat::Gap | ContextStat::FirstSeen)
    }
}

/// A context feature as a table declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextDef {
    pub stat: ContextStat,
    /// The fields of the key (`id.orig_h`; `id.orig_h`, `id.resp_h`; ...).
    pub by: Vec<String>,
    /// Seconds; one set of columns each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub half_lives: Vec<u32>,
    /// The last field of the key is a name reduced to its registered domain
    /// (public suffix list): `a.b.example.co.uk` keys as `example.co.uk`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub domain: bool,
    pub max_keys: usize,
    /// For [`ContextStat::Gap`]: seconds under which a gap is part of one
    /// session and adds nothing to the statistics (it still decays them).
    /// A person's requests come in bursts a second apart and a beacon's
    /// minutes apart: gaps of every size, a burst's dominate the mean and
    /// spread and hide a beacon's steady return among the bursts of the
    /// training day. Gaps between sessions keep it apart: on the
    /// beacon-http dev set, host header features off, the pair's and
    /// name's gaps lifted the beacon's records from ROC-AUC 0.94 (no
    /// context) to 0.99 with 60 s (ten seeds), and lowered them to
    /// 0.87-0.94 with every gap counted. 0 (the default) counts every gap.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub min_gap: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl ContextDef {
    /// The suffixes of the feature's columns, in vector order.
    pub fn column_suffixes(&self) -> Vec<String> {
        let per = |names: &[&str]| {
            self.half_lives
                .iter()
                .flat_map(|h| names.iter().map(move |n| format!("@{}:{n}", span(*h))))
                .collect::<Vec<_>>()
        };
        match self.stat {
            ContextStat::Damped => per(&["weight", "mean", "std"]),
            ContextStat::Gap => {
                let mut c = vec![":gap".to_owned()];
                c.extend(per(&["weight", "mean", "cv"]));
                c
            }
            ContextStat::Distinct => {
                let mut c = vec![":new".to_owned()];
                c.extend(per(&["count"]));
                c
            }
            ContextStat::FirstSeen => {
                let mut c = vec![":new".to_owned()];
                c.extend(per(&["fresh"]));
                c
            }
        }
    }

    /// The key's fields, in order (with the feature's field for the stats
    /// that key on it).
    pub fn key_fields<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> {
        let extra = self.stat.field_in_key().then_some(field);
        self.by.iter().map(String::as_str).chain(extra)
    }

    /// In words, for `--list-features`.
    pub fn describe(&self, field: &str) -> String {
        let key = self.key_fields(field).collect::<Vec<_>>().join(", ");
        let key = if self.domain {
            format!("{key} (registered domain)")
        } else {
            key
        };
        let hl = self
            .half_lives
            .iter()
            .map(|h| span(*h))
            .collect::<Vec<_>>()
            .join(", ");
        let what = match self.stat {
            ContextStat::Damped => format!("damped weight, mean, std of ln(1 + {field})"),
            ContextStat::Gap if self.min_gap > 0 => format!(
                "seconds since the previous record; damped weight, mean, CV of the gaps of {} or more (between sessions)",
                span(self.min_gap)
            ),
            ContextStat::Gap => {
                "seconds since the previous record; damped weight, mean, CV of the gaps".to_owned()
            }
            ContextStat::Distinct => format!("{field} new for the key; damped count of new values"),
            ContextStat::FirstSeen => {
                "key never seen before; 2^(-time since first seen / half-life)".to_owned()
            }
        };
        let hl = if hl.is_empty() {
            String::new()
        } else {
            format!(", half-lives {hl}")
        };
        format!(
            "context per {key}: {what}{hl}; at most {} keys",
            self.max_keys
        )
    }
}

/// Seconds in words for messages (`1h`, `10m`).
pub fn span_text(seconds: f64) -> String {
    span(seconds.clamp(0.0, f64::from(u32::MAX)) as u32)
}

/// A half-life as a column suffix: `90s`, `5m`, `1h`, `1d`.
fn span(seconds: u32) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Decayed sums of a value: weight, sum and sum of squares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Moments(f64, f64, f64);

impl Moments {
    fn decay(&mut self, f: f64) {
        self.0 *= f;
        self.1 *= f;
        self.2 *= f;
    }

    fn add(&mut self, x: f64) {
        self.0 += 1.0;
        self.1 += x;
        self.2 += x * x;
    }

    fn weight(&self) -> f64 {
        self.0
    }

    fn mean(&self) -> f64 {
        if self.0 > 1e-9 {
            self.1 / self.0
        } else {
            0.0
        }
    }

    fn std(&self) -> f64 {
        if self.0 > 1e-9 {
            let m = self.mean();
            (self.2 / self.0 - m * m).max(0.0).sqrt()
        } else {
            0.0
        }
    }
}

/// One key's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct KeyState {
    /// Event times of its first and newest record.
    first: f64,
    last: f64,
    /// Records, decayed with the longest half-life: what eviction ranks by.
    weight: f64,
    m: [Moments; MAX_HALF_LIVES],
}

impl KeyState {
    /// The weight it would have at `now` under the longest half-life, for
    /// eviction.
    fn weight_at(&self, now: f64, longest: f64) -> f64 {
        self.weight * decay(now - self.last, longest)
    }
}

/// `2^(-dt / half_life)`; nothing decays backwards in time.
fn decay(dt: f64, half_life: f64) -> f64 {
    if dt > 0.0 && half_life > 0.0 {
        (-dt / half_life).exp2()
    } else {
        1.0
    }
}

/// Keys to state, at most `cap`; the least weighty eighth goes when full.
#[derive(Debug, Clone, Default)]
struct Table<V> {
    cap: usize,
    map: FxHashMap<u64, V>,
    evicted: u64,
}

impl<V> Table<V> {
    fn new(cap: usize) -> Table<V> {
        Table {
            cap: cap.max(8),
            map: FxHashMap::default(),
            evicted: 0,
        }
    }

    /// Makes room for one more key when full, dropping the eighth with the
    /// lowest `rank` (ties by key, so the result depends on the contents
    /// alone, not on the map's history).
    fn make_room(&mut self, rank: impl Fn(&V) -> f64) {
        if self.map.len() < self.cap {
            return;
        }
        let drop = (self.map.len() / 8).max(1);
        let mut ranked: Vec<(f64, u64)> = self.map.iter().map(|(k, v)| (rank(v), *k)).collect();
        let order = |a: &(f64, u64), b: &(f64, u64)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        ranked.select_nth_unstable_by(drop - 1, order);
        for (_, k) in &ranked[..drop] {
            self.map.remove(k);
        }
        self.evicted += drop as u64;
    }
}

/// Saved as entries sorted by key: the same contents save the same bytes.
#[derive(Serialize, Deserialize)]
struct SavedTable<V> {
    cap: usize,
    evicted: u64,
    entries: Vec<(u64, V)>,
}

impl<V: Serialize + Clone> Serialize for Table<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut entries: Vec<(u64, V)> = self.map.iter().map(|(k, v)| (*k, v.clone())).collect();
        entries.sort_unstable_by_key(|e| e.0);
        SavedTable {
            cap: self.cap,
            evicted: self.evicted,
            entries,
        }
        .serialize(s)
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Table<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let saved = SavedTable::<V>::deserialize(d)?;
        let mut t = Table::new(saved.cap);
        t.evicted = saved.evicted;
        t.map.extend(saved.entries.into_iter().take(t.cap));
        Ok(t)
    }
}

/// One context feature's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureState {
    keys: Table<KeyState>,
    /// For [`ContextStat::Distinct`]: (key, value) hashes and when they
    /// were last seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seen: Option<Table<f64>>,
    #[serde(skip)]
    plausible: crate::plausible::Plausible,
}

impl FeatureState {
    pub fn new(def: &ContextDef) -> FeatureState {
        FeatureState {
            keys: Table::new(def.max_keys),
            seen: (def.stat == ContextStat::Distinct).then(|| Table::new(def.max_keys)),
            plausible: Default::default(),
        }
    }

    /// Keys tracked now, and dropped for room so far.
    pub fn keys(&self) -> (usize, u64) {
        (self.keys.map.len(), self.keys.evicted)
    }

    /// Fills the feature's columns (`out`, zeroed by the caller) from the
    /// state of `key`, then adds the record to it. `key` is `None` when a
    /// key field is unset; `value` is the field's value for the stats that
    /// read one; `ts` the record's time. A time not believed
    /// ([`crate::plausible`]) is taken as none: a key's state dated in the
    /// far future would never decay again, and a gap from -1e200 squares
    /// to infinity, which the saved state cannot hold.
    pub fn apply(
        &mut self,
        def: &ContextDef,
        key: Option<u64>,
        value: &Value,
        ts: Option<f64>,
        out: &mut [f64],
    ) {
        let (Some(key), Some(ts)) = (key, ts.filter(|t| self.plausible.believes(*t))) else {
            return;
        };
        let hl = &def.half_lives;
        let longest_hl = hl.iter().copied().max().unwrap_or(86_400);
        let longest = f64::from(longest_hl);
        // One probe to tell a new key (making room for it), one to get
        // its state: making room only drops other keys.
        let fresh = !self.keys.map.contains_key(&key);
        if fresh {
            self.keys.make_room(|s| s.weight_at(ts, longest));
        }
        let s = self.keys.map.entry(key).or_insert(KeyState {
            first: ts,
            last: ts,
            ..KeyState::default()
        });
        let dt = ts - s.last;
        // The longest half-life's factor is one of the half-lives' (the
        // same computation), unless there are none.
        let mut longest_factor = None;
        for (m, h) in s.m.iter_mut().zip(hl) {
            let f = decay(dt, f64::from(*h));
            if *h == longest_hl {
                longest_factor = Some(f);
            }
            m.decay(f);
        }
        let longest_factor = longest_factor.unwrap_or_else(|| decay(dt, longest));
        s.weight = s.weight * longest_factor + 1.0;
        match def.stat {
            ContextStat::Damped => {
                for (i, m) in s.m.iter().take(hl.len()).enumerate() {
                    out[3 * i] = m.weight().ln_1p();
                    out[3 * i + 1] = m.mean();
                    out[3 * i + 2] = m.std();
                }
                if let Some(x) = value.as_f64().filter(|x| x.is_finite()) {
                    let x = x.max(0.0).ln_1p();
                    s.m.iter_mut().take(hl.len()).for_each(|m| m.add(x));
                }
            }
            ContextStat::Gap => {
                if !fresh && dt >= 0.0 {
                    out[0] = dt.ln_1p();
                }
                for (i, m) in s.m.iter().take(hl.len()).enumerate() {
                    let (mean, std) = (m.mean(), m.std());
                    out[1 + 3 * i] = m.weight().ln_1p();
                    out[2 + 3 * i] = mean.max(0.0).ln_1p();
                    out[3 + 3 * i] = if mean > 0.0 {
                        (std / mean).min(MAX_CV)
                    } else {
                        0.0
                    };
                }
                // An out-of-order record adds no gap: the key's newest
                // record already stands for that stretch of time. Nor does
                // one within the session (`min_gap`).
                if !fresh && dt >= 0.0 && dt >= f64::from(def.min_gap) {
                    s.m.iter_mut().take(hl.len()).for_each(|m| m.add(dt));
                }
            }
            ContextStat::Distinct => {
                for (i, m) in s.m.iter().take(hl.len()).enumerate() {
                    out[1 + i] = m.weight().ln_1p();
                }
                let pair = value_hash(key, value, false);
                let seen = self.seen.get_or_insert_with(|| Table::new(def.max_keys));
                let new = match (pair, seen.map.get_mut(&pair.unwrap_or(0))) {
                    (None, _) => false,
                    (Some(_), Some(last)) => {
                        *last = last.max(ts);
                        false
                    }
                    (Some(p), None) => {
                        seen.make_room(|last| *last);
                        seen.map.insert(p, ts);
                        true
                    }
                };
                if new {
                    out[0] = 1.0;
                    s.m.iter_mut().take(hl.len()).for_each(|m| m.add(1.0));
                }
            }
            ContextStat::FirstSeen => {
                out[0] = f64::from(u8::from(fresh));
                for (o, h) in out[1..].iter_mut().zip(hl) {
                    *o = decay(ts - s.first, f64::from(*h));
                }
            }
        }
        s.last = s.last.max(ts);
    }
}

/// Hashes one field's value into a key; `false` when it is unset (a key
/// with an unset part keeps no state: every unset host would be one).
pub fn hash_value(h: &mut FxHasher, value: &Value, domain: bool) -> bool {
    match value {
        Value::Unset => return false,
        Value::Addr(a) => {
            h.write_u8(1);
            match a {
                std::net::IpAddr::V4(v4) => h.write(&v4.octets()),
                std::net::IpAddr::V6(v6) => h.write(&v6.octets()),
            }
        }
        Value::Count(c) => {
            h.write_u8(2);
            h.write_u64(*c);
        }
        Value::Str(s) => {
            let b = &s.as_bytes()[..s.len().min(KEY_TEXT_BYTES)];
            h.write_u8(3);
            if domain {
                // Names are case-blind (resolvers randomise the case of
                // queries); the registered part is what a site owns.
                let lower = String::from_utf8_lossy(b).to_ascii_lowercase();
                let name = lower.trim_end_matches('.');
                let part =
                    crate::detect::dns_tunnel::split_registered(name).map_or(name, |(d, _)| d);
                h.write(part.as_bytes());
            } else {
                h.write(b);
            }
            h.write_u8(0xff);
        }
        Value::List(l) => match l.first() {
            Some(v) => return hash_value(h, v, domain),
            None => return false,
        },
        other => {
            h.write_u8(4);
            let text = other.to_string();
            let b = text.as_bytes();
            h.write(&b[..b.len().min(KEY_TEXT_BYTES)]);
        }
    }
    true
}

/// A key's hash with one more value, for (key, value) sets.
fn value_hash(key: u64, value: &Value, domain: bool) -> Option<u64> {
    let mut h = FxHasher::default();
    h.write_u64(key);
    hash_value(&mut h, value, domain).then(|| h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(stat: ContextStat, half_lives: &[u32]) -> ContextDef {
        ContextDef {
            stat,
            by: vec!["id.orig_h".into()],
            half_lives: half_lives.to_vec(),
            domain: false,
            max_keys: 1000,
            min_gap: 0,
        }
    }

    /// Sessions of five requests a second apart, every 300 s with up to
    /// 10% jitter: every gap counted, the bursts make the spread large;
    /// only the gaps between sessions (`min_gap`) show the steady return.
    #[test]
    fn gaps_between_sessions_show_a_beacon_inside_bursts() {
        let cv_after = |min_gap: u32| {
            let d = ContextDef {
                min_gap,
                ..def(ContextStat::Gap, &[3600])
            };
            let mut s = FeatureState::new(&d);
            let mut last = Vec::new();
            for i in 0..40u32 {
                let start = f64::from(i) * 300.0 + f64::from(i * 7919 % 61) - 30.0;
                for j in 0..5 {
                    last = run(&d, &mut s, 1, Value::Unset, start + f64::from(j));
                }
            }
            // The last record's gap is a second either way; weight, mean
            // and CV at 1 h are columns 1, 2 and 3.
            assert!((last[0] - 1f64.ln_1p()).abs() < 1e-9, "{last:?}");
            (last[1], last[2], last[3])
        };
        let (w_all, mean_all, cv_all) = cv_after(0);
        let (w_sessions, mean_sessions, cv_sessions) = cv_after(60);
        assert!(cv_all > 1.5, "bursts make every-gap CV large: {cv_all}");
        assert!(
            cv_sessions < 0.2,
            "sessions' gaps are steady: {cv_sessions}"
        );
        assert!(
            (mean_sessions - 300f64.ln_1p()).abs() < 0.1,
            "{mean_sessions}"
        );
        // Four 1 s gaps and one of ~296 s: the period looks like a minute.
        assert!(mean_all < 100f64.ln_1p(), "{mean_all}");
        // ln(1 + weight): one gap in five counts.
        let ratio = w_all.exp_m1() / w_sessions.exp_m1();
        assert!((4.5..5.5).contains(&ratio), "{w_sessions} {w_all}");
    }

    /// A record dated in the far future, before 1970 or not a number
    /// leaves the key's state as it was (it had frozen the key's decay for
    /// good, or, from -1e200, squared a gap to infinity that the saved
    /// state could not load back), and the state saved after it loads.
    #[test]
    fn a_time_not_believed_changes_no_state() {
        for stat in [ContextStat::Gap, ContextStat::Damped, ContextStat::Distinct] {
            let d = def(stat, &[3600]);
            let steady = |glitch: Option<f64>| {
                let mut s = FeatureState::new(&d);
                let mut outs = Vec::new();
                for i in 0..100u32 {
                    let t = 1_713_571_200.0 + f64::from(i) * 60.0;
                    if i == 50 {
                        if let Some(ts) = glitch {
                            let out = run(&d, &mut s, 1, Value::Count(7), ts);
                            assert!(out.iter().all(|x| *x == 0.0), "{out:?}");
                            let saved = serde_json::to_string(&s).unwrap();
                            s = serde_json::from_str(&saved).unwrap();
                        }
                    }
                    outs.push(run(&d, &mut s, 1, Value::Count(u64::from(i % 3)), t));
                }
                outs
            };
            let want = steady(None);
            for ts in [4_102_444_800.0, 1e200, -1e200, f64::NAN] {
                assert!(steady(Some(ts)) == want, "{stat:?} after a record at {ts}");
            }
        }
    }

    fn run(d: &ContextDef, state: &mut FeatureState, key: u64, v: Value, ts: f64) -> Vec<f64> {
        let mut out = vec![0.0; d.column_suffixes().len()];
        state.apply(d, Some(key), &v, Some(ts), &mut out);
        out
    }

    #[test]
    fn a_steady_beacon_has_a_small_gap_cv_and_a_person_a_large_one() {
        let d = def(ContextStat::Gap, &[3600]);
        let mut s = FeatureState::new(&d);
        let mut last = Vec::new();
        // Every 300 s with up to 10% jitter.
        for i in 0..50u32 {
            let jitter = f64::from((i * 7919) % 61) - 30.0;
            last = run(&d, &mut s, 1, Value::Unset, f64::from(i) * 300.0 + jitter);
        }
        assert!(last[3] < 0.15, "beacon CV {}", last[3]);
        assert!((last[2] - 300f64.ln_1p()).abs() < 0.1, "{last:?}");
        // Bursty: gaps of 1 s and 2 h.
        let mut t = 0.0;
        for i in 0..50 {
            t += if i % 5 == 0 { 7200.0 } else { 1.0 };
            last = run(&d, &mut s, 2, Value::Unset, t);
        }
        assert!(last[3] > 1.0, "bursty CV {}", last[3]);
    }

    #[test]
    fn columns_are_read_before_the_record_updates_them() {
        let d = def(ContextStat::Damped, &[60]);
        let mut s = FeatureState::new(&d);
        let first = run(&d, &mut s, 1, Value::Count(1000), 0.0);
        assert_eq!(first, vec![0.0, 0.0, 0.0], "a first record sees no history");
        let second = run(&d, &mut s, 1, Value::Count(1000), 0.0);
        assert!((second[1] - 1001f64.ln()).abs() < 1e-9);
        // One half-life later the weight of the two records is one.
        let third = run(&d, &mut s, 1, Value::Count(10), 60.0);
        assert!((third[0] - 2f64.ln()).abs() < 1e-9, "{third:?}");
        assert!(third[2] < 1e-9);
    }

    #[test]
    fn out_of_order_records_add_no_gap_and_decay_nothing() {
        let d = def(ContextStat::Gap, &[3600]);
        let mut s = FeatureState::new(&d);
        run(&d, &mut s, 1, Value::Unset, 1000.0);
        run(&d, &mut s, 1, Value::Unset, 1300.0);
        let late = run(&d, &mut s, 1, Value::Unset, 1100.0);
        assert_eq!(late[0], 0.0, "no gap for a late record");
        let next = run(&d, &mut s, 1, Value::Unset, 1600.0);
        assert!(
            (next[0] - 300f64.ln_1p()).abs() < 1e-9,
            "gap from the newest: {next:?}"
        );
        assert!(next[3] < 1e-6, "still one gap size: {next:?}");
    }

    #[test]
    fn fan_out_counts_new_destinations_once() {
        let d = def(ContextStat::Distinct, &[3600]);
        let mut s = FeatureState::new(&d);
        let addr = |i: u8| Value::Addr(std::net::IpAddr::from([10, 0, 0, i]));
        for i in 0..100 {
            let out = run(&d, &mut s, 7, addr(i), f64::from(i));
            assert_eq!(out[0], 1.0);
        }
        let again = run(&d, &mut s, 7, addr(3), 101.0);
        assert_eq!(again[0], 0.0);
        assert!(again[1] > 99f64.ln(), "{again:?}");
    }

    #[test]
    fn a_flood_of_new_keys_evicts_one_off_keys_before_a_steady_one() {
        let d = ContextDef {
            max_keys: 64,
            ..def(ContextStat::FirstSeen, &[])
        };
        let mut s = FeatureState::new(&d);
        for i in 0..20 {
            run(&d, &mut s, 42, Value::Unset, f64::from(i));
        }
        for k in 1000..3000u64 {
            run(&d, &mut s, k, Value::Unset, 20.0 + k as f64 / 1000.0);
        }
        assert!(s.keys().0 <= 64);
        assert!(s.keys().1 > 1900);
        let out = run(&d, &mut s, 42, Value::Unset, 30.0);
        assert_eq!(out[0], 0.0, "the steady key survived the flood");
    }

    #[test]
    fn saved_state_restores_to_the_same_columns() {
        let d = ContextDef {
            max_keys: 16,
            ..def(ContextStat::Distinct, &[60, 3600])
        };
        let mut a = FeatureState::new(&d);
        for i in 0..200u64 {
            run(&d, &mut a, i % 37, Value::Count(i % 11), i as f64);
        }
        let saved = serde_json::to_string(&a).unwrap();
        let mut b: FeatureState = serde_json::from_str(&saved).unwrap();
        assert_eq!(serde_json::to_string(&b).unwrap(), saved);
        for i in 200..400u64 {
            let x = run(&d, &mut a, i % 41, Value::Count(i % 13), i as f64);
            let y = run(&d, &mut b, i % 41, Value::Count(i % 13), i as f64);
            assert_eq!(x, y);
        }
    }

    #[test]
    fn domains_key_by_their_registered_part() {
        let h = |s: &str, domain| {
            let mut h = FxHasher::default();
            hash_value(&mut h, &Value::Str(s.into()), domain);
            h.finish()
        };
        assert_eq!(h("a.evil.co.uk", true), h("b.c.evil.co.uk", true));
        assert_ne!(h("a.evil.co.uk", false), h("b.c.evil.co.uk", false));
        assert_ne!(h("a.evil.co.uk", true), h("a.good.co.uk", true));
    }
}
