//! Stopping a run's containers before they are removed: each with its own grace (its service's
//! `stop_grace_period`, which the labels override puts on the container), or, once the run is
//! interrupted, with the short `stack.interrupt_stop_timeout_s`; whatever has not stopped by then
//! is killed. How urgent it is may rise while it runs ([`Urgency`]): the gate raises it as
//! signals arrive during teardown.
//!
//! Not here: removing the containers ([super::down]), writing the label ([super::labels]).

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{KillContainerOptionsBuilder, StopContainerOptionsBuilder};
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::labels::LABEL_STOP_GRACE;
use super::COMPOSE_SERVICE;

/// The engine's own grace when neither the call nor the container names one.
pub const ENGINE_GRACE: Duration = Duration::from_secs(10);
/// After its own grace the engine kills and waits for the exit itself; on the normal path a
/// stop call that has not returned this long after that (an engine busy with the container) is
/// given up and the container killed by the harness. After a signal there is no margin: the
/// harness kills at the short timeout, at the same moment as the engine would.
const CALL_MARGIN: Duration = Duration::from_secs(2);
/// How long the kills of what did not stop may take before removal (which kills too) goes on.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// How urgently containers are stopped; it only rises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The normal path: each container gets its own grace.
    Graceful,
    /// The run was interrupted: each gets the short timeout, then is killed.
    Interrupted,
    /// Interrupted again: what has not stopped is killed now.
    Now,
}

/// The level as the caller raises it ([`Urgency::channel`]), or one that never changes
/// ([`Urgency::fixed`]).
#[derive(Debug, Clone)]
pub struct Urgency(watch::Receiver<Level>);

impl Urgency {
    /// An urgency starting at `start`, and what raises it ([`raise`]).
    pub fn channel(start: Level) -> (watch::Sender<Level>, Urgency) {
        let (sender, receiver) = watch::channel(start);
        (sender, Urgency(receiver))
    }

    /// An urgency nobody raises (`docker-down`).
    pub fn fixed(level: Level) -> Urgency {
        Urgency::channel(level).1
    }

    pub fn level(&self) -> Level {
        *self.0.borrow()
    }

    /// Waits until the level rises above `level`; never returns when nobody can raise it.
    async fn above(&mut self, level: Level) -> Level {
        // The watch's guard must not live across the pending await: the future stays `Send`.
        let raised = self.0.wait_for(|now| *now > level).await.map(|now| *now);
        match raised {
            Ok(now) => now,
            Err(_) => std::future::pending().await,
        }
    }
}

/// Raises the urgency one level (at most to [`Level::Now`]); the new level.
pub fn raise(sender: &watch::Sender<Level>) -> Level {
    sender.send_modify(|level| {
        *level = match *level {
            Level::Graceful => Level::Interrupted,
            Level::Interrupted | Level::Now => Level::Now,
        }
    });
    *sender.borrow()
}

/// What stopping did: the containers it had to kill, each with why.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// `postgres (not stopped within 2s)`, `web (interrupted again)`.
    pub killed: Vec<String>,
}

/// A container's own grace: its `io.xtask.stop-grace-s` label (compose's `stop_grace_period`),
/// else the engine's ([`ENGINE_GRACE`], `None`: the call names none).
pub fn own_grace(labels: &HashMap<String, String>) -> Option<Duration> {
    labels
        .get(LABEL_STOP_GRACE)
        .and_then(|value| value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// What the stop call asks of the engine for a container, at `level`: its grace in whole
/// seconds (`None`: the container's own), so that the engine kills it itself when it ends.
fn call_grace(level: Level, own: Option<Duration>, short: Duration) -> Option<Duration> {
    match level {
        Level::Graceful => own,
        Level::Interrupted => Some(short),
        Level::Now => Some(Duration::ZERO),
    }
}

/// When the harness stops waiting, at `level`, for a container that started stopping at `start`
/// with the engine told `grace`, and kills it.
fn give_up_at(level: Level, start: Instant, grace: Option<Duration>) -> Instant {
    match level {
        Level::Graceful => start + grace.unwrap_or(ENGINE_GRACE) + CALL_MARGIN,
        Level::Interrupted => start + grace.unwrap_or(Duration::ZERO),
        Level::Now => start,
    }
}

/// A container's name for people: its compose service, else its name.
fn display_name(name: &str, labels: &HashMap<String, String>) -> String {
    labels
        .get(COMPOSE_SERVICE)
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// Stops every container of `labelled` at once, each as `urgency` says (its own grace; after a
/// signal `short`; when interrupted again at once); what has not stopped in time is killed.
/// Errors are not returned: a container that could not be stopped is killed, and whatever is
/// left shows at removal.
pub async fn stop_containers(
    docker: &bollard::Docker,
    labelled: &Labelled,
    urgency: &Urgency,
    short: Duration,
) -> Stopped {
    let mut urgency = urgency.clone();
    let began = Instant::now();
    let mut level = urgency.level();
    // When each container still stopping is given up on.
    let mut deadlines: HashMap<&str, Instant> = HashMap::new();
    let mut pending = FuturesUnordered::new();
    for (id, _, labels) in &labelled.containers {
        let grace = call_grace(level, own_grace(labels), short);
        deadlines.insert(id.as_str(), give_up_at(level, began, grace));
        pending.push(async move {
            let mut options = StopContainerOptionsBuilder::new();
            if let Some(grace) = grace {
                // The engine counts whole seconds: round up, so that a container is never
                // given less than its grace.
                let seconds = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
                options = options.t(i32::try_from(seconds).unwrap_or(i32::MAX));
            }
            // 304 (not running) and 404 (gone) are what we want; anything else shows at
            // removal.
            let _ = docker.stop_container(id, Some(options.build())).await;
            id.as_str()
        });
    }
    let mut stopped = Stopped::default();
    while let Some(deadline) = deadlines.values().min().copied() {
        tokio::select! {
            done = pending.next() => match done {
                Some(id) => {
                    deadlines.remove(id);
                }
                None => break,
            },
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                let late: Vec<&str> = deadlines
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in &late {
                    deadlines.remove(id);
                }
                stopped.killed.extend(kill(docker, labelled, &late, level, short).await);
            }
            risen = urgency.above(level) => {
                level = risen;
                // Already stopping: the engine's own grace goes on, but the harness kills
                // earlier when the new level says so.
                let cut = give_up_at(level, Instant::now(), Some(short));
                for at in deadlines.values_mut() {
                    *at = (*at).min(cut);
                }
            }
        }
    }
    stopped
}

/// Kills the containers `ids` of `labelled` all at once (at most [`KILL_WAIT`]); each as
/// `service (why)`.
async fn kill(
    docker: &bollard::Docker,
    labelled: &Labelled,
    ids: &[&str],
    level: Level,
    short: Duration,
) -> Vec<String> {
    let why = match level {
        Level::Graceful => "not stopped within its grace".to_owned(),
        Level::Interrupted => format!(
            "not stopped within {} after the interrupt",
            crate::ui::duration(short)
        ),
        Level::Now => "interrupted again".to_owned(),
    };
    let kills = ids.iter().map(|id| async move {
        let options = KillContainerOptionsBuilder::new().signal("SIGKILL").build();
        // 404 (gone) and 409 (not running) are what we want; removal kills anyway.
        let _ = docker.kill_container(id, Some(options)).await;
    });
    let _ = tokio::time::timeout(KILL_WAIT, futures_util::future::join_all(kills)).await;
    labelled
        .containers
        .iter()
        .filter(|(id, _, _)| ids.contains(&id.as_str()))
        .map(|(_, name, labels)| format!("{} ({why})", display_name(name, labels)))
        .collect()
}

/// What carries a label: containers, networks, volumes (names for people, ids for removal).
#[derive(Debug, Default, Clone)]
pub struct Labelled {
    /// (id, name, labels)
    pub containers: Vec<(String, String, HashMap<String, String>)>,
    pub networks: Vec<(String, String, HashMap<String, String>)>,
    pub volumes: Vec<(String, HashMap<String, String>)>,
}

impl Labelled {
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty() && self.networks.is_empty() && self.volumes.is_empty()
    }

    pub fn count(&self) -> usize {
        self.containers.len() + self.networks.len() + self.volumes.len()
    }

    /// Everything, as `container NAME`, `network NAME`, `volume NAME`.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        out.extend(
            self.containers
                .iter()
                .map(|(_, n, _)| format!("container {n}")),
        );
        out.extend(self.networks.iter().map(|(_, n, _)| format!("network {n}")));
        out.extend(self.volumes.iter().map(|(n, _)| format!("volume {n}")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grace_of_a_container_comes_from_its_label() {
        let labels = HashMap::from([(LABEL_STOP_GRACE.to_owned(), "90".to_owned())]);
        assert_eq!(own_grace(&labels), Some(Duration::from_secs(90)));
        assert_eq!(own_grace(&HashMap::new()), None);
        let bad = HashMap::from([(LABEL_STOP_GRACE.to_owned(), "soon".to_owned())]);
        assert_eq!(own_grace(&bad), None);
    }

    #[test]
    fn each_level_asks_the_engine_for_its_own_grace() {
        let own = Some(Duration::from_secs(90));
        let short = Duration::from_secs(2);
        assert_eq!(call_grace(Level::Graceful, own, short), own);
        assert_eq!(call_grace(Level::Graceful, None, short), None);
        assert_eq!(call_grace(Level::Interrupted, own, short), Some(short));
        assert_eq!(call_grace(Level::Now, own, short), Some(Duration::ZERO));
    }

    #[tokio::test]
    async fn urgency_only_rises_and_a_fixed_one_never_does() {
        let (sender, mut urgency) = Urgency::channel(Level::Graceful);
        assert_eq!(raise(&sender), Level::Interrupted);
        assert_eq!(urgency.above(Level::Graceful).await, Level::Interrupted);
        assert_eq!(raise(&sender), Level::Now);
        assert_eq!(raise(&sender), Level::Now);
        assert_eq!(urgency.level(), Level::Now);

        let mut fixed = Urgency::fixed(Level::Graceful);
        let waited =
            tokio::time::timeout(Duration::from_millis(50), fixed.above(Level::Graceful)).await;
        assert!(waited.is_err(), "a fixed urgency rose");
    }
}
