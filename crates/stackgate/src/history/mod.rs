//! The run history: every gate run of a checkout in one SQLite file (`target/xtask/history.db`,
//! `[history] path`), written as the run goes by the gate's history sink (`gate::sinks::history`), read back by [`analysis`] for
//! `history`, its `--html` page ([`page`]) and the gate's regression findings.
//!
//! Why SQLite: one file that several gates of one checkout can write at once (WAL, a busy
//! timeout), that a SIGKILL mid-write cannot corrupt (its journal), and that answers "this
//! test over the last 1000 runs" with an index instead of a scan of every run's events.
//!
//! Not here: what a run does (the gate) or how the history is shown (the `history` command).

pub mod analysis;
pub mod page;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use rusqlite::{params, Connection, OptionalExtension};

/// The schema; `user_version` says which one a file holds.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    command TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0,
    verdict TEXT,
    duration_s REAL,
    overhead_s REAL,
    git_commit TEXT NOT NULL DEFAULT '',
    dirty INTEGER NOT NULL DEFAULT 0,
    config_hash TEXT NOT NULL DEFAULT '',
    target TEXT,
    engine TEXT,
    compose TEXT
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    elapsed_s REAL NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_s REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tests (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    suite TEXT NOT NULL,
    test TEXT NOT NULL,
    outcome TEXT NOT NULL,
    duration_s REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS tests_by_name ON tests(suite, test);
CREATE INDEX IF NOT EXISTS steps_by_run ON steps(run_id);
CREATE INDEX IF NOT EXISTS stages_by_run ON stages(run_id);
CREATE INDEX IF NOT EXISTS tests_by_run ON tests(run_id);
";

/// How long a writer waits for another gate's write to finish before it gives up on one event.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open history file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What a run is when it begins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStart {
    pub id: String,
    pub command: String,
    pub started_ms: i64,
    pub config_hash: String,
}

/// A fact about a run learned as it goes (the properties the gate records).
#[derive(Debug, Clone, PartialEq)]
pub enum Fact {
    Commit { commit: String, dirty: bool },
    Target(String),
    Engine(String),
    Compose(String),
}

/// One test's result in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRow {
    pub suite: String,
    pub test: String,
    /// `passed`, `failed`, `error` or `skipped`.
    pub outcome: String,
    pub duration: Duration,
    pub attempts: u32,
}

impl Store {
    /// Opens (and creates, with its directory) the history at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("cannot open the history {}", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // WAL: readers never block the writer, and several gates append without corrupting.
        conn.pragma_update(None, "journal_mode", "WAL")
            .with_context(|| format!("cannot use the history {}", path.display()))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            anyhow::bail!(
                "{} was written by a newer stackgate (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            );
        }
        conn.execute_batch(SCHEMA)
            .with_context(|| format!("cannot create the tables of {}", path.display()))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run begins: recorded at once, unfinished until [`Store::finish`].
    pub fn begin(&self, run: &RunStart) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT OR REPLACE INTO runs (id, command, started_ms, config_hash) VALUES (?1, ?2, ?3, ?4)",
            params![run.id, run.command, run.started_ms, run.config_hash],
        )?;
        Ok(())
    }

    pub fn fact(&self, run_id: &str, fact: &Fact) -> anyhow::Result<()> {
        match fact {
            Fact::Commit { commit, dirty } => self.conn.execute(
                "UPDATE runs SET git_commit = ?2, dirty = ?3 WHERE id = ?1",
                params![run_id, commit, *dirty as i64],
            )?,
            Fact::Target(value) => self.conn.execute(
                "UPDATE runs SET target = ?2 WHERE id = ?1",
                params![run_id, value],
            )?,
            Fact::Engine(value) => self.conn.execute(
                "UPDATE runs SET engine = ?2 WHERE id = ?1",
                params![run_id, value],
            )?,
            Fact::Compose(value) => self.conn.execute(
                "UPDATE runs SET compose = ?2 WHERE id = ?1",
                params![run_id, value],
            )?,
        };
        Ok(())
    }

    pub fn stage(
        &self,
        run_id: &str,
        stage: &str,
        elapsed: Duration,
        outcome: &str,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO stages (run_id, stage, elapsed_s, outcome) VALUES (?1, ?2, ?3, ?4)",
            params![run_id, stage, elapsed.as_secs_f64(), outcome],
        )?;
        Ok(())
    }

    pub fn step(
        &self,
        run_id: &str,
        stage: &str,
        name: &str,
        outcome: &str,
        duration: Duration,
    ) -> anyhow::Result<()> {
        self.conn.execute(
            "INSERT INTO steps (run_id, stage, name, outcome, duration_s) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run_id, stage, name, outcome, duration.as_secs_f64()],
        )?;
        Ok(())
    }

    /// A suite's tests, in one transaction.
    pub fn tests(&mut self, run_id: &str, tests: &[TestRow]) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO tests (run_id, suite, test, outcome, duration_s, attempts) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for test in tests {
                insert.execute(params![
                    run_id,
                    test.suite,
                    test.test,
                    test.outcome,
                    test.duration.as_secs_f64(),
                    test.attempts
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The run is over; the oldest runs past `keep_runs` go.
    pub fn finish(
        &mut self,
        run_id: &str,
        verdict: &str,
        total: Duration,
        overhead: Duration,
        keep_runs: u32,
    ) -> anyhow::Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE runs SET finished = 1, verdict = ?2, duration_s = ?3, overhead_s = ?4 WHERE id = ?1",
            params![run_id, verdict, total.as_secs_f64(), overhead.as_secs_f64()],
        )?;
        tx.execute(
            "DELETE FROM runs WHERE id IN (SELECT id FROM runs ORDER BY started_ms DESC, id DESC LIMIT -1 OFFSET ?1)",
            params![keep_runs],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// How many runs the history holds.
    pub fn run_count(&self) -> anyhow::Result<u64> {
        let count: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM runs", [], |row| row.get(0))?;
        Ok(count as u64)
    }

    /// Whether a run is recorded, and finished.
    pub fn run_finished(&self, run_id: &str) -> anyhow::Result<Option<bool>> {
        Ok(self
            .conn
            .query_row(
                "SELECT finished FROM runs WHERE id = ?1",
                params![run_id],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .map(|finished| finished != 0))
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// Where a checkout keeps its history: `[history] path`, else `target/xtask/history.db`.
pub fn path_of(config: &crate::config::Config) -> PathBuf {
    match &config.history.path {
        Some(path) if path.is_absolute() => path.clone(),
        Some(path) => config.root.join(path),
        None => config.work_dir().join("history.db"),
    }
}

/// The thresholds of a regression, from `[history]`.
pub fn thresholds(config: &crate::config::HistoryCfg) -> analysis::Thresholds {
    analysis::Thresholds {
        ratio: config.regression_ratio.0,
        margin_s: config.regression_margin_s.0,
        ..Default::default()
    }
}

/// A short digest of the configuration's text, so that runs of one config can be told apart
/// from runs of another (FNV-1a: stable across builds and platforms).
pub fn config_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, outcome: &str) -> TestRow {
        TestRow {
            suite: "s".into(),
            test: test.into(),
            outcome: outcome.into(),
            duration: Duration::from_millis(100),
            attempts: 1,
        }
    }

    #[test]
    fn a_run_is_unfinished_until_it_finishes_and_old_runs_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("h/history.db")).unwrap();
        for i in 0..5 {
            let id = format!("r{i}");
            store
                .begin(&RunStart {
                    id: id.clone(),
                    command: "mission-critical".into(),
                    started_ms: i,
                    config_hash: "c".into(),
                })
                .unwrap();
            store.tests(&id, &[row("t", "passed")]).unwrap();
            assert_eq!(store.run_finished(&id).unwrap(), Some(false));
            store
                .finish(&id, "passed", Duration::from_secs(1), Duration::ZERO, 3)
                .unwrap();
            assert_eq!(store.run_finished(&id).unwrap(), Some(true));
        }
        assert_eq!(store.run_count().unwrap(), 3);
        assert_eq!(store.run_finished("r1").unwrap(), None);
        let tests: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM tests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tests, 3, "a dropped run's tests go with it");
    }

    #[test]
    fn a_newer_schema_is_refused_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let error = format!("{:#}", Store::open(&path).err().unwrap());
        assert!(
            error.contains("history.db") && error.contains("newer"),
            "{error}"
        );
    }

    fn begin(store: &Store, id: &str, at: i64) {
        store
            .begin(&RunStart {
                id: id.into(),
                command: "mission-critical".into(),
                started_ms: at,
                config_hash: "c".into(),
            })
            .unwrap();
    }

    #[test]
    fn two_gates_writing_at_once_are_both_recorded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        drop(Store::open(&path).unwrap());
        let writers: Vec<_> = (0..2)
            .map(|gate| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut store = Store::open(&path).unwrap();
                    for run in 0..20 {
                        let id = format!("g{gate}-{run}");
                        begin(&store, &id, run);
                        let tests: Vec<TestRow> =
                            (0..30).map(|t| row(&format!("t{t}"), "passed")).collect();
                        store.tests(&id, &tests).unwrap();
                        store
                            .finish(&id, "passed", Duration::from_secs(1), Duration::ZERO, 1000)
                            .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.run_count().unwrap(), 40);
        let tests: i64 = store
            .conn()
            .query_row("SELECT COUNT(*) FROM tests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tests, 40 * 30);
    }

    /// The writer half of the SIGKILL test: this test binary, run again with the variable set,
    /// writes runs until it is killed.
    #[test]
    fn writer_until_killed() {
        let Some(path) = std::env::var_os("STACKGATE_HISTORY_KILL_TEST") else {
            return;
        };
        let mut store = Store::open(Path::new(&path)).unwrap();
        for run in 0.. {
            let id = format!("k{run}");
            begin(&store, &id, run);
            let tests: Vec<TestRow> = (0..50).map(|t| row(&format!("t{t}"), "passed")).collect();
            store.tests(&id, &tests).unwrap();
            if run == 3 {
                std::fs::write(Path::new(&path).with_extension("ready"), "").unwrap();
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_writer_killed_with_sigkill_leaves_the_history_readable_and_writable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "history::tests::writer_until_killed",
                "--nocapture",
            ])
            .env("STACKGATE_HISTORY_KILL_TEST", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ready = path.with_extension("ready");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer did not get going within 30 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        // Mid-write: it never stops writing.
        child.kill().unwrap();
        child.wait().unwrap();
        let mut store = Store::open(&path).unwrap();
        let check: String = store
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let killed = store.run_count().unwrap();
        assert!(killed >= 4, "{killed}");
        assert_eq!(
            store.run_finished("k0").unwrap(),
            Some(false),
            "recorded unfinished"
        );
        begin(&store, "next", 1_000_000);
        store
            .finish(
                "next",
                "passed",
                Duration::from_secs(1),
                Duration::ZERO,
                1000,
            )
            .unwrap();
        assert_eq!(store.run_finished("next").unwrap(), Some(true));
    }

    #[test]
    fn the_config_hash_is_stable_and_tells_texts_apart() {
        assert_eq!(config_hash("a = 1"), config_hash("a = 1"));
        assert_ne!(config_hash("a = 1"), config_hash("a = 2"));
        assert_eq!(config_hash(""), "cbf29ce484222325");
    }
}
