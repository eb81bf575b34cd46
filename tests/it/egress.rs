//! What leaves the process and how: redirects not followed, an egress proxy that receives every
//! attempt (absolute form for http, CONNECT for https), a client certificate for receivers that
//! require one, the local address connections come from, HTTP/2 where the receiver offers it, and
//! the connect-time DNS guard (names mapped with `resolve_overrides`, so nothing is resolved off
//! the machine). Every server here listens on 127.0.0.x.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use servio_webhooks::config::{ClientIdentity, Settings};
use tokio::io::AsyncWriteExt;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

async fn app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    configure(&mut s);
    TestApp::start_with(dir, s).await
}

/// Registers `url` (with `retries` quick retries) and publishes one event; returns the delivery
/// once it is no longer pending.
async fn deliver_once(app: &TestApp, url: &str, retries: u32) -> Value {
    app.register(json!({"url": url, "retryConfig": fast_retry(retries, 10)})).await;
    let r = app.publish("order.created", json!({"orderId": "o-egress"})).await;
    let id = r["deliveries"][0]["id"].as_str().unwrap().to_string();
    app.wait_delivery(&id, WAIT, |d| d["status"] != "pending").await
}

fn attempt_errors(d: &Value) -> Vec<String> {
    d["attemptLog"].as_array().unwrap().iter().map(|e| e["error"].as_str().unwrap_or_default().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Certificates and an https receiver

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate for `name` signed by `ca`, and its key: (chain, PKCS#8 key, PEM of both).
fn leaf(ca: &Ca, name: &str, usage: ExtendedKeyUsagePurpose) -> (Vec<CertificateDer<'static>>, Vec<u8>, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca).unwrap();
    let pem = format!("{}{}", cert.pem(), key.serialize_pem());
    (vec![cert.der().clone()], key.serialize_der(), pem)
}

/// What an https receiver saw per request.
#[derive(Debug, Clone)]
struct Seen {
    version: http::Version,
    /// Whether the sender presented a client certificate.
    client_cert: bool,
}

type SeenLog = Arc<Mutex<Vec<Seen>>>;

/// An https receiver on 127.0.0.1 for `name` (signed by `ca`), answering 200. `alpn` is what it
/// offers (`h2` and/or `http/1.1`); `client_ca` makes a client certificate from it mandatory.
fn https_receiver(ca: &Ca, name: &str, alpn: &[&[u8]], client_ca: Option<&Ca>) -> (u16, SeenLog, Arc<AtomicUsize>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key, _) = leaf(ca, name, ExtendedKeyUsagePurpose::ServerAuth);
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(client_ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(client_ca.der().clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key))).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen: SeenLog = Arc::default();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (log, done) = (seen.clone(), handshakes.clone());
    let raw = RawReceiver::start(move |_, stream| {
        let (acceptor, log, done) = (acceptor.clone(), log.clone(), done.clone());
        async move {
            let Ok(tls) = acceptor.accept(stream).await else { return };
            done.fetch_add(1, Ordering::SeqCst);
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let client_cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let log = log.clone();
                async move {
                    let version = req.version();
                    let _ = req.into_body().collect().await;
                    log.lock().unwrap().push(Seen { version, client_cert });
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            if h2 {
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            }
        }
    });
    (raw.port, seen, handshakes)
}

// ---------------------------------------------------------------------------------------------

/// With strict targets a redirect to an allowed public-looking place is still not followed: the
/// 3xx is the answer, the delivery fails at once, and the `Location` never sees a request.
#[actix_web::test]
async fn redirects_are_never_followed() {
    let app = app_with(|_| {}).await;
    let location = TestReceiver::ok();
    let to = location.url.clone();
    let redirecting = TestReceiver::with(move |_, _| Reply::WithHeaders(307, vec![("location", to.clone())]));
    let d = deliver_once(&app, &redirecting.url, 3).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 1, "a 3xx is final: {d}");
    assert_eq!(d["lastStatusCode"], 307, "{d}");
    assert_eq!(redirecting.count(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(location.count(), 0, "the Location was not followed");
    app.stop().await;
}

/// A tiny HTTP proxy on 127.0.0.1: answers absolute-form requests itself (recording their request
/// line) and tunnels `CONNECT host:port` to `127.0.0.1:{tunnels[host]}`. Records every request line.
fn proxy(tunnels: Vec<(String, u16)>) -> (RawReceiver, Arc<Mutex<Vec<String>>>) {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = lines.clone();
    let raw = RawReceiver::start(move |_, mut stream| {
        let (log, tunnels) = (log.clone(), tunnels.clone());
        async move {
            while let Some(req) = read_request(&mut stream).await {
                let line = req.head.lines().next().unwrap_or_default().to_string();
                log.lock().unwrap().push(line.clone());
                if let Some(authority) = line.strip_prefix("CONNECT ").and_then(|l| l.split(' ').next()) {
                    let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
                    let Some((_, port)) = tunnels.iter().find(|(h, _)| h == host) else {
                        let _ = stream.write_all(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", *port)).await else { return };
                    if stream.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_err() {
                        return;
                    }
                    let _ = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
                    return;
                }
                let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nvia proxy\r\n";
                if stream.write_all(ok).await.is_err() {
                    return;
                }
            }
        }
    });
    (raw, lines)
}

/// With `WEBHOOKS_PROXY_URL` every attempt goes to the proxy: an http target as an absolute-form
/// request, an https target through a CONNECT tunnel (TLS end to end with the receiver). Target
/// names are resolved by the proxy: neither name below resolves here, and strict targets do not
/// refuse them (the proxy enforces egress rules then).
#[actix_web::test]
async fn an_egress_proxy_receives_every_attempt() {
    let ca = ca("servio-webhooks egress-test CA");
    let (tls_port, seen, _) = https_receiver(&ca, "secure.proxied.test", &[b"h2", b"http/1.1"], None);
    let (proxy, lines) = proxy(vec![("secure.proxied.test".into(), tls_port)]);
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let app = app_with(|s| {
        s.allow_private_targets = false;
        s.delivery.proxy_url = Some(proxy_url);
        s.delivery.extra_root_certs = vec![ca.der().to_vec()];
    })
    .await;

    app.register(json!({"url": "http://hooks.proxied.test/in?tenant=7", "retryConfig": fast_retry(0, 10)})).await;
    app.register(json!({"url": "https://secure.proxied.test/hook", "retryConfig": fast_retry(0, 10)})).await;
    let r = app.publish("order.created", json!({"orderId": "o-proxied"})).await;
    let mut bodies = Vec::new();
    for delivery in r["deliveries"].as_array().unwrap() {
        let id = delivery["id"].as_str().unwrap();
        let d = app.wait_delivery(id, WAIT, |d| d["status"] != "pending").await;
        assert_eq!(d["status"], "success", "{d}");
        bodies.push(d["attemptLog"][0]["responseBody"].as_str().unwrap_or_default().to_string());
    }
    bodies.sort();
    assert_eq!(bodies, ["ok", "via proxy\r\n"], "the proxy answered the http one, the receiver the https one");
    let mut lines = lines.lock().unwrap().clone();
    lines.sort();
    assert_eq!(
        lines,
        ["CONNECT secure.proxied.test:443 HTTP/1.1", "POST http://hooks.proxied.test/in?tenant=7 HTTP/1.1"],
        "the http target in absolute form, the https one through a tunnel"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "the event reached the https receiver through the tunnel: {seen:?}");
    assert_eq!(seen[0].version, http::Version::HTTP_2, "ALPN works through the tunnel too");
    assert_eq!(proxy.accepted(), 2, "one connection per origin, nothing sent around the proxy");
    app.stop().await;

    // A tunnel the proxy refuses (its egress rules) is a connection failure, retried.
    let app = app_with(|s| {
        s.allow_private_targets = false;
        s.delivery.proxy_url = Some(format!("http://127.0.0.1:{}", proxy.port));
    })
    .await;
    let d = deliver_once(&app, "https://forbidden.proxied.test/hook", 1).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "{d}");
    for e in attempt_errors(&d) {
        println!("CONNECT refused by the proxy: {e}");
        assert!(e.starts_with("connection failed: via proxy: "), "{e}");
    }
    app.stop().await;
}

/// A receiver that requires a client certificate accepts the configured one and refuses a sender
/// without one (a retried TLS connection error; nothing reaches it).
#[actix_web::test]
async fn mutual_tls_presents_the_configured_client_certificate() {
    let server_ca = ca("servio-webhooks mTLS server CA");
    let client_ca = ca("servio-webhooks mTLS client CA");
    let (port, seen, _) = https_receiver(&server_ca, "localhost", &[b"http/1.1"], Some(&client_ca));
    let url = format!("https://localhost:{port}/hook");
    let (_, _, identity) = leaf(&client_ca, "servio-webhooks sender", ExtendedKeyUsagePurpose::ClientAuth);

    let with_cert = app_with(|s| {
        s.delivery.extra_root_certs = vec![server_ca.der().to_vec()];
        s.delivery.client_identity = Some(ClientIdentity::from_pem(identity));
    })
    .await;
    let d = deliver_once(&with_cert, &url, 0).await;
    assert_eq!(d["status"], "success", "{d}");
    let got = seen.lock().unwrap().clone();
    assert!(got.len() == 1 && got[0].client_cert, "{got:?}");
    with_cert.stop().await;

    let without = app_with(|s| s.delivery.extra_root_certs = vec![server_ca.der().to_vec()]).await;
    let d = deliver_once(&without, &url, 1).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 2, "refused by the receiver's TLS: retried like any connection error: {d}");
    for e in attempt_errors(&d) {
        println!("without a client certificate: {e}");
        assert!(e.starts_with("connection failed: TLS error: "), "{e}");
        assert!(e.contains("CertificateRequired") || e.contains("HandshakeFailure"), "{e}");
    }
    assert_eq!(seen.lock().unwrap().len(), 1, "no request reached the receiver without a certificate");
    without.stop().await;
}

/// `WEBHOOKS_LOCAL_ADDRESS`: connections come from the configured address.
#[actix_web::test]
async fn connections_come_from_the_local_address() {
    if std::net::TcpListener::bind("127.0.0.2:0").is_err() {
        println!("this kernel does not let us bind 127.0.0.2: nothing to compare; skipped");
        return;
    }
    let peers: Arc<Mutex<Vec<IpAddr>>> = Arc::default();
    let log = peers.clone();
    let raw = RawReceiver::start(move |_, mut stream| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(stream.peer_addr().unwrap().ip());
            while read_request(&mut stream).await.is_some() {
                if stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err() {
                    return;
                }
            }
        }
    });
    for local in [None, Some("127.0.0.2".parse::<IpAddr>().unwrap())] {
        let app = app_with(|s| s.delivery.local_address = local).await;
        let d = deliver_once(&app, &raw.url("/hook"), 0).await;
        assert_eq!(d["status"], "success", "{d}");
        let from = *peers.lock().unwrap().last().unwrap();
        assert_eq!(from, local.unwrap_or("127.0.0.1".parse().unwrap()), "{local:?}");
        app.stop().await;
    }
}

/// HTTP/2 by ALPN when the https receiver offers it; HTTP/1.1 when it offers only that.
#[actix_web::test]
async fn https_receivers_offering_h2_get_http2() {
    let ca = ca("servio-webhooks h2-test CA");
    let (h2_port, h2_seen, _) = https_receiver(&ca, "localhost", &[b"h2", b"http/1.1"], None);
    let (h1_port, h1_seen, _) = https_receiver(&ca, "localhost", &[b"http/1.1"], None);
    let app = app_with(|s| s.delivery.extra_root_certs = vec![ca.der().to_vec()]).await;
    for port in [h2_port, h1_port] {
        app.register(json!({"url": format!("https://localhost:{port}/hook"), "maxInFlight": 4})).await;
    }
    for i in 0..6 {
        app.publish("order.created", json!({"orderId": format!("o-h2-{i}")})).await;
    }
    eventually(WAIT, "six events at each receiver", || async {
        h2_seen.lock().unwrap().len() == 6 && h1_seen.lock().unwrap().len() == 6
    })
    .await;
    assert!(h2_seen.lock().unwrap().iter().all(|s| s.version == http::Version::HTTP_2));
    assert!(h1_seen.lock().unwrap().iter().all(|s| s.version == http::Version::HTTP_11));
    app.stop().await;
}

/// Counts connections accepted on `addr` (to show nothing was dialed there).
fn counting_listener(addr: SocketAddr) -> Option<Arc<AtomicUsize>> {
    let listener = std::net::TcpListener::bind(addr).ok()?;
    listener.set_nonblocking(true).unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    actix_web::rt::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    Some(count)
}

/// The DNS guard at connect time: a *name* (which registration cannot judge) that resolves to a
/// private address is refused when the attempt is made, and fails at once; the receiver gets
/// nothing. Where some of a name's addresses are allowed, only those are dialed.
#[actix_web::test]
async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
    let receiver = TestReceiver::ok();
    let port: u16 = receiver.url.rsplit(':').next().unwrap().split('/').next().unwrap().parse().unwrap();
    let overrides = vec![
        ("hooks.rebind.test".to_string(), vec!["127.0.0.1".parse().unwrap()]),
        ("mixed.rebind.test".to_string(), vec!["127.0.0.3".parse().unwrap(), "127.0.0.1".parse().unwrap()]),
    ];
    let strict = app_with(|s| {
        s.allow_private_targets = false;
        s.delivery.resolve_overrides = overrides.clone();
    })
    .await;
    let d = deliver_once(&strict, &format!("http://hooks.rebind.test:{port}/hook"), 3).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 1, "a refusal is final: {d}");
    let e = &attempt_errors(&d)[0];
    assert!(e.contains("hooks.rebind.test resolves only to non-public addresses"), "{e}");
    assert!(e.contains("127.0.0.1") && e.contains("loopback"), "{e}");
    let m = strict.metrics().await;
    assert_eq!(metric(&m, "webhook_errors_total", &[("error_type", "refused")]), Some(1.0), "{m}");
    strict.stop().await;
    assert_eq!(receiver.count(), 0, "nothing was sent to the refused address");

    // 127.0.0.1 allowed, 127.0.0.3 not: the name resolves to both, 127.0.0.3 first. Only the
    // screened list reaches the connector, so 127.0.0.3 is never dialed.
    let decoy = counting_listener(SocketAddr::from(([127, 0, 0, 3], port)));
    let internal = app_with(|s| {
        s.allow_private_targets = false;
        s.allowed_private_cidrs = vec!["127.0.0.1/32".into()];
        s.delivery.resolve_overrides = overrides.clone();
    })
    .await;
    let d = deliver_once(&internal, &format!("http://mixed.rebind.test:{port}/hook"), 0).await;
    assert_eq!(d["status"], "success", "{d}");
    assert_eq!(receiver.count(), 1);
    match decoy {
        Some(decoy) => assert_eq!(decoy.load(Ordering::SeqCst), 0, "the refused address was dialed"),
        None => println!("could not bind 127.0.0.3:{port}; the decoy check was skipped"),
    }
    internal.stop().await;
}

/// `shared_client`: one client for every delivery thread (the measured-slower layout) delivers
/// all the same, over both HTTP versions.
#[actix_web::test]
async fn one_client_shared_by_every_delivery_thread_delivers_too() {
    let ca = ca("servio-webhooks shared-client CA");
    let (port, seen, _) = https_receiver(&ca, "localhost", &[b"h2", b"http/1.1"], None);
    let plain = TestReceiver::ok();
    let app = app_with(|s| {
        s.delivery.shared_client = true;
        s.delivery.extra_root_certs = vec![ca.der().to_vec()];
    })
    .await;
    for _ in 0..4 {
        app.register(json!({"url": plain.url, "maxInFlight": 2})).await;
        app.register(json!({"url": format!("https://localhost:{port}/hook"), "maxInFlight": 2})).await;
    }
    for i in 0..10 {
        app.publish("order.created", json!({"orderId": format!("o-shared-{i}")})).await;
    }
    plain.wait_for(40, WAIT).await;
    eventually(WAIT, "40 deliveries over https", || async { seen.lock().unwrap().len() == 40 }).await;
    assert!(seen.lock().unwrap().iter().all(|s| s.version == http::Version::HTTP_2));
    app.stop().await;
}
