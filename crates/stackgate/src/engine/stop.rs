//! Stopping the engine, only when the run store says the harness started it: the dockerd it
//! spawned (SIGTERM, then waiting for it to exit), the service manager it used, or the desktop
//! engine's own way (quitting Docker Desktop, `colima stop`).
//!
//! Not here: stopping containers or stacks ([`crate::stack`]).

use std::time::{Duration, Instant};

use anyhow::Context;

use super::os::{self, process_gone};
use crate::config::Config;
use crate::process::Cmd;
use crate::progress::Progress;
use crate::report::Check;
use crate::state;
use crate::ui;

/// Stops the engine only when state.json says the harness started it; otherwise says why not.
/// The wait for it to exit is said through `progress`.
pub async fn stop_started_engine(config: &Config, progress: &Progress) -> anyhow::Result<Check> {
    let began = Instant::now();
    let work_dir = config.work_dir();
    let recorded = state::Store::new(&work_dir).read()?.engine;
    let Some(recorded) = recorded.filter(|e| e.started_by_harness) else {
        return Ok(Check::skipped(
            "engine stop",
            format!(
                "the engine was not started by the harness (no record in {}); it was left alone",
                state::Store::new(&work_dir).path().display()
            ),
        ));
    };
    let method = recorded.start_method.clone().unwrap_or_default();
    let deadline = config.engine.start_timeout_s.duration();
    let result: anyhow::Result<String> = match (method.as_str(), recorded.pid) {
        ("dockerd", Some(pid)) => stop_pid(pid, deadline, progress).await,
        ("systemctl", _) => run_stop(&["systemctl", "stop", "docker"], deadline, progress).await,
        ("service", _) => run_stop(&["service", "docker", "stop"], deadline, progress).await,
        (other, pid) => match super::desktop::stop_argv(other) {
            Some(argv) => run_stop(&argv, deadline, progress).await,
            None => Err(anyhow::anyhow!(
                "the harness does not know how to stop an engine started with `{other}` (pid {pid:?})"
            )),
        },
    };
    match result {
        Ok(detail) => {
            state::Store::new(&work_dir).update(|s| s.engine = None)?;
            Ok(Check::passed(
                "engine stop",
                began.elapsed(),
                format!(
                    "{} (started by the harness with `{method}`): {detail}",
                    recorded.host
                ),
            ))
        }
        Err(e) => Ok(Check::failed(
            "engine stop",
            began.elapsed(),
            format!("{}: {e:#}", recorded.host),
        )),
    }
}

/// SIGTERM to the dockerd the harness spawned (checked by name first), then waits for it to exit:
/// it stops its containers first.
async fn stop_pid(pid: u32, deadline: Duration, progress: &Progress) -> anyhow::Result<String> {
    if process_gone(pid) {
        return Ok(format!("pid {pid} had already exited"));
    }
    let comm = os::command_name(pid);
    anyhow::ensure!(
        comm == "dockerd",
        "pid {pid} is `{comm}`, not the dockerd the harness started; it was left alone"
    );
    os::terminate(pid).with_context(|| format!("cannot signal pid {pid}"))?;
    let began = Instant::now();
    let mut throttle = progress.throttled();
    while !process_gone(pid) {
        if began.elapsed() >= deadline {
            anyhow::bail!(
                "dockerd pid {pid} did not exit within {} of SIGTERM",
                ui::duration(deadline)
            );
        }
        throttle.say(|| {
            format!(
                "waiting for dockerd pid {pid} to exit (it stops its containers first; {} of {})",
                ui::duration(began.elapsed()),
                ui::duration(deadline)
            )
        });
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(format!(
        "sent SIGTERM to pid {pid}; it exited after {}",
        ui::duration(began.elapsed())
    ))
}

/// A service manager's stop command, within `deadline` (killed at once at it, as the start is).
async fn run_stop<S: AsRef<str>>(
    argv: &[S],
    deadline: Duration,
    progress: &Progress,
) -> anyhow::Result<String> {
    let shown = argv.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
    progress.say(format!("stopping the engine: `{shown}`"));
    let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let finished = Cmd::from_argv(&argv)?
        .on_deadline(&[])
        .output(deadline)
        .await?;
    anyhow::ensure!(
        !finished.timed_out,
        "`{shown}` did not finish within {}; it was killed",
        ui::duration(deadline)
    );
    anyhow::ensure!(finished.success(), "`{shown}` failed: {}", finished.tail(5));
    Ok(format!("`{shown}` succeeded"))
}
