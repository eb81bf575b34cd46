//! Soak: constant publish load for minutes with a short retention, so the pruner runs many
//! times, sampling the database's size on disk and the process's RSS; both must stay flat.
//!
//! ```text
//! cargo bench --bench load -- soak --seconds 300 --rate 100 --fanout 2 --retention-secs 20 \
//!     --prune-secs 5 --sample-secs 15
//! ```
//!
//! The system is the default one (SQLite on disk, `synchronous=FULL`) with
//! `WEBHOOKS_RETENTION` = `--retention-secs` and `WEBHOOKS_PRUNE_INTERVAL` = `--prune-secs`.
//! Publishing: one ticker at `--rate` events per second, each publish its own task (a publish
//! that fails is counted, not retried), every event to `--fanout` webhooks answering 200 (the
//! receiver keeps counters only, so its own memory stays flat too).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use servio_webhooks::Webhooks;
use servio_webhooks::config::Retention;

use super::harness::{rss_bytes, settings, spec};
use super::receiver::Receiver;

/// Options of one soak run.
pub struct Soak {
    pub seconds: u64,
    pub rate: u64,
    pub fanout: usize,
    pub retention: Duration,
    pub prune_every: Duration,
    pub sample_every: Duration,
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Rows in the database's main tables, read through a read-only connection.
fn rows(db: &Path) -> (i64, i64, i64) {
    let Ok(c) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return (-1, -1, -1);
    };
    let count = |t: &str| c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0)).unwrap_or(-1);
    (count("events"), count("deliveries"), count("attempts"))
}

/// The sum of a metric's samples in the exposition.
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub fn soak(o: Soak) -> Value {
    let recv = Receiver::start(1);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("soak.db");
    let wal = dir.path().join("soak.db-wal");
    let mut s = settings(&db);
    // `--retention-secs 0`: the control run, keeping everything (as `WEBHOOKS_RETENTION=0`).
    s.retention.completed = if o.retention.is_zero() { Retention::KeepAll } else { Retention::For(o.retention) };
    s.retention.interval = o.prune_every;
    let started = Instant::now();
    let samples = actix_web::rt::System::new().block_on(async {
        let webhooks = Webhooks::start(s).await.unwrap();
        for i in 0..o.fanout {
            webhooks.register(None, spec(recv.url(&format!("/okx/{i}")), 64)).await.unwrap();
        }
        let published = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let ticker = {
            let (w, published, failed) = (webhooks.clone(), published.clone(), failed.clone());
            let every = Duration::from_secs_f64(1.0 / o.rate.max(1) as f64);
            let end = started + Duration::from_secs(o.seconds);
            actix_web::rt::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut i = 0u64;
                while Instant::now() < end {
                    tick.tick().await;
                    i += 1;
                    let (w, published, failed) = (w.clone(), published.clone(), failed.clone());
                    actix_web::rt::spawn(async move {
                        let data = json!({"orderId": format!("ord_{i}"), "table": "T4", "total": 25.07});
                        match w.publish("order.created", data).await {
                            Ok(_) => published.fetch_add(1, Ordering::Relaxed),
                            Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                        };
                    });
                }
            })
        };
        let mut samples = Vec::new();
        let mut next = started;
        loop {
            let elapsed = started.elapsed();
            let text = servio_webhooks::metrics::render(webhooks.metrics());
            let (events, deliveries, attempts) = rows(&db);
            samples.push(json!({
                "t_s": elapsed.as_secs(),
                "published": published.load(Ordering::Relaxed),
                "publish_errors": failed.load(Ordering::Relaxed),
                "delivered": recv.stats.total.load(Ordering::Relaxed),
                "events": events, "deliveries": deliveries, "attempts": attempts,
                "pruned_rows": metric_sum(&text, "webhook_pruned_rows_total"),
                "db_mib": round_mib(file_len(&db)),
                "wal_mib": round_mib(file_len(&wal)),
                "rss_mib": round_mib(rss_bytes()),
            }));
            eprintln!("   {}", samples.last().unwrap());
            if elapsed >= Duration::from_secs(o.seconds) {
                break;
            }
            next += o.sample_every;
            tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
        }
        ticker.await.unwrap();
        webhooks.shutdown().await;
        samples
    });
    let col = |k: &str| samples.iter().filter_map(|s| s[k].as_f64()).collect::<Vec<f64>>();
    let (db, rss) = (col("db_mib"), col("rss_mib"));
    // After the first retention and prune interval have passed: the steady state.
    let warm = (o.retention + o.prune_every * 2).as_secs();
    let steady = |k: &str| -> (f64, f64) {
        let v: Vec<f64> =
            samples.iter().filter(|s| s["t_s"].as_u64() >= Some(warm)).filter_map(|s| s[k].as_f64()).collect();
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        (min, max)
    };
    json!({
        "scenario": "soak", "seconds": o.seconds, "rate": o.rate, "fanout": o.fanout,
        "retention_s": o.retention.as_secs(), "prune_every_s": o.prune_every.as_secs(),
        "db_mib_max": db.iter().copied().fold(0.0, f64::max), "rss_mib_max": rss.iter().copied().fold(0.0, f64::max),
        "steady_db_mib": steady("db_mib"), "steady_rss_mib": steady("rss_mib"), "steady_deliveries": steady("deliveries"),
        "samples": samples,
    })
}

fn round_mib(bytes: u64) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0
}
