//! The engine calls the wait and `health` make about a compose project's containers: list and
//! inspect them, their last log lines and healthcheck output, the event subscription, and the
//! host ports they publish (what `[endpoints]` resolve against).
//!
//! Not here: what the events mean ([super::watch]), removing anything ([super::down]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bollard::models::{ContainerInspectResponse, EventMessage};
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder, LogsOptionsBuilder,
};
use futures_util::StreamExt;

use super::watch::Inspected;
use super::COMPOSE_PROJECT;
use crate::endpoints::Lookup;

/// Host ports the engine published, by (service, container port).
#[derive(Debug, Clone, Default)]
pub struct PublishedPorts(pub BTreeMap<(String, u16), u16>);

impl Lookup for PublishedPorts {
    fn port(&self, service: &str, container_port: u16) -> Option<u16> {
        self.0.get(&(service.to_owned(), container_port)).copied()
    }
}

impl PublishedPorts {
    /// Adds a container's `NetworkSettings.Ports`; loopback bindings are preferred.
    pub fn add(&mut self, service: &str, response: &ContainerInspectResponse) {
        for (key, port) in container_ports(response) {
            self.0.entry((service.to_owned(), key)).or_insert(port);
        }
    }

    /// `127.0.0.1:49153->8000` lines for a service, on the engine's host (`{engine_host}`).
    pub fn describe(&self, service: &str, engine_host: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|((s, _), _)| s == service)
            .map(|((_, container), host)| format!("{engine_host}:{host}->{container}"))
            .collect()
    }
}

/// (container port, host port) of one container, tcp, a loopback binding preferred.
pub fn container_ports(response: &ContainerInspectResponse) -> Vec<(u16, u16)> {
    let Some(ports) = response
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, bindings) in ports {
        let (number, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
        let (Ok(container), "tcp") = (number.parse::<u16>(), protocol) else {
            continue;
        };
        let Some(bindings) = bindings else { continue };
        // A binding on one address (a remote engine's own, `{engine_host}`) is still a way in,
        // after loopback and every address.
        let rank = |ip: &str| match ip {
            "127.0.0.1" | "::1" => 0,
            "" | "0.0.0.0" | "::" => 1,
            _ => 2,
        };
        let best = bindings
            .iter()
            .filter_map(|b| {
                let host: u16 = b.host_port.as_deref()?.parse().ok()?;
                Some((rank(b.host_ip.as_deref().unwrap_or("")), host))
            })
            .min();
        if let Some((_, host)) = best {
            out.push((container, host));
        }
    }
    out.sort();
    out
}

pub(super) fn filters(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (key, value) in pairs {
        map.entry((*key).to_owned())
            .or_default()
            .push((*value).to_owned());
    }
    map
}

/// Inspects every container of a compose project (one-off containers excluded).
pub async fn inspect_project(
    docker: &bollard::Docker,
    project: &str,
) -> anyhow::Result<Vec<(Inspected, ContainerInspectResponse)>> {
    let label = format!("{COMPOSE_PROJECT}={project}");
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters(&[("label", &label)]))
        .build();
    let list = docker
        .list_containers(Some(options))
        .await
        .with_context(|| format!("cannot list the containers of compose project `{project}`"))?;
    let mut out = Vec::new();
    for summary in list {
        let Some(id) = summary.id else { continue };
        match docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
        {
            Ok(response) => {
                if let Some(inspected) = Inspected::from_response(&response) {
                    out.push((inspected, response));
                }
            }
            // Removed between the list and the inspection.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot inspect container {id}"));
            }
        }
    }
    Ok(out)
}

/// The last `lines` log lines of a container, stdout and stderr interleaved.
pub async fn container_logs(docker: &bollard::Docker, container: &str, lines: usize) -> String {
    let options = LogsOptionsBuilder::new()
        .stdout(true)
        .stderr(true)
        .tail(&lines.to_string())
        .build();
    let collect = async {
        let mut text = String::new();
        let mut stream = docker.logs(container, Some(options));
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => text.push_str(&chunk.to_string()),
                Err(e) => {
                    text.push_str(&format!("(logs cut short: {e})\n"));
                    break;
                }
            }
        }
        text
    };
    match tokio::time::timeout(Duration::from_secs(10), collect).await {
        Ok(text) if text.trim().is_empty() => "(the container printed nothing)".to_owned(),
        Ok(text) => text,
        Err(_) => "(logs did not arrive within 10s)".to_owned(),
    }
}

/// The last healthcheck output of a container, when it has one.
pub(super) async fn last_probe_output(docker: &bollard::Docker, container: &str) -> Option<String> {
    let response = docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()?;
    let log = response.state?.health?.log?;
    let last = log.last()?;
    Some(format!(
        "last healthcheck: exit {} {}",
        last.exit_code.unwrap_or(-1),
        last.output.as_deref().unwrap_or("").trim()
    ))
}

fn unix_time_arg(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// Subscribes to the project's container events from `since` on (the engine replays what
/// happened between `since` and the subscription, so nothing is missed).
pub(super) fn subscribe(
    docker: &bollard::Docker,
    project: &str,
    since: SystemTime,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Result<EventMessage, bollard::errors::Error>>,
    AbortOnDrop,
) {
    let label = format!("{COMPOSE_PROJECT}={project}");
    let mut pairs = vec![("type", "container"), ("label", label.as_str())];
    for event in [
        "create",
        "start",
        "restart",
        "die",
        "kill",
        "stop",
        "oom",
        "destroy",
        "health_status",
    ] {
        pairs.push(("event", event));
    }
    let options = EventsOptionsBuilder::new()
        .since(&unix_time_arg(since))
        .filters(&filters(&pairs))
        .build();
    let stream = docker.events(Some(options));
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        futures_util::pin_mut!(stream);
        while let Some(item) = stream.next().await {
            if sender.send(item).is_err() {
                break;
            }
        }
    });
    (receiver, AbortOnDrop::new(task))
}

/// Stops a background task when the wait ends, on every path.
pub(super) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    pub(super) fn new(task: tokio::task::JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(task)
    }

    pub(super) fn spawn(task: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        AbortOnDrop(tokio::spawn(task))
    }

    pub(super) fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints;

    #[test]
    fn published_ports_prefer_loopback_and_resolve_endpoints() {
        use bollard::models::{NetworkSettings, PortBinding};
        let response = ContainerInspectResponse {
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "8000/tcp".to_owned(),
                        Some(vec![
                            PortBinding {
                                host_ip: Some("0.0.0.0".into()),
                                host_port: Some("1111".into()),
                            },
                            PortBinding {
                                host_ip: Some("127.0.0.1".into()),
                                host_port: Some("49153".into()),
                            },
                        ]),
                    ),
                    ("9000/tcp".to_owned(), None),
                    (
                        "7000/tcp".to_owned(),
                        Some(vec![PortBinding {
                            host_ip: Some("10.0.3.2".into()),
                            host_port: Some("49160".into()),
                        }]),
                    ),
                    (
                        "53/udp".to_owned(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some("5353".into()),
                        }]),
                    ),
                ])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        };
        let mut ports = PublishedPorts::default();
        ports.add("api", &response);
        assert_eq!(ports.port("api", 8000), Some(49153));
        assert_eq!(ports.port("api", 9000), None);
        // Published on the engine's own address only (a remote engine): still found.
        assert_eq!(ports.port("api", 7000), Some(49160));
        assert_eq!(
            ports.describe("api", "127.0.0.1")[1],
            "127.0.0.1:49153->8000"
        );
        let templates = BTreeMap::from([(
            "api".to_owned(),
            "http://127.0.0.1:{port:api:8000}/v1".to_owned(),
        )]);
        assert_eq!(
            endpoints::resolve_all(&templates, &ports).unwrap()["api"],
            "http://127.0.0.1:49153/v1"
        );
    }
}
