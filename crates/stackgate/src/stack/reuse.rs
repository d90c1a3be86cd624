//! Warm stacks (`mission-critical --reuse`, `stack.reuse = true`): a passing run's stack is kept
//! under a key, the hash of everything that decides what the stack is (the normalised compose
//! model, every service's image id, the build contexts' files, the compose program, `[stack]`
//! and `[endpoints]`); a later run with the same key takes it after every service passed a fresh
//! check (its own healthcheck run through exec, or its `[stack.ready]` probe) and `stack.reset`
//! ran, instead of starting a new one. A lease (an exclusive lock on
//! `target/xtask/leases/<run id>.lock`, held for the taking run's life) keeps two gates from
//! sharing one stack; the containers of a stack started to be reused carry the label
//! [`LABEL_REUSABLE`], and only such containers are ever taken. A stack whose key no longer
//! matches (a changed compose file, a rebuilt image) is removed.
//!
//! Not here: the wait of a fresh stack ([super::up]), removing stacks ([super::down]), when the
//! gate keeps or takes one ([crate::gate]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bollard::models::ContainerInspectResponse;

use super::compose::Compose;
use super::containers::{inspect_project, PublishedPorts};
use super::labels::image_tag;
use super::model::Model;
use super::probe::{healthcheck_probe, ready_probe, run_once};
use super::{ServiceUp, Signal, UpReport};
use crate::config::{Config, StackCfg};
use crate::engine::Engine;
use crate::process::Cmd;
use crate::report::Check;
use crate::state::{ReuseRecord, StackRecord, StackState, Store, LABEL_RUN_ID};

/// Label on every container of a stack started to be reused (`true`).
pub const LABEL_REUSABLE: &str = "io.xtask.reusable";
/// How long `stack.reset` may run.
pub const RESET_TIMEOUT: Duration = Duration::from_secs(60);
/// Files of one build context read for its fingerprint, at most (a larger context is still
/// fingerprinted by its first files and its file count).
const CONTEXT_FILES: usize = 20_000;

/// The right to use one kept stack: an exclusive lock on its lease file, released when dropped
/// (and by the system when the holder dies).
#[derive(Debug)]
pub struct Lease {
    _file: std::fs::File,
    pub path: PathBuf,
}

/// `target/xtask/leases/<run id>.lock`.
pub fn lease_path(config: &Config, run_id: &str) -> PathBuf {
    config
        .work_dir()
        .join("leases")
        .join(format!("{run_id}.lock"))
}

/// Takes the lease of a stack; `None` when another process holds it.
pub fn try_lease(config: &Config, run_id: &str) -> anyhow::Result<Option<Lease>> {
    use std::io::Write;
    let path = lease_path(config, run_id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for a person looking (the lock itself is what counts).
            file.set_len(0)?;
            writeln!(file, "{}", std::process::id())?;
            Ok(Some(Lease { _file: file, path }))
        }
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// FNV-1a over everything fed, 64 bits, as the other digests of the harness.
struct Digest(u64);

impl Digest {
    fn feed(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(b"\0") {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }
}

/// The image each service runs: its `image:`, or the checkout's own tag of a built one.
pub fn service_images(config: &Config, model: &Model) -> BTreeMap<String, String> {
    model
        .services
        .iter()
        .filter_map(|(name, service)| {
            let image = match (&service.image, &service.build) {
                (Some(image), _) => image.clone(),
                (None, Some(_)) => image_tag(config, name),
                (None, None) => return None,
            };
            Some((name.clone(), image))
        })
        .collect()
}

/// The key of a stack as the configuration, the compose file and the images are now. Images
/// that do not exist read as missing (so a stack is never taken for them).
pub async fn key(
    config: &Config,
    compose: &Compose,
    model: &Model,
    docker: &bollard::Docker,
) -> String {
    let mut image_ids = BTreeMap::new();
    for (service, image) in service_images(config, model) {
        let id = docker
            .inspect_image(&image)
            .await
            .ok()
            .and_then(|i| i.id)
            .unwrap_or_else(|| format!("missing {image}"));
        image_ids.insert(service, id);
    }
    key_of(config, compose, model, &image_ids)
}

/// [`key`] from the image ids already read.
pub fn key_of(
    config: &Config,
    compose: &Compose,
    model: &Model,
    image_ids: &BTreeMap<String, String>,
) -> String {
    let mut digest = Digest(0xcbf29ce484222325);
    // The model is compose's own resolution of the files (anchors, `.env`, interpolation
    // applied), in sorted maps, and its digest covers every key compose resolved.
    digest.feed(serde_json::to_string(model).unwrap_or_default().as_bytes());
    digest.feed(compose.to_string().as_bytes());
    // `reuse` itself says nothing about the stack: `--reuse` and `stack.reuse` runs share one.
    let mut stack = config.stack.clone();
    if let Some(stack) = &mut stack {
        stack.speed.reuse = false;
    }
    digest.feed(format!("{stack:?}").as_bytes());
    digest.feed(format!("{:?}", config.endpoints).as_bytes());
    for (service, id) in image_ids {
        digest.feed(service.as_bytes());
        digest.feed(id.as_bytes());
    }
    // A built service's sources: an edit not built yet still makes another stack.
    for (name, service) in &model.services {
        if let Some(context) = &service.build {
            digest.feed(name.as_bytes());
            fingerprint(&config.root.join(context), &mut digest);
        }
    }
    format!("{:016x}", digest.0)
}

/// Every file under a build context: its path, size and modification time.
fn fingerprint(dir: &Path, digest: &mut Digest) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files: Vec<(String, u64, u128)> = Vec::new();
    while let Some(current) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if [".git", "target", "__pycache__", "node_modules"]
                .iter()
                .any(|skip| name == *skip)
            {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if files.len() < CONTEXT_FILES {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let relative = entry.path().strip_prefix(dir).map_or_else(
                    |_| entry.path().display().to_string(),
                    |p| p.display().to_string(),
                );
                files.push((relative, meta.len(), modified));
            }
        }
    }
    files.sort();
    digest.feed(files.len().to_string().as_bytes());
    for (path, size, modified) in files {
        digest.feed(path.as_bytes());
        digest.feed(&size.to_le_bytes());
        digest.feed(&modified.to_le_bytes());
    }
}

/// What looking for a warm stack found.
#[derive(Debug, Default)]
pub struct Attempt {
    /// The stack taken, its report and its lease.
    pub taken: Option<(UpReport, Lease)>,
    /// Warm stacks that cannot be taken (another key, a failed check, or one more of the same
    /// key), each with its lease, so that nobody takes it while the caller removes it.
    pub stale: Vec<(StackState, Lease)>,
    /// Why each warm stack was not taken, for the report.
    pub notes: Vec<String>,
}

/// Looks for a warm stack of this checkout with `key` (newest first), leases it, and checks
/// every service; on success the stack is taken. Never starts anything.
pub async fn take(
    config: &Config,
    engine: &Engine,
    compose: &Compose,
    key: &str,
) -> anyhow::Result<Attempt> {
    let state = Store::of(config).read()?;
    let mut warm: Vec<&StackRecord> = state
        .stacks
        .values()
        .filter(|r| r.kept && r.reuse.is_some())
        .collect();
    warm.sort_by_key(|r| std::cmp::Reverse(r.stack.started_unix_ms));
    let mut attempt = Attempt::default();
    for record in warm {
        let run_id = &record.stack.run_id;
        // A warm stack on another engine (a remote one, podman) is that engine's: neither taken
        // nor removed from here.
        if let Some(other) = record
            .stack
            .engine
            .as_deref()
            .filter(|host| *host != engine.info.host)
        {
            attempt.notes.push(format!(
                "warm stack {run_id} runs on another engine ({other}): left as it is"
            ));
            continue;
        }
        let Some(lease) = try_lease(config, run_id)? else {
            attempt
                .notes
                .push(format!("warm stack {run_id} is leased by another run"));
            continue;
        };
        let matches = record.reuse.as_ref().is_some_and(|r| r.key == key);
        if !matches {
            attempt.notes.push(format!(
                "warm stack {run_id} was kept under another key (the compose file, an image, a build context, [stack] or [endpoints] changed): removed"
            ));
            attempt.stale.push((record.stack.clone(), lease));
            continue;
        }
        if attempt.taken.is_some() {
            // Two gates at once each kept one: one warm stack per key is enough.
            attempt.notes.push(format!(
                "warm stack {run_id} is one more of the same key: removed"
            ));
            attempt.stale.push((record.stack.clone(), lease));
            continue;
        }
        match check(config, engine, compose, record).await {
            Ok(report) => attempt.taken = Some((report, lease)),
            Err(why) => {
                attempt.notes.push(format!(
                    "warm stack {run_id} failed its check: {why}; removed"
                ));
                attempt.stale.push((record.stack.clone(), lease));
            }
        }
    }
    Ok(attempt)
}

/// Records a passing run's stack as warm under `key` (kept: only `docker-down` or a later
/// mismatch removes it).
pub fn keep(config: &Config, run_id: &str, key: &str) -> anyhow::Result<bool> {
    Store::of(config).update(|state| match state.stacks.get_mut(run_id) {
        Some(record) => {
            record.kept = true;
            record.reuse = Some(ReuseRecord {
                key: key.to_owned(),
                kept_unix_ms: crate::clock::unix_ms(),
            });
            true
        }
        None => false,
    })
}

/// Every service of a warm stack, checked now: its containers run, carry the stack's run id and
/// [`LABEL_REUSABLE`], are not unhealthy, and pass their own healthcheck (or `[stack.ready]`
/// probe) run once; then `stack.reset`. The report reads as an `up` that found everything ready.
async fn check(
    config: &Config,
    engine: &Engine,
    compose: &Compose,
    record: &StackRecord,
) -> Result<UpReport, String> {
    let began = Instant::now();
    let stack = config.stack.as_ref().ok_or("no [stack]")?;
    let docker = &engine.docker;
    let project = &record.stack.project;
    let running: Vec<(super::Inspected, ContainerInspectResponse)> =
        inspect_project(docker, project)
            .await
            .map_err(|e| format!("{e:#}"))?
            .into_iter()
            .filter(|(i, _)| i.running)
            .collect();
    let checks = takeable(stack, engine, record, &running)?;
    let services = probe_warm(config, engine, &checks).await?;
    let mut ports = PublishedPorts::default();
    for (inspected, response) in &running {
        ports.add(&inspected.service, response);
    }
    let resolving = Instant::now();
    let endpoints = crate::endpoints::resolve_all(
        &config.endpoints,
        &crate::endpoints::OnEngine {
            ports: &ports,
            engine_host: &engine.info.engine_host,
        },
    )?;
    let endpoints_check = Check::passed(
        "endpoints resolved",
        resolving.elapsed(),
        format!("{} endpoints from the published ports", endpoints.len()),
    );
    let mut state = record.stack.clone();
    state.endpoints = endpoints.clone();
    if !stack.speed.reset.is_empty() {
        reset(config, engine, &state, &stack.speed.reset).await?;
    }
    Ok(UpReport {
        run_id: state.run_id.clone(),
        project: project.clone(),
        isolated: state.isolated,
        compose: compose.clone(),
        up: Check::passed(
            "compose up",
            began.elapsed(),
            format!(
                "reused the warm stack of run {} (project {project}){}",
                state.run_id,
                if stack.speed.reset.is_empty() {
                    String::new()
                } else {
                    format!("; `{}` ran first", stack.speed.reset.join(" "))
                }
            ),
        ),
        services,
        endpoints_check,
        endpoints,
        total: began.elapsed(),
        waited: began.elapsed(),
        state,
    })
}

/// A running container of a warm stack's service, and how it is checked.
type Takeable<'a> = (
    String,
    super::Inspected,
    &'a ContainerInspectResponse,
    Option<Probe>,
);

/// Every `[stack] services` entry's running containers, each one this run may take (the stack's
/// run id, [`LABEL_REUSABLE`], not unhealthy), with the probe that checks it.
fn takeable<'a>(
    stack: &StackCfg,
    engine: &Engine,
    record: &StackRecord,
    running: &'a [(super::Inspected, ContainerInspectResponse)],
) -> Result<Vec<Takeable<'a>>, String> {
    let label = |response: &ContainerInspectResponse, key: &str| {
        response
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(key).cloned())
    };
    let mut checks = Vec::new();
    for service in &stack.services {
        let containers: Vec<&(super::Inspected, ContainerInspectResponse)> = running
            .iter()
            .filter(|(i, _)| &i.service == service)
            .collect();
        if containers.is_empty() {
            return Err(format!("service `{service}` has no running container"));
        }
        for (inspected, response) in containers {
            if label(response, LABEL_RUN_ID).as_deref() != Some(record.stack.run_id.as_str())
                || label(response, LABEL_REUSABLE).as_deref() != Some("true")
            {
                return Err(format!(
                    "container {} of `{service}` is not one this run may take (labels {LABEL_RUN_ID}, {LABEL_REUSABLE})",
                    inspected.name
                ));
            }
            if inspected.health == Some(bollard::models::HealthStatusEnum::UNHEALTHY) {
                return Err(format!("service `{service}` is unhealthy"));
            }
            let spec = match stack.speed.ready.get(service) {
                Some(template) => Some(Probe::Run(ready_probe(
                    service,
                    template,
                    response,
                    &engine.info.engine_host,
                    Duration::from_secs(2),
                )?)),
                None => match recent_engine_check(response) {
                    Some(ago) => Some(Probe::Engine(ago)),
                    None => healthcheck_probe(response).map(Probe::Run),
                },
            };
            checks.push((service.clone(), inspected.clone(), response, spec));
        }
    }
    Ok(checks)
}

/// Runs every container's check at once; each service is then as ready as `up` would report
/// it, or the first failed check is the reason the stack is not taken.
async fn probe_warm(
    config: &Config,
    engine: &Engine,
    checks: &[Takeable<'_>],
) -> Result<Vec<ServiceUp>, String> {
    let docker = &engine.docker;
    let tls = config.tls();
    let tls = &tls;
    let probes = checks
        .iter()
        .map(|(service, inspected, _, spec)| async move {
            let started = Instant::now();
            let outcome = match spec {
                Some(Probe::Run(spec)) => {
                    Some(run_once(docker, &inspected.container, spec, tls).await)
                }
                Some(Probe::Engine(_)) => Some((true, String::new())),
                None => None,
            };
            (service.clone(), started.elapsed(), outcome, spec.clone())
        });
    let results = futures_util::future::join_all(probes).await;
    let mut services: Vec<ServiceUp> = Vec::new();
    for ((service, took, outcome, spec), (_, inspected, response, _)) in
        results.into_iter().zip(checks)
    {
        let detail = match (&outcome, &spec) {
            (Some((true, _)), Some(Probe::Run(spec))) => format!(
                "reused warm stack: its check passed in {} ({})",
                crate::ui::duration(took),
                spec.describe()
            ),
            (Some((true, _)), Some(Probe::Engine(ago))) => format!(
                "reused warm stack: the engine's healthcheck passed {} ago",
                crate::ui::duration(*ago)
            ),
            (Some((false, output)), _) => {
                return Err(format!(
                    "service `{service}` failed its check: {}",
                    output.lines().next().unwrap_or("")
                ))
            }
            _ => "reused warm stack: running (no healthcheck)".to_owned(),
        };
        if services.iter().any(|s| s.service == service) {
            continue;
        }
        services.push(ServiceUp {
            service: service.clone(),
            check: Check::passed(format!("service {service} healthy"), took, detail),
            noticed_after: None,
            healthcheck: inspected.healthcheck,
            signal: Some(Signal::AlreadyHealthy),
            probe_after: None,
            engine_after: None,
            image_id: response.image.clone(),
        });
    }
    Ok(services)
}

/// How a warm stack's service is checked before it is taken.
#[derive(Debug, Clone)]
enum Probe {
    /// Its healthcheck (or `[stack.ready]` probe), run now.
    Run(super::probe::ProbeSpec),
    /// The engine ran its healthcheck this long ago, and it passed: as fresh as a run of our
    /// own, without starting a process in the container.
    Engine(Duration),
}

/// How long ago the engine's last healthcheck of the container passed, when it did within twice
/// its interval (at least two seconds) and the container is healthy.
fn recent_engine_check(response: &ContainerInspectResponse) -> Option<Duration> {
    let health = response.state.as_ref()?.health.as_ref()?;
    if health.status != Some(bollard::models::HealthStatusEnum::HEALTHY) {
        return None;
    }
    let last = health.log.as_ref()?.last()?;
    if last.exit_code != Some(0) {
        return None;
    }
    let ended = super::parse_rfc3339(last.end.as_deref()?)?;
    let interval = response
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.interval)
        .filter(|nanos| *nanos > 0)
        .map_or(Duration::from_secs(30), |nanos| {
            Duration::from_nanos(nanos as u64)
        });
    let ago = std::time::SystemTime::now()
        .duration_since(ended)
        .unwrap_or_default();
    (ago <= (interval * 2).max(Duration::from_secs(2))).then_some(ago)
}

/// `stack.reset`, run in the configuration's directory with what a suite receives about the
/// stack (`<NAME>_URL`, `XTASK_COMPOSE_PROJECT`, `XTASK_COMPOSE_FILE`, `XTASK_RUN_ID`) and its
/// engine (`DOCKER_HOST`, `XTASK_ENGINE_HOST`: [super::engine_env]).
async fn reset(
    config: &Config,
    engine: &Engine,
    state: &StackState,
    argv: &[String],
) -> Result<(), String> {
    let mut env: Vec<(String, String)> = super::engine_env(engine).into_iter().collect();
    env.extend(
        state
            .endpoints
            .iter()
            .map(|(name, url)| (crate::endpoints::env_name(name), url.clone())),
    );
    env.push(("XTASK_COMPOSE_PROJECT".into(), state.project.clone()));
    env.push((
        "XTASK_COMPOSE_FILE".into(),
        state.compose_file.display().to_string(),
    ));
    env.push(("XTASK_RUN_ID".into(), state.run_id.clone()));
    let command = Cmd::from_argv(argv)
        .map_err(|e| format!("stack.reset: {e:#}"))?
        .envs(env)
        .current_dir(&config.root);
    let line = command.display();
    let finished = command
        .output(RESET_TIMEOUT)
        .await
        .map_err(|e| format!("stack.reset `{line}` could not run: {e:#}"))?;
    if finished.success() {
        Ok(())
    } else {
        Err(format!(
            "stack.reset `{line}` {}: {}",
            if finished.timed_out {
                format!("did not finish within {}s", RESET_TIMEOUT.as_secs())
            } else {
                finished.describe()
            },
            finished.stderr_tail(5)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::compose::Flavour;
    use crate::stack::model::Service;

    fn config(dir: &Path, stack_extra: &str) -> Config {
        std::fs::write(dir.join("compose.yaml"), "services: {}\n").unwrap();
        crate::config::parse(
            &dir.join("harness.toml"),
            &format!(
                "[project]\nname = \"chat\"\n[stack]\ncompose_file = \"compose.yaml\"\nservices = [\"web\"]\n{stack_extra}\n[endpoints]\nweb = \"http://127.0.0.1:{{port:web:80}}\"\n"
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_key_follows_model_images_sources_and_configuration_but_not_reuse_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("web")).unwrap();
        std::fs::write(dir.path().join("web/app.py"), "print(1)\n").unwrap();
        let compose = Compose {
            flavour: Flavour::Plugin,
            version: "2.40.3".into(),
        };
        let mut model = Model::default();
        model.services.insert(
            "web".into(),
            Service {
                build: Some("web".into()),
                ..Service::default()
            },
        );
        let ids = BTreeMap::from([("web".to_owned(), "sha256:1".to_owned())]);
        let base = config(dir.path(), "");
        let first = key_of(&base, &compose, &model, &ids);
        assert_eq!(first, key_of(&base, &compose, &model, &ids));
        assert_eq!(
            first,
            key_of(&config(dir.path(), "reuse = true"), &compose, &model, &ids)
        );
        assert_ne!(
            first,
            key_of(
                &config(dir.path(), "service_budget_s = 9"),
                &compose,
                &model,
                &ids
            )
        );
        let rebuilt = BTreeMap::from([("web".to_owned(), "sha256:2".to_owned())]);
        assert_ne!(first, key_of(&base, &compose, &model, &rebuilt));
        let mut changed = model.clone();
        changed.services.get_mut("web").unwrap().image = Some("web:2".into());
        assert_ne!(first, key_of(&base, &compose, &changed, &ids));
        std::fs::write(dir.path().join("web/app.py"), "print(22)\n").unwrap();
        assert_ne!(
            first,
            key_of(&base, &compose, &model, &ids),
            "an edited source not built yet"
        );
        assert_eq!(
            service_images(&base, &model)["web"],
            crate::stack::image_tag(&base, "web")
        );
    }

    #[test]
    fn a_lease_is_held_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), "");
        let lease = try_lease(&config, "r1").unwrap().expect("free");
        assert!(try_lease(&config, "r1").unwrap().is_none(), "held");
        assert!(try_lease(&config, "r2").unwrap().is_some(), "another stack");
        assert_eq!(
            std::fs::read_to_string(&lease.path).unwrap().trim(),
            std::process::id().to_string()
        );
        drop(lease);
        assert!(try_lease(&config, "r1").unwrap().is_some(), "released");
    }
}
