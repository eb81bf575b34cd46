//! Pacing: `rateLimitPerSecond` measured at real receivers, and `ordered` delivery through
//! retries, failures, the breaker and a restart on the same SQLite file.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// The `n` each request carried (`data.n`), in arrival order.
fn arrivals(receiver: &TestReceiver) -> Vec<u64> {
    receiver.received().iter().map(|r| r.json()["data"]["n"].as_u64().expect("data.n")).collect()
}

/// Publishes `order.created` with `data.n` = 0..n and returns the delivery ids (one webhook).
async fn publish_numbered(app: &TestApp, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let receipt = app.publish("order.created", json!({"n": i})).await;
        ids.push(receipt["deliveries"][0]["id"].as_str().unwrap().to_string());
    }
    ids
}

async fn wait_all(app: &TestApp, ids: &[String], status: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for id in ids {
        out.push(app.wait_delivery(id, WAIT, |d| d["status"] == status).await);
    }
    out
}

#[actix_web::test]
async fn the_rate_limit_holds_at_the_receiver_and_a_put_applies_it_live() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let (status, hook) =
        app.request("PUT", "/v1/webhooks/paced", Some(&json!({"url": receiver.url}).to_string())).await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!((hook["rateLimitPerSecond"].clone(), hook["ordered"].clone()), (Value::Null, json!(false)));
    // The endpoint's actor is running, unlimited.
    let first = publish_numbered(&app, 1).await;
    wait_all(&app, &first, "success").await;

    let body = json!({"url": receiver.url, "rateLimitPerSecond": 4});
    let (status, hook) = app.request("PUT", "/v1/webhooks/paced", Some(&body.to_string())).await;
    assert_eq!(status, 200, "{hook}");
    assert_eq!(hook["rateLimitPerSecond"], 4.0);
    assert_eq!(app.get("/v1/webhooks/paced").await.1["rateLimitPerSecond"], 4.0);

    let ids = publish_numbered(&app, 16).await;
    let deliveries = wait_all(&app, &ids, "success").await;
    for d in &deliveries {
        assert_eq!(d["attempts"], 1, "waiting for a token is not a failed attempt: {d}");
    }
    // A bucket of rate r and burst b = max(1, ceil(r)) starts at most b + r attempts in any
    // second: 8 here. Unlimited, all 16 would arrive at once.
    let mut at: Vec<_> = receiver.received()[1..].iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 16);
    for (i, start) in at.iter().enumerate() {
        let in_one_second = at[i..].iter().take_while(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(in_one_second <= 8, "{in_one_second} arrivals within 1 s from arrival {i}");
    }
    // From an empty bucket at 4 a second, at least 8 of the 16 had to wait for a token; the first
    // delivery, sent before the limit, did not.
    let metrics = app.metrics().await;
    let waited = metrics
        .lines()
        .find(|l| l.starts_with("webhook_rate_limited_attempts_total{webhook=\"paced\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no rate-limit series for the paced webhook:\n{metrics}"));
    assert!((8.0..=16.0).contains(&waited), "{waited} attempts waited for the limit");
    app.stop().await;
}

#[actix_web::test]
async fn a_rate_limited_endpoint_does_not_hold_up_another() {
    let app = TestApp::start().await;
    let slow = TestReceiver::ok();
    let fast = TestReceiver::ok();
    app.register(json!({"url": slow.url, "rateLimitPerSecond": 0.5})).await;
    app.register(json!({"url": fast.url})).await;
    let mut slow_deliveries = Vec::new();
    for i in 0..20 {
        let receipt = app.publish("order.created", json!({"n": i})).await;
        let deliveries = receipt["deliveries"].as_array().unwrap().clone();
        assert_eq!(deliveries.len(), 2);
        slow_deliveries.extend(deliveries.into_iter().map(|d| (d["id"].as_str().unwrap().to_string(), d)));
    }
    fast.wait_for(20, WAIT).await;
    // At 0.5 per second from an empty bucket the paced endpoint has had at most a few by now;
    // had its wait held anything shared, the other would have gone at its pace.
    assert!(slow.count() <= 3, "the paced endpoint got {} while the other got 20", slow.count());
    // Its deliveries wait; none failed for the limit.
    let (_, page) = app.get("/v1/deliveries?status=failed").await;
    assert_eq!(page["data"], json!([]));
    app.stop().await;
}

#[actix_web::test]
async fn ordered_delivery_keeps_publish_order_through_retries() {
    let app = TestApp::start().await;
    let tries_of_second = Arc::new(AtomicUsize::new(0));
    let tries = tries_of_second.clone();
    let receiver = TestReceiver::with(move |_, r| {
        if r.json()["data"]["n"] == 1 && tries.fetch_add(1, Ordering::SeqCst) < 2 {
            Reply::Status(503)
        } else {
            Reply::Status(200)
        }
    });
    let hook = app
        .register(json!({"url": receiver.url, "ordered": true, "retryConfig": fast_retry(5, 100), "maxInFlight": 8}))
        .await;
    assert_eq!(hook["ordered"], true);
    let ids = publish_numbered(&app, 5).await;
    let deliveries = wait_all(&app, &ids, "success").await;
    // One attempt at a time, in publish order: the second is tried three times before anything
    // after it goes, and the later ones are not failed for waiting.
    assert_eq!(arrivals(&receiver), [0, 1, 1, 1, 2, 3, 4]);
    assert_eq!(receiver.max_concurrency(), 1);
    assert_eq!(deliveries[1]["attempts"], 3);
    for d in &deliveries[2..] {
        assert_eq!(d["attempts"], 1, "{d}");
    }
    app.stop().await;
}

#[actix_web::test]
async fn a_delivery_that_fails_for_good_lets_the_next_go() {
    let app = TestApp::start().await;
    let receiver =
        TestReceiver::with(|_, r| if r.json()["data"]["n"] == 1 { Reply::Status(500) } else { Reply::Status(200) });
    app.register(json!({"url": receiver.url, "ordered": true, "retryConfig": fast_retry(1, 50)})).await;
    let ids = publish_numbered(&app, 4).await;
    let failed = app.wait_delivery(&ids[1], WAIT, |d| d["status"] == "failed").await;
    assert_eq!(failed["attempts"], 2, "1 + maxRetries attempts: {failed}");
    wait_all(&app, &[ids[0].clone(), ids[2].clone(), ids[3].clone()], "success").await;
    assert_eq!(arrivals(&receiver), [0, 1, 1, 2, 3]);
    app.stop().await;
}

#[actix_web::test]
async fn an_ordered_endpoint_probes_with_its_head_and_keeps_the_order() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.breaker.failure_threshold = 2;
    s.breaker.cooldown = Duration::from_millis(300);
    let app = TestApp::start_with(dir, s).await;
    // The first three requests fail: two open the breaker, the first probe fails too.
    let receiver = TestReceiver::with(|i, _| if i < 3 { Reply::Status(503) } else { Reply::Status(200) });
    app.register(json!({"url": receiver.url, "ordered": true, "retryConfig": fast_retry(10, 50)})).await;
    let ids = publish_numbered(&app, 3).await;
    wait_all(&app, &ids, "success").await;
    assert_eq!(arrivals(&receiver), [0, 0, 0, 0, 1, 2], "the probes carried the head; the rest waited");
    app.stop().await;
}

#[actix_web::test]
async fn ordered_delivery_keeps_its_order_across_a_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    app.register(json!({"url": receiver.url, "ordered": true, "retryConfig": fast_retry(10, 1_000)})).await;
    let ids = publish_numbered(&app, 4).await;
    receiver.wait_for(1, WAIT).await;
    let dir = app.stop().await;
    // The head waits for its retry; the others, never tried, were due long before it. A reload by
    // due time would send them first.
    receiver.set(|_, _| Reply::Status(200));
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    wait_all(&app, &ids, "success").await;
    let got = arrivals(&receiver);
    let head_tries = got.iter().take_while(|n| **n == 0).count();
    assert!(head_tries >= 2, "{got:?}");
    assert_eq!(got[head_tries..], [1, 2, 3], "{got:?}");
    app.stop().await;
}

#[actix_web::test]
async fn pacing_fields_are_validated_and_bad_ones_change_nothing() {
    let app = TestApp::start().await;
    let cases = [
        r#"{"url":"https://example.com","rateLimitPerSecond":0}"#,
        r#"{"url":"https://example.com","rateLimitPerSecond":-1}"#,
        r#"{"url":"https://example.com","rateLimitPerSecond":"x"}"#,
        r#"{"url":"https://example.com","rateLimitPerSecond":1e9}"#,
        r#"{"url":"https://example.com","rateLimitPerSecond":10000.5}"#,
        r#"{"url":"https://example.com","ordered":"yes"}"#,
        r#"{"url":"https://example.com","ordered":1}"#,
    ];
    for body in cases {
        for (method, path) in [("POST", "/v1/webhooks"), ("PUT", "/v1/webhooks/w1")] {
            let (status, json) = app.request(method, path, Some(body)).await;
            assert_eq!(status, 400, "{method} {body} -> {json}");
            assert_eq!(json["error"]["code"], "invalid_request", "{method} {body} -> {json}");
            let message = json["error"]["message"].as_str().unwrap();
            let field = if body.contains("ordered") { "ordered" } else { "rateLimitPerSecond" };
            assert!(message.contains(field), "{body} -> {message}");
        }
    }
    assert_eq!(app.get("/v1/webhooks").await.1["data"], json!([]), "nothing was stored");

    let body = json!({"url": "https://example.com", "rateLimitPerSecond": 10000, "ordered": true});
    let (status, hook) = app.request("PUT", "/v1/webhooks/w1", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{hook}");
    assert_eq!((hook["rateLimitPerSecond"].clone(), hook["ordered"].clone()), (json!(10000.0), json!(true)));
    // A bad replacement leaves it as it was; a good one without the fields clears them.
    let bad = r#"{"url":"https://example.com","rateLimitPerSecond":0}"#;
    assert_eq!(app.request("PUT", "/v1/webhooks/w1", Some(bad)).await.0, 400);
    assert_eq!(app.get("/v1/webhooks/w1").await.1["rateLimitPerSecond"], 10000.0);
    let body = json!({"url": "https://example.com", "rateLimitPerSecond": null, "ordered": null});
    let (status, hook) = app.request("PUT", "/v1/webhooks/w1", Some(&body.to_string())).await;
    assert_eq!(status, 200, "{hook}");
    assert_eq!((hook["rateLimitPerSecond"].clone(), hook["ordered"].clone()), (Value::Null, json!(false)));
    app.stop().await;
}

/// Two nodes on PostgreSQL: an ordered, rate-limited webhook whose owner leaves while its head is
/// retrying. The new owner goes on with the head, then the rest in publish order (published on
/// both nodes), and the limit holds across the move.
#[actix_web::test]
async fn order_and_rate_hold_across_a_lease_move() {
    let Some(db) = super::pg::schema().await else { return };
    let node = |name: &str| {
        let mut s = settings(&tempfile::tempdir().unwrap());
        s.database_url = db.url.clone();
        s.node_id = Some(name.to_string());
        s.cluster.heartbeat_interval = Duration::from_millis(250);
        s.cluster.lease_ttl = Duration::from_millis(2_000);
        s.cluster.poll_interval = Duration::from_millis(500);
        s.shutdown_grace = Duration::from_secs(5);
        s
    };
    let mut nodes = Vec::new();
    for name in ["pace-a", "pace-b"] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        nodes.push(TestApp::start_with(dir, node(name)).await);
    }
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    let body =
        json!({"url": receiver.url, "ordered": true, "rateLimitPerSecond": 2, "retryConfig": fast_retry(10, 1_000)});
    let hook = nodes[0].register(body).await;
    let path = format!("/v1/webhooks/{}", hook["id"].as_str().unwrap());
    let owner = wait_until(WAIT, "an owner", || {
        let (app, path) = (&nodes[0], path.clone());
        async move { app.get(&path).await.1["ownerNode"].as_str().map(str::to_string) }
    })
    .await;
    // Published alternately on both nodes, each after the previous returned.
    let mut ids = Vec::new();
    for i in 0..4u64 {
        let receipt = nodes[(i % 2) as usize].publish("order.created", json!({"n": i})).await;
        ids.push(receipt["deliveries"][0]["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(1, WAIT).await;
    let leaving = if owner == "pace-a" { 0 } else { 1 };
    nodes.remove(leaving).stop().await;
    receiver.set(|_, _| Reply::Status(200));
    let stayed = &nodes[0];
    wait_all(stayed, &ids, "success").await;
    assert_ne!(stayed.get(&path).await.1["ownerNode"], json!(owner), "the lease moved");
    let got = arrivals(&receiver);
    let head_tries = got.iter().take_while(|n| **n == 0).count();
    assert!(head_tries >= 2, "{got:?}");
    assert_eq!(got[head_tries..], [1, 2, 3], "{got:?}");
    let at: Vec<_> = receiver.received().iter().map(|r| r.at).collect();
    for (i, start) in at.iter().enumerate() {
        let n = at[i..].iter().take_while(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(n <= 4, "{n} arrivals within 1 s (burst 2 + rate 2)");
    }
    for n in nodes {
        n.stop().await;
    }
}
