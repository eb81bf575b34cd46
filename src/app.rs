//! [`Webhooks`]: the subsystem as a host application (or the standalone server) holds it.
//!
//! `Webhooks::start` opens the store, starts the ledger, the dispatcher and the node actor, joins the
//! cluster (on SQLite: a cluster of one that owns every webhook, so every pending delivery is
//! rescheduled before it returns), and returns a cheap, cloneable handle for publishing, managing
//! webhooks, mounting the REST routes and shutting down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix::prelude::*;
use actix_web::web::ServiceConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::catalog::{CatalogError, EventCatalog};
use crate::cluster::lease::{LeaseGuard, LeaseTimes};
use crate::cluster::node::{Adopt, Forget, Join, Leave, NodeActor};
use crate::config::Settings;
use crate::delivery::client::Connector;
use crate::delivery::dispatcher::{
    Apply, DispatcherActor, DrainAll, InjectFault, LiveHealth, Publish, PublishRequest, Remove, Requeue, RunningActors,
};
use crate::delivery::health::{EndpointState, HealthSnapshot};
use crate::delivery::ledger::{Barrier, LedgerActor, SetListeners, Stop};
use crate::delivery::write_health::{Refusal, WriteHealth};
use crate::delivery::{Shared, dispatcher};
use crate::model::{SpecError, WebhookRecord, WebhookSpec, new_webhook_id, now_ms};
use crate::store::{
    self, AttemptRecord, DeliveryFilter, DeliveryRecord, LeaseInfo, NodeRecord, RecoveryRecord, RecoveryStart,
    RetryOutcome, Store, StoreError, StoreOptions, StoredHealth, Upserted, WebhookView,
};

pub use dispatcher::{DeliveryRef, PublishError, PublishReceipt};
pub use lifecycle::{LifecycleError, TestDelivery};

mod lifecycle;

/// Why the subsystem could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is invalid (e.g. a malformed extra event type).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store could not be opened or recovered.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `WEBHOOK_URLS` registration is invalid.
    #[error("invalid webhook `{id}` from WEBHOOK_URLS: {error}")]
    Seed {
        /// `webhook-{i}`.
        id: String,
        /// What is wrong with it.
        error: SpecError,
    },
}

impl From<CatalogError> for StartError {
    fn from(e: CatalogError) -> Self {
        StartError::Config(e.to_string())
    }
}

/// Why a registration change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The spec is invalid; nothing was stored.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The store failed; nothing was stored.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The subsystem is shutting down.
    #[error("the webhook subsystem is shutting down")]
    ShuttingDown,
}

/// Options of [`Webhooks::publish_with`].
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Deduplicates publishes (see [`Webhooks::publish_raw`]).
    pub idempotency_key: Option<String>,
    /// tenants part: the event's tenant (1 to 128 characters of `[A-Za-z0-9._:-]`); `None`:
    /// `data.venueId` when that is a string and a valid tenant name, else none.
    pub tenant: Option<String>,
}

/// A registration with its health and owner.
#[derive(Debug, Clone)]
pub struct WebhookInfo {
    /// The stored registration.
    pub record: WebhookRecord,
    /// Endpoint health: live when this node owns the webhook, else as its owner last stored it.
    pub health: HealthSnapshot,
    /// The node holding its lease, if any.
    pub owner: Option<LeaseInfo>,
    /// replay: its last recovery, if any.
    pub recovery: Option<RecoveryRecord>,
}

impl WebhookInfo {
    fn new(view: WebhookView, live: Option<HealthSnapshot>) -> Self {
        let disabled = view.record.disabled_at_ms.is_some();
        let mut health = live.unwrap_or_else(|| snapshot_of(view.health.unwrap_or_default()));
        if disabled {
            health.state = EndpointState::Disabled;
        } else if health.state == EndpointState::Disabled {
            health.state = EndpointState::Healthy; // re-enabled since the owner last stored it
        }
        Self { record: view.record, health, owner: view.owner, recovery: view.recovery }
    }
}

fn snapshot_of(h: StoredHealth) -> HealthSnapshot {
    HealthSnapshot {
        state: h.state,
        consecutive_failures: h.consecutive_failures,
        last_success_ms: h.last_success_ms,
        last_failure_ms: h.last_failure_ms,
        restarts: 0,
    }
}

/// Handle to a running webhook subsystem. Clone it freely; all clones drive the same actors.
///
/// ```no_run
/// # async fn example() -> anyhow::Result<()> {
/// use servio_webhooks::{Settings, WebhookSpec, Webhooks};
///
/// let webhooks = Webhooks::start(Settings::default()).await?; // inside an actix System
/// let spec = WebhookSpec {
///     url: "https://pos.example.com/hooks".into(),
///     events: Some(vec!["order.created".into()]),
///     ..WebhookSpec::default()
/// };
/// let (info, _) = webhooks.register(None, spec).await?;
/// println!("registered {} with secret {}", info.record.id, info.record.secret);
/// let receipt = webhooks.publish("order.created", serde_json::json!({"orderId": "ord_1"})).await?;
/// assert_eq!(receipt.deliveries.len(), 1);
/// webhooks.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

// A host may hold the handle on any thread (e.g. a `#[tokio::main]` app talking to a subsystem
// that runs on its own actix System thread).
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Webhooks>();
};

struct Inner {
    shared: Arc<Shared>,
    catalog: EventCatalog,
    dispatcher: Addr<DispatcherActor>,
    ledger: Addr<LedgerActor>,
    node: Addr<NodeActor>,
    arbiters: Mutex<Vec<Arbiter>>,
    metrics: PrometheusHandle,
    stopped: AtomicBool,
    // retention (part: retention)
    pruner: crate::retention::Pruner,
}

impl Webhooks {
    /// Starts the subsystem inside the current actix `System` (e.g. under `#[actix_web::main]`).
    /// Returns once every stored webhook has its endpoint actor and pending deliveries are rescheduled.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        settings.validate().map_err(|e| StartError::Config(e.to_string()))?;
        let node_id = settings.node_id_or_generate();
        let options = StoreOptions {
            node_id: node_id.clone(),
            sqlite_full_sync: settings.sqlite_full_sync,
            // A frozen node's open transaction must not outlast half its lease.
            postgres_idle_in_transaction: (settings.cluster.lease_ttl / 2).max(std::time::Duration::from_secs(1)),
            ..StoreOptions::default()
        };
        let store = store::open(&settings.database_url, &options).await?;
        Self::start_with_store(Settings { node_id: Some(node_id), ..settings }, store).await
    }

    /// [`Webhooks::start`] on a store opened by the caller (`settings.database_url` is then only
    /// shown in logs): for a store wrapped with instrumentation or fault injection, or a backend
    /// of the host's own.
    pub async fn start_with_store(settings: Settings, store: Arc<dyn Store>) -> Result<Self, StartError> {
        settings.validate().map_err(|e| StartError::Config(e.to_string()))?;
        let catalog = EventCatalog::with_extra(&settings.event_types)?;
        // The recorder is per process: the first subsystem started decides how long series stay.
        crate::metrics::set_series_idle_timeout(settings.metrics_idle_timeout);
        let metrics = crate::metrics::handle();
        let node_id: Arc<str> = Arc::from(settings.node_id_or_generate());

        for (id, spec) in settings.seed_webhooks.clone() {
            let existing = store.get_webhook(&id).await?.map(|v| v.record);
            let record = spec
                .into_record(id.clone(), &catalog, &settings.target_policy(), existing.as_ref())
                .map_err(|error| StartError::Seed { id, error })?;
            store.upsert_webhook(record).await?;
        }

        // replay: a recovery this node id was running before a restart died with that run.
        let interrupted = store.interrupt_recoveries(&node_id, now_ms()).await?;
        if interrupted > 0 {
            tracing::warn!(node = %node_id, interrupted, "recoveries of this node's previous run are interrupted");
        }

        let writes = Arc::new(WriteHealth::new(settings.write_stall_timeout, settings.max_pending_writes));
        let ledger = LedgerActor::new(store.clone(), settings.commit_interval, node_id.clone(), writes.clone()).start();
        let attempt_permits = Arc::new(tokio::sync::Semaphore::new(settings.delivery.max_total_in_flight.max(1)));
        let suspect_permits = Arc::new(tokio::sync::Semaphore::new((settings.delivery.max_total_in_flight / 2).max(1)));
        let connector =
            Arc::new(Connector::new(settings.target_policy(), &settings.delivery).map_err(StartError::Config)?);
        let ttl = settings.cluster.lease_ttl;
        let times = LeaseTimes { renewed_at: Instant::now(), ttl, margin: LeaseTimes::margin_for(ttl) };
        let lease = Arc::new(LeaseGuard::new(&times));
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            node_id: node_id.clone(),
            lease: lease.clone(),
            store: store.clone(),
            ledger: ledger.clone(),
            attempt_permits,
            suspect_permits,
            connector,
            faults: Arc::default(),
            writes,
            window_bytes: Arc::new(crate::delivery::endpoint::window::ByteBudget::new(settings.delivery.window_bytes)),
            envelopes: Default::default(),
            base_headers: crate::delivery::endpoint::base_headers(&settings),
            pending_series: Default::default(),
        });
        let n = settings.arbiters.max(1);
        let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(|a| a.handle()).collect();
        let dispatcher = DispatcherActor::new(shared.clone(), handles).start();
        let pruner = crate::retention::Pruner::start(store.clone(), settings.retention.clone(), &node_id);
        let node =
            NodeActor::new(node_id.clone(), settings.cluster.clone(), store, dispatcher.clone(), lease, times).start();
        ledger.do_send(SetListeners { committed: dispatcher.clone().recipient(), fenced: node.clone().recipient() });
        node.send(Join).await.map_err(|_| StartError::Config("the node actor stopped while joining".into()))?;
        tracing::info!(node = %node_id, store = %store::redact_url(&settings.database_url), "webhook subsystem started");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                catalog,
                dispatcher,
                ledger,
                node,
                arbiters: Mutex::new(arbiters),
                metrics,
                stopped: AtomicBool::new(false),
                pruner,
            }),
        })
    }

    /// Publishes an event; returns once it and one delivery per subscribed webhook are committed.
    pub async fn publish(&self, event: &str, data: impl Serialize) -> Result<PublishReceipt, PublishError> {
        let raw = serde_json::value::to_raw_value(&data).map_err(|e| PublishError::InvalidData(e.to_string()))?;
        self.publish_raw(event, raw, None).await
    }

    /// [`Webhooks::publish`] with already-serialized data and an optional idempotency key: a second
    /// publish with the same key returns the first one's receipt (with `duplicate: true`).
    pub async fn publish_raw(
        &self,
        event: &str,
        data: Box<RawValue>,
        idempotency_key: Option<String>,
    ) -> Result<PublishReceipt, PublishError> {
        self.publish_with(event, data, PublishOptions { idempotency_key, tenant: None }).await
    }

    /// [`Webhooks::publish`] for a tenant (tenants part): the event goes to that tenant's webhooks
    /// and to webhooks without a tenant.
    pub async fn publish_for(
        &self,
        tenant: &str,
        event: &str,
        data: impl Serialize,
    ) -> Result<PublishReceipt, PublishError> {
        let raw = serde_json::value::to_raw_value(&data).map_err(|e| PublishError::InvalidData(e.to_string()))?;
        let options = PublishOptions { idempotency_key: None, tenant: Some(tenant.to_string()) };
        self.publish_with(event, raw, options).await
    }

    /// The general publish: already-serialized data, and [`PublishOptions`] (idempotency key,
    /// tenant). Without a tenant, `data.venueId` is the tenant when it is a string that is a valid
    /// tenant name (see [`crate::model::valid_tenant`]); otherwise the event has none and goes only
    /// to webhooks without a tenant.
    pub async fn publish_with(
        &self,
        event: &str,
        data: Box<RawValue>,
        options: PublishOptions,
    ) -> Result<PublishReceipt, PublishError> {
        let PublishOptions { idempotency_key, tenant } = options;
        let event_type = self.inner.catalog.resolve(event)?;
        self.check_publish(&data, idempotency_key.as_deref())?;
        let tenant = match tenant {
            Some(t) if crate::model::valid_tenant(&t) => Some(Arc::from(t)),
            Some(_) => return Err(PublishError::InvalidTenant),
            None => crate::tenants::venue_id(&data).map(Arc::from),
        };
        let (reply, rx) = oneshot::channel();
        let request = PublishRequest { event_type, data, idempotency_key, tenant, only: None, reply };
        self.inner.dispatcher.do_send(Publish(request));
        rx.await.map_err(|_| PublishError::ShuttingDown)?
    }

    /// Whether a publish of `data` may go ahead: its shape and size, the key, and whether the
    /// subsystem takes work right now.
    fn check_publish(&self, data: &RawValue, idempotency_key: Option<&str>) -> Result<(), PublishError> {
        if !data.get().trim_start().starts_with('{') {
            return Err(PublishError::InvalidData("data must be a JSON object".into()));
        }
        let limit = self.inner.shared.settings.max_payload_bytes;
        if data.get().len() > limit {
            return Err(PublishError::PayloadTooLarge { limit });
        }
        if let Some(key) = idempotency_key
            && !crate::model::valid_idempotency_key(key)
        {
            return Err(PublishError::InvalidIdempotencyKey);
        }
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(PublishError::ShuttingDown);
        }
        if let Some(refusal) = self.write_refusal() {
            return Err(PublishError::Unavailable(refusal));
        }
        Ok(())
    }

    /// Registers a webhook: a new generated id when `id` is `None`, else creates or replaces `id`
    /// (keeping its secret unless the spec gives one, and re-enabling it). Effective at once.
    pub async fn register(
        &self,
        id: Option<String>,
        spec: WebhookSpec,
    ) -> Result<(WebhookInfo, Upserted), RegisterError> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(RegisterError::ShuttingDown);
        }
        let settings = &self.inner.shared.settings;
        let store = &self.inner.shared.store;
        let (id, existing) = match id {
            Some(id) => {
                crate::model::validate_webhook_id(&id)?;
                let existing = store.get_webhook(&id).await?.map(|v| v.record);
                (id, existing)
            }
            None => (new_webhook_id(), None),
        };
        let mut record = spec.into_record(id, &self.inner.catalog, &settings.target_policy(), existing.as_ref())?;
        let (upserted, revision) = store.upsert_webhook(record.clone()).await?;
        record.revision = revision;
        let id: Arc<str> = Arc::from(record.id.as_str());
        self.inner.dispatcher.send(Apply(record.clone())).await.map_err(|_| RegisterError::ShuttingDown)?;
        // Owned (on this node or another) before it answers, so a publish right after finds it ready.
        self.inner.node.send(Adopt(id)).await.map_err(|_| RegisterError::ShuttingDown)?;
        let info = match self.webhook(&record.id).await? {
            Some(info) => info,
            None => WebhookInfo::new(WebhookView { record, health: None, owner: None, recovery: None }, None),
        };
        Ok((info, upserted))
    }

    /// Deletes a webhook; its pending deliveries fail with "webhook deleted". False if unknown.
    pub async fn unregister(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.shared.store.delete_webhook(id, now_ms()).await?;
        let _ = self.inner.dispatcher.send(Remove(id.to_string())).await;
        self.inner.node.do_send(Forget(Arc::from(id)));
        Ok(deleted)
    }

    /// One webhook with its health and owner.
    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookInfo>, StoreError> {
        let Some(view) = self.inner.shared.store.get_webhook(id).await? else {
            return Ok(None);
        };
        let live = self.live_health(vec![view.record.id.clone()]).await.pop().flatten();
        Ok(Some(WebhookInfo::new(view, live)))
    }

    /// Webhooks in id order after `after`, with their health and owner.
    pub async fn webhooks(&self, after: Option<String>, limit: u32) -> Result<Vec<WebhookInfo>, StoreError> {
        let views = self.inner.shared.store.list_webhooks(after, limit).await?;
        let live = self.live_health(views.iter().map(|v| v.record.id.clone()).collect()).await;
        Ok(views.into_iter().zip(live).map(|(view, live)| WebhookInfo::new(view, live)).collect())
    }

    /// One tenant's webhooks in id order after `after`, with their health and owner (tenants part).
    pub async fn tenant_webhooks(
        &self,
        tenant: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<WebhookInfo>, StoreError> {
        let views = self.inner.shared.store.list_tenant_webhooks(tenant, after, limit).await?;
        let live = self.live_health(views.iter().map(|v| v.record.id.clone()).collect()).await;
        Ok(views.into_iter().zip(live).map(|(view, live)| WebhookInfo::new(view, live)).collect())
    }

    async fn live_health(&self, ids: Vec<String>) -> Vec<Option<HealthSnapshot>> {
        let n = ids.len();
        self.inner.dispatcher.send(LiveHealth(ids)).await.unwrap_or_else(|_| vec![None; n])
    }

    /// Every node sharing the store (live first), for `GET /v1/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.shared.store.nodes().await
    }

    /// Why the write side refuses work right now (the store refuses writes, a commit stalls, or
    /// too much waits for it), or `None` when it takes work: what `/healthz` reports.
    pub fn write_refusal(&self) -> Option<Refusal> {
        self.inner.shared.writes.refusing(now_ms())
    }

    /// Body bytes held in the endpoints' windows of this node (bounded by `delivery.window_bytes`,
    /// plus one delivery per endpoint with nothing else in memory).
    pub fn window_bytes(&self) -> usize {
        self.inner.shared.window_bytes.used()
    }

    /// Operations waiting for the next commit.
    pub fn pending_writes(&self) -> usize {
        self.inner.shared.writes.buffered()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.shared.node_id
    }

    /// One delivery with its attempt log.
    pub async fn delivery(&self, id: &str) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, StoreError> {
        let Some((mut record, log)) = self.inner.shared.store.get_delivery(id).await? else { return Ok(None) };
        self.held_back_until(std::slice::from_mut(&mut record)).await?;
        Ok(Some((record, log)))
    }

    /// Deliveries, newest first, before the `before` id (without payloads).
    pub async fn deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let mut records = self.inner.shared.store.list_deliveries(filter, before, limit).await?;
        self.held_back_until(&mut records).await?;
        Ok(records)
    }

    // ----- replay -----

    /// Puts one delivery back in the queue for an attempt now (see [`Store::retry_delivery`]:
    /// a failed one gets a fresh retry budget) and tells its endpoint actor; another node that
    /// owns the webhook hears of it through the store.
    pub async fn retry_delivery(&self, id: &str) -> Result<RetryOutcome, StoreError> {
        let mut out = self.inner.shared.store.retry_delivery(id, now_ms()).await?;
        if let RetryOutcome::Requeued { delivery, was_failed } = &mut out {
            self.inner.dispatcher.do_send(Requeue {
                webhook_id: delivery.webhook_id.clone(),
                ids: vec![delivery.id.clone()],
                were_failed: *was_failed,
            });
            self.held_back_until(std::slice::from_mut(&mut **delivery)).await?;
        }
        Ok(out)
    }

    /// Starts re-queueing the failed deliveries of a webhook created in `[since_ms, until_ms)`:
    /// counts them and records the recovery (see [`Store::start_recovery`]), then runs its
    /// batches of [`crate::replay::RECOVER_BATCH`] in the background on this node.
    pub async fn recover(&self, webhook_id: &str, since_ms: i64, until_ms: i64) -> Result<RecoveryStart, StoreError> {
        self.recover_in_batches(webhook_id, since_ms, until_ms, crate::replay::RECOVER_BATCH).await
    }

    /// [`Webhooks::recover`] with another batch size (tests of many batches).
    #[doc(hidden)]
    pub async fn recover_in_batches(
        &self,
        webhook_id: &str,
        since_ms: i64,
        until_ms: i64,
        batch: u32,
    ) -> Result<RecoveryStart, StoreError> {
        let store = self.inner.shared.store.clone();
        let node_id = self.inner.shared.node_id.to_string();
        let start = store.start_recovery(webhook_id, &node_id, since_ms, until_ms, now_ms()).await?;
        if let RecoveryStart::Started(_) = &start {
            let run = crate::replay::run_recovery(
                store,
                self.inner.dispatcher.clone().recipient(),
                webhook_id.to_string(),
                node_id,
                batch,
            );
            let spawned = self.inner.arbiters.lock().unwrap_or_else(|p| p.into_inner()).first().map(|a| a.spawn(run));
            if spawned != Some(true) {
                tracing::warn!(webhook = %webhook_id, "recovery recorded but not run: the subsystem is stopping");
            }
        }
        Ok(start)
    }

    /// A pending delivery of a paused webhook goes out no earlier than the breaker's next probe:
    /// that is its next attempt, not the (past) time it was scheduled for.
    async fn held_back_until(&self, records: &mut [DeliveryRecord]) -> Result<(), StoreError> {
        let mut ids: Vec<String> = records
            .iter()
            .filter(|r| r.status == crate::model::DeliveryStatus::Pending)
            .map(|r| r.webhook_id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        let probes: std::collections::HashMap<String, i64> = self
            .inner
            .shared
            .store
            .stored_health(ids)
            .await?
            .into_iter()
            .filter_map(|(id, h)| h.breaker.map(|b| (id, b.probe_at_ms)))
            .collect();
        for r in records.iter_mut() {
            if let (Some(next), Some(probe)) = (r.next_attempt_at_ms, probes.get(&r.webhook_id)) {
                r.next_attempt_at_ms = Some(next.max(*probe));
            }
        }
        Ok(())
    }

    /// The event catalog.
    pub fn catalog(&self) -> &EventCatalog {
        &self.inner.catalog
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.inner.shared.settings
    }

    /// The Prometheus handle behind `/metrics`.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }

    /// The store, for health checks.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.shared.store
    }

    /// The default mounting, `webhooks.routes().into_configure()`: the admin API under `/v1`
    /// (behind the admin-token policy and the cross-site guard), `/metrics`, `/healthz` and
    /// `/openapi.json`, for `App::new().configure(webhooks.configure())`. Nothing is registered
    /// App-wide: the host's own routes keep their extractor settings and error handlers.
    pub fn configure(&self) -> impl Fn(&mut ServiceConfig) + Clone + 'static {
        self.routes().into_configure()
    }

    /// A builder for mounting the routes elsewhere: the admin API's prefix, and whether and where
    /// `/metrics`, `/healthz` and `/openapi.json` go.
    ///
    /// ```no_run
    /// # async fn f(webhooks: servio_webhooks::Webhooks) {
    /// let routes = webhooks.routes().prefix("/hooks-admin").metrics(Some("/internal/metrics")).healthz(None);
    /// let app = actix_web::App::new().configure(routes.into_configure());
    /// # }
    /// ```
    pub fn routes(&self) -> crate::api::Routes {
        crate::api::Routes::new(self.clone())
    }

    /// Graceful stop: refuse new publishes, let in-flight attempts finish (up to
    /// `settings.shutdown_grace`), commit everything recorded, close the store. Anything not
    /// finished stays pending in the store and is delivered after the next start.
    pub async fn shutdown(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let grace = self.inner.shared.settings.shutdown_grace;
        let _ = self.inner.dispatcher.send(DrainAll { grace }).await;
        let (tx, rx) = oneshot::channel();
        self.inner.ledger.do_send(Barrier(tx));
        let _ = rx.await;
        self.inner.pruner.stop().await;
        // Everything recorded: hand the leases back so other nodes take over at once.
        let _ = self.inner.node.send(Leave).await;
        let _ = self.inner.ledger.send(Stop).await;
        self.inner.shared.store.close().await;
        let arbiters = std::mem::take(&mut *self.inner.arbiters.lock().unwrap_or_else(|p| p.into_inner()));
        for a in &arbiters {
            a.stop();
        }
        let _ = tokio::task::spawn_blocking(move || {
            for a in arbiters {
                let _ = a.join();
            }
        })
        .await;
        tracing::info!(node = %self.inner.shared.node_id, "webhook subsystem stopped");
    }

    // ----- retention (part: retention) -----

    /// Runs a prune cycle now (it runs by itself every `settings.retention.interval`): deletes
    /// what has outlived `WEBHOOKS_RETENTION` / `WEBHOOKS_RETENTION_FAILED`, in bounded batches,
    /// gives the space back (SQLite) and reports it. Waits for a cycle already running.
    pub async fn prune_now(&self) -> Result<crate::retention::PruneReport, StoreError> {
        self.prune_as_of(now_ms()).await
    }

    /// Test hook: [`Webhooks::prune_now`] as if the clock read `now_ms` (days later, say).
    #[doc(hidden)]
    pub async fn prune_as_of(&self, now_ms: i64) -> Result<crate::retention::PruneReport, StoreError> {
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(StoreError::Closed);
        }
        self.inner.pruner.prune_now(now_ms).await
    }

    /// Endpoint actors currently running; idle endpoints hibernate without one.
    pub async fn running_endpoint_actors(&self) -> usize {
        self.inner.dispatcher.send(RunningActors).await.unwrap_or(0)
    }

    /// Test hook: makes the endpoint actor of `webhook_id` panic inside a handler, to exercise
    /// supervised restart and recovery from the store. False if there is no such running endpoint.
    #[doc(hidden)]
    pub async fn inject_endpoint_panic(&self, webhook_id: &str) -> bool {
        self.inject_fault(webhook_id, crate::delivery::faults::Fault::HandlerPanic).await
    }

    /// Test hook: injects a fault into one endpoint's work (see [`crate::delivery::faults::Fault`]).
    /// False if there is no such webhook (or, for a handler fault, no running endpoint actor).
    #[doc(hidden)]
    pub async fn inject_fault(&self, webhook_id: &str, fault: crate::delivery::faults::Fault) -> bool {
        self.inner.dispatcher.send(InjectFault(webhook_id.to_string(), fault)).await.unwrap_or(false)
    }
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM, naming the signal. A host that runs its HttpServer with
/// `disable_signals()` awaits this, stops its server, then calls [`Webhooks::shutdown`]: actix-server's
/// own signal handling stops the whole System, which would cut in-flight attempts short.
pub async fn shutdown_signal() -> &'static str {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    };
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await,
        };
        tokio::select! {
            s = ctrl_c => s,
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await
}
