//! Merging JUnit files (the shards of one gate) into one report. Nothing here prints: the
//! `junit-merge` command is [crate::commands::junit_merge].
//!
//! Not here: rendering a report of the gate ([super::render]), reading runners' files
//! ([super::parse_suites]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use quick_junit::TestSuite;

use super::{
    lossy, parse_cases, parse_suites, schema_root, to_junit_case, validate_xsd, Cleaner, Counts,
    ParsedSuite,
};

/// What a merge wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Merged {
    pub tests: usize,
    pub failures: usize,
    pub errors: usize,
    pub skipped: usize,
    /// Any input was of an interrupted run.
    pub interrupted: bool,
}

/// Merges JUnit files (the shards of one gate) into one: suites of the same name become one suite
/// (cases appended in input order, times summed), counts are recounted from the cases. The
/// `harness` suites' cases are named by their input's shard (`shard 2/3: engine: ...`, else
/// `input 2: ...`); `interrupted` is true when any input's was; the other properties are the
/// first input's, and `shard` lists every input's. The root's `time` spans the inputs' wall
/// clocks (first timestamp to last end) when they carry timestamps. The output is written
/// atomically and read back; it is checked against the schema when xmllint is installed.
pub fn merge(inputs: &[PathBuf], output: &Path) -> anyhow::Result<Merged> {
    let mut report_name: Option<String> = None;
    let mut report_time = Duration::ZERO;
    // (start, end) of every suite that says when it ran, in ms since the epoch.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    let mut all_spanned = true;
    let mut interrupted = false;
    let mut shards: Vec<String> = Vec::new();
    let mut suites: Vec<ParsedSuite> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let xml =
            std::fs::read(input).with_context(|| format!("cannot read {}", input.display()))?;
        let xml = lossy(&xml);
        let report = quick_junit::Report::deserialize_from_str(&xml)
            .map_err(|e| anyhow::anyhow!("{}: not a JUnit report: {e}", input.display()))?;
        if report_name.is_none() {
            report_name = report.name.as_ref().map(|n| n.to_string());
        }
        report_time += report.time.unwrap_or_default();
        for suite in &report.test_suites {
            match (suite.timestamp, suite.time) {
                (Some(at), Some(time)) => spans.push((
                    at.timestamp_millis(),
                    at.timestamp_millis() + time.as_millis() as i64,
                )),
                _ => all_spanned = false,
            }
        }
        for mut parsed in parse_suites(&xml).with_context(|| input.display().to_string())? {
            let property = |name: &str| {
                parsed
                    .properties
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            interrupted |= property("interrupted").as_deref() == Some("true");
            if parsed.name == "harness" {
                let origin = match property("shard") {
                    Some(shard) => {
                        shards.push(shard.clone());
                        format!("shard {shard}")
                    }
                    None => format!("input {}", index + 1),
                };
                for case in &mut parsed.cases {
                    case.name = format!("{origin}: {}", case.name);
                }
            }
            match suites.iter_mut().find(|s| s.name == parsed.name) {
                Some(existing) => {
                    existing.cases.extend(parsed.cases);
                    existing.time += parsed.time;
                    if existing.system_out.is_none() {
                        existing.system_out = parsed.system_out;
                    }
                }
                None => suites.push(parsed),
            }
        }
    }
    for suite in &mut suites {
        for (name, value) in &mut suite.properties {
            match name.as_str() {
                "interrupted" => *value = interrupted.to_string(),
                "shard" if !shards.is_empty() => *value = shards.join(", "),
                _ => {}
            }
        }
    }

    let clean = Cleaner { secrets: &[] };
    let mut junit = quick_junit::Report::new(report_name.unwrap_or_else(|| "merged".to_owned()));
    let wall = spans
        .iter()
        .map(|(start, _)| *start)
        .min()
        .zip(spans.iter().map(|(_, end)| *end).max())
        .filter(|_| all_spanned)
        .map(|(start, end)| Duration::from_millis((end - start).max(0) as u64));
    junit.set_time(wall.unwrap_or(report_time));
    let mut counts = Counts::default();
    for suite in &suites {
        let mut merged = TestSuite::new(suite.name.as_str());
        merged.set_time(suite.time);
        for (name, value) in &suite.properties {
            merged.add_property((name.as_str(), value.as_str()));
        }
        for case in &suite.cases {
            counts.add(&case.status);
            merged.add_test_case(to_junit_case(case, &clean));
        }
        if let Some(out) = &suite.system_out {
            merged.set_system_out(clean.long(out));
        }
        junit.add_test_suite(merged);
    }
    let xml = schema_root(
        junit
            .to_string()
            .context("cannot render the merged report")?,
    );
    crate::state::write_atomic(output, xml.as_bytes())?;

    let reread = parse_cases(&std::fs::read_to_string(output)?)
        .with_context(|| format!("{} cannot be read back", output.display()))?;
    anyhow::ensure!(
        reread.len() == counts.tests,
        "{} holds {} cases, expected {}",
        output.display(),
        reread.len(),
        counts.tests
    );
    validate_xsd(output)?;
    Ok(Merged {
        tests: counts.tests,
        failures: counts.failures,
        errors: counts.errors,
        skipped: counts.skipped,
        interrupted,
    })
}
