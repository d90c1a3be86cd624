//! The pre-flight stage: its checks (a CPU sample among them) run in their own task from the
//! run's start, and the stage reports the moment they are done, with the time it measured, so
//! that the record places it where it ran, not where it was awaited.
//!
//! Not here: the checks themselves ([crate::preflight]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::Check;

use crate::gate::context::{lock, Context};
use crate::gate::events::{Event, Stage, StageOutcome};

/// The pre-flight checks, running in their own task, which reports them the moment they are
/// done (so the record places the stage where it ran, not where it was awaited).
pub struct Preflight {
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Preflight {
    /// Starts the checks (when the options want them) and says the stage has started.
    pub fn spawn(run: &Arc<Context>) -> Preflight {
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
    pub async fn finish(&self, run: &Context) -> Option<StageOutcome> {
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
