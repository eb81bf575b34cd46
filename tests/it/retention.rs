//! Retention end to end: real receivers, the real pruner, a real SQLite file. Time is moved
//! forward through `Webhooks::prune_as_of` (what a cycle does days later) instead of waiting;
//! one test lets the background pruner find short-lived rows by itself.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::config::Retention;
use servio_webhooks::model::now_ms;
use servio_webhooks::store::{self, StoreOptions};

use crate::helpers::*;

const DAY: i64 = 86_400_000;
const WAIT: Duration = Duration::from_secs(10);

fn app_settings(dir: &tempfile::TempDir, completed: Retention, failed: Option<Retention>) -> servio_webhooks::Settings {
    let mut s = settings(dir);
    s.retention.completed = completed;
    s.retention.failed = failed;
    s
}

fn days(n: u64) -> Retention {
    Retention::For(Duration::from_secs(n * 86_400))
}

async fn publish_with_key(app: &TestApp, event: &str, key: &str) -> Value {
    let (status, json) =
        app.post("/v1/events", json!({"event": event, "data": {"orderId": "o-1"}, "idempotencyKey": key})).await;
    assert_eq!(status, 202, "{json}");
    json
}

/// The delivery of `receipt` to `webhook`.
fn delivery_to(receipt: &Value, webhook: &Value) -> String {
    receipt["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["webhookId"] == webhook["id"])
        .unwrap_or_else(|| panic!("no delivery to {} in {receipt}", webhook["id"]))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Successful deliveries go after `WEBHOOKS_RETENTION` with the events no delivery needs (and
/// their idempotency keys: the key publishes anew); a failed one stays for its own, longer
/// retention; a pending one stays however old, and so does its event.
#[actix_web::test]
async fn pruning_takes_old_rows_and_leaves_recent_pending_and_needed_ones() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), app_settings(&dir, days(1), Some(days(10)))).await;
    let (ok, refusing, down) = (
        TestReceiver::ok(),
        TestReceiver::with(|_, _| Reply::Status(400)),
        TestReceiver::with(|_, _| Reply::Status(503)),
    );
    let a = app.register(json!({"url": ok.url, "events": ["order.created", "order.deleted"]})).await;
    let f = app.register(json!({"url": refusing.url, "events": ["order.updated"]})).await;
    let p = app
        .register(json!({"url": down.url, "events": ["order.deleted"],
            "retryConfig": {"maxRetries": 100, "initialDelay": 600000, "maxDelay": 600000}}))
        .await;
    let e1 = publish_with_key(&app, "order.created", "k1").await;
    let e2 = app.publish("order.updated", json!({"orderId": "o-2"})).await;
    let e3 = app.publish("order.deleted", json!({"orderId": "o-3"})).await;
    let e4 = app.publish("table.updated", json!({"tableId": "t-1"})).await;
    assert_eq!(e4["deliveries"], json!([]), "nobody subscribed to table.updated");
    let (d1, d2, d3_ok, d3_pending) =
        (delivery_to(&e1, &a), delivery_to(&e2, &f), delivery_to(&e3, &a), delivery_to(&e3, &p));
    for (id, status) in [(&d1, "success"), (&d2, "failed"), (&d3_ok, "success")] {
        app.wait_delivery(id, WAIT, |d| d["status"] == status).await;
    }
    app.wait_delivery(&d3_pending, WAIT, |d| d["attempts"] == 1).await;

    // Now: everything is recent, nothing goes.
    let report = app.webhooks.prune_now().await.unwrap();
    assert_eq!(report.pruned.total(), 0, "{report:?}");

    // Two days on: the successes and the event nobody subscribed to are past one day.
    let now = now_ms();
    let report = app.webhooks.prune_as_of(now + 2 * DAY).await.unwrap();
    let p1 = report.pruned;
    assert_eq!((p1.deliveries_success, p1.deliveries_failed), (2, 0), "{report:?}");
    assert_eq!((p1.events, p1.idempotency_keys), (2, 1), "e1 and e4 go, e3 is needed: {report:?}");
    for gone in [&d1, &d3_ok] {
        let (status, body) = app.get(&format!("/v1/deliveries/{gone}")).await;
        assert_eq!(status, 404, "{gone} pruned: {body}");
    }
    let pending = app.delivery(&d3_pending).await;
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["payload"]["data"]["orderId"], "o-3", "its event is still there: {pending}");
    assert_eq!(app.delivery(&d2).await["status"], "failed", "failed deliveries have ten days");
    let (_, listed) = app.get("/v1/deliveries").await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2, "{listed}");

    // The key expired with its event: the same key is a new event now.
    let again = publish_with_key(&app, "order.created", "k1").await;
    assert_ne!(again["id"], e1["id"]);
    assert_eq!(again.get("duplicate"), None, "{again}");
    assert_eq!(publish_with_key(&app, "order.created", "k1").await["duplicate"], true);
    app.wait_delivery(&delivery_to(&again, &a), WAIT, |d| d["status"] == "success").await;

    // Eleven days on: the failure goes too; the pending delivery still stays.
    let report = app.webhooks.prune_as_of(now + 11 * DAY).await.unwrap();
    assert_eq!((report.pruned.deliveries_failed, report.pruned.attempts), (1, 1), "{report:?}");
    assert_eq!(app.get(&format!("/v1/deliveries/{d2}")).await.0, 404);
    assert_eq!(app.delivery(&d3_pending).await["status"], "pending");
    let report = app.webhooks.prune_as_of(now + 1000 * DAY).await.unwrap();
    assert_eq!(report.pruned.total(), 0, "only the pending delivery and its event are left: {report:?}");

    let text = app.metrics().await;
    let node = app.webhooks.node_id().to_string();
    let pruned = |kind: &str| metric(&text, "webhook_pruned_rows_total", &[("node", &node), ("kind", kind)]);
    assert!(pruned("delivery_success").unwrap_or(0.0) >= 3.0, "{text}");
    assert!(pruned("delivery_failed").unwrap_or(0.0) >= 1.0, "{text}");
    assert!(pruned("idempotency_key").unwrap_or(0.0) >= 2.0, "{text}");
    assert!(metric(&text, "webhook_database_size_bytes", &[("node", &node)]).unwrap_or(0.0) > 0.0, "{text}");
    let last = metric(&text, "webhook_last_prune_timestamp_seconds", &[("node", &node)]).unwrap_or(0.0);
    assert!(last > (now / 1000 - 60) as f64, "{last}");
    app.stop().await;
}

/// `WEBHOOKS_RETENTION=0` keeps everything, however old.
#[actix_web::test]
async fn retention_zero_prunes_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), app_settings(&dir, Retention::KeepAll, None)).await;
    let ok = TestReceiver::ok();
    let a = app.register(json!({"url": ok.url, "events": ["order.created"]})).await;
    let e = app.publish("order.created", json!({"orderId": "o-1"})).await;
    app.publish("table.updated", json!({})).await;
    let d = delivery_to(&e, &a);
    app.wait_delivery(&d, WAIT, |d| d["status"] == "success").await;
    let report = app.webhooks.prune_as_of(now_ms() + 10_000 * DAY).await.unwrap();
    assert_eq!((report.pruned.total(), report.batches), (0, 0), "{report:?}");
    assert_eq!(app.delivery(&d).await["status"], "success");
    app.stop().await;
}

/// What the walk passes over (here a backlog of pending deliveries) is not read again every
/// cycle: later cycles go on after it until the earliest of it could go (the shorter retention
/// from the cycle that passed it), then the walk starts from the first again, and a backlog that
/// completed meanwhile goes once its retention has run.
#[actix_web::test]
async fn later_cycles_do_not_walk_again_over_what_they_kept_until_it_may_go() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = app_settings(&dir, days(1), Some(days(10)));
    s.retention.batch_rows = 5;
    let app = TestApp::start_with(dir.clone(), s).await;
    let down = TestReceiver::with(|_, _| Reply::Status(503));
    let w = app
        .register(json!({"url": down.url, "events": ["order.created"],
            "retryConfig": {"maxRetries": 100, "initialDelay": 600000, "maxDelay": 600000}}))
        .await;
    let mut backlog = Vec::new();
    for i in 0..30 {
        let e = app.publish("order.created", json!({"orderId": format!("o-{i}")})).await;
        backlog.push(delivery_to(&e, &w));
    }
    let now = now_ms();
    // Two days on: the walk reads the whole backlog (thirty pending deliveries, five a batch)
    // and keeps it.
    let first = app.webhooks.prune_as_of(now + 2 * DAY).await.unwrap();
    assert_eq!(first.pruned.total(), 0, "{first:?}");
    assert!(first.batches >= 6, "thirty deliveries at five a batch: {first:?}");
    // An hour later nothing it kept can go yet (a pending delivery completes at the earliest
    // then, and waits a day): the walk goes on after it, one batch finds nothing new.
    let again = app.webhooks.prune_as_of(now + 2 * DAY + DAY / 24).await.unwrap();
    assert_eq!((again.batches, again.pruned.total()), (1, 0), "{again:?}");
    // The backlog is delivered after all (here: failed by disabling the endpoint), and once a
    // day has run from the cycle that passed it, the walk reads it again from the first.
    let (status, body) = app.post(&format!("/v1/webhooks/{}/disable", w["id"].as_str().unwrap()), json!({})).await;
    assert_eq!(status, 200, "{body}");
    for d in &backlog {
        app.wait_delivery(d, WAIT, |d| d["status"] == "failed").await;
    }
    let third = app.webhooks.prune_as_of(now + 3 * DAY).await.unwrap();
    assert!(third.batches >= 6, "from the first again: {third:?}");
    assert_eq!(third.pruned.deliveries_failed, 0, "failed deliveries have ten days: {third:?}");
    // Ten days after they failed (now, in real time), they go.
    let last = app.webhooks.prune_as_of(now_ms() + 11 * DAY).await.unwrap();
    assert_eq!(last.pruned.deliveries_failed, 30, "{last:?}");
    app.stop().await;
}

/// The pruner runs by itself: with a retention of a fraction of a second, a delivered event is
/// gone shortly after, without anyone asking.
#[actix_web::test]
async fn the_background_pruner_finds_old_rows_by_itself() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = app_settings(&dir, Retention::For(Duration::from_millis(300)), None);
    s.retention.interval = Duration::from_millis(100);
    let app = TestApp::start_with(dir, s).await;
    let ok = TestReceiver::ok();
    let a = app.register(json!({"url": ok.url, "events": ["order.created"]})).await;
    let e = app.publish("order.created", json!({"orderId": "o-1"})).await;
    let d = delivery_to(&e, &a);
    ok.wait_for(1, WAIT).await;
    eventually(WAIT, "the delivery is pruned", || async { app.get(&format!("/v1/deliveries/{d}")).await.0 == 404 })
        .await;
    let node = app.webhooks.node_id().to_string();
    let text = app.metrics().await;
    let events = metric(&text, "webhook_pruned_rows_total", &[("node", &node), ("kind", "event")]);
    assert!(events.unwrap_or(0.0) >= 1.0, "{text}");
    app.stop().await;
}

/// Pruned pages go back to the file system: the file's pages drop and its freelist is emptied.
#[actix_web::test]
async fn sqlite_gives_pruned_space_back() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let path = dir.path().join("webhooks.db");
    let app = TestApp::start_with(dir.clone(), app_settings(&dir, days(1), None)).await;
    let ok = TestReceiver::ok();
    app.register(json!({"url": ok.url, "events": ["order.created"]})).await;
    let filler = "x".repeat(16 * 1024);
    for i in 0..200 {
        app.publish("order.created", json!({"orderId": i, "note": filler})).await;
    }
    ok.wait_for(200, WAIT).await;
    eventually(WAIT, "all delivered", || async {
        let (_, page) = app.get("/v1/deliveries?status=success&limit=250").await;
        page["data"].as_array().map_or(0, Vec::len) == 200
    })
    .await;
    let before = app.webhooks.prune_now().await.unwrap().size;
    assert!(before.bytes > 200 * 16 * 1024, "{before:?}");
    let report = app.webhooks.prune_as_of(now_ms() + 2 * DAY).await.unwrap();
    assert_eq!((report.pruned.deliveries_success, report.pruned.events), (200, 200), "{report:?}");
    assert_eq!(report.size.free_bytes, Some(0), "the freelist is given back: {report:?}");
    assert!(report.size.bytes < before.bytes / 4, "{} bytes before, {} after", before.bytes, report.size.bytes);
    // The file says the same (what a checkpoint truncates it to).
    let conn = rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0)).unwrap();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(((pages * page_size) as u64, free), (report.size.bytes, 0));
    drop(conn);
    app.stop().await;
}

/// A database created before incremental vacuum is switched over when it is opened (it is small).
#[actix_web::test]
async fn existing_sqlite_databases_switch_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE leftover (x); INSERT INTO leftover VALUES (1);")
        .unwrap();
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, 0, "a file made the old way has no auto-vacuum");
    drop(conn);
    let url = format!("sqlite://{}", path.display());
    let store = store::open(&url, &StoreOptions::default()).await.unwrap();
    store.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, 2, "INCREMENTAL");
    let kept: i64 = conn.query_row("SELECT x FROM leftover", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 1, "the data survives the VACUUM");
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 4096, "a WAL file keeps its page size (new files get 16 KiB)");
}

/// Two nodes on one PostgreSQL database pruning at the same moment do the work once: the rows
/// pruned by both add up to exactly what was old, and a node that finds the other pruning says so.
#[actix_web::test]
async fn two_postgres_nodes_prune_each_row_once() {
    let Some(db) = crate::pg::schema().await else { return };
    let node = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = app_settings(&dir, days(1), None);
        s.database_url = db.url.clone();
        s.node_id = Some(name.to_string());
        s.retention.batch_rows = 7; // several batches, so the two cycles overlap
        (Arc::new(dir), s)
    };
    let (dir_a, sa) = node("prune-a");
    let (dir_b, sb) = node("prune-b");
    let a = TestApp::start_with(dir_a, sa).await;
    let b = TestApp::start_with(dir_b, sb).await;
    let ok = TestReceiver::ok();
    a.register(json!({"url": ok.url, "events": ["order.created"]})).await;
    for i in 0..40 {
        let app = if i % 2 == 0 { &a } else { &b };
        publish_with_key(app, "order.created", &format!("order-{i}")).await;
    }
    ok.wait_for(40, WAIT).await;
    eventually(WAIT, "all 40 recorded as delivered", || async {
        let (_, page) = a.get("/v1/deliveries?status=success&limit=250").await;
        page["data"].as_array().map_or(0, Vec::len) == 40
    })
    .await;
    let later = now_ms() + 2 * DAY;
    let (ra, rb) = tokio::join!(a.webhooks.prune_as_of(later), b.webhooks.prune_as_of(later));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let (mut left_a, mut left_b) = (ra.clone(), rb.clone());
    // A node that found the other one pruning stopped early; its next cycle finishes the rest.
    while left_a.busy || left_b.busy {
        let (na, nb) = tokio::join!(a.webhooks.prune_as_of(later), b.webhooks.prune_as_of(later));
        left_a.pruned += na.as_ref().unwrap().pruned;
        left_b.pruned += nb.as_ref().unwrap().pruned;
        (left_a.busy, left_b.busy) = (na.unwrap().busy, nb.unwrap().busy);
    }
    let mut total = left_a.pruned;
    total += left_b.pruned;
    assert_eq!(
        (total.deliveries_success, total.events, total.idempotency_keys),
        (40, 40, 40),
        "each row pruned once: {ra:?} {rb:?}"
    );
    let (_, page) = b.get("/v1/deliveries").await;
    assert_eq!(page["data"], json!([]));
    a.stop().await;
    b.stop().await;
}
