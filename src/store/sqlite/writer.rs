//! The SQLite connections: the writer thread's group commit and the pool of read connections.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{Semaphore, oneshot};

use super::unavailable;
use crate::store::{StoreError, StoreResult};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/sqlite/0001_init.sql"),
    include_str!("../../../migrations/sqlite/0002_cluster.sql"),
    include_str!("../../../migrations/sqlite/0003_node_leases.sql"),
    include_str!("../../../migrations/sqlite/0004_probes.sql"),
    include_str!("../../../migrations/sqlite/0005_lifecycle.sql"),
    include_str!("../../../migrations/sqlite/0006_replay.sql"),
    include_str!("../../../migrations/sqlite/0007_retention.sql"),
    include_str!("../../../migrations/sqlite/0008_tenants.sql"),
    include_str!("../../../migrations/sqlite/0009_pacing.sql"),
    include_str!("../../../migrations/sqlite/0010_prune_walk.sql"),
];

/// Most jobs one transaction takes; bounds the latency a single group adds.
pub(super) const MAX_GROUP: usize = 512;

/// A unit of work for the writer thread; see [`run_group`]. Jobs can run more than once: a
/// group that fails is rolled back and its jobs re-run one transaction each.
pub(super) trait WriteJob: Send {
    /// Runs inside a transaction, keeping its result; false if it failed.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller once the fate of the transaction is known.
    fn finish(self: Box<Self>, commit: StoreResult<()>);
}

pub(super) struct Job<F, T> {
    pub(super) f: F,
    pub(super) result: Option<StoreResult<T>>,
    pub(super) reply: oneshot::Sender<StoreResult<T>>,
}

impl<F, T> WriteJob for Job<F, T>
where
    T: Send + 'static,
    F: Fn(&Transaction<'_>) -> StoreResult<T> + Send,
{
    fn run(&mut self, tx: &Transaction<'_>) -> bool {
        let r = (self.f)(tx);
        let ok = r.is_ok();
        self.result = Some(r);
        ok
    }

    fn finish(self: Box<Self>, commit: StoreResult<()>) {
        let answer = match (self.result, commit) {
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => Err(StoreError::Unavailable("write job did not run".into())),
        };
        let _ = self.reply.send(answer);
    }
}

/// Writer-thread group commit: every job queued at this moment runs in one transaction, and one
/// commit (one fsync) answers them all. Should a job fail, the group is rolled back and each job
/// runs again in a transaction of its own, so one bad job cannot fail the others. (Savepoints
/// would isolate jobs too, but make SQLite copy every touched page into a sub-journal.)
pub(super) fn run_group(conn: &mut Connection, mut jobs: Vec<Box<dyn WriteJob>>) {
    if jobs.len() > 1 {
        match run_in_tx(conn, &mut jobs) {
            Some(commit) => {
                for job in jobs {
                    job.finish(commit.clone());
                }
                return;
            }
            None => tracing::debug!(jobs = jobs.len(), "a job of a write group failed; re-running them one by one"),
        }
    }
    for job in jobs {
        let mut one = vec![job];
        let commit = run_in_tx(conn, &mut one).unwrap_or(Ok(()));
        for job in one {
            job.finish(commit.clone());
        }
    }
}

/// Runs jobs in one transaction. `Some(commit result)` if all ran; `None` (rolled back) if one
/// failed and there were several. A lone failing job is finished with its own error.
fn run_in_tx(conn: &mut Connection, jobs: &mut [Box<dyn WriteJob>]) -> Option<StoreResult<()>> {
    // IMMEDIATE: the write lock is taken at BEGIN, where SQLite waits for it (busy_timeout). A
    // deferred transaction took it at its first write, after a read (an upsert reads first), and
    // SQLite answers such an upgrade with SQLITE_BUSY at once, without waiting: under concurrent
    // registrations about one run in twelve of `fleet --webhooks 30000` failed writes with
    // "database is locked".
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => return Some(Err(unavailable(e))),
    };
    let mut all_ok = true;
    for job in jobs.iter_mut() {
        if !job.run(&tx) {
            all_ok = false;
            break;
        }
    }
    if !all_ok {
        let _ = tx.rollback();
        // A single job keeps its own error; the caller re-runs members of a larger group.
        return if jobs.len() == 1 { Some(Ok(())) } else { None };
    }
    Some(tx.commit().map_err(unavailable))
}

/// Read-only connections, opened on demand and reused; `permits` bounds how many are in use.
pub(super) struct ReadPool {
    pub(super) path: PathBuf,
    pub(super) idle: Mutex<Vec<Connection>>,
    pub(super) permits: Semaphore,
}

impl ReadPool {
    pub(super) fn take(&self) -> StoreResult<Connection> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(unavailable)?;
        // The bundled SQLite (3.54, built with STAT4) otherwise recompiles a statement with a LEFT
        // JOIN whenever a new value is bound to a parameter its WHERE compares: the webhook view
        // (`w.id = ?1` with its health, lease and node joined) took 43 µs a read instead of 10,
        // and registering a fleet spent most of its reads recompiling it. With the query planner
        // stability guarantee a statement keeps the plan it was prepared with; none of the read
        // queries needs a plan chosen by a bound value (their partial-index conditions are literals).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true).map_err(unavailable)?;
        Ok(conn)
    }

    pub(super) fn give_back(&self, conn: Connection) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }
}

/// The page size of a new database file.
const PAGE_SIZE: u32 = 16 * 1024;

/// Opens the write connection (WAL, the chosen sync level) and migrates the schema.
pub(super) fn open_writer(path: &Path, full_sync: bool) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(unavailable)?;
    // A new file gets 16 KiB pages (SQLite's default is 4 KiB): a commit of the fan-out path
    // touches fewer pages, so the writer spends about 7 % less CPU per delivery, with the same
    // fleet RSS and backlog figures (BENCHMARKS.md, "16 KiB pages"). SQLite applies it to a new
    // file only (or at a `VACUUM` outside WAL mode): files of earlier versions keep 4 KiB. The WAL
    // is checkpointed at SQLite's default of 1 000 pages, so under steady writes it now grows to
    // about 16 MiB before it starts over (4 MiB before); checkpointing at 4 MiB of 16 KiB pages
    // gave back about half of the writer's gain.
    conn.execute_batch(&format!("PRAGMA page_size={PAGE_SIZE};")).map_err(unavailable)?;
    // Before WAL and the schema: a new file must get its vacuum mode before its first table.
    super::prune::enable_incremental_vacuum(&conn, path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!("could not enable WAL (journal_mode={mode})")));
    }
    conn.execute_batch(if full_sync { "PRAGMA synchronous=FULL;" } else { "PRAGMA synchronous=NORMAL;" })
        .map_err(unavailable)?;
    // 8 MiB of page cache: the writer touches the tails of its tables and indexes, and the OS
    // keeps the rest of the file. 32 MiB (before) bought no throughput, drain or restart speed on
    // the load harness and cost a fleet of 100 000 idle webhooks about 300 bytes each, the cache
    // having filled while they registered (BENCHMARKS.md, "The writer's page cache").
    conn.execute_batch("PRAGMA cache_size=-8192;").map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unavailable)?;
    let version = usize::try_from(version).map_err(crate::store::common::corrupt)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1)).map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK;");
            StoreError::Unavailable(format!("migration {} failed: {e}", i + 1))
        })?;
    }
    Ok(())
}
