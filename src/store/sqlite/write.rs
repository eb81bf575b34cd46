//! SQLite writes: registrations and group commits ([`apply_batch`]). Everything here runs on
//! the writer thread inside a group transaction.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction, params};

use super::unavailable;
use crate::model::{WebhookRecord, delivery_id_range, now_ms};
use crate::store::common::{self, DELETED_REASON, EncodedWebhook, FenceCheck, TOMBSTONE_TTL_MS};
use crate::store::*;

/// Moves the registry revision on by one and returns it.
fn next_revision(tx: &Transaction<'_>) -> StoreResult<i64> {
    tx.prepare_cached("UPDATE registry_clock SET revision = revision + 1 WHERE id = 1 RETURNING revision")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(unavailable)
}

pub(super) fn upsert_webhook(
    tx: &Transaction<'_>,
    w: &WebhookRecord,
    enc: &EncodedWebhook,
) -> StoreResult<(Upserted, u64)> {
    let previous: Option<Option<i64>> = tx
        .prepare_cached("SELECT disabled_at FROM webhooks WHERE id = ?1")
        .and_then(|mut s| s.query_row([&w.id], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    let revision = next_revision(tx)?;
    tx.prepare_cached(
        "INSERT INTO webhooks (id, url, secret, events, headers, retry_config, max_in_flight, description, \
         disabled_at, disabled_reason, created_at, updated_at, revision, tenant, rate_limit_per_second, ordered, previous_secret, previous_secret_until) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, NULL, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
         ON CONFLICT(id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events, \
         headers = excluded.headers, retry_config = excluded.retry_config, max_in_flight = excluded.max_in_flight, \
         description = excluded.description, disabled_at = NULL, disabled_reason = NULL, \
         updated_at = excluded.updated_at, revision = excluded.revision, tenant = excluded.tenant, \
         rate_limit_per_second = excluded.rate_limit_per_second, ordered = excluded.ordered, \
         previous_secret = excluded.previous_secret, previous_secret_until = excluded.previous_secret_until",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id,
            w.url,
            w.secret,
            enc.events,
            enc.headers,
            enc.retry,
            w.max_in_flight.map(i64::from),
            w.description,
            w.created_at_ms,
            w.updated_at_ms,
            revision,
            w.tenant,
            w.rate_limit_per_second,
            w.ordered,
            w.previous_secret,
            w.previous_secret_until_ms
        ])
    })
    .map_err(unavailable)?;
    // The new row carries a later revision than any tombstone of the id.
    tx.prepare_cached("DELETE FROM webhook_deletions WHERE id = ?1")
        .and_then(|mut s| s.execute([&w.id]))
        .map_err(unavailable)?;
    if let Some(Some(_)) = previous {
        // Re-enabled: the stored health starts over.
        reset_health(tx, &w.id)?;
    }
    let upserted = if previous.is_some() { Upserted::Replaced } else { Upserted::Created };
    Ok((upserted, revision.max(0) as u64))
}

// ----- lifecycle -----

/// [`Store::update_webhook`]: the whole registration, disabled state included, if its revision is
/// still `expected`.
pub(super) fn update_webhook(
    tx: &Transaction<'_>,
    w: &WebhookRecord,
    enc: &EncodedWebhook,
    expected: u64,
) -> StoreResult<Option<u64>> {
    let current: Option<Option<i64>> = tx
        .prepare_cached("SELECT disabled_at FROM webhooks WHERE id = ?1 AND revision = ?2")
        .and_then(|mut s| s.query_row(params![w.id, i64::try_from(expected).unwrap_or(-1)], |r| r.get(0)).optional())
        .map_err(unavailable)?;
    let Some(was_disabled) = current.map(|d| d.is_some()) else { return Ok(None) };
    let revision = next_revision(tx)?;
    tx.prepare_cached(
        "UPDATE webhooks SET url = ?2, secret = ?3, events = ?4, headers = ?5, retry_config = ?6, \
         max_in_flight = ?7, description = ?8, disabled_at = ?9, disabled_reason = ?10, updated_at = ?11, \
         revision = ?12, previous_secret = ?13, previous_secret_until = ?14, tenant = ?15, \
         rate_limit_per_second = ?16, ordered = ?17 WHERE id = ?1",
    )
    .and_then(|mut s| {
        s.execute(params![
            w.id,
            w.url,
            w.secret,
            enc.events,
            enc.headers,
            enc.retry,
            w.max_in_flight.map(i64::from),
            w.description,
            w.disabled_at_ms,
            w.disabled_reason,
            w.updated_at_ms,
            revision,
            w.previous_secret,
            w.previous_secret_until_ms,
            w.tenant,
            w.rate_limit_per_second,
            w.ordered
        ])
    })
    .map_err(unavailable)?;
    match (was_disabled, w.disabled_at_ms) {
        (false, Some(at)) => {
            // Disabled: its pending deliveries fail, as with an automatic disable.
            let reason = w.disabled_reason.as_deref().unwrap_or("endpoint disabled");
            fail_pending_of_webhook(tx, &w.id, reason, at)?;
        }
        (true, None) => {
            // Re-enabled: the stored health starts over.
            reset_health(tx, &w.id)?;
        }
        _ => {}
    }
    Ok(Some(revision.max(0) as u64))
}

pub(super) fn delete_webhook(tx: &Transaction<'_>, id: &str, at_ms: i64) -> StoreResult<bool> {
    let n = tx
        .prepare_cached("DELETE FROM webhooks WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(unavailable)?;
    if n == 0 {
        return Ok(false);
    }
    fail_pending_of_webhook(tx, id, DELETED_REASON, at_ms)?;
    tx.prepare_cached("DELETE FROM webhook_state WHERE webhook_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(unavailable)?;
    // replay: its recovery goes with it
    tx.prepare_cached("DELETE FROM recoveries WHERE webhook_id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(unavailable)?;
    let revision = next_revision(tx)?;
    tx.prepare_cached(
        "INSERT INTO webhook_deletions (id, revision, deleted_at) VALUES (?1, ?2, ?3) \
         ON CONFLICT(id) DO UPDATE SET revision = excluded.revision, deleted_at = excluded.deleted_at",
    )
    .and_then(|mut s| s.execute(params![id, revision, at_ms]))
    .map_err(unavailable)?;
    // Forget old tombstones, remembering how far that went (callers behind it get everything).
    let cutoff = at_ms - TOMBSTONE_TTL_MS;
    let pruned: Option<i64> = tx
        .prepare_cached("SELECT max(revision) FROM webhook_deletions WHERE deleted_at < ?1")
        .and_then(|mut s| s.query_row([cutoff], |r| r.get(0)))
        .map_err(unavailable)?;
    if let Some(max) = pruned {
        tx.prepare_cached("DELETE FROM webhook_deletions WHERE deleted_at < ?1")
            .and_then(|mut s| s.execute([cutoff]))
            .map_err(unavailable)?;
        tx.prepare_cached("UPDATE registry_clock SET pruned_through = max(pruned_through, ?1) WHERE id = 1")
            .and_then(|mut s| s.execute([max]))
            .map_err(unavailable)?;
    }
    Ok(true)
}

/// A re-enabled webhook's stored health starts over.
fn reset_health(tx: &Transaction<'_>, webhook_id: &str) -> StoreResult<()> {
    tx.prepare_cached(
        "UPDATE webhook_state SET state = 'healthy', consecutive_failures = 0, failing_since = NULL, \
         last_success_at = NULL, last_failure_at = NULL, breaker_probe_at = NULL, breaker_cooldown_ms = NULL, \
         updated_at = ?2 WHERE webhook_id = ?1",
    )
    .and_then(|mut s| s.execute(params![webhook_id, now_ms()]))
    .map_err(unavailable)?;
    Ok(())
}

fn fail_pending_of_webhook(tx: &Transaction<'_>, webhook_id: &str, reason: &str, at_ms: i64) -> StoreResult<u64> {
    let n = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'failed', completed_at = ?3, last_error = ?2, next_attempt_at = NULL \
             WHERE webhook_id = ?1 AND status = 'pending'",
        )
        .and_then(|mut s| s.execute(params![webhook_id, reason, at_ms]))
        .map_err(unavailable)?;
    Ok(n as u64)
}

fn find_by_idempotency_key(tx: &Transaction<'_>, key: &str) -> StoreResult<Option<ExistingEvent>> {
    let found = tx
        .prepare_cached(
            "SELECT e.id, e.event_type, e.timestamp, e.tenant FROM idempotency_keys k \
             JOIN events e ON e.id = k.event_id WHERE k.key = ?1",
        )
        .and_then(|mut s| {
            s.query_row([key], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?))
            })
            .optional()
        })
        .map_err(unavailable)?;
    let Some((id, event_type, timestamp, tenant)) = found else {
        return Ok(None);
    };
    let (lo, hi) = delivery_id_range(&id);
    let mut stmt = tx
        .prepare_cached("SELECT id, webhook_id FROM deliveries WHERE id >= ?1 AND id < ?2 ORDER BY id")
        .map_err(unavailable)?;
    let deliveries = stmt
        .query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<(String, String)>, _>>())
        .map_err(unavailable)?;
    Ok(Some(ExistingEvent { id, event_type, timestamp, deliveries, tenant }))
}

/// Writes the batch's events and their deliveries (idempotency keys honoured, deliveries of
/// vanished webhooks dropped).
fn write_events(tx: &Transaction<'_>, batch: &WriteBatch, outcome: &mut BatchOutcome) -> StoreResult<()> {
    let mut ins_event = tx
        .prepare_cached(
            "INSERT INTO events (id, event_type, payload, timestamp, created_at, tenant) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(unavailable)?;
    let mut ins_delivery = tx
        .prepare_cached(
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) \
             VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
        )
        .map_err(unavailable)?;
    let mut exists = tx.prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1").map_err(unavailable)?;
    let mut known: HashMap<&str, bool> = HashMap::new();
    for ev in &batch.events {
        if let Some(key) = &ev.idempotency_key
            && let Some(existing) = find_by_idempotency_key(tx, key)?
        {
            outcome.events.push(EventWrite::Duplicate(existing));
            continue;
        }
        let payload = std::str::from_utf8(&ev.payload).map_err(common::corrupt)?;
        ins_event
            .execute(params![ev.id, ev.event_type, payload, ev.timestamp, ev.created_at_ms, ev.tenant])
            .map_err(unavailable)?;
        if let Some(key) = &ev.idempotency_key {
            tx.prepare_cached("INSERT INTO idempotency_keys (key, event_id) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![key, ev.id]))
                .map_err(unavailable)?;
        }
        let mut dropped = Vec::new();
        for d in &ev.deliveries {
            let live = match known.get(&*d.webhook_id) {
                Some(live) => *live,
                None => {
                    let live = exists.exists([&*d.webhook_id]).map_err(unavailable)?;
                    known.insert(&d.webhook_id, live);
                    live
                }
            };
            if live {
                ins_delivery.execute(params![d.id, ev.id, &*d.webhook_id, ev.created_at_ms]).map_err(unavailable)?;
            } else {
                dropped.push(d.id.clone());
            }
        }
        outcome.events.push(EventWrite::Created { dropped });
    }
    Ok(())
}

/// Records attempt outcomes in batch order (a delivery may appear more than once).
fn write_attempts(tx: &Transaction<'_>, batch: &WriteBatch, check: &mut FenceCheck) -> StoreResult<()> {
    let mut upd = tx
        .prepare_cached(
            "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_attempt_at = ?5, \
             completed_at = ?6, last_status_code = ?7, last_error = ?8, probes = ?9 WHERE id = ?1 AND status = 'pending'",
        )
        .map_err(unavailable)?;
    let mut succeeded = tx
        .prepare_cached(
            "UPDATE deliveries SET status = 'success', attempts = ?2, next_attempt_at = NULL, last_attempt_at = ?3, \
             completed_at = ?4, last_status_code = ?5, last_error = NULL, last_duration_ms = ?6, \
             last_response_body = ?7 \
             WHERE id = ?1 AND (status = 'pending' OR (status = 'failed' AND attempts < ?2))",
        )
        .map_err(unavailable)?;
    let mut ins = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO attempts (delivery_id, attempt, at, duration_ms, status_code, error, response_body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(unavailable)?;
    for u in &batch.attempts {
        if !check.allows(&u.fence) {
            continue;
        }
        let a = &u.attempt;
        let duration = i64::try_from(a.duration_ms).unwrap_or(i64::MAX);
        let end = a.at_ms.saturating_add(duration);
        if u.next == NextStep::Succeeded {
            // The successful attempt is kept on the delivery row (see the schema). A 2xx that
            // lands after the delivery was failed without that attempt (its endpoint disabled
            // meanwhile) still counts: the receiver has it.
            succeeded
                .execute(params![u.delivery_id, a.attempt, a.at_ms, end, a.status_code, duration, a.response_body])
                .map_err(unavailable)?;
            continue;
        }
        let (status, next_at, completed) = match u.next {
            NextStep::RetryAt(t) => ("pending", Some(t), None),
            _ => ("failed", None, Some(end)),
        };
        let changed = upd
            .execute(params![
                u.delivery_id,
                status,
                a.attempt,
                next_at,
                a.at_ms,
                completed,
                a.status_code,
                a.error,
                u.probes
            ])
            .map_err(unavailable)?;
        if changed == 1 {
            ins.execute(params![u.delivery_id, a.attempt, a.at_ms, duration, a.status_code, a.error, a.response_body])
                .map_err(unavailable)?;
        }
    }
    Ok(())
}

pub(super) fn apply_batch(tx: &Transaction<'_>, batch: &WriteBatch) -> StoreResult<BatchOutcome> {
    let mut outcome = BatchOutcome { events: Vec::with_capacity(batch.events.len()), ..Default::default() };
    let mut check = FenceCheck::new(lease_epochs(tx, batch)?);
    if !batch.events.is_empty() {
        write_events(tx, batch, &mut outcome)?;
    }
    if !batch.attempts.is_empty() {
        write_attempts(tx, batch, &mut check)?;
    }
    if !batch.failures.is_empty() {
        let mut fail = tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'failed', completed_at = ?3, last_error = ?2, next_attempt_at = NULL \
                 WHERE id = ?1 AND status = 'pending'",
            )
            .map_err(unavailable)?;
        let now = now_ms();
        for f in &batch.failures {
            if check.allows_opt(f.fence.as_ref()) {
                fail.execute(params![f.delivery_id, f.reason, now]).map_err(unavailable)?;
            }
        }
    }
    for d in &batch.disables {
        if !check.allows(&d.fence) {
            continue;
        }
        let exists = tx
            .prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1")
            .and_then(|mut s| s.exists([&*d.fence.webhook_id]))
            .map_err(unavailable)?;
        if exists {
            let revision = next_revision(tx)?;
            tx.prepare_cached(
                "UPDATE webhooks SET disabled_at = ?2, disabled_reason = ?3, revision = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![&*d.fence.webhook_id, d.at_ms, d.reason, revision]))
            .map_err(unavailable)?;
        }
        let failed = fail_pending_of_webhook(tx, &d.fence.webhook_id, &d.reason, d.at_ms)?;
        outcome.disabled.push((d.fence.webhook_id.to_string(), failed));
    }
    write_health(tx, batch, &mut check)?;
    outcome.fenced = check.into_fenced();
    Ok(outcome)
}

/// The current epoch of every lease the batch's fenced operations name.
fn lease_epochs(tx: &Transaction<'_>, batch: &WriteBatch) -> StoreResult<Vec<(String, i64)>> {
    let ids = common::fenced_webhooks(batch);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tx.prepare_cached("SELECT webhook_id, epoch FROM leases WHERE webhook_id IN (SELECT value FROM json_each(?1))")
        .and_then(|mut s| {
            s.query_map([super::json_list(&ids)], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)
}

/// Stores the last applicable health record per webhook (only while the webhook exists).
fn write_health(tx: &Transaction<'_>, batch: &WriteBatch, check: &mut FenceCheck) -> StoreResult<()> {
    let mut last: HashMap<&str, &StoredHealth> = HashMap::new();
    for h in &batch.health {
        if check.allows(&h.fence) {
            last.insert(&h.fence.webhook_id, &h.health);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let mut upsert = tx
        .prepare_cached(
            "INSERT INTO webhook_state (webhook_id, state, consecutive_failures, failing_since, last_success_at, \
             last_failure_at, breaker_probe_at, breaker_cooldown_ms, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = ?1) \
             ON CONFLICT(webhook_id) DO UPDATE SET state = excluded.state, \
             consecutive_failures = excluded.consecutive_failures, failing_since = excluded.failing_since, \
             last_success_at = excluded.last_success_at, last_failure_at = excluded.last_failure_at, \
             breaker_probe_at = excluded.breaker_probe_at, breaker_cooldown_ms = excluded.breaker_cooldown_ms, \
             updated_at = excluded.updated_at",
        )
        .map_err(unavailable)?;
    let now = now_ms();
    for (id, h) in last {
        upsert
            .execute(params![
                id,
                common::state_name(h.state),
                h.consecutive_failures,
                h.failing_since_ms,
                h.last_success_ms,
                h.last_failure_ms,
                h.breaker.map(|b| b.probe_at_ms),
                h.breaker.map(|b| i64::try_from(b.cooldown_ms).unwrap_or(i64::MAX)),
                now
            ])
            .map_err(unavailable)?;
    }
    Ok(())
}

// ----- tenants part: API tokens -----

pub(super) fn create_api_token(tx: &Transaction<'_>, t: &ApiTokenRecord) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO api_tokens (id, tenant, secret_hash, description, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![t.id, t.tenant, t.secret_hash, t.description, t.created_at_ms]))
    .map_err(unavailable)?;
    Ok(())
}

pub(super) fn delete_api_token(tx: &Transaction<'_>, id: &str) -> StoreResult<bool> {
    let n = tx
        .prepare_cached("DELETE FROM api_tokens WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(unavailable)?;
    Ok(n > 0)
}
