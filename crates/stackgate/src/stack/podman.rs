//! Healthchecks an engine does not run by itself. Podman schedules a container's healthcheck
//! with a systemd timer; without systemd (CI containers, this machine) the health stays
//! `starting` for ever, and so would compose's `service_healthy` waits. On podman the wait asks
//! the engine to run each pending container's healthcheck (`GET /libpod/containers/ID/healthcheck`)
//! at the healthcheck's own interval: podman records the result as its timer would (the health
//! in inspect, the `health_status` event, what compose waits for). Podman's `health_status`
//! event names no status; [`health_action`] reads it from the container.
//!
//! Not here: what readiness means ([super::watch]), the wait loop ([super::up]), the harness's
//! own readiness probes (exec, HTTP, TCP: [super::probe]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::query_parameters::InspectContainerOptions;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::containers::AbortOnDrop;
use crate::engine::{Engine, Host};

/// Docker's default healthcheck interval, when a container names none.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How long one asked-for healthcheck may take.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the healthchecks of the containers a wait is pending on, on an engine that needs it.
pub(super) struct Healthchecks {
    host: Host,
    /// When each container's next healthcheck is due, and its interval.
    due: HashMap<String, (Instant, Duration)>,
    /// The calls in flight: dropped with the wait.
    calls: Vec<AbortOnDrop>,
}

impl Healthchecks {
    /// The healthchecks of podman; `None` for engines that run healthchecks themselves.
    pub(super) fn for_engine(engine: &Engine) -> Option<Healthchecks> {
        if !engine.info.podman {
            return None;
        }
        Some(Healthchecks {
            host: Host::parse(&engine.info.host).ok()?,
            due: HashMap::new(),
            calls: Vec::new(),
        })
    }

    /// Asks for the healthcheck of every container in `pending` that is due.
    pub(super) async fn tick(&mut self, docker: &bollard::Docker, pending: Vec<String>) {
        let now = Instant::now();
        self.calls.retain(|call| !call.is_finished());
        for container in pending {
            let interval = match self.due.get(&container) {
                Some((due, _)) if *due > now => continue,
                Some((_, interval)) => *interval,
                None => interval_of(docker, &container).await,
            };
            self.due
                .insert(container.clone(), (now + interval, interval));
            let host = self.host.clone();
            // The result comes back as the engine's own health event; a failed call only
            // means no result this round.
            self.calls.push(AbortOnDrop::spawn(async move {
                let _ = tokio::time::timeout(CALL_DEADLINE, libpod_healthcheck(&host, &container))
                    .await;
            }));
        }
    }
}

/// `health_status: STATUS` (Docker's action) for an event that names no status, from what the
/// container says now.
pub(super) async fn health_action(docker: &bollard::Docker, container: &str) -> String {
    let status = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|r| r.state?.health?.status)
        .map_or_else(String::new, |s| s.to_string());
    format!("health_status: {status}")
}

/// The container's healthcheck interval (the default when it names none).
async fn interval_of(docker: &bollard::Docker, container: &str) -> Duration {
    docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|r| r.config?.healthcheck?.interval)
        .filter(|nanos| *nanos > 0)
        .map_or(DEFAULT_INTERVAL, |nanos| Duration::from_nanos(nanos as u64))
}

/// `GET /libpod/containers/ID/healthcheck` on the engine's socket: runs the healthcheck and
/// records its result. The HTTP status (200 ran; 409 no healthcheck; 500 not running).
pub(super) async fn libpod_healthcheck(host: &Host, container: &str) -> anyhow::Result<u16> {
    let path = format!("/v4.0.0/libpod/containers/{container}/healthcheck");
    match host {
        #[cfg(unix)]
        Host::Unix(socket) => {
            let stream = tokio::net::UnixStream::connect(socket)
                .await
                .with_context(|| format!("cannot connect to {host}"))?;
            get(stream, &path).await
        }
        // Podman's Docker-compatible socket is a unix socket; Windows reaches podman over a pipe.
        #[cfg(not(unix))]
        Host::Unix(_) => anyhow::bail!("{host}: unix sockets are not reachable from this platform"),
        Host::Tcp(authority) => {
            let stream = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .with_context(|| format!("cannot connect to {host}"))?;
            get(stream, &path).await
        }
        Host::TcpTls { .. } | Host::Npipe(_) => {
            anyhow::bail!(
                "{host}: the harness asks podman for healthchecks over a socket or plain tcp only"
            )
        }
    }
}

async fn get<S>(stream: S, path: &str) -> anyhow::Result<u16>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake with the engine")?;
    let _connection = AbortOnDrop::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::get(path)
        .header("host", "engine")
        .body(Empty::<Bytes>::new())?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("GET {path}"))?;
    Ok(response.status().as_u16())
}
