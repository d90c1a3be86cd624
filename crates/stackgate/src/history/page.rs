//! `history --html`: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! with the gate's time per run, each service's time to healthy, the WebSocket check's time,
//! the regressions, and tables of the flaky and the slowest-growing tests. A pure function of a
//! [`Summary`].
//!
//! Not here: reading the history ([`super::analysis`]).

use std::fmt::Write;

use super::analysis::{RunRow, Summary, Trend};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 160.0;
const COLOURS: [&str; 6] = [
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
];

/// The page for `summary`, titled with the project's name.
pub fn render(summary: &Summary, project: &str) -> String {
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} · run history</title><style>{}</style></head><body>",
        esc(project),
        STYLE
    );
    let finished = summary.runs.iter().filter(|r| r.verdict.is_some()).count();
    let passed = summary
        .runs
        .iter()
        .filter(|r| r.verdict.as_deref() == Some("passed"))
        .count();
    let _ = write!(
        page,
        "<h1>{} · run history</h1><p class=\"meta\">{} runs ({} finished, {} passed) · {} tests · {} flaky</p>",
        esc(project),
        summary.runs.len(),
        finished,
        passed,
        summary.tests.len(),
        summary.tests.iter().filter(|t| t.flaky).count()
    );
    if !summary.findings.is_empty() {
        page.push_str("<h2>Regressions in the newest run</h2><ul class=\"findings\">");
        for finding in &summary.findings {
            let _ = write!(page, "<li>{}</li>", esc(&finding.to_string()));
        }
        page.push_str("</ul>");
    }

    let oldest_first: Vec<_> = summary.runs.iter().rev().collect();
    let gate: Vec<f64> = oldest_first
        .iter()
        .map(|r| r.duration_s.unwrap_or(f64::NAN))
        .collect();
    page.push_str("<h2>The gate's time per run</h2>");
    page.push_str(&chart(&[("gate".to_owned(), gate)], "s"));

    page.push_str("<h2>Time to healthy, per service</h2>");
    let series = per_run(&summary.services, &oldest_first);
    if series.is_empty() {
        page.push_str("<p class=\"meta\">no service was recorded healthy in these runs</p>");
    } else {
        page.push_str(&chart(&series, "s"));
    }

    page.push_str("<h2>WebSocket check</h2>");
    let ws = per_run(&summary.ws, &oldest_first);
    if ws.is_empty() {
        page.push_str("<p class=\"meta\">no WebSocket check in these runs</p>");
    } else {
        page.push_str(&chart(&ws, "s"));
    }

    page.push_str("<h2>Flaky tests</h2>");
    let flaky: Vec<_> = summary.tests.iter().filter(|t| t.flaky).collect();
    if flaky.is_empty() {
        page.push_str("<p class=\"meta\">none</p>");
    } else {
        page.push_str("<table><tr><th>suite</th><th>test</th><th>pass rate</th><th>runs</th><th>why</th></tr>");
        for test in flaky {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&test.suite),
                esc(&test.test),
                test.pass_rate
                    .map_or("-".to_owned(), |r| format!("{:.0}%", r * 100.0)),
                test.runs,
                esc(test.flaky_because.as_deref().unwrap_or(""))
            );
        }
        page.push_str("</table>");
    }

    page.push_str("<h2>Slowest-growing tests</h2>");
    let mut growing: Vec<_> = summary
        .tests
        .iter()
        .filter(|t| t.durations_s.len() >= 2 && t.last_s > t.median_s)
        .collect();
    growing.sort_by(|a, b| (b.last_s - b.median_s).total_cmp(&(a.last_s - a.median_s)));
    if growing.is_empty() {
        page.push_str("<p class=\"meta\">none</p>");
    } else {
        page.push_str("<table><tr><th>suite</th><th>test</th><th>median</th><th>newest</th><th>trend</th></tr>");
        for test in growing.into_iter().take(15) {
            let _ = write!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{:.2} s</td><td>{:.2} s</td><td>{}</td></tr>",
                esc(&test.suite),
                esc(&test.test),
                test.median_s,
                test.last_s,
                sparkline(&test.durations_s)
            );
        }
        page.push_str("</table>");
    }

    page.push_str("<h2>Runs</h2><table><tr><th>run</th><th>verdict</th><th>time</th><th>overhead</th><th>target</th><th>commit</th></tr>");
    for run in &summary.runs {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(&run.id),
            run.verdict.as_deref().unwrap_or("unfinished"),
            run.verdict.as_deref().unwrap_or("unfinished"),
            run.duration_s.map_or("-".to_owned(), |s| format!("{s:.1} s")),
            run.overhead_s.map_or("-".to_owned(), |s| format!("{s:.1} s")),
            esc(run.target.as_deref().unwrap_or("-")),
            esc(&run.git_commit.chars().take(10).collect::<String>()),
            if run.dirty { " (dirty)" } else { "" }
        );
    }
    page.push_str("</table></body></html>\n");
    page
}

/// Each trend's value in each run, oldest first (NaN where it has none).
fn per_run(trends: &[Trend], runs: &[&RunRow]) -> Vec<(String, Vec<f64>)> {
    trends
        .iter()
        .map(|trend| {
            let values = runs
                .iter()
                .map(|run| {
                    trend
                        .per_run
                        .iter()
                        .find(|(id, _)| id == &run.id)
                        .map_or(f64::NAN, |(_, s)| *s)
                })
                .collect();
            (trend.name.clone(), values)
        })
        .collect()
}

/// A line chart of several series over the runs (NaN: no value in that run), with its legend.
fn chart(series: &[(String, Vec<f64>)], unit: &str) -> String {
    let max = series
        .iter()
        .flat_map(|(_, values)| values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-3);
    let count = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let x = |i: usize| {
        if count <= 1 {
            40.0
        } else {
            40.0 + i as f64 * (WIDTH - 60.0) / (count - 1) as f64
        }
    };
    let y = |v: f64| 10.0 + (HEIGHT - 30.0) * (1.0 - v / max);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\">\
         <line x1=\"40\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/>\
         <text x=\"2\" y=\"14\" class=\"tick\">{max:.1} {unit}</text>\
         <text x=\"2\" y=\"{}\" class=\"tick\">0</text>",
        HEIGHT - 20.0,
        WIDTH - 20.0,
        HEIGHT - 20.0,
        HEIGHT - 20.0
    );
    let mut legend = String::from("<p class=\"legend\">");
    for (index, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for point in &points {
            let (px, py) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(
                svg,
                "<circle cx=\"{px}\" cy=\"{py}\" r=\"2.5\" fill=\"{colour}\"/>"
            );
        }
        let last = values.iter().rev().find(|v| v.is_finite());
        let _ = write!(
            legend,
            "<span><i style=\"background:{colour}\"></i>{} {}</span>",
            esc(name),
            last.map_or(String::new(), |v| format!("(newest {v:.2} {unit})"))
        );
    }
    svg.push_str("</svg>");
    legend.push_str("</p>");
    svg + &legend
}

fn sparkline(values: &[f64]) -> String {
    let max = values.iter().copied().fold(0.0_f64, f64::max).max(1e-6);
    let step = 80.0 / (values.len().max(2) - 1) as f64;
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1}", i as f64 * step, 18.0 - 16.0 * v / max))
        .collect();
    format!(
        "<svg viewBox=\"0 0 80 20\" width=\"80\" height=\"20\"><polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.5\" points=\"{}\"/></svg>",
        points.join(" ")
    )
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:24px;color:#111;max-width:820px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px}.meta{color:#555}\
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 8px;text-align:left}\
.passed{color:#16a34a}.failed,.unavailable,.interrupted{color:#dc2626}.unfinished{color:#92400e}\
.axis{stroke:#999}.tick{font-size:10px;fill:#555}.legend span{margin-right:14px}\
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}\
.findings li{color:#b91c1c}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::analysis::Thresholds;

    #[test]
    fn the_page_names_the_services_and_needs_nothing_from_outside() {
        let runs: Vec<RunRow> = (0..3)
            .rev()
            .map(|i| RunRow {
                id: format!("r{i}"),
                command: "mission-critical".into(),
                started_ms: i,
                verdict: Some("passed".into()),
                duration_s: Some(10.0 + i as f64),
                overhead_s: Some(1.0),
                git_commit: "abc".into(),
                dirty: false,
                target: Some("docker".into()),
            })
            .collect();
        let summary = Summary {
            services: vec![Trend {
                name: "backend<x>".into(),
                per_run: vec![("r0".into(), 1.0), ("r2".into(), 2.0)],
                median_s: 1.5,
            }],
            runs,
            tests: Vec::new(),
            ws: Vec::new(),
            findings: Vec::new(),
            thresholds: Thresholds::default(),
        };
        let page = render(&summary, "chat");
        assert!(
            page.contains("backend&lt;x&gt;"),
            "services by name, escaped"
        );
        assert!(page.contains("<svg"));
        assert!(
            !page.contains("http://") && !page.contains("https://") && !page.contains("<script")
        );
    }
}
