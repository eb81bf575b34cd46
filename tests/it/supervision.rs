//! Every panic in an endpoint's work becomes a supervised restart that reloads from the store:
//! in a handler, in an attempt, in a page-in; a delivery that crashes its endpoint again and again
//! is failed with the reason; an actor that dies outside its supervisor is replaced.

use std::time::Duration;

use serde_json::json;
use servio_webhooks::delivery::faults::Fault;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

fn restarts(metrics: &str, webhook: &str) -> f64 {
    metric(metrics, "webhook_endpoint_restarts_total", &[("webhook", webhook)]).unwrap_or(0.0)
}

#[actix_web::test]
async fn a_panicking_handler_restarts_the_actor_which_reloads_its_schedule_from_the_store() {
    let app = TestApp::start().await;
    // First attempt of each delivery fails; the retries (2 s later) succeed.
    let receiver = TestReceiver::with(|i, _| Reply::Status(if i < 5 { 500 } else { 200 }));
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(3, 2_000)})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.publish("order.created", json!({"n": i})).await["deliveries"][0]["id"].as_str().unwrap().to_string(),
        );
    }
    receiver.wait_for(5, WAIT).await;
    for id in &ids {
        app.wait_delivery(id, WAIT, |d| d["attempts"] == 1 && d["status"] == "pending").await;
    }
    // The retries are armed on in-memory timers, which a restart drops. Move one delivery's retry
    // an hour on in the store only: if the restarted actor reloads from the store it leaves that
    // one alone and retries the other four on time.
    let db = rusqlite::Connection::open(app.dir.path().join("webhooks.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let later = servio_webhooks::model::now_ms() + 3_600_000;
    let changed = db
        .execute("UPDATE deliveries SET next_attempt_at = ?1 WHERE id = ?2", rusqlite::params![later, ids[0]])
        .unwrap();
    assert_eq!(changed, 1);
    assert!(app.webhooks.inject_endpoint_panic(&wid).await);
    for id in &ids[1..] {
        let d = app.wait_delivery(id, WAIT, |d| d["status"] == "success").await;
        assert_eq!(d["attempts"], 2, "retried once, from the store's schedule: {d}");
    }
    let held = app.delivery(&ids[0]).await;
    assert_eq!((held["status"].as_str(), held["attempts"].as_u64()), (Some("pending"), Some(1)), "{held}");
    assert_eq!(held["nextRetryAt"], servio_webhooks::model::rfc3339(later), "the store's time, not the old timer's");
    assert_eq!(restarts(&app.metrics().await, &wid), 1.0);
    // The restarted actor keeps taking new deliveries.
    let r = app.publish("order.updated", json!({"after": "restart"})).await;
    app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert!(!app.webhooks.inject_endpoint_panic("no-such-webhook").await);
    app.stop().await;
}

#[actix_web::test]
async fn a_panic_inside_an_attempt_restarts_the_endpoint_and_the_delivery_goes_out() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    assert!(app.webhooks.inject_fault(&wid, Fault::AttemptPanic).await);
    let r = app.publish("order.created", json!({"n": 1})).await;
    let d = app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert_eq!(d["attempts"], 1, "the attempt that panicked was never recorded, the retry was: {d}");
    assert_eq!(receiver.count(), 1, "the panicking attempt sent nothing");
    assert_eq!(restarts(&app.metrics().await, &wid), 1.0);
    app.stop().await;
}

#[actix_web::test]
async fn a_panic_while_paging_in_restarts_the_endpoint_and_nothing_is_lost() {
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.window = 4;
    let app = TestApp::start_with(dir, s).await;
    // Slow enough that 30 quick publishes overflow the window of 4: the rest is paged in.
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(40), 200));
    let hook = app.register(json!({"url": receiver.url, "maxInFlight": 1})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    assert!(app.webhooks.inject_fault(&wid, Fault::PagePanic).await);
    let mut events = std::collections::HashSet::new();
    for i in 0..30 {
        events.insert(app.publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
    }
    eventually(WAIT, "every event delivered", || {
        let got: std::collections::HashSet<String> = receiver.received().iter().map(Received::event_id).collect();
        let done = got == events;
        async move { done }
    })
    .await;
    // The restart cut the one attempt in flight short; it was sent again (at least once).
    assert!(receiver.count() <= 31, "at most the one attempt in flight was repeated: {}", receiver.count());
    assert_eq!(restarts(&app.metrics().await, &wid), 1.0, "the page-in panicked once");
    app.stop().await;
}

#[actix_web::test]
async fn a_delivery_that_crashes_its_endpoint_every_time_is_failed_with_the_reason() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url, "maxInFlight": 1})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    assert!(app.webhooks.inject_fault(&wid, Fault::PanicOnPayload("poison".into())).await);
    let bad = app.publish("order.created", json!({"note": "poison"})).await;
    let good = app.publish("order.created", json!({"note": "fine"})).await;
    let d = app.wait_delivery(bad["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "failed").await;
    let reason = d["error"].as_str().unwrap_or_default();
    assert!(reason.contains("crashed the endpoint worker 3 times"), "{d}");
    assert_eq!(d["attempts"], 0, "it never reached the receiver");
    app.wait_delivery(good["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert_eq!(restarts(&app.metrics().await, &wid), 3.0, "three crashes, then no crash loop");
    let after = app.publish("order.updated", json!({"note": "later"})).await;
    app.wait_delivery(after["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    app.stop().await;
}

#[actix_web::test]
async fn an_actor_that_dies_outside_its_supervisor_is_replaced() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url})).await;
    let wid = hook["id"].as_str().unwrap().to_string();
    let first = app.publish("order.created", json!({"n": 1})).await;
    app.wait_delivery(first["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert!(app.webhooks.inject_fault(&wid, Fault::Kill).await);
    eventually(WAIT, "the actor is gone", || async { app.webhooks.running_endpoint_actors().await == 0 }).await;
    let r = app.publish("order.created", json!({"n": 2})).await;
    app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert_eq!(receiver.count(), 2);
    app.stop().await;
}
