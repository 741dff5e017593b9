//! Records to scored records: a loaded model applied to one record at a time.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::features::{ContextState, Encoder, FieldCache};
use crate::kitnet::{KitNetError, Scratch};
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
}

impl Scorer {
    pub fn new(model: Model, encoder: Encoder) -> Scorer {
        let scratch = model.kitnet.scratch();
        let vector = encoder.vector();
        let context = encoder.context();
        Scorer {
            model: Arc::new(model),
            encoder: Arc::new(encoder),
            scratch,
            vector,
            fields: FieldCache::default(),
            context,
        }
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
        let kitnet = &self.model.kitnet;
        let score = kitnet.execute_with(&self.vector, &mut self.scratch)?;
        let threshold = self.model.threshold.value;
        let anomaly = score > threshold;
        let top_features = if anomaly {
            let explanation = kitnet.explain(&self.vector)?;
            Some(
                explanation
                    .top(TOP_FEATURES)
                    .into_iter()
                    .filter(|(_, share)| *share > 0.0)
                    .map(|(i, share)| Contribution {
                        feature: self
                            .model
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
            module: self.model.module,
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
}

fn port(v: &Value) -> Option<u16> {
    v.as_f64()
        .filter(|p| (0.0..=65535.0).contains(p))
        .map(|p| p as u16)
}
