//! `mission-critical`: the gate. A pipeline of stages (preflight → engine → images → stack → ws →
//! suites → teardown) that emit [`Event`]s to one [`Reporter`], which fans them out to the terminal,
//! the JUnit report and the GitHub step summary. Teardown and the report happen on every path:
//! success, failure, a suite past its deadline, Ctrl-C, SIGTERM, a panic.
//!
//! Not here: how each stage does its work (engine, images, stack, ws, suites, target modules).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::{Config, Runner, SuiteCfg, TargetKind};
use crate::error::Failure;
use crate::flags::{MissionCritical, Shard, TargetChoice};
use crate::junit::{Case, Status, SuiteResult};
use crate::report::{Check, Outcome};
use crate::state::StackState;
use crate::suites::{PythonEnv, Requirements, SuiteEnv};
use crate::target::LocalTarget;
use crate::{ui, Ctx};

/// The stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Preflight,
    Engine,
    Images,
    Stack,
    Ws,
    Suites,
    Teardown,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::Preflight,
        Stage::Engine,
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
            Stage::Images => "images",
            Stage::Stack => "stack",
            Stage::Ws => "ws",
            Stage::Suites => "suites",
            Stage::Teardown => "teardown",
        }
    }
}

/// What stages tell the reporter.
#[derive(Debug, Clone)]
pub enum Event {
    StageStarted(Stage),
    /// One of the gate's own steps finished.
    Step {
        stage: Stage,
        check: Check,
    },
    /// The stage will not run; every later stage gets the same treatment.
    StageSkipped {
        stage: Stage,
        reason: String,
    },
    /// A suite finished (or was reported skipped, its cases listed).
    Suite(SuiteResult),
    /// A fact for people and for the report's properties (target, engine version, ...).
    Property {
        name: String,
        value: String,
    },
    /// Something a person should read that is not a check.
    Note(String),
}

/// Collects events and renders them: the terminal as they come, the report and summary at the end.
pub struct Reporter {
    inner: Mutex<Recorded>,
    started: Instant,
}

#[derive(Default)]
struct Recorded {
    steps: Vec<(Stage, Check)>,
    skipped: Vec<(Stage, String)>,
    stages_started: Vec<(Stage, Instant)>,
    suites: Vec<SuiteResult>,
    properties: Vec<(String, String)>,
    notes: Vec<String>,
}

impl Reporter {
    pub fn new() -> Reporter {
        Reporter {
            inner: Mutex::new(Recorded::default()),
            started: Instant::now(),
        }
    }

    pub fn emit(&self, event: Event) {
        let mut recorded = self
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Terminal sink first, then the record the report and summary are made from.
        match &event {
            Event::StageStarted(stage) => ui::say(format!("── {} ", stage.name())),
            Event::Step { stage, check } => ui::say(format!(
                "  {:<4} {}{} ({}){}",
                check.outcome.label(),
                // A step finishing after a later stage began (the smoke container beside the
                // stack) names its stage.
                match recorded.stages_started.last() {
                    Some((current, _)) if current != stage => format!("{}: ", stage.name()),
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
            Event::StageSkipped { stage, reason } => {
                ui::say(format!("── {} skipped: {reason}", stage.name()))
            }
            Event::Suite(suite) => {
                let counts = Counts::of(suite);
                ui::say(format!(
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
            Event::Property { name, value } => ui::say(format!("  {name}: {value}")),
            Event::Note(note) => ui::say(format!("  note: {note}")),
        }
        match event {
            Event::StageStarted(stage) => recorded.stages_started.push((stage, Instant::now())),
            Event::Step { stage, check } => recorded.steps.push((stage, check)),
            Event::StageSkipped { stage, reason } => recorded.skipped.push((stage, reason)),
            Event::Suite(suite) => recorded.suites.push(suite),
            Event::Property { name, value } => {
                recorded.properties.retain(|(n, _)| *n != name);
                recorded.properties.push((name, value));
            }
            Event::Note(note) => recorded.notes.push(note),
        }
    }

    fn step(&self, stage: Stage, check: Check) {
        self.emit(Event::Step { stage, check });
    }

    /// Whether anything failed so far (a failed step, a failed or erroring suite).
    pub fn failed(&self) -> bool {
        let recorded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        recorded
            .steps
            .iter()
            .any(|(_, c)| c.outcome == Outcome::Failed)
            || recorded
                .suites
                .iter()
                .any(|s| Counts::of(s).failed > 0 || s.error.is_some())
    }

    fn stage_failed(&self, stage: Stage) -> bool {
        let recorded = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        recorded
            .steps
            .iter()
            .any(|(s, c)| *s == stage && c.outcome == Outcome::Failed)
    }
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new()
    }
}

/// Passed, failed (failures and errors) and skipped cases of a suite, counted from its cases.
#[derive(Debug, Default, Clone, Copy)]
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

/// What teardown must undo, recorded the moment it exists.
#[derive(Default)]
struct Resources {
    stack: Option<StackState>,
    /// The run id of a stack being brought up, so that a half-made stack is found by label.
    stack_run_id: Option<String>,
    local: Option<LocalTarget>,
}

/// Everything the pipeline needs, shared with the task it runs in.
struct Run {
    config: Config,
    flags: GateOptions,
    run_id: String,
    reporter: Reporter,
    resources: Mutex<Resources>,
    /// Values that must never appear in output or the report.
    secrets: Mutex<Vec<String>>,
    /// The pre-flight checks while they run (their CPU sample takes about a second).
    preflight: Mutex<Option<tokio::task::JoinHandle<Vec<Check>>>>,
}

/// The flags, turned into options once, at the edge.
#[derive(Debug, Clone)]
struct GateOptions {
    target: TargetChoice,
    keep: bool,
    keep_on_failure: bool,
    junit: PathBuf,
    shard: Option<Shard>,
    install: bool,
    only_suites: Vec<String>,
}

/// How the run ended, for the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Completed,
    /// No target could be had (exit 3).
    Unavailable(String),
    Interrupted(&'static str),
    Panicked(String),
}

impl MissionCritical {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        for name in &self.suites {
            if !config.suites.iter().any(|s| &s.name == name) {
                return Err(Failure::config(format!(
                    "--suite {name}: no [[suite]] named `{name}` in {}",
                    config.path.display()
                ))
                .into());
            }
        }
        let junit = if self.junit.is_absolute() {
            self.junit.clone()
        } else {
            config.root.join(&self.junit)
        };
        let run = Arc::new(Run {
            run_id: crate::state::new_run_id(),
            flags: GateOptions {
                target: self.target,
                keep: self.keep,
                keep_on_failure: self.keep_on_failure,
                junit,
                shard: self.shard,
                install: self.install,
                only_suites: self.suites,
            },
            config,
            reporter: Reporter::new(),
            resources: Mutex::new(Resources::default()),
            secrets: Mutex::new(Vec::new()),
            preflight: Mutex::new(None),
        });
        ui::say(format!(
            "mission-critical: run {} ({})",
            run.run_id,
            run.config.path.display()
        ));
        run.reporter.emit(Event::Property {
            name: "run id".into(),
            value: run.run_id.clone(),
        });
        if let Some(commit) = git_commit(&run.config.root) {
            run.reporter.emit(Event::Property {
                name: "git commit".into(),
                value: commit,
            });
        }

        let ending = supervise(run.clone(), pipeline(run.clone())).await;
        finish(&run, ending).await
    }
}

/// Teardown, the report and the summary, whatever the ending; the command's result.
async fn finish(run: &Arc<Run>, ending: Ending) -> anyhow::Result<()> {
    // From here a signal no longer reaches the pipeline. During teardown, a first signal lets
    // teardown finish (the run then counts as interrupted); a second one, or one after the run
    // was already interrupted, ends the harness at once.
    let teardown_signals = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let already_interrupted = matches!(ending, Ending::Interrupted(_));
    let _second_signal = AbortOnDrop(tokio::spawn({
        let teardown_signals = teardown_signals.clone();
        async move {
            let mut signals = Signals::new();
            loop {
                signals.next().await;
                let seen = teardown_signals.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if already_interrupted || seen >= 2 {
                    eprintln!(
                        "interrupted again: exiting before teardown and the report are finished"
                    );
                    std::process::exit(130);
                }
                ui::say(
                    "interrupted during teardown: finishing it (interrupt again to exit at once)",
                );
            }
        }
    }));
    teardown(run, &ending).await;
    let ending =
        if teardown_signals.load(std::sync::atomic::Ordering::SeqCst) > 0 && !already_interrupted {
            Ending::Interrupted("SIGINT during teardown")
        } else {
            ending
        };
    // Suites dropped by an interruption get their SIGKILL before the harness exits.
    tokio::task::spawn_blocking(crate::process::finish_pending_kills)
        .await
        .ok();
    let interrupted = matches!(ending, Ending::Interrupted(_));
    if let Ending::Panicked(message) = &ending {
        run.reporter.step(
            Stage::Teardown,
            Check::failed("harness panic", Duration::ZERO, message.clone()),
        );
    }
    let written = write_report(run, interrupted);
    summary(run, &ending, written.as_ref().err());

    match ending {
        Ending::Interrupted(signal) => Err(Failure::Interrupted { signal }.into()),
        Ending::Unavailable(message) => Err(Failure::unavailable(message, None).into()),
        Ending::Panicked(message) => {
            Err(Failure::check(format!("the harness panicked: {message}")).into())
        }
        Ending::Completed if written.is_err() => Err(written.unwrap_err()),
        Ending::Completed if run.reporter.failed() => Err(Failure::check("the gate failed").into()),
        Ending::Completed => Ok(()),
    }
}

/// Runs the pipeline (`work`) in its own task so that a signal or a panic can end it, then returns
/// how it ended.
async fn supervise<F>(run: Arc<Run>, work: F) -> Ending
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut pipeline = tokio::spawn(work);
    let mut signals = Signals::new();
    tokio::select! {
        joined = &mut pipeline => match joined {
            Ok(Ok(())) => Ending::Completed,
            Ok(Err(e)) => match e.downcast_ref::<Failure>() {
                Some(Failure::Unavailable { message, .. }) => Ending::Unavailable(message.clone()),
                _ => {
                    run.reporter.step(Stage::Teardown, Check::failed("gate error", Duration::ZERO, format!("{e:#}")));
                    Ending::Completed
                }
            },
            Err(join_error) if join_error.is_panic() => {
                let payload = join_error.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Ending::Panicked(message)
            }
            Err(_) => Ending::Interrupted("cancellation"),
        },
        signal = signals.next() => {
            ui::say(format!("interrupted ({signal}): stopping suites, tearing down"));
            pipeline.abort();
            let _ = pipeline.await;
            Ending::Interrupted(signal)
        }
    }
}

/// The Python environment, made in its own task; awaited once by whoever needs it first.
struct PythonSlot {
    task: Mutex<Option<tokio::task::JoinHandle<Result<PythonEnv, String>>>>,
    env: tokio::sync::OnceCell<Option<PythonEnv>>,
}

impl PythonSlot {
    fn spawn<F>(work: Option<F>) -> PythonSlot
    where
        F: std::future::Future<Output = Result<PythonEnv, String>> + Send + 'static,
    {
        PythonSlot {
            task: Mutex::new(work.map(tokio::spawn)),
            env: tokio::sync::OnceCell::new(),
        }
    }

    /// The environment, or `None` when it is not needed or could not be made (reported once).
    async fn get(&self, reporter: &Reporter) -> Option<&PythonEnv> {
        self.env
            .get_or_init(|| async {
                let task = lock(&self.task).take()?;
                match task.await {
                    Ok(Ok(env)) => Some(env),
                    Ok(Err(e)) => {
                        reporter.step(
                            Stage::Suites,
                            Check::failed("python environment", Duration::ZERO, e),
                        );
                        None
                    }
                    Err(e) => {
                        reporter.step(
                            Stage::Suites,
                            Check::failed("python environment", Duration::ZERO, e.to_string()),
                        );
                        None
                    }
                }
            })
            .await
            .as_ref()
    }
}

impl Drop for PythonSlot {
    fn drop(&mut self) {
        // An interrupted run must not leave pip running.
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, as one stream.
struct Signals {
    sigterm: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        Signals {
            sigterm: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    /// Waits for the next signal and names it.
    async fn next(&mut self) -> &'static str {
        let terminated = async {
            match self.sigterm.as_mut() {
                Some(signal) => {
                    signal.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = terminated => "SIGTERM",
        }
    }
}

/// A task that ends when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The target the suites run against, once chosen.
struct Chosen {
    kind: TargetKind,
    endpoints: BTreeMap<String, String>,
    extra_env: BTreeMap<String, String>,
    skip_markers: Vec<String>,
}

async fn pipeline(run: Arc<Run>) -> anyhow::Result<()> {
    let config = &run.config;
    let reporter = &run.reporter;
    let wants_docker = matches!(run.flags.target, TargetChoice::Auto | TargetChoice::Docker);
    let needs_python = config.suites.iter().any(|s| s.runner == Runner::Pytest)
        || (!matches!(run.flags.target, TargetChoice::Docker) && config.targets.local.is_some());

    // Overlap what does not depend on anything: the pre-flight sample, the engine, the Python env.
    reporter.emit(Event::StageStarted(Stage::Preflight));
    *lock(&run.preflight) = Some(tokio::spawn({
        let config = config.clone();
        async move { crate::preflight::run_checks(&config).await }
    }));
    let engine = async {
        if !wants_docker {
            return None;
        }
        let options = crate::engine::EnsureOptions {
            install: run.flags.install,
        };
        Some(
            match crate::engine::ensure_running(config, &options).await {
                Err(e) => EngineWork {
                    engine: Err(e),
                    leftovers: None,
                    images: None,
                },
                Ok((engine, checks)) => {
                    // The smoke container runs beside the stack (docker_target).
                    let leftovers = crate::stack::remove_leftovers(config, &engine).await;
                    let images = crate::images::provision(&engine, config).await;
                    EngineWork {
                        engine: Ok((engine, checks)),
                        leftovers: Some(leftovers),
                        images: Some(images),
                    }
                }
            },
        )
    };
    let requirements =
        if matches!(run.flags.target, TargetChoice::Docker) || config.targets.local.is_none() {
            Requirements::Suites
        } else {
            Requirements::SuitesAndLocal
        };
    // The Python environment goes on in its own task: only the suites (and the local target) wait for it.
    let python = PythonSlot::spawn(needs_python.then(|| {
        let config = config.clone();
        async move {
            crate::suites::python_env_with(&config, requirements)
                .await
                .map_err(|e| format!("{e:#}"))
        }
    }));
    let engine = engine.await;
    // With `on_shortfall = "fail"` a shortfall stops the run, so the stack waits for the verdict;
    // with "warn" nothing in pre-flight can stop it, and the CPU sample overlaps the stack.
    if config.preflight.on_shortfall == crate::config::OnShortfall::Fail {
        finish_preflight(&run).await;
    }
    if reporter.stage_failed(Stage::Preflight) {
        return skip_rest(&run, Stage::Engine, "pre-flight failed", &python, None).await;
    }

    reporter.emit(Event::StageStarted(Stage::Engine));
    let chosen = match engine {
        Some(EngineWork {
            engine: Ok((engine, checks)),
            leftovers,
            images,
        }) => {
            for check in checks {
                reporter.step(Stage::Engine, check);
            }
            match leftovers {
                Some(Ok(removed)) if !removed.is_empty() => reporter.emit(Event::Note(format!(
                    "removed leftovers of dead runs: {}",
                    removed.join(", ")
                ))),
                Some(Err(e)) => reporter.emit(Event::Note(format!(
                    "could not look for leftovers of dead runs: {e:#}"
                ))),
                _ => {}
            }
            reporter.emit(Event::StageStarted(Stage::Images));
            match images {
                Some(Ok(checks)) => checks
                    .into_iter()
                    .for_each(|c| reporter.step(Stage::Images, c)),
                Some(Err(e)) => reporter.step(
                    Stage::Images,
                    Check::failed("images", Duration::ZERO, format!("{e:#}")),
                ),
                None => {}
            }
            reporter.emit(Event::Property {
                name: "target".into(),
                value: "docker".into(),
            });
            reporter.emit(Event::Property {
                name: "engine version".into(),
                value: format!(
                    "{} (API {})",
                    engine.info.server_version, engine.info.api_version
                ),
            });
            if reporter.stage_failed(Stage::Engine) {
                return skip_rest(
                    &run,
                    Stage::Images,
                    "the engine checks failed",
                    &python,
                    None,
                )
                .await;
            }
            if reporter.stage_failed(Stage::Images) {
                return skip_rest(
                    &run,
                    Stage::Stack,
                    "an image could not be provisioned",
                    &python,
                    None,
                )
                .await;
            }
            docker_target(&run, &engine, &python).await?
        }
        Some(EngineWork { engine: Err(e), .. }) => {
            let unavailable = matches!(
                e.downcast_ref::<Failure>(),
                Some(Failure::Unavailable { .. })
            );
            let falls_back = unavailable && run.flags.target == TargetChoice::Auto;
            reporter.step(
                Stage::Engine,
                if falls_back {
                    // Not a failure of the gate: the fallback targets exist for exactly this.
                    Check::skipped(
                        "engine available",
                        format!("no engine ({e:#}); trying [fallback] order"),
                    )
                } else {
                    Check::failed("engine available", Duration::ZERO, format!("{e:#}"))
                },
            );
            if !falls_back {
                if unavailable {
                    skip_rest(
                        &run,
                        Stage::Images,
                        "no engine (--target docker)",
                        &python,
                        None,
                    )
                    .await?;
                    return Err(e);
                }
                return skip_rest(&run, Stage::Images, "the engine failed", &python, None).await;
            }
            reporter.emit(Event::Note(format!(
                "no engine: falling back through [fallback] order {:?}",
                config.fallback.order
            )));
            fallback(&run, &python).await?
        }
        None => {
            reporter.emit(Event::StageSkipped {
                stage: Stage::Engine,
                reason: format!("--target {:?}", run.flags.target).to_lowercase(),
            });
            forced_target(&run, &python).await?
        }
    };
    let Some(chosen) = chosen else { return Ok(()) };

    finish_preflight(&run).await;
    if reporter.stage_failed(Stage::Preflight) {
        return skip_rest(&run, Stage::Ws, "pre-flight failed", &python, Some(&chosen)).await;
    }
    reporter.emit(Event::StageStarted(Stage::Ws));
    match &config.ws_check {
        None => reporter.emit(Event::StageSkipped {
            stage: Stage::Ws,
            reason: "no [ws_check] in harness.toml".into(),
        }),
        Some(_) => {
            let result = ws_stage(&run, &chosen).await;
            for check in result {
                reporter.step(Stage::Ws, check);
            }
        }
    }
    if reporter.stage_failed(Stage::Ws) {
        return skip_rest(
            &run,
            Stage::Suites,
            "the WebSocket check failed",
            &python,
            Some(&chosen),
        )
        .await;
    }
    run_suites(&run, &chosen, &python).await;
    Ok(())
}

/// What the engine branch of the first stage produced, overlapping the pre-flight sample.
struct EngineWork {
    engine: anyhow::Result<(crate::engine::Engine, Vec<Check>)>,
    leftovers: Option<anyhow::Result<Vec<String>>>,
    images: Option<anyhow::Result<Vec<Check>>>,
}

/// Waits for the pre-flight checks (once) and reports them.
async fn finish_preflight(run: &Run) {
    let task = lock(&run.preflight).take();
    if let Some(task) = task {
        match task.await {
            Ok(checks) => checks
                .into_iter()
                .for_each(|c| run.reporter.step(Stage::Preflight, c)),
            Err(e) => run.reporter.step(
                Stage::Preflight,
                Check::failed("pre-flight", Duration::ZERO, e.to_string()),
            ),
        }
    }
}

/// Docker: the stack, after the engine answered and the images are there. The smoke container runs
/// beside the stack (it proves the engine runs containers; so does the stack, and neither needs the
/// other), and a failed smoke container fails the gate once the stack is recorded for teardown.
async fn docker_target(
    run: &Run,
    engine: &crate::engine::Engine,
    python: &PythonSlot,
) -> anyhow::Result<Option<Chosen>> {
    let config = &run.config;
    let reporter = &run.reporter;
    let smoke = async {
        let check = crate::engine::smoke(engine, config).await;
        reporter.step(Stage::Engine, check);
    };
    if config.stack.is_none() {
        smoke.await;
        if reporter.stage_failed(Stage::Engine) {
            skip_rest(
                run,
                Stage::Stack,
                "the smoke container failed",
                python,
                None,
            )
            .await?;
            return Ok(None);
        }
        reporter.emit(Event::StageStarted(Stage::Stack));
        reporter.emit(Event::StageSkipped {
            stage: Stage::Stack,
            reason: "no [stack] in harness.toml".into(),
        });
        return Ok(Some(Chosen {
            kind: TargetKind::Docker,
            endpoints: BTreeMap::new(),
            extra_env: BTreeMap::new(),
            skip_markers: config.targets.docker_skip_markers.clone(),
        }));
    }
    lock(&run.resources).stack_run_id = Some(run.run_id.clone());
    let options = crate::stack::UpOptions {
        isolated: true,
        run_id: Some(run.run_id.clone()),
        ..Default::default()
    };
    reporter.emit(Event::StageStarted(Stage::Stack));
    let (up, ()) = tokio::join!(crate::stack::up(config, engine, &options), smoke);
    match up {
        Ok(report) => {
            reporter.emit(Event::Property {
                name: "compose flavour".into(),
                value: report.compose.to_string(),
            });
            lock(&run.resources).stack = Some(report.state.clone());
            for check in report.checks() {
                reporter.step(Stage::Stack, check.clone());
            }
            if reporter.stage_failed(Stage::Engine) {
                skip_rest(run, Stage::Ws, "the smoke container failed", python, None).await?;
                return Ok(None);
            }
            if !report.passed() {
                skip_rest(
                    run,
                    Stage::Ws,
                    "the stack did not become healthy",
                    python,
                    None,
                )
                .await?;
                return Ok(None);
            }
            let mut extra_env = BTreeMap::new();
            extra_env.insert(
                "XTASK_COMPOSE_PROJECT".to_owned(),
                report.state.project.clone(),
            );
            extra_env.insert(
                "XTASK_COMPOSE_FILE".to_owned(),
                report.state.compose_file.display().to_string(),
            );
            Ok(Some(Chosen {
                kind: TargetKind::Docker,
                endpoints: report.endpoints.clone(),
                extra_env,
                skip_markers: config.targets.docker_skip_markers.clone(),
            }))
        }
        Err(e) => {
            reporter.step(
                Stage::Stack,
                Check::failed("stack up", Duration::ZERO, format!("{e:#}")),
            );
            skip_rest(run, Stage::Ws, "the stack did not come up", python, None).await?;
            Ok(None)
        }
    }
}

/// No engine: the first usable target of `[fallback] order`.
async fn fallback(run: &Run, python: &PythonSlot) -> anyhow::Result<Option<Chosen>> {
    let mut reasons = Vec::new();
    for kind in run.config.fallback.order.clone() {
        match try_target(run, kind, python).await {
            Ok(chosen) => return Ok(Some(chosen)),
            Err(e) => {
                run.reporter
                    .emit(Event::Note(format!("target {kind} not usable: {e:#}")));
                reasons.push(format!("{kind}: {e:#}"));
            }
        }
    }
    let message = if reasons.is_empty() {
        "no engine, and [fallback] order names no other target".to_owned()
    } else {
        format!(
            "no engine, and no fallback target is usable ({})",
            reasons.join("; ")
        )
    };
    skip_rest(run, Stage::Images, &message, python, None).await?;
    Err(Failure::unavailable(
        message,
        Some("start the engine, or set the staging endpoints, or fix [targets.local]".to_owned()),
    )
    .into())
}

async fn forced_target(run: &Run, python: &PythonSlot) -> anyhow::Result<Option<Chosen>> {
    let kind = match run.flags.target {
        TargetChoice::Staging => TargetKind::Staging,
        TargetChoice::Local => TargetKind::Local,
        TargetChoice::Auto | TargetChoice::Docker => {
            unreachable!("docker targets go through the engine")
        }
    };
    match try_target(run, kind, python).await {
        Ok(chosen) => Ok(Some(chosen)),
        Err(e) => {
            let message = format!("target {kind} is not usable: {e:#}");
            skip_rest(run, Stage::Images, &message, python, None).await?;
            Err(Failure::unavailable(message, None).into())
        }
    }
}

async fn try_target(run: &Run, kind: TargetKind, python: &PythonSlot) -> anyhow::Result<Chosen> {
    let config = &run.config;
    let chosen = match kind {
        TargetKind::Docker => anyhow::bail!("docker is not a fallback target"),
        TargetKind::Staging => {
            let endpoints = crate::target::staging_endpoints(config).await?;
            let staging = config
                .targets
                .staging
                .as_ref()
                .expect("staging_endpoints checked it");
            Chosen {
                kind,
                endpoints,
                extra_env: BTreeMap::new(),
                skip_markers: staging.skip_markers.clone(),
            }
        }
        TargetKind::Local => {
            let local_cfg = config
                .targets
                .local
                .as_ref()
                .context("no [targets.local] in harness.toml")?;
            let python_exe = python
                .get(&run.reporter)
                .await
                .map(|env| env.python.clone());
            let secret = crate::target::random_secret();
            lock(&run.secrets).push(secret.clone());
            let mut extra = BTreeMap::new();
            extra.insert("XTASK_RUN_SECRET".to_owned(), secret);
            extra.insert("XTASK_RUN_ID".to_owned(), run.run_id.clone());
            let mut local = crate::target::start_local(
                config,
                python_exe.as_deref(),
                &extra,
                &crate::progress::Progress::terminal(),
            )
            .await?;
            for check in std::mem::take(&mut local.checks) {
                run.reporter.step(Stage::Stack, check);
            }
            let endpoints = local.endpoints.clone();
            lock(&run.resources).local = Some(local);
            Chosen {
                kind,
                endpoints,
                extra_env: extra,
                skip_markers: local_cfg.skip_markers.clone(),
            }
        }
    };
    run.reporter.emit(Event::Property {
        name: "target".into(),
        value: kind.to_string(),
    });
    for stage in [Stage::Images, Stage::Stack] {
        if kind == TargetKind::Staging || stage == Stage::Images {
            run.reporter.emit(Event::StageSkipped {
                stage,
                reason: format!("not used on the {kind} target"),
            });
        }
    }
    Ok(chosen)
}

async fn ws_stage(run: &Run, chosen: &Chosen) -> Vec<Check> {
    let plan = match crate::ws::plan_from_config(
        &run.config,
        &chosen.endpoints,
        &crate::ws::Overrides::default(),
    ) {
        Ok(plan) => plan,
        Err(e) => {
            return vec![Check::failed(
                "websocket plan",
                Duration::ZERO,
                format!("{e:#}"),
            )]
        }
    };
    crate::ws::run(&plan).await.checks
}

/// Runs the suites: in order, consecutive `parallel = true` suites at the same time.
async fn run_suites(run: &Run, chosen: &Chosen, python: &PythonSlot) {
    run.reporter.emit(Event::StageStarted(Stage::Suites));
    let python = python.get(&run.reporter).await;
    let env = SuiteEnv {
        target: chosen.kind,
        run_id: run.run_id.clone(),
        endpoints: chosen.endpoints.clone(),
        extra: chosen.extra_env.clone(),
        skip_markers: chosen.skip_markers.clone(),
        secrets: lock(&run.secrets).clone(),
    };
    let selected: Vec<&SuiteCfg> = selected_suites(run);
    let mut index = 0;
    while index < selected.len() {
        let mut group = vec![selected[index]];
        index += 1;
        while selected[index - 1].parallel && index < selected.len() && selected[index].parallel {
            group.push(selected[index]);
            index += 1;
        }
        let results = futures_util::future::join_all(
            group
                .into_iter()
                .map(|suite| run_one_suite(run, suite, &env, python)),
        )
        .await;
        for result in results {
            run.reporter.emit(Event::Suite(result));
        }
    }
}

fn selected_suites(run: &Run) -> Vec<&SuiteCfg> {
    run.config
        .suites
        .iter()
        .filter(|s| run.flags.only_suites.is_empty() || run.flags.only_suites.contains(&s.name))
        .collect()
}

async fn run_one_suite(
    run: &Run,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    python: Option<&PythonEnv>,
) -> SuiteResult {
    if !suite.needs.is_empty() && !suite.needs.contains(&env.target) {
        let needs: Vec<String> = suite.needs.iter().map(ToString::to_string).collect();
        let reason = format!(
            "needs target {}, running on {}",
            needs.join(" or "),
            env.target
        );
        return crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            env,
            python,
            &reason,
            run.flags.shard,
        )
        .await;
    }
    if suite.runner == Runner::Pytest && python.is_none() {
        let reason = "the Python environment could not be made";
        return crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            env,
            None,
            reason,
            run.flags.shard,
        )
        .await;
    }
    crate::suites::run_suite(&run.config, suite, env, python, run.flags.shard).await
}

/// A stage failed: every stage from `from` on is reported skipped, and every suite's tests are
/// listed as skipped with the reason, so that nothing silently disappears.
async fn skip_rest(
    run: &Run,
    from: Stage,
    reason: &str,
    python: &PythonSlot,
    chosen: Option<&Chosen>,
) -> anyhow::Result<()> {
    finish_preflight(run).await;
    let python = python.get(&run.reporter).await;
    for stage in Stage::ALL
        .into_iter()
        .filter(|s| *s >= from && *s != Stage::Teardown)
    {
        run.reporter.emit(Event::StageSkipped {
            stage,
            reason: reason.to_owned(),
        });
    }
    let env = SuiteEnv {
        target: chosen.map_or(TargetKind::Docker, |c| c.kind),
        run_id: run.run_id.clone(),
        endpoints: chosen.map(|c| c.endpoints.clone()).unwrap_or_default(),
        extra: BTreeMap::new(),
        skip_markers: Vec::new(),
        secrets: lock(&run.secrets).clone(),
    };
    for suite in selected_suites(run) {
        let result = crate::suites::collect_skipped_shard(
            &run.config,
            suite,
            &env,
            python,
            reason,
            run.flags.shard,
        )
        .await;
        run.reporter.emit(Event::Suite(result));
    }
    Ok(())
}

/// Undoes what the run made, on every path, unless asked to keep it.
async fn teardown(run: &Run, ending: &Ending) {
    let reporter = &run.reporter;
    let failed = reporter.failed() || !matches!(ending, Ending::Completed);
    let keep = run.flags.keep
        || (run.flags.keep_on_failure && failed && !matches!(ending, Ending::Interrupted(_)));
    finish_preflight(run).await;
    reporter.emit(Event::StageStarted(Stage::Teardown));
    let (stack, stack_run_id, local) = {
        let mut resources = lock(&run.resources);
        (
            resources.stack.take(),
            resources.stack_run_id.take(),
            resources.local.take(),
        )
    };
    if keep {
        if let Some(stack) = &stack {
            let _ = crate::state::Store::of(&run.config).update(|state| {
                if let Some(record) = state.stacks.get_mut(&stack.run_id) {
                    record.kept = true;
                }
            });
            reporter.emit(Event::Note(format!(
                "kept the stack up: project {} ({}); remove it with cargo xtask docker-down",
                stack.project,
                stack
                    .endpoints
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Some(local) = local {
            // Kept processes are handed over: detached, they keep running.
            let pids: Vec<String> = local.keep().iter().map(|p| p.to_string()).collect();
            reporter.emit(Event::Note(format!(
                "kept local processes running: pids {}",
                pids.join(", ")
            )));
        }
        reporter.emit(Event::StageSkipped {
            stage: Stage::Teardown,
            reason: "--keep".into(),
        });
        return;
    }
    if let Some(mut local) = local {
        let started = Instant::now();
        let stopped = local.stop().await;
        reporter.step(
            Stage::Teardown,
            Check::passed(
                "stop local processes",
                started.elapsed(),
                stopped.join("; "),
            ),
        );
    }
    if stack.is_some() || stack_run_id.is_some() {
        let started = Instant::now();
        let stack = stack.unwrap_or_else(|| {
            unfinished_stack(&run.config, stack_run_id.as_deref().unwrap_or(&run.run_id))
        });
        let result = tokio::time::timeout(
            Duration::from_secs(120),
            crate::stack::down(&run.config, &stack),
        )
        .await;
        let check = match result {
            Ok(Ok(check)) => check,
            Ok(Err(e)) => Check::failed("stack down", started.elapsed(), format!("{e:#}")),
            Err(_) => Check::failed(
                "stack down",
                started.elapsed(),
                "did not finish within 120s",
            ),
        };
        reporter.step(Stage::Teardown, check);
    }
}

/// The record of a stack whose `up` never returned (interrupted): enough for `down` to find it
/// by its project and its run label.
fn unfinished_stack(config: &Config, run_id: &str) -> StackState {
    let stack = config
        .stack
        .as_ref()
        .expect("a stack run id is only recorded with a [stack]");
    StackState {
        run_id: run_id.to_owned(),
        project: crate::stack::project_name(config, run_id, true),
        compose_file: stack.compose_file.clone(),
        compose_flavour: String::new(),
        services: stack.services.clone(),
        endpoints: BTreeMap::new(),
        isolated: true,
        compose_env: crate::stack::compose_env(stack, true),
        started_unix_ms: crate::state::unix_ms(),
    }
}

fn write_report(run: &Run, interrupted: bool) -> anyhow::Result<PathBuf> {
    let recorded = lock(&run.reporter.inner);
    let mut properties = recorded.properties.clone();
    properties.push(("interrupted".into(), interrupted.to_string()));
    properties.push((
        "harness overhead s".into(),
        format!(
            "{:.3}",
            overhead(&recorded, run.reporter.started.elapsed()).as_secs_f64()
        ),
    ));
    if let Some(shard) = run.flags.shard {
        properties.push(("shard".into(), format!("{}/{}", shard.index, shard.count)));
    }
    let mut harness: Vec<Check> = recorded
        .steps
        .iter()
        .map(|(stage, check)| {
            let mut check = check.clone();
            check.name = format!("{}: {}", stage.name(), check.name);
            check
        })
        .collect();
    // Stages overlap (pre-flight finishes while the stack starts): the report lists them in order.
    harness.sort_by_key(|check| {
        Stage::ALL
            .iter()
            .position(|s| check.name.starts_with(&format!("{}: ", s.name())))
    });
    for (stage, reason) in &recorded.skipped {
        harness.push(Check::skipped(
            format!("{}: stage", stage.name()),
            reason.clone(),
        ));
    }
    let report = crate::junit::Report {
        name: format!("mission-critical {}", run.config.project.name.0),
        properties,
        harness,
        suites: recorded.suites.clone(),
        secrets: lock(&run.secrets).clone(),
    };
    crate::junit::write(&report, &run.flags.junit)?;
    Ok(run.flags.junit.clone())
}

/// Wall time of each stage that started: from its start to the next stage's start (or now).
fn stage_walls(recorded: &Recorded) -> Vec<(Stage, Duration)> {
    let now = Instant::now();
    recorded
        .stages_started
        .iter()
        .enumerate()
        .map(|(i, (stage, started))| {
            let end = recorded
                .stages_started
                .get(i + 1)
                .map_or(now, |(_, next)| *next);
            (*stage, end.saturating_duration_since(*started))
        })
        .collect()
}

/// The harness's own cost: total minus the stack wait, the suites and teardown.
fn overhead(recorded: &Recorded, total: Duration) -> Duration {
    let spent: Duration = stage_walls(recorded)
        .into_iter()
        .filter(|(stage, _)| matches!(stage, Stage::Stack | Stage::Suites | Stage::Teardown))
        .map(|(_, wall)| wall)
        .sum();
    total.saturating_sub(spent)
}

/// The table for people at the end, and the GitHub step summary when `GITHUB_STEP_SUMMARY` is set.
fn summary(run: &Run, ending: &Ending, report_error: Option<&anyhow::Error>) {
    // Asked before taking the lock: `failed` takes it too.
    let failed = run.reporter.failed();
    let recorded = lock(&run.reporter.inner);
    let walls = stage_walls(&recorded);
    let mut rows = Vec::new();
    for stage in Stage::ALL {
        let steps: Vec<&Check> = recorded
            .steps
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, c)| c)
            .collect();
        let skipped = recorded.skipped.iter().find(|(s, _)| *s == stage);
        if stage == Stage::Suites {
            continue;
        }
        let failed = steps
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .count();
        let passed = steps
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Passed | Outcome::Warned))
            .count();
        let time: Duration = walls
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, w)| *w)
            .sum();
        let status = if failed > 0 {
            "FAIL"
        } else if skipped.is_some() && steps.is_empty() {
            "skip"
        } else {
            "ok"
        };
        rows.push(vec![
            stage.name().to_owned(),
            status.to_owned(),
            passed.to_string(),
            failed.to_string(),
            skipped.map(|(_, r)| r.clone()).unwrap_or_default(),
            ui::duration(time),
        ]);
    }
    for suite in &recorded.suites {
        let counts = Counts::of(suite);
        let status = if counts.failed > 0 || suite.error.is_some() {
            "FAIL"
        } else if counts.passed == 0 {
            "skip"
        } else {
            "ok"
        };
        rows.push(vec![
            format!("suite {}", suite.name),
            status.to_owned(),
            counts.passed.to_string(),
            counts.failed.to_string(),
            if counts.skipped > 0 {
                format!("{} skipped", counts.skipped)
            } else {
                String::new()
            },
            ui::duration(suite.duration),
        ]);
    }
    let mut text = String::from("\n");
    text.push_str(&ui::table(
        &[
            "stage",
            "status",
            "passed",
            "failed",
            "skipped / note",
            "time",
        ],
        &rows,
    ));

    let mut services: Vec<&Check> = recorded
        .steps
        .iter()
        .filter(|(s, _)| *s == Stage::Stack)
        .map(|(_, c)| c)
        .collect();
    services.sort_by_key(|c| std::cmp::Reverse(c.duration));
    if !services.is_empty() {
        let slowest: Vec<String> = services
            .iter()
            .take(3)
            .map(|c| format!("{} {}", c.name, ui::duration(c.duration)))
            .collect();
        text.push_str(&format!("slowest services: {}\n", slowest.join(", ")));
    }
    let mut cases: Vec<(&str, &Case)> = recorded
        .suites
        .iter()
        .flat_map(|s| s.cases.iter().map(move |c| (s.name.as_str(), c)))
        .collect();
    cases.sort_by_key(|c| std::cmp::Reverse(c.1.time));
    if !cases.is_empty() {
        let slowest: Vec<String> = cases
            .iter()
            .take(3)
            .map(|(suite, c)| format!("{suite}::{} {}", c.name, ui::duration(c.time)))
            .collect();
        text.push_str(&format!("slowest tests: {}\n", slowest.join(", ")));
    }
    let target = recorded
        .properties
        .iter()
        .find(|(n, _)| n == "target")
        .map_or("none", |(_, v)| v.as_str());
    let verdict = match ending {
        Ending::Interrupted(signal) => format!("INTERRUPTED ({signal})"),
        Ending::Unavailable(_) => "UNAVAILABLE (no target)".to_owned(),
        Ending::Panicked(_) => "FAILED (harness panic)".to_owned(),
        Ending::Completed if failed => "FAILED".to_owned(),
        Ending::Completed => "PASSED".to_owned(),
    };
    text.push_str(&format!(
        "target: {target}; total {}; report: {}\n",
        ui::duration(run.reporter.started.elapsed()),
        match report_error {
            None => run.flags.junit.display().to_string(),
            Some(e) => format!("NOT WRITTEN ({e:#})"),
        }
    ));
    let total = run.reporter.started.elapsed();
    text.push_str(&format!(
        "harness overhead: {} (total {} minus stack, suites and teardown)\n",
        ui::duration(overhead(&recorded, total)),
        ui::duration(total)
    ));
    text.push_str(&format!("mission-critical: {verdict}\n"));
    eprint!("{text}");

    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        let mut markdown = format!("## mission-critical: {verdict}\n\n| stage | status | passed | failed | note | time |\n|---|---|---|---|---|---|\n");
        for row in &rows {
            markdown.push_str(&format!(
                "| {} |\n",
                row.iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
        }
        markdown.push_str(&format!(
            "\nTarget: `{target}`. Report: `{}`.\n",
            run.flags.junit.display()
        ));
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            let _ = file.write_all(markdown.as_bytes());
        }
        for (stage, check) in recorded
            .steps
            .iter()
            .filter(|(_, c)| c.outcome == Outcome::Failed)
        {
            println!(
                "::error title=mission-critical {}: {}::{}",
                stage.name(),
                check.name,
                annotation(&check.detail)
            );
        }
        for suite in &recorded.suites {
            for case in &suite.cases {
                if let Status::Failed { message, .. } | Status::Error { message, .. } = &case.status
                {
                    println!(
                        "::error title={} {}::{}",
                        suite.name,
                        case.name,
                        annotation(message)
                    );
                }
            }
        }
    }
}

/// GitHub annotation text: one line, with its special characters escaped.
fn annotation(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn git_commit(root: &std::path::Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage that panics after it started a process: teardown still stops the process, the
    /// report is written and names the panic, and the command fails (exit 1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_stage_still_tears_down_and_writes_the_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("harness.toml");
        std::fs::write(
            &path,
            "[project]\nname = \"panicky\"\n\n[targets.local]\nendpoints = {}\n\
             processes = [{ name = \"sleeper\", cmd = [\"sleep\", \"300\"] }]\n",
        )
        .unwrap();
        let config = crate::config::load(Some(&path)).unwrap();
        let junit = dir.path().join("junit.xml");
        let run = Arc::new(Run {
            run_id: crate::state::new_run_id(),
            flags: GateOptions {
                target: TargetChoice::Local,
                keep: false,
                keep_on_failure: false,
                junit: junit.clone(),
                shard: None,
                install: false,
                only_suites: Vec::new(),
            },
            config,
            reporter: Reporter::new(),
            resources: Mutex::new(Resources::default()),
            secrets: Mutex::new(Vec::new()),
            preflight: Mutex::new(None),
        });
        let (pid_sender, pid_receiver) = std::sync::mpsc::channel();
        let work = {
            let run = run.clone();
            async move {
                let local = crate::target::start_local(
                    &run.config,
                    None,
                    &BTreeMap::new(),
                    &crate::progress::Progress::silent(),
                )
                .await?;
                pid_sender.send(local.processes[0].pid().unwrap()).unwrap();
                lock(&run.resources).local = Some(local);
                panic!("a bug in a stage");
            }
        };
        let ending = supervise(run.clone(), work).await;
        assert_eq!(ending, Ending::Panicked("a bug in a stage".to_owned()));
        let pid = pid_receiver.recv().unwrap() as libc::pid_t;

        let result = finish(&run, ending).await;
        let error = result.expect_err("a panic fails the gate");
        assert!(
            matches!(error.downcast_ref::<Failure>(), Some(Failure::Check { .. })),
            "{error:#}"
        );
        assert!(format!("{error:#}").contains("the harness panicked: a bug in a stage"));
        // SAFETY: signal 0 only asks whether the pid exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "the local process {pid} outlived the panic");
        let xml = std::fs::read_to_string(&junit).expect("the report is written");
        assert!(xml.contains("harness panic"), "{xml}");
        assert!(xml.contains("a bug in a stage"), "{xml}");
        assert!(xml.contains("stop local processes"), "{xml}");
    }
}
