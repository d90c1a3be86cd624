//! `report.html`: the run on one self-contained page (inline CSS, no script, nothing loaded from
//! the network): the verdict, the counts, a timeline with a lane per stage, service and suite
//! (tests as marks on their suite's lane), every failure with its output to expand, the slowest
//! services and tests, the stages table, the run's properties and links to the kept logs.
//! A pure function of the [`Record`].
//!
//! Not here: where the file goes ([super::artefacts]); the lanes ([super::timeline]).

use std::fmt::Write;
use std::time::Duration;

use super::timeline::{self, Kind, Lane, Timeline};
use crate::gate::events::{Counts, Record, Stage, Verdict};
use crate::junit::Status;
use crate::report::Outcome;
use crate::ui;

/// What the page needs besides the record.
pub struct HtmlMeta<'a> {
    /// `mission-critical chat`.
    pub title: String,
    /// The JUnit report, as a person finds it.
    pub junit: Option<String>,
    /// The kept logs: (what, link relative to the page).
    pub logs: Vec<(String, String)>,
    /// Redacted from the whole page.
    pub secrets: &'a [String],
}

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn class(kind: Kind) -> &'static str {
    match kind {
        Kind::Passed => "k-pass",
        Kind::Failed => "k-fail",
        Kind::Skipped => "k-skip",
        Kind::Created => "k-created",
        Kind::Starting => "k-starting",
        Kind::Healthy => "k-healthy",
        Kind::Running => "k-running",
        Kind::Stopping => "k-stopping",
        Kind::ProbeOk => "k-probe-ok",
        Kind::ProbeFailed => "k-probe-fail",
        Kind::Died => "k-died",
    }
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;background:#f3f4f6}
main{max-width:1320px;margin:0 auto;padding:20px 24px 48px}
h2{font-size:15px;text-transform:uppercase;letter-spacing:.06em;color:#4b5563;margin:28px 0 10px}
.verdict{border-radius:10px;padding:18px 24px;color:#fff;display:flex;align-items:baseline;gap:24px;flex-wrap:wrap}
.verdict.pass{background:#15803d}.verdict.fail{background:#b91c1c}.verdict.warn{background:#b45309}
.verdict .big{font-size:30px;font-weight:700;letter-spacing:.02em}
.verdict .sub{font-size:14px;opacity:.92}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin-top:14px}
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:120px;box-shadow:0 1px 2px #0001}
.card .n{font-size:22px;font-weight:700}.card .l{font-size:12px;color:#6b7280;text-transform:uppercase;letter-spacing:.05em}
.card.bad .n{color:#b91c1c}.card.good .n{color:#15803d}
.panel{background:#fff;border-radius:8px;padding:14px 16px;box-shadow:0 1px 2px #0001}
.tl .row{display:flex;align-items:center;min-height:24px}
.tl .lbl{width:170px;flex:none;padding-right:10px;font-size:13px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tl .track{position:relative;flex:1;height:22px;border-left:1px solid #d1d5db;background-image:linear-gradient(to right,#e5e7eb 1px,transparent 1px);background-size:var(--step) 100%}
.tl .axis .track{height:18px;background:none;border-left:none}
.tl .tick{position:absolute;top:0;font-size:11px;color:#6b7280;transform:translateX(-50%)}
.tl .grp{font-size:11px;text-transform:uppercase;letter-spacing:.08em;color:#6b7280;margin:10px 0 2px}
.tl .bar{position:absolute;top:3px;height:16px;border-radius:3px;min-width:2px}
.tl .suite .bar.span{opacity:.22}
.tl .test{position:absolute;top:6px;height:10px;border-radius:2px;min-width:2px;border-right:1px solid #fff}
.tl .mark{position:absolute;top:0;width:3px;height:22px;margin-left:-1px;border-radius:1px}
.tl .note{font-size:12px;color:#6b7280;padding-left:8px;line-height:22px}
.k-pass{background:#16a34a}.k-fail{background:#dc2626}.k-skip{background:#9ca3af}
.k-created{background:#cbd5e1}.k-starting{background:#f59e0b}.k-healthy{background:#22c55e}
.k-running{background:#3b82f6}.k-stopping{background:#94a3b8}.k-probe-ok{background:#065f46}
.k-probe-fail{background:#ea580c}.k-died{background:#7f1d1d}
.legend{display:flex;gap:14px;flex-wrap:wrap;font-size:12px;color:#4b5563;margin-top:10px}
.legend i{display:inline-block;width:12px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
details{background:#fff;border-radius:8px;margin:8px 0;box-shadow:0 1px 2px #0001;border-left:4px solid #dc2626}
summary{cursor:pointer;padding:10px 14px;font-weight:600}
summary .where{font-weight:400;color:#6b7280;font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;margin-left:8px}
summary .msg{display:block;font-weight:400;color:#991b1b;margin-top:2px}
pre{margin:0;padding:12px 14px;background:#111827;color:#e5e7eb;font:12px/1.5 ui-monospace,Menlo,Consolas,monospace;overflow:auto;max-height:420px;border-radius:0 0 8px 0;white-space:pre-wrap}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;overflow:hidden;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:6px 12px;border-bottom:1px solid #f0f1f3;font-size:13px;vertical-align:top}
th{background:#f9fafb;color:#4b5563;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.tl .lbl .dur{float:right;color:#9ca3af;font-size:11px;font-variant-numeric:tabular-nums}
.st-ok{color:#15803d;font-weight:600}.st-FAIL{color:#b91c1c;font-weight:700}.st-skip{color:#6b7280}.st-flaky{color:#b45309;font-weight:700}
.two{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.two h2{margin-top:20px}
.none{color:#15803d;background:#fff;border-radius:8px;padding:10px 14px}
ul.logs{background:#fff;border-radius:8px;padding:10px 14px 10px 32px;margin:0;columns:2}
a{color:#1d4ed8}
"#;

/// The page.
pub fn render(record: &Record, meta: &HtmlMeta<'_>) -> String {
    let verdict = record
        .finished()
        .map_or(Verdict::Failed, |(verdict, _, _)| verdict.clone());
    let (tone, word) = match &verdict {
        Verdict::Passed => ("pass", "PASSED".to_owned()),
        Verdict::Failed | Verdict::Panicked(_) => ("fail", verdict.label()),
        Verdict::Unavailable | Verdict::Interrupted(_) => ("warn", verdict.label()),
    };
    let timeline = timeline::of(record);
    let mut page = String::new();
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}: {}</title><style>{STYLE}</style></head><body><main>\n",
        esc(&meta.title),
        esc(&word)
    );

    // The verdict, and the facts a person asks first.
    let mut facts = vec![esc(&meta.title)];
    if let Some(run_id) = record.property("run_id") {
        facts.push(format!("run {}", esc(&run_id)));
    }
    facts.push(format!(
        "target {}",
        esc(&record.property("target").unwrap_or_else(|| "none".into()))
    ));
    facts.push(format!("total {}", ui::duration(timeline.total)));
    if let Some(started) = record.started {
        facts.push(format!(
            "started {}",
            esc(&crate::junit::timestamp(started))
        ));
    }
    let _ = writeln!(
        page,
        "<header class=\"verdict {tone}\"><div class=\"big\">{}</div><div class=\"sub\">{}</div></header>",
        esc(&word),
        facts.join(" · ")
    );
    if let Verdict::Panicked(message) = &verdict {
        let _ = write!(page, "<p>harness panic: {}</p>", esc(message));
    }
    page.push_str(&cards(record));

    page.push_str("<h2>Timeline</h2><div class=\"panel\">");
    page.push_str(&timeline_html(&timeline));
    page.push_str("</div>\n");

    page.push_str(&failures(record));
    page.push_str(&notable(record));
    page.push_str(&slowest(record));

    page.push_str("<h2>Stages and suites</h2><table><tr><th>stage</th><th>status</th><th class=\"num\">passed</th><th class=\"num\">failed</th><th>skipped / note</th><th class=\"num\">time</th></tr>");
    for row in super::summary::rows(record) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td class=\"st-{}\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&row[0]),
            esc(&row[1]),
            esc(&row[1]),
            esc(&row[2]),
            esc(&row[3]),
            esc(&row[4]),
            esc(&row[5])
        );
    }
    page.push_str("</table>\n");

    page.push_str("<h2>Properties</h2><table>");
    for (name, value) in record.properties() {
        let _ = write!(
            page,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(&name),
            esc(&value)
        );
    }
    if let Some(junit) = &meta.junit {
        let _ = write!(
            page,
            "<tr><th>junit report</th><td>{}</td></tr>",
            esc(junit)
        );
    }
    page.push_str("</table>\n");

    if !meta.logs.is_empty() {
        page.push_str("<h2>Logs</h2><ul class=\"logs\">");
        for (what, href) in &meta.logs {
            let _ = write!(page, "<li><a href=\"{}\">{}</a></li>", esc(href), esc(what));
        }
        page.push_str("</ul>\n");
    }
    page.push_str("</main></body></html>\n");
    crate::junit::redact(&page, meta.secrets)
}

fn cards(record: &Record) -> String {
    let mut counts = Counts::default();
    for suite in record.suites() {
        let c = Counts::of(suite);
        counts.passed += c.passed;
        counts.failed += c.failed;
        counts.skipped += c.skipped;
    }
    let steps_failed = record
        .steps()
        .filter(|(_, c)| c.outcome == Outcome::Failed)
        .count();
    let stages_ok = Stage::ALL
        .iter()
        .filter(|s| {
            matches!(
                record.stage(**s),
                Some((_, crate::gate::events::StageOutcome::Passed))
            )
        })
        .count();
    let stages_run = Stage::ALL
        .iter()
        .filter(|s| record.stage(**s).is_some())
        .count();
    let card = |n: String, label: &str, tone: &str| {
        format!("<div class=\"card {tone}\"><div class=\"n\">{n}</div><div class=\"l\">{label}</div></div>")
    };
    let bad = |n: usize| if n > 0 { "bad" } else { "" };
    format!(
        "<div class=\"cards\">{}{}{}{}{}</div>\n",
        card(counts.passed.to_string(), "tests passed", "good"),
        card(
            counts.failed.to_string(),
            "tests failed",
            bad(counts.failed)
        ),
        card(counts.skipped.to_string(), "tests skipped", ""),
        card(
            steps_failed.to_string(),
            "gate steps failed",
            bad(steps_failed)
        ),
        card(format!("{stages_ok}/{stages_run}"), "stages ok", "")
    )
}

fn pct(at: Duration, total: Duration) -> f64 {
    if total.is_zero() {
        return 0.0;
    }
    (at.as_secs_f64() / total.as_secs_f64() * 100.0).clamp(0.0, 100.0)
}

fn timeline_html(timeline: &Timeline) -> String {
    let total = timeline.total.max(Duration::from_millis(1));
    let step = timeline::tick_step(total);
    let mut html = format!(
        "<div class=\"tl\" style=\"--step:{:.4}%\"><div class=\"row axis\"><div class=\"lbl\"></div><div class=\"track\">",
        pct(step, total)
    );
    let mut tick = Duration::ZERO;
    while tick <= total {
        let _ = write!(
            html,
            "<span class=\"tick\" style=\"left:{:.3}%\">{}</span>",
            pct(tick, total),
            tick_label(tick, step, total)
        );
        tick += step;
    }
    html.push_str("</div></div>");
    let mut group = None;
    for lane in &timeline.lanes {
        if group != Some(lane.group) {
            group = Some(lane.group);
            let _ = write!(html, "<div class=\"grp\">{}</div>", lane.group.title());
        }
        html.push_str(&lane_html(lane, total));
    }
    html.push_str("<div class=\"legend\">");
    for (kind, label) in [
        (Kind::Passed, "passed"),
        (Kind::Failed, "failed"),
        (Kind::Skipped, "skipped"),
        (Kind::Created, "created"),
        (Kind::Starting, "starting (healthcheck pending)"),
        (Kind::Healthy, "healthy"),
        (Kind::Running, "running (no healthcheck)"),
        (Kind::Stopping, "stopping"),
        (Kind::ProbeOk, "healthcheck passed"),
        (Kind::ProbeFailed, "healthcheck failed"),
        (Kind::Died, "exited"),
    ] {
        let _ = write!(
            html,
            "<span><i class=\"{}\"></i>{label}</span>",
            class(kind)
        );
    }
    html.push_str("</div></div>");
    html
}

fn tick_label(tick: Duration, step: Duration, total: Duration) -> String {
    if step < Duration::from_secs(1) {
        format!("{:.1}s", tick.as_secs_f64())
    } else if total.as_secs() < 120 {
        format!("{}s", tick.as_secs())
    } else {
        format!("{}m{:02}s", tick.as_secs() / 60, tick.as_secs() % 60)
    }
}

fn lane_html(lane: &Lane, total: Duration) -> String {
    let row_class = match lane.group {
        timeline::Group::Suite => "row suite",
        timeline::Group::Stage | timeline::Group::Service => "row",
    };
    // A stage's or suite's own time beside its name.
    let took = lane
        .took
        .filter(|_| !lane.spans.is_empty())
        .map(|took| format!("<span class=\"dur\">{}</span>", ui::duration(took)))
        .unwrap_or_default();
    let mut html = format!(
        "<div class=\"{row_class}\"><div class=\"lbl\" title=\"{0}\">{0}{took}</div><div class=\"track\">",
        esc(&lane.name)
    );
    for span in &lane.spans {
        let _ = write!(
            html,
            "<div class=\"bar span {}\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{}: {} ({} → {})\"></div>",
            class(span.kind),
            pct(span.start, total),
            pct(span.end.saturating_sub(span.start), total),
            esc(&lane.name),
            esc(&span.label),
            ui::duration(span.start),
            ui::duration(span.end),
        );
    }
    for test in &lane.tests {
        let _ = write!(
            html,
            "<div class=\"test {}\" style=\"left:{:.3}%;width:{:.3}%\" title=\"{} {}\"></div>",
            class(test.kind),
            pct(test.start, total),
            pct(test.end.saturating_sub(test.start), total),
            esc(&test.label),
            ui::duration(test.end.saturating_sub(test.start)),
        );
    }
    for mark in &lane.marks {
        let _ = write!(
            html,
            "<div class=\"mark {}\" style=\"left:{:.3}%\" title=\"{} at {}\"></div>",
            class(mark.kind),
            pct(mark.at, total),
            esc(&mark.label),
            ui::duration(mark.at),
        );
    }
    if let Some(note) = &lane.note {
        let _ = write!(html, "<span class=\"note\">{}</span>", esc(note));
    }
    html.push_str("</div></div>");
    html
}

/// Every failed gate step and failed or broken test, the first one open.
fn failures(record: &Record) -> String {
    let mut items = Vec::new();
    for (stage, check) in record.steps().filter(|(_, c)| c.outcome == Outcome::Failed) {
        let mut body = check.output.clone().unwrap_or_default();
        if let Some(remedy) = &check.remedy {
            body.push_str(&format!("\nhint: {remedy}"));
        }
        items.push((
            format!("gate › {}: {}", stage.name(), check.name),
            None,
            check.detail.clone(),
            body,
        ));
    }
    for suite in record.suites() {
        for case in suite.rendered_cases() {
            let (Status::Failed { message, output } | Status::Error { message, output }) =
                &case.status
            else {
                continue;
            };
            let place = record
                .tests()
                .find(|(_, s, t)| {
                    *s == suite.name && t.name == case.name && t.classname == case.classname
                })
                .and_then(|(_, _, t)| match (&t.file, t.line) {
                    (Some(file), Some(line)) => Some(format!("{file}:{line}")),
                    (Some(file), None) => Some(file.clone()),
                    _ => None,
                });
            let mut body = output.clone();
            if let Some(out) = case.system_out.as_deref().filter(|o| !o.is_empty()) {
                body.push_str(&format!("\n--- captured output ---\n{out}"));
            }
            items.push((
                format!("{} › {}", suite.name, case.name),
                place,
                message.clone(),
                body,
            ));
        }
    }
    if items.is_empty() {
        return "<h2>Failures</h2><div class=\"none\">No failures.</div>\n".to_owned();
    }
    let mut html = format!("<h2>Failures ({})</h2>", items.len());
    for (index, (title, place, message, body)) in items.iter().enumerate() {
        let first_line = message.lines().next().unwrap_or_default();
        let _ = write!(
            html,
            "<details{}><summary>{}{}<span class=\"msg\">{}</span></summary><pre>{}</pre></details>",
            if index == 0 { " open" } else { "" },
            esc(title),
            place
                .as_deref()
                .map(|p| format!("<span class=\"where\">{}</span>", esc(p)))
                .unwrap_or_default(),
            esc(first_line),
            esc(if body.trim().is_empty() {
                message
            } else {
                body
            })
        );
    }
    html.push('\n');
    html
}

/// The flaky and quarantined tests, when there are any.
fn notable(record: &Record) -> String {
    let notable = super::summary::notable(record);
    if notable.is_empty() {
        return String::new();
    }
    let mut html = format!(
        "<h2>Flaky and quarantined ({})</h2><table><tr><th></th><th>test</th><th>what happened</th></tr>",
        notable.len()
    );
    for test in &notable {
        let _ = write!(
            html,
            "<tr><td class=\"st-flaky\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(test.label),
            esc(&test.test),
            esc(&test.detail)
        );
    }
    html.push_str("</table>\n");
    html
}

fn slowest(record: &Record) -> String {
    let mut services: Vec<(String, Duration)> = record
        .steps()
        .filter(|(s, c)| *s == Stage::Stack && c.name.starts_with("service "))
        .map(|(_, c)| (c.name.clone(), c.duration))
        .collect();
    services.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let mut tests: Vec<(String, Duration)> = record
        .suites()
        .flat_map(|s| {
            s.cases
                .iter()
                .filter(|c| c.time > Duration::ZERO)
                .map(move |c| (format!("{} › {}", s.name, c.name), c.time))
        })
        .collect();
    tests.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    let table = |title: &str, what: &str, rows: &[(String, Duration)]| {
        let mut html = format!("<div><h2>{title}</h2><table><tr><th>{what}</th><th>time</th></tr>");
        if rows.is_empty() {
            html.push_str("<tr><td colspan=\"2\">none</td></tr>");
        }
        for (name, time) in rows.iter().take(5) {
            let _ = write!(
                html,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(name),
                ui::duration(*time)
            );
        }
        html.push_str("</table></div>");
        html
    };
    format!(
        "<div class=\"two\">{}{}</div>\n",
        table("Slowest services", "service (to healthy)", &services),
        table("Slowest tests", "test", &tests)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::sinks::fixtures;

    fn meta(secrets: &[String]) -> HtmlMeta<'_> {
        HtmlMeta {
            title: "mission-critical chat".into(),
            junit: Some("target/xtask/junit.xml".into()),
            logs: vec![(
                "service postgres".into(),
                "runs/19a2b3c4d5e-4242/logs/postgres.log".into(),
            )],
            secrets,
        }
    }

    #[test]
    fn docker_run() {
        insta::assert_snapshot!(render(&fixtures::docker_passing(), &meta(&[])));
    }

    #[test]
    fn flaky_and_quarantined_tests_have_a_table() {
        let page = render(&fixtures::flaky_and_quarantined(), &meta(&[]));
        assert!(
            page.contains("<h2>Flaky and quarantined (2)</h2>"),
            "{page}"
        );
        assert!(
            page.contains("e2e::tests.e2e.test_chat::test_reconnect</td><td>passed on attempt 2; attempt 1: ConnectionResetError: peer went away"),
            "{page}"
        );
        assert!(page.contains(">QUARANTINED<"), "{page}");
        // Passed in the end: the flaky test is no failure; the quarantined one still is.
        assert!(page.contains("<h2>Failures (1)</h2>"), "{page}");
        assert!(page.contains("verdict pass"), "{page}");
    }

    #[test]
    fn a_failing_suite_names_the_test_its_line_and_hides_secrets() {
        let secrets = ["s3cret".to_owned()];
        let page = render(&fixtures::failing_suite(), &meta(&secrets));
        assert!(!page.contains("s3cret"), "the secret leaked");
        assert!(page.contains("tests/e2e/test_chat.py:42"), "{page}");
        assert!(page.contains("e2e › test_agent_answers, with commas"));
        assert!(page.contains("verdict fail"));
        // Self-contained: nothing is fetched.
        for needle in ["http://", "https://", "<script", "<link", "@import", "src="] {
            assert!(!page.contains(needle), "the page loads something: {needle}");
        }
        insta::assert_snapshot!(page);
    }
}
