//! Retries and quarantine against the fixture project's pytest suites (`flaky`, `hopeless`,
//! `flaky_parallel`): a test that fails on every other attempt passes on its retry and is
//! flaky, one that always fails is run as often as allowed, `--retries` wins over the suite's
//! `retries`, a plan's worker retries its own tests, and a destructive test's retry runs alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use stackgate::config::{SuiteCfg, TargetKind};
use stackgate::junit::SuiteResult;
use stackgate::suites::{self, Durations, Hooks, SuiteRun, TestEvent};

use crate::suites::{assert_reportable, case, env, project, Project};

/// The suite `name` of the fixture project, counting its attempts in `dir`.
fn counted(project: &Project, name: &str, dir: &std::path::Path) -> SuiteCfg {
    let mut suite = project.suite(name);
    suite
        .env
        .insert("FLAKY_DIR".into(), dir.display().to_string());
    suite
}

fn attempts(result: &SuiteResult) -> BTreeMap<String, (u32, bool)> {
    result
        .cases
        .iter()
        .map(|c| (c.name.clone(), (c.attempts(), c.flaky())))
        .collect()
}

#[tokio::test]
async fn a_test_that_fails_once_passes_on_its_retry_and_is_flaky() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let Some(_) = crate::require::xmllint() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let counts = tempfile::tempdir().unwrap();
    let suite = counted(&project, "flaky", counts.path());
    let result = suites::run_suite(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(
        attempts(&result),
        BTreeMap::from([
            ("test_every_other".to_owned(), (2, true)),
            ("test_destructive_every_other".to_owned(), (2, true)),
            ("test_steady".to_owned(), (1, false)),
        ])
    );
    let flaky = case(&result, "test_every_other");
    let earlier = format!("{:?}", flaky.reruns[0].status);
    assert!(earlier.contains("attempt 1 fails"), "{earlier}");
    // Each test ran as often as it says: the steady one once.
    let ran = |name: &str| std::fs::read_to_string(counts.path().join(name)).unwrap();
    assert_eq!(ran("every_other"), "2");
    // One log for the suite, the retry's under its own line.
    let log = std::fs::read_to_string(
        project
            .config
            .work_dir()
            .join("runs/run-42/suites/flaky.log"),
    )
    .unwrap();
    assert!(log.contains("=== xtask: retry 1 ==="), "{log}");
    assert_reportable(&result);

    // `--retries 0` wins over the suite's `retries = 2`: the odd attempt fails the suite.
    let mut no_retries = env(TargetKind::Docker);
    no_retries.retries = Some(0);
    let result = suites::run_suite(&project.config, &suite, &no_retries, Some(&py), None).await;
    assert!(!result.passed(), "{result:#?}");
    assert_eq!(ran("every_other"), "3");
    assert!(result.cases.iter().all(|c| c.attempts() == 1));
}

#[tokio::test]
async fn a_test_that_always_fails_runs_as_often_as_allowed_and_fails() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let Some(_) = crate::require::xmllint() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("hopeless");
    let result = suites::run_suite(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(!result.passed(), "{result:#?}");
    assert_eq!(result.error, None, "failing tests are not a suite error");
    assert_eq!(
        attempts(&result),
        BTreeMap::from([
            ("test_always_fails".to_owned(), (3, false)),
            ("test_fine".to_owned(), (1, false)),
        ])
    );
    assert_reportable(&result);

    // Quarantined, the same failure is reported but does not fail the suite.
    let mut quarantined = suite.clone();
    quarantined.quarantine = vec!["hopeless.test_hopeless::test_always_*".into()];
    let result = suites::run_suite(
        &project.config,
        &quarantined,
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    let failing = case(&result, "test_always_fails");
    assert!(failing.quarantined && failing.failing(), "{failing:#?}");
    assert_eq!(result.counts().failures, 1);
}

#[tokio::test]
async fn a_plans_worker_retries_its_own_tests_and_a_destructive_retry_runs_alone() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let Some(_) = crate::require::xmllint() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let counts = tempfile::tempdir().unwrap();
    let suite = counted(&project, "flaky_parallel", counts.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection =
        suites::collect_for_plan(&project.config, &suite, &environment, Some(&py), &base)
            .await
            .expect("collected");
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!(plan.alone.len(), 1, "{plan:#?}");
    let events: Arc<Mutex<Vec<TestEvent>>> = Arc::default();
    let hooks = Hooks {
        live: Some({
            let events = events.clone();
            Arc::new(move |_suite: &str| -> suites::TestSink {
                let events = events.clone();
                Arc::new(move |event| events.lock().unwrap().push(event))
            })
        }),
        done: Arc::new(|_: &SuiteResult| {}),
    };
    let results = suites::run_plan(
        &project.config,
        &environment,
        Some(&py),
        &base,
        &planned,
        &plan,
        &hooks,
    )
    .await;
    let result = &results[0];
    assert!(result.passed(), "{result:#?}");
    assert_eq!(
        attempts(result),
        BTreeMap::from([
            ("test_every_other".to_owned(), (2, true)),
            ("test_destructive_every_other".to_owned(), (2, true)),
            ("test_steady".to_owned(), (1, false)),
        ])
    );
    // Every attempt was reported live by the worker that ran the test first.
    let finished: Vec<(String, String, SystemTime, SystemTime)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TestEvent::Finished { worker, test } => {
                Some((test.name.clone(), worker.clone(), test.began?, test.ended?))
            }
            TestEvent::Started { .. } => None,
        })
        .collect();
    let runs = |name: &str| {
        finished
            .iter()
            .filter(|(n, ..)| n == name)
            .collect::<Vec<_>>()
    };
    for name in ["test_every_other", "test_destructive_every_other"] {
        let runs = runs(name);
        assert_eq!(runs.len(), 2, "{finished:#?}");
        assert_eq!(
            runs[0].1, runs[1].1,
            "retried by its own worker: {finished:#?}"
        );
    }
    assert_eq!(runs("test_destructive_every_other")[0].1, "serial");
    // Both attempts of the destructive test overlapped no other test.
    for (_, _, began, ended) in runs("test_destructive_every_other") {
        for (other, _, other_began, other_ended) in &finished {
            if other != "test_destructive_every_other" {
                assert!(
                    other_ended <= began || other_began >= ended,
                    "{other} ran beside the destructive test: {finished:#?}"
                );
            }
        }
    }
}
