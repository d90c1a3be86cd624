//! The checks on the chosen target: the WebSocket stage, then the suites stage (every selected
//! `[[suite]]` in order, one at a time; with `--jobs N` and `parallel` suites, one plan over N
//! workers, [super::parallel]; each test reported as it starts and ends, a heartbeat naming the
//! running test when nothing else was said for [`HEARTBEAT`]), and the Python environment they
//! share, made in the background from the run's start. Suites that cannot run are still listed,
//! their tests skipped with the reason.
//!
//! Not here: running a suite ([crate::suites]) or the WebSocket client ([crate::ws]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Runner, SuiteCfg, TargetKind};
use crate::flags::TargetChoice;
use crate::junit::SuiteResult;
use crate::report::Check;
use crate::suites::{PythonEnv, Requirements, SuiteEnv, SuiteRun, TestEvent, TestSink};

use super::events::{Event, Stage, StageOutcome};
use super::run::{lock, Run, StageClock, Until};
use super::target::Chosen;

/// The Python environment, made in its own task; awaited by whoever needs it (the tests'
/// collection beside the stack, the suites, the local target), its failure reported once, by the
/// first that reports ([`PythonSlot::get`]).
pub struct PythonSlot {
    /// Held while awaited: a waiter that is dropped leaves it for the next.
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<anyhow::Result<PythonEnv>>>>,
    /// `None`: not needed. `Err`: why it could not be made.
    env: tokio::sync::OnceCell<Option<Result<PythonEnv, String>>>,
    reported: std::sync::atomic::AtomicBool,
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
            task: tokio::sync::Mutex::new(task),
            env: tokio::sync::OnceCell::new(),
            reported: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn made(&self) -> Option<&Result<PythonEnv, String>> {
        self.env
            .get_or_init(|| async {
                let mut task = self.task.lock().await;
                let made = task.as_mut()?.await;
                *task = None;
                Some(match made {
                    Ok(Ok(env)) => Ok(env),
                    Ok(Err(e)) => Err(format!("{e:#}")),
                    Err(e) => Err(format!("the task making it ended: {e}")),
                })
            })
            .await
            .as_ref()
    }

    /// The environment, or `None` when it is not needed or could not be made (reported once,
    /// under the suites stage that needs it).
    pub async fn get(&self, run: &Run) -> Option<&PythonEnv> {
        match self.made().await? {
            Ok(env) => Some(env),
            Err(problem) => {
                if !self
                    .reported
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    run.emit(Event::Step {
                        stage: Stage::Suites,
                        check: Check::failed("python environment", Duration::ZERO, problem),
                    });
                }
                None
            }
        }
    }

    /// The environment once made, without reporting a failure (for work done ahead that the
    /// suites stage repeats when it could not be).
    pub async fn ready(&self) -> Option<&PythonEnv> {
        self.made().await?.as_ref().ok()
    }
}

impl Drop for PythonSlot {
    fn drop(&mut self) {
        // An interrupted run must not leave pip running.
        if let Some(task) = self.task.get_mut().take() {
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
        durations: None,
        stop: Some(crate::suites::Stop::new(run.stop_suites.subscribe())),
        retries: run.options.retries,
    }
}

/// How long the suites may be silent before a heartbeat names what runs.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// What runs now, for the heartbeat: when anything was last said, and the running tests.
#[derive(Default)]
pub(super) struct Pulse {
    pub(super) last: Option<Instant>,
    /// (suite, worker) → (test, since).
    running: BTreeMap<(String, String), (String, Instant)>,
    /// Suites running, since.
    pub(super) suites: BTreeMap<String, Instant>,
}

/// The suite's tests as the run's events, and in the pulse.
pub(super) fn live_sink(run: &Arc<Run>, suite: &str, pulse: &Arc<Mutex<Pulse>>) -> TestSink {
    let reporter = run.reporter.clone();
    let suite = suite.to_owned();
    let pulse = pulse.clone();
    Arc::new(move |event: TestEvent| {
        {
            let mut pulse = lock(&pulse);
            pulse.last = Some(Instant::now());
            match &event {
                TestEvent::Started { worker, name, .. } => {
                    pulse.running.insert(
                        (suite.clone(), worker.clone()),
                        (name.clone(), Instant::now()),
                    );
                }
                TestEvent::Finished { worker, .. } => {
                    pulse.running.remove(&(suite.clone(), worker.clone()));
                }
            }
        }
        reporter.emit(match event {
            TestEvent::Started { worker, id, name } => Event::TestStarted {
                suite: suite.clone(),
                worker,
                id,
                name,
            },
            TestEvent::Finished { worker, test } => Event::TestFinished {
                suite: suite.clone(),
                worker,
                test,
            },
        });
    })
}

/// Says every [`HEARTBEAT`] of silence which tests (or suites) still run; ends when dropped.
fn heartbeat(run: &Arc<Run>, pulse: &Arc<Mutex<Pulse>>) -> AbortOnDrop {
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

/// The repository the suites' files are named against: `GITHUB_WORKSPACE` on GitHub, else the
/// nearest directory above the configuration holding `.git`, else the configuration's own.
pub(super) fn repo_root(config_root: &Path) -> PathBuf {
    if let Some(workspace) = std::env::var_os("GITHUB_WORKSPACE").filter(|w| !w.is_empty()) {
        let workspace = PathBuf::from(workspace);
        return std::fs::canonicalize(&workspace).unwrap_or(workspace);
    }
    let root = std::fs::canonicalize(config_root).unwrap_or_else(|_| config_root.to_owned());
    root.ancestors()
        .find(|dir| dir.join(".git").exists())
        .map_or_else(|| root.clone(), Path::to_path_buf)
}

/// The suites stage: in order, one at a time; with more than one job and a `parallel` suite,
/// one plan over the workers.
pub async fn suites(
    run: &Arc<Run>,
    chosen: &Chosen,
    python: &PythonSlot,
    early: Option<super::collect::Early>,
) {
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
    if super::collect::plans(run) {
        failed |=
            super::parallel::suites(run, &selected, &env, python, &pulse, collected.as_ref()).await;
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
        keep_durations(run);
    }
    // The suites' own results say what failed; the stage only records that something did.
    clock.finish_as(if failed {
        StageOutcome::Failed
    } else {
        StageOutcome::Passed
    });
}

/// The per-test durations of earlier runs, read once for both of their users: `--shard` splits
/// by them, the plan of `--jobs N` weighs its tests by them. `--durations FILE`, else what the
/// last unsharded gate left; without any, shards split by hash and the plan weighs every test
/// alike, and the run says so.
pub(super) fn last_durations(run: &Run) -> Option<Arc<crate::suites::Durations>> {
    if run.options.shard.is_none() && !super::collect::plans(run) {
        return None;
    }
    let kept = crate::suites::durations_path(&run.config.work_dir());
    let history = crate::history::path_of(&run.config);
    // Without `--durations` and before any unsharded run here: the history's, when it has runs
    // (a CI cache may bring only the history).
    let path = match &run.options.durations {
        Some(path) => path.clone(),
        None if !kept.exists() && run.config.history.enabled && history.is_file() => history,
        None => kept,
    };
    match crate::suites::Durations::read_for(&path, super::collect::plans(run)) {
        Ok(mut durations) => {
            durations.order = run
                .selected_suites()
                .iter()
                .map(|s| s.name.clone())
                .collect();
            if run.options.shard.is_some() {
                run.note(format!(
                    "shards split by the test durations in {}",
                    path.display()
                ));
            }
            Some(Arc::new(durations))
        }
        Err(e) => {
            run.note(match run.options.shard {
                Some(_) => format!(
                    "shards split by hash: no per-test durations ({e:#}); an unsharded run, or --durations FILE, gives them"
                ),
                None => format!(
                    "the plan weighs every test alike: no per-test durations ({e:#}); the next run has this one's"
                ),
            });
            None
        }
    }
}

/// An unsharded run leaves its suites' test durations (and wall times) for later runs: sharded
/// ones split by them, plans weigh by them.
fn keep_durations(run: &Run) {
    let path = crate::suites::durations_path(&run.config.work_dir());
    // A run of some suites (`--suite`) replaces theirs and keeps the others'.
    // Kept apart: the times of runs with a plan of workers, and of runs without.
    let planned = super::collect::plans(run);
    let mut durations = crate::suites::Durations::read_for(&path, planned).unwrap_or_else(|_| {
        crate::suites::Durations {
            planned,
            ..Default::default()
        }
    });
    for suite in run.reporter.record().suites() {
        durations.keep(&suite.name, suite.duration, &suite.cases);
    }
    if let Err(e) = durations.write(&path) {
        run.note(format!("could not keep the test durations: {e:#}"));
    }
}

/// The suites not yet started when the engine was lost: their tests listed skipped with the
/// reason.
pub(super) async fn list_lost(
    run: &Arc<Run>,
    suites: &[&SuiteCfg],
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
    reason: &str,
) {
    for suite in suites {
        let result = crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            env,
            python,
            reason,
            run.options.shard,
        )
        .await;
        run.emit(Event::Suite(result));
    }
}

async fn run_one(
    run: &Arc<Run>,
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

/// What the run says of a suite whose collection left it nothing to run.
pub(super) fn nothing_to_run(suite: &SuiteCfg, shard: Option<crate::flags::Shard>) -> String {
    match shard {
        Some(shard) => format!(
            "suite {}: none of its tests in shard {}/{}; its runner is not started",
            suite.name, shard.index, shard.count
        ),
        None => format!(
            "suite {}: its selection leaves no test to run; its runner is not started",
            suite.name
        ),
    }
}

/// Why a suite cannot run here (its tests are then listed skipped with this reason).
pub(super) fn cannot_run(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
) -> Option<String> {
    if !suite.needs.is_empty() && !suite.needs.contains(&env.target) {
        let needs: Vec<String> = suite.needs.iter().map(ToString::to_string).collect();
        return Some(format!(
            "needs target {}, running on {}",
            needs.join(" or "),
            env.target
        ));
    }
    if suite.runner == Runner::Pytest && python.is_none() {
        return Some("the Python environment could not be made".to_owned());
    }
    None
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
