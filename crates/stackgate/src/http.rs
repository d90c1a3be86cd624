//! A small HTTP/1.1 client (tokens, readiness probes, the staging probe), built on the hyper that
//! bollard already brings. `https://` goes through rustls with the trust of a [`Tls`]; a
//! certificate problem is a [`crate::tls::TlsFailure`] in the error's chain, named in its message.
//!
//! Not here: WebSocket connections ([crate::ws]), the engine's API (bollard), what is trusted
//! ([crate::tls]).

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::Connect;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::tls::Tls;

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
pub async fn get(url: &str, timeout: Duration, tls: &Tls) -> anyhow::Result<Response> {
    request("GET", url, None, timeout, tls).await
}

/// POST a JSON body to `url` within `timeout`.
pub async fn post_json(
    url: &str,
    body: &str,
    timeout: Duration,
    tls: &Tls,
) -> anyhow::Result<Response> {
    request("POST", url, Some(body), timeout, tls).await
}

async fn request(
    method: &str,
    url: &str,
    body: Option<&str>,
    timeout: Duration,
    tls: &Tls,
) -> anyhow::Result<Response> {
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a valid URL"))?;
    let server = match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => format!("{host}:443"),
        (None, _) => bail!("`{url}` has no host"),
    };
    let mut builder = hyper::Request::builder().method(method).uri(uri);
    if body.is_some() {
        builder = builder.header("content-type", "application/json");
    }
    let request = builder.body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))?;
    let exchange = async {
        if url.starts_with("https://") {
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config((*tls.client_config()?).clone())
                .https_only()
                .enable_http1()
                .build();
            send(
                Client::builder(TokioExecutor::new()).build(connector),
                request,
            )
            .await
            .map_err(|e| {
                match crate::tls::describe_in(e.as_ref(), &server, &|| tls.trusted()) {
                    Some(failure) => anyhow::Error::new(failure),
                    None => e,
                }
            })
        } else {
            send(Client::builder(TokioExecutor::new()).build_http(), request).await
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result.with_context(|| format!("{method} {url} failed")),
        Err(_) => bail!(
            "{method} {url}: no answer within {:.1}s",
            timeout.as_secs_f64()
        ),
    }
}

async fn send<C>(
    client: Client<C, Full<Bytes>>,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<Response>
where
    C: Connect + Clone + Send + Sync + 'static,
{
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
