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
//! Its parts: this module (state, heartbeat, expiry, polling for due work, notices), `ownership`
//! (reconciling leases, claims, hand-offs and releases), `registry` (the registry copy) and
//! `messages` (what it answers to).

mod messages;
mod ownership;
mod registry;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::oneshot;

use super::balance;
use super::lease::{LeaseGuard, LeaseTimes};
use crate::config::ClusterSettings;
use crate::delivery::dispatcher::{DispatcherActor, Requeue, Revoke, Wake};
use crate::metrics::names;
use crate::model::now_ms;
use crate::store::{Fence, Heartbeat, Notice, Store, StoreError, StoreResult};

use self::messages::Noticed;
pub(crate) use self::messages::{Adopt, Forget, Join, Leave};

/// Largest id list sent to the store in one call.
const CHUNK: usize = 5_000;

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
