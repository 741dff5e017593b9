//! Vocabularies for categorical features, learned from the training data.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Values seen less often than this share of the records go to "other":
/// one column per rare value would only add noise.
pub const MIN_SHARE: f64 = 0.0005;

/// How many distinct values a counter keeps before it forgets the ones
/// seen once, so a field like `user_agent` cannot grow memory without bound.
const MAX_TRACKED: usize = 50_000;

/// Counts the values of one categorical feature during training.
#[derive(Debug, Clone, Default)]
pub struct VocabCounter {
    counts: HashMap<String, u64>,
    total: u64,
}

impl VocabCounter {
    pub fn add(&mut self, value: &str) {
        self.total += 1;
        if let Some(c) = self.counts.get_mut(value) {
            *c += 1;
            return;
        }
        if self.counts.len() >= MAX_TRACKED {
            self.counts.retain(|_, c| *c > 1);
        }
        self.counts.insert(value.to_owned(), 1);
    }

    /// The most frequent values, at most `max_values`, each seen in at
    /// least [`MIN_SHARE`] of the records; ties break by value so training
    /// twice on the same data gives the same columns.
    pub fn finish(&self, max_values: usize) -> Vocabulary {
        let min = ((self.total as f64) * MIN_SHARE).ceil().max(1.0) as u64;
        let mut kept: Vec<(&String, u64)> = self
            .counts
            .iter()
            .filter(|(_, c)| **c >= min)
            .map(|(v, c)| (v, *c))
            .collect();
        kept.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        kept.truncate(max_values);
        let covered: u64 = kept.iter().map(|(_, c)| c).sum();
        Vocabulary {
            values: kept.iter().map(|(v, _)| (*v).clone()).collect(),
            counts: kept.iter().map(|(_, c)| *c).collect(),
            other: self.total - covered,
        }
    }
}

/// The learned values of one categorical feature, stored in the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub values: Vec<String>,
    /// How often each value was seen in training.
    pub counts: Vec<u64>,
    /// How many training records fell into "other".
    pub other: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_frequent_values_in_order() {
        let mut c = VocabCounter::default();
        for v in ["tcp", "udp", "tcp", "icmp", "tcp", "udp"] {
            c.add(v);
        }
        let v = c.finish(2);
        assert_eq!(v.values, ["tcp", "udp"]);
        assert_eq!(v.counts, [3, 2]);
        assert_eq!(v.other, 1);
    }

    #[test]
    fn rare_values_go_to_other() {
        let mut c = VocabCounter::default();
        for _ in 0..10_000 {
            c.add("common");
        }
        for i in 0..4 {
            c.add(&format!("rare{i}"));
        }
        let v = c.finish(10);
        assert_eq!(v.values, ["common"]);
        assert_eq!(v.other, 4);
    }
}

/// The vocabularies learned from the bundled example logs (every record of
/// every module), pinned as the counter before the bounded summary learned
/// them: a change of counter must not change what normal data teaches.
#[cfg(test)]
mod examples {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::Vocabulary;
    use crate::features::{LocalNets, VocabLearner};
    use crate::module::Module;
    use crate::zeek::layout::{self, DateRange};
    use crate::zeek::Records;

    const PINNED: &str = include_str!("example_vocabularies.json");

    type Learned = BTreeMap<String, BTreeMap<String, Vocabulary>>;

    fn learn_examples() -> Learned {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/logs");
        let mut all = BTreeMap::new();
        for module in Module::ALL {
            let files = layout::discover(&dir, module.log_path(), DateRange::default()).unwrap();
            let paths = files.into_iter().map(|f| f.path).collect();
            let mut learner = VocabLearner::new(module);
            for record in Records::new(paths, Some(module.log_path()), true) {
                learner.observe(&record);
            }
            let set = learner.finish(LocalNets::default());
            all.insert(module.to_string(), set.vocabularies);
        }
        all
    }

    /// Set `AZW_PIN_VOCABULARIES=1` to rewrite the pinned file (only when a
    /// change of the learned vocabularies is intended).
    #[test]
    fn example_vocabularies_are_unchanged() {
        let learned = learn_examples();
        if std::env::var_os("AZW_PIN_VOCABULARIES").is_some() {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/features/example_vocabularies.json");
            let text = serde_json::to_string_pretty(&learned).unwrap() + "\n";
            std::fs::write(path, text).unwrap();
            return;
        }
        let pinned: Learned = serde_json::from_str(PINNED).unwrap();
        assert_eq!(learned, pinned);
    }
}
