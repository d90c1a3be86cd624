//! The stack stage: the compose stack built, started and healthy, with the engine's smoke
//! container running beside it (it proves the engine runs containers; so does the stack, and
//! neither needs the other). The smoke container's step belongs to the engine stage, whose
//! clock runs again for it. From before `compose up` until teardown the stack is followed: each
//! container's logs into the run's `logs/`, its state changes as events.
//!
//! Not here: bringing the stack up ([crate::stack]) or the smoke container ([crate::engine]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::TargetKind;
use crate::engine::Engine;
use crate::report::Check;

use crate::gate::context::{lock, Context, Isolation, Keep, Ledger, PendingStack, StageClock};
use crate::gate::events::{Event, Stage};

use super::target::Chosen;

/// The stack being prepared (reading the compose file needs no engine, so it overlaps the
/// engine stage).
pub type Preparing = tokio::task::JoinHandle<anyhow::Result<crate::stack::Prepared>>;

/// How `up` is asked to run for this pipeline.
pub fn up_options(run: &Context) -> crate::stack::UpOptions {
    let isolated = run.options.isolation == Isolation::Isolated;
    crate::stack::UpOptions {
        isolated,
        // A shared (docker-up) run continues the recorded run of its project, with its id.
        run_id: isolated.then(|| run.run_id.clone()),
        keep: run.options.keep == Keep::Always,
        reuse: run.reuses(),
        progress: Some(stack_progress(run)),
        ..Default::default()
    }
}

/// Starts preparing the stack, when this run has one.
pub fn prepare(run: &Context) -> Option<Preparing> {
    run.config.stack.as_ref()?;
    let config = run.config.clone();
    let options = up_options(run);
    Some(tokio::spawn(async move {
        crate::stack::prepare(&config, &options).await
    }))
}

/// Drops a prepared stack that will not start (an earlier stage failed).
pub async fn abandon(run: &Context, preparing: Option<Preparing>) {
    if let Some(preparing) = preparing {
        if let Ok(Ok(prepared)) = preparing.await {
            if !prepared.continued {
                crate::stack::abandon(&run.config, &prepared.run_id);
            }
        }
    }
}

/// What the stack stage gives on: what `up` reported (none without a `[stack]`, or when `up`
/// failed before it could report), and the target the suites run on (none when they cannot go
/// on: the stack or the smoke container failed).
pub struct Stack {
    pub up: Option<crate::stack::UpReport>,
    pub ready: Option<Chosen>,
}

/// The stack stage and the smoke container beside it; finishes the engine stage's clock.
pub async fn stack(
    run: &Context,
    ledger: &Ledger,
    engine: &Engine,
    mut engine_clock: StageClock<'_>,
    preparing: Option<Preparing>,
) -> Stack {
    let config = &run.config;
    let engine_progress = run.progress(Stage::Engine);
    let Some(preparing) = preparing else {
        let smoke = crate::engine::SmokeRun::new(run.run_id.clone());
        let check = crate::engine::smoke(engine, config, &smoke, &engine_progress).await;
        engine_clock.add(check.duration);
        engine_clock.step(check);
        let engine_failed = engine_clock.failed();
        engine_clock.finish();
        run.skip(Stage::Stack, "no [stack] in harness.toml");
        let ready = (!engine_failed).then(|| Chosen {
            kind: TargetKind::Docker,
            endpoints: BTreeMap::new(),
            extra_env: crate::stack::engine_env(engine),
            skip_markers: config.targets.docker_skip_markers.clone(),
        });
        return Stack { up: None, ready };
    };
    let mut clock = StageClock::start(run, Stage::Stack);
    // Preparing read the compose file while the engine started; it settles the run id (a
    // continued docker-up run keeps its own), which the smoke container carries too.
    let prepared = match preparing.await {
        Ok(Ok(prepared)) => Ok(prepared),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("preparing the stack stopped: {e}")),
    };
    let smoke_run = crate::engine::SmokeRun::new(
        prepared
            .as_ref()
            .map_or_else(|_| run.run_id.clone(), |p| p.run_id.clone()),
    );
    let smoke = crate::engine::smoke(engine, config, &smoke_run, &engine_progress);
    let up = async {
        let prepared = prepared?;
        if run.reuses() {
            return warm_or_fresh(run, ledger, engine, prepared).await;
        }
        pending(ledger, &prepared.run_id, engine);
        follow(run, ledger, engine, &prepared.project.name);
        crate::stack::start(config, engine, prepared, &up_options(run)).await
    };
    // The stage ends when its own work does, not when the smoke container beside it does.
    let up = async move {
        let up = up.await;
        let report = match up {
            Ok(report) => report,
            Err(e) => {
                clock.step(Check::failed("stack up", Duration::ZERO, format!("{e:#}")));
                clock.finish();
                return None;
            }
        };
        for check in report.checks() {
            clock.step(check.clone());
        }
        clock.finish();
        Some(report)
    };
    // The smoke container's step is reported (and the engine stage ended) as soon as it is done.
    let smoke = async move {
        let check = smoke.await;
        engine_clock.add(check.duration);
        engine_clock.step(check);
        let failed = engine_clock.failed();
        engine_clock.finish();
        failed
    };
    let (report, smoke_failed) = tokio::join!(up, smoke);
    let Some(report) = report else {
        return Stack {
            up: None,
            ready: None,
        };
    };
    run.property("compose_flavour", report.compose.to_string());
    let state = report.state.clone();
    ledger.record(|r| r.stack = Some(state));
    // The suites talk to the engine the stack runs on (DOCKER_HOST), whatever their own
    // environment says.
    let mut extra_env = crate::stack::engine_env(engine);
    extra_env.extend([
        (
            "XTASK_COMPOSE_PROJECT".to_owned(),
            report.state.project.clone(),
        ),
        (
            "XTASK_COMPOSE_FILE".to_owned(),
            report.state.compose_file.display().to_string(),
        ),
    ]);
    let chosen = Chosen {
        kind: TargetKind::Docker,
        endpoints: report.endpoints.clone(),
        extra_env,
        skip_markers: config.targets.docker_skip_markers.clone(),
    };
    let ready = (report.passed() && !smoke_failed).then_some(chosen);
    Stack {
        up: Some(report),
        ready,
    }
}

/// Records the stack whose `up` begins, for teardown to find it should `up` never return.
fn pending(ledger: &Ledger, run_id: &str, engine: &Engine) {
    let pending = PendingStack {
        run_id: run_id.to_owned(),
        engine: engine.clone(),
    };
    ledger.record(|r| r.pending_stack = Some(pending));
}

/// `--reuse`: takes a warm stack whose key matches (after checking every service), else starts
/// a fresh one (labelled reusable) while the warm stacks that no longer match are removed; the
/// fresh one's key (its images are built by now) is kept for teardown to keep it warm.
async fn warm_or_fresh(
    run: &Context,
    ledger: &Ledger,
    engine: &Engine,
    prepared: crate::stack::Prepared,
) -> anyhow::Result<crate::stack::UpReport> {
    use crate::stack::reuse;
    let config = &run.config;
    let key = reuse::key(config, &prepared.compose, &prepared.model, &engine.docker).await;
    let attempt = reuse::take(config, engine, &prepared.compose, &key).await?;
    for note in &attempt.notes {
        run.note(note.clone());
    }
    let remove_stale = async {
        // Each lease is held until its stack is gone.
        for (stale, _lease) in &attempt.stale {
            match crate::stack::down(config, stale).await {
                Ok(check) if check.outcome != crate::report::Outcome::Failed => {}
                Ok(check) => run.note(format!(
                    "could not remove warm stack {}: {}",
                    stale.run_id, check.detail
                )),
                Err(e) => run.note(format!(
                    "could not remove warm stack {}: {e:#}",
                    stale.run_id
                )),
            }
        }
    };
    if let Some((report, lease)) = attempt.taken {
        crate::stack::abandon(config, &prepared.run_id);
        follow(run, ledger, engine, &report.project);
        pending(ledger, &report.state.run_id, engine);
        ledger.record(|r| {
            r.lease = Some(lease);
            r.reuse_key = Some(key);
        });
        remove_stale.await;
        return Ok(report);
    }
    pending(ledger, &prepared.run_id, engine);
    follow(run, ledger, engine, &prepared.project.name);
    let (compose, model) = (prepared.compose.clone(), prepared.model.clone());
    let options = up_options(run);
    let fresh = crate::stack::start(config, engine, prepared, &options);
    let (report, ()) = tokio::join!(fresh, remove_stale);
    let report = report?;
    if report.passed() {
        let key = reuse::key(config, &compose, &model, &engine.docker).await;
        ledger.record(|r| r.reuse_key = Some(key));
    }
    Ok(report)
}

/// Follows the project's containers until teardown: their logs into the run's `logs/`, their
/// state changes as [`Event::ServiceState`], timed against the run's start.
fn follow(run: &Context, ledger: &Ledger, engine: &Engine, project: &str) {
    let logs = crate::state::Store::of(&run.config)
        .run_dir(&run.run_id)
        .join("logs");
    let began = run.reporter.started_wall();
    let reporter = run.reporter.clone();
    let sink: crate::stack::StateSink = Arc::new(move |change: crate::stack::StateChange| {
        reporter.emit(Event::ServiceState {
            service: change.service,
            container: change.container,
            state: change.state,
            at: change.time.duration_since(began).unwrap_or_default(),
        })
    });
    let follow = crate::stack::follow(
        &engine.docker,
        project,
        logs,
        std::time::SystemTime::now(),
        sink,
    );
    ledger.record(|r| r.follow = Some(follow));
}

/// The stack's progress as the stage's progress events: what changes, and every five seconds
/// which services it still waits for.
fn stack_progress(run: &Context) -> crate::stack::Progress {
    let reporter = run.reporter.clone();
    let last_waiting = std::sync::Mutex::new(std::time::Instant::now());
    let logs = crate::state::Store::of(&run.config)
        .run_dir(&run.run_id)
        .join("logs");
    Arc::new(move |event: &crate::stack::UpEvent| {
        use crate::stack::UpEvent;
        if let UpEvent::ServiceReady {
            service,
            after,
            signal,
            ..
        } = event
        {
            // The engine's own events are in the log already; readiness may come first from the
            // harness's probe.
            let state = match signal {
                crate::stack::watch::Signal::Running => "running (no healthcheck)",
                _ => "healthy",
            };
            crate::stack::follow::note(
                &logs,
                service,
                &format!(
                    "service {service} {state} for the harness ({}), {} after start",
                    signal.describe(),
                    crate::ui::duration(*after)
                ),
            );
        }
        let message = match event {
            UpEvent::Compose(compose) => format!("compose: {compose}"),
            UpEvent::Starting { project, command } => {
                format!("starting project {project}: {command}")
            }
            UpEvent::ServiceStarted { service } => format!("{service}: started"),
            UpEvent::ServiceReady {
                service,
                after,
                signal,
                ..
            } => format!(
                "{service}: healthy {} after start ({})",
                crate::ui::duration(*after),
                signal.describe()
            ),
            UpEvent::ServiceFailed { service, reason } => format!("{service}: FAILED: {reason}"),
            UpEvent::UpFinished { elapsed, success } => format!(
                "compose up {} after {}",
                if *success { "returned" } else { "FAILED" },
                crate::ui::duration(*elapsed)
            ),
            UpEvent::Waiting { elapsed, pending } => {
                let mut last = lock(&last_waiting);
                if pending.is_empty() || last.elapsed() < crate::progress::SAY_EVERY {
                    return;
                }
                *last = std::time::Instant::now();
                let list: Vec<String> = pending
                    .iter()
                    .map(|(service, running)| match running {
                        Some(d) => format!("{service} (starting, {})", crate::ui::duration(*d)),
                        None => format!("{service} (not started)"),
                    })
                    .collect();
                format!(
                    "waiting {}: {}",
                    crate::ui::duration(*elapsed),
                    list.join(", ")
                )
            }
        };
        reporter.emit(Event::Progress {
            stage: Stage::Stack,
            message,
        });
    })
}
