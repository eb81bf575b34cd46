//! One HTTP attempt: post, read at most the first KiB of the answer, and reduce what happened to
//! an [`AttemptOutcome`]. Redirects are never followed; private targets are refused at DNS time
//! unless allowed.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::DeliverySettings;
use crate::model::is_private_ip;
use crate::retry::{AttemptOutcome, parse_retry_after};

/// What an attempt produced, with the timing and response excerpt for the attempt log.
#[derive(Debug)]
pub(crate) struct AttemptResult {
    pub(crate) outcome: AttemptOutcome,
    pub(crate) duration: Duration,
    pub(crate) response_body: Option<String>,
}

static CRYPTO: Once = Once::new();

/// Builds the outbound client: no redirects, the configured timeouts, and (unless private targets
/// are allowed) a resolver that drops loopback and private addresses.
pub(crate) fn build_client(settings: &DeliverySettings, allow_private: bool) -> reqwest::Client {
    CRYPTO.call_once(|| {
        // reqwest is built without a default provider (the ring variant); install ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(settings.user_agent.clone());
    if !allow_private {
        builder = builder.dns_resolver(std::sync::Arc::new(PublicOnlyResolver));
    }
    builder.build().unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not build the HTTP client with custom settings; using defaults");
        reqwest::Client::new()
    })
}

/// Resolves with the system resolver and keeps only public addresses (SSRF guard).
struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| !is_private_ip(a.ip())).collect();
            if public.is_empty() {
                let msg = format!("{host} resolves only to private addresses (WEBHOOKS_ALLOW_PRIVATE_TARGETS is off)");
                return Err(msg.into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// Sends one prepared request and classifies what came back.
pub(crate) async fn send(request: reqwest::RequestBuilder, body_limit: usize) -> AttemptResult {
    let started = Instant::now();
    let (outcome, response_body) = match request.send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let mut body = Vec::new();
            let mut read_error = None;
            while body.len() < body_limit {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(body_limit - body.len())]),
                    Ok(None) => break,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                }
            }
            let text = (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned());
            match read_error {
                // A 2xx whose body broke off still reached the endpoint; anything else keeps its status.
                Some(e) if e.is_timeout() && !(200..300).contains(&status) => (AttemptOutcome::Timeout, text),
                _ => (AttemptOutcome::Response { status, retry_after }, text),
            }
        }
        Err(e) => (classify_error(&e), None),
    };
    AttemptResult { outcome, duration: started.elapsed(), response_body }
}

fn classify_error(e: &reqwest::Error) -> AttemptOutcome {
    if e.is_timeout() {
        return AttemptOutcome::Timeout;
    }
    let detail = root_cause(e);
    if e.is_connect() { AttemptOutcome::Connect(detail) } else { AttemptOutcome::Transport(detail) }
}

/// The innermost error message: "connection refused" rather than reqwest's wrapper, which would
/// also repeat the URL (and any token in it) into the attempt log.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut msg = cur.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        msg = cur.to_string();
    }
    msg
}
