//! The pytest runner: the plugin the harness adds (it records every collected test with its
//! markers and selects the shard), the command line (markers deselected on the target, JUnit
//! output), and reading what pytest left into a [`SuiteResult`]: its JUnit cases, the tests
//! deselected by marker or left unfinished by the deadline, and what its exit code means.
//!
//! Not here: the venv ([super::python]), the deadline and the process group ([super::runner]
//! over [crate::process]), the JUnit format itself ([crate::junit]).

use std::collections::{BTreeMap, BTreeSet};

use super::live::Follower;
use super::plan::{Collection, PlanTest};
use super::{
    add_error, child_env, command_line, errored, printed, results_dir, run_runner, run_stem,
    runner, shard_of, stopped_reason, Mode, PythonEnv, SuiteEnv, SuiteRun, COLLECT_TIMEOUT,
};
use crate::config::{Config, SuiteCfg};
use crate::junit::{self, Case, Status, SuiteResult};
use crate::process::Cmd;

/// The pytest plugin the harness adds (`-p xtask_pytest`): it records every collected test with
/// its markers before any deselection, and, after the markers deselected theirs, keeps only this
/// shard's tests: by duration when `XTASK_PYTEST_DURATIONS` names them (the same split as
/// [`super::shard::split`], from the loads in `XTASK_PYTEST_LOADS`; the kept node ids written to
/// `XTASK_PYTEST_ASSIGN`), else by the same FNV-1a hash as [`shard_of`]; for a worker of the plan,
/// only the node ids in `XTASK_PYTEST_ONLY` (once collected, it waits for its turn while
/// `XTASK_PYTEST_WAIT` names a file that does not exist yet). It reports each test as it starts
/// and ends.
const PYTEST_PLUGIN: &str = r#""""Written by `cargo xtask`: records the collected tests, selects this shard, reports each
test as it starts and ends."""
import json
import os
import time

import pytest


def _fnv1a(text):
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _case_key(nodeid):
    # pytest's JUnit classname and name (its mangle_test_address), as the report keys them.
    at = nodeid.find("[")
    path, params = (nodeid[:at], nodeid[at:]) if at >= 0 else (nodeid, "")
    names = path.split("::")
    names[0] = names[0].replace("/", ".")
    if names[0].endswith(".py"):
        names[0] = names[0][:-3]
    last = names.pop() + params
    return ".".join(names) + "::" + last


def _by_duration(items, count, planned, mean, loads, whole=None):
    # The harness planned the recorded tests; the others go, at the suite's mean and in the
    # order of their keys, each to the shard with the least time so far; all of them to one
    # shard when the harness keeps the suite whole.
    if whole is not None:
        return {item.nodeid: whole for item in items}
    shard_of = {}
    unknown = []
    for item in items:
        key = _case_key(item.nodeid)
        if key in planned:
            shard_of[item.nodeid] = planned[key]
        else:
            unknown.append((key, item.nodeid))
    for _, nodeid in sorted(unknown):
        least = min(range(count), key=lambda k: (loads[k], k))
        loads[least] += mean
        shard_of[nodeid] = least + 1
    return shard_of


_WORKER = os.environ.get("XTASK_WORKER") or os.environ.get("PYTEST_XDIST_WORKER") or "0"
# node id -> (absolute path, line of its definition), the failing line, its reports so far.
_WHERE = {}
_FAILED_AT = {}
_STATE = {}


def _emit(record):
    events = os.environ.get("XTASK_PYTEST_EVENTS")
    if not events:
        return
    record["worker"] = _WORKER
    # The harness reads this file every so often: the test's own time places it on the timeline.
    record["at"] = time.time()
    line = (json.dumps(record) + "\n").encode("utf-8")
    # One appending write per line: several workers may share the file.
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _path_of(item):
    path = getattr(item, "path", None) or getattr(item, "fspath", None)
    return str(path) if path is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        line = item.location[1]
        _WHERE[item.nodeid] = (_path_of(item), line + 1 if line is not None else None)
    record = os.environ.get("XTASK_PYTEST_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as out:
            for item in items:
                markers = sorted({mark.name for mark in item.iter_markers()})
                out.write(json.dumps({"nodeid": item.nodeid, "markers": markers}) + "\n")


class _ShardSelection:
    """After the markers deselected theirs (trylast): keeps this shard's tests, and of those a
    worker's share."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        self._shard(config, items)
        self._only(config, items)

    def _shard(self, config, items):
        shard = os.environ.get("XTASK_PYTEST_SHARD")
        if not shard:
            return
        index, count = (int(part) for part in shard.split("/"))
        durations = os.environ.get("XTASK_PYTEST_DURATIONS")
        if durations:
            with open(durations, encoding="utf-8") as source:
                known = json.load(source)
            loads = [float(x) for x in os.environ["XTASK_PYTEST_LOADS"].split(",")]
            shard_of = _by_duration(items, count, known["plan"], known["mean"], loads, known.get("whole"))
            keep = [item for item in items if shard_of[item.nodeid] == index]
            # Every test of the split with its shard: what the harness reports for this shard.
            with open(os.environ["XTASK_PYTEST_ASSIGN"], "w", encoding="utf-8") as out:
                out.writelines(json.dumps([item.nodeid, shard_of[item.nodeid]]) + "\n" for item in items)
        else:
            keep = [item for item in items if _fnv1a(item.nodeid) % count == index - 1]
        kept = {item.nodeid for item in keep}
        drop = [item for item in items if item.nodeid not in kept]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def _only(self, config, items):
        only = os.environ.get("XTASK_PYTEST_ONLY")
        if not only:
            return
        # A worker of the harness's plan: only its share, a file of node ids.
        with open(only, encoding="utf-8") as source:
            wanted = {line.rstrip("\n") for line in source if line.strip()}
        keep = [item for item in items if item.nodeid in wanted]
        drop = [item for item in items if item.nodeid not in wanted]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def _take(queue, by_id):
    """The next test of the suite's queue (`NNNNN.todo` files, one node id each, in the harness's
    order): taken by renaming its file to `NNNNN.<worker>`, which only one worker can do. A test
    this worker did not collect stays taken by it; the harness reports it."""
    for name in sorted(os.listdir(queue)):
        if not name.endswith(".todo"):
            continue
        mine = os.path.join(queue, name[: -len(".todo")] + "." + _WORKER)
        try:
            os.rename(os.path.join(queue, name), mine)
        except OSError:
            continue  # another worker took it
        with open(mine, encoding="utf-8") as source:
            item = by_id.get(source.read().strip())
        if item is not None:
            return item
    return None


class _Next:
    """The test after this one, taken from the queue only when pytest asks what it needs (at this
    one's teardown, to keep the fixtures they share): a worker never holds a test that another
    could run while it runs its own."""

    def __init__(self, take):
        self._take = take
        self._taken = False
        self._item = None

    def item(self):
        if not self._taken:
            self._taken = True
            self._item = self._take()
        return self._item

    def listchain(self):
        item = self.item()
        return item.listchain() if item is not None else []

    def __getattr__(self, name):
        item = self.item()
        if item is None:
            raise AttributeError(name)
        return getattr(item, name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    queue = os.environ.get("XTASK_PYTEST_QUEUE")
    if not queue or session.config.option.collectonly:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} errors during collection")
    by_id = {item.nodeid: item for item in session.items}
    item = _take(queue, by_id)
    while item is not None:
        upcoming = _Next(lambda: _take(queue, by_id))
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=upcoming)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        item = upcoming.item()
    return True


def pytest_collection_finish(session):
    go = os.environ.get("XTASK_PYTEST_WAIT")
    if go and not os.path.exists(go):
        # A worker started ahead of its turn: collected, it waits for the harness's word (its
        # deadline, the harness's, ends the wait if that never comes).
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"xtask: worker {_WORKER} collected, waiting for its turn ({go})")
        # The harness starts the next worker once this one is ready.
        open(go + ".ready", "w").close()
        while not os.path.exists(go):
            time.sleep(0.02)


def pytest_configure(config):
    config.pluginmanager.register(_ShardSelection(), "xtask_shard_selection")


def pytest_deselected(items):
    record = os.environ.get("XTASK_PYTEST_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as out:
            for item in items:
                out.write(json.dumps({"nodeid": item.nodeid, "markers": [], "deselected": True}) + "\n")


def pytest_runtest_logstart(nodeid, location):
    _STATE[nodeid] = {"outcome": "passed", "duration": 0.0, "message": None, "began": time.time()}
    _emit({"event": "started", "nodeid": nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    made = yield
    report = made.get_result()
    if report.failed and call.excinfo is not None and item.nodeid not in _FAILED_AT:
        # The deepest line of the test's own file in the traceback: where it failed.
        path = _path_of(item)
        for entry in reversed(list(call.excinfo.traceback)):
            if str(entry.path) == path:
                _FAILED_AT[item.nodeid] = entry.lineno + 1
                break


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])
    return str(report.longrepr) if report.longrepr else None


def pytest_runtest_logreport(report):
    state = _STATE.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "message": None})
    state["duration"] += getattr(report, "duration", 0.0) or 0.0
    if report.failed:
        if state["outcome"] not in ("failed", "error"):
            state["outcome"] = "failed" if report.when == "call" else "error"
            state["message"] = _message(report)
    elif report.skipped and state["outcome"] == "passed":
        state["outcome"] = "skipped"
        reason = getattr(report, "wasxfail", None)
        state["message"] = "xfail: " + reason if reason is not None else _message(report)


def pytest_runtest_logfinish(nodeid, location):
    state = _STATE.pop(nodeid, {"outcome": "passed", "duration": 0.0, "message": None})
    path, line = _WHERE.get(nodeid, (None, None))
    _emit({
        "event": "finished",
        "nodeid": nodeid,
        "outcome": state["outcome"],
        "duration": state["duration"],
        "message": state["message"],
        "file": path,
        "line": _FAILED_AT.get(nodeid, line),
        "began": state.get("began"),
    })
"#;

/// Why the run's selection leaves a test out (a skip marker of the target, the arguments);
/// `None` when it selects it.
fn left_out(
    item: &Collected,
    deselected: &BTreeSet<&str>,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
) -> Option<String> {
    let marked = env
        .skip_markers
        .iter()
        .find(|m| item.markers.iter().any(|have| have == *m));
    match marked {
        Some(marker) => Some(format!(
            "deselected on the {} target: marked `{marker}`",
            env.target
        )),
        None if deselected.contains(item.nodeid.as_str()) => {
            Some(if suite_run.extra_args.is_empty() {
                "deselected by the suite's arguments".to_owned()
            } else {
                format!(
                    "deselected by the arguments `{}`",
                    suite_run.extra_args.join(" ")
                )
            })
        }
        None => None,
    }
}

/// The tests a run of the suite will select, for the plan ([super::plan]): collected with the
/// run's own arguments and markers, each with its markers, and the ones it leaves out, skipped
/// with the reason. `Err`: why they could not be collected (the suite then runs whole).
pub(super) async fn collect_plan(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: &PythonEnv,
    suite_run: &SuiteRun,
) -> Result<Collection, String> {
    let result = run_pytest(config, suite, env, py, suite_run, Mode::Plan).await;
    if let Some(error) = result.error {
        return Err(error);
    }
    let stem = run_stem(suite, suite_run, Mode::Plan);
    let record = results_dir(config, env).join(format!("{stem}.collected.jsonl"));
    let lines: Vec<Collected> = std::fs::read_to_string(&record)
        .map_err(|e| format!("cannot read {}: {e}", record.display()))?
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let deselected: BTreeSet<&str> = lines
        .iter()
        .filter(|item| item.deselected)
        .map(|item| item.nodeid.as_str())
        .collect();
    let in_shard = ShardFilter::read(
        suite_run.shard,
        &results_dir(config, env).join(format!("{stem}.assigned")),
    );
    let mut collection = Collection {
        collected: lines
            .iter()
            .filter(|item| !item.deselected)
            .map(|item| item.nodeid.clone())
            .collect(),
        ..Collection::default()
    };
    for item in lines
        .iter()
        .filter(|item| !item.deselected && in_shard.keeps(item))
    {
        let (classname, name) = pytest_case_name(&item.nodeid);
        let key = super::shard::case_key(&classname, &name);
        collection.order.push(key.clone());
        match left_out(item, &deselected, env, suite_run) {
            Some(reason) => collection
                .skipped
                .push(Case::skipped(classname, name, reason)),
            None => collection.tests.push(PlanTest {
                id: item.nodeid.clone(),
                key,
                markers: item.markers.clone(),
            }),
        }
    }
    Ok(collection)
}

/// The node ids of a suite's queue ([super::workers]) in the harness's order: still to take
/// (`NNNNN.todo`), or taken by `worker`.
pub(super) fn queued(queue: &std::path::Path, owner: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(queue)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.split_once('.').is_some_and(|(_, who)| who == owner))
        .collect();
    names.sort();
    names
        .iter()
        .filter_map(|name| std::fs::read_to_string(queue.join(name)).ok())
        .map(|id| id.trim().to_owned())
        .collect()
}

/// Every node id a worker of the plan collected, before its selection (its plugin's record);
/// empty when it wrote none.
pub(super) fn worker_collected(
    config: &Config,
    env: &SuiteEnv,
    suite: &SuiteCfg,
    shard: Option<crate::flags::Shard>,
    worker: &str,
) -> Vec<String> {
    let stem = format!("{}.{worker}", super::file_stem(suite, shard));
    let record = results_dir(config, env).join(format!("{stem}.collected.jsonl"));
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Collected>(l).ok())
        .filter(|item| !item.deselected)
        .map(|item| item.nodeid)
        .collect()
}

/// The tests a worker began, and those it finished (by node id, as cases), as its plugin said.
fn worker_events(
    events: &std::path::Path,
) -> (BTreeSet<String>, std::collections::BTreeMap<String, Case>) {
    use super::live::{TestEvent, TestOutcome};
    let text = std::fs::read_to_string(events).unwrap_or_default();
    let mut began = BTreeSet::new();
    let finished = text
        .lines()
        .filter_map(|line| match super::live::pytest_event(line, None) {
            Some(TestEvent::Finished { test, .. }) => Some(test),
            Some(TestEvent::Started { id, .. }) => {
                began.insert(id);
                None
            }
            None => None,
        })
        .map(|test| {
            let message = test.message.clone().unwrap_or_default();
            let status = match test.outcome {
                TestOutcome::Passed => Status::Passed,
                TestOutcome::Failed => Status::Failed {
                    message,
                    output: String::new(),
                },
                TestOutcome::Error => Status::Error {
                    message,
                    output: String::new(),
                },
                TestOutcome::Skipped => Status::Skipped { reason: message },
            };
            let case = Case::new(&test.classname, &test.name, status).with_time(test.duration);
            (test.id, case)
        })
        .collect();
    (began, finished)
}

/// Which collected tests belong to this run's shard. Split by duration, the plugin wrote the
/// shard of every test it split (`assigned`); tests deselected before the split (by marker, by
/// the suite's arguments) are placed by hash, as without durations, so that each is reported,
/// skipped, by exactly one shard.
struct ShardFilter {
    shard: Option<crate::flags::Shard>,
    split: BTreeMap<String, u32>,
}

impl ShardFilter {
    fn read(shard: Option<crate::flags::Shard>, assigned: &std::path::Path) -> ShardFilter {
        let split = match shard {
            Some(_) => std::fs::read_to_string(assigned)
                .unwrap_or_default()
                .lines()
                .filter_map(|line| serde_json::from_str::<(String, u32)>(line).ok())
                .collect(),
            None => BTreeMap::new(),
        };
        ShardFilter { shard, split }
    }

    fn keeps(&self, item: &Collected) -> bool {
        match (self.shard, self.split.get(&item.nodeid)) {
            (Some(shard), Some(placed)) => *placed == shard.index,
            (Some(shard), None) => shard_of(&item.nodeid, shard.count) == shard.index,
            (None, _) => true,
        }
    }
}

/// A test pytest collected (or, `deselected`, one it then left out: by marker, `-k`, shard).
#[derive(Debug, Clone, serde::Deserialize)]
struct Collected {
    nodeid: String,
    markers: Vec<String>,
    #[serde(default)]
    deselected: bool,
}

/// pytest's JUnit classname and name for a node id (as its `mangle_test_address` does):
/// `tests/test_a.py::TestX::test_y[1]` → (`tests.test_a.TestX`, `test_y[1]`).
pub fn pytest_case_name(nodeid: &str) -> (String, String) {
    let (path, params) = match nodeid.find('[') {
        Some(at) => (&nodeid[..at], &nodeid[at..]),
        None => (nodeid, ""),
    };
    let mut names: Vec<String> = path.split("::").map(str::to_owned).collect();
    names[0] = names[0].replace('/', ".");
    if let Some(stripped) = names[0].strip_suffix(".py") {
        names[0] = stripped.to_owned();
    }
    let last = names.pop().unwrap_or_default() + params;
    (names.join("."), last)
}

/// Runs (or, in [`Mode::Collect`], only collects) a pytest suite under its deadline.
pub(super) async fn run_pytest(
    config: &Config,
    suite: &SuiteCfg,
    env: &SuiteEnv,
    py: &PythonEnv,
    suite_run: &SuiteRun,
    mode: Mode,
) -> SuiteResult {
    let shard = suite_run.shard;
    let deadline = match mode {
        Mode::Run => suite_run
            .deadline
            .unwrap_or_else(|| suite.timeout_s.duration()),
        Mode::Collect | Mode::Plan => COLLECT_TIMEOUT.min(suite.timeout_s.duration()),
    };
    let dir = results_dir(config, env);
    let plugin_dir = config.work_dir().join("pytest");
    let stem = run_stem(suite, suite_run, mode);
    // A worker of the plan runs only its share: these node ids, one a line.
    let only = suite_run.only.as_ref().filter(|_| mode == Mode::Run);
    let only_path = dir.join(format!("{stem}.ids"));
    let junit_path = dir.join(format!("{stem}.xml"));
    let record_path = dir.join(format!("{stem}.collected.jsonl"));
    let assign_path = dir.join(format!("{stem}.assigned"));
    let durations_path = dir.join(format!("{stem}.durations.json"));
    // `--shard` by duration: the plan's shard of each of this suite's recorded tests, the time
    // the plan put on each shard and the suite's mean, for the plugin's split.
    let by_duration = shard
        .zip(env.durations.as_deref())
        .map(|(shard, durations)| {
            let plan = durations.plan(shard.count);
            let planned = plan.shards.get(&suite.name).cloned().unwrap_or_default();
            let known = serde_json::json!({
                "plan": planned,
                "mean": durations.mean(&suite.name),
                "whole": plan.whole.get(&suite.name),
            });
            (plan.loads, known)
        });
    let events_path = dir.join(format!("{stem}.events.jsonl"));
    let log_path = dir.join(format!("{stem}.log"));
    let prepared = (|| -> anyhow::Result<()> {
        std::fs::create_dir_all(&dir)?;
        let plugin = plugin_dir.join("xtask_pytest.py");
        if std::fs::read_to_string(&plugin).ok().as_deref() != Some(PYTEST_PLUGIN) {
            crate::state::write_atomic(&plugin, PYTEST_PLUGIN.as_bytes())?;
        }
        if let Some((_, known)) = &by_duration {
            crate::state::write_atomic(&durations_path, serde_json::to_string(known)?.as_bytes())?;
        }
        for stale in [&junit_path, &record_path, &events_path, &assign_path] {
            match std::fs::remove_file(stale) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        if let Some(ids) = only {
            let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
            crate::state::write_atomic(&only_path, text.as_bytes())?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        return errored(
            suite,
            format!("cannot prepare {}: {e:#}", dir.display()),
            "",
        );
    }

    let mut args: Vec<String> = vec!["-m".into(), "pytest".into()];
    args.extend(suite.args.iter().cloned());
    if mode != Mode::Collect {
        args.extend(suite_run.extra_args.iter().cloned());
    }
    args.extend(
        ["-p", "no:cacheprovider", "-p", "xtask_pytest", "-q"]
            .iter()
            .map(|s| s.to_string()),
    );
    match mode {
        Mode::Run => {
            args.push(format!("--junitxml={}", junit_path.display()));
            // Failing tests keep their captured output in the report.
            args.extend(
                [
                    "-o",
                    "junit_logging=all",
                    "-o",
                    "junit_log_passing_tests=false",
                ]
                .iter()
                .map(|s| s.to_string()),
            );
        }
        Mode::Collect | Mode::Plan => args.push("--collect-only".into()),
    }
    // The plan collects what the run will select: the same arguments and markers.
    if mode != Mode::Collect && !env.skip_markers.is_empty() {
        let expression = env
            .skip_markers
            .iter()
            .map(|m| format!("not {m}"))
            .collect::<Vec<_>>()
            .join(" and ");
        args.push("-m".into());
        args.push(expression);
    }

    let python_path = super::python::prepend_to_search_path(
        &plugin_dir,
        std::env::var("PYTHONPATH").ok().as_deref(),
    );
    let command = runner(Cmd::new(&py.python))
        .args(&args)
        .current_dir(&config.root)
        .envs(child_env(suite, env, Some(py)))
        .env("PYTHONPATH", python_path)
        .env("XTASK_PYTEST_RECORD", &record_path)
        .env("XTASK_PYTEST_EVENTS", &events_path)
        .log_to(&log_path);
    let command = match shard {
        Some(shard) => command.env(
            "XTASK_PYTEST_SHARD",
            format!("{}/{}", shard.index, shard.count),
        ),
        None => command.env_remove("XTASK_PYTEST_SHARD"),
    };
    let command = match only {
        Some(_) => command.env("XTASK_PYTEST_ONLY", &only_path),
        None => command.env_remove("XTASK_PYTEST_ONLY"),
    };
    let queue = suite_run.queue.as_ref().filter(|_| mode == Mode::Run);
    let command = match queue {
        Some(queue) => command.env("XTASK_PYTEST_QUEUE", queue),
        None => command.env_remove("XTASK_PYTEST_QUEUE"),
    };
    let command = match suite_run.wait.as_ref().filter(|_| mode == Mode::Run) {
        Some(go) => command.env("XTASK_PYTEST_WAIT", go),
        None => command.env_remove("XTASK_PYTEST_WAIT"),
    };
    let command = match &suite_run.worker {
        Some(worker) => command.env("XTASK_WORKER", worker),
        None => command,
    };
    let command = match &by_duration {
        Some((loads, _)) => command
            .env("XTASK_PYTEST_DURATIONS", &durations_path)
            .env(
                "XTASK_PYTEST_LOADS",
                loads
                    .iter()
                    .map(f64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .env("XTASK_PYTEST_ASSIGN", &assign_path),
        None => command
            .env_remove("XTASK_PYTEST_DURATIONS")
            .env_remove("XTASK_PYTEST_LOADS")
            .env_remove("XTASK_PYTEST_ASSIGN"),
    };
    let line = command_line(&py.python, &args);
    let follower = match (&suite_run.live, mode) {
        (Some(sink), Mode::Run) => Some(Follower::start(
            events_path.clone(),
            suite_run.repo_root.clone(),
            sink.clone(),
        )),
        _ => None,
    };
    let run = run_runner(command, deadline, env).await;
    if let Some(follower) = follower {
        follower.finish().await;
    }
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            return errored(
                suite,
                format!("cannot run `{line}`: {}", e.root_cause()),
                "",
            )
        }
    };
    let output = format!("$ {line}\n{}", printed(&run));

    let collected: Vec<Collected> = std::fs::read_to_string(&record_path)
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default();
    let deselected: BTreeSet<&str> = collected
        .iter()
        .filter(|item| item.deselected)
        .map(|item| item.nodeid.as_str())
        .collect();
    let collected: Vec<&Collected> = collected.iter().filter(|item| !item.deselected).collect();
    let in_shard = ShardFilter::read(shard, &assign_path);
    let mut result = SuiteResult::new(&suite.name);
    result.ids = collected
        .iter()
        .map(|item| {
            let (classname, name) = pytest_case_name(&item.nodeid);
            (super::case_key(&classname, &name), item.nodeid.clone())
        })
        .collect();
    if mode != Mode::Run {
        if !run.success() && run.code() != Some(5) {
            result.error = Some(format!("collection failed ({})", run.describe()));
            result.output = Some(output);
            return result;
        }
        result.cases = collected
            .iter()
            .filter(|item| in_shard.keeps(item))
            .map(|item| {
                let (classname, name) = pytest_case_name(&item.nodeid);
                Case::skipped(classname, name, "")
            })
            .collect();
        return result;
    }

    let mut cases = match std::fs::read_to_string(&junit_path) {
        Ok(xml) => match junit::parse_cases(&xml) {
            Ok(cases) => cases,
            Err(e) => {
                result.error = Some(format!("cannot read {}: {e:#}", junit_path.display()));
                Vec::new()
            }
        },
        Err(_) => Vec::new(),
    };
    let seen: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.classname.clone(), c.name.clone()))
        .collect();
    // A worker's share: its node ids, or, taking them from its suite's queue, those it took.
    let worker = suite_run.worker.as_deref().unwrap_or("0");
    let taken = queue.map(|queue| queued(queue, worker));
    let only = taken.as_ref().or(only);
    let chunk: Option<BTreeSet<&str>> = only.map(|ids| ids.iter().map(String::as_str).collect());
    let in_chunk = |nodeid: &str| chunk.as_ref().is_none_or(|ids| ids.contains(nodeid));
    // A worker killed before it wrote its JUnit file still said which tests it began and
    // finished.
    let (began, finished) = match chunk {
        Some(_) => worker_events(&events_path),
        None => Default::default(),
    };
    // Tests deselected by marker: reported skipped, with the reason.
    for item in collected
        .iter()
        .filter(|item| in_shard.keeps(item) && in_chunk(&item.nodeid))
    {
        let (classname, name) = pytest_case_name(&item.nodeid);
        if seen.contains(&(classname.clone(), name.clone())) {
            continue;
        }
        if let Some(case) = finished.get(item.nodeid.as_str()) {
            cases.push(case.clone());
            continue;
        }
        let reason = match left_out(item, &deselected, env, suite_run) {
            Some(reason) => reason,
            None if run.timed_out => {
                format!(
                    "not finished: the suite timed out after {}s",
                    deadline.as_secs()
                )
            }
            None if run.stopped => stopped_reason(env),
            None if chunk.is_some() && began.contains(&item.nodeid) => {
                format!(
                    "not finished: worker {worker} ended during it ({})",
                    run.describe()
                )
            }
            None if chunk.is_some() => {
                format!(
                    "not run: worker {worker} ended before it ({})",
                    run.describe()
                )
            }
            None => continue,
        };
        cases.push(Case::skipped(classname, name, reason));
    }
    // A worker's node ids that its own collection did not find (a test whose id changed since
    // the plan's collection): never silently dropped.
    let known: BTreeSet<&str> = collected
        .iter()
        .map(|item| item.nodeid.as_str())
        .chain(deselected.iter().copied())
        .collect();
    let lost: Vec<&str> = only
        .into_iter()
        .flatten()
        .map(String::as_str)
        .filter(|id| !known.contains(id))
        .collect();
    for id in &lost {
        let (classname, name) = pytest_case_name(id);
        // Stopped before it collected: the stop is why, not the node ids.
        let reason = if run.stopped {
            stopped_reason(env)
        } else {
            format!("not run: worker {worker} did not collect it")
        };
        cases.push(Case::skipped(classname, name, reason));
    }
    let has_error_case = cases
        .iter()
        .any(|c| matches!(c.status, Status::Error { .. }));
    let has_failure = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    let xml_exists = junit_path.is_file();
    result.cases = cases;

    let problem = if run.timed_out {
        Some(format!("timed out after {}s", deadline.as_secs()))
    } else if run.stopped {
        // Whoever stopped it reports why (the gate: one case for the lost engine).
        None
    } else {
        match run.code() {
            Some(0) => None,
            Some(1) if has_failure => None,
            Some(1) => Some("pytest exited with code 1 but reported no failing test".to_owned()),
            // Exit 5: nothing collected. Tests deselected by marker or shard are not "nothing".
            Some(5) if !collected.is_empty() || suite.allow_empty => None,
            Some(5) => Some(
                "no tests collected (pytest exit code 5); set `allow_empty = true` if that is expected"
                    .to_owned(),
            ),
            Some(2) if has_error_case => None,
            Some(2) => Some("pytest was interrupted (exit code 2): collection or usage error".to_owned()),
            Some(3) => Some("pytest hit an internal error (exit code 3)".to_owned()),
            Some(4) => Some("pytest usage error (exit code 4): check the suite's `args`".to_owned()),
            Some(code) => Some(format!("pytest exited with code {code}")),
            None => Some(format!("pytest {}", run.describe())),
        }
    };
    let problem = problem.or_else(|| {
        (!xml_exists && run.code() != Some(5) && !run.stopped)
            .then(|| format!("pytest wrote no JUnit file ({})", run.describe()))
    });
    let problem = problem.or_else(|| {
        (!lost.is_empty() && !run.stopped).then(|| {
            format!(
                "worker {worker} did not collect {} of its tests (their node ids changed since the plan's collection?)",
                lost.len()
            )
        })
    });
    if let Some(problem) = problem {
        add_error(&mut result, problem);
    }
    result.output = Some(output);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytest_names_follow_mangle_test_address() {
        assert_eq!(
            pytest_case_name("tests/e2e/test_a.py::TestX::test_y[a/b::c]"),
            (
                "tests.e2e.test_a.TestX".to_owned(),
                "test_y[a/b::c]".to_owned()
            )
        );
        assert_eq!(
            pytest_case_name("test_b.py::test_z"),
            ("test_b".to_owned(), "test_z".to_owned())
        );
    }
}
