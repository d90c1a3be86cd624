//! `history`: the last runs of this checkout with verdict and time, every test's pass rate and
//! time trend, the flaky tests, each service's time to healthy, the regressions of the newest
//! run; `--json` for programs, `--html PATH` for a page of the trends.

use crate::error::Failure;
use crate::history::analysis::{Query, Summary};
use crate::history::{self, Store};
use crate::{ui, Ctx};

/// Without `--test`, the table lists this many of the steady tests, slowest first.
const SLOWEST: usize = 10;

impl crate::flags::History {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let path = history::path_of(&config);
        let query = Query {
            last: self.last as usize,
            test: self.test.clone(),
            thresholds: history::thresholds(&config.history),
        };
        // Reading must not create the file: no history yet is an empty one.
        let summary = if path.exists() {
            let store = Store::open(&path).map_err(|e| Failure::config(format!("{e:#}")))?;
            store.summary(&query)?
        } else {
            ui::say(format!(
                "no run recorded yet in {} (every gate records its run there)",
                path.display()
            ));
            Summary {
                runs: Vec::new(),
                tests: Vec::new(),
                services: Vec::new(),
                ws: Vec::new(),
                findings: Vec::new(),
                thresholds: query.thresholds,
            }
        };
        if let Some(html) = &self.html {
            let html = if html.is_absolute() {
                html.clone()
            } else {
                std::env::current_dir()?.join(html)
            };
            let page = history::page::render(&summary, &config.project.name.0);
            crate::state::write_atomic(&html, page.as_bytes())?;
            ui::say(format!("history page: {}", html.display()));
        }
        if self.json {
            let mut value = serde_json::to_value(&summary)?;
            value["path"] = path.display().to_string().into();
            ui::print_json(value, true);
        } else {
            eprint!("{}", render(&summary, self.test.is_some()));
        }
        Ok(())
    }
}

/// The history for people: runs, flaky tests, services, tests, regressions.
pub fn render(summary: &Summary, all_tests: bool) -> String {
    let mut out = String::new();
    runs_table(&mut out, summary);
    flaky_table(&mut out, summary);
    services_table(&mut out, summary);
    tests_table(&mut out, summary, all_tests);
    out.push_str(&format!(
        "── regressions of the newest run ({}; above {}× the median and by {} s)\n",
        summary.findings.len(),
        summary.thresholds.ratio,
        summary.thresholds.margin_s
    ));
    for finding in &summary.findings {
        out.push_str(&format!("  {finding}\n"));
    }
    out
}

/// `── runs`: every run, newest first.
fn runs_table(out: &mut String, summary: &Summary) {
    let runs: Vec<Vec<String>> = summary
        .runs
        .iter()
        .map(|run| {
            vec![
                run.id.clone(),
                run.command.clone(),
                run.verdict.clone().unwrap_or_else(|| "unfinished".into()),
                run.duration_s.map_or("-".into(), |s| format!("{s:.1}s")),
                run.overhead_s.map_or("-".into(), |s| format!("{s:.1}s")),
                run.target.clone().unwrap_or_else(|| "-".into()),
                format!(
                    "{}{}",
                    run.git_commit.chars().take(10).collect::<String>(),
                    if run.dirty { "+" } else { "" }
                ),
            ]
        })
        .collect();
    out.push_str(&format!("── runs (newest first, {})\n", runs.len()));
    out.push_str(&ui::table(
        &[
            "run", "command", "verdict", "time", "overhead", "target", "commit",
        ],
        &runs,
    ));
}

/// `── flaky tests`: each with its pass rate and why it counts as flaky.
fn flaky_table(out: &mut String, summary: &Summary) {
    let flaky: Vec<Vec<String>> = summary
        .tests
        .iter()
        .filter(|t| t.flaky)
        .map(|t| {
            vec![
                format!("{}::{}", t.suite, t.test),
                rate(t.pass_rate),
                t.runs.to_string(),
                t.flaky_because.clone().unwrap_or_default(),
            ]
        })
        .collect();
    out.push_str(&format!("── flaky tests ({})\n", flaky.len()));
    if !flaky.is_empty() {
        out.push_str(&ui::table(&["test", "pass rate", "runs", "why"], &flaky));
    }
}

/// `── time to healthy per service`: the median and the newest eight.
fn services_table(out: &mut String, summary: &Summary) {
    let services: Vec<Vec<String>> = summary
        .services
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                format!("{:.2}s", s.median_s),
                s.per_run
                    .iter()
                    .rev()
                    .take(8)
                    .map(|(_, v)| format!("{v:.2}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        })
        .collect();
    out.push_str("── time to healthy per service\n");
    if !services.is_empty() {
        out.push_str(&ui::table(
            &["service", "median", "newest first"],
            &services,
        ));
    }
}

/// `── tests`: all the tests asked for (`--test`); otherwise those that did not always pass
/// and the slowest, so that the table stays readable.
fn tests_table(out: &mut String, summary: &Summary, all_tests: bool) {
    let mut shown: Vec<&crate::history::analysis::TestTrend> = summary.tests.iter().collect();
    if !all_tests {
        shown.sort_by(|a, b| b.median_s.total_cmp(&a.median_s));
        let (unsteady, steady): (Vec<_>, Vec<_>) = shown
            .into_iter()
            .partition(|t| t.pass_rate.is_some_and(|r| r < 1.0));
        shown = unsteady
            .into_iter()
            .chain(steady.into_iter().take(SLOWEST))
            .collect();
    }
    let tests: Vec<Vec<String>> = shown
        .iter()
        .map(|t| {
            vec![
                format!("{}::{}", t.suite, t.test),
                rate(t.pass_rate),
                format!("{}/{}/{}", t.passed, t.failed, t.skipped),
                t.max_attempts.to_string(),
                format!("{:.2}s", t.median_s),
                format!("{:.2}s", t.last_s),
            ]
        })
        .collect();
    out.push_str(&format!(
        "── tests ({} of {}{})\n",
        tests.len(),
        summary.tests.len(),
        if all_tests {
            ""
        } else {
            ": those that did not always pass, then the slowest; --test PATTERN for others"
        }
    ));
    if !tests.is_empty() {
        out.push_str(&ui::table(
            &[
                "test",
                "pass rate",
                "pass/fail/skip",
                "attempts",
                "median",
                "newest",
            ],
            &tests,
        ));
    }
}

fn rate(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}
