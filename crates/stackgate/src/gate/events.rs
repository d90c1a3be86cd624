//! What the pipeline tells its reporter: stages starting and finishing (each with the time it
//! measured around its own work and the outcome the pipeline decided), the gate's own steps,
//! each test as it starts and ends, each container's state changes, suites' results, facts,
//! notes and progress, and the run's end. Also [`Record`], the events
//! of one run in order, which every sink renders from.
//!
//! Nothing here renders or prints: that is the sinks' job ([super::sinks]).

use std::time::Duration;

use serde::Serialize;

use crate::junit::SuiteResult;
use crate::report::{Check, Outcome};
use crate::stack::ContainerState;
use crate::suites::TestRun;

/// The stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The machine: memory, disk, CPU, ports, other runtimes.
    Preflight,
    /// Finding, starting and proving the engine (the smoke container included).
    Engine,
    /// Choosing where the suites run: the engine's stack, or a fallback (staging's endpoints
    /// probed, the local processes started).
    Target,
    /// Base images the stack builds on.
    Images,
    /// The compose stack: build, start, every service healthy.
    Stack,
    /// The WebSocket check.
    Ws,
    /// The suites (waiting for their Python environment included).
    Suites,
    /// Undoing what the run made.
    Teardown,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Preflight,
        Stage::Engine,
        Stage::Target,
        Stage::Images,
        Stage::Stack,
        Stage::Ws,
        Stage::Suites,
        Stage::Teardown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Preflight => "preflight",
            Stage::Engine => "engine",
            Stage::Target => "target",
            Stage::Images => "images",
            Stage::Stack => "stack",
            Stage::Ws => "ws",
            Stage::Suites => "suites",
            Stage::Teardown => "teardown",
        }
    }
}

/// How a stage ended, as the pipeline decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "outcome", content = "reason")]
pub enum StageOutcome {
    Passed,
    Failed,
    /// The stage did not run (an earlier stage failed, the target does not use it, a flag).
    Skipped(String),
}

/// How the whole run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "verdict", content = "detail")]
pub enum Verdict {
    Passed,
    Failed,
    /// No target could be had (exit 3).
    Unavailable,
    /// A signal ended it (exit 130); names the signal.
    Interrupted(String),
    /// The harness itself panicked; the message.
    Panicked(String),
}

impl Verdict {
    pub fn label(&self) -> String {
        match self {
            Verdict::Passed => "PASSED".to_owned(),
            Verdict::Failed => "FAILED".to_owned(),
            Verdict::Unavailable => "UNAVAILABLE (no target)".to_owned(),
            Verdict::Interrupted(signal) => format!("INTERRUPTED ({signal})"),
            Verdict::Panicked(_) => "FAILED (harness panic)".to_owned(),
        }
    }
}

/// What stages tell the reporter.
#[derive(Debug, Clone)]
pub enum Event {
    /// The stage began its work.
    StageStarted { stage: Stage },
    /// The stage ended: its own measured time and its outcome. A skipped stage has only this.
    StageFinished {
        stage: Stage,
        elapsed: Duration,
        outcome: StageOutcome,
    },
    /// One of the gate's own steps finished.
    Step { stage: Stage, check: Check },
    /// A test of a suite began, in one of the suite's workers (processes).
    TestStarted {
        suite: String,
        worker: String,
        id: String,
        name: String,
    },
    /// A test of a suite ended, as its runner said at once (the suite's result is the record).
    TestFinished {
        suite: String,
        worker: String,
        test: TestRun,
    },
    /// A container of the stack entered a state; `at` is since the run began, by the engine's
    /// clock.
    ServiceState {
        service: String,
        container: String,
        state: ContainerState,
        at: Duration,
    },
    /// A suite finished (or was reported skipped, its cases listed).
    Suite(SuiteResult),
    /// A fact for people and for the report's properties (`target`, `engine_version`, ...).
    Property { name: String, value: String },
    /// Something a person should read that is not a check.
    Note(String),
    /// A line said to the person at the terminal as it is, at once, not a note of the run (what
    /// the harness does about a signal).
    Say(String),
    /// What a stage is doing or waiting for, as it goes.
    Progress { stage: Stage, message: String },
    /// The run is over: its verdict, its wall time and the harness's own share of it.
    Finished {
        verdict: Verdict,
        total: Duration,
        overhead: Duration,
    },
}

/// Every event of one run, in order, each with its time since the run began.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub events: Vec<(Duration, Event)>,
    /// When the run began, by the wall clock (`None` in records made by hand).
    pub started: Option<std::time::SystemTime>,
}

impl Record {
    /// Tests as their runners reported them when they ended, with when they ended.
    pub fn tests(&self) -> impl Iterator<Item = (Duration, &str, &TestRun)> {
        self.events.iter().filter_map(|(at, e)| match e {
            Event::TestFinished { suite, test, .. } => Some((*at, suite.as_str(), test)),
            _ => None,
        })
    }

    /// Each container state change: (at, service, container, state).
    pub fn service_states(&self) -> impl Iterator<Item = (Duration, &str, &str, &ContainerState)> {
        self.events.iter().filter_map(|(_, e)| match e {
            Event::ServiceState {
                service,
                container,
                state,
                at,
            } => Some((*at, service.as_str(), container.as_str(), state)),
            _ => None,
        })
    }

    /// When a stage began and ended, by the record's clock (a skipped stage has no span).
    pub fn stage_span(&self, stage: Stage) -> Option<(Duration, Duration)> {
        let start = self.events.iter().find_map(|(at, e)| match e {
            Event::StageStarted { stage: s } if *s == stage => Some(*at),
            _ => None,
        })?;
        let end = self.events.iter().rev().find_map(|(at, e)| match e {
            Event::StageFinished { stage: s, .. } if *s == stage => Some(*at),
            _ => None,
        });
        Some((start, end.unwrap_or(start).max(start)))
    }

    /// When a suite ran: its result's arrival minus its duration, to that arrival.
    pub fn suite_spans(&self) -> Vec<(Duration, Duration, &SuiteResult)> {
        self.events
            .iter()
            .filter_map(|(at, e)| match e {
                Event::Suite(suite) => Some((at.saturating_sub(suite.duration), *at, suite)),
                _ => None,
            })
            .collect()
    }

    /// The gate's own steps, in the order they finished.
    pub fn steps(&self) -> impl Iterator<Item = (Stage, &Check)> {
        self.events.iter().filter_map(|(_, e)| match e {
            Event::Step { stage, check } => Some((*stage, check)),
            _ => None,
        })
    }

    pub fn suites(&self) -> impl Iterator<Item = &SuiteResult> {
        self.events.iter().filter_map(|(_, e)| match e {
            Event::Suite(suite) => Some(suite),
            _ => None,
        })
    }

    /// How each stage ended (the last word for each), with its measured time.
    pub fn stage(&self, stage: Stage) -> Option<(Duration, &StageOutcome)> {
        self.events.iter().rev().find_map(|(_, e)| match e {
            Event::StageFinished {
                stage: s,
                elapsed,
                outcome,
            } if *s == stage => Some((*elapsed, outcome)),
            _ => None,
        })
    }

    /// Properties, the last value of each name, in the order first set.
    pub fn properties(&self) -> Vec<(String, String)> {
        let mut properties: Vec<(String, String)> = Vec::new();
        for (_, event) in &self.events {
            if let Event::Property { name, value } = event {
                match properties.iter_mut().find(|(n, _)| n == name) {
                    Some(existing) => existing.1 = value.clone(),
                    None => properties.push((name.clone(), value.clone())),
                }
            }
        }
        properties
    }

    pub fn property(&self, name: &str) -> Option<String> {
        self.properties()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    pub fn notes(&self) -> impl Iterator<Item = &str> {
        self.events.iter().filter_map(|(_, e)| match e {
            Event::Note(note) => Some(note.as_str()),
            _ => None,
        })
    }

    /// The run's end, once it was recorded.
    pub fn finished(&self) -> Option<(&Verdict, Duration, Duration)> {
        self.events.iter().rev().find_map(|(_, e)| match e {
            Event::Finished {
                verdict,
                total,
                overhead,
            } => Some((verdict, *total, *overhead)),
            _ => None,
        })
    }

    /// Whether any step failed or any suite failed or errored.
    pub fn failed(&self) -> bool {
        self.steps().any(|(_, c)| c.outcome == Outcome::Failed)
            || self.suites().any(|s| !s.passed())
    }
}

/// Passed, failed (failures and errors) and skipped cases of a suite, counted from its cases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn of(suite: &SuiteResult) -> Counts {
        let counts = suite.counts();
        Counts {
            passed: counts.passed(),
            failed: counts.failures + counts.errors,
            skipped: counts.skipped,
        }
    }
}
