//! An engine shared by two hosts (one checkout path, another hostname and pid namespace), and
//! an engine killed mid-suite: what the sweep leaves, and what the gate does when its engine goes.
//! The fixtures and helpers are [crate::engines]'.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use stackgate::state;

use crate::daemons::{copy_image, Dockerd, DockerdOptions};
use crate::engines::{case, containers_labelled, gate_project, Project, Tags};
use crate::require;
use crate::support::{explain, fixtures, run_id_of};

/// Runs the harness binary as another host would: in new UTS, PID and mount namespaces, under
/// the hostname `hostname`, with `checkout` bind-mounted at `at` (the same checkout path, another
/// checkout behind it).
fn as_another_host(hostname: &str, checkout: &Path, at: &Path, args: &[&str]) -> Output {
    let script = checkout.join("other-host.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nset -e\nhostname \"$1\"\nmount --bind \"$2\" \"$3\"\nshift 3\nexec \"$@\"\n",
    )
    .unwrap();
    Command::new("unshare")
        .args([
            "--uts",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
            "sh",
        ])
        .arg(&script)
        .arg(hostname)
        .arg(checkout)
        .arg(at)
        .arg(env!("CARGO_BIN_EXE_stackgate"))
        .arg("--config")
        .arg(at.join("harness.toml"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_host_sharing_the_engine_and_the_checkout_path_leaves_a_kept_run_alone() {
    let Some(()) = require::namespaces() else {
        return;
    };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    // This host keeps a run (`docker-up --isolated`); its owner, docker-up, exits.
    let here = Project::new("other-stack", "deploy/stack.yml", |t| t, |t| t);
    let up = here.xtask(&["docker-up", "--isolated", "--json"], None, &[]);
    assert!(up.status.success(), "{}", explain(&up));
    let report: serde_json::Value = serde_json::from_slice(&up.stdout).unwrap();
    let run_id = report["run_id"].as_str().unwrap().to_owned();
    let run_label = format!("{}={run_id}", state::LABEL_RUN_ID);
    let running = |docker: bollard::Docker, label: String| async move {
        let filters = std::collections::HashMap::from([
            ("label".to_owned(), vec![label]),
            ("status".to_owned(), vec!["running".to_owned()]),
        ]);
        docker
            .list_containers(Some(
                bollard::query_parameters::ListContainersOptionsBuilder::new()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .unwrap()
            .len()
    };
    assert_eq!(running(machine.clone(), run_label.clone()).await, 2);

    // Another runner: another hostname, another pid namespace (the owner's pid means nothing
    // there), its own checkout at the same path (so the same `io.xtask.root` label).
    let elsewhere = tempfile::tempdir().unwrap();
    crate::support::copy_dir(&fixtures().join("other-stack"), elsewhere.path());
    std::fs::copy(&here.config.path, elsewhere.path().join("harness.toml")).unwrap();
    let down = as_another_host(
        "xtask-other-runner",
        elsewhere.path(),
        here.path(),
        &["docker-down", "--all"],
    );
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{}", explain(&down));
    assert!(
        stderr.contains(&format!("left run {run_id}")) && stderr.contains("belongs to host"),
        "{stderr}"
    );
    assert_eq!(
        running(machine.clone(), run_label.clone()).await,
        2,
        "another host's docker-down --all removed a kept run: {stderr}"
    );
    // Only an explicit --any-host, and only for runs older than it says.
    let young = as_another_host(
        "xtask-other-runner",
        elsewhere.path(),
        here.path(),
        &["docker-down", "--all", "--any-host", "--older-than", "1h"],
    );
    assert!(young.status.success(), "{}", explain(&young));
    assert!(
        String::from_utf8_lossy(&young.stderr).contains("less than --older-than"),
        "{}",
        explain(&young)
    );
    assert_eq!(running(machine.clone(), run_label.clone()).await, 2);
    let old = as_another_host(
        "xtask-other-runner",
        elsewhere.path(),
        here.path(),
        &["docker-down", "--all", "--any-host", "--older-than", "1s"],
    );
    assert!(old.status.success(), "{}", explain(&old));
    assert!(
        String::from_utf8_lossy(&old.stderr).contains(&format!("removed run {run_id}")),
        "{}",
        explain(&old)
    );
    assert!(containers_labelled(&machine, &run_label).await.is_empty());
    // This host forgets it too (nothing is up any more).
    let here_down = here.xtask(&["docker-down", "--all"], None, &[]);
    assert!(here_down.status.success(), "{}", explain(&here_down));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_mid_suite_is_reported_lost_restored_and_its_stack_removed() {
    let Some(()) = require::namespaces() else {
        return;
    };
    let Some(_) = require::dockerd() else { return };
    let Some(_) = require::python() else { return };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let daemon = Dockerd::prepare(DockerdOptions::default());
    let private = daemon.start().await;
    let marker = daemon.dir.join("suite-started");
    let project = {
        let engine_table = daemon.engine_table.clone();
        let project = gate_project(move |text| {
            text.replace(
                "[engine]\nstart_if_stopped = false\nsmoke_fallback_image = \"debian:bookworm-slim\"",
                &format!("[engine]\n{engine_table}"),
            )
        });
        // Only tests of its own: one that passes, one that waits until the engine is killed,
        // one that never gets its turn.
        std::fs::remove_dir_all(project.path().join("tests")).unwrap();
        std::fs::create_dir_all(project.path().join("tests")).unwrap();
        std::fs::write(
            project.path().join("tests/test_engine_loss.py"),
            r#"import os
import pathlib
import time


def test_a_runs_before_the_engine_goes():
    pass


def test_b_waits_while_the_engine_is_killed():
    pathlib.Path(os.environ["FIXTURE_MARK"]).write_text("started")
    time.sleep(120)


def test_c_never_gets_its_turn():
    pass
"#,
        )
        .unwrap();
        project
    };
    assert!(
        std::fs::read_to_string(&project.config.path)
            .unwrap()
            .contains(&daemon.pid_file.display().to_string()),
        "the gate must be able to restart the private daemon"
    );
    let tags = Tags(project.build_images(&["cache", "web"]));
    for image in tags
        .0
        .iter()
        .map(String::as_str)
        .chain(["debian:bookworm-slim"])
    {
        copy_image(&machine, &private, image).await;
    }

    let report = project.path().join("junit.xml");
    let mut gate = crate::support::stackgate()
        .arg("--config")
        .arg(&project.config.path)
        .args(["mission-critical", "--junit"])
        .arg(&report)
        .env("DOCKER_HOST", daemon.unix_host())
        .env("FIXTURE_MARK", &marker)
        .env_remove("GITHUB_STEP_SUMMARY")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !marker.exists() {
        if gate.try_wait().unwrap().is_some() || Instant::now() > deadline {
            let output = gate.wait_with_output().unwrap();
            panic!("the suite never started: {}", explain(&output));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = daemon.pid().expect("the private dockerd runs");
    // SAFETY: the private dockerd this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let killed = Instant::now();
    eprintln!("killed the private dockerd at {}", stackgate::ui::clock());
    let output = tokio::task::spawn_blocking(move || gate.wait_with_output().unwrap())
        .await
        .unwrap();
    eprintln!(
        "the gate exited {:.1}s after its engine was killed",
        killed.elapsed().as_secs_f64()
    );
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let xml = std::fs::read_to_string(&report).unwrap();
    crate::support::xmllint_valid(&report);
    // One error case says so; the tests that did not run are listed with that reason.
    let lost = case(&xml, "engine: engine lost at ");
    assert!(lost.contains("<error"), "{lost}");
    eprintln!("{lost}");
    assert_eq!(
        xml.matches("name=\"engine: engine lost at").count(),
        1,
        "{xml}"
    );
    assert!(
        !case(&xml, "test_a_runs_before_the_engine_goes").contains("<skipped"),
        "{xml}"
    );
    for test in [
        "test_b_waits_while_the_engine_is_killed",
        "test_c_never_gets_its_turn",
    ] {
        let case = case(&xml, test);
        assert!(
            case.contains("<skipped") && case.contains("engine lost at"),
            "{case}"
        );
    }
    // Teardown restored the engine as at the start, then removed the stack from it.
    let restored = case(&xml, "teardown: engine restored");
    assert!(
        !restored.contains("<failure"),
        "{restored}\n{}",
        daemon.log_tail()
    );
    let down = case(&xml, "teardown: stack down");
    assert!(!down.contains("<failure"), "{down}");
    let docker = bollard::Docker::connect_with_socket(
        &daemon.socket.to_string_lossy(),
        30,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap()
    .negotiate_version()
    .await
    .unwrap();
    let run_label = format!("{}={}", state::LABEL_RUN_ID, run_id_of(&xml));
    assert_eq!(
        containers_labelled(&docker, &run_label).await,
        Vec::<String>::new()
    );
}
