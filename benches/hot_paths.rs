//! Criterion micro-benchmarks for the hot, mostly pure parts of the delivery path: signing, the
//! retry policy, the dispatcher's per-publish fan-out planning and the SQLite ledger commit.
//!
//! Run with `cargo bench --bench hot_paths`; results land in `target/criterion/`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use servio_webhooks::catalog::{EventCatalog, Subscription};
use servio_webhooks::model::{DeliveryStatus, WebhookRecord, delivery_id, new_event_id};
use servio_webhooks::retry::{AttemptOutcome, Jitter, RetryConfig, classify, parse_retry_after};
use servio_webhooks::signing::{self, DEFAULT_TOLERANCE, SigningKey, headers, signature_header};
use servio_webhooks::store::sqlite::SqliteStore;
use servio_webhooks::store::{
    AttemptRecord, AttemptUpdate, Fence, NewDelivery, NewEvent, NextStep, Store, StoreOptions, WriteBatch,
};

/// A Standard Webhooks test-vector secret.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A second secret, as during a rotation.
const SECRET_2: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const MSG_ID: &str = "evt_0190f7a2c3d47e8f9a0b1c2d3e4f5a6b";
const TS: i64 = 1_700_000_000;

/// JSON-ish bytes of exactly `len` bytes, so the MAC sees a realistic byte mix.
fn payload(len: usize) -> Vec<u8> {
    let unit = br#"{"id":"ord_123","status":"preparing","items":[{"sku":"PZ-MARG","qty":2}],"total":2590},"#;
    unit.iter().copied().cycle().take(len).collect()
}

fn signing_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("signing");
    group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_secs(1));
    let key = SigningKey::from_secret(SECRET).unwrap();
    let rotation = [key.clone(), SigningKey::from_secret(SECRET_2).unwrap()];
    for (label, size) in [("256B", 256usize), ("1KiB", 1024), ("16KiB", 16 * 1024), ("256KiB", 256 * 1024)] {
        let body = payload(size);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("sign_v1", label), &body, |b, body| {
            b.iter(|| key.sign_v1(black_box(MSG_ID), black_box(TS), black_box(body)))
        });
        group.bench_with_input(BenchmarkId::new("sign_body_hex", label), &body, |b, body| {
            b.iter(|| key.sign_body_hex(black_box(body)))
        });
        // Two keys: the header during a secret rotation (one key is just `sign_v1`).
        group.bench_with_input(BenchmarkId::new("signature_header_2keys", label), &body, |b, body| {
            b.iter(|| signature_header(black_box(&rotation), black_box(MSG_ID), black_box(TS), black_box(body)))
        });
    }

    let body = payload(1024);
    let sig = key.sign_v1(MSG_ID, TS, &body);
    let ts = TS.to_string();
    let now = UNIX_EPOCH + Duration::from_secs(TS as u64 + 10);
    let lookup = |name: &str| match name {
        headers::WEBHOOK_ID => Some(MSG_ID),
        headers::WEBHOOK_TIMESTAMP => Some(ts.as_str()),
        headers::WEBHOOK_SIGNATURE => Some(sig.as_str()),
        _ => None,
    };
    assert_eq!(signing::verify_at(SECRET, lookup, &body, now, DEFAULT_TOLERANCE), Ok(()));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function(BenchmarkId::new("verify_at", "1KiB"), |b| {
        b.iter(|| signing::verify_at(black_box(SECRET), lookup, black_box(&body), now, DEFAULT_TOLERANCE))
    });
    group.finish();
}

fn retry_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("retry_policy");
    group.measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(500));
    for (name, jitter) in [("none", Jitter::None), ("proportional", Jitter::Proportional), ("full", Jitter::Full)] {
        let config = RetryConfig { jitter, ..RetryConfig::default() };
        for k in 1..=5u32 {
            group.bench_function(BenchmarkId::new(format!("delay/{name}"), k), |b| {
                b.iter(|| black_box(&config).delay(black_box(k), black_box(0.37)))
            });
        }
    }

    let outcomes = [
        ("http_200", AttemptOutcome::Response { status: 200, retry_after: None }),
        ("http_503_retry_after", AttemptOutcome::Response { status: 503, retry_after: Some(Duration::from_secs(30)) }),
        ("http_404", AttemptOutcome::Response { status: 404, retry_after: None }),
        ("timeout", AttemptOutcome::Timeout),
        ("connect_error", AttemptOutcome::Connect("tcp connect error: Connection refused (os error 111)".into())),
    ];
    for (name, outcome) in &outcomes {
        group.bench_with_input(BenchmarkId::new("classify", name), outcome, |b, o| b.iter(|| classify(black_box(o))));
    }

    // Sun, 06 Nov 1994 08:49:37 GMT; the date below is two minutes later.
    let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
    for (name, value) in [("seconds", "120"), ("http_date", "Sun, 06 Nov 1994 08:51:37 GMT")] {
        assert_eq!(parse_retry_after(value, now), Some(Duration::from_secs(120)));
        group.bench_function(BenchmarkId::new("parse_retry_after", name), |b| {
            b.iter(|| parse_retry_after(black_box(value), black_box(now)))
        });
    }
    group.finish();
}

/// A registry of `n` webhooks: a quarter subscribe to everything, the rest to one to three types.
fn registry(catalog: &EventCatalog, n: usize) -> HashMap<Arc<str>, Subscription> {
    let lists: [Option<Vec<String>>; 4] = [
        None,
        Some(vec!["order.created".into()]),
        Some(vec!["order.updated".into(), "order.deleted".into()]),
        Some(vec!["table.updated".into(), "inventory.low".into(), "order.created".into()]),
    ];
    (0..n)
        .map(|i| {
            let id: Arc<str> = Arc::from(format!("wh_{i:06}"));
            let sub = catalog.subscription(lists[i % lists.len()].as_deref()).unwrap();
            (id, sub)
        })
        .collect()
}

/// The dispatcher's per-publish planning (`DispatcherActor::plan`, which is crate-private), rebuilt
/// from public pieces: a fresh event id, then one delivery per matching webhook.
fn plan(registry: &HashMap<Arc<str>, Subscription>, event_type: &str) -> (String, Vec<NewDelivery>) {
    let id = new_event_id();
    let mut deliveries = Vec::new();
    for (webhook_id, subscription) in registry {
        if subscription.matches(event_type) {
            let seq = deliveries.len() as u32;
            deliveries.push(NewDelivery { id: delivery_id(&id, seq), webhook_id: webhook_id.clone() });
        }
    }
    (id, deliveries)
}

fn fan_out_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out_planning");
    group.measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    let catalog = EventCatalog::default();
    for n in [10usize, 100, 10_000] {
        let reg = registry(&catalog, n);
        let expected = (0..n).filter(|i| i % 4 != 2).count();
        assert_eq!(plan(&reg, "order.created").1.len(), expected);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("plan_order_created", n), &reg, |b, reg| {
            b.iter(|| plan(black_box(reg), black_box("order.created")))
        });
    }
    group.throughput(Throughput::Elements(1));
    group.bench_function("resolve/known", |b| b.iter(|| catalog.resolve(black_box("inventory.low"))));
    group.bench_function("resolve/unknown", |b| b.iter(|| catalog.resolve(black_box("order.shipped"))));
    group.finish();
}

const EVENTS_PER_BATCH: usize = 100;
const DELIVERIES_PER_EVENT: usize = 10;
const DELIVERIES_PER_BATCH: usize = EVENTS_PER_BATCH * DELIVERIES_PER_EVENT;

/// What the ledger writes for 100 publishes to 10 subscribed webhooks each.
fn event_batch(webhooks: &[Arc<str>]) -> WriteBatch {
    let events = (0..EVENTS_PER_BATCH)
        .map(|_| {
            let id = new_event_id();
            NewEvent {
                deliveries: webhooks
                    .iter()
                    .enumerate()
                    .map(|(i, w)| NewDelivery { id: delivery_id(&id, i as u32), webhook_id: w.clone() })
                    .collect(),
                payload: Bytes::from(format!(
                    r#"{{"id":"{id}","event":"order.created","data":{{"orderId":"ord_123","status":"preparing","total":2590}},"timestamp":"2026-11-28T00:00:00.000Z"}}"#
                )),
                id,
                event_type: "order.created".into(),
                timestamp: "2026-11-28T00:00:00.000Z".into(),
                created_at_ms: 5_000,
                idempotency_key: None,
                tenant: None,
            }
        })
        .collect();
    WriteBatch { events, ..Default::default() }
}

/// A registration for the benchmark's deliveries (deliveries of unknown webhooks are dropped).
fn bench_webhook(id: &str) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        url: format!("https://example.com/{id}"),
        secret: SECRET.into(),
        events: None,
        headers: Default::default(),
        retry_config: RetryConfig::default(),
        max_in_flight: None,
        rate_limit_per_second: None,
        ordered: false,
        description: None,
        disabled_at_ms: None,
        disabled_reason: None,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        revision: 0,
        tenant: None,
        previous_secret: None,
        previous_secret_until_ms: None,
    }
}

/// One successful first attempt for every delivery of `events`, under the webhooks' leases.
fn success_batch(events: &WriteBatch, leases: &HashMap<Arc<str>, Fence>) -> WriteBatch {
    let attempts = events
        .events
        .iter()
        .flat_map(|e| &e.deliveries)
        .map(|d| AttemptUpdate {
            fence: leases[&d.webhook_id].clone(),
            delivery_id: d.id.clone(),
            attempt: AttemptRecord {
                attempt: 1,
                at_ms: 6_000,
                duration_ms: 12,
                status_code: Some(200),
                error: None,
                response_body: Some("ok".into()),
            },
            probes: 0,
            next: NextStep::Succeeded,
        })
        .collect();
    WriteBatch { attempts, ..Default::default() }
}

fn ledger_benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let webhooks: Vec<Arc<str>> = (0..DELIVERIES_PER_EVENT).map(|i| Arc::from(format!("wh_{i:02}"))).collect();
    let mut group = c.benchmark_group("ledger_commit");
    group
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(DELIVERIES_PER_BATCH as u64));
    for full_sync in [true, false] {
        let sync = if full_sync { "full_sync" } else { "normal_sync" };
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let options = StoreOptions { sqlite_full_sync: full_sync, ..StoreOptions::default() };
        let store = rt.block_on(SqliteStore::open(&url, &options)).unwrap();
        for w in &webhooks {
            rt.block_on(store.upsert_webhook(bench_webhook(w))).unwrap();
        }
        let ids = webhooks.iter().map(|w| w.to_string()).collect();
        let leases: HashMap<Arc<str>, Fence> = rt
            .block_on(store.claim_leases("bench", ids, Duration::from_secs(3600)))
            .unwrap()
            .into_iter()
            .map(|f| (f.webhook_id.clone(), f))
            .collect();

        // Sanity check: the attempt batch really flips pending deliveries to success.
        let events = event_batch(&webhooks);
        let probe = events.events[0].deliveries[0].id.clone();
        let updates = Arc::new(success_batch(&events, &leases));
        rt.block_on(store.apply(Arc::new(events))).unwrap();
        rt.block_on(store.apply(updates)).unwrap();
        let (probed, _) = rt.block_on(store.get_delivery(&probe)).unwrap().unwrap();
        assert_eq!(probed.status, DeliveryStatus::Success);

        // 100 new events × 10 deliveries in one group commit; building the batch is not timed.
        group.bench_function(BenchmarkId::new("insert_100x10", sync), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let batch = Arc::new(event_batch(&webhooks));
                    let start = Instant::now();
                    let out = rt.block_on(store.apply(batch)).unwrap();
                    total += start.elapsed();
                    assert_eq!(out.events.len(), EVENTS_PER_BATCH);
                }
                total
            })
        });

        // 1000 attempt outcomes (all succeeded) on deliveries inserted, untimed, just before.
        group.bench_function(BenchmarkId::new("succeed_1000", sync), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let events = event_batch(&webhooks);
                    let updates = Arc::new(success_batch(&events, &leases));
                    rt.block_on(store.apply(Arc::new(events))).unwrap();
                    let start = Instant::now();
                    rt.block_on(store.apply(updates)).unwrap();
                    total += start.elapsed();
                }
                total
            })
        });

        rt.block_on(store.close());
        drop(dir);
    }
    group.finish();
}

criterion_group!(benches, signing_benches, retry_benches, fan_out_benches, ledger_benches);
criterion_main!(benches);
