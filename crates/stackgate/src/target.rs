//! Targets the suites run against when there is no engine: `staging` (endpoints from the
//! environment, used when all are set and answer) and `local` (the `[targets.local]` processes,
//! started on this machine, each a [`crate::process::Process`] logging to its own file, and
//! stopped again).
//!
//! Not here: the docker target ([crate::stack]), process groups and signals ([crate::process]),
//! choosing a target (the gate).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::{Config, ProcessCfg};
use crate::endpoints::{self, Lookup};
use crate::process::{Cmd, Finished, Process};
use crate::progress::Progress;
use crate::report::Check;
use crate::tls::Tls;

/// How long a local process gets between SIGTERM and SIGKILL when it is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a readiness wait says what it is still waiting for.
const SAY_EVERY: Duration = Duration::from_secs(3);
/// How many lines of a process's log an error shows.
const LOG_LINES: usize = 30;

/// Environment lookups for `${VAR}` with extra values the harness provides (the run secret).
struct EnvWith<'a>(&'a BTreeMap<String, String>);

impl Lookup for EnvWith<'_> {
    fn port(&self, _: &str, _: u16) -> Option<u16> {
        None
    }
    fn env(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }
}

/// The staging endpoints, when every one is set in the environment and answers within the probe
/// deadline; otherwise why staging cannot be used (with the cause: refused, no answer, a
/// certificate that is not trusted, is another host's or has expired, ...).
pub async fn staging_endpoints(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    let staging = config
        .targets
        .staging
        .as_ref()
        .context("no [targets.staging] in harness.toml")?;
    let resolved = endpoints::resolve_all(&staging.endpoints, &EnvWith(&BTreeMap::new()))
        .map_err(anyhow::Error::msg)?;
    let tls = config.tls();
    for (name, url) in &resolved {
        if let Err(e) = answers(url, staging.probe_timeout_s.duration(), &tls).await {
            let why = match crate::tls::failure_in(&e) {
                Some(failure) if failure.is_certificate() => "has a certificate problem",
                _ => "does not answer",
            };
            return Err(e.context(format!("endpoint `{name}` {why}")));
        }
    }
    Ok(resolved)
}

/// Whether something answers at `url`: any HTTP status for http(s), a TCP connection for ws and
/// a TCP connection with a verified TLS handshake for wss.
async fn answers(url: &str, timeout: Duration, tls: &Tls) -> anyhow::Result<()> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return crate::http::get(url, timeout, tls).await.map(|_| ());
    }
    let secure = url.starts_with("wss://");
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .context("no host in URL")?;
    let (host, address) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, authority.to_owned()),
        _ if secure => (authority, format!("{authority}:443")),
        _ => (authority, format!("{authority}:80")),
    };
    let probe = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .with_context(|| format!("cannot connect to {address}"))?;
        if secure {
            tls.connect(tcp, host).await?;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, probe)
        .await
        .map_err(|_| anyhow::anyhow!("no connection to {address} within {timeout:?}"))?
}

/// The local target: its endpoints and the processes the harness started for it. Dropping it
/// stops every process with its group (SIGTERM now, SIGKILL after the grace).
pub struct LocalTarget {
    pub endpoints: BTreeMap<String, String>,
    pub processes: Vec<LocalProcess>,
    /// One check per process: "local <name> ready", with its time to ready.
    pub checks: Vec<Check>,
}

impl LocalTarget {
    /// Stops every process the harness started (their whole process groups: SIGTERM, then
    /// SIGKILL after 5 s), one after the other; says what happened to each.
    pub async fn stop(&mut self) -> Vec<String> {
        let mut said = Vec::new();
        for process in self.processes.drain(..) {
            said.push(process.stop().await);
        }
        said
    }

    /// Leaves every process running after the harness exits (`--keep`); their pids.
    pub fn keep(mut self) -> Vec<u32> {
        self.processes
            .drain(..)
            .filter_map(|p| p.process.detach())
            .collect()
    }
}

/// One process of the local target, in its own process group, its output in its log file.
pub struct LocalProcess {
    pub name: String,
    pub log: PathBuf,
    process: Process,
}

impl LocalProcess {
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    async fn stop(mut self) -> String {
        let pid = self.pid().unwrap_or(0);
        if let Some(status) = self.process.try_status() {
            // Reaps it and kills what it left in its group.
            self.process.stop().await;
            return format!("{}: had exited ({status})", self.name);
        }
        let finished = self.process.stop().await;
        if killed(&finished) {
            format!(
                "{}: killed after {}s (pid {pid})",
                self.name,
                STOP_GRACE.as_secs()
            )
        } else {
            format!("{}: stopped (pid {pid})", self.name)
        }
    }
}

/// Whether it took the SIGKILL at the end of the grace (or could not be waited for at all).
fn killed(finished: &Finished) -> bool {
    crate::process::ended_by_us(finished.status)
}

/// Starts the `[targets.local]` processes in order, each ready before the next starts, saying
/// through `progress` what it waits for. `python` as a program means the harness's venv
/// interpreter. `extra_env` holds values the harness provides for `${VAR}` (the run secret).
pub async fn start_local(
    config: &Config,
    python: Option<&Path>,
    extra_env: &BTreeMap<String, String>,
    progress: &Progress,
) -> anyhow::Result<LocalTarget> {
    let local = config
        .targets
        .local
        .as_ref()
        .context("no [targets.local] in harness.toml")?;
    let lookup = EnvWith(extra_env);
    let endpoints =
        endpoints::resolve_all(&local.endpoints, &lookup).map_err(anyhow::Error::msg)?;
    let mut target = LocalTarget {
        endpoints,
        processes: Vec::new(),
        checks: Vec::new(),
    };
    let logs = config.work_dir().join("local");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    for process in &local.processes {
        let started = Instant::now();
        let spawned = spawn(config, process, python, &lookup, &logs)?;
        target.processes.push(spawned);
        let spawned = target.processes.last_mut().expect("just pushed");
        match &process.ready {
            None => target.checks.push(Check::passed(
                format!("local {} started", process.name),
                started.elapsed(),
                "no ready URL",
            )),
            Some(ready) => {
                let url =
                    endpoints::render(ready, &target.endpoints).map_err(anyhow::Error::msg)?;
                let deadline = process.ready_timeout_s.duration();
                match wait_ready(spawned, &url, deadline, &config.tls(), progress).await {
                    Ok(()) => target.checks.push(Check::passed(
                        format!("local {} ready", process.name),
                        started.elapsed(),
                        format!("{url} answered (pid {})", spawned.pid().unwrap_or(0)),
                    )),
                    Err(e) => {
                        let log = last_lines(&spawned.log, LOG_LINES);
                        target.stop().await;
                        bail!("local process `{}` did not become ready: {e:#}\n--- last lines of its log ---\n{log}", process.name);
                    }
                }
            }
        }
    }
    Ok(target)
}

fn spawn(
    config: &Config,
    process: &ProcessCfg,
    python: Option<&Path>,
    lookup: &dyn Lookup,
    logs: &Path,
) -> anyhow::Result<LocalProcess> {
    let program = match (process.cmd[0].as_str(), python) {
        ("python" | "python3", Some(venv_python)) => venv_python.to_path_buf(),
        (program, _) => PathBuf::from(program),
    };
    let log = logs.join(format!("{}.log", process.name));
    // Straight into the file, not through a pipe: a kept process (`--keep`) outlives the harness
    // and must go on logging.
    let mut command = Cmd::new(&program)
        .args(&process.cmd[1..])
        .current_dir(&config.root)
        .output_to_file(&log)
        .stop_grace(STOP_GRACE);
    for (key, value) in &process.env {
        let mut templates = BTreeMap::new();
        templates.insert("value".to_owned(), value.clone());
        let value = endpoints::resolve_all(&templates, lookup)
            .map_err(|e| {
                anyhow::anyhow!(
                    "targets.local process `{}` env {key}: {}",
                    process.name,
                    e.replace("endpoint `value`: ", "")
                )
            })?
            .remove("value")
            .unwrap_or_default();
        command = command.env(key, value);
    }
    let spawned = command.spawn().with_context(|| {
        format!(
            "cannot start local process `{}` ({})",
            process.name,
            program.display()
        )
    })?;
    Ok(LocalProcess {
        name: process.name.clone(),
        log,
        process: spawned,
    })
}

async fn wait_ready(
    local: &mut LocalProcess,
    url: &str,
    timeout: Duration,
    tls: &Tls,
    progress: &Progress,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error;
    let mut last_said = Instant::now();
    loop {
        if let Some(status) = local.process.try_status() {
            bail!("it exited ({status}) before {url} answered");
        }
        match crate::http::get(url, Duration::from_secs(1), tls).await {
            Ok(response) if response.is_success() => return Ok(()),
            Ok(response) => last_error = format!("{url} answered {}", response.status),
            Err(e) => last_error = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!(
                "no 2xx from {url} within {}s (last: {last_error})",
                timeout.as_secs()
            );
        }
        if last_said.elapsed() > SAY_EVERY {
            progress.say(format!(
                "waiting for local `{}` at {url} ({last_error})",
                local.name
            ));
            last_said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` non-blank lines of a log file.
fn last_lines(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    crate::process::last_lines(&text, lines)
}

/// A random secret for this run (hex of 16 bytes from the OS).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut file) = File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        + &format!("{:x}", crate::clock::unix_ms())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A config whose `[targets]` tables are `targets`, in its own directory.
    fn config(dir: &Path, targets: &str) -> Config {
        let path = dir.join("harness.toml");
        std::fs::write(&path, format!("[project]\nname = \"targets\"\n\n{targets}")).unwrap();
        crate::config::load(Some(&path)).unwrap()
    }

    /// Whether a process with this pid is still alive (not a zombie).
    fn alive(pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, Some(s) if s != 'Z' && s != 'X')
    }

    #[tokio::test]
    async fn local_processes_log_to_their_files_and_are_stopped_with_their_groups() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            "[targets.local]\nendpoints = {}\nprocesses = [\n\
             { name = \"talker\", cmd = [\"sh\", \"-c\", \"echo hello; echo oops >&2; sleep 300 & wait\"] },\n\
             { name = \"stubborn\", cmd = [\"sh\", \"-c\", \"trap '' TERM; echo up; while :; do sleep 1; done\"] },\n]\n",
        );
        let mut local = start_local(&config, None, &BTreeMap::new(), &Progress::silent())
            .await
            .unwrap();
        let checks: Vec<&str> = local.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(checks, ["local talker started", "local stubborn started"]);
        let pids: Vec<u32> = local.processes.iter().filter_map(|p| p.pid()).collect();
        let talker_log = local.processes[0].log.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&talker_log).unwrap_or_default() != "hello\noops\n" {
            assert!(
                Instant::now() < deadline,
                "{talker_log:?} holds both streams"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The stubborn one ignores SIGTERM only once its trap is set: it says so.
        let stubborn_log = local.processes[1].log.clone();
        while std::fs::read_to_string(&stubborn_log).unwrap_or_default() != "up\n" {
            assert!(Instant::now() < deadline, "{stubborn_log:?} never said up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let said = local.stop().await;
        assert_eq!(
            said,
            [
                format!("talker: stopped (pid {})", pids[0]),
                format!("stubborn: killed after 5s (pid {})", pids[1]),
            ]
        );
        assert!(pids.iter().all(|pid| !alive(*pid)), "{pids:?}");
        assert!(local.stop().await.is_empty(), "nothing left to stop");
    }

    #[tokio::test]
    async fn a_process_that_exits_before_it_is_ready_fails_with_its_log_and_the_wait_is_said() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) has no HTTP server here: the wait goes on until the process exits.
        let config = config(
            dir.path(),
            "[targets.local]\nendpoints = { web = \"http://127.0.0.1:9\" }\nprocesses = [\n\
             { name = \"web\", cmd = [\"sh\", \"-c\", \"echo starting; sleep 4; echo giving up; exit 3\"], ready = \"{web}/health\", ready_timeout_s = 30 },\n]\n",
        );
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let progress = {
            let said = said.clone();
            Progress::to(move |m| said.lock().unwrap().push(m.to_owned()))
        };
        let error = start_local(&config, None, &BTreeMap::new(), &progress)
            .await
            .err()
            .expect("it exited before it was ready");
        let error = format!("{error:#}");
        assert!(
            error.starts_with("local process `web` did not become ready: it exited (exit status: 3) before http://127.0.0.1:9/health answered"),
            "{error}"
        );
        assert!(
            error.ends_with("--- last lines of its log ---\nstarting\ngiving up"),
            "{error}"
        );
        let said = said.lock().unwrap();
        assert!(
            said.iter()
                .any(|m| m.starts_with("waiting for local `web` at http://127.0.0.1:9/health (")),
            "{said:?}"
        );
    }

    #[tokio::test]
    async fn a_dropped_target_stops_its_processes() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            "[targets.local]\nendpoints = {}\nprocesses = [{ name = \"sleeper\", cmd = [\"sleep\", \"300\"] }]\n",
        );
        let local = start_local(&config, None, &BTreeMap::new(), &Progress::silent())
            .await
            .unwrap();
        let pid = local.processes[0].pid().unwrap();
        drop(local);
        crate::process::finish_pending_kills();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "the sleeper {pid} outlived its target"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn kept_processes_outlive_their_target() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            "[targets.local]\nendpoints = {}\nprocesses = [{ name = \"sleeper\", cmd = [\"sleep\", \"300\"] }]\n",
        );
        let local = start_local(&config, None, &BTreeMap::new(), &Progress::silent())
            .await
            .unwrap();
        let pids = local.keep();
        assert_eq!(pids.len(), 1);
        crate::process::finish_pending_kills();
        assert!(alive(pids[0]), "the kept process was stopped");
        // SAFETY: the kept sleep is this test's own child; it is its own group's only member.
        unsafe { libc::kill(pids[0] as libc::pid_t, libc::SIGKILL) };
    }

    #[tokio::test]
    async fn an_unreachable_staging_endpoint_names_the_endpoint_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(
            dir.path(),
            "[targets.staging]\nendpoints = { api = \"http://127.0.0.1:9\" }\nprobe_timeout_s = 2\n",
        );
        let error = staging_endpoints(&config).await.unwrap_err();
        assert_eq!(error.to_string(), "endpoint `api` does not answer");
        let chain: Vec<String> = error.chain().map(ToString::to_string).collect();
        assert!(chain.len() > 2, "the cause is kept: {chain:?}");

        let none = config_without_staging(dir.path());
        let error = staging_endpoints(&none).await.unwrap_err();
        assert_eq!(error.to_string(), "no [targets.staging] in harness.toml");
    }

    fn config_without_staging(dir: &Path) -> Config {
        let dir = dir.join("none");
        std::fs::create_dir_all(&dir).unwrap();
        config(&dir, "")
    }
}
