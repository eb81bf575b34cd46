//! PostgreSQL retention (part: retention): bounded prune batches, one node at a time.
//!
//! Every node runs a pruner; each batch is one short transaction that first takes a
//! transaction-level advisory lock of the schema without waiting. The node that gets it prunes
//! the batch, the others are told [`PruneOutcome::busy`] and try again at their next turn, so the
//! work is done once however many nodes there are, and by any node that is alive. The deletes
//! re-check their conditions on the row versions they lock, so a delivery re-queued meanwhile
//! (status no longer `failed`) is left alone. Space: autovacuum makes deleted rows reusable;
//! nothing is returned to the file system (that takes `VACUUM FULL`, which locks the tables).

use std::collections::BTreeSet;

use super::{Inner, col, execute, pg, pool_err, query, query_opt};
use crate::model::delivery_id_range;
use crate::store::{PruneBatch, PruneCounts, PruneOutcome, StorageSize, StoreResult, WalkedDelivery};

/// The schema's prune lock: one of PostgreSQL's two-key advisory locks (a key space apart from
/// the one-key lock of migrations), keyed by the schema.
const LOCK: &str = "SELECT pg_try_advisory_xact_lock(hashtext('servio_webhooks:prune'), hashtext(current_schema()))";

pub(super) async fn prune(inner: &Inner, b: &PruneBatch) -> StoreResult<PruneOutcome> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let mut out = PruneOutcome {
        events_cursor: b.events_after.clone(),
        deliveries_cursor: b.deliveries_after.clone(),
        ..PruneOutcome::default()
    };
    let locked: bool = match query_opt(&tx, LOCK, &[]).await? {
        Some(row) => col(&row, 0)?,
        None => false,
    };
    if !locked {
        out.busy = true;
        return Ok(out);
    }
    let limit = i64::from(b.limit.max(1));
    let mut pruned = PruneCounts::default();
    let mut events: BTreeSet<String> = BTreeSet::new();
    if b.walk_bound().is_some() {
        let after = b.deliveries_after.clone().unwrap_or_default();
        let rows = query(
            &tx,
            "SELECT id, event_id, status, completed_at, created_at FROM deliveries \
             WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit],
        )
        .await?;
        let mut walked = Vec::with_capacity(rows.len());
        for r in &rows {
            walked.push(WalkedDelivery {
                id: col(r, 0)?,
                event_id: col(r, 1)?,
                status: col(r, 2)?,
                completed_at_ms: col(r, 3)?,
                created_at_ms: col(r, 4)?,
            });
        }
        let walk = b.walk(walked);
        out.deliveries_cursor = walk.cursor;
        out.kept_until_ms = walk.kept_until_ms;
        out.more |= walk.more;
        if !walk.delete.is_empty() {
            let ids: Vec<String> = walk.delete.into_iter().map(|d| d.id).collect();
            // Re-checked on the locked row versions: a delivery re-queued since it was read
            // (status no longer `failed`) stays.
            let deleted = query(
                &tx,
                "DELETE FROM deliveries WHERE id = ANY($1::text[]) \
                 AND ((status = 'success' AND completed_at < $2) OR (status = 'failed' AND completed_at < $3)) \
                 RETURNING id, event_id, status",
                &[&ids, &b.success_before_ms, &b.failed_before_ms],
            )
            .await?;
            let mut gone: Vec<String> = Vec::with_capacity(deleted.len());
            for r in &deleted {
                gone.push(col(r, 0)?);
                events.insert(col(r, 1)?);
                pruned.count_delivery(&col::<String>(r, 2)?);
            }
            pruned.attempts +=
                execute(&tx, "DELETE FROM attempts WHERE delivery_id = ANY($1::text[])", &[&gone]).await?;
        }
    }
    let mut candidates: Vec<String> = events.iter().cloned().collect();
    if let Some(before) = b.success_before_ms {
        let after = b.events_after.clone().unwrap_or_default();
        let rows =
            query(&tx, "SELECT id, created_at FROM events WHERE id > $1 ORDER BY id LIMIT $2", &[&after, &limit])
                .await?;
        let mut looked = 0;
        for r in &rows {
            let (id, created_at): (String, i64) = (col(r, 0)?, col(r, 1)?);
            if created_at >= before {
                break;
            }
            looked += 1;
            if !events.contains(&id) {
                candidates.push(id.clone());
            }
            out.events_cursor = Some(id);
        }
        out.more |= looked >= limit;
    }
    if !candidates.is_empty() {
        let (lo, hi): (Vec<String>, Vec<String>) = candidates.iter().map(|e| delivery_id_range(e)).unzip();
        let unneeded: Vec<String> = query(
            &tx,
            "SELECT c.id FROM unnest($1::text[], $2::text[], $3::text[]) AS c(id, lo, hi) \
             WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.id >= c.lo COLLATE \"C\" AND d.id < c.hi COLLATE \"C\")",
            &[&candidates, &lo, &hi],
        )
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<StoreResult<_>>()?;
        if !unneeded.is_empty() {
            pruned.events += execute(&tx, "DELETE FROM events WHERE id = ANY($1::text[])", &[&unneeded]).await?;
            pruned.idempotency_keys +=
                execute(&tx, "DELETE FROM idempotency_keys WHERE event_id = ANY($1::text[])", &[&unneeded]).await?;
        }
    }
    tx.commit().await.map_err(pg)?;
    out.pruned = pruned;
    Ok(out)
}

/// The schema's tables with their indexes and TOAST, in bytes.
pub(super) async fn size(inner: &Inner) -> StoreResult<StorageSize> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let row = query_opt(
        &client,
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'",
        &[],
    )
    .await?;
    let bytes: i64 = match row {
        Some(r) => col(&r, 0)?,
        None => 0,
    };
    Ok(StorageSize { bytes: bytes.max(0) as u64, free_bytes: None })
}
