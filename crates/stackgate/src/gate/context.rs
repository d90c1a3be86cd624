//! One run of the pipeline: what it was asked to do ([`Options`]), its immutable [`Context`]
//! (config, options, run id, the event sink, secrets, the engine-lost notification), the
//! [`Ledger`] of what teardown must undo, and [`StageClock`], which times a stage around its own
//! work and emits its outcome.
//!
//! Not here: the order of the stages ([super::pipeline]) or what each does ([super::stages]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, SuiteCfg};
use crate::flags::{Shard, TargetChoice};
use crate::progress::Progress;
use crate::report::{Check, Outcome};
use crate::state::StackState;
use crate::target::LocalTarget;

use super::events::{Event, Stage, StageOutcome};
use super::lost::Lost;
use super::reporter::Reporter;

/// Where the pipeline stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    /// The engine and the images (`ci`'s own preparation).
    Images,
    /// The stack, healthy (`docker-up`).
    Stack,
    /// Everything, suites included (the gate).
    Suites,
}

/// How the run's stack is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// Its own compose project (`<name>-<run>`) and ephemeral host ports.
    Isolated,
    /// The project's own name and ports; a recorded run of it is continued (`docker-up`).
    Shared,
}

/// What is left up afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    Never,
    Always,
    /// Only when the run failed (not when it was interrupted).
    OnFailure,
}

/// What the command asks of the pipeline, turned into options once, at the edge.
#[derive(Debug, Clone)]
pub struct Options {
    /// The command's name, for the summary (`mission-critical`, `docker-up`).
    pub command: &'static str,
    pub target: TargetChoice,
    pub until: Until,
    pub isolation: Isolation,
    pub keep: Keep,
    /// Run the pre-flight checks.
    pub preflight: bool,
    /// Install the engine's packages when missing.
    pub install: bool,
    /// Where the JUnit report goes (none: no report).
    pub junit: Option<PathBuf>,
    pub shard: Option<Shard>,
    /// Only these suites (empty: all).
    pub only_suites: Vec<String>,
    /// `--reuse`: take a matching warm stack, keep a passing run's stack warm.
    pub reuse: bool,
    /// `--durations FILE`: per-test durations that balance `--shard`.
    pub durations: Option<PathBuf>,
    /// `-- ARGS`: passed to the selected suites' runner.
    pub suite_args: Vec<String>,
    /// Workers the tests of `parallel` suites are spread over (1: one test at a time).
    pub jobs: u32,
    /// `--retries N`: a failed test runs again up to N more times (none: each suite's `retries`).
    pub retries: Option<u32>,
    /// Stdout is the `--json` object's: nothing else may be printed there.
    pub json: bool,
}

impl Options {
    /// A run of `command` on `target` until `until`: isolated, torn down, no pre-flight, no
    /// install, no report, every suite whole, one test at a time; callers change what they need.
    pub fn new(command: &'static str, target: TargetChoice, until: Until) -> Options {
        Options {
            command,
            target,
            until,
            isolation: Isolation::Isolated,
            keep: Keep::Never,
            preflight: false,
            install: false,
            junit: None,
            shard: None,
            only_suites: Vec::new(),
            reuse: false,
            durations: None,
            suite_args: Vec::new(),
            jobs: 1,
            retries: None,
            json: false,
        }
    }
}

/// What teardown must undo, recorded the moment it exists.
#[derive(Default)]
pub struct Resources {
    pub stack: Option<StackState>,
    /// A stack being brought up, so that a half-made stack is found by label.
    pub pending_stack: Option<PendingStack>,
    pub local: Option<LocalTarget>,
    /// The lease of a warm stack this run took (held until the run ends).
    pub lease: Option<crate::stack::reuse::Lease>,
    /// The key to keep the run's stack warm under, when it passes (`--reuse`).
    pub reuse_key: Option<String>,
    /// The stack's logs and state changes, followed until teardown.
    pub follow: Option<crate::stack::Follow>,
}

/// A stack whose `up` began: its run id and the engine it runs on, enough for teardown to find
/// and remove it by label when `up` never returned.
#[derive(Clone)]
pub struct PendingStack {
    pub run_id: String,
    pub engine: crate::engine::Engine,
}

/// The teardown ledger: what the run created and must undo on every path. The one thing of a
/// run behind a `Mutex`, because teardown runs on every path (a signal or a panic included)
/// from the supervisor, which holds the ledger while the stages that fill it may be aborted
/// mid-way; a stage records what it made the moment it exists. Stage results are not kept here:
/// they are return values.
#[derive(Default)]
pub struct Ledger {
    resources: Mutex<Resources>,
}

impl Ledger {
    /// Records what a stage just made.
    pub fn record(&self, change: impl FnOnce(&mut Resources)) {
        change(&mut lock(&self.resources));
    }

    /// Everything recorded, for teardown to undo (the ledger is empty afterwards).
    pub fn take(&self) -> Resources {
        std::mem::take(&mut *lock(&self.resources))
    }
}

/// The run's immutable context, shared by every stage: what the command asked for, the run's
/// id, the event sink, the secrets to redact, and the two notifications that cross stages (the
/// engine lost, the suites asked to stop). Stages hand their results on as return values, never
/// through here.
pub struct Context {
    pub config: Config,
    pub options: Options,
    pub run_id: String,
    pub reporter: Arc<Reporter>,
    /// Values that must never appear in output or the report (shared with the event stream,
    /// which redacts as it writes; the local target adds its run secret).
    secrets: Secrets,
    /// The engine stopped answering during the run ([super::watch] sends it once).
    engine_lost: tokio::sync::watch::Sender<Option<Lost>>,
    /// Asks the running suites to stop (the reason), once the engine is lost.
    pub stop_suites: tokio::sync::watch::Sender<Option<String>>,
}

/// The run's secrets, shared with the sinks that redact them.
pub type Secrets = Arc<Mutex<Vec<String>>>;

impl Context {
    pub fn new(
        config: Config,
        options: Options,
        run_id: String,
        reporter: Arc<Reporter>,
        secrets: Secrets,
    ) -> Context {
        Context {
            config,
            options,
            run_id,
            reporter,
            secrets,
            engine_lost: tokio::sync::watch::Sender::new(None),
            stop_suites: tokio::sync::watch::Sender::new(None),
        }
    }

    /// The engine's loss, once [super::watch] noticed it.
    pub fn lost(&self) -> Option<Lost> {
        self.engine_lost.borrow().clone()
    }

    /// Says the engine is lost (once) and asks the suites to stop.
    pub fn lose_engine(&self, lost: Lost) {
        let reason = lost.reason();
        self.engine_lost.send_replace(Some(lost));
        self.stop_suites.send_replace(Some(reason));
    }

    /// Why the rest of the run did not happen when the engine was lost (`engine lost at 41.2s`).
    pub fn lost_reason(&self) -> Option<String> {
        self.engine_lost.borrow().as_ref().map(|lost| lost.reason())
    }

    pub fn emit(&self, event: Event) {
        self.reporter.emit(event);
    }

    pub fn note(&self, text: impl Into<String>) {
        self.emit(Event::Note(text.into()));
    }

    pub fn property(&self, name: &str, value: impl Into<String>) {
        self.emit(Event::Property {
            name: name.to_owned(),
            value: value.into(),
        });
    }

    /// The stage's outcome, once it finished (as its `StageFinished` event said).
    pub fn outcome(&self, stage: Stage) -> Option<StageOutcome> {
        self.reporter
            .with_record(|record| record.stage(stage).map(|(_, outcome)| outcome.clone()))
    }

    pub fn stage_failed(&self, stage: Stage) -> bool {
        self.outcome(stage) == Some(StageOutcome::Failed)
    }

    /// Whether anything failed so far: a stage, a step, or a suite.
    pub fn failed(&self) -> bool {
        self.reporter.with_record(|record| {
            Stage::ALL.into_iter().any(|stage| {
                record
                    .stage(stage)
                    .is_some_and(|(_, o)| *o == StageOutcome::Failed)
            }) || record.failed()
        })
    }

    /// Marks a stage that will not run.
    pub fn skip(&self, stage: Stage, reason: impl Into<String>) {
        if self.outcome(stage).is_none() {
            self.emit(Event::StageFinished {
                stage,
                elapsed: Duration::ZERO,
                outcome: StageOutcome::Skipped(reason.into()),
            });
        }
    }

    /// A progress handle whose messages become the stage's progress events.
    pub fn progress(&self, stage: Stage) -> Progress {
        let reporter = self.reporter.clone();
        Progress::to(move |message| {
            reporter.emit(Event::Progress {
                stage,
                message: message.to_owned(),
            })
        })
    }

    pub fn add_secret(&self, secret: String) {
        lock(&self.secrets).push(secret);
    }

    pub fn secrets(&self) -> Vec<String> {
        lock(&self.secrets).clone()
    }

    /// Whether this run takes and keeps warm stacks: the gate's own isolated stack, with
    /// `--reuse` or `stack.reuse = true`.
    pub fn reuses(&self) -> bool {
        self.options.isolation == Isolation::Isolated
            && self.options.until == Until::Suites
            && (self.options.reuse || self.config.stack.as_ref().is_some_and(|s| s.speed.reuse))
    }

    /// The suites this run selected (`--suite`), in configuration order.
    pub fn selected_suites(&self) -> Vec<&SuiteCfg> {
        self.config
            .suites
            .iter()
            .filter(|s| {
                self.options.only_suites.is_empty() || self.options.only_suites.contains(&s.name)
            })
            .collect()
    }
}

/// Times a stage around its own work and decides its outcome from its steps.
pub struct StageClock<'a> {
    run: &'a Context,
    stage: Stage,
    /// The stage's own work so far (a stage may pause while another works: the engine's smoke
    /// container runs after the images).
    worked: Duration,
    since: Option<Instant>,
    failed: bool,
}

impl<'a> StageClock<'a> {
    /// Emits the stage's start; its clock runs.
    pub fn start(run: &'a Context, stage: Stage) -> StageClock<'a> {
        run.emit(Event::StageStarted { stage });
        StageClock {
            run,
            stage,
            worked: Duration::ZERO,
            since: Some(Instant::now()),
            failed: false,
        }
    }

    /// Stops the clock while the stage waits on work that is not its own.
    pub fn pause(&mut self) {
        if let Some(since) = self.since.take() {
            self.worked += since.elapsed();
        }
    }

    pub fn resume(&mut self) {
        self.since.get_or_insert_with(Instant::now);
    }

    /// Adds time the stage's work took elsewhere (a task measured itself).
    pub fn add(&mut self, worked: Duration) {
        self.worked += worked;
    }

    pub fn step(&mut self, check: Check) {
        if check.outcome == Outcome::Failed {
            self.failed = true;
        }
        self.run.emit(Event::Step {
            stage: self.stage,
            check,
        });
    }

    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Ends the stage: passed, or failed when a step failed.
    pub fn finish(self) -> StageOutcome {
        let outcome = if self.failed {
            StageOutcome::Failed
        } else {
            StageOutcome::Passed
        };
        self.finish_as(outcome)
    }

    /// Ends the stage with the outcome the pipeline decided (a stage that found nothing to do
    /// is skipped, with its own time).
    pub fn finish_as(mut self, outcome: StageOutcome) -> StageOutcome {
        self.pause();
        self.run.emit(Event::StageFinished {
            stage: self.stage,
            elapsed: self.worked,
            outcome: outcome.clone(),
        });
        outcome
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
