//! The values that cross the [`super::Store`] boundary: rows to write, rows read back, and the
//! cluster's membership and lease records. Free of backend types.

use std::sync::Arc;

use bytes::Bytes;

use crate::delivery::health::EndpointState;
use crate::model::{DeliveryStatus, WebhookRecord};

/// Store failures, free of backend types so that nothing above `store/` depends on a driver.
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

/// One lease grant: `epoch` grows by one every time any node is granted the webhook's lease, so
/// `(webhook_id, epoch)` names one owner's tenure. Every write an owner makes for its webhook
/// carries it, and the store applies the write only while the lease still has that epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fence {
    /// The webhook.
    pub webhook_id: Arc<str>,
    /// The grant's epoch.
    pub epoch: u64,
}

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
    /// Publish time, Unix ms; also each delivery's first due time.
    pub created_at_ms: i64,
    /// Caller's deduplication key: a second publish with the same key returns the first event.
    pub idempotency_key: Option<String>,
    /// One per subscribed, enabled webhook. A delivery whose webhook no longer exists when the
    /// transaction runs is not written (see [`EventWrite::Created`]).
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
    /// Stays pending; next attempt due at this Unix ms.
    RetryAt(i64),
    /// Delivered.
    Succeeded,
    /// Given up.
    Failed,
}

/// An attempt outcome to record (fenced by the owner's lease). It applies to a pending delivery;
/// a success also applies to one failed without that attempt (its endpoint was disabled while
/// the attempt was in flight: the receiver has it, so it is delivered).
#[derive(Debug, Clone)]
pub struct AttemptUpdate {
    /// The owner's lease on the delivery's webhook.
    pub fence: Fence,
    /// The delivery attempted.
    pub delivery_id: String,
    /// What the attempt produced.
    pub attempt: AttemptRecord,
    /// The delivery's failed breaker probes after this attempt.
    pub probes: u32,
    /// The delivery's new state.
    pub next: NextStep,
}

/// A pending delivery to fail without an attempt.
#[derive(Debug, Clone)]
pub struct FailDelivery {
    /// The delivery; nothing happens unless it is still pending.
    pub delivery_id: String,
    /// Shown as its `lastError`.
    pub reason: String,
    /// When the owner of its webhook fails it, that owner's lease; `None` for writes any node may
    /// make (e.g. a delivery whose webhook vanished).
    pub fence: Option<Fence>,
}

/// A webhook for its owner to disable, failing its pending deliveries (fenced).
#[derive(Debug, Clone)]
pub struct DisableWebhook {
    /// The owner's lease on the webhook.
    pub fence: Fence,
    /// Shown in the API and on each failed delivery.
    pub reason: String,
    /// When, Unix ms.
    pub at_ms: i64,
}

/// The breaker of a paused endpoint, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerRecord {
    /// When the next probe may go out, Unix ms.
    pub probe_at_ms: i64,
    /// The current cool-down between probes, ms (doubles per failed probe).
    pub cooldown_ms: u64,
}

/// An endpoint's health as its owner last recorded it, so that a restart or a hand-off neither
/// resets "disable after failing for 5 days" nor forgets a paused endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHealth {
    /// What the endpoint was doing (`Disabled` is also kept on the registration).
    pub state: EndpointState,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// First failure of the current streak, Unix ms.
    pub failing_since_ms: Option<i64>,
    /// Last successful attempt, Unix ms.
    pub last_success_ms: Option<i64>,
    /// Last failed attempt, Unix ms.
    pub last_failure_ms: Option<i64>,
    /// Set while the breaker is open (the endpoint paused).
    pub breaker: Option<BreakerRecord>,
}

impl Default for StoredHealth {
    fn default() -> Self {
        Self {
            state: EndpointState::Healthy,
            consecutive_failures: 0,
            failing_since_ms: None,
            last_success_ms: None,
            last_failure_ms: None,
            breaker: None,
        }
    }
}

/// An owner's health record to store (fenced; last write per webhook wins).
#[derive(Debug, Clone)]
pub struct HealthWrite {
    /// The owner's lease on the webhook.
    pub fence: Fence,
    /// The new record.
    pub health: StoredHealth,
}

/// Everything one group commit writes, applied atomically.
///
/// Fenced operations (attempts, owner failures, disables, health) are applied only if the lease
/// they name still has their epoch when the transaction runs; the others are left out and named
/// in [`BatchOutcome::fenced`]. The rest of the batch still commits.
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    /// New events with their deliveries.
    pub events: Vec<NewEvent>,
    /// Attempt outcomes, in the order they happened (one delivery may appear more than once).
    pub attempts: Vec<AttemptUpdate>,
    /// Pending deliveries to fail without an attempt.
    pub failures: Vec<FailDelivery>,
    /// Webhooks to disable.
    pub disables: Vec<DisableWebhook>,
    /// Endpoint health records.
    pub health: Vec<HealthWrite>,
}

impl WriteBatch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Operations in the batch, for batch-size metrics and limits.
    pub fn len(&self) -> usize {
        self.events.len() + self.attempts.len() + self.failures.len() + self.disables.len() + self.health.len()
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
    /// Its deliveries as `(delivery id, webhook id)`, in delivery-id order.
    pub deliveries: Vec<(String, String)>,
}

/// What became of each event of a batch, in batch order.
#[derive(Debug, Clone, PartialEq)]
pub enum EventWrite {
    /// Written now. `dropped`: ids of deliveries not written because their webhook no longer
    /// existed (deleted while the publish was on its way); usually empty.
    Created {
        /// Delivery ids left out.
        dropped: Vec<String>,
    },
    /// Its idempotency key was used before; nothing was written.
    Duplicate(ExistingEvent),
}

/// Result of [`super::Store::apply`].
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// One per [`WriteBatch::events`] entry.
    pub events: Vec<EventWrite>,
    /// Pending deliveries failed by each applied disable, as `(webhook id, count)`.
    pub disabled: Vec<(String, u64)>,
    /// Leases whose epoch had moved on: their operations were not applied (distinct, sorted).
    pub fenced: Vec<Fence>,
}

/// A pending delivery with what an attempt needs, as loaded into an endpoint actor.
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
    /// Of those, failed breaker probes (they do not spend the retry budget).
    pub probes: u32,
    /// When the next attempt is due, Unix ms.
    pub next_attempt_at_ms: i64,
    /// Publish time, Unix ms (for latency metrics).
    pub created_at_ms: i64,
}

/// One page of a webhook's due work (see [`super::Store::load_due`]).
#[derive(Debug, Clone, Default)]
pub struct DuePage {
    /// Pending deliveries due at `now`, by (due time, id), at most `limit`.
    pub items: Vec<PendingDelivery>,
    /// The earliest due time after `now` among its pending deliveries, if any: when to look again.
    pub next_due_at_ms: Option<i64>,
}

/// A webhook's pending work at a glance (see [`super::Store::due_summary`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSummary {
    /// The webhook.
    pub webhook_id: String,
    /// Earliest due time of its pending deliveries; `None` when nothing is pending.
    pub earliest_due_ms: Option<i64>,
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
    // ----- replay -----
    /// Only deliveries of this event type (exact).
    pub event_type: Option<String>,
    /// Only deliveries created at or after this Unix ms.
    pub since_ms: Option<i64>,
    /// Only deliveries created before this Unix ms.
    pub until_ms: Option<i64>,
}

/// Registration write result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new id.
    Created,
    /// An existing registration was replaced.
    Replaced,
}

/// Who holds a webhook's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The owning node.
    pub node_id: String,
    /// The grant's epoch.
    pub epoch: u64,
    /// When the lease runs out unless renewed, Unix ms (store clock).
    pub expires_at_ms: i64,
}

/// A registration as the REST API shows it: the stored record, the health its owner last
/// stored, and its current lease holder.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookView {
    /// The registration.
    pub record: WebhookRecord,
    /// Last stored health; `None` before the owner stored any.
    pub health: Option<StoredHealth>,
    /// The lease, when a node holds one (released or never claimed: `None`).
    pub owner: Option<LeaseInfo>,
    // ----- replay -----
    /// The webhook's last recovery (`POST /v1/webhooks/{id}/recover`), if any.
    pub recovery: Option<RecoveryRecord>,
}

/// Registry changes after a revision (see [`super::Store::registry_changes`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryChanges {
    /// The revision this answer is complete up to: pass it as `since` next time.
    pub revision: u64,
    /// True when this is the whole registry (first call, or `since` is older than the deletions
    /// the store still remembers): any webhook not in `upserted` is gone.
    pub full: bool,
    /// Registrations created or changed after `since`, in id order.
    pub upserted: Vec<WebhookRecord>,
    /// Ids deleted after `since`.
    pub deleted: Vec<String>,
}

/// A node's row in the membership table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// `WEBHOOKS_NODE_ID`, or generated at start.
    pub id: String,
    /// First heartbeat of this run, Unix ms (store clock).
    pub started_at_ms: i64,
    /// Last heartbeat, Unix ms (store clock).
    pub heartbeat_at_ms: i64,
    /// Heartbeat plus the lease time: the node counts as live until then.
    pub expires_at_ms: i64,
    /// Whether it is live at the store's `now`.
    pub live: bool,
    /// Leases it holds that have not run out.
    pub owned: u64,
    /// Free text the node reports (version, host).
    pub info: String,
}

/// What one heartbeat learns (see [`super::Store::heartbeat`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heartbeat {
    /// The store's clock at the heartbeat, Unix ms.
    pub now_ms: i64,
    /// Ids of live nodes (this one included), sorted.
    pub live_nodes: Vec<String>,
    /// Every lease this node holds after renewing them, sorted by webhook id.
    pub held: Vec<Fence>,
}

/// A change another node (or this one) announced through the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Deliveries were committed for these webhooks, as `(webhook id, count)`.
    Work {
        /// The publishing node.
        origin: String,
        /// Webhooks with new pending deliveries.
        webhooks: Vec<(String, u32)>,
    },
    /// Registrations changed (created, replaced, deleted, disabled): read
    /// [`super::Store::registry_changes`].
    Registry {
        /// The node that made the change.
        origin: String,
    },
    /// Membership or leases changed (a node joined, left, or released leases): rebalance now.
    Cluster {
        /// The node that made the change.
        origin: String,
    },
    /// Notices may have been lost (the listener reconnected, or its queue overflowed): poll
    /// everything as if every notice had arrived.
    Resync,
    // ----- replay -----
    /// Deliveries were put back in the queue, due now (a retry, or a batch of a recovery): their
    /// owner must attempt them again even if it finished them a moment ago.
    Requeued {
        /// The node that re-queued them.
        origin: String,
        /// Their webhook.
        webhook_id: String,
        /// The deliveries.
        ids: Vec<String>,
        /// They were failed (each is one more pending delivery); false: they were pending and are
        /// only due sooner.
        were_failed: bool,
    },
}

// ----- replay -----

/// Where a recovery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryState {
    /// Batches are being re-queued.
    Running,
    /// Every batch is re-queued.
    Done,
    /// Its node stopped (or died) before the last batch: what was re-queued stays queued, the
    /// rest stays failed; a new recover may be started.
    Interrupted,
}

impl RecoveryState {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryState::Running => "running",
            RecoveryState::Done => "done",
            RecoveryState::Interrupted => "interrupted",
        }
    }

    /// The state a stored name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => RecoveryState::Running,
            "done" => RecoveryState::Done,
            "interrupted" => RecoveryState::Interrupted,
            _ => return None,
        })
    }
}

/// A webhook's recovery as stored (see [`super::Store::start_recovery`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRecord {
    /// Window start (deliveries created at or after it), Unix ms.
    pub since_ms: i64,
    /// Window end (created before it), Unix ms.
    pub until_ms: i64,
    /// Failed deliveries in the window when it started.
    pub queued: u64,
    /// Re-queued so far.
    pub requeued: u64,
    /// Where it stands (`Running` of a node that is no longer live reads as `Interrupted`).
    pub state: RecoveryState,
    /// When it started, Unix ms.
    pub started_at_ms: i64,
    /// When it ended (done or interrupted), Unix ms.
    pub finished_at_ms: Option<i64>,
    /// The node running its batches.
    pub node_id: String,
}

/// What [`super::Store::retry_delivery`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// Re-queued, due now.
    Requeued {
        /// The delivery as it is now.
        delivery: Box<DeliveryRecord>,
        /// It was failed (and is pending again); false: it was pending and is only due sooner.
        was_failed: bool,
    },
    /// No such delivery.
    NotFound,
    /// It succeeded already; nothing changed.
    Succeeded,
    /// Its webhook no longer exists; nothing changed.
    WebhookGone,
    /// Its webhook is disabled; nothing changed.
    WebhookDisabled,
}

/// What [`super::Store::start_recovery`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryStart {
    /// Recorded as running; run its batches with [`super::Store::recover_batch`].
    Started(RecoveryRecord),
    /// No such webhook.
    NotFound,
    /// The webhook is disabled; nothing changed.
    WebhookDisabled,
    /// A recovery of this webhook is running (on a live node); nothing changed.
    Running(RecoveryRecord),
}

/// One batch of a recovery (see [`super::Store::recover_batch`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverBatch {
    /// The deliveries re-queued by this batch, in id order.
    pub ids: Vec<String>,
    /// True when nothing is left: the recovery reads `done` (or it is no longer this node's to
    /// run: interrupted, replaced, or its webhook deleted).
    pub finished: bool,
}
