//! Taking stacks down through the engine API: a run's labelled containers, networks and volumes
//! (`compose down` only for what its project holds without the run id), the sweep of this
//! checkout's dead runs, and this checkout's image tags (`docker-down --all`,
//! `--prune-images`).
//!
//! Not here: choosing which stack a command removes ([super::record]), printing
//! ([super::commands]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::query_parameters::{
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder,
    RemoveVolumeOptionsBuilder,
};
use serde::Serialize;

use super::compose::{self, Compose, Flavour, Project};
use super::containers::filters;
use super::labels::{
    checkout_tag, image_repository, LABEL_IMAGE_PROJECT, LABEL_IMAGE_ROOT, LABEL_ROOT_PATH,
    TAG_PREFIX,
};
use super::stop::{stop_containers, Labelled, Level, Urgency};
use super::{plural, record, run_dir, short_id, COMPOSE_PROJECT};
use crate::config::{Config, DEFAULT_INTERRUPT_STOP_TIMEOUT};
use crate::engine::{self, Engine};
use crate::error::Failure;
use crate::owner::{Liveness, Owner};
use crate::report::Check;
use crate::state::{self, StackRecord, StackState, LABEL_ROOT, LABEL_RUN_ID};
use crate::ui;

/// Every container, network and volume carrying `label` (`key=value`).
pub async fn find_labelled(docker: &bollard::Docker, label: &str) -> anyhow::Result<Labelled> {
    let filter = filters(&[("label", label)]);
    // The three lists at once: teardown after a signal has seconds, not round trips, to spare.
    let (containers, networks, volumes) = tokio::join!(
        docker.list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        )),
        docker.list_networks(Some(
            ListNetworksOptionsBuilder::new().filters(&filter).build(),
        )),
        docker.list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filter).build(),
        )),
    );
    let containers =
        containers.with_context(|| format!("cannot list containers labelled {label}"))?;
    let networks = networks.with_context(|| format!("cannot list networks labelled {label}"))?;
    let volumes = volumes.with_context(|| format!("cannot list volumes labelled {label}"))?;
    Ok(Labelled {
        containers: containers
            .into_iter()
            .filter_map(|c| {
                let id = c.id?;
                let name = c
                    .names
                    .and_then(|n| n.first().cloned())
                    .unwrap_or_else(|| short_id(&id).to_owned())
                    .trim_start_matches('/')
                    .to_owned();
                Some((id, name, c.labels.unwrap_or_default()))
            })
            .collect(),
        networks: networks
            .into_iter()
            .filter_map(|n| {
                Some((
                    n.id?,
                    n.name.unwrap_or_default(),
                    n.labels.unwrap_or_default(),
                ))
            })
            .collect(),
        volumes: volumes
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.labels))
            .collect(),
    })
}

/// Removes what `labelled` lists: containers first, all at once (killed if still running, with
/// their anonymous volumes), then networks and volumes. Errors name what could not be removed.
pub async fn remove_labelled(docker: &bollard::Docker, labelled: &Labelled) -> Vec<String> {
    let mut problems = Vec::new();
    let not_found = |e: &bollard::errors::Error| {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        )
    };
    let removals = labelled.containers.iter().map(|(id, name, _)| async move {
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(id, Some(options)).await {
            Err(e) if !not_found(&e) => Some(format!("container {name}: {e}")),
            _ => None,
        }
    });
    problems.extend(
        futures_util::future::join_all(removals)
            .await
            .into_iter()
            .flatten(),
    );
    // A network or volume still in use (409) belongs, by now, to a later run of the same compose
    // project that took it over: it stays, and is that run's to remove.
    let in_use = |e: &bollard::errors::Error| {
        matches!(
            e,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 409,
                ..
            }
        )
    };
    for (id, name, _) in &labelled.networks {
        if let Err(e) = docker.remove_network(id).await {
            if !not_found(&e) && !in_use(&e) {
                problems.push(format!("network {name}: {e}"));
            }
        }
    }
    for (name, _) in &labelled.volumes {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        if let Err(e) = docker.remove_volume(name, Some(options)).await {
            if !not_found(&e) && !in_use(&e) {
                problems.push(format!("volume {name}: {e}"));
            }
        }
    }
    problems
}

/// Removes a run's containers, networks and volumes through the engine: everything carrying its
/// run id (the labels override puts it on every container, network and volume compose creates) is
/// stopped at once, each container with its own grace, then removed. `compose down -v
/// --remove-orphans` runs only when the project still holds something without the run id (a
/// container of an earlier run of a shared project name). Clears its record. Idempotent.
pub async fn down(config: &Config, stack: &StackState) -> anyhow::Result<Check> {
    down_with(config, stack, &Urgency::fixed(Level::Graceful)).await
}

/// [`down`], with the containers stopped as `urgency` says ([super::stop]): the gate's teardown,
/// which raises it as signals arrive.
pub async fn down_with(
    config: &Config,
    stack: &StackState,
    urgency: &Urgency,
) -> anyhow::Result<Check> {
    let began = Instant::now();
    let engine = engine::connect_at(config, stack.engine.as_deref()).await.map_err(|e| {
        Failure::unavailable(
            format!("cannot reach the engine to remove run {}: {e:#}", stack.run_id),
            Some("start the engine (cargo xtask docker-up --engine-only), then run docker-down again".to_owned()),
        )
    })?;
    let docker = &engine.docker;
    let run_label = format!("{LABEL_RUN_ID}={}", stack.run_id);
    let before = find_labelled(docker, &run_label).await?;
    let short = config
        .stack
        .as_ref()
        .map_or(DEFAULT_INTERRUPT_STOP_TIMEOUT, |s| {
            s.interrupt_stop_timeout_s.duration()
        });
    let stopped = stop_containers(docker, &before, urgency, short).await;
    let mut problems = remove_labelled(docker, &before).await;

    let mut notes = Vec::new();
    let project_label = format!("{COMPOSE_PROJECT}={}", stack.project);
    let unlabelled = find_labelled(docker, &project_label).await?;
    let mut removed_by_compose = 0;
    if !unlabelled.is_empty() {
        if stack.compose_file.is_file() {
            let compose = match Flavour::from_command(&stack.compose_flavour) {
                Some(flavour) => Compose {
                    flavour,
                    version: String::new(),
                },
                None => compose::detect().await?,
            };
            let project = recorded_project(config, stack, compose);
            match project
                .run_checked(&project.down_argv(), Duration::from_secs(180))
                .await
            {
                Ok(_) => removed_by_compose = unlabelled.count(),
                Err(e) => notes.push(format!(
                    "compose down failed ({e:#}) for {}",
                    unlabelled.names().join(", ")
                )),
            }
        } else {
            notes.push(format!(
                "{} is gone; left to compose project {}: {}",
                stack.compose_file.display(),
                stack.project,
                unlabelled.names().join(", ")
            ));
        }
    }
    // Whatever still carries the run id (created while we were removing) goes the same way.
    let rest = find_labelled(docker, &run_label).await?;
    if !rest.is_empty() {
        problems.extend(remove_labelled(docker, &rest).await);
    }
    let left = find_labelled(docker, &run_label).await?;
    if !left.is_empty() || !problems.is_empty() {
        return Ok(Check::failed(
            "stack down",
            began.elapsed(),
            format!(
                "project {}: {} resources of run {} remain",
                stack.project,
                left.count(),
                stack.run_id
            ),
        )
        .with_output(
            left.names()
                .into_iter()
                .chain(problems)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    record::forget(config, &stack.run_id)?;
    let mut detail = if before.count() + removed_by_compose == 0 {
        format!("project {}: nothing was up", stack.project)
    } else {
        format!(
            "project {}: removed {}, {}, {}",
            stack.project,
            plural(before.containers.len(), "container"),
            plural(before.networks.len(), "network"),
            plural(before.volumes.len(), "volume")
        )
    };
    if !stopped.killed.is_empty() {
        detail.push_str(&format!("; killed {}", stopped.killed.join(", ")));
    }
    if removed_by_compose > 0 {
        detail.push_str(&format!(
            "; compose down removed {removed_by_compose} more of earlier runs"
        ));
    }
    for note in notes {
        detail.push_str("; ");
        detail.push_str(&note);
    }
    Ok(Check::passed("stack down", began.elapsed(), detail))
}

/// How a sweep over this checkout's runs decides.
#[derive(Debug, Clone, Copy)]
pub struct Sweep {
    /// `docker-down --all`: also runs kept on purpose (whoever started them) and this process's
    /// own runs. Unkept runs of other live processes (a gate running now) are always left.
    pub all: bool,
    /// `--any-host --older-than D`: runs of other hosts that began at least `D` ago are removed
    /// too. Without it they are only listed: no host can tell whether another's owner runs.
    pub other_hosts_older_than: Option<Duration>,
}

impl Sweep {
    /// The sweep at the start of a gate: this host's dead runs, nothing kept, nothing of others.
    pub const LEFTOVERS: Sweep = Sweep {
        all: false,
        other_hosts_older_than: None,
    };
}

/// What a sweep did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SweepReport {
    /// `run RUN (project P, pid N gone): container X, network Y, volume Z`.
    pub removed: Vec<String>,
    /// Runs left alone, and why.
    pub left: Vec<String>,
    /// Runs of other hosts, left alone (only `--any-host --older-than` removes them), and why.
    pub other_hosts: Vec<String>,
    /// Resources that could not be removed.
    pub problems: Vec<String>,
}

/// This checkout's labelled runs (by `io.xtask.root`), removed unless, without `all`, they are
/// kept on purpose (never a dead run, although their owner exited) or belong to this process,
/// and unless they are unkept runs of another live process.
pub async fn sweep(config: &Config, engine: &Engine, how: Sweep) -> anyhow::Result<SweepReport> {
    let recorded = state::Store::of(config).read()?.stacks;
    let root_label = format!("{LABEL_ROOT}={}", state::root_digest(&config.root));
    let runs = by_run(find_labelled(&engine.docker, &root_label).await?);
    let me = std::process::id();
    let now_ms = crate::clock::unix_ms();
    let mut report = SweepReport::default();
    for (run_id, resources) in runs {
        let run = SweptRun::of(&run_id, &resources, &recorded, me);
        match run.left_because(&how, now_ms) {
            Some(Left::OtherHost(why)) => {
                report.other_hosts.push(why);
                continue;
            }
            Some(Left::Here(why)) => {
                report.left.push(why);
                continue;
            }
            None => {}
        }
        let problems = remove_labelled(&engine.docker, &resources).await;
        report.removed.push(format!(
            "run {run_id} (project {}, {}): {}",
            run.project,
            run.removed_because(),
            resources.names().join(", ")
        ));
        if problems.is_empty() {
            record::forget(config, &run_id)?;
        }
        report.problems.extend(problems);
    }
    Ok(report)
}

/// The labelled resources grouped by their run id (`(no run id)` for those without one).
fn by_run(all: Labelled) -> BTreeMap<String, Labelled> {
    let mut runs: BTreeMap<String, Labelled> = BTreeMap::new();
    let run_of = |labels: &HashMap<String, String>| {
        labels
            .get(LABEL_RUN_ID)
            .cloned()
            .unwrap_or_else(|| "(no run id)".to_owned())
    };
    for c in &all.containers {
        runs.entry(run_of(&c.2))
            .or_default()
            .containers
            .push(c.clone());
    }
    for n in &all.networks {
        runs.entry(run_of(&n.2))
            .or_default()
            .networks
            .push(n.clone());
    }
    for v in &all.volumes {
        runs.entry(run_of(&v.1))
            .or_default()
            .volumes
            .push(v.clone());
    }
    runs
}

/// Why [`sweep`] leaves a run alone.
enum Left {
    /// A run of another host, which this host cannot judge.
    OtherHost(String),
    /// A run of this host: this process's, a live owner's, or kept on purpose.
    Here(String),
}

/// One run as [`sweep`] judges it: its owner (from the labels, else the run store), and
/// whether that owner lives.
struct SweptRun<'a> {
    run_id: &'a str,
    project: String,
    liveness: Liveness,
    /// This process owns it.
    own: bool,
    /// Another live process on this host owns it.
    alive: bool,
    /// Kept on purpose (docker-up or --keep).
    kept: bool,
    /// `pid 123`, or `no pid`.
    pid_text: String,
}

impl<'a> SweptRun<'a> {
    /// The run `run_id` with its resources, judged by its labels and the run store's record.
    fn of(
        run_id: &'a str,
        resources: &Labelled,
        recorded: &BTreeMap<String, StackRecord>,
        me: u32,
    ) -> SweptRun<'a> {
        let labels = resources
            .containers
            .first()
            .map(|c| &c.2)
            .or_else(|| resources.networks.first().map(|n| &n.2))
            .or_else(|| resources.volumes.first().map(|v| &v.1));
        let record = recorded.get(run_id);
        let owner = labels
            .and_then(Owner::from_labels)
            .or_else(|| record.map(|r| r.owner.clone()));
        let project = labels
            .and_then(|l| l.get(COMPOSE_PROJECT))
            .cloned()
            .or_else(|| record.map(|r| r.stack.project.clone()))
            .unwrap_or_else(|| "?".to_owned());
        let liveness = owner.as_ref().map_or_else(
            || Liveness::Gone("no owner label".to_owned()),
            Owner::liveness,
        );
        let own = liveness == Liveness::Alive && owner.as_ref().is_some_and(|o| o.pid == me);
        let alive = liveness == Liveness::Alive && !own;
        SweptRun {
            run_id,
            project,
            own,
            alive,
            kept: record.is_some_and(|r| r.kept),
            pid_text: owner
                .as_ref()
                .map_or("no pid".to_owned(), |o| format!("pid {}", o.pid)),
            liveness,
        }
    }

    /// Why the run stays, or `None` when `how` removes it.
    fn left_because(&self, how: &Sweep, now_ms: u64) -> Option<Left> {
        let (run_id, project, pid_text) = (self.run_id, &self.project, &self.pid_text);
        let (own, alive, kept) = (self.own, self.alive, self.kept);
        if let Liveness::OtherHost(host) = &self.liveness {
            // Another host's pids mean nothing here: only its age, and only when asked.
            let age = state::run_started_ms(run_id)
                .map(|ms| Duration::from_millis(now_ms.saturating_sub(ms)));
            let old_enough = match (how.other_hosts_older_than, age) {
                (Some(limit), Some(age)) => age >= limit,
                _ => false,
            };
            if old_enough {
                return None;
            }
            let why = match (how.other_hosts_older_than, age) {
                (Some(limit), Some(age)) => format!(
                    "it began {} ago, less than --older-than {}",
                    ui::duration(age),
                    ui::duration(limit)
                ),
                (Some(_), None) => "its age is unknown (its run id carries no time)".to_owned(),
                (None, _) => {
                    "docker-down --all --any-host --older-than DURATION removes it".to_owned()
                }
            };
            return Some(Left::OtherHost(format!(
                "run {run_id} (project {project}): it belongs to host {host} ({pid_text} there), which this host cannot judge; {why}"
            )));
        }
        if own && !how.all {
            return Some(Left::Here(format!(
                "run {run_id} (project {project}): it belongs to this process"
            )));
        }
        if alive && !(kept && how.all) {
            return Some(Left::Here(format!(
                "run {run_id} (project {project}): its owner, {pid_text}, is still running"
            )));
        }
        if kept && !how.all {
            return Some(Left::Here(format!(
                "run {run_id} (project {project}): kept on purpose (docker-up or --keep); docker-down removes it"
            )));
        }
        None
    }

    /// Why a removed run could go, for the report's line.
    fn removed_because(&self) -> String {
        match &self.liveness {
            Liveness::OtherHost(host) => format!("host {host}, --any-host --older-than"),
            _ if self.kept => "kept".to_owned(),
            _ if self.own => "this process".to_owned(),
            Liveness::Gone(why) => why.clone(),
            Liveness::Alive => format!("{} still running, docker-down --all", self.pid_text),
        }
    }
}

/// Removes leftovers of this checkout's runs whose owner is gone (never live runs, never runs
/// kept on purpose, never anything without our labels); says what was removed.
pub async fn remove_leftovers(config: &Config, engine: &Engine) -> anyhow::Result<Vec<String>> {
    let report = sweep(config, engine, Sweep::LEFTOVERS).await?;
    if !report.problems.is_empty() {
        anyhow::bail!("cannot remove leftovers: {}", report.problems.join("; "));
    }
    Ok(report.removed)
}

/// The compose project of a recorded run (its files, environment and program).
pub fn recorded_project(config: &Config, stack: &StackState, compose: Compose) -> Project {
    let mut files = vec![stack.compose_file.clone()];
    let labels = run_dir(config, &stack.run_id).join("labels.json");
    if labels.is_file() {
        files.push(labels);
    }
    Project {
        compose,
        name: stack.project.clone(),
        files,
        env: stack.compose_env.clone(),
        dir: config.root.clone(),
    }
}

/// What removing image tags did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImagesReport {
    /// `chat-web:xtask-1a2b3c4d`.
    pub removed: Vec<String>,
    /// Tags left, and why.
    pub left: Vec<String>,
    /// Tags that could not be removed.
    pub problems: Vec<String>,
}

/// This project's per-checkout tags (`<project>-<service>:xtask-*`), each with its image id and
/// labels, found by the image labels the build set.
async fn project_tags(
    docker: &bollard::Docker,
    project: &str,
) -> anyhow::Result<Vec<(String, String, HashMap<String, String>)>> {
    let label = format!("{LABEL_IMAGE_PROJECT}={project}");
    let images = docker
        .list_images(Some(
            ListImagesOptionsBuilder::new()
                .filters(&filters(&[("label", &label)]))
                .build(),
        ))
        .await
        .with_context(|| format!("cannot list the images labelled {label}"))?;
    let prefix = image_repository(project, "");
    let mut tags = Vec::new();
    for image in images {
        for tag in &image.repo_tags {
            let ours = tag.rsplit_once(':').is_some_and(|(repo, tag)| {
                repo.starts_with(&prefix) && tag.starts_with(TAG_PREFIX)
            });
            if ours {
                tags.push((tag.clone(), image.id.clone(), image.labels.clone()));
            }
        }
    }
    tags.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tags)
}

/// Removes one tag (never by force: an image a container still uses stays).
async fn remove_tag(docker: &bollard::Docker, tag: &str, report: &mut ImagesReport) {
    let options = RemoveImageOptionsBuilder::new().force(false).build();
    match docker.remove_image(tag, Some(options), None).await {
        Ok(_) => report.removed.push(tag.to_owned()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => {}
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) => report.left.push(format!("{tag}: in use ({message})")),
        Err(e) => report.problems.push(format!("{tag}: {e}")),
    }
}

/// `docker-down --all`: removes this checkout's tags (`:xtask-<8 hex of its root>`) that no
/// container of this checkout uses (a kept stack, or a live run of another process, is left its
/// images).
pub async fn remove_checkout_images(
    config: &Config,
    engine: &Engine,
) -> anyhow::Result<ImagesReport> {
    let docker = &engine.docker;
    let root_digest = state::root_digest(&config.root);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filters(&[(
                    "label",
                    &format!("{LABEL_ROOT}={root_digest}"),
                )]))
                .build(),
        ))
        .await
        .context("cannot list this checkout's containers")?;
    let in_use: HashMap<String, String> = containers
        .into_iter()
        .filter_map(|c| {
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_owned();
            Some((c.image_id?, name))
        })
        .collect();
    let tag = checkout_tag(&config.root);
    let mut report = ImagesReport::default();
    for (name, id, labels) in project_tags(docker, &config.project.name.0).await? {
        let mine = name.ends_with(&format!(":{tag}"))
            && labels.get(LABEL_IMAGE_ROOT) == Some(&root_digest);
        if !mine {
            continue;
        }
        match in_use.get(&id) {
            Some(container) => report
                .left
                .push(format!("{name}: used by container {container}")),
            None => remove_tag(docker, &name, &mut report).await,
        }
    }
    Ok(report)
}

/// `docker-down --prune-images`: removes this project's per-checkout tags whose checkout (the
/// root recorded in the image's `io.xtask.root-path` label) no longer exists. Tags of existing
/// checkouts, and tags without that label, are left.
pub async fn prune_images(config: &Config, engine: &Engine) -> anyhow::Result<ImagesReport> {
    let docker = &engine.docker;
    let mut report = ImagesReport::default();
    for (name, _, labels) in project_tags(docker, &config.project.name.0).await? {
        match labels.get(LABEL_ROOT_PATH) {
            Some(root) if !std::path::Path::new(root).is_dir() => {
                remove_tag(docker, &name, &mut report).await
            }
            Some(root) => report.left.push(format!("{name}: checkout {root} exists")),
            None => report
                .left
                .push(format!("{name}: no {LABEL_ROOT_PATH} label")),
        }
    }
    Ok(report)
}
