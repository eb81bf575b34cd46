//! PostgreSQL group commit: one transaction of a few multi-row statements per batch.
//!
//! Order (and so lock order, shared with [`super::registry`]): lease epochs `FOR SHARE` (a
//! concurrent claim waits for this commit), the registry clock (only for disables), webhook
//! rows `FOR KEY SHARE` (a delete waits for this publish, or this publish sees it gone), then
//! idempotency keys, events, deliveries, attempts, failures, disables, health, notices.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use deadpool_postgres::Transaction;

use super::registry::{fail_pending_of_webhook, next_revision};
use super::{Inner, col, execute, notify, pg, pool_err, query, query_opt};
use crate::model::{delivery_id_range, now_ms};
use crate::store::common::{self, FenceCheck};
use crate::store::*;

pub(super) async fn apply(inner: &Inner, batch: &WriteBatch) -> StoreResult<BatchOutcome> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let mut check = FenceCheck::new(lease_epochs(&tx, batch).await?);
    let disables: Vec<&DisableWebhook> = batch.disables.iter().filter(|d| check.allows(&d.fence)).collect();
    if !disables.is_empty() {
        query(&tx, "SELECT revision FROM registry_clock WHERE id = 1 FOR UPDATE", &[]).await?;
    }
    let mut outcome = BatchOutcome::default();
    let mut work = BTreeMap::new();
    if !batch.events.is_empty() {
        outcome.events = write_events(&tx, batch, &mut work).await?;
    }
    write_attempts(&tx, batch, &mut check).await?;
    write_failures(&tx, batch, &mut check).await?;
    let mut registry_changed = false;
    for d in disables {
        let id: &str = &d.fence.webhook_id;
        if query_opt(&tx, "SELECT 1 FROM webhooks WHERE id = $1", &[&id]).await?.is_some() {
            let revision = next_revision(&tx).await?;
            execute(
                &tx,
                "UPDATE webhooks SET disabled_at = $2, disabled_reason = $3, revision = $4 WHERE id = $1",
                &[&id, &d.at_ms, &d.reason, &revision],
            )
            .await?;
            registry_changed = true;
        }
        let failed = fail_pending_of_webhook(&tx, id, &d.reason, d.at_ms).await?;
        outcome.disabled.push((id.to_string(), failed));
    }
    write_health(&tx, batch, &mut check).await?;
    for payload in notify::work_payloads(&inner.node_id, &work) {
        notify::send(&tx, &inner.channel, &payload).await?;
    }
    if registry_changed {
        notify::send(&tx, &inner.channel, &notify::registry_payload(&inner.node_id)).await?;
    }
    tx.commit().await.map_err(pg)?;
    outcome.fenced = check.into_fenced();
    Ok(outcome)
}

/// The current epoch of every lease the batch's fenced operations name, share-locked.
async fn lease_epochs(tx: &Transaction<'_>, batch: &WriteBatch) -> StoreResult<Vec<(String, i64)>> {
    let ids = common::fenced_webhooks(batch);
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = query(
        tx,
        "SELECT webhook_id, epoch FROM leases WHERE webhook_id = ANY($1::text[]) ORDER BY webhook_id FOR SHARE",
        &[&ids],
    )
    .await?;
    rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
}

/// The event an idempotency key names, with its deliveries; `None` when the key is gone (its
/// event pruned since the key was seen).
async fn existing_event(tx: &Transaction<'_>, key: &str) -> StoreResult<Option<ExistingEvent>> {
    let Some(row) = query_opt(
        tx,
        "SELECT e.id, e.event_type, e.timestamp, e.tenant FROM idempotency_keys k \
         JOIN events e ON e.id = k.event_id WHERE k.key = $1",
        &[&key],
    )
    .await?
    else {
        return Ok(None);
    };
    let id: String = col(&row, 0)?;
    let (lo, hi) = delivery_id_range(&id);
    let rows =
        query(tx, "SELECT id, webhook_id FROM deliveries WHERE id >= $1 AND id < $2 ORDER BY id", &[&lo, &hi]).await?;
    Ok(Some(ExistingEvent {
        event_type: col(&row, 1)?,
        timestamp: col(&row, 2)?,
        deliveries: rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect::<StoreResult<_>>()?,
        tenant: col(&row, 3)?,
        id,
    }))
}

/// New events as columns for one multi-row insert: id, type, payload, timestamp, created_at,
/// tenant.
#[derive(Default)]
struct EventColumns<'a>(Vec<&'a str>, Vec<&'a str>, Vec<&'a [u8]>, Vec<&'a str>, Vec<i64>, Vec<Option<&'a str>>);

/// New deliveries as columns: id, event id, webhook id, created_at (= first due time).
#[derive(Default)]
struct DeliveryColumns<'a>(Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, Vec<i64>);

/// Writes the batch's events with their deliveries; counts new deliveries per webhook in `work`.
async fn write_events(
    tx: &Transaction<'_>,
    batch: &WriteBatch,
    work: &mut BTreeMap<String, u32>,
) -> StoreResult<Vec<EventWrite>> {
    // Webhooks that exist now, key-share-locked so that they cannot be deleted before commit.
    let targets: BTreeSet<&str> =
        batch.events.iter().flat_map(|e| e.deliveries.iter().map(|d| &*d.webhook_id)).collect();
    let targets: Vec<&str> = targets.into_iter().collect();
    let live: HashSet<String> = if targets.is_empty() {
        HashSet::new()
    } else {
        query(tx, "SELECT id FROM webhooks WHERE id = ANY($1::text[]) ORDER BY id FOR KEY SHARE", &[&targets])
            .await?
            .iter()
            .map(|r| col(r, 0))
            .collect::<StoreResult<_>>()?
    };
    // Idempotency keys: the first event of the batch with a key claims it; the insert either
    // wins or finds the key taken (waiting for a concurrent claimer's commit if need be).
    let mut claimer: HashMap<&str, usize> = HashMap::new();
    for (i, ev) in batch.events.iter().enumerate() {
        if let Some(key) = ev.idempotency_key.as_deref() {
            claimer.entry(key).or_insert(i);
        }
    }
    let mut taken: HashMap<String, ExistingEvent> = HashMap::new();
    if !claimer.is_empty() {
        let mut claims: Vec<(&str, &str)> = claimer.iter().map(|(k, i)| (*k, batch.events[*i].id.as_str())).collect();
        claims.sort();
        let keys: Vec<&str> = claims.iter().map(|c| c.0).collect();
        let event_ids: Vec<&str> = claims.iter().map(|c| c.1).collect();
        let won: HashSet<String> = query(
            tx,
            "INSERT INTO idempotency_keys (key, event_id) SELECT * FROM unnest($1::text[], $2::text[]) \
             ON CONFLICT DO NOTHING RETURNING key",
            &[&keys, &event_ids],
        )
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<StoreResult<_>>()?;
        for (key, event_id) in claims.iter().filter(|c| !won.contains(c.0)) {
            match existing_event(tx, key).await? {
                Some(existing) => {
                    taken.insert(key.to_string(), existing);
                }
                // The key's event was pruned (retention) between the insert and this read: the
                // key is free again, so this event claims it.
                None => {
                    let claimed = execute(
                        tx,
                        "INSERT INTO idempotency_keys (key, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[key, event_id],
                    )
                    .await?;
                    if claimed == 0 {
                        return Err(StoreError::Unavailable(format!(
                            "idempotency key `{key}` changed hands during the publish; try again"
                        )));
                    }
                }
            }
        }
    }
    let mut results = Vec::with_capacity(batch.events.len());
    let mut ev_cols = EventColumns::default();
    let mut dl_cols = DeliveryColumns::default();
    for (i, ev) in batch.events.iter().enumerate() {
        if let Some(key) = ev.idempotency_key.as_deref() {
            if let Some(existing) = taken.get(key) {
                results.push(EventWrite::Duplicate(existing.clone()));
                continue;
            }
            if claimer.get(key) != Some(&i) {
                // A repeat of a key an earlier event of this batch just claimed.
                let first = &batch.events[claimer[key]];
                let mut deliveries: Vec<(String, String)> = first
                    .deliveries
                    .iter()
                    .filter(|d| live.contains(&*d.webhook_id))
                    .map(|d| (d.id.clone(), d.webhook_id.to_string()))
                    .collect();
                deliveries.sort();
                results.push(EventWrite::Duplicate(ExistingEvent {
                    id: first.id.clone(),
                    event_type: first.event_type.clone(),
                    timestamp: first.timestamp.clone(),
                    deliveries,
                    tenant: first.tenant.clone(),
                }));
                continue;
            }
        }
        ev_cols.0.push(&ev.id);
        ev_cols.1.push(&ev.event_type);
        ev_cols.2.push(&ev.payload);
        ev_cols.3.push(&ev.timestamp);
        ev_cols.4.push(ev.created_at_ms);
        ev_cols.5.push(ev.tenant.as_deref());
        let mut dropped = Vec::new();
        for d in &ev.deliveries {
            if live.contains(&*d.webhook_id) {
                dl_cols.0.push(&d.id);
                dl_cols.1.push(&ev.id);
                dl_cols.2.push(&d.webhook_id);
                dl_cols.3.push(ev.created_at_ms);
                *work.entry(d.webhook_id.to_string()).or_insert(0) += 1;
            } else {
                dropped.push(d.id.clone());
            }
        }
        results.push(EventWrite::Created { dropped });
    }
    if !ev_cols.0.is_empty() {
        execute(
            tx,
            "INSERT INTO events (id, event_type, payload, timestamp, created_at, tenant) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::bigint[], $6::text[])",
            &[&ev_cols.0, &ev_cols.1, &ev_cols.2, &ev_cols.3, &ev_cols.4, &ev_cols.5],
        )
        .await?;
    }
    if !dl_cols.0.is_empty() {
        execute(
            tx,
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) \
             SELECT x.id, x.event_id, x.webhook_id, 'pending', 0, x.at, x.at \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS x(id, event_id, webhook_id, at)",
            &[&dl_cols.0, &dl_cols.1, &dl_cols.2, &dl_cols.3],
        )
        .await?;
    }
    Ok(results)
}

/// Attempt outcomes, in rounds so that a delivery updated twice in the batch gets both in order.
/// Failed and retried attempts also go to the attempt log; a success stays on the delivery row.
async fn write_attempts(tx: &Transaction<'_>, batch: &WriteBatch, check: &mut FenceCheck) -> StoreResult<()> {
    let applicable = batch.attempts.iter().filter(|u| check.allows(&u.fence)).map(|u| (u.delivery_id.as_str(), u));
    for round in common::attempt_rounds(applicable) {
        let mut ids = Vec::with_capacity(round.len());
        let (mut status, mut attempt, mut next_at, mut at, mut completed) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut code, mut error, mut duration, mut body) = (vec![], vec![], vec![], vec![]);
        let mut probes = Vec::with_capacity(round.len());
        for u in round {
            let a = &u.attempt;
            let dur = i64::try_from(a.duration_ms).unwrap_or(i64::MAX);
            let end = a.at_ms.saturating_add(dur);
            let (s, n, c) = match u.next {
                NextStep::RetryAt(t) => ("pending", Some(t), None),
                NextStep::Succeeded => ("success", None, Some(end)),
                NextStep::Failed => ("failed", None, Some(end)),
            };
            ids.push(u.delivery_id.as_str());
            status.push(s);
            attempt.push(i32::try_from(a.attempt).unwrap_or(i32::MAX));
            next_at.push(n);
            at.push(a.at_ms);
            completed.push(c);
            code.push(a.status_code.map(i32::from));
            error.push(if u.next == NextStep::Succeeded { None } else { a.error.as_deref() });
            duration.push(dur);
            body.push(a.response_body.as_deref());
            probes.push(i32::try_from(u.probes).unwrap_or(i32::MAX));
        }
        execute(
            tx,
            "WITH x AS (SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], \
             $6::bigint[], $7::int[], $8::text[], $9::bigint[], $10::text[], $11::int[]) \
             AS x(id, status, attempt, next_at, at, completed, code, error, duration, body, probes)), \
             u AS (UPDATE deliveries d SET status = x.status, attempts = x.attempt, next_attempt_at = x.next_at, \
             probes = CASE WHEN x.status = 'success' THEN d.probes ELSE x.probes END, \
             last_attempt_at = x.at, completed_at = x.completed, last_status_code = x.code, last_error = x.error, \
             last_duration_ms = CASE WHEN x.status = 'success' THEN x.duration ELSE d.last_duration_ms END, \
             last_response_body = CASE WHEN x.status = 'success' THEN x.body ELSE d.last_response_body END \
             FROM x WHERE d.id = x.id AND (d.status = 'pending' \
             OR (x.status = 'success' AND d.status = 'failed' AND d.attempts < x.attempt)) RETURNING x.*) \
             INSERT INTO attempts (delivery_id, attempt, at, duration_ms, status_code, error, response_body) \
             SELECT id, attempt, at, duration, code, error, body FROM u WHERE status <> 'success' \
             ON CONFLICT (delivery_id, attempt) DO UPDATE SET at = excluded.at, duration_ms = excluded.duration_ms, \
             status_code = excluded.status_code, error = excluded.error, response_body = excluded.response_body",
            &[&ids, &status, &attempt, &next_at, &at, &completed, &code, &error, &duration, &body, &probes],
        )
        .await?;
    }
    Ok(())
}

/// Pending deliveries failed without an attempt.
async fn write_failures(tx: &Transaction<'_>, batch: &WriteBatch, check: &mut FenceCheck) -> StoreResult<()> {
    let (mut ids, mut reasons) = (Vec::new(), Vec::new());
    for f in &batch.failures {
        if check.allows_opt(f.fence.as_ref()) {
            ids.push(f.delivery_id.as_str());
            reasons.push(f.reason.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    execute(
        tx,
        "UPDATE deliveries d SET status = 'failed', completed_at = $3, last_error = x.reason, next_attempt_at = NULL \
         FROM unnest($1::text[], $2::text[]) AS x(id, reason) WHERE d.id = x.id AND d.status = 'pending'",
        &[&ids, &reasons, &now_ms()],
    )
    .await?;
    Ok(())
}

/// The last applicable health record per webhook (while the webhook exists).
async fn write_health(tx: &Transaction<'_>, batch: &WriteBatch, check: &mut FenceCheck) -> StoreResult<()> {
    let mut last: BTreeMap<&str, &StoredHealth> = BTreeMap::new();
    for h in &batch.health {
        if check.allows(&h.fence) {
            last.insert(&h.fence.webhook_id, &h.health);
        }
    }
    if last.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = last.keys().copied().collect();
    let states: Vec<&str> = last.values().map(|h| common::state_name(h.state)).collect();
    let failures: Vec<i64> = last.values().map(|h| i64::from(h.consecutive_failures)).collect();
    let since: Vec<Option<i64>> = last.values().map(|h| h.failing_since_ms).collect();
    let success: Vec<Option<i64>> = last.values().map(|h| h.last_success_ms).collect();
    let failure: Vec<Option<i64>> = last.values().map(|h| h.last_failure_ms).collect();
    let probe: Vec<Option<i64>> = last.values().map(|h| h.breaker.map(|b| b.probe_at_ms)).collect();
    let cooldown: Vec<Option<i64>> =
        last.values().map(|h| h.breaker.map(|b| i64::try_from(b.cooldown_ms).unwrap_or(i64::MAX))).collect();
    execute(
        tx,
        "INSERT INTO webhook_state (webhook_id, state, consecutive_failures, failing_since, last_success_at, \
         last_failure_at, breaker_probe_at, breaker_cooldown_ms, updated_at) \
         SELECT x.*, $9 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], \
         $7::bigint[], $8::bigint[]) AS x(webhook_id, state, failures, since, success, failure, probe, cooldown) \
         WHERE EXISTS (SELECT 1 FROM webhooks w WHERE w.id = x.webhook_id) \
         ON CONFLICT (webhook_id) DO UPDATE SET state = excluded.state, \
         consecutive_failures = excluded.consecutive_failures, failing_since = excluded.failing_since, \
         last_success_at = excluded.last_success_at, last_failure_at = excluded.last_failure_at, \
         breaker_probe_at = excluded.breaker_probe_at, breaker_cooldown_ms = excluded.breaker_cooldown_ms, \
         updated_at = excluded.updated_at",
        &[&ids, &states, &failures, &since, &success, &failure, &probe, &cooldown, &now_ms()],
    )
    .await?;
    Ok(())
}
