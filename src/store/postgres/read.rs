//! PostgreSQL reads, on pooled connections.

use bytes::Bytes;
use tokio_postgres::IsolationLevel;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{Inner, col, pg, pool_err, query, query_opt};
use crate::model::{DeliveryStatus, WebhookRecord};
use crate::store::common::{RawHealth, RawWebhook};
use crate::store::*;

const WEBHOOK_COLUMNS: &str = "w.id, w.url, w.secret, w.events, w.headers, w.retry_config, w.max_in_flight, \
     w.description, w.disabled_at, w.disabled_reason, w.created_at, w.updated_at, w.revision";

/// A registration with its health (columns 13..=19) and lease (20..=22).
const VIEW_SELECT: &str = "SELECT w.id, w.url, w.secret, w.events, w.headers, w.retry_config, w.max_in_flight, \
     w.description, w.disabled_at, w.disabled_reason, w.created_at, w.updated_at, w.revision, \
     s.state, s.consecutive_failures, s.failing_since, s.last_success_at, s.last_failure_at, s.breaker_probe_at, \
     s.breaker_cooldown_ms, l.node_id, l.epoch, coalesce(n.expires_at, 0) \
     FROM webhooks w LEFT JOIN webhook_state s ON s.webhook_id = w.id \
     LEFT JOIN leases l ON l.webhook_id = w.id AND l.node_id IS NOT NULL \
     LEFT JOIN nodes n ON n.id = l.node_id";

fn webhook(r: &Row) -> StoreResult<WebhookRecord> {
    RawWebhook {
        id: col(r, 0)?,
        url: col(r, 1)?,
        secret: col(r, 2)?,
        events: col(r, 3)?,
        headers: col(r, 4)?,
        retry: col(r, 5)?,
        max_in_flight: col(r, 6)?,
        description: col(r, 7)?,
        disabled_at: col(r, 8)?,
        disabled_reason: col(r, 9)?,
        created_at: col(r, 10)?,
        updated_at: col(r, 11)?,
        revision: col(r, 12)?,
    }
    .decode()
}

/// The seven `webhook_state` columns starting at `at`.
fn raw_health(r: &Row, at: usize) -> StoreResult<RawHealth> {
    Ok(RawHealth {
        state: col(r, at)?,
        consecutive_failures: col(r, at + 1)?,
        failing_since: col(r, at + 2)?,
        last_success_at: col(r, at + 3)?,
        last_failure_at: col(r, at + 4)?,
        breaker_probe_at: col(r, at + 5)?,
        breaker_cooldown_ms: col(r, at + 6)?,
    })
}

fn view(r: &Row) -> StoreResult<WebhookView> {
    let health = raw_health(r, 13)?;
    let owner = match col::<Option<String>>(r, 20)? {
        Some(node_id) => {
            Some(LeaseInfo { node_id, epoch: col::<i64>(r, 21)?.max(0) as u64, expires_at_ms: col(r, 22)? })
        }
        None => None,
    };
    Ok(WebhookView { record: webhook(r)?, health: health.decode()?, owner, recovery: None })
}

pub(super) async fn get_webhook(inner: &Inner, id: &str) -> StoreResult<Option<WebhookView>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let row = query_opt(&client, &format!("{VIEW_SELECT} WHERE w.id = $1"), &[&id]).await?;
    let mut views: Vec<WebhookView> = row.as_ref().map(view).transpose()?.into_iter().collect();
    super::replay::attach(&client, &mut views).await?;
    Ok(views.pop())
}

pub(super) async fn list_webhooks(inner: &Inner, after: String, limit: u32) -> StoreResult<Vec<WebhookView>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let rows =
        query(&client, &format!("{VIEW_SELECT} WHERE w.id > $1 ORDER BY w.id LIMIT $2"), &[&after, &i64::from(limit)])
            .await?;
    let mut views = rows.iter().map(view).collect::<StoreResult<Vec<_>>>()?;
    super::replay::attach(&client, &mut views).await?;
    Ok(views)
}

pub(super) async fn registry_changes(inner: &Inner, since: u64) -> StoreResult<RegistryChanges> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    // One snapshot for the revision and the rows. The clock's row lock orders commits by
    // revision, so the snapshot holds every change up to the revision it reads.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(pg)?;
    let clock = query_opt(&tx, "SELECT revision, pruned_through FROM registry_clock WHERE id = 1", &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt("registry_clock has no row".into()))?;
    let (revision, pruned_through): (i64, i64) = (col(&clock, 0)?, col(&clock, 1)?);
    let since_i = i64::try_from(since).unwrap_or(i64::MAX);
    // Behind the pruned tombstones, or ahead of this store (a different or restored database).
    let full = since == 0 || since_i < pruned_through || since_i > revision;
    let (upserted, deleted) = if full {
        let rows = query(&tx, &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w ORDER BY w.id"), &[]).await?;
        (rows.iter().map(webhook).collect::<StoreResult<Vec<_>>>()?, Vec::new())
    } else {
        let rows = query(
            &tx,
            &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE w.revision > $1 ORDER BY w.id"),
            &[&since_i],
        )
        .await?;
        let gone = query(&tx, "SELECT id FROM webhook_deletions WHERE revision > $1 ORDER BY id", &[&since_i]).await?;
        (
            rows.iter().map(webhook).collect::<StoreResult<Vec<_>>>()?,
            gone.iter().map(|r| col(r, 0)).collect::<StoreResult<Vec<String>>>()?,
        )
    };
    tx.commit().await.map_err(pg)?;
    Ok(RegistryChanges { revision: revision.max(0) as u64, full, upserted, deleted })
}

pub(super) async fn load_due(
    inner: &Inner,
    webhook_id: &str,
    now_ms: i64,
    exclude: &[String],
    limit: u32,
) -> StoreResult<DuePage> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let limit = i64::from(limit);
    let due_params: [&(dyn ToSql + Sync); 4] = [&webhook_id, &now_ms, &exclude, &limit];
    let next_params: [&(dyn ToSql + Sync); 2] = [&webhook_id, &now_ms];
    // Both statements go out at once (pipelined on the connection).
    let (rows, next) = tokio::try_join!(
        query(
            &client,
            "SELECT d.id, d.event_id, e.event_type, e.payload, e.timestamp, d.attempts, d.next_attempt_at, \
             d.created_at, d.probes FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= $2 \
             AND NOT (d.id = ANY($3::text[])) ORDER BY d.next_attempt_at, d.id LIMIT $4",
            &due_params,
        ),
        query_opt(
            &client,
            "SELECT min(next_attempt_at) FROM deliveries \
             WHERE webhook_id = $1 AND status = 'pending' AND next_attempt_at > $2",
            &next_params,
        ),
    )?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(PendingDelivery {
                id: col(r, 0)?,
                event_id: col(r, 1)?,
                event_type: col(r, 2)?,
                payload: Bytes::from(col::<Vec<u8>>(r, 3)?),
                timestamp: col(r, 4)?,
                attempts: col::<i32>(r, 5)?.max(0) as u32,
                probes: col::<i32>(r, 8)?.max(0) as u32,
                next_attempt_at_ms: col(r, 6)?,
                created_at_ms: col(r, 7)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    let next_due_at_ms = match next {
        Some(r) => col(&r, 0)?,
        None => None,
    };
    Ok(DuePage { items, next_due_at_ms })
}

pub(super) async fn due_summary(inner: &Inner, ids: &[String]) -> StoreResult<Vec<PendingSummary>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let rows = query(
        &client,
        "SELECT x.id, (SELECT min(d.next_attempt_at) FROM deliveries d \
         WHERE d.webhook_id = x.id AND d.status = 'pending') \
         FROM unnest($1::text[]) WITH ORDINALITY AS x(id, n) ORDER BY x.n",
        &[&ids],
    )
    .await?;
    rows.iter().map(|r| Ok(PendingSummary { webhook_id: col(r, 0)?, earliest_due_ms: col(r, 1)? })).collect()
}

const HEALTH_COLUMNS: &str = "webhook_id, state, consecutive_failures, failing_since, last_success_at, \
     last_failure_at, breaker_probe_at, breaker_cooldown_ms";

pub(super) async fn stored_health(inner: &Inner, ids: &[String]) -> StoreResult<Vec<(String, StoredHealth)>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let rows = query(
        &client,
        &format!("SELECT {HEALTH_COLUMNS} FROM webhook_state WHERE webhook_id = ANY($1::text[]) ORDER BY webhook_id"),
        &[&ids],
    )
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        if let Some(h) = raw_health(r, 1)?.decode()? {
            out.push((col(r, 0)?, h));
        }
    }
    Ok(out)
}

pub(super) async fn pending_counts(inner: &Inner, ids: &[String]) -> StoreResult<Vec<(String, u64)>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let rows = query(
        &client,
        "SELECT webhook_id, count(*) FROM deliveries WHERE status = 'pending' AND webhook_id = ANY($1::text[]) \
         GROUP BY webhook_id ORDER BY webhook_id",
        &[&ids],
    )
    .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col::<i64>(r, 1)?.max(0) as u64))).collect()
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.event_type, e.payload, d.status, d.attempts, \
     d.created_at, d.last_attempt_at, d.next_attempt_at, d.completed_at, d.last_status_code, d.last_error, \
     d.last_duration_ms, d.last_response_body";

fn delivery(r: &Row) -> StoreResult<DeliveryRecord> {
    let status: String = col(r, 5)?;
    let payload: Vec<u8> = col(r, 4)?;
    Ok(DeliveryRecord {
        id: col(r, 0)?,
        webhook_id: col(r, 1)?,
        event_id: col(r, 2)?,
        event_type: col(r, 3)?,
        payload: String::from_utf8(payload).map_err(crate::store::common::corrupt)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: col::<i32>(r, 6)?.max(0) as u32,
        created_at_ms: col(r, 7)?,
        last_attempt_at_ms: col(r, 8)?,
        next_attempt_at_ms: if status == "pending" { col(r, 9)? } else { None },
        completed_at_ms: col(r, 10)?,
        last_status_code: col::<Option<i32>>(r, 11)?.map(|c| c as u16),
        last_error: col(r, 12)?,
    })
}

pub(super) async fn get_delivery(inner: &Inner, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let params: [&(dyn ToSql + Sync); 1] = [&id];
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = $1");
    let (row, log) = tokio::try_join!(
        query_opt(&client, &sql, &params,),
        query(
            &client,
            "SELECT attempt, at, duration_ms, status_code, error, response_body FROM attempts \
             WHERE delivery_id = $1 ORDER BY attempt",
            &params,
        ),
    )?;
    let Some(row) = row else { return Ok(None) };
    let record = delivery(&row)?;
    let mut attempts = Vec::with_capacity(log.len() + 1);
    for r in &log {
        let a = AttemptRecord {
            attempt: col::<i32>(r, 0)?.max(0) as u32,
            at_ms: col(r, 1)?,
            duration_ms: col::<i64>(r, 2)?.max(0) as u64,
            status_code: col::<Option<i32>>(r, 3)?.map(|c| c as u16),
            error: col(r, 4)?,
            response_body: col(r, 5)?,
        };
        if a.attempt < record.attempts || record.status != DeliveryStatus::Success {
            attempts.push(a);
        }
    }
    // The successful attempt lives on the delivery row.
    if record.status == DeliveryStatus::Success {
        attempts.push(AttemptRecord {
            attempt: record.attempts,
            at_ms: record.last_attempt_at_ms.unwrap_or(record.created_at_ms),
            duration_ms: col::<Option<i64>>(&row, 13)?.unwrap_or(0).max(0) as u64,
            status_code: record.last_status_code,
            error: None,
            response_body: col(&row, 14)?,
        });
    }
    Ok(Some((record, attempts)))
}

pub(super) async fn list_deliveries(
    inner: &Inner,
    filter: DeliveryFilter,
    before: Option<String>,
    limit: u32,
) -> StoreResult<Vec<DeliveryRecord>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    // Lists leave the payload out (an empty one): 250 deliveries of 256 KiB events would be 64 MiB
    // read and held for one page.
    let columns = DELIVERY_COLUMNS.replace("e.payload", "''::bytea AS payload");
    let mut sql = format!("SELECT {columns} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE true");
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut and = |cond: &str, v: Box<dyn ToSql + Sync + Send>| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ${}", args.len()));
    };
    if let Some(w) = filter.webhook_id {
        and("d.webhook_id =", Box::new(w));
    }
    if let Some(s) = filter.status {
        and("d.status =", Box::new(s.as_str().to_string()));
    }
    if let Some(e) = filter.event_type {
        and("e.event_type =", Box::new(e));
    }
    if let Some(t) = filter.since_ms {
        and("d.created_at >=", Box::new(t));
    }
    if let Some(t) = filter.until_ms {
        and("d.created_at <", Box::new(t));
    }
    if let Some(b) = before {
        and("d.id <", Box::new(b));
    }
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT {limit}"));
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = query(&client, &sql, &params).await?;
    rows.iter().map(delivery).collect()
}
