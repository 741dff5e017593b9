//! Records to scored records: a loaded model applied to one record at a time.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::features::{Encoder, FieldCache};
use crate::kitnet::{BlockScratch, KitNetError, Scratch};
use crate::log_kind::LogKind;
use crate::model::Model;
use crate::zeek::{Record, Value};

/// How many features an anomaly's explanation names.
pub const TOP_FEATURES: usize = 5;

/// One scored log record, with Zeek's key names so it joins back to the log
/// by `uid` (and `ts`). Fields the record's log type does not have are left
/// out, never invented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
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
    pub proto: Option<String>,
    pub score: f64,
    pub threshold: f64,
    pub anomaly: bool,
    /// For anomalies: the columns that contributed most to the
    /// reconstruction error, with their share of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_features: Option<Vec<Contribution>>,
}

impl ScoredRecord {
    /// Writes the record as one JSON line, the output format of live and
    /// replay mode alike.
    pub fn write_json_line(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        out.write_all(b"\n")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub feature: String,
    pub share: f64,
}

/// Applies one model. Cheap to clone per thread (the model is shared).
#[derive(Clone)]
pub struct Scorer {
    model: Arc<Model>,
    encoder: Arc<Encoder>,
    scratch: Scratch,
    vector: Vec<f64>,
    fields: FieldCache,
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
        Scorer {
            model: Arc::new(model),
            encoder: Arc::new(encoder),
            scratch,
            vector,
            fields: FieldCache::default(),
            block: Vec::new(),
            block_scores: Vec::new(),
            block_scratch: BlockScratch::default(),
        }
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn module(&self) -> LogKind {
        self.model.module
    }

    /// Scores one record. Only a record whose features are not finite
    /// fails, which the encoder rules out; the error is kept for safety.
    pub fn score(&mut self, record: &Record) -> Result<ScoredRecord, KitNetError> {
        self.encoder
            .encode_with(record, &mut self.fields, &mut self.vector);
        let score = self
            .model
            .kitnet
            .execute_with(&self.vector, &mut self.scratch)?;
        finish(&self.model, record, &self.vector, score)
    }

    /// [`Scorer::score`] of each of `records`, appended to `out` in order,
    /// with the same results: the feature vectors are scored together by
    /// `KitNet::execute_block` (bit-identical scores, several times the
    /// throughput), for replay. Should the block refuse a vector (only a
    /// non-finite feature, which the encoder rules out), each record is
    /// scored alone so that only that one fails.
    pub fn score_block(
        &mut self,
        records: &[&Record],
        out: &mut Vec<Result<ScoredRecord, KitNetError>>,
    ) {
        let n = self.vector.len();
        self.block.resize(records.len() * n, 0.0);
        for (record, v) in records.iter().zip(self.block.chunks_exact_mut(n.max(1))) {
            self.encoder.encode_with(record, &mut self.fields, v);
        }
        self.block_scores.resize(records.len(), 0.0);
        let kitnet = &self.model.kitnet;
        match kitnet.execute_block(&self.block, &mut self.block_scores, &mut self.block_scratch) {
            Ok(()) => out.extend(
                records
                    .iter()
                    .zip(self.block.chunks_exact(n.max(1)))
                    .zip(&self.block_scores)
                    .map(|((record, v), &score)| finish(&self.model, record, v, score)),
            ),
            Err(_) => out.extend(records.iter().map(|r| self.score(r))),
        }
    }
}

/// The scored record of `record`, whose feature vector `vector` scored
/// `score`; an anomaly is explained.
fn finish(
    model: &Model,
    record: &Record,
    vector: &[f64],
    score: f64,
) -> Result<ScoredRecord, KitNetError> {
    let kitnet = &model.kitnet;
    let threshold = model.threshold.value;
    let anomaly = score > threshold;
    let top_features = if anomaly {
        let explanation = kitnet.explain(vector)?;
        Some(
            explanation
                .top(TOP_FEATURES)
                .into_iter()
                .filter(|(_, share)| *share > 0.0)
                .map(|(i, share)| Contribution {
                    feature: model
                        .columns
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("#{i}")),
                    share: (share * 1e4).round() / 1e4,
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(ScoredRecord {
        ts: record.ts(),
        uid: record.get("uid").as_str().map(str::to_owned),
        module: model.module,
        orig_h: record.get("id.orig_h").as_addr(),
        orig_p: port(record.get("id.orig_p")),
        resp_h: record.get("id.resp_h").as_addr(),
        resp_p: port(record.get("id.resp_p")),
        proto: record.get("proto").as_str().map(str::to_owned),
        score,
        threshold,
        anomaly,
        top_features,
    })
}

fn port(v: &Value) -> Option<u16> {
    v.as_f64()
        .filter(|p| (0.0..=65535.0).contains(p))
        .map(|p| p as u16)
}
