//! One slow, hanging or failing endpoint must not hold back the others; a failing one is paused
//! by its breaker without its waiting deliveries spending their attempts.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// The hanging endpoint's attempt timeout. A healthy delivery held up behind it (a shared queue,
/// a shared in-flight limit) would wait about this long.
const HANG_TIMEOUT: Duration = Duration::from_secs(8);

#[actix_web::test]
async fn a_hanging_and_a_failing_endpoint_do_not_delay_a_healthy_one() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.request_timeout = HANG_TIMEOUT;
    let app = TestApp::start_with(dir, s).await;
    let hanging = TestReceiver::with(|_, _| Reply::Hang);
    let failing = TestReceiver::with(|_, _| Reply::Status(500));
    let healthy = TestReceiver::ok();
    let hang_hook = app.register(json!({"url": hanging.url, "maxInFlight": 4})).await;
    app.register(json!({"url": failing.url, "retryConfig": fast_retry(50, 5)})).await;
    app.register(json!({"url": healthy.url})).await;
    let mut published_at = HashMap::new();
    for i in 0..40 {
        let before = Instant::now();
        let r = app.publish("order.created", json!({"n": i})).await;
        assert_eq!(r["deliveries"].as_array().unwrap().len(), 3);
        published_at.insert(r["id"].as_str().unwrap().to_string(), before);
    }
    let got = healthy.wait_for(40, WAIT).await;
    let mut ids: Vec<String> = got.iter().map(|r| r.event_id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40, "every event reached the healthy endpoint");
    // Publish -> receipt at the healthy endpoint, per event: far below the hanging endpoint's
    // timeout, which is what a delivery queued behind it would wait. A bound, not a speed claim.
    let mut latencies: Vec<Duration> = got.iter().map(|r| r.at.duration_since(published_at[&r.event_id()])).collect();
    latencies.sort();
    let worst = *latencies.last().unwrap();
    println!(
        "healthy beside hanging and failing: publish -> receipt median {:?}, worst {worst:?} (hanging timeout {HANG_TIMEOUT:?})",
        latencies[latencies.len() / 2]
    );
    assert!(worst < HANG_TIMEOUT / 2, "a healthy delivery took {worst:?}, beside a {HANG_TIMEOUT:?} hang");
    // The hanging endpoint holds exactly its in-flight limit and nothing of it has finished.
    assert_eq!(hanging.count(), 4);
    let (_, pending) = app
        .get(&format!("/v1/deliveries?webhookId={}&status=pending&limit=250", hang_hook["id"].as_str().unwrap()))
        .await;
    assert_eq!(pending["data"].as_array().unwrap().len(), 40);
    // And the failing one is being retried all the while.
    eventually(WAIT, "the failing endpoint's deliveries are retried", || async { failing.count() > 80 }).await;
    app.stop().await;
}

#[actix_web::test]
async fn breaker_pauses_a_failing_endpoint_and_waiting_deliveries_keep_their_attempts() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.breaker.failure_threshold = 3;
    s.breaker.cooldown = Duration::from_millis(300);
    s.breaker.max_cooldown = Duration::from_secs(5);
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(500));
    // Without the breaker, 4 retries 10..80 ms apart would exhaust every delivery in ~150 ms.
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(4, 10)})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..6 {
        let r = app.publish("order.created", json!({"n": i})).await;
        ids.push(r["deliveries"][0]["id"].as_str().unwrap().to_string());
    }
    eventually(WAIT, "the breaker pauses the endpoint", || async {
        app.get(&format!("/v1/webhooks/{wid}")).await.1["state"] == "paused"
    })
    .await;
    // Paused: single probes, spaced by the cool-down (300 ms, then 600 ms).
    let before = receiver.count();
    let probes = receiver.wait_for(before + 2, WAIT).await;
    let gap = probes[before + 1].at.duration_since(probes[before].at);
    assert!(gap >= Duration::from_millis(590), "second probe came {gap:?} after the first");
    // Recovery: the next probe succeeds, the breaker closes, everything is delivered.
    receiver.set(|_, _| Reply::Status(200));
    for id in &ids {
        let d = app.wait_delivery(id, WAIT, |d| d["status"] != "pending").await;
        assert_eq!(d["status"], "success", "a delivery waiting behind the breaker kept its attempts: {d}");
    }
    let (_, w) = app.get(&format!("/v1/webhooks/{wid}")).await;
    assert_eq!(w["state"], "healthy");
    assert_eq!(w["consecutiveFailures"], 0);
    assert!(w["lastSuccessAt"].is_string());
    app.stop().await;
}

#[actix_web::test]
async fn hanging_endpoints_cannot_take_every_attempt_permit_from_healthy_ones() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.max_total_in_flight = 8; // failing endpoints may use 4 of them
    s.delivery.request_timeout = Duration::from_secs(5);
    let app = TestApp::start_with(dir, s).await;
    // Each bad endpoint fails its first request (so it is known to be failing), then hangs.
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    let bad = TestReceiver::with(move |_, r| {
        let hook = r.header("x-hook").unwrap_or_default().to_string();
        if seen.lock().unwrap().insert(hook) { Reply::Status(500) } else { Reply::Hang }
    });
    let good = TestReceiver::ok();
    for i in 0..6 {
        app.register(json!({"url": bad.url, "headers": {"x-hook": i.to_string()}, "maxInFlight": 16,
                            "retryConfig": fast_retry(50, 20)}))
            .await;
    }
    app.register(json!({"url": good.url, "maxInFlight": 16})).await;
    app.publish("order.created", json!({"n": 0})).await;
    bad.wait_for(6, WAIT).await; // every bad endpoint has failed once
    good.wait_for(1, WAIT).await;
    for i in 1..=20 {
        app.publish("order.created", json!({"n": i})).await;
    }
    good.wait_for(21, WAIT).await;
    // The healthy endpoint got through while every bad attempt still hung (none has timed out
    // yet), because the failing ones could hold only half the permits between them.
    let (_, failed) = app.get("/v1/deliveries?status=pending&limit=250").await;
    let timeouts = failed["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["error"].as_str().is_some_and(|e| e.contains("timeout")))
        .count();
    assert_eq!(timeouts, 0, "the healthy deliveries did not wait for the hanging ones to time out");
    assert!(bad.max_concurrency() <= 4, "failing endpoints held at most half the pool: {}", bad.max_concurrency());
    assert!(bad.max_concurrency() >= 2, "and they did hold some: {}", bad.max_concurrency());
    app.stop().await;
}
