//! One plan over several workers (`--jobs N`), against the fixture pytest project
//! (`fixtures/suites/pytest_project`: `parallel`, `crashing`, `parallel_hanging`): tests that
//! prove to each other that they ran at the same time, a destructive one that proves it ran
//! alone, a worker that dies, and every worker's process group stopped at the deadline, when the
//! plan is dropped and when the suites are stopped (the engine lost).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use stackgate::config::SuiteCfg;
use stackgate::config::{self, TargetKind};
use stackgate::junit::Status;
use stackgate::suites::plan::{Chunk, Part, Plan};
use stackgate::suites::{
    self, Collection, Durations, Hooks, PythonEnv, SuiteEnv, SuiteRun, TestEvent,
};

use crate::support::suites::{
    assert_group_gone, assert_reportable, case, env, project, python_and_xmllint, Project,
};

/// What a test keeps of a plan's hooks.
type Kept<T> = Arc<Mutex<Vec<T>>>;

/// Hooks that keep every test event and every finished suite's name.
fn recording() -> (Hooks, Kept<TestEvent>, Kept<String>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(Vec::new()));
    let hooks = Hooks {
        notes: stackgate::progress::Progress::silent(),
        live: Some({
            let events = events.clone();
            Arc::new(move |_suite: &str| -> suites::TestSink {
                let events = events.clone();
                Arc::new(move |event| events.lock().unwrap().push(event))
            })
        }),
        done: {
            let done = done.clone();
            Arc::new(move |result: &stackgate::junit::SuiteResult| {
                done.lock().unwrap().push(result.name.clone())
            })
        },
    };
    (hooks, events, done)
}

fn ids(collection: &Collection) -> Vec<String> {
    collection.tests.iter().map(|t| t.id.clone()).collect()
}

/// The fixture project's suite `name`, with `var` naming `dir` in its environment (where its
/// tests leave their marks for each other).
fn suite_with_dir(project: &Project, name: &str, var: &str, dir: &Path) -> SuiteCfg {
    let mut suite = project.suite(name);
    suite.env.insert(var.into(), dir.display().to_string());
    suite
}

/// The suite's tests as the plan collects them, on `environment`.
async fn collected(
    project: &Project,
    suite: &SuiteCfg,
    environment: &SuiteEnv,
    py: &PythonEnv,
    base: &SuiteRun,
) -> Collection {
    suites::collect_for_plan(&project.config, suite, environment, Some(py), base)
        .await
        .expect("the suite is collected")
}

#[tokio::test]
async fn a_plan_runs_destructive_tests_alone_first_and_the_others_at_once() {
    if !python_and_xmllint() {
        return;
    }
    let project = project("pytest_project");
    let py = project.python().await;
    let track = tempfile::tempdir().unwrap();
    let suite = suite_with_dir(&project, "parallel", "TRACK_DIR", track.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun {
        extra_args: vec!["-k".into(), "not left_out".into()],
        ..SuiteRun::default()
    };

    let collection = collected(&project, &suite, &environment, &py, &base).await;
    assert_eq!(collection.tests.len(), 3, "{collection:#?}");
    let alone = collection
        .tests
        .iter()
        .find(|t| t.id.ends_with("test_alone"))
        .unwrap();
    assert!(
        alone.markers.contains(&"destructive".to_owned()),
        "{alone:#?}"
    );
    assert_eq!(collection.skipped.len(), 1, "{collection:#?}");

    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!(plan.lanes.len(), 2, "{plan:#?}");
    assert_eq!(plan.alone.len(), 1, "{plan:#?}");
    assert_eq!(plan.alone[0].worker, "serial");

    let (hooks, events, done) = recording();
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
    assert_eq!(results.len(), 1);
    let result = &results[0];
    // test_alone found nothing else running and nothing begun before it; test_together_a and _b
    // each waited, while it ran, for the other to begin.
    assert!(result.passed(), "{result:#?}");
    for name in ["test_together_a", "test_together_b", "test_alone"] {
        assert_eq!(case(result, name).status, Status::Passed, "{result:#?}");
    }
    assert_eq!(
        case(result, "test_left_out_by_arguments").status,
        Status::Skipped {
            reason: "deselected by the arguments `-k not left_out`".into()
        }
    );
    // One suite, its cases in collection order, its wall time over its workers.
    let names: Vec<&str> = result.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "test_together_a",
            "test_together_b",
            "test_left_out_by_arguments",
            "test_alone"
        ]
    );
    assert!(result.started.is_some() && result.duration > Duration::ZERO);
    assert_eq!(*done.lock().unwrap(), ["parallel"]);
    assert_reportable(result);

    // Each test reported live, by the worker that ran it.
    let workers: BTreeSet<(String, String)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TestEvent::Finished { worker, test } => Some((test.name.clone(), worker.clone())),
            TestEvent::Started { .. } => None,
        })
        .collect();
    let serial: Vec<&str> = workers
        .iter()
        .filter(|(_, w)| w == "serial")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(serial, ["test_alone"], "{workers:?}");
    let lanes: BTreeSet<&str> = workers
        .iter()
        .filter(|(n, _)| n.starts_with("test_together"))
        .map(|(_, w)| w.as_str())
        .collect();
    assert_eq!(lanes, BTreeSet::from(["w1", "w2"]), "{workers:?}");

    // One log for the suite, each worker's output under its name.
    let dir = project.config.work_dir().join("runs/run-42/suites");
    let log = std::fs::read_to_string(dir.join("parallel.log")).unwrap();
    for worker in ["w1", "w2", "serial"] {
        assert!(
            log.contains(&format!("=== xtask: worker {worker} ===")),
            "{log}"
        );
        assert!(!dir.join(format!("parallel.{worker}.log")).exists());
    }
}

#[tokio::test]
async fn the_next_worker_process_starts_ahead_and_waits_for_its_turn() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let track = tempfile::tempdir().unwrap();
    let with_track = |name: &str| {
        let mut suite = project.suite(name);
        suite
            .env
            .insert("TRACK_DIR".into(), track.path().display().to_string());
        suite
    };
    let (first, second) = (with_track("ahead_first"), with_track("ahead_second"));
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let mut collections = Vec::new();
    for suite in [&first, &second] {
        collections.push(
            suites::collect_for_plan(&project.config, suite, &environment, Some(&py), &base)
                .await
                .unwrap(),
        );
    }
    // Both suites on one worker, one after the other.
    let chunk = |suite: &str, collection: &Collection| Chunk {
        suite: suite.into(),
        worker: "w1".into(),
        part: Part::Tests(ids(collection)),
        seconds: 1.0,
    };
    let plan = Plan {
        jobs: 1,
        lanes: vec![vec![
            chunk("ahead_first", &collections[0]),
            chunk("ahead_second", &collections[1]),
        ]],
        alone: Vec::new(),
        // By hand, without queues: each chunk runs the tests it lists.
        queues: Default::default(),
    };
    let planned = [
        (&first, Some(&collections[0])),
        (&second, Some(&collections[1])),
    ];
    let (hooks, _, done) = recording();
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
    // test_first ran until the second suite's pytest had started and collected (ahead of its
    // turn); test_second, run by it, found test_first done (not before its turn).
    for result in &results {
        assert!(result.passed(), "{result:#?}");
    }
    assert_eq!(*done.lock().unwrap(), ["ahead_first", "ahead_second"]);
}

#[tokio::test]
async fn a_worker_that_dies_is_one_error_and_its_unrun_tests_are_skipped() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("crashing");
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    let all = ids(&collection);
    assert_eq!(all.len(), 4, "{all:?}");
    // By hand, so that the dying test and the one after it share a worker.
    let chunk = |worker: &str, tests: &[String]| Chunk {
        suite: "crashing".into(),
        worker: worker.into(),
        part: Part::Tests(tests.to_vec()),
        seconds: 1.0,
    };
    let plan = Plan {
        jobs: 2,
        lanes: vec![vec![chunk("w1", &all[..2])], vec![chunk("w2", &all[2..])]],
        alone: Vec::new(),
        // By hand, without queues: each chunk runs the tests it lists.
        queues: Default::default(),
    };
    let planned = [(&suite, Some(&collection))];
    let (hooks, _, _) = recording();
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
    // The other worker went on.
    assert_eq!(case(result, "test_3_elsewhere").status, Status::Passed);
    assert_eq!(case(result, "test_4_elsewhere_too").status, Status::Passed);
    let reason = |name: &str| match &case(result, name).status {
        Status::Skipped { reason } => reason.clone(),
        other => panic!("{name}: {other:?}"),
    };
    assert!(
        reason("test_1_kills_its_worker").starts_with("not finished: worker w1 ended during it"),
        "{result:#?}"
    );
    assert!(
        reason("test_2_after_the_crash").starts_with("not run: worker w1 ended before it"),
        "{result:#?}"
    );
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("worker w1: "), "{error}");
    assert!(!error.contains("w2"), "{error}");
    let counts = result.counts();
    assert_eq!((counts.errors, counts.passed()), (1, 2), "{result:#?}");
}

/// Waits (60 s at most) until both hanging tests wrote their record; their process groups.
async fn both_hanging(dir: &Path) -> Vec<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let records: Vec<String> = ["one", "two"]
            .iter()
            .filter_map(|name| std::fs::read_to_string(dir.join(name)).ok())
            .collect();
        if records.len() == 2 {
            return records
                .iter()
                .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
                .collect();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both hanging tests did not start within 60s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dropping_a_plan_stops_every_workers_group() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let hang = tempfile::tempdir().unwrap();
    let suite = suite_with_dir(&project, "parallel_hanging", "HANG_DIR", hang.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!(plan.lanes.len(), 2, "{plan:#?}");
    let (hooks, _, _) = recording();
    let running = suites::run_plan(
        &project.config,
        &environment,
        Some(&py),
        &base,
        &planned,
        &plan,
        &hooks,
    );
    let groups = tokio::select! {
        results = running => panic!("the plan ended on its own: {results:#?}"),
        groups = both_hanging(hang.path()) => groups,
    };
    // The plan's future is dropped here, as when the gate is interrupted.
    assert_ne!(groups[0], groups[1], "each worker has its own group");
    stackgate::process::finish_pending_kills();
    for group in groups {
        assert_group_gone(group).await;
    }
}

#[tokio::test]
async fn the_deadline_stops_every_worker_and_reports_their_tests() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let hang = tempfile::tempdir().unwrap();
    let mut suite = suite_with_dir(&project, "parallel_hanging", "HANG_DIR", hang.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    // Long enough for both workers to start on a loaded machine; the plan counts it from its
    // own start.
    suite.timeout_s = config::Secs(45);
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    let (hooks, _, _) = recording();
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
    let error = result.error.as_deref().unwrap_or_default();
    for worker in ["w1", "w2"] {
        assert!(
            error.contains(&format!("worker {worker}: timed out")),
            "{error}"
        );
    }
    for name in ["test_hang_one", "test_hang_two"] {
        assert!(
            matches!(&case(result, name).status, Status::Skipped { reason } if reason.starts_with("not finished: the suite timed out")),
            "{result:#?}"
        );
    }
    for group in both_hanging(hang.path()).await {
        assert_group_gone(group).await;
    }
}

#[tokio::test]
async fn a_stop_during_the_lone_tests_lists_every_workers_tests_with_its_reason() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let track = tempfile::tempdir().unwrap();
    let suite = suite_with_dir(&project, "parallel", "TRACK_DIR", track.path());
    let mut environment = env(TargetKind::Docker);
    let (stop, stopped) = tokio::sync::watch::channel(None::<String>);
    environment.stop = Some(suites::Stop::new(stopped));
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!(plan.alone[0].worker, "serial", "{plan:#?}");
    // The engine is lost (as the gate's watch says it) while the destructive test runs alone: the
    // workers started ahead are waiting for their turn.
    let stop = Arc::new(stop);
    let hooks = Hooks {
        notes: stackgate::progress::Progress::silent(),
        live: Some(Arc::new(move |_suite: &str| -> suites::TestSink {
            let stop = stop.clone();
            Arc::new(move |event| {
                if matches!(&event, TestEvent::Started { name, .. } if name == "test_alone") {
                    let _ = stop.send(Some("engine lost at 12:00:00".into()));
                }
            })
        })),
        done: Arc::new(|_: &stackgate::junit::SuiteResult| {}),
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
    // No test of the workers ran, and none is lost: each is listed with the stop's reason, and a
    // worker stopped before its turn is no error of its own.
    assert_eq!(result.cases.len(), 4, "{result:#?}");
    for name in [
        "test_together_a",
        "test_together_b",
        "test_left_out_by_arguments",
    ] {
        assert_eq!(
            case(result, name).status,
            Status::Skipped {
                reason: "engine lost at 12:00:00".into()
            },
            "{result:#?}"
        );
    }
    assert!(
        !std::fs::read_dir(track.path().join("begun"))
            .unwrap()
            .any(|e| e.unwrap().file_name() != "test_alone"),
        "a worker ran a test after the stop"
    );
    let error = result.error.as_deref().unwrap_or_default();
    assert!(!error.contains("did not collect"), "{error}");
}

/// The complete events of the tests in a trace: (name, thread, start, end) in microseconds.
fn traced_tests(trace: &serde_json::Value) -> Vec<(String, u64, u64, u64)> {
    trace["traceEvents"]
        .as_array()
        .expect("traceEvents")
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"].as_str().is_some_and(|c| c.starts_with("test,")))
        .map(|e| {
            let start = e["ts"].as_u64().unwrap();
            (
                e["name"].as_str().unwrap().to_owned(),
                e["tid"].as_u64().unwrap(),
                start,
                start + e["dur"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The tests on another thread (worker) whose span overlaps `name`'s. Tests of one worker run
/// one after the other in one process; their spans, which end when the harness read each
/// test's end, may touch.
fn overlapping(tests: &[(String, u64, u64, u64)], name: &str) -> Vec<String> {
    let (_, thread, start, end) = tests
        .iter()
        .find(|t| t.0 == name)
        .unwrap_or_else(|| panic!("{name} is not in the trace: {tests:?}"));
    tests
        .iter()
        .filter(|(_, t, s, e)| t != thread && s < end && e > start)
        .map(|(n, ..)| n.clone())
        .collect()
}

#[test]
fn a_parallel_gate_runs_its_destructive_test_alone_in_its_trace() {
    if !crate::support::engine_available() {
        return;
    }
    let report = crate::support::Report::new();
    let track = tempfile::tempdir().unwrap();
    let output = crate::support::stackgate()
        .arg("--config")
        .arg(crate::support::gate_fixture().join("harness.parallel.toml"))
        .arg("mission-critical")
        .arg("--junit")
        .arg(report.path())
        .env("TRACK_DIR", track.path())
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        crate::support::explain(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("plan: worker w1"), "{stderr}");
    assert!(stderr.contains("plan: first alone: web ×1"), "{stderr}");
    let xml = report.text();
    for test in [
        "test_together_a",
        "test_restarts_the_cache",
        "test_quick[/three]",
    ] {
        assert!(xml.contains(test), "{xml}");
    }
    let run_dir = crate::support::gate_fixture()
        .join("target/xtask/runs")
        .join(crate::support::run_id_of(&xml));
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("trace.json")).unwrap())
            .unwrap();
    let tests = traced_tests(&trace);
    assert_eq!(tests.len(), 6, "{tests:?}");
    assert_eq!(
        overlapping(&tests, "test_restarts_the_cache"),
        Vec::<String>::new(),
        "no other test runs while the destructive one does"
    );
    assert!(
        overlapping(&tests, "test_together_a").contains(&"test_together_b".to_owned()),
        "the two ran at once, on two workers: {tests:?}"
    );
}

#[tokio::test]
async fn a_nextest_suite_runs_whole_on_a_worker_with_its_own_threads() {
    let Some(_) = crate::require::nextest() else {
        return;
    };
    let project = project("nextest_crate");
    let mut suite = project.suite("rust");
    suite.parallel = true;
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    assert_eq!(
        suites::collect_for_plan(&project.config, &suite, &environment, None, &base).await,
        None,
        "nextest runs its tests in parallel itself"
    );
    let planned = [(&suite, None)];
    let plan = suites::plan(&planned, &Durations::default(), 3);
    assert_eq!(plan.lanes.len(), 1);
    assert_eq!(plan.lanes[0][0].part, Part::Whole);
    let (hooks, events, done) = recording();
    let results = suites::run_plan(
        &project.config,
        &environment,
        None,
        &base,
        &planned,
        &plan,
        &hooks,
    )
    .await;
    let result = &results[0];
    assert_eq!(case(result, "tests::adds").status, Status::Passed);
    assert!(
        matches!(
            case(result, "tests::fails_on_purpose").status,
            Status::Failed { .. }
        ),
        "{result:#?}"
    );
    let output = result.output.as_deref().unwrap_or_default();
    assert!(output.contains("--test-threads 3"), "{output}");
    assert!(!events.lock().unwrap().is_empty(), "its tests were live");
    assert_eq!(*done.lock().unwrap(), ["rust"]);
}

#[tokio::test]
async fn a_test_a_worker_collects_that_the_plan_did_not_is_an_error_not_dropped() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("changing");
    // The plan collects without CHANGING_CASES (one test), as the early collection does without
    // the endpoints; the workers run with it (three).
    let before = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = suites::collect_for_plan(&project.config, &suite, &before, Some(&py), &base)
        .await
        .expect("the suite is collected");
    assert_eq!(
        ids(&collection),
        ["changing/test_changing.py::test_case[0]"]
    );
    let mut after = env(TargetKind::Docker);
    after.extra.insert("CHANGING_CASES".into(), "3".into());
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    let (hooks, _, _) = recording();
    let results = suites::run_plan(
        &project.config,
        &after,
        Some(&py),
        &base,
        &planned,
        &plan,
        &hooks,
    )
    .await;
    let result = &results[0];
    assert_eq!(
        case(result, "test_case[0]").status,
        Status::Passed,
        "{result:#?}"
    );
    for name in ["test_case[1]", "test_case[2]"] {
        match &case(result, name).status {
            Status::Error { message, .. } => assert!(
                message.contains("collected it, the plan's collection did not"),
                "{message}"
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    // Each once, whichever worker collected it.
    assert_eq!(result.cases.len(), 3, "{result:#?}");
    assert!(!result.passed());
    assert!(
        result
            .error
            .as_deref()
            .is_some_and(|e| e
                .contains("2 tests were collected by a worker but not by the plan's collection")),
        "{result:#?}"
    );
    assert_reportable(result);
}

#[tokio::test]
async fn a_shard_without_any_of_a_suites_tests_is_reported_without_its_runner() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    // Four tests over six shards: at least two shards have none of them.
    let suite = project.suite("markers");
    let mut local = env(TargetKind::Local);
    local.skip_markers = vec!["docker".into()];
    let mut seen = Vec::new();
    let mut empty = 0;
    for index in 1..=6 {
        let base = SuiteRun {
            shard: Some(stackgate::flags::Shard { index, count: 6 }),
            ..SuiteRun::default()
        };
        let collection =
            suites::collect_for_plan(&project.config, &suite, &local, Some(&py), &base)
                .await
                .expect("the suite is collected");
        assert_eq!(collection.collected.len(), 4, "{collection:#?}");
        seen.extend(ids(&collection));
        seen.extend(
            collection
                .skipped
                .iter()
                .map(|c| format!("{}::{}", c.classname, c.name)),
        );
        match collection.result_without_running(&suite.name) {
            Some(result) => {
                empty += 1;
                assert!(collection.tests.is_empty());
                // Its deselected tests are still this shard's to report, skipped.
                assert_eq!(result.cases, collection.skipped);
                assert!(result.passed() && result.error.is_none(), "{result:#?}");
            }
            None => assert!(!collection.tests.is_empty(), "{collection:#?}"),
        }
    }
    assert!(empty >= 2, "{empty} shards without tests");
    // Every test (run or deselected) in exactly one shard.
    assert_eq!(seen.len(), 4, "{seen:#?}");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 4, "{seen:#?}");
}

#[tokio::test]
async fn a_suites_workers_take_its_tests_from_one_queue_so_none_waits_on_its_own_share() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let track = tempfile::tempdir().unwrap();
    let suite = suite_with_dir(&project, "queued", "TRACK_DIR", track.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    // Durations that put test_2 (which ends only after tests 3-5) on a worker with tests of its
    // own after it: shares given up front would wait on themselves until test_2's deadline.
    let mut known = Durations::default();
    known.suites.insert(
        "queued".into(),
        collection
            .tests
            .iter()
            .zip([3.0, 2.0, 1.0, 1.0, 1.0])
            .map(|(t, s)| (t.key.clone(), s))
            .collect(),
    );
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &known, 2);
    let shares: Vec<Vec<String>> = plan
        .lanes
        .iter()
        .map(|lane| match &lane[0].part {
            Part::Tests(ids) => ids.clone(),
            Part::Whole => Vec::new(),
        })
        .collect();
    let with_2 = shares
        .iter()
        .find(|ids| {
            ids.iter()
                .any(|id| id.ends_with("test_2_waits_for_the_rest"))
        })
        .unwrap();
    assert!(with_2.len() > 1, "the plan's expected shares: {shares:?}");
    assert_eq!(
        plan.queues["queued"]
            .iter()
            .map(|id| id.rsplit("::").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "test_1_first",
            "test_2_waits_for_the_rest",
            "test_3",
            "test_4",
            "test_5"
        ],
        "longest first"
    );

    let (hooks, events, _) = recording();
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
    assert_eq!(result.cases.len(), 5, "each test once: {result:#?}");
    let by_worker: Vec<(String, String)> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            TestEvent::Finished { worker, test } => Some((test.name.clone(), worker.clone())),
            TestEvent::Started { .. } => None,
        })
        .collect();
    let holder = &by_worker
        .iter()
        .find(|(name, _)| name == "test_2_waits_for_the_rest")
        .unwrap()
        .1;
    let others: Vec<&str> = by_worker
        .iter()
        .filter(|(name, w)| w != holder && ["test_3", "test_4", "test_5"].contains(&name.as_str()))
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(others.len(), 3, "{by_worker:?}");
    // Nothing left in the queue, every test taken by the worker that ran it.
    let queue = project
        .config
        .work_dir()
        .join("runs/run-42/suites/queued.queue");
    let names: Vec<String> = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 5, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".todo")), "{names:?}");
}

#[tokio::test]
async fn a_worker_that_dies_leaves_the_rest_of_its_suites_queue_to_the_others() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let suite = project.suite("crashing");
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!(plan.lanes.len(), 2, "{plan:#?}");
    let (hooks, _, _) = recording();
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
    // The test that kills its worker is the only one not run: the others were taken by the
    // worker that lived (or by the dying one before it took the fatal test).
    let reason = match &case(result, "test_1_kills_its_worker").status {
        Status::Skipped { reason } => reason.clone(),
        other => panic!("{other:?}"),
    };
    assert!(reason.starts_with("not finished: worker w"), "{reason}");
    for name in [
        "test_2_after_the_crash",
        "test_3_elsewhere",
        "test_4_elsewhere_too",
    ] {
        assert_eq!(case(result, name).status, Status::Passed, "{result:#?}");
    }
    assert_eq!(result.cases.len(), 4, "{result:#?}");
    let error = result.error.as_deref().unwrap_or_default();
    assert!(error.starts_with("worker w"), "{error}");
    assert!(!result.passed());
}

#[tokio::test]
async fn the_workers_runners_start_ahead_one_after_the_other_during_the_lone_tests() {
    let Some(_) = crate::require::python() else {
        return;
    };
    let project = project("pytest_project");
    let py = project.python().await;
    let track = tempfile::tempdir().unwrap();
    let suite = suite_with_dir(&project, "prestart", "TRACK_DIR", track.path());
    let environment = env(TargetKind::Docker);
    let base = SuiteRun::default();
    let collection = collected(&project, &suite, &environment, &py, &base).await;
    let planned = [(&suite, Some(&collection))];
    let plan = suites::plan(&planned, &Durations::default(), 2);
    assert_eq!((plan.alone.len(), plan.lanes.len()), (1, 2), "{plan:#?}");
    let (hooks, _, _) = recording();
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
    // The lone test ended only once both runners had collected: they started while it ran.
    assert!(results[0].passed(), "{:#?}", results[0]);
    let at = |mark: &str| -> f64 {
        std::fs::read_to_string(track.path().join(mark))
            .unwrap_or_else(|e| panic!("{mark}: {e}"))
            .parse()
            .unwrap()
    };
    // One after the other: the second began once the first had collected.
    let (first, second) = if at("w1.configure") <= at("w2.configure") {
        ("w1", "w2")
    } else {
        ("w2", "w1")
    };
    assert!(
        at(&format!("{second}.configure")) >= at(&format!("{first}.collected")),
        "{second} began at {}, before {first} had collected at {}",
        at(&format!("{second}.configure")),
        at(&format!("{first}.collected"))
    );
}
