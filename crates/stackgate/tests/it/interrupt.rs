//! Cancelling the gate, as CI does (SIGINT, then SIGTERM): the interrupt loop's short form on the
//! gate fixture, and signals during a teardown whose container outlasts its grace.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::support::{
    engine_available, gate_fixture as fixture, labelled, repo_root, run_id_of, xmllint_valid,
};

/// `bench/interrupt-loop.sh` on the fixture, a few moments: each run exits 130, writes a valid
/// report that says interrupted, and leaves nothing with its run id. The script checks all of
/// that per run; times are only printed (no budget here).
#[test]
fn the_interrupt_loop_on_the_fixture_ends_every_run_clean() {
    if crate::require::engine().is_none()
        || crate::require::program("docker", &["version"]).is_none()
        || crate::require::program("bash", &["--version"]).is_none()
        || crate::require::xmllint().is_none()
    {
        return;
    }
    let output = Command::new("bash")
        .arg(repo_root().join("bench/interrupt-loop.sh"))
        .arg(fixture().join("harness.toml"))
        .env("XTASK", env!("CARGO_BIN_EXE_stackgate"))
        .env("MOMENTS", "stack+0.5:INT suites+0:TERM teardown+0:INT")
        .env("BUDGET_S", "none")
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let explain = format!(
        "status {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{explain}");
    let runs: Vec<&str> = stdout.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(runs.len(), 3, "{explain}");
    for run in runs {
        assert!(
            run.ends_with(": ok") && run.contains("exit 130"),
            "{explain}"
        );
    }
    assert!(stdout.contains("3/3 runs clean"), "{explain}");
}

/// The gate on a copy of the fixture whose web service ignores SIGTERM and asks for a grace of
/// ten minutes (`stop_grace_period: 10m`), with `stack.interrupt_stop_timeout_s` as given.
struct Stubborn {
    dir: tempfile::TempDir,
    report: PathBuf,
}

impl Stubborn {
    fn new(project: &str, interrupt_stop_timeout_s: u64) -> Stubborn {
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&fixture(), dir.path());
        let venv = repo_root().join("target/xtask/fixture-venv");
        let edit = |file: &str, from: &str, to: &str| {
            let path = dir.path().join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} no longer holds {from:?}");
            std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        };
        edit(
            "harness.toml",
            "name = \"gatefix\"",
            &format!("name = \"{project}\""),
        );
        edit(
            "harness.toml",
            "venv = \"../../../../../target/xtask/fixture-venv\"",
            &format!("venv = {:?}", venv.display().to_string()),
        );
        edit(
            "harness.toml",
            "service_budget_s = 60",
            &format!(
                "service_budget_s = 60\ninterrupt_stop_timeout_s = {interrupt_stop_timeout_s}"
            ),
        );
        edit(
            "compose.yaml",
            "    build: { context: ., dockerfile: web.Dockerfile }",
            "    build: { context: ., dockerfile: web.Dockerfile }\n    stop_grace_period: 10m",
        );
        edit(
            "web/server.py",
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))",
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)",
        );
        let report = dir.path().join("junit.xml");
        Stubborn { dir, report }
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("harness.toml")
    }

    fn start(&self) -> Gate {
        let mut child = crate::support::stackgate()
            .arg("--config")
            .arg(self.config())
            .args(["mission-critical", "--junit"])
            .arg(&self.report)
            .env_remove("GITHUB_STEP_SUMMARY")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Gate {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// `docker-down --all` on the copy: its runs, kept or left, and its images.
    fn remove_everything(&self) -> std::process::Output {
        crate::support::stackgate()
            .arg("--config")
            .arg(self.config())
            .args(["docker-down", "--all"])
            .output()
            .unwrap()
    }
}

impl Drop for Stubborn {
    fn drop(&mut self) {
        // The copy's images (its own per-checkout tags) and anything a failed test left.
        let _ = self.remove_everything();
    }
}

/// A running gate and what it printed so far.
struct Gate {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Gate {
    /// Waits (at most 5 minutes: a cold image build) for a line the gate prints.
    fn wait_for(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if self.seen.iter().any(|line| line.contains(what)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.child.kill();
                    panic!("no {what:?} within 5 minutes:\n{}", self.seen.join("\n"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the gate ended before {what:?}:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Its exit code and everything it printed.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        self.seen.extend(self.lines.iter());
        (status.code(), self.seen.join("\n"))
    }

    /// The grace label on the run's web container (its `stop_grace_period`, in seconds).
    fn web_grace_label(&self) -> String {
        let run_id = run_id_printed(&self.seen.join("\n"));
        let out = Command::new("docker")
            .args(["ps", "--format", "{{.Label \"io.xtask.stop-grace-s\"}}"])
            .arg("--filter")
            .arg(format!("label=io.xtask.run-id={run_id}"))
            .args(["--filter", "label=com.docker.compose.service=web"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The run id the gate printed first (`mission-critical: run ID (CONFIG)`).
fn run_id_printed(stderr: &str) -> String {
    stderr
        .split("mission-critical: run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id printed:\n{stderr}"))
        .to_owned()
}

/// A signal during the teardown of a passed run: the container that ignores SIGTERM does not get
/// its ten minutes; it is killed after the short timeout, the run counts as interrupted (exit
/// 130), the report says so and names the kill, and nothing is left.
#[test]
fn a_signal_during_teardown_kills_what_outlasts_the_short_timeout() {
    if !engine_available() {
        return;
    }
    let stubborn = Stubborn::new("gateslow", 1);
    let mut gate = stubborn.start();
    gate.wait_for("── teardown");
    // The normal path honours the service's stop_grace_period: the container carries it.
    assert_eq!(gate.web_grace_label(), "600");
    gate.signal(libc::SIGINT);
    let (code, stderr) = gate.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted during teardown"), "{stderr}");
    let xml = std::fs::read_to_string(&stubborn.report).expect("the report is written");
    xmllint_valid(&stubborn.report);
    assert!(xml.contains("name=\"interrupted\" value=\"true\""), "{xml}");
    assert!(
        xml.contains("killed web (not stopped within 1.00s after the interrupt)"),
        "{xml}"
    );
    assert_eq!(
        labelled(&format!("io.xtask.run-id={}", run_id_of(&xml))),
        Vec::<String>::new()
    );
}

/// Interrupted again during teardown: what has not stopped is killed at once (no wait for the
/// short timeout, here ten minutes too), and the harness exits 130. Either the removal finished
/// (nothing left, the report names the kill) or the harness gave up after a second and said so;
/// then what is left still carries its labels and record, and `docker-down --all` removes it.
#[test]
fn a_second_signal_during_teardown_kills_at_once_and_leaves_nothing_half_removed() {
    if !engine_available() {
        return;
    }
    let stubborn = Stubborn::new("gatetwice", 600);
    let mut gate = stubborn.start();
    gate.wait_for("── teardown");
    gate.signal(libc::SIGINT);
    gate.wait_for("interrupted during teardown");
    gate.signal(libc::SIGTERM);
    let (code, stderr) = gate.finish();
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted again: killing"), "{stderr}");
    let run_label = format!("io.xtask.run-id={}", run_id_printed(&stderr));
    let owned = labelled(&run_label);
    if stderr.contains("exiting before teardown and the report are finished") {
        let removed = stubborn.remove_everything();
        assert!(removed.status.success(), "{removed:?}");
        assert_eq!(labelled(&run_label), Vec::<String>::new());
    } else {
        assert_eq!(owned, Vec::<String>::new(), "{stderr}");
        let xml = std::fs::read_to_string(&stubborn.report).expect("the report is written");
        assert!(xml.contains("killed web (interrupted again)"), "{xml}");
        assert!(xml.contains("name=\"interrupted\" value=\"true\""), "{xml}");
    }
}
