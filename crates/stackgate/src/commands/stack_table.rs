//! The services' table and the endpoints that `docker-up` prints after its run.
//!
//! Not here: the stack's start ([crate::stack::up]), `docker-up` itself
//! (`commands/docker_up.rs`).

use crate::report::Outcome;
use crate::stack::UpReport;
use crate::ui;

/// The services' table and the endpoints, as `docker-up` prints them.
pub fn print_up(report: &UpReport) {
    let rows: Vec<Vec<String>> = report
        .services
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.check.outcome.label().to_owned(),
                if s.check.outcome == Outcome::Passed {
                    ui::duration(s.check.duration)
                } else {
                    "-".to_owned()
                },
                s.noticed_after.map_or("-".to_owned(), |n| {
                    format!("{:.1} ms", n.as_secs_f64() * 1000.0)
                }),
                s.check.detail.clone(),
            ]
        })
        .collect();
    eprint!(
        "{}",
        ui::table(
            &["service", "status", "to healthy", "noticed", "detail"],
            &rows
        )
    );
    if !report.endpoints.is_empty() {
        eprintln!("endpoints:");
        for (name, url) in &report.endpoints {
            eprintln!("  {name:<12} {url}");
        }
    }
    eprintln!(
        "project {} (run {}), {}; compose up to all healthy {}, total {}",
        report.project,
        report.run_id,
        report.compose,
        ui::duration(report.waited),
        ui::duration(report.total)
    );
}
