//! How the platform starts an engine, as data ([`HostFacts`] in, [`StartPlan`]s out, best first),
//! launching a plan (a service manager's command, dockerd spawned as a daemon through
//! [`crate::process`], `open -a Docker` or `colima start` on macOS, Docker Desktop's service and
//! then `Docker Desktop.exe` on Windows) and polling until the engine answers; when Docker Desktop
//! does not answer on Windows, the WSL2 backend is asked whether it is the cause.
//!
//! Not here: pid files, /proc and the registry ([`super::os`]), what Docker Desktop's and colima's
//! tools print ([`super::desktop`]), the order of attempts and their checks ([`super::restore`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;

use super::desktop::{self, DESKTOP_SERVICE, WINDOWS_DESKTOP_METHOD};
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
    /// colima (macOS), when installed.
    pub colima: Option<PathBuf>,
    /// The user's home: where Docker Desktop's and colima's sockets are on macOS.
    pub home: Option<PathBuf>,
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
        let var = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let home = match platform {
            Platform::Windows => var("USERPROFILE"),
            Platform::Linux | Platform::Macos => var("HOME"),
        };
        let desktop: Vec<PathBuf> = match platform {
            Platform::Macos => {
                let mut apps = vec![PathBuf::from("/Applications/Docker.app")];
                apps.extend(home.as_ref().map(|h| h.join("Applications/Docker.app")));
                apps
            }
            Platform::Windows => desktop::desktop_exe_candidates(
                super::os::desktop_install_location().as_deref(),
                var("ProgramFiles").as_deref(),
                var("LOCALAPPDATA").as_deref(),
            ),
            Platform::Linux => Vec::new(),
        };
        HostFacts {
            platform,
            systemd: Path::new("/run/systemd/system").is_dir() && find("systemctl").is_some(),
            init_script: Path::new("/etc/init.d/docker").is_file() && find("service").is_some(),
            dockerd: find("dockerd"),
            docker_desktop: desktop.into_iter().find(|path| path.exists()),
            colima: (platform == Platform::Macos)
                .then(|| find("colima").or_else(|| find("/opt/homebrew/bin/colima")))
                .flatten(),
            home,
        }
    }

    /// Whether an engine is installed that the harness knows how to start.
    pub fn installed(&self) -> bool {
        match self.platform {
            Platform::Linux => self.dockerd.is_some(),
            Platform::Macos => self.docker_desktop.is_some() || self.colima.is_some(),
            Platform::Windows => self.docker_desktop.is_some(),
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
    /// `open -a Docker` (macOS); Docker Desktop then serves `socket`.
    OpenDockerApp { socket: PathBuf },
    /// `colima start [--profile PROFILE]` (macOS); it serves `socket`.
    Colima { profile: String, socket: PathBuf },
    /// `sc.exe start com.docker.service` (as the runbook's `Start-Service`), then
    /// `Docker Desktop.exe` (Windows), spawned as a daemon with its output in `log`.
    WindowsDesktop { desktop_exe: PathBuf, log: PathBuf },
}

impl StartPlan {
    /// The name recorded in state.json (`start_method`); `docker-down --stop-engine` stops the
    /// engine by it.
    pub fn method(&self) -> String {
        match self {
            StartPlan::Systemctl => "systemctl".to_owned(),
            StartPlan::Service => "service".to_owned(),
            StartPlan::Dockerd { .. } => "dockerd".to_owned(),
            StartPlan::OpenDockerApp { .. } => "open -a Docker".to_owned(),
            StartPlan::Colima { profile, .. } => desktop::colima_start(profile).join(" "),
            StartPlan::WindowsDesktop { .. } => WINDOWS_DESKTOP_METHOD.to_owned(),
        }
    }

    /// Where the engine this plan starts answers, when that is its own socket rather than the
    /// target's (Docker Desktop and colima on macOS each serve their own).
    pub fn serves(&self) -> Option<Host> {
        match self {
            StartPlan::OpenDockerApp { socket } | StartPlan::Colima { socket, .. } => {
                Some(Host::Unix(socket.clone()))
            }
            StartPlan::Systemctl
            | StartPlan::Service
            | StartPlan::Dockerd { .. }
            | StartPlan::WindowsDesktop { .. } => None,
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
            StartPlan::OpenDockerApp { .. } => vec![owned(&["open", "-a", "Docker"])],
            StartPlan::Colima { profile, .. } => vec![desktop::colima_start(profile)],
            StartPlan::WindowsDesktop { desktop_exe, .. } => vec![
                owned(&["sc.exe", "start", DESKTOP_SERVICE]),
                vec![desktop_exe.to_string_lossy().into_owned()],
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
        Platform::Macos => macos_plans(facts, target),
        Platform::Windows => match target {
            // Docker Desktop serves its named pipes; a tcp or unix engine is someone else's.
            Host::Npipe(_) => facts
                .docker_desktop
                .iter()
                .map(|exe| StartPlan::WindowsDesktop {
                    desktop_exe: exe.clone(),
                    log: log.with_file_name("docker-desktop.log"),
                })
                .collect(),
            Host::Unix(_) | Host::Tcp(_) | Host::TcpTls { .. } => Vec::new(),
        },
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

/// macOS: colima for a colima socket, Docker Desktop for its own socket, and for the default
/// socket (which Docker Desktop links to its own when allowed) Docker Desktop, then colima.
fn macos_plans(facts: &HostFacts, target: &Host) -> Vec<StartPlan> {
    let (Some(home), Some(socket)) = (&facts.home, target.socket()) else {
        return Vec::new();
    };
    let desktop = facts
        .docker_desktop
        .as_ref()
        .map(|_| StartPlan::OpenDockerApp {
            socket: desktop::desktop_socket(home),
        });
    let colima = |profile: &str| {
        facts.colima.as_ref().map(|_| StartPlan::Colima {
            profile: profile.to_owned(),
            socket: desktop::colima_socket(home, profile),
        })
    };
    if let Some(profile) = desktop::colima_profile(home, socket) {
        return colima(&profile).into_iter().collect();
    }
    let desktop_sockets = [
        desktop::desktop_socket(home),
        home.join(".docker").join("desktop").join("docker.sock"),
    ];
    if desktop_sockets.iter().any(|s| s == socket) {
        return desktop.into_iter().collect();
    }
    if target.is_default_socket() {
        return desktop.into_iter().chain(colima("default")).collect();
    }
    Vec::new()
}

/// A launched start: the daemon when the harness spawned dockerd itself.
pub(super) struct Launched {
    pub pid: Option<u32>,
    daemon: Option<Daemon>,
    log: Option<PathBuf>,
    /// What the launch noticed on its way (Docker Desktop's service), for a failure's message.
    notes: Vec<String>,
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
                notes: Vec::new(),
            })
        }
        StartPlan::WindowsDesktop { desktop_exe, log } => {
            launch_windows_desktop(desktop_exe, log, deadline, progress).await
        }
        StartPlan::Systemctl
        | StartPlan::Service
        | StartPlan::OpenDockerApp { .. }
        | StartPlan::Colima { .. } => {
            for argv in plan.argv() {
                let left = deadline.saturating_duration_since(Instant::now());
                // A service manager's client returns at once; `colima start` returns once its VM
                // runs, which takes as long as it takes (the deadline).
                let limit = match plan {
                    StartPlan::Colima { .. } => left,
                    _ => left.min(Duration::from_secs(60)),
                };
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
                notes: Vec::new(),
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
            let cause = match plan {
                StartPlan::WindowsDesktop { .. } => wsl_diagnosis()
                    .await
                    .map(|cause| {
                        format!(
                            "; {cause} (`wsl --status` tells more; `wsl --update` and a restart of Docker Desktop usually repair it)"
                        )
                    })
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let notes = if launched.notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", launched.notes.join("; "))
            };
            anyhow::bail!(
                "the engine at {host} did not answer within {}{tail}{cause}{notes}",
                ui::duration(total)
            );
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Windows: Docker Desktop's service first, as the runbook does by hand (a service that cannot be
/// started, because the harness is not elevated or it is not installed, is said and is no failure:
/// Docker Desktop starts it itself where it may), then the app, which brings the engine up.
async fn launch_windows_desktop(
    desktop_exe: &Path,
    log: &Path,
    deadline: Instant,
    progress: &Progress,
) -> anyhow::Result<Launched> {
    let within = |cap: Duration| deadline.saturating_duration_since(Instant::now()).min(cap);
    let sc = |verb: &str| {
        Cmd::new("sc.exe")
            .args([verb, DESKTOP_SERVICE])
            .on_deadline(&[])
    };
    let query = sc("query").output(within(Duration::from_secs(30))).await?;
    let note = match desktop::parse_sc_query(&query.combined) {
        desktop::ServiceState::Running => format!("{DESKTOP_SERVICE} is running"),
        desktop::ServiceState::NotInstalled => {
            format!("{DESKTOP_SERVICE} is not installed; starting Docker Desktop alone")
        }
        _ => {
            let start = sc("start").output(within(Duration::from_secs(60))).await?;
            desktop::sc_start_outcome(&start.combined)
                .unwrap_or_else(|why| format!("{why}; Docker Desktop starts it itself when it may"))
        }
    };
    progress.say(&note);
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    // Docker Desktop outlives the harness; a second instance hands over to the first and exits,
    // so its end says nothing about the engine.
    let mut app = Cmd::new(desktop_exe);
    if let Some(dir) = desktop_exe.parent() {
        app = app.current_dir(dir);
    }
    app.spawn_daemon(log_file)?;
    Ok(Launched {
        pid: None,
        daemon: None,
        log: None,
        notes: vec![note],
    })
}

/// Whether Docker Desktop's WSL2 backend is why its engine does not answer: `wsl.exe -l -v` and
/// the end of Docker Desktop's backend log.
async fn wsl_diagnosis() -> Option<String> {
    let listed = Cmd::new("wsl.exe")
        .args(["-l", "-v"])
        .env("WSL_UTF8", "1")
        .output(Duration::from_secs(15))
        .await;
    let wsl_list: Result<String, String> = match &listed {
        Ok(finished) if finished.success() => {
            Ok(desktop::decode_wsl_output(finished.stdout.as_bytes()))
        }
        // `wsl -l -v` exits non-zero when nothing is installed: what it says is the answer.
        Ok(finished) => Ok(desktop::decode_wsl_output(finished.combined.as_bytes())),
        Err(e) => Err(format!("could not run: {e:#}")),
    };
    let desktop_log = std::env::var_os("LOCALAPPDATA")
        .map(|dir| {
            PathBuf::from(dir)
                .join("Docker")
                .join("log")
                .join("host")
                .join("com.docker.backend.exe.log")
        })
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|text| crate::process::last_lines(&text, 200))
        .unwrap_or_default();
    desktop::wsl_cause(wsl_list.as_deref().map_err(String::as_str), &desktop_log)
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
            ..HostFacts::default()
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

    fn mac_facts(desktop: bool, colima: bool) -> HostFacts {
        HostFacts {
            platform: Platform::Macos,
            docker_desktop: desktop.then(|| PathBuf::from("/Applications/Docker.app")),
            colima: colima.then(|| PathBuf::from("/opt/homebrew/bin/colima")),
            home: Some(PathBuf::from("/Users/me")),
            ..HostFacts::default()
        }
    }

    #[test]
    fn macos_plans_open_docker_and_wait_at_its_socket() {
        let engine = EngineCfg::default();
        let log = Path::new("dockerd.log");
        let socket = Host::Unix(PathBuf::from("/Users/me/.docker/run/docker.sock"));
        let plans = start_plans(&mac_facts(true, true), &socket, &engine, log);
        assert_eq!(
            plans,
            vec![StartPlan::OpenDockerApp {
                socket: PathBuf::from("/Users/me/.docker/run/docker.sock")
            }]
        );
        assert_eq!(plans[0].argv(), vec![vec!["open", "-a", "Docker"]]);
        assert_eq!(plans[0].method(), "open -a Docker");
        assert_eq!(plans[0].serves(), Some(socket.clone()));
        // Not installed: nothing to start.
        assert!(start_plans(&mac_facts(false, true), &socket, &engine, log).is_empty());
    }

    #[test]
    fn macos_colima_plans_start_the_profile_of_the_socket() {
        let engine = EngineCfg::default();
        let log = Path::new("dockerd.log");
        let work = Host::Unix(PathBuf::from("/Users/me/.colima/work/docker.sock"));
        let plans = start_plans(&mac_facts(true, true), &work, &engine, log);
        assert_eq!(
            plans[0].argv(),
            vec![vec!["colima", "start", "--profile", "work"]]
        );
        assert_eq!(plans[0].method(), "colima start --profile work");
        assert_eq!(plans[0].serves(), Some(work));
        // The default socket (no context selected): Docker Desktop, then colima at its own socket.
        let default = Host::Unix(PathBuf::from("/var/run/docker.sock"));
        let plans = start_plans(&mac_facts(true, true), &default, &engine, log);
        let methods: Vec<String> = plans.iter().map(StartPlan::method).collect();
        assert_eq!(methods, vec!["open -a Docker", "colima start"]);
        assert_eq!(
            plans[1].serves(),
            Some(Host::Unix(PathBuf::from(
                "/Users/me/.colima/default/docker.sock"
            )))
        );
        let colima_only = start_plans(&mac_facts(false, true), &default, &engine, log);
        assert_eq!(colima_only.len(), 1);
        assert!(mac_facts(false, true).installed());
        // A socket neither of them serves, or a remote engine: nothing.
        let other = Host::Unix(PathBuf::from("/tmp/other.sock"));
        assert!(start_plans(&mac_facts(true, true), &other, &engine, log).is_empty());
        let tcp = Host::Tcp("10.0.0.1:2375".into());
        assert!(start_plans(&mac_facts(true, true), &tcp, &engine, log).is_empty());
    }

    #[test]
    fn windows_desktop_restore_plan_starts_the_service_then_docker_desktop() {
        let engine = EngineCfg::default();
        let log = Path::new(r"C:\work\my repo\target\xtask\dockerd.log");
        let exe = PathBuf::from(r"C:\Program Files\Docker\Docker\Docker Desktop.exe");
        let windows = HostFacts {
            platform: Platform::Windows,
            docker_desktop: Some(exe.clone()),
            ..HostFacts::default()
        };
        for pipe in [
            "//./pipe/docker_engine",
            "//./pipe/dockerDesktopLinuxEngine",
        ] {
            let plans = start_plans(&windows, &Host::Npipe(pipe.into()), &engine, log);
            assert_eq!(plans.len(), 1, "{pipe}");
            assert_eq!(
                plans[0].argv(),
                vec![
                    vec!["sc.exe", "start", "com.docker.service"],
                    // One argument, spaces and all: nothing goes through a shell.
                    vec![r"C:\Program Files\Docker\Docker\Docker Desktop.exe"],
                ]
            );
            assert_eq!(plans[0].method(), "Docker Desktop.exe");
            // Docker Desktop serves the pipe that was asked for.
            assert_eq!(plans[0].serves(), None);
            let StartPlan::WindowsDesktop { log, .. } = &plans[0] else {
                panic!("{plans:?}")
            };
            assert_eq!(log.file_name().unwrap(), "docker-desktop.log");
        }
        // A tcp engine is someone else's; without Docker Desktop nothing can be started.
        let tcp = Host::Tcp("127.0.0.1:2375".into());
        assert!(start_plans(&windows, &tcp, &engine, log).is_empty());
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
