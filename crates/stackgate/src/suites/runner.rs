//! One run of a suite's runner process, the skeleton pytest and nextest share: its files
//! prepared ([`prepare`]), its process started with the suite's environment
//! ([super::child_env]) and its log, its tests followed as they run, ended at its deadline or at
//! the suites' [`Stop`](super::Stop) ([`launch`]), and what it left read into the suite's
//! [`SuiteResult`] ([`Ran`]): its JUnit report, why the tests it did not finish did not, and what
//! its end means. Each runner supplies only what differs: its command line and variables
//! ([`Launch`]), where its live events come from ([`Live`]), which tests the report should hold
//! and what its exit code means.
//!
//! Not here: the runners themselves ([super::pytest], [super::nextest]), retries and quarantine
//! ([super::retry], around every run of either), processes and their groups ([crate::process]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::live::{Follower, TestEvent};
use super::{child_env, errored, PythonEnv, Stop, SuiteEnv, SuiteRun, INTERRUPT_GRACE};
use crate::config::{Config, SuiteCfg};
use crate::junit::{self, Case, SuiteResult, OUTPUT_LIMIT};
use crate::process::{Cmd, Finished, Signal, Stream, KILL_GRACE};

/// A runner's process as every suite step runs it: its whole output kept up to
/// [`junit::OUTPUT_LIMIT`] (the tail), and at the deadline SIGINT, [`INTERRUPT_GRACE`], SIGTERM,
/// [`KILL_GRACE`], SIGKILL, so that pytest and nextest still write what they have.
pub(super) fn command(command: Cmd) -> Cmd {
    command.keep_tail(OUTPUT_LIMIT).on_deadline(&[
        (Signal::Interrupt, INTERRUPT_GRACE),
        (Signal::Terminate, KILL_GRACE),
    ])
}

/// What a runner printed, both streams as they came, as a suite keeps it: the last
/// [`junit::OUTPUT_LIMIT`] bytes, after a line saying that the rest was cut.
pub(super) fn printed(run: &Finished) -> String {
    let text = junit::keep_tail(&run.combined, OUTPUT_LIMIT);
    if run.dropped > 0 && !text.starts_with("[output cut") {
        format!(
            "[output cut: {} earlier bytes dropped]\n{text}",
            run.dropped
        )
    } else {
        text
    }
}

/// The command as the suite's output and errors show it, quoted where a shell would split it.
pub(super) fn command_line(program: &Path, args: &[String]) -> String {
    let mut line = program.display().to_string();
    for arg in args {
        line.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
            line.push_str(&format!("{arg:?}"));
        } else {
            line.push_str(arg);
        }
    }
    line
}

/// Why the tests a stopped run did not reach were not run: the stop's reason.
pub(super) fn stopped_reason(env: &SuiteEnv) -> String {
    env.stop
        .as_ref()
        .and_then(Stop::reason)
        .unwrap_or_else(|| "the suites were stopped".to_owned())
}

/// Puts `problem` in front of any error the suite already has.
pub(super) fn add_error(result: &mut SuiteResult, problem: String) {
    result.error = Some(match result.error.take() {
        Some(earlier) => format!("{problem}; {earlier}"),
        None => problem,
    });
}

/// Makes the suite's results directory `dir`, then the runner's own files in it (`files`);
/// `Some`: they could not be made, and the suite's result says why.
pub(super) fn prepare(
    suite: &SuiteCfg,
    dir: &Path,
    files: impl FnOnce() -> anyhow::Result<()>,
) -> Option<SuiteResult> {
    let prepared = std::fs::create_dir_all(dir)
        .map_err(anyhow::Error::from)
        .and_then(|()| files());
    let error = prepared.err()?;
    Some(errored(
        suite,
        format!("cannot prepare {}: {error:#}", dir.display()),
        "",
    ))
}

/// Reads one line of a runner's output into the event it stands for (`None`: not an event).
pub(super) type ReadLine = Box<dyn Fn(&str) -> Option<TestEvent> + Send + Sync>;

/// Where a runner's tests come from while it runs, when the run has a live sink.
pub(super) enum Live {
    /// Not followed (a collection).
    Off,
    /// The lines a plugin appends to this file (pytest's), read every so often ([Follower]).
    File(PathBuf),
    /// The runner's stdout, a line at a time, each read by this (nextest's libtest-json).
    Stdout(ReadLine),
}

/// The runner's own part of its process.
pub(super) struct Launch<'a> {
    pub(super) program: PathBuf,
    pub(super) args: Vec<String>,
    /// The venv a pytest runs in (its variables, [super::child_env]).
    pub(super) py: Option<&'a PythonEnv>,
    /// The runner's own variables, after the suite's: set, or (`None`) removed from those the
    /// harness inherited.
    pub(super) vars: Vec<(&'static str, Option<OsString>)>,
    /// Where its whole output is kept.
    pub(super) log: PathBuf,
    pub(super) live: Live,
    /// How long it may run.
    pub(super) deadline: Duration,
}

/// Runs a runner's process, in the repository, to its end, its deadline or the suites' [`Stop`],
/// handing its tests to the run's live sink as they start and end; `Err`: the suite's result
/// when it could not start.
pub(super) async fn launch(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
    launch: Launch<'_>,
) -> Result<Ran, SuiteResult> {
    let line = command_line(&launch.program, &launch.args);
    let mut cmd = command(Cmd::new(&launch.program))
        .args(&launch.args)
        .current_dir(&config.root)
        .envs(child_env(suite, env, launch.py))
        .log_to(&launch.log);
    for (key, value) in launch.vars {
        cmd = match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
    let mut follower = None;
    match (launch.live, suite_run.live.clone()) {
        (Live::File(path), Some(sink)) => {
            follower = Some(Follower::start(path, suite_run.repo_root.clone(), sink));
        }
        (Live::Stdout(read), Some(sink)) => {
            cmd = cmd.on_line(Arc::new(move |stream, line| {
                if stream == Stream::Stdout {
                    if let Some(event) = read(line) {
                        sink(event);
                    }
                }
            }));
        }
        _ => {}
    }
    let run = wait(cmd, launch.deadline, env).await;
    if let Some(follower) = follower {
        follower.finish().await;
    }
    match run {
        Ok(run) => Ok(Ran {
            output: format!("$ {line}\n{}", printed(&run)),
            run,
        }),
        Err(e) => Err(errored(
            suite,
            format!("cannot run `{line}`: {}", e.root_cause()),
            "",
        )),
    }
}

/// Runs a runner's command to its end, its deadline, or the suites' [`Stop`].
async fn wait(command: Cmd, deadline: Duration, env: &SuiteEnv) -> anyhow::Result<Finished> {
    let stop = env.stop.clone();
    command
        .spawn()?
        .wait_or_stop(deadline, async move {
            match stop {
                Some(stop) => stop.requested().await,
                None => std::future::pending().await,
            }
        })
        .await
}

/// A runner's process at its end, and what the suite keeps of its output.
pub(super) struct Ran {
    pub(super) run: Finished,
    /// `$ <command line>`, then what it printed ([printed]).
    output: String,
}

impl Ran {
    /// The cases of the runner's JUnit report at `path`: none when it wrote none; none, and why
    /// in `result`'s error, when it cannot be read.
    pub(super) fn report(&self, path: &Path, result: &mut SuiteResult) -> Vec<Case> {
        match std::fs::read_to_string(path) {
            Ok(xml) => junit::parse_cases(&xml).unwrap_or_else(|e| {
                result.error = Some(format!("cannot read {}: {e:#}", path.display()));
                Vec::new()
            }),
            Err(_) => Vec::new(),
        }
    }

    /// Why a test the report lacks did not finish, when the run was cut short: its deadline
    /// (the suite's `deadline`), or the suites' stop.
    pub(super) fn cut_short(&self, deadline: Duration, env: &SuiteEnv) -> Option<String> {
        if self.run.timed_out {
            Some(format!(
                "not finished: the suite timed out after {}s",
                deadline.as_secs()
            ))
        } else if self.run.stopped {
            Some(stopped_reason(env))
        } else {
            None
        }
    }

    /// What went wrong with the suite as its run ended: it timed out; nothing when it was
    /// stopped (whoever stopped it reports why: the gate, one case for the lost engine); else
    /// what the runner's `exit` makes of its end.
    pub(super) fn problem(
        &self,
        deadline: Duration,
        exit: impl FnOnce(&Finished) -> Option<String>,
    ) -> Option<String> {
        if self.run.timed_out {
            Some(format!("timed out after {}s", deadline.as_secs()))
        } else if self.run.stopped {
            None
        } else {
            exit(&self.run)
        }
    }

    /// The suite's result: `problem` in front of any error it has, and the runner's output.
    pub(super) fn finish(self, mut result: SuiteResult, problem: Option<String>) -> SuiteResult {
        if let Some(problem) = problem {
            add_error(&mut result, problem);
        }
        result.output = Some(self.output);
        result
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_runner_keeps_the_tail_of_its_output_and_says_what_was_cut() {
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' a; printf END",
            3 * OUTPUT_LIMIT
        );
        let run = command(Cmd::new("sh").arg("-c").arg(script))
            .run(Duration::from_secs(60))
            .await
            .unwrap();
        let text = printed(&run);
        assert!(text.ends_with("aEND"), "{}", &text[text.len() - 20..]);
        assert!(text.starts_with("[output cut"), "{}", &text[..80]);
        assert!(text.len() < OUTPUT_LIMIT + 200, "{}", text.len());
    }

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = command_line(
            Path::new("/venv/bin/python"),
            &[
                "-m".into(),
                "not docker and not destructive".into(),
                String::new(),
            ],
        );
        assert_eq!(
            line,
            r#"/venv/bin/python -m "not docker and not destructive" """#
        );
    }
}
