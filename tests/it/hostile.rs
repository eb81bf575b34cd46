//! Hostile receivers: raw TCP servers on 127.0.0.1 that reset, speak garbage, trickle, flood,
//! hang, redirect or fail TLS. Each case checks what the attempt log records (status or error),
//! how the retry policy classifies it (retried, or failed at once), and the bound on time (the
//! attempt ends at about its timeout, and the sender closes the connection) or memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// The attempt timeout of these tests.
const TIMEOUT_MS: u64 = 1000;
/// Slack allowed past a timeout on a busy 2-core machine: a correctness bound (the attempt does
/// end), not a speed claim.
const MARGIN_MS: u64 = 3000;
const WAIT: Duration = Duration::from_secs(30);

fn hostile_settings(dir: &tempfile::TempDir) -> servio_webhooks::config::Settings {
    let mut s = settings(dir);
    s.delivery.request_timeout = Duration::from_millis(TIMEOUT_MS);
    s.delivery.connect_timeout = Duration::from_millis(500);
    s
}

async fn hostile_app() -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let s = hostile_settings(&dir);
    TestApp::start_with(dir, s).await
}

/// Registers `url` with `retries` quick retries and returns the webhook id.
async fn register(app: &TestApp, url: &str, retries: u32) -> String {
    let hook = app.register(json!({"url": url, "retryConfig": fast_retry(retries, 10)})).await;
    hook["id"].as_str().unwrap().to_string()
}

/// The id of the delivery to `webhook` in a publish receipt.
fn delivery_for(receipt: &Value, webhook: &str) -> String {
    let d = receipt["deliveries"].as_array().unwrap().iter().find(|d| d["webhookId"] == webhook);
    d.expect("a delivery for the webhook")["id"].as_str().unwrap().to_string()
}

/// Waits until the delivery is no longer pending and returns it.
async fn settled(app: &TestApp, id: &str) -> Value {
    let d = app.wait_delivery(id, WAIT, |d| d["status"] != "pending").await;
    for e in attempt_log(&d) {
        println!(
            "{id}: attempt {} {} ms: {}",
            e["attempt"],
            e["durationMs"],
            e.get("error").unwrap_or(&e["statusCode"])
        );
    }
    d
}

fn attempt_log(d: &Value) -> &Vec<Value> {
    d["attemptLog"].as_array().expect("attemptLog")
}

fn error_of(entry: &Value) -> &str {
    entry["error"].as_str().unwrap_or_else(|| panic!("attempt recorded an error: {entry}"))
}

fn duration_ms(entry: &Value) -> u64 {
    entry["durationMs"].as_u64().unwrap_or_else(|| panic!("durationMs in {entry}"))
}

/// An attempt that ended as a timeout: recorded as such, after the timeout and not far past it.
fn assert_timed_out(entry: &Value) {
    assert_eq!(error_of(entry), "timeout", "{entry}");
    assert!(entry["statusCode"].is_null(), "{entry}");
    let ms = duration_ms(entry);
    assert!(ms + 5 >= TIMEOUT_MS, "ended before the {TIMEOUT_MS} ms timeout: {entry}");
    assert!(ms <= TIMEOUT_MS + MARGIN_MS, "ran {ms} ms past a {TIMEOUT_MS} ms timeout: {entry}");
}

/// Waits (bounded) until the peer closes the connection or it fails; how long that took.
async fn until_closed(stream: &mut TcpStream) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    let res = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    res.ok().map(|_| t0.elapsed())
}

// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_connection_reset_mid_request_is_a_retried_transport_error() {
    let app = hostile_app().await;
    let raw = RawReceiver::start(|_, mut stream| async move {
        // The request has started to arrive; reset (RST, not FIN) with most of it unread.
        let mut first = [0u8; 64];
        let _ = stream.read_exact(&mut first).await;
        stream.set_zero_linger().unwrap();
        drop(stream);
    });
    let wid = register(&app, &raw.url("/hook"), 2).await;
    // 200 KiB of data: the request is still being written when the reset comes.
    let r = app.publish("order.created", json!({"blob": "r".repeat(200 * 1024)})).await;
    let d = settled(&app, &delivery_for(&r, &wid)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 3, "a reset is retried (1 + 2 retries): {d}");
    let log = attempt_log(&d);
    assert_eq!(log.len(), 3, "{d}");
    for entry in log {
        let e = error_of(entry);
        assert!(e.starts_with("transport error: "), "{entry}");
        assert!(
            ["reset", "broken pipe", "closed"].iter().any(|w| e.to_lowercase().contains(w)),
            "the error names the reset: {entry}"
        );
        assert!(entry["statusCode"].is_null(), "{entry}");
    }
    assert_eq!(raw.accepted(), 3, "one fresh connection per attempt");
    let m = app.metrics().await;
    assert_eq!(metric(&m, "webhook_errors_total", &[("webhook", &wid), ("error_type", "transport")]), Some(3.0));
    app.stop().await;
}

#[actix_web::test]
async fn garbage_instead_of_a_status_line_is_a_retried_transport_error() {
    let app = hostile_app().await;
    let raw = RawReceiver::start(|n, mut stream| async move {
        if read_request(&mut stream).await.is_none() {
            return;
        }
        let garbage: &[u8] = match n {
            0 => b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
            1 => b"HTTP/1.1 2x0 OK\r\ncontent-length: 0\r\n\r\n",
            _ => b"\x16\x03\x01\x00\xff\xfe garbage\r\n\r\n",
        };
        let _ = stream.write_all(garbage).await;
        // Keep the connection open: the sender must give up on the parse error, not a timeout.
        let _ = until_closed(&mut stream).await;
    });
    let wid = register(&app, &raw.url("/hook"), 2).await;
    let r = app.publish("order.created", json!({"orderId": "o-garbage"})).await;
    let d = settled(&app, &delivery_for(&r, &wid)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 3, "invalid HTTP is retried: {d}");
    let log = attempt_log(&d);
    assert_eq!(log.len(), 3, "{d}");
    for entry in log {
        let e = error_of(entry);
        assert!(e.starts_with("transport error: ") && e.to_lowercase().contains("invalid"), "{entry}");
        assert!(entry["statusCode"].is_null(), "{entry}");
        assert!(duration_ms(entry) < TIMEOUT_MS, "ended on the parse error, before the timeout: {entry}");
    }
    assert_eq!(raw.accepted(), 3);
    app.stop().await;
}

/// A final status outside 200..=599 that is not a valid 3xx/4xx: 6xx-9xx (hyper parses any three
/// digits) and a 1xx presented as the final answer (a 101 nobody asked for) are invalid HTTP, and
/// retried like a garbage status line. Endless 1xx answers never become final: a timeout.
#[actix_web::test]
async fn a_final_status_outside_http_is_retried_and_endless_1xx_time_out() {
    let app = hostile_app().await;
    let raw = RawReceiver::start(|_, mut stream| async move {
        while let Some(req) = read_request(&mut stream).await {
            let answer: &[u8] = match req.path() {
                "/999" => b"HTTP/1.1 999 Nine\r\ncontent-length: 0\r\n\r\n",
                "/600" => b"HTTP/1.1 600 Six\r\ncontent-length: 0\r\n\r\n",
                "/101" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
                _ => loop {
                    // `100 Continue`, again and again, never a final answer.
                    if stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                },
            };
            if stream.write_all(answer).await.is_err() {
                return;
            }
        }
    });
    let mut hooks = Vec::new();
    for path in ["/999", "/600", "/101", "/continue"] {
        hooks.push((path, register(&app, &raw.url(path), 1).await));
    }
    let r = app.publish("order.created", json!({"orderId": "o-odd-status"})).await;
    for (path, wid) in &hooks {
        let d = settled(&app, &delivery_for(&r, wid)).await;
        assert_eq!(d["status"], "failed", "{path}: {d}");
        assert_eq!(d["attempts"], 2, "{path}: retried: {d}");
        for entry in attempt_log(&d) {
            if *path == "/continue" {
                assert_timed_out(entry);
            } else {
                let code: u16 = path[1..].parse().unwrap();
                assert_eq!(entry["statusCode"], code, "{path}: the status is recorded: {entry}");
                assert_eq!(error_of(entry), format!("invalid HTTP status {code}"), "{path}: {entry}");
            }
        }
    }
    app.stop().await;
}

/// A trickling connection's index, and how long after its first byte the server saw it dead.
type Gone = (usize, Option<Duration>);

#[actix_web::test]
async fn a_status_line_or_body_trickled_byte_by_byte_ends_as_a_timeout() {
    let app = hostile_app().await;
    // For each connection: how long after its first byte the server saw the connection dead.
    let gone: Arc<Mutex<Vec<Gone>>> = Arc::default();
    let seen = gone.clone();
    let raw = RawReceiver::start(move |n, mut stream| {
        let seen = seen.clone();
        async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            // Connection 0: the status line, one byte every 150 ms (about 6 s in all).
            // Connection 1: the head at once, then a 64-byte body one byte every 150 ms.
            let (head, trickled): (&[u8], &[u8]) = if n == 0 {
                (b"", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            } else {
                (b"HTTP/1.1 200 OK\r\ncontent-length: 64\r\n\r\n", &[b'z'; 64])
            };
            let t0 = Instant::now();
            let mut dead = stream.write_all(head).await.is_err();
            for byte in trickled {
                if dead {
                    break;
                }
                dead = stream.write_all(std::slice::from_ref(byte)).await.is_err();
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
            seen.lock().unwrap().push((n, dead.then(|| t0.elapsed())));
        }
    });
    let wid = register(&app, &raw.url("/hook"), 1).await;
    let r = app.publish("order.created", json!({"orderId": "o-trickle"})).await;
    let d = settled(&app, &delivery_for(&r, &wid)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "a timeout is retried: {d}");
    for entry in attempt_log(&d) {
        assert_timed_out(entry);
    }
    // The sender closed each connection at its timeout instead of reading on.
    eventually(WAIT, "both trickling connections end", || async { gone.lock().unwrap().len() == 2 }).await;
    for (n, dead_after) in gone.lock().unwrap().iter() {
        let t = dead_after.unwrap_or_else(|| panic!("connection {n}: the sender read the whole trickle"));
        assert!(t.as_millis() as u64 <= TIMEOUT_MS + MARGIN_MS, "connection {n} closed only after {t:?}");
    }
    app.stop().await;
}

/// How one flooding connection ended: bytes written, and whether the writes failed (the sender
/// dropped the connection) or blocked (the sender kept it open without reading).
#[derive(Debug, Clone)]
struct Flood {
    path: String,
    written: u64,
    dropped: bool,
}

const HUNDRED_MB: u64 = 100 * 1024 * 1024;

#[actix_web::test]
async fn a_100_mb_response_keeps_a_kib_and_drops_the_connection() {
    let app = hostile_app().await;
    let floods: Arc<Mutex<Vec<Flood>>> = Arc::default();
    let record = floods.clone();
    let raw = RawReceiver::start(move |_, mut stream| {
        let record = record.clone();
        async move {
            let Some(req) = read_request(&mut stream).await else { return };
            let path = req.path().to_string();
            let head: &[u8] = match path.as_str() {
                "/length" => b"HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n",
                "/chunked" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6400000\r\n",
                _ => b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n",
            };
            let chunk = vec![b'x'; 64 * 1024];
            let mut written = 0u64;
            let flood = async {
                stream.write_all(head).await?;
                while written < HUNDRED_MB {
                    stream.write_all(&chunk).await?;
                    written += chunk.len() as u64;
                }
                if path == "/chunked" {
                    stream.write_all(b"\r\n0\r\n\r\n").await?;
                }
                stream.flush().await
            };
            let dropped = matches!(tokio::time::timeout(WAIT, flood).await, Ok(Err(_)));
            record.lock().unwrap().push(Flood { path, written, dropped });
        }
    });
    let mut hooks = Vec::new();
    for path in ["/length", "/chunked", "/close"] {
        hooks.push((path, register(&app, &raw.url(path), 0).await));
    }
    // Sample this process's RSS while the three floods run.
    let before = rss_bytes();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        actix_web::rt::spawn(async move {
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                peak.fetch_max(rss_bytes(), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let r = app.publish("order.created", json!({"orderId": "o-flood"})).await;
    for (path, wid) in &hooks {
        let d = settled(&app, &delivery_for(&r, wid)).await;
        // (No `{d}` in these messages: a broken sender could have kept 100 MB in it.)
        assert_eq!(d["status"], "success", "{path}: a 200 is a 200, however long its body");
        let entry = &attempt_log(&d)[0];
        assert_eq!(entry["statusCode"], 200, "{path}");
        let body = entry["responseBody"].as_str().unwrap_or_default();
        assert!(
            body.len() == 1024 && body.bytes().all(|b| b == b'x'),
            "{path}: only the first KiB is kept, not {} bytes",
            body.len()
        );
        assert!(duration_ms(entry) <= TIMEOUT_MS + MARGIN_MS, "{path}: {} ms", duration_ms(entry));
    }
    eventually(WAIT, "the three floods end", || async { floods.lock().unwrap().len() == 3 }).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    sampler.await.unwrap();
    let growth = peak.load(std::sync::atomic::Ordering::SeqCst).saturating_sub(before);
    let floods = floods.lock().unwrap().clone();
    println!("100 MB responses: RSS growth {:.1} MiB, floods {floods:?}", growth as f64 / 1048576.0);
    assert!(growth < 50 * 1024 * 1024, "RSS grew {growth} bytes during three 100 MB responses");
    for f in &floods {
        assert!(f.dropped, "{}: the sender kept the connection open without reading: {f:?}", f.path);
        assert!(f.written < HUNDRED_MB, "{}: the sender drained the body: {f:?}", f.path);
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_head_that_never_ends_is_cut_off_as_a_retried_transport_error() {
    let app = hostile_app().await;
    let floods: Arc<Mutex<Vec<Flood>>> = Arc::default();
    let record = floods.clone();
    let raw = RawReceiver::start(move |_, mut stream| {
        let record = record.clone();
        async move {
            if read_request(&mut stream).await.is_none() {
                return;
            }
            let line = format!("x-filler: {}\r\n", "h".repeat(1000));
            let mut written = 0u64;
            let flood = async {
                stream.write_all(b"HTTP/1.1 200 OK\r\n").await?;
                while written < HUNDRED_MB {
                    stream.write_all(line.as_bytes()).await?;
                    written += line.len() as u64;
                }
                Ok::<_, std::io::Error>(())
            };
            let dropped = matches!(tokio::time::timeout(WAIT, flood).await, Ok(Err(_)));
            record.lock().unwrap().push(Flood { path: "/head".into(), written, dropped });
        }
    });
    let wid = register(&app, &raw.url("/head"), 1).await;
    let r = app.publish("order.created", json!({"orderId": "o-head"})).await;
    let d = settled(&app, &delivery_for(&r, &wid)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "retried: {d}");
    for entry in attempt_log(&d) {
        let e = error_of(entry);
        assert!(e.starts_with("transport error: ") && e.contains("too large"), "{entry}");
        assert!(entry["statusCode"].is_null(), "{entry}");
    }
    eventually(WAIT, "both floods end", || async { floods.lock().unwrap().len() == 2 }).await;
    for f in floods.lock().unwrap().iter() {
        assert!(f.dropped && f.written < HUNDRED_MB, "the sender dropped the connection: {f:?}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_connection_accepted_and_never_answered_times_out_and_is_closed() {
    let app = hostile_app().await;
    // Per connection: how long after accepting it the server saw the sender close it.
    let closed: Arc<Mutex<Vec<Option<Duration>>>> = Arc::default();
    let record = closed.clone();
    let raw = RawReceiver::start(move |n, mut stream| {
        let record = record.clone();
        async move {
            let t0 = Instant::now();
            // Connection 0 reads the request, connection 1 not even that; neither answers.
            if n == 0 && read_request(&mut stream).await.is_none() {
                return;
            }
            let closed_at = until_closed(&mut stream).await.map(|_| t0.elapsed());
            record.lock().unwrap().push(closed_at);
        }
    });
    let wid = register(&app, &raw.url("/hook"), 1).await;
    let r = app.publish("order.created", json!({"orderId": "o-silent"})).await;
    let d = settled(&app, &delivery_for(&r, &wid)).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "a timeout is retried: {d}");
    for entry in attempt_log(&d) {
        assert_timed_out(entry);
    }
    eventually(WAIT, "the sender closes both connections", || async { closed.lock().unwrap().len() == 2 }).await;
    for c in closed.lock().unwrap().iter() {
        let t = c.expect("the sender closed the connection");
        assert!(t.as_millis() as u64 <= TIMEOUT_MS + MARGIN_MS, "closed only after {t:?}");
    }
    assert_eq!(raw.accepted(), 2);
    let m = app.metrics().await;
    assert_eq!(metric(&m, "webhook_errors_total", &[("webhook", &wid), ("error_type", "timeout")]), Some(2.0));
    app.stop().await;
}

#[actix_web::test]
async fn redirects_are_not_followed_and_fail_at_once() {
    let app = hostile_app().await;
    let target = TestReceiver::ok();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let location = target.url.clone();
    let raw = RawReceiver::start(move |_, mut stream| {
        let (counted, location) = (counted.clone(), location.clone());
        async move {
            // Keep-alive: serve every request on the connection.
            while let Some(req) = read_request(&mut stream).await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let code = req.path().trim_start_matches('/');
                let answer = format!("HTTP/1.1 {code} Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n");
                if stream.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut hooks = Vec::new();
    for code in [301u16, 302, 303, 307, 308] {
        hooks.push((code, register(&app, &raw.url(&format!("/{code}")), 3).await));
    }
    let r = app.publish("order.created", json!({"orderId": "o-redirect"})).await;
    for (code, wid) in &hooks {
        let d = settled(&app, &delivery_for(&r, wid)).await;
        assert_eq!(d["status"], "failed", "{code}: {d}");
        assert_eq!(d["attempts"], 1, "{code} fails at once, its 3 retries unused: {d}");
        assert_eq!(d["lastStatusCode"], *code, "{d}");
        let log = attempt_log(&d);
        assert_eq!(log.len(), 1, "{d}");
        assert_eq!(log[0]["statusCode"], *code, "{d}");
        assert!(error_of(&log[0]).contains("redirects are not followed"), "{d}");
    }
    assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), 5);
    assert_eq!(target.count(), 0, "no redirect was followed to its Location");
    let m = app.metrics().await;
    for (_, wid) in &hooks {
        assert_eq!(metric(&m, "webhook_errors_total", &[("webhook", wid), ("error_type", "http_3xx")]), Some(1.0));
    }
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// TLS

struct Cert {
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn test_ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "servio-webhooks hostile-test CA");
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf for `name` signed by `ca`.
fn leaf(ca: &Ca, name: &str) -> Cert {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, ca).unwrap();
    Cert { chain: vec![cert.der().clone()], key: key.serialize_der() }
}

/// A self-signed certificate for `localhost` (trusted by nobody).
fn self_signed() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert { chain: vec![c.cert.der().clone()], key: c.signing_key.serialize_der() }
}

/// An https receiver on 127.0.0.1 with `cert`, answering 200 to each request; counts requests.
fn tls_receiver(cert: &Cert) -> (RawReceiver, Arc<std::sync::atomic::AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain.clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    let raw = RawReceiver::start(move |_, stream| {
        let (acceptor, counted) = (acceptor.clone(), counted.clone());
        async move {
            let Ok(mut tls) = acceptor.accept(stream).await else { return };
            while read_request(&mut tls).await.is_some() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                if tls.write_all(ok).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
        }
    });
    (raw, requests)
}

fn https(raw: &RawReceiver) -> String {
    format!("https://localhost:{}/hook", raw.port)
}

#[actix_web::test]
async fn tls_failures_are_retried_connection_errors() {
    let ca = test_ca();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = hostile_settings(&dir);
    s.delivery.extra_root_certs = vec![ca.der().to_vec()];
    let app = TestApp::start_with(dir, s).await;

    // The control: a certificate for `localhost` from the trusted CA is accepted.
    let (good, good_requests) = tls_receiver(&leaf(&ca, "localhost"));
    // Same CA, another name: only the name is wrong.
    let (wrong_name, wrong_name_requests) = tls_receiver(&leaf(&ca, "other.example"));
    // Self-signed for the right name, trusted by nobody.
    let (untrusted, untrusted_requests) = tls_receiver(&self_signed());
    // Accepts TCP and never says a word of TLS.
    let silent = RawReceiver::start(|_, mut stream| async move {
        let _ = until_closed(&mut stream).await;
    });
    // Plain HTTP on the https port.
    let plain = RawReceiver::start(|_, mut stream| async move {
        let mut hello = [0u8; 16];
        let _ = stream.read(&mut hello).await;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let _ = until_closed(&mut stream).await;
    });

    let good_id = register(&app, &https(&good), 1).await;
    let cases = [
        ("wrong name", register(&app, &https(&wrong_name), 1).await, "not valid for name"),
        ("untrusted", register(&app, &https(&untrusted), 1).await, "UnknownIssuer"),
        // reqwest's connect timeout covers TCP and the handshake together: it cannot say which.
        (
            "silent",
            register(&app, &https(&silent), 1).await,
            "connect timeout after 500ms (TCP connect and TLS handshake)",
        ),
        ("plain HTTP", register(&app, &https(&plain), 1).await, "corrupt message"),
    ];
    let r = app.publish("order.created", json!({"orderId": "o-tls"})).await;

    let d = settled(&app, &delivery_for(&r, &good_id)).await;
    assert_eq!(d["status"], "success", "the trusted CA works, so the failures below are the cases': {d}");
    assert_eq!(good_requests.load(std::sync::atomic::Ordering::SeqCst), 1);

    for (case, wid, expected) in &cases {
        let d = settled(&app, &delivery_for(&r, wid)).await;
        assert_eq!(d["status"], "failed", "{case}: {d}");
        assert_eq!(d["attempts"], 2, "{case}: a TLS failure is retried: {d}");
        for entry in attempt_log(&d) {
            let e = error_of(entry);
            assert!(e.starts_with("connection failed: ") && e.contains("TLS"), "{case}: {entry}");
            assert!(e.contains(expected), "{case}: expected `{expected}` in {entry}");
            assert!(entry["statusCode"].is_null(), "{case}: {entry}");
            assert!(duration_ms(entry) <= TIMEOUT_MS + MARGIN_MS, "{case}: {entry}");
        }
        let m = app.metrics().await;
        assert_eq!(
            metric(&m, "webhook_errors_total", &[("webhook", wid), ("error_type", "connection")]),
            Some(2.0),
            "{case}"
        );
    }
    assert_eq!(wrong_name_requests.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing sent to the wrong name");
    assert_eq!(untrusted_requests.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing sent unverified");
    app.stop().await;
}
