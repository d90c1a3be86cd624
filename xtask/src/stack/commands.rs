//! The stack's commands, the only part of [super] that prints: `docker-up` (with the progress
//! sink it prints through), `health` and `docker-down`.
//!
//! Not here: the work itself (the other files of [super]). `docker-up`'s own wiring of pre-flight,
//! engine and images ([`engine_stage`]) is the gate's pipeline's to replace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::down::{self, ImagesReport, Sweep};
use super::health::health_report;
use super::prepare::{abandon, prepare};
use super::record::choose;
use super::up::start;
use super::{Progress, UpEvent, UpOptions, UpReport};
use crate::config::Config;
use crate::engine::{self, Engine};
use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::{ui, Ctx};

/// Progress on stderr: on a terminal, one redrawn line of the services still starting; otherwise
/// timestamped lines at each change and every few seconds.
pub fn terminal_progress() -> Progress {
    let interactive = ui::interactive();
    let last_line = std::sync::Mutex::new(Instant::now());
    let drawn = std::sync::atomic::AtomicBool::new(false);
    Arc::new(move |event: &UpEvent| {
        use std::sync::atomic::Ordering;
        let clear = || {
            if drawn.swap(false, Ordering::Relaxed) {
                eprint!("\r\x1b[2K");
            }
        };
        let say = |text: String| {
            clear();
            ui::say(text);
            *last_line.lock().unwrap() = Instant::now();
        };
        match event {
            UpEvent::Compose(compose) => say(format!("compose: {compose}")),
            UpEvent::Starting { project, command } => {
                say(format!("starting project {project}: {command}"))
            }
            UpEvent::ServiceStarted { service } => say(format!("{service}: started")),
            UpEvent::ServiceReady {
                service,
                after,
                noticed,
            } => say(format!(
                "{service}: healthy {} after start{}",
                ui::duration(*after),
                noticed.map_or(String::new(), |n| format!(
                    " (noticed {:.1} ms after the engine's event)",
                    n.as_secs_f64() * 1000.0
                ))
            )),
            UpEvent::ServiceFailed { service, reason } => {
                say(format!("{service}: FAILED: {reason}"))
            }
            UpEvent::UpFinished { elapsed, success } => say(format!(
                "compose up {} after {}",
                if *success { "returned" } else { "FAILED" },
                ui::duration(*elapsed)
            )),
            UpEvent::Waiting { elapsed, pending } => {
                if pending.is_empty() {
                    return;
                }
                let list = pending
                    .iter()
                    .map(|(service, running)| match running {
                        Some(d) => format!("{service} (starting, {})", ui::duration(*d)),
                        None => format!("{service} (not started)"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                let line = format!("waiting {}: {list}", ui::duration(*elapsed));
                if interactive {
                    eprint!("\r\x1b[2K{line}");
                    drawn.store(true, Ordering::Relaxed);
                } else if last_line.lock().unwrap().elapsed() >= Duration::from_secs(5) {
                    say(line);
                }
            }
        }
    })
}

fn print_up(report: &UpReport) {
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.check.outcome.label().to_owned(),
                if s.check.outcome == Outcome::Passed {
                    ui::duration(s.check.duration)
                } else {
                    "-".to_owned()
                },
                s.noticed_after.map_or("-".to_owned(), |n| {
                    format!("{:.1} ms", n.as_secs_f64() * 1000.0)
                }),
                s.check.detail.clone(),
            ]
        })
        .collect();
    eprint!(
        "{}",
        ui::table(
            &["service", "status", "to healthy", "noticed", "detail"],
            &rows
        )
    );
    if !report.endpoints.is_empty() {
        eprintln!("endpoints:");
        for (name, url) in &report.endpoints {
            eprintln!("  {name:<12} {url}");
        }
    }
    eprintln!(
        "project {} (run {}), {}; compose up to all healthy {}, total {}",
        report.project,
        report.run_id,
        report.compose,
        ui::duration(report.waited),
        ui::duration(report.total)
    );
}

impl crate::flags::DockerUp {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        if self.engine_only {
            let options = engine::EnsureOptions {
                install: self.install,
            };
            return engine::run_engine_only(&config, &options, self.json).await;
        }
        let options = UpOptions {
            isolated: self.isolated,
            keep: true,
            progress: Some(terminal_progress()),
            ..UpOptions::default()
        };
        // Reading the compose file needs no engine: it overlaps pre-flight, engine and images,
        // on a task of its own so that nothing in those stages can hold it up.
        let preparing = tokio::spawn({
            let (config, options) = (config.clone(), options.clone());
            async move { prepare(&config, &options).await }
        });
        let engine = match engine_stage(&config, self.skip_preflight, self.install).await {
            Ok(engine) => engine,
            Err(e) => {
                if let Ok(Ok(prepared)) = preparing.await {
                    if !prepared.continued {
                        abandon(&config, &prepared.run_id);
                    }
                }
                return Err(e);
            }
        };
        let prepared = preparing.await.context("preparing the stack panicked")??;
        let report = start(&config, &engine, prepared, &options).await?;
        print_up(&report);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if let Some(failed) = report.failure() {
            if let Some(output) = &failed.output {
                eprintln!("{}", output.trim_end());
            }
            return Err(Failure::check(format!("{}: {}", failed.name, failed.detail))
                .with_hint(
                    "the stack is left as it is for inspection; `cargo xtask docker-down` removes it",
                )
                .into());
        }
        ui::say(format!(
            "stack up: all {} services healthy, {} after docker-up started",
            report.services.len(),
            ui::duration(report.total)
        ));
        Ok(())
    }
}

/// Pre-flight, the engine, then images: what `docker-up` needs before the stack.
async fn engine_stage(
    config: &Config,
    skip_preflight: bool,
    install: bool,
) -> anyhow::Result<Engine> {
    // Pre-flight (its CPU sample lasts about a second) and the engine run at the same time; a
    // failed pre-flight still stops docker-up before the stack.
    let preflight = async {
        if skip_preflight {
            None
        } else {
            Some(crate::preflight::run_checks(config).await)
        }
    };
    let options = engine::EnsureOptions { install };
    let (preflight, ensured) = tokio::join!(preflight, engine::ensure_running(config, &options));
    if let Some(checks) = preflight {
        for check in checks.iter().filter(|c| c.outcome != Outcome::Passed) {
            ui::say(format!(
                "pre-flight {}: {} {}",
                check.name,
                check.outcome.label(),
                check.detail
            ));
        }
        if let Some(failed) = checks.iter().find(|c| c.outcome == Outcome::Failed) {
            return Err(Failure::check(format!(
                "pre-flight check `{}` failed: {}",
                failed.name, failed.detail
            ))
            .into());
        }
        ui::say(format!("pre-flight: {} checks done", checks.len()));
    }
    let (engine, engine_checks) = ensured?;
    if let Some(failed) = engine_checks.iter().find(|c| c.outcome == Outcome::Failed) {
        return Err(Failure::check(format!("{}: {}", failed.name, failed.detail)).into());
    }
    ui::say(format!(
        "engine {} (API {}) at {}, answered in {}",
        engine.info.server_version,
        engine.info.api_version,
        engine.info.host,
        ui::duration(engine.info.time_to_answer)
    ));
    // The smoke container and the image provisioning do not depend on each other.
    let (smoke, networks, images) = tokio::join!(
        engine::smoke(&engine, config),
        engine::list_networks(&engine),
        crate::images::provision(&engine, config)
    );
    ui::say(format!(
        "{}: {} {} ({})",
        smoke.name,
        smoke.outcome.label(),
        smoke.detail,
        ui::duration(smoke.duration)
    ));
    if smoke.outcome == Outcome::Failed {
        return Err(Failure::check(format!("{}: {}", smoke.name, smoke.detail)).into());
    }
    ui::say(format!("engine networks: {}", networks?.join(", ")));
    let images = images?;
    for image in &images {
        ui::say(format!(
            "{}: {} {}",
            image.name,
            image.outcome.label(),
            image.detail
        ));
    }
    Ok(engine)
}

impl crate::flags::Health {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let report = health_report(&config, self.run.as_deref()).await?;
        if let Some(note) = &report.note {
            ui::say(note);
        }
        let engine_line = if report.engine.ok {
            format!(
                "engine {} (API {}) at {}: answered in {}",
                report.engine.server_version,
                report.engine.api_version,
                report.engine.host,
                ui::duration(report.engine.response_time)
            )
        } else {
            format!(
                "engine: FAIL {}",
                report.engine.error.as_deref().unwrap_or("no answer")
            )
        };
        eprintln!("{engine_line}");
        if let Some(stack) = &report.stack {
            eprintln!("project {} (run {})", stack.project, stack.run_id);
            let rows: Vec<Vec<String>> = report
                .services
                .iter()
                .map(|s| {
                    vec![
                        s.service.clone(),
                        s.state.clone(),
                        s.health.clone(),
                        s.time_to_healthy.map_or("-".to_owned(), ui::duration),
                        s.restarts.to_string(),
                        s.ports.join(", "),
                    ]
                })
                .collect();
            eprint!(
                "{}",
                ui::table(
                    &[
                        "service",
                        "state",
                        "health",
                        "to healthy",
                        "restarts",
                        "ports"
                    ],
                    &rows
                )
            );
            for (name, url) in &stack.endpoints {
                eprintln!("  {name:<12} {url}");
            }
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        if report.healthy {
            Ok(())
        } else {
            Err(Failure::check(format!("not healthy: {}", report.problems.join("; "))).into())
        }
    }
}

impl crate::flags::DockerDown {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let mut failed = Vec::new();
        // --all: every kept stack of this checkout; else the one named, or the newest kept.
        let chosen: Vec<_> = if self.all && self.run.is_none() {
            crate::state::Store::of(&config)
                .read()?
                .kept()
                .into_iter()
                .map(|r| r.stack.clone())
                .collect()
        } else {
            match choose(&config, self.run.as_deref())? {
                Some(chosen) => {
                    if let Some(note) = &chosen.note {
                        ui::say(note);
                    }
                    vec![chosen.record.stack]
                }
                None => Vec::new(),
            }
        };
        if chosen.is_empty() && !self.all {
            ui::say("no kept stack is recorded in state.json: nothing to remove");
        }
        for stack in &chosen {
            let check = down::down(&config, stack).await?;
            say_check(&check);
            if check.outcome == Outcome::Failed {
                if let Some(output) = &check.output {
                    eprintln!("{output}");
                }
                failed.push(check.detail.clone());
            }
        }
        if self.all || self.prune_images {
            let engine = engine::connect(&config).await.map_err(|e| {
                Failure::unavailable(format!("cannot reach the engine: {e:#}"), None)
            })?;
            if self.all {
                let report = down::sweep(&config, &engine, Sweep { all: true }).await?;
                for line in &report.removed {
                    ui::say(format!("removed {line}"));
                }
                for line in &report.left {
                    ui::say(format!("left {line}"));
                }
                if chosen.is_empty() && report.removed.is_empty() && report.left.is_empty() {
                    ui::say("no stack of this checkout is up");
                }
                failed.extend(report.problems);
                let images = down::remove_checkout_images(&config, &engine).await?;
                failed.extend(say_images(&images, "this checkout's"));
            }
            if self.prune_images {
                let images = down::prune_images(&config, &engine).await?;
                failed.extend(say_images(&images, "removed checkouts'"));
            }
        }
        if self.stop_engine {
            let check = engine::stop_started_engine(&config).await?;
            say_check(&check);
            if check.outcome == Outcome::Failed {
                failed.push(check.detail);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Failure::check(format!("docker-down left resources: {}", failed.join("; "))).into())
        }
    }
}

fn say_check(check: &Check) {
    ui::say(format!(
        "{}: {} {}",
        check.name,
        check.outcome.label(),
        check.detail
    ));
}

/// Says what an image cleanup did; returns its problems.
fn say_images(report: &ImagesReport, whose: &str) -> Vec<String> {
    if report.removed.is_empty() {
        ui::say(format!("images: none of {whose} tags to remove"));
    } else {
        ui::say(format!(
            "images: removed {whose} tags {}",
            report.removed.join(", ")
        ));
    }
    for line in &report.left {
        ui::say(format!("images: left {line}"));
    }
    report.problems.clone()
}
