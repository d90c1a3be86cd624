//! Process groups on Unix: a child leads its own group (`setpgid` at spawn), and the harness
//! signals the whole group with `killpg`.
//!
//! Not here: what the runner does with them ([super]).

use super::Signal;
use std::process::{ExitStatus, Stdio};

pub fn before_spawn(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

/// A session (so a group) of its own: neither the terminal's Ctrl-C nor ours reaches it.
pub fn before_spawn_daemon(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches nothing of the parent.
    unsafe {
        command.pre_exec(|| match libc::setsid() {
            -1 => Err(std::io::Error::last_os_error()),
            _ => Ok(()),
        })
    };
}

pub fn spawn_daemon(command: &mut std::process::Command) -> std::io::Result<std::process::Child> {
    command.spawn()
}

/// A process group the harness created (its leader's pid).
#[derive(Debug, Clone)]
pub struct Group {
    /// None when the child had no pid: never signal group 0 (that is our own group).
    pgid: Option<libc::pid_t>,
}

impl Group {
    pub fn adopt(child: &tokio::process::Child) -> Group {
        Group {
            pgid: child
                .id()
                .and_then(|pid| libc::pid_t::try_from(pid).ok())
                .filter(|pid| *pid > 1),
        }
    }

    pub fn signal(&self, signal: Signal) {
        let number = match signal {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
        };
        if let Some(pgid) = self.pgid {
            // SAFETY: killpg on a group this runner created; ESRCH (already gone) is fine.
            unsafe { libc::killpg(pgid, number) };
        }
    }

    /// No live process is left in the group. Zombies do not count: an orphan's zombie waits for
    /// whoever reaps for the machine (in a container that may be a lazy PID 1), and it runs no
    /// more. Where live members cannot be told from zombies, any member counts.
    pub fn is_empty(&self) -> bool {
        let Some(pgid) = self.pgid else {
            return true;
        };
        // SAFETY: signal 0 only asks whether any member exists.
        let result = unsafe { libc::killpg(pgid, 0) };
        if result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return true;
        }
        only_zombies_in(pgid)
    }

    /// Nothing holds a group to the harness's life on Unix: a detached group simply runs on.
    pub fn release(&self) {}
}

/// Whether every process of group `pgid` is a zombie, from /proc (Linux).
#[cfg(target_os = "linux")]
fn only_zombies_in(pgid: libc::pid_t) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    let group = pgid.to_string();
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid pgrp ...`: comm may hold spaces, so split after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(_ppid), Some(member_of)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if member_of == group && state != "Z" && state != "X" {
            return false;
        }
    }
    true
}

#[cfg(not(target_os = "linux"))]
fn only_zombies_in(_pgid: libc::pid_t) -> bool {
    false
}

/// Whether a process with this pid exists (a zombie counts until it is reaped).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether the process took the kill at the end of its grace (or could not be waited for at all).
pub fn ended_by_us(status: Option<ExitStatus>) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.is_none_or(|status| status.signal() == Some(libc::SIGKILL))
}

pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended".to_owned(),
    }
}

pub fn stderr_stdio() -> anyhow::Result<Stdio> {
    use std::os::fd::AsFd;
    let fd = std::io::stderr().as_fd().try_clone_to_owned()?;
    Ok(Stdio::from(fd))
}
