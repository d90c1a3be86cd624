//! Running a [`Plan`]: first the chunks that run alone, one at a time, then its lanes at once,
//! each lane's chunks one after the other. Each chunk is one run of its suite's own runner
//! ([super::run_suite_with]) with its share of the tests, its worker's name (the live events'
//! `worker`) and what is left of its suite's deadline (counted from the plan's start), in its own
//! process group like any suite. A worker that fails or crashes does not stop the others. A
//! suite's chunks are merged into one [`SuiteResult`] the moment its last chunk ends: its cases
//! in collection order (the tests its selection left out among them, skipped), its wall time
//! from its first chunk's start, one error naming each worker that failed, and its workers' logs
//! joined into `<suite>.log`.
//!
//! Not here: the schedule ([super::plan]); events and printing (the gate, through [`Hooks`]).
//! Dropping [`run_plan`]'s future (Ctrl-C) drops every running chunk, which stops its group.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use super::plan::{Chunk, Collection, Part, Plan};
use super::{
    case_key, file_stem, pytest_case_name, results_dir, run_suite_with, scrub, PythonEnv, SuiteEnv,
    SuiteRun, TestEvent, TestSink,
};
use crate::config::{Config, Runner, SuiteCfg};
use crate::junit::{self, Case, SuiteResult, OUTPUT_LIMIT};
use crate::progress::Progress;

/// Makes the sink of a suite's tests (by suite name).
pub type LiveFor = Arc<dyn Fn(&str) -> TestSink + Send + Sync>;

/// What the caller hears while the plan runs.
pub struct Hooks {
    /// The sink of a suite's tests as they start and end.
    pub live: Option<LiveFor>,
    /// A suite's merged result, the moment its last chunk ended.
    pub done: Arc<dyn Fn(&SuiteResult) + Send + Sync>,
    /// What went wrong on the way that the results do not show (a queue that could not be made).
    pub notes: Progress,
}

/// Runs the plan; every planned suite's merged result, in the order of `suites`. `base` holds
/// what every chunk shares: the shard, the arguments after `--`, the repository root.
pub async fn run_plan(
    config: &Config,
    env: &SuiteEnv,
    py: Option<&PythonEnv>,
    base: &SuiteRun,
    suites: &[(&SuiteCfg, Option<&Collection>)],
    plan: &Plan,
    hooks: &Hooks,
) -> Vec<SuiteResult> {
    // In order: the chunks that run alone, then each lane's.
    let chunks: Vec<&Chunk> = plan.chunks().collect();
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    for chunk in &chunks {
        *remaining.entry(chunk.suite.clone()).or_default() += 1;
    }
    // After each chunk, the next that runs alone, or the next of its lane.
    let alone = plan.alone.len();
    let mut next: Vec<Option<usize>> = (0..alone)
        .map(|i| (i + 1 < alone).then_some(i + 1))
        .collect();
    let mut lane_heads = Vec::new();
    for lane in &plan.lanes {
        let head = next.len();
        lane_heads.push(head);
        next.extend((0..lane.len()).map(|i| (i + 1 < lane.len()).then_some(head + i + 1)));
    }
    // Each suite's queue: its lanes' tests, longest first, one file each, for its workers to take.
    let mut queues = BTreeMap::new();
    for (suite, ids) in &plan.queues {
        let Some((config_of, _)) = suites.iter().find(|(s, _)| &s.name == suite) else {
            continue;
        };
        let dir = queue_dir(config, env, config_of, base.shard);
        let made = (|| -> std::io::Result<()> {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
            for (position, id) in ids.iter().enumerate() {
                std::fs::write(dir.join(format!("{position:05}.todo")), id)?;
            }
            Ok(())
        })();
        match made {
            Ok(()) => {
                queues.insert(suite.clone(), dir);
            }
            // Its chunks then run the tests the plan gave each.
            Err(e) => hooks
                .notes
                .say(format!("cannot make the queue {}: {e}", dir.display())),
        }
    }
    let mut ahead = Vec::new();
    let longest = plan.lanes.iter().map(Vec::len).max().unwrap_or(0);
    for position in 0..longest {
        for (lane, head) in plan.lanes.iter().zip(&lane_heads) {
            if position < lane.len() {
                ahead.push(head + position);
            }
        }
    }
    let state = Running {
        ahead,
        queues,
        config,
        env,
        py,
        base,
        suites,
        plan,
        hooks,
        started: Instant::now(),
        next,
        alone,
        lane_heads,
        alone_left: Mutex::new(alone),
        spawn: chunks.iter().map(|_| Arc::new(Notify::new())).collect(),
        turn: chunks.iter().map(|_| Notify::new()).collect(),
        remaining: Mutex::new(remaining),
        parts: Mutex::default(),
        merged: Mutex::default(),
    };
    if alone > 0 {
        state.spawn[0].notify_one();
        state.turn[0].notify_one();
    } else {
        state.lanes_go();
    }
    futures_util::future::join_all(
        chunks
            .iter()
            .enumerate()
            .map(|(index, chunk)| state.run(index, chunk)),
    )
    .await;
    let mut merged = lock(&state.merged);
    suites
        .iter()
        .filter_map(|(suite, _)| merged.remove(&suite.name))
        .collect()
}

/// A plan as it runs: what each chunk needs, when each may start its runner (`spawn`) and its
/// tests (`turn`), and each suite's parts until its last one ends. The chunks that run alone
/// come first, one after the other; when the last has ended, every lane's first chunk gets its
/// turn, and each later one when the one before it in its lane ended. A chunk's runner starts
/// ahead of its turn and waits for it once ready (pytest collected: `XTASK_PYTEST_WAIT`; nextest
/// listed), so that its start is not on the way: from the moment the first lone chunk began its
/// first test, the lanes' runners start one at a time, each once the one before it is ready
/// ([`Running::ahead`]: a start takes a core for a second, and the lone tests need the other);
/// without lone chunks, each lane's next runner starts once the one before it began its first
/// test, so that they do not all fall at once. A lane's pytest workers then take their tests from
/// their suite's queue ([`Plan::queues`]).
struct Running<'a> {
    /// By suite: the queue its lanes' workers take their tests from.
    queues: BTreeMap<String, std::path::PathBuf>,
    config: &'a Config,
    env: &'a SuiteEnv,
    py: Option<&'a PythonEnv>,
    base: &'a SuiteRun,
    suites: &'a [(&'a SuiteCfg, Option<&'a Collection>)],
    plan: &'a Plan,
    hooks: &'a Hooks,
    started: Instant,
    /// By chunk index (the lone ones' in order, then each lane's): the chunk after it.
    next: Vec<Option<usize>>,
    /// How many chunks run alone (the first indices).
    alone: usize,
    lane_heads: Vec<usize>,
    /// The lanes' chunks in the order their runners start during the lone tests: each lane's
    /// first, then each lane's second, and so on, one at a time (see [`Running::started_ahead`]).
    ahead: Vec<usize>,
    alone_left: Mutex<usize>,
    spawn: Vec<Arc<Notify>>,
    turn: Vec<Notify>,
    /// Chunks not yet ended, by suite.
    remaining: Mutex<BTreeMap<String, usize>>,
    /// Ended chunks, by suite: (worker, result).
    parts: Mutex<BTreeMap<String, Vec<(String, SuiteResult)>>>,
    merged: Mutex<BTreeMap<String, SuiteResult>>,
}

impl Running<'_> {
    async fn run(&self, index: usize, chunk: &Chunk) {
        let Some(&(suite, collection)) = self.suites.iter().find(|(s, _)| s.name == chunk.suite)
        else {
            return;
        };
        let threads =
            (suite.runner == Runner::Nextest && chunk.worker != "0").then_some(self.plan.jobs);
        let live = self.chunk_sink(index, suite);
        let result = {
            self.spawn[index].notified().await;
            let go = results_dir(self.config, self.env).join(format!(
                "{}.{}.go",
                file_stem(suite, self.base.shard),
                chunk.worker
            ));
            let _ = std::fs::remove_file(&go);
            let its_turn = async {
                self.turn[index].notified().await;
                if let Err(e) = crate::state::write_atomic(&go, b"go\n") {
                    // The worker then waits until its deadline, which reports it.
                    self.hooks
                        .notes
                        .say(format!("cannot write {}: {e}", go.display()));
                }
                (Instant::now(), SystemTime::now())
            };
            // Collected and waiting for its turn (its plugin's `<go>.ready`; nextest, which lists
            // with cargo, at once): the next runner may start.
            let ready = go.with_extension("go.ready");
            let _ = std::fs::remove_file(&ready);
            let announce = async {
                while suite.runner == Runner::Pytest && !ready.exists() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.started_ahead(index);
            };
            let running = async {
                let chunk_run = run_chunk(self, suite, chunk, threads, live, Some(go.clone()));
                futures_util::pin_mut!(chunk_run, announce);
                match futures_util::future::select(chunk_run, announce).await {
                    futures_util::future::Either::Left((result, _)) => result,
                    futures_util::future::Either::Right(((), chunk_run)) => chunk_run.await,
                }
            };
            let (mut result, turn) = futures_util::future::join(running, its_turn).await;
            // One that ended without a word of being ready (it crashed) does not hold the others.
            self.started_ahead(index);
            let _ = std::fs::remove_file(&go);
            let _ = std::fs::remove_file(&ready);
            from_its_turn(&mut result, turn);
            result
        };
        self.ended(index, suite, collection, chunk, result);
    }

    /// What the chunk's runner says of its tests, to the caller; its first test lets the runner
    /// of the chunk after it start.
    fn chunk_sink(&self, index: usize, suite: &SuiteCfg) -> TestSink {
        let forward = self.hooks.live.as_ref().map(|live| live(&suite.name));
        let mut after: Vec<Arc<Notify>> = self.next[index]
            .map(|next| self.spawn[next].clone())
            .into_iter()
            .collect();
        if index == 0 && self.alone > 0 {
            // The lone tests wait on the stack: the workers' runners start meanwhile, one after
            // the other ([`Running::started_ahead`]).
            after.extend(self.ahead.first().map(|first| self.spawn[*first].clone()));
        }
        let began = std::sync::atomic::AtomicBool::new(false);
        Arc::new(move |event: TestEvent| {
            if matches!(event, TestEvent::Started { .. })
                && !began.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                after.iter().for_each(|spawn| spawn.notify_one());
            }
            if let Some(forward) = &forward {
                forward(event);
            }
        })
    }

    /// A chunk ended: the next one's turn, and its suite's result once it was the last.
    fn ended(
        &self,
        index: usize,
        suite: &SuiteCfg,
        collection: Option<&Collection>,
        chunk: &Chunk,
        result: SuiteResult,
    ) {
        let finished = {
            let mut parts = lock(&self.parts);
            let list = parts.entry(chunk.suite.clone()).or_default();
            list.push((chunk.worker.clone(), result));
            let mut remaining = lock(&self.remaining);
            let left = remaining.entry(chunk.suite.clone()).or_default();
            *left = left.saturating_sub(1);
            (*left == 0).then(|| std::mem::take(list))
        };
        if let Some(finished) = finished {
            let result = merge(
                self.config,
                self.env,
                self.base,
                suite,
                collection,
                finished,
            );
            (self.hooks.done)(&result);
            lock(&self.merged).insert(suite.name.clone(), result);
        }
        // A chunk that never began a test (it crashed, or had none) did not start the next.
        if let Some(next) = self.next[index] {
            self.spawn[next].notify_one();
            self.turn[next].notify_one();
        } else if index < self.alone {
            let mut alone_left = lock(&self.alone_left);
            *alone_left = alone_left.saturating_sub(1);
            if *alone_left == 0 {
                self.lanes_go();
            }
        }
    }

    /// A lane chunk's runner started ahead is ready (or ended): the next in [`Running::ahead`]
    /// starts its runner. One start at a time: each takes a core for a second (pytest's imports
    /// and collection), and the lone tests, which run meanwhile, need the other one.
    fn started_ahead(&self, index: usize) {
        if let Some(position) = self.ahead.iter().position(|i| *i == index) {
            if let Some(next) = self.ahead.get(position + 1) {
                self.spawn[*next].notify_one();
            }
        }
    }

    /// Every lane's first chunk may start, and run its tests.
    fn lanes_go(&self) {
        for head in &self.lane_heads {
            self.spawn[*head].notify_one();
            self.turn[*head].notify_one();
        }
    }
}

/// A chunk's time counts from its turn: the time its runner spent started ahead, waiting, is not
/// its suite's (the summary's suite times, the wall a later plan weighs a whole suite by).
fn from_its_turn(result: &mut SuiteResult, (turn, turn_at): (Instant, SystemTime)) {
    let Some(started) = result.started else {
        return;
    };
    // Called the moment the chunk ended; a turn before its runner started changes nothing.
    if turn_at > started {
        result.started = Some(turn_at);
        result.duration = turn.elapsed().min(result.duration);
    }
}

/// One chunk: its suite's runner with its share, or, when the suite's deadline passed before it
/// could start, its tests skipped and a timeout error.
async fn run_chunk(
    running: &Running<'_>,
    suite: &SuiteCfg,
    chunk: &Chunk,
    threads: Option<u32>,
    live: TestSink,
    wait: Option<std::path::PathBuf>,
) -> SuiteResult {
    let deadline = suite.timeout_s.duration();
    let left = deadline.saturating_sub(running.started.elapsed());
    // A lane's pytest worker takes its tests from its suite's queue; whatever none took is
    // reported once, by the suite's merge.
    let queue = running
        .queues
        .get(&suite.name)
        .filter(|_| chunk.worker.starts_with('w') && matches!(chunk.part, Part::Tests(_)));
    let only = match (&chunk.part, queue) {
        (Part::Whole, _) => None,
        (Part::Tests(_), Some(_)) => running.plan.queues.get(&suite.name).cloned(),
        (Part::Tests(ids), None) => Some(ids.clone()),
    };
    // What this chunk lists when it cannot run: its own tests, none of a queue's.
    let listed: Vec<String> = match queue {
        Some(_) => Vec::new(),
        None => only.clone().unwrap_or_default(),
    };
    if let Some(reason) = running.env.stop.as_ref().and_then(super::Stop::reason) {
        // The suites were stopped (the engine lost) before this chunk's turn: listed, not run.
        return match &only {
            None => {
                super::collect_skipped_shard(
                    running.config,
                    suite,
                    running.env,
                    running.py,
                    &reason,
                    running.base.shard,
                )
                .await
            }
            Some(_) => {
                let mut result = SuiteResult::new(&suite.name);
                result.started = Some(SystemTime::now());
                for id in &listed {
                    let (classname, name) = pytest_case_name(id);
                    result
                        .cases
                        .push(Case::skipped(classname, name, reason.clone()));
                }
                result
            }
        };
    }
    if left.is_zero() {
        let mut result = SuiteResult::new(&suite.name);
        result.started = Some(SystemTime::now());
        result.error = Some(format!(
            "timed out after {}s before worker {} started",
            deadline.as_secs(),
            chunk.worker
        ));
        for id in &listed {
            let (classname, name) = pytest_case_name(id);
            result.cases.push(Case::skipped(
                classname,
                name,
                format!(
                    "not run: the suite timed out after {}s before worker {} started",
                    deadline.as_secs(),
                    chunk.worker
                ),
            ));
        }
        return result;
    }
    let base = running.base;
    let run = SuiteRun {
        shard: base.shard,
        extra_args: base.extra_args.clone(),
        live: Some(live),
        repo_root: base.repo_root.clone(),
        only,
        worker: Some(chunk.worker.clone()),
        threads,
        deadline: Some(left),
        wait,
        queue: queue.cloned(),
        attempt: 0,
    };
    run_suite_with(running.config, suite, running.env, running.py, &run).await
}

/// A suite's result from its chunks' (`(worker, result)`, in the order they ended).
fn merge(
    config: &Config,
    env: &SuiteEnv,
    base: &SuiteRun,
    suite: &SuiteCfg,
    collection: Option<&Collection>,
    parts: Vec<(String, SuiteResult)>,
) -> SuiteResult {
    let shares = parts
        .iter()
        .filter(|(worker, _)| worker != "0")
        .count()
        .max(1);
    let unplanned = unplanned(config, env, base, suite, collection, &parts);
    let untaken = untaken(config, env, base, suite, &parts);
    if parts.len() == 1
        && collection.is_none_or(|c| c.skipped.is_empty())
        && unplanned.is_empty()
        && untaken.is_empty()
    {
        let (worker, result) = parts.into_iter().next().expect("one part");
        join_logs(config, env, base, suite, &[worker]);
        return result;
    }
    let mut result = SuiteResult::new(&suite.name);
    let mut errors = Vec::new();
    let mut outputs = Vec::new();
    let mut start: Option<SystemTime> = None;
    let mut end: Option<SystemTime> = None;
    let mut workers = Vec::new();
    for (worker, part) in parts {
        result.cases.extend(part.cases);
        result.ids.extend(part.ids);
        if let Some(error) = part.error {
            errors.push(format!("worker {worker}: {error}"));
        }
        if let Some(output) = part.output {
            let share = junit::keep_tail(&output, OUTPUT_LIMIT / shares);
            outputs.push(format!("=== worker {worker} ===\n{share}"));
        }
        result.interrupted |= part.interrupted;
        if let Some(began) = part.started {
            start = Some(start.map_or(began, |s| s.min(began)));
            let ended = began + part.duration;
            end = Some(end.map_or(ended, |e| e.max(ended)));
        }
        workers.push(worker);
    }
    result.cases.extend(untaken);
    if !unplanned.is_empty() {
        errors.push(format!(
            "{} tests were collected by a worker but not by the plan's collection, so no worker ran them: the suite's collection changed between the two",
            unplanned.len()
        ));
        result.cases.extend(unplanned);
    }
    if let Some(collection) = collection {
        result.cases.extend(collection.skipped.iter().cloned());
        let position: BTreeMap<&str, usize> = collection
            .order
            .iter()
            .enumerate()
            .map(|(i, key)| (key.as_str(), i))
            .collect();
        result.cases.sort_by_key(|case| {
            position
                .get(case_key(&case.classname, &case.name).as_str())
                .copied()
                .unwrap_or(usize::MAX)
        });
    }
    result.error = (!errors.is_empty()).then(|| errors.join("; "));
    result.output = (!outputs.is_empty()).then(|| outputs.join("\n"));
    result.started = start;
    result.duration = match (start, end) {
        (Some(start), Some(end)) => end.duration_since(start).unwrap_or(Duration::ZERO),
        _ => Duration::ZERO,
    };
    scrub(&mut result, &env.secrets);
    join_logs(config, env, base, suite, &workers);
    result
}

/// Where a suite's lane workers take their tests from (`<suite>.queue`).
fn queue_dir(
    config: &Config,
    env: &SuiteEnv,
    suite: &SuiteCfg,
    shard: Option<crate::flags::Shard>,
) -> std::path::PathBuf {
    results_dir(config, env).join(format!("{}.queue", file_stem(suite, shard)))
}

/// The tests of a suite's queue that no worker took before they all ended, skipped with the
/// reason: the suites were stopped, the suite's deadline, or its workers' errors.
fn untaken(
    config: &Config,
    env: &SuiteEnv,
    base: &SuiteRun,
    suite: &SuiteCfg,
    parts: &[(String, SuiteResult)],
) -> Vec<Case> {
    let dir = queue_dir(config, env, suite, base.shard);
    if !dir.is_dir() {
        return Vec::new();
    }
    let left = super::pytest::queued(&dir, "todo");
    if left.is_empty() {
        return Vec::new();
    }
    let errors: Vec<String> = parts
        .iter()
        .filter_map(|(worker, part)| Some(format!("worker {worker}: {}", part.error.as_ref()?)))
        .collect();
    let reason = match env.stop.as_ref().and_then(super::Stop::reason) {
        Some(reason) => reason,
        None if errors.iter().any(|e| e.contains("timed out")) => format!(
            "not run: the suite timed out after {}s",
            suite.timeout_s.duration().as_secs()
        ),
        None => format!(
            "not run: every worker of the suite ended before it ({})",
            if errors.is_empty() {
                "without an error".to_owned()
            } else {
                errors.join("; ")
            }
        ),
    };
    left.iter()
        .map(|id| {
            let (classname, name) = pytest_case_name(id);
            Case::skipped(classname, name, reason.clone())
        })
        .collect()
}

/// The tests a worker of the plan collected that the plan's collection did not (its collection
/// depends on something that changed since: the environment, chance): each an error case, once,
/// never silently dropped (each worker runs only the node ids it was given).
fn unplanned(
    config: &Config,
    env: &SuiteEnv,
    base: &SuiteRun,
    suite: &SuiteCfg,
    collection: Option<&Collection>,
    parts: &[(String, SuiteResult)],
) -> Vec<Case> {
    let Some(collection) = collection.filter(|_| suite.runner == Runner::Pytest) else {
        return Vec::new();
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut cases = Vec::new();
    for (worker, _) in parts.iter().filter(|(worker, _)| worker != "0") {
        for id in super::pytest::worker_collected(config, env, suite, base.shard, worker) {
            if collection.collected.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let (classname, name) = pytest_case_name(&id);
            cases.push(Case::new(
                classname,
                name,
                junit::Status::Error {
                    message: format!(
                        "not run: worker {worker} collected it, the plan's collection did not (does the suite's collection depend on the endpoints, or on chance?)"
                    ),
                    output: String::new(),
                },
            ));
        }
    }
    cases
}

/// The workers' logs of a suite (`<suite>.<worker>.log`) joined into `<suite>.log`, each under
/// a line naming its worker, so that every suite keeps one log as without a plan.
fn join_logs(
    config: &Config,
    env: &SuiteEnv,
    base: &SuiteRun,
    suite: &SuiteCfg,
    workers: &[String],
) {
    let dir = results_dir(config, env);
    let stem = file_stem(suite, base.shard);
    let logs: Vec<(String, std::path::PathBuf)> = workers
        .iter()
        .map(|w| (w.clone(), dir.join(format!("{stem}.{w}.log"))))
        .filter(|(_, path)| path.is_file())
        .collect();
    if logs.is_empty() {
        return;
    }
    let mut joined = Vec::new();
    for (worker, path) in &logs {
        joined.extend_from_slice(format!("=== xtask: worker {worker} ===\n").as_bytes());
        joined.extend(std::fs::read(path).unwrap_or_default());
        if !joined.ends_with(b"\n") {
            joined.push(b'\n');
        }
    }
    if crate::state::write_atomic(&dir.join(format!("{stem}.log")), &joined).is_ok() {
        for (_, path) in logs {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
