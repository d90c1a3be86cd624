//! The `health` command: the engine's answer and each service of the recorded stack, as a table
//! and with `--json`; not healthy exits 1.
//!
//! Not here: the health check itself ([crate::stack::health_report]).

use crate::error::Failure;
use crate::stack::health_report;
use crate::{ui, Ctx};

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
            return Err(crate::stack::no_recorded_run(&config).into());
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
