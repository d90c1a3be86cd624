//! The run history end to end, through the real `stackgate` binary on a checkout of the test's
//! own (`fixtures/history`, copied into a tempdir, so its own `target/xtask/history.db`): two
//! gates at once, a gate killed with SIGKILL, a flaky test, the HTML page after a docker run, and
//! a slowed-down service named as a regression.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{explain, run_id_of, Report};

/// A copy of `fixtures/history` in a tempdir of its own, removed on drop.
struct Checkout {
    dir: tempfile::TempDir,
}

impl Checkout {
    fn new() -> Checkout {
        let dir = tempfile::tempdir().unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/history");
        crate::support::copy_dir(&fixture, dir.path());
        // The suites' venv is the one the gate fixture's tests share (pytest only), outside the
        // copy so that each test does not install pytest again.
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/xtask");
        std::fs::create_dir_all(&target).unwrap();
        let venv = target.canonicalize().unwrap().join("fixture-venv");
        let config = dir.path().join("harness.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        std::fs::write(
            &config,
            text.replace("@VENV@", venv.to_str().expect("a UTF-8 venv path")),
        )
        .unwrap();
        Checkout { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn history_db(&self) -> PathBuf {
        self.root().join("target/xtask/history.db")
    }

    /// `stackgate --config harness.toml ARGS`, run in the checkout, without the CI's variables.
    fn stackgate(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = crate::support::stackgate();
        command
            .current_dir(self.root())
            .arg("--config")
            .arg(self.root().join("harness.toml"))
            .args(args)
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("HISTORY_COUNTER")
            .env_remove("HISTORY_BLOCK")
            .env_remove("DELAY");
        for (key, value) in env {
            command.env(key, value);
        }
        command
    }

    /// The gate, its JUnit report at `report`.
    fn gate(&self, report: &Report, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = self.stackgate(&["mission-critical", "--junit"], env);
        command.arg(report.path()).args(args);
        command
    }

    /// `history --json`, which must answer (exit 0) with one object.
    fn history_json(&self) -> serde_json::Value {
        let output = self
            .stackgate(&["history", "--json"], &[])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "history --json is not one object ({e}): {}",
                explain(&output)
            )
        })
    }
}

/// The run of `history --json` whose id is `id`.
fn run_of<'a>(history: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    history["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|run| run["id"] == id)
        .unwrap_or_else(|| panic!("run {id} is not in the history: {history:#}"))
}

/// The test of `history --json` in `suite` whose id ends with `name`.
fn test_of<'a>(history: &'a serde_json::Value, suite: &str, name: &str) -> &'a serde_json::Value {
    history["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .find(|t| t["suite"] == suite && t["test"].as_str().is_some_and(|id| id.ends_with(name)))
        .unwrap_or_else(|| panic!("no test {suite} {name} in the history: {history:#}"))
}

/// A local gate (no engine needed) that must exit with `code`; its run id.
fn local_gate(checkout: &Checkout, args: &[&str], env: &[(&str, &str)], code: i32) -> String {
    let report = Report::new();
    let mut all = vec!["--target", "local"];
    all.extend_from_slice(args);
    let output = checkout.gate(&report, &all, env).output().unwrap();
    assert_eq!(output.status.code(), Some(code), "{}", explain(&output));
    run_id_of(&report.text())
}

#[test]
fn two_gates_of_one_checkout_at_once_are_both_recorded() {
    if crate::require::python().is_none() {
        return;
    }
    let checkout = Checkout::new();
    let reports = [Report::new(), Report::new()];
    let outputs: Vec<Output> = std::thread::scope(|scope| {
        let running: Vec<_> = reports
            .iter()
            .map(|report| {
                let mut command = checkout.gate(report, &["--target", "local"], &[]);
                scope.spawn(move || command.output().unwrap())
            })
            .collect();
        running.into_iter().map(|r| r.join().unwrap()).collect()
    });
    for output in &outputs {
        assert_eq!(output.status.code(), Some(0), "{}", explain(output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("run history"),
            "a gate could not write the history while the other did:\n{stderr}"
        );
    }
    let ids: Vec<String> = reports.iter().map(|r| run_id_of(&r.text())).collect();
    assert_ne!(ids[0], ids[1]);
    let history = checkout.history_json();
    assert_eq!(history["runs"].as_array().unwrap().len(), 2, "{history:#}");
    for id in &ids {
        let run = run_of(&history, id);
        assert_eq!(run["verdict"], "passed", "{run:#}");
        assert_eq!(run["target"], "local", "{run:#}");
        assert!(
            run["duration_s"].as_f64().is_some_and(|s| s > 0.0),
            "{run:#}"
        );
    }
    // Each gate's tests too, not only its row.
    let steady = test_of(&history, "checks", "test_steady");
    assert_eq!(steady["passed"], 2, "{steady:#}");
}

#[test]
fn a_gate_killed_with_sigkill_leaves_the_history_readable_and_the_next_run_is_recorded() {
    if crate::require::python().is_none() {
        return;
    }
    let checkout = Checkout::new();
    let signals = tempfile::tempdir().unwrap();
    let started = signals.path().join("started");
    let report = Report::new();
    let log = std::fs::File::create(signals.path().join("gate.log")).unwrap();
    let mut gate = checkout
        .gate(
            &report,
            &["--target", "local"],
            &[("HISTORY_BLOCK", signals.path().to_str().unwrap())],
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let gate_log = || std::fs::read_to_string(signals.path().join("gate.log")).unwrap_or_default();
    // The blocking test has started (it says so with its pid, group and the run's id), and the
    // history already holds the run.
    let deadline = Instant::now() + Duration::from_secs(300);
    let (pytest_pid, pytest_group, run_id) = loop {
        if let Ok(text) = std::fs::read_to_string(&started) {
            let mut fields = text.split_whitespace();
            let pid: i32 = fields.next().unwrap().parse().unwrap();
            let group: i32 = fields.next().unwrap().parse().unwrap();
            break (pid, group, fields.next().expect("the run id").to_owned());
        }
        if let Some(status) = gate.try_wait().unwrap() {
            panic!(
                "the gate ended ({status}) before its test blocked:\n{}",
                gate_log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "waiting for the blocking test to start:\n{}",
            gate_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let history = checkout.history_json();
    assert_eq!(
        run_of(&history, &run_id)["verdict"],
        serde_json::Value::Null
    );

    kill(&mut gate, pytest_pid, pytest_group);

    // The file a SIGKILL interrupted still reads, and says the run never finished.
    let history = checkout.history_json();
    let killed = run_of(&history, &run_id);
    assert_eq!(killed["verdict"], serde_json::Value::Null, "{killed:#}");
    assert_eq!(killed["duration_s"], serde_json::Value::Null, "{killed:#}");
    let output = checkout.stackgate(&["history"], &[]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unfinished"),
        "{}",
        explain(&output)
    );

    // The next gate runs and is recorded as usual beside it.
    let next = local_gate(&checkout, &[], &[], 0);
    let history = checkout.history_json();
    assert_eq!(history["runs"].as_array().unwrap().len(), 2, "{history:#}");
    assert_eq!(run_of(&history, &next)["verdict"], "passed", "{history:#}");
    assert_eq!(
        run_of(&history, &run_id)["verdict"],
        serde_json::Value::Null,
        "{history:#}"
    );
}

/// SIGKILLs the gate this test started, then what it left: the blocking pytest, by its process
/// group when the harness gave it one of its own (never the test binary's group), else by pid.
fn kill(gate: &mut Child, pytest_pid: i32, pytest_group: i32) {
    gate.kill().unwrap();
    gate.wait().unwrap();
    // SAFETY: getpgrp has no preconditions; kill only signals the processes named.
    unsafe {
        if pytest_group > 1 && pytest_group != libc::getpgrp() {
            libc::kill(-pytest_group, libc::SIGKILL);
        } else {
            libc::kill(pytest_pid, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pytest_pid) {
        assert!(
            Instant::now() < deadline,
            "waiting for pytest {pytest_pid} to be gone"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `pid` is a process that is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

#[test]
fn a_test_that_fails_every_other_run_is_flagged_flaky_and_a_steady_one_is_not() {
    if crate::require::python().is_none() {
        return;
    }
    let checkout = Checkout::new();
    let counter_dir = tempfile::tempdir().unwrap();
    let counter = counter_dir.path().join("count");
    let env = [("HISTORY_COUNTER", counter.to_str().unwrap())];
    for run in 1..=6 {
        // Odd runs fail the alternating test, and so the gate.
        let code = if run % 2 == 1 { 1 } else { 0 };
        local_gate(&checkout, &["--suite", "checks"], &env, code);
    }
    let history = checkout.history_json();
    assert_eq!(history["runs"].as_array().unwrap().len(), 6, "{history:#}");
    let alternating = test_of(&history, "checks", "test_alternates");
    assert_eq!(
        (&alternating["passed"], &alternating["failed"]),
        (&3.into(), &3.into()),
        "{alternating:#}"
    );
    assert_eq!(alternating["flaky"], true, "{alternating:#}");
    assert!(
        alternating["flaky_because"]
            .as_str()
            .is_some_and(|why| why.contains("same commit")),
        "{alternating:#}"
    );
    let steady = test_of(&history, "checks", "test_steady");
    assert_eq!(steady["passed"], 6, "{steady:#}");
    assert_eq!(steady["flaky"], false, "{steady:#}");
    assert_eq!(steady["pass_rate"], 1.0, "{steady:#}");
}

/// A docker gate of the checkout's one-service stack (suite `checks` only) that must pass; its
/// output.
fn docker_gate(checkout: &Checkout, env: &[(&str, &str)]) -> Output {
    let report = Report::new();
    let output = checkout
        .gate(&report, &["--target", "docker", "--suite", "checks"], env)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = report.text();
    assert!(xml.contains("service ticker healthy"), "{xml}");
    output
}

#[test]
fn history_html_names_the_services_and_needs_nothing_from_outside() {
    if !crate::support::engine_available() || crate::require::python().is_none() {
        return;
    }
    let checkout = Checkout::new();
    docker_gate(&checkout, &[]);
    let page_path = checkout.root().join("history.html");
    let output = checkout
        .stackgate(&["history", "--html", "history.html"], &[])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let page = std::fs::read_to_string(&page_path)
        .unwrap_or_else(|e| panic!("no page at {}: {e}", page_path.display()));
    assert!(
        page.contains("ticker"),
        "the page does not name the service:\n{page}"
    );
    assert!(page.contains("<svg"), "no inline SVG:\n{page}");
    assert!(!page.contains("<script"), "{page}");
    for attribute in ["src=", "href=", "url("] {
        for quote in ["", "\"", "'"] {
            for scheme in ["http://", "https://", "//"] {
                let outside = format!("{attribute}{quote}{scheme}");
                assert!(
                    !page.contains(&outside),
                    "the page fetches from outside ({outside}):\n{page}"
                );
            }
        }
    }
    assert!(checkout.history_db().is_file());
}

#[test]
fn a_slowed_down_service_is_named_as_a_regression_by_the_next_gate() {
    if !crate::support::engine_available() || crate::require::python().is_none() {
        return;
    }
    let checkout = Checkout::new();
    // As many fast runs as a verdict needs (`Thresholds::min_runs`, 3).
    // Each has fewer earlier runs than that: no verdict yet.
    for _ in 1..=3 {
        let output = docker_gate(&checkout, &[("DELAY", "0")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("regression:"),
            "a regression with fewer than 3 earlier runs:\n{stderr}"
        );
    }
    let output = docker_gate(&checkout, &[("DELAY", "4")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|line| line.contains("regression: ticker: healthy in"))
        .unwrap_or_else(|| panic!("the slowed service is not named:\n{}", explain(&output)));
    // "healthy in 4.1 s, median of the last 3 runs 0.6 s"
    let seconds: f64 = line
        .split("healthy in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    assert!(seconds >= 4.0, "{line}");
    assert!(line.contains("median of the last 3 runs"), "{line}");
    // `history` names it too, for the newest run.
    let history = checkout.history_json();
    assert!(
        history["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "service" && f["name"] == "ticker"),
        "{history:#}"
    );
}
