//! The engine, watched for the whole run: its event stream held open and a ping every quarter
//! second. When the stream ends or a ping fails, the run says so at once (one `engine lost at T`
//! error case), asks the running suites to stop (they end as at their deadline and list what
//! they did not reach), and gives the stages a bounded grace to end on their own before they are
//! dropped; teardown then tries to restore the engine and removes the stack once it is back
//! ([`recover`]), all within [`BUDGET`](super::lost::BUDGET) of the loss.
//!
//! Not here: restoring the engine ([crate::engine]), stopping a runner ([crate::suites]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::engine::Engine;
use crate::report::Check;
use crate::ui;

use super::context::Context;
use super::events::{Event, Stage};
use super::lost::{Lost, BUDGET};

/// Time between pings while the last one answered.
const PING_EVERY: Duration = Duration::from_millis(250);
/// A ping unanswered this long means a hung engine. Longer than the stream's and a refused
/// ping's (both at once): a loaded machine must not read as a lost engine.
const PING_DEADLINE: Duration = Duration::from_secs(2);
/// How long the stages get after the loss to end on their own (a suite's SIGINT grace, then the
/// listing of what did not run) before they are dropped.
pub const STAGES_GRACE: Duration = Duration::from_secs(8);
/// What teardown keeps for removing the stack once the engine is back.
const TEARDOWN_SHARE: Duration = Duration::from_secs(5);

/// The watcher task; dropping it stops the watching (teardown changes the engine on purpose).
pub struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts watching `engine` for this run.
pub fn watch(run: &Arc<Context>, engine: &Engine) -> Watching {
    let run = run.clone();
    let docker = engine.docker.clone();
    let host = engine.info.host.clone();
    Watching(tokio::spawn(async move {
        let why = watch_until_lost(&docker).await;
        record_loss(&run, host, why);
    }))
}

/// Holds the event stream open and pings; returns what gave the loss away.
async fn watch_until_lost(docker: &bollard::Docker) -> String {
    // Only daemon events (a reload): the stream is held for its end, not for what it carries.
    let filters = std::collections::HashMap::from([("type".to_owned(), vec!["daemon".to_owned()])]);
    let mut events = docker.events(Some(
        bollard::query_parameters::EventsOptionsBuilder::new()
            .filters(&filters)
            .build(),
    ));
    let mut next_ping = tokio::time::Instant::now() + PING_EVERY;
    loop {
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("its event stream failed: {}", crate::engine::short_error(&e)),
                None => return "its event stream ended".to_owned(),
            },
            () = tokio::time::sleep_until(next_ping) => {
                match tokio::time::timeout(PING_DEADLINE, docker.ping()).await {
                    Ok(Ok(_)) => next_ping = tokio::time::Instant::now() + PING_EVERY,
                    Ok(Err(e)) => return format!("a ping failed: {}", crate::engine::short_error(&e)),
                    Err(_) => return format!("a ping got no answer within {}", ui::duration(PING_DEADLINE)),
                }
            }
        }
    }
}

/// Says so (one error case), remembers it, and asks the suites to stop.
fn record_loss(run: &Context, host: String, why: String) {
    let lost = Lost {
        after: run.reporter.started().elapsed(),
        noticed: Instant::now(),
        clock: ui::clock(),
        host,
        why,
    };
    run.emit(Event::Step {
        stage: Stage::Engine,
        check: Check::errored(
            lost.reason(),
            Duration::ZERO,
            format!(
                "the engine at {} stopped answering at {} ({} into the run): {}; the running suites were stopped, what did not run is listed skipped, and teardown restores the engine and removes the stack",
                lost.host,
                lost.clock,
                ui::duration(lost.after),
                lost.why
            ),
        ),
    });
    run.lose_engine(lost);
}

/// Runs the stages until they end, or, once the engine is lost, for at most [`STAGES_GRACE`]
/// more (the suites stop and list what they did not reach); what is still running then is
/// dropped (its processes stopped with their groups) and reported skipped.
pub async fn guarded<F, T>(run: Arc<Context>, stages: F) -> anyhow::Result<T>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
    T: Default,
{
    tokio::pin!(stages);
    let mut lost = run.stop_suites.subscribe();
    tokio::select! {
        result = &mut stages => return result,
        _ = lost.wait_for(Option::is_some) => {}
    }
    match tokio::time::timeout(STAGES_GRACE, &mut stages).await {
        Ok(result) => result,
        Err(_) => {
            let reason = run
                .lost_reason()
                .unwrap_or_else(|| "the engine was lost".to_owned());
            run.note(format!(
                "the stages did not end within {} of the engine's loss: stopped",
                ui::duration(STAGES_GRACE)
            ));
            for stage in Stage::ALL
                .into_iter()
                .filter(|s| *s != Stage::Teardown && *s != Stage::Preflight)
            {
                run.skip(stage, &reason);
            }
            Ok(T::default())
        }
    }
}

/// Teardown's first step after a loss: the engine restored as at the start, within the loss's
/// budget (minus what removing the stack needs). `true` when it answers again.
pub async fn recover(
    run: &Context,
    lost: &Lost,
    clock: &mut super::context::StageClock<'_>,
) -> bool {
    let began = Instant::now();
    let deadline = lost.deadline().saturating_duration_since(Instant::now());
    let deadline = deadline.saturating_sub(TEARDOWN_SHARE);
    let options = crate::engine::EnsureOptions { install: false };
    let progress = {
        let reporter = run.reporter.clone();
        crate::progress::Progress::to(move |message| {
            reporter.emit(Event::Progress {
                stage: Stage::Teardown,
                message: message.to_owned(),
            })
        })
    };
    let restoring = crate::engine::restore(&run.config, &options, &progress);
    match tokio::time::timeout(deadline, restoring).await {
        Ok(Ok(restoration)) => {
            let how = restoration
                .start_method
                .map(|m| format!("started again with `{m}`"))
                .unwrap_or_else(|| "answering again".to_owned());
            clock.step(Check::passed(
                "engine restored",
                began.elapsed(),
                format!(
                    "{} {how}, {} after the loss",
                    restoration.engine.info.host,
                    ui::duration(lost.noticed.elapsed())
                ),
            ));
            true
        }
        Ok(Err(e)) => {
            clock.step(Check::failed(
                "engine restored",
                began.elapsed(),
                format!("{e:#}"),
            ));
            false
        }
        Err(_) => {
            clock.step(Check::failed(
                "engine restored",
                began.elapsed(),
                format!(
                    "the engine at {} did not answer within {} of its loss",
                    lost.host,
                    ui::duration(BUDGET - TEARDOWN_SHARE)
                ),
            ));
            false
        }
    }
}
