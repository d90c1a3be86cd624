//! Collecting the suites' tests beside the stack stage, when the suites stage will need them
//! before it runs anything: the `parallel` pytest suites of a plan (`--jobs N`), every pytest
//! suite of a shard (`--shard K/N`: a suite with none of its tests in this shard is reported
//! without starting its runner). Collecting takes pytest a second or two of CPU; the stack stage
//! mostly waits on the engine, so the collection costs the run nothing there, where at the start
//! of the suites stage it was on the way of every test.
//!
//! It starts once the target is docker and the images are there, with the environment the suites
//! will have less what only the stack gives (the endpoints, `XTASK_COMPOSE_*`): a suite whose
//! collection depends on those is caught, not silently wrong. Its collection fails, or a worker
//! collects tests the plan's collection did not (an error case each, [crate::suites::workers]);
//! a collection that failed here is repeated by the suites stage with the whole environment.
//!
//! Not here: collecting one suite ([crate::suites]), the plan ([crate::suites::plan]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Runner, SuiteCfg, TargetKind};
use crate::suites::{Collection, Durations, SuiteEnv, SuiteRun};

use super::context::{Context, Until};
use super::suite_support::{last_durations, repo_root, PythonSlot};

/// What was collected, by suite name (`None`: its collection failed).
pub type Collected = BTreeMap<String, Option<Collection>>;

/// The collection running beside the stack; stopped (its runners' groups with it) when dropped.
pub struct Early {
    task: Option<tokio::task::JoinHandle<(Collected, Duration)>>,
    /// The durations the collection split shards by, which the suites stage then uses too.
    pub durations: Option<Arc<Durations>>,
}

impl Drop for Early {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Early {
    /// What was collected and how long it took, once done; `None` when it could not finish.
    pub async fn finish(mut self) -> Option<(Collected, Duration)> {
        self.task.take()?.await.ok()
    }
}

/// Whether the suites stage needs this suite's tests before it runs them.
fn wanted(run: &Context, suite: &SuiteCfg) -> bool {
    suite.runner == Runner::Pytest
        && (run.options.shard.is_some() || (suite.parallel && super::suite_support::plans(run)))
        && (suite.needs.is_empty() || suite.needs.contains(&TargetKind::Docker))
}

/// Starts collecting, on the docker target, the tests the suites stage will need first; `None`
/// when it needs none.
pub fn start(
    run: &Arc<Context>,
    engine: &crate::engine::Engine,
    python: &Arc<PythonSlot>,
) -> Option<Early> {
    if run.options.until != Until::Suites {
        return None;
    }
    let suites: Vec<SuiteCfg> = run
        .selected_suites()
        .into_iter()
        .filter(|s| wanted(run, s))
        .cloned()
        .collect();
    if suites.is_empty() {
        return None;
    }
    let durations = last_durations(run);
    let env = SuiteEnv {
        target: TargetKind::Docker,
        run_id: run.run_id.clone(),
        endpoints: BTreeMap::new(),
        extra: crate::stack::engine_env(engine),
        skip_markers: run.config.targets.docker_skip_markers.clone(),
        secrets: run.secrets(),
        durations: durations.clone(),
        stop: Some(crate::suites::Stop::new(run.stop_suites.subscribe())),
        retries: run.options.retries,
    };
    let base = SuiteRun {
        shard: run.options.shard,
        extra_args: run.options.suite_args.clone(),
        repo_root: Some(repo_root(&run.config.root)),
        ..SuiteRun::default()
    };
    let (run, python) = (run.clone(), python.clone());
    let task = tokio::spawn(async move {
        let Some(py) = python.ready().await else {
            return (Collected::new(), Duration::ZERO);
        };
        let started = Instant::now();
        let collected = futures_util::future::join_all(suites.iter().map(|suite| async {
            let collection =
                crate::suites::collect_for_plan(&run.config, suite, &env, Some(py), &base).await;
            (suite.name.clone(), collection)
        }))
        .await;
        (collected.into_iter().collect(), started.elapsed())
    });
    Some(Early {
        task: Some(task),
        durations,
    })
}
