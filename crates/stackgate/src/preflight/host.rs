//! What the pre-flight checks read from the machine, the same questions on every platform:
//! memory, free disk space where the engine keeps its data, CPU load, who listens on a port, the
//! process list. The answers are per platform (`host/linux.rs`: /proc and statvfs;
//! `host/macos.rs`: sysctl, vm_stat, top, lsof, ps and statvfs; `host/windows.rs`: the system's
//! memory, disk and CPU calls, its TCP table and its process snapshot). Each reading is `None` (or
//! empty) where the platform cannot give it, and the check says so.
//!
//! Not here: what counts as enough, and the checks themselves ([`super`]).

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

// Compiled into the Linux tests too, so that the parsing of what the macOS tools print is tested
// on the machines that run the tests.
#[cfg(any(target_os = "macos", all(test, target_os = "linux")))]
#[cfg_attr(not(target_os = "macos"), allow(dead_code))]
mod macos;
#[cfg(target_os = "macos")]
pub use macos::*;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use windows::*;

/// Busy share of all CPUs over `sample`, from two readings of `(total, idle)` time counters
/// (the platform's: `/proc/stat` jiffies, `GetSystemTimes` ticks).
#[cfg(any(target_os = "linux", windows))]
async fn busy_between(
    read: fn() -> Option<(u64, u64)>,
    sample: std::time::Duration,
) -> Option<f64> {
    let (total_a, idle_a) = read()?;
    tokio::time::sleep(sample).await;
    let (total_b, idle_b) = read()?;
    let total = total_b.saturating_sub(total_a) as f64;
    (total > 0.0).then(|| 100.0 * (1.0 - idle_b.saturating_sub(idle_a) as f64 / total))
}

/// Free bytes for an unprivileged user on the filesystem holding `path` (statvfs).
#[cfg(unix)]
pub(super) fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) };
    #[allow(clippy::unnecessary_cast)] // the field types differ between Linux and macOS
    (rc == 0).then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Whether nobody could bind `port` (on any address, nor on loopback): someone holds it, though
/// the platform did not say who.
fn port_taken(port: u16) -> bool {
    std::net::TcpListener::bind(("0.0.0.0", port)).is_err()
        && std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}
