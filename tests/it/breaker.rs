//! The breaker does what the README says, read through the API: probes do not spend a delivery's
//! attempts, the first probe goes after the cool-down (not on the delivery's own, later retry
//! time), a paused delivery's `nextRetryAt` is the probe time, and a webhook with nothing held
//! back does not stay `paused` or `backing_off`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::config::Settings;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

fn breaker_settings(dir: &tempfile::TempDir, threshold: u32, cooldown_ms: u64) -> Settings {
    let mut s = settings(dir);
    s.breaker.failure_threshold = threshold;
    s.breaker.cooldown = Duration::from_millis(cooldown_ms);
    s.breaker.max_cooldown = Duration::from_millis(cooldown_ms * 2);
    s
}

async fn state(app: &TestApp, id: &str) -> Value {
    app.get(&format!("/v1/webhooks/{id}")).await.1
}

fn ms(rfc3339: &Value) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339.as_str().expect("a time")).unwrap();
    servio_webhooks::model::to_ms(t)
}

#[actix_web::test]
async fn probes_do_not_spend_the_deliverys_attempts() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), breaker_settings(&dir, 2, 150)).await;
    // 6 failures, then success. The delivery may make 1 + 2 attempts of its own.
    let receiver = TestReceiver::with(|i, _| Reply::Status(if i < 6 { 503 } else { 200 }));
    app.register(json!({"url": receiver.url, "retryConfig": fast_retry(2, 50)})).await;
    let r = app.publish("order.created", json!({"n": 1})).await;
    let id = r["deliveries"][0]["id"].as_str().unwrap().to_string();
    let d = app.wait_delivery(&id, WAIT, |d| d["status"] != "pending").await;
    assert_eq!(d["status"], "success", "the failed probes did not use its budget up: {d}");
    assert_eq!(d["attempts"], 7, "2 of its own, 4 failed probes, the probe that got through");
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 7);
    app.stop().await;
}

#[actix_web::test]
async fn the_first_probe_goes_after_the_cool_down_not_on_the_deliverys_schedule() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), breaker_settings(&dir, 1, 200)).await;
    let receiver = TestReceiver::with(|i, _| Reply::Status(if i == 0 { 500 } else { 200 }));
    // Its own retry would wait 10 s; the breaker's probe is due after 200 ms.
    app.register(json!({"url": receiver.url, "retryConfig": fast_retry(3, 10_000)})).await;
    let r = app.publish("order.created", json!({"n": 1})).await;
    let id = r["deliveries"][0]["id"].as_str().unwrap().to_string();
    let d = app.wait_delivery(&id, WAIT, |d| d["status"] == "success").await;
    let log = d["attemptLog"].as_array().unwrap();
    assert_eq!(log.len(), 2);
    let gap = ms(&log[1]["at"]) - ms(&log[0]["at"]);
    assert!(gap < 5_000, "the probe went at the cool-down, not at the 10 s retry: {gap} ms");
    app.stop().await;
}

#[actix_web::test]
async fn a_paused_deliverys_next_retry_is_the_probe_time_and_the_state_says_paused() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), breaker_settings(&dir, 1, 3_000)).await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(5, 10)})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    let first = app.publish("order.created", json!({"n": 1})).await;
    receiver.wait_for(1, WAIT).await;
    // A second delivery waits behind the open breaker without an attempt.
    let second = app.publish("order.created", json!({"n": 2})).await;
    let id = second["deliveries"][0]["id"].as_str().unwrap().to_string();
    eventually(WAIT, "paused", || async { state(&app, &wid).await["state"] == "paused" }).await;
    let d = app.delivery(&id).await;
    assert_eq!(d["attempts"], 0, "held back, not attempted: {d}");
    let next = ms(&d["nextRetryAt"]);
    assert!(next >= servio_webhooks::model::now_ms() - 100, "nextRetryAt is the coming probe, not a past time: {d}");
    let f = app.delivery(first["deliveries"][0]["id"].as_str().unwrap()).await;
    assert!(ms(&f["nextRetryAt"]) >= next - 100, "the failed one waits for the probe too: {f}");
    app.stop().await;
}

#[actix_web::test]
async fn a_webhook_with_nothing_held_back_is_not_left_paused_or_backing_off() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), breaker_settings(&dir, 2, 300)).await;
    let receiver = TestReceiver::with(|_, r| {
        if String::from_utf8_lossy(&r.body).contains("bad") { Reply::Status(400) } else { Reply::Status(503) }
    });
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(0, 10)})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    // A 400 fails the delivery at once: nothing waits, so nothing is backing off.
    let r = app.publish("order.created", json!({"n": "bad"})).await;
    app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "failed").await;
    let w = state(&app, &wid).await;
    assert_eq!((w["state"].as_str(), w["consecutiveFailures"].as_u64()), (Some("healthy"), Some(1)), "{w}");
    // A second failure opens the breaker; with nothing held back, it is paused only for its
    // cool-down, then reads healthy (the next delivery goes out as the probe).
    let r = app.publish("order.created", json!({"n": "503"})).await;
    app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "failed").await;
    eventually(WAIT, "paused by the breaker", || async { state(&app, &wid).await["state"] == "paused" }).await;
    eventually(WAIT, "not paused once the cool-down is over", || async {
        state(&app, &wid).await["state"] == "healthy"
    })
    .await;
    assert_eq!(state(&app, &wid).await["consecutiveFailures"], 2, "the streak is still shown");
    app.stop().await;
}
