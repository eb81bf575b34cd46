//! One HTTP attempt on hyper's HTTP/1 client: post, read the first KiB of the answer, reduce what
//! happened to an [`AttemptOutcome`].
//!
//! Why not reqwest: on this workload reqwest spends more than twice the CPU per request of a bare
//! hyper connection (pool locking, per-request client machinery; see BENCHMARKS.md), and the
//! sender's CPU per delivery is what bounds throughput. Connections are pooled per arbiter thread
//! (a thread-local, so no locks) and shared by every endpoint actor on it with the same origin.
//! Redirects are never followed (hyper does not follow them). Resolved addresses go through the
//! SSRF guard ([`TargetPolicy::screen`]): non-public ones are dropped unless allowed, and a name
//! resolving only to those is refused.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::model::TargetPolicy;
use crate::retry::{AttemptOutcome, parse_retry_after};

/// A ready-or-busy HTTP/1 connection.
pub(crate) type Sender = SendRequest<Full<Bytes>>;

/// What an attempt produced, with the timing and response excerpt for the attempt log.
#[derive(Debug)]
pub(crate) struct AttemptResult {
    pub(crate) outcome: AttemptOutcome,
    pub(crate) duration: Duration,
    pub(crate) response_body: Option<String>,
}

/// Scheme, host and port: what a connection can be reused for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    https: bool,
    host: Box<str>,
    port: u16,
}

/// An endpoint's URL, parsed once for the hot path.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) origin: Origin,
    host_header: HeaderValue,
    path: Uri,
    ip: Option<IpAddr>,
    server_name: Option<ServerName<'static>>,
}

impl Target {
    /// Parses an `http(s)` URL into what requests to it need.
    pub(crate) fn new(url: &url::Url) -> Result<Self, String> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(format!("unsupported scheme `{other}`")),
        };
        let (host, ip) = match url.host() {
            Some(url::Host::Domain(d)) => (d.to_string(), None),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err("url has no host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(if https { 443 } else { 80 });
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let host_header = HeaderValue::from_str(&authority).map_err(|e| format!("bad host: {e}"))?;
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let path: Uri = path_and_query.parse().map_err(|e| format!("bad path: {e}"))?;
        let server_name = if https {
            Some(ServerName::try_from(host.clone()).map_err(|e| format!("bad TLS server name: {e}"))?)
        } else {
            None
        };
        Ok(Self { origin: Origin { https, host: host.into(), port }, host_header, path, ip, server_name })
    }
}

/// Opens connections: DNS with the private-address guard, TCP, TLS, HTTP/1 handshake.
pub(crate) struct Connector {
    tls: tokio_rustls::TlsConnector,
    policy: TargetPolicy,
    connect_timeout: Duration,
}

impl Connector {
    /// TLS verifies against the platform's trust store (like reqwest's default) plus
    /// `extra_roots` (DER certificates).
    pub(crate) fn new(policy: TargetPolicy, connect_timeout: Duration, extra_roots: &[Vec<u8>]) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = extra_roots.iter().map(|der| rustls::pki_types::CertificateDer::from(der.clone()).into_owned());
        let mut config = rustls_platform_verifier::Verifier::new_with_extra_roots(roots, provider.clone())
            .map_err(|e| e.to_string())
            .and_then(|verifier| {
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map(|b| b.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth())
                    .map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "no platform trust store; https deliveries will fail verification");
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { tls: tokio_rustls::TlsConnector::from(Arc::new(config)), policy, connect_timeout }
    }

    async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, AttemptOutcome> {
        let port = target.origin.port;
        let addrs: Vec<SocketAddr> = match target.ip {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((&*target.origin.host, port))
                .await
                .map_err(|e| AttemptOutcome::Connect(format!("dns error: {e}")))?
                .collect(),
        };
        self.policy.screen(&target.origin.host, addrs).map_err(AttemptOutcome::Refused)
    }

    /// A new HTTP/1 connection to the target (its driver task spawned on this thread).
    async fn connect(&self, target: &Target) -> Result<Sender, AttemptOutcome> {
        let addrs = self.addresses(target).await?;
        let mut last_error = String::from("no address");
        for addr in addrs {
            let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last_error = e.to_string();
                    continue;
                }
                Err(_) => {
                    last_error = format!("connect timeout after {:?}", self.connect_timeout);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            return match &target.server_name {
                None => handshake(TokioIo::new(stream)).await,
                Some(name) => {
                    let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name.clone(), stream))
                        .await
                        .map_err(|_| AttemptOutcome::Connect("TLS handshake timeout".into()))?
                        .map_err(|e| AttemptOutcome::Connect(format!("TLS error: {e}")))?;
                    handshake(TokioIo::new(tls)).await
                }
            };
        }
        Err(AttemptOutcome::Connect(last_error))
    }
}

async fn handshake<T>(io: TokioIo<T>) -> Result<Sender, AttemptOutcome>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) =
        http1::handshake(io).await.map_err(|e| AttemptOutcome::Connect(format!("HTTP handshake failed: {e}")))?;
    tokio::task::spawn_local(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Idle connections per origin and in all, per arbiter thread.
const MAX_IDLE_PER_ORIGIN: usize = 256;
const MAX_IDLE: usize = 1024;
/// Idle connections older than this are not reused (servers commonly time out at 60 s or more).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// A response body is drained up to this size so that the connection can be reused; a larger one
/// closes the connection instead.
const MAX_DRAIN: usize = 64 * 1024;

#[derive(Default)]
struct IdlePool {
    by_origin: HashMap<Origin, Vec<(Sender, Instant)>>,
    total: usize,
}

thread_local! {
    /// This arbiter's idle connections. Attempts run on their actor's arbiter thread, so checkout
    /// and check-in never cross threads.
    static IDLE: RefCell<IdlePool> = RefCell::new(IdlePool::default());
}

/// A live idle connection to `origin`, if this thread has one.
pub(crate) fn checkout(origin: &Origin) -> Option<Sender> {
    IDLE.with_borrow_mut(|pool| {
        let list = pool.by_origin.get_mut(origin)?;
        while let Some((sender, since)) = list.pop() {
            pool.total -= 1;
            if !sender.is_closed() && since.elapsed() < IDLE_TIMEOUT {
                return Some(sender);
            }
        }
        None
    })
}

/// Returns a connection for reuse (dropped if closed or the pool is full).
pub(crate) fn checkin(origin: &Origin, sender: Sender) {
    if sender.is_closed() {
        return;
    }
    IDLE.with_borrow_mut(|pool| {
        if pool.total >= MAX_IDLE {
            pool.by_origin.retain(|_, list| {
                list.retain(|(s, since)| !s.is_closed() && since.elapsed() < IDLE_TIMEOUT);
                !list.is_empty()
            });
            pool.total = pool.by_origin.values().map(Vec::len).sum();
            if pool.total >= MAX_IDLE {
                return;
            }
        }
        let list = pool.by_origin.entry(origin.clone()).or_default();
        if list.len() < MAX_IDLE_PER_ORIGIN {
            list.push((sender, Instant::now()));
            pool.total += 1;
        }
    });
}

/// Sends one POST and classifies the outcome; returns the connection if it can be reused.
/// `pooled` is an idle connection from [`checkout`]; should it turn out to be dead before the
/// request went out, a fresh one is opened (the request was not sent, so this costs no attempt).
pub(crate) async fn send(
    connector: Arc<Connector>,
    target: Arc<Target>,
    pooled: Option<Sender>,
    mut headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    body_limit: usize,
) -> (AttemptResult, Option<Sender>) {
    let started = Instant::now();
    headers.insert(HOST, target.host_header.clone());
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.path.clone();
    *request.headers_mut() = headers;
    let exchange = exchange(&connector, &target, pooled, request, body_limit);
    let (outcome, response_body, reusable) = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((outcome, body, sender))) => (outcome, body, sender),
        Ok(Err(outcome)) => (outcome, None, None),
        Err(_) => (AttemptOutcome::Timeout, None, None),
    };
    (AttemptResult { outcome, duration: started.elapsed(), response_body }, reusable)
}

type Exchange = (AttemptOutcome, Option<String>, Option<Sender>);

async fn exchange(
    connector: &Connector,
    target: &Target,
    pooled: Option<Sender>,
    request: Request<Full<Bytes>>,
    body_limit: usize,
) -> Result<Exchange, AttemptOutcome> {
    let mut reused = pooled.is_some();
    let mut sender = match pooled {
        Some(s) => s,
        None => connector.connect(target).await?,
    };
    let mut request = request;
    let response = loop {
        if sender.ready().await.is_err() {
            if reused {
                reused = false;
                sender = connector.connect(target).await?;
                continue;
            }
            return Err(AttemptOutcome::Transport("connection closed".into()));
        }
        match sender.try_send_request(request).await {
            Ok(resp) => break resp,
            Err(mut e) => match e.take_message() {
                // Not sent: a pooled connection died under us. Retry once on a fresh one.
                Some(req) if reused => {
                    reused = false;
                    request = req;
                    sender = connector.connect(target).await?;
                }
                _ => return Err(AttemptOutcome::Transport(root_cause(e.error()))),
            },
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut kept = Vec::new();
    let mut seen = 0usize;
    let mut body = response.into_body();
    let mut complete = false;
    while seen <= MAX_DRAIN {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen += data.len();
                    if kept.len() < body_limit {
                        kept.extend_from_slice(&data[..data.len().min(body_limit - kept.len())]);
                    }
                }
            }
            Some(Err(_)) => break,
            None => {
                complete = true;
                break;
            }
        }
    }
    let text = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
    let outcome = AttemptOutcome::Response { status, retry_after };
    Ok((outcome, text, complete.then_some(sender)))
}

/// The innermost error message ("connection reset by peer" rather than hyper's wrapper).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    let mut msg = cur.to_string();
    while let Some(next) = cur.source() {
        cur = next;
        msg = cur.to_string();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_host_port_path_and_query() {
        let t = Target::new(&url::Url::parse("https://hooks.example.com/servio/in?tenant=7").unwrap()).unwrap();
        assert_eq!(t.origin, Origin { https: true, host: "hooks.example.com".into(), port: 443 });
        assert_eq!(t.host_header, "hooks.example.com");
        assert_eq!(t.path, "/servio/in?tenant=7");
        assert!(t.server_name.is_some());
        let t = Target::new(&url::Url::parse("http://127.0.0.1:9000").unwrap()).unwrap();
        assert_eq!(t.origin.port, 9000);
        assert_eq!(t.host_header, "127.0.0.1:9000");
        assert_eq!(t.path, "/");
        assert_eq!(t.ip, Some("127.0.0.1".parse().unwrap()));
        let t = Target::new(&url::Url::parse("http://[::1]:8080/x").unwrap()).unwrap();
        assert_eq!(t.host_header, "[::1]:8080");
        assert!(Target::new(&url::Url::parse("ftp://x/").unwrap()).is_err());
    }

    /// Addresses are screened where connections are made, so a target stored before the guard
    /// knew its class (or a literal that skipped registration) is refused too.
    #[tokio::test]
    async fn connect_time_guard_refuses_non_public_literals() {
        let strict = Connector::new(TargetPolicy::default(), Duration::from_secs(1), &[]);
        for url in
            ["http://[64:ff9b::a9fe:a9fe]/", "http://[::127.0.0.1]:9/", "http://198.18.0.1/", "http://[2002:a00:1::1]/"]
        {
            let target = Target::new(&url::Url::parse(url).unwrap()).unwrap();
            match strict.addresses(&target).await {
                Err(AttemptOutcome::Refused(why)) => assert!(why.contains("non-public"), "{url}: {why}"),
                other => panic!("{url}: {other:?}"),
            }
        }
        let target = Target::new(&url::Url::parse("http://10.1.2.3:8080/").unwrap()).unwrap();
        let allowed = TargetPolicy { allow_private: false, allowed: vec!["10.0.0.0/8".parse().unwrap()] };
        let internal = Connector::new(allowed, Duration::from_secs(1), &[]);
        assert_eq!(internal.addresses(&target).await.unwrap(), vec!["10.1.2.3:8080".parse().unwrap()]);
    }
}
