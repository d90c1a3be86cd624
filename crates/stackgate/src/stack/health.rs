//! `health`'s view of a recorded stack: the engine (version, response time) and every service
//! (state, health, time to healthy, restarts, published ports), and the endpoints as published
//! now. Never prints; [super::commands] renders it.
//!
//! Not here: waiting for health ([super::up]), choosing which stack ([super::record]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use serde::Serialize;

use super::containers::{inspect_project, PublishedPorts};
use super::record::{self, choose};
use super::watch::Inspected;
use super::{opt_secs, secs};
use crate::config::Config;
use crate::endpoints;
use crate::engine;
use crate::state::{StackRecord, StackState};

/// The engine, as `health` sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EngineHealth {
    pub ok: bool,
    pub host: String,
    /// What `{engine_host}` in `[endpoints]` became: the tcp engine's host, else `127.0.0.1`.
    pub engine_host: String,
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
    /// Which kept stack was chosen, when several are kept and none was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Inspects the engine and the recorded run (or `stack`, when given): the engine the run was
/// brought up on, else the one discovery finds.
pub async fn health_of(config: &Config, stack: Option<StackState>) -> anyhow::Result<HealthReport> {
    let (engine, engine_health) = connect(config, stack.as_ref()).await;
    let mut problems = Vec::new();
    if let Some(e) = &engine_health.error {
        problems.push(format!("engine: {e}"));
    }
    let Some(stack) = stack else {
        problems.push("no stack is recorded: run `cargo xtask docker-up` first".to_owned());
        return Ok(HealthReport {
            engine: engine_health,
            stack: None,
            services: Vec::new(),
            problems,
            healthy: false,
            endpoints: BTreeMap::new(),
            note: None,
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
            note: None,
        });
    };
    let record = record::find(config, &stack.run_id);
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
        let health = service_health(
            config,
            &engine,
            record.as_ref(),
            service,
            inspected,
            response,
        )
        .await;
        if !health.healthy {
            problems.push(format!(
                "service `{service}`: {}, health {}",
                health.state, health.health
            ));
        }
        if inspected.running {
            published.add(service, response);
        }
        services.push(health);
    }
    let healthy = problems.is_empty();
    let lookup = endpoints::OnEngine {
        ports: &published,
        engine_host: &engine.info.engine_host,
    };
    let endpoints = endpoints::resolve_all(&config.endpoints, &lookup)
        .unwrap_or_else(|_| stack.endpoints.clone());
    Ok(HealthReport {
        engine: engine_health,
        services,
        problems,
        healthy,
        endpoints,
        stack: Some(stack),
        note: None,
    })
}

/// Connects to the engine the run was brought up on (else the one discovery finds) within
/// `respond_within_s`, and what `health` says of it.
async fn connect(
    config: &Config,
    stack: Option<&StackState>,
) -> (Result<engine::Engine, String>, EngineHealth) {
    let started = Instant::now();
    let recorded_engine = stack.and_then(|s| s.engine.clone());
    let connected = tokio::time::timeout(
        config.engine.respond_within_s.duration(),
        engine::connect_at(config, recorded_engine.as_deref()),
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
    let engine_health = match &engine {
        Ok(engine) => EngineHealth {
            ok: true,
            host: engine.info.host.clone(),
            engine_host: engine.info.engine_host.clone(),
            server_version: engine.info.server_version.clone(),
            api_version: engine.info.api_version.clone(),
            response_time,
            error: None,
        },
        Err(e) => EngineHealth {
            ok: false,
            response_time,
            error: Some(e.clone()),
            ..EngineHealth::default()
        },
    };
    (engine, engine_health)
}

/// One service's container as `health` sees it: state, health (a starting one asked with the
/// gate's own probe), time to healthy, restarts and ports.
async fn service_health(
    config: &Config,
    engine: &engine::Engine,
    record: Option<&StackRecord>,
    service: &str,
    inspected: &Inspected,
    response: &ContainerInspectResponse,
) -> ServiceHealth {
    let state_text = response
        .state
        .as_ref()
        .and_then(|s| s.status)
        .map_or("unknown".to_owned(), |s| s.to_string());
    let mut health = if inspected.healthcheck {
        inspected
            .health
            .map_or("starting".to_owned(), |h| h.to_string())
    } else {
        "none".to_owned()
    };
    let mut healthy = inspected.running
        && (!inspected.healthcheck || inspected.health == Some(HealthStatusEnum::HEALTHY));
    // The gate calls a starting service ready when the harness's own probe passes, before
    // the engine's next scheduled check: `health` asks the same probe, or it would call
    // unhealthy a stack the gate has just passed.
    let starting = inspected.healthcheck
        && matches!(inspected.health, None | Some(HealthStatusEnum::STARTING));
    if inspected.running && starting {
        if let Some(probe) = own_probe(config, service, response, &engine.info.engine_host) {
            let tls = config.tls();
            let (passed, _) =
                super::probe::run_once(&engine.docker, &inspected.container, &probe, &tls).await;
            if passed {
                healthy = true;
                health = format!(
                    "starting, the harness's probe passed ({})",
                    probe.describe()
                );
            }
        }
    }
    let time_to_healthy = record
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
    ServiceHealth {
        service: service.to_owned(),
        state: state_text,
        health,
        healthy,
        time_to_healthy,
        restarts: response.restart_count.unwrap_or(0),
        ports: ports.describe(service, &engine.info.engine_host),
        container: Some(inspected.name.clone()),
    }
}

/// The probe the gate's wait runs for a starting service: its `[stack.ready]` URL, else its own
/// healthcheck through exec; none when `stack.probe_interval_ms = 0` turned probes off.
fn own_probe(
    config: &Config,
    service: &str,
    response: &ContainerInspectResponse,
    engine_host: &str,
) -> Option<super::probe::ProbeSpec> {
    let speed = &config.stack.as_ref()?.speed;
    if speed.probe_interval_ms == 0 {
        return None;
    }
    match speed.ready.get(service) {
        Some(template) => {
            super::probe::ready_probe(service, template, response, engine_host, PROBE_TIMEOUT).ok()
        }
        None => super::probe::healthcheck_probe(response),
    }
}

/// How long `health` waits for one `[stack.ready]` probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine and every service of the stack named by `run` (`--run ID`), else of the newest
/// kept stack (see [`choose`]).
pub async fn health_report(config: &Config, run: Option<&str>) -> anyhow::Result<HealthReport> {
    let chosen = choose(config, run)?;
    let note = chosen.as_ref().and_then(|c| c.note.clone());
    let mut report = health_of(config, chosen.map(|c| c.record.stack)).await?;
    report.note = note;
    Ok(report)
}

/// CONTRACT (used by monitor and the gate): the health of a recorded run, without printing.
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

/// Takes one health snapshot of the stack named by `run`, else of the newest kept one.
pub async fn health_snapshot(config: &Config, run: Option<&str>) -> anyhow::Result<HealthSnapshot> {
    let report = health_report(config, run).await?;
    Ok(HealthSnapshot {
        engine_ok: report.engine.ok,
        all_healthy: report.healthy,
        problems: report.problems,
        endpoints: report.endpoints,
    })
}
