//! Process groups on Windows: every child runs in a Job object of its own, so that ending the job
//! ends the child and everything it started (pytest's workers, compose's helpers), the way
//! `killpg` does on Unix. The child starts suspended and is resumed only once it is in its job,
//! so that nothing it starts can escape. It also leads a console process group of its own:
//! [`Signal::Interrupt`] is a Ctrl-Break to that group, and the console's Ctrl-C does not reach it
//! (the harness decides when its children stop, as on Unix). Terminate and kill end the job: a
//! console program has no gentler way to be asked. Also the process queries the runner and the
//! run store need (is a pid alive).
//!
//! Not here: what the runner does with them ([super]).

use std::os::windows::io::RawHandle;
use std::os::windows::process::CommandExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, HANDLE, INVALID_HANDLE_VALUE, STILL_ACTIVE,
};
use windows_sys::Win32::System::Console::{GenerateConsoleCtrlEvent, CTRL_BREAK_EVENT};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Thread32First, Thread32Next, TH32CS_SNAPTHREAD, THREADENTRY32,
};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JobObjectBasicAccountingInformation,
    JobObjectExtendedLimitInformation, QueryInformationJobObject, SetInformationJobObject,
    TerminateJobObject, JOBOBJECT_BASIC_ACCOUNTING_INFORMATION,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, GetProcessTimes, OpenProcess, OpenThread, ResumeThread, TerminateProcess,
    CREATE_BREAKAWAY_FROM_JOB, CREATE_NEW_PROCESS_GROUP, CREATE_SUSPENDED, DETACHED_PROCESS,
    PROCESS_QUERY_LIMITED_INFORMATION, THREAD_SUSPEND_RESUME,
};

use super::Signal;

/// The exit code of a process whose job the harness ended (128 + 9, what a shell reports for a
/// process killed with SIGKILL), so that [`describe`] can say so.
pub const JOB_ENDED_EXIT_CODE: u32 = 137;

pub fn before_spawn(command: &mut std::process::Command) {
    command.creation_flags(CREATE_NEW_PROCESS_GROUP | CREATE_SUSPENDED);
}

/// No console and a process group of its own: neither the console's Ctrl-C nor the end of the
/// harness reaches it. It leaves the harness's own job (cargo puts `cargo xtask` in one) when that
/// job allows it; see [`spawn_daemon`].
pub fn before_spawn_daemon(command: &mut std::process::Command) {
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_BREAKAWAY_FROM_JOB);
}

/// Spawns a daemon; when the job the harness runs in refuses breakaway (access denied), again
/// without it: the daemon then lives as long as that job (cargo's ends it only on Ctrl-C).
pub fn spawn_daemon(command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    match command.spawn() {
        Err(e) if e.raw_os_error() == Some(ERROR_ACCESS_DENIED as i32) => {
            command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
            command.spawn()
        }
        other => other,
    }
}

/// An owned kernel handle, closed on drop.
#[derive(Debug)]
struct Owned(HANDLE);

// SAFETY: a kernel handle is a process-wide number; any thread may use or close it.
unsafe impl Send for Owned {}
// SAFETY: the job calls used through a shared handle are thread-safe kernel calls.
unsafe impl Sync for Owned {}

impl Drop for Owned {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// A child's Job object (and its console process group, named by the child's pid).
#[derive(Debug, Clone)]
pub struct Group {
    /// None when the job could not be made: then only the child itself is ended.
    job: Option<Arc<Owned>>,
    /// The child's process handle, for when there is no job (borrowed from the child: valid while
    /// the `Process` lives, which outlives every signal it sends).
    process: Option<isize>,
    pid: Option<u32>,
}

impl Group {
    /// Puts the (suspended) child in a new job that ends it and its descendants when the harness
    /// ends it or exits, then lets it run. A child that cannot be put in a job is ended alone.
    pub fn adopt(child: &tokio::process::Child) -> Group {
        let process = child.raw_handle();
        let pid = child.id();
        let job = process.and_then(|handle| new_job_with(handle as HANDLE));
        if let Some(pid) = pid {
            resume_threads(pid);
        }
        Group {
            job,
            process: process.map(|handle: RawHandle| handle as isize),
            pid,
        }
    }

    pub fn signal(&self, signal: Signal) {
        match signal {
            Signal::Interrupt => {
                if let Some(pid) = self.pid {
                    // SAFETY: the console process group the child leads (CREATE_NEW_PROCESS_GROUP);
                    // fails harmlessly when the harness has no console.
                    unsafe { GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid) };
                }
            }
            Signal::Terminate | Signal::Kill => match (&self.job, self.process) {
                // SAFETY: our own job; ending an empty job is a no-op.
                (Some(job), _) => unsafe {
                    TerminateJobObject(job.0, JOB_ENDED_EXIT_CODE);
                },
                // SAFETY: the child's handle, still owned by its `Process`.
                (None, Some(process)) => unsafe {
                    TerminateProcess(process as HANDLE, JOB_ENDED_EXIT_CODE);
                },
                (None, None) => {}
            },
        }
    }

    /// No process is left in the job (without a job: the child itself is gone).
    pub fn is_empty(&self) -> bool {
        match &self.job {
            Some(job) => {
                // SAFETY: plain data, filled in by the query below.
                let mut info: JOBOBJECT_BASIC_ACCOUNTING_INFORMATION =
                    unsafe { std::mem::zeroed() };
                // SAFETY: our own job; the buffer is the size we pass.
                let ok = unsafe {
                    QueryInformationJobObject(
                        job.0,
                        JobObjectBasicAccountingInformation,
                        (&mut info as *mut JOBOBJECT_BASIC_ACCOUNTING_INFORMATION).cast(),
                        std::mem::size_of::<JOBOBJECT_BASIC_ACCOUNTING_INFORMATION>() as u32,
                        std::ptr::null_mut(),
                    )
                };
                ok != 0 && info.ActiveProcesses == 0
            }
            None => self.pid.is_none_or(|pid| !pid_alive(pid)),
        }
    }

    /// Lets the job's processes outlive the job's last handle ([`super::Process::detach`]): the
    /// kill-on-close limit is lifted.
    pub fn release(&self) {
        if let Some(job) = &self.job {
            set_kill_on_close(job.0, false);
        }
    }
}

/// A job that ends its processes when its last handle closes, with `process` in it.
fn new_job_with(process: HANDLE) -> Option<Arc<Owned>> {
    // SAFETY: no attributes, no name.
    let job = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
    if job.is_null() || job == INVALID_HANDLE_VALUE {
        return None;
    }
    let job = Owned(job);
    if !set_kill_on_close(job.0, true) {
        return None;
    }
    // SAFETY: both handles are valid; since Windows 8 a job may sit inside the harness's own job.
    if unsafe { AssignProcessToJobObject(job.0, process) } == 0 {
        return None;
    }
    Some(Arc::new(job))
}

fn set_kill_on_close(job: HANDLE, kill: bool) -> bool {
    // SAFETY: a zeroed limit structure is "no limits"; we set one flag.
    let mut info: JOBOBJECT_EXTENDED_LIMIT_INFORMATION = unsafe { std::mem::zeroed() };
    if kill {
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
    }
    // SAFETY: the size is the structure's; the job handle is ours.
    unsafe {
        SetInformationJobObject(
            job,
            JobObjectExtendedLimitInformation,
            (&raw const info).cast(),
            std::mem::size_of_val(&info) as u32,
        ) != 0
    }
}

/// Resumes every thread of `pid` (a child started suspended has one).
fn resume_threads(pid: u32) {
    // SAFETY: a snapshot of the system's threads, closed below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return;
    }
    let snapshot = Owned(snapshot);
    let mut entry = THREADENTRY32 {
        dwSize: std::mem::size_of::<THREADENTRY32>() as u32,
        ..Default::default()
    };
    // SAFETY: `entry` carries its size, as the API asks.
    let mut more = unsafe { Thread32First(snapshot.0, &mut entry) } != 0;
    while more {
        if entry.th32OwnerProcessID == pid {
            // SAFETY: a thread of our own suspended child; its handle is closed at once.
            unsafe {
                let thread = OpenThread(THREAD_SUSPEND_RESUME, 0, entry.th32ThreadID);
                if !thread.is_null() {
                    ResumeThread(thread);
                    CloseHandle(thread);
                }
            }
        }
        // SAFETY: as above.
        more = unsafe { Thread32Next(snapshot.0, &mut entry) } != 0;
    }
}

/// Whether a process with this pid exists and has not exited.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: query rights only; the handle is closed below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // It exists but is not ours to query (another user's, a system process).
        // SAFETY: reads this thread's last error.
        return unsafe { GetLastError() } == ERROR_ACCESS_DENIED;
    }
    let handle = Owned(handle);
    let mut code = 0u32;
    // SAFETY: a handle with query rights and a place for the code.
    let read = unsafe { GetExitCodeProcess(handle.0, &mut code) } != 0;
    read && code == STILL_ACTIVE as u32
}

/// When process `pid` was created (100 ns ticks since 1601), so that a reused pid is told from
/// its first owner; `None` when it does not run or is not ours to query.
pub fn start_time(pid: u32) -> Option<u64> {
    // SAFETY: query rights only; the handle is closed when `Owned` drops.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return None;
    }
    let handle = Owned(handle);
    let zero = || windows_sys::Win32::Foundation::FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut created, mut exited, mut kernel, mut user) = (zero(), zero(), zero(), zero());
    // SAFETY: a handle with query rights and four places for the times.
    let read =
        unsafe { GetProcessTimes(handle.0, &mut created, &mut exited, &mut kernel, &mut user) };
    (read != 0)
        .then(|| (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime))
}

pub fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) if code as u32 == JOB_ENDED_EXIT_CODE => {
            format!("exit code {code} (ended with its job)")
        }
        // NTSTATUS values (0xC0000005 access violation, 0xC000013A Ctrl-C) read better in hex.
        Some(code) if code < 0 => format!("exit code {:#010x}", code as u32),
        Some(code) => format!("exit code {code}"),
        None => "ended".to_owned(),
    }
}

pub fn stderr_stdio() -> anyhow::Result<Stdio> {
    use std::os::windows::io::AsHandle;
    let handle = std::io::stderr().as_handle().try_clone_to_owned()?;
    Ok(Stdio::from(handle))
}

/// Whether the process was ended by the harness (its job ended) rather than exiting by itself.
pub fn ended_by_us(status: Option<ExitStatus>) -> bool {
    status.is_none_or(|status| status.code().map(|c| c as u32) == Some(JOB_ENDED_EXIT_CODE))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// The pids of the processes whose parent is `parent`.
    fn children_of(parent: u32) -> Vec<u32> {
        use windows_sys::Win32::System::Diagnostics::ToolHelp::{
            Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
        };
        let mut children = Vec::new();
        // SAFETY: a process snapshot, closed on drop.
        let snapshot = Owned(unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) });
        let mut entry = PROCESSENTRY32W {
            dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
            ..unsafe { std::mem::zeroed() }
        };
        let mut more = unsafe { Process32FirstW(snapshot.0, &mut entry) } != 0;
        while more {
            if entry.th32ParentProcessID == parent {
                children.push(entry.th32ProcessID);
            }
            more = unsafe { Process32NextW(snapshot.0, &mut entry) } != 0;
        }
        children
    }

    /// `cmd /c ping -n 300 127.0.0.1`: cmd waits for a ping that runs for five minutes.
    fn tree() -> Cmd {
        Cmd::new("cmd").args(["/c", "ping", "-n", "300", "127.0.0.1"])
    }

    /// Waits (at most 10 s) until `cmd` has started its `ping`; its pid.
    fn grandchild_of(pid: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(child) = children_of(pid).first() {
                return *child;
            }
            assert!(Instant::now() < deadline, "cmd {pid} started no ping");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_gone(pid: u32, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) {
            assert!(Instant::now() < deadline, "{what} {pid} outlived its job");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[tokio::test]
    async fn windows_job_object_deadline_ends_the_child_tree() {
        let process = tree().on_deadline(&[]).spawn().unwrap();
        let pid = process.pid().unwrap();
        let ping = grandchild_of(pid);
        assert!(pid_alive(ping));
        let finished = process.wait(Duration::from_millis(200)).await.unwrap();
        assert!(finished.timed_out, "{finished:?}");
        assert_gone(ping, "the grandchild");
        assert_gone(pid, "cmd");
        assert!(
            finished.describe().starts_with("timed out"),
            "{}",
            finished.describe()
        );
    }

    #[tokio::test]
    async fn windows_job_object_dropped_process_ends_with_its_tree() {
        let process = tree()
            .stop_grace(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let pid = process.pid().unwrap();
        let ping = grandchild_of(pid);
        drop(process);
        finish_pending_kills();
        assert_gone(ping, "the grandchild");
        assert_gone(pid, "cmd");
    }

    #[tokio::test]
    async fn windows_stop_reports_the_job_ending() {
        let process = tree().spawn().unwrap();
        let pid = process.pid().unwrap();
        grandchild_of(pid);
        let finished = process.stop().await;
        assert!(ended_by_us(finished.status), "{finished:?}");
        assert_eq!(finished.describe(), "exit code 137 (ended with its job)");
    }

    #[tokio::test]
    async fn windows_detached_process_outlives_its_handle() {
        let dir = tempfile::tempdir().unwrap();
        let process = tree()
            .output_to_file(dir.path().join("ping.log"))
            .stop_grace(Duration::from_millis(100))
            .spawn()
            .unwrap();
        let pid = process.detach().unwrap();
        finish_pending_kills();
        let ping = grandchild_of(pid);
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            pid_alive(pid) && pid_alive(ping),
            "the detached tree was ended"
        );
        for each in [ping, pid] {
            // SAFETY: the test's own detached processes.
            unsafe {
                let handle = OpenProcess(
                    windows_sys::Win32::System::Threading::PROCESS_TERMINATE,
                    0,
                    each,
                );
                TerminateProcess(handle, 1);
                CloseHandle(handle);
            }
        }
        assert_gone(pid, "cmd");
    }

    #[tokio::test]
    async fn windows_output_status_and_paths_with_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("a dir with spaces");
        std::fs::create_dir_all(&spaced).unwrap();
        let finished = Cmd::new("cmd")
            .args(["/c", "echo out& echo err 1>&2& cd& exit 3"])
            .current_dir(&spaced)
            .output(Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(finished.code(), Some(3), "{finished:?}");
        assert_eq!(finished.describe(), "exit code 3");
        assert!(finished.stdout.starts_with("out"), "{finished:?}");
        assert!(finished.stderr.starts_with("err"), "{finished:?}");
        // cmd's `cd` prints its directory: a drive letter, and the spaces kept.
        let cwd = finished
            .stdout
            .lines()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        assert!(cwd.ends_with("a dir with spaces"), "{cwd}");
        assert_eq!(cwd.as_bytes().get(1), Some(&b':'), "{cwd}");
    }

    #[test]
    fn windows_pid_alive_knows_this_process_and_not_a_made_up_one() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0x7fff_fff0));
    }
}
