//! Targets the suites run against when there is no engine: `staging` (endpoints from the
//! environment, used when all are set and answer) and `local` (the `[targets.local]` processes,
//! started on this machine and stopped again). The docker target lives in [crate::stack].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::{Config, ProcessCfg};
use crate::endpoints::{self, Lookup};
use crate::report::Check;

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
/// deadline; otherwise why staging cannot be used.
pub async fn staging_endpoints(config: &Config) -> Result<BTreeMap<String, String>, String> {
    let staging = config
        .targets
        .staging
        .as_ref()
        .ok_or("no [targets.staging] in harness.toml")?;
    let resolved = endpoints::resolve_all(&staging.endpoints, &EnvWith(&BTreeMap::new()))?;
    for (name, url) in &resolved {
        answers(url, staging.probe_timeout_s.duration())
            .await
            .map_err(|e| format!("endpoint `{name}` does not answer: {e}"))?;
    }
    Ok(resolved)
}

/// Whether something answers at `url`: any HTTP status for http(s), a TCP connection for ws(s).
async fn answers(url: &str, timeout: Duration) -> anyhow::Result<()> {
    if url.starts_with("http://") {
        crate::http::get(url, timeout).await.map(|_| ())
    } else {
        let authority = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .context("no host in URL")?;
        let address = if authority.contains(':') {
            authority.to_owned()
        } else if url.starts_with("wss://") || url.starts_with("https://") {
            format!("{authority}:443")
        } else {
            format!("{authority}:80")
        };
        tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&address))
            .await
            .map_err(|_| anyhow::anyhow!("no connection to {address} within {timeout:?}"))?
            .with_context(|| format!("cannot connect to {address}"))?;
        Ok(())
    }
}

/// The local target: its endpoints and the processes the harness started for it.
pub struct LocalTarget {
    pub endpoints: BTreeMap<String, String>,
    pub processes: Vec<ProcessGuard>,
    /// One check per process: "local <name> ready", with its time to ready.
    pub checks: Vec<Check>,
}

impl LocalTarget {
    /// Stops every process the harness started (their whole process groups).
    pub fn stop(&mut self) -> Vec<String> {
        self.processes.drain(..).map(|mut p| p.stop()).collect()
    }
}

/// A process the harness started in its own process group; dropping it stops the group.
pub struct ProcessGuard {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl ProcessGuard {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM to the group, SIGKILL after a grace period; says what happened.
    pub fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return format!("{}: already stopped", self.name);
        };
        let pgid = child.id() as libc::pid_t;
        if let Ok(Some(status)) = child.try_wait() {
            kill_group(pgid, libc::SIGKILL);
            return format!("{}: had exited ({status})", self.name);
        }
        kill_group(pgid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                kill_group(pgid, libc::SIGKILL);
                return format!("{}: stopped (pid {pgid})", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_group(pgid, libc::SIGKILL);
        let _ = child.wait();
        format!("{}: killed after 5s (pid {pgid})", self.name)
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Signals a whole process group (processes we started with `process_group(0)`).
pub fn kill_group(pgid: libc::pid_t, signal: libc::c_int) {
    if pgid > 0 {
        // SAFETY: plain syscall on a group id we created; errors (already gone) are fine.
        unsafe {
            libc::killpg(pgid, signal);
        }
    }
}

/// Starts the `[targets.local]` processes in order, each ready before the next starts.
/// `python` as a program means the harness's venv interpreter. `extra_env` holds values the
/// harness provides for `${VAR}` (the run secret).
pub async fn start_local(
    config: &Config,
    python: Option<&Path>,
    extra_env: &BTreeMap<String, String>,
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
        let guard = spawn(config, process, python, &lookup, &logs)?;
        target.processes.push(guard);
        let guard = target.processes.last_mut().expect("just pushed");
        match &process.ready {
            None => target.checks.push(Check::passed(
                format!("local {} started", process.name),
                started.elapsed(),
                "no ready URL",
            )),
            Some(ready) => {
                let url =
                    endpoints::render(ready, &target.endpoints).map_err(anyhow::Error::msg)?;
                match wait_ready(guard, &url, process.ready_timeout_s.duration()).await {
                    Ok(()) => target.checks.push(Check::passed(
                        format!("local {} ready", process.name),
                        started.elapsed(),
                        format!("{url} answered (pid {})", guard.pid().unwrap_or(0)),
                    )),
                    Err(e) => {
                        let log = tail(&guard.log, 30);
                        target.stop();
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
) -> anyhow::Result<ProcessGuard> {
    let program = match (process.cmd[0].as_str(), python) {
        ("python" | "python3", Some(venv_python)) => venv_python.to_path_buf(),
        (program, _) => PathBuf::from(program),
    };
    let log = logs.join(format!("{}.log", process.name));
    let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut command = Command::new(&program);
    command
        .args(&process.cmd[1..])
        .current_dir(&config.root)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
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
        command.env(key, value);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command.spawn().with_context(|| {
        format!(
            "cannot start local process `{}` ({})",
            process.name,
            program.display()
        )
    })?;
    Ok(ProcessGuard {
        name: process.name.clone(),
        child: Some(child),
        log,
    })
}

async fn wait_ready(guard: &mut ProcessGuard, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last_error;
    let mut last_said = Instant::now();
    loop {
        if let Some(child) = guard.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                bail!("it exited ({status}) before {url} answered");
            }
        }
        match crate::http::get(url, Duration::from_secs(1)).await {
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
        if last_said.elapsed() > Duration::from_secs(3) {
            crate::ui::say(format!(
                "waiting for local `{}` at {url} ({last_error})",
                guard.name
            ));
            last_said = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A random secret for this run (hex of 16 bytes from the OS).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut file) = File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut file, &mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        + &format!("{:x}", crate::state::unix_ms())
}
