//! Replaying deliveries: retry one delivery now, recover a window of a webhook's failed ones.
//!
//! The store does the re-queueing ([`crate::store::Store::retry_delivery`],
//! [`crate::store::Store::recover_batch`]: pending, due now, a fresh retry budget for failed
//! ones) and announces it to the webhook's owner on commit (on PostgreSQL); this node's own
//! dispatcher is told directly (`Requeue`). A recovery's batches run here, in the background,
//! on the node that accepted it (`run_recovery`): bounded batches, one transaction each, with a
//! pause between them so that publishes and attempt outcomes interleave.
//!
//! A node that stops mid-way leaves its recovery `interrupted` (the next start of that node id
//! marks it so, and any node reads a running recovery of a node that is no longer live as
//! interrupted): what was re-queued stays queued, the rest stays failed, and a new recover of
//! the same window picks up exactly the rest.

pub mod rfc3339;

use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;

use crate::delivery::dispatcher::Requeue;
use crate::model::now_ms;
use crate::store::{Store, StoreError};

/// Deliveries re-queued per statement (and transaction) of a recovery.
pub const RECOVER_BATCH: u32 = 500;

/// Pause between two batches of a recovery: publishes and attempt outcomes go between them.
const BATCH_PAUSE: Duration = Duration::from_millis(10);

/// Longest wait before trying a batch again after a store error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the batches of the recovery `node_id` started for `webhook_id` until none is left (or it
/// is no longer this node's to run, or the store closes), telling this node's dispatcher of each
/// batch. Store errors are retried with backoff.
pub(crate) async fn run_recovery(
    store: Arc<dyn Store>,
    dispatcher: Recipient<Requeue>,
    webhook_id: String,
    node_id: String,
    batch: u32,
) {
    let mut backoff = Duration::from_millis(100);
    let mut total = 0usize;
    loop {
        match store.recover_batch(&webhook_id, &node_id, batch.max(1), now_ms()).await {
            Ok(b) => {
                backoff = Duration::from_millis(100);
                total += b.ids.len();
                if !b.ids.is_empty() {
                    dispatcher.do_send(Requeue { webhook_id: webhook_id.clone(), ids: b.ids, were_failed: true });
                }
                if b.finished {
                    tracing::info!(node = %node_id, webhook = %webhook_id, requeued = total, "recovery finished");
                    return;
                }
                tokio::time::sleep(BATCH_PAUSE).await;
            }
            Err(StoreError::Closed) => {
                tracing::info!(node = %node_id, webhook = %webhook_id, requeued = total, "recovery stopped: store closed");
                return;
            }
            Err(e) => {
                tracing::warn!(node = %node_id, webhook = %webhook_id, error = %e, retry_in = ?backoff, "recovery batch failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}
