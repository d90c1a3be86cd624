//! `ws-check` against real servers started here: the reference auth and backend as host processes
//! (STORE=memory) on ephemeral ports, and a different WebSocket service (fixtures/ws-other).
//! Python with aiohttp and PyJWT is found or installed into a venv under target/; when that is
//! impossible the tests skip through [`crate::require`] (and fail under `XTASK_REQUIRE_ALL=1`).
//! The servers run through the harness's own process runner, each in its own process group.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use stackgate::process::{Cmd, Process};
use stackgate::ws::{self, Overrides, WsPlan};

use crate::support::repo_root;

fn imports_ok(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import aiohttp, jwt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python that imports aiohttp and jwt (the system's, or a venv made for these tests), or why
/// there is none.
fn python_with_aiohttp() -> Result<&'static Path, &'static str> {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let system = PathBuf::from("python3");
            if imports_ok(&system) {
                return Ok(system);
            }
            let venv = repo_root().join("target").join("ws-test-venv");
            let venv_python = venv.join("bin").join("python");
            if !imports_ok(&venv_python) {
                let created = Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .map_err(|e| format!("python3 -m venv failed: {e}"))?;
                if !created.success() {
                    return Err(format!("python3 -m venv {} failed", venv.display()));
                }
                let output = Command::new(&venv_python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "-q",
                        "aiohttp>=3.8,<4",
                        "PyJWT>=2.6,<3",
                    ])
                    .output()
                    .map_err(|e| format!("pip failed to start: {e}"))?;
                if !output.status.success() {
                    return Err(format!(
                        "pip install aiohttp PyJWT failed: {}",
                        String::from_utf8_lossy(&output.stderr)
                    ));
                }
            }
            Ok(venv_python)
        })
        .as_deref()
        .map_err(String::as_str)
}

/// [`python_with_aiohttp`], or a skip through [`crate::require`] saying why there is none.
#[track_caller]
pub(crate) fn python() -> Option<&'static Path> {
    crate::require::python()?;
    crate::require::or_skip(
        python_with_aiohttp().map_err(|why| format!("no Python with aiohttp and PyJWT: {why}")),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("an ephemeral port")
}

/// A server process in its own process group, stopped (group and all) when dropped.
struct Server {
    _process: Process,
}

fn http_get_ok(port: u16, path: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn start(python: &Path, name: &str, script: &Path, port: u16, ready: &str) -> Server {
    let mut process = Cmd::new(python)
        .arg(script)
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("STORE", "memory")
        .env("JWT_SECRET", JWT_SECRET)
        .env("LOG_LEVEL", "WARNING")
        // Its errors go to the test's stderr as they come, not through a pipe this test reads:
        // the test blocks (its readiness loop, the xtask binary) while the servers run.
        .show_output()
        .quiet_stdout()
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e:#}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get_ok(port, ready) {
        assert!(
            Instant::now() < deadline && process.try_status().is_none(),
            "{name} did not answer GET {ready} on port {port} within 30s ({:?}; its stderr is above)",
            process.try_status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { _process: process }
}

/// The reference auth and backend, in memory mode (their JWT secret is [`JWT_SECRET`]).
pub(crate) struct Reference {
    _auth: Server,
    _backend: Server,
    pub(crate) backend_port: u16,
    pub(crate) auth_port: u16,
}

/// The secret the reference servers of these tests sign tokens with.
pub(crate) const JWT_SECRET: &str = "ws-test-secret";

impl Reference {
    pub(crate) fn start(python: &Path) -> Reference {
        let root = repo_root();
        let (auth_port, backend_port) = (free_port(), free_port());
        let auth = start(
            python,
            "auth",
            &root.join("services/auth/app.py"),
            auth_port,
            "/health",
        );
        let backend = start(
            python,
            "backend",
            &root.join("services/backend/app.py"),
            backend_port,
            "/health",
        );
        Reference {
            _auth: auth,
            _backend: backend,
            backend_port,
            auth_port,
        }
    }

    fn endpoints(&self) -> BTreeMap<String, String> {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            "backend".to_owned(),
            format!("http://127.0.0.1:{}", self.backend_port),
        );
        endpoints.insert(
            "backend_ws".to_owned(),
            format!("ws://127.0.0.1:{}/ws", self.backend_port),
        );
        endpoints.insert(
            "auth".to_owned(),
            format!("http://127.0.0.1:{}", self.auth_port),
        );
        endpoints
    }

    fn plan(&self, overrides: Overrides) -> WsPlan {
        let config = stackgate::config::load(Some(&repo_root().join("harness.toml")))
            .expect("the reference harness.toml loads");
        ws::plan_from_config(&config, &self.endpoints(), &overrides).expect("a plan")
    }
}

const FIVE: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

#[tokio::test]
async fn one_user_receives_the_five_events_in_order() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let result = ws::run(&stack.plan(Overrides::default())).await;
    assert!(result.passed, "{:?}", result.failure);
    let names: Vec<&str> = result
        .events
        .iter()
        .filter(|e| e.expected)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, FIVE);
    let checks: Vec<&str> = result.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(checks, ["websocket connect", "websocket events"]);
    assert_eq!(result.stats.last_event.count, 1);
}

#[tokio::test]
async fn twenty_users_pass_and_nothing_is_misrouted() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let result = ws::run(&stack.plan(Overrides {
        users: 20,
        messages: 2,
        ..Overrides::default()
    }))
    .await;
    assert!(result.passed, "{:?}", result.failure);
    assert_eq!(result.stats.connections_succeeded, 20);
    assert_eq!(result.stats.success_rate_percent, 100.0);
    assert_eq!(result.stats.messages_completed, 40);
    assert_eq!(result.stats.events_received, 200);
    assert_eq!(result.stats.events_misrouted, 0);
    assert_eq!(result.stats.last_event.count, 40);
    let isolation = result
        .checks
        .iter()
        .find(|c| c.name == "websocket isolation")
        .expect("an isolation check");
    assert_eq!(isolation.outcome, stackgate::report::Outcome::Passed);
}

#[tokio::test]
async fn a_wrong_path_fails_with_the_404() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let result = ws::run(&stack.plan(Overrides {
        url: Some(format!("ws://127.0.0.1:{}/nope", stack.backend_port)),
        ..Overrides::default()
    }))
    .await;
    assert!(!result.passed);
    let failure = result.failure.unwrap();
    assert!(
        failure.starts_with("websocket connect: handshake with ws://127.0.0.1:")
            && failure.contains("/nope answered HTTP 404 Not Found"),
        "{failure}"
    );
    assert_eq!(
        result.checks[1].outcome,
        stackgate::report::Outcome::Skipped
    );
}

#[tokio::test]
async fn no_token_fails_with_the_401_and_its_body() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let mut plan = stack.plan(Overrides::default());
    plan.token_url = None;
    let failure = ws::run(&plan).await.failure.unwrap();
    assert!(
        failure.contains("answered HTTP 401 Unauthorized") && failure.contains("missing_token"),
        "{failure}"
    );
}

#[tokio::test]
async fn nothing_listening_fails_as_refused() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let closed = free_port();
    let failure = ws::run(&stack.plan(Overrides {
        url: Some(format!("ws://127.0.0.1:{closed}/ws")),
        ..Overrides::default()
    }))
    .await
    .failure
    .unwrap();
    assert_eq!(
        failure,
        format!("websocket connect: connection refused at ws://127.0.0.1:{closed}/ws: nothing is listening there")
    );
}

#[tokio::test]
async fn an_event_never_sent_times_out_naming_it() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let mut plan = stack.plan(Overrides::default());
    plan.expect.push("agent_celebrated".to_owned());
    plan.timeout = Duration::from_secs(2);
    let failure = ws::run(&plan).await.failure.unwrap();
    assert_eq!(
        failure,
        "websocket events: timed out after 2.0s waiting for event `agent_celebrated`; \
         received: agent_started, agent_thinking, tool_executing, tool_completed, agent_completed"
    );
}

#[tokio::test]
async fn events_out_of_order_fail_as_wrong_order() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let mut plan = stack.plan(Overrides::default());
    plan.expect = vec!["agent_thinking".into(), "agent_started".into()];
    let failure = ws::run(&plan).await.failure.unwrap();
    assert_eq!(
        failure,
        "websocket events: wrong order: got `agent_started` while `agent_thinking` was expected next; received: agent_started"
    );
}

#[tokio::test]
async fn an_error_event_fails_the_check() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let mut plan = stack.plan(Overrides::default());
    plan.send = r#"{"type": "user_message", "content": ""}"#.to_owned();
    let failure = ws::run(&plan).await.failure.unwrap();
    assert!(
        failure.starts_with("websocket events: the server sent an error event: ")
            && failure.contains("missing_content"),
        "{failure}"
    );
}

fn xtask(args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut command = crate::support::stackgate();
    command.args(args).current_dir(repo_root());
    for (key, value) in env {
        command.env(key, value);
    }
    command.env_remove("XTASK_WS_TOKEN");
    let output = command.output().expect("xtask runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_command_prints_events_json_and_exit_codes_and_never_the_token() {
    let Some(python) = python() else {
        return;
    };
    let stack = Reference::start(python);
    let url = format!("ws://127.0.0.1:{}/ws", stack.backend_port);
    let token_url = format!("http://127.0.0.1:{}/token", stack.auth_port);
    let config = repo_root().join("harness.toml");
    let config = config.to_str().unwrap();

    let (code, stdout, stderr) = xtask(
        &[
            "--config",
            config,
            "ws-check",
            "--url",
            &url,
            "--token-url",
            &token_url,
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    for event in FIVE {
        assert!(stderr.contains(event), "{event} not printed:\n{stderr}");
    }
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(json["passed"], true);
    assert_eq!(json["events"].as_array().unwrap().len(), 5);

    let secret = "not-a-valid-token-s3cr3t";
    let (code, stdout, stderr) = xtask(
        &[
            "--config",
            config,
            "ws-check",
            "--url",
            &format!("{url}?token={secret}"),
            "--token",
            secret,
            "--json",
        ],
        &[],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: websocket connect: handshake with") && stderr.contains("HTTP 401"),
        "{stderr}"
    );
    assert!(!stderr.contains(secret), "token printed:\n{stderr}");
    assert!(!stdout.contains(secret), "token printed:\n{stdout}");
}

/// A different service, configured only by its own harness.toml.
struct Other {
    _server: Server,
    port: u16,
}

impl Other {
    fn start(python: &Path) -> Other {
        let port = free_port();
        let server = start(
            python,
            "ws-other",
            &fixture_dir().join("server.py"),
            port,
            "/healthz",
        );
        Other {
            _server: server,
            port,
        }
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ws-other")
}

#[tokio::test]
async fn another_service_passes_with_its_own_harness_toml() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let config = fixture_dir().join("harness.toml");
    let (code, stdout, stderr) = xtask(
        &[
            "--config",
            config.to_str().unwrap(),
            "ws-check",
            "--users",
            "3",
            "--json",
        ],
        &[("WS_OTHER_PORT", other.port.to_string())],
    );
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("--json prints JSON");
    assert_eq!(json["stats"]["messages_completed"], 3);
    assert_eq!(json["stats"]["connections_succeeded"], 3);
    // The heartbeat is unrelated: recorded, not expected, and it fails nothing.
    let names: Vec<&str> = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["heartbeat", "accepted", "working", "finished"]);
}

fn other_plan(port: u16) -> WsPlan {
    let config = stackgate::config::load(Some(&fixture_dir().join("harness.toml"))).unwrap();
    let mut endpoints = BTreeMap::new();
    endpoints.insert("api".to_owned(), format!("http://127.0.0.1:{port}"));
    endpoints.insert(
        "live".to_owned(),
        format!("ws://127.0.0.1:{port}/live/socket"),
    );
    ws::plan_from_config(&config, &endpoints, &Overrides::default()).unwrap()
}

#[tokio::test]
async fn a_frame_that_is_not_json_fails_as_malformed() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let mut plan = other_plan(other.port);
    plan.send = r#"{"op": "garble"}"#.to_owned();
    let failure = ws::run(&plan).await.failure.unwrap();
    assert!(
        failure.starts_with("websocket events: malformed message (not JSON: ")
            && failure.ends_with("): this is not json"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_close_before_the_events_names_the_code() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let mut plan = other_plan(other.port);
    plan.send = r#"{"op": "leave"}"#.to_owned();
    let failure = ws::run(&plan).await.failure.unwrap();
    assert_eq!(
        failure,
        "websocket events: unexpected close: the server closed the connection with code 4001 (go away) while waiting for event `accepted`"
    );
}

#[tokio::test]
async fn the_other_service_rejects_a_missing_key_with_its_403() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let mut plan = other_plan(other.port);
    plan.token_url = None;
    let failure = ws::run(&plan).await.failure.unwrap();
    assert!(
        failure.ends_with("/live/socket answered HTTP 403 Forbidden: forbidden: no session key"),
        "{failure}"
    );
}

#[tokio::test]
async fn an_event_of_a_run_the_user_did_not_start_is_misrouted() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let mut plan = other_plan(other.port);
    plan.send = r#"{"op": "leak"}"#.to_owned();
    plan.users = 2;
    let result = ws::run(&plan).await;
    assert!(!result.passed);
    assert_eq!(result.stats.events_misrouted, 2);
    assert_eq!(result.stats.messages_completed, 2, "own events still count");
    let failure = result.failure.unwrap();
    assert!(
        failure.starts_with("websocket isolation: 2 events misrouted; user ")
            && failure.ends_with(
                "received `working` of a run no user started (run_id run-of-a-stranger)"
            ),
        "{failure}"
    );
}

#[tokio::test]
async fn a_run_claimed_by_two_users_is_misrouted() {
    let Some(python) = python() else {
        return;
    };
    let other = Other::start(python);
    let mut plan = other_plan(other.port);
    plan.send = r#"{"op": "shared"}"#.to_owned();
    plan.users = 2;
    let result = ws::run(&plan).await;
    assert!(!result.passed);
    assert_eq!(result.stats.events_misrouted, 1);
    assert_eq!(result.misrouted[0].run_id, "run-shared");
}
