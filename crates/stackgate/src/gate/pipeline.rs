//! The pipeline, in order: preflight → engine → target → images → stack → ws → suites, then
//! teardown (in [super::supervise]'s `finish`, on every path). What overlaps: the pre-flight CPU
//! sample, the Python environment and reading the compose file run from the start; the smoke
//! container runs beside the stack. A stage that fails makes every later stage report skipped
//! with the reason, and the suites' tests are listed skipped.
//!
//! `docker-up` runs this until the stack, `ci` until the images, the gate to the end.

use std::sync::Arc;

use crate::config::OnShortfall;
use crate::error::{exit_kind_of, ExitKind};
use crate::flags::TargetChoice;
use crate::report::Check;

use super::events::{Stage, StageOutcome};
use super::machine::{self, Preflight};
use super::run::{Run, StageClock, Until};
use super::stack as stack_stage;
use super::suite_support::PythonSlot;
use super::suites;
use super::target::{self, Chosen};

/// What runs in the background from the start, awaited by the stages that need it.
struct Background {
    preflight: Preflight,
    python: Arc<PythonSlot>,
}

/// Every stage this run goes through, in order (teardown apart).
pub async fn stages(run: Arc<Run>) -> anyhow::Result<()> {
    let wants_docker = matches!(
        run.options.target,
        TargetChoice::Auto | TargetChoice::Docker
    );
    // What depends on nothing starts now: the pre-flight sample, the Python environment, the
    // compose file.
    let background = Background {
        preflight: Preflight::spawn(&run),
        python: Arc::new(PythonSlot::spawn(&run)),
    };
    let (preflight, python) = (&background.preflight, &*background.python);
    // Started beside the stack on the docker target: the tests the suites stage needs first.
    let mut early = None;
    let mut preparing = (wants_docker && run.options.until >= Until::Stack)
        .then(|| stack_stage::prepare(&run))
        .flatten();

    // Dropped when the stages end: teardown may change the engine on purpose.
    let mut _watching = None;
    let (chosen, engine_work) = if wants_docker {
        let mut clock = StageClock::start(&run, Stage::Engine);
        match machine::engine(&run, &mut clock).await {
            Ok(engine) if !clock.failed() => {
                _watching = Some(super::watch::watch(&run, &engine));
                clock.pause();
                (None, Some((engine, clock)))
            }
            Ok(_) => {
                clock.finish();
                stack_stage::abandon(&run, preparing.take()).await;
                return skip_rest(&run, &background, "the engine checks failed", None).await;
            }
            Err(e) => {
                let unavailable = exit_kind_of(&e) == ExitKind::Unavailable;
                let falls_back = unavailable
                    && run.options.target == TargetChoice::Auto
                    && run.options.until == Until::Suites;
                stack_stage::abandon(&run, preparing.take()).await;
                if !falls_back {
                    clock.step(Check::failed(
                        "engine available",
                        std::time::Duration::ZERO,
                        format!("{e:#}"),
                    ));
                    clock.finish();
                    skip_rest(&run, &background, "no engine", None).await?;
                    return if unavailable { Err(e) } else { Ok(()) };
                }
                // Not a failure of the gate: the fallback targets exist for exactly this.
                clock.step(Check::skipped(
                    "engine available",
                    format!("no engine ({e:#}); trying [fallback] order"),
                ));
                let order: Vec<String> = run
                    .config
                    .fallback
                    .order
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                clock.finish_as(StageOutcome::Skipped(format!(
                    "no engine: fell back to [fallback] order ({})",
                    order.join(", ")
                )));
                (Some(fallback(&run, &background).await?), None)
            }
        }
    } else {
        run.skip(
            Stage::Engine,
            format!("--target {:?}", run.options.target).to_lowercase(),
        );
        (Some(fallback(&run, &background).await?), None)
    };

    let chosen = match (chosen, engine_work) {
        (Some(chosen), _) => chosen,
        (None, Some((engine, engine_clock))) => {
            // With `on_shortfall = "fail"` a shortfall stops the run before the stack; with
            // "warn" nothing in pre-flight can stop it, and its CPU sample overlaps the stack.
            if run.config.preflight.on_shortfall == OnShortfall::Fail
                && preflight.finish(&run).await == Some(StageOutcome::Failed)
            {
                engine_clock.finish();
                stack_stage::abandon(&run, preparing.take()).await;
                return skip_rest(&run, &background, "pre-flight failed", None).await;
            }
            target::docker(&run, &engine);
            if machine::images(&run, &engine).await == StageOutcome::Failed {
                engine_clock.finish();
                stack_stage::abandon(&run, preparing.take()).await;
                return skip_rest(&run, &background, "an image could not be provisioned", None)
                    .await;
            }
            if run.options.until == Until::Images {
                engine_clock.finish();
                preflight.finish(&run).await;
                skipped_by_until(&run);
                return Ok(());
            }
            early = super::collect::start(&run, &engine, &background.python);
            let chosen = stack_stage::stack(&run, &engine, engine_clock, preparing.take()).await;
            let Some(chosen) = chosen else {
                let reason = if run.stage_failed(Stage::Engine) {
                    "the smoke container failed"
                } else {
                    "the stack did not become healthy"
                };
                preflight.finish(&run).await;
                return skip_rest(&run, &background, reason, None).await;
            };
            chosen
        }
        (None, None) => unreachable!("the engine branch gives an engine or a target"),
    };
    if run.options.until == Until::Stack {
        preflight.finish(&run).await;
        skipped_by_until(&run);
        return Ok(());
    }

    if preflight.finish(&run).await == Some(StageOutcome::Failed) {
        return skip_rest(&run, &background, "pre-flight failed", Some(&chosen)).await;
    }
    if !suites::ws(&run, &chosen).await {
        return skip_rest(
            &run,
            &background,
            "the WebSocket check failed",
            Some(&chosen),
        )
        .await;
    }
    suites::suites(&run, &chosen, python, early).await;
    Ok(())
}

/// The fallback target (or a forced one); on failure, the rest is skipped and the error says
/// the environment is unavailable (exit 3).
async fn fallback(run: &Arc<Run>, background: &Background) -> anyhow::Result<Chosen> {
    match target::fallback(run, &background.python).await {
        Ok(chosen) => Ok(chosen),
        Err(e) => {
            skip_rest(run, background, &format!("{e:#}"), None).await?;
            Err(e)
        }
    }
}

/// A stage failed: every stage that did not finish is reported skipped (teardown apart), and
/// every suite's tests are listed skipped with the reason.
async fn skip_rest(
    run: &Arc<Run>,
    background: &Background,
    reason: &str,
    chosen: Option<&Chosen>,
) -> anyhow::Result<()> {
    // A stage that failed because the engine went away failed for that reason.
    let lost = run.lost_reason();
    let reason = lost.as_deref().unwrap_or(reason);
    background.preflight.finish(run).await;
    for stage in Stage::ALL
        .into_iter()
        .filter(|s| *s != Stage::Teardown && *s != Stage::Preflight)
    {
        run.skip(stage, reason);
    }
    suites::list_skipped(run, reason, &background.python, chosen).await;
    Ok(())
}

/// Runs the pipeline for a command: stages under supervision, then teardown, the report and the
/// summary. The run is returned for what the command prints from it.
pub async fn run(run: Arc<Run>) -> (anyhow::Result<()>, Arc<Run>) {
    let guarded = super::watch::guarded(run.clone(), stages(run.clone()));
    let ending = super::supervise::supervise(guarded).await;
    let result = super::supervise::finish(&run, ending).await;
    (result, run)
}

/// The stages the pipeline skips when it was told to stop early, so that its record says so.
fn skipped_by_until(run: &Run) {
    let after = match run.options.until {
        Until::Images => Stage::Stack,
        Until::Stack => Stage::Ws,
        Until::Suites => return,
    };
    for stage in Stage::ALL
        .into_iter()
        .filter(|s| *s >= after && *s != Stage::Teardown)
    {
        run.skip(stage, format!("{} stops before it", run.options.command));
    }
}
