//! Which networks are the site's, learned from what Zeek already knows.
//!
//! Direction features are only as good as the local networks. The private
//! ranges are a default that fails every site with public address space (a
//! university /16, a company's block, an internet-facing sensor): both
//! directions look "external", and on one held-out HTTP set ROC-AUC was
//! 0.74 instead of 1.00. Zeek's conn.log says which addresses its
//! `Site::local_nets` holds (`local_orig`, `local_resp`), so training
//! learns the networks from those marks, summarised to prefixes, and every
//! module's model uses them (dns, http, ssl and ssh logs carry no marks).
//!
//! When nothing is marked, the training survey says so if the data
//! contradict the defaults: most records between two "external" addresses,
//! one of them in most of them, is a sensor with a public address.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use super::net::LocalNets;
use super::vocab::VocabCounter;

/// Where a model's local networks came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NetsOrigin {
    /// The private, CGNAT, link-local and loopback ranges (nothing said
    /// otherwise; models before this field existed).
    #[default]
    Defaults,
    /// Given with `--local-nets`.
    Given,
    /// Learned from Zeek's `local_orig`/`local_resp` marks.
    Learned {
        /// Conn records with a mark.
        records: u64,
        /// Distinct addresses Zeek marked local.
        addresses: u64,
    },
}

impl fmt::Display for NetsOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetsOrigin::Defaults => f.write_str(
                "the private defaults (Zeek marked nothing local; declare the site's networks with --local-nets)",
            ),
            NetsOrigin::Given => f.write_str("given by --local-nets"),
            NetsOrigin::Learned { records, addresses } => write!(
                f,
                "learned from Zeek's local_orig/local_resp: {addresses} local addresses in {records} conn records"
            ),
        }
    }
}

/// Prefixes tracked at most (of local addresses, and of non-local ones).
const MAX_PREFIXES: usize = 1 << 18;
/// Hosts remembered per IPv6 /64 (an IPv4 /24 has at most 256).
const MAX_V6_HOSTS: usize = 256;
/// Local hosts an IPv4 /24 needs before it counts whole: one public
/// address (an internet-facing sensor) says nothing of its neighbours,
/// which are other people's hosts. An IPv6 /64 is one subnet by design.
const MIN_HOSTS_FOR_V4_PREFIX: usize = 4;

/// The prefix an address is summarised to: its /24 or /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Prefix {
    V4(u32),
    V6(u64),
}

fn prefix(addr: IpAddr) -> Prefix {
    match addr {
        IpAddr::V4(a) => Prefix::V4(u32::from(a) >> 8),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Prefix::V4(u32::from(v4) >> 8),
            None => Prefix::V6((u128::from(a) >> 64) as u64),
        },
    }
}

fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_net(p: Prefix) -> IpNet {
    match p {
        Prefix::V4(n) => IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(n << 8), 24).expect("24 is a valid IPv4 prefix length"),
        ),
        Prefix::V6(n) => IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(u128::from(n) << 64), 64)
                .expect("64 is a valid IPv6 prefix length"),
        ),
    }
}

/// Learns the site's networks from conn records' `local_*` marks. Memory
/// is bounded: at most [`MAX_PREFIXES`] prefixes of each kind.
#[derive(Debug, Default)]
pub struct SiteLearner {
    /// Local prefixes and the local hosts seen in each.
    local: HashMap<Prefix, BTreeSet<IpAddr>>,
    /// Prefixes that hold an address Zeek marked not local.
    foreign: HashSet<Prefix>,
    marked_records: u64,
    /// Marks not recorded because the tables were full.
    dropped: u64,
}

impl SiteLearner {
    /// One conn record: its two addresses and Zeek's marks (`None`: unset).
    pub fn observe(
        &mut self,
        orig: Option<IpAddr>,
        resp: Option<IpAddr>,
        local_orig: Option<bool>,
        local_resp: Option<bool>,
    ) {
        if local_orig.is_none() && local_resp.is_none() {
            return;
        }
        self.marked_records += 1;
        for (addr, mark) in [(orig, local_orig), (resp, local_resp)] {
            let (Some(addr), Some(local)) = (addr, mark) else {
                continue;
            };
            let addr = unmap(addr);
            let p = prefix(addr);
            if local {
                let full = self.local.len() >= MAX_PREFIXES;
                match self.local.get_mut(&p) {
                    Some(hosts) => {
                        if matches!(p, Prefix::V4(_)) || hosts.len() < MAX_V6_HOSTS {
                            hosts.insert(addr);
                        }
                    }
                    None if full => self.dropped += 1,
                    None => {
                        self.local.insert(p, BTreeSet::from([addr]));
                    }
                }
            } else if self.foreign.len() < MAX_PREFIXES || self.foreign.contains(&p) {
                self.foreign.insert(p);
            } else {
                self.dropped += 1;
            }
        }
    }

    /// The learned networks, or `None` when Zeek marked no address local.
    /// A prefix with only local addresses counts whole (its /24 or /64);
    /// one that also holds addresses marked not local, or an IPv4 /24 with
    /// fewer than [`MIN_HOSTS_FOR_V4_PREFIX`] local hosts, counts by its
    /// local hosts only. Adjacent prefixes merge.
    pub fn finish(&self) -> Option<(LocalNets, NetsOrigin)> {
        if self.local.is_empty() {
            return None;
        }
        let mut nets = Vec::new();
        let mut addresses = 0u64;
        for (p, hosts) in &self.local {
            addresses += hosts.len() as u64;
            let few = matches!(p, Prefix::V4(_)) && hosts.len() < MIN_HOSTS_FOR_V4_PREFIX;
            if few || self.foreign.contains(p) {
                nets.extend(hosts.iter().map(|h| IpNet::from(*h)));
            } else {
                nets.push(prefix_net(*p));
            }
        }
        if self.dropped > 0 {
            tracing::warn!(
                "{} local_orig/local_resp marks were not counted: more than {MAX_PREFIXES} networks",
                self.dropped
            );
        }
        Some((
            LocalNets::from_nets(IpNet::aggregate(&nets)),
            NetsOrigin::Learned {
                records: self.marked_records,
                addresses,
            },
        ))
    }

    /// Addresses Zeek marked local that `nets` does not hold (at most
    /// `n`, and how many in all): given networks that miss part of the
    /// site.
    pub fn local_outside(&self, nets: &LocalNets, n: usize) -> (Vec<IpAddr>, usize) {
        let outside: Vec<IpAddr> = self
            .local
            .values()
            .flatten()
            .filter(|a| !nets.contains(**a))
            .copied()
            .collect();
        let count = outside.len();
        (outside.into_iter().take(n).collect(), count)
    }
}

/// Watches a module's training records for traffic the local networks
/// cannot explain: most records between two non-local addresses.
#[derive(Debug)]
pub struct DirectionSurvey {
    records: u64,
    external: u64,
    /// The addresses of external records, for the heaviest one.
    addresses: VocabCounter,
}

impl Default for DirectionSurvey {
    fn default() -> Self {
        DirectionSurvey {
            records: 0,
            external: 0,
            addresses: VocabCounter::with_capacity(1024),
        }
    }
}

/// A share of external records above this is worth a warning.
const EXTERNAL_WARN_SHARE: f64 = 0.5;

impl DirectionSurvey {
    pub fn observe(&mut self, nets: &LocalNets, orig: Option<IpAddr>, resp: Option<IpAddr>) {
        let (Some(o), Some(r)) = (orig, resp) else {
            return;
        };
        self.records += 1;
        if !nets.contains(o) && !nets.contains(r) {
            self.external += 1;
            self.addresses.add(&unmap(o).to_string());
            self.addresses.add(&unmap(r).to_string());
        }
    }

    /// A warning when most records are between two non-local addresses,
    /// naming the address in most of them (a sensor's own public address,
    /// typically) and how to declare it.
    pub fn warning(&self, origin: &NetsOrigin) -> Option<String> {
        if self.records == 0 {
            return None;
        }
        let share = self.external as f64 / self.records as f64;
        if share <= EXTERNAL_WARN_SHARE {
            return None;
        }
        let source = match origin {
            NetsOrigin::Defaults => "the private defaults",
            NetsOrigin::Given => "--local-nets",
            NetsOrigin::Learned { .. } => "the networks Zeek marked local",
        };
        let mut text = format!(
            "{:.0}% of the records are between two addresses outside the local networks ({source}), so their direction is \"external\"",
            share * 100.0
        );
        if let Some((addr, count)) = self.addresses.top(1).into_iter().next() {
            let in_share = count as f64 / self.records as f64;
            if in_share > EXTERNAL_WARN_SHARE {
                let net = match addr.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => format!("{addr}/128"),
                    _ => format!("{addr}/32"),
                };
                text.push_str(&format!(
                    "; {addr} takes part in {:.0}% of them: if it is the sensor's own address or in your network, declare it with --local-nets {net} (or its network's CIDR, with the private ranges if you use them)",
                    in_share * 100.0
                ));
            }
        }
        if matches!(origin, NetsOrigin::Defaults) {
            text.push_str(
                "; Zeek marks local addresses in conn.log's local_orig/local_resp when its Site::local_nets is set, and azw-train then learns them",
            );
        }
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn learns_prefixes_from_marks_and_keeps_mixed_ones_to_their_hosts() {
        let mut l = SiteLearner::default();
        for host in 1..=20 {
            let h = format!("128.32.{}.{host}", host % 2);
            l.observe(ip(&h), ip("8.8.8.8"), Some(true), Some(false));
        }
        // 203.0.113.0/24 holds one local host and one that is not (and
        // 128.32.0.1 is a 21st host of 128.32.0.0/23).
        l.observe(ip("203.0.113.5"), ip("128.32.0.1"), Some(true), Some(true));
        l.observe(ip("203.0.113.9"), ip("128.32.0.1"), Some(false), Some(true));
        l.observe(ip("2001:db8::1"), ip("8.8.4.4"), Some(true), Some(false));
        // A lone public sensor: itself, not its neighbours.
        l.observe(ip("45.1.2.3"), ip("64.225.56.201"), Some(false), Some(true));
        let (nets, origin) = l.finish().unwrap();
        let shown: Vec<String> = nets.nets().iter().map(|n| n.to_string()).collect();
        assert!(
            shown.contains(&"128.32.0.0/23".to_owned()),
            "merged: {shown:?}"
        );
        assert!(shown.contains(&"203.0.113.5/32".to_owned()), "{shown:?}");
        assert!(shown.contains(&"2001:db8::/64".to_owned()), "{shown:?}");
        assert!(!nets.contains("8.8.8.8".parse().unwrap()));
        assert!(!nets.contains("203.0.113.9".parse().unwrap()));
        assert!(shown.contains(&"64.225.56.201/32".to_owned()), "{shown:?}");
        assert!(!nets.contains("64.225.56.202".parse().unwrap()));
        assert_eq!(
            origin,
            NetsOrigin::Learned {
                records: 24,
                addresses: 20 + 1 + 1 + 1 + 1
            }
        );
        let (outside, n) = l.local_outside(&LocalNets::default(), 5);
        assert_eq!(n, 24, "none of them is private");
        assert_eq!(outside.len(), 5);
    }

    #[test]
    fn no_marks_learn_nothing() {
        let mut l = SiteLearner::default();
        l.observe(ip("10.0.0.1"), ip("8.8.8.8"), None, None);
        assert!(l.finish().is_none());
    }

    #[test]
    fn a_public_sensor_is_named_with_the_flag_that_declares_it() {
        let nets = LocalNets::default();
        let mut s = DirectionSurvey::default();
        for i in 0..90 {
            s.observe(&nets, ip(&format!("45.1.2.{i}")), ip("64.225.56.201"));
        }
        for _ in 0..10 {
            s.observe(&nets, ip("10.0.0.1"), ip("8.8.8.8"));
        }
        let w = s.warning(&NetsOrigin::Defaults).unwrap();
        assert!(w.starts_with("90% of the records"), "{w}");
        assert!(w.contains("64.225.56.201 takes part in 90%"), "{w}");
        assert!(w.contains("--local-nets 64.225.56.201/32"), "{w}");
        let mut quiet = DirectionSurvey::default();
        quiet.observe(&nets, ip("10.0.0.1"), ip("8.8.8.8"));
        assert!(quiet.warning(&NetsOrigin::Defaults).is_none());
    }
}
