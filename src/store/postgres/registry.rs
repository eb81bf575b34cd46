//! PostgreSQL registry writes. Lock order, shared with [`super::write`]: leases, then the
//! registry clock, then webhook rows; the clock's row lock makes commit order revision order.

use super::{Inner, execute, notify, pg, pool_err, query_opt};
use crate::model::{WebhookRecord, now_ms};
use crate::store::common::{DELETED_REASON, EncodedWebhook, TOMBSTONE_TTL_MS};
use crate::store::*;

/// Moves the registry revision on by one and returns it (locking the clock row until commit).
pub(super) async fn next_revision(tx: &deadpool_postgres::Transaction<'_>) -> StoreResult<i64> {
    let row = query_opt(tx, "UPDATE registry_clock SET revision = revision + 1 WHERE id = 1 RETURNING revision", &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("registry_clock has no row".into()))?;
    super::col(&row, 0)
}

pub(super) async fn upsert_webhook(inner: &Inner, w: &WebhookRecord) -> StoreResult<(Upserted, u64)> {
    let enc = EncodedWebhook::new(w)?;
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let revision = next_revision(&tx).await?;
    let previous = query_opt(&tx, "SELECT disabled_at FROM webhooks WHERE id = $1 FOR NO KEY UPDATE", &[&w.id]).await?;
    let was_disabled = match &previous {
        Some(row) => super::col::<Option<i64>>(row, 0)?.is_some(),
        None => false,
    };
    let max_in_flight = w.max_in_flight.map(i64::from);
    execute(
        &tx,
        "INSERT INTO webhooks (id, url, secret, events, headers, retry_config, max_in_flight, description, \
         disabled_at, disabled_reason, created_at, updated_at, revision) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $11) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events, \
         headers = excluded.headers, retry_config = excluded.retry_config, max_in_flight = excluded.max_in_flight, \
         description = excluded.description, disabled_at = NULL, disabled_reason = NULL, \
         updated_at = excluded.updated_at, revision = excluded.revision",
        &[
            &w.id,
            &w.url,
            &w.secret,
            &enc.events,
            &enc.headers,
            &enc.retry,
            &max_in_flight,
            &w.description,
            &w.created_at_ms,
            &w.updated_at_ms,
            &revision,
        ],
    )
    .await?;
    // The new row carries a later revision than any tombstone of the id.
    execute(&tx, "DELETE FROM webhook_deletions WHERE id = $1", &[&w.id]).await?;
    if was_disabled {
        // Re-enabled: the stored health starts over.
        execute(
            &tx,
            "UPDATE webhook_state SET state = 'healthy', consecutive_failures = 0, failing_since = NULL, \
             last_success_at = NULL, last_failure_at = NULL, breaker_probe_at = NULL, breaker_cooldown_ms = NULL, \
             updated_at = $2 WHERE webhook_id = $1",
            &[&w.id, &now_ms()],
        )
        .await?;
    }
    notify::send(&tx, &inner.channel, &notify::registry_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)?;
    let upserted = if previous.is_some() { Upserted::Replaced } else { Upserted::Created };
    Ok((upserted, revision.max(0) as u64))
}

pub(super) async fn delete_webhook(inner: &Inner, id: &str, at_ms: i64) -> StoreResult<bool> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let revision = next_revision(&tx).await?;
    // Waits for publishes holding the row (FOR KEY SHARE) to commit, so their deliveries are
    // failed below; later publishes find the row gone and drop theirs.
    if query_opt(&tx, "SELECT id FROM webhooks WHERE id = $1 FOR UPDATE", &[&id]).await?.is_none() {
        tx.rollback().await.map_err(pg)?;
        return Ok(false);
    }
    execute(&tx, "DELETE FROM webhooks WHERE id = $1", &[&id]).await?;
    execute(
        &tx,
        "UPDATE deliveries SET status = 'failed', completed_at = $3, last_error = $2, next_attempt_at = NULL \
         WHERE webhook_id = $1 AND status = 'pending'",
        &[&id, &DELETED_REASON, &at_ms],
    )
    .await?;
    execute(&tx, "DELETE FROM webhook_state WHERE webhook_id = $1", &[&id]).await?;
    // replay: its recovery goes with it
    execute(&tx, "DELETE FROM recoveries WHERE webhook_id = $1", &[&id]).await?;
    execute(
        &tx,
        "INSERT INTO webhook_deletions (id, revision, deleted_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, deleted_at = excluded.deleted_at",
        &[&id, &revision, &at_ms],
    )
    .await?;
    // Forget old tombstones, remembering how far that went (callers behind it get everything).
    execute(
        &tx,
        "WITH pruned AS (DELETE FROM webhook_deletions WHERE deleted_at < $1 RETURNING revision) \
         UPDATE registry_clock SET pruned_through = greatest(pruned_through, (SELECT max(revision) FROM pruned)) \
         WHERE id = 1 AND EXISTS (SELECT 1 FROM pruned)",
        &[&(at_ms - TOMBSTONE_TTL_MS)],
    )
    .await?;
    notify::send(&tx, &inner.channel, &notify::registry_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)?;
    Ok(true)
}
