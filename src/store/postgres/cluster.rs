//! PostgreSQL membership and leases. Every time comes from the database clock ([`NOW_MS`]),
//! so nodes with skewed clocks agree.
//!
//! A lease is valid while its node is live: a heartbeat renews every lease of the node by writing
//! the node's row alone. A claim of a lease held by another node takes that node's row `FOR SHARE`
//! first, so it and the node's heartbeat serialise: either the heartbeat lands first and the claim
//! sees the node live, or the claim commits first and the heartbeat reads the lease gone. Lock
//! order everywhere: node rows, then lease rows in webhook-id order.

use std::sync::Arc;

use tokio_postgres::Row;

use super::{Inner, NOW_MS, col, execute, notify, pg, pool_err, query, query_opt};
use crate::store::common::DEAD_NODE_TTL_MS;
use crate::store::*;

fn fences(rows: &[Row]) -> StoreResult<Vec<Fence>> {
    let mut out = rows
        .iter()
        .map(|r| Ok(Fence { webhook_id: Arc::from(col::<String>(r, 0)?), epoch: col::<i64>(r, 1)?.max(0) as u64 }))
        .collect::<StoreResult<Vec<_>>>()?;
    out.sort();
    Ok(out)
}

async fn db_now(c: &impl deadpool_postgres::GenericClient) -> StoreResult<i64> {
    let row = query_opt(c, NOW_MS, &[]).await?.ok_or_else(|| StoreError::Unavailable("no clock row".into()))?;
    col(&row, 0)
}

pub(super) async fn heartbeat(inner: &Inner, node_id: &str, info: &str, ttl: i64) -> StoreResult<Heartbeat> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let now = db_now(&tx).await?;
    let expires = now + ttl;
    // A new row, or one that had expired, is a (re)join: its start time is reset.
    let started = query_opt(
        &tx,
        "INSERT INTO nodes (id, info, started_at, heartbeat_at, expires_at) VALUES ($1, $2, $3, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET info = excluded.info, heartbeat_at = excluded.heartbeat_at, \
         expires_at = excluded.expires_at, \
         started_at = CASE WHEN nodes.expires_at < excluded.heartbeat_at THEN excluded.started_at \
         ELSE nodes.started_at END \
         RETURNING started_at",
        &[&node_id, &info, &now, &expires],
    )
    .await?;
    let joined = match started {
        Some(r) => col::<i64>(&r, 0)? == now,
        None => false,
    };
    // The node's row is renewed: so are its leases.
    let held =
        query(&tx, "SELECT webhook_id, epoch FROM leases WHERE node_id = $1 ORDER BY webhook_id", &[&node_id]).await?;
    execute(&tx, "DELETE FROM nodes WHERE expires_at < $1", &[&(now - DEAD_NODE_TTL_MS)]).await?;
    let live = query(&tx, "SELECT id FROM nodes WHERE expires_at > $1 ORDER BY id", &[&now]).await?;
    if joined {
        notify::send(&tx, &inner.channel, &notify::cluster_payload(&inner.node_id)).await?;
    }
    tx.commit().await.map_err(pg)?;
    Ok(Heartbeat {
        now_ms: now,
        live_nodes: live.iter().map(|r| col(r, 0)).collect::<StoreResult<Vec<String>>>()?,
        held: fences(&held)?,
    })
}

pub(super) async fn claim(inner: &Inner, node_id: &str, mut ids: Vec<String>, ttl: i64) -> StoreResult<Vec<Fence>> {
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    let now = db_now(&tx).await?;
    let expires = now + ttl;
    // The nodes holding these leases now, share-locked against their heartbeats (see above).
    query(
        &tx,
        "SELECT n.id FROM nodes n WHERE n.id IN (SELECT DISTINCT l.node_id FROM leases l \
         WHERE l.webhook_id = ANY($1::text[]) AND l.node_id IS NOT NULL AND l.node_id <> $2) \
         ORDER BY n.id FOR SHARE",
        &[&ids, &node_id],
    )
    .await?;
    // Existing rows that are free, whose node is dead or gone, or this node's: re-granted.
    let claimable = "(l.node_id IS NULL OR l.node_id = $2 \
         OR NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = l.node_id AND n.expires_at >= $3))";
    let mut granted = query(
        &tx,
        &format!(
            "UPDATE leases SET node_id = $2, epoch = leases.epoch + 1, expires_at = $4 \
             WHERE webhook_id IN (SELECT l.webhook_id FROM leases l WHERE l.webhook_id = ANY($1::text[]) \
             AND {claimable} AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = l.webhook_id) \
             ORDER BY l.webhook_id FOR UPDATE) \
             RETURNING webhook_id, epoch"
        ),
        &[&ids, &node_id, &now, &expires],
    )
    .await?;
    // Webhooks that never had a lease: epoch 1. A concurrent claimer's row wins (DO NOTHING).
    granted.extend(
        query(
            &tx,
            "INSERT INTO leases (webhook_id, node_id, epoch, expires_at) \
             SELECT w.id, $2, 1, $3 FROM webhooks w WHERE w.id = ANY($1::text[]) \
             AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.webhook_id = w.id) ORDER BY w.id \
             ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id, epoch",
            &[&ids, &node_id, &expires],
        )
        .await?,
    );
    tx.commit().await.map_err(pg)?;
    fences(&granted)
}

pub(super) async fn release(inner: &Inner, node_id: &str, leases: &[Fence]) -> StoreResult<()> {
    let mut leases: Vec<&Fence> = leases.iter().collect();
    leases.sort();
    let ids: Vec<&str> = leases.iter().map(|f| &*f.webhook_id).collect();
    let epochs: Vec<i64> = leases.iter().map(|f| i64::try_from(f.epoch).unwrap_or(i64::MAX)).collect();
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    execute(
        &tx,
        "UPDATE leases SET node_id = NULL WHERE webhook_id IN (SELECT l.webhook_id FROM leases l \
         JOIN unnest($2::text[], $3::bigint[]) AS x(webhook_id, epoch) \
         ON l.webhook_id = x.webhook_id AND l.epoch = x.epoch WHERE l.node_id = $1 \
         ORDER BY l.webhook_id FOR UPDATE OF l) AND node_id = $1",
        &[&node_id, &ids, &epochs],
    )
    .await?;
    notify::send(&tx, &inner.channel, &notify::cluster_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)
}

pub(super) async fn leave(inner: &Inner, node_id: &str) -> StoreResult<()> {
    let mut client = inner.pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(pg)?;
    // The node's row first (lock order: nodes, then leases).
    execute(&tx, "DELETE FROM nodes WHERE id = $1", &[&node_id]).await?;
    execute(
        &tx,
        "UPDATE leases SET node_id = NULL WHERE webhook_id IN (SELECT webhook_id FROM leases WHERE node_id = $1 \
         ORDER BY webhook_id FOR UPDATE) AND node_id = $1",
        &[&node_id],
    )
    .await?;
    notify::send(&tx, &inner.channel, &notify::cluster_payload(&inner.node_id)).await?;
    tx.commit().await.map_err(pg)
}

pub(super) async fn nodes(inner: &Inner) -> StoreResult<Vec<NodeRecord>> {
    let client = inner.pool.get().await.map_err(pool_err)?;
    let now = db_now(&client).await?;
    let rows = query(
        &client,
        "SELECT n.id, n.info, n.started_at, n.heartbeat_at, n.expires_at, n.expires_at > $1 AS live, \
         (SELECT count(*) FROM leases l WHERE l.node_id = n.id) \
         FROM nodes n ORDER BY live DESC, n.id",
        &[&now],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRecord {
                id: col(r, 0)?,
                info: col(r, 1)?,
                started_at_ms: col(r, 2)?,
                heartbeat_at_ms: col(r, 3)?,
                expires_at_ms: col(r, 4)?,
                live: col(r, 5)?,
                owned: col::<i64>(r, 6)?.max(0) as u64,
            })
        })
        .collect()
}
