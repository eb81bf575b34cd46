//! Durable state behind a backend-neutral trait: the webhook registry, events, deliveries and
//! their attempt log, and the cluster's membership and leases.
//!
//! The actors never see SQL. Writes from the delivery path arrive as one [`WriteBatch`] per group
//! commit (see [`crate::delivery::ledger`]); REST reads go straight to the backend's read side.
//!
//! Both backends implement the same model (see `crate::cluster`): nodes heartbeat, each webhook is
//! owned by the one node holding its lease, an owner's writes are fenced by its lease epoch, and an
//! owner finds its webhook's work by due time ([`Store::load_due`]). SQLite is that model with a
//! single node ([`Store::exclusive`]); PostgreSQL lets several nodes share one database and
//! announces changes to them ([`Store::take_notices`]).

mod common;
pub mod postgres;
mod prune;
pub mod sqlite;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use prune::*;
pub use types::*;

use crate::model::WebhookRecord;

/// The persistence contract. Implementations must make [`Store::apply`] atomic and durable before
/// it returns: `publish` is acknowledged on the strength of it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ----- registry -----

    /// Creates or replaces a registration (clearing any disabled state), moves the registry
    /// revision on, and announces it ([`Notice::Registry`]). `webhook.revision` is ignored; the
    /// revision it was stored under is returned.
    async fn upsert_webhook(&self, webhook: WebhookRecord) -> StoreResult<(Upserted, u64)>;
    /// Deletes a registration (recording the deletion in the registry changes) and fails its
    /// pending deliveries with "webhook deleted"; false if it did not exist. A publish committing
    /// at the same moment either has its deliveries failed here, or does not write them.
    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool>;
    /// One registration with its stored health and lease.
    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookView>>;
    /// Registrations in id order (byte order), after `after`.
    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookView>>;
    /// What changed in the registry after revision `since` (`0`: everything).
    async fn registry_changes(&self, since: u64) -> StoreResult<RegistryChanges>;

    // ----- lifecycle -----

    /// Compare-and-set: stores `webhook` as it is (every field, its disabled state and previous
    /// secret included; `created_at_ms` and `revision` ignored) only while the stored registration
    /// still has revision `expected_revision`, moves the registry revision on and announces it
    /// ([`Notice::Registry`]). A change that disables it fails its pending deliveries with the
    /// disabled reason (as an automatic disable does); one that re-enables it resets its stored
    /// health. Returns the new revision, or `None` when the webhook is gone or changed since.
    async fn update_webhook(&self, webhook: WebhookRecord, expected_revision: u64) -> StoreResult<Option<u64>>;

    // ----- deliveries -----

    /// Applies one group commit atomically (see [`WriteBatch`] for fencing). New deliveries
    /// are announced to their owners ([`Notice::Work`]) when the transaction commits.
    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome>;
    /// Up to `limit` pending deliveries of a webhook due at `now_ms` (`next_attempt_at <= now`),
    /// earliest first (then by id), leaving out the ids in `exclude` (what the caller already
    /// holds), and when the next one falls due after `now_ms`.
    async fn load_due(&self, webhook_id: &str, now_ms: i64, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage>;
    /// For each given webhook, the earliest due time of its pending deliveries (one index probe
    /// each): which owned webhooks have work, and how far behind the oldest is.
    async fn due_summary(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<PendingSummary>>;
    /// The stored health of the given webhooks that have one, as `(webhook id, health)`.
    async fn stored_health(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, StoredHealth)>>;
    /// Pending deliveries per given webhook, as `(webhook id, count)` (webhooks with none left out).
    async fn pending_counts(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, u64)>>;
    /// One delivery with its attempt log.
    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>>;
    /// Deliveries newest first (by id), before the `before` id, without their payload (empty).
    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    // ----- replay -----

    /// Puts a delivery back in the queue, due at `now_ms`: a pending one keeps its attempts; a
    /// failed one becomes pending with a fresh retry budget (its attempts keep their numbers, so
    /// the attempt log goes on after them, and stop counting against `maxRetries`). Refused,
    /// changing nothing, for a delivery that succeeded or whose webhook is gone or disabled.
    /// Announced to the webhook's owner ([`Notice::Requeued`]) on commit.
    async fn retry_delivery(&self, id: &str, now_ms: i64) -> StoreResult<RetryOutcome>;
    /// Records a recovery of `webhook_id`'s failed deliveries created in `[since_ms, until_ms)`,
    /// run by `node_id`, with how many there are now (`queued`); replaces the webhook's previous
    /// recovery unless that one is still running on a live node.
    async fn start_recovery(
        &self,
        webhook_id: &str,
        node_id: &str,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RecoveryStart>;
    /// Re-queues, in one transaction, the next (by id) at most `limit` failed deliveries of the
    /// recovery `node_id` runs for `webhook_id`, as [`Store::retry_delivery`] does a failed one,
    /// and moves its progress on (`done` when fewer than `limit` were left). Announced to the
    /// owner ([`Notice::Requeued`]). Finished at once when there is no such running recovery.
    async fn recover_batch(
        &self,
        webhook_id: &str,
        node_id: &str,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<RecoverBatch>;
    /// Marks the running recoveries of `node_id` interrupted (the node starts again: its
    /// batches died with its previous run); returns how many.
    async fn interrupt_recoveries(&self, node_id: &str, now_ms: i64) -> StoreResult<u64>;
    // ----- pacing -----

    /// Up to `limit` pending deliveries of a webhook in publish order (the order their publishes
    /// committed in: the delivery id on SQLite, a database sequence on PostgreSQL), whatever
    /// their due time, leaving out the ids in `exclude`: the queue of an `ordered` webhook, whose
    /// head is attempted at its own due time while the rest wait behind it. `next_due_at_ms` is
    /// always `None` (the head's due time is on its row).
    async fn load_in_order(&self, webhook_id: &str, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage>;

    // ----- cluster -----

    /// True when only one node can use this store (SQLite: one process owns the file), so leases
    /// left by an earlier run of it may be taken at once instead of after they run out.
    fn exclusive(&self) -> bool;
    /// Records a heartbeat of `node_id` (creating its row, and announcing [`Notice::Cluster`],
    /// when it joins), renews every lease it holds to `now + lease_ttl`, and returns the live
    /// nodes and the leases it holds. `info` is free text shown in `GET /v1/nodes`.
    async fn heartbeat(&self, node_id: &str, info: &str, lease_ttl: Duration) -> StoreResult<Heartbeat>;
    /// Grants `node_id` the lease of each given webhook that exists and whose lease is free, run
    /// out, already this node's (an earlier run of it), or, on an [`exclusive`](Store::exclusive)
    /// store, anyone's. Each grant increments the epoch and runs to `now + lease_ttl`. Returns the
    /// grants, sorted by webhook id.
    async fn claim_leases(
        &self,
        node_id: &str,
        webhook_ids: Vec<String>,
        lease_ttl: Duration,
    ) -> StoreResult<Vec<Fence>>;
    /// Gives up leases (after draining them) so that another node can claim them at once, and
    /// announces [`Notice::Cluster`]. A lease whose epoch has moved on is left alone.
    async fn release_leases(&self, node_id: &str, leases: Vec<Fence>) -> StoreResult<()>;
    /// Graceful leave: releases every lease of `node_id`, removes its row, announces it.
    async fn leave(&self, node_id: &str) -> StoreResult<()>;
    /// Every known node (live first, then recently dead), for `GET /v1/nodes`.
    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>>;
    /// The stream of [`Notice`]s from every node sharing the store (this one included), taken
    /// once; `None` when the backend has no such channel (SQLite: polling and local messages
    /// suffice for one node).
    fn take_notices(&self) -> Option<tokio::sync::mpsc::Receiver<Notice>>;

    // ----- retention (part: retention) -----

    /// Deletes one bounded batch of what has outlived its retention (see [`PruneBatch`]), in one
    /// short transaction of its own. Idempotent: nodes may prune concurrently (on PostgreSQL one
    /// node prunes at a time, the others get [`PruneOutcome::busy`]).
    async fn prune(&self, batch: PruneBatch) -> StoreResult<PruneOutcome>;
    /// Gives up to `max_bytes` of free pages back to the file system (SQLite: `PRAGMA
    /// incremental_vacuum`, whole pages; PostgreSQL: nothing, autovacuum makes dead rows
    /// reusable) and returns the database's size.
    async fn reclaim(&self, max_bytes: u64) -> StoreResult<StorageSize>;
    // ----- tenants part -----

    /// Registrations of one tenant in id order (byte order), after `after`.
    async fn list_tenant_webhooks(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookView>>;
    /// Stores a new API token (ids are fresh: an existing id is an error).
    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()>;
    /// One API token by id.
    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>>;
    /// API tokens in id order after `after`.
    async fn list_api_tokens(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<ApiTokenRecord>>;
    /// Deletes an API token; false if it did not exist.
    async fn delete_api_token(&self, id: &str) -> StoreResult<bool>;

    // ----- operations -----

    /// Cheap liveness probe for `/healthz`.
    async fn ping(&self) -> StoreResult<()>;
    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    async fn close(&self);
}

/// Opens the store a database URL names: `sqlite://path` (created if missing), or
/// `postgres://` / `postgresql://` (migrated on open; see [`postgres::PgStore::open`]).
pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        let store = sqlite::SqliteStore::open(url, options).await?;
        return Ok(Arc::new(store));
    }
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = postgres::PgStore::open(url, options).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::Config(format!(
        "unsupported database url `{}`: expected sqlite://path or postgres://…",
        redact_url(url)
    )))
}

/// Backend tuning that is not part of the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// This node's id: the origin of the notices it sends.
    pub node_id: String,
    /// SQLite: fsync every commit (`FULL`) so a power cut loses nothing acknowledged; `false` uses
    /// `NORMAL`, which survives process crashes but may lose the last commits on power loss.
    pub sqlite_full_sync: bool,
    /// Concurrent read connections for the REST API and backlog paging (SQLite).
    pub read_connections: usize,
    /// PostgreSQL: connections in the pool shared by writes and reads (the notice listener has
    /// one more of its own).
    pub postgres_pool_size: usize,
    /// PostgreSQL: a session idle inside a transaction this long is ended by the server
    /// (`idle_in_transaction_session_timeout`), releasing its locks: a node frozen in the middle
    /// of a transaction (GC pause, SIGSTOP) must not keep the others from taking its leases over.
    pub postgres_idle_in_transaction: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            node_id: "local".into(),
            sqlite_full_sync: true,
            read_connections: 4,
            postgres_pool_size: 8,
            postgres_idle_in_transaction: Duration::from_secs(5),
        }
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
