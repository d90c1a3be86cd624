//! The nextest runner: `cargo nextest list` (every test of the suite, ignored ones included, so
//! that what does not run is still reported skipped), then `cargo nextest run` with a tool config
//! that writes JUnit, and reading that report and the exit code into a [`SuiteResult`].
//!
//! Not here: the deadline and the process group ([super::runner] over [crate::process]), the
//! JUnit format itself ([crate::junit]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::live::NextestLines;
use super::runner::{self, command_line, Launch, Live};
use super::{child_env, errored, file_stem, results_dir, SuiteEnv, SuiteRun};
use crate::config::{Config, SuiteCfg};
use crate::flags::Shard;
use crate::junit::{self, Case, Status, SuiteResult, OUTPUT_LIMIT};
use crate::process::{Cmd, Finished};

/// How much of `cargo nextest list`'s stdout is kept: all of it (it is the list, read as JSON),
/// up to a size no real workspace reaches.
const LIST_LIMIT: usize = 256 * 1024 * 1024;

/// A test nextest listed.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub(super) binary_id: String,
    pub(super) name: String,
    ignored: bool,
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// The tests `cargo nextest list` finds for the suite (and shard); on failure, why and the
/// tail of its stderr.
pub(super) async fn nextest_list(
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
    // Split by duration here, after listing them all; by hash, nextest's own partition.
    let by_duration = shard.filter(|_| env.durations.is_some());
    if let Some(shard) = shard.filter(|_| by_duration.is_none()) {
        args.push("--partition".into());
        args.push(format!("hash:{}/{}", shard.index, shard.count));
    }
    let line = command_line(&cargo(), &args);
    // Not a runner with SIGINT first: a listing writes no report worth waiting for.
    let command = Cmd::new(cargo())
        .args(&args)
        .current_dir(&config.root)
        .envs(child_env(suite, env, None))
        .keep_tail(LIST_LIMIT);
    let run = command.output(deadline).await.map_err(|e| {
        (
            format!("cannot run `{line}`: {}", e.root_cause()),
            String::new(),
        )
    })?;
    if run.timed_out {
        return Err((
            format!("`{line}` did not finish within {}s", deadline.as_secs()),
            String::new(),
        ));
    }
    let stderr = format!("$ {line}\n{}", junit::keep_tail(&run.stderr, OUTPUT_LIMIT));
    match run.status {
        Some(status) if status.success() => {}
        Some(status) => return Err((format!("`{line}` failed ({status})"), stderr)),
        None => return Err((format!("`{line}` failed ({})", run.describe()), stderr)),
    }
    let summary: nextest_metadata::TestListSummary =
        serde_json::from_str(&run.stdout).map_err(|e| {
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
    if let (Some(shard), Some(durations)) = (by_duration, env.durations.as_deref()) {
        let keys: Vec<String> = tests
            .iter()
            .map(|t| super::case_key(&t.binary_id, &t.name))
            .collect();
        let shards = durations.assign(&suite.name, &keys, shard.count);
        tests.retain(|t| shards.get(&super::case_key(&t.binary_id, &t.name)) == Some(&shard.index));
    }
    Ok(tests)
}

/// A filterset that selects exactly these tests (`none()` for none).
fn only(tests: &[Listed]) -> String {
    if tests.is_empty() {
        return "none()".to_owned();
    }
    tests
        .iter()
        .map(|t| format!("(binary_id(={}) & test(={}))", t.binary_id, t.name))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Lists, then runs a nextest suite under its deadline (the listing counts against it). With a
/// live sink, nextest prints its `libtest-json-plus` lines on stdout (an experimental format it
/// enables with `NEXTEST_EXPERIMENTAL_LIBTEST_JSON=1`), one per test started and ended.
pub(super) async fn run_nextest(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
) -> SuiteResult {
    let shard = suite_run.shard;
    let started = Instant::now();
    let deadline = suite_run
        .deadline
        .unwrap_or_else(|| suite.timeout_s.duration());
    let dir = results_dir(config, env);
    let stem = file_stem(suite, shard);
    let absolute =
        |name: String| std::path::absolute(dir.join(&name)).unwrap_or_else(|_| dir.join(name));
    let junit_path = absolute(format!("{stem}.xml"));
    let tool_config = absolute(format!("{stem}.nextest.toml"));
    let prepared = runner::prepare(suite, &dir, || {
        write_profile(suite, env, &junit_path, &tool_config)
    });
    if let Some(failed) = prepared {
        return failed;
    }
    if let Some(result) = runs_elsewhere(suite, env, shard) {
        return result;
    }
    let listed = match list_for_turn(config, suite, env, suite_run, deadline, started).await {
        Ok(listed) => listed,
        Err(failed) => return failed,
    };
    let mut vars = Vec::new();
    if suite_run.live.is_some() {
        vars.push(("NEXTEST_EXPERIMENTAL_LIBTEST_JSON", Some("1".into())));
    }
    let lines = NextestLines::default();
    let launch = Launch {
        program: cargo(),
        args: run_args(suite, env, suite_run, &listed, &tool_config),
        py: None,
        vars,
        log: dir.join(format!("{stem}.log")),
        live: Live::Stdout(Box::new(move |line| lines.event(line))),
        deadline: deadline.saturating_sub(started.elapsed()),
    };
    let ran = match runner::launch(config, suite, env, suite_run, launch).await {
        Ok(ran) => ran,
        Err(failed) => return failed,
    };

    let mut result = SuiteResult::new(&suite.name);
    let mut cases = ran.report(&junit_path, &mut result);
    let seen: BTreeSet<String> = cases.iter().map(|c| c.name.clone()).collect();
    for test in listed.iter().filter(|test| !seen.contains(&test.name)) {
        let reason = if test.ignored {
            "ignored (the test is marked `ignore`)".to_owned()
        } else if let Some(reason) = ran.cut_short(deadline, env) {
            reason
        } else if !ran.run.success() {
            format!("not run: cargo nextest run ended ({})", ran.run.describe())
        } else if !suite_run.extra_args.is_empty() {
            format!(
                "deselected by the arguments `{}`",
                suite_run.extra_args.join(" ")
            )
        } else {
            continue;
        };
        cases.push(Case::skipped(&test.binary_id, &test.name, reason));
    }
    let problem = ran.problem(deadline, |run| exit_problem(run, &cases));
    result.cases = cases;
    ran.finish(result, problem)
}

/// Writes the tool config of the run: the `xtask` profile, which writes JUnit to `junit_path`
/// (removed first: what an earlier run left is not this run's).
fn write_profile(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    junit_path: &Path,
    tool_config: &Path,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(junit_path);
    // nextest runs a failed test again itself, and its JUnit file carries the reruns.
    let toml = format!(
        "# Written by `cargo xtask` for suite `{}`.\n[profile.xtask]\nfail-fast = false\nretries = {}\n\n[profile.xtask.junit]\npath = {:?}\nreport-name = {:?}\nstore-success-output = false\nstore-failure-output = true\n",
        suite.name,
        super::retries_of(suite, env),
        junit_path.display().to_string(),
        suite.name
    );
    crate::state::write_atomic(tool_config, toml.as_bytes())?;
    Ok(())
}

/// Kept whole on another shard (its tests overlap, [super::shard]): the result of this shard,
/// nothing of it, known without listing it.
fn runs_elsewhere(suite: &SuiteCfg, env: &SuiteEnv, shard: Option<Shard>) -> Option<SuiteResult> {
    let shard = shard?;
    let whole = *env
        .durations
        .as_deref()?
        .plan(shard.count)
        .whole
        .get(&suite.name)?;
    if whole == shard.index {
        return None;
    }
    let mut result = SuiteResult::new(&suite.name);
    result.started = Some(std::time::SystemTime::now());
    result.output = Some(format!(
        "not run in shard {}/{}: the suite runs whole in shard {whole}/{} (its tests overlap, so its recorded times do not split)\n",
        shard.index, shard.count, shard.count
    ));
    Some(result)
}

/// The suite's tests, listed; for a worker started ahead of its turn, once its turn came.
/// `Err`: the suite's result when they could not be listed or the turn did not come in time.
async fn list_for_turn(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
    deadline: Duration,
    started: Instant,
) -> Result<Vec<Listed>, SuiteResult> {
    let listed = match nextest_list(config, suite, env, suite_run.shard, deadline).await {
        Ok(listed) => listed,
        Err((error, output)) => {
            return Err(errored(
                suite,
                format!("cannot list the tests: {error}"),
                &output,
            ))
        }
    };
    let Some(go) = &suite_run.wait else {
        return Ok(listed);
    };
    // A worker started ahead of its turn: listed, it waits for the harness's word.
    if super::wait_for_turn(go, deadline.saturating_sub(started.elapsed())).await {
        return Ok(listed);
    }
    let mut result = errored(
        suite,
        format!("timed out after {}s before its turn", deadline.as_secs()),
        "",
    );
    result.cases = listed
        .iter()
        .map(|t| {
            Case::skipped(
                &t.binary_id,
                &t.name,
                "not run: the suite timed out before its turn",
            )
        })
        .collect();
    Err(result)
}

/// `cargo nextest run`'s arguments: the `xtask` profile of `tool_config`, the suite's and the
/// run's arguments, the shard, live lines, threads, and whether no tests is fine.
fn run_args(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
    listed: &[Listed],
    tool_config: &Path,
) -> Vec<String> {
    let shard = suite_run.shard;
    let mut args: Vec<String> = vec![
        "nextest".into(),
        "run".into(),
        "--tool-config-file".into(),
        format!("xtask:{}", tool_config.display()),
        "--profile".into(),
        "xtask".into(),
    ];
    args.extend(suite.args.iter().cloned());
    args.extend(suite_run.extra_args.iter().cloned());
    match shard {
        // The listing kept this shard's tests, split by duration.
        Some(_) if env.durations.is_some() => {
            args.push("-E".into());
            args.push(only(listed));
        }
        Some(shard) => {
            args.push("--partition".into());
            args.push(format!("hash:{}/{}", shard.index, shard.count));
        }
        None => {}
    }
    if suite_run.live.is_some() {
        args.extend(["--message-format".into(), "libtest-json-plus".into()]);
    }
    if let Some(threads) = suite_run.threads {
        args.extend(["--test-threads".into(), threads.to_string()]);
    }
    // Arguments may leave every test out (`-- some_filter` matching none): not an error then.
    let empty_is_fine = suite.allow_empty || shard.is_some() || !suite_run.extra_args.is_empty();
    args.push(format!(
        "--no-tests={}",
        if empty_is_fine { "pass" } else { "fail" }
    ));
    args
}

/// What `cargo nextest run`'s end means for the suite, when it ran to its end.
fn exit_problem(run: &Finished, cases: &[Case]) -> Option<String> {
    use nextest_metadata::NextestExitCode as Code;
    let has_failure = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    match run.code() {
        Some(Code::OK) => None,
        Some(Code::TEST_RUN_FAILED) if has_failure => None,
        Some(Code::NO_TESTS_RUN) => Some(
            "no tests to run (nextest exit code 4); set `allow_empty = true` if that is expected"
                .to_owned(),
        ),
        Some(Code::BUILD_FAILED) => {
            Some("the tests did not build (nextest exit code 101)".to_owned())
        }
        Some(code) => Some(format!("cargo nextest run exited with code {code}")),
        None => Some(format!("cargo nextest run {}", run.describe())),
    }
}
