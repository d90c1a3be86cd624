//! `target/xtask/state.json`: what a run left for later commands (the engine the harness started,
//! the stack it brought up, its endpoints), and the labels that find a run's resources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Label on every container, network and volume the harness creates: the run id.
pub const LABEL_RUN_ID: &str = "io.xtask.run-id";
/// Label: the harness.toml project name.
pub const LABEL_PROJECT: &str = "io.xtask.project";
/// Label: the repository root, so that `docker-down --all` only touches this repository's runs.
pub const LABEL_ROOT: &str = "io.xtask.root";
/// Label: pid of the harness process that owns the run, to tell dead runs from live ones.
pub const LABEL_PID: &str = "io.xtask.pid";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackState>,
}

/// The engine, as far as the harness is concerned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EngineState {
    /// Where the engine was reached, e.g. `unix:///var/run/docker.sock`.
    pub host: String,
    /// True only when this harness started it; only then may `docker-down --stop-engine` stop it.
    pub started_by_harness: bool,
    /// How it was started: `systemctl`, `service`, `dockerd`, `open -a Docker`, ...
    pub start_method: Option<String>,
    /// Pid of the dockerd the harness spawned itself.
    pub pid: Option<u32>,
}

/// The stack the last `docker-up` brought up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackState {
    pub run_id: String,
    /// The compose project name.
    pub project: String,
    pub compose_file: PathBuf,
    /// `docker compose` or `docker-compose`.
    pub compose_flavour: String,
    pub services: Vec<String>,
    /// Resolved endpoints, name → URL.
    pub endpoints: BTreeMap<String, String>,
    pub isolated: bool,
    /// Environment the compose calls were made with (for `down`).
    #[serde(default)]
    pub compose_env: BTreeMap<String, String>,
    pub started_unix_ms: u64,
}

pub fn path(work_dir: &Path) -> PathBuf {
    work_dir.join("state.json")
}

/// Reads the state; a missing file is an empty state.
pub fn load(work_dir: &Path) -> anyhow::Result<State> {
    let path = path(work_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid state", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the state atomically.
pub fn save(work_dir: &Path, state: &State) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    write_atomic(&path(work_dir), text.as_bytes())
}

/// Reads, changes and writes the state.
pub fn update(work_dir: &Path, change: impl FnOnce(&mut State)) -> anyhow::Result<State> {
    let mut state = load(work_dir)?;
    change(&mut state);
    save(work_dir, &state)?;
    Ok(state)
}

/// Writes a file so that readers see the old or the new content, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&temp, bytes).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("cannot move {} to {}", temp.display(), path.display()))
}

/// A new run id: milliseconds since the epoch and the pid, short and sortable.
pub fn new_run_id() -> String {
    format!("{:x}-{}", unix_ms(), std::process::id())
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether a process with this pid is alive (signal 0).
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks that the pid exists.
    let result = unsafe { libc::kill(pid as libc::pid_t, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A short stable digest of the repository root, for the `io.xtask.root` label.
pub fn root_digest(root: &Path) -> String {
    // FNV-1a: stable across builds (unlike DefaultHasher), and no extra dependency.
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in root.to_string_lossy().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().stack.is_none());
        update(dir.path(), |state| {
            state.engine = Some(EngineState {
                host: "unix:///var/run/docker.sock".into(),
                started_by_harness: true,
                start_method: Some("dockerd".into()),
                pid: Some(42),
            })
        })
        .unwrap();
        let loaded = load(dir.path()).unwrap();
        assert_eq!(loaded.engine.unwrap().pid, Some(42));
    }

    #[test]
    fn liveness_and_digest() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0x7fff_fff0));
        assert_eq!(root_digest(Path::new("/a")), root_digest(Path::new("/a")));
        assert_ne!(root_digest(Path::new("/a")), root_digest(Path::new("/b")));
    }
}
