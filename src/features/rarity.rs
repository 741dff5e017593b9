//! How rare a value is, learned from the training frequencies: one column
//! per field, however many values the field has.
//!
//! A one-hot category moves two columns for a value never seen in training
//! (its usual value's column off, `<other>` on) and a port moves its class
//! columns too, so a field with many values outvotes one with few: on a
//! held-out conn day twenty benign records on unseen ports outscored 1,521
//! inbound probes. A rarity column makes every field speak once, on one
//! scale: the negative log of the value's smoothed training frequency, in
//! nats, with an unseen value the rarest of all.
//!
//! A rarity can be conditional: the reply state given the destination port
//! and protocol, the status given the method. An analyst reads it directly
//! ("unanswered, from a port whose training traffic was answered 6,083
//! times out of 6,101"), and it catches what no marginal sees: a common
//! state on a port where it never happens.
//!
//! Counting is bounded like the vocabularies' (Space-Saving, bounded keys),
//! because whoever sends traffic chooses the values; the stored table keeps
//! the most frequent values, contexts and pairs only.

use std::collections::HashMap;

use rustc_hash::FxBuildHasher;
use serde::{Deserialize, Serialize};

use super::vocab::{bounded_key, VocabCounter};
use crate::zeek::{NameMap, Value};

/// Values kept per field in a model (the rest count as unseen: rarer than
/// one in the training records, or never seen).
pub const MAX_VALUES: usize = 2048;
/// Contexts kept per conditional field.
pub const MAX_CONTEXTS: usize = 1024;
/// (context, value) pairs kept per conditional field.
pub const MAX_PAIRS: usize = 4096;
/// At most this many fields condition a rarity (their values are packed
/// into one 64-bit key).
pub const MAX_GIVEN: usize = 2;

/// Prior weight of the marginal frequency in a conditional one: a context
/// seen `n` times, never with this value, gives it `p / (n + 1)`; a context
/// never seen gives the marginal `p`.
const PRIOR: f64 = 1.0;

/// Separates the parts of a counted (context, value) key. A value that
/// contains it can only be miscounted, never crash or grow anything.
const SEP: char = '\u{1f}';

/// The training frequencies a rarity column is computed from, stored in
/// the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Frequencies {
    /// Training records counted.
    pub total: u64,
    /// The most frequent values and their counts.
    pub values: Vec<(String, u64)>,
    /// For a conditional rarity: the most frequent contexts (the given
    /// fields' values, in the table's order), each with its count and the
    /// counts of the values seen with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contexts: Vec<ContextCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextCounts {
    pub context: Vec<String>,
    pub total: u64,
    pub values: Vec<(String, u64)>,
}

/// The text a value is counted under: Zeek's own `-` for unset, a list's
/// first element, numbers as written; long values by their bounded key.
pub(super) fn spelled(value: &Value) -> String {
    super::encoder::category_value(value).into_owned()
}

/// Counts one rarity feature's values (and contexts) during training.
#[derive(Debug, Clone)]
pub struct RarityLearner {
    values: VocabCounter,
    contexts: VocabCounter,
    pairs: VocabCounter,
    conditional: bool,
}

impl RarityLearner {
    pub fn new(conditional: bool) -> RarityLearner {
        RarityLearner {
            values: VocabCounter::default(),
            contexts: VocabCounter::default(),
            pairs: VocabCounter::default(),
            conditional,
        }
    }

    /// Counts one record's value and, for a conditional rarity, its
    /// context (the given fields' values).
    pub fn add(&mut self, value: &Value, given: &[&Value]) {
        let v = spelled(value);
        self.values.add(&v);
        if self.conditional {
            let context = context_key(given);
            self.pairs
                .add(&format!("{context}{SEP}{}", bounded_key(&v)));
            self.contexts.add(&context);
        }
    }

    pub fn finish(&self) -> Frequencies {
        let values = self.values.top(MAX_VALUES);
        let mut contexts = Vec::new();
        if self.conditional {
            let kept: Vec<(String, u64)> = self.contexts.top(MAX_CONTEXTS);
            let index: HashMap<&str, usize> = kept
                .iter()
                .enumerate()
                .map(|(i, (c, _))| (c.as_str(), i))
                .collect();
            contexts = kept
                .iter()
                .map(|(c, n)| ContextCounts {
                    context: c.split(SEP).map(str::to_owned).collect(),
                    total: *n,
                    values: Vec::new(),
                })
                .collect();
            for (pair, n) in self.pairs.top(MAX_PAIRS) {
                let Some((context, value)) = pair.rsplit_once(SEP) else {
                    continue;
                };
                if let Some(&i) = index.get(context) {
                    contexts[i].values.push((value.to_owned(), n));
                }
            }
        }
        Frequencies {
            total: self.values.total(),
            values,
            contexts,
        }
    }
}

/// The counted key of a context: its fields' bounded values, separated.
fn context_key(given: &[&Value]) -> String {
    let mut key = String::new();
    for (i, v) in given.iter().enumerate() {
        if i > 0 {
            key.push(SEP);
        }
        key.push_str(&bounded_key(&spelled(v)));
    }
    key
}

/// A [`Frequencies`] table made ready for lookups while encoding: values
/// and context parts become small integers, and every logarithm that
/// depends only on the table is taken once, here, so a record costs a few
/// hash lookups, no allocation, and at most one `ln`.
///
/// Why precomputed: a conn record has four rarity columns, and computing
/// each from its counts took three calls into libm (`ln`, `exp`, `ln`);
/// the cached numbers are the results of the same operations on the same
/// operands, so every column keeps its bits (tested against the formula).
#[derive(Debug, Clone)]
pub struct RarityIndex {
    /// Value to its id (an index into `marginal`).
    values: Names,
    /// Per given field: its values to ids.
    parts: Vec<Names>,
    /// Per value id, its marginal frequency.
    marginal: Vec<Marginal>,
    /// The marginal frequency of a value never seen.
    unseen: Marginal,
    /// Packed context to its count plus the prior's weight: the
    /// denominator of a conditional frequency.
    contexts: HashMap<u64, f64, FxBuildHasher>,
    /// (packed context, value id) to the value's rarity in that context.
    pairs: HashMap<(u64, u32), f64, FxBuildHasher>,
}

/// A value's smoothed marginal frequency `p`, as `ln p` and as the mass
/// `PRIOR * p` it lends a context that never saw it.
#[derive(Debug, Clone, Copy)]
struct Marginal {
    ln_p: f64,
    prior_mass: f64,
}

impl Marginal {
    /// For a value counted `count` times (at least [`UNSEEN`]) of the
    /// training records, whose smoothed total's `ln` is `ln_total`.
    fn new(count: f64, ln_total: f64) -> Marginal {
        // ln p = ln((count + 0.5) / (total + 1)): unseen is the rarest.
        let ln_p = (count + UNSEEN).ln() - ln_total;
        Marginal {
            ln_p,
            prior_mass: PRIOR * ln_p.exp(),
        }
    }
}

/// Names to ids, with the names that spell a count (ports, codes) also
/// keyed by the number, so a count is found without spelling it.
#[derive(Debug, Clone, Default)]
struct Names {
    text: NameMap<u32>,
    counts: HashMap<u64, u32, FxBuildHasher>,
}

impl Names {
    /// The id of `name`, given the next free one when new.
    fn id_of(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.text.get(name) {
            return id;
        }
        let id = self.text.len() as u32;
        self.text.insert(name.to_owned(), id);
        // Only the canonical spelling: training spells a count in plain
        // decimal, so a name such as "007" or "+7" is never a count's.
        if let Ok(n) = name.parse::<u64>() {
            if n.to_string() == name {
                self.counts.insert(n, id);
            }
        }
        id
    }

    /// A value's id, spelled as it was counted.
    fn get(&self, value: &Value) -> Option<u32> {
        match value {
            Value::Count(c) => self.counts.get(c).copied(),
            _ => {
                let v = super::encoder::category_value(value);
                self.text.get(bounded_key(&v).as_ref()).copied()
            }
        }
    }
}

/// Count given to a value never seen: half a record, below every seen one.
const UNSEEN: f64 = 0.5;

impl RarityIndex {
    pub fn new(f: &Frequencies, given: usize) -> RarityIndex {
        let ln_total = (f.total as f64 + 1.0).ln();
        let mut values = Names::default();
        // Per value id, its count (values named by a context's pairs only
        // count nothing: they are as rare as unseen ones).
        let mut counts: Vec<u64> = Vec::new();
        let mut count = |v: &str, n: u64, values: &mut Names| {
            let id = values.id_of(v);
            if id as usize == counts.len() {
                counts.push(0);
            }
            counts[id as usize] += n;
            id
        };
        for (v, n) in &f.values {
            count(v, *n, &mut values);
        }
        let mut parts: Vec<Names> = vec![Names::default(); given];
        let mut in_context: HashMap<u64, u64, FxBuildHasher> = HashMap::default();
        let mut with: HashMap<(u64, u32), u64, FxBuildHasher> = HashMap::default();
        for c in &f.contexts {
            if c.context.len() != given {
                continue;
            }
            let mut packed = 0u64;
            for (i, (part, ids)) in c.context.iter().zip(&mut parts).enumerate() {
                packed |= u64::from(ids.id_of(part)) << (32 * i);
            }
            in_context.insert(packed, c.total);
            for (v, n) in &c.values {
                let id = count(v, 0, &mut values);
                with.insert((packed, id), *n);
            }
        }
        let marginal: Vec<Marginal> = counts
            .iter()
            .map(|&n| Marginal::new((n as f64).max(UNSEEN), ln_total))
            .collect();
        let contexts: HashMap<u64, f64, FxBuildHasher> = in_context
            .into_iter()
            .map(|(packed, n)| (packed, n as f64 + PRIOR))
            .collect();
        let pairs = with
            .into_iter()
            .filter_map(|((packed, id), n)| {
                let denominator = contexts.get(&packed)?;
                let m = marginal[id as usize];
                let p = (n as f64 + m.prior_mass) / denominator;
                Some(((packed, id), -p.ln()))
            })
            .collect();
        RarityIndex {
            values,
            parts,
            marginal,
            unseen: Marginal::new(UNSEEN, ln_total),
            contexts,
            pairs,
        }
    }

    /// `-ln` of the value's smoothed frequency, given its context when the
    /// rarity is conditional.
    pub fn rarity(&self, value: &Value, given: &[&Value]) -> f64 {
        let id = self.values.get(value);
        let m = id.map_or(&self.unseen, |id| &self.marginal[id as usize]);
        if self.parts.is_empty() {
            return -m.ln_p;
        }
        let mut packed = 0u64;
        for (i, (v, ids)) in given.iter().zip(&self.parts).enumerate() {
            match ids.get(v) {
                Some(id) => packed |= u64::from(id) << (32 * i),
                // A context never seen says nothing beyond the marginal.
                None => return -m.ln_p,
            }
        }
        let Some(&denominator) = self.contexts.get(&packed) else {
            return -m.ln_p;
        };
        if let Some(&r) = id.and_then(|id| self.pairs.get(&(packed, id))) {
            return r;
        }
        // Never seen in this context: the marginal's prior mass alone
        // (`0 + mass` is `mass`, bit for bit).
        let p = m.prior_mass / denominator;
        -p.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    #[test]
    fn rarer_values_score_higher_and_unseen_is_the_rarest() {
        let mut l = RarityLearner::new(false);
        for _ in 0..90 {
            l.add(&s("tcp"), &[]);
        }
        for _ in 0..9 {
            l.add(&s("udp"), &[]);
        }
        l.add(&s("icmp"), &[]);
        let idx = RarityIndex::new(&l.finish(), 0);
        let r = |v: &str| idx.rarity(&s(v), &[]);
        assert!(r("tcp") < r("udp") && r("udp") < r("icmp") && r("icmp") < r("sctp"));
        assert!(r("tcp") >= 0.0);
        // ln((total + 1) / (count + 0.5)), unseen counting 0.5.
        assert!((r("sctp") - 101f64.ln()).abs() < 1e-12);
        assert!((r("icmp") - (101f64 / 1.5).ln()).abs() < 1e-12);
        assert_eq!(
            r("sctp"),
            idx.rarity(&Value::Unset, &[]),
            "unset `-` unseen too"
        );
    }

    /// The dev set's case: a port whose traffic was nearly always answered.
    #[test]
    fn conditional_rarity_sees_a_common_state_on_the_wrong_port() {
        let mut l = RarityLearner::new(true);
        let (p53, p80, udp, tcp) = (Value::Count(53), Value::Count(80), s("udp"), s("tcp"));
        for _ in 0..6083 {
            l.add(&s("SF"), &[&p53, &udp]);
        }
        for _ in 0..18 {
            l.add(&s("S0"), &[&p53, &udp]);
        }
        for _ in 0..3000 {
            l.add(&s("S0"), &[&p80, &tcp]);
        }
        let idx = RarityIndex::new(&l.finish(), 2);
        let s0_on_53 = idx.rarity(&s("S0"), &[&p53, &udp]);
        let s0_on_80 = idx.rarity(&s("S0"), &[&p80, &tcp]);
        let sf_on_53 = idx.rarity(&s("SF"), &[&p53, &udp]);
        assert!(s0_on_53 > 5.0, "{s0_on_53}");
        assert!(s0_on_80 < 0.01 && sf_on_53 < 0.01, "{s0_on_80} {sf_on_53}");
        // An unseen context falls back to the marginal.
        let marginal = idx.rarity(&s("S0"), &[&Value::Count(9999), &udp]);
        assert_eq!(
            marginal,
            RarityIndex::new(&l.finish(), 0).rarity(&s("S0"), &[])
        );
        assert!(marginal < s0_on_53);
    }

    /// The formula, computed from the stored table on every call, as the
    /// index did before it cached its logarithms: the index must give the
    /// same bits for every kind of value and context.
    fn by_the_formula(f: &Frequencies, value: &Value, given: &[&Value]) -> f64 {
        let spell = |v: &Value| bounded_key(&spelled(v)).into_owned();
        let count = |values: &[(String, u64)], v: &str| {
            values
                .iter()
                .filter(|(s, _)| s == v)
                .map(|(_, n)| *n)
                .sum::<u64>()
        };
        let v = spell(value);
        let known = f.values.iter().any(|(s, _)| *s == v)
            || f.contexts
                .iter()
                .any(|c| c.values.iter().any(|(s, _)| *s == v));
        let n = if known {
            (count(&f.values, &v) as f64).max(UNSEEN)
        } else {
            UNSEEN
        };
        let ln_p = (n + UNSEEN).ln() - (f.total as f64 + 1.0).ln();
        if given.is_empty() {
            return -ln_p;
        }
        let context: Vec<String> = given.iter().map(|g| spell(g)).collect();
        // A context stored twice: the total of its last copy, and each
        // value's count from the last copy that has it.
        let copies = f.contexts.iter().filter(|c| c.context == context);
        let Some(total) = copies.clone().next_back().map(|c| c.total) else {
            return -ln_p;
        };
        let with = copies
            .flat_map(|c| &c.values)
            .rfind(|(s, _)| *s == v)
            .map_or(0, |(_, n)| *n);
        let p = (with as f64 + PRIOR * ln_p.exp()) / (total as f64 + PRIOR);
        -p.ln()
    }

    #[test]
    fn the_index_gives_the_formula_s_bits() {
        let mut l = RarityLearner::new(true);
        let states = ["SF", "S0", "REJ", "RSTO", "OTH"];
        let protos = ["tcp", "udp", "icmp"];
        let mut x = 7u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        for _ in 0..20_000 {
            let state = s(states[(next() % 5) as usize]);
            let port = Value::Count([22, 53, 80, 443, 8080][(next() % 5) as usize] + next() % 3);
            let proto = s(protos[(next() % 3) as usize]);
            l.add(&state, &[&port, &proto]);
        }
        let mut f = l.finish();
        // Names a count cannot spell, a value known only from a pair, and
        // a context stored twice (another total, a count changed, one
        // value only in the first copy).
        f.values.push(("007".into(), 3));
        f.contexts[0].values.push(("only-in-a-pair".into(), 2));
        let mut again = f.contexts[1].clone();
        again.total += 5;
        let first_value = again.values.remove(0).0;
        again.values[0].1 += 7;
        f.contexts.push(again);
        assert!(f.contexts[1].values.iter().any(|(s, _)| *s == first_value));
        let (cond, marg) = (RarityIndex::new(&f, 2), RarityIndex::new(&f, 0));
        let values: Vec<Value> = states
            .iter()
            .chain(&["only-in-a-pair", "never", "007"])
            .map(|v| s(v))
            .chain([Value::Count(7), Value::Count(80), Value::Unset])
            .collect();
        // Every stored context's port (so the copied context is probed),
        // others never seen, and ports spelled as text or unset.
        let ports: Vec<Value> = f
            .contexts
            .iter()
            .filter_map(|c| c.context[0].parse::<u64>().ok())
            .chain([23, 9])
            .map(Value::Count)
            .chain([s("80"), s("443"), Value::Unset])
            .collect();
        let mut compared = 0;
        for v in &values {
            assert_eq!(
                marg.rarity(v, &[]).to_bits(),
                by_the_formula(&f, v, &[]).to_bits(),
                "{v:?}"
            );
            for port in &ports {
                for proto in protos.iter().map(|p| s(p)).chain([s("sctp")]) {
                    let given = [port, &proto];
                    let (got, want) = (cond.rarity(v, &given), by_the_formula(&f, v, &given));
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "{v:?} given {port:?} {proto:?}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 400);
    }

    #[test]
    fn stored_tables_are_bounded() {
        let mut l = RarityLearner::new(true);
        for i in 0..50_000u64 {
            l.add(&Value::Count(i), &[&Value::Count(i % 3000)]);
        }
        let f = l.finish();
        assert!(f.values.len() <= MAX_VALUES);
        assert!(f.contexts.len() <= MAX_CONTEXTS);
        assert!(f.contexts.iter().map(|c| c.values.len()).sum::<usize>() <= MAX_PAIRS);
        let idx = RarityIndex::new(&f, 1);
        assert!(idx
            .rarity(&Value::Count(7), &[&Value::Count(7)])
            .is_finite());
    }
}
