use super::*;
use crate::score::Contribution;

fn rec(
    module: LogKind,
    ts: f64,
    src: &str,
    dst: &str,
    uid: &str,
    severity: Severity,
) -> ScoredRecord {
    ScoredRecord {
        ts: Some(ts),
        uid: Some(uid.into()),
        module,
        orig_h: Some(src.parse().unwrap()),
        orig_p: Some(40000),
        resp_h: Some(dst.parse().unwrap()),
        resp_p: Some(443),
        proto: Some("tcp".into()),
        trans_depth: None,
        trans_id: None,
        community_id: None,
        direction: Some("outbound".into()),
        score: 0.5,
        threshold: 0.1,
        anomaly: true,
        severity: Some(severity),
        p_normal: Some(1e-4),
        top_features: Some(vec![Contribution {
            feature: "resp_p".into(),
            share: 0.5,
            observed: None,
            expected: None,
        }]),
        context: Default::default(),
        model: None,
        line_hash: None,
    }
}

fn opts() -> AlertOptions {
    AlertOptions {
        quiet: 600.0,
        lateness: 60.0,
        ..AlertOptions::default()
    }
}

const CONN: LogKind = LogKind::CONN;
const DNS: LogKind = LogKind::DNS;

/// A day of two log types: host .5 flagged in bursts, host .6 once.
fn stream() -> Vec<ScoredRecord> {
    let mut v = Vec::new();
    for i in 0..12 {
        v.push(rec(
            CONN,
            1000.0 + 60.0 * i as f64,
            "10.0.0.5",
            "203.0.113.7",
            &format!("C{i}"),
            Severity::Low,
        ));
    }
    let mut dns = rec(DNS, 1100.0, "10.0.0.5", "10.0.0.53", "D1", Severity::Medium);
    dns.score = 0.9;
    dns.context
        .insert("query".into(), serde_json::json!("x.example.com"));
    v.push(dns);
    v.push(rec(
        DNS,
        5000.0,
        "10.0.0.6",
        "10.0.0.53",
        "D2",
        Severity::Low,
    ));
    v.push(rec(
        CONN,
        9000.0,
        "10.0.0.5",
        "203.0.113.8",
        "C99",
        Severity::High,
    ));
    v
}

fn run(stage: &mut AlertStage, batches: &[(LogKind, Vec<ScoredRecord>, Reading)]) -> Vec<Alert> {
    let mut out = Vec::new();
    for (module, records, reading) in batches {
        let mut newest = f64::NEG_INFINITY;
        for r in records {
            stage.offer_record(r, &mut out);
            newest = newest.max(r.ts.unwrap());
        }
        stage.progress(*module, newest, *reading, &mut out);
    }
    stage.finish(&mut out);
    out
}

fn of(module: LogKind) -> Vec<ScoredRecord> {
    stream()
        .into_iter()
        .filter(|r| r.module == module)
        .collect()
}

#[test]
fn a_hosts_records_fold_into_one_alert_opened_updated_and_closed() {
    let mut stage = AlertStage::new(opts(), &[CONN, DNS], true);
    let out = run(
        &mut stage,
        &[
            (CONN, of(CONN), Reading::Finished),
            (DNS, of(DNS), Reading::Finished),
        ],
    );
    let first: Vec<&Alert> = out
        .iter()
        .filter(|a| a.entity.to_string() == "10.0.0.5")
        .collect();
    let id = &first[0].alert;
    assert_eq!(first[0].state, State::Open);
    let closed: Vec<&&Alert> = first.iter().filter(|a| a.state == State::Closed).collect();
    assert_eq!(
        closed.len(),
        2,
        "the burst and the lone record 2 h later: {first:#?}"
    );
    let burst = closed.iter().find(|a| &a.alert == id).unwrap();
    assert_eq!(burst.records, 13);
    assert_eq!(burst.modules, vec![CONN, DNS]);
    // Medium at worst, raised for 13 records; not for two log types: the
    // DNS record is of another peer (the resolver), so they do not agree.
    assert_eq!(burst.severity, Severity::High);
    assert_eq!(burst.peers, 2);
    assert_eq!(burst.top_features[0].feature, "resp_p");
    assert_eq!(burst.top_features[0].records, 13);
    assert_eq!(
        burst.uids.len(),
        6,
        "five first and the latest: {:?}",
        burst.uids
    );
    // Updated, not repeated: opened once, updates when the count doubled
    // or severity rose, closed once.
    let updates = first
        .iter()
        .filter(|a| &a.alert == id && a.state == State::Update)
        .count();
    assert!((2..=6).contains(&updates), "{updates}");
    // Each document its revision, in the order written: 1 the opening,
    // the closing last (an update and the closing can share a time).
    let revisions: Vec<u64> = first
        .iter()
        .filter(|a| &a.alert == id)
        .map(|a| a.revision)
        .collect();
    assert_eq!(revisions, (1..=updates as u64 + 2).collect::<Vec<_>>());
    assert!(
        burst.reason.contains("13 flagged conn, dns records"),
        "{}",
        burst.reason
    );
    // It shows its most anomalous record, the DNS query.
    let sample = burst.sample.as_ref().unwrap();
    assert_eq!((sample.module, sample.uid.as_deref()), (DNS, Some("D1")));
    assert_eq!(sample.context["query"], "x.example.com");
    let other: Vec<&Alert> = out
        .iter()
        .filter(|a| a.entity.to_string() == "10.0.0.6")
        .collect();
    assert_eq!(other.len(), 2);
    assert_eq!(other[1].severity, Severity::Low);
}

#[test]
fn the_alerts_are_the_same_whatever_order_the_log_types_arrive_in() {
    let replay = run(
        &mut AlertStage::new(opts(), &[CONN, DNS], true),
        &[
            (CONN, of(CONN), Reading::Finished),
            (DNS, of(DNS), Reading::Finished),
        ],
    );
    // Live: both log types interleaved by small batches, caught up.
    let mut live = AlertStage::new(opts(), &[CONN, DNS], false);
    let batches = one_by_one_in_time();
    let live_out = run(&mut live, &batches);
    assert_eq!(replay, live_out);
    // DNS read first this time.
    let reversed = run(
        &mut AlertStage::new(opts(), &[CONN, DNS], true),
        &[
            (DNS, of(DNS), Reading::Finished),
            (CONN, of(CONN), Reading::Finished),
        ],
    );
    assert_eq!(replay, reversed);
}

/// The stream's records one batch each, in time order, caught up.
fn one_by_one_in_time() -> Vec<(LogKind, Vec<ScoredRecord>, Reading)> {
    let mut by_time = stream();
    by_time.sort_by(|a, b| a.ts.unwrap().total_cmp(&b.ts.unwrap()));
    by_time
        .into_iter()
        .map(|r| (r.module, vec![r], Reading::CaughtUp))
        .collect()
}

/// A stage fed `batches` and not finished (as before a checkpoint), and
/// what it wrote.
fn stopped_after(batches: &[(LogKind, Vec<ScoredRecord>, Reading)]) -> (AlertStage, Vec<Alert>) {
    let mut stage = AlertStage::new(opts(), &[CONN, DNS], false);
    let mut out = Vec::new();
    for (module, records, reading) in batches {
        for r in records {
            stage.offer_record(r, &mut out);
        }
        stage.progress(*module, records[0].ts.unwrap(), *reading, &mut out);
    }
    (stage, out)
}

#[test]
fn a_stage_saved_and_resumed_midway_writes_what_an_uninterrupted_one_does() {
    let batches = one_by_one_in_time();
    let whole = run(&mut AlertStage::new(opts(), &[CONN, DNS], false), &batches);
    let (a, b) = batches.split_at(7);
    let (first, mut out) = stopped_after(a);
    let saved = serde_json::to_string(&first).unwrap();
    let mut second: AlertStage = serde_json::from_str(&saved).unwrap();
    second = second.resumed(opts(), &[CONN, DNS]);
    out.extend(run(&mut second, b));
    assert_eq!(whole, out);
}

/// Restored from a checkpoint from before revisions were counted, an
/// alert already written goes on numbering its documents upwards (its
/// next update was revision 1 again, as its opening).
#[test]
fn revisions_go_on_rising_after_a_checkpoint_without_them() {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("revisions");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let batches = one_by_one_in_time();
    let (a, b) = batches.split_at(7);
    let (first, out) = stopped_after(a);
    assert!(!out.is_empty(), "an alert written before the checkpoint");
    let mut saved = serde_json::to_value(&first).unwrap();
    assert!(saved.to_string().contains("\"revisions\""));
    strip(&mut saved);
    let second: AlertStage = serde_json::from_value(saved).unwrap();
    let after = run(&mut second.resumed(opts(), &[CONN, DNS]), b);
    // The older build's documents had no revision: from the restore on,
    // an alert it wrote is past its opening's 1, and rises.
    let mut last: std::collections::HashMap<&str, u64> =
        (out.iter()).map(|a| (a.alert.as_str(), 1)).collect();
    for a in &after {
        let before = last.insert(&a.alert, a.revision).unwrap_or(0);
        assert!(
            a.revision > before,
            "{}: {} after {before}",
            a.alert,
            a.revision
        );
    }
    assert!(
        after.iter().any(|a| out.iter().any(|o| o.alert == a.alert)),
        "an alert goes on past the restore"
    );
}

#[test]
fn an_inbound_anomaly_is_the_local_hosts_alert() {
    let mut r = rec(CONN, 10.0, "198.51.100.9", "10.0.0.5", "C1", Severity::Low);
    r.direction = Some("inbound".into());
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let out = run(&mut stage, &[(CONN, vec![r], Reading::Finished)]);
    assert_eq!(out[0].entity.to_string(), "10.0.0.5");
    assert_eq!(out[0].role, Role::Target);
    assert_eq!(out[0].top_peers[0].ip.to_string(), "198.51.100.9");
}

#[test]
fn quiet_periods_and_long_spans_split_alerts() {
    let mut v = Vec::new();
    // Every 500 s for two days: never quiet for 600 s, so only the span
    // (one day) splits it.
    for i in 0..346 {
        v.push(rec(
            CONN,
            500.0 * i as f64,
            "10.0.0.5",
            "203.0.113.7",
            &format!("C{i}"),
            Severity::Low,
        ));
    }
    let o = AlertOptions {
        max_span: 86_400.0,
        ..opts()
    };
    let mut stage = AlertStage::new(o, &[CONN], true);
    let out = run(&mut stage, &[(CONN, v, Reading::Finished)]);
    let closed: Vec<&Alert> = out.iter().filter(|a| a.state == State::Closed).collect();
    assert_eq!(closed.len(), 2, "{closed:#?}");
    assert!(closed.iter().all(|a| a.last_ts - a.first_ts <= 86_400.0));
    assert_eq!(closed.iter().map(|a| a.records).sum::<u64>(), 346);
}

#[test]
fn minimum_severity_keeps_low_alerts_unwritten() {
    let o = AlertOptions {
        min_severity: Severity::Medium,
        ..opts()
    };
    let mut stage = AlertStage::new(o, &[CONN], true);
    let v = vec![
        rec(CONN, 10.0, "10.0.0.6", "203.0.113.7", "C1", Severity::Low),
        rec(
            CONN,
            20.0,
            "10.0.0.7",
            "203.0.113.7",
            "C2",
            Severity::Medium,
        ),
    ];
    let out = run(&mut stage, &[(CONN, v, Reading::Finished)]);
    assert!(
        out.iter().all(|a| a.entity.to_string() == "10.0.0.7"),
        "{out:#?}"
    );
    assert_eq!(out.len(), 2);
}

#[test]
fn open_alerts_and_held_items_are_bounded() {
    let o = AlertOptions {
        max_open: 10,
        max_pending: 50,
        ..opts()
    };
    let mut stage = AlertStage::new(o, &[CONN, DNS], true);
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let src = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
        stage.offer_record(
            &rec(CONN, i as f64, &src, "203.0.113.7", "C", Severity::Low),
            &mut out,
        );
        assert!(stage.pending.len() <= 50);
        assert!(stage.open_alerts() <= 10);
    }
    assert_eq!(stage.stats().forced, 950);
    assert_eq!(stage.stats().evicted, 940);
    stage.finish(&mut out);
    let closed: Vec<_> = out.iter().filter(|a| a.state == State::Closed).collect();
    assert_eq!(closed.len(), 1000);
    // Those closed to make room say so (the held items folded in at the
    // end made room too); the rest closed at the end.
    assert_eq!(stage.stats().evicted, 990);
    assert_eq!(closed.iter().filter(|a| a.closed_early).count(), 990);
    assert!(closed[999..].iter().all(|a| !a.closed_early));
}

/// A high beacon detection of 10.0.0.5 -> 203.0.113.7, its evidence from
/// `first_ts`, reported at `ts`.
fn beacon(first_ts: f64, ts: f64) -> Detection {
    Detection {
        ts,
        detection: crate::detect::DetectorKind::Beacon,
        module: CONN,
        src: "10.0.0.5".parse().unwrap(),
        dst: Some("203.0.113.7".parse().unwrap()),
        resp_p: Some(443),
        domain: None,
        score: 0.97,
        threshold: 0.9,
        severity: Severity::High,
        first_ts,
        last_ts: ts,
        uids: vec!["C1".into()],
        evidence: Default::default(),
        src_local: None,
    }
}

#[test]
fn a_detection_joins_its_source_hosts_alert_and_raises_it() {
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let mut out = Vec::new();
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    let d = beacon(0.0, 200.0);
    stage.offer_detection(&d, &mut out);
    stage.progress(CONN, 200.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!((closed.records, closed.detections), (1, 1));
    assert_eq!(closed.detectors, vec![crate::detect::DetectorKind::Beacon]);
    // High (the beacon), raised for a model and a detector agreeing.
    assert_eq!(closed.severity, Severity::Critical);
}

/// A beacon that goes on is said again every few hours; the reminders
/// keep its alert open (quiet 600 s here) but are no new evidence: twelve
/// of them do not raise it a level as ten detections would.
#[test]
fn a_beacon_s_reminders_keep_its_alert_open_without_raising_it() {
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let mut out = Vec::new();
    stage.offer_detection(&beacon(0.0, 100.0), &mut out);
    for i in 1..=12 {
        let mut d = beacon(0.0, 100.0 + 500.0 * f64::from(i));
        d.evidence
            .insert(crate::detect::beacon::STILL_EVIDENCE.into(), true.into());
        stage.offer_detection(&d, &mut out);
    }
    stage.progress(CONN, 7000.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed: Vec<_> = out.iter().filter(|a| a.state == State::Closed).collect();
    assert_eq!(closed.len(), 1, "{closed:#?}");
    assert_eq!((closed[0].first_ts, closed[0].last_ts), (100.0, 6100.0));
    assert_eq!(closed[0].detections, 1);
    // Said apart, so the alert and the run's count of detections written
    // (13) reconcile.
    assert_eq!(closed[0].reminders, 12);
    assert!(
        closed[0]
            .reason
            .contains("1 beacon detection (and 12 reminders it goes on)"),
        "{}",
        closed[0].reason
    );
    assert_eq!(closed[0].severity, Severity::High);
    // Its peer's count is the detections' (13 once, where the sentence
    // said 8 detections).
    assert_eq!(closed[0].top_peers[0].count, 1);
    // A reminder that opens an alert (the beacon was reported during a
    // warm-up, or its alert closed) is that alert's first detection.
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let mut out = Vec::new();
    let mut d = beacon(0.0, 100.0);
    d.evidence
        .insert(crate::detect::beacon::STILL_EVIDENCE.into(), true.into());
    stage.offer_detection(&d, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(closed.detections, 1);
    assert!(
        closed.reason.contains("1 beacon detection"),
        "{}",
        closed.reason
    );
}

/// Whether an alert's host is ours: from its records' direction (an
/// inbound record's host is the local one reached), or from a scan
/// detection, which knows the local networks; unknown stays unknown.
#[test]
fn an_alert_says_whether_its_host_is_local() {
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let mut out = Vec::new();
    for (src, dst, uid, direction) in [
        ("198.51.100.4", "10.0.0.9", "C1", Some("inbound")),
        ("198.51.100.5", "203.0.113.7", "C2", Some("external")),
        ("198.51.100.6", "203.0.113.7", "C3", None),
        ("10.0.0.10", "203.0.113.7", "C4", Some("outbound")),
        ("10.0.0.11", "10.0.0.12", "C5", Some("internal")),
        // Said local by its record, not by the scan detector: the
        // detector's word wins.
        ("198.51.100.7", "10.0.0.9", "C6", Some("outbound")),
    ] {
        let mut r = rec(CONN, 100.0, src, dst, uid, Severity::High);
        r.direction = direction.map(Into::into);
        stage.offer_record(&r, &mut out);
    }
    let mut sweep = beacon(0.0, 100.0);
    sweep.detection = crate::detect::DetectorKind::HostSweep;
    sweep.src = "198.51.100.7".parse().unwrap();
    sweep.src_local = Some(false);
    stage.offer_detection(&sweep, &mut out);
    stage.progress(CONN, 100.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let local_of = |host: &str| {
        out.iter()
            .find(|a| a.state == State::Closed && a.entity.to_string() == host)
            .unwrap()
            .local
    };
    assert_eq!(local_of("10.0.0.9"), Some(true));
    assert_eq!(local_of("198.51.100.5"), Some(false));
    assert_eq!(local_of("198.51.100.6"), None);
    assert_eq!(local_of("10.0.0.10"), Some(true));
    assert_eq!(local_of("10.0.0.11"), Some(true));
    assert_eq!(local_of("198.51.100.7"), Some(false));
}

#[test]
fn a_stage_saved_before_any_record_reads_back() {
    // A log type with no record yet (a sensor without SSH traffic) must
    // not make the checkpoint's state unreadable.
    let stage = AlertStage::new(opts(), &[CONN, DNS, LogKind::SSH], false);
    let mut out = Vec::new();
    let mut stage = stage;
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    stage.progress(CONN, 100.0, Reading::CaughtUp, &mut out);
    let saved = serde_json::to_string(&stage).unwrap();
    let back: AlertStage = serde_json::from_str(&saved).expect(&saved);
    let mut back = back.resumed(opts(), &[CONN, DNS]);
    assert!(!back.reading.contains_key(&LogKind::SSH));
    back.finish(&mut out);
    assert_eq!(out.iter().filter(|a| a.state == State::Closed).count(), 1);
}

#[test]
fn a_record_from_the_far_future_is_not_believed() {
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let mut out = Vec::new();
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    stage.offer_record(
        &rec(CONN, 1e12, "10.0.0.6", "203.0.113.7", "C2", Severity::Low),
        &mut out,
    );
    stage.progress(CONN, 1e12, Reading::CaughtUp, &mut out);
    // The first alert is not closed by the forged time; the forged record
    // is counted, not folded.
    assert!(out.iter().all(|a| a.state != State::Closed), "{out:#?}");
    assert_eq!(stage.stats().unplaced, 1);
}

#[test]
fn a_record_from_before_1970_or_of_no_time_opens_no_alert() {
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let mut out = Vec::new();
    for (ts, uid) in [(-5.0, "C1"), (f64::NAN, "C2")] {
        stage.offer_record(
            &rec(CONN, ts, "10.0.0.5", "203.0.113.7", uid, Severity::Low),
            &mut out,
        );
    }
    stage.progress(CONN, 100.0, Reading::CaughtUp, &mut out);
    stage.finish(&mut out);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(stage.stats().unplaced, 2);
}

/// A beacon is reported hours after it began: its alert says when it
/// began (`since`, the ECS document's `event.start`), and its reason
/// spans that time, not only the alert's own.
#[test]
fn a_detection_s_alert_says_when_its_behaviour_began() {
    let mut stage = AlertStage::new(opts(), &[CONN], true);
    let mut out = Vec::new();
    let d = beacon(1_000.0, 80_000.0);
    stage.offer_detection(&d, &mut out);
    stage.progress(CONN, 80_000.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(closed.first_ts, 80_000.0);
    assert_eq!(closed.since, Some(1_000.0));
    assert!(closed.reason.contains("over 21.9 h"), "{}", closed.reason);
    let mut ecs = Vec::new();
    crate::sink::RecordFormat::Ecs
        .write_alert(closed, &Default::default(), &mut ecs)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&ecs).unwrap();
    assert_eq!(doc["event"]["start"], "1970-01-01T00:16:40.000000Z");
    // So does the detection's own document.
    let mut ecs = Vec::new();
    crate::sink::RecordFormat::Ecs
        .write_detection(&d, &Default::default(), &mut ecs)
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&ecs).unwrap();
    assert_eq!(doc["event"]["start"], "1970-01-01T00:16:40.000000Z");
    assert_eq!(doc["event"]["end"], "1970-01-01T22:13:20.000000Z");
    // Its host is `entity`, as an alert document's is (one type in an
    // index), the pair apart.
    assert_eq!(doc["autozeekwatch"]["entity"], "10.0.0.5");
    assert_eq!(doc["autozeekwatch"]["pair"], "10.0.0.5 -> 203.0.113.7");
    // A record's alert has no such time.
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let mut out = Vec::new();
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    stage.finish(&mut out);
    assert!(out.iter().all(|a| a.since.is_none()));
}

/// A server reached from outside and also making connections of its own:
/// two alerts, one per role, neither raised by the other's log types (the
/// inbound peer's conn and DNS records agree and raise the target's)
/// (folded into one, the first item's role named both, and the inbound
/// DNS noise made the outbound alert "two log types", a level higher).
#[test]
fn a_hosts_inbound_and_outbound_activity_are_two_alerts() {
    let mut conn = Vec::new();
    let mut dns = Vec::new();
    for i in 0..4 {
        let t = 100.0 + 60.0 * f64::from(i);
        let mut inbound = rec(
            CONN,
            t,
            "198.51.100.9",
            "10.0.0.5",
            &format!("I{i}"),
            Severity::Low,
        );
        inbound.direction = Some("inbound".into());
        conn.push(inbound);
        conn.push(rec(
            CONN,
            t + 1.0,
            "10.0.0.5",
            "203.0.113.7",
            &format!("O{i}"),
            Severity::Low,
        ));
        let mut query = rec(
            DNS,
            t + 2.0,
            "198.51.100.9",
            "10.0.0.5",
            &format!("D{i}"),
            Severity::Low,
        );
        query.direction = Some("inbound".into());
        dns.push(query);
    }
    let mut stage = AlertStage::new(opts(), &[CONN, DNS], true);
    let out = run(
        &mut stage,
        &[
            (CONN, conn, Reading::Finished),
            (DNS, dns, Reading::Finished),
        ],
    );
    let closed: Vec<_> = out.iter().filter(|a| a.state == State::Closed).collect();
    assert_eq!(closed.len(), 2, "{closed:#?}");
    let of = |role| closed.iter().find(|a| a.role == role).unwrap();
    let (source, target) = (of(Role::Source), of(Role::Target));
    assert_eq!(source.entity, target.entity);
    assert_eq!(source.uids, ["O0", "O1", "O2", "O3"]);
    assert_eq!(source.modules, [CONN]);
    assert_eq!(target.modules, [CONN, DNS]);
    assert!(
        target.uids.iter().all(|u| !u.starts_with('O')),
        "{:?}",
        target.uids
    );
    assert!(
        source.severity < target.severity,
        "{:?} {:?}",
        source.severity,
        target.severity
    );
    assert_ne!(source.alert, target.alert);
    // A checkpoint of the stage with both open reads back with both, and
    // so does one saved before alerts were keyed by role too (by host).
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let mut sink = Vec::new();
    for r in &open_inputs() {
        stage.offer_record(r, &mut sink);
    }
    stage.progress(CONN, 1e9 + 100.0, Reading::CaughtUp, &mut sink);
    assert_eq!(stage.open_alerts(), 2);
    let saved = serde_json::to_value(&stage).unwrap();
    let back: AlertStage = serde_json::from_value(saved.clone()).unwrap();
    assert_eq!(back.resumed(opts(), &[CONN]).open_alerts(), 2);
    // A damaged alert is named by its own error.
    let mut bad = saved.clone();
    bad["open"][0]["entity"] = "not an address".into();
    let e = serde_json::from_value::<AlertStage>(bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("invalid IP address"), "{e}");
    let mut old = saved;
    let list = old["open"].take();
    let by_host: serde_json::Map<_, _> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["role"] == "source")
        .map(|o| (o["entity"].as_str().unwrap().to_owned(), o.clone()))
        .collect();
    old["open"] = serde_json::Value::Object(by_host);
    let back: AlertStage = serde_json::from_value(old).unwrap();
    assert_eq!(back.resumed(opts(), &[CONN]).open_alerts(), 1);
}

/// One inbound and one outbound record of 10.0.0.5, both still open.
fn open_inputs() -> Vec<ScoredRecord> {
    let mut inbound = rec(
        CONN,
        1e9 - 10.0,
        "198.51.100.9",
        "10.0.0.5",
        "I",
        Severity::Low,
    );
    inbound.direction = Some("inbound".into());
    vec![
        inbound,
        rec(
            CONN,
            1e9 - 5.0,
            "10.0.0.5",
            "203.0.113.7",
            "O",
            Severity::Low,
        ),
    ]
}

/// A flood of new outside hosts, one flagged record each (20 a second
/// for five minutes of event time, 6,000 hosts: spoofed sources), then
/// host 198.18.23.111 of the flood flagged again a minute later; a beacon
/// of 198.18.7.207, another of the flood (held back), is detected right
/// after its record; and local host 10.9.9.9 is flagged once in the
/// middle of it all.
fn flood(stage: &mut AlertStage, items: std::ops::Range<u32>, out: &mut Vec<Alert>) {
    for i in items {
        let (ts, src) = match i {
            6_000 => (10_360.0, "198.18.23.111".to_owned()),
            i => (
                10_000.0 + f64::from(i) / 20.0,
                format!("198.18.{}.{}", i >> 8, i & 255),
            ),
        };
        let mut r = rec(CONN, ts, &src, "203.0.113.7", "C", Severity::Low);
        r.direction = Some("external".into());
        stage.offer_record(&r, out);
        if i == 2_000 {
            let mut d = beacon(9_000.0, ts);
            d.src = "198.18.7.207".parse().unwrap();
            stage.offer_detection(&d, out);
            let local = rec(CONN, ts, "10.9.9.9", "203.0.113.7", "L", Severity::Critical);
            stage.offer_record(&local, out);
        }
        stage.progress(CONN, ts, Reading::CaughtUp, out);
    }
}

/// A flood of new outside hosts writes at most `max_new_per_minute` new
/// alerts a minute (1.95 million alert lines came of a 30-minute flood in
/// a review); the others are held back, yet one with a detection, one
/// with a second record and a local host's are written at once (a flood
/// must not hide them), and the stage saved mid-flood writes what an
/// uninterrupted one does.
#[test]
fn a_flood_of_new_hosts_opens_at_most_the_limit_of_alerts_a_minute() {
    let whole = |o: AlertOptions| {
        let mut stage = AlertStage::new(o, &[CONN], false);
        let mut out = Vec::new();
        flood(&mut stage, 0..6_001, &mut out);
        stage.finish(&mut out);
        (out, *stage.stats())
    };
    let (unlimited, _) = whole(AlertOptions {
        max_new_per_minute: 0,
        ..opts()
    });
    let opened = |out: &[Alert]| out.iter().filter(|a| a.state == State::Open).count();
    assert_eq!(opened(&unlimited), 6_001);

    let (out, stats) = whole(opts());
    let mut per_minute = BTreeMap::new();
    for a in out.iter().filter(|a| a.state == State::Open) {
        *per_minute
            .entry((a.last_ts / 60.0).floor() as i64)
            .or_insert(0) += 1;
    }
    // The beacon's host and the local host are written beyond the limit
    // of their minute.
    assert!(per_minute.values().all(|&n| n <= 102), "{per_minute:?}");
    // Six minutes of flood, the two above, and the host flagged again.
    assert_eq!(opened(&out), 6 * 100 + 3, "{per_minute:?}");
    let of = |host: &str| -> Vec<&Alert> {
        out.iter()
            .filter(|a| a.entity.to_string() == host)
            .collect()
    };
    // Held back for its record, written with its detection.
    let bot = of("198.18.7.207");
    assert_eq!(bot[0].state, State::Open, "{bot:?}");
    assert_eq!((bot[0].records, bot[0].detections), (1, 1), "{bot:?}");
    let again = of("198.18.23.111");
    assert_eq!(again[0].state, State::Open, "{again:?}");
    assert_eq!((again[0].records, again[0].last_ts), (2, 10_360.0));
    let local = of("10.9.9.9");
    assert_eq!((local[0].state, local[0].last_ts), (State::Open, 10_100.0));
    // Every outside host held back was written but two: the beacon's and
    // the one flagged again.
    let flood_opened = opened(&out) - 1;
    assert_eq!(stats.held_back as usize, 6_000 - flood_opened + 2);
    assert_eq!(stats.held_unwritten, stats.held_back - 2);

    // Saved mid-flood and resumed: the same alerts.
    let mut first = AlertStage::new(opts(), &[CONN], false);
    let mut again = Vec::new();
    flood(&mut first, 0..3_000, &mut again);
    let saved = serde_json::to_string(&first).unwrap();
    let mut second: AlertStage = serde_json::from_str(&saved).unwrap();
    second = second.resumed(opts(), &[CONN]);
    flood(&mut second, 3_000..6_001, &mut again);
    second.finish(&mut again);
    assert_eq!(again, out);
}

fn sni(ts: f64, client: &str, server: &str, name: &str) -> crate::detect::Observation {
    crate::detect::Observation::Name(crate::detect::observation::NameFacts {
        ts,
        log: LogKind::SSL,
        client: client.parse().unwrap(),
        server: server.parse().unwrap(),
        name: name.into(),
        agent: None,
    })
}

fn request(ts: f64, client: &str, server: &str, agent: &str) -> crate::detect::Observation {
    crate::detect::Observation::Name(crate::detect::observation::NameFacts {
        ts,
        log: LogKind::HTTP,
        client: client.parse().unwrap(),
        server: server.parse().unwrap(),
        name: "".into(),
        agent: Some(agent.into()),
    })
}

/// A beacon to a bare address (no Host, as RITA's planted one) is told by
/// the user agent of its requests, in the peer and the sentence, escaped
/// (an attacker writes it); an open alert of a checkpoint from before
/// user agents (its peers' names a list) resumes with its names.
#[test]
fn a_beacon_alert_tells_the_user_agent_of_its_requests() {
    let http = [CONN, LogKind::HTTP];
    let mut stage = AlertStage::new(opts(), &http, false);
    stage.learn_names(&request(
        50.0,
        "10.0.0.5",
        "203.0.113.7",
        "Modzilla/0.0001 (Atari 7800)",
    ));
    stage.learn_names(&request(60.0, "10.0.0.5", "203.0.113.7", "x\u{1b}[2J\ny"));
    let mut out = Vec::new();
    stage.offer_detection(&beacon(0.0, 200.0), &mut out);
    stage.progress(CONN, 200.0, Reading::Finished, &mut out);
    stage.progress(LogKind::HTTP, 200.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    let want = ["x\\x1b[2J\\ny", "Modzilla/0.0001 (Atari 7800)"];
    assert_eq!(closed.top_peers[0].user_agents, want);
    assert!(closed.top_peers[0].names.is_empty());
    assert!(
        closed.reason.ends_with(
            "1 peer (203.0.113.7; user agents \"x\\x1b[2J\\ny\", \"Modzilla/0.0001 (Atari 7800)\")"
        ),
        "{}",
        closed.reason
    );
    assert!(!closed.reason.chars().any(crate::escape::is_hostile));

    // Saved open, its peer's names as a build before user agents wrote
    // them (a list of names), then resumed and closed.
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
    stage.learn_names(&sni(50.0, "10.0.0.5", "203.0.113.7", "c2.example.com"));
    let mut out = Vec::new();
    stage.offer_detection(&beacon(0.0, 200.0), &mut out);
    stage.progress(CONN, 300.0, Reading::CaughtUp, &mut out);
    stage.progress(LogKind::SSL, 300.0, Reading::CaughtUp, &mut out);
    let mut saved = serde_json::to_value(&stage).unwrap();
    let mut rewritten = 0;
    fn old_layout(v: &mut serde_json::Value, n: &mut usize) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Object(named)) = m.get_mut("named") {
                    for names in named.values_mut() {
                        *names = names["names"].take();
                        *n += 1;
                    }
                }
                m.values_mut().for_each(|v| old_layout(v, n));
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(|v| old_layout(v, n)),
            _ => {}
        }
    }
    old_layout(&mut saved, &mut rewritten);
    assert_eq!(rewritten, 1, "{saved}");
    let back: AlertStage = serde_json::from_value(saved).unwrap();
    let mut back = back.resumed(opts(), &[CONN, LogKind::SSL]);
    back.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(closed.top_peers[0].names, ["c2.example.com"]);
}

/// A beacon's alert names its destination by the server name its
/// connections gave, learnt before the stage was saved and resumed (the
/// names are in live mode's checkpoint); a name first seen after the
/// alert's last item is not shown, so a replay (which has read every
/// name by the time it folds) writes what a live run does; an inbound
/// alert names its host by what the outside client asked for.
#[test]
fn an_alert_names_its_peers_by_what_its_host_called_them() {
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
    stage.learn_names(&sni(50.0, "10.0.0.5", "203.0.113.7", "c2.example.com"));
    stage.learn_names(&sni(900.0, "10.0.0.5", "203.0.113.7", "later.example.com"));
    // Another client's name for the same server is not this host's.
    stage.learn_names(&sni(60.0, "10.0.0.9", "203.0.113.7", "other.example.com"));
    let saved = serde_json::to_string(&stage).unwrap();
    let mut stage: AlertStage = serde_json::from_str(&saved).unwrap();
    stage = stage.resumed(opts(), &[CONN, LogKind::SSL]);
    let mut out = Vec::new();
    stage.offer_detection(&beacon(0.0, 200.0), &mut out);
    stage.progress(CONN, 200.0, Reading::Finished, &mut out);
    stage.progress(LogKind::SSL, 200.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(closed.top_peers[0].names, ["c2.example.com"]);
    assert!(
        closed
            .reason
            .ends_with("1 peer (203.0.113.7: c2.example.com)"),
        "{}",
        closed.reason
    );
    let json = serde_json::to_value(closed).unwrap();
    assert_eq!(
        json["top_peers"][0]["names"],
        serde_json::json!(["c2.example.com"])
    );

    // Inbound: the outside client's name for the local host reached.
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], true);
    stage.learn_names(&sni(5.0, "198.51.100.9", "10.0.0.5", "vpn.example.org"));
    let mut r = rec(CONN, 10.0, "198.51.100.9", "10.0.0.5", "C1", Severity::Low);
    r.direction = Some("inbound".into());
    let out = run(
        &mut stage,
        &[
            (CONN, vec![r], Reading::Finished),
            (LogKind::SSL, Vec::new(), Reading::Finished),
        ],
    );
    assert_eq!(out[0].role, Role::Target);
    assert_eq!(out[0].top_peers[0].names, ["vpn.example.org"]);
    assert!(
        out[0]
            .reason
            .contains("(198.51.100.9, asking for vpn.example.org)"),
        "{}",
        out[0].reason
    );
}

fn answer(
    ts: f64,
    client: &str,
    query: &str,
    answers: Vec<std::net::IpAddr>,
) -> crate::detect::Observation {
    crate::detect::Observation::Dns(crate::detect::observation::DnsFacts {
        ts,
        uid: None,
        src: client.parse().unwrap(),
        query: Some(query.into()),
        rcode: Some(0),
        answers,
    })
}

/// An alert keeps the names its peers had when their items folded in: its
/// closing, a quiet period later, says what its opening did, though a
/// busy site has named far more pairs than the names book keeps by then.
#[test]
fn an_alert_closes_with_the_names_it_opened_with() {
    let mut stage = AlertStage::new(opts(), &[CONN, DNS], false);
    let mut out = Vec::new();
    stage.learn_names(&sni(50.0, "10.0.0.5", "203.0.113.7", "c2.example.com"));
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    stage.progress(CONN, 200.0, Reading::CaughtUp, &mut out);
    stage.progress(DNS, 200.0, Reading::CaughtUp, &mut out);
    // 110,000 pairs named by one client's lookups: past the book's cap.
    for i in 0..13_750u32 {
        let answers = (0..8u32)
            .map(|j| std::net::IpAddr::from((0xc633_0000 + i * 8 + j).to_be_bytes()))
            .collect();
        stage.learn_names(&answer(300.0, "10.1.0.1", "cdn.example.net", answers));
    }
    stage.progress(CONN, 2000.0, Reading::CaughtUp, &mut out);
    stage.progress(DNS, 2000.0, Reading::CaughtUp, &mut out);
    let named = |state: State| {
        out.iter()
            .find(|a| a.state == state)
            .map(|a| a.top_peers[0].names.clone())
    };
    assert_eq!(named(State::Open), Some(vec!["c2.example.com".to_owned()]));
    assert_eq!(named(State::Closed), named(State::Open));
}

/// A shared address the host used for other sites long before (a CDN,
/// domain fronting) is named by the name its alert's connections brought
/// first, not only by the old ones.
#[test]
fn a_shared_address_shows_the_newest_name_first() {
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
    let mut out = Vec::new();
    for (ts, n) in [
        (10.0, "news.example"),
        (20.0, "shop.example"),
        (30.0, "docs.example"),
    ] {
        stage.learn_names(&sni(ts, "10.0.0.5", "203.0.113.7", n));
    }
    for i in 0..5 {
        let ts = 300_000.0 + 60.0 * f64::from(i);
        stage.learn_names(&sni(ts, "10.0.0.5", "203.0.113.7", "c2.evil.example"));
        stage.offer_record(
            &rec(
                CONN,
                ts + 1.0,
                "10.0.0.5",
                "203.0.113.7",
                &format!("C{i}"),
                Severity::Low,
            ),
            &mut out,
        );
    }
    stage.progress(CONN, 400_000.0, Reading::Finished, &mut out);
    stage.progress(LogKind::SSL, 400_000.0, Reading::Finished, &mut out);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(
        closed.top_peers[0].names,
        ["c2.evil.example", "docs.example", "shop.example"]
    );
    assert!(
        closed
            .reason
            .contains("(203.0.113.7: c2.evil.example, docs.example, shop.example)"),
        "{}",
        closed.reason
    );
}

/// A name read after items of its time folded in (its log type lagging
/// more than the lateness, or caught up and so holding nothing back) is
/// counted, one of exactly an item's time too (an item is named by names
/// first seen no later than it): only then can a live run's names differ
/// from a replay's. The live and Kafka stats line says how many.
#[test]
fn a_name_read_after_its_time_is_counted_late() {
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
    let mut out = Vec::new();
    stage.offer_record(
        &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
        &mut out,
    );
    stage.progress(CONN, 160.0, Reading::CaughtUp, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].top_peers[0].names, Vec::<String>::new());
    stage.learn_names(&sni(50.0, "10.0.0.5", "203.0.113.7", "c2.example.com"));
    stage.learn_names(&sni(100.0, "10.0.0.5", "203.0.113.7", "c3.example.com"));
    stage.learn_names(&sni(
        5000.0,
        "10.0.0.5",
        "203.0.113.8",
        "on-time.example.com",
    ));
    assert_eq!(stage.stats().late_names, 2);
    assert!(
        stage.stats_line().contains("2 names of peers late"),
        "{}",
        stage.stats_line()
    );
}

/// Six peers of one item each, reached in either order: the five shown
/// (fewest items last, then the higher address) are the five named.
#[test]
fn the_peers_shown_are_the_peers_named_ties_included() {
    let run = |order: &[usize]| {
        let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
        let mut out = Vec::new();
        for i in 1..=6 {
            let peer = format!("203.0.113.{i}");
            stage.learn_names(&sni(10.0, "10.0.0.5", &peer, &format!("n{i}.example")));
        }
        for (k, i) in order.iter().enumerate() {
            let peer = format!("203.0.113.{i}");
            let r = rec(
                CONN,
                100.0 + k as f64,
                "10.0.0.5",
                &peer,
                &format!("C{i}"),
                Severity::Low,
            );
            stage.offer_record(&r, &mut out);
        }
        stage.progress(CONN, 1e6, Reading::Finished, &mut out);
        stage.progress(LogKind::SSL, 1e6, Reading::Finished, &mut out);
        stage.finish(&mut out);
        let closed = out.into_iter().find(|a| a.state == State::Closed).unwrap();
        closed
            .top_peers
            .iter()
            .map(|p| (p.ip.to_string(), p.names.clone()))
            .collect::<Vec<_>>()
    };
    let forward = run(&[1, 2, 3, 4, 5, 6]);
    let expected: Vec<(String, Vec<String>)> = (1..=5)
        .map(|i| (format!("203.0.113.{i}"), vec![format!("n{i}.example")]))
        .collect();
    assert_eq!(forward, expected);
    assert_eq!(run(&[6, 5, 4, 3, 2, 1]), expected);
}

/// A late item (older than its alert's newest) does not put the older
/// names of its time over those a newer item gave its peer.
#[test]
fn a_late_item_keeps_the_newer_names_of_its_peer() {
    let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
    let mut out = Vec::new();
    stage.learn_names(&sni(10.0, "10.0.0.5", "203.0.113.7", "old.example"));
    stage.learn_names(&sni(150.0, "10.0.0.5", "203.0.113.7", "new.example"));
    for ts in [200.0, 100.0] {
        let r = rec(
            CONN,
            ts,
            "10.0.0.5",
            "203.0.113.7",
            &format!("C{ts}"),
            Severity::Low,
        );
        stage.offer_record(&r, &mut out);
        stage.progress(CONN, 1000.0, Reading::CaughtUp, &mut out);
        stage.progress(LogKind::SSL, 1000.0, Reading::CaughtUp, &mut out);
    }
    assert_eq!(stage.stats().late, 1);
    stage.finish(&mut out);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    assert_eq!(closed.top_peers[0].names, ["new.example", "old.example"]);
}

/// A stage saved by the build that named peers from the book when
/// writing (its open alerts hold no names) names them on resuming, so
/// they close with the names they opened with; a stage of this build
/// takes no names read since its items folded.
#[test]
fn open_alerts_of_a_checkpoint_from_before_take_their_names_on_resuming() {
    let saved_with = |before: bool| {
        let mut stage = AlertStage::new(opts(), &[CONN, LogKind::SSL], false);
        let mut out = Vec::new();
        stage.offer_record(
            &rec(CONN, 100.0, "10.0.0.5", "203.0.113.7", "C1", Severity::Low),
            &mut out,
        );
        stage.progress(CONN, 200.0, Reading::CaughtUp, &mut out);
        stage.progress(LogKind::SSL, 200.0, Reading::CaughtUp, &mut out);
        // Read after the item folded (late): only the old build showed it.
        stage.learn_names(&sni(50.0, "10.0.0.5", "203.0.113.7", "c2.example.com"));
        let mut v = serde_json::to_value(&stage).unwrap();
        if before {
            v.as_object_mut().unwrap().remove("peers_named");
        }
        let back: AlertStage = serde_json::from_value(v).unwrap();
        let mut back = back.resumed(opts(), &[CONN, LogKind::SSL]);
        back.finish(&mut out);
        let closed = out.into_iter().find(|a| a.state == State::Closed).unwrap();
        closed.top_peers[0].names.clone()
    };
    assert_eq!(saved_with(true), ["c2.example.com"]);
    assert!(saved_with(false).is_empty());
}

/// An alert's features are ranked by how much of its records' scores
/// each made (shares summed), not by how many records listed it; its
/// sentence names those of 1% or more. One record has no span; items
/// within a minute are said so.
#[test]
fn an_alert_names_the_features_that_made_its_scores() {
    let with = |ts: f64, uid: &str, features: &[(&str, f64)]| {
        let mut r = rec(CONN, ts, "10.0.0.5", "203.0.113.7", uid, Severity::Low);
        r.top_features = Some(
            (features.iter())
                .map(|(f, share)| Contribution {
                    feature: (*f).into(),
                    share: *share,
                    observed: None,
                    expected: None,
                })
                .collect(),
        );
        r
    };
    let mut records: Vec<ScoredRecord> = (0..6)
        .map(|i| {
            with(
                100.0 + f64::from(i),
                &format!("C{i}"),
                &[("direction", 0.006)],
            )
        })
        .collect();
    records.push(with(110.0, "C9", &[("conn_state", 0.9), ("history", 0.05)]));
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let out = run(&mut stage, &[(CONN, records, Reading::Finished)]);
    let closed = out.iter().find(|a| a.state == State::Closed).unwrap();
    let ranked: Vec<&str> = closed
        .top_features
        .iter()
        .map(|f| f.feature.as_str())
        .collect();
    assert_eq!(ranked, ["conn_state", "history", "direction"]);
    assert_eq!(closed.top_features[2].records, 6);
    assert!(
        closed.reason.ends_with(
            "7 flagged conn records within a minute, 1 peer; mostly conn_state, history"
        ),
        "{}",
        closed.reason
    );

    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let one = with(100.0, "C1", &[("resp_p", 0.5)]);
    let out = run(&mut stage, &[(CONN, vec![one], Reading::Finished)]);
    assert!(
        out[0]
            .reason
            .ends_with("(source): 1 flagged conn record, 1 peer; mostly resp_p"),
        "{}",
        out[0].reason
    );
}

/// A machine still asking for an address (`::` in IPv6 duplicate address
/// detection, `0.0.0.0` in DHCP) names no host: no alert, counted as an
/// item without a host.
#[test]
fn the_unspecified_address_opens_no_alert() {
    let mut stage = AlertStage::new(opts(), &[CONN], false);
    let records = vec![
        rec(CONN, 100.0, "::", "ff02::1:ff00:1", "C1", Severity::Low),
        rec(
            CONN,
            101.0,
            "0.0.0.0",
            "255.255.255.255",
            "C2",
            Severity::Low,
        ),
    ];
    let out = run(&mut stage, &[(CONN, records, Reading::Finished)]);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(stage.stats().unplaced, 2);
}

/// Severity is raised once two kinds of evidence agree on one thing, not
/// whenever an alert holds two log types: the SOC review's `missing_host`
/// run rated the sensor critical for unrelated internet scanners flagged
/// in its conn and http logs, and an HTTP request with the file it
/// fetched (one connection, two logs) raised a host a level.
#[test]
fn two_kinds_of_evidence_agree_only_about_one_peer_and_not_one_connection() {
    const HTTP: LogKind = LogKind::HTTP;
    let files = LogKind::new("files").unwrap();
    let item = |module, dst: &str, uid: &str| {
        Item::of_record(&rec(module, 100.0, "10.0.0.5", dst, uid, Severity::Low)).unwrap()
    };
    let severity = |items: &[Item]| {
        let mut open = fold::Open::new(&items[0]);
        for i in &items[1..] {
            open.add(i);
        }
        open.severity()
    };
    let peer = "203.0.113.7";
    // Two log types' records of one connection are one view of it.
    assert_eq!(
        severity(&[item(HTTP, peer, "C1"), item(files, peer, "C1")]),
        Severity::Low
    );
    // Of different peers, they are unrelated.
    assert_eq!(
        severity(&[item(CONN, peer, "C1"), item(HTTP, "198.51.100.1", "C2")]),
        Severity::Low
    );
    // Two log types flagging the same connections (a Trickbot host's
    // downloads, each in http and files) are one view, whatever the
    // order; each flagging one the other did not, they agree.
    assert_eq!(
        severity(&[
            item(HTTP, peer, "C1"),
            item(files, peer, "C1"),
            item(HTTP, peer, "C2"),
            item(files, peer, "C2"),
            item(files, peer, "C3"),
            item(HTTP, peer, "C3"),
        ]),
        Severity::Low
    );
    assert_eq!(
        severity(&[item(HTTP, peer, "C1"), item(files, peer, "C2")]),
        Severity::Medium
    );
    // Whatever order the same items come in (the review's case: a
    // second request of a peer first, then the first and its file).
    let a = severity(&[
        item(HTTP, peer, "C2"),
        item(HTTP, peer, "C1"),
        item(files, peer, "C1"),
    ]);
    let b = severity(&[
        item(HTTP, peer, "C1"),
        item(HTTP, peer, "C2"),
        item(files, peer, "C1"),
    ]);
    let c = severity(&[
        item(files, peer, "C1"),
        item(HTTP, peer, "C2"),
        item(HTTP, peer, "C1"),
    ]);
    assert_eq!((a, b, c), (Severity::Low, Severity::Low, Severity::Low));
    // The same log type again is more of one kind.
    assert_eq!(
        severity(&[item(CONN, peer, "C1"), item(CONN, peer, "C2")]),
        Severity::Low
    );
    // Two log types flagging two connections to one peer agree, whatever
    // came between.
    assert_eq!(
        severity(&[
            item(HTTP, peer, "C1"),
            item(files, peer, "C1"),
            item(CONN, "198.51.100.1", "C3"),
            item(CONN, peer, "C2"),
        ]),
        Severity::Medium
    );
    // A model and a detector agree, even on one connection.
    let mut d = beacon(0.0, 100.0);
    d.severity = Severity::Low;
    let detection = Item::of_detection(&d).unwrap();
    assert_eq!(
        severity(&[item(CONN, peer, "C1"), detection.clone()]),
        Severity::Medium
    );
    // The alert says why it was raised.
    let mut open = fold::Open::new(&item(CONN, peer, "C1"));
    open.add(&detection);
    assert_eq!(
        open.alert(State::Open).raised_for,
        [format!("conn and beacon about {peer}")]
    );
    let mut other = d.clone();
    other.dst = Some("198.51.100.1".parse().unwrap());
    assert_eq!(
        severity(&[item(CONN, peer, "C1"), Item::of_detection(&other).unwrap()]),
        Severity::Low
    );
    // A sweep names no one peer: it agrees with the host's records of
    // any peer, before or after it.
    let mut sweep = d.clone();
    sweep.detection = crate::detect::DetectorKind::HostSweep;
    sweep.dst = None;
    let sweep = Item::of_detection(&sweep).unwrap();
    let record = item(CONN, "198.51.100.1", "C9");
    assert_eq!(severity(&[record.clone(), sweep.clone()]), Severity::Medium);
    assert_eq!(severity(&[sweep.clone(), record]), Severity::Medium);
    assert_eq!(severity(&[sweep.clone(), sweep]), Severity::Low);
    // Agreement survives a checkpoint; an alert saved before it was kept
    // agrees as it did then (any two kinds).
    let mut open = fold::Open::new(&item(CONN, peer, "C1"));
    open.add(&detection);
    let saved = serde_json::to_value(&open).unwrap();
    let back: fold::Open = serde_json::from_value(saved.clone()).unwrap();
    assert_eq!(back.severity(), Severity::Medium);
    let mut old = fold::Open::new(&item(CONN, peer, "C1"));
    old.add(&item(HTTP, "198.51.100.1", "C2"));
    let mut old = serde_json::to_value(&old).unwrap();
    for field in ["keeps_evidence", "seen", "hostwide"] {
        old.as_object_mut().unwrap().remove(field);
    }
    let old: fold::Open = serde_json::from_value(old).unwrap();
    assert_eq!(old.severity(), Severity::Medium);
}
