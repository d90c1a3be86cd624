//! Who owns a run, in a way that still means something on an engine shared by several machines:
//! the owner's pid, the host it runs on (hostname and machine id), the boot it runs in, and its
//! start time; whether such an owner still runs (a pid of another boot, or reused by another
//! process since, is not the owner); and the labels that carry all of it on every resource.
//! Linux reads `/proc` and `/etc/machine-id`; Windows asks for the process's creation time;
//! elsewhere only the hostname and the pid are known.
//!
//! Not here: the run store that records owners ([crate::state]), the sweep that acts on them
//! ([crate::stack::down]).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Label: pid of the harness process that owns the run, to tell dead runs from live ones.
pub const LABEL_PID: &str = "io.xtask.pid";
/// Label: the host the owner runs on (`hostname/machine id`), so that one host never judges
/// another's runs by its own pids.
pub const LABEL_HOST: &str = "io.xtask.host";
/// Label: the boot the owner runs in (`/proc/sys/kernel/random/boot_id`).
pub const LABEL_BOOT: &str = "io.xtask.boot";
/// Label: the owner's start time (clock ticks after boot), so that a reused pid is not the owner.
pub const LABEL_PID_START: &str = "io.xtask.pid-start";

/// The process that owns a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub pid: u32,
    /// [`host_identity`] of its host; `None` in records of earlier versions (taken as this host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The boot it ran in: after a reboot no pid of before is alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
    /// Its start time (`/proc/PID/stat` field 22); `None` when it could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
}

/// Whether an owner still runs, as far as this host can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone, and why (`pid 42 gone`, `pid 42 is another process now`, `from an earlier boot`).
    Gone(String),
    /// It runs (or ran) on another host: this one cannot tell.
    OtherHost(String),
}

impl Owner {
    /// This process.
    pub fn me() -> Owner {
        Owner::of_pid(std::process::id())
    }

    /// The process `pid` of this host, as it is now (a pid that runs nothing has no start time).
    pub fn of_pid(pid: u32) -> Owner {
        Owner {
            pid,
            host: Some(host_identity()),
            boot: boot_id(),
            start: start_time(pid),
        }
    }

    /// Whether it still runs. Another host's owner cannot be judged from here.
    pub fn liveness(&self) -> Liveness {
        let here = host_identity();
        match &self.host {
            Some(host) if *host != here => return Liveness::OtherHost(host.clone()),
            _ => {}
        }
        if let (Some(boot), Some(now)) = (&self.boot, boot_id()) {
            if *boot != now {
                return Liveness::Gone(format!("pid {} ran in an earlier boot", self.pid));
            }
        }
        if !pid_alive(self.pid) {
            return Liveness::Gone(format!("pid {} gone", self.pid));
        }
        match (self.start, start_time(self.pid)) {
            (Some(recorded), Some(now)) if recorded != now => Liveness::Gone(format!(
                "pid {} gone (the pid is another process now)",
                self.pid
            )),
            _ => Liveness::Alive,
        }
    }

    /// Whether it still runs on this host (another host's owner counts as alive: it is not ours
    /// to declare dead).
    pub fn alive(&self) -> bool {
        !matches!(self.liveness(), Liveness::Gone(_))
    }

    /// Its labels (pid always; host, boot and start time when known).
    pub fn labels(&self) -> Vec<(String, String)> {
        let mut labels = vec![(LABEL_PID.to_owned(), self.pid.to_string())];
        if let Some(host) = &self.host {
            labels.push((LABEL_HOST.to_owned(), host.clone()));
        }
        if let Some(boot) = &self.boot {
            labels.push((LABEL_BOOT.to_owned(), boot.clone()));
        }
        if let Some(start) = self.start {
            labels.push((LABEL_PID_START.to_owned(), start.to_string()));
        }
        labels
    }

    /// The owner a resource's labels name; `None` without a pid label.
    pub fn from_labels(labels: &HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            pid: labels.get(LABEL_PID)?.parse().ok()?,
            host: labels.get(LABEL_HOST).cloned(),
            boot: labels.get(LABEL_BOOT).cloned(),
            start: labels.get(LABEL_PID_START).and_then(|s| s.parse().ok()),
        })
    }
}

/// This host: its hostname, and its machine id when it has one (`web-1/3f2a9c0d11e4`). Two
/// runners with one checkout path on one engine differ in at least one of them (containers and
/// VMs get hostnames of their own); a reboot keeps both.
pub fn host_identity() -> String {
    let name = hostname().unwrap_or_else(|| "unknown-host".to_owned());
    match machine_id() {
        Some(id) => format!("{name}/{}", &id[..id.len().min(12)]),
        None => name,
    }
}

fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buffer = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into our buffer.
        let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
        if rc != 0 {
            return None;
        }
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(buffer.len());
        let name = String::from_utf8_lossy(&buffer[..end]).trim().to_owned();
        (!name.is_empty()).then_some(name)
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}

fn machine_id() -> Option<String> {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|id| !id.is_empty())
}

/// This boot's id (Linux); `None` elsewhere.
pub fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// When process `pid` started: on Linux in clock ticks after boot (`/proc/PID/stat` field 22), on
/// Windows its creation time; `None` when it does not run, or elsewhere (macOS: the pid alone).
pub fn start_time(pid: u32) -> Option<u64> {
    #[cfg(windows)]
    {
        crate::process::start_time(pid)
    }
    #[cfg(not(windows))]
    {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        start_time_of(&stat)
    }
}

/// Field 22 of a `/proc/PID/stat` line; the command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
#[cfg(any(not(windows), test))]
fn start_time_of(stat: &str) -> Option<u64> {
    let after_name = stat.rsplit_once(')')?.1;
    // After the name come field 3 (state) onwards: field 22 is the 20th of them.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether a process with this pid is alive (signal 0 on Unix, its exit code on Windows).
pub fn pid_alive(pid: u32) -> bool {
    crate::process::pid_alive(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_read_past_a_name_with_spaces() {
        let stat = "4242 (a) b c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615";
        assert_eq!(start_time_of(stat), Some(987654));
        assert_eq!(start_time_of("garbage"), None);
        #[cfg(any(target_os = "linux", windows))]
        assert!(start_time(std::process::id()).is_some());
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_or_another_boot_is_not() {
        let me = Owner::me();
        assert_eq!(me.liveness(), Liveness::Alive);
        assert!(me.host.as_deref().is_some_and(|h| !h.is_empty()));
        // The same pid with another start time: the pid was reused by another process (where the
        // platform tells start times: Linux and Windows).
        #[cfg(any(target_os = "linux", windows))]
        let reused = Owner {
            start: me.start.map(|s| s + 1),
            ..me.clone()
        };
        #[cfg(any(target_os = "linux", windows))]
        assert!(
            matches!(&reused.liveness(), Liveness::Gone(why) if why.contains("another process")),
            "{:?}",
            reused.liveness()
        );
        let earlier_boot = Owner {
            boot: Some("00000000-0000-0000-0000-000000000000".into()),
            ..me.clone()
        };
        if me.boot.is_some() {
            assert!(matches!(earlier_boot.liveness(), Liveness::Gone(_)));
        }
        let other_host = Owner {
            host: Some("another-runner/0123456789ab".into()),
            ..Owner::default()
        };
        assert_eq!(
            other_host.liveness(),
            Liveness::OtherHost("another-runner/0123456789ab".into())
        );
        assert!(
            other_host.alive(),
            "another host's owner is never declared dead here"
        );
        // A record of an earlier version: pid only, judged on this host by the pid.
        assert!(!Owner {
            pid: 0x7fff_fff0,
            ..Owner::default()
        }
        .alive());
    }

    #[test]
    fn labels_round_trip() {
        let me = Owner::me();
        let labels: HashMap<String, String> = me.labels().into_iter().collect();
        assert_eq!(labels[LABEL_PID], std::process::id().to_string());
        assert_eq!(Owner::from_labels(&labels), Some(me));
        let legacy = HashMap::from([(LABEL_PID.to_owned(), "42".to_owned())]);
        assert_eq!(
            Owner::from_labels(&legacy),
            Some(Owner {
                pid: 42,
                ..Owner::default()
            })
        );
        assert_eq!(Owner::from_labels(&HashMap::new()), None);
    }
}
