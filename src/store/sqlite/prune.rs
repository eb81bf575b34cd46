//! SQLite retention (part: retention): bounded prune batches on the writer thread, incremental
//! vacuum, and the switch of the file to `auto_vacuum = INCREMENTAL`.
//!
//! A prune batch is a write job like any other, so it shares the writer's group commit: it adds at
//! most a few bounded statements to one transaction and never holds the writer for long.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{json_list, unavailable};
use crate::model::delivery_id_range;
use crate::store::{PruneBatch, PruneCounts, PruneOutcome, StorageSize, StoreResult, WalkedDelivery};

/// Databases up to this size are switched to incremental vacuum when opened (a `VACUUM`, which
/// rewrites the file: about a second per 100 MiB); larger ones are left to the operator, since
/// the rewrite would hold up the start (see the README, "Retention").
pub(super) const AUTO_CONVERT_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// Sets `auto_vacuum = INCREMENTAL` on a new file (it must precede the first table), or on an
/// existing one up to [`AUTO_CONVERT_LIMIT_BYTES`] with a `VACUUM`. Larger files keep their
/// mode: freed pages are still reused, the file just does not shrink; a warning says what to run.
/// Runs before the schema is migrated and before WAL is switched on.
pub(super) fn enable_incremental_vacuum(conn: &Connection, path: &Path) -> StoreResult<()> {
    let mode: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).map_err(unavailable)?;
    if mode == 2 {
        return Ok(());
    }
    let tables: i64 = conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).map_err(unavailable)?;
    if tables == 0 {
        return conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;").map_err(unavailable);
    }
    let size = size(conn)?.bytes;
    if size > AUTO_CONVERT_LIMIT_BYTES {
        tracing::warn!(
            path = %path.display(),
            size_bytes = size,
            "this SQLite database predates incremental vacuum and is too large to convert at start: pruned space is \
             reused but the file will not shrink; to convert it, stop the server and run \
             `sqlite3 <file> 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'` (needs free disk space of about its size)"
        );
        return Ok(());
    }
    let started = std::time::Instant::now();
    conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;").map_err(unavailable)?;
    tracing::info!(
        path = %path.display(),
        size_bytes = size,
        took_ms = started.elapsed().as_millis() as u64,
        "switched the SQLite database to incremental vacuum"
    );
    Ok(())
}

/// One prune batch (see [`PruneBatch`]).
pub(super) fn prune(tx: &Transaction<'_>, b: &PruneBatch) -> StoreResult<PruneOutcome> {
    let limit = i64::from(b.limit.max(1));
    let mut out = PruneOutcome {
        events_cursor: b.events_after.clone(),
        deliveries_cursor: b.deliveries_after.clone(),
        ..PruneOutcome::default()
    };
    let mut pruned = PruneCounts::default();
    let mut events: BTreeSet<String> = BTreeSet::new();
    if b.walk_bound().is_some() {
        let after = b.deliveries_after.clone().unwrap_or_default();
        let rows: Vec<WalkedDelivery> = tx
            .prepare_cached(
                "SELECT id, event_id, status, completed_at, created_at FROM deliveries \
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![after, limit], |r| {
                    Ok(WalkedDelivery {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        status: r.get(2)?,
                        completed_at_ms: r.get(3)?,
                        created_at_ms: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(unavailable)?;
        let walk = b.walk(rows);
        out.deliveries_cursor = walk.cursor;
        out.kept_until_ms = walk.kept_until_ms;
        out.more |= walk.more;
        if !walk.delete.is_empty() {
            let ids: Vec<&str> = walk.delete.iter().map(|d| d.id.as_str()).collect();
            let list = json_list(&ids);
            tx.prepare_cached("DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each(?1))")
                .and_then(|mut s| s.execute([&list]))
                .map_err(unavailable)?;
            pruned.attempts += tx
                .prepare_cached("DELETE FROM attempts WHERE delivery_id IN (SELECT value FROM json_each(?1))")
                .and_then(|mut s| s.execute([&list]))
                .map_err(unavailable)? as u64;
            for d in walk.delete {
                pruned.count_delivery(&d.status);
                events.insert(d.event_id);
            }
        }
    }
    for event in &events {
        delete_event_if_unneeded(tx, event, &mut pruned)?;
    }
    if let Some(before) = b.success_before_ms {
        let after = b.events_after.clone().unwrap_or_default();
        // Read up to the first event too young to go (not past it: reading `created_at` of a
        // large event walks its payload's overflow pages), then delete.
        let mut old: Vec<String> = Vec::new();
        {
            let mut stmt = tx
                .prepare_cached("SELECT id, created_at FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
                .map_err(unavailable)?;
            let mut rows = stmt.query(params![after, limit]).map_err(unavailable)?;
            while let Some(row) = rows.next().map_err(unavailable)? {
                let created_at: i64 = row.get(1).map_err(unavailable)?;
                if created_at >= before {
                    break;
                }
                old.push(row.get(0).map_err(unavailable)?);
            }
        }
        out.more |= old.len() as i64 >= limit;
        for id in old {
            if !events.contains(&id) {
                delete_event_if_unneeded(tx, &id, &mut pruned)?;
            }
            out.events_cursor = Some(id);
        }
    }
    out.pruned = pruned;
    Ok(out)
}

/// Deletes an event and its idempotency keys when no delivery is left for it.
fn delete_event_if_unneeded(tx: &Transaction<'_>, event_id: &str, pruned: &mut PruneCounts) -> StoreResult<()> {
    let (lo, hi) = delivery_id_range(event_id);
    let needed = tx
        .prepare_cached("SELECT 1 FROM deliveries WHERE id >= ?1 AND id < ?2 LIMIT 1")
        .and_then(|mut s| s.query_row([lo, hi], |_| Ok(())).optional())
        .map_err(unavailable)?
        .is_some();
    if needed {
        return Ok(());
    }
    pruned.events += tx
        .prepare_cached("DELETE FROM events WHERE id = ?1")
        .and_then(|mut s| s.execute([event_id]))
        .map_err(unavailable)? as u64;
    pruned.idempotency_keys += tx
        .prepare_cached("DELETE FROM idempotency_keys WHERE event_id = ?1")
        .and_then(|mut s| s.execute([event_id]))
        .map_err(unavailable)? as u64;
    Ok(())
}

/// Frees up to `max_bytes` of the freelist's pages, in whole pages (the file shrinks at the next
/// checkpoint), and returns the size after it. Does nothing to a file without incremental vacuum.
pub(super) fn reclaim(tx: &Transaction<'_>, max_bytes: u64) -> StoreResult<StorageSize> {
    let max_pages = max_bytes / pragma(tx, "page_size")?.max(512);
    if max_pages > 0 {
        // One result row per page freed: step to the end, or only the first page goes.
        let mut stmt = tx.prepare(&format!("PRAGMA incremental_vacuum({max_pages})")).map_err(unavailable)?;
        let mut rows = stmt.query([]).map_err(unavailable)?;
        while rows.next().map_err(unavailable)?.is_some() {}
    }
    size(tx)
}

/// `page_count × page_size`, and the freelist's share of it.
pub(super) fn size(conn: &Connection) -> StoreResult<StorageSize> {
    let page = pragma(conn, "page_size")?;
    Ok(StorageSize {
        bytes: pragma(conn, "page_count")? * page,
        free_bytes: Some(pragma(conn, "freelist_count")? * page),
    })
}

/// A pragma whose value is a count (`page_size`, `page_count`, `freelist_count`).
fn pragma(conn: &Connection, name: &str) -> StoreResult<u64> {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).map(|v| v.max(0) as u64).map_err(unavailable)
}
