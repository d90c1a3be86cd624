//! The stack: `docker-up`, `health`, `docker-down` on top of [crate::compose] and the engine API.
//!
//! CONTRACT (used by the gate and monitor; none of these print):
//! - [`up`]`(config, engine, &UpOptions) -> Result<UpReport>`: labels, `compose up -d`, waits on
//!   the engine's event stream until every `[stack] services` entry is healthy (or running when it
//!   has no healthcheck) within `service_budget_s` of its start; one [`Check`] per service, the
//!   compose flavour and version, the resolved endpoints, the recorded [`StackState`]. A service
//!   that exits, restarts or turns unhealthy fails the wait at once, with its last log lines. `Err`
//!   only when the wait could not even start (no `[stack]`, no compose, engine error: typed with
//!   [`Failure`]); a failed wait is `Ok` with [`UpReport::passed`] false, the stack left for [`down`].
//! - [`down`]`(config, &StackState) -> Result<Check>`: removes the run's containers, networks and
//!   volumes (compose down, then everything still carrying its run id), clears its record.
//! - [`remove_leftovers`]`(config, engine) -> Result<Vec<String>>`: removes this repository's
//!   labelled runs whose owner pid is gone and that were not kept on purpose; says what it removed.
//! - [`mark_kept`]`(config, &StackState)`: the gate's `--keep`: the run survives `remove_leftovers`.
//! - [`health_report`]`(config)` and [`health_snapshot`]`(config)`: the recorded run's health.
//!
//! Not here: finding or starting the engine ([crate::engine]), base images ([crate::images]).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bollard::models::{ContainerInspectResponse, EventMessage, HealthStatusEnum};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, ListVolumesOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder,
};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::compose::{self, Compose, Flavour, Project};
use crate::config::{Config, StackCfg};
use crate::endpoints::{self, Lookup};
use crate::engine::{self, Engine};
use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::state::{self, StackState, LABEL_PID, LABEL_PROJECT, LABEL_ROOT, LABEL_RUN_ID};
use crate::{ui, Ctx};

/// Compose's own labels, which the engine event filter and the container lookups use.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
const COMPOSE_SERVICE: &str = "com.docker.compose.service";
const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

// ---------------------------------------------------------------------------------------------
// Options, events, reports.

/// How [`up`] runs.
#[derive(Clone, Default)]
pub struct UpOptions {
    /// Own project name (`<name>-<short run id>`) and `[stack] isolated_env` (ephemeral ports).
    pub isolated: bool,
    /// The run id (the gate passes its own); a new one when absent.
    pub run_id: Option<String>,
    /// The pid recorded in `io.xtask.pid`: the process that owns the run (default: this one).
    pub owner_pid: Option<u32>,
    /// The stack is meant to outlive this process (`docker-up`, `--keep`): `remove_leftovers`
    /// leaves it; only `docker-down` removes it.
    pub keep: bool,
    /// The compose program, when the caller already detected it.
    pub compose: Option<Compose>,
    /// Receives progress while the stack starts (see [`terminal_progress`]).
    pub progress: Option<Progress>,
}

/// A sink for [`UpEvent`]s.
pub type Progress = Arc<dyn Fn(&UpEvent) + Send + Sync>;

/// What happens while the stack comes up, for a reporter.
#[derive(Debug, Clone)]
pub enum UpEvent {
    /// The compose program that will run the stack.
    Compose(Compose),
    /// `compose up` started, under this project name.
    Starting { project: String, command: String },
    /// A service's container started; its budget runs from now.
    ServiceStarted { service: String },
    /// A service became healthy (or running, without a healthcheck).
    ServiceReady {
        service: String,
        /// From its container's start to healthy, by the engine's clock.
        after: Duration,
        /// From the engine's event to the harness noticing it.
        noticed: Option<Duration>,
    },
    /// A service failed the wait.
    ServiceFailed { service: String, reason: String },
    /// Periodically while services are pending: each with how long it has been starting
    /// (`None`: no container started yet).
    Waiting {
        elapsed: Duration,
        pending: Vec<(String, Option<Duration>)>,
    },
    /// `compose up -d` returned.
    UpFinished { elapsed: Duration, success: bool },
}

/// One service as [`up`] saw it come up.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceUp {
    pub service: String,
    /// `service <name> healthy`, duration = time to healthy from its container's start.
    pub check: Check,
    /// From the engine's health event to the harness noticing it (seconds, to the microsecond).
    #[serde(serialize_with = "opt_secs_micro")]
    pub noticed_after: Option<Duration>,
    /// Readiness came from a healthcheck (else: running, no healthcheck).
    pub healthcheck: bool,
}

/// What [`up`] did.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    pub run_id: String,
    pub project: String,
    pub isolated: bool,
    pub compose: Compose,
    /// `compose up -d`: its duration, and its output when it failed.
    pub up: Check,
    /// One per `[stack] services` entry, in that order.
    pub services: Vec<ServiceUp>,
    /// Resolving `[endpoints]` from the published ports (skipped when the wait failed).
    pub endpoints_check: Check,
    pub endpoints: BTreeMap<String, String>,
    /// From the start of [`up`] to the last service healthy.
    #[serde(serialize_with = "secs")]
    pub total: Duration,
    /// From `compose up` starting to the last service healthy: the stack part of `total`.
    #[serde(serialize_with = "secs")]
    pub waited: Duration,
    /// What is recorded in state.json (also on failure, so that `docker-down` finds the stack).
    pub state: StackState,
}

impl UpReport {
    pub fn passed(&self) -> bool {
        self.checks().all(|c| c.outcome != Outcome::Failed)
    }

    /// Every check, in order: compose up, each service, endpoints.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        std::iter::once(&self.up)
            .chain(self.services.iter().map(|s| &s.check))
            .chain(std::iter::once(&self.endpoints_check))
    }

    /// The first failed check.
    pub fn failure(&self) -> Option<&Check> {
        self.checks().find(|c| c.outcome == Outcome::Failed)
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

fn opt_secs_micro<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6),
        None => s.serialize_none(),
    }
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => secs(d, s),
        None => s.serialize_none(),
    }
}

/// What a run leaves in `target/xtask/runs/<run_id>/run.json`: who owns it, whether it is kept,
/// and what [`up`] measured (which `health` reports later, when the engine's own record is gone).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub project: String,
    pub pid: u32,
    pub kept: bool,
    pub compose: String,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRecord>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub container: String,
    pub time_to_healthy_s: f64,
    pub noticed_ms: Option<f64>,
}

/// `target/xtask/runs/<run_id>`.
pub fn run_dir(config: &Config, run_id: &str) -> PathBuf {
    config.work_dir().join("runs").join(run_id)
}

fn load_record(config: &Config, run_id: &str) -> Option<RunRecord> {
    let text = std::fs::read_to_string(run_dir(config, run_id).join("run.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn save_record(config: &Config, record: &RunRecord) -> anyhow::Result<()> {
    state::write_atomic(
        &run_dir(config, &record.run_id).join("run.json"),
        serde_json::to_string_pretty(record)?.as_bytes(),
    )
}

/// Marks a run as kept on purpose (`--keep`): [`remove_leftovers`] leaves it to `docker-down`.
pub fn mark_kept(config: &Config, stack: &StackState) -> anyhow::Result<()> {
    let mut record = load_record(config, &stack.run_id).unwrap_or_else(|| RunRecord {
        run_id: stack.run_id.clone(),
        project: stack.project.clone(),
        pid: std::process::id(),
        compose: stack.compose_flavour.clone(),
        ..RunRecord::default()
    });
    record.kept = true;
    save_record(config, &record)
}

/// The labels every container, network and volume of a run carries.
pub fn run_labels(config: &Config, run_id: &str, pid: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_RUN_ID.to_owned(), run_id.to_owned()),
        (LABEL_PROJECT.to_owned(), config.project.name.0.clone()),
        (LABEL_ROOT.to_owned(), state::root_digest(&config.root)),
        (LABEL_PID.to_owned(), pid.to_string()),
    ])
}

/// The compose project name: `<project.name>`, or `<project.name>-<short run id>` when isolated.
pub fn project_name(config: &Config, run_id: &str, isolated: bool) -> String {
    let name = &config.project.name.0;
    if !isolated {
        return name.clone();
    }
    // Run ids read `<ms since epoch, hex>-<pid>`: the low hex digits and the pid tell runs apart.
    let (time, pid) = run_id.split_once('-').unwrap_or((run_id, ""));
    let tail = &time[time.len().saturating_sub(5)..];
    let short: String = format!("{tail}{pid}")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    format!("{name}-{short}")
}

/// The environment of every compose call: `[stack] env`, plus `isolated_env` when isolated.
pub fn compose_env(stack: &StackCfg, isolated: bool) -> BTreeMap<String, String> {
    let mut env = stack.env.clone();
    if isolated {
        env.extend(stack.isolated_env.clone());
    }
    env
}

// ---------------------------------------------------------------------------------------------
// The labels override.

/// The top-level `version:` of a compose file, which an override must repeat (compose v1 refuses
/// to merge files of different versions).
pub fn compose_file_version(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix("version:")?;
        let value = value.split('#').next().unwrap_or("").trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// The entries of a top-level section (`services:`, `networks:`, `volumes:`) of a block-style
/// compose file, each with the trimmed lines nested under it.
fn section_blocks(text: &str, section: &str) -> Vec<(String, Vec<String>)> {
    let mut entries: Vec<(String, Vec<String>)> = Vec::new();
    let mut inside = false;
    let mut entry_indent = None;
    for line in text.lines() {
        let content = line.split(" #").next().unwrap_or("").trim_end();
        if content.trim().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let indent = content.len() - content.trim_start().len();
        if indent == 0 {
            inside = content.strip_suffix(':').map(str::trim) == Some(section)
                || content.starts_with(&format!("{section}:"))
                    && content[section.len() + 1..].trim().is_empty();
            entry_indent = None;
            continue;
        }
        if !inside {
            continue;
        }
        let key = content.trim_start();
        let indent_of_entries = *entry_indent.get_or_insert(indent);
        if indent == indent_of_entries {
            if let Some((name, _)) = key.split_once(':') {
                let name = name.trim().trim_matches(|c| c == '"' || c == '\'');
                entries.push((name.to_owned(), Vec::new()));
            }
        } else if indent > indent_of_entries {
            if let Some(last) = entries.last_mut() {
                last.1.push(key.to_owned());
            }
        }
    }
    entries
}

/// The entries of a top-level section (`networks:`, `volumes:`) of a block-style compose file,
/// each with whether it says `external`. Compose refuses labels on external resources.
pub fn section_entries(text: &str, section: &str) -> Vec<(String, bool)> {
    section_blocks(text, section)
        .into_iter()
        .map(|(name, lines)| {
            // `external: false` is the one spelling that is not external.
            let external = lines
                .iter()
                .filter_map(|l| l.strip_prefix("external:"))
                .any(|value| value.trim() != "false");
            (name, external)
        })
        .collect()
}

/// The override that puts the run's labels on every service, the default network, every
/// network and volume the file declares (except external ones). JSON is YAML, so compose reads it.
pub fn labels_override(
    base_text: &str,
    services: &[String],
    volumes: &[String],
    labels: &BTreeMap<String, String>,
) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let labelled = || json!({ "labels": labels });
    let mut out = Map::new();
    if let Some(version) = compose_file_version(base_text) {
        out.insert("version".into(), Value::String(version));
    }
    out.insert(
        "services".into(),
        Value::Object(services.iter().map(|s| (s.clone(), labelled())).collect()),
    );
    let declared_networks = section_entries(base_text, "networks");
    let mut networks = Map::new();
    if !declared_networks
        .iter()
        .any(|(name, external)| name == "default" && *external)
    {
        networks.insert("default".into(), labelled());
    }
    for (name, external) in declared_networks {
        if !external {
            networks.insert(name, labelled());
        }
    }
    out.insert("networks".into(), Value::Object(networks));
    let external_volumes: Vec<String> = section_entries(base_text, "volumes")
        .into_iter()
        .filter(|(_, external)| *external)
        .map(|(name, _)| name)
        .collect();
    let volumes: Map<String, Value> = volumes
        .iter()
        .filter(|v| !external_volumes.contains(v))
        .map(|v| (v.clone(), labelled()))
        .collect();
    if !volumes.is_empty() {
        out.insert("volumes".into(), Value::Object(volumes));
    }
    Value::Object(out)
}

/// The services of a block-style compose file that `build:` without naming an `image:`.
pub fn built_without_image(text: &str) -> Vec<String> {
    section_blocks(text, "services")
        .into_iter()
        .filter(|(_, lines)| {
            let has = |key: &str| lines.iter().any(|l| l.starts_with(key));
            has("build:") && !has("image:")
        })
        .map(|(name, _)| name)
        .collect()
}

/// Names the images compose builds `<project>-<service>:xtask`, whatever the run's project name,
/// so that isolated runs share (and reuse) one image per service instead of leaving one per run.
pub fn with_stable_images(
    mut value: serde_json::Value,
    base_text: &str,
    project: &str,
) -> serde_json::Value {
    for service in built_without_image(base_text) {
        if let Some(entry) = value
            .get_mut("services")
            .and_then(|s| s.get_mut(&service))
            .and_then(|e| e.as_object_mut())
        {
            entry.insert(
                "image".into(),
                serde_json::Value::String(format!("{project}-{service}:xtask")),
            );
        }
    }
    value
}

// ---------------------------------------------------------------------------------------------
// Following the engine: what a service is doing, from events and inspections. No I/O here.

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

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
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

// ---------------------------------------------------------------------------------------------
// Published ports and endpoints.

/// Host ports the engine published, by (service, container port).
#[derive(Debug, Clone, Default)]
pub struct PublishedPorts(pub BTreeMap<(String, u16), u16>);

impl Lookup for PublishedPorts {
    fn port(&self, service: &str, container_port: u16) -> Option<u16> {
        self.0.get(&(service.to_owned(), container_port)).copied()
    }
}

impl PublishedPorts {
    /// Adds a container's `NetworkSettings.Ports`; loopback bindings are preferred.
    pub fn add(&mut self, service: &str, response: &ContainerInspectResponse) {
        for (key, port) in container_ports(response) {
            self.0.entry((service.to_owned(), key)).or_insert(port);
        }
    }

    /// `8000->49153` lines for a service.
    pub fn describe(&self, service: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|((_, container), host)| format!("127.0.0.1:{host}->{container}"))
            .collect()
    }
}

/// (container port, host port) of one container, tcp, a loopback binding preferred.
pub fn container_ports(response: &ContainerInspectResponse) -> Vec<(u16, u16)> {
    let Some(ports) = response
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, bindings) in ports {
        let (number, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let (Ok(container), "tcp") = (number.parse::<u16>(), protocol) else {
            continue;
        };
        let Some(bindings) = bindings else { continue };
        let rank = |ip: &str| match ip {
            "127.0.0.1" => 0,
            "" | "0.0.0.0" => 1,
            _ => 2,
        };
        let best = bindings
            .iter()
            .filter_map(|b| {
                let host: u16 = b.host_port.as_deref()?.parse().ok()?;
                Some((rank(b.host_ip.as_deref().unwrap_or("")), host))
            })
            .filter(|(rank, _)| *rank < 2)
            .min();
        if let Some((_, host)) = best {
            out.push((container, host));
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// The engine calls.

fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in pairs {
        map.entry((*key).to_owned())
            .or_default()
            .push((*value).to_owned());
    }
    map
}

/// Inspects every container of a compose project (one-off containers excluded).
pub async fn inspect_project(
    docker: &bollard::Docker,
    project: &str,
) -> anyhow::Result<Vec<(Inspected, ContainerInspectResponse)>> {
    let label = format!("{COMPOSE_PROJECT}={project}");
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters(&[("label", &label)]))
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .with_context(|| format!("cannot list the containers of compose project `{project}`"))?;
    let mut out = Vec::new();
    for summary in list {
        let Some(id) = summary.id else { continue };
        match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(response) => {
                if let Some(inspected) = Inspected::from_response(&response) {
                    out.push((inspected, response));
                }
            }
            // Removed between the list and the inspection.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot inspect container {id}"));
            }
        }
    }
    Ok(out)
}

/// The last `lines` log lines of a container, stdout and stderr interleaved.
pub async fn container_logs(docker: &bollard::Docker, container: &str, lines: usize) -> String {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let collect = async {
        let mut text = String::new();
        let mut stream = docker.logs(container, Some(options));
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => text.push_str(&chunk.to_string()),
                Err(e) => {
                    text.push_str(&format!("(logs cut short: {e})\n"));
                    break;
                }
            }
        }
        text
    };
    match tokio::time::timeout(Duration::from_secs(10), collect).await {
        Ok(text) if text.trim().is_empty() => "(the container printed nothing)".to_owned(),
        Ok(text) => text,
        Err(_) => "(logs did not arrive within 10s)".to_owned(),
    }
}

/// The last healthcheck output of a container, when it has one.
async fn last_probe_output(docker: &bollard::Docker, container: &str) -> Option<String> {
    let response = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()?;
    let log = response.state?.health?.log?;
    let last = log.last()?;
    Some(format!(
        "last healthcheck: exit {} {}",
        last.exit_code.unwrap_or(-1),
        last.output.as_deref().unwrap_or("").trim()
    ))
}

fn unix_time_arg(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// Subscribes to the project's container events from `since` on (the engine replays what
/// happened between `since` and the subscription, so nothing is missed).
fn subscribe(
    docker: &bollard::Docker,
    project: &str,
    since: SystemTime,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Result<EventMessage, bollard::errors::Error>>,
    AbortOnDrop,
) {
    let label = format!("{COMPOSE_PROJECT}={project}");
    let mut pairs = vec![("type", "container"), ("label", label.as_str())];
    for event in [
        "create",
        "start",
        "restart",
        "die",
        "kill",
        "stop",
        "oom",
        "destroy",
        "health_status",
    ] {
        pairs.push(("event", event));
    }
    let options = EventsOptionsBuilder::new()
        .since(&unix_time_arg(since))
        .filters(&filters(&pairs))
        .build();
    let stream = docker.events(Some(options));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if sender.send(item).is_err() {
                break;
            }
        }
    });
    (receiver, AbortOnDrop(task))
}

/// Stops a background task when the wait ends, on every path.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------------
// up

fn stack_cfg(config: &Config) -> Result<&StackCfg, Failure> {
    config.stack.as_ref().ok_or_else(|| {
        Failure::config(format!(
            "{}: there is no [stack] table, so there is no stack to bring up",
            config.path.display()
        ))
    })
}

fn emit(progress: &Option<Progress>, event: UpEvent) {
    if let Some(progress) = progress {
        progress(&event);
    }
}

/// The compose project of a recorded run (its files, environment and program).
pub fn recorded_project(config: &Config, stack: &StackState, compose: Compose) -> Project {
    let mut files = vec![stack.compose_file.clone()];
    let labels = run_dir(config, &stack.run_id).join("labels.json");
    if labels.is_file() {
        files.push(labels);
    }
    Project {
        compose,
        name: stack.project.clone(),
        files,
        env: stack.compose_env.clone(),
        dir: config.root.clone(),
    }
}

/// A run that is ready to start: the compose program, the project, the labels override written.
/// Made without the engine, so that it can overlap the engine stage.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub run_id: String,
    pub owner_pid: u32,
    pub keep: bool,
    pub isolated: bool,
    pub compose: Compose,
    /// With the labels override as its last file.
    pub project: Project,
    /// Every service of the compose file (`config --services`).
    pub all_services: Vec<String>,
    /// When preparation began (the report's total counts from here).
    pub began: Instant,
    /// It continues the recorded run of the same (not isolated) project.
    pub continued: bool,
}

/// Brings the stack up and waits until every service is healthy. See the CONTRACT at the top.
pub async fn up(config: &Config, engine: &Engine, options: &UpOptions) -> anyhow::Result<UpReport> {
    let prepared = prepare(config, options).await?;
    start(config, engine, prepared, options).await
}

/// The part of [`up`] that needs no engine: finds compose, reads the services and volumes, checks
/// `[stack] services` against the file, writes the labels override under the run's directory.
pub async fn prepare(config: &Config, options: &UpOptions) -> anyhow::Result<Prepared> {
    let began = Instant::now();
    let stack = stack_cfg(config)?;
    let work_dir = config.work_dir();
    // A plain run of a project that is already up under a recorded run continues that run (same
    // labels), so that compose keeps the unchanged containers: a second `docker-up` is quick.
    let continued = match (&options.run_id, options.isolated) {
        (None, false) => state::Store::new(&work_dir)
            .read()
            .ok()
            .and_then(|s| s.chosen(None).map(|r| r.stack.clone()))
            .filter(|s| !s.isolated && s.project == config.project.name.0)
            .and_then(|s| load_record(config, &s.run_id))
            .filter(|r| r.pid == std::process::id() || !state::pid_alive(r.pid) || r.kept),
        _ => None,
    };
    let (run_id, owner_pid) = match &continued {
        Some(record) if options.owner_pid.is_none() => (record.run_id.clone(), record.pid),
        _ => (
            options.run_id.clone().unwrap_or_else(state::new_run_id),
            options.owner_pid.unwrap_or_else(std::process::id),
        ),
    };
    let project_name = project_name(config, &run_id, options.isolated);
    let env = compose_env(stack, options.isolated);
    let compose = match &options.compose {
        Some(compose) => compose.clone(),
        None => compose::detect_cached(&work_dir).await?,
    };
    emit(&options.progress, UpEvent::Compose(compose.clone()));

    let mut project = Project {
        compose: compose.clone(),
        name: project_name.clone(),
        files: vec![stack.compose_file.clone()],
        env,
        dir: config.root.clone(),
    };
    let (services, volumes) = project
        .services_and_volumes_cached(&work_dir)
        .await
        .with_context(|| format!("cannot read {}", stack.compose_file.display()))?;
    if let Some(missing) = stack.services.iter().find(|s| !services.contains(s)) {
        return Err(Failure::config(format!(
            "{}: key `stack.services`: service `{missing}` is not in {} (it has: {})",
            config.path.display(),
            stack.compose_file.display(),
            services.join(", ")
        ))
        .into());
    }
    let base_text = std::fs::read_to_string(&stack.compose_file)
        .with_context(|| format!("cannot read {}", stack.compose_file.display()))?;
    let labels = run_labels(config, &run_id, owner_pid);
    let override_path = run_dir(config, &run_id).join("labels.json");
    state::write_atomic(
        &override_path,
        serde_json::to_string_pretty(&with_stable_images(
            labels_override(&base_text, &services, &volumes, &labels),
            &base_text,
            &config.project.name.0,
        ))?
        .as_bytes(),
    )?;
    project.files.push(override_path);
    let continued = continued.is_some_and(|r| r.run_id == run_id);
    Ok(Prepared {
        run_id,
        owner_pid,
        keep: options.keep,
        isolated: options.isolated,
        compose,
        project,
        all_services: services,
        began,
        continued,
    })
}

/// Drops a prepared run that will not start (the engine stage failed): its files go.
pub fn abandon(config: &Config, run_id: &str) {
    let _ = forget(config, run_id);
}

/// The part of [`up`] that needs the engine: records the run, follows the engine's events,
/// runs `compose up -d`, waits, resolves the endpoints.
pub async fn start(
    config: &Config,
    engine: &Engine,
    prepared: Prepared,
    options: &UpOptions,
) -> anyhow::Result<UpReport> {
    let stack = stack_cfg(config)?;
    let Prepared {
        run_id,
        owner_pid,
        keep,
        isolated,
        compose,
        project,
        began,
        ..
    } = prepared;
    let project_name = project.name.clone();
    // The record before anything is created: a run killed halfway is found.
    let mut record = RunRecord {
        run_id: run_id.clone(),
        project: project_name.clone(),
        pid: owner_pid,
        kept: keep,
        compose: compose.to_string(),
        services: BTreeMap::new(),
    };
    save_record(config, &record)?;
    let mut stack_state = StackState {
        run_id: run_id.clone(),
        project: project_name.clone(),
        compose_file: stack.compose_file.clone(),
        compose_flavour: compose.flavour.command().to_owned(),
        services: stack.services.clone(),
        endpoints: BTreeMap::new(),
        isolated,
        compose_env: project.env.clone(),
        started_unix_ms: state::unix_ms(),
    };
    record_state(config, &stack_state)?;

    // Follow the engine first, then act: the subscription replays from `watch_from`.
    let docker = &engine.docker;
    let watch_from = SystemTime::now();
    let (mut events, _events_task) = subscribe(docker, &project_name, watch_from);
    let mut watch = Watch::new(&stack.services, stack.service_budget_s.duration());
    let before: Vec<Inspected> = inspect_project(docker, &project_name)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    watch.observe(&before, true, SystemTime::now());

    let up_argv = project.up_argv(stack.build);
    let up_timeout = stack.service_budget_s.duration() * (stack.services.len() as u32 + 1)
        + if stack.build {
            stack.build_timeout_s.duration()
        } else {
            compose::QUICK_TIMEOUT
        };
    let command = project.command(&up_argv)?;
    emit(
        &options.progress,
        UpEvent::Starting {
            project: project_name.clone(),
            command: command.display.clone(),
        },
    );
    let up_started = Instant::now();
    let running = compose::Running::spawn(command)?;
    let up_call = running.finish(up_timeout);
    tokio::pin!(up_call);

    let mut up_result: Option<anyhow::Result<compose::Output>> = None;
    let mut failed: Option<Failed> = None;
    let mut interrupted = false;
    let mut last_tick = Instant::now();
    let tick = Duration::from_millis(500);
    // After `up` fails, events still in flight may name the service that caused it.
    let mut grace_until: Option<Instant> = None;

    loop {
        if failed.is_some() || interrupted {
            break;
        }
        if let Some(result) = &up_result {
            match result {
                Ok(output) if output.success() => {
                    if watch.all_ready() {
                        break;
                    }
                }
                _ => {
                    if grace_until.is_some_and(|g| Instant::now() >= g) {
                        break;
                    }
                }
            }
        }
        let now = SystemTime::now();
        let budget_wait = watch
            .next_deadline()
            .map(|d| d.duration_since(now).unwrap_or_default())
            .unwrap_or(tick);
        let tick_wait = tick.saturating_sub(last_tick.elapsed());
        let mut wait = budget_wait.min(tick_wait);
        if let Some(grace) = grace_until {
            wait = wait.min(grace.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            biased;
            message = events.recv() => {
                let Some(message) = message else {
                    anyhow::bail!("the engine's event stream ended while waiting for the stack");
                };
                let message = message.context("the engine's event stream failed")?;
                let Some(mut event) = ContainerEvent::from_message(&message) else { continue };
                // Whether it has a healthcheck is known from its creation; learning it then keeps
                // the inspection off the path from `start` to ready.
                let learn = event.action == "create"
                    || (event.action == "start" && watch.healthcheck_of(&event.service, &event.container).is_none());
                if learn {
                    event.healthcheck = docker
                        .inspect_container(&event.container, None::<InspectContainerOptions>)
                        .await
                        .ok()
                        .map(|r| has_healthcheck(&r));
                }
                for change in watch.on_event(&event, SystemTime::now()) {
                    report_change(&options.progress, &change, &mut failed);
                }
            }
            result = &mut up_call, if up_result.is_none() => {
                let success = matches!(&result, Ok(output) if output.success());
                emit(&options.progress, UpEvent::UpFinished { elapsed: up_started.elapsed(), success });
                if success {
                    // Ground truth once compose is done: nothing the stream carried can be missed.
                    let seen: Vec<Inspected> = inspect_project(docker, &project_name)
                        .await?
                        .into_iter()
                        .map(|(i, _)| i)
                        .collect();
                    for change in watch.observe(&seen, true, SystemTime::now()) {
                        report_change(&options.progress, &change, &mut failed);
                    }
                    if failed.is_none() {
                        if let Some(service) = watch.without_container() {
                            failed = Some(Failed {
                                reason: format!("service `{service}` has no running container after `compose up` finished"),
                                container: watch.container_of(&service),
                                service,
                            });
                        }
                    }
                } else {
                    grace_until = Some(Instant::now() + Duration::from_millis(500));
                }
                up_result = Some(result);
            }
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
            }
            _ = tokio::time::sleep(wait) => {
                if let Some(overdue) = watch.overdue(SystemTime::now()) {
                    emit(&options.progress, UpEvent::ServiceFailed { service: overdue.service.clone(), reason: overdue.reason.clone() });
                    failed = Some(overdue);
                } else if last_tick.elapsed() >= tick {
                    last_tick = Instant::now();
                    emit(&options.progress, UpEvent::Waiting {
                        elapsed: began.elapsed(),
                        pending: watch.pending(SystemTime::now()),
                    });
                }
            }
        }
    }
    // Dropping `up_call` here kills a compose call that is still running (its process group).
    let up_elapsed = up_started.elapsed();
    let waited = up_elapsed;
    if interrupted {
        return Err(Failure::Interrupted { signal: "SIGINT" }.into());
    }

    let up_check = match &up_result {
        None => Check::skipped(
            "compose up",
            "stopped: a service failed while `compose up` was still running",
        ),
        Some(Ok(output)) if output.success() => Check::passed(
            "compose up",
            output.elapsed,
            format!("{compose}, project {project_name}"),
        ),
        Some(Ok(output)) => Check::failed(
            "compose up",
            output.elapsed,
            format!("`{}` failed", output.command),
        )
        .with_output(output.stderr_tail(40)),
        Some(Err(e)) => Check::failed("compose up", up_elapsed, format!("{e:#}")),
    };

    let mut failure_output = String::new();
    if let Some(failed) = &failed {
        let container = failed
            .container
            .clone()
            .or_else(|| watch.container_of(&failed.service));
        if let Some(container) = container {
            if failed.reason.contains("unhealthy") || failed.reason.contains("budget") {
                if let Some(probe) = last_probe_output(docker, &container).await {
                    failure_output.push_str(&probe);
                    failure_output.push('\n');
                }
            }
            failure_output.push_str(&format!(
                "last {} log lines of `{}`:\n",
                stack.log_lines, failed.service
            ));
            failure_output.push_str(&container_logs(docker, &container, stack.log_lines).await);
        } else {
            failure_output.push_str(&format!(
                "service `{}` has no container to read logs from",
                failed.service
            ));
        }
    }

    let mut services_up = Vec::new();
    for service in &stack.services {
        let name = format!("service {service} healthy");
        let check = match (watch.ready(service), &failed) {
            (Some(ready), _) => {
                let detail = if ready.before_watch {
                    "already healthy (unchanged container kept by compose)".to_owned()
                } else if ready.healthcheck {
                    format!("healthy {} after start", ui::duration(ready.after))
                } else {
                    "running (no healthcheck)".to_owned()
                };
                let mut check = Check::passed(&name, ready.after, detail);
                if ready.after > stack.service_budget_s.duration() {
                    check = Check::failed(
                        &name,
                        ready.after,
                        format!(
                            "healthy only {} after start, over its budget of {}s",
                            ui::duration(ready.after),
                            stack.service_budget_s.0
                        ),
                    );
                }
                check
            }
            (None, Some(failed)) if &failed.service == service => {
                Check::failed(&name, Duration::ZERO, &failed.reason).with_output(&failure_output)
            }
            (None, Some(failed)) => Check::skipped(
                &name,
                format!("not healthy yet when `{}` failed", failed.service),
            ),
            (None, None) => Check::skipped(&name, "`compose up` failed before it was healthy"),
        };
        let ready = watch.ready(service);
        services_up.push(ServiceUp {
            service: service.clone(),
            noticed_after: ready.and_then(|r| r.noticed),
            healthcheck: ready.is_some_and(|r| r.healthcheck),
            check,
        });
    }

    let passed_so_far = up_check.outcome != Outcome::Failed
        && services_up
            .iter()
            .all(|s| s.check.outcome == Outcome::Passed);
    let (endpoints_check, endpoints) = if passed_so_far {
        let started = Instant::now();
        let mut ports = PublishedPorts::default();
        for (inspected, response) in inspect_project(docker, &project_name).await? {
            if inspected.running {
                ports.add(&inspected.service, &response);
            }
        }
        match endpoints::resolve_all(&config.endpoints, &ports) {
            Ok(resolved) => (
                Check::passed(
                    "endpoints resolved",
                    started.elapsed(),
                    format!("{} endpoints from the published ports", resolved.len()),
                ),
                resolved,
            ),
            Err(e) => (
                Check::failed("endpoints resolved", started.elapsed(), e),
                BTreeMap::new(),
            ),
        }
    } else {
        (
            Check::skipped("endpoints resolved", "the stack did not come up"),
            BTreeMap::new(),
        )
    };

    stack_state.endpoints = endpoints.clone();
    record_state(config, &stack_state)?;
    for service in &services_up {
        if let Some(ready) = watch.ready(&service.service) {
            record.services.insert(
                service.service.clone(),
                ServiceRecord {
                    container: ready.container.clone(),
                    time_to_healthy_s: ready.after.as_secs_f64(),
                    noticed_ms: ready.noticed.map(|n| n.as_secs_f64() * 1000.0),
                },
            );
        }
    }
    save_record(config, &record)?;

    Ok(UpReport {
        run_id,
        project: project_name,
        isolated,
        compose,
        up: up_check,
        services: services_up,
        endpoints_check,
        endpoints,
        total: began.elapsed(),
        waited,
        state: stack_state,
    })
}

fn report_change(progress: &Option<Progress>, change: &Change, failed: &mut Option<Failed>) {
    match change {
        Change::Started { service } => emit(
            progress,
            UpEvent::ServiceStarted {
                service: service.clone(),
            },
        ),
        Change::Ready { service, ready } => emit(
            progress,
            UpEvent::ServiceReady {
                service: service.clone(),
                after: ready.after,
                noticed: ready.noticed,
            },
        ),
        Change::Failed(failure) => {
            emit(
                progress,
                UpEvent::ServiceFailed {
                    service: failure.service.clone(),
                    reason: failure.reason.clone(),
                },
            );
            if failed.is_none() {
                *failed = Some(failure.clone());
            }
        }
    }
}

/// Records the run in the store (kept or not, as its run record says).
fn record_state(config: &Config, stack: &StackState) -> anyhow::Result<()> {
    let record = load_record(config, &stack.run_id);
    state::Store::of(config).update(|s| {
        let entry = s
            .stacks
            .entry(stack.run_id.clone())
            .or_insert_with(|| state::StackRecord {
                stack: stack.clone(),
                owner: state::Owner {
                    pid: record.as_ref().map_or(std::process::id(), |r| r.pid),
                },
                kept: record.as_ref().is_some_and(|r| r.kept),
                services: BTreeMap::new(),
            });
        entry.stack = stack.clone();
    })
}

/// Forgets a run: its record in the store and its run files.
fn forget(config: &Config, run_id: &str) -> anyhow::Result<()> {
    state::Store::of(config).remove_stack(run_id)?;
    let dir = run_dir(config, run_id);
    for file in ["labels.json", "state.json", "run.json"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    // Only when nothing else (a report, a log) was left there.
    let _ = std::fs::remove_dir(&dir);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// down and leftovers

/// What carries a label: containers, networks, volumes (names for people, ids for removal).
#[derive(Debug, Default, Clone)]
pub struct Labelled {
    /// (id, name, labels)
    pub containers: Vec<(String, String, HashMap<String, String>)>,
    pub networks: Vec<(String, String, HashMap<String, String>)>,
    pub volumes: Vec<(String, HashMap<String, String>)>,
}

impl Labelled {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    pub fn count(&self) -> usize {
        self.containers.len() + self.networks.len() + self.volumes.len()
    }

    /// Everything, as `container NAME`, `network NAME`, `volume NAME`.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        out.extend(
            self.containers
                .iter()
                .map(|(_, n, _)| format!("container {n}")),
        );
        out.extend(self.networks.iter().map(|(_, n, _)| format!("network {n}")));
        out.extend(self.volumes.iter().map(|(n, _)| format!("volume {n}")));
        out
    }
}

/// Every container, network and volume carrying `label` (`key=value`).
pub async fn find_labelled(docker: &bollard::Docker, label: &str) -> anyhow::Result<Labelled> {
    let filter = filters(&[("label", label)]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .with_context(|| format!("cannot list containers labelled {label}"))?;
    let networks = docker
        .list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
        .with_context(|| format!("cannot list networks labelled {label}"))?;
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
        .with_context(|| format!("cannot list volumes labelled {label}"))?;
    Ok(Labelled {
        containers: containers
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_else(|| short_id(&id).to_owned())
                    .trim_start_matches('/')
                    .to_owned();
                Some((id, name, c.labels.unwrap_or_default()))
            })
            .collect(),
        networks: networks
            .into_iter()
            .filter_map(|n| {
                Some((
                    n.id?,
                    n.name.unwrap_or_default(),
                    n.labels.unwrap_or_default(),
                ))
            })
            .collect(),
        volumes: volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.labels))
            .collect(),
    })
}

/// Removes what `labelled` lists: containers first, all at once (killed if still running, with
/// their anonymous volumes), then networks and volumes. Errors name what could not be removed.
pub async fn remove_labelled(docker: &bollard::Docker, labelled: &Labelled) -> Vec<String> {
    let mut problems = Vec::new();
    let not_found = |e: &bollard::errors::Error| {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    };
    let removals = labelled.containers.iter().map(|(id, name, _)| async move {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(id, Some(options)).await {
            Err(e) if !not_found(&e) => Some(format!("container {name}: {e}")),
            _ => None,
        }
    });
    problems.extend(
        futures_util::future::join_all(removals)
            .await
            .into_iter()
            .flatten(),
    );
    // A network or volume still in use (409) belongs, by now, to a later run of the same compose
    // project that took it over: it stays, and is that run's to remove.
    let in_use = |e: &bollard::errors::Error| {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                ..
            }
        )
    };
    for (id, name, _) in &labelled.networks {
        if let Err(e) = docker.remove_network(id).await {
            if !not_found(&e) && !in_use(&e) {
                problems.push(format!("network {name}: {e}"));
            }
        }
    }
    for (name, _) in &labelled.volumes {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        if let Err(e) = docker.remove_volume(name, Some(options)).await {
            if !not_found(&e) && !in_use(&e) {
                problems.push(format!("volume {name}: {e}"));
            }
        }
    }
    problems
}

/// Stops running containers all at once, each with its own stop timeout (SIGTERM, then SIGKILL
/// after `StopTimeout`, 10 s by default), as `compose down` would one service at a time.
pub async fn stop_gracefully(docker: &bollard::Docker, labelled: &Labelled) {
    let stops = labelled.containers.iter().map(|(id, _, _)| async move {
        // 304 (already stopped) and 404 (gone) are what we want; anything else shows at removal.
        let _ = docker
            .stop_container(id, None::<bollard::query_parameters::StopContainerOptions>)
            .await;
    });
    futures_util::future::join_all(stops).await;
}

/// Removes a run's containers, networks and volumes through the engine: everything carrying its
/// run id (the labels override puts it on every container, network and volume compose creates) is
/// stopped at once, then removed. `compose down -v --remove-orphans` runs only when the project
/// still holds something without the run id (a container of an earlier run of a shared project
/// name). Clears its record. Idempotent.
pub async fn down(config: &Config, stack: &StackState) -> anyhow::Result<Check> {
    let began = Instant::now();
    let engine = engine::connect(config).await.map_err(|e| {
        Failure::unavailable(
            format!("cannot reach the engine to remove run {}: {e:#}", stack.run_id),
            Some("start the engine (cargo xtask docker-up --engine-only), then run docker-down again".to_owned()),
        )
    })?;
    let docker = &engine.docker;
    let run_label = format!("{LABEL_RUN_ID}={}", stack.run_id);
    let before = find_labelled(docker, &run_label).await?;
    stop_gracefully(docker, &before).await;
    let mut problems = remove_labelled(docker, &before).await;

    let mut notes = Vec::new();
    let project_label = format!("{COMPOSE_PROJECT}={}", stack.project);
    let unlabelled = find_labelled(docker, &project_label).await?;
    let mut removed_by_compose = 0;
    if !unlabelled.is_empty() {
        if stack.compose_file.is_file() {
            let compose = match Flavour::from_command(&stack.compose_flavour) {
                Some(flavour) => Compose {
                    flavour,
                    version: String::new(),
                },
                None => compose::detect().await?,
            };
            let project = recorded_project(config, stack, compose);
            match project
                .run_checked(&project.down_argv(), Duration::from_secs(180))
                .await
            {
                Ok(_) => removed_by_compose = unlabelled.count(),
                Err(e) => notes.push(format!(
                    "compose down failed ({e:#}) for {}",
                    unlabelled.names().join(", ")
                )),
            }
        } else {
            notes.push(format!(
                "{} is gone; left to compose project {}: {}",
                stack.compose_file.display(),
                stack.project,
                unlabelled.names().join(", ")
            ));
        }
    }
    // Whatever still carries the run id (created while we were removing) goes the same way.
    let rest = find_labelled(docker, &run_label).await?;
    if !rest.is_empty() {
        problems.extend(remove_labelled(docker, &rest).await);
    }
    let left = find_labelled(docker, &run_label).await?;
    if !left.is_empty() || !problems.is_empty() {
        return Ok(Check::failed(
            "stack down",
            began.elapsed(),
            format!(
                "project {}: {} resources of run {} remain",
                stack.project,
                left.count(),
                stack.run_id
            ),
        )
        .with_output(
            left.names()
                .into_iter()
                .chain(problems)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    forget(config, &stack.run_id)?;
    let mut detail = if before.count() + removed_by_compose == 0 {
        format!("project {}: nothing was up", stack.project)
    } else {
        format!(
            "project {}: removed {}, {}, {}",
            stack.project,
            plural(before.containers.len(), "container"),
            plural(before.networks.len(), "network"),
            plural(before.volumes.len(), "volume")
        )
    };
    if removed_by_compose > 0 {
        detail.push_str(&format!(
            "; compose down removed {removed_by_compose} more of earlier runs"
        ));
    }
    for note in notes {
        detail.push_str("; ");
        detail.push_str(&note);
    }
    Ok(Check::passed("stack down", began.elapsed(), detail))
}

/// How a sweep over this repository's runs decides.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// `docker-down --all`: also runs kept on purpose and this process's own runs. Runs of other
    /// live processes are always left.
    pub all: bool,
}

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// `run RUN (project P, pid N gone): container X, network Y, volume Z`.
    pub removed: Vec<String>,
    /// Runs left alone, and why.
    pub left: Vec<String>,
    /// Resources that could not be removed.
    pub problems: Vec<String>,
}

/// This repository's labelled runs (by `io.xtask.root`), removed unless their owner is another
/// live process or, without `all`, they were kept on purpose or belong to this process.
pub async fn sweep(config: &Config, engine: &Engine, how: Sweep) -> anyhow::Result<SweepReport> {
    let root_label = format!("{LABEL_ROOT}={}", state::root_digest(&config.root));
    let all = find_labelled(&engine.docker, &root_label).await?;
    let mut runs: BTreeMap<String, Labelled> = BTreeMap::new();
    let run_of = |labels: &HashMap<String, String>| {
        labels
            .get(LABEL_RUN_ID)
            .cloned()
            .unwrap_or_else(|| "(no run id)".to_owned())
    };
    for c in &all.containers {
        runs.entry(run_of(&c.2))
            .or_default()
            .containers
            .push(c.clone());
    }
    for n in &all.networks {
        runs.entry(run_of(&n.2))
            .or_default()
            .networks
            .push(n.clone());
    }
    for v in &all.volumes {
        runs.entry(run_of(&v.1))
            .or_default()
            .volumes
            .push(v.clone());
    }
    let me = std::process::id();
    let mut report = SweepReport::default();
    for (run_id, resources) in runs {
        let labels = resources
            .containers
            .first()
            .map(|c| &c.2)
            .or_else(|| resources.networks.first().map(|n| &n.2))
            .or_else(|| resources.volumes.first().map(|v| &v.1));
        let pid: Option<u32> = labels
            .and_then(|l| l.get(LABEL_PID))
            .and_then(|p| p.parse().ok());
        let project = labels
            .and_then(|l| l.get(COMPOSE_PROJECT))
            .cloned()
            .or_else(|| load_record(config, &run_id).map(|r| r.project))
            .unwrap_or_else(|| "?".to_owned());
        let own = pid == Some(me);
        let alive = pid.is_some_and(|p| !own && state::pid_alive(p));
        let kept = load_record(config, &run_id).is_some_and(|r| r.kept);
        let pid_text = pid.map_or("no pid".to_owned(), |p| format!("pid {p}"));
        if own && !how.all {
            report.left.push(format!(
                "run {run_id} (project {project}): it belongs to this process"
            ));
            continue;
        }
        if alive {
            report.left.push(format!(
                "run {run_id} (project {project}): its owner, {pid_text}, is still running"
            ));
            continue;
        }
        if kept && !how.all {
            report.left.push(format!(
                "run {run_id} (project {project}): kept on purpose (docker-up or --keep); docker-down removes it"
            ));
            continue;
        }
        let problems = remove_labelled(&engine.docker, &resources).await;
        let why = if pid == Some(me) {
            "this process".to_owned()
        } else {
            format!("{pid_text} gone")
        };
        report.removed.push(format!(
            "run {run_id} (project {project}, {why}): {}",
            resources.names().join(", ")
        ));
        if problems.is_empty() {
            forget(config, &run_id)?;
        }
        report.problems.extend(problems);
    }
    Ok(report)
}

/// Removes leftovers of this repository's runs whose owner is gone (never live runs, never runs
/// kept on purpose, never anything without our labels); says what was removed.
pub async fn remove_leftovers(config: &Config, engine: &Engine) -> anyhow::Result<Vec<String>> {
    let report = sweep(config, engine, Sweep { all: false }).await?;
    if !report.problems.is_empty() {
        anyhow::bail!("cannot remove leftovers: {}", report.problems.join("; "));
    }
    Ok(report.removed)
}

// ---------------------------------------------------------------------------------------------
// health

/// The engine, as `health` sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineHealth {
    pub ok: bool,
    pub host: String,
    pub server_version: String,
    pub api_version: String,
    /// Connecting, negotiating and asking for the version.
    #[serde(serialize_with = "secs")]
    pub response_time: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One service of the recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceHealth {
    pub service: String,
    /// `running`, `exited`, `restarting`, ... or `absent`.
    pub state: String,
    /// `healthy`, `unhealthy`, `starting`, or `none` (no healthcheck).
    pub health: String,
    pub healthy: bool,
    #[serde(serialize_with = "opt_secs")]
    pub time_to_healthy: Option<Duration>,
    pub restarts: i64,
    /// `127.0.0.1:49153->8000`.
    pub ports: Vec<String>,
    pub container: Option<String>,
}

/// The engine and every service of the recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub engine: EngineHealth,
    /// The recorded run, absent when nothing is recorded.
    pub stack: Option<StackState>,
    pub services: Vec<ServiceHealth>,
    /// One line per problem, naming the service.
    pub problems: Vec<String>,
    pub healthy: bool,
    /// `[endpoints]` resolved from the ports published now: a restarted container of an
    /// `--isolated` run gets new ephemeral ports. The recorded endpoints when the engine does not
    /// answer or a port is not published (a stopped container).
    pub endpoints: BTreeMap<String, String>,
}

/// Inspects the engine and the recorded run (or `stack`, when given).
pub async fn health_of(config: &Config, stack: Option<StackState>) -> anyhow::Result<HealthReport> {
    let started = Instant::now();
    let connected = tokio::time::timeout(
        config.engine.respond_within_s.duration(),
        engine::connect(config),
    )
    .await;
    let response_time = started.elapsed();
    let engine = match connected {
        Ok(Ok(engine)) => Ok(engine),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!(
            "no answer within {}s (respond_within_s)",
            config.engine.respond_within_s.0
        )),
    };
    let mut problems = Vec::new();
    let engine_health = match &engine {
        Ok(engine) => EngineHealth {
            ok: true,
            host: engine.info.host.clone(),
            server_version: engine.info.server_version.clone(),
            api_version: engine.info.api_version.clone(),
            response_time,
            error: None,
        },
        Err(e) => {
            problems.push(format!("engine: {e}"));
            EngineHealth {
                ok: false,
                response_time,
                error: Some(e.clone()),
                ..EngineHealth::default()
            }
        }
    };
    let Some(stack) = stack else {
        problems.push("no stack is recorded: run `cargo xtask docker-up` first".to_owned());
        return Ok(HealthReport {
            engine: engine_health,
            stack: None,
            services: Vec::new(),
            problems,
            healthy: false,
            endpoints: BTreeMap::new(),
        });
    };
    let Ok(engine) = engine else {
        return Ok(HealthReport {
            engine: engine_health,
            services: Vec::new(),
            healthy: false,
            problems,
            endpoints: stack.endpoints.clone(),
            stack: Some(stack),
        });
    };
    let record = load_record(config, &stack.run_id);
    let containers = inspect_project(&engine.docker, &stack.project).await?;
    let mut services = Vec::new();
    let mut published = PublishedPorts::default();
    for service in &stack.services {
        let mut mine: Vec<&(Inspected, ContainerInspectResponse)> = containers
            .iter()
            .filter(|(i, _)| &i.service == service)
            .collect();
        mine.sort_by_key(|(i, _)| std::cmp::Reverse((i.running, i.started)));
        let Some((inspected, response)) = mine.first() else {
            problems.push(format!(
                "service `{service}`: no container (the stack is absent)"
            ));
            services.push(ServiceHealth {
                service: service.clone(),
                state: "absent".to_owned(),
                health: "-".to_owned(),
                healthy: false,
                time_to_healthy: None,
                restarts: 0,
                ports: Vec::new(),
                container: None,
            });
            continue;
        };
        let state_text = response
            .state
            .as_ref()
            .and_then(|s| s.status)
            .map_or("unknown".to_owned(), |s| s.to_string());
        let health = if inspected.healthcheck {
            inspected
                .health
                .map_or("starting".to_owned(), |h| h.to_string())
        } else {
            "none".to_owned()
        };
        let healthy = inspected.running
            && (!inspected.healthcheck || inspected.health == Some(HealthStatusEnum::HEALTHY));
        if !healthy {
            problems.push(format!(
                "service `{service}`: {state_text}, health {health}"
            ));
        }
        let time_to_healthy = record
            .as_ref()
            .and_then(|r| r.services.get(service))
            .filter(|r| r.container == inspected.container)
            .map(|r| Duration::from_secs_f64(r.time_to_healthy_s))
            .or_else(|| {
                let (started, ready) = (inspected.started?, inspected.first_healthy?);
                ready.duration_since(started).ok()
            })
            .or_else(|| (!inspected.healthcheck && inspected.running).then_some(Duration::ZERO));
        let mut ports = PublishedPorts::default();
        ports.add(service, response);
        if inspected.running {
            published.add(service, response);
        }
        services.push(ServiceHealth {
            service: service.clone(),
            state: state_text,
            health,
            healthy,
            time_to_healthy,
            restarts: response.restart_count.unwrap_or(0),
            ports: ports.describe(service),
            container: Some(inspected.name.clone()),
        });
    }
    let healthy = problems.is_empty();
    let endpoints = endpoints::resolve_all(&config.endpoints, &published)
        .unwrap_or_else(|_| stack.endpoints.clone());
    Ok(HealthReport {
        engine: engine_health,
        services,
        problems,
        healthy,
        endpoints,
        stack: Some(stack),
    })
}

/// The engine and every service of the run recorded in state.json.
pub async fn health_report(config: &Config) -> anyhow::Result<HealthReport> {
    let stack = state::Store::of(config)
        .read()?
        .chosen(None)
        .map(|r| r.stack.clone());
    health_of(config, stack).await
}

/// CONTRACT (used by monitor and the gate): the health of the recorded run, without printing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HealthSnapshot {
    /// Engine answered.
    pub engine_ok: bool,
    /// Every service of the recorded run is healthy (or running when it has no healthcheck).
    pub all_healthy: bool,
    /// One line per problem, naming the service.
    pub problems: Vec<String>,
    /// `[endpoints]` as published now (see [`HealthReport::endpoints`]).
    pub endpoints: BTreeMap<String, String>,
}

/// Takes one health snapshot of the recorded run.
pub async fn health_snapshot(config: &crate::config::Config) -> anyhow::Result<HealthSnapshot> {
    let report = health_report(config).await?;
    Ok(HealthSnapshot {
        engine_ok: report.engine.ok,
        all_healthy: report.healthy,
        problems: report.problems,
        endpoints: report.endpoints,
    })
}

// ---------------------------------------------------------------------------------------------
// Output for people.

/// Progress on stderr: on a terminal, one redrawn line of the services still starting; otherwise
/// timestamped lines at each change and every few seconds.
pub fn terminal_progress() -> Progress {
    let interactive = ui::interactive();
    let last_line = std::sync::Mutex::new(Instant::now());
    let drawn = std::sync::atomic::AtomicBool::new(false);
    Arc::new(move |event: &UpEvent| {
        use std::sync::atomic::Ordering;
        let clear = || {
            if drawn.swap(false, Ordering::Relaxed) {
                eprint!("\r\x1b[2K");
            }
        };
        let say = |text: String| {
            clear();
            ui::say(text);
            *last_line.lock().unwrap() = Instant::now();
        };
        match event {
            UpEvent::Compose(compose) => say(format!("compose: {compose}")),
            UpEvent::Starting { project, command } => {
                say(format!("starting project {project}: {command}"))
            }
            UpEvent::ServiceStarted { service } => say(format!("{service}: started")),
            UpEvent::ServiceReady {
                service,
                after,
                noticed,
            } => say(format!(
                "{service}: healthy {} after start{}",
                ui::duration(*after),
                noticed.map_or(String::new(), |n| format!(
                    " (noticed {:.1} ms after the engine's event)",
                    n.as_secs_f64() * 1000.0
                ))
            )),
            UpEvent::ServiceFailed { service, reason } => {
                say(format!("{service}: FAILED: {reason}"))
            }
            UpEvent::UpFinished { elapsed, success } => say(format!(
                "compose up {} after {}",
                if *success { "returned" } else { "FAILED" },
                ui::duration(*elapsed)
            )),
            UpEvent::Waiting { elapsed, pending } => {
                if pending.is_empty() {
                    return;
                }
                let list = pending
                    .iter()
                    .map(|(service, running)| match running {
                        Some(d) => format!("{service} (starting, {})", ui::duration(*d)),
                        None => format!("{service} (not started)"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let line = format!("waiting {}: {list}", ui::duration(*elapsed));
                if interactive {
                    eprint!("\r\x1b[2K{line}");
                    drawn.store(true, Ordering::Relaxed);
                } else if last_line.lock().unwrap().elapsed() >= Duration::from_secs(5) {
                    say(line);
                }
            }
        }
    })
}

fn print_up(report: &UpReport) {
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.check.outcome.label().to_owned(),
                if s.check.outcome == Outcome::Passed {
                    ui::duration(s.check.duration)
                } else {
                    "-".to_owned()
                },
                s.noticed_after.map_or("-".to_owned(), |n| {
                    format!("{:.1} ms", n.as_secs_f64() * 1000.0)
                }),
                s.check.detail.clone(),
            ]
        })
        .collect();
    eprint!(
        "{}",
        ui::table(
            &["service", "status", "to healthy", "noticed", "detail"],
            &rows
        )
    );
    if !report.endpoints.is_empty() {
        eprintln!("endpoints:");
        for (name, url) in &report.endpoints {
            eprintln!("  {name:<12} {url}");
        }
    }
    eprintln!(
        "project {} (run {}), {}; compose up to all healthy {}, total {}",
        report.project,
        report.run_id,
        report.compose,
        ui::duration(report.waited),
        ui::duration(report.total)
    );
}

// ---------------------------------------------------------------------------------------------
// The commands.

impl crate::flags::DockerUp {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        if self.engine_only {
            let options = engine::EnsureOptions {
                install: self.install,
            };
            return engine::run_engine_only(&config, &options, self.json).await;
        }
        let options = UpOptions {
            isolated: self.isolated,
            keep: true,
            progress: Some(terminal_progress()),
            ..UpOptions::default()
        };
        // Reading the compose file needs no engine: it overlaps pre-flight, engine and images,
        // on a task of its own so that nothing in those stages can hold it up.
        let preparing = tokio::spawn({
            let (config, options) = (config.clone(), options.clone());
            async move { prepare(&config, &options).await }
        });
        let engine = match engine_stage(&config, self.skip_preflight, self.install).await {
            Ok(engine) => engine,
            Err(e) => {
                if let Ok(Ok(prepared)) = preparing.await {
                    if !prepared.continued {
                        abandon(&config, &prepared.run_id);
                    }
                }
                return Err(e);
            }
        };
        let prepared = preparing.await.context("preparing the stack panicked")??;
        let report = start(&config, &engine, prepared, &options).await?;
        print_up(&report);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if let Some(failed) = report.failure() {
            if let Some(output) = &failed.output {
                eprintln!("{}", output.trim_end());
            }
            return Err(Failure::check(format!("{}: {}", failed.name, failed.detail))
                .with_hint(
                    "the stack is left as it is for inspection; `cargo xtask docker-down` removes it",
                )
                .into());
        }
        ui::say(format!(
            "stack up: all {} services healthy, {} after docker-up started",
            report.services.len(),
            ui::duration(report.total)
        ));
        Ok(())
    }
}

/// Pre-flight, the engine, then images: what `docker-up` needs before the stack.
async fn engine_stage(
    config: &Config,
    skip_preflight: bool,
    install: bool,
) -> anyhow::Result<Engine> {
    // Pre-flight (its CPU sample lasts about a second) and the engine run at the same time; a
    // failed pre-flight still stops docker-up before the stack.
    let preflight = async {
        if skip_preflight {
            None
        } else {
            Some(crate::preflight::run_checks(config).await)
        }
    };
    let options = engine::EnsureOptions { install };
    let (preflight, ensured) = tokio::join!(preflight, engine::ensure_running(config, &options));
    if let Some(checks) = preflight {
        for check in checks.iter().filter(|c| c.outcome != Outcome::Passed) {
            ui::say(format!(
                "pre-flight {}: {} {}",
                check.name,
                check.outcome.label(),
                check.detail
            ));
        }
        if let Some(failed) = checks.iter().find(|c| c.outcome == Outcome::Failed) {
            return Err(Failure::check(format!(
                "pre-flight check `{}` failed: {}",
                failed.name, failed.detail
            ))
            .into());
        }
        ui::say(format!("pre-flight: {} checks done", checks.len()));
    }
    let (engine, engine_checks) = ensured?;
    if let Some(failed) = engine_checks.iter().find(|c| c.outcome == Outcome::Failed) {
        return Err(Failure::check(format!("{}: {}", failed.name, failed.detail)).into());
    }
    ui::say(format!(
        "engine {} (API {}) at {}, answered in {}",
        engine.info.server_version,
        engine.info.api_version,
        engine.info.host,
        ui::duration(engine.info.time_to_answer)
    ));
    // The smoke container and the image provisioning do not depend on each other.
    let (smoke, networks, images) = tokio::join!(
        engine::smoke(&engine, config),
        engine::list_networks(&engine),
        crate::images::provision(&engine, config)
    );
    ui::say(format!(
        "{}: {} {} ({})",
        smoke.name,
        smoke.outcome.label(),
        smoke.detail,
        ui::duration(smoke.duration)
    ));
    if smoke.outcome == Outcome::Failed {
        return Err(Failure::check(format!("{}: {}", smoke.name, smoke.detail)).into());
    }
    ui::say(format!("engine networks: {}", networks?.join(", ")));
    let images = images?;
    for image in &images {
        ui::say(format!(
            "{}: {} {}",
            image.name,
            image.outcome.label(),
            image.detail
        ));
    }
    Ok(engine)
}

impl crate::flags::Health {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let report = health_report(&config).await?;
        let engine_line = if report.engine.ok {
            format!(
                "engine {} (API {}) at {}: answered in {}",
                report.engine.server_version,
                report.engine.api_version,
                report.engine.host,
                ui::duration(report.engine.response_time)
            )
        } else {
            format!(
                "engine: FAIL {}",
                report.engine.error.as_deref().unwrap_or("no answer")
            )
        };
        eprintln!("{engine_line}");
        if let Some(stack) = &report.stack {
            eprintln!("project {} (run {})", stack.project, stack.run_id);
            let rows: Vec<Vec<String>> = report
                .services
                .iter()
                .map(|s| {
                    vec![
                        s.service.clone(),
                        s.state.clone(),
                        s.health.clone(),
                        s.time_to_healthy.map_or("-".to_owned(), ui::duration),
                        s.restarts.to_string(),
                        s.ports.join(", "),
                    ]
                })
                .collect();
            eprint!(
                "{}",
                ui::table(
                    &[
                        "service",
                        "state",
                        "health",
                        "to healthy",
                        "restarts",
                        "ports"
                    ],
                    &rows
                )
            );
            for (name, url) in &stack.endpoints {
                eprintln!("  {name:<12} {url}");
            }
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if report.healthy {
            Ok(())
        } else {
            Err(Failure::check(format!("not healthy: {}", report.problems.join("; "))).into())
        }
    }
}

impl crate::flags::DockerDown {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let recorded = state::Store::of(&config)
            .read()?
            .chosen(None)
            .map(|r| r.stack.clone());
        let mut failed = Vec::new();
        match &recorded {
            Some(stack) => {
                let check = down(&config, stack).await?;
                ui::say(format!(
                    "{}: {} {}",
                    check.name,
                    check.outcome.label(),
                    check.detail
                ));
                if check.outcome == Outcome::Failed {
                    if let Some(output) = &check.output {
                        eprintln!("{output}");
                    }
                    failed.push(check.detail.clone());
                }
            }
            None => ui::say("no stack is recorded in state.json: nothing to remove"),
        }
        if self.all {
            let engine = engine::connect(&config).await.map_err(|e| {
                Failure::unavailable(format!("cannot reach the engine: {e:#}"), None)
            })?;
            let report = sweep(&config, &engine, Sweep { all: true }).await?;
            for line in &report.removed {
                ui::say(format!("removed {line}"));
            }
            for line in &report.left {
                ui::say(format!("left {line}"));
            }
            if report.removed.is_empty() && report.left.is_empty() {
                ui::say("no other runs of this repository are left");
            }
            failed.extend(report.problems);
        }
        if self.stop_engine {
            let check = engine::stop_started_engine(&config).await?;
            ui::say(format!(
                "{}: {} {}",
                check.name,
                check.outcome.label(),
                check.detail
            ));
            if check.outcome == Outcome::Failed {
                failed.push(check.detail);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Failure::check(format!("docker-down left resources: {}", failed.join("; "))).into())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn services_that_build_get_a_stable_image_name() {
        let text = "version: \"2.4\"\nservices:\n  web:\n    build: .\n  db:\n    image: postgres\n  both:\n    build: { context: . }\n    image: mine\nvolumes:\n  data: {}\n";
        assert_eq!(built_without_image(text), vec!["web"]);
        let value = with_stable_images(
            serde_json::json!({"services": {"web": {}, "db": {}, "both": {}}}),
            text,
            "chat",
        );
        assert_eq!(value["services"]["web"]["image"], "chat-web:xtask");
        assert!(value["services"]["db"].get("image").is_none());
        assert!(value["services"]["both"].get("image").is_none());
    }

    use super::*;

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

    #[test]
    fn override_labels_everything_and_keeps_the_version() {
        let base = r#"# a stack
version: "2.4"
services:
  web:
    image: x
networks:
  front:
    driver: bridge
  outside:
    external: true
volumes:
  data: {}
  shared:
    external:
      name: team-shared
"#;
        let labels = BTreeMap::from([("io.xtask.run-id".to_owned(), "r1".to_owned())]);
        let value = labels_override(
            base,
            &services(&["web", "db"]),
            &services(&["data", "shared"]),
            &labels,
        );
        assert_eq!(value["version"], "2.4");
        assert_eq!(value["services"]["db"]["labels"]["io.xtask.run-id"], "r1");
        assert_eq!(
            value["networks"]["default"]["labels"]["io.xtask.run-id"],
            "r1"
        );
        assert_eq!(
            value["networks"]["front"]["labels"]["io.xtask.run-id"],
            "r1"
        );
        assert!(value["networks"].get("outside").is_none());
        assert_eq!(value["volumes"]["data"]["labels"]["io.xtask.run-id"], "r1");
        assert!(value["volumes"].get("shared").is_none());

        let no_version = labels_override(
            "services:\n  a:\n    image: x\n",
            &services(&["a"]),
            &[],
            &labels,
        );
        assert!(no_version.get("version").is_none());
        assert!(no_version.get("volumes").is_none());
    }

    #[test]
    fn isolated_project_names_differ_per_run() {
        use std::path::Path;
        let config = crate::config::parse(
            Path::new("/repo/harness.toml"),
            "[project]\nname = \"chat\"\n",
        )
        .unwrap();
        assert_eq!(project_name(&config, "18f3a2b4c5d-4242", false), "chat");
        let a = project_name(&config, "18f3a2b4c5d-4242", true);
        let b = project_name(&config, "18f3a2b4c5d-4243", true);
        assert_eq!(a, "chat-b4c5d4242");
        assert_ne!(a, b);
        let labels = run_labels(&config, "r1", 42);
        assert_eq!(labels[LABEL_PID], "42");
        assert_eq!(labels[LABEL_ROOT], state::root_digest(Path::new("/repo")));
    }

    #[test]
    fn published_ports_prefer_loopback_and_resolve_endpoints() {
        use bollard::models::{NetworkSettings, PortBinding};
        let response = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "8000/tcp".to_owned(),
                        Some(vec![
                            PortBinding {
                                host_ip: Some("0.0.0.0".into()),
                                host_port: Some("1111".into()),
                            },
                            PortBinding {
                                host_ip: Some("127.0.0.1".into()),
                                host_port: Some("49153".into()),
                            },
                        ]),
                    ),
                    ("9000/tcp".to_owned(), None),
                    (
                        "53/udp".to_owned(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some("5353".into()),
                        }]),
                    ),
                ])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let mut ports = PublishedPorts::default();
        ports.add("api", &response);
        assert_eq!(ports.port("api", 8000), Some(49153));
        assert_eq!(ports.port("api", 9000), None);
        assert_eq!(ports.describe("api"), ["127.0.0.1:49153->8000"]);
        let templates = BTreeMap::from([(
            "api".to_owned(),
            "http://127.0.0.1:{port:api:8000}/v1".to_owned(),
        )]);
        assert_eq!(
            endpoints::resolve_all(&templates, &ports).unwrap()["api"],
            "http://127.0.0.1:49153/v1"
        );
    }
}
