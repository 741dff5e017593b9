//! Community ID v1: one flow hash that Zeek, Suricata, Elastic and most
//! SIEMs compute the same way, so an analyst can pivot from one of our
//! records to the same connection in every other tool
//! (<https://github.com/corelight/community-id-spec>).
//!
//! The hash is `base64(sha1(seed, saddr, daddr, proto, 0, sport, dport))`,
//! prefixed with the version `1:`, over the flow ordered so that both
//! directions give one value (smaller address first; on equal addresses,
//! smaller port first). ICMP and ICMPv6 have no ports: Zeek writes the
//! type as `id.orig_p` and the code as `id.resp_p`; a request/reply type
//! (echo, router solicitation, ...) is hashed as the pair (type, the
//! counterpart's type) so that the request and its answer match, and any
//! other message (unreachable, time exceeded) is one-way: (type, code),
//! never reordered.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha1::{Digest, Sha1};

/// IANA protocol numbers of the transports with ports (or ICMP's
/// type/code in their place).
pub const ICMP: u8 = 1;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMPV6: u8 = 58;
pub const SCTP: u8 = 132;

/// The protocol number of a Zeek `proto` value (`tcp`, `udp`, `icmp`,
/// and `sctp` from sensors that log it). Zeek logs ICMPv6 as `icmp`; an
/// IPv6 address pair makes it 58.
pub fn protocol_number(proto: &str, ipv6: bool) -> Option<u8> {
    // Compared without a lowered copy: this runs for every record written.
    let is = |name: &str| proto.eq_ignore_ascii_case(name);
    if is("tcp") {
        Some(TCP)
    } else if is("udp") {
        Some(UDP)
    } else if ipv6 && (is("icmp") || is("icmp6") || is("icmpv6")) {
        Some(ICMPV6)
    } else if is("icmp") {
        Some(ICMP)
    } else if is("sctp") {
        Some(SCTP)
    } else {
        None
    }
}

/// The counterpart of an ICMP request or reply type, by the spec's table
/// (Zeek's: it logs the counterpart as the responder's "port" of such a
/// message, the code of any other); `None` for a one-way message.
pub(crate) fn icmp_counterpart(proto: u8, kind: u16) -> Option<u16> {
    let pairs: &[(u16, u16)] = match proto {
        // Echo, router advertisement/solicitation, timestamp, information,
        // address mask.
        ICMP => &[(8, 0), (9, 10), (13, 14), (15, 16), (17, 18)],
        // Echo, MLD query/report, router and neighbor solicitation/
        // advertisement, node information, home agent address discovery.
        ICMPV6 => &[
            (128, 129),
            (130, 131),
            (133, 134),
            (135, 136),
            (139, 140),
            (144, 145),
        ],
        _ => return None,
    };
    pairs.iter().find_map(|&(a, b)| {
        if kind == a {
            Some(b)
        } else if kind == b {
            Some(a)
        } else {
            None
        }
    })
}

/// The length of a Community ID v1: `1:` and the 28 characters of a
/// SHA-1 digest in padded base64.
const LEN: usize = 30;

/// A Community ID v1 as text, `1:` and 28 characters of base64, held in
/// the value itself.
///
/// Why not a `String`: one is made for every record written, on a scoring
/// thread, and the record is dropped on the writing thread. A heap string
/// freed by another thread than the one that made it is the allocator's
/// slow path (glibc takes the other thread's arena lock, and the memory
/// goes back and forth between the processors' caches): together with the
/// context's string it was a tenth of a replay's writing thread.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommunityId([u8; LEN]);

impl CommunityId {
    /// `1:` and the digest in base64.
    fn of_digest(digest: &[u8]) -> CommunityId {
        let mut text = [0u8; LEN];
        text[..2].copy_from_slice(b"1:");
        // 20 bytes are 28 characters of base64: `text[2..]` fits them.
        let written = base64::engine::general_purpose::STANDARD
            .encode_slice(digest, &mut text[2..])
            .unwrap_or(0);
        debug_assert_eq!(written, LEN - 2);
        CommunityId(text)
    }

    /// Reads one back: `1:` and 28 characters of the base64 alphabet
    /// (padding included), as this module writes them; anything else is
    /// `None`.
    pub fn parse(text: &str) -> Option<CommunityId> {
        let bytes = text.as_bytes();
        let digits = bytes.strip_prefix(b"1:")?;
        let base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        if bytes.len() != LEN || !digits.iter().all(base64) {
            return None;
        }
        let mut text = [0u8; LEN];
        text.copy_from_slice(bytes);
        Some(CommunityId(text))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (base64 or checked by `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Read as the text it is, like a `String` (`as_deref()` on an option).
impl std::ops::Deref for CommunityId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CommunityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for CommunityId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for CommunityId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<CommunityId, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        CommunityId::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format_args!(
                "not a Community ID v1 (`1:` and 28 characters of base64): {:?}",
                crate::score::bounded(&text, 40)
            ))
        })
    }
}

/// The Community ID v1 of a flow, `1:<base64>`. `sport`/`dport` are the
/// ports, or for ICMP/ICMPv6 the type and code as Zeek logs them; `None`
/// for a protocol without ports. Addresses of different families have no
/// flow: `None`.
pub fn v1(
    seed: u16,
    saddr: IpAddr,
    daddr: IpAddr,
    proto: u8,
    ports: Option<(u16, u16)>,
) -> Option<CommunityId> {
    // The addresses' bytes on the stack: an ID is made for every record
    // written, and nothing here allocates.
    let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
    let len = match (saddr, daddr) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s[..4].copy_from_slice(&a.octets());
            d[..4].copy_from_slice(&b.octets());
            4
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s = a.octets();
            d = b.octets();
            16
        }
        _ => return None,
    };
    let (s, d) = (&s[..len], &d[..len]);
    let mut one_way = false;
    let ports = ports.map(|(sp, dp)| {
        if proto == ICMP || proto == ICMPV6 {
            match icmp_counterpart(proto, sp) {
                Some(other) => (sp, other),
                None => {
                    one_way = true;
                    (sp, dp)
                }
            }
        } else {
            (sp, dp)
        }
    });
    let swap = !one_way && (s > d || (s == d && ports.is_some_and(|(sp, dp)| sp > dp)));
    let (s, d, ports) = if swap {
        (d, s, ports.map(|(a, b)| (b, a)))
    } else {
        (s, d, ports)
    };
    // seed, saddr, daddr, proto, 0, sport, dport: at most 40 bytes.
    let mut input = [0u8; 40];
    let mut n = 0;
    for part in [&seed.to_be_bytes()[..], s, d, &[proto, 0]] {
        input[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    if let Some((sp, dp)) = ports {
        input[n..n + 2].copy_from_slice(&sp.to_be_bytes());
        input[n + 2..n + 4].copy_from_slice(&dp.to_be_bytes());
        n += 4;
    }
    Some(CommunityId::of_digest(&Sha1::digest(&input[..n])))
}

/// The Community ID of a Zeek record's 5-tuple (`proto` as Zeek writes
/// it); `None` without both addresses, or for a transport the spec gives
/// no ports to hash but Zeek has none of (`unknown_transport`).
pub fn for_zeek(
    seed: u16,
    orig_h: Option<IpAddr>,
    orig_p: Option<u16>,
    resp_h: Option<IpAddr>,
    resp_p: Option<u16>,
    proto: Option<&str>,
) -> Option<CommunityId> {
    let (o, r) = (orig_h?, resp_h?);
    let number = protocol_number(proto?, o.is_ipv6())?;
    v1(seed, o, r, number, Some((orig_p?, resp_p?)))
}

/// The Community ID of a record of a protocol without ports (IGMP, GRE,
/// ESP...), which Zeek logs as `unknown_transport` with its number in
/// `ip_proto` (Zeek 6 and later): the spec hashes the addresses and the
/// number alone. `None` for the protocols whose ID needs ports.
pub fn for_portless(
    seed: u16,
    orig_h: Option<IpAddr>,
    resp_h: Option<IpAddr>,
    proto: Option<&str>,
    ip_proto: Option<u8>,
) -> Option<CommunityId> {
    let number = ip_proto.filter(|n| ![ICMP, TCP, UDP, ICMPV6, SCTP].contains(n))?;
    if !proto?.eq_ignore_ascii_case("unknown_transport") {
        return None;
    }
    v1(seed, orig_h?, resp_h?, number, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors from the Community ID specification's baseline
    /// (<https://github.com/corelight/community-id-spec>, `baseline/`,
    /// commit c4ec2bc4, BSD-3-Clause): the expected IDs of the flows in
    /// its pcaps, with the default seed 0 (`baseline_deflt.json`) and
    /// seed 1 (`baseline_seed1.json`). The baseline lists ICMP flows with
    /// the counterpart type already in `dport` for request/reply types;
    /// the input here is what Zeek logs, (type, code 0).
    /// (proto, saddr, sport, daddr, dport, seed 0, seed 1)
    const VECTORS: [(u8, &str, u16, &str, u16, &str, &str); 16] = [
        // TCP over IPv4, both directions.
        (
            TCP,
            "128.232.110.120",
            34855,
            "66.35.250.204",
            80,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        ),
        (
            TCP,
            "66.35.250.204",
            80,
            "128.232.110.120",
            34855,
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
            "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
        ),
        // TCP over IPv6.
        (
            TCP,
            "2001:470:e5bf:dead:4957:2174:e82c:4887",
            63943,
            "2607:f8b0:400c:c03::1a",
            25,
            "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
            "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
        ),
        // UDP, both directions.
        (
            UDP,
            "192.168.1.52",
            54585,
            "8.8.8.8",
            53,
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        ),
        (
            UDP,
            "8.8.8.8",
            53,
            "192.168.1.52",
            54585,
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            "1:Q9We8WO3piVF8yEQBNJF4uiSVrI=",
        ),
        // SCTP, equal ports.
        (
            SCTP,
            "192.168.170.8",
            7,
            "192.168.170.56",
            7,
            "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=",
            "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg=",
        ),
        // ICMP echo request and its reply: one ID.
        (
            ICMP,
            "192.168.0.89",
            8,
            "192.168.0.1",
            0,
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        ),
        (
            ICMP,
            "192.168.0.1",
            0,
            "192.168.0.89",
            0,
            "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=",
            "1:03g6IloqVBdcZlPyX8r0hgoE7kA=",
        ),
        // ICMP time exceeded: one-way.
        (
            ICMP,
            "10.0.0.1",
            11,
            "10.0.0.2",
            0,
            "1:YHxtAirCG//0OzkcVAukqKQN9xM=",
            "1:XjUibYHaafLQ3pxQeiMI8g25q20=",
        ),
        // ICMPv6 neighbor solicitation and advertisement.
        (
            ICMPV6,
            "fe80::200:86ff:fe05:80da",
            135,
            "fe80::260:97ff:fe07:69ea",
            0,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            ICMPV6,
            "fe80::260:97ff:fe07:69ea",
            136,
            "fe80::200:86ff:fe05:80da",
            0,
            "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=",
            "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY=",
        ),
        (
            ICMPV6,
            "fe80::260:97ff:fe07:69ea",
            135,
            "fe80::200:86ff:fe05:80da",
            0,
            "1:zavyT/cezQr1fmImYCwYnMXbgck=",
            "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM=",
        ),
        // ICMPv6 destination unreachable (code 0) and time exceeded
        // (type 1 code 4 here): one-way.
        (
            ICMPV6,
            "3ffe:501:1800:2345::2",
            3,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            0,
            "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=",
            "1:lVEtCZpYu84Xqaa++3lXFyuu2n4=",
        ),
        (
            ICMPV6,
            "3ffe:501:410:0:2c0:dfff:fe47:33e",
            1,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            4,
            "1:hLZd0XGWojozrvxqE0dWB1iM6R0=",
            "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8=",
        ),
        // ICMPv6 echo reply, and router solicitation to a multicast group.
        (
            ICMPV6,
            "3ffe:501:0:1001::2",
            129,
            "3ffe:507:0:1:200:86ff:fe05:80da",
            0,
            "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=",
            "1:GfZxjAkDk2MkegpBYHV6tadtFXQ=",
        ),
        (
            ICMPV6,
            "fe80::200:86ff:fe05:80da",
            133,
            "ff02::2",
            0,
            "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=",
            "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8=",
        ),
    ];

    #[test]
    fn matches_the_published_baseline() {
        for (proto, s, sp, d, dp, seed0, seed1) in VECTORS {
            let (s, d) = (s.parse().unwrap(), d.parse().unwrap());
            assert_eq!(
                v1(0, s, d, proto, Some((sp, dp))).as_deref(),
                Some(seed0),
                "{proto} {s}:{sp} -> {d}:{dp}"
            );
            assert_eq!(
                v1(1, s, d, proto, Some((sp, dp))).as_deref(),
                Some(seed1),
                "seed 1: {proto} {s}:{sp} -> {d}:{dp}"
            );
        }
    }

    /// A protocol without ports (RSVP, 46) hashes the addresses alone.
    #[test]
    fn a_protocol_without_ports() {
        let (a, b) = ("10.1.12.1".parse().unwrap(), "10.1.12.2".parse().unwrap());
        let want = Some("1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=");
        assert_eq!(v1(0, a, b, 46, None).as_deref(), want);
        assert_eq!(v1(0, b, a, 46, None).as_deref(), want);
    }

    /// Zeek's `unknown_transport` with the number in `ip_proto`: the
    /// example IGMP record (computed by the spec's rule with Python's
    /// hashlib: seed, the lower address first, 2, a zero byte).
    #[test]
    fn a_zeek_record_of_a_protocol_without_ports() {
        let (a, b) = ("192.168.0.1".parse().ok(), "224.0.0.1".parse().ok());
        let want = Some("1:CnN0tVYrzFM2u+SZ3cRcFJ+K4IU=");
        let u = Some("unknown_transport");
        assert_eq!(for_portless(0, a, b, u, Some(2)).as_deref(), want);
        assert_eq!(for_portless(0, b, a, u, Some(2)).as_deref(), want);
        // Protocols with ports need them; other names are not Zeek's.
        assert_eq!(for_portless(0, a, b, u, Some(TCP)), None);
        assert_eq!(for_portless(0, a, b, Some("tcp"), Some(2)), None);
        assert_eq!(for_portless(0, a, b, u, None), None);
        assert_eq!(for_portless(0, a, None, u, Some(2)), None);
    }

    /// The record's way in: Zeek's proto names, ICMP over IPv6, and
    /// records without a flow.
    #[test]
    fn from_zeek_fields() {
        let a: IpAddr = "192.168.1.52".parse().unwrap();
        let b: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(
            for_zeek(0, Some(a), Some(54585), Some(b), Some(53), Some("udp")).as_deref(),
            Some("1:d/FP5EW3wiY1vCndhwleRRKHowQ=")
        );
        let v6a: IpAddr = "fe80::200:86ff:fe05:80da".parse().unwrap();
        let v6b: IpAddr = "fe80::260:97ff:fe07:69ea".parse().unwrap();
        assert_eq!(
            for_zeek(0, Some(v6a), Some(135), Some(v6b), Some(0), Some("icmp")).as_deref(),
            Some("1:dGHyGvjMfljg6Bppwm3bg0LO8TY=")
        );
        assert_eq!(
            for_zeek(0, Some(a), Some(1), Some(v6a), Some(2), Some("tcp")),
            None
        );
        assert_eq!(
            for_zeek(
                0,
                Some(a),
                Some(1),
                Some(b),
                Some(2),
                Some("unknown_transport")
            ),
            None
        );
        assert_eq!(
            for_zeek(0, None, Some(1), Some(b), Some(2), Some("tcp")),
            None
        );
        assert_eq!(
            for_zeek(0, Some(a), None, Some(b), Some(2), Some("tcp")),
            None
        );
    }

    /// An ID is written as its text and read back; text that is not one
    /// is refused, saying so.
    #[test]
    fn an_id_reads_back_and_nothing_else_does() {
        let a: IpAddr = "192.168.1.52".parse().unwrap();
        let b: IpAddr = "8.8.8.8".parse().unwrap();
        let id = v1(0, a, b, UDP, Some((54585, 53))).unwrap();
        assert_eq!(id.to_string(), "1:d/FP5EW3wiY1vCndhwleRRKHowQ=");
        assert_eq!(CommunityId::parse(id.as_str()), Some(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"1:d/FP5EW3wiY1vCndhwleRRKHowQ=\"");
        assert_eq!(serde_json::from_str::<CommunityId>(&json).unwrap(), id);
        for bad in [
            "",
            "1:",
            "2:d/FP5EW3wiY1vCndhwleRRKHowQ=",
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ",
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ==",
            "1:d/FP5EW3wiY1vCndhwleRRKHow\"=",
            "1:d/FP5EW3wiY1vCndhwleRRKHow\u{e9}",
        ] {
            assert_eq!(CommunityId::parse(bad), None, "{bad:?}");
            let json = serde_json::to_string(bad).unwrap();
            let err = serde_json::from_str::<CommunityId>(&json).unwrap_err();
            assert!(err.to_string().contains("not a Community ID"), "{err}");
        }
    }

    /// The spec README's own example: TCP 1.2.3.4:1122 -> 5.6.7.8:3344.
    #[test]
    fn readme_example() {
        let a = "1.2.3.4".parse().unwrap();
        let b = "5.6.7.8".parse().unwrap();
        assert_eq!(
            v1(0, a, b, TCP, Some((1122, 3344))).as_deref(),
            Some("1:wCb3OG7yAFWelaUydu0D+125CLM=")
        );
    }
}
