//! Which shard a test belongs to under `--shard K/N`. With per-test durations (the last
//! unsharded report's, or `--durations FILE`) the tests are split by duration: the recorded tests
//! of all the run's suites together, longest first, each to a shard that already runs its suite
//! while that stays within its share, else to the shard where it would end soonest, a suite's
//! start counted once on each shard that runs it ([`Durations::plan`]); a suite whose tests
//! overlapped (nextest's threads) whole, at its wall time; then each suite's tests without a duration, at the suite's mean, the same
//! way onto what the plan put on each shard, so that every shard's suite time is close to the
//! mean. A run with a plan of workers (`--jobs N`) splits instead by each shard's wall time under
//! that plan ([`Durations::plan_workers`]), from how the last planned run laid its suites out
//! ([`Layout`]): what runs alone counts in full, the rest over the shard's workers. Without
//! durations: by the FNV-1a hash of the test's
//! id (also the requirement digests of [super::python]). The pytest plugin repeats both in
//! Python, so the harness and the plugin agree on every split without talking to each other.
//!
//! Not here: passing the shard to the runners ([super::pytest], [super::nextest]).

use std::collections::{BTreeMap, BTreeSet};

use super::balance::{balance_under_workers, shard_wall, Unit};
use std::path::{Path, PathBuf};

use anyhow::Context;

/// FNV-1a, 64 bits: stable across builds and platforms, and easy to repeat in Python.
pub(super) struct Fnv(u64);

impl Fnv {
    pub(super) fn new() -> Fnv {
        Fnv(0xcbf29ce484222325)
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x100000001b3);
        }
    }

    pub(super) fn finish(&self) -> u64 {
        self.0
    }
}

/// The shard (1-based) a test belongs to when the cases are split `count` ways.
pub fn shard_of(test_id: &str, count: u32) -> u32 {
    let mut hash = Fnv::new();
    hash.write(test_id.as_bytes());
    (hash.finish() % u64::from(count.max(1))) as u32 + 1
}

/// Per-test durations (seconds) of every suite, by [`case_key`], and the suites the run runs:
/// what `--shard` splits by and what the plan of `--jobs N` ([super::plan]) weighs tests by.
#[derive(Debug, Clone, Default)]
pub struct Durations {
    pub suites: BTreeMap<String, BTreeMap<String, f64>>,
    /// Suite → its wall time, when known: what a suite that runs whole in a plan weighs (its
    /// tests may have overlapped, or waited on each other).
    pub walls: BTreeMap<String, f64>,
    pub order: Vec<String>,
    /// Where they were read from.
    pub source: PathBuf,
    /// Whether these were measured under a plan of workers (`--jobs N`), where a test takes
    /// 1.5-2.7× its time alone, and not evenly: what a plan weighs by, when known, as a run
    /// without a plan weighs by the times of runs without one ([`Durations::read_for`]).
    pub planned: bool,
    /// The other kind's durations, as read, written back unchanged.
    pub other: Option<Set>,
    /// How each suite ran in the last run with a plan of workers ([`Layout`]): with the run's
    /// [`Durations::jobs`], what lets [`Durations::plan`] predict a shard's wall time under the
    /// plan it will run with.
    pub layout: BTreeMap<String, Layout>,
    /// The workers the run's plan will have (`--jobs N`; 1 without a plan): set by the run, never
    /// stored.
    pub jobs: u32,
}

/// How a suite ran in a plan of workers ([super::plan]), as `durations.json` keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Whole, alone, before the workers start (a suite that is not `parallel`): its tests one
    /// after the other.
    Alone,
    /// Whole on one worker (a `parallel` suite without a collection: nextest, which runs its
    /// tests at once itself).
    Lane,
    /// Its tests over the workers, except these (their serial markers), which ran alone first.
    Spread { alone: BTreeSet<String> },
}

/// One kind's durations in `durations.json`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Set {
    suites: BTreeMap<String, BTreeMap<String, f64>>,
    #[serde(default)]
    walls: BTreeMap<String, f64>,
    /// Of runs with a plan only.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    layout: BTreeMap<String, Layout>,
}

/// A test's key in [`Durations`]: its JUnit classname and name.
pub fn case_key(classname: &str, name: &str) -> String {
    format!("{classname}::{name}")
}

/// Where an unsharded gate leaves the durations of its report for later sharded runs (the
/// report itself is overwritten by every shard, so shards that run one after the other would
/// otherwise split by different durations).
pub fn default_path(work_dir: &Path) -> PathBuf {
    work_dir.join("durations.json")
}

/// `durations.json` as the harness writes it; [`Stored::Tests`] is the form before wall times.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
enum Stored {
    Kept {
        version: u32,
        /// Of runs without a plan.
        suites: BTreeMap<String, BTreeMap<String, f64>>,
        #[serde(default)]
        walls: BTreeMap<String, f64>,
        /// Of runs with a plan of workers (version 3).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        planned: Option<Set>,
    },
    Tests(BTreeMap<String, BTreeMap<String, f64>>),
}

/// How many of a test's last runs its duration is the median of, read from a history.
pub const HISTORY_RUNS: usize = 10;

impl Durations {
    /// Reads a JUnit report (`--durations FILE`, a CI artifact), the harness's own
    /// `durations.json`, or a run history (`history.db`: each test's median over its last
    /// [`HISTORY_RUNS`] finished runs). The `harness` suite (the gate's steps) is not a suite of
    /// tests.
    pub fn read(path: &Path) -> anyhow::Result<Durations> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut durations = Durations {
            source: path.to_path_buf(),
            ..Durations::default()
        };
        if bytes.starts_with(b"SQLite format 3\0") {
            durations.suites = crate::history::Store::open(path)
                .and_then(|store| store.test_durations(HISTORY_RUNS))
                .with_context(|| format!("{} is not a run history", path.display()))?;
            return Ok(durations);
        }
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{} is neither text nor a run history", path.display()))?;
        if text.trim_start().starts_with('{') {
            match serde_json::from_str(&text)
                .with_context(|| format!("{} is not a durations file", path.display()))?
            {
                Stored::Kept {
                    suites,
                    walls,
                    planned,
                    ..
                } => {
                    durations.suites = suites;
                    durations.walls = walls;
                    durations.other = planned;
                }
                Stored::Tests(suites) => durations.suites = suites,
            }
        } else {
            for suite in crate::junit::parse_suites(&text)
                .with_context(|| format!("{} is not a JUnit report", path.display()))?
            {
                if suite.name != "harness" {
                    durations.keep(&suite.name, suite.time, &suite.cases);
                }
            }
        }
        Ok(durations)
    }

    /// [`Durations::read`], the kind a run with (`planned`) or without a plan of workers weighs
    /// by: that kind's when `durations.json` has them, else the other's (better than none).
    pub fn read_for(path: &Path, planned: bool) -> anyhow::Result<Durations> {
        let mut durations = Durations::read(path)?;
        let serial = Set {
            suites: std::mem::take(&mut durations.suites),
            walls: std::mem::take(&mut durations.walls),
            layout: BTreeMap::new(),
        };
        let with_plan = durations.other.take();
        let (mine, theirs) = if planned {
            (with_plan, Some(serial))
        } else {
            (Some(serial), with_plan)
        };
        let (mine, theirs) = (
            mine.filter(|set| !set.suites.is_empty()),
            theirs.filter(|set| !set.suites.is_empty()),
        );
        let weigh = mine.or_else(|| theirs.clone()).unwrap_or_default();
        durations.suites = weigh.suites;
        durations.walls = weigh.walls;
        // How suites ran in a plan says nothing to a run without one.
        durations.layout = if planned {
            weigh.layout
        } else {
            BTreeMap::new()
        };
        durations.other = theirs;
        durations.planned = planned;
        Ok(durations)
    }

    /// Replaces a suite's durations with those of this run of it. A skipped test took no time
    /// because it did not run: it is unknown (weighed at its suite's mean), not free; a run of
    /// the suite where nothing ran (the engine lost, a collection that failed) leaves what was
    /// known.
    pub fn keep(&mut self, suite: &str, wall: std::time::Duration, cases: &[crate::junit::Case]) {
        let tests: BTreeMap<String, f64> = cases
            .iter()
            .filter(|c| !matches!(c.status, crate::junit::Status::Skipped { .. }))
            .map(|c| (case_key(&c.classname, &c.name), c.time.as_secs_f64()))
            .collect();
        if tests.is_empty() {
            return;
        }
        self.suites.insert(suite.to_owned(), tests);
        self.walls.insert(suite.to_owned(), wall.as_secs_f64());
    }

    /// Writes the `durations.json` form.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mine = Set {
            suites: self.suites.clone(),
            walls: self.walls.clone(),
            layout: if self.planned {
                self.layout.clone()
            } else {
                BTreeMap::new()
            },
        };
        let (serial, planned) = if self.planned {
            (self.other.clone().unwrap_or_default(), Some(mine))
        } else {
            (mine, self.other.clone())
        };
        let stored = Stored::Kept {
            version: 3,
            suites: serial.suites,
            walls: serial.walls,
            planned,
        };
        crate::state::write_atomic(path, serde_json::to_string_pretty(&stored)?.as_bytes())
    }

    /// The recorded tests of the run's suites ([`Durations::order`]) split together, longest
    /// first: each test's shard by suite, and the time it puts on each shard (where the tests
    /// without a duration go next).
    ///
    /// A shard that runs any test of a suite also pays the suite's start (its runner's start and
    /// collection: the suite's wall time less its tests' times, when the wall is known), once:
    /// a test goes to a shard that started its suite while that shard stays within its share
    /// (every test and one start of every suite, over the shards), else to the shard where it
    /// would end soonest with its start counted.
    ///
    /// A suite whose tests overlapped ([`Durations::overlapped`]) is not split: it goes whole to
    /// one shard, weighed by its wall time, as one test would.
    ///
    /// With a plan of workers ([`Durations::jobs`] over one) and the layout of the last run with
    /// one, the split is [`Durations::plan_workers`] instead: by each shard's wall time under
    /// that plan.
    pub fn plan(&self, count: u32) -> Plan {
        if self.jobs > 1 && !self.layout.is_empty() {
            return self.plan_workers(count);
        }
        // (suite, key: "" for a whole suite, seconds)
        let mut tests: Vec<(&str, &str, f64)> = Vec::new();
        for suite in &self.order {
            if let Some(wall) = self.overlapped(suite) {
                tests.push((suite, "", wall));
                continue;
            }
            for (key, seconds) in self.suites.get(suite).into_iter().flatten() {
                tests.push((suite, key, *seconds));
            }
        }
        tests.sort_by(|a, b| {
            b.2.total_cmp(&a.2)
                .then_with(|| (a.0, a.1).cmp(&(b.0, b.1)))
        });
        let count = count.max(1) as usize;
        // Each shard's share when every suite starts once.
        let start_of = |suite: &str| {
            if self.overlapped(suite).is_some() {
                0.0
            } else {
                self.start_cost(suite)
            }
        };
        let share = (tests.iter().map(|t| t.2).sum::<f64>()
            + self.order.iter().map(|s| start_of(s)).sum::<f64>())
            / count as f64;
        let mut loads = vec![0.0; count];
        let mut started: Vec<BTreeSet<&str>> = vec![Default::default(); count];
        let mut shards: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        let mut whole = BTreeMap::new();
        for (suite, key, seconds) in tests {
            let start = start_of(suite);
            let ends = |i: usize| {
                loads[i]
                    + seconds
                    + if started[i].contains(suite) {
                        0.0
                    } else {
                        start
                    }
            };
            let soonest = |among: &mut dyn Iterator<Item = usize>| {
                among.min_by(|a, b| ends(*a).total_cmp(&ends(*b)).then(a.cmp(b)))
            };
            // A shard that started the suite takes it while it stays within its share; else
            // the shard where it ends soonest, its start counted.
            let best = soonest(&mut (0..count).filter(|i| started[*i].contains(suite)))
                .filter(|i| ends(*i) <= share + 1e-9)
                .or_else(|| soonest(&mut (0..count)))
                .unwrap_or(0);
            loads[best] = ends(best);
            started[best].insert(suite);
            let keys: Vec<&String> = if key.is_empty() {
                whole.insert(suite.to_owned(), best as u32 + 1);
                self.suites
                    .get(suite)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k)
                    .collect()
            } else {
                vec![
                    self.suites[suite]
                        .get_key_value(key)
                        .expect("a recorded test")
                        .0,
                ]
            };
            let entry = shards.entry(suite.to_owned()).or_default();
            for key in keys {
                entry.insert(key.clone(), best as u32 + 1);
            }
        }
        Plan {
            shards,
            loads,
            whole,
        }
    }

    /// The split under a plan of [`Durations::jobs`] workers, by the wall time each shard will
    /// take: what runs alone (a suite that is not `parallel`, the tests with serial markers) adds
    /// its time; the rest goes over the shard's workers, longest first each to the least loaded,
    /// and adds only what outlasts the busiest worker. Every unit, longest first, goes to the
    /// shard whose predicted wall time it leaves lowest; [`Plan::loads`] are those wall times. A
    /// suite that ran whole on one worker ([`Layout::Lane`]) goes whole to one shard, weighed by
    /// its tests' times. The times are those measured under a plan ([`Durations::planned`]).
    pub fn plan_workers(&self, count: u32) -> Plan {
        let mut units: Vec<Unit> = Vec::new();
        for suite in &self.order {
            let tests = self.suites.get(suite);
            let layout = self.layout.get(suite);
            if layout == Some(&Layout::Lane) {
                // One process whose tests overlap (nextest's threads): its wall time, start
                // included, is what it holds its worker for.
                let seconds = self
                    .walls
                    .get(suite)
                    .copied()
                    .filter(|wall| *wall > 0.0)
                    .unwrap_or_else(|| tests.map_or(0.0, |t| t.values().sum()));
                units.push(Unit {
                    suite,
                    key: None,
                    seconds,
                    alone: false,
                });
                continue;
            }
            for (key, seconds) in tests.into_iter().flatten() {
                let alone = match layout {
                    Some(Layout::Alone) => true,
                    Some(Layout::Spread { alone }) => alone.contains(key),
                    _ => false,
                };
                units.push(Unit {
                    suite,
                    key: Some(key),
                    seconds: *seconds,
                    alone,
                });
            }
        }
        units.sort_by(|a, b| {
            b.seconds
                .total_cmp(&a.seconds)
                .then_with(|| (a.suite, a.key).cmp(&(b.suite, b.key)))
        });
        let count = count.max(1) as usize;
        let on = balance_under_workers(&units, count, self.jobs);
        let mut shards: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
        let mut whole = BTreeMap::new();
        for (unit, shard) in units.iter().zip(&on) {
            let shard = *shard as u32 + 1;
            let entry = shards.entry(unit.suite.to_owned()).or_default();
            match unit.key {
                Some(key) => {
                    entry.insert(key.to_owned(), shard);
                }
                None => {
                    whole.insert(unit.suite.to_owned(), shard);
                    for key in self
                        .suites
                        .get(unit.suite)
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| k)
                    {
                        entry.insert(key.clone(), shard);
                    }
                }
            }
        }
        Plan {
            shards,
            loads: (0..count)
                .map(|i| shard_wall(&units, &on, i, self.jobs))
                .collect(),
            whole,
        }
    }

    /// A suite's wall time when its tests overlapped in it (their recorded times add up to more
    /// than a tenth over it: its runner ran several at once, as nextest does): their times then
    /// depend on what ran beside them and do not add up in a split.
    pub fn overlapped(&self, suite: &str) -> Option<f64> {
        let wall = *self.walls.get(suite)?;
        let tests: f64 = self.suites.get(suite)?.values().sum();
        (wall > 0.0 && tests > wall * 1.1).then_some(wall)
    }

    /// What a shard pays to start a suite: its recorded wall time less its tests' times (zero
    /// when the wall is unknown, or the tests overlapped in it).
    pub fn start_cost(&self, suite: &str) -> f64 {
        let Some(wall) = self.walls.get(suite) else {
            return 0.0;
        };
        let tests: f64 = self
            .suites
            .get(suite)
            .into_iter()
            .flatten()
            .map(|(_, s)| s)
            .sum();
        (wall - tests).max(0.0)
    }

    /// The mean recorded duration of a suite's tests (one second when none is recorded).
    pub fn mean(&self, suite: &str) -> f64 {
        let known: Vec<f64> = self
            .suites
            .get(suite)
            .map(|t| t.values().copied().collect())
            .unwrap_or_default();
        if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        }
    }

    /// Each of a suite's tests (by [`case_key`]) with its shard: the plan's for recorded ones,
    /// the rest (at the suite's mean, in key order) onto the plan's loads.
    pub fn assign(&self, suite: &str, tests: &[String], count: u32) -> BTreeMap<String, u32> {
        let plan = self.plan(count);
        if let Some(shard) = plan.whole.get(suite) {
            return tests.iter().map(|t| (t.clone(), *shard)).collect();
        }
        let planned = plan.shards.get(suite).cloned().unwrap_or_default();
        let mean = self.mean(suite);
        let unknown: Vec<(String, f64)> = tests
            .iter()
            .filter(|t| !planned.contains_key(*t))
            .map(|t| (t.clone(), mean))
            .collect();
        let mut loads = plan.loads;
        let mut shards = split(&unknown, &mut loads);
        shards.extend(planned.into_iter().filter(|(key, _)| tests.contains(key)));
        shards
    }
}

/// [`Durations::plan`]: the recorded tests' shards by suite, and the time on each shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub shards: BTreeMap<String, BTreeMap<String, u32>>,
    pub loads: Vec<f64>,
    /// The suites that go whole to one shard ([`Durations::overlapped`]), new tests with them.
    pub whole: BTreeMap<String, u32>,
}

/// Longest first, each test to the shard with the least time so far (the lowest index on a
/// tie); `loads` starts with what earlier suites put on each shard and ends with this suite
/// added. Returns each test's shard (1-based).
pub fn split(tests: &[(String, f64)], loads: &mut [f64]) -> BTreeMap<String, u32> {
    let mut order: Vec<&(String, f64)> = tests.iter().collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut shards = BTreeMap::new();
    for (test, weight) in order {
        let least = (0..loads.len())
            .min_by(|a, b| loads[*a].total_cmp(&loads[*b]).then(a.cmp(b)))
            .unwrap_or(0);
        loads[least] += weight;
        shards.insert(test.clone(), least as u32 + 1);
    }
    shards
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_by_duration_balances_the_shards_and_starts_from_earlier_suites() {
        // One long test and many short ones: the long one alone on a shard, the rest balanced.
        let mut tests: Vec<(String, f64)> = vec![("long".into(), 6.0)];
        tests.extend((0..12).map(|i| (format!("t{i:02}"), 1.0)));
        let mut loads = vec![0.0; 3];
        let shards = split(&tests, &mut loads);
        assert_eq!(shards["long"], 1);
        assert_eq!(loads, [6.0, 6.0, 6.0]);
        assert_eq!(shards.len(), 13);
        // Deterministic: the same input, the same split.
        assert_eq!(shards, split(&tests, &mut [0.0; 3]));
        // A suite after one that loaded shard 1 puts its tests elsewhere first.
        let mut loads = vec![5.0, 0.0, 0.0];
        let shards = split(&[("a".into(), 2.0), ("b".into(), 2.0)], &mut loads);
        assert_eq!((shards["a"], shards["b"]), (2, 3));
    }

    #[test]
    fn the_plan_splits_every_suites_recorded_tests_together() {
        // Suite order would put the long tests of the last suite on top of a balanced start; the
        // plan takes them first.
        let durations = Durations {
            suites: BTreeMap::from([
                (
                    "first".to_owned(),
                    (0..6).map(|i| (format!("f{i}"), 2.0)).collect(),
                ),
                (
                    "last".to_owned(),
                    BTreeMap::from([("big".to_owned(), 6.0), ("mid".to_owned(), 5.0)]),
                ),
            ]),
            order: vec!["first".into(), "last".into()],
            ..Durations::default()
        };
        let plan = durations.plan(3);
        let mut loads = plan.loads.clone();
        loads.sort_by(f64::total_cmp);
        assert_eq!(loads, [7.0, 8.0, 8.0]);
        assert_ne!(plan.shards["last"]["big"], plan.shards["last"]["mid"]);
        // A new test goes where the plan left the least, at its suite's mean.
        let tests = vec!["big".to_owned(), "mid".to_owned(), "new".to_owned()];
        let assigned = durations.assign("last", &tests, 3);
        assert_eq!(assigned.len(), 3);
        assert_eq!(assigned["big"], plan.shards["last"]["big"]);
        let least = plan
            .loads
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0 as u32
            + 1;
        assert_eq!(assigned["new"], least);
        assert_eq!(durations.mean("last"), 5.5);
        assert_eq!(durations.mean("none"), 1.0);
    }

    #[test]
    fn a_shard_pays_a_suites_start_once_so_small_suites_stay_together() {
        // Two suites of four 1 s tests; each suite's runner takes 3 s to start. Spread test by
        // test, both shards would pay both starts (10 s each); together, each pays one (7 s).
        let suite = |prefix: &str| -> BTreeMap<String, f64> {
            (0..4).map(|i| (format!("{prefix}{i}"), 1.0)).collect()
        };
        let durations = Durations {
            suites: BTreeMap::from([("a".to_owned(), suite("a")), ("b".to_owned(), suite("b"))]),
            walls: BTreeMap::from([("a".to_owned(), 7.0), ("b".to_owned(), 7.0)]),
            order: vec!["a".into(), "b".into()],
            ..Durations::default()
        };
        assert_eq!(durations.start_cost("a"), 3.0);
        let plan = durations.plan(2);
        assert_eq!(plan.loads, [7.0, 7.0]);
        let shards_of = |suite: &str| -> std::collections::BTreeSet<u32> {
            plan.shards[suite].values().copied().collect()
        };
        assert_eq!(shards_of("a").len(), 1, "{plan:?}");
        assert_ne!(shards_of("a"), shards_of("b"), "{plan:?}");
        // Without walls, a start costs nothing and the tests spread evenly.
        let unknown = Durations {
            walls: BTreeMap::new(),
            ..durations
        };
        assert_eq!(unknown.plan(2).loads, [4.0, 4.0]);
    }

    /// The reference stack's shape under four workers: `mc` has four destructive tests of 2 s
    /// that run alone and sixteen of 1 s over the workers; `load` runs whole on one worker.
    fn planned_reference() -> Durations {
        let mut mc: BTreeMap<String, f64> = (0..4).map(|i| (format!("a{i}"), 2.0)).collect();
        mc.extend((0..16).map(|i| (format!("p{i:02}"), 1.0)));
        Durations {
            suites: BTreeMap::from([
                ("mc".to_owned(), mc),
                (
                    "load".to_owned(),
                    (0..3).map(|i| (format!("l{i}"), 1.0)).collect(),
                ),
            ]),
            // Under a plan a suite's wall is the span of its chunks; `load`'s tests overlapped.
            walls: BTreeMap::from([("mc".to_owned(), 20.0), ("load".to_owned(), 2.5)]),
            order: vec!["load".into(), "mc".into()],
            layout: BTreeMap::from([
                ("load".to_owned(), Layout::Lane),
                (
                    "mc".to_owned(),
                    Layout::Spread {
                        alone: (0..4).map(|i| format!("a{i}")).collect(),
                    },
                ),
            ]),
            planned: true,
            jobs: 4,
            ..Durations::default()
        }
    }

    /// Each shard's suites' wall time under four workers, worked out from a plan's shards: what
    /// runs alone in full (with a process start per suite), then the rest longest first, each
    /// to the worker that would end it soonest, a worker paying a process start for each suite
    /// it takes tests of; a suite that runs whole holds one worker for its wall time.
    fn walls_under_workers(durations: &Durations, plan: &Plan, count: u32) -> Vec<f64> {
        let start = super::super::balance::PROCESS_START_S;
        (1..=count)
            .map(|shard| {
                let mut alone = 0.0;
                // (seconds, suite, whether it starts a process)
                let mut parallel: Vec<(f64, &str, bool)> = Vec::new();
                for (suite, tests) in &plan.shards {
                    let mut mine = tests.iter().filter(|(_, s)| **s == shard).peekable();
                    if durations.layout.get(suite) == Some(&Layout::Lane) {
                        if mine.peek().is_some() {
                            parallel.push((durations.walls[suite], suite, false));
                        }
                        continue;
                    }
                    let mut started_alone = false;
                    for (key, _) in mine {
                        let seconds = durations.suites[suite][key];
                        match durations.layout.get(suite) {
                            Some(Layout::Spread { alone: serial }) if serial.contains(key) => {
                                alone += seconds;
                                if !started_alone {
                                    alone += start;
                                    started_alone = true;
                                }
                            }
                            _ => parallel.push((seconds, suite, true)),
                        }
                    }
                }
                parallel.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
                let mut workers: Vec<(f64, BTreeSet<&str>)> = vec![(0.0, BTreeSet::new()); 4];
                for (seconds, suite, starts) in parallel {
                    let cost = |w: &(f64, BTreeSet<&str>)| {
                        w.0 + seconds
                            + if starts && !w.1.contains(suite) {
                                start
                            } else {
                                0.0
                            }
                    };
                    let best = (0..4)
                        .min_by(|a, b| {
                            cost(&workers[*a])
                                .total_cmp(&cost(&workers[*b]))
                                .then(a.cmp(b))
                        })
                        .unwrap();
                    workers[best].0 = cost(&workers[best]);
                    workers[best].1.insert(suite);
                }
                alone + workers.iter().map(|w| w.0).fold(0.0, f64::max)
            })
            .collect()
    }

    fn ratio(walls: &[f64]) -> f64 {
        let slow = walls.iter().copied().fold(0.0, f64::max);
        let fast = walls.iter().copied().fold(f64::MAX, f64::min);
        slow / fast
    }

    #[test]
    fn under_workers_a_shard_pays_what_runs_alone_in_full_and_the_rest_over_its_workers() {
        let durations = planned_reference();
        let plan = durations.plan(2);
        // The prediction is the schedule's: what runs alone, then the busiest worker.
        assert_eq!(
            plan.loads,
            walls_under_workers(&durations, &plan, 2),
            "{plan:?}"
        );
        assert!(ratio(&plan.loads) <= 1.25, "{plan:?}");
        // Every test has a shard; load (whole on one worker) goes whole to one shard.
        assert_eq!(plan.shards["mc"].len(), 20);
        assert_eq!(plan.whole.len(), 1);
        let load_shard = plan.whole["load"];
        assert!(plan.shards["load"].values().all(|s| *s == load_shard));

        // Added up as if one after the other (the split without the layout, a plan's walls taken
        // for start costs), the same tests leave one shard far longer under the workers.
        let mut summed = durations.clone();
        summed.layout.clear();
        let sum_plan = summed.plan(2);
        let sum_walls = walls_under_workers(&durations, &sum_plan, 2);
        assert!(ratio(&sum_walls) > 1.25, "{sum_plan:?} {sum_walls:?}");
    }

    #[test]
    fn the_layout_is_kept_with_the_planned_durations_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durations.json");
        let planned = planned_reference();
        planned.write(&path).unwrap();
        let read = Durations::read_for(&path, true).unwrap();
        assert_eq!(read.layout, planned.layout);
        assert_eq!(read.jobs, 0, "the run sets its jobs; they are never stored");
        let serial = Durations::read_for(&path, false).unwrap();
        assert!(serial.layout.is_empty(), "{serial:?}");
        // Written back from the serial side, the planned set keeps its layout.
        serial.write(&path).unwrap();
        assert_eq!(
            Durations::read_for(&path, true).unwrap().layout,
            planned.layout
        );
    }

    #[test]
    fn a_suite_whose_tests_overlapped_goes_whole_to_one_shard_at_its_wall_time() {
        // `load`: three tests of 3 s that ran at once (wall 3.5 s); `e2e`: six tests of 1 s, one
        // after the other. Split test by test, `load` would put 9 s of times that only overlap.
        let durations = Durations {
            suites: BTreeMap::from([
                (
                    "load".to_owned(),
                    (0..3).map(|i| (format!("l{i}"), 3.0)).collect(),
                ),
                (
                    "e2e".to_owned(),
                    (0..6).map(|i| (format!("e{i}"), 1.0)).collect(),
                ),
            ]),
            walls: BTreeMap::from([("load".to_owned(), 3.5), ("e2e".to_owned(), 6.0)]),
            order: vec!["load".into(), "e2e".into()],
            ..Durations::default()
        };
        assert_eq!(durations.overlapped("load"), Some(3.5));
        assert_eq!(durations.overlapped("e2e"), None);
        let plan = durations.plan(2);
        let load: std::collections::BTreeSet<u32> = plan.shards["load"].values().copied().collect();
        assert_eq!(load.len(), 1, "{plan:?}");
        let shard = *load.first().unwrap();
        assert_eq!(plan.whole["load"], shard);
        // 3.5 s of load and 6 s of e2e over two shards: 4.5 and 5 (load with one e2e test... or
        // two), never 9 s of load on one.
        let mut loads = plan.loads.clone();
        loads.sort_by(f64::total_cmp);
        assert_eq!(loads, [4.5, 5.0], "{plan:?}");
        // A new test of the suite goes with it.
        let tests = vec!["l0".to_owned(), "l9".to_owned()];
        let assigned = durations.assign("load", &tests, 2);
        assert_eq!((assigned["l0"], assigned["l9"]), (shard, shard));
    }

    #[test]
    fn runs_with_and_without_a_plan_keep_and_weigh_by_their_own_durations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("durations.json");
        let case = |name: &str, seconds: f64| {
            crate::junit::Case::new("c", name, crate::junit::Status::Passed)
                .with_time(std::time::Duration::from_secs_f64(seconds))
        };
        let second = std::time::Duration::from_secs(1);
        // A run without a plan, then one with: each keeps its own.
        let mut serial = Durations::read_for(&path, false).unwrap_or_default();
        serial.keep("e2e", second, &[case("a", 1.0)]);
        serial.write(&path).unwrap();
        // A plan before any planned run weighs by the serial times, and keeps those.
        let mut planned = Durations::read_for(&path, true).unwrap();
        assert!(planned.planned);
        assert_eq!(planned.suites["e2e"]["c::a"], 1.0);
        planned.keep("e2e", second, &[case("a", 2.5)]);
        planned.write(&path).unwrap();
        assert_eq!(
            Durations::read_for(&path, false).unwrap().suites["e2e"]["c::a"],
            1.0
        );
        assert_eq!(
            Durations::read_for(&path, true).unwrap().suites["e2e"]["c::a"],
            2.5
        );
        // A later serial run replaces only its own.
        let mut serial = Durations::read_for(&path, false).unwrap();
        serial.keep("e2e", second, &[case("a", 0.5)]);
        serial.write(&path).unwrap();
        assert_eq!(
            Durations::read_for(&path, false).unwrap().suites["e2e"]["c::a"],
            0.5
        );
        assert_eq!(
            Durations::read_for(&path, true).unwrap().suites["e2e"]["c::a"],
            2.5
        );
        // `read` (and --durations FILE) gives the serial ones.
        assert_eq!(Durations::read(&path).unwrap().suites["e2e"]["c::a"], 0.5);
    }

    #[test]
    fn durations_read_from_a_report_and_from_their_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let report = dir.path().join("junit.xml");
        std::fs::write(
            &report,
            r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="mission-critical" tests="3" failures="0" errors="0">
  <testsuite name="harness" tests="1" failures="0" errors="0"><testcase classname="harness" name="stack up" time="9.0"/></testsuite>
  <testsuite name="e2e" tests="2" failures="0" errors="0">
    <testcase classname="tests.e2e.test_a" name="test_one" time="1.5"/>
    <testcase classname="tests.e2e.test_a" name="test_two" time="0.25"/>
  </testsuite>
</testsuites>"#,
        )
        .unwrap();
        let mut durations = Durations::read(&report).unwrap();
        assert!(!durations.suites.contains_key("harness"));
        assert_eq!(
            durations.suites["e2e"][&case_key("tests.e2e.test_a", "test_one")],
            1.5
        );
        // Written and read back in the harness's own form.
        let own = default_path(dir.path());
        durations.write(&own).unwrap();
        durations.order = vec!["e2e".into()];
        assert_eq!(Durations::read(&own).unwrap().suites, durations.suites);
        assert_eq!(durations.plan(2).loads, [1.5, 0.25]);
    }

    #[test]
    fn kept_durations_leave_skipped_tests_unknown_keep_walls_and_read_the_old_form() {
        use crate::junit::{Case, Status};
        let dir = tempfile::tempdir().unwrap();
        let path = default_path(dir.path());
        let mut durations = Durations::default();
        let ran =
            Case::new("c", "ran", Status::Passed).with_time(std::time::Duration::from_secs(2));
        let skipped = Case::skipped("c", "skipped", "not run: worker w2 ended before it");
        durations.keep(
            "e2e",
            std::time::Duration::from_secs(5),
            &[ran, skipped.clone()],
        );
        assert_eq!(
            durations.suites["e2e"],
            BTreeMap::from([(case_key("c", "ran"), 2.0)])
        );
        // A run of the suite where nothing ran leaves what was known.
        durations.keep("e2e", std::time::Duration::from_secs(1), &[skipped]);
        assert_eq!(durations.walls["e2e"], 5.0);
        durations.write(&path).unwrap();
        let read = Durations::read(&path).unwrap();
        assert_eq!(
            (read.suites, read.walls),
            (durations.suites, durations.walls)
        );
        // The form before wall times: suite -> test -> seconds.
        std::fs::write(&path, r#"{"load": {"b::t": 1.5}}"#).unwrap();
        let old = Durations::read(&path).unwrap();
        assert_eq!(old.suites["load"]["b::t"], 1.5);
        assert!(old.walls.is_empty());
    }

    #[test]
    fn shards_are_stable_and_in_range() {
        // The same FNV-1a as the pytest plugin: fnv1a("a") = 0xaf63dc4c8601ec8c.
        assert_eq!(
            shard_of("a", 1 << 31),
            (0xaf63dc4c8601ec8c_u64 % (1 << 31)) as u32 + 1
        );
        for id in ["x", "y::z", "tests/t.py::test_1"] {
            let shard = shard_of(id, 3);
            assert!((1..=3).contains(&shard));
            assert_eq!(shard, shard_of(id, 3));
        }
    }
}
