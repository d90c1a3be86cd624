//! The readiness state machine, fed by hand: events, inspections and probe results with their
//! times, no engine.

use super::*;
use std::collections::HashMap;

fn event(action: &str, container: &str, service: &str, at_ms: u64) -> ContainerEvent {
    ContainerEvent {
        action: action.to_owned(),
        container: container.to_owned(),
        service: service.to_owned(),
        name: format!("p_{service}_1"),
        exit_code: (action == "die").then(|| "3".to_owned()),
        time: UNIX_EPOCH + Duration::from_millis(at_ms),
        healthcheck: None,
    }
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn services(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn healthy_event_makes_a_service_ready_with_its_times() {
    let mut watch = Watch::new(&services(&["db", "web"]), Duration::from_secs(60));
    watch.on_event(&event("create", "c1", "db", 1_000), at(1_001));
    let mut start = event("start", "c1", "db", 1_100);
    start.healthcheck = Some(true);
    let changes = watch.on_event(&start, at(1_101));
    assert!(matches!(&changes[0], Change::Started { service } if service == "db"));
    assert!(watch.ready("db").is_none());
    // Its healthcheck is what it waits for (an engine that runs none is asked to).
    assert_eq!(watch.awaiting_health(), ["c1"]);
    let changes = watch.on_event(
        &event("health_status: healthy", "c1", "db", 3_600),
        at(3_603),
    );
    let Change::Ready { service, ready } = &changes[0] else {
        panic!("{changes:?}")
    };
    assert_eq!(service, "db");
    assert_eq!(ready.after, Duration::from_millis(2_500));
    assert_eq!(ready.noticed, Some(Duration::from_millis(3)));
    assert!(!watch.all_ready());
    assert!(watch.awaiting_health().is_empty());
    assert_eq!(watch.pending(at(4_000)), vec![("web".to_owned(), None)]);

    let mut start = event("start", "c2", "web", 4_000);
    start.healthcheck = Some(false);
    let changes = watch.on_event(&start, at(4_002));
    assert!(changes.iter().any(
        |c| matches!(c, Change::Ready { service, ready } if service == "web" && !ready.healthcheck)
    ));
    assert!(watch.all_ready());
}

#[test]
fn a_container_without_healthcheck_is_ready_at_its_start() {
    let mut watch = Watch::new(&services(&["worker"]), Duration::from_secs(60));
    let mut create = event("create", "c1", "worker", 0);
    create.healthcheck = Some(false);
    watch.on_event(&create, at(1));
    assert_eq!(watch.healthcheck_of("worker", "c1"), Some(false));
    let changes = watch.on_event(&event("start", "c1", "worker", 100), at(102));
    let Some(Change::Ready { ready, .. }) = changes.last() else {
        panic!("{changes:?}")
    };
    assert_eq!(ready.after, Duration::ZERO);
    assert_eq!(ready.noticed, Some(Duration::from_millis(2)));
    assert!(watch.all_ready());
}

#[test]
fn exit_restart_unhealthy_and_oom_fail_at_once() {
    for (action, expect) in [
        ("die", "exited with code 3"),
        ("health_status: unhealthy", "turned unhealthy"),
        ("oom", "ran out of memory"),
        ("restart", "restarted"),
    ] {
        let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
        let mut start = event("start", "c1", "db", 0);
        start.healthcheck = Some(true);
        watch.on_event(&start, at(1));
        let changes = watch.on_event(&event(action, "c1", "db", 500), at(501));
        let Some(Change::Failed(failed)) = changes.first() else {
            panic!("{action}: {changes:?}")
        };
        assert_eq!(failed.service, "db");
        assert!(
            failed.reason.contains(expect),
            "{action}: {}",
            failed.reason
        );
        assert!(failed.reason.contains("`db`"));
    }
}

#[test]
fn a_second_start_is_a_restart_but_a_recreation_is_not() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    let mut start = event("start", "old", "db", 0);
    start.healthcheck = Some(true);
    watch.on_event(&start, at(1));
    watch.on_event(&event("health_status: healthy", "old", "db", 100), at(101));
    assert!(watch.all_ready());
    // compose recreates: kill, die, destroy the old one; create and start a new one.
    assert!(watch
        .on_event(&event("kill", "old", "db", 200), at(201))
        .is_empty());
    assert!(watch
        .on_event(&event("die", "old", "db", 210), at(211))
        .is_empty());
    watch.on_event(&event("destroy", "old", "db", 220), at(221));
    let mut start = event("start", "new", "db", 300);
    start.healthcheck = Some(true);
    let changes = watch.on_event(&start, at(301));
    assert!(
        !changes.iter().any(|c| matches!(c, Change::Failed(_))),
        "{changes:?}"
    );
    assert!(!watch.all_ready());
    watch.on_event(
        &event("health_status: healthy", "new", "db", 1_300),
        at(1_301),
    );
    assert_eq!(watch.ready("db").unwrap().after, Duration::from_secs(1));
}

#[test]
fn a_second_start_event_of_a_running_container_changes_nothing() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    let mut start = event("start", "c1", "db", 0);
    start.healthcheck = Some(true);
    watch.on_event(&start, at(1));
    watch.on_event(&event("health_status: healthy", "c1", "db", 100), at(101));
    assert!(watch.all_ready());
    // podman: a start call that found it running is one more `start` event.
    let changes = watch.on_event(&event("start", "c1", "db", 150), at(151));
    assert!(changes.is_empty(), "{changes:?}");
    assert!(watch.all_ready());
    assert_eq!(watch.ready("db").unwrap().after, Duration::from_millis(100));
    // The engine's own restart is still one.
    let changes = watch.on_event(&event("restart", "c1", "db", 300), at(301));
    assert!(
        changes
            .iter()
            .any(|c| matches!(c, Change::Failed(f) if f.reason.contains("restarted"))),
        "{changes:?}"
    );
}

#[test]
fn budget_runs_from_the_container_start() {
    let mut watch = Watch::new(&services(&["slow", "later"]), Duration::from_secs(3));
    assert_eq!(
        watch.next_deadline(),
        None,
        "nothing started, nothing is due"
    );
    let mut start = event("start", "c1", "slow", 10_000);
    start.healthcheck = Some(true);
    watch.on_event(&start, at(10_001));
    assert_eq!(watch.next_deadline(), Some(at(13_000)));
    assert!(watch.overdue(at(12_999)).is_none());
    let failed = watch.overdue(at(13_000)).unwrap();
    assert_eq!(failed.service, "slow");
    assert!(failed.reason.contains("budget of 3s"), "{}", failed.reason);
    assert_eq!(watch.without_container().as_deref(), Some("later"));
}

#[test]
fn observing_an_already_healthy_container_counts_it_ready() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    let seen = Inspected {
        container: "c1".into(),
        service: "db".into(),
        name: "p_db_1".into(),
        running: true,
        started: Some(at(0)),
        healthcheck: true,
        health: Some(HealthStatusEnum::HEALTHY),
        first_healthy: Some(at(1_500)),
    };
    let changes = watch.observe(std::slice::from_ref(&seen), true, at(60_000));
    assert!(
        matches!(&changes[0], Change::Ready { ready, .. } if ready.after == Duration::from_millis(1_500))
    );
    // Gone at the next full look: no longer ready.
    watch.observe(&[], true, at(61_000));
    assert!(!watch.all_ready());
    assert_eq!(watch.without_container().as_deref(), Some("db"));
}

#[test]
fn other_services_and_one_offs_are_ignored() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    assert!(watch
        .on_event(&event("die", "x", "migrate", 0), at(1))
        .is_empty());
    let mut message = EventMessage {
        action: Some("die".into()),
        actor: Some(bollard::models::EventActor {
            id: Some("abc".into()),
            attributes: Some(HashMap::from([
                (COMPOSE_SERVICE.to_owned(), "db".to_owned()),
                (COMPOSE_ONEOFF.to_owned(), "True".to_owned()),
            ])),
        }),
        time_nano: Some(1_700_000_000_123_456_789),
        ..EventMessage::default()
    };
    assert!(ContainerEvent::from_message(&message).is_none());
    message
        .actor
        .as_mut()
        .unwrap()
        .attributes
        .as_mut()
        .unwrap()
        .insert(COMPOSE_ONEOFF.to_owned(), "False".to_owned());
    let event = ContainerEvent::from_message(&message).unwrap();
    assert_eq!(event.service, "db");
    assert_eq!(
        event.time,
        UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789)
    );
}

fn probe(service: &str, container: &str, passed: bool, at_ms: u64) -> ProbeResult {
    ProbeResult {
        service: service.to_owned(),
        container: container.to_owned(),
        passed,
        at: at(at_ms),
        output: String::new(),
    }
}

#[test]
fn a_passing_probe_makes_a_service_ready_before_the_engine_and_both_times_are_kept() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    let mut start = event("start", "c1", "db", 1_000);
    start.healthcheck = Some(true);
    watch.on_event(&start, at(1_001));
    assert!(watch.starting_container("db", "c1"));
    assert!(watch
        .on_probe(&probe("db", "c1", false, 1_100), at(1_100))
        .is_empty());
    assert!(
        watch.ready("db").is_none(),
        "a failing probe decides nothing"
    );
    let changes = watch.on_probe(&probe("db", "c1", true, 1_250), at(1_251));
    let Some(Change::Ready { ready, .. }) = changes.first() else {
        panic!("{changes:?}")
    };
    assert_eq!(ready.signal, Signal::Probe);
    assert_eq!(ready.after, Duration::from_millis(250));
    assert_eq!(ready.probe_after, Some(Duration::from_millis(250)));
    assert_eq!(ready.engine_after, None);
    assert!(!watch.starting_container("db", "c1"));
    // Ready for the harness, not yet for the engine: compose's `service_healthy` waits for the
    // engine's status, so an engine that runs no healthchecks is still asked to.
    assert_eq!(watch.awaiting_health(), ["c1"]);
    // The engine's own check a moment later adds its time, and changes nothing else.
    let changes = watch.on_event(
        &event("health_status: healthy", "c1", "db", 2_000),
        at(2_001),
    );
    assert!(changes.is_empty(), "{changes:?}");
    assert!(watch.awaiting_health().is_empty());
    let ready = watch.ready("db").unwrap();
    assert_eq!(ready.signal, Signal::Probe);
    assert_eq!(ready.after, Duration::from_millis(250));
    assert_eq!(ready.engine_after, Some(Duration::from_secs(1)));
}

#[test]
fn the_engine_first_then_a_late_probe_keeps_the_engine_as_the_signal() {
    let mut watch = Watch::new(&services(&["db"]), Duration::from_secs(60));
    let mut start = event("start", "c1", "db", 0);
    start.healthcheck = Some(true);
    watch.on_event(&start, at(1));
    watch.on_event(&event("health_status: healthy", "c1", "db", 900), at(901));
    // A probe of a ready container changes nothing (the wait stops probing it anyway).
    assert!(watch
        .on_probe(&probe("db", "c1", true, 950), at(951))
        .is_empty());
    let ready = watch.ready("db").unwrap();
    assert_eq!(ready.signal, Signal::Engine);
    assert_eq!(ready.after, Duration::from_millis(900));
    assert_eq!(ready.engine_after, Some(Duration::from_millis(900)));
}

#[test]
fn a_service_with_a_ready_probe_and_no_healthcheck_waits_for_its_probe() {
    let mut watch = Watch::new(&services(&["cache", "worker"]), Duration::from_secs(60))
        .with_ready_probes(["cache".to_owned()]);
    for (container, service) in [("c1", "cache"), ("w1", "worker")] {
        let mut start = event("start", container, service, 0);
        start.healthcheck = Some(false);
        watch.on_event(&start, at(1));
    }
    assert!(
        watch.ready("worker").is_some(),
        "no probe: ready when running"
    );
    assert!(watch.ready("cache").is_none());
    // A probe of a container that stopped is ignored.
    watch.on_event(&event("kill", "c1", "cache", 10), at(11));
    assert!(watch
        .on_probe(&probe("cache", "c1", true, 20), at(21))
        .is_empty());
    let mut start = event("start", "c2", "cache", 30);
    start.healthcheck = Some(false);
    watch.on_event(&start, at(31));
    watch.on_probe(&probe("cache", "c2", true, 130), at(131));
    let ready = watch.ready("cache").unwrap();
    assert_eq!(ready.signal, Signal::Probe);
    assert_eq!(ready.after, Duration::from_millis(100));
    assert!(watch.all_ready());
}

#[test]
fn parses_engine_timestamps() {
    assert_eq!(
        parse_rfc3339("1970-01-01T00:00:01.5Z"),
        Some(UNIX_EPOCH + Duration::from_millis(1_500))
    );
    assert_eq!(
        parse_rfc3339("2026-11-27T08:20:31.123456789Z"),
        Some(UNIX_EPOCH + Duration::new(1_795_767_631, 123_456_789))
    );
    assert_eq!(
        parse_rfc3339("2026-11-27T09:20:31+01:00"),
        parse_rfc3339("2026-11-27T08:20:31Z")
    );
    assert_eq!(parse_rfc3339("0001-01-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("yesterday"), None);
}
