//! `trace.json`: the run in the Chrome trace event format (open it in Perfetto or
//! `chrome://tracing`): one thread per stage, service and suite worker, a complete event (`X`)
//! for each stage, each service phase and each test, an instant event (`i`) for each
//! healthcheck attempt and exit. A pure function of the [`Record`], through the same lanes as
//! the HTML report.
//!
//! Not here: where the file goes ([super::artefacts]).

use std::time::Duration;

use serde_json::{json, Value};

use super::timeline::{self, Group, Kind};
use crate::gate::events::Record;

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

fn category(kind: Kind) -> &'static str {
    match kind {
        Kind::Passed => "passed",
        Kind::Failed => "failed",
        Kind::Skipped => "skipped",
        Kind::Created => "created",
        Kind::Starting => "starting",
        Kind::Healthy => "healthy",
        Kind::Running => "running",
        Kind::Stopping => "stopping",
        Kind::ProbeOk => "healthcheck",
        Kind::ProbeFailed => "healthcheck",
        Kind::Died => "exited",
    }
}

/// The trace, as the JSON object format (`traceEvents`, `displayTimeUnit`, `otherData`).
pub fn render(record: &Record, title: &str) -> Value {
    let timeline = timeline::of(record);
    let mut events: Vec<Value> = vec![json!({
        "name": "process_name", "ph": "M", "pid": 1, "tid": 0,
        "args": { "name": title }
    })];
    let mut next_tid = 1u64;
    let mut thread = |events: &mut Vec<Value>, name: String| {
        let tid = next_tid;
        next_tid += 1;
        events.push(json!({ "name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": { "name": name } }));
        events.push(json!({ "name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": { "sort_index": tid } }));
        tid
    };
    for lane in &timeline.lanes {
        let prefix = match lane.group {
            Group::Stage => "stage",
            Group::Service => "service",
            Group::Suite => "suite",
        };
        let tid = thread(&mut events, format!("{prefix} {}", lane.name));
        for span in &lane.spans {
            events.push(json!({
                "name": span.label, "cat": format!("{prefix},{}", category(span.kind)),
                "ph": "X", "ts": us(span.start), "dur": us(span.end.saturating_sub(span.start)),
                "pid": 1, "tid": tid,
                "args": { "lane": lane.name }
            }));
        }
        for mark in &lane.marks {
            events.push(json!({
                "name": mark.label, "cat": format!("{prefix},{}", category(mark.kind)),
                "ph": "i", "s": "t", "ts": us(mark.at), "pid": 1, "tid": tid
            }));
        }
        if lane.tests.is_empty() {
            continue;
        }
        // Tests on a thread per worker, under their suite's.
        let mut workers: Vec<(Option<String>, u64)> = Vec::new();
        for test in &lane.tests {
            let tid = match workers.iter().find(|(w, _)| *w == test.worker) {
                Some((_, tid)) => *tid,
                None => {
                    let name = match &test.worker {
                        Some(worker) => format!("{} tests (worker {worker})", lane.name),
                        None => format!("{} tests", lane.name),
                    };
                    let tid = thread(&mut events, name);
                    workers.push((test.worker.clone(), tid));
                    tid
                }
            };
            events.push(json!({
                "name": test.label, "cat": format!("test,{}", category(test.kind)),
                "ph": "X", "ts": us(test.start), "dur": us(test.end.saturating_sub(test.start)),
                "pid": 1, "tid": tid,
                "args": { "suite": lane.name, "outcome": category(test.kind) }
            }));
        }
    }
    let mut other = serde_json::Map::new();
    for (name, value) in record.properties() {
        other.insert(name, Value::String(value));
    }
    if let Some(started) = record.started {
        other.insert(
            "started".into(),
            Value::String(crate::junit::timestamp(started)),
        );
    }
    json!({ "traceEvents": events, "displayTimeUnit": "ms", "otherData": other })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    #[test]
    fn docker_run() {
        let trace = render(&fixtures::docker_passing(), "mission-critical chat");
        insta::assert_snapshot!(serde_json::to_string_pretty(&trace).unwrap());
    }

    #[test]
    fn every_complete_event_has_a_thread_and_a_non_negative_span() {
        let trace = render(&fixtures::failing_suite(), "t");
        let events = trace["traceEvents"].as_array().unwrap();
        let threads: Vec<u64> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| e["tid"].as_u64().unwrap())
            .collect();
        let complete: Vec<&Value> = events.iter().filter(|e| e["ph"] == "X").collect();
        assert!(complete.len() >= 6, "{trace}");
        for event in complete {
            assert!(threads.contains(&event["tid"].as_u64().unwrap()), "{event}");
            assert!(event["dur"].as_u64().is_some(), "{event}");
        }
        assert!(events
            .iter()
            .any(|e| e["name"] == "test_agent_answers, with commas" && e["cat"] == "test,failed"));
    }
}
