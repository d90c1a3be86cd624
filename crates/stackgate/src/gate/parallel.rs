//! The suites stage with more than one job (`--jobs N`, `[gate] jobs`) and a `parallel` suite:
//! the selected suites that can run are collected at once (pytest with the run's own selection),
//! planned together over the workers ([crate::suites::plan], weighed by the durations the stage
//! read, [super::stages::suites]), and run ([crate::suites::run_plan]); each suite's tests go to the run's events as
//! they start and end, and its result the moment its last worker ended, as in a serial run.
//!
//! Not here: the schedule or the workers themselves ([crate::suites]); the serial stage and the
//! heartbeat ([super::stages::suites]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::{Runner, SuiteCfg};
use crate::junit::SuiteResult;
use crate::suites::{Hooks, PythonEnv, SuiteEnv, SuiteRun, TestSink};

use super::context::{lock, Context};
use super::events::{Event, Stage};
use super::suite_support::{cannot_run, live_sink, repo_root, Pulse};

/// How the suites ran on one plan.
pub(super) struct Ran {
    /// Whether any of them failed.
    pub failed: bool,
    /// How each planned suite ran ([crate::suites::Layout]), kept with the durations.
    pub layout: std::collections::BTreeMap<String, crate::suites::Layout>,
}

/// Runs the selected suites on one plan.
pub(super) async fn suites(
    run: &Arc<Context>,
    selected: &[&SuiteCfg],
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
    pulse: &Arc<Mutex<Pulse>>,
    early: Option<&super::collect::Collected>,
) -> Ran {
    if let Some(reason) = run.lost_reason() {
        // The engine is gone: nothing is collected or run, everything is listed.
        super::suite_support::list_lost(run, selected, env, python, &reason).await;
        return Ran {
            failed: true,
            layout: Default::default(),
        };
    }
    let failed = Arc::new(AtomicBool::new(false));
    let mut runnable = Vec::new();
    for suite in selected {
        match cannot_run(suite, env, python) {
            Some(reason) => {
                let result = crate::suites::collect_skipped_shard(
                    &run.config,
                    suite,
                    env,
                    python,
                    &reason,
                    run.options.shard,
                )
                .await;
                failed.fetch_or(!result.passed(), Ordering::SeqCst);
                run.emit(Event::Suite(result));
            }
            None => runnable.push(*suite),
        }
    }
    let base = SuiteRun {
        shard: run.options.shard,
        extra_args: run.options.suite_args.clone(),
        repo_root: Some(repo_root(&run.config.root)),
        ..SuiteRun::default()
    };
    let collections = collections(run, &runnable, env, python, &base, early).await;
    // A suite whose selection leaves it nothing to run here is reported without a runner.
    let mut planned: Vec<(&SuiteCfg, Option<&crate::suites::Collection>)> = Vec::new();
    for (suite, collection) in runnable.iter().copied().zip(collections.iter()) {
        match collection
            .as_ref()
            .and_then(|c| c.result_without_running(&suite.name))
        {
            Some(result) => {
                run.emit(Event::Progress {
                    stage: Stage::Suites,
                    message: super::suite_support::nothing_to_run(suite, run.options.shard),
                });
                run.emit(Event::Suite(result));
            }
            None => planned.push((suite, collection.as_ref())),
        }
    }
    let durations = env.durations.as_deref().cloned().unwrap_or_default();
    let plan = crate::suites::plan(&planned, &durations, run.options.jobs);
    for line in plan.describe() {
        run.emit(Event::Progress {
            stage: Stage::Suites,
            message: format!("plan: {line}"),
        });
    }
    {
        let mut pulse = lock(pulse);
        for (suite, _) in &planned {
            pulse.suites.insert(suite.name.clone(), Instant::now());
        }
        pulse.last = Some(Instant::now());
    }
    let hooks = hooks(run, pulse, &failed);
    crate::suites::run_plan(&run.config, env, python, &base, &planned, &plan, &hooks).await;
    Ran {
        failed: failed.load(Ordering::SeqCst),
        layout: crate::suites::layout(&plan, &planned),
    }
}

/// Each runnable suite's collection for the plan (`None` for one that is not `parallel`):
/// collected beside the stack, else now (a collection that failed there is repeated with the
/// whole environment).
async fn collections(
    run: &Arc<Context>,
    runnable: &[&SuiteCfg],
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
    base: &SuiteRun,
    early: Option<&super::collect::Collected>,
) -> Vec<Option<crate::suites::Collection>> {
    let ready = |suite: &SuiteCfg| early.and_then(|e| e.get(&suite.name)).cloned().flatten();
    let now: Vec<&str> = runnable
        .iter()
        .filter(|s| s.parallel && s.runner == Runner::Pytest && ready(s).is_none())
        .map(|s| s.name.as_str())
        .collect();
    if !now.is_empty() {
        run.emit(Event::Progress {
            stage: Stage::Suites,
            message: format!(
                "collecting the tests of {} for {} workers",
                now.join(", "),
                run.options.jobs
            ),
        });
    }
    futures_util::future::join_all(runnable.iter().map(|suite| async {
        if !suite.parallel {
            return None;
        }
        match ready(suite) {
            Some(collection) => Some(collection),
            None => crate::suites::collect_for_plan(&run.config, suite, env, python, base).await,
        }
    }))
    .await
}

/// The plan's hooks: each test live to the run's events and the pulse; each suite's result, the
/// moment its last worker ended, to the events and `failed`.
fn hooks(run: &Arc<Context>, pulse: &Arc<Mutex<Pulse>>, failed: &Arc<AtomicBool>) -> Hooks {
    let live = {
        let run = run.clone();
        let pulse = pulse.clone();
        Arc::new(move |suite: &str| -> TestSink { live_sink(&run, suite, &pulse) })
    };
    let done = {
        let run = run.clone();
        let pulse = pulse.clone();
        let failed = failed.clone();
        Arc::new(move |result: &SuiteResult| {
            lock(&pulse).suites.remove(&result.name);
            failed.fetch_or(!result.passed(), Ordering::SeqCst);
            run.emit(Event::Suite(result.clone()));
        })
    };
    Hooks {
        live: Some(live),
        done,
        notes: run.progress(Stage::Suites),
    }
}
