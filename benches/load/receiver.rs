//! The load harness's receiver: an in-process, multi-threaded hyper server on 127.0.0.1 that
//! answers by path and records what it needs to measure.
//!
//! Paths: `/ok/..` 200 and measured; `/okx/..` 200, not measured; `/fail/..` 500; `/hang/..` never
//! answers; `/down/..` 503 while `down` is set, else 200 and counted in `down_ok`; `/retry/..` 500
//! on the first attempt of an event and 200 on the next, recording how late the retry came.
//! Latency: the publisher puts `"t":<ns since EPOCH>` in the event data; receipt time minus that.

#![allow(unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

/// The clock every `"t"` in a payload is relative to.
pub static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Nanoseconds since [`EPOCH`].
pub fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// What the receiver counted.
#[derive(Default)]
pub struct Stats {
    /// 2xx answered on `/ok/`.
    pub ok: AtomicU64,
    /// 2xx answered on `/down/` once it is up.
    pub down_ok: AtomicU64,
    /// Every request.
    pub total: AtomicU64,
    /// Receipt time of the first and last measured request (ns since EPOCH).
    pub first_ns: AtomicU64,
    pub last_ns: AtomicU64,
    /// `/down/` answers 503 while set.
    pub down: AtomicBool,
    /// Publish→receipt latencies of `/ok/` requests, ns.
    latencies: Mutex<Vec<u64>>,
    /// `/retry/`: first-attempt receipt per event id.
    retry_first: Mutex<HashMap<String, u64>>,
    /// `/retry/`: how late each retry came after first receipt + `retry_delay`, ns (may be < 0).
    lateness: Mutex<Vec<i64>>,
    /// The retry delay configured for `/retry/` webhooks, ns.
    pub retry_delay_ns: AtomicU64,
    /// Flow control: one permit back per measured delivery.
    pub permits: Mutex<Option<Arc<Semaphore>>>,
    /// `/ok/` requests carrying a `webhook-id`, counted per endpoint path and event id: what
    /// arrived, and how often. Keyed by a 64-bit hash of the two (a collision would read as one
    /// duplicate; at a million receipts the chance is about 3 in 10^8), so that the harness's own
    /// bookkeeping stays small beside the system's memory (a map of string pairs took about
    /// 200 bytes a receipt, counted in the process's peak RSS) and cheap in the receiver.
    receipts: Mutex<HashMap<u64, u32>>,
}

impl Stats {
    /// Forgets everything measured so far (between warm-up and measurement).
    pub fn reset(&self) {
        self.ok.store(0, Ordering::SeqCst);
        self.down_ok.store(0, Ordering::SeqCst);
        self.total.store(0, Ordering::SeqCst);
        self.first_ns.store(0, Ordering::SeqCst);
        self.last_ns.store(0, Ordering::SeqCst);
        self.latencies.lock().unwrap().clear();
        self.lateness.lock().unwrap().clear();
        self.retry_first.lock().unwrap().clear();
        self.receipts.lock().unwrap().clear();
    }

    /// `/ok/` requests with a `webhook-id` since the last reset: `(received, distinct,
    /// duplicates)`, distinct by endpoint path and event id.
    pub fn receipts(&self) -> (u64, u64, u64) {
        let r = self.receipts.lock().unwrap();
        let received: u64 = r.values().map(|n| *n as u64).sum();
        (received, r.len() as u64, received - r.len() as u64)
    }

    pub fn latencies(&self) -> Vec<u64> {
        self.latencies.lock().unwrap().clone()
    }

    pub fn lateness(&self) -> Vec<i64> {
        self.lateness.lock().unwrap().clone()
    }

    fn measured(&self, t_sent: Option<u64>) {
        let now = now_ns();
        let _ = self.first_ns.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
        self.last_ns.fetch_max(now, Ordering::SeqCst);
        if let Some(t) = t_sent {
            self.latencies.lock().unwrap().push(now.saturating_sub(t));
        }
        self.ok.fetch_add(1, Ordering::SeqCst);
        if let Some(p) = self.permits.lock().unwrap().as_ref() {
            p.add_permits(1);
        }
    }
}

/// The running receiver; dropping it stops its runtime.
pub struct Receiver {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    /// Starts on `threads` worker threads named `recv-worker` (so their CPU can be told apart).
    pub fn start(threads: usize) -> Self {
        Self::start_on(threads, 0)
    }

    /// [`Receiver::start`] on a given port (0: any), so that a later process finds the URLs it stored.
    pub fn start_on(threads: usize, port: u16) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("recv-worker")
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(Stats::default());
        let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", port))).unwrap();
        let addr = listener.local_addr().unwrap();
        let s = stats.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let stats = s.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, stats.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { addr, stats, _rt: rt }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn sent_at(body: &[u8]) -> Option<u64> {
    let pos = body.windows(4).position(|w| w == b"\"t\":")? + 4;
    let digits: Vec<u8> = body[pos..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn reply(status: StatusCode) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::builder().status(status).body(Full::new(Bytes::from_static(b"ok"))).unwrap())
}

/// The key of a receipt: endpoint path and `webhook-id`.
fn receipt_key(path: &str, id: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(0).hash_one((path, id))
}

async fn handle(req: Request<Incoming>, stats: Arc<Stats>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let webhook_id = req.headers().get("webhook-id");
    let receipt = match webhook_id {
        Some(id) if path.starts_with("/ok/") => Some(receipt_key(&path, id.as_bytes())),
        _ => None,
    };
    let retry_id =
        if path.starts_with("/retry/") { webhook_id.and_then(|v| v.to_str().ok()).map(str::to_string) } else { None };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(StatusCode::BAD_REQUEST),
    };
    stats.total.fetch_add(1, Ordering::Relaxed);
    if path.starts_with("/ok/") {
        if let Some(key) = receipt {
            // Before `measured`, which may end the wait for the last delivery.
            *stats.receipts.lock().unwrap().entry(key).or_default() += 1;
        }
        stats.measured(sent_at(&body));
        reply(StatusCode::OK)
    } else if path.starts_with("/okx/") {
        reply(StatusCode::OK)
    } else if path.starts_with("/fail/") {
        reply(StatusCode::INTERNAL_SERVER_ERROR)
    } else if path.starts_with("/hang/") {
        std::future::pending::<()>().await;
        reply(StatusCode::OK)
    } else if path.starts_with("/down/") {
        if stats.down.load(Ordering::SeqCst) {
            reply(StatusCode::SERVICE_UNAVAILABLE)
        } else {
            let now = now_ns();
            let _ = stats.first_ns.compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst);
            stats.last_ns.fetch_max(now, Ordering::SeqCst);
            stats.down_ok.fetch_add(1, Ordering::SeqCst);
            reply(StatusCode::OK)
        }
    } else if path.starts_with("/retry/") {
        let id = retry_id.unwrap_or_default();
        let now = now_ns();
        let first = stats.retry_first.lock().unwrap().remove(&id);
        match first {
            None => {
                stats.retry_first.lock().unwrap().insert(id, now);
                reply(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Some(t0) => {
                let delay = stats.retry_delay_ns.load(Ordering::SeqCst);
                stats.lateness.lock().unwrap().push(now as i64 - (t0 + delay) as i64);
                reply(StatusCode::OK)
            }
        }
    } else {
        reply(StatusCode::NOT_FOUND)
    }
}

/// Waits until `done` holds, polling every millisecond; false on timeout.
pub async fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}
