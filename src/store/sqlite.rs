//! TEMPORARY STUB on the `actors` branch: the real backend lands from `store-backends`.
#![allow(missing_docs, unused_variables)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::*;

pub struct SqliteStore;

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        todo!()
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_webhook(&self, webhook: WebhookRecord) -> StoreResult<(Upserted, u64)> { todo!() }
    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool> { todo!() }
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookView>> { todo!() }
    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookView>> { todo!() }
    async fn registry_changes(&self, since: u64) -> StoreResult<RegistryChanges> { todo!() }
    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome> { todo!() }
    async fn load_due(&self, webhook_id: &str, now_ms: i64, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> { todo!() }
    async fn due_summary(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<PendingSummary>> { todo!() }
    async fn stored_health(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, StoredHealth)>> { todo!() }
    async fn pending_counts(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, u64)>> { todo!() }
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> { todo!() }
    async fn list_deliveries(&self, filter: DeliveryFilter, before: Option<String>, limit: u32) -> StoreResult<Vec<DeliveryRecord>> { todo!() }
    fn exclusive(&self) -> bool { true }
    async fn heartbeat(&self, node_id: &str, info: &str, lease_ttl: Duration) -> StoreResult<Heartbeat> { todo!() }
    async fn claim_leases(&self, node_id: &str, webhook_ids: Vec<String>, lease_ttl: Duration) -> StoreResult<Vec<Fence>> { todo!() }
    async fn release_leases(&self, node_id: &str, leases: Vec<Fence>) -> StoreResult<()> { todo!() }
    async fn leave(&self, node_id: &str) -> StoreResult<()> { todo!() }
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> { todo!() }
    fn take_notices(&self) -> Option<tokio::sync::mpsc::Receiver<Notice>> { None }
    async fn ping(&self) -> StoreResult<()> { todo!() }
    async fn close(&self) {}
}
