//! The command line: every command and flag, parsed once at the edge. Each command's struct is
//! the command: its module implements `run` on it.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Restores the Docker engine, brings the stack up, proves it, and gates merges on the suites",
    after_help = "Exit codes: 0 passed, 1 a check or test failed, 2 usage or configuration error, \
                  3 environment unavailable, 130 interrupted."
)]
pub struct Xtask {
    /// harness.toml to use (default: found from the current directory upwards)
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pre-flight checks only: memory, disk, CPU, ports, other runtimes, engine socket, compose, Python
    Doctor(Doctor),
    /// Restore the engine, provision images, build and start the stack, wait until every service is healthy
    DockerUp(DockerUp),
    /// Report the engine and every service of the recorded run
    Health(Health),
    /// Prove the WebSocket endpoint: token, connect, the expected events; --users N for many at once
    WsCheck(WsCheck),
    /// Repeat `health` and a one-user `ws-check` on a schedule; uptime, outages, latency percentiles
    Monitor(Monitor),
    /// The gate: pre-flight, engine, images, stack, WebSocket, suites, one JUnit report, teardown
    MissionCritical(MissionCritical),
    /// Roll back: remove this repository's stack (and leftovers with --all)
    DockerDown(DockerDown),
    /// Merge JUnit files (for example of shards) into one
    JunitMerge(JunitMerge),
    /// The run history: the last runs, pass rates, flaky tests, trends, regressions
    History(History),
    /// Install the pre-push hook that runs the gate into this clone
    InstallHook(InstallHook),
    /// The project's own checks: install what is missing, start the engine, fmt, clippy, tests, the gate
    Ci(Ci),
    /// Write a harness.toml guessed from this repository's compose file and test directories
    Init(Init),
}

impl Command {
    /// Whether the command was asked for `--json` (its errors are then JSON too).
    pub fn json(&self) -> bool {
        match self {
            Command::Doctor(c) => c.json,
            Command::DockerUp(c) => c.json,
            Command::Health(c) => c.json,
            Command::WsCheck(c) => c.json,
            Command::Monitor(c) => c.json,
            Command::MissionCritical(c) => c.json,
            Command::DockerDown(c) => c.json,
            Command::JunitMerge(c) => c.json,
            Command::History(c) => c.json,
            Command::InstallHook(_) | Command::Ci(_) | Command::Init(_) => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct Doctor {
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DockerUp {
    /// Only find, start and prove the engine; do not touch images or the stack
    #[arg(long)]
    pub engine_only: bool,
    /// Install the engine packages (docker.io, docker-compose) when missing (Debian or Ubuntu, as root)
    #[arg(long)]
    pub install: bool,
    /// Give this run its own compose project name and ephemeral host ports
    #[arg(long)]
    pub isolated: bool,
    /// Skip the pre-flight checks
    #[arg(long)]
    pub skip_preflight: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Health {
    /// Act on this run (its id, as `docker-up` and `health` print it) instead of the newest kept stack
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WsCheck {
    /// WebSocket URL (default: [ws_check] url resolved against the recorded run)
    #[arg(long)]
    pub url: Option<String>,
    /// URL a token is requested from (default: [ws_check] token_url)
    #[arg(long)]
    pub token_url: Option<String>,
    /// Use this token instead of requesting one (or set XTASK_WS_TOKEN)
    #[arg(long, env = "XTASK_WS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Users connected at once, each with its own token
    #[arg(long, default_value_t = 1)]
    pub users: usize,
    /// Messages each user sends
    #[arg(long, default_value_t = 1)]
    pub messages: usize,
    /// Act on this run (its id, as `docker-up` and `health` print it) instead of the newest kept stack
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct Monitor {
    /// Time between rounds, e.g. 30s, 1m
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub every: std::time::Duration,
    /// How long to watch, e.g. 20s, 24h
    #[arg(long = "for", default_value = "24h", value_parser = parse_duration)]
    pub period: std::time::Duration,
    /// Act on this run (its id, as `docker-up` and `health` print it) instead of the newest kept stack
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// Print the summary as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetChoice {
    /// docker when an engine can be had, else the first usable target of [fallback] order
    Auto,
    Docker,
    Staging,
    Local,
}

#[derive(Debug, Args)]
pub struct MissionCritical {
    /// Where the suites run
    #[arg(long, value_enum, default_value_t = TargetChoice::Auto)]
    pub target: TargetChoice,
    /// Leave the stack (and local processes) up afterwards
    #[arg(long)]
    pub keep: bool,
    /// Leave the stack up only when the gate fails
    #[arg(long)]
    pub keep_on_failure: bool,
    /// Where the JUnit report goes
    #[arg(long, value_name = "PATH", default_value = "target/xtask/junit.xml")]
    pub junit: PathBuf,
    /// Run only shard K of N of the suites' cases, e.g. 1/3
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Install the engine packages when missing (as docker-up --install)
    #[arg(long)]
    pub install: bool,
    /// Run only these suites (repeatable)
    #[arg(long = "suite", value_name = "NAME")]
    pub suites: Vec<String>,
    /// Spread the tests of `parallel` suites over N workers on the one stack (1: one test at a time; default: [gate] jobs, else 4)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub jobs: Option<u32>,
    /// Run a failed test again up to N more times (every suite; default: each suite's `retries`); one that then passes is a pass, reported FLAKY
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: Option<u32>,
    /// Take a warm stack kept by an earlier --reuse run when its key matches; keep this run's stack warm when it passes
    #[arg(long)]
    pub reuse: bool,
    /// Per-test durations for --shard and the --jobs plan (a JUnit report such as a CI artifact, a durations.json, or a history.db; default: the last unsharded run's, else the history's)
    #[arg(long, value_name = "FILE")]
    pub durations: Option<PathBuf>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Passed to the selected suites' runner after their own args (`-- -k auth_tokens`, `-- -x`, a nextest filter)
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct DockerDown {
    /// Remove every kept stack of this checkout, leftovers of its dead runs (found by label) and its image tags no container uses
    #[arg(long)]
    pub all: bool,
    /// Remove this project's per-checkout image tags of checkouts that no longer exist
    #[arg(long)]
    pub prune_images: bool,
    /// Remove this run (its id, as `docker-up` and `health` print it) instead of the newest kept stack
    #[arg(long, value_name = "ID")]
    pub run: Option<String>,
    /// With --all on a shared engine: also remove other hosts' runs of this checkout path that began at least --older-than ago (their owners cannot be checked from here)
    #[arg(long, requires_all = ["all", "older_than"])]
    pub any_host: bool,
    /// With --any-host: how old another host's run must be to be removed, e.g. 2h, 1d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "any_host")]
    pub older_than: Option<std::time::Duration>,

    /// Stop the engine too, but only if the harness started it
    #[arg(long)]
    pub stop_engine: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JunitMerge {
    /// The merged file
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// JUnit files to merge
    #[arg(required = true, value_name = "FILE")]
    pub inputs: Vec<PathBuf>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct History {
    /// How many of the newest runs to look at
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub last: u32,
    /// Only tests whose `suite::test` contains this (`*` matches anything)
    #[arg(long, value_name = "PATTERN")]
    pub test: Option<String>,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page of the trends
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InstallHook {
    /// Replace an existing pre-push hook that the harness did not write
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct Init {
    /// Overwrite an existing harness.toml
    #[arg(long)]
    pub force: bool,
    /// Print the harness.toml (and the --xtask files) on stdout; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Add a [ws_check] of this WebSocket URL template, e.g. ws://{engine_host}:{port:backend:8000}/ws
    #[arg(long, value_name = "URL_TEMPLATE")]
    pub ws: Option<String>,
    /// Also scaffold a `cargo xtask` calling stackgate (an existing harness.toml is then kept)
    #[arg(long)]
    pub xtask: bool,
    /// With --xtask: depend on the stackgate crate in DIR instead of the crates.io version
    #[arg(long, value_name = "DIR", requires = "xtask")]
    pub crate_path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct Ci {
    /// Do not install missing packages
    #[arg(long)]
    pub no_install: bool,
    /// Skip running the gate against the reference stack
    #[arg(long)]
    pub no_gate: bool,
    /// Only the platform checks: clippy for Windows and macOS, the library's tests under Wine
    #[arg(long)]
    pub platforms_only: bool,
}

/// Parses `500ms`, `30s`, `5m`, `24h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30s, 5m or 24h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    if seconds <= 0.0 {
        return Err(format!("`{text}` must be greater than zero"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    let (index, count) = text
        .split_once('/')
        .ok_or_else(|| format!("`{text}` must read K/N, e.g. 1/3"))?;
    let index: u32 = index
        .parse()
        .map_err(|_| format!("`{index}` is not a number"))?;
    let count: u32 = count
        .parse()
        .map_err(|_| format!("`{count}` is not a number"))?;
    if count == 0 || index == 0 || index > count {
        return Err(format!("shard `{text}`: need 1 <= K <= N"));
    }
    Ok(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("24h").unwrap().as_secs(), 86400);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn shards() {
        assert_eq!(parse_shard("2/3").unwrap(), Shard { index: 2, count: 3 });
        assert!(parse_shard("4/3").is_err());
        assert!(parse_shard("0/3").is_err());
        assert!(parse_shard("x").is_err());
    }

    #[test]
    fn any_host_needs_all_and_an_age() {
        let parse = |args: &[&str]| {
            Xtask::try_parse_from(["cargo xtask", "docker-down"].iter().chain(args))
        };
        assert!(parse(&["--all", "--any-host", "--older-than", "2h"]).is_ok());
        assert!(parse(&["--all", "--any-host"]).is_err());
        assert!(parse(&["--any-host", "--older-than", "2h"]).is_err());
        assert!(parse(&["--all", "--older-than", "2h"]).is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Xtask::command().debug_assert();
    }
}
