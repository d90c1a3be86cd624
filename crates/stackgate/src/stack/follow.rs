//! Following a stack for the whole run: every container's output, from its start until
//! teardown, in `runs/<run id>/logs/<service>.log`, and each container's engine state changes
//! (created, started, each healthcheck attempt, healthy, unhealthy, died, oom, stopping) with the
//! engine's timestamps, written into that log and handed to a callback (the gate's events).
//! [`Follow::stop`] ends it at teardown, before the containers are removed.
//!
//! Not here: readiness and the wait ([super::watch], [super::up]); the engine calls they share
//! ([super::containers]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures_util::StreamExt;
use serde::Serialize;

use super::containers::subscribe;
use super::watch::{parse_rfc3339, ContainerEvent};

/// A state a container entered, as the engine said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ContainerState {
    Created,
    /// Running (and, with a healthcheck, starting until healthy).
    Started,
    /// One healthcheck attempt ended: its exit code, how long it took, the end of its output.
    Probe {
        exit_code: i64,
        #[serde(serialize_with = "secs")]
        took: Duration,
        output: String,
    },
    Healthy,
    Unhealthy,
    /// It exited (`exit_code` as the engine gave it).
    Died {
        exit_code: Option<String>,
    },
    /// It ran out of memory.
    Oom,
    /// It is being stopped or killed (teardown, compose recreating it).
    Stopping,
}

impl ContainerState {
    /// How it reads in a log line or a timeline.
    pub fn describe(&self) -> String {
        match self {
            ContainerState::Created => "created".to_owned(),
            ContainerState::Started => "started".to_owned(),
            ContainerState::Probe {
                exit_code, took, ..
            } => format!(
                "healthcheck exit {exit_code} ({})",
                crate::ui::duration(*took)
            ),
            ContainerState::Healthy => "healthy".to_owned(),
            ContainerState::Unhealthy => "unhealthy".to_owned(),
            ContainerState::Died { exit_code } => format!(
                "exited with code {}",
                exit_code.as_deref().unwrap_or("unknown")
            ),
            ContainerState::Oom => "out of memory".to_owned(),
            ContainerState::Stopping => "stopping".to_owned(),
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}

/// One change: which service's container, what, and when by the engine's clock.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub service: String,
    /// The container's name.
    pub container: String,
    pub state: ContainerState,
    pub time: SystemTime,
}

/// Receives every state change as it happens.
pub type StateSink = Arc<dyn Fn(StateChange) + Send + Sync>;

/// The follower of one run's stack; [`Follow::stop`] ends it.
pub struct Follow {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The log file of one service (every container of it appends there).
type LogFile = Arc<Mutex<std::fs::File>>;

/// Starts following the project's containers from `since` (the engine replays what happened
/// between `since` and the subscription).
pub fn follow(
    docker: &bollard::Docker,
    project: &str,
    logs_dir: PathBuf,
    since: SystemTime,
    sink: StateSink,
) -> Follow {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let docker = docker.clone();
    let project = project.to_owned();
    let task = tokio::spawn(async move {
        let (mut events, _subscription) = subscribe(&docker, &project, since);
        let mut files: BTreeMap<String, LogFile> = BTreeMap::new();
        let mut readers: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
        let mut probes_seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        loop {
            let message = tokio::select! {
                _ = &mut stopped => break,
                message = events.recv() => message,
            };
            let Some(Ok(message)) = message else { break };
            let Some(event) = ContainerEvent::from_message(&message) else {
                continue;
            };
            if !event.name.is_empty() {
                names.insert(event.container.clone(), event.name.clone());
            }
            let name = names
                .get(&event.container)
                .cloned()
                .unwrap_or_else(|| event.container.chars().take(12).collect());
            let file = match files.get(&event.service) {
                Some(file) => file.clone(),
                None => match open_log(&logs_dir, &event.service) {
                    Some(file) => {
                        files.insert(event.service.clone(), file.clone());
                        file
                    }
                    None => continue,
                },
            };
            let mut changes = Vec::new();
            let action = event.action.as_str();
            match action {
                "create" => changes.push((ContainerState::Created, event.time)),
                // `docker restart` says `start`, then `restart`: one change.
                "restart" => {}
                "start" => {
                    changes.push((ContainerState::Started, event.time));
                    let follows = readers
                        .get(&event.container)
                        .is_some_and(|reader| !reader.is_finished());
                    if !follows {
                        readers.insert(
                            event.container.clone(),
                            tokio::spawn(copy_logs(
                                docker.clone(),
                                event.container.clone(),
                                file.clone(),
                            )),
                        );
                    }
                }
                "die" => changes.push((
                    ContainerState::Died {
                        exit_code: event.exit_code.clone(),
                    },
                    event.time,
                )),
                "oom" => changes.push((ContainerState::Oom, event.time)),
                "kill" | "stop" => changes.push((ContainerState::Stopping, event.time)),
                _ if action.starts_with("health_status") => {
                    // The engine keeps the last five attempts; each is reported once.
                    for (state, time) in probes(&docker, &event.container).await {
                        let key = (event.container.clone(), format!("{time:?}"));
                        if probes_seen.insert(key) {
                            changes.push((state, time));
                        }
                    }
                    let healthy = action.ends_with("healthy") && !action.ends_with("unhealthy");
                    changes.push((
                        if healthy {
                            ContainerState::Healthy
                        } else {
                            ContainerState::Unhealthy
                        },
                        event.time,
                    ));
                }
                _ => {}
            }
            for (state, time) in changes {
                write_line(
                    &file,
                    &format!(
                        "=== xtask {}: container {name} {}",
                        crate::junit::timestamp(time),
                        state.describe()
                    ),
                );
                sink(StateChange {
                    service: event.service.clone(),
                    container: name.clone(),
                    state,
                    time,
                });
            }
        }
        // What the followers read is written as it arrives; a moment for what is in flight.
        tokio::time::sleep(Duration::from_millis(20)).await;
        for reader in readers.into_values() {
            reader.abort();
        }
    });
    Follow { stop, task }
}

impl Follow {
    /// Stops following (within two seconds); the log files keep what was read.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

fn open_log(dir: &Path, service: &str) -> Option<LogFile> {
    std::fs::create_dir_all(dir).ok()?;
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{safe}.log")))
        .ok()?;
    Some(Arc::new(Mutex::new(file)))
}

/// Adds a line of the harness's own to a service's log (`=== xtask <now>: <text>`), for what
/// the engine does not say (a service ready by the harness's probe before the engine's check).
pub fn note(logs_dir: &Path, service: &str, text: &str) {
    if let Some(file) = open_log(logs_dir, service) {
        write_line(
            &file,
            &format!(
                "=== xtask {}: {text}",
                crate::junit::timestamp(SystemTime::now())
            ),
        );
    }
}

fn write_line(file: &LogFile, line: &str) {
    let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
    // A full disk must not stop the gate: the log is for reading afterwards.
    let _ = writeln!(file, "{line}");
}

/// Copies a container's output, from its start, into its service's log as it comes, until the
/// container stops or the follower is stopped.
async fn copy_logs(docker: bollard::Docker, container: String, file: LogFile) {
    let options = LogsOptionsBuilder::new()
        .follow(true)
        .stdout(true)
        .stderr(true)
        .build();
    let mut stream = docker.logs(&container, Some(options));
    while let Some(item) = stream.next().await {
        let Ok(chunk) = item else { break };
        let bytes = chunk.into_bytes();
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        let _ = file.write_all(&bytes);
    }
}

/// The healthcheck attempts the engine still holds for a container, each at its end.
async fn probes(docker: &bollard::Docker, container: &str) -> Vec<(ContainerState, SystemTime)> {
    let inspected = tokio::time::timeout(
        Duration::from_secs(5),
        docker.inspect_container(container, None::<InspectContainerOptions>),
    )
    .await;
    let Ok(Ok(response)) = inspected else {
        return Vec::new();
    };
    let log = response
        .state
        .and_then(|s| s.health)
        .and_then(|h| h.log)
        .unwrap_or_default();
    log.into_iter()
        .filter_map(|probe| {
            let end = parse_rfc3339(probe.end.as_deref()?)?;
            let start = probe
                .start
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(end);
            let output = probe.output.unwrap_or_default();
            let output = crate::process::last_lines(&output, 3);
            Some((
                ContainerState::Probe {
                    exit_code: probe.exit_code.unwrap_or(-1),
                    took: end.duration_since(start).unwrap_or_default(),
                    output,
                },
                end,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_a_person_would_say_them() {
        assert_eq!(
            ContainerState::Died {
                exit_code: Some("3".into())
            }
            .describe(),
            "exited with code 3"
        );
        assert_eq!(
            ContainerState::Probe {
                exit_code: 1,
                took: Duration::from_millis(120),
                output: "refused".into()
            }
            .describe(),
            "healthcheck exit 1 (0.12s)"
        );
        let json = serde_json::to_value(ContainerState::Healthy).unwrap();
        assert_eq!(json["state"], "healthy");
    }
}
