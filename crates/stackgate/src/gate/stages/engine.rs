//! The engine stage: find the engine (start it when stopped), prove it answers, and sweep the
//! leftovers of dead runs; its smoke container runs later, beside the stack ([super::stack]).
//!
//! Not here: the checks themselves ([crate::engine]).

use crate::engine::Engine;
use crate::report::Check;

use crate::gate::context::{Context, StageClock};
use crate::gate::events::Stage;

/// The engine that answered, with the checks that found it.
#[derive(Clone)]
pub struct Found {
    pub engine: Engine,
    pub checks: Vec<Check>,
}

/// The engine stage's first part: find the engine (start it when stopped), prove it answers,
/// and sweep leftovers of dead runs. `Err` when there is no engine.
pub async fn engine(run: &Context, clock: &mut StageClock<'_>) -> anyhow::Result<Found> {
    let options = crate::engine::EnsureOptions {
        install: run.options.install,
    };
    let (engine, checks) =
        crate::engine::ensure_running(&run.config, &options, &run.progress(Stage::Engine)).await?;
    for check in &checks {
        clock.step(check.clone());
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
    Ok(Found { engine, checks })
}
