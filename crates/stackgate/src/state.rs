//! The one run store, `target/xtask/state.json`: the engine the harness started, and every stack
//! the harness keeps or is running, keyed by run id (a kept `docker-up` stack, a gate's own run
//! while it lives, stacks kept by `--keep`). Every change goes through [`Store::update`], which
//! holds one lock (in this process and across processes) around read, change and write.
//! Also here: run ids, the labels that find a run's resources (the owner's come from
//! [crate::owner]), atomic writes.
//!
//! Not here: what a stack is made of or how it is removed ([crate::stack]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::clock::unix_ms;

/// Label on every container, network and volume the harness creates: the run id.
pub const LABEL_RUN_ID: &str = "io.xtask.run-id";
/// Label: the harness.toml project name.
pub const LABEL_PROJECT: &str = "io.xtask.project";
/// Label: the repository root, so that `docker-down --all` only touches this repository's runs.
pub const LABEL_ROOT: &str = "io.xtask.root";
pub use crate::owner::{pid_alive, Owner, LABEL_BOOT, LABEL_HOST, LABEL_PID, LABEL_PID_START};

/// How long a writer waits for another process's lock on the store before giving up.
const LOCK_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct State {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineState>,
    /// Every stack the harness keeps or is running, by run id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stacks: BTreeMap<String, StackRecord>,
    /// The one-slot record of earlier versions; moved into `stacks` when read.
    #[serde(default, rename = "stack", skip_serializing)]
    legacy_stack: Option<StackState>,
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

/// One stack in the store: what it is, who owns it, whether it outlives its owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackRecord {
    pub stack: StackState,
    /// The process that brought it up.
    pub owner: Owner,
    /// Kept on purpose (`docker-up`, `--keep`, `--keep-on-failure`): never swept as a dead run;
    /// only `docker-down` removes it.
    #[serde(default)]
    pub kept: bool,
    /// What the stack's `up` measured per service, which `health` reports later.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceRecord>,
    /// A warm stack a later `--reuse` run may take (see `stack::reuse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseRecord>,
}

/// What makes a kept stack reusable: the key it was kept under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReuseRecord {
    /// Hash of the normalised compose model, the images' ids, the build contexts, the compose
    /// program, `[stack]` and `[endpoints]`.
    pub key: String,
    pub kept_unix_ms: u64,
}

/// What `up` measured for one service.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub container: String,
    pub time_to_healthy_s: f64,
    pub noticed_ms: Option<f64>,
}

/// A stack the harness brought up.
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
    /// The engine it runs on (`unix:///var/run/docker.sock`, `tcp://10.0.3.2:2375`), which
    /// `health` and `docker-down` talk to; absent in records of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    pub started_unix_ms: u64,
}

impl State {
    /// The kept stacks, newest first.
    pub fn kept(&self) -> Vec<&StackRecord> {
        let mut kept: Vec<&StackRecord> = self.stacks.values().filter(|r| r.kept).collect();
        kept.sort_by_key(|r| std::cmp::Reverse(r.stack.started_unix_ms));
        kept
    }

    /// The stack a command acts on: the one named by `run_id`, else the newest kept one.
    pub fn chosen(&self, run_id: Option<&str>) -> Option<&StackRecord> {
        match run_id {
            Some(id) => self.stacks.get(id),
            None => self.kept().into_iter().next(),
        }
    }
}

/// The store of one checkout: `<work dir>/state.json`, beside the runs' own directories.
#[derive(Debug, Clone)]
pub struct Store {
    work_dir: PathBuf,
}

/// One writer at a time within this process (the file lock covers other processes; a second
/// lock of the same file from this process would not wait on some platforms).
static IN_PROCESS: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl Store {
    pub fn new(work_dir: impl Into<PathBuf>) -> Store {
        Store {
            work_dir: work_dir.into(),
        }
    }

    /// `target/xtask` of this configuration.
    pub fn of(config: &crate::config::Config) -> Store {
        Store::new(config.work_dir())
    }

    pub fn path(&self) -> PathBuf {
        self.work_dir.join("state.json")
    }

    /// `<work dir>/runs/<run id>`: a run's own files (its compose override, logs, results).
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.work_dir.join("runs").join(run_id)
    }

    /// Reads the state; a missing file is an empty state. Writes are atomic, so a read never
    /// sees a torn file and needs no lock.
    pub fn read(&self) -> anyhow::Result<State> {
        let path = self.path();
        let mut state: State = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid state", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Some(stack) = state.legacy_stack.take() {
            // An earlier version recorded one stack, kept by `docker-up`, with no owner.
            state
                .stacks
                .entry(stack.run_id.clone())
                .or_insert(StackRecord {
                    stack,
                    owner: Owner::default(),
                    kept: true,
                    services: BTreeMap::new(),
                    reuse: None,
                });
        }
        Ok(state)
    }

    /// Reads, changes and writes the state under the store's lock; returns what `change` did.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> anyhow::Result<T> {
        let _in_process = IN_PROCESS.lock().unwrap_or_else(|e| e.into_inner());
        let _across_processes = self.lock_file()?;
        let mut state = self.read()?;
        let result = change(&mut state);
        let text = serde_json::to_string_pretty(&state)?;
        write_atomic(&self.path(), text.as_bytes())?;
        Ok(result)
    }

    /// Records a stack (a new one, or new facts about one).
    pub fn put_stack(&self, record: StackRecord) -> anyhow::Result<()> {
        self.update(|state| {
            state.stacks.insert(record.stack.run_id.clone(), record);
        })
    }

    /// Forgets a stack; returns its record when there was one.
    pub fn remove_stack(&self, run_id: &str) -> anyhow::Result<Option<StackRecord>> {
        self.update(|state| state.stacks.remove(run_id))
    }

    fn lock_file(&self) -> anyhow::Result<std::fs::File> {
        std::fs::create_dir_all(&self.work_dir)
            .with_context(|| format!("cannot create {}", self.work_dir.display()))?;
        let path = self.work_dir.join("state.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let began = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(std::fs::TryLockError::WouldBlock) if began.elapsed() < LOCK_DEADLINE => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
                    "{} is held by another harness process for over {}s",
                    path.display(),
                    LOCK_DEADLINE.as_secs()
                ),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
        }
    }
}

/// Writes a file so that readers see the old or the new content, never a torn one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&temp, bytes).with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path)
        .with_context(|| format!("cannot move {} to {}", temp.display(), path.display()))
}

/// A new run id: milliseconds since the epoch and the pid, short and sortable.
pub fn new_run_id() -> String {
    format!("{:x}-{}", unix_ms(), std::process::id())
}

/// When a run began, from its id ([`new_run_id`]'s milliseconds); `None` for ids made otherwise.
pub fn run_started_ms(run_id: &str) -> Option<u64> {
    let (time, _) = run_id.split_once('-')?;
    u64::from_str_radix(time, 16).ok()
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

/// The labels every container, network and volume of a run carries, the smoke container's
/// included.
pub fn run_labels(
    config: &crate::config::Config,
    run_id: &str,
    owner: &Owner,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_RUN_ID.to_owned(), run_id.to_owned()),
        (LABEL_PROJECT.to_owned(), config.project.name.0.clone()),
        (LABEL_ROOT.to_owned(), root_digest(&config.root)),
    ]);
    labels.extend(owner.labels());
    labels
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A recorded stack for tests (also the stack record's).
    pub(crate) fn stack(run_id: &str, started_unix_ms: u64) -> StackState {
        StackState {
            run_id: run_id.into(),
            project: format!("p-{run_id}"),
            compose_file: "compose.yaml".into(),
            compose_flavour: "docker compose".into(),
            services: vec!["web".into()],
            endpoints: BTreeMap::new(),
            isolated: true,
            compose_env: BTreeMap::new(),
            engine: None,
            started_unix_ms,
        }
    }

    #[test]
    fn the_store_holds_every_stack_and_chooses_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.read().unwrap().stacks.is_empty());
        for (id, at, kept) in [("a", 1, true), ("b", 3, false), ("c", 2, true)] {
            store
                .put_stack(StackRecord {
                    stack: stack(id, at),
                    owner: Owner::me(),
                    kept,
                    services: BTreeMap::new(),
                    reuse: None,
                })
                .unwrap();
        }
        let state = store.read().unwrap();
        assert_eq!(state.stacks.len(), 3);
        assert_eq!(state.chosen(None).unwrap().stack.run_id, "c");
        assert_eq!(state.chosen(Some("b")).unwrap().stack.run_id, "b");
        assert!(state.chosen(Some("zz")).is_none());
        assert_eq!(store.remove_stack("c").unwrap().unwrap().stack.run_id, "c");
        assert_eq!(
            store.read().unwrap().chosen(None).unwrap().stack.run_id,
            "a"
        );
    }

    #[test]
    fn a_one_slot_state_of_an_earlier_version_is_read_as_a_kept_stack() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let legacy = serde_json::json!({
            "engine": {"host": "unix:///var/run/docker.sock", "started_by_harness": true,
                       "start_method": "dockerd", "pid": 42},
            "stack": stack("old", 5),
        });
        std::fs::write(store.path(), legacy.to_string()).unwrap();
        let state = store.read().unwrap();
        assert_eq!(state.engine.unwrap().pid, Some(42));
        assert!(state.stacks["old"].kept);
        // Written back in the new shape.
        store.update(|_| ()).unwrap();
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(store.path()).unwrap()).unwrap();
        assert!(written.get("stack").is_none(), "{written}");
        assert_eq!(written["stacks"]["old"]["stack"]["run_id"], "old");
    }

    #[test]
    fn concurrent_updates_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = Store::new(dir.path());
                std::thread::spawn(move || {
                    store
                        .put_stack(StackRecord {
                            stack: stack(&format!("r{i}"), i),
                            owner: Owner::me(),
                            kept: false,
                            services: BTreeMap::new(),
                            reuse: None,
                        })
                        .unwrap()
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(Store::new(dir.path()).read().unwrap().stacks.len(), 8);
    }

    #[test]
    fn liveness_and_digest() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0x7fff_fff0));
        let id = new_run_id();
        let began = run_started_ms(&id).unwrap();
        assert!(unix_ms() >= began && unix_ms() - began < 60_000, "{id}");
        assert_eq!(run_started_ms("custom"), None);
        assert_eq!(root_digest(Path::new("/a")), root_digest(Path::new("/a")));
        assert_ne!(root_digest(Path::new("/a")), root_digest(Path::new("/b")));
    }
}
