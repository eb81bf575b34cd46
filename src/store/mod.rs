//! Durable state behind a backend-neutral trait: webhooks, events, deliveries and their attempt log.
//!
//! The actors never see SQL. Writes from the delivery path arrive as one [`WriteBatch`] per group
//! commit (see [`crate::delivery::ledger`]); REST reads go straight to the backend's read side.
//! The trait is shaped for a multi-node PostgreSQL backend too: backlog is read per endpoint in
//! pages ([`Store::load_pending`]), which such a backend turns into lease-based claims.

pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::model::{DeliveryStatus, WebhookRecord};

/// Store failures, free of backend types so that nothing above `store/` depends on SQLite.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the operation (I/O, disk full, lock timeout).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The store has been closed by shutdown.
    #[error("store is closed")]
    Closed,
    /// The stored data is not what this version expects.
    #[error("store data is invalid: {0}")]
    Corrupt(String),
    /// A bad database URL or option.
    #[error("invalid database configuration: {0}")]
    Config(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// One delivery to create with its event.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    /// Delivery id (see [`crate::model::delivery_id`]).
    pub id: String,
    /// Target webhook.
    pub webhook_id: Arc<str>,
}

/// An event and its deliveries, written in one transaction.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Event id, also the `webhook-id` header.
    pub id: String,
    /// Event type.
    pub event_type: String,
    /// The exact body bytes every attempt sends.
    pub payload: Bytes,
    /// The payload's RFC 3339 timestamp (`X-Webhook-Timestamp`).
    pub timestamp: String,
    /// Publish time, Unix ms.
    pub created_at_ms: i64,
    /// Caller's deduplication key: a second publish with the same key returns the first event.
    pub idempotency_key: Option<String>,
    /// One per subscribed, enabled webhook.
    pub deliveries: Vec<NewDelivery>,
}

/// One finished attempt, for the attempt log.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// 1-based attempt number.
    pub attempt: u32,
    /// Start of the attempt, Unix ms.
    pub at_ms: i64,
    /// Time to the response (or failure), ms.
    pub duration_ms: u64,
    /// HTTP status, when a response came.
    pub status_code: Option<u16>,
    /// Transport error or reason, when no 2xx came.
    pub error: Option<String>,
    /// First KiB of the response body.
    pub response_body: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    /// Stays pending; next attempt at this Unix ms.
    RetryAt(i64),
    /// Delivered.
    Succeeded,
    /// Given up.
    Failed,
}

/// An attempt outcome to record.
#[derive(Debug, Clone)]
pub struct AttemptUpdate {
    /// The delivery attempted.
    pub delivery_id: String,
    /// What the attempt produced.
    pub attempt: AttemptRecord,
    /// The delivery's new state.
    pub next: NextStep,
}

/// A webhook to disable, failing its pending deliveries.
#[derive(Debug, Clone)]
pub struct DisableWebhook {
    /// The webhook.
    pub webhook_id: String,
    /// Shown in the API and on each failed delivery.
    pub reason: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// Everything one group commit writes, applied atomically.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// New events with their deliveries.
    pub events: Vec<NewEvent>,
    /// Attempt outcomes.
    pub attempts: Vec<AttemptUpdate>,
    /// Single pending deliveries to fail without an attempt (e.g. their webhook vanished).
    pub failures: Vec<(String, String)>,
    /// Webhooks to disable.
    pub disables: Vec<DisableWebhook>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.attempts.is_empty() && self.failures.is_empty() && self.disables.is_empty()
    }

    /// Operations in the batch, for batch-size metrics and limits.
    pub fn len(&self) -> usize {
        self.events.len() + self.attempts.len() + self.failures.len() + self.disables.len()
    }
}

/// The event an idempotency key already published.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingEvent {
    /// Its id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// Its payload timestamp.
    pub timestamp: String,
    /// Its deliveries as `(delivery id, webhook id)`.
    pub deliveries: Vec<(String, String)>,
}

/// What became of each event of a batch, in batch order.
#[derive(Debug, Clone, PartialEq)]
pub enum EventWrite {
    /// Written now.
    Created,
    /// Its idempotency key was used before; nothing was written.
    Duplicate(ExistingEvent),
}

/// Result of [`Store::apply`].
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One per [`WriteBatch::events`] entry.
    pub events: Vec<EventWrite>,
    /// Pending deliveries failed by each disable, as `(webhook id, count)`.
    pub disabled: Vec<(String, u64)>,
}

/// A pending delivery with what an attempt needs, as paged into an endpoint actor.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// Delivery id.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Body bytes.
    pub payload: Bytes,
    /// Payload timestamp (RFC 3339).
    pub timestamp: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, Unix ms.
    pub next_attempt_at_ms: i64,
    /// Publish time, Unix ms (for latency metrics).
    pub created_at_ms: i64,
}

/// Where a backlog page starts, in delivery-id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageStart {
    /// From the first pending delivery.
    Beginning,
    /// From this id, inclusive.
    From(String),
    /// After this id.
    After(String),
}

/// A delivery as the REST API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    /// Delivery id.
    pub id: String,
    /// Target webhook.
    pub webhook_id: String,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Body bytes as sent.
    pub payload: String,
    /// Status.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// Creation (publish) time.
    pub created_at_ms: i64,
    /// Start of the last attempt.
    pub last_attempt_at_ms: Option<i64>,
    /// Next attempt due, while pending.
    pub next_attempt_at_ms: Option<i64>,
    /// When it succeeded or failed.
    pub completed_at_ms: Option<i64>,
    /// Status of the last response.
    pub last_status_code: Option<u16>,
    /// Last error or failure reason.
    pub last_error: Option<String>,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this webhook's.
    pub webhook_id: Option<String>,
    /// Only this status.
    pub status: Option<DeliveryStatus>,
}

/// Registration write result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new id.
    Created,
    /// An existing registration was replaced.
    Replaced,
}

/// The persistence contract. Implementations must make [`Store::apply`] atomic and durable before
/// it returns: `publish` is acknowledged on the strength of it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates or replaces a registration (clearing any disabled state).
    async fn upsert_webhook(&self, webhook: WebhookRecord) -> StoreResult<Upserted>;
    /// Deletes a registration and fails its pending deliveries; false if it did not exist.
    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool>;
    /// One registration.
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookRecord>>;
    /// Registrations in id order, after `after`.
    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookRecord>>;
    /// Every registration, for start-up.
    async fn load_webhooks(&self) -> StoreResult<Vec<WebhookRecord>>;
    /// Applies one group commit atomically.
    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome>;
    /// Up to `limit` pending deliveries of a webhook in id order, from `start`.
    async fn load_pending(&self, webhook_id: &str, start: PageStart, limit: u32) -> StoreResult<Vec<PendingDelivery>>;
    /// Pending delivery counts per webhook, for start-up; also fails pending deliveries whose webhook no longer exists.
    async fn recover(&self, at_ms: i64) -> StoreResult<Vec<(String, u64)>>;
    /// One delivery with its attempt log.
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>>;
    /// Deliveries newest first, before the `before` id.
    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;
    /// Cheap liveness probe for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}

/// Opens the store a database URL names: `sqlite://path` (created if missing).
pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url, options).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(StoreError::Config("the PostgreSQL store is not built yet; use sqlite://path".into()));
    }
    Err(StoreError::Config(format!("unsupported database url `{}`: expected sqlite://path", redact_url(url))))
}

/// Backend tuning that is not part of the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite: fsync every commit (`FULL`) so a power cut loses nothing acknowledged; `false` uses
    /// `NORMAL`, which survives process crashes but may lose the last commits on power loss.
    pub sqlite_full_sync: bool,
    /// Concurrent read connections for the REST API and backlog paging.
    pub read_connections: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { sqlite_full_sync: true, read_connections: 4 }
    }
}

/// A URL with any password replaced, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
