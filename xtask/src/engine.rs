//! Finding, starting, proving and stopping the Docker engine.
//!
//! CONTRACT (owned by the engine work; signatures used by stack, gate and ci):
//! `ensure_running`, `connect`, `smoke`, `list_networks`, `stop_started_engine`, `run_engine_only`.
//!
//! Reading order: where the engine is (DOCKER_HOST forms, docker contexts, known sockets: pure
//! functions over [`DiscoveryEnv`]), probing the candidates, the pid file a crashed dockerd leaves,
//! how the platform starts an engine ([`StartPlan`], as data), waiting for it, the smoke container,
//! stopping what the harness started, installing packages, and the `docker-up --engine-only` output.
//! Images live in [`crate::images`]; compose stacks in [`crate::stack`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use futures_util::StreamExt;
use serde::Serialize;

use crate::config::{Config, EngineCfg};
use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::state::{self, EngineState};
use crate::ui;

/// A connected engine and what is known about it.
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: bollard::Docker,
    pub info: EngineInfo,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineInfo {
    /// Where it was reached, e.g. `unix:///var/run/docker.sock`.
    pub host: String,
    pub server_version: String,
    pub api_version: String,
    pub os: String,
    pub storage_driver: String,
    /// True when this call started the engine (or state.json says the harness started it).
    pub started_by_harness: bool,
    /// From the start of `ensure_running` until the engine answered (seconds in JSON).
    #[serde(serialize_with = "secs")]
    pub time_to_answer: Duration,
}

fn secs<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// `--install`: install the engine packages when missing.
    pub install: bool,
}

/// The engine packages `--install` puts on Debian or Ubuntu.
pub const ENGINE_PACKAGES: &[&str] = &["docker.io", "docker-compose"];

/// The socket dockerd listens on when nothing else is said.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The pid file dockerd writes when nothing else is said.
pub const DEFAULT_PID_FILE: &str = "/var/run/docker.pid";

/// How often a starting engine is asked whether it answers: dockerd answers ~0.6 s after it
/// starts here, so polling must add little to that.
const POLL_EVERY: Duration = Duration::from_millis(25);

/// How often a wait says what it is waiting for.
const SAY_EVERY: Duration = Duration::from_secs(5);

/// How long a pull may take before the harness gives up on registries (none answers here).
pub const PULL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Where the engine is: DOCKER_HOST forms, docker contexts, known sockets.

/// An engine address, as `DOCKER_HOST` and docker contexts write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Host {
    /// `unix:///var/run/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port` (also `http://`); kept as `host:port`.
    Tcp(String),
    /// `npipe:////./pipe/docker_engine`; kept as the pipe path.
    Npipe(String),
}

impl Host {
    /// Parses the forms the docker CLI accepts in `DOCKER_HOST` (ssh and TLS are not supported).
    pub fn parse(text: &str) -> Result<Host, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix://") {
            if path.is_empty() {
                return Ok(Host::Unix(PathBuf::from(DEFAULT_SOCKET)));
            }
            if !path.starts_with('/') {
                return Err(format!("`{text}`: a unix socket path must be absolute"));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = text
            .strip_prefix("tcp://")
            .or_else(|| text.strip_prefix("http://"))
        {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err(format!("`{text}`: expected tcp://HOST:PORT"));
            }
            // The docker CLI defaults the port to 2375 for plain tcp.
            let has_port = match authority.rsplit_once(':') {
                Some((_, port)) if !authority.ends_with(']') => {
                    port.parse::<u16>()
                        .map_err(|_| format!("`{text}`: `{port}` is not a port number"))?;
                    true
                }
                _ => false,
            };
            return Ok(Host::Tcp(if has_port {
                authority.to_owned()
            } else {
                format!("{authority}:2375")
            }));
        }
        if let Some(pipe) = text.strip_prefix("npipe://") {
            if pipe.is_empty() {
                return Ok(Host::Npipe("//./pipe/docker_engine".to_owned()));
            }
            return Ok(Host::Npipe(pipe.to_owned()));
        }
        if text.starts_with("ssh://") || text.starts_with("https://") {
            return Err(format!(
                "`{text}`: ssh and TLS engines are not supported by the harness (use unix://, tcp:// or npipe://)"
            ));
        }
        Err(format!(
            "`{text}` is not an engine address (expected unix://PATH, tcp://HOST:PORT or npipe://PATH)"
        ))
    }

    pub fn url(&self) -> String {
        match self {
            Host::Unix(path) => format!("unix://{}", path.display()),
            Host::Tcp(authority) => format!("tcp://{authority}"),
            Host::Npipe(pipe) => format!("npipe://{pipe}"),
        }
    }

    /// The unix socket, when this is one.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            Host::Unix(path) => Some(path),
            Host::Tcp(_) | Host::Npipe(_) => None,
        }
    }

    /// The socket a stock dockerd listens on (`/var/run` is usually a link to `/run`).
    pub fn is_default_socket(&self) -> bool {
        matches!(self.socket(), Some(p) if p == Path::new(DEFAULT_SOCKET) || p == Path::new("/run/docker.sock"))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url())
    }
}

impl From<Host> for String {
    fn from(host: Host) -> String {
        host.url()
    }
}

/// Why a candidate is on the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The `DOCKER_HOST` environment variable.
    DockerHost,
    /// A docker context (from `DOCKER_CONTEXT` or `currentContext` in config.json).
    Context { name: String, meta: PathBuf },
    /// A socket where a known engine distribution puts it.
    Known(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DockerHost => f.write_str("DOCKER_HOST"),
            Source::Context { name, meta } => {
                write!(f, "docker context `{name}` ({})", meta.display())
            }
            Source::Known(what) => write!(f, "known socket: {what}"),
        }
    }
}

/// One place the engine may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub host: Host,
    pub source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    #[default]
    Linux,
    Macos,
    Windows,
}

impl Platform {
    pub fn current() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Macos
        } else if cfg!(windows) {
            Platform::Windows
        } else {
            Platform::Linux
        }
    }
}

/// Everything discovery reads from the process environment, so that tests give their own.
#[derive(Debug, Clone, Default)]
pub struct DiscoveryEnv {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    /// `DOCKER_CONFIG`: the directory of config.json and contexts (default `~/.docker`).
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub platform: Platform,
}

impl DiscoveryEnv {
    pub fn from_process() -> DiscoveryEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        DiscoveryEnv {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            platform: Platform::current(),
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config
            .clone()
            .or_else(|| self.home.as_ref().map(|home| home.join(".docker")))
    }
}

/// The places to look, in the docker CLI's order: `DOCKER_HOST` alone when set, else the current
/// context alone when one other than `default` is selected, else the known sockets of the platform.
pub fn candidates(env: &DiscoveryEnv) -> Result<Vec<Candidate>, Failure> {
    if let Some(text) = &env.docker_host {
        let host = Host::parse(text).map_err(|problem| {
            Failure::config(format!("DOCKER_HOST: {problem}")).with_hint(
                "unset DOCKER_HOST or set it to unix:///PATH, tcp://HOST:PORT or npipe://PATH",
            )
        })?;
        return Ok(vec![Candidate {
            host,
            source: Source::DockerHost,
        }]);
    }
    if let Some(candidate) = context_candidate(env)? {
        return Ok(vec![candidate]);
    }
    Ok(known_sockets(env))
}

/// The current docker context's endpoint, when a context other than `default` is selected.
pub fn context_candidate(env: &DiscoveryEnv) -> Result<Option<Candidate>, Failure> {
    let Some(config_dir) = env.config_dir() else {
        return Ok(None);
    };
    let name = match &env.docker_context {
        Some(name) => name.clone(),
        None => {
            let config_file = config_dir.join("config.json");
            let text = match std::fs::read_to_string(&config_file) {
                Ok(text) => text,
                Err(_) => return Ok(None),
            };
            let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                Failure::config(format!("{}: not valid JSON: {e}", config_file.display()))
            })?;
            match value.get("currentContext").and_then(|v| v.as_str()) {
                Some(name) if !name.is_empty() => name.to_owned(),
                _ => return Ok(None),
            }
        }
    };
    if name == "default" {
        return Ok(None);
    }
    let meta_root = config_dir.join("contexts").join("meta");
    let not_found = || {
        Failure::config(format!(
            "docker context `{name}` is selected but has no metadata under {}",
            meta_root.display()
        ))
        .with_hint("run `docker context ls`, or `docker context use default`")
    };
    // The CLI stores a context under the SHA-256 of its name; scanning for the name inside
    // meta.json finds the same directory without a hashing dependency.
    let entries = std::fs::read_dir(&meta_root).map_err(|_| not_found())?;
    for entry in entries.flatten() {
        let meta = entry.path().join("meta.json");
        let Ok(text) = std::fs::read_to_string(&meta) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if value.get("Name").and_then(|v| v.as_str()) != Some(name.as_str()) {
            continue;
        }
        let host_text = value
            .pointer("/Endpoints/docker/Host")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                Failure::config(format!(
                    "{}: docker context `{name}` has no Endpoints.docker.Host",
                    meta.display()
                ))
            })?;
        let host = Host::parse(host_text).map_err(|problem| {
            Failure::config(format!(
                "{}: docker context `{name}`: {problem}",
                meta.display()
            ))
        })?;
        return Ok(Some(Candidate {
            host,
            source: Source::Context { name, meta },
        }));
    }
    Err(not_found())
}

/// Where engines put their sockets, most common first.
pub fn known_sockets(env: &DiscoveryEnv) -> Vec<Candidate> {
    let mut list = Vec::new();
    let mut push = |path: PathBuf, what: &'static str| {
        list.push(Candidate {
            host: Host::Unix(path),
            source: Source::Known(what),
        })
    };
    match env.platform {
        Platform::Windows => {
            return vec![Candidate {
                host: Host::Npipe("//./pipe/docker_engine".to_owned()),
                source: Source::Known("Docker Desktop"),
            }];
        }
        Platform::Linux | Platform::Macos => {
            push(PathBuf::from(DEFAULT_SOCKET), "dockerd");
            if let Some(home) = &env.home {
                push(home.join(".docker/run/docker.sock"), "Docker Desktop");
                push(home.join(".docker/desktop/docker.sock"), "Docker Desktop");
                push(home.join(".colima/default/docker.sock"), "colima");
            }
            if env.platform == Platform::Linux {
                if let Some(runtime) = &env.xdg_runtime_dir {
                    push(runtime.join("docker.sock"), "rootless dockerd");
                    push(runtime.join("podman/podman.sock"), "rootless podman");
                }
                push(PathBuf::from("/run/podman/podman.sock"), "podman");
            }
        }
    }
    list
}

// ---------------------------------------------------------------------------------------------
// Probing.

/// What asking one candidate gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Probe {
    Answered,
    /// The unix socket does not exist.
    NoSocket,
    /// It exists (or is remote) but does not answer.
    NoAnswer(String),
    NotProbed,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Answered => f.write_str("answered"),
            Probe::NoSocket => f.write_str("socket does not exist"),
            Probe::NoAnswer(why) => write!(f, "does not answer: {why}"),
            Probe::NotProbed => f.write_str("not tried"),
        }
    }
}

/// One candidate in the discovery report.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateReport {
    pub host: String,
    pub source: String,
    pub probe: Probe,
}

/// Which candidates were tried, and which one was used and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Discovery {
    pub candidates: Vec<CandidateReport>,
    /// The engine used: its address.
    pub chosen: Option<String>,
    /// Why that one: its source, and whether it was already answering or started.
    pub reason: String,
}

/// A bollard client for an address (nothing is sent yet).
pub fn client_for(host: &Host) -> Result<Docker, bollard::errors::Error> {
    match host {
        Host::Unix(path) => {
            Docker::connect_with_socket(&path.to_string_lossy(), 120, bollard::API_DEFAULT_VERSION)
        }
        Host::Tcp(authority) => Docker::connect_with_http(
            &format!("tcp://{authority}"),
            120,
            bollard::API_DEFAULT_VERSION,
        ),
        #[cfg(windows)]
        Host::Npipe(pipe) => {
            Docker::connect_with_named_pipe(pipe, 120, bollard::API_DEFAULT_VERSION)
        }
        #[cfg(not(windows))]
        Host::Npipe(pipe) => Err(bollard::errors::Error::UnsupportedURISchemeError {
            uri: format!("npipe://{pipe} (named pipes exist only on Windows)"),
        }),
    }
}

/// Asks one address for `/_ping` within `timeout`.
pub async fn probe(host: &Host, timeout: Duration) -> (Probe, Option<Docker>) {
    if let Some(socket) = host.socket() {
        if !socket.exists() {
            return (Probe::NoSocket, None);
        }
    }
    let docker = match client_for(host) {
        Ok(docker) => docker,
        Err(e) => return (Probe::NoAnswer(e.to_string()), None),
    };
    match tokio::time::timeout(timeout, docker.ping()).await {
        Ok(Ok(_)) => (Probe::Answered, Some(docker)),
        Ok(Err(e)) => (Probe::NoAnswer(short_error(&e)), None),
        Err(_) => (
            Probe::NoAnswer(format!("no answer within {}", ui::duration(timeout))),
            None,
        ),
    }
}

fn short_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Probes every candidate in order and stops at the first that answers.
pub async fn discover(list: &[Candidate]) -> (Discovery, Option<(usize, Docker)>) {
    let mut discovery = Discovery::default();
    let mut found = None;
    for (index, candidate) in list.iter().enumerate() {
        let probe_result = if found.is_some() {
            (Probe::NotProbed, None)
        } else {
            probe(&candidate.host, Duration::from_secs(3)).await
        };
        if let (Probe::Answered, Some(docker)) = &probe_result {
            found = Some((index, docker.clone()));
            discovery.chosen = Some(candidate.host.url());
            discovery.reason = format!("{}, already answering", candidate.source);
        }
        discovery.candidates.push(CandidateReport {
            host: candidate.host.url(),
            source: candidate.source.to_string(),
            probe: probe_result.0,
        });
    }
    (discovery, found)
}

/// The candidate a stopped engine would be started for: the explicit one (DOCKER_HOST, a
/// context), else the platform's default (dockerd's socket, Docker Desktop's pipe).
pub fn start_target(list: &[Candidate]) -> Option<&Candidate> {
    list.iter()
        .find(|c| matches!(c.source, Source::DockerHost | Source::Context { .. }))
        .or_else(|| list.first())
}

// ---------------------------------------------------------------------------------------------
// The pid file a crashed dockerd leaves behind.

/// What the pid file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    Absent,
    /// It names no live dockerd: dockerd would refuse to start ("pid file found").
    Stale {
        pid: Option<u32>,
        why: String,
    },
    /// A live dockerd (maybe still starting, maybe shutting down). Never touched.
    Live {
        pid: u32,
    },
}

/// Reads the pid file and asks `/proc` (`proc_root`, so tests can fake it) whether the pid is a dockerd.
pub fn inspect_pid_file(path: &Path, proc_root: &Path) -> PidFile {
    inspect_pid_file_of(path, proc_root, "dockerd")
}

/// The containerd pid file under dockerd's exec root (`--exec-root`, default `/var/run/docker`).
/// A killed dockerd leaves it too, and dockerd then waits for a containerd that is gone
/// ("timeout waiting for containerd to start") when the pid is a zombie.
pub fn containerd_pid_file(dockerd_args: &[String]) -> PathBuf {
    let mut exec_root = PathBuf::from("/var/run/docker");
    let mut args = dockerd_args.iter();
    while let Some(arg) = args.next() {
        if arg == "--exec-root" {
            if let Some(value) = args.next() {
                exec_root = PathBuf::from(value);
            }
        } else if let Some(value) = arg.strip_prefix("--exec-root=") {
            exec_root = PathBuf::from(value);
        }
    }
    exec_root.join("containerd").join("containerd.pid")
}

/// [`inspect_pid_file`] for a process named `comm`.
pub fn inspect_pid_file_of(path: &Path, proc_root: &Path, expected: &str) -> PidFile {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidFile::Absent,
        Err(e) => {
            return PidFile::Stale {
                pid: None,
                why: format!("cannot be read: {e}"),
            }
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return PidFile::Stale {
            pid: None,
            why: format!("does not hold a pid (`{}`)", text.trim()),
        };
    };
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")) {
        Err(_) => PidFile::Stale {
            pid: Some(pid),
            why: format!("pid {pid} is not running"),
        },
        Ok(comm) if comm.trim() == expected => {
            if process_state(proc_root, pid) == Some('Z') {
                PidFile::Stale {
                    pid: Some(pid),
                    why: format!("pid {pid} is a {expected} that has exited (zombie)"),
                }
            } else {
                PidFile::Live { pid }
            }
        }
        Ok(comm) => PidFile::Stale {
            pid: Some(pid),
            why: format!("pid {pid} is `{}`, not {expected}", comm.trim()),
        },
    }
}

/// The state letter of `/proc/<pid>/stat` (R, S, Z, ...).
fn process_state(proc_root: &Path, pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether a process is gone (exited, or a zombie nobody reaped yet). Reaps it when it is our child.
pub fn process_gone(pid: u32) -> bool {
    // SAFETY: WNOHANG never blocks; it only reaps when `pid` is our own exited child.
    unsafe {
        let mut status = 0;
        libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG);
    }
    !state::pid_alive(pid) || process_state(Path::new("/proc"), pid) == Some('Z')
}

// ---------------------------------------------------------------------------------------------
// How the platform starts an engine, as data.

/// What the machine offers for starting an engine.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub platform: Platform,
    /// systemd is PID 1 (`/run/systemd/system` exists) and `systemctl` is installed.
    pub systemd: bool,
    /// `/etc/init.d/docker` exists and `service` is installed.
    pub init_script: bool,
    /// The dockerd binary, when installed.
    pub dockerd: Option<PathBuf>,
    /// Docker Desktop (macOS: the app bundle; Windows: `Docker Desktop.exe`).
    pub docker_desktop: Option<PathBuf>,
}

impl HostFacts {
    pub fn detect() -> HostFacts {
        let platform = Platform::current();
        let find = |name: &str| {
            which::which(name).ok().or_else(|| {
                ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
                    .iter()
                    .map(|dir| Path::new(dir).join(name))
                    .find(|path| path.is_file())
            })
        };
        let desktop = match platform {
            Platform::Macos => Some(PathBuf::from("/Applications/Docker.app")),
            Platform::Windows => Some(PathBuf::from(
                r"C:\Program Files\Docker\Docker\Docker Desktop.exe",
            )),
            Platform::Linux => None,
        };
        HostFacts {
            platform,
            systemd: Path::new("/run/systemd/system").is_dir() && find("systemctl").is_some(),
            init_script: Path::new("/etc/init.d/docker").is_file() && find("service").is_some(),
            dockerd: find("dockerd"),
            docker_desktop: desktop.filter(|path| path.exists()),
        }
    }

    /// Whether an engine is installed that the harness knows how to start.
    pub fn installed(&self) -> bool {
        match self.platform {
            Platform::Linux => self.dockerd.is_some(),
            Platform::Macos | Platform::Windows => self.docker_desktop.is_some(),
        }
    }
}

/// One way of starting the engine; [`StartPlan::argv`] is the command it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// `systemctl start docker`
    Systemctl,
    /// `service docker start` (sysvinit script of the docker.io package)
    Service,
    /// dockerd spawned by the harness, detached, its output in `log`.
    Dockerd {
        program: PathBuf,
        args: Vec<String>,
        log: PathBuf,
    },
    /// `open -a Docker` (macOS)
    OpenDockerApp,
    /// `Start-Service com.docker.service`, then Docker Desktop (Windows)
    WindowsDesktop { desktop_exe: PathBuf },
}

impl StartPlan {
    /// The name recorded in state.json (`start_method`).
    pub fn method(&self) -> &'static str {
        match self {
            StartPlan::Systemctl => "systemctl",
            StartPlan::Service => "service",
            StartPlan::Dockerd { .. } => "dockerd",
            StartPlan::OpenDockerApp => "open -a Docker",
            StartPlan::WindowsDesktop { .. } => "Start-Service com.docker.service",
        }
    }

    /// The commands this plan runs, in order.
    pub fn argv(&self) -> Vec<Vec<String>> {
        let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        match self {
            StartPlan::Systemctl => vec![owned(&["systemctl", "start", "docker"])],
            StartPlan::Service => vec![owned(&["service", "docker", "start"])],
            StartPlan::Dockerd { program, args, .. } => {
                let mut argv = vec![program.to_string_lossy().into_owned()];
                argv.extend(args.iter().cloned());
                vec![argv]
            }
            StartPlan::OpenDockerApp => vec![owned(&["open", "-a", "Docker"])],
            StartPlan::WindowsDesktop { desktop_exe } => vec![
                owned(&[
                    "powershell",
                    "-NoProfile",
                    "-Command",
                    "Start-Service com.docker.service",
                ]),
                vec![
                    "powershell".to_owned(),
                    "-NoProfile".to_owned(),
                    "-Command".to_owned(),
                    format!("Start-Process -FilePath '{}'", desktop_exe.display()),
                ],
            ],
        }
    }
}

/// The ways to start the engine at `target`, best first (a later one is tried when an earlier fails).
/// System service managers only start the stock daemon, so a daemon with its own socket, pid file
/// or arguments is always spawned by the harness.
pub fn start_plans(
    facts: &HostFacts,
    target: &Host,
    engine: &EngineCfg,
    log: &Path,
) -> Vec<StartPlan> {
    match facts.platform {
        Platform::Macos => vec![StartPlan::OpenDockerApp],
        Platform::Windows => facts
            .docker_desktop
            .iter()
            .map(|exe| StartPlan::WindowsDesktop {
                desktop_exe: exe.clone(),
            })
            .collect(),
        Platform::Linux => {
            let Some(dockerd) = &facts.dockerd else {
                return Vec::new();
            };
            let Some(socket) = target.socket() else {
                // A remote (tcp) engine cannot be started from here.
                return Vec::new();
            };
            let stock = target.is_default_socket()
                && engine.dockerd_args.is_empty()
                && engine.pid_file == Path::new(DEFAULT_PID_FILE);
            let mut plans = Vec::new();
            if stock && facts.systemd {
                plans.push(StartPlan::Systemctl);
            }
            if stock && facts.init_script {
                plans.push(StartPlan::Service);
            }
            let mut args = engine.dockerd_args.clone();
            let has = |args: &[String], flags: &[&str]| {
                args.iter().any(|a| {
                    flags
                        .iter()
                        .any(|f| a == f || a.starts_with(&format!("{f}=")))
                })
            };
            if !target.is_default_socket() && !has(&args, &["-H", "--host"]) {
                args.push("--host".to_owned());
                args.push(format!("unix://{}", socket.display()));
            }
            if engine.pid_file != Path::new(DEFAULT_PID_FILE) && !has(&args, &["-p", "--pidfile"]) {
                args.push("--pidfile".to_owned());
                args.push(engine.pid_file.to_string_lossy().into_owned());
            }
            plans.push(StartPlan::Dockerd {
                program: dockerd.clone(),
                args,
                log: log.to_path_buf(),
            });
            plans
        }
    }
}

/// The remedy for "no engine installed", for this platform.
pub fn install_remedy(platform: Platform) -> String {
    match platform {
        Platform::Linux if is_debian_like() => {
            "run `cargo xtask docker-up --install` as root, or `apt-get install -y docker.io docker-compose`"
                .to_owned()
        }
        Platform::Linux => {
            "install the Docker engine with your distribution's packages (https://docs.docker.com/engine/install/)"
                .to_owned()
        }
        Platform::Macos => {
            "install Docker Desktop (https://docs.docker.com/desktop/install/mac-install/) or colima (`brew install colima docker`)"
                .to_owned()
        }
        Platform::Windows => {
            "install Docker Desktop (https://docs.docker.com/desktop/install/windows-install/)".to_owned()
        }
    }
}

/// Debian, Ubuntu and derivatives (apt-get and dpkg-query present).
pub fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists() && which::which("apt-get").is_ok()
}

// ---------------------------------------------------------------------------------------------
// Running commands with a deadline.

/// What a finished command left.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// The last lines of its output, for an error message.
    pub fn tail(&self, lines: usize) -> String {
        let text = format!("{}{}", self.stdout, self.stderr);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs `argv` in its own process group with `env` added, killing the group at the deadline.
/// With `show`, its output goes to our stderr (for people) instead of being captured.
pub async fn run_with_deadline(
    argv: &[String],
    env: &[(&str, &str)],
    deadline: Duration,
    show: bool,
) -> anyhow::Result<CmdOutput> {
    let shown = argv.join(" ");
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    if show {
        command.stdout(stderr_stdio()?).stderr(stderr_stdio()?);
    } else {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot run `{shown}`"))?;
    let pid = child.id();
    match tokio::time::timeout(deadline, child.wait_with_output()).await {
        Ok(output) => {
            let output = output.with_context(|| format!("`{shown}` failed"))?;
            Ok(CmdOutput {
                success: output.status.success(),
                code: output.status.code(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: signals the process group we created for this command only.
                unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
            }
            anyhow::bail!(
                "`{shown}` did not finish within {}; it was killed",
                ui::duration(deadline)
            )
        }
    }
}

fn stderr_stdio() -> anyhow::Result<Stdio> {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let fd = std::io::stderr().as_fd().try_clone_to_owned()?;
        Ok(Stdio::from(fd))
    }
    #[cfg(not(unix))]
    {
        Ok(Stdio::inherit())
    }
}

/// Awaits `work`, saying every [`SAY_EVERY`] that it still waits for `what` (and for how long).
pub async fn with_progress<T>(
    what: &str,
    deadline: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    let began = Instant::now();
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = tokio::time::sleep(SAY_EVERY) => ui::say(format!(
                "still waiting for {what} ({} of {})",
                ui::duration(began.elapsed()),
                ui::duration(deadline)
            )),
        }
    }
}

/// Says what a wait is waiting for: at once, then every [`SAY_EVERY`].
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn new() -> Throttle {
        Throttle { last: None }
    }
    fn say(&mut self, message: impl FnOnce() -> String) {
        if self.last.is_none_or(|last| last.elapsed() >= SAY_EVERY) {
            self.last = Some(Instant::now());
            ui::say(message());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Installing packages.

/// Installs the Debian packages among `packages` that are missing (`apt-get update`, then
/// `apt-get install -y`); returns whether it installed anything. Needs root on Debian or Ubuntu.
pub fn install_packages(packages: &[&str]) -> anyhow::Result<bool> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !package_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_debian_like() {
        return Err(Failure::unavailable(
            format!(
                "cannot install {}: this is not Debian or Ubuntu (no apt-get)",
                missing.join(", ")
            ),
            Some(install_remedy(Platform::current())),
        )
        .into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Failure::unavailable(
            format!("installing {} needs root", missing.join(", ")),
            Some(format!(
                "run as root, or `sudo apt-get install -y {}`",
                missing.join(" ")
            )),
        )
        .into());
    }
    let env = [("DEBIAN_FRONTEND", "noninteractive")];
    let run = |argv: Vec<String>| -> anyhow::Result<()> {
        ui::say(format!("running `{}`", argv.join(" ")));
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stderr_stdio()?)
            .status()
            .with_context(|| format!("cannot run `{}`", argv.join(" ")))?;
        anyhow::ensure!(status.success(), "`{}` failed: {status}", argv.join(" "));
        Ok(())
    };
    run(vec!["apt-get".into(), "update".into()])?;
    let mut install: Vec<String> = vec!["apt-get".into(), "install".into(), "-y".into()];
    install.extend(missing.iter().map(|p| (*p).to_owned()));
    run(install)?;
    ui::say(format!("installed {}", missing.join(", ")));
    Ok(true)
}

/// Whether dpkg says the package is installed.
pub fn package_installed(package: &str) -> bool {
    std::process::Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Restoring the engine.

/// Everything `ensure_running` found out, for reports that want more than the contract gives.
#[derive(Debug, Clone)]
pub struct Restoration {
    pub engine: Engine,
    pub checks: Vec<Check>,
    pub discovery: Discovery,
    /// How the harness started it, when this call did.
    pub start_method: Option<String>,
    pub pid: Option<u32>,
}

/// Finds the engine, starts it when stopped (and allowed), waits within `start_timeout_s`,
/// negotiates the API version. The checks ("engine available", "engine response time", ...) are
/// returned with the engine so the caller can report them; an error means no engine can be had
/// (a `Failure::Unavailable`, exit 3).
pub async fn ensure_running(
    config: &Config,
    options: &EnsureOptions,
) -> anyhow::Result<(Engine, Vec<Check>)> {
    let restoration = restore(config, options).await?;
    Ok((restoration.engine, restoration.checks))
}

/// [`ensure_running`] with the discovery report and how the engine was started.
pub async fn restore(config: &Config, options: &EnsureOptions) -> anyhow::Result<Restoration> {
    restore_with(config, options, &DiscoveryEnv::from_process()).await
}

/// [`restore`] with the discovery inputs given (tests point it at a private daemon this way,
/// without changing the process environment other tests share).
pub async fn restore_with(
    config: &Config,
    options: &EnsureOptions,
    env: &DiscoveryEnv,
) -> anyhow::Result<Restoration> {
    let began = Instant::now();
    let env = env.clone();
    let list = candidates(&env)?;
    let mut checks = Vec::new();
    if options.install {
        if let Some(check) = install_engine_packages(env.platform, began).await? {
            checks.push(check);
        }
    }
    let (mut discovery, found) = discover(&list).await;

    if let Some((index, docker)) = found {
        let candidate = &list[index];
        let time_to_answer = began.elapsed();
        let started_by_harness = harness_started(config, &candidate.host);
        let engine =
            finish_connect(docker, &candidate.host, started_by_harness, time_to_answer).await?;
        checks.push(available_check(&engine, &discovery, time_to_answer));
        checks.push(response_check(config, time_to_answer, None));
        return Ok(Restoration {
            engine,
            checks,
            discovery,
            start_method: None,
            pid: None,
        });
    }

    let target = start_target(&list).ok_or_else(|| {
        Failure::unavailable(
            "no engine address to try",
            Some(install_remedy(env.platform)),
        )
    })?;
    let tried = describe_candidates(&discovery);
    if !config.engine.start_if_stopped {
        return Err(Failure::unavailable(
            format!("no engine answers: {tried}"),
            Some(format!(
                "start the engine at {}, or set `start_if_stopped = true` under [engine] in {}",
                target.host,
                config.path.display()
            )),
        )
        .into());
    }

    let mut facts = HostFacts::detect();
    if let Some(program) = &config.engine.dockerd {
        // `[engine] dockerd`: the program spawned instead of the dockerd found on PATH.
        facts.dockerd = Some(config.resolve(program));
    }
    if !facts.installed() {
        return Err(Failure::unavailable(
            format!("no Docker engine is installed ({tried})"),
            Some(install_remedy(env.platform)),
        )
        .into());
    }

    let deadline = began + config.engine.start_timeout_s.duration();
    let log = config.work_dir().join("dockerd.log");
    let plans = start_plans(&facts, &target.host, &config.engine, &log);
    if plans.is_empty() {
        return Err(Failure::unavailable(
            format!(
                "no engine answers at {} ({}) and the harness cannot start one there",
                target.host, target.source
            ),
            Some("start the engine yourself, or point DOCKER_HOST at a local socket".to_owned()),
        )
        .into());
    }

    // dockerd refuses to start while its pid file exists: wait for a live one to finish, remove a stale one.
    if facts.platform == Platform::Linux {
        if let Some(docker) = settle_pid_file(config, &target.host, deadline, &mut checks).await? {
            // The old dockerd came back to life (it was starting, not stopping): use it.
            let time_to_answer = began.elapsed();
            let engine = finish_connect(docker, &target.host, false, time_to_answer).await?;
            discovery.chosen = Some(target.host.url());
            discovery.reason = format!("{}, answered while the harness waited", target.source);
            checks.push(available_check(&engine, &discovery, time_to_answer));
            checks.push(response_check(config, time_to_answer, None));
            return Ok(Restoration {
                engine,
                checks,
                discovery,
                start_method: None,
                pid: None,
            });
        }
    }

    let mut failures = Vec::new();
    let mut plans: std::collections::VecDeque<(StartPlan, bool)> =
        plans.into_iter().map(|plan| (plan, false)).collect();
    while let Some((plan, retried)) = plans.pop_front() {
        let started_at = Instant::now();
        match launch(&plan, &target.host, deadline).await {
            Ok(mut launched) => {
                state::Store::of(config).update(|s| {
                    s.engine = Some(EngineState {
                        host: target.host.url(),
                        started_by_harness: true,
                        start_method: Some(plan.method().to_owned()),
                        pid: launched.pid,
                    })
                })?;
                match wait_for_answer(&target.host, deadline, &mut launched, &plan).await {
                    Ok(docker) => {
                        let time_to_answer = began.elapsed();
                        let since_launch = started_at.elapsed();
                        let pid = launched.pid.or_else(|| read_pid(&config.engine.pid_file));
                        if launched.pid.is_none() && pid.is_some() {
                            state::Store::of(config).update(|s| {
                                if let Some(engine) = &mut s.engine {
                                    engine.pid = pid;
                                }
                            })?;
                        }
                        let engine =
                            finish_connect(docker, &target.host, true, time_to_answer).await?;
                        discovery.chosen = Some(target.host.url());
                        discovery.reason = format!(
                            "{}, started by the harness with `{}`",
                            target.source,
                            plan.method()
                        );
                        checks.push(
                            Check::passed(
                                "engine start",
                                since_launch,
                                format!(
                                    "started with `{}`{}{}; answered {} after launch",
                                    plan.argv().first().map(|a| a.join(" ")).unwrap_or_default(),
                                    pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
                                    match &plan {
                                        StartPlan::Dockerd { log, .. } =>
                                            format!(", log {}", log.display()),
                                        _ => String::new(),
                                    },
                                    ui::duration(since_launch)
                                ),
                            )
                            .with_output(failures.join("\n")),
                        );
                        checks.push(available_check(&engine, &discovery, time_to_answer));
                        checks.push(response_check(config, time_to_answer, Some(since_launch)));
                        return Ok(Restoration {
                            engine,
                            checks,
                            discovery,
                            start_method: Some(plan.method().to_owned()),
                            pid,
                        });
                    }
                    Err(e) => {
                        // Nothing answers: the record would make --stop-engine act on nothing.
                        let alive = launched.pid.is_some_and(|p| !process_gone(p));
                        if !alive {
                            state::Store::of(config).update(|s| s.engine = None)?;
                        }
                        failures.push(format!("`{}`: {e:#}", plan.method()));
                        if Instant::now() >= deadline || alive {
                            break;
                        }
                        if !retried && matches!(plan, StartPlan::Dockerd { .. }) {
                            // After a kill -9 the old dockerd's containerd may still be shutting
                            // down, and the first start times out waiting for it: settle the pid
                            // files again and try once more.
                            ui::say(format!(
                                "`{}` exited before answering; trying it once more",
                                plan.method()
                            ));
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if facts.platform == Platform::Linux {
                                let _ =
                                    settle_pid_file(config, &target.host, deadline, &mut checks)
                                        .await;
                            }
                            plans.push_front((plan.clone(), true));
                        }
                    }
                }
            }
            Err(e) => {
                ui::say(format!(
                    "`{}` did not start the engine ({e:#}); trying the next way",
                    plan.method()
                ));
                failures.push(format!("`{}`: {e:#}", plan.method()));
            }
        }
    }
    Err(Failure::unavailable(
        format!(
            "the engine at {} could not be started: {}",
            target.host,
            failures.join("; ")
        ),
        Some(format!("see {}", log.display())),
    )
    .into())
}

/// `--install`: puts the engine packages on Debian or Ubuntu when they are missing.
async fn install_engine_packages(
    platform: Platform,
    began: Instant,
) -> anyhow::Result<Option<Check>> {
    if platform != Platform::Linux || !is_debian_like() {
        if HostFacts::detect().installed() {
            return Ok(None);
        }
        return Err(Failure::unavailable(
            "`--install` installs the engine only on Debian or Ubuntu",
            Some(install_remedy(platform)),
        )
        .into());
    }
    let packages = ENGINE_PACKAGES.to_vec();
    let installed = tokio::task::spawn_blocking(move || install_packages(&packages)).await??;
    Ok(installed.then(|| {
        Check::passed(
            "engine installed",
            began.elapsed(),
            format!(
                "installed the missing ones of {}",
                ENGINE_PACKAGES.join(", ")
            ),
        )
    }))
}

/// A launched start: the child when the harness spawned dockerd itself.
struct Launched {
    pid: Option<u32>,
    child: Option<std::process::Child>,
    log: Option<PathBuf>,
}

async fn launch(plan: &StartPlan, host: &Host, deadline: Instant) -> anyhow::Result<Launched> {
    ui::say(format!(
        "starting the engine for {host}: `{}`",
        plan.argv()
            .iter()
            .map(|argv| argv.join(" "))
            .collect::<Vec<_>>()
            .join("`, then `")
    ));
    match plan {
        StartPlan::Dockerd { program, args, log } => {
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let log_file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .with_context(|| format!("cannot open {}", log.display()))?;
            let mut command = std::process::Command::new(program);
            command
                .args(args)
                .current_dir("/")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone()?)
                .stderr(log_file);
            #[cfg(unix)]
            {
                use std::os::unix::process::CommandExt;
                // SAFETY: setsid is async-signal-safe; the daemon leaves our session and
                // process group so that Ctrl-C on the harness does not reach it.
                unsafe {
                    command.pre_exec(|| {
                        if libc::setsid() == -1 {
                            return Err(std::io::Error::last_os_error());
                        }
                        Ok(())
                    });
                }
            }
            let child = command
                .spawn()
                .with_context(|| format!("cannot run {}", program.display()))?;
            Ok(Launched {
                pid: Some(child.id()),
                child: Some(child),
                log: Some(log.clone()),
            })
        }
        StartPlan::Systemctl
        | StartPlan::Service
        | StartPlan::OpenDockerApp
        | StartPlan::WindowsDesktop { .. } => {
            for argv in plan.argv() {
                let left = deadline.saturating_duration_since(Instant::now());
                let output =
                    run_with_deadline(&argv, &[], left.min(Duration::from_secs(60)), false).await?;
                anyhow::ensure!(
                    output.success,
                    "`{}` exited with {}: {}",
                    argv.join(" "),
                    output.code.map_or("a signal".to_owned(), |c| c.to_string()),
                    output.tail(5)
                );
            }
            let log = match plan {
                StartPlan::Service => Some(PathBuf::from("/var/log/docker.log")),
                _ => None,
            };
            Ok(Launched {
                pid: None,
                child: None,
                log,
            })
        }
    }
}

/// Polls the engine until it answers, the launched dockerd exits, or the deadline passes.
async fn wait_for_answer(
    host: &Host,
    deadline: Instant,
    launched: &mut Launched,
    plan: &StartPlan,
) -> anyhow::Result<Docker> {
    let began = Instant::now();
    let total = deadline.saturating_duration_since(began);
    let mut throttle = Throttle::new();
    let mut client: Option<Docker> = None;
    loop {
        throttle.say(|| {
            format!(
                "waiting for the engine at {host} to answer (started with `{}`{}; {} of {})",
                plan.method(),
                launched
                    .pid
                    .map(|p| format!(", pid {p}"))
                    .unwrap_or_default(),
                ui::duration(began.elapsed()),
                ui::duration(total)
            )
        });
        if let Some(child) = &mut launched.child {
            if let Some(status) = child.try_wait()? {
                let tail = launched
                    .log
                    .as_deref()
                    .map(|log| log_tail(log, 5))
                    .unwrap_or_default();
                anyhow::bail!("dockerd exited with {status} before answering: {tail}");
            }
        }
        let ready = host.socket().is_none_or(Path::exists);
        if ready {
            if client.is_none() {
                client = client_for(host).ok();
            }
            if let Some(docker) = &client {
                let left = deadline.saturating_duration_since(Instant::now());
                // A listening dockerd that is still initialising holds the request until it serves.
                if let Ok(Ok(_)) =
                    tokio::time::timeout(left.min(Duration::from_secs(2)), docker.ping()).await
                {
                    return Ok(docker.clone());
                }
            }
        }
        if Instant::now() >= deadline {
            let tail = launched
                .log
                .as_deref()
                .map(|log| format!(": {}", log_tail(log, 5)))
                .unwrap_or_default();
            anyhow::bail!(
                "the engine at {host} did not answer within {}{tail}",
                ui::duration(total)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Handles the pid file before a start. Returns the engine when the live dockerd it names
/// answered at the target while we waited.
async fn settle_pid_file(
    config: &Config,
    host: &Host,
    deadline: Instant,
    checks: &mut Vec<Check>,
) -> anyhow::Result<Option<Docker>> {
    let pid_file = &config.engine.pid_file;
    let began = Instant::now();
    let mut throttle = Throttle::new();
    loop {
        match inspect_pid_file(pid_file, Path::new("/proc")) {
            PidFile::Absent => {
                settle_containerd_pid_file(config, began, checks)?;
                return Ok(None);
            }
            PidFile::Stale { why, .. } => {
                let message = format!(
                    "stale pid file {}: {why}; removing it so that dockerd can start",
                    pid_file.display()
                );
                ui::say(&message);
                std::fs::remove_file(pid_file)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .with_context(|| format!("cannot remove {}", pid_file.display()))?;
                checks.push(Check::passed(
                    "stale pid file",
                    began.elapsed(),
                    format!("removed {} ({why})", pid_file.display()),
                ));
                settle_containerd_pid_file(config, began, checks)?;
                return Ok(None);
            }
            PidFile::Live { pid } => {
                if let (Probe::Answered, Some(docker)) =
                    probe(host, Duration::from_millis(500)).await
                {
                    return Ok(Some(docker));
                }
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let serves = dockerd_hosts(&args);
                if !serves
                    .iter()
                    .any(|h| Host::parse(h).ok().as_ref() == Some(host))
                {
                    // Not a daemon of ours shutting down: another one, serving elsewhere.
                    return Err(Failure::unavailable(
                        format!(
                            "dockerd pid {pid} holds {} but serves {}, not {host}; it was left alone",
                            pid_file.display(),
                            serves.join(", ")
                        ),
                        Some(format!(
                            "a second daemon needs its own `pid_file` and `dockerd_args` (--data-root, --exec-root) under [engine] in {}",
                            config.path.display()
                        )),
                    )
                    .into());
                }
                if Instant::now() >= deadline {
                    return Err(Failure::unavailable(
                        format!(
                            "dockerd pid {pid} holds {} and does not answer at {host}; it was left alone",
                            pid_file.display()
                        ),
                        Some(format!(
                            "wait for it to finish, or stop it yourself (kill {pid}); then retry"
                        )),
                    )
                    .into());
                }
                throttle.say(|| {
                    format!(
                        "waiting for dockerd pid {pid} (named by {}) to finish shutting down or to answer at {host} ({} so far)",
                        pid_file.display(),
                        ui::duration(began.elapsed())
                    )
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                if process_gone(pid) {
                    checks.push(Check::passed(
                        "previous dockerd exited",
                        began.elapsed(),
                        format!("waited for pid {pid} to exit"),
                    ));
                }
            }
        }
    }
}

/// The addresses a dockerd command line serves (`-H`/`--host`; the default socket when none).
pub fn dockerd_hosts(args: &[String]) -> Vec<String> {
    let mut hosts = Vec::new();
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "-H" || arg == "--host" {
            hosts.extend(iter.next().cloned());
        } else if let Some(value) = arg
            .strip_prefix("--host=")
            .or_else(|| arg.strip_prefix("-H="))
        {
            hosts.push(value.to_owned());
        }
    }
    if hosts.is_empty() {
        hosts.push(format!("unix://{DEFAULT_SOCKET}"));
    }
    hosts
}

/// Removes the containerd pid file of a killed dockerd when it names no live containerd; a live
/// containerd is left for dockerd to adopt.
fn settle_containerd_pid_file(
    config: &Config,
    began: Instant,
    checks: &mut Vec<Check>,
) -> anyhow::Result<()> {
    let path = containerd_pid_file(&config.engine.dockerd_args);
    if let PidFile::Stale { why, .. } = inspect_pid_file_of(&path, Path::new("/proc"), "containerd")
    {
        ui::say(format!(
            "stale containerd pid file {}: {why}; removing it",
            path.display()
        ));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        checks.push(Check::passed(
            "stale containerd pid file",
            began.elapsed(),
            format!("removed {} ({why})", path.display()),
        ));
    }
    Ok(())
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The last non-empty lines of a log file, on one line.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = all[all.len().saturating_sub(lines)..].join(" | ");
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        format!("{tail} (from {})", path.display())
    }
}

fn describe_candidates(discovery: &Discovery) -> String {
    discovery
        .candidates
        .iter()
        .map(|c| format!("{} ({}): {}", c.host, c.source, c.probe))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether state.json says the harness started the engine at this host (and it is still that one).
fn harness_started(config: &Config, host: &Host) -> bool {
    let work_dir = config.work_dir();
    let Ok(state) = state::Store::new(&work_dir).read() else {
        return false;
    };
    match state.engine {
        Some(engine) if engine.started_by_harness && engine.host == host.url() => {
            match engine.pid {
                Some(pid) if process_gone(pid) => {
                    // Someone else restarted it since: the record no longer applies.
                    let _ = state::Store::new(&work_dir).update(|s| s.engine = None);
                    false
                }
                _ => true,
            }
        }
        _ => false,
    }
}

async fn finish_connect(
    docker: Docker,
    host: &Host,
    started_by_harness: bool,
    time_to_answer: Duration,
) -> anyhow::Result<Engine> {
    let docker = docker.negotiate_version().await.map_err(|e| {
        Failure::unavailable(
            format!("the engine at {host} answered but its version cannot be negotiated: {e}"),
            None,
        )
    })?;
    let (version, info) = tokio::join!(docker.version(), docker.info());
    let version = version.with_context(|| format!("GET /version from {host}"))?;
    let info = info.with_context(|| format!("GET /info from {host}"))?;
    Ok(Engine {
        docker,
        info: EngineInfo {
            host: host.url(),
            server_version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: info.operating_system.or(version.os).unwrap_or_default(),
            storage_driver: info.driver.unwrap_or_default(),
            started_by_harness,
            time_to_answer,
        },
    })
}

fn available_check(engine: &Engine, discovery: &Discovery, time_to_answer: Duration) -> Check {
    Check::passed(
        "engine available",
        time_to_answer,
        format!(
            "{} ({}): server {}, API {}",
            engine.info.host, discovery.reason, engine.info.server_version, engine.info.api_version
        ),
    )
}

fn response_check(
    config: &Config,
    time_to_answer: Duration,
    since_launch: Option<Duration>,
) -> Check {
    let limit = config.engine.respond_within_s.duration();
    let detail = match since_launch {
        Some(launch) => format!(
            "answered {} after the harness began ({} after launch; limit {})",
            ui::duration(time_to_answer),
            ui::duration(launch),
            ui::duration(limit)
        ),
        None => format!(
            "answered {} after the harness began (limit {})",
            ui::duration(time_to_answer),
            ui::duration(limit)
        ),
    };
    let outcome = if time_to_answer <= limit {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    let check = Check::new("engine response time", outcome, time_to_answer, detail);
    if outcome == Outcome::Failed {
        check.with_remedy(format!(
            "the engine is slow to start: look at its log, or raise `respond_within_s` under [engine] in {}",
            config.path.display()
        ))
    } else {
        check
    }
}

/// Connects to an engine that should already run, without starting anything.
pub async fn connect(config: &Config) -> anyhow::Result<Engine> {
    let began = Instant::now();
    let list = candidates(&DiscoveryEnv::from_process())?;
    let (discovery, found) = discover(&list).await;
    match found {
        Some((index, docker)) => {
            let host = &list[index].host;
            finish_connect(docker, host, harness_started(config, host), began.elapsed()).await
        }
        None => Err(Failure::unavailable(
            format!("no engine answers: {}", describe_candidates(&discovery)),
            Some("`cargo xtask docker-up --engine-only` finds and starts it".to_owned()),
        )
        .into()),
    }
}

// ---------------------------------------------------------------------------------------------
// The smoke container and the networks.

/// Whether an image is present on the engine.
pub async fn image_present(docker: &Docker, name: &str) -> bool {
    docker.inspect_image(name).await.is_ok()
}

/// Pulls an image within `deadline`; the error says why it could not be had.
pub async fn pull(docker: &Docker, name: &str, deadline: Duration) -> anyhow::Result<()> {
    let (image, tag) = split_reference(name);
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(image.to_owned()),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    let pulling = async {
        let mut stream = docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok::<(), bollard::errors::Error>(())
    };
    match tokio::time::timeout(deadline, pulling).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("pull of `{name}` failed: {}", short_error(&e)),
        Err(_) => anyhow::bail!(
            "pull of `{name}` did not finish within {}",
            ui::duration(deadline)
        ),
    }
}

/// `repo:tag` → (`repo`, `tag`); a missing tag is `latest`; a registry port is not a tag.
pub fn split_reference(name: &str) -> (&str, &str) {
    let name = name.split('@').next().unwrap_or(name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// The labels of everything the harness creates.
pub fn harness_labels(config: &Config, run_id: &str) -> HashMap<String, String> {
    HashMap::from([
        (state::LABEL_RUN_ID.to_owned(), run_id.to_owned()),
        (
            state::LABEL_PROJECT.to_owned(),
            config.project.name.0.clone(),
        ),
        (
            state::LABEL_ROOT.to_owned(),
            state::root_digest(&config.root),
        ),
        (state::LABEL_PID.to_owned(), std::process::id().to_string()),
    ])
}

/// Runs the smoke container (`smoke_image`, else a local fallback) that must exit 0.
pub async fn smoke(engine: &Engine, config: &Config) -> Check {
    let began = Instant::now();
    let docker = &engine.docker;
    let cfg = &config.engine;
    let deadline = cfg.smoke_timeout_s.duration();

    // The image: smoke_image when present or pullable, else the local fallback with its command.
    let mut why_not = String::new();
    let mut pull_error = String::new();
    let (image, cmd) = if image_present(docker, &cfg.smoke_image).await {
        (cfg.smoke_image.clone(), None)
    } else {
        match pull(docker, &cfg.smoke_image, PULL_DEADLINE.min(deadline)).await {
            Ok(()) => (cfg.smoke_image.clone(), None),
            Err(e) => {
                pull_error = format!("{e:#}");
                why_not = format!("`{}` cannot be pulled, local fallback: ", cfg.smoke_image);
                let fallback = cfg
                    .smoke_fallback_image
                    .clone()
                    .or_else(|| config.images.keys().next().cloned());
                match fallback {
                    Some(image) if image_present(docker, &image).await => {
                        (image, Some(cfg.smoke_fallback_cmd.clone()))
                    }
                    Some(image) => {
                        return Check::failed(
                            "smoke container",
                            began.elapsed(),
                            format!("`{}` cannot be pulled ({pull_error}) and fallback image `{image}` is not present either", cfg.smoke_image),
                        )
                        .with_remedy(
                            "run `cargo xtask docker-up` to provision the [images] entries, or set `smoke_fallback_image` under [engine] to a local image",
                        );
                    }
                    None => {
                        return Check::failed(
                            "smoke container",
                            began.elapsed(),
                            format!("`{}` cannot be pulled ({pull_error}) and no fallback image is configured", cfg.smoke_image),
                        )
                        .with_remedy(
                            "set `smoke_fallback_image` under [engine] to a local image, or add an [images] entry",
                        );
                    }
                }
            }
        }
    };

    let run_id = state::new_run_id();
    let name = format!("xtask-smoke-{run_id}");
    let body = bollard::models::ContainerCreateBody {
        image: Some(image.clone()),
        cmd: cmd.clone(),
        labels: Some(harness_labels(config, &run_id)),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let created = docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await;
    let id = match created {
        Ok(created) => created.id,
        Err(e) => {
            return Check::failed(
                "smoke container",
                began.elapsed(),
                format!("{why_not}cannot create a container from `{image}`: {e}"),
            )
        }
    };
    let outcome = run_to_exit(docker, &id, deadline).await;
    let logs = if outcome.is_err() {
        container_logs(docker, &id).await
    } else {
        String::new()
    };
    // Always removed, whatever happened.
    let _ = docker
        .remove_container(
            &id,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    let shown_cmd = cmd
        .map(|c| format!(" running `{}`", c.join(" ")))
        .unwrap_or_default();
    match outcome {
        Ok(()) => {
            let check = Check::passed(
                "smoke container",
                began.elapsed(),
                format!(
                    "{why_not}`{image}`{shown_cmd} exited 0 in {}",
                    ui::duration(began.elapsed())
                ),
            );
            if pull_error.is_empty() {
                check
            } else {
                check.with_output(pull_error)
            }
        }
        Err(e) => Check::failed(
            "smoke container",
            began.elapsed(),
            format!("{why_not}`{image}`{shown_cmd}: {e:#}"),
        )
        .with_output(format!("{pull_error}\n{logs}").trim().to_owned()),
    }
}

async fn run_to_exit(docker: &Docker, id: &str, deadline: Duration) -> anyhow::Result<()> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .context("cannot start it")?;
    // bollard sends the wait request only when first polled, so "next-exit" could miss a fast
    // exit; "not-running" also answers for a container that has already exited.
    let mut wait = Box::pin(docker.wait_container(
        id,
        Some(bollard::query_parameters::WaitContainerOptions {
            condition: "not-running".to_owned(),
        }),
    ));
    match tokio::time::timeout(deadline, wait.next()).await {
        Err(_) => anyhow::bail!("did not exit within {}", ui::duration(deadline)),
        Ok(None) => anyhow::bail!("the engine ended the wait without an exit code"),
        Ok(Some(Ok(response))) if response.status_code == 0 => Ok(()),
        Ok(Some(Ok(response))) => anyhow::bail!("exited with {}", response.status_code),
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, error }))) => {
            anyhow::bail!(
                "exited with {code}{}",
                if error.is_empty() {
                    String::new()
                } else {
                    format!(": {error}")
                }
            )
        }
        Ok(Some(Err(e))) => Err(e).context("waiting for it to exit"),
    }
}

async fn container_logs(docker: &Docker, id: &str) -> String {
    let mut stream = docker.logs(
        id,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: "50".to_owned(),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await
    {
        text.push_str(&chunk.to_string());
    }
    text
}

/// The engine's networks, by name.
pub async fn list_networks(engine: &Engine) -> anyhow::Result<Vec<String>> {
    let networks = engine
        .docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .with_context(|| format!("cannot list the networks of {}", engine.info.host))?;
    let mut names: Vec<String> = networks.into_iter().filter_map(|n| n.name).collect();
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Stopping what the harness started.

/// Stops the engine only when state.json says the harness started it; otherwise says why not.
pub async fn stop_started_engine(config: &Config) -> anyhow::Result<Check> {
    let began = Instant::now();
    let work_dir = config.work_dir();
    let recorded = state::Store::new(&work_dir).read()?.engine;
    let Some(recorded) = recorded.filter(|e| e.started_by_harness) else {
        return Ok(Check::skipped(
            "engine stop",
            format!(
                "the engine was not started by the harness (no record in {}); it was left alone",
                state::Store::new(&work_dir).path().display()
            ),
        ));
    };
    let method = recorded.start_method.clone().unwrap_or_default();
    let deadline = config.engine.start_timeout_s.duration();
    let result: anyhow::Result<String> = match (method.as_str(), recorded.pid) {
        ("dockerd", Some(pid)) => stop_pid(pid, deadline).await,
        ("systemctl", _) => run_stop(&["systemctl", "stop", "docker"], deadline).await,
        ("service", _) => run_stop(&["service", "docker", "stop"], deadline).await,
        (other, pid) => Err(anyhow::anyhow!(
            "the harness does not know how to stop an engine started with `{other}` (pid {pid:?})"
        )),
    };
    match result {
        Ok(detail) => {
            state::Store::new(&work_dir).update(|s| s.engine = None)?;
            Ok(Check::passed(
                "engine stop",
                began.elapsed(),
                format!(
                    "{} (started by the harness with `{method}`): {detail}",
                    recorded.host
                ),
            ))
        }
        Err(e) => Ok(Check::failed(
            "engine stop",
            began.elapsed(),
            format!("{}: {e:#}", recorded.host),
        )),
    }
}

async fn stop_pid(pid: u32, deadline: Duration) -> anyhow::Result<String> {
    if process_gone(pid) {
        return Ok(format!("pid {pid} had already exited"));
    }
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    anyhow::ensure!(
        comm.trim() == "dockerd",
        "pid {pid} is `{}`, not the dockerd the harness started; it was left alone",
        comm.trim()
    );
    // SAFETY: sends SIGTERM to the dockerd the harness recorded (checked by name above).
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) } != 0 {
        anyhow::bail!(
            "cannot signal pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    let began = Instant::now();
    let mut throttle = Throttle::new();
    while !process_gone(pid) {
        if began.elapsed() >= deadline {
            anyhow::bail!(
                "dockerd pid {pid} did not exit within {} of SIGTERM",
                ui::duration(deadline)
            );
        }
        throttle.say(|| {
            format!(
                "waiting for dockerd pid {pid} to exit (it stops its containers first; {} of {})",
                ui::duration(began.elapsed()),
                ui::duration(deadline)
            )
        });
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(format!(
        "sent SIGTERM to pid {pid}; it exited after {}",
        ui::duration(began.elapsed())
    ))
}

async fn run_stop(argv: &[&str], deadline: Duration) -> anyhow::Result<String> {
    let argv: Vec<String> = argv.iter().map(|a| (*a).to_owned()).collect();
    ui::say(format!("stopping the engine: `{}`", argv.join(" ")));
    let output = run_with_deadline(&argv, &[], deadline, false).await?;
    anyhow::ensure!(
        output.success,
        "`{}` failed: {}",
        argv.join(" "),
        output.tail(5)
    );
    Ok(format!("`{}` succeeded", argv.join(" ")))
}

// ---------------------------------------------------------------------------------------------
// `docker-up --engine-only`.

/// What `docker-up --engine-only --json` prints.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    pub engine: EngineInfo,
    pub start_method: Option<String>,
    pub pid: Option<u32>,
    pub discovery: Discovery,
    pub networks: Vec<String>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// `docker-up --engine-only`: the whole engine stage with its output for people.
pub async fn run_engine_only(
    config: &Config,
    options: &EnsureOptions,
    json: bool,
) -> anyhow::Result<()> {
    let restoration = restore(config, options).await?;
    let mut checks = restoration.checks;
    let engine = restoration.engine;
    ui::say(format!(
        "engine at {}: server {}, API {}, {}, storage driver {}",
        engine.info.host,
        engine.info.server_version,
        engine.info.api_version,
        engine.info.os,
        engine.info.storage_driver
    ));
    checks.push(smoke(&engine, config).await);
    let networks_began = Instant::now();
    let networks = match list_networks(&engine).await {
        Ok(names) => {
            checks.push(Check::passed(
                "engine networks",
                networks_began.elapsed(),
                names.join(", "),
            ));
            names
        }
        Err(e) => {
            checks.push(Check::failed(
                "engine networks",
                networks_began.elapsed(),
                format!("{e:#}"),
            ));
            Vec::new()
        }
    };
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .map(|c| c.name.clone())
        .collect();

    let mut text = crate::report::table(&checks);
    for check in checks.iter().filter(|c| c.outcome == Outcome::Failed) {
        if let Some(output) = check.output.as_deref().filter(|o| !o.trim().is_empty()) {
            text.push_str(&format!("\n{} output:\n{output}\n", check.name));
        }
        if let Some(remedy) = &check.remedy {
            text.push_str(&format!("(hint: {remedy})\n"));
        }
    }
    let facts = [
        ("host", engine.info.host.clone()),
        ("found via", restoration.discovery.reason.clone()),
        ("server version", engine.info.server_version.clone()),
        ("API version", engine.info.api_version.clone()),
        ("OS", engine.info.os.clone()),
        ("storage driver", engine.info.storage_driver.clone()),
        (
            "started by harness",
            match (&restoration.start_method, restoration.pid) {
                (Some(method), Some(pid)) => format!("yes, `{method}`, pid {pid}"),
                (Some(method), None) => format!("yes, `{method}`"),
                (None, _) if engine.info.started_by_harness => {
                    "yes, by an earlier run (state.json)".to_owned()
                }
                (None, _) => "no".to_owned(),
            },
        ),
        ("time to answer", ui::duration(engine.info.time_to_answer)),
        ("networks", networks.join(", ")),
    ];
    text.push('\n');
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in facts {
        text.push_str(&format!("{key:width$}  {value}\n"));
    }
    eprint!("{text}");

    if json {
        let report = EngineReport {
            engine: engine.info.clone(),
            start_method: restoration.start_method,
            pid: restoration.pid,
            discovery: restoration.discovery,
            networks,
            checks,
            passed: failed.is_empty(),
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::check(format!("engine checks failed: {}", failed.join(", "))).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(dir: &Path) -> DiscoveryEnv {
        DiscoveryEnv {
            home: Some(dir.to_path_buf()),
            xdg_runtime_dir: Some(dir.join("run")),
            platform: Platform::Linux,
            ..DiscoveryEnv::default()
        }
    }

    fn write_context(config_dir: &Path, digest_dir: &str, name: &str, host: &str) -> PathBuf {
        let dir = config_dir.join("contexts/meta").join(digest_dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = dir.join("meta.json");
        std::fs::write(
            &meta,
            serde_json::json!({
                "Name": name,
                "Metadata": {},
                "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": false}}
            })
            .to_string(),
        )
        .unwrap();
        meta
    }

    #[test]
    fn docker_host_forms_parse() {
        assert_eq!(
            Host::parse("unix:///var/run/docker.sock").unwrap(),
            Host::Unix(PathBuf::from("/var/run/docker.sock"))
        );
        assert_eq!(
            Host::parse("unix://").unwrap(),
            Host::Unix(PathBuf::from(DEFAULT_SOCKET))
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2375").unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert_eq!(
            Host::parse("tcp://docker.local").unwrap(),
            Host::Tcp("docker.local:2375".into())
        );
        assert_eq!(
            Host::parse("http://[::1]:2375/").unwrap(),
            Host::Tcp("[::1]:2375".into())
        );
        assert_eq!(
            Host::parse("npipe:////./pipe/docker_engine").unwrap(),
            Host::Npipe("//./pipe/docker_engine".into())
        );
        assert_eq!(
            Host::parse("npipe://").unwrap().url(),
            "npipe:////./pipe/docker_engine"
        );
        assert!(Host::parse("unix://relative.sock")
            .unwrap_err()
            .contains("absolute"));
        assert!(Host::parse("tcp://host:notaport")
            .unwrap_err()
            .contains("not a port"));
        assert!(Host::parse("ssh://me@box").unwrap_err().contains("ssh"));
        assert!(Host::parse("/var/run/docker.sock").is_err());
        assert_eq!(
            Host::parse("unix:///tmp/x.sock").unwrap().url(),
            "unix:///tmp/x.sock"
        );
        assert!(Host::parse("unix:///run/docker.sock")
            .unwrap()
            .is_default_socket());
        assert!(!Host::parse("unix:///tmp/d.sock")
            .unwrap()
            .is_default_socket());
    }

    #[test]
    fn docker_host_wins_and_is_the_only_candidate() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = env_with(dir.path());
        env.docker_host = Some("unix:///tmp/nowhere/docker.sock".into());
        // A context is selected too: DOCKER_HOST still wins, as in the docker CLI.
        env.docker_context = Some("colima".into());
        let list = candidates(&env).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].source, Source::DockerHost);
        assert_eq!(list[0].host.url(), "unix:///tmp/nowhere/docker.sock");

        env.docker_host = Some("ftp://x".into());
        let error = candidates(&env).unwrap_err();
        assert_eq!(error.kind(), crate::error::ExitKind::Usage);
        assert!(error.to_string().contains("DOCKER_HOST"), "{error}");
    }

    #[test]
    fn current_context_from_config_json() {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join(".docker");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.json"),
            r#"{"auths": {}, "currentContext": "colima"}"#,
        )
        .unwrap();
        write_context(&config_dir, "aaaa", "other", "tcp://10.0.0.1:2375");
        let meta = write_context(
            &config_dir,
            "bbbb",
            "colima",
            "unix:///home/me/.colima/default/docker.sock",
        );
        let list = candidates(&env_with(dir.path())).unwrap();
        assert_eq!(
            list,
            vec![Candidate {
                host: Host::Unix(PathBuf::from("/home/me/.colima/default/docker.sock")),
                source: Source::Context {
                    name: "colima".into(),
                    meta
                },
            }]
        );
        // DOCKER_CONTEXT overrides config.json; DOCKER_CONFIG moves the directory.
        let mut env = DiscoveryEnv {
            docker_config: Some(config_dir.clone()),
            docker_context: Some("other".into()),
            ..DiscoveryEnv::default()
        };
        assert_eq!(
            candidates(&env).unwrap()[0].host,
            Host::Tcp("10.0.0.1:2375".into())
        );
        env.docker_context = Some("missing".into());
        let error = candidates(&env).unwrap_err();
        assert!(error.to_string().contains("`missing`"), "{error}");
        assert_eq!(error.kind(), crate::error::ExitKind::Usage);
    }

    #[test]
    fn default_context_means_known_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join(".docker");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.json"),
            r#"{"currentContext": "default"}"#,
        )
        .unwrap();
        let list = candidates(&env_with(dir.path())).unwrap();
        let urls: Vec<String> = list.iter().map(|c| c.host.url()).collect();
        let home = dir.path().display();
        assert_eq!(
            urls,
            vec![
                "unix:///var/run/docker.sock".to_owned(),
                format!("unix://{home}/.docker/run/docker.sock"),
                format!("unix://{home}/.docker/desktop/docker.sock"),
                format!("unix://{home}/.colima/default/docker.sock"),
                format!("unix://{home}/run/docker.sock"),
                format!("unix://{home}/run/podman/podman.sock"),
                "unix:///run/podman/podman.sock".to_owned(),
            ]
        );
        assert_eq!(start_target(&list).unwrap().host.url(), urls[0]);
        // A broken config.json is named.
        std::fs::write(config_dir.join("config.json"), "{not json").unwrap();
        let error = candidates(&env_with(dir.path())).unwrap_err();
        assert!(error.to_string().contains("config.json"), "{error}");
    }

    #[test]
    fn windows_looks_at_the_desktop_pipe() {
        let env = DiscoveryEnv {
            platform: Platform::Windows,
            ..DiscoveryEnv::default()
        };
        let list = candidates(&env).unwrap();
        assert_eq!(list[0].host.url(), "npipe:////./pipe/docker_engine");
    }

    #[tokio::test]
    async fn probing_a_missing_socket_says_so_and_picks_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Candidate {
            host: Host::Unix(dir.path().join("none.sock")),
            source: Source::Known("test"),
        };
        // A socket file nobody listens on: refused.
        let dead_path = dir.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead_path).unwrap());
        let dead = Candidate {
            host: Host::Unix(dead_path),
            source: Source::DockerHost,
        };
        let (discovery, found) = discover(&[missing, dead]).await;
        assert!(found.is_none());
        assert_eq!(discovery.candidates[0].probe, Probe::NoSocket);
        assert!(matches!(discovery.candidates[1].probe, Probe::NoAnswer(_)));
        assert!(describe_candidates(&discovery).contains("none.sock"));
    }

    fn fake_proc(root: &Path, pid: u32, comm: &str, state: char) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1"),
        )
        .unwrap();
    }

    #[test]
    fn pid_file_states() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let pid_file = dir.path().join("docker.pid");
        assert_eq!(inspect_pid_file(&pid_file, &proc_root), PidFile::Absent);

        std::fs::write(&pid_file, "4242").unwrap();
        assert_eq!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale {
                pid: Some(4242),
                why: "pid 4242 is not running".into()
            }
        );
        fake_proc(&proc_root, 4242, "bash", 'S');
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { why, .. } if why.contains("`bash`, not dockerd")
        ));
        fake_proc(&proc_root, 4242, "dockerd", 'S');
        assert_eq!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Live { pid: 4242 }
        );
        fake_proc(&proc_root, 4242, "dockerd", 'Z');
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { why, .. } if why.contains("zombie")
        ));
        std::fs::write(&pid_file, "garbage\n").unwrap();
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { pid: None, .. }
        ));
    }

    #[test]
    fn dockerd_command_lines_name_what_they_serve() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            dockerd_hosts(&args(&["dockerd"])),
            vec!["unix:///var/run/docker.sock"]
        );
        assert_eq!(
            dockerd_hosts(&args(&[
                "/usr/sbin/dockerd",
                "--host",
                "unix:///tmp/u/d.sock",
                "-H=tcp://127.0.0.1:2375",
                "--pidfile",
                "/tmp/u/p"
            ])),
            vec!["unix:///tmp/u/d.sock", "tcp://127.0.0.1:2375"]
        );
    }

    #[test]
    fn containerd_pid_file_follows_the_exec_root() {
        assert_eq!(
            containerd_pid_file(&[]),
            Path::new("/var/run/docker/containerd/containerd.pid")
        );
        let args = ["--data-root", "/d", "--exec-root", "/tmp/u/exec"].map(String::from);
        assert_eq!(
            containerd_pid_file(&args),
            Path::new("/tmp/u/exec/containerd/containerd.pid")
        );
        assert_eq!(
            containerd_pid_file(&["--exec-root=/x".to_owned()]),
            Path::new("/x/containerd/containerd.pid")
        );
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("containerd.pid");
        std::fs::write(&pid_file, "77").unwrap();
        fake_proc(&dir.path().join("proc"), 77, "containerd", 'S');
        assert_eq!(
            inspect_pid_file_of(&pid_file, &dir.path().join("proc"), "containerd"),
            PidFile::Live { pid: 77 }
        );
    }

    #[test]
    fn process_state_reads_past_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 7, "a) b", 'R');
        assert_eq!(process_state(dir.path(), 7), Some('R'));
        assert_eq!(process_state(dir.path(), 8), None);
    }

    fn linux_facts() -> HostFacts {
        HostFacts {
            platform: Platform::Linux,
            systemd: false,
            init_script: false,
            dockerd: Some(PathBuf::from("/usr/sbin/dockerd")),
            docker_desktop: None,
        }
    }

    #[test]
    fn linux_start_plans_follow_the_init_system() {
        let engine = EngineCfg::default();
        let log = Path::new("/repo/target/xtask/dockerd.log");
        let default = Host::Unix(PathBuf::from(DEFAULT_SOCKET));
        let spawn = StartPlan::Dockerd {
            program: PathBuf::from("/usr/sbin/dockerd"),
            args: vec![],
            log: log.to_path_buf(),
        };

        let mut facts = linux_facts();
        facts.systemd = true;
        facts.init_script = true;
        let plans = start_plans(&facts, &default, &engine, log);
        assert_eq!(
            plans,
            vec![StartPlan::Systemctl, StartPlan::Service, spawn.clone()]
        );
        assert_eq!(plans[0].argv(), vec![vec!["systemctl", "start", "docker"]]);
        assert_eq!(plans[1].argv(), vec![vec!["service", "docker", "start"]]);
        assert_eq!(plans[2].argv(), vec![vec!["/usr/sbin/dockerd"]]);

        // No systemd (a container, this VM): the init script, then dockerd itself.
        facts.systemd = false;
        assert_eq!(
            start_plans(&facts, &default, &engine, log),
            vec![StartPlan::Service, spawn.clone()]
        );
        facts.init_script = false;
        assert_eq!(start_plans(&facts, &default, &engine, log), vec![spawn]);

        // Not installed, or remote: nothing to run.
        facts.dockerd = None;
        assert!(start_plans(&facts, &default, &engine, log).is_empty());
        let facts = linux_facts();
        assert!(start_plans(&facts, &Host::Tcp("h:2375".into()), &engine, log).is_empty());
    }

    #[test]
    fn a_private_daemon_is_spawned_with_its_socket_and_pid_file() {
        let mut facts = linux_facts();
        facts.systemd = true;
        facts.init_script = true;
        let engine = EngineCfg {
            pid_file: PathBuf::from("/tmp/u/docker.pid"),
            dockerd_args: vec!["--data-root".into(), "/tmp/u/data".into()],
            ..EngineCfg::default()
        };
        let log = Path::new("/r/target/xtask/dockerd.log");
        let host = Host::Unix(PathBuf::from("/tmp/u/docker.sock"));
        let plans = start_plans(&facts, &host, &engine, log);
        assert_eq!(
            plans.len(),
            1,
            "service managers only start the stock daemon"
        );
        assert_eq!(plans[0].method(), "dockerd");
        assert_eq!(
            plans[0].argv(),
            vec![vec![
                "/usr/sbin/dockerd",
                "--data-root",
                "/tmp/u/data",
                "--host",
                "unix:///tmp/u/docker.sock",
                "--pidfile",
                "/tmp/u/docker.pid"
            ]]
        );
        // Flags already given are not repeated.
        let engine = EngineCfg {
            pid_file: PathBuf::from("/tmp/u/docker.pid"),
            dockerd_args: vec![
                "--host=unix:///tmp/u/docker.sock".into(),
                "-p".into(),
                "/tmp/u/docker.pid".into(),
            ],
            ..EngineCfg::default()
        };
        assert_eq!(
            start_plans(&facts, &host, &engine, log)[0].argv(),
            vec![vec![
                "/usr/sbin/dockerd",
                "--host=unix:///tmp/u/docker.sock",
                "-p",
                "/tmp/u/docker.pid"
            ]]
        );
    }

    #[test]
    fn desktop_platforms_start_docker_desktop() {
        let engine = EngineCfg::default();
        let log = Path::new("dockerd.log");
        let mac = HostFacts {
            platform: Platform::Macos,
            docker_desktop: Some(PathBuf::from("/Applications/Docker.app")),
            ..HostFacts::default()
        };
        let socket = Host::Unix(PathBuf::from("/Users/me/.docker/run/docker.sock"));
        let plans = start_plans(&mac, &socket, &engine, log);
        assert_eq!(plans, vec![StartPlan::OpenDockerApp]);
        assert_eq!(plans[0].argv(), vec![vec!["open", "-a", "Docker"]]);
        assert_eq!(plans[0].method(), "open -a Docker");

        let windows = HostFacts {
            platform: Platform::Windows,
            docker_desktop: Some(PathBuf::from(
                r"C:\Program Files\Docker\Docker\Docker Desktop.exe",
            )),
            ..HostFacts::default()
        };
        let pipe = Host::Npipe("//./pipe/docker_engine".into());
        let plans = start_plans(&windows, &pipe, &engine, log);
        assert_eq!(
            plans[0].argv(),
            vec![
                vec![
                    "powershell",
                    "-NoProfile",
                    "-Command",
                    "Start-Service com.docker.service"
                ],
                vec![
                    "powershell",
                    "-NoProfile",
                    "-Command",
                    r"Start-Process -FilePath 'C:\Program Files\Docker\Docker\Docker Desktop.exe'"
                ],
            ]
        );
        assert!(!HostFacts {
            platform: Platform::Windows,
            ..HostFacts::default()
        }
        .installed());
    }

    #[test]
    fn remedies_name_the_platform_way() {
        assert!(install_remedy(Platform::Macos).contains("Docker Desktop"));
        assert!(install_remedy(Platform::Windows).contains("Docker Desktop"));
        let linux = install_remedy(Platform::Linux);
        assert!(linux.contains("docker.io") || linux.contains("engine/install"));
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(
            split_reference("debian:bookworm-slim"),
            ("debian", "bookworm-slim")
        );
        assert_eq!(split_reference("hello-world"), ("hello-world", "latest"));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/app:1"),
            ("localhost:5000/app", "1")
        );
    }

    #[tokio::test]
    async fn commands_have_deadlines_and_report_output() {
        let ok = run_with_deadline(
            &["sh".into(), "-c".into(), "echo out; echo err >&2".into()],
            &[("X", "1")],
            Duration::from_secs(10),
            false,
        )
        .await
        .unwrap();
        assert!(ok.success);
        assert_eq!(ok.tail(5), "out\nerr");
        let slow = run_with_deadline(
            &["sleep".into(), "30".into()],
            &[],
            Duration::from_millis(200),
            false,
        )
        .await
        .unwrap_err();
        assert!(
            slow.to_string().contains("`sleep 30` did not finish"),
            "{slow}"
        );
    }
}
