//! The suite runners against fixture projects (crates/stackgate/tests/fixtures/suites): a pytest project with
//! one suite per behaviour, sharing one venv under the target dir, and a tiny nextest crate.
//! Each test first asks [`crate::require`] for what it needs (`python3`, `cargo nextest`,
//! `xmllint` for the schema check): missing, it skips out loud, or fails under
//! `XTASK_REQUIRE_ALL=1`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use stackgate::config::{self, TargetKind};
use stackgate::flags::Shard;
use stackgate::junit::{Case, Status};
use stackgate::suites::{self, SuiteRun, TestEvent, TestOutcome};

use crate::support::suites::{
    assert_group_gone, assert_reportable, case, env, project, python_and_xmllint,
};

#[tokio::test]
async fn venv_is_created_then_reused_until_requirements_change() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let dir = tempfile::tempdir().unwrap();
    let mut config = project.config.clone();
    config.python.venv = dir.path().join("own-venv");
    let first = suites::python_env(&config).await.unwrap();
    assert!(!first.reused);
    assert!(first.python.is_file());
    assert!(first.venv.join(suites::REQUIREMENTS_STAMP).is_file());
    let second = suites::python_env(&config).await.unwrap();
    assert!(second.reused, "unchanged requirements reuse the venv");
    eprintln!(
        "venv: created and installed in {:?}, reused in {:?}",
        first.duration, second.duration
    );

    let requirements = config.root.join("requirements.txt");
    let mut text = std::fs::read_to_string(&requirements).unwrap();
    text.push_str("# changed\n");
    std::fs::write(&requirements, text).unwrap();
    let third = suites::python_env(&config).await.unwrap();
    assert!(!third.reused, "changed requirements are installed again");
    assert!(
        third.log.is_file(),
        "pip's output is kept in {:?}",
        third.log
    );
    assert!(suites::python_env(&config).await.unwrap().reused);

    // The local target's requirements go into the same venv, which then still serves the suites.
    std::fs::write(config.root.join("local.txt"), "# local\npytest==9.2.0\n").unwrap();
    let python = suites::ensure_requirements(&config, &third, &[PathBuf::from("local.txt")])
        .await
        .unwrap();
    assert_eq!(python, third.python);
    let stamp = std::fs::read_to_string(third.venv.join(suites::REQUIREMENTS_STAMP)).unwrap();
    assert_eq!(stamp.lines().count(), 3, "{stamp}");
    assert!(suites::python_env(&config).await.unwrap().reused);
}

#[tokio::test]
async fn venv_failure_names_the_requirements_and_shows_pip_output() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let dir = tempfile::tempdir().unwrap();
    let mut config = project.config.clone();
    config.python.venv = dir.path().join("bad-venv");
    std::fs::write(
        config.root.join("requirements.txt"),
        "this-package-does-not-exist-xtask==0.0.0\n",
    )
    .unwrap();
    let error = format!("{:#}", suites::python_env(&config).await.unwrap_err());
    assert!(error.contains("pip could not install"), "{error}");
    assert!(error.contains("requirements.txt"), "{error}");
    assert!(
        error.contains("this-package-does-not-exist-xtask"),
        "pip's output is shown: {error}"
    );
    assert!(!config.python.venv.join(suites::REQUIREMENTS_STAMP).exists());
}

#[tokio::test]
async fn passing_suite() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let result = suites::run_suite(
        &project.config,
        &project.suite("passing"),
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(result.error, None);
    assert_eq!(result.cases.len(), 3);
    assert!(result.cases.iter().all(|c| c.status == Status::Passed));
    assert_eq!(
        case(&result, "test_three").classname,
        "passing.test_passing.TestGroup"
    );
    assert_reportable(&result);
}

#[tokio::test]
async fn failing_test_shows_its_output() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let result = suites::run_suite(
        &project.config,
        &project.suite("failing"),
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(!result.passed());
    assert_eq!(result.error, None, "a failing test is not a suite error");
    assert_eq!(case(&result, "test_fine").status, Status::Passed);
    let failed = case(&result, "test_broken_promise");
    let Status::Failed { message, output } = &failed.status else {
        panic!("{failed:#?}");
    };
    assert!(message.contains("arithmetic is broken"), "{message}");
    assert!(output.contains("assert 2 + 2 == 5"), "{output}");
    let stdout = failed.system_out.clone().unwrap_or_default();
    let stderr = failed.system_err.clone().unwrap_or_default();
    assert!(
        stdout.contains("FAILING-STDOUT-MARKER"),
        "stdout kept: {failed:#?}"
    );
    assert!(
        stderr.contains("FAILING-STDERR-MARKER"),
        "stderr kept: {failed:#?}"
    );
    assert_reportable(&result);
}

/// A sink that keeps every live event.
fn recorder() -> (
    std::sync::Arc<std::sync::Mutex<Vec<TestEvent>>>,
    suites::TestSink,
) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink: suites::TestSink = {
        let events = events.clone();
        std::sync::Arc::new(move |event| events.lock().unwrap().push(event))
    };
    (events, sink)
}

#[tokio::test]
async fn each_test_is_reported_as_it_ends_with_its_file_and_failing_line() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let (events, sink) = recorder();
    let run = SuiteRun {
        live: Some(sink),
        repo_root: Some(std::fs::canonicalize(&project.config.root).unwrap()),
        ..SuiteRun::default()
    };
    let result = suites::run_suite_with(
        &project.config,
        &project.suite("failing"),
        &env(TargetKind::Docker),
        Some(&py),
        &run,
    )
    .await;
    assert!(!result.passed());
    let events = events.lock().unwrap().clone();
    let started: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            TestEvent::Started { name, .. } => Some(name.as_str()),
            TestEvent::Finished { .. } => None,
        })
        .collect();
    assert_eq!(started, ["test_fine", "test_broken_promise"], "{events:#?}");
    let finished: Vec<&suites::TestRun> = events
        .iter()
        .filter_map(|e| match e {
            TestEvent::Finished { test, .. } => Some(test),
            TestEvent::Started { .. } => None,
        })
        .collect();
    assert_eq!(finished.len(), 2, "{events:#?}");
    assert_eq!(finished[0].outcome, TestOutcome::Passed);
    let broken = finished[1];
    assert_eq!(broken.outcome, TestOutcome::Failed);
    // Named as the JUnit report names it, so that the two can be matched.
    let junit_case = case(&result, "test_broken_promise");
    assert_eq!(
        (broken.classname.as_str(), broken.name.as_str()),
        (junit_case.classname.as_str(), junit_case.name.as_str())
    );
    assert_eq!(broken.file.as_deref(), Some("failing/test_failing.py"));
    let source =
        std::fs::read_to_string(project.config.root.join("failing/test_failing.py")).unwrap();
    let assert_line = source
        .lines()
        .position(|l| l.contains("assert 2 + 2 == 5"))
        .unwrap() as u32
        + 1;
    assert_eq!(broken.line, Some(assert_line), "the line that failed");
    assert!(
        broken
            .message
            .as_deref()
            .is_some_and(|m| m.contains("arithmetic is broken")),
        "{broken:#?}"
    );
    // The runner's whole output is kept in the run's suite log.
    let log = project
        .config
        .work_dir()
        .join("runs/run-42/suites/failing.log");
    let log = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    assert!(log.contains("FAILING-STDOUT-MARKER"), "{log}");
    assert!(log.contains("1 failed, 1 passed"), "{log}");
}

#[tokio::test]
async fn suite_arguments_select_tests_and_the_rest_are_reported_skipped() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let run = SuiteRun {
        extra_args: vec!["-k".into(), "test_fine".into()],
        ..SuiteRun::default()
    };
    let result = suites::run_suite_with(
        &project.config,
        &project.suite("failing"),
        &env(TargetKind::Docker),
        Some(&py),
        &run,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(case(&result, "test_fine").status, Status::Passed);
    assert_eq!(
        case(&result, "test_broken_promise").status,
        Status::Skipped {
            reason: "deselected by the arguments `-k test_fine`".into()
        }
    );
    assert_reportable(&result);
}

#[tokio::test]
async fn collection_error_is_an_error_not_a_pass() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let result = suites::run_suite(
        &project.config,
        &project.suite("broken"),
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(!result.passed(), "{result:#?}");
    assert!(result.counts().errors >= 1, "{result:#?}");
    let everything = format!("{result:?}");
    assert!(
        everything.contains("module_that_does_not_exist"),
        "the import error is shown: {result:#?}"
    );
    assert_reportable(&result);
}

#[tokio::test]
async fn empty_suite_fails_unless_allowed() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let empty = suites::run_suite(
        &project.config,
        &project.suite("empty"),
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(!empty.passed());
    let error = empty.error.clone().unwrap();
    assert!(error.contains("no tests collected"), "{error}");
    assert_eq!(empty.counts().errors, 1, "reported as an error case");
    assert_reportable(&empty);

    let allowed = suites::run_suite(
        &project.config,
        &project.suite("empty_allowed"),
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert!(allowed.passed(), "{allowed:#?}");
    assert_eq!(allowed.counts().tests, 0);
}

#[tokio::test]
async fn marked_tests_are_deselected_and_reported_skipped() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let mut staging = env(TargetKind::Staging);
    staging.skip_markers = vec!["docker".into(), "destructive".into()];
    let result = suites::run_suite(
        &project.config,
        &project.suite("markers"),
        &staging,
        Some(&py),
        None,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(result.cases.len(), 4, "{result:#?}");
    assert_eq!(case(&result, "test_plain").status, Status::Passed);
    let skipped = |name: &str, marker: &str| {
        assert_eq!(
            case(&result, name).status,
            Status::Skipped {
                reason: format!("deselected on the staging target: marked `{marker}`")
            }
        )
    };
    skipped("test_needs_docker", "docker");
    skipped("test_restarts_things", "destructive");
    skipped("test_in_class", "docker");
    assert_eq!(
        case(&result, "test_in_class").classname,
        "markers.test_markers.TestContainers"
    );
    assert_reportable(&result);
}

#[tokio::test]
async fn hanging_test_is_killed_at_the_deadline_with_its_whole_group() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let record = project.config.root.join("hang-record.txt");
    let mut suite = project.suite("hanging");
    suite
        .env
        .insert("HANG_RECORD".into(), record.display().to_string());
    let result = suites::run_suite(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        Some(&py),
        None,
    )
    .await;
    assert_eq!(result.error.as_deref(), Some("timed out after 8s"));
    assert!(!result.passed());
    assert!(
        result.output.as_deref().unwrap_or("").contains("hanging"),
        "the output is kept: {result:#?}"
    );
    // pytest got SIGINT first, so the tests that finished are still reported.
    assert_eq!(
        case(&result, "test_finishes").status,
        Status::Passed,
        "{result:#?}"
    );
    // The test that hung is still named, not silently dropped.
    assert_eq!(
        case(&result, "test_hangs").status,
        Status::Skipped {
            reason: "not finished: the suite timed out after 8s".into()
        }
    );
    let text = std::fs::read_to_string(&record).unwrap();
    let pgid: i32 = text.split_whitespace().next().unwrap().parse().unwrap();
    assert_group_gone(pgid).await;
    assert_reportable(&result);
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let record = project.config.root.join("hang-record.txt");
    let mut suite = project.suite("hanging");
    suite.timeout_s = config::Secs(600);
    suite
        .env
        .insert("HANG_RECORD".into(), record.display().to_string());
    let environment = env(TargetKind::Docker);
    let run = suites::run_suite(&project.config, &suite, &environment, Some(&py), None);
    let record_written = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(&record).is_ok_and(|t| t.ends_with('\n')) {
            assert!(
                std::time::Instant::now() < deadline,
                "the hanging test did not start within 60s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        result = run => panic!("the suite ended on its own: {result:#?}"),
        () = record_written => {}
    }
    // The run future is dropped here, as when the gate is interrupted.
    let text = std::fs::read_to_string(&record).unwrap();
    let mut fields = text.split_whitespace();
    let pgid: i32 = fields.next().unwrap().parse().unwrap();
    let grandchild: i32 = fields.next().unwrap().parse().unwrap();
    assert!(grandchild > 0);
    // The grandchild ignores SIGTERM: only the SIGKILL that follows ends it.
    stackgate::process::finish_pending_kills();
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn suites_receive_the_environment() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    std::env::set_var("CALLER_VAR", "passed through");
    let mut local = env(TargetKind::Local);
    local.endpoints = BTreeMap::from([
        ("backend".into(), "http://127.0.0.1:9/backend".into()),
        ("backend_ws".into(), "ws://127.0.0.1:9/ws".into()),
    ]);
    local.extra = BTreeMap::from([("XTASK_COMPOSE_PROJECT".into(), "proj-42".into())]);
    let result = suites::run_suite(
        &project.config,
        &project.suite("envcheck"),
        &local,
        Some(&py),
        None,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(result.cases.len(), 1);
}

#[tokio::test]
async fn secrets_never_reach_the_result() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let mut environment = env(TargetKind::Docker);
    // The failing test prints this marker; treat it as a secret.
    environment.secrets = vec!["FAILING-STDOUT-MARKER".into()];
    let result = suites::run_suite(
        &project.config,
        &project.suite("failing"),
        &environment,
        Some(&py),
        None,
    )
    .await;
    let everything = format!("{result:?}");
    assert!(!everything.contains("FAILING-STDOUT-MARKER"));
    assert!(everything.contains("[redacted]"));
}

#[tokio::test]
async fn shards_cover_every_test_exactly_once() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("sharded");
    let mut docker = env(TargetKind::Local);
    docker.skip_markers = vec!["docker".into()];

    let all = suites::collect_skipped(&project.config, &suite, &docker, Some(&py), "why").await;
    assert_eq!(all.cases.len(), 24, "{all:#?}");
    assert!(all.cases.iter().all(|c| c.status
        == Status::Skipped {
            reason: "why".into()
        }));
    let expected: BTreeSet<(String, String)> = all
        .cases
        .iter()
        .map(|c| (c.classname.clone(), c.name.clone()))
        .collect();

    let mut seen: Vec<(String, String)> = Vec::new();
    let mut per_shard = Vec::new();
    for index in 1..=3 {
        let shard = Shard { index, count: 3 };
        let result =
            suites::run_suite(&project.config, &suite, &docker, Some(&py), Some(shard)).await;
        assert!(result.passed(), "shard {index}: {result:#?}");
        for case in &result.cases {
            if case.name.starts_with("test_docker_only") {
                assert_eq!(
                    case.status,
                    Status::Skipped {
                        reason: "deselected on the local target: marked `docker`".into()
                    }
                );
            } else {
                assert_eq!(case.status, Status::Passed, "{case:#?}");
            }
        }
        per_shard.push(result.cases.len());
        seen.extend(
            result
                .cases
                .iter()
                .map(|c| (c.classname.clone(), c.name.clone())),
        );
        let listed = suites::collect_skipped_shard(
            &project.config,
            &suite,
            &docker,
            Some(&py),
            "skipped shard",
            Some(shard),
        )
        .await;
        assert_eq!(listed.cases.len(), result.cases.len(), "shard {index}");
    }
    eprintln!("cases per shard: {per_shard:?}");
    assert_eq!(seen.len(), 24, "every test once: {seen:#?}");
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
}

#[tokio::test]
async fn skipped_suite_lists_its_tests_or_names_itself() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let reason = "needs the docker target (target is local)";
    let listed = suites::collect_skipped(
        &project.config,
        &project.suite("markers"),
        &env(TargetKind::Local),
        Some(&py),
        reason,
    )
    .await;
    let names: BTreeSet<&str> = listed.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "test_plain",
            "test_needs_docker",
            "test_restarts_things",
            "test_in_class"
        ])
    );
    assert!(listed.passed());

    let broken = suites::collect_skipped(
        &project.config,
        &project.suite("broken"),
        &env(TargetKind::Local),
        Some(&py),
        reason,
    )
    .await;
    assert_eq!(
        broken.cases,
        vec![Case::skipped("broken", "broken", reason)]
    );
    let without_python = suites::collect_skipped(
        &project.config,
        &project.suite("passing"),
        &env(TargetKind::Local),
        None,
        reason,
    )
    .await;
    assert_eq!(without_python.cases.len(), 1);
}

#[tokio::test]
async fn nextest_suite_merges_nextest_junit() {
    let Some(_) = crate::require::nextest() else {
        return;
    };
    let Some(_) = crate::require::xmllint() else {
        return;
    };
    let project = project("nextest_crate");
    // A user's crate may mark tests ignored; the harness must list them as skipped. The ignored test is
    // written into this temporary copy only, so that the repository itself holds no ignored test.
    let lib = project.config.root.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let ignored = format!(
        "mod tests {{\n    #[test]\n    #[{}]\n    fn ignored_one() {{}}\n",
        ["ign", "ore = \"slow\""].concat()
    );
    std::fs::write(&lib, text.replacen("mod tests {\n", &ignored, 1)).unwrap();
    let suite = project.suite("rust");
    let listed = suites::collect_skipped(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        None,
        "not now",
    )
    .await;
    let names: BTreeSet<&str> = listed.cases.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains("tests::adds"), "{listed:#?}");
    assert!(names.contains("tests::fails_on_purpose"), "{listed:#?}");

    let (events, sink) = recorder();
    let live = SuiteRun {
        live: Some(sink),
        ..SuiteRun::default()
    };
    let result = suites::run_suite_with(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        None,
        &live,
    )
    .await;
    assert!(!result.passed());
    assert_eq!(result.error, None, "{result:#?}");
    assert_eq!(case(&result, "tests::adds").status, Status::Passed);
    // nextest's machine-readable lines: every test that ran, named as its JUnit case.
    let finished: BTreeSet<(String, String, &str)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TestEvent::Finished { test, .. } => Some((
                test.classname.clone(),
                test.name.clone(),
                test.outcome.label(),
            )),
            TestEvent::Started { .. } => None,
        })
        .collect();
    let adds = case(&result, "tests::adds");
    let fails = case(&result, "tests::fails_on_purpose");
    let ignored = case(&result, "tests::ignored_one");
    assert_eq!(
        finished,
        BTreeSet::from([
            (adds.classname.clone(), adds.name.clone(), "PASS"),
            (fails.classname.clone(), fails.name.clone(), "FAIL"),
            (ignored.classname.clone(), ignored.name.clone(), "SKIP"),
        ])
    );

    let failed = case(&result, "tests::fails_on_purpose");
    let Status::Failed { output, .. } = &failed.status else {
        panic!("{failed:#?}");
    };
    let everything = format!("{output} {:?} {:?}", failed.system_out, failed.system_err);
    assert!(
        everything.contains("NEXTEST-OUTPUT-MARKER") || everything.contains("arithmetic is broken"),
        "the failure's output is kept: {failed:#?}"
    );
    assert_eq!(
        case(&result, "tests::ignored_one").status,
        Status::Skipped {
            reason: "ignored (the test is marked `ignore`)".into()
        }
    );
    assert_reportable(&result);

    // A filter after `--` runs only what it matches; the rest is reported skipped.
    let filtered = SuiteRun {
        extra_args: vec!["adds".into()],
        ..SuiteRun::default()
    };
    let result = suites::run_suite_with(
        &project.config,
        &suite,
        &env(TargetKind::Docker),
        None,
        &filtered,
    )
    .await;
    assert!(result.passed(), "{result:#?}");
    assert_eq!(
        case(&result, "tests::fails_on_purpose").status,
        Status::Skipped {
            reason: "deselected by the arguments `adds`".into()
        }
    );
    // Shards (nextest's own hash partition): every test in exactly one shard.
    let mut seen = Vec::new();
    for index in 1..=2 {
        let shard = Shard { index, count: 2 };
        let result = suites::run_suite(
            &project.config,
            &suite,
            &env(TargetKind::Docker),
            None,
            Some(shard),
        )
        .await;
        assert_eq!(result.error, None, "shard {index}: {result:#?}");
        seen.extend(result.cases.iter().map(|c| c.name.clone()));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "tests::adds",
            "tests::fails_on_purpose",
            "tests::ignored_one"
        ]
    );

    // Split by durations in which its tests overlapped (their times add up to more than its
    // wall): the suite runs whole in one shard, and the other does not even list it.
    let mut timed = env(TargetKind::Docker);
    let durations = suites::Durations {
        suites: BTreeMap::from([(
            suite.name.clone(),
            BTreeMap::from([
                (
                    suites::case_key(&result.cases[0].classname, "tests::adds"),
                    2.0,
                ),
                (
                    suites::case_key(&result.cases[0].classname, "tests::fails_on_purpose"),
                    2.0,
                ),
            ]),
        )]),
        walls: BTreeMap::from([(suite.name.clone(), 2.5)]),
        order: vec![suite.name.clone()],
        ..Default::default()
    };
    let whole = durations.plan(2).whole[&suite.name];
    timed.durations = Some(std::sync::Arc::new(durations));
    for index in 1..=2 {
        let shard = Shard { index, count: 2 };
        let result = suites::run_suite(&project.config, &suite, &timed, None, Some(shard)).await;
        assert_eq!(result.error, None, "shard {index}: {result:#?}");
        if index == whole {
            assert_eq!(result.cases.len(), 3, "shard {index}: {result:#?}");
        } else {
            assert!(result.cases.is_empty(), "shard {index}: {result:#?}");
            let output = result.output.as_deref().unwrap_or_default();
            assert!(
                output.contains(&format!("the suite runs whole in shard {whole}/2")),
                "{output}"
            );
        }
    }
}

#[tokio::test]
async fn reference_suites_are_listed_when_skipped() {
    let Some(_) = crate::require::python() else {
        return;
    };
    // The repository's own harness.toml and tests/: what the gate reports when a suite is skipped.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut config = config::load(Some(&root.join("harness.toml"))).unwrap();
    config.python.venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference-venv");
    let py = suites::python_env(&config).await.unwrap();
    let mut staging = env(TargetKind::Staging);
    staging.skip_markers = vec!["docker".into(), "destructive".into()];
    for suite in config
        .suites
        .iter()
        .filter(|s| s.runner == config::Runner::Pytest)
    {
        let listed =
            suites::collect_skipped(&config, suite, &staging, Some(&py), "engine down").await;
        assert!(
            listed.cases.len() > 1,
            "suite {} lists its tests: {listed:#?}",
            suite.name
        );
        assert!(listed.cases.iter().all(|c| c.status
            == Status::Skipped {
                reason: "engine down".into()
            }
            && !c.classname.is_empty()));
        eprintln!("{}: {} tests listed", suite.name, listed.cases.len());
    }
}

#[tokio::test]
async fn shards_split_by_duration_as_the_harness_plans_every_test_once() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("sharded");
    let mut local = env(TargetKind::Local);
    local.skip_markers = vec!["docker".into()];
    let all = suites::collect_skipped(&project.config, &suite, &local, Some(&py), "why").await;
    let key = |c: &Case| suites::case_key(&c.classname, &c.name);
    // One long test; the rest take a second; the docker-marked ones are deselected on local.
    let runnable: Vec<String> = all
        .cases
        .iter()
        .filter(|c| !c.name.starts_with("test_docker_only"))
        .map(key)
        .collect();
    let long = runnable[0].clone();
    let recorded = runnable
        .iter()
        .map(|k| (k.clone(), if *k == long { 10.0 } else { 1.0 }))
        .collect();
    local.durations = Some(std::sync::Arc::new(suites::Durations {
        suites: BTreeMap::from([(suite.name.clone(), recorded)]),
        order: vec![suite.name.clone()],
        ..Default::default()
    }));
    let planned = local
        .durations
        .as_ref()
        .unwrap()
        .assign(&suite.name, &runnable, 3);

    let mut seen: Vec<String> = Vec::new();
    let mut ran = Vec::new();
    for index in 1..=3 {
        let shard = Shard { index, count: 3 };
        let result =
            suites::run_suite(&project.config, &suite, &local, Some(&py), Some(shard)).await;
        assert!(result.passed(), "shard {index}: {result:#?}");
        let passed: Vec<String> = result
            .cases
            .iter()
            .filter(|c| c.status == Status::Passed)
            .map(key)
            .collect();
        for test in &passed {
            assert_eq!(planned[test], index, "{test} ran in shard {index}");
        }
        ran.push((passed.contains(&long), passed.len()));
        seen.extend(result.cases.iter().map(key));
    }
    assert_eq!(seen.len(), 24, "every test once: {seen:#?}");
    assert_eq!(
        seen.into_iter().collect::<BTreeSet<_>>().len(),
        24,
        "no test in two shards"
    );
    // The shard with the long test runs the fewest.
    let (with_long, others): (Vec<_>, Vec<_>) = ran.iter().partition(|(long, _)| *long);
    assert_eq!(with_long.len(), 1, "{ran:?}");
    assert!(others.iter().all(|(_, n)| *n > with_long[0].1), "{ran:?}");
}
