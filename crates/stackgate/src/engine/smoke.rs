//! Proving that the engine runs containers: the smoke container (`smoke_image`, else a local
//! fallback image; labelled with the run's labels, always removed), and what it needs from the
//! engine: whether an image is present, pulling one within a deadline, image references, the
//! engine's networks.
//!
//! Not here: building base images ([`crate::images`]), the stack's containers ([`crate::stack`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use futures_util::StreamExt;

use super::Engine;
use crate::config::Config;
use crate::progress::Progress;
use crate::report::Check;
use crate::state::{self, Owner};
use crate::ui;

/// How long a pull may take before the harness gives up on registries (none answers here).
pub const PULL_DEADLINE: Duration = Duration::from_secs(20);

/// Whether an image is present on the engine.
pub async fn image_present(docker: &Docker, name: &str) -> bool {
    docker.inspect_image(name).await.is_ok()
}

/// Pulls an image within `deadline`; the error says why it could not be had.
pub async fn pull(docker: &Docker, name: &str, deadline: Duration) -> anyhow::Result<()> {
    let (image, tag) = split_reference(name);
    let options = bollard::query_parameters::CreateImageOptions {
        from_image: Some(image.to_owned()),
        tag: Some(tag.to_owned()),
        ..Default::default()
    };
    let pulling = async {
        let mut stream = docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok::<(), bollard::errors::Error>(())
    };
    match tokio::time::timeout(deadline, pulling).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("pull of `{name}` failed: {}", super::short_error(&e)),
        Err(_) => anyhow::bail!(
            "pull of `{name}` did not finish within {}",
            ui::duration(deadline)
        ),
    }
}

/// `repo:tag` → (`repo`, `tag`); a missing tag is `latest`; a registry port is not a tag.
pub fn split_reference(name: &str) -> (&str, &str) {
    let name = name.split('@').next().unwrap_or(name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (name, "latest"),
    }
}

/// The run a smoke container belongs to. The container carries that run's labels, so that the
/// run's teardown, or a later sweep of a killed run, finds it like everything else the run created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmokeRun {
    pub run_id: String,
    /// The process that owns the run.
    pub owner: Owner,
}

impl SmokeRun {
    /// Run `run_id`, owned by this process.
    pub fn new(run_id: impl Into<String>) -> SmokeRun {
        SmokeRun {
            run_id: run_id.into(),
            owner: Owner::me(),
        }
    }

    /// The container's name: the run id, and the time, because one run may smoke more than once
    /// (a second `docker-up` continues the run of the first).
    fn container_name(&self) -> String {
        format!("xtask-smoke-{}-{:x}", self.run_id, crate::clock::unix_ms())
    }
}

/// Runs the smoke container (`smoke_image`, else a local fallback) that must exit 0, labelled as
/// part of `run`. Long waits (a pull, the container) are said through `progress`.
pub async fn smoke(engine: &Engine, config: &Config, run: &SmokeRun, progress: &Progress) -> Check {
    let began = Instant::now();
    let docker = &engine.docker;
    let cfg = &config.engine;
    let deadline = cfg.smoke_timeout_s.duration();

    // The image: smoke_image when present or pullable, else the local fallback with its command.
    let mut why_not = String::new();
    let mut pull_error = String::new();
    let (image, cmd) = if image_present(docker, &cfg.smoke_image).await {
        (cfg.smoke_image.clone(), None)
    } else {
        let pull_deadline = PULL_DEADLINE.min(deadline);
        let pulling = pull(docker, &cfg.smoke_image, pull_deadline);
        let what = format!("the pull of `{}`", cfg.smoke_image);
        match progress.while_waiting(&what, pull_deadline, pulling).await {
            Ok(()) => (cfg.smoke_image.clone(), None),
            Err(e) => {
                pull_error = format!("{e:#}");
                why_not = format!("`{}` cannot be pulled, local fallback: ", cfg.smoke_image);
                let fallback = cfg
                    .smoke_fallback_image
                    .clone()
                    .or_else(|| config.images.keys().next().cloned());
                match fallback {
                    Some(image) if image_present(docker, &image).await => {
                        (image, Some(cfg.smoke_fallback_cmd.clone()))
                    }
                    Some(image) => {
                        return Check::failed(
                            "smoke container",
                            began.elapsed(),
                            format!("`{}` cannot be pulled ({pull_error}) and fallback image `{image}` is not present either", cfg.smoke_image),
                        )
                        .with_remedy(
                            "run `cargo xtask docker-up` to provision the [images] entries, or set `smoke_fallback_image` under [engine] to a local image",
                        );
                    }
                    None => {
                        return Check::failed(
                            "smoke container",
                            began.elapsed(),
                            format!("`{}` cannot be pulled ({pull_error}) and no fallback image is configured", cfg.smoke_image),
                        )
                        .with_remedy(
                            "set `smoke_fallback_image` under [engine] to a local image, or add an [images] entry",
                        );
                    }
                }
            }
        }
    };

    let name = run.container_name();
    let body = container_body(config, run, &image, cmd.clone());
    let created = docker
        .create_container(
            Some(bollard::query_parameters::CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            }),
            body,
        )
        .await;
    let id = match created {
        Ok(created) => created.id,
        Err(e) => {
            return Check::failed(
                "smoke container",
                began.elapsed(),
                format!("{why_not}cannot create a container from `{image}`: {e}"),
            )
        }
    };
    let what = format!("the smoke container `{name}` to exit");
    let outcome = progress
        .while_waiting(&what, deadline, run_to_exit(docker, &id, deadline))
        .await;
    let logs = if outcome.is_err() {
        container_logs(docker, &id).await
    } else {
        String::new()
    };
    // Always removed, whatever happened.
    let _ = docker
        .remove_container(
            &id,
            Some(bollard::query_parameters::RemoveContainerOptions {
                force: true,
                v: true,
                ..Default::default()
            }),
        )
        .await;
    let shown_cmd = cmd
        .map(|c| format!(" running `{}`", c.join(" ")))
        .unwrap_or_default();
    match outcome {
        Ok(()) => {
            let check = Check::passed(
                "smoke container",
                began.elapsed(),
                format!(
                    "{why_not}`{image}`{shown_cmd} exited 0 in {}",
                    ui::duration(began.elapsed())
                ),
            );
            if pull_error.is_empty() {
                check
            } else {
                check.with_output(pull_error)
            }
        }
        Err(e) => Check::failed(
            "smoke container",
            began.elapsed(),
            format!("{why_not}`{image}`{shown_cmd}: {e:#}"),
        )
        .with_output(format!("{pull_error}\n{logs}").trim().to_owned()),
    }
}

/// The smoke container: the image (with `cmd` for a fallback image), the run's labels, no network.
fn container_body(
    config: &Config,
    run: &SmokeRun,
    image: &str,
    cmd: Option<Vec<String>>,
) -> bollard::models::ContainerCreateBody {
    let labels = state::run_labels(config, &run.run_id, &run.owner);
    bollard::models::ContainerCreateBody {
        image: Some(image.to_owned()),
        cmd,
        labels: Some(labels.into_iter().collect()),
        host_config: Some(bollard::models::HostConfig {
            network_mode: Some("none".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn run_to_exit(docker: &Docker, id: &str, deadline: Duration) -> anyhow::Result<()> {
    docker
        .start_container(id, None::<bollard::query_parameters::StartContainerOptions>)
        .await
        .context("cannot start it")?;
    // bollard sends the wait request only when first polled, so "next-exit" could miss a fast
    // exit; "not-running" also answers for a container that has already exited.
    let mut wait = Box::pin(docker.wait_container(
        id,
        Some(bollard::query_parameters::WaitContainerOptions {
            condition: "not-running".to_owned(),
        }),
    ));
    match tokio::time::timeout(deadline, wait.next()).await {
        Err(_) => anyhow::bail!("did not exit within {}", ui::duration(deadline)),
        Ok(None) => anyhow::bail!("the engine ended the wait without an exit code"),
        Ok(Some(Ok(response))) if response.status_code == 0 => Ok(()),
        Ok(Some(Ok(response))) => anyhow::bail!("exited with {}", response.status_code),
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, error }))) => {
            anyhow::bail!(
                "exited with {code}{}",
                if error.is_empty() {
                    String::new()
                } else {
                    format!(": {error}")
                }
            )
        }
        Ok(Some(Err(e))) => Err(e).context("waiting for it to exit"),
    }
}

async fn container_logs(docker: &Docker, id: &str) -> String {
    let mut stream = docker.logs(
        id,
        Some(bollard::query_parameters::LogsOptions {
            stdout: true,
            stderr: true,
            tail: "50".to_owned(),
            ..Default::default()
        }),
    );
    let mut text = String::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(5), stream.next()).await
    {
        text.push_str(&chunk.to_string());
    }
    text
}

/// The engine's networks, by name.
pub async fn list_networks(engine: &Engine) -> anyhow::Result<Vec<String>> {
    let networks = engine
        .docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .with_context(|| format!("cannot list the networks of {}", engine.info.host))?;
    let mut names: Vec<String> = networks.into_iter().filter_map(|n| n.name).collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(
            split_reference("debian:bookworm-slim"),
            ("debian", "bookworm-slim")
        );
        assert_eq!(split_reference("hello-world"), ("hello-world", "latest"));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/app:1"),
            ("localhost:5000/app", "1")
        );
    }

    #[test]
    fn a_smoke_container_carries_the_runs_labels_and_a_name_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("harness.toml");
        let text = "[project]\nname = \"smoky\"\n";
        std::fs::write(&path, text).unwrap();
        let config = crate::config::parse(&path, text).unwrap();
        let run = SmokeRun {
            run_id: "18f00-42".to_owned(),
            owner: Owner {
                pid: 4242,
                ..Owner::default()
            },
        };
        let body = container_body(
            &config,
            &run,
            "debian:bookworm-slim",
            Some(vec!["true".into()]),
        );
        let labels = body.labels.unwrap();
        assert_eq!(
            labels.get(state::LABEL_RUN_ID).map(String::as_str),
            Some("18f00-42")
        );
        assert_eq!(
            labels.get(state::LABEL_PID).map(String::as_str),
            Some("4242")
        );
        assert_eq!(
            labels.get(state::LABEL_PROJECT).map(String::as_str),
            Some("smoky")
        );
        assert_eq!(
            labels.get(state::LABEL_ROOT),
            Some(&state::root_digest(&config.root))
        );
        assert_eq!(
            body.host_config.unwrap().network_mode.as_deref(),
            Some("none")
        );
        assert_eq!(SmokeRun::new("r").owner, Owner::me());
        let name = run.container_name();
        assert!(name.starts_with("xtask-smoke-18f00-42-"), "{name}");
    }
}
