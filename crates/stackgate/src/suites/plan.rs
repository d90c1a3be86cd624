//! One schedule of a run's tests over N workers on the one stack (`--jobs N`, `[gate] jobs`):
//! first, one at a time with nothing else running, the suites that are not `parallel` (whole, as
//! without a plan) and the tests carrying one of their suite's `serial_markers` (`destructive`:
//! they restart services); then the tests of `parallel` suites, longest first by the durations of
//! the last report, each to the worker that would finish it soonest (which decides which workers
//! run which suites; the tests themselves the suite's workers then take from one queue in that
//! order, [`Plan::queues`]). The lone ones go first: the
//! workers' runners start while they run (they wait on the stack, not on the CPU), and, as in a
//! run without a plan, the later tests run against a stack that has been restarted. A pure
//! function of the collected tests and the durations of earlier runs ([super::shard::Durations],
//! the same ones `--shard` splits by).
//!
//! Not here: collecting the tests ([super::pytest]), running the plan ([super::workers]).

use std::collections::{BTreeMap, BTreeSet};

use super::shard::Durations;
use crate::config::SuiteCfg;
use crate::junit::{Case, SuiteResult};

/// Workers when neither `--jobs` nor `[gate] jobs` says: the fastest on the reference stack on
/// two cores (README, "Measured on this machine"): its tests wait on the stack, not on the CPU.
pub const DEFAULT_JOBS: u32 = 4;

/// What one more runner process costs a worker, in the plan's seconds: pytest's start and its
/// collection of a reference suite take ~1.1s of CPU, about twice that of wall time on two
/// busy cores. A small suite is not spread over every worker for nothing.
const PROCESS_START_S: f64 = 2.0;

/// The weight of a test without a recorded duration whose suite has none recorded either.
const UNKNOWN_S: f64 = 1.0;

/// A test the plan places.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanTest {
    /// The runner's id (pytest's node id): what its worker is told to run.
    pub id: String,
    /// Its [`super::case_key`].
    pub key: String,
    pub markers: Vec<String>,
}

/// A suite's tests as the run will select them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collection {
    /// The tests that will run, in collection order.
    pub tests: Vec<PlanTest>,
    /// The tests the run's selection leaves out (markers, arguments), skipped with the reason.
    pub skipped: Vec<Case>,
    /// Every case key in collection order: the order of the suite's merged report.
    pub order: Vec<String>,
    /// Every node id the collection saw, before any selection: what each worker's own
    /// collection must not exceed ([super::workers]).
    pub collected: BTreeSet<String>,
}

impl Collection {
    /// The suite's result when its selection leaves nothing to run here (a shard without any of
    /// its tests, a marker that deselects them all): the left-out tests, skipped with the reason,
    /// without starting its runner. `None` when there is something to run, or when nothing was
    /// collected at all (the runner then says so, or `allow_empty` lets it pass).
    pub fn result_without_running(&self, suite: &str) -> Option<SuiteResult> {
        if !self.tests.is_empty() || self.collected.is_empty() {
            return None;
        }
        let mut result = SuiteResult::new(suite);
        result.started = Some(std::time::SystemTime::now());
        result.cases = self.skipped.clone();
        Some(result)
    }
}

/// What a chunk runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// The suite as without a plan (its runner's own parallelism for nextest).
    Whole,
    /// These tests (ids), in collection order.
    Tests(Vec<String>),
}

/// One runner process of the plan: a suite's share on one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub suite: String,
    /// `w1`..`wN` in the parallel phase; `serial` for the tests that run alone; `0` for a suite
    /// that is not `parallel`.
    pub worker: String,
    pub part: Part,
    /// What the plan expects it to take.
    pub seconds: f64,
}

/// The schedule: first `alone`, one at a time; then the lanes at once, each one's chunks one
/// after the other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub jobs: u32,
    pub lanes: Vec<Vec<Chunk>>,
    pub alone: Vec<Chunk>,
    /// The lanes' tests of each suite, longest first: the suite's workers take them one at a time
    /// from one queue in this order ([super::workers]), so that a worker whose tests ran faster
    /// than recorded takes more, and one held up takes fewer. A lane's [`Part::Tests`] are then
    /// what the plan expects it to take (its share of the suite's processes and time). A suite
    /// without a queue here (a plan made by hand) runs each chunk's tests as listed.
    pub queues: BTreeMap<String, Vec<String>>,
}

impl Plan {
    /// Every chunk, in order: the lone ones, then each lane's.
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.alone.iter().chain(self.lanes.iter().flatten())
    }

    /// The plan for people: one line for what runs alone first, one per worker.
    pub fn describe(&self) -> Vec<String> {
        let chunk = |c: &Chunk| match &c.part {
            Part::Whole => c.suite.clone(),
            Part::Tests(ids) => format!("{} ×{}", c.suite, ids.len()),
        };
        let mut lines = Vec::new();
        if !self.alone.is_empty() {
            let parts: Vec<String> = self.alone.iter().map(chunk).collect();
            lines.push(format!("first alone: {}", parts.join(", ")));
        }
        lines.extend(self.lanes.iter().map(|lane| {
            let expected: f64 = lane.iter().map(|c| c.seconds).sum();
            let worker = lane.first().map_or("", |c| c.worker.as_str());
            let parts: Vec<String> = lane.iter().map(chunk).collect();
            format!("worker {worker}: {} (~{expected:.1}s)", parts.join(", "))
        }));
        lines
    }
}

/// One thing to place: a test, or a suite that runs whole.
struct Unit {
    suite: usize,
    test: Option<usize>,
    seconds: f64,
}

/// What the plan expects of a test and of a suite that runs whole, from the durations of
/// earlier runs.
struct Weights<'a>(&'a Durations);

impl Weights<'_> {
    /// A test's recorded time; else its suite's mean; else [`UNKNOWN_S`].
    fn test(&self, suite: &str, key: &str) -> f64 {
        let known = self.0.suites.get(suite);
        if let Some(seconds) = known.and_then(|tests| tests.get(key)) {
            return *seconds;
        }
        match known.filter(|tests| !tests.is_empty()) {
            Some(tests) => tests.values().sum::<f64>() / tests.len() as f64,
            None => UNKNOWN_S,
        }
    }

    /// A whole suite's recorded wall time; else its tests' times added; else [`UNKNOWN_S`].
    fn whole(&self, suite: &str) -> f64 {
        self.0
            .walls
            .get(suite)
            .copied()
            .or_else(|| {
                self.0
                    .suites
                    .get(suite)
                    .map(|tests| tests.values().sum::<f64>())
            })
            .filter(|seconds| *seconds > 0.0)
            .unwrap_or(UNKNOWN_S)
    }
}

/// The suites sorted into what the plan places: the units for the workers (longest first), the
/// suites that run whole alone, and each suite's tests that run alone (their positions).
struct Sorted {
    units: Vec<Unit>,
    alone_whole: Vec<usize>,
    serial: Vec<(usize, Vec<usize>)>,
}

fn sort_out(suites: &[(&SuiteCfg, Option<&Collection>)], weights: &Weights, jobs: u32) -> Sorted {
    let mut sorted = Sorted {
        units: Vec::new(),
        alone_whole: Vec::new(),
        serial: Vec::new(),
    };
    for (index, (suite, collection)) in suites.iter().enumerate() {
        if !suite.parallel || jobs <= 1 {
            sorted.alone_whole.push(index);
            continue;
        }
        let Some(collection) = collection.filter(|c| !c.tests.is_empty()) else {
            sorted.units.push(Unit {
                suite: index,
                test: None,
                seconds: weights.whole(&suite.name),
            });
            continue;
        };
        let mut alone = Vec::new();
        for (position, test) in collection.tests.iter().enumerate() {
            if test
                .markers
                .iter()
                .any(|m| suite.serial_markers.contains(m))
            {
                alone.push(position);
            } else {
                sorted.units.push(Unit {
                    suite: index,
                    test: Some(position),
                    seconds: weights.test(&suite.name, &test.key),
                });
            }
        }
        if !alone.is_empty() {
            sorted.serial.push((index, alone));
        }
    }
    sorted.units.sort_by(|a, b| {
        b.seconds
            .total_cmp(&a.seconds)
            .then(a.suite.cmp(&b.suite))
            .then(a.test.cmp(&b.test))
    });
    sorted
}

/// Longest first, each unit to the lane that would finish it soonest (a lane without a process
/// of its suite yet pays for starting one); ties to the lower lane. Each lane's units by suite.
fn place(units: &[Unit], jobs: u32) -> Vec<BTreeMap<usize, Vec<&Unit>>> {
    let lane_count = (jobs as usize).min(units.len());
    let mut loads = vec![0.0_f64; lane_count];
    let mut placed: Vec<BTreeMap<usize, Vec<&Unit>>> = vec![BTreeMap::new(); lane_count];
    for unit in units {
        let finish = |lane: usize| {
            let start = if placed[lane].contains_key(&unit.suite) {
                0.0
            } else {
                PROCESS_START_S
            };
            loads[lane] + start + unit.seconds
        };
        let best = (0..lane_count)
            .min_by(|a, b| finish(*a).total_cmp(&finish(*b)).then(a.cmp(b)))
            .unwrap_or(0);
        loads[best] = finish(best);
        placed[best].entry(unit.suite).or_default().push(unit);
    }
    placed
}

/// The ids of a suite's tests at `positions`, in collection order.
fn ids_at(
    suites: &[(&SuiteCfg, Option<&Collection>)],
    suite: usize,
    positions: &mut [usize],
) -> Vec<String> {
    positions.sort_unstable();
    let collection = suites[suite].1.expect("a placed test has a collection");
    positions
        .iter()
        .map(|p| collection.tests[*p].id.clone())
        .collect()
}

/// The lanes' chunks: per lane one per suite, the suites shared by the most lanes last (so that
/// the lanes end on the same queue and finish together), a suite that runs whole first (the
/// pytest processes after it start ahead of their turn, [super::workers], and it cannot).
fn lanes_of(
    suites: &[(&SuiteCfg, Option<&Collection>)],
    placed: Vec<BTreeMap<usize, Vec<&Unit>>>,
) -> Vec<Vec<Chunk>> {
    let mut spread: BTreeMap<usize, usize> = BTreeMap::new();
    for by_suite in &placed {
        for suite in by_suite.keys() {
            *spread.entry(*suite).or_default() += 1;
        }
    }
    let mut lanes = Vec::new();
    for (lane, by_suite) in placed.into_iter().enumerate() {
        let worker = format!("w{}", lane + 1);
        let mut by_suite: Vec<(usize, Vec<&Unit>)> = by_suite.into_iter().collect();
        by_suite.sort_by_key(|(suite, _)| (spread[suite], *suite));
        let mut chunks: Vec<Chunk> = by_suite
            .into_iter()
            .map(|(suite, units)| {
                let mut positions: Vec<usize> = units.iter().filter_map(|u| u.test).collect();
                Chunk {
                    suite: suites[suite].0.name.clone(),
                    worker: worker.clone(),
                    part: if positions.is_empty() {
                        Part::Whole
                    } else {
                        Part::Tests(ids_at(suites, suite, &mut positions))
                    },
                    seconds: units.iter().map(|u| u.seconds).sum(),
                }
            })
            .collect();
        chunks.sort_by_key(|c| c.part != Part::Whole);
        if !chunks.is_empty() {
            lanes.push(chunks);
        }
    }
    lanes
}

/// The schedule of the suites' tests over `jobs` workers. A suite without a collection (or with
/// nothing to run) runs whole: on a worker when it is `parallel`, alone otherwise.
pub fn plan(suites: &[(&SuiteCfg, Option<&Collection>)], durations: &Durations, jobs: u32) -> Plan {
    let weights = Weights(durations);
    let Sorted {
        units,
        alone_whole,
        serial,
    } = sort_out(suites, &weights, jobs);
    let mut queues: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for unit in &units {
        if let (Some(test), Some(collection)) = (unit.test, suites[unit.suite].1) {
            queues
                .entry(suites[unit.suite].0.name.clone())
                .or_default()
                .push(collection.tests[test].id.clone());
        }
    }
    let mut plan = Plan {
        jobs,
        queues,
        lanes: lanes_of(suites, place(&units, jobs)),
        ..Plan::default()
    };
    for suite in alone_whole {
        let name = &suites[suite].0.name;
        plan.alone.push(Chunk {
            suite: name.clone(),
            worker: "0".to_owned(),
            part: Part::Whole,
            seconds: weights.whole(name),
        });
    }
    for (suite, mut positions) in serial {
        let (config, collection) = suites[suite];
        let seconds = positions
            .iter()
            .filter_map(|p| collection.map(|c| weights.test(&config.name, &c.tests[*p].key)))
            .sum();
        plan.alone.push(Chunk {
            suite: config.name.clone(),
            worker: "serial".to_owned(),
            part: Part::Tests(ids_at(suites, suite, &mut positions)),
            seconds,
        });
    }
    plan
}

/// How each planned suite runs in `plan` ([super::shard::Layout]), for `durations.json`: what a
/// later sharded run predicts its shards' wall times by.
pub fn layout(
    plan: &Plan,
    suites: &[(&SuiteCfg, Option<&Collection>)],
) -> BTreeMap<String, super::shard::Layout> {
    use super::shard::Layout;
    let whole_in = |chunks: &[Chunk], suite: &str| {
        chunks
            .iter()
            .any(|c| c.suite == suite && c.part == Part::Whole)
    };
    let mut layouts = BTreeMap::new();
    for (suite, collection) in suites {
        let name = suite.name.as_str();
        let layout = if whole_in(&plan.alone, name) {
            Layout::Alone
        } else if plan.lanes.iter().any(|lane| whole_in(lane, name)) {
            Layout::Lane
        } else {
            let key_of: BTreeMap<&str, &str> = collection
                .map(|c| {
                    c.tests
                        .iter()
                        .map(|t| (t.id.as_str(), t.key.as_str()))
                        .collect()
                })
                .unwrap_or_default();
            let alone = plan
                .alone
                .iter()
                .filter(|c| c.suite == name)
                .flat_map(|c| match &c.part {
                    Part::Tests(ids) => ids.clone(),
                    Part::Whole => Vec::new(),
                })
                .filter_map(|id| key_of.get(id.as_str()).map(|k| (*k).to_owned()))
                .collect();
            Layout::Spread { alone }
        };
        layouts.insert(name.to_owned(), layout);
    }
    layouts
}

/// The suites a plan runs, each once, in the plan's order of first appearance.
pub fn suites_of(plan: &Plan) -> Vec<&str> {
    let mut seen = BTreeSet::new();
    plan.chunks()
        .map(|c| c.suite.as_str())
        .filter(|s| seen.insert(*s))
        .collect()
}

/// A pytest suite with the defaults of `[[suite]]`, for the unit tests of the suites.
#[cfg(test)]
pub(crate) fn test_suite(name: &str, parallel: bool) -> SuiteCfg {
    SuiteCfg {
        name: name.to_owned(),
        runner: crate::config::Runner::Pytest,
        args: Vec::new(),
        needs: Vec::new(),
        timeout_s: crate::config::Secs(900),
        allow_empty: false,
        parallel,
        serial_markers: vec!["destructive".to_owned()],
        env: BTreeMap::new(),
        retries: 0,
        quarantine: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Runner;

    use super::test_suite as suite;

    fn collection(tests: &[(&str, &[&str])]) -> Collection {
        Collection {
            tests: tests
                .iter()
                .map(|(id, markers)| PlanTest {
                    id: (*id).to_owned(),
                    key: format!("k::{id}"),
                    markers: markers.iter().map(|m| (*m).to_owned()).collect(),
                })
                .collect(),
            skipped: Vec::new(),
            order: tests.iter().map(|(id, _)| format!("k::{id}")).collect(),
            collected: tests.iter().map(|(id, _)| (*id).to_owned()).collect(),
        }
    }

    fn durations(suite: &str, tests: &[(&str, f64)]) -> Durations {
        let mut d = Durations::default();
        d.suites.insert(
            suite.to_owned(),
            tests
                .iter()
                .map(|(id, s)| (format!("k::{id}"), *s))
                .collect(),
        );
        d
    }

    fn ids(chunk: &Chunk) -> Vec<&str> {
        match &chunk.part {
            Part::Tests(ids) => ids.iter().map(String::as_str).collect(),
            Part::Whole => vec!["<whole>"],
        }
    }

    #[test]
    fn longest_first_balances_the_workers_and_keeps_collection_order_within_each() {
        let e2e = suite("e2e", true);
        let tests = collection(&[("a", &[]), ("b", &[]), ("c", &[]), ("d", &[]), ("e", &[])]);
        let known = durations(
            "e2e",
            &[("a", 1.0), ("b", 6.0), ("c", 2.0), ("d", 3.0), ("e", 2.0)],
        );
        let plan = plan(&[(&e2e, Some(&tests))], &known, 2);
        assert_eq!(plan.lanes.len(), 2);
        // b (6) on w1; d, c, e on w2 (1 + 7); a to w1 (1 + 7), each worker ends at 8.
        assert_eq!(ids(&plan.lanes[0][0]), ["a", "b"]);
        assert_eq!(ids(&plan.lanes[1][0]), ["c", "d", "e"]);
        assert_eq!(plan.lanes[0][0].worker, "w1");
        assert_eq!(plan.lanes[1][0].worker, "w2");
        assert!(plan.alone.is_empty());
        // Every test exactly once.
        let mut all: Vec<&str> = plan.chunks().flat_map(ids).collect();
        all.sort_unstable();
        assert_eq!(all, ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn serial_markers_run_alone_first_and_other_suites_share_the_workers() {
        let mc = suite("mission_critical", true);
        let e2e = suite("e2e", true);
        let lonely = suite("lonely", false);
        let mc_tests = collection(&[
            ("healthy", &["docker"]),
            ("restart_redis", &["docker", "destructive"]),
            ("events", &[]),
            ("restart_pg", &["destructive"]),
        ]);
        let e2e_tests = collection(&[("x", &[]), ("y", &[]), ("z", &[])]);
        let plan = plan(
            &[
                (&mc, Some(&mc_tests)),
                (&lonely, None),
                (&e2e, Some(&e2e_tests)),
            ],
            &Durations::default(),
            3,
        );
        let placed: Vec<&str> = plan.lanes.iter().flatten().flat_map(ids).collect();
        assert!(!placed.contains(&"restart_redis") && !placed.contains(&"restart_pg"));
        assert_eq!(plan.alone.len(), 2);
        assert_eq!(
            (plan.alone[0].suite.as_str(), ids(&plan.alone[0])),
            ("lonely", vec!["<whole>"])
        );
        assert_eq!(plan.alone[1].worker, "serial");
        assert_eq!(ids(&plan.alone[1]), ["restart_redis", "restart_pg"]);
        assert_eq!(placed.len(), 5);
        assert_eq!(plan.lanes.len(), 3);
        assert_eq!(
            suites_of(&plan),
            ["lonely", "mission_critical", "e2e"],
            "{plan:#?}"
        );
        assert_eq!(
            plan.describe()[0],
            "first alone: lonely, mission_critical ×2"
        );
    }

    #[test]
    fn unknown_tests_weigh_their_suites_mean_and_whole_suites_their_sum() {
        let e2e = suite("e2e", true);
        let mut load = suite("load", true);
        load.runner = Runner::Nextest;
        let tests = collection(&[("old", &[]), ("new", &[])]);
        let mut known = durations("e2e", &[("old", 4.0)]);
        known
            .suites
            .extend(durations("load", &[("a", 2.0), ("b", 3.0)]).suites);
        let plan = plan(&[(&e2e, Some(&tests)), (&load, None)], &known, 4);
        let seconds: BTreeMap<Vec<&str>, f64> =
            plan.chunks().map(|c| (ids(c), c.seconds)).collect();
        assert_eq!(seconds[&vec!["<whole>"]], 5.0);
        assert_eq!(seconds[&vec!["new"]], 4.0, "{plan:#?}");
        assert_eq!(plan.lanes.len(), 3);
        // A suite's wall time, when known, is what it weighs whole (its tests waited on each
        // other, or overlapped).
        known.walls.insert("load".to_owned(), 3.5);
        let plan = super::plan(&[(&e2e, Some(&tests)), (&load, None)], &known, 4);
        assert_eq!(plan.lanes[0][0].seconds, 4.0);
        assert!(plan
            .chunks()
            .any(|c| c.part == Part::Whole && c.seconds == 3.5));
    }

    #[test]
    fn a_worker_running_a_suite_takes_more_of_it_before_starting_another_process() {
        let mc = suite("mc", true);
        let e2e = suite("e2e", true);
        let mc_tests = collection(&[("a", &[])]);
        let e2e_tests = collection(&[("x", &[]), ("y", &[])]);
        let mut known = durations("mc", &[("a", 2.0)]);
        known
            .suites
            .extend(durations("e2e", &[("x", 2.5), ("y", 0.5)]).suites);
        let plan = plan(
            &[(&mc, Some(&mc_tests)), (&e2e, Some(&e2e_tests))],
            &known,
            2,
        );
        // x (2.5) on w1, a (2.0) on w2. Without the cost of a process y would go to w2 (ending at
        // 2.5 against 3.0), which would then start a second pytest; with it (2s), w1 ends at 5.0
        // against w2's 6.5.
        assert_eq!(plan.lanes.len(), 2);
        assert_eq!(ids(&plan.lanes[0][0]), ["x", "y"], "{plan:#?}");
        assert_eq!(plan.lanes[1].len(), 1, "{plan:#?}");
        assert_eq!(plan.lanes[1][0].suite, "mc");
    }

    #[test]
    fn one_job_or_no_parallel_suite_runs_every_suite_whole_alone() {
        let e2e = suite("e2e", true);
        let tests = collection(&[("a", &["destructive"]), ("b", &[])]);
        let plan = plan(&[(&e2e, Some(&tests))], &Durations::default(), 1);
        assert!(plan.lanes.is_empty());
        assert_eq!(plan.alone.len(), 1);
        assert_eq!(plan.alone[0].part, Part::Whole);
    }

    #[test]
    fn only_a_collection_with_nothing_selected_is_reported_without_its_runner() {
        let some = collection(&[("a", &[])]);
        assert!(some.result_without_running("e2e").is_none());
        // Collected, none of it selected here (another shard's, deselected): its skipped ones.
        let mut none_here = collection(&[]);
        none_here.collected.insert("a".to_owned());
        none_here
            .skipped
            .push(Case::skipped("k", "b", "deselected"));
        let result = none_here.result_without_running("e2e").unwrap();
        assert_eq!(result.name, "e2e");
        assert_eq!(result.cases, none_here.skipped);
        assert!(result.passed());
        // Nothing collected at all: the runner runs, and says so (or `allow_empty` lets it).
        assert!(collection(&[]).result_without_running("e2e").is_none());
    }
}
