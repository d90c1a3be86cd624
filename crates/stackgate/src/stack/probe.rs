//! Active readiness: the harness runs a service's own healthcheck test (`CMD`, `CMD-SHELL`)
//! inside its container through the engine's exec API, with the healthcheck's timeout, every
//! `stack.probe_interval_ms` while the container is starting, so that the wait learns that a
//! service is ready as soon as it is, not at the engine's next scheduled check (what Docker 25's
//! `start_interval` does inside the engine; the engines here are older). Services without a
//! healthcheck can be given an HTTP or TCP probe (`[stack.ready]`). Each probe reports
//! [`ProbeResult`]s; what they mean is [super::watch]'s business.
//!
//! Not here: deciding readiness ([super::watch]), the wait loop that starts and stops the probes
//! ([super::up]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::ContainerInspectResponse;
use futures_util::StreamExt;

use super::containers::{AbortOnDrop, PublishedPorts};
use super::watch::ProbeResult;

/// Docker's default healthcheck timeout, used when the container's healthcheck names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of a probe's output a result keeps (the engine keeps 4 KiB of its own).
const OUTPUT_LIMIT: usize = 4096;
/// A TCP probe that is closed by the other end within this long was refused behind a proxy
/// (the engine's userland proxy accepts, then closes when the service does not listen).
const TCP_SETTLE: Duration = Duration::from_millis(50);

/// What a probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSpec {
    /// The healthcheck's test as an exec argv (`CMD-SHELL` runs in `/bin/sh -c`).
    Exec {
        argv: Vec<String>,
        timeout: Duration,
    },
    /// `[stack.ready]` `http://...`: a 2xx answer.
    Http { url: String, timeout: Duration },
    /// `[stack.ready]` `tcp://HOST:PORT`: a connection that stays open.
    Tcp { address: String, timeout: Duration },
}

impl ProbeSpec {
    /// How a person reads it in a report: `exec redis-cli ping`, `http://127.0.0.1:1234/health`.
    pub fn describe(&self) -> String {
        match self {
            ProbeSpec::Exec { argv, .. } => format!("exec {}", argv.join(" ")),
            ProbeSpec::Http { url, .. } => url.clone(),
            ProbeSpec::Tcp { address, .. } => format!("tcp://{address}"),
        }
    }
}

/// The exec argv of a healthcheck test: `["CMD", args...]` runs `args`, `["CMD-SHELL", cmd]`
/// runs `/bin/sh -c cmd`; `NONE`, an empty or unknown test: no probe.
pub fn exec_argv(test: &[String]) -> Option<Vec<String>> {
    match test.split_first()? {
        (kind, rest) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        (kind, [command]) if kind == "CMD-SHELL" => {
            Some(vec!["/bin/sh".to_owned(), "-c".to_owned(), command.clone()])
        }
        _ => None,
    }
}

/// The exec probe of a container's own healthcheck (as the engine holds it: the compose file's,
/// or the image's), when it has one.
pub fn healthcheck_probe(response: &ContainerInspectResponse) -> Option<ProbeSpec> {
    let check = response.config.as_ref()?.healthcheck.as_ref()?;
    let argv = exec_argv(check.test.as_ref()?)?;
    let timeout = match check.timeout {
        Some(nanos) if nanos > 0 => Duration::from_nanos(nanos as u64),
        _ => DEFAULT_TIMEOUT,
    };
    Some(ProbeSpec::Exec { argv, timeout })
}

/// The `[stack.ready]` probe of a service, its template resolved against the ports its
/// container publishes and the engine's host (`{engine_host}`: where a remote engine publishes
/// them). `Err` says why it cannot be resolved (yet).
pub fn ready_probe(
    service: &str,
    template: &str,
    response: &ContainerInspectResponse,
    engine_host: &str,
    timeout: Duration,
) -> Result<ProbeSpec, String> {
    let mut ports = PublishedPorts::default();
    ports.add(service, response);
    let templates = BTreeMap::from([(format!("stack.ready.{service}"), template.to_owned())]);
    let lookup = crate::endpoints::OnEngine {
        ports: &ports,
        engine_host,
    };
    let resolved = crate::endpoints::resolve_all(&templates, &lookup)?;
    let url = resolved.into_values().next().unwrap_or_default();
    match url.strip_prefix("tcp://") {
        Some(address) => Ok(ProbeSpec::Tcp {
            address: address.trim_end_matches('/').to_owned(),
            timeout,
        }),
        None => Ok(ProbeSpec::Http { url, timeout }),
    }
}

/// Runs a probe once: whether it passed, and its output (or why it could not run).
pub async fn run_once(
    docker: &bollard::Docker,
    container: &str,
    spec: &ProbeSpec,
    tls: &crate::tls::Tls,
) -> (bool, String) {
    match spec {
        ProbeSpec::Exec { argv, timeout } => {
            match tokio::time::timeout(*timeout, exec(docker, container, argv)).await {
                Ok(Ok((code, output))) => (code == 0, output),
                Ok(Err(e)) => (false, format!("cannot run the probe: {e}")),
                Err(_) => (
                    false,
                    format!(
                        "the probe did not finish within {}",
                        crate::ui::duration(*timeout)
                    ),
                ),
            }
        }
        ProbeSpec::Http { url, timeout } => match crate::http::get(url, *timeout, tls).await {
            Ok(response) if response.is_success() => (true, format!("{}", response.status)),
            Ok(response) => (
                false,
                format!("{} {}", response.status, response.first_line()),
            ),
            Err(e) => (false, format!("{e:#}")),
        },
        ProbeSpec::Tcp { address, timeout } => tcp(address, *timeout).await,
    }
}

/// Runs `argv` in the container (its user, environment and working directory, as the engine's
/// own healthcheck does); the exit code and the output.
async fn exec(
    docker: &bollard::Docker,
    container: &str,
    argv: &[String],
) -> Result<(i64, String), bollard::errors::Error> {
    let created = docker
        .create_exec(
            container,
            CreateExecOptions {
                cmd: Some(argv.to_vec()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await?;
    let mut output = String::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker
        .start_exec(&created.id, None::<StartExecOptions>)
        .await?
    {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if output.len() < OUTPUT_LIMIT {
                output.push_str(&chunk.to_string());
            }
        }
    }
    // The stream ends when the process exits; the engine may record its exit code a moment later.
    for _ in 0..50 {
        let inspected = docker.inspect_exec(&created.id).await?;
        if inspected.running != Some(true) {
            return Ok((inspected.exit_code.unwrap_or(-1), output.trim().to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((-1, "the probe's exit code did not arrive".to_owned()))
}

async fn tcp(address: &str, timeout: Duration) -> (bool, String) {
    let connect = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await;
    let stream = match connect {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return (false, format!("tcp://{address}: {e}")),
        Err(_) => {
            return (
                false,
                format!(
                    "tcp://{address}: no connection within {}",
                    crate::ui::duration(timeout)
                ),
            )
        }
    };
    let mut byte = [0u8; 1];
    match tokio::time::timeout(TCP_SETTLE, stream.peek(&mut byte)).await {
        // Closed at once: the proxy in front of it found nothing listening.
        Ok(Ok(0)) | Ok(Err(_)) => (false, format!("tcp://{address}: closed at once")),
        _ => (true, format!("tcp://{address}: open")),
    }
}

/// The longest pause between two exec probes of one container: each exec starts a process in
/// the container (a few hundred milliseconds of engine work on a busy machine), so a service
/// that takes long to start is probed less and less often, down to this.
const EXEC_PAUSE_CAP: Duration = Duration::from_millis(500);

/// Runs a probe every `interval` (start to start; never two at once) until it passes, sending
/// every result; stops when the returned handle is dropped. Exec probes slow down by a quarter
/// after each failure, up to [`EXEC_PAUSE_CAP`] (never below `interval`).
pub(super) fn spawn(
    docker: bollard::Docker,
    service: String,
    container: String,
    spec: ProbeSpec,
    interval: Duration,
    tls: crate::tls::Tls,
    results: tokio::sync::mpsc::UnboundedSender<ProbeResult>,
) -> AbortOnDrop {
    let cap = EXEC_PAUSE_CAP.max(interval);
    let backs_off = matches!(spec, ProbeSpec::Exec { .. });
    AbortOnDrop::new(tokio::spawn(async move {
        let mut pause = interval;
        loop {
            let began = Instant::now();
            let (passed, output) = run_once(&docker, &container, &spec, &tls).await;
            let result = ProbeResult {
                service: service.clone(),
                container: container.clone(),
                passed,
                at: SystemTime::now(),
                output,
            };
            if results.send(result).is_err() || passed {
                return;
            }
            tokio::time::sleep(pause.saturating_sub(began.elapsed())).await;
            if backs_off {
                pause = (pause * 5 / 4).min(cap);
            }
        }
    }))
}

/// The probes of one wait: what each container's probe runs, the probes running now (one per
/// starting container), and the channel their results arrive on.
pub struct Probes {
    interval: Duration,
    /// `[stack.ready]` templates, by service.
    ready: BTreeMap<String, String>,
    /// `{engine_host}` in those templates.
    engine_host: String,
    /// How long one `[stack.ready]` probe may take.
    ready_timeout: Duration,
    /// What an `https://` `[stack.ready]` probe trusts.
    tls: crate::tls::Tls,
    /// Exec probes learned when a container was created, by container.
    specs: BTreeMap<String, ProbeSpec>,
    running: BTreeMap<String, (String, AbortOnDrop)>,
    sender: tokio::sync::mpsc::UnboundedSender<ProbeResult>,
    receiver: tokio::sync::mpsc::UnboundedReceiver<ProbeResult>,
    /// Why a container's probe could not be made (a `[stack.ready]` template that does not
    /// resolve), for the failure report.
    pub problems: BTreeMap<String, String>,
}

impl Probes {
    /// `interval` zero: no probe ever runs.
    pub fn new(
        interval: Duration,
        ready: BTreeMap<String, String>,
        engine_host: String,
        tls: crate::tls::Tls,
    ) -> Probes {
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        Probes {
            interval,
            ready,
            engine_host,
            ready_timeout: Duration::from_secs(2),
            tls,
            specs: BTreeMap::new(),
            running: BTreeMap::new(),
            sender,
            receiver,
            problems: BTreeMap::new(),
        }
    }

    /// Remembers a container's exec probe from its inspection (at its creation: off the path
    /// from its start to ready).
    pub fn learn(&mut self, container: &str, response: &ContainerInspectResponse) {
        if let Some(spec) = healthcheck_probe(response) {
            self.specs.insert(container.to_owned(), spec);
        }
    }

    /// Starts probing a container that the watch says is starting, unless it is probed already.
    /// A `[stack.ready]` probe needs the container's published ports: it inspects it.
    pub async fn ensure(
        &mut self,
        docker: &bollard::Docker,
        watch: &super::watch::Watch,
        service: &str,
        container: &str,
    ) {
        if self.interval.is_zero()
            || self.running.contains_key(container)
            || !watch.starting_container(service, container)
        {
            return;
        }
        let spec = match self.ready.get(service) {
            Some(template) => {
                let response = docker
                    .inspect_container(
                        container,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await;
                match response.map_err(|e| e.to_string()).and_then(|r| {
                    ready_probe(service, template, &r, &self.engine_host, self.ready_timeout)
                }) {
                    Ok(spec) => spec,
                    Err(problem) => {
                        self.problems.insert(container.to_owned(), problem);
                        return;
                    }
                }
            }
            None => match self.specs.get(container) {
                Some(spec) => spec.clone(),
                None => return,
            },
        };
        let handle = spawn(
            docker.clone(),
            service.to_owned(),
            container.to_owned(),
            spec,
            self.interval,
            self.tls.clone(),
            self.sender.clone(),
        );
        self.running
            .insert(container.to_owned(), (service.to_owned(), handle));
    }

    /// Stops the probes of containers that are no longer starting (ready, stopped, gone).
    pub fn prune(&mut self, watch: &super::watch::Watch) {
        self.running
            .retain(|container, (service, _)| watch.starting_container(service, container));
    }

    /// The next probe result (never ends: the probes' sender lives here).
    pub async fn recv(&mut self) -> Option<ProbeResult> {
        self.receiver.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn healthcheck_tests_become_exec_argv() {
        assert_eq!(
            exec_argv(&words(&["CMD", "redis-cli", "ping"])),
            Some(words(&["redis-cli", "ping"]))
        );
        assert_eq!(
            exec_argv(&words(&["CMD-SHELL", "pg_isready -q || exit 1"])),
            Some(words(&["/bin/sh", "-c", "pg_isready -q || exit 1"]))
        );
        assert_eq!(exec_argv(&words(&["NONE"])), None);
        assert_eq!(exec_argv(&words(&["CMD"])), None);
        assert_eq!(exec_argv(&[]), None);
    }

    #[test]
    fn healthcheck_probe_takes_the_containers_timeout() {
        use bollard::models::{ContainerConfig, HealthConfig};
        let response = |timeout: Option<i64>, test: &[&str]| ContainerInspectResponse {
            config: Some(ContainerConfig {
                healthcheck: Some(HealthConfig {
                    test: Some(words(test)),
                    timeout,
                    ..HealthConfig::default()
                }),
                ..ContainerConfig::default()
            }),
            ..ContainerInspectResponse::default()
        };
        assert_eq!(
            healthcheck_probe(&response(Some(2_000_000_000), &["CMD", "true"])),
            Some(ProbeSpec::Exec {
                argv: words(&["true"]),
                timeout: Duration::from_secs(2)
            })
        );
        let default = healthcheck_probe(&response(None, &["CMD-SHELL", "true"])).unwrap();
        assert_eq!(
            default,
            ProbeSpec::Exec {
                argv: words(&["/bin/sh", "-c", "true"]),
                timeout: DEFAULT_TIMEOUT
            }
        );
        assert_eq!(default.describe(), "exec /bin/sh -c true");
        assert_eq!(healthcheck_probe(&response(None, &["NONE"])), None);
    }

    #[test]
    fn ready_templates_resolve_against_the_containers_ports() {
        use bollard::models::{NetworkSettings, PortBinding};
        use std::collections::HashMap;
        let response = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([(
                    "6379/tcp".to_owned(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some("40001".into()),
                    }]),
                )])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let second = Duration::from_secs(1);
        assert_eq!(
            ready_probe(
                "cache",
                "tcp://127.0.0.1:{port:cache:6379}",
                &response,
                "127.0.0.1",
                second
            ),
            Ok(ProbeSpec::Tcp {
                address: "127.0.0.1:40001".into(),
                timeout: second
            })
        );
        assert_eq!(
            ready_probe(
                "cache",
                "http://127.0.0.1:{port:cache:6379}/up",
                &response,
                "127.0.0.1",
                second
            ),
            Ok(ProbeSpec::Http {
                url: "http://127.0.0.1:40001/up".into(),
                timeout: second
            })
        );
        // On a remote engine, where it publishes ports.
        assert_eq!(
            ready_probe(
                "cache",
                "tcp://{engine_host}:{port:cache:6379}",
                &response,
                "10.0.3.2",
                second
            ),
            Ok(ProbeSpec::Tcp {
                address: "10.0.3.2:40001".into(),
                timeout: second
            })
        );
        let error = ready_probe(
            "cache",
            "tcp://127.0.0.1:{port:cache:1}",
            &response,
            "127.0.0.1",
            second,
        )
        .unwrap_err();
        assert!(error.contains("publishes no host port"), "{error}");
    }

    #[tokio::test]
    async fn a_tcp_probe_passes_on_a_listener_and_fails_on_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accept = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
            drop(socket);
        });
        let (passed, output) = tcp(&address, Duration::from_secs(2)).await;
        assert!(passed, "{output}");
        accept.await.unwrap();
        // The listener is gone: refused.
        let (passed, output) = tcp(&address, Duration::from_secs(2)).await;
        assert!(!passed, "{output}");
    }
}
