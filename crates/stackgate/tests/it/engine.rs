//! Engine restoration and base images against real engines: a PRIVATE dockerd (own socket, pid
//! file, data and exec roots, its own network namespace; [crate::daemons]) for the
//! stop/start/kill -9 cycle, the machine's shared
//! daemon only for read-only checks and for images this test creates and removes, and the
//! machine's daemon itself only when `XTASK_OWNS_ENGINE=1` (`owned_engine_` tests, run by `ci`).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use stackgate::config::Config;
use stackgate::engine::{self, DiscoveryEnv, EnsureOptions, Platform, SmokeRun};
use stackgate::error::{exit_kind_of, ExitKind};
use stackgate::progress::Progress;
use stackgate::report::Outcome;
use stackgate::state;

use crate::daemons::{copy_image, Dockerd, DockerdOptions};
use crate::require;

/// A progress handle that keeps what it is told, for asserting what a step said.
pub fn recording() -> (Progress, Arc<Mutex<Vec<String>>>) {
    let said = Arc::new(Mutex::new(Vec::new()));
    let progress = {
        let said = said.clone();
        Progress::to(move |message| said.lock().unwrap().push(message.to_owned()))
    };
    (progress, said)
}

/// A harness.toml in `dir` (so target/xtask is under it) with `engine` as its [engine] table body.
pub fn config_in(dir: &Path, engine: &str, images: &str) -> Config {
    let path = dir.join("harness.toml");
    let text = format!("[project]\nname = \"xtaskit\"\n\n[engine]\n{engine}\n{images}");
    std::fs::write(&path, &text).unwrap();
    stackgate::config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn env_for(socket: &Path) -> DiscoveryEnv {
    DiscoveryEnv {
        docker_host: Some(format!("unix://{}", socket.display())),
        platform: Platform::Linux,
        ..DiscoveryEnv::default()
    }
}

fn outcome_of(checks: &[stackgate::report::Check], name: &str) -> Option<Outcome> {
    checks.iter().find(|c| c.name == name).map(|c| c.outcome)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_daemon_is_started_smoked_stopped_and_restored_after_kill_9() {
    let Some(()) = require::root() else { return };
    let Some(_) = require::dockerd() else { return };
    // The source of the smoke image: the private daemon reaches no registry.
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let daemon = Dockerd::prepare(DockerdOptions::default());
    let options = EnsureOptions::default();
    let quiet = Progress::silent();

    // 1. Nothing runs at the private socket: the harness starts dockerd and measures it, and
    //    says what it does through the progress handle (never on the terminal itself).
    assert!(!daemon.socket.exists());
    let (progress, said) = recording();
    let began = Instant::now();
    let restored = engine::restore_with(&daemon.config, &options, &daemon.env(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{}", stackgate::error::render(&e)));
    let starting = format!(
        "starting the engine for unix://{}: `",
        daemon.socket.display()
    );
    assert!(
        said.lock()
            .unwrap()
            .iter()
            .any(|m| m.starts_with(&starting)),
        "{:?}",
        said.lock().unwrap()
    );
    let elapsed = began.elapsed();
    eprintln!(
        "private dockerd answered {:.3}s after ensure_running began ({:.3}s total with connect)",
        restored.engine.info.time_to_answer.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    let pid = restored.pid.expect("the spawned dockerd's pid");
    assert_eq!(restored.start_method.as_deref(), Some("dockerd"));
    assert!(restored.engine.info.started_by_harness);
    assert_eq!(
        restored.engine.info.host,
        format!("unix://{}", daemon.socket.display())
    );
    assert!(!restored.engine.info.api_version.is_empty());
    assert!(!restored.engine.info.storage_driver.is_empty());
    assert_eq!(
        outcome_of(&restored.checks, "engine start"),
        Some(Outcome::Passed)
    );
    assert_eq!(
        outcome_of(&restored.checks, "engine response time"),
        Some(Outcome::Passed)
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "dockerd"
    );
    let recorded = state::Store::of(&daemon.config)
        .read()
        .unwrap()
        .engine
        .unwrap();
    assert!(recorded.started_by_harness);
    assert_eq!(recorded.pid, Some(pid));
    assert_eq!(recorded.start_method.as_deref(), Some("dockerd"));
    assert!(daemon.config.work_dir().join("dockerd.log").is_file());

    // 2. The smoke container: hello-world cannot be pulled, the fallback runs `true`; nothing is left.
    copy_image(&machine, &restored.engine.docker, "debian:bookworm-slim").await;
    let run = SmokeRun::new(state::new_run_id());
    let smoke = engine::smoke(&restored.engine, &daemon.config, &run, &quiet).await;
    assert_eq!(smoke.outcome, Outcome::Passed, "{smoke:?}");
    assert!(
        smoke.detail.contains("debian:bookworm-slim"),
        "{}",
        smoke.detail
    );
    let left = restored
        .engine
        .docker
        .list_containers(Some(bollard::query_parameters::ListContainersOptions {
            all: true,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(left.is_empty(), "smoke container left behind: {left:?}");
    let networks = engine::list_networks(&restored.engine).await.unwrap();
    assert!(networks.contains(&"none".to_owned()), "{networks:?}");

    // 3. A second call finds it running and does not start another.
    let again = engine::restore_with(&daemon.config, &options, &daemon.env(), &quiet)
        .await
        .unwrap();
    assert!(again.start_method.is_none());
    assert!(
        again.engine.info.started_by_harness,
        "state.json says the harness started it"
    );

    // 4. Stop: only what the harness started, and the process is gone.
    let stop = engine::stop_started_engine(&daemon.config, &quiet)
        .await
        .unwrap();
    assert_eq!(stop.outcome, Outcome::Passed, "{stop:?}");
    assert!(
        engine::process_gone(pid),
        "dockerd {pid} still runs after stop"
    );
    assert!(state::Store::of(&daemon.config)
        .read()
        .unwrap()
        .engine
        .is_none());
    let not_ours = engine::stop_started_engine(&daemon.config, &quiet)
        .await
        .unwrap();
    assert_eq!(not_ours.outcome, Outcome::Skipped);
    assert!(
        not_ours.detail.contains("not started by the harness"),
        "{}",
        not_ours.detail
    );

    // 5. The command itself, as a person runs it (the binary, DOCKER_HOST at the private socket).
    let began = Instant::now();
    let output = crate::support::stackgate()
        .args(["--config"])
        .arg(&daemon.config.path)
        .args(["docker-up", "--engine-only", "--json"])
        .env("DOCKER_HOST", format!("unix://{}", daemon.socket.display()))
        .output()
        .unwrap();
    let wall = began.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "docker-up --engine-only failed:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert_eq!(report["start_method"], "dockerd");
    eprintln!(
        "`docker-up --engine-only`: engine answered {}s after the harness began; whole command {:.3}s (smoke included)",
        report["engine"]["time_to_answer"],
        wall.as_secs_f64()
    );
    assert!(stderr.contains("storage driver"), "{stderr}");
    let pid = report["pid"].as_u64().unwrap() as u32;

    // 6. kill -9: the pid file stays behind; the harness reports it, removes it and restores.
    // SAFETY: the private dockerd this test started.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let began = Instant::now();
    while !engine::process_gone(pid) && began.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(engine::process_gone(pid));
    assert!(
        daemon.pid_file.exists(),
        "dockerd killed with -9 leaves its pid file"
    );
    let (progress, said) = recording();
    let restored = engine::restore_with(&daemon.config, &options, &daemon.env(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{}", stackgate::error::render(&e)));
    assert!(
        said.lock()
            .unwrap()
            .iter()
            .any(|m| m.starts_with("stale pid file")),
        "{:?}",
        said.lock().unwrap()
    );
    let stale = restored
        .checks
        .iter()
        .find(|c| c.name == "stale pid file")
        .expect("a stale pid file check");
    assert!(stale.detail.contains(&pid.to_string()), "{}", stale.detail);
    assert!(stale
        .detail
        .contains(&daemon.pid_file.display().to_string()));
    let new_pid = restored.pid.unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(
        engine::stop_started_engine(&daemon.config, &quiet)
            .await
            .unwrap()
            .outcome,
        Outcome::Passed
    );
    assert!(engine::process_gone(new_pid));
}

#[tokio::test]
async fn dead_docker_host_without_start_is_unavailable_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("nothing-here/docker.sock");
    let config = config_in(dir.path(), "start_if_stopped = false\n", "");
    let error = engine::restore_with(
        &config,
        &EnsureOptions::default(),
        &env_for(&socket),
        &Progress::silent(),
    )
    .await
    .expect_err("no engine can be had");
    assert_eq!(exit_kind_of(&error), ExitKind::Unavailable);
    let text = stackgate::error::render(&error);
    assert!(text.contains(&socket.display().to_string()), "{text}");
    assert!(text.contains("socket does not exist"), "{text}");
    assert!(text.contains("start_if_stopped"), "{text}");

    // The command: exit 3, the socket named on stderr.
    let output = crate::support::stackgate()
        .arg("--config")
        .arg(&config.path)
        .args(["docker-up", "--engine-only"])
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&socket.display().to_string()), "{stderr}");
    assert!(state::Store::of(&config).read().unwrap().engine.is_none());
}

/// `XTASK_OWNS_ENGINE=1` (set by `cargo xtask ci`, which runs these last and alone): stops the
/// machine's dockerd and proves that `docker-up --engine-only` brings it back.
#[test]
fn owned_engine_machine_daemon_is_restored_by_docker_up() {
    if std::env::var("XTASK_OWNS_ENGINE").as_deref() != Ok("1") {
        return require::skip(
            "XTASK_OWNS_ENGINE is not 1: the machine's daemon is not ours to stop",
        );
    }
    let Some(()) = require::root() else { return };
    let Some(_) = require::dockerd() else { return };
    let repo_config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../harness.toml");
    let pid_file = Path::new(engine::DEFAULT_PID_FILE);
    if let Ok(text) = std::fs::read_to_string(pid_file) {
        let pid: u32 = text.trim().parse().unwrap();
        if !engine::process_gone(pid) {
            // SAFETY: XTASK_OWNS_ENGINE says this machine's daemon belongs to the harness run.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let began = Instant::now();
            while !engine::process_gone(pid) {
                assert!(
                    began.elapsed() < Duration::from_secs(120),
                    "dockerd {pid} did not stop"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!(
                "stopped the machine's dockerd {pid} in {:.2}s",
                began.elapsed().as_secs_f64()
            );
        }
    }
    let began = Instant::now();
    let output = crate::support::stackgate()
        .arg("--config")
        .arg(&repo_config)
        .args(["docker-up", "--engine-only", "--json"])
        .env_remove("DOCKER_HOST")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "docker-up --engine-only did not restore the engine:\n{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["passed"], true, "{report:#}");
    assert!(report["start_method"].is_string(), "{report:#}");
    eprintln!(
        "machine dockerd restored with `{}`: answered {}s after the harness began; command {:.2}s",
        report["start_method"],
        report["engine"]["time_to_answer"],
        began.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn installed_packages_are_not_installed_again() {
    let Some(_) = require::program("dpkg-query", &["--version"]) else {
        return;
    };
    assert!(engine::package_installed("dpkg").await);
    assert!(!engine::package_installed("xtask-no-such-package").await);
    // Nothing missing: no apt-get, no root needed, nothing said.
    let (progress, said) = recording();
    let installed = engine::install_packages(&["dpkg"], &progress)
        .await
        .unwrap();
    assert!(!installed);
    assert!(
        said.lock().unwrap().is_empty(),
        "{:?}",
        said.lock().unwrap()
    );
}
