//! Retries (`--retries N`, `[[suite]] retries`) and quarantine (`[[suite]] quarantine`).
//!
//! A pytest suite's failed tests are run again right after the run they failed in, by the same
//! worker of the plan (its `XTASK_WORKER`, its place in the schedule: a serial-marker test that ran
//! alone is run again alone, since nothing else starts before its worker ends), on the same stack,
//! within what is left of the suite's deadline: a new pytest process with only those node ids, up
//! to N times. A test that then passes is a pass and flaky; its earlier failures are its
//! [`Rerun`]s. No retry once the run was interrupted or asked to stop (the engine is lost: an
//! infrastructure error, not a flaky test). nextest retries its own tests (`retries` in the
//! profile the harness writes, [super::nextest]); its JUnit file carries the reruns.
//!
//! Quarantined tests run and are reported as they ended; their failure does not fail the suite
//! ([`SuiteResult::passed`]).
//!
//! Not here: reading the reruns into JUnit ([crate::junit]), the history of flaky tests
//! ([crate::history]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::{case_key, results_dir, run_once, run_stem, Mode, PythonEnv, SuiteEnv, SuiteRun};
#[cfg(test)]
use crate::config::matches_pattern;
use crate::config::{Config, Runner, SuiteCfg};
use crate::junit::{self, Case, Rerun, Status, SuiteResult, OUTPUT_LIMIT};

/// Below this much of the suite's deadline left, a retry is not started.
const LEAST_TIME_FOR_A_RETRY: Duration = Duration::from_secs(1);

/// How often a failed test of this suite is run again: `--retries`, else the suite's `retries`.
pub fn retries_of(suite: &SuiteCfg, env: &SuiteEnv) -> u32 {
    env.retries.unwrap_or(suite.retries)
}

/// Runs the failed tests of `first` again, as often as the suite's retries allow or until none
/// fails, and folds each new attempt into the result.
pub(super) async fn retry_failed(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    run: &SuiteRun,
    first: SuiteResult,
) -> SuiteResult {
    let retries = retries_of(suite, env);
    let mut result = first;
    if suite.runner != Runner::Pytest || retries == 0 {
        return result;
    }
    let budget = run.deadline.unwrap_or_else(|| suite.timeout_s.duration());
    for attempt in 1..=retries {
        let stopped = env
            .stop
            .as_ref()
            .is_some_and(|stop| stop.reason().is_some());
        if result.interrupted || stopped {
            break;
        }
        let ids = failed_ids(&result);
        let left = budget.saturating_sub(result.duration);
        if ids.is_empty() || left < LEAST_TIME_FOR_A_RETRY {
            break;
        }
        let again = SuiteRun {
            shard: run.shard,
            extra_args: run.extra_args.clone(),
            live: run.live.clone(),
            repo_root: run.repo_root.clone(),
            only: Some(ids),
            worker: run.worker.clone(),
            threads: run.threads,
            deadline: Some(left),
            wait: None,
            queue: None,
            attempt,
        };
        let rerun = run_once(config, suite, env, py, &again).await;
        keep_log(config, env, suite, run, &again);
        fold(&mut result, rerun, attempt);
    }
    result
}

/// The runner's ids of the tests that failed (those it can select again).
fn failed_ids(result: &SuiteResult) -> Vec<String> {
    result
        .cases
        .iter()
        .filter(|case| case.failing())
        .filter_map(|case| result.ids.get(&case_key(&case.classname, &case.name)))
        .cloned()
        .collect()
}

/// Folds a rerun into the result: each failed test that ran again takes the new attempt's
/// status, its failure before becomes a [`Rerun`]; the suite's time and output grow by the
/// rerun's. A test the rerun did not run (skipped, missing) stays as it was.
fn fold(result: &mut SuiteResult, rerun: SuiteResult, attempt: u32) {
    let ran: BTreeMap<String, Case> = rerun
        .cases
        .into_iter()
        .filter(|case| !matches!(case.status, Status::Skipped { .. }))
        .map(|case| (case_key(&case.classname, &case.name), case))
        .collect();
    for case in result.cases.iter_mut().filter(|case| case.failing()) {
        let Some(new) = ran.get(&case_key(&case.classname, &case.name)) else {
            continue;
        };
        let mut reruns: Vec<Rerun> = std::mem::take(&mut case.reruns);
        reruns.extend(case.as_rerun());
        *case = Case {
            reruns,
            ..new.clone()
        };
    }
    result.duration += rerun.duration;
    result.interrupted |= rerun.interrupted;
    if let Some(error) = rerun.error {
        result
            .error
            .get_or_insert_with(|| format!("retry {attempt}: {error}"));
    }
    if let Some(output) = rerun.output {
        let before = result.output.take().unwrap_or_default();
        result.output = Some(junit::keep_tail(
            &format!("{before}\n=== retry {attempt} ===\n{output}"),
            OUTPUT_LIMIT,
        ));
    }
}

/// Appends a rerun's log to the log of the run it repeats, so that the suite keeps one log.
fn keep_log(config: &Config, env: &SuiteEnv, suite: &SuiteCfg, run: &SuiteRun, again: &SuiteRun) {
    let dir = results_dir(config, env);
    let log = dir.join(format!("{}.log", run_stem(suite, run, Mode::Run)));
    let rerun_log = dir.join(format!("{}.log", run_stem(suite, again, Mode::Run)));
    let Ok(text) = std::fs::read(&rerun_log) else {
        return;
    };
    let mut joined = std::fs::read(&log).unwrap_or_default();
    if !joined.is_empty() && !joined.ends_with(b"\n") {
        joined.push(b'\n');
    }
    joined.extend_from_slice(format!("=== xtask: retry {} ===\n", again.attempt).as_bytes());
    joined.extend(text);
    if crate::state::write_atomic(&log, &joined).is_ok() {
        let _ = std::fs::remove_file(rerun_log);
    }
}

/// Marks the cases its suite's `quarantine` names (by `classname::name`, by name, or by the
/// runner's id).
pub(super) fn mark_quarantined(suite: &SuiteCfg, result: &mut SuiteResult) {
    if suite.quarantine.is_empty() {
        return;
    }
    for case in &mut result.cases {
        let key = case_key(&case.classname, &case.name);
        let id = result.ids.get(&key);
        case.quarantined = suite.quarantined(&key)
            || suite.quarantined(&case.name)
            || id.is_some_and(|id| suite.quarantined(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_stands_for_any_run_of_characters() {
        assert!(matches_pattern(
            "tests.test_a::test_x",
            "tests.test_a::test_x"
        ));
        assert!(!matches_pattern(
            "tests.test_a::test_x",
            "tests.test_a::test_xy"
        ));
        assert!(matches_pattern("*::test_x", "tests.test_a::test_x"));
        assert!(matches_pattern("tests.*", "tests.test_a::test_x"));
        assert!(matches_pattern("*flaky*", "t::test_flaky_thing"));
        assert!(matches_pattern("t*a*a", "tXaYa"));
        assert!(!matches_pattern("t*a*a", "tXa"));
        assert!(!matches_pattern("*::test_x", "tests.test_a::test_y"));
        assert!(matches_pattern("*", ""));
    }

    fn failed(message: &str) -> Status {
        Status::Failed {
            message: message.into(),
            output: String::new(),
        }
    }

    #[test]
    fn a_rerun_that_passes_makes_the_test_flaky_and_one_that_fails_adds_an_attempt() {
        let mut result = SuiteResult::new("e2e");
        result.cases = vec![
            Case::new("t", "flaky", failed("once")),
            Case::new("t", "broken", failed("always")),
            Case::new("t", "steady", Status::Passed),
            Case::new("t", "not_rerun", failed("no id")),
        ];
        for name in ["flaky", "broken", "steady"] {
            result
                .ids
                .insert(case_key("t", name), format!("test_t.py::{name}"));
        }
        assert_eq!(
            failed_ids(&result),
            ["test_t.py::flaky", "test_t.py::broken"]
        );
        let mut rerun = SuiteResult::new("e2e");
        rerun.cases = vec![
            Case::new("t", "flaky", Status::Passed),
            Case::new("t", "broken", failed("again")),
        ];
        fold(&mut result, rerun, 1);
        let by_name = |name: &str| result.cases.iter().find(|c| c.name == name).unwrap();
        assert!(by_name("flaky").flaky());
        assert_eq!(by_name("flaky").reruns[0].status, failed("once"));
        assert_eq!(by_name("broken").attempts(), 2);
        assert_eq!(by_name("broken").status, failed("again"));
        assert_eq!(by_name("steady").attempts(), 1);
        assert_eq!(by_name("not_rerun").attempts(), 1);
        assert!(!result.passed(), "the broken test still fails the suite");
    }

    #[test]
    fn a_quarantined_failure_does_not_fail_the_suite_but_another_does() {
        let mut suite = SuiteCfg {
            quarantine: vec!["*::known_bad".into()],
            ..crate::suites::plan::test_suite("e2e", false)
        };
        let mut result = SuiteResult::new("e2e");
        result.cases = vec![
            Case::new("t", "known_bad", failed("as usual")),
            Case::new("t", "fine", Status::Passed),
        ];
        mark_quarantined(&suite, &mut result);
        assert!(result.cases[0].quarantined && !result.cases[1].quarantined);
        assert!(result.passed());
        assert_eq!(result.counts().failures, 1, "still reported as it ended");
        suite.quarantine = vec!["tests/test_t.py::known_bad".into()];
        result.ids.insert(
            case_key("t", "known_bad"),
            "tests/test_t.py::known_bad".into(),
        );
        mark_quarantined(&suite, &mut result);
        assert!(result.cases[0].quarantined, "named by its node id");
        result
            .cases
            .push(Case::new("t", "new_failure", failed("no")));
        mark_quarantined(&suite, &mut result);
        assert!(!result.passed());
    }
}
