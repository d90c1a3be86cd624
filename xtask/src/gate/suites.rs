//! The checks on the chosen target: the WebSocket stage, then the suites stage (every selected
//! `[[suite]]` in order, neighbouring `parallel = true` suites at once), and the Python
//! environment they share, made in the background from the run's start. Suites that cannot run
//! are still listed, their tests skipped with the reason.
//!
//! Not here: running a suite ([crate::suites]) or the WebSocket client ([crate::ws]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Runner, SuiteCfg, TargetKind};
use crate::flags::TargetChoice;
use crate::junit::SuiteResult;
use crate::report::Check;
use crate::suites::{PythonEnv, Requirements, SuiteEnv};

use super::events::{Event, Stage, StageOutcome};
use super::run::{lock, Run, StageClock, Until};
use super::target::Chosen;

/// The Python environment, made in its own task; awaited once by whoever needs it first.
pub struct PythonSlot {
    task: Mutex<Option<tokio::task::JoinHandle<anyhow::Result<PythonEnv>>>>,
    env: tokio::sync::OnceCell<Option<PythonEnv>>,
}

impl PythonSlot {
    /// Starts making the environment when this run's suites or local target need it.
    pub fn spawn(run: &Run) -> PythonSlot {
        let config = &run.config;
        let local_possible =
            run.options.target != TargetChoice::Docker && config.targets.local.is_some();
        let needed = run.options.until == Until::Suites
            && (run
                .selected_suites()
                .iter()
                .any(|s| s.runner == Runner::Pytest)
                || local_possible);
        let requirements = if local_possible {
            Requirements::SuitesAndLocal
        } else {
            Requirements::Suites
        };
        let task = needed.then(|| {
            let config = config.clone();
            tokio::spawn(async move { crate::suites::python_env_with(&config, requirements).await })
        });
        PythonSlot {
            task: Mutex::new(task),
            env: tokio::sync::OnceCell::new(),
        }
    }

    /// The environment, or `None` when it is not needed or could not be made (reported once,
    /// under the suites stage that needs it).
    pub async fn get(&self, run: &Run) -> Option<&PythonEnv> {
        self.env
            .get_or_init(|| async {
                let task = lock(&self.task).take()?;
                let problem = match task.await {
                    Ok(Ok(env)) => return Some(env),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("the task making it ended: {e}"),
                };
                run.emit(Event::Step {
                    stage: Stage::Suites,
                    check: Check::failed("python environment", Duration::ZERO, problem),
                });
                None
            })
            .await
            .as_ref()
    }
}

impl Drop for PythonSlot {
    fn drop(&mut self) {
        // An interrupted run must not leave pip running.
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// The WebSocket stage; `false` when it failed.
pub async fn ws(run: &Arc<Run>, chosen: &Chosen) -> bool {
    if run.config.ws_check.is_none() {
        run.skip(Stage::Ws, "no [ws_check] in harness.toml");
        return true;
    }
    let mut clock = StageClock::start(run, Stage::Ws);
    let checks = match crate::ws::plan_from_config(
        &run.config,
        &chosen.endpoints,
        &crate::ws::Overrides::default(),
    ) {
        Ok(plan) => crate::ws::run(&plan).await.checks,
        Err(e) => vec![Check::failed(
            "websocket plan",
            Duration::ZERO,
            format!("{e:#}"),
        )],
    };
    checks.into_iter().for_each(|c| clock.step(c));
    let failed = clock.failed();
    clock.finish();
    !failed
}

/// What every suite of the run receives.
fn suite_env(run: &Run, chosen: Option<&Chosen>) -> SuiteEnv {
    SuiteEnv {
        target: chosen.map_or(TargetKind::Docker, |c| c.kind),
        run_id: run.run_id.clone(),
        endpoints: chosen.map(|c| c.endpoints.clone()).unwrap_or_default(),
        extra: chosen.map(|c| c.extra_env.clone()).unwrap_or_default(),
        skip_markers: chosen.map(|c| c.skip_markers.clone()).unwrap_or_default(),
        secrets: run.secrets(),
        stop: Some(crate::suites::Stop::new(run.stop_suites.subscribe())),
    }
}

/// The suites stage: in order, consecutive `parallel = true` suites at the same time.
pub async fn suites(run: &Arc<Run>, chosen: &Chosen, python: &PythonSlot) {
    let clock = StageClock::start(run, Stage::Suites);
    let python = python.get(run).await;
    let env = suite_env(run, Some(chosen));
    let selected = run.selected_suites();
    // A Python environment that could not be made is a failed step of this stage.
    let mut failed =
        run.reporter.record().steps().any(|(stage, c)| {
            stage == Stage::Suites && c.outcome == crate::report::Outcome::Failed
        });
    let mut index = 0;
    while index < selected.len() {
        if let Some(reason) = run.lost_reason() {
            // The engine is gone: what has not started is listed, not run.
            for suite in &selected[index..] {
                let result = crate::suites::collect_skipped_shard(
                    &run.config,
                    suite,
                    &env,
                    python,
                    &reason,
                    run.options.shard,
                )
                .await;
                run.emit(Event::Suite(result));
            }
            failed = true;
            break;
        }
        let mut group = vec![selected[index]];
        index += 1;
        while selected[index - 1].parallel && index < selected.len() && selected[index].parallel {
            group.push(selected[index]);
            index += 1;
        }
        let results = futures_util::future::join_all(
            group
                .into_iter()
                .map(|suite| run_one(run, suite, &env, python)),
        )
        .await;
        for result in results {
            failed |= !result.passed();
            run.emit(Event::Suite(result));
        }
    }
    // The suites' own results say what failed; the stage only records that something did.
    clock.finish_as(if failed {
        StageOutcome::Failed
    } else {
        StageOutcome::Passed
    });
}

async fn run_one(
    run: &Run,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
) -> SuiteResult {
    let shard = run.options.shard;
    if !suite.needs.is_empty() && !suite.needs.contains(&env.target) {
        let needs: Vec<String> = suite.needs.iter().map(ToString::to_string).collect();
        let reason = format!(
            "needs target {}, running on {}",
            needs.join(" or "),
            env.target
        );
        return crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            env,
            python,
            &reason,
            shard,
        )
        .await;
    }
    if suite.runner == Runner::Pytest && python.is_none() {
        let reason = "the Python environment could not be made";
        return crate::suites::collect_skipped_shard(&run.config, suite, env, None, reason, shard)
            .await;
    }
    crate::suites::run_suite(&run.config, suite, env, python, shard).await
}

/// Every selected suite's tests, listed as skipped with the reason (nothing silently
/// disappears from the report).
pub async fn list_skipped(
    run: &Arc<Run>,
    reason: &str,
    python: &PythonSlot,
    chosen: Option<&Chosen>,
) {
    if run.options.until != Until::Suites {
        return;
    }
    let python = python.get(run).await;
    let mut env = suite_env(run, chosen);
    env.extra = BTreeMap::new();
    env.skip_markers = Vec::new();
    for suite in run.selected_suites() {
        let result = crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            &env,
            python,
            reason,
            run.options.shard,
        )
        .await;
        run.emit(Event::Suite(result));
    }
}
