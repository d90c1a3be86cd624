//! GitHub Actions: the step summary (Markdown appended to `$GITHUB_STEP_SUMMARY`: the verdict,
//! the stage table, then the failed tests) and one `::error` workflow command per failed step or
//! test (with `file=` and `line=` for a test whose runner named them), at most
//! [`MAX_ANNOTATIONS`], escaped as GitHub specifies.
//!
//! Not here: deciding whether we run on GitHub (the pipeline reads the environment).

use crate::gate::events::Record;
use crate::junit::Status;
use crate::report::Outcome;

/// GitHub shows at most ten error annotations per step; the rest are counted.
pub const MAX_ANNOTATIONS: usize = 10;

/// Failed rows listed in the step summary before "and N more".
const MAX_SUMMARY_ROWS: usize = 50;

/// One failed test: suite, name, first line of its failure, where (`file`, `line`).
struct FailedTest {
    suite: String,
    name: String,
    message: String,
    file: Option<String>,
    line: Option<u32>,
}

fn failed_tests(record: &Record) -> Vec<FailedTest> {
    let mut failed = Vec::new();
    for suite in record.suites() {
        for case in suite.rendered_cases() {
            let (Status::Failed { message, .. } | Status::Error { message, .. }) = &case.status
            else {
                continue;
            };
            let live = record.tests().find(|(_, s, t)| {
                *s == suite.name && t.name == case.name && t.classname == case.classname
            });
            failed.push(FailedTest {
                suite: suite.name.clone(),
                name: case.name.clone(),
                message: message.lines().next().unwrap_or_default().trim().to_owned(),
                file: live.and_then(|(_, _, t)| t.file.clone()),
                line: live.and_then(|(_, _, t)| t.line),
            });
        }
    }
    failed
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The step summary: the verdict, the stage and suite table, the failed tests, the target and
/// the report.
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
            row.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        ));
    }
    let failed = failed_tests(record);
    if !failed.is_empty() {
        text.push_str(&format!(
            "\n### Failed tests ({})\n\n| suite | test | failure | where |\n|---|---|---|---|\n",
            failed.len()
        ));
        for test in failed.iter().take(MAX_SUMMARY_ROWS) {
            let place = match (&test.file, test.line) {
                (Some(file), Some(line)) => format!("`{file}:{line}`"),
                (Some(file), None) => format!("`{file}`"),
                _ => String::new(),
            };
            text.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&test.suite),
                cell(&test.name),
                cell(&test.message),
                place
            ));
        }
        if failed.len() > MAX_SUMMARY_ROWS {
            text.push_str(&format!(
                "\nand {} more (see the JUnit report)\n",
                failed.len() - MAX_SUMMARY_ROWS
            ));
        }
    }
    let notable = super::summary::notable(record);
    if !notable.is_empty() {
        text.push_str(&format!(
            "\n### Flaky and quarantined tests ({})\n\n| | test | what happened |\n|---|---|---|\n",
            notable.len()
        ));
        for test in notable.iter().take(MAX_SUMMARY_ROWS) {
            text.push_str(&format!(
                "| {} | {} | {} |\n",
                test.label,
                cell(&test.test),
                cell(&test.detail)
            ));
        }
    }
    let target = record.property("target").unwrap_or_else(|| "none".into());
    text.push_str(&format!("\nTarget: `{target}`."));
    if let Some(path) = report {
        text.push_str(&format!(" Report: `{}`.", path.display()));
    }
    text.push('\n');
    text
}

/// `::error file=...,line=...,title=...::message` for each failed step and each failed test, at
/// most [`MAX_ANNOTATIONS`], then a plain line saying how many more.
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
    for test in failed_tests(record) {
        let mut properties = Vec::new();
        if let Some(file) = &test.file {
            properties.push(format!("file={}", property(file)));
            if let Some(line) = test.line {
                properties.push(format!("line={line}"));
            }
        }
        properties.push(format!(
            "title={}",
            property(&format!("{} {}", test.suite, test.name))
        ));
        lines.push(format!(
            "::error {}::{}",
            properties.join(","),
            message(&test.message)
        ));
    }
    if lines.len() > MAX_ANNOTATIONS {
        let more = lines.len() - MAX_ANNOTATIONS;
        lines.truncate(MAX_ANNOTATIONS);
        lines.push(format!(
            "and {more} more failures: see the step summary and the JUnit report"
        ));
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
    fn step_summary_names_flaky_and_quarantined_tests() {
        insta::assert_snapshot!(markdown(
            &fixtures::flaky_and_quarantined(),
            Some(std::path::Path::new("target/xtask/junit.xml"))
        ));
    }

    #[test]
    fn annotations_stop_at_ten_and_say_how_many_more() {
        let mut record = fixtures::failing_suite();
        for event in &mut record.events {
            if let crate::gate::events::Event::Suite(suite) = &mut event.1 {
                let failed = suite.cases[0].clone();
                for n in 0..12 {
                    let mut case = failed.clone();
                    case.name = format!("test_more_{n}");
                    suite.cases.push(case);
                }
            }
        }
        let lines = annotations(&record);
        assert_eq!(lines.len(), MAX_ANNOTATIONS + 1, "{lines:#?}");
        assert!(lines[..MAX_ANNOTATIONS]
            .iter()
            .all(|l| l.starts_with("::error ")));
        assert_eq!(
            lines[MAX_ANNOTATIONS],
            "and 4 more failures: see the step summary and the JUnit report"
        );
    }

    #[test]
    fn annotations_escape_what_github_reads_as_syntax() {
        let lines = annotations(&fixtures::failing_suite());
        insta::assert_snapshot!(lines.join("\n"));
        assert_eq!(property("a,b: c%\n"), "a%2Cb%3A c%25%0A");
        assert_eq!(message("a,b: c%\n"), "a,b: c%25%0A");
    }
}
