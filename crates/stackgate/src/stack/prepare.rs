//! Everything before the engine is needed: the compose program, the run id (a plain `docker-up`
//! continues its kept stack), the compose model, the check of `[stack] services` against it, and
//! the labels override written under the run's directory. Runs beside pre-flight and the engine.
//!
//! Not here: starting anything ([super::up]).

use std::time::Instant;

use anyhow::Context;

use super::cache;
use super::compose::{Compose, Project};
use super::labels::{labels_override, with_checkout_images};
use super::model::Model;
use super::{compose_env, emit, project_name, record, run_dir, stack_cfg, UpEvent, UpOptions};
use crate::config::Config;
use crate::error::Failure;
use crate::state::{self, Owner, StackRecord};

/// A run that is ready to start: the compose program, the project, the labels override written.
/// Made without the engine, so that it can overlap the engine stage.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub run_id: String,
    /// The process that owns the run (its labels name it).
    pub owner: Owner,
    pub keep: bool,
    pub isolated: bool,
    pub compose: Compose,
    /// With the labels override as its last file.
    pub project: Project,
    /// What compose says the file holds (healthchecks, `stop_grace_period`, ...).
    pub model: Model,
    /// When preparation began (the report's total counts from here).
    pub began: Instant,
    /// It continues the recorded run of the same (not isolated) project.
    pub continued: bool,
}

/// The part of [`super::up`] that needs no engine: finds compose, reads the model, checks
/// `[stack] services` against it, writes the labels override under the run's directory.
pub async fn prepare(config: &Config, options: &UpOptions) -> anyhow::Result<Prepared> {
    let began = Instant::now();
    let stack = stack_cfg(config)?;
    let work_dir = config.work_dir();
    // A plain run of a project that is already up under a recorded run continues that run (same
    // labels), so that compose keeps the unchanged containers: a second `docker-up` is quick.
    let continued = match (&options.run_id, options.isolated) {
        (None, false) => continuable(config),
        _ => None,
    };
    let (run_id, owner) = match &continued {
        Some(record) if options.owner_pid.is_none() => {
            (record.stack.run_id.clone(), record.owner.clone())
        }
        _ => (
            options.run_id.clone().unwrap_or_else(state::new_run_id),
            options.owner_pid.map_or_else(Owner::me, Owner::of_pid),
        ),
    };
    let compose = match &options.compose {
        Some(compose) => compose.clone(),
        None => cache::detect_cached(&work_dir).await?,
    };
    emit(&options.progress, UpEvent::Compose(compose.clone()));

    let mut project = Project {
        compose: compose.clone(),
        name: project_name(config, &run_id, options.isolated),
        files: vec![stack.compose_file.clone()],
        env: compose_env(stack, options.isolated),
        dir: config.root.clone(),
    };
    let model = cache::read_cached(&project, &work_dir)
        .await
        .with_context(|| format!("cannot read {}", stack.compose_file.display()))?;
    if let Some(missing) = stack
        .services
        .iter()
        .find(|s| !model.services.contains_key(*s))
    {
        return Err(Failure::config(format!(
            "{}: key `stack.services`: service `{missing}` is not in {} (it has: {})",
            config.path.display(),
            stack.compose_file.display(),
            model.service_names().join(", ")
        ))
        .into());
    }
    let mut labels = state::run_labels(config, &run_id, &owner);
    if options.reuse {
        labels.insert(super::reuse::LABEL_REUSABLE.to_owned(), "true".to_owned());
    }
    let override_path = run_dir(config, &run_id).join("labels.json");
    let value = with_checkout_images(labels_override(&model, &labels), &model, config);
    state::write_atomic(
        &override_path,
        serde_json::to_string_pretty(&value)?.as_bytes(),
    )?;
    project.files.push(override_path);
    let continued = continued.is_some_and(|r| r.stack.run_id == run_id);
    Ok(Prepared {
        run_id,
        owner,
        keep: options.keep,
        isolated: options.isolated,
        compose,
        project,
        model,
        began,
        continued,
    })
}

/// The recorded run a plain (not isolated) `up` continues: the newest one of this project name
/// that is kept, or whose owner is this process or gone.
fn continuable(config: &Config) -> Option<StackRecord> {
    let state = state::Store::of(config).read().ok()?;
    let mut candidates: Vec<&StackRecord> = state
        .stacks
        .values()
        .filter(|r| !r.stack.isolated && r.stack.project == config.project.name.0)
        .filter(|r| r.kept || !r.owner.alive() || r.owner == Owner::me())
        .collect();
    candidates.sort_by_key(|r| std::cmp::Reverse(r.stack.started_unix_ms));
    candidates.first().map(|r| (*r).clone())
}

/// Drops a prepared run that will not start (the engine stage failed): its files go.
pub fn abandon(config: &Config, run_id: &str) {
    let _ = record::forget(config, run_id);
}
