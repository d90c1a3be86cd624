//! The stack against the real engine, on small fixture stacks (tests/fixtures) built from
//! debian:bookworm-slim: a stack written by someone else, a service that exits at start, one that
//! never becomes healthy, two isolated runs at once, leftovers of a dead run, a kept stack beside
//! a gate's run, an external network declared in flow style through an anchor, and two checkouts
//! of one project that each run their own build.
//!
//! Each test copies its fixture into its own temporary directory (its own checkout root, so its
//! own `io.xtask.root` label and state.json) under a project name of its own, and removes
//! everything carrying that root's label (and its project's images) when it ends, pass or fail.

use std::time::Duration;

use stackgate::config::Config;
use stackgate::engine::{self, Engine};
use stackgate::report::Outcome;
use stackgate::stack::{self, UpOptions, UpReport};
use stackgate::state::{self, LABEL_ROOT, LABEL_RUN_ID};

use crate::support::fixtures;

/// A project name of the test's own, so that concurrent tests never share one.
fn unique_project(fixture: &str) -> String {
    let unique = format!(
        "it{}{}",
        fixture.replace('-', "").chars().take(8).collect::<String>(),
        state::new_run_id().replace('-', "")
    );
    unique[..unique.len().min(40)].to_owned()
}

/// A fixture stack in its own root, with a project name of its own; removes what it created.
struct Fixture {
    config: Config,
    engine: Engine,
    dir: tempfile::TempDir,
}

impl Fixture {
    /// `None` (the test returns) when there is no engine or no compose program: said through
    /// `crate::require`, which fails the test under `XTASK_REQUIRE_ALL=1`.
    async fn new(name: &str, edit: impl Fn(String) -> String) -> Option<Fixture> {
        Fixture::named(name, &unique_project(name), edit).await
    }

    /// A copy of fixture `name` under the project name `project`.
    async fn named(name: &str, project: &str, edit: impl Fn(String) -> String) -> Option<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&fixtures().join(name), dir.path());
        let path = dir.path().join("harness.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text
            .lines()
            .map(|line| {
                if line.starts_with("name = ") {
                    format!("name = \"{project}\"")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, edit(text)).unwrap();
        let config = stackgate::config::load(Some(&path)).unwrap();
        let engine = match engine::connect(&config).await {
            Ok(engine) => engine,
            Err(e) => {
                crate::require::skip(&format!("no engine answers: {e:#}"));
                return None;
            }
        };
        if let Err(e) = stack::compose::detect().await {
            crate::require::skip(&format!("no compose program: {e:#}"));
            return None;
        }
        Some(Fixture {
            config,
            engine,
            dir,
        })
    }

    /// Edits harness.toml and reads it again.
    fn reconfigure(&mut self, edit: impl Fn(String) -> String) {
        let text = std::fs::read_to_string(&self.config.path).unwrap();
        std::fs::write(&self.config.path, edit(text)).unwrap();
        self.config = stackgate::config::load(Some(&self.config.path)).unwrap();
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

    /// Runs the harness binary with this fixture's harness.toml.
    async fn xtask(&self, args: &[&str]) -> std::process::Output {
        let mut command = crate::support::stackgate();
        command.arg("--config").arg(&self.config.path).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Everything under this root's label, and the images built for this test's project,
        // whatever the test did; a thread of its own because the test's runtime is busy dropping
        // us.
        let docker = self.engine.docker.clone();
        let label = self.root_label();
        let images = format!(
            "{}={}",
            stack::labels::LABEL_IMAGE_PROJECT,
            self.config.project.name.0
        );
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(found) = stack::find_labelled(&docker, &label).await {
                    stack::remove_labelled(&docker, &found).await;
                }
                for id in image_ids(&docker, &images).await {
                    let options = bollard::query_parameters::RemoveImageOptionsBuilder::new()
                        .force(true)
                        .build();
                    let _ = docker.remove_image(&id, Some(options), None).await;
                }
            });
        })
        .join()
        .unwrap();
    }
}

/// Ids of the images carrying `label` (`key=value`).
async fn image_ids(docker: &bollard::Docker, label: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    docker
        .list_images(Some(
            bollard::query_parameters::ListImagesOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .map(|images| images.into_iter().map(|i| i.id).collect())
        .unwrap_or_default()
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
    let Some(fixture) = Fixture::new("other-stack", |text| {
        text.replace(
            "isolated_env = { API_PORT = \"\" }",
            "env = { API_PORT = \"\" }",
        )
    })
    .await
    else {
        return;
    };
    // As `docker-up` does: kept, so that `health` finds it.
    let report = fixture
        .up(UpOptions {
            keep: true,
            ..UpOptions::default()
        })
        .await;
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
    // Each service's running image, as the gate records it.
    for service in &report.services {
        let id = service.image_id.as_deref().unwrap_or("none");
        assert!(id.starts_with("sha256:"), "{}: {id}", service.service);
    }

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

    let health = stack::health_report(&fixture.config, None).await.unwrap();
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
    let health = stack::health_report(&fixture.config, None).await.unwrap();
    assert!(!health.healthy);
    assert!(health.problems.iter().any(|p| p.contains("no stack")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_exits_at_start_fails_the_wait_at_once_with_its_logs() {
    let Some(fixture) = Fixture::new("exits-at-start", |text| text).await else {
        return;
    };
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
    let Some(fixture) = Fixture::new("never-healthy", |text| text).await else {
        return;
    };
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
    let Some(fixture) = Fixture::new("other-stack", |text| text).await else {
        return;
    };
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
    let Some(fixture) = Fixture::new("other-stack", |text| text).await else {
        return;
    };
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
    let swept = stack::sweep(
        &fixture.config,
        &fixture.engine,
        stack::Sweep {
            all: true,
            other_hosts_older_than: None,
        },
    )
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
    let Some(fixture) = Fixture::new("other-stack", |text| text).await else {
        return;
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_stack_survives_a_gate_run_of_the_same_checkout_until_docker_down() {
    let Some(fixture) = Fixture::new("other-stack", |text| text).await else {
        return;
    };
    // `docker-up --isolated`: kept, owned by a process that has exited since.
    let gone_pid = {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    };
    let kept = fixture
        .up(UpOptions {
            isolated: true,
            keep: true,
            owner_pid: Some(gone_pid),
            ..UpOptions::default()
        })
        .await;
    assert!(kept.passed(), "{}", describe(&kept));

    // A gate on the same checkout: it sweeps leftovers, brings up its own run, tears it down.
    let swept = stack::remove_leftovers(&fixture.config, &fixture.engine)
        .await
        .unwrap();
    assert!(
        swept.is_empty(),
        "a kept stack is not a dead run: {swept:?}"
    );
    let gate = fixture
        .up(UpOptions {
            isolated: true,
            run_id: Some(state::new_run_id()),
            ..UpOptions::default()
        })
        .await;
    assert!(gate.passed(), "{}", describe(&gate));
    assert_ne!(gate.project, kept.project);
    let check = stack::down(&fixture.config, &gate.state).await.unwrap();
    assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
    let recorded = state::Store::of(&fixture.config).read().unwrap();
    assert_eq!(
        recorded.stacks.keys().collect::<Vec<_>>(),
        [&kept.run_id],
        "the gate removed only its own run"
    );

    // `health` finds the kept stack and passes.
    let health = fixture.xtask(&["health", "--json"]).await;
    let stderr = String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("project {} (run {})", kept.project, kept.run_id)),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(json["healthy"], true, "{json}");

    // `docker-down` removes it: nothing labelled is left, nothing is recorded.
    let down = fixture.xtask(&["docker-down"]).await;
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("stack down: ok project {}", kept.project)),
        "{stderr}"
    );
    assert!(fixture.labelled(&fixture.root_label()).await.is_empty());
    assert!(state::Store::of(&fixture.config)
        .read()
        .unwrap()
        .stacks
        .is_empty());
    let again = fixture.xtask(&["docker-down"]).await;
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("no kept stack is recorded"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_kept_stacks_health_says_which_one_and_docker_down_all_removes_them() {
    let Some(fixture) = Fixture::new("other-stack", |text| text).await else {
        return;
    };
    let kept = |tag: &str| UpOptions {
        isolated: true,
        keep: true,
        run_id: Some(format!("{}{tag}", state::new_run_id())),
        ..UpOptions::default()
    };
    let first = fixture.up(kept("a")).await;
    let second = fixture.up(kept("b")).await;
    assert!(first.passed() && second.passed(), "{}", describe(&first));

    let health = fixture.xtask(&["health"]).await;
    let stderr = String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "2 stacks are kept; using the newest, run {}",
            second.run_id
        )),
        "{stderr}"
    );
    let named = fixture.xtask(&["health", "--run", &first.run_id]).await;
    let stderr = String::from_utf8_lossy(&named.stderr);
    assert!(named.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("(run {})", first.run_id)),
        "{stderr}"
    );
    let unknown = fixture.xtask(&["health", "--run", "nope"]).await;
    assert_eq!(unknown.status.code(), Some(2));

    let down = fixture.xtask(&["docker-down", "--all"]).await;
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{stderr}");
    for report in [&first, &second] {
        assert!(
            stderr.contains(&format!("stack down: ok project {}", report.project)),
            "{stderr}"
        );
    }
    assert!(fixture.labelled(&fixture.root_label()).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_network_in_flow_style_merged_from_an_anchor_is_joined_not_labelled() {
    let network = format!("xtask-it-shared-{}", state::new_run_id());
    let Some(fixture) = Fixture::new("external-network", |text| {
        text.replace(
            "build = false",
            &format!("build = false\nenv = {{ SHARED_NET = \"{network}\" }}"),
        )
    })
    .await
    else {
        return;
    };
    let docker = &fixture.engine.docker;
    docker
        .create_network(bollard::models::NetworkCreateRequest {
            name: network.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let result = async {
        let report = fixture
            .up(UpOptions {
                isolated: true,
                ..UpOptions::default()
            })
            .await;
        assert!(report.passed(), "{}", describe(&report));
        let shared = docker
            .inspect_network(
                &network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .unwrap();
        assert!(
            shared.labels.unwrap_or_default().is_empty(),
            "the external network is not labelled"
        );
        let containers = shared.containers.unwrap_or_default();
        assert_eq!(containers.len(), 1, "the service joined it");
        // The project's own network is labelled with the run.
        let run_label = format!("{LABEL_RUN_ID}={}", report.run_id);
        let labelled = fixture.labelled(&run_label).await;
        assert_eq!(labelled.networks.len(), 1, "{:?}", labelled.names());
        assert!(
            labelled.networks[0].1.ends_with("_front"),
            "{:?}",
            labelled.names()
        );
        let check = stack::down(&fixture.config, &report.state).await.unwrap();
        assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
        docker
            .inspect_network(
                &network,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .expect("down leaves the external network");
    };
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let _ = stack::remove_labelled(
        &fixture.engine.docker,
        &fixture.labelled(&fixture.root_label()).await,
    )
    .await;
    docker.remove_network(&network).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_checkout_runs_the_images_it_built() {
    // Two checkouts of one project on one engine, with different sources for `app`.
    let project = unique_project("own-images");
    let Some(mut one) = Fixture::named("own-images", &project, |text| text).await else {
        return;
    };
    let Some(mut two) = Fixture::named("own-images", &project, |text| text).await else {
        return;
    };
    std::fs::write(
        two.dir.path().join("app/version.txt"),
        "built from checkout two\n",
    )
    .unwrap();
    let isolated = || UpOptions {
        isolated: true,
        ..UpOptions::default()
    };
    let docker = one.engine.docker.clone();
    let tag_id = |tag: String| {
        let docker = docker.clone();
        async move {
            docker
                .inspect_image(&tag)
                .await
                .unwrap_or_else(|e| panic!("{tag}: {e}"))
                .id
                .unwrap()
        }
    };
    let app_image = |report: &UpReport| report.services[0].image_id.clone().unwrap();

    // Built one after the other: each gets the image its own build produced, under its own tag.
    let mut built = Vec::new();
    for fixture in [&one, &two] {
        let report = fixture.up(isolated()).await;
        assert!(report.passed(), "{}", describe(&report));
        let tag = stack::image_tag(&fixture.config, "app");
        assert_eq!(app_image(&report), tag_id(tag.clone()).await, "{tag}");
        let check = stack::down(&fixture.config, &report.state).await.unwrap();
        assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
        built.push(app_image(&report));
    }
    assert_ne!(built[0], built[1]);
    assert_ne!(
        stack::image_tag(&one.config, "app"),
        stack::image_tag(&two.config, "app")
    );

    // Without building, each runs its own build (its container prints its own sources).
    for fixture in [&mut one, &mut two] {
        fixture.reconfigure(|text| text.replace("build = true", "build = false"));
    }
    for (fixture, id, says) in [
        (&one, &built[0], "built from checkout one"),
        (&two, &built[1], "built from checkout two"),
    ] {
        let report = fixture.up(isolated()).await;
        assert!(report.passed(), "{}", describe(&report));
        assert_eq!(&app_image(&report), id);
        let container = stack::inspect_project(&docker, &report.project)
            .await
            .unwrap()
            .remove(0)
            .0
            .container;
        let logs = stack::container_logs(&docker, &container, 5).await;
        assert!(logs.contains(says), "{logs}");
        let check = stack::down(&fixture.config, &report.state).await.unwrap();
        assert_eq!(check.outcome, Outcome::Passed, "{check:?}");
    }

    // The second checkout goes away: --prune-images removes its tag, and leaves the first's.
    let two_tag = stack::image_tag(&two.config, "app");
    let one_tag = stack::image_tag(&one.config, "app");
    std::fs::remove_dir_all(two.dir.path()).unwrap();
    let pruned = stack::prune_images(&one.config, &one.engine).await.unwrap();
    assert_eq!(pruned.removed, std::slice::from_ref(&two_tag), "{pruned:?}");
    assert!(pruned.problems.is_empty(), "{pruned:?}");
    assert!(docker.inspect_image(&two_tag).await.is_err());
    // docker-down --all: this checkout's tags that nothing uses.
    let removed = stack::remove_checkout_images(&one.config, &one.engine)
        .await
        .unwrap();
    assert_eq!(
        removed.removed,
        std::slice::from_ref(&one_tag),
        "{removed:?}"
    );
    assert!(docker.inspect_image(&one_tag).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_counts_a_service_whose_own_probe_passes_before_the_engine_checks_it() {
    // The engine's first check of `api` comes five minutes after its start; the harness's own
    // probe (its healthcheck through exec) passes about a second after it, and the wait is over.
    let Some(fixture) = Fixture::new("other-stack", |text| {
        text.replace("[stack]\n", "[stack]\nstart = \"ordered\"\n")
    })
    .await
    else {
        return;
    };
    let compose = fixture.dir.path().join("deploy/stack.yml");
    let text = std::fs::read_to_string(&compose).unwrap();
    assert!(text.contains("interval: 1s"), "{text}");
    std::fs::write(&compose, text.replace("interval: 1s", "interval: 300s")).unwrap();
    let report = fixture
        .up(UpOptions {
            isolated: true,
            keep: true,
            run_id: Some(state::new_run_id()),
            ..UpOptions::default()
        })
        .await;
    assert!(report.passed(), "{}", describe(&report));

    let health = fixture.xtask(&["health", "--json"]).await;
    let stderr = String::from_utf8_lossy(&health.stderr);
    assert!(health.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    let api = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == "api")
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(api["healthy"], true, "{json:#}");
    assert_eq!(
        api["health"], "starting, the harness's probe passed (exec test -f /tmp/ready)",
        "{json:#}"
    );
    let down = fixture.xtask(&["docker-down", "--all"]).await;
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
