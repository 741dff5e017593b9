//! Records: one log line as named, typed values.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::value::{Value, UNSET};
use crate::fnv::Fnv;

/// The field names of a run of records. Shared by every record of one TSV
/// header (or of consecutive JSON lines with the same keys), so a record costs
/// its values and nothing more. Consumers that look fields up by name many
/// times can resolve indices once per schema (compare with [`Arc::ptr_eq`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Schema {
    names: Vec<String>,
    index: NameMap<usize>,
}

/// A map keyed by short names: field names, category values. Looking a
/// field up by name happens several times per record (scoring reads `ts`,
/// `uid` and the connection id), and std's SipHash cost more than the rest
/// of the lookup; FxHash does not. SipHash's protection against crafted
/// collisions is not needed: the keys are a log's own field names or a
/// model's learned category values, a few dozen fixed keys that records only
/// look up, never add to.
pub(crate) type NameMap<V> = HashMap<String, V, rustc_hash::FxBuildHasher>;

impl Schema {
    pub fn new(names: Vec<String>) -> Schema {
        let mut index = NameMap::with_capacity_and_hasher(names.len(), Default::default());
        for (i, n) in names.iter().enumerate() {
            // A repeated name keeps its first column.
            index.entry(n.clone()).or_insert(i);
        }
        Schema { names, index }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// About how many bytes of memory the schema holds beyond its own
    /// struct: the names, twice (the list and the index's keys), and the
    /// index's slots.
    pub fn heap_bytes(&self) -> usize {
        let text: usize = self.names.iter().map(String::capacity).sum();
        self.names.capacity() * std::mem::size_of::<String>()
            + 2 * text
            + self.index.capacity() * (std::mem::size_of::<(String, usize)>() + 1)
    }
}

/// One log record.
#[derive(Debug, Clone)]
pub struct Record {
    schema: Arc<Schema>,
    values: Vec<Value>,
    /// 1-based line number in the (decompressed) file, for messages.
    line: u64,
}

impl Record {
    pub fn new(schema: Arc<Schema>, values: Vec<Value>, line: u64) -> Record {
        debug_assert_eq!(schema.len(), values.len());
        Record {
            schema,
            values,
            line,
        }
    }

    /// The value of a field; a field the record does not have is
    /// [`Value::Unset`], exactly like one Zeek left unset, because older and
    /// newer Zeek versions differ in which fields they log.
    pub fn get(&self, name: &str) -> &Value {
        match self.schema.index_of(name) {
            Some(i) => &self.values[i],
            None => &UNSET,
        }
    }

    /// The value at a column index from [`Schema::index_of`].
    pub fn at(&self, index: usize) -> &Value {
        self.values.get(index).unwrap_or(&UNSET)
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn values(&self) -> &[Value] {
        &self.values
    }

    pub fn line(&self) -> u64 {
        self.line
    }

    /// A hash of the line's values, in order: the same whenever the same
    /// line is read again (FNV-1a: the same on every machine and in every
    /// version), and another for lines alike in uid, time and 5-tuple
    /// (Zeek's weirds of one packet, a certificate chain's x509 lines, a
    /// long connection's reports). What tells ECS documents apart
    /// ([`crate::score::RecordOptions::line_ids`]).
    pub fn line_hash(&self) -> u64 {
        fn value(h: &mut Fnv, v: &Value) {
            // A tag per kind, and lengths before what varies in length:
            // ("ab", "c") and ("a", "bc") differ.
            match v {
                Value::Unset => h.write(&[0]),
                Value::Bool(b) => h.write(&[1, u8::from(*b)]),
                Value::Count(c) => {
                    h.write(&[2]);
                    h.write(&c.to_le_bytes());
                }
                Value::Int(i) => {
                    h.write(&[3]);
                    h.write(&i.to_le_bytes());
                }
                Value::Real(r) => {
                    h.write(&[4]);
                    h.write(&r.to_bits().to_le_bytes());
                }
                Value::Addr(IpAddr::V4(a)) => {
                    h.write(&[5]);
                    h.write(&a.octets());
                }
                Value::Addr(IpAddr::V6(a)) => {
                    h.write(&[6]);
                    h.write(&a.octets());
                }
                Value::Str(s) => {
                    h.write(&[7]);
                    h.write(&(s.len() as u64).to_le_bytes());
                    h.write(s.as_bytes());
                }
                Value::List(l) => {
                    h.write(&[8]);
                    h.write(&(l.len() as u64).to_le_bytes());
                    l.iter().for_each(|v| value(h, v));
                }
            }
        }
        let mut h = Fnv::new();
        h.write(&(self.values.len() as u64).to_le_bytes());
        self.values.iter().for_each(|v| value(&mut h, v));
        h.finish()
    }

    /// About how many bytes of memory the record holds beyond its own
    /// struct: its values, and the text and list elements they point to,
    /// and its schema when no other record shares it (besides the parser's
    /// cache of recent schemas): a JSON stream whose every line has other
    /// keys, each a long name, holds a schema per record, two to three
    /// times the values' bytes. The reading thread closes a chunk of
    /// records at a budget of these, so that lines near the length cap
    /// cannot make hundreds of megabytes wait between threads.
    pub fn heap_bytes(&self) -> usize {
        self.values_heap_bytes()
            + match Arc::strong_count(&self.schema) <= 2 {
                true => self.schema.heap_bytes(),
                false => 0,
            }
    }

    fn values_heap_bytes(&self) -> usize {
        fn beyond(v: &Value) -> usize {
            match v {
                Value::Str(s) if s.is_heap_allocated() => s.capacity(),
                Value::List(l) => {
                    l.capacity() * std::mem::size_of::<Value>()
                        + l.iter().map(beyond).sum::<usize>()
                }
                _ => 0,
            }
        }
        self.values.capacity() * std::mem::size_of::<Value>()
            + self.values.iter().map(beyond).sum::<usize>()
    }

    /// Name/value pairs, in column order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.schema
            .names
            .iter()
            .map(String::as_str)
            .zip(&self.values)
    }

    /// The record's timestamp (`ts`), if it has one.
    pub fn ts(&self) -> Option<f64> {
        self.get("ts").as_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_read_as_unset() {
        let schema = Arc::new(Schema::new(vec!["ts".into(), "uid".into()]));
        let r = Record::new(schema, vec![Value::Real(1.5), Value::Str("C1".into())], 9);
        assert_eq!(r.ts(), Some(1.5));
        assert_eq!(r.get("uid").as_str(), Some("C1"));
        assert!(r.get("local_resp").is_unset());
        assert!(r.at(7).is_unset());
        assert_eq!(r.line(), 9);
    }

    #[test]
    fn a_schema_of_its_own_counts_in_a_record_s_bytes_a_shared_one_does_not() {
        let long = |i: usize| format!("{i}{}", "k".repeat(10_000));
        let schema = Arc::new(Schema::new((0..10).map(long).collect()));
        let values = vec![Value::Unset; 10];
        let own = Record::new(Arc::clone(&schema), values.clone(), 1);
        // The parser's cache holds one more: still the record's own.
        assert!(own.heap_bytes() > 2 * 100_000, "{}", own.heap_bytes());
        let shared = Record::new(Arc::clone(&schema), values, 2);
        assert!(shared.heap_bytes() < 1_000, "{}", shared.heap_bytes());
    }

    #[test]
    fn a_line_s_hash_is_its_values() {
        let schema = Arc::new(Schema::new(vec!["a".into(), "b".into(), "c".into()]));
        let record = |values: Vec<Value>| Record::new(Arc::clone(&schema), values, 1);
        let line = |a: &str, b: &str| {
            record(vec![
                Value::Str(a.into()),
                Value::Str(b.into()),
                Value::List(vec![Value::Count(7), Value::Addr("::1".parse().unwrap())]),
            ])
        };
        let h = line("ab", "c").line_hash();
        // The same values read again (at another line number): the same.
        let mut again = line("ab", "c");
        again.line = 40;
        assert_eq!(again.line_hash(), h);
        // Pinned (worked out apart from this code, by FNV-1a's definition
        // over the tags, lengths and bytes): ids made from it must not
        // change between versions.
        assert_eq!(h, 0x6879_8e22_705e_aac9);
        let others = [
            line("a", "bc"),
            line("ab", "d"),
            record(vec![Value::Count(1), Value::Unset, Value::Unset]),
            record(vec![Value::Int(1), Value::Unset, Value::Unset]),
            record(vec![Value::Real(1.0), Value::Unset, Value::Unset]),
            record(vec![Value::Bool(true), Value::Unset, Value::Unset]),
        ];
        let mut seen = std::collections::BTreeSet::from([h]);
        for o in &others {
            assert!(seen.insert(o.line_hash()), "{o:?}");
        }
    }
}
