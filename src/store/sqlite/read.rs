//! SQLite reads, on pooled read-only connections.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{json_list, unavailable};
use crate::model::{DeliveryStatus, WebhookRecord};
use crate::store::common::{RawHealth, RawWebhook};
use crate::store::*;

const WEBHOOK_COLUMNS: &str = "w.id, w.url, w.secret, w.events, w.headers, w.retry_config, w.max_in_flight, \
     w.description, w.disabled_at, w.disabled_reason, w.created_at, w.updated_at, w.revision, w.tenant, \
     w.rate_limit_per_second, w.ordered, w.previous_secret, w.previous_secret_until";

/// Where the tail columns (pacing: rate, ordered; lifecycle: previous secret, until) start in a
/// `WEBHOOK_COLUMNS` row.
const PACING_AT: usize = 14;
/// Where the same tail columns start in a `VIEW_SELECT` row.
const VIEW_PACING_AT: usize = 24;

/// A registration with its health and lease: the first 14 of `WEBHOOK_COLUMNS` (through the
/// tenant), then health (14..=20), then the lease (21..=23), then the tail (24..=27).
const VIEW_SELECT: &str = "SELECT w.id, w.url, w.secret, w.events, w.headers, w.retry_config, w.max_in_flight, \
     w.description, w.disabled_at, w.disabled_reason, w.created_at, w.updated_at, w.revision, w.tenant, \
     s.state, s.consecutive_failures, s.failing_since, s.last_success_at, s.last_failure_at, s.breaker_probe_at, \
     s.breaker_cooldown_ms, l.node_id, l.epoch, coalesce(n.expires_at, 0), \
     w.rate_limit_per_second, w.ordered, w.previous_secret, w.previous_secret_until \
     FROM webhooks w LEFT JOIN webhook_state s ON s.webhook_id = w.id \
     LEFT JOIN leases l ON l.webhook_id = w.id AND l.node_id IS NOT NULL \
     LEFT JOIN nodes n ON n.id = l.node_id";

fn raw_webhook(r: &Row<'_>, pacing_at: usize) -> rusqlite::Result<RawWebhook> {
    Ok(RawWebhook {
        id: r.get(0)?,
        url: r.get(1)?,
        secret: r.get(2)?,
        events: r.get(3)?,
        headers: r.get(4)?,
        retry: r.get(5)?,
        max_in_flight: r.get(6)?,
        description: r.get(7)?,
        disabled_at: r.get(8)?,
        disabled_reason: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        revision: r.get(12)?,
        tenant: r.get(13)?,
        rate_limit_per_second: r.get(pacing_at)?,
        ordered: r.get(pacing_at + 1)?,
        previous_secret: r.get(pacing_at + 2)?,
        previous_secret_until: r.get(pacing_at + 3)?,
    })
}

type RawView = (RawWebhook, RawHealth, Option<LeaseInfo>);

fn raw_view(r: &Row<'_>) -> rusqlite::Result<RawView> {
    let health = raw_health(r, 14)?;
    let owner = match r.get::<_, Option<String>>(21)? {
        Some(node_id) => {
            Some(LeaseInfo { node_id, epoch: r.get::<_, i64>(22)?.max(0) as u64, expires_at_ms: r.get(23)? })
        }
        None => None,
    };
    Ok((raw_webhook(r, VIEW_PACING_AT)?, health, owner))
}

fn decode_view((w, h, owner): RawView) -> StoreResult<WebhookView> {
    Ok(WebhookView { record: w.decode()?, health: h.decode()?, owner, recovery: None })
}

pub(super) fn get_webhook(c: &Connection, id: &str) -> StoreResult<Option<WebhookView>> {
    let raw = c
        .prepare_cached(&format!("{VIEW_SELECT} WHERE w.id = ?1"))
        .and_then(|mut s| s.query_row([id], raw_view).optional())
        .map_err(unavailable)?;
    let mut views: Vec<WebhookView> = raw.map(decode_view).transpose()?.into_iter().collect();
    super::replay::attach(c, &mut views)?;
    Ok(views.pop())
}

pub(super) fn list_webhooks(c: &Connection, after: &str, limit: u32) -> StoreResult<Vec<WebhookView>> {
    let raws = c
        .prepare_cached(&format!("{VIEW_SELECT} WHERE w.id > ?1 ORDER BY w.id LIMIT ?2"))
        .and_then(|mut s| s.query_map(params![after, limit], raw_view)?.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    let mut views = raws.into_iter().map(decode_view).collect::<StoreResult<Vec<_>>>()?;
    super::replay::attach(c, &mut views)?;
    Ok(views)
}

/// One tenant's registrations after `after` (tenants part).
pub(super) fn list_tenant_webhooks(
    c: &Connection,
    tenant: &str,
    after: &str,
    limit: u32,
) -> StoreResult<Vec<WebhookView>> {
    let raws = c
        .prepare_cached(&format!("{VIEW_SELECT} WHERE w.tenant = ?1 AND w.id > ?2 ORDER BY w.id LIMIT ?3"))
        .and_then(|mut s| s.query_map(params![tenant, after, limit], raw_view)?.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    raws.into_iter().map(decode_view).collect()
}

fn webhooks_where(c: &Connection, cond: &str, arg: i64) -> StoreResult<Vec<WebhookRecord>> {
    let raws = c
        .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks w WHERE {cond} ORDER BY w.id"))
        .and_then(|mut s| s.query_map([arg], |r| raw_webhook(r, PACING_AT))?.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    raws.into_iter().map(RawWebhook::decode).collect()
}

pub(super) fn registry_changes(c: &Connection, since: u64) -> StoreResult<RegistryChanges> {
    // One read transaction: one snapshot for the revision and the rows.
    let tx = c.unchecked_transaction().map_err(unavailable)?;
    let (revision, pruned_through): (i64, i64) = tx
        .prepare_cached("SELECT revision, pruned_through FROM registry_clock WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(unavailable)?;
    let since_i = i64::try_from(since).unwrap_or(i64::MAX);
    // Behind the pruned tombstones, or ahead of this store (a different or restored database).
    let full = since == 0 || since_i < pruned_through || since_i > revision;
    let out = if full {
        RegistryChanges {
            revision: revision as u64,
            full,
            upserted: webhooks_where(&tx, "1 = ?1", 1)?,
            deleted: vec![],
        }
    } else {
        let deleted = tx
            .prepare_cached("SELECT id FROM webhook_deletions WHERE revision > ?1 ORDER BY id")
            .and_then(|mut s| s.query_map([since_i], |r| r.get(0))?.collect::<Result<Vec<String>, _>>())
            .map_err(unavailable)?;
        RegistryChanges {
            revision: revision as u64,
            full,
            upserted: webhooks_where(&tx, "w.revision > ?1", since_i)?,
            deleted,
        }
    };
    tx.finish().map_err(unavailable)?;
    Ok(out)
}

pub(super) fn load_due(
    c: &Connection,
    webhook_id: &str,
    now_ms: i64,
    exclude: &[String],
    limit: u32,
) -> StoreResult<DuePage> {
    let mut stmt = c
        .prepare_cached(
            "SELECT d.id, d.event_id, e.event_type, e.payload, e.timestamp, d.attempts, d.next_attempt_at, d.created_at, \
             d.probes FROM deliveries d JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = ?1 AND d.status = 'pending' AND d.next_attempt_at <= ?2 \
             AND d.id NOT IN (SELECT value FROM json_each(?3)) \
             ORDER BY d.next_attempt_at, d.id LIMIT ?4",
        )
        .map_err(unavailable)?;
    let items = stmt
        .query_map(params![webhook_id, now_ms, json_list(exclude), limit], pending_row)
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    let next_due_at_ms = c
        .prepare_cached(
            "SELECT min(next_attempt_at) FROM deliveries \
             WHERE webhook_id = ?1 AND status = 'pending' AND next_attempt_at > ?2",
        )
        .and_then(|mut s| s.query_row(params![webhook_id, now_ms], |r| r.get(0)))
        .map_err(unavailable)?;
    Ok(DuePage { items, next_due_at_ms })
}

/// A pending delivery as `load_due` and `load_in_order` select it.
fn pending_row(r: &Row<'_>) -> rusqlite::Result<PendingDelivery> {
    let payload: String = r.get(3)?;
    let attempts: i64 = r.get(5)?;
    Ok(PendingDelivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        payload: Bytes::from(payload),
        timestamp: r.get(4)?,
        attempts: attempts.max(0) as u32,
        probes: r.get::<_, i64>(8)?.max(0) as u32,
        next_attempt_at_ms: r.get(6)?,
        created_at_ms: r.get(7)?,
    })
}

// ----- pacing -----

/// An ordered webhook's queue: pending deliveries in id order (publish order: ids are minted in
/// order by the one process that owns the file), whatever their due time. `INDEXED BY` keeps the
/// planner on the pending-only index rather than walking the webhook's whole history in id order.
pub(super) fn load_in_order(c: &Connection, webhook_id: &str, exclude: &[String], limit: u32) -> StoreResult<DuePage> {
    let items = c
        .prepare_cached(
            "SELECT d.id, d.event_id, e.event_type, e.payload, e.timestamp, d.attempts, d.next_attempt_at, d.created_at, \
             d.probes FROM deliveries d INDEXED BY deliveries_due JOIN events e ON e.id = d.event_id \
             WHERE d.webhook_id = ?1 AND d.status = 'pending' \
             AND d.id NOT IN (SELECT value FROM json_each(?2)) \
             ORDER BY d.id LIMIT ?3",
        )
        .and_then(|mut s| s.query_map(params![webhook_id, json_list(exclude), limit], pending_row)?.collect())
        .map_err(unavailable)?;
    Ok(DuePage { items, next_due_at_ms: None })
}

pub(super) fn due_summary(c: &Connection, ids: &[String]) -> StoreResult<Vec<PendingSummary>> {
    c.prepare_cached(
        "SELECT j.value, (SELECT min(d.next_attempt_at) FROM deliveries d \
         WHERE d.webhook_id = j.value AND d.status = 'pending') FROM json_each(?1) j ORDER BY j.key",
    )
    .and_then(|mut s| {
        s.query_map([json_list(ids)], |r| Ok(PendingSummary { webhook_id: r.get(0)?, earliest_due_ms: r.get(1)? }))?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(unavailable)
}

/// The seven `webhook_state` columns starting at `at`.
fn raw_health(r: &Row<'_>, at: usize) -> rusqlite::Result<RawHealth> {
    Ok(RawHealth {
        state: r.get(at)?,
        consecutive_failures: r.get(at + 1)?,
        failing_since: r.get(at + 2)?,
        last_success_at: r.get(at + 3)?,
        last_failure_at: r.get(at + 4)?,
        breaker_probe_at: r.get(at + 5)?,
        breaker_cooldown_ms: r.get(at + 6)?,
    })
}

pub(super) fn stored_health(c: &Connection, ids: &[String]) -> StoreResult<Vec<(String, StoredHealth)>> {
    let mut stmt = c
        .prepare_cached(
            "SELECT webhook_id, state, consecutive_failures, failing_since, last_success_at, last_failure_at, \
             breaker_probe_at, breaker_cooldown_ms FROM webhook_state \
             WHERE webhook_id IN (SELECT value FROM json_each(?1)) ORDER BY webhook_id",
        )
        .map_err(unavailable)?;
    let rows = stmt
        .query_map([json_list(ids)], |r| Ok((r.get::<_, String>(0)?, raw_health(r, 1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, raw) in rows {
        if let Some(h) = raw.decode()? {
            out.push((id, h));
        }
    }
    Ok(out)
}

pub(super) fn pending_counts(c: &Connection, ids: &[String]) -> StoreResult<Vec<(String, u64)>> {
    c.prepare_cached(
        "SELECT d.webhook_id, count(*) FROM deliveries d \
         WHERE d.status = 'pending' AND d.webhook_id IN (SELECT value FROM json_each(?1)) \
         GROUP BY d.webhook_id ORDER BY d.webhook_id",
    )
    .and_then(|mut s| {
        s.query_map([json_list(ids)], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<Result<Vec<_>, _>>()
    })
    .map_err(unavailable)
}

const DELIVERY_COLUMNS: &str = "d.id, d.webhook_id, d.event_id, e.event_type, e.payload, d.status, d.attempts, \
     d.created_at, d.last_attempt_at, d.next_attempt_at, d.completed_at, d.last_status_code, d.last_error, \
     d.last_duration_ms, d.last_response_body";

/// The successful attempt, which lives on the delivery row rather than in `attempts`.
fn success_attempt_from_row(r: &Row<'_>, d: &DeliveryRecord) -> rusqlite::Result<Option<AttemptRecord>> {
    if d.status != DeliveryStatus::Success {
        return Ok(None);
    }
    let duration: Option<i64> = r.get(13)?;
    Ok(Some(AttemptRecord {
        attempt: d.attempts,
        at_ms: d.last_attempt_at_ms.unwrap_or(d.created_at_ms),
        duration_ms: duration.unwrap_or(0).max(0) as u64,
        status_code: d.last_status_code,
        error: None,
        response_body: r.get(14)?,
    }))
}

fn delivery_from_row(r: &Row<'_>) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(5)?;
    let attempts: i64 = r.get(6)?;
    let code: Option<i64> = r.get(11)?;
    Ok(DeliveryRecord {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event_id: r.get(2)?,
        event_type: r.get(3)?,
        payload: r.get(4)?,
        status: DeliveryStatus::parse(&status).unwrap_or(DeliveryStatus::Failed),
        attempts: attempts.max(0) as u32,
        created_at_ms: r.get(7)?,
        last_attempt_at_ms: r.get(8)?,
        next_attempt_at_ms: if status == "pending" { r.get(9)? } else { None },
        completed_at_ms: r.get(10)?,
        last_status_code: code.map(|c| c as u16),
        last_error: r.get(12)?,
    })
}

pub(super) fn get_delivery(c: &Connection, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
    let record = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1"
        ))
        .and_then(|mut s| {
            s.query_row([id], |r| {
                let d = delivery_from_row(r)?;
                let success = success_attempt_from_row(r, &d)?;
                Ok((d, success))
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some((record, success)) = record else { return Ok(None) };
    let attempts = c
        .prepare_cached(
            "SELECT attempt, at, duration_ms, status_code, error, response_body FROM attempts \
             WHERE delivery_id = ?1 ORDER BY attempt",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| {
                let attempt: i64 = r.get(0)?;
                let duration: i64 = r.get(2)?;
                let code: Option<i64> = r.get(3)?;
                Ok(AttemptRecord {
                    attempt: attempt.max(0) as u32,
                    at_ms: r.get(1)?,
                    duration_ms: duration.max(0) as u64,
                    status_code: code.map(|c| c as u16),
                    error: r.get(4)?,
                    response_body: r.get(5)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)?;
    let mut attempts: Vec<AttemptRecord> = attempts
        .into_iter()
        .filter(|a| a.attempt < record.attempts || record.status != DeliveryStatus::Success)
        .collect();
    attempts.extend(success);
    Ok(Some((record, attempts)))
}

pub(super) fn list_deliveries(
    c: &Connection,
    filter: DeliveryFilter,
    before: Option<String>,
    limit: u32,
) -> StoreResult<Vec<DeliveryRecord>> {
    // Lists leave the payload out (an empty one): 250 deliveries of 256 KiB events would be 64 MiB
    // read and held for one page.
    let columns = DELIVERY_COLUMNS.replace("e.payload", "'' AS payload");
    let mut sql = format!("SELECT {columns} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE 1 = 1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    let mut and = |cond: &str, v: rusqlite::types::Value| {
        args.push(v);
        sql.push_str(&format!(" AND {cond} ?{}", args.len()));
    };
    if let Some(w) = filter.webhook_id {
        and("d.webhook_id =", w.into());
    }
    if let Some(s) = filter.status {
        and("d.status =", s.as_str().to_string().into());
    }
    if let Some(e) = filter.event_type {
        and("e.event_type =", e.into());
    }
    if let Some(t) = filter.since_ms {
        and("d.created_at >=", t.into());
    }
    if let Some(t) = filter.until_ms {
        and("d.created_at <", t.into());
    }
    // tenants part
    if let Some(t) = filter.tenant {
        and("(SELECT wt.tenant FROM webhooks wt WHERE wt.id = d.webhook_id) =", t.into());
    }
    if let Some(b) = before {
        and("d.id <", b.into());
    }
    sql.push_str(&format!(" ORDER BY d.id DESC LIMIT {limit}"));
    c.prepare_cached(&sql)
        .and_then(|mut s| {
            s.query_map(rusqlite::params_from_iter(args.iter()), delivery_from_row)?.collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)
}

// ----- tenants part: API tokens -----

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<ApiTokenRecord> {
    Ok(ApiTokenRecord {
        id: r.get(0)?,
        tenant: r.get(1)?,
        secret_hash: r.get(2)?,
        description: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

pub(super) fn api_token(c: &Connection, id: &str) -> StoreResult<Option<ApiTokenRecord>> {
    c.prepare_cached("SELECT id, tenant, secret_hash, description, created_at FROM api_tokens WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], token_from_row).optional())
        .map_err(unavailable)
}

pub(super) fn list_api_tokens(c: &Connection, after: &str, limit: u32) -> StoreResult<Vec<ApiTokenRecord>> {
    c.prepare_cached(
        "SELECT id, tenant, secret_hash, description, created_at FROM api_tokens WHERE id > ?1 ORDER BY id LIMIT ?2",
    )
    .and_then(|mut s| s.query_map(params![after, limit], token_from_row)?.collect::<Result<Vec<_>, _>>())
    .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rusqlite::StatementStatus;
    use tokio::sync::Semaphore;

    use super::super::writer::{ReadPool, open_writer};
    use super::*;

    /// The webhook view joins health, lease and node to the row `w.id = ?1` names. Without the
    /// planner's stability guarantee the bundled SQLite recompiled it at every new id (a read
    /// took four times as long; registering a fleet spent its reads recompiling).
    #[test]
    fn the_webhook_view_is_not_recompiled_for_each_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let writer = open_writer(&path, false).unwrap();
        for i in 0..3 {
            writer
                .execute(
                    "INSERT INTO webhooks (id, url, secret, headers, retry_config, created_at, updated_at) \
                     VALUES (?1, 'http://127.0.0.1/', 's', '{}', '{}', 0, 0)",
                    [format!("wh_{i}")],
                )
                .unwrap();
        }
        let pool = ReadPool { path, idle: Mutex::new(Vec::new()), permits: Semaphore::new(1) };
        let c = pool.take().unwrap();
        let sql = format!("{VIEW_SELECT} WHERE w.id = ?1");
        for i in 0..3 {
            let mut s = c.prepare_cached(&sql).unwrap();
            let id: String = s.query_row([format!("wh_{i}")], |r| r.get(0)).unwrap();
            assert_eq!(id, format!("wh_{i}"));
            assert_eq!(s.get_status(StatementStatus::RePrepare), 0, "recompiled for id {i}");
        }
    }
}
