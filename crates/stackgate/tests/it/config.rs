//! Malformed `harness.toml` files: each is one line naming file:line:col and the key, exit 2,
//! and the engine is never contacted.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

const GOOD: &str = r#"
[project]
name = "demo"

[preflight]
free_ports = [2375]
max_cpu_percent = 80

[engine]
start_timeout_s = 30

[stack]
compose_file = "compose.yaml"
services = ["web", "db"]

[endpoints]
web = "http://127.0.0.1:{port:web:80}"

[ws_check]
url = "{web}/ws"
send = "{}"
expect = ["done"]

[[suite]]
name = "smoke"
runner = "pytest"
args = ["tests"]

[targets.local]
endpoints = { web = "http://127.0.0.1:18080" }

[fallback]
order = ["local"]
"#;

/// (what is wrong, replace this, with this, expected line, expected key)
const CASES: &[(&str, &str, &str, usize, &str)] = &[
    ("bad toml", "[preflight]", "[preflight", 5, "preflight"),
    (
        "unknown key",
        "start_timeout_s = 30",
        "start_timeout_z = 30",
        10,
        "engine",
    ),
    (
        "wrong type",
        "start_timeout_s = 30",
        "start_timeout_s = \"soon\"",
        10,
        "engine.start_timeout_s",
    ),
    (
        "negative timeout",
        "start_timeout_s = 30",
        "start_timeout_s = -5",
        10,
        "engine.start_timeout_s",
    ),
    (
        "port out of range",
        "free_ports = [2375]",
        "free_ports = [2375, 70000]",
        6,
        "preflight.free_ports",
    ),
    (
        "percent out of range",
        "max_cpu_percent = 80",
        "max_cpu_percent = 150",
        7,
        "preflight.max_cpu_percent",
    ),
    (
        "endpoint names unknown service",
        "{port:web:80}",
        "{port:cache:80}",
        17,
        "endpoints.web",
    ),
    (
        "missing compose file",
        "compose_file = \"compose.yaml\"",
        "compose_file = \"nope.yaml\"",
        13,
        "stack.compose_file",
    ),
    (
        "unknown runner",
        "runner = \"pytest\"",
        "runner = \"jest\"",
        26,
        "suite",
    ),
    (
        "ws url names unknown endpoint",
        "url = \"{web}/ws\"",
        "url = \"{api}/ws\"",
        20,
        "ws_check.url",
    ),
    (
        "fallback to unconfigured target",
        "order = [\"local\"]",
        "order = [\"staging\"]",
        33,
        "fallback.order",
    ),
    (
        "invalid project name",
        "name = \"demo\"",
        "name = \"Demo App\"",
        3,
        "project.name",
    ),
    (
        "bad on_shortfall",
        "max_cpu_percent = 80",
        "max_cpu_percent = 80\non_shortfall = \"maybe\"",
        8,
        "preflight.on_shortfall",
    ),
    (
        "staging ca_file missing",
        "[targets.local]",
        "[targets.staging]\nendpoints = { web = \"https://staging.example\" }\nca_file = \"missing.pem\"\n\n[targets.local]",
        31,
        "targets.staging.ca_file",
    ),
    (
        "staging ca_file without certificates",
        "[targets.local]",
        "[targets.staging]\nendpoints = { web = \"https://staging.example\" }\nca_file = \"compose.yaml\"\n\n[targets.local]",
        31,
        "targets.staging.ca_file",
    ),
    (
        "zero budget",
        "services = [\"web\", \"db\"]",
        "services = [\"web\", \"db\"]\nservice_budget_s = 0",
        15,
        "stack.service_budget_s",
    ),
    (
        "negative interrupt stop timeout",
        "services = [\"web\", \"db\"]",
        "services = [\"web\", \"db\"]\ninterrupt_stop_timeout_s = -1",
        15,
        "stack.interrupt_stop_timeout_s",
    ),
    (
        "engine_host outside [endpoints]",
        "url = \"{web}/ws\"",
        "url = \"ws://{engine_host}:80/ws\"",
        20,
        "ws_check.url",
    ),
    (
        "too many retries",
        "args = [\"tests\"]",
        "args = [\"tests\"]\nretries = 11",
        28,
        "suite.retries",
    ),
    (
        "an empty quarantine pattern",
        "args = [\"tests\"]",
        "args = [\"tests\"]\nquarantine = [\"t::x\", \" \"]",
        28,
        "suite.quarantine",
    ),
    (
        "an endpoint named engine_host",
        "web = \"http://127.0.0.1:{port:web:80}\"",
        "web = \"http://127.0.0.1:{port:web:80}\"\nengine_host = \"http://x\"",
        18,
        "endpoints.engine_host",
    ),
];

fn project_with(harness: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
    std::fs::write(dir.path().join("harness.toml"), harness).unwrap();
    dir
}

#[test]
fn the_good_file_loads() {
    let dir = project_with(GOOD);
    let config = stackgate::config::load(Some(&dir.path().join("harness.toml"))).unwrap();
    assert_eq!(config.project.name.0, "demo");
    assert_eq!(config.engine.start_timeout_s.0, 30);
    let stack = config.stack.unwrap();
    assert_eq!(stack.services, vec!["web", "db"]);
    // After a signal, containers get 2 s by default (0 is allowed: kill at once).
    assert_eq!(stack.interrupt_stop_timeout_s.0, 2);
}

#[test]
fn a_staging_ca_file_is_resolved_against_the_file() {
    let dir = project_with(&GOOD.replacen(
        "[targets.local]",
        "[targets.staging]\nendpoints = { web = \"https://staging.example\" }\nca_file = \"certs/ca.pem\"\n\n[targets.local]",
        1,
    ));
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    std::fs::write(
        dir.path().join("certs/ca.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let config = stackgate::config::load(Some(&dir.path().join("harness.toml"))).unwrap();
    let ca_file = config.targets.staging.unwrap().ca_file.unwrap();
    assert!(ca_file.is_absolute(), "{}", ca_file.display());
    assert!(ca_file.ends_with("certs/ca.pem"), "{}", ca_file.display());
}

#[test]
fn engine_host_is_a_placeholder_of_endpoints() {
    let dir = project_with(&GOOD.replacen(
        "web = \"http://127.0.0.1:{port:web:80}\"",
        "web = \"http://{engine_host}:{port:web:80}\"",
        1,
    ));
    let config = stackgate::config::load(Some(&dir.path().join("harness.toml"))).unwrap();
    assert_eq!(
        config.endpoints["web"],
        "http://{engine_host}:{port:web:80}"
    );
}

#[test]
fn the_reference_harness_toml_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let config = stackgate::config::load(Some(&root.join("harness.toml"))).unwrap();
    assert!(config.stack.is_some());
    assert!(!config.suites.is_empty());
}

#[test]
fn each_malformed_file_names_file_line_and_key() {
    for (what, from, to, line, key) in CASES {
        assert!(
            GOOD.contains(from),
            "{what}: fixture does not contain {from:?}"
        );
        let dir = project_with(&GOOD.replacen(from, to, 1));
        let path = dir.path().join("harness.toml");
        let error = stackgate::config::load(Some(&path))
            .expect_err(what)
            .to_string();
        assert_eq!(error.lines().count(), 1, "{what}: not one line: {error}");
        let canonical = path.canonicalize().unwrap();
        let prefix = format!("{}:{line}:", canonical.display());
        assert!(
            error.starts_with(&prefix),
            "{what}: expected {prefix}..., got {error}"
        );
        assert!(
            error.contains(&format!("key `{key}")),
            "{what}: key `{key}` not named in {error}"
        );
    }
}

/// A fake engine socket that records whether anybody connected.
struct FakeEngine {
    _dir: tempfile::TempDir,
    listener: UnixListener,
    host: String,
}

impl FakeEngine {
    fn new() -> FakeEngine {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        FakeEngine {
            host: format!("unix://{}", path.display()),
            listener,
            _dir: dir,
        }
    }

    fn was_contacted(&self) -> bool {
        match self.listener.accept() {
            Ok((mut stream, _)) => {
                let mut buf = [0u8; 16];
                let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = stream.read(&mut buf);
                true
            }
            Err(_) => false,
        }
    }
}

#[test]
fn malformed_files_exit_2_without_touching_the_engine() {
    let engine = FakeEngine::new();
    for (what, from, to, _, key) in CASES.iter().take(8) {
        let dir = project_with(&GOOD.replacen(from, to, 1));
        for command in ["docker-up", "doctor", "mission-critical"] {
            let output = crate::support::stackgate()
                .arg(command)
                .current_dir(dir.path())
                .env("DOCKER_HOST", &engine.host)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{what} / {command}: {stderr}"
            );
            assert!(
                stderr.contains("harness.toml:"),
                "{what} / {command}: {stderr}"
            );
            assert!(
                stderr.contains(&format!("key `{key}")),
                "{what} / {command}: {stderr}"
            );
        }
    }
    assert!(
        !engine.was_contacted(),
        "a malformed harness.toml must not lead to an engine call"
    );
}

#[test]
fn config_is_found_from_a_subdirectory_and_flag_overrides() {
    let dir = project_with(GOOD);
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    assert_eq!(
        stackgate::config::find(&nested).unwrap(),
        dir.path().join("harness.toml")
    );

    let output = crate::support::stackgate()
        .args(["--config", "/nonexistent/harness.toml", "doctor"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/harness.toml"));
}
