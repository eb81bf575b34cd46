//! [`Webhooks`]: the subsystem as a host application (or the standalone server) holds it.
//!
//! `Webhooks::start` opens the store, starts the ledger, the dispatcher and one supervised endpoint
//! actor per stored webhook (re-scheduling every pending delivery), and returns a cheap, cloneable
//! handle for publishing, managing webhooks, mounting the REST routes and shutting down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use actix_web::web::ServiceConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::catalog::{CatalogError, EventCatalog};
use crate::config::Settings;
use crate::delivery::client::Connector;
use crate::delivery::dispatcher::{
    Apply, DispatcherActor, DrainAll, HealthOf, PanicEndpoint, Publish, Remove, RunningActors,
};
use crate::delivery::health::HealthSnapshot;
use crate::delivery::ledger::{Barrier, LedgerActor, SetDispatcher, Stop};
use crate::delivery::{Shared, dispatcher};
use crate::model::{SpecError, WebhookRecord, WebhookSpec, new_webhook_id, now_ms};
use crate::store::{self, AttemptRecord, DeliveryFilter, DeliveryRecord, Store, StoreError, StoreOptions, Upserted};

pub use dispatcher::{DeliveryRef, PublishError, PublishReceipt};

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

/// A registration with its live health.
#[derive(Debug, Clone)]
pub struct WebhookInfo {
    /// The stored registration.
    pub record: WebhookRecord,
    /// Live endpoint health (absent only in a race with a concurrent delete).
    pub health: Option<HealthSnapshot>,
}

/// Handle to a running webhook subsystem. Clone it freely; all clones drive the same actors.
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
    arbiters: Mutex<Vec<Arbiter>>,
    metrics: PrometheusHandle,
    stopped: AtomicBool,
}

impl Webhooks {
    /// Starts the subsystem inside the current actix `System` (e.g. under `#[actix_web::main]`).
    /// Returns once every stored webhook has its endpoint actor and pending deliveries are rescheduled.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let catalog = EventCatalog::with_extra(&settings.event_types)?;
        let metrics = crate::metrics::handle();
        let options = StoreOptions { sqlite_full_sync: settings.sqlite_full_sync, ..StoreOptions::default() };
        let store = store::open(&settings.database_url, &options).await?;

        for (id, spec) in settings.seed_webhooks.clone() {
            let existing = store.get_webhook(&id).await?.map(|v| v.record); // TRANSITIONAL
            let record = spec
                .into_record(id.clone(), &catalog, settings.allow_private_targets, existing.as_ref())
                .map_err(|error| StartError::Seed { id, error })?;
            store.upsert_webhook(record).await?;
        }
        // TRANSITIONAL: recover/load_webhooks are gone from the store contract.
        let webhooks = store.registry_changes(0).await?.upserted;
        let ids = webhooks.iter().map(|w| w.id.clone()).collect();
        let pending: HashMap<String, u64> = store.pending_counts(ids).await?.into_iter().collect();

        let ledger = LedgerActor::new(store.clone(), settings.commit_interval).start();
        let attempt_permits = Arc::new(tokio::sync::Semaphore::new(settings.delivery.max_total_in_flight.max(1)));
        let connector = Arc::new(Connector::new(
            settings.allow_private_targets,
            settings.delivery.connect_timeout,
            &settings.delivery.extra_root_certs,
        ));
        let shared =
            Arc::new(Shared { settings: settings.clone(), store, ledger: ledger.clone(), attempt_permits, connector });
        let n = settings.arbiters.max(1);
        let arbiters: Vec<Arbiter> = (0..n).map(|_| Arbiter::new()).collect();
        let handles = arbiters.iter().map(|a| a.handle()).collect();
        let dispatcher = DispatcherActor::new(shared.clone(), handles).start();
        ledger.do_send(SetDispatcher(dispatcher.clone().recipient()));

        let total_pending: u64 = pending.values().sum();
        let count = webhooks.len();
        for record in webhooks {
            let p = pending.get(&record.id).copied().unwrap_or(0);
            dispatcher.do_send(Apply { record, pending: p });
        }
        tracing::info!(webhooks = count, pending = total_pending, "webhook subsystem started");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                catalog,
                dispatcher,
                ledger,
                arbiters: Mutex::new(arbiters),
                metrics,
                stopped: AtomicBool::new(false),
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
        let event_type = self.inner.catalog.resolve(event)?;
        if !data.get().trim_start().starts_with('{') {
            return Err(PublishError::InvalidData("data must be a JSON object".into()));
        }
        let limit = self.inner.shared.settings.max_payload_bytes;
        if data.get().len() > limit {
            return Err(PublishError::PayloadTooLarge { limit });
        }
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 255)
        {
            return Err(PublishError::InvalidData("idempotencyKey must be 1 to 255 characters".into()));
        }
        if self.inner.stopped.load(Ordering::Relaxed) {
            return Err(PublishError::ShuttingDown);
        }
        let (reply, rx) = oneshot::channel();
        self.inner.dispatcher.do_send(Publish { event_type, data, idempotency_key, reply });
        rx.await.map_err(|_| PublishError::ShuttingDown)?
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
                let existing = store.get_webhook(&id).await?.map(|v| v.record); // TRANSITIONAL
                (id, existing)
            }
            None => (new_webhook_id(), None),
        };
        let record = spec.into_record(id, &self.inner.catalog, settings.allow_private_targets, existing.as_ref())?;
        let upserted = store.upsert_webhook(record.clone()).await?;
        self.inner
            .dispatcher
            .send(Apply { record: record.clone(), pending: 0 })
            .await
            .map_err(|_| RegisterError::ShuttingDown)?;
        let health = self.health_of(vec![record.id.clone()]).await.pop().flatten();
        Ok((WebhookInfo { record, health }, upserted))
    }

    /// Deletes a webhook; its pending deliveries fail with "webhook deleted". False if unknown.
    pub async fn unregister(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.shared.store.delete_webhook(id, now_ms()).await?;
        let _ = self.inner.dispatcher.send(Remove(id.to_string())).await;
        Ok(deleted)
    }

    /// One webhook with its health.
    pub async fn webhook(&self, id: &str) -> Result<Option<WebhookInfo>, StoreError> {
        let Some(record) = self.inner.shared.store.get_webhook(id).await?.map(|v| v.record) else {
            // TRANSITIONAL: views carry health and owner now
            return Ok(None);
        };
        let health = self.health_of(vec![record.id.clone()]).await.pop().flatten();
        Ok(Some(WebhookInfo { record, health }))
    }

    /// Webhooks in id order after `after`, with their health.
    pub async fn webhooks(&self, after: Option<String>, limit: u32) -> Result<Vec<WebhookInfo>, StoreError> {
        // TRANSITIONAL: views carry health and owner now
        let records: Vec<_> =
            self.inner.shared.store.list_webhooks(after, limit).await?.into_iter().map(|v| v.record).collect();
        let health = self.health_of(records.iter().map(|r| r.id.clone()).collect()).await;
        Ok(records.into_iter().zip(health).map(|(record, health)| WebhookInfo { record, health }).collect())
    }

    async fn health_of(&self, ids: Vec<String>) -> Vec<Option<HealthSnapshot>> {
        let n = ids.len();
        self.inner.dispatcher.send(HealthOf(ids)).await.unwrap_or_else(|_| vec![None; n])
    }

    /// One delivery with its attempt log.
    pub async fn delivery(&self, id: &str) -> Result<Option<(DeliveryRecord, Vec<AttemptRecord>)>, StoreError> {
        self.inner.shared.store.get_delivery(id).await
    }

    /// Deliveries, newest first, before the `before` id.
    pub async fn deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        self.inner.shared.store.list_deliveries(filter, before, limit).await
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

    /// Mounts `/v1/…` (admin REST, behind the bearer token if one is set), `/metrics` and `/healthz`
    /// into a host's `App`: `App::new().configure(webhooks.configure())`.
    pub fn configure(&self) -> impl Fn(&mut ServiceConfig) + Clone + 'static {
        let this = self.clone();
        move |cfg: &mut ServiceConfig| crate::api::configure(cfg, this.clone())
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
        tracing::info!("webhook subsystem stopped");
    }

    /// Endpoint actors currently running; idle endpoints hibernate without one.
    pub async fn running_endpoint_actors(&self) -> usize {
        self.inner.dispatcher.send(RunningActors).await.unwrap_or(0)
    }

    /// Test hook: makes the endpoint actor of `webhook_id` panic inside a handler, to exercise
    /// supervised restart and recovery from the store. False if there is no such endpoint.
    #[doc(hidden)]
    pub async fn inject_endpoint_panic(&self, webhook_id: &str) -> bool {
        self.inner.dispatcher.send(PanicEndpoint(webhook_id.to_string())).await.unwrap_or(false)
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
