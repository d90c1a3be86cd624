//! The JUnit report of a run: the `harness` suite (the gate's own steps, in stage order, then
//! the stages that did not run), its properties, then every suite's cases. Built from the
//! [`Record`]; [`crate::junit`] renders and writes it.
//!
//! Not here: the XML itself, sanitising and redaction ([crate::junit]).

use crate::gate::events::{Record, Stage, StageOutcome, Verdict};
use crate::report::Check;

/// What the report needs besides the record.
pub struct ReportMeta<'a> {
    /// The report's name (`mission-critical <project>`).
    pub name: String,
    /// Redacted from every text.
    pub secrets: &'a [String],
    /// `K/N` when the run was one shard.
    pub shard: Option<String>,
    /// The machine the run ran on.
    pub hostname: Option<String>,
}

/// The report of a run.
pub fn report(record: &Record, meta: ReportMeta<'_>) -> crate::junit::Report {
    let mut properties = record.properties();
    let (interrupted, overhead) = match record.finished() {
        Some((verdict, _, overhead)) => (matches!(verdict, Verdict::Interrupted(_)), overhead),
        None => (true, Default::default()),
    };
    properties.push(("interrupted".into(), interrupted.to_string()));
    properties.push((
        "harness_overhead_s".into(),
        format!("{:.3}", overhead.as_secs_f64()),
    ));
    if let Some(shard) = meta.shard {
        properties.push(("shard".into(), shard));
    }
    // Stages overlap (pre-flight finishes while the stack starts): cases go in stage order.
    let mut harness: Vec<(Stage, Check)> = record
        .steps()
        .map(|(stage, check)| {
            let mut check = check.clone();
            check.name = format!("{}: {}", stage.name(), check.name);
            (stage, check)
        })
        .collect();
    harness.sort_by_key(|(stage, _)| *stage);
    let mut harness: Vec<Check> = harness.into_iter().map(|(_, check)| check).collect();
    for stage in Stage::ALL {
        if let Some((_, StageOutcome::Skipped(reason))) = record.stage(stage) {
            harness.push(Check::skipped(
                format!("{}: stage", stage.name()),
                reason.clone(),
            ));
        }
    }
    crate::junit::Report {
        name: meta.name,
        properties,
        harness,
        suites: record.suites().cloned().collect(),
        secrets: meta.secrets.to_vec(),
        time: record.finished().map(|(_, total, _)| total),
        harness_time: Some(harness_wall_time(record)),
        started: record.started,
        hostname: meta.hostname,
    }
}

/// The wall time of the gate's own stages (all but the suites): the union of their spans, so
/// that stages that overlap (pre-flight beside the engine, the smoke container beside the
/// stack) count once.
pub fn harness_wall_time(record: &Record) -> std::time::Duration {
    let mut spans: Vec<(std::time::Duration, std::time::Duration)> = Stage::ALL
        .into_iter()
        .filter(|stage| *stage != Stage::Suites)
        .filter_map(|stage| record.stage_span(stage))
        .collect();
    spans.sort();
    let mut total = std::time::Duration::ZERO;
    let mut current: Option<(std::time::Duration, std::time::Duration)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    if let Some((s, e)) = current {
        total += e - s;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    fn xml(record: &Record) -> String {
        crate::junit::render(&report(
            record,
            ReportMeta {
                name: "mission-critical chat".into(),
                secrets: &["s3cret".to_owned()],
                shard: None,
                hostname: Some("ci-runner-7".into()),
            },
        ))
        .unwrap()
    }

    #[test]
    fn docker_run() {
        insta::assert_snapshot!(xml(&fixtures::docker_passing()));
    }

    #[test]
    fn no_engine_local_fallback() {
        let text = xml(&fixtures::no_engine_local());
        assert!(!text.contains("s3cret"), "{text}");
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_failing_suite() {
        insta::assert_snapshot!(xml(&fixtures::failing_suite()));
    }
}
