//! This node's copy of the registry: incremental changes from the store, handed to the
//! dispatcher.

use std::collections::BTreeSet;
use std::sync::Arc;

use actix::prelude::*;

use super::{NodeActor, within};
use crate::delivery::dispatcher::{Apply, Remove, Wake};
use crate::store::RegistryChanges;

impl NodeActor {
    pub(super) fn sync_registry(&mut self, ctx: &mut Context<Self>) {
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

    pub(super) fn apply_registry(&mut self, changes: RegistryChanges) {
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
}
