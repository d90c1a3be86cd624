//! Every path ends the same way: [`supervise`] runs the pipeline in its own task so that a
//! signal (Ctrl-C, SIGTERM) or a panic can end it, and [`finish`] then tears down and decides
//! the verdict, whatever the ending ([`Ended`]). What a person reads of it (the summary, the
//! reports) the command has the sinks render from the record.
//!
//! Not here: the stages ([super::pipeline]); the reports ([super::sinks::ending]); the exit code
//! of an ending ([crate::commands::pipeline]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::config::DEFAULT_INTERRUPT_STOP_TIMEOUT;
use crate::error::{exit_kind_of, ExitKind};
use crate::stack::{self, Level, Urgency};

use super::context::{Context, Ledger};
use super::events::{Event, Stage, Verdict};
use super::stages::teardown::RunEnd;

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

/// How the run ended, once torn down: the ending (a signal during teardown makes it an
/// interruption) and the verdict the `Finished` event recorded.
#[derive(Debug)]
pub struct Ended {
    pub ending: Ending,
    pub verdict: Verdict,
}

/// Runs `work` in its own task so that a signal or a panic can end it; how it ended, and its
/// output when it completed (the default otherwise).
pub async fn supervise<F, T>(run: &Context, work: F) -> (Ending, T)
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Default + Send + 'static,
{
    let mut pipeline = tokio::spawn(work);
    let mut signals = Signals::new();
    tokio::select! {
        joined = &mut pipeline => match joined {
            Ok(Ok(output)) => (Ending::Completed, output),
            Ok(Err(e)) => (Ending::Error(e), T::default()),
            Err(join_error) if join_error.is_panic() => {
                let payload = join_error.into_panic();
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "unknown panic".to_owned());
                (Ending::Panicked(message), T::default())
            }
            Err(_) => (Ending::Interrupted("cancellation"), T::default()),
        },
        signal = signals.next() => {
            run.emit(Event::Say(format!("interrupted ({signal}): stopping what runs, tearing down")));
            pipeline.abort();
            let _ = pipeline.await;
            (Ending::Interrupted(signal), T::default())
        }
    }
}

/// Teardown and the verdict (the `Finished` event), whatever the ending.
pub async fn finish(run: &Arc<Context>, ledger: &Ledger, ending: Ending) -> Ended {
    // From here a signal no longer reaches the pipeline: each one raises the teardown's urgency
    // instead (see [`later_signals`]).
    let teardown_signals = Arc::new(AtomicUsize::new(0));
    let already_interrupted = matches!(ending, Ending::Interrupted(_));
    let (raise_urgency, urgency) = Urgency::channel(if already_interrupted {
        Level::Interrupted
    } else {
        Level::Graceful
    });
    let _later_signals = later_signals(run, raise_urgency, teardown_signals.clone());
    record_ending(run, &ending);
    let end = RunEnd {
        failed: run.failed() || !matches!(ending, Ending::Completed),
        interrupted: already_interrupted,
    };
    super::stages::teardown::teardown(run, ledger, end, &urgency).await;
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
    Ended { ending, verdict }
}

/// A panic or an error of the harness is a failed step of teardown's, so that the report names
/// it (no target is not: its own stage says so).
fn record_ending(run: &Context, ending: &Ending) {
    if let Ending::Panicked(message) = ending {
        run.emit(Event::Step {
            stage: Stage::Teardown,
            check: crate::report::Check::failed("harness panic", Duration::ZERO, message.clone()),
        });
    }
    if let Ending::Error(e) = ending {
        if exit_kind_of(e) != ExitKind::Unavailable {
            run.emit(Event::Step {
                stage: Stage::Teardown,
                check: crate::report::Check::failed("gate error", Duration::ZERO, format!("{e:#}")),
            });
        }
    }
}

/// The signals that come during teardown, each raising its urgency: after a signal containers
/// get `stack.interrupt_stop_timeout_s`, then are killed; after the next one what has not
/// stopped is killed at once and the harness exits at the latest a second later, removal
/// finished or not; one more exits at once. Counted in `count`; stops when dropped.
fn later_signals(
    run: &Arc<Context>,
    raise_urgency: tokio::sync::watch::Sender<Level>,
    count: Arc<AtomicUsize>,
) -> AbortOnDrop {
    let short = run
        .config
        .stack
        .as_ref()
        .map_or(DEFAULT_INTERRUPT_STOP_TIMEOUT, |s| {
            s.interrupt_stop_timeout_s.duration()
        });
    let run = run.clone();
    AbortOnDrop(tokio::spawn(async move {
        let mut signals = Signals::new();
        loop {
            signals.next().await;
            count.fetch_add(1, Ordering::SeqCst);
            match stack::stop::raise(&raise_urgency) {
                Level::Graceful | Level::Interrupted => run.emit(Event::Say(format!(
                    "interrupted during teardown: containers get {} to stop, then are killed \
                     (interrupt again to kill them now)",
                    crate::ui::duration(short)
                ))),
                Level::Now => break,
            }
        }
        run.emit(Event::Say(format!(
            "interrupted again: killing what has not stopped and removing it; exiting within {}",
            crate::ui::duration(LAST_REMOVAL)
        )));
        tokio::select! {
            _ = signals.next() => {}
            _ = tokio::time::sleep(LAST_REMOVAL) => {}
        }
        run.emit(Event::Say(
            "exiting before teardown and the report are finished: what is left keeps its \
             labels and its record; the next run's sweep or cargo xtask docker-down --all \
             removes it"
                .to_owned(),
        ));
        std::process::exit(130);
    }))
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
