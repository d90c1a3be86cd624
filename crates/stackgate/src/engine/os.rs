//! What the operating system says about a dockerd, and the few things the engine work asks of it:
//! the pid files a killed dockerd (and its containerd) leaves behind, whether a pid is a live
//! dockerd or a zombie (`/proc`), a process's name and command line, SIGTERM to the recorded
//! dockerd, whether we are root. The harness spawns dockerd itself only on Linux: on macOS the
//! pid-file and /proc answers are "nothing known" (there is no /proc), and on Windows, where the
//! engine is Docker Desktop's, only whether a process is gone is asked.
//!
//! Not here: starting processes ([`crate::process`]), deciding what to do about a stale pid file
//! ([`super::restore`]).

use std::path::{Path, PathBuf};

use super::DEFAULT_SOCKET;
use crate::state;

/// What the pid file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PidFile {
    Absent,
    /// It names no live dockerd: dockerd would refuse to start ("pid file found").
    Stale {
        pid: Option<u32>,
        why: String,
    },
    /// A live dockerd (maybe still starting, maybe shutting down). Never touched.
    Live {
        pid: u32,
    },
}

/// Reads the pid file and asks `/proc` (`proc_root`, so tests can fake it) whether the pid is a dockerd.
pub fn inspect_pid_file(path: &Path, proc_root: &Path) -> PidFile {
    inspect_pid_file_of(path, proc_root, "dockerd")
}

/// The containerd pid file under dockerd's exec root (`--exec-root`, default `/var/run/docker`).
/// A killed dockerd leaves it too, and dockerd then waits for a containerd that is gone
/// ("timeout waiting for containerd to start") when the pid is a zombie.
pub fn containerd_pid_file(dockerd_args: &[String]) -> PathBuf {
    let mut exec_root = PathBuf::from("/var/run/docker");
    let mut args = dockerd_args.iter();
    while let Some(arg) = args.next() {
        if arg == "--exec-root" {
            if let Some(value) = args.next() {
                exec_root = PathBuf::from(value);
            }
        } else if let Some(value) = arg.strip_prefix("--exec-root=") {
            exec_root = PathBuf::from(value);
        }
    }
    exec_root.join("containerd").join("containerd.pid")
}

/// [`inspect_pid_file`] for a process named `comm`.
pub fn inspect_pid_file_of(path: &Path, proc_root: &Path, expected: &str) -> PidFile {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PidFile::Absent,
        Err(e) => {
            return PidFile::Stale {
                pid: None,
                why: format!("cannot be read: {e}"),
            }
        }
    };
    let Ok(pid) = text.trim().parse::<u32>() else {
        return PidFile::Stale {
            pid: None,
            why: format!("does not hold a pid (`{}`)", text.trim()),
        };
    };
    match std::fs::read_to_string(proc_root.join(pid.to_string()).join("comm")) {
        Err(_) => PidFile::Stale {
            pid: Some(pid),
            why: format!("pid {pid} is not running"),
        },
        Ok(comm) if comm.trim() == expected => {
            if process_state(proc_root, pid) == Some('Z') {
                PidFile::Stale {
                    pid: Some(pid),
                    why: format!("pid {pid} is a {expected} that has exited (zombie)"),
                }
            } else {
                PidFile::Live { pid }
            }
        }
        Ok(comm) => PidFile::Stale {
            pid: Some(pid),
            why: format!("pid {pid} is `{}`, not {expected}", comm.trim()),
        },
    }
}

/// [`inspect_pid_file_of`] against this machine's `/proc`.
pub(super) fn pid_file_now(path: &Path, expected: &str) -> PidFile {
    inspect_pid_file_of(path, Path::new("/proc"), expected)
}

/// The state letter of `/proc/<pid>/stat` (R, S, Z, ...).
fn process_state(proc_root: &Path, pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name is in parentheses and may hold spaces; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether a process is gone (exited, or a zombie nobody reaped yet). Reaps it when it is our child.
pub fn process_gone(pid: u32) -> bool {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: WNOHANG never blocks; it only reaps when `pid` is our own exited child.
        unsafe {
            let mut status = 0;
            libc::waitpid(pid, &mut status, libc::WNOHANG);
        }
    }
    !state::pid_alive(pid) || process_state(Path::new("/proc"), pid) == Some('Z')
}

/// The addresses a dockerd command line serves (`-H`/`--host`; the default socket when none).
pub fn dockerd_hosts(args: &[String]) -> Vec<String> {
    let mut hosts = Vec::new();
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        if arg == "-H" || arg == "--host" {
            hosts.extend(iter.next().cloned());
        } else if let Some(value) = arg
            .strip_prefix("--host=")
            .or_else(|| arg.strip_prefix("-H="))
        {
            hosts.push(value.to_owned());
        }
    }
    if hosts.is_empty() {
        hosts.push(format!("unix://{DEFAULT_SOCKET}"));
    }
    hosts
}

/// The pid a pid file holds, when it holds one.
pub(super) fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The command name of a process (`/proc/<pid>/comm`), empty when it cannot be read.
pub(super) fn command_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The command line of a process (`/proc/<pid>/cmdline`), empty when it cannot be read.
pub(super) fn command_line(pid: u32) -> Vec<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// Asks one process (the dockerd the harness recorded, never a group) to exit: SIGTERM.
pub(super) fn terminate(pid: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
        // SAFETY: kill sends a signal to the one pid given; the caller checked it is our dockerd.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(windows)]
    {
        // Windows has no "please exit" for a process that is not ours: the harness never spawns
        // dockerd there (Docker Desktop is started and stopped by its own means).
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("pid {pid}: the harness stops a dockerd it spawned only on Linux and macOS"),
        ))
    }
}

/// Whether the harness runs as root (installing packages with apt-get needs it; there is no
/// apt-get on Windows, so never there).
pub(super) fn is_root() -> bool {
    #[cfg(unix)]
    {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }
    #[cfg(windows)]
    {
        false
    }
}

/// Where the Docker Desktop installer put it (`InstallLocation` of its uninstall entry in the
/// registry, machine-wide or for this user). Windows only.
pub(super) fn desktop_install_location() -> Option<PathBuf> {
    #[cfg(windows)]
    {
        use windows_sys::Win32::System::Registry::{HKEY_CURRENT_USER, HKEY_LOCAL_MACHINE};
        let key = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\Docker Desktop";
        [HKEY_LOCAL_MACHINE, HKEY_CURRENT_USER]
            .into_iter()
            .find_map(|root| registry_string(root, key, "InstallLocation"))
            .filter(|location| !location.trim().is_empty())
            .map(PathBuf::from)
    }
    #[cfg(not(windows))]
    {
        None
    }
}

/// A string value from the registry (`REG_SZ` or `REG_EXPAND_SZ`, expanded); the harness is a
/// 64-bit program, so it reads the 64-bit view, where the Docker Desktop installer writes.
#[cfg(windows)]
fn registry_string(
    root: windows_sys::Win32::System::Registry::HKEY,
    key: &str,
    value: &str,
) -> Option<String> {
    use windows_sys::Win32::Foundation::ERROR_SUCCESS;
    use windows_sys::Win32::System::Registry::{RegGetValueW, RRF_RT_REG_SZ};
    let wide = |text: &str| text.encode_utf16().chain([0]).collect::<Vec<u16>>();
    let (key, value) = (wide(key), wide(value));
    // REG_EXPAND_SZ values come back expanded, as REG_SZ (asking for REG_EXPAND_SZ itself is
    // refused unless expansion is turned off).
    let flags = RRF_RT_REG_SZ;
    let mut size = 0u32;
    // SAFETY: NUL-terminated names; a null buffer asks for the size only.
    let status = unsafe {
        RegGetValueW(
            root,
            key.as_ptr(),
            value.as_ptr(),
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut size,
        )
    };
    if status != ERROR_SUCCESS || size == 0 {
        return None;
    }
    let mut buffer = vec![0u16; (size as usize).div_ceil(2)];
    // SAFETY: the buffer holds `size` bytes.
    let status = unsafe {
        RegGetValueW(
            root,
            key.as_ptr(),
            value.as_ptr(),
            flags,
            std::ptr::null_mut(),
            buffer.as_mut_ptr().cast(),
            &mut size,
        )
    };
    if status != ERROR_SUCCESS {
        return None;
    }
    let end = buffer.iter().position(|c| *c == 0).unwrap_or(buffer.len());
    Some(String::from_utf16_lossy(&buffer[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(root: &Path, pid: u32, comm: &str, state: char) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{pid} ({comm}) {state} 1 {pid} {pid} 0 -1"),
        )
        .unwrap();
    }

    #[test]
    fn pid_file_states() {
        let dir = tempfile::tempdir().unwrap();
        let proc_root = dir.path().join("proc");
        let pid_file = dir.path().join("docker.pid");
        assert_eq!(inspect_pid_file(&pid_file, &proc_root), PidFile::Absent);

        std::fs::write(&pid_file, "4242").unwrap();
        assert_eq!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale {
                pid: Some(4242),
                why: "pid 4242 is not running".into()
            }
        );
        fake_proc(&proc_root, 4242, "bash", 'S');
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { why, .. } if why.contains("`bash`, not dockerd")
        ));
        fake_proc(&proc_root, 4242, "dockerd", 'S');
        assert_eq!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Live { pid: 4242 }
        );
        fake_proc(&proc_root, 4242, "dockerd", 'Z');
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { why, .. } if why.contains("zombie")
        ));
        std::fs::write(&pid_file, "garbage\n").unwrap();
        assert!(matches!(
            inspect_pid_file(&pid_file, &proc_root),
            PidFile::Stale { pid: None, .. }
        ));
    }

    #[test]
    fn dockerd_command_lines_name_what_they_serve() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            dockerd_hosts(&args(&["dockerd"])),
            vec!["unix:///var/run/docker.sock"]
        );
        assert_eq!(
            dockerd_hosts(&args(&[
                "/usr/sbin/dockerd",
                "--host",
                "unix:///tmp/u/d.sock",
                "-H=tcp://127.0.0.1:2375",
                "--pidfile",
                "/tmp/u/p"
            ])),
            vec!["unix:///tmp/u/d.sock", "tcp://127.0.0.1:2375"]
        );
    }

    #[test]
    fn containerd_pid_file_follows_the_exec_root() {
        assert_eq!(
            containerd_pid_file(&[]),
            Path::new("/var/run/docker/containerd/containerd.pid")
        );
        let args = ["--data-root", "/d", "--exec-root", "/tmp/u/exec"].map(String::from);
        assert_eq!(
            containerd_pid_file(&args),
            Path::new("/tmp/u/exec/containerd/containerd.pid")
        );
        assert_eq!(
            containerd_pid_file(&["--exec-root=/x".to_owned()]),
            Path::new("/x/containerd/containerd.pid")
        );
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("containerd.pid");
        std::fs::write(&pid_file, "77").unwrap();
        fake_proc(&dir.path().join("proc"), 77, "containerd", 'S');
        assert_eq!(
            inspect_pid_file_of(&pid_file, &dir.path().join("proc"), "containerd"),
            PidFile::Live { pid: 77 }
        );
    }

    #[cfg(windows)]
    #[test]
    fn windows_registry_strings_are_read() {
        use windows_sys::Win32::System::Registry::HKEY_LOCAL_MACHINE;
        let root = registry_string(
            HKEY_LOCAL_MACHINE,
            r"SOFTWARE\Microsoft\Windows NT\CurrentVersion",
            "SystemRoot",
        )
        .expect("every Windows has its SystemRoot in the registry");
        assert_eq!(root.as_bytes().get(1), Some(&b':'), "{root}");
        assert_eq!(
            registry_string(HKEY_LOCAL_MACHINE, r"SOFTWARE\no such key", "x"),
            None
        );
    }

    #[test]
    fn process_state_reads_past_parentheses() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 7, "a) b", 'R');
        assert_eq!(process_state(dir.path(), 7), Some('R'));
        assert_eq!(process_state(dir.path(), 8), None);
    }
}
