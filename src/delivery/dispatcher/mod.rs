//! `DispatcherActor`: the registry of webhooks and the fan-out of published events.
//!
//! Every node keeps the whole registry (kept in sync by the node actor), so any node can publish:
//! a publish is planned here (event id, body, one delivery per subscribed enabled webhook), handed
//! to the ledger, and once committed, fanned out to the endpoint actors of the webhooks *this*
//! node owns: one `Deliver` message per endpoint, never a wait on one. The owners of the others
//! learn of their new work from the store (a notification, or their poll).
//!
//! Ownership itself is the node actor's business (`crate::cluster`): it tells the dispatcher
//! when this node gains a lease (`Own`), must give one up after draining (`HandOff`), or has
//! lost one (`Revoke`), and when the store holds work for an owned webhook (`Wake`).

mod entry;
mod publish;

use foldhash::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use metrics::Counter;
use tokio::sync::oneshot;

use self::entry::EndpointEntry;
pub use self::publish::{DeliveryRef, PublishError, PublishReceipt};
pub(crate) use self::publish::{PublishRequest, PublishTicket};
use self::publish::{build_body, receipt};
use super::endpoint::{CheckStore, Deliver, Drain, InjectPanic, Reconfigure, Requeued};
use super::faults::Fault;
use super::health::{EndpointState, HealthSnapshot};
use super::ledger::{Barrier, PersistEvent};
use super::{Envelope, Pending, Shared};
use crate::metrics::names;
use crate::model::{WebhookRecord, delivery_id, new_event_id, now_ms, rfc3339};
use crate::store::{EventWrite, Fence, NewDelivery, NewEvent, StoreError, StoredHealth, WriteBatch};

/// Publish a validated event.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Publish(pub(crate) PublishRequest);

/// The ledger committed (or failed to commit) a batch; `tickets[i]` belongs to `batch.events[i]`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Committed {
    pub(crate) batch: Arc<WriteBatch>,
    pub(crate) tickets: Vec<PublishTicket>,
    pub(crate) result: Result<Vec<EventWrite>, StoreError>,
}

/// A registration was created or changed (on this node or another).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Apply(pub(crate) WebhookRecord);

/// A registration was deleted (its pending deliveries were failed by the store); true if known.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Remove(pub(crate) String);

/// This node now holds these leases.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Own(pub(crate) Vec<Grant>);

/// One lease gained, with what the store says of the webhook.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) fence: Fence,
    /// Its health as the previous owner left it.
    pub(crate) stored: Option<StoredHealth>,
    /// Pending deliveries waiting for it.
    pub(crate) pending: u64,
}

/// These leases are gone (taken over after expiry, or refused by the store): stop at once.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Revoke(pub(crate) Vec<Fence>);

/// Give up a webhook: stop fanning out to it, drain its actor, wait for the ledger; answers the
/// lease to release (`None` if this node did not own it).
#[derive(Message)]
#[rtype(result = "Option<Fence>")]
pub(crate) struct HandOff(pub(crate) Arc<str>);

/// The store holds work for these webhooks, as `(webhook id, new deliveries or 0 if unknown)`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake(pub(crate) Vec<(String, u32)>);

/// replay: deliveries of a webhook were put back in the queue, due now; its endpoint actor (if
/// this node owns the webhook) must take them even if it finished them a moment ago.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Requeue {
    pub(crate) webhook_id: String,
    pub(crate) ids: Vec<String>,
    /// They were failed (each adds one to the pending gauge); false: pending, now due sooner.
    pub(crate) were_failed: bool,
}

/// Live health of the given webhooks, for those this node owns.
#[derive(Message)]
#[rtype(result = "Vec<Option<HealthSnapshot>>")]
pub(crate) struct LiveHealth(pub(crate) Vec<String>);

/// Shutdown: refuse publishes, start no more actors, then drain every endpoint within `grace`.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct DrainAll {
    pub(crate) grace: Duration,
}

/// How many endpoint actors are running (the rest hibernate or are owned elsewhere).
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct RunningActors;

/// Test hook: inject a fault into one endpoint's work; false if no such webhook (or, for a
/// handler fault, no running actor).
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct InjectFault(pub(crate) String, pub(crate) Fault);

/// An endpoint actor has been idle: it may stop if no `Deliver` is on its way to it.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Hibernate {
    pub(crate) webhook_id: Arc<str>,
    /// `Deliver` messages the actor has handled.
    pub(crate) received: u64,
    /// Its health, for the next actor.
    pub(crate) health: StoredHealth,
}

/// The registry and fan-out.
pub(crate) struct DispatcherActor {
    shared: Arc<Shared>,
    endpoints: HashMap<Arc<str>, EndpointEntry>,
    arbiters: Vec<ArbiterHandle>,
    next_slot: usize,
    /// Publishes accepted (false once shutdown began).
    accepting: bool,
    /// Endpoint actors may start (false once shutdown began: their outcomes would have nowhere to go).
    starting: bool,
    published: HashMap<Arc<str>, Counter>,
    /// Where endpoint actors ask to hibernate (this actor's own address).
    me: Option<Recipient<Hibernate>>,
    /// Webhooks deleted lately, with their last revision: an older registration read before the
    /// delete (a registry poll racing it) must not re-create them.
    removed: HashMap<Arc<str>, (u64, std::time::Instant)>,
}

/// How long a deletion is remembered against stale registry answers (they are at most one
/// registry poll old).
const REMOVED_MEMORY: Duration = Duration::from_secs(60);

impl DispatcherActor {
    /// Endpoint actors are spread round-robin over `arbiters` (one thread each).
    pub(crate) fn new(shared: Arc<Shared>, arbiters: Vec<ArbiterHandle>) -> Self {
        Self {
            shared,
            endpoints: HashMap::default(),
            arbiters,
            next_slot: 0,
            accepting: true,
            starting: true,
            published: HashMap::default(),
            me: None,
            removed: HashMap::default(),
        }
    }

    fn me(&self) -> Recipient<Hibernate> {
        self.me.clone().expect("set in started()")
    }

    /// The running (or started) actor of an owned webhook; `None` if not owned or shutting down.
    fn wake_actor(
        &mut self,
        webhook_id: &str,
        has_backlog: bool,
    ) -> Option<Addr<crate::delivery::endpoint::EndpointActor>> {
        if !self.starting {
            return self.endpoints.get(webhook_id).and_then(|e| e.addr.clone());
        }
        let me = self.me();
        let entry = self.endpoints.get_mut(webhook_id)?;
        entry.actor(&self.shared, &self.arbiters, &me, has_backlog).cloned()
    }

    fn plan(&mut self, msg: PublishRequest) {
        if !self.accepting {
            let _ = msg.reply.send(Err(PublishError::ShuttingDown));
            return;
        }
        let created_at_ms = now_ms();
        let id = new_event_id();
        let timestamp = rfc3339(created_at_ms);
        let body = build_body(&id, &msg.event_type, msg.data.get(), &timestamp);
        let mut deliveries = Vec::new();
        match &msg.only {
            Some(target) => {
                if let Some((webhook_id, _)) = self.endpoints.get_key_value(target) {
                    deliveries.push(NewDelivery { id: delivery_id(&id, 0), webhook_id: webhook_id.clone() });
                }
            }
            None => {
                for (webhook_id, entry) in &self.endpoints {
                    if entry.accepts(&msg.event_type, msg.tenant.as_deref()) {
                        let seq = deliveries.len() as u32;
                        deliveries.push(NewDelivery { id: delivery_id(&id, seq), webhook_id: webhook_id.clone() });
                    }
                }
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
            tenant: msg.tenant.map(|t| t.to_string()),
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
        let mut per_endpoint: HashMap<Arc<str>, Vec<Pending>> = HashMap::default();
        for ((event, ticket), write) in msg.batch.events.iter().zip(msg.tickets).zip(writes) {
            if let EventWrite::Created { dropped } = &write {
                self.count_published(&event.event_type);
                for d in event.deliveries.iter().filter(|d| !dropped.contains(&d.id)) {
                    let Some(entry) = self.endpoints.get(&d.webhook_id) else { continue };
                    if !entry.is_owned() {
                        continue; // owned by another node: it hears of it from the store
                    }
                    entry.add_pending(1);
                    per_endpoint.entry(d.webhook_id.clone()).or_default().push(Pending {
                        id: d.id.as_str().into(),
                        envelope: ticket.envelope.clone(),
                        attempts: 0,
                        probes: 0,
                        due_ms: event.created_at_ms,
                    });
                }
            }
            let _ = ticket.reply.send(Ok(receipt(event, write)));
        }
        for (webhook_id, items) in per_endpoint {
            if let Some(addr) = self.wake_actor(&webhook_id, false) {
                addr.do_send(Deliver(items));
                if let Some(entry) = self.endpoints.get_mut(&webhook_id) {
                    entry.sent += 1;
                }
            }
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

    fn apply(&mut self, record: WebhookRecord) {
        if let Some((revision, _)) = self.removed.get(record.id.as_str())
            && record.revision != 0
            && record.revision <= *revision
        {
            return; // an answer read before its deletion
        }
        if self.removed.len() > 1024 {
            self.removed.retain(|_, (_, at)| at.elapsed() < REMOVED_MEMORY);
        }
        let me = self.me();
        if let Some(entry) = self.endpoints.get_mut(record.id.as_str()) {
            if record.revision != 0 && record.revision <= entry.revision {
                return; // not newer than what it has
            }
            let reenabled = entry.update(&record, &self.shared);
            let config = entry.config.clone();
            if reenabled && entry.is_owned() {
                // Anything committed for it since the disable is still pending: page it in.
                if self.starting {
                    entry.actor(&self.shared, &self.arbiters, &me, true);
                }
            }
            if let Some(addr) = &entry.addr {
                addr.do_send(Reconfigure { config, reenable: reenabled, disabled: entry.disabled });
                entry.sent += 1;
            }
            return;
        }
        let slot = u32::try_from(self.next_slot % self.arbiters.len().max(1)).unwrap_or(0);
        self.next_slot = self.next_slot.wrapping_add(1);
        let entry = EndpointEntry::new(&record, &self.shared, slot);
        self.endpoints.insert(entry.config.id.clone(), entry);
    }

    fn own(&mut self, grants: Vec<Grant>) {
        for g in grants {
            let Some(entry) = self.endpoints.get_mut(&g.fence.webhook_id) else { continue };
            if entry.lease_epoch() == Some(g.fence.epoch) {
                continue; // already known
            }
            entry.stop_actor(); // an older tenure's actor, if any
            entry.owned(&g.fence, g.pending, &self.shared);
            let mut stored = g.stored.unwrap_or_default();
            if stored.state == EndpointState::Disabled && !entry.disabled {
                stored.state = EndpointState::Healthy; // re-enabled since it was stored
            }
            if !entry.disabled {
                entry.health.set_state(stored.state);
            }
            entry.stored.set(stored);
            if g.pending > 0 && !entry.disabled {
                self.wake_actor(&g.fence.webhook_id.clone(), true);
            }
        }
    }

    fn revoke(&mut self, fences: Vec<Fence>) {
        for f in fences {
            let Some(entry) = self.endpoints.get_mut(&f.webhook_id) else { continue };
            if entry.lease_epoch().is_some_and(|epoch| epoch <= f.epoch) {
                tracing::warn!(node = %self.shared.node_id, webhook = %f.webhook_id, epoch = f.epoch, "lease lost; stopping the endpoint here");
                entry.disowned();
            }
        }
    }
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
        if entry.sent == msg.received && entry.addr.is_some() {
            entry.stored.set(msg.health);
            entry.stop_actor();
        }
    }
}

impl Handler<Publish> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.plan(msg.0);
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
        self.apply(msg.0);
    }
}

impl Handler<Remove> for DispatcherActor {
    type Result = bool;
    fn handle(&mut self, msg: Remove, _: &mut Context<Self>) -> bool {
        match self.endpoints.remove(msg.0.as_str()) {
            Some(mut entry) => {
                entry.disowned();
                // A registry answer read before the delete must not bring it back.
                self.removed.insert(Arc::from(msg.0.as_str()), (entry.revision, std::time::Instant::now()));
                true
            }
            None => false,
        }
    }
}

impl Handler<Own> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Own, _: &mut Context<Self>) {
        self.own(msg.0);
    }
}

impl Handler<Revoke> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Revoke, _: &mut Context<Self>) {
        self.revoke(msg.0);
    }
}

impl Handler<HandOff> for DispatcherActor {
    type Result = ResponseFuture<Option<Fence>>;
    fn handle(&mut self, msg: HandOff, _: &mut Context<Self>) -> Self::Result {
        let Some(entry) = self.endpoints.get_mut(&msg.0) else { return Box::pin(async { None }) };
        let Some(fence) = entry.lease() else { return Box::pin(async { None }) };
        let addr = entry.addr.take();
        entry.disowned(); // no actor any more (taken above), no fan-out to it, no gauge
        let ledger = self.shared.ledger.clone();
        Box::pin(async move {
            if let Some(addr) = addr {
                let (tx, rx) = oneshot::channel();
                addr.do_send(Drain(tx));
                let _ = rx.await;
                addr.do_send(crate::delivery::endpoint::Retire);
            }
            // Its last outcomes must be committed before the next owner reads the store.
            let (tx, rx) = oneshot::channel();
            ledger.do_send(Barrier(tx));
            let _ = rx.await;
            Some(fence)
        })
    }
}

impl Handler<Wake> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Wake, _: &mut Context<Self>) {
        for (webhook_id, n) in msg.0 {
            let Some(entry) = self.endpoints.get(webhook_id.as_str()) else { continue };
            if !entry.is_owned() || entry.disabled {
                continue;
            }
            entry.add_pending(i64::from(n));
            if let Some(addr) = self.wake_actor(&webhook_id, true) {
                addr.do_send(CheckStore);
                if let Some(entry) = self.endpoints.get_mut(webhook_id.as_str()) {
                    entry.sent += 1;
                }
            }
        }
    }
}

impl Handler<Requeue> for DispatcherActor {
    type Result = ();
    fn handle(&mut self, msg: Requeue, _: &mut Context<Self>) {
        let Some(entry) = self.endpoints.get(msg.webhook_id.as_str()) else { return };
        if !entry.is_owned() || entry.disabled {
            return; // its owner hears of it from the store
        }
        if msg.were_failed {
            entry.add_pending(msg.ids.len() as i64);
        }
        if let Some(addr) = self.wake_actor(&msg.webhook_id, true) {
            addr.do_send(Requeued(msg.ids.into_iter().map(String::into_boxed_str).collect()));
            if let Some(entry) = self.endpoints.get_mut(msg.webhook_id.as_str()) {
                entry.sent += 1;
            }
        }
    }
}

impl Handler<LiveHealth> for DispatcherActor {
    type Result = Vec<Option<HealthSnapshot>>;
    fn handle(&mut self, msg: LiveHealth, _: &mut Context<Self>) -> Self::Result {
        msg.0
            .iter()
            .map(|id| self.endpoints.get(id.as_str()).filter(|e| e.is_owned()).map(|e| e.health.snapshot()))
            .collect()
    }
}

impl Handler<DrainAll> for DispatcherActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, msg: DrainAll, _: &mut Context<Self>) -> Self::Result {
        self.accepting = false;
        self.starting = false;
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

impl Handler<RunningActors> for DispatcherActor {
    type Result = usize;
    fn handle(&mut self, _: RunningActors, _: &mut Context<Self>) -> usize {
        self.endpoints.values().filter(|e| e.addr.as_ref().is_some_and(|a| a.connected())).count()
    }
}

impl Handler<InjectFault> for DispatcherActor {
    type Result = bool;
    fn handle(&mut self, msg: InjectFault, _: &mut Context<Self>) -> bool {
        let Some(entry) = self.endpoints.get(msg.0.as_str()) else { return false };
        match msg.1 {
            fault @ (Fault::HandlerPanic | Fault::Kill) => match &entry.addr {
                Some(addr) => {
                    addr.do_send(InjectPanic(fault));
                    true
                }
                None => false,
            },
            fault => {
                self.shared.faults.arm(&msg.0, fault);
                true
            }
        }
    }
}
