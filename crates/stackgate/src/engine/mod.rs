//! The Docker engine: finding it, starting it when it is stopped, proving it runs containers, and
//! stopping what the harness started. This file holds what every step shares ([`Engine`],
//! [`EngineInfo`], [`EnsureOptions`]), the two ways in ([`ensure_running`], which may start the
//! engine, and [`connect`], which never does) and re-exports the steps, so that callers write
//! `crate::engine::X`.
//!
//! The steps follow in reading order below. Platform-specific code lives in `os` and `start` (and,
//! for processes, in [`crate::process`]); what Docker Desktop's and colima's tools print is read in
//! `desktop`.
//!
//! Not here: base images ([`crate::images`]), compose stacks ([`crate::stack`]). Nothing here
//! prints: progress goes through a [`Progress`] the caller hands down.

// Where the engine is: DOCKER_HOST, docker contexts, known sockets, probing them.
mod discover;
// Engines on tcp with TLS: their certificates, client and environment.
mod tcp_tls;
// What the operating system says about a dockerd: pid files, /proc, signals, root.
mod os;
// How the platform starts an engine (as data), launching it, waiting for it to answer.
mod start;
// Docker Desktop and colima as data: install locations, sc.exe and wsl.exe output, profiles.
mod desktop;
// The whole restoration, with its checks: discover, settle pid files, start, connect.
mod restore;
// The engine packages (`--install`, `ci`).
mod install;
// The smoke container, pulls, the engine's networks.
mod smoke;
// Stopping the engine the harness started.
mod stop;
// `docker-up --engine-only`: the engine stage alone, as a report.
mod engine_only;

pub use discover::{
    candidates, client_for, context_candidate, describe_candidates, discover, known_sockets, probe,
    start_target, Candidate, CandidateReport, Discovery, DiscoveryEnv, Host, Platform, Probe,
    Source,
};
pub use engine_only::{engine_only, EngineReport};
pub use install::{
    install_packages, install_remedy, is_debian_like, package_installed, ENGINE_PACKAGES,
};
pub use os::{
    containerd_pid_file, dockerd_hosts, inspect_pid_file, inspect_pid_file_of, process_gone,
    PidFile,
};
pub use restore::{restore, restore_with, Restoration};
pub use smoke::{
    image_present, list_networks, pull, smoke, split_reference, SmokeRun, PULL_DEADLINE,
};
pub use start::{log_tail, start_plans, HostFacts, StartPlan};
pub use stop::stop_started_engine;

use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;

use crate::config::Config;
use crate::error::Failure;
use crate::progress::Progress;
use crate::report::Check;
use crate::state;

/// A connected engine and what is known about it.
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: bollard::Docker,
    pub info: EngineInfo,
    /// Where it was reached (with its TLS files for a TLS engine: [`Host::tls_env`]).
    pub host: Host,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineInfo {
    /// Where it was reached, e.g. `unix:///var/run/docker.sock`.
    pub host: String,
    /// What `{engine_host}` in an endpoint becomes: the tcp engine's host, else `127.0.0.1`.
    pub engine_host: String,
    /// A tcp engine on another machine (its disk and its published ports are there).
    pub remote: bool,
    /// Podman's Docker-compatible API (it names itself "Podman Engine" in `/version`), which
    /// schedules healthchecks only through systemd.
    pub podman: bool,
    pub server_version: String,
    pub api_version: String,
    pub os: String,
    pub storage_driver: String,
    /// True when this call started the engine (or state.json says the harness started it).
    pub started_by_harness: bool,
    /// From the start of `ensure_running` until the engine answered (seconds in JSON).
    #[serde(serialize_with = "secs")]
    pub time_to_answer: Duration,
}

fn secs<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// `--install`: install the engine packages when missing.
    pub install: bool,
}

/// The socket dockerd listens on when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The pid file dockerd writes when nothing else is said.
pub const DEFAULT_PID_FILE: &str = "/var/run/docker.pid";

/// Finds the engine, starts it when stopped (and allowed), waits within `start_timeout_s`,
/// negotiates the API version. The checks ("engine available", "engine response time", ...) are
/// returned with the engine so the caller can report them; an error means no engine can be had
/// (a `Failure::Unavailable`, exit 3). What it waits for goes to `progress`.
pub async fn ensure_running(
    config: &Config,
    options: &EnsureOptions,
    progress: &Progress,
) -> anyhow::Result<(Engine, Vec<Check>)> {
    let restoration = restore(config, options, progress).await?;
    Ok((restoration.engine, restoration.checks))
}

/// Connects to an engine that should already run, without starting anything.
pub async fn connect(config: &Config) -> anyhow::Result<Engine> {
    let began = Instant::now();
    let list = candidates(&DiscoveryEnv::from_process())?;
    let (discovery, found) = discover(&list).await;
    match found {
        Some((index, docker)) => {
            let host = &list[index].host;
            finish_connect(docker, host, harness_started(config, host), began.elapsed()).await
        }
        None => Err(Failure::unavailable(
            format!(
                "no engine answers: {}",
                discover::describe_candidates(&discovery)
            ),
            Some("`cargo xtask docker-up --engine-only` finds and starts it".to_owned()),
        )
        .into()),
    }
}

/// Connects to the engine at `address` (where a recorded run was brought up), without starting
/// anything; `None` is [`connect`]'s discovery (records of earlier versions name no engine).
pub async fn connect_at(config: &Config, address: Option<&str>) -> anyhow::Result<Engine> {
    let Some(address) = address else {
        return connect(config).await;
    };
    let began = Instant::now();
    // The address as discovery finds it now, when it is the same engine: a TLS engine keeps its
    // certificates (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), which the recorded address lacks.
    let current = candidates(&DiscoveryEnv::from_process())
        .ok()
        .and_then(|list| list.into_iter().find(|c| c.host.url() == address));
    let host = match current {
        Some(candidate) => candidate.host,
        None => Host::parse(address).map_err(|problem| {
            Failure::config(format!(
                "{}: the recorded engine address: {problem}",
                state::Store::of(config).path().display()
            ))
        })?,
    };
    match probe(&host, Duration::from_secs(3)).await {
        (Probe::Answered, Some(docker)) => {
            finish_connect(docker, &host, harness_started(config, &host), began.elapsed()).await
        }
        (probe, _) => Err(Failure::unavailable(
            format!("the engine at {host}, where the run was brought up: {probe}"),
            Some(format!(
                "start the engine at {host} (`cargo xtask docker-up --engine-only` with DOCKER_HOST={host}), then retry"
            )),
        )
        .into()),
    }
}

/// Whether state.json says the harness started the engine at this host (and it is still that one).
fn harness_started(config: &Config, host: &Host) -> bool {
    let work_dir = config.work_dir();
    let Ok(state) = state::Store::new(&work_dir).read() else {
        return false;
    };
    match state.engine {
        Some(engine) if engine.started_by_harness && engine.host == host.url() => {
            match engine.pid {
                Some(pid) if process_gone(pid) => {
                    // Someone else restarted it since: the record no longer applies.
                    let _ = state::Store::new(&work_dir).update(|s| s.engine = None);
                    false
                }
                _ => true,
            }
        }
        _ => false,
    }
}

/// An answering engine made an [`Engine`]: the API version negotiated, its version and info read.
async fn finish_connect(
    docker: Docker,
    host: &Host,
    started_by_harness: bool,
    time_to_answer: Duration,
) -> anyhow::Result<Engine> {
    let docker = docker.negotiate_version().await.map_err(|e| {
        Failure::unavailable(
            format!("the engine at {host} answered but its version cannot be negotiated: {e}"),
            None,
        )
    })?;
    let (version, info) = tokio::join!(docker.version(), docker.info());
    let version = version.with_context(|| format!("GET /version from {host}"))?;
    let info = info.with_context(|| format!("GET /info from {host}"))?;
    Ok(Engine {
        docker,
        host: host.clone(),
        info: EngineInfo {
            host: host.url(),
            engine_host: host.engine_host(),
            remote: host.is_remote(),
            podman: version
                .components
                .iter()
                .flatten()
                .any(|c| c.name.starts_with("Podman")),
            server_version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: info.operating_system.or(version.os).unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
            started_by_harness,
            time_to_answer,
        },
    })
}

/// An error with its causes on one line (bollard's own message rarely says why).
pub fn short_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}
