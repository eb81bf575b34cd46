//! What the node actor answers to: joining, adopting and forgetting registrations made on this
//! node, leaving, notices from other nodes, and writes the store refused (fenced).

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{NodeActor, within};
use crate::delivery::ledger::Fenced;
use crate::store::Notice;

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
pub(super) struct Noticed(pub(super) Notice);

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
