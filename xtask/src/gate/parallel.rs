//! The suites stage with more than one job (`--jobs N`, `[gate] jobs`) and a `parallel` suite:
//! the selected suites that can run are collected at once (pytest with the run's own selection),
//! planned together over the workers ([crate::suites::plan], weighed by the durations the stage
//! read, [super::suites]), and run ([crate::suites::run_plan]); each suite's tests go to the run's events as
//! they start and end, and its result the moment its last worker ended, as in a serial run.
//!
//! Not here: the schedule or the workers themselves ([crate::suites]); the serial stage and the
//! heartbeat ([super::suites]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::SuiteCfg;
use crate::junit::SuiteResult;
use crate::suites::{Hooks, PythonEnv, SuiteEnv, SuiteRun, TestSink};

use super::events::{Event, Stage};
use super::run::{lock, Run};
use super::suites::{cannot_run, live_sink, repo_root, Pulse};

/// Runs the selected suites on one plan; whether any of them failed.
pub(super) async fn suites(
    run: &Arc<Run>,
    selected: &[&SuiteCfg],
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
    pulse: &Arc<Mutex<Pulse>>,
) -> bool {
    if let Some(reason) = run.lost_reason() {
        // The engine is gone: nothing is collected or run, everything is listed.
        super::suites::list_lost(run, selected, env, python, &reason).await;
        return true;
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
    run.emit(Event::Progress {
        stage: Stage::Suites,
        message: format!(
            "collecting the tests of {} for {} workers",
            runnable
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            run.options.jobs
        ),
    });
    let collections = futures_util::future::join_all(runnable.iter().map(|suite| async {
        if suite.parallel {
            crate::suites::collect_for_plan(&run.config, suite, env, python, &base).await
        } else {
            None
        }
    }))
    .await;
    let planned: Vec<(&SuiteCfg, Option<&crate::suites::Collection>)> = runnable
        .iter()
        .copied()
        .zip(collections.iter().map(Option::as_ref))
        .collect();
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
        for suite in &runnable {
            pulse.suites.insert(suite.name.clone(), Instant::now());
        }
        pulse.last = Some(Instant::now());
    }
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
    let hooks = Hooks {
        live: Some(live),
        done,
    };
    crate::suites::run_plan(&run.config, env, python, &base, &planned, &plan, &hooks).await;
    failed.load(Ordering::SeqCst)
}
