//! How the platform starts an engine, as data ([`HostFacts`] in, [`StartPlan`]s out, best first),
//! launching a plan (a service manager's command, or dockerd spawned as a daemon through
//! [`crate::process`]) and polling until the engine answers. The per-platform ways to start an
//! engine live here; a later issue adds the Windows and macOS ones.
//!
//! Not here: pid files and /proc ([`super::os`]), the order of attempts and their checks
//! ([`super::restore`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;

use super::discover::{client_for, Host, Platform};
use super::DEFAULT_PID_FILE;
use crate::config::EngineCfg;
use crate::process::{Cmd, Daemon};
use crate::progress::Progress;
use crate::ui;

/// How often a starting engine is asked whether it answers: dockerd answers ~0.6 s after it
/// starts here, so polling must add little to that.
const POLL_EVERY: Duration = Duration::from_millis(25);

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

/// A launched start: the daemon when the harness spawned dockerd itself.
pub(super) struct Launched {
    pub pid: Option<u32>,
    daemon: Option<Daemon>,
    log: Option<PathBuf>,
}

/// Runs a plan's commands (each within what is left of `deadline`, at most a minute) or spawns
/// dockerd as a daemon that outlives the harness, its output appended to the plan's log.
pub(super) async fn launch(
    plan: &StartPlan,
    host: &Host,
    deadline: Instant,
    progress: &Progress,
) -> anyhow::Result<Launched> {
    progress.say(format!(
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
            let daemon = Cmd::new(program)
                .args(args)
                .current_dir("/")
                .spawn_daemon(log_file)?;
            Ok(Launched {
                pid: Some(daemon.pid()),
                daemon: Some(daemon),
                log: Some(log.clone()),
            })
        }
        StartPlan::Systemctl
        | StartPlan::Service
        | StartPlan::OpenDockerApp
        | StartPlan::WindowsDesktop { .. } => {
            for argv in plan.argv() {
                let left = deadline.saturating_duration_since(Instant::now());
                let limit = left.min(Duration::from_secs(60));
                // Killed at once at the deadline: a service manager's client holds nothing.
                let finished = Cmd::from_argv(&argv)?
                    .on_deadline(&[])
                    .output(limit)
                    .await?;
                anyhow::ensure!(
                    !finished.timed_out,
                    "`{}` did not finish within {}; it was killed",
                    argv.join(" "),
                    ui::duration(limit)
                );
                anyhow::ensure!(
                    finished.success(),
                    "`{}` exited with {}: {}",
                    argv.join(" "),
                    finished
                        .code()
                        .map_or("a signal".to_owned(), |c| c.to_string()),
                    finished.tail(5)
                );
            }
            let log = match plan {
                StartPlan::Service => Some(PathBuf::from("/var/log/docker.log")),
                _ => None,
            };
            Ok(Launched {
                pid: None,
                daemon: None,
                log,
            })
        }
    }
}

/// Polls the engine until it answers, the launched dockerd exits, or the deadline passes.
pub(super) async fn wait_for_answer(
    host: &Host,
    deadline: Instant,
    launched: &mut Launched,
    plan: &StartPlan,
    progress: &Progress,
) -> anyhow::Result<Docker> {
    let began = Instant::now();
    let total = deadline.saturating_duration_since(began);
    let mut throttle = progress.throttled();
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
        if let Some(daemon) = &mut launched.daemon {
            if let Some(status) = daemon.try_status()? {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::DEFAULT_SOCKET;

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

    #[cfg(unix)]
    /// A plan that spawns `script` (a shell standing in for dockerd) with its log in `dir`.
    fn fake_dockerd(dir: &Path, script: &str) -> StartPlan {
        StartPlan::Dockerd {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            log: dir.join("logs/dockerd.log"),
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_spawned_dockerd_is_a_daemon_in_a_session_of_its_own_that_appends_to_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let plan = fake_dockerd(dir.path(), "echo out; echo err >&2; exec sleep 300");
        let log = dir.path().join("logs/dockerd.log");
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "earlier\n").unwrap();
        let host = Host::Unix(dir.path().join("docker.sock"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let launched = launch(&plan, &host, deadline, &Progress::silent())
            .await
            .unwrap();
        let pid = launched.pid.unwrap();
        // SAFETY: getsid has no preconditions.
        let session = unsafe { libc::getsid(pid as libc::pid_t) };
        assert_eq!(session, pid as libc::pid_t, "a session of its own");
        let mut logged = String::new();
        while !(logged.contains("out") && logged.contains("err")) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            logged = std::fs::read_to_string(&log).unwrap();
        }
        assert!(logged.starts_with("earlier\n"), "{logged}");
        assert!(logged.contains("out") && logged.contains("err"), "{logged}");
        drop(launched);
        crate::process::finish_pending_kills();
        assert!(
            !super::super::os::process_gone(pid),
            "it outlives its handle"
        );
        super::super::os::terminate(pid).unwrap();
        while !super::super::os::process_gone(pid) {
            assert!(
                Instant::now() < deadline + Duration::from_secs(5),
                "{pid} still runs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_dockerd_that_exits_before_answering_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let plan = fake_dockerd(dir.path(), "echo 'failed to start daemon' >&2; exit 3");
        let host = Host::Unix(dir.path().join("docker.sock"));
        let deadline = Instant::now() + Duration::from_secs(30);
        let (progress, said) = {
            let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let sink = said.clone();
            (
                Progress::to(move |m| sink.lock().unwrap().push(m.to_owned())),
                said,
            )
        };
        let mut launched = launch(&plan, &host, deadline, &progress).await.unwrap();
        let error = wait_for_answer(&host, deadline, &mut launched, &plan, &progress)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("dockerd exited with"), "{error}");
        assert!(error.contains("failed to start daemon"), "{error}");
        let said = said.lock().unwrap();
        assert!(
            said[0].starts_with("starting the engine for unix://"),
            "{said:?}"
        );
        assert!(said[1].starts_with("waiting for the engine at"), "{said:?}");
    }
}
