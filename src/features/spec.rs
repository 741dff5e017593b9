//! The declared feature tables: for each module, which field becomes which
//! columns. Adding a module (`files`, `x509`, `smtp`) is a new table here,
//! not a new code path.
//!
//! A trained model stores the table it was trained with, so a model keeps
//! working after the tables in the code change.

use serde::{Deserialize, Serialize};

use crate::log_kind::LogKind;

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
    /// 1 when the field's address is a broadcast or multicast destination.
    Broadcast,
}

impl Transform {
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
            Transform::Broadcast => "1 if broadcast or multicast".into(),
        }
    }
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

fn def(name: &str, field: &str, transform: Transform) -> FeatureDef {
    FeatureDef {
        name: name.to_owned(),
        field: field.to_owned(),
        transform,
    }
}

/// A feature named after its field.
fn field(field: &str, transform: Transform) -> FeatureDef {
    def(field, field, transform)
}

fn category(max_values: usize) -> Transform {
    Transform::Category { max_values }
}

fn chars(chars: &str) -> Transform {
    Transform::Chars {
        chars: chars.to_owned(),
    }
}

/// Zeek's conn `history` letters (upper case: the originator did it).
pub const CONN_HISTORY: &str = "ShADadFfRrCcGgTtWwIiQq^";
/// Zeek's `ssl_history` letters for the messages that matter in practice
/// (upper case: from the client).
pub const SSL_HISTORY: &str = "CcSsVvTtXxKkRrNnYyGgFfIiDdLl";

/// Features every module with a connection id has.
fn endpoint_features() -> Vec<FeatureDef> {
    use Transform::*;
    vec![
        def("traffic_direction", "id.resp_h", Direction),
        def("broadcast", "id.resp_h", Broadcast),
        def("resp_p", "id.resp_p", category(24)),
        def("resp_p_class", "id.resp_p", PortClass),
        def("orig_p_class", "id.orig_p", PortClass),
    ]
}

/// The declared table of a module.
pub fn table(module: LogKind) -> Vec<FeatureDef> {
    use Transform::*;
    let mut t = match module {
        LogKind::Conn => vec![
            field("proto", category(8)),
            field("service", category(16)),
            field("conn_state", category(16)),
            field("duration", Log1p),
            field("orig_bytes", Log1p),
            field("resp_bytes", Log1p),
            field("missed_bytes", Log1p),
            field("orig_pkts", Log1p),
            field("orig_ip_bytes", Log1p),
            field("resp_pkts", Log1p),
            field("resp_ip_bytes", Log1p),
            field("local_orig", Flag),
            field("local_resp", Flag),
            field("history", chars(CONN_HISTORY)),
            def("history_len", "history", Length),
        ],
        LogKind::Dns => vec![
            field("proto", category(4)),
            field("rtt", Log1p),
            def("rtt_present", "rtt", Present),
            field("AA", Flag),
            field("TC", Flag),
            field("RD", Flag),
            field("RA", Flag),
            field("rejected", Flag),
            field("qclass", category(4)),
            def("qclass_present", "qclass", Present),
            field("qtype", category(16)),
            def("qtype_present", "qtype", Present),
            field("rcode", category(8)),
            def("rcode_present", "rcode", Present),
            def("query_len", "query", Length),
            def("query_labels", "query", Labels),
            def("query_entropy", "query", Entropy),
            def("answers", "answers", Length),
        ],
        LogKind::Http => vec![
            field("trans_depth", Log1p),
            field("request_body_len", Log1p),
            field("response_body_len", Log1p),
            def("host_present", "host", Present),
            def("host_len", "host", Length),
            field("method", category(12)),
            field("status_code", category(24)),
            field("version", category(6)),
            def("uri_len", "uri", Length),
            def("uri_entropy", "uri", Entropy),
            def("referrer_present", "referrer", Present),
            field("user_agent", category(32)),
            def("user_agent_len", "user_agent", Length),
            def("user_agent_present", "user_agent", Present),
            field("resp_mime_types", category(16)),
            field("orig_mime_types", category(8)),
        ],
        LogKind::Ssh => vec![
            field("auth_success", Flag),
            field("auth_attempts", Log1p),
            field("direction", category(4)),
            field("version", category(4)),
            field("client", category(16)),
            field("server", category(16)),
            field("cipher_alg", category(8)),
            field("mac_alg", category(8)),
            field("kex_alg", category(8)),
            field("host_key_alg", category(8)),
            field("compression_alg", category(4)),
        ],
        LogKind::Ssl => vec![
            field("version", category(8)),
            field("cipher", category(24)),
            field("curve", category(8)),
            field("resumed", Flag),
            field("established", Flag),
            def("server_name_present", "server_name", Present),
            def("server_name_len", "server_name", Length),
            def("server_name_entropy", "server_name", Entropy),
            field("sni_matches_cert", Flag),
            def("cert_chain_len", "cert_chain_fps", Length),
            def("cert_chain_fuids_len", "cert_chain_fuids", Length),
            def("client_cert_chain_len", "client_cert_chain_fps", Length),
            def(
                "client_cert_chain_fuids_len",
                "client_cert_chain_fuids",
                Length,
            ),
            def("subject_present", "subject", Present),
            def("issuer_present", "issuer", Present),
            field("validation_status", category(8)),
            field("next_protocol", category(8)),
            field("last_alert", category(8)),
            field("ssl_history", chars(SSL_HISTORY)),
        ],
    };
    t.extend(endpoint_features());
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_module_covers_what_the_python_tool_used() {
        let has = |m, f: &str| table(m).iter().any(|d| d.field == f);
        for f in [
            "conn_state",
            "proto",
            "service",
            "local_orig",
            "local_resp",
            "missed_bytes",
            "orig_pkts",
            "orig_ip_bytes",
            "resp_pkts",
            "resp_ip_bytes",
            "duration",
            "history",
            "id.resp_p",
        ] {
            assert!(has(LogKind::Conn, f), "conn {f}");
        }
        for f in [
            "rtt", "AA", "TC", "RD", "RA", "rejected", "qclass", "qtype", "rcode", "proto",
            "query", "answers",
        ] {
            assert!(has(LogKind::Dns, f), "dns {f}");
        }
        for f in [
            "trans_depth",
            "request_body_len",
            "response_body_len",
            "host",
            "method",
            "status_code",
            "version",
            "uri",
            "user_agent",
        ] {
            assert!(has(LogKind::Http, f), "http {f}");
        }
        for f in [
            "auth_success",
            "auth_attempts",
            "direction",
            "version",
            "client",
            "server",
        ] {
            assert!(has(LogKind::Ssh, f), "ssh {f}");
        }
        for f in [
            "resumed",
            "established",
            "cert_chain_fps",
            "sni_matches_cert",
            "version",
            "cipher",
            "curve",
            "server_name",
            "ssl_history",
        ] {
            assert!(has(LogKind::Ssl, f), "ssl {f}");
        }
        for m in LogKind::ALL {
            let t = table(m);
            assert!(
                t.iter().any(|d| d.transform == Transform::Direction),
                "{m} direction"
            );
            let mut names: Vec<_> = t.iter().map(|d| &d.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), t.len(), "{m}: feature names are unique");
        }
    }
}
