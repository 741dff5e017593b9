//! Records to feature vectors, following a module's table.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::{ContextDef, FeatureState};
use super::net::{Direction, LocalNets};
use super::rarity::{Frequencies, RarityIndex, RarityLearner, MAX_GIVEN};
use super::spec::{FeatureDef, Transform};
use super::vocab::{bounded_key, VocabCounter, Vocabulary};
use crate::log_kind::LogKind;
use std::sync::Arc;

use crate::zeek::{NameMap, Record, Schema, Value};

/// Everything needed to turn a module's records into vectors: its table,
/// the vocabularies learned for its categories, and the local networks.
/// This is what the model file stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSet {
    pub module: LogKind,
    pub features: Vec<FeatureDef>,
    /// By feature name, for every [`Transform::Category`] feature.
    pub vocabularies: BTreeMap<String, Vocabulary>,
    /// By feature name, for every [`Transform::Rarity`] feature.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub frequencies: BTreeMap<String, Frequencies>,
    pub local_nets: LocalNets,
    /// Where `local_nets` came from, for `--inspect`.
    #[serde(default)]
    pub local_nets_origin: super::NetsOrigin,
    /// Where `features` came from (`built-in`, or a table file), for
    /// `--inspect`; unset in models from before tables were files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_origin: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("feature `{0}` is a category but the model has no vocabulary for it")]
    MissingVocabulary(String),
    #[error("feature `{0}` appears twice in the table")]
    Duplicate(String),
    #[error("feature `{0}` is a rarity but the model has no training frequencies for it")]
    MissingFrequencies(String),
    #[error("feature `{0}`: a rarity can be given at most {MAX_GIVEN} fields")]
    TooManyGiven(String),
}

/// The value a category feature sees: text as it is, numbers as written,
/// a list's first element, and `-` (Zeek's own mark) for unset.
pub(super) fn category_value(value: &Value) -> Cow<'_, str> {
    match value {
        Value::Unset => Cow::Borrowed("-"),
        Value::Str(s) => Cow::Borrowed(s),
        Value::List(l) => l.first().map(category_value).unwrap_or(Cow::Borrowed("-")),
        other => Cow::Owned(other.to_string()),
    }
}

/// The vocabulary slot of a category value, as [`category_value`] spells
/// it; a count (a port, a status code) is spelled on the stack rather than
/// into a new `String`.
fn category_slot(index: &NameMap<usize>, value: &Value) -> Option<usize> {
    match value {
        Value::Count(c) => {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut c = *c;
            loop {
                at -= 1;
                digits[at] = b'0' + (c % 10) as u8;
                c /= 10;
                if c == 0 {
                    break;
                }
            }
            // ASCII digits only, so always UTF-8.
            let text = std::str::from_utf8(&digits[at..]).unwrap_or_default();
            index.get(text).copied()
        }
        _ => index
            .get(bounded_key(&category_value(value)).as_ref())
            .copied(),
    }
}

/// Learns the vocabularies of a module's categories in one pass over its
/// training records.
#[derive(Debug)]
pub struct VocabLearner {
    module: LogKind,
    features: Vec<FeatureDef>,
    table_origin: Option<String>,
    counters: Vec<Option<VocabCounter>>,
    rarities: Vec<Option<RarityLearner>>,
}

impl VocabLearner {
    /// With a log type's table.
    pub fn new(table: &crate::tables::Table) -> VocabLearner {
        let mut learner = VocabLearner::with_features(table.log, table.features.clone());
        learner.table_origin = Some(table.origin_text());
        learner
    }

    pub fn with_features(module: LogKind, features: Vec<FeatureDef>) -> VocabLearner {
        let counters = features
            .iter()
            .map(|d| matches!(d.transform, Transform::Category { .. }).then(VocabCounter::default))
            .collect();
        let rarities = features
            .iter()
            .map(|d| match &d.transform {
                Transform::Rarity { given } => Some(RarityLearner::new(!given.is_empty())),
                _ => None,
            })
            .collect();
        VocabLearner {
            module,
            features,
            table_origin: None,
            counters,
            rarities,
        }
    }

    pub fn observe(&mut self, record: &Record) {
        for (def, counter) in self.features.iter().zip(&mut self.counters) {
            if let Some(c) = counter {
                c.add(&category_value(record.get(&def.field)));
            }
        }
        for (def, learner) in self.features.iter().zip(&mut self.rarities) {
            if let (Some(l), Transform::Rarity { given }) = (learner, &def.transform) {
                let given: Vec<&Value> = given.iter().map(|g| record.get(g)).collect();
                l.add(record.get(&def.field), &given);
            }
        }
    }

    pub fn finish(self, local_nets: LocalNets) -> FeatureSet {
        let mut vocabularies = BTreeMap::new();
        for (def, counter) in self.features.iter().zip(&self.counters) {
            if let (Some(c), Transform::Category { max_values }) = (counter, &def.transform) {
                vocabularies.insert(def.name.clone(), c.finish(*max_values));
            }
        }
        let frequencies = self
            .features
            .iter()
            .zip(&self.rarities)
            .filter_map(|(d, l)| Some((d.name.clone(), l.as_ref()?.finish())))
            .collect();
        FeatureSet {
            module: self.module,
            features: self.features,
            vocabularies,
            frequencies,
            local_nets,
            local_nets_origin: super::NetsOrigin::default(),
            table_origin: self.table_origin,
        }
    }
}

/// The columns of [`Transform::TextState`], in order.
const TEXT_STATES: [&str; 3] = ["unset", "empty", "set"];

/// How one feature fills its columns, resolved once.
#[derive(Debug, Clone)]
enum Plan {
    Scalar(Transform),
    Chars(CharSet),
    Category(NameMap<usize>, usize),
    PortClass,
    Direction,
    Rarity(Box<RarityIndex>),
    TextState,
    /// Seconds from the field to the first `given` column's time.
    Interval,
    /// State over time: the feature's definition, its slot in the
    /// [`ContextState`] and its number of columns. The key's columns are
    /// in `given`.
    Context(Box<ContextDef>, usize, usize),
}

impl Plan {
    /// The columns the plan writes.
    fn width(&self) -> usize {
        match self {
            Plan::Scalar(_) | Plan::Rarity(_) | Plan::Interval => 1,
            Plan::Chars(chars) => chars.chars.len(),
            Plan::Category(_, n) => n + 1,
            Plan::PortClass | Plan::TextState => 3,
            Plan::Direction => 4,
            Plan::Context(_, _, n) => *n,
        }
    }
}

/// Which of a record's features [`Encoder::encode_inner`] computes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// Every feature.
    All,
    /// The context features only, at their columns, the rest left zero:
    /// what must be computed in input order.
    Context,
    /// The context features only, each written over the last at the start
    /// of `out`: the state's update, the values unused.
    ContextUpdate,
    /// Every feature but the context ones, whose columns are left as they
    /// are: what any thread can compute.
    Stateless,
}

/// The state of a module's context features, in table order: what the
/// encoder reads and updates record by record. One per stream of records
/// (a training pass, a scoring lane); saved in the live checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContextState {
    /// The definitions the state was made for, with their fields, so that a
    /// state is never applied to other features.
    defs: Vec<(String, ContextDef)>,
    features: Vec<FeatureState>,
}

impl ContextState {
    /// True when the encoder has no context features.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Whether this state belongs to `other`'s features (the same
    /// definitions): a reloaded model keeps the running state only then.
    pub fn fits(&self, other: &ContextState) -> bool {
        self.defs == other.defs
    }

    /// Keys tracked now and dropped for room so far, over all features.
    pub fn keys(&self) -> (usize, u64) {
        self.features
            .iter()
            .map(FeatureState::keys)
            .fold((0, 0), |(a, b), (c, d)| (a + c, b + d))
    }
}

/// The characters of a [`Transform::Chars`] feature. Whether an ASCII
/// character occurs in a text is read from a bitmap of the text's bytes,
/// made in one pass, instead of one search of the text per character
/// (two dozen for the conn `history`).
#[derive(Debug, Clone)]
struct CharSet {
    chars: Vec<char>,
    all_ascii: bool,
}

impl CharSet {
    fn new(chars: &str) -> CharSet {
        CharSet {
            chars: chars.chars().collect(),
            all_ascii: chars.is_ascii(),
        }
    }

    /// Sets `out[i]` to 1 for each character `i` that occurs in `text`.
    fn mark(&self, text: &str, out: &mut [f64]) {
        if self.all_ascii {
            // A UTF-8 byte below 128 is always that ASCII character.
            let mut seen = [0u64; 2];
            for b in text.bytes().filter(u8::is_ascii) {
                seen[usize::from(b >> 6)] |= 1 << (b & 63);
            }
            for (o, c) in out.iter_mut().zip(&self.chars) {
                let b = *c as u8;
                if seen[usize::from(b >> 6)] & (1 << (b & 63)) != 0 {
                    *o = 1.0;
                }
            }
        } else {
            for (o, c) in out.iter_mut().zip(&self.chars) {
                if text.contains(*c) {
                    *o = 1.0;
                }
            }
        }
    }
}

/// Column indices of the fields an encoder reads, for the few most recent
/// schemas (JSON logs alternate between a few key sets).
#[derive(Debug, Clone, Default)]
pub struct FieldCache {
    /// Most recently used first, at most [`FieldCache::KEPT`].
    entries: Vec<SchemaColumns>,
}

#[derive(Debug, Clone)]
struct SchemaColumns {
    schema: Arc<Schema>,
    columns: Vec<Option<usize>>,
    /// Per feature, the columns of its `given` fields (rarities only).
    given: Vec<Vec<Option<usize>>>,
    orig_h: Option<usize>,
    resp_h: Option<usize>,
}

impl FieldCache {
    const KEPT: usize = 8;

    /// The columns for `schema`, resolved with `resolve` if it is new.
    fn get(
        &mut self,
        schema: &Arc<Schema>,
        resolve: impl FnOnce() -> SchemaColumns,
    ) -> &SchemaColumns {
        match self
            .entries
            .iter()
            .position(|e| Arc::ptr_eq(&e.schema, schema))
        {
            Some(i) => self.entries[..=i].rotate_right(1),
            None => {
                self.entries.truncate(Self::KEPT - 1);
                self.entries.insert(0, resolve());
            }
        }
        &self.entries[0]
    }
}

/// Encodes records of one module into vectors of [`Encoder::len`] columns.
#[derive(Debug, Clone)]
pub struct Encoder {
    set: FeatureSet,
    plans: Vec<Plan>,
    columns: Vec<String>,
    /// Per column: 1 for context, 0 for the record's own.
    groups: Vec<u8>,
}

impl Encoder {
    pub fn new(set: FeatureSet) -> Result<Encoder, FeatureError> {
        let mut plans = Vec::with_capacity(set.features.len());
        let mut columns = Vec::new();
        let mut groups = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for def in &set.features {
            if !seen.insert(def.name.as_str()) {
                return Err(FeatureError::Duplicate(def.name.clone()));
            }
            let name = &def.name;
            let plan = match &def.transform {
                Transform::Chars { chars } => {
                    columns.extend(chars.chars().map(|c| format!("{name}:{c}")));
                    Plan::Chars(CharSet::new(chars))
                }
                Transform::Category { .. } => {
                    let vocab = set
                        .vocabularies
                        .get(name)
                        .ok_or_else(|| FeatureError::MissingVocabulary(name.clone()))?;
                    columns.extend(vocab.values.iter().map(|v| format!("{name}={v}")));
                    columns.push(format!("{name}=<other>"));
                    // Looked up by bounded key, as they were counted (a
                    // no-op for learned values, which are keys already).
                    let index = vocab
                        .values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (bounded_key(v).into_owned(), i))
                        .collect();
                    Plan::Category(index, vocab.values.len())
                }
                Transform::PortClass => {
                    columns.extend(
                        ["well_known", "registered", "dynamic"].map(|c| format!("{name}={c}")),
                    );
                    Plan::PortClass
                }
                Transform::Direction => {
                    columns.extend(Direction::ALL.map(|d| format!("{name}={}", d.name())));
                    Plan::Direction
                }
                Transform::Rarity { given } => {
                    if given.len() > MAX_GIVEN {
                        return Err(FeatureError::TooManyGiven(name.clone()));
                    }
                    let f = set
                        .frequencies
                        .get(name)
                        .ok_or_else(|| FeatureError::MissingFrequencies(name.clone()))?;
                    columns.push(name.clone());
                    Plan::Rarity(Box::new(RarityIndex::new(f, given.len())))
                }
                Transform::TextState => {
                    columns.extend(TEXT_STATES.map(|c| format!("{name}={c}")));
                    Plan::TextState
                }
                Transform::Interval { .. } => {
                    columns.push(name.clone());
                    Plan::Interval
                }
                Transform::Context(c) => {
                    let suffixes = c.column_suffixes();
                    columns.extend(suffixes.iter().map(|x| format!("{name}{x}")));
                    let slot = plans
                        .iter()
                        .filter(|p| matches!(p, Plan::Context(..)))
                        .count();
                    Plan::Context(Box::new(c.clone()), slot, suffixes.len())
                }
                scalar => {
                    columns.push(name.clone());
                    Plan::Scalar(scalar.clone())
                }
            };
            let g = u8::from(matches!(plan, Plan::Context(..)));
            groups.resize(columns.len(), g);
            plans.push(plan);
        }
        Ok(Encoder {
            set,
            plans,
            columns,
            groups,
        })
    }

    /// The module's declared table with the given vocabularies.
    pub fn feature_set(&self) -> &FeatureSet {
        &self.set
    }

    /// Column names, in vector order (`proto=tcp`, `history:S`, `duration`).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Per column, 1 for a context column and 0 for one of the record
    /// itself: KitNET's feature map keeps the two apart
    /// ([`crate::kitnet::KitNet::set_feature_groups`]), so a record's own
    /// oddity is not averaged away among context columns, nor the
    /// reverse.
    pub fn column_groups(&self) -> &[u8] {
        &self.groups
    }

    pub fn len(&self) -> usize {
        self.columns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Seconds of history the context needs before it describes the
    /// network rather than a cold start: the longest half-life of the
    /// table's context features (0 without any).
    pub fn context_warm_up(&self) -> f64 {
        self.set
            .features
            .iter()
            .filter_map(|d| match &d.transform {
                Transform::Context(c) => c.half_lives.iter().max().copied(),
                _ => None,
            })
            .max()
            .map_or(0.0, f64::from)
    }

    /// A fresh state for this encoder's context features (empty when it
    /// has none).
    pub fn context(&self) -> ContextState {
        let mut state = ContextState::default();
        for def in &self.set.features {
            if let Transform::Context(c) = &def.transform {
                state.defs.push((def.field.clone(), c.clone()));
                state.features.push(FeatureState::new(c));
            }
        }
        state
    }

    /// Fills `out` (of [`Encoder::len`] values) from one record, reading
    /// and then updating the stream's context state (made by
    /// [`Encoder::context`]). Every value is finite.
    pub fn encode(&self, record: &Record, context: &mut ContextState, out: &mut [f64]) {
        self.encode_with(record, &mut FieldCache::default(), context, out);
    }

    /// [`Encoder::encode`] for a stream of records: the column of each field
    /// is looked up once per schema (records of one file share theirs), not
    /// once per record.
    pub fn encode_with(
        &self,
        record: &Record,
        cache: &mut FieldCache,
        context: &mut ContextState,
        out: &mut [f64],
    ) {
        self.encode_inner(record, cache, Some(context), out, Part::All);
    }

    /// The part of [`Encoder::encode_with`] that reads and updates the
    /// context state, which must see the records in input order: the
    /// context features' columns of `out`, every other column zero.
    /// [`Encoder::encode_stateless`] of the same record, on any thread,
    /// completes `out` to the same bits as `encode_with`. So the one thread
    /// that must take the records in order does only this part (a replay's
    /// reading thread was its slowest stage).
    pub fn encode_context(
        &self,
        record: &Record,
        cache: &mut FieldCache,
        context: &mut ContextState,
        out: &mut [f64],
    ) {
        self.encode_inner(record, cache, Some(context), out, Part::Context);
    }

    /// Fills every column of `out` but the context features' (see
    /// [`Encoder::encode_context`]); reads no state.
    pub fn encode_stateless(&self, record: &Record, cache: &mut FieldCache, out: &mut [f64]) {
        self.encode_inner(record, cache, None, out, Part::Stateless);
    }

    /// Updates the context state with `record` as [`Encoder::encode_with`]
    /// does, without computing its other features: for records that only
    /// the context must see (those left out of a training sample). `scratch`
    /// is a vector of [`Encoder::len`] values, left with no meaning.
    pub fn update_context(
        &self,
        record: &Record,
        cache: &mut FieldCache,
        context: &mut ContextState,
        scratch: &mut [f64],
    ) {
        if !context.is_empty() {
            self.encode_inner(record, cache, Some(context), scratch, Part::ContextUpdate);
        }
    }

    fn encode_inner(
        &self,
        record: &Record,
        cache: &mut FieldCache,
        mut context: Option<&mut ContextState>,
        out: &mut [f64],
        part: Part,
    ) {
        debug_assert_eq!(out.len(), self.columns.len());
        let schema = record.schema();
        let cache = cache.get(schema, || SchemaColumns {
            schema: schema.clone(),
            columns: self
                .set
                .features
                .iter()
                .map(|d| schema.index_of(&d.field))
                .collect(),
            given: self
                .set
                .features
                .iter()
                .map(|d| match &d.transform {
                    Transform::Rarity { given } => {
                        given.iter().map(|g| schema.index_of(g)).collect()
                    }
                    Transform::Interval { to } => vec![schema.index_of(to)],
                    Transform::Context(c) => {
                        c.key_fields(&d.field).map(|f| schema.index_of(f)).collect()
                    }
                    _ => Vec::new(),
                })
                .collect(),
            orig_h: schema.index_of("id.orig_h"),
            resp_h: schema.index_of("id.resp_h"),
        });
        let at_column = |c: Option<usize>| c.map_or(&Value::Unset, |i| record.at(i));
        if part != Part::Stateless {
            out.fill(0.0);
        }
        let mut at = 0;
        for ((plan, column), given) in self.plans.iter().zip(&cache.columns).zip(&cache.given) {
            let (start, width) = (at, plan.width());
            at += width;
            let is_context = matches!(plan, Plan::Context(..));
            let computed = match part {
                Part::All => true,
                Part::Context | Part::ContextUpdate => is_context,
                Part::Stateless => !is_context,
            };
            if !computed {
                continue;
            }
            if part == Part::Stateless {
                // Its columns may hold another record's values.
                out[start..at].fill(0.0);
            }
            let at = start;
            let value = at_column(*column);
            match plan {
                Plan::Rarity(index) => {
                    let mut values = [&Value::Unset; MAX_GIVEN];
                    for (slot, c) in values.iter_mut().zip(given) {
                        *slot = at_column(*c);
                    }
                    out[at] = index.rarity(value, &values[..given.len()]);
                }
                Plan::TextState => {
                    let slot = match value {
                        Value::Unset => 0,
                        Value::Str(s) if s.is_empty() => 1,
                        Value::List(l) if l.is_empty() => 1,
                        _ => 2,
                    };
                    out[at + slot] = 1.0;
                }
                Plan::Scalar(Transform::Broadcast) => {
                    let nets = &self.set.local_nets;
                    out[at] = value
                        .as_addr()
                        .map_or(0.0, |a| f64::from(u8::from(nets.is_broadcast(a))));
                }
                Plan::Scalar(t) => {
                    out[at] = scalar(t, value);
                }
                Plan::Interval => {
                    let to = given.first().map_or(&Value::Unset, |c| at_column(*c));
                    let span = match (value.as_f64(), to.as_f64()) {
                        (Some(from), Some(to)) if to > from => (to - from).ln_1p(),
                        _ => 0.0,
                    };
                    out[at] = if span.is_finite() { span } else { 0.0 };
                }
                Plan::Context(def, slot, n) => {
                    let key = context_key(def, given.iter().map(|c| at_column(*c)));
                    // The update alone writes each over the last at the
                    // start of `out` (the offsets no longer matter).
                    let from = if part == Part::ContextUpdate { 0 } else { at };
                    let state = context
                        .as_deref_mut()
                        .and_then(|c| c.features.get_mut(*slot));
                    if let Some(state) = state {
                        state.apply(def, key, value, record.ts(), &mut out[from..from + n]);
                    }
                }
                Plan::Chars(chars) => {
                    if let Some(text) = value.as_str() {
                        chars.mark(text, &mut out[at..at + chars.chars.len()]);
                    }
                }
                Plan::Category(index, n) => {
                    let slot = category_slot(index, value).unwrap_or(*n);
                    out[at + slot] = 1.0;
                }
                Plan::PortClass => {
                    if let Some(p) = value.as_f64() {
                        let slot = if p < 1024.0 {
                            0
                        } else if p < 49152.0 {
                            1
                        } else {
                            2
                        };
                        out[at + slot] = 1.0;
                    }
                }
                Plan::Direction => {
                    let orig = at_column(cache.orig_h).as_addr();
                    let resp = at_column(cache.resp_h).as_addr();
                    if let (Some(o), Some(r)) = (orig, resp) {
                        let d = self.set.local_nets.direction(o, r);
                        let slot = Direction::ALL.iter().position(|x| *x == d).unwrap_or(0);
                        out[at + slot] = 1.0;
                    }
                }
            }
        }
        debug_assert_eq!(at, self.columns.len(), "a plan's width is its columns");
    }

    /// A new vector for [`Encoder::encode`].
    pub fn vector(&self) -> Vec<f64> {
        vec![0.0; self.columns.len()]
    }
}

/// The hash of a context key's values; `None` when one is unset. With
/// `domain`, the last is keyed by its registered domain.
fn context_key<'a>(
    def: &ContextDef,
    values: impl ExactSizeIterator<Item = &'a Value>,
) -> Option<u64> {
    use std::hash::Hasher;
    let mut h = rustc_hash::FxHasher::default();
    let n = values.len();
    for (i, v) in values.enumerate() {
        if !super::context::hash_value(&mut h, v, def.domain && i + 1 == n) {
            return None;
        }
    }
    Some(h.finish())
}

fn scalar(t: &Transform, value: &Value) -> f64 {
    let v = match t {
        Transform::Number => value.as_f64().unwrap_or(0.0),
        Transform::Log1p => value.as_f64().map_or(0.0, |x| x.max(0.0).ln_1p()),
        Transform::Flag => value.as_bool().map_or(0.5, |b| if b { 1.0 } else { 0.0 }),
        Transform::Present => match value {
            Value::Unset => 0.0,
            Value::Str(s) if s.is_empty() => 0.0,
            Value::List(l) if l.is_empty() => 0.0,
            _ => 1.0,
        },
        Transform::Length => match value {
            Value::Str(s) => (s.chars().count() as f64).ln_1p(),
            Value::List(l) => (l.len() as f64).ln_1p(),
            _ => 0.0,
        },
        Transform::Entropy => value.as_str().map_or(0.0, entropy),
        Transform::Labels => value.as_str().filter(|s| !s.is_empty()).map_or(0.0, |s| {
            (s.trim_end_matches('.').split('.').count() as f64).ln_1p()
        }),
        Transform::WellKnownPort => value
            .as_f64()
            .map_or(0.0, |p| f64::from(u8::from(p < 1024.0))),
        // Multi-column transforms never reach here.
        _ => 0.0,
    };
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// Shannon entropy in bits per character.
fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in text.bytes() {
        counts[b as usize] += 1;
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / n;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::super::vocab::MAX_VALUE_BYTES;
    use super::*;

    use crate::zeek::testutil::record;

    fn conn(proto: &str, history: Option<&str>, orig: &str, resp: &str) -> Record {
        record(&[
            ("id.orig_h", Value::Str(orig.into())),
            ("id.orig_p", Value::Count(50000)),
            ("id.resp_h", Value::Str(resp.into())),
            ("id.resp_p", Value::Count(443)),
            ("proto", Value::Str(proto.into())),
            ("orig_bytes", Value::Count(1000)),
            (
                "history",
                history.map_or(Value::Unset, |h| Value::Str(h.into())),
            ),
        ])
    }

    fn encoder() -> Encoder {
        let mut learner = VocabLearner::new(crate::tables::built_in(LogKind::CONN));
        for _ in 0..10 {
            learner.observe(&conn("tcp", Some("ShADadFf"), "10.0.0.1", "8.8.8.8"));
            learner.observe(&conn("udp", None, "10.0.0.1", "10.0.0.2"));
        }
        Encoder::new(learner.finish(LocalNets::default())).unwrap()
    }

    fn col(enc: &Encoder, v: &[f64], name: &str) -> f64 {
        v[enc
            .columns()
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name}"))]
    }

    /// A record that only updates the context leaves it as encoding it
    /// would: what the records after it read is the same.
    #[test]
    fn updating_the_context_alone_matches_encoding() {
        let enc = encoder();
        assert!(
            !enc.context().is_empty(),
            "conn's table has context features"
        );
        let at = |r: Record, t: f64| {
            let mut fields: Vec<(&str, Value)> = vec![("ts", Value::Real(t))];
            for name in ["id.orig_h", "id.resp_h", "id.resp_p", "proto", "orig_bytes"] {
                fields.push((name, r.get(name).clone()));
            }
            record(&fields)
        };
        let stream: Vec<Record> = (0..40)
            .map(|i| {
                let resp = if i % 3 == 0 { "8.8.8.8" } else { "10.0.0.2" };
                at(
                    conn("tcp", None, "10.0.0.1", resp),
                    1e9 + f64::from(i) * 7.5,
                )
            })
            .collect();
        let (mut full, mut partly) = (enc.context(), enc.context());
        let (mut cache, mut v, mut w) = (FieldCache::default(), enc.vector(), enc.vector());
        for (i, r) in stream.iter().enumerate() {
            enc.encode(r, &mut full, &mut v);
            if i % 2 == 0 {
                enc.update_context(r, &mut cache, &mut partly, &mut w);
            } else {
                enc.encode_with(r, &mut cache, &mut partly, &mut w);
                assert_eq!(v, w, "record {i}");
            }
        }
    }

    /// The context part (in order) and the stateless part (anywhere, into
    /// a vector another record's stateless part filled before) make the
    /// same bits as encoding whole, record after record.
    #[test]
    fn the_context_and_stateless_parts_make_the_whole_vector() {
        let enc = encoder();
        let stream: Vec<Record> = (0..40)
            .map(|i| {
                let resp = ["8.8.8.8", "10.0.0.2", "10.0.0.3"][i % 3];
                let proto = if i % 4 == 0 { "udp" } else { "tcp" };
                let r = conn(proto, Some("S"), "10.0.0.1", resp);
                let mut fields: Vec<(&str, Value)> =
                    vec![("ts", Value::Real(1e9 + i as f64 * 7.5))];
                for name in [
                    "id.orig_h",
                    "id.resp_h",
                    "id.resp_p",
                    "proto",
                    "conn_state",
                    "history",
                ] {
                    fields.push((name, r.get(name).clone()));
                }
                fields.push(("orig_bytes", Value::Count(i as u64 * 100)));
                record(&fields)
            })
            .collect();
        let (mut whole, mut ordered) = (enc.context(), enc.context());
        let mut cache = FieldCache::default();
        let mut other = FieldCache::default();
        let mut v = enc.vector();
        // Stale values everywhere: the parts must overwrite what they own.
        let mut w = vec![f64::NAN; enc.len()];
        let mut nonzero_context = false;
        for (i, r) in stream.iter().enumerate() {
            enc.encode_with(r, &mut cache, &mut whole, &mut v);
            enc.encode_context(r, &mut cache, &mut ordered, &mut w);
            let context_columns = w.iter().filter(|x| **x != 0.0).count();
            nonzero_context |= context_columns > 0;
            assert!(
                context_columns < enc.len(),
                "record {i}: the context part wrote only its own columns"
            );
            // Another record's stateless values first: overwritten.
            enc.encode_stateless(&stream[(i + 7) % stream.len()], &mut other, &mut w);
            enc.encode_stateless(r, &mut other, &mut w);
            assert_eq!(
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                w.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                "record {i}"
            );
        }
        assert!(nonzero_context, "the context features took values");
    }

    #[test]
    fn learned_categories_and_other() {
        let enc = encoder();
        let mut v = enc.vector();
        enc.encode(
            &conn("tcp", Some("S"), "10.0.0.1", "8.8.8.8"),
            &mut enc.context(),
            &mut v,
        );
        assert_eq!(col(&enc, &v, "proto=tcp"), 1.0);
        assert_eq!(col(&enc, &v, "proto=<other>"), 0.0);
        enc.encode(
            &conn("icmp", Some("S"), "10.0.0.1", "8.8.8.8"),
            &mut enc.context(),
            &mut v,
        );
        assert_eq!(col(&enc, &v, "proto=tcp"), 0.0);
        assert_eq!(
            col(&enc, &v, "proto=<other>"),
            1.0,
            "unseen value lands in other"
        );
    }

    #[test]
    fn history_flags_direction_and_ports() {
        let enc = encoder();
        let mut v = enc.vector();
        enc.encode(
            &conn("tcp", Some("ShAR"), "10.0.0.1", "8.8.8.8"),
            &mut enc.context(),
            &mut v,
        );
        assert_eq!(col(&enc, &v, "history:S"), 1.0);
        assert_eq!(col(&enc, &v, "history:R"), 1.0);
        assert_eq!(col(&enc, &v, "history:r"), 0.0);
        assert_eq!(col(&enc, &v, "traffic_direction=outbound"), 1.0);
        // Port 443 was every training record's: not rare at all.
        assert!(
            col(&enc, &v, "resp_p") < 0.05,
            "{}",
            col(&enc, &v, "resp_p")
        );
        assert_eq!(col(&enc, &v, "resp_p_class=well_known"), 1.0);
        assert!(
            !enc.feature_set()
                .features
                .iter()
                .any(|d| d.field == "id.orig_p"),
            "nothing of the source port alone: its range tells the OS"
        );
        assert!((col(&enc, &v, "orig_bytes") - 1001f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn absent_fields_are_defined_values_not_crashes() {
        let enc = encoder();
        let mut v = enc.vector();
        enc.encode(&record(&[]), &mut enc.context(), &mut v);
        assert!(v.iter().all(|x| x.is_finite()));
        assert_eq!(
            col(&enc, &v, "local_orig"),
            0.5,
            "unset bool is unknown, not false"
        );
        assert_eq!(col(&enc, &v, "duration"), 0.0);
        assert_eq!(
            col(&enc, &v, "service=<other>") + col(&enc, &v, "service=-"),
            1.0
        );
    }

    #[test]
    fn char_sets_match_str_contains() {
        for chars in ["ShADadFfRr^", "aé€b"] {
            let set = CharSet::new(chars);
            for text in ["", "ShAR", "héllo€", "^^", "dada"] {
                let mut out = vec![0.0; set.chars.len()];
                set.mark(text, &mut out);
                let want: Vec<f64> = chars
                    .chars()
                    .map(|c| if text.contains(c) { 1.0 } else { 0.0 })
                    .collect();
                assert_eq!(out, want, "{chars} in {text}");
            }
        }
    }

    #[test]
    fn count_categories_are_spelled_as_written() {
        let index: NameMap<usize> = ["0", "443", "18446744073709551615", "1.5"]
            .iter()
            .enumerate()
            .map(|(i, v)| (v.to_string(), i))
            .collect();
        for (v, want) in [
            (Value::Count(0), Some(0)),
            (Value::Count(443), Some(1)),
            (Value::Count(u64::MAX), Some(2)),
            (Value::Count(44), None),
            (Value::Real(1.5), Some(3)),
            (Value::List(vec![Value::Count(443)]), Some(1)),
        ] {
            assert_eq!(category_slot(&index, &v), want, "{v:?}");
        }
    }

    /// A value longer than the cap is learned and scored under one bounded
    /// key: the same long value is as common as it was, another one with
    /// the same first bytes is unseen.
    #[test]
    fn long_values_match_by_bounded_key() {
        let long = |tail: &str| format!("Mozilla/5.0 {}{tail}", "x".repeat(600));
        let http = |ua: &str| record(&[("user_agent", Value::Str(ua.into()))]);
        let mut learner = VocabLearner::new(crate::tables::built_in(LogKind::HTTP));
        for _ in 0..10 {
            learner.observe(&http(&long("a")));
        }
        let set = learner.finish(LocalNets::default());
        let kept = &set.frequencies["user_agent"].values;
        assert!(
            kept.iter().all(|(v, _)| v.len() <= MAX_VALUE_BYTES),
            "{kept:?}"
        );
        let enc = Encoder::new(set).unwrap();
        let mut v = enc.vector();
        enc.encode(&http(&long("a")), &mut enc.context(), &mut v);
        let same = col(&enc, &v, "user_agent");
        enc.encode(&http(&long("b")), &mut enc.context(), &mut v);
        let other = col(&enc, &v, "user_agent");
        assert!(same < 0.1 && other > 2.0, "{same} {other}");
    }

    /// Unset, empty and set are three different things.
    #[test]
    fn text_state_tells_empty_from_unset() {
        let enc = Encoder::new(
            VocabLearner::new(crate::tables::built_in(LogKind::HTTP)).finish(LocalNets::default()),
        )
        .unwrap();
        let mut v = enc.vector();
        for (value, want) in [
            (Value::Unset, "host_state=unset"),
            (Value::Str("".into()), "host_state=empty"),
            (Value::Str("example.com".into()), "host_state=set"),
        ] {
            enc.encode(&record(&[("host", value)]), &mut enc.context(), &mut v);
            for state in ["unset", "empty", "set"] {
                let c = format!("host_state={state}");
                assert_eq!(col(&enc, &v, &c), f64::from(u8::from(c == want)), "{c}");
            }
        }
    }

    #[test]
    fn a_rarity_without_frequencies_is_an_error() {
        let mut set =
            VocabLearner::new(crate::tables::built_in(LogKind::HTTP)).finish(LocalNets::default());
        set.frequencies.remove("user_agent");
        assert_eq!(
            Encoder::new(set).unwrap_err().to_string(),
            "feature `user_agent` is a rarity but the model has no training frequencies for it"
        );
    }

    #[test]
    fn an_interval_is_the_log_seconds_from_one_time_to_another() {
        let defs = vec![FeatureDef {
            name: "validity".into(),
            field: "not_before".into(),
            transform: Transform::Interval {
                to: "not_after".into(),
            },
        }];
        let enc = Encoder::new(
            VocabLearner::with_features(LogKind::new("x509").unwrap(), defs)
                .finish(LocalNets::default()),
        )
        .unwrap();
        let mut v = enc.vector();
        let day = 86_400.0;
        for (before, after, want) in [
            (
                Value::Real(1e9),
                Value::Real(1e9 + 90.0 * day),
                (90.0 * day).ln_1p(),
            ),
            (Value::Real(1e9), Value::Real(1e9 - day), 0.0),
            (Value::Unset, Value::Real(1e9), 0.0),
            (Value::Real(1e9), Value::Str("not a time".into()), 0.0),
        ] {
            enc.encode(
                &record(&[("not_before", before), ("not_after", after)]),
                &mut enc.context(),
                &mut v,
            );
            assert_eq!(v, [want]);
        }
        enc.encode(
            &record(&[("not_before", Value::Real(1.0))]),
            &mut enc.context(),
            &mut v,
        );
        assert_eq!(v, [0.0], "the later field missing from the log");
    }

    #[test]
    fn entropy_and_labels() {
        assert_eq!(entropy("aaaa"), 0.0);
        assert!((entropy("abcd") - 2.0).abs() < 1e-12);
        assert_eq!(
            scalar(&Transform::Labels, &Value::Str("www.example.com.".into())),
            4f64.ln()
        );
    }

    #[test]
    fn missing_vocabulary_is_an_error() {
        let mut set =
            VocabLearner::new(crate::tables::built_in(LogKind::DNS)).finish(LocalNets::default());
        set.vocabularies.remove("qtype");
        assert_eq!(
            Encoder::new(set).unwrap_err().to_string(),
            "feature `qtype` is a category but the model has no vocabulary for it"
        );
    }
}
