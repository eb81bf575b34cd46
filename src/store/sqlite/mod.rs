//! The embedded default: SQLite (bundled) in WAL mode, the cluster model with one node.
//!
//! SQLite allows one writer at a time, so one dedicated thread owns the write connection. It runs
//! every job queued at a moment in one transaction (group commit), so a burst of registrations
//! or ledger batches costs one fsync.
//! Reads run on a small pool of read-only connections on tokio's blocking threads, so neither
//! side ever blocks an actix arbiter. Lists cross into SQL as JSON text (`json_each`). Lease and
//! node times come from this process's clock: one process owns the file ([`Store::exclusive`]).

mod cluster;
mod prune;
mod read;
mod replay;
mod write;
mod writer;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, Transaction};
use tokio::sync::{Semaphore, oneshot};

use self::writer::{Job, MAX_GROUP, ReadPool, WriteJob, open_writer, run_group};
use super::*;
use crate::model::WebhookRecord;

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A list of ids as JSON text, for `json_each(?)`.
fn json_list<S: AsRef<str>>(ids: &[S]) -> String {
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
}

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::SyncSender<Box<dyn WriteJob>>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<ReadPool>,
}

/// `sqlite://webhooks.db` → `webhooks.db`; `sqlite:///var/lib/x.db` → `/var/lib/x.db`.
pub fn path_from_url(url: &str) -> StoreResult<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Config(format!("not a sqlite url: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError::Config("sqlite url needs a file path, e.g. sqlite://webhooks.db".into()));
    }
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database a `sqlite://` URL names.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let path = path_from_url(url)?;
        let full_sync = options.sqlite_full_sync;
        let (ready_tx, ready_rx) = oneshot::channel();
        // Bounded: a writer that falls behind refuses new jobs instead of queueing without end.
        let (tx, rx) = mpsc::sync_channel::<Box<dyn WriteJob>>(WRITER_QUEUE);
        let writer_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("webhooks-sqlite-writer".into())
            .spawn(move || {
                let mut conn = match open_writer(&writer_path, full_sync) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    run_group(&mut conn, jobs);
                }
                let _ = conn.execute_batch("PRAGMA optimize;");
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        ready_rx.await.map_err(|_| StoreError::Unavailable("sqlite writer thread died".into()))??;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.read_connections.max(1)),
            }),
        })
    }

    /// Runs `f` on the writer thread, inside a group transaction, and waits for the commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { f, result: None, reply });
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sender.ok_or(StoreError::Closed)?.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => {
                StoreError::Unavailable(format!("the SQLite writer is behind ({WRITER_QUEUE} jobs queued)"))
            }
            mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        if self.writer.lock().unwrap_or_else(|p| p.into_inner()).is_none() {
            return Err(StoreError::Closed);
        }
        let _permit = self.readers.permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// Write jobs that may wait for the writer thread (each may carry a whole ledger batch).
const WRITER_QUEUE: usize = 1024;

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_webhook(&self, w: WebhookRecord) -> StoreResult<(Upserted, u64)> {
        let encoded = common::EncodedWebhook::new(&w)?;
        self.write(move |tx| write::upsert_webhook(tx, &w, &encoded)).await
    }

    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| write::delete_webhook(tx, &id, at_ms)).await
    }

    async fn update_webhook(&self, w: WebhookRecord, expected_revision: u64) -> StoreResult<Option<u64>> {
        let encoded = common::EncodedWebhook::new(&w)?;
        self.write(move |tx| write::update_webhook(tx, &w, &encoded, expected_revision)).await
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookView>> {
        let id = id.to_string();
        self.read(move |c| read::get_webhook(c, &id)).await
    }

    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookView>> {
        self.read(move |c| read::list_webhooks(c, after.as_deref().unwrap_or_default(), limit)).await
    }

    async fn registry_changes(&self, since: u64) -> StoreResult<RegistryChanges> {
        self.read(move |c| read::registry_changes(c, since)).await
    }

    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        self.write(move |tx| write::apply_batch(tx, &batch)).await
    }

    async fn load_due(&self, webhook_id: &str, now_ms: i64, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        let webhook_id = webhook_id.to_string();
        self.read(move |c| read::load_due(c, &webhook_id, now_ms, &exclude, limit)).await
    }

    async fn load_in_order(&self, webhook_id: &str, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        let webhook_id = webhook_id.to_string();
        self.read(move |c| read::load_in_order(c, &webhook_id, &exclude, limit)).await
    }

    async fn due_summary(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<PendingSummary>> {
        self.read(move |c| read::due_summary(c, &webhook_ids)).await
    }

    async fn stored_health(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, StoredHealth)>> {
        self.read(move |c| read::stored_health(c, &webhook_ids)).await
    }

    async fn pending_counts(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, u64)>> {
        self.read(move |c| read::pending_counts(c, &webhook_ids)).await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        let id = id.to_string();
        self.read(move |c| read::get_delivery(c, &id)).await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |c| read::list_deliveries(c, filter, before, limit)).await
    }

    // ----- replay -----

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> StoreResult<RetryOutcome> {
        let id = id.to_string();
        self.write(move |tx| replay::retry_delivery(tx, &id, now_ms)).await
    }

    async fn start_recovery(
        &self,
        webhook_id: &str,
        node_id: &str,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<RecoveryStart> {
        let (webhook_id, node_id) = (webhook_id.to_string(), node_id.to_string());
        self.write(move |tx| replay::start_recovery(tx, &webhook_id, &node_id, since_ms, until_ms, now_ms)).await
    }

    async fn recover_batch(
        &self,
        webhook_id: &str,
        node_id: &str,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<RecoverBatch> {
        let (webhook_id, node_id) = (webhook_id.to_string(), node_id.to_string());
        self.write(move |tx| replay::recover_batch(tx, &webhook_id, &node_id, limit, now_ms)).await
    }

    async fn interrupt_recoveries(&self, node_id: &str, now_ms: i64) -> StoreResult<u64> {
        let node_id = node_id.to_string();
        self.write(move |tx| replay::interrupt_recoveries(tx, &node_id, now_ms)).await
    }

    // ----- tenants part -----

    async fn list_tenant_webhooks(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookView>> {
        let tenant = tenant.to_string();
        self.read(move |c| read::list_tenant_webhooks(c, &tenant, after.as_deref().unwrap_or_default(), limit)).await
    }

    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.write(move |tx| write::create_api_token(tx, &token)).await
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let id = id.to_string();
        self.read(move |c| read::api_token(c, &id)).await
    }

    async fn list_api_tokens(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<ApiTokenRecord>> {
        self.read(move |c| read::list_api_tokens(c, after.as_deref().unwrap_or_default(), limit)).await
    }

    async fn delete_api_token(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| write::delete_api_token(tx, &id)).await
    }

    fn exclusive(&self) -> bool {
        true
    }

    async fn heartbeat(&self, node_id: &str, info: &str, lease_ttl: Duration) -> StoreResult<Heartbeat> {
        let (node_id, info) = (node_id.to_string(), info.to_string());
        let ttl = ttl_ms(lease_ttl);
        self.write(move |tx| cluster::heartbeat(tx, &node_id, &info, ttl)).await
    }

    async fn claim_leases(
        &self,
        node_id: &str,
        webhook_ids: Vec<String>,
        lease_ttl: Duration,
    ) -> StoreResult<Vec<Fence>> {
        let node_id = node_id.to_string();
        let ttl = ttl_ms(lease_ttl);
        self.write(move |tx| cluster::claim(tx, &node_id, &webhook_ids, ttl)).await
    }

    async fn release_leases(&self, node_id: &str, leases: Vec<Fence>) -> StoreResult<()> {
        let node_id = node_id.to_string();
        self.write(move |tx| cluster::release(tx, &node_id, &leases)).await
    }

    async fn leave(&self, node_id: &str) -> StoreResult<()> {
        let node_id = node_id.to_string();
        self.write(move |tx| cluster::leave(tx, &node_id)).await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.read(cluster::nodes).await
    }

    fn take_notices(&self) -> Option<tokio::sync::mpsc::Receiver<Notice>> {
        None
    }

    // ----- retention (part: retention) -----

    async fn prune(&self, batch: PruneBatch) -> StoreResult<PruneOutcome> {
        self.write(move |tx| prune::prune(tx, &batch)).await
    }

    async fn reclaim(&self, max_bytes: u64) -> StoreResult<StorageSize> {
        self.write(move |tx| prune::reclaim(tx, max_bytes)).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable)).await
    }

    async fn close(&self) {
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
        let handle = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.readers.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A lease time in ms (at least 1).
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(path_from_url("sqlite://webhooks.db").unwrap(), PathBuf::from("webhooks.db"));
        assert_eq!(path_from_url("sqlite:///var/lib/w.db").unwrap(), PathBuf::from("/var/lib/w.db"));
        assert_eq!(path_from_url("sqlite:w.db?mode=rwc").unwrap(), PathBuf::from("w.db"));
        assert!(path_from_url("sqlite://").is_err());
        assert!(path_from_url("sqlite::memory:").is_err());
    }

    #[test]
    fn lists_become_json() {
        assert_eq!(json_list(&["a", "b\"c"]), r#"["a","b\"c"]"#);
        assert_eq!(json_list::<String>(&[]), "[]");
    }
}
