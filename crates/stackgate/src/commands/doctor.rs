//! The `doctor` command: runs the pre-flight checks and prints them as a table (and with
//! `--json`); a failed check exits 1.
//!
//! Not here: the checks ([crate::preflight]).

use crate::error::Failure;
use crate::preflight;
use crate::report::{Check, Outcome};
use crate::{ui, Ctx};

impl crate::flags::Doctor {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let checks = preflight::run_checks(&config).await;
        if self.json {
            let failed = checks.iter().any(|c| c.outcome == Outcome::Failed);
            ui::print_json(
                serde_json::json!({ "ok": !failed, "checks": checks }),
                !failed,
            );
        }
        eprint!("{}", render(&checks));
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| c.outcome == Outcome::Failed)
            .map(|c| c.name.as_str())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Failure::check(format!("pre-flight failed: {}", failed.join(", "))).into())
        }
    }
}

/// The table `doctor` prints.
pub fn render(checks: &[Check]) -> String {
    let rows: Vec<Vec<String>> = checks
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.outcome.label().to_owned(),
                c.detail.clone(),
                c.remedy.clone().unwrap_or_default(),
            ]
        })
        .collect();
    ui::table(&["check", "status", "value", "remedy"], &rows)
}
