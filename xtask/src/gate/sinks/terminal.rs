//! The terminal, as the run goes: one line per stage start and end, per step, per suite, per
//! note and progress message, on stderr (timestamped when stderr is not a terminal).
//!
//! Not here: the summary table at the end ([super::summary]).

use std::sync::Mutex;
use std::time::Duration;

use crate::gate::events::{Counts, Event, Stage, StageOutcome};
use crate::gate::reporter::LiveSink;
use crate::ui;

/// Prints each event's line through [`ui::say`].
#[derive(Default)]
pub struct Terminal {
    /// The stage whose lines are printing: a step of another stage names its stage.
    current: Mutex<Option<Stage>>,
}

impl LiveSink for Terminal {
    fn event(&self, _at: Duration, event: &Event) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(line) = line(event, *current) {
            ui::say(line);
        }
        if let Event::StageStarted { stage } = event {
            *current = Some(*stage);
        }
    }
}

/// The line for one event, given the stage whose lines were printing; `None` for events that
/// print nothing here.
pub fn line(event: &Event, current: Option<Stage>) -> Option<String> {
    match event {
        Event::StageStarted { stage } => Some(format!("── {}", stage.name())),
        Event::StageFinished {
            stage,
            elapsed,
            outcome,
        } => Some(match outcome {
            StageOutcome::Passed => format!("── {} ok ({})", stage.name(), ui::duration(*elapsed)),
            StageOutcome::Failed => {
                format!("── {} FAILED ({})", stage.name(), ui::duration(*elapsed))
            }
            StageOutcome::Skipped(reason) if elapsed.is_zero() => {
                format!("── {} skipped: {reason}", stage.name())
            }
            StageOutcome::Skipped(reason) => format!(
                "── {} skipped ({}): {reason}",
                stage.name(),
                ui::duration(*elapsed)
            ),
        }),
        Event::Step { stage, check } => Some(format!(
            "  {:<4} {}{} ({}){}",
            check.outcome.label(),
            // A step finishing while a later stage prints (the smoke container beside the
            // stack) names its stage.
            match current {
                Some(current) if current != *stage => format!("{}: ", stage.name()),
                _ => String::new(),
            },
            check.name,
            ui::duration(check.duration),
            if check.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", check.detail)
            }
        )),
        Event::Suite(suite) => {
            let counts = Counts::of(suite);
            Some(format!(
                "  suite {}: {} passed, {} failed, {} skipped ({}){}",
                suite.name,
                counts.passed,
                counts.failed,
                counts.skipped,
                ui::duration(suite.duration),
                suite
                    .error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ))
        }
        Event::Property { name, value } => Some(format!("  {name}: {value}")),
        Event::Note(note) => Some(format!("  note: {note}")),
        Event::Progress { message, .. } => Some(format!("  … {message}")),
        // The summary says how the run ended.
        Event::Finished { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    /// Every event of a run, as the terminal shows it.
    fn transcript(record: &crate::gate::events::Record) -> String {
        let mut current = None;
        let mut out = String::new();
        for (_, event) in &record.events {
            if let Some(line) = line(event, current) {
                out.push_str(&line);
                out.push('\n');
            }
            if let Event::StageStarted { stage } = event {
                current = Some(*stage);
            }
        }
        out
    }

    #[test]
    fn docker_run() {
        insta::assert_snapshot!(transcript(&fixtures::docker_passing()));
    }

    #[test]
    fn no_engine_local_fallback() {
        insta::assert_snapshot!(transcript(&fixtures::no_engine_local()));
    }
}
