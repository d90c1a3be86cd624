//! The machine as Windows tells it: memory (`GlobalMemoryStatusEx`), free space on the drive of
//! the engine's data (`GetDiskFreeSpaceExW` on Docker Desktop's WSL2 disks, else the Windows
//! engine's data root), CPU load (two `GetSystemTimes` readings), who listens on a port (the
//! system's TCP table, `GetExtendedTcpTable`, with the owning pid; its name from the process
//! snapshot), the process list (`CreateToolhelp32Snapshot`). The reading of the TCP table's bytes
//! is pure and tested on its own.
//!
//! Not here: what counts as enough ([`crate::preflight`]).

use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, FILETIME, INVALID_HANDLE_VALUE, NO_ERROR,
};
use windows_sys::Win32::NetworkManagement::IpHelper::{
    GetExtendedTcpTable, MIB_TCP_STATE_LISTEN, TCP_TABLE_OWNER_PID_LISTENER,
};
use windows_sys::Win32::Networking::WinSock::{AF_INET, AF_INET6};
use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, Process32FirstW, Process32NextW, PROCESSENTRY32W, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
use windows_sys::Win32::System::Threading::GetSystemTimes;

/// `(total, available)` physical memory in bytes.
pub(in crate::preflight) async fn meminfo() -> Option<(u64, u64)> {
    let mut status = MEMORYSTATUSEX {
        dwLength: std::mem::size_of::<MEMORYSTATUSEX>() as u32,
        ..Default::default()
    };
    // SAFETY: the structure carries its length, as the API asks.
    let ok = unsafe { GlobalMemoryStatusEx(&mut status) } != 0;
    ok.then_some((status.ullTotalPhys, status.ullAvailPhys))
}

/// Where the engine keeps its data: Docker Desktop's WSL2 disks under `%LOCALAPPDATA%\Docker`,
/// else the Windows engine's `%ProgramData%\docker`.
pub(in crate::preflight) fn docker_data_root() -> (Option<PathBuf>, &'static str) {
    data_root_in(
        std::env::var_os("LOCALAPPDATA").map(PathBuf::from),
        std::env::var_os("ProgramData").map(PathBuf::from),
    )
}

fn data_root_in(
    local_app_data: Option<PathBuf>,
    program_data: Option<PathBuf>,
) -> (Option<PathBuf>, &'static str) {
    if let Some(wsl) = local_app_data
        .map(|dir| dir.join("Docker").join("wsl"))
        .filter(|dir| dir.is_dir())
    {
        return (Some(wsl), "Docker Desktop's WSL2 disks");
    }
    if let Some(root) = program_data
        .map(|dir| dir.join("docker"))
        .filter(|dir| dir.is_dir())
    {
        return (Some(root), "docker data root");
    }
    (None, "working directory; docker data root unknown")
}

/// Free bytes for this user on the drive holding `path`.
pub(in crate::preflight) fn free_bytes(path: &Path) -> Option<u64> {
    if !path.exists() {
        return None;
    }
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut free = 0u64;
    // SAFETY: a NUL-terminated path; the totals we do not want may be null.
    let ok = unsafe {
        GetDiskFreeSpaceExW(
            wide.as_ptr(),
            &mut free,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    } != 0;
    ok.then_some(free)
}

/// Busy share of all CPUs over `sample`, from two readings of the system's idle, kernel and user
/// times (kernel time includes idle time).
pub(in crate::preflight) async fn cpu_busy_percent(sample: Duration) -> Option<f64> {
    fn read() -> Option<(u64, u64)> {
        let (mut idle, mut kernel, mut user) = <(FILETIME, FILETIME, FILETIME)>::default();
        // SAFETY: three places for the three times.
        let ok = unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } != 0;
        let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
        ok.then(|| (ticks(kernel) + ticks(user), ticks(idle)))
    }
    super::busy_between(read, sample).await
}

/// Who listens on `port`: `pid 1234 (nginx.exe)` from the TCP table, else whether it can be bound.
pub async fn port_holder(port: u16) -> Option<String> {
    let owner = [AF_INET, AF_INET6]
        .into_iter()
        .filter_map(|family| tcp_table(family).map(|bytes| listeners(&bytes, family)))
        .flatten()
        .find(|listener| listener.port == port);
    match owner {
        Some(listener) => Some(describe_owner(listener.pid, &processes().await)),
        None => {
            super::port_taken(port).then(|| "an unknown process (cannot read its owner)".to_owned())
        }
    }
}

/// `pid 1234 (nginx)` for the owner the TCP table names.
fn describe_owner(pid: u32, processes: &[(u32, String)]) -> String {
    match pid {
        // The table names no owner (pid 0 is the idle process, which owns nothing).
        0 => "an unknown process (the TCP table names no owner)".to_owned(),
        // The kernel's own listeners (http.sys, SMB).
        4 => "pid 4 (System)".to_owned(),
        pid => match processes.iter().find(|(each, _)| *each == pid) {
            Some((_, name)) => format!("pid {pid} ({name})"),
            None => format!("pid {pid} (exited since)"),
        },
    }
}

/// One listening socket of the TCP table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Listener {
    pub port: u16,
    pub pid: u32,
}

/// `GetExtendedTcpTable(TCP_TABLE_OWNER_PID_LISTENER)` for one address family, as bytes.
fn tcp_table(family: u16) -> Option<Vec<u8>> {
    let mut size = 0u32;
    let mut buffer: Vec<u32> = Vec::new();
    // The table may grow between the call that sizes it and the one that fills it: retry.
    for _ in 0..4 {
        // SAFETY: `buffer` holds `size` bytes (u32s keep the rows aligned).
        let status = unsafe {
            GetExtendedTcpTable(
                buffer.as_mut_ptr().cast(),
                &mut size,
                0,
                u32::from(family),
                TCP_TABLE_OWNER_PID_LISTENER,
                0,
            )
        };
        match status {
            NO_ERROR => {
                let bytes = buffer.iter().flat_map(|word| word.to_ne_bytes());
                return Some(bytes.take(size as usize).collect());
            }
            ERROR_INSUFFICIENT_BUFFER => buffer = vec![0; (size as usize).div_ceil(4) + 16],
            _ => return None,
        }
    }
    None
}

/// The listeners in a `MIB_TCPTABLE_OWNER_PID` (IPv4: rows of state, local address, local port,
/// remote address, remote port, pid) or `MIB_TCP6TABLE_OWNER_PID` (IPv6: local address, scope,
/// local port, remote address, scope, remote port, state, pid): a u32 count, then the rows. Ports
/// are in network byte order in the low two bytes of their u32.
pub(super) fn listeners(table: &[u8], family: u16) -> Vec<Listener> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(table.get(at..at + 4)?.try_into().ok()?))
    };
    // Offsets of (row size, local port, state, pid) in a row.
    let (row, port_at, state_at, pid_at) = if family == AF_INET6 {
        (56, 20, 48, 52)
    } else {
        (24, 8, 0, 20)
    };
    let count = word(0).unwrap_or(0) as usize;
    (0..count)
        .map_while(|index| {
            let start = 4 + index * row;
            let port_bytes = table.get(start + port_at..start + port_at + 2)?;
            Some((
                u16::from_be_bytes([port_bytes[0], port_bytes[1]]),
                word(start + state_at)?,
                word(start + pid_at)?,
            ))
        })
        .filter(|(_, state, _)| *state == MIB_TCP_STATE_LISTEN as u32)
        .map(|(port, _, pid)| Listener { port, pid })
        .collect()
}

/// Every process's pid and executable name without `.exe` (`com.docker.backend`, `Docker Desktop`),
/// so that the names read as on the other platforms.
pub async fn processes() -> Vec<(u32, String)> {
    let mut list = Vec::new();
    // SAFETY: a snapshot of the processes, closed below.
    let snapshot = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snapshot == INVALID_HANDLE_VALUE {
        return list;
    }
    let mut entry = PROCESSENTRY32W {
        dwSize: std::mem::size_of::<PROCESSENTRY32W>() as u32,
        ..Default::default()
    };
    // SAFETY: the entry carries its size, as the API asks.
    let mut more = unsafe { Process32FirstW(snapshot, &mut entry) } != 0;
    while more {
        list.push((entry.th32ProcessID, exe_name(&entry.szExeFile)));
        // SAFETY: as above.
        more = unsafe { Process32NextW(snapshot, &mut entry) } != 0;
    }
    // SAFETY: the snapshot is ours.
    unsafe { CloseHandle(snapshot) };
    list
}

/// A NUL-terminated UTF-16 file name, without its `.exe`.
fn exe_name(wide: &[u16]) -> String {
    let end = wide.iter().position(|c| *c == 0).unwrap_or(wide.len());
    let name = String::from_utf16_lossy(&wide[..end]);
    match name.len().checked_sub(4) {
        Some(cut) if name[cut..].eq_ignore_ascii_case(".exe") => name[..cut].to_owned(),
        _ => name,
    }
}

/// The process snapshot always works on Windows.
pub(in crate::preflight) fn process_list_readable() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_row(state: u32, port: u16, pid: u32) -> Vec<u8> {
        let port_word = u32::from_ne_bytes([(port >> 8) as u8, port as u8, 0, 0]);
        [state, 0x0100_007f, port_word, 0, 0, pid]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect()
    }

    #[test]
    fn windows_tcp_table_rows_give_port_and_owner() {
        let mut table = 3u32.to_ne_bytes().to_vec();
        table.extend(v4_row(2, 2375, 4242));
        table.extend(v4_row(5, 8080, 7)); // established: not a listener
        table.extend(v4_row(2, 443, 4));
        assert_eq!(
            listeners(&table, AF_INET),
            vec![
                Listener {
                    port: 2375,
                    pid: 4242
                },
                Listener { port: 443, pid: 4 },
            ]
        );
        // A table cut short (it grew between two calls) yields the rows it holds.
        assert_eq!(listeners(&table[..4 + 24], AF_INET).len(), 1);
        assert!(listeners(&[], AF_INET).is_empty());

        let mut v6 = 1u32.to_ne_bytes().to_vec();
        let mut row = vec![0u8; 56];
        row[20..22].copy_from_slice(&2376u16.to_be_bytes());
        row[48..52].copy_from_slice(&2u32.to_ne_bytes());
        row[52..56].copy_from_slice(&99u32.to_ne_bytes());
        v6.extend(row);
        assert_eq!(
            listeners(&v6, AF_INET6),
            vec![Listener {
                port: 2376,
                pid: 99
            }]
        );
    }

    #[test]
    fn windows_port_owners_are_named_from_the_process_list() {
        let list = vec![(4242, "com.docker.backend".to_owned()), (7, "x".to_owned())];
        assert_eq!(describe_owner(4242, &list), "pid 4242 (com.docker.backend)");
        assert_eq!(describe_owner(4, &list), "pid 4 (System)");
        assert_eq!(describe_owner(99, &list), "pid 99 (exited since)");
        assert!(describe_owner(0, &list).starts_with("an unknown process"));
    }

    #[tokio::test]
    async fn windows_port_owner_comes_from_the_tcp_table() {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let holder = port_holder(port).await.expect("the port is held");
        let me = std::process::id();
        let from_table = tcp_table(AF_INET)
            .map(|bytes| listeners(&bytes, AF_INET))
            .unwrap_or_default()
            .into_iter()
            .find(|l| l.port == port)
            .expect("the listener is in the TCP table");
        // Wine's table (the Windows build's tests run under Wine) names no owners: pid 0. Windows
        // names this process. Either way the holder is never another process.
        if from_table.pid == 0 {
            assert!(holder.starts_with("an unknown process"), "{holder}");
        } else {
            assert_eq!(from_table.pid, me);
            assert!(holder.starts_with(&format!("pid {me} (")), "{holder}");
        }
        drop(listener);
        assert_eq!(port_holder(port).await, None);
    }

    #[tokio::test]
    async fn windows_memory_disk_cpu_and_processes_can_be_read() {
        let (total, available) = meminfo().await.expect("GlobalMemoryStatusEx");
        assert!(total > 0 && available <= total, "{total} {available}");
        let dir = tempfile::tempdir().unwrap();
        let spaced = dir.path().join("Docker Desktop data");
        std::fs::create_dir_all(&spaced).unwrap();
        assert!(free_bytes(&spaced).is_some_and(|free| free > 0));
        assert!(free_bytes(&dir.path().join("missing")).is_none());
        let busy = cpu_busy_percent(Duration::from_millis(50))
            .await
            .expect("GetSystemTimes");
        assert!((0.0..=100.0).contains(&busy), "{busy}");
        let me = std::process::id();
        let list = processes().await;
        let (_, name) = list
            .iter()
            .find(|(pid, _)| *pid == me)
            .expect("this process");
        assert!(!name.to_ascii_lowercase().ends_with(".exe"), "{name}");
    }

    #[test]
    fn windows_data_root_is_docker_desktops_wsl_disks_then_program_data() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("Jane Doe").join("AppData").join("Local");
        let program_data = dir.path().join("ProgramData");
        assert_eq!(
            data_root_in(Some(local.clone()), Some(program_data.clone())).0,
            None
        );
        std::fs::create_dir_all(program_data.join("docker")).unwrap();
        assert_eq!(
            data_root_in(Some(local.clone()), Some(program_data.clone())),
            (Some(program_data.join("docker")), "docker data root")
        );
        std::fs::create_dir_all(local.join("Docker").join("wsl")).unwrap();
        let (root, why) = data_root_in(Some(local.clone()), Some(program_data));
        assert_eq!(root, Some(local.join("Docker").join("wsl")));
        assert_eq!(why, "Docker Desktop's WSL2 disks");
        assert!(
            exe_name(
                &"Docker Desktop.EXE\0junk"
                    .encode_utf16()
                    .collect::<Vec<_>>()
            ) == "Docker Desktop"
        );
    }
}
