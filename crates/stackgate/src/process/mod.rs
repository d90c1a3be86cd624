//! The one process runner: every program the harness starts (compose, dockerd, pip, pytest,
//! nextest, the local target's services) runs through [`Cmd`] and [`Process`]. A process gets its
//! own process group (a Job object on Windows), a deadline, captured output with a bounded tail
//! (optionally copied to a log file and handed out line by line), and is stopped with its whole
//! group when it times out or is dropped. Process groups are created and signalled here only.
//!
//! Not here: what a program's output means (compose, suites), or when to run it.
//!
//! Why `tokio::process` and not `duct` (named in the project's first package list): the harness
//! waits on children together with engine events, signals and deadlines in one `select!`, which
//! needs an async child; and a deadline or Ctrl-C must end a runner's whole tree (pytest workers,
//! compose's helpers), which needs a process group we create and signal ourselves. `duct` gives
//! neither without a thread per child and its own kill that reaches only the direct child.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

/// After a terminate request, before the kill (a deadline passed, the run was dropped).
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Output kept per stream when the caller does not say: the tail, where errors usually are.
pub const DEFAULT_TAIL: usize = 4 * 1024 * 1024;

/// What the harness asks a process group to do. Mapped to signals on Unix; on Windows an
/// interrupt is a Ctrl-Break to the group and terminate/kill end the Job object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: runners write their reports and exit.
    Interrupt,
    /// SIGTERM: please exit now.
    Terminate,
    /// SIGKILL: gone.
    Kill,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Receives each complete line a process prints, as it prints it (live progress).
pub type LineSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

/// Where a stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    /// Read by the harness: kept (its tail), logged, handed to the line sink.
    Capture,
    /// Written to the harness's stderr, for people (an install, a build the user watches).
    ToStderr,
    /// A pipe the caller reads itself ([`Process::take_stdout`]): bytes, not lines.
    Handed,
    /// Dropped.
    Null,
    /// Straight into the log file (no pipe through the harness): see [`Cmd::output_to_file`].
    File,
}

/// A program to run, described before it starts. Arguments are arguments: nothing goes through
/// a shell.
#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    env_remove: Vec<OsString>,
    dir: Option<PathBuf>,
    stdout: Output,
    stderr: Output,
    tail: usize,
    log: Option<PathBuf>,
    lines: Option<LineSink>,
    /// What a deadline sends, in order, each followed by its grace; a kill always ends it.
    on_deadline: Vec<(Signal, Duration)>,
    /// What stopping (drop, [`Process::stop`]) sends before the kill, and how long it waits.
    stop_grace: Duration,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display())
    }
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            dir: None,
            stdout: Output::Capture,
            stderr: Output::Capture,
            tail: DEFAULT_TAIL,
            log: None,
            lines: None,
            on_deadline: vec![(Signal::Terminate, KILL_GRACE)],
            stop_grace: KILL_GRACE,
        }
    }

    /// `argv[0]` with the rest as arguments; an empty argv is an error naming what it was for.
    pub fn from_argv<S: AsRef<OsStr>>(argv: &[S]) -> anyhow::Result<Cmd> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| anyhow::anyhow!("empty command"))?;
        Ok(Cmd::new(program).args(args))
    }

    /// Takes over a `std::process::Command` (as `xshell::Cmd` converts into): program,
    /// arguments, environment changes and directory.
    pub fn from_std(command: &std::process::Command) -> Cmd {
        let mut cmd = Cmd::new(command.get_program()).args(command.get_args());
        for (key, value) in command.get_envs() {
            cmd = match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            cmd = cmd.current_dir(dir);
        }
        cmd
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: impl IntoIterator<Item = S>) -> Cmd {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Cmd {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<K: AsRef<OsStr>, V: AsRef<OsStr>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Cmd {
        for (key, value) in vars {
            self = self.env(key, value);
        }
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Cmd {
        self.env_remove.push(key.as_ref().to_owned());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Cmd {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Its stdout and stderr go to the harness's stderr instead of being captured.
    pub fn show_output(mut self) -> Cmd {
        self.stdout = Output::ToStderr;
        self.stderr = Output::ToStderr;
        self
    }

    /// Its stdout is a pipe the caller reads ([`Process::take_stdout`]; a tar stream).
    pub fn pipe_stdout(mut self) -> Cmd {
        self.stdout = Output::Handed;
        self
    }

    /// Its stdout is dropped (a chatty program whose stderr is what matters).
    pub fn quiet_stdout(mut self) -> Cmd {
        self.stdout = Output::Null;
        self
    }

    /// Both streams go straight into this file (created afresh), not through a pipe the harness
    /// reads: for a service that may outlive the harness ([`Process::detach`]) and must go on
    /// logging (a pipe nobody reads any more would end it). Nothing is captured: no tail, no lines.
    pub fn output_to_file(mut self, path: impl AsRef<Path>) -> Cmd {
        self.log = Some(path.as_ref().to_owned());
        self.stdout = Output::File;
        self.stderr = Output::File;
        self
    }

    /// Keep at most `bytes` of each stream (and of the combined output): the tail.
    pub fn keep_tail(mut self, bytes: usize) -> Cmd {
        self.tail = bytes.max(1);
        self
    }

    /// Copy everything it prints (both streams, as they come) to this file, created afresh.
    pub fn log_to(mut self, path: impl AsRef<Path>) -> Cmd {
        self.log = Some(path.as_ref().to_owned());
        self
    }

    /// Hand every complete line to `sink` as it is printed.
    pub fn on_line(mut self, sink: LineSink) -> Cmd {
        self.lines = Some(sink);
        self
    }

    /// At the deadline, send these in order, each followed by its grace, then kill.
    /// The default is terminate, [`KILL_GRACE`], kill.
    pub fn on_deadline(mut self, steps: &[(Signal, Duration)]) -> Cmd {
        self.on_deadline = steps.to_vec();
        self
    }

    /// How long a stopped (or dropped) process gets between terminate and kill.
    pub fn stop_grace(mut self, grace: Duration) -> Cmd {
        self.stop_grace = grace;
        self
    }

    /// The command as a person would type it (for messages; never run through a shell).
    pub fn display(&self) -> String {
        let mut words = vec![quote(&self.program)];
        words.extend(self.args.iter().map(|a| quote(a)));
        words.join(" ")
    }

    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// Starts it. The error names the command and why it could not start.
    pub fn spawn(self) -> anyhow::Result<Process> {
        Process::spawn(self)
    }

    /// Starts it as a daemon that outlives the harness (dockerd): in a session of its own, so that
    /// a Ctrl-C on the harness does not reach it, both streams to `log`, never stopped on drop.
    pub fn spawn_daemon(self, log: std::fs::File) -> anyhow::Result<Daemon> {
        let mut std_cmd = self.std_command();
        std_cmd.stdout(log.try_clone()?).stderr(log);
        sys::before_spawn_daemon(&mut std_cmd);
        let child = sys::spawn_daemon(&mut std_cmd)
            .with_context(|| format!("cannot run `{}`", self.display()))?;
        Ok(Daemon(child))
    }

    /// Program, arguments, environment and directory; stdin from nowhere.
    fn std_command(&self) -> std::process::Command {
        let mut std_cmd = std::process::Command::new(&self.program);
        std_cmd.args(&self.args);
        for key in &self.env_remove {
            std_cmd.env_remove(key);
        }
        std_cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.dir {
            std_cmd.current_dir(dir);
        }
        std_cmd.stdin(Stdio::null());
        std_cmd
    }

    /// Runs it to its end within `deadline` and returns what it left, whatever its status.
    pub async fn output(self, deadline: Duration) -> anyhow::Result<Finished> {
        self.spawn()?.wait(deadline).await
    }

    /// Runs it to its end within `deadline`; a non-zero status is an error that names the
    /// command, its status and the last lines it printed.
    pub async fn run(self, deadline: Duration) -> anyhow::Result<Finished> {
        self.output(deadline).await?.checked()
    }
}

fn quote(word: &OsStr) -> String {
    let text = word.to_string_lossy();
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The end of a process: its status and what it printed (tails, when it printed a lot).
#[derive(Debug, Clone)]
pub struct Finished {
    /// The command as a person would type it.
    pub command: String,
    /// `None` when it could not be waited for after the kill.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// Both streams, interleaved as they came (its tail).
    pub combined: String,
    /// Bytes dropped from the front of `combined` to keep it within the tail.
    pub dropped: usize,
    pub elapsed: Duration,
    /// It was stopped at its deadline.
    pub timed_out: bool,
    /// It was stopped before its deadline because the caller asked ([`Process::wait_or_stop`]).
    pub stopped: bool,
}

impl Finished {
    pub fn success(&self) -> bool {
        !self.timed_out && !self.stopped && self.status.is_some_and(|s| s.success())
    }

    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// `exit code 3`, `killed by signal 9`, `timed out after 5.00s`.
    pub fn describe(&self) -> String {
        if self.timed_out {
            return format!("timed out after {}", crate::ui::duration(self.elapsed));
        }
        match self.status {
            Some(status) => sys::describe(status),
            None => "did not end".to_owned(),
        }
    }

    /// The last `lines` non-blank lines of its combined output.
    pub fn tail(&self, lines: usize) -> String {
        last_lines(&self.combined, lines)
    }

    /// The last `lines` non-blank lines of its stderr.
    pub fn stderr_tail(&self, lines: usize) -> String {
        last_lines(&self.stderr, lines)
    }

    /// The error for a failed run: the command, how it ended, what it printed last.
    pub fn failure(&self) -> anyhow::Error {
        let tail = self.tail(20);
        if tail.is_empty() {
            anyhow::anyhow!("`{}` {}", self.command, self.describe())
        } else {
            anyhow::anyhow!("`{}` {}:\n{tail}", self.command, self.describe())
        }
    }

    /// Itself when it succeeded, else [`Finished::failure`].
    pub fn checked(self) -> anyhow::Result<Finished> {
        if self.success() {
            Ok(self)
        } else {
            Err(self.failure())
        }
    }
}

/// The last `count` non-blank lines of `text`.
pub fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// A running process and its group. Dropping it stops the group: terminate now, kill after the
/// grace (sent from a thread, so that a dropped future in a cancelled run still ends it; see
/// [`finish_pending_kills`]).
pub struct Process {
    command: String,
    child: tokio::process::Child,
    group: sys::Group,
    started: Instant,
    collected: Arc<Mutex<Collected>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    on_deadline: Vec<(Signal, Duration)>,
    stop_grace: Duration,
    /// The leader has been reaped; only leftovers in its group may remain.
    reaped: bool,
    /// Its stdout, for the caller ([`Cmd::pipe_stdout`]).
    handed: Option<tokio::process::ChildStdout>,
}

impl Process {
    fn spawn(cmd: Cmd) -> anyhow::Result<Process> {
        let command = cmd.display();
        let mut std_cmd = cmd.std_command();
        let log = match &cmd.log {
            Some(path) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).ok();
                }
                Some(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )
            }
            None => None,
        };
        std_cmd.stdout(stdio(cmd.stdout, log.as_ref())?);
        std_cmd.stderr(stdio(cmd.stderr, log.as_ref())?);
        sys::before_spawn(&mut std_cmd);
        // No `kill_on_drop`: a dropped process gets terminate first and the kill only after its
        // stop grace (see `Drop`), the leader like the rest of its group, so that a runner
        // interrupted with the gate can still end cleanly.
        let mut tokio_cmd = tokio::process::Command::from(std_cmd);
        let mut child = tokio_cmd.spawn().with_context(|| {
            format!(
                "cannot run `{command}`{}",
                cmd.dir
                    .as_ref()
                    .map(|d| format!(" in {}", d.display()))
                    .unwrap_or_default()
            )
        })?;
        let group = sys::Group::adopt(&child);
        let collected = Arc::new(Mutex::new(Collected {
            stdout: Tail::new(cmd.tail),
            stderr: Tail::new(cmd.tail),
            combined: Tail::new(cmd.tail),
            log,
        }));
        let mut readers = Vec::new();
        let handed = (cmd.stdout == Output::Handed)
            .then(|| child.stdout.take())
            .flatten();
        let stdout = child.stdout.take().map(|s| {
            (
                Stream::Stdout,
                Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            )
        });
        let stderr = child.stderr.take().map(|s| {
            (
                Stream::Stderr,
                Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
            )
        });
        for (stream, reader) in [stdout, stderr].into_iter().flatten() {
            readers.push(tokio::spawn(read_stream(
                stream,
                reader,
                collected.clone(),
                cmd.lines.clone(),
            )));
        }
        Ok(Process {
            command,
            child,
            group,
            started: Instant::now(),
            collected,
            readers,
            on_deadline: cmd.on_deadline,
            stop_grace: cmd.stop_grace,
            reaped: false,
            handed,
        })
    }

    /// Its stdout pipe, once, when it was started with [`Cmd::pipe_stdout`].
    pub fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.handed.take()
    }

    /// The command as a person would type it.
    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its status, when it has exited (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The combined output so far (its tail).
    pub fn output_so_far(&self) -> String {
        lock(&self.collected).combined.text()
    }

    /// Lets it run on after the harness: neither dropping it nor the harness's exit stops it any
    /// more, and its group is no longer signalled. Its pid, for the person who now owns it. Spawn
    /// it with [`Cmd::output_to_file`]: a captured stream would end with the harness.
    pub fn detach(self) -> Option<u32> {
        let pid = self.pid();
        // A Job object would end its processes with the harness's exit.
        self.group.release();
        // Our Drop would stop the group and the child handle's kill-on-drop would kill the
        // leader: leak both on purpose (the harness is about to exit).
        std::mem::forget(self);
        pid
    }

    /// Sends `signal` to its whole group.
    pub fn signal(&self, signal: Signal) {
        self.group.signal(signal);
    }

    /// Waits until it exits; past `deadline` it gets the deadline's signals, then the kill.
    pub async fn wait(mut self, deadline: Duration) -> anyhow::Result<Finished> {
        let mut timed_out = false;
        let status = match tokio::time::timeout(deadline, self.child.wait()).await {
            Ok(status) => {
                Some(status.with_context(|| format!("cannot wait for `{}`", self.command))?)
            }
            Err(_) => {
                timed_out = true;
                let steps = self.on_deadline.clone();
                self.escalate(&steps).await
            }
        };
        Ok(self.finish(status, timed_out).await)
    }

    /// [`Process::wait`], and when `stop` completes first, what the deadline would do: its
    /// signals (a runner writes its report on the interrupt), then the kill. Such an end is
    /// [`Finished::stopped`].
    pub async fn wait_or_stop(
        mut self,
        deadline: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<Finished> {
        let waited = tokio::select! {
            waited = tokio::time::timeout(deadline, self.child.wait()) => Some(waited),
            () = stop => None,
        };
        match waited {
            Some(Ok(status)) => {
                let status =
                    status.with_context(|| format!("cannot wait for `{}`", self.command))?;
                Ok(self.finish(Some(status), false).await)
            }
            Some(Err(_)) => {
                let steps = self.on_deadline.clone();
                let status = self.escalate(&steps).await;
                Ok(self.finish(status, true).await)
            }
            None => {
                let steps = self.on_deadline.clone();
                let status = self.escalate(&steps).await;
                let mut finished = self.finish(status, false).await;
                finished.stopped = true;
                Ok(finished)
            }
        }
    }

    /// Stops it now: terminate, its stop grace, kill. Returns what it left.
    pub async fn stop(mut self) -> Finished {
        if let Some(status) = self.try_status() {
            return self.finish(Some(status), false).await;
        }
        let steps = [(Signal::Terminate, self.stop_grace)];
        let status = self.escalate(&steps).await;
        self.finish(status, false).await
    }

    /// Sends each step's signal and waits its grace; kills at the end. The leader's status.
    async fn escalate(&mut self, steps: &[(Signal, Duration)]) -> Option<ExitStatus> {
        for (signal, grace) in steps {
            self.group.signal(*signal);
            if let Ok(Ok(status)) = tokio::time::timeout(*grace, self.child.wait()).await {
                return Some(status);
            }
        }
        self.group.signal(Signal::Kill);
        match tokio::time::timeout(KILL_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        }
    }

    async fn finish(&mut self, status: Option<ExitStatus>, timed_out: bool) -> Finished {
        // The leader is gone: helpers it left in its group must not outlive it.
        self.group.signal(Signal::Kill);
        self.reaped = true;
        // A grandchild that escaped the group may still hold the pipes: do not wait forever.
        for reader in self.readers.drain(..) {
            let abort = reader.abort_handle();
            if tokio::time::timeout(KILL_GRACE, reader).await.is_err() {
                abort.abort();
            }
        }
        let collected = lock(&self.collected);
        Finished {
            command: self.command.clone(),
            status,
            stdout: collected.stdout.text(),
            stderr: collected.stderr.text(),
            combined: collected.combined.text(),
            dropped: collected.combined.dropped,
            elapsed: self.started.elapsed(),
            timed_out,
            stopped: false,
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            self.group.signal(Signal::Kill);
            return;
        }
        self.group.signal(Signal::Terminate);
        let group = self.group.clone();
        let grace = self.stop_grace;
        let killer = std::thread::spawn(move || {
            // The grace, but no longer than the group lives: an interrupted harness waits for
            // these before it exits, and a group that ended on terminate needs no kill.
            let deadline = Instant::now() + grace;
            loop {
                if group.is_empty() {
                    return;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                std::thread::sleep(left.min(GROUP_POLL));
            }
            group.signal(Signal::Kill);
        });
        lock(&PENDING_KILLS).push(killer);
    }
}

/// How often a dropped process's killer looks whether its group has ended.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// A daemon the harness started and leaves running ([`Cmd::spawn_daemon`]).
#[derive(Debug)]
pub struct Daemon(std::process::Child);

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Its status, when it has exited (without waiting).
    pub fn try_status(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.0.try_wait()
    }
}

/// The kills that dropped processes still have to send.
static PENDING_KILLS: Mutex<Vec<std::thread::JoinHandle<()>>> = Mutex::new(Vec::new());

/// Waits until every dropped process's group has ended on its terminate, or got its kill at the
/// end of its stop grace (at most the longest grace). Call before exiting after an interruption,
/// so that a child ignoring terminate does not outlive the harness.
pub fn finish_pending_kills() {
    let pending = std::mem::take(&mut *lock(&PENDING_KILLS));
    for killer in pending {
        let _ = killer.join();
    }
}

fn stdio(output: Output, log: Option<&std::fs::File>) -> anyhow::Result<Stdio> {
    Ok(match output {
        Output::Capture | Output::Handed => Stdio::piped(),
        Output::Null => Stdio::null(),
        Output::ToStderr => sys::stderr_stdio()?,
        Output::File => Stdio::from(
            log.context("output to a file without a file")?
                .try_clone()
                .context("cannot share the log file with the process")?,
        ),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(unix)]
#[path = "unix.rs"]
mod sys;
#[cfg(windows)]
#[path = "windows.rs"]
mod sys;

#[cfg(windows)]
pub use sys::start_time;
pub use sys::{ended_by_us, pid_alive};

mod output;
use output::{read_stream, Collected, Tail};

#[cfg(all(test, unix))]
mod tests;
