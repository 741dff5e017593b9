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
    /// 1 when a port is below 1024. For the source port this is what does
    /// not depend on the client's operating system: Windows picks
    /// ephemeral ports from 49152, Linux from 32768, so a class boundary
    /// at 49152 tells the OS, not the traffic.
    WellKnownPort,
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

/// Rarity of the value itself.
fn rarity() -> Transform {
    Transform::Rarity { given: Vec::new() }
}

/// Rarity of the value among training records with the same `given`
/// values.
fn rarity_given(given: &[&str]) -> Transform {
    Transform::Rarity {
        given: given.iter().map(|g| (*g).to_owned()).collect(),
    }
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
///
/// Nothing of the source port on its own: its range tells the client's
/// operating system (Windows 49152 and up, Linux 32768 and up), and a model
/// trained on one flagged half the benign records of the other. What the
/// source port says about the traffic is in conn's `conn_state` given it.
fn endpoint_features() -> Vec<FeatureDef> {
    use Transform::*;
    vec![
        def("traffic_direction", "id.resp_h", Direction),
        def("broadcast", "id.resp_h", Broadcast),
        def("resp_p", "id.resp_p", rarity()),
        def("resp_p_class", "id.resp_p", PortClass),
    ]
}

/// The declared table of a module.
///
/// Categories over small closed sets (protocol, connection state, method,
/// DNS codes, versions) stay one column per value: their values carry
/// structure the autoencoders learn. Open sets (ports, user agents, MIME
/// types, ciphers, software) are one rarity column each, so a value never
/// seen moves one column, not three. Text that can be absent, empty or set
/// is a three-state category (see [`Transform::TextState`]).
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
            // Whether the reply is what this port and protocol get: on the
            // dev set, most malicious records are unanswered UDP from a
            // port whose training traffic was answered 6,083 of 6,101 times.
            def(
                "conn_state_given_resp_p",
                "conn_state",
                rarity_given(&["id.resp_p", "proto"]),
            ),
            def(
                "conn_state_given_orig_p",
                "conn_state",
                rarity_given(&["id.orig_p", "proto"]),
            ),
            def(
                "service_given_resp_p",
                "service",
                rarity_given(&["id.resp_p", "proto"]),
            ),
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
            def("rcode_given_qtype", "rcode", rarity_given(&["qtype"])),
            def("query_state", "query", TextState),
            def("query_len", "query", Length),
            def("query_labels", "query", Labels),
            def("query_entropy", "query", Entropy),
            def("answers", "answers", Length),
        ],
        LogKind::Http => vec![
            field("trans_depth", Log1p),
            field("request_body_len", Log1p),
            field("response_body_len", Log1p),
            def("host_state", "host", TextState),
            def("host_len", "host", Length),
            field("method", category(12)),
            field("status_code", rarity()),
            def(
                "status_given_method",
                "status_code",
                rarity_given(&["method"]),
            ),
            field("version", category(6)),
            def("uri_len", "uri", Length),
            def("uri_entropy", "uri", Entropy),
            def("referrer_state", "referrer", TextState),
            field("user_agent", rarity()),
            def("user_agent_len", "user_agent", Length),
            def("user_agent_state", "user_agent", TextState),
            field("resp_mime_types", rarity()),
            field("orig_mime_types", rarity()),
        ],
        LogKind::Ssh => vec![
            field("auth_success", Flag),
            field("auth_attempts", Log1p),
            field("direction", category(4)),
            field("version", category(4)),
            field("client", rarity()),
            field("server", rarity()),
            field("cipher_alg", rarity()),
            field("mac_alg", rarity()),
            field("kex_alg", rarity()),
            field("host_key_alg", rarity()),
            field("compression_alg", rarity()),
        ],
        LogKind::Ssl => vec![
            field("version", category(8)),
            field("cipher", rarity()),
            field("curve", rarity()),
            field("resumed", Flag),
            field("established", Flag),
            def("server_name_state", "server_name", TextState),
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
            def("subject_state", "subject", TextState),
            def("issuer_state", "issuer", TextState),
            field("validation_status", rarity()),
            field("next_protocol", rarity()),
            field("last_alert", rarity()),
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
