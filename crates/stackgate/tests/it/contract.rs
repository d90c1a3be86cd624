//! The command line's contract, command by command: `--json` prints one object with a
//! top-level `passed` (an error before any work too), "no recorded run" is one exit code (2) in
//! `health`, `ws-check` and `monitor`, and Ctrl-C ends `monitor` with 130.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::explain;

/// A project of its own whose endpoints need the published port of a stack nobody started.
fn project(dir: &Path, ws_url: &str) -> std::path::PathBuf {
    let path = dir.join("harness.toml");
    std::fs::write(
        dir.join("compose.yaml"),
        "services:\n  web:\n    image: debian:bookworm-slim\n",
    )
    .unwrap();
    std::fs::write(
        &path,
        format!(
            "[project]\nname = \"contract\"\n\n[engine]\nrespond_within_s = 5\n\n\
             [stack]\ncompose_file = \"compose.yaml\"\nservices = [\"web\"]\n\n\
             [endpoints]\nweb_ws = \"{ws_url}\"\n\n\
             [ws_check]\nurl = \"{{web_ws}}\"\nsend = \"hi\"\nexpect = [\"hello\"]\ntimeout_s = 1\nconnect_timeout_s = 1\n"
        ),
    )
    .unwrap();
    path
}

fn xtask(config: &Path, args: &[&str]) -> Output {
    crate::support::stackgate()
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn without_a_recorded_run_health_ws_check_and_monitor_all_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path(), "ws://127.0.0.1:{port:web:8080}/ws");
    for args in [
        &["health"][..],
        &["ws-check"],
        &["monitor", "--every", "1s", "--for", "2s"],
    ] {
        let output = xtask(&config, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            explain(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("no run is recorded"), "{args:?}: {stderr}");
        assert!(
            stderr.contains("(hint: run `cargo xtask docker-up` first"),
            "{stderr}"
        );
    }
    // With --json, the answer is still one object on stdout.
    let output = xtask(&config, &["health", "--json"]);
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["passed"], false, "{json}");
}

#[test]
fn an_error_before_any_work_is_still_one_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path(), "ws://127.0.0.1:9/ws");
    for args in [
        &["mission-critical", "--json", "--suite", "no-such-suite"][..],
        &[
            "junit-merge",
            "--json",
            "-o",
            "out.xml",
            "/nonexistent/in.xml",
        ],
        &["docker-down", "--json", "--run", "no-such-run"],
    ] {
        let output = xtask(&config, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            explain(&output)
        );
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!("{args:?}: not one JSON object ({e}): {}", explain(&output))
        });
        assert_eq!(json["passed"], false, "{json}");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
}

#[test]
fn ctrl_c_ends_monitor_with_130_after_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    // Endpoints that need no stack: monitor watches (and finds nothing listening).
    let config = project(dir.path(), "ws://127.0.0.1:9/ws");
    let child = crate::support::stackgate()
        .arg("--config")
        .arg(&config)
        .args(["monitor", "--every", "1s", "--for", "1h", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the first round was said (or after 20 s at most).
    let log = dir.path().join("target/xtask");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let round_logged = std::fs::read_dir(&log).ok().is_some_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                e.file_name().to_string_lossy().starts_with("monitor-")
                    && std::fs::metadata(e.path()).is_ok_and(|m| m.len() > 0)
            })
        });
        if round_logged {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling the child this test started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", explain(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["interrupted"], true, "{json}");
    assert_eq!(json["passed"], false, "{json}");
}
