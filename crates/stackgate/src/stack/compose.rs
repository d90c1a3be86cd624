//! docker compose (v2) or docker-compose (v1): which one there is (and its cache), and the argv
//! of every call the stack makes on a compose project. Calls run through [crate::process] (own
//! process group, a deadline, output tails); a failed call's error names the command and carries
//! the last 50 lines of its stderr.
//!
//! Not here: what `config` prints ([super::model]), waiting for health and reading container
//! state ([super::up], through the engine API).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::Failure;
use crate::process::{Cmd, Finished};

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

impl Compose {
    /// docker-compose 1.x (Python), which prints its config as YAML only. A v2 binary may be
    /// installed as `docker-compose` too.
    pub fn is_v1(&self) -> bool {
        self.version.starts_with("1.")
    }
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
        let finished = run_checked(Cmd::from_argv(&argv)?, Duration::from_secs(20)).await?;
        parse_version(&finished.stdout)
            .map(|version| Compose { flavour, version })
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "`{}` printed no version: {}",
                    argv.join(" "),
                    finished.stdout.trim()
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

/// Lines of a failed call's stderr that its error (and the check's output) carry.
pub const STDERR_LINES: usize = 50;

/// Runs one call to its end within `deadline`; a non-zero status or the deadline is an error.
pub async fn run_checked(cmd: Cmd, deadline: Duration) -> anyhow::Result<Finished> {
    let finished = cmd.output(deadline).await?;
    if finished.success() {
        Ok(finished)
    } else {
        Err(failure(&finished, deadline))
    }
}

/// How a failed call ended, in one line: `` `CMD` exit code 1 `` or
/// `` `CMD` did not finish within 60s and was stopped ``.
pub fn describe_failure(finished: &Finished, deadline: Duration) -> String {
    if finished.timed_out {
        format!(
            "`{}` did not finish within {}s and was stopped",
            finished.command,
            deadline.as_secs()
        )
    } else {
        format!("`{}` {}", finished.command, finished.describe())
    }
}

/// The error for a failed call: [`describe_failure`], then the last [`STDERR_LINES`] lines of
/// its stderr. A call stopped at its deadline is a failed check (exit 1).
pub fn failure(finished: &Finished, deadline: Duration) -> anyhow::Error {
    let mut message = describe_failure(finished, deadline);
    let tail = finished.stderr_tail(STDERR_LINES);
    if !tail.is_empty() {
        message.push('\n');
        message.push_str(&tail);
    }
    if finished.timed_out {
        Failure::check(message).into()
    } else {
        anyhow::anyhow!(message)
    }
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

    /// `up --no-start [--build]`: networks, volumes and containers created, none started (the
    /// harness starts them in dependency order, [super::order]).
    pub fn create_argv(&self, build: bool) -> Vec<OsString> {
        if build {
            self.with(&["up", "--no-start", "--build"])
        } else {
            self.with(&["up", "--no-start"])
        }
    }

    /// The resolved model: `config --format json` (v2), `config` (v1 prints YAML only).
    pub fn config_argv(&self) -> Vec<OsString> {
        if self.compose.is_v1() {
            self.with(&["config"])
        } else {
            self.with(&["config", "--format", "json"])
        }
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

    /// The argv as a command (arguments stay arguments, no shell), with this project's
    /// environment and directory.
    pub fn command(&self, argv: &[OsString]) -> anyhow::Result<Cmd> {
        Ok(Cmd::from_argv(argv)?.envs(&self.env).current_dir(&self.dir))
    }

    /// Runs one call to its end (or its deadline); a failure is an error naming the command,
    /// with the last lines of its stderr.
    pub async fn run_checked(
        &self,
        argv: &[OsString],
        deadline: Duration,
    ) -> anyhow::Result<Finished> {
        run_checked(self.command(argv)?, deadline).await
    }

    /// What decides the model compose reads from the files: the program, the files' bytes (and
    /// the `.env` beside the first), the call's environment and compose's own variables.
    pub fn model_key(&self) -> String {
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
        assert_eq!(
            strings(p.create_argv(true)),
            with(&["up", "--no-start", "--build"])
        );
        assert_eq!(strings(p.config_argv()), with(&["config"]));
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
        let mut p = project(Flavour::Plugin);
        p.compose.version = "2.24.5".into();
        let up = strings(p.up_argv(true));
        assert_eq!(&up[..4], ["docker", "compose", "-p", "chat-1a2b"]);
        assert_eq!(&up[up.len() - 3..], ["up", "-d", "--build"]);
        let config = strings(p.config_argv());
        assert_eq!(&config[config.len() - 3..], ["config", "--format", "json"]);
        assert_eq!(
            strings(p.down_argv())[..2],
            ["docker".to_owned(), "compose".to_owned()]
        );
    }

    #[cfg(unix)] // `sh` stands in for compose
    #[tokio::test]
    async fn a_call_carries_env_and_directory_and_renders_without_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = project(Flavour::Standalone);
        p.env.insert("BACKEND_PORT".into(), String::new());
        p.env.insert("GREETING".into(), "hello there".into());
        p.files.truncate(1);
        p.dir = dir.path().to_path_buf();
        let cmd = p.command(&p.logs_argv("my service", 5)).unwrap();
        assert_eq!(
            cmd.display(),
            "docker-compose -p chat-1a2b -f /repo/services/compose.yaml logs --no-color --tail 5 'my service'"
        );
        // The same construction, run: environment and directory reach the program.
        let argv: Vec<OsString> = [
            "sh",
            "-c",
            "echo \"$GREETING|${BACKEND_PORT-unset}|$(pwd)\"",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let finished = p.run_checked(&argv, Duration::from_secs(10)).await.unwrap();
        let pwd = dir.path().canonicalize().unwrap();
        assert_eq!(
            finished.stdout.trim(),
            format!("hello there||{}", pwd.display())
        );
    }

    #[test]
    fn model_key_follows_file_content_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("compose.yaml");
        std::fs::write(&file, "services:\n  a:\n    image: x\n").unwrap();
        let mut p = project(Flavour::Standalone);
        p.files = vec![file.clone()];
        p.dir = dir.path().to_path_buf();
        let first = p.model_key();
        assert_eq!(first, p.model_key());
        // The project name is not part of it: isolated runs share the cached model.
        p.name = "chat-other".into();
        assert_eq!(first, p.model_key());
        p.env.insert("PORT".into(), String::new());
        let with_env = p.model_key();
        assert_ne!(first, with_env);
        std::fs::write(&file, "services:\n  b:\n    image: x\n").unwrap();
        assert_ne!(with_env, p.model_key());
        std::fs::write(dir.path().join(".env"), "X=1\n").unwrap();
        let with_dotenv = p.model_key();
        std::fs::write(dir.path().join(".env"), "X=2\n").unwrap();
        assert_ne!(with_dotenv, p.model_key());
    }

    #[cfg(unix)] // `sh` stands in for compose
    #[tokio::test]
    async fn a_call_past_its_deadline_is_stopped_and_named() {
        let error = run_checked(Cmd::new("sleep").arg("30"), Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`sleep 30` did not finish within 0s"),
            "{error}"
        );
        assert_eq!(
            crate::error::exit_kind_of(&error),
            crate::error::ExitKind::Failed
        );
    }

    #[cfg(unix)] // `sh` stands in for compose
    #[tokio::test]
    async fn a_failed_call_names_the_command_and_the_end_of_its_stderr() {
        let script = "for i in $(seq 1 80); do echo \"line $i\" >&2; done; echo out; exit 3";
        let error = run_checked(
            Cmd::new("sh").arg("-c").arg(script),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("`sh -c "), "{error}");
        assert!(error.contains("exit code 3"), "{error}");
        // The last 50 lines of stderr, not stdout, not the earlier lines.
        assert!(
            error.contains("line 31\n") && error.ends_with("line 80"),
            "{error}"
        );
        assert!(!error.contains("line 30\n"), "{error}");
        assert!(!error.lines().any(|line| line == "out"), "{error}");
    }
}
