//! The history sink: each event of the run that the history keeps (its facts, every stage's
//! own time, the gate's steps, every suite's tests, the verdict) goes to the run history
//! ([`crate::history`]) as the run goes, so that a run killed midway is recorded as far as it
//! got. A thread of its own writes, so that another gate holding the file's lock never slows
//! this one; the run's end waits for it, up to [`FLUSH_WITHIN`]. A history that cannot be
//! written is a warning, never a failed gate.
//!
//! Not here: reading the history back ([`crate::history::analysis`]).

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use crate::gate::events::{Event, StageOutcome, Verdict};
use crate::gate::reporter::LiveSink;
use crate::history::{Fact, RunStart, Store, TestRow};
use crate::junit::Status;
use crate::report::Outcome;

/// How long the run's end waits for the history's last writes.
pub const FLUSH_WITHIN: Duration = Duration::from_secs(3);

enum Write {
    Fact(Fact),
    Stage {
        stage: &'static str,
        elapsed: Duration,
        outcome: &'static str,
    },
    Step {
        stage: &'static str,
        name: String,
        outcome: &'static str,
        duration: Duration,
    },
    Tests(Vec<TestRow>),
    Finish {
        verdict: String,
        total: Duration,
        overhead: Duration,
        done: mpsc::Sender<Option<String>>,
    },
}

/// Where the history goes and what the run is.
pub struct HistoryTarget {
    pub path: PathBuf,
    pub keep_runs: u32,
    pub run: RunStart,
    /// The checkout, for whether its tree is dirty (`git status`, asked by the writer).
    pub root: PathBuf,
}

pub struct History {
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    /// Why the history is not being written, said once at the run's end.
    warning: Mutex<Option<String>>,
}

impl History {
    /// Starts the writer; the run is recorded (unfinished) as soon as it has opened the file.
    pub fn start(target: HistoryTarget) -> History {
        let (send, receive) = mpsc::channel::<Write>();
        let spawned = std::thread::Builder::new()
            .name("history".into())
            .spawn(move || write_all(target, receive));
        let warning = spawned
            .err()
            .map(|e| format!("the run history was not written: cannot start its writer: {e}"));
        History {
            writes: Mutex::new(warning.is_none().then_some(send)),
            warning: Mutex::new(warning),
        }
    }

    fn send(&self, write: Write) {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(writes) = writes.as_ref() {
            // A writer that stopped has said why through `Finish`; nothing to add here.
            let _ = writes.send(write);
        }
    }

    /// The warning to show at the run's end, when the history could not be written.
    pub fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl LiveSink for History {
    fn event(&self, _at: Duration, event: &Event) {
        match event {
            Event::Property { name, value } => {
                let fact = match name.as_str() {
                    "git_commit" => Some(Fact::Commit {
                        commit: value.clone(),
                        dirty: false,
                    }),
                    "target" => Some(Fact::Target(value.clone())),
                    "engine_version" => Some(Fact::Engine(value.clone())),
                    "compose_flavour" => Some(Fact::Compose(value.clone())),
                    _ => None,
                };
                if let Some(fact) = fact {
                    self.send(Write::Fact(fact));
                }
            }
            Event::StageFinished {
                stage,
                elapsed,
                outcome,
            } => self.send(Write::Stage {
                stage: stage.name(),
                elapsed: *elapsed,
                outcome: match outcome {
                    StageOutcome::Passed => "passed",
                    StageOutcome::Failed => "failed",
                    StageOutcome::Skipped(_) => "skipped",
                },
            }),
            Event::Step { stage, check } => self.send(Write::Step {
                stage: stage.name(),
                name: check.name.clone(),
                outcome: outcome_name(check.outcome),
                duration: check.duration,
            }),
            Event::Suite(result) => self.send(Write::Tests(
                result
                    .cases
                    .iter()
                    .map(|case| TestRow {
                        suite: result.name.clone(),
                        test: test_id(&case.classname, &case.name),
                        outcome: match case.status {
                            Status::Passed => "passed",
                            Status::Failed { .. } => "failed",
                            Status::Error { .. } => "error",
                            Status::Skipped { .. } => "skipped",
                        }
                        .to_owned(),
                        duration: case.time,
                        attempts: case.attempts(),
                    })
                    .collect(),
            )),
            Event::Finished {
                verdict,
                total,
                overhead,
            } => {
                let (done, answer) = mpsc::channel();
                self.send(Write::Finish {
                    verdict: verdict_name(verdict).to_owned(),
                    total: *total,
                    overhead: *overhead,
                    done,
                });
                // Bounded: a history stuck behind another gate's lock must not hold the exit.
                let problem = match answer.recv_timeout(FLUSH_WITHIN) {
                    Ok(problem) => problem,
                    Err(_) => Some(format!(
                        "the run history was not finished within {}s",
                        FLUSH_WITHIN.as_secs()
                    )),
                };
                if let Some(problem) = problem {
                    // The sink's one line of its own: the history is a convenience, not the gate.
                    crate::ui::say(format!("warning: {problem}"));
                    *self.warning.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
                }
                self.writes.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            Event::StageStarted { .. }
            | Event::TestStarted { .. }
            | Event::TestFinished { .. }
            | Event::ServiceState { .. }
            | Event::Note(_)
            | Event::Say(_)
            | Event::Progress { .. } => {}
        }
    }
}

/// How a test is named in the history: `classname::name`, as `history --test` matches it.
pub fn test_id(classname: &str, name: &str) -> String {
    if classname.is_empty() {
        name.to_owned()
    } else {
        format!("{classname}::{name}")
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Warned => "warned",
        Outcome::Failed => "failed",
        Outcome::Skipped => "skipped",
    }
}

fn verdict_name(verdict: &Verdict) -> &'static str {
    match verdict {
        Verdict::Passed => "passed",
        Verdict::Failed | Verdict::Panicked(_) => "failed",
        Verdict::Unavailable => "unavailable",
        Verdict::Interrupted(_) => "interrupted",
    }
}

/// The writer: opens the file, records the run, then each write as it comes. The first error
/// stops it; the run's end hears why.
fn write_all(target: HistoryTarget, writes: mpsc::Receiver<Write>) {
    let run_id = target.run.id.clone();
    let opened = Store::open(&target.path).and_then(|store| {
        store.begin(&target.run)?;
        Ok(store)
    });
    let mut problem = None;
    let mut store = match opened {
        Ok(store) => Some(store),
        Err(e) => {
            problem = Some(format!("the run history was not written: {e:#}"));
            None
        }
    };
    let dirty = git_dirty(&target.root);
    for write in writes {
        let Some(open) = store.as_mut() else {
            if let Write::Finish { done, .. } = write {
                let _ = done.send(problem.clone());
                return;
            }
            continue;
        };
        let result = match write {
            Write::Fact(Fact::Commit { commit, .. }) => {
                open.fact(&run_id, &Fact::Commit { commit, dirty })
            }
            Write::Fact(fact) => open.fact(&run_id, &fact),
            Write::Stage {
                stage,
                elapsed,
                outcome,
            } => open.stage(&run_id, stage, elapsed, outcome),
            Write::Step {
                stage,
                name,
                outcome,
                duration,
            } => open.step(&run_id, stage, &name, outcome, duration),
            Write::Tests(tests) => open.tests(&run_id, &tests),
            Write::Finish {
                verdict,
                total,
                overhead,
                done,
            } => {
                let result = open.finish(&run_id, &verdict, total, overhead, target.keep_runs);
                if let Err(e) = result {
                    problem.get_or_insert(format!(
                        "the run history was not finished ({}): {e:#}",
                        open.path().display()
                    ));
                }
                let _ = done.send(problem.clone());
                return;
            }
        };
        if let Err(e) = result {
            problem = Some(format!(
                "the run history stopped being written ({}): {e:#}",
                open.path().display()
            ));
            store = None;
        }
    }
}

/// Whether the checkout has changes to tracked files (`false` when git cannot say).
fn git_dirty(root: &std::path::Path) -> bool {
    std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    fn record_into(path: &std::path::Path, record: &crate::gate::events::Record, id: &str) {
        let sink = History::start(HistoryTarget {
            path: path.to_owned(),
            keep_runs: 1000,
            run: RunStart {
                id: id.into(),
                command: "mission-critical".into(),
                started_ms: 1,
                config_hash: "c".into(),
            },
            root: std::env::temp_dir(),
        });
        for (at, event) in &record.events {
            sink.event(*at, event);
        }
        assert_eq!(sink.warning(), None);
    }

    #[test]
    fn a_run_is_recorded_with_its_stages_steps_and_tests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        record_into(&path, &fixtures::docker_passing(), "r1");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.run_finished("r1").unwrap(), Some(true));
        let (verdict, target, engine): (String, String, String) = store
            .conn()
            .query_row(
                "SELECT verdict, target, engine FROM runs WHERE id = 'r1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((verdict.as_str(), target.as_str()), ("passed", "docker"));
        assert!(engine.starts_with("20.10"), "{engine}");
        let healthy: f64 = store
            .conn()
            .query_row(
                "SELECT duration_s FROM steps WHERE run_id = 'r1' AND name = 'service backend healthy'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!((healthy - 3.3).abs() < 1e-9, "{healthy}");
        let tests: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM tests WHERE run_id = 'r1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(tests >= 2, "{tests}");
    }

    #[test]
    fn an_unwritable_history_is_a_warning_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: SQLite cannot open it.
        let path = dir.path().join("history.db");
        std::fs::create_dir_all(&path).unwrap();
        let sink = History::start(HistoryTarget {
            path: path.clone(),
            keep_runs: 10,
            run: RunStart::default(),
            root: dir.path().to_owned(),
        });
        for (at, event) in &fixtures::docker_passing().events {
            sink.event(*at, event);
        }
        let warning = sink.warning().expect("a warning");
        assert!(warning.contains("history"), "{warning}");
    }
}
