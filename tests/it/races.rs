//! Races that used to strand or misrecord deliveries, run many times: delete against publish,
//! disable against attempts in flight and re-enable, re-enable against hibernation, and a publish
//! committed while the subsystem shuts down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::Webhooks;
use servio_webhooks::config::Settings;
use servio_webhooks::model::WebhookSpec;

use crate::helpers::*;
use crate::pg;

const WAIT: Duration = Duration::from_secs(20);

/// Whether a request's body contains `text`.
fn body_has(r: &Received, text: &str) -> bool {
    String::from_utf8_lossy(&r.body).contains(text)
}

#[actix_web::test]
async fn a_2xx_landing_after_a_parallel_410_is_recorded_as_delivered() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, r| {
        if body_has(r, "slow") { Reply::Delayed(Duration::from_millis(400), 200) } else { Reply::Status(410) }
    });
    let hook = app.register(json!({"url": receiver.url, "maxInFlight": 2})).await;
    let slow = app.publish("order.created", json!({"n": "slow"})).await;
    receiver.wait_for(1, WAIT).await;
    let gone = app.publish("order.created", json!({"n": "gone"})).await;
    let d = app.wait_delivery(slow["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert_eq!((d["attempts"].as_u64(), d["lastStatusCode"].as_u64()), (Some(1), Some(200)), "{d}");
    assert_eq!(d["error"], Value::Null, "{d}");
    let g = app.delivery(gone["deliveries"][0]["id"].as_str().unwrap()).await;
    assert_eq!(g["status"], "failed");
    let (_, w) = app.get(&format!("/v1/webhooks/{}", hook["id"].as_str().unwrap())).await;
    assert_eq!(w["state"], "disabled", "{w}");
    app.stop().await;
}

#[actix_web::test]
async fn an_attempt_started_before_a_disable_is_not_sent_again_after_a_re_enable() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, r| {
        if body_has(r, "slow") {
            Reply::Delayed(Duration::from_millis(600), 500)
        } else if body_has(r, "gone") {
            Reply::Status(410)
        } else {
            Reply::Status(200)
        }
    });
    let hook = app.register(json!({"url": receiver.url, "maxInFlight": 2, "retryConfig": fast_retry(5, 20)})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    let slow = app.publish("order.created", json!({"n": "slow"})).await;
    receiver.wait_for(1, WAIT).await;
    app.publish("order.created", json!({"n": "gone"})).await;
    eventually(WAIT, "disabled by the 410", || async {
        app.get(&format!("/v1/webhooks/{id}")).await.1["state"] == "disabled"
    })
    .await;
    // Re-enable while the slow attempt is still in flight; its 500 then comes back.
    let (status, _) = app
        .request(
            "PUT",
            &format!("/v1/webhooks/{id}"),
            Some(&json!({"url": receiver.url, "maxInFlight": 2, "retryConfig": fast_retry(5, 20)}).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    let after = app.publish("order.created", json!({"n": "after"})).await;
    app.wait_delivery(after["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    // Long enough for several 20 ms retries of the slow one, had it been retried.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let slow_sends = receiver.received().iter().filter(|r| body_has(r, "slow")).count();
    assert_eq!(slow_sends, 1, "failed by the disable, not retried after the re-enable");
    let d = app.delivery(slow["deliveries"][0]["id"].as_str().unwrap()).await;
    assert_eq!(d["status"], "failed", "{d}");
    app.stop().await;
}

#[actix_web::test]
async fn re_enables_racing_hibernation_lose_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.idle_timeout = Duration::from_millis(1);
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::with(|_, r| if body_has(r, "gone") { Reply::Status(410) } else { Reply::Status(200) });
    let id = "flapping";
    let body = json!({"url": receiver.url}).to_string();
    let (status, _) = app.request("PUT", &format!("/v1/webhooks/{id}"), Some(&body)).await;
    assert_eq!(status, 201);
    for i in 0..40 {
        app.publish("order.created", json!({"n": "gone"})).await;
        eventually(WAIT, "disabled", || async {
            app.get(&format!("/v1/webhooks/{id}")).await.1["state"] == "disabled"
        })
        .await;
        let (status, _) = app.request("PUT", &format!("/v1/webhooks/{id}"), Some(&body)).await;
        assert_eq!(status, 200);
        let r = app.publish("order.created", json!({"n": i})).await;
        let delivery =
            r["deliveries"][0]["id"].as_str().unwrap_or_else(|| panic!("re-enabled at once: {r}")).to_string();
        app.wait_delivery(&delivery, WAIT, |d| d["status"] == "success").await;
    }
    app.stop().await;
}

/// Deletes webhooks while publishes for them are on their way, `rounds` times: every delivery
/// ends failed ("webhook deleted") or was never written; none is left pending.
async fn delete_against_publish(webhooks: &Webhooks, receiver_url: &str, rounds: usize) {
    let mut pending_left = Vec::new();
    for i in 0..rounds {
        let spec = WebhookSpec { url: receiver_url.to_string(), ..WebhookSpec::default() };
        let id = format!("race-{i}");
        webhooks.register(Some(id.clone()), spec).await.unwrap();
        let w = webhooks.clone();
        let publish = actix_web::rt::spawn(async move { w.publish("order.created", json!({"i": i})).await });
        // Yield a varying number of times so the delete lands at varying points of the publish.
        for _ in 0..(i % 7) {
            tokio::task::yield_now().await;
        }
        assert!(webhooks.unregister(&id).await.unwrap());
        let receipt = publish.await.unwrap().unwrap();
        for d in receipt.deliveries.iter().filter(|d| d.webhook_id == id) {
            let (rec, _) = webhooks.delivery(&d.id).await.unwrap().expect("a receipt's delivery exists");
            if rec.status == servio_webhooks::model::DeliveryStatus::Pending {
                pending_left.push(d.id.clone());
            }
        }
    }
    // A delivery being attempted when the delete lands may still be pending for a moment: let
    // its owner finish, then nothing may remain pending.
    let mut stranded = Vec::new();
    for id in pending_left {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (rec, _) = webhooks.delivery(&id).await.unwrap().unwrap();
            if rec.status != servio_webhooks::model::DeliveryStatus::Pending {
                break;
            }
            if std::time::Instant::now() > deadline {
                stranded.push(id);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(stranded.is_empty(), "stranded as pending: {stranded:?}");
}

#[actix_web::test]
async fn deleting_a_webhook_during_a_publish_strands_nothing_sqlite() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    delete_against_publish(&app.webhooks, &receiver.url, 1000).await;
    app.stop().await;
}

#[actix_web::test]
async fn deleting_a_webhook_during_a_publish_strands_nothing_postgres() {
    let Some(db) = pg::schema().await else { return };
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let s = Settings { database_url: db.url.clone(), ..settings(&dir) };
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::ok();
    delete_against_publish(&app.webhooks, &receiver.url, 300).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_publish_committed_during_shutdown_is_sent_once_after_the_restart() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(100), 200));
    app.register(json!({"url": receiver.url, "maxInFlight": 2})).await;
    let w = app.webhooks.clone();
    // Publishes keep coming while the subsystem drains: some are refused, the rest committed.
    let publisher = actix_web::rt::spawn(async move {
        let mut accepted = Vec::new();
        for i in 0..200 {
            match w.publish("order.created", json!({"i": i})).await {
                Ok(r) => accepted.push(r.id),
                Err(_) => break,
            }
            tokio::task::yield_now().await;
        }
        accepted
    });
    tokio::time::sleep(Duration::from_millis(30)).await;
    let dir = app.stop().await;
    let accepted: HashSet<String> = publisher.await.unwrap().into_iter().collect();
    assert!(!accepted.is_empty());
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    eventually(WAIT, "every accepted event delivered after the restart", || {
        let got: HashSet<String> = receiver.received().iter().map(Received::event_id).collect();
        let done = accepted.is_subset(&got);
        async move { done }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *per_event.entry(r.event_id()).or_insert(0) += 1;
    }
    let twice: Vec<_> = per_event.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent again after the restart: {twice:?}");
    app.stop().await;
}
