//! `harness.toml`: finding it, parsing it and validating it, before anything touches the engine.
//!
//! Single values are validated while they are deserialized (newtypes such as [`Secs`] and [`Port`]),
//! so that serde's error carries the span and the key path. Cross-references (an endpoint naming a
//! service, a compose file that must exist) are checked afterwards from `toml::Spanned` values.
//! Every error reads `FILE:LINE:COL: key `a.b`: what is wrong`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::endpoints::Template;
use crate::error::Failure;

pub mod stack_keys;
pub mod suite_keys;
pub mod history_keys;

pub use history_keys::HistoryCfg;
pub use suite_keys::{matches_pattern, GateCfg, Runner, SuiteCfg, MAX_RETRIES};

/// The file name looked for from the current directory upwards.
pub const FILE_NAME: &str = "harness.toml";

/// A validated `harness.toml`. Paths in it are relative to [`Config::root`].
#[derive(Debug, Clone)]
pub struct Config {
    /// The `harness.toml` that was read.
    pub path: PathBuf,
    /// Its directory: relative paths and commands resolve against it.
    pub root: PathBuf,
    pub project: ProjectCfg,
    pub preflight: PreflightCfg,
    pub engine: EngineCfg,
    pub images: BTreeMap<String, ImageCfg>,
    pub stack: Option<StackCfg>,
    /// Named URL templates, see [`crate::endpoints`].
    pub endpoints: BTreeMap<String, String>,
    pub ws_check: Option<WsCheckCfg>,
    pub python: PythonCfg,
    pub suites: Vec<SuiteCfg>,
    pub targets: TargetsCfg,
    pub fallback: FallbackCfg,
    pub gate: GateCfg,
    pub history: HistoryCfg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectCfg {
    /// Compose project name prefix; `[a-z0-9][a-z0-9_-]*`.
    pub name: ProjectName,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreflightCfg {
    pub min_memory_gib: NonNegative,
    pub min_disk_gib: NonNegative,
    pub max_cpu_percent: Percent,
    /// How long the CPU load is sampled for.
    pub cpu_sample_ms: Millis,
    pub free_ports: Vec<Port>,
    pub on_shortfall: OnShortfall,
}

impl Default for PreflightCfg {
    fn default() -> Self {
        PreflightCfg {
            min_memory_gib: NonNegative(0.0),
            min_disk_gib: NonNegative(0.0),
            max_cpu_percent: Percent(100.0),
            cpu_sample_ms: Millis(1000),
            free_ports: Vec::new(),
            on_shortfall: OnShortfall::Warn,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnShortfall {
    Warn,
    Fail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineCfg {
    /// Start the engine when it is installed but not running.
    pub start_if_stopped: bool,
    /// How long to wait for a started engine to answer.
    pub start_timeout_s: Secs,
    /// An engine that takes longer than this to answer fails the "engine response time" check.
    pub respond_within_s: Secs,
    /// Image of the smoke container; pulled when it can be.
    pub smoke_image: String,
    /// Used when `smoke_image` is absent and cannot be pulled: a locally present image and the
    /// command it runs. Defaults to the first `[images]` entry running `true`.
    pub smoke_fallback_image: Option<String>,
    pub smoke_fallback_cmd: Vec<String>,
    /// Deadline for the smoke container to exit.
    pub smoke_timeout_s: Secs,
    /// The program spawned when the harness starts dockerd itself (default: `dockerd` on PATH).
    pub dockerd: Option<PathBuf>,
    /// Extra arguments for `dockerd` when the harness spawns it itself.
    pub dockerd_args: Vec<String>,
    /// The pid file a crashed dockerd leaves behind.
    pub pid_file: PathBuf,
}

impl Default for EngineCfg {
    fn default() -> Self {
        EngineCfg {
            start_if_stopped: true,
            start_timeout_s: Secs(180),
            respond_within_s: Secs(30),
            smoke_image: "hello-world".to_owned(),
            smoke_fallback_image: None,
            smoke_fallback_cmd: vec!["true".to_owned()],
            smoke_timeout_s: Secs(60),
            dockerd: None,
            dockerd_args: Vec::new(),
            pid_file: PathBuf::from("/var/run/docker.pid"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageCfg {
    pub provision: Provision,
    /// debootstrap suite; defaults to the codename in the image tag (`debian:bookworm-slim` → bookworm).
    pub suite: Option<String>,
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Apt mirror; defaults to the one the host's apt sources name.
    pub mirror: Option<String>,
    #[serde(default = "default_provision_timeout")]
    pub timeout_s: Secs,
}

fn default_variant() -> String {
    "minbase".to_owned()
}
fn default_provision_timeout() -> Secs {
    Secs(900)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provision {
    /// Only pull; fail when no registry answers.
    Pull,
    /// Pull, else build locally with debootstrap and `docker import`.
    Debootstrap,
}

#[derive(Debug, Clone)]
pub struct StackCfg {
    /// Absolute path of the compose file (validated to exist).
    pub compose_file: PathBuf,
    /// Each service must be healthy within this long of its start.
    pub service_budget_s: Secs,
    pub services: Vec<String>,
    /// Pass `--build` to compose up.
    pub build: bool,
    /// Deadline for building the images.
    pub build_timeout_s: Secs,
    /// Environment for every compose call.
    pub env: BTreeMap<String, String>,
    /// Environment added for `--isolated` runs (for example empty host ports, so they are ephemeral).
    pub isolated_env: BTreeMap<String, String>,
    /// Log lines printed for a service that failed.
    pub log_lines: usize,
    /// Readiness probes, start order, warm stacks.
    pub speed: stack_keys::SpeedCfg,
    /// After a signal, how long each container gets to stop before it is killed.
    pub interrupt_stop_timeout_s: WholeSecs,
}

/// `stack.interrupt_stop_timeout_s` when not set (and without a `[stack]`).
pub const DEFAULT_INTERRUPT_STOP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct WsCheckCfg {
    /// Template of the WebSocket URL.
    pub url: String,
    /// Template of the URL a token is POSTed for; no token when absent.
    pub token_url: Option<String>,
    /// JSON body of the token request; `{user}` is replaced by a per-user id.
    pub token_body: String,
    /// The JSON field of the token response that holds the token.
    pub token_field: String,
    /// Message sent after connecting; `{user}` is replaced by the user's id.
    pub send: String,
    /// Events expected, in order.
    pub expect: Vec<String>,
    /// The JSON field of an incoming message that names its event.
    pub event_field: String,
    pub timeout_s: Secs,
    pub connect_timeout_s: Secs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PythonCfg {
    /// Interpreter that creates the virtual environment.
    pub interpreter: String,
    /// Requirements of the pytest suites, installed into the venv.
    pub requirements: Vec<PathBuf>,
    /// Where the venv lives (relative to the root).
    pub venv: PathBuf,
}

impl Default for PythonCfg {
    fn default() -> Self {
        PythonCfg {
            interpreter: "python3".to_owned(),
            requirements: Vec::new(),
            venv: PathBuf::from("target/xtask/venv"),
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Docker,
    Staging,
    Local,
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Docker => "docker",
            TargetKind::Staging => "staging",
            TargetKind::Local => "local",
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct TargetsCfg {
    /// Pytest markers deselected (and reported skipped) on the docker target.
    pub docker_skip_markers: Vec<String>,
    pub staging: Option<StagingCfg>,
    pub local: Option<LocalCfg>,
}

#[derive(Debug, Clone)]
pub struct StagingCfg {
    /// Endpoint templates; `${VAR}` is read from the environment.
    pub endpoints: BTreeMap<String, String>,
    pub skip_markers: Vec<String>,
    /// How long each endpoint has to answer the usability probe.
    pub probe_timeout_s: Secs,
    /// A PEM file of CA certificates trusted besides the platform's roots (absolute; validated
    /// to hold at least one certificate).
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct LocalCfg {
    pub endpoints: BTreeMap<String, String>,
    pub processes: Vec<ProcessCfg>,
    /// Requirements installed into the venv before the processes start.
    pub requirements: Vec<PathBuf>,
    pub skip_markers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCfg {
    pub name: String,
    /// Program and arguments; `python` runs the harness's venv interpreter.
    pub cmd: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// URL template that answers 2xx once the process is ready.
    pub ready: Option<String>,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_s: Secs,
}

fn default_ready_timeout() -> Secs {
    Secs(30)
}

#[derive(Debug, Clone, Default)]
pub struct FallbackCfg {
    pub order: Vec<TargetKind>,
}

// ---------------------------------------------------------------------------------------------
// Validated scalar types: each rejects bad values during deserialization.

macro_rules! validated {
    ($(#[$doc:meta])* $name:ident($inner:ty), $raw:ty, |$v:ident| $check:expr, $expecting:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
        pub struct $name(pub $inner);
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let $v: $raw = Deserialize::deserialize(deserializer).map_err(|_: D::Error| {
                    serde::de::Error::custom(concat!("expected ", $expecting))
                })?;
                let checked: Result<$inner, String> = $check;
                checked.map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated!(
    /// A duration in whole seconds, greater than 0.
    Secs(u64), i64,
    |v| if v > 0 { Ok(v as u64) } else { Err(format!("must be a number of seconds greater than 0, got {v}")) },
    "a number of seconds greater than 0"
);
validated!(
    /// A duration in whole seconds, 0 or more.
    WholeSecs(u64), i64,
    |v| u64::try_from(v).map_err(|_| format!("must be a number of seconds, 0 or more, got {v}")),
    "a number of seconds, 0 or more"
);
validated!(
    /// A duration in milliseconds, greater than 0.
    Millis(u64), i64,
    |v| if v > 0 { Ok(v as u64) } else { Err(format!("must be a number of milliseconds greater than 0, got {v}")) },
    "a number of milliseconds greater than 0"
);
validated!(
    /// A TCP port, 1..=65535.
    Port(u16), i64,
    |v| u16::try_from(v).ok().filter(|p| *p > 0).ok_or_else(|| format!("port must be within 1..65535, got {v}")),
    "a port number within 1..65535"
);
validated!(
    /// A percentage, 0..=100.
    Percent(f64), f64,
    |v| if (0.0..=100.0).contains(&v) { Ok(v) } else { Err(format!("must be a percentage within 0..100, got {v}")) },
    "a percentage within 0..100"
);
validated!(
    /// A number of workers, 1..=64.
    Jobs(u32), i64,
    |v| u32::try_from(v).ok().filter(|j| (1..=64).contains(j)).ok_or_else(|| format!("must be a number of workers within 1..64, got {v}")),
    "a number of workers within 1..64"
);
validated!(
    /// A number of runs to keep, 1 or more.
    KeepRuns(u32), i64,
    |v| u32::try_from(v).ok().filter(|n| *n > 0).ok_or_else(|| format!("must be a number of runs, 1 or more, got {v}")),
    "a number of runs, 1 or more"
);
validated!(
    /// A ratio of 1 or more.
    Ratio(f64), f64,
    |v| if v >= 1.0 && v.is_finite() { Ok(v) } else { Err(format!("must be a ratio of 1 or more, got {v}")) },
    "a ratio of 1 or more"
);
validated!(
    /// A quantity that cannot be negative.
    NonNegative(f64), f64,
    |v| if v >= 0.0 && v.is_finite() { Ok(v) } else { Err(format!("must not be negative, got {v}")) },
    "a number that is not negative"
);

impl Secs {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl WholeSecs {
    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}
impl Millis {
    pub fn duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

/// A compose project name prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(pub String);

impl<'de> Deserialize<'de> for ProjectName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && name.len() <= 40;
        if valid {
            Ok(ProjectName(name))
        } else {
            Err(serde::de::Error::custom(format!(
                "`{name}` is not a valid compose project name (lowercase letters, digits, '-' and '_', at most 40)"
            )))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw file, as serde sees it.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    project: ProjectCfg,
    #[serde(default)]
    preflight: PreflightCfg,
    #[serde(default)]
    engine: EngineCfg,
    #[serde(default)]
    images: BTreeMap<String, ImageCfg>,
    stack: Option<RawStack>,
    #[serde(default)]
    endpoints: BTreeMap<String, Spanned<String>>,
    ws_check: Option<RawWsCheck>,
    #[serde(default)]
    python: PythonCfg,
    #[serde(default, rename = "suite")]
    suites: Vec<suite_keys::RawSuite>,
    #[serde(default)]
    targets: RawTargets,
    #[serde(default)]
    fallback: RawFallback,
    #[serde(default)]
    gate: GateCfg,
    #[serde(default)]
    history: HistoryCfg,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    compose_file: Spanned<String>,
    #[serde(default = "default_budget")]
    service_budget_s: Secs,
    services: Spanned<Vec<String>>,
    #[serde(default = "default_true")]
    build: bool,
    #[serde(default = "default_build_timeout")]
    build_timeout_s: Secs,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    isolated_env: BTreeMap<String, String>,
    #[serde(default = "default_log_lines")]
    log_lines: usize,
    #[serde(default = "stack_keys::default_probe_interval")]
    probe_interval_ms: u64,
    #[serde(default)]
    ready: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    start: stack_keys::StartMode,
    #[serde(default)]
    reuse: bool,
    reset: Option<Spanned<Vec<String>>>,
    #[serde(default = "default_interrupt_stop_timeout")]
    interrupt_stop_timeout_s: WholeSecs,
}

fn default_budget() -> Secs {
    Secs(60)
}
fn default_build_timeout() -> Secs {
    Secs(900)
}
fn default_true() -> bool {
    true
}
fn default_log_lines() -> usize {
    50
}
fn default_interrupt_stop_timeout() -> WholeSecs {
    WholeSecs(DEFAULT_INTERRUPT_STOP_TIMEOUT.as_secs())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWsCheck {
    url: Spanned<String>,
    token_url: Option<Spanned<String>>,
    #[serde(default = "default_token_body")]
    token_body: String,
    #[serde(default = "default_token_field")]
    token_field: String,
    send: String,
    expect: Spanned<Vec<String>>,
    #[serde(default = "default_event_field")]
    event_field: String,
    #[serde(default = "default_ws_timeout")]
    timeout_s: Secs,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_s: Secs,
}

fn default_token_body() -> String {
    r#"{"user_id": "{user}"}"#.to_owned()
}
fn default_token_field() -> String {
    "token".to_owned()
}
fn default_event_field() -> String {
    "type".to_owned()
}
fn default_ws_timeout() -> Secs {
    Secs(10)
}
fn default_connect_timeout() -> Secs {
    Secs(5)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    docker: Option<RawDockerTarget>,
    staging: Option<RawStaging>,
    local: Option<RawLocal>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDockerTarget {
    #[serde(default)]
    skip_markers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaging {
    endpoints: BTreeMap<String, Spanned<String>>,
    #[serde(default = "default_staging_markers")]
    skip_markers: Vec<String>,
    #[serde(default = "default_probe_timeout")]
    probe_timeout_s: Secs,
    ca_file: Option<Spanned<String>>,
}

fn default_staging_markers() -> Vec<String> {
    vec!["docker".to_owned(), "destructive".to_owned()]
}
fn default_probe_timeout() -> Secs {
    Secs(5)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocal {
    endpoints: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    processes: Vec<Spanned<ProcessCfg>>,
    #[serde(default)]
    requirements: Vec<PathBuf>,
    #[serde(default = "default_local_markers")]
    skip_markers: Vec<String>,
}

fn default_local_markers() -> Vec<String> {
    vec!["docker".to_owned()]
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFallback {
    #[serde(default)]
    order: Vec<Spanned<TargetKind>>,
}

// ---------------------------------------------------------------------------------------------
// Loading.

/// Walks up from `start` to the first directory holding `harness.toml`.
pub fn find(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(FILE_NAME))
        .find(|candidate| candidate.is_file())
}

/// Loads the file named by `--config`, or the one found from the current directory upwards.
pub fn load(explicit: Option<&Path>) -> Result<Config, Failure> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| Failure::config(format!("cannot read the current directory: {e}")))?;
            find(&cwd).ok_or_else(|| {
                Failure::config(format!(
                    "no {FILE_NAME} in {} or any parent directory",
                    cwd.display()
                ))
                .with_hint("run from the repository, or pass --config PATH")
            })?
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Failure::config(format!("{}: cannot read: {e}", path.display())))?;
    let path = path.canonicalize().unwrap_or(path);
    parse(&path, &text)
}

/// Parses and validates `text` as if read from `path`.
pub fn parse(path: &Path, text: &str) -> Result<Config, Failure> {
    let at = Locator { path, text };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| at.toml_error(&e, None))?;
    let raw: RawFile = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        at.toml_error(e.inner(), Some(&key))
    })?;
    let root = path.parent().map(Path::to_path_buf).unwrap_or_default();
    validate(raw, root, path.to_path_buf(), &at)
}

struct Locator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// For a syntax error, where serde has no key path: the key (or table) written at that line.
    fn key_near(&self, offset: usize) -> Option<String> {
        let start = self.text[..offset.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.text[start..].lines().next()?.trim();
        if let Some(header) = line.strip_prefix('[') {
            return Some(
                header
                    .trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .to_owned(),
            );
        }
        let key = line.split('=').next()?.trim();
        let table = self.text[..start].lines().rev().find_map(|l| {
            l.trim().strip_prefix('[').map(|h| {
                h.trim_matches(|c| c == '[' || c == ']' || c == ' ')
                    .to_owned()
            })
        });
        match (table, key.is_empty()) {
            (_, true) => None,
            (Some(table), false) => Some(format!("{table}.{key}")),
            (None, false) => Some(key.to_owned()),
        }
    }

    fn at(&self, span: std::ops::Range<usize>, key: &str, message: impl fmt::Display) -> Failure {
        let (line, col) = self.line_col(span.start);
        Failure::config(format!(
            "{}:{line}:{col}: key `{key}`: {message}",
            self.path.display()
        ))
    }

    fn toml_error(&self, error: &toml::de::Error, key: Option<&str>) -> Failure {
        let (line, col) = error
            .span()
            .map_or((1, 1), |span| self.line_col(span.start));
        let message = error.message().trim().replace('\n', " ");
        let guessed = error.span().and_then(|span| self.key_near(span.start));
        match key
            .filter(|k| !k.is_empty() && *k != ".")
            .map(str::to_owned)
            .or(guessed)
        {
            Some(key) => Failure::config(format!(
                "{}:{line}:{col}: key `{key}`: {message}",
                self.path.display()
            )),
            None => Failure::config(format!("{}:{line}:{col}: {message}", self.path.display())),
        }
    }
}

fn validate(
    raw: RawFile,
    root: PathBuf,
    path: PathBuf,
    at: &Locator<'_>,
) -> Result<Config, Failure> {
    let services: Vec<String> = raw
        .stack
        .as_ref()
        .map(|s| s.services.get_ref().clone())
        .unwrap_or_default();
    let stack = match raw.stack {
        None => None,
        Some(stack) => Some(validate_stack(at, &root, stack)?),
    };
    let endpoints = checked_endpoints(at, raw.endpoints, "endpoints", &services)?;
    let endpoint_names: Vec<String> = endpoints.keys().cloned().collect();
    let ws_check = match raw.ws_check {
        None => None,
        Some(ws) => Some(validate_ws_check(at, ws, &services, &endpoint_names)?),
    };
    let suites = suite_keys::suites(at, raw.suites)?;
    let staging = match raw.targets.staging {
        None => None,
        Some(staging) => Some(validate_staging(at, &root, staging)?),
    };
    let local = match raw.targets.local {
        None => None,
        Some(local) => Some(validate_local(at, local)?),
    };
    let order = fallback_order(at, raw.fallback.order, &staging, &local)?;
    for requirements in raw
        .python
        .requirements
        .iter()
        .chain(local.iter().flat_map(|l| l.requirements.iter()))
    {
        if !root.join(requirements).is_file() {
            return Err(Failure::config(format!(
                "{}: key `python.requirements`: {} does not exist",
                path.display(),
                root.join(requirements).display()
            )));
        }
    }

    Ok(Config {
        path,
        root,
        project: raw.project,
        preflight: raw.preflight,
        engine: raw.engine,
        images: raw.images,
        stack,
        endpoints,
        ws_check,
        python: raw.python,
        suites,
        targets: TargetsCfg {
            docker_skip_markers: raw.targets.docker.unwrap_or_default().skip_markers,
            staging,
            local,
        },
        fallback: FallbackCfg { order },
        gate: raw.gate,
        history: raw.history,
    })
}

/// `[stack]`: at least one service, a compose file that exists, the speed keys.
fn validate_stack(at: &Locator<'_>, root: &Path, mut stack: RawStack) -> Result<StackCfg, Failure> {
    if stack.services.get_ref().is_empty() {
        return Err(at.at(
            stack.services.span(),
            "stack.services",
            "must name at least one service",
        ));
    }
    let compose_file = root.join(stack.compose_file.get_ref());
    if !compose_file.is_file() {
        return Err(at.at(
            stack.compose_file.span(),
            "stack.compose_file",
            format!("compose file {} does not exist", compose_file.display()),
        ));
    }
    Ok(StackCfg {
        speed: stack_keys::speed(at, &mut stack)?,
        compose_file,
        service_budget_s: stack.service_budget_s,
        services: stack.services.into_inner(),
        build: stack.build,
        build_timeout_s: stack.build_timeout_s,
        env: stack.env,
        isolated_env: stack.isolated_env,
        log_lines: stack.log_lines,
        interrupt_stop_timeout_s: stack.interrupt_stop_timeout_s,
    })
}

/// An `endpoints` table (`[endpoints]`, `[targets.staging.endpoints]`, ...): every template
/// checked under `{key}.{name}`, referring only to `services` and the table's own names.
fn checked_endpoints(
    at: &Locator<'_>,
    raw: BTreeMap<String, Spanned<String>>,
    key: &str,
    services: &[String],
) -> Result<BTreeMap<String, String>, Failure> {
    let names: Vec<String> = raw.keys().cloned().collect();
    let mut endpoints = BTreeMap::new();
    for (name, template) in raw {
        check_template(at, &template, &format!("{key}.{name}"), services, &names)?;
        endpoints.insert(name, template.into_inner());
    }
    Ok(endpoints)
}

/// `[ws_check]`: its URLs are templates, and it expects at least one event.
fn validate_ws_check(
    at: &Locator<'_>,
    ws: RawWsCheck,
    services: &[String],
    endpoint_names: &[String],
) -> Result<WsCheckCfg, Failure> {
    check_template(at, &ws.url, "ws_check.url", services, endpoint_names)?;
    if let Some(token_url) = &ws.token_url {
        check_template(
            at,
            token_url,
            "ws_check.token_url",
            services,
            endpoint_names,
        )?;
    }
    if ws.expect.get_ref().is_empty() {
        return Err(at.at(
            ws.expect.span(),
            "ws_check.expect",
            "must list at least one event",
        ));
    }
    Ok(WsCheckCfg {
        url: ws.url.into_inner(),
        token_url: ws.token_url.map(Spanned::into_inner),
        token_body: ws.token_body,
        token_field: ws.token_field,
        send: ws.send,
        expect: ws.expect.into_inner(),
        event_field: ws.event_field,
        timeout_s: ws.timeout_s,
        connect_timeout_s: ws.connect_timeout_s,
    })
}

/// `[targets.staging]`: its endpoints, and a CA file that holds certificates.
fn validate_staging(
    at: &Locator<'_>,
    root: &Path,
    staging: RawStaging,
) -> Result<StagingCfg, Failure> {
    let endpoints = checked_endpoints(at, staging.endpoints, "targets.staging.endpoints", &[])?;
    let ca_file = match staging.ca_file {
        None => None,
        Some(file) => {
            let path = root.join(file.get_ref());
            crate::tls::read_certificates(&path)
                .map_err(|problem| at.at(file.span(), "targets.staging.ca_file", problem))?;
            Some(path)
        }
    };
    Ok(StagingCfg {
        endpoints,
        skip_markers: staging.skip_markers,
        probe_timeout_s: staging.probe_timeout_s,
        ca_file,
    })
}

/// `[targets.local]`: its endpoints, and processes with a command and a `ready` template over
/// those endpoints.
fn validate_local(at: &Locator<'_>, local: RawLocal) -> Result<LocalCfg, Failure> {
    let endpoints = checked_endpoints(at, local.endpoints, "targets.local.endpoints", &[])?;
    let names: Vec<String> = endpoints.keys().cloned().collect();
    let mut processes = Vec::new();
    for process in local.processes {
        let span = process.span();
        let process = process.into_inner();
        if process.cmd.is_empty() {
            return Err(at.at(
                span,
                "targets.local.processes.cmd",
                format!("process `{}` has an empty cmd", process.name),
            ));
        }
        if let Some(ready) = &process.ready {
            let parsed = Template::parse(ready)
                .map_err(|e| at.at(span.clone(), "targets.local.processes.ready", e))?;
            let key = "targets.local.processes.ready";
            if let Some(problem) = crate::endpoints::engine_host_problem(&parsed, key) {
                return Err(at.at(span, key, problem));
            }
            if let Some(unknown) = parsed.unknown_references(&[], &names).into_iter().next() {
                return Err(at.at(span, "targets.local.processes.ready", unknown));
            }
        }
        processes.push(process);
    }
    Ok(LocalCfg {
        endpoints,
        processes,
        requirements: local.requirements,
        skip_markers: local.skip_markers,
    })
}

/// `[fallback] order`: only targets that are configured.
fn fallback_order(
    at: &Locator<'_>,
    raw: Vec<Spanned<TargetKind>>,
    staging: &Option<StagingCfg>,
    local: &Option<LocalCfg>,
) -> Result<Vec<TargetKind>, Failure> {
    let mut order = Vec::new();
    for target in raw {
        let configured = match target.get_ref() {
            TargetKind::Staging => staging.is_some(),
            TargetKind::Local => local.is_some(),
            TargetKind::Docker => true,
        };
        if !configured {
            return Err(at.at(
                target.span(),
                "fallback.order",
                format!(
                    "`{}` is not configured: add a [targets.{}] table",
                    target.get_ref(),
                    target.get_ref()
                ),
            ));
        }
        order.push(target.into_inner());
    }
    Ok(order)
}

fn check_template(
    at: &Locator<'_>,
    template: &Spanned<String>,
    key: &str,
    services: &[String],
    endpoints: &[String],
) -> Result<(), Failure> {
    crate::endpoints::check(template.get_ref(), key, services, endpoints)
        .map_err(|problem| at.at(template.span(), key, problem))
}

impl Config {
    /// Resolves a path from the file against the root.
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        self.root.join(path)
    }

    /// `target/xtask` under the root: state, logs, reports.
    pub fn work_dir(&self) -> PathBuf {
        self.root.join("target").join("xtask")
    }

    /// The trust `harness.toml` asks for: the platform's roots plus `targets.staging.ca_file`.
    pub fn tls(&self) -> crate::tls::Tls {
        let ca_file = self
            .targets
            .staging
            .as_ref()
            .and_then(|staging| staging.ca_file.clone());
        crate::tls::Tls::with_ca_files(ca_file.into_iter().collect())
    }
}
