//! The stack's commands, the only part of [super] that prints: `health`, `docker-down`, and the
//! services' table `docker-up` prints after its run.
//!
//! Not here: the work itself (the other files of [super]); `docker-up` itself, which is the
//! gate's pipeline stopped after the stack ([crate::gate]).

use super::down::{self, ImagesReport, Sweep};
use super::health::health_report;
use super::record::choose;
use super::UpReport;
use crate::engine;
use crate::error::Failure;
use crate::owner::Liveness;
use crate::report::{Check, Outcome};
use crate::{ui, Ctx};

/// The services' table and the endpoints, as `docker-up` prints them.
pub fn print_up(report: &UpReport) {
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

impl crate::flags::Health {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let report = health_report(&config, self.run.as_deref()).await?;
        if let Some(note) = &report.note {
            ui::say(note);
        }
        let engine_line = if report.engine.ok {
            format!(
                "engine {} (API {}) at {} (engine_host {}): answered in {}",
                report.engine.server_version,
                report.engine.api_version,
                report.engine.host,
                report.engine.engine_host,
                ui::duration(report.engine.response_time)
            )
        } else {
            format!(
                "engine: FAIL {}",
                report.engine.error.as_deref().unwrap_or("no answer")
            )
        };
        eprintln!("{engine_line}");
        if report.stack.is_none() {
            if self.json {
                ui::print_json(serde_json::to_value(&report)?, false);
            }
            return Err(super::record::no_recorded_run(&config).into());
        }
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
            ui::print_json(serde_json::to_value(&report)?, report.healthy);
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
        // A checkout shared by hosts (one path on a network disk) records other hosts' stacks:
        // those are theirs, unless --any-host.
        let chosen: Vec<_> = if self.all && self.run.is_none() {
            let mut chosen = Vec::new();
            let now = crate::clock::unix_ms();
            for record in crate::state::Store::of(&config).read()?.kept() {
                let age = std::time::Duration::from_millis(
                    now.saturating_sub(record.stack.started_unix_ms),
                );
                match record.owner.liveness() {
                    Liveness::OtherHost(host)
                        if self.older_than.is_none_or(|limit| age < limit) =>
                    {
                        ui::say(format!(
                            "left run {} (project {}): kept by host {host}, began {} ago; --any-host --older-than removes it",
                            record.stack.run_id,
                            record.stack.project,
                            ui::duration(age)
                        ))
                    }
                    _ => chosen.push(record.stack.clone()),
                }
            }
            chosen
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
        let mut removed: Vec<serde_json::Value> = Vec::new();
        for stack in &chosen {
            let check = down::down(&config, stack).await?;
            say_check(&check);
            removed.push(serde_json::json!({
                "run_id": stack.run_id,
                "project": stack.project,
                "check": check,
            }));
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
                let how = Sweep {
                    all: true,
                    other_hosts_older_than: self.older_than.filter(|_| self.any_host),
                };
                let report = down::sweep(&config, &engine, how).await?;
                removed.extend(
                    report
                        .removed
                        .iter()
                        .map(|line| serde_json::json!({ "leftover": line })),
                );
                for line in &report.removed {
                    ui::say(format!("removed {line}"));
                }
                for line in report.left.iter().chain(&report.other_hosts) {
                    ui::say(format!("left {line}"));
                }
                if chosen.is_empty()
                    && report.removed.is_empty()
                    && report.left.is_empty()
                    && report.other_hosts.is_empty()
                {
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
            let check =
                engine::stop_started_engine(&config, &crate::progress::Progress::terminal())
                    .await?;
            say_check(&check);
            if check.outcome == Outcome::Failed {
                failed.push(check.detail);
            }
        }
        if self.json {
            ui::print_json(
                serde_json::json!({ "removed": removed, "problems": failed }),
                failed.is_empty(),
            );
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
