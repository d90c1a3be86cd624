//! Readiness from the services' own healthchecks, dependency order on it, and warm stacks, against
//! the real engine, on a copy of the gate fixture (`fixtures/gate`: Redis and a Python web service
//! that waits on it with `service_healthy`) in a directory of the test's own (its own checkout
//! root, labels, state.json and image tags), with the engine's healthchecks made slow (30 s) so
//! that only the harness's probes can explain what happens before them.

use std::path::PathBuf;
use std::process::Output;

use stackgate::stack::{self, Signal, UpOptions};

use crate::support::gate_fixture as fixture;

/// The gate fixture in a directory of its own, under its own project name, with its compose file
/// edited by `compose`; everything carrying its root's label (and its images) goes when dropped.
struct Copy {
    dir: tempfile::TempDir,
    /// Reports go outside the build context, which the warm stack's key covers.
    reports: tempfile::TempDir,
    config: stackgate::config::Config,
}

impl Copy {
    fn new(compose: impl Fn(String) -> String) -> Copy {
        let dir = tempfile::tempdir().unwrap();
        crate::support::copy_dir(&fixture(), dir.path());
        let name = format!("itspeed{}", stackgate::state::new_run_id().replace('-', ""));
        let toml = std::fs::read_to_string(dir.path().join("harness.toml"))
            .unwrap()
            .replace(
                "name = \"gatefix\"",
                &format!("name = \"{}\"", &name[..name.len().min(40)]),
            )
            // The harness starts the services in dependency order, whatever the compose version.
            .replace(
                "service_budget_s = 60",
                "service_budget_s = 60\nstart = \"ordered\"",
            )
            // The suites' venv the gate tests share, by its absolute path.
            .replace(
                "venv = \"../../../../../target/xtask/fixture-venv\"",
                &format!(
                    "venv = {:?}",
                    fixture()
                        .join("../../../../../target/xtask/fixture-venv")
                        .display()
                        .to_string()
                ),
            );
        std::fs::write(dir.path().join("harness.toml"), toml).unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, compose(std::fs::read_to_string(&file).unwrap())).unwrap();
        let config = stackgate::config::load(Some(&dir.path().join("harness.toml"))).unwrap();
        Copy {
            dir,
            reports: tempfile::tempdir().unwrap(),
            config,
        }
    }

    fn gate(&self, args: &[&str]) -> Output {
        crate::support::stackgate()
            .arg("--config")
            .arg(self.dir.path().join("harness.toml"))
            .arg("mission-critical")
            .arg("--target")
            .arg("docker")
            .arg("--junit")
            .arg(self.report_path())
            .args(args)
            .env_remove("GITHUB_STEP_SUMMARY")
            .output()
            .unwrap()
    }

    fn report_path(&self) -> PathBuf {
        self.reports.path().join("junit.xml")
    }

    fn report(&self) -> String {
        std::fs::read_to_string(self.report_path()).unwrap()
    }

    /// Names of containers, networks and volumes carrying this checkout's root label.
    fn labelled(&self) -> Vec<String> {
        crate::support::labelled(&format!(
            "io.xtask.root={}",
            stackgate::state::root_digest(&self.config.root)
        ))
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = crate::support::stackgate()
            .arg("--config")
            .arg(self.dir.path().join("harness.toml"))
            .args(["docker-down", "--all"])
            .output();
    }
}

fn slow_engine_checks(compose: String) -> String {
    compose.replace("interval: 1s", "interval: 30s")
}

fn explain(output: &Output) -> String {
    format!(
        "status {:?}\n--- stderr ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn the_probes_make_services_ready_and_start_dependents_before_the_engine_checks_once() {
    let Some(_) = crate::require::engine_async().await else {
        return;
    };
    let copy = Copy::new(slow_engine_checks);
    let engine = stackgate::engine::connect(&copy.config).await.unwrap();
    let report = stack::up(
        &copy.config,
        &engine,
        &UpOptions {
            isolated: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let down = stack::down(&copy.config, &report.state).await;
    assert!(report.passed(), "{report:#?}");
    let cache = &report.services[0];
    let web = &report.services[1];
    assert_eq!(
        (cache.service.as_str(), web.service.as_str()),
        ("cache", "web")
    );
    for service in [cache, web] {
        // The engine's first check runs 30 s after the start: only the probe can have said so.
        assert_eq!(service.signal, Some(Signal::Probe), "{service:#?}");
        assert!(service.probe_after.is_some(), "{service:#?}");
        assert!(
            service
                .check
                .detail
                .contains("first by the harness's probe"),
            "{}",
            service.check.detail
        );
    }
    // web waits on `cache: service_healthy`, and it started and became ready while the engine had
    // not yet said that cache was healthy: the harness started it on its own probe.
    assert_eq!(cache.engine_after, None, "{cache:#?}");
    assert!(
        report
            .up
            .detail
            .contains("started by the harness in dependency order"),
        "{}",
        report.up.detail
    );
    assert!(down.unwrap().outcome != stackgate::report::Outcome::Failed);
}

#[test]
fn a_second_reuse_run_takes_the_warm_stack_a_changed_compose_file_does_not_and_docker_down_all_leaves_nothing(
) {
    if crate::require::engine().is_none()
        || crate::require::program("docker", &["version"]).is_none()
    {
        return;
    }
    let copy = Copy::new(|c| c);
    let first = copy.gate(&["--reuse"]);
    assert_eq!(first.status.code(), Some(0), "{}", explain(&first));
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(stderr.contains("kept the stack warm"), "{stderr}");
    assert!(!copy.labelled().is_empty(), "the warm stack is up");
    // The gate's stack runs under the gate's run id.
    let warm_run = run_property(&copy.report(), "run_id");

    let second = copy.gate(&["--reuse"]);
    assert_eq!(second.status.code(), Some(0), "{}", explain(&second));
    let xml = copy.report();
    assert!(
        xml.contains(&format!("reused the warm stack of run {warm_run}")),
        "{}\n{xml}",
        explain(&second)
    );

    // Another compose file (a key the harness does not read itself): a fresh stack.
    let file = copy.dir.path().join("compose.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "    command: [\"redis-server\"",
            "    environment: { CHANGED: \"1\" }\n    command: [\"redis-server\"",
        ),
    )
    .unwrap();
    let third = copy.gate(&["--reuse"]);
    assert_eq!(third.status.code(), Some(0), "{}", explain(&third));
    let xml = copy.report();
    assert!(!xml.contains("reused the warm stack"), "{xml}");
    let stderr = String::from_utf8_lossy(&third.stderr);
    assert!(stderr.contains("kept under another key"), "{stderr}");

    let down = crate::support::stackgate()
        .arg("--config")
        .arg(copy.dir.path().join("harness.toml"))
        .args(["docker-down", "--all"])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(0), "{}", explain(&down));
    assert_eq!(
        copy.labelled(),
        Vec::<String>::new(),
        "left after docker-down --all"
    );
}

fn run_property(xml: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let start = xml.find(&key).expect("property") + key.len();
    xml[start..].split('"').next().unwrap().to_owned()
}
