//! The admin API's door and the SSRF guard: cross-site requests, DNS rebinding, content types,
//! bearer tokens, idempotency keys, custom headers, non-public targets (registration refusals for
//! every special-purpose class, the operator's allow-list), a log flood anyone could cause, and
//! `/metrics` forgetting deleted webhooks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::free_port;

/// Sends `request` as is over a fresh connection to `base` (`http://127.0.0.1:port`) and returns
/// the status and the response body, parsed as JSON when it is JSON. Gives exact control over
/// `Host`, `Origin` and framing, which an HTTP client would fill in itself.
async fn raw(base: &str, request: String) -> (u16, Value, String) {
    let addr = base.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let json = serde_json::from_str(body).unwrap_or(Value::Null);
        (status, json, head.to_string())
    })
    .await
    .unwrap()
}

/// A request with `Connection: close`, the given extra header lines and body.
fn request(method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

fn host(app: &TestApp) -> String {
    format!("Host: {}", app.base.trim_start_matches("http://"))
}

async fn webhook_count(app: &TestApp) -> usize {
    let (status, list) = app.get("/v1/webhooks").await;
    assert_eq!(status, 200, "{list}");
    list["data"].as_array().unwrap().len()
}

fn assert_error(got: &(u16, Value, String), status: u16, code: &str, what: &str) {
    assert_eq!(got.0, status, "{what}: {} {}", got.2, got.1);
    assert_eq!(got.1["error"]["code"], code, "{what}: {}", got.1);
}

const BODY: &str = r#"{"url":"https://example.com/hook"}"#;

/// A web page can make a browser POST `text/plain`, form-encoded or typeless bodies anywhere
/// without a preflight; none of them may register a webhook, and neither may any request
/// that says it comes from another origin.
#[actix_web::test]
async fn cross_site_requests_cannot_change_anything() {
    let app = TestApp::start().await;
    let h = host(&app);
    let own = format!("Origin: {}", app.base);
    for content_type in [
        Some("Content-Type: text/plain"),
        Some("Content-Type: text/plain;charset=UTF-8"),
        Some("Content-Type: application/x-www-form-urlencoded"),
        Some("Content-Type: multipart/form-data; boundary=x"),
        Some("Content-Type: text/json"),
        Some("Content-Type: application/json; charset=iso-8859-1"),
        None,
    ] {
        let headers: Vec<&str> = [Some(h.as_str()), content_type].into_iter().flatten().collect();
        let got = raw(&app.base, request("POST", "/v1/webhooks", &headers, BODY)).await;
        assert_error(&got, 415, "unsupported_media_type", &format!("{content_type:?}"));
        let got = raw(&app.base, request("PUT", "/v1/webhooks/w1", &headers, BODY)).await;
        assert_error(&got, 415, "unsupported_media_type", &format!("PUT {content_type:?}"));
        let got =
            raw(&app.base, request("POST", "/v1/events", &headers, r#"{"event":"order.created","data":{}}"#)).await;
        assert_error(&got, 415, "unsupported_media_type", &format!("publish {content_type:?}"));
    }
    let json = "Content-Type: application/json";
    for origin in [
        "Origin: http://attacker.example",
        "Origin: null",
        "Origin: http://127.0.0.1:1",
        "Origin: http://localhost:3000",
    ] {
        let got = raw(&app.base, request("POST", "/v1/webhooks", &[&h, json, origin], BODY)).await;
        assert_error(&got, 403, "cross_origin_refused", origin);
        let got = raw(&app.base, request("GET", "/v1/webhooks", &[&h, origin], "")).await;
        assert_error(&got, 403, "cross_origin_refused", origin);
    }
    let got = raw(&app.base, request("DELETE", "/v1/webhooks/w1", &[&h, "Sec-Fetch-Site: cross-site"], "")).await;
    assert_error(&got, 403, "cross_origin_refused", "Sec-Fetch-Site");
    assert_eq!(webhook_count(&app).await, 0, "nothing was registered");

    // JSON from the server's own origin (an admin page served by the host app), with a charset
    // or a +json type, is fine.
    for ct in ["Content-Type: application/json; charset=utf-8", "Content-Type: application/merge-patch+json", json] {
        let got =
            raw(&app.base, request("POST", "/v1/webhooks", &[&h, ct, &own, "Sec-Fetch-Site: same-origin"], BODY)).await;
        assert_eq!(got.0, 201, "{ct}: {}", got.1);
    }
    assert_eq!(webhook_count(&app).await, 3);
    // Bodiless requests need no content type.
    let (status, _) = app.request("DELETE", &format!("/v1/webhooks/{}", "nope"), None).await;
    assert_eq!(status, 404);
    app.stop().await;
}

/// DNS rebinding: a page on attacker.example re-points its name at 127.0.0.1 and is then
/// same-origin for the browser; its requests still say `Host: attacker.example`.
#[actix_web::test]
async fn dns_rebinding_hosts_are_refused_without_a_token() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.allowed_hosts = vec!["webhooks.internal".into(), "admin.example:9999".into()];
    let app = TestApp::start_with(dir, s).await;
    app.register(json!({"url": "https://example.com/hook", "secret": "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ="})).await;
    let port = app.base.rsplit(':').next().unwrap().to_string();
    for refused in [
        format!("Host: attacker.example:{port}"),
        "Host: attacker.example".to_string(),
        format!("Host: localhost:{}", port.parse::<u16>().unwrap() + 1),
        format!("Host: 127.0.0.2:{port}"),
        format!("Host: admin.example:{port}"),
        "Host: not a host".to_string(),
    ] {
        let got = raw(&app.base, request("GET", "/v1/webhooks", &[&refused], "")).await;
        assert_error(&got, 403, "host_not_allowed", &refused);
        assert!(!got.2.contains("whsec_") && !got.1.to_string().contains("whsec_"), "no secret leaks: {}", got.1);
        let got = raw(
            &app.base,
            request(
                "POST",
                "/v1/webhooks",
                &[&refused, "Content-Type: application/json", &format!("Origin: http://{}", &refused[6..])],
                BODY,
            ),
        )
        .await;
        assert_eq!(got.0, 403, "{refused}: {}", got.1);
    }
    for allowed in [
        format!("Host: localhost:{port}"),
        format!("Host: LOCALHOST.:{port}"),
        format!("Host: 127.0.0.1:{port}"),
        format!("Host: [::1]:{port}"),
        "Host: 127.0.0.1".to_string(),
        format!("Host: webhooks.internal:{port}"),
        "Host: admin.example:9999".to_string(),
    ] {
        let got = raw(&app.base, request("GET", "/v1/webhooks", &[&allowed], "")).await;
        assert_eq!(got.0, 200, "{allowed}: {}", got.1);
    }
    // The open routes stay open, whatever the Host.
    for path in ["/metrics", "/healthz", "/openapi.json"] {
        let got = raw(&app.base, request("GET", path, &["Host: attacker.example"], "")).await;
        assert_eq!(got.0, 200, "{path}");
    }
    assert_eq!(webhook_count(&app).await, 1);
    app.stop().await;
}

/// With a token: any `Host` (behind a proxy), the same content-type and origin checks, bearer
/// parsing that accepts every spelling of the scheme and nothing else, and a proper challenge.
#[actix_web::test]
async fn bearer_token_is_parsed_strictly_and_challenged() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.admin_token = Some("s3cret-token".into());
    let app = TestApp::start_with(dir, s).await;
    let proxy_host = "Host: webhooks.example.com";
    for ok in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
        "Bearer\ts3cret-token",
        "BeArEr  \t s3cret-token  ",
    ] {
        let got =
            raw(&app.base, request("GET", "/v1/webhooks", &[proxy_host, &format!("Authorization: {ok}")], "")).await;
        assert_eq!(got.0, 200, "{ok:?}: {}", got.1);
    }
    let cases: &[(Option<&str>, bool)] = &[
        (None, false),
        (Some("Basic czNjcmV0LXRva2Vu"), false),
        (Some("Bearers3cret-token"), false),
        (Some("Bearer"), true),
        (Some("Bearer wrong"), true),
        (Some("Bearer s3cret-token-and-more"), true),
        (Some("Bearer s3cret"), true),
        (Some("Bearer s3cret-token extra"), true),
    ];
    for (auth, token_given) in cases {
        let header = auth.map(|a| format!("Authorization: {a}"));
        let headers: Vec<&str> = [Some(proxy_host), header.as_deref()].into_iter().flatten().collect();
        let got = raw(&app.base, request("GET", "/v1/webhooks", &headers, "")).await;
        assert_error(&got, 401, "unauthorized", &format!("{auth:?}"));
        let challenge = got
            .2
            .lines()
            .find_map(|l| l.to_ascii_lowercase().starts_with("www-authenticate:").then(|| l[17..].trim().to_string()))
            .unwrap_or_else(|| panic!("{auth:?}: no WWW-Authenticate in {}", got.2));
        assert!(challenge.starts_with("Bearer realm=\"servio-webhooks\""), "{challenge}");
        assert_eq!(challenge.contains("error=\"invalid_token\""), *token_given, "{auth:?}: {challenge}");
    }
    // Two Authorization headers are refused even if one is right.
    let got = raw(
        &app.base,
        request(
            "GET",
            "/v1/webhooks",
            &[proxy_host, "Authorization: Bearer s3cret-token", "Authorization: Bearer x"],
            "",
        ),
    )
    .await;
    assert_eq!(got.0, 401);
    let auth = "Authorization: Bearer s3cret-token";
    let got =
        raw(&app.base, request("POST", "/v1/webhooks", &[proxy_host, auth, "Content-Type: text/plain"], BODY)).await;
    assert_error(&got, 415, "unsupported_media_type", "text/plain with the token");
    let got = raw(
        &app.base,
        request(
            "POST",
            "/v1/webhooks",
            &[proxy_host, auth, "Content-Type: application/json", "Origin: https://evil.example"],
            BODY,
        ),
    )
    .await;
    assert_error(&got, 403, "cross_origin_refused", "cross-origin with the token");
    let got =
        raw(&app.base, request("POST", "/v1/webhooks", &[proxy_host, auth, "Content-Type: application/json"], BODY))
            .await;
    assert_eq!(got.0, 201, "{}", got.1);
    app.stop().await;
}

/// Every special-purpose class, as a literal: refused at registration, nothing stored.
#[actix_web::test]
async fn non_public_literal_targets_are_refused_at_registration() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.allow_private_targets = false;
    let app = TestApp::start_with(dir, s).await;
    let refused = [
        "http://0.0.0.0/",
        "http://0.1.2.3/",
        "http://10.0.0.8/",
        "http://100.64.0.1/",
        "http://127.0.0.1:9/",
        "http://169.254.169.254/latest/meta-data/",
        "http://172.16.0.1/",
        "http://192.0.0.8/",
        "http://192.0.0.171/",
        "http://192.0.2.1/",
        "http://192.88.99.1/",
        "http://192.168.1.1/",
        "http://198.18.0.1/",
        "http://198.19.255.255/",
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://224.0.0.251/",
        "http://239.1.2.3/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[::]/",
        "http://[::1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[100::1]/",
        "http://[2001::1]/",
        "http://[2001:2::1]/",
        "http://[2001:db8::1]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://[2002:7f00:1::1]/",
        "http://[3fff::1]/",
        "http://[5f00::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://[ff02::1]/",
        "http://[ff0e::1]/",
        "http://localhost:8080/",
        "http://kitchen.localhost/",
        "http://0x7f.0.0.1/",
        "http://2852039166/",
    ];
    for url in refused {
        let (status, json) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (400, Some("private_target_not_allowed")),
            "{url}: {json}"
        );
        let (status, json) = app.request("PUT", "/v1/webhooks/t", Some(&json!({"url": url}).to_string())).await;
        assert_eq!(status, 400, "PUT {url}: {json}");
    }
    assert_eq!(webhook_count(&app).await, 0, "nothing was stored");
    // Public literals, including the embedded forms of public addresses, are fine.
    for url in
        ["http://8.8.8.8/", "http://[2606:4700::1111]/", "http://[::ffff:8.8.8.8]/", "http://[64:ff9b::808:808]/"]
    {
        let (status, json) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(status, 201, "{url}: {json}");
    }
    app.stop().await;
}

/// The operator's allow-list lets a deliberate internal target through, at registration and when
/// connecting, and nothing next to it.
#[actix_web::test]
async fn allowed_private_cidrs_let_internal_targets_through() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.allow_private_targets = false;
    s.allowed_private_cidrs = vec!["127.0.0.1/32".into()];
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url, "events": ["order.created"]})).await;
    for url in ["http://127.0.0.2/", "http://[::1]/", "http://10.0.0.1/", "http://[64:ff9b::7f00:1]/"] {
        let (status, json) = app.post("/v1/webhooks", json!({"url": url})).await;
        assert_eq!(
            (status, json["error"]["code"].as_str()),
            (400, Some("private_target_not_allowed")),
            "{url}: {json}"
        );
    }
    let receipt = app.publish("order.created", json!({"orderId": "o-1"})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].event_id(), receipt["id"]);
    app.stop().await;

    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut bad = settings(&dir);
    bad.allowed_private_cidrs = vec!["10.0.0.1/8".into()];
    let err = servio_webhooks::Webhooks::start(bad).await.err().expect("a bad CIDR stops the start");
    assert!(err.to_string().contains("WEBHOOKS_ALLOWED_PRIVATE_CIDRS"), "{err}");
}

/// A present but unusable `Idempotency-Key` header is refused, so a retried publish can never
/// silently become a second event.
#[actix_web::test]
async fn unusable_idempotency_key_headers_are_refused() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url})).await;
    let h = host(&app);
    let body = r#"{"event":"order.created","data":{"orderId":"o-1"}}"#;
    let long = format!("Idempotency-Key: {}", "k".repeat(256));
    for key in ["Idempotency-Key: ", "Idempotency-Key: cl\u{e9}-1", "Idempotency-Key: a\tb", long.as_str()] {
        let got =
            raw(&app.base, request("POST", "/v1/events", &[&h, "Content-Type: application/json", key], body)).await;
        assert_error(&got, 400, "invalid_idempotency_key", &key[..key.len().min(40)]);
    }
    let got = raw(
        &app.base,
        request(
            "POST",
            "/v1/events",
            &[&h, "Content-Type: application/json", "Idempotency-Key: a", "Idempotency-Key: b"],
            body,
        ),
    )
    .await;
    assert_error(&got, 400, "invalid_idempotency_key", "two headers");
    let (_, deliveries) = app.get("/v1/deliveries").await;
    assert_eq!(deliveries["data"], json!([]), "nothing was published");
    // A usable one (spaces inside are fine) still deduplicates.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let got = raw(
            &app.base,
            request(
                "POST",
                "/v1/events",
                &[&h, "Content-Type: application/json", "Idempotency-Key: order 1 created"],
                body,
            ),
        )
        .await;
        assert_eq!(got.0, 202, "{}", got.1);
        ids.push(got.1["id"].clone());
    }
    assert_eq!(ids[0], ids[1]);
    let longest = format!("Idempotency-Key: {}", "k".repeat(255));
    let got =
        raw(&app.base, request("POST", "/v1/events", &[&h, "Content-Type: application/json", &longest], body)).await;
    assert_eq!(got.0, 202, "{}", got.1);
    app.stop().await;
}

/// Custom headers may not carry credentials, hop-by-hop headers or framing the sender owns.
#[actix_web::test]
async fn custom_headers_cannot_carry_credentials_or_hop_by_hop_headers() {
    let app = TestApp::start().await;
    for name in [
        "Authorization",
        "Proxy-Authorization",
        "Cookie",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Connection",
        "Transfer-Encoding",
        "Content-Encoding",
        "Host",
        "Expect",
    ] {
        let (status, json) =
            app.post("/v1/webhooks", json!({"url": "https://example.com/hook", "headers": {name: "x"}})).await;
        assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_header")), "{name}: {json}");
    }
    assert_eq!(webhook_count(&app).await, 0);
    app.register(json!({"url": "https://example.com/hook", "headers": {"X-Tenant": "servio-1"}})).await;
    app.stop().await;
}

/// The real binary, with its stdout (the log) kept in a file.
struct Server {
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(env: &[(&str, &str)]) -> Self {
        // The binary lives in the target directory, which concurrent builds of other checkouts may
        // share and overwrite: say so plainly rather than fail on a missing feature.
        let help = Command::new(env!("CARGO_BIN_EXE_servio-webhooks")).args(["serve", "--help"]).output().unwrap();
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("--metrics-idle-timeout-secs"),
            "{} is not a build of this tree (another build replaced it?)",
            env!("CARGO_BIN_EXE_servio-webhooks")
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stdout.log");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_servio-webhooks"));
        cmd.arg("serve")
            .env("WEBHOOKS_BIND", format!("127.0.0.1:{port}"))
            .env("WEBHOOKS_DATABASE_URL", format!("sqlite://{}", dir.path().join("w.db").display()))
            .env("WEBHOOKS_SQLITE_SYNCHRONOUS", "normal")
            .env("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
            .env_remove("WEBHOOKS_LOG")
            .env_remove("WEBHOOKS_ADMIN_TOKEN")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("binary starts");
        let base = format!("http://127.0.0.1:{port}");
        let http = http_client();
        eventually(Duration::from_secs(30), "server answers /healthz", || {
            let req = http.get(format!("{base}/healthz")).send();
            async move { req.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        Self { child, base, log, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests actix cannot parse: each one used to be logged at ERROR.
async fn send_garbage(base: &str) {
    for junk in [
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        "BLAH\u{1}\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ] {
        let got = raw(base, junk.to_string()).await;
        assert!(got.0 == 400 || got.0 == 0, "{junk:?} -> {}", got.2);
    }
}

/// Anyone who can connect could fill the log with malformed requests; by default they stay out of
/// it, and an operator who asks for them (debug, or naming actix_http) still gets them.
#[actix_web::test]
async fn malformed_requests_do_not_flood_the_log() {
    let quiet = Server::start(&[]).await;
    send_garbage(&quiet.base).await;
    let verbose = Server::start(&[("WEBHOOKS_LOG", "info,actix_http=error")]).await;
    send_garbage(&verbose.base).await;
    // The verbose one shows what the default filter hides.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !verbose.log().contains("actix_http::h1") {
        assert!(Instant::now() < deadline, "actix-http logged nothing for malformed requests: {}", verbose.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = quiet.log();
    assert!(log.contains("listening"), "the log works: {log}");
    assert!(!log.contains("actix_http") && !log.contains("ERROR"), "{log}");
}

/// 300 webhooks registered, delivered to and deleted: their series leave `/metrics` after the idle
/// timeout; a webhook still in use and the global series stay.
#[actix_web::test]
async fn deleted_webhooks_leave_metrics() {
    let server = Server::start(&[("WEBHOOKS_METRICS_IDLE_TIMEOUT_SECS", "1")]).await;
    let http = http_client();
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let mut req = http.request(method, format!("{}{path}", server.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        async move {
            let resp = req.send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let live = TestReceiver::ok();
    let churn = TestReceiver::ok();
    let (status, _) = call(
        reqwest::Method::PUT,
        "/v1/webhooks/live".into(),
        Some(json!({"url": live.url, "events": ["order.created"]})),
    )
    .await;
    assert_eq!(status, 201);
    let started = Instant::now();
    for i in 0..300 {
        let path = format!("/v1/webhooks/churn-{i}");
        let (status, body) = call(reqwest::Method::PUT, path.clone(), Some(json!({"url": churn.url}))).await;
        assert_eq!(status, 201, "{body}");
        let (status, body) =
            call(reqwest::Method::POST, "/v1/events".into(), Some(json!({"event": "order.created", "data": {"n": i}})))
                .await;
        assert_eq!(status, 202, "{body}");
        churn.wait_for(i + 1, Duration::from_secs(10)).await;
        let (status, _) = call(reqwest::Method::DELETE, path, None).await;
        assert_eq!(status, 204);
    }
    let cycles = started.elapsed();
    live.wait_for(300, Duration::from_secs(10)).await;
    let scrape = || async { call(reqwest::Method::GET, "/metrics".into(), None).await.1 };
    let before = scrape().await;
    assert!(before.contains("webhook=\"churn-299\""), "the churned webhooks were measured");
    // Gone one idle timeout after their endpoints stopped (and a scrape saw them); poll for it.
    let waited = Instant::now();
    let deadline = waited + Duration::from_secs(15);
    let after = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let text = scrape().await;
        if !text.contains("churn-") {
            break text;
        }
        if Instant::now() >= deadline {
            let left: Vec<&str> = text.lines().filter(|l| l.contains("churn-") && !l.contains("_bucket")).collect();
            panic!("deleted webhooks' series remain: {left:#?}");
        }
    };
    println!(
        "300 create/deliver/delete cycles in {cycles:?}: /metrics {} bytes at once, {} bytes {:?} later (idle timeout 1 s)",
        before.len(),
        after.len(),
        waited.elapsed()
    );
    assert!(before.len() > 500_000, "{} bytes before", before.len());
    assert!(after.len() < 32 * 1024, "{} bytes after", after.len());
    assert_eq!(metric(&after, "webhook_deliveries_total", &[("webhook", "live"), ("status", "success")]), Some(300.0));
    assert_eq!(metric(&after, "webhook_events_published_total", &[("event", "order.created")]), Some(300.0));
}
