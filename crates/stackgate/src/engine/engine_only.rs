//! `docker-up --engine-only`: restores the engine, runs the smoke container, lists the networks,
//! and prints what it found for people (a table and the engine's facts on stderr) and, with
//! `--json`, an [`EngineReport`] for programs (stdout). The one part of the engine that prints.
//!
//! Not here: the steps themselves (the sibling modules), the full `docker-up` ([`crate::stack`]).

use std::time::Instant;

use serde::Serialize;

use super::{list_networks, restore, smoke, Discovery, EngineInfo, EnsureOptions, SmokeRun};
use crate::config::Config;
use crate::error::Failure;
use crate::progress::Progress;
use crate::report::{Check, Outcome};
use crate::state;
use crate::ui;

/// What `docker-up --engine-only --json` prints.
#[derive(Debug, Serialize)]
pub struct EngineReport {
    pub engine: EngineInfo,
    pub start_method: Option<String>,
    pub pid: Option<u32>,
    pub discovery: Discovery,
    pub networks: Vec<String>,
    pub checks: Vec<Check>,
    pub passed: bool,
}

/// `docker-up --engine-only`: the whole engine stage with its output for people (stderr) and,
/// with `json`, the [`EngineReport`] for programs (stdout). The smoke container runs under a run
/// id of its own: no stack comes up.
pub async fn run_engine_only(
    config: &Config,
    options: &EnsureOptions,
    json: bool,
) -> anyhow::Result<()> {
    let progress = Progress::terminal();
    let restoration = restore(config, options, &progress).await?;
    let mut checks = restoration.checks;
    let engine = restoration.engine;
    progress.say(format!(
        "engine at {}: server {}, API {}, {}, storage driver {}",
        engine.info.host,
        engine.info.server_version,
        engine.info.api_version,
        engine.info.os,
        engine.info.storage_driver
    ));
    let run = SmokeRun::new(state::new_run_id());
    checks.push(smoke(&engine, config, &run, &progress).await);
    let networks_began = Instant::now();
    let networks = match list_networks(&engine).await {
        Ok(names) => {
            checks.push(Check::passed(
                "engine networks",
                networks_began.elapsed(),
                names.join(", "),
            ));
            names
        }
        Err(e) => {
            checks.push(Check::failed(
                "engine networks",
                networks_began.elapsed(),
                format!("{e:#}"),
            ));
            Vec::new()
        }
    };
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .map(|c| c.name.clone())
        .collect();

    let mut text = crate::report::table(&checks);
    for check in checks.iter().filter(|c| c.outcome == Outcome::Failed) {
        if let Some(output) = check.output.as_deref().filter(|o| !o.trim().is_empty()) {
            text.push_str(&format!("\n{} output:\n{output}\n", check.name));
        }
        if let Some(remedy) = &check.remedy {
            text.push_str(&format!("(hint: {remedy})\n"));
        }
    }
    let facts = [
        ("host", engine.info.host.clone()),
        ("found via", restoration.discovery.reason.clone()),
        ("server version", engine.info.server_version.clone()),
        ("API version", engine.info.api_version.clone()),
        ("OS", engine.info.os.clone()),
        ("storage driver", engine.info.storage_driver.clone()),
        (
            "started by harness",
            match (&restoration.start_method, restoration.pid) {
                (Some(method), Some(pid)) => format!("yes, `{method}`, pid {pid}"),
                (Some(method), None) => format!("yes, `{method}`"),
                (None, _) if engine.info.started_by_harness => {
                    "yes, by an earlier run (state.json)".to_owned()
                }
                (None, _) => "no".to_owned(),
            },
        ),
        ("time to answer", ui::duration(engine.info.time_to_answer)),
        ("networks", networks.join(", ")),
    ];
    text.push('\n');
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in facts {
        text.push_str(&format!("{key:width$}  {value}\n"));
    }
    eprint!("{text}");

    if json {
        let report = EngineReport {
            engine: engine.info.clone(),
            start_method: restoration.start_method,
            pid: restoration.pid,
            discovery: restoration.discovery,
            networks,
            checks,
            passed: failed.is_empty(),
        };
        let passed = report.passed;
        ui::print_json(serde_json::to_value(&report)?, passed);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::check(format!("engine checks failed: {}", failed.join(", "))).into())
    }
}
