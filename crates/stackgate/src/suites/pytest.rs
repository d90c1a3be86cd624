//! The pytest runner: the plugin the harness adds (it records every collected test with its
//! markers and selects the shard), the command line (markers deselected on the target, JUnit
//! output), and reading what pytest left into a [`SuiteResult`]: its JUnit cases, the tests
//! deselected by marker or left unfinished by the deadline, and what its exit code means.
//!
//! Not here: the venv ([super::python]), the deadline and the process group ([super::runner]
//! over [crate::process]), the JUnit format itself ([crate::junit]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::plan::{Collection, PlanTest};
use super::pytest_plugin::PYTEST_PLUGIN;
use super::runner::{self, stopped_reason, Launch, Live, Ran};
use super::{
    results_dir, run_stem, shard_of, Mode, PythonEnv, SuiteEnv, SuiteRun, COLLECT_TIMEOUT,
};
use crate::config::{Config, SuiteCfg};
use crate::flags::Shard;
use crate::junit::{Case, Status, SuiteResult};
use crate::process::Finished;

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
    let files = Files::new(config, env, &run_stem(suite, suite_run, Mode::Plan));
    let record = Record::read(&files.record)?;
    let deselected = record.deselected();
    let in_shard = ShardFilter::read(suite_run.shard, &files.assign);
    let mut collection = Collection {
        collected: record.collected().map(|item| item.nodeid.clone()).collect(),
        ..Collection::default()
    };
    for item in record.collected().filter(|item| in_shard.keeps(item)) {
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
    Record::read(&Files::new(config, env, &stem).record)
        .unwrap_or_default()
        .collected()
        .map(|item| item.nodeid.clone())
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

/// What the plugin recorded of a collection (`<stem>.collected.jsonl`): every test it collected,
/// then those left out.
#[derive(Default)]
struct Record(Vec<Collected>);

impl Record {
    /// The record at `path`; `Err`: why it cannot be read.
    fn read(path: &Path) -> Result<Record, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Record(
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        ))
    }

    /// The tests collected, before any was left out.
    fn collected(&self) -> impl Iterator<Item = &Collected> {
        self.0.iter().filter(|item| !item.deselected)
    }

    /// The node ids left out after the collection.
    fn deselected(&self) -> BTreeSet<&str> {
        self.0
            .iter()
            .filter(|item| item.deselected)
            .map(|item| item.nodeid.as_str())
            .collect()
    }
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

/// The files of one pytest run, each `<stem>.<kind>` in the suite's results directory.
struct Files {
    dir: PathBuf,
    /// Where the plugin is written, first on `PYTHONPATH`.
    plugin_dir: PathBuf,
    /// A worker's share: its node ids, one a line.
    only: PathBuf,
    junit: PathBuf,
    /// The plugin's record of what it collected ([Record]).
    record: PathBuf,
    /// Split by duration: every test of the split with its shard ([ShardFilter]).
    assign: PathBuf,
    /// Split by duration: what the plugin splits by ([by_duration]).
    durations: PathBuf,
    /// The plugin's live events.
    events: PathBuf,
    log: PathBuf,
}

impl Files {
    fn new(config: &Config, env: &SuiteEnv, stem: &str) -> Files {
        let dir = results_dir(config, env);
        let file = |kind: &str| dir.join(format!("{stem}.{kind}"));
        Files {
            plugin_dir: config.work_dir().join("pytest"),
            only: file("ids"),
            junit: file("xml"),
            record: file("collected.jsonl"),
            assign: file("assigned"),
            durations: file("durations.json"),
            events: file("events.jsonl"),
            log: file("log"),
            dir,
        }
    }
}

/// One run of pytest as [run_pytest] is asked for it.
struct Asked<'a> {
    env: &'a SuiteEnv,
    suite_run: &'a SuiteRun,
    deadline: Duration,
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
    let deadline = match mode {
        Mode::Run => suite_run
            .deadline
            .unwrap_or_else(|| suite.timeout_s.duration()),
        Mode::Collect | Mode::Plan => COLLECT_TIMEOUT.min(suite.timeout_s.duration()),
    };
    let files = Files::new(config, env, &run_stem(suite, suite_run, mode));
    // A worker of the plan runs only its share: these node ids, one a line.
    let only = suite_run.only.as_ref().filter(|_| mode == Mode::Run);
    let by_duration = by_duration(suite, env, suite_run.shard);
    let known = by_duration.as_ref().map(|(_, known)| known);
    if let Some(failed) = runner::prepare(suite, &files.dir, || write_files(&files, known, only)) {
        return failed;
    }
    let loads = by_duration.as_ref().map(|(loads, _)| loads.as_slice());
    let launch = Launch {
        program: py.python.clone(),
        args: arguments(suite, env, suite_run, mode, &files.junit),
        py: Some(py),
        vars: variables(&files, suite_run, mode, loads),
        log: files.log.clone(),
        live: match mode {
            Mode::Run => Live::File(files.events.clone()),
            Mode::Collect | Mode::Plan => Live::Off,
        },
        deadline,
    };
    let ran = match runner::launch(config, suite, env, suite_run, launch).await {
        Ok(ran) => ran,
        Err(failed) => return failed,
    };

    let record = Record::read(&files.record).unwrap_or_default();
    let in_shard = ShardFilter::read(suite_run.shard, &files.assign);
    let mut result = SuiteResult::new(&suite.name);
    result.ids = record
        .collected()
        .map(|item| {
            let (classname, name) = pytest_case_name(&item.nodeid);
            (super::case_key(&classname, &name), item.nodeid.clone())
        })
        .collect();
    if mode != Mode::Run {
        return collection(ran, result, &record, &in_shard);
    }

    let mut cases = ran.report(&files.junit, &mut result);
    let share = Share::of(suite_run, &files.events);
    let asked = Asked {
        env,
        suite_run,
        deadline,
    };
    let lost = add_unreported(&asked, &ran, &record, &in_shard, &share, &mut cases);
    let xml_exists = files.junit.is_file();
    let problem = ran.problem(deadline, |run| {
        exit_problem(run, suite, &cases, record.collected().next().is_some())
            .or_else(|| {
                (!xml_exists && run.code() != Some(5))
                    .then(|| format!("pytest wrote no JUnit file ({})", run.describe()))
            })
            .or_else(|| {
                (!lost.is_empty()).then(|| {
                    format!(
                        "worker {} did not collect {} of its tests (their node ids changed since the plan's collection?)",
                        share.worker,
                        lost.len()
                    )
                })
            })
    });
    result.cases = cases;
    ran.finish(result, problem)
}

/// `--shard` by duration: the time the plan put on each shard, and, for the plugin's split, the
/// plan's shard of each of this suite's recorded tests and the suite's mean.
fn by_duration(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    shard: Option<Shard>,
) -> Option<(Vec<f64>, serde_json::Value)> {
    shard
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
        })
}

/// The run's files before pytest starts: the plugin, what a split by duration splits by
/// (`known`), a worker's node ids (`only`); what an earlier run left, removed.
fn write_files(
    files: &Files,
    known: Option<&serde_json::Value>,
    only: Option<&Vec<String>>,
) -> anyhow::Result<()> {
    let plugin = files.plugin_dir.join("xtask_pytest.py");
    if std::fs::read_to_string(&plugin).ok().as_deref() != Some(PYTEST_PLUGIN) {
        crate::state::write_atomic(&plugin, PYTEST_PLUGIN.as_bytes())?;
    }
    if let Some(known) = known {
        crate::state::write_atomic(&files.durations, serde_json::to_string(known)?.as_bytes())?;
    }
    for stale in [&files.junit, &files.record, &files.events, &files.assign] {
        match std::fs::remove_file(stale) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    if let Some(ids) = only {
        let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
        crate::state::write_atomic(&files.only, text.as_bytes())?;
    }
    Ok(())
}

/// pytest's arguments: the suite's, the run's (but to list a skipped suite's tests), the plugin,
/// a JUnit report with the failing tests' output (a run) or `--collect-only`, and the target's
/// skip markers deselected.
fn arguments(
    suite: &SuiteCfg,
    env: &SuiteEnv,
    suite_run: &SuiteRun,
    mode: Mode,
    junit_path: &Path,
) -> Vec<String> {
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
    args
}

/// The plugin's variables (`XTASK_PYTEST_*`, the plugin first on `PYTHONPATH`): set for what
/// this run asks of it, removed otherwise, so that none is inherited from the harness's caller.
fn variables(
    files: &Files,
    suite_run: &SuiteRun,
    mode: Mode,
    loads: Option<&[f64]>,
) -> Vec<(&'static str, Option<OsString>)> {
    let python_path = super::python::prepend_to_search_path(
        &files.plugin_dir,
        std::env::var("PYTHONPATH").ok().as_deref(),
    );
    let in_run = |value: Option<&PathBuf>| {
        value
            .filter(|_| mode == Mode::Run)
            .map(|path| path.clone().into_os_string())
    };
    let mut vars = vec![
        ("PYTHONPATH", Some(python_path.into())),
        ("XTASK_PYTEST_RECORD", Some(files.record.clone().into())),
        ("XTASK_PYTEST_EVENTS", Some(files.events.clone().into())),
        (
            "XTASK_PYTEST_SHARD",
            suite_run
                .shard
                .map(|shard| format!("{}/{}", shard.index, shard.count).into()),
        ),
        (
            "XTASK_PYTEST_ONLY",
            in_run(suite_run.only.as_ref().map(|_| &files.only)),
        ),
        ("XTASK_PYTEST_QUEUE", in_run(suite_run.queue.as_ref())),
        ("XTASK_PYTEST_WAIT", in_run(suite_run.wait.as_ref())),
    ];
    if let Some(worker) = &suite_run.worker {
        vars.push(("XTASK_WORKER", Some(worker.into())));
    }
    let loads = loads.map(|loads| {
        loads
            .iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    });
    vars.extend([
        (
            "XTASK_PYTEST_DURATIONS",
            loads.as_ref().map(|_| files.durations.clone().into()),
        ),
        ("XTASK_PYTEST_LOADS", loads.clone().map(OsString::from)),
        (
            "XTASK_PYTEST_ASSIGN",
            loads.as_ref().map(|_| files.assign.clone().into()),
        ),
    ]);
    vars
}

/// A collection's result (`--collect-only`: a skipped suite's tests, the plan's): this shard's
/// tests, each skipped (the caller says why); an error when the collection failed.
fn collection(
    ran: Ran,
    mut result: SuiteResult,
    record: &Record,
    in_shard: &ShardFilter,
) -> SuiteResult {
    if !ran.run.success() && ran.run.code() != Some(5) {
        let problem = format!("collection failed ({})", ran.run.describe());
        return ran.finish(result, Some(problem));
    }
    result.cases = record
        .collected()
        .filter(|item| in_shard.keeps(item))
        .map(|item| {
            let (classname, name) = pytest_case_name(&item.nodeid);
            Case::skipped(classname, name, "")
        })
        .collect();
    result
}

/// A worker's share of the suite ([super::workers]), or the whole suite when the run is not a
/// worker's.
struct Share {
    /// Its name (`XTASK_WORKER`; `0` for none).
    worker: String,
    /// Its node ids, in order: those it was given, or, taking them from its suite's queue, those
    /// it took; `None`: the whole suite.
    ids: Option<Vec<String>>,
    /// The same, to look them up.
    holding: Option<BTreeSet<String>>,
    /// The tests it began and those it finished (by node id, as cases), as its plugin said.
    began: BTreeSet<String>,
    finished: BTreeMap<String, Case>,
}

impl Share {
    fn of(suite_run: &SuiteRun, events: &Path) -> Share {
        let worker = suite_run.worker.as_deref().unwrap_or("0").to_owned();
        let ids = match &suite_run.queue {
            Some(queue) => Some(queued(queue, &worker)),
            None => suite_run.only.clone(),
        };
        // A worker killed before it wrote its JUnit file still said which tests it began and
        // finished.
        let (began, finished) = match ids {
            Some(_) => worker_events(events),
            None => Default::default(),
        };
        Share {
            worker,
            holding: ids.as_ref().map(|ids| ids.iter().cloned().collect()),
            ids,
            began,
            finished,
        }
    }

    fn holds(&self, nodeid: &str) -> bool {
        self.holding.as_ref().is_none_or(|ids| ids.contains(nodeid))
    }
}

/// Adds the tests of this shard and share that the report lacks: as they ended, by the plugin's
/// word, or skipped with why (deselected by marker, cut short, the worker's end); then the
/// share's node ids its collection did not find, skipped. Returns those.
fn add_unreported(
    asked: &Asked,
    ran: &Ran,
    record: &Record,
    in_shard: &ShardFilter,
    share: &Share,
    cases: &mut Vec<Case>,
) -> Vec<String> {
    let seen: BTreeSet<(String, String)> = cases
        .iter()
        .map(|c| (c.classname.clone(), c.name.clone()))
        .collect();
    let deselected = record.deselected();
    let worker = &share.worker;
    for item in record
        .collected()
        .filter(|item| in_shard.keeps(item) && share.holds(&item.nodeid))
    {
        let (classname, name) = pytest_case_name(&item.nodeid);
        if seen.contains(&(classname.clone(), name.clone())) {
            continue;
        }
        if let Some(case) = share.finished.get(item.nodeid.as_str()) {
            cases.push(case.clone());
            continue;
        }
        let reason = match left_out(item, &deselected, asked.env, asked.suite_run)
            .or_else(|| ran.cut_short(asked.deadline, asked.env))
        {
            Some(reason) => reason,
            None if share.ids.is_some() && share.began.contains(&item.nodeid) => format!(
                "not finished: worker {worker} ended during it ({})",
                ran.run.describe()
            ),
            None if share.ids.is_some() => format!(
                "not run: worker {worker} ended before it ({})",
                ran.run.describe()
            ),
            None => continue,
        };
        cases.push(Case::skipped(classname, name, reason));
    }
    // A worker's node ids that its own collection did not find (a test whose id changed since
    // the plan's collection): never silently dropped.
    let known: BTreeSet<&str> = record
        .collected()
        .map(|item| item.nodeid.as_str())
        .chain(deselected.iter().copied())
        .collect();
    let lost: Vec<String> = share
        .ids
        .iter()
        .flatten()
        .filter(|id| !known.contains(id.as_str()))
        .cloned()
        .collect();
    for id in &lost {
        let (classname, name) = pytest_case_name(id);
        // Stopped before it collected: the stop is why, not the node ids.
        let reason = if ran.run.stopped {
            stopped_reason(asked.env)
        } else {
            format!("not run: worker {worker} did not collect it")
        };
        cases.push(Case::skipped(classname, name, reason));
    }
    lost
}

/// What pytest's exit code means for the suite, when it ran to its end; `collected_any`: it
/// collected tests (deselected by marker or shard, they are not "nothing").
fn exit_problem(
    run: &Finished,
    suite: &SuiteCfg,
    cases: &[Case],
    collected_any: bool,
) -> Option<String> {
    let has_error_case = cases
        .iter()
        .any(|c| matches!(c.status, Status::Error { .. }));
    let has_failure = cases
        .iter()
        .any(|c| matches!(c.status, Status::Failed { .. } | Status::Error { .. }));
    match run.code() {
        Some(0) => None,
        Some(1) if has_failure => None,
        Some(1) => Some("pytest exited with code 1 but reported no failing test".to_owned()),
        // Exit 5: nothing collected.
        Some(5) if collected_any || suite.allow_empty => None,
        Some(5) => Some(
            "no tests collected (pytest exit code 5); set `allow_empty = true` if that is expected"
                .to_owned(),
        ),
        Some(2) if has_error_case => None,
        Some(2) => {
            Some("pytest was interrupted (exit code 2): collection or usage error".to_owned())
        }
        Some(3) => Some("pytest hit an internal error (exit code 3)".to_owned()),
        Some(4) => Some("pytest usage error (exit code 4): check the suite's `args`".to_owned()),
        Some(code) => Some(format!("pytest exited with code {code}")),
        None => Some(format!("pytest {}", run.describe())),
    }
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
