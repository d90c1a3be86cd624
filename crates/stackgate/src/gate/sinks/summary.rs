//! The summary at the end, for people: one row per stage (its outcome, its steps, the time it
//! measured itself) and per suite, the slowest services and tests, the target, the total and the
//! harness's own overhead, and the verdict.
//!
//! Not here: the live lines ([super::terminal]) or the GitHub step summary ([super::github]).

use std::path::Path;
use std::time::Duration;

use crate::gate::events::{Counts, Record, Stage, StageOutcome, Verdict};
use crate::junit::{Case, Status};
use crate::report::{Check, Outcome};
use crate::ui;

/// Where the report went, or why it did not.
pub enum ReportWritten<'a> {
    At(&'a Path),
    Failed(String),
    /// This command writes no report (`docker-up`).
    None,
}

/// One row per stage, then one per suite: name, status, passed, failed, skipped / note, time.
pub fn rows(record: &Record) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for stage in Stage::ALL {
        if stage == Stage::Suites && record.suites().next().is_some() {
            // The suites have rows of their own.
            continue;
        }
        let steps: Vec<&Check> = record
            .steps()
            .filter(|(s, _)| *s == stage)
            .map(|(_, c)| c)
            .collect();
        let Some((elapsed, outcome)) = record.stage(stage) else {
            continue;
        };
        let failed = steps
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .count();
        let passed = steps
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Passed | Outcome::Warned))
            .count();
        let (status, note) = match outcome {
            StageOutcome::Passed => ("ok", String::new()),
            StageOutcome::Failed => ("FAIL", String::new()),
            StageOutcome::Skipped(reason) => ("skip", reason.clone()),
        };
        // A stage that never ran has no time; one that tried and was skipped keeps its own.
        let time = if matches!(outcome, StageOutcome::Skipped(_)) && elapsed.is_zero() {
            "-".to_owned()
        } else {
            ui::duration(elapsed)
        };
        rows.push(vec![
            stage.name().to_owned(),
            status.to_owned(),
            passed.to_string(),
            failed.to_string(),
            note,
            time,
        ]);
    }
    for suite in record.suites() {
        let counts = Counts::of(suite);
        let flaky = suite.flaky().count();
        let quarantined = suite.cases.iter().filter(|c| c.quarantined).count();
        let note: Vec<String> = [
            (counts.skipped, "skipped"),
            (flaky, "flaky"),
            (quarantined, "quarantined"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let status = if !suite.passed() {
            "FAIL"
        } else if counts.passed == 0 {
            "skip"
        } else {
            "ok"
        };
        rows.push(vec![
            format!("suite {}", suite.name),
            status.to_owned(),
            counts.passed.to_string(),
            counts.failed.to_string(),
            note.join(", "),
            ui::duration(suite.duration),
        ]);
    }
    rows
}

/// A test worth a line of its own beyond pass and fail: it passed only on a retry (`FLAKY`), or
/// its suite's quarantine forgives its failure (`QUARANTINED`).
pub struct Notable {
    pub label: &'static str,
    /// `suite::classname::name`.
    pub test: String,
    /// `passed on attempt 2 of 2; attempt 1: AssertionError: ...`.
    pub detail: String,
}

/// The run's flaky and quarantined tests, suite by suite.
pub fn notable(record: &Record) -> Vec<Notable> {
    let mut notable = Vec::new();
    for suite in record.suites() {
        for case in &suite.cases {
            let test = format!(
                "{}::{}",
                suite.name,
                crate::suites::case_key(&case.classname, &case.name)
            );
            let first_failure = case.reruns.first().and_then(|rerun| match &rerun.status {
                Status::Failed { message, .. } | Status::Error { message, .. } => {
                    message.lines().next().map(str::trim).map(str::to_owned)
                }
                Status::Passed | Status::Skipped { .. } => None,
            });
            if case.flaky() {
                let mut detail = format!("passed on attempt {}", case.attempts());
                if let Some(message) = first_failure {
                    detail.push_str(&format!("; attempt 1: {message}"));
                }
                notable.push(Notable {
                    label: "FLAKY",
                    test: test.clone(),
                    detail,
                });
            }
            if case.quarantined {
                let ended = match &case.status {
                    Status::Passed => "passed",
                    Status::Failed { .. } => "failed",
                    Status::Error { .. } => "broke",
                    Status::Skipped { .. } => "skipped",
                };
                let attempts = match case.attempts() {
                    1 => String::new(),
                    n => format!(" after {n} attempts"),
                };
                notable.push(Notable {
                    label: "QUARANTINED",
                    test,
                    detail: format!(
                        "{ended}{attempts}; its quarantine keeps it from failing the gate"
                    ),
                });
            }
        }
    }
    notable
}

/// The whole summary; `command` names the run in its last line.
pub fn render(record: &Record, command: &str, report: ReportWritten<'_>) -> String {
    let mut text = String::from("\n");
    text.push_str(&ui::table(
        &[
            "stage",
            "status",
            "passed",
            "failed",
            "skipped / note",
            "time",
        ],
        &rows(record),
    ));

    let mut services: Vec<&Check> = record
        .steps()
        .filter(|(s, c)| *s == Stage::Stack && c.name.starts_with("service "))
        .map(|(_, c)| c)
        .collect();
    services.sort_by_key(|c| std::cmp::Reverse(c.duration));
    if !services.is_empty() {
        let slowest: Vec<String> = services
            .iter()
            .take(3)
            .map(|c| format!("{} {}", c.name, ui::duration(c.duration)))
            .collect();
        text.push_str(&format!("slowest services: {}\n", slowest.join(", ")));
    }
    let mut cases: Vec<(&str, &Case)> = record
        .suites()
        .flat_map(|s| s.cases.iter().map(move |c| (s.name.as_str(), c)))
        .filter(|(_, c)| c.time > Duration::ZERO)
        .collect();
    cases.sort_by_key(|(_, c)| std::cmp::Reverse(c.time));
    if !cases.is_empty() {
        let slowest: Vec<String> = cases
            .iter()
            .take(3)
            .map(|(suite, c)| format!("{suite}::{} {}", c.name, ui::duration(c.time)))
            .collect();
        text.push_str(&format!("slowest tests: {}\n", slowest.join(", ")));
    }
    for test in notable(record) {
        text.push_str(&format!("{} {}: {}\n", test.label, test.test, test.detail));
    }
    let target = record.property("target").unwrap_or_else(|| "none".into());
    let (verdict, total, overhead) = match record.finished() {
        Some((verdict, total, overhead)) => (verdict.clone(), total, overhead),
        None => (Verdict::Failed, Duration::ZERO, Duration::ZERO),
    };
    let report = match report {
        ReportWritten::At(path) => format!("; report: {}", path.display()),
        ReportWritten::Failed(error) => format!("; report: NOT WRITTEN ({error})"),
        ReportWritten::None => String::new(),
    };
    text.push_str(&format!(
        "target: {target}; total {}{report}\n",
        ui::duration(total)
    ));
    text.push_str(&format!(
        "harness overhead: {} (total minus the target, stack, suites and teardown)\n",
        ui::duration(overhead)
    ));
    text.push_str(&format!("{command}: {}\n", verdict.label()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    #[test]
    fn docker_run() {
        insta::assert_snapshot!(render(
            &fixtures::docker_passing(),
            "mission-critical",
            ReportWritten::At(Path::new("target/xtask/junit.xml"))
        ));
    }

    /// The defect this layout fixes: with no engine, the engine is skipped (in its own short
    /// time), the local processes' start is the target stage's, and the overhead is the
    /// harness's own.
    #[test]
    fn no_engine_local_fallback() {
        let text = render(
            &fixtures::no_engine_local(),
            "mission-critical",
            ReportWritten::At(Path::new("target/xtask/junit.xml")),
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn flaky_and_quarantined_tests_have_lines_of_their_own() {
        insta::assert_snapshot!(render(
            &fixtures::flaky_and_quarantined(),
            "mission-critical",
            ReportWritten::At(Path::new("target/xtask/junit.xml"))
        ));
    }

    #[test]
    fn a_failing_suite_and_an_unwritten_report() {
        insta::assert_snapshot!(render(
            &fixtures::failing_suite(),
            "mission-critical",
            ReportWritten::Failed("disk full".into())
        ));
    }
}
