//! One HTTP attempt with reqwest: post, read the first KiB of the answer, reduce what happened to
//! an [`AttemptOutcome`].
//!
//! The guards, and where each lives:
//! - **Which addresses may be dialed** ([`TargetPolicy`]): names go through `resolve`'s
//!   resolver, which screens what it resolved and hands only the allowed addresses to the
//!   connector (the ones dialed: no second lookup); literal IP targets never reach a resolver and
//!   are screened in `exchange` before the request is made. With an egress proxy
//!   (`WEBHOOKS_PROXY_URL`) target names are resolved by the proxy, which then has to enforce
//!   egress rules; only literal targets are still screened here.
//! - **Redirects** are never followed (`redirect::Policy::none()`): a 3xx is the answer.
//! - **Proxies** come only from the settings; the `HTTP(S)_PROXY` environment variables are ignored.
//! - **Time**: the connect timeout covers TCP and the TLS handshake; the attempt timeout covers the
//!   whole exchange, including the excerpt of the body.
//! - **Memory**: the first `response_body_limit` bytes of a body are kept. An HTTP/1 body that
//!   may be short is read on to about 64 KiB (`MAX_DRAIN`, past it by at most the last chunk read)
//!   so that the connection can be reused; a longer one (by `content-length`, or found so) and any
//!   HTTP/2 body are not read past the excerpt: the response is dropped, upon which hyper reads at
//!   most what it already has buffered and closes the HTTP/1 connection ("body receiver dropped
//!   before eof, draining or closing"), or resets the HTTP/2 stream.
//!
//! TLS is rustls with the ring provider (`tls`): the platform's roots plus extra CAs, an optional
//! client certificate, ALPN `h2` then `http/1.1`. Plain `http` targets speak HTTP/1.1.
//!
//! Connections are pooled by reqwest, per arbiter thread by default (a `reqwest::Client` per
//! thread, so the pool's lock is never contended and a connection's task runs on the thread
//! that uses it); `DeliverySettings::shared_client` uses one client for every thread instead.
//! BENCHMARKS.md ("reqwest as the delivery client") has the measurements behind that default.

mod resolve;
mod tls;

use std::cell::RefCell;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{HeaderMap, RETRY_AFTER};
use http::{Method, Version};

use self::resolve::{GuardRefusal, GuardedResolver};
use crate::config::DeliverySettings;
use crate::model::TargetPolicy;
use crate::retry::{AttemptOutcome, parse_retry_after};

/// What an attempt produced, with the timing and response excerpt for the attempt log.
#[derive(Debug)]
pub(crate) struct AttemptResult {
    pub(crate) outcome: AttemptOutcome,
    pub(crate) duration: Duration,
    pub(crate) response_body: Option<String>,
}

/// An endpoint's URL, parsed once for the hot path.
#[derive(Debug)]
pub(crate) struct Target {
    url: url::Url,
    /// The host, when it is a literal address (it bypasses the resolver, so it is screened here).
    ip: Option<IpAddr>,
}

impl Target {
    /// Checks that `url` is an `http(s)` URL with a host.
    pub(crate) fn new(url: &url::Url) -> Result<Self, String> {
        match url.scheme() {
            "https" | "http" => {}
            other => return Err(format!("unsupported scheme `{other}`")),
        }
        let ip = match url.host() {
            Some(url::Host::Domain(_)) => None,
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            None => return Err("url has no host".into()),
        };
        Ok(Self { url: url.clone(), ip })
    }

    fn host(&self) -> &str {
        self.url.host_str().unwrap_or_default()
    }

    fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }
}

/// A response body is read up to this size so that its connection can be reused; a longer one is
/// dropped unread, which closes the connection.
const MAX_DRAIN: usize = 64 * 1024;
/// Idle connections per origin, per client.
const MAX_IDLE_PER_ORIGIN: usize = 256;
/// Idle connections older than this are closed (servers commonly time out at 60 s or more).
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

/// What a delivery client is built from (each thread builds its own from it).
struct ClientParts {
    tls: rustls::ClientConfig,
    resolver: Arc<GuardedResolver>,
    proxy: Option<reqwest::Proxy>,
    local_address: Option<IpAddr>,
    connect_timeout: Duration,
}

impl ClientParts {
    fn build(&self) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(self.tls.clone())
            .dns_resolver(self.resolver.clone())
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_PER_ORIGIN)
            .tcp_nodelay(true)
            .referer(false)
            .local_address(self.local_address);
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(proxy.clone());
        }
        builder.build()
    }
}

/// Builds the delivery clients and holds what every attempt needs besides them: the target
/// policy for literal addresses, the connect timeout for error messages.
pub(crate) struct Connector {
    parts: ClientParts,
    policy: TargetPolicy,
    /// Built at start (so that a bad setting fails the start): the client of every thread when
    /// clients are shared, else the fallback should a thread's own fail to build.
    shared: reqwest::Client,
    per_thread: bool,
    /// Identifies this connector's clients in each thread's list (see [`CLIENTS`]).
    key: Arc<()>,
}

thread_local! {
    /// This thread's clients, one per live connector (a process may run several subsystems).
    static CLIENTS: RefCell<Vec<(Weak<()>, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

impl Connector {
    /// The connector for `delivery`'s settings; an error names the setting that is wrong.
    pub(crate) fn new(policy: TargetPolicy, delivery: &DeliverySettings) -> Result<Self, String> {
        let tls = tls::client_config(&delivery.extra_root_certs, delivery.client_identity.as_ref())?;
        let (proxy, proxy_host) = match delivery.proxy_url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            None => (None, None),
            Some(raw) => {
                let url = url::Url::parse(raw).map_err(|e| format!("WEBHOOKS_PROXY_URL: {e}"))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(format!(
                        "WEBHOOKS_PROXY_URL: use an http:// or https:// proxy, not `{}`",
                        url.scheme()
                    ));
                }
                let host = match url.host() {
                    Some(url::Host::Domain(d)) => Some(d.to_string()),
                    Some(_) => None,
                    None => return Err("WEBHOOKS_PROXY_URL: no host".into()),
                };
                (Some(reqwest::Proxy::all(url).map_err(|e| format!("WEBHOOKS_PROXY_URL: {e}"))?), host)
            }
        };
        let parts = ClientParts {
            tls,
            resolver: Arc::new(GuardedResolver::new(policy.clone(), &delivery.resolve_overrides, proxy_host)),
            proxy,
            local_address: delivery.local_address,
            connect_timeout: delivery.connect_timeout,
        };
        let shared = parts.build().map_err(|e| format!("cannot build the delivery client: {e}"))?;
        Ok(Self { parts, policy, shared, per_thread: !delivery.shared_client, key: Arc::new(()) })
    }

    /// Sends `request` with this thread's client (or the shared one).
    fn execute(&self, request: reqwest::Request) -> impl Future<Output = reqwest::Result<reqwest::Response>> + use<> {
        if !self.per_thread {
            return self.shared.execute(request);
        }
        CLIENTS.with_borrow_mut(|clients| {
            let mine = Arc::as_ptr(&self.key);
            if let Some((_, client)) = clients.iter().find(|(k, _)| std::ptr::eq(k.as_ptr(), mine)) {
                return client.execute(request);
            }
            clients.retain(|(k, _)| k.strong_count() > 0);
            let client = self.parts.build().unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot build this thread's delivery client; using the shared one");
                self.shared.clone()
            });
            let pending = client.execute(request);
            clients.push((Arc::downgrade(&self.key), client));
            pending
        })
    }
}

/// Sends one POST and classifies the outcome. The whole exchange (connect, request, the excerpt
/// of the body) is bounded by `timeout`; dropping the future abandons the attempt and closes its
/// connection.
pub(crate) async fn send(
    connector: Arc<Connector>,
    target: Arc<Target>,
    headers: HeaderMap,
    body: Bytes,
    timeout: Duration,
    body_limit: usize,
) -> AttemptResult {
    let started = Instant::now();
    let (outcome, response_body) =
        match tokio::time::timeout(timeout, exchange(&connector, &target, headers, body, body_limit)).await {
            Ok(Ok((outcome, body))) => (outcome, body),
            Ok(Err(outcome)) => (outcome, None),
            Err(_) => (AttemptOutcome::Timeout, None),
        };
    AttemptResult { outcome, duration: started.elapsed(), response_body }
}

async fn exchange(
    connector: &Connector,
    target: &Target,
    headers: HeaderMap,
    body: Bytes,
    body_limit: usize,
) -> Result<(AttemptOutcome, Option<String>), AttemptOutcome> {
    if let Some(ip) = target.ip {
        connector
            .policy
            .screen(target.host(), [SocketAddr::new(ip, target.port())])
            .map_err(AttemptOutcome::Refused)?;
    }
    let mut request = reqwest::Request::new(Method::POST, target.url.clone());
    *request.headers_mut() = headers;
    *request.body_mut() = Some(reqwest::Body::from(body));
    let mut response =
        connector.execute(request).await.map_err(|e| failure(connector, target.url.scheme() == "https", &e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    // Read on past the excerpt only where that lets the connection be reused: HTTP/1 with a body
    // that may fit the drain. An HTTP/2 stream is reset when dropped; the connection stays.
    let read_limit = match response.content_length() {
        _ if response.version() == Version::HTTP_2 => body_limit,
        Some(len) if len > MAX_DRAIN as u64 => body_limit,
        _ => MAX_DRAIN,
    };
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while seen <= read_limit {
        match response.chunk().await {
            Ok(Some(data)) => {
                seen += data.len();
                if kept.len() < body_limit {
                    kept.extend_from_slice(&data[..data.len().min(body_limit - kept.len())]);
                }
            }
            // A body cut short still came with a status: it counts.
            Ok(None) | Err(_) => break,
        }
    }
    drop(response);
    let text = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
    Ok((AttemptOutcome::Response { status, retry_after }, text))
}

/// Maps a failed request onto an outcome: the guard's refusal, connection failures (DNS, TCP, TLS,
/// proxy, connect timeout), the attempt timeout, or a transport error (reset, invalid HTTP).
fn failure(connector: &Connector, https: bool, e: &reqwest::Error) -> AttemptOutcome {
    if let Some(refusal) = find::<GuardRefusal>(e) {
        return AttemptOutcome::Refused(refusal.0.clone());
    }
    let via = if connector.parts.proxy.is_some() { "via proxy: " } else { "" };
    // Before `is_connect`: with TLS 1.3 a receiver refuses a client certificate (or its absence)
    // after the client has finished its side of the handshake, so the alert arrives as the
    // request goes out. It is a TLS failure all the same.
    if let Some(tls) = find_tls(e) {
        return AttemptOutcome::Connect(format!("{via}TLS error: {tls}"));
    }
    if e.is_connect() {
        if e.is_timeout() {
            // reqwest times the connection as a whole: it cannot tell which step was late.
            let steps = if https { " (TCP connect and TLS handshake)" } else { "" };
            return AttemptOutcome::Connect(format!(
                "{via}connect timeout after {:?}{steps}",
                connector.parts.connect_timeout
            ));
        }
        if e.is_dns() {
            return AttemptOutcome::Connect(format!("dns error: {}", root_cause(e)));
        }
        return AttemptOutcome::Connect(format!("{via}{}", root_cause(e)));
    }
    if e.is_timeout() {
        return AttemptOutcome::Timeout;
    }
    AttemptOutcome::Transport(root_cause(e))
}

/// The first error of type `T` in `e`'s chain.
fn find<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        // An io::Error's `source()` skips the error it wraps; look at that too.
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(t) = find::<T>(inner as &(dyn std::error::Error + 'static))
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// The rustls error that failed a handshake, if that is what happened.
fn find_tls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    find::<rustls::Error>(e)
}

/// The innermost error message ("connection reset by peer" rather than the wrappers').
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
    fn targets_are_http_urls_with_a_host() {
        let t = Target::new(&url::Url::parse("https://hooks.example.com/servio/in?tenant=7").unwrap()).unwrap();
        assert_eq!((t.host(), t.port(), t.ip), ("hooks.example.com", 443, None));
        let t = Target::new(&url::Url::parse("http://127.0.0.1:9000").unwrap()).unwrap();
        assert_eq!((t.port(), t.ip), (9000, Some("127.0.0.1".parse().unwrap())));
        let t = Target::new(&url::Url::parse("http://[::1]:8080/x").unwrap()).unwrap();
        assert_eq!(t.ip, Some("::1".parse().unwrap()));
        assert!(Target::new(&url::Url::parse("ftp://x/").unwrap()).is_err());
    }

    fn connector(policy: TargetPolicy) -> Connector {
        Connector::new(policy, &DeliverySettings::default()).unwrap()
    }

    /// Literal addresses bypass the resolver, so they are screened before the request: a target
    /// stored before the guard knew its class (or a literal that skipped registration) is refused.
    #[tokio::test]
    async fn literal_targets_are_screened_before_any_request() {
        let strict = connector(TargetPolicy::default());
        for url in
            ["http://[64:ff9b::a9fe:a9fe]/", "http://[::127.0.0.1]:9/", "http://198.18.0.1/", "http://[2002:a00:1::1]/"]
        {
            let target = Target::new(&url::Url::parse(url).unwrap()).unwrap();
            let res = exchange(&strict, &target, HeaderMap::new(), Bytes::new(), 1024).await;
            match res {
                Err(AttemptOutcome::Refused(why)) => assert!(why.contains("non-public"), "{url}: {why}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_egress_settings_fail_the_start_naming_the_variable() {
        let with = |f: &dyn Fn(&mut DeliverySettings)| {
            let mut d = DeliverySettings::default();
            f(&mut d);
            Connector::new(TargetPolicy::default(), &d).err()
        };
        for bad in ["socks5://proxy:1080", "not a url", "http://"] {
            let err = with(&|d| d.proxy_url = Some(bad.into())).unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.starts_with("WEBHOOKS_PROXY_URL"), "{bad}: {err}");
        }
        assert_eq!(with(&|d| d.proxy_url = Some("http://user:pw@proxy.internal:3128".into())), None);
        assert_eq!(with(&|d| d.proxy_url = Some(" ".into())), None, "blank means no proxy");
        let err = with(&|d| d.client_identity = Some(crate::config::ClientIdentity::from_pem("no pem"))).unwrap();
        assert!(err.starts_with("WEBHOOKS_CLIENT_CERT_FILE"), "{err}");
    }
}
