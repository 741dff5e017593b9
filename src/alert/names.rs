//! What each host's peers were called: the TLS server names, HTTP Hosts
//! and DNS queries its traffic to them came with, so that an alert names
//! `c2.example.com`, not only the address a beacon went to (an analyst
//! looked each one up in three other logs); and the user agents its HTTP
//! requests to them gave, a beacon's signature even when it sends no Host
//! (RITA's planted beacon says `Modzilla/0.0001 (Atari 7800)`).
//!
//! The names come from every record of those log types, flagged or not,
//! as they are read. When an item folds into an alert, its peer is named
//! by the names first seen no later than the item, the most recently
//! first seen first (a shared or CDN address the host has long used for
//! other sites shows the new name first), and the alert keeps them to its
//! closing. Items fold once every log type has read past them (the
//! watermark, [`super`]), so by then a live run has read the names of
//! that time as a replay has, and later names are not shown in either:
//! the same alerts in every mode, but for names read after their time's
//! items folded (counted as `late_names`), a pair given two or more new
//! names between an item and what was read ahead of it (a replay reads up
//! to an hour's file ahead, a live run less: the book keeps [`PER_PAIR`],
//! so the oldest shown can go), and, past [`MAX_PAIRS`], which pairs were
//! named least recently.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::detect::bounded::BoundedMap;
use crate::detect::observation::{DnsFacts, NameFacts};

/// Client and server pairs whose names are kept (the least recently named
/// go first): 8 MB of checkpoint with one 33-byte name each, 49 MB with
/// [`PER_PAIR`] of [`MAX_NAME`] (measured).
pub const MAX_PAIRS: usize = 100_000;
/// Names kept per pair: the most recently first seen (a server with many
/// names, a CDN or shared host, keeps its newest; a beacon has one), one
/// more than an alert shows ([`SHOWN`]), so that one new name read ahead
/// by a replay does not push out one an item of a live run sees.
pub const PER_PAIR: usize = 4;
/// Names an alert shows per peer.
pub const SHOWN: usize = 3;
/// The longest name kept: a host name an analyst reads is far shorter
/// (DNS allows 253 bytes); longer ones, a tunnel's label soup, are the
/// DNS tunnel detector's, and would triple what a flood of them costs.
const MAX_NAME: usize = 100;
/// User agents kept per pair, and shown: a program gives one, a browser
/// one a version; a second tells a host whose traffic to the peer came
/// from two programs.
pub const AGENTS_PER_PAIR: usize = 2;
/// The longest user agent kept, escaped: a browser's is about 120 bytes;
/// a longer one is cut (with `...`), which still tells it apart.
const MAX_AGENT: usize = 160;

/// One name or user agent of a pair, and when it was first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Named(
    f64,
    Box<str>,
    // A name in a checkpoint from before user agents.
    #[serde(default, skip_serializing_if = "Said::is_name")] Said,
);

/// What a [`Named`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Said {
    #[default]
    Name,
    Agent,
}

impl Said {
    fn is_name(&self) -> bool {
        *self == Said::Name
    }

    fn kept(self) -> usize {
        match self {
            Said::Name => PER_PAIR,
            Said::Agent => AGENTS_PER_PAIR,
        }
    }
}

/// What a client called a server and the user agents it gave it, the
/// most recently first seen first.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerNames {
    pub names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
}

impl PeerNames {
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.agents.is_empty()
    }
}

/// An open alert's names of a peer as checkpoints hold them: a list of
/// names (before user agents) or both.
#[derive(Deserialize)]
#[serde(untagged)]
enum SavedPeerNames {
    Names(Vec<String>),
    Both {
        names: Vec<String>,
        #[serde(default)]
        agents: Vec<String>,
    },
}

impl<'de> Deserialize<'de> for PeerNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PeerNames, D::Error> {
        Ok(match SavedPeerNames::deserialize(d)? {
            SavedPeerNames::Names(names) => PeerNames {
                names,
                agents: Vec::new(),
            },
            SavedPeerNames::Both { names, agents } => PeerNames { names, agents },
        })
    }
}

/// The names of client and server pairs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Names {
    pairs: BoundedMap<(IpAddr, IpAddr), Vec<Named>>,
}

impl Default for Names {
    fn default() -> Names {
        Names::with_cap(MAX_PAIRS)
    }
}

impl Names {
    pub fn with_cap(cap: usize) -> Names {
        Names {
            pairs: BoundedMap::new(cap),
        }
    }

    /// A TLS server name or HTTP Host, and an HTTP user agent; whether it
    /// told anything of the server.
    pub fn learn_name(&mut self, n: &NameFacts) -> bool {
        if !n.ts.is_finite() {
            return false;
        }
        let name = clean(&n.name);
        if let Some(name) = &name {
            self.learn(n.ts, n.client, n.server, name, Said::Name);
        }
        let agent = n.agent.as_deref().and_then(clean_agent);
        if let Some(agent) = &agent {
            self.learn(n.ts, n.client, n.server, agent, Said::Agent);
        }
        name.is_some() || agent.is_some()
    }

    /// A DNS answer: each address the client was given is called the
    /// query; whether it named one.
    pub fn learn_dns(&mut self, d: &DnsFacts) -> bool {
        let Some(query) = d.query.as_deref().and_then(clean) else {
            return false;
        };
        if !d.ts.is_finite() || d.answers.is_empty() {
            return false;
        }
        for server in &d.answers {
            self.learn(d.ts, d.src, *server, &query, Said::Name);
        }
        true
    }

    /// `text`: cleaned ([`clean`], [`clean_agent`]).
    fn learn(&mut self, ts: f64, client: IpAddr, server: IpAddr, text: &str, said: Said) {
        let names = self.pairs.touch((client, server), Vec::new);
        match names.iter_mut().find(|n| n.2 == said && *n.1 == *text) {
            Some(n) => n.0 = n.0.min(ts),
            None => {
                // One more, not four (a vector's first growth): most pairs
                // have one name, and 100,000 of them are at the cap.
                names.reserve_exact(1);
                names.push(Named(ts, text.into(), said));
            }
        }
        // Names, then user agents, each the most recently first seen
        // first, whatever order the records came in; as many of each as
        // are kept.
        names.sort_by(|a, b| {
            (a.2.cmp(&b.2))
                .then_with(|| b.0.total_cmp(&a.0))
                .then_with(|| a.1.cmp(&b.1))
        });
        let mut seen = 0;
        let mut last = None;
        names.retain(|n| {
            if last != Some(n.2) {
                (last, seen) = (Some(n.2), 0);
            }
            seen += 1;
            seen <= n.2.kept()
        });
    }

    /// The names `client` used for `server` first seen by `by` (at most
    /// [`SHOWN`]), and its user agents (at most [`AGENTS_PER_PAIR`]), the
    /// most recently first seen first.
    pub fn of(&self, client: IpAddr, server: IpAddr, by: f64) -> PeerNames {
        let Some(kept) = self.pairs.get(&(client, server)) else {
            return PeerNames::default();
        };
        let said = |said: Said, most: usize| {
            (kept.iter())
                .filter(|n| n.2 == said && n.0 <= by)
                .take(most)
                .map(|n| n.1.to_string())
                .collect()
        };
        PeerNames {
            names: said(Said::Name, SHOWN),
            agents: said(Said::Agent, AGENTS_PER_PAIR),
        }
    }
}

/// A user agent as kept and shown: what [`crate::escape::terminal`] makes
/// of it (an attacker writes it: no control or bidi character reaches an
/// alert's sentence or a terminal raw), cut to [`MAX_AGENT`] bytes; `None`
/// for an empty one.
fn clean_agent(agent: &str) -> Option<String> {
    let agent = agent.trim();
    if agent.is_empty() {
        return None;
    }
    let mut shown = crate::escape::terminal(agent).into_owned();
    if shown.len() > MAX_AGENT {
        let mut cut = MAX_AGENT - 3;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    Some(shown)
}

/// A name as shown: lower case, without a trailing dot or an HTTP Host's
/// port; `None` for what names nothing (empty, an address) or holds
/// characters no host name has (anything an attacker writes into a Host
/// header or an SNI: spaces, quotes, control characters), so an alert's
/// sentence never carries them.
fn clean(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.');
    // `example.com:8080`; not an IPv6 literal's colons.
    let name = match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => name,
    };
    if name.is_empty()
        || name.len() > MAX_NAME
        || name.parse::<IpAddr>().is_ok()
        || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log_kind::LogKind;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sni(ts: f64, client: &str, server: &str, name: &str) -> NameFacts {
        NameFacts {
            ts,
            log: LogKind::SSL,
            client: ip(client),
            server: ip(server),
            name: name.into(),
            agent: None,
        }
    }

    /// The names shown are the most recently first seen by the time
    /// asked for, whatever order the records came in: a CDN address the
    /// host used for other sites before shows a beacon's new name first.
    #[test]
    fn a_pair_shows_its_newest_names_whatever_order_they_came_in() {
        let mut a = Names::default();
        let mut b = Names::default();
        let seen = [
            (50.0, "c.example.com"),
            (10.0, "b.example.com"),
            (30.0, "d.example.com"),
            (20.0, "a.example.com"),
            (5.0, "b.example.com"),
            (1.0, "e.example.com"),
        ];
        for (ts, name) in seen {
            a.learn_name(&sni(ts, "10.0.0.1", "192.0.2.1", name));
        }
        for (ts, name) in seen.iter().rev() {
            b.learn_name(&sni(*ts, "10.0.0.1", "192.0.2.1", name));
        }
        let (c, s) = (ip("10.0.0.1"), ip("192.0.2.1"));
        for names in [&a, &b] {
            assert_eq!(
                names.of(c, s, f64::INFINITY).names,
                ["c.example.com", "d.example.com", "a.example.com"]
            );
            // Not a name first seen after the item asked for.
            assert_eq!(names.of(c, s, 19.0).names, ["b.example.com"]);
            assert_eq!(
                names.of(c, s, 35.0).names,
                ["d.example.com", "a.example.com", "b.example.com"]
            );
            // Four kept: the oldest first seen went.
            assert!(names.of(c, s, 4.0).is_empty());
            // Another pair's names are not this one's.
            assert!(names.of(s, c, f64::INFINITY).is_empty());
            assert!(names.of(c, ip("192.0.2.2"), f64::INFINITY).is_empty());
        }
    }

    #[test]
    fn dns_answers_name_the_addresses_given() {
        let mut n = Names::default();
        n.learn_dns(&DnsFacts {
            ts: 7.0,
            uid: None,
            src: ip("10.0.0.1"),
            query: Some("c2.example.net".into()),
            rcode: Some(0),
            answers: vec![ip("198.51.100.1"), ip("2001:db8::1")],
        });
        for server in ["198.51.100.1", "2001:db8::1"] {
            assert_eq!(
                n.of(ip("10.0.0.1"), ip(server), 7.0).names,
                ["c2.example.net"],
                "{server}"
            );
        }
        assert!(n.of(ip("10.0.0.2"), ip("198.51.100.1"), 7.0).is_empty());
    }

    /// What a Host header or SNI can hold that names nothing, or that an
    /// alert's sentence must not carry.
    #[test]
    fn hostile_and_empty_names_are_not_kept() {
        assert_eq!(clean("Example.COM.").as_deref(), Some("example.com"));
        assert_eq!(clean("example.com:8080").as_deref(), Some("example.com"));
        assert_eq!(
            clean("_dmarc.example.com").as_deref(),
            Some("_dmarc.example.com")
        );
        for bad in [
            "",
            ".",
            "192.0.2.1",
            "192.0.2.1:80",
            "[2001:db8::1]",
            "[2001:db8::1]:443",
            "2001:db8::1",
            "evil.com\n2024-01-01 fake log line",
            "a b",
            "\u{1b}[31mred",
            "x\"y",
            "caf\u{e9}.example",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert_eq!(clean(bad), None, "{bad:?}");
        }
    }

    fn agent(ts: f64, host: &str, agent: &str) -> NameFacts {
        NameFacts {
            ts,
            log: LogKind::HTTP,
            client: ip("10.0.0.1"),
            server: ip("192.0.2.1"),
            name: host.into(),
            agent: Some(agent.into()),
        }
    }

    /// A pair's user agents are kept beside its names, neither pushing
    /// the other out: the most recently first seen of each.
    #[test]
    fn user_agents_are_kept_beside_names() {
        let mut n = Names::default();
        for i in 0..6 {
            let ts = f64::from(i);
            n.learn_name(&agent(ts, &format!("n{i}.example"), &format!("agent/{i}")));
        }
        // A request without a Host tells its user agent alone.
        assert!(n.learn_name(&agent(9.0, "", "Modzilla/0.0001 (Atari 7800)")));
        let got = n.of(ip("10.0.0.1"), ip("192.0.2.1"), f64::INFINITY);
        assert_eq!(got.names, ["n5.example", "n4.example", "n3.example"]);
        assert_eq!(got.agents, ["Modzilla/0.0001 (Atari 7800)", "agent/5"]);
        let got = n.of(ip("10.0.0.1"), ip("192.0.2.1"), 5.5);
        assert_eq!(got.agents, ["agent/5"]);
        // Two kept: the older went.
        assert!(n.of(ip("10.0.0.1"), ip("192.0.2.1"), 4.5).agents.is_empty());
        // Nothing named, nothing told.
        assert!(!n.learn_name(&agent(10.0, "", " ")));
        // Kept through a checkpoint, and one written before user agents
        // (a name is `[ts, name]`) reads as names.
        let back: Names = serde_json::from_str(&serde_json::to_string(&n).unwrap()).unwrap();
        let again = back.of(ip("10.0.0.1"), ip("192.0.2.1"), f64::INFINITY);
        assert_eq!(again, n.of(ip("10.0.0.1"), ip("192.0.2.1"), f64::INFINITY));
        let old = r#"{"pairs":{"cap":10,"evicted":0,"entries":[[["10.0.0.1","192.0.2.1"],[[3.0,"old.example"]]]]}}"#;
        let old: Names = serde_json::from_str(old).unwrap();
        let got = old.of(ip("10.0.0.1"), ip("192.0.2.1"), 5.0);
        assert_eq!(
            (got.names, got.agents),
            (vec!["old.example".to_owned()], vec![])
        );
    }

    /// What an attacker writes into a user agent reaches an alert escaped
    /// and cut.
    #[test]
    fn hostile_user_agents_are_escaped_and_cut() {
        assert_eq!(
            clean_agent("evil\n\u{1b}[31mred\u{202e}x").as_deref(),
            Some("evil\\n\\x1b[31mred\\u{202e}x")
        );
        let long = clean_agent(&"\u{e9}".repeat(200)).unwrap();
        assert!(long.len() <= MAX_AGENT && long.ends_with("..."), "{long}");
        assert_eq!(clean_agent("  "), None);
    }

    /// A flood of pairs (every spoofed client with its own name) keeps
    /// at most the cap, the most recently named.
    #[test]
    fn pairs_are_bounded() {
        let mut n = Names::with_cap(100);
        for i in 0..10_000u32 {
            let client = IpAddr::from(i.to_be_bytes());
            n.learn(
                f64::from(i),
                client,
                ip("192.0.2.1"),
                &format!("n{i}.example"),
                Said::Name,
            );
        }
        assert!(n.pairs.len() <= 100);
        let last = IpAddr::from(9_999u32.to_be_bytes());
        assert_eq!(n.of(last, ip("192.0.2.1"), 1e9).names, ["n9999.example"]);
        let saved = serde_json::to_string(&n).unwrap();
        let back: Names = serde_json::from_str(&saved).unwrap();
        assert_eq!(back.of(last, ip("192.0.2.1"), 1e9).names, ["n9999.example"]);
    }
}
