//! The embedded default: SQLite (bundled) in WAL mode.
//!
//! SQLite allows one writer at a time, so one dedicated thread owns the write connection. It runs
//! every job queued at a moment in one transaction (group commit, a savepoint per job), so a burst
//! of registrations or ledger batches costs one fsync.
//! Reads run on a small pool of read-only connections on tokio's blocking threads, so neither
//! side ever blocks an actix arbiter.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, params};
use tokio::sync::{Semaphore, oneshot};

use super::*;
use crate::model::{DeliveryStatus, WebhookRecord, delivery_id_range};
use crate::retry::RetryConfig;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/0001_init.sql")];

/// A unit of work for the writer thread; see [`run_group`]. Jobs can run more than once: a
/// group that fails is rolled back and its jobs re-run one transaction each.
trait WriteJob: Send {
    /// Runs inside a transaction, keeping its result; false if it failed.
    fn run(&mut self, tx: &Transaction<'_>) -> bool;
    /// Answers the caller once the fate of the transaction is known.
    fn finish(self: Box<Self>, commit: StoreResult<()>);
}

struct Job<F, T> {
    f: F,
    result: Option<StoreResult<T>>,
    reply: oneshot::Sender<StoreResult<T>>,
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

/// Most jobs one transaction takes; bounds the latency a single group adds.
const MAX_GROUP: usize = 512;

/// Writer-thread group commit: every job queued at this moment runs in one transaction, and one
/// commit (one fsync) answers them all. Should a job fail, the group is rolled back and each job
/// runs again in a transaction of its own, so one bad job cannot fail the others. (Savepoints
/// would isolate jobs too, but make SQLite copy every touched page into a sub-journal.)
fn run_group(conn: &mut Connection, mut jobs: Vec<Box<dyn WriteJob>>) {
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
    let tx = match conn.transaction() {
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

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<Box<dyn WriteJob>>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    readers: Arc<ReadPool>,
}

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReadPool {
    fn take(&self) -> StoreResult<Connection> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(unavailable)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(unavailable)?;
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }
}

fn unavailable(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// `sqlite://webhooks.db` → `webhooks.db`; `sqlite:///var/lib/x.db` → `/var/lib/x.db`.
pub fn path_from_url(url: &str) -> StoreResult<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Config(format!("not a sqlite url: {url}")))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return Err(StoreError::Config("sqlite url needs a file path, e.g. sqlite://webhooks.db".into()));
    }
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database a `sqlite://` URL names.
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let path = path_from_url(url)?;
        let full_sync = options.sqlite_full_sync;
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel::<Box<dyn WriteJob>>();
        let writer_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("webhooks-sqlite-writer".into())
            .spawn(move || {
                let mut conn = match open_writer(&writer_path, full_sync) {
                    Ok(c) => {
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => jobs.push(job),
                            Err(_) => break,
                        }
                    }
                    run_group(&mut conn, jobs);
                }
                let _ = conn.execute_batch("PRAGMA optimize;");
            })
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        ready_rx.await.map_err(|_| StoreError::Unavailable("sqlite writer thread died".into()))??;
        Ok(Self {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            readers: Arc::new(ReadPool {
                path,
                idle: Mutex::new(Vec::new()),
                permits: Semaphore::new(options.read_connections.max(1)),
            }),
        })
    }

    /// Runs `f` on the writer thread, inside a group transaction, and waits for the commit.
    async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: Fn(&Transaction<'_>) -> StoreResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Job { f, result: None, reply });
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sender.ok_or(StoreError::Closed)?.send(job).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let _permit = self.readers.permits.acquire().await.map_err(|_| StoreError::Closed)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.give_back(conn);
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

fn open_writer(path: &std::path::Path, full_sync: bool) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(unavailable)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!("could not enable WAL (journal_mode={mode})")));
    }
    conn.execute_batch(if full_sync { "PRAGMA synchronous=FULL;" } else { "PRAGMA synchronous=NORMAL;" })
        .map_err(unavailable)?;
    // 32 MiB of page cache: the hot index pages of a large backlog stay in memory.
    conn.execute_batch("PRAGMA cache_size=-32768;").map_err(unavailable)?;
    conn.set_prepared_statement_cache_capacity(64);
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> StoreResult<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(unavailable)?;
    let version = usize::try_from(version).map_err(corrupt)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "database schema version {version} is newer than this binary ({})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        conn.execute_batch(&format!("BEGIN; {sql}; PRAGMA user_version = {}; COMMIT;", i + 1))
            .map_err(|e| StoreError::Unavailable(format!("migration {} failed: {e}", i + 1)))?;
    }
    Ok(())
}

const WEBHOOK_COLUMNS: &str = "id, url, secret, events, headers, retry_config, max_in_flight, description, \
     disabled_at, disabled_reason, created_at, updated_at";

fn webhook_from_row(r: &Row<'_>) -> rusqlite::Result<Result<WebhookRecord, StoreError>> {
    let events: Option<String> = r.get(3)?;
    let headers: String = r.get(4)?;
    let retry: String = r.get(5)?;
    let max_in_flight: Option<i64> = r.get(6)?;
    let parse = || -> Result<WebhookRecord, StoreError> {
        Ok(WebhookRecord {
            id: r.get(0).map_err(corrupt)?,
            url: r.get(1).map_err(corrupt)?,
            secret: r.get(2).map_err(corrupt)?,
            events: events.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?,
            headers: serde_json::from_str(&headers).map_err(corrupt)?,
            retry_config: serde_json::from_str::<RetryConfig>(&retry).map_err(corrupt)?,
            max_in_flight: max_in_flight.map(|n| n as u32),
            description: r.get(7).map_err(corrupt)?,
            disabled_at_ms: r.get(8).map_err(corrupt)?,
            disabled_reason: r.get(9).map_err(corrupt)?,
            created_at_ms: r.get(10).map_err(corrupt)?,
            updated_at_ms: r.get(11).map_err(corrupt)?,
        })
    };
    Ok(parse())
}

fn collect_webhooks(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> StoreResult<Vec<WebhookRecord>> {
    let rows = stmt.query_map(params, webhook_from_row).map_err(unavailable)?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(unavailable)??);
    }
    Ok(out)
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
        attempts: attempts as u32,
        created_at_ms: r.get(7)?,
        last_attempt_at_ms: r.get(8)?,
        next_attempt_at_ms: if status == "pending" { r.get(9)? } else { None },
        completed_at_ms: r.get(10)?,
        last_status_code: code.map(|c| c as u16),
        last_error: r.get(12)?,
    })
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
            "SELECT e.id, e.event_type, e.timestamp FROM idempotency_keys k JOIN events e ON e.id = k.event_id \
             WHERE k.key = ?1",
        )
        .and_then(|mut s| {
            s.query_row([key], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
                .optional()
        })
        .map_err(unavailable)?;
    let Some((id, event_type, timestamp)) = found else {
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
    Ok(Some(ExistingEvent { id, event_type, timestamp, deliveries }))
}

fn apply_batch(tx: &Transaction<'_>, batch: &WriteBatch) -> StoreResult<BatchOutcome> {
    let mut outcome = BatchOutcome { events: Vec::with_capacity(batch.events.len()), disabled: Vec::new() };
    if !batch.events.is_empty() {
        let mut ins_event = tx
            .prepare_cached(
                "INSERT INTO events (id, event_type, payload, timestamp, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(unavailable)?;
        let mut ins_delivery = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) \
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4)",
            )
            .map_err(unavailable)?;
        for ev in &batch.events {
            if let Some(key) = &ev.idempotency_key
                && let Some(existing) = find_by_idempotency_key(tx, key)?
            {
                outcome.events.push(EventWrite::Duplicate(existing));
                continue;
            }
            let payload = std::str::from_utf8(&ev.payload).map_err(corrupt)?;
            ins_event
                .execute(params![ev.id, ev.event_type, payload, ev.timestamp, ev.created_at_ms])
                .map_err(unavailable)?;
            if let Some(key) = &ev.idempotency_key {
                tx.prepare_cached("INSERT INTO idempotency_keys (key, event_id) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute(params![key, ev.id]))
                    .map_err(unavailable)?;
            }
            for d in &ev.deliveries {
                ins_delivery.execute(params![d.id, ev.id, &*d.webhook_id, ev.created_at_ms]).map_err(unavailable)?;
            }
            outcome.events.push(EventWrite::Created);
        }
    }
    if !batch.attempts.is_empty() {
        let mut upd = tx
            .prepare_cached(
                "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, last_attempt_at = ?5, \
                 completed_at = ?6, last_status_code = ?7, last_error = ?8 WHERE id = ?1 AND status = 'pending'",
            )
            .map_err(unavailable)?;
        let mut succeeded = tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'success', attempts = ?2, next_attempt_at = NULL, last_attempt_at = ?3, \
                 completed_at = ?4, last_status_code = ?5, last_error = NULL, last_duration_ms = ?6, \
                 last_response_body = ?7 WHERE id = ?1 AND status = 'pending'",
            )
            .map_err(unavailable)?;
        let mut ins = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO attempts (delivery_id, attempt, at, duration_ms, status_code, error, response_body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(unavailable)?;
        for u in &batch.attempts {
            let a = &u.attempt;
            let end = a.at_ms + a.duration_ms as i64;
            let duration = a.duration_ms as i64;
            if u.next == NextStep::Succeeded {
                // The successful attempt is kept on the delivery row (see the schema).
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
                .execute(params![u.delivery_id, status, a.attempt, next_at, a.at_ms, completed, a.status_code, a.error])
                .map_err(unavailable)?;
            if changed == 1 {
                ins.execute(params![
                    u.delivery_id,
                    a.attempt,
                    a.at_ms,
                    duration,
                    a.status_code,
                    a.error,
                    a.response_body
                ])
                .map_err(unavailable)?;
            }
        }
    }
    if !batch.failures.is_empty() {
        let mut fail = tx
            .prepare_cached(
                "UPDATE deliveries SET status = 'failed', completed_at = ?3, last_error = ?2, next_attempt_at = NULL \
                 WHERE id = ?1 AND status = 'pending'",
            )
            .map_err(unavailable)?;
        let now = crate::model::now_ms();
        for (id, reason) in &batch.failures {
            fail.execute(params![id, reason, now]).map_err(unavailable)?;
        }
    }
    for d in &batch.disables {
        tx.prepare_cached("UPDATE webhooks SET disabled_at = ?2, disabled_reason = ?3 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![d.webhook_id, d.at_ms, d.reason]))
            .map_err(unavailable)?;
        let n = fail_pending_of_webhook(tx, &d.webhook_id, &d.reason, d.at_ms)?;
        outcome.disabled.push((d.webhook_id.clone(), n));
    }
    Ok(outcome)
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_webhook(&self, w: WebhookRecord) -> StoreResult<Upserted> {
        let events = w.events.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?;
        let headers = serde_json::to_string(&w.headers).map_err(corrupt)?;
        let retry = serde_json::to_string(&w.retry_config).map_err(corrupt)?;
        self.write(move |tx| {
            let existed: bool = tx
                .query_row("SELECT EXISTS(SELECT 1 FROM webhooks WHERE id = ?1)", [&w.id], |r| r.get(0))
                .map_err(unavailable)?;
            tx.execute(
                "INSERT INTO webhooks (id, url, secret, events, headers, retry_config, max_in_flight, description, \
                 disabled_at, disabled_reason, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT(id) DO UPDATE SET url = excluded.url, secret = excluded.secret, events = excluded.events, \
                 headers = excluded.headers, retry_config = excluded.retry_config, max_in_flight = excluded.max_in_flight, \
                 description = excluded.description, disabled_at = excluded.disabled_at, \
                 disabled_reason = excluded.disabled_reason, updated_at = excluded.updated_at",
                params![
                    w.id,
                    w.url,
                    w.secret,
                    events,
                    headers,
                    retry,
                    w.max_in_flight.map(i64::from),
                    w.description,
                    w.disabled_at_ms,
                    w.disabled_reason,
                    w.created_at_ms,
                    w.updated_at_ms
                ],
            )
            .map_err(unavailable)?;
            Ok(if existed { Upserted::Replaced } else { Upserted::Created })
        })
        .await
    }

    async fn delete_webhook(&self, id: &str, at_ms: i64) -> StoreResult<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let n = tx.execute("DELETE FROM webhooks WHERE id = ?1", [&id]).map_err(unavailable)?;
            if n == 0 {
                return Ok(false);
            }
            fail_pending_of_webhook(tx, &id, "webhook deleted", at_ms)?;
            Ok(true)
        })
        .await
    }

    async fn get_webhook(&self, id: &str) -> StoreResult<Option<WebhookRecord>> {
        let id = id.to_string();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"))
                .map_err(unavailable)?;
            Ok(collect_webhooks(&mut stmt, [id])?.pop())
        })
        .await
    }

    async fn list_webhooks(&self, after: Option<String>, limit: u32) -> StoreResult<Vec<WebhookRecord>> {
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id > ?1 ORDER BY id LIMIT ?2"))
                .map_err(unavailable)?;
            collect_webhooks(&mut stmt, params![after.unwrap_or_default(), limit])
        })
        .await
    }

    async fn load_webhooks(&self) -> StoreResult<Vec<WebhookRecord>> {
        self.read(|c| {
            let mut stmt =
                c.prepare(&format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id")).map_err(unavailable)?;
            collect_webhooks(&mut stmt, [])
        })
        .await
    }

    async fn apply(&self, batch: Arc<WriteBatch>) -> StoreResult<BatchOutcome> {
        if batch.is_empty() {
            return Ok(BatchOutcome::default());
        }
        self.write(move |tx| apply_batch(tx, &batch)).await
    }

    async fn load_pending(&self, webhook_id: &str, start: PageStart, limit: u32) -> StoreResult<Vec<PendingDelivery>> {
        let webhook_id = webhook_id.to_string();
        self.read(move |c| {
            let (op, from) = match start {
                PageStart::Beginning => (">=", String::new()),
                PageStart::From(id) => (">=", id),
                PageStart::After(id) => (">", id),
            };
            let sql = format!(
                "SELECT d.id, d.event_id, e.event_type, e.payload, e.timestamp, d.attempts, d.next_attempt_at, d.created_at \
                 FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE d.webhook_id = ?1 AND d.status = 'pending' AND d.id {op} ?2 ORDER BY d.id LIMIT ?3"
            );
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(params![webhook_id, from, limit], |r| {
                    let payload: String = r.get(3)?;
                    let attempts: i64 = r.get(5)?;
                    let created: i64 = r.get(7)?;
                    Ok(PendingDelivery {
                        id: r.get(0)?,
                        event_id: r.get(1)?,
                        event_type: r.get(2)?,
                        payload: Bytes::from(payload),
                        timestamp: r.get(4)?,
                        attempts: attempts as u32,
                        next_attempt_at_ms: r.get::<_, Option<i64>>(6)?.unwrap_or(created),
                        created_at_ms: created,
                    })
                })
                .map_err(unavailable)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(unavailable)
        })
        .await
    }

    async fn recover(&self, at_ms: i64) -> StoreResult<Vec<(String, u64)>> {
        self.write(move |tx| {
            // One pass over the pending index; start-up time with a large backlog is this query.
            let counts = tx
                .prepare("SELECT webhook_id, count(*) FROM deliveries WHERE status = 'pending' GROUP BY webhook_id")
                .and_then(|mut stmt| {
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(unavailable)?;
            let mut exists = tx.prepare_cached("SELECT 1 FROM webhooks WHERE id = ?1").map_err(unavailable)?;
            let mut kept = Vec::with_capacity(counts.len());
            for (webhook_id, n) in counts {
                if exists.exists([&webhook_id]).map_err(unavailable)? {
                    kept.push((webhook_id, n));
                } else {
                    // Deleted while a publish for it was being committed (and the process stopped
                    // before the dispatcher could fail them).
                    fail_pending_of_webhook(tx, &webhook_id, "webhook deleted", at_ms)?;
                }
            }
            Ok(kept)
        })
        .await
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<(DeliveryRecord, Vec<AttemptRecord>)>> {
        let id = id.to_string();
        self.read(move |c| {
            let record = c
                .prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1"
                ))
                .and_then(|mut s| {
                    s.query_row([&id], |r| {
                        let d = delivery_from_row(r)?;
                        let success = success_attempt_from_row(r, &d)?;
                        Ok((d, success))
                    })
                    .optional()
                })
                .map_err(unavailable)?;
            let Some((record, success)) = record else { return Ok(None) };
            let mut stmt = c
                .prepare_cached(
                    "SELECT attempt, at, duration_ms, status_code, error, response_body FROM attempts \
                     WHERE delivery_id = ?1 ORDER BY attempt",
                )
                .map_err(unavailable)?;
            let attempts = stmt
                .query_map([&id], |r| {
                    let attempt: i64 = r.get(0)?;
                    let duration: i64 = r.get(2)?;
                    let code: Option<i64> = r.get(3)?;
                    Ok(AttemptRecord {
                        attempt: attempt as u32,
                        at_ms: r.get(1)?,
                        duration_ms: duration.max(0) as u64,
                        status_code: code.map(|c| c as u16),
                        error: r.get(4)?,
                        response_body: r.get(5)?,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(unavailable)?;
            let mut attempts: Vec<AttemptRecord> = attempts
                .into_iter()
                .filter(|a| a.attempt < record.attempts || record.status != DeliveryStatus::Success)
                .collect();
            attempts.extend(success);
            Ok(Some((record, attempts)))
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: DeliveryFilter,
        before: Option<String>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        self.read(move |c| {
            let mut sql =
                format!("SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(w) = filter.webhook_id {
                args.push(w);
                sql.push_str(&format!(" AND d.webhook_id = ?{}", args.len()));
            }
            if let Some(s) = filter.status {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND d.status = ?{}", args.len()));
            }
            if let Some(b) = before {
                args.push(b);
                sql.push_str(&format!(" AND d.id < ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY d.id DESC LIMIT {limit}"));
            let mut stmt = c.prepare_cached(&sql).map_err(unavailable)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), delivery_from_row)
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(unavailable)?;
            Ok(rows)
        })
        .await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(unavailable)).await
    }

    async fn close(&self) {
        let sender = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(sender);
        let handle = self.writer_thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        self.readers.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_database_urls() {
        assert_eq!(path_from_url("sqlite://webhooks.db").unwrap(), PathBuf::from("webhooks.db"));
        assert_eq!(path_from_url("sqlite:///var/lib/w.db").unwrap(), PathBuf::from("/var/lib/w.db"));
        assert_eq!(path_from_url("sqlite:w.db?mode=rwc").unwrap(), PathBuf::from("w.db"));
        assert!(path_from_url("sqlite://").is_err());
        assert!(path_from_url("sqlite::memory:").is_err());
    }
}
