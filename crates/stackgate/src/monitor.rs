//! `monitor`: health and a one-user ws-check on a schedule; uptime, outages, latency percentiles.
//!
//! A round is up when both the health snapshot and the WebSocket check pass. The summary (and
//! its outage arithmetic, a pure function) is computed from the rounds alone. Nothing here
//! prints.
//!
//! Not here: the command, its log and its lines ([crate::commands::monitor]), the WebSocket check
//! itself ([crate::ws]), the health snapshot ([crate::stack]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::stack;
use crate::ws::{self, Percentiles};

/// One round, as logged.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    pub round: usize,
    /// When the round started, ms since the epoch.
    pub at_unix_ms: u64,
    pub up: bool,
    pub health_ok: bool,
    /// Why health failed (problems, or the error of the snapshot itself).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub health_problems: Vec<String>,
    pub ws_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ws_failure: Option<String>,
    /// Send to the last expected event, when the check passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    pub duration_ms: f64,
}

/// A stretch of consecutive failed rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// Start of the first failed round, ms since the epoch.
    pub start_unix_ms: u64,
    /// Until the start of the next up round (or the end of the watch when none followed).
    pub length_ms: u64,
    pub rounds: usize,
}

/// The outages in `rounds` (`(start ms, up)`, in time order); `end_ms` closes an outage that
/// lasts until the end.
pub fn outages(rounds: &[(u64, bool)], end_ms: u64) -> Vec<Outage> {
    let mut found = Vec::new();
    let mut open: Option<(u64, usize)> = None;
    for &(at, up) in rounds {
        match (up, open) {
            (false, None) => open = Some((at, 1)),
            (false, Some((start, count))) => open = Some((start, count + 1)),
            (true, Some((start, count))) => {
                found.push(Outage {
                    start_unix_ms: start,
                    length_ms: at.saturating_sub(start),
                    rounds: count,
                });
                open = None;
            }
            (true, None) => {}
        }
    }
    if let Some((start, count)) = open {
        found.push(Outage {
            start_unix_ms: start,
            length_ms: end_ms.saturating_sub(start),
            rounds: count,
        });
    }
    found
}

/// What a watch found.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    pub rounds: usize,
    pub failures: usize,
    pub uptime_percent: f64,
    pub outages: Vec<Outage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub longest_outage: Option<Outage>,
    /// Send to last expected event, over the rounds whose WebSocket check passed.
    pub latency: Percentiles,
    pub interrupted: bool,
    pub log: String,
}

/// Summarises rounds (pure).
pub fn summarise(
    rounds: &[Round],
    started_unix_ms: u64,
    ended_unix_ms: u64,
    interrupted: bool,
    log: String,
) -> Summary {
    let failures = rounds.iter().filter(|r| !r.up).count();
    let marks: Vec<(u64, bool)> = rounds.iter().map(|r| (r.at_unix_ms, r.up)).collect();
    let outages = outages(&marks, ended_unix_ms);
    let longest_outage = outages.iter().max_by_key(|o| o.length_ms).cloned();
    let latencies: Vec<f64> = rounds.iter().filter_map(|r| r.latency_ms).collect();
    Summary {
        started_unix_ms,
        ended_unix_ms,
        rounds: rounds.len(),
        failures,
        uptime_percent: uptime(rounds.len(), failures),
        outages,
        longest_outage,
        latency: Percentiles::of(&latencies),
        interrupted,
        log,
    }
}

pub fn uptime(rounds: usize, failures: usize) -> f64 {
    if rounds == 0 {
        return 0.0;
    }
    (((rounds - failures) as f64 * 100.0 / rounds as f64) * 10.0).round() / 10.0
}

/// One round: health, then a one-user ws-check against the ports the health check found published
/// (a restarted container of an `--isolated` run has new ones).
pub async fn one_round(config: &Config, run: Option<&str>, round: usize) -> Round {
    let at_unix_ms = crate::clock::unix_ms();
    let started = Instant::now();
    let (health_ok, health_problems, live_endpoints) =
        match tokio::time::timeout(Duration::from_secs(30), stack::health_snapshot(config, run))
            .await
        {
            Ok(Ok(snapshot)) => {
                let ok = snapshot.engine_ok && snapshot.all_healthy;
                let mut problems = snapshot.problems;
                if !ok && problems.is_empty() {
                    problems.push(if snapshot.engine_ok {
                        "a service is not healthy".to_owned()
                    } else {
                        "the engine does not answer".to_owned()
                    });
                }
                (ok, problems, snapshot.endpoints)
            }
            Ok(Err(e)) => (
                false,
                vec![format!("health: {}", ws_error_text(&e))],
                BTreeMap::new(),
            ),
            Err(_) => (
                false,
                vec!["health: no snapshot within 30s".to_owned()],
                BTreeMap::new(),
            ),
        };
    let endpoints = if live_endpoints.is_empty() {
        ws::recorded_endpoints(config, run)
    } else {
        Ok(live_endpoints)
    };
    let plan = endpoints
        .and_then(|endpoints| ws::plan_from_config(config, &endpoints, &ws::Overrides::default()));
    let (ws_ok, ws_failure, latency_ms) = match plan {
        Err(e) => (false, Some(ws_error_text(&e)), None),
        Ok(plan) => {
            let result = ws::run(&plan).await;
            let latency = result
                .passed
                .then_some(result.stats.last_event.max_ms)
                .filter(|_| result.stats.last_event.count > 0);
            (result.passed, result.failure, latency)
        }
    };
    Round {
        round,
        at_unix_ms,
        up: health_ok && ws_ok,
        health_ok,
        health_problems,
        ws_ok,
        ws_failure,
        latency_ms,
        duration_ms: (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
    }
}

fn ws_error_text(error: &anyhow::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn no_outage_when_every_round_is_up() {
        assert!(outages(&[(0, true), (1000, true)], 2000).is_empty());
        assert!(outages(&[], 2000).is_empty());
    }

    #[test]
    fn an_outage_lasts_until_the_next_up_round() {
        let rounds = [
            (0, true),
            (1000, false),
            (2000, false),
            (3000, true),
            (4000, false),
            (5000, true),
        ];
        assert_eq!(
            outages(&rounds, 6000),
            vec![
                Outage {
                    start_unix_ms: 1000,
                    length_ms: 2000,
                    rounds: 2
                },
                Outage {
                    start_unix_ms: 4000,
                    length_ms: 1000,
                    rounds: 1
                },
            ]
        );
    }

    #[test]
    fn an_outage_at_the_end_lasts_until_the_end() {
        assert_eq!(
            outages(&[(0, true), (1000, false), (2000, false)], 2500),
            vec![Outage {
                start_unix_ms: 1000,
                length_ms: 1500,
                rounds: 2
            }]
        );
    }

    pub(crate) fn round(at: u64, up: bool, latency: Option<f64>) -> Round {
        Round {
            round: 0,
            at_unix_ms: at,
            up,
            health_ok: up,
            health_problems: Vec::new(),
            ws_ok: up,
            ws_failure: None,
            latency_ms: latency,
            duration_ms: 1.0,
        }
    }

    #[test]
    fn summary_counts_uptime_longest_outage_and_latency() {
        let rounds: Vec<Round> = (0..20)
            .map(|i| {
                let up = !(5..10).contains(&i) && i != 15;
                round(i * 1000, up, up.then_some(100.0 + i as f64))
            })
            .collect();
        let summary = summarise(&rounds, 0, 20_000, false, "log".into());
        assert_eq!(summary.failures, 6);
        assert_eq!(summary.uptime_percent, 70.0);
        assert_eq!(summary.outages.len(), 2);
        let longest = summary.longest_outage.unwrap();
        assert_eq!((longest.start_unix_ms, longest.length_ms), (5000, 5000));
        assert_eq!(summary.latency.count, 14);
        assert_eq!(summary.latency.max_ms, 119.0);
    }
}
