//! The teardown stage: on every path, what the run made (as its [`Ledger`] recorded it) is
//! undone (the local processes stopped, the stack removed through the engine), unless the run
//! keeps it (`--keep`, `--keep-on-failure` when it failed, `docker-up`) or keeps a passing
//! stack warm (`--reuse`).
//!
//! Not here: how a stack is removed ([crate::stack::down]).

use std::time::{Duration, Instant};

use crate::report::Check;
use crate::stack::Urgency;
use crate::state::StackState;

use crate::gate::context::{Context, Keep, Ledger, PendingStack, Resources, StageClock};
use crate::gate::events::{Stage, StageOutcome};
use crate::gate::lost::Lost;

/// How the run ended, as teardown needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct RunEnd {
    /// The run failed (a stage, a step, a suite, or its ending).
    pub failed: bool,
    /// A signal ended the run.
    pub interrupted: bool,
}

/// Undoes what the run made (or keeps it). Containers stop as `urgency` says (it rises with the
/// signals that arrive meanwhile).
pub async fn teardown(run: &Context, ledger: &Ledger, end: RunEnd, urgency: &Urgency) {
    let keep = match run.options.keep {
        Keep::Always => true,
        Keep::OnFailure => end.failed && !end.interrupted,
        Keep::Never => false,
    };
    // Held until teardown is done (the lease among them): nobody takes the stack while this run
    // still acts on it.
    let mut made = ledger.take();
    // The logs end here, kept stack or not: before the containers are removed, so that their
    // stopping is not mistaken for news, and with the harness, which exits after this. Timed
    // as teardown's own work when there is a teardown.
    if !keep && !end.failed && !end.interrupted && keep_warm(run, &mut made).await {
        return;
    }
    if keep {
        return keep_all(run, made).await;
    }
    remove_all(run, made, urgency).await;
}

/// `--reuse`: a passing run's stack stays warm for the next one. Whether it was kept.
async fn keep_warm(run: &Context, made: &mut Resources) -> bool {
    let (Some(key), Some(stack)) = (&made.reuse_key, &made.stack) else {
        return false;
    };
    match crate::stack::reuse::keep(&run.config, &stack.run_id, key) {
        Ok(_) => {
            if let Some(follow) = made.follow.take() {
                follow.stop().await;
            }
            run.note(format!(
                "kept the stack warm for the next --reuse run (project {}, key {key}); cargo xtask docker-down --all removes it",
                stack.project
            ));
            run.skip(Stage::Teardown, "kept warm (--reuse)");
            true
        }
        Err(e) => {
            run.note(format!("could not keep the stack warm: {e:#}"));
            false
        }
    }
}

/// `--keep`, `--keep-on-failure`, `docker-up`: everything stays, and the run says where; a lost
/// engine is still brought back.
async fn keep_all(run: &Context, made: Resources) {
    if let Some(follow) = made.follow {
        follow.stop().await;
    }
    let mut kept = Vec::new();
    if let Some(stack) = &made.stack {
        if let Err(e) = crate::stack::keep(&run.config, &stack.run_id) {
            run.note(format!("could not record the kept stack: {e:#}"));
        }
        kept.push(format!(
            "the stack (project {}: {}); remove it with cargo xtask docker-down",
            stack.project,
            stack
                .endpoints
                .values()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(local) = made.local {
        // Kept processes are handed over: they keep running after the harness.
        let pids: Vec<String> = local.keep().iter().map(|p| p.to_string()).collect();
        kept.push(format!("local processes (pids {})", pids.join(", ")));
    }
    if !kept.is_empty() {
        run.note(format!("kept {}", kept.join(" and ")));
    }
    let reason = match run.options.keep {
        Keep::Always if run.options.command == "docker-up" => "kept: docker-up leaves its stack up",
        Keep::Always => "kept (--keep)",
        _ => "kept (--keep-on-failure)",
    };
    match run.lost() {
        Some(lost) => {
            let mut clock = StageClock::start(run, Stage::Teardown);
            crate::gate::watch::recover(run, &lost, &mut clock).await;
            clock.finish_as(StageOutcome::Skipped(reason.to_owned()));
        }
        None => run.skip(Stage::Teardown, reason),
    }
}

/// Everything the run made removed: the engine restored first when it was lost, the local
/// processes stopped, the stack (or the half-made one) taken down.
async fn remove_all(run: &Context, made: Resources, urgency: &Urgency) {
    let lost = run.lost();
    let has_stack = made.stack.is_some() || made.pending_stack.is_some();
    if !has_stack && made.local.is_none() && lost.is_none() {
        if let Some(follow) = made.follow {
            follow.stop().await;
        }
        run.skip(Stage::Teardown, "nothing to undo");
        return;
    }
    let mut clock = StageClock::start(run, Stage::Teardown);
    if let Some(follow) = made.follow {
        follow.stop().await;
    }
    // The engine went away mid-run: restored as at the start, then the stack is removed from it,
    // all within the loss's budget.
    let engine_back = match &lost {
        Some(lost) => crate::gate::watch::recover(run, lost, &mut clock).await,
        None => true,
    };
    if let Some(mut local) = made.local {
        let started = Instant::now();
        let stopped = local.stop().await;
        clock.step(Check::passed(
            "stop local processes",
            started.elapsed(),
            stopped.join("; "),
        ));
    }
    if has_stack && !engine_back {
        clock.step(Check::failed(
            "stack down",
            Duration::ZERO,
            "the engine is not back: the stack stays recorded, and `cargo xtask docker-down --all` removes it once the engine answers",
        ));
    } else if has_stack {
        let check = stack_down(run, made.stack, made.pending_stack, lost.as_ref(), urgency).await;
        clock.step(check);
    }
    if clock.failed() {
        clock.finish_as(StageOutcome::Failed);
    } else {
        clock.finish();
    }
}

/// Removes the stack (or the one whose `up` never returned), within the loss's budget when the
/// engine was lost.
async fn stack_down(
    run: &Context,
    stack: Option<StackState>,
    pending: Option<PendingStack>,
    lost: Option<&Lost>,
    urgency: &Urgency,
) -> Check {
    let down_deadline = lost.map_or(Duration::from_secs(120), |lost| {
        lost.deadline().saturating_duration_since(Instant::now())
    });
    let started = Instant::now();
    let stack = match stack {
        Some(stack) => stack,
        None => {
            // `compose up` was cut short: wait until its process group has ended (at most its
            // stop grace), so that nothing it asked the engine for appears after the removal.
            tokio::task::spawn_blocking(crate::process::finish_pending_kills)
                .await
                .ok();
            unfinished_stack(run, pending.as_ref())
        }
    };
    let result = tokio::time::timeout(
        down_deadline,
        crate::stack::down_with(&run.config, &stack, urgency),
    )
    .await;
    match result {
        Ok(Ok(check)) => check,
        Ok(Err(e)) => Check::failed("stack down", started.elapsed(), format!("{e:#}")),
        Err(_) => Check::failed(
            "stack down",
            started.elapsed(),
            format!(
                "did not finish within {}",
                crate::ui::duration(down_deadline)
            ),
        ),
    }
}

/// The record of a stack whose `up` never returned (interrupted): enough for `down` to find it
/// by its project and its run label.
fn unfinished_stack(run: &Context, pending: Option<&PendingStack>) -> StackState {
    let stack = run
        .config
        .stack
        .as_ref()
        .expect("a pending stack is only recorded with a [stack]");
    let run_id = pending.map_or(run.run_id.as_str(), |p| p.run_id.as_str());
    let isolated = run.options.isolation == crate::gate::context::Isolation::Isolated;
    let engine = pending.map(|p| &p.engine);
    let mut compose_env = crate::stack::compose_env(stack, isolated);
    if let Some(engine) = engine {
        compose_env.extend(crate::stack::engine_env(engine));
    }
    StackState {
        run_id: run_id.to_owned(),
        project: crate::stack::project_name(&run.config, run_id, isolated),
        compose_file: stack.compose_file.clone(),
        compose_flavour: String::new(),
        services: stack.services.clone(),
        endpoints: Default::default(),
        isolated,
        compose_env,
        engine: engine.map(|e| e.info.host.clone()),
        started_unix_ms: crate::clock::unix_ms(),
    }
}
