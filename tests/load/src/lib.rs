//! Helpers of the load and isolation tests (in `tests/`) against a running reference stack:
//! endpoints from the environment the gate passes (`BACKEND_WS_URL`, `AUTH_URL`), tokens from the
//! auth service over a hand-written HTTP/1.1 request, and a small WebSocket client.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The five events of one agent run, in order.
pub const FIVE: [&str; 5] = [
    "agent_started",
    "agent_thinking",
    "tool_executing",
    "tool_completed",
    "agent_completed",
];

fn required_env(name: &str, example: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set: these tests need a running stack; run them through \
             `cargo xtask mission-critical`, or set it yourself, e.g. {name}={example}"
        ),
    }
}

/// `BACKEND_WS_URL`, e.g. `ws://127.0.0.1:8000/ws`.
pub fn backend_ws_url() -> String {
    required_env("BACKEND_WS_URL", "ws://127.0.0.1:8000/ws")
}

/// `AUTH_URL`, e.g. `http://127.0.0.1:8001`.
pub fn auth_url() -> String {
    required_env("AUTH_URL", "http://127.0.0.1:8001")
        .trim_end_matches('/')
        .to_owned()
}

/// Holds the stack for one test at a time. nextest runs every test in its own process, in
/// parallel; these tests each load the backend to its limits, and together they measure the
/// machine instead of the stack. The lock is a file lock, released when the process ends.
pub struct StackLock(#[allow(dead_code)] std::fs::File);

/// Waits (up to 10 minutes) until no other load test of this stack runs.
pub fn exclusive() -> StackLock {
    let url = backend_ws_url();
    let digest = url.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    let path = std::env::temp_dir().join(format!("stack-load-tests-{digest:016x}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot open the lock file {}: {e}", path.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        match file.try_lock() {
            Ok(()) => return StackLock(file),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!(
                "waited 10 minutes for another load test of {url} to finish ({}): {e:?}",
                path.display()
            ),
        }
    }
}

/// `host:port` and path of an `http://` or `ws://` URL.
fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    match rest.find('/') {
        Some(slash) => (rest[..slash].to_owned(), rest[slash..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

/// A unique user id for this process and test.
pub fn user_id(test: &str, index: usize) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("load-{test}-{}-{nanos:x}-{index}", std::process::id())
}

/// GET `path` on the host of `base`; the status code.
pub async fn http_status(base: &str, path: &str) -> u16 {
    let (host, _) = split_url(base);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let answer = exchange(&host, request).await;
    status_of(&answer)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "not an HTTP answer: {}",
                answer.lines().next().unwrap_or("")
            )
        })
}

async fn exchange(host: &str, request: String) -> String {
    let work = async {
        let mut stream = TcpStream::connect(host)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {host}: {e}"));
        stream
            .write_all(request.as_bytes())
            .await
            .expect("request written");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("answer read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| panic!("{host} did not answer within 10s"))
}

/// A token for `user` from `POST {AUTH_URL}/token`.
pub async fn token(user: &str) -> String {
    let (host, path) = split_url(&auth_url());
    let path = format!("{}/token", path.trim_end_matches('/'));
    let body = serde_json::json!({ "user_id": user }).to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(&host, request).await;
    let status = status_of(&answer);
    assert_eq!(status, 200, "POST {path} answered {status}");
    let (_, payload) = answer.split_once("\r\n\r\n").expect("a body");
    let json: Value = serde_json::from_str(payload.trim()).expect("the token answer is JSON");
    json["token"]
        .as_str()
        .expect("the token answer has a `token`")
        .to_owned()
}

/// One WebSocket connection of one user.
pub struct Client {
    pub user: String,
    socket: WebSocketStream<TcpStream>,
}

impl Client {
    /// Connects with the token in the Authorization header, within 10 s.
    pub async fn connect(user: &str, token: &str) -> Client {
        let url = backend_ws_url();
        let (host, _) = split_url(&url);
        let mut request = url.as_str().into_client_request().expect("a websocket URL");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("a header value"),
        );
        let work = async {
            let stream = TcpStream::connect(&host)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to {host}: {e}"));
            let _ = stream.set_nodelay(true);
            let (socket, _) = tokio_tungstenite::client_async(request, stream)
                .await
                .unwrap_or_else(|e| panic!("handshake with {url} failed: {e}"));
            socket
        };
        let socket = tokio::time::timeout(Duration::from_secs(10), work)
            .await
            .unwrap_or_else(|_| panic!("no connection to {url} within 10s"));
        Client {
            user: user.to_owned(),
            socket,
        }
    }

    /// A new user: token, then connection.
    pub async fn new_user(user: String) -> Client {
        let token = token(&user).await;
        Client::connect(&user, &token).await
    }

    /// Sends a user message tagged with `request_id`.
    pub async fn send_message(&mut self, content: &str, request_id: &str) {
        let frame = serde_json::json!({
            "type": "user_message",
            "content": content,
            "request_id": request_id,
        });
        self.socket
            .send(Message::text(frame.to_string()))
            .await
            .expect("message sent");
    }

    /// The next JSON event within `timeout`, or `None` when none came.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(Message::Text(text))) => {
                    return Some(serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("user {}: event is not JSON ({e}): {text}", self.user)
                    }))
                }
                Some(Ok(Message::Close(frame))) => {
                    panic!(
                        "user {}: the server closed the connection: {frame:?}",
                        self.user
                    )
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("user {}: reading failed: {e}", self.user),
                None => panic!("user {}: the connection ended", self.user),
            }
        }
    }

    /// Closes with a proper close handshake (bounded).
    pub async fn close(mut self) {
        let work = async {
            let _ = self.socket.close(None).await;
            while let Some(Ok(_)) = self.socket.next().await {}
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), work).await;
    }

    /// Drops the TCP connection without a close handshake.
    pub fn abandon(self) {
        drop(self);
    }
}

/// The event's `type`.
pub fn kind(event: &Value) -> &str {
    event["type"].as_str().unwrap_or("<no type>")
}

/// The event's `run_id`.
pub fn run_id(event: &Value) -> Option<&str> {
    event["run_id"].as_str()
}
