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

/// Fails a webhook's pending deliveries with `reason` (disabled or deleted); returns how many.
pub(super) async fn fail_pending_of_webhook(
    tx: &deadpool_postgres::Transaction<'_>,
    webhook_id: &str,
    reason: &str,
    at_ms: i64,
) -> StoreResult<u64> {
    execute(
        tx,
        "UPDATE deliveries SET status = 'failed', completed_at = $3, last_error = $2, next_attempt_at = NULL \
         WHERE webhook_id = $1 AND status = 'pending'",
        &[&webhook_id, &reason, &at_ms],
    )
    .await
}

/// A re-enabled webhook's stored health starts over.
async fn reset_health(tx: &deadpool_postgres::Transaction<'_>, webhook_id: &str) -> StoreResult<()> {
    execute(
        tx,
        "UPDATE webhook_state SET state = 'healthy', consecutive_failures = 0, failing_since = NULL, \
         last_success_at = NULL, last_failure_at = NULL, breaker_probe_at = NULL, breaker_cooldown_ms = NULL, \
         updated_at = $2 WHERE webhook_id = $1",
        &[&webhook_id, &now_ms()],
    )
    .await?;
    Ok(())
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
         disabled_at, disabled_reason, created_at, updated_at, revision, tenant, rate_limit_per_second, ordered, previous_secret, previous_secret_until) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL, $9, $10, $11, $12, $13, $14, $15, $16) \
         ON CONFLICT (id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events, \
         headers = excluded.headers, retry_config = excluded.retry_config, max_in_flight = excluded.max_in_flight, \
         description = excluded.description, disabled_at = NULL, disabled_reason = NULL, \
         updated_at = excluded.updated_at, revision = excluded.revision, tenant = excluded.tenant, \
         rate_limit_per_second = excluded.rate_limit_per_second, ordered = excluded.ordered, \
         previous_secret = excluded.previous_secret, previous_secret_until = excluded.previous_secret_until",
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
            &w.tenant,
            &w.rate_limit_per_second,
            &w.ordered,
            &w.previous_secret,
            &w.previous_secret_until_ms,
        ],
    )
    .await?;
    // The new row carries a later revision than any tombstone of the id.
    execute(&tx, "DELETE FROM webhook_deletions WHERE id = $1", &[&w.id]).await?;
    if was_disabled {
        // Re-enabled: the stored health starts over.
        reset_health(&tx, &w.id).await?;
    }
    notify::send(&tx, &inner.channel, &notify::registry_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)?;
    let upserted = if previous.is_some() { Upserted::Replaced } else { Upserted::Created };
    Ok((upserted, revision.max(0) as u64))
}

// ----- lifecycle -----

/// [`Store::update_webhook`]: the whole registration, disabled state included, if its revision is
/// still `expected`. The row lock waits for publishes holding it (`FOR KEY SHARE`), so a disable
/// fails the deliveries they commit.
pub(super) async fn update_webhook(inner: &Inner, w: &WebhookRecord, expected: u64) -> StoreResult<Option<u64>> {
    let enc = EncodedWebhook::new(w)?;
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let revision = next_revision(&tx).await?;
    let expected = i64::try_from(expected).unwrap_or(-1);
    let Some(row) = query_opt(
        &tx,
        "SELECT disabled_at FROM webhooks WHERE id = $1 AND revision = $2 FOR UPDATE",
        &[&w.id, &expected],
    )
    .await?
    else {
        tx.rollback().await.map_err(pg)?;
        return Ok(None);
    };
    let was_disabled = super::col::<Option<i64>>(&row, 0)?.is_some();
    let max_in_flight = w.max_in_flight.map(i64::from);
    execute(
        &tx,
        "UPDATE webhooks SET url = $2, secret = $3, events = $4, headers = $5, retry_config = $6, \
         max_in_flight = $7, description = $8, disabled_at = $9, disabled_reason = $10, updated_at = $11, \
         revision = $12, previous_secret = $13, previous_secret_until = $14, tenant = $15, \
         rate_limit_per_second = $16, ordered = $17 WHERE id = $1",
        &[
            &w.id,
            &w.url,
            &w.secret,
            &enc.events,
            &enc.headers,
            &enc.retry,
            &max_in_flight,
            &w.description,
            &w.disabled_at_ms,
            &w.disabled_reason,
            &w.updated_at_ms,
            &revision,
            &w.previous_secret,
            &w.previous_secret_until_ms,
            &w.tenant,
            &w.rate_limit_per_second,
            &w.ordered,
        ],
    )
    .await?;
    match (was_disabled, w.disabled_at_ms) {
        (false, Some(at)) => {
            // Disabled: its pending deliveries fail, as with an automatic disable.
            let reason = w.disabled_reason.as_deref().unwrap_or("endpoint disabled");
            fail_pending_of_webhook(&tx, &w.id, reason, at).await?;
        }
        (true, None) => {
            // Re-enabled: the stored health starts over.
            reset_health(&tx, &w.id).await?;
        }
        _ => {}
    }
    notify::send(&tx, &inner.channel, &notify::registry_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)?;
    Ok(Some(revision.max(0) as u64))
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
    fail_pending_of_webhook(&tx, id, DELETED_REASON, at_ms).await?;
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

// ----- tenants part: API tokens -----

pub(super) async fn create_api_token(inner: &Inner, t: &ApiTokenRecord) -> StoreResult<()> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    execute(
        &client,
        "INSERT INTO api_tokens (id, tenant, secret_hash, description, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&t.id, &t.tenant, &t.secret_hash, &t.description, &t.created_at_ms],
    )
    .await?;
    Ok(())
}

pub(super) async fn delete_api_token(inner: &Inner, id: &str) -> StoreResult<bool> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    Ok(execute(&client, "DELETE FROM api_tokens WHERE id = $1", &[&id]).await? > 0)
}
