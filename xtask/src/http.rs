//! A small HTTP/1.1 client for loopback and plain-http endpoints (tokens, readiness probes),
//! built on the hyper that bollard already brings, so it costs no extra compile time.
//! No TLS: an `https://` URL is refused with a clear error.
//!
//! Not here: WebSocket connections ([crate::ws]), the engine's API (bollard).

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
    /// The first line of the body, trimmed, for error messages.
    pub fn first_line(&self) -> &str {
        self.body.lines().next().unwrap_or("").trim()
    }
}

/// GET `url` within `timeout`.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<Response> {
    request("GET", url, None, timeout).await
}

/// POST a JSON body to `url` within `timeout`.
pub async fn post_json(url: &str, body: &str, timeout: Duration) -> anyhow::Result<Response> {
    request("POST", url, Some(body), timeout).await
}

async fn request(
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Response> {
    if url.starts_with("https://") {
        bail!("{url}: https is not supported by this build of the harness (plain http and loopback only)");
    }
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a valid URL"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
    let exchange = async {
        let response = client.request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        anyhow::Ok(Response {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.with_context(|| format!("{method} {url} failed")),
        Err(_) => bail!(
            "{method} {url}: no answer within {:.1}s",
            timeout.as_secs_f64()
        ),
    }
}
