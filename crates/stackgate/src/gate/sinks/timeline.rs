//! The run as lanes on one time axis, which the HTML report and the Chrome trace both draw: one
//! lane per stage (its span and outcome), per service (created → starting → healthy, or running,
//! with each healthcheck attempt and each exit as a mark), and per suite (its span, each test as
//! a span of its own where it ran). A pure function of the [`Record`].
//!
//! Not here: drawing it ([super::html], [super::trace]).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gate::events::{Record, Stage, StageOutcome};
use crate::junit::{Status, SuiteResult};
use crate::stack::ContainerState;
use crate::suites::TestOutcome;

/// What a span or a mark means (its colour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Passed,
    Failed,
    Skipped,
    /// A container created, not started.
    Created,
    /// Started, its healthcheck not passing yet.
    Starting,
    Healthy,
    /// Started, without a healthcheck.
    Running,
    /// Being stopped.
    Stopping,
    /// A healthcheck attempt that passed / failed.
    ProbeOk,
    ProbeFailed,
    /// It exited or ran out of memory.
    Died,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub start: Duration,
    pub end: Duration,
    pub label: String,
    pub kind: Kind,
    /// Which worker ran it (tests), for the trace's threads.
    pub worker: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub at: Duration,
    pub label: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Stage,
    Service,
    Suite,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Stage => "stages",
            Group::Service => "services",
            Group::Suite => "suites",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lane {
    pub group: Group,
    pub name: String,
    /// The lane's own span (a stage, a suite) and, on a service lane, its phases.
    pub spans: Vec<Span>,
    /// Tests on a suite's lane.
    pub tests: Vec<Span>,
    pub marks: Vec<Mark>,
    /// Why the lane is empty (a skipped stage).
    pub note: Option<String>,
    /// The time it measured itself (a stage's own work, a suite's run), which may be less than
    /// its span (a stage paused while another worked).
    pub took: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The end of the axis: the run's end.
    pub total: Duration,
    pub lanes: Vec<Lane>,
}

fn lane(group: Group, name: &str) -> Lane {
    Lane {
        group,
        name: name.to_owned(),
        spans: Vec::new(),
        tests: Vec::new(),
        marks: Vec::new(),
        note: None,
        took: None,
    }
}

fn test_kind(outcome: TestOutcome) -> Kind {
    match outcome {
        TestOutcome::Passed => Kind::Passed,
        TestOutcome::Failed | TestOutcome::Error => Kind::Failed,
        TestOutcome::Skipped => Kind::Skipped,
    }
}

/// The lanes of a run.
pub fn of(record: &Record) -> Timeline {
    let total = record
        .finished()
        .map(|(_, total, _)| total)
        .or_else(|| record.events.last().map(|(at, _)| *at))
        .unwrap_or_default();
    let mut lanes: Vec<Lane> = Stage::ALL
        .into_iter()
        .filter_map(|stage| stage_lane(record, stage, total))
        .collect();
    lanes.extend(service_lanes(record, total));
    for (start, end, suite) in record.suite_spans() {
        lanes.push(suite_lane(record, start, end, suite));
    }
    Timeline { total, lanes }
}

/// A stage's lane: its span with its outcome, or its reason when it was skipped without running;
/// `None` when it never began.
fn stage_lane(record: &Record, stage: Stage, total: Duration) -> Option<Lane> {
    let mut stage_lane = lane(Group::Stage, stage.name());
    stage_lane.took = record.stage(stage).map(|(elapsed, _)| elapsed);
    let outcome = record.stage(stage).map(|(_, outcome)| outcome.clone());
    match (record.stage_span(stage), outcome) {
        (None, Some(StageOutcome::Skipped(reason))) => {
            stage_lane.note = Some(format!("skipped: {reason}"));
        }
        (Some((start, end)), outcome) => {
            let (kind, label) = match outcome {
                Some(StageOutcome::Passed) => (Kind::Passed, "ok".to_owned()),
                Some(StageOutcome::Failed) => (Kind::Failed, "FAILED".to_owned()),
                Some(StageOutcome::Skipped(reason)) => (Kind::Skipped, reason),
                // Never finished: the run was cut short.
                None => (Kind::Failed, "did not finish".to_owned()),
            };
            let end = if record.stage(stage).is_some() {
                end
            } else {
                total
            };
            stage_lane.spans.push(Span {
                start,
                end,
                label: format!("{} {label}", stage.name()),
                kind,
                worker: None,
            });
        }
        (None, _) => return None,
    }
    Some(stage_lane)
}

/// A suite's lane: its span, and its tests as they ran (from the live events, by the runner's
/// own clock), or one after the other from its start when it reported only at its end; each
/// test with its worker when the runner said.
fn suite_lane(record: &Record, start: Duration, end: Duration, suite: &SuiteResult) -> Lane {
    let mut suite_lane = lane(Group::Suite, &suite.name);
    suite_lane.took = Some(suite.duration);
    let kind = if !suite.passed() {
        Kind::Failed
    } else if suite
        .cases
        .iter()
        .all(|c| matches!(c.status, Status::Skipped { .. }))
    {
        Kind::Skipped
    } else {
        Kind::Passed
    };
    suite_lane.spans.push(Span {
        start,
        end,
        label: suite.name.clone(),
        kind,
        worker: None,
    });
    let live = live_tests(record, start, &suite.name);
    suite_lane.tests = if live.is_empty() {
        tests_in_turn(suite, start, end)
    } else {
        live
    };
    // Workers, for the trace: the worker of each test as its runner reported it.
    let workers: Vec<Option<String>> = record
        .events
        .iter()
        .filter_map(|(_, e)| match e {
            crate::gate::events::Event::TestFinished {
                suite: s, worker, ..
            } if *s == suite.name => Some(Some(worker.clone())),
            _ => None,
        })
        .collect();
    if workers.len() == suite_lane.tests.len() {
        for (test, worker) in suite_lane.tests.iter_mut().zip(workers) {
            test.worker = worker;
        }
    }
    suite_lane
}

/// A suite's tests from the live events, by the runner's own clock when it said (the harness
/// heard the end later).
fn live_tests(record: &Record, start: Duration, suite: &str) -> Vec<Span> {
    let since_start = |time: Option<std::time::SystemTime>| {
        time.zip(record.started)
            .and_then(|(time, began)| time.duration_since(began).ok())
    };
    record
        .tests()
        .filter(|(_, name, _)| *name == suite)
        .map(|(at, _, test)| {
            let end = since_start(test.ended).map_or(at, |ended| ended.min(at));
            let began = since_start(test.began)
                .filter(|began| *began <= end)
                .unwrap_or_else(|| end.saturating_sub(test.duration));
            Span {
                start: began.max(start),
                end,
                label: test.name.clone(),
                kind: test_kind(test.outcome),
                worker: None,
            }
        })
        .collect()
}

/// A suite reported only at its end (no live events): its tests one after the other from its
/// start.
fn tests_in_turn(suite: &SuiteResult, start: Duration, end: Duration) -> Vec<Span> {
    let mut at = start;
    suite
        .cases
        .iter()
        .filter(|c| !matches!(c.status, Status::Skipped { .. }))
        .map(|case| {
            let span = Span {
                start: at,
                end: (at + case.time).min(end.max(start)),
                label: case.name.clone(),
                kind: match case.status {
                    Status::Passed => Kind::Passed,
                    Status::Failed { .. } | Status::Error { .. } => Kind::Failed,
                    Status::Skipped { .. } => Kind::Skipped,
                },
                worker: None,
            };
            at += case.time;
            span
        })
        .collect()
}

/// One lane per service, in the order they first appear: its phases from its containers' state
/// changes, each healthcheck attempt and each exit a mark.
fn service_lanes(record: &Record, total: Duration) -> Vec<Lane> {
    let mut order: Vec<String> = Vec::new();
    let mut states: BTreeMap<String, Vec<(Duration, String, ContainerState)>> = BTreeMap::new();
    for (at, service, container, state) in record.service_states() {
        if !order.iter().any(|s| s == service) {
            order.push(service.to_owned());
        }
        states.entry(service.to_owned()).or_default().push((
            at,
            container.to_owned(),
            state.clone(),
        ));
    }
    let mut lanes = Vec::new();
    for service in order {
        let mut changes = states.remove(&service).unwrap_or_default();
        changes.sort_by_key(|(at, _, _)| *at);
        let has_healthcheck = changes.iter().any(|(_, _, s)| {
            matches!(
                s,
                ContainerState::Healthy | ContainerState::Unhealthy | ContainerState::Probe { .. }
            )
        });
        let mut service_lane = lane(Group::Service, &service);
        // The phase open now: since when, what.
        let mut open: Option<(Duration, Kind, &'static str)> = None;
        let close =
            |lane: &mut Lane, open: &mut Option<(Duration, Kind, &'static str)>, at: Duration| {
                if let Some((start, kind, label)) = open.take() {
                    lane.spans.push(Span {
                        start,
                        end: at.max(start),
                        label: label.to_owned(),
                        kind,
                        worker: None,
                    });
                }
            };
        let mut stopping = false;
        for (at, container, state) in &changes {
            match state {
                ContainerState::Created => {
                    close(&mut service_lane, &mut open, *at);
                    open = Some((*at, Kind::Created, "created"));
                }
                ContainerState::Started => {
                    close(&mut service_lane, &mut open, *at);
                    stopping = false;
                    open = Some(if has_healthcheck {
                        (*at, Kind::Starting, "starting")
                    } else {
                        (*at, Kind::Running, "running")
                    });
                }
                ContainerState::Healthy => {
                    close(&mut service_lane, &mut open, *at);
                    open = Some((*at, Kind::Healthy, "healthy"));
                }
                ContainerState::Unhealthy => {
                    close(&mut service_lane, &mut open, *at);
                    open = Some((*at, Kind::Failed, "unhealthy"));
                }
                ContainerState::Stopping => {
                    if !stopping {
                        close(&mut service_lane, &mut open, *at);
                        open = Some((*at, Kind::Stopping, "stopping"));
                        stopping = true;
                    }
                }
                ContainerState::Probe { exit_code, .. } => service_lane.marks.push(Mark {
                    at: *at,
                    label: format!("{container}: {}", state.describe()),
                    kind: if *exit_code == 0 {
                        Kind::ProbeOk
                    } else {
                        Kind::ProbeFailed
                    },
                }),
                ContainerState::Died { .. } | ContainerState::Oom => {
                    close(&mut service_lane, &mut open, *at);
                    if !stopping {
                        service_lane.marks.push(Mark {
                            at: *at,
                            label: format!("{container}: {}", state.describe()),
                            kind: Kind::Died,
                        });
                    }
                }
            }
        }
        close(&mut service_lane, &mut open, total);
        lanes.push(service_lane);
    }
    lanes
}

/// A step's time as a person reads it, rounded for an axis: 0.5 s, 1 s, 2 s, 5 s, 10 s, ...
pub fn tick_step(total: Duration) -> Duration {
    let target = total.as_secs_f64() / 8.0;
    for step in [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
    ] {
        if step >= target {
            return Duration::from_secs_f64(step);
        }
    }
    Duration::from_secs(3600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    #[test]
    fn a_docker_run_has_a_lane_per_stage_service_and_suite() {
        let timeline = of(&fixtures::docker_passing());
        let names: Vec<(Group, &str)> = timeline
            .lanes
            .iter()
            .map(|l| (l.group, l.name.as_str()))
            .collect();
        assert!(names.contains(&(Group::Stage, "stack")), "{names:?}");
        assert!(names.contains(&(Group::Service, "postgres")), "{names:?}");
        assert!(names.contains(&(Group::Suite, "e2e")), "{names:?}");
        let postgres = timeline
            .lanes
            .iter()
            .find(|l| l.name == "postgres")
            .unwrap();
        let phases: Vec<&str> = postgres.spans.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(phases, ["created", "starting", "healthy", "stopping"]);
        assert_eq!(
            postgres
                .marks
                .iter()
                .filter(|m| m.kind == Kind::ProbeFailed)
                .count(),
            1
        );
        let e2e = timeline.lanes.iter().find(|l| l.name == "e2e").unwrap();
        assert_eq!(e2e.tests.len(), 2);
        assert!(e2e.tests.iter().all(|t| t.end <= e2e.spans[0].end));
    }

    #[test]
    fn a_test_ends_when_its_runner_said_not_when_the_harness_read_it() {
        let mut record = fixtures::docker_passing();
        let began = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        record.started = Some(began);
        let (heard, duration) = record
            .events
            .iter_mut()
            .find_map(|(at, event)| match event {
                crate::gate::events::Event::TestFinished { test, .. } => {
                    // The runner said it 80 ms before the harness read its file.
                    test.ended = Some(began + *at - Duration::from_millis(80));
                    Some((*at, test.duration))
                }
                _ => None,
            })
            .unwrap();
        let timeline = of(&record);
        let e2e = timeline.lanes.iter().find(|l| l.name == "e2e").unwrap();
        let first = &e2e.tests[0];
        assert_eq!(first.end, heard - Duration::from_millis(80));
        assert_eq!(first.start, first.end - duration);
        // When it began too: pytest's time between the test's phases is the test's.
        for (at, event) in &mut record.events {
            if let crate::gate::events::Event::TestFinished { test, .. } = event {
                test.began = Some(began + *at - duration - Duration::from_millis(50));
                break;
            }
        }
        let timeline = of(&record);
        let e2e = timeline.lanes.iter().find(|l| l.name == "e2e").unwrap();
        assert_eq!(
            e2e.tests[0].start,
            heard - duration - Duration::from_millis(50)
        );
    }
}
