//! Typed Zeek values.
//!
//! Zeek has more types than a detector needs to tell apart. A `time`, an
//! `interval` and a `double` all become [`Value::Real`]; a `port` is a
//! [`Value::Count`]; `enum`, `subnet` and anything unknown stay text. This
//! keeps the TSV form (typed by `#types`) and the JSON form (typed only by JSON
//! itself) of one log equal value for value, which is what the feature layer
//! relies on.

use std::fmt;
use std::net::IpAddr;

use compact_str::CompactString;

/// One field of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Not set (`-` in TSV, an omitted key or `null` in JSON, or a field the
    /// log does not have at all).
    Unset,
    Bool(bool),
    /// `count` and `port`.
    Count(u64),
    /// `int`.
    Int(i64),
    /// `time` (seconds since the epoch, or since the capture start for
    /// relative captures), `interval` (seconds) and `double`.
    Real(f64),
    Addr(IpAddr),
    /// `string`, `enum`, `subnet`, and values of types we do not model.
    Str(CompactString),
    /// `set[T]` and `vector[T]`; `(empty)` is an empty list.
    List(Vec<Value>),
}

/// The elements a set or vector keeps: the first this many, the rest are
/// passed over. Each element is a 32-byte value, so a 1 MiB line of commas
/// (a broken or hostile writer) was a million of them, 32 MiB per record,
/// and replay holds hundreds of records in flight. Zeek's own logs stay
/// far below (its writers cap containers at 100 elements by default since
/// Zeek 7); features read a list's first element, its length (which stops
/// growing here) and whether it is empty.
pub const MAX_LIST_ELEMENTS: usize = 1024;

/// The static unset value, so lookups of absent fields can hand out a reference.
pub(crate) static UNSET: Value = Value::Unset;

impl Value {
    pub fn is_unset(&self) -> bool {
        matches!(self, Value::Unset)
    }

    /// The value as a number, for numeric features: counts, ints, reals and
    /// booleans (1/0). Text that holds a number (some converters quote them)
    /// counts too.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Count(c) => Some(*c as f64),
            Value::Int(i) => Some(*i as f64),
            Value::Real(r) => Some(*r),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Value::Str(s) => s.trim().parse::<f64>().ok().filter(|v| v.is_finite()),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) => match s.as_str() {
                "T" | "true" | "True" | "TRUE" => Some(true),
                "F" | "false" | "False" | "FALSE" => Some(false),
                _ => None,
            },
            Value::Count(c) => Some(*c != 0),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an address: typed addresses, and text that parses as one
    /// (JSON carries addresses as strings).
    pub fn as_addr(&self) -> Option<IpAddr> {
        match self {
            Value::Addr(a) => Some(*a),
            Value::Str(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// Whether two values mean the same thing, across the TSV and JSON forms
    /// of one log: numbers compare as numbers (a JSON `0` equals a TSV
    /// `0.000000` interval) up to the TSV writer's six decimals (it prints
    /// `0.000870` where the JSON writer prints `0.0008699893951416016`),
    /// addresses as addresses, text as text.
    pub fn same_as(&self, other: &Value) -> bool {
        use Value::*;
        match (self, other) {
            (Unset, Unset) => true,
            (List(a), List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y)),
            (Addr(a), _) => other.as_addr() == Some(*a),
            (_, Addr(b)) => self.as_addr() == Some(*b),
            (Str(a), Str(b)) => a == b,
            (Bool(a), Bool(b)) => a == b,
            (Count(_) | Int(_) | Real(_), Count(_) | Int(_) | Real(_)) => {
                let (a, b) = (
                    self.as_f64().unwrap_or(f64::NAN),
                    other.as_f64().unwrap_or(f64::NAN),
                );
                a == b || (a - b).abs() <= 1e-6 + 1e-12 * a.abs().max(b.abs())
            }
            _ => false,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Unset => f.write_str("-"),
            Value::Bool(b) => f.write_str(if *b { "T" } else { "F" }),
            Value::Count(c) => write!(f, "{c}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Real(r) => write!(f, "{r}"),
            Value::Addr(a) => write!(f, "{a}"),
            Value::Str(s) => f.write_str(s),
            Value::List(l) => {
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{v}")?;
                }
                Ok(())
            }
        }
    }
}

/// A column type from a TSV `#types` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeekType {
    Bool,
    Count,
    Port,
    Int,
    Real,
    Addr,
    /// `string`, `enum`, `subnet`, `pattern` and anything we do not know
    /// (`int64` in a hand-edited header, a plugin's own type): kept as text,
    /// never a reason to reject a line.
    Text,
    Set(ElemType),
    Vector(ElemType),
}

/// The element type of a container, without nesting (Zeek logs no nested
/// containers).
pub type ElemType = ScalarType;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    Bool,
    Count,
    /// A `count` that must fit in 16 bits.
    Port,
    Int,
    Real,
    Addr,
    Text,
}

impl ScalarType {
    fn parse(name: &str) -> ScalarType {
        match name {
            "bool" => ScalarType::Bool,
            "count" => ScalarType::Count,
            "port" => ScalarType::Port,
            "int" => ScalarType::Int,
            "time" | "interval" | "double" => ScalarType::Real,
            "addr" => ScalarType::Addr,
            _ => ScalarType::Text,
        }
    }

    /// Parses one unescaped field. The error is a short reason for the skip
    /// message.
    pub(crate) fn parse_value(self, text: &str) -> Result<Value, String> {
        match self {
            ScalarType::Text => Ok(Value::Str(text.into())),
            ScalarType::Bool => match text {
                "T" => Ok(Value::Bool(true)),
                "F" => Ok(Value::Bool(false)),
                _ => Err(format!("invalid bool `{}`", clip(text))),
            },
            ScalarType::Count => text
                .parse::<u64>()
                .map(Value::Count)
                .map_err(|_| format!("invalid count `{}`", clip(text))),
            ScalarType::Port => text
                .parse::<u16>()
                .map(|p| Value::Count(p.into()))
                .map_err(|_| format!("invalid port `{}`", clip(text))),
            ScalarType::Int => text
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| format!("invalid int `{}`", clip(text))),
            ScalarType::Real => match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Value::Real(v)),
                _ => Err(format!("invalid number `{}`", clip(text))),
            },
            ScalarType::Addr => text
                .parse::<IpAddr>()
                .map(Value::Addr)
                .map_err(|_| format!("invalid address `{}`", clip(text))),
        }
    }
}

impl ZeekType {
    /// Parses a `#types` entry such as `count`, `set[string]`, `vector[interval]`.
    pub fn parse(name: &str) -> ZeekType {
        let inner = |prefix: &str| {
            name.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(']'))
                .map(ScalarType::parse)
        };
        if let Some(e) = inner("set[") {
            return ZeekType::Set(e);
        }
        if let Some(e) = inner("vector[") {
            return ZeekType::Vector(e);
        }
        match ScalarType::parse(name) {
            ScalarType::Bool => ZeekType::Bool,
            ScalarType::Count => ZeekType::Count,
            ScalarType::Port => ZeekType::Port,
            ScalarType::Int => ZeekType::Int,
            ScalarType::Real => ZeekType::Real,
            ScalarType::Addr => ZeekType::Addr,
            ScalarType::Text => ZeekType::Text,
        }
    }

    pub(crate) fn scalar(self) -> Option<ScalarType> {
        Some(match self {
            ZeekType::Bool => ScalarType::Bool,
            ZeekType::Count => ScalarType::Count,
            ZeekType::Port => ScalarType::Port,
            ZeekType::Int => ScalarType::Int,
            ZeekType::Real => ScalarType::Real,
            ZeekType::Addr => ScalarType::Addr,
            ZeekType::Text => ScalarType::Text,
            ZeekType::Set(_) | ZeekType::Vector(_) => return None,
        })
    }
}

/// Shortens a bad value for an error message, so a binary blob in a broken
/// line cannot flood the log.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse() {
        assert_eq!(ZeekType::parse("port"), ZeekType::Port);
        assert_eq!(ZeekType::parse("interval"), ZeekType::Real);
        assert_eq!(
            ZeekType::parse("set[string]"),
            ZeekType::Set(ScalarType::Text)
        );
        assert_eq!(
            ZeekType::parse("vector[interval]"),
            ZeekType::Vector(ScalarType::Real)
        );
        assert_eq!(ZeekType::parse("int64"), ZeekType::Text);
    }

    #[test]
    fn scalars_parse_and_reject() {
        assert_eq!(ScalarType::Count.parse_value("42"), Ok(Value::Count(42)));
        assert!(ScalarType::Count.parse_value("-1").is_err());
        assert!(ScalarType::Real.parse_value("nan").is_err());
        assert!(ScalarType::Real.parse_value("inf").is_err());
        assert_eq!(ScalarType::Bool.parse_value("T"), Ok(Value::Bool(true)));
        assert!(ScalarType::Addr.parse_value("10.0.0.300").is_err());
        assert_eq!(
            ScalarType::Addr.parse_value("fe80::1").unwrap().as_addr(),
            Some("fe80::1".parse().unwrap())
        );
    }

    #[test]
    fn same_as_bridges_tsv_and_json_forms() {
        assert!(Value::Real(0.0).same_as(&Value::Count(0)));
        assert!(Value::Real(0.00087).same_as(&Value::Real(0.0008699893951416016)));
        assert!(!Value::Real(0.00087).same_as(&Value::Real(0.00088)));
        assert!(Value::Addr("10.0.0.1".parse().unwrap()).same_as(&Value::Str("10.0.0.1".into())));
        assert!(!Value::Count(1).same_as(&Value::Str("1".into())));
        assert!(!Value::Unset.same_as(&Value::Str("".into())));
    }

    #[test]
    fn clip_limits_long_values() {
        assert_eq!(clip(&"x".repeat(100)).len(), 43);
    }
}
