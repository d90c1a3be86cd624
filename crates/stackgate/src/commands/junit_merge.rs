//! The `junit-merge` command: merges JUnit files into one, says the counts (and with `--json`),
//! and exits 1 when the merged report has failures or an interrupted input.
//!
//! Not here: the merge ([crate::junit::merge]).

use crate::error::Failure;
use crate::{junit, ui, Ctx};

impl crate::flags::JunitMerge {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        // An input that cannot be read or is not JUnit is a usage error (exit 2).
        let merged = junit::merge(&self.inputs, &self.output)
            .map_err(|e| Failure::config(format!("junit-merge: {e:#}")))?;
        ui::say(format!(
            "merged {} files into {}: {} tests, {} failures, {} errors, {} skipped{}",
            self.inputs.len(),
            self.output.display(),
            merged.tests,
            merged.failures,
            merged.errors,
            merged.skipped,
            if merged.interrupted {
                " (an input was interrupted)"
            } else {
                ""
            }
        ));
        let passed = merged.failures + merged.errors == 0 && !merged.interrupted;
        if self.json {
            let mut value = serde_json::to_value(&merged)?;
            value["output"] = self.output.display().to_string().into();
            ui::print_json(value, passed);
        }
        if merged.failures + merged.errors > 0 {
            return Err(Failure::check(format!(
                "{} failures and {} errors in the merged report",
                merged.failures, merged.errors
            ))
            .into());
        }
        if merged.interrupted {
            return Err(
                Failure::check("an input of the merged report is of an interrupted run").into(),
            );
        }
        Ok(())
    }
}
