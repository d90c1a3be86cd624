//! `stackgate init` and `init --xtask`, run as the built binary in repositories of their own:
//! the harness.toml guessed from several compose files, the refusal to overwrite, `--dry-run`,
//! the error without a compose file, `--ws`, the Cargo scaffold (empty repository, beside a
//! workspace, an xtask of the repository's own), and one adoption end to end with the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::explain;

fn init(dir: &Path, args: &[&str]) -> Output {
    crate::support::stackgate()
        .current_dir(dir)
        .arg("init")
        .args(args)
        .output()
        .unwrap()
}

/// A repository (a temp dir named `name`) holding `files`.
fn repo(name: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join(name);
    for (path, text) in files {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    (temp, root)
}

/// Runs `init` (it must pass) and reads the harness.toml it wrote.
fn initialised(root: &Path, args: &[&str]) -> (toml::Table, String, String) {
    let output = init(root, args);
    assert!(output.status.success(), "{}", explain(&output));
    let text = std::fs::read_to_string(root.join("harness.toml")).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    // What it wrote is what the loader accepts.
    stackgate::config::parse(&root.join("harness.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    (
        table,
        text,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn strings(value: &toml::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

const WEB_AND_REDIS: &str = r#"
services:
  web:
    build: .
    ports:
      - "8000:8000"
      - "127.0.0.1:${METRICS_PORT:-9100}:9100"
    depends_on:
      - redis
  redis:
    image: redis:7
  worker:
    image: debian:bookworm-slim
    depends_on: [redis]
"#;

#[test]
fn a_public_style_stack_without_healthchecks() {
    let (_temp, root) = repo(
        "Shop App",
        &[
            ("docker-compose.yml", WEB_AND_REDIS),
            ("Dockerfile", "FROM debian:bookworm-slim\n"),
            ("tests/test_api.py", "def test_x():\n    pass\n"),
            ("tests/requirements.txt", "requests\n"),
        ],
    );
    let (table, text, stderr) = initialised(&root, &[]);
    assert_eq!(table["project"]["name"].as_str(), Some("shop-app"));
    let stack = &table["stack"];
    assert_eq!(stack["compose_file"].as_str(), Some("docker-compose.yml"));
    // worker and redis publish nothing and have no healthcheck: left out, and said so.
    assert_eq!(strings(&stack["services"]), ["web"]);
    assert!(
        stderr.contains("left out `redis`") && stderr.contains("left out `worker`"),
        "{stderr}"
    );
    // A port from a variable is isolated; the fixed one cannot be, and the user is told how.
    assert_eq!(stack["isolated_env"]["METRICS_PORT"].as_str(), Some("0"));
    assert!(stderr.contains("fixed host port 8000"), "{stderr}");
    let free: Vec<i64> = table["preflight"]["free_ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_integer().unwrap())
        .collect();
    assert_eq!(free, [8000]);
    // No healthcheck: readiness by a TCP probe of its first port.
    assert_eq!(
        table["stack"]["ready"]["web"].as_str(),
        Some("tcp://{engine_host}:{port:web:8000}")
    );
    let endpoints = &table["endpoints"];
    assert_eq!(
        endpoints["web"].as_str(),
        Some("http://{engine_host}:{port:web:8000}")
    );
    assert_eq!(
        endpoints["web_9100"].as_str(),
        Some("http://{engine_host}:{port:web:9100}")
    );
    // The Dockerfile's base image is provisioned when no registry answers.
    assert_eq!(
        table["images"]["debian:bookworm-slim"]["provision"].as_str(),
        Some("debootstrap")
    );
    // tests/requirements.txt does not name pytest: init adds a file that does.
    assert_eq!(
        strings(&table["python"]["requirements"]),
        ["tests/requirements.txt", "requirements-stackgate.txt"]
    );
    let pytest_file = std::fs::read_to_string(root.join("requirements-stackgate.txt")).unwrap();
    assert!(pytest_file.lines().any(|l| l == "pytest"));
    let suites = table["suite"].as_array().unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0]["runner"].as_str(), Some("pytest"));
    assert_eq!(strings(&suites[0]["args"]), ["tests"]);
    assert!(table.get("ws_check").is_none());
    assert!(
        text.contains("# ") && text.contains("suites get WEB_URL"),
        "{text}"
    );
}

const HEALTHY_CHAIN: &str = r#"
version: "2.4"
x-timing: &timing
  interval: 1s
  retries: 30
  start_period: 90s
services:
  db:
    image: postgres:16
    healthcheck:
      test: ["CMD", "pg_isready"]
      <<: *timing
  api:
    image: example/api
    ports: ["127.0.0.1::8080"]
    depends_on:
      db: { condition: service_healthy }
    healthcheck:
      test: ["CMD", "true"]
  debug-ui:
    image: example/ui
    profiles: ["debug"]
    ports: ["3000:3000"]
  migrate:
    image: example/api
    healthcheck:
      disable: true
"#;

#[test]
fn healthchecks_long_depends_on_and_profiles() {
    let (_temp, root) = repo(
        "chain",
        &[
            ("compose.yaml", HEALTHY_CHAIN),
            ("e2e/conftest.py", ""),
            ("e2e/requirements-e2e.txt", "pytest>=8\nhttpx\n"),
            ("test/helpers.py", "# not a test\n"),
        ],
    );
    let (table, _text, stderr) = initialised(&root, &[]);
    let stack = &table["stack"];
    // db: healthcheck only; api: both; debug-ui: a profile; migrate: a disabled healthcheck.
    assert_eq!(strings(&stack["services"]), ["api", "db"]);
    assert!(
        stderr.contains("left out `debug-ui`: it is in a profile"),
        "{stderr}"
    );
    assert!(stderr.contains("left out `migrate`"), "{stderr}");
    // A start_period of 90s gets a budget beyond it.
    assert_eq!(stack["service_budget_s"].as_integer(), Some(120));
    assert!(stack.get("isolated_env").is_none() && stack.get("ready").is_none());
    assert!(table.get("preflight").is_none());
    let endpoints = table["endpoints"].as_table().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(
        endpoints["api"].as_str(),
        Some("http://{engine_host}:{port:api:8080}")
    );
    // e2e/ holds a conftest.py; test/ holds no test: one suite, its own requirements (with pytest).
    let suites = table["suite"].as_array().unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0]["name"].as_str(), Some("e2e"));
    assert_eq!(
        strings(&table["python"]["requirements"]),
        ["e2e/requirements-e2e.txt"]
    );
    assert!(!root.join("requirements-stackgate.txt").exists());
}

#[test]
fn no_ports_and_no_healthchecks_waits_for_every_service_and_a_workspace_gets_nextest() {
    let (_temp, root) = repo(
        "plain",
        &[
            (
                "compose.yml",
                "services:\n  a:\n    image: x\n  b:\n    image: y\n    depends_on: [a]\n",
            ),
            (
                "Cargo.toml",
                "[package]\nname = \"plain\"\nversion = \"0.1.0\"\n",
            ),
            ("src/lib.rs", "#[test]\nfn t() {}\n"),
        ],
    );
    let (table, _text, stderr) = initialised(&root, &[]);
    assert_eq!(strings(&table["stack"]["services"]), ["a", "b"]);
    assert!(stderr.contains("every service is waited for"), "{stderr}");
    assert!(table["endpoints"].as_table().unwrap().is_empty());
    let suites = table["suite"].as_array().unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(suites[0]["runner"].as_str(), Some("nextest"));
    assert!(table.get("python").is_none());
}

#[test]
fn ws_adds_the_endpoint_and_a_ws_check_to_uncomment() {
    let (_temp, root) = repo(
        "chat",
        &[(
            "compose.yaml",
            "services:\n  backend:\n    image: x\n    ports: [\"127.0.0.1:${BACKEND_PORT-8000}:8000\"]\n",
        )],
    );
    let (table, text, _stderr) = initialised(
        &root,
        &["--ws", "ws://{engine_host}:{port:backend:8000}/ws"],
    );
    assert_eq!(
        table["endpoints"]["backend_ws"].as_str(),
        Some("ws://{engine_host}:{port:backend:8000}/ws")
    );
    // The check is written commented: its message and events are the server's protocol.
    assert!(table.get("ws_check").is_none());
    assert!(
        text.contains("# [ws_check]\n# url = \"{backend_ws}\""),
        "{text}"
    );
    assert_eq!(
        table["stack"]["isolated_env"]["BACKEND_PORT"].as_str(),
        Some("0")
    );
    // A template naming a service that is not there is refused before anything is written.
    std::fs::remove_file(root.join("harness.toml")).unwrap();
    let output = init(&root, &["--ws", "ws://{engine_host}:{port:nope:1}/ws"]);
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not validate"));
    assert!(!root.join("harness.toml").exists());
}

#[test]
fn it_refuses_to_overwrite_without_force_and_dry_run_writes_nothing() {
    let (_temp, root) = repo(
        "keep",
        &[(
            "compose.yaml",
            "services:\n  web:\n    image: x\n    ports: [\"80\"]\n",
        )],
    );
    let dry = init(&root, &["--dry-run"]);
    assert!(dry.status.success(), "{}", explain(&dry));
    assert!(!root.join("harness.toml").exists());
    let printed = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(
        printed.contains("[stack]") && printed.contains("services = [\"web\"]"),
        "{printed}"
    );
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        1,
        "dry run wrote something"
    );

    std::fs::write(root.join("harness.toml"), "# mine\n").unwrap();
    let refused = init(&root, &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", explain(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("harness.toml exists: not overwritten") && stderr.contains("(hint: "),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("harness.toml")).unwrap(),
        "# mine\n"
    );

    let forced = init(&root, &["--force"]);
    assert!(forced.status.success(), "{}", explain(&forced));
    assert!(std::fs::read_to_string(root.join("harness.toml"))
        .unwrap()
        .contains("[stack]"));
}

#[test]
fn without_a_compose_file_it_exits_2_and_writes_nothing() {
    let (_temp, root) = repo("empty", &[("tests/test_a.py", "")]);
    let output = init(&root, &[]);
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no compose file")
            && stderr
                .contains("compose.yaml, compose.yml, docker-compose.yaml, docker-compose.yml"),
        "{stderr}"
    );
    assert!(!root.join("harness.toml").exists());
}

fn crate_dir() -> String {
    env!("CARGO_MANIFEST_DIR").to_owned()
}

/// `cargo metadata --offline` of a scaffolded repository: the workspace's member names.
fn workspace_members(root: &Path) -> Vec<String> {
    let output = Command::new(env!("CARGO"))
        .current_dir(root)
        .args([
            "metadata",
            "--offline",
            "--format-version",
            "1",
            "--no-deps",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata in {}: {}",
        root.display(),
        explain(&output)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut names: Vec<String> = value["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

const ONE_SERVICE: &str = "services:\n  web:\n    image: x\n    ports: [\"80\"]\n";

#[test]
fn xtask_scaffold_in_a_repository_without_rust() {
    let (_temp, root) = repo("norust", &[("compose.yaml", ONE_SERVICE)]);
    let output = init(&root, &["--xtask", "--crate-path", &crate_dir()]);
    assert!(output.status.success(), "{}", explain(&output));
    assert!(root.join("harness.toml").is_file());
    let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
    assert!(
        config.contains("xtask = \"run --package xtask --\""),
        "{config}"
    );
    let main = std::fs::read_to_string(root.join("xtask/src/main.rs")).unwrap();
    assert!(main.contains("stackgate::cli::run(\"cargo xtask\", std::env::args_os())"));
    let manifest = std::fs::read_to_string(root.join("xtask/Cargo.toml")).unwrap();
    assert!(
        manifest.contains(&format!(
            "path = \"{}\"",
            Path::new(&crate_dir()).canonicalize().unwrap().display()
        )),
        "{manifest}"
    );
    assert_eq!(workspace_members(&root), ["xtask"]);
    // Without --crate-path: the crates.io version of this crate.
    let (_temp2, other) = repo("norust2", &[("compose.yaml", ONE_SERVICE)]);
    let output = init(&other, &["--xtask", "--dry-run"]);
    assert!(output.status.success(), "{}", explain(&output));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("stackgate = \"{}\"", env!("CARGO_PKG_VERSION"))),
        "{printed}"
    );
    assert!(!other.join("xtask").exists() && !other.join("Cargo.toml").exists());
}

#[test]
fn xtask_scaffold_beside_an_existing_workspace_keeps_its_harness_toml() {
    let (_temp, root) = repo(
        "ws",
        &[
            ("compose.yaml", ONE_SERVICE),
            ("harness.toml", "# kept\n"),
            (
                "Cargo.toml",
                "# the team's workspace\n[workspace]\nresolver = \"2\"\nmembers = [\"app\"]\n",
            ),
            (
                "app/Cargo.toml",
                "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
            ),
            ("app/src/lib.rs", ""),
            (".cargo/config.toml", "[alias]\nb = \"build\"\n"),
        ],
    );
    let output = init(&root, &["--xtask", "--crate-path", &crate_dir()]);
    assert!(output.status.success(), "{}", explain(&output));
    assert_eq!(
        std::fs::read_to_string(root.join("harness.toml")).unwrap(),
        "# kept\n"
    );
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        manifest.starts_with("# the team's workspace\n"),
        "{manifest}"
    );
    assert_eq!(workspace_members(&root), ["app", "xtask"]);
    let config = std::fs::read_to_string(root.join(".cargo/config.toml")).unwrap();
    assert!(
        config.contains("b = \"build\"") && config.contains("xtask = "),
        "{config}"
    );
}

/// The lines `init --xtask` prints for a repository with an xtask of its own, compiled into
/// such an xtask: its own command still works, and stackgate's commands reach stackgate.
#[test]
fn an_existing_xtask_gets_lines_that_compile_and_dispatch() {
    let own_main = "fn main() -> std::process::ExitCode {\n//STACKGATE\n    match std::env::args().nth(1).as_deref() {\n        Some(\"hello\") => { println!(\"own command\"); std::process::ExitCode::SUCCESS }\n        _ => std::process::ExitCode::from(9),\n    }\n}\n";
    let (_temp, root) = repo(
        "own",
        &[
            ("compose.yaml", ONE_SERVICE),
            ("Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [\"xtask\"]\n"),
            ("xtask/Cargo.toml", "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n"),
            ("xtask/src/main.rs", own_main),
        ],
    );
    let output = init(&root, &["--xtask", "--crate-path", &crate_dir()]);
    assert!(output.status.success(), "{}", explain(&output));
    // Nothing of the xtask changed.
    assert_eq!(
        std::fs::read_to_string(root.join("xtask/src/main.rs")).unwrap(),
        own_main
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.contains("xtask/ exists: nothing changed"),
        "{stderr}"
    );
    // Exactly the printed lines go in.
    let dependency = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("stackgate = {"))
        .unwrap_or_else(|| panic!("no dependency line in {stderr}"))
        .trim()
        .to_owned();
    let start = stderr
        .find("    // stackgate's commands")
        .expect("the main lines");
    let lines: String = stderr[start..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(lines, stackgate::init::scaffold::EXISTING_MAIN_LINES);
    let manifest = root.join("xtask/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}{dependency}\n")).unwrap();
    std::fs::write(
        root.join("xtask/src/main.rs"),
        own_main.replace("//STACKGATE\n", &lines),
    )
    .unwrap();
    // This workspace's lock file: the same dependency versions, so the shared target dir is reused.
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    std::fs::copy(lock, root.join("Cargo.lock")).unwrap();
    let target_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/init-xtask");
    let built = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args(["build", "--offline", "--quiet", "-p", "xtask"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "cargo build in {}: {}",
        root.display(),
        explain(&built)
    );
    let xtask = target_dir.join("debug/xtask");
    let own = Command::new(&xtask).arg("hello").output().unwrap();
    assert!(own.status.success() && String::from_utf8_lossy(&own.stdout).contains("own command"));
    // `init` is stackgate's: run in a repository with a harness.toml, it refuses to overwrite (2).
    let theirs = Command::new(&xtask)
        .current_dir(&root)
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(theirs.status.code(), Some(2), "{}", explain(&theirs));
    assert!(String::from_utf8_lossy(&theirs.stderr).contains("not overwritten"));
}

/// A copy of a small stack nobody wrote for the harness, in a fresh git repository: `init`, then
/// the gate passes on docker and leaves nothing with its project's label.
#[test]
fn adopted_stack_passes_the_gate_and_leaves_nothing_behind() {
    if !crate::support::engine_available() {
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("adopted");
    crate::support::copy_dir(&crate::support::gate_fixture(), &root);
    for own in ["harness.toml", "harness.parallel.toml", "parallel_tests"] {
        let path = root.join(own);
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    let git = Command::new("git")
        .current_dir(&root)
        .args(["init", "-q"])
        .status()
        .unwrap();
    assert!(git.success());
    let (table, _text, _stderr) = initialised(&root, &[]);
    assert_eq!(
        table["stack"]["isolated_env"]["WEB_PORT"].as_str(),
        Some("0")
    );
    let junit = root.join("target/junit.xml");
    let output = crate::support::stackgate()
        .current_dir(&root)
        .args(["mission-critical", "--target", "docker", "--junit"])
        .arg(&junit)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("WEB_PORT")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let report = std::fs::read_to_string(&junit).unwrap();
    assert!(
        report.contains("test_health") && report.contains("test_echoes_the_path"),
        "{report}"
    );
    assert!(report.contains("no [ws_check] in harness.toml"), "{report}");
    let left = crate::support::labelled(&format!(
        "{}={}",
        stackgate::state::LABEL_PROJECT,
        "adopted"
    ));
    assert!(left.is_empty(), "left behind: {left:?}");
}
