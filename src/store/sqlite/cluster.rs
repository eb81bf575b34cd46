//! SQLite membership and leases: the same rules as PostgreSQL (a lease is valid while its node
//! is live) with this process's clock, and [`exclusive`](crate::store::Store::exclusive) claims
//! (one process owns the file). One writer at a time, so nothing needs row locks.

use std::sync::Arc;

use rusqlite::{Connection, Transaction, params};

use super::{json_list, unavailable};
use crate::model::now_ms;
use crate::store::common::DEAD_NODE_TTL_MS;
use crate::store::*;

fn fences(tx: &Transaction<'_>, sql: &str, args: impl rusqlite::Params) -> StoreResult<Vec<Fence>> {
    let mut out = tx
        .prepare_cached(sql)
        .and_then(|mut s| {
            s.query_map(args, |r| {
                Ok(Fence { webhook_id: Arc::from(r.get::<_, String>(0)?), epoch: r.get::<_, i64>(1)?.max(0) as u64 })
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(unavailable)?;
    out.sort();
    Ok(out)
}

pub(super) fn heartbeat(tx: &Transaction<'_>, node_id: &str, info: &str, ttl: i64) -> StoreResult<Heartbeat> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO nodes (id, info, started_at, heartbeat_at, expires_at) VALUES (?1, ?2, ?3, ?3, ?4) \
         ON CONFLICT(id) DO UPDATE SET info = excluded.info, heartbeat_at = excluded.heartbeat_at, \
         expires_at = excluded.expires_at, \
         started_at = CASE WHEN nodes.expires_at < excluded.heartbeat_at THEN excluded.started_at \
         ELSE nodes.started_at END",
    )
    .and_then(|mut s| s.execute(params![node_id, info, now, now + ttl]))
    .map_err(unavailable)?;
    // The node's row is renewed: so are its leases.
    let held = fences(tx, "SELECT webhook_id, epoch FROM leases WHERE node_id = ?1", params![node_id])?;
    tx.prepare_cached("DELETE FROM nodes WHERE expires_at < ?1")
        .and_then(|mut s| s.execute([now - DEAD_NODE_TTL_MS]))
        .map_err(unavailable)?;
    let live_nodes = tx
        .prepare_cached("SELECT id FROM nodes WHERE expires_at > ?1 ORDER BY id")
        .and_then(|mut s| s.query_map([now], |r| r.get(0))?.collect::<Result<Vec<String>, _>>())
        .map_err(unavailable)?;
    Ok(Heartbeat { now_ms: now, live_nodes, held })
}

pub(super) fn claim(tx: &Transaction<'_>, node_id: &str, ids: &[String], ttl: i64) -> StoreResult<Vec<Fence>> {
    let now = now_ms();
    // Exclusive store: every lease of an existing webhook may be taken.
    fences(
        tx,
        "INSERT INTO leases (webhook_id, node_id, epoch, expires_at) \
         SELECT w.id, ?1, 1, ?2 FROM webhooks w WHERE w.id IN (SELECT value FROM json_each(?3)) \
         ON CONFLICT(webhook_id) DO UPDATE SET node_id = excluded.node_id, epoch = leases.epoch + 1, \
         expires_at = excluded.expires_at \
         RETURNING webhook_id, epoch",
        params![node_id, now + ttl, json_list(ids)],
    )
}

pub(super) fn release(tx: &Transaction<'_>, node_id: &str, leases: &[Fence]) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached("UPDATE leases SET node_id = NULL WHERE webhook_id = ?1 AND epoch = ?2 AND node_id = ?3")
        .map_err(unavailable)?;
    for f in leases {
        stmt.execute(params![&*f.webhook_id, i64::try_from(f.epoch).unwrap_or(i64::MAX), node_id])
            .map_err(unavailable)?;
    }
    Ok(())
}

pub(super) fn leave(tx: &Transaction<'_>, node_id: &str) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM nodes WHERE id = ?1").and_then(|mut s| s.execute([node_id])).map_err(unavailable)?;
    tx.prepare_cached("UPDATE leases SET node_id = NULL WHERE node_id = ?1")
        .and_then(|mut s| s.execute([node_id]))
        .map_err(unavailable)?;
    Ok(())
}

pub(super) fn nodes(c: &Connection) -> StoreResult<Vec<NodeRecord>> {
    c.prepare_cached(
        "SELECT n.id, n.info, n.started_at, n.heartbeat_at, n.expires_at, n.expires_at > ?1 AS live, \
         (SELECT count(*) FROM leases l WHERE l.node_id = n.id) \
         FROM nodes n ORDER BY live DESC, n.id",
    )
    .and_then(|mut s| {
        s.query_map([now_ms()], |r| {
            Ok(NodeRecord {
                id: r.get(0)?,
                info: r.get(1)?,
                started_at_ms: r.get(2)?,
                heartbeat_at_ms: r.get(3)?,
                expires_at_ms: r.get(4)?,
                live: r.get(5)?,
                owned: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()
    })
    .map_err(unavailable)
}
