//! Replay against real receivers: `POST /v1/deliveries/{id}/retry`, `POST /v1/webhooks/{id}/recover`
//! and the delivery filters by event type and creation time, on SQLite, and across two nodes on
//! PostgreSQL (the node that takes the request is not the one that owns the webhook).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::model::{now_ms, rfc3339};
use servio_webhooks::store::RecoveryStart;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// A receiver answering 500 until `up` is set, 200 after.
fn flaky() -> (TestReceiver, Arc<AtomicBool>) {
    let up = Arc::new(AtomicBool::new(false));
    let flag = up.clone();
    let rx = TestReceiver::with(move |_, _| Reply::Status(if flag.load(Ordering::SeqCst) { 200 } else { 500 }));
    (rx, up)
}

/// Registers a webhook for every event type with `maxRetries` retries 10 ms apart.
async fn register(app: &TestApp, url: &str, max_retries: u32) -> String {
    let wh = app
        .register(json!({"url": url, "retryConfig": {"maxRetries": max_retries, "initialDelay": 10, "jitter": false}}))
        .await;
    wh["id"].as_str().unwrap().to_string()
}

/// Publishes one event and returns its (only) delivery id.
async fn publish_one(app: &TestApp, event: &str) -> String {
    let receipt = app.publish(event, json!({"orderId": "ord_1"})).await;
    receipt["deliveries"][0]["id"].as_str().unwrap().to_string()
}

async fn wait_status(app: &TestApp, id: &str, status: &str) -> Value {
    app.wait_delivery(id, WAIT, |d| d["status"] == status).await
}

fn log_of(d: &Value) -> Vec<(u64, Option<u64>)> {
    d["attemptLog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["statusCode"].as_u64()))
        .collect()
}

#[actix_web::test]
async fn a_failed_delivery_retried_after_the_receiver_recovers_is_delivered_by_a_new_attempt() {
    let app = TestApp::start().await;
    let (rx, up) = flaky();
    register(&app, &rx.url, 1).await;
    let id = publish_one(&app, "order.created").await;
    let failed = wait_status(&app, &id, "failed").await;
    assert_eq!(failed["attempts"], 2);
    assert_eq!(rx.count(), 2);

    up.store(true, Ordering::SeqCst);
    let (status, body) = app.post(&format!("/v1/deliveries/{id}/retry"), json!(null)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["id"].as_str(), body["status"].as_str(), body["attempts"].as_u64()),
        (Some(id.as_str()), Some("pending"), Some(2))
    );
    assert!(body["nextRetryAt"].is_string() && body["completedAt"].is_null(), "{body}");

    let done = wait_status(&app, &id, "success").await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(log_of(&done), [(1, Some(500)), (2, Some(500)), (3, Some(200))], "the new attempt follows the others");
    assert_eq!(rx.count(), 3);
    // The receiver saw the same event each time (it deduplicates by webhook-id).
    let got = rx.received();
    assert!(got.iter().all(|r| r.event_id() == got[0].event_id()));

    let (status, body) = app.post(&format!("/v1/deliveries/{id}/retry"), json!(null)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("delivery_succeeded")), "{body}");
    let (status, body) = app.request("POST", "/v1/deliveries/dlv_nope/retry", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, _) = app.get(&format!("/v1/deliveries/{id}/retry")).await;
    assert_eq!(status, 405);
    app.stop().await;
}

#[actix_web::test]
async fn a_retried_failed_delivery_gets_a_fresh_attempt_budget() {
    let app = TestApp::start().await;
    let rx = TestReceiver::with(|_, _| Reply::Status(503));
    register(&app, &rx.url, 1).await;
    let id = publish_one(&app, "order.created").await;
    wait_status(&app, &id, "failed").await;
    let (status, body) = app.request("POST", &format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!(status, 202, "{body}");
    // The schedule starts over: 1 + maxRetries more attempts, then failed again.
    let d = app.wait_delivery(&id, WAIT, |d| d["status"] == "failed" && d["attempts"] == 4).await;
    assert_eq!(log_of(&d), [(1, Some(503)), (2, Some(503)), (3, Some(503)), (4, Some(503))]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.count(), 4, "no attempt past the fresh budget");
    app.stop().await;
}

#[actix_web::test]
async fn a_retried_pending_delivery_goes_now_and_keeps_its_attempt_count() {
    let app = TestApp::start().await;
    let rx = TestReceiver::with(|n, _| Reply::Status(if n == 0 { 500 } else { 200 }));
    // The retry after the first failure would wait a minute.
    let wh = app
        .register(json!({"url": rx.url, "retryConfig": {"maxRetries": 3, "initialDelay": 60000, "jitter": false}}))
        .await;
    assert!(wh["id"].is_string());
    let id = publish_one(&app, "order.created").await;
    let waiting = app.wait_delivery(&id, WAIT, |d| d["attempts"] == 1).await;
    assert_eq!(waiting["status"], "pending");
    let (status, body) = app.request("POST", &format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!((status, body["attempts"].as_u64(), body["status"].as_str()), (202, Some(1), Some("pending")), "{body}");
    let due = body["nextRetryAt"].as_str().unwrap().to_string();
    assert!(due <= rfc3339(now_ms()), "due now, not in a minute: {due}");
    let done = wait_status(&app, &id, "success").await;
    assert_eq!(log_of(&done), [(1, Some(500)), (2, Some(200))]);
    app.stop().await;
}

#[actix_web::test]
async fn retry_refuses_deliveries_of_deleted_webhooks() {
    let app = TestApp::start().await;
    let rx = TestReceiver::with(|_, _| Reply::Hang);
    let wh = register(&app, &rx.url, 0).await;
    let id = publish_one(&app, "order.created").await;
    let (status, _) = app.request("DELETE", &format!("/v1/webhooks/{wh}"), None).await;
    assert_eq!(status, 204);
    wait_status(&app, &id, "failed").await;
    let (status, body) = app.request("POST", &format!("/v1/deliveries/{id}/retry"), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("webhook_deleted")), "{body}");
    assert_eq!(app.delivery(&id).await["status"], "failed", "nothing changed");
    app.stop().await;
}

#[actix_web::test]
async fn recover_requeues_the_failed_deliveries_of_its_window_and_no_others() {
    let app = TestApp::start().await;
    let (rx, up) = flaky();
    let wh = register(&app, &rx.url, 0).await;
    let before: Vec<String> =
        [publish_one(&app, "order.created").await, publish_one(&app, "order.updated").await].into();
    for id in &before {
        wait_status(&app, id, "failed").await;
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = rfc3339(now_ms());
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut inside = Vec::new();
    for i in 0..4 {
        inside.push(publish_one(&app, if i % 2 == 0 { "order.created" } else { "table.updated" }).await);
    }
    for id in &inside {
        wait_status(&app, id, "failed").await;
    }
    let sent_before = rx.count();
    assert_eq!(sent_before, 6);

    up.store(true, Ordering::SeqCst);
    let (status, body) = app.post(&format!("/v1/webhooks/{wh}/recover"), json!({"since": since})).await;
    assert_eq!((status, &body), (202, &json!({"queued": 4})));
    for id in &inside {
        let d = wait_status(&app, id, "success").await;
        assert_eq!(log_of(&d), [(1, Some(500)), (2, Some(200))]);
    }
    let wh_now = wait_until(WAIT, "the recovery is done", || {
        let app = &app;
        let wh = wh.clone();
        async move {
            let (_, w) = app.get(&format!("/v1/webhooks/{wh}")).await;
            (w["recovery"]["state"] == "done").then_some(w)
        }
    })
    .await;
    let r = &wh_now["recovery"];
    assert_eq!((r["queued"].as_u64(), r["requeued"].as_u64()), (Some(4), Some(4)), "{r}");
    assert_eq!(r["since"].as_str().map(|s| &s[..19]), Some(&since[..19]));
    assert!(r["startedAt"].is_string() && r["finishedAt"].is_string() && r["until"].is_string(), "{r}");
    for id in &before {
        assert_eq!(app.delivery(id).await["status"], "failed", "outside the window: left alone");
    }
    assert_eq!(rx.count(), sent_before + 4, "one new attempt per delivery in the window");

    // Nothing failed is left in the window: a second recovery re-queues nothing.
    let (status, body) = app.post(&format!("/v1/webhooks/{wh}/recover"), json!({"since": since, "until": null})).await;
    assert_eq!((status, &body), (202, &json!({"queued": 0})));
    app.stop().await;
}

#[actix_web::test]
async fn a_recovery_of_many_batches_requeues_each_delivery_once() {
    let app = TestApp::start().await;
    let (rx, up) = flaky();
    let wh = register(&app, &rx.url, 0).await;
    let since = now_ms();
    let mut ids = Vec::new();
    for _ in 0..7 {
        ids.push(publish_one(&app, "order.created").await);
    }
    for id in &ids {
        wait_status(&app, id, "failed").await;
    }
    up.store(true, Ordering::SeqCst);
    let start = app.webhooks.recover_in_batches(&wh, since, now_ms() + 1, 2).await.unwrap();
    assert!(matches!(start, RecoveryStart::Started(ref r) if r.queued == 7), "{start:?}");
    for id in &ids {
        wait_status(&app, id, "success").await;
    }
    let (_, w) = app.get(&format!("/v1/webhooks/{wh}")).await;
    assert_eq!((w["recovery"]["state"].as_str(), w["recovery"]["requeued"].as_u64()), (Some("done"), Some(7)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rx.count(), 14, "7 failed attempts, then exactly one more each");
    app.stop().await;
}

#[actix_web::test]
async fn one_recovery_at_a_time_and_a_restart_mid_way_reads_interrupted() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.node_id = Some("replay-node".into());
    let app = TestApp::start_with(dir.clone(), s.clone()).await;
    let rx = TestReceiver::ok();
    let wh = register(&app, &rx.url, 0).await;
    // A recovery recorded as running on this node whose batches are not running (as if the node
    // had stopped between two of them).
    let started = app.webhooks.store().start_recovery(&wh, "replay-node", 0, now_ms(), now_ms()).await.unwrap();
    assert!(matches!(started, RecoveryStart::Started(_)));
    let (_, w) = app.get(&format!("/v1/webhooks/{wh}")).await;
    assert_eq!(w["recovery"]["state"], "running");
    assert!(w["recovery"]["finishedAt"].is_null());
    let (status, body) =
        app.post(&format!("/v1/webhooks/{wh}/recover"), json!({"since": "2020-01-01T00:00:00Z"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("recovery_running")), "{body}");

    let dir = app.stop().await;
    let app = TestApp::start_with(dir, s).await;
    let (_, w) = app.get(&format!("/v1/webhooks/{wh}")).await;
    assert_eq!(w["recovery"]["state"], "interrupted", "{w}");
    assert!(w["recovery"]["finishedAt"].is_string());
    let (status, body) =
        app.post(&format!("/v1/webhooks/{wh}/recover"), json!({"since": "2020-01-01T00:00:00Z"})).await;
    assert_eq!(status, 202, "an interrupted recovery does not block the next: {body}");
    app.stop().await;
}

#[actix_web::test]
async fn recover_refuses_bad_input_and_changes_nothing() {
    let app = TestApp::start().await;
    let rx = TestReceiver::ok();
    let wh = register(&app, &rx.url, 0).await;
    let path = format!("/v1/webhooks/{wh}/recover");
    for (body, needle) in [
        (json!({}), "since"),
        (json!({"since": "yesterday"}), "since"),
        (json!({"since": "2026-02-30T00:00:00Z"}), "since"),
        (json!({"since": 5}), "expected a string"),
        (json!({"since": "2020-01-01T00:00:00Z", "until": "soon"}), "until"),
        (json!({"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"}), "before"),
        (json!({"since": "2020-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"}), "before"),
        (json!({"since": "2999-01-01T00:00:00Z"}), "before"),
        (json!({"since": "2020-01-01T00:00:00Z", "window": 1}), "window"),
    ] {
        let (status, err) = app.post(&path, body.clone()).await;
        assert_eq!(status, 400, "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let (status, _) = app.request("POST", &path, Some("{")).await;
    assert_eq!(status, 400);
    let (_, w) = app.get(&format!("/v1/webhooks/{wh}")).await;
    assert!(w["recovery"].is_null(), "nothing recorded: {w}");
    let (status, body) = app.post("/v1/webhooks/wh_nope/recover", json!({"since": "2020-01-01T00:00:00Z"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _) = app.get(&path).await;
    assert_eq!(status, 405);
    app.stop().await;
}

#[actix_web::test]
async fn deliveries_filter_by_event_and_creation_time_with_cursors() {
    let app = TestApp::start().await;
    let rx = TestReceiver::ok();
    let wh = register(&app, &rx.url, 0).await;
    let t0 = now_ms();
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(publish_one(&app, if i % 2 == 0 { "order.created" } else { "order.updated" }).await);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mid = now_ms();
    for _ in 0..3 {
        created.push(publish_one(&app, "order.created").await);
    }
    let all = |query: String| {
        let app = &app;
        async move {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let c = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
                let (status, page) = app.get(&format!("/v1/deliveries?limit=2{query}{c}")).await;
                assert_eq!(status, 200, "{page}");
                ids.extend(page["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_string()));
                match page["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => return ids,
                }
            }
        }
    };
    let enc = |ms: i64| rfc3339(ms).replace(':', "%3A");
    let newest_first = |mut v: Vec<String>| {
        v.sort();
        v.reverse();
        v
    };
    let created_events: Vec<String> = [0, 2, 4, 5, 6, 7].iter().map(|i| created[*i].clone()).collect();
    assert_eq!(all("&event=order.created".into()).await, newest_first(created_events));
    assert_eq!(all("&event=order.updated".into()).await, newest_first(vec![created[1].clone(), created[3].clone()]));
    assert_eq!(all(format!("&since={}", enc(mid))).await, newest_first(created[5..].to_vec()));
    assert_eq!(all(format!("&since={}&until={}", enc(t0), enc(mid))).await, newest_first(created[..5].to_vec()));
    for id in &created {
        wait_status(&app, id, "success").await;
    }
    let combined = format!("&event=order.updated&status=success&webhookId={wh}&until={}", enc(mid));
    assert_eq!(all(combined).await, newest_first(vec![created[1].clone(), created[3].clone()]), "filters combine");
    assert!(all(format!("&event=order.updated&status=failed&webhookId={wh}")).await.is_empty());
    assert!(all("&event=inventory.low".into()).await.is_empty());
    // An offset is honoured: the same instant as t0, written two hours east.
    let east = rfc3339(t0 + 7_200_000).replace('Z', "%2B02%3A00").replace(':', "%3A");
    assert_eq!(all(format!("&since={east}&until={}", enc(mid))).await, newest_first(created[..5].to_vec()));

    for bad in
        ["event=Order", "event=order", "since=yesterday", "until=2026-13-01T00:00:00Z", "since=2026-11-29T06:00:00"]
    {
        let (status, body) = app.get(&format!("/v1/deliveries?{bad}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")), "{bad}: {body}");
    }
    app.stop().await;
}

/// A node on PostgreSQL whose safety-net poll is too slow to matter: what it learns of re-queued
/// work, it learns from the notices.
fn pg_node(url: &str, node: &str) -> servio_webhooks::Settings {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(&dir);
    s.database_url = url.to_string();
    s.node_id = Some(node.to_string());
    s.cluster.heartbeat_interval = Duration::from_millis(250);
    s.cluster.lease_ttl = Duration::from_millis(2_000);
    s.cluster.poll_interval = Duration::from_secs(120);
    s
}

#[actix_web::test]
async fn pg_retry_and_recover_on_one_node_reach_the_owner_on_another() {
    let Some(schema) = crate::pg::schema().await else { return };
    let a = TestApp::start_with(Arc::new(tempfile::tempdir().unwrap()), pg_node(&schema.url, "replay-a")).await;
    let b = TestApp::start_with(Arc::new(tempfile::tempdir().unwrap()), pg_node(&schema.url, "replay-b")).await;
    let (rx, up) = flaky();
    let wh = register(&a, &rx.url, 0).await;
    let owner = wait_until(WAIT, "the webhook has an owner", || {
        let a = &a;
        let wh = wh.clone();
        async move {
            let (_, w) = a.get(&format!("/v1/webhooks/{wh}")).await;
            w["ownerNode"].as_str().map(str::to_string)
        }
    })
    .await;
    // Requests go to the node that does not own the webhook.
    let other = if owner == "replay-a" { &b } else { &a };
    let owner_app = if owner == "replay-a" { &a } else { &b };
    let since = rfc3339(now_ms() - 1);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(publish_one(other, "order.created").await);
    }
    for id in &ids {
        wait_status(other, id, "failed").await;
    }
    assert_eq!(rx.count(), 3);
    up.store(true, Ordering::SeqCst);

    let (status, body) = other.post(&format!("/v1/deliveries/{}/retry", ids[0]), json!(null)).await;
    assert_eq!(status, 202, "{body}");
    let d = wait_status(owner_app, &ids[0], "success").await;
    assert_eq!(log_of(&d), [(1, Some(500)), (2, Some(200))]);

    let (status, body) = other.post(&format!("/v1/webhooks/{wh}/recover"), json!({"since": since})).await;
    assert_eq!((status, &body), (202, &json!({"queued": 2})));
    for id in &ids[1..] {
        wait_status(owner_app, id, "success").await;
    }
    // Every node shows the recovery, run by the node that took the request.
    let (_, w) = owner_app.get(&format!("/v1/webhooks/{wh}")).await;
    assert_eq!((w["recovery"]["state"].as_str(), w["recovery"]["requeued"].as_u64()), (Some("done"), Some(2)), "{w}");
    assert_eq!(rx.count(), 6);
    b.stop().await;
    a.stop().await;
}
