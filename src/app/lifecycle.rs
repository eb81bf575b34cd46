//! Endpoint lifecycle on a running subsystem: changes to a registration (update, disable, enable,
//! secret rotation) made with a compare-and-set on its registry revision and applied live, the
//! secret itself, and the test ping.
//!
//! Every change reads the registration, computes the new one, and stores it only if nothing
//! changed it meanwhile ([`crate::store::Store::update_webhook`]); a lost race is read and computed
//! again (a few times, then [`LifecycleError::Conflict`]), so a concurrent change is never lost.
//! The stored record then goes to the dispatcher like any registry change: the endpoint actor uses
//! it for its next attempt, and other nodes pick it up from the registry.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::{WebhookInfo, Webhooks};
use crate::catalog::TEST_EVENT_TYPE;
use crate::delivery::dispatcher::{Apply, Publish, PublishError, PublishRequest};
use crate::model::{DeliveryStatus, SpecError, WebhookRecord, WebhookSpec, now_ms};
use crate::store::{AttemptRecord, StoreError};

/// Compare-and-set attempts before a change gives up with [`LifecycleError::Conflict`].
const CAS_ATTEMPTS: usize = 8;
/// How much longer than the attempt timeout the test ping waits for the first outcome (the
/// ledger's commit, the endpoint's queue).
const TEST_MARGIN: Duration = Duration::from_secs(2);
/// How often the test ping looks for the outcome.
const TEST_POLL: Duration = Duration::from_millis(20);
/// The most characters of a disable reason.
pub(crate) const REASON_LEN: usize = 1024;
/// The reason shown when an operator disables without giving one.
pub(crate) const DEFAULT_DISABLE_REASON: &str = "disabled by an operator";

/// Why a lifecycle operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such webhook.
    #[error("webhook `{0}` not found")]
    NotFound(String),
    /// The registration kept changing under the compare-and-set; nothing was stored.
    #[error("webhook `{0}` changed concurrently; try again")]
    Conflict(String),
    /// The result is not a valid registration (or a bad secret, reason or overlap); nothing changed.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The webhook is disabled: it sends nothing, test pings included.
    #[error("webhook `{0}` is disabled; enable it first (POST /v1/webhooks/{0}/enable)")]
    Disabled(String),
    /// The test event could not be published.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The subsystem is shutting down.
    #[error("the webhook subsystem is shutting down")]
    ShuttingDown,
}

/// What the test ping learnt.
#[derive(Debug, Clone)]
pub struct TestDelivery {
    /// The stored delivery of the `webhook.test` event.
    pub delivery_id: String,
    /// The first attempt and the delivery's status after it; `None` if it did not finish in time
    /// (it still goes out, once).
    pub outcome: Option<(DeliveryStatus, AttemptRecord)>,
}

impl Webhooks {
    /// Changes a registration from its current spec: `spec_of` gets the stored registration and
    /// returns the spec to apply (validated as for a replace; its secret, when given, replaces the
    /// key at once). The disabled state, creation time and a rotation in progress are kept.
    /// Applied with a compare-and-set (`spec_of` may run again after a lost race) and live.
    pub async fn update<E>(
        &self,
        id: &str,
        mut spec_of: impl FnMut(&WebhookRecord) -> Result<WebhookSpec, E>,
    ) -> Result<WebhookInfo, E>
    where
        E: From<LifecycleError>,
    {
        let catalog = self.inner.catalog.clone();
        let policy = self.inner.shared.settings.target_policy();
        self.change(id, |current| {
            let spec = spec_of(current)?;
            let mut next = spec
                .into_record(current.id.clone(), &catalog, &policy, Some(current))
                .map_err(|e| E::from(LifecycleError::Invalid(e)))?;
            next.disabled_at_ms = current.disabled_at_ms;
            next.disabled_reason = current.disabled_reason.clone();
            Ok(Some(next))
        })
        .await
    }

    /// Disables a webhook (idempotent: an already disabled one keeps its reason): it sends nothing
    /// more, and its pending deliveries fail with the reason, as when it is disabled automatically.
    pub async fn disable(&self, id: &str, reason: Option<String>) -> Result<WebhookInfo, LifecycleError> {
        let reason = match reason {
            Some(r) if r.is_empty() || r.chars().count() > REASON_LEN || r.chars().any(|c| c.is_ascii_control()) => {
                return Err(SpecError::Invalid(format!(
                    "reason must be 1 to {REASON_LEN} characters without ASCII control characters"
                ))
                .into());
            }
            Some(r) => r,
            None => DEFAULT_DISABLE_REASON.to_string(),
        };
        self.change(id, |current| {
            if current.disabled_at_ms.is_some() {
                return Ok(None);
            }
            let now = now_ms();
            Ok(Some(WebhookRecord {
                disabled_at_ms: Some(now),
                disabled_reason: Some(reason.clone()),
                updated_at_ms: now,
                ..current.clone()
            }))
        })
        .await
    }

    /// Enables a disabled webhook (idempotent): its health starts over, new events reach it again,
    /// and deliveries still pending for it go out.
    pub async fn enable(&self, id: &str) -> Result<WebhookInfo, LifecycleError> {
        self.change(id, |current| {
            if current.disabled_at_ms.is_none() {
                return Ok(None);
            }
            Ok(Some(WebhookRecord {
                disabled_at_ms: None,
                disabled_reason: None,
                updated_at_ms: now_ms(),
                ..current.clone()
            }))
        })
        .await
    }

    /// A webhook's signing secret; `None` if there is no such webhook.
    pub async fn secret(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.inner.shared.store.get_webhook(id).await?.map(|v| v.record.secret))
    }

    /// Rotates a webhook's secret to `secret` (generated when `None`). For `overlap` (default
    /// `settings.secret_rotation_overlap`) the previous secret signs too, beside the new one;
    /// a rotation during another's overlap drops the older secret. Returns the new secret.
    pub async fn rotate_secret(
        &self,
        id: &str,
        secret: Option<String>,
        overlap: Option<Duration>,
    ) -> Result<String, LifecycleError> {
        let secret = match secret {
            Some(s) => crate::model::validate_secret(s)?,
            None => crate::signing::generate_secret(),
        };
        let overlap = overlap.unwrap_or(self.inner.shared.settings.secret_rotation_overlap);
        if overlap > crate::config::MAX_SECRET_ROTATION_OVERLAP {
            return Err(SpecError::Invalid("overlapSeconds must be at most 2592000 (30 days)".into()).into());
        }
        self.change::<LifecycleError>(id, |current| {
            let now = now_ms();
            let keep_previous = !overlap.is_zero();
            Ok(Some(WebhookRecord {
                secret: secret.clone(),
                previous_secret: keep_previous.then(|| current.secret.clone()),
                previous_secret_until_ms: keep_previous.then(|| now.saturating_add(overlap.as_millis() as i64)),
                updated_at_ms: now,
                ..current.clone()
            }))
        })
        .await?;
        Ok(secret)
    }

    /// Sends a `webhook.test` event to this webhook alone (whatever it subscribes to) through the
    /// normal path: a stored delivery, signed, in the attempt log, attempted once (never
    /// retried). Waits for the first attempt's outcome up to the attempt timeout plus a margin.
    /// `data` defaults to `{"webhookId": id}`.
    pub async fn test_delivery(&self, id: &str, data: Option<Box<RawValue>>) -> Result<TestDelivery, LifecycleError> {
        let store = &self.inner.shared.store;
        let Some(view) = store.get_webhook(id).await? else { return Err(LifecycleError::NotFound(id.into())) };
        if view.record.disabled_at_ms.is_some() {
            return Err(LifecycleError::Disabled(id.into()));
        }
        let data = match data {
            Some(d) => d,
            None => serde_json::value::to_raw_value(&serde_json::json!({ "webhookId": id }))
                .map_err(|e| PublishError::InvalidData(e.to_string()))?,
        };
        self.check_publish(&data, None)?;
        let (reply, rx) = oneshot::channel();
        let request = PublishRequest {
            event_type: Arc::from(TEST_EVENT_TYPE),
            data,
            idempotency_key: None,
            tenant: view.record.tenant.as_deref().map(Arc::from),
            only: Some(Arc::from(id)),
            reply,
        };
        self.inner.dispatcher.do_send(Publish(request));
        let receipt = rx.await.map_err(|_| LifecycleError::ShuttingDown)??;
        let Some(delivery) = receipt.deliveries.into_iter().next() else {
            return Err(LifecycleError::NotFound(id.into())); // deleted meanwhile
        };
        let deadline = tokio::time::Instant::now() + self.inner.shared.settings.delivery.request_timeout + TEST_MARGIN;
        loop {
            if let Some((record, log)) = store.get_delivery(&delivery.id).await?
                && let Some(first) = log.into_iter().min_by_key(|a| a.attempt)
            {
                return Ok(TestDelivery { delivery_id: delivery.id, outcome: Some((record.status, first)) });
            }
            if tokio::time::Instant::now() + TEST_POLL > deadline {
                return Ok(TestDelivery { delivery_id: delivery.id, outcome: None });
            }
            tokio::time::sleep(TEST_POLL).await;
        }
    }

    /// Reads, changes and stores a registration with a compare-and-set, then applies it live.
    /// `next` returns the new record, or `None` when nothing is to change.
    async fn change<E>(
        &self,
        id: &str,
        mut next: impl FnMut(&WebhookRecord) -> Result<Option<WebhookRecord>, E>,
    ) -> Result<WebhookInfo, E>
    where
        E: From<LifecycleError>,
    {
        if self.inner.stopped.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LifecycleError::ShuttingDown.into());
        }
        let store = &self.inner.shared.store;
        let not_found = || E::from(LifecycleError::NotFound(id.to_string()));
        let store_err = |e: StoreError| E::from(LifecycleError::Store(e));
        for _ in 0..CAS_ATTEMPTS {
            let Some(view) = store.get_webhook(id).await.map_err(store_err)? else { return Err(not_found()) };
            let Some(mut record) = next(&view.record)? else {
                return self.webhook(id).await.map_err(store_err)?.ok_or_else(not_found);
            };
            record.id = view.record.id.clone();
            record.created_at_ms = view.record.created_at_ms;
            let Some(revision) = store.update_webhook(record.clone(), view.record.revision).await.map_err(store_err)?
            else {
                continue; // changed (or deleted) since it was read: read again
            };
            record.revision = revision;
            self.inner.dispatcher.send(Apply(record)).await.map_err(|_| E::from(LifecycleError::ShuttingDown))?;
            return self.webhook(id).await.map_err(store_err)?.ok_or_else(not_found);
        }
        Err(LifecycleError::Conflict(id.to_string()).into())
    }
}
