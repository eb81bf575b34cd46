//! PostgreSQL: several nodes sharing one database (tokio-postgres with a deadpool pool).
//!
//! Every call runs on the store's own runtime thread (a current-thread tokio runtime), so the
//! pool's connection tasks and the notice listener live on a runtime the store controls rather
//! than on whichever actix arbiter happened to open a connection. Lease and node times come from
//! the database clock; lists cross into SQL as arrays (`unnest`, `= ANY`); group commits are a
//! few multi-row statements. Notices travel by LISTEN/NOTIFY on one channel per schema.

mod cluster;
mod migrate;
mod notify;
mod prune;
mod read;
mod registry;
mod replay;
mod tls;
mod write;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::*;
use crate::model::WebhookRecord;

/// What the calls share, on the store's runtime.
struct Inner {
    pool: Pool,
    /// `servio_webhooks:<schema>`, the notice channel.
    channel: String,
    /// This node's id, the origin of its notices.
    node_id: String,
}

/// PostgreSQL-backed [`Store`].
pub struct PgStore {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Handle,
    closed: AtomicBool,
    /// Dropping or firing it ends the runtime thread (and with it every connection).
    stop_runtime: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stop_listener: watch::Sender<bool>,
    notices: Mutex<Option<mpsc::Receiver<Notice>>>,
}

fn pg(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => StoreError::Unavailable(format!("{}: {} ({})", db.severity(), db.message(), db.code().code())),
        None => StoreError::Unavailable(with_causes(&e)),
    }
}

/// An error's message followed by its causes (tokio-postgres keeps e.g. "connection refused"
/// in the source).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Closed => StoreError::Closed,
        deadpool_postgres::PoolError::Backend(e) => pg(e),
        other => StoreError::Unavailable(format!("connection pool: {other}")),
    }
}

/// The TLS connector for a URL's `sslmode`: `disable` uses none; `prefer` (the default) encrypts
/// when the server offers TLS without verifying its certificate (as libpq does: a client that
/// falls back to plain text cannot tell a real server from an impostor anyway); `require`
/// verifies the certificate against the platform's roots (stricter than libpq's `require`).
fn tls(mode: tokio_postgres::config::SslMode) -> StoreResult<MakeRustlsConnect> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = match mode {
        tokio_postgres::config::SslMode::Prefer => Arc::new(tls::Unverified(provider.clone())),
        _ => Arc::new(
            rustls_platform_verifier::Verifier::new(provider.clone())
                .map_err(|e| StoreError::Config(format!("no platform trust store for PostgreSQL TLS: {e}")))?,
        ),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Parses a `postgres://` URL into a driver config (errors redacted).
fn parse_url(url: &str) -> StoreResult<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Config(format!("invalid database url `{}`: {}", redact_url(url), with_causes(&e))))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("servio-webhooks");
    }
    Ok(config)
}

/// The notice channel of a schema: at most 63 bytes (PostgreSQL's identifier limit).
fn channel_name(schema: &str) -> String {
    let mut name = format!("servio_webhooks:{schema}");
    while name.len() > 63 {
        name.pop();
    }
    name
}

impl PgStore {
    /// Connects to the database a `postgres://` URL names (the schema is the connection's
    /// `search_path`, e.g. `?options=-csearch_path%3Dmyschema`), applies pending migrations under
    /// an advisory lock, and starts the notice listener.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let mut config = parse_url(url)?;
        let idle_ms = options.postgres_idle_in_transaction.as_millis().max(1);
        let session =
            format!("{} -c idle_in_transaction_session_timeout={idle_ms}", config.get_options().unwrap_or_default());
        config.options(session.trim());
        let tls = tls(config.get_ssl_mode())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("postgres runtime: {e}")))?;
        let handle = runtime.handle().clone();
        let (stop_runtime, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("webhooks-postgres".into())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(|e| StoreError::Unavailable(format!("postgres runtime thread: {e}")))?;
        let (stop_listener, listener_stopped) = watch::channel(false);
        let (notice_tx, notice_rx) = mpsc::channel(notify::NOTICE_CAPACITY);
        let pool_size = options.postgres_pool_size.max(1);
        let node_id = options.node_id.clone();
        let redacted = redact_url(url);
        let setup = handle.spawn(async move {
            let channel = migrate::migrate(&config, tls.clone()).await?;
            let manager = Manager::from_config(
                config.clone(),
                tls.clone(),
                ManagerConfig { recycling_method: RecyclingMethod::Fast },
            );
            let pool = Pool::builder(manager)
                .max_size(pool_size)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .wait_timeout(Some(Duration::from_secs(30)))
                .create_timeout(Some(Duration::from_secs(15)))
                .recycle_timeout(Some(Duration::from_secs(5)))
                .build()
                .map_err(|e| StoreError::Config(format!("connection pool: {e}")))?;
            drop(pool.get().await.map_err(pool_err)?);
            let (ready_tx, ready) = oneshot::channel();
            tokio::spawn(notify::listen(config, tls, channel.clone(), notice_tx, listener_stopped, ready_tx));
            // Notices committed from here on are heard (unless the listener cannot connect yet:
            // it keeps trying and resyncs once it can).
            if tokio::time::timeout(Duration::from_secs(10), ready).await.is_err() {
                tracing::warn!("the notice listener is not connected yet; going on without it");
            }
            Ok::<_, StoreError>(Inner { pool, channel, node_id })
        });
        let store = |inner| Self {
            inner: Arc::new(inner),
            runtime: handle.clone(),
            closed: AtomicBool::new(false),
            stop_runtime: Mutex::new(Some(stop_runtime)),
            thread: Mutex::new(Some(thread)),
            stop_listener,
            notices: Mutex::new(Some(notice_rx)),
        };
        match setup.await {
            Ok(Ok(inner)) => Ok(store(inner)),
            Ok(Err(e)) => Err(match e {
                StoreError::Unavailable(m) => StoreError::Unavailable(format!("{redacted}: {m}")),
                other => other,
            }),
            Err(e) => Err(StoreError::Unavailable(format!("postgres setup task failed: {e}"))),
        }
    }

    /// Runs `f` on the store's runtime and waits for it.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        self.runtime.spawn(f(self.inner.clone())).await.map_err(|e| {
            if e.is_cancelled() {
                StoreError::Closed
            } else {
                StoreError::Unavailable(format!("store task failed: {e}"))
            }
        })?
    }
}

/// Runs a cached prepared statement and returns its rows.
async fn query<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.query(&stmt, params).await.map_err(pg)
}

/// Runs a cached prepared statement and returns its row, if any.
async fn query_opt<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.query_opt(&stmt, params).await.map_err(pg)
}

/// Runs a cached prepared statement and returns its row count.
async fn execute<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await.map_err(pg)?;
    c.execute(&stmt, params).await.map_err(pg)
}

/// One column of a row, as the type the schema promises.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> StoreResult<T> {
    row.try_get(i).map_err(|e| StoreError::Corrupt(with_causes(&e)))
}

/// The database clock, Unix ms: the time of every lease and node row.
const NOW_MS: &str = "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint";

/// A lease time in ms (at least 1).
fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4).max(1)
}

#[async_trait]
impl Store for PgStore {
    async fn upsert_webhook(&self, webhook: WebhookRecord) -> StoreResult<(Upserted, u64)> {
        self.run(move |inner| async move { registry::upsert_webhook(&inner, &webhook).await }).await
    }

    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |inner| async move { registry::delete_webhook(&inner, &id, at_ms).await }).await
    }

    async fn update_webhook(&self, webhook: WebhookRecord, expected_revision: u64) -> StoreResult<Option<u64>> {
        self.run(move |inner| async move { registry::update_webhook(&inner, &webhook, expected_revision).await }).await
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookView>> {
        let id = id.to_string();
        self.run(move |inner| async move { read::get_webhook(&inner, &id).await }).await
    }

    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookView>> {
        self.run(move |inner| async move { read::list_webhooks(&inner, after.unwrap_or_default(), limit).await }).await
    }

    async fn registry_changes(&self, since: u64) -> StoreResult<RegistryChanges> {
        self.run(move |inner| async move { read::registry_changes(&inner, since).await }).await
    }

    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        self.run(move |inner| async move { write::apply(&inner, &batch).await }).await
    }

    async fn load_due(&self, webhook_id: &str, now_ms: i64, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        let webhook_id = webhook_id.to_string();
        self.run(move |inner| async move { read::load_due(&inner, &webhook_id, now_ms, &exclude, limit).await }).await
    }

    async fn load_in_order(&self, webhook_id: &str, exclude: Vec<String>, limit: u32) -> StoreResult<DuePage> {
        let webhook_id = webhook_id.to_string();
        self.run(move |inner| async move { read::load_in_order(&inner, &webhook_id, &exclude, limit).await }).await
    }

    async fn due_summary(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<PendingSummary>> {
        self.run(move |inner| async move { read::due_summary(&inner, &webhook_ids).await }).await
    }

    async fn stored_health(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, StoredHealth)>> {
        self.run(move |inner| async move { read::stored_health(&inner, &webhook_ids).await }).await
    }

    async fn pending_counts(&self, webhook_ids: Vec<String>) -> StoreResult<Vec<(String, u64)>> {
        self.run(move |inner| async move { read::pending_counts(&inner, &webhook_ids).await }).await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        let id = id.to_string();
        self.run(move |inner| async move { read::get_delivery(&inner, &id).await }).await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.run(move |inner| async move { read::list_deliveries(&inner, filter, before, limit).await }).await
    }

    // ----- replay -----

    async fn retry_delivery(&self, id: &str, now_ms: i64) -> StoreResult<RetryOutcome> {
        let id = id.to_string();
        self.run(move |inner| async move { replay::retry_delivery(&inner, &id, now_ms).await }).await
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
        self.run(move |inner| async move {
            replay::start_recovery(&inner, &webhook_id, &node_id, since_ms, until_ms, now_ms).await
        })
        .await
    }

    async fn recover_batch(
        &self,
        webhook_id: &str,
        node_id: &str,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<RecoverBatch> {
        let (webhook_id, node_id) = (webhook_id.to_string(), node_id.to_string());
        self.run(move |inner| async move { replay::recover_batch(&inner, &webhook_id, &node_id, limit, now_ms).await })
            .await
    }

    async fn interrupt_recoveries(&self, node_id: &str, now_ms: i64) -> StoreResult<u64> {
        let node_id = node_id.to_string();
        self.run(move |inner| async move { replay::interrupt_recoveries(&inner, &node_id, now_ms).await }).await
    }

    // ----- tenants part -----

    async fn list_tenant_webhooks(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<WebhookView>> {
        let tenant = tenant.to_string();
        self.run(move |inner| async move {
            read::list_tenant_webhooks(&inner, tenant, after.unwrap_or_default(), limit).await
        })
        .await
    }

    async fn create_api_token(&self, token: ApiTokenRecord) -> StoreResult<()> {
        self.run(move |inner| async move { registry::create_api_token(&inner, &token).await }).await
    }

    async fn api_token(&self, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
        let id = id.to_string();
        self.run(move |inner| async move { read::api_token(&inner, &id).await }).await
    }

    async fn list_api_tokens(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<ApiTokenRecord>> {
        self.run(move |inner| async move { read::list_api_tokens(&inner, after.unwrap_or_default(), limit).await })
            .await
    }

    async fn delete_api_token(&self, id: &str) -> StoreResult<bool> {
        let id = id.to_string();
        self.run(move |inner| async move { registry::delete_api_token(&inner, &id).await }).await
    }

    fn exclusive(&self) -> bool {
        false
    }

    async fn heartbeat(&self, node_id: &str, info: &str, lease_ttl: Duration) -> StoreResult<Heartbeat> {
        let (node_id, info) = (node_id.to_string(), info.to_string());
        let ttl = ttl_ms(lease_ttl);
        self.run(move |inner| async move { cluster::heartbeat(&inner, &node_id, &info, ttl).await }).await
    }

    async fn claim_leases(
        &self,
        node_id: &str,
        webhook_ids: Vec<String>,
        lease_ttl: Duration,
    ) -> StoreResult<Vec<Fence>> {
        let node_id = node_id.to_string();
        let ttl = ttl_ms(lease_ttl);
        self.run(move |inner| async move { cluster::claim(&inner, &node_id, webhook_ids, ttl).await }).await
    }

    async fn release_leases(&self, node_id: &str, leases: Vec<Fence>) -> StoreResult<()> {
        let node_id = node_id.to_string();
        self.run(move |inner| async move { cluster::release(&inner, &node_id, &leases).await }).await
    }

    async fn leave(&self, node_id: &str) -> StoreResult<()> {
        let node_id = node_id.to_string();
        self.run(move |inner| async move { cluster::leave(&inner, &node_id).await }).await
    }

    async fn nodes(&self) -> StoreResult<Vec<NodeRecord>> {
        self.run(|inner| async move { cluster::nodes(&inner).await }).await
    }

    fn take_notices(&self) -> Option<mpsc::Receiver<Notice>> {
        self.notices.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    // ----- retention (part: retention) -----

    async fn prune(&self, batch: PruneBatch) -> StoreResult<PruneOutcome> {
        self.run(move |inner| async move { prune::prune(&inner, &batch).await }).await
    }

    async fn reclaim(&self, _max_bytes: u64) -> StoreResult<StorageSize> {
        // Autovacuum makes deleted rows reusable; nothing goes back to the file system.
        self.run(|inner| async move { prune::size(&inner).await }).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.run(|inner| async move {
            let client = inner.pool.get().await.map_err(pool_err)?;
            client.simple_query("SELECT 1").await.map_err(pg)?;
            Ok(())
        })
        .await
    }

    async fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self.stop_listener.send(true);
        self.inner.pool.close();
        let stop = self.stop_runtime.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(stop);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_name("public"), "servio_webhooks:public");
        assert_eq!(channel_name(&"x".repeat(100)).len(), 63);
    }

    #[test]
    fn bad_urls_are_refused_without_their_password() {
        let err = parse_url("postgres://u:hunter2@localhost/db?sslmode=bogus").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(parse_url("postgres://u@localhost:5432/db?sslmode=require").is_ok());
    }
}
