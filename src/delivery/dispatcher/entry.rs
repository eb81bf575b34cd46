//! One registered webhook as the dispatcher keeps it: what a publish needs (subscription, whether
//! it is disabled) on every node, and on the node that holds its lease, the endpoint actor.
//!
//! The actor runs only while it has work: it starts on the first delivery (or with a backlog)
//! and hibernates after being idle, so a fleet of idle webhooks costs little.

use std::sync::Arc;

use actix::prelude::*;

use crate::catalog::Subscription;
use crate::delivery::Shared;
use crate::delivery::endpoint::pacing::{Pacer, monotonic_ms};
use crate::delivery::endpoint::{EndpointActor, EndpointConfig, EndpointStart};
use crate::delivery::health::{EndpointState, Health};
use crate::metrics::{PendingGauge, WebhookLabel};
use crate::model::WebhookRecord;
use crate::store::{Fence, StoredHealth};

use super::Hibernate;

/// A registered webhook.
pub(super) struct EndpointEntry {
    /// The running actor, if this node owns the webhook and it is not hibernating.
    pub(super) addr: Option<Addr<EndpointActor>>,
    pub(super) config: Arc<EndpointConfig>,
    pub(super) subscription: Subscription,
    /// Live health, written by the actor (meaningful on the owning node).
    pub(super) health: Arc<Health>,
    /// Disabled according to the registry.
    pub(super) disabled: bool,
    /// The health a new actor starts from (from the store at claim, from the actor at hibernation).
    pub(super) stored: KeptHealth,
    /// `webhook_pending_deliveries{webhook}`, kept only while this node owns the webhook.
    pub(super) pending: Option<PendingGauge>,
    /// Registry revision of `config`.
    pub(super) revision: u64,
    /// The arbiter the actor runs on.
    pub(super) slot: u32,
    /// Work messages (`Deliver`, `CheckStore`, `Reconfigure`) sent to the current actor, compared
    /// with what it handled in the hibernation handshake.
    pub(super) sent: u64,
    /// The epoch of this node's lease, while it owns the webhook (the lease's [`Fence`] is this
    /// and the webhook's id: see [`EndpointEntry::lease`]).
    lease_epoch: Option<u64>,
    /// tenants part: the tenant it belongs to (it takes that tenant's events and untenanted ones).
    pub(super) tenant: Option<Arc<str>>,
    /// Pacing: the rate limit of this lease tenure, made when the lease is taken (its bucket
    /// starts empty then) and kept while the actor hibernates or restarts.
    pub(super) pacer: Arc<Pacer>,
}

impl EndpointEntry {
    pub(super) fn new(record: &WebhookRecord, shared: &Shared, slot: u32) -> Self {
        let config = Arc::new(EndpointConfig::from_record(record, &shared.settings, &shared.base_headers));
        let disabled = record.disabled_at_ms.is_some();
        let health = Arc::new(if disabled { Health::disabled() } else { Health::default() });
        Self {
            addr: None,
            pending: None,
            config,
            subscription: subscription(record),
            health,
            disabled,
            stored: KeptHealth::default(),
            revision: record.revision,
            slot,
            sent: 0,
            lease_epoch: None,
            tenant: record.tenant.as_deref().map(Arc::from),
            pacer: Arc::new(Pacer::new(monotonic_ms())),
        }
    }

    /// This node's lease on the webhook, while it owns it.
    pub(super) fn lease(&self) -> Option<Fence> {
        self.lease_epoch.map(|epoch| Fence { webhook_id: self.config.id.clone(), epoch })
    }

    /// Whether this node owns the webhook.
    pub(super) fn is_owned(&self) -> bool {
        self.lease_epoch.is_some()
    }

    /// The epoch of this node's lease, while it owns the webhook.
    pub(super) fn lease_epoch(&self) -> Option<u64> {
        self.lease_epoch
    }

    /// The `webhook` label of its series (none when the label is switched off).
    fn label(&self, shared: &Shared) -> WebhookLabel {
        WebhookLabel::new(&self.config.id, shared.settings.metrics_webhook_label)
    }

    /// Whether a publish of `event_type` for `tenant` should create a delivery for it: enabled,
    /// subscribed, and either without a tenant or of the event's tenant.
    pub(super) fn accepts(&self, event_type: &str, tenant: Option<&str>) -> bool {
        !self.disabled
            && !self.health.is_disabled()
            && tenant_routes(self.tenant.as_deref(), tenant)
            && self.subscription.matches(event_type)
    }

    /// The running actor, started on its arbiter if it is hibernating; `None` unless this node
    /// owns the webhook. `has_backlog`: the store may hold due deliveries for it.
    pub(super) fn actor(
        &mut self,
        shared: &Arc<Shared>,
        arbiters: &[ArbiterHandle],
        me: &Recipient<Hibernate>,
        has_backlog: bool,
    ) -> Option<&Addr<EndpointActor>> {
        let fence = self.lease()?;
        let pending = self.pending.clone()?;
        let died = self.addr.as_ref().is_some_and(|a| !a.connected());
        if died {
            // The actor died outside its supervisor: a new one reloads its work from the store.
            tracing::error!(webhook = %self.config.id, "endpoint actor found dead; starting a new one");
            self.addr = None;
        }
        let has_backlog = has_backlog || died;
        if self.addr.is_none() {
            let start = EndpointStart {
                config: self.config.clone(),
                fence,
                health: self.health.clone(),
                stored: self.stored.get(),
                label: self.label(shared),
                pending,
                has_backlog,
                dispatcher: me.clone(),
                pacer: self.pacer.clone(),
            };
            let actor = EndpointActor::new(start, shared.clone());
            self.sent = 0;
            self.addr = Some(Supervisor::start_in_arbiter(&arbiters[self.slot as usize], move |_| actor));
        }
        self.addr.as_ref()
    }

    /// Adds to the pending gauge (owning node only).
    pub(super) fn add_pending(&self, n: i64) {
        if let Some(g) = &self.pending {
            g.add(n);
        }
    }

    /// Starts owning: the pending gauge appears with the store's count.
    pub(super) fn owned(&mut self, fence: &Fence, pending: u64, shared: &Shared) {
        debug_assert_eq!(fence.webhook_id, self.config.id, "a lease of this webhook");
        if let Some(old) = self.pending.take() {
            old.release();
        }
        self.pending = Some(PendingGauge::claimed(&self.label(shared), pending, &shared.pending_series));
        self.lease_epoch = Some(fence.epoch);
        self.pacer = Arc::new(Pacer::new(monotonic_ms()));
    }

    /// Stops owning: the actor stops (its deliveries stay in the store) and the gauge goes (it is
    /// the new owner's to report).
    pub(super) fn disowned(&mut self) {
        self.lease_epoch = None;
        if let Some(g) = self.pending.take() {
            g.release();
        }
        self.stop_actor();
    }

    /// Stops the actor, if any (its deliveries stay in the store).
    pub(super) fn stop_actor(&mut self) {
        if let Some(addr) = self.addr.take() {
            addr.do_send(crate::delivery::endpoint::Retire);
        }
    }

    /// Takes a newer registration: returns true when it re-enables a disabled webhook.
    pub(super) fn update(&mut self, record: &WebhookRecord, shared: &Shared) -> bool {
        self.config = Arc::new(EndpointConfig::from_record(record, &shared.settings, &shared.base_headers));
        self.subscription = subscription(record);
        self.tenant = record.tenant.as_deref().map(Arc::from);
        self.revision = self.revision.max(record.revision);
        let now_disabled = record.disabled_at_ms.is_some();
        let was_disabled = self.disabled || self.health.is_disabled();
        self.disabled = now_disabled;
        if now_disabled {
            self.health.set_state(EndpointState::Disabled);
        }
        let reenabled = was_disabled && !now_disabled;
        if reenabled {
            // Visible (and receiving fan-out) at once; the actor resets the rest.
            self.health.clear_failures();
            self.health.set_state(EndpointState::Healthy);
            self.stored = KeptHealth::default();
        }
        reenabled
    }
}

/// Tenant routing: a webhook without a tenant takes every event; one with a tenant takes only
/// that tenant's events.
pub(super) fn tenant_routes(webhook: Option<&str>, event: Option<&str>) -> bool {
    match webhook {
        None => true,
        Some(w) => event == Some(w),
    }
}

fn subscription(record: &WebhookRecord) -> Subscription {
    match &record.events {
        None => Subscription::All,
        Some(names) => Subscription::Only(names.iter().map(|n| Arc::from(n.as_str())).collect()),
    }
}

/// A [`StoredHealth`] kept as nothing while it is the default (a healthy endpoint): 8 bytes in
/// the dispatcher's table instead of 80, for what a fleet of idle webhooks almost always holds.
#[derive(Debug, Default)]
pub(super) struct KeptHealth(Option<Box<StoredHealth>>);

impl KeptHealth {
    pub(super) fn get(&self) -> StoredHealth {
        self.0.as_deref().copied().unwrap_or_default()
    }

    pub(super) fn set(&mut self, health: StoredHealth) {
        self.0 = (health != StoredHealth::default()).then(|| Box::new(health));
    }
}

#[cfg(test)]
mod tests {
    use super::{KeptHealth, tenant_routes};
    use crate::delivery::health::EndpointState;
    use crate::store::StoredHealth;

    #[test]
    fn kept_health_gives_back_what_was_set_and_holds_nothing_for_the_default() {
        let mut kept = KeptHealth::default();
        assert_eq!(kept.get(), StoredHealth::default());
        let paused = StoredHealth {
            state: EndpointState::Paused,
            consecutive_failures: 5,
            failing_since_ms: Some(1_000),
            ..StoredHealth::default()
        };
        kept.set(paused);
        assert_eq!(kept.get(), paused);
        assert!(kept.0.is_some());
        kept.set(StoredHealth::default());
        assert_eq!(kept.get(), StoredHealth::default());
        assert!(kept.0.is_none(), "the default is kept as nothing");
        assert!(std::mem::size_of::<KeptHealth>() <= 8);
    }

    /// A fleet of 100 000 idle webhooks keeps one entry each in the dispatcher's table: what an
    /// entry can derive (its lease's webhook id, its metric label) it does not store.
    #[test]
    fn an_entry_is_small() {
        let size = std::mem::size_of::<super::EndpointEntry>();
        assert!(size <= 168, "{size} bytes");
    }

    #[test]
    fn tenant_events_reach_their_tenant_and_untenanted_webhooks_only() {
        assert!(tenant_routes(None, None));
        assert!(tenant_routes(None, Some("venue-a")));
        assert!(tenant_routes(Some("venue-a"), Some("venue-a")));
        assert!(!tenant_routes(Some("venue-a"), Some("venue-b")));
        assert!(!tenant_routes(Some("venue-a"), None));
    }
}
