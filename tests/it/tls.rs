//! Delivery over https, with our own TLS client: a receiver behind a private CA is reached when
//! that CA is trusted (`extra_root_certs`), and refused (retryably) when it is not.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;

use crate::helpers::*;

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: Vec<u8>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "servio-webhooks test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&leaf_key, &ca).unwrap();
    Pki { ca: ca.der().clone(), leaf: leaf.der().clone(), key: leaf_key.serialize_der() }
}

/// What the https receiver got: `(webhook-signature, body)` per request.
type Got = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An https receiver on 127.0.0.1 answering 200 and keeping every body.
fn tls_receiver(pki: &Pki) -> (u16, Got) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let store = got.clone();
    actix_web::rt::spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (acceptor, store) = (acceptor.clone(), store.clone());
            actix_web::rt::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else { return };
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    let store = store.clone();
                    async move {
                        let sig = req.headers().get("webhook-signature").map(|v| v.to_str().unwrap().to_string());
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        store.lock().unwrap().push((sig.unwrap_or_default(), body.to_vec()));
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, got)
}

#[actix_web::test]
async fn delivers_over_https_to_a_trusted_private_ca_and_refuses_an_untrusted_one() {
    let pki = pki();
    let (port, got) = tls_receiver(&pki);
    let url = format!("https://localhost:{port}/hook");

    // Not trusted: the TLS handshake fails, which is retried like any connection error.
    let untrusting = TestApp::start().await;
    untrusting.register(json!({"url": url, "retryConfig": fast_retry(0, 10)})).await;
    let r = untrusting.publish("order.created", json!({"orderId": "o-tls-0"})).await;
    let d = untrusting
        .wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), Duration::from_secs(15), |d| d["status"] == "failed")
        .await;
    let error = d["attemptLog"][0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("TLS"), "{d}");
    assert!(got.lock().unwrap().is_empty());
    untrusting.stop().await;

    // Trusted: delivered, signed, over TLS.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.extra_root_certs = vec![pki.ca.to_vec()];
    let app = TestApp::start_with(dir, s).await;
    let hook = app.register(json!({"url": url})).await;
    let r = app.publish("order.created", json!({"orderId": "o-tls-1"})).await;
    let d = app
        .wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), Duration::from_secs(15), |d| {
            d["status"] != "pending"
        })
        .await;
    assert_eq!(d["status"], "success", "{d}");
    let (sig, body) = got.lock().unwrap()[0].clone();
    assert!(sig.starts_with("v1,"));
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value["data"]["orderId"], "o-tls-1");
    let _ = hook;
    app.stop().await;
}
