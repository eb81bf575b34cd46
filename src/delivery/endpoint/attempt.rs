//! An attempt's life in the endpoint actor: start it (headers and signatures, the exchange as a
//! future of the actor), turn its outcome into a decision, record it, and start the next.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use futures_util::FutureExt as _;

use super::decide::{AttemptContext, decide};
use super::permits::AttemptPermit;
use super::{EndpointActor, Persist, panic_text};
use crate::delivery::Pending;
use crate::delivery::client::{self, AttemptResult};
use crate::delivery::faults::Fault;
use crate::delivery::outbox::{self, LedgerOp};
use crate::model::{now_ms, to_ms};
use crate::retry::AttemptOutcome;
use crate::store::{AttemptRecord, AttemptUpdate, NextStep};

/// An attempt in flight: what its outcome is recorded against.
struct Started {
    pending: Pending,
    attempt: u32,
    started_ms: i64,
    probe: bool,
    /// The actor's generation when it started (see `EndpointActor::generation`).
    generation: u64,
}

impl EndpointActor {
    pub(super) fn start_attempt(&mut self, p: Pending, probe: bool, permit: AttemptPermit, ctx: &mut Context<Self>) {
        self.running += 1;
        self.current = Some(p.id.clone());
        let attempt = p.attempts + 1;
        let started = SystemTime::now();
        let headers = self.cfg.attempt_headers(&p, started);
        let delivery = &self.shared.settings.delivery;
        let (timeout, limit) = (delivery.request_timeout, delivery.response_body_limit);
        let target = self.cfg.target.clone();
        let connector = self.shared.connector.clone();
        let body = p.envelope.body.clone();
        let faults = &self.shared.faults;
        let inject = faults.take(&self.cfg.id, &Fault::AttemptPanic) || faults.poisons(&self.cfg.id, &body);
        let fut = async move {
            let _permit = permit;
            if inject {
                panic!("injected fault: attempt future");
            }
            match headers {
                Ok(h) => client::send(connector, target, h, body, timeout, limit).await,
                Err(reason) => AttemptResult {
                    outcome: AttemptOutcome::Refused(reason),
                    duration: Duration::ZERO,
                    response_body: None,
                },
            }
        };
        let started_ms = to_ms(started);
        let generation = self.generation;
        // A panic inside the attempt (client code, TLS, a bug) is caught here, not at the task
        // boundary where it would kill the actor for good.
        ctx.spawn(AssertUnwindSafe(fut).catch_unwind().into_actor(self).map(move |res, act, ctx| match res {
            Ok(res) => act.guarded(ctx, move |act, ctx| {
                act.current = Some(p.id.clone());
                act.finish_attempt(Started { pending: p, attempt, started_ms, probe, generation }, res, ctx)
            }),
            Err(panic) => {
                let text = panic_text(&*panic);
                act.crashed(p.id.clone(), &text);
                tracing::error!(node = %act.shared.node_id, webhook = %act.cfg.id, panic = %text, "attempt panicked; restarting the endpoint");
                ctx.stop();
            }
        }));
        self.current = None;
    }

    fn finish_attempt(&mut self, started: Started, res: AttemptResult, ctx: &mut Context<Self>) {
        let Started { pending: mut p, attempt, started_ms, probe, generation } = started;
        self.running -= 1;
        self.activity += 1;
        if self.disabled || generation != self.generation {
            // Started before a disable, which failed this delivery in the store: it is not tried
            // again, even if the endpoint was re-enabled since. A 2xx still counts: the receiver has it.
            if let AttemptOutcome::Response { status: 200..=299, .. } = res.outcome {
                self.record_late_success(&p, attempt, started_ms, &res);
            }
            self.window.finished(&p.id);
            self.after_attempt(ctx);
            return;
        }
        let now = now_ms();
        // A test delivery (`POST /v1/webhooks/{id}/test`) gets one attempt, never a retry.
        let test_retry;
        let retry = if p.envelope.h_event == crate::catalog::TEST_EVENT_TYPE {
            test_retry = crate::retry::RetryConfig { max_retries: 0, ..self.cfg.retry };
            &test_retry
        } else {
            &self.cfg.retry
        };
        let ctx_in = AttemptContext {
            retry,
            retry_after_cap: self.shared.settings.delivery.retry_after_cap,
            attempt,
            probes: p.probes,
            probe,
            now_ms: now,
            jitter_sample: rand::random::<f64>(),
        };
        let d = decide(&res.outcome, ctx_in, &mut self.breaker);
        self.metrics.attempt_duration.record(res.duration.as_secs_f64());
        match d.error_type {
            None => {
                self.metrics.attempts_success.increment(1);
                self.health.record_success(now);
            }
            Some(kind) => {
                self.metrics.attempts_failure.increment(1);
                self.metrics.label.error(kind);
                self.health.record_failure(now, self.breaker.consecutive_failures());
            }
        }
        let record = AttemptRecord {
            attempt,
            at_ms: started_ms,
            duration_ms: res.duration.as_millis() as u64,
            status_code: d.status_code,
            error: d.error,
            response_body: res.response_body,
        };
        let delivery_id = p.id.to_string();
        let probes = p.probes + u32::from(d.probe_failed);
        match d.next {
            NextStep::RetryAt(due) => {
                p.attempts = attempt;
                p.probes = probes;
                p.due_ms = due;
                self.window.retry(p, now);
            }
            NextStep::Succeeded | NextStep::Failed => {
                self.finished(&p, attempt, d.next == NextStep::Succeeded, now);
                self.window.finished(&p.id);
            }
        }
        outbox::put(
            &self.shared.ledger,
            LedgerOp::Attempt(AttemptUpdate {
                fence: self.fence.clone(),
                delivery_id,
                attempt: record,
                probes,
                next: d.next,
            }),
        );
        self.unflushed = true;
        match d.disable {
            Some(disable) => self.disable(disable, ctx),
            None => self.persist_health(Persist::Throttled),
        }
        self.after_attempt(ctx);
    }

    /// A 2xx for a delivery the store had failed meanwhile (its endpoint was disabled).
    fn record_late_success(&mut self, p: &Pending, attempt: u32, started_ms: i64, res: &AttemptResult) {
        let status_code = match res.outcome {
            AttemptOutcome::Response { status, .. } => Some(status),
            _ => None,
        };
        let record = AttemptRecord {
            attempt,
            at_ms: started_ms,
            duration_ms: res.duration.as_millis() as u64,
            status_code,
            error: None,
            response_body: res.response_body.clone(),
        };
        self.metrics.attempts_success.increment(1);
        self.metrics.delivered.increment(1);
        outbox::put(
            &self.shared.ledger,
            LedgerOp::Attempt(AttemptUpdate {
                fence: self.fence.clone(),
                delivery_id: p.id.to_string(),
                attempt: record,
                probes: p.probes,
                next: NextStep::Succeeded,
            }),
        );
        self.unflushed = true;
    }

    fn finished(&self, p: &Pending, attempts: u32, success: bool, now: i64) {
        self.metrics.attempts_per_delivery.record(attempts as f64);
        self.pending.add(-1);
        if success {
            self.metrics.delivered.increment(1);
            let latency_ms = (now - p.envelope.created_at_ms).max(0);
            self.metrics.delivery_latency.record(latency_ms as f64 / 1000.0);
        } else {
            self.metrics.failed.increment(1);
        }
    }

    fn after_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.draining && self.running == 0 {
            outbox::flush();
            for w in self.drain_waiters.drain(..) {
                let _ = w.send(());
            }
        }
        self.pump(ctx);
    }
}
