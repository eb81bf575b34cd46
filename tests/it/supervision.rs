//! A panic inside an endpoint actor becomes a supervised restart, and the restarted actor picks its
//! pending deliveries (and their retry times) back up from the store.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

#[actix_web::test]
async fn a_panicking_endpoint_actor_is_restarted_and_recovers_its_deliveries() {
    let app = TestApp::start().await;
    // First attempt of each delivery fails; the retries (500 ms later) succeed.
    let receiver = TestReceiver::with(|i, _| Reply::Status(if i < 5 { 500 } else { 200 }));
    let hook = app.register(json!({"url": receiver.url, "retryConfig": fast_retry(3, 500)})).await;
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
    // The retries are now armed on timers, which a restart drops.
    assert!(app.webhooks.inject_endpoint_panic(&wid).await);
    for id in &ids {
        let d = app.wait_delivery(id, WAIT, |d| d["status"] == "success").await;
        assert_eq!(d["attempts"], 2, "retried once, from the store's schedule: {d}");
    }
    let m = app.metrics().await;
    assert_eq!(metric(&m, "webhook_endpoint_restarts_total", &[("webhook", &wid)]), Some(1.0));
    // The restarted actor keeps taking new deliveries.
    let r = app.publish("order.updated", json!({"after": "restart"})).await;
    app.wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert!(!app.webhooks.inject_endpoint_panic("no-such-webhook").await);
    app.stop().await;
}
