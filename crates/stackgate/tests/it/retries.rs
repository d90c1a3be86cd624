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

use crate::support::suites::{assert_reportable, case, env, project, python_and_xmllint, Project};

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
    if !python_and_xmllint() {
        return;
    }
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
    if !python_and_xmllint() {
        return;
    }
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
    if !python_and_xmllint() {
        return;
    }
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
        notes: stackgate::progress::Progress::silent(),
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

/// A repository of its own whose one suite has a test that fails on every other attempt and a
/// steady one, run on the local target (no stack needed); the venv is the suite tests' own.
fn flaky_repository() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let counts = dir.path().join("counts");
    std::fs::create_dir_all(root.join("tests")).unwrap();
    std::fs::create_dir_all(&counts).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/suites/pytest_project");
    std::fs::copy(
        fixture.join("requirements.txt"),
        root.join("requirements.txt"),
    )
    .unwrap();
    let source = std::fs::read_to_string(fixture.join("flaky/test_flaky.py")).unwrap();
    // Without its destructive test: the flaky one and the steady one.
    let source = &source[..source.find("@pytest.mark.destructive").unwrap()];
    std::fs::write(root.join("tests/test_flaky.py"), source).unwrap();
    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("suites-venv");
    std::fs::write(
        root.join("harness.toml"),
        format!(
            r#"[project]
name = "flakyrepo"

[python]
requirements = ["requirements.txt"]
venv = {venv:?}

[[suite]]
name = "e2e"
runner = "pytest"
args = ["tests"]
env = {{ FLAKY_DIR = {counts:?} }}

[targets.local]
endpoints = {{}}
processes = []
"#,
            venv = venv.display().to_string(),
            counts = counts.display().to_string(),
        ),
    )
    .unwrap();
    (dir, root)
}

fn stackgate(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    crate::support::stackgate()
        .arg("--config")
        .arg(root.join("harness.toml"))
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .unwrap()
}

#[test]
fn with_retries_the_gate_passes_and_only_the_flaky_test_carries_a_flaky_failure() {
    if !python_and_xmllint() {
        return;
    }
    let (_dir, root) = flaky_repository();
    let junit = root.join("junit.xml");
    let junit_arg = junit.display().to_string();
    let gate = |retries: &str| {
        stackgate(
            &root,
            &[
                "mission-critical",
                "--target",
                "local",
                "--retries",
                retries,
                "--junit",
                &junit_arg,
            ],
        )
    };
    // Without retries the odd attempt fails the gate.
    let output = gate("0");
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        crate::support::explain(&output)
    );

    // Counted afresh: the next first attempt fails again.
    std::fs::remove_file(root.parent().unwrap().join("counts/every_other")).unwrap();
    let output = gate("2");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::explain(&output)
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    crate::support::xmllint_valid(&junit);
    assert_eq!(xml.matches("<flakyFailure").count(), 1, "{xml}");
    let flaky_case = &xml[xml
        .find(r#"name="test_every_other""#)
        .expect("the flaky test")..];
    let flaky_case = &flaky_case[..flaky_case.find("</testcase>").unwrap()];
    assert!(flaky_case.contains("<flakyFailure"), "{flaky_case}");
    assert!(!xml.contains("<rerunFailure"), "{xml}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FLAKY e2e::tests.test_flaky::test_every_other: passed on attempt 2"),
        "{stderr}"
    );
    let html = std::fs::read_to_string(root.join("target/xtask/report.html")).unwrap();
    assert!(
        html.contains("Flaky and quarantined (1)"),
        "report.html says so"
    );

    // The history knows it passed on a retry: flaky, and the steady test is not.
    let output = stackgate(&root, &["history", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        crate::support::explain(&output)
    );
    let history: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let flaky = |name: &str| {
        history["tests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["test"].as_str().is_some_and(|t| t.ends_with(name)))
            .unwrap_or_else(|| panic!("no {name} in {history:#}"))["flaky"]
            .as_bool()
    };
    assert_eq!(flaky("test_every_other"), Some(true), "{history:#}");
    assert_eq!(flaky("test_steady"), Some(false), "{history:#}");
}

#[test]
fn a_quarantined_failure_does_not_fail_the_gate_and_its_pass_rate_is_named() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let (_dir, root) = flaky_repository();
    let config = std::fs::read_to_string(root.join("harness.toml")).unwrap();
    std::fs::write(
        root.join("harness.toml"),
        config.replace(
            "args = [\"tests\"]",
            "args = [\"tests\"]\nquarantine = [\"*::test_every_other\"]",
        ),
    )
    .unwrap();
    // Attempt 1 fails, attempt 2 passes: both gates pass, and each names the quarantine.
    for (run, rate) in [
        (1, "passed in 0 of its 1 recorded run"),
        (2, "passed in 1 of its last 2 runs"),
    ] {
        let output = stackgate(&root, &["mission-critical", "--target", "local"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "run {run}: {}",
            crate::support::explain(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "quarantined: e2e::tests.test_flaky::test_every_other: {rate}"
            )),
            "run {run}: {stderr}"
        );
    }
}

#[tokio::test]
async fn nextest_retries_its_own_tests_and_its_report_says_which_were_flaky() {
    let Some(_) = crate::require::nextest() else {
        return;
    };
    let Some(_) = crate::require::xmllint() else {
        return;
    };
    let project = project("nextest_crate");
    let counts = tempfile::tempdir().unwrap();
    // A test that fails on its first attempt, written into this temporary copy only.
    let lib = project.config.root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let flaky = r#"mod tests {
    #[test]
    fn fails_once() {
        let path = std::path::Path::new(&std::env::var("FLAKY_DIR").unwrap()).join("fails_once");
        let first = !path.exists();
        std::fs::write(&path, "ran").unwrap();
        assert!(!first, "the first attempt fails");
    }
"#;
    std::fs::write(&lib, text.replacen("mod tests {\n", flaky, 1)).unwrap();
    let mut suite = counted(&project, "rust", counts.path());
    suite.retries = 1;
    let result = suites::run_suite(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        None,
        None,
    )
    .await;
    assert_eq!(result.error, None, "{result:#?}");
    let by_name = attempts(&result);
    assert_eq!(by_name["tests::fails_once"], (2, true), "{result:#?}");
    assert_eq!(by_name["tests::adds"], (1, false), "{result:#?}");
    // The one that always fails ran twice and fails the suite.
    assert_eq!(
        by_name["tests::fails_on_purpose"],
        (2, false),
        "{result:#?}"
    );
    assert!(!result.passed());
    assert_reportable(&result);
}
