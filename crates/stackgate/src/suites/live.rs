//! Tests as they run: what a runner says about each test when it starts and ends ([`TestEvent`],
//! [`TestRun`]), read from the harness's pytest plugin (JSON lines it appends to a file of the
//! run, followed here while pytest runs) and from nextest's `libtest-json-plus` lines on stdout.
//! Several processes of one suite may feed one sink: every event names its worker.
//!
//! Not here: the final results (the runners' JUnit files, [super::pytest], [super::nextest]);
//! printing (the gate's sinks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TestOutcome {
    Passed,
    /// An assertion failed.
    Failed,
    /// Its setup or teardown broke.
    Error,
    Skipped,
}

impl TestOutcome {
    pub fn label(self) -> &'static str {
        match self {
            TestOutcome::Passed => "PASS",
            TestOutcome::Failed => "FAIL",
            TestOutcome::Error => "ERROR",
            TestOutcome::Skipped => "SKIP",
        }
    }
}

/// One test that ended, as its runner said when it ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestRun {
    /// The runner's own id: pytest's node id, nextest's `binary$name`.
    pub id: String,
    /// The classname and name of its case in the JUnit report.
    pub classname: String,
    pub name: String,
    pub outcome: TestOutcome,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// The first line of the failure (or of the skip reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The test's file, relative to the repository, and the line the failure points at (the
    /// test's own line in its traceback, else its definition); pytest only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// When it began and ended, by its runner's clock (pytest): the harness reads the plugin's
    /// file every [`FOLLOW_EVERY`], later than that, and its phases' `duration` leaves out
    /// pytest's own time between them.
    #[serde(skip)]
    pub began: Option<std::time::SystemTime>,
    #[serde(skip)]
    pub ended: Option<std::time::SystemTime>,
}

/// What a runner says while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum TestEvent {
    /// A test began. `worker` names the process that runs it (one suite may have several).
    Started {
        worker: String,
        id: String,
        name: String,
    },
    /// A test ended.
    Finished { worker: String, test: TestRun },
}

/// Where a suite's tests are reported as they run (the gate turns them into its events).
pub type TestSink = Arc<dyn Fn(TestEvent) + Send + Sync>;

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e6)
}

fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
}

// ---------------------------------------------------------------------------------------------
// pytest: the plugin's lines.

/// One line the pytest plugin writes.
#[derive(Debug, serde::Deserialize)]
struct PluginLine {
    event: String,
    nodeid: String,
    #[serde(default)]
    worker: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    line: Option<u32>,
    /// Seconds since the epoch, when the plugin wrote the line, and when the test began.
    #[serde(default)]
    at: Option<f64>,
    #[serde(default)]
    began: Option<f64>,
}

/// A path as the report names it: relative to the repository when it lies inside it.
pub fn repo_relative(path: &str, repo_root: Option<&Path>) -> String {
    let relative = repo_root
        .and_then(|root| Path::new(path).strip_prefix(root).ok())
        .map_or_else(|| PathBuf::from(path), Path::to_path_buf);
    relative.to_string_lossy().replace('\\', "/")
}

/// Seconds since the epoch as a time (`None` for nonsense).
fn epoch(seconds: f64) -> Option<std::time::SystemTime> {
    (seconds.is_finite() && seconds > 0.0)
        .then(|| std::time::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// The event for one line of the pytest plugin; `None` for lines it does not know.
pub fn pytest_event(line: &str, repo_root: Option<&Path>) -> Option<TestEvent> {
    let parsed: PluginLine = serde_json::from_str(line).ok()?;
    let worker = parsed.worker.unwrap_or_else(|| "0".to_owned());
    let (classname, name) = super::pytest_case_name(&parsed.nodeid);
    match parsed.event.as_str() {
        "started" => Some(TestEvent::Started {
            worker,
            id: parsed.nodeid,
            name,
        }),
        "finished" => {
            let outcome = match parsed.outcome.as_deref()? {
                "passed" => TestOutcome::Passed,
                "failed" => TestOutcome::Failed,
                "error" => TestOutcome::Error,
                "skipped" => TestOutcome::Skipped,
                _ => return None,
            };
            Some(TestEvent::Finished {
                worker,
                test: TestRun {
                    id: parsed.nodeid,
                    classname,
                    name,
                    outcome,
                    duration: Duration::from_secs_f64(parsed.duration.unwrap_or(0.0).max(0.0)),
                    message: parsed.message.as_deref().and_then(first_line),
                    file: parsed.file.map(|f| repo_relative(&f, repo_root)),
                    line: parsed.line,
                    began: parsed.began.and_then(epoch),
                    ended: parsed.at.and_then(epoch),
                },
            })
        }
        _ => None,
    }
}

/// Follows the file the pytest plugin appends to, handing each event to `sink`, until
/// [`Follower::finish`].
pub struct Follower {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// How often the plugin's file is read while pytest runs.
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

impl Follower {
    pub fn start(path: PathBuf, repo_root: Option<PathBuf>, sink: TestSink) -> Follower {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut offset = 0u64;
            let mut partial = Vec::new();
            loop {
                let last = tokio::select! {
                    _ = &mut stopped => true,
                    () = tokio::time::sleep(FOLLOW_EVERY) => false,
                };
                for line in read_new_lines(&path, &mut offset, &mut partial) {
                    if let Some(event) = pytest_event(&line, repo_root.as_deref()) {
                        sink(event);
                    }
                }
                if last {
                    break;
                }
            }
        });
        Follower { stop, task }
    }

    /// Reads what is left (the runner has exited) and stops; within a second at most.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// The complete lines appended to `path` since `offset`.
fn read_new_lines(path: &Path, offset: &mut u64, partial: &mut Vec<u8>) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if file.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if let Ok(read) = file.read_to_end(&mut bytes) {
        *offset += read as u64;
    }
    partial.extend_from_slice(&bytes);
    let mut lines = Vec::new();
    while let Some(end) = partial.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = partial.drain(..=end).collect();
        lines.push(String::from_utf8_lossy(&line).trim_end().to_owned());
    }
    lines
}

// ---------------------------------------------------------------------------------------------
// nextest: `--message-format libtest-json-plus` on stdout.

/// Reads nextest's libtest-json lines: each suite's line says which binary id a test name's
/// prefix belongs to, so that a test is named as in nextest's JUnit report.
#[derive(Default)]
pub struct NextestLines {
    /// `crate::test_binary` → binary id.
    binaries: Mutex<BTreeMap<String, String>>,
}

#[derive(Debug, serde::Deserialize)]
struct LibtestLine {
    #[serde(rename = "type")]
    kind: String,
    event: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    exec_time: Option<f64>,
    #[serde(default)]
    stdout: Option<String>,
    #[serde(default)]
    nextest: Option<NextestInfo>,
}

#[derive(Debug, serde::Deserialize)]
struct NextestInfo {
    #[serde(rename = "crate")]
    krate: String,
    test_binary: String,
    kind: String,
}

impl NextestLines {
    /// The event for one stdout line; `None` for other lines.
    pub fn event(&self, line: &str) -> Option<TestEvent> {
        let parsed: LibtestLine = serde_json::from_str(line.trim()).ok()?;
        let mut binaries = self.binaries.lock().unwrap_or_else(|p| p.into_inner());
        if parsed.kind == "suite" {
            if let Some(info) = parsed.nextest {
                // nextest's binary ids: the crate for its library, `crate::kind/name` otherwise.
                let id = match info.kind.as_str() {
                    "lib" | "proc-macro" => info.krate.clone(),
                    "test" => format!("{}::{}", info.krate, info.test_binary),
                    other => format!("{}::{other}/{}", info.krate, info.test_binary),
                };
                binaries.insert(format!("{}::{}", info.krate, info.test_binary), id);
            }
            return None;
        }
        if parsed.kind != "test" {
            return None;
        }
        let full = parsed.name?;
        let (prefix, name) = full.split_once('$').unwrap_or(("", full.as_str()));
        let classname = binaries
            .get(prefix)
            .cloned()
            .unwrap_or_else(|| prefix.to_owned());
        let id = format!("{classname}${name}");
        let outcome = match parsed.event.as_str() {
            "started" => {
                return Some(TestEvent::Started {
                    worker: "0".to_owned(),
                    id,
                    name: name.to_owned(),
                })
            }
            "ok" => TestOutcome::Passed,
            "failed" => TestOutcome::Failed,
            "ignored" => TestOutcome::Skipped,
            _ => return None,
        };
        let message = parsed.stdout.as_deref().and_then(panic_message);
        Some(TestEvent::Finished {
            worker: "0".to_owned(),
            test: TestRun {
                id,
                classname,
                name: name.to_owned(),
                outcome,
                duration: Duration::from_secs_f64(parsed.exec_time.unwrap_or(0.0).max(0.0)),
                message,
                file: None,
                line: None,
                began: None,
                ended: None,
            },
        })
    }
}

/// The line after `panicked at ...:` in a Rust test's output, else its first line.
fn panic_message(output: &str) -> Option<String> {
    let mut lines = output.lines();
    while let Some(line) = lines.next() {
        if line.contains("panicked at") {
            return lines
                .next()
                .and_then(first_line)
                .or_else(|| first_line(line));
        }
    }
    first_line(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lines_become_events_with_repository_paths() {
        let root = Path::new("/repo");
        let started = pytest_event(
            r#"{"event": "started", "nodeid": "tests/e2e/test_a.py::test_b[x]", "worker": "gw1"}"#,
            Some(root),
        );
        assert_eq!(
            started,
            Some(TestEvent::Started {
                worker: "gw1".into(),
                id: "tests/e2e/test_a.py::test_b[x]".into(),
                name: "test_b[x]".into()
            })
        );
        let finished = pytest_event(
            r#"{"event": "finished", "nodeid": "e2e/test_a.py::test_c", "outcome": "failed", "duration": 0.25, "message": "\nAssertionError: 1 == 2\nmore", "file": "/repo/tests/e2e/test_a.py", "line": 12}"#,
            Some(root),
        );
        let Some(TestEvent::Finished { worker, test }) = finished else {
            panic!("{finished:?}")
        };
        assert_eq!(worker, "0");
        assert_eq!(test.classname, "e2e.test_a");
        assert_eq!(test.outcome, TestOutcome::Failed);
        assert_eq!(test.duration, Duration::from_millis(250));
        assert_eq!(test.message.as_deref(), Some("AssertionError: 1 == 2"));
        assert_eq!(test.file.as_deref(), Some("tests/e2e/test_a.py"));
        assert_eq!(test.line, Some(12));
        assert_eq!(test.ended, None);
        assert!(pytest_event("collected 3 items", Some(root)).is_none());
        // The plugin's own clock, when it says it.
        let stamped = pytest_event(
            r#"{"event": "finished", "nodeid": "t.py::a", "outcome": "passed", "at": 1700000000.25, "began": 1700000000.0}"#,
            None,
        );
        let Some(TestEvent::Finished { test, .. }) = stamped else {
            panic!("{stamped:?}")
        };
        assert_eq!(
            test.ended,
            Some(std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250))
        );
        assert_eq!(
            test.began,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }

    #[test]
    fn nextest_lines_name_tests_as_its_junit_does() {
        let lines = NextestLines::default();
        assert!(lines
            .event(r#"{"type":"suite","event":"started","test_count":2,"nextest":{"crate":"my-crate","test_binary":"my_crate","kind":"lib"}}"#)
            .is_none());
        lines.event(r#"{"type":"suite","event":"started","test_count":1,"nextest":{"crate":"my-crate","test_binary":"load","kind":"test"}}"#);
        let started = lines
            .event(r#"{"type":"test","event":"started","name":"my-crate::my_crate$tests::adds"}"#);
        assert!(
            matches!(&started, Some(TestEvent::Started { id, .. }) if id == "my-crate$tests::adds"),
            "{started:?}"
        );
        let failed = lines.event(r#"{"type":"test","event":"failed","name":"my-crate::load$many","exec_time":0.5,"stdout":"out\nthread 'many' panicked at src/lib.rs:18:9:\nassertion failed: broken\n"}"#);
        let Some(TestEvent::Finished { test, .. }) = failed else {
            panic!("{failed:?}")
        };
        assert_eq!(test.classname, "my-crate::load");
        assert_eq!(test.name, "many");
        assert_eq!(test.outcome, TestOutcome::Failed);
        assert_eq!(test.message.as_deref(), Some("assertion failed: broken"));
        assert!(lines.event("   Compiling my-crate").is_none());
    }

    #[tokio::test]
    async fn the_follower_reads_what_was_appended_until_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: TestSink = {
            let seen = seen.clone();
            Arc::new(move |event| seen.lock().unwrap().push(event))
        };
        let follower = Follower::start(path.clone(), None, sink);
        std::fs::write(
            &path,
            "{\"event\": \"started\", \"nodeid\": \"t.py::a\"}\n{\"event\": \"fini",
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"shed\", \"nodeid\": \"t.py::a\", \"outcome\": \"passed\"}\n")
            .unwrap();
        follower.finish().await;
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(
            matches!(&seen[1], TestEvent::Finished { test, .. } if test.outcome == TestOutcome::Passed)
        );
    }
}
