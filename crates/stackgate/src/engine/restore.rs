//! Restoring the engine: discover it, and when nothing answers (and `start_if_stopped` allows),
//! settle the pid files a killed dockerd left, try the platform's start plans in order, wait for
//! the answer within `start_timeout_s`, record in the run store that the harness started it, and
//! return the engine with its checks ("engine start", "engine available", "engine response
//! time", "stale pid file", ...). Everything a person should see while it waits goes to the
//! caller's [`Progress`].
//!
//! Not here: how a plan is launched or polled ([`super::start`]), what /proc says
//! ([`super::os`]), the package install itself ([`super::install`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;

use super::discover::{candidates, describe_candidates, discover, probe, start_target, Candidate};
use super::install::{install_engine_packages, install_remedy};
use super::os::{self, containerd_pid_file, dockerd_hosts, process_gone, PidFile};
use super::start::{launch, start_plans, wait_for_answer, HostFacts, Launched, StartPlan};
use super::{
    finish_connect, harness_started, Discovery, DiscoveryEnv, Engine, EnsureOptions, Host,
    Platform, Probe,
};
use crate::config::Config;
use crate::error::Failure;
use crate::progress::Progress;
use crate::report::{Check, Outcome};
use crate::state::{self, EngineState};
use crate::ui;

/// Everything `ensure_running` found out, for reports that want more than the contract gives.
#[derive(Debug, Clone)]
pub struct Restoration {
    pub engine: Engine,
    pub checks: Vec<Check>,
    pub discovery: Discovery,
    /// How the harness started it, when this call did.
    pub start_method: Option<String>,
    pub pid: Option<u32>,
}

/// [`ensure_running`](super::ensure_running) with the discovery report and how the engine was
/// started.
pub async fn restore(
    config: &Config,
    options: &EnsureOptions,
    progress: &Progress,
) -> anyhow::Result<Restoration> {
    restore_with(config, options, &DiscoveryEnv::from_process(), progress).await
}

/// [`restore`] with the discovery inputs given (tests point it at a private daemon this way,
/// without changing the process environment other tests share).
pub async fn restore_with(
    config: &Config,
    options: &EnsureOptions,
    env: &DiscoveryEnv,
    progress: &Progress,
) -> anyhow::Result<Restoration> {
    let began = Instant::now();
    let env = env.clone();
    let list = candidates(&env)?;
    let mut checks = Vec::new();
    if options.install {
        if let Some(check) = install_engine_packages(env.platform, began, progress).await? {
            checks.push(check);
        }
    }
    let (mut discovery, found) = discover(&list).await;

    if let Some((index, docker)) = found {
        let candidate = &list[index];
        let time_to_answer = began.elapsed();
        let started_by_harness = harness_started(config, &candidate.host);
        let engine =
            finish_connect(docker, &candidate.host, started_by_harness, time_to_answer).await?;
        return Ok(answered(config, engine, checks, discovery, time_to_answer));
    }

    let target = start_target(&list).ok_or_else(|| {
        Failure::unavailable(
            "no engine address to try",
            Some(install_remedy(env.platform)),
        )
    })?;
    let facts = start_facts(config, &env, target, &describe_candidates(&discovery))?;
    let deadline = began + config.engine.start_timeout_s.duration();
    let log = config.work_dir().join("dockerd.log");
    let plans = start_plans(&facts, &target.host, &config.engine, &log);
    if plans.is_empty() {
        return Err(Failure::unavailable(
            format!(
                "no engine answers at {} ({}) and the harness cannot start one there",
                target.host, target.source
            ),
            Some("start the engine yourself, or point DOCKER_HOST at a local socket".to_owned()),
        )
        .into());
    }

    // dockerd refuses to start while its pid file exists: wait for a live one to finish, remove a stale one.
    if facts.platform == Platform::Linux {
        if let Some(docker) =
            settle_pid_file(config, &target.host, deadline, &mut checks, progress).await?
        {
            // The old dockerd came back to life (it was starting, not stopping): use it.
            let time_to_answer = began.elapsed();
            let engine = finish_connect(docker, &target.host, false, time_to_answer).await?;
            discovery.chosen = Some(target.host.url());
            discovery.reason = format!("{}, answered while the harness waited", target.source);
            return Ok(answered(config, engine, checks, discovery, time_to_answer));
        }
    }

    let start = Start {
        config,
        target,
        platform: facts.platform,
        began,
        deadline,
        progress,
        checks,
        discovery,
    };
    start.try_plans(plans, &log).await
}

/// What is needed to start the engine when nothing answers: `start_if_stopped`, and an engine
/// installed (or `[engine] dockerd`).
fn start_facts(
    config: &Config,
    env: &DiscoveryEnv,
    target: &Candidate,
    tried: &str,
) -> anyhow::Result<HostFacts> {
    if !config.engine.start_if_stopped {
        return Err(Failure::unavailable(
            format!("no engine answers: {tried}"),
            Some(format!(
                "start the engine at {}, or set `start_if_stopped = true` under [engine] in {}",
                target.host,
                config.path.display()
            )),
        )
        .into());
    }
    let mut facts = HostFacts::detect();
    if let Some(program) = &config.engine.dockerd {
        // `[engine] dockerd`: the program spawned instead of the dockerd found on PATH.
        facts.dockerd = Some(config.resolve(program));
    }
    if !facts.installed() {
        return Err(Failure::unavailable(
            format!("no Docker engine is installed ({tried})"),
            Some(install_remedy(env.platform)),
        )
        .into());
    }
    Ok(facts)
}

/// Starting the engine at its target, one plan after another, within the start's deadline.
struct Start<'a> {
    config: &'a Config,
    target: &'a Candidate,
    platform: Platform,
    began: Instant,
    deadline: Instant,
    progress: &'a Progress,
    /// The checks so far (install, stale pid file, ...).
    checks: Vec<Check>,
    discovery: Discovery,
}

impl Start<'_> {
    /// Tries each plan in turn (dockerd once more after it exited early) until one answers.
    async fn try_plans(
        mut self,
        plans: Vec<StartPlan>,
        log: &std::path::Path,
    ) -> anyhow::Result<Restoration> {
        let (config, deadline, progress) = (self.config, self.deadline, self.progress);
        let mut failures = Vec::new();
        let mut plans: std::collections::VecDeque<(StartPlan, bool)> =
            plans.into_iter().map(|plan| (plan, false)).collect();
        while let Some((plan, retried)) = plans.pop_front() {
            let started_at = Instant::now();
            // Docker Desktop and colima on macOS answer at their own socket.
            let host = plan.serves().unwrap_or_else(|| self.target.host.clone());
            let mut launched = match launch(&plan, &host, deadline, progress).await {
                Ok(launched) => launched,
                Err(e) => {
                    progress.say(format!(
                        "`{}` did not start the engine ({e:#}); trying the next way",
                        plan.method()
                    ));
                    failures.push(format!("`{}`: {e:#}", plan.method()));
                    continue;
                }
            };
            state::Store::of(config).update(|s| {
                s.engine = Some(EngineState {
                    host: host.url(),
                    started_by_harness: true,
                    start_method: Some(plan.method()),
                    pid: launched.pid,
                })
            })?;
            match wait_for_answer(&host, deadline, &mut launched, &plan, progress).await {
                Ok(docker) => {
                    return self
                        .started(docker, &host, &plan, &launched, started_at, &failures)
                        .await;
                }
                Err(e) => {
                    // Nothing answers: the record would make --stop-engine act on nothing.
                    let alive = launched.pid.is_some_and(|p| !process_gone(p));
                    if !alive {
                        state::Store::of(config).update(|s| s.engine = None)?;
                    }
                    failures.push(format!("`{}`: {e:#}", plan.method()));
                    if Instant::now() >= deadline || alive {
                        break;
                    }
                    if !retried && matches!(plan, StartPlan::Dockerd { .. }) {
                        self.before_retry(&plan).await;
                        plans.push_front((plan.clone(), true));
                    }
                }
            }
        }
        Err(Failure::unavailable(
            format!(
                "the engine at {} could not be started: {}",
                self.target.host,
                failures.join("; ")
            ),
            Some(format!("see {}", log.display())),
        )
        .into())
    }

    /// After a kill -9 the old dockerd's containerd may still be shutting down, and the first
    /// start times out waiting for it: settle the pid files again before trying once more.
    async fn before_retry(&mut self, plan: &StartPlan) {
        self.progress.say(format!(
            "`{}` exited before answering; trying it once more",
            plan.method()
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        if self.platform == Platform::Linux {
            let _ = settle_pid_file(
                self.config,
                &self.target.host,
                self.deadline,
                &mut self.checks,
                self.progress,
            )
            .await;
        }
    }

    /// The engine a plan started answered: its pid recorded, the "engine start" check with
    /// the plans that failed before, then the availability and response checks.
    async fn started(
        mut self,
        docker: Docker,
        host: &Host,
        plan: &StartPlan,
        launched: &Launched,
        started_at: Instant,
        failures: &[String],
    ) -> anyhow::Result<Restoration> {
        let config = self.config;
        let time_to_answer = self.began.elapsed();
        let since_launch = started_at.elapsed();
        let pid = launched
            .pid
            .or_else(|| os::read_pid(&config.engine.pid_file));
        if launched.pid.is_none() && pid.is_some() {
            state::Store::of(config).update(|s| {
                if let Some(engine) = &mut s.engine {
                    engine.pid = pid;
                }
            })?;
        }
        let engine = finish_connect(docker, host, true, time_to_answer).await?;
        self.discovery.chosen = Some(host.url());
        self.discovery.reason = format!(
            "{}, started by the harness with `{}`",
            self.target.source,
            plan.method()
        );
        self.checks.push(
            Check::passed(
                "engine start",
                since_launch,
                format!(
                    "started with `{}`{}{}; answered {} after launch",
                    plan.argv().first().map(|a| a.join(" ")).unwrap_or_default(),
                    pid.map(|p| format!(", pid {p}")).unwrap_or_default(),
                    match plan {
                        StartPlan::Dockerd { log, .. } => format!(", log {}", log.display()),
                        _ => String::new(),
                    },
                    ui::duration(since_launch)
                ),
            )
            .with_output(failures.join("\n")),
        );
        self.checks
            .push(available_check(&engine, &self.discovery, time_to_answer));
        self.checks
            .push(response_check(config, time_to_answer, Some(since_launch)));
        Ok(Restoration {
            engine,
            checks: self.checks,
            discovery: self.discovery,
            start_method: Some(plan.method()),
            pid,
        })
    }
}

/// Handles the pid file before a start. Returns the engine when the live dockerd it names
/// answered at the target while we waited.
async fn settle_pid_file(
    config: &Config,
    host: &Host,
    deadline: Instant,
    checks: &mut Vec<Check>,
    progress: &Progress,
) -> anyhow::Result<Option<Docker>> {
    let pid_file = &config.engine.pid_file;
    let began = Instant::now();
    let mut throttle = progress.throttled();
    loop {
        match os::pid_file_now(pid_file, "dockerd") {
            PidFile::Absent => {
                settle_containerd_pid_file(config, began, checks, progress)?;
                return Ok(None);
            }
            PidFile::Stale { why, .. } => {
                let message = format!(
                    "stale pid file {}: {why}; removing it so that dockerd can start",
                    pid_file.display()
                );
                progress.say(&message);
                std::fs::remove_file(pid_file)
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::NotFound {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .with_context(|| format!("cannot remove {}", pid_file.display()))?;
                checks.push(Check::passed(
                    "stale pid file",
                    began.elapsed(),
                    format!("removed {} ({why})", pid_file.display()),
                ));
                settle_containerd_pid_file(config, began, checks, progress)?;
                return Ok(None);
            }
            PidFile::Live { pid } => {
                if let (Probe::Answered, Some(docker)) =
                    probe(host, Duration::from_millis(500)).await
                {
                    return Ok(Some(docker));
                }
                let serves = dockerd_hosts(&os::command_line(pid));
                if !serves
                    .iter()
                    .any(|h| Host::parse(h).ok().as_ref() == Some(host))
                {
                    // Not a daemon of ours shutting down: another one, serving elsewhere.
                    return Err(Failure::unavailable(
                        format!(
                            "dockerd pid {pid} holds {} but serves {}, not {host}; it was left alone",
                            pid_file.display(),
                            serves.join(", ")
                        ),
                        Some(format!(
                            "a second daemon needs its own `pid_file` and `dockerd_args` (--data-root, --exec-root) under [engine] in {}",
                            config.path.display()
                        )),
                    )
                    .into());
                }
                if Instant::now() >= deadline {
                    return Err(Failure::unavailable(
                        format!(
                            "dockerd pid {pid} holds {} and does not answer at {host}; it was left alone",
                            pid_file.display()
                        ),
                        Some(format!(
                            "wait for it to finish, or stop it yourself (kill {pid}); then retry"
                        )),
                    )
                    .into());
                }
                throttle.say(|| {
                    format!(
                        "waiting for dockerd pid {pid} (named by {}) to finish shutting down or to answer at {host} ({} so far)",
                        pid_file.display(),
                        ui::duration(began.elapsed())
                    )
                });
                tokio::time::sleep(Duration::from_millis(50)).await;
                if process_gone(pid) {
                    checks.push(Check::passed(
                        "previous dockerd exited",
                        began.elapsed(),
                        format!("waited for pid {pid} to exit"),
                    ));
                }
            }
        }
    }
}

/// Removes the containerd pid file of a killed dockerd when it names no live containerd; a live
/// containerd is left for dockerd to adopt.
fn settle_containerd_pid_file(
    config: &Config,
    began: Instant,
    checks: &mut Vec<Check>,
    progress: &Progress,
) -> anyhow::Result<()> {
    let path = containerd_pid_file(&config.engine.dockerd_args);
    if let PidFile::Stale { why, .. } = os::pid_file_now(&path, "containerd") {
        progress.say(format!(
            "stale containerd pid file {}: {why}; removing it",
            path.display()
        ));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
        checks.push(Check::passed(
            "stale containerd pid file",
            began.elapsed(),
            format!("removed {} ({why})", path.display()),
        ));
    }
    Ok(())
}

/// An engine that answered without the harness starting it: its checks and the restoration.
fn answered(
    config: &Config,
    engine: Engine,
    mut checks: Vec<Check>,
    discovery: Discovery,
    time_to_answer: Duration,
) -> Restoration {
    checks.push(available_check(&engine, &discovery, time_to_answer));
    checks.push(response_check(config, time_to_answer, None));
    Restoration {
        engine,
        checks,
        discovery,
        start_method: None,
        pid: None,
    }
}

fn available_check(engine: &Engine, discovery: &Discovery, time_to_answer: Duration) -> Check {
    Check::passed(
        "engine available",
        time_to_answer,
        format!(
            "{} ({}): server {}, API {}",
            engine.info.host, discovery.reason, engine.info.server_version, engine.info.api_version
        ),
    )
}

fn response_check(
    config: &Config,
    time_to_answer: Duration,
    since_launch: Option<Duration>,
) -> Check {
    let limit = config.engine.respond_within_s.duration();
    let detail = match since_launch {
        Some(launch) => format!(
            "answered {} after the harness began ({} after launch; limit {})",
            ui::duration(time_to_answer),
            ui::duration(launch),
            ui::duration(limit)
        ),
        None => format!(
            "answered {} after the harness began (limit {})",
            ui::duration(time_to_answer),
            ui::duration(limit)
        ),
    };
    let outcome = if time_to_answer <= limit {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    let check = Check::new("engine response time", outcome, time_to_answer, detail);
    if outcome == Outcome::Failed {
        check.with_remedy(format!(
            "the engine is slow to start: look at its log, or raise `respond_within_s` under [engine] in {}",
            config.path.display()
        ))
    } else {
        check
    }
}
