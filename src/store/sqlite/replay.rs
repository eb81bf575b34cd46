//! SQLite side of replay: re-queueing one delivery, and a recovery's row and batches. Writes run
//! on the writer thread inside a group transaction; [`recoveries_of`] on a read connection.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{json_list, unavailable};
use crate::store::common::{RawRecovery, requeue_failed_set};
use crate::store::*;

/// Re-queues one delivery, due at `now_ms` (see [`Store::retry_delivery`]).
pub(super) fn retry_delivery(tx: &Transaction<'_>, id: &str, now_ms: i64) -> StoreResult<RetryOutcome> {
    let found: Option<(String, Option<i64>, bool)> = tx
        .prepare_cached(
            "SELECT d.status, w.disabled_at, w.id IS NOT NULL FROM deliveries d \
             LEFT JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?1",
        )
        .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(unavailable)?;
    let Some((status, disabled_at, webhook_exists)) = found else { return Ok(RetryOutcome::NotFound) };
    if status == "success" {
        return Ok(RetryOutcome::Succeeded);
    }
    if !webhook_exists {
        return Ok(RetryOutcome::WebhookGone);
    }
    if disabled_at.is_some() {
        return Ok(RetryOutcome::WebhookDisabled);
    }
    let sql = if status == "failed" {
        format!("UPDATE deliveries SET {} WHERE id = ?1 AND status = 'failed'", requeue_failed_set("?2"))
    } else {
        "UPDATE deliveries SET next_attempt_at = ?2 WHERE id = ?1 AND status = 'pending'".to_string()
    };
    tx.prepare_cached(&sql).and_then(|mut s| s.execute(params![id, now_ms])).map_err(unavailable)?;
    match super::read::get_delivery(tx, id)? {
        Some((delivery, _)) => {
            Ok(RetryOutcome::Requeued { delivery: Box::new(delivery), was_failed: status == "failed" })
        }
        None => Ok(RetryOutcome::NotFound),
    }
}

/// The recovery row of a webhook, with whether its node is live at `now_ms`.
fn current(tx: &Connection, webhook_id: &str, now_ms: i64) -> StoreResult<Option<RecoveryRecord>> {
    let raw = tx
        .prepare_cached(&format!("{RECOVERY_SELECT} WHERE r.webhook_id = ?1"))
        .and_then(|mut s| s.query_row(params![webhook_id, now_ms], raw_recovery).optional())
        .map_err(unavailable)?;
    raw.map(|(_, r)| r.decode()).transpose()
}

/// Starts a recovery (see [`Store::start_recovery`]).
pub(super) fn start_recovery(
    tx: &Transaction<'_>,
    webhook_id: &str,
    node_id: &str,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> StoreResult<RecoveryStart> {
    let disabled: Option<Option<i64>> = tx
        .prepare_cached("SELECT disabled_at FROM webhooks WHERE id = ?1")
        .and_then(|mut s| s.query_row([webhook_id], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    match disabled {
        None => return Ok(RecoveryStart::NotFound),
        Some(Some(_)) => return Ok(RecoveryStart::WebhookDisabled),
        Some(None) => {}
    }
    if let Some(r) = current(tx, webhook_id, now_ms)?
        && r.state == RecoveryState::Running
    {
        return Ok(RecoveryStart::Running(r));
    }
    let queued: i64 = tx
        .prepare_cached(
            "SELECT count(*) FROM deliveries WHERE webhook_id = ?1 AND status = 'failed' \
             AND created_at >= ?2 AND created_at < ?3",
        )
        .and_then(|mut s| s.query_row(params![webhook_id, since_ms, until_ms], |r| r.get(0)))
        .map_err(unavailable)?;
    tx.prepare_cached(
        "INSERT OR REPLACE INTO recoveries (webhook_id, since, until, queued, requeued, state, started_at, \
         finished_at, node_id, cursor) VALUES (?1, ?2, ?3, ?4, 0, 'running', ?5, NULL, ?6, '')",
    )
    .and_then(|mut s| s.execute(params![webhook_id, since_ms, until_ms, queued, now_ms, node_id]))
    .map_err(unavailable)?;
    let started = current(tx, webhook_id, now_ms)?
        .ok_or_else(|| StoreError::Corrupt("the recovery just written is missing".into()))?;
    Ok(RecoveryStart::Started(started))
}

/// Re-queues a recovery's next batch (see [`Store::recover_batch`]).
pub(super) fn recover_batch(
    tx: &Transaction<'_>,
    webhook_id: &str,
    node_id: &str,
    limit: u32,
    now_ms: i64,
) -> StoreResult<RecoverBatch> {
    let row: Option<(i64, i64, String)> = tx
        .prepare_cached(
            "SELECT since, until, cursor FROM recoveries r WHERE webhook_id = ?1 AND state = 'running' \
             AND node_id = ?2 AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = r.webhook_id)",
        )
        .and_then(|mut s| s.query_row([webhook_id, node_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
        .map_err(unavailable)?;
    let Some((since, until, cursor)) = row else { return Ok(RecoverBatch { ids: vec![], finished: true }) };
    let mut ids = tx
        .prepare_cached(&format!(
            "UPDATE deliveries SET {} WHERE id IN (SELECT id FROM deliveries \
             WHERE webhook_id = ?2 AND status = 'failed' AND created_at >= ?3 AND created_at < ?4 AND id > ?5 \
             ORDER BY id LIMIT ?6) RETURNING id",
            requeue_failed_set("?1")
        ))
        .and_then(|mut s| {
            s.query_map(params![now_ms, webhook_id, since, until, cursor, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)?;
    ids.sort();
    let finished = ids.len() < limit as usize;
    let last = ids.last().cloned().unwrap_or(cursor);
    tx.prepare_cached(
        "UPDATE recoveries SET requeued = requeued + ?2, cursor = ?3, \
         state = CASE WHEN ?4 THEN 'done' ELSE state END, finished_at = CASE WHEN ?4 THEN ?5 ELSE finished_at END \
         WHERE webhook_id = ?1",
    )
    .and_then(|mut s| s.execute(params![webhook_id, ids.len() as i64, last, finished, now_ms]))
    .map_err(unavailable)?;
    Ok(RecoverBatch { ids, finished })
}

/// Marks a node's running recoveries interrupted (see [`Store::interrupt_recoveries`]).
pub(super) fn interrupt_recoveries(tx: &Transaction<'_>, node_id: &str, now_ms: i64) -> StoreResult<u64> {
    let n = tx
        .prepare_cached(
            "UPDATE recoveries SET state = 'interrupted', finished_at = ?2 WHERE node_id = ?1 AND state = 'running'",
        )
        .and_then(|mut s| s.execute(params![node_id, now_ms]))
        .map_err(unavailable)?;
    Ok(n as u64)
}

/// A recovery row with its node's liveness: `?1` binds where it is used, `?2` is now.
const RECOVERY_SELECT: &str = "SELECT r.webhook_id, r.since, r.until, r.queued, r.requeued, r.state, r.started_at, \
     r.finished_at, r.node_id, coalesce(n.expires_at > ?2, 0) FROM recoveries r LEFT JOIN nodes n ON n.id = r.node_id";

fn raw_recovery(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, RawRecovery)> {
    Ok((
        r.get(0)?,
        RawRecovery {
            since: r.get(1)?,
            until: r.get(2)?,
            queued: r.get(3)?,
            requeued: r.get(4)?,
            state: r.get(5)?,
            started_at: r.get(6)?,
            finished_at: r.get(7)?,
            node_id: r.get(8)?,
            node_live: r.get(9)?,
        },
    ))
}

/// The recoveries of the given webhooks, as `(webhook id, recovery)`.
pub(super) fn recoveries_of(c: &Connection, ids: &[String], now_ms: i64) -> StoreResult<Vec<(String, RecoveryRecord)>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let raws = c
        .prepare_cached(&format!("{RECOVERY_SELECT} WHERE r.webhook_id IN (SELECT value FROM json_each(?1))"))
        .and_then(|mut s| s.query_map(params![json_list(ids), now_ms], raw_recovery)?.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    raws.into_iter().map(|(id, r)| Ok((id, r.decode()?))).collect()
}

/// Sets each view's recovery.
pub(super) fn attach(c: &Connection, views: &mut [WebhookView]) -> StoreResult<()> {
    let ids: Vec<String> = views.iter().map(|v| v.record.id.clone()).collect();
    let found = recoveries_of(c, &ids, crate::model::now_ms())?;
    for (id, r) in found {
        if let Some(v) = views.iter_mut().find(|v| v.record.id == id) {
            v.recovery = Some(r);
        }
    }
    Ok(())
}
