//! The `docker-down` command: removes the kept stack (or, with `--all`, every stack and leftover
//! of this checkout), prunes images, stops an engine the harness started, and says what it did.
//!
//! Not here: the removal itself ([crate::stack::down], [crate::stack::sweep]).

use crate::engine;
use crate::error::Failure;
use crate::owner::Liveness;
use crate::report::{Check, Outcome};
use crate::stack::{self, choose, ImagesReport, Sweep};
use crate::{ui, Ctx};

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
            let check = stack::down(&config, stack).await?;
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
                let report = stack::sweep(&config, &engine, how).await?;
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
                let images = stack::remove_checkout_images(&config, &engine).await?;
                failed.extend(say_images(&images, "this checkout's"));
            }
            if self.prune_images {
                let images = stack::prune_images(&config, &engine).await?;
                failed.extend(say_images(&images, "removed checkouts'"));
            }
        }
        if self.stop_engine {
            let check = engine::stop_started_engine(&config, &super::terminal_progress()).await?;
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
