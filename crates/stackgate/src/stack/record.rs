//! The stack's entries in the run store ([crate::state::Store]): a run is recorded before
//! anything is created, carries what `up` measured, is kept on purpose (`docker-up`, `--keep`)
//! or not, and is forgotten with its run files when it is removed. Commands that act on one
//! stack choose it here: the one named with `--run ID`, else the newest kept one.
//!
//! Not here: the store's file and its lock ([crate::state]), removing resources ([super::down]).

use std::collections::BTreeMap;

use crate::config::Config;
use crate::error::Failure;
use crate::state::{Owner, ServiceRecord, StackRecord, StackState, Store};

/// Records a run before anything of it is created, so that a run killed halfway is found. A run
/// recorded already (a `docker-up` continuing its stack) keeps its owner and stays kept.
pub(super) fn begin(
    config: &Config,
    stack: &StackState,
    owner: Owner,
    keep: bool,
) -> anyhow::Result<()> {
    Store::of(config).update(|state| {
        let record = state
            .stacks
            .entry(stack.run_id.clone())
            .or_insert_with(|| StackRecord {
                stack: stack.clone(),
                owner,
                kept: keep,
                services: BTreeMap::new(),
                reuse: None,
            });
        record.stack = stack.clone();
        record.kept |= keep;
    })
}

/// What `up` found at the end: the endpoints, and per service its container and times.
pub(super) fn finish(
    config: &Config,
    stack: &StackState,
    services: BTreeMap<String, ServiceRecord>,
) -> anyhow::Result<()> {
    Store::of(config).update(|state| {
        if let Some(record) = state.stacks.get_mut(&stack.run_id) {
            record.stack = stack.clone();
            record.services = services;
        }
    })
}

/// Keeps a run on purpose (the gate's `--keep`, `--keep-on-failure`): the leftover sweep leaves
/// it, although its owner exits; only `docker-down` removes it. False when no such run is
/// recorded.
pub fn keep(config: &Config, run_id: &str) -> anyhow::Result<bool> {
    Store::of(config).update(|state| match state.stacks.get_mut(run_id) {
        Some(record) => {
            record.kept = true;
            true
        }
        None => false,
    })
}

/// Forgets a run: its record in the store and its run files.
pub(super) fn forget(config: &Config, run_id: &str) -> anyhow::Result<()> {
    let store = Store::of(config);
    store.remove_stack(run_id)?;
    let dir = store.run_dir(run_id);
    // run.json and state.json: what earlier versions left per run.
    for file in ["labels.json", "run.json", "state.json"] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    // Only when nothing else (a report, a log) was left there.
    let _ = std::fs::remove_dir(&dir);
    // A warm stack's lease file: the record is gone, so nobody can take the stack any more.
    let _ = std::fs::remove_file(super::reuse::lease_path(config, run_id));
    Ok(())
}

/// The error of `health`, `ws-check` and `monitor` when no stack is recorded to act on: a usage
/// error (exit 2), the same for all three.
pub fn no_recorded_run(config: &Config) -> Failure {
    Failure::config(format!(
        "no run is recorded in {}: no kept stack to act on",
        Store::of(config).path().display()
    ))
    .with_hint("run `cargo xtask docker-up` first, or name a run with --run ID")
}

/// The record of a run, when there is one.
pub(super) fn find(config: &Config, run_id: &str) -> Option<StackRecord> {
    Store::of(config).read().ok()?.stacks.get(run_id).cloned()
}

/// The stack a command acts on, and what to tell a person about the choice.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub record: StackRecord,
    /// When several stacks are kept and none was named: which one was chosen, and how to pick
    /// another.
    pub note: Option<String>,
}

/// The stack named with `--run ID` (any recorded run, kept or not), else the newest kept one;
/// `None` when no stack is kept. A named run that is not recorded is a usage error listing the
/// recorded ones.
pub fn choose(config: &Config, run: Option<&str>) -> anyhow::Result<Option<Chosen>> {
    let store = Store::of(config);
    let state = store.read()?;
    if let Some(run_id) = run {
        return match state.chosen(Some(run_id)) {
            Some(record) => Ok(Some(Chosen {
                record: record.clone(),
                note: None,
            })),
            None => Err(Failure::config(format!(
                "no stack with run id `{run_id}` is recorded in {} (recorded: {})",
                store.path().display(),
                if state.stacks.is_empty() {
                    "none".to_owned()
                } else {
                    state.stacks.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ))
            .into()),
        };
    }
    let kept = state.kept();
    let Some(newest) = kept.first() else {
        return Ok(None);
    };
    let note = (kept.len() > 1).then(|| {
        format!(
            "{} stacks are kept; using the newest, run {} (project {}); others: {} (choose one with --run ID)",
            kept.len(),
            newest.stack.run_id,
            newest.stack.project,
            kept[1..]
                .iter()
                .map(|r| format!("{} (project {})", r.stack.run_id, r.stack.project))
                .collect::<Vec<_>>()
                .join(", ")
        )
    });
    Ok(Some(Chosen {
        record: (*newest).clone(),
        note,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::state::tests::stack;

    #[test]
    fn a_gate_run_beside_a_kept_stack_records_and_forgets_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::parse(
            &dir.path().join("harness.toml"),
            "[project]\nname = \"chat\"\n",
        )
        .unwrap();
        assert!(choose(&config, None).unwrap().is_none());
        // docker-up keeps its stack; a gate then records its own run, unkept, and forgets it.
        begin(
            &config,
            &stack("up", 1),
            Owner {
                pid: 1,
                ..Owner::default()
            },
            true,
        )
        .unwrap();
        begin(&config, &stack("gate", 2), Owner::me(), false).unwrap();
        assert_eq!(
            choose(&config, None).unwrap().unwrap().record.stack.run_id,
            "up",
            "the newest kept stack, not the newer gate run"
        );
        std::fs::create_dir_all(dir.path().join("target/xtask/runs/gate")).unwrap();
        std::fs::write(dir.path().join("target/xtask/runs/gate/labels.json"), "{}").unwrap();
        forget(&config, "gate").unwrap();
        assert!(!dir.path().join("target/xtask/runs/gate").exists());
        let chosen = choose(&config, None).unwrap().unwrap();
        assert_eq!(chosen.record.stack.run_id, "up");
        assert!(chosen.note.is_none());

        // --keep on a second run: two kept, the newest chosen, and the choice said.
        begin(&config, &stack("kept", 3), Owner::me(), false).unwrap();
        assert!(keep(&config, "kept").unwrap());
        assert!(!keep(&config, "gone").unwrap());
        let chosen = choose(&config, None).unwrap().unwrap();
        assert_eq!(chosen.record.stack.run_id, "kept");
        let note = chosen.note.unwrap();
        assert!(note.starts_with("2 stacks are kept"), "{note}");
        assert!(note.contains("up (project p-up)"), "{note}");
        assert_eq!(
            choose(&config, Some("up"))
                .unwrap()
                .unwrap()
                .record
                .stack
                .run_id,
            "up"
        );
        let error = choose(&config, Some("nope")).unwrap_err();
        assert_eq!(
            crate::error::exit_kind_of(&error),
            crate::error::ExitKind::Usage
        );
        assert!(error.to_string().contains("recorded: kept, up"), "{error}");

        // A continued run stays kept and keeps its owner.
        begin(&config, &stack("up", 4), Owner::me(), false).unwrap();
        let record = find(&config, "up").unwrap();
        assert!(record.kept);
        assert_eq!(
            record.owner,
            Owner {
                pid: 1,
                ..Owner::default()
            }
        );
    }
}
