//! The machine as Linux tells it: memory (`/proc/meminfo`), CPU load (`/proc/stat`), who listens
//! on a port (`/proc/net/tcp`, `/proc/*/fd`), the process list (`/proc/*/comm`), the engine's data
//! root (`/etc/docker/daemon.json`). Free disk space is statvfs ([`super::free_bytes`]).
//!
//! Not here: what counts as enough ([`crate::preflight`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// `(MemTotal, MemAvailable)` in bytes.
pub(in crate::preflight) async fn meminfo() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// The engine's data root: `data-root` of /etc/docker/daemon.json, else /var/lib/docker when it exists.
pub(in crate::preflight) fn docker_data_root() -> (Option<PathBuf>, &'static str) {
    if let Ok(text) = std::fs::read_to_string("/etc/docker/daemon.json") {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
            if let Some(root) = json.get("data-root").and_then(|v| v.as_str()) {
                return (
                    Some(PathBuf::from(root)),
                    "docker data root from daemon.json",
                );
            }
        }
    }
    let default = Path::new("/var/lib/docker");
    if default.is_dir() {
        (Some(default.to_path_buf()), "docker data root")
    } else {
        (None, "working directory; docker data root unknown")
    }
}

/// Busy share of all CPUs over `sample`, from two readings of /proc/stat.
pub(in crate::preflight) async fn cpu_busy_percent(sample: Duration) -> Option<f64> {
    fn read() -> Option<(u64, u64)> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = text
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        Some((fields.iter().sum(), idle))
    }
    super::busy_between(read, sample).await
}

/// Who listens on `port`, when someone does: `pid 1234 (nginx)`, or a description when the
/// owner cannot be read.
pub async fn port_holder(port: u16) -> Option<String> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        // Not in /proc (another network namespace): try to bind it.
        return super::port_taken(port)
            .then(|| "an unknown process (cannot read its owner)".to_owned());
    }
    for (pid, comm) in processes().await {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(link) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let link = link.to_string_lossy();
            if inodes
                .iter()
                .any(|inode| link == format!("socket:[{inode}]"))
            {
                return Some(format!("pid {pid} ({comm})"));
            }
        }
    }
    Some("a process this user cannot inspect".to_owned())
}

/// Socket inodes listening on `port`, from /proc/net/tcp and tcp6.
fn listening_inodes(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if *state == "0A" && local_port == Some(port) && *inode != "0" {
                inodes.push((*inode).to_owned());
            }
        }
    }
    inodes
}

/// Every process's pid and command name.
pub async fn processes() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            Some((pid, comm.trim().to_owned()))
        })
        .collect()
}

/// Whether the process list can be read at all.
pub(in crate::preflight) fn process_list_readable() -> bool {
    Path::new("/proc").is_dir()
}

#[cfg(test)]
mod tests {
    use super::super::free_bytes;
    use super::*;

    #[tokio::test]
    async fn a_listening_port_names_its_holder_and_a_closed_one_is_free() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).await.expect("the port is held");
        assert!(
            holder.starts_with(&format!("pid {} (", std::process::id())),
            "{holder}"
        );
        drop(listener);
        assert_eq!(port_holder(port).await, None);
    }

    #[tokio::test]
    async fn the_machine_can_be_read() {
        let (total, available) = meminfo().await.expect("/proc/meminfo");
        assert!(total > 0 && available <= total, "{total} {available}");
        assert!(free_bytes(Path::new("/")).is_some_and(|free| free > 0));
        assert!(free_bytes(Path::new("/nonexistent/dir")).is_none());
        let busy = cpu_busy_percent(Duration::from_millis(50))
            .await
            .expect("/proc/stat");
        assert!((0.0..=100.0).contains(&busy), "{busy}");
        assert!(processes()
            .await
            .iter()
            .any(|(pid, _)| *pid == std::process::id()));
        assert!(process_list_readable());
    }
}
