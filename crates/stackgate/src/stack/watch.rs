//! Readiness as a pure state machine: [`Watch`] takes in engine events ([`ContainerEvent`]),
//! inspections ([`Inspected`]) and the harness's own probe results ([`ProbeResult`]) with the
//! time they were seen, and says which service started, became ready (with its time to healthy,
//! which signal came first, the probe's and the engine's times, and the notice latency) or
//! failed, and which one is past its budget. No I/O: it is tested without an engine.
//!
//! Not here: subscribing to the engine or inspecting containers ([super::containers]), running
//! the probes ([super::probe]), the wait loop that feeds it ([super::up]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};
use serde::Serialize;

use super::{short_id, COMPOSE_ONEOFF, COMPOSE_SERVICE};

/// What made a service ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The harness's own probe (its healthcheck run through exec, or `[stack.ready]`) passed
    /// before the engine said healthy.
    Probe,
    /// The engine's health status turned healthy first.
    Engine,
    /// Running, without a healthcheck or a probe.
    Running,
    /// Healthy already when this run began watching (an unchanged container compose kept).
    AlreadyHealthy,
}

impl Signal {
    /// For reports: `probe`, `engine`, `running`, `already healthy`.
    pub fn describe(self) -> &'static str {
        match self {
            Signal::Probe => "probe",
            Signal::Engine => "engine",
            Signal::Running => "running",
            Signal::AlreadyHealthy => "already healthy",
        }
    }
}

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
    /// What made it ready first.
    signal: Option<Signal>,
    /// The first passing probe of the harness, and the engine's first healthy status.
    probe_at: Option<SystemTime>,
    engine_at: Option<SystemTime>,
    /// The engine's health status is healthy (its time may be unknown: `engine_at`).
    engine_healthy: bool,
}

impl Tracked {
    fn live(&self) -> bool {
        self.running && !self.stopping
    }

    /// The first signal wins; later ones only add their own time.
    fn mark_ready(&mut self, at: SystemTime, signal: Signal, now: SystemTime) {
        if self.ready_at.is_none() {
            self.ready_at = Some(at);
            self.signal = Some(signal);
            self.noticed_at = Some(now);
        }
    }

    fn since_start(&self, at: Option<SystemTime>) -> Option<Duration> {
        Some(at?.duration_since(self.started?).unwrap_or_default())
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
    /// What made it ready first.
    pub signal: Signal,
    /// Start to the harness's first passing probe, when one passed.
    pub probe_after: Option<Duration>,
    /// Start to the engine's first healthy status, when the wait saw it.
    pub engine_after: Option<Duration>,
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
    /// Services that `[stack.ready]` gives a probe: without a healthcheck, they are ready when
    /// the probe passes, not when they run.
    probed: BTreeSet<String>,
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
            probed: BTreeSet::new(),
        }
    }

    /// Services that `[stack.ready]` gives a probe of their own.
    pub fn with_ready_probes(mut self, services: impl IntoIterator<Item = String>) -> Watch {
        self.probed = services.into_iter().collect();
        self
    }

    /// Whether a container is live and not ready yet: what the harness probes.
    pub fn starting_container(&self, service: &str, container: &str) -> bool {
        self.services
            .get(service)
            .and_then(|c| c.get(container))
            .is_some_and(|t| t.live() && t.ready_at.is_none())
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

    /// Live containers with a healthcheck whose engine has not said healthy yet, ready by the
    /// harness's probe or not: compose's `service_healthy` waits for the engine's own status, and
    /// the report gives the engine's time (an engine that runs no healthchecks is asked to).
    pub fn awaiting_health(&self) -> Vec<String> {
        self.services
            .values()
            .flat_map(|containers| {
                containers
                    .iter()
                    .filter(|(_, t)| t.live() && t.healthcheck == Some(true) && !t.engine_healthy)
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
            let probed = self.probed.contains(&inspected.service);
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
            tracked.engine_healthy = healthy;
            if healthy && tracked.engine_at.is_none() {
                tracked.engine_at = inspected.first_healthy;
            }
            if tracked.ready_at.is_none()
                && inspected.running
                && (healthy || (!inspected.healthcheck && !probed))
            {
                tracked.ready_at = Some(if inspected.healthcheck {
                    inspected.first_healthy.unwrap_or(now)
                } else {
                    inspected.started.unwrap_or(now)
                });
                tracked.ready_before_watch =
                    inspected.healthcheck && inspected.first_healthy.is_none();
                tracked.signal = Some(if tracked.ready_before_watch {
                    Signal::AlreadyHealthy
                } else if inspected.healthcheck {
                    Signal::Engine
                } else {
                    Signal::Running
                });
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
            self.refresh(&service);
        }
        changes
    }

    /// Takes in one of the harness's probes; a passing one makes its container ready (unless the
    /// engine said so first). Probes of containers the watch does not know, or that stopped, are
    /// ignored.
    pub fn on_probe(&mut self, probe: &ProbeResult, now: SystemTime) -> Vec<Change> {
        if !probe.passed {
            return Vec::new();
        }
        let Some(tracked) = self
            .services
            .get_mut(&probe.service)
            .and_then(|c| c.get_mut(&probe.container))
        else {
            return Vec::new();
        };
        if !tracked.live() {
            return Vec::new();
        }
        tracked.probe_at.get_or_insert(probe.at);
        tracked.mark_ready(probe.at, Signal::Probe, now);
        let change = self.settle(&probe.service);
        self.refresh(&probe.service);
        change.into_iter().collect()
    }

    /// Takes the engine's first healthy check from an inspection after the wait, for services
    /// the harness's probe found ready first; changes nothing else.
    pub fn engine_times(&mut self, seen: &[Inspected]) {
        for inspected in seen {
            if inspected.health != Some(HealthStatusEnum::HEALTHY) {
                continue;
            }
            if let Some(tracked) = self
                .services
                .get_mut(&inspected.service)
                .and_then(|c| c.get_mut(&inspected.container))
            {
                if tracked.engine_at.is_none() {
                    tracked.engine_at = inspected.first_healthy;
                }
            }
        }
        let services: Vec<String> = self.ready.keys().cloned().collect();
        for service in services {
            self.refresh(&service);
        }
    }

    /// Brings a ready service's probe and engine times up to date (a later signal adds its time).
    fn refresh(&mut self, service: &str) {
        let Some(ready) = self.ready.get_mut(service) else {
            return;
        };
        if let Some(tracked) = self
            .services
            .get(service)
            .and_then(|c| c.get(&ready.container))
        {
            ready.probe_after = tracked.since_start(tracked.probe_at);
            ready.engine_after = tracked.since_start(tracked.engine_at);
        }
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
        let probed = self.probed.contains(&service);
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
            // A start of a container already running, with no exit between: podman sends one
            // when a start call finds it running (the harness starts some containers as soon as
            // compose created them, and again with the rest). Nothing happened to it.
            "start" if tracked.started.is_some() && tracked.running && !tracked.stopping => {
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
                tracked.signal = None;
                tracked.probe_at = None;
                tracked.engine_at = None;
                tracked.engine_healthy = false;
                if let Some(healthcheck) = event.healthcheck {
                    tracked.healthcheck = Some(healthcheck);
                }
                if tracked.healthcheck == Some(false) && !probed {
                    tracked.mark_ready(event.time, Signal::Running, now);
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
                        tracked.engine_healthy = true;
                        tracked.engine_at.get_or_insert(event.time);
                        tracked.mark_ready(event.time, Signal::Engine, now);
                        let change = self.settle(&service);
                        self.refresh(&service);
                        change.into_iter().collect()
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
            signal: tracked.signal.unwrap_or(Signal::Running),
            probe_after: tracked.since_start(tracked.probe_at),
            engine_after: tracked.since_start(tracked.engine_at),
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

/// One probe's outcome.
#[derive(Debug, Clone)]
pub struct ProbeResult {
    pub service: String,
    pub container: String,
    pub passed: bool,
    /// When the probe ended (by this machine's clock, which is the engine's on a local engine).
    pub at: SystemTime,
    /// What the probe printed, or why it could not run.
    pub output: String,
}

#[cfg(test)]
mod tests;
