//! What a feature table declares: for each feature, which field becomes
//! which columns. The tables themselves are data (`tables/*.toml`, read by
//! [`crate::tables`]); adding a log type is a new file, not a new code path.
//! Adding a transform is a new variant here, its name in
//! [`Transform::NAMES`] and [`Transform::from_parts`], and its plan in the
//! encoder.
//!
//! A trained model stores the table it was trained with, so a model keeps
//! working after the tables change.

use serde::{Deserialize, Serialize};

use super::context::{self, ContextDef, ContextStat};

/// What a field becomes. Every transform maps an unset or absent field to a
/// defined value, because every field is missing in some Zeek version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transform {
    /// The number itself; unset is 0.
    Number,
    /// `ln(1 + x)` of a count, size or duration (negatives count as 0):
    /// byte counts span nine orders of magnitude. Unset is 0.
    Log1p,
    /// A boolean: T is 1, F is 0, unset is 0.5 (unknown lies between).
    Flag,
    /// 1 when the field is set (and not empty), else 0.
    Present,
    /// `ln(1 + n)` of a text's length in characters, or of a list's number
    /// of elements.
    Length,
    /// Shannon entropy of a text, in bits per character (random-looking
    /// names, tunnelled data).
    Entropy,
    /// `ln(1 + n)` of the number of dot-separated labels of a name.
    Labels,
    /// One column per character: 1 when the character occurs in the text
    /// (Zeek's `history` and `ssl_history`, where case tells the side).
    Chars { chars: String },
    /// One column per value learned from the training data (the most
    /// frequent, up to `max_values`), plus one for every other value. Unset
    /// counts as the value `-`; for a list, its first element is the value.
    Category { max_values: usize },
    /// The class of a port: well-known (< 1024), registered (< 49152) or
    /// dynamic; three columns, all 0 when unset.
    PortClass,
    /// Traffic direction from `id.orig_h` and `id.resp_h` against the local
    /// networks: internal, outbound, inbound, external (four columns, all 0
    /// when an address is missing).
    Direction,
    /// 1 when the field's address is a broadcast or multicast destination
    /// ([`crate::features::LocalNets::is_broadcast`]).
    Broadcast,
    /// How rare the value is in training: `-ln` of its smoothed frequency,
    /// one column (see [`super::rarity`]); unseen values are the rarest.
    /// With `given` fields (at most two), the frequency is the value's
    /// among the training records with the same values of those fields.
    Rarity {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        given: Vec<String>,
    },
    /// Whether a text is unset, empty or set: three columns. Empty is not
    /// unset: a request whose Host header is present but empty (RITA's
    /// planted beacon) is rare where both "no header" and "a host" are
    /// common.
    TextState,
    /// `ln(1 + seconds)` from the field's time to the time in field `to`
    /// (a certificate's validity from `not_valid_before` to
    /// `not_valid_after`); 0 when either is unset or `to` is earlier.
    Interval { to: String },
    /// 1 when a port is below 1024. For the source port this is what does
    /// not depend on the client's operating system: Windows picks
    /// ephemeral ports from 49152, Linux from 32768, so a class boundary
    /// at 49152 tells the OS, not the traffic.
    WellKnownPort,
    /// State over time per key, read before the record updates it: damped
    /// statistics, gaps, fan-out, first sight (see [`super::context`]).
    /// The transform's name in a table is the statistic's
    /// (`damped`, `gap`, `distinct`, `first_seen`).
    Context(ContextDef),
}

/// The parameters a table may give a transform (`max_values = 8`).
#[derive(Debug, Clone, Default)]
pub struct TransformParams {
    pub max_values: Option<usize>,
    pub chars: Option<String>,
    pub given: Option<Vec<String>>,
    pub to: Option<String>,
    pub by: Option<Vec<String>>,
    pub half_lives: Option<Vec<u32>>,
    pub domain: Option<bool>,
    pub max_keys: Option<usize>,
    pub min_gap: Option<u32>,
}

/// The most values a category keeps columns for.
pub const MAX_CATEGORY_VALUES: usize = 1000;

impl Transform {
    /// The transforms' names in a table, as serialized in a model.
    pub const NAMES: [&'static str; 20] = [
        "number",
        "log1p",
        "flag",
        "present",
        "length",
        "entropy",
        "labels",
        "chars",
        "category",
        "port_class",
        "direction",
        "broadcast",
        "rarity",
        "text_state",
        "well_known_port",
        "interval",
        "damped",
        "gap",
        "distinct",
        "first_seen",
    ];

    /// The transform `name` with its parameters; the error names the
    /// parameter (`max_values`) and says what is wrong with it, or names
    /// the transforms there are.
    pub fn from_parts(name: &str, p: TransformParams) -> Result<Transform, (&'static str, String)> {
        let t = match name {
            "number" => Transform::Number,
            "log1p" => Transform::Log1p,
            "flag" => Transform::Flag,
            "present" => Transform::Present,
            "length" => Transform::Length,
            "entropy" => Transform::Entropy,
            "labels" => Transform::Labels,
            "port_class" => Transform::PortClass,
            "direction" => Transform::Direction,
            "broadcast" => Transform::Broadcast,
            "text_state" => Transform::TextState,
            "well_known_port" => Transform::WellKnownPort,
            "chars" => {
                let chars = p.chars.clone().ok_or((
                    "chars",
                    "is required by `chars`: the characters, one column each".to_owned(),
                ))?;
                let mut seen = std::collections::BTreeSet::new();
                if chars.is_empty()
                    || !chars.chars().all(|c| seen.insert(c))
                    || chars.chars().count() > 128
                {
                    return Err(("chars", "must be 1 to 128 different characters".to_owned()));
                }
                Transform::Chars { chars }
            }
            "category" => {
                let max_values = p.max_values.ok_or((
                    "max_values",
                    "is required by `category`: how many learned values get a column".to_owned(),
                ))?;
                if !(1..=MAX_CATEGORY_VALUES).contains(&max_values) {
                    return Err(("max_values", format!("must be 1 to {MAX_CATEGORY_VALUES}")));
                }
                Transform::Category { max_values }
            }
            "interval" => {
                let to = p.to.clone().unwrap_or_default();
                if to.trim().is_empty() {
                    return Err((
                        "to",
                        "is required by `interval`: the field of the later time".to_owned(),
                    ));
                }
                Transform::Interval {
                    to: to.trim().to_owned(),
                }
            }
            stat if ContextStat::from_name(stat).is_some() => {
                Transform::Context(context_def(stat, &p)?)
            }
            "rarity" => {
                let given = p.given.clone().unwrap_or_default();
                if given.len() > crate::features::MAX_GIVEN {
                    return Err((
                        "given",
                        format!("names at most {} fields", crate::features::MAX_GIVEN),
                    ));
                }
                if given.iter().any(|g| g.trim().is_empty()) {
                    return Err(("given", "names an empty field".to_owned()));
                }
                Transform::Rarity { given }
            }
            other => {
                return Err((
                    "transform",
                    format!(
                        "unknown transform `{other}`: choose from {}",
                        Transform::NAMES.join(", ")
                    ),
                ))
            }
        };
        let allowed = |key: &'static str| match key {
            "max_values" => name == "category",
            "chars" => name == "chars",
            "given" => name == "rarity",
            "to" => name == "interval",
            "by" | "half_lives" | "domain" | "max_keys" => ContextStat::from_name(name).is_some(),
            "min_gap" => name == "gap",
            _ => false,
        };
        for (key, set) in [
            ("max_values", p.max_values.is_some()),
            ("chars", p.chars.is_some()),
            ("given", p.given.is_some()),
            ("to", p.to.is_some()),
            ("by", p.by.is_some()),
            ("half_lives", p.half_lives.is_some()),
            ("domain", p.domain.is_some()),
            ("max_keys", p.max_keys.is_some()),
            ("min_gap", p.min_gap.is_some()),
        ] {
            if set && !allowed(key) {
                return Err((key, format!("does not apply to `{name}`")));
            }
        }
        Ok(t)
    }

    /// In words, for `azw-train --list-features`.
    pub fn describe(&self) -> String {
        match self {
            Transform::Number => "number (unset: 0)".into(),
            Transform::Log1p => "ln(1 + x) (unset: 0)".into(),
            Transform::Flag => "bool: T 1, F 0, unset 0.5".into(),
            Transform::Present => "1 if set".into(),
            Transform::Length => "ln(1 + length)".into(),
            Transform::Entropy => "Shannon entropy, bits/char".into(),
            Transform::Labels => "ln(1 + number of labels)".into(),
            Transform::Chars { chars } => format!("one flag per character of `{chars}`"),
            Transform::Category { max_values } => {
                format!("category: up to {max_values} learned values + other")
            }
            Transform::PortClass => "port class: well-known, registered, dynamic".into(),
            Transform::Direction => "internal, outbound, inbound, external (local networks)".into(),
            Transform::Broadcast => {
                "1 if broadcast or multicast (a .255 address only in the local networks)".into()
            }
            Transform::Rarity { given } if given.is_empty() => {
                "rarity: -ln(training frequency), unseen the rarest".into()
            }
            Transform::Rarity { given } => {
                format!(
                    "rarity given {}: -ln(frequency among training records with the same {})",
                    given.join(", "),
                    given.join(" and ")
                )
            }
            Transform::TextState => "unset, empty or set".into(),
            Transform::WellKnownPort => "1 if the port is below 1024".into(),
            Transform::Interval { to } => format!("ln(1 + seconds until `{to}`) (unset: 0)"),
            // Needs the field: see [`FeatureDef::describe`].
            Transform::Context(c) => c.describe("the field"),
        }
    }
}

/// Checks a context transform's parameters.
fn context_def(name: &str, p: &TransformParams) -> Result<ContextDef, (&'static str, String)> {
    let stat = ContextStat::from_name(name).unwrap_or(ContextStat::Damped);
    let by: Vec<String> =
        p.by.clone()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.trim().to_owned())
            .collect();
    let key_len = by.len() + usize::from(stat.field_in_key());
    if key_len == 0 || by.len() > context::MAX_BY || by.iter().any(String::is_empty) {
        return Err((
            "by",
            format!(
                "names the key's fields (1 to {}), e.g. by = [\"id.orig_h\"]",
                context::MAX_BY
            ),
        ));
    }
    let half_lives = p.half_lives.clone().unwrap_or_default();
    let optional = matches!(stat, ContextStat::FirstSeen);
    if (!optional && half_lives.is_empty()) || half_lives.len() > context::MAX_HALF_LIVES {
        return Err((
            "half_lives",
            format!(
                "takes 1 to {} half-lives in seconds, e.g. [60, 3600, 86400] (only `first_seen` may take none)",
                context::MAX_HALF_LIVES
            ),
        ));
    }
    if half_lives.iter().any(|h| *h == 0 || *h > 366 * 86_400) {
        return Err(("half_lives", "must be 1 s to a year each".to_owned()));
    }
    let max_keys = p.max_keys.unwrap_or(context::DEFAULT_MAX_KEYS);
    if !(8..=context::MAX_MAX_KEYS).contains(&max_keys) {
        return Err((
            "max_keys",
            format!("must be 8 to {}", context::MAX_MAX_KEYS),
        ));
    }
    let min_gap = p.min_gap.unwrap_or(0);
    if min_gap > 86_400 {
        return Err((
            "min_gap",
            "must be 0 to 86400 seconds (a day): gaps shorter than it are one session".to_owned(),
        ));
    }
    Ok(ContextDef {
        stat,
        by,
        half_lives,
        domain: p.domain.unwrap_or(false),
        max_keys,
        min_gap,
    })
}

/// One row of a module's table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureDef {
    /// The name of the feature; column names start with it.
    pub name: String,
    /// The Zeek field it reads (`id.orig_h` and `id.resp_h` for
    /// [`Transform::Direction`]).
    pub field: String,
    pub transform: Transform,
}

impl FeatureDef {
    /// The transform in words, for `azw-train --list-features`.
    pub fn describe(&self) -> String {
        match &self.transform {
            Transform::Context(c) => c.describe(&self.field),
            t => t.describe(),
        }
    }
}
