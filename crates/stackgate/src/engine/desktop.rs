//! Docker Desktop and colima, the engines of the desktop platforms, as data: where
//! `Docker Desktop.exe` is installed (the registry's install location, `%ProgramFiles%`, a
//! per-user install), the state of Docker Desktop's Windows service as `sc.exe` prints it, whether
//! the WSL2 backend runs as `wsl.exe -l -v` and Docker Desktop's log tell it, which colima profile
//! a socket belongs to, and how a desktop engine the harness started is stopped again. Pure
//! functions over text and paths, tested on every platform (and as a Windows program under Wine).
//!
//! Not here: running those programs and waiting for the engine ([`super::start`]), the registry
//! call itself ([`super::os`]).

use std::path::{Path, PathBuf};

/// Docker Desktop's Windows service (the runbook starts it by hand first).
pub const DESKTOP_SERVICE: &str = "com.docker.service";

/// The distribution Docker Desktop's WSL2 backend runs its engine in.
pub const DESKTOP_DISTRO: &str = "docker-desktop";

/// Where `Docker Desktop.exe` may be, most authoritative first: the install location the
/// installer wrote in the registry, the machine-wide default under `%ProgramFiles%`, a per-user
/// install under `%LOCALAPPDATA%\Programs`.
pub fn desktop_exe_candidates(
    install_location: Option<&Path>,
    program_files: Option<&Path>,
    local_app_data: Option<&Path>,
) -> Vec<PathBuf> {
    let exe = "Docker Desktop.exe";
    let mut list = Vec::new();
    list.extend(install_location.map(|dir| dir.join(exe)));
    list.extend(program_files.map(|dir| dir.join("Docker").join("Docker").join(exe)));
    list.extend(
        local_app_data.map(|dir| dir.join("Programs").join("Docker").join("Docker").join(exe)),
    );
    list.dedup();
    list
}

/// A Windows service's state, as `sc.exe query NAME` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceState {
    Running,
    Stopped,
    /// START_PENDING, STOP_PENDING, PAUSED, ...: it is on its way somewhere.
    Other(String),
    /// `FAILED 1060`: the service does not exist (Docker Desktop runs without it on some setups).
    NotInstalled,
    /// `sc.exe` failed otherwise, or printed something this does not understand.
    Unknown(String),
}

/// Reads `sc.exe query` output: `STATE              : 4  RUNNING`, or `FAILED 1060:`.
pub fn parse_sc_query(text: &str) -> ServiceState {
    if let Some(code) = sc_failure(text) {
        return match code {
            1060 => ServiceState::NotInstalled,
            code => ServiceState::Unknown(format!("sc.exe failed with error {code}")),
        };
    }
    let state = text.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "STATE").then(|| value.split_whitespace().nth(1).map(str::to_owned))?
    });
    match state.as_deref() {
        Some("RUNNING") => ServiceState::Running,
        Some("STOPPED") => ServiceState::Stopped,
        Some(other) => ServiceState::Other(other.to_owned()),
        None => ServiceState::Unknown(last_line(text)),
    }
}

/// The Win32 error code of `[SC] StartService FAILED 5:` (any `FAILED N:` line).
pub fn sc_failure(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let rest = line.split("FAILED").nth(1)?;
        rest.trim()
            .trim_end_matches(':')
            .split(':')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

/// What `sc.exe start com.docker.service` did, for a person: `Ok` when the service runs or is on
/// its way, `Err` with why not (never fatal: Docker Desktop starts the service itself when it may).
pub fn sc_start_outcome(text: &str) -> Result<String, String> {
    let service = DESKTOP_SERVICE;
    match sc_failure(text) {
        None => match parse_sc_query(text) {
            ServiceState::Running | ServiceState::Other(_) => Ok(format!("started {service}")),
            state => Err(format!(
                "`sc.exe start {service}` printed no running state ({state:?})"
            )),
        },
        Some(1056) => Ok(format!("{service} was already running")),
        Some(5) => Err(format!(
            "{service} could not be started: access is denied (the harness is not elevated)"
        )),
        Some(1058) => Err(format!("{service} is disabled")),
        Some(1060) => Err(format!("{service} is not installed")),
        Some(code) => Err(format!(
            "`sc.exe start {service}` failed with error {code}: {}",
            last_line(text)
        )),
    }
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// One line of `wsl.exe -l -v`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WslDistro {
    pub name: String,
    /// `Running`, `Stopped`, `Installing`, ...
    pub state: String,
    pub version: Option<u8>,
    /// Marked `*`: the default distribution.
    pub default: bool,
}

/// `wsl.exe` prints UTF-16LE unless `WSL_UTF8=1` is set (and older builds ignore that): both
/// are read.
pub fn decode_wsl_output(bytes: &[u8]) -> String {
    let utf16 = bytes.len() >= 2 && bytes.iter().skip(1).step_by(2).take(8).all(|b| *b == 0);
    let text = if utf16 {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };
    text.trim_start_matches('\u{feff}').replace('\r', "")
}

/// The distributions of `wsl.exe -l -v` (`  NAME STATE VERSION` then one line each, `*` marking
/// the default).
pub fn parse_wsl_list(text: &str) -> Vec<WslDistro> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (default, line) = match line.strip_prefix('*') {
                Some(rest) => (true, rest.trim_start()),
                None => (false, line),
            };
            let mut words = line.split_whitespace();
            let (name, state) = (words.next()?, words.next()?);
            let version = words.next().and_then(|v| v.parse().ok());
            if name == "NAME" && state == "STATE" {
                return None;
            }
            version.map(|version| WslDistro {
                name: name.to_owned(),
                state: state.to_owned(),
                version: Some(version),
                default,
            })
        })
        .collect()
}

/// The WSL2 backend as the cause of an engine that did not answer, when that is what
/// `wsl.exe -l -v` (`wsl_list`: its output, or why it did not run) and Docker Desktop's log say.
pub fn wsl_cause(wsl_list: Result<&str, &str>, desktop_log: &str) -> Option<String> {
    let log_line = desktop_log
        .lines()
        .rev()
        .find(|line| {
            let lower = line.to_ascii_lowercase();
            lower.contains("wsl")
                && ["error", "fail", "terminated", "not running", "cannot"]
                    .iter()
                    .any(|word| lower.contains(word))
        })
        .map(|line| format!("; Docker Desktop's log: {}", line.trim()));
    match wsl_list {
        Err(why) => Some(format!(
            "the WSL2 backend is not available: `wsl.exe -l -v` {why}{}",
            log_line.unwrap_or_default()
        )),
        Ok(text) => {
            let distros = parse_wsl_list(text);
            let lower = text.to_ascii_lowercase();
            if distros.is_empty()
                && (lower.contains("no installed distributions") || lower.contains("not installed"))
            {
                return Some(format!(
                    "the WSL2 backend is not installed: `wsl.exe -l -v` says `{}`{}",
                    last_line(text),
                    log_line.unwrap_or_default()
                ));
            }
            match distros.iter().find(|d| d.name == DESKTOP_DISTRO) {
                Some(distro) if distro.state != "Running" => Some(format!(
                    "the WSL2 backend is not running: `wsl.exe -l -v` shows {} {}{}",
                    distro.name,
                    distro.state,
                    log_line.unwrap_or_default()
                )),
                Some(_) => log_line.map(|line| {
                    format!("the WSL2 backend runs, but{}", line.trim_start_matches(';'))
                }),
                None => log_line.map(|line| {
                    format!(
                        "the WSL2 backend is not running (no {DESKTOP_DISTRO} distribution){line}"
                    )
                }),
            }
        }
    }
}

/// The colima profile whose socket this is (`~/.colima/<profile>/docker.sock`).
pub fn colima_profile(home: &Path, socket: &Path) -> Option<String> {
    let rest = socket.strip_prefix(home.join(".colima")).ok()?;
    let mut parts = rest.iter();
    let profile = parts.next()?.to_str()?.to_owned();
    (parts.next()? == "docker.sock" && parts.next().is_none()).then_some(profile)
}

/// The colima socket of a profile.
pub fn colima_socket(home: &Path, profile: &str) -> PathBuf {
    home.join(".colima").join(profile).join("docker.sock")
}

/// Docker Desktop's own socket on macOS (it links `/var/run/docker.sock` to it when allowed).
pub fn desktop_socket(home: &Path) -> PathBuf {
    home.join(".docker").join("run").join("docker.sock")
}

/// `colima start`, with `--profile` when it is not the default one.
pub fn colima_start(profile: &str) -> Vec<String> {
    colima_argv("start", profile)
}

fn colima_argv(verb: &str, profile: &str) -> Vec<String> {
    let mut argv = vec!["colima".to_owned(), verb.to_owned()];
    if profile != "default" {
        argv.extend(["--profile".to_owned(), profile.to_owned()]);
    }
    argv
}

/// How to stop a desktop engine the harness started, by the start method recorded in the run
/// store: quit Docker Desktop (macOS: through AppleScript; Windows: its CLI, Docker Desktop 4.37
/// and later), `colima stop` for the profile it started.
pub fn stop_argv(method: &str) -> Option<Vec<String>> {
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    if method == "open -a Docker" {
        return Some(owned(&["osascript", "-e", r#"quit app "Docker""#]));
    }
    if method == WINDOWS_DESKTOP_METHOD {
        return Some(owned(&["docker", "desktop", "stop"]));
    }
    let rest = method.strip_prefix("colima start")?;
    let profile = match rest.trim().strip_prefix("--profile") {
        Some(profile) => profile.trim(),
        None if rest.trim().is_empty() => "default",
        None => return None,
    };
    Some(colima_argv("stop", profile))
}

/// The start method recorded for Docker Desktop on Windows.
pub const WINDOWS_DESKTOP_METHOD: &str = "Docker Desktop.exe";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desktop_exe_is_looked_for_in_the_registry_location_then_program_files_then_per_user() {
        let list = desktop_exe_candidates(
            Some(Path::new(r"D:\Apps\Docker Desktop")),
            Some(Path::new(r"C:\Program Files")),
            Some(Path::new(r"C:\Users\Jane Doe\AppData\Local")),
        );
        let shown: Vec<String> = list.iter().map(|p| p.display().to_string()).collect();
        let separator = std::path::MAIN_SEPARATOR;
        assert_eq!(
            shown,
            vec![
                format!(r"D:\Apps\Docker Desktop{separator}Docker Desktop.exe"),
                format!(
                    r"C:\Program Files{separator}Docker{separator}Docker{separator}Docker Desktop.exe"
                ),
                format!(
                    r"C:\Users\Jane Doe\AppData\Local{separator}Programs{separator}Docker{separator}Docker{separator}Docker Desktop.exe"
                ),
            ]
        );
        assert!(desktop_exe_candidates(None, None, None).is_empty());
    }

    #[test]
    fn windows_sc_query_output_gives_the_service_state() {
        let running = "\r\nSERVICE_NAME: com.docker.service \r\n        TYPE               : 10  WIN32_OWN_PROCESS  \r\n        STATE              : 4  RUNNING \r\n                                (STOPPABLE, NOT_PAUSABLE, IGNORES_SHUTDOWN)\r\n        WIN32_EXIT_CODE    : 0  (0x0)\r\n";
        assert_eq!(parse_sc_query(running), ServiceState::Running);
        let stopped = running.replace("4  RUNNING", "1  STOPPED");
        assert_eq!(parse_sc_query(&stopped), ServiceState::Stopped);
        let pending = running.replace("4  RUNNING", "2  START_PENDING");
        assert_eq!(
            parse_sc_query(&pending),
            ServiceState::Other("START_PENDING".into())
        );
        let missing = "[SC] EnumQueryServicesStatus:OpenService FAILED 1060:\r\n\r\nThe specified service does not exist as an installed service.\r\n";
        assert_eq!(parse_sc_query(missing), ServiceState::NotInstalled);
        assert_eq!(sc_failure(missing), Some(1060));
        assert!(matches!(
            parse_sc_query("garbage"),
            ServiceState::Unknown(_)
        ));
    }

    #[test]
    fn windows_sc_start_outcomes_are_named() {
        let started = "\r\nSERVICE_NAME: com.docker.service \r\n        STATE              : 2  START_PENDING \r\n";
        assert_eq!(
            sc_start_outcome(started),
            Ok("started com.docker.service".into())
        );
        let denied = "[SC] StartService: OpenService FAILED 5:\r\n\r\nAccess is denied.\r\n";
        assert_eq!(sc_failure(denied), Some(5));
        assert!(sc_start_outcome(denied)
            .unwrap_err()
            .contains("access is denied (the harness is not elevated)"));
        let already = "[SC] StartService FAILED 1056:\r\n\r\nAn instance of the service is already running.\r\n";
        assert_eq!(
            sc_start_outcome(already),
            Ok("com.docker.service was already running".into())
        );
        let other = "[SC] StartService FAILED 1053:\r\n\r\nThe service did not respond to the start or control request in a timely fashion.\r\n";
        let error = sc_start_outcome(other).unwrap_err();
        assert!(
            error.contains("1053") && error.contains("did not respond"),
            "{error}"
        );
    }

    #[test]
    fn windows_wsl_list_is_read_in_utf16_and_utf8() {
        let text = "  NAME                   STATE           VERSION\r\n* Ubuntu-22.04           Running         2\r\n  docker-desktop         Stopped         2\r\n";
        let utf16: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        for bytes in [utf16.as_slice(), text.as_bytes()] {
            let distros = parse_wsl_list(&decode_wsl_output(bytes));
            assert_eq!(
                distros,
                vec![
                    WslDistro {
                        name: "Ubuntu-22.04".into(),
                        state: "Running".into(),
                        version: Some(2),
                        default: true
                    },
                    WslDistro {
                        name: "docker-desktop".into(),
                        state: "Stopped".into(),
                        version: Some(2),
                        default: false
                    },
                ]
            );
        }
    }

    #[test]
    fn windows_wsl2_backend_not_running_is_named_as_the_cause() {
        let stopped = "  NAME              STATE      VERSION\n* docker-desktop    Stopped    2\n";
        assert_eq!(
            wsl_cause(Ok(stopped), "").as_deref(),
            Some("the WSL2 backend is not running: `wsl.exe -l -v` shows docker-desktop Stopped")
        );
        let running = stopped.replace("Stopped", "Running");
        assert_eq!(wsl_cause(Ok(&running), "all fine\n"), None);
        let log = "[2025-01-01] starting\n[2025-01-01] error: WSL distro terminated abruptly\n";
        assert_eq!(
            wsl_cause(Ok(&running), log).as_deref(),
            Some("the WSL2 backend runs, but Docker Desktop's log: [2025-01-01] error: WSL distro terminated abruptly")
        );
        let none = "Windows Subsystem for Linux has no installed distributions.\n";
        assert!(wsl_cause(Ok(none), "")
            .unwrap()
            .starts_with("the WSL2 backend is not installed"));
        assert!(wsl_cause(Err("could not run: program not found"), "")
            .unwrap()
            .contains("could not run"));
        // Nothing says WSL: it is not blamed.
        assert_eq!(wsl_cause(Ok("  NAME STATE VERSION\n"), "timeout\n"), None);
    }

    #[test]
    fn colima_profiles_come_from_their_sockets() {
        let home = Path::new("/Users/me");
        assert_eq!(
            colima_profile(home, &colima_socket(home, "default")).as_deref(),
            Some("default")
        );
        assert_eq!(
            colima_profile(home, Path::new("/Users/me/.colima/work/docker.sock")).as_deref(),
            Some("work")
        );
        assert_eq!(colima_profile(home, &desktop_socket(home)), None);
        assert_eq!(colima_start("default"), vec!["colima", "start"]);
        assert_eq!(
            colima_start("work"),
            vec!["colima", "start", "--profile", "work"]
        );
    }

    #[test]
    fn desktop_engines_the_harness_started_are_stopped_their_own_way() {
        assert_eq!(
            stop_argv("open -a Docker").unwrap(),
            vec!["osascript", "-e", r#"quit app "Docker""#]
        );
        assert_eq!(stop_argv("colima start").unwrap(), vec!["colima", "stop"]);
        assert_eq!(
            stop_argv("colima start --profile work").unwrap(),
            vec!["colima", "stop", "--profile", "work"]
        );
        assert_eq!(
            stop_argv(WINDOWS_DESKTOP_METHOD).unwrap(),
            vec!["docker", "desktop", "stop"]
        );
        assert_eq!(stop_argv("dockerd"), None);
    }
}
