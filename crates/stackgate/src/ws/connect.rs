//! One user's steps against the server: its token, the connection (TCP, TLS for `wss://` with
//! the plan's trust, and the WebSocket handshake, all within `connect_timeout`), one message and
//! its expected events, and the close handshake. Each step fails with a specific [`WsFailure`].
//!
//! Not here: running many users at once ([super::run_observed]), judging the whole check
//! ([super::summary]).

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::summary::{ms, WsFailure};
use super::{scrub, EventSeen, UserOutcome, WsPlan, RUN_FIELD};

pub(super) type Socket = WebSocketStream<Box<dyn Transport>>;

/// What a WebSocket runs over: a TCP stream (`ws://`) or a TLS session on one (`wss://`).
pub(super) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

pub(super) async fn obtain_token(
    plan: &WsPlan,
    user_id: &str,
) -> Result<Option<String>, WsFailure> {
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
    let response = crate::http::post_json(url, &body, plan.connect_timeout, &plan.tls)
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

pub(super) async fn connect(plan: &WsPlan, token: Option<&str>) -> Result<Socket, WsFailure> {
    let shown = scrub(&plan.url, &token.into_iter().collect::<Vec<_>>());
    let fail = |detail: String| WsFailure::Connect {
        url: shown.clone(),
        detail,
    };
    let secure = plan.url.starts_with("wss://");
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
    let port = request
        .uri()
        .port_u16()
        .unwrap_or(if secure { 443 } else { 80 });
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
        let stream: Box<dyn Transport> = if secure {
            let session = plan.tls.connect(stream, host).await.map_err(|failure| {
                if failure.is_certificate() {
                    WsFailure::Certificate {
                        url: shown.clone(),
                        problem: failure.to_string(),
                    }
                } else {
                    fail(failure.to_string())
                }
            })?;
            Box::new(session)
        } else {
            Box::new(stream)
        };
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
pub(super) async fn exchange(
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
        let waiting_for = &plan.expect[next];
        let Some(text) = next_text(socket, deadline, waiting_for, sent_at, &received).await? else {
            continue;
        };
        let latency = sent_at.elapsed();
        let (name, run_id) = event_of(plan, &text)?;
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
            record(observer, outcome, seen);
            return Err(WsFailure::ErrorEvent {
                event: truncate(&text, 300).to_owned(),
            });
        }
        let misrouted = match claim(outcome, &mut current_run, run_id.as_ref(), &name) {
            Claim::Earlier => {
                // An event of an earlier run of this user: recorded, not counted.
                record(observer, outcome, seen);
                continue;
            }
            Claim::Misrouted => true,
            Claim::Counts => false,
        };
        if !misrouted && plan.expect.contains(&name) {
            if name == plan.expect[next] {
                next += 1;
                seen.expected = true;
            } else {
                record(observer, outcome, seen);
                return Err(WsFailure::WrongOrder {
                    expected: plan.expect[next].clone(),
                    got: name,
                    received,
                });
            }
        }
        record(observer, outcome, seen);
        if next == plan.expect.len() {
            outcome.first_latencies.push(first.unwrap_or(latency));
            outcome.last_latencies.push(latency);
            outcome.messages_completed += 1;
        }
    }
    Ok(())
}

/// The next text frame before the deadline; `None` for a control frame (ping, pong), a
/// failure for the end, a close, a binary frame or a read error.
async fn next_text(
    socket: &mut Socket,
    deadline: tokio::time::Instant,
    waiting_for: &str,
    sent_at: Instant,
    received: &[String],
) -> Result<Option<String>, WsFailure> {
    let frame = match tokio::time::timeout_at(deadline, socket.next()).await {
        Err(_) => {
            return Err(WsFailure::Timeout {
                waiting_for: waiting_for.to_owned(),
                after_ms: ms(sent_at.elapsed()),
                received: received.to_vec(),
            })
        }
        Ok(None) => {
            return Err(WsFailure::Closed {
                code: None,
                reason: "the connection ended".to_owned(),
                waiting_for: Some(waiting_for.to_owned()),
            })
        }
        Ok(Some(Err(e))) => {
            return Err(WsFailure::Io {
                detail: format!("reading events failed: {e}"),
            })
        }
        Ok(Some(Ok(frame))) => frame,
    };
    match frame {
        Message::Text(text) => Ok(Some(text.to_string())),
        Message::Binary(bytes) => Err(WsFailure::Malformed {
            detail: format!("a binary frame of {} bytes, not JSON text", bytes.len()),
            frame: String::new(),
        }),
        Message::Close(frame) => Err(WsFailure::Closed {
            code: frame.as_ref().map(|f| u16::from(f.code)),
            reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
            waiting_for: Some(waiting_for.to_owned()),
        }),
        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(None),
    }
}

/// An event's name (`event_field`, `<none>` without one) and its run id, from a JSON frame.
fn event_of(plan: &WsPlan, text: &str) -> Result<(String, Option<String>), WsFailure> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| WsFailure::Malformed {
        detail: format!("not JSON: {e}"),
        frame: truncate(text, 120).to_owned(),
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
    Ok((name, run_id))
}

/// Whose run an event belongs to, as far as this user can tell.
enum Claim {
    /// The current message's run (or no run id): it counts.
    Counts,
    /// An earlier run of this user: recorded, not counted.
    Earlier,
    /// A run this user did not start.
    Misrouted,
}

/// Isolation: the first run id a message brings is the run it started; an event of a run this
/// user did not start is misrouted and never counts (a run claimed by two users is caught when
/// the users are compared).
fn claim(
    outcome: &mut UserOutcome,
    current_run: &mut Option<String>,
    run_id: Option<&String>,
    name: &str,
) -> Claim {
    let Some(run) = run_id else {
        return Claim::Counts;
    };
    outcome.saw_run_ids = true;
    if outcome.own_runs.contains(run) {
        if current_run.as_ref() != Some(run) {
            return Claim::Earlier;
        }
    } else if current_run.is_none() {
        *current_run = Some(run.clone());
        outcome.own_runs.push(run.clone());
    } else {
        outcome.foreign.push((name.to_owned(), run.clone()));
        return Claim::Misrouted;
    }
    Claim::Counts
}

/// Keeps an event in the user's outcome and tells the observer.
fn record(
    observer: &Option<UnboundedSender<EventSeen>>,
    outcome: &mut UserOutcome,
    seen: EventSeen,
) {
    if let Some(tx) = observer {
        let _ = tx.send(seen.clone());
    }
    outcome.events.push(seen);
}

/// A proper close handshake: send Close(1000), read until the server's Close and the end.
pub(super) async fn close(socket: &mut Socket, wait: Duration) -> Result<(), WsFailure> {
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

/// The value at a dotted path (`type`, `event.name`) of a JSON object.
pub fn lookup<'a>(json: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    if let Some(value) = json.get(path) {
        return Some(value);
    }
    path.split('.').try_fold(json, |value, key| value.get(key))
}

fn truncate(text: &str, max_chars: usize) -> &str {
    match text.char_indices().nth(max_chars) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_follows_dotted_paths() {
        let json: serde_json::Value =
            serde_json::from_str(r#"{"type":"a","event":{"name":"b"},"x.y":"c"}"#).unwrap();
        assert_eq!(lookup(&json, "type").unwrap(), "a");
        assert_eq!(lookup(&json, "event.name").unwrap(), "b");
        assert_eq!(lookup(&json, "x.y").unwrap(), "c");
        assert!(lookup(&json, "event.missing").is_none());
    }
}
