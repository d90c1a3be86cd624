//! The terminal, as the run goes: one line per stage start and end, per step, per test as it
//! ends (`e2e  PASS  test_name  0.42s`), per suite, per note and progress message, per container
//! that died or turned unhealthy, on stderr (timestamped when stderr is not a terminal). On a
//! terminal, one status line under them is redrawn with the counts and the test running.
//!
//! Not here: the summary table at the end ([super::summary]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use crate::gate::events::{Counts, Event, Stage, StageOutcome};
use crate::gate::reporter::LiveSink;
use crate::stack::ContainerState;
use crate::suites::TestOutcome;
use crate::ui;

/// The longest line the terminal prints (before the timestamp `ui::say` adds off a terminal):
/// longer ones are wrapped at a space, the rest indented under their start.
pub const WIDTH: usize = 140;

/// What the lines so far tell the next one.
#[derive(Default)]
pub struct View {
    /// The stage whose lines are printing: a step of another stage names its stage.
    current: Option<Stage>,
    /// Containers being stopped: their exit is expected, not news.
    stopping: BTreeSet<String>,
    /// While preflight runs (its checks all end at once, within about a second), the lines of the
    /// stages that started beside it, held so that preflight's lines stay under its header.
    held: Option<Vec<String>>,
    /// The stage whose lines the held ones continue.
    held_current: Option<Stage>,
}

/// The stage an event belongs to, when it says.
fn stage_of(event: &Event) -> Option<Stage> {
    match event {
        Event::StageStarted { stage }
        | Event::StageFinished { stage, .. }
        | Event::Step { stage, .. }
        | Event::Progress { stage, .. } => Some(*stage),
        _ => None,
    }
}

/// The lines to print now for one event, in the order a reader follows: preflight's lines under
/// its header, the lines of the stages that began beside it after its end; each multi-line text
/// as an indented block, each line at most [`WIDTH`] characters.
pub fn lines(event: &Event, view: &mut View) -> Vec<String> {
    let shown = |text: Option<String>| text.map(|l| block(&l)).unwrap_or_default();
    if matches!(
        event,
        Event::StageStarted {
            stage: Stage::Preflight
        }
    ) {
        view.held = Some(Vec::new());
        view.held_current = None;
    }
    if let Event::Say(text) = event {
        // Said at once and as it is, as `ui::say` would (an interruption does not wait for
        // preflight's end).
        return vec![text.clone()];
    }
    let Some(mut held) = view.held.take() else {
        return shown(line(event, view));
    };
    if stage_of(event) != Some(Stage::Preflight) {
        // Another stage's line while preflight prints: its turn comes at preflight's end, in
        // the context of what was held before it.
        std::mem::swap(&mut view.current, &mut view.held_current);
        held.extend(shown(line(event, view)));
        std::mem::swap(&mut view.current, &mut view.held_current);
        view.held = Some(held);
        return Vec::new();
    }
    let mut out = shown(line(event, view));
    if matches!(event, Event::StageFinished { .. }) {
        // Preflight is over: what began beside it follows, under its own headers.
        out.extend(held);
        if view.held_current.is_some() {
            view.current = view.held_current.take();
        }
    } else {
        view.held = Some(held);
    }
    out
}

/// A text of several lines, or of one too long, as the lines the terminal prints: the first as
/// it is, the others indented four places past the first's own indentation; each wrapped at a
/// space before [`WIDTH`] characters (a word longer than that is cut).
pub fn block(text: &str) -> Vec<String> {
    let indent = text.len() - text.trim_start().len();
    let more = " ".repeat(indent + 4);
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let mut rest = if index == 0 {
            raw.to_owned()
        } else {
            format!("{more}{}", raw.trim_start())
        };
        while rest.chars().count() > WIDTH {
            let cut: usize = rest
                .char_indices()
                .nth(WIDTH)
                .map_or(rest.len(), |(at, _)| at);
            let at = rest[..cut]
                .rfind(' ')
                .filter(|&at| at > more.len())
                .unwrap_or(cut);
            out.push(rest[..at].trim_end().to_owned());
            rest = format!("{more}{}", rest[at..].trim_start());
        }
        out.push(rest);
    }
    out
}

/// Prints each event's line through [`ui::say`]; on a terminal, keeps a status line under them.
#[derive(Default)]
pub struct Terminal {
    state: Mutex<TerminalState>,
}

#[derive(Default)]
struct TerminalState {
    view: View,
    status: Status,
    /// The status line is on screen.
    shown: bool,
}

/// The tests so far, for the status line.
#[derive(Default)]
pub struct Status {
    passed: usize,
    failed: usize,
    skipped: usize,
    /// (suite, worker) -> (test, when it began).
    running: BTreeMap<(String, String), (String, Duration)>,
    /// The suites stage runs: only then is the line shown.
    active: bool,
}

impl Status {
    /// Takes in one event; `true` while the suites run (the line is worth showing).
    pub fn update(&mut self, at: Duration, event: &Event) -> bool {
        match event {
            Event::TestStarted {
                suite,
                worker,
                name,
                ..
            } => {
                self.running
                    .insert((suite.clone(), worker.clone()), (name.clone(), at));
            }
            Event::TestFinished {
                suite,
                worker,
                test,
            } => {
                self.running.remove(&(suite.clone(), worker.clone()));
                match test.outcome {
                    TestOutcome::Passed => self.passed += 1,
                    TestOutcome::Failed | TestOutcome::Error => self.failed += 1,
                    TestOutcome::Skipped => self.skipped += 1,
                }
            }
            Event::StageStarted {
                stage: Stage::Suites,
            } => self.active = true,
            Event::StageFinished {
                stage: Stage::Suites,
                ..
            } => {
                self.running.clear();
                self.active = false;
            }
            Event::StageStarted { .. }
            | Event::StageFinished { .. }
            | Event::Step { .. }
            | Event::ServiceState { .. }
            | Event::Suite(_)
            | Event::Property { .. }
            | Event::Note(_)
            | Event::Say(_)
            | Event::Progress { .. }
            | Event::Finished { .. } => {}
        }
        self.active && (self.passed + self.failed + self.skipped > 0 || !self.running.is_empty())
    }

    /// `12 passed, 1 failed, 0 skipped · e2e: test_x (3.1s)`.
    pub fn line(&self, at: Duration) -> String {
        let mut line = format!(
            "▸ {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        );
        for ((suite, _), (test, since)) in &self.running {
            line.push_str(&format!(
                " · {suite}: {test} ({})",
                ui::duration(at.saturating_sub(*since))
            ));
        }
        line.chars().take(200).collect()
    }
}

impl LiveSink for Terminal {
    fn event(&self, at: Duration, event: &Event) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let printed = lines(event, &mut state.view);
        let interactive = ui::interactive();
        let show = state.status.update(at, event) && interactive;
        if printed.is_empty() && !show && !state.shown {
            return;
        }
        if state.shown {
            // Off with the status line before anything else is printed.
            eprint!("\r\x1b[2K");
            state.shown = false;
        }
        for printed in printed {
            ui::say(printed);
        }
        if show {
            eprint!("{}", state.status.line(at));
            state.shown = true;
        }
    }
}

/// The line for one event, given what was printed so far; `None` for events that print nothing
/// here.
pub fn line(event: &Event, view: &mut View) -> Option<String> {
    let current = view.current;
    match event {
        Event::StageStarted { stage } => {
            view.current = Some(*stage);
            Some(format!("── {}", stage.name()))
        }
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
        // The status line says what runs; the line comes when it ends.
        Event::TestStarted { .. } => None,
        Event::TestFinished { suite, test, .. } => Some(format!(
            "  {suite}  {:<5} {}  {}{}",
            test.outcome.label(),
            test.name,
            ui::duration(test.duration),
            match (&test.outcome, &test.message) {
                (TestOutcome::Failed | TestOutcome::Error, Some(message)) => format!(": {message}"),
                _ => String::new(),
            }
        )),
        Event::ServiceState {
            service,
            container,
            state,
            ..
        } => match state {
            ContainerState::Stopping => {
                view.stopping.insert(container.clone());
                None
            }
            ContainerState::Died { .. } if view.stopping.contains(container) => None,
            ContainerState::Died { .. } | ContainerState::Oom | ContainerState::Unhealthy => {
                Some(format!(
                    "  service {service}: container {container} {}",
                    state.describe()
                ))
            }
            ContainerState::Created
            | ContainerState::Started
            | ContainerState::Probe { .. }
            | ContainerState::Healthy => None,
        },
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
        Event::Say(text) => Some(text.clone()),
        Event::Progress { stage, message } => Some(format!(
            "  … {}{message}",
            match current {
                Some(current) if current != *stage => format!("{}: ", stage.name()),
                _ => String::new(),
            }
        )),
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
        let mut view = View::default();
        let mut out = String::new();
        for (_, event) in &record.events {
            for line in lines(event, &mut view) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    /// The lines between a stage's header and its end line.
    fn under<'a>(transcript: &'a str, stage: &str) -> Vec<&'a str> {
        transcript
            .lines()
            .skip_while(|l| *l != format!("── {stage}"))
            .skip(1)
            .take_while(|l| !l.starts_with(&format!("── {stage} ")))
            .collect()
    }

    #[test]
    fn no_engine_keeps_preflight_under_its_header_and_every_line_short() {
        let text = transcript(&fixtures::no_engine_overlapping());
        let preflight = under(&text, "preflight");
        assert!(
            preflight.iter().any(|l| l.contains("warn engine")),
            "{text}"
        );
        assert!(
            preflight
                .iter()
                .all(|l| !l.contains("engine:") && !l.contains("──")),
            "only preflight's lines under its header:\n{text}"
        );
        // The engine's lines, held while preflight printed, follow under their own header.
        let engine = under(&text, "engine");
        assert!(engine.iter().any(|l| l.contains("looking for")), "{text}");
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line}");
        }
        // Each address tried on a line of its own.
        assert!(
            text.lines().any(|l| l
                .trim_start()
                .starts_with("unix:///run/user/0/podman/podman.sock")),
            "{text}"
        );
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_broken_compose_file_shows_its_error_as_an_indented_block() {
        let text = transcript(&fixtures::broken_compose());
        assert!(
            text.contains("\n      services.web.ports contains an invalid type"),
            "{text}"
        );
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "too long: {line}");
        }
        insta::assert_snapshot!(text);
    }

    #[test]
    fn a_long_line_wraps_at_a_space_under_its_start() {
        let long = format!("  warn x: {}", "word ".repeat(60));
        let lines = block(&long);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.chars().count() <= WIDTH),
            "{lines:?}"
        );
        assert!(lines[1].starts_with("      word"), "{lines:?}");
        assert_eq!(
            lines.concat().matches("word").count(),
            60,
            "nothing is lost: {lines:?}"
        );
        assert_eq!(block("  a\nb\n  c"), ["  a", "      b", "      c"]);
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
