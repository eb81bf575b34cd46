//! `DispatcherActor`: the registry of endpoints and the fan-out of published events.
//!
//! A publish is planned here (event id, body, one delivery per subscribed enabled endpoint), handed
//! to the ledger, and fanned out when the ledger reports the commit: one `Deliver` message per
//! endpoint, never a wait on an endpoint. Event ids are minted here, on one thread, so that each
//! endpoint receives its deliveries in id order, which its backlog paging relies on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use metrics::{Counter, Gauge};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use super::endpoint::{Deliver, Drain, EndpointActor, EndpointConfig, InjectPanic, Reconfigure, Retire};
use super::health::{Health, HealthSnapshot};
use super::ledger::{FailDeliveries, PersistEvent};
use super::{Envelope, Pending, Shared};
use crate::catalog::{CatalogError, Subscription};
use crate::metrics::{WebhookLabel, names};
use crate::model::{WebhookRecord, delivery_id, new_event_id, now_ms, rfc3339};
use crate::store::{EventWrite, NewDelivery, NewEvent, StoreError, WriteBatch};

/// One delivery created by a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRef {
    /// Delivery id.
    pub id: String,
    /// Target webhook.
    pub webhook_id: String,
}

/// What `publish` returns once the event and its deliveries are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishReceipt {
    /// Event id (the `webhook-id` header of every attempt).
    pub id: String,
    /// Event type.
    pub event: String,
    /// Payload timestamp, RFC 3339.
    pub timestamp: String,
    /// One per subscribed, enabled webhook.
    pub deliveries: Vec<DeliveryRef>,
    /// True when the idempotency key was seen before: this is the first publish's receipt.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Why a publish was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Unknown or malformed event type.
    #[error(transparent)]
    EventType(#[from] CatalogError),
    /// `data` is not a JSON object, or the idempotency key is unusable.
    #[error("{0}")]
    InvalidData(String),
    /// `data` is larger than `max_payload_bytes`.
    #[error("data is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The subsystem is shutting down.
    #[error("the webhook subsystem is shutting down")]
    ShuttingDown,
    /// Nothing was committed.
    #[error("could not persist the event: {0}")]
    Store(#[from] StoreError),
}

/// Publish a validated event.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish {
    pub(crate) event_type: Arc<str>,
    pub(crate) data: Box<RawValue>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
}

/// What the dispatcher needs back after the commit of one event.
pub(crate) struct PublishTicket {
    reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
    envelope: Arc<Envelope>,
}

/// The ledger committed (or failed to commit) a batch; `tickets[i]` belongs to `batch.events[i]`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Committed {
    pub(crate) batch: Arc<WriteBatch>,
    pub(crate) tickets: Vec<PublishTicket>,
    pub(crate) result: Result<Vec<EventWrite>, StoreError>,
}

/// Start or reconfigure the endpoint of a stored registration. `pending`: deliveries the store holds for it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Apply {
    pub(crate) record: WebhookRecord,
    pub(crate) pending: u64,
}

/// Forget an endpoint (already deleted from the store); true if it was registered.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Remove(pub(crate) String);

/// Live health of the given webhooks.
#[derive(Message)]
#[rtype(result = "Vec<Option<HealthSnapshot>>")]
pub(crate) struct HealthOf(pub(crate) Vec<String>);

/// Shutdown: refuse publishes, then drain every endpoint within `grace`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DrainAll {
    pub(crate) grace: Duration,
}

/// How many endpoint actors are running (the rest hibernate).
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct RunningActors;

impl Handler<RunningActors> for DispatcherActor {
    type Result = usize;
    fn handle(&mut self, _: RunningActors, _: &mut Context<Self>) -> usize {
        self.endpoints.values().filter(|e| e.addr.is_some()).count()
    }
}

/// Test hook: make one endpoint actor panic; false if no such endpoint.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct PanicEndpoint(pub(crate) String);

/// A registered endpoint. Its actor runs only while it has work: it starts on the first delivery
/// (or with a backlog) and hibernates after being idle, so a fleet of idle webhooks costs little.
struct EndpointEntry {
    /// The running actor, if any.
    addr: Option<Addr<EndpointActor>>,
    config: Arc<EndpointConfig>,
    label: WebhookLabel,
    subscription: Subscription,
    health: Arc<Health>,
    pending: Gauge,
    updated_at_ms: i64,
    /// The arbiter the actor runs on.
    slot: usize,
    /// `Deliver` messages sent to the current actor (compared in the hibernation handshake).
    sent: u64,
}

impl EndpointEntry {
    /// The running actor, started on its arbiter if it is hibernating. `has_backlog`: the store
    /// may hold pending deliveries for it, which it pages in first.
    fn actor(
        &mut self,
        shared: &Arc<Shared>,
        arbiters: &[ArbiterHandle],
        me: &Recipient<Hibernate>,
        has_backlog: bool,
    ) -> &Addr<EndpointActor> {
        self.addr.get_or_insert_with(|| {
            let actor = EndpointActor::new(
                self.config.clone(),
                shared.clone(),
                self.health.clone(),
                self.label.clone(),
                has_backlog,
                me.clone(),
            );
            self.sent = 0;
            Supervisor::start_in_arbiter(&arbiters[self.slot], move |_| actor)
        })
    }
}

/// An endpoint actor has been idle: it may stop if no `Deliver` is on its way to it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Hibernate {
    pub(crate) webhook_id: Arc<str>,
    /// `Deliver` messages the actor has handled.
    pub(crate) received: u64,
}

/// The registry and fan-out.
pub(crate) struct DispatcherActor {
    shared: Arc<Shared>,
    endpoints: HashMap<Arc<str>, EndpointEntry>,
    arbiters: Vec<ArbiterHandle>,
    next_slot: usize,
    accepting: bool,
    published: HashMap<Arc<str>, Counter>,
    /// Where endpoint actors ask to hibernate (this actor's own address).
    me: Option<Recipient<Hibernate>>,
}

impl DispatcherActor {
    /// Endpoint actors are spread round-robin over `arbiters` (one thread each).
    pub(crate) fn new(shared: Arc<Shared>, arbiters: Vec<ArbiterHandle>) -> Self {
        Self {
            shared,
            endpoints: HashMap::new(),
            arbiters,
            next_slot: 0,
            accepting: true,
            published: HashMap::new(),
            me: None,
        }
    }

    fn me(&self) -> Recipient<Hibernate> {
        self.me.clone().expect("set in started()")
    }

    fn plan(&mut self, msg: Publish) {
        if !self.accepting {
            let _ = msg.reply.send(Err(PublishError::ShuttingDown));
            return;
        }
        let created_at_ms = now_ms();
        let id = new_event_id();
        let timestamp = rfc3339(created_at_ms);
        let body = build_body(&id, &msg.event_type, msg.data.get(), &timestamp);
        let mut deliveries = Vec::new();
        for (webhook_id, entry) in &self.endpoints {
            if entry.subscription.matches(&msg.event_type) && !entry.health.is_disabled() {
                let seq = deliveries.len() as u32;
                deliveries.push(NewDelivery { id: delivery_id(&id, seq), webhook_id: webhook_id.clone() });
            }
        }
        let envelope = Arc::new(Envelope::new(&id, &msg.event_type, &timestamp, body.clone(), created_at_ms));
        let event = NewEvent {
            id,
            event_type: msg.event_type.to_string(),
            payload: body,
            timestamp,
            created_at_ms,
            idempotency_key: msg.idempotency_key,
            deliveries,
        };
        let ticket = PublishTicket { reply: msg.reply, envelope };
        self.shared.ledger.do_send(PersistEvent { event, ticket });
    }

    fn fan_out(&mut self, msg: Committed) {
        let writes = match msg.result {
            Ok(w) => w,
            Err(e) => {
                for t in msg.tickets {
                    let _ = t.reply.send(Err(PublishError::Store(e.clone())));
                }
                return;
            }
        };
        let mut per_endpoint: HashMap<Arc<str>, Vec<Pending>> = HashMap::new();
        let mut orphans = Vec::new();
        for ((event, ticket), write) in msg.batch.events.iter().zip(msg.tickets).zip(writes) {
            let receipt = match write {
                EventWrite::Created { .. } => {
                    // TRANSITIONAL: dropped deliveries are not handled here yet
                    self.count_published(&event.event_type);
                    for d in &event.deliveries {
                        match self.endpoints.get(&d.webhook_id) {
                            Some(entry) => {
                                entry.pending.increment(1.0);
                                per_endpoint.entry(d.webhook_id.clone()).or_default().push(Pending {
                                    id: d.id.as_str().into(),
                                    envelope: ticket.envelope.clone(),
                                    attempts: 0,
                                    due_ms: event.created_at_ms,
                                });
                            }
                            None => orphans.push((d.id.clone(), "webhook deleted".to_string())),
                        }
                    }
                    PublishReceipt {
                        id: event.id.clone(),
                        event: event.event_type.clone(),
                        timestamp: event.timestamp.clone(),
                        deliveries: event
                            .deliveries
                            .iter()
                            .map(|d| DeliveryRef { id: d.id.clone(), webhook_id: d.webhook_id.to_string() })
                            .collect(),
                        duplicate: false,
                    }
                }
                EventWrite::Duplicate(existing) => PublishReceipt {
                    id: existing.id,
                    event: existing.event_type,
                    timestamp: existing.timestamp,
                    deliveries: existing
                        .deliveries
                        .into_iter()
                        .map(|(id, webhook_id)| DeliveryRef { id, webhook_id })
                        .collect(),
                    duplicate: true,
                },
            };
            let _ = ticket.reply.send(Ok(receipt));
        }
        let me = self.me();
        for (webhook_id, items) in per_endpoint {
            if let Some(entry) = self.endpoints.get_mut(&webhook_id) {
                entry.actor(&self.shared, &self.arbiters, &me, false).do_send(Deliver(items));
                entry.sent += 1;
            }
        }
        if !orphans.is_empty() {
            self.shared.ledger.do_send(FailDeliveries(orphans));
        }
    }

    fn count_published(&mut self, event_type: &str) {
        if let Some(c) = self.published.get(event_type) {
            c.increment(1);
            return;
        }
        let c = metrics::counter!(names::EVENTS_PUBLISHED, "event" => event_type.to_string());
        c.increment(1);
        self.published.insert(Arc::from(event_type), c);
    }

    fn apply(&mut self, record: WebhookRecord, pending: u64) {
        let settings = &self.shared.settings;
        let config = Arc::new(EndpointConfig::from_record(&record, settings));
        let subscription = match &record.events {
            None => Subscription::All,
            Some(names) => Subscription::Only(names.iter().map(|n| Arc::from(n.as_str())).collect()),
        };
        let disabled = record.disabled_at_ms.is_some();
        let me = self.me();
        if let Some(entry) = self.endpoints.get_mut(config.id.as_ref()) {
            if record.updated_at_ms < entry.updated_at_ms {
                return; // an older registration overtaken by a newer one
            }
            entry.subscription = subscription;
            entry.updated_at_ms = record.updated_at_ms;
            entry.config = config.clone();
            let reenabled = !disabled && entry.health.is_disabled();
            if reenabled {
                // Visible (and receiving fan-out) at once; the actor resets the rest.
                entry.health.clear_failures();
                entry.health.set_state(super::health::EndpointState::Healthy);
                // Anything committed for it after the disable is still pending: page it in.
                entry.actor(&self.shared, &self.arbiters, &me, true);
            }
            if let Some(addr) = &entry.addr {
                addr.do_send(Reconfigure { config, reenable: !disabled });
            }
            return;
        }
        let id = config.id.clone();
        let label = WebhookLabel::new(&id, settings.metrics_webhook_label);
        let health = Arc::new(if disabled { Health::disabled() } else { Health::default() });
        let pending_gauge = label.pending();
        pending_gauge.set(if disabled { 0.0 } else { pending as f64 });
        let slot = self.next_slot % self.arbiters.len().max(1);
        self.next_slot = self.next_slot.wrapping_add(1);
        let mut entry = EndpointEntry {
            addr: None,
            config,
            label,
            subscription,
            health,
            pending: pending_gauge,
            updated_at_ms: record.updated_at_ms,
            slot,
            sent: 0,
        };
        if pending > 0 && !disabled {
            entry.actor(&self.shared, &self.arbiters, &me, true);
        }
        self.endpoints.insert(id, entry);
    }
}

/// The wire body: `{"id","event","data","timestamp"}`. Ids, types and timestamps are validated
/// ASCII without quotes or backslashes, and `data` is already valid JSON, so no escaping is needed.
fn build_body(id: &str, event_type: &str, data: &str, timestamp: &str) -> Bytes {
    let mut s = String::with_capacity(64 + id.len() + event_type.len() + data.len() + timestamp.len());
    s.push_str("{\"id\":\"");
    s.push_str(id);
    s.push_str("\",\"event\":\"");
    s.push_str(event_type);
    s.push_str("\",\"data\":");
    s.push_str(data);
    s.push_str(",\"timestamp\":\"");
    s.push_str(timestamp);
    s.push_str("\"}");
    Bytes::from(s)
}

impl Actor for DispatcherActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address().recipient());
    }
}

impl Handler<Hibernate> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Hibernate, _: &mut Context<Self>) {
        let Some(entry) = self.endpoints.get_mut(&msg.webhook_id) else { return };
        // Equal counts: no Deliver is queued for it, so stopping loses nothing.
        if entry.sent == msg.received
            && let Some(addr) = entry.addr.take()
        {
            addr.do_send(Retire);
        }
    }
}

impl Handler<Publish> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.plan(msg);
    }
}

impl Handler<Committed> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Committed, _: &mut Context<Self>) {
        self.fan_out(msg);
    }
}

impl Handler<Apply> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Apply, _: &mut Context<Self>) {
        self.apply(msg.record, msg.pending);
    }
}

impl Handler<Remove> for DispatcherActor {
    type Result = bool;
    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> bool {
        match self.endpoints.remove(msg.0.as_str()) {
            Some(entry) => {
                entry.pending.set(0.0);
                if let Some(addr) = entry.addr {
                    addr.do_send(Retire);
                }
                true
            }
            None => false,
        }
    }
}

impl Handler<HealthOf> for DispatcherActor {
    type Result = Vec<Option<HealthSnapshot>>;
    fn handle(&mut self, msg: HealthOf, _: &mut Context<Self>) -> Self::Result {
        msg.0.iter().map(|id| self.endpoints.get(id.as_str()).map(|e| e.health.snapshot())).collect()
    }
}

impl Handler<DrainAll> for DispatcherActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: DrainAll, _: &mut Context<Self>) -> Self::Result {
        self.accepting = false;
        let waits: Vec<_> = self
            .endpoints
            .values()
            .filter_map(|e| e.addr.as_ref())
            .map(|addr| {
                let (tx, rx) = oneshot::channel();
                addr.do_send(Drain(tx));
                rx
            })
            .collect();
        let deadline = tokio::time::Instant::now() + msg.grace;
        Box::pin(async move {
            for rx in waits {
                if tokio::time::timeout_at(deadline, rx).await.is_err() {
                    tracing::warn!("shutdown grace elapsed with attempts in flight; they stay pending in the store");
                    break;
                }
            }
        })
    }
}

impl Handler<PanicEndpoint> for DispatcherActor {
    type Result = bool;
    fn handle(&mut self, msg: PanicEndpoint, _: &mut Context<Self>) -> bool {
        match self.endpoints.get(msg.0.as_str()).and_then(|e| e.addr.as_ref()) {
            Some(addr) => {
                addr.do_send(InjectPanic);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_seeds_payload_shape() {
        let body = build_body("evt_1", "order.created", r#"{"orderId": "o-1"}"#, "2026-11-28T10:00:00.000Z");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["event"], "order.created");
        assert_eq!(v["data"]["orderId"], "o-1");
        assert_eq!(v["timestamp"], "2026-11-28T10:00:00.000Z");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }
}
