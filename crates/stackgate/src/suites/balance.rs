//! A shard's split under a plan of workers ([super::shard::Durations::plan_workers]): each
//! shard's predicted wall time (what runs alone in full, the rest over its workers, a process
//! start for each suite a worker takes), and the units balanced over the shards by it.
//!
//! Not here: the units themselves, read from the durations ([super::shard]); the plan the shard
//! then runs ([super::plan]).

use std::collections::BTreeSet;

/// What a shard's split under workers counts for starting one runner process (a worker's for
/// a suite, or a suite's for what runs alone): pytest's start and its (second) collection took
/// 0.8–1.1 s on the reference stack, two cores, four workers. Below [super::plan]'s own figure,
/// which errs high so as not to spread a small suite over every worker for nothing; here it
/// predicts a wall time.
pub(super) const PROCESS_START_S: f64 = 1.0;

/// One thing [`super::shard::Durations::plan_workers`] places: a test, or a suite that runs whole.
pub(super) struct Unit<'a> {
    pub suite: &'a str,
    /// `None` for a whole suite (its wall time, its process's start included).
    pub key: Option<&'a str>,
    pub seconds: f64,
    /// Whether it runs alone, before the workers start.
    pub alone: bool,
}

/// Each unit's shard (0-based) under a plan of `jobs` workers: longest first, each to the
/// shard whose predicted wall time it leaves lowest; then, while it shortens the slowest shard
/// (or leaves it and brings another closer), one of that shard's units moved to another, or
/// swapped with one of another's: what the greedy start leaves when process starts make the
/// units lumpy. `units` are sorted longest first.
pub(super) fn balance_under_workers(units: &[Unit], count: usize, jobs: u32) -> Vec<usize> {
    let mut loads = vec![WorkerLoad::new(jobs); count];
    let mut on = Vec::with_capacity(units.len());
    for unit in units {
        let best = (0..count)
            .min_by(|a, b| {
                let after = |i: usize| loads[i].with(unit).wall();
                after(*a).total_cmp(&after(*b)).then(a.cmp(b))
            })
            .unwrap_or(0);
        loads[best] = loads[best].with(unit);
        on.push(best);
    }
    // Each move lowers the slowest shard's wall time, or brings a faster one closer to it; a
    // bound keeps a pathological case short.
    for _ in 0..units.len() * 2 {
        let walls: Vec<f64> = (0..count)
            .map(|i| shard_wall(units, &on, i, jobs))
            .collect();
        let slowest = (0..count)
            .max_by(|a, b| walls[*a].total_cmp(&walls[*b]).then(b.cmp(a)))
            .unwrap_or(0);
        let mine: Vec<usize> = (0..units.len()).filter(|u| on[*u] == slowest).collect();
        // (the slower of the two shards after, how far apart they are, the unit moved, where
        // to, and the unit it swaps with, if any)
        let mut best: Option<(f64, f64, usize, usize, Option<usize>)> = None;
        let mut consider = |on: &mut Vec<usize>, unit: usize, to: usize, back: Option<usize>| {
            on[unit] = to;
            if let Some(other) = back {
                on[other] = slowest;
            }
            let (from_wall, to_wall) = (
                shard_wall(units, on, slowest, jobs),
                shard_wall(units, on, to, jobs),
            );
            on[unit] = slowest;
            if let Some(other) = back {
                on[other] = to;
            }
            // Better: the slower of the two shorter, or as short and the two closer.
            let after = (from_wall.max(to_wall), (from_wall - to_wall).abs());
            let now = (walls[slowest], walls[slowest] - walls[to]);
            let better = |a: (f64, f64), b: (f64, f64)| {
                a.0 < b.0 - 1e-9 || (a.0 < b.0 + 1e-9 && a.1 < b.1 - 1e-9)
            };
            if better(after, now) && best.is_none_or(|(w, d, ..)| better(after, (w, d))) {
                best = Some((after.0, after.1, unit, to, back));
            }
        };
        for &unit in &mine {
            for to in (0..count).filter(|t| *t != slowest) {
                consider(&mut on, unit, to, None);
                let theirs: Vec<usize> = (0..units.len()).filter(|u| on[*u] == to).collect();
                for other in theirs {
                    consider(&mut on, unit, to, Some(other));
                }
            }
        }
        match best {
            Some((_, _, unit, to, back)) => {
                on[unit] = to;
                if let Some(other) = back {
                    on[other] = slowest;
                }
            }
            None => break,
        }
    }
    on
}

/// Shard `shard`'s predicted wall time: its units, longest first, through [`WorkerLoad`].
pub(super) fn shard_wall(units: &[Unit], on: &[usize], shard: usize, jobs: u32) -> f64 {
    units
        .iter()
        .zip(on)
        .filter(|(_, s)| **s == shard)
        .fold(WorkerLoad::new(jobs), |load, (unit, _)| load.with(unit))
        .wall()
}

/// One shard under a plan of workers, as [`super::shard::Durations::plan_workers`] fills it: the time of what
/// runs alone, then each worker's, each with the suites it has started a process of (a runner
/// process costs [`PROCESS_START_S`] once per worker and suite, as the plan itself
/// counts it, and once per suite for what runs alone).
#[derive(Debug, Clone)]
struct WorkerLoad {
    alone: (f64, BTreeSet<String>),
    workers: Vec<(f64, BTreeSet<String>)>,
}

impl WorkerLoad {
    fn new(jobs: u32) -> WorkerLoad {
        WorkerLoad {
            alone: (0.0, BTreeSet::new()),
            workers: vec![(0.0, BTreeSet::new()); jobs.max(1) as usize],
        }
    }

    /// With one more unit: alone, or on the worker that would end it soonest (the lowest on a
    /// tie), as [super::plan] places tests.
    fn with(&self, unit: &Unit) -> WorkerLoad {
        let cost = |(load, started): &(f64, BTreeSet<String>)| {
            let start = if unit.key.is_none() || started.contains(unit.suite) {
                0.0
            } else {
                PROCESS_START_S
            };
            load + start + unit.seconds
        };
        let mut next = self.clone();
        let slot = if unit.alone {
            &mut next.alone
        } else {
            let best = (0..next.workers.len())
                .min_by(|a, b| {
                    cost(&next.workers[*a])
                        .total_cmp(&cost(&next.workers[*b]))
                        .then(a.cmp(b))
                })
                .unwrap_or(0);
            &mut next.workers[best]
        };
        slot.0 = cost(slot);
        slot.1.insert(unit.suite.to_owned());
        next
    }

    /// What the shard's suites take: what runs alone, then the busiest worker.
    fn wall(&self) -> f64 {
        self.alone.0 + self.workers.iter().map(|w| w.0).fold(0.0, f64::max)
    }
}
