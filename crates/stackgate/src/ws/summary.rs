//! Judging a check from what every user saw: latency percentiles, the figures, misrouted events
//! (isolation), the specific failures and the messages a person reads for them, and the checks
//! the gate reports ("websocket connect", "websocket events", "websocket isolation").
//!
//! Not here: talking to the server ([super::connect]), printing ([super::command]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::{scrub, UserOutcome, WsPlan, WsResult, RUN_FIELD};
use crate::report::{Check, Outcome};
use crate::ui;

/// Nearest-rank percentiles of a set of latencies, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(values_ms: &[f64]) -> Percentiles {
        if values_ms.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = values_ms.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            round_ms(sorted[index.clamp(1, sorted.len()) - 1])
        };
        Percentiles {
            count: sorted.len(),
            p50_ms: rank(50.0),
            p95_ms: rank(95.0),
            p99_ms: rank(99.0),
            max_ms: round_ms(sorted[sorted.len() - 1]),
        }
    }

    /// `p50 12.1 ms, p95 30.2 ms, p99 41.0 ms, max 44.3 ms`.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms
        )
    }
}

fn round_ms(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}

pub(super) fn ms(duration: Duration) -> f64 {
    round_ms(duration.as_secs_f64() * 1000.0)
}

/// Figures over every user.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub connections_attempted: usize,
    pub connections_succeeded: usize,
    pub success_rate_percent: f64,
    pub events_received: usize,
    pub events_misrouted: usize,
    /// Messages whose expected events all arrived, in order.
    pub messages_completed: usize,
    pub messages_sent: usize,
    pub connect: Percentiles,
    /// From a send to the first event of that message.
    pub first_event: Percentiles,
    /// From a send to the last expected event of that message.
    pub last_event: Percentiles,
    pub wall_ms: f64,
}

/// The specific way a check failed; its `Display` is the message a person reads.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WsFailure {
    /// The token request failed.
    Token { url: String, detail: String },
    /// Nothing listens at the address.
    Refused { url: String },
    /// The TCP connect or the handshake did not finish in time.
    ConnectTimeout { url: String, after_ms: f64 },
    /// Another connect error (name resolution, reset, a failed TLS handshake).
    Connect { url: String, detail: String },
    /// The server's TLS certificate failed verification (untrusted, another host's, expired).
    Certificate { url: String, problem: String },
    /// The server answered the upgrade with a status other than 101.
    Handshake {
        url: String,
        status: u16,
        reason: String,
        body_line: String,
    },
    /// An expected event did not arrive within `timeout_s` of the send.
    Timeout {
        waiting_for: String,
        after_ms: f64,
        received: Vec<String>,
    },
    /// An expected event arrived before the one expected next.
    WrongOrder {
        expected: String,
        got: String,
        received: Vec<String>,
    },
    /// A frame that is not a JSON text message.
    Malformed { detail: String, frame: String },
    /// The server sent an `error` event.
    ErrorEvent { event: String },
    /// The server closed the connection while events were still expected, or answered the close
    /// handshake with an unexpected code.
    Closed {
        code: Option<u16>,
        reason: String,
        waiting_for: Option<String>,
    },
    /// The socket failed while sending or reading.
    Io { detail: String },
    /// The user did not finish before the overall deadline.
    Deadline { after_ms: f64 },
}

fn received_list(received: &[String]) -> String {
    if received.is_empty() {
        "nothing".to_owned()
    } else {
        received.join(", ")
    }
}

impl fmt::Display for WsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsFailure::Token { url, detail } => {
                write!(f, "token request to {url} failed: {detail}")
            }
            WsFailure::Refused { url } => {
                write!(f, "connection refused at {url}: nothing is listening there")
            }
            WsFailure::ConnectTimeout { url, after_ms } => write!(
                f,
                "no websocket connection to {url} within {:.1}s",
                after_ms / 1000.0
            ),
            WsFailure::Connect { url, detail } => write!(f, "cannot connect to {url}: {detail}"),
            WsFailure::Certificate { url, problem } => {
                write!(f, "cannot connect to {url}: {problem}")
            }
            WsFailure::Handshake {
                url,
                status,
                reason,
                body_line,
            } => {
                write!(f, "handshake with {url} answered HTTP {status}")?;
                if !reason.is_empty() {
                    write!(f, " {reason}")?;
                }
                if !body_line.is_empty() {
                    write!(f, ": {body_line}")?;
                }
                Ok(())
            }
            WsFailure::Timeout {
                waiting_for,
                after_ms,
                received,
            } => write!(
                f,
                "timed out after {:.1}s waiting for event `{waiting_for}`; received: {}",
                after_ms / 1000.0,
                received_list(received)
            ),
            WsFailure::WrongOrder {
                expected,
                got,
                received,
            } => write!(
                f,
                "wrong order: got `{got}` while `{expected}` was expected next; received: {}",
                received_list(received)
            ),
            WsFailure::Malformed { detail, frame } => {
                write!(f, "malformed message ({detail}): {frame}")
            }
            WsFailure::ErrorEvent { event } => write!(f, "the server sent an error event: {event}"),
            WsFailure::Closed {
                code,
                reason,
                waiting_for,
            } => {
                let code = code.map_or("no code".to_owned(), |c| format!("code {c}"));
                let reason = if reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({reason})")
                };
                match waiting_for {
                    Some(event) => write!(
                        f,
                        "unexpected close: the server closed the connection with {code}{reason} while waiting for event `{event}`"
                    ),
                    None => write!(
                        f,
                        "unexpected close code: the server answered the close handshake with {code}{reason}"
                    ),
                }
            }
            WsFailure::Io { detail } => write!(f, "websocket i/o failed: {detail}"),
            WsFailure::Deadline { after_ms } => write!(
                f,
                "did not finish within the overall deadline of {:.1}s",
                after_ms / 1000.0
            ),
        }
    }
}

impl WsFailure {
    /// Whether the failure happened before the connection was open.
    fn is_connect(&self) -> bool {
        matches!(
            self,
            WsFailure::Token { .. }
                | WsFailure::Refused { .. }
                | WsFailure::ConnectTimeout { .. }
                | WsFailure::Connect { .. }
                | WsFailure::Certificate { .. }
                | WsFailure::Handshake { .. }
        )
    }
}

/// One misrouted event: a user received an event of a run it did not start.
#[derive(Debug, Clone, Serialize)]
pub struct Misrouted {
    pub user: usize,
    pub event: String,
    pub run_id: String,
    /// The user that started the run, when known.
    pub owner: Option<usize>,
}

pub(super) fn summarise(plan: &WsPlan, outcomes: Vec<UserOutcome>, wall: Duration) -> WsResult {
    let users = outcomes.len();
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let misrouted = misrouted(plan, &outcomes);
    let stats = stats(&outcomes, connected, misrouted.len(), wall);
    let judge = Judge {
        plan,
        outcomes: &outcomes,
        users,
        connected,
        stats: &stats,
        failures: outcomes
            .iter()
            .enumerate()
            .filter_map(|(user, o)| o.failure.as_ref().map(|f| (user, f)))
            .collect(),
        events_phase: outcomes
            .iter()
            .map(|o| o.events_phase)
            .max()
            .unwrap_or_default(),
    };

    let mut checks = Vec::new();
    let (connect_check, mut failure) = judge.connect_check();
    checks.push(connect_check);
    let (events_check, events_failure) = judge.events_check();
    checks.push(events_check);
    failure = failure.or(events_failure);
    if users > 1 {
        let (isolation_check, isolation_failure) = judge.isolation_check(&misrouted);
        checks.push(isolation_check);
        failure = failure.or(isolation_failure);
    }

    let passed = checks.iter().all(|c| c.outcome != Outcome::Failed);
    let events = outcomes
        .first()
        .map(|o| o.events.clone())
        .unwrap_or_default();
    let secrets: Vec<&str> = plan.token.as_deref().into_iter().collect();
    let (failure, failure_detail) = match failure {
        Some((message, detail)) => (Some(scrub(&message, &secrets)), Some(detail)),
        None => (None, None),
    };
    WsResult {
        passed,
        url: scrub(&plan.url, &secrets),
        users,
        messages: plan.messages,
        checks,
        failure,
        failure_detail,
        events,
        misrouted,
        stats,
    }
}

/// Events a user received of a run it did not start; a run claimed by two users is misrouted
/// for both.
fn misrouted(plan: &WsPlan, outcomes: &[UserOutcome]) -> Vec<Misrouted> {
    // Who owns which run.
    let mut owners: HashMap<&str, Vec<usize>> = HashMap::new();
    for (user, outcome) in outcomes.iter().enumerate() {
        for run in &outcome.own_runs {
            owners.entry(run.as_str()).or_default().push(user);
        }
    }
    let mut misrouted: Vec<Misrouted> = Vec::new();
    for (user, outcome) in outcomes.iter().enumerate() {
        for (event, run_id) in &outcome.foreign {
            misrouted.push(Misrouted {
                user,
                event: event.clone(),
                run_id: run_id.clone(),
                owner: owners.get(run_id.as_str()).and_then(|o| o.first().copied()),
            });
        }
    }
    let mut shared: HashSet<&str> = HashSet::new();
    for (run, claimants) in &owners {
        if claimants.len() > 1 && shared.insert(run) {
            for &user in &claimants[1..] {
                misrouted.push(Misrouted {
                    user,
                    event: plan.expect[0].clone(),
                    run_id: (*run).to_owned(),
                    owner: Some(claimants[0]),
                });
            }
        }
    }
    misrouted
}

/// The counts and the latency percentiles over every user.
fn stats(outcomes: &[UserOutcome], connected: usize, misrouted: usize, wall: Duration) -> Stats {
    let users = outcomes.len();
    let all = |pick: fn(&UserOutcome) -> &Vec<Duration>| -> Vec<f64> {
        outcomes
            .iter()
            .flat_map(|o| pick(o).iter().map(|d| d.as_secs_f64() * 1000.0))
            .collect()
    };
    let connect_times: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.connected)
        .map(|o| o.connect_time.as_secs_f64() * 1000.0)
        .collect();
    Stats {
        connections_attempted: users,
        connections_succeeded: connected,
        success_rate_percent: round_ms(connected as f64 * 100.0 / users.max(1) as f64),
        events_received: outcomes.iter().map(|o| o.events.len()).sum(),
        events_misrouted: misrouted,
        messages_completed: outcomes.iter().map(|o| o.messages_completed).sum(),
        messages_sent: outcomes.iter().map(|o| o.messages_sent).sum(),
        connect: Percentiles::of(&connect_times),
        first_event: Percentiles::of(&all(|o| &o.first_latencies)),
        last_event: Percentiles::of(&all(|o| &o.last_latencies)),
        wall_ms: ms(wall),
    }
}

/// A check's message and the failure behind it, for the report's first failure.
type FirstFailure = Option<(String, WsFailure)>;

/// What the checks are judged from: every user's outcome and the stats over them.
struct Judge<'a> {
    plan: &'a WsPlan,
    outcomes: &'a [UserOutcome],
    users: usize,
    connected: usize,
    stats: &'a Stats,
    /// Each failed user and why.
    failures: Vec<(usize, &'a WsFailure)>,
    /// The longest user's time on its events.
    events_phase: Duration,
}

impl Judge<'_> {
    /// `user 3: ` before a failure when there are several users.
    fn prefix(&self, user: usize) -> String {
        if self.users > 1 {
            format!("user {user}: ")
        } else {
            String::new()
        }
    }

    /// `websocket connect`: every user connected.
    fn connect_check(&self) -> (Check, FirstFailure) {
        let (users, connected) = (self.users, self.connected);
        let connect_phase = self
            .outcomes
            .iter()
            .map(|o| o.connect_phase)
            .max()
            .unwrap_or_default();
        let connect_failures: Vec<&(usize, &WsFailure)> = self
            .failures
            .iter()
            .filter(|(_, f)| f.is_connect())
            .collect();
        if connect_failures.is_empty() && connected == users {
            let detail = if users == 1 {
                format!(
                    "connected in {}",
                    ui::duration(self.outcomes[0].connect_time)
                )
            } else {
                format!(
                    "{connected}/{users} connected (100%), connect {}",
                    self.stats.connect.line()
                )
            };
            return (
                Check::passed("websocket connect", connect_phase, detail),
                None,
            );
        }
        let (user, first) = connect_failures
            .first()
            .map(|(u, f)| (*u, (*f).clone()))
            .or_else(|| self.failures.first().map(|(u, f)| (*u, (*f).clone())))
            .unwrap_or((0, WsFailure::Deadline { after_ms: 0.0 }));
        let message = if users == 1 {
            format!("websocket connect: {first}")
        } else {
            format!(
                "websocket connect: {connected}/{users} users connected ({:.1}%); {}{first}",
                self.stats.success_rate_percent,
                self.prefix(user)
            )
        };
        (
            Check::failed("websocket connect", connect_phase, message.clone()),
            Some((message, first)),
        )
    }

    /// `websocket events`: every connected user completed its messages with the events
    /// expected, in order.
    fn events_check(&self) -> (Check, FirstFailure) {
        let (plan, stats, users) = (self.plan, self.stats, self.users);
        if self.connected == 0 {
            return (
                Check::skipped("websocket events", "no connection was established"),
                None,
            );
        }
        let event_failures: Vec<&(usize, &WsFailure)> = self
            .failures
            .iter()
            .filter(|(_, f)| !f.is_connect())
            .collect();
        let expected_messages = self.connected * plan.messages;
        if event_failures.is_empty() && stats.messages_completed >= expected_messages {
            let detail = if users == 1 && plan.messages == 1 {
                format!(
                    "{} events in order, first after {:.1} ms, last after {:.1} ms",
                    plan.expect.len(),
                    stats.first_event.max_ms,
                    stats.last_event.max_ms
                )
            } else {
                format!(
                    "{} messages complete, {} events; first event {}; last event {}",
                    stats.messages_completed,
                    stats.events_received,
                    stats.first_event.line(),
                    stats.last_event.line()
                )
            };
            return (
                Check::passed("websocket events", self.events_phase, detail),
                None,
            );
        }
        let (user, first) = event_failures
            .first()
            .map(|(u, f)| (*u, (*f).clone()))
            .unwrap_or((0, WsFailure::Deadline { after_ms: 0.0 }));
        let message = if users == 1 {
            format!("websocket events: {first}")
        } else {
            format!(
                "websocket events: {} of {users} users failed; {}{first}",
                event_failures.len(),
                self.prefix(user)
            )
        };
        (
            Check::failed("websocket events", self.events_phase, message.clone()),
            Some((message, first)),
        )
    }

    /// `websocket isolation` (several users): no user received another's events.
    fn isolation_check(&self, misrouted: &[Misrouted]) -> (Check, FirstFailure) {
        let saw_run_ids = self.outcomes.iter().any(|o| o.saw_run_ids);
        if let Some(first) = misrouted.first() {
            let owner = first.owner.map_or("a run no user started".to_owned(), |o| {
                format!("user {o}'s run")
            });
            let message = format!(
                "websocket isolation: {} events misrouted; user {} received `{}` of {owner} ({RUN_FIELD} {})",
                misrouted.len(),
                first.user,
                first.event,
                first.run_id
            );
            let failure = WsFailure::Io {
                detail: message.clone(),
            };
            (
                Check::failed("websocket isolation", self.events_phase, message.clone()),
                Some((message, failure)),
            )
        } else if !saw_run_ids {
            (
                Check::skipped(
                    "websocket isolation",
                    format!("the events carry no `{RUN_FIELD}` field: isolation cannot be judged"),
                ),
                None,
            )
        } else {
            (
                Check::passed(
                    "websocket isolation",
                    self.events_phase,
                    format!("0 misrouted among {} events", self.stats.events_received),
                ),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&values);
        assert_eq!(
            (p.p50_ms, p.p95_ms, p.p99_ms, p.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(&[7.0]).p50_ms, 7.0);
        assert_eq!(Percentiles::of(&[]).count, 0);
    }

    #[test]
    fn failures_read_specifically() {
        let timeout = WsFailure::Timeout {
            waiting_for: "agent_done".into(),
            after_ms: 10_000.0,
            received: vec!["agent_started".into(), "agent_completed".into()],
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 10.0s waiting for event `agent_done`; received: agent_started, agent_completed"
        );
        let handshake = WsFailure::Handshake {
            url: "ws://h/ws".into(),
            status: 401,
            reason: "Unauthorized".into(),
            body_line: "{\"error\": \"unauthorized\"}".into(),
        };
        assert!(handshake.to_string().contains("HTTP 401 Unauthorized"));
        assert!(WsFailure::Refused {
            url: "ws://h".into()
        }
        .to_string()
        .contains("connection refused"));
    }
}
