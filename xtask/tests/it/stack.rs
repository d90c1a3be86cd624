//! The stack against the real engine, on small fixture stacks (tests/fixtures) built from
//! debian:bookworm-slim: a stack written by someone else, a service that exits at start, one that
//! never becomes healthy, two isolated runs at once, and leftovers of a dead run.
//!
//! Each test copies its fixture into its own temporary directory (its own repository root, so its
//! own `io.xtask.root` label and state.json) and removes everything carrying that root's label
//! when it ends, pass or fail.

use std::path::{Path, PathBuf};
use std::time::Duration;

use xtask::config::Config;
use xtask::engine::{self, Engine};
use xtask::report::Outcome;
use xtask::stack::{self, UpOptions, UpReport};
use xtask::state::{self, LABEL_ROOT, LABEL_RUN_ID};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture stack in its own root, with a project name of its own; removes what it created.
struct Fixture {
    config: Config,
    engine: Engine,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(name: &str, edit: impl Fn(String) -> String) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        crate::copy_dir(&fixtures().join(name), dir.path());
        let path = dir.path().join("harness.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        // A project name of this test's own, so that concurrent tests never share one.
        let unique = format!(
            "it{}{}",
            name.replace('-', "").chars().take(8).collect::<String>(),
            state::new_run_id().replace('-', "")
        );
        let text = text
            .lines()
            .map(|line| {
                if line.starts_with("name = ") {
                    format!("name = \"{}\"", &unique[..unique.len().min(40)])
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, edit(text)).unwrap();
        let config = xtask::config::load(Some(&path)).unwrap();
        let engine = engine::connect(&config)
            .await
            .expect("these tests need the engine at /var/run/docker.sock");
        Fixture {
            config,
            engine,
            _dir: dir,
        }
    }

    fn root_label(&self) -> String {
        format!("{LABEL_ROOT}={}", state::root_digest(&self.config.root))
    }

    async fn labelled(&self, label: &str) -> stack::Labelled {
        stack::find_labelled(&self.engine.docker, label)
            .await
            .unwrap()
    }

    async fn up(&self, options: UpOptions) -> UpReport {
        stack::up(&self.config, &self.engine, &options)
            .await
            .unwrap_or_else(|e| panic!("up could not start: {e:#}"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Everything under this root's label, whatever the test did; a thread of its own because
        // the test's runtime is busy dropping us.
        let docker = self.engine.docker.clone();
        let label = self.root_label();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(found) = stack::find_labelled(&docker, &label).await {
                    stack::remove_labelled(&docker, &found).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

fn describe(report: &UpReport) -> String {
    report
        .checks()
        .map(|c| {
            format!(
                "{} {:?} {} {}",
                c.name,
                c.outcome,
                c.detail,
                c.output.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stack_comes_up_from_its_own_config_and_down_leaves_nothing() {
    // Non-isolated, but with `[stack] env` asking for an ephemeral host port.
    let fixture = Fixture::new("other-stack", |text| {
        text.replace(
            "isolated_env = { API_PORT = \"\" }",
            "env = { API_PORT = \"\" }",
        )
    })
    .await;
    let report = fixture.up(UpOptions::default()).await;
    assert!(report.passed(), "{}", describe(&report));

    let names: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(names, ["api", "worker"]);
    let api = &report.services[0];
    assert_eq!(api.check.name, "service api healthy");
    assert!(api.healthcheck, "api has a healthcheck");
    assert!(api.check.duration > Duration::ZERO);
    assert!(api.noticed_after.is_some());
    assert!(!report.services[1].healthcheck, "worker has none");
    assert_eq!(report.project, fixture.config.project.name.0);

    // Endpoints from the port the engine picked.
    let url = &report.endpoints["api"];
    let port: u16 = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/v1")
        .parse()
        .unwrap_or_else(|_| panic!("{url}"));
    assert_ne!(port, 17231, "API_PORT=\"\" must give an ephemeral port");
    assert_eq!(report.endpoints["api_health"], format!("{url}/health"));

    // Recorded for health and docker-down.
    let recorded = state::Store::of(&fixture.config).read().unwrap().stacks[&report.run_id]
        .stack
        .clone();
    assert_eq!(recorded.run_id, report.run_id);
    assert_eq!(recorded.endpoints, report.endpoints);
    assert_eq!(recorded.compose_env["API_PORT"], "");

    // Every container, the network and the volume carry the run's labels.
    let run_label = format!("{LABEL_RUN_ID}={}", report.run_id);
    let labelled = fixture.labelled(&run_label).await;
    assert_eq!(labelled.containers.len(), 2, "{:?}", labelled.names());
    assert_eq!(labelled.networks.len(), 1, "{:?}", labelled.names());
    assert_eq!(labelled.volumes.len(), 1, "{:?}", labelled.names());
    for (_, name, labels) in &labelled.containers {
        assert_eq!(
            labels.get(state::LABEL_PID).map(String::as_str),
            Some(std::process::id().to_string().as_str()),
            "{name}"
        );
    }

    let health = stack::health_report(&fixture.config).await.unwrap();
    assert!(health.healthy, "{:?}", health.problems);
    assert_eq!(health.services[0].health, "healthy");
    assert_eq!(health.services[1].health, "none");
    assert_eq!(
        health.services[0].time_to_healthy,
        Some(api.check.duration),
        "health reports the time measured by up"
    );
    assert_eq!(
        health.services[0].ports,
        [format!("127.0.0.1:{port}->7000")]
    );

    // A second plain up continues the recorded run: same labels, so compose keeps the
    // containers, which are already healthy.
    let again = fixture.up(UpOptions::default()).await;
    assert!(again.passed(), "{}", describe(&again));
    assert_eq!(again.run_id, report.run_id);
    let ids = |l: &stack::Labelled| {
        let mut ids: Vec<String> = l.containers.iter().map(|c| c.0.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&fixture.labelled(&run_label).await), ids(&labelled));
    // Seen healthy by inspection, not by a new health event.
    assert!(
        again.services.iter().all(|s| s.noticed_after.is_none()),
        "{}",
        describe(&again)
    );

    // A container an earlier run left in the same project, without this run's id: the engine
    // removal does not know it, so down hands the project to `compose down`.
    let earlier = fixture
        .engine
        .docker
        .create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            bollard::models::ContainerCreateBody {
                image: Some("debian:bookworm-slim".to_owned()),
                cmd: Some(vec!["true".to_owned()]),
                labels: Some(
                    [
                        ("com.docker.compose.project", report.project.as_str()),
                        ("com.docker.compose.service", "worker"),
                        ("com.docker.compose.oneoff", "False"),
                        ("com.docker.compose.container-number", "7"),
                        (LABEL_ROOT, fixture.root_label().split_once('=').unwrap().1),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                ),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .id;

    let check = stack::down(&fixture.config, &recorded).await.unwrap();
    assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
    assert!(
        check
            .detail
            .contains("removed 2 containers, 1 network, 1 volume")
            && check.detail.contains("compose down removed 1 more"),
        "{}",
        check.detail
    );
    assert!(fixture.labelled(&run_label).await.is_empty());
    assert!(
        fixture
            .engine
            .docker
            .inspect_container(
                &earlier,
                None::<bollard::query_parameters::InspectContainerOptions>
            )
            .await
            .is_err(),
        "compose down removes the earlier run's container"
    );
    assert!(state::Store::of(&fixture.config)
        .read()
        .unwrap()
        .stacks
        .is_empty());
    // Idempotent, and health now says the stack is absent.
    let again = stack::down(&fixture.config, &recorded).await.unwrap();
    assert_eq!(again.outcome, Outcome::Passed, "{again:?}");
    let health = stack::health_report(&fixture.config).await.unwrap();
    assert!(!health.healthy);
    assert!(health.problems.iter().any(|p| p.contains("no stack")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_exits_at_start_fails_the_wait_at_once_with_its_logs() {
    let fixture = Fixture::new("exits-at-start", |text| text).await;
    let report = fixture.up(UpOptions::default()).await;
    assert!(!report.passed());
    let failed = report.failure().unwrap();
    assert_eq!(
        failed.name,
        "service broken healthy",
        "{}",
        describe(&report)
    );
    // Failed on the exit itself, not at the 60 s budget.
    assert!(
        failed.detail.contains("`broken` exited with code 3"),
        "{}",
        failed.detail
    );
    let output = failed.output.as_deref().unwrap();
    assert!(
        output.contains("fatal: /etc/broken.conf: no such file"),
        "{output}"
    );
    assert!(output.contains("reading /etc/broken.conf"), "{output}");
    assert_eq!(report.endpoints_check.outcome, Outcome::Skipped);

    // The stack is left, recorded, for docker-down.
    let recorded = state::Store::of(&fixture.config).read().unwrap().stacks[&report.run_id]
        .stack
        .clone();
    assert_eq!(recorded.run_id, report.run_id);
    let check = stack::down(&fixture.config, &recorded).await.unwrap();
    assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
    assert!(fixture.labelled(&fixture.root_label()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_never_turns_healthy_fails_at_its_budget() {
    let fixture = Fixture::new("never-healthy", |text| text).await;
    let report = fixture.up(UpOptions::default()).await;
    let failed = report.failure().unwrap();
    assert_eq!(
        failed.name,
        "service stuck healthy",
        "{}",
        describe(&report)
    );
    assert!(
        failed
            .detail
            .contains("`stuck` was not healthy within its budget of 3s"),
        "{}",
        failed.detail
    );
    let output = failed.output.as_deref().unwrap();
    assert!(
        output.contains("waiting for a dependency that never comes"),
        "{output}"
    );
    assert!(output.contains("last healthcheck: exit 1"), "{output}");
    let recorded = state::Store::of(&fixture.config).read().unwrap().stacks[&report.run_id]
        .stack
        .clone();
    let check = stack::down(&fixture.config, &recorded).await.unwrap();
    assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_isolated_runs_at_once_get_their_own_projects_and_ports() {
    let fixture = Fixture::new("other-stack", |text| text).await;
    let isolated = |run_id: &str| UpOptions {
        isolated: true,
        run_id: Some(run_id.to_owned()),
        ..UpOptions::default()
    };
    let base = state::new_run_id();
    let (first, second) = tokio::join!(
        fixture.up(isolated(&format!("{base}1"))),
        fixture.up(isolated(&format!("{base}2")))
    );
    assert!(first.passed(), "{}", describe(&first));
    assert!(second.passed(), "{}", describe(&second));
    assert_ne!(first.project, second.project);
    assert!(first
        .project
        .starts_with(&format!("{}-", fixture.config.project.name.0)));
    assert_ne!(first.endpoints["api"], second.endpoints["api"]);
    assert!(!first.endpoints["api"].contains(":17231/"));

    // Each isolated run has its own record in the store.
    let store = state::Store::of(&fixture.config).read().unwrap();
    for report in [&first, &second] {
        assert_eq!(store.stacks[&report.run_id].stack.project, report.project);
    }
    for report in [&first, &second] {
        let check = stack::down(&fixture.config, &report.state).await.unwrap();
        assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
    }
    assert!(fixture.labelled(&fixture.root_label()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_a_dead_run_are_removed_and_live_or_kept_runs_are_not() {
    let fixture = Fixture::new("other-stack", |text| text).await;
    let dead_pid = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    // The owner of a live run that is not this process.
    let mut other_owner = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let base = state::new_run_id();
    let run = |tag: &str, pid: u32, keep: bool| UpOptions {
        isolated: true,
        run_id: Some(format!("{base}{tag}")),
        owner_pid: Some(pid),
        keep,
        ..UpOptions::default()
    };
    let (dead, kept, mine, other) = tokio::join!(
        fixture.up(run("d", dead_pid, false)),
        fixture.up(run("k", dead_pid, true)),
        fixture.up(run("m", std::process::id(), false)),
        fixture.up(run("o", other_owner.id(), false)),
    );
    for report in [&dead, &kept, &mine, &other] {
        assert!(report.passed(), "{}", describe(report));
    }
    let fixture = &fixture;
    let containers_of = |report: &UpReport| {
        let label = format!("{LABEL_RUN_ID}={}", report.run_id);
        async move { fixture.labelled(&label).await.containers.len() }
    };

    let removed = stack::remove_leftovers(&fixture.config, &fixture.engine)
        .await
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(removed[0].contains(&dead.run_id), "{removed:?}");
    assert!(
        removed[0].contains(&format!("pid {dead_pid} gone")),
        "{removed:?}"
    );
    assert!(removed[0].contains("container "), "{removed:?}");
    assert!(removed[0].contains("volume "), "{removed:?}");
    assert!(fixture
        .labelled(&format!("{LABEL_RUN_ID}={}", dead.run_id))
        .await
        .is_empty());
    for report in [&kept, &mine, &other] {
        assert_eq!(
            containers_of(report).await,
            2,
            "{} was removed",
            report.run_id
        );
    }
    let health = stack::health_of(&fixture.config, Some(mine.state.clone()))
        .await
        .unwrap();
    assert!(health.healthy, "{:?}", health.problems);

    // docker-down --all: everything but the run of another live process.
    let swept = stack::sweep(&fixture.config, &fixture.engine, stack::Sweep { all: true })
        .await
        .unwrap();
    assert!(swept.problems.is_empty(), "{:?}", swept.problems);
    assert_eq!(swept.removed.len(), 2, "{:?}", swept.removed);
    assert_eq!(swept.left.len(), 1, "{:?}", swept.left);
    assert!(swept.left[0].contains(&other.run_id), "{:?}", swept.left);
    assert!(swept.left[0].contains("still running"), "{:?}", swept.left);
    assert_eq!(containers_of(&other).await, 2);

    other_owner.kill().unwrap();
    other_owner.wait().unwrap();
    let removed = stack::remove_leftovers(&fixture.config, &fixture.engine)
        .await
        .unwrap();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert!(fixture.labelled(&fixture.root_label()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_container_of_an_isolated_run_is_found_at_the_port_it_publishes_now() {
    let fixture = Fixture::new("other-stack", |text| text).await;
    let report = fixture
        .up(UpOptions {
            isolated: true,
            ..UpOptions::default()
        })
        .await;
    assert!(report.passed(), "{}", describe(&report));
    let docker = &fixture.engine.docker;
    let api = stack::inspect_project(docker, &report.project)
        .await
        .unwrap()
        .into_iter()
        .find(|(i, _)| i.service == "api")
        .expect("an api container")
        .0
        .container;
    // Stopped, the api publishes nothing: health falls back to the recorded endpoints.
    docker
        .stop_container(
            &api,
            None::<bollard::query_parameters::StopContainerOptions>,
        )
        .await
        .unwrap();
    let stopped = stack::health_of(&fixture.config, Some(report.state.clone()))
        .await
        .unwrap();
    assert!(!stopped.healthy);
    assert_eq!(stopped.endpoints, report.endpoints);

    docker
        .start_container(
            &api,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    let response = docker
        .inspect_container(
            &api,
            None::<bollard::query_parameters::InspectContainerOptions>,
        )
        .await
        .unwrap();
    let (_, host_port) = stack::container_ports(&response)
        .into_iter()
        .find(|(container, _)| *container == 7000)
        .expect("7000 published again");
    let started = stack::health_of(&fixture.config, Some(report.state.clone()))
        .await
        .unwrap();
    assert_eq!(
        started.endpoints["api"],
        format!("http://127.0.0.1:{host_port}/v1"),
        "recorded at up: {}",
        report.endpoints["api"]
    );
    assert_eq!(
        started.endpoints["api_health"],
        format!("http://127.0.0.1:{host_port}/v1/health")
    );
    let check = stack::down(&fixture.config, &report.state).await.unwrap();
    assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
}
