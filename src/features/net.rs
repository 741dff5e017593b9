//! Which addresses are ours: traffic direction and broadcast destinations.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The networks counted as local, like Zeek's `Site::local_nets`.
///
/// Zeek leaves `local_orig`/`local_resp` unset when `Site::local_nets` is not
/// configured (the Python tool crashes on that), so direction is computed
/// here from the addresses instead, with the private ranges as the default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalNets(Vec<IpNet>);

/// RFC 1918, carrier-grade NAT (RFC 6598), link-local, loopback, IPv6
/// unique-local (RFC 4193), link-local and loopback.
pub const DEFAULT_LOCAL_NETS: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "fc00::/7",
    "fe80::/10",
    "::1/128",
];

impl Default for LocalNets {
    fn default() -> Self {
        LocalNets::parse(DEFAULT_LOCAL_NETS).expect("the default networks parse")
    }
}

impl LocalNets {
    /// Parses CIDR blocks (`10.0.0.0/8`, `2001:db8::/32`; a bare address is
    /// a single host).
    pub fn parse<S: AsRef<str>>(nets: &[S]) -> Result<LocalNets, String> {
        nets.iter()
            .map(|n| {
                let n = n.as_ref().trim();
                n.parse::<IpNet>()
                    .or_else(|_| n.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        format!("`{n}` is not a network (write it as 10.0.0.0/8 or 2001:db8::/32)")
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(LocalNets)
    }

    /// These networks, as they are.
    pub fn from_nets(nets: Vec<IpNet>) -> LocalNets {
        LocalNets(nets)
    }

    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = unmap(addr);
        self.0.iter().any(|n| n.contains(&addr))
    }

    /// The direction of a connection from its two addresses.
    pub fn direction(&self, orig: IpAddr, resp: IpAddr) -> Direction {
        match (self.contains(orig), self.contains(resp)) {
            (true, true) => Direction::Internal,
            (true, false) => Direction::Outbound,
            (false, true) => Direction::Inbound,
            (false, false) => Direction::External,
        }
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are IPv4 addresses.
fn unmap(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(addr),
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Internal,
    Outbound,
    Inbound,
    External,
}

impl Direction {
    pub const ALL: [Direction; 4] = [
        Direction::Internal,
        Direction::Outbound,
        Direction::Inbound,
        Direction::External,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Direction::Internal => "internal",
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::External => "external",
        }
    }
}

impl LocalNets {
    /// A destination that reaches many hosts: the limited broadcast, any
    /// multicast group (IPv4 224/4, IPv6 ff00::/8), or an address of the
    /// local networks ending in .255 (a directed broadcast on the common
    /// /24). Beyond them a .255 address is an ordinary host of a larger
    /// network, and a directed broadcast would not be forwarded to it
    /// (RFC 2644): a trickbot C2 server at 206.130.141.255 was called a
    /// broadcast in every explanation of its sessions.
    pub fn is_broadcast(&self, addr: IpAddr) -> bool {
        match unmap(addr) {
            IpAddr::V4(v4) => {
                v4.is_broadcast()
                    || v4.is_multicast()
                    || v4.octets()[3] == 255 && self.contains(IpAddr::V4(v4))
            }
            IpAddr::V6(v6) => v6.is_multicast(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn directions_with_default_nets() {
        let nets = LocalNets::default();
        assert_eq!(
            nets.direction(ip("10.1.2.3"), ip("192.168.1.1")),
            Direction::Internal
        );
        assert_eq!(
            nets.direction(ip("10.1.2.3"), ip("8.8.8.8")),
            Direction::Outbound
        );
        assert_eq!(
            nets.direction(ip("2001:db8::1"), ip("fd00::1")),
            Direction::Inbound
        );
        assert_eq!(
            nets.direction(ip("1.1.1.1"), ip("2606:4700::1111")),
            Direction::External
        );
        assert_eq!(
            nets.direction(ip("::ffff:10.0.0.1"), ip("8.8.8.8")),
            Direction::Outbound
        );
    }

    #[test]
    fn custom_nets_and_errors() {
        let nets = LocalNets::parse(&["203.0.113.0/24", "2001:db8::1"]).unwrap();
        assert!(nets.contains(ip("203.0.113.9")));
        assert!(nets.contains(ip("2001:db8::1")));
        assert!(!nets.contains(ip("10.0.0.1")));
        assert!(LocalNets::parse(&["10.0.0.0/33"])
            .unwrap_err()
            .contains("not a network"));
    }

    #[test]
    fn broadcast_and_multicast() {
        let nets = LocalNets::default();
        let is_broadcast = |a| nets.is_broadcast(ip(a));
        assert!(is_broadcast("255.255.255.255"));
        assert!(is_broadcast("192.168.1.255"));
        assert!(is_broadcast("224.0.0.251"));
        assert!(is_broadcast("ff02::fb"));
        assert!(is_broadcast("::ffff:10.0.0.255"));
        assert!(!is_broadcast("192.168.1.10"));
        assert!(!is_broadcast("2001:db8::ff"));
        // Beyond the local networks .255 is a host like any other.
        assert!(!is_broadcast("206.130.141.255"));
        let site = LocalNets::parse(&["198.51.100.0/24"]).unwrap();
        assert!(site.is_broadcast(ip("198.51.100.255")));
        assert!(!site.is_broadcast(ip("192.168.1.255")));
    }
}
