//! Which webhooks this node owns: reconciling its leases with the store's, losing them, and
//! acting on the assignment (`cluster::balance`): claims, taking up grants, hand-offs and
//! releases.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use actix::prelude::*;

use super::{CHUNK, NodeActor, balance, within};
use crate::delivery::dispatcher::{Grant, HandOff, Own, Revoke};
use crate::store::{Fence, StoreError};

impl NodeActor {
    /// Compares the leases the store says this node holds with the ones it acts on.
    pub(super) fn reconcile(&mut self, in_store: Vec<Fence>, ctx: &mut Context<Self>) {
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

    pub(super) fn lose(&mut self, lost: Vec<Fence>) {
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

    pub(super) fn rebalance(&mut self, ctx: &mut Context<Self>) {
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
}
