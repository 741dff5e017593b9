//! What each host's peers were called: the TLS server names, HTTP Hosts
//! and DNS queries its traffic to them came with, so that an alert names
//! `c2.example.com`, not only the address a beacon went to (an analyst
//! looked each one up in three other logs).
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

/// One name of a pair, and when it was first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Named(f64, Box<str>);

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

    /// A TLS server name or HTTP Host; whether it named a server.
    pub fn learn_name(&mut self, n: &NameFacts) -> bool {
        let Some(name) = clean(&n.name).filter(|_| n.ts.is_finite()) else {
            return false;
        };
        self.learn(n.ts, n.client, n.server, &name);
        true
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
            self.learn(d.ts, d.src, *server, &query);
        }
        true
    }

    /// `name`: cleaned ([`clean`]).
    fn learn(&mut self, ts: f64, client: IpAddr, server: IpAddr, name: &str) {
        let names = self.pairs.touch((client, server), Vec::new);
        match names.iter_mut().find(|n| *n.1 == *name) {
            Some(n) => n.0 = n.0.min(ts),
            None => {
                // One more, not four (a vector's first growth): most pairs
                // have one name, and 100,000 of them are at the cap.
                names.reserve_exact(1);
                names.push(Named(ts, name.into()));
            }
        }
        // The most recently first seen, whatever order the records came
        // in.
        names.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        names.truncate(PER_PAIR);
    }

    /// The names `client` used for `server` first seen by `by`, the most
    /// recently first seen first, at most [`SHOWN`].
    pub fn of(&self, client: IpAddr, server: IpAddr, by: f64) -> Vec<String> {
        self.pairs
            .get(&(client, server))
            .map(|names| {
                names
                    .iter()
                    .filter(|n| n.0 <= by)
                    .take(SHOWN)
                    .map(|n| n.1.to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
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
                names.of(c, s, f64::INFINITY),
                ["c.example.com", "d.example.com", "a.example.com"]
            );
            // Not a name first seen after the item asked for.
            assert_eq!(names.of(c, s, 19.0), ["b.example.com"]);
            assert_eq!(
                names.of(c, s, 35.0),
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
                n.of(ip("10.0.0.1"), ip(server), 7.0),
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
            );
        }
        assert!(n.pairs.len() <= 100);
        let last = IpAddr::from(9_999u32.to_be_bytes());
        assert_eq!(n.of(last, ip("192.0.2.1"), 1e9), ["n9999.example"]);
        let saved = serde_json::to_string(&n).unwrap();
        let back: Names = serde_json::from_str(&saved).unwrap();
        assert_eq!(back.of(last, ip("192.0.2.1"), 1e9), ["n9999.example"]);
    }
}
