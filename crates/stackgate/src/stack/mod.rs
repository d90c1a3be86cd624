//! The stack: a compose project brought up under the run's labels, proved healthy from the
//! engine's own events, reported on, taken down. One file per step, in pipeline order:
//! [compose] (the program and the project's argv), [model] (what compose says the file holds),
//! [labels] (the labels override and per-checkout image names), [prepare] (all of that before
//! the engine is needed), [record] (the stack's entries in the run store), [watch] (readiness as
//! a pure state machine), [containers] (the engine calls the wait and health make), [probe] (the
//! harness's own readiness probes), `podman` (healthchecks podman without systemd does not run),
//! [order] (dependency order on that readiness), [up], [reuse] (warm stacks), [follow] (every
//! container's logs and state changes for the whole run), [health], [stop] (a run's containers,
//! each with its grace, or quickly after a signal), [down] (and the sweep of dead runs'
//! leftovers). None of them prints: the commands `health`, `docker-down` and `docker-up`'s table
//! are in [crate::commands].
//!
//! CONTRACT (the gate, `monitor` and `ws-check` call these; none of them print):
//! - [`prepare`]`(config, &UpOptions) -> Prepared` (no engine needed) then
//!   [`start`]`(config, engine, Prepared, &UpOptions) -> UpReport`; [`up`] is both. A failed wait
//!   is `Ok` with [`UpReport::passed`] false and the stack left for [`down`]; `Err` only when it
//!   could not start (no `[stack]`, no compose, engine error), typed with [`Failure`].
//! - [`down`]`(config, &StackState) -> Check`: stops the run's containers (each with its own
//!   grace), removes the run's resources, forgets its record. [`down_with`]`(.., &Urgency)`: the
//!   same, stopping as the [`Urgency`] says (after a signal `stack.interrupt_stop_timeout_s`,
//!   then killed).
//! - [`keep`]`(config, run_id)`: the gate's `--keep`: the run outlives its owner until
//!   `docker-down`. [`remove_leftovers`]`(config, engine)`: dead, unkept runs of this checkout.
//! - [`choose`]`(config, run)`: the kept stack a command acts on (`--run ID`, else the newest).
//! - [`reuse::key`], [`reuse::take`], [`reuse::keep`]: warm stacks for `--reuse` (the gate decides
//!   when to take or keep one).
//! - [`health_of`]`(config, Some(stack))`, [`health_report`]`(config, run)`,
//!   [`health_snapshot`]`(config, run)`.
//!
//! Not here: finding or starting the engine ([crate::engine]), base images ([crate::images]),
//! the run store's file and lock ([crate::state]).

pub mod model;
pub mod compose;
pub mod cache;
pub mod labels;
pub mod prepare;
pub mod record;
pub mod containers;
pub mod watch;
pub mod probe;
// Healthchecks the engine does not run itself (podman without systemd).
mod podman;
pub mod order;
pub mod starter;
pub mod up;
pub mod reuse;
pub mod follow;
pub mod health;
pub mod stop;
pub mod down;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, StackCfg};
use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::state::StackState;

pub use compose::{Compose, Flavour, Project};
pub use containers::{container_logs, container_ports, inspect_project, PublishedPorts};
pub use down::{
    down, down_with, find_labelled, prune_images, remove_checkout_images, remove_labelled,
    remove_leftovers, sweep, ImagesReport, Sweep, SweepReport,
};
pub use follow::{follow, ContainerState, Follow, StateChange, StateSink};
pub use health::{
    health_of, health_report, health_snapshot, EngineHealth, HealthReport, HealthSnapshot,
    ServiceHealth,
};
pub use labels::{image_tag, labels_override};
pub use model::Model;
pub use prepare::{abandon, prepare, Prepared};
pub use record::{choose, keep, no_recorded_run, Chosen};
pub use stop::{Labelled, Level, Urgency};
pub use up::{start, up};
pub use watch::{parse_rfc3339, ContainerEvent, Inspected, Signal, Watch};

/// Compose's own labels, which the engine event filter and the container lookups use.
pub(crate) const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub(crate) const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub(crate) const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";

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
    /// The stack may be kept warm for a later `--reuse` run: its containers carry
    /// [`reuse::LABEL_REUSABLE`].
    pub reuse: bool,
    /// Receives progress while the stack starts (the gate turns it into its stage's progress).
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
        /// What made it ready first.
        signal: Signal,
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

fn emit(progress: &Option<Progress>, event: UpEvent) {
    if let Some(progress) = progress {
        progress(&event);
    }
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
    /// What made it ready first: `probe` (the harness ran its healthcheck), `engine`,
    /// `running`, `already_healthy`.
    pub signal: Option<Signal>,
    /// From its container's start to the harness's first passing probe (seconds).
    #[serde(serialize_with = "opt_secs")]
    pub probe_after: Option<Duration>,
    /// From its container's start to the engine's first healthy check, when it was seen.
    #[serde(serialize_with = "opt_secs")]
    pub engine_after: Option<Duration>,
    /// The image its running container was created from (`sha256:...`), as the engine says;
    /// `None` when it has no container.
    pub image_id: Option<String>,
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

/// `target/xtask/runs/<run_id>`.
pub fn run_dir(config: &Config, run_id: &str) -> PathBuf {
    crate::state::Store::of(config).run_dir(run_id)
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

fn stack_cfg(config: &Config) -> Result<&StackCfg, Failure> {
    config.stack.as_ref().ok_or_else(|| {
        Failure::config(format!(
            "{}: there is no [stack] table, so there is no stack to bring up",
            config.path.display()
        ))
    })
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

/// What every compose call of a run (and its suites) gets besides `[stack] env`: `DOCKER_HOST`,
/// the engine the harness uses (with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for a TLS
/// engine), and `XTASK_ENGINE_HOST`, its `{engine_host}` (a compose file may publish ports on
/// it: `"${XTASK_ENGINE_HOST-127.0.0.1}:8080:8080"` binds loopback here and the engine's own
/// address on a remote engine).
///
/// On podman also `DOCKER_BUILDKIT=0` (unless the caller set it): podman's compatible API has no
/// BuildKit, and compose v2 would otherwise try to run a BuildKit container of its own (pulled
/// from a registry).
pub fn engine_env(engine: &crate::engine::Engine) -> std::collections::BTreeMap<String, String> {
    let mut env = std::collections::BTreeMap::from([
        ("DOCKER_HOST".to_owned(), engine.info.host.clone()),
        (
            "XTASK_ENGINE_HOST".to_owned(),
            engine.info.engine_host.clone(),
        ),
    ]);
    // A TLS engine as the docker CLI reads it (recorded with the stack's environment, so that
    // `down` later reaches it the same way).
    env.extend(engine.host.tls_env());
    if engine.info.podman && std::env::var_os("DOCKER_BUILDKIT").is_none() {
        env.insert("DOCKER_BUILDKIT".to_owned(), "0".to_owned());
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_project_names_differ_per_run() {
        use std::path::Path;
        let config = crate::config::parse(
            Path::new("/repo/harness.toml"),
            "[project]\nname = \"chat\"\n",
        )
        .unwrap();
        assert_eq!(project_name(&config, "18f3a2b4c5d-4242", false), "chat");
        let a = project_name(&config, "18f3a2b4c5d-4243", true);
        let b = project_name(&config, "18f3a2b4c5d-4242", true);
        assert_eq!(b, "chat-b4c5d4242");
        assert_ne!(a, b);
        assert_eq!(
            run_dir(&config, "r1"),
            Path::new("/repo/target/xtask/runs/r1")
        );
    }
}
