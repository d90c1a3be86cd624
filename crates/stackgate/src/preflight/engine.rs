//! The pre-flight checks that ask the engine: the engine a client would use, pinged (it warns
//! when nothing answers: `docker-up` may still start it), and where the disk check should look:
//! the engine's own data root from its `/info` for a local engine; for a remote one, nothing on
//! this machine.
//!
//! Not here: starting the engine ([crate::engine]), reading the machine ([super::host]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::engine::{candidates, discover, Candidate, DiscoveryEnv, Host, Source};
use crate::report::{Check, Outcome};
use crate::ui;

/// How long the ping may take before the engine counts as not answering.
const PING_DEADLINE: Duration = Duration::from_secs(3);
/// How long its `/info` and `/version` may take (the data root and the version are extras).
const INFO_DEADLINE: Duration = Duration::from_secs(5);

/// The engine a client would use, as the checks found it.
#[derive(Debug, Clone)]
pub(super) struct Reached {
    pub host: Host,
    /// It answered the ping.
    pub answered: bool,
    /// `DockerRootDir` of its `/info`, when it answered.
    pub data_root: Option<PathBuf>,
}

/// The `engine` check: which engine (DOCKER_HOST, a context, a known socket) and whether it
/// answers; with what the disk check needs to know about it.
pub(super) async fn engine_check() -> (Check, Option<Reached>) {
    let started = Instant::now();
    let list = match candidates(&DiscoveryEnv::from_process()) {
        Ok(list) => list,
        Err(problem) => {
            let remedy = problem.hint().map(str::to_owned);
            let check = Check::failed("engine", started.elapsed(), problem.to_string());
            return (
                match remedy {
                    Some(remedy) => check.with_remedy(remedy),
                    None => check,
                },
                None,
            );
        }
    };
    let (discovery, found) = tokio::time::timeout(PING_DEADLINE * 2, discover(&list))
        .await
        .unwrap_or_default();
    if let Some((index, docker)) = found {
        let candidate = &list[index];
        let answered_in = started.elapsed();
        // The API version first: podman refuses paths of versions newer than its own.
        let docker =
            match tokio::time::timeout(INFO_DEADLINE, docker.clone().negotiate_version()).await {
                Ok(Ok(negotiated)) => negotiated,
                _ => docker,
            };
        // Podman's /info takes about a second: both asked at once, each within its deadline.
        let (info, version) = tokio::join!(
            tokio::time::timeout(INFO_DEADLINE, docker.info()),
            tokio::time::timeout(INFO_DEADLINE, docker.version())
        );
        let data_root = info
            .ok()
            .and_then(Result::ok)
            .and_then(|i| i.docker_root_dir)
            .map(PathBuf::from);
        let version = version
            .ok()
            .and_then(Result::ok)
            .and_then(|v| v.version)
            .unwrap_or_else(|| "?".to_owned());
        let detail = format!(
            "{} ({}): answered in {}, server {version}{}",
            candidate.host,
            candidate.source,
            ui::duration(answered_in),
            if candidate.host.is_remote() {
                ", remote".to_owned()
            } else {
                String::new()
            }
        );
        return (
            Check::passed("engine", started.elapsed(), detail),
            Some(Reached {
                host: candidate.host.clone(),
                answered: true,
                data_root,
            }),
        );
    }
    // Nothing answers: say which engine would be used, and that it was asked.
    let named = list
        .iter()
        .find(|c| !matches!(c.source, Source::Known(_)))
        .or_else(|| list.first());
    let detail = if discovery.candidates.is_empty() {
        "no engine address to try".to_owned()
    } else {
        format!(
            "no engine answers: {}",
            crate::engine::describe_candidates(&discovery)
        )
    };
    let check =
        Check::new("engine", Outcome::Warned, started.elapsed(), detail).with_remedy(match named {
            Some(Candidate {
                host: Host::Tcp(_) | Host::TcpTls { .. },
                ..
            }) => "start the engine at that address, or point DOCKER_HOST at one that runs",
            _ => "`cargo xtask docker-up` starts the engine, `--install` installs it",
        });
    (
        check,
        named.map(|c| Reached {
            host: c.host.clone(),
            answered: false,
            data_root: None,
        }),
    )
}

/// Where the disk check looks, and why there: `None` when the engine's disk is not this
/// machine's (a remote engine), with the detail saying so.
pub(super) enum DiskPlace {
    /// A directory on this machine, and where its name came from.
    Local(Option<PathBuf>, String),
    /// The engine writes to another machine's disk.
    Remote(String),
}

pub(super) fn disk_place(reached: Option<&Reached>) -> DiskPlace {
    match reached {
        Some(reached) if reached.host.is_remote() => DiskPlace::Remote(match &reached.data_root {
            Some(root) => format!(
                "the engine at {} is remote: its data root is {} on that machine (from its /info); \
                 free space there is not measured from here, and this machine's disk does not apply",
                reached.host,
                root.display()
            ),
            None => format!(
                "the engine at {} is remote{}: its disk is not this machine's",
                reached.host,
                if reached.answered {
                    ""
                } else {
                    " and does not answer"
                }
            ),
        }),
        Some(Reached {
            data_root: Some(root),
            host,
            ..
        }) => DiskPlace::Local(
            Some(root.clone()),
            format!("data root of the engine at {host}, from its /info"),
        ),
        _ => DiskPlace::Local(None, String::new()),
    }
}
