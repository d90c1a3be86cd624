//! Every path ends the same way: [`supervise`] runs the pipeline in its own task so that a
//! signal (Ctrl-C, SIGTERM) or a panic can end it, and [`finish`] then tears down, decides the
//! verdict, writes the report and prints the summary, whatever the ending.
//!
//! Not here: the stages ([super::pipeline]); the exit code of an error ([crate::error]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::DEFAULT_INTERRUPT_STOP_TIMEOUT;
use crate::error::{exit_kind_of, ExitKind, Failure};
use crate::stack::{self, Level, Urgency};

use super::events::{Event, Stage, Verdict};
use super::run::Run;
use super::sinks;

/// After the second signal during teardown: how long the removal of what has stopped may still
/// take before the harness exits.
const LAST_REMOVAL: Duration = Duration::from_secs(1);

/// How the pipeline ended.
#[derive(Debug)]
pub enum Ending {
    /// It ran its course (its stages decide whether it passed).
    Completed,
    /// It stopped with an error; the error's kind is the exit code (no target: exit 3).
    Error(anyhow::Error),
    /// A signal ended it.
    Interrupted(&'static str),
    /// A stage panicked: the message.
    Panicked(String),
}

/// Runs `work` in its own task so that a signal or a panic can end it; how it ended.
pub async fn supervise<F>(work: F) -> Ending
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut pipeline = tokio::spawn(work);
    let mut signals = Signals::new();
    tokio::select! {
        joined = &mut pipeline => match joined {
            Ok(Ok(())) => Ending::Completed,
            Ok(Err(e)) => Ending::Error(e),
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
            crate::ui::say(format!("interrupted ({signal}): stopping what runs, tearing down"));
            pipeline.abort();
            let _ = pipeline.await;
            Ending::Interrupted(signal)
        }
    }
}

/// Teardown, the verdict, the report and the summary, whatever the ending; the command's result.
pub async fn finish(run: &Arc<Run>, ending: Ending) -> anyhow::Result<()> {
    // From here a signal no longer reaches the pipeline: each one raises the teardown's urgency
    // instead. After a signal containers get `stack.interrupt_stop_timeout_s`, then are killed;
    // after the next one what has not stopped is killed at once and the harness exits at the
    // latest a second later, removal finished or not; one more exits at once.
    let teardown_signals = Arc::new(AtomicUsize::new(0));
    let already_interrupted = matches!(ending, Ending::Interrupted(_));
    let (raise_urgency, urgency) = Urgency::channel(if already_interrupted {
        Level::Interrupted
    } else {
        Level::Graceful
    });
    let short = run
        .config
        .stack
        .as_ref()
        .map_or(DEFAULT_INTERRUPT_STOP_TIMEOUT, |s| {
            s.interrupt_stop_timeout_s.duration()
        });
    let _later_signals = AbortOnDrop(tokio::spawn({
        let teardown_signals = teardown_signals.clone();
        async move {
            let mut signals = Signals::new();
            loop {
                signals.next().await;
                teardown_signals.fetch_add(1, Ordering::SeqCst);
                match stack::stop::raise(&raise_urgency) {
                    Level::Graceful | Level::Interrupted => crate::ui::say(format!(
                        "interrupted during teardown: containers get {} to stop, then are killed \
                         (interrupt again to kill them now)",
                        crate::ui::duration(short)
                    )),
                    Level::Now => break,
                }
            }
            crate::ui::say(format!(
                "interrupted again: killing what has not stopped and removing it; exiting within {}",
                crate::ui::duration(LAST_REMOVAL)
            ));
            tokio::select! {
                _ = signals.next() => {}
                _ = tokio::time::sleep(LAST_REMOVAL) => {}
            }
            eprintln!(
                "exiting before teardown and the report are finished: what is left keeps its \
                 labels and its record; the next run's sweep or cargo xtask docker-down --all \
                 removes it"
            );
            std::process::exit(130);
        }
    }));
    if let Ending::Panicked(message) = &ending {
        run.emit(Event::Step {
            stage: Stage::Teardown,
            check: crate::report::Check::failed("harness panic", Duration::ZERO, message.clone()),
        });
    }
    if let Ending::Error(e) = &ending {
        if exit_kind_of(e) != ExitKind::Unavailable {
            run.emit(Event::Step {
                stage: Stage::Teardown,
                check: crate::report::Check::failed("gate error", Duration::ZERO, format!("{e:#}")),
            });
        }
    }
    let failed_before = run.failed() || !matches!(ending, Ending::Completed);
    super::teardown::teardown(run, failed_before, already_interrupted, &urgency).await;
    let ending = match ending {
        Ending::Completed | Ending::Error(_) | Ending::Panicked(_)
            if teardown_signals.load(Ordering::SeqCst) > 0 =>
        {
            Ending::Interrupted("a signal during teardown")
        }
        ending => ending,
    };
    // Processes dropped by an interruption get their kill before the harness exits.
    tokio::task::spawn_blocking(crate::process::finish_pending_kills)
        .await
        .ok();

    let verdict = match &ending {
        Ending::Interrupted(signal) => Verdict::Interrupted((*signal).to_owned()),
        Ending::Panicked(message) => Verdict::Panicked(message.clone()),
        Ending::Error(e) if exit_kind_of(e) == ExitKind::Unavailable => Verdict::Unavailable,
        Ending::Error(_) => Verdict::Failed,
        Ending::Completed if run.failed() => Verdict::Failed,
        Ending::Completed => Verdict::Passed,
    };
    let total = run.reporter.started().elapsed();
    run.emit(Event::Finished {
        verdict: verdict.clone(),
        total,
        overhead: overhead(&run.reporter.record(), total),
    });
    let record = run.reporter.record();
    let written = write_report(run, &record);
    let report = match (&written, &run.options.junit) {
        (Err(e), _) => sinks::summary::ReportWritten::Failed(format!("{e:#}")),
        (Ok(()), Some(path)) => sinks::summary::ReportWritten::At(path),
        (Ok(()), None) => sinks::summary::ReportWritten::None,
    };
    let summary = sinks::summary::render(&record, run.options.command, report);
    eprint!("{}", crate::junit::redact(&summary, &run.secrets()));
    for finding in regressions(run) {
        crate::ui::say(format!("regression: {finding}"));
    }
    for (test, rate) in quarantined(run, &record) {
        crate::ui::say(format!("quarantined: {test}: {rate}"));
    }
    // The gate's own pictures of the run: only a run of the suites has a report to look at.
    if run.options.until == super::run::Until::Suites && run.options.junit.is_some() {
        match super::artefacts::write(run, &record) {
            Ok(written) => crate::ui::say(format!(
                "report: {} · trace: {} (open in Perfetto or chrome://tracing) · logs: {}",
                written.report.display(),
                written.trace.display(),
                crate::state::Store::of(&run.config)
                    .run_dir(&run.run_id)
                    .display()
            )),
            Err(e) => crate::ui::say(format!("the HTML report and trace were not written: {e:#}")),
        }
    }
    github(run, &record);

    match ending {
        Ending::Interrupted(signal) => Err(Failure::Interrupted { signal }.into()),
        Ending::Error(e) => Err(e),
        Ending::Panicked(message) => {
            Err(Failure::check(format!("the harness panicked: {message}")).into())
        }
        Ending::Completed => {
            written?;
            if verdict == Verdict::Passed {
                Ok(())
            } else {
                Err(Failure::check(format!("{} failed", run.options.command)).into())
            }
        }
    }
}

/// The harness's own cost: total minus what it waited for (the target's processes, the stack,
/// the suites and teardown), each as its stage measured itself.
pub fn overhead(record: &super::events::Record, total: Duration) -> Duration {
    let spent: Duration = [Stage::Target, Stage::Stack, Stage::Suites, Stage::Teardown]
        .into_iter()
        .filter_map(|stage| record.stage(stage).map(|(elapsed, _)| elapsed))
        .sum();
    total.saturating_sub(spent)
}

fn write_report(run: &Run, record: &super::events::Record) -> anyhow::Result<()> {
    let Some(path) = &run.options.junit else {
        return Ok(());
    };
    let report = sinks::junit::report(
        record,
        sinks::junit::ReportMeta {
            name: format!("{} {}", run.options.command, run.config.project.name.0),
            secrets: &run.secrets(),
            shard: run
                .options
                .shard
                .map(|s| format!("{}/{}", s.index, s.count)),
            hostname: crate::junit::hostname(),
        },
    );
    crate::junit::write(&report, path)
}

/// This run's figures above the median of the runs before it (from the run history, which the
/// history sink has finished writing by the `Finished` event); none when the history is off or
/// cannot be read.
fn regressions(run: &Run) -> Vec<crate::history::analysis::Finding> {
    let config = &run.config;
    if !config.history.enabled {
        return Vec::new();
    }
    let path = crate::history::path_of(config);
    crate::history::Store::open(&path)
        .and_then(|store| store.findings(&run.run_id, crate::history::thresholds(&config.history)))
        .unwrap_or_default()
}

/// How many runs to reckon a quarantined test's pass rate over.
const QUARANTINE_RUNS: usize = 20;

/// Every quarantined test of the run with its pass rate in the history (this run included), so
/// that a quarantine is never forgotten; `None` for the rate when the history is off or cannot
/// be read.
fn quarantined(run: &Run, record: &super::events::Record) -> Vec<(String, String)> {
    let store = run
        .config
        .history
        .enabled
        .then(|| crate::history::Store::open(&crate::history::path_of(&run.config)).ok())
        .flatten();
    let mut lines = Vec::new();
    for suite in record.suites() {
        for case in suite.cases.iter().filter(|c| c.quarantined) {
            let test = sinks::history::test_id(&case.classname, &case.name);
            let rate = match &store {
                Some(store) => store
                    .pass_rate(&suite.name, &test, QUARANTINE_RUNS)
                    .map_or_else(|e| format!("no pass rate ({e:#})"), |rate| rate.to_string()),
                None => "no pass rate (the history is off)".to_owned(),
            };
            lines.push((format!("{}::{test}", suite.name), rate));
        }
    }
    lines
}

/// The GitHub step summary (when `GITHUB_STEP_SUMMARY` is set) and the annotations (when
/// `GITHUB_ACTIONS=true`).
fn github(run: &Run, record: &super::events::Record) {
    let secrets = run.secrets();
    if let Ok(path) = std::env::var("GITHUB_STEP_SUMMARY") {
        let markdown = sinks::github::markdown(record, run.options.junit.as_deref());
        use std::io::Write;
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
        {
            let _ = file.write_all(crate::junit::redact(&markdown, &secrets).as_bytes());
        }
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        // Workflow commands are read from stdout and stderr; under --json stdout is the object's.
        for line in sinks::github::annotations(record) {
            let line = crate::junit::redact(&line, &secrets);
            if run.options.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
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

/// Ctrl-C (SIGINT) and SIGTERM (on Windows Ctrl-C and Ctrl-Break), as one queue: from [`Signals::install`] on, each signal is handed
/// once to whoever waits next, however long after it came, so that none is lost before the
/// pipeline starts or between two waits.
pub struct Signals(());

/// The signals that came and were not taken yet.
static QUEUE: OnceLock<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<&'static str>>> =
    OnceLock::new();

impl Signals {
    /// Takes SIGINT and SIGTERM over from their default (ending the process): call it first
    /// thing in a command that runs the pipeline. Later calls do nothing. Needs the runtime.
    pub fn install() {
        QUEUE.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            #[cfg(unix)]
            {
                use tokio::signal::unix::{signal, SignalKind};
                for (kind, name) in [
                    (SignalKind::interrupt(), "SIGINT"),
                    (SignalKind::terminate(), "SIGTERM"),
                ] {
                    // Registered now, not when first awaited: from here on a signal is queued.
                    let Ok(mut stream) = signal(kind) else {
                        continue;
                    };
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        while stream.recv().await.is_some() {
                            if sender.send(name).is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            // On Windows: Ctrl-C, and Ctrl-Break (what a console sends on Ctrl+Break, and what
            // the harness sends its own children to interrupt them).
            #[cfg(windows)]
            {
                let interrupts = sender.clone();
                tokio::spawn(async move {
                    while tokio::signal::ctrl_c().await.is_ok() {
                        if interrupts.send("Ctrl-C").is_err() {
                            break;
                        }
                    }
                });
                if let Ok(mut ctrl_break) = tokio::signal::windows::ctrl_break() {
                    tokio::spawn(async move {
                        while ctrl_break.recv().await.is_some() {
                            if sender.send("Ctrl-Break").is_err() {
                                break;
                            }
                        }
                    });
                }
            }
            tokio::sync::Mutex::new(receiver)
        });
    }

    pub fn new() -> Signals {
        Signals::install();
        Signals(())
    }

    /// Waits for the next signal and names it. Cancel-safe: a wait given up takes none.
    pub async fn next(&mut self) -> &'static str {
        Signals::install();
        let Some(queue) = QUEUE.get() else {
            return std::future::pending().await;
        };
        match queue.lock().await.recv().await {
            Some(name) => name,
            None => std::future::pending().await,
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

// The stage's process is `sleep`, and the check that it is gone is `kill -0`.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::flags::TargetChoice;
    use crate::gate::reporter::Reporter;
    use crate::gate::run::{lock, Options, Until};

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
        let options = Options {
            junit: Some(junit.clone()),
            ..Options::new("mission-critical", TargetChoice::Local, Until::Suites)
        };
        let run = Arc::new(Run::new(
            config,
            options,
            crate::state::new_run_id(),
            Arc::new(Reporter::new(Vec::new())),
            Default::default(),
        ));
        let (pid_sender, pid_receiver) = std::sync::mpsc::channel();
        let work = {
            let run = run.clone();
            async move {
                let local = crate::target::start_local(
                    &run.config,
                    None,
                    &std::collections::BTreeMap::new(),
                    &crate::progress::Progress::silent(),
                )
                .await?;
                pid_sender.send(local.processes[0].pid().unwrap()).unwrap();
                lock(&run.resources).local = Some(local);
                panic!("a bug in a stage");
            }
        };
        let ending = supervise(work).await;
        assert!(
            matches!(&ending, Ending::Panicked(m) if m == "a bug in a stage"),
            "{ending:?}"
        );
        let pid = pid_receiver.recv().unwrap() as libc::pid_t;

        let result = finish(&run, ending).await;
        let error = result.expect_err("a panic fails the gate");
        assert_eq!(exit_kind_of(&error), ExitKind::Failed, "{error:#}");
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
