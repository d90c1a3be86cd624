//! docker compose (v2) or docker-compose (v1): detection, the commands we run, parsing what they print.
//!
//! Every compose call is built here as an argv (never a shell string), run through xshell's `Cmd`
//! with the stack's environment, in its own process group, under a deadline. Waiting for health
//! and reading container state is not here: that is [crate::stack], through the engine API.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use xshell::{cmd, Shell};

use crate::error::Failure;

/// Which compose program runs the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum Flavour {
    /// `docker compose`: the v2 CLI plugin.
    #[serde(rename = "docker compose")]
    Plugin,
    /// `docker-compose`: the standalone program (v1, or a v2 binary installed under that name).
    #[serde(rename = "docker-compose")]
    Standalone,
}

impl Flavour {
    /// How a person types it.
    pub fn command(self) -> &'static str {
        match self {
            Flavour::Plugin => "docker compose",
            Flavour::Standalone => "docker-compose",
        }
    }

    pub fn from_command(text: &str) -> Option<Flavour> {
        match text {
            "docker compose" => Some(Flavour::Plugin),
            "docker-compose" => Some(Flavour::Standalone),
            _ => None,
        }
    }
}

/// The compose program that was found, and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Compose {
    pub flavour: Flavour,
    /// `2.24.5`, `1.29.2`.
    pub version: String,
}

impl std::fmt::Display for Compose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.flavour.command(), self.version)
    }
}

/// Deadline for the small calls (`version`, `config`, `ps`, `logs`).
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(60);

/// The argv of the version probe, program first.
pub fn version_argv(flavour: Flavour) -> Vec<String> {
    let mut argv = program(flavour);
    argv.push("version".to_owned());
    argv
}

fn program(flavour: Flavour) -> Vec<String> {
    match flavour {
        Flavour::Plugin => vec!["docker".to_owned(), "compose".to_owned()],
        Flavour::Standalone => vec!["docker-compose".to_owned()],
    }
}

/// The version number in what `docker compose version` or `docker-compose version` prints:
/// `Docker Compose version v2.24.5`, `docker-compose version 1.29.2, build 5becea4c`.
pub fn parse_version(output: &str) -> Option<String> {
    let first = output.lines().find(|line| !line.trim().is_empty())?;
    let lower = first.to_ascii_lowercase();
    let after = &first[lower.find("version")? + "version".len()..];
    let token = after
        .split(|c: char| c.is_whitespace() || c == ',')
        .find(|t| !t.is_empty())?;
    let number = token.strip_prefix('v').unwrap_or(token);
    number
        .chars()
        .next()
        .filter(char::is_ascii_digit)
        .map(|_| number.to_owned())
}

/// Finds the compose program: `docker compose` (v2) when `docker compose version` works, else
/// `docker-compose`. Both probes run at once, so that the fallback costs no extra time.
pub async fn detect() -> anyhow::Result<Compose> {
    let probe = |flavour: Flavour| async move {
        let argv = version_argv(flavour);
        // Built (and the shell dropped) before the wait, so the future can move between threads.
        let command = {
            let sh = Shell::new()?;
            let (program, args) = (&argv[0], &argv[1..]);
            Command::from(cmd!(sh, "{program} {args...}"))
        };
        let output = run(command, Duration::from_secs(20)).await?;
        if !output.success() {
            anyhow::bail!("`{}` failed: {}", argv.join(" "), output.stderr_tail(3));
        }
        parse_version(&output.stdout)
            .map(|version| Compose { flavour, version })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` printed no version: {}",
                    argv.join(" "),
                    output.stdout.trim()
                )
            })
    };
    let (plugin, standalone) = tokio::join!(probe(Flavour::Plugin), probe(Flavour::Standalone));
    match (plugin, standalone) {
        (Ok(compose), _) | (Err(_), Ok(compose)) => Ok(compose),
        (Err(plugin), Err(standalone)) => Err(Failure::unavailable(
            format!("no compose program works: {plugin:#}; {standalone:#}"),
            Some(
                "install the docker compose plugin (v2) or docker-compose (Debian: apt-get install docker-compose)"
                    .to_owned(),
            ),
        )
        .into()),
    }
}

// ---------------------------------------------------------------------------------------------
// A cache of what compose said, so that a warm `docker-up` starts no compose process before
// `up` itself (each costs a Python start with v1). Keyed by what decides the answer: the
// programs' paths, sizes and modification times; the compose file's bytes, its `.env` and the
// environment of the call. A stale or unreadable cache is ignored.

/// `target/xtask/compose-cache.json`.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
pub struct Cache {
    #[serde(default)]
    detected: Option<(String, Compose)>,
    #[serde(default)]
    names: BTreeMap<String, (Vec<String>, Vec<String>)>,
}

impl Cache {
    fn path(work_dir: &std::path::Path) -> PathBuf {
        work_dir.join("compose-cache.json")
    }

    pub fn load(work_dir: &std::path::Path) -> Cache {
        std::fs::read_to_string(Cache::path(work_dir))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Best effort: a cache that cannot be written only costs time next run.
    pub fn save(&self, work_dir: &std::path::Path) {
        // Concurrent runs in one process share the temporary file of the atomic write.
        static ONE_WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_writer = ONE_WRITER.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(text) = serde_json::to_string_pretty(self) {
            let _ = crate::state::write_atomic(&Cache::path(work_dir), text.as_bytes());
        }
    }
}

/// Identity of the installed compose programs: the `docker` and `docker-compose` on PATH and
/// the compose CLI plugins, each by path, size and modification time.
pub fn programs_key() -> String {
    let mut files: Vec<PathBuf> = ["docker", "docker-compose"]
        .iter()
        .filter_map(|p| which::which(p).ok())
        .collect();
    let mut plugin_dirs: Vec<PathBuf> = Vec::new();
    if let Some(config) = std::env::var_os("DOCKER_CONFIG") {
        plugin_dirs.push(PathBuf::from(config).join("cli-plugins"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        plugin_dirs.push(PathBuf::from(home).join(".docker/cli-plugins"));
    }
    for dir in [
        "/usr/local/lib/docker/cli-plugins",
        "/usr/local/libexec/docker/cli-plugins",
        "/usr/lib/docker/cli-plugins",
        "/usr/libexec/docker/cli-plugins",
    ] {
        plugin_dirs.push(PathBuf::from(dir));
    }
    files.extend(plugin_dirs.into_iter().map(|d| d.join("docker-compose")));
    files
        .iter()
        .map(|file| match std::fs::metadata(file) {
            Ok(meta) => format!(
                "{}:{}:{:?}",
                file.display(),
                meta.len(),
                meta.modified().ok()
            ),
            Err(_) => format!("{}:-", file.display()),
        })
        .collect::<Vec<_>>()
        .join("|")
}

/// [`detect`], remembered in `work_dir` while the installed programs stay the same.
pub async fn detect_cached(work_dir: &std::path::Path) -> anyhow::Result<Compose> {
    let key = programs_key();
    let mut cache = Cache::load(work_dir);
    if let Some((cached_key, compose)) = &cache.detected {
        if *cached_key == key {
            return Ok(compose.clone());
        }
    }
    let compose = detect().await?;
    cache.detected = Some((key, compose.clone()));
    cache.save(work_dir);
    Ok(compose)
}

/// A compose project: the name, the files, the environment, and the compose program.
#[derive(Debug, Clone)]
pub struct Project {
    pub compose: Compose,
    /// `-p`.
    pub name: String,
    /// `-f`, in order: the stack's file, then overrides.
    pub files: Vec<PathBuf>,
    /// Environment of every call (`[stack] env`, plus `isolated_env` for `--isolated`).
    pub env: BTreeMap<String, String>,
    /// Where compose runs (the harness.toml directory).
    pub dir: PathBuf,
}

impl Project {
    /// Program and global options: `docker-compose -p NAME -f FILE [-f OVERRIDE]`.
    fn base(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = program(self.compose.flavour)
            .into_iter()
            .map(OsString::from)
            .collect();
        argv.push("-p".into());
        argv.push(self.name.clone().into());
        for file in &self.files {
            argv.push("-f".into());
            argv.push(file.clone().into());
        }
        argv
    }

    fn with(&self, rest: &[&str]) -> Vec<OsString> {
        let mut argv = self.base();
        argv.extend(rest.iter().map(OsString::from));
        argv
    }

    /// `up -d [--build]`.
    pub fn up_argv(&self, build: bool) -> Vec<OsString> {
        if build {
            self.with(&["up", "-d", "--build"])
        } else {
            self.with(&["up", "-d"])
        }
    }

    /// `config --services`: one service name a line.
    pub fn services_argv(&self) -> Vec<OsString> {
        self.with(&["config", "--services"])
    }

    /// `config --volumes`: one volume name a line.
    pub fn volumes_argv(&self) -> Vec<OsString> {
        self.with(&["config", "--volumes"])
    }

    /// `down -v --remove-orphans`.
    pub fn down_argv(&self) -> Vec<OsString> {
        self.with(&["down", "-v", "--remove-orphans"])
    }

    /// `logs --no-color --tail N SERVICE`.
    pub fn logs_argv(&self, service: &str, lines: usize) -> Vec<OsString> {
        self.with(&["logs", "--no-color", "--tail", &lines.to_string(), service])
    }

    /// `ps -q`: one container id a line.
    pub fn ps_argv(&self) -> Vec<OsString> {
        self.with(&["ps", "-q"])
    }

    /// The argv as a command (built with xshell's `cmd!`, no shell string), with this project's
    /// environment and directory.
    pub fn command(&self, argv: &[OsString]) -> anyhow::Result<Command> {
        let sh = Shell::new()?;
        sh.change_dir(&self.dir);
        let (program, args) = argv
            .split_first()
            .context("a compose call needs a program")?;
        Ok(Command::from(
            cmd!(sh, "{program} {args...}").envs(&self.env),
        ))
    }

    /// Runs one call to completion (or its deadline); a non-zero exit is an error naming the command.
    pub async fn run_checked(
        &self,
        argv: &[OsString],
        timeout: Duration,
    ) -> anyhow::Result<Output> {
        let output = run(self.command(argv)?, timeout).await?;
        if output.success() {
            Ok(output)
        } else {
            Err(output.failure())
        }
    }

    /// Service names (`config --services`) and volume names (`config --volumes`), read at once.
    pub async fn services_and_volumes(&self) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let (services_argv, volumes_argv) = (self.services_argv(), self.volumes_argv());
        let (services, volumes) = tokio::join!(
            self.run_checked(&services_argv, QUICK_TIMEOUT),
            self.run_checked(&volumes_argv, QUICK_TIMEOUT)
        );
        Ok((names(&services?.stdout), names(&volumes?.stdout)))
    }

    /// What decides the service and volume names: the program, the files' bytes (and the `.env`
    /// beside the first), the call's environment and compose's own variables.
    pub fn names_key(&self) -> String {
        let mut hash: u64 = 0xcbf29ce484222325;
        let mut feed = |bytes: &[u8]| {
            for byte in bytes.iter().chain(b"\0") {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x100000001b3);
            }
        };
        feed(self.compose.to_string().as_bytes());
        for file in &self.files {
            feed(file.to_string_lossy().as_bytes());
            feed(&std::fs::read(file).unwrap_or_default());
        }
        if let Some(dir) = self.files.first().and_then(|f| f.parent()) {
            feed(&std::fs::read(dir.join(".env")).unwrap_or_default());
        }
        feed(&std::fs::read(self.dir.join(".env")).unwrap_or_default());
        for (key, value) in &self.env {
            feed(key.as_bytes());
            feed(value.as_bytes());
        }
        let mut compose_vars: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("COMPOSE_"))
            .collect();
        compose_vars.sort();
        for (key, value) in compose_vars {
            feed(key.as_bytes());
            feed(value.as_bytes());
        }
        format!("{hash:016x}")
    }

    /// [`Project::services_and_volumes`], remembered in `work_dir` while [`Project::names_key`]
    /// stays the same.
    pub async fn services_and_volumes_cached(
        &self,
        work_dir: &std::path::Path,
    ) -> anyhow::Result<(Vec<String>, Vec<String>)> {
        let key = self.names_key();
        if let Some(found) = Cache::load(work_dir).names.get(&key) {
            return Ok(found.clone());
        }
        let found = self.services_and_volumes().await?;
        // Re-read: another run may have written its own entries meanwhile.
        let mut cache = Cache::load(work_dir);
        cache.names.insert(key, found.clone());
        if cache.names.len() > 32 {
            let oldest = cache.names.keys().next().cloned();
            if let Some(oldest) = oldest.filter(|k| *k != self.names_key()) {
                cache.names.remove(&oldest);
            }
        }
        cache.save(work_dir);
        Ok(found)
    }
}

/// A command ready to run, and how it reads to a person.
pub struct Command {
    pub display: String,
    pub command: std::process::Command,
}

impl From<xshell::Cmd<'_>> for Command {
    fn from(cmd: xshell::Cmd<'_>) -> Command {
        Command {
            display: cmd.to_string(),
            command: cmd.into(),
        }
    }
}

/// One name a line, blank lines dropped.
pub fn names(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a finished call printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// The command as a person would type it.
    pub command: String,
    pub status: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// The last `n` lines of stderr, joined.
    pub fn stderr_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.stderr.trim_end().lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The error for a failed call: the command, its status, and what it printed last.
    pub fn failure(&self) -> anyhow::Error {
        let status = self
            .status
            .map_or("was killed by a signal".to_owned(), |code| {
                format!("exited with status {code}")
            });
        anyhow::anyhow!(
            "`{}` {status}\n{}",
            self.command,
            self.stderr_tail(20).trim_end()
        )
    }
}

/// A running compose call, killed with its whole process group when dropped or timed out.
pub struct Running {
    pub command: String,
    child: Option<tokio::process::Child>,
    pgid: Option<i32>,
    started: Instant,
}

impl Running {
    /// Starts `cmd` in its own process group with piped output.
    pub fn spawn(cmd: Command) -> anyhow::Result<Running> {
        let Command {
            display: command,
            command: mut std_cmd,
        } = cmd;
        std_cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            std_cmd.process_group(0);
        }
        let mut tokio_cmd = tokio::process::Command::from(std_cmd);
        tokio_cmd.kill_on_drop(true);
        let child = tokio_cmd
            .spawn()
            .with_context(|| format!("cannot run `{command}`"))?;
        let pgid = child.id().map(|pid| pid as i32);
        Ok(Running {
            command,
            child: Some(child),
            pgid,
            started: Instant::now(),
        })
    }

    /// Waits for the call to finish, at most `timeout`; on timeout the process group is killed
    /// and the error names the command and the deadline.
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<Output> {
        let child = self.child.take().expect("finish is called once");
        match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(result) => {
                // The leader exited; helpers it left in its group must not outlive it.
                self.kill_group();
                self.pgid = None;
                let output =
                    result.with_context(|| format!("cannot wait for `{}`", self.command))?;
                Ok(Output {
                    command: self.command.clone(),
                    status: output.status.code(),
                    stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
                    elapsed: self.started.elapsed(),
                })
            }
            Err(_) => {
                self.kill_group();
                self.pgid = None;
                Err(Failure::check(format!(
                    "`{}` did not finish within {}s and was stopped",
                    self.command,
                    timeout.as_secs()
                ))
                .into())
            }
        }
    }

    fn kill_group(&self) {
        #[cfg(unix)]
        if let Some(pgid) = self.pgid {
            // SAFETY: signals only the process group this call created (its leader's pid).
            unsafe {
                libc::killpg(pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill_group();
        }
    }
}

/// Runs a command to completion within `timeout`, capturing its output.
///
/// The command is converted before the future starts, so that the future does not hold an
/// `xshell::Cmd` (which borrows a `Shell`, which is not `Sync`) and stays `Send`.
pub fn run(
    cmd: impl Into<Command>,
    timeout: Duration,
) -> impl std::future::Future<Output = anyhow::Result<Output>> + Send {
    let command = cmd.into();
    async move { Running::spawn(command)?.finish(timeout).await }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(flavour: Flavour) -> Project {
        Project {
            compose: Compose {
                flavour,
                version: "1.29.2".into(),
            },
            name: "chat-1a2b".into(),
            files: vec![
                PathBuf::from("/repo/services/compose.yaml"),
                PathBuf::from("/repo/target/xtask/runs/x/labels.json"),
            ],
            env: BTreeMap::new(),
            dir: PathBuf::from("/repo"),
        }
    }

    fn strings(argv: Vec<OsString>) -> Vec<String> {
        argv.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn parses_both_version_outputs() {
        assert_eq!(
            parse_version("Docker Compose version v2.24.5\n").as_deref(),
            Some("2.24.5")
        );
        assert_eq!(
            parse_version("Docker Compose version 2.29.1-desktop.1\n").as_deref(),
            Some("2.29.1-desktop.1")
        );
        let v1 = "docker-compose version 1.29.2, build unknown\ndocker-py version: 5.0.3\n\
                  CPython version: 3.11.2\nOpenSSL version: OpenSSL 3.0.19 27 Jan 2026\n";
        assert_eq!(parse_version(v1).as_deref(), Some("1.29.2"));
        assert_eq!(
            parse_version("docker-compose version 1.29.2, build 5becea4c").as_deref(),
            Some("1.29.2")
        );
        assert_eq!(
            parse_version("docker: 'compose' is not a docker command."),
            None
        );
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn version_probes() {
        assert_eq!(
            version_argv(Flavour::Plugin),
            ["docker", "compose", "version"]
        );
        assert_eq!(
            version_argv(Flavour::Standalone),
            ["docker-compose", "version"]
        );
    }

    #[test]
    fn builds_every_call_for_v1() {
        let p = project(Flavour::Standalone);
        let base = [
            "docker-compose",
            "-p",
            "chat-1a2b",
            "-f",
            "/repo/services/compose.yaml",
            "-f",
            "/repo/target/xtask/runs/x/labels.json",
        ];
        let with = |rest: &[&str]| -> Vec<String> {
            base.iter().chain(rest).map(|s| s.to_string()).collect()
        };
        assert_eq!(strings(p.up_argv(true)), with(&["up", "-d", "--build"]));
        assert_eq!(strings(p.up_argv(false)), with(&["up", "-d"]));
        assert_eq!(strings(p.services_argv()), with(&["config", "--services"]));
        assert_eq!(strings(p.volumes_argv()), with(&["config", "--volumes"]));
        assert_eq!(
            strings(p.down_argv()),
            with(&["down", "-v", "--remove-orphans"])
        );
        assert_eq!(
            strings(p.logs_argv("db", 50)),
            with(&["logs", "--no-color", "--tail", "50", "db"])
        );
        assert_eq!(strings(p.ps_argv()), with(&["ps", "-q"]));
    }

    #[test]
    fn builds_every_call_for_v2() {
        let p = project(Flavour::Plugin);
        let up = strings(p.up_argv(true));
        assert_eq!(&up[..4], ["docker", "compose", "-p", "chat-1a2b"]);
        assert_eq!(&up[up.len() - 3..], ["up", "-d", "--build"]);
        assert_eq!(
            strings(p.down_argv())[..2],
            ["docker".to_owned(), "compose".to_owned()]
        );
    }

    #[test]
    fn cmd_carries_env_and_renders_without_a_shell() {
        let mut p = project(Flavour::Standalone);
        p.env.insert("BACKEND_PORT".into(), String::new());
        p.files.truncate(1);
        let cmd = p.command(&p.logs_argv("my service", 5)).unwrap();
        assert_eq!(
            cmd.display,
            "docker-compose -p chat-1a2b -f /repo/services/compose.yaml logs --no-color --tail 5 \"my service\""
        );
        let std_cmd = cmd.command;
        let envs: Vec<_> = std_cmd.get_envs().collect();
        assert!(envs.contains(&(
            std::ffi::OsStr::new("BACKEND_PORT"),
            Some(std::ffi::OsStr::new(""))
        )));
        assert_eq!(
            std_cmd.get_current_dir(),
            Some(std::path::Path::new("/repo"))
        );
    }

    #[test]
    fn names_key_follows_file_content_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services:\n  a:\n    image: x\n").unwrap();
        let mut p = project(Flavour::Standalone);
        p.files = vec![file.clone()];
        p.dir = dir.path().to_path_buf();
        let first = p.names_key();
        assert_eq!(first, p.names_key());
        p.env.insert("PORT".into(), String::new());
        let with_env = p.names_key();
        assert_ne!(first, with_env);
        std::fs::write(&file, "services:\n  b:\n    image: x\n").unwrap();
        assert_ne!(with_env, p.names_key());
        std::fs::write(dir.path().join(".env"), "X=1\n").unwrap();
        let with_dotenv = p.names_key();
        std::fs::write(dir.path().join(".env"), "X=2\n").unwrap();
        assert_ne!(with_dotenv, p.names_key());
    }

    #[tokio::test]
    async fn cached_names_are_served_without_running_compose() {
        let work = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services: {}\n").unwrap();
        // For this file compose would list no services: only the cache says `web`.
        let mut p = project(Flavour::Standalone);
        p.files = vec![file];
        p.dir = dir.path().to_path_buf();
        let mut cache = Cache::load(work.path());
        cache
            .names
            .insert(p.names_key(), (vec!["web".into()], vec!["data".into()]));
        cache.save(work.path());
        let (services, volumes) = p.services_and_volumes_cached(work.path()).await.unwrap();
        assert_eq!(services, ["web"]);
        assert_eq!(volumes, ["data"]);
    }

    #[test]
    fn names_skip_blank_lines() {
        assert_eq!(names("web\n\n db \n"), ["web", "db"]);
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_is_killed_and_named() {
        let sh = Shell::new().unwrap();
        let error = run(cmd!(sh, "sleep 30"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("`sleep 30` did not finish"),
            "{error}"
        );
        assert_eq!(
            crate::error::exit_kind_of(&error),
            crate::error::ExitKind::Failed
        );
    }

    #[tokio::test]
    async fn a_failed_call_names_the_command_and_stderr() {
        let sh = Shell::new().unwrap();
        let output = run(
            cmd!(sh, "sh -c 'echo boom >&2; exit 3'"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(output.status, Some(3));
        let error = output.failure().to_string();
        assert!(error.contains("exited with status 3"), "{error}");
        assert!(error.contains("boom"), "{error}");
    }
}
