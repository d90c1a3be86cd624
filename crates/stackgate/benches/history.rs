//! The run history's costs, printed (not asserted): what recording one run costs its writer
//! thread, what the gate waits for at its end (the last write), and how long `history` takes to
//! answer over 1000 runs of 90 tests. `cargo bench -p stackgate --bench history`.

use std::time::{Duration, Instant};

use stackgate::history::analysis::{Query, Thresholds};
use stackgate::history::{RunStart, Store, TestRow};

const RUNS: usize = 1000;
const TESTS: usize = 90;

fn record(store: &mut Store, run: usize) -> (Duration, Duration) {
    let id = format!("run-{run:05}");
    let started = Instant::now();
    store
        .begin(&RunStart {
            id: id.clone(),
            command: "mission-critical".into(),
            started_ms: run as i64,
            config_hash: "c".into(),
        })
        .unwrap();
    for stage in [
        "preflight",
        "engine",
        "target",
        "images",
        "stack",
        "ws",
        "suites",
    ] {
        store
            .stage(&id, stage, Duration::from_millis(300), "passed")
            .unwrap();
    }
    for service in ["postgres", "redis", "auth", "backend"] {
        store
            .step(
                &id,
                "stack",
                &format!("service {service} healthy"),
                "passed",
                Duration::from_millis(500 + (run % 7) as u64 * 10),
            )
            .unwrap();
    }
    for suite in ["mission_critical", "e2e", "load"] {
        let tests: Vec<TestRow> = (0..TESTS / 3)
            .map(|t| TestRow {
                suite: suite.into(),
                test: format!("tests.{suite}::test_{t:03}"),
                outcome: if (run + t).is_multiple_of(17) {
                    "failed"
                } else {
                    "passed"
                }
                .into(),
                duration: Duration::from_millis(100 + t as u64),
                attempts: 1,
            })
            .collect();
        store.tests(&id, &tests).unwrap();
    }
    let last = Instant::now();
    store
        .finish(
            &id,
            "passed",
            Duration::from_secs(20),
            Duration::from_secs(2),
            1000,
        )
        .unwrap();
    (started.elapsed(), last.elapsed())
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let dir = std::env::temp_dir().join(format!("stackgate-history-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("history.db");
    let mut store = Store::open(&path).unwrap();
    let mut whole = Vec::new();
    let mut ends = Vec::new();
    for run in 0..RUNS {
        let (run_cost, end_cost) = record(&mut store, run);
        whole.push(run_cost);
        ends.push(end_cost);
    }
    println!(
        "recording a run ({TESTS} tests, 4 services, 7 stages), on the writer thread: median {:.2} ms, max {:.2} ms",
        median(whole.clone()).as_secs_f64() * 1e3,
        whole.iter().max().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "what the gate waits for at its end (the last write): median {:.2} ms, max {:.2} ms",
        median(ends.clone()).as_secs_f64() * 1e3,
        ends.iter().max().unwrap().as_secs_f64() * 1e3
    );
    let mut answers = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let store = Store::open(&path).unwrap();
        let summary = store
            .summary(&Query {
                last: RUNS,
                test: None,
                thresholds: Thresholds::default(),
            })
            .unwrap();
        assert_eq!(summary.runs.len(), RUNS);
        answers.push(started.elapsed());
    }
    println!(
        "history over {RUNS} runs ({} test results): median {:.0} ms, max {:.0} ms (5 runs)",
        RUNS * TESTS,
        median(answers.clone()).as_secs_f64() * 1e3,
        answers.iter().max().unwrap().as_secs_f64() * 1e3
    );
    std::fs::remove_dir_all(&dir).ok();
}
