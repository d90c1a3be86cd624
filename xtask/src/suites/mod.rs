//! Running the `[[suite]]`s: the pytest venv, the pytest and nextest runners, each under its own
//! deadline in its own process group, and the cases of suites that are skipped. The results are
//! [`crate::junit::SuiteResult`]s; this module prints nothing.
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
//!                       extra: BTreeMap<String, String>, skip_markers: Vec<String>, secrets: Vec<String> }
//! pub fn child_env(suite: &SuiteCfg, env: &SuiteEnv, py: Option<&PythonEnv>) -> Vec<(String, String)>
//!
//! pub async fn run_suite(config, suite, env, py: Option<&PythonEnv>, shard: Option<Shard>) -> SuiteResult
//! pub async fn collect_skipped(config, suite, env, py, reason: &str) -> SuiteResult
//! pub async fn collect_skipped_shard(config, suite, env, py, reason: &str, shard: Option<Shard>) -> SuiteResult
//! pub async fn ensure_requirements(config, py: &PythonEnv, files: &[PathBuf]) -> anyhow::Result<PathBuf>
//! pub fn shard_of(test_id: &str, count: u32) -> u32                      // 1-based, stable (FNV-1a)
//! pub fn finish_pending_kills()       // before exiting after Ctrl-C: the dropped suites' SIGKILLs
//! ```
//!
//! `run_suite` never returns an error: whatever went wrong is in the [`SuiteResult`] (an `error`
//! case). Dropping its future (the gate cancels it on Ctrl-C) kills the suite's process group: a
//! [`GroupGuard`] sends SIGTERM at once and SIGKILL after [`KILL_GRACE`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::config::{Config, Runner, SuiteCfg, TargetKind};
use crate::flags::Shard;
use crate::junit::{self, Case, Status, SuiteResult};

/// After SIGTERM, before SIGKILL (deadline passed, or the run dropped).
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// After SIGINT at the deadline, before SIGTERM: time for pytest or nextest to write its report.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// How much of a runner's output is kept (the tail).
const OUTPUT_TAIL: usize = junit::OUTPUT_LIMIT;
/// How long `pip install` may take.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);
/// How long collecting a skipped suite's tests may take.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(120);
/// The file in the venv that records what it was built from.
pub const REQUIREMENTS_STAMP: &str = ".xtask-requirements.sha";

// ---------------------------------------------------------------------------------------------
// The Python environment.

/// A ready virtual environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    pub venv: PathBuf,
    /// `<venv>/bin/python`.
    pub python: PathBuf,
    /// True when the venv was already up to date (nothing was installed).
    pub reused: bool,
    pub duration: Duration,
    /// Where pip's output went.
    pub log: PathBuf,
}

/// Which requirement files go into the venv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirements {
    /// `[python] requirements`.
    Suites,
    /// Those and `[targets.local] requirements` (the local target runs the services from it).
    SuitesAndLocal,
}

/// The venv of `[python]` with its requirements; see [`python_env_with`].
pub async fn python_env(config: &Config) -> anyhow::Result<PythonEnv> {
    python_env_with(config, Requirements::Suites).await
}

/// Creates or reuses the venv at `[python] venv` and installs the requirement files with pip. The
/// venv is reused while the interpreter and the files' contents are unchanged (one digest per
/// file installed is kept in `<venv>/.xtask-requirements.sha`). Concurrent callers wait on a lock file beside the venv.
/// Files a requirement file includes (`-r other.txt`) are not part of the digest.
pub async fn python_env_with(
    config: &Config,
    requirements: Requirements,
) -> anyhow::Result<PythonEnv> {
    let mut files: Vec<PathBuf> = config
        .python
        .requirements
        .iter()
        .map(|r| config.resolve(r))
        .collect();
    if requirements == Requirements::SuitesAndLocal {
        if let Some(local) = &config.targets.local {
            files.extend(local.requirements.iter().map(|r| config.resolve(r)));
        }
    }
    prepare(config, files).await
}

/// Installs more requirement files (relative to the root, e.g. `[targets.local] requirements`)
/// into the venv of `py`, with the same reuse rule, and returns its interpreter.
pub async fn ensure_requirements(
    config: &Config,
    py: &PythonEnv,
    files: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    let mut all: Vec<PathBuf> = config
        .python
        .requirements
        .iter()
        .chain(files)
        .map(|r| config.resolve(r))
        .collect();
    all.dedup();
    let ready = prepare(config, all).await?;
    debug_assert_eq!(ready.venv, py.venv);
    Ok(ready.python)
}

async fn prepare(config: &Config, files: Vec<PathBuf>) -> anyhow::Result<PythonEnv> {
    let started = Instant::now();
    let venv = config.resolve(&config.python.venv);
    let python = venv.join("bin").join("python");
    let log = config.work_dir().join("pip.log");
    // One digest per requirement file; the stamp holds the digests of everything installed, so
    // that a venv set up for the local target (more files) also serves the others.
    let digests = requirements_digests(&config.python.interpreter, &files)?;
    let stamp = venv.join(REQUIREMENTS_STAMP);
    let installed = || -> BTreeSet<String> {
        std::fs::read_to_string(&stamp)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let up_to_date = || python.is_file() && digests.is_subset(&installed());
    let ready = |reused| PythonEnv {
        venv: venv.clone(),
        python: python.clone(),
        reused,
        duration: started.elapsed(),
        log: log.clone(),
    };
    if up_to_date() {
        return Ok(ready(true));
    }

    let lock_path = PathBuf::from(format!("{}.lock", venv.display()));
    let _lock = FileLock::acquire(&lock_path, PIP_TIMEOUT).await?;
    if up_to_date() {
        return Ok(ready(true));
    }
    std::fs::create_dir_all(config.work_dir())
        .with_context(|| format!("cannot create {}", config.work_dir().display()))?;
    let mut transcript = String::new();
    let mut already = installed();
    if !python.is_file() {
        already.clear();
        let mut create = Command::new(&config.python.interpreter);
        create.arg("-m").arg("venv");
        if venv.exists() {
            create.arg("--clear");
        }
        create.arg(&venv).current_dir(&config.root);
        let run = run_captured(create, PIP_TIMEOUT, None)
            .await
            .with_context(|| {
                format!(
                    "cannot run `{} -m venv` (key `python.interpreter`)",
                    config.python.interpreter
                )
            })?;
        transcript.push_str(&run.output);
        if !run.succeeded() {
            let _ = std::fs::write(&log, &transcript);
            anyhow::bail!(
                "`{} -m venv {}` failed ({}); see {}:\n{}",
                config.python.interpreter,
                venv.display(),
                run.describe(),
                log.display(),
                junit::keep_tail(&transcript, 4096)
            );
        }
    }
    let _ = std::fs::remove_file(&stamp);
    if !files.is_empty() {
        let mut pip = Command::new(&python);
        pip.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]);
        for file in &files {
            pip.arg("-r").arg(file);
        }
        pip.current_dir(&config.root);
        let run = run_captured(pip, PIP_TIMEOUT, None)
            .await
            .context("cannot run pip")?;
        transcript.push_str(&run.output);
        let _ = std::fs::write(&log, &transcript);
        if !run.succeeded() {
            anyhow::bail!(
                "pip could not install {} ({}); see {}:\n{}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                run.describe(),
                log.display(),
                junit::keep_tail(&transcript, 4096)
            );
        }
    }
    already.extend(digests);
    let lines: Vec<String> = already.into_iter().collect();
    std::fs::write(&stamp, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(ready(false))
}

fn requirements_digests(interpreter: &str, files: &[PathBuf]) -> anyhow::Result<BTreeSet<String>> {
    let mut digests = BTreeSet::new();
    for file in files {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read requirements {}", file.display()))?;
        // Contents only: the same files elsewhere (a copy of the repository) need no reinstall.
        let mut hash = Fnv::new();
        hash.write(interpreter.as_bytes());
        hash.write(b"\0");
        hash.write(&bytes);
        digests.insert(format!("{:016x}", hash.0));
    }
    Ok(digests)
}

/// FNV-1a, 64 bits: stable across builds and platforms, and easy to repeat in Python.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

/// The shard (1-based) a test belongs to when the cases are split `count` ways.
pub fn shard_of(test_id: &str, count: u32) -> u32 {
    let mut hash = Fnv::new();
    hash.write(test_id.as_bytes());
    (hash.0 % u64::from(count.max(1))) as u32 + 1
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock {
    file: std::fs::File,
}

impl FileLock {
    async fn acquire(path: &Path, deadline: Duration) -> anyhow::Result<FileLock> {
        use std::os::fd::AsRawFd;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let started = Instant::now();
        loop {
            // SAFETY: flock on a descriptor we own; LOCK_NB never blocks.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(FileLock { file });
            }
            if started.elapsed() > deadline {
                anyhow::bail!(
                    "waited {}s for {} (another harness is installing the venv)",
                    deadline.as_secs(),
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

// ---------------------------------------------------------------------------------------------
// Processes: own group, captured output, deadline, nothing left behind.

/// Kills a process group when dropped (SIGTERM now, SIGKILL after [`KILL_GRACE`] from a thread),
/// unless [`GroupGuard::finish`] already did.
pub struct GroupGuard {
    /// None when the child had no pid: never signal group 0 (that is our own group).
    pgid: Option<libc::pid_t>,
    done: bool,
}

impl GroupGuard {
    fn new(pid: Option<u32>) -> GroupGuard {
        GroupGuard {
            pgid: pid
                .and_then(|pid| libc::pid_t::try_from(pid).ok())
                .filter(|pid| *pid > 1),
            done: false,
        }
    }

    fn signal(&self, signal: libc::c_int) {
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg on the group this guard's child leads; ESRCH (gone) is fine.
            unsafe { libc::killpg(pgid, signal) };
        }
    }

    /// After the leader exited: kills what it left behind in its group.
    fn finish(&mut self) {
        self.signal(libc::SIGKILL);
        self.done = true;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.signal(libc::SIGTERM);
        let Some(pgid) = self.pgid else {
            return;
        };
        let killer = std::thread::spawn(move || {
            std::thread::sleep(KILL_GRACE);
            // SAFETY: as above; the group is ours and, if already gone, this is ESRCH.
            unsafe { libc::killpg(pgid, libc::SIGKILL) };
        });
        PENDING_KILLS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(killer);
    }
}

/// The SIGKILLs that dropped guards still have to send.
static PENDING_KILLS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits (at most [`KILL_GRACE`]) until every dropped suite's group got its SIGKILL. The gate
/// calls this before exiting after an interruption, so that a suite ignoring SIGTERM does not
/// outlive the harness.
pub fn finish_pending_kills() {
    let pending = std::mem::take(&mut *PENDING_KILLS.lock().unwrap_or_else(|e| e.into_inner()));
    for killer in pending {
        let _ = killer.join();
    }
}

/// A finished (or killed) process: its status and the tail of stdout and stderr together.
struct Captured {
    status: Option<ExitStatus>,
    output: String,
    timed_out: bool,
}

impl Captured {
    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    fn describe(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        match self.status {
            _ if self.timed_out => "timed out".to_owned(),
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "ended".to_owned(),
            },
            None => "did not end".to_owned(),
        }
    }
}

/// Keeps the last bytes written to it.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * OUTPUT_TAIL {
            let cut = self.bytes.len() - OUTPUT_TAIL;
            self.bytes.drain(..cut);
            self.dropped += cut;
        }
    }
    fn text(&self) -> String {
        let text = junit::lossy(&self.bytes);
        let text = junit::keep_tail(&text, OUTPUT_TAIL);
        if self.dropped > 0 && !text.starts_with("[output cut") {
            format!(
                "[output cut: {} earlier bytes dropped]\n{text}",
                self.dropped
            )
        } else {
            text
        }
    }
}

/// Runs `command` in its own process group with stdin closed, stdout and stderr captured (and
/// copied to `log` when given), until it exits or `deadline` passes. On the deadline the group
/// gets SIGINT (pytest and nextest then write their reports), SIGTERM after [`INTERRUPT_GRACE`]
/// and SIGKILL after [`KILL_GRACE`]. Whatever the group left running is killed once the leader has exited.
async fn run_captured(
    mut command: Command,
    deadline: Duration,
    log: Option<&Path>,
) -> anyhow::Result<Captured> {
    command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let mut guard = GroupGuard::new(child.id());
    let tail = Arc::new(Mutex::new(Tail::default()));
    let log_file = log.and_then(|path| std::fs::File::create(path).ok());
    let log_file = Arc::new(Mutex::new(log_file));
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>);
    for mut stream in [stdout, stderr].into_iter().flatten() {
        let tail = tail.clone();
        let log_file = log_file.clone();
        readers.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        tail.lock().unwrap().push(&buffer[..n]);
                        if let Some(file) = log_file.lock().unwrap().as_mut() {
                            use std::io::Write;
                            let _ = file.write_all(&buffer[..n]);
                        }
                    }
                }
            }
        }));
    }

    let mut timed_out = false;
    let status = match tokio::time::timeout(deadline, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            timed_out = true;
            let mut status = None;
            for (signal, grace) in [
                (libc::SIGINT, INTERRUPT_GRACE),
                (libc::SIGTERM, KILL_GRACE),
                (libc::SIGKILL, KILL_GRACE),
            ] {
                guard.signal(signal);
                if let Ok(ended) = tokio::time::timeout(grace, child.wait()).await {
                    status = ended.ok();
                    break;
                }
            }
            status
        }
    };
    guard.finish();
    // A grandchild that escaped the group may still hold the pipes: do not wait for it forever.
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout(KILL_GRACE, reader).await.is_err() {
            abort.abort();
        }
    }
    let output = tail.lock().unwrap().text();
    Ok(Captured {
        status,
        output,
        timed_out,
    })
}

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
        let path = std::env::var("PATH").unwrap_or_default();
        vars.push((
            "PATH".to_owned(),
            format!("{}:{path}", py.venv.join("bin").display()),
        ));
    }
    vars.extend(suite.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

fn command_line(program: &Path, args: &[String]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            line.push_str(&format!("{arg:?}"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

// ---------------------------------------------------------------------------------------------
// Running a suite.

/// Runs one suite under its deadline (`timeout_s`) and returns its cases. pytest needs `py`.
pub async fn run_suite(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    shard: Option<Shard>,
) -> SuiteResult {
    let started = Instant::now();
    let mut result = match suite.runner {
        Runner::Pytest => match py {
            Some(py) => run_pytest(config, suite, env, py, shard, Mode::Run).await,
            None => errored(suite, "pytest suite run without a Python environment", ""),
        },
        Runner::Nextest => run_nextest(config, suite, env, shard).await,
    };
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
    let listed = match suite.runner {
        Runner::Pytest => match py {
            Some(py) => {
                let result = run_pytest(config, suite, env, py, shard, Mode::Collect).await;
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Run,
    Collect,
}

/// The pytest plugin the harness adds (`-p xtask_pytest`): it records every collected test with
/// its markers before any deselection, and keeps only this shard's tests. The hash is the same
/// FNV-1a as [`shard_of`].
const PYTEST_PLUGIN: &str = r#""""Written by `cargo xtask`: records the collected tests, selects this shard."""
import json
import os

import pytest


def _fnv1a(text):
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    record = os.environ.get("XTASK_PYTEST_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as out:
            for item in items:
                markers = sorted({mark.name for mark in item.iter_markers()})
                out.write(json.dumps({"nodeid": item.nodeid, "markers": markers}) + "\n")
    shard = os.environ.get("XTASK_PYTEST_SHARD")
    if shard:
        index, count = (int(part) for part in shard.split("/"))
        keep = [item for item in items if _fnv1a(item.nodeid) % count == index - 1]
        drop = [item for item in items if _fnv1a(item.nodeid) % count != index - 1]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
"#;

/// A test pytest collected.
#[derive(Debug, Clone, serde::Deserialize)]
struct Collected {
    nodeid: String,
    markers: Vec<String>,
}

/// pytest's JUnit classname and name for a node id (as its `mangle_test_address` does):
/// `tests/test_a.py::TestX::test_y[1]` → (`tests.test_a.TestX`, `test_y[1]`).
pub fn pytest_case_name(nodeid: &str) -> (String, String) {
    let (path, params) = match nodeid.find('[') {
        Some(at) => (&nodeid[..at], &nodeid[at..]),
        None => (nodeid, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    names[0] = names[0].replace('/', ".");
    if let Some(stripped) = names[0].strip_suffix(".py") {
        names[0] = stripped.to_owned();
    }
    let last = names.pop().unwrap_or_default() + params;
    (names.join("."), last)
}

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

async fn run_pytest(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: &PythonEnv,
    shard: Option<Shard>,
    mode: Mode,
) -> SuiteResult {
    let deadline = match mode {
        Mode::Run => suite.timeout_s.duration(),
        Mode::Collect => COLLECT_TIMEOUT.min(suite.timeout_s.duration()),
    };
    let dir = results_dir(config, env);
    let plugin_dir = config.work_dir().join("pytest");
    let stem = file_stem(suite, shard);
    let junit_path = dir.join(format!("{stem}.xml"));
    let record_path = dir.join(format!("{stem}.collected.jsonl"));
    let prepared = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let plugin = plugin_dir.join("xtask_pytest.py");
        if std::fs::read_to_string(&plugin).ok().as_deref() != Some(PYTEST_PLUGIN) {
            crate::state::write_atomic(&plugin, PYTEST_PLUGIN.as_bytes())?;
        }
        for stale in [&junit_path, &record_path] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        return errored(
            suite,
            format!("cannot prepare {}: {e:#}", dir.display()),
            "",
        );
    }

    let mut args: Vec<String> = vec!["-m".into(), "pytest".into()];
    args.extend(suite.args.iter().cloned());
    args.extend(
        ["-p", "no:cacheprovider", "-p", "xtask_pytest", "-q"]
            .iter()
            .map(|s| s.to_string()),
    );
    match mode {
        Mode::Run => {
            args.push(format!("--junitxml={}", junit_path.display()));
            // Failing tests keep their captured output in the report.
            args.extend(
                [
                    "-o",
                    "junit_logging=all",
                    "-o",
                    "junit_log_passing_tests=false",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
            if !env.skip_markers.is_empty() {
                let expression = env
                    .skip_markers
                    .iter()
                    .map(|m| format!("not {m}"))
                    .collect::<Vec<_>>()
                    .join(" and ");
                args.push("-m".into());
                args.push(expression);
            }
        }
        Mode::Collect => args.push("--collect-only".into()),
    }

    let mut command = Command::new(&py.python);
    command.args(&args).current_dir(&config.root);
    command.envs(child_env(suite, env, Some(py)));
    let python_path = match std::env::var("PYTHONPATH") {
        Ok(existing) if !existing.is_empty() => format!("{}:{existing}", plugin_dir.display()),
        _ => plugin_dir.display().to_string(),
    };
    command.env("PYTHONPATH", python_path);
    command.env("XTASK_PYTEST_RECORD", &record_path);
    match shard {
        Some(shard) => command.env(
            "XTASK_PYTEST_SHARD",
            format!("{}/{}", shard.index, shard.count),
        ),
        None => command.env_remove("XTASK_PYTEST_SHARD"),
    };
    let line = command_line(&py.python, &args);
    let run = match run_captured(command, deadline, None).await {
        Ok(run) => run,
        Err(e) => return errored(suite, format!("cannot run `{line}`: {e}"), ""),
    };
    let output = format!("$ {line}\n{}", run.output);

    let collected: Vec<Collected> = std::fs::read_to_string(&record_path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let in_shard = |nodeid: &str| shard.is_none_or(|s| shard_of(nodeid, s.count) == s.index);
    let marked = |item: &Collected| {
        env.skip_markers
            .iter()
            .find(|m| item.markers.iter().any(|have| have == *m))
            .cloned()
    };

    let mut result = SuiteResult::new(&suite.name);
    if mode == Mode::Collect {
        if !run.succeeded() && run.code() != Some(5) {
            result.error = Some(format!("collection failed ({})", run.describe()));
            result.output = Some(output);
            return result;
        }
        result.cases = collected
            .iter()
            .filter(|item| in_shard(&item.nodeid))
            .map(|item| {
                let (classname, name) = pytest_case_name(&item.nodeid);
                Case::skipped(classname, name, "")
            })
            .collect();
        return result;
    }

    let mut cases = match std::fs::read_to_string(&junit_path) {
        Ok(xml) => match junit::parse_cases(&xml) {
            Ok(cases) => cases,
            Err(e) => {
                result.error = Some(format!("cannot read {}: {e:#}", junit_path.display()));
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    };
    let seen: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.classname.clone(), c.name.clone()))
        .collect();
    // Tests deselected by marker: reported skipped, with the reason.
    for item in collected.iter().filter(|item| in_shard(&item.nodeid)) {
        let (classname, name) = pytest_case_name(&item.nodeid);
        if seen.contains(&(classname.clone(), name.clone())) {
            continue;
        }
        let reason = match marked(item) {
            Some(marker) => format!("deselected on the {} target: marked `{marker}`", env.target),
            None if run.timed_out => {
                format!(
                    "not finished: the suite timed out after {}s",
                    deadline.as_secs()
                )
            }
            None => continue,
        };
        cases.push(Case::skipped(classname, name, reason));
    }
    let has_error_case = cases
        .iter()
        .any(|c| matches!(c.status, Status::Error { .. }));
    let has_failure = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    let xml_exists = junit_path.is_file();
    result.cases = cases;

    let problem = if run.timed_out {
        Some(format!("timed out after {}s", deadline.as_secs()))
    } else {
        match run.code() {
            Some(0) => None,
            Some(1) if has_failure => None,
            Some(1) => Some("pytest exited with code 1 but reported no failing test".to_owned()),
            // Exit 5: nothing collected. Tests deselected by marker or shard are not "nothing".
            Some(5) if !collected.is_empty() || suite.allow_empty => None,
            Some(5) => Some(
                "no tests collected (pytest exit code 5); set `allow_empty = true` if that is expected"
                    .to_owned(),
            ),
            Some(2) if has_error_case => None,
            Some(2) => Some("pytest was interrupted (exit code 2): collection or usage error".to_owned()),
            Some(3) => Some("pytest hit an internal error (exit code 3)".to_owned()),
            Some(4) => Some("pytest usage error (exit code 4): check the suite's `args`".to_owned()),
            Some(code) => Some(format!("pytest exited with code {code}")),
            None => Some(format!("pytest {}", run.describe())),
        }
    };
    let problem = problem.or_else(|| {
        (!xml_exists && run.code() != Some(5))
            .then(|| format!("pytest wrote no JUnit file ({})", run.describe()))
    });
    if let Some(problem) = problem {
        add_error(&mut result, problem);
    }
    result.output = Some(output);
    result
}

/// Puts `problem` in front of any error the suite already has.
fn add_error(result: &mut SuiteResult, problem: String) {
    result.error = Some(match result.error.take() {
        Some(earlier) => format!("{problem}; {earlier}"),
        None => problem,
    });
}

/// A test nextest listed.
#[derive(Debug, Clone)]
struct Listed {
    binary_id: String,
    name: String,
    ignored: bool,
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

async fn nextest_list(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    shard: Option<Shard>,
    deadline: Duration,
) -> Result<Vec<Listed>, (String, String)> {
    let mut args: Vec<String> = vec![
        "nextest".into(),
        "list".into(),
        "--message-format".into(),
        "json".into(),
    ];
    args.extend(suite.args.iter().cloned());
    args.push("--run-ignored".into());
    args.push("all".into());
    if let Some(shard) = shard {
        args.push("--partition".into());
        args.push(format!("hash:{}/{}", shard.index, shard.count));
    }
    let line = command_line(&cargo(), &args);
    let mut command = Command::new(cargo());
    command
        .args(&args)
        .current_dir(&config.root)
        .envs(child_env(suite, env, None))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let child = command
        .spawn()
        .map_err(|e| (format!("cannot run `{line}`: {e}"), String::new()))?;
    let mut guard = GroupGuard::new(child.id());
    let output = match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err((format!("cannot run `{line}`: {e}"), String::new())),
        Err(_) => {
            return Err((
                format!("`{line}` did not finish within {}s", deadline.as_secs()),
                String::new(),
            ))
        }
    };
    guard.finish();
    let stderr = format!(
        "$ {line}\n{}",
        junit::keep_tail(&junit::lossy(&output.stderr), OUTPUT_TAIL)
    );
    if !output.status.success() {
        return Err((format!("`{line}` failed ({})", output.status), stderr));
    }
    let summary: nextest_metadata::TestListSummary = serde_json::from_slice(&output.stdout)
        .map_err(|e| {
            (
                format!("cannot read the output of `{line}`: {e}"),
                stderr.clone(),
            )
        })?;
    let mut tests = Vec::new();
    for (binary_id, binary) in &summary.rust_suites {
        for (name, case) in &binary.test_cases {
            // Listed with `--run-ignored all`, so that ignored tests (of this shard) are known
            // and reported skipped rather than missing.
            if case.filter_match.is_match() {
                tests.push(Listed {
                    binary_id: binary_id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    ignored: case.ignored,
                });
            }
        }
    }
    Ok(tests)
}

/// Where a suite's results go: per run, so that two gates on one machine (isolated stacks) do not
/// overwrite each other's.
fn results_dir(config: &Config, env: &SuiteEnv) -> PathBuf {
    crate::stack::run_dir(config, &env.run_id).join("suites")
}

async fn run_nextest(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    shard: Option<Shard>,
) -> SuiteResult {
    let started = Instant::now();
    let deadline = suite.timeout_s.duration();
    let dir = results_dir(config, env);
    let stem = file_stem(suite, shard);
    let junit_path = std::path::absolute(dir.join(format!("{stem}.xml")))
        .unwrap_or_else(|_| dir.join(format!("{stem}.xml")));
    let tool_config = std::path::absolute(dir.join(format!("{stem}.nextest.toml")))
        .unwrap_or_else(|_| dir.join(format!("{stem}.nextest.toml")));
    let prepared = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(&junit_path);
        let toml = format!(
            "# Written by `cargo xtask` for suite `{}`.\n[profile.xtask]\nfail-fast = false\n\n[profile.xtask.junit]\npath = {:?}\nreport-name = {:?}\nstore-success-output = false\nstore-failure-output = true\n",
            suite.name,
            junit_path.display().to_string(),
            suite.name
        );
        crate::state::write_atomic(&tool_config, toml.as_bytes())?;
        Ok(())
    })();
    if let Err(e) = prepared {
        return errored(
            suite,
            format!("cannot prepare {}: {e:#}", dir.display()),
            "",
        );
    }

    let listed = match nextest_list(config, suite, env, shard, deadline).await {
        Ok(listed) => listed,
        Err((error, output)) => {
            return errored(suite, format!("cannot list the tests: {error}"), &output)
        }
    };
    let remaining = deadline.saturating_sub(started.elapsed());

    let mut args: Vec<String> = vec![
        "nextest".into(),
        "run".into(),
        "--tool-config-file".into(),
        format!("xtask:{}", tool_config.display()),
        "--profile".into(),
        "xtask".into(),
    ];
    args.extend(suite.args.iter().cloned());
    if let Some(shard) = shard {
        args.push("--partition".into());
        args.push(format!("hash:{}/{}", shard.index, shard.count));
    }
    let empty_is_fine = suite.allow_empty || shard.is_some();
    args.push(format!(
        "--no-tests={}",
        if empty_is_fine { "pass" } else { "fail" }
    ));
    let line = command_line(&cargo(), &args);
    let mut command = Command::new(cargo());
    command
        .args(&args)
        .current_dir(&config.root)
        .envs(child_env(suite, env, None));
    let run = match run_captured(command, remaining, None).await {
        Ok(run) => run,
        Err(e) => return errored(suite, format!("cannot run `{line}`: {e}"), ""),
    };
    let output = format!("$ {line}\n{}", run.output);

    let mut result = SuiteResult::new(&suite.name);
    let mut cases = match std::fs::read_to_string(&junit_path) {
        Ok(xml) => junit::parse_cases(&xml).unwrap_or_else(|e| {
            result.error = Some(format!("cannot read {}: {e:#}", junit_path.display()));
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    let seen: BTreeSet<String> = cases.iter().map(|c| c.name.clone()).collect();
    for test in &listed {
        if seen.contains(&test.name) {
            continue;
        }
        let reason = if test.ignored {
            "ignored (the test is marked `ignore`)".to_owned()
        } else if run.timed_out {
            format!(
                "not finished: the suite timed out after {}s",
                deadline.as_secs()
            )
        } else if !run.succeeded() {
            format!("not run: cargo nextest run ended ({})", run.describe())
        } else {
            continue;
        };
        cases.push(Case::skipped(&test.binary_id, &test.name, reason));
    }
    let has_failure = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    result.cases = cases;
    use nextest_metadata::NextestExitCode as Code;
    let problem = if run.timed_out {
        Some(format!("timed out after {}s", deadline.as_secs()))
    } else {
        match run.code() {
            Some(Code::OK) => None,
            Some(Code::TEST_RUN_FAILED) if has_failure => None,
            Some(Code::NO_TESTS_RUN) => Some(
                "no tests to run (nextest exit code 4); set `allow_empty = true` if that is expected"
                    .to_owned(),
            ),
            Some(Code::BUILD_FAILED) => Some("the tests did not build (nextest exit code 101)".to_owned()),
            Some(code) => Some(format!("cargo nextest run exited with code {code}")),
            None => Some(format!("cargo nextest run {}", run.describe())),
        }
    };
    if let Some(problem) = problem {
        add_error(&mut result, problem);
    }
    result.output = Some(output);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_names_follow_mangle_test_address() {
        assert_eq!(
            pytest_case_name("tests/e2e/test_a.py::TestX::test_y[a/b::c]"),
            (
                "tests.e2e.test_a.TestX".to_owned(),
                "test_y[a/b::c]".to_owned()
            )
        );
        assert_eq!(
            pytest_case_name("test_b.py::test_z"),
            ("test_b".to_owned(), "test_z".to_owned())
        );
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        // The same FNV-1a as the pytest plugin: fnv1a("a") = 0xaf63dc4c8601ec8c.
        assert_eq!(
            shard_of("a", 1 << 31),
            (0xaf63dc4c8601ec8c_u64 % (1 << 31)) as u32 + 1
        );
        for id in ["x", "y::z", "tests/t.py::test_1"] {
            let shard = shard_of(id, 3);
            assert!((1..=3).contains(&shard));
            assert_eq!(shard, shard_of(id, 3));
        }
    }

    #[test]
    fn tail_keeps_the_end() {
        let mut tail = Tail::default();
        for _ in 0..10 {
            tail.push(&vec![b'a'; OUTPUT_TAIL / 2]);
        }
        tail.push(b"END");
        let text = tail.text();
        assert!(text.ends_with("aEND"));
        assert!(text.starts_with("[output cut"), "{}", &text[..80]);
    }
}
