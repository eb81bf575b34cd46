//! `EndpointActor`: the only thing that talks to one webhook endpoint.
//!
//! It holds a bounded window of that endpoint's pending deliveries: `ready` (due now, waiting for an
//! in-flight slot) and `waiting` (a min-heap by due time behind one `run_later` timer). Attempts run
//! concurrently up to `maxInFlight`; each outcome is classified, recorded through the ledger, and
//! either finishes the delivery or re-queues it with its backoff delay. Past the window, new
//! deliveries stay in the store only and are paged back in by id as the window drains.
//!
//! Failure containment: every handler body runs under `catch_unwind`; a panic becomes `ctx.stop()`,
//! which the actix `Supervisor` turns into a restart. A restart drops timers and in-flight futures,
//! so `restarting` empties the window and the actor reloads its pending deliveries (with their due
//! times) from the store, after a ledger barrier so it sees its own last writes.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::breaker::{Breaker, Permit};
use super::client::{self, AttemptResult, Target};
use super::dispatcher::Hibernate;
use super::health::{EndpointState, Health};
use super::ledger::{AttemptDone, Barrier, DisableEndpoint, FailDeliveries};
use super::{Pending, Shared};
use crate::config::Settings;
use crate::metrics::{EndpointMetrics, WebhookLabel};
use crate::model::{WebhookRecord, now_ms, to_ms, validate_url};
use crate::retry::{AttemptOutcome, RetryConfig, Verdict, classify};
use crate::signing::{self, SigningKey, signature_header};
use crate::store::{AttemptRecord, AttemptUpdate, DisableWebhook, Fence, NextStep};

/// TRANSITIONAL: the store pages by due time now (`load_due`); kept only so this file compiles.
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum PageStart {
    Beginning,
    From(String),
    After(String),
}

const H_WEBHOOK_ID: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_ID);
const H_WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_TIMESTAMP);
const H_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_SIGNATURE);
const H_X_ID: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_ID);
const H_X_EVENT: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_EVENT);
const H_X_TIMESTAMP: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_TIMESTAMP);
const H_X_SIGNATURE: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_SIGNATURE);

/// An endpoint's registration, pre-parsed for the hot path (URL, keys, static headers).
#[derive(Debug)]
pub(crate) struct EndpointConfig {
    pub(crate) id: Arc<str>,
    target: Arc<Target>,
    keys: Vec<SigningKey>,
    headers: HeaderMap,
    retry: RetryConfig,
    max_in_flight: usize,
    /// Set when attempts must not go out (bad stored URL or secret, private target not allowed).
    refused: Option<String>,
}

impl EndpointConfig {
    pub(crate) fn from_record(r: &WebhookRecord, settings: &Settings) -> Self {
        let mut refused = None;
        let placeholder =
            || Target::new(&url::Url::parse("http://invalid.invalid/").expect("static url")).expect("valid");
        let target = match validate_url(&r.url, settings.allow_private_targets)
            .map_err(|e| e.to_string())
            .and_then(|u| Target::new(&u))
        {
            Ok(t) => t,
            Err(e) => {
                refused = Some(e);
                placeholder()
            }
        };
        let keys = match SigningKey::from_secret(&r.secret) {
            Ok(k) => vec![k],
            Err(e) => {
                refused.get_or_insert(format!("unusable secret: {e}"));
                Vec::new()
            }
        };
        // Sized for what it holds: an idle endpoint should cost little memory (fleets of 100k).
        let mut headers = HeaderMap::with_capacity(r.headers.len() + 2);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(ua) = HeaderValue::from_str(&settings.delivery.user_agent) {
            headers.insert(USER_AGENT, ua);
        }
        for (k, v) in &r.headers {
            if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.insert(name, value);
            }
        }
        Self {
            id: Arc::from(r.id.as_str()),
            target: Arc::new(target),
            keys,
            headers,
            retry: r.retry_config,
            max_in_flight: r.max_in_flight.unwrap_or(settings.delivery.max_in_flight).max(1) as usize,
            refused,
        }
    }
}

/// New deliveries for this endpoint, committed and in id order.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Deliver(pub(crate) Vec<Pending>);

/// The registration changed; takes effect for the next attempt. `reenable` clears a disable.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Reconfigure {
    pub(crate) config: Arc<EndpointConfig>,
    pub(crate) reenable: bool,
}

/// Shutdown: start no more attempts; answer once none is in flight.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain(pub(crate) oneshot::Sender<()>);

/// The webhook was deleted, or the actor hibernates: stop for good (the dispatcher has dropped
/// its address, so the supervisor does not restart it).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Retire;

/// Test hook: panics inside a handler, to show that the supervisor restarts the actor and that it
/// recovers its pending deliveries from the store.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct InjectPanic;

/// A delivery waiting for its retry time; ordered so that `BinaryHeap` pops the earliest first.
struct Waiting {
    due_ms: i64,
    seq: u64,
    pending: Pending,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.due_ms, self.seq) == (other.due_ms, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.due_ms, other.seq).cmp(&(self.due_ms, self.seq))
    }
}

/// Where the backlog beyond the window stands.
#[derive(Debug)]
struct Backlog {
    /// Some pending deliveries are only in the store; new pushes are left there too.
    in_store: bool,
    /// Where the next page starts.
    next: PageStart,
    /// A page query is running.
    paging: bool,
    /// A push was left in the store while a page query ran; that page may not include it.
    missed: bool,
    /// Wait for the ledger to flush before the next page (after a restart).
    barrier_first: bool,
}

impl Backlog {
    fn none() -> Self {
        Self { in_store: false, next: PageStart::Beginning, paging: false, missed: false, barrier_first: false }
    }
    fn reload() -> Self {
        Self { in_store: true, next: PageStart::Beginning, paging: false, missed: false, barrier_first: true }
    }
}

/// One webhook endpoint's delivery worker.
pub(crate) struct EndpointActor {
    cfg: Arc<EndpointConfig>,
    shared: Arc<Shared>,
    health: Arc<Health>,
    metrics: EndpointMetrics,
    breaker: Breaker,
    ready: VecDeque<Pending>,
    waiting: BinaryHeap<Waiting>,
    seq: u64,
    timer: Option<(i64, SpawnHandle)>,
    in_flight: usize,
    backlog: Backlog,
    disabled: bool,
    retired: bool,
    draining: bool,
    drain_waiters: Vec<oneshot::Sender<()>>,
    /// A global attempt permit acquired while waiting for one (see `take_permit`).
    spare_permit: Option<OwnedSemaphorePermit>,
    /// A wait for a global permit is running.
    awaiting_permit: bool,
    /// Where to ask to hibernate when idle.
    dispatcher: Recipient<Hibernate>,
    /// `Deliver` messages handled (the dispatcher counts the ones it sent).
    received: u64,
    /// Bumped by every delivery, attempt and page: an idle check sees whether anything happened.
    activity: u64,
    idle_check: Option<SpawnHandle>,
}

impl EndpointActor {
    /// `has_backlog`: the store holds pending deliveries for it (start-up), so page them in.
    pub(crate) fn new(
        cfg: Arc<EndpointConfig>,
        shared: Arc<Shared>,
        health: Arc<Health>,
        label: WebhookLabel,
        has_backlog: bool,
        dispatcher: Recipient<Hibernate>,
    ) -> Self {
        let disabled = health.is_disabled();
        Self {
            breaker: Breaker::new(shared.settings.breaker.clone()),
            cfg,
            health,
            metrics: EndpointMetrics::new(label),
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            seq: 0,
            timer: None,
            in_flight: 0,
            backlog: if has_backlog && !disabled {
                Backlog { barrier_first: false, ..Backlog::reload() }
            } else {
                Backlog::none()
            },
            disabled,
            retired: false,
            draining: false,
            drain_waiters: Vec::new(),
            spare_permit: None,
            awaiting_permit: false,
            dispatcher,
            received: 0,
            activity: 0,
            idle_check: None,
            shared,
        }
    }

    /// Runs `f`; a panic inside it stops the actor so that the supervisor restarts it.
    fn guarded(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut Self, &mut Context<Self>)) {
        if catch_unwind(AssertUnwindSafe(|| f(self, ctx))).is_err() {
            tracing::error!(webhook = %self.cfg.id, "endpoint actor panicked; restarting it");
            ctx.stop();
        }
    }

    fn held(&self) -> usize {
        self.ready.len() + self.waiting.len() + self.in_flight
    }

    fn admit(&mut self, pending: Pending, now: i64) {
        if pending.due_ms <= now {
            self.ready.push_back(pending);
        } else {
            self.seq += 1;
            self.waiting.push(Waiting { due_ms: pending.due_ms, seq: self.seq, pending });
        }
    }

    fn accept(&mut self, items: Vec<Pending>, ctx: &mut Context<Self>) {
        self.received += 1;
        self.activity += 1;
        if self.retired || self.disabled {
            let reason = if self.retired { "webhook deleted" } else { "endpoint disabled" };
            self.metrics.failed.increment(items.len() as u64);
            self.metrics.pending.decrement(items.len() as f64);
            let failures = items.into_iter().map(|p| (p.id.into_string(), reason.to_string())).collect();
            self.shared.ledger.do_send(FailDeliveries(failures));
            return;
        }
        let window = self.shared.settings.delivery.window.max(1);
        let now = now_ms();
        for p in items {
            if self.backlog.in_store {
                if self.backlog.paging {
                    self.backlog.missed = true;
                }
                continue;
            }
            if self.held() >= window {
                self.backlog.in_store = true;
                self.backlog.next = PageStart::From(p.id.to_string());
                continue;
            }
            self.admit(p, now);
        }
        self.pump(ctx);
    }

    /// Starts every attempt the in-flight limit and the breaker allow, then re-arms the timer.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.disabled || self.retired {
            return;
        }
        let now = now_ms();
        while self.waiting.peek().is_some_and(|w| w.due_ms <= now) {
            let w = self.waiting.pop().expect("peeked");
            self.ready.push_back(w.pending);
        }
        while !self.draining && self.in_flight < self.cfg.max_in_flight && !self.ready.is_empty() {
            let probe = match self.breaker.permit(now, self.in_flight) {
                Permit::Flow => false,
                Permit::Probe => true,
                Permit::Wait { .. } => break,
            };
            let Some(permit) = self.take_permit(ctx) else { break };
            let p = self.ready.pop_front().expect("non-empty");
            if probe {
                self.breaker.probe_started();
            }
            self.start_attempt(p, probe, permit, ctx);
        }
        if self.ready.is_empty() {
            self.spare_permit = None; // nothing to use it for: give it back
        }
        self.maybe_page(ctx);
        self.rearm(ctx, now);
        self.schedule_idle_check(ctx);
    }

    /// Nothing in memory, in flight, in the store or failing: the actor could stop without loss.
    fn is_idle(&self) -> bool {
        self.ready.is_empty()
            && self.waiting.is_empty()
            && self.in_flight == 0
            && !self.backlog.in_store
            && !self.backlog.paging
            && !self.awaiting_permit
            && !self.draining
            && !self.retired
            && (self.disabled || (!self.breaker.is_open() && self.breaker.consecutive_failures() == 0))
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
                act.dispatcher.do_send(Hibernate { webhook_id: act.cfg.id.clone(), received: act.received });
            } else {
                act.schedule_idle_check(ctx);
            }
        }));
    }

    /// A global attempt permit, or `None` after arranging to pump again once one is free.
    fn take_permit(&mut self, ctx: &mut Context<Self>) -> Option<OwnedSemaphorePermit> {
        if let Some(p) = self.spare_permit.take() {
            return Some(p);
        }
        match self.shared.attempt_permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                if !self.awaiting_permit {
                    self.awaiting_permit = true;
                    let permits = self.shared.attempt_permits.clone();
                    ctx.spawn(async move { permits.acquire_owned().await.ok() }.into_actor(self).map(
                        |permit, act, ctx| {
                            act.awaiting_permit = false;
                            act.spare_permit = permit;
                            act.guarded(ctx, |act, ctx| act.pump(ctx));
                        },
                    ));
                }
                None
            }
        }
    }

    /// Keeps one timer armed for the earliest of: the next retry due, the next breaker probe.
    fn rearm(&mut self, ctx: &mut Context<Self>, now: i64) {
        if self.draining {
            return;
        }
        let mut next = self.waiting.peek().map(|w| w.due_ms);
        if !self.ready.is_empty()
            && let Permit::Wait { retry_at_ms } = self.breaker.permit(now, self.in_flight)
            && retry_at_ms != i64::MAX
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

    /// The headers of one attempt: the static ones plus id, timestamp and signatures.
    fn attempt_headers(&self, p: &Pending, timestamp: i64) -> Result<HeaderMap, String> {
        if let Some(reason) = &self.cfg.refused {
            return Err(reason.clone());
        }
        let env = &p.envelope;
        let mut headers = HeaderMap::with_capacity(self.cfg.headers.len() + 8);
        for (name, value) in &self.cfg.headers {
            headers.insert(name.clone(), value.clone());
        }
        let signature = signature_header(&self.cfg.keys, &env.id, timestamp, &env.body);
        let hv = |s: String| HeaderValue::from_str(&s).map_err(|e| format!("bad header value: {e}"));
        headers.insert(H_WEBHOOK_ID, env.h_id.clone());
        headers.insert(H_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(H_WEBHOOK_SIGNATURE, hv(signature)?);
        headers.insert(H_X_ID, env.h_id.clone());
        headers.insert(H_X_EVENT, env.h_event.clone());
        headers.insert(H_X_TIMESTAMP, env.h_timestamp.clone());
        headers.insert(H_X_SIGNATURE, hv(self.cfg.keys[0].sign_body_hex(&env.body))?);
        Ok(headers)
    }

    fn start_attempt(&mut self, p: Pending, probe: bool, permit: OwnedSemaphorePermit, ctx: &mut Context<Self>) {
        self.in_flight += 1;
        let attempt = p.attempts + 1;
        let started = SystemTime::now();
        let headers = self.attempt_headers(&p, signing::unix_seconds(started));
        let delivery = &self.shared.settings.delivery;
        let (timeout, limit) = (delivery.request_timeout, delivery.response_body_limit);
        let target = self.cfg.target.clone();
        let connector = self.shared.connector.clone();
        let pooled = if headers.is_ok() { client::checkout(&target.origin) } else { None };
        let body = p.envelope.body.clone();
        let fut = async move {
            let _permit = permit;
            match headers {
                Ok(h) => {
                    let (result, conn) = client::send(connector, target.clone(), pooled, h, body, timeout, limit).await;
                    if let Some(conn) = conn {
                        client::checkin(&target.origin, conn);
                    }
                    result
                }
                Err(reason) => AttemptResult {
                    outcome: AttemptOutcome::Refused(reason),
                    duration: Duration::ZERO,
                    response_body: None,
                },
            }
        };
        let started_ms = to_ms(started);
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.guarded(ctx, move |act, ctx| act.finish_attempt(p, attempt, started_ms, probe, res, ctx));
        }));
    }

    fn finish_attempt(
        &mut self,
        mut p: Pending,
        attempt: u32,
        started_ms: i64,
        probe: bool,
        res: AttemptResult,
        ctx: &mut Context<Self>,
    ) {
        self.in_flight -= 1;
        self.activity += 1;
        if self.retired || self.disabled {
            // The store already failed this delivery; only the drain bookkeeping remains.
            self.after_attempt(ctx);
            return;
        }
        let now = now_ms();
        let verdict = classify(&res.outcome);
        self.metrics.attempt_duration.record(res.duration.as_secs_f64());
        let (status_code, error) = match (&res.outcome, &verdict) {
            (AttemptOutcome::Response { status, .. }, Verdict::Delivered) => (Some(*status), None),
            (AttemptOutcome::Response { status, .. }, Verdict::Gone) => {
                (Some(*status), Some("HTTP 410 Gone".to_string()))
            }
            (AttemptOutcome::Response { status, .. }, Verdict::Retry { reason, .. } | Verdict::Fail { reason }) => {
                (Some(*status), Some(reason.clone()))
            }
            (_, Verdict::Retry { reason, .. } | Verdict::Fail { reason }) => (None, Some(reason.clone())),
            (_, _) => (None, None),
        };
        let record = AttemptRecord {
            attempt,
            at_ms: started_ms,
            duration_ms: res.duration.as_millis() as u64,
            status_code,
            error,
            response_body: res.response_body,
        };
        let delivery_id = p.id.to_string();
        let mut disable: Option<(String, &'static str)> = None;
        let next = if verdict == Verdict::Delivered {
            self.metrics.attempts_success.increment(1);
            self.breaker.on_success();
            self.health.record_success(now);
            self.health.set_state(EndpointState::Healthy);
            self.finished(&p, attempt, true, now);
            NextStep::Succeeded
        } else {
            self.metrics.attempts_failure.increment(1);
            self.metrics.label.error(error_type(&res.outcome));
            self.breaker.on_failure(now, probe);
            self.health.record_failure(now, self.breaker.consecutive_failures());
            let state = if self.breaker.is_open() { EndpointState::Paused } else { EndpointState::BackingOff };
            self.health.set_state(state);
            let retry_in = match &verdict {
                Verdict::Retry { not_before, .. } => self.cfg.retry.delay(attempt, rand::random::<f64>()).map(|d| {
                    let asked = not_before.unwrap_or_default().min(self.shared.settings.delivery.retry_after_cap);
                    d.max(asked)
                }),
                _ => None,
            };
            if verdict == Verdict::Gone {
                disable = Some(("endpoint answered 410 Gone".into(), "gone"));
            } else if self.breaker.should_disable(now) {
                disable = Some(("endpoint failing without a success for too long".into(), "failing"));
            }
            match retry_in {
                Some(delay) if disable.is_none() => {
                    let due = now + delay.as_millis() as i64;
                    p.attempts = attempt;
                    p.due_ms = due;
                    self.admit(p, now);
                    NextStep::RetryAt(due)
                }
                _ => {
                    self.finished(&p, attempt, false, now);
                    NextStep::Failed
                }
            }
        };
        let fence = Fence { webhook_id: self.cfg.id.clone(), epoch: 0 }; // TRANSITIONAL
        self.shared.ledger.do_send(AttemptDone(AttemptUpdate { fence, delivery_id, attempt: record, next }));
        if let Some((reason, kind)) = disable {
            self.disable(reason, kind, ctx);
        }
        self.after_attempt(ctx);
    }

    fn finished(&self, p: &Pending, attempts: u32, success: bool, now: i64) {
        self.metrics.attempts_per_delivery.record(attempts as f64);
        self.metrics.pending.decrement(1.0);
        if success {
            self.metrics.delivered.increment(1);
            let latency_ms = (now - p.envelope.created_at_ms).max(0);
            self.metrics.delivery_latency.record(latency_ms as f64 / 1000.0);
        } else {
            self.metrics.failed.increment(1);
        }
    }

    fn after_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.draining && self.in_flight == 0 {
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.pump(ctx);
    }

    fn disable(&mut self, reason: String, kind: &'static str, ctx: &mut Context<Self>) {
        if self.disabled {
            return;
        }
        tracing::warn!(webhook = %self.cfg.id, %reason, "disabling endpoint; its pending deliveries fail");
        self.disabled = true;
        self.health.set_state(EndpointState::Disabled);
        self.metrics.label.disabled(kind);
        self.ready.clear();
        self.waiting.clear();
        if let Some((_, h)) = self.timer.take() {
            ctx.cancel_future(h);
        }
        self.backlog = Backlog::none();
        let fence = Fence { webhook_id: self.cfg.id.clone(), epoch: 0 }; // TRANSITIONAL
        let op = DisableWebhook { fence, reason, at_ms: now_ms() };
        self.shared.ledger.do_send(DisableEndpoint { op, label: self.metrics.label.clone() });
    }

    /// Pages pending deliveries in from the store once the window is at most half full.
    fn maybe_page(&mut self, ctx: &mut Context<Self>) {
        if !self.backlog.in_store || self.backlog.paging || self.disabled || self.retired || self.draining {
            return;
        }
        let window = self.shared.settings.delivery.window.max(1);
        let held = self.held();
        if held > window / 2 {
            return;
        }
        let limit = (window - held).max(1) as u32;
        tracing::debug!(webhook = %self.cfg.id, limit, start = ?self.backlog.next, "paging in backlog");
        self.backlog.paging = true;
        self.backlog.missed = false;
        let barrier = std::mem::take(&mut self.backlog.barrier_first);
        let store = self.shared.store.clone();
        let ledger = self.shared.ledger.clone();
        let id = self.cfg.id.clone();
        let start = self.backlog.next.clone();
        let fut = async move {
            if barrier {
                let (tx, rx) = oneshot::channel();
                ledger.do_send(Barrier(tx));
                let _ = rx.await;
            }
            let _ = start; // TRANSITIONAL: load_due replaces load_pending
            store.load_due(&id, now_ms(), Vec::new(), limit).await.map(|page| page.items)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.guarded(ctx, move |act, ctx| act.on_page(res, limit, ctx));
        }));
    }

    fn on_page(
        &mut self,
        res: crate::store::StoreResult<Vec<crate::store::PendingDelivery>>,
        limit: u32,
        ctx: &mut Context<Self>,
    ) {
        self.backlog.paging = false;
        self.activity += 1;
        if self.disabled || self.retired {
            return;
        }
        match res {
            Ok(items) => {
                let n = items.len();
                tracing::debug!(webhook = %self.cfg.id, n, "paged in");
                if let Some(last) = items.last() {
                    self.backlog.next = PageStart::After(last.id.clone());
                }
                let now = now_ms();
                for d in items {
                    self.admit(Pending::from(d), now);
                }
                if n < limit as usize && !self.backlog.missed {
                    self.backlog.in_store = false;
                }
                self.pump(ctx);
            }
            Err(e) => {
                tracing::warn!(webhook = %self.cfg.id, error = %e, "could not page in backlog; retrying in 1s");
                ctx.run_later(Duration::from_secs(1), |act, ctx| act.guarded(ctx, |act, ctx| act.maybe_page(ctx)));
            }
        }
    }
}

/// The `error_type` label of a failed attempt.
fn error_type(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Response { status, .. } => match status {
            300..=399 => "http_3xx",
            429 => "http_429",
            400..=499 => "http_4xx",
            500..=599 => "http_5xx",
            _ => "http_other",
        },
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::Connect(_) => "connection",
        AttemptOutcome::Transport(_) => "transport",
        AttemptOutcome::Refused(_) => "refused",
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.retired {
            ctx.stop();
            return;
        }
        self.guarded(ctx, |act, ctx| act.pump(ctx));
    }
}

impl Supervised for EndpointActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        if self.retired {
            return;
        }
        self.health.record_restart();
        self.metrics.label.restarted();
        self.ready.clear();
        self.waiting.clear();
        self.timer = None;
        self.in_flight = 0;
        self.breaker.probe_abandoned();
        self.spare_permit = None;
        self.awaiting_permit = false;
        self.idle_check = None;
        self.backlog = if self.disabled { Backlog::none() } else { Backlog::reload() };
        for w in self.drain_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

impl Handler<Deliver> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| act.accept(msg.0, ctx));
    }
}

impl Handler<Reconfigure> for EndpointActor {
    type Result = ();
    fn handle(&mut self, msg: Reconfigure, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| {
            act.cfg = msg.config;
            if msg.reenable && act.disabled {
                act.disabled = false;
                act.breaker.reset(act.shared.settings.breaker.clone());
                act.health.clear_failures();
                act.health.set_state(EndpointState::Healthy);
                act.backlog = Backlog::reload();
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
        if self.in_flight == 0 {
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
        self.ready.clear();
        self.waiting.clear();
        ctx.stop();
    }
}

impl Handler<InjectPanic> for EndpointActor {
    type Result = ();
    fn handle(&mut self, _: InjectPanic, ctx: &mut Context<Self>) {
        self.guarded(ctx, |_, _| panic!("injected fault (test hook)"));
    }
}
