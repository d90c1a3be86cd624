//! Where the engine is: the `DOCKER_HOST` forms (with `DOCKER_TLS_VERIFY`), docker contexts and
//! known sockets (pure functions over a [`DiscoveryEnv`], so that tests give their own), probing
//! the candidates, and which one a stopped engine would be started for.
//!
//! Not here: starting an engine ([`super::start`]), or what answering means for the run's checks
//! ([`super::restore`]), a TLS engine's client and certificates ([`super::tcp_tls`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bollard::Docker;
use serde::Serialize;

use super::DEFAULT_SOCKET;
use crate::error::Failure;
use crate::ui;

/// An engine address, as `DOCKER_HOST` and docker contexts write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum Host {
    /// `unix:///var/run/docker.sock`
    Unix(PathBuf),
    /// `tcp://host:port` (also `http://`); kept as `host:port`.
    Tcp(String),
    /// `tcp://host:port` with `DOCKER_TLS_VERIFY` (or a docker context with TLS files): the
    /// engine's certificate verified against `ca.pem` in `certs`, `cert.pem`/`key.pem` presented.
    TcpTls { authority: String, certs: PathBuf },
    /// `npipe:////./pipe/docker_engine`; kept as the pipe path.
    Npipe(String),
}

impl Host {
    /// Parses the forms the docker CLI accepts in `DOCKER_HOST` (ssh is not supported; TLS is
    /// [`Host::with_tls`], from the environment).
    pub fn parse(text: &str) -> Result<Host, String> {
        Host::parse_with_default_port(text, 2375)
    }

    /// [`Host::parse`], `default_port` for a tcp address without one (the docker CLI's 2376 with
    /// TLS, 2375 without).
    fn parse_with_default_port(text: &str, default_port: u16) -> Result<Host, String> {
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
            // The docker CLI defaults the port to 2375 for plain tcp, 2376 with TLS.
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
                format!("{authority}:{default_port}")
            }));
        }
        if let Some(pipe) = text.strip_prefix("npipe://") {
            if pipe.is_empty() {
                return Ok(Host::Npipe("//./pipe/docker_engine".to_owned()));
            }
            return Ok(Host::Npipe(pipe.to_owned()));
        }
        if text.starts_with("ssh://") {
            return Err(format!(
                "`{text}`: ssh engines are not supported by the harness; forward the engine's socket \
                 over ssh and point DOCKER_HOST (or a docker context) at the forwarded end: \
                 `ssh -NL 127.0.0.1:23750:/var/run/docker.sock HOST` then DOCKER_HOST=tcp://127.0.0.1:23750, \
                 or `ssh -NL /tmp/remote-docker.sock:/var/run/docker.sock HOST` then DOCKER_HOST=unix:///tmp/remote-docker.sock"
            ));
        }
        if text.starts_with("https://") {
            return Err(format!(
                "`{text}`: for a TLS engine write tcp://HOST:PORT and set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH, as for the docker CLI"
            ));
        }
        Err(format!(
            "`{text}` is not an engine address (expected unix://PATH, tcp://HOST:PORT or npipe://PATH)"
        ))
    }

    /// `text` (a `DOCKER_HOST` or a context's host) with TLS when `tls` names a certificate
    /// directory: a tcp address becomes [`Host::TcpTls`] (port 2376 when none is written); a
    /// socket or a pipe is local and stays as it is, as with the docker CLI.
    pub fn with_tls(text: &str, tls: Option<&Path>) -> Result<Host, String> {
        match (Host::parse_with_default_port(text, 2376)?, tls) {
            (Host::Tcp(authority), Some(certs)) => Ok(Host::TcpTls {
                authority,
                certs: certs.to_path_buf(),
            }),
            (_, _) => Host::parse(text),
        }
    }

    /// What the docker CLI, compose and the suites need besides `DOCKER_HOST` to reach a TLS
    /// engine (`DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`, with `DOCKER_HOST` itself); nothing for
    /// the others.
    pub fn tls_env(&self) -> Vec<(String, String)> {
        match self {
            Host::TcpTls { authority, certs } => super::tcp_tls::env(authority, certs),
            Host::Unix(_) | Host::Tcp(_) | Host::Npipe(_) => Vec::new(),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Host::Unix(path) => format!("unix://{}", path.display()),
            Host::Tcp(authority) | Host::TcpTls { authority, .. } => format!("tcp://{authority}"),
            Host::Npipe(pipe) => format!("npipe://{pipe}"),
        }
    }

    /// The unix socket, when this is one.
    pub fn socket(&self) -> Option<&Path> {
        match self {
            Host::Unix(path) => Some(path),
            Host::Tcp(_) | Host::TcpTls { .. } | Host::Npipe(_) => None,
        }
    }

    /// What `{engine_host}` in an endpoint template becomes: the host of a tcp engine (an IPv6
    /// address keeps its brackets, so that it goes into a URL as it is), `127.0.0.1` for a local
    /// socket or pipe, whose published ports are on this machine.
    pub fn engine_host(&self) -> String {
        match self {
            Host::Tcp(authority) | Host::TcpTls { authority, .. } => {
                match authority.rsplit_once(':') {
                    Some((host, _)) if !authority.ends_with(']') => host.to_owned(),
                    _ => authority.clone(),
                }
            }
            Host::Unix(_) | Host::Npipe(_) => "127.0.0.1".to_owned(),
        }
    }

    /// A tcp engine on another machine: its disk is not this machine's, and its published ports
    /// are at its own address. A tcp engine on a loopback address is local.
    pub fn is_remote(&self) -> bool {
        match self {
            Host::Tcp(_) | Host::TcpTls { .. } => {
                let host = self.engine_host();
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                let loopback = bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
                !(loopback || bare.eq_ignore_ascii_case("localhost"))
            }
            Host::Unix(_) | Host::Npipe(_) => false,
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
    /// `DOCKER_TLS_VERIFY`: any value asks for TLS with verification, as with the docker CLI.
    pub docker_tls_verify: Option<String>,
    /// `DOCKER_TLS`: TLS without verification, which the harness refuses.
    pub docker_tls: Option<String>,
    /// `DOCKER_CERT_PATH`: ca.pem, cert.pem and key.pem (default: the docker config directory).
    pub docker_cert_path: Option<PathBuf>,
}

impl DiscoveryEnv {
    pub fn from_process() -> DiscoveryEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        DiscoveryEnv {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            // On Windows HOME, when set, is often a shell's idea of it (`/c/Users/me`).
            home: if cfg!(windows) {
                var("USERPROFILE").or_else(|| var("HOME"))
            } else {
                var("HOME").or_else(|| var("USERPROFILE"))
            }
            .map(PathBuf::from),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR").map(PathBuf::from),
            platform: Platform::current(),
            docker_tls_verify: var("DOCKER_TLS_VERIFY"),
            docker_tls: var("DOCKER_TLS"),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
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
        let host = Host::with_tls(text, docker_host_tls(env)?.as_deref()).map_err(|problem| {
            Failure::config(format!("DOCKER_HOST: {problem}")).with_hint(
                "unset DOCKER_HOST or set it to unix:///PATH, tcp://HOST:PORT or npipe://PATH",
            )
        })?;
        if let Host::TcpTls { certs, .. } = &host {
            super::tcp_tls::check_cert_dir(certs, "DOCKER_TLS_VERIFY")?;
        }
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

/// The certificate directory when `DOCKER_TLS_VERIFY` asks for TLS; an error for `DOCKER_TLS`
/// alone (TLS without verifying the engine).
fn docker_host_tls(env: &DiscoveryEnv) -> Result<Option<PathBuf>, Failure> {
    match (&env.docker_tls_verify, &env.docker_tls) {
        (Some(_), _) => super::tcp_tls::cert_dir(env.docker_cert_path.as_deref(), env.config_dir().as_deref())
            .map(Some)
            .ok_or_else(|| {
                Failure::config("DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor a home directory says where the certificates are")
                    .with_hint("set DOCKER_CERT_PATH to the directory of ca.pem, cert.pem and key.pem")
            }),
        (None, Some(_)) => Err(Failure::config(
            "DOCKER_TLS is set without DOCKER_TLS_VERIFY: TLS without verifying the engine's certificate, which the harness never does",
        )
        .with_hint("set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem)")),
        (None, None) => Ok(None),
    }
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
        // The CLI keeps a context's TLS files beside its metadata, under the same digest.
        let tls_dir = config_dir
            .join("contexts/tls")
            .join(entry.file_name())
            .join("docker");
        let skips_verify = value
            .pointer("/Endpoints/docker/SkipTLSVerify")
            .and_then(|v| v.as_bool())
            == Some(true);
        if skips_verify && host_text.starts_with("tcp://") {
            return Err(Failure::config(format!(
                "{}: docker context `{name}` skips TLS verification (SkipTLSVerify), which the harness never does",
                meta.display()
            ))
            .with_hint("give the context the engine's CA (`docker context update --docker ca=...`)"));
        }
        let tls = tls_dir.is_dir().then_some(tls_dir.as_path());
        let host = Host::with_tls(host_text, tls).map_err(|problem| {
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
            // Docker Desktop serves both; its `desktop-linux` context names the second.
            return [
                "//./pipe/docker_engine",
                "//./pipe/dockerDesktopLinuxEngine",
            ]
            .into_iter()
            .map(|pipe| Candidate {
                host: Host::Npipe(pipe.to_owned()),
                source: Source::Known("Docker Desktop"),
            })
            .collect();
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
        Host::TcpTls { authority, certs } => super::tcp_tls::client(authority, certs),
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
        Ok(Err(e)) => {
            let said = match host {
                Host::TcpTls { authority, certs } => super::tcp_tls::explain(&e, authority, certs),
                Host::Unix(_) | Host::Tcp(_) | Host::Npipe(_) => None,
            };
            (
                Probe::NoAnswer(said.unwrap_or_else(|| super::short_error(&e))),
                None,
            )
        }
        Err(_) => (
            Probe::NoAnswer(format!("no answer within {}", ui::duration(timeout))),
            None,
        ),
    }
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

/// Every candidate with what probing it gave, on one line (for errors).
/// The addresses tried and what each answered: one on the line, several as `N addresses tried:`
/// with one a line under it (the terminal shows them as an indented block).
pub fn describe_candidates(discovery: &Discovery) -> String {
    let tried: Vec<String> = discovery
        .candidates
        .iter()
        .map(|c| format!("{} ({}): {}", c.host, c.source, c.probe))
        .collect();
    match tried.as_slice() {
        [] => "no engine address to try".to_owned(),
        [one] => one.clone(),
        many => format!("{} addresses tried:\n{}", many.len(), many.join("\n")),
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
        let ssh = Host::parse("ssh://me@box").unwrap_err();
        assert!(ssh.contains("ssh engines are not supported"), "{ssh}");
        assert!(ssh.contains("DOCKER_HOST=tcp://127.0.0.1:23750"), "{ssh}");
        assert!(Host::parse("https://box:2376").unwrap_err().contains("TLS"));
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
    fn the_engine_host_is_the_tcp_host_else_loopback() {
        let host = |text: &str| Host::parse(text).unwrap();
        assert_eq!(host("tcp://10.0.3.2:2375").engine_host(), "10.0.3.2");
        assert!(host("tcp://10.0.3.2:2375").is_remote());
        assert_eq!(host("tcp://docker.example").engine_host(), "docker.example");
        assert_eq!(host("tcp://[fd00::2]:2375").engine_host(), "[fd00::2]");
        assert!(host("tcp://[fd00::2]:2375").is_remote());
        for local in [
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2375",
        ] {
            assert!(!host(local).is_remote(), "{local}");
        }
        assert_eq!(host("tcp://127.0.0.1:2375").engine_host(), "127.0.0.1");
        assert_eq!(
            host("unix:///run/podman/podman.sock").engine_host(),
            "127.0.0.1"
        );
        assert!(!host("unix:///run/podman/podman.sock").is_remote());
        assert_eq!(host("npipe://").engine_host(), "127.0.0.1");
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

    // Unix socket paths under a Unix home.
    #[cfg(unix)]
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
    fn windows_looks_at_the_desktop_npipes() {
        let env = DiscoveryEnv {
            platform: Platform::Windows,
            ..DiscoveryEnv::default()
        };
        let list = candidates(&env).unwrap();
        let urls: Vec<String> = list.iter().map(|c| c.host.url()).collect();
        assert_eq!(
            urls,
            vec![
                "npipe:////./pipe/docker_engine",
                "npipe:////./pipe/dockerDesktopLinuxEngine"
            ]
        );
        assert_eq!(start_target(&list).unwrap().host, list[0].host);
    }

    /// A Windows user's profile as Docker Desktop leaves it: `%USERPROFILE%\.docker` with the
    /// `desktop-linux` context selected, under a directory whose name has a space.
    #[test]
    fn windows_npipe_discovery_from_a_fake_desktop_environment() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("Jane Doe");
        let config_dir = profile.join(".docker");
        std::fs::create_dir_all(&config_dir).unwrap();
        std::fs::write(
            config_dir.join("config.json"),
            r#"{"auths": {}, "credsStore": "desktop", "currentContext": "desktop-linux"}"#,
        )
        .unwrap();
        let meta = write_context(
            &config_dir,
            "fe9c6bd7a66301f49ca9b6a70b217107cd1284598bfc254700c989b916da791e",
            "desktop-linux",
            "npipe:////./pipe/dockerDesktopLinuxEngine",
        );
        let env = DiscoveryEnv {
            home: Some(profile.clone()),
            platform: Platform::Windows,
            ..DiscoveryEnv::default()
        };
        let list = candidates(&env).unwrap();
        assert_eq!(
            list,
            vec![Candidate {
                host: Host::Npipe("//./pipe/dockerDesktopLinuxEngine".into()),
                source: Source::Context {
                    name: "desktop-linux".into(),
                    meta: meta.clone()
                },
            }]
        );
        assert!(
            list[0].source.to_string().contains("Jane Doe"),
            "{}",
            list[0].source
        );
        // DOCKER_HOST still wins; `npipe://` alone is Docker Desktop's default pipe.
        let env = DiscoveryEnv {
            docker_host: Some("npipe://".into()),
            ..env
        };
        assert_eq!(
            candidates(&env).unwrap()[0].host.url(),
            "npipe:////./pipe/docker_engine"
        );
        // A pipe is not a unix socket: no file to look for.
        assert_eq!(Host::Npipe("//./pipe/docker_engine".into()).socket(), None);
    }

    #[cfg(unix)]
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
}
