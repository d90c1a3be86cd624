//! What the integration tests share: the fixtures and the repository, the `stackgate` binary and
//! how a failed run of it is shown, reading a report's run id, whether the engine is there; and,
//! in [suites], the fixture projects the suite tests run.

pub mod suites;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The crate's test fixtures.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The gate's fixture: a small stack with its suites.
pub fn gate_fixture() -> PathBuf {
    fixtures().join("gate")
}

/// Copies a fixture into a test's own directory, without what earlier runs left in it (`target`,
/// `__pycache__`, `.pytest_cache`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if !["target", "__pycache__", ".pytest_cache"]
                .iter()
                .any(|skip| entry.file_name() == *skip)
            {
                copy_dir(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The `stackgate` binary, to be given its arguments.
pub fn stackgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stackgate"))
}

/// A finished run for an assertion's message: its status, stderr and stdout.
pub fn explain(output: &Output) -> String {
    format!(
        "status {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

/// The run id a JUnit report names (its `run_id` property).
pub fn run_id_of(report: &str) -> String {
    let start = report
        .find("name=\"run_id\" value=\"")
        .expect("run id property")
        + "name=\"run_id\" value=\"".len();
    report[start..].split('"').next().unwrap().to_owned()
}

/// The engine and the docker CLI the leftover checks use.
pub fn engine_available() -> bool {
    crate::require::engine().is_some() && crate::require::program("docker", &["version"]).is_some()
}

/// A JUnit path of the test's own, removed afterwards.
pub struct Report(pub tempfile::TempDir);

impl Report {
    pub fn new() -> Report {
        Report(tempfile::tempdir().unwrap())
    }
    pub fn path(&self) -> PathBuf {
        self.0.path().join("junit.xml")
    }
    pub fn text(&self) -> String {
        std::fs::read_to_string(self.path())
            .unwrap_or_else(|e| panic!("no report at {}: {e}", self.path().display()))
    }
}

/// Names of the containers, networks and volumes carrying `label` (`key=value`).
pub fn labelled(label: &str) -> Vec<String> {
    let mut found = Vec::new();
    for kind in [
        &["ps", "-a", "--format", "{{.Names}}"][..],
        &["network", "ls", "--format", "{{.Name}}"],
        &["volume", "ls", "--format", "{{.Name}}"],
    ] {
        let filter = format!("label={label}");
        let out = Command::new("docker")
            .args(kind)
            .args(["--filter", &filter])
            .output()
            .unwrap();
        found.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned),
        );
    }
    found
}

/// Validates a report against the Jenkins JUnit schema the crate embeds.
pub fn xmllint_valid(path: &Path) {
    let Some(xmllint) = crate::require::xmllint() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let xsd = dir.path().join("junit-10.xsd");
    std::fs::write(&xsd, stackgate::junit::JUNIT_XSD).unwrap();
    let out = Command::new(xmllint)
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report does not validate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
