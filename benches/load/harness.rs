//! Scenarios of the end-to-end load harness: the real system (SQLite on disk, real actors, real
//! HTTP) against the in-process receiver, each next to the ceiling (a plain reqwest client posting
//! the same bodies to the same receiver at the same concurrency). See BENCHMARKS.md.
//!
//! Every scenario returns one JSON object; `main.rs` runs each in a fresh process and tabulates.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use servio_webhooks::config::Settings;
use servio_webhooks::{RetryConfig, WebhookSpec, Webhooks};
use tokio::sync::Semaphore;

use super::pg::{self, PgSchema};
use super::receiver::{EPOCH, Receiver, now_ns, wait_until};
use super::stages;

/// Total attempts in flight, for the system (spread over its endpoints) and for the ceiling.
pub const CONCURRENCY: usize = 64;
/// Deliveries published but not yet received before publishers wait (keeps the pipeline full
/// without building an unbounded queue, so latency means something).
pub const OUTSTANDING: usize = 1024;
/// Concurrent publishers: enough that publishing is never what limits throughput (each waits for
/// its commit); the flow control above is what bounds the work in flight.
pub const PUBLISHERS: usize = OUTSTANDING;
/// Concurrent REST publishers (each one is an HTTP connection to the admin API).
pub const REST_PUBLISHERS: usize = 256;
const LONG: Duration = Duration::from_secs(1800);

// ---------------------------------------------------------------------------------------------
// Measurement

/// CPU seconds of the whole process and of the receiver's and load generator's threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    pub total: f64,
    pub receiver: f64,
    pub loadgen: f64,
}

impl Cpu {
    /// CPU spent by what is being measured (everything but receiver and load generator).
    pub fn sender_since(&self, before: &Cpu) -> f64 {
        (self.total - before.total) - (self.receiver - before.receiver) - (self.loadgen - before.loadgen)
    }
}

pub fn ticks(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // After "pid (comm) ", field 0 is state; utime and stime are fields 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((comm, (utime + stime) / 100.0))
}

/// Reads CPU times from /proc (Linux; clock ticks of 10 ms).
pub fn cpu() -> Cpu {
    let total = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| ticks(&s)).map(|t| t.1).unwrap_or(0.0);
    let mut c = Cpu { total, ..Cpu::default() };
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for entry in dir.flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let Some((comm, secs)) = ticks(&stat) else { continue };
            if comm.starts_with("recv-worker") {
                c.receiver += secs;
            } else if comm.starts_with("load-gen") {
                c.loadgen += secs;
            }
        }
    }
    c
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// Peak resident set size so far, MiB.
pub fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") as f64 / 1024.0
}

/// Current resident set size, bytes.
pub fn rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx] as f64 / 1e6
}

/// p50 and p99 of latencies in ns, as ms.
pub fn p50_p99(mut v: Vec<u64>) -> (f64, f64) {
    v.sort_unstable();
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub deliveries: u64,
    pub secs: f64,
    pub sender_cpu: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Run {
    pub fn per_sec(&self) -> f64 {
        self.deliveries as f64 / self.secs
    }
    pub fn cpu_us(&self) -> f64 {
        self.sender_cpu * 1e6 / self.deliveries as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Ceiling

/// The `webhook-id` of the ceiling's request `i`: the receiver counts receipts by it, so it does
/// the same bookkeeping for the ceiling's requests as for the system's deliveries.
fn ceiling_id(i: u64) -> String {
    format!("msg_{i:032x}")
}

fn ceiling_body(i: u64) -> String {
    format!(
        r#"{{"id":"evt_{i:032x}","event":"order.created","data":{{"orderId":"ord_{i}","table":"T4","total":25.07,"t":{}}},"timestamp":"2026-11-28T21:00:00.000Z"}}"#,
        now_ns()
    )
}

/// The runtime a client under comparison runs on: 2 workers named `ceiling`, whose CPU counts as
/// the sender's.
fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("ceiling").enable_all().build().unwrap()
}

/// A plain reqwest client posting the same bodies to the same receiver at `concurrency`.
pub fn ceiling(recv: &Receiver, requests: u64, concurrency: usize) -> Run {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = client_runtime();
    let url = recv.url("/ok/ceiling");
    let run = |n: u64| {
        let client = reqwest::Client::builder().tcp_nodelay(true).build().unwrap();
        let next = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (client, next, url) = (client.clone(), next.clone(), url.clone());
                tasks.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let resp = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .header("webhook-id", ceiling_id(i))
                            .body(ceiling_body(i))
                            .send()
                            .await
                            .expect("ceiling request");
                        let _ = resp.bytes().await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    };
    measure_client(recv, requests, run)
}

/// Warms a client up (connections, allocator), then measures `requests` of it at the receiver.
fn measure_client(recv: &Receiver, requests: u64, run: impl Fn(u64)) -> Run {
    run((requests / 10).clamp(500, 5000));
    recv.stats.reset();
    let c0 = cpu();
    let t0 = now_ns();
    run(requests);
    let t1 = recv.stats.last_ns.load(Ordering::SeqCst);
    let c1 = cpu();
    let (p50_ms, p99_ms) = p50_p99(recv.stats.latencies());
    Run { deliveries: requests, secs: (t1 - t0) as f64 / 1e9, sender_cpu: c1.sender_since(&c0), p50_ms, p99_ms }
}

/// The same load through raw hyper HTTP/1 connections (one per task, no pool): what an HTTP
/// layer below reqwest costs. For comparison only; the ceiling is reqwest.
pub fn raw_hyper(recv: &Receiver, requests: u64, concurrency: usize) -> Run {
    let rt = client_runtime();
    let addr = recv.addr;
    let run = |n: u64| {
        let next = Arc::new(AtomicU64::new(0));
        rt.block_on(async {
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let next = next.clone();
                tasks.push(tokio::spawn(async move {
                    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                    stream.set_nodelay(true).unwrap();
                    let (mut sender, conn) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
                    tokio::spawn(conn);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            break;
                        }
                        let req = hyper::Request::post("/ok/raw")
                            .header("host", "127.0.0.1")
                            .header("content-type", "application/json")
                            .header("webhook-id", ceiling_id(i))
                            .body(http_body_util::Full::new(hyper::body::Bytes::from(ceiling_body(i))))
                            .unwrap();
                        sender.ready().await.unwrap();
                        let resp = sender.send_request(req).await.unwrap();
                        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    };
    measure_client(recv, requests, run)
}

/// A reqwest client set up like the delivery client (`src/delivery/client`): no redirects, no
/// environment proxies, connect and total timeouts, its pool limits; `tweak` changes one thing.
fn delivery_like_client(tweak: &dyn Fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .pool_idle_timeout(Duration::from_secs(50))
        .pool_max_idle_per_host(256)
        .tcp_nodelay(true)
        .referer(false);
    tweak(builder).build().unwrap()
}

/// The delivery threads' layout without the rest of the system: two current-thread runtimes (like
/// two actix arbiters) running `concurrency / 2` request loops each; a runtime keeps running
/// until both are done, as an arbiter does. `request(runtime, i)` makes request `i` on a runtime.
fn layout<F, Fut>(recv: &Receiver, requests: u64, concurrency: usize, request: F) -> Run
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let runtimes: Vec<tokio::runtime::Runtime> =
        (0..2).map(|_| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()).collect();
    let run = |n: u64| {
        let next = Arc::new(AtomicU64::new(0));
        let finished = Arc::new(AtomicU64::new(0));
        std::thread::scope(|scope| {
            for (r, rt) in runtimes.iter().enumerate() {
                let (next, finished, request) = (next.clone(), finished.clone(), request.clone());
                std::thread::Builder::new()
                    .name(format!("layout-{r}"))
                    .spawn_scoped(scope, move || {
                        let local = tokio::task::LocalSet::new();
                        local.block_on(rt, async {
                            let mut tasks = Vec::new();
                            for _ in 0..concurrency / 2 {
                                // Each loop awaits its requests one after another.
                                tasks.push(tokio::task::spawn_local({
                                    let (next, request) = (next.clone(), request.clone());
                                    let make = move |i| request(r, i);
                                    async move {
                                        loop {
                                            let i = next.fetch_add(1, Ordering::Relaxed);
                                            if i >= n {
                                                break;
                                            }
                                            make(i).await;
                                        }
                                    }
                                }));
                            }
                            for t in tasks {
                                t.await.unwrap();
                            }
                            finished.fetch_add(1, Ordering::SeqCst);
                            while finished.load(Ordering::SeqCst) < 2 {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        })
                    })
                    .unwrap();
            }
        });
    };
    measure_client(recv, requests, run)
}

/// [`layout`] with reqwest: one client shared by both runtimes (`shared`), or one each, made by
/// `make`. The request loops run in a `LocalSet`, as the endpoint actors' attempts do.
pub fn reqwest_layout(
    recv: &Receiver,
    requests: u64,
    concurrency: usize,
    shared: bool,
    make: &dyn Fn() -> reqwest::Client,
) -> Run {
    let common = make();
    let own: Vec<reqwest::Client> = (0..2).map(|_| make()).collect();
    let url = recv.url("/ok/layout");
    layout(recv, requests, concurrency, move |r, i| {
        let client = if shared { common.clone() } else { own[r].clone() };
        let url = url.clone();
        async move {
            let resp = client
                .post(url)
                .header("content-type", "application/json")
                .header("webhook-id", ceiling_id(i))
                .body(ceiling_body(i))
                .send()
                .await
                .expect("layout request");
            let _ = resp.bytes().await;
        }
    })
}

/// [`layout`] with raw hyper HTTP/1 connections kept per runtime in a free list (what the
/// hand-written pool did): checkout, send, check back in.
pub fn hyper_layout(recv: &Receiver, requests: u64, concurrency: usize) -> Run {
    type Conn = hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>;
    thread_local!(static IDLE: std::cell::RefCell<Vec<Conn>> = const { std::cell::RefCell::new(Vec::new()) });
    let addr = recv.addr;
    layout(recv, requests, concurrency, move |_, i| async move {
        let pooled = IDLE.with_borrow_mut(|idle| idle.pop());
        let mut sender = match pooled {
            Some(s) => s,
            None => {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
                tokio::task::spawn_local(conn);
                sender
            }
        };
        let req = hyper::Request::post("/ok/layout")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("webhook-id", ceiling_id(i))
            .body(http_body_util::Full::new(hyper::body::Bytes::from(ceiling_body(i))))
            .unwrap();
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
        IDLE.with_borrow_mut(|idle| idle.push(sender));
    })
}

/// The delivery client's options on the delivery threads' layout, `rounds` alternating rounds:
/// CPU µs per request of each (median) and each round's figures.
pub fn client_options(requests: u64, rounds: usize) -> Value {
    let recv = Receiver::start(2);
    type Variant<'a> = (&'a str, Box<dyn Fn(&Receiver) -> Run + 'a>);
    let plain = |b: reqwest::ClientBuilder| b;
    let variants: Vec<Variant> = vec![
        (
            "reqwest, a client per thread",
            Box::new(move |r| reqwest_layout(r, requests, CONCURRENCY, false, &|| delivery_like_client(&plain))),
        ),
        (
            "reqwest, one shared client",
            Box::new(move |r| reqwest_layout(r, requests, CONCURRENCY, true, &|| delivery_like_client(&plain))),
        ),
        (
            "per thread, no retries (no request copy)",
            Box::new(move |r| {
                reqwest_layout(r, requests, CONCURRENCY, false, &|| {
                    delivery_like_client(&|b| b.retry(reqwest::retry::never().max_retries_per_request(0)))
                })
            }),
        ),
        (
            "per thread, no reqwest total timeout",
            Box::new(move |r| {
                reqwest_layout(r, requests, CONCURRENCY, false, &|| {
                    let _ = rustls::crypto::ring::default_provider().install_default();
                    reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .no_proxy()
                        .connect_timeout(Duration::from_secs(5))
                        .pool_idle_timeout(Duration::from_secs(50))
                        .pool_max_idle_per_host(256)
                        .referer(false)
                        .build()
                        .unwrap()
                })
            }),
        ),
        (
            "per thread, http1_only",
            Box::new(move |r| {
                reqwest_layout(r, requests, CONCURRENCY, false, &|| delivery_like_client(&|b| b.http1_only()))
            }),
        ),
        (
            "per thread, pool_max_idle_per_host 32",
            Box::new(move |r| {
                reqwest_layout(r, requests, CONCURRENCY, false, &|| {
                    delivery_like_client(&|b| b.pool_max_idle_per_host(32))
                })
            }),
        ),
        (
            "per thread, tcp_nodelay off",
            Box::new(move |r| {
                reqwest_layout(r, requests, CONCURRENCY, false, &|| delivery_like_client(&|b| b.tcp_nodelay(false)))
            }),
        ),
        ("raw hyper, a free list per thread", Box::new(move |r| hyper_layout(r, requests, CONCURRENCY))),
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds.max(1) {
        for (k, (_, run)) in variants.iter().enumerate() {
            runs[k].push(run(&recv));
        }
    }
    let rows: Vec<Value> = variants
        .iter()
        .zip(&runs)
        .map(|((name, _), runs)| {
            let m = median_run(runs);
            json!({
                "variant": name, "per_sec": round(m.per_sec(), 0), "cpu_us": round(m.cpu_us(), 1),
                "round_cpu_us": runs.iter().map(|r| round(r.cpu_us(), 1)).collect::<Vec<_>>(),
                "round_per_sec": runs.iter().map(|r| round(r.per_sec(), 0)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"scenario": "client-options", "requests": requests, "rounds": rounds, "variants": rows})
}

/// Scenario 0: the HTTP clients alone (reqwest, the ceiling; raw hyper; reqwest on two
/// current-thread runtimes with one shared client or one client each), and the receiver's cost.
pub fn clients(requests: u64) -> Value {
    let recv = Receiver::start(2);
    let c0 = cpu();
    let reqwest = ceiling(&recv, requests, CONCURRENCY);
    let c1 = cpu();
    let hyper = raw_hyper(&recv, requests, CONCURRENCY);
    let c2 = cpu();
    let plain = |b: reqwest::ClientBuilder| b;
    let shared = reqwest_layout(&recv, requests, CONCURRENCY, true, &|| delivery_like_client(&plain));
    let per_thread = reqwest_layout(&recv, requests, CONCURRENCY, false, &|| delivery_like_client(&plain));
    // Warm-ups included: 1.1 × requests reach the receiver per client.
    let recv_us = |a: &Cpu, b: &Cpu| (b.receiver - a.receiver) * 1e6 / (requests as f64 * 1.1);
    json!({
        "scenario": "clients", "requests": requests,
        "reqwest_per_sec": round(reqwest.per_sec(), 0), "reqwest_cpu_us": round(reqwest.cpu_us(), 1),
        "hyper_per_sec": round(hyper.per_sec(), 0), "hyper_cpu_us": round(hyper.cpu_us(), 1),
        "shared_2rt_per_sec": round(shared.per_sec(), 0), "shared_2rt_cpu_us": round(shared.cpu_us(), 1),
        "per_thread_2rt_per_sec": round(per_thread.per_sec(), 0),
        "per_thread_2rt_cpu_us": round(per_thread.cpu_us(), 1),
        "receiver_cpu_us": round((recv_us(&c0, &c1) + recv_us(&c1, &c2)) / 2.0, 1),
    })
}

// ---------------------------------------------------------------------------------------------
// The system under test

/// Settings for a benchmark run: defaults (durability on: fsync per commit), a fresh SQLite file.
/// `LOAD_SQLITE_SYNC=normal` measures without an fsync per commit.
pub fn settings(db: &Path) -> Settings {
    let mut s = Settings {
        database_url: format!("sqlite://{}", db.display()),
        allow_private_targets: true,
        open_admin_api: true,
        shutdown_grace: Duration::from_secs(1),
        sqlite_full_sync: std::env::var("LOAD_SQLITE_SYNC").map_or(true, |v| v != "normal"),
        commit_interval: std::env::var("LOAD_COMMIT_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Settings::default().commit_interval),
        ..Settings::default()
    };
    // LOAD_SHARED_CLIENT=1: one delivery client for every arbiter instead of one per arbiter.
    s.delivery.shared_client = std::env::var("LOAD_SHARED_CLIENT").is_ok();
    // LOAD_ARBITERS=n: delivery arbiters (default one per core).
    if let Some(n) = std::env::var("LOAD_ARBITERS").ok().and_then(|v| v.parse().ok()) {
        s.arbiters = n;
    }
    s
}

pub fn spec(url: String, max_in_flight: usize) -> WebhookSpec {
    WebhookSpec { url, max_in_flight: Some(max_in_flight as u32), ..WebhookSpec::default() }
}

/// How events are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Webhooks::publish_raw` from tasks on the actix System.
    Library,
    /// `POST /v1/events` over HTTP from a separate load-generator runtime.
    Rest,
}

impl Mode {
    pub fn parse(s: &str) -> Self {
        if s == "rest" { Mode::Rest } else { Mode::Library }
    }
    pub fn name(self) -> &'static str {
        match self {
            Mode::Library => "library",
            Mode::Rest => "rest",
        }
    }
}

fn event_data(i: u64) -> String {
    format!(r#"{{"orderId":"ord_{i}","table":"T4","total":25.07,"t":{}}}"#, now_ns())
}

/// Publishes `events` events of `event_type`, each waiting for `cost` flow-control permits.
pub struct Publisher {
    pub mode: Mode,
    pub api: Option<String>,
    loadgen: Option<tokio::runtime::Runtime>,
}

impl Publisher {
    /// For REST, starts the admin API on 127.0.0.1 (2 workers) and a load-generator runtime.
    pub async fn new(mode: Mode, webhooks: &Webhooks) -> Self {
        if mode == Mode::Library {
            return Self { mode, api: None, loadgen: None };
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let routes = webhooks.configure();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let api = format!("http://{}/v1/events", listener.local_addr().unwrap());
        let server = actix_web::HttpServer::new(move || actix_web::App::new().configure(routes.clone()))
            .workers(2)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
        actix_web::rt::spawn(server);
        let loadgen = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("load-gen")
            .enable_all()
            .build()
            .unwrap();
        Self { mode, api: Some(api), loadgen: Some(loadgen) }
    }

    /// Publishes and returns once every publish was acknowledged (not delivered).
    pub async fn publish(
        &self,
        webhooks: &Webhooks,
        event_type: &str,
        events: u64,
        cost: u32,
        permits: Option<Arc<Semaphore>>,
    ) {
        let next = Arc::new(AtomicU64::new(0));
        match self.mode {
            Mode::Library => {
                let mut tasks = Vec::new();
                for _ in 0..PUBLISHERS {
                    let (w, next, permits, et) =
                        (webhooks.clone(), next.clone(), permits.clone(), event_type.to_string());
                    tasks.push(actix_web::rt::spawn(async move {
                        while let Some(i) = claim(&next, events, &permits, cost).await {
                            let data = serde_json::value::RawValue::from_string(event_data(i)).unwrap();
                            stages::STARTED.fetch_add(1, Ordering::Relaxed);
                            w.publish_raw(&et, data, None).await.expect("publish");
                            stages::RETURNED.fetch_add(1, Ordering::Relaxed);
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }
            Mode::Rest => {
                let addr: std::net::SocketAddr = self
                    .api
                    .as_deref()
                    .unwrap()
                    .trim_start_matches("http://")
                    .trim_end_matches("/v1/events")
                    .parse()
                    .unwrap();
                let handle =
                    rest_publish(self.loadgen.as_ref().unwrap(), vec![addr], event_type, events, cost, permits);
                // A JoinHandle can be awaited from another runtime: the actix System keeps running.
                handle.await.expect("load generator");
            }
        }
    }
}

/// Publishes `events` with `POST /v1/events` over raw hyper HTTP/1 connections from the load
/// generator runtime `rt`, the connections spread round-robin over `addrs`. The load generator is
/// not what is measured: raw connections keep its CPU (which still competes for the same cores)
/// as small as possible.
pub fn rest_publish(
    rt: &tokio::runtime::Runtime,
    addrs: Vec<std::net::SocketAddr>,
    event_type: &str,
    events: u64,
    cost: u32,
    permits: Option<Arc<Semaphore>>,
) -> tokio::task::JoinHandle<()> {
    let next = Arc::new(AtomicU64::new(0));
    let et = event_type.to_string();
    rt.spawn(async move {
        let mut tasks = Vec::new();
        for c in 0..REST_PUBLISHERS {
            let (next, permits, et, addr) = (next.clone(), permits.clone(), et.clone(), addrs[c % addrs.len()]);
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
                tokio::spawn(conn);
                while let Some(i) = claim(&next, events, &permits, cost).await {
                    let body = format!(r#"{{"event":"{et}","data":{}}}"#, event_data(i));
                    let req = hyper::Request::post("/v1/events")
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
                        .unwrap();
                    sender.ready().await.unwrap();
                    let resp = sender.send_request(req).await.expect("REST publish");
                    assert_eq!(resp.status().as_u16(), 202);
                    let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
}

/// The next event index to publish, once its flow-control permits are granted; `None` when done.
async fn claim(next: &AtomicU64, events: u64, permits: &Option<Arc<Semaphore>>, cost: u32) -> Option<u64> {
    let i = next.fetch_add(1, Ordering::Relaxed);
    if i >= events {
        return None;
    }
    if let Some(p) = permits {
        p.acquire_many(cost).await.unwrap().forget();
    }
    Some(i)
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Dropped inside the actix System (an async context), where a blocking drop would panic.
        if let Some(rt) = self.loadgen.take() {
            rt.shutdown_background();
        }
    }
}

pub fn flow_control(recv: &Receiver) -> Arc<Semaphore> {
    let permits = Arc::new(Semaphore::new(OUTSTANDING));
    *recv.stats.permits.lock().unwrap() = Some(permits.clone());
    permits
}

/// Publishes `events` with fan-out `cost` to measured endpoints and waits for every delivery.
async fn measured_publish(
    recv: &Receiver,
    webhooks: &Webhooks,
    publisher: &Publisher,
    event_type: &str,
    events: u64,
    cost: u32,
) -> Run {
    recv.stats.reset();
    let permits = flow_control(recv);
    let expected = events * cost as u64;
    let c0 = cpu();
    let t0 = now_ns();
    let sampler = stages::enabled().then(|| {
        let stats = recv.stats.clone();
        stages::Sampler::start(move || stats.ok.load(Ordering::Relaxed))
    });
    publisher.publish(webhooks, event_type, events, cost, Some(permits)).await;
    let done = wait_until(LONG, || recv.stats.ok.load(Ordering::SeqCst) >= expected).await;
    assert!(done, "deliveries did not all arrive");
    if let Some(sampler) = sampler {
        sampler.report(cost);
    }
    let t1 = recv.stats.last_ns.load(Ordering::SeqCst);
    let c1 = cpu();
    *recv.stats.permits.lock().unwrap() = None;
    let (p50_ms, p99_ms) = p50_p99(recv.stats.latencies());
    Run { deliveries: expected, secs: (t1 - t0) as f64 / 1e9, sender_cpu: c1.sender_since(&c0), p50_ms, p99_ms }
}

fn temp_db(keep: Option<&Path>) -> (Option<tempfile::TempDir>, PathBuf) {
    match keep {
        Some(p) => (None, p.to_path_buf()),
        None => {
            let dir = tempfile::Builder::new().prefix("servio-load-").tempdir().unwrap();
            let db = dir.path().join("webhooks.db");
            (Some(dir), db)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/// Scenario 1: throughput at fan-out `fanout`, REST or library publish, against the ceiling.
pub fn throughput(mode: Mode, fanout: usize, deliveries: u64, rounds: usize) -> Value {
    let recv = Receiver::start(2);
    let skip_ceiling = std::env::var("LOAD_SKIP_CEILING").is_ok(); // for profiling the system alone
    let per_endpoint = CONCURRENCY.div_ceil(fanout);
    let events = (deliveries / fanout as u64).max(1);
    // Shared machines drift: alternate ceiling and system runs and compare medians.
    let mut ceilings = Vec::new();
    let mut runs = Vec::new();
    let mut pg_costs = Vec::new();
    // What arrived in the measured runs: (received, distinct, duplicates), summed over rounds.
    let mut receipts = (0u64, 0u64, 0u64);
    for _ in 0..rounds.max(1) {
        if !skip_ceiling {
            ceilings.push(ceiling(&recv, deliveries, CONCURRENCY));
        }
        let (_dir, db) = temp_db(None);
        // LOAD_DATABASE_URL: the same run on PostgreSQL (a fresh schema), with its cost.
        let schema = pg::selected().then(PgSchema::create);
        let mut s = settings(&db);
        if let Some(schema) = &schema {
            s.database_url = schema.url.clone();
        }
        let (run, cost) = actix_web::rt::System::new().block_on(async {
            let webhooks = Webhooks::start(s).await.unwrap();
            for i in 0..fanout {
                webhooks.register(None, spec(recv.url(&format!("/ok/{i}")), per_endpoint)).await.unwrap();
            }
            let publisher = Publisher::new(mode, &webhooks).await;
            measured_publish(&recv, &webhooks, &publisher, "order.created", (events / 10).max(10), fanout as u32).await;
            let before = schema.as_ref().map(|_| pg::sample());
            let run = measured_publish(&recv, &webhooks, &publisher, "order.created", events, fanout as u32).await;
            let arrived = recv.stats.receipts();
            receipts = (receipts.0 + arrived.0, receipts.1 + arrived.1, receipts.2 + arrived.2);
            let cost = match before {
                Some(b) => {
                    tokio::time::sleep(Duration::from_secs(2)).await; // the statistics views lag
                    Some(pg::cost(&b, &pg::sample(), run.deliveries))
                }
                None => None,
            };
            webhooks.shutdown().await;
            (run, cost)
        });
        runs.push(run);
        pg_costs.extend(cost);
    }
    let run = median_run(&runs);
    let ceil = if skip_ceiling { run } else { median_run(&ceilings) };
    let ratios: Vec<f64> = runs.iter().zip(&ceilings).map(|(r, c)| r.per_sec() / c.per_sec()).collect();
    json!({
        "scenario": "throughput", "store": if pg::selected() { "postgres" } else { "sqlite" },
        "pg": pg::mean_cost(&pg_costs),
        "mode": mode.name(), "fanout": fanout, "deliveries": run.deliveries, "rounds": runs.len(),
        "per_sec": round(run.per_sec(), 0), "ceiling_per_sec": round(ceil.per_sec(), 0),
        "ratio": round(run.per_sec() / ceil.per_sec(), 3),
        "round_ratios": ratios.iter().map(|r| round(*r, 2)).collect::<Vec<_>>(),
        "cpu_us": round(run.cpu_us(), 1), "ceiling_cpu_us": round(ceil.cpu_us(), 1),
        "cpu_ratio": round(run.cpu_us() / ceil.cpu_us(), 2),
        "p50_ms": round(run.p50_ms, 2), "p99_ms": round(run.p99_ms, 2),
        "ceiling_p50_ms": round(ceil.p50_ms, 2), "ceiling_p99_ms": round(ceil.p99_ms, 2),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "receipts": {
            "expected": run.deliveries * runs.len() as u64, "received": receipts.0,
            "distinct": receipts.1, "duplicates": receipts.2,
        },
    })
}

/// The run with the median throughput, and the median CPU per delivery.
fn median_run(runs: &[Run]) -> Run {
    let mut by_rate: Vec<Run> = runs.to_vec();
    by_rate.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let mut mid = by_rate[by_rate.len() / 2];
    let mut cpu: Vec<f64> = runs.iter().map(Run::cpu_us).collect();
    cpu.sort_by(f64::total_cmp);
    mid.sender_cpu = cpu[cpu.len() / 2] * mid.deliveries as f64 / 1e6;
    mid
}

/// Scenario 2: 10 webhooks, 8 measured; neighbours healthy, then one hanging and one failing.
pub fn isolation(deliveries: u64) -> Value {
    let recv = Receiver::start(2);
    let events = deliveries / 8;
    let measure = |bad: bool| {
        let (_dir, db) = temp_db(None);
        actix_web::rt::System::new().block_on(async {
            let webhooks = Webhooks::start(settings(&db)).await.unwrap();
            for i in 0..8 {
                webhooks.register(None, spec(recv.url(&format!("/ok/{i}")), 8)).await.unwrap();
            }
            let neighbours = if bad { ["/hang/1", "/fail/2"] } else { ["/okx/1", "/okx/2"] };
            for path in neighbours {
                webhooks.register(None, spec(recv.url(path), 8)).await.unwrap();
            }
            let publisher = Publisher::new(Mode::Library, &webhooks).await;
            measured_publish(&recv, &webhooks, &publisher, "order.created", events / 10, 8).await;
            let run = measured_publish(&recv, &webhooks, &publisher, "order.created", events, 8).await;
            webhooks.shutdown().await;
            run
        })
    };
    let healthy = measure(false);
    let with_bad = measure(true);
    json!({
        "scenario": "isolation", "deliveries": with_bad.deliveries,
        "healthy_per_sec": round(healthy.per_sec(), 0), "with_bad_per_sec": round(with_bad.per_sec(), 0),
        "throughput_ratio": round(with_bad.per_sec() / healthy.per_sec(), 3),
        "healthy_p99_ms": round(healthy.p99_ms, 2), "with_bad_p99_ms": round(with_bad.p99_ms, 2),
        "p99_ratio": round(with_bad.p99_ms / healthy.p99_ms, 2),
        "healthy_p50_ms": round(healthy.p50_ms, 2), "with_bad_p50_ms": round(with_bad.p50_ms, 2),
    })
}

/// Scenario 3: a fleet of `n` webhooks: registration rate, idle memory, one event to all.
pub fn fleet(n: usize) -> Value {
    let recv = Receiver::start(2);
    let (_dir, db) = temp_db(None);
    actix_web::rt::System::new().block_on(async {
        let mut s = settings(&db);
        s.metrics_webhook_label = false;
        s.delivery.max_total_in_flight = 512;
        let webhooks = Webhooks::start(s).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss0 = rss_bytes();
        let next = Arc::new(AtomicU64::new(0));
        let url = recv.url("/ok/fleet");
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (w, next, url) = (webhooks.clone(), next.clone(), url.clone());
            tasks.push(actix_web::rt::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    w.register(None, spec(url.clone(), 16)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let reg_secs = t0.elapsed().as_secs_f64();
        // How long the fleet idles before its RSS is read (`LOAD_FLEET_IDLE_MS`, default 1 s):
        // the allocator returns what the registrations freed only some time after.
        let idle_ms = std::env::var("LOAD_FLEET_IDLE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
        tokio::time::sleep(Duration::from_millis(idle_ms)).await;
        let rss1 = rss_bytes();
        recv.stats.reset();
        let t0 = Instant::now();
        let receipt = webhooks
            .publish_raw("order.created", serde_json::value::RawValue::from_string(event_data(0)).unwrap(), None)
            .await
            .unwrap();
        let publish_secs = t0.elapsed().as_secs_f64();
        assert_eq!(receipt.deliveries.len(), n);
        assert!(wait_until(LONG, || recv.stats.ok.load(Ordering::SeqCst) >= n as u64).await);
        let fanout_secs = t0.elapsed().as_secs_f64();
        webhooks.shutdown().await;
        json!({
            "scenario": "fleet", "webhooks": n,
            "registrations_per_sec": round(n as f64 / reg_secs, 0),
            "idle_rss_bytes_per_webhook": round((rss1.saturating_sub(rss0)) as f64 / n as f64, 0),
            "rss_before_mib": round(rss0 as f64 / 1048576.0, 1), "rss_after_mib": round(rss1 as f64 / 1048576.0, 1),
            "publish_commit_secs": round(publish_secs, 3), "fanout_all_delivered_secs": round(fanout_secs, 3),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        })
    })
}

fn backlog_settings(db: &Path) -> Settings {
    let mut s = settings(db);
    s.breaker.cooldown = Duration::from_millis(200);
    s.breaker.max_cooldown = Duration::from_secs(1);
    s
}

/// Scenario 4: one endpoint down while `backlog` deliveries queue for it; a healthy endpoint's
/// throughput before and during; memory. Leaves the database (with the backlog) at `keep`.
pub fn backlog(backlog: u64, keep: &Path, port: u16) -> Value {
    let recv = Receiver::start_on(2, port);
    recv.stats.down.store(false, Ordering::SeqCst);
    let _ = std::fs::remove_file(keep);
    let baseline_events = (backlog / 10).clamp(10_000, 100_000);
    actix_web::rt::System::new().block_on(async {
        let webhooks = Webhooks::start(backlog_settings(keep)).await.unwrap();
        webhooks.register(Some("healthy".into()), spec(recv.url("/ok/h"), CONCURRENCY)).await.unwrap();
        let publisher = Publisher::new(Mode::Library, &webhooks).await;
        measured_publish(&recv, &webhooks, &publisher, "order.created", baseline_events / 10, 1).await;
        let alone = measured_publish(&recv, &webhooks, &publisher, "order.created", baseline_events, 1).await;
        // The same two endpoints, both up: what the healthy one gets beside a healthy neighbour.
        webhooks.register(Some("down".into()), spec(recv.url("/down/d"), CONCURRENCY)).await.unwrap();
        let beside_up = measured_publish(&recv, &webhooks, &publisher, "order.created", baseline_events, 1).await;
        let _ = wait_until(LONG, || recv.stats.down_ok.load(Ordering::SeqCst) >= baseline_events).await;
        recv.stats.down.store(true, Ordering::SeqCst);
        let during = measured_publish(&recv, &webhooks, &publisher, "order.created", backlog, 1).await;
        let metrics = webhooks.metrics().render();
        let pending = metrics
            .lines()
            .find(|l| l.starts_with("webhook_pending_deliveries{webhook=\"down\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        webhooks.shutdown().await;
        json!({
            "scenario": "backlog", "backlog": backlog,
            "healthy_alone_per_sec": round(alone.per_sec(), 0),
            "healthy_beside_up_per_sec": round(beside_up.per_sec(), 0),
            "healthy_during_backlog_per_sec": round(during.per_sec(), 0),
            "ratio_vs_alone": round(during.per_sec() / alone.per_sec(), 3),
            "ratio_vs_beside_up": round(during.per_sec() / beside_up.per_sec(), 3),
            "healthy_alone_p99_ms": round(alone.p99_ms, 2), "healthy_during_p99_ms": round(during.p99_ms, 2),
            "pending_gauge": pending, "peak_rss_mib": round(peak_rss_mib(), 1),
            "db": keep.display().to_string(),
        })
    })
}

/// Scenario 5: restart on a database holding a backlog (from `backlog`) with the endpoint back up:
/// time to first delivery, to full speed, and the drain rate.
pub fn restart(db: &Path, drain: u64, port: u16) -> Value {
    let started = *EPOCH; // process start, as near as we get
    let recv = Receiver::start_on(2, port);
    recv.stats.down.store(false, Ordering::SeqCst);
    actix_web::rt::System::new().block_on(async {
        let t_start_call = started.elapsed().as_secs_f64();
        let webhooks = Webhooks::start(backlog_settings(db)).await.unwrap();
        let t_started = started.elapsed().as_secs_f64();
        let mut samples: Vec<(f64, u64)> = Vec::new();
        let first = wait_until(Duration::from_secs(60), || recv.stats.down_ok.load(Ordering::SeqCst) > 0).await;
        assert!(first, "no delivery within 60 s of start");
        let first_ms = recv.stats.first_ns.load(Ordering::SeqCst) as f64 / 1e6;
        loop {
            let n = recv.stats.down_ok.load(Ordering::SeqCst);
            samples.push((started.elapsed().as_secs_f64(), n));
            if n >= drain {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (t_end, n_end) = *samples.last().unwrap();
        let first_s = first_ms / 1000.0;
        let rate = n_end as f64 / (t_end - first_s);
        // Full speed: the first 0.5 s window whose rate reaches 90 % of the overall drain rate.
        let mut full_speed_s = f64::NAN;
        for (i, &(t, n)) in samples.iter().enumerate() {
            if let Some(&(t2, n2)) = samples[i..].iter().find(|(t2, _)| *t2 >= t + 0.5)
                && (n2 - n) as f64 / (t2 - t) >= 0.9 * rate
            {
                full_speed_s = t;
                break;
            }
        }
        webhooks.shutdown().await;
        json!({
            "scenario": "restart", "drained": n_end,
            "start_call_ms": round(t_start_call * 1000.0, 1), "started_ms": round(t_started * 1000.0, 1),
            "first_delivery_ms": round(first_ms, 1), "full_speed_ms": round(full_speed_s * 1000.0, 0),
            "drain_per_sec": round(rate, 0), "peak_rss_mib": round(peak_rss_mib(), 1),
        })
    })
}

/// Scenario 6: retry timer precision while 10 endpoints run at full throughput.
pub fn timers(deliveries: u64, retries: u64) -> Value {
    let recv = Receiver::start(2);
    let delay_ms = 100u64;
    recv.stats.retry_delay_ns.store(delay_ms * 1_000_000, Ordering::SeqCst);
    let (_dir, db) = temp_db(None);
    actix_web::rt::System::new().block_on(async {
        let mut s = settings(&db);
        // Every first attempt of the /retry/ webhook fails on purpose: keep its breaker closed.
        s.breaker.failure_threshold = u32::MAX;
        let webhooks = Webhooks::start(s).await.unwrap();
        for i in 0..10 {
            webhooks.register(None, spec(recv.url(&format!("/ok/{i}")), 7)).await.unwrap();
        }
        let retry = RetryConfig {
            max_retries: 1,
            initial_delay: delay_ms,
            max_delay: delay_ms,
            backoff_multiplier: 1.0,
            jitter: servio_webhooks::Jitter::None,
        };
        let mut s = spec(recv.url("/retry/r"), 64);
        s.retry_config = Some(retry);
        s.events = Some(vec!["order.updated".into()]);
        webhooks.register(None, s).await.unwrap();
        let publisher = Publisher::new(Mode::Library, &webhooks).await;
        let w = webhooks.clone();
        let retry_pub = actix_web::rt::spawn(async move {
            for i in 0..retries {
                let data = serde_json::value::RawValue::from_string(event_data(i)).unwrap();
                w.publish_raw("order.updated", data, None).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
        let run = measured_publish(&recv, &webhooks, &publisher, "order.created", deliveries / 10, 10).await;
        retry_pub.await.unwrap();
        let _ = wait_until(Duration::from_secs(30), || recv.stats.lateness().len() as u64 >= retries).await;
        let mut late: Vec<i64> = recv.stats.lateness();
        assert!(
            !late.is_empty(),
            "no retry reached the receiver ({} requests in all)",
            recv.stats.total.load(Ordering::SeqCst)
        );
        late.sort_unstable();
        let pct = |p: f64| late[((late.len() as f64 - 1.0) * p).round() as usize] as f64 / 1e6;
        webhooks.shutdown().await;
        json!({
            "scenario": "timers", "retries": late.len(), "retry_delay_ms": delay_ms,
            "late_p50_ms": round(pct(0.5), 2), "late_p99_ms": round(pct(0.99), 2),
            "late_max_ms": round(pct(1.0), 2), "early_min_ms": round(pct(0.0), 2),
            "load_per_sec": round(run.per_sec(), 0),
        })
    })
}
