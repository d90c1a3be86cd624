//! WebSocket checks (`ws-check`): token, connect, expected events, many users without cross-talk.
//!
//! CONTRACT (the gate and `monitor` call these; the signatures are relied upon):
//!
//! - [`WsPlan`]: everything one check needs, already rendered (no templates left). `token` is a
//!   secret: its `Debug` is redacted and it never appears in a result or an error message.
//! - [`plan_from_config`]`(config, endpoints, overrides) -> anyhow::Result<WsPlan>`: renders the
//!   `[ws_check]` templates against resolved endpoints (name → URL); `overrides` are the flags.
//! - [`recorded_endpoints`]`(config)`: the endpoints of the run `docker-up` recorded (or the
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::{endpoints, state, ui, Ctx};

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
    })
}

/// The endpoints to render `[ws_check]` against, when no target gave any: those `docker-up`
/// recorded, else the configured `[endpoints]` when they resolve without a stack (literal URLs
/// or `${VAR}`s).
pub fn recorded_endpoints(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    let store = state::Store::of(config);
    if let Some(record) = store.read()?.chosen(None) {
        let stack = &record.stack;
        return Ok(stack.endpoints.clone());
    }
    endpoints::resolve_all(&config.endpoints, &endpoints::NoPorts).map_err(|e| {
        Failure::config(format!(
            "no run is recorded in {} ({e})",
            store.path().display()
        ))
        .with_hint("run `cargo xtask docker-up` first, or pass --url (and --token-url or --token)")
        .into()
    })
}

/// The endpoints of the recorded run as the engine publishes them now (a restarted container of
/// an `--isolated` run has new ports), or as recorded when the engine does not answer.
pub async fn current_endpoints(config: &Config) -> anyhow::Result<BTreeMap<String, String>> {
    let Some(stack) = state::Store::of(config)
        .read()?
        .chosen(None)
        .map(|r| r.stack.clone())
    else {
        return recorded_endpoints(config);
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

fn ms(duration: Duration) -> f64 {
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
    /// Another connect error (name resolution, reset, wss without TLS).
    Connect { url: String, detail: String },
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

type Socket = WebSocketStream<TcpStream>;

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

async fn obtain_token(plan: &WsPlan, user_id: &str) -> Result<Option<String>, WsFailure> {
    if let Some(token) = &plan.token {
        return Ok(Some(token.clone()));
    }
    let Some(url) = &plan.token_url else {
        return Ok(None);
    };
    let body = plan.token_body.replace("{user}", user_id);
    let fail = |detail: String| WsFailure::Token {
        url: scrub(url, &[]),
        detail,
    };
    let response = crate::http::post_json(url, &body, plan.connect_timeout)
        .await
        .map_err(|e| fail(error_chain(&e)))?;
    if !response.is_success() {
        return Err(fail(format!(
            "HTTP {}: {}",
            response.status,
            truncate(response.first_line(), 200)
        )));
    }
    let json: serde_json::Value = serde_json::from_str(&response.body)
        .map_err(|e| fail(format!("the answer is not JSON ({e})")))?;
    match lookup(&json, &plan.token_field).and_then(|v| v.as_str()) {
        Some(token) if !token.is_empty() => Ok(Some(token.to_owned())),
        _ => Err(fail(format!(
            "the answer has no string field `{}`",
            plan.token_field
        ))),
    }
}

fn error_chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

async fn connect(plan: &WsPlan, token: Option<&str>) -> Result<Socket, WsFailure> {
    let shown = scrub(&plan.url, &token.into_iter().collect::<Vec<_>>());
    let fail = |detail: String| WsFailure::Connect {
        url: shown.clone(),
        detail,
    };
    if plan.url.starts_with("wss://") {
        return Err(fail(
            "wss:// needs TLS, which this build of the harness does not include".to_owned(),
        ));
    }
    let mut request = plan
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| fail(format!("not a valid websocket URL ({e})")))?;
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| fail("the token is not a valid header value".to_owned()))?;
        request.headers_mut().insert("authorization", value);
    }
    let host = request.uri().host().unwrap_or("").to_owned();
    let port = request.uri().port_u16().unwrap_or(80);
    let started = Instant::now();
    let attempt = async {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let stream = TcpStream::connect((host, port)).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                WsFailure::Refused { url: shown.clone() }
            } else {
                fail(e.to_string())
            }
        })?;
        let _ = stream.set_nodelay(true);
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _response)) => Ok(socket),
            Err(tungstenite::Error::Http(response)) => {
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let secrets: Vec<&str> = token.into_iter().collect();
                Err(WsFailure::Handshake {
                    url: shown.clone(),
                    status: response.status().as_u16(),
                    reason: response
                        .status()
                        .canonical_reason()
                        .unwrap_or("")
                        .to_owned(),
                    body_line: scrub(
                        truncate(body.lines().next().unwrap_or("").trim(), 200),
                        &secrets,
                    ),
                })
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                ) =>
            {
                // What a proxy in front of a stopped or starting service (docker-proxy) does.
                Err(fail(format!(
                    "the connection was closed during the handshake ({e}): is the service starting or stopping?"
                )))
            }
            Err(e) => Err(fail(format!("handshake failed: {e}"))),
        }
    };
    match tokio::time::timeout(plan.connect_timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(WsFailure::ConnectTimeout {
            url: shown.clone(),
            after_ms: ms(started.elapsed()),
        }),
    }
}

/// Sends one message and reads until its expected events arrived (or something fails).
async fn exchange(
    plan: &WsPlan,
    user: usize,
    message: usize,
    user_id: &str,
    socket: &mut Socket,
    outcome: &mut UserOutcome,
    observer: &Option<UnboundedSender<EventSeen>>,
) -> Result<(), WsFailure> {
    let text = plan.send.replace("{user}", user_id);
    let sent_at = Instant::now();
    socket
        .send(Message::text(text))
        .await
        .map_err(|e| WsFailure::Io {
            detail: format!("sending message {} failed: {e}", message + 1),
        })?;
    outcome.messages_sent += 1;
    let deadline = tokio::time::Instant::from_std(sent_at + plan.timeout);
    let mut next = 0usize;
    let mut received: Vec<String> = Vec::new();
    let mut first: Option<Duration> = None;
    let mut current_run: Option<String> = None;
    while next < plan.expect.len() {
        let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => {
                return Err(WsFailure::Timeout {
                    waiting_for: plan.expect[next].clone(),
                    after_ms: ms(sent_at.elapsed()),
                    received,
                })
            }
            Ok(None) => {
                return Err(WsFailure::Closed {
                    code: None,
                    reason: "the connection ended".to_owned(),
                    waiting_for: Some(plan.expect[next].clone()),
                })
            }
            Ok(Some(Err(e))) => {
                return Err(WsFailure::Io {
                    detail: format!("reading events failed: {e}"),
                })
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let latency = sent_at.elapsed();
        let text = match frame {
            Message::Text(text) => text.to_string(),
            Message::Binary(bytes) => {
                return Err(WsFailure::Malformed {
                    detail: format!("a binary frame of {} bytes, not JSON text", bytes.len()),
                    frame: String::new(),
                })
            }
            Message::Close(frame) => {
                return Err(WsFailure::Closed {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    waiting_for: Some(plan.expect[next].clone()),
                })
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| WsFailure::Malformed {
                detail: format!("not JSON: {e}"),
                frame: truncate(&text, 120).to_owned(),
            })?;
        let name = match lookup(&json, &plan.event_field) {
            Some(serde_json::Value::String(name)) => name.clone(),
            Some(other) => other.to_string(),
            None => "<none>".to_owned(),
        };
        let run_id = json
            .get(RUN_FIELD)
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        first.get_or_insert(latency);
        received.push(name.clone());
        let mut seen = EventSeen {
            user,
            message,
            name: name.clone(),
            latency_ms: ms(latency),
            expected: false,
            run_id: run_id.clone(),
        };
        if name == "error" {
            if let Some(tx) = observer {
                let _ = tx.send(seen.clone());
            }
            outcome.events.push(seen);
            return Err(WsFailure::ErrorEvent {
                event: truncate(&text, 300).to_owned(),
            });
        }
        // Isolation: the first run id a message brings is the run it started; an event of a run
        // this user did not start is misrouted and never counts (a run claimed by two users is
        // caught when the users are compared).
        let mut misrouted = false;
        if let Some(run) = &run_id {
            outcome.saw_run_ids = true;
            if outcome.own_runs.contains(run) {
                if current_run.as_ref() != Some(run) {
                    // An event of an earlier run of this user: recorded, not counted.
                    if let Some(tx) = observer {
                        let _ = tx.send(seen.clone());
                    }
                    outcome.events.push(seen);
                    continue;
                }
            } else if current_run.is_none() {
                current_run = Some(run.clone());
                outcome.own_runs.push(run.clone());
            } else {
                outcome.foreign.push((name.clone(), run.clone()));
                misrouted = true;
            }
        }
        if !misrouted && plan.expect.contains(&name) {
            if name == plan.expect[next] {
                next += 1;
                seen.expected = true;
            } else {
                if let Some(tx) = observer {
                    let _ = tx.send(seen.clone());
                }
                outcome.events.push(seen);
                return Err(WsFailure::WrongOrder {
                    expected: plan.expect[next].clone(),
                    got: name,
                    received,
                });
            }
        }
        if let Some(tx) = observer {
            let _ = tx.send(seen.clone());
        }
        outcome.events.push(seen);
        if next == plan.expect.len() {
            outcome.first_latencies.push(first.unwrap_or(latency));
            outcome.last_latencies.push(latency);
            outcome.messages_completed += 1;
        }
    }
    Ok(())
}

/// A proper close handshake: send Close(1000), read until the server's Close and the end.
async fn close(socket: &mut Socket, wait: Duration) -> Result<(), WsFailure> {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let handshake = async {
        if socket.close(Some(frame)).await.is_err() {
            return Ok(());
        }
        let mut reply: Option<CloseFrame> = None;
        while let Some(next) = socket.next().await {
            match next {
                Ok(Message::Close(frame)) => reply = frame,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        match reply {
            Some(frame)
                if !matches!(
                    frame.code,
                    CloseCode::Normal | CloseCode::Away | CloseCode::Status
                ) =>
            {
                Err(WsFailure::Closed {
                    code: Some(u16::from(frame.code)),
                    reason: frame.reason.to_string(),
                    waiting_for: None,
                })
            }
            _ => Ok(()),
        }
    };
    tokio::time::timeout(wait, handshake)
        .await
        .unwrap_or(Ok(()))
}

fn summarise(plan: &WsPlan, outcomes: Vec<UserOutcome>, wall: Duration) -> WsResult {
    let users = outcomes.len();
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let connect_phase = outcomes
        .iter()
        .map(|o| o.connect_phase)
        .max()
        .unwrap_or_default();
    let events_phase = outcomes
        .iter()
        .map(|o| o.events_phase)
        .max()
        .unwrap_or_default();

    // Who owns which run: a run claimed by two users is misrouted for both.
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
    let stats = Stats {
        connections_attempted: users,
        connections_succeeded: connected,
        success_rate_percent: round_ms(connected as f64 * 100.0 / users.max(1) as f64),
        events_received: outcomes.iter().map(|o| o.events.len()).sum(),
        events_misrouted: misrouted.len(),
        messages_completed: outcomes.iter().map(|o| o.messages_completed).sum(),
        messages_sent: outcomes.iter().map(|o| o.messages_sent).sum(),
        connect: Percentiles::of(&connect_times),
        first_event: Percentiles::of(&all(|o| &o.first_latencies)),
        last_event: Percentiles::of(&all(|o| &o.last_latencies)),
        wall_ms: ms(wall),
    };

    let failures: Vec<(usize, &WsFailure)> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(user, o)| o.failure.as_ref().map(|f| (user, f)))
        .collect();
    let prefix = |user: usize| {
        if users > 1 {
            format!("user {user}: ")
        } else {
            String::new()
        }
    };
    let connect_failures: Vec<&(usize, &WsFailure)> =
        failures.iter().filter(|(_, f)| f.is_connect()).collect();
    let event_failures: Vec<&(usize, &WsFailure)> =
        failures.iter().filter(|(_, f)| !f.is_connect()).collect();

    let mut checks = Vec::new();
    let mut failure: Option<(String, WsFailure)> = None;
    let connect_check = if connect_failures.is_empty() && connected == users {
        Check::passed(
            "websocket connect",
            connect_phase,
            if users == 1 {
                format!("connected in {}", ui::duration(outcomes[0].connect_time))
            } else {
                format!(
                    "{connected}/{users} connected (100%), connect {}",
                    stats.connect.line()
                )
            },
        )
    } else {
        let (user, first) = connect_failures
            .first()
            .map(|(u, f)| (*u, (*f).clone()))
            .or_else(|| failures.first().map(|(u, f)| (*u, (*f).clone())))
            .unwrap_or((0, WsFailure::Deadline { after_ms: 0.0 }));
        let message = if users == 1 {
            format!("websocket connect: {first}")
        } else {
            format!(
                "websocket connect: {connected}/{users} users connected ({:.1}%); {}{first}",
                stats.success_rate_percent,
                prefix(user)
            )
        };
        failure = Some((message.clone(), first));
        Check::failed("websocket connect", connect_phase, message)
    };
    checks.push(connect_check);

    if connected == 0 {
        checks.push(Check::skipped(
            "websocket events",
            "no connection was established",
        ));
    } else {
        let expected_messages = connected * plan.messages;
        let ok = event_failures.is_empty() && stats.messages_completed >= expected_messages;
        if ok {
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
            checks.push(Check::passed("websocket events", events_phase, detail));
        } else {
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
                    prefix(user)
                )
            };
            if failure.is_none() {
                failure = Some((message.clone(), first));
            }
            checks.push(Check::failed("websocket events", events_phase, message));
        }
    }

    if users > 1 {
        let saw_run_ids = outcomes.iter().any(|o| o.saw_run_ids);
        if !misrouted.is_empty() {
            let first = &misrouted[0];
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
            if failure.is_none() {
                failure = Some((
                    message.clone(),
                    WsFailure::Io {
                        detail: message.clone(),
                    },
                ));
            }
            checks.push(Check::failed("websocket isolation", events_phase, message));
        } else if !saw_run_ids {
            checks.push(Check::skipped(
                "websocket isolation",
                format!("the events carry no `{RUN_FIELD}` field: isolation cannot be judged"),
            ));
        } else {
            checks.push(Check::passed(
                "websocket isolation",
                events_phase,
                format!("0 misrouted among {} events", stats.events_received),
            ));
        }
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

// ---------------------------------------------------------------------------------------------
// Helpers.

/// The value at a dotted path (`type`, `event.name`) of a JSON object.
pub fn lookup<'a>(json: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(value) = json.get(path) {
        return Some(value);
    }
    path.split('.').try_fold(json, |value, key| value.get(key))
}

/// Removes secrets from text: each given token, and the value of any `token=`-like query
/// parameter (`token`, `access_token`, `auth`, `key`, ...).
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() {
            out = out.replace(secret, "***");
        }
    }
    let mut result = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(position) = rest.find(['?', '&']) {
        let (before, after) = rest.split_at(position + 1);
        result.push_str(before);
        let end = after.find(['&', ' ', '#', '\n']).unwrap_or(after.len());
        let pair = &after[..end];
        match pair.split_once('=') {
            Some((key, value)) if is_secret_key(key) && !value.is_empty() => {
                result.push_str(key);
                result.push_str("=***");
            }
            _ => result.push_str(pair),
        }
        rest = &after[end..];
    }
    result.push_str(rest);
    result
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "auth", "key", "secret", "password", "jwt", "sig"]
        .iter()
        .any(|word| key.contains(word))
}

fn scrub_failure(failure: WsFailure, secrets: &[String]) -> WsFailure {
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    match failure {
        WsFailure::ErrorEvent { event } => WsFailure::ErrorEvent {
            event: scrub(&event, &secrets),
        },
        WsFailure::Malformed { detail, frame } => WsFailure::Malformed {
            detail,
            frame: scrub(&frame, &secrets),
        },
        WsFailure::Closed {
            code,
            reason,
            waiting_for,
        } => WsFailure::Closed {
            code,
            reason: scrub(&reason, &secrets),
            waiting_for,
        },
        other => other,
    }
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

// ---------------------------------------------------------------------------------------------
// The command.

impl crate::flags::WsCheck {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let overrides = Overrides {
            url: self.url.clone(),
            token_url: self.token_url.clone(),
            token: self.token.clone(),
            users: self.users,
            messages: self.messages,
        };
        let endpoints = if self.url.is_some() {
            // Any endpoint will do; the recorded ones only fill a configured token_url.
            current_endpoints(&config).await.unwrap_or_default()
        } else {
            current_endpoints(&config).await?
        };
        let plan = plan_from_config(&config, &endpoints, &overrides)
            .context("cannot plan the websocket check")?;
        let secrets: Vec<&str> = plan.token.as_deref().into_iter().collect();
        ui::say(format!(
            "ws-check {} ({} user{}, {} message{} each), expecting {}",
            scrub(&plan.url, &secrets),
            plan.users,
            if plan.users == 1 { "" } else { "s" },
            plan.messages,
            if plan.messages == 1 { "" } else { "s" },
            plan.expect.join(" → ")
        ));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<EventSeen>();
        let one_user = plan.users == 1;
        let printer = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if one_user {
                    let mark = if event.expected { "✓" } else { "·" };
                    ui::say(format!(
                        "  {mark} {:<20} {:>8.1} ms",
                        event.name, event.latency_ms
                    ));
                }
            }
        });
        let result = run_observed(&plan, Some(sender)).await;
        let _ = printer.await;

        eprint!("{}", crate::report::table(&result.checks));
        if plan.users > 1 {
            let s = &result.stats;
            eprint!(
                "{}",
                ui::table(
                    &["figure", "value"],
                    &[
                        vec![
                            "connections".into(),
                            format!(
                                "{}/{} succeeded ({:.1}%)",
                                s.connections_succeeded,
                                s.connections_attempted,
                                s.success_rate_percent
                            )
                        ],
                        vec![
                            "messages".into(),
                            format!("{}/{} complete", s.messages_completed, s.messages_sent)
                        ],
                        vec!["events received".into(), s.events_received.to_string()],
                        vec!["events misrouted".into(), s.events_misrouted.to_string()],
                        vec!["connect".into(), s.connect.line()],
                        vec!["first event".into(), s.first_event.line()],
                        vec!["last event".into(), s.last_event.line()],
                        vec![
                            "wall time".into(),
                            ui::duration(Duration::from_secs_f64(s.wall_ms / 1000.0))
                        ],
                    ]
                )
            );
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&result)?);
        }
        if result.passed {
            ui::say("ws-check passed");
        }
        result.into_outcome()?;
        Ok(())
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
    fn lookup_follows_dotted_paths() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"type":"a","event":{"name":"b"},"x.y":"c"}"#).unwrap();
        assert_eq!(lookup(&json, "type").unwrap(), "a");
        assert_eq!(lookup(&json, "event.name").unwrap(), "b");
        assert_eq!(lookup(&json, "x.y").unwrap(), "c");
        assert!(lookup(&json, "event.missing").is_none());
    }

    #[test]
    fn scrub_hides_tokens_and_token_parameters() {
        assert_eq!(
            scrub("ws://h/ws?token=abc.def&x=1", &[]),
            "ws://h/ws?token=***&x=1"
        );
        assert_eq!(
            scrub("ws://h/ws?x=1&access_token=zz", &[]),
            "ws://h/ws?x=1&access_token=***"
        );
        assert_eq!(
            scrub("bad token s3cr3t here", &["s3cr3t"]),
            "bad token *** here"
        );
        assert_eq!(scrub("ws://h/ws", &[]), "ws://h/ws");
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
