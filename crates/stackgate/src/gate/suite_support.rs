//! What the suites stage shares with the stages beside it: the Python environment made in the
//! background ([`PythonSlot`]), the pulse and live sink of running tests, the repository root,
//! the durations of earlier runs, and the texts of suites that cannot or did not run. Moved out
//! of [super::stages::suites] so that [super::collect], [super::parallel] and [super::stages::target] need not
//! import the stage that imports them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Runner, SuiteCfg};
use crate::flags::TargetChoice;
use crate::report::Check;
use crate::suites::{PythonEnv, Requirements, SuiteEnv, TestEvent, TestSink};

use super::context::{lock, Context, Until};
use super::events::{Event, Stage};

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
    pub fn spawn(run: &Context) -> PythonSlot {
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
    pub async fn get(&self, run: &Context) -> Option<&PythonEnv> {
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

/// What runs now, for the heartbeat: when anything was last said, and the running tests.
#[derive(Default)]
pub(super) struct Pulse {
    pub(super) last: Option<Instant>,
    /// (suite, worker) → (test, since).
    pub(super) running: BTreeMap<(String, String), (String, Instant)>,
    /// Suites running, since.
    pub(super) suites: BTreeMap<String, Instant>,
}

/// The suite's tests as the run's events, and in the pulse.
pub(super) fn live_sink(run: &Arc<Context>, suite: &str, pulse: &Arc<Mutex<Pulse>>) -> TestSink {
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

/// Whether the suites stage will plan the run's tests over workers.
pub fn plans(run: &Context) -> bool {
    run.options.jobs > 1 && run.selected_suites().iter().any(|s| s.parallel)
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

/// The per-test durations of earlier runs, read once for both of their users: `--shard` splits
/// by them, the plan of `--jobs N` weighs its tests by them. `--durations FILE`, else what the
/// last unsharded gate left; without any, shards split by hash and the plan weighs every test
/// alike, and the run says so.
pub(super) fn last_durations(run: &Context) -> Option<Arc<crate::suites::Durations>> {
    if run.options.shard.is_none() && !super::suite_support::plans(run) {
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
    match crate::suites::Durations::read_for(&path, super::suite_support::plans(run)) {
        Ok(mut durations) => {
            durations.order = run
                .selected_suites()
                .iter()
                .map(|s| s.name.clone())
                .collect();
            if plans(run) {
                durations.jobs = run.options.jobs;
            }
            if let Some(shard) = run.options.shard {
                run.note(format!(
                    "shards split by the test durations in {}{}",
                    path.display(),
                    predicted(&durations, shard)
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

/// What the split predicts for each shard's suites under the run's plan (`--jobs N`), when it
/// can ([crate::suites::Durations::plan_workers]): ", predicted wall time per shard under 4
/// workers: 5.2s, 5.0s (this shard, 1/2: 5.2s)". Empty without a plan or a recorded layout.
fn predicted(durations: &crate::suites::Durations, shard: crate::flags::Shard) -> String {
    if durations.jobs <= 1 || durations.layout.is_empty() {
        return String::new();
    }
    let loads = durations.plan(shard.count).loads;
    let walls: Vec<String> = loads.iter().map(|s| format!("{s:.1}s")).collect();
    let mine = loads
        .get(shard.index as usize - 1)
        .copied()
        .unwrap_or_default();
    format!(
        "; predicted wall time per shard under {} workers: {} (this shard, {}/{}: {mine:.1}s)",
        durations.jobs,
        walls.join(", "),
        shard.index,
        shard.count
    )
}

/// The suites not yet started when the engine was lost: their tests listed skipped with the
/// reason.
pub(super) async fn list_lost(
    run: &Arc<Context>,
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
