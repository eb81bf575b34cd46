//! `EndpointActor`: the only thing that talks to one webhook endpoint, on the node that holds the
//! webhook's lease.
//!
//! It keeps a bounded `window` of the endpoint's pending deliveries (the store holds the rest and
//! is paged by due time), starts attempts up to `maxInFlight` while the breaker and the node's lease
//! allow, turns each outcome into a `decide::Decision`, records it through the ledger under its
//! lease epoch (fencing), and keeps one `run_later` timer for the earliest of: the next retry, the
//! store's next due time, the breaker's next probe.
//!
//! Failure containment: every handler body runs under `catch_unwind`; a panic becomes `ctx.stop()`,
//! which the actix `Supervisor` turns into a restart. A restart drops timers and in-flight futures,
//! so `restarting` empties the window and the actor reloads its due deliveries from the store,
//! after a ledger barrier so that it sees its own last writes.
//!
//! The actor's parts: this module (its state, the pump that starts work, timers, health, disable,
//! restart), `attempt` (an attempt from start to recorded outcome), `paging` (due work from
//! the store) and `messages` (what it answers to). The pure parts beside it: `window`,
//! `decide`, `permits`, `pacing`, `headers`.

mod attempt;
mod decide;
mod headers;
mod key;
mod messages;
pub(crate) mod pacing;
mod paging;
mod permits;
pub(crate) mod window;

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use self::decide::Disable;
pub(crate) use self::headers::{EndpointConfig, base_headers};
pub(crate) use self::messages::{CheckStore, Deliver, Drain, InjectPanic, Reconfigure, Requeued, Retire};
use self::pacing::{Pacer, monotonic_ms};
use self::permits::{AttemptPermit, Permits, SUSPECT_MAX_IN_FLIGHT};
use self::window::Window;
use super::breaker::{Breaker, Permit};
use super::dispatcher::Hibernate;
use super::health::{EndpointState, Health};
use super::ledger::DisableEndpoint;
use super::outbox::{self, LedgerOp};
use super::{Pending, Shared};
use crate::metrics::{EndpointMetrics, PendingGauge, WebhookLabel};
use crate::model::now_ms;
use crate::store::{DisableWebhook, FailDelivery, Fence, HealthWrite, StoredHealth};

/// A delivery that crashes its endpoint this many times is failed instead of tried again.
const MAX_CRASHES: u32 = 3;
/// Restarts closer together than this count as one crash loop (their delay grows).
const CRASH_LOOP_WINDOW: Duration = Duration::from_secs(60);

/// The text of a caught panic.
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".into())
}

/// What a new actor starts from.
pub(crate) struct EndpointStart {
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) fence: Fence,
    pub(crate) health: Arc<Health>,
    pub(crate) stored: StoredHealth,
    pub(crate) label: WebhookLabel,
    /// Its count in `webhook_pending_deliveries` (this node's tenure).
    pub(crate) pending: PendingGauge,
    /// The store may hold due work for it: page it in first.
    pub(crate) has_backlog: bool,
    pub(crate) dispatcher: Recipient<Hibernate>,
    /// The rate limit of this node's lease tenure (kept by the dispatcher across hibernation).
    pub(crate) pacer: Arc<Pacer>,
}

/// When [`EndpointActor::persist_health`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    Throttled,
    IfChanged,
    Always,
}

/// The last health record sent to the store, to write only what changed.
#[derive(Debug, Default, Clone, Copy)]
struct HealthMark {
    written: Option<StoredHealth>,
    at_ms: i64,
}

/// One webhook endpoint's delivery worker.
pub(crate) struct EndpointActor {
    cfg: Arc<EndpointConfig>,
    shared: Arc<Shared>,
    fence: Fence,
    health: Arc<Health>,
    health_mark: HealthMark,
    metrics: EndpointMetrics,
    pending: PendingGauge,
    breaker: Breaker,
    window: Window,
    /// Attempt futures running (they may outlive a disable; drain waits for them).
    running: usize,
    timer: Option<(i64, SpawnHandle)>,
    lease_wait: Option<SpawnHandle>,
    disabled: bool,
    retired: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// Access to the node's attempt permits (see `permits`).
    permits: Permits,
    awaiting_permit: bool,
    /// Outcomes were sent to the ledger since the last barrier: a page must wait for their commit,
    /// or it would load as pending what was just delivered.
    unflushed: bool,
    dispatcher: Recipient<Hibernate>,
    /// Work messages handled (the dispatcher counts the ones it sent).
    received: u64,
    /// Bumped by every delivery, attempt and page: an idle check sees whether anything happened.
    activity: u64,
    idle_check: Option<SpawnHandle>,
    /// The delivery being handled right now, blamed if the handler panics.
    current: Option<Box<str>>,
    /// Panics per delivery (kept across restarts: the actor value survives them).
    crashes: HashMap<Box<str>, u32>,
    /// Restarts in the current crash loop, and when the last one was.
    restarts: (u32, Option<Instant>),
    /// Wait this long after a restart before working again (grows in a crash loop).
    resume_after: Option<Duration>,
    /// Bumped by every disable: an attempt started under an older value belongs to deliveries
    /// the store has failed since, and must not be retried (even after a re-enable).
    generation: u64,
    // ----- pacing -----
    /// The rate limit's token bucket (see [`pacing`]).
    pacer: Arc<Pacer>,
    /// Ready work waits for a token until then (Unix ms): the timer wakes the actor for it.
    pace_at: Option<i64>,
    /// An attempt could not start for want of a rate-limit token: the next one to start has
    /// waited for the limit (`webhook_rate_limited_attempts_total`).
    waited_for_token: bool,
}

impl EndpointActor {
    pub(crate) fn new(start: EndpointStart, shared: Arc<Shared>) -> Self {
        let disabled = start.health.is_disabled();
        let mut window = new_window(&shared, &start.config);
        if start.has_backlog && !disabled {
            window.signal_store();
        }
        Self {
            breaker: Breaker::restore(shared.settings.breaker.clone(), &start.stored),
            cfg: start.config,
            fence: start.fence,
            health: start.health,
            health_mark: HealthMark { written: Some(start.stored), at_ms: now_ms() },
            metrics: EndpointMetrics::new(start.label),
            pending: start.pending,
            window,
            running: 0,
            timer: None,
            lease_wait: None,
            disabled,
            retired: false,
            draining: false,
            drain_waiters: Vec::new(),
            permits: Permits::new(shared.attempt_permits.clone(), shared.suspect_permits.clone()),
            awaiting_permit: false,
            unflushed: false,
            dispatcher: start.dispatcher,
            received: 0,
            activity: 0,
            idle_check: None,
            current: None,
            crashes: HashMap::new(),
            restarts: (0, None),
            resume_after: None,
            generation: 0,
            pacer: start.pacer,
            pace_at: None,
            waited_for_token: false,
            shared,
        }
    }

    /// Runs `f`; a panic inside it stops the actor so that the supervisor restarts it, blaming the
    /// delivery being handled, if any.
    fn guarded(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Self, &mut Context<Self>)) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            let text = panic_text(&*p);
            if let Some(id) = self.current.take() {
                self.crashed(id, &text);
            }
            tracing::error!(node = %self.shared.node_id, webhook = %self.cfg.id, panic = %text, "endpoint actor panicked; restarting it");
            ctx.stop();
        }
        self.current = None;
    }

    /// A delivery was being handled when the endpoint crashed: after `MAX_CRASHES` crashes it is
    /// failed (visibly, with the reason) rather than tried again forever.
    fn crashed(&mut self, delivery_id: Box<str>, text: &str) {
        let n = self.crashes.entry(delivery_id.clone()).or_insert(0);
        *n += 1;
        if *n < MAX_CRASHES {
            return;
        }
        self.crashes.remove(&delivery_id);
        let reason = format!("crashed the endpoint worker {MAX_CRASHES} times (last panic: {text})");
        tracing::error!(node = %self.shared.node_id, webhook = %self.cfg.id, delivery = %delivery_id, %reason, "failing a delivery");
        self.metrics.failed.increment(1);
        self.pending.add(-1);
        let failure = FailDelivery { delivery_id: delivery_id.into_string(), reason, fence: Some(self.fence.clone()) };
        outbox::put(&self.shared.ledger, LedgerOp::Fail(vec![failure]));
        self.unflushed = true;
    }

    fn accept(&mut self, items: Vec<Pending>, ctx: &mut Context<Self>) {
        self.received += 1;
        self.activity += 1;
        if self.retired {
            return; // stays pending in the store
        }
        if self.disabled {
            self.metrics.failed.increment(items.len() as u64);
            self.pending.add(-(items.len() as i64));
            let failures = items
                .into_iter()
                .map(|p| FailDelivery {
                    delivery_id: p.id.into_string(),
                    reason: "endpoint disabled".into(),
                    fence: Some(self.fence.clone()),
                })
                .collect();
            outbox::put(&self.shared.ledger, LedgerOp::Fail(failures));
            self.unflushed = true;
            return;
        }
        self.window.offer(items, now_ms());
        self.pump(ctx);
    }

    /// Starts every attempt the in-flight limit, the breaker and the lease allow, pages in from
    /// the store when there is room, then re-arms the timer.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.disabled || self.retired {
            return;
        }
        let now = now_ms();
        self.window.tick(now);
        self.pace_at = None;
        if !self.draining && self.window.has_ready() && !self.shared.lease.may_start() {
            // The node could not renew its leases lately: start nothing until it does.
            self.wait_for_lease(ctx);
        } else if !self.draining && self.window.has_ready() && self.shared.writes.refusing(now).is_some() {
            // Outcomes could not be recorded (the store refuses writes or is behind): an attempt
            // now would be sent again after a crash. Start nothing until the store takes writes.
            self.wait_for_writes(ctx);
        } else {
            // A failing endpoint gets a smaller share (see `permits`).
            let suspect = self.breaker.consecutive_failures() > 0;
            let limit = match (self.cfg.ordered, suspect) {
                (true, _) => 1, // one at a time, in publish order (the window releases one anyway)
                (false, true) => self.cfg.max_in_flight.min(SUSPECT_MAX_IN_FLIGHT),
                (false, false) => self.cfg.max_in_flight,
            };
            if !self.draining
                && !self.window.has_ready()
                && self.breaker.permit(now, self.window.in_flight()) == Permit::Probe
            {
                // The probe goes at its time, with the delivery due next, not at that one's time.
                self.window.promote_earliest();
            }
            while !self.draining && self.window.in_flight() < limit && self.window.has_ready() {
                let probe = match self.breaker.permit(now, self.window.in_flight()) {
                    Permit::Flow => false,
                    Permit::Probe => true,
                    Permit::Wait { .. } => break,
                };
                // The rate limit: wait for a token (never fail for it), holding no attempt permit.
                let mono = monotonic_ms();
                if let Err(at) = self.pacer.take(self.cfg.rate_limit_per_second, mono) {
                    self.pace_at = Some(now.saturating_add(at - mono));
                    self.waited_for_token = true;
                    break;
                }
                let Some(permit) = self.take_permit(suspect, ctx) else {
                    self.pacer.refund();
                    break;
                };
                let p = self.window.start_next().expect("has_ready");
                if std::mem::take(&mut self.waited_for_token) {
                    self.metrics.label.rate_limited();
                }
                if probe {
                    self.breaker.probe_started();
                }
                self.start_attempt(p, probe, permit, ctx);
            }
        }
        if !self.window.has_ready() || self.pace_at.is_some() {
            self.permits.release_spares(); // nothing to use them for now: give them back
        }
        self.maybe_page(ctx);
        self.refresh_state(now);
        self.rearm(ctx, now);
        self.schedule_idle_check(ctx);
    }

    /// The state `GET /v1/webhooks/{id}` shows, from what the endpoint holds back right now:
    /// `paused` while the breaker holds deliveries back (or its cool-down runs), `backing_off`
    /// while retries wait after failures, `healthy` when nothing is held back (failures since the
    /// last success stay in `consecutiveFailures`; with the breaker still open, the next delivery
    /// goes out as its probe).
    fn refresh_state(&mut self, now: i64) {
        if self.disabled {
            return;
        }
        let has_work = !self.window.is_empty();
        let state = match self.breaker.probe_at_ms() {
            Some(at) if has_work || now < at => EndpointState::Paused,
            _ if has_work && self.breaker.consecutive_failures() > 0 => EndpointState::BackingOff,
            _ => EndpointState::Healthy,
        };
        if self.health.snapshot().state != state {
            self.set_state(state);
            self.persist_health(Persist::Throttled);
        }
    }

    fn wait_for_lease(&mut self, ctx: &mut Context<Self>) {
        if self.lease_wait.is_some() {
            return;
        }
        let every = self.shared.settings.cluster.heartbeat_interval;
        self.lease_wait = Some(ctx.run_later(every, |act, ctx| {
            act.lease_wait = None;
            act.guarded(ctx, |act, ctx| act.pump(ctx));
        }));
    }

    fn wait_for_writes(&mut self, ctx: &mut Context<Self>) {
        if self.lease_wait.is_some() {
            return;
        }
        self.lease_wait = Some(ctx.run_later(Duration::from_millis(200), |act, ctx| {
            act.lease_wait = None;
            act.guarded(ctx, |act, ctx| act.pump(ctx));
        }));
    }

    /// Nothing in memory, in flight, in the store or failing: the actor could stop without loss.
    /// (A failing or paused endpoint may hibernate too: its breaker is stored and restored.)
    fn is_idle(&self) -> bool {
        self.window.is_empty() && self.running == 0 && !self.awaiting_permit && !self.draining && !self.retired
    }

    /// After `idle_timeout` with nothing happening, asks the dispatcher to let it hibernate.
    fn schedule_idle_check(&mut self, ctx: &mut Context<Self>) {
        if self.idle_check.is_some() || !self.is_idle() {
            return;
        }
        let seen = self.activity;
        let after = self.shared.settings.delivery.idle_timeout;
        self.idle_check = Some(ctx.run_later(after, move |act, ctx| {
            act.idle_check = None;
            if act.is_idle() && act.activity == seen {
                act.persist_health(Persist::IfChanged);
                act.dispatcher.do_send(Hibernate {
                    webhook_id: act.cfg.id.clone(),
                    received: act.received,
                    health: act.stored_health(),
                });
            } else {
                act.schedule_idle_check(ctx);
            }
        }));
    }

    /// The permits of one attempt, or `None` after arranging to pump again once the pool it
    /// waits on has one free.
    fn take_permit(&mut self, suspect: bool, ctx: &mut Context<Self>) -> Option<AttemptPermit> {
        match self.permits.take(suspect) {
            Ok(p) => Some(p),
            Err(pool) => {
                if !self.awaiting_permit {
                    self.awaiting_permit = true;
                    let sem = self.permits.pool(pool);
                    ctx.spawn(async move { sem.acquire_owned().await.ok() }.into_actor(self).map(
                        move |permit, act, ctx| {
                            act.awaiting_permit = false;
                            if let Some(p) = permit {
                                act.permits.keep(pool, p);
                            }
                            act.guarded(ctx, |act, ctx| act.pump(ctx));
                        },
                    ));
                }
                None
            }
        }
    }

    /// Keeps one timer armed for the earliest of: the next retry or store due time, the next
    /// breaker probe.
    fn rearm(&mut self, ctx: &mut Context<Self>, now: i64) {
        if self.draining {
            return;
        }
        let mut next = self.window.next_due_ms();
        if let Some(at) = self.pace_at {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        // While the breaker is open: wake at the probe time (to probe with whatever is held, or to
        // show the endpoint as no longer paused when nothing is).
        if let Permit::Wait { retry_at_ms } = self.breaker.permit(now, self.window.in_flight())
            && retry_at_ms != i64::MAX
            && retry_at_ms > now
        {
            next = Some(next.map_or(retry_at_ms, |n| n.min(retry_at_ms)));
        }
        let Some(at) = next else { return };
        if let Some((armed, handle)) = self.timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis((at - now).max(0) as u64);
        let handle = ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.guarded(ctx, |act, ctx| act.pump(ctx));
        });
        self.timer = Some((at, handle));
    }

    fn set_state(&self, state: EndpointState) {
        let before = self.health.snapshot().state;
        if before != state {
            match state {
                EndpointState::Paused => {
                    tracing::warn!(node = %self.shared.node_id, webhook = %self.cfg.id, failures = self.breaker.consecutive_failures(), "endpoint paused: breaker open, probing");
                }
                EndpointState::Healthy if before == EndpointState::Paused => {
                    tracing::info!(node = %self.shared.node_id, webhook = %self.cfg.id, "endpoint resumed: probe succeeded");
                }
                _ => {}
            }
        }
        self.health.set_state(state);
    }

    /// The health record as it should be stored now.
    fn stored_health(&self) -> StoredHealth {
        let snap = self.health.snapshot();
        StoredHealth {
            state: snap.state,
            consecutive_failures: self.breaker.consecutive_failures(),
            failing_since_ms: self.breaker.failing_since_ms(),
            last_success_ms: snap.last_success_ms,
            last_failure_ms: snap.last_failure_ms,
            breaker: self.breaker.record(),
        }
    }

    /// Sends the health record to the store when it changed: at once when the state, the streak
    /// or the breaker changed; when only the last-success or last-failure time moved, at most once
    /// a second (`Throttled`) or at once (`IfChanged`, e.g. before hibernating).
    fn persist_health(&mut self, when: Persist) {
        let now = now_ms();
        let current = self.stored_health();
        let due = match (when, self.health_mark.written) {
            (Persist::Always, _) | (_, None) => true,
            (Persist::IfChanged, Some(w)) => w != current,
            (Persist::Throttled, Some(w)) => {
                let times_only =
                    StoredHealth { last_success_ms: w.last_success_ms, last_failure_ms: w.last_failure_ms, ..current }
                        == w;
                if times_only { w != current && now - self.health_mark.at_ms >= 1000 } else { true }
            }
        };
        if !due {
            return;
        }
        self.health_mark = HealthMark { written: Some(current), at_ms: now };
        outbox::put(&self.shared.ledger, LedgerOp::Health(HealthWrite { fence: self.fence.clone(), health: current }));
    }

    fn disable(&mut self, disable: Disable, ctx: &mut Context<Self>) {
        if self.disabled {
            return;
        }
        tracing::warn!(node = %self.shared.node_id, webhook = %self.cfg.id, reason = %disable.reason, "disabling endpoint; its pending deliveries fail");
        self.stop_sending(ctx);
        self.metrics.label.disabled(disable.kind);
        let op = DisableWebhook { fence: self.fence.clone(), reason: disable.reason, at_ms: now_ms() };
        outbox::put(
            &self.shared.ledger,
            LedgerOp::Disable(DisableEndpoint { op, label: self.metrics.label.clone(), pending: self.pending.clone() }),
        );
        self.persist_health(Persist::Always);
    }

    /// Disabled (automatically or by an operator): nothing more goes out, and attempts in flight
    /// are not retried (their deliveries are failed in the store).
    fn stop_sending(&mut self, ctx: &mut Context<Self>) {
        self.disabled = true;
        self.generation += 1;
        self.health.set_state(EndpointState::Disabled);
        self.window.clear();
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
    }
}

/// An empty window for the endpoint, ordered if its registration says so.
fn new_window(shared: &Shared, cfg: &EndpointConfig) -> Window {
    let mut window = Window::new(shared.settings.delivery.window, shared.window_bytes.clone());
    window.set_ordered(cfg.ordered, now_ms());
    window
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            ctx.stop();
            return;
        }
        match self.resume_after.take() {
            // After a crash: wait before working again, longer in a crash loop.
            Some(delay) => {
                ctx.run_later(delay, |act, ctx| act.guarded(ctx, |act, ctx| act.pump(ctx)));
            }
            None => self.guarded(ctx, |act, ctx| act.pump(ctx)),
        }
    }
}

impl Supervised for EndpointActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.health.record_restart();
        self.metrics.label.restarted();
        let now = Instant::now();
        let in_loop = self.restarts.1.is_some_and(|t| now.duration_since(t) < CRASH_LOOP_WINDOW);
        self.restarts = (if in_loop { self.restarts.0 + 1 } else { 1 }, Some(now));
        let exp = self.restarts.0.saturating_sub(1).min(9);
        self.resume_after = Some((Duration::from_millis(100) * 2u32.pow(exp)).min(Duration::from_secs(30)));
        // Timers and in-flight futures are gone: start over from the store, after the ledger has
        // committed whatever the previous incarnation recorded.
        self.window = new_window(&self.shared, &self.cfg);
        self.pace_at = None;
        self.timer = None;
        self.lease_wait = None;
        self.running = 0;
        self.breaker.probe_abandoned();
        self.permits.release_spares();
        self.awaiting_permit = false;
        self.idle_check = None;
        self.unflushed = true;
        if !self.disabled {
            self.window.signal_store();
        }
        outbox::flush();
        for w in self.drain_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}
