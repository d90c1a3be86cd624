//! The pipeline, in order: preflight → engine → target → images → stack → ws → suites, then
//! teardown (in [super::supervise]'s `finish`, on every path). Each stage is a function of
//! [super::stages]; the pipeline hands each one's output to the next and returns what the
//! commands read ([`PipelineOutput`]). What overlaps: the pre-flight CPU sample, the Python
//! environment and reading the compose file run from the start; the smoke container runs beside
//! the stack. A stage that fails makes every later stage report skipped with the reason, and the
//! suites' tests are listed skipped.
//!
//! `docker-up` runs this until the stack, `ci` until the images, the gate to the end.

use std::sync::Arc;

use crate::config::OnShortfall;
use crate::error::{exit_kind_of, ExitKind};
use crate::flags::TargetChoice;
use crate::report::Check;

use super::context::{Context, Ledger, StageClock, Until};
use super::events::{Stage, StageOutcome};
use super::stages::engine::Found;
use super::stages::images::Images;
use super::stages::preflight::Preflight;
use super::stages::stack::{self as stack_stage, Preparing};
use super::stages::suites::SuitesReport;
use super::stages::target::Chosen;
use super::stages::ws::WsReport;
use super::stages::{engine, images, suites, target, ws};
use super::suite_support::PythonSlot;

/// What the stages handed on, for the command: each stage's output, when it ran.
#[derive(Default)]
pub struct PipelineOutput {
    /// The engine, once it answered, with the checks that found it (`ci` goes on with it).
    pub engine: Option<Found>,
    pub images: Option<Images>,
    /// What the stack's `up` reported (`docker-up` prints it).
    pub up: Option<crate::stack::UpReport>,
    pub ws: Option<WsReport>,
    pub suites: Option<SuitesReport>,
}

/// What runs in the background from the start, awaited by the stages that need it.
struct Background {
    preflight: Preflight,
    python: Arc<PythonSlot>,
    /// The compose file being read (the docker target's stack, when the run goes that far).
    preparing: Option<Preparing>,
}

/// How the engine stage left the run.
// One value per run, moved once: boxing the engine would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Picked<'a> {
    /// The engine answered: its clock runs on for the smoke container, and it is watched until
    /// the stages end (teardown may change the engine on purpose).
    Docker {
        found: Found,
        clock: StageClock<'a>,
        watching: super::watch::Watching,
    },
    /// No engine (or `--target staging|local`): the fallback target.
    Fallback(Chosen),
    /// The rest was skipped: the pipeline ends with this result.
    Ended(anyhow::Result<()>),
}

/// Every stage this run goes through, in order (teardown apart).
pub async fn stages(run: Arc<Context>, ledger: Arc<Ledger>) -> anyhow::Result<PipelineOutput> {
    let wants_docker = matches!(
        run.options.target,
        TargetChoice::Auto | TargetChoice::Docker
    );
    // What depends on nothing starts now: the pre-flight sample, the Python environment, the
    // compose file.
    let mut background = Background {
        preflight: Preflight::spawn(&run),
        python: Arc::new(PythonSlot::spawn(&run)),
        preparing: (wants_docker && run.options.until >= Until::Stack)
            .then(|| stack_stage::prepare(&run))
            .flatten(),
    };
    let mut output = PipelineOutput::default();
    let picked = if wants_docker {
        engine_stage(&run, &ledger, &mut background).await
    } else {
        run.skip(
            Stage::Engine,
            format!("--target {:?}", run.options.target).to_lowercase(),
        );
        fallback(&run, &ledger, &background).await
    };
    // Held until the stages end: teardown may change the engine on purpose.
    let mut _watching = None;
    let (chosen, early) = match picked {
        Picked::Ended(result) => return result.map(|()| output),
        Picked::Fallback(chosen) => (chosen, None),
        Picked::Docker {
            found,
            clock,
            watching,
        } => {
            _watching = Some(watching);
            let ready =
                docker_stages(&run, &ledger, &mut background, found, clock, &mut output).await;
            match ready {
                Some(ready) => ready,
                None => return Ok(output),
            }
        }
    };
    if run.options.until == Until::Stack {
        background.preflight.finish(&run).await;
        skipped_by_until(&run);
        return Ok(output);
    }
    checks(&run, &background, &chosen, early, &mut output).await;
    Ok(output)
}

/// The engine stage: the engine found (its clock paused for the smoke container), or the
/// fallback target when there is none and the gate may fall back, or the rest skipped.
async fn engine_stage<'a>(
    run: &'a Arc<Context>,
    ledger: &Ledger,
    background: &mut Background,
) -> Picked<'a> {
    let mut clock = StageClock::start(run, Stage::Engine);
    let error = match engine::engine(run, &mut clock).await {
        Ok(found) if !clock.failed() => {
            let watching = super::watch::watch(run, &found.engine);
            clock.pause();
            return Picked::Docker {
                found,
                clock,
                watching,
            };
        }
        Ok(_) => {
            clock.finish();
            stack_stage::abandon(run, background.preparing.take()).await;
            skip_rest(run, background, "the engine checks failed", None).await;
            return Picked::Ended(Ok(()));
        }
        Err(e) => e,
    };
    let unavailable = exit_kind_of(&error) == ExitKind::Unavailable;
    let falls_back = unavailable
        && run.options.target == TargetChoice::Auto
        && run.options.until == Until::Suites;
    stack_stage::abandon(run, background.preparing.take()).await;
    if !falls_back {
        clock.step(Check::failed(
            "engine available",
            std::time::Duration::ZERO,
            format!("{error:#}"),
        ));
        clock.finish();
        skip_rest(run, background, "no engine", None).await;
        return Picked::Ended(if unavailable { Err(error) } else { Ok(()) });
    }
    // Not a failure of the gate: the fallback targets exist for exactly this.
    clock.step(Check::skipped(
        "engine available",
        format!("no engine ({error:#}); trying [fallback] order"),
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
    fallback(run, ledger, background).await
}

/// On the engine: the target, the images and the stack (the smoke container beside it, which
/// ends the engine stage's clock). The target the suites run on and the tests collected beside
/// the stack; `None` when the rest was skipped (or the run stops before the suites).
async fn docker_stages(
    run: &Arc<Context>,
    ledger: &Ledger,
    background: &mut Background,
    found: Found,
    engine_clock: StageClock<'_>,
    output: &mut PipelineOutput,
) -> Option<(Chosen, Option<super::collect::Early>)> {
    let engine = found.engine.clone();
    output.engine = Some(found);
    // With `on_shortfall = "fail"` a shortfall stops the run before the stack; with "warn"
    // nothing in pre-flight can stop it, and its CPU sample overlaps the stack.
    if run.config.preflight.on_shortfall == OnShortfall::Fail
        && background.preflight.finish(run).await == Some(StageOutcome::Failed)
    {
        engine_clock.finish();
        stack_stage::abandon(run, background.preparing.take()).await;
        skip_rest(run, background, "pre-flight failed", None).await;
        return None;
    }
    target::docker(run, &engine);
    let provisioned = images::images(run, &engine).await;
    let images_failed = provisioned.outcome == StageOutcome::Failed;
    output.images = Some(provisioned);
    if images_failed {
        engine_clock.finish();
        stack_stage::abandon(run, background.preparing.take()).await;
        skip_rest(run, background, "an image could not be provisioned", None).await;
        return None;
    }
    if run.options.until == Until::Images {
        engine_clock.finish();
        background.preflight.finish(run).await;
        skipped_by_until(run);
        return None;
    }
    let early = super::collect::start(run, &engine, &background.python);
    let preparing = background.preparing.take();
    let stack = stack_stage::stack(run, ledger, &engine, engine_clock, preparing).await;
    output.up = stack.up;
    let Some(chosen) = stack.ready else {
        let reason = if run.stage_failed(Stage::Engine) {
            "the smoke container failed"
        } else {
            "the stack did not become healthy"
        };
        background.preflight.finish(run).await;
        skip_rest(run, background, reason, None).await;
        return None;
    };
    Some((chosen, early))
}

/// The checks on the chosen target: pre-flight's verdict awaited, the WebSocket stage, the
/// suites.
async fn checks(
    run: &Arc<Context>,
    background: &Background,
    chosen: &Chosen,
    early: Option<super::collect::Early>,
    output: &mut PipelineOutput,
) {
    if background.preflight.finish(run).await == Some(StageOutcome::Failed) {
        return skip_rest(run, background, "pre-flight failed", Some(chosen)).await;
    }
    let checked = ws::ws(run, chosen).await;
    let ws_failed = checked.failed();
    output.ws = Some(checked);
    if ws_failed {
        return skip_rest(run, background, "the WebSocket check failed", Some(chosen)).await;
    }
    output.suites = Some(suites::suites(run, chosen, &background.python, early).await);
}

/// The fallback target (or a forced one); on failure, the rest is skipped and the error says
/// the environment is unavailable (exit 3).
async fn fallback<'a>(run: &Arc<Context>, ledger: &Ledger, background: &Background) -> Picked<'a> {
    match target::fallback(run, ledger, &background.python).await {
        Ok(chosen) => Picked::Fallback(chosen),
        Err(e) => {
            skip_rest(run, background, &format!("{e:#}"), None).await;
            Picked::Ended(Err(e))
        }
    }
}

/// A stage failed: every stage that did not finish is reported skipped (teardown apart), and
/// every suite's tests are listed skipped with the reason.
async fn skip_rest(run: &Context, background: &Background, reason: &str, chosen: Option<&Chosen>) {
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
}

/// Runs the pipeline for a command: the stages under supervision, then teardown and the verdict
/// ([super::supervise::finish]). What the stages handed on comes back with how the run ended;
/// the command writes the reports and chooses the exit code from it.
pub async fn run(run: Arc<Context>) -> (super::supervise::Ended, PipelineOutput) {
    let ledger = Arc::new(Ledger::default());
    let guarded = super::watch::guarded(run.clone(), stages(run.clone(), ledger.clone()));
    let (ending, output) = super::supervise::supervise(&run, guarded).await;
    let ended = super::supervise::finish(&run, &ledger, ending).await;
    (ended, output)
}

/// The stages the pipeline skips when it was told to stop early, so that its record says so.
fn skipped_by_until(run: &Context) {
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
