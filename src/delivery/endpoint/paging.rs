//! Paging due deliveries in from the store when it may hold some and the window has room.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt as _;
use tokio::sync::oneshot;

use super::{EndpointActor, panic_text};
use crate::delivery::Pending;
use crate::delivery::faults::Fault;
use crate::delivery::outbox::{self, LedgerOp};
use crate::model::now_ms;
use crate::store::{DuePage, StoreResult};

impl EndpointActor {
    /// Pages due deliveries in from the store when it may hold some and the window has room.
    pub(super) fn maybe_page(&mut self, ctx: &mut Context<Self>) {
        if self.disabled || self.retired || self.draining {
            return;
        }
        let Some(req) = self.window.page_request() else { return };
        let limit = req.limit;
        tracing::debug!(webhook = %self.cfg.id, limit, held = self.window.held(), "paging in due deliveries");
        let barrier = std::mem::take(&mut self.unflushed);
        let store = self.shared.store.clone();
        let ledger = self.shared.ledger.clone();
        let id = self.cfg.id.clone();
        let inject = self.shared.faults.take(&id, &Fault::PagePanic);
        let ordered = self.window.is_ordered();
        let fut = async move {
            if barrier {
                let (tx, rx) = oneshot::channel();
                outbox::put(&ledger, LedgerOp::Barrier(tx));
                let _ = rx.await;
            }
            if inject {
                panic!("injected fault: page-in future");
            }
            if ordered {
                store.load_in_order(&id, req.exclude, req.limit).await
            } else {
                store.load_due(&id, now_ms(), req.exclude, req.limit).await
            }
        };
        ctx.spawn(AssertUnwindSafe(fut).catch_unwind().into_actor(self).map(move |res, act, ctx| match res {
            Ok(res) => act.guarded(ctx, move |act, ctx| act.on_page(res, limit, ordered, ctx)),
            Err(panic) => {
                tracing::error!(node = %act.shared.node_id, webhook = %act.cfg.id, panic = %panic_text(&*panic), "page-in panicked; restarting the endpoint");
                ctx.stop();
            }
        }));
    }

    fn on_page(&mut self, res: StoreResult<DuePage>, limit: u32, ordered: bool, ctx: &mut Context<Self>) {
        self.activity += 1;
        if self.disabled || self.retired {
            self.window.on_page_failed();
            return;
        }
        if ordered != self.window.is_ordered() {
            // `ordered` changed while the page loaded: it is in the other order; load again.
            self.window.on_page_failed();
            self.pump(ctx);
            return;
        }
        match res {
            Ok(page) => {
                let items: Vec<Pending> = page.items.into_iter().map(|p| self.shared.envelopes.pending(p)).collect();
                let n = self.window.on_page(items, limit, page.next_due_at_ms, now_ms());
                tracing::debug!(webhook = %self.cfg.id, n, "paged in");
                self.pump(ctx);
            }
            Err(e) => {
                self.window.on_page_failed();
                tracing::warn!(node = %self.shared.node_id, webhook = %self.cfg.id, error = %e, "could not page in due deliveries; retrying in 1s");
                ctx.run_later(Duration::from_secs(1), |act, ctx| act.guarded(ctx, |act, ctx| act.pump(ctx)));
            }
        }
    }
}
