//! WebSocket checks (`ws-check`): token, connect, expected events, many users without cross-talk.
//! This file holds the plan (what one check needs, rendered from `[ws_check]`), the result, and
//! the run: every user connects (a bounded ramp), then sends, under one overall deadline. The
//! steps of one user are in [connect], the figures and failures in [summary], secret scrubbing
//! in [scrub]. Nothing here prints: the `ws-check` command is [crate::commands::ws_check].
//!
//! Not here: the `monitor` command ([crate::monitor]), the HTTP client ([crate::http]), what TLS
//! trusts ([crate::tls]).
//!
//! CONTRACT (the gate and `monitor` call these; the signatures are relied upon):
//!
//! - [`WsPlan`]: everything one check needs, already rendered (no templates left). `token` is a
//!   secret: its `Debug` is redacted and it never appears in a result or an error message.
//! - [`plan_from_config`]`(config, endpoints, overrides) -> anyhow::Result<WsPlan>`: renders the
//!   `[ws_check]` templates against resolved endpoints (name → URL); `overrides` are the flags.
//! - [`recorded_endpoints`]`(config, run)`: the endpoints of the stack named with `--run ID`, else
//!   of the newest kept stack (or the
//!   configured endpoints when they need no published port); a missing run is an error with the
//!   hint `cargo xtask docker-up`.
//! - [`run`]`(plan) -> WsResult` and [`run_observed`]`(plan, sender)`: run the check; never print.
//!   [`WsResult::checks`] holds "websocket connect", "websocket events" and, for more than one
//!   user, "websocket isolation", each with its duration; [`WsResult::failure`] is the first
//!   failure as one specific message (refused, handshake status, timeout naming the event, wrong
//!   order, malformed JSON, unexpected close code). Everything is serde-serialisable (`--json`).
//!
//! Isolation is judged by the `run_id` field of the events: a user owns the run ids of the first
//! expected event of each message it sent; any other run id it receives is misrouted, and a run id
//! claimed by two users is misrouted too.

mod connect;
mod summary;
mod scrub;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::Config;
use crate::error::Failure;
use crate::report::Check;
use crate::{endpoints, state};

pub use connect::lookup;
pub use scrub::scrub;
pub use summary::{Misrouted, Percentiles, Stats, WsFailure};

use connect::{close, connect, exchange, obtain_token};
use scrub::scrub_failure;
use summary::{ms, summarise};

/// The field of an event that ties it to a run (used for the isolation check).
pub const RUN_FIELD: &str = "run_id";
/// Connection attempts (token request, TCP connect, handshake) in flight at once.
const RAMP: usize = 64;
/// How long a proper close handshake may take after a passing check.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// After a failure, the close is attempted but not waited for long: failures end promptly.
const CLOSE_WAIT_AFTER_FAILURE: Duration = Duration::from_millis(200);

/// One check, fully rendered.
#[derive(Clone)]
pub struct WsPlan {
    /// `ws://` URL of the endpoint.
    pub url: String,
    /// URL a token is POSTed for, one per user; none when absent (or when `token` is given).
    pub token_url: Option<String>,
    /// A fixed token for every user (never printed).
    pub token: Option<String>,
    /// JSON body of the token request; `{user}` is replaced by the user's id.
    pub token_body: String,
    /// Field (dotted path) of the token response that holds the token.
    pub token_field: String,
    /// Message sent, `{user}` replaced by the user's id.
    pub send: String,
    /// Events expected after each message, in order.
    pub expect: Vec<String>,
    /// Field (dotted path, e.g. `type` or `event.name`) naming an event.
    pub event_field: String,
    /// Deadline for the expected events of one message, from its send.
    pub timeout: Duration,
    /// Deadline for the TCP connect and the handshake together.
    pub connect_timeout: Duration,
    pub users: usize,
    pub messages: usize,
    /// What `wss://` and an `https://` token URL trust (the platform's roots and
    /// `targets.staging.ca_file`).
    pub tls: crate::tls::Tls,
}

impl fmt::Debug for WsPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsPlan")
            .field("url", &scrub(&self.url, &[]))
            .field("token_url", &self.token_url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("send", &self.send)
            .field("expect", &self.expect)
            .field("event_field", &self.event_field)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("users", &self.users)
            .field("messages", &self.messages)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// What the command line (or a caller) changes in the configured check.
#[derive(Debug, Clone)]
pub struct Overrides {
    pub url: Option<String>,
    pub token_url: Option<String>,
    pub token: Option<String>,
    pub users: usize,
    pub messages: usize,
}

impl Default for Overrides {
    fn default() -> Self {
        Overrides {
            url: None,
            token_url: None,
            token: None,
            users: 1,
            messages: 1,
        }
    }
}

/// Renders `[ws_check]` against `endpoints`; the overrides win over the file.
pub fn plan_from_config(
    config: &Config,
    endpoints: &BTreeMap<String, String>,
    overrides: &Overrides,
) -> anyhow::Result<WsPlan> {
    let cfg = config.ws_check.as_ref().ok_or_else(|| {
        Failure::config(format!(
            "{}: no [ws_check] table: nothing to check",
            config.path.display()
        ))
        .with_hint("add [ws_check] with url, send and expect (see WS.md)")
    })?;
    if overrides.users == 0 || overrides.messages == 0 {
        return Err(Failure::config("--users and --messages must be at least 1").into());
    }
    let render = |key: &str, template: &str| -> anyhow::Result<String> {
        endpoints::render(template, endpoints).map_err(|e| {
            let hint = if endpoints.is_empty() {
                "no run is recorded: run `cargo xtask docker-up`, or pass --url (and --token-url or --token)"
            } else {
                "pass --url (and --token-url or --token) to check another endpoint"
            };
            Failure::config(format!("[ws_check] {key} `{template}`: {e}"))
                .with_hint(hint)
                .into()
        })
    };
    let url = match &overrides.url {
        Some(url) => url.clone(),
        None => render("url", &cfg.url)?,
    };
    let token_url = match (&overrides.token, &overrides.token_url, &cfg.token_url) {
        (Some(_), _, _) => None,
        (None, Some(flag), _) => Some(flag.clone()),
        (None, None, Some(template)) => Some(render("token_url", template)?),
        (None, None, None) => None,
    };
    if !(url.starts_with("ws://") || url.starts_with("wss://")) {
        return Err(Failure::config(format!(
            "websocket url `{}` must start with ws:// or wss://",
            scrub(&url, &[])
        ))
        .into());
    }
    Ok(WsPlan {
        url,
        token_url,
        token: overrides.token.clone(),
        token_body: cfg.token_body.clone(),
        token_field: cfg.token_field.clone(),
        send: cfg.send.clone(),
        expect: cfg.expect.clone(),
        event_field: cfg.event_field.clone(),
        timeout: cfg.timeout_s.duration(),
        connect_timeout: cfg.connect_timeout_s.duration(),
        users: overrides.users,
        messages: overrides.messages,
        tls: config.tls(),
    })
}

/// The endpoints to render `[ws_check]` against, when no target gave any: those recorded for
/// the stack `run` names, else for the newest kept stack ([`crate::stack::choose`]), else the
/// configured `[endpoints]` when they resolve without a stack (literal URLs or `${VAR}`s).
pub fn recorded_endpoints(
    config: &Config,
    run: Option<&str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    if let Some(chosen) = crate::stack::choose(config, run)? {
        return Ok(chosen.record.stack.endpoints);
    }
    endpoints::resolve_all(&config.endpoints, &endpoints::NoPorts).map_err(|e| {
        // The same error (and exit code) as `health` and `monitor` without a recorded run.
        crate::stack::no_recorded_run(config)
            .with_hint(format!(
                "run `cargo xtask docker-up` first, or pass --url (and --token-url or --token); \
                 the endpoints need published ports ({e})"
            ))
            .into()
    })
}

/// The endpoints of the chosen stack (see [`recorded_endpoints`]) as the engine publishes them
/// now (a restarted container of an `--isolated` run has new ports), or as recorded when the
/// engine does not answer.
pub async fn current_endpoints(
    config: &Config,
    run: Option<&str>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(stack) = crate::stack::choose(config, run)?.map(|c| c.record.stack) else {
        return recorded_endpoints(config, run);
    };
    let recorded = stack.endpoints.clone();
    let deadline = config.engine.respond_within_s.duration();
    // health_of itself falls back to the recorded endpoints for what is not published now.
    match tokio::time::timeout(deadline, crate::stack::health_of(config, Some(stack))).await {
        Ok(Ok(report)) => Ok(report.endpoints),
        _ => Ok(recorded),
    }
}

// ---------------------------------------------------------------------------------------------
// Results.

/// One event as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct EventSeen {
    /// 0-based user index.
    pub user: usize,
    /// 0-based message index of that user.
    pub message: usize,
    /// The value of `event_field`, or `<none>` when the event has no such field.
    pub name: String,
    /// Milliseconds since the message was sent.
    pub latency_ms: f64,
    /// One of the expected events, in its place.
    pub expected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Everything a check found.
#[derive(Debug, Clone, Serialize)]
pub struct WsResult {
    pub passed: bool,
    /// The URL, with any token scrubbed.
    pub url: String,
    pub users: usize,
    pub messages: usize,
    pub checks: Vec<Check>,
    /// The first failure as one message, when the check failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// Its structured form.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_detail: Option<WsFailure>,
    /// Every event of user 0 (all events when there is one user).
    pub events: Vec<EventSeen>,
    pub misrouted: Vec<Misrouted>,
    pub stats: Stats,
}

impl WsResult {
    /// The failure as an error for a command (exit 1), or `Ok` when everything passed.
    pub fn into_outcome(self) -> Result<(), Failure> {
        match self.failure {
            None => Ok(()),
            Some(message) => Err(Failure::check(message)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running.

/// Runs the check without reporting events as they arrive.
pub async fn run(plan: &WsPlan) -> WsResult {
    run_observed(plan, None).await
}

/// Runs the check; every event of every user is also sent to `events` as it arrives.
pub async fn run_observed(plan: &WsPlan, events: Option<UnboundedSender<EventSeen>>) -> WsResult {
    let started = Instant::now();
    let plan = Arc::new(plan.clone());
    let users = plan.users.max(1);
    let run_tag = state::new_run_id();
    let ramp = Arc::new(tokio::sync::Semaphore::new(RAMP));
    let barrier = Arc::new(tokio::sync::Barrier::new(users));
    // Each user: ramp (at most users/RAMP rounds of connects), then its messages; plus slack.
    let ramp_rounds = users.div_ceil(RAMP) as u32;
    let overall = plan.connect_timeout * (ramp_rounds + 1)
        + plan.timeout * plan.messages as u32
        + Duration::from_secs(2);

    let mut tasks = tokio::task::JoinSet::new();
    for user in 0..users {
        let plan = Arc::clone(&plan);
        let ramp = Arc::clone(&ramp);
        let barrier = Arc::clone(&barrier);
        let events = events.clone();
        let user_id = format!("xtask-ws-{run_tag}-{user}");
        tasks.spawn(async move {
            let outcome = run_user(&plan, user, &user_id, &ramp, &barrier, events).await;
            (user, outcome)
        });
    }
    let mut outcomes: Vec<Option<UserOutcome>> = (0..users).map(|_| None).collect();
    let deadline = tokio::time::sleep(overall);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok((user, outcome))) => outcomes[user] = Some(outcome),
                Some(Err(_panicked)) => {}
                None => break,
            },
            () = &mut deadline => {
                tasks.abort_all();
                break;
            }
        }
    }
    let outcomes: Vec<UserOutcome> = outcomes
        .into_iter()
        .map(|outcome| {
            outcome.unwrap_or_else(|| UserOutcome {
                failure: Some(WsFailure::Deadline {
                    after_ms: ms(overall),
                }),
                ..UserOutcome::default()
            })
        })
        .collect();
    summarise(&plan, outcomes, started.elapsed())
}

/// What one user went through: its connection, its events and figures, its failure.
#[derive(Debug, Default)]
struct UserOutcome {
    connected: bool,
    connect_time: Duration,
    /// Time spent on the token and the connection.
    connect_phase: Duration,
    /// Time spent from the first send to the end.
    events_phase: Duration,
    failure: Option<WsFailure>,
    events: Vec<EventSeen>,
    /// Per message: (first event latency, last expected event latency) when complete.
    first_latencies: Vec<Duration>,
    last_latencies: Vec<Duration>,
    messages_sent: usize,
    messages_completed: usize,
    /// Run ids this user started.
    own_runs: Vec<String>,
    /// (event, run id) of events carrying a run id this user did not start.
    foreign: Vec<(String, String)>,
    saw_run_ids: bool,
}

async fn run_user(
    plan: &WsPlan,
    user: usize,
    user_id: &str,
    ramp: &tokio::sync::Semaphore,
    barrier: &tokio::sync::Barrier,
    events: Option<UnboundedSender<EventSeen>>,
) -> UserOutcome {
    let mut outcome = UserOutcome::default();
    let connect_started = Instant::now();
    let connected = {
        let _permit = ramp.acquire().await;
        match obtain_token(plan, user_id).await {
            Err(failure) => Err(failure),
            Ok(token) => {
                let started = Instant::now();
                let result = connect(plan, token.as_deref()).await;
                outcome.connect_time = started.elapsed();
                result.map(|socket| (socket, token))
            }
        }
    };
    outcome.connect_phase = connect_started.elapsed();
    // Everyone connects before anyone sends, so that all users are connected at once.
    if plan.users > 1 {
        barrier.wait().await;
    }
    let (mut socket, token) = match connected {
        Ok(pair) => pair,
        Err(failure) => {
            outcome.failure = Some(failure);
            return outcome;
        }
    };
    outcome.connected = true;
    let secrets: Vec<String> = token.into_iter().chain(plan.token.clone()).collect();
    let events_started = Instant::now();
    for message in 0..plan.messages {
        if let Err(failure) = exchange(
            plan,
            user,
            message,
            user_id,
            &mut socket,
            &mut outcome,
            &events,
        )
        .await
        {
            outcome.failure = Some(scrub_failure(failure, &secrets));
            break;
        }
    }
    let close_wait = if outcome.failure.is_some() {
        CLOSE_WAIT_AFTER_FAILURE
    } else {
        CLOSE_WAIT
    };
    let closed = close(&mut socket, close_wait).await;
    if outcome.failure.is_none() {
        if let Err(failure) = closed {
            outcome.failure = Some(failure);
        }
    }
    outcome.events_phase = events_started.elapsed();
    outcome
}
