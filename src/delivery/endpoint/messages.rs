//! What the endpoint actor answers to: new work, signals from the store side, registration
//! changes, drain, retirement, and the test hook that injects a panic.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::{EndpointActor, EndpointConfig, Persist};
use crate::delivery::Pending;
use crate::delivery::faults::Fault;
use crate::delivery::health::EndpointState;
use crate::delivery::outbox;
use crate::model::now_ms;

/// New deliveries for this endpoint, committed on this node.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Deliver(pub(crate) Vec<Pending>);

/// The store may hold due work this actor does not know of (published on another node, found by
/// the node's poll): page it in.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CheckStore;

/// replay: these deliveries were put back in the queue, due now (see `Window::requeued`).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Requeued(pub(crate) Vec<Box<str>>);

/// The registration changed; takes effect for the next attempt. `reenable` clears a disable;
/// `disabled`: the registry says it is disabled (an operator's disable: the store has failed its
/// pending deliveries already).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reconfigure {
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) reenable: bool,
    pub(crate) disabled: bool,
}

/// Start no more attempts; answer once none is in flight (shutdown, or a hand-off to another node).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain(pub(crate) oneshot::Sender<()>);

/// Stop for good (deleted, hibernating, handed off, or its lease lost): the dispatcher has dropped
/// its address, so the supervisor does not restart it. Attempts still in flight are cut off; their
/// deliveries stay pending in the store for whoever owns the webhook next.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

/// Test hook: panics inside a handler ([`Fault::HandlerPanic`]: caught, supervised restart that
/// recovers from the store) or outside every guard ([`Fault::Kill`]: the actor dies).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct InjectPanic(pub(crate) Fault);

impl Handler<Deliver> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| act.accept(msg.0, ctx));
    }
}

impl Handler<CheckStore> for EndpointActor {
    type Result = ();
    fn handle(&mut self, _: CheckStore, ctx: &mut Context<Self>) {
        self.received += 1;
        self.guarded(ctx, |act, ctx| {
            act.activity += 1;
            if !act.disabled {
                act.window.signal_store();
            }
            act.pump(ctx);
        });
    }
}

impl Handler<Requeued> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Requeued, ctx: &mut Context<Self>) {
        self.received += 1;
        self.guarded(ctx, |act, ctx| {
            act.activity += 1;
            if !act.disabled {
                act.window.requeued(&msg.0, now_ms());
            }
            act.pump(ctx);
        });
    }
}

impl Handler<Reconfigure> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        self.received += 1;
        self.guarded(ctx, |act, ctx| {
            act.cfg = msg.config;
            // Pacing: a change of `ordered` re-sorts what the window holds (the rate is read at
            // each attempt).
            act.window.set_ordered(act.cfg.ordered, now_ms());
            if msg.disabled && !act.disabled {
                // Disabled by an operator: the store failed its pending deliveries already.
                tracing::info!(node = %act.shared.node_id, webhook = %act.cfg.id, "endpoint disabled by an operator");
                act.stop_sending(ctx);
                act.persist_health(Persist::Always);
                return;
            }
            if msg.reenable && act.disabled {
                act.disabled = false;
                act.breaker.reset(act.shared.settings.breaker.clone());
                act.health.clear_failures();
                act.health.set_state(EndpointState::Healthy);
                act.window.signal_store();
                act.persist_health(Persist::Always);
            }
            act.pump(ctx);
        });
    }
}

impl Handler<Drain> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        self.draining = true;
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        if self.running == 0 {
            outbox::flush();
            let _ = msg.0.send(());
        } else {
            self.drain_waiters.push(msg.0);
        }
    }
}

impl Handler<Retire> for EndpointActor {
    type Result = ();
    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retired = true;
        self.window.clear();
        ctx.stop();
    }
}

impl Handler<InjectPanic> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: InjectPanic, ctx: &mut Context<Self>) {
        match msg.0 {
            Fault::Kill => panic!("injected fault: unsupervised panic (test hook)"),
            _ => self.guarded(ctx, |_, _| panic!("injected fault: handler (test hook)")),
        }
    }
}
