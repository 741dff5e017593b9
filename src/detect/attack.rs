//! What each detector reports, in MITRE ATT&CK's terms: the tactic and
//! technique a SIEM files it under (ECS `threat.*`, the `mitre_*` metadata
//! of Suricata's EVE alerts), so that an analyst can filter and count
//! them with the rest of the site's alerts.
//!
//! Only what the behaviour itself says is named (ATT&CK v15 ids and
//! names, <https://attack.mitre.org>):
//! - a beacon is command and control over an application protocol
//!   (T1071), whichever it is, or, when its connections are ICMP, over a
//!   non-application protocol (T1095);
//! - a DNS tunnel is command and control over DNS (T1071.004);
//! - a burst of NXDOMAIN answers is what a domain generation algorithm
//!   leaves (T1568.002);
//! - a long connection is a command-and-control tactic, with no one
//!   technique: an interactive session or a tunnel over any protocol;
//! - a large upload is the exfiltration tactic, with no one technique
//!   either: the volume says that data left, not over what;
//! - a scan or sweep from outside the local networks is reconnaissance
//!   (Active Scanning, T1595; a sweep of hosts T1595.001); from inside it
//!   is discovery (a port scan Network Service Discovery, T1046; a sweep
//!   for live hosts, pings included, Remote System Discovery, T1018), and
//!   is what a compromised host does next, which is why the two are told
//!   apart.
//!
//! A model's anomaly is no technique: it says that a record is unusual,
//! not what for.

use super::DetectorKind;

/// An ATT&CK tactic (`TA0011`), technique (`T1071`) or sub-technique
/// (`T1071.004`): id and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Term {
    pub id: &'static str,
    pub name: &'static str,
}

/// What a detection is in ATT&CK's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attack {
    pub tactic: Term,
    pub technique: Option<Term>,
    /// A sub-technique of `technique`.
    pub subtechnique: Option<Term>,
}

const COMMAND_AND_CONTROL: Term = Term::new("TA0011", "Command and Control");
const DISCOVERY: Term = Term::new("TA0007", "Discovery");
const RECONNAISSANCE: Term = Term::new("TA0043", "Reconnaissance");
const EXFILTRATION: Term = Term::new("TA0010", "Exfiltration");
const APPLICATION_LAYER_PROTOCOL: Term = Term::new("T1071", "Application Layer Protocol");
const ACTIVE_SCANNING: Term = Term::new("T1595", "Active Scanning");

/// The framework's name, as ECS's `threat.framework` spells it.
pub const FRAMEWORK: &str = "MITRE ATT&CK";

/// What `kind` reports; `from_outside`: whether the source of the traffic
/// is outside the local networks (`None`: not known, taken as inside,
/// whose tactic is the one that needs an analyst); `icmp`: whether the
/// traffic is ICMP (a beacon of pings is no application protocol).
pub fn of(kind: DetectorKind, from_outside: Option<bool>, icmp: bool) -> Attack {
    let c2 = |technique, subtechnique| Attack {
        tactic: COMMAND_AND_CONTROL,
        technique,
        subtechnique,
    };
    let scan = |subtechnique| match from_outside {
        Some(true) => Attack {
            tactic: RECONNAISSANCE,
            technique: Some(ACTIVE_SCANNING),
            subtechnique,
        },
        _ => Attack {
            tactic: DISCOVERY,
            technique: Some(match kind {
                DetectorKind::HostSweep => Term::new("T1018", "Remote System Discovery"),
                _ => Term::new("T1046", "Network Service Discovery"),
            }),
            subtechnique: None,
        },
    };
    match kind {
        DetectorKind::Beacon if icmp => c2(
            Some(Term::new("T1095", "Non-Application Layer Protocol")),
            None,
        ),
        DetectorKind::Beacon => c2(Some(APPLICATION_LAYER_PROTOCOL), None),
        DetectorKind::LongConnection => c2(None, None),
        DetectorKind::DnsTunnel => c2(
            Some(APPLICATION_LAYER_PROTOCOL),
            Some(Term::new("T1071.004", "DNS")),
        ),
        DetectorKind::NxdomainBurst => c2(
            Some(Term::new("T1568", "Dynamic Resolution")),
            Some(Term::new("T1568.002", "Domain Generation Algorithms")),
        ),
        DetectorKind::HostSweep => scan(Some(Term::new("T1595.001", "Scanning IP Blocks"))),
        DetectorKind::PortScan => scan(None),
        DetectorKind::LargeUpload => Attack {
            tactic: EXFILTRATION,
            technique: None,
            subtechnique: None,
        },
    }
}

impl Term {
    const fn new(id: &'static str, name: &'static str) -> Term {
        Term { id, name }
    }

    /// Its page: `tactics/TA0011/`, `techniques/T1071/`, and a
    /// sub-technique's `T1071.004` `techniques/T1071/004/`.
    pub fn reference(&self) -> String {
        match self.id.strip_prefix("TA") {
            Some(_) => format!("https://attack.mitre.org/tactics/{}/", self.id),
            None => format!(
                "https://attack.mitre.org/techniques/{}/",
                self.id.replace('.', "/")
            ),
        }
    }
}

/// A tactic's or technique's name as Emerging Threats' rule metadata
/// spells it, which readers of Suricata's EVE key on: each word
/// capitalised, joined by `_` (`Command_And_Control`).
pub fn metadata_name(name: &str) -> String {
    let words: Vec<String> = name
        .split(' ')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect();
    words.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_detector_has_a_tactic_and_subtechniques_belong_to_their_technique() {
        for kind in DetectorKind::ALL {
            for (outside, icmp) in [(None, false), (Some(true), true), (Some(false), false)] {
                let a = of(kind, outside, icmp);
                assert!(a.tactic.id.starts_with("TA"), "{kind}");
                if let Some(sub) = a.subtechnique {
                    let t = a.technique.expect("a sub-technique has a technique");
                    assert!(sub.id.starts_with(&format!("{}.", t.id)), "{kind}");
                }
            }
        }
    }

    #[test]
    fn a_scan_from_outside_is_reconnaissance_from_inside_discovery() {
        let outside = of(DetectorKind::HostSweep, Some(true), false);
        assert_eq!(outside.tactic.name, "Reconnaissance");
        assert_eq!(outside.subtechnique.map(|t| t.id), Some("T1595.001"));
        let inside = of(DetectorKind::PortScan, Some(false), false);
        assert_eq!(inside.tactic.name, "Discovery");
        assert_eq!(inside.technique.map(|t| t.id), Some("T1046"));
        let sweep = of(DetectorKind::HostSweep, Some(false), true);
        assert_eq!(sweep.technique.map(|t| t.id), Some("T1018"));
        assert_eq!(sweep.subtechnique, None);
        // Unknown: the tactic that needs an analyst.
        assert_eq!(
            of(DetectorKind::PortScan, None, false).tactic.name,
            "Discovery"
        );
    }

    #[test]
    fn a_beacon_of_pings_is_no_application_protocol() {
        let t = |icmp| of(DetectorKind::Beacon, None, icmp).technique.unwrap().id;
        assert_eq!((t(false), t(true)), ("T1071", "T1095"));
    }

    #[test]
    fn references_name_attack_pages() {
        let dns = of(DetectorKind::DnsTunnel, None, false);
        assert_eq!(
            dns.subtechnique.unwrap().reference(),
            "https://attack.mitre.org/techniques/T1071/004/"
        );
        assert_eq!(
            dns.tactic.reference(),
            "https://attack.mitre.org/tactics/TA0011/"
        );
        assert_eq!(
            metadata_name(dns.technique.unwrap().name),
            "Application_Layer_Protocol"
        );
        assert_eq!(metadata_name(dns.tactic.name), "Command_And_Control");
    }
}
