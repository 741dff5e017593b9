//! Records to feature vectors, per module.
//!
//! - [`spec`]: what a feature table declares (field, transform); the
//!   tables themselves are data, read by [`crate::tables`].
//! - [`VocabLearner`]: learns the vocabularies of categorical features from
//!   the training records.
//! - [`Encoder`]: applies a table and its vocabularies to records; unseen
//!   categories land in an "other" column.
//! - [`LocalNets`]: which addresses are local, for traffic direction;
//!   [`SiteLearner`] learns them from Zeek's own marks.

pub mod context;
mod encoder;
mod net;
mod rarity;
mod site;
pub mod spec;
mod vocab;

pub use encoder::{ContextState, Encoder, FeatureError, FeatureSet, FieldCache, VocabLearner};
pub use net::{Direction, LocalNets, DEFAULT_LOCAL_NETS};
pub use rarity::{ContextCounts, Frequencies, MAX_GIVEN};
pub use site::{DirectionSurvey, NetsOrigin, SiteLearner};
pub use spec::{FeatureDef, Transform, TransformParams};
pub use vocab::{VocabCounter, Vocabulary};
