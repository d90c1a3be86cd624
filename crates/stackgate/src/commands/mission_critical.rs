//! `mission-critical`: the gate. Its flags become the pipeline's options, the pipeline runs to
//! the end, and `--json` prints the verdict, where the reports are, each suite's counts and every
//! failed test.
//!
//! Not here: the stages ([crate::gate::stages]), the reports ([crate::gate::sinks::ending]).

use crate::error::Failure;
use crate::flags::MissionCritical;
use crate::gate::context::{Context, Isolation, Keep, Options, Until};
use crate::{ui, Ctx};

use super::pipeline;

impl MissionCritical {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        // First: a signal from here on is the run's, even before its pipeline starts.
        crate::gate::supervise::Signals::install();
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
        let run = pipeline::context(config, options).await;
        let (result, _output) = pipeline::run(&run).await;
        if self.json {
            ui::print_json(gate_json(&run, &result), result.is_ok());
        }
        result
    }
}

/// `mission-critical --json`: the verdict, where the reports are, each suite's counts and every
/// failed test (secrets redacted).
pub fn gate_json(run: &Context, result: &anyhow::Result<()>) -> serde_json::Value {
    let record = run.reporter.record();
    let verdict = record
        .finished()
        .map(|(verdict, total, _)| (verdict.label(), total.as_secs_f64()));
    let work_dir = run.config.work_dir();
    let suites: Vec<serde_json::Value> = record
        .suites()
        .map(|suite| {
            let counts = crate::gate::events::Counts::of(suite);
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
