//! `LedgerActor`: every write of the delivery path, grouped into few transactions.
//!
//! Group commit: while one batch is being committed, new operations accumulate; when the commit
//! returns, everything that arrived meanwhile goes out as the next batch. Under load a batch holds
//! hundreds of operations for one fsync; when idle, a lone operation is committed at once.
//! The flush starts from a self-notification, which actix delivers only after the mailbox has been
//! drained, so even the first batch takes every message that is already queued.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use metrics::{counter, gauge, histogram};
use tokio::sync::oneshot;

use super::dispatcher::{Committed, PublishTicket};
use super::write_health::{FlushNews, WriteHealth};
use crate::metrics::{PendingGauge, WebhookLabel, names};
use crate::model::now_ms;
use crate::store::{BatchOutcome, DisableWebhook, Fence, HealthWrite, NewEvent, Store, StoreResult, WriteBatch};

/// Persist an event and its deliveries; the dispatcher hears back through [`Committed`].
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PersistEvent {
    pub(crate) event: NewEvent,
    pub(crate) ticket: PublishTicket,
}

/// Writes under these leases were refused by the store: their epoch has moved on.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Fenced(pub(crate) Vec<Fence>);

/// Disable a webhook and fail its pending deliveries (sent through the [`super::outbox`]).
pub(crate) struct DisableEndpoint {
    pub(crate) op: DisableWebhook,
    pub(crate) label: WebhookLabel,
    /// The webhook's pending gauge: the failed deliveries leave it once committed.
    pub(crate) pending: PendingGauge,
}

/// Answered once everything sent to the ledger before it is committed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Barrier(pub(crate) oneshot::Sender<()>);

/// Tells the ledger where commit notifications go (the dispatcher and the node actor start after
/// the ledger): publishes to the dispatcher, refused (fenced) writes to the node.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct SetListeners {
    pub(crate) committed: Recipient<Committed>,
    pub(crate) fenced: Recipient<Fenced>,
}

/// Shutdown, after the last barrier: stop the actor.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Stop;

/// Starts the commit scheduled for `.0`; one brought forward since (scheduled for another time)
/// is ignored.
#[derive(Message)]
#[rtype(result = "()")]
struct StartFlush(Instant);

/// The group-commit writer.
pub(crate) struct LedgerActor {
    store: Arc<dyn Store>,
    /// This node's id, for metric labels.
    node: Arc<str>,
    /// Shared state of the write side (see [`WriteHealth`]).
    writes: Arc<WriteHealth>,
    /// Operations of the commit running now.
    in_flight: usize,
    /// `webhook_ledger_pending_operations{node}`.
    pending_gauge: metrics::Gauge,
    dispatcher: Option<Recipient<Committed>>,
    fenced: Option<Recipient<Fenced>>,
    buf: WriteBatch,
    tickets: Vec<PublishTicket>,
    labels: Vec<(WebhookLabel, PendingGauge)>,
    barriers: Vec<oneshot::Sender<()>>,
    flushing: bool,
    /// When the next commit is scheduled to start, if it is (a [`StartFlush`] for another time
    /// was scheduled before the commit was brought forward).
    flush_at: Option<Instant>,
    /// A failed commit is being retried after a delay: nothing brings it forward.
    retrying: bool,
    retry_delay: Duration,
    /// Least time between the starts of two commits (see [`crate::config::Settings::commit_interval`]).
    commit_interval: Duration,
    last_commit: Instant,
    /// Operations the last commit carried (see [`commit_spacing`]).
    last_batch: usize,
}

/// A batch this large is committed without waiting out the commit interval.
const FULL_BATCH: usize = 4096;

/// A commit carrying this many operations or more means sustained load: see [`commit_spacing`].
const BUSY_BATCH: usize = 64;

/// The most the spacing of commits grows under load, as a multiple of the commit interval.
const MAX_SPACING_FACTOR: u32 = 4;

/// Least time from the start of one commit to the start of the next, given the interval, the
/// operations the last commit carried and whether anyone waits for the next commit (a publish,
/// or an endpoint that pages in once its outcomes are committed).
///
/// A commit costs a lot besides its rows (the WAL pages of the hot index pages, an fsync, the
/// wake-ups of every actor waiting for it). So once commits carry [`BUSY_BATCH`] operations or
/// more, and nobody waits (only attempt outcomes and health), the spacing grows in proportion, up
/// to [`MAX_SPACING_FACTOR`] × the interval, and each commit carries more. A waiting publish
/// always gets the plain interval: its caller (and, in a closed loop, the next publish) waits for
/// that commit, so stretching it would cap the publish rate instead of saving CPU (BENCHMARKS.md,
/// "Commit cadence"). So does a waiting page-in: an endpoint draining a backlog from the store
/// pages only after its outcomes are committed, and stretched commits left its window empty
/// between pages.
pub(crate) fn commit_spacing(interval: Duration, last_batch: usize, someone_waits: bool) -> Duration {
    if someone_waits || last_batch < BUSY_BATCH {
        return interval;
    }
    let factor = (last_batch as f64 / BUSY_BATCH as f64).min(f64::from(MAX_SPACING_FACTOR));
    interval.mul_f64(factor)
}

impl LedgerActor {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        commit_interval: Duration,
        node: Arc<str>,
        writes: Arc<WriteHealth>,
    ) -> Self {
        Self {
            store,
            pending_gauge: gauge!(names::LEDGER_PENDING, "node" => node.to_string()),
            node,
            writes,
            in_flight: 0,
            dispatcher: None,
            fenced: None,
            buf: WriteBatch::default(),
            tickets: Vec::new(),
            labels: Vec::new(),
            barriers: Vec::new(),
            flushing: false,
            flush_at: None,
            retrying: false,
            retry_delay: Duration::from_millis(50),
            commit_interval,
            last_commit: Instant::now(),
            last_batch: 0,
        }
    }

    fn kick(&mut self, ctx: &mut Context<Self>) {
        let buffered = self.buf.len() + self.in_flight;
        self.writes.set_buffered(buffered);
        self.pending_gauge.set(buffered as f64);
        if self.flushing || self.retrying {
            return;
        }
        // Publishes wait for their commit, and so does an endpoint paging in (its barrier).
        let someone_waits = !self.tickets.is_empty() || !self.barriers.is_empty();
        let spacing = commit_spacing(self.commit_interval, self.last_batch, someone_waits);
        let now = Instant::now();
        let at = if self.buf.len() >= FULL_BATCH { now } else { (self.last_commit + spacing).max(now) };
        if self.flush_at.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        // First schedule, or a publish brings a stretched commit forward (to an earlier time).
        self.flush_at = Some(at);
        if at <= now {
            ctx.notify(StartFlush(at));
        } else {
            // Under load, commits this close together would rewrite the same pages again and
            // again; waiting a moment lets one commit carry more.
            ctx.notify_later(StartFlush(at), at - now);
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        self.flush_at = None;
        self.retrying = false;
        if self.flushing {
            return;
        }
        // After a failed commit whose publishes were all refused there may be nothing left to
        // retry: the empty batch is then the probe that lets publishes in again (half-open: the
        // next real write is the test, and a failure refuses them again).
        if self.buf.is_empty() && !self.writes.is_failing() {
            for b in self.barriers.drain(..) {
                let _ = b.send(());
            }
            return;
        }
        self.flushing = true;
        self.last_commit = Instant::now();
        let batch = Arc::new(std::mem::take(&mut self.buf));
        let tickets = std::mem::take(&mut self.tickets);
        let labels = std::mem::take(&mut self.labels);
        let barriers = std::mem::take(&mut self.barriers);
        let store = self.store.clone();
        let size = batch.len();
        self.last_batch = size;
        self.in_flight = size;
        self.writes.flush_started(now_ms());
        let started = Instant::now();
        let fut = {
            let batch = batch.clone();
            async move { store.apply(batch).await }
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.flushing = false;
            act.in_flight = 0;
            match act.writes.flush_ended(now_ms(), res.as_ref().err().map(|e| e.to_string())) {
                FlushNews::Quiet => {}
                FlushNews::StartedFailing => {
                    tracing::error!(node = %act.node, "the store refuses writes: publishes get 503 and attempts wait until it takes them again")
                }
                FlushNews::Recovered { failing_for } => {
                    tracing::info!(node = %act.node, failing_ms = failing_for.as_millis() as u64, "the store takes writes again")
                }
                FlushNews::Stalled { took } => {
                    tracing::warn!(node = %act.node, took_ms = took.as_millis() as u64, "a commit stalled: publishes were refused while it ran")
                }
            }
            histogram!(names::LEDGER_BATCH_SIZE).record(size as f64);
            histogram!(names::LEDGER_COMMIT_DURATION).record(started.elapsed().as_secs_f64());
            act.committed(batch, tickets, labels, barriers, res, ctx);
        }));
    }

    fn committed(
        &mut self,
        batch: Arc<WriteBatch>,
        tickets: Vec<PublishTicket>,
        labels: Vec<(WebhookLabel, PendingGauge)>,
        barriers: Vec<oneshot::Sender<()>>,
        res: StoreResult<BatchOutcome>,
        ctx: &mut Context<Self>,
    ) {
        match res {
            Ok(outcome) => {
                self.retry_delay = Duration::from_millis(50);
                for ((_, n), (label, pending)) in outcome.disabled.iter().zip(&labels) {
                    label.deliveries_failed(*n);
                    pending.add(-(*n as i64));
                }
                if !outcome.fenced.is_empty() {
                    counter!(names::FENCED_WRITES, "node" => self.node.to_string())
                        .increment(outcome.fenced.len() as u64);
                    match &self.fenced {
                        Some(f) => f.do_send(Fenced(outcome.fenced)),
                        None => tracing::error!("fenced writes but no node actor is attached"),
                    }
                }
                if !tickets.is_empty() {
                    self.notify_dispatcher(Committed { batch, tickets, result: Ok(outcome.events) });
                }
                for b in barriers {
                    let _ = b.send(());
                }
                self.kick(ctx);
            }
            Err(e) => {
                counter!(names::LEDGER_COMMIT_ERRORS).increment(1);
                tracing::warn!(error = %e, "ledger commit failed; publishes in it are refused, the rest is retried");
                if !tickets.is_empty() {
                    self.notify_dispatcher(Committed { batch: batch.clone(), tickets, result: Err(e) });
                }
                // Everything but the refused publishes goes back in front of what arrived since.
                let failed = Arc::try_unwrap(batch).unwrap_or_else(|shared| WriteBatch {
                    events: Vec::new(),
                    attempts: shared.attempts.clone(),
                    failures: shared.failures.clone(),
                    disables: shared.disables.clone(),
                    health: shared.health.clone(),
                });
                let newer = std::mem::take(&mut self.buf);
                let mut health = failed.health;
                for h in newer.health {
                    upsert_health(&mut health, h);
                }
                self.buf = WriteBatch {
                    events: newer.events,
                    attempts: failed.attempts.into_iter().chain(newer.attempts).collect(),
                    failures: failed.failures.into_iter().chain(newer.failures).collect(),
                    disables: failed.disables.into_iter().chain(newer.disables).collect(),
                    health,
                };
                self.labels = labels.into_iter().chain(std::mem::take(&mut self.labels)).collect();
                self.barriers = barriers.into_iter().chain(std::mem::take(&mut self.barriers)).collect();
                let delay = self.retry_delay;
                self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(5));
                self.retrying = true;
                ctx.run_later(delay, |act, ctx| act.flush(ctx));
            }
        }
    }

    fn notify_dispatcher(&self, msg: Committed) {
        match &self.dispatcher {
            Some(d) => d.do_send(msg),
            None => tracing::error!("ledger committed events but no dispatcher is attached"),
        }
    }
}

impl Actor for LedgerActor {
    type Context = Context<Self>;
}

impl Handler<PersistEvent> for LedgerActor {
    type Result = ();
    fn handle(&mut self, msg: PersistEvent, ctx: &mut Context<Self>) {
        self.buf.events.push(msg.event);
        self.tickets.push(msg.ticket);
        self.kick(ctx);
    }
}

impl Handler<super::outbox::LedgerOps> for LedgerActor {
    type Result = ();
    fn handle(&mut self, msg: super::outbox::LedgerOps, ctx: &mut Context<Self>) {
        use super::outbox::LedgerOp;
        for op in msg.0 {
            match op {
                LedgerOp::Attempt(u) => self.buf.attempts.push(u),
                LedgerOp::Fail(f) => self.buf.failures.extend(f),
                LedgerOp::Health(h) => upsert_health(&mut self.buf.health, h),
                LedgerOp::Disable(d) => {
                    self.buf.disables.push(d.op);
                    self.labels.push((d.label, d.pending));
                }
                LedgerOp::Barrier(b) => self.barriers.push(b),
            }
        }
        self.kick(ctx);
    }
}

/// Keeps one health record per webhook: the latest.
fn upsert_health(health: &mut Vec<HealthWrite>, h: HealthWrite) {
    match health.iter_mut().find(|x| x.fence.webhook_id == h.fence.webhook_id) {
        Some(x) => *x = h,
        None => health.push(h),
    }
}

impl Handler<Barrier> for LedgerActor {
    type Result = ();
    fn handle(&mut self, msg: Barrier, ctx: &mut Context<Self>) {
        self.barriers.push(msg.0);
        self.kick(ctx);
    }
}

impl Handler<SetListeners> for LedgerActor {
    type Result = ();
    fn handle(&mut self, msg: SetListeners, _: &mut Context<Self>) {
        self.dispatcher = Some(msg.committed);
        self.fenced = Some(msg.fenced);
    }
}

impl Handler<StartFlush> for LedgerActor {
    type Result = ();
    fn handle(&mut self, msg: StartFlush, ctx: &mut Context<Self>) {
        if self.flush_at == Some(msg.0) {
            self.flush(ctx);
        }
    }
}

impl Handler<Stop> for LedgerActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_spaced_by_the_interval_until_they_carry_a_busy_batch_then_further_up_to_a_cap() {
        let i = Duration::from_millis(5);
        assert_eq!(commit_spacing(i, 0, false), i);
        assert_eq!(commit_spacing(i, BUSY_BATCH - 1, false), i, "moderate load keeps the interval");
        assert_eq!(commit_spacing(i, BUSY_BATCH, false), i);
        assert_eq!(commit_spacing(i, 2 * BUSY_BATCH, false), Duration::from_millis(10));
        assert_eq!(commit_spacing(i, 3 * BUSY_BATCH, false), Duration::from_millis(15));
        assert_eq!(commit_spacing(i, 100 * BUSY_BATCH, false), Duration::from_millis(20), "capped");
        assert_eq!(commit_spacing(Duration::ZERO, 10_000, false), Duration::ZERO, "zero stays zero");
    }

    #[test]
    fn a_waiting_publish_or_page_in_gets_the_plain_interval_however_busy_the_last_commit_was() {
        let i = Duration::from_millis(5);
        assert_eq!(commit_spacing(i, 100 * BUSY_BATCH, true), i);
        assert_eq!(commit_spacing(i, 0, true), i);
    }
}
