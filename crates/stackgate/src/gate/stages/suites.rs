//! The suites stage on the chosen target (every selected
//! `[[suite]]` in order, one at a time; with `--jobs N` and `parallel` suites, one plan over N
//! workers, [crate::gate::parallel]; each test reported as it starts and ends, a heartbeat naming the
//! running test when nothing else was said for [`HEARTBEAT`]), and the Python environment they
//! share, made in the background from the run's start. Suites that cannot run are still listed,
//! their tests skipped with the reason.
//!
//! Not here: running a suite ([crate::suites]); the WebSocket stage ([super::ws]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{SuiteCfg, TargetKind};
use crate::junit::SuiteResult;
use crate::suites::{PythonEnv, SuiteEnv, SuiteRun};

use crate::gate::context::{lock, Context, StageClock, Until};
use crate::gate::events::{Event, Stage, StageOutcome};
use crate::gate::suite_support::{
    cannot_run, last_durations, list_lost, live_sink, nothing_to_run, repo_root, Pulse, PythonSlot,
};

use super::target::Chosen;

/// What every suite of the run receives.
fn suite_env(run: &Context, chosen: Option<&Chosen>) -> SuiteEnv {
    SuiteEnv {
        target: chosen.map_or(TargetKind::Docker, |c| c.kind),
        run_id: run.run_id.clone(),
        endpoints: chosen.map(|c| c.endpoints.clone()).unwrap_or_default(),
        extra: chosen.map(|c| c.extra_env.clone()).unwrap_or_default(),
        skip_markers: chosen.map(|c| c.skip_markers.clone()).unwrap_or_default(),
        secrets: run.secrets(),
        durations: None,
        stop: Some(crate::suites::Stop::new(run.stop_suites.subscribe())),
        retries: run.options.retries,
    }
}

/// How long the suites may be silent before a heartbeat names what runs.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Says every [`HEARTBEAT`] of silence which tests (or suites) still run; ends when dropped.
fn heartbeat(run: &Context, pulse: &Arc<Mutex<Pulse>>) -> AbortOnDrop {
    let reporter = run.reporter.clone();
    let pulse = pulse.clone();
    AbortOnDrop(tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let message = {
                let mut pulse = lock(&pulse);
                let quiet = pulse.last.is_none_or(|last| last.elapsed() >= HEARTBEAT);
                if !quiet || pulse.suites.is_empty() {
                    continue;
                }
                pulse.last = Some(Instant::now());
                let mut running: Vec<String> = pulse
                    .running
                    .iter()
                    .map(|((suite, _), (test, since))| {
                        format!("{suite}: {test} ({})", crate::ui::duration(since.elapsed()))
                    })
                    .collect();
                for (suite, since) in &pulse.suites {
                    if !pulse.running.keys().any(|(s, _)| s == suite) {
                        running.push(format!(
                            "{suite}: no test running ({} into the suite)",
                            crate::ui::duration(since.elapsed())
                        ));
                    }
                }
                format!("still running {}", running.join("; "))
            };
            reporter.emit(Event::Progress {
                stage: Stage::Suites,
                message,
            });
        }
    }))
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How the suites stage ended (each suite's result went to the run's events as it ended).
#[derive(Debug, Clone)]
pub struct SuitesReport {
    pub outcome: StageOutcome,
}

/// The suites stage: in order, one at a time; with more than one job and a `parallel` suite,
/// one plan over the workers.
pub async fn suites(
    run: &Arc<Context>,
    chosen: &Chosen,
    python: &PythonSlot,
    early: Option<crate::gate::collect::Early>,
) -> SuitesReport {
    let clock = StageClock::start(run, Stage::Suites);
    let pulse = Arc::new(Mutex::new(Pulse::default()));
    let _heartbeat = heartbeat(run, &pulse);
    let python = python.get(run).await;
    let mut env = suite_env(run, Some(chosen));
    let collected = match early {
        Some(early) => {
            env.durations = early.durations.clone();
            let collected = early.finish().await;
            if let Some((collected, took)) = &collected {
                let names: Vec<&str> = collected.keys().map(String::as_str).collect();
                run.emit(Event::Progress {
                    stage: Stage::Suites,
                    message: format!(
                        "the tests of {} were collected beside the stack ({})",
                        names.join(", "),
                        crate::ui::duration(*took)
                    ),
                });
            }
            collected.map(|(collected, _)| collected)
        }
        None => {
            env.durations = last_durations(run);
            None
        }
    };
    let selected = run.selected_suites();
    // A Python environment that could not be made is a failed step of this stage.
    let mut failed =
        run.reporter.record().steps().any(|(stage, c)| {
            stage == Stage::Suites && c.outcome == crate::report::Outcome::Failed
        });
    let mut layout = BTreeMap::new();
    if crate::gate::suite_support::plans(run) {
        let ran =
            crate::gate::parallel::suites(run, &selected, &env, python, &pulse, collected.as_ref())
                .await;
        failed |= ran.failed;
        layout = ran.layout;
    } else {
        for (index, suite) in selected.iter().enumerate() {
            if let Some(reason) = run.lost_reason() {
                // The engine is gone: what has not started is listed, not run.
                list_lost(run, &selected[index..], &env, python, &reason).await;
                failed = true;
                break;
            }
            let collection = collected
                .as_ref()
                .and_then(|c| c.get(&suite.name))
                .and_then(Option::as_ref);
            let result = run_one(run, suite, &env, python, &pulse, collection).await;
            failed |= !result.passed();
            run.emit(Event::Suite(result));
        }
    }
    if run.options.shard.is_none() {
        keep_durations(run, layout);
    }
    // The suites' own results say what failed; the stage only records that something did.
    SuitesReport {
        outcome: clock.finish_as(if failed {
            StageOutcome::Failed
        } else {
            StageOutcome::Passed
        }),
    }
}

/// An unsharded run leaves its suites' test durations (and wall times) for later runs: sharded
/// ones split by them, plans weigh by them; a run with a plan, how each suite ran in it
/// (`layout`), by which a sharded run predicts its shards' wall times.
fn keep_durations(run: &Context, layout: BTreeMap<String, crate::suites::Layout>) {
    let path = crate::suites::durations_path(&run.config.work_dir());
    // A run of some suites (`--suite`) replaces theirs and keeps the others'.
    // Kept apart: the times of runs with a plan of workers, and of runs without.
    let planned = crate::gate::suite_support::plans(run);
    let mut durations = crate::suites::Durations::read_for(&path, planned).unwrap_or_else(|_| {
        crate::suites::Durations {
            planned,
            ..Default::default()
        }
    });
    for suite in run.reporter.record().suites() {
        durations.keep(&suite.name, suite.duration, &suite.cases);
    }
    durations.layout.extend(layout);
    if let Err(e) = durations.write(&path) {
        run.note(format!("could not keep the test durations: {e:#}"));
    }
}

async fn run_one(
    run: &Arc<Context>,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
    pulse: &Arc<Mutex<Pulse>>,
    collection: Option<&crate::suites::Collection>,
) -> SuiteResult {
    let shard = run.options.shard;
    if let Some(result) = cannot_run(suite, env, python)
        .is_none()
        .then(|| collection.and_then(|c| c.result_without_running(&suite.name)))
        .flatten()
    {
        run.emit(Event::Progress {
            stage: Stage::Suites,
            message: nothing_to_run(suite, shard),
        });
        return result;
    }
    if let Some(reason) = cannot_run(suite, env, python) {
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
    let suite_run = SuiteRun {
        shard,
        extra_args: run.options.suite_args.clone(),
        live: Some(live_sink(run, &suite.name, pulse)),
        repo_root: Some(repo_root(&run.config.root)),
        ..SuiteRun::default()
    };
    {
        // The heartbeat counts its silence from the suite's start.
        let mut pulse = lock(pulse);
        pulse.suites.insert(suite.name.clone(), Instant::now());
        pulse.last = Some(Instant::now());
    }
    let result = crate::suites::run_suite_with(&run.config, suite, env, python, &suite_run).await;
    lock(pulse).suites.remove(&suite.name);
    result
}

/// Every selected suite's tests, listed as skipped with the reason (nothing silently
/// disappears from the report).
pub async fn list_skipped(
    run: &Context,
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
