//! Records to scored records: a loaded model applied to one record at a time.
//!
//! A scored record carries what an analyst needs before opening the Zeek
//! log: the 5-tuple and its Community ID (to pivot to other tools), the
//! fields of its log type an analyst looks at first (`context`), what
//! tells it apart from other records of its uid (`trans_depth`,
//! `trans_id`), and for an anomaly which features made the score, each
//! with the value seen and what training saw.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::features::context::ContextStat;
use crate::features::{ContextState, Encoder, FieldCache, Transform};
use crate::kitnet::{BlockScratch, Explanation, KitNetError, Scratch};
use crate::log_kind::LogKind;
use crate::model::Model;
use crate::severity::{Judge, JudgeOptions, Severity};
use crate::zeek::{Record, Value};

/// How many features an anomaly's explanation names.
pub const TOP_FEATURES: usize = 5;

/// The longest text a context value keeps, in characters: the values are
/// the sender's (a URI, a user agent), so one record cannot blow up a line.
pub const MAX_CONTEXT_CHARS: usize = 512;
/// The most elements a list context value keeps (DNS answers).
pub const MAX_CONTEXT_ITEMS: usize = 16;
/// The most context fields one log type can select.
pub const MAX_CONTEXT_FIELDS: usize = 32;
/// The longest observed value an explanation quotes, in characters.
const MAX_OBSERVED_CHARS: usize = 96;

/// One scored log record, with Zeek's key names so it joins back to the log
/// by `uid` (and `ts`). Fields the record's log type does not have are left
/// out, never invented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<CompactString>,
    pub module: LogKind,
    #[serde(rename = "id.orig_h", skip_serializing_if = "Option::is_none")]
    pub orig_h: Option<IpAddr>,
    #[serde(rename = "id.orig_p", skip_serializing_if = "Option::is_none")]
    pub orig_p: Option<u16>,
    #[serde(rename = "id.resp_h", skip_serializing_if = "Option::is_none")]
    pub resp_h: Option<IpAddr>,
    #[serde(rename = "id.resp_p", skip_serializing_if = "Option::is_none")]
    pub resp_p: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proto: Option<CompactString>,
    /// HTTP: which request of the connection (Zeek's `trans_depth`); two
    /// requests of one connection share the uid, not this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trans_depth: Option<u64>,
    /// DNS: the query's transaction id (Zeek's `trans_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trans_id: Option<u64>,
    /// Community ID v1 of the 5-tuple ([`crate::community_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<crate::community_id::CommunityId>,
    /// The traffic's direction against the model's local networks:
    /// internal, outbound, inbound or external.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<CompactString>,
    pub score: f64,
    pub threshold: f64,
    pub anomaly: bool,
    /// For anomalies: how serious, from the probability below
    /// ([`crate::severity`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// For anomalies: the probability that normal traffic scores this
    /// high, by the model's calibration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_normal: Option<f64>,
    /// For anomalies: the features that contributed most to the
    /// reconstruction error, with their share of it, the value seen and
    /// what training saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_features: Option<Vec<Contribution>>,
    /// The selected fields of the record (`--context-fields`), as Zeek
    /// logged them, bounded ([`MAX_CONTEXT_CHARS`], [`MAX_CONTEXT_ITEMS`]).
    #[serde(default, skip_serializing_if = "Context::is_empty")]
    pub context: Context,
    /// The model that scored it (named by SIEM formats as the rule).
    #[serde(skip)]
    pub model: Option<Arc<ModelRef>>,
    /// Its line's hash, when the output's ids need it
    /// ([`RecordOptions::line_ids`]).
    #[serde(skip)]
    pub line_hash: Option<u64>,
}

impl ScoredRecord {
    /// A record with its score and nothing else: no connection, no
    /// explanation, no context. Callers set what they know on top of it.
    pub fn score_only(
        module: LogKind,
        ts: Option<f64>,
        score: f64,
        threshold: f64,
        anomaly: bool,
    ) -> ScoredRecord {
        ScoredRecord {
            ts,
            uid: None,
            module,
            orig_h: None,
            orig_p: None,
            resp_h: None,
            resp_p: None,
            proto: None,
            trans_depth: None,
            trans_id: None,
            community_id: None,
            direction: None,
            score,
            threshold,
            anomaly,
            severity: None,
            p_normal: None,
            top_features: None,
            context: Context::default(),
            model: None,
            line_hash: None,
        }
    }

    /// Writes the record as one JSON line, the output format of live and
    /// replay mode alike.
    pub fn write_json_line(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(512);
        self.write_json(&mut line)?;
        line.push(b'\n');
        out.write_all(&line)
    }

    /// Appends the record as one JSON object, the same bytes as
    /// `serde_json::to_writer(out, self)` (tested), written field by field
    /// into `out`: no serde map machinery, and the context, already JSON,
    /// copied as it is. Replay writes a million of these a few seconds.
    pub fn write_json(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut obj = JsonObject::start(out);
        obj.optional("ts", &self.ts)?;
        obj.optional("uid", &self.uid)?;
        obj.field("module", &self.module)?;
        obj.optional("id.orig_h", &self.orig_h)?;
        obj.optional("id.orig_p", &self.orig_p)?;
        obj.optional("id.resp_h", &self.resp_h)?;
        obj.optional("id.resp_p", &self.resp_p)?;
        obj.optional("proto", &self.proto)?;
        obj.optional("trans_depth", &self.trans_depth)?;
        obj.optional("trans_id", &self.trans_id)?;
        obj.optional("community_id", &self.community_id)?;
        obj.optional("direction", &self.direction)?;
        obj.field("score", &self.score)?;
        obj.field("threshold", &self.threshold)?;
        obj.field("anomaly", &self.anomaly)?;
        obj.optional("severity", &self.severity)?;
        obj.optional("p_normal", &self.p_normal)?;
        obj.optional("top_features", &self.top_features)?;
        if !self.context.is_empty() {
            obj.key("context");
            obj.out.extend_from_slice(&self.context.json);
        }
        obj.out.push(b'}');
        Ok(())
    }
}

/// A JSON object being written into a buffer, as serde_json writes one:
/// `{"key":value,...}` with no spaces.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn start(out: &'a mut Vec<u8>) -> JsonObject<'a> {
        out.push(b'{');
        JsonObject { out, first: true }
    }

    /// `"key":` (keys here are plain names that need no escaping).
    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn field(&mut self, key: &str, value: &(impl Serialize + ?Sized)) -> std::io::Result<()> {
        self.key(key);
        value.serialize(&mut serde_json::Serializer::new(&mut *self.out))?;
        Ok(())
    }

    /// The field when it is set; nothing when it is not (serde's
    /// `skip_serializing_if = "Option::is_none"`).
    fn optional(&mut self, key: &str, value: &Option<impl Serialize>) -> std::io::Result<()> {
        match value {
            Some(v) => self.field(key, v),
            None => Ok(()),
        }
    }
}

/// A record's context fields (`--context-fields`): one JSON object with
/// the fields in name order, what a `BTreeMap<String, serde_json::Value>`
/// of them serialises to, made by the scorer straight from the record
/// (one string per record rather than a map of strings and values), and
/// copied as it is into JSON output. Empty when the record has none.
///
/// The text is held in the value up to [`CONTEXT_INLINE`] bytes (a conn
/// record's default fields take 80-130), on the heap beyond. Why: a
/// context is made for every record written, on a scoring thread, and
/// dropped on the writing thread, and a heap buffer freed by another thread
/// than the one that made it is the allocator's slow path (glibc takes the
/// other thread's arena lock, and the memory goes back and forth between
/// the processors' caches).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// UTF-8 (serde_json's output, or empty).
    json: ContextBytes,
}

/// What a context holds without a heap allocation, in bytes of JSON.
pub const CONTEXT_INLINE: usize = 144;

type ContextBytes = smallvec::SmallVec<[u8; CONTEXT_INLINE]>;

impl Context {
    pub fn is_empty(&self) -> bool {
        self.json.is_empty()
    }

    /// The JSON object (empty text when there are no fields).
    pub fn as_json(&self) -> &str {
        std::str::from_utf8(&self.json).unwrap_or_default()
    }

    /// The fields as a map (for the formats that pick fields out).
    pub fn to_map(&self) -> BTreeMap<String, serde_json::Value> {
        if self.json.is_empty() {
            return BTreeMap::new();
        }
        // Our own serialisation of a map of JSON values: it reads back.
        serde_json::from_slice(&self.json).unwrap_or_default()
    }

    pub fn from_map(map: &BTreeMap<String, serde_json::Value>) -> Context {
        if map.is_empty() {
            return Context::default();
        }
        Context {
            json: ContextBytes::from_slice(&serde_json::to_vec(map).unwrap_or_default()),
        }
    }

    /// One field's value.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        if self.json.is_empty() {
            return None;
        }
        self.to_map().remove(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: String, value: serde_json::Value) {
        let mut map = self.to_map();
        map.insert(key, value);
        *self = Context::from_map(&map);
    }

    pub fn clear(&mut self) {
        self.json.clear();
    }
}

impl From<BTreeMap<String, serde_json::Value>> for Context {
    fn from(map: BTreeMap<String, serde_json::Value>) -> Context {
        Context::from_map(&map)
    }
}

impl Serialize for Context {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Context {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Context, D::Error> {
        BTreeMap::<String, serde_json::Value>::deserialize(deserializer).map(Context::from)
    }
}

/// The context fields of a scorer, in name order (the order of the JSON
/// object), each with its key as written (`"service":`).
struct ContextKeys {
    names: Vec<String>,
    keys: Vec<Vec<u8>>,
}

impl ContextKeys {
    fn new(fields: &[String]) -> ContextKeys {
        let mut names = fields.to_vec();
        names.sort();
        names.dedup();
        let keys = names
            .iter()
            .map(|n| {
                let mut k = serde_json::to_vec(n).unwrap_or_default();
                k.push(b':');
                k
            })
            .collect();
        ContextKeys { names, keys }
    }
}

/// The columns [`Scorer::finish`] reads, looked up once per schema.
#[derive(Clone, Default)]
struct OutputColumns {
    schema: Option<Arc<crate::zeek::Schema>>,
    ts: Option<usize>,
    uid: Option<usize>,
    orig_h: Option<usize>,
    orig_p: Option<usize>,
    resp_h: Option<usize>,
    resp_p: Option<usize>,
    proto: Option<usize>,
    ip_proto: Option<usize>,
    /// SSL's `version` and `established`: which transport it ran over.
    version: Option<usize>,
    established: Option<usize>,
    trans_depth: Option<usize>,
    trans_id: Option<usize>,
    /// Per [`ContextKeys`] name.
    context: Vec<Option<usize>>,
}

impl OutputColumns {
    fn resolve(&mut self, record: &Record, context: &ContextKeys) {
        let schema = record.schema();
        if self.schema.as_ref().is_some_and(|s| Arc::ptr_eq(s, schema)) {
            return;
        }
        let at = |name: &str| schema.index_of(name);
        *self = OutputColumns {
            schema: Some(schema.clone()),
            ts: at("ts"),
            uid: at("uid"),
            orig_h: at("id.orig_h"),
            orig_p: at("id.orig_p"),
            resp_h: at("id.resp_h"),
            resp_p: at("id.resp_p"),
            proto: at("proto"),
            ip_proto: at("ip_proto"),
            version: at("version"),
            established: at("established"),
            trans_depth: at("trans_depth"),
            trans_id: at("trans_id"),
            context: context.names.iter().map(|n| at(n)).collect(),
        };
    }
}

/// The value at a column looked up by [`OutputColumns`] (unset when the
/// schema has no such field).
fn at(record: &Record, column: Option<usize>) -> &Value {
    static UNSET: Value = Value::Unset;
    match column {
        Some(i) => record.at(i),
        None => &UNSET,
    }
}

/// Which model scored a record: SIEM formats name it as the rule that
/// fired, with the training time as its version (a retrained model is a
/// new version of the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub module: LogKind,
    /// When it was trained (RFC 3339).
    pub created: String,
}

/// One feature's part in an anomaly's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The feature (a table's name: `resp_p`, `orig_bytes`, `history`).
    pub feature: String,
    /// Its share of the reconstruction error, 0 to 1.
    pub share: f64,
    /// The record's value, as the feature read it (bounded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
    /// What training saw of it (`never seen in training`, `above the
    /// training maximum of 40 kB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
}

impl std::fmt::Display for Contribution {
    /// `resp_p=445: never seen in training (45%)`; without a share (a
    /// detection's evidence) `connections=72`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.feature)?;
        if let Some(o) = &self.observed {
            write!(f, "={o}")?;
        }
        if let Some(e) = &self.expected {
            write!(f, ": {e}")?;
        }
        if self.share > 0.0 {
            write!(f, " ({:.0}%)", self.share * 100.0)?;
        }
        Ok(())
    }
}

/// The fields each log type's records carry as context when
/// `--context-fields` is not given.
pub fn default_context(module: LogKind) -> &'static [&'static str] {
    match module.log_path() {
        "conn" => &[
            "service",
            "duration",
            "orig_bytes",
            "resp_bytes",
            "conn_state",
            "history",
        ],
        "dns" => &["query", "qtype_name", "rcode_name", "answers"],
        "http" => &["method", "host", "uri", "status_code", "user_agent"],
        "ssl" => &["version", "server_name", "ja3", "ja3s", "ja4", "ja4s"],
        "ssh" => &["client", "server", "auth_success"],
        // The file's own id and how to reach its connection and hosts:
        // `uid` and `id.*` in Zeek 5 on, `conn_uids`, `tx_hosts` and
        // `rx_hosts` before (a review's flagged files named nothing an
        // analyst could look up), and its hash for a lookup.
        "files" => &[
            "fuid",
            "source",
            "mime_type",
            "filename",
            "conn_uids",
            "tx_hosts",
            "rx_hosts",
            "sha1",
        ],
        _ => &[],
    }
}

/// The `--context-fields` setting: the per-log-type defaults
/// ([`default_context`]), none, or a list of `module.field` (with
/// `default` in the list: the defaults and these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFields {
    defaults: bool,
    extra: Vec<(String, String)>,
}

impl Default for ContextFields {
    fn default() -> ContextFields {
        ContextFields {
            defaults: true,
            extra: Vec::new(),
        }
    }
}

impl ContextFields {
    /// No context at all.
    pub fn none() -> ContextFields {
        ContextFields {
            defaults: false,
            extra: Vec::new(),
        }
    }

    /// Parses `default`, `none`, or `module.field,...` (optionally with
    /// `default` among them).
    pub fn parse(s: &str) -> Result<ContextFields, String> {
        let mut out = ContextFields::none();
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Err("empty: give default, none, or module.field,...".into());
        }
        for item in items {
            match item.to_ascii_lowercase().as_str() {
                "default" => out.defaults = true,
                "none" => {}
                _ => {
                    let Some((module, field)) = item.split_once('.') else {
                        return Err(format!(
                            "`{item}`: a context field is module.field (http.referrer, conn.local_orig), or default, or none"
                        ));
                    };
                    let module = LogKind::new(module).map_err(|e| format!("`{item}`: {e}"))?;
                    let field = field.trim();
                    let valid = !field.is_empty()
                        && field.len() <= 64
                        && field
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
                    if !valid {
                        return Err(format!("`{item}`: not a Zeek field name"));
                    }
                    let key = (module.log_path().to_owned(), field.to_owned());
                    if !out.extra.contains(&key) {
                        out.extra.push(key);
                    }
                }
            }
        }
        if s.split(',').any(|i| i.trim().eq_ignore_ascii_case("none"))
            && (out.defaults || !out.extra.is_empty())
        {
            return Err("`none` cannot be combined with other context fields".into());
        }
        Ok(out)
    }

    /// The fields `module`'s records carry, in order, at most
    /// [`MAX_CONTEXT_FIELDS`].
    pub fn for_module(&self, module: LogKind) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if self.defaults {
            out.extend(default_context(module).iter().map(|f| (*f).to_owned()));
        }
        for (m, f) in &self.extra {
            if m == module.log_path() && !out.contains(f) {
                out.push(f.clone());
            }
        }
        out.truncate(MAX_CONTEXT_FIELDS);
        out
    }
}

/// What a scorer adds to each record beyond the score.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordOptions {
    pub context: ContextFields,
    /// The runtime threshold and the severity an anomaly must reach.
    pub judge: JudgeOptions,
    /// The Community ID seed (0 unless the site uses another one
    /// everywhere).
    pub community_id_seed: u16,
    /// Each scored record carries its line's hash
    /// ([`Record::line_hash`]), which ECS's `event.id` is made from: set
    /// for `--format ecs` alone, the only writer that reads it.
    pub line_ids: bool,
}

/// Applies one model to one stream of records. The model is shared; the
/// context state (what the stream's hosts and pairs did before) is the
/// stream's own, so a clone is a second stream starting where this one is.
#[derive(Clone)]
pub struct Scorer {
    model: Arc<Model>,
    encoder: Arc<Encoder>,
    scratch: Scratch,
    vector: Vec<f64>,
    fields: FieldCache,
    context: ContextState,
    explainer: Arc<Explainer>,
    /// The record's own fields that go with it to the output.
    context_fields: Arc<ContextKeys>,
    /// Where the fields [`Scorer::finish`] reads are in the last schema.
    columns: OutputColumns,
    /// Only anomalies are written (`--only-anomalies`): a normal record's
    /// scored record carries its score and time alone.
    anomalies_only: bool,
    community_id_seed: u16,
    line_ids: bool,
    model_ref: Arc<ModelRef>,
    /// Flags and grades scores: the model's threshold, or the runtime one.
    judge: Arc<Judge>,
    /// For [`Scorer::score_block`]: the block's feature vectors, one after
    /// the other, and their scores.
    block: Vec<f64>,
    block_scores: Vec<f64>,
    block_scratch: BlockScratch,
}

impl Scorer {
    pub fn new(model: Model, encoder: Encoder) -> Scorer {
        let scratch = model.kitnet.scratch();
        let vector = encoder.vector();
        let context = encoder.context();
        let explainer = Arc::new(Explainer::new(&model, &encoder));
        let model_ref = Arc::new(ModelRef {
            module: model.module,
            created: model.created.clone(),
        });
        let context_fields = Arc::new(ContextKeys::new(
            &ContextFields::default().for_module(model.module),
        ));
        let judge = Arc::new(Judge::new(&model, &JudgeOptions::default()));
        Scorer {
            model: Arc::new(model),
            encoder: Arc::new(encoder),
            scratch,
            vector,
            fields: FieldCache::default(),
            context,
            explainer,
            context_fields,
            columns: OutputColumns::default(),
            anomalies_only: false,
            community_id_seed: 0,
            line_ids: false,
            model_ref,
            judge,
            block: Vec::new(),
            block_scores: Vec::new(),
            block_scratch: BlockScratch::default(),
        }
    }

    /// The same scorer with other record options (context fields,
    /// Community ID seed).
    pub fn with_options(mut self, opts: &RecordOptions) -> Scorer {
        self.context_fields = Arc::new(ContextKeys::new(
            &opts.context.for_module(self.model.module),
        ));
        self.columns = OutputColumns::default();
        self.community_id_seed = opts.community_id_seed;
        self.line_ids = opts.line_ids;
        self.judge = Arc::new(Judge::new(&self.model, &opts.judge));
        self
    }

    /// The same scorer for a stream of which only the anomalies are
    /// written (`--only-anomalies`): the scored record of a normal one
    /// is left without what only the output reads (addresses, Community
    /// ID, context fields), which is most of the cost of making it.
    pub fn anomalies_only(mut self, yes: bool) -> Scorer {
        self.anomalies_only = yes;
        self
    }

    /// The stream's context state, for the checkpoint.
    pub fn context(&self) -> &ContextState {
        &self.context
    }

    /// Continues from a saved or running context state, if it was made for
    /// this model's context features; false (and nothing changed) if not.
    pub fn resume_context(&mut self, state: ContextState) -> bool {
        let fits = state.fits(&self.context);
        if fits {
            self.context = state;
        }
        fits
    }

    /// Hands the context state over to `next` (a reloaded model), so a new
    /// model does not see the network as new; false when `next` has other
    /// context features and starts afresh.
    pub fn hand_over_context(self, next: &mut Scorer) -> bool {
        next.resume_context(self.context)
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn module(&self) -> LogKind {
        self.model.module
    }

    /// Updates the context with a record of history, scoring nothing.
    pub fn warm(&mut self, record: &Record) {
        if !self.context.is_empty() {
            self.encoder.encode_with(
                record,
                &mut self.fields,
                &mut self.context,
                &mut self.vector,
            );
        }
    }

    /// Scores one record. Only a record whose features are not finite
    /// fails, which the encoder rules out; the error is kept for safety.
    pub fn score(&mut self, record: &Record) -> Result<ScoredRecord, KitNetError> {
        self.encoder.encode_with(
            record,
            &mut self.fields,
            &mut self.context,
            &mut self.vector,
        );
        let score = self
            .model
            .kitnet
            .execute_with(&self.vector, &mut self.scratch)?;
        let vector = std::mem::take(&mut self.vector);
        let scored = self.finish(record, &vector, score, None);
        self.vector = vector;
        scored
    }

    /// [`Scorer::score`] of each of `records`, appended to `out` in order,
    /// with the same results: the feature vectors are scored together by
    /// `KitNet::execute_block` (bit-identical scores, several times the
    /// throughput), for replay and live mode's batches. Should the block
    /// refuse a vector (only a non-finite feature, which the encoder rules
    /// out), each record is scored alone so that only that one fails.
    pub fn score_block(
        &mut self,
        records: &[&Record],
        out: &mut Vec<Result<ScoredRecord, KitNetError>>,
    ) {
        let n = self.vector.len();
        let mut block = std::mem::take(&mut self.block);
        block.resize(records.len() * n, 0.0);
        for (record, v) in records.iter().zip(block.chunks_exact_mut(n.max(1))) {
            self.encoder
                .encode_with(record, &mut self.fields, &mut self.context, v);
        }
        self.score_encoded(records, &block, out);
        self.block = block;
    }

    /// [`Scorer::score_encoded`] of records whose context features were
    /// encoded elsewhere, in order ([`Encoder::encode_context`]): the rest
    /// of each vector is encoded here first.
    pub fn score_context_encoded(
        &mut self,
        records: &[&Record],
        block: &mut [f64],
        out: &mut Vec<Result<ScoredRecord, KitNetError>>,
    ) {
        let n = self.vector.len();
        for (record, v) in records.iter().zip(block.chunks_exact_mut(n.max(1))) {
            self.encoder.encode_stateless(record, &mut self.fields, v);
        }
        self.score_encoded(records, block, out);
    }

    /// [`Scorer::score_block`] of records whose feature vectors were made
    /// elsewhere ([`Scorer::encoder`], one after the other in `block`): a
    /// model with context features is encoded in order on one thread and
    /// scored here, on any.
    pub fn score_encoded(
        &mut self,
        records: &[&Record],
        block: &[f64],
        out: &mut Vec<Result<ScoredRecord, KitNetError>>,
    ) {
        let n = self.vector.len();
        debug_assert_eq!(block.len(), records.len() * n);
        let mut scores = std::mem::take(&mut self.block_scores);
        scores.resize(records.len(), 0.0);
        let model = Arc::clone(&self.model);
        match model
            .kitnet
            .execute_block(block, &mut scores, &mut self.block_scratch)
        {
            Ok(()) => {
                // The block's anomalies explained together (one at a time
                // cost about 10 us each: many anomalies, as in an attack,
                // slowed scoring several times).
                let explained = self.explain_anomalies(block, &scores);
                for (((record, v), &score), explanation) in records
                    .iter()
                    .zip(block.chunks_exact(n.max(1)))
                    .zip(&scores)
                    .zip(explained)
                {
                    let scored = self.finish(record, v, score, explanation);
                    out.push(scored);
                }
            }
            // Each record alone, from the vectors already made: encoding
            // again would feed the context twice.
            Err(_) => {
                for (i, record) in records.iter().enumerate() {
                    let Some(v) = block.get(i * n..(i + 1) * n) else {
                        out.push(Err(KitNetError::NotTrained("no feature vector".into())));
                        continue;
                    };
                    let scored = self
                        .model
                        .kitnet
                        .execute_with(v, &mut self.scratch)
                        .and_then(|score| self.finish(record, v, score, None));
                    out.push(scored);
                }
            }
        }
        self.block_scores = scores;
    }

    /// The encoder, for encoding on another thread ([`Scorer::score_encoded`]).
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// Takes the context state out (for a thread that encodes in order);
    /// [`Scorer::resume_context`] puts it back.
    pub fn take_context(&mut self) -> ContextState {
        let fresh = self.encoder.context();
        std::mem::replace(&mut self.context, fresh)
    }

    /// Each of a block's records' explanation: `None` for a record that
    /// is no anomaly, and for every one when the block pass refused them
    /// (they are then explained one at a time).
    fn explain_anomalies(&mut self, block: &[f64], scores: &[f64]) -> Vec<Option<Explanation>> {
        let n = self.vector.len().max(1);
        let anomaly: Vec<bool> = scores
            .iter()
            .map(|&s| self.judge.judge(s).is_some())
            .collect();
        let flagged: Vec<f64> = block
            .chunks_exact(n)
            .zip(&anomaly)
            .filter(|(_, &a)| a)
            .flat_map(|(v, _)| v.iter().copied())
            .collect();
        let mut made = match flagged.is_empty() {
            true => Vec::new(),
            false => (self.model.kitnet)
                .explain_block(&flagged, &mut self.block_scratch)
                .unwrap_or_default(),
        }
        .into_iter();
        anomaly
            .into_iter()
            .map(|a| if a { made.next() } else { None })
            .collect()
    }

    /// The scored record of `record`, whose feature vector `vector` scored
    /// `score`; an anomaly is explained (`explained`: its explanation if
    /// made already).
    fn finish(
        &mut self,
        record: &Record,
        vector: &[f64],
        score: f64,
        explained: Option<Explanation>,
    ) -> Result<ScoredRecord, KitNetError> {
        let kitnet = &self.model.kitnet;
        let threshold = self.judge.threshold;
        let judged = self.judge.judge(score);
        let anomaly = judged.is_some();
        let top_features = if anomaly {
            let explanation = match explained {
                Some(e) => e,
                None => kitnet.explain(vector)?,
            };
            Some(self.explainer.explain(
                &self.model,
                &self.encoder,
                record,
                vector,
                &explanation.contributions,
            ))
        } else {
            None
        };
        self.columns.resolve(record, &self.context_fields);
        let c = &self.columns;
        if self.anomalies_only && !anomaly {
            let ts = at(record, c.ts).as_f64();
            return Ok(ScoredRecord {
                model: Some(self.model_ref.clone()),
                ..ScoredRecord::score_only(self.model.module, ts, score, threshold, anomaly)
            });
        }
        let orig_h = at(record, c.orig_h).as_addr();
        let resp_h = at(record, c.resp_h).as_addr();
        let orig_p = port(at(record, c.orig_p));
        let resp_p = port(at(record, c.resp_p));
        let proto = at(record, c.proto).as_str().or_else(|| {
            let ssl = (at(record, c.version), at(record, c.established));
            implied_transport(self.model.module, ssl)
        });
        let seed = self.community_id_seed;
        let community_id = crate::community_id::for_zeek(
            seed, orig_h, orig_p, resp_h, resp_p, proto,
        )
        .or_else(|| {
            let ip_proto = at(record, c.ip_proto)
                .as_f64()
                .filter(|n| (0.0..=255.0).contains(n))
                .map(|n| n as u8);
            crate::community_id::for_portless(seed, orig_h, resp_h, proto, ip_proto)
        });
        let direction = match (orig_h, resp_h) {
            (Some(o), Some(r)) => Some(CompactString::const_new(
                self.model.features.local_nets.direction(o, r).name(),
            )),
            _ => None,
        };
        Ok(ScoredRecord {
            ts: at(record, c.ts).as_f64(),
            uid: at(record, c.uid)
                .as_str()
                .map(|u| bounded_cow(u, MAX_ID).into()),
            module: self.model.module,
            orig_h,
            orig_p,
            resp_h,
            resp_p,
            proto: proto.map(|p| bounded_cow(p, MAX_ID).into()),
            trans_depth: count(at(record, c.trans_depth)),
            trans_id: count(at(record, c.trans_id)),
            community_id,
            direction,
            score,
            threshold,
            anomaly,
            severity: judged.map(|j| j.0),
            p_normal: judged.map(|j| j.1),
            top_features,
            context: self.context_of(record),
            model: Some(self.model_ref.clone()),
            line_hash: self.line_ids.then(|| record.line_hash()),
        })
    }

    /// The record's context fields, written as JSON straight from its
    /// values (see [`Context`]).
    fn context_of(&self, record: &Record) -> Context {
        let keys = &self.context_fields;
        if keys.names.is_empty() {
            return Context::default();
        }
        let mut json = ContextBytes::new();
        json.push(b'{');
        for (key, &column) in keys.keys.iter().zip(&self.columns.context) {
            let before = json.len();
            if before > 1 {
                json.push(b',');
            }
            json.extend_from_slice(key);
            if !write_context_value(at(record, column), &mut json) {
                json.truncate(before);
            }
        }
        if json.len() == 1 {
            return Context::default();
        }
        json.push(b'}');
        // UTF-8: the keys and values are serde_json's.
        Context { json }
    }
}

/// The transport of a log type without a `proto` column, when its
/// protocol has one: HTTP, SSH and the like run over TCP. Without it an
/// HTTP, TLS or SSH record had no Community ID, and an analyst could not
/// pivot from it to the connection's other logs or to Suricata.
///
/// SSL (its `version` and `established`) runs over UDP as DTLS, and over
/// UDP as QUIC too, whose TLS 1.3 handshake Zeek sees begin and never see
/// finish (its end is encrypted): TLS 1.3 is taken as TCP only once
/// established, earlier versions (QUIC has only 1.3) always; a record
/// without a version, or a TLS 1.3 one not established, is left without:
/// a Community ID of the wrong transport names a flow that never was.
fn implied_transport(
    module: LogKind,
    (version, established): (&Value, &Value),
) -> Option<&'static str> {
    match module.log_path() {
        "ssl" => match version.as_str()? {
            v if v.starts_with("DTLS") => Some("udp"),
            v if v.starts_with("TLSv13") => {
                matches!(established, Value::Bool(true)).then_some("tcp")
            }
            _ => Some("tcp"),
        },
        "http" | "ssh" | "ftp" | "smtp" | "rdp" | "mysql" | "irc" | "socks" | "ntlm"
        | "smb_files" | "smb_mapping" | "dce_rpc" | "rfb" => Some("tcp"),
        "snmp" | "ntp" | "radius" => Some("udp"),
        _ => None,
    }
}

fn port(v: &Value) -> Option<u16> {
    v.as_f64()
        .filter(|p| (0.0..=65535.0).contains(p))
        .map(|p| p as u16)
}

fn count(v: &Value) -> Option<u64> {
    match v {
        Value::Count(c) => Some(*c),
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::Real(r) if *r >= 0.0 && *r < 1e18 && r.fract() == 0.0 => Some(*r as u64),
        _ => None,
    }
}

/// Characters of a record's `uid` and `proto` written out. Zeek's are a
/// few dozen at most; a forged log's 200 KB uid made 400 KB lines (it is
/// written twice in ECS), and a SIEM's keyword field refuses the whole
/// document past 32 KB.
const MAX_ID: usize = 128;

/// `text` cut to `max` characters, with `…` where it was cut.
pub fn bounded(text: &str, max: usize) -> String {
    bounded_cow(text, max).into_owned()
}

/// [`bounded`], borrowing `text` when it is short enough.
fn bounded_cow(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    // Fewer bytes than `max` are fewer characters too.
    if text.len() <= max {
        return text.into();
    }
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((end, _)) => format!("{}…", &text[..end]).into(),
    }
}

/// Appends `v` as JSON, the same bytes as `context_value(v)` serialised;
/// false, with nothing appended, when it has no context value.
fn write_context_value(v: &Value, out: &mut ContextBytes) -> bool {
    use serde::Serializer as _;
    let mut ser = serde_json::Serializer::new(&mut *out);
    let written = match v {
        Value::Unset => return false,
        Value::Bool(b) => ser.serialize_bool(*b),
        Value::Count(c) => ser.serialize_u64(*c),
        Value::Int(i) => ser.serialize_i64(*i),
        Value::Real(r) if r.is_finite() => ser.serialize_f64(*r),
        Value::Real(_) => return false,
        // As text (`to_string`), as serde writes an address for JSON.
        Value::Addr(a) => a.serialize(&mut ser),
        Value::Str(s) => ser.serialize_str(&bounded_cow(s, MAX_CONTEXT_CHARS)),
        Value::List(_) => match context_value(v) {
            Some(j) => j.serialize(&mut ser),
            None => return false,
        },
    };
    written.is_ok()
}

/// A context value as JSON, bounded; `None` for an unset field (left out,
/// never invented) or a number that is not finite.
fn context_value(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::Unset => return None,
        Value::Bool(b) => J::Bool(*b),
        Value::Count(c) => J::from(*c),
        Value::Int(i) => J::from(*i),
        Value::Real(r) => J::from(serde_json::Number::from_f64(*r)?),
        Value::Addr(a) => J::String(a.to_string()),
        Value::Str(s) => J::String(bounded(s, MAX_CONTEXT_CHARS)),
        Value::List(l) => J::Array(
            l.iter()
                .take(MAX_CONTEXT_ITEMS)
                .map(|e| match e {
                    Value::List(_) => J::String(bounded(&e.to_string(), MAX_CONTEXT_CHARS)),
                    e => context_value(e).unwrap_or(J::Null),
                })
                .collect(),
        ),
    })
}

/// Which columns each feature of a model fills, so an anomaly is
/// explained per feature (with the record's own value) rather than per
/// column: the column with the largest error is often a value the record
/// does not have. A connection to port 445, in a model whose `resp_p` was
/// one column per learned port, was explained as `resp_p=2222 45%`: the
/// model expected the dominant port 2222 (an SSH honeypot's) and saw 0 in
/// that column; the record's own port fell in `resp_p=<other>`.
struct Explainer {
    /// Per feature of the table, in order: its first column and width.
    spans: Vec<(usize, usize)>,
    /// Per column, the training minimum and maximum (KitNET's
    /// normalisation range).
    ranges: Vec<Option<(f64, f64)>>,
}

impl Explainer {
    fn new(model: &Model, encoder: &Encoder) -> Explainer {
        let set = encoder.feature_set();
        let mut spans = Vec::with_capacity(set.features.len());
        let mut at = 0;
        for def in &set.features {
            let width = match &def.transform {
                Transform::Chars { chars } => chars.chars().count(),
                Transform::Category { .. } => set
                    .vocabularies
                    .get(&def.name)
                    .map_or(1, |v| v.values.len() + 1),
                Transform::PortClass | Transform::TextState => 3,
                Transform::Direction => 4,
                Transform::Context(c) => c.column_suffixes().len(),
                _ => 1,
            };
            spans.push((at, width));
            at += width;
        }
        if at != encoder.len() {
            // The layout is the encoder's; should it ever differ, columns
            // are explained one by one rather than mislabelled.
            spans.clear();
        }
        Explainer {
            spans,
            ranges: model.kitnet.input_ranges(),
        }
    }

    /// The [`TOP_FEATURES`] features with the largest shares: the first,
    /// and the others of 1% or more (one of less, printed `(0%)`, made
    /// nothing of the score an analyst should look at).
    fn explain(
        &self,
        model: &Model,
        encoder: &Encoder,
        record: &Record,
        vector: &[f64],
        shares: &[f64],
    ) -> Vec<Contribution> {
        let round = |s: f64| (s * 1e4).round() / 1e4;
        let shown = |rank: usize, share: f64| share > 0.0 && (rank == 0 || share >= 0.01);
        if self.spans.is_empty() {
            let mut v: Vec<(usize, f64)> = shares.iter().copied().enumerate().collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            return v
                .into_iter()
                .take(TOP_FEATURES)
                .enumerate()
                .filter(|(rank, (_, s))| shown(*rank, *s))
                .map(|(_, (i, share))| Contribution {
                    feature: model
                        .columns
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("#{i}")),
                    share: round(share),
                    observed: None,
                    expected: None,
                })
                .collect();
        }
        let mut per: Vec<(usize, f64)> = self
            .spans
            .iter()
            .enumerate()
            .map(|(f, &(at, n))| (f, shares.get(at..at + n).map_or(0.0, |s| s.iter().sum())))
            .collect();
        per.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let set = encoder.feature_set();
        per.into_iter()
            .take(TOP_FEATURES)
            .enumerate()
            .filter(|(rank, (_, s))| shown(*rank, *s))
            .map(|(_, (f, share))| {
                let def = &set.features[f];
                let (at, n) = self.spans[f];
                let value = record.get(&def.field);
                let columns = Columns {
                    x: &vector[at..at + n],
                    ranges: &self.ranges
                        [at.min(self.ranges.len())..(at + n).min(self.ranges.len())],
                    names: &model.columns
                        [at.min(model.columns.len())..(at + n).min(model.columns.len())],
                };
                let given: Vec<&Value> = match &def.transform {
                    Transform::Rarity { given } => given.iter().map(|g| record.get(g)).collect(),
                    _ => Vec::new(),
                };
                let (observed, expected) = describe(set, def, value, &given, &columns);
                Contribution {
                    feature: def.name.clone(),
                    share: round(share),
                    observed: observed.map(|o| bounded(&o, MAX_OBSERVED_CHARS)),
                    expected,
                }
            })
            .collect()
    }
}

/// One feature's columns: the record's encoded values, their training
/// ranges and names.
struct Columns<'a> {
    x: &'a [f64],
    ranges: &'a [Option<(f64, f64)>],
    names: &'a [String],
}

impl Columns<'_> {
    /// Whether column `i` was ever above 0 in training (`None`: unknown).
    fn ever_set(&self, i: usize) -> Option<bool> {
        self.ranges
            .get(i)
            .copied()
            .flatten()
            .map(|(_, hi)| hi > 0.0)
    }

    /// Whether column `i` was always above 0 in training.
    fn always_set(&self, i: usize) -> Option<bool> {
        self.ranges
            .get(i)
            .copied()
            .flatten()
            .map(|(lo, _)| lo > 0.0)
    }

    /// The name of column `i` after the feature's own (`history:S` -> `S`).
    fn label(&self, i: usize) -> &str {
        let name = self.names.get(i).map_or("", String::as_str);
        name.split_once(['=', ':']).map_or(name, |(_, l)| l)
    }
}

/// The text a category or rarity counted a value under.
fn spelled(value: &Value) -> String {
    match value {
        Value::Unset => "-".into(),
        Value::Str(s) => s.to_string(),
        Value::List(l) => l.first().map_or_else(|| "-".into(), spelled),
        other => other.to_string(),
    }
}

fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "0%".into();
    }
    let p = n as f64 * 100.0 / total as f64;
    if p >= 1.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.2}%")
    }
}

/// What the record had and what training saw, for one feature.
fn describe(
    set: &crate::features::FeatureSet,
    def: &crate::features::FeatureDef,
    value: &Value,
    given_values: &[&Value],
    c: &Columns<'_>,
) -> (Option<String>, Option<String>) {
    let never = "never seen in training".to_owned();
    match &def.transform {
        Transform::Category { .. } => {
            let observed = spelled(value);
            let Some(vocab) = set.vocabularies.get(&def.name) else {
                return (Some(observed), None);
            };
            let total = vocab.counts.iter().sum::<u64>() + vocab.other;
            let expected = match vocab.values.iter().position(|v| *v == observed) {
                Some(i) => format!(
                    "{} of training records",
                    percent(vocab.counts.get(i).copied().unwrap_or(0), total)
                ),
                None if vocab.other == 0 => never,
                None => format!(
                    "not among the {} values learned in training (the others together: {} of records)",
                    vocab.values.len(),
                    percent(vocab.other, total)
                ),
            };
            (Some(observed), Some(expected))
        }
        Transform::Rarity { given } => {
            let observed = spelled(value);
            let Some(f) = set.frequencies.get(&def.name) else {
                return (Some(observed), None);
            };
            let found = f.values.iter().find(|(v, _)| *v == observed);
            let listed: u64 = f.values.iter().map(|(_, n)| n).sum();
            let mut expected = match found {
                Some((_, n)) => format!("{} of training records", percent(*n, f.total)),
                None if listed >= f.total => never,
                None => "not among the values frequent in training".into(),
            };
            if !given.is_empty() && given_values.len() == given.len() {
                // The value's frequency among the training records with
                // the same values of the given fields.
                let context: Vec<String> = given_values.iter().map(|v| spelled(v)).collect();
                let with = given
                    .iter()
                    .zip(&context)
                    .map(|(g, v)| format!("{g}={}", bounded(v, 32)))
                    .collect::<Vec<_>>()
                    .join(" ");
                let part = match f.contexts.iter().find(|c| c.context == context) {
                    Some(c) => match c.values.iter().find(|(v, _)| *v == observed) {
                        Some((_, n)) => {
                            format!("{} of training records with {with}", percent(*n, c.total))
                        }
                        None => {
                            format!("never with {with} in training ({} records had it)", c.total)
                        }
                    },
                    None => format!("{with} not among the contexts frequent in training"),
                };
                expected = format!("{part}; overall {expected}");
            }
            (Some(observed), Some(expected))
        }
        Transform::Chars { .. } => {
            let observed = value.as_str().map(str::to_owned);
            let unseen: Vec<&str> = (0..c.x.len())
                .filter(|&i| c.x[i] > 0.0 && c.ever_set(i) == Some(false))
                .map(|i| c.label(i))
                .collect();
            let missing: Vec<&str> = (0..c.x.len())
                .filter(|&i| c.x[i] == 0.0 && c.always_set(i) == Some(true))
                .map(|i| c.label(i))
                .collect();
            let expected = if !unseen.is_empty() {
                format!("{} never seen in training", unseen.join(" "))
            } else if !missing.is_empty() {
                format!("{} always present in training", missing.join(" "))
            } else {
                "a combination unusual in training".into()
            };
            (observed, Some(expected))
        }
        Transform::Context(cdef) => {
            // The column furthest outside what training saw, in units of
            // its training range (the first one when all are inside).
            let excursion = |i: usize| {
                let x = c.x[i];
                c.ranges.get(i).copied().flatten().map_or(0.0, |(lo, hi)| {
                    (x - hi).max(lo - x).max(0.0) / (hi - lo).max(1e-9)
                })
            };
            let i = (0..c.x.len())
                .max_by(|a, b| excursion(*a).total_cmp(&excursion(*b)).then(b.cmp(a)))
                .unwrap_or(0);
            let Some(&x) = c.x.get(i) else {
                return (None, None);
            };
            let name = c.names.get(i).map_or("", String::as_str);
            let label = name.strip_prefix(def.name.as_str()).unwrap_or(name);
            let label = label.strip_prefix(':').unwrap_or(label);
            let shown = |v: f64| context_quantity(cdef.stat, &def.field, label, v);
            let observed = format!("{label} {}", shown(x));
            let expected = c.ranges.get(i).copied().flatten().map(|(lo, hi)| {
                if x > hi {
                    format!("above the training maximum of {}", shown(hi))
                } else if x < lo {
                    format!("below the training minimum of {}", shown(lo))
                } else {
                    format!(
                        "within the training range {} to {}, unusual with the rest of the record",
                        shown(lo),
                        shown(hi)
                    )
                }
            });
            (Some(observed), expected)
        }
        Transform::PortClass | Transform::Direction | Transform::TextState => {
            let Some(i) = c.x.iter().position(|v| *v > 0.0) else {
                return (Some("-".into()), None);
            };
            let observed = c.label(i).to_owned();
            let expected = match c.ever_set(i) {
                Some(false) => never,
                Some(true) => "seen in training, unusual with the rest of the record".into(),
                None => return (Some(observed), None),
            };
            (Some(observed), Some(expected))
        }
        t => {
            let Some(&x) = c.x.first() else {
                return (None, None);
            };
            let shown = |v: f64| quantity(&def.name, t, v);
            let observed = match t {
                Transform::Flag
                | Transform::Present
                | Transform::Broadcast
                | Transform::WellKnownPort => {
                    if value.is_unset() && matches!(t, Transform::Flag) {
                        "-".to_owned()
                    } else {
                        shown(x)
                    }
                }
                _ => shown(x),
            };
            let two_valued = matches!(
                t,
                Transform::Flag
                    | Transform::Present
                    | Transform::Broadcast
                    | Transform::WellKnownPort
            );
            let expected = c.ranges.first().copied().flatten().map(|(lo, hi)| {
                if two_valued && lo < hi {
                    format!("both {} and {} seen in training", shown(lo), shown(hi))
                } else if two_valued {
                    format!("always {} in training", shown(lo))
                } else if x > hi {
                    format!("above the training maximum of {}", shown(hi))
                } else if x < lo {
                    format!("below the training minimum of {}", shown(lo))
                } else if lo == hi {
                    format!("always {} in training", shown(lo))
                } else {
                    format!(
                        "within the training range {} to {}, unusual with the rest of the record",
                        shown(lo),
                        shown(hi)
                    )
                }
            });
            (Some(observed), expected)
        }
    }
}

/// An encoded value back in the field's units: log-scaled counts undone,
/// bytes in kB/MB, durations in seconds, flags as T/F.
fn quantity(name: &str, t: &Transform, v: f64) -> String {
    let raw = match t {
        Transform::Log1p | Transform::Length | Transform::Labels | Transform::Interval { .. } => {
            v.exp_m1()
        }
        _ => v,
    };
    match t {
        Transform::Flag | Transform::Broadcast | Transform::WellKnownPort => {
            if v >= 0.75 {
                "T".into()
            } else if v <= 0.25 {
                "F".into()
            } else {
                "-".into()
            }
        }
        Transform::Present => if v > 0.5 { "set" } else { "unset" }.into(),
        Transform::Length => {
            let n = raw.round();
            format!("{} character{}", number(n), if n == 1.0 { "" } else { "s" })
        }
        Transform::Labels => format!("{} labels", number(raw.round())),
        Transform::Entropy => format!("{} bits per character", number(raw)),
        Transform::Interval { .. } => seconds(raw),
        _ if name.contains("bytes") => bytes(raw),
        _ if name.contains("duration") => seconds(raw),
        _ => number(raw),
    }
}

/// Up to three significant digits, no trailing zeros.
pub(crate) fn number(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    let digits = (2 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A size for people: `40 kB`, `1.23 MB`, `512 B`, `1.5 TB`.
pub(crate) fn bytes(v: f64) -> String {
    let v = v.max(0.0).round();
    for (unit, scale) in [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)] {
        if v >= scale {
            return format!("{} {unit}", number(v / scale));
        }
    }
    format!("{} B", number(v))
}

fn seconds(v: f64) -> String {
    format!("{} s", number(v.max(0.0)))
}

/// A stretch of time for people: `45 s`, `12 min`, `24 h`, `3.5 d`.
pub(crate) fn span(v: f64) -> String {
    let v = v.max(0.0);
    match v {
        v if v < 120.0 => seconds(v),
        v if v < 2.0 * 3600.0 => format!("{} min", number(v / 60.0)),
        v if v < 2.0 * 86_400.0 => format!("{} h", number(v / 3600.0)),
        v => format!("{} d", number(v / 86_400.0)),
    }
}

/// A context column's value (`label`: `gap`, `@1h:mean`, `@10m:weight`,
/// ...) in its own units. The encoder keeps gaps, their mean, the damped
/// counts and the mean of a damped field as `ln(1 + v)`, for the model;
/// shown as they are, a gap of a day read "gap 11.4", which an analyst
/// takes for seconds.
fn context_quantity(stat: ContextStat, field: &str, label: &str, x: f64) -> String {
    let column = label.rsplit(':').next().unwrap_or(label);
    match (stat, column) {
        (ContextStat::Gap, "gap" | "mean") => span(x.exp_m1()),
        (_, "weight") => format!("{} records (damped)", number(x.exp_m1())),
        (ContextStat::Distinct, "count") => format!("{} new values (damped)", number(x.exp_m1())),
        (ContextStat::Damped, "mean") => {
            let typical = x.exp_m1();
            if field.contains("bytes") {
                format!("{} (geometric)", bytes(typical))
            } else if field.contains("duration") {
                format!("{} (geometric)", span(typical))
            } else {
                format!("{} (geometric)", number(typical))
            }
        }
        _ => number(x),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::{FeatureDef, FeatureSet, Vocabulary};
    use crate::zeek::Schema;

    fn record(fields: &[(&str, Value)]) -> Record {
        let schema = Arc::new(Schema::new(
            fields.iter().map(|(n, _)| (*n).to_owned()).collect(),
        ));
        Record::new(schema, fields.iter().map(|(_, v)| v.clone()).collect(), 1)
    }

    /// Context columns are explained in their own units, not as the
    /// logarithms the model sees (the review read "pair_gap=gap 11.4:
    /// above the training maximum of 10.9" for a day against 15 hours).
    #[test]
    fn context_columns_are_explained_in_their_own_units() {
        // (statistic, field, column, value in its units, as said)
        let logged = [
            (ContextStat::Gap, "uid", "gap", 86_279.0_f64, "24 h"),
            (ContextStat::Gap, "uid", "gap", 54_000.0, "15 h"),
            (ContextStat::Gap, "uid", "@1h:mean", 300.0, "5 min"),
            (ContextStat::Gap, "uid", "@1h:mean", 45.0, "45 s"),
            (ContextStat::Gap, "uid", "@1d:mean", 400_000.0, "4.63 d"),
            (
                ContextStat::Gap,
                "uid",
                "@10m:weight",
                5.0,
                "5 records (damped)",
            ),
            (
                ContextStat::Distinct,
                "id.resp_h",
                "@1h:count",
                12.0,
                "12 new values (damped)",
            ),
            (
                ContextStat::Damped,
                "orig_bytes",
                "@1h:mean",
                40_000.0,
                "40 kB (geometric)",
            ),
        ];
        for (stat, field, label, v, said) in logged {
            assert_eq!(context_quantity(stat, field, label, v.ln_1p()), said);
        }
        // Numbers without a unit stay as they are: a ratio, a flag.
        let plain = [
            (ContextStat::Gap, "@1h:cv", 0.25, "0.25"),
            (ContextStat::FirstSeen, "new", 1.0, "1"),
        ];
        for (stat, label, v, said) in plain {
            assert_eq!(context_quantity(stat, "uid", label, v), said);
        }
    }

    fn empty_set() -> FeatureSet {
        FeatureSet {
            module: LogKind::CONN,
            features: Vec::new(),
            vocabularies: BTreeMap::new(),
            frequencies: BTreeMap::new(),
            local_nets: crate::features::LocalNets::default(),
            local_nets_origin: Default::default(),
            table_origin: None,
        }
    }

    fn columns<'a>(
        x: &'a [f64],
        ranges: &'a [Option<(f64, f64)>],
        names: &'a [String],
    ) -> Columns<'a> {
        Columns { x, ranges, names }
    }

    /// The issue's case: a port the model never saw, in a one-hot
    /// feature whose largest column error is the dominant port's. The
    /// explanation names the record's own port and says it is new.
    #[test]
    fn a_one_hot_feature_is_explained_by_the_records_own_value() {
        let mut set = empty_set();
        set.features.push(FeatureDef {
            name: "resp_p".into(),
            field: "id.resp_p".into(),
            transform: Transform::Category { max_values: 8 },
        });
        set.vocabularies.insert(
            "resp_p".into(),
            Vocabulary {
                values: vec!["2222".into(), "22".into()],
                counts: vec![900, 100],
                other: 0,
            },
        );
        let names: Vec<String> = ["resp_p=2222", "resp_p=22", "resp_p=<other>"]
            .map(String::from)
            .to_vec();
        // The encoded record: port 445 is in <other>.
        let x = [0.0, 0.0, 1.0];
        let ranges = [Some((0.0, 1.0)), Some((0.0, 1.0)), Some((0.0, 0.0))];
        let (observed, expected) = describe(
            &set,
            &set.features[0],
            &Value::Count(445),
            &[],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(observed.as_deref(), Some("445"));
        assert_eq!(expected.as_deref(), Some("never seen in training"));
        // A learned value says how common it was.
        let x = [0.0, 1.0, 0.0];
        let (observed, expected) = describe(
            &set,
            &set.features[0],
            &Value::Count(22),
            &[],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(observed.as_deref(), Some("22"));
        assert_eq!(expected.as_deref(), Some("10% of training records"));
    }

    #[test]
    fn a_rarity_says_whether_the_value_was_seen() {
        let mut set = empty_set();
        set.features.push(FeatureDef {
            name: "resp_p".into(),
            field: "id.resp_p".into(),
            transform: Transform::Rarity { given: Vec::new() },
        });
        set.frequencies.insert(
            "resp_p".into(),
            crate::features::Frequencies {
                total: 1000,
                values: vec![("2222".into(), 900), ("22".into(), 100)],
                contexts: Vec::new(),
            },
        );
        let names = vec!["resp_p".to_owned()];
        let x = [7.6];
        let ranges = [Some((0.1, 2.3))];
        let (observed, expected) = describe(
            &set,
            &set.features[0],
            &Value::Count(445),
            &[],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(observed.as_deref(), Some("445"));
        assert_eq!(expected.as_deref(), Some("never seen in training"));
    }

    /// A conditional rarity says how the value fared with the record's
    /// own context (conn_state given the port and protocol).
    #[test]
    fn a_conditional_rarity_names_the_context() {
        let mut set = empty_set();
        set.features.push(FeatureDef {
            name: "conn_state_given_resp_p".into(),
            field: "conn_state".into(),
            transform: Transform::Rarity {
                given: vec!["id.resp_p".into(), "proto".into()],
            },
        });
        set.frequencies.insert(
            "conn_state_given_resp_p".into(),
            crate::features::Frequencies {
                total: 1000,
                values: vec![("SF".into(), 900), ("S0".into(), 100)],
                contexts: vec![crate::features::ContextCounts {
                    context: vec!["53".into(), "udp".into()],
                    total: 600,
                    values: vec![("SF".into(), 600)],
                }],
            },
        );
        let names = vec!["conn_state_given_resp_p".to_owned()];
        let (x, ranges) = ([5.0], [Some((0.0, 2.0))]);
        let port = Value::Count(53);
        let udp = Value::Str("udp".into());
        let (_, expected) = describe(
            &set,
            &set.features[0],
            &Value::Str("S0".into()),
            &[&port, &udp],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(
            expected.as_deref(),
            Some("never with id.resp_p=53 proto=udp in training (600 records had it); overall 10% of training records")
        );
    }

    #[test]
    fn a_size_is_compared_with_the_training_range_in_its_units() {
        let set = empty_set();
        let def = FeatureDef {
            name: "orig_bytes".into(),
            field: "orig_bytes".into(),
            transform: Transform::Log1p,
        };
        let names = vec!["orig_bytes".to_owned()];
        let x = [1_200_000f64.ln_1p()];
        let ranges = [Some((0.0, 40_000f64.ln_1p()))];
        let (observed, expected) = describe(
            &set,
            &def,
            &Value::Count(1_200_000),
            &[],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(observed.as_deref(), Some("1.2 MB"));
        assert_eq!(
            expected.as_deref(),
            Some("above the training maximum of 40 kB")
        );
    }

    #[test]
    fn a_flag_says_what_training_saw() {
        let set = empty_set();
        let def = FeatureDef {
            name: "broadcast".into(),
            field: "id.resp_h".into(),
            transform: Transform::Broadcast,
        };
        let names = vec!["broadcast".to_owned()];
        let describe_with = |x: f64, range: (f64, f64)| {
            let (xs, ranges) = ([x], [Some(range)]);
            describe(
                &set,
                &def,
                &Value::Unset,
                &[],
                &columns(&xs, &ranges, &names),
            )
        };
        assert_eq!(
            describe_with(0.0, (0.0, 1.0)),
            (
                Some("F".into()),
                Some("both F and T seen in training".into())
            )
        );
        assert_eq!(
            describe_with(1.0, (0.0, 0.0)),
            (Some("T".into()), Some("always F in training".into()))
        );
    }

    #[test]
    fn history_letters_never_seen_are_named() {
        let set = empty_set();
        let def = FeatureDef {
            name: "history".into(),
            field: "history".into(),
            transform: Transform::Chars {
                chars: "ShR".into(),
            },
        };
        let names: Vec<String> = ["history:S", "history:h", "history:R"]
            .map(String::from)
            .to_vec();
        let x = [1.0, 0.0, 1.0];
        let ranges = [Some((1.0, 1.0)), Some((0.0, 1.0)), Some((0.0, 0.0))];
        let (observed, expected) = describe(
            &set,
            &def,
            &Value::Str("SR".into()),
            &[],
            &columns(&x, &ranges, &names),
        );
        assert_eq!(observed.as_deref(), Some("SR"));
        assert_eq!(expected.as_deref(), Some("R never seen in training"));
    }

    /// On a real model: the explainer's spans cover the encoder's columns
    /// exactly, and an anomaly is explained by features of the table,
    /// each with what was seen.
    #[test]
    fn a_real_model_is_explained_per_feature() {
        let mut model = crate::model::tests::ssh_model().clone();
        let encoder = model.validate().unwrap();
        let explainer = Explainer::new(&model, &encoder);
        assert_eq!(explainer.spans.len(), encoder.feature_set().features.len());
        let (at, n) = *explainer.spans.last().unwrap();
        assert_eq!(at + n, encoder.len());
        let names: Vec<String> = encoder
            .feature_set()
            .features
            .iter()
            .map(|d| d.name.clone())
            .collect();
        model.threshold.value = -1.0;
        let mut scorer = Scorer::new(model, encoder);
        let text = crate::model::tests::ssh_log_text();
        let mut parser = crate::zeek::LineParser::new("ssh.log", Some("ssh"));
        let mut explained = 0;
        for (i, line) in text.lines().enumerate() {
            if let Ok(crate::zeek::Parsed::Record(r)) =
                parser.parse_line(line.as_bytes(), i as u64 + 1)
            {
                let s = scorer.score(&r).unwrap();
                assert!(s.anomaly);
                let top = s.top_features.unwrap();
                assert!(!top.is_empty());
                for (rank, c) in top.iter().enumerate() {
                    assert!(names.contains(&c.feature), "{c:?}");
                    assert!(c.observed.is_some(), "{c:?}");
                    // None that made under 1% of the score (printed
                    // `(0%)`), but the first.
                    assert!(rank == 0 || c.share >= 0.01, "{top:?}");
                }
                assert!(s.context.contains_key("client") || s.context.contains_key("server"));
                explained += 1;
            }
        }
        assert!(explained > 10);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(bytes(40_000.0), "40 kB");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1_234_567.0), "1.23 MB");
        assert_eq!(seconds(0.0123), "0.0123 s");
        assert_eq!(number(f64::NAN), "-");
        assert_eq!(
            Contribution {
                feature: "resp_p".into(),
                share: 0.45,
                observed: Some("445".into()),
                expected: Some("never seen in training".into()),
            }
            .to_string(),
            "resp_p=445: never seen in training (45%)"
        );
    }

    #[test]
    fn context_fields_parse() {
        let d = ContextFields::parse("default").unwrap();
        assert_eq!(d, ContextFields::default());
        assert_eq!(
            d.for_module(LogKind::DNS),
            ["query", "qtype_name", "rcode_name", "answers"]
        );
        let none = ContextFields::parse("none").unwrap();
        assert!(none.for_module(LogKind::HTTP).is_empty());
        let some = ContextFields::parse("http.referrer, HTTP.host,conn.local_orig").unwrap();
        assert_eq!(some.for_module(LogKind::HTTP), ["referrer", "host"]);
        assert_eq!(some.for_module(LogKind::CONN), ["local_orig"]);
        assert!(some.for_module(LogKind::DNS).is_empty());
        let plus = ContextFields::parse("default,http.referrer").unwrap();
        assert_eq!(plus.for_module(LogKind::HTTP).last().unwrap(), "referrer");
        for bad in [
            "",
            "referrer",
            "http.",
            "http.a b",
            "none,http.host",
            "ht tp.host",
        ] {
            assert!(ContextFields::parse(bad).is_err(), "{bad}");
        }
    }

    /// The old construction of a record's context: a map of
    /// [`context_value`]s, which the JSON output serialised.
    fn context_map(record: &Record, fields: &[String]) -> BTreeMap<String, serde_json::Value> {
        fields
            .iter()
            .filter_map(|f| Some((f.clone(), context_value(record.get(f))?)))
            .collect()
    }

    /// The context written straight from the values is the serialisation
    /// of the map of their JSON values, byte for byte, for every kind of
    /// value; and reads back as that map.
    #[test]
    fn context_values_are_written_as_serde_json_writes_them() {
        let long = format!("{}é{}", "x".repeat(500), "ü".repeat(40));
        let values = [
            Value::Unset,
            Value::Bool(true),
            Value::Bool(false),
            Value::Count(0),
            Value::Count(u64::MAX),
            Value::Int(-42),
            Value::Int(i64::MIN),
            Value::Real(0.0),
            Value::Real(-0.0),
            Value::Real(1.0),
            Value::Real(0.000064),
            Value::Real(1713484795.943239),
            Value::Real(1e300),
            Value::Real(5e-324),
            Value::Real(f64::NAN),
            Value::Real(f64::INFINITY),
            Value::Addr("10.0.0.1".parse().unwrap()),
            Value::Addr("2001:db8::1".parse().unwrap()),
            Value::Str("".into()),
            Value::Str("SF".into()),
            Value::Str("quote\" back\\slash \u{1}\n\t".into()),
            Value::Str(crate::escape::tests::HOSTILE.concat().into()),
            Value::Str(long.as_str().into()),
            Value::Str("é".repeat(MAX_CONTEXT_CHARS).into()),
            Value::Str("é".repeat(MAX_CONTEXT_CHARS + 1).into()),
            Value::List(Vec::new()),
            Value::List(vec![
                Value::Str("a".into()),
                Value::Unset,
                Value::Real(f64::NAN),
                Value::List(vec![Value::Count(1), Value::Count(2)]),
            ]),
            Value::List((0..40).map(Value::Count).collect()),
        ];
        for v in &values {
            let mut fast = ContextBytes::new();
            let written = write_context_value(v, &mut fast);
            match context_value(v) {
                Some(j) => {
                    assert!(written, "{v:?}");
                    assert_eq!(&fast[..], serde_json::to_vec(&j).unwrap(), "{v:?}");
                }
                None => assert!(!written && fast.is_empty(), "{v:?}"),
            }
        }
        // Whole records: every value under its own field name, in
        // another order than the names sort in.
        let names: Vec<String> = (0..values.len()).rev().map(|i| format!("f{i}")).collect();
        let fields: Vec<(&str, Value)> = names
            .iter()
            .map(String::as_str)
            .zip(values.iter().rev().cloned())
            .collect();
        let r = record(&fields);
        let model = crate::model::tests::ssh_model().clone();
        let encoder = model.validate().unwrap();
        let mut scorer = Scorer::new(model, encoder);
        scorer.context_fields = Arc::new(ContextKeys::new(&names));
        scorer.columns.resolve(&r, &scorer.context_fields);
        let context = scorer.context_of(&r);
        let map = context_map(&r, &names);
        assert_eq!(context.as_json(), serde_json::to_string(&map).unwrap());
        assert_eq!(context.to_map(), map);
        assert_eq!(context, Context::from_map(&map));
        assert!(
            context.json.spilled(),
            "this one is longer than the inline room"
        );
        // A short one, held in the value: the same.
        let short: Vec<String> = vec!["f0".into(), "f1".into()];
        let r = record(&[("f1", Value::Count(7)), ("f0", Value::Str("é\"x".into()))]);
        scorer.context_fields = Arc::new(ContextKeys::new(&short));
        scorer.columns.resolve(&r, &scorer.context_fields);
        let context = scorer.context_of(&r);
        assert!(!context.json.spilled());
        assert_eq!(context.as_json(), r#"{"f0":"é\"x","f1":7}"#);
        assert_eq!(context, Context::from_map(&context_map(&r, &short)));
        scorer.context_fields = Arc::new(ContextKeys::new(&names));
        // No field set: no context.
        let r = record(&[("f1", Value::Unset), ("f2", Value::Real(f64::NAN))]);
        scorer.columns.resolve(&r, &scorer.context_fields);
        assert!(scorer.context_of(&r).is_empty());
    }

    /// The JSON writer writes what serde writes for the record, for
    /// normal records, anomalies (with explanations) and records missing
    /// fields; the context is the map the old construction made.
    #[test]
    fn records_are_written_as_serde_json_writes_them() {
        let fields: Vec<String> = [
            "client",
            "server",
            "auth_success",
            "ts",
            "uid",
            "id.orig_h",
            "id.resp_p",
            "auth_attempts",
            "direction",
            "version",
            "nope",
        ]
        .map(String::from)
        .to_vec();
        let spec = fields
            .iter()
            .map(|f| format!("ssh.{f}"))
            .collect::<Vec<_>>()
            .join(",");
        let opts = RecordOptions {
            context: ContextFields::parse(&spec).unwrap(),
            ..RecordOptions::default()
        };
        let text = crate::model::tests::ssh_log_text();
        let mut checked = 0;
        for threshold in [None, Some(-1.0)] {
            let mut model = crate::model::tests::ssh_model().clone();
            let encoder = model.validate().unwrap();
            if let Some(t) = threshold {
                model.threshold.value = t;
            }
            let mut scorer = Scorer::new(model, encoder).with_options(&opts);
            let mut parser = crate::zeek::LineParser::new("ssh.log", Some("ssh"));
            for (i, line) in text.lines().enumerate() {
                let Ok(crate::zeek::Parsed::Record(r)) =
                    parser.parse_line(line.as_bytes(), i as u64 + 1)
                else {
                    continue;
                };
                let s = scorer.score(&r).unwrap();
                assert_eq!(s.context.to_map(), context_map(&r, &fields));
                let mut fast = Vec::new();
                s.write_json(&mut fast).unwrap();
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    serde_json::to_string(&s).unwrap()
                );
                let mut bare = s.clone();
                bare.ts = None;
                bare.uid = None;
                bare.orig_h = None;
                bare.resp_p = None;
                bare.proto = None;
                bare.community_id = None;
                bare.trans_depth = Some(3);
                bare.trans_id = Some(0);
                bare.score = f64::NAN;
                bare.context.clear();
                let mut fast = Vec::new();
                bare.write_json(&mut fast).unwrap();
                assert_eq!(fast, serde_json::to_vec(&bare).unwrap());
                let mut line = Vec::new();
                s.write_json(&mut line).unwrap();
                let back: ScoredRecord = serde_json::from_slice(&line).unwrap();
                assert_eq!(back.context, s.context);
                checked += 1;
            }
        }
        assert!(checked > 40);
    }

    /// Hostile context values are kept bounded (escaping is the formats').
    #[test]
    fn context_values_are_bounded() {
        let long = "A".repeat(10_000);
        let v = context_value(&Value::Str(long.into())).unwrap();
        assert_eq!(v.as_str().unwrap().chars().count(), MAX_CONTEXT_CHARS + 1);
        let list = Value::List(
            (0..100)
                .map(|i| Value::Str(format!("a{i}").into()))
                .collect(),
        );
        assert_eq!(
            context_value(&list).unwrap().as_array().unwrap().len(),
            MAX_CONTEXT_ITEMS
        );
        assert_eq!(context_value(&Value::Unset), None);
        assert_eq!(context_value(&Value::Real(f64::INFINITY)), None);
        let r = record(&[
            ("trans_depth", Value::Count(2)),
            ("trans_id", Value::Int(-1)),
        ]);
        assert_eq!(count(r.get("trans_depth")), Some(2));
        assert_eq!(count(r.get("trans_id")), None);
    }

    /// A forged log's huge `uid` or `proto` comes out cut.
    #[test]
    fn a_record_s_uid_and_proto_are_bounded() {
        let model = crate::model::tests::ssh_model().clone();
        let encoder = model.validate().unwrap();
        let mut scorer = Scorer::new(model, encoder);
        let text = crate::model::tests::ssh_log_text();
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        let header: Vec<&str> = text.lines().take_while(|l| l.starts_with('#')).collect();
        let fields: Vec<&str> = header
            .iter()
            .find_map(|h| h.strip_prefix("#fields\t"))
            .unwrap()
            .split('\t')
            .collect();
        let uid_at = fields.iter().position(|f| *f == "uid").unwrap();
        let mut values: Vec<String> = line.split('\t').map(str::to_owned).collect();
        values[uid_at] = "C".repeat(200_000);
        let mut parser = crate::zeek::LineParser::new("ssh.log", Some("ssh"));
        for h in &header {
            let _ = parser.parse_line(h.as_bytes(), 0);
        }
        let Ok(crate::zeek::Parsed::Record(r)) = parser.parse_line(values.join("\t").as_bytes(), 9)
        else {
            panic!("the line parses");
        };
        let s = scorer.score(&r).unwrap();
        let uid = s.uid.unwrap();
        assert_eq!(uid.chars().count(), MAX_ID + 1);
        assert!(uid.ends_with('…'));
    }
}
