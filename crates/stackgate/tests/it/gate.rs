//! The gate end to end, against the real engine, on a stack written by someone else
//! (`fixtures/gate`): docker (its report.html rendered in Chromium, its trace, its logs), the
//! local fallback, a failing test (on GitHub: the step summary and annotations), suite
//! arguments, forced targets, Ctrl-C.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{
    engine_available, explain, gate_fixture as fixture, labelled, run_id_of, xmllint_valid, Report,
};

fn gate(report: &Report, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = crate::support::stackgate();
    command
        .arg("--config")
        .arg(fixture().join("harness.toml"))
        .arg("mission-critical")
        .arg("--junit")
        .arg(report.path());
    command.args(args).env_remove("GITHUB_STEP_SUMMARY");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

/// Containers, networks and volumes still carrying a run's label.
fn leftovers(run_id: &str) -> Vec<String> {
    labelled(&format!("io.xtask.run-id={run_id}"))
}

#[test]
fn docker_target_passes_and_reports_every_step() {
    if !engine_available() {
        return;
    }
    let report = Report::new();
    let output = gate(&report, &[], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = report.text();
    xmllint_valid(&report.path());
    for expected in [
        "preflight: port 2375 free",
        "smoke container",
        "service cache healthy",
        "service web healthy",
        "test_health",
        "test_web_container_runs_under_the_run_project",
        "name=\"target\" value=\"docker\"",
    ] {
        assert!(xml.contains(expected), "report lacks {expected}:\n{xml}");
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mission-critical: PASSED"), "{stderr}");
    // Each test named as it finished, before its suite's line.
    let test_line = stderr
        .find("web  PASS  test_health")
        .unwrap_or_else(|| panic!("no live line for test_health:\n{stderr}"));
    assert!(test_line < stderr.find("suite web:").unwrap(), "{stderr}");
    let run_id = run_id_of(&xml);
    assert!(
        leftovers(&run_id).is_empty(),
        "teardown left resources behind"
    );

    // The run's directory: every service's log (from start to teardown), the suite's whole
    // output, the report and the trace.
    let run_dir = fixture().join("target/xtask/runs").join(&run_id);
    for service in ["cache", "web"] {
        let log = std::fs::read_to_string(run_dir.join(format!("logs/{service}.log")))
            .unwrap_or_else(|e| panic!("no log of {service}: {e}"));
        assert!(log.contains("started"), "{service}: {log}");
        assert!(log.contains("healthy"), "{service}: {log}");
        // The web server prints nothing; redis does.
        assert!(
            service != "cache" || log.contains("Ready to accept connections"),
            "the container's own output is kept: {log}"
        );
    }
    let suite_log = std::fs::read_to_string(run_dir.join("suites/web.log")).unwrap();
    assert!(suite_log.contains("passed"), "{suite_log}");
    let trace: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("trace.json")).unwrap())
            .unwrap();
    let events = trace["traceEvents"].as_array().unwrap();
    for name in ["stack ok", "healthy", "test_health"] {
        assert!(
            events.iter().any(|e| e["ph"] == "X" && e["name"] == name),
            "no complete event {name} in the trace"
        );
    }
    let report = run_dir.join("report.html");
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("PASSED") && html.contains("logs/web.log"),
        "{html}"
    );

    // As a person sees it: Chromium renders it, the verdict and every lane are in its DOM.
    let Some(chromium) = crate::require::program("chromium", &["--version"]) else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("report.png");
    let headless = |extra: &[&std::ffi::OsStr]| {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1400,2000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", report.display()))
            .output()
            .unwrap()
    };
    let dom = headless(&["--dump-dom".as_ref()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("class=\"verdict pass\""), "{dom}");
    for lane in ["preflight", "stack", "teardown", "cache", "web"] {
        assert!(
            dom.contains(&format!("title=\"{lane}\">{lane}")),
            "no lane {lane} in the rendered page"
        );
    }
    let screenshot = format!("--screenshot={}", shot.display());
    let out = headless(&[screenshot.as_ref()]);
    let png =
        std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {}", explain(&out)));
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        png.len()
    );
}

#[test]
fn a_failing_test_fails_the_gate_and_is_named_with_its_output() {
    if !engine_available() {
        return;
    }
    let report = Report::new();
    // As on GitHub Actions: a step summary to append to, annotations on stdout.
    let summary = report.0.path().join("step-summary.md");
    let workspace = fixture();
    let output = gate(
        &report,
        &[],
        &[
            ("FIXTURE_FAIL", "1"),
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
            ("GITHUB_WORKSPACE", workspace.to_str().unwrap()),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let xml = report.text();
    assert!(xml.contains("test_fails_when_asked"), "{xml}");
    let markdown = std::fs::read_to_string(&summary).unwrap();
    assert!(markdown.contains("### Failed tests (1)"), "{markdown}");
    assert!(
        markdown.contains("| web | test_fails_when_asked | AssertionError: failing on purpose"),
        "{markdown}"
    );
    let source = std::fs::read_to_string(workspace.join("tests/test_web.py")).unwrap();
    let line = source
        .lines()
        .position(|l| l.contains("failing on purpose"))
        .unwrap()
        + 1;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let annotation =
        format!("::error file=tests/test_web.py,line={line},title=web test_fails_when_asked::");
    assert!(
        stdout.contains(&annotation),
        "{annotation}\n{}",
        explain(&output)
    );
    assert!(
        xml.contains("failing on purpose"),
        "the failure's output must be in the report:\n{xml}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("mission-critical: FAILED"));
    assert!(
        leftovers(&run_id_of(&xml)).is_empty(),
        "teardown left resources behind"
    );
}

#[test]
fn without_an_engine_it_falls_back_to_local() {
    let report = Report::new();
    let output = gate(
        &report,
        &[],
        &[("DOCKER_HOST", "unix:///nonexistent/xtask-test/docker.sock")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = report.text();
    xmllint_valid(&report.path());
    assert!(xml.contains("name=\"target\" value=\"local\""), "{xml}");
    assert!(xml.contains("test_health"), "{xml}");
    // The docker-marked test is listed as skipped with the reason, not silently dropped.
    let docker_case = xml
        .find("test_web_container_runs_under_the_run_project")
        .expect("docker test listed");
    assert!(
        xml[docker_case..]
            .split("</testcase>")
            .next()
            .unwrap()
            .contains("skipped"),
        "{xml}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("target: local"), "{stderr}");
    // The local process is gone.
    assert!(
        std::net::TcpStream::connect("127.0.0.1:18480").is_err(),
        "the local web process still listens"
    );
}

#[test]
fn suite_arguments_reach_the_runner_and_the_rest_is_reported_skipped() {
    if crate::require::python().is_none() {
        return;
    }
    let report = Report::new();
    let output = gate(
        &report,
        &[
            "--target",
            "local",
            "--suite",
            "web",
            "--json",
            "--",
            "-k",
            "test_health",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = report.text();
    xmllint_valid(&report.path());
    let echoes = xml.find("test_echoes_the_path").expect("listed");
    assert!(
        xml[echoes..]
            .split("</testcase>")
            .next()
            .unwrap()
            .contains("deselected by the arguments `-k test_health`"),
        "{xml}"
    );
    // --json: one object on stdout, `passed` at the top.
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {}", explain(&output)));
    assert_eq!(json["passed"], true, "{json}");
    assert_eq!(json["suites"][0]["passed"], 1, "{json}");
    assert!(std::path::Path::new(json["report"].as_str().unwrap()).is_file());
}

#[test]
fn forced_docker_without_an_engine_exits_3() {
    let report = Report::new();
    let output = gate(
        &report,
        &["--target", "docker"],
        &[("DOCKER_HOST", "unix:///nonexistent/xtask-test/docker.sock")],
    );
    assert_eq!(output.status.code(), Some(3), "{}", explain(&output));
    // The report exists on this path too, and lists the suite's tests as skipped.
    let xml = report.text();
    assert!(xml.contains("test_health"), "{xml}");
}

#[test]
fn ctrl_c_tears_down_and_reports_interrupted() {
    if !engine_available() {
        return;
    }
    let report = Report::new();
    let mut child = crate::support::stackgate()
        .arg("--config")
        .arg(fixture().join("harness.toml"))
        .args(["mission-critical", "--junit"])
        .arg(report.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the stack stage has begun (its containers exist).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut saw_stack = false;
    while Instant::now() < deadline {
        // Its own containers: other tests run gates of the same fixture at the same time.
        let owner = format!("label=io.xtask.pid={}", child.id());
        let out = Command::new("docker")
            .args(["ps", "-q", "--filter", "label=io.xtask.project=gatefix"])
            .args(["--filter", &owner])
            .output()
            .unwrap();
        if !out.stdout.is_empty() {
            saw_stack = true;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    assert!(saw_stack, "the stack never started: {}", explain(&output));
    assert_eq!(output.status.code(), Some(130), "{}", explain(&output));
    let xml = report.text();
    assert!(xml.contains("name=\"interrupted\" value=\"true\""), "{xml}");
    assert!(
        leftovers(&run_id_of(&xml)).is_empty(),
        "interrupted run left resources behind"
    );
}

#[test]
fn a_failed_smoke_container_fails_the_gate_after_the_stack_it_overlapped_is_down() {
    if !engine_available() {
        return;
    }
    // The fixture with a smoke image that exists nowhere; the Python environment is shared.
    let dir = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixture(), dir.path());
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/xtask/fixture-venv");
    let text = std::fs::read_to_string(dir.path().join("harness.toml"))
        .unwrap()
        .replace(
            "smoke_fallback_image = \"debian:bookworm-slim\"",
            "smoke_image = \"xtask-no-such-image:smoke\"\nsmoke_fallback_image = \"xtask-no-such-image:fallback\"",
        )
        // Its own project: the Ctrl-C test watches for containers of `gatefix`.
        .replace("name = \"gatefix\"", "name = \"gatesmoke\"")
        .replace(
            "venv = \"../../../../../target/xtask/fixture-venv\"",
            &format!("venv = {:?}", venv.display().to_string()),
        );
    let config = dir.path().join("harness.toml");
    std::fs::write(&config, text).unwrap();
    let report = Report::new();
    let output = crate::support::stackgate()
        .arg("--config")
        .arg(&config)
        .args(["mission-critical", "--junit"])
        .arg(report.path())
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let xml = report.text();
    xmllint_valid(&report.path());
    let smoke = xml
        .find("name=\"engine: smoke container\"")
        .expect("smoke container case");
    assert!(
        xml[smoke..]
            .split("</testcase>")
            .next()
            .unwrap()
            .contains("<failure"),
        "{xml}"
    );
    // The stack came up beside it, was reported, and is gone; the suite is listed as skipped.
    assert!(xml.contains("service web healthy"), "{xml}");
    let case = xml.find("test_health").expect("suite cases listed");
    assert!(
        xml[case..]
            .split("</testcase>")
            .next()
            .unwrap()
            .contains("the smoke container failed"),
        "{xml}"
    );
    assert!(
        leftovers(&run_id_of(&xml)).is_empty(),
        "teardown left resources behind"
    );
}
