//! Running the `[[suite]]`s, step by step: the Python environment ([python]), the pytest runner
//! ([pytest]), the nextest runner ([nextest]), the skeleton both run on (their process, its
//! deadline, its output, its report: [runner]), the shard split ([shard]), and, with `--jobs N`,
//! one schedule of every suite's tests over N workers ([plan]) and running it ([workers]). This
//! file holds what they share: what a suite receives ([`SuiteEnv`], [`child_env`]) and the entry
//! points the gate calls. The results are [`crate::junit::SuiteResult`]s; nothing here prints.
//!
//! Not here: the report itself ([crate::junit]), processes and their groups ([crate::process]),
//! deciding which suites run on which target (the gate).
//!
//! # CONTRACT (what the gate relies on)
//!
//! ```text
//! pub struct PythonEnv { venv, python, reused: bool, duration, log }
//! pub enum Requirements { Suites, SuitesAndLocal }
//! pub async fn python_env(config: &Config) -> anyhow::Result<PythonEnv>          // [python] requirements
//! pub async fn python_env_with(config: &Config, Requirements) -> anyhow::Result<PythonEnv>
//!
//! pub struct SuiteEnv { target: TargetKind, run_id, endpoints: BTreeMap<String, String>,
//!                       extra: BTreeMap<String, String>, skip_markers: Vec<String>, secrets: Vec<String>,
//!                       durations: Option<Arc<Durations>>, stop: Option<Stop> }
//! pub fn child_env(suite: &SuiteCfg, env: &SuiteEnv, py: Option<&PythonEnv>) -> Vec<(String, String)>
//!
//! pub async fn run_suite(config, suite, env, py: Option<&PythonEnv>, shard: Option<Shard>) -> SuiteResult
//! pub struct SuiteRun { shard, extra_args: Vec<String>, live: Option<TestSink>, repo_root }
//! pub async fn run_suite_with(config, suite, env, py, &SuiteRun) -> SuiteResult   // live tests, `-- ARGS`
//! pub async fn collect_skipped(config, suite, env, py, reason: &str) -> SuiteResult
//! pub async fn collect_skipped_shard(config, suite, env, py, reason: &str, shard: Option<Shard>) -> SuiteResult
//! pub async fn ensure_requirements(config, py: &PythonEnv, files: &[PathBuf]) -> anyhow::Result<PathBuf>
//! pub fn shard_of(test_id: &str, count: u32) -> u32                      // 1-based, stable (FNV-1a)
//! pub struct Durations { suites, walls, order, source }   // read(path), keep(..), write(path): durations.json
//!
//! pub async fn collect_for_plan(config, suite, env, py, &SuiteRun) -> Option<Collection>
//! pub fn plan(suites: &[(&SuiteCfg, Option<&Collection>)], &Durations, jobs) -> Plan
//! pub async fn run_plan(config, env, py, &SuiteRun, suites, &Plan, &Hooks) -> Vec<SuiteResult>
//! ```
//!
//! Every run writes the runner's whole output to `runs/<run id>/suites/<suite>.log`. With a
//! [`live::TestSink`], each test is reported as it starts and ends ([live]).
//!
//! `run_suite` never returns an error: whatever went wrong is in the [`SuiteResult`] (an `error`
//! case). Each runner is a [`crate::process::Process`] in its own process group: at its deadline
//! the group gets SIGINT (pytest and nextest then write their reports), SIGTERM after
//! [`INTERRUPT_GRACE`], SIGKILL after [`KILL_GRACE`]. Dropping `run_suite`'s future (the gate
//! cancels it on Ctrl-C) stops the group: SIGTERM at once, SIGKILL after [`KILL_GRACE`]; the
//! gate calls [`crate::process::finish_pending_kills`] before it exits so that those are sent.

mod python;
mod pytest;
mod pytest_plugin;
mod nextest;
mod runner;
mod balance;
mod shard;
mod retry;
pub mod live;
pub mod plan;
pub mod workers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{Config, Runner, SuiteCfg, TargetKind};
use crate::flags::Shard;
use crate::junit::{self, Case, Status, SuiteResult};

pub use crate::process::KILL_GRACE;
pub use live::{TestEvent, TestOutcome, TestRun, TestSink};
pub use plan::{layout, plan, Collection, Plan, DEFAULT_JOBS};
pub use pytest::pytest_case_name;
pub use python::{
    ensure_requirements, python_env, python_env_with, PythonEnv, Requirements, REQUIREMENTS_STAMP,
};
pub use retry::retries_of;
pub use shard::{case_key, default_path as durations_path, shard_of, Durations, Layout};
pub use workers::{run_plan, Hooks};

use nextest::{nextest_list, run_nextest};
use pytest::run_pytest;

/// After SIGINT at the deadline, before SIGTERM: time for pytest or nextest to write its report.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How long collecting a skipped suite's tests may take.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// What the suites receive.

/// What a suite is run with, besides its own `[[suite]]` table.
#[derive(Debug, Clone)]
pub struct SuiteEnv {
    pub target: TargetKind,
    pub run_id: String,
    /// Resolved endpoints, name → URL; each becomes `<NAME>_URL`.
    pub endpoints: BTreeMap<String, String>,
    /// More variables: `XTASK_COMPOSE_PROJECT` and `XTASK_COMPOSE_FILE` on the docker target.
    pub extra: BTreeMap<String, String>,
    /// Pytest markers deselected on this target and reported skipped (`docker`, `destructive`).
    pub skip_markers: Vec<String>,
    /// Redacted from every output kept.
    pub secrets: Vec<String>,
    /// Per-test durations that split `--shard` by time (none: by hash).
    pub durations: Option<std::sync::Arc<Durations>>,
    /// Ends a running suite early (the gate: the engine was lost); `None`: only the deadline.
    pub stop: Option<Stop>,
    /// `--retries N`: how often a failed test is run again, for every suite (none: each suite's
    /// `retries`).
    pub retries: Option<u32>,
}

/// A request to stop the suites before their deadline, handled as the deadline is (SIGINT first,
/// so that each runner writes what it has), with the reason the tests that did not run are
/// reported skipped for.
#[derive(Debug, Clone)]
pub struct Stop(tokio::sync::watch::Receiver<Option<String>>);

impl Stop {
    /// Stopping is asked for when the sender's value becomes `Some(reason)`.
    pub fn new(receiver: tokio::sync::watch::Receiver<Option<String>>) -> Stop {
        Stop(receiver)
    }

    /// The reason, once stopping was asked for.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Completes when stopping is asked for; never, when the sender goes without asking.
    pub async fn requested(mut self) {
        if self.0.wait_for(Option::is_some).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The variables a suite's process gets on top of the caller's environment, in the order they
/// are set (later wins): `XTASK_TARGET`, `XTASK_RUN_ID`, one `<NAME>_URL` per endpoint, `extra`,
/// the venv (`VIRTUAL_ENV`, its `bin` first on `PATH`), the suite's own `env`.
pub fn child_env(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("XTASK_TARGET".to_owned(), env.target.to_string()),
        ("XTASK_RUN_ID".to_owned(), env.run_id.clone()),
    ];
    for (name, url) in &env.endpoints {
        vars.push((crate::endpoints::env_name(name), url.clone()));
    }
    vars.extend(env.extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(py) = py {
        vars.push(("VIRTUAL_ENV".to_owned(), py.venv.display().to_string()));
        let path = std::env::var("PATH").ok();
        vars.push((
            "PATH".to_owned(),
            python::prepend_to_search_path(&python::venv_bin(&py.venv), path.as_deref()),
        ));
    }
    vars.extend(suite.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

// ---------------------------------------------------------------------------------------------
// Running a suite.

/// How one run of a suite goes, besides its `[[suite]]` table.
#[derive(Clone, Default)]
pub struct SuiteRun {
    pub shard: Option<Shard>,
    /// `mission-critical -- ARGS`: after the suite's own `args` (`-k auth_tokens`, a nextest
    /// filter). Tests they leave out are reported skipped.
    pub extra_args: Vec<String>,
    /// Receives each test as it starts and ends.
    pub live: Option<TestSink>,
    /// Test files are named relative to this (the repository) in live events.
    pub repo_root: Option<PathBuf>,
    /// A worker of the plan: only these pytest node ids (its files are `<suite>.<worker>.*`).
    pub only: Option<Vec<String>>,
    /// The worker's name in the live events (`XTASK_WORKER`).
    pub worker: Option<String>,
    /// nextest's `--test-threads` (its own parallelism, in a plan's worker).
    pub threads: Option<u32>,
    /// The runner's deadline when not the suite's `timeout_s` (what is left of it in a plan).
    pub deadline: Option<Duration>,
    /// pytest: once collected, wait until this file exists before running the tests (a worker
    /// started ahead of its turn).
    pub wait: Option<PathBuf>,
    /// pytest, a worker of the plan: take the tests one at a time from this queue (its suite's,
    /// shared with the suite's other workers; `only` then holds every test of the queue).
    pub queue: Option<PathBuf>,
    /// 0: the first run; N: the Nth rerun of the tests that failed ([retry]); its files are
    /// `<stem>.retryN.*`.
    pub attempt: u32,
}

/// Runs one suite under its deadline (`timeout_s`) and returns its cases. pytest needs `py`.
pub async fn run_suite(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    shard: Option<Shard>,
) -> SuiteResult {
    let run = SuiteRun {
        shard,
        ..SuiteRun::default()
    };
    run_suite_with(config, suite, env, py, &run).await
}

/// [`run_suite`] with the command line's arguments and a live view of its tests; the tests that
/// fail are run again as the suite's retries say ([retry]), and the quarantined ones marked.
pub async fn run_suite_with(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    run: &SuiteRun,
) -> SuiteResult {
    let first = run_once(config, suite, env, py, run).await;
    let mut result = retry::retry_failed(config, suite, env, py, run, first).await;
    retry::mark_quarantined(suite, &mut result);
    result
}

/// One run of a suite's runner, as [`run_suite_with`] asks.
async fn run_once(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    run: &SuiteRun,
) -> SuiteResult {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let mut result = match suite.runner {
        Runner::Pytest => match py {
            Some(py) => run_pytest(config, suite, env, py, run, Mode::Run).await,
            None => errored(suite, "pytest suite run without a Python environment", ""),
        },
        Runner::Nextest => run_nextest(config, suite, env, run).await,
    };
    result.started = Some(started_at);
    result.duration = started.elapsed();
    scrub(&mut result, &env.secrets);
    result
}

/// The cases of a suite that will not run, each skipped with `reason` (found with
/// `pytest --collect-only` or `cargo nextest list`); when they cannot be found, one skipped case
/// named after the suite.
pub async fn collect_skipped(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    reason: &str,
) -> SuiteResult {
    collect_skipped_shard(config, suite, env, py, reason, None).await
}

/// [`collect_skipped`] for one shard: only the tests that shard would have run, so that the
/// merged reports of all shards list each skipped test once.
pub async fn collect_skipped_shard(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    reason: &str,
    shard: Option<Shard>,
) -> SuiteResult {
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    let listed = match suite.runner {
        Runner::Pytest => match py {
            Some(py) => {
                let collect = SuiteRun {
                    shard,
                    ..SuiteRun::default()
                };
                let result = run_pytest(config, suite, env, py, &collect, Mode::Collect).await;
                if result.error.is_none() {
                    Ok(result.cases)
                } else {
                    Err(())
                }
            }
            None => Err(()),
        },
        Runner::Nextest => nextest_list(
            config,
            suite,
            env,
            shard,
            COLLECT_TIMEOUT.min(suite.timeout_s.duration()),
        )
        .await
        .map(|tests| {
            tests
                .into_iter()
                .map(|t| Case::skipped(t.binary_id, t.name, ""))
                .collect()
        })
        .map_err(|_| ()),
    };
    let mut result = SuiteResult::new(&suite.name);
    result.cases = match listed {
        Ok(cases) => cases
            .into_iter()
            .map(|case| Case::skipped(case.classname, case.name, reason))
            .collect(),
        Err(()) => vec![Case::skipped(&suite.name, &suite.name, reason)],
    };
    result.started = Some(started_at);
    result.duration = started.elapsed();
    scrub(&mut result, &env.secrets);
    result
}

fn errored(suite: &SuiteCfg, error: impl Into<String>, output: &str) -> SuiteResult {
    let mut result = SuiteResult::new(&suite.name);
    result.error = Some(error.into());
    if !output.is_empty() {
        result.output = Some(output.to_owned());
    }
    result
}

fn scrub(result: &mut SuiteResult, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let fix = |text: &mut String| *text = junit::redact(text, secrets);
    if let Some(error) = result.error.as_mut() {
        fix(error);
    }
    if let Some(output) = result.output.as_mut() {
        fix(output);
    }
    for case in &mut result.cases {
        match &mut case.status {
            Status::Passed => {}
            Status::Failed { message, output } | Status::Error { message, output } => {
                fix(message);
                fix(output);
            }
            Status::Skipped { reason } => fix(reason),
        }
        if let Some(out) = case.system_out.as_mut() {
            fix(out);
        }
        if let Some(err) = case.system_err.as_mut() {
            fix(err);
        }
    }
}

/// What pytest is asked for: run the suite, only list its tests (a suite that is skipped), or
/// list what a run would select (the plan).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Collect,
    Plan,
}

/// The tests of a suite the plan spreads over its workers: a pytest suite's, collected with the
/// run's selection. `None`: the suite runs whole (nextest, which runs its tests in parallel
/// itself; a collection that failed, which the run then reports).
pub async fn collect_for_plan(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    run: &SuiteRun,
) -> Option<Collection> {
    match suite.runner {
        Runner::Pytest => pytest::collect_plan(config, suite, env, py?, run)
            .await
            .ok(),
        Runner::Nextest => None,
    }
}

/// Waits until `go` exists (the harness's word that a worker started ahead may run its tests),
/// at most `deadline`; whether it came.
async fn wait_for_turn(go: &Path, deadline: Duration) -> bool {
    let until = Instant::now() + deadline;
    while !go.exists() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The name of one run's result files: the suite's ([`file_stem`]); a worker's share
/// `<suite>.<worker>`; the plan's collection `<suite>.plan`.
fn run_stem(suite: &SuiteCfg, run: &SuiteRun, mode: Mode) -> String {
    let stem = file_stem(suite, run.shard);
    let stem = match (mode, &run.only) {
        (Mode::Plan, _) => return format!("{stem}.plan"),
        (Mode::Run, Some(_)) => format!("{stem}.{}", run.worker.as_deref().unwrap_or("part")),
        _ => stem,
    };
    match run.attempt {
        0 => stem,
        n => format!("{stem}.retry{n}"),
    }
}

/// The name of a suite's result files: its name made safe for a path, and its shard.
fn file_stem(suite: &SuiteCfg, shard: Option<Shard>) -> String {
    let safe: String = suite
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match shard {
        Some(shard) => format!("{safe}.shard-{}-of-{}", shard.index, shard.count),
        None => safe,
    }
}

/// Where a suite's results go: per run, so that two gates on one machine (isolated stacks) do not
/// overwrite each other's.
fn results_dir(config: &Config, env: &SuiteEnv) -> PathBuf {
    crate::stack::run_dir(config, &env.run_id).join("suites")
}
