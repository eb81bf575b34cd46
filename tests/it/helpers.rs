//! Test harness: a recording HTTP receiver with switchable behaviour, a running subsystem on a
//! temporary SQLite file with its REST API on 127.0.0.1:0, and small polling helpers.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use servio_webhooks::config::Settings;
use servio_webhooks::{Jitter, RetryConfig, Webhooks};
use tempfile::TempDir;
use tokio::sync::watch;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
    pub fn event_id(&self) -> String {
        self.header("webhook-id").expect("webhook-id header").to_string()
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    WithHeaders(u16, Vec<(&'static str, String)>),
    Delayed(Duration, u16),
    Hang,
}

type Behavior = Arc<dyn Fn(usize, &Received) -> Reply + Send + Sync>;

struct ReceiverState {
    received: Mutex<Vec<Received>>,
    behavior: Mutex<Behavior>,
    count: watch::Sender<usize>,
    in_progress: AtomicUsize,
    max_in_progress: AtomicUsize,
}

/// A real HTTP endpoint on 127.0.0.1 that records every request.
pub struct TestReceiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl TestReceiver {
    pub fn ok() -> Self {
        Self::with(|_, _| Reply::Status(200))
    }

    pub fn with(behavior: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) -> Self {
        let (count, _) = watch::channel(0);
        let state = Arc::new(ReceiverState {
            received: Mutex::new(Vec::new()),
            behavior: Mutex::new(Arc::new(behavior)),
            count,
            in_progress: AtomicUsize::new(0),
            max_in_progress: AtomicUsize::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .listen(listener)
            .unwrap()
            .run();
        actix_web::rt::spawn(server);
        Self { url: format!("http://127.0.0.1:{port}/hook"), state }
    }

    /// Changes the behaviour for requests from now on.
    pub fn set(&self, behavior: impl Fn(usize, &Received) -> Reply + Send + Sync + 'static) {
        *self.state.behavior.lock().unwrap() = Arc::new(behavior);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        *self.state.count.borrow()
    }

    pub fn max_concurrency(&self) -> usize {
        self.state.max_in_progress.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived (panics after `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut rx = self.state.count.subscribe();
        let res = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        assert!(res.is_ok(), "receiver got {} requests, expected at least {n} within {timeout:?}", self.count());
        self.received()
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<ReceiverState>) -> HttpResponse {
    let now = state.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_progress.fetch_max(now, Ordering::SeqCst);
    let received = Received {
        at: Instant::now(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect(),
        body: body.to_vec(),
    };
    let index = {
        let mut all = state.received.lock().unwrap();
        all.push(received.clone());
        all.len() - 1
    };
    state.count.send_modify(|c| *c += 1);
    let behavior = state.behavior.lock().unwrap().clone();
    let reply = behavior(index, &received);
    let status = |s: u16| actix_web::http::StatusCode::from_u16(s).unwrap();
    let resp = match reply {
        Reply::Status(s) => HttpResponse::build(status(s)).body(format!("status {s}")),
        Reply::WithHeaders(s, headers) => {
            let mut b = HttpResponse::build(status(s));
            for (k, v) in headers {
                b.insert_header((k, v));
            }
            b.body("")
        }
        Reply::Delayed(d, s) => {
            tokio::time::sleep(d).await;
            HttpResponse::build(status(s)).finish()
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!()
        }
    };
    state.in_progress.fetch_sub(1, Ordering::SeqCst);
    resp
}

/// An HTTP client for talking to the API (installs the ring crypto provider reqwest needs here).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Test settings: a fresh SQLite file, private targets allowed, quick timeouts, breaker out of the way.
pub fn settings(dir: &TempDir) -> Settings {
    let mut s = Settings {
        database_url: format!("sqlite://{}", dir.path().join("webhooks.db").display()),
        open_admin_api: true,
        allow_private_targets: true,
        sqlite_full_sync: false,
        arbiters: 2,
        shutdown_grace: Duration::from_secs(2),
        ..Settings::default()
    };
    s.delivery.request_timeout = Duration::from_secs(5);
    s.delivery.connect_timeout = Duration::from_secs(1);
    s.breaker.failure_threshold = 1000;
    s
}

/// A retry config with millisecond delays and no jitter.
pub fn fast_retry(max_retries: u32, initial_ms: u64) -> RetryConfig {
    RetryConfig {
        max_retries,
        initial_delay: initial_ms,
        max_delay: 60_000,
        backoff_multiplier: 2.0,
        jitter: Jitter::None,
    }
}

/// A running subsystem with its REST API served on 127.0.0.1.
pub struct TestApp {
    pub webhooks: Webhooks,
    pub base: String,
    pub http: reqwest::Client,
    pub dir: Arc<TempDir>,
    server: ServerHandle,
}

impl TestApp {
    pub async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let s = settings(&dir);
        Self::start_with(dir, s).await
    }

    pub async fn start_with(dir: Arc<TempDir>, settings: Settings) -> Self {
        let webhooks = Webhooks::start(settings).await.expect("subsystem starts");
        Self::serve(webhooks, dir)
    }

    /// Serves the REST API of a running subsystem on 127.0.0.1.
    pub fn serve(webhooks: Webhooks, dir: Arc<TempDir>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes = webhooks.configure();
        let server = HttpServer::new(move || App::new().configure(routes.clone()))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(0)
            .listen(listener)
            .unwrap()
            .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self { webhooks, base: format!("http://127.0.0.1:{port}"), http: http_client(), dir, server: handle }
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        self.request_with(method, path, body, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json =
            if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
        (status, json)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request("POST", path, Some(&body.to_string())).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request("GET", path, None).await
    }

    /// Registers a webhook and returns its JSON.
    pub async fn register(&self, body: Value) -> Value {
        let (status, json) = self.post("/v1/webhooks", body).await;
        assert_eq!(status, 201, "{json}");
        json
    }

    /// Publishes and returns the receipt.
    pub async fn publish(&self, event: &str, data: Value) -> Value {
        let (status, json) = self.post("/v1/events", serde_json::json!({ "event": event, "data": data })).await;
        assert_eq!(status, 202, "{json}");
        json
    }

    pub async fn delivery(&self, id: &str) -> Value {
        let (status, json) = self.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(status, 200, "{json}");
        json
    }

    /// Polls a delivery until `done` holds for it.
    pub async fn wait_delivery(&self, id: &str, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let d = self.delivery(id).await;
            if done(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "delivery {id} did not reach the expected state: {d}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn metrics(&self) -> String {
        self.http.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn stop(self) -> Arc<TempDir> {
        self.server.stop(false).await;
        self.webhooks.shutdown().await;
        self.dir
    }
}

/// Polls `check` every 20 ms until it returns true (panics after `timeout`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `f` every 20 ms until it yields a value (panics after `timeout`).
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample in Prometheus text, matching every given `label="value"` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A raw TCP receiver on 127.0.0.1: each accepted connection goes to `serve` (a task on the test's
/// runtime) with its index, so a test controls every byte the sender sees.
pub struct RawReceiver {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl RawReceiver {
    pub fn start<F, Fut>(serve: F) -> Self
    where
        F: Fn(usize, tokio::net::TcpStream) -> Fut + 'static,
        Fut: std::future::Future<Output = ()> + 'static,
    {
        let std_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        actix_web::rt::spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let n = count.fetch_add(1, Ordering::SeqCst);
                actix_web::rt::spawn(serve(n, stream));
            }
        });
        Self { port, accepted }
    }

    /// `http://127.0.0.1:{port}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// One HTTP/1 request as read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// Request line and headers, as text.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request target (`/path`) of the request line.
    pub fn path(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one request (head, then a `Content-Length` body) from `stream`; `None` if the peer
/// closed or failed first.
pub async fn read_request<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> Option<RawRequest> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut request = RawRequest { head, body: buf[head_end..].to_vec() };
    let length: usize = request.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while request.body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        request.body.extend_from_slice(&chunk[..n]);
    }
    Some(request)
}

/// This process's resident set size (`VmRSS` in `/proc/self/status`), bytes.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
