//! `docker-up --engine-only` for people and programs: the engine stage's checks as a table and
//! the engine's facts on stderr and, with `--json`, the [`EngineReport`] on stdout; a failed
//! check exits 1.
//!
//! Not here: the engine stage itself ([crate::engine::engine_only]).

use crate::config::Config;
use crate::engine::{EngineReport, EnsureOptions};
use crate::error::Failure;
use crate::report::Outcome;
use crate::ui;

/// Runs the engine stage alone and reports it.
pub async fn run(config: &Config, options: &EnsureOptions, json: bool) -> anyhow::Result<()> {
    let report = crate::engine::engine_only(config, options, &super::terminal_progress()).await?;
    eprint!("{}", render(&report));
    let failed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
        .map(|c| c.name.clone())
        .collect();
    if json {
        ui::print_json(serde_json::to_value(&report)?, report.passed);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(Failure::check(format!("engine checks failed: {}", failed.join(", "))).into())
    }
}

/// The checks' table, the failed checks' output and hints, and the engine's facts.
fn render(report: &EngineReport) -> String {
    let mut text = crate::report::table(&report.checks);
    for check in report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Failed)
    {
        if let Some(output) = check.output.as_deref().filter(|o| !o.trim().is_empty()) {
            text.push_str(&format!("\n{} output:\n{output}\n", check.name));
        }
        if let Some(remedy) = &check.remedy {
            text.push_str(&format!("(hint: {remedy})\n"));
        }
    }
    let facts = [
        ("host", report.engine.host.clone()),
        ("found via", report.discovery.reason.clone()),
        ("server version", report.engine.server_version.clone()),
        ("API version", report.engine.api_version.clone()),
        ("OS", report.engine.os.clone()),
        ("storage driver", report.engine.storage_driver.clone()),
        (
            "started by harness",
            match (&report.start_method, report.pid) {
                (Some(method), Some(pid)) => format!("yes, `{method}`, pid {pid}"),
                (Some(method), None) => format!("yes, `{method}`"),
                (None, _) if report.engine.started_by_harness => {
                    "yes, by an earlier run (state.json)".to_owned()
                }
                (None, _) => "no".to_owned(),
            },
        ),
        ("time to answer", ui::duration(report.engine.time_to_answer)),
        ("networks", report.networks.join(", ")),
    ];
    text.push('\n');
    let width = facts.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in facts {
        text.push_str(&format!("{key:width$}  {value}\n"));
    }
    text
}
