//! The machine as macOS tells it, through its own tools (there is no /proc): memory from
//! `sysctl -n hw.memsize` and `vm_stat`, CPU load from `top -l 2`, who listens on a port from
//! `lsof`, the process list from `ps`, and the disk image of Docker Desktop or colima as the data
//! root. Free disk space is statvfs ([`super::free_bytes`]). The parsing of what each tool prints
//! is pure and tested on every platform.
//!
//! Not here: what counts as enough ([`crate::preflight`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::process::Cmd;

/// How long one of the tools may take (top's sample aside).
const TOOL_DEADLINE: Duration = Duration::from_secs(10);

/// What `argv` printed on stdout, when it ran and succeeded within `deadline`.
async fn stdout_of(argv: &[&str], deadline: Duration) -> Option<String> {
    let finished = Cmd::from_argv(argv).ok()?.output(deadline).await.ok()?;
    finished.success().then_some(finished.stdout)
}

/// `(total, available)` in bytes: `hw.memsize`, and the free, inactive and speculative pages of
/// `vm_stat` (what macOS hands out without swapping).
pub(in crate::preflight) async fn meminfo() -> Option<(u64, u64)> {
    let total = stdout_of(&["sysctl", "-n", "hw.memsize"], TOOL_DEADLINE)
        .await?
        .trim()
        .parse()
        .ok()?;
    let available = parse_vm_stat(&stdout_of(&["vm_stat"], TOOL_DEADLINE).await?)?;
    Some((total, available.min(total)))
}

/// Available bytes from `vm_stat`'s output: (free + inactive + speculative) pages × page size.
pub(super) fn parse_vm_stat(text: &str) -> Option<u64> {
    let page_size: u64 = text
        .lines()
        .next()?
        .split("page size of ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let pages = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split(':')
            .nth(1)?
            .trim()
            .trim_end_matches('.')
            .parse()
            .ok()
    };
    let free = pages("Pages free")?;
    let inactive = pages("Pages inactive").unwrap_or(0);
    let speculative = pages("Pages speculative").unwrap_or(0);
    Some((free + inactive + speculative) * page_size)
}

/// Where Docker Desktop or colima keep the engine's disk (its free space is what images use).
pub(in crate::preflight) fn docker_data_root() -> (Option<PathBuf>, &'static str) {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return (None, "working directory; HOME is not set");
    };
    let desktop = home.join("Library/Containers/com.docker.docker/Data");
    if desktop.is_dir() {
        return (Some(desktop), "Docker Desktop's disk image");
    }
    let colima = home.join(".colima");
    if colima.is_dir() {
        return (Some(colima), "colima's disk");
    }
    (
        None,
        "working directory; no Docker Desktop or colima data found",
    )
}

/// Busy share of all CPUs over `sample` (whole seconds, at least one): the last of two samples
/// of `top -l 2` (its first sample has nothing to compare with).
pub(in crate::preflight) async fn cpu_busy_percent(sample: Duration) -> Option<f64> {
    let seconds = sample.as_secs_f64().ceil().max(1.0) as u64;
    let text = stdout_of(
        &["top", "-l", "2", "-n", "0", "-s", &seconds.to_string()],
        TOOL_DEADLINE + Duration::from_secs(seconds * 2),
    )
    .await?;
    parse_top_cpu(&text)
}

/// `CPU usage: 12.5% user, 8.33% sys, 79.16% idle` (the last such line) → 20.84.
pub(super) fn parse_top_cpu(text: &str) -> Option<f64> {
    let line = text.lines().rev().find(|l| l.starts_with("CPU usage:"))?;
    let idle = line
        .split(',')
        .find(|part| part.trim_end().ends_with("idle"))?
        .split('%')
        .next()?
        .trim()
        .parse::<f64>()
        .ok()?;
    Some((100.0 - idle).clamp(0.0, 100.0))
}

/// Who listens on `port`: `lsof -nP -iTCP:PORT -sTCP:LISTEN -Fpc`, else whether it can be bound.
pub async fn port_holder(port: u16) -> Option<String> {
    let filter = format!("-iTCP:{port}");
    let argv = ["lsof", "-nP", &filter, "-sTCP:LISTEN", "-Fpc"];
    // lsof exits 1 when it finds nothing; its output is what counts.
    let printed = match Cmd::from_argv(&argv) {
        Ok(cmd) => cmd.output(TOOL_DEADLINE).await.ok().map(|f| f.stdout),
        Err(_) => None,
    };
    if let Some((pid, name)) = printed.as_deref().and_then(parse_lsof) {
        return Some(format!("pid {pid} ({name})"));
    }
    // Another user's socket (lsof sees only this user's without root), or no lsof.
    super::port_taken(port).then(|| "an unknown process (cannot read its owner)".to_owned())
}

/// The first process in `lsof -F pc` output (`p1234` then `cnginx`).
pub(super) fn parse_lsof(text: &str) -> Option<(u32, String)> {
    let mut pid = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix('p') {
            pid = value.trim().parse().ok();
        } else if let (Some(value), Some(found)) = (line.strip_prefix('c'), pid) {
            return Some((found, value.to_owned()));
        }
    }
    pid.map(|pid| (pid, "name unknown".to_owned()))
}

/// Every process's pid and executable name (`ps -axco pid=,comm=`).
pub async fn processes() -> Vec<(u32, String)> {
    stdout_of(&["ps", "-axco", "pid=,comm="], TOOL_DEADLINE)
        .await
        .map(|text| parse_ps(&text))
        .unwrap_or_default()
}

/// `  345 Docker Desktop` lines → (345, "Docker Desktop"): names may hold spaces.
pub(super) fn parse_ps(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|line| {
            let (pid, name) = line.trim_start().split_once(char::is_whitespace)?;
            Some((pid.parse().ok()?, name.trim().to_owned()))
        })
        .collect()
}

/// Whether the process list can be read at all (`ps` runs).
pub(in crate::preflight) fn process_list_readable() -> bool {
    which::which("ps").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macos_vm_stat_gives_free_inactive_and_speculative_pages() {
        let text = "Mach Virtual Memory Statistics: (page size of 16384 bytes)\n\
            Pages free:                               3893.\n\
            Pages active:                           242744.\n\
            Pages inactive:                         239167.\n\
            Pages speculative:                        2208.\n\
            Pages throttled:                             0.\n\
            Pages wired down:                        97634.\n\
            \"Translation faults\":                 1234567.\n";
        assert_eq!(parse_vm_stat(text), Some((3893 + 239167 + 2208) * 16384));
        assert_eq!(parse_vm_stat("no header\nPages free: 1.\n"), None);
    }

    #[test]
    fn macos_top_gives_the_last_samples_busy_share() {
        let text = "Processes: 512 total\n\
            CPU usage: 3.0% user, 2.0% sys, 95.0% idle \n\
            Processes: 512 total\n\
            CPU usage: 12.5% user, 8.33% sys, 79.16% idle \n";
        let busy = parse_top_cpu(text).unwrap();
        assert!((busy - 20.84).abs() < 0.001, "{busy}");
        assert_eq!(parse_top_cpu("nothing"), None);
    }

    #[test]
    fn macos_lsof_names_the_listener() {
        assert_eq!(
            parse_lsof("p1234\ncnginx\nf5\n"),
            Some((1234, "nginx".to_owned()))
        );
        assert_eq!(
            parse_lsof("p77\nccom.docker.backend\np78\ncother\n"),
            Some((77, "com.docker.backend".to_owned()))
        );
        assert_eq!(parse_lsof(""), None);
    }

    #[test]
    fn macos_ps_keeps_names_with_spaces() {
        let text = "    1 launchd\n  345 Docker Desktop\n 9999 colima\nnot a line\n";
        assert_eq!(
            parse_ps(text),
            vec![
                (1, "launchd".to_owned()),
                (345, "Docker Desktop".to_owned()),
                (9999, "colima".to_owned()),
            ]
        );
    }
}
