//! Delivery semantics against real receivers: wire format and signatures, subscriptions, the retry
//! schedule, retryable vs final outcomes, Retry-After, redirects, timeouts, 410, the attempt log
//! and the metrics.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use servio_webhooks::signing::{self, SigningKey};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);

#[actix_web::test]
async fn delivers_the_payload_signed_with_both_header_sets() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let hook = app.register(json!({"url": receiver.url, "secret": secret, "headers": {"X-Tenant": "t-1"}})).await;
    let receipt = app.publish("order.created", json!({"orderId": "o-1", "items": [{"sku": "burger", "qty": 2}]})).await;
    let got = receiver.wait_for(1, WAIT).await;
    let req = &got[0];

    // Body: the seed's WebhookPayload, signature moved to headers.
    let body = req.json();
    assert_eq!(body["id"], receipt["id"]);
    assert_eq!(body["event"], "order.created");
    assert_eq!(body["data"]["items"][0]["sku"], "burger");
    assert_eq!(body["timestamp"], receipt["timestamp"]);
    assert_eq!(body.as_object().unwrap().len(), 4);

    // Standard Webhooks headers verify with the library's own receiver-side function.
    assert_eq!(req.header("webhook-id"), receipt["id"].as_str());
    assert!(req.header("webhook-signature").unwrap().starts_with("v1,"));
    signing::verify(secret, |name| req.header(name), &req.body).expect("signature verifies");
    // A tampered body does not.
    let mut tampered = req.body.clone();
    tampered.push(b' ');
    assert!(signing::verify(secret, |name| req.header(name), &tampered).is_err());

    // The seed's headers.
    assert_eq!(req.header("x-webhook-id"), receipt["id"].as_str());
    assert_eq!(req.header("x-webhook-event"), Some("order.created"));
    assert_eq!(req.header("x-webhook-timestamp"), receipt["timestamp"].as_str());
    let key = base64_key(secret);
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(&req.body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(req.header("x-webhook-signature"), Some(hex.as_str()));
    assert_eq!(SigningKey::from_secret(secret).unwrap().sign_body_hex(&req.body), hex);

    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("user-agent"), Some("Servio-Webhook/1.0"));
    assert_eq!(req.header("x-tenant"), Some("t-1"));

    // The delivery and its attempt log.
    let id = receipt["deliveries"][0]["id"].as_str().unwrap();
    assert_eq!(receipt["deliveries"][0]["webhookId"], hook["id"]);
    let d = app.wait_delivery(id, WAIT, |d| d["status"] == "success").await;
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["lastStatusCode"], 200);
    assert_eq!(d["payload"], body);
    let log = d["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["statusCode"], 200);
    assert_eq!(log[0]["responseBody"], "status 200");
    assert!(log[0]["durationMs"].is_u64());
    app.stop().await;
}

fn base64_key(secret: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap()
}

#[actix_web::test]
async fn each_webhook_gets_only_the_events_it_subscribed_to() {
    let app = TestApp::start().await;
    let orders = TestReceiver::ok();
    let everything = TestReceiver::ok();
    app.register(json!({"url": orders.url, "events": ["order.created"]})).await;
    app.register(json!({"url": everything.url})).await;
    let r1 = app.publish("table.updated", json!({"tableId": "t-1"})).await;
    assert_eq!(r1["deliveries"].as_array().unwrap().len(), 1);
    let r2 = app.publish("order.created", json!({"orderId": "o-1"})).await;
    assert_eq!(r2["deliveries"].as_array().unwrap().len(), 2);
    let got = everything.wait_for(2, WAIT).await;
    let got_orders = orders.wait_for(1, WAIT).await;
    assert_eq!(got_orders.len(), 1);
    assert_eq!(got_orders[0].json()["event"], "order.created");
    let mut events: Vec<String> = got.iter().map(|r| r.json()["event"].as_str().unwrap().to_string()).collect();
    events.sort();
    assert_eq!(events, ["order.created", "table.updated"]);
    app.stop().await;
}

#[actix_web::test]
async fn retries_follow_the_backoff_schedule_then_succeed() {
    let app = TestApp::start().await;
    // Fail three times, then succeed: 4 attempts, waits of 60, 120, 240 ms (no jitter).
    let receiver = TestReceiver::with(|i, _| Reply::Status(if i < 3 { 500 } else { 200 }));
    app.register(json!({"url": receiver.url, "retryConfig": fast_retry(5, 60)})).await;
    let receipt = app.publish("order.updated", json!({"orderId": "o-2"})).await;
    let got = receiver.wait_for(4, WAIT).await;
    let id = receipt["deliveries"][0]["id"].as_str().unwrap();
    let d = app.wait_delivery(id, WAIT, |d| d["status"] == "success").await;
    assert_eq!(d["attempts"], 4);
    // The same webhook-id on every attempt; each attempt freshly signed.
    assert!(got.iter().all(|r| r.header("webhook-id") == receipt["id"].as_str()));
    // Never earlier than the policy says.
    for (k, expected_ms) in [(1, 60), (2, 120), (3, 240)] {
        let gap = got[k].at.duration_since(got[k - 1].at);
        assert!(
            gap >= Duration::from_millis(expected_ms - 2),
            "attempt {} came {gap:?} after the previous, policy says {expected_ms} ms",
            k + 1
        );
    }
    let log = d["attemptLog"].as_array().unwrap();
    let codes: Vec<u64> = log.iter().map(|a| a["statusCode"].as_u64().unwrap()).collect();
    assert_eq!(codes, [500, 500, 500, 200]);
    assert_eq!(log[0]["error"], "HTTP 500");
    app.stop().await;
}

#[actix_web::test]
async fn gives_up_after_one_plus_max_retries_attempts() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(2, 10)})).await;
    let receipt = app.publish("inventory.low", json!({"sku": "buns", "left": 3})).await;
    let id = receipt["deliveries"][0]["id"].as_str().unwrap();
    let d = app.wait_delivery(id, WAIT, |d| d["status"] == "failed").await;
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 3);
    assert_eq!(d["nextRetryAt"], serde_json::Value::Null);
    assert_eq!(receiver.count(), 3, "no attempt after giving up");
    let wid = hook["id"].as_str().unwrap();
    let m = app.metrics().await;
    assert_eq!(metric(&m, "webhook_deliveries_total", &[("webhook", wid), ("status", "failed")]), Some(1.0));
    assert_eq!(metric(&m, "webhook_attempts_total", &[("webhook", wid), ("result", "failure")]), Some(3.0));
    assert_eq!(metric(&m, "webhook_errors_total", &[("webhook", wid), ("error_type", "http_5xx")]), Some(3.0));
    assert_eq!(metric(&m, "webhook_pending_deliveries", &[("webhook", wid)]), Some(0.0));
    assert_eq!(metric(&m, "webhook_attempts_per_delivery_count", &[("webhook", wid)]), Some(1.0));
    let (_, w) = app.get(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(w["state"], "healthy", "nothing is held back any more: {w}");
    assert_eq!(w["consecutiveFailures"], 3, "the streak is still shown");
    app.stop().await;
}

#[actix_web::test]
async fn client_errors_and_redirects_fail_at_once() {
    let app = TestApp::start().await;
    let bad_request = TestReceiver::with(|_, _| Reply::Status(400));
    let target = TestReceiver::ok();
    let redirect_to = target.url.clone();
    let redirect = TestReceiver::with(move |_, _| Reply::WithHeaders(302, vec![("location", redirect_to.clone())]));
    app.register(json!({"url": bad_request.url, "retryConfig": fast_retry(5, 10)})).await;
    app.register(json!({"url": redirect.url, "retryConfig": fast_retry(5, 10)})).await;
    let receipt = app.publish("order.deleted", json!({"orderId": "o-3"})).await;
    for d in receipt["deliveries"].as_array().unwrap() {
        let d = app.wait_delivery(d["id"].as_str().unwrap(), WAIT, |d| d["status"] == "failed").await;
        assert_eq!(d["attempts"], 1, "{d}");
    }
    assert_eq!(bad_request.count(), 1);
    assert_eq!(redirect.count(), 1);
    assert_eq!(target.count(), 0, "redirects are not followed");
    app.stop().await;
}

#[actix_web::test]
async fn gone_disables_the_endpoint_until_it_is_registered_again() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(410));
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(5, 10)})).await;
    let wid = hook["id"].as_str().unwrap();
    let receipt = app.publish("order.created", json!({"orderId": "o-4"})).await;
    let id = receipt["deliveries"][0]["id"].as_str().unwrap();
    let d = app.wait_delivery(id, WAIT, |d| d["status"] == "failed").await;
    assert_eq!(d["attempts"], 1);
    let w = wait_until(WAIT, "webhook shows disabled with a reason", || async {
        let w = app.get(&format!("/v1/webhooks/{wid}")).await.1;
        (w["state"] == "disabled" && w["disabledReason"].is_string()).then_some(w)
    })
    .await;
    assert_eq!(w["disabledReason"], "endpoint answered 410 Gone");
    // A disabled endpoint gets no new deliveries.
    let r2 = app.publish("order.created", json!({"orderId": "o-5"})).await;
    assert_eq!(r2["deliveries"], json!([]));
    // Registering it again (PUT) re-enables it.
    receiver.set(|_, _| Reply::Status(200));
    let (s, w) =
        app.request("PUT", &format!("/v1/webhooks/{wid}"), Some(&json!({"url": receiver.url}).to_string())).await;
    assert_eq!(s, 200);
    assert_eq!(w["state"], "healthy");
    let r3 = app.publish("order.created", json!({"orderId": "o-6"})).await;
    let id3 = r3["deliveries"][0]["id"].as_str().unwrap();
    app.wait_delivery(id3, WAIT, |d| d["status"] == "success").await;
    app.stop().await;
}

#[actix_web::test]
async fn retry_after_is_honoured_on_429() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|i, _| {
        if i == 0 { Reply::WithHeaders(429, vec![("retry-after", "1".into())]) } else { Reply::Status(200) }
    });
    app.register(json!({"url": receiver.url, "retryConfig": fast_retry(3, 10)})).await;
    app.publish("order.created", json!({"orderId": "o-7"})).await;
    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at.duration_since(got[0].at);
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}, Retry-After said 1 s");
    app.stop().await;
}

#[actix_web::test]
async fn timeouts_and_refused_connections_are_retried() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.request_timeout = Duration::from_millis(300);
    let app = TestApp::start_with(dir, s).await;
    let hanging = TestReceiver::with(|i, _| if i == 0 { Reply::Hang } else { Reply::Status(200) });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    app.register(json!({"url": hanging.url, "retryConfig": fast_retry(3, 10)})).await;
    app.register(json!({"url": closed_url, "retryConfig": fast_retry(1, 10)})).await;
    let receipt = app.publish("order.created", json!({"orderId": "o-8"})).await;
    for d in receipt["deliveries"].as_array().unwrap() {
        let id = d["id"].as_str().unwrap();
        let d = app.wait_delivery(id, WAIT, |d| d["status"] != "pending").await;
        let log = d["attemptLog"].as_array().unwrap();
        if d["status"] == "success" {
            assert_eq!(log[0]["error"], "timeout", "{d}");
            assert_eq!(log.len(), 2);
        } else {
            assert_eq!(log.len(), 2, "connection errors are retried: {d}");
            assert!(log[0]["error"].as_str().unwrap().contains("connection"), "{d}");
            assert_eq!(log[0].get("statusCode"), None);
        }
    }
    app.stop().await;
}

#[actix_web::test]
async fn in_flight_attempts_per_endpoint_are_capped() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(50), 200));
    app.register(json!({"url": receiver.url, "maxInFlight": 2})).await;
    for i in 0..10 {
        app.publish("order.created", json!({"n": i})).await;
    }
    receiver.wait_for(10, WAIT).await;
    assert_eq!(receiver.max_concurrency(), 2);
    app.stop().await;
}

#[actix_web::test]
async fn in_flight_attempts_across_endpoints_are_capped_globally() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.max_total_in_flight = 3;
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(30), 200));
    for _ in 0..3 {
        app.register(json!({"url": receiver.url})).await;
    }
    for i in 0..8 {
        app.publish("order.created", json!({"n": i})).await;
    }
    receiver.wait_for(24, WAIT).await;
    assert_eq!(receiver.max_concurrency(), 3);
    app.stop().await;
}

#[actix_web::test]
async fn library_publish_and_delivery_metrics() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url})).await;
    let wid = hook["id"].as_str().unwrap();
    let receipt = app.webhooks.publish("table.updated", json!({"tableId": "t-9", "status": "occupied"})).await.unwrap();
    assert_eq!(receipt.event, "table.updated");
    assert_eq!(receipt.deliveries.len(), 1);
    let err = app.webhooks.publish("table.exploded", json!({})).await.unwrap_err();
    assert!(err.to_string().contains("unknown event type"), "{err}");
    receiver.wait_for(1, WAIT).await;
    // A scrape reads the series one after another while the endpoint updates them one after
    // another (the attempt counter is read first and written first), so one scrape can see the
    // delivery counted and not yet its attempt: wait until one scrape shows all of them.
    let expected = [
        ("webhook_deliveries_total", Some(("status", "success"))),
        ("webhook_attempts_total", Some(("result", "success"))),
        ("webhook_delivery_latency_seconds_count", None),
        ("webhook_attempt_duration_seconds_count", None),
    ];
    let m = wait_until(WAIT, "success metrics", || async {
        let m = app.metrics().await;
        let all = expected.iter().all(|(name, extra)| {
            let labels: Vec<(&str, &str)> = std::iter::once(("webhook", wid)).chain(*extra).collect();
            metric(&m, name, &labels) == Some(1.0)
        });
        all.then_some(m)
    })
    .await;
    assert_eq!(metric(&m, "webhook_attempts_total", &[("webhook", wid), ("result", "failure")]), Some(0.0));
    assert!(metric(&m, "webhook_events_published_total", &[("event", "table.updated")]).unwrap() >= 1.0);
    app.stop().await;
}

/// With the `webhook` label off (`WEBHOOKS_METRICS_WEBHOOK_LABEL=false`) the pending gauge is one
/// series for the node: the sum over its webhooks. Each claim used to set that series to the
/// claimed webhook's own count, so registering a webhook with nothing pending showed 0 while
/// another had a backlog (and the backlog's completions then drove it below 0).
#[actix_web::test]
async fn the_unlabelled_pending_gauge_counts_every_webhook() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.metrics_webhook_label = false;
    let app = TestApp::start_with(dir, s).await;
    // The unlabelled series (tests running beside this one have labelled ones; none other
    // switches the label off).
    let pending = |m: &str| {
        m.lines().find_map(|l| l.strip_prefix("webhook_pending_deliveries ")).and_then(|v| v.parse::<f64>().ok())
    };
    let failing = TestReceiver::with(|_, _| Reply::Status(503));
    app.register(json!({"url": failing.url, "retryConfig": fast_retry(5, 60_000)})).await;
    for i in 0..3 {
        app.publish("order.created", json!({"i": i})).await;
    }
    failing.wait_for(3, WAIT).await; // each has had its first attempt; the next is a minute away
    assert_eq!(pending(&app.metrics().await), Some(3.0));
    let ok = TestReceiver::ok();
    app.register(json!({"url": ok.url})).await;
    assert_eq!(pending(&app.metrics().await), Some(3.0), "a new webhook leaves the others' count");
    app.publish("order.created", json!({"i": 3})).await;
    ok.wait_for(1, WAIT).await;
    // Three and one more for the failing endpoint; the delivered one has left the gauge.
    eventually(WAIT, "the pending gauge at 4", || async { pending(&app.metrics().await) == Some(4.0) }).await;
    app.stop().await;
}

/// `data` published over REST goes out byte for byte: the caller's key order, number spelling,
/// integers beyond 64 bits and escapes. (It used to pass through a `serde_json::Value`, which
/// sorted the keys, sent `25.070` as `25.07` and 123456789012345678901234567890 as
/// `1.2345678901234568e+29`.)
#[actix_web::test]
async fn rest_published_data_is_delivered_byte_for_byte() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url})).await;
    let data = r#"{"zeta":1,"big":123456789012345678901234567890,"amount":25.070,"text":"caf\u00e9","nested":{"b":[1.50,2],"a":null}}"#;
    let body = format!(r#"{{"event":"order.created","data":{data}}}"#);
    let (status, receipt) = app.request("POST", "/v1/events", Some(&body)).await;
    assert_eq!(status, 202, "{receipt}");
    let got = receiver.wait_for(1, WAIT).await;
    let sent = String::from_utf8(got[0].body.clone()).unwrap();
    assert!(sent.contains(&format!(r#""data":{data},"#)), "{sent}");
    // And the stored payload the API shows is that same value.
    let id = receipt["deliveries"][0]["id"].as_str().unwrap();
    let (_, raw) = app.request("GET", &format!("/v1/deliveries/{id}"), None).await;
    assert_eq!(raw["payload"]["data"]["zeta"], 1);
    // A body that is JSON but not an object is still refused, and an unknown field named.
    let (status, err) = app.request("POST", "/v1/events", Some(r#"["order.created"]"#)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_request")), "{err}");
    let (status, err) = app.request("POST", "/v1/events", Some(r#"{"event":"order.created","data":{},"dat":1}"#)).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"]["message"].as_str().unwrap().contains("unknown field `dat`"), "{err}");
    app.stop().await;
}
