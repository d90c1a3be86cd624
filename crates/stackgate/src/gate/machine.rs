//! The machine's stages: pre-flight (its CPU sample runs in the background and the stage reports
//! as soon as it is done, with the time it measured), the engine (find, start, prove; leftovers of
//! dead runs), and the base images.
//!
//! Not here: the checks themselves ([crate::preflight], [crate::engine], [crate::images]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::report::Check;

use super::events::{Event, Stage, StageOutcome};
use super::run::{lock, Run, StageClock};

/// The pre-flight checks, running in their own task, which reports them the moment they are
/// done (so the record places the stage where it ran, not where it was awaited).
pub struct Preflight {
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Preflight {
    /// Starts the checks (when the options want them) and says the stage has started.
    pub fn spawn(run: &Arc<Run>) -> Preflight {
        if !run.options.preflight {
            run.skip(Stage::Preflight, "--skip-preflight");
            return Preflight {
                task: std::sync::Mutex::new(None),
            };
        }
        run.emit(Event::StageStarted {
            stage: Stage::Preflight,
        });
        let run = run.clone();
        let task = tokio::spawn(async move {
            let began = Instant::now();
            let checks = crate::preflight::run_checks(&run.config).await;
            let failed = checks
                .iter()
                .any(|c| c.outcome == crate::report::Outcome::Failed);
            for check in checks {
                run.emit(Event::Step {
                    stage: Stage::Preflight,
                    check,
                });
            }
            run.emit(Event::StageFinished {
                stage: Stage::Preflight,
                elapsed: began.elapsed(),
                outcome: if failed {
                    StageOutcome::Failed
                } else {
                    StageOutcome::Passed
                },
            });
        });
        Preflight {
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Waits for the checks (once); the stage's outcome.
    pub async fn finish(&self, run: &Run) -> Option<StageOutcome> {
        let task = lock(&self.task).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                run.emit(Event::Step {
                    stage: Stage::Preflight,
                    check: Check::failed(
                        "pre-flight",
                        Duration::ZERO,
                        format!("the pre-flight task ended: {e}"),
                    ),
                });
                run.emit(Event::StageFinished {
                    stage: Stage::Preflight,
                    elapsed: Duration::ZERO,
                    outcome: StageOutcome::Failed,
                });
            }
        }
        run.outcome(Stage::Preflight)
    }
}

impl Drop for Preflight {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The engine stage's first part: find the engine (start it when stopped), prove it answers,
/// and sweep leftovers of dead runs. `Err` when there is no engine.
pub async fn engine(run: &Arc<Run>, clock: &mut StageClock<'_>) -> anyhow::Result<Engine> {
    let options = crate::engine::EnsureOptions {
        install: run.options.install,
    };
    let (engine, checks) =
        crate::engine::ensure_running(&run.config, &options, &run.progress(Stage::Engine)).await?;
    for check in checks {
        clock.step(check);
    }
    run.property(
        "engine_version",
        format!(
            "{} (API {})",
            engine.info.server_version, engine.info.api_version
        ),
    );
    match crate::stack::sweep(&run.config, &engine, crate::stack::Sweep::LEFTOVERS).await {
        Ok(report) => {
            if !report.removed.is_empty() {
                run.note(format!(
                    "removed leftovers of dead runs: {}",
                    report.removed.join(", ")
                ));
            }
            if !report.problems.is_empty() {
                run.note(format!(
                    "could not remove every leftover of dead runs: {}",
                    report.problems.join("; ")
                ));
            }
            // A shared engine: say what other hosts run here, never judge it.
            if !report.other_hosts.is_empty() {
                run.note(format!(
                    "left runs of other hosts on this engine: {}",
                    report.other_hosts.join("; ")
                ));
            }
        }
        Err(e) => run.note(format!("could not look for leftovers of dead runs: {e:#}")),
    }
    *lock(&run.engine) = Some(engine.clone());
    Ok(engine)
}

/// The images stage: every `[images]` entry present or provisioned.
pub async fn images(run: &Arc<Run>, engine: &Engine) -> StageOutcome {
    let mut clock = StageClock::start(run, Stage::Images);
    match crate::images::provision(engine, &run.config, &run.progress(Stage::Images)).await {
        Ok(checks) => checks.into_iter().for_each(|c| clock.step(c)),
        Err(e) => clock.step(Check::failed("images", Duration::ZERO, format!("{e:#}"))),
    }
    clock.finish()
}
