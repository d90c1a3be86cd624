//! Readiness as a pure state machine: [`Watch`] takes in engine events ([`ContainerEvent`]) and
//! inspections ([`Inspected`]) with the time they were seen, and says which service started,
//! became ready (with its time to healthy and the notice latency) or failed, and which one is
//! past its budget. No I/O: it is tested without an engine.
//!
//! Not here: subscribing to the engine or inspecting containers ([super::containers]), the wait
//! loop that feeds it ([super::up]).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};

use super::{short_id, COMPOSE_ONEOFF, COMPOSE_SERVICE};

/// One engine event about one of the project's containers, reduced to what the wait needs.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    /// `create`, `start`, `restart`, `die`, `kill`, `oom`, `destroy`, `health_status: healthy`, ...
    pub action: String,
    pub container: String,
    pub service: String,
    pub name: String,
    pub exit_code: Option<String>,
    /// The engine's time of the event.
    pub time: SystemTime,
    /// For `start`: whether the container has a healthcheck (the caller inspects it).
    pub healthcheck: Option<bool>,
}

impl ContainerEvent {
    /// `None` for events of other kinds, one-off containers, or without a service label.
    pub fn from_message(message: &EventMessage) -> Option<ContainerEvent> {
        let actor = message.actor.as_ref()?;
        let attributes = actor.attributes.as_ref()?;
        if attributes.get(COMPOSE_ONEOFF).map(String::as_str) == Some("True") {
            return None;
        }
        let time = match (message.time_nano, message.time) {
            (Some(nanos), _) if nanos > 0 => UNIX_EPOCH + Duration::from_nanos(nanos as u64),
            (_, Some(secs)) if secs > 0 => UNIX_EPOCH + Duration::from_secs(secs as u64),
            _ => SystemTime::now(),
        };
        Some(ContainerEvent {
            action: message.action.clone()?,
            container: actor.id.clone()?,
            service: attributes.get(COMPOSE_SERVICE)?.clone(),
            name: attributes.get("name").cloned().unwrap_or_default(),
            exit_code: attributes.get("exitCode").cloned(),
            time,
            healthcheck: None,
        })
    }
}

/// What is known about one container of a watched service.
#[derive(Debug, Clone, Default)]
struct Tracked {
    name: String,
    started: Option<SystemTime>,
    healthcheck: Option<bool>,
    running: bool,
    /// Killed or stopped on purpose (compose recreating it): its exit is not a failure.
    stopping: bool,
    /// When it became ready (healthy, or running without a healthcheck), by the engine's clock.
    ready_at: Option<SystemTime>,
    /// When the harness noticed that.
    noticed_at: Option<SystemTime>,
    /// It was healthy before this run began watching (an unchanged container compose kept).
    ready_before_watch: bool,
}

impl Tracked {
    fn live(&self) -> bool {
        self.running && !self.stopping
    }
}

/// A service's readiness, once reached.
#[derive(Debug, Clone)]
pub struct Ready {
    pub container: String,
    /// Start to ready, by the engine's clock (zero when it was ready before the run watched it).
    pub after: Duration,
    /// Engine event to the harness noticing it.
    pub noticed: Option<Duration>,
    pub healthcheck: bool,
    pub before_watch: bool,
}

/// Why a service failed the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub service: String,
    pub container: Option<String>,
    pub reason: String,
}

/// What changed after an event, for the reporter.
#[derive(Debug, Clone)]
pub enum Change {
    Started { service: String },
    Ready { service: String, ready: Ready },
    Failed(Failed),
}

/// The services being waited for, and their containers.
#[derive(Debug, Default)]
pub struct Watch {
    services: BTreeMap<String, BTreeMap<String, Tracked>>,
    ready: BTreeMap<String, Ready>,
    budget: Duration,
}

/// A container's state at one moment, from an inspection.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub container: String,
    pub service: String,
    pub name: String,
    pub running: bool,
    pub started: Option<SystemTime>,
    pub healthcheck: bool,
    pub health: Option<HealthStatusEnum>,
    /// When the first passing healthcheck ended, when the engine still has it.
    pub first_healthy: Option<SystemTime>,
}

impl Inspected {
    pub fn from_response(response: &ContainerInspectResponse) -> Option<Inspected> {
        let config = response.config.as_ref()?;
        let labels = config.labels.as_ref()?;
        let state = response.state.as_ref();
        let health = state.and_then(|s| s.health.as_ref());
        let started = state
            .and_then(|s| s.started_at.as_deref())
            .and_then(parse_rfc3339);
        Some(Inspected {
            container: response.id.clone()?,
            service: labels.get(COMPOSE_SERVICE)?.clone(),
            name: response
                .name
                .as_deref()
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned(),
            running: state.and_then(|s| s.running).unwrap_or(false),
            started,
            healthcheck: has_healthcheck(response),
            health: health.and_then(|h| h.status),
            first_healthy: health.and_then(|h| first_healthy(h, started)),
        })
    }
}

/// Whether the container runs a healthcheck (`NONE` disables an image's one).
pub fn has_healthcheck(response: &ContainerInspectResponse) -> bool {
    response
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref())
        .and_then(|test| test.first())
        .is_some_and(|first| first != "NONE")
}

/// The end of the first passing probe, when the engine's log (its last five probes) still
/// reaches back to the container's start.
fn first_healthy(
    health: &bollard::models::Health,
    started: Option<SystemTime>,
) -> Option<SystemTime> {
    let log = health.log.as_ref()?;
    let complete = log.len() < 5
        || log
            .first()
            .and_then(|r| r.exit_code)
            .is_some_and(|code| code != 0);
    if !complete {
        return None;
    }
    let first = log.iter().find(|r| r.exit_code == Some(0))?;
    let end = first.end.as_deref().and_then(parse_rfc3339)?;
    started.is_none_or(|s| end >= s).then_some(end)
}

impl Watch {
    pub fn new(services: &[String], budget: Duration) -> Watch {
        Watch {
            services: services
                .iter()
                .map(|s| (s.clone(), BTreeMap::new()))
                .collect(),
            ready: BTreeMap::new(),
            budget,
        }
    }

    pub fn all_ready(&self) -> bool {
        self.services.keys().all(|s| self.ready.contains_key(s))
    }

    pub fn ready(&self, service: &str) -> Option<&Ready> {
        self.ready.get(service)
    }

    /// Whether a container is known to have a healthcheck (`None`: not known yet).
    pub fn healthcheck_of(&self, service: &str, container: &str) -> Option<bool> {
        self.services.get(service)?.get(container)?.healthcheck
    }

    /// Running containers of services not ready yet whose readiness is their healthcheck.
    pub fn awaiting_health(&self) -> Vec<String> {
        self.services
            .iter()
            .filter(|(name, _)| !self.ready.contains_key(*name))
            .flat_map(|(_, containers)| {
                containers
                    .iter()
                    .filter(|(_, t)| {
                        t.live() && t.healthcheck == Some(true) && t.ready_at.is_none()
                    })
                    .map(|(id, _)| id.clone())
            })
            .collect()
    }

    /// Services not ready yet, each with how long its newest container has run.
    pub fn pending(&self, now: SystemTime) -> Vec<(String, Option<Duration>)> {
        self.services
            .iter()
            .filter(|(name, _)| !self.ready.contains_key(*name))
            .map(|(name, containers)| {
                let started = containers
                    .values()
                    .filter(|t| t.live())
                    .filter_map(|t| t.started)
                    .max();
                (
                    name.clone(),
                    started.map(|s| now.duration_since(s).unwrap_or_default()),
                )
            })
            .collect()
    }

    /// Takes in what an inspection saw (before `up`, and after it to reconcile). Containers that
    /// no longer exist are dropped from `present_ids` when `complete` says the list is whole.
    pub fn observe(&mut self, seen: &[Inspected], complete: bool, now: SystemTime) -> Vec<Change> {
        let mut changes = Vec::new();
        for inspected in seen {
            let Some(containers) = self.services.get_mut(&inspected.service) else {
                continue;
            };
            let tracked = containers.entry(inspected.container.clone()).or_default();
            tracked.name = inspected.name.clone();
            tracked.healthcheck = Some(inspected.healthcheck);
            if tracked.started.is_none() {
                tracked.started = inspected.started;
            }
            if !tracked.stopping {
                tracked.running = inspected.running;
            }
            let healthy = inspected.health == Some(HealthStatusEnum::HEALTHY);
            if tracked.ready_at.is_none()
                && inspected.running
                && (healthy || !inspected.healthcheck)
            {
                tracked.ready_at = Some(if inspected.healthcheck {
                    inspected.first_healthy.unwrap_or(now)
                } else {
                    inspected.started.unwrap_or(now)
                });
                tracked.ready_before_watch =
                    inspected.healthcheck && inspected.first_healthy.is_none();
                tracked.noticed_at = None;
            }
        }
        if complete {
            for containers in self.services.values_mut() {
                containers.retain(|id, _| seen.iter().any(|i| &i.container == id));
            }
        }
        let services: Vec<String> = self.services.keys().cloned().collect();
        for service in services {
            if let Some(change) = self.settle(&service) {
                changes.push(change);
            }
        }
        changes
    }

    /// Takes in one engine event; returns what changed.
    pub fn on_event(&mut self, event: &ContainerEvent, now: SystemTime) -> Vec<Change> {
        let Some(containers) = self.services.get_mut(&event.service) else {
            return Vec::new();
        };
        let service = event.service.clone();
        let fail = |reason: String| {
            vec![Change::Failed(Failed {
                service: service.clone(),
                container: Some(event.container.clone()),
                reason,
            })]
        };
        let action = event.action.as_str();
        if action == "destroy" {
            containers.remove(&event.container);
            return self.settle(&service).into_iter().collect();
        }
        let tracked = containers.entry(event.container.clone()).or_default();
        if !event.name.is_empty() {
            tracked.name = event.name.clone();
        }
        let name = if tracked.name.is_empty() {
            short_id(&event.container).to_owned()
        } else {
            tracked.name.clone()
        };
        match action {
            "create" => {
                tracked.healthcheck = event.healthcheck.or(tracked.healthcheck);
                Vec::new()
            }
            "start" | "restart" => {
                let restarted = tracked.started.is_some() || action == "restart";
                if restarted && !tracked.stopping {
                    return fail(format!(
                        "service `{service}` restarted (container {name}): it exited and was started again"
                    ));
                }
                tracked.started = Some(event.time);
                tracked.running = true;
                tracked.stopping = false;
                tracked.ready_at = None;
                tracked.ready_before_watch = false;
                if let Some(healthcheck) = event.healthcheck {
                    tracked.healthcheck = Some(healthcheck);
                }
                if tracked.healthcheck == Some(false) {
                    tracked.ready_at = Some(event.time);
                    tracked.noticed_at = Some(now);
                }
                self.ready.remove(&service);
                let mut changes = vec![Change::Started {
                    service: service.clone(),
                }];
                changes.extend(self.settle(&service));
                changes
            }
            "kill" | "stop" => {
                tracked.stopping = true;
                self.settle(&service).into_iter().collect()
            }
            "die" => {
                tracked.running = false;
                if tracked.stopping {
                    return self.settle(&service).into_iter().collect();
                }
                let code = event.exit_code.as_deref().unwrap_or("unknown");
                fail(format!(
                    "service `{service}` exited with code {code} (container {name})"
                ))
            }
            "oom" => fail(format!(
                "service `{service}` ran out of memory (container {name})"
            )),
            _ if action.starts_with("health_status") => {
                let status = action
                    .split_once(':')
                    .map_or("", |(_, s)| s.trim())
                    .to_owned();
                match status.as_str() {
                    "healthy" => {
                        tracked.healthcheck = Some(true);
                        if tracked.ready_at.is_none() {
                            tracked.ready_at = Some(event.time);
                            tracked.noticed_at = Some(now);
                        }
                        self.settle(&service).into_iter().collect()
                    }
                    "unhealthy" if !tracked.stopping => fail(format!(
                        "service `{service}` turned unhealthy (container {name})"
                    )),
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        }
    }

    /// A service is ready when it has live containers and every one of them is ready.
    fn settle(&mut self, service: &str) -> Option<Change> {
        let containers = self.services.get(service)?;
        let live: Vec<(&String, &Tracked)> = containers.iter().filter(|(_, t)| t.live()).collect();
        let all_ready = !live.is_empty() && live.iter().all(|(_, t)| t.ready_at.is_some());
        if !all_ready {
            self.ready.remove(service);
            return None;
        }
        if self.ready.contains_key(service) {
            return None;
        }
        // The slowest container decides the service's time.
        let (id, tracked) = live
            .iter()
            .max_by_key(|(_, t)| t.ready_at)
            .copied()
            .expect("live is not empty");
        let ready_at = tracked.ready_at.expect("all are ready");
        let after = match tracked.started {
            Some(started) if !tracked.ready_before_watch => {
                ready_at.duration_since(started).unwrap_or_default()
            }
            _ => Duration::ZERO,
        };
        let ready = Ready {
            container: id.clone(),
            after,
            noticed: tracked
                .noticed_at
                .map(|n| n.duration_since(ready_at).unwrap_or_default()),
            healthcheck: tracked.healthcheck.unwrap_or(false),
            before_watch: tracked.ready_before_watch,
        };
        self.ready.insert(service.to_owned(), ready.clone());
        Some(Change::Ready {
            service: service.to_owned(),
            ready,
        })
    }

    /// The earliest moment a started service runs out of budget.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.starting()
            .map(|(_, _, started)| started + self.budget)
            .min()
    }

    /// A started service past its budget, if any.
    pub fn overdue(&self, now: SystemTime) -> Option<Failed> {
        self.starting()
            .filter(|(_, _, started)| *started + self.budget <= now)
            .min_by_key(|(_, _, started)| *started)
            .map(|(service, container, _)| Failed {
                service: service.to_owned(),
                container: Some(container.to_owned()),
                reason: format!(
                    "service `{service}` was not healthy within its budget of {}s (service_budget_s)",
                    self.budget.as_secs()
                ),
            })
    }

    fn starting(&self) -> impl Iterator<Item = (&str, &str, SystemTime)> {
        self.services
            .iter()
            .filter(|(name, _)| !self.ready.contains_key(*name))
            .flat_map(|(name, containers)| {
                containers
                    .iter()
                    .filter(|(_, t)| t.live() && t.ready_at.is_none())
                    .filter_map(move |(id, t)| Some((name.as_str(), id.as_str(), t.started?)))
            })
    }

    /// A service without any live container (after `up` finished, that is a failure).
    pub fn without_container(&self) -> Option<String> {
        self.services
            .iter()
            .find(|(name, containers)| {
                !self.ready.contains_key(*name) && !containers.values().any(Tracked::live)
            })
            .map(|(name, _)| name.clone())
    }

    /// Any container of the service, newest start first (for its logs).
    pub fn container_of(&self, service: &str) -> Option<String> {
        self.services
            .get(service)?
            .iter()
            .max_by_key(|(_, t)| t.started)
            .map(|(id, _)| id.clone())
    }
}

/// Parses the engine's timestamps: `2026-11-27T08:20:31.123456789Z` (or with an offset).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if text.len() < 20 || text.starts_with("0001-") {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> { text.get(range)?.parse().ok() };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    let mut nanos: u64 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits: String = fraction.chars().take_while(char::is_ascii_digit).collect();
        rest = &fraction[digits.len()..];
        let padded = format!("{digits:0<9}");
        nanos = padded[..9].parse().ok()?;
    }
    let offset_s: i64 = if rest == "Z" || rest == "z" {
        0
    } else {
        let sign = match rest.chars().next()? {
            '+' => 1,
            '-' => -1,
            _ => return None,
        };
        let hours: i64 = rest.get(1..3)?.parse().ok()?;
        let minutes: i64 = rest.get(4..6)?.parse().ok()?;
        sign * (hours * 3600 + minutes * 60)
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    (secs >= 0).then(|| UNIX_EPOCH + Duration::new(secs as u64, nanos as u32))
}

#[cfg(test)]
mod tests {
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
        assert!(changes
            .iter()
            .any(|c| matches!(c, Change::Ready { service, ready } if service == "web" && !ready.healthcheck)));
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
}
