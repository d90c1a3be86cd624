//! The files a gate leaves besides its JUnit report: `report.html` and `trace.json`, written into
//! the run's directory (`target/xtask/runs/<run id>/`, next to its `logs/` and `suites/`) and
//! copied to `target/xtask/` as the latest run's, each written atomically.
//!
//! Not here: rendering them ([super::super::html], [super::super::trace]).

use std::path::{Path, PathBuf};

use crate::gate::context::Context;
use crate::gate::events::Record;

/// Where the report and the trace went.
#[derive(Debug, Clone)]
pub struct Written {
    pub report: PathBuf,
    pub trace: PathBuf,
}

/// Writes the HTML report and the trace of a run; the paths of the latest copies.
pub fn write(run: &Context, record: &Record) -> anyhow::Result<Written> {
    let store = crate::state::Store::of(&run.config);
    let run_dir = store.run_dir(&run.run_id);
    let work_dir = run.config.work_dir();
    let title = format!("{} {}", run.options.command, run.config.project.name.0);
    let secrets = run.secrets();
    let logs = kept_logs(&run_dir);
    let junit = run
        .options
        .junit
        .as_ref()
        .map(|p| shown(p, &run.config.root));
    // Links are relative to the page: from the run's directory, and from target/xtask.
    let relative_to = |prefix: &str| -> Vec<(String, String)> {
        logs.iter()
            .map(|(what, file)| (what.clone(), format!("{prefix}{file}")))
            .collect()
    };
    let in_run = super::html::render(
        record,
        &super::html::HtmlMeta {
            title: title.clone(),
            junit: junit.clone(),
            logs: relative_to(""),
            secrets: &secrets,
        },
    );
    let latest = super::html::render(
        record,
        &super::html::HtmlMeta {
            title: title.clone(),
            junit,
            logs: relative_to(&format!("runs/{}/", run.run_id)),
            secrets: &secrets,
        },
    );
    let trace = serde_json::to_string(&super::trace::render(record, &title))?;
    let trace = crate::junit::redact(&trace, &secrets);
    std::fs::create_dir_all(&run_dir)?;
    crate::state::write_atomic(&run_dir.join("report.html"), in_run.as_bytes())?;
    crate::state::write_atomic(&run_dir.join("trace.json"), trace.as_bytes())?;
    let written = Written {
        report: work_dir.join("report.html"),
        trace: work_dir.join("trace.json"),
    };
    crate::state::write_atomic(&written.report, latest.as_bytes())?;
    crate::state::write_atomic(&written.trace, trace.as_bytes())?;
    Ok(written)
}

/// The run's logs: each service's, then each suite's, as (what, path under the run directory).
fn kept_logs(run_dir: &Path) -> Vec<(String, String)> {
    let mut logs = Vec::new();
    for (dir, what) in [("logs", "service"), ("suites", "suite")] {
        let Ok(entries) = std::fs::read_dir(run_dir.join(dir)) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".log"))
            .collect();
        names.sort();
        for name in names {
            logs.push((
                format!("{what} {}", name.trim_end_matches(".log")),
                format!("{dir}/{name}"),
            ));
        }
    }
    logs
}

/// A path as a person finds it: relative to the project's root when it lies inside.
fn shown(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
