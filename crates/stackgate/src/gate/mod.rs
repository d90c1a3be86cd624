//! The pipeline every command that brings an environment up runs on, and its reporting:
//! `mission-critical` runs it to the end, `docker-up` until the stack (kept), `ci` until the
//! images. Stages emit [`events::Event`]s to one [`reporter::Reporter`], whose sinks render the
//! terminal, the JSON event stream, the summary, the JUnit report and the GitHub step summary.
//! Teardown and the report happen on every path: success, failure, a suite past its deadline,
//! an engine lost mid-run, Ctrl-C, SIGTERM, a panic.
//!
//! Reading order: the run's options and state (`run`), the events (`events`), the stages in
//! pipeline order (`pipeline`, then `machine`, `target`, `stack`, `suites`, `parallel`,
//! `teardown`), the engine watched while they run (`watch`), how every path ends (`supervise`,
//! `artefacts`: report.html and trace.json), then reporting
//! (`reporter`, `sinks`).
//!
//! Not here: how each stage does its work (engine, images, stack, ws, suites, target modules).

pub mod run;
pub mod events;
pub mod pipeline;
pub mod machine;
pub mod target;
pub mod stack;
pub mod suites;
pub mod suite_support;
pub mod parallel;
pub mod collect;
pub mod teardown;
pub mod lost;
pub mod watch;
pub mod supervise;
pub mod artefacts;
pub mod reporter;
pub mod sinks;

use std::path::Path;
use std::sync::Arc;

use crate::error::Failure;
use crate::flags::{DockerUp, MissionCritical, TargetChoice};
use crate::report::Outcome;
use crate::{ui, Ctx};

use events::Stage;
use reporter::{LiveSink, Reporter};
use run::{Isolation, Keep, Options, Run, Until};

/// A run of the pipeline, its live sinks (the terminal, the event stream under the run's
/// directory), with the project's facts recorded (run id, git commit).
async fn new_run(config: crate::config::Config, options: Options) -> Arc<Run> {
    let run_id = crate::state::new_run_id();
    let secrets = run::Secrets::default();
    let mut live: Vec<Box<dyn LiveSink>> = vec![Box::new(sinks::terminal::Terminal::default())];
    let events = crate::state::Store::of(&config)
        .run_dir(&run_id)
        .join("events.jsonl");
    match sinks::stream::Stream::create(&events, secrets.clone()) {
        Ok(stream) => live.push(Box::new(stream)),
        Err(e) => ui::say(format!("no event stream for this run: {e:#}")),
    }
    if config.history.enabled {
        live.push(Box::new(sinks::history::History::start(
            sinks::history::HistoryTarget {
                path: crate::history::path_of(&config),
                keep_runs: config.history.keep_runs.0,
                run: crate::history::RunStart {
                    id: run_id.clone(),
                    command: options.command.to_owned(),
                    started_ms: crate::clock::unix_ms() as i64,
                    config_hash: crate::history::config_hash(
                        &std::fs::read_to_string(&config.path).unwrap_or_default(),
                    ),
                },
                root: config.root.clone(),
            },
        )));
    }
    let run = Arc::new(Run::new(
        config,
        options,
        run_id,
        Arc::new(Reporter::new(live)),
        secrets,
    ));
    ui::say(format!(
        "{}: run {} ({})",
        run.options.command,
        run.run_id,
        run.config.path.display()
    ));
    run.property("run_id", run.run_id.clone());
    if let Some(commit) = git_commit(&run.config.root).await {
        run.property("git_commit", commit);
    }
    run
}

impl MissionCritical {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        // First: a signal from here on is the run's, even before its pipeline starts.
        supervise::Signals::install();
        let config = ctx.config()?;
        for name in &self.suites {
            if !config.suites.iter().any(|s| &s.name == name) {
                return Err(Failure::config(format!(
                    "--suite {name}: no [[suite]] named `{name}` in {}",
                    config.path.display()
                ))
                .into());
            }
        }
        let junit = if self.junit.is_absolute() {
            self.junit.clone()
        } else {
            config.root.join(&self.junit)
        };
        let options = Options {
            command: "mission-critical",
            target: self.target,
            until: Until::Suites,
            isolation: Isolation::Isolated,
            keep: match (self.keep, self.keep_on_failure) {
                (true, _) => Keep::Always,
                (false, true) => Keep::OnFailure,
                (false, false) => Keep::Never,
            },
            preflight: true,
            install: self.install,
            junit: Some(junit),
            shard: self.shard,
            only_suites: self.suites,
            reuse: self.reuse,
            durations: self.durations.map(|d| {
                if d.is_absolute() {
                    d
                } else {
                    config.root.join(d)
                }
            }),
            suite_args: self.args,
            jobs: self
                .jobs
                .or(config.gate.jobs.map(|jobs| jobs.0))
                .unwrap_or(crate::suites::DEFAULT_JOBS),
            retries: self.retries,
            json: self.json,
        };
        let (result, run) = pipeline::run(new_run(config, options).await).await;
        if self.json {
            ui::print_json(gate_json(&run, &result), result.is_ok());
        }
        result
    }
}

impl DockerUp {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        if self.engine_only {
            let options = crate::engine::EnsureOptions {
                install: self.install,
            };
            return crate::commands::engine_only::run(&config, &options, self.json).await;
        }
        supervise::Signals::install();
        let options = Options {
            isolation: if self.isolated {
                Isolation::Isolated
            } else {
                Isolation::Shared
            },
            keep: Keep::Always,
            preflight: !self.skip_preflight,
            install: self.install,
            ..Options::new("docker-up", TargetChoice::Docker, Until::Stack)
        };
        let (result, run) = pipeline::run(new_run(config, options).await).await;
        let up = run::lock(&run.up).take();
        if let Some(report) = &up {
            crate::commands::stack_table::print_up(report);
            if self.json {
                ui::print_json(serde_json::to_value(report)?, report.passed());
            }
        }
        result?;
        match up {
            Some(report) => {
                if let Some(failed) = report.failure() {
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
            None => Err(Failure::config(format!(
                "{}: there is no [stack] table, so there is no stack to bring up",
                run.config.path.display()
            ))
            .into()),
        }
    }
}

/// The engine and the images, as the gate's own stages make them: what `ci` goes on with.
/// Returns the engine and the stages' steps.
pub async fn engine_and_images(
    config: crate::config::Config,
    install: bool,
) -> anyhow::Result<(crate::engine::Engine, Vec<crate::report::Check>)> {
    let options = Options {
        install,
        ..Options::new("ci", TargetChoice::Docker, Until::Images)
    };
    let (result, run) = pipeline::run(new_run(config, options).await).await;
    result?;
    let engine = run::lock(&run.engine)
        .clone()
        .ok_or_else(|| Failure::unavailable("no engine answered", None))?;
    let steps = run
        .reporter
        .record()
        .steps()
        .filter(|(stage, c)| {
            matches!(stage, Stage::Engine | Stage::Images) && c.outcome != Outcome::Skipped
        })
        .map(|(_, c)| c.clone())
        .collect();
    Ok((engine, steps))
}

/// `mission-critical --json`: the verdict, where the reports are, each suite's counts and every
/// failed test (secrets redacted).
fn gate_json(run: &Run, result: &anyhow::Result<()>) -> serde_json::Value {
    let record = run.reporter.record();
    let verdict = record
        .finished()
        .map(|(verdict, total, _)| (verdict.label(), total.as_secs_f64()));
    let work_dir = run.config.work_dir();
    let suites: Vec<serde_json::Value> = record
        .suites()
        .map(|suite| {
            let counts = events::Counts::of(suite);
            serde_json::json!({
                "name": suite.name,
                "passed": counts.passed,
                "failed": counts.failed,
                "skipped": counts.skipped,
                "seconds": suite.duration.as_secs_f64(),
                "error": suite.error,
            })
        })
        .collect();
    let failed: Vec<serde_json::Value> = record
        .suites()
        .flat_map(|suite| {
            suite
                .rendered_cases()
                .into_iter()
                .filter_map(move |case| match &case.status {
                    crate::junit::Status::Failed { message, .. }
                    | crate::junit::Status::Error { message, .. } => Some(serde_json::json!({
                        "suite": suite.name,
                        "classname": case.classname,
                        "name": case.name,
                        "message": message.lines().next().unwrap_or_default(),
                    })),
                    _ => None,
                })
        })
        .collect();
    let value = serde_json::json!({
        "verdict": verdict.as_ref().map(|(label, _)| label.clone()),
        "seconds": verdict.as_ref().map(|(_, total)| *total),
        "run_id": run.run_id,
        "target": record.property("target"),
        "junit": run.options.junit,
        "report": work_dir.join("report.html"),
        "trace": work_dir.join("trace.json"),
        "run_dir": crate::state::Store::of(&run.config).run_dir(&run.run_id),
        "suites": suites,
        "failed_tests": failed,
        "error": result.as_ref().err().map(|e| format!("{e:#}")),
    });
    let redacted = crate::junit::redact(&value.to_string(), &run.secrets());
    serde_json::from_str(&redacted).unwrap_or(value)
}

async fn git_commit(root: &Path) -> Option<String> {
    let finished = crate::process::Cmd::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .run(std::time::Duration::from_secs(10))
        .await
        .ok()?;
    Some(finished.stdout.trim().to_owned())
}
