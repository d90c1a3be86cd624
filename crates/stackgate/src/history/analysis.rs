//! Reading the history back: the last runs, every test's pass rate and time trend, the flaky
//! tests, each service's time to healthy over the runs, and the regressions of a run against
//! the runs before it. Plain values; the `history` command and the gate's summary render them.
//!
//! Not here: writing the history (the gate's history sink) or printing.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::Store;

/// What to look at.
#[derive(Debug, Clone)]
pub struct Query {
    /// The last N runs (finished or not).
    pub last: usize,
    /// Only tests whose `suite::id` contains this text (`*` matches any run of characters).
    pub test: Option<String>,
    pub thresholds: Thresholds,
}

/// When a figure counts as a regression: above `ratio` × the median of the runs before it, and
/// by more than `margin_s`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Thresholds {
    pub ratio: f64,
    pub margin_s: f64,
    /// Fewer earlier runs than this: no verdict.
    pub min_runs: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            ratio: 1.5,
            margin_s: 0.5,
            min_runs: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRow {
    pub id: String,
    pub command: String,
    pub started_ms: i64,
    /// `None`: the run never finished (killed).
    pub verdict: Option<String>,
    pub duration_s: Option<f64>,
    pub overhead_s: Option<f64>,
    pub git_commit: String,
    pub dirty: bool,
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TestTrend {
    pub suite: String,
    pub test: String,
    pub runs: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Passed over passed + failed (skips do not count); `None` when it never ran.
    pub pass_rate: Option<f64>,
    pub max_attempts: u32,
    pub median_s: f64,
    pub last_s: f64,
    /// Durations of the runs it ran in, oldest first.
    pub durations_s: Vec<f64>,
    pub flaky: bool,
    /// Why it is flaky.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flaky_because: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trend {
    /// The service (or the step) it is of.
    pub name: String,
    /// (run id, seconds), oldest first.
    pub per_run: Vec<(String, f64)>,
    pub median_s: f64,
}

/// A figure of the newest run above what the runs before it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// `service`, `test`, `ws` or `gate`.
    pub kind: &'static str,
    pub name: String,
    pub value_s: f64,
    pub median_s: f64,
    /// How many earlier runs the median is of.
    pub of_runs: usize,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.kind {
            "service" => format!("{}: healthy in", self.name),
            "test" => format!("test {}: took", self.name),
            "ws" => format!("{}: took", self.name),
            _ => "the gate: took".to_owned(),
        };
        write!(
            f,
            "{what} {:.1} s, median of the last {} runs {:.1} s",
            self.value_s, self.of_runs, self.median_s
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub runs: Vec<RunRow>,
    pub tests: Vec<TestTrend>,
    pub services: Vec<Trend>,
    /// The WebSocket check's steps (`websocket connect`, `websocket events`) over the runs.
    pub ws: Vec<Trend>,
    pub findings: Vec<Finding>,
    pub thresholds: Thresholds,
}

/// How a test fared over its last runs: passed (on any attempt) in `passed` of `runs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PassRate {
    pub passed: u32,
    pub runs: u32,
}

impl std::fmt::Display for PassRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.runs {
            0 => write!(f, "no run recorded yet"),
            1 => write!(f, "passed in {} of its 1 recorded run", self.passed),
            runs => write!(f, "passed in {} of its last {runs} runs", self.passed),
        }
    }
}

impl Store {
    /// A test's outcomes over its last `last` finished runs that ran it (skips not counted).
    pub fn pass_rate(&self, suite: &str, test: &str, last: usize) -> anyhow::Result<PassRate> {
        let mut statement = self.conn().prepare(
            "SELECT t.outcome FROM tests t JOIN runs r ON r.id = t.run_id
             WHERE t.suite = ?1 AND t.test = ?2 AND r.finished = 1 AND t.outcome != 'skipped'
             ORDER BY r.started_ms DESC, r.id DESC LIMIT ?3",
        )?;
        let outcomes = statement
            .query_map(params![suite, test, last as i64], |row| {
                row.get::<_, String>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PassRate {
            passed: outcomes.iter().filter(|o| *o == "passed").count() as u32,
            runs: outcomes.len() as u32,
        })
    }

    /// Each test's median duration over its last `last` finished runs that ran it (skips did
    /// not run), suite → `classname::name` → seconds: what `--durations history.db` weighs by.
    pub fn test_durations(
        &self,
        last: usize,
    ) -> anyhow::Result<BTreeMap<String, BTreeMap<String, f64>>> {
        let mut statement = self.conn().prepare(
            "SELECT t.suite, t.test, t.duration_s FROM tests t JOIN runs r ON r.id = t.run_id
             WHERE r.finished = 1 AND t.outcome != 'skipped'
             ORDER BY r.started_ms DESC, r.id DESC",
        )?;
        let mut seen: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, f64>(2)?,
            ))
        })?;
        for row in rows {
            let (suite, test, duration) = row?;
            let times = seen.entry((suite, test)).or_default();
            if times.len() < last {
                times.push(duration);
            }
        }
        let mut suites: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
        for ((suite, test), times) in seen {
            if let Some(median) = median(&times) {
                suites.entry(suite).or_default().insert(test, median);
            }
        }
        Ok(suites)
    }

    /// The last runs, newest first.
    pub fn last_runs(&self, last: usize) -> anyhow::Result<Vec<RunRow>> {
        let mut statement = self.conn().prepare(
            "SELECT id, command, started_ms, CASE finished WHEN 1 THEN verdict END, duration_s, overhead_s,
                    git_commit, dirty, target
             FROM runs ORDER BY started_ms DESC, id DESC LIMIT ?1",
        )?;
        let rows = statement.query_map(params![last as i64], |row| {
            Ok(RunRow {
                id: row.get(0)?,
                command: row.get(1)?,
                started_ms: row.get(2)?,
                verdict: row.get(3)?,
                duration_s: row.get(4)?,
                overhead_s: row.get(5)?,
                git_commit: row.get(6)?,
                dirty: row.get::<_, i64>(7)? != 0,
                target: row.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Everything `history` shows, over the last `query.last` runs.
    pub fn summary(&self, query: &Query) -> anyhow::Result<Summary> {
        let runs = self.last_runs(query.last)?;
        let tests = self.test_trends(&runs, query.test.as_deref())?;
        let services = self.trends(&runs, |store, run| store.healthy_times(run))?;
        let ws = self.trends(&runs, |store, run| store.ws_times(run))?;
        let findings = match runs.first() {
            Some(newest) => self.findings(&newest.id, query.thresholds)?,
            None => Vec::new(),
        };
        Ok(Summary {
            runs,
            tests,
            services,
            ws,
            findings,
            thresholds: query.thresholds,
        })
    }

    fn test_trends(
        &self,
        runs: &[RunRow],
        pattern: Option<&str>,
    ) -> anyhow::Result<Vec<TestTrend>> {
        let order: BTreeMap<&str, usize> = runs
            .iter()
            .rev()
            .enumerate()
            .map(|(i, run)| (run.id.as_str(), i))
            .collect();
        let key_of: BTreeMap<&str, (&str, bool)> = runs
            .iter()
            .map(|run| (run.id.as_str(), (run.git_commit.as_str(), run.dirty)))
            .collect();
        let mut statement = self.conn().prepare(
            "SELECT t.run_id, t.suite, t.test, t.outcome, t.duration_s, t.attempts, r.config_hash
             FROM tests t JOIN runs r ON r.id = t.run_id
             WHERE t.run_id IN (SELECT id FROM runs ORDER BY started_ms DESC, id DESC LIMIT ?1)",
        )?;
        struct Seen {
            run: usize,
            outcome: String,
            duration: f64,
            attempts: u32,
            same: (String, String, bool),
        }
        let mut by_test: BTreeMap<(String, String), Vec<Seen>> = BTreeMap::new();
        let rows = statement.query_map(params![runs.len() as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, f64>(4)?,
                row.get::<_, u32>(5)?,
                row.get::<_, String>(6)?,
            ))
        })?;
        for row in rows {
            let (run_id, suite, test, outcome, duration, attempts, config_hash) = row?;
            if let Some(pattern) = pattern {
                if !matches(pattern, &format!("{suite}::{test}")) {
                    continue;
                }
            }
            let Some(&run) = order.get(run_id.as_str()) else {
                continue;
            };
            let (commit, dirty) = key_of[run_id.as_str()];
            by_test.entry((suite, test)).or_default().push(Seen {
                run,
                outcome,
                duration,
                attempts,
                same: (commit.to_owned(), config_hash, dirty),
            });
        }
        let mut trends = Vec::new();
        for ((suite, test), mut seen) in by_test {
            seen.sort_by_key(|s| s.run);
            let count = |outcome: &str| seen.iter().filter(|s| s.outcome == outcome).count();
            let passed = count("passed");
            let failed = count("failed") + count("error");
            let skipped = count("skipped");
            let ran: Vec<&Seen> = seen.iter().filter(|s| s.outcome != "skipped").collect();
            let durations_s: Vec<f64> = ran.iter().map(|s| s.duration).collect();
            let retried = seen.iter().any(|s| s.outcome == "passed" && s.attempts > 1);
            let mixed = ran.iter().any(|a| {
                a.outcome == "passed"
                    && ran
                        .iter()
                        .any(|b| b.outcome != "passed" && b.same == a.same)
            });
            let flaky_because = if retried {
                Some("passed on a retry".to_owned())
            } else if mixed {
                Some("passed and failed on the same commit and config".to_owned())
            } else {
                None
            };
            trends.push(TestTrend {
                runs: seen.len(),
                passed,
                failed,
                skipped,
                pass_rate: (passed + failed > 0).then(|| passed as f64 / (passed + failed) as f64),
                max_attempts: seen.iter().map(|s| s.attempts).max().unwrap_or(1),
                median_s: median(&durations_s).unwrap_or(0.0),
                last_s: durations_s.last().copied().unwrap_or(0.0),
                durations_s,
                flaky: flaky_because.is_some(),
                flaky_because,
                suite,
                test,
            });
        }
        Ok(trends)
    }

    /// One named figure per run (`of` gives a run's), over the runs, oldest first.
    fn trends(
        &self,
        runs: &[RunRow],
        of: impl Fn(&Store, &str) -> anyhow::Result<Vec<(String, f64)>>,
    ) -> anyhow::Result<Vec<Trend>> {
        let mut by_service: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
        for run in runs.iter().rev() {
            for (service, seconds) in of(self, &run.id)? {
                by_service
                    .entry(service)
                    .or_default()
                    .push((run.id.clone(), seconds));
            }
        }
        Ok(by_service
            .into_iter()
            .map(|(service, per_run)| {
                let times: Vec<f64> = per_run.iter().map(|(_, s)| *s).collect();
                Trend {
                    name: service,
                    median_s: median(&times).unwrap_or(0.0),
                    per_run,
                }
            })
            .collect())
    }

    /// Each service's time to healthy in one run (the gate's `service NAME healthy` steps).
    fn healthy_times(&self, run_id: &str) -> anyhow::Result<Vec<(String, f64)>> {
        let mut statement = self.conn().prepare(
            "SELECT name, duration_s FROM steps
             WHERE run_id = ?1 AND outcome = 'passed' AND name LIKE 'service % healthy'",
        )?;
        let rows = statement.query_map(params![run_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
        })?;
        let mut times = Vec::new();
        for row in rows {
            let (name, seconds) = row?;
            if let Some(service) = name
                .strip_prefix("service ")
                .and_then(|n| n.strip_suffix(" healthy"))
            {
                times.push((service.to_owned(), seconds));
            }
        }
        Ok(times)
    }

    /// The WebSocket check's passed steps in one run, with their times.
    fn ws_times(&self, run_id: &str) -> anyhow::Result<Vec<(String, f64)>> {
        let mut statement = self.conn().prepare(
            "SELECT name, duration_s FROM steps WHERE run_id = ?1 AND stage = 'ws' AND outcome = 'passed'",
        )?;
        let rows = statement.query_map(params![run_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, f64>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The figures of one run (each service's time to healthy, each test's duration, the
    /// WebSocket check's, the gate's) that are above the median of the finished runs of the
    /// same command before it by more than the thresholds.
    pub fn findings(&self, run_id: &str, thresholds: Thresholds) -> anyhow::Result<Vec<Finding>> {
        let earlier: Vec<String> = {
            let mut statement = self.conn().prepare(
                "SELECT id FROM runs WHERE finished = 1 AND verdict = 'passed'
                   AND command = (SELECT command FROM runs WHERE id = ?1)
                   AND started_ms <= (SELECT started_ms FROM runs WHERE id = ?1) AND id != ?1
                 ORDER BY started_ms DESC LIMIT 20",
            )?;
            let rows = statement.query_map(params![run_id], |row| row.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        if earlier.len() < thresholds.min_runs {
            return Ok(Vec::new());
        }
        // (kind, name) -> (this run's value, the earlier runs' values).
        let mut series: BTreeMap<(&'static str, String), Series> = BTreeMap::new();
        let mut add = |run: &str, kind: &'static str, name: String, value: f64| {
            let entry = series.entry((kind, name)).or_default();
            if run == run_id {
                entry.0 = Some(value);
            } else {
                entry.1.push(value);
            }
        };
        for run in std::iter::once(run_id.to_owned()).chain(earlier.iter().cloned()) {
            for (service, seconds) in self.healthy_times(&run)? {
                add(&run, "service", service, seconds);
            }
            for (name, seconds) in self.ws_times(&run)? {
                add(&run, "ws", name, seconds);
            }
            let mut tests = self.conn().prepare(
                "SELECT suite, test, duration_s FROM tests WHERE run_id = ?1 AND outcome = 'passed'",
            )?;
            for row in tests.query_map(params![run], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })? {
                let (suite, test, seconds) = row?;
                add(&run, "test", format!("{suite}::{test}"), seconds);
            }
            let total: Option<f64> = self.conn().query_row(
                "SELECT duration_s FROM runs WHERE id = ?1",
                params![run],
                |r| r.get(0),
            )?;
            if let Some(total) = total {
                add(&run, "gate", "gate".into(), total);
            }
        }
        let mut findings = Vec::new();
        for ((kind, name), (value, before)) in series {
            let (Some(value), Some(median_s)) = (value, median(&before)) else {
                continue;
            };
            if before.len() >= thresholds.min_runs
                && value > median_s * thresholds.ratio
                && value - median_s > thresholds.margin_s
            {
                findings.push(Finding {
                    kind,
                    name,
                    value_s: value,
                    median_s,
                    of_runs: before.len(),
                });
            }
        }
        // The gate's own time last: it follows from the others.
        findings.sort_by_key(|f| (f.kind == "gate", f.kind, f.name.clone()));
        Ok(findings)
    }
}

/// One figure: its value in the run looked at, and in the runs before it.
type Series = (Option<f64>, Vec<f64>);

/// `*` matches any run of characters; without one, the pattern matches anywhere in the name.
fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains('*') {
        return name.contains(pattern);
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    parts.last().is_some_and(|last| last.is_empty()) || rest.is_empty()
}

pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::history::{RunStart, TestRow};

    fn run(store: &mut Store, i: i64, tests: &[(&str, &str)], backend_s: f64) -> String {
        let id = format!("r{i:02}");
        store
            .begin(&RunStart {
                id: id.clone(),
                command: "mission-critical".into(),
                started_ms: i,
                config_hash: "c".into(),
            })
            .unwrap();
        store
            .fact(
                &id,
                &crate::history::Fact::Commit {
                    commit: "abc".into(),
                    dirty: false,
                },
            )
            .unwrap();
        store
            .step(
                &id,
                "stack",
                "service backend healthy",
                "passed",
                Duration::from_secs_f64(backend_s),
            )
            .unwrap();
        let rows: Vec<TestRow> = tests
            .iter()
            .map(|(test, outcome)| TestRow {
                suite: "s".into(),
                test: (*test).into(),
                outcome: (*outcome).into(),
                duration: Duration::from_millis(100),
                attempts: 1,
            })
            .collect();
        store.tests(&id, &rows).unwrap();
        store
            .finish(
                &id,
                "passed",
                Duration::from_secs(10),
                Duration::from_secs(1),
                1000,
            )
            .unwrap();
        id
    }

    #[test]
    fn durations_read_from_a_history_are_each_tests_median_of_its_last_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let mut store = Store::open(&path).unwrap();
        for i in 0..3 {
            run(
                &mut store,
                i,
                &[("t::a", "passed"), ("t::b", "skipped")],
                1.0,
            );
        }
        let durations = store.test_durations(10).unwrap();
        assert_eq!(
            durations,
            BTreeMap::from([("s".to_owned(), BTreeMap::from([("t::a".to_owned(), 0.1)]))]),
            "a skipped test did not run: it has no duration"
        );
        drop(store);
        // `--durations history.db`: the shard split and the plan weigh by them.
        let read = crate::suites::Durations::read(&path).unwrap();
        assert_eq!(read.suites, durations);
        assert_eq!(read.source, path);
        let not_history = dir.path().join("junk.db");
        std::fs::write(&not_history, b"SQLite format 3\0 but nothing after").unwrap();
        let error = format!(
            "{:#}",
            crate::suites::Durations::read(&not_history).unwrap_err()
        );
        assert!(error.contains("junk.db is not a run history"), "{error}");
    }

    #[test]
    fn a_pass_rate_counts_the_last_finished_runs_that_ran_the_test() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("h.db")).unwrap();
        let outcomes = ["failed", "passed", "skipped", "passed", "failed", "passed"];
        for (i, outcome) in outcomes.iter().enumerate() {
            run(&mut store, i as i64, &[("q", outcome)], 1.0);
        }
        // An unfinished run does not count.
        store
            .begin(&RunStart {
                id: "killed".into(),
                command: "mission-critical".into(),
                started_ms: 99,
                config_hash: "c".into(),
            })
            .unwrap();
        let rate = store.pass_rate("s", "q", 20).unwrap();
        assert_eq!(rate, PassRate { passed: 3, runs: 5 });
        assert_eq!(rate.to_string(), "passed in 3 of its last 5 runs");
        // The last three that ran it: passed, failed, passed (newest first).
        assert_eq!(
            store.pass_rate("s", "q", 3).unwrap(),
            PassRate { passed: 2, runs: 3 }
        );
        assert_eq!(store.pass_rate("s", "other", 20).unwrap().runs, 0);
    }

    #[test]
    fn a_test_that_passes_and_fails_on_one_commit_is_flaky_and_a_steady_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("h.db")).unwrap();
        for i in 0..6 {
            let flip = if i % 2 == 0 { "passed" } else { "failed" };
            run(&mut store, i, &[("flip", flip), ("steady", "passed")], 1.0);
        }
        let summary = store
            .summary(&Query {
                last: 20,
                test: None,
                thresholds: Thresholds::default(),
            })
            .unwrap();
        let flaky: Vec<&str> = summary
            .tests
            .iter()
            .filter(|t| t.flaky)
            .map(|t| t.test.as_str())
            .collect();
        assert_eq!(flaky, ["flip"]);
        let flip = summary.tests.iter().find(|t| t.test == "flip").unwrap();
        assert_eq!((flip.passed, flip.failed), (3, 3));
        assert_eq!(flip.pass_rate, Some(0.5));
        assert_eq!(summary.runs.len(), 6);
        assert_eq!(summary.runs[0].id, "r05", "newest first");
    }

    #[test]
    fn a_slower_service_is_a_finding_and_a_steady_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("h.db")).unwrap();
        for i in 0..5 {
            run(&mut store, i, &[("t", "passed")], 0.9);
        }
        let steady = run(&mut store, 5, &[("t", "passed")], 1.0);
        assert_eq!(store.findings(&steady, Thresholds::default()).unwrap(), []);
        let slow = run(&mut store, 6, &[("t", "passed")], 2.1);
        let findings = store.findings(&slow, Thresholds::default()).unwrap();
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(
            findings[0].to_string(),
            "backend: healthy in 2.1 s, median of the last 6 runs 0.9 s"
        );
    }

    #[test]
    fn too_few_earlier_runs_give_no_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("h.db")).unwrap();
        run(&mut store, 0, &[], 0.5);
        let slow = run(&mut store, 1, &[], 5.0);
        assert_eq!(store.findings(&slow, Thresholds::default()).unwrap(), []);
    }

    #[test]
    fn patterns_match_anywhere_or_with_stars() {
        assert!(matches("chat", "e2e::tests.test_chat::test_a"));
        assert!(matches("e2e::*::test_a", "e2e::tests.test_chat::test_a"));
        assert!(!matches("e2e::*::test_b", "e2e::tests.test_chat::test_a"));
        assert!(matches("*test_a", "e2e::x::test_a"));
        assert!(!matches("x*", "e2e::x"));
    }
}
