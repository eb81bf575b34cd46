//! Storage faults through a fault-injecting wrapper around a real store: writes that fail (disk
//! full, I/O error) or stall, for a while, then come back. Publishes are refused with 503 and
//! `Retry-After`, endpoints stop starting attempts, `/healthz` says so, nothing accepted is lost,
//! and delivery resumes by itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;
use servio_webhooks::Webhooks;
use servio_webhooks::model::WebhookRecord;
use servio_webhooks::store::*;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

pub const NORMAL: u8 = 0;
pub const FAIL: u8 = 1;
pub const STALL: u8 = 2;

/// A real store whose writes can be made to fail or to stall.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    mode: Arc<AtomicU8>,
}

impl FaultyStore {
    /// `inner` behind a switch: [`NORMAL`], [`FAIL`] or [`STALL`].
    pub fn wrap(inner: Arc<dyn Store>) -> (Arc<dyn Store>, Arc<AtomicU8>) {
        let mode = Arc::new(AtomicU8::new(NORMAL));
        (Arc::new(FaultyStore { inner, mode: mode.clone() }), mode)
    }

    async fn gate(&self) -> StoreResult<()> {
        loop {
            match self.mode.load(Ordering::SeqCst) {
                FAIL => return Err(StoreError::Unavailable("injected fault: disk I/O error".into())),
                STALL => tokio::time::sleep(Duration::from_millis(10)).await,
                _ => return Ok(()),
            }
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn upsert_webhook(&self, w: WebhookRecord) -> StoreResult<(Upserted, u64)> {
        self.gate().await?;
        self.inner.upsert_webhook(w).await
    }
    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        self.gate().await?;
        self.inner.delete_webhook(id, at_ms).await
    }
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookView>> {
        self.inner.get_webhook(id).await
    }
    async fn update_webhook(&self, w: WebhookRecord, expected: u64) -> StoreResult<Option<u64>> {
        self.gate().await?;
        self.inner.update_webhook(w, expected).await
    }
    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookView>> {
        self.inner.list_webhooks(after, limit).await
    }
    async fn list_tenant_webhooks(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookView>> {
        self.inner.list_tenant_webhooks(tenant, after, limit).await
    }
    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.gate().await?;
        self.inner.create_api_token(token).await
    }
    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        self.inner.api_token(id).await
    }
    async fn list_api_tokens(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<ApiTokenRecord>> {
        self.inner.list_api_tokens(after, limit).await
    }
    async fn delete_api_token(&self, id: &str) -> StoreResult<bool> {
        self.gate().await?;
        self.inner.delete_api_token(id).await
    }
    async fn registry_changes(&self, since: u64) -> StoreResult<RegistryChanges> {
        self.inner.registry_changes(since).await
    }
    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome> {
        self.gate().await?;
        self.inner.apply(batch).await
    }
    async fn load_due(&self, webhook_id: &str, now_ms: i64, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        self.inner.load_due(webhook_id, now_ms, exclude, limit).await
    }
    async fn load_in_order(&self, webhook_id: &str, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        self.inner.load_in_order(webhook_id, exclude, limit).await
    }
    async fn due_summary(&self, ids: Vec<String>) -> StoreResult<Vec<PendingSummary>> {
        self.inner.due_summary(ids).await
    }
    async fn stored_health(&self, ids: Vec<String>) -> StoreResult<Vec<(String, StoredHealth)>> {
        self.inner.stored_health(ids).await
    }
    async fn pending_counts(&self, ids: Vec<String>) -> StoreResult<Vec<(String, u64)>> {
        self.inner.pending_counts(ids).await
    }
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        self.inner.get_delivery(id).await
    }
    async fn list_deliveries(
        &self,
        f: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.inner.list_deliveries(f, before, limit).await
    }
    async fn retry_delivery(&self, id: &str, now_ms: i64) -> StoreResult<RetryOutcome> {
        self.gate().await?;
        self.inner.retry_delivery(id, now_ms).await
    }
    async fn start_recovery(
        &self,
        webhook_id: &str,
        node_id: &str,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RecoveryStart> {
        self.gate().await?;
        self.inner.start_recovery(webhook_id, node_id, since_ms, until_ms, now_ms).await
    }
    async fn recover_batch(
        &self,
        webhook_id: &str,
        node_id: &str,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<RecoverBatch> {
        self.gate().await?;
        self.inner.recover_batch(webhook_id, node_id, limit, now_ms).await
    }
    async fn interrupt_recoveries(&self, node_id: &str, now_ms: i64) -> StoreResult<u64> {
        self.gate().await?;
        self.inner.interrupt_recoveries(node_id, now_ms).await
    }
    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }
    async fn heartbeat(&self, node: &str, info: &str, ttl: Duration) -> StoreResult<Heartbeat> {
        self.gate().await?;
        self.inner.heartbeat(node, info, ttl).await
    }
    async fn claim_leases(&self, node: &str, ids: Vec<String>, ttl: Duration) -> StoreResult<Vec<Fence>> {
        self.gate().await?;
        self.inner.claim_leases(node, ids, ttl).await
    }
    async fn release_leases(&self, node: &str, leases: Vec<Fence>) -> StoreResult<()> {
        self.gate().await?;
        self.inner.release_leases(node, leases).await
    }
    async fn leave(&self, node: &str) -> StoreResult<()> {
        self.gate().await?;
        self.inner.leave(node).await
    }
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.inner.nodes().await
    }
    fn take_notices(&self) -> Option<tokio::sync::mpsc::Receiver<Notice>> {
        self.inner.take_notices()
    }
    // retention (part: retention)
    async fn prune(&self, batch: PruneBatch) -> StoreResult<PruneOutcome> {
        self.gate().await?;
        self.inner.prune(batch).await
    }
    async fn reclaim(&self, max_bytes: u64) -> StoreResult<StorageSize> {
        self.gate().await?;
        self.inner.reclaim(max_bytes).await
    }
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

/// A TestApp behind a [`FaultyStore`] (on a SQLite file, or on `database_url`); returns the switch.
async fn faulty_app(stall_ms: u64, database_url: Option<&str>) -> (TestApp, Arc<AtomicU8>) {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    if let Some(url) = database_url {
        s.database_url = url.to_string();
    }
    s.write_stall_timeout = Duration::from_millis(stall_ms);
    let inner = open(&s.database_url, &StoreOptions::default()).await.unwrap();
    let mode = Arc::new(AtomicU8::new(NORMAL));
    let store: Arc<dyn Store> = Arc::new(FaultyStore { inner, mode: mode.clone() });
    let webhooks = Webhooks::start_with_store(s, store).await.unwrap();
    (TestApp::serve(webhooks, dir), mode)
}

/// `POST /v1/events` returning the status and the `Retry-After` header.
async fn publish_raw(app: &TestApp, n: usize) -> (u16, Option<String>, serde_json::Value) {
    let resp = app
        .http
        .post(format!("{}/v1/events", app.base))
        .header("content-type", "application/json")
        .body(json!({"event": "order.created", "data": {"n": n}}).to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or_default();
    (status, retry_after, body)
}

/// A quiet system: the only write during the outage is a publish, refused, so its failed commit
/// leaves nothing to retry. Publishes must still be taken again once the store is back.
#[actix_web::test]
async fn a_failed_publish_in_a_quiet_system_does_not_refuse_publishes_for_good() {
    let (app, mode) = faulty_app(5_000, None).await;
    mode.store(FAIL, Ordering::SeqCst);
    let (status, _, body) = publish_raw(&app, 1).await;
    assert_eq!(status, 503, "{body}");
    let (status, _, _) = publish_raw(&app, 2).await;
    assert_eq!(status, 503, "refused up front while the store fails");
    mode.store(NORMAL, Ordering::SeqCst);
    eventually(WAIT, "publishes are taken again", || {
        let app = &app;
        async move { publish_raw(app, 3).await.0 == 202 }
    })
    .await;
    let (status, _) = app.get("/healthz").await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[actix_web::test]
async fn failing_writes_refuse_publishes_pause_attempts_and_everything_resumes_sqlite() {
    failing_writes(None).await;
}

#[actix_web::test]
async fn failing_writes_refuse_publishes_pause_attempts_and_everything_resumes_postgres() {
    let Some(db) = crate::pg::schema().await else { return };
    failing_writes(Some(&db.url)).await;
}

async fn failing_writes(database_url: Option<&str>) {
    let (app, mode) = faulty_app(5_000, database_url).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(30), 200));
    app.register(json!({"url": receiver.url, "maxInFlight": 2})).await;
    let mut accepted = HashSet::new();
    for i in 0..20 {
        accepted.insert(app.publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(1, WAIT).await;
    mode.store(FAIL, Ordering::SeqCst);
    // The first publish after the fault fails at its commit; from then on publishes are refused
    // up front, with Retry-After, and nothing more is buffered.
    let mut refused = 0;
    for i in 20..120 {
        let (status, retry_after, body) = publish_raw(&app, i).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "store_unavailable");
        assert!(retry_after.is_some(), "Retry-After on every 503");
        refused += 1;
    }
    assert_eq!(refused, 100);
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, 503, "/healthz reports the write side: {health}");
    assert!(health["error"]["message"].as_str().unwrap().contains("refuses writes"), "{health}");
    let pending = app.webhooks.pending_writes();
    assert!(
        pending <= 10,
        "bounded: only outcomes of the attempts in flight wait, not the refused publishes ({pending})"
    );
    // Endpoints start no attempt whose outcome could not be recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = receiver.count();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.count(), before, "no attempt started while writes fail");
    assert!(before < 20, "the outage came before the work was done");

    mode.store(NORMAL, Ordering::SeqCst);
    eventually(WAIT, "every accepted event delivered after the store came back", || {
        let got: HashSet<String> = receiver.received().iter().map(Received::event_id).collect();
        let done = accepted.is_subset(&got);
        async move { done }
    })
    .await;
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in receiver.received() {
        *per_event.entry(r.event_id()).or_insert(0) += 1;
    }
    assert!(per_event.values().all(|n| *n == 1), "outcomes recorded late, not sent again: {per_event:?}");
    eventually(WAIT, "healthy again", || async { app.get("/healthz").await.0 == 200 }).await;
    let (status, _, _) = publish_raw(&app, 999).await;
    assert_eq!(status, 202, "publishes accepted again");
    app.stop().await;
}

#[actix_web::test]
async fn a_stalled_store_refuses_publishes_until_it_answers_again() {
    let (app, mode) = faulty_app(300, None).await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url})).await;
    mode.store(STALL, Ordering::SeqCst);
    // This publish waits for its commit, which hangs.
    let w = app.webhooks.clone();
    let waiting = actix_web::rt::spawn(async move { w.publish("order.created", json!({"n": "stalled"})).await });
    // (A publish accepted before the stall is noticed waits for its commit like the first one,
    // so wait for the detection itself, then publish.)
    eventually(WAIT, "the stall is noticed", || async { app.webhooks.write_refusal().is_some() }).await;
    let (status, retry_after, _) = publish_raw(&app, 1).await;
    assert_eq!((status, retry_after.is_some()), (503, true), "refused at once, with Retry-After");
    let (status, health) = app.get("/healthz").await;
    assert_eq!(status, 503, "{health}");
    assert!(health["error"]["message"].as_str().unwrap().contains("running for"), "{health}");
    mode.store(NORMAL, Ordering::SeqCst);
    let receipt = waiting.await.unwrap().expect("the stalled publish commits once the store answers");
    receiver.wait_for(1, WAIT).await;
    assert_eq!(receiver.received()[0].event_id(), receipt.id);
    let (status, _, _) = publish_raw(&app, 2).await;
    assert_eq!(status, 202);
    app.stop().await;
}
