//! The suite tests' fixture projects (`tests/fixtures/suites`), each copied into a directory of
//! its own with the venv they all share, what a suite is run with, and the checks their results
//! get: a case by name, the result as the report holds it, a process group gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stackgate::config::{self, Config, SuiteCfg, TargetKind};
use stackgate::junit::{self, Case, Report, SuiteResult};
use stackgate::suites::{self, PythonEnv, SuiteEnv};

/// Whether Python and xmllint are both there (each says so when it is not).
pub fn python_and_xmllint() -> bool {
    crate::require::python().is_some() && crate::require::xmllint().is_some()
}

/// A fixture project of the suite tests.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/suites")
        .join(name)
}

/// A copy of a fixture project in its own temporary directory (so that `target/xtask` is the
/// test's own), its config loaded, the venv shared by every test of this binary.
pub struct Project {
    _dir: tempfile::TempDir,
    pub config: Config,
}

fn shared_venv() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("suites-venv")
}

pub fn project(name: &str) -> Project {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join(name);
    super::copy_dir(&fixture(name), &root);
    let mut config = config::load(Some(&root.join("harness.toml"))).unwrap();
    config.python.venv = shared_venv();
    Project { _dir: dir, config }
}

impl Project {
    pub fn suite(&self, name: &str) -> SuiteCfg {
        self.config
            .suites
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no suite {name}"))
            .clone()
    }
    pub async fn python(&self) -> PythonEnv {
        suites::python_env(&self.config).await.unwrap()
    }
}

pub fn env(target: TargetKind) -> SuiteEnv {
    SuiteEnv {
        durations: None,
        target,
        run_id: "run-42".into(),
        endpoints: BTreeMap::new(),
        extra: BTreeMap::new(),
        skip_markers: Vec::new(),
        secrets: Vec::new(),
        stop: None,
        retries: None,
    }
}

pub fn case<'a>(result: &'a SuiteResult, name: &str) -> &'a Case {
    result
        .cases
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name} in {result:#?}"))
}

/// The result as the report would hold it: written, checked against the schema, read back.
pub fn assert_reportable(result: &SuiteResult) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junit.xml");
    let report = Report {
        name: "test".into(),
        suites: vec![result.clone()],
        ..Report::default()
    };
    junit::write(&report, &path).unwrap();
    assert!(
        junit::validate_xsd(&path).unwrap(),
        "xmllint is not installed (the test asks crate::require::xmllint first)"
    );
    let reread = junit::parse_cases(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(reread.len(), result.counts().tests);
}

/// Processes of a group that are still alive (zombies do not count: pid 1 here may not reap).
fn live_members(pgid: i32) -> Vec<i32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            live.push(pid);
        }
    }
    live
}

/// Waits (at most 10 s) for every process of the group to be gone.
pub async fn assert_group_gone(pgid: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live = live_members(pgid);
        if live.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes of group {pgid} still alive after 10s: {live:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
