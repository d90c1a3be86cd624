//! GitHub Actions: the step summary (Markdown appended to `$GITHUB_STEP_SUMMARY`) and one
//! `::error` workflow command per failed step or test, escaped as GitHub specifies.
//!
//! Not here: deciding whether we run on GitHub (the pipeline reads the environment).

use crate::gate::events::Record;
use crate::junit::Status;
use crate::report::Outcome;

/// The step summary: the verdict, the stage and suite table, the target and the report.
pub fn markdown(record: &Record, report: Option<&std::path::Path>) -> String {
    let verdict = record
        .finished()
        .map_or("FAILED".to_owned(), |(verdict, _, _)| verdict.label());
    let mut text = format!(
        "## mission-critical: {verdict}\n\n| stage | status | passed | failed | note | time |\n|---|---|---|---|---|---|\n"
    );
    for row in super::summary::rows(record) {
        text.push_str(&format!(
            "| {} |\n",
            row.iter()
                .map(|cell| cell.replace('|', "\\|"))
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    let target = record.property("target").unwrap_or_else(|| "none".into());
    text.push_str(&format!("\nTarget: `{target}`."));
    if let Some(path) = report {
        text.push_str(&format!(" Report: `{}`.", path.display()));
    }
    text.push('\n');
    text
}

/// `::error title=...::message` for each failed step and each failed test.
pub fn annotations(record: &Record) -> Vec<String> {
    let mut lines = Vec::new();
    for (stage, check) in record.steps().filter(|(_, c)| c.outcome == Outcome::Failed) {
        lines.push(format!(
            "::error title={}::{}",
            property(&format!(
                "mission-critical {}: {}",
                stage.name(),
                check.name
            )),
            message(&check.detail)
        ));
    }
    for suite in record.suites() {
        for case in &suite.cases {
            if let Status::Failed { message: text, .. } | Status::Error { message: text, .. } =
                &case.status
            {
                lines.push(format!(
                    "::error title={}::{}",
                    property(&format!("{} {}", suite.name, case.name)),
                    message(text)
                ));
            }
        }
    }
    lines
}

/// A workflow command's message: `%`, CR and LF escaped.
pub fn message(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: as a message, and `:` and `,` too.
pub fn property(text: &str) -> String {
    message(text).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    #[test]
    fn step_summary_of_a_failing_run() {
        insta::assert_snapshot!(markdown(
            &fixtures::failing_suite(),
            Some(std::path::Path::new("target/xtask/junit.xml"))
        ));
    }

    #[test]
    fn annotations_escape_what_github_reads_as_syntax() {
        let lines = annotations(&fixtures::failing_suite());
        insta::assert_snapshot!(lines.join("\n"));
        assert_eq!(property("a,b: c%\n"), "a%2Cb%3A c%25%0A");
        assert_eq!(message("a,b: c%\n"), "a,b: c%25%0A");
    }
}
