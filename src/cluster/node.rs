//! `NodeActor`: this node's membership in the cluster, its leases, and its copy of the registry.
//!
//! Every heartbeat interval it heartbeats (renewing its leases), reconciles the leases it thinks
//! it holds with what the store says (a lease it lost is stopped at once), syncs the registry,
//! and, when anything that decides ownership changed, computes the assignment ([`balance`]) and
//! acts on it: claims what it should own, drains and releases what it should not. Every poll
//! interval it asks the store which owned webhooks have due work, as a safety net for missed
//! notifications. Notices from other nodes (new work, registry changes, membership changes) make it
//! act at once instead of at the next tick.
//!
//! It decides; the dispatcher carries out (starts, drains, stops endpoint actors). All the
//! decisions are in [`balance`] and [`super::lease`]; this actor only sequences store calls.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::oneshot;

use super::balance;
use super::lease::{LeaseGuard, LeaseTimes};
use crate::config::ClusterSettings;
use crate::delivery::dispatcher::{Apply, DispatcherActor, Grant, HandOff, Own, Remove, Requeue, Revoke, Wake};
use crate::delivery::ledger::Fenced;
use crate::metrics::names;
use crate::model::now_ms;
use crate::store::{Fence, Heartbeat, Notice, RegistryChanges, Store, StoreError, StoreResult};

/// Largest id list sent to the store in one call.
const CHUNK: usize = 5_000;

/// Join: load the registry, heartbeat, claim this node's share; answers when done.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Join;

/// A registration was just written on this node: own it now if it is this node's, and answer
/// once that is settled (so that a publish right after a registration finds its owner ready).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Adopt(pub(crate) Arc<str>);

/// A registration was just deleted on this node.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Forget(pub(crate) Arc<str>);

/// Graceful leave (after the endpoints drained): release every lease so others take over at once.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave;

#[derive(Message)]
#[rtype(result = "()")]
struct Noticed(Notice);

/// The node's cluster metrics, labelled with its id.
struct NodeMetrics {
    owned: Gauge,
    claimed: Counter,
    released: Counter,
    lost: Counter,
    oldest_due: Gauge,
    nodes: Gauge,
    heartbeat_failures: Counter,
}

impl NodeMetrics {
    fn new(node: &str) -> Self {
        let n = node.to_string();
        Self {
            owned: gauge!(names::OWNED_ENDPOINTS, "node" => n.clone()),
            claimed: counter!(names::LEASE_HANDOFFS, "node" => n.clone(), "reason" => "claimed"),
            released: counter!(names::LEASE_HANDOFFS, "node" => n.clone(), "reason" => "released"),
            lost: counter!(names::LEASE_HANDOFFS, "node" => n.clone(), "reason" => "lost"),
            oldest_due: gauge!(names::OLDEST_DUE, "node" => n.clone()),
            nodes: gauge!(names::CLUSTER_NODES, "node" => n.clone()),
            heartbeat_failures: counter!(names::HEARTBEAT_FAILURES, "node" => n),
        }
    }
}

/// This node in the cluster.
pub(crate) struct NodeActor {
    id: Arc<str>,
    info: String,
    settings: ClusterSettings,
    store: Arc<dyn Store>,
    dispatcher: Addr<DispatcherActor>,
    /// One node only (SQLite): leases cannot be taken over, so they are never given up on expiry.
    exclusive: bool,
    times: LeaseTimes,
    guard: Arc<LeaseGuard>,
    /// Live nodes at the last heartbeat (sorted).
    live: Vec<String>,
    /// Leases held: webhook → epoch.
    held: BTreeMap<Arc<str>, u64>,
    /// Every registered webhook id.
    webhooks: BTreeSet<Arc<str>>,
    /// Registry revision the copy is complete up to.
    revision: u64,
    ticking: bool,
    tick_again: bool,
    syncing: bool,
    sync_again: bool,
    /// Work notices held back until the registry sync running when they came has been applied.
    deferred_wakes: Vec<(String, u32)>,
    claiming: bool,
    releasing: HashSet<Arc<str>>,
    polling: bool,
    last_poll: Option<Instant>,
    /// Something besides new registrations changed since the last plan (membership, deletions, a
    /// reload of the registry, a claim that failed or came back short): the next plan looks at
    /// every webhook. Otherwise, with no other live node, it claims just `added`.
    full_plan: bool,
    /// Webhooks registered since the last plan. The assignment is to be acted on again while this
    /// is not empty or `full_plan` is set.
    added: Vec<Arc<str>>,
    adopt_waiters: Vec<(Arc<str>, oneshot::Sender<()>)>,
    /// Waiting for the running claim round to end (join).
    round_waiters: Vec<oneshot::Sender<()>>,
    failures_in_a_row: u32,
    stopped: bool,
    metrics: NodeMetrics,
}

impl NodeActor {
    pub(crate) fn new(
        id: Arc<str>,
        settings: ClusterSettings,
        store: Arc<dyn Store>,
        dispatcher: Addr<DispatcherActor>,
        guard: Arc<LeaseGuard>,
        times: LeaseTimes,
    ) -> Self {
        Self {
            info: format!("servio-webhooks {}", env!("CARGO_PKG_VERSION")),
            exclusive: store.exclusive(),
            metrics: NodeMetrics::new(&id),
            id,
            settings,
            store,
            dispatcher,
            times,
            guard,
            live: Vec::new(),
            held: BTreeMap::new(),
            webhooks: BTreeSet::new(),
            revision: 0,
            ticking: false,
            tick_again: false,
            syncing: false,
            sync_again: false,
            deferred_wakes: Vec::new(),
            claiming: false,
            releasing: HashSet::new(),
            polling: false,
            last_poll: None,
            full_plan: true,
            added: Vec::new(),
            adopt_waiters: Vec::new(),
            round_waiters: Vec::new(),
            failures_in_a_row: 0,
            stopped: false,
        }
    }

    fn fence(&self, webhook_id: &Arc<str>) -> Option<Fence> {
        self.held.get(webhook_id).map(|&epoch| Fence { webhook_id: webhook_id.clone(), epoch })
    }

    fn set_owned_gauge(&self) {
        self.metrics.owned.set(self.held.len() as f64);
    }

    // ----- heartbeat and leases -----

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        self.check_expiry();
        if self.ticking {
            self.tick_again = true;
            return;
        }
        self.ticking = true;
        let sent = Instant::now();
        let store = self.store.clone();
        let (id, info, ttl) = (self.id.clone(), self.info.clone(), self.settings.lease_ttl);
        let fut = async move { within(ttl / 2, store.heartbeat(&id, &info, ttl)).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.ticking = false;
            act.on_heartbeat(res, sent, ctx);
            act.sync_registry(ctx);
            act.rebalance(ctx);
            act.maybe_poll(ctx);
            if std::mem::take(&mut act.tick_again) {
                act.tick(ctx);
            }
        }));
    }

    /// On a shared store, leases not renewed for the whole lease time may belong to others now:
    /// stop everything they cover at once.
    fn check_expiry(&mut self) {
        if self.exclusive || self.held.is_empty() || !self.times.expired(Instant::now()) {
            return;
        }
        tracing::error!(
            node = %self.id,
            webhooks = self.held.len(),
            "could not renew leases within the lease time; stopped delivering for every webhook of this node"
        );
        let all: Vec<Fence> = self.held.iter().map(|(w, &epoch)| Fence { webhook_id: w.clone(), epoch }).collect();
        self.metrics.lost.increment(all.len() as u64);
        self.held.clear();
        self.set_owned_gauge();
        self.full_plan = true;
        self.dispatcher.do_send(Revoke(all));
    }

    fn on_heartbeat(&mut self, res: StoreResult<Heartbeat>, sent: Instant, ctx: &mut Context<Self>) {
        let hb = match res {
            Ok(hb) => hb,
            Err(e) => {
                self.metrics.heartbeat_failures.increment(1);
                self.failures_in_a_row += 1;
                if self.failures_in_a_row == 1 || self.failures_in_a_row.is_multiple_of(30) {
                    tracing::warn!(node = %self.id, error = %e, failures = self.failures_in_a_row, "heartbeat failed");
                }
                return;
            }
        };
        if self.failures_in_a_row > 0 {
            tracing::info!(node = %self.id, after = self.failures_in_a_row, "heartbeat succeeded again");
            self.failures_in_a_row = 0;
        }
        self.times.renewed(sent);
        self.guard.update(&self.times);
        let mut hb = hb;
        if self.exclusive {
            // One process owns the store: other rows are earlier runs (killed before they could
            // leave; `Join` removed them), whatever their heartbeat says.
            hb.live_nodes = vec![self.id.to_string()];
        }
        if hb.live_nodes != self.live {
            tracing::info!(node = %self.id, live = ?hb.live_nodes, "cluster membership changed");
            self.live = hb.live_nodes;
            self.metrics.nodes.set(self.live.len() as f64);
            self.full_plan = true;
        }
        self.reconcile(hb.held, ctx);
    }

    /// Compares the leases the store says this node holds with the ones it acts on.
    fn reconcile(&mut self, in_store: Vec<Fence>, ctx: &mut Context<Self>) {
        let store_view: BTreeMap<Arc<str>, u64> = in_store.into_iter().map(|f| (f.webhook_id, f.epoch)).collect();
        let lost: Vec<Fence> = self
            .held
            .iter()
            .filter(|(w, e)| store_view.get(*w) != Some(*e))
            .map(|(w, &epoch)| Fence { webhook_id: w.clone(), epoch })
            .collect();
        if !lost.is_empty() {
            self.lose(lost);
        }
        if self.claiming {
            return; // grants of the running claim are not known yet
        }
        let gained: Vec<Fence> = store_view
            .into_iter()
            .filter(|(w, _)| !self.held.contains_key(w))
            .map(|(webhook_id, epoch)| Fence { webhook_id, epoch })
            .collect();
        if !gained.is_empty() {
            // Still ours in the store although this node had given them up (it could not renew
            // for a while and nobody took them): take them up again under the same epoch.
            self.claiming = true;
            self.take_up(gained, Vec::new(), ctx);
        }
    }

    fn lose(&mut self, lost: Vec<Fence>) {
        let lost: Vec<Fence> = lost.into_iter().filter(|f| self.held.get(&f.webhook_id) == Some(&f.epoch)).collect();
        if lost.is_empty() {
            return;
        }
        tracing::warn!(node = %self.id, webhooks = lost.len(), "leases lost to another node; stopping those endpoints");
        for f in &lost {
            self.held.remove(&f.webhook_id);
        }
        self.metrics.lost.increment(lost.len() as u64);
        self.set_owned_gauge();
        self.full_plan = true;
        self.dispatcher.do_send(Revoke(lost));
    }

    // ----- registry -----

    fn sync_registry(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if self.syncing {
            self.sync_again = true;
            return;
        }
        self.syncing = true;
        let store = self.store.clone();
        let since = self.revision;
        let ttl = self.settings.lease_ttl;
        let fut = async move { within(ttl, store.registry_changes(since)).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.syncing = false;
            match res {
                Ok(changes) => act.apply_registry(changes),
                Err(e) => tracing::warn!(node = %act.id, error = %e, "could not read registry changes"),
            }
            if std::mem::take(&mut act.sync_again) {
                act.sync_registry(ctx); // work notices stay deferred until this one is applied too
            } else if !act.deferred_wakes.is_empty() {
                act.dispatcher.do_send(Wake(std::mem::take(&mut act.deferred_wakes)));
            }
            act.rebalance(ctx);
        }));
    }

    fn apply_registry(&mut self, changes: RegistryChanges) {
        if changes.full {
            let now: BTreeSet<Arc<str>> = changes.upserted.iter().map(|r| Arc::from(r.id.as_str())).collect();
            for gone in self.webhooks.difference(&now) {
                self.dispatcher.do_send(Remove(gone.to_string()));
            }
            if now != self.webhooks {
                self.full_plan = true;
            }
            self.webhooks = now;
        }
        for record in changes.upserted {
            let id: Arc<str> = Arc::from(record.id.as_str());
            if self.webhooks.insert(id.clone()) {
                self.added.push(id);
            }
            self.dispatcher.do_send(Apply(record));
        }
        for id in changes.deleted {
            if self.webhooks.remove(id.as_str()) {
                self.full_plan = true;
            }
            self.dispatcher.do_send(Remove(id));
        }
        self.revision = self.revision.max(changes.revision);
    }

    // ----- balancing -----

    fn rebalance(&mut self, ctx: &mut Context<Self>) {
        if (!self.full_plan && self.added.is_empty()) || self.claiming || self.stopped {
            return;
        }
        let added = std::mem::take(&mut self.added);
        let alone = self.live.iter().all(|n| **n == *self.id);
        let plan = if std::mem::take(&mut self.full_plan) || !alone {
            let ids: Vec<Arc<str>> = self.webhooks.iter().cloned().collect();
            let held: BTreeSet<Arc<str>> = self.held.keys().cloned().collect();
            balance::plan(&self.id, &self.live, &ids, &held)
        } else {
            // Only registrations since the last plan, and no other node: they are all ours.
            balance::plan_added(added, |w| self.webhooks.contains(w), |w| self.held.contains_key(w))
        };
        let release: Vec<Arc<str>> = plan.release.into_iter().filter(|w| !self.releasing.contains(w)).collect();
        if !release.is_empty() {
            self.release(release, ctx);
        }
        let planned: HashSet<Arc<str>> = plan.claim.iter().cloned().collect();
        self.answer_adopters(|id| !planned.contains(id));
        if !plan.claim.is_empty() {
            self.claim(plan.claim, ctx);
        }
    }

    fn claim(&mut self, ids: Vec<Arc<str>>, ctx: &mut Context<Self>) {
        self.claiming = true;
        let store = self.store.clone();
        let (node, ttl) = (self.id.clone(), self.settings.lease_ttl);
        let wanted: Vec<String> = ids.iter().map(|w| w.to_string()).collect();
        let fut = async move {
            let mut grants = Vec::new();
            for chunk in wanted.chunks(CHUNK) {
                grants.extend(within(ttl, store.claim_leases(&node, chunk.to_vec(), ttl)).await?);
            }
            Ok::<_, StoreError>(grants)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            Ok(grants) => {
                if grants.len() < ids.len() {
                    act.full_plan = true; // the rest is still held by others: try again next tick
                }
                act.take_up(grants, ids, ctx);
            }
            Err(e) => {
                tracing::warn!(node = %act.id, error = %e, "could not claim leases");
                act.claiming = false;
                act.full_plan = true;
                act.claim_round_done(&ids);
            }
        }));
    }

    /// Starts owning granted leases: reads their stored health and pending counts, then tells
    /// the dispatcher. `asked`: what the claim asked for (to answer waiting registrations).
    fn take_up(&mut self, grants: Vec<Fence>, asked: Vec<Arc<str>>, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        let dispatcher = self.dispatcher.clone();
        let ttl = self.settings.lease_ttl;
        let fut = async move {
            let mut out = Vec::with_capacity(grants.len());
            for chunk in grants.chunks(CHUNK) {
                let ids: Vec<String> = chunk.iter().map(|f| f.webhook_id.to_string()).collect();
                let health: BTreeMap<String, _> =
                    within(ttl, store.stored_health(ids.clone())).await?.into_iter().collect();
                let counts: BTreeMap<String, u64> = within(ttl, store.pending_counts(ids)).await?.into_iter().collect();
                out.extend(chunk.iter().map(|f| Grant {
                    fence: f.clone(),
                    stored: health.get(&*f.webhook_id).copied(),
                    pending: counts.get(&*f.webhook_id).copied().unwrap_or(0),
                }));
            }
            let _ = dispatcher.send(Own(out.clone())).await;
            Ok::<_, StoreError>(out)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.claiming = false;
            match res {
                Ok(grants) => {
                    if !grants.is_empty() {
                        tracing::info!(node = %act.id, webhooks = grants.len(), "leases taken");
                    }
                    act.metrics.claimed.increment(grants.len() as u64);
                    for g in grants {
                        act.held.insert(g.fence.webhook_id, g.fence.epoch);
                    }
                    act.set_owned_gauge();
                    act.last_poll = None;
                }
                Err(e) => {
                    // The leases are ours in the store; the next heartbeat offers them again.
                    tracing::warn!(node = %act.id, error = %e, "could not take up granted leases");
                }
            }
            act.claim_round_done(&asked);
            act.rebalance(ctx);
        }));
    }

    fn release(&mut self, ids: Vec<Arc<str>>, ctx: &mut Context<Self>) {
        tracing::info!(node = %self.id, webhooks = ids.len(), "handing webhooks over to other nodes");
        for w in &ids {
            self.releasing.insert(w.clone());
        }
        let fallback: Vec<Option<Fence>> = ids.iter().map(|w| self.fence(w)).collect();
        let dispatcher = self.dispatcher.clone();
        let store = self.store.clone();
        let (node, ttl) = (self.id.clone(), self.settings.lease_ttl);
        let fut = async move {
            let drained = futures_util::future::join_all(ids.iter().map(|w| dispatcher.send(HandOff(w.clone())))).await;
            let fences: Vec<Fence> =
                drained.into_iter().zip(fallback).filter_map(|(d, f)| d.ok().flatten().or(f)).collect();
            let res = within(ttl, store.release_leases(&node, fences.clone())).await;
            (ids, fences, res)
        };
        ctx.spawn(fut.into_actor(self).map(|(ids, fences, res), act, ctx| {
            // Drained either way: the dispatcher no longer acts on them. Should the release have
            // failed, they are still this node's in the store, and the next heartbeat takes them
            // up again (or the plan releases them again).
            for f in &fences {
                if act.held.get(&f.webhook_id) == Some(&f.epoch) {
                    act.held.remove(&f.webhook_id);
                }
            }
            for w in &ids {
                act.releasing.remove(w);
            }
            match res {
                Ok(()) => act.metrics.released.increment(fences.len() as u64),
                Err(e) => tracing::warn!(node = %act.id, error = %e, "could not release leases; trying again"),
            }
            act.set_owned_gauge();
            act.full_plan = true;
            act.rebalance(ctx);
        }));
    }

    /// Answers the registrations waiting to be owned for which `done` holds (dropping the sender
    /// answers the waiter).
    fn answer_adopters(&mut self, done: impl Fn(&Arc<str>) -> bool) {
        let waiters = std::mem::take(&mut self.adopt_waiters);
        self.adopt_waiters = waiters.into_iter().filter(|(id, _)| !done(id)).collect();
    }

    /// A claim round ended: answers whoever waited on it.
    fn claim_round_done(&mut self, asked: &[Arc<str>]) {
        let held = std::mem::take(&mut self.held);
        self.answer_adopters(|id| held.contains_key(id) || asked.contains(id));
        self.held = held;
        self.round_waiters.clear();
    }

    // ----- due work -----

    fn maybe_poll(&mut self, ctx: &mut Context<Self>) {
        if self.polling || self.held.is_empty() || self.stopped {
            return;
        }
        if self.last_poll.is_some_and(|t| t.elapsed() < self.settings.poll_interval) {
            return;
        }
        self.polling = true;
        self.last_poll = Some(Instant::now());
        let ids: Vec<String> = self.held.keys().map(|w| w.to_string()).collect();
        let store = self.store.clone();
        let ttl = self.settings.lease_ttl;
        let fut = async move {
            let mut out = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(CHUNK) {
                out.extend(within(ttl, store.due_summary(chunk.to_vec())).await?);
            }
            Ok::<_, StoreError>(out)
        };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.polling = false;
            match res {
                Ok(summary) => {
                    let now = now_ms();
                    let due: Vec<(String, u32)> = summary
                        .iter()
                        .filter(|s| s.earliest_due_ms.is_some_and(|t| t <= now))
                        .map(|s| (s.webhook_id.clone(), 0))
                        .collect();
                    let oldest = summary.iter().filter_map(|s| s.earliest_due_ms).filter(|t| *t <= now).min();
                    act.metrics.oldest_due.set(oldest.map_or(0.0, |t| (now - t) as f64 / 1000.0));
                    if !due.is_empty() {
                        act.dispatcher.do_send(Wake(due));
                    }
                }
                Err(e) => tracing::warn!(node = %act.id, error = %e, "could not poll for due work"),
            }
        }));
    }

    fn on_notice(&mut self, notice: Notice, ctx: &mut Context<Self>) {
        match notice {
            Notice::Work { origin, webhooks } => {
                if *origin == *self.id {
                    return; // fanned out locally already
                }
                let mine: Vec<(String, u32)> =
                    webhooks.into_iter().filter(|(w, _)| self.held.contains_key(w.as_str())).collect();
                if mine.is_empty() {
                    return;
                }
                if self.syncing {
                    // Notices arrive in commit order: a registry change committed before this work
                    // must reach the endpoint before the work does (e.g. a new URL).
                    self.deferred_wakes.extend(mine);
                } else {
                    self.dispatcher.do_send(Wake(mine));
                }
            }
            Notice::Registry { .. } => self.sync_registry(ctx),
            Notice::Cluster { origin } => {
                if *origin != *self.id {
                    self.full_plan = true;
                    self.tick(ctx);
                }
            }
            Notice::Requeued { origin, webhook_id, ids, were_failed } => {
                // The re-queueing node told its own dispatcher already.
                if *origin != *self.id && self.held.contains_key(webhook_id.as_str()) {
                    self.dispatcher.do_send(Requeue { webhook_id, ids, were_failed });
                }
            }
            Notice::Resync => {
                self.full_plan = true;
                self.last_poll = None;
                self.sync_registry(ctx);
                self.tick(ctx);
            }
        }
    }
}

/// A store call bounded in time, so that a store that hangs (a partition) reads as a failure.
async fn within<T>(limit: Duration, fut: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {} ms", limit.as_millis()))))
}

impl Actor for NodeActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(mut rx) = self.store.take_notices() {
            let me = ctx.address();
            actix::spawn(async move {
                while let Some(n) = rx.recv().await {
                    if !me.connected() {
                        break;
                    }
                    me.do_send(Noticed(n));
                }
            });
        }
        ctx.run_interval(self.settings.heartbeat_interval, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Join> for NodeActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Join, _: &mut Context<Self>) -> Self::Result {
        // The registry and one heartbeat, in order, then the first claim round, all before
        // `Webhooks::start` returns (on SQLite the node then owns every webhook).
        let store = self.store.clone();
        let (id, info, ttl) = (self.id.clone(), self.info.clone(), self.settings.lease_ttl);
        self.syncing = true;
        self.ticking = true;
        let sent = Instant::now();
        Box::pin(
            async move {
                let changes = store.registry_changes(0).await;
                let hb = store.heartbeat(&id, &info, ttl).await;
                if let Ok(hb) = &hb
                    && store.exclusive()
                {
                    // One process owns the store: other live rows are earlier runs killed before
                    // they could leave. Remove them so they are neither listed nor given work.
                    for stale in hb.live_nodes.iter().filter(|n| **n != *id) {
                        tracing::info!(node = %id, earlier = %stale, "removing the node of an earlier run");
                        let _ = store.leave(stale).await;
                    }
                }
                (changes, hb)
            }
            .into_actor(self)
            .then(move |(changes, hb), act, ctx| {
                act.syncing = false;
                act.ticking = false;
                match changes {
                    Ok(c) => act.apply_registry(c),
                    Err(e) => tracing::warn!(node = %act.id, error = %e, "could not load the registry"),
                }
                act.on_heartbeat(hb, sent, ctx);
                act.rebalance(ctx);
                let (tx, rx) = oneshot::channel();
                if act.claiming {
                    act.round_waiters.push(tx);
                }
                async move {
                    let _ = rx.await;
                }
                .into_actor(act)
            }),
        )
    }
}

impl Handler<Adopt> for NodeActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: Adopt, ctx: &mut Context<Self>) -> Self::Result {
        // A registration: the next plan claims it (with no other node, without a full plan).
        if self.webhooks.insert(msg.0.clone()) || !self.held.contains_key(&msg.0) {
            self.added.push(msg.0.clone());
        }
        let (tx, rx) = oneshot::channel();
        if !self.held.contains_key(&msg.0) {
            self.adopt_waiters.push((msg.0, tx));
        }
        self.rebalance(ctx);
        Box::pin(
            async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), rx).await;
            }
            .into_actor(self),
        )
    }
}

impl Handler<Forget> for NodeActor {
    type Result = ();
    fn handle(&mut self, msg: Forget, ctx: &mut Context<Self>) {
        if self.webhooks.remove(&msg.0) {
            self.full_plan = true;
            self.rebalance(ctx);
        }
    }
}

impl Handler<Fenced> for NodeActor {
    type Result = ();
    fn handle(&mut self, msg: Fenced, _: &mut Context<Self>) {
        self.lose(msg.0);
    }
}

impl Handler<Noticed> for NodeActor {
    type Result = ();
    fn handle(&mut self, msg: Noticed, ctx: &mut Context<Self>) {
        self.on_notice(msg.0, ctx);
    }
}

impl Handler<Leave> for NodeActor {
    type Result = ResponseFuture<()>;
    fn handle(&mut self, _: Leave, _: &mut Context<Self>) -> Self::Result {
        self.stopped = true;
        let store = self.store.clone();
        let id = self.id.clone();
        let ttl = self.settings.lease_ttl;
        let held = self.held.len();
        Box::pin(async move {
            match within(ttl, store.leave(&id)).await {
                Ok(()) => tracing::info!(node = %id, leases = held, "left the cluster; leases released"),
                Err(e) => tracing::warn!(node = %id, error = %e, "could not release leases; they run out instead"),
            }
        })
    }
}
