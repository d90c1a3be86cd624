//! The end of a run as people and tools read it, rendered from the record once the pipeline
//! has finished: the JUnit report written, the summary printed, the regressions and quarantined
//! tests named, report.html and trace.json written ([super::artefacts]), the GitHub step summary
//! and annotations. The command calls [`report`] after the pipeline.
//!
//! Not here: the verdict ([crate::gate::supervise]); the exit code ([crate::commands::pipeline]).

use crate::gate::context::{Context, Until};
use crate::gate::events::Record;

/// Writes the reports and prints the summary of a finished run; whether the JUnit report could
/// be written (a report that could not fails a run that passed).
pub fn report(run: &Context) -> anyhow::Result<()> {
    let record = run.reporter.record();
    let written = write_report(run, &record);
    let report = match (&written, &run.options.junit) {
        (Err(e), _) => super::summary::ReportWritten::Failed(format!("{e:#}")),
        (Ok(()), Some(path)) => super::summary::ReportWritten::At(path),
        (Ok(()), None) => super::summary::ReportWritten::None,
    };
    let summary = super::summary::render(&record, run.options.command, report);
    eprint!("{}", crate::junit::redact(&summary, &run.secrets()));
    for finding in regressions(run) {
        crate::ui::say(format!("regression: {finding}"));
    }
    for (test, rate) in quarantined(run, &record) {
        crate::ui::say(format!("quarantined: {test}: {rate}"));
    }
    // The gate's own pictures of the run: only a run of the suites has a report to look at.
    if run.options.until == Until::Suites && run.options.junit.is_some() {
        match super::artefacts::write(run, &record) {
            Ok(written) => crate::ui::say(format!(
                "report: {} · trace: {} (open in Perfetto or chrome://tracing) · logs: {}",
                written.report.display(),
                written.trace.display(),
                crate::state::Store::of(&run.config)
                    .run_dir(&run.run_id)
                    .display()
            )),
            Err(e) => crate::ui::say(format!("the HTML report and trace were not written: {e:#}")),
        }
    }
    github(run, &record);
    written
}

fn write_report(run: &Context, record: &Record) -> anyhow::Result<()> {
    let Some(path) = &run.options.junit else {
        return Ok(());
    };
    let report = super::junit::report(
        record,
        super::junit::ReportMeta {
            name: format!("{} {}", run.options.command, run.config.project.name.0),
            secrets: &run.secrets(),
            shard: run
                .options
                .shard
                .map(|s| format!("{}/{}", s.index, s.count)),
            hostname: crate::junit::hostname(),
        },
    );
    crate::junit::write(&report, path)
}

/// This run's figures above the median of the runs before it (from the run history, which the
/// history sink has finished writing by the `Finished` event); none when the history is off or
/// cannot be read.
fn regressions(run: &Context) -> Vec<crate::history::analysis::Finding> {
    let config = &run.config;
    if !config.history.enabled {
        return Vec::new();
    }
    let path = crate::history::path_of(config);
    crate::history::Store::open(&path)
        .and_then(|store| store.findings(&run.run_id, crate::history::thresholds(&config.history)))
        .unwrap_or_default()
}

/// How many runs to reckon a quarantined test's pass rate over.
const QUARANTINE_RUNS: usize = 20;

/// Every quarantined test of the run with its pass rate in the history (this run included), so
/// that a quarantine is never forgotten; `None` for the rate when the history is off or cannot
/// be read.
fn quarantined(run: &Context, record: &Record) -> Vec<(String, String)> {
    let store = run
        .config
        .history
        .enabled
        .then(|| crate::history::Store::open(&crate::history::path_of(&run.config)).ok())
        .flatten();
    let mut lines = Vec::new();
    for suite in record.suites() {
        for case in suite.cases.iter().filter(|c| c.quarantined) {
            let test = super::history::test_id(&case.classname, &case.name);
            let rate = match &store {
                Some(store) => store
                    .pass_rate(&suite.name, &test, QUARANTINE_RUNS)
                    .map_or_else(|e| format!("no pass rate ({e:#})"), |rate| rate.to_string()),
                None => "no pass rate (the history is off)".to_owned(),
            };
            lines.push((format!("{}::{test}", suite.name), rate));
        }
    }
    lines
}

/// The GitHub step summary (when `GITHUB_STEP_SUMMARY` is set) and the annotations (when
/// `GITHUB_ACTIONS=true`).
fn github(run: &Context, record: &Record) {
    let secrets = run.secrets();
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        let markdown = super::github::markdown(record, run.options.junit.as_deref());
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            let _ = file.write_all(crate::junit::redact(&markdown, &secrets).as_bytes());
        }
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        // Workflow commands are read from stdout and stderr; under --json stdout is the object's.
        for line in super::github::annotations(record) {
            let line = crate::junit::redact(&line, &secrets);
            if run.options.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
    }
}
