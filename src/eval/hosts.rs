//! Alert-level detection: what an analyst working the alert queue sees.
//! A host is malicious when any labeled uid it took part in (as the
//! alert's host: the source, or the local target of inbound traffic) is;
//! it is alerted at a severity when an alert of that severity or above
//! names it. Precision and recall are over hosts, per minimum severity.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use serde::Serialize;

use super::Truth;
use crate::alert::Alert;
use crate::severity::Severity;

/// The alerts of one host, as the report lists them.
#[derive(Debug, Clone, Serialize)]
pub struct HostAlerts {
    pub host: IpAddr,
    /// True, false, or unknown (no labeled uid of it was scored).
    pub malicious: Option<bool>,
    pub alerts: usize,
    /// Of them, alerts of what reached the host (role `target`): its
    /// inbound traffic is an alert apart from what it sent.
    pub as_target: usize,
    pub severity: Severity,
    pub records: u64,
    pub detections: u64,
}

/// At one minimum severity.
#[derive(Debug, Clone, Serialize)]
pub struct AtSeverity {
    pub min_severity: Severity,
    /// Alerts of that severity or above, and the hosts they name.
    pub alerts: usize,
    pub alerted_hosts: usize,
    pub malicious_alerted: usize,
    pub benign_alerted: usize,
    /// Alerted hosts without a labeled uid (not in precision).
    pub unlabeled_alerted: usize,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostLevel {
    pub malicious_hosts: usize,
    pub benign_hosts: usize,
    pub levels: Vec<AtSeverity>,
    /// Every alerted host, malicious first, then by severity.
    pub hosts: Vec<HostAlerts>,
}

/// `hosts`: each scored uid's alert host; `alerts`: the closed alerts.
pub fn host_level(truth: &Truth, hosts: &HashMap<String, IpAddr>, alerts: &[Alert]) -> HostLevel {
    let mut label: HashMap<IpAddr, bool> = HashMap::new();
    for (uid, (class, _)) in truth {
        if let Some(h) = hosts.get(uid) {
            let e = label.entry(*h).or_insert(false);
            *e |= class.is_malicious();
        }
    }
    let malicious_hosts = label.values().filter(|m| **m).count();
    let benign_hosts = label.len() - malicious_hosts;
    let mut by_host: BTreeMap<IpAddr, HostAlerts> = BTreeMap::new();
    for a in alerts {
        let h = by_host.entry(a.entity).or_insert(HostAlerts {
            host: a.entity,
            malicious: label.get(&a.entity).copied(),
            alerts: 0,
            as_target: 0,
            severity: a.severity,
            records: 0,
            detections: 0,
        });
        h.alerts += 1;
        h.as_target += usize::from(a.role == crate::alert::Role::Target);
        h.severity = h.severity.max(a.severity);
        h.records += a.records;
        h.detections += a.detections;
    }
    let levels = Severity::LEVELS
        .iter()
        .map(|&min| {
            let alerted: Vec<&HostAlerts> =
                by_host.values().filter(|h| h.severity >= min).collect();
            let malicious_alerted = alerted.iter().filter(|h| h.malicious == Some(true)).count();
            let benign_alerted = alerted
                .iter()
                .filter(|h| h.malicious == Some(false))
                .count();
            let judged = malicious_alerted + benign_alerted;
            AtSeverity {
                min_severity: min,
                alerts: alerts.iter().filter(|a| a.severity >= min).count(),
                alerted_hosts: alerted.len(),
                malicious_alerted,
                benign_alerted,
                unlabeled_alerted: alerted.len() - judged,
                precision: (judged > 0).then(|| malicious_alerted as f64 / judged as f64),
                recall: (malicious_hosts > 0)
                    .then(|| malicious_alerted as f64 / malicious_hosts as f64),
            }
        })
        .collect();
    let mut hosts: Vec<HostAlerts> = by_host.into_values().collect();
    hosts.sort_by(|a, b| {
        b.malicious
            .cmp(&a.malicious)
            .then(b.severity.cmp(&a.severity))
            .then(b.records.cmp(&a.records))
            .then(a.host.cmp(&b.host))
    });
    HostLevel {
        malicious_hosts,
        benign_hosts,
        levels,
        hosts,
    }
}

impl HostLevel {
    /// The table for people, after the per-uid one.
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  alerts per host: {} malicious hosts, {} benign (a host is malicious if any labeled uid of it is)",
            self.malicious_hosts, self.benign_hosts
        );
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>8} {:>10} {:>7} {:>10} {:>7}",
            "min severity", "alerts", "hosts", "malicious", "benign", "precision", "recall"
        );
        let f = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.3}"));
        for l in &self.levels {
            let _ = writeln!(
                s,
                "  {:<14} {:>7} {:>8} {:>10} {:>7} {:>10} {:>7}",
                l.min_severity.name(),
                l.alerts,
                l.alerted_hosts,
                l.malicious_alerted,
                l.benign_alerted,
                f(l.precision),
                f(l.recall)
            );
        }
        for h in self.hosts.iter().take(10) {
            let _ = writeln!(
                s,
                "    {:<40} {:<9} {} alert{}{}, {} records, {} detections ({})",
                h.host.to_string(),
                h.severity.name(),
                h.alerts,
                if h.alerts == 1 { "" } else { "s" },
                if h.as_target > 0 {
                    format!(" ({} as a target)", h.as_target)
                } else {
                    String::new()
                },
                h.records,
                h.detections,
                match h.malicious {
                    Some(true) => "malicious",
                    Some(false) => "benign",
                    None => "unlabeled",
                }
            );
        }
        if self.hosts.len() > 10 {
            let _ = writeln!(s, "    ... {} more alerted hosts", self.hosts.len() - 10);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Role, State};
    use crate::eval::labels::Class;

    fn alert(host: &str, severity: Severity) -> Alert {
        Alert {
            alert: "azw-1".into(),
            state: State::Closed,
            entity: host.parse().unwrap(),
            role: Role::Source,
            severity,
            first_ts: 0.0,
            last_ts: 1.0,
            since: None,
            records: 3,
            detections: 0,
            reminders: 0,
            peers: 1,
            top_peers: vec![],
            raised_for: vec![],
            modules: vec![],
            detectors: vec![],
            p_normal: None,
            top_features: vec![],
            uids: vec![],
            sample: None,
            reason: String::new(),
            local: None,
            closed_early: false,
            revision: 1,
            variants: Default::default(),
        }
    }

    #[test]
    fn hosts_are_counted_once_per_severity_with_precision_and_recall() {
        let mut truth = Truth::new();
        let mut hosts = HashMap::new();
        for (uid, host, class) in [
            ("a", "10.0.0.1", Class::Malicious),
            ("b", "10.0.0.1", Class::Benign),
            ("c", "10.0.0.2", Class::Benign),
            ("d", "10.0.0.3", Class::Benign),
        ] {
            truth.insert(uid.into(), (class, String::new()));
            hosts.insert(uid.to_owned(), host.parse().unwrap());
        }
        let alerts = vec![
            alert("10.0.0.1", Severity::High),
            alert("10.0.0.1", Severity::Low),
            alert("10.0.0.2", Severity::Low),
            alert("192.0.2.9", Severity::Critical),
        ];
        let h = host_level(&truth, &hosts, &alerts);
        assert_eq!((h.malicious_hosts, h.benign_hosts), (1, 2));
        let low = &h.levels[0];
        assert_eq!(
            (low.alerted_hosts, low.malicious_alerted, low.benign_alerted),
            (3, 1, 1)
        );
        assert_eq!(low.unlabeled_alerted, 1);
        assert_eq!(low.precision, Some(0.5));
        assert_eq!(low.recall, Some(1.0));
        let high = &h.levels[2];
        assert_eq!((high.malicious_alerted, high.benign_alerted), (1, 0));
        assert_eq!(high.precision, Some(1.0));
        let critical = &h.levels[3];
        assert_eq!(critical.recall, Some(0.0));
        assert_eq!(h.hosts[0].host.to_string(), "10.0.0.1");
        assert_eq!(h.hosts[0].alerts, 2);
        assert!(h
            .to_text()
            .contains("alerts per host: 1 malicious hosts, 2 benign"));
    }
}
