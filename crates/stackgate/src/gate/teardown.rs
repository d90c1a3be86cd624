//! The teardown stage: on every path, what the run made is undone (the local processes stopped,
//! the stack removed through the engine), unless the run keeps it (`--keep`, `--keep-on-failure`
//! when it failed, `docker-up`).
//!
//! Not here: how a stack is removed ([crate::stack::down]).

use std::time::{Duration, Instant};

use crate::report::Check;
use crate::stack::Urgency;
use crate::state::StackState;

use super::events::{Stage, StageOutcome};
use super::run::{lock, Keep, Run, StageClock};

/// Undoes what the run made (or keeps it); `failed` says whether the run failed. Containers stop
/// as `urgency` says (it rises with the signals that arrive meanwhile).
pub async fn teardown(run: &Run, failed: bool, interrupted: bool, urgency: &Urgency) {
    let keep = match run.options.keep {
        Keep::Always => true,
        Keep::OnFailure => failed && !interrupted,
        Keep::Never => false,
    };
    let (stack, stack_run_id, local, follow, reuse_key, _lease) = {
        let mut resources = lock(&run.resources);
        (
            resources.stack.take(),
            resources.stack_run_id.take(),
            resources.local.take(),
            resources.follow.take(),
            resources.reuse_key.take(),
            // Held until teardown is done: nobody takes the stack while this run still acts on it.
            resources.lease.take(),
        )
    };
    // The logs end here, kept stack or not: before the containers are removed, so that their
    // stopping is not mistaken for news, and with the harness, which exits after this. Timed
    // as teardown's own work when there is a teardown.
    let mut follow = follow;
    // `--reuse`: a passing run's stack stays warm for the next one.
    if let (Some(key), Some(stack), false, false) = (&reuse_key, &stack, failed, interrupted) {
        if !keep {
            match crate::stack::reuse::keep(&run.config, &stack.run_id, key) {
                Ok(_) => {
                    if let Some(follow) = follow.take() {
                        follow.stop().await;
                    }
                    run.note(format!(
                        "kept the stack warm for the next --reuse run (project {}, key {key}); cargo xtask docker-down --all removes it",
                        stack.project
                    ));
                    run.skip(Stage::Teardown, "kept warm (--reuse)");
                    return;
                }
                Err(e) => run.note(format!("could not keep the stack warm: {e:#}")),
            }
        }
    }
    if keep {
        if let Some(follow) = follow.take() {
            follow.stop().await;
        }
        let mut kept = Vec::new();
        if let Some(stack) = &stack {
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
        if let Some(local) = local {
            // Kept processes are handed over: they keep running after the harness.
            let pids: Vec<String> = local.keep().iter().map(|p| p.to_string()).collect();
            kept.push(format!("local processes (pids {})", pids.join(", ")));
        }
        if !kept.is_empty() {
            run.note(format!("kept {}", kept.join(" and ")));
        }
        let reason = match run.options.keep {
            Keep::Always if run.options.command == "docker-up" => {
                "kept: docker-up leaves its stack up"
            }
            Keep::Always => "kept (--keep)",
            _ => "kept (--keep-on-failure)",
        };
        // A kept stack stays, but a lost engine is still brought back.
        let lost = lock(&run.engine_lost).clone();
        if let Some(lost) = lost {
            let mut clock = StageClock::start(run, Stage::Teardown);
            super::watch::recover(run, &lost, &mut clock).await;
            clock.finish_as(StageOutcome::Skipped(reason.to_owned()));
            return;
        }
        run.skip(Stage::Teardown, reason);
        return;
    }
    let lost = lock(&run.engine_lost).clone();
    if stack.is_none() && stack_run_id.is_none() && local.is_none() && lost.is_none() {
        if let Some(follow) = follow.take() {
            follow.stop().await;
        }
        run.skip(Stage::Teardown, "nothing to undo");
        return;
    }
    let mut clock = StageClock::start(run, Stage::Teardown);
    if let Some(follow) = follow.take() {
        follow.stop().await;
    }
    // The engine went away mid-run: restored as at the start, then the stack is removed from it,
    // all within the loss's budget.
    let engine_back = match &lost {
        Some(lost) => super::watch::recover(run, lost, &mut clock).await,
        None => true,
    };
    let down_deadline = lost.as_ref().map_or(Duration::from_secs(120), |lost| {
        lost.deadline().saturating_duration_since(Instant::now())
    });
    if let Some(mut local) = local {
        let started = Instant::now();
        let stopped = local.stop().await;
        clock.step(Check::passed(
            "stop local processes",
            started.elapsed(),
            stopped.join("; "),
        ));
    }
    if (stack.is_some() || stack_run_id.is_some()) && !engine_back {
        clock.step(Check::failed(
            "stack down",
            Duration::ZERO,
            "the engine is not back: the stack stays recorded, and `cargo xtask docker-down --all` removes it once the engine answers",
        ));
    } else if stack.is_some() || stack_run_id.is_some() {
        let started = Instant::now();
        if stack.is_none() {
            // `compose up` was cut short: wait until its process group has ended (at most its
            // stop grace), so that nothing it asked the engine for appears after the removal.
            tokio::task::spawn_blocking(crate::process::finish_pending_kills)
                .await
                .ok();
        }
        let stack = stack.unwrap_or_else(|| {
            unfinished_stack(run, stack_run_id.as_deref().unwrap_or(&run.run_id))
        });
        let result = tokio::time::timeout(
            down_deadline,
            crate::stack::down_with(&run.config, &stack, urgency),
        )
        .await;
        clock.step(match result {
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
        });
    }
    if clock.failed() {
        clock.finish_as(StageOutcome::Failed);
    } else {
        clock.finish();
    }
}

/// The record of a stack whose `up` never returned (interrupted): enough for `down` to find it
/// by its project and its run label.
fn unfinished_stack(run: &Run, run_id: &str) -> StackState {
    let stack = run
        .config
        .stack
        .as_ref()
        .expect("a stack run id is only recorded with a [stack]");
    let isolated = run.options.isolation == super::run::Isolation::Isolated;
    let engine = lock(&run.engine).clone();
    let mut compose_env = crate::stack::compose_env(stack, isolated);
    if let Some(engine) = &engine {
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
        engine: engine.map(|e| e.info.host),
        started_unix_ms: crate::clock::unix_ms(),
    }
}
