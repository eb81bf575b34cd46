//! PostgreSQL for the load harness: a fresh schema per run (`LOAD_DATABASE_URL`, default the
//! machine's `postgres://postgres@127.0.0.1:5432/test`), and what the server spent on a run: CPU
//! of every `postgres` process, WAL bytes, transactions and rows written.

#![allow(dead_code, unreachable_pub, missing_docs)]

use serde_json::{Value, json};
use tokio_postgres::NoTls;

/// The server the PostgreSQL scenarios use: `LOAD_DATABASE_URL`, else the tests' server.
pub fn base_url() -> String {
    std::env::var("LOAD_DATABASE_URL")
        .or_else(|_| std::env::var("WEBHOOKS_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Whether the throughput scenarios run on PostgreSQL (`LOAD_DATABASE_URL` set).
pub fn selected() -> bool {
    std::env::var("LOAD_DATABASE_URL").is_ok()
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.expect("PostgreSQL reachable at LOAD_DATABASE_URL");
    tokio::spawn(conn);
    client
}

/// A schema of its own, dropped with it.
pub struct PgSchema {
    /// Connection URL selecting the schema.
    pub url: String,
    base: String,
    name: String,
}

impl PgSchema {
    pub fn create() -> Self {
        let base = base_url();
        let name = format!("load_{}", uuid::Uuid::now_v7().simple());
        let create = format!("CREATE SCHEMA {name}");
        let b = base.clone();
        std::thread::spawn(move || block_on(async { connect(&b).await.batch_execute(&create).await.unwrap() }))
            .join()
            .expect("creating a schema");
        let mut url = url::Url::parse(&base).unwrap();
        url.query_pairs_mut().append_pair("options", &format!("-csearch_path={name}"));
        Self { url: url.to_string(), base, name }
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            block_on(async { connect(&base).await.batch_execute(&format!("DROP SCHEMA {name} CASCADE")).await })
        })
        .join();
    }
}

/// Counters of the PostgreSQL server at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct PgSample {
    /// CPU seconds of every `postgres` process (backends and background workers).
    pub cpu_secs: f64,
    /// WAL position, bytes.
    pub wal_bytes: i64,
    /// Committed transactions in the database.
    pub commits: i64,
    /// Rows inserted, updated or deleted in the database.
    pub rows_written: i64,
}

/// CPU seconds of all processes named `postgres` (clock ticks of 10 ms).
fn postgres_cpu() -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        if let Some((comm, secs)) = super::harness::ticks(&stat)
            && comm == "postgres"
        {
            total += secs;
        }
    }
    total
}

/// Reads the counters. The statistics views lag by up to a second (backends flush them at most
/// once a second), so callers wait a moment after a run before the second sample.
pub fn sample() -> PgSample {
    // On a thread of its own: callers may be inside an async runtime.
    std::thread::spawn(sample_now).join().expect("sampling PostgreSQL")
}

fn sample_now() -> PgSample {
    let base = base_url();
    let (wal_bytes, commits, rows_written) = block_on(async {
        let c = connect(&base).await;
        let wal: i64 =
            c.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint", &[]).await.unwrap().get(0);
        let row = c
            .query_one(
                "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database \
                 WHERE datname = current_database()",
                &[],
            )
            .await
            .unwrap();
        (wal, row.get::<_, i64>(0), row.get::<_, i64>(1))
    });
    PgSample { cpu_secs: postgres_cpu(), wal_bytes, commits, rows_written }
}

/// Mean of each numeric field over several cost objects.
pub fn mean_cost(costs: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    let Some(first) = costs.first().and_then(Value::as_object) else { return Value::Null };
    for key in first.keys() {
        let vals: Vec<f64> = costs.iter().filter_map(|c| c[key].as_f64()).collect();
        out.insert(key.clone(), json!(round(vals.iter().sum::<f64>() / vals.len().max(1) as f64, 2)));
    }
    Value::Object(out)
}

/// What PostgreSQL spent between two samples, per delivery.
pub fn cost(before: &PgSample, after: &PgSample, deliveries: u64) -> Value {
    let d = deliveries.max(1) as f64;
    json!({
        "pg_cpu_us": round((after.cpu_secs - before.cpu_secs) * 1e6 / d, 1),
        "pg_wal_bytes": round((after.wal_bytes - before.wal_bytes) as f64 / d, 0),
        "pg_commits_per_1000": round((after.commits - before.commits) as f64 * 1000.0 / d, 1),
        "pg_rows_written": round((after.rows_written - before.rows_written) as f64 / d, 2),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}
