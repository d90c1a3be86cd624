//! What the commands that run the gate's pipeline share: the run's context with its live sinks
//! ([`context`]), the pipeline run and ended ([`run`]: the reports written, the summary printed,
//! the ending turned into the command's result), and `ci`'s own preparation
//! ([`engine_and_images`]).
//!
//! Not here: the stages ([crate::gate::stages]) or their order ([crate::gate::pipeline]).

use std::path::Path;
use std::sync::Arc;

use crate::error::Failure;
use crate::flags::TargetChoice;
use crate::gate::context::{Context, Options, Secrets, Until};
use crate::gate::events::Verdict;
use crate::gate::pipeline::PipelineOutput;
use crate::gate::reporter::{LiveSink, Reporter};
use crate::gate::sinks;
use crate::gate::supervise::{Ended, Ending};
use crate::report::Outcome;
use crate::ui;

/// A run's context with its live sinks (the terminal, the event stream under the run's
/// directory, the history), with the project's facts recorded (run id, git commit).
pub async fn context(config: crate::config::Config, options: Options) -> Arc<Context> {
    let run_id = crate::state::new_run_id();
    let secrets = Secrets::default();
    let mut live: Vec<Box<dyn LiveSink>> = vec![Box::new(sinks::terminal::Terminal::default())];
    let events = crate::state::Store::of(&config)
        .run_dir(&run_id)
        .join("events.jsonl");
    match sinks::stream::Stream::create(&events, secrets.clone()) {
        Ok(stream) => live.push(Box::new(stream)),
        Err(e) => ui::say(format!("no event stream for this run: {e:#}")),
    }
    if config.history.enabled {
        live.push(Box::new(history_sink(&config, &options, &run_id)));
    }
    let run = Arc::new(Context::new(
        config,
        options,
        run_id,
        Arc::new(Reporter::new(live)),
        secrets,
    ));
    ui::say(format!(
        "{}: run {} ({})",
        run.options.command,
        run.run_id,
        run.config.path.display()
    ));
    run.property("run_id", run.run_id.clone());
    if let Some(commit) = git_commit(&run.config.root).await {
        run.property("git_commit", commit);
    }
    run
}

fn history_sink(
    config: &crate::config::Config,
    options: &Options,
    run_id: &str,
) -> sinks::history::History {
    sinks::history::History::start(sinks::history::HistoryTarget {
        path: crate::history::path_of(config),
        keep_runs: config.history.keep_runs.0,
        run: crate::history::RunStart {
            id: run_id.to_owned(),
            command: options.command.to_owned(),
            started_ms: crate::clock::unix_ms() as i64,
            config_hash: crate::history::config_hash(
                &std::fs::read_to_string(&config.path).unwrap_or_default(),
            ),
        },
        root: config.root.clone(),
    })
}

/// Runs the pipeline, then writes the reports and prints the summary; the command's result
/// (its exit code) and what the stages handed on.
pub async fn run(run: &Arc<Context>) -> (anyhow::Result<()>, PipelineOutput) {
    let (ended, output) = crate::gate::pipeline::run(run.clone()).await;
    let written = sinks::ending::report(run);
    (result(run, ended, written), output)
}

/// The command's result for how the run ended: the error of an ending that was not a completed
/// run; for a completed one, a report that could not be written, or the verdict.
fn result(run: &Context, ended: Ended, written: anyhow::Result<()>) -> anyhow::Result<()> {
    match ended.ending {
        Ending::Interrupted(signal) => Err(Failure::Interrupted { signal }.into()),
        Ending::Error(e) => Err(e),
        Ending::Panicked(message) => {
            Err(Failure::check(format!("the harness panicked: {message}")).into())
        }
        Ending::Completed => {
            written?;
            if ended.verdict == Verdict::Passed {
                Ok(())
            } else {
                Err(Failure::check(format!("{} failed", run.options.command)).into())
            }
        }
    }
}

/// The engine and the images, as the gate's own stages make them: what `ci` goes on with.
/// Returns the engine and the stages' steps.
pub async fn engine_and_images(
    config: crate::config::Config,
    install: bool,
) -> anyhow::Result<(crate::engine::Engine, Vec<crate::report::Check>)> {
    let options = Options {
        install,
        ..Options::new("ci", TargetChoice::Docker, Until::Images)
    };
    let (result, output) = run(&context(config, options).await).await;
    result?;
    let found = output
        .engine
        .ok_or_else(|| Failure::unavailable("no engine answered", None))?;
    let images = output.images.map(|i| i.steps).unwrap_or_default();
    let steps = found
        .checks
        .into_iter()
        .chain(images)
        .filter(|c| c.outcome != Outcome::Skipped)
        .collect();
    Ok((found.engine, steps))
}

async fn git_commit(root: &Path) -> Option<String> {
    let finished = crate::process::Cmd::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(root)
        .run(std::time::Duration::from_secs(10))
        .await
        .ok()?;
    Some(finished.stdout.trim().to_owned())
}

// The stage's process is `sleep`, and the check that it is gone is `kill -0`.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::error::{exit_kind_of, ExitKind};
    use crate::gate::context::Ledger;
    use crate::gate::supervise::{finish, supervise};

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
        let run = Arc::new(Context::new(
            config,
            options,
            crate::state::new_run_id(),
            Arc::new(Reporter::new(Vec::new())),
            Default::default(),
        ));
        let (pid_sender, pid_receiver) = std::sync::mpsc::channel();
        let ledger = Arc::new(Ledger::default());
        let work = {
            let run = run.clone();
            let ledger = ledger.clone();
            async move {
                let local = crate::target::start_local(
                    &run.config,
                    None,
                    &std::collections::BTreeMap::new(),
                    &crate::progress::Progress::silent(),
                )
                .await?;
                pid_sender.send(local.processes[0].pid().unwrap()).unwrap();
                ledger.record(|r| r.local = Some(local));
                panic!("a bug in a stage");
                #[allow(unreachable_code)]
                Ok(())
            }
        };
        let (ending, ()) = supervise(&run, work).await;
        assert!(
            matches!(&ending, Ending::Panicked(m) if m == "a bug in a stage"),
            "{ending:?}"
        );
        let pid = pid_receiver.recv().unwrap() as libc::pid_t;

        let ended = finish(&run, &ledger, ending).await;
        let written = sinks::ending::report(&run);
        let result = result(&run, ended, written);
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
