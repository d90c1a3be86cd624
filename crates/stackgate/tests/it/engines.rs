//! Every engine a team points the harness at, each a real one of the test's own
//! ([crate::daemons]): a remote dockerd reached over tcp at a network namespace's address (the
//! same harness.toml then passes on the machine's engine), podman's Docker-compatible socket with
//! compose v1 and v2, compose v2 found through `DOCKER_CONFIG`, compose's own error when `up`
//! fails; and the helpers [crate::engines_shared] uses too.
//!
//! Each test copies the fixture stack it uses into a directory of its own under a project name
//! of its own, and removes what it built.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use stackgate::config::Config;
use stackgate::state;

use crate::daemons::{copy_image, Dockerd, DockerdOptions, Podman};
use crate::require;
use crate::support::{explain, fixtures, run_id_of};

/// The Python environment the fixture suites share.
fn fixture_venv() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/xtask/fixture-venv")
        .display()
        .to_string()
}

/// A copy of a fixture under a project name of its own, its harness.toml and compose file edited.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: Config,
}

impl Project {
    pub(crate) fn new(
        fixture: &str,
        compose_file: &str,
        harness: impl Fn(String) -> String,
        compose: impl Fn(String) -> String,
    ) -> Project {
        Project::with_files(fixture, compose_file, harness, compose, &[])
    }

    /// [`Project::new`] with more files (path, content) written into the copy.
    fn with_files(
        fixture: &str,
        compose_file: &str,
        harness: impl Fn(String) -> String,
        compose: impl Fn(String) -> String,
        files: &[(&str, &str)],
    ) -> Project {
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&fixtures().join(fixture), dir.path());
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        let unique = format!("xe{}", state::new_run_id().replace('-', ""));
        let path = dir.path().join("harness.toml");
        // The project's name: the first `name = ` (suites have names too).
        let mut renamed = false;
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|line| {
                if line.starts_with("name = ") && !renamed {
                    renamed = true;
                    format!("name = \"{unique}\"")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, harness(text)).unwrap();
        let compose_path = dir.path().join(compose_file);
        let text = std::fs::read_to_string(&compose_path).unwrap();
        std::fs::write(&compose_path, compose(text)).unwrap();
        let config = stackgate::config::load(Some(&path)).unwrap();
        Project { dir, config }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The harness binary with this project's harness.toml; `DOCKER_HOST` as given (removed when
    /// `None`), plus `env`.
    pub(crate) fn xtask(
        &self,
        args: &[&str],
        docker_host: Option<&str>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut command = crate::support::stackgate();
        command
            .arg("--config")
            .arg(&self.config.path)
            .args(args)
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("DOCKER_CONFIG");
        match docker_host {
            Some(host) => command.env("DOCKER_HOST", host),
            None => command.env_remove("DOCKER_HOST"),
        };
        for (key, value) in env {
            command.env(key, value);
        }
        command.output().unwrap()
    }

    /// Builds the images of the compose services `services` on the machine's engine under the
    /// names the harness gives them (`stack.build = false` then runs them anywhere they are
    /// loaded), from `<service>.Dockerfile`.
    pub(crate) fn build_images(&self, services: &[&str]) -> Vec<String> {
        services
            .iter()
            .map(|service| {
                let tag = stackgate::stack::image_tag(&self.config, service);
                let output = Command::new("docker")
                    .args(["build", "-q", "-t", &tag, "-f"])
                    .arg(self.path().join(format!("{service}.Dockerfile")))
                    .arg(self.path())
                    .env_remove("DOCKER_HOST")
                    .output()
                    .unwrap();
                assert!(
                    output.status.success(),
                    "docker build {tag}: {}",
                    explain(&output)
                );
                tag
            })
            .collect()
    }
}

/// Removes image tags from the machine's engine when dropped.
pub(crate) struct Tags(pub(crate) Vec<String>);

impl Drop for Tags {
    fn drop(&mut self) {
        for tag in &self.0 {
            let _ = Command::new("docker")
                .args(["rmi", "--no-prune", tag])
                .env_remove("DOCKER_HOST")
                .output();
        }
    }
}

/// The `<testcase>` element named `name` (its whole text), from a JUnit report.
pub(crate) fn case<'a>(xml: &'a str, name: &str) -> &'a str {
    let at = xml
        .find(&format!("name=\"{name}"))
        .unwrap_or_else(|| panic!("no case {name} in\n{xml}"));
    let start = xml[..at].rfind("<testcase").unwrap();
    let open_end = start + xml[start..].find('>').unwrap() + 1;
    if xml[..open_end].ends_with("/>") {
        return &xml[start..open_end];
    }
    let end = open_end + xml[open_end..].find("</testcase>").unwrap() + "</testcase>".len();
    &xml[start..end]
}

/// Containers on `docker` carrying `label`.
pub(crate) async fn containers_labelled(docker: &bollard::Docker, label: &str) -> Vec<String> {
    let filters = std::collections::HashMap::from([("label".to_owned(), vec![label.to_owned()])]);
    docker
        .list_containers(Some(
            bollard::query_parameters::ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|c| c.names?.first().cloned())
        .collect()
}

/// The gate fixture, its web service published on the engine's host, its images prebuilt.
pub(crate) fn gate_project(edit: impl Fn(String) -> String) -> Project {
    Project::new(
        "gate",
        "compose.yaml",
        |text| {
            edit(
                text.replace(
                    "web = \"http://127.0.0.1:{port:web:8080}\"",
                    "web = \"http://{engine_host}:{port:web:8080}\"",
                )
                .replace(
                    "service_budget_s = 60",
                    "service_budget_s = 60\nbuild = false",
                )
                .replace(
                    "venv = \"../../../../../target/xtask/fixture-venv\"",
                    &format!("venv = {:?}", fixture_venv()),
                ),
            )
        },
        |text| {
            text.replace(
                "\"127.0.0.1:${WEB_PORT-18080}:8080\"",
                "\"${XTASK_ENGINE_HOST-127.0.0.1}:${WEB_PORT-18080}:8080\"",
            )
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_engine_runs_the_gate_with_endpoints_on_its_host_and_the_same_config_runs_here() {
    let Some(()) = require::namespaces() else {
        return;
    };
    let Some(_) = require::dockerd() else { return };
    let Some(_) = require::python() else { return };
    let Some(_) = require::program("docker", &["version"]) else {
        return;
    };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let remote = Dockerd::prepare(DockerdOptions {
        tcp: true,
        ..DockerdOptions::default()
    });
    let remote_docker = remote.start().await;
    let tcp = remote.tcp.clone().unwrap();
    let address = tcp
        .trim_start_matches("tcp://")
        .trim_end_matches(":2375")
        .to_owned();
    let project = gate_project(|text| text);
    let tags = Tags(project.build_images(&["cache", "web"]));
    // `docker save | docker load`: the remote engine reaches no registry and builds nothing.
    for image in tags
        .0
        .iter()
        .map(String::as_str)
        .chain(["debian:bookworm-slim"])
    {
        copy_image(&machine, &remote_docker, image).await;
    }

    // The gate on the remote engine, kept: its endpoints are at the engine's address.
    let report = project.path().join("remote.xml");
    let output = project.xtask(
        &[
            "mission-critical",
            "--keep",
            "--junit",
            report.to_str().unwrap(),
        ],
        Some(&tcp),
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = std::fs::read_to_string(&report).unwrap();
    crate::support::xmllint_valid(&report);
    for test in [
        "test_health",
        "test_web_container_runs_under_the_run_project",
    ] {
        let case = case(&xml, test);
        assert!(
            !case.contains("<failure") && !case.contains("<skipped"),
            "{case}"
        );
    }
    assert!(
        case(&xml, "engine: engine available").contains(&tcp),
        "{xml}"
    );

    // `health`, without DOCKER_HOST: the engine the run was brought up on, and its host.
    let health = project.xtask(&["health", "--json"], None, &[]);
    assert!(health.status.success(), "{}", explain(&health));
    let json: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
    assert_eq!(json["engine"]["host"], tcp.as_str(), "{json:#}");
    assert_eq!(json["engine"]["engine_host"], address.as_str(), "{json:#}");
    let web = json["endpoints"]["web"].as_str().unwrap();
    assert!(web.starts_with(&format!("http://{address}:")), "{json:#}");
    assert!(
        String::from_utf8_lossy(&health.stderr).contains(&format!("(engine_host {address})")),
        "{}",
        explain(&health)
    );

    // `doctor` asks the remote engine, and does not measure this machine's disk for it.
    let doctor = project.xtask(&["doctor", "--json"], Some(&tcp), &[]);
    let json: serde_json::Value = serde_json::from_slice(&doctor.stdout).unwrap();
    let check = |name: &str| {
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check: {json:#}"))
    };
    assert_eq!(check("engine")["outcome"], "passed", "{json:#}");
    assert!(check("engine")["detail"]
        .as_str()
        .unwrap()
        .contains("remote"));
    assert_eq!(check("disk")["outcome"], "skipped", "{json:#}");
    let disk = check("disk")["detail"].as_str().unwrap().to_owned();
    assert!(
        disk.contains("remote") && disk.contains(&format!("{}/data", remote.dir.display())),
        "{disk}"
    );
    // An engine that does not answer is said so, not reported as found.
    let nobody = project.xtask(&["doctor", "--json"], Some("tcp://127.0.0.1:1"), &[]);
    let json: serde_json::Value = serde_json::from_slice(&nobody.stdout).unwrap();
    let engine = json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "engine")
        .unwrap();
    assert_eq!(engine["outcome"], "warned", "{json:#}");
    assert!(engine["detail"]
        .as_str()
        .unwrap()
        .contains("does not answer"));

    // `docker-down`, without DOCKER_HOST, removes it from the remote engine.
    let root_label = format!(
        "{}={}",
        state::LABEL_ROOT,
        state::root_digest(&project.config.root)
    );
    assert!(!containers_labelled(&remote_docker, &root_label)
        .await
        .is_empty());
    let down = project.xtask(&["docker-down"], None, &[]);
    assert!(down.status.success(), "{}", explain(&down));
    assert_eq!(
        containers_labelled(&remote_docker, &root_label).await,
        Vec::<String>::new()
    );

    // The same harness.toml on the machine's engine: endpoints on 127.0.0.1.
    let report = project.path().join("local.xml");
    let output = project.xtask(
        &["mission-critical", "--junit", report.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(!case(&xml, "test_health").contains("<failure"), "{xml}");
    let run_label = format!("{}={}", state::LABEL_RUN_ID, run_id_of(&xml));
    assert!(containers_labelled(&machine, &run_label).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_v2_is_found_through_docker_config() {
    let Some(config_dir) = require::compose_v2() else {
        return;
    };
    let project = Project::new("other-stack", "deploy/stack.yml", |t| t, |t| t);
    let flavour = |docker_config: Option<&Path>| {
        let mut command = crate::support::stackgate();
        command
            .arg("--config")
            .arg(&project.config.path)
            .args(["doctor", "--json"])
            .env_remove("DOCKER_CONFIG");
        if let Some(dir) = docker_config {
            command.env("DOCKER_CONFIG", dir);
        }
        let output = command.output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", explain(&output)));
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "compose")
            .unwrap()["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        flavour(Some(&config_dir)).starts_with("docker compose 2."),
        "{}",
        flavour(Some(&config_dir))
    );
    // Without it, `docker compose` is whatever the machine has; here, no plugin: docker-compose.
    let without = flavour(None);
    if !without.starts_with("docker compose") {
        assert!(without.starts_with("docker-compose "), "{without}");
    }
}

/// The other-stack fixture with a pytest suite that asks the engine, through the docker CLI and
/// the `DOCKER_HOST` the gate gives it, for its project's containers.
fn engine_suite_project(edit_compose: impl Fn(String) -> String) -> Project {
    let requirements = std::fs::read_to_string(fixtures().join("gate/requirements.txt")).unwrap();
    Project::with_files(
        "other-stack",
        "deploy/stack.yml",
        |text| {
            format!(
                "{text}\n\n[python]\nrequirements = [\"requirements.txt\"]\nvenv = {:?}\n\n\
                 [[suite]]\nname = \"engine\"\nrunner = \"pytest\"\nargs = [\"tests\"]\ntimeout_s = 120\n",
                fixture_venv()
            )
        },
        edit_compose,
        &[
            ("requirements.txt", &requirements),
            (
                "tests/test_engine.py",
                r#"import os
import subprocess


def test_the_suite_talks_to_the_engine_of_the_stack():
    assert os.environ["DOCKER_HOST"] == os.environ["EXPECTED_DOCKER_HOST"]
    project = os.environ["XTASK_COMPOSE_PROJECT"]
    names = subprocess.run(
        ["docker", "ps", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}"],
        check=True, capture_output=True, text=True,
    ).stdout
    assert "api" in names and "worker" in names, names
"#,
            ),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_keeps_imported_tags_and_runs_the_gate_with_compose_v1_and_v2() {
    let Some(()) = require::namespaces() else {
        return;
    };
    let Some(_) = require::podman() else { return };
    let Some(_) = require::python() else { return };
    let Some(_) = require::program("docker", &["version"]) else {
        return;
    };
    let Some(compose_v2) = require::compose_v2() else {
        return;
    };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let podman = Podman::start().await;
    let client = podman.client().await;
    let project = engine_suite_project(|text| text);

    // The import API as podman has it: the tag the harness asked for, proved by name.
    let engine = stackgate::engine::connect_at(&project.config, Some(&podman.host()))
        .await
        .unwrap();
    let rootfs = project.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(rootfs.join("etc/hello"), "hello\n").unwrap();
    let name = format!("xtask-import-{}:bookworm-slim", std::process::id());
    let id = stackgate::images::import_rootfs(
        &engine,
        &rootfs,
        &name,
        Duration::from_secs(60),
        &stackgate::progress::Progress::silent(),
    )
    .await
    .unwrap_or_else(|e| panic!("import into podman: {e:#}\n{}", podman.log()));
    assert!(
        stackgate::engine::image_present(&client, &name).await,
        "{id}"
    );
    let tags = client
        .inspect_image(&name)
        .await
        .unwrap()
        .repo_tags
        .unwrap();
    assert!(
        tags.iter().any(|t| t.ends_with(&name)),
        "{name} not among {tags:?}"
    );

    copy_image(&machine, &client, "debian:bookworm-slim").await;
    let host = podman.host();
    for (flavour, docker_config) in [
        ("docker-compose 1.", None),
        ("docker compose 2.", Some(&compose_v2)),
    ] {
        let report = project.path().join("podman.xml");
        let mut env = vec![("EXPECTED_DOCKER_HOST", host.as_str())];
        let config_dir = docker_config.map(|d| d.display().to_string());
        if let Some(dir) = &config_dir {
            env.push(("DOCKER_CONFIG", dir));
        }
        let output = project.xtask(
            &["mission-critical", "--junit", report.to_str().unwrap()],
            Some(&host),
            &env,
        );
        assert_eq!(
            output.status.code(),
            Some(0),
            "{flavour}: {}\n--- podman ---\n{}",
            explain(&output),
            podman.log()
        );
        let xml = std::fs::read_to_string(&report).unwrap();
        crate::support::xmllint_valid(&report);
        assert!(
            xml.contains(&format!("name=\"compose_flavour\" value=\"{flavour}")),
            "{xml}"
        );
        for expected in [
            "engine: smoke container",
            "stack: compose up",
            "stack: service api healthy",
            "stack: service worker healthy",
            "teardown: stack down",
        ] {
            let case = case(&xml, expected);
            assert!(
                !case.contains("<failure") && !case.contains("<error"),
                "{case}"
            );
        }
        let suite = case(&xml, "test_the_suite_talks_to_the_engine_of_the_stack");
        assert!(
            !suite.contains("<failure") && !suite.contains("<skipped"),
            "{suite}"
        );
        assert_eq!(
            podman.all_containers(),
            Vec::<String>::new(),
            "{flavour}: podman ps -a after teardown"
        );
    }
    let _ = client
        .remove_image(
            &name,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_compose_up_shows_compose_s_own_error_in_the_message_and_the_report() {
    let Some(_) = require::program("docker", &["version"]) else {
        return;
    };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let missing = format!("xtask-no-such-image-{}:nope", std::process::id());
    let project = Project::new(
        "other-stack",
        "deploy/stack.yml",
        |text| {
            text.replace(
                "services = [\"api\", \"worker\"]",
                "services = [\"api\", \"worker\"]\nbuild = false",
            )
        },
        |text| text.replace("image: debian:bookworm-slim", &format!("image: {missing}")),
    );
    let report = project.path().join("junit.xml");
    let output = project.xtask(
        &["mission-critical", "--junit", report.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let xml = std::fs::read_to_string(&report).unwrap();
    crate::support::xmllint_valid(&report);
    let up = case(&xml, "stack: compose up");
    // The failure's message names the call and carries compose's stderr, which names the image.
    let message = up
        .split("message=\"")
        .nth(1)
        .and_then(|m| m.split('"').next())
        .unwrap_or_else(|| panic!("no failure message: {up}"));
    assert!(message.contains("exit code"), "{up}");
    assert!(message.contains(&missing), "{up}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("compose up") && l.contains("FAIL"))
            && stderr.contains(&missing),
        "{stderr}"
    );
    let run_label = format!("{}={}", state::LABEL_RUN_ID, run_id_of(&xml));
    assert!(containers_labelled(&machine, &run_label).await.is_empty());
}
