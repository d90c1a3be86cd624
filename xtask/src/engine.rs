//! Finding, starting, proving and stopping the Docker engine.
//!
//! CONTRACT (owned by the engine work; signatures used by stack, gate and ci):
//! `ensure_running`, `connect`, `smoke`, `list_networks`, `stop_started_engine`, `run_engine_only`.

use std::time::Duration;

use crate::config::Config;
use crate::report::Check;

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
    /// From the start of `ensure_running` until the engine answered.
    pub time_to_answer: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct EnsureOptions {
    /// `--install`: install the engine packages when missing.
    pub install: bool,
}

/// Finds the engine, starts it when stopped (and allowed), waits within `start_timeout_s`,
/// negotiates the API version. The checks ("engine available", "engine response time", ...) are
/// returned with the engine so the caller can report them; an error means no engine can be had
/// (a `Failure::Unavailable`, exit 3).
pub async fn ensure_running(
    _config: &Config,
    _options: &EnsureOptions,
) -> anyhow::Result<(Engine, Vec<Check>)> {
    anyhow::bail!("engine::ensure_running is not implemented yet")
}

/// Connects to an engine that should already run, without starting anything.
pub async fn connect(_config: &Config) -> anyhow::Result<Engine> {
    let docker = bollard::Docker::connect_with_defaults()?
        .negotiate_version()
        .await?;
    let version = docker.version().await?;
    Ok(Engine {
        docker,
        info: EngineInfo {
            host: std::env::var("DOCKER_HOST")
                .unwrap_or_else(|_| "unix:///var/run/docker.sock".into()),
            server_version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
            os: version.os.unwrap_or_default(),
            ..EngineInfo::default()
        },
    })
}

/// Runs the smoke container (`smoke_image`, else a local fallback) that must exit 0.
pub async fn smoke(_engine: &Engine, _config: &Config) -> Check {
    Check::failed("smoke container", Duration::ZERO, "not implemented yet")
}

/// The engine's networks, by name.
pub async fn list_networks(_engine: &Engine) -> anyhow::Result<Vec<String>> {
    anyhow::bail!("engine::list_networks is not implemented yet")
}

/// Stops the engine only when state.json says the harness started it; otherwise says why not.
pub async fn stop_started_engine(_config: &Config) -> anyhow::Result<Check> {
    anyhow::bail!("engine::stop_started_engine is not implemented yet")
}

/// `docker-up --engine-only`: the whole engine stage with its output for people.
pub async fn run_engine_only(
    _config: &Config,
    _options: &EnsureOptions,
    _json: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("docker-up --engine-only is not implemented yet")
}

/// Installs Debian packages that are missing (as root); returns whether it installed anything.
pub fn install_packages(_packages: &[&str]) -> anyhow::Result<bool> {
    anyhow::bail!("engine::install_packages is not implemented yet")
}
