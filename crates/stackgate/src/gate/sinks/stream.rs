//! The structured event stream: one JSON object per event, one per line, appended to
//! `target/xtask/runs/<run id>/events.jsonl` as the run goes (for tools, and for reading a run
//! that was killed before its report). Secrets are redacted from every string.
//!
//! Not here: the terminal or the reports made at the end.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

use crate::gate::events::{Counts, Event};
use crate::gate::reporter::LiveSink;

/// Appends each event as a JSON line to a file.
pub struct Stream {
    file: Mutex<std::fs::File>,
    /// The run's secrets, as they become known.
    secrets: crate::gate::context::Secrets,
}

impl Stream {
    pub fn create(path: &Path, secrets: crate::gate::context::Secrets) -> anyhow::Result<Stream> {
        use anyhow::Context;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Stream {
            file: Mutex::new(file),
            secrets,
        })
    }
}

impl LiveSink for Stream {
    fn event(&self, at: Duration, event: &Event) {
        let secrets = self
            .secrets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let line = crate::junit::redact(&json_line(at, event).to_string(), &secrets);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // A full disk must not stop the gate: the stream is a convenience, the report is not.
        let _ = writeln!(file, "{line}");
    }
}

fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e6
}

/// One event as a JSON object: `at` (seconds since the run began), `event` (its kind) and its
/// fields.
pub fn json_line(at: Duration, event: &Event) -> Value {
    let (kind, fields) = match event {
        Event::StageStarted { stage } => ("stage_started", json!({ "stage": stage })),
        Event::StageFinished {
            stage,
            elapsed,
            outcome,
        } => (
            "stage_finished",
            json!({ "stage": stage, "elapsed": secs(*elapsed), "outcome": outcome }),
        ),
        Event::Step { stage, check } => ("step", json!({ "stage": stage, "check": check })),
        Event::TestStarted {
            suite,
            worker,
            id,
            name,
        } => (
            "test_started",
            json!({ "suite": suite, "worker": worker, "id": id, "name": name }),
        ),
        Event::TestFinished {
            suite,
            worker,
            test,
        } => (
            "test_finished",
            json!({ "suite": suite, "worker": worker, "test": test }),
        ),
        Event::ServiceState {
            service,
            container,
            state,
            at,
        } => (
            "service_state",
            json!({ "service": service, "container": container, "state": state, "engine_at": secs(*at) }),
        ),
        Event::Suite(suite) => {
            let counts = Counts::of(suite);
            (
                "suite",
                json!({
                    "name": suite.name,
                    "duration": secs(suite.duration),
                    "passed": counts.passed,
                    "failed": counts.failed,
                    "skipped": counts.skipped,
                    "error": suite.error,
                    "interrupted": suite.interrupted,
                }),
            )
        }
        Event::Property { name, value } => ("property", json!({ "name": name, "value": value })),
        Event::Note(note) => ("note", json!({ "text": note })),
        Event::Say(text) => ("say", json!({ "text": text })),
        Event::Progress { stage, message } => {
            ("progress", json!({ "stage": stage, "message": message }))
        }
        Event::Finished {
            verdict,
            total,
            overhead,
        } => (
            "finished",
            json!({ "verdict": verdict, "total": secs(*total), "overhead": secs(*overhead) }),
        ),
    };
    let mut object = json!({ "at": secs(at), "event": kind });
    if let (Value::Object(object), Value::Object(fields)) = (&mut object, fields) {
        object.extend(fields);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    #[test]
    fn every_event_of_a_run_as_json_lines() {
        let lines: Vec<String> = fixtures::no_engine_local()
            .events
            .iter()
            .map(|(at, event)| json_line(*at, event).to_string())
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn the_stream_file_redacts_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let secrets = crate::gate::context::Secrets::default();
        let stream = Stream::create(&path, secrets.clone()).unwrap();
        secrets.lock().unwrap().push("s3cret".into());
        stream.event(
            Duration::from_millis(5),
            &Event::Note("token s3cret leaked".into()),
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        let value: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(value["event"], "note");
        assert_eq!(value["at"], 0.005);
    }
}
