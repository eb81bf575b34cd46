//! Retention: the background pruner that keeps the database bounded.
//!
//! Every `WEBHOOKS_PRUNE_INTERVAL` (1 minute) the pruner asks the store for one bounded batch
//! after another ([`crate::store::Store::prune`]: successful deliveries older than
//! `WEBHOOKS_RETENTION`, failed ones older than `WEBHOOKS_RETENTION_FAILED`, their attempt log,
//! and the events no delivery needs any more with their idempotency keys) for as long as batches
//! come back full, pausing between them, then gives freed pages back to the file system (SQLite)
//! and records the database's size. Pending deliveries are never pruned.
//!
//! It is a task of the subsystem: started by [`crate::Webhooks::start`], stopped by
//! [`crate::Webhooks::shutdown`] (between two batches) before the store closes. Every node runs
//! one; on PostgreSQL each batch takes the schema's prune lock without waiting, so one node prunes
//! at a time and the others skip their turn (see `store/postgres/prune.rs`).
//! [`Pruner::prune_now`] runs a cycle at once (tests, hosts with their own schedule).
//!
//! - [`plan`]: the pure part: cutoffs and whether a cycle goes on.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::{mpsc, oneshot, watch};

use self::plan::{Floor, MAX_RECLAIMS_PER_CYCLE, Next, PAUSE_BETWEEN_BATCHES, Plan, RECLAIM_BYTES};
use crate::config::RetentionSettings;
use crate::metrics::names;
use crate::model::now_ms;
use crate::store::{PruneCounts, StorageSize, Store, StoreError};

/// What one prune cycle did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Rows deleted, by kind.
    pub pruned: PruneCounts,
    /// Batches (transactions) it took.
    pub batches: u32,
    /// Another node was pruning (PostgreSQL): this cycle stopped there.
    pub busy: bool,
    /// The database's size after the cycle.
    pub size: StorageSize,
}

/// A request to the pruner task.
struct RunNow {
    /// The time to prune as of (tests move it forward instead of waiting for days).
    now_ms: i64,
    reply: oneshot::Sender<Result<PruneReport, StoreError>>,
}

/// The handle the subsystem keeps: asks for cycles and stops the task.
pub struct Pruner {
    requests: mpsc::Sender<RunNow>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Pruner {
    /// Starts the pruner task on the current runtime. The first cycle runs one interval after
    /// the start (a restart loop must not turn into a prune loop).
    pub fn start(store: Arc<dyn Store>, settings: RetentionSettings, node_id: &str) -> Self {
        let (requests, rx) = mpsc::channel(8);
        let (stop, stopped) = watch::channel(false);
        let task = Task {
            store,
            plan: Plan::new(&settings),
            cursor: None,
            floor: Floor::default(),
            metrics: Metrics::new(node_id),
            stopped,
        };
        let handle = actix_web::rt::spawn(task.run(rx, settings.interval));
        Self { requests, stop, task: std::sync::Mutex::new(Some(handle)) }
    }

    /// Runs a whole cycle now, as of `now_ms`, and reports it; queued behind a cycle in progress.
    pub async fn prune_now(&self, now_ms: i64) -> Result<PruneReport, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.requests.send(RunNow { now_ms, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops the task (a batch in progress finishes; the cycle stops after it) and waits for it.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The metric handles, resolved once.
struct Metrics {
    pruned: [(&'static str, Counter); 5],
    size: Gauge,
    last: Gauge,
}

impl Metrics {
    fn new(node: &str) -> Self {
        let kind = |k: &'static str| (k, counter!(names::PRUNED_ROWS, "node" => node.to_string(), "kind" => k));
        Self {
            pruned: [
                kind("delivery_success"),
                kind("delivery_failed"),
                kind("attempt"),
                kind("event"),
                kind("idempotency_key"),
            ],
            size: gauge!(names::DATABASE_SIZE, "node" => node.to_string()),
            last: gauge!(names::LAST_PRUNE, "node" => node.to_string()),
        }
    }

    fn count(&self, pruned: &PruneCounts) {
        for ((_, n), (_, counter)) in pruned.by_kind().iter().zip(&self.pruned) {
            counter.increment(*n);
        }
    }
}

struct Task {
    store: Arc<dyn Store>,
    plan: Plan,
    /// Where the sweep for events without deliveries resumes (it only moves forward; a restart
    /// starts it over once).
    cursor: Option<String>,
    /// Where the walk over deliveries starts, and until when (see [`Floor`]).
    floor: Floor,
    metrics: Metrics,
    stopped: watch::Receiver<bool>,
}

impl Task {
    async fn run(mut self, mut requests: mpsc::Receiver<RunNow>, interval: Duration) {
        let mut stopped = self.stopped.clone();
        let mut next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => break,
                request = requests.recv() => {
                    let Some(RunNow { now_ms, reply }) = request else { break };
                    let _ = reply.send(self.cycle(now_ms).await);
                }
                _ = tokio::time::sleep_until(next) => {
                    match self.cycle(now_ms()).await {
                        Ok(r) if r.pruned.total() > 0 => tracing::debug!(
                            rows = r.pruned.total(), batches = r.batches, size_bytes = r.size.bytes, "pruned"
                        ),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "pruning failed; trying again at the next interval"),
                    }
                    next = tokio::time::Instant::now() + interval;
                }
            }
        }
    }

    fn stopping(&self) -> bool {
        *self.stopped.borrow()
    }

    /// Batches until caught up (or stopped, or another node is on it), then reclaims space.
    async fn cycle(&mut self, now_ms: i64) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        // The walk over deliveries goes on after what earlier cycles kept until the earliest of
        // it may go, and then starts from the first again; the event sweep goes on from where
        // it was.
        let mut deliveries_after = self.floor.begin(now_ms);
        while let Some(batch) = self.plan.batch(now_ms, deliveries_after.take(), self.cursor.clone()) {
            let outcome = self.store.prune(batch).await?;
            report.batches += 1;
            report.busy |= outcome.busy;
            report.pruned += outcome.pruned;
            self.metrics.count(&outcome.pruned);
            self.cursor = outcome.events_cursor.clone();
            self.floor.advance(outcome.deliveries_cursor.clone(), outcome.kept_until_ms);
            deliveries_after = outcome.deliveries_cursor.clone();
            if outcome.pruned.total() > 0 {
                // What this batch freed goes back at once (SQLite), so a long catch-up never
                // lets the file grow in between.
                report.size = self.store.reclaim(RECLAIM_BYTES).await?;
            }
            if plan::after(&outcome) == Next::Done || self.stopping() {
                break;
            }
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
        // Then what is still free, bounded; a file that cannot shrink (not converted to
        // incremental vacuum) stops this at once, its free pages not going down.
        let mut free = u64::MAX;
        for _ in 0..MAX_RECLAIMS_PER_CYCLE {
            report.size = self.store.reclaim(RECLAIM_BYTES).await?;
            let now_free = report.size.free_bytes.unwrap_or(0);
            if now_free == 0 || now_free >= free || self.stopping() {
                break;
            }
            free = now_free;
            tokio::time::sleep(PAUSE_BETWEEN_BATCHES).await;
        }
        self.metrics.size.set(report.size.bytes as f64);
        self.metrics.last.set(crate::model::now_ms() as f64 / 1000.0);
        Ok(report)
    }
}
