//! Allowlists and suppression, applied at scoring time: a file of rules
//! that drop matching records before they are scored, or only keep them
//! from alerting (Slips' `flows` and `alerts`). Unlike RITA's import-time
//! allowlist, a rule takes effect within seconds in a running azw-infer
//! (the file is watched like a model) and needs no reprocessing.
//!
//! ```toml
//! [[rule]]
//! comment = "our own web server: the internet's scanners hit it all day"
//! destination = "64.225.56.201"
//! action = "no_alert"
//!
//! [[rule]]
//! comment = "backup traffic, until the migration is done"
//! source = "10.1.0.0/16"
//! port = 873
//! action = "drop"
//! expires = "2027-01-31"
//! ```
//!
//! A rule matches when every condition it states holds: `source` and
//! `destination` (an address or a CIDR, against `id.orig_h` and
//! `id.resp_h`), `port` (`id.resp_p`), `domain` (the name or a subdomain
//! of it, against the DNS query, HTTP Host or TLS server name), `module`,
//! `feature` (an anomaly whose explanation names the column: `resp_p`,
//! `proto=udp`), `detector` (a detection of that kind) and `kind`
//! (`anomaly`: the models' flagged records only; `detection`: the
//! detectors' only). A rule without conditions (other than `kind`) is
//! refused: it would silence everything.
//!
//! `kind` is what keeps a rule for the noise from silencing what matters
//! about the same address: a server the internet's scanners hit all day
//! is also where a beacon would call (RITA's `missing_host` capture: a
//! `destination` rule for the scanners' anomalies silenced the planted
//! beacon's detection too).
//!
//! A file that does not parse is refused with its line, and the rules in
//! force stay; an expired rule stops matching (wall-clock time: expiry is
//! an operator's decision, not the traffic's).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use ipnet::IpNet;
use serde::Deserialize;

use crate::detect::Detection;
use crate::log_kind::LogKind;
use crate::reload::stamp;
use crate::score::ScoredRecord;
use crate::tables::{line_of, Lines};
use crate::zeek::Record;

/// How often a running tool looks for a changed allowlist file.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The largest allowlist file read (a runaway generator cannot exhaust
/// memory).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// What a `no_alert` rule is limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Records the models flagged.
    Anomaly,
    /// The detectors' detections.
    Detection,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// The record is not scored, written or watched by the detectors
    /// (counted).
    Drop,
    /// The record is scored and written but is not an anomaly, and
    /// matching detections are not written (counted).
    NoAlert,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<toml::Spanned<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    comment: String,
    source: Option<String>,
    destination: Option<String>,
    port: Option<u16>,
    domain: Option<String>,
    module: Option<String>,
    feature: Option<String>,
    detector: Option<String>,
    kind: Option<Kind>,
    action: Action,
    expires: Option<String>,
}

/// One rule, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub comment: String,
    pub line: usize,
    source: Option<IpNet>,
    destination: Option<IpNet>,
    port: Option<u16>,
    /// Lower case, without a trailing dot.
    domain: Option<String>,
    module: Option<String>,
    feature: Option<String>,
    detector: Option<String>,
    kind: Option<Kind>,
    pub action: Action,
    /// Unix seconds after which the rule no longer matches.
    expires: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// An address or a network (`10.0.0.0/8`); an address is a /32 or /128.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    t.parse::<IpNet>()
        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("`{t}` is not an address or a network (10.0.0.0/8)"))
}

/// A date (`2027-01-31`, the end of that day, UTC) or an RFC 3339 time.
fn parse_expiry(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(23, 59, 59)
            .map_or(0, |d| d.and_utc().timestamp()));
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp())
        .map_err(|_| format!("expires `{t}`: write a date (2027-01-31) or an RFC 3339 time"))
}

/// The rules of one file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Reads and checks a rules file; the error names the file and line.
    pub fn load(path: &Path) -> Result<Rules, AllowError> {
        let io = |source| AllowError::Io {
            path: path.to_owned(),
            source,
        };
        let file = crate::safe_fs::open_regular(path).map_err(io)?;
        let mut text = String::new();
        use std::io::Read;
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(io)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(AllowError::Invalid {
                path: path.to_owned(),
                line: 1,
                message: format!("larger than {} MiB", MAX_FILE_BYTES >> 20),
            });
        }
        Rules::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Rules, AllowError> {
        let invalid = |offset: usize, message: String| AllowError::Invalid {
            path: path.to_owned(),
            line: line_of(text, offset),
            message,
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            invalid(
                e.span().map_or(0, |s| s.start),
                e.message().trim().to_owned(),
            )
        })?;
        let mut rules = Vec::new();
        let lines = Lines::new(text);
        for r in raw.rule {
            let at = r.span().start;
            let r = r.into_inner();
            let bad = |m: String| invalid(at, m);
            let net = |v: &Option<String>| v.as_deref().map(parse_net).transpose().map_err(bad);
            let rule = Rule {
                comment: r.comment.clone(),
                line: lines.of(at),
                source: net(&r.source)?,
                destination: net(&r.destination)?,
                port: r.port,
                domain: r
                    .domain
                    .as_deref()
                    .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                    .filter(|d| !d.is_empty()),
                module: r.module.as_deref().map(|m| m.trim().to_ascii_lowercase()),
                feature: r.feature.clone().filter(|f| !f.trim().is_empty()),
                detector: r.detector.clone().filter(|f| !f.trim().is_empty()),
                kind: r.kind,
                action: r.action,
                expires: r
                    .expires
                    .as_deref()
                    .map(parse_expiry)
                    .transpose()
                    .map_err(bad)?,
            };
            let conditions = [
                rule.source.is_some(),
                rule.destination.is_some(),
                rule.port.is_some(),
                rule.domain.is_some(),
                rule.module.is_some(),
                rule.feature.is_some(),
                rule.detector.is_some(),
            ];
            if !conditions.contains(&true) {
                return Err(invalid(
                    at,
                    "a rule needs at least one of source, destination, port, domain, module, feature, detector: without, it would silence everything".into(),
                ));
            }
            if rule.action == Action::Drop
                && (rule.feature.is_some() || rule.detector.is_some() || rule.kind.is_some())
            {
                return Err(invalid(
                    at,
                    "`feature`, `detector` and `kind` need action = \"no_alert\": a dropped record is never scored, explained or seen by the detectors".into(),
                ));
            }
            if rule.feature.is_some() && rule.detector.is_some()
                || rule.kind == Some(Kind::Anomaly) && rule.detector.is_some()
                || rule.kind == Some(Kind::Detection) && rule.feature.is_some()
            {
                return Err(invalid(
                    at,
                    "this rule can match nothing: `feature` (and kind = \"anomaly\") is about the models' flagged records, `detector` (and kind = \"detection\") about the detectors' detections".into(),
                ));
            }
            rules.push(rule);
        }
        Ok(Rules { rules })
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether a scored anomaly is kept from alerting by a `no_alert` rule
    /// (those that name a feature look at its explanation).
    pub fn silences(&self, scored: &ScoredRecord, record: &Record) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let module = scored.module.to_string().to_ascii_lowercase();
        let facts = Facts {
            module: Some(&module),
            orig_h: scored.orig_h,
            resp_h: scored.resp_h,
            resp_p: scored.resp_p,
            domain: record_domain(record),
            features: scored.top_features.as_deref().unwrap_or(&[]),
            detector: None,
        };
        self.live(now())
            .filter(|r| {
                r.action == Action::NoAlert
                    && r.detector.is_none()
                    && r.kind != Some(Kind::Detection)
            })
            .any(|r| r.matches(&facts))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The action of the first live rule (other than feature and detector
    /// rules, which need a score) matching a record before it is scored.
    pub fn before_scoring(&self, module: LogKind, record: &Record) -> Option<Action> {
        if self.rules.is_empty() {
            return None;
        }
        let module = module.to_string().to_ascii_lowercase();
        let facts = Facts {
            module: Some(&module),
            orig_h: record.get("id.orig_h").as_addr(),
            resp_h: record.get("id.resp_h").as_addr(),
            resp_p: record
                .get("id.resp_p")
                .as_f64()
                .and_then(|p| u16::try_from(p as u64).ok()),
            domain: record_domain(record),
            ..Facts::default()
        };
        self.live(now())
            .filter(|r| r.feature.is_none() && r.detector.is_none() && r.kind.is_none())
            .find(|r| r.matches(&facts))
            .map(|r| r.action)
    }

    /// Whether a detection is kept from the output (any matching rule
    /// without a feature condition: a dropped host's detections go too).
    pub fn silences_detection(&self, d: &Detection) -> bool {
        if self.rules.is_empty() {
            return false;
        }
        let module = d.module.to_string().to_ascii_lowercase();
        let kind = d.detection.to_string();
        let facts = Facts {
            module: Some(&module),
            orig_h: Some(d.src),
            resp_h: d.dst,
            resp_p: d.resp_p,
            domain: d.domain.as_deref(),
            features: &[],
            detector: Some(&kind),
        };
        self.live(now())
            .filter(|r| r.feature.is_none() && r.kind != Some(Kind::Anomaly))
            .any(|r| r.matches(&facts))
    }

    fn live(&self, now: i64) -> impl Iterator<Item = &Rule> {
        self.rules
            .iter()
            .filter(move |r| r.expires.is_none_or(|e| now <= e))
    }
}

/// The facts of a record or detection a rule looks at.
#[derive(Debug, Default)]
struct Facts<'a> {
    module: Option<&'a str>,
    orig_h: Option<IpAddr>,
    resp_h: Option<IpAddr>,
    resp_p: Option<u16>,
    domain: Option<&'a str>,
    features: &'a [crate::score::Contribution],
    detector: Option<&'a str>,
}

impl Rule {
    fn matches(&self, f: &Facts<'_>) -> bool {
        let net = |n: &Option<IpNet>, a: Option<IpAddr>| {
            n.as_ref().is_none_or(|n| a.is_some_and(|a| n.contains(&a)))
        };
        net(&self.source, f.orig_h)
            && net(&self.destination, f.resp_h)
            && self.port.is_none_or(|p| f.resp_p == Some(p))
            && self
                .module
                .as_deref()
                .is_none_or(|m| f.module.is_some_and(|fm| fm.eq_ignore_ascii_case(m)))
            && self
                .domain
                .as_deref()
                .is_none_or(|d| f.domain.is_some_and(|name| is_within(name, d)))
            && self.feature.as_deref().is_none_or(|want| {
                f.features.iter().any(|c| {
                    c.feature == want
                        || c.feature
                            .strip_prefix(want)
                            .is_some_and(|rest| rest.starts_with(['=', ':', '@']))
                })
            })
            && self
                .detector
                .as_deref()
                .is_none_or(|k| f.detector == Some(k))
    }
}

/// Whether `name` is `domain` or one of its subdomains, ASCII letters in
/// any case, a final dot ignored. Compared as bytes: the names come from
/// the traffic (a query, a Host header, a server name), and a name whose
/// last bytes split a multi-byte character must not match nor panic (a
/// string slice there would). A match ends at a dot or the name's start,
/// so it never splits a character.
fn is_within(name: &str, domain: &str) -> bool {
    let (name, d) = (name.trim_end_matches('.').as_bytes(), domain.as_bytes());
    let Some(start) = name.len().checked_sub(d.len()) else {
        return false;
    };
    name[start..].eq_ignore_ascii_case(d) && (start == 0 || name[start - 1] == b'.')
}

/// The name a record is about, for `domain` rules.
fn record_domain(record: &Record) -> Option<&str> {
    ["query", "host", "server_name"]
        .iter()
        .find_map(|f| record.get(f).as_str().filter(|s| !s.is_empty()))
}

/// Counts of what the rules suppressed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppressed {
    /// Records dropped before scoring.
    pub dropped: u64,
    /// Anomalies kept from alerting.
    pub unalerted: u64,
    /// Detections not written.
    pub detections: u64,
}

/// A rules file in force, re-read when it changes.
pub struct Allowlist {
    path: PathBuf,
    /// Shared with the records judged by them: the scoring threads
    /// (replay, Kafka) apply `no_alert` by the version that judged a
    /// record's drop rules.
    rules: std::sync::Arc<Rules>,
    stamp: Option<(SystemTime, u64)>,
    /// The file as it was last refused (`Some(None)`: missing), so that
    /// it is read again, and refused with an error again, only once it
    /// changes: a deleted allowlist logged an error every check.
    refused: Option<Option<(SystemTime, u64)>>,
    last_check: Instant,
    every: Duration,
    /// Times the file was read, for tests.
    #[cfg(test)]
    loads: u32,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Allowlist {
    /// Loads the file (an error if it does not load: a run does not start
    /// with rules it cannot read) and watches it every `every`.
    pub fn open(path: &Path, every: Duration) -> Result<Allowlist, AllowError> {
        // Stamped before it is read: a change while it is read is seen at
        // the next check (stamped after, it passed for the version read).
        let before = stamp(path);
        let rules = Rules::load(path)?;
        Ok(Allowlist {
            path: path.to_owned(),
            stamp: before,
            rules: std::sync::Arc::new(rules),
            refused: None,
            last_check: Instant::now(),
            every,
            #[cfg(test)]
            loads: 1,
        })
    }

    /// [`Allowlist::open`] for a run that is going already (a lane opened
    /// after a new model appeared, the detections' filter): a file that
    /// does not load now (it changed since the tools checked it) is
    /// logged and watched as a refused change is, and its rules apply once
    /// it loads. (It was dropped until the next restart.)
    pub fn open_or_wait(path: &Path, every: Duration) -> Allowlist {
        let before = stamp(path);
        Allowlist::open(path, every).unwrap_or_else(|e| {
            tracing::error!("the allowlist is not applied until it loads: {e}");
            Allowlist {
                path: path.to_owned(),
                rules: Default::default(),
                stamp: None,
                refused: Some(before),
                last_check: Instant::now(),
                every,
                #[cfg(test)]
                loads: 1,
            }
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rules(&self) -> &std::sync::Arc<Rules> {
        &self.rules
    }

    /// Re-reads the file if it is time to look and it changed; a file that
    /// does not load is refused (logged once) and the rules in force stay.
    pub fn check(&mut self) {
        if self.last_check.elapsed() < self.every {
            return;
        }
        self.last_check = Instant::now();
        let now = stamp(&self.path);
        if now == self.stamp || Some(now) == self.refused {
            return;
        }
        #[cfg(test)]
        {
            self.loads += 1;
        }
        match Rules::load(&self.path) {
            Ok(rules) => {
                tracing::info!(
                    "allowlist {}: {} rules in force",
                    self.path.display(),
                    rules.len()
                );
                self.rules = std::sync::Arc::new(rules);
                self.stamp = now;
                self.refused = None;
            }
            Err(e) => {
                tracing::error!("refused the changed allowlist: {e}; the rules in force stay");
                self.refused = Some(now);
            }
        }
    }

    /// The action of the first live rule (other than feature and detector
    /// rules, which need a score) matching a record before it is scored.
    pub fn before_scoring(&self, module: LogKind, record: &Record) -> Option<Action> {
        self.rules.before_scoring(module, record)
    }

    /// Whether a detection is kept from the output (any matching rule
    /// without a feature condition: a dropped host's detections go too).
    pub fn silences_detection(&self, d: &Detection) -> bool {
        self.rules.silences_detection(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Result<Rules, String> {
        Rules::parse(text, Path::new("/etc/azw/allow.toml")).map_err(|e| e.to_string())
    }

    fn facts<'a>(orig: &str, resp: &str, port: u16, domain: Option<&'a str>) -> Facts<'a> {
        Facts {
            module: Some("conn"),
            orig_h: orig.parse().ok(),
            resp_h: resp.parse().ok(),
            resp_p: Some(port),
            domain,
            ..Facts::default()
        }
    }

    #[test]
    fn every_condition_of_a_rule_must_hold() {
        let r = rules(
            "[[rule]]\nsource = \"10.0.0.0/8\"\nport = 443\ndomain = \"example.com\"\naction = \"drop\"\n",
        )
        .unwrap();
        let rule = &r.rules[0];
        assert!(rule.matches(&facts("10.1.2.3", "1.1.1.1", 443, Some("www.Example.com."))));
        assert!(rule.matches(&facts("10.1.2.3", "1.1.1.1", 443, Some("example.com"))));
        assert!(!rule.matches(&facts("10.1.2.3", "1.1.1.1", 443, Some("badexample.com"))));
        assert!(!rule.matches(&facts("10.1.2.3", "1.1.1.1", 80, Some("example.com"))));
        assert!(!rule.matches(&facts("11.1.2.3", "1.1.1.1", 443, Some("example.com"))));
        assert!(!rule.matches(&facts("10.1.2.3", "1.1.1.1", 443, None)));
    }

    /// Names from the traffic whose last bytes split a multi-byte
    /// character (an attacker's Host header) neither match nor panic;
    /// names and rules in other scripts still match.
    #[test]
    fn a_domain_rule_takes_any_name_from_the_traffic() {
        let r = rules("[[rule]]\ndomain = \"example.com\"\naction = \"drop\"\n").unwrap();
        let rule = &r.rules[0];
        let at = |name: &'static str| facts("10.1.2.3", "1.1.1.1", 80, Some(name));
        // "é" is two bytes: the 11 last bytes start inside it.
        for name in ["é0123456789", "\u{10348}xample.com", "日本.é", ".", ""] {
            assert!(!rule.matches(&at(name)), "{name:?}");
        }
        assert!(rule.matches(&at("é.example.com")));
        let r = rules("[[rule]]\ndomain = \"bücher.de\"\naction = \"drop\"\n").unwrap();
        assert!(r.rules[0].matches(&at("WWW.bücher.DE")));
        assert!(r.rules[0].matches(&at("shop.bücher.de.")));
        assert!(!r.rules[0].matches(&at("xbücher.de")));
    }

    #[test]
    fn features_match_a_column_or_its_values() {
        let r = rules("[[rule]]\nfeature = \"proto\"\naction = \"no_alert\"\n").unwrap();
        let c = |f: &str| crate::score::Contribution {
            feature: f.into(),
            share: 0.5,
            observed: None,
            expected: None,
        };
        let udp = [c("proto=udp")];
        let protocol = [c("protocol_x")];
        let f = |features| Facts {
            features,
            ..Facts::default()
        };
        assert!(r.rules[0].matches(&f(&udp)));
        assert!(!r.rules[0].matches(&f(&protocol)));
    }

    #[test]
    fn bad_files_name_the_line_and_what_to_do() {
        let e = rules("[[rule]]\naction = \"drop\"\n").unwrap_err();
        assert!(
            e.starts_with("/etc/azw/allow.toml:1: a rule needs at least one"),
            "{e}"
        );
        let e = rules("[[rule]]\nport = 1\naction = \"drop\"\n\n[[rule]]\nsource = \"10.0.0.300\"\naction = \"drop\"\n").unwrap_err();
        assert!(e.contains(":5: `10.0.0.300` is not an address"), "{e}");
        let e = rules("[[rule]]\nport = 1\naction = \"ignore\"\n").unwrap_err();
        assert!(e.contains(":3:") && e.contains("ignore"), "{e}");
        let e = rules("[[rule]]\nfeature = \"resp_p\"\naction = \"drop\"\n").unwrap_err();
        assert!(e.contains("need action = \"no_alert\""), "{e}");
        let e = rules("[[rule]]\nport = 1\naction = \"drop\"\nexpires = \"soon\"\n").unwrap_err();
        assert!(e.contains("write a date"), "{e}");
        let e = rules("[[rule]]\nprot = 1\naction = \"drop\"\n").unwrap_err();
        assert!(e.contains("prot"), "{e}");
    }

    /// A deleted or broken allowlist is read (and its error logged) once
    /// per change, not at every check; a lane that opens it while it is
    /// broken applies its rules once it is fixed.
    #[test]
    fn a_refused_file_is_read_again_only_once_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("allow.toml");
        let good = "[[rule]]\nport = 1\naction = \"drop\"\n";
        std::fs::write(&path, good).unwrap();
        let mut a = Allowlist::open(&path, Duration::ZERO).unwrap();
        std::fs::remove_file(&path).unwrap();
        for _ in 0..5 {
            a.check();
        }
        assert_eq!(
            (a.loads, a.rules().len()),
            (2, 1),
            "the rules in force stay"
        );

        std::fs::write(&path, "[[rule]]\nport = \"x\"\n").unwrap();
        let mut a = Allowlist::open_or_wait(&path, Duration::ZERO);
        for _ in 0..5 {
            a.check();
        }
        assert_eq!((a.loads, a.rules().len()), (1, 0));
        // Fixed (its size differs, so its stamp does).
        std::fs::write(&path, good).unwrap();
        a.check();
        assert_eq!((a.loads, a.rules().len()), (2, 1), "applied once it loads");
        a.check();
        assert_eq!(a.loads, 2);
    }

    /// `kind` limits a `no_alert` rule to the models' anomalies or to the
    /// detections: the scanners of a server silenced, its beacon not.
    #[test]
    fn a_rule_of_one_kind_leaves_the_other_alone() {
        let server = "64.225.56.201";
        let text = |kind: &str| {
            format!("[[rule]]\ndestination = \"{server}\"\n{kind}action = \"no_alert\"\n")
        };
        let mut anomaly = ScoredRecord::score_only(LogKind::CONN, Some(1.0), 2.0, 1.0, true);
        anomaly.orig_h = "198.51.100.9".parse().ok();
        anomaly.resp_h = server.parse().ok();
        let record = Record::new(
            std::sync::Arc::new(crate::zeek::Schema::new(vec![
                "id.orig_h".into(),
                "id.resp_h".into(),
            ])),
            vec![
                crate::zeek::Value::Addr(anomaly.orig_h.unwrap()),
                crate::zeek::Value::Addr(anomaly.resp_h.unwrap()),
            ],
            1,
        );
        let beacon = Detection {
            ts: 1.0,
            detection: crate::detect::DetectorKind::Beacon,
            module: LogKind::CONN,
            src: "73.54.23.243".parse().unwrap(),
            dst: server.parse().ok(),
            resp_p: Some(80),
            domain: None,
            score: 0.97,
            threshold: 0.9,
            severity: crate::severity::Severity::High,
            first_ts: 0.0,
            last_ts: 1.0,
            uids: Vec::new(),
            evidence: Default::default(),
            src_local: None,
        };
        let silenced = |kind: &str| {
            let r = rules(&text(kind)).unwrap();
            (
                r.silences(&anomaly, &record),
                r.silences_detection(&beacon),
                r.before_scoring(LogKind::CONN, &record),
            )
        };
        assert_eq!(silenced(""), (true, true, Some(Action::NoAlert)));
        assert_eq!(silenced("kind = \"anomaly\"\n"), (true, false, None));
        assert_eq!(silenced("kind = \"detection\"\n"), (false, true, None));
        // What cannot mean anything is refused with its reason.
        for (rule, says) in [
            (
                "kind = \"anomaly\"\naction = \"no_alert\"\n",
                "at least one of",
            ),
            (
                "port = 1\nkind = \"anomaly\"\naction = \"drop\"\n",
                "need action = \"no_alert\"",
            ),
            (
                "detector = \"beacon\"\nkind = \"anomaly\"\naction = \"no_alert\"\n",
                "can match nothing",
            ),
            (
                "feature = \"resp_p\"\nkind = \"detection\"\naction = \"no_alert\"\n",
                "can match nothing",
            ),
            (
                "port = 1\nkind = \"alert\"\naction = \"no_alert\"\n",
                "alert",
            ),
        ] {
            let e = rules(&format!("[[rule]]\n{rule}")).unwrap_err();
            assert!(e.contains(says), "{rule}: {e}");
        }
    }

    #[test]
    fn expired_rules_stop_matching() {
        let r = rules(
            "[[rule]]\nport = 1\naction = \"drop\"\nexpires = \"2001-01-01\"\n\n[[rule]]\nport = 2\naction = \"drop\"\nexpires = \"2999-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let live: Vec<_> = r.live(now()).map(|r| r.port).collect();
        assert_eq!(live, [Some(2)]);
    }
}
