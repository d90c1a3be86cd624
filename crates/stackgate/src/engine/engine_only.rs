//! `docker-up --engine-only`: restores the engine, runs the smoke container, lists the networks,
//! and returns what it found as an [`EngineReport`]. Nothing here prints.
//!
//! Not here: the steps themselves (the sibling modules), the report for people and programs
//! ([crate::commands::engine_only]), the full `docker-up` ([`crate::stack`]).

use std::time::Instant;

use serde::Serialize;

use super::{list_networks, restore, smoke, Discovery, EngineInfo, EnsureOptions, SmokeRun};
use crate::config::Config;
use crate::progress::Progress;
use crate::report::{Check, Outcome};
use crate::state;

/// What `docker-up --engine-only` found; `--json` prints it as it is.
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

/// `docker-up --engine-only`: the whole engine stage, saying what it does through `progress`.
/// The smoke container runs under a run id of its own: no stack comes up. `Err` only when the
/// engine could not be restored; failed checks are in the report.
pub async fn engine_only(
    config: &Config,
    options: &EnsureOptions,
    progress: &Progress,
) -> anyhow::Result<EngineReport> {
    let restoration = restore(config, options, progress).await?;
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
    checks.push(smoke(&engine, config, &run, progress).await);
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
    let passed = !checks.iter().any(|c| c.outcome == Outcome::Failed);
    Ok(EngineReport {
        engine: engine.info.clone(),
        start_method: restoration.start_method,
        pid: restoration.pid,
        discovery: restoration.discovery,
        networks,
        checks,
        passed,
    })
}
