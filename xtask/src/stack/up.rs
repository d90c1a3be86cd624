//! Starting the stack: record the run, follow the engine's events for the project, run
//! `compose up -d`, and wait (fed by those events, every wait under a deadline) until every
//! `[stack] services` entry is healthy within its budget; then the endpoints from the published
//! ports and each service's image id. A failed wait reports the service, its last log lines and
//! its last healthcheck output.
//!
//! Not here: what runs before the engine is needed ([super::prepare]); readiness itself
//! ([super::watch]); signals (the command's supervisor handles them once; dropping the future
//! stops compose with its process group).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::InspectContainerOptions;

use super::compose;
use super::containers::{
    container_logs, inspect_project, last_probe_output, subscribe, PublishedPorts,
};
use super::prepare::{prepare, Prepared};
use super::watch::{has_healthcheck, Change, ContainerEvent, Failed, Inspected, Watch};
use super::{emit, record, stack_cfg, Progress, ServiceUp, UpEvent, UpOptions, UpReport};
use crate::config::Config;
use crate::endpoints;
use crate::engine::Engine;
use crate::process::Finished;
use crate::report::{Check, Outcome};
use crate::state::{self, ServiceRecord, StackState};
use crate::ui;

/// Brings the stack up and waits until every service is healthy: [`prepare`], then [`start`].
pub async fn up(config: &Config, engine: &Engine, options: &UpOptions) -> anyhow::Result<UpReport> {
    let prepared = prepare(config, options).await?;
    start(config, engine, prepared, options).await
}

/// The part of [`up`] that needs the engine: records the run, follows the engine's events,
/// runs `compose up -d`, waits, resolves the endpoints and reads each service's image id.
pub async fn start(
    config: &Config,
    engine: &Engine,
    prepared: Prepared,
    options: &UpOptions,
) -> anyhow::Result<UpReport> {
    let stack = stack_cfg(config)?;
    let Prepared {
        run_id,
        owner,
        keep,
        isolated,
        compose,
        mut project,
        began,
        ..
    } = prepared;
    // One engine for everything: compose talks to the engine the harness found (a context, a
    // known socket, podman's), not to its own default.
    project.env.extend(engine_env(engine));
    let project_name = project.name.clone();
    let mut stack_state = StackState {
        run_id: run_id.clone(),
        project: project_name.clone(),
        compose_file: stack.compose_file.clone(),
        compose_flavour: compose.flavour.command().to_owned(),
        services: stack.services.clone(),
        endpoints: BTreeMap::new(),
        isolated,
        compose_env: project.env.clone(),
        engine: Some(engine.info.host.clone()),
        started_unix_ms: state::unix_ms(),
    };
    // The record before anything is created: a run killed halfway is found.
    record::begin(config, &stack_state, owner, keep)?;

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
            command: command.display(),
        },
    );
    let up_started = Instant::now();
    // Dropping this future (the wait ended early, or the caller's work was cancelled by its
    // supervisor on a signal) stops compose with its whole process group.
    let up_call = command.spawn()?.wait(up_timeout);
    tokio::pin!(up_call);

    // Podman without systemd runs no healthcheck: the wait asks it to.
    let mut prober = super::probe::Prober::for_engine(engine);
    let mut up_result: Option<anyhow::Result<Finished>> = None;
    let mut failed: Option<Failed> = None;
    let mut last_tick = Instant::now();
    let tick = Duration::from_millis(500);
    // After `up` fails, events still in flight may name the service that caused it.
    let mut grace_until: Option<Instant> = None;

    loop {
        if failed.is_some() {
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
                if event.action == "health_status" {
                    // Podman's event does not say which status: the container does.
                    event.action = super::probe::health_action(docker, &event.container).await;
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
            _ = tokio::time::sleep(wait) => {
                if let Some(overdue) = watch.overdue(SystemTime::now()) {
                    emit(&options.progress, UpEvent::ServiceFailed { service: overdue.service.clone(), reason: overdue.reason.clone() });
                    failed = Some(overdue);
                } else if last_tick.elapsed() >= tick {
                    last_tick = Instant::now();
                    if let Some(prober) = &mut prober {
                        prober.tick(docker, watch.awaiting_health()).await;
                    }
                    emit(&options.progress, UpEvent::Waiting {
                        elapsed: began.elapsed(),
                        pending: watch.pending(SystemTime::now()),
                    });
                }
            }
        }
    }
    // Dropping `up_call` here stops a compose call that is still running (its process group).
    let up_elapsed = up_started.elapsed();
    let waited = up_elapsed;

    let up_check = match &up_result {
        None => Check::skipped(
            "compose up",
            "stopped: a service failed while `compose up` was still running",
        ),
        Some(Ok(finished)) if finished.success() => Check::passed(
            "compose up",
            finished.elapsed,
            format!("{compose}, project {project_name}"),
        ),
        // What compose said is the message itself (a person reads the step's line, not only
        // the report's case body): the failed call, then the end of its stderr.
        Some(Ok(finished)) => Check::failed(
            "compose up",
            finished.elapsed,
            format!("{}", compose::failure(finished, up_timeout)),
        )
        .with_output(finished.stderr_tail(compose::STDERR_LINES)),
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
            image_id: None,
        });
    }

    // One look at what runs now: each service's image, and the ports `[endpoints]` resolve to.
    let running: Vec<(Inspected, ContainerInspectResponse)> =
        inspect_project(docker, &project_name).await?;
    for service in &mut services_up {
        let container = watch
            .ready(&service.service)
            .map(|r| r.container.clone())
            .or_else(|| watch.container_of(&service.service));
        service.image_id = running
            .iter()
            .find(|(i, _)| Some(&i.container) == container.as_ref())
            .and_then(|(_, response)| response.image.clone());
    }
    let passed_so_far = up_check.outcome != Outcome::Failed
        && services_up
            .iter()
            .all(|s| s.check.outcome == Outcome::Passed);
    let (endpoints_check, endpoints) = if passed_so_far {
        let started = Instant::now();
        let mut ports = PublishedPorts::default();
        for (inspected, response) in &running {
            if inspected.running {
                ports.add(&inspected.service, response);
            }
        }
        let lookup = endpoints::OnEngine {
            ports: &ports,
            engine_host: &engine.info.engine_host,
        };
        match endpoints::resolve_all(&config.endpoints, &lookup) {
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
    let measured = services_up
        .iter()
        .filter_map(|service| {
            let ready = watch.ready(&service.service)?;
            Some((
                service.service.clone(),
                ServiceRecord {
                    container: ready.container.clone(),
                    time_to_healthy_s: ready.after.as_secs_f64(),
                    noticed_ms: ready.noticed.map(|n| n.as_secs_f64() * 1000.0),
                },
            ))
        })
        .collect();
    record::finish(config, &stack_state, measured)?;

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

/// What every compose call of a run (and its suites) gets besides `[stack] env`: `DOCKER_HOST`,
/// the engine the harness uses (with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` for a TLS
/// engine), and `XTASK_ENGINE_HOST`, its `{engine_host}` (a compose file may publish ports on
/// it: `"${XTASK_ENGINE_HOST-127.0.0.1}:8080:8080"` binds loopback here and the engine's own
/// address on a remote engine).
///
/// On podman also `DOCKER_BUILDKIT=0` (unless the caller set it): podman's compatible API has no
/// BuildKit, and compose v2 would otherwise try to run a BuildKit container of its own (pulled
/// from a registry).
pub fn engine_env(engine: &Engine) -> BTreeMap<String, String> {
    let mut env = BTreeMap::from([
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
