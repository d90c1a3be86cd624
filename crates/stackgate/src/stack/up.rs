//! Starting the stack: record the run, follow the engine's events for the project, run compose
//! (`up --no-start`, then the harness starts each service as soon as its `depends_on` conditions
//! hold; or `up -d` with `stack.start = "compose"`), probe every starting service with its own
//! healthcheck, and wait (fed by the events and the probes, every wait under a deadline) until
//! every `[stack] services` entry is ready within its budget; then the endpoints from the
//! published ports and each service's image id. A failed wait reports the service, its last log
//! lines and its last healthcheck output.
//!
//! Not here: what runs before the engine is needed ([super::prepare]); readiness itself
//! ([super::watch]); the probes ([super::probe]) and the order ([super::order]); signals (the
//! command's supervisor handles them once; dropping the future stops compose with its process
//! group and the probes).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::InspectContainerOptions;

use super::compose::{self, Compose};
use super::containers::{
    container_logs, inspect_project, last_probe_output, subscribe, PublishedPorts,
};
use super::model::Model;
use super::order::StartOrder;
use super::prepare::{prepare, Prepared};
use super::probe::Probes;
use super::starter::{start_early, starts_at_once, Starter};
use super::watch::{
    has_healthcheck, Change, ContainerEvent, Failed, Inspected, Ready, Signal, Watch,
};
use super::{emit, record, stack_cfg, Progress, ServiceUp, UpEvent, UpOptions, UpReport};
use crate::config::stack_keys::StartMode;
use crate::config::{Config, StackCfg};
use crate::endpoints;
use crate::engine::Engine;
use crate::process::Finished;
use crate::report::{Check, Outcome};
use crate::state::{ServiceRecord, StackState};
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
        model,
        began,
        ..
    } = prepared;
    // One engine for everything: compose talks to the engine the harness found (a context, a
    // known socket, podman's), not to its own default.
    project.env.extend(super::engine_env(engine));
    let project_name = project.name.clone();
    let mut stack_state = stack_state(stack, engine, &run_id, &project, &compose, isolated);
    // The record before anything is created: a run killed halfway is found.
    record::begin(config, &stack_state, owner, keep)?;

    // Follow the engine first, then act: the subscription replays from `watch_from`.
    let docker = &engine.docker;
    let watch_from = SystemTime::now();
    let (mut events, _events_task) = subscribe(docker, &project_name, watch_from);
    let mut wait = StackWait::new(
        config,
        engine,
        stack,
        &model,
        &options.progress,
        &compose,
        began,
    );
    let ordered = wait.ordered;
    wait.observe_before(&project_name).await?;

    let up_argv = if ordered {
        project.create_argv(stack.build)
    } else {
        project.up_argv(stack.build)
    };
    let up_timeout = up_timeout(stack);
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
    wait.until_up(
        &mut events,
        up_call.as_mut(),
        &project_name,
        up_started,
        up_timeout,
    )
    .await?;
    // A compose call that is still running stops (its process group) when `up_call` is dropped,
    // at the end of this function.
    let up_elapsed = up_started.elapsed();
    let waited = up_elapsed;
    let up_check = up_check(
        &wait.up_result,
        ordered,
        &compose,
        &project_name,
        up_timeout,
        up_elapsed,
    );
    let failure_output = wait.failure_output().await;

    // One look at what runs now: each service's image, the ports `[endpoints]` resolve to, and
    // the engine's own first healthy check of services the harness's probe found ready first.
    let running: Vec<(Inspected, ContainerInspectResponse)> =
        inspect_project(docker, &project_name).await?;
    wait.watch
        .engine_times(&running.iter().map(|(i, _)| i.clone()).collect::<Vec<_>>());
    let mut services_up = wait.service_checks(&failure_output);
    set_image_ids(&mut services_up, &wait.watch, &running);
    let (endpoints_check, endpoints) = if came_up(&up_check, &services_up) {
        resolve_endpoints(config, engine, &running)
    } else {
        (
            Check::skipped("endpoints resolved", "the stack did not come up"),
            BTreeMap::new(),
        )
    };

    stack_state.endpoints = endpoints.clone();
    record::finish(config, &stack_state, measured(&services_up, &wait.watch))?;

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

/// The run store's record of the stack, before anything is created (no endpoints yet).
fn stack_state(
    stack: &StackCfg,
    engine: &Engine,
    run_id: &str,
    project: &compose::Project,
    compose: &Compose,
    isolated: bool,
) -> StackState {
    StackState {
        run_id: run_id.to_owned(),
        project: project.name.clone(),
        compose_file: stack.compose_file.clone(),
        compose_flavour: compose.flavour.command().to_owned(),
        services: stack.services.clone(),
        endpoints: BTreeMap::new(),
        isolated,
        compose_env: project.env.clone(),
        engine: Some(engine.info.host.clone()),
        started_unix_ms: crate::clock::unix_ms(),
    }
}

/// Whether compose and every service passed: only then are the endpoints resolved.
fn came_up(up_check: &Check, services_up: &[ServiceUp]) -> bool {
    up_check.outcome != Outcome::Failed
        && services_up
            .iter()
            .all(|s| s.check.outcome == Outcome::Passed)
}

/// Whether the harness starts the services in dependency order (`up --no-start` first) rather
/// than leaving it to `compose up -d`.
fn starts_ordered(stack: &StackCfg, compose: &Compose) -> bool {
    // Compose v1's `up --no-start` cannot overlap creating the dependents with starting what they
    // wait on (it waits for a running dependency's health first), which costs more than the
    // harness's order saves: with v1, `auto` leaves starting to compose (docs/stack.md).
    match stack.speed.start {
        StartMode::Ordered => true,
        StartMode::Compose => false,
        StartMode::Auto => !compose.is_v1(),
    }
}

/// Compose's deadline for `up`: every service's budget (and one more), plus the build's.
fn up_timeout(stack: &StackCfg) -> Duration {
    stack.service_budget_s.duration() * (stack.services.len() as u32 + 1)
        + if stack.build {
            stack.build_timeout_s.duration()
        } else {
            compose::QUICK_TIMEOUT
        }
}

/// How often the wait reports what it is waiting for.
const TICK: Duration = Duration::from_millis(500);

/// The engine's event stream for the project, as [`subscribe`] hands it on.
type Events = tokio::sync::mpsc::UnboundedReceiver<
    Result<bollard::models::EventMessage, bollard::errors::Error>,
>;

/// The wait for the stack: what the engine's events, the probes and compose's own call said so
/// far, and what the harness still has to start.
struct StackWait<'a> {
    docker: &'a bollard::Docker,
    stack: &'a StackCfg,
    model: &'a Model,
    progress: &'a Option<Progress>,
    /// The harness starts the services (after `up --no-start`), see [`starts_ordered`].
    ordered: bool,
    /// Compose v1, whose `up --no-start` waits for a running dependency's health itself.
    compose_v1: bool,
    /// When the whole `up` began (before [`prepare`]).
    began: Instant,
    /// The `[stack] services`, and what their dependents wait on healthy when that matters.
    watched: Vec<String>,
    watch: Watch,
    probes: Probes,
    starter: Starter,
    /// Podman without systemd runs no healthcheck: the wait asks it to.
    podman_healthchecks: Option<super::podman::Healthchecks>,
    /// What `compose up` returned, once it did.
    up_result: Option<anyhow::Result<Finished>>,
    /// The first service that failed.
    failed: Option<Failed>,
    last_tick: Instant,
    /// After `up` fails, events still in flight may name the service that caused it.
    grace_until: Option<Instant>,
}

impl<'a> StackWait<'a> {
    /// The wait before anything is created: what it watches and how it probes.
    fn new(
        config: &'a Config,
        engine: &'a Engine,
        stack: &'a StackCfg,
        model: &'a Model,
        progress: &'a Option<Progress>,
        compose: &Compose,
        began: Instant,
    ) -> StackWait<'a> {
        let ordered = starts_ordered(stack, compose);
        let podman_healthchecks = super::podman::Healthchecks::for_engine(engine);
        // Services a `service_healthy` condition waits on are watched too when the harness starts
        // their dependents, or when the engine must be asked to run their healthchecks (compose
        // waits for their engine status), although `[stack] services` may not list them.
        let mut watched = stack.services.clone();
        if ordered || podman_healthchecks.is_some() {
            for service in StartOrder::awaited_healthy(model) {
                if !watched.contains(&service) && model.services.contains_key(&service) {
                    watched.push(service);
                }
            }
        }
        let watch = Watch::new(&watched, stack.service_budget_s.duration())
            .with_ready_probes(stack.speed.ready.keys().cloned());
        let probes = Probes::new(
            Duration::from_millis(stack.speed.probe_interval_ms),
            stack.speed.ready.clone(),
            engine.info.engine_host.clone(),
            config.tls(),
        );
        StackWait {
            docker: &engine.docker,
            stack,
            model,
            progress,
            ordered,
            compose_v1: compose.is_v1(),
            began,
            watched,
            watch,
            probes,
            starter: Starter::default(),
            podman_healthchecks,
            up_result: None,
            failed: None,
            last_tick: Instant::now(),
            grace_until: None,
        }
    }

    /// What the project runs already (compose keeps unchanged containers).
    async fn observe_before(&mut self, project_name: &str) -> anyhow::Result<()> {
        let before: Vec<(Inspected, ContainerInspectResponse)> =
            inspect_project(self.docker, project_name).await?;
        for (inspected, response) in &before {
            self.probes.learn(&inspected.container, response);
        }
        let before: Vec<Inspected> = before.into_iter().map(|(i, _)| i).collect();
        self.watch.observe(&before, true, SystemTime::now());
        Ok(())
    }

    /// Runs compose's call and follows the events, the probes and the clock until every
    /// service is ready, one failed, compose failed, or the whole wait's deadline passed.
    async fn until_up(
        &mut self,
        events: &mut Events,
        mut up_call: std::pin::Pin<
            &mut impl std::future::Future<Output = anyhow::Result<Finished>>,
        >,
        project_name: &str,
        up_started: Instant,
        up_timeout: Duration,
    ) -> anyhow::Result<()> {
        // The first tick counts from compose's start.
        self.last_tick = Instant::now();
        // The whole wait: compose's deadline, which also bounds dependents waiting on a condition.
        let wait_deadline = up_started + up_timeout;
        loop {
            if self.finished() {
                break;
            }
            if Instant::now() >= wait_deadline {
                self.failed = Some(self.timed_out(up_timeout));
                break;
            }
            let wait = self.next_wait(wait_deadline);
            tokio::select! {
                biased;
                message = events.recv() => {
                    let Some(message) = message else {
                        anyhow::bail!("the engine's event stream ended while waiting for the stack");
                    };
                    let message = message.context("the engine's event stream failed")?;
                    let Some(event) = ContainerEvent::from_message(&message) else { continue };
                    self.on_event(event).await;
                }
                Some(result) = self.probes.recv() => {
                    let changes = self.watch.on_probe(&result, SystemTime::now());
                    self.report_changes(changes);
                }
                result = &mut up_call, if self.up_result.is_none() => {
                    self.on_up_finished(result, project_name, up_started).await?;
                }
                _ = tokio::time::sleep(wait) => self.on_tick().await,
            }
            if self.failed.is_none() {
                if let Err(failure) = self.starter.start_due(self.docker, self.progress).await {
                    self.failed = Some(failure);
                }
            }
            self.probes.prune(&self.watch);
        }
        Ok(())
    }

    /// Whether the wait is over: a service failed, everything is up after compose succeeded,
    /// or compose failed and the grace for late events is over.
    fn finished(&self) -> bool {
        if self.failed.is_some() {
            return true;
        }
        match &self.up_result {
            None => false,
            Some(Ok(output)) if output.success() => self.watch.all_ready() && self.starter.done(),
            Some(_) => self.grace_until.is_some_and(|g| Instant::now() >= g),
        }
    }

    /// The failure when the whole wait's deadline passed: what was not ready, not started.
    fn timed_out(&self, up_timeout: Duration) -> Failed {
        let waiting = self.starter.waiting();
        let pending: Vec<String> = self
            .watch
            .pending(SystemTime::now())
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        Failed {
            service: pending.first().cloned().unwrap_or_default(),
            container: None,
            reason: format!(
                "the stack was not up within {}s; not ready: {}{}",
                up_timeout.as_secs(),
                pending.join(", "),
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!("; not started: {}", waiting.join(", "))
                }
            ),
        }
    }

    /// How long to sleep at most: until the next budget ends, the next tick, the deadline, the
    /// end of the grace.
    fn next_wait(&self, wait_deadline: Instant) -> Duration {
        let now = SystemTime::now();
        let budget_wait = self
            .watch
            .next_deadline()
            .map(|d| d.duration_since(now).unwrap_or_default())
            .unwrap_or(TICK);
        let tick_wait = TICK.saturating_sub(self.last_tick.elapsed());
        let mut wait = budget_wait
            .min(tick_wait)
            .min(wait_deadline.saturating_duration_since(Instant::now()));
        if let Some(grace) = self.grace_until {
            wait = wait.min(grace.saturating_duration_since(Instant::now()));
        }
        wait
    }

    /// Passes each change on to the progress and the starter; the first failure is kept.
    fn report_changes(&mut self, changes: Vec<Change>) {
        for change in changes {
            report_change(self.progress, &change, &mut self.failed, &mut self.starter);
        }
    }

    /// One container event of the project: learn the container, start it early when it may,
    /// feed the watch, probe what started.
    async fn on_event(&mut self, mut event: ContainerEvent) {
        let docker = self.docker;
        // Whether it has a healthcheck is known from its creation; learning it then keeps
        // the inspection off the path from `start` to ready.
        let learn = event.action == "create"
            || (event.action == "start"
                && self
                    .watch
                    .healthcheck_of(&event.service, &event.container)
                    .is_none());
        if learn {
            let response = docker
                .inspect_container(&event.container, None::<InspectContainerOptions>)
                .await
                .ok();
            if let Some(response) = &response {
                self.probes.learn(&event.container, response);
            }
            event.healthcheck = response.map(|r| has_healthcheck(&r));
        }
        self.starter.on_event(&event);
        // A service that waits on nothing starts the moment compose created its container,
        // while compose creates the others (as `up -d` would overlap them). Not with compose
        // v1: its `up --no-start` waits for a running dependency's health before it creates
        // the dependents.
        if self.ordered
            && !self.compose_v1
            && self.up_result.is_none()
            && event.action == "create"
            && starts_at_once(self.model, &event.service)
        {
            start_early(docker, &event.container).await;
        }
        if event.action == "health_status" {
            // Podman's event does not say which status: the container does.
            event.action = super::podman::health_action(docker, &event.container).await;
        }
        let changes = self.watch.on_event(&event, SystemTime::now());
        self.report_changes(changes);
        if matches!(event.action.as_str(), "start" | "restart") {
            self.probes
                .ensure(docker, &self.watch, &event.service, &event.container)
                .await;
        }
    }

    /// Compose's call returned: when it succeeded, what runs now is the ground truth (and,
    /// ordered, what the harness starts); when it failed, a short grace for late events.
    async fn on_up_finished(
        &mut self,
        result: anyhow::Result<Finished>,
        project_name: &str,
        up_started: Instant,
    ) -> anyhow::Result<()> {
        let success = matches!(&result, Ok(output) if output.success());
        emit(
            self.progress,
            UpEvent::UpFinished {
                elapsed: up_started.elapsed(),
                success,
            },
        );
        if success {
            self.after_compose_up(project_name).await?;
        } else {
            self.grace_until = Some(Instant::now() + Duration::from_millis(500));
        }
        self.up_result = Some(result);
        Ok(())
    }

    /// After a successful `compose up`: nothing the stream carried can be missed; a service
    /// without its container fails.
    async fn after_compose_up(&mut self, project_name: &str) -> anyhow::Result<()> {
        let docker = self.docker;
        let seen: Vec<Inspected> = inspect_project(docker, project_name)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        let changes = self.watch.observe(&seen, true, SystemTime::now());
        self.report_changes(changes);
        for inspected in seen.iter().filter(|i| i.running) {
            self.probes
                .ensure(
                    docker,
                    &self.watch,
                    &inspected.service,
                    &inspected.container,
                )
                .await;
        }
        if self.ordered {
            self.starter = Starter::new(self.model, &seen, &self.watched, &self.watch);
            if self.failed.is_none() {
                if let Some(service) = self
                    .stack
                    .services
                    .iter()
                    .find(|s| !seen.iter().any(|i| &i.service == *s))
                {
                    self.failed = Some(Failed {
                        reason: format!(
                            "service `{service}` has no container after `compose up --no-start` finished"
                        ),
                        container: None,
                        service: service.clone(),
                    });
                }
            }
        } else if self.failed.is_none() {
            if let Some(service) = self.watch.without_container() {
                self.failed = Some(Failed {
                    reason: format!(
                        "service `{service}` has no running container after `compose up` finished"
                    ),
                    container: self.watch.container_of(&service),
                    service,
                });
            }
        }
        Ok(())
    }

    /// Nothing happened for a while: a service over its budget fails; otherwise, once a tick,
    /// podman's healthchecks run and the progress hears what is pending.
    async fn on_tick(&mut self) {
        if let Some(overdue) = self.watch.overdue(SystemTime::now()) {
            emit(
                self.progress,
                UpEvent::ServiceFailed {
                    service: overdue.service.clone(),
                    reason: overdue.reason.clone(),
                },
            );
            self.failed = Some(overdue);
        } else if self.last_tick.elapsed() >= TICK {
            self.last_tick = Instant::now();
            let mut pending = self.watch.pending(SystemTime::now());
            pending.retain(|(service, _)| self.stack.services.contains(service));
            if let Some(healthchecks) = &mut self.podman_healthchecks {
                healthchecks
                    .tick(self.docker, self.watch.awaiting_health())
                    .await;
            }
            emit(
                self.progress,
                UpEvent::Waiting {
                    elapsed: self.began.elapsed(),
                    pending,
                },
            );
        }
    }

    /// What a person needs about the failed service: its last healthcheck output, why the
    /// harness could not probe it, its last log lines.
    async fn failure_output(&self) -> String {
        let mut failure_output = String::new();
        let Some(failed) = &self.failed else {
            return failure_output;
        };
        let docker = self.docker;
        let container = failed
            .container
            .clone()
            .or_else(|| self.watch.container_of(&failed.service));
        if let Some(container) = container {
            if failed.reason.contains("unhealthy") || failed.reason.contains("budget") {
                if let Some(probe) = last_probe_output(docker, &container).await {
                    failure_output.push_str(&probe);
                    failure_output.push('\n');
                }
            }
            if let Some(problem) = self.probes.problems.get(&container) {
                failure_output.push_str(&format!("the harness could not probe it: {problem}\n"));
            }
            failure_output.push_str(&format!(
                "last {} log lines of `{}`:\n",
                self.stack.log_lines, failed.service
            ));
            failure_output
                .push_str(&container_logs(docker, &container, self.stack.log_lines).await);
        } else {
            failure_output.push_str(&format!(
                "service `{}` has no container to read logs from",
                failed.service
            ));
        }
        failure_output
    }

    /// Each `[stack] services` entry's check and times (its image id comes later).
    fn service_checks(&self, failure_output: &str) -> Vec<ServiceUp> {
        let stack = self.stack;
        let probing = stack.speed.probe_interval_ms > 0;
        let mut services_up = Vec::new();
        for service in &stack.services {
            let name = format!("service {service} healthy");
            let check = match (self.watch.ready(service), &self.failed) {
                (Some(ready), _) => {
                    let detail = ready_detail(ready, probing);
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
                    Check::failed(&name, Duration::ZERO, &failed.reason).with_output(failure_output)
                }
                (None, Some(failed)) => Check::skipped(
                    &name,
                    format!("not healthy yet when `{}` failed", failed.service),
                ),
                (None, None) => Check::skipped(&name, "`compose up` failed before it was healthy"),
            };
            let ready = self.watch.ready(service);
            services_up.push(ServiceUp {
                service: service.clone(),
                noticed_after: ready.and_then(|r| r.noticed),
                healthcheck: ready.is_some_and(|r| r.healthcheck),
                signal: ready.map(|r| r.signal),
                probe_after: ready.and_then(|r| r.probe_after),
                engine_after: ready.and_then(|r| r.engine_after),
                check,
                image_id: None,
            });
        }
        services_up
    }
}

/// The `compose up` check: skipped when a service failed first, else what compose did or said.
fn up_check(
    up_result: &Option<anyhow::Result<Finished>>,
    ordered: bool,
    compose: &Compose,
    project_name: &str,
    up_timeout: Duration,
    up_elapsed: Duration,
) -> Check {
    match up_result {
        None => Check::skipped(
            "compose up",
            "stopped: a service failed while `compose up` was still running",
        ),
        Some(Ok(finished)) if finished.success() => Check::passed(
            "compose up",
            finished.elapsed,
            if ordered {
                format!("{compose}, project {project_name}: created with `up --no-start`, started by the harness in dependency order")
            } else {
                format!("{compose}, project {project_name}")
            },
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
    }
}

/// Each service's image id, from the container that runs it now.
fn set_image_ids(
    services_up: &mut [ServiceUp],
    watch: &Watch,
    running: &[(Inspected, ContainerInspectResponse)],
) {
    for service in services_up {
        let container = watch
            .ready(&service.service)
            .map(|r| r.container.clone())
            .or_else(|| watch.container_of(&service.service));
        service.image_id = running
            .iter()
            .find(|(i, _)| Some(&i.container) == container.as_ref())
            .and_then(|(_, response)| response.image.clone());
    }
}

/// `[endpoints]` resolved from the ports the running containers publish.
fn resolve_endpoints(
    config: &Config,
    engine: &Engine,
    running: &[(Inspected, ContainerInspectResponse)],
) -> (Check, BTreeMap<String, String>) {
    let started = Instant::now();
    let mut ports = PublishedPorts::default();
    for (inspected, response) in running {
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
}

/// What the run store keeps of each ready service: its container and its times.
fn measured(services_up: &[ServiceUp], watch: &Watch) -> BTreeMap<String, ServiceRecord> {
    services_up
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
        .collect()
}

fn report_change(
    progress: &Option<Progress>,
    change: &Change,
    failed: &mut Option<Failed>,
    starter: &mut Starter,
) {
    if let Change::Ready { service, .. } = change {
        starter.ready(service);
    }
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
                signal: ready.signal,
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

/// What a ready service's check says: its time, the signal that came first, and both times.
fn ready_detail(ready: &Ready, probing: bool) -> String {
    if ready.before_watch {
        return "already healthy (unchanged container kept by compose)".to_owned();
    }
    if ready.signal == Signal::Running {
        return "running (no healthcheck)".to_owned();
    }
    let time = |t: Option<Duration>, missing: &str| t.map_or(missing.to_owned(), ui::duration);
    let probe = if probing || ready.probe_after.is_some() {
        time(ready.probe_after, "did not pass first")
    } else {
        "off".to_owned()
    };
    let engine = if ready.healthcheck {
        time(ready.engine_after, "not healthy yet")
    } else {
        "no healthcheck".to_owned()
    };
    format!(
        "healthy {} after start, first by the {} (probe {probe}, engine {engine})",
        ui::duration(ready.after),
        match ready.signal {
            Signal::Probe => "harness's probe",
            _ => "engine's healthcheck",
        }
    )
}
