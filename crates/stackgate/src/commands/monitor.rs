//! The `monitor` command: a round on a schedule until the period ends or Ctrl-C, each round one
//! JSON line in `target/xtask/monitor-<start>.jsonl` and one line for people; then the summary as
//! a table (and with `--json`). A failed round exits 1, Ctrl-C 130.
//!
//! Not here: the rounds and the summary's arithmetic ([crate::monitor]).

use std::io::Write;
use std::time::Duration;

use crate::clock::utc_stamp;
use crate::error::Failure;
use crate::monitor::{self, Round, Summary};
use crate::{stack, ui, ws, Ctx};

fn rolling_line(round: &Round, rounds: usize, failures: usize) -> String {
    let state = if round.up {
        "up".to_owned()
    } else {
        let why: Vec<String> = round
            .health_problems
            .iter()
            .cloned()
            .chain(round.ws_failure.clone())
            .collect();
        format!("DOWN ({})", why.join("; "))
    };
    let latency = round
        .latency_ms
        .map_or("-".to_owned(), |l| format!("{l:.1} ms"));
    format!(
        "round {}: {state}  |  rounds {rounds}, failures {failures}, uptime {:.1}%, last latency {latency}",
        round.round,
        monitor::uptime(rounds, failures)
    )
}

impl crate::flags::Monitor {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        if config.ws_check.is_none() {
            return Err(Failure::config(format!(
                "{}: monitor needs a [ws_check] table",
                config.path.display()
            ))
            .into());
        }
        // One stack for the whole watch: the one named, else the newest kept one now.
        let chosen = stack::choose(&config, self.run.as_deref())?;
        if let Some(note) = chosen.as_ref().and_then(|c| c.note.as_ref()) {
            ui::say(note);
        }
        let run = chosen.map(|c| c.record.stack.run_id);
        // Fail early (exit 2) when there is nothing to watch.
        ws::recorded_endpoints(&config, run.as_deref())?;
        let started_unix_ms = crate::clock::unix_ms();
        let log_path = config.work_dir().join(format!(
            "monitor-{}.jsonl",
            utc_stamp(started_unix_ms).replace([':', '-'], "")
        ));
        std::fs::create_dir_all(config.work_dir())?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", log_path.display()))?;
        ui::say(format!(
            "monitor: a round every {} for {}; log {}",
            ui::duration(self.every),
            ui::duration(self.period),
            log_path.display()
        ));

        let start = tokio::time::Instant::now();
        let end = start + self.period;
        let mut rounds: Vec<Round> = Vec::new();
        let mut interrupted = false;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut next = start;
        while next < end {
            tokio::select! {
                _ = &mut ctrl_c => { interrupted = true; break; }
                () = tokio::time::sleep_until(next) => {}
            }
            let round = tokio::select! {
                _ = &mut ctrl_c => { interrupted = true; break; }
                round = monitor::one_round(&config, run.as_deref(), rounds.len() + 1) => round,
            };
            writeln!(log, "{}", serde_json::to_string(&round)?)?;
            rounds.push(round);
            let failures = rounds.iter().filter(|r| !r.up).count();
            ui::say(rolling_line(
                rounds.last().expect("just pushed"),
                rounds.len(),
                failures,
            ));
            next += self.every;
            let now = tokio::time::Instant::now();
            if next < now {
                // A round longer than the interval: the next one starts now, not in a burst.
                next = now;
            }
        }
        let summary = monitor::summarise(
            &rounds,
            started_unix_ms,
            crate::clock::unix_ms(),
            interrupted,
            log_path.display().to_string(),
        );
        eprint!("{}", summary_table(&summary));
        if self.json {
            let passed = summary.rounds > 0 && summary.failures == 0 && !summary.interrupted;
            ui::print_json(serde_json::to_value(&summary)?, passed);
        }
        if interrupted {
            // Ctrl-C ends a watch like any other command: exit 130, after its summary.
            return Err(Failure::Interrupted { signal: "SIGINT" }.into());
        }
        if summary.rounds > 0 && summary.failures == 0 {
            Ok(())
        } else {
            Err(Failure::check(format!(
                "monitor: uptime {:.1}% ({} of {} rounds failed)",
                summary.uptime_percent, summary.failures, summary.rounds
            ))
            .into())
        }
    }
}

/// The summary as a table for people (the command prints it).
fn summary_table(summary: &Summary) -> String {
    let mut rows = vec![
        vec![
            "period".to_owned(),
            format!(
                "{} .. {}{}",
                utc_stamp(summary.started_unix_ms),
                utc_stamp(summary.ended_unix_ms),
                if summary.interrupted {
                    " (interrupted)"
                } else {
                    ""
                }
            ),
        ],
        vec![
            "rounds".to_owned(),
            format!("{} ({} failed)", summary.rounds, summary.failures),
        ],
        vec![
            "uptime".to_owned(),
            format!("{:.1}%", summary.uptime_percent),
        ],
        vec![
            "latency".to_owned(),
            if summary.latency.count == 0 {
                "-".to_owned()
            } else {
                summary.latency.line()
            },
        ],
    ];
    for outage in &summary.outages {
        let longest = summary.longest_outage.as_ref() == Some(outage) && summary.outages.len() > 1;
        rows.push(vec![
            if longest {
                "outage (longest)".to_owned()
            } else {
                "outage".to_owned()
            },
            format!(
                "from {} for {} ({} rounds)",
                utc_stamp(outage.start_unix_ms),
                ui::duration(Duration::from_millis(outage.length_ms)),
                outage.rounds
            ),
        ]);
    }
    rows.push(vec!["log".to_owned(), summary.log.clone()]);
    ui::table(&["monitor", "summary"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::tests::round;

    #[test]
    fn the_summary_table_marks_the_longest_of_several_outages() {
        let rounds: Vec<Round> = (0..10)
            .map(|i| round(i * 1000, ![2, 5, 6].contains(&i), Some(100.0)))
            .collect();
        let table = summary_table(&monitor::summarise(
            &rounds,
            0,
            10_000,
            true,
            "the.jsonl".into(),
        ));
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("(interrupted)"), "{table}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("uptime") && l.ends_with("70.0%")),
            "{table}"
        );
        let outages: Vec<&&str> = lines.iter().filter(|l| l.starts_with("outage")).collect();
        assert_eq!(outages.len(), 2, "{table}");
        assert!(outages[1].starts_with("outage (longest)"), "{table}");
        assert!(outages[1].ends_with("(2 rounds)"), "{table}");
        assert!(lines.last().unwrap().ends_with("the.jsonl"), "{table}");
    }
}
