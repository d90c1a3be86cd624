//! The outcome of one check, as every stage returns it; the gate turns these into events, the
//! terminal table, the JUnit cases and the GitHub summary.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    /// Below a threshold, but `on_shortfall = "warn"`: reported, not failing.
    Warned,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "ok",
            Outcome::Warned => "warn",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "skip",
        }
    }
}

/// One check: what it was, how it ended, how long it took, what a person needs to know.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    /// One line: the measured value, or why it failed or was skipped.
    pub detail: String,
    /// Longer output for a failure (logs, a body), shown in the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// What to do about a failure or warning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<String>,
    /// A failure of the run itself rather than of what it checked (the engine lost mid-run):
    /// a JUnit `<error>`, not a `<failure>`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub errored: bool,
}

impl Check {
    pub fn new(
        name: impl Into<String>,
        outcome: Outcome,
        duration: Duration,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            name: name.into(),
            outcome,
            duration,
            detail: detail.into(),
            output: None,
            remedy: None,
            errored: false,
        }
    }
    /// A failed step that is an error of the run (see [`Check::errored`]).
    pub fn errored(
        name: impl Into<String>,
        duration: Duration,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            errored: true,
            ..Check::new(name, Outcome::Failed, duration, detail)
        }
    }
    pub fn passed(name: impl Into<String>, duration: Duration, detail: impl Into<String>) -> Check {
        Check::new(name, Outcome::Passed, duration, detail)
    }
    pub fn failed(name: impl Into<String>, duration: Duration, detail: impl Into<String>) -> Check {
        Check::new(name, Outcome::Failed, duration, detail)
    }
    pub fn skipped(name: impl Into<String>, reason: impl Into<String>) -> Check {
        Check::new(name, Outcome::Skipped, Duration::ZERO, reason)
    }
    pub fn with_output(mut self, output: impl Into<String>) -> Check {
        self.output = Some(output.into());
        self
    }
    pub fn with_remedy(mut self, remedy: impl Into<String>) -> Check {
        self.remedy = Some(remedy.into());
        self
    }
}

/// The table of checks commands print: name, status, time, detail.
pub fn table(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.outcome.label().to_owned(),
                crate::ui::duration(c.duration),
                c.detail.clone(),
            ]
        })
        .collect();
    crate::ui::table(&["check", "status", "time", "detail"], &rows)
}

fn as_secs<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64((duration.as_secs_f64() * 1000.0).round() / 1000.0)
}
