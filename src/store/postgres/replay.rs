//! PostgreSQL side of replay: re-queueing one delivery, and a recovery's row and batches.
//!
//! Lock order, shared with [`super::registry`] and [`super::write`]: the webhook row (`FOR KEY
//! SHARE`, so a delete waits for the re-queue or the re-queue sees it gone; `FOR NO KEY UPDATE`
//! to start a recovery, so two starts do not race), then the recovery row, then deliveries. Each
//! re-queue announces the ids to the webhook's owner (`q|` notices) in the same transaction.

use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::types::ToSql;

use super::{Inner, col, execute, notify, pg, pool_err, query, query_opt};
use crate::store::common::{RawRecovery, requeue_failed_set};
use crate::store::*;

/// Re-queues one delivery, due at `now_ms` (see [`Store::retry_delivery`]).
pub(super) async fn retry_delivery(inner: &Inner, id: &str, now_ms: i64) -> StoreResult<RetryOutcome> {
    let was_failed = {
        let mut client = inner.pool.get().await.map_err(pool_err)?;
        let tx = client.transaction().await.map_err(pg)?;
        let Some(row) = query_opt(&tx, "SELECT status, webhook_id FROM deliveries WHERE id = $1", &[&id]).await? else {
            return Ok(RetryOutcome::NotFound);
        };
        let (status, webhook_id): (String, String) = (col(&row, 0)?, col(&row, 1)?);
        if status == "success" {
            return Ok(RetryOutcome::Succeeded);
        }
        let webhook =
            query_opt(&tx, "SELECT disabled_at FROM webhooks WHERE id = $1 FOR KEY SHARE", &[&webhook_id]).await?;
        match webhook {
            None => return Ok(RetryOutcome::WebhookGone),
            Some(w) if col::<Option<i64>>(&w, 0)?.is_some() => return Ok(RetryOutcome::WebhookDisabled),
            Some(_) => {}
        }
        let sql = format!("UPDATE deliveries SET {} WHERE id = $1 AND status = 'failed'", requeue_failed_set("$2"));
        let mut n = execute(&tx, &sql, &[&id, &now_ms]).await?;
        let was_failed = n == 1;
        if n == 0 {
            n = execute(
                &tx,
                "UPDATE deliveries SET next_attempt_at = $2 WHERE id = $1 AND status = 'pending'",
                &[&id, &now_ms],
            )
            .await?;
        }
        if n == 0 {
            // It succeeded between the two reads.
            return Ok(RetryOutcome::Succeeded);
        }
        announce(&tx, inner, &webhook_id, &[id.to_string()], was_failed).await?;
        tx.commit().await.map_err(pg)?;
        was_failed
    };
    match super::read::get_delivery(inner, id).await? {
        Some((delivery, _)) => Ok(RetryOutcome::Requeued { delivery: Box::new(delivery), was_failed }),
        None => Ok(RetryOutcome::NotFound),
    }
}

/// Tells the owner of `webhook_id` (on commit) that these deliveries are due again.
async fn announce(
    tx: &Transaction<'_>,
    inner: &Inner,
    webhook_id: &str,
    ids: &[String],
    were_failed: bool,
) -> StoreResult<()> {
    for payload in notify::requeued_payloads(&inner.node_id, webhook_id, ids, were_failed) {
        notify::send(tx, &inner.channel, &payload).await?;
    }
    Ok(())
}

/// A recovery row with its node's liveness on the database clock.
const RECOVERY_SELECT: &str = "SELECT r.webhook_id, r.since, r.until, r.queued, r.requeued, r.state, r.started_at, \
     r.finished_at, r.node_id, coalesce(n.expires_at > (extract(epoch from clock_timestamp()) * 1000)::bigint, false) \
     FROM recoveries r LEFT JOIN nodes n ON n.id = r.node_id";

fn raw_recovery(r: &tokio_postgres::Row) -> StoreResult<(String, RawRecovery)> {
    Ok((
        col(r, 0)?,
        RawRecovery {
            since: col(r, 1)?,
            until: col(r, 2)?,
            queued: col(r, 3)?,
            requeued: col(r, 4)?,
            state: col(r, 5)?,
            started_at: col(r, 6)?,
            finished_at: col(r, 7)?,
            node_id: col(r, 8)?,
            node_live: col(r, 9)?,
        },
    ))
}

async fn current<C: GenericClient>(c: &C, webhook_id: &str) -> StoreResult<Option<RecoveryRecord>> {
    let row = query_opt(c, &format!("{RECOVERY_SELECT} WHERE r.webhook_id = $1"), &[&webhook_id]).await?;
    row.as_ref().map(|r| raw_recovery(r).and_then(|(_, raw)| raw.decode())).transpose()
}

/// Starts a recovery (see [`Store::start_recovery`]).
pub(super) async fn start_recovery(
    inner: &Inner,
    webhook_id: &str,
    node_id: &str,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> StoreResult<RecoveryStart> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let webhook =
        query_opt(&tx, "SELECT disabled_at FROM webhooks WHERE id = $1 FOR NO KEY UPDATE", &[&webhook_id]).await?;
    match webhook {
        None => return Ok(RecoveryStart::NotFound),
        Some(w) if col::<Option<i64>>(&w, 0)?.is_some() => return Ok(RecoveryStart::WebhookDisabled),
        Some(_) => {}
    }
    if let Some(r) = current(&tx, webhook_id).await?
        && r.state == RecoveryState::Running
    {
        return Ok(RecoveryStart::Running(r));
    }
    let queued: i64 = col(
        &query_opt(
            &tx,
            "SELECT count(*) FROM deliveries WHERE webhook_id = $1 AND status = 'failed' \
             AND created_at >= $2 AND created_at < $3",
            &[&webhook_id, &since_ms, &until_ms],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("count returned no row".into()))?,
        0,
    )?;
    execute(
        &tx,
        "INSERT INTO recoveries (webhook_id, since, until, queued, requeued, state, started_at, finished_at, \
         node_id, cursor) VALUES ($1, $2, $3, $4, 0, 'running', $5, NULL, $6, '') \
         ON CONFLICT (webhook_id) DO UPDATE SET since = excluded.since, until = excluded.until, \
         queued = excluded.queued, requeued = 0, state = 'running', started_at = excluded.started_at, \
         finished_at = NULL, node_id = excluded.node_id, cursor = ''",
        &[&webhook_id, &since_ms, &until_ms, &queued, &now_ms, &node_id],
    )
    .await?;
    let started = current(&tx, webhook_id)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the recovery just written is missing".into()))?;
    tx.commit().await.map_err(pg)?;
    Ok(RecoveryStart::Started(started))
}

/// Re-queues a recovery's next batch (see [`Store::recover_batch`]).
pub(super) async fn recover_batch(
    inner: &Inner,
    webhook_id: &str,
    node_id: &str,
    limit: u32,
    now_ms: i64,
) -> StoreResult<RecoverBatch> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let done = RecoverBatch { ids: vec![], finished: true };
    if query_opt(&tx, "SELECT 1 FROM webhooks WHERE id = $1 FOR KEY SHARE", &[&webhook_id]).await?.is_none() {
        return Ok(done);
    }
    let Some(row) = query_opt(
        &tx,
        "SELECT since, until, cursor FROM recoveries WHERE webhook_id = $1 AND state = 'running' AND node_id = $2 \
         FOR UPDATE",
        &[&webhook_id, &node_id],
    )
    .await?
    else {
        return Ok(done);
    };
    let (since, until, cursor): (i64, i64, String) = (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    let sql = format!(
        "WITH picked AS (SELECT id FROM deliveries WHERE webhook_id = $2 AND status = 'failed' \
         AND created_at >= $3 AND created_at < $4 AND id > $5 ORDER BY id LIMIT $6 FOR UPDATE) \
         UPDATE deliveries d SET {} FROM picked WHERE d.id = picked.id RETURNING d.id",
        requeue_failed_set("$1")
    );
    let params: [&(dyn ToSql + Sync); 6] = [&now_ms, &webhook_id, &since, &until, &cursor, &i64::from(limit)];
    let mut ids =
        query(&tx, &sql, &params).await?.iter().map(|r| col::<String>(r, 0)).collect::<StoreResult<Vec<_>>>()?;
    ids.sort();
    let finished = ids.len() < limit as usize;
    let last = ids.last().cloned().unwrap_or(cursor);
    execute(
        &tx,
        "UPDATE recoveries SET requeued = requeued + $2, cursor = $3, \
         state = CASE WHEN $4 THEN 'done' ELSE state END, \
         finished_at = CASE WHEN $4 THEN $5 ELSE finished_at END WHERE webhook_id = $1",
        &[&webhook_id, &(ids.len() as i64), &last, &finished, &now_ms],
    )
    .await?;
    if !ids.is_empty() {
        announce(&tx, inner, webhook_id, &ids, true).await?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(RecoverBatch { ids, finished })
}

/// Marks a node's running recoveries interrupted (see [`Store::interrupt_recoveries`]).
pub(super) async fn interrupt_recoveries(inner: &Inner, node_id: &str, now_ms: i64) -> StoreResult<u64> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    execute(
        &client,
        "UPDATE recoveries SET state = 'interrupted', finished_at = $2 WHERE node_id = $1 AND state = 'running'",
        &[&node_id, &now_ms],
    )
    .await
}

/// Sets each view's recovery.
pub(super) async fn attach<C: GenericClient>(c: &C, views: &mut [WebhookView]) -> StoreResult<()> {
    if views.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = views.iter().map(|v| v.record.id.as_str()).collect();
    let rows = query(c, &format!("{RECOVERY_SELECT} WHERE r.webhook_id = ANY($1::text[])"), &[&ids]).await?;
    for row in &rows {
        let (id, raw) = raw_recovery(row)?;
        if let Some(v) = views.iter_mut().find(|v| v.record.id == id) {
            v.recovery = Some(raw.decode()?);
        }
    }
    Ok(())
}
