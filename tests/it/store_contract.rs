//! The `Store` contract, written once against `Arc<dyn Store>`: every contract test below runs
//! on SQLite (`<test>::sqlite`) and on PostgreSQL (`<test>::pg`, a fresh schema per test; skipped
//! with a message when the server is unreachable, unless `CI=true`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use servio_webhooks::RetryConfig;
use servio_webhooks::delivery::health::EndpointState;
use servio_webhooks::model::{DeliveryStatus, WebhookRecord, delivery_id, new_event_id, now_ms};
use servio_webhooks::store::sqlite::SqliteStore;
use servio_webhooks::store::{self, *};
use tokio::sync::mpsc::Receiver;

use super::pg;

/// Where a test's data lives; more stores (other nodes) can be opened on it.
struct Backend {
    url: String,
    postgres: bool,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<pg::TestSchema>,
}

impl Backend {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        Self { url, postgres: false, _dir: Some(dir), _schema: None }
    }

    async fn postgres() -> Option<Self> {
        let schema = pg::schema().await?;
        Some(Self { url: schema.url.clone(), postgres: true, _dir: None, _schema: Some(schema) })
    }

    /// A store for node `node` (on SQLite, open one store per test: it owns the file).
    async fn open(&self, node: &str) -> Arc<dyn Store> {
        let options = StoreOptions { node_id: node.into(), ..StoreOptions::default() };
        store::open(&self.url, &options).await.expect("store opens")
    }

    /// A second node's store: its own instance on PostgreSQL, the same one on SQLite.
    async fn other(&self, first: &Arc<dyn Store>, node: &str) -> Arc<dyn Store> {
        if self.postgres { self.open(node).await } else { first.clone() }
    }
}

/// Runs each named contract test on both backends.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name(&super::Backend::sqlite()).await;
            }

            #[actix_web::test]
            async fn pg() {
                if let Some(backend) = super::Backend::postgres().await {
                    super::$name(&backend).await;
                }
            }
        }
    )*};
}

contract!(
    registry_crud_and_changes,
    publish_and_idempotency,
    deliveries_of_deleted_webhooks_are_dropped_or_failed,
    load_due_orders_excludes_and_limits,
    attempt_updates_apply_in_order,
    fenced_writes_of_a_stale_owner_are_skipped,
    heartbeats_track_live_nodes,
    claim_rules,
    release_and_leave,
    due_summary_and_pending_counts,
    health_round_trip_disable_and_reenable,
    delivery_listing_filters_and_cursors,
    closed_store_refuses_calls,
    // replay
    retry_requeues_with_a_fresh_budget,
    recovery_runs_in_batches_over_its_window,
    recovery_states_running_interrupted_and_replaced,
    delivery_listing_by_event_and_creation_time,
    // pacing
    pacing_fields_round_trip,
    load_in_order_follows_publish_order_whatever_the_due_times,
    // lifecycle
    lifecycle_update_is_compare_and_set,
    lifecycle_disable_fails_pending_and_enable_resets_health,
);

// The tenants part's contract tests (tenant column, events' tenant, API tokens).
mod tenants;

fn webhook(id: &str) -> WebhookRecord {
    WebhookRecord {
        id: id.into(),
        url: format!("https://example.com/{id}"),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        events: Some(vec!["order.created".into()]),
        headers: BTreeMap::from([("X-A".into(), "1".into())]),
        retry_config: RetryConfig { max_retries: 2, ..RetryConfig::default() },
        max_in_flight: Some(4),
        description: Some("d".into()),
        disabled_at_ms: None,
        disabled_reason: None,
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        revision: 0,
        tenant: None,
        rate_limit_per_second: None,
        ordered: false,
        previous_secret: None,
        previous_secret_until_ms: None,
    }
}

fn event_at(webhooks: &[&str], key: Option<&str>, created_at_ms: i64) -> NewEvent {
    let id = new_event_id();
    NewEvent {
        deliveries: webhooks
            .iter()
            .enumerate()
            .map(|(i, w)| NewDelivery { id: delivery_id(&id, i as u32), webhook_id: Arc::from(*w) })
            .collect(),
        payload: Bytes::from(format!(r#"{{"id":"{id}","event":"order.created","data":{{}},"timestamp":"t"}}"#)),
        id,
        event_type: "order.created".into(),
        timestamp: "2026-11-28T00:00:00.000Z".into(),
        created_at_ms,
        idempotency_key: key.map(str::to_string),
        tenant: None,
    }
}

fn event(webhooks: &[&str], key: Option<&str>) -> NewEvent {
    event_at(webhooks, key, 5_000)
}

fn attempt(n: u32, code: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        at_ms: 6_000 + n as i64,
        duration_ms: 3,
        status_code: Some(code),
        error: (code >= 300).then(|| format!("HTTP {code}")),
        response_body: Some("ok".into()),
    }
}

fn update(fence: &Fence, delivery: &str, a: AttemptRecord, next: NextStep) -> AttemptUpdate {
    AttemptUpdate { fence: fence.clone(), delivery_id: delivery.into(), attempt: a, probes: 0, next }
}

fn fence(webhook: &str, epoch: u64) -> Fence {
    Fence { webhook_id: Arc::from(webhook), epoch }
}

async fn apply(store: &Arc<dyn Store>, batch: WriteBatch) -> BatchOutcome {
    store.apply(Arc::new(batch)).await.expect("batch commits")
}

async fn publish(store: &Arc<dyn Store>, events: Vec<NewEvent>) -> BatchOutcome {
    apply(store, WriteBatch { events, ..Default::default() }).await
}

async fn register(store: &Arc<dyn Store>, ids: &[&str]) {
    for id in ids {
        store.upsert_webhook(webhook(id)).await.unwrap();
    }
}

async fn claim(store: &Arc<dyn Store>, node: &str, ids: &[&str], ttl: Duration) -> Vec<Fence> {
    store.claim_leases(node, ids.iter().map(|s| s.to_string()).collect(), ttl).await.unwrap()
}

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(200);

fn ids(views: &[WebhookView]) -> Vec<&str> {
    views.iter().map(|v| v.record.id.as_str()).collect()
}

async fn delivery(store: &Arc<dyn Store>, id: &str) -> (DeliveryRecord, Vec<AttemptRecord>) {
    store.get_delivery(id).await.unwrap().expect("delivery exists")
}

/// The next notice matching `want` within 5 s (others are skipped).
async fn notice_matching(rx: &mut Receiver<Notice>, want: impl Fn(&Notice) -> bool) -> Notice {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(n)) if want(&n) => return n,
            Ok(Some(_)) => continue,
            Ok(None) => panic!("notice channel closed"),
            Err(_) => panic!("no matching notice within 5 s"),
        }
    }
}

async fn registry_crud_and_changes(b: &Backend) {
    let s = b.open("a").await;
    let start = s.registry_changes(0).await.unwrap();
    assert!(start.full && start.upserted.is_empty() && start.deleted.is_empty());
    let r0 = start.revision;

    assert_eq!(s.upsert_webhook(webhook("w1")).await.unwrap().0, Upserted::Created);
    assert_eq!(s.upsert_webhook(webhook("w2")).await.unwrap().0, Upserted::Created);
    let mut changed = webhook("w1");
    changed.url = "https://example.org/new".into();
    changed.updated_at_ms = 2_000;
    changed.created_at_ms = 1_500;
    changed.disabled_at_ms = Some(1); // ignored: a registration is always enabled
    changed.revision = 999; // ignored: the store sets it
    let (upserted, revision) = s.upsert_webhook(changed).await.unwrap();
    assert_eq!(upserted, Upserted::Replaced);
    assert_eq!(
        s.get_webhook("w1").await.unwrap().unwrap().record.revision,
        revision,
        "the revision it was stored under"
    );
    let v = s.get_webhook("w1").await.unwrap().expect("w1");
    assert_eq!(v.record.url, "https://example.org/new");
    assert_eq!((v.record.created_at_ms, v.record.updated_at_ms), (1_000, 2_000), "creation time kept");
    assert_eq!((v.record.disabled_at_ms, v.record.revision), (None, r0 + 3));
    assert_eq!((v.health, v.owner), (None, None));
    let mut expected = webhook("w1");
    expected.url = "https://example.org/new".into();
    expected.updated_at_ms = 2_000;
    expected.revision = r0 + 3;
    assert_eq!(v.record, expected, "every field round-trips");
    assert_eq!(s.get_webhook("nope").await.unwrap(), None);

    // Byte order, whatever the database's collation.
    register(&s, &["alpha", "Zed", "_x"]).await;
    let all = s.list_webhooks(None, 100).await.unwrap();
    assert_eq!(ids(&all), ["Zed", "_x", "alpha", "w1", "w2"]);
    assert_eq!(ids(&s.list_webhooks(None, 2).await.unwrap()), ["Zed", "_x"]);
    assert_eq!(ids(&s.list_webhooks(Some("alpha".into()), 10).await.unwrap()), ["w1", "w2"]);

    // Incremental changes.
    let since_start = s.registry_changes(r0).await.unwrap();
    assert!(!since_start.full);
    assert_eq!(
        since_start.upserted.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(),
        ["Zed", "_x", "alpha", "w1", "w2"]
    );
    let mid = since_start.revision;
    assert_eq!(mid, r0 + 6);
    assert!(s.delete_webhook("w2", 5_000).await.unwrap());
    assert!(!s.delete_webhook("w2", 5_000).await.unwrap(), "already gone");
    let after_delete = s.registry_changes(mid).await.unwrap();
    assert_eq!(
        after_delete,
        RegistryChanges { revision: mid + 1, full: false, upserted: vec![], deleted: vec!["w2".into()] }
    );
    let full = s.registry_changes(0).await.unwrap();
    assert!(full.full);
    assert_eq!(full.upserted.len(), 4);
    assert!(full.upserted.iter().all(|w| w.id != "w2"));
    // Re-registered: an upsert, not a deletion, for whoever was before the delete.
    s.upsert_webhook(webhook("w2")).await.unwrap();
    let again = s.registry_changes(mid).await.unwrap();
    assert_eq!(again.upserted.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w2"]);
    assert!(again.deleted.is_empty());
    assert_eq!(s.registry_changes(again.revision).await.unwrap().upserted, vec![]);

    // Tombstones older than 7 days are pruned; callers behind them get the full registry.
    assert!(s.delete_webhook("alpha", 5_000).await.unwrap());
    let alpha_gone = s.registry_changes(0).await.unwrap().revision;
    let month = 30 * 24 * 3600 * 1000;
    assert!(s.delete_webhook("Zed", month).await.unwrap());
    assert!(s.registry_changes(alpha_gone - 1).await.unwrap().full, "behind a pruned tombstone");
    let recent = s.registry_changes(alpha_gone).await.unwrap();
    assert!(!recent.full);
    assert_eq!(recent.deleted, vec!["Zed".to_string()]);
    assert!(s.registry_changes(recent.revision + 100).await.unwrap().full, "ahead of the store");
    s.close().await;
}

async fn publish_and_idempotency(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let e1 = event(&["w1", "w2"], None);
    let e2 = event(&["w1"], Some("key-1"));
    let e2_dup = event(&["w1"], Some("key-1"));
    let (e1_id, e2_id) = (e1.id.clone(), e2.id.clone());
    let e1_payload = e1.payload.clone();
    let out = publish(&s, vec![e1, e2, e2_dup]).await;
    assert_eq!(out.events.len(), 3);
    assert_eq!(out.events[0], EventWrite::Created { dropped: vec![] });
    assert_eq!(out.events[1], EventWrite::Created { dropped: vec![] });
    let existing = ExistingEvent {
        id: e2_id.clone(),
        event_type: "order.created".into(),
        timestamp: "2026-11-28T00:00:00.000Z".into(),
        deliveries: vec![(delivery_id(&e2_id, 0), "w1".to_string())],
        tenant: None,
    };
    assert_eq!(out.events[2], EventWrite::Duplicate(existing.clone()), "same key twice in one batch");
    // The key again, in a later batch.
    let out = publish(&s, vec![event(&["w2"], Some("key-1")), event(&["w2"], Some("key-2"))]).await;
    assert_eq!(out.events[0], EventWrite::Duplicate(existing));
    assert_eq!(out.events[1], EventWrite::Created { dropped: vec![] });

    let (d, log) = delivery(&s, &delivery_id(&e1_id, 1)).await;
    assert_eq!((d.webhook_id.as_str(), d.event_id.as_str(), d.status), ("w2", e1_id.as_str(), DeliveryStatus::Pending));
    assert_eq!((d.attempts, d.created_at_ms, d.next_attempt_at_ms), (0, 5_000, Some(5_000)));
    assert_eq!(d.payload.as_bytes(), &e1_payload[..]);
    assert_eq!(d.event_type, "order.created");
    assert!(log.is_empty());
    assert_eq!(s.list_deliveries(DeliveryFilter::default(), None, 100).await.unwrap().len(), 4);

    if b.postgres {
        // Two nodes publishing the same key at once: exactly one event is written.
        let other = b.open("b").await;
        for round in 0..5 {
            let key = format!("race-{round}");
            let (x, y) = (event(&["w1"], Some(&key)), event(&["w1"], Some(&key)));
            let (x_id, y_id) = (x.id.clone(), y.id.clone());
            let (ox, oy) = tokio::join!(publish(&s, vec![x]), publish(&other, vec![y]));
            let (wx, wy) = (&ox.events[0], &oy.events[0]);
            match (wx, wy) {
                (EventWrite::Created { .. }, EventWrite::Duplicate(e)) => assert_eq!(e.id, x_id),
                (EventWrite::Duplicate(e), EventWrite::Created { .. }) => assert_eq!(e.id, y_id),
                other => panic!("expected one created and one duplicate, got {other:?}"),
            }
        }
        other.close().await;
    }
    s.close().await;
}

async fn deliveries_of_deleted_webhooks_are_dropped_or_failed(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1"]).await;
    let e = event(&["w1", "ghost"], None);
    let (kept, ghost) = (e.deliveries[0].id.clone(), e.deliveries[1].id.clone());
    let out = publish(&s, vec![e]).await;
    assert_eq!(out.events[0], EventWrite::Created { dropped: vec![ghost.clone()] });
    assert_eq!(s.get_delivery(&ghost).await.unwrap(), None);
    assert_eq!(s.pending_counts(vec!["w1".into(), "ghost".into()]).await.unwrap(), vec![("w1".to_string(), 1)]);

    assert!(s.delete_webhook("w1", 7_000).await.unwrap());
    let (d, _) = delivery(&s, &kept).await;
    assert_eq!(
        (d.status, d.last_error.as_deref(), d.completed_at_ms),
        (DeliveryStatus::Failed, Some("webhook deleted"), Some(7_000))
    );
    assert_eq!(d.next_attempt_at_ms, None);
    let e = event(&["w1"], None);
    let late = e.deliveries[0].id.clone();
    assert_eq!(publish(&s, vec![e]).await.events[0], EventWrite::Created { dropped: vec![late] });
    assert!(s.load_due("w1", i64::MAX, vec![], 10).await.unwrap().items.is_empty());
    s.close().await;
}

async fn load_due_orders_excludes_and_limits(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let events = vec![
        event_at(&["w1"], None, 3_000),
        event_at(&["w1"], None, 1_000),
        event_at(&["w1", "w2"], None, 2_000),
        event_at(&["w1"], None, 2_000),
        event_at(&["w1"], None, 9_000),
    ];
    let d: Vec<String> = events.iter().map(|e| e.deliveries[0].id.clone()).collect();
    let payload = events[1].payload.clone();
    let event_id = events[1].id.clone();
    publish(&s, events).await;

    let page = s.load_due("w1", 5_000, vec![], 10).await.unwrap();
    let got: Vec<&str> = page.items.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got, [&d[1], &d[2], &d[3], &d[0]], "by due time, then id");
    assert_eq!(page.next_due_at_ms, Some(9_000));
    let first = &page.items[0];
    assert_eq!((first.event_id.as_str(), first.event_type.as_str()), (event_id.as_str(), "order.created"));
    assert_eq!((first.payload.clone(), first.timestamp.as_str()), (payload, "2026-11-28T00:00:00.000Z"));
    assert_eq!((first.attempts, first.next_attempt_at_ms, first.created_at_ms), (0, 1_000, 1_000));

    let page = s.load_due("w1", 5_000, vec![d[1].clone(), d[3].clone()], 10).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [&d[2], &d[0]]);
    let page = s.load_due("w1", 5_000, vec![], 2).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [&d[1], &d[2]]);
    let page = s.load_due("w1", 500, vec![], 10).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_due_at_ms, Some(1_000));
    let page = s.load_due("w1", 9_000, vec![], 10).await.unwrap();
    assert_eq!((page.items.len(), page.next_due_at_ms), (5, None));
    assert_eq!(s.load_due("w2", 9_000, vec![], 10).await.unwrap().items.len(), 1);
    assert!(s.load_due("nope", 9_000, vec![], 10).await.unwrap().items.is_empty());
    s.close().await;
}

async fn attempt_updates_apply_in_order(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1"]).await;
    let f = claim(&s, "a", &["w1"], LONG).await.pop().expect("granted");
    let events: Vec<NewEvent> = (0..3).map(|_| event(&["w1"], None)).collect();
    let d: Vec<String> = events.iter().map(|e| e.deliveries[0].id.clone()).collect();
    publish(&s, events).await;

    // d0 retried and then succeeded within one commit window; d1 failed; d2 to retry later.
    let out = apply(
        &s,
        WriteBatch {
            attempts: vec![
                update(&f, &d[0], attempt(1, 500), NextStep::RetryAt(6_500)),
                update(&f, &d[1], attempt(1, 400), NextStep::Failed),
                update(&f, &d[0], attempt(2, 200), NextStep::Succeeded),
                update(&f, &d[2], attempt(1, 503), NextStep::RetryAt(9_000)),
            ],
            ..Default::default()
        },
    )
    .await;
    assert!(out.fenced.is_empty());
    let (d0, log) = delivery(&s, &d[0]).await;
    assert_eq!((d0.status, d0.attempts, d0.next_attempt_at_ms), (DeliveryStatus::Success, 2, None));
    assert_eq!((d0.last_status_code, d0.completed_at_ms, d0.last_error.as_deref()), (Some(200), Some(6_002 + 3), None));
    assert_eq!(d0.last_attempt_at_ms, Some(6_002));
    assert_eq!(log, vec![attempt(1, 500), attempt(2, 200)]);
    let (d1, log) = delivery(&s, &d[1]).await;
    assert_eq!((d1.status, d1.attempts, d1.completed_at_ms), (DeliveryStatus::Failed, 1, Some(6_004)));
    assert_eq!((d1.last_status_code, d1.last_error.as_deref()), (Some(400), Some("HTTP 400")));
    assert_eq!(log, vec![attempt(1, 400)]);
    let (d2, log) = delivery(&s, &d[2]).await;
    assert_eq!((d2.status, d2.attempts, d2.next_attempt_at_ms), (DeliveryStatus::Pending, 1, Some(9_000)));
    assert_eq!(log, vec![attempt(1, 503)]);
    let due = s.load_due("w1", 9_000, vec![], 10).await.unwrap();
    assert_eq!((due.items.len(), due.items[0].attempts, due.items[0].next_attempt_at_ms), (1, 1, 9_000));
    assert!(s.load_due("w1", 8_999, vec![], 10).await.unwrap().items.is_empty());

    // A finished delivery is not changed by a late update.
    apply(
        &s,
        WriteBatch { attempts: vec![update(&f, &d[0], attempt(3, 500), NextStep::Failed)], ..Default::default() },
    )
    .await;
    let (d0, log) = delivery(&s, &d[0]).await;
    assert_eq!((d0.status, log.len()), (DeliveryStatus::Success, 2));
    assert_eq!(s.get_delivery("dlv_missing").await.unwrap(), None);
    s.close().await;
}

async fn fenced_writes_of_a_stale_owner_are_skipped(b: &Backend) {
    let a = b.open("node-a").await;
    let bb = b.other(&a, "node-b").await;
    register(&a, &["w1"]).await;
    let events: Vec<NewEvent> = (0..2).map(|_| event(&["w1"], None)).collect();
    let d: Vec<String> = events.iter().map(|e| e.deliveries[0].id.clone()).collect();
    publish(&a, events).await;

    let fa = claim(&a, "node-a", &["w1"], SHORT).await;
    assert_eq!(fa, vec![fence("w1", 1)]);
    let fa = fa[0].clone();
    tokio::time::sleep(SHORT + Duration::from_millis(150)).await;
    let fb = claim(&bb, "node-b", &["w1"], LONG).await;
    assert_eq!(fb, vec![fence("w1", 2)], "run out: the next node takes it");
    let fb = fb[0].clone();

    // The old owner, frozen past its lease, comes back: none of its fenced writes land.
    let stale = WriteBatch {
        attempts: vec![update(&fa, &d[0], attempt(1, 200), NextStep::Succeeded)],
        failures: vec![FailDelivery { delivery_id: d[1].clone(), reason: "stale".into(), fence: Some(fa.clone()) }],
        disables: vec![DisableWebhook { fence: fa.clone(), reason: "HTTP 410 Gone".into(), at_ms: 7_000 }],
        health: vec![HealthWrite { fence: fa.clone(), health: StoredHealth::default() }],
        ..Default::default()
    };
    let out = apply(&a, stale).await;
    assert_eq!(out.fenced, vec![fa.clone()]);
    assert!(out.disabled.is_empty());
    assert_eq!(delivery(&a, &d[0]).await.0.status, DeliveryStatus::Pending);
    assert_eq!(delivery(&a, &d[1]).await.0.status, DeliveryStatus::Pending);
    let v = a.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!((v.record.disabled_at_ms, v.health), (None, None));
    assert_eq!(v.owner.as_ref().map(|o| (o.node_id.as_str(), o.epoch)), Some(("node-b", 2)));

    // The new owner's writes land; unfenced ones land for anyone.
    let health = StoredHealth { consecutive_failures: 1, ..StoredHealth::default() };
    let out = apply(
        &bb,
        WriteBatch {
            attempts: vec![update(&fb, &d[0], attempt(1, 200), NextStep::Succeeded)],
            health: vec![HealthWrite { fence: fb.clone(), health }],
            ..Default::default()
        },
    )
    .await;
    assert!(out.fenced.is_empty());
    assert_eq!(delivery(&a, &d[0]).await.0.status, DeliveryStatus::Success);
    assert_eq!(a.get_webhook("w1").await.unwrap().unwrap().health, Some(health));
    let out = apply(
        &a,
        WriteBatch {
            failures: vec![FailDelivery { delivery_id: d[1].clone(), reason: "gone".into(), fence: None }],
            ..Default::default()
        },
    )
    .await;
    assert!(out.fenced.is_empty());
    assert_eq!(delivery(&a, &d[1]).await.0.last_error.as_deref(), Some("gone"));
    // A lease that was never granted fences too.
    let out =
        apply(&a, WriteBatch { health: vec![HealthWrite { fence: fence("w9", 1), health }], ..Default::default() })
            .await;
    assert_eq!(out.fenced, vec![fence("w9", 1)]);
    if b.postgres {
        bb.close().await;
    }
    a.close().await;
}

async fn heartbeats_track_live_nodes(b: &Backend) {
    let s = b.open("n1").await;
    let mut notices = s.take_notices();
    assert_eq!(notices.is_some(), b.postgres, "notices only on PostgreSQL");
    assert!(s.take_notices().is_none(), "taken once");
    assert_eq!(s.exclusive(), !b.postgres);
    register(&s, &["w2", "w1"]).await;
    claim(&s, "n1", &["w1", "w2"], LONG).await;

    let before = now_ms();
    let hb = s.heartbeat("n1", "v1", LONG).await.unwrap();
    assert!((hb.now_ms - before).abs() < 5_000, "store clock near ours: {} vs {before}", hb.now_ms);
    assert_eq!(hb.live_nodes, vec!["n1".to_string()]);
    assert_eq!(hb.held, vec![fence("w1", 1), fence("w2", 1)]);
    let owner = s.get_webhook("w1").await.unwrap().unwrap().owner.unwrap();
    assert_eq!(owner, LeaseInfo { node_id: "n1".into(), epoch: 1, expires_at_ms: hb.now_ms + 60_000 });
    if let Some(rx) = notices.as_mut() {
        let n = notice_matching(rx, |n| matches!(n, Notice::Cluster { .. })).await;
        assert_eq!(n, Notice::Cluster { origin: "n1".into() }, "a join is announced");
    }

    let hb2 = s.heartbeat("n2", "v2", SHORT).await.unwrap();
    assert_eq!(hb2.live_nodes, vec!["n1".to_string(), "n2".to_string()]);
    assert!(hb2.held.is_empty());
    let nodes = s.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!((nodes[0].id.as_str(), nodes[0].live, nodes[0].owned, nodes[0].info.as_str()), ("n1", true, 2, "v1"));
    assert_eq!((nodes[1].id.as_str(), nodes[1].live, nodes[1].owned), ("n2", true, 0));
    let n2_started = nodes[1].started_at_ms;

    tokio::time::sleep(SHORT + Duration::from_millis(150)).await;
    let hb3 = s.heartbeat("n1", "v1b", LONG).await.unwrap();
    assert_eq!(hb3.live_nodes, vec!["n1".to_string()], "n2 ran out");
    let nodes = s.nodes().await.unwrap();
    assert_eq!((nodes[0].id.as_str(), nodes[0].live, nodes[0].info.as_str()), ("n1", true, "v1b"));
    assert_eq!(nodes[0].started_at_ms, hb.now_ms, "a renewal keeps the start time");
    assert_eq!((nodes[1].id.as_str(), nodes[1].live), ("n2", false), "dead nodes listed last");
    assert!(nodes[0].heartbeat_at_ms >= hb3.now_ms && nodes[0].expires_at_ms == hb3.now_ms + 60_000);

    // n2 comes back after running out: a new start time, and a join again.
    let hb4 = s.heartbeat("n2", "v2", LONG).await.unwrap();
    let n2 = s.nodes().await.unwrap().into_iter().find(|n| n.id == "n2").unwrap();
    assert!(n2.live && n2.started_at_ms == hb4.now_ms && n2.started_at_ms > n2_started);
    if let Some(rx) = notices.as_mut() {
        notice_matching(rx, |n| matches!(n, Notice::Cluster { .. })).await;
    }
    s.close().await;
}

async fn claim_rules(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2", "w3"]).await;
    // A lease is valid while its node is live (heartbeats renew them all at once).
    s.heartbeat("a", "", LONG).await.unwrap();
    s.heartbeat("b", "", LONG).await.unwrap();
    s.heartbeat("c", "", SHORT).await.unwrap();
    assert_eq!(
        claim(&s, "a", &["w2", "ghost", "w1"], LONG).await,
        vec![fence("w1", 1), fence("w2", 1)],
        "free leases of existing webhooks"
    );
    assert_eq!(claim(&s, "a", &["w1"], LONG).await, vec![fence("w1", 2)], "own lease: re-granted");
    let stolen = claim(&s, "b", &["w2"], LONG).await;
    if b.postgres {
        assert!(stolen.is_empty(), "someone else's live lease is not granted");
    } else {
        assert_eq!(stolen, vec![fence("w2", 2)], "exclusive store: an earlier run's lease is taken at once");
    }
    assert_eq!(claim(&s, "c", &["w3"], LONG).await, vec![fence("w3", 1)]);
    tokio::time::sleep(SHORT + Duration::from_millis(150)).await;
    assert_eq!(claim(&s, "a", &["w3"], LONG).await, vec![fence("w3", 2)], "its node ran out: granted");
    let back = s.heartbeat("c", "", LONG).await.unwrap();
    assert!(back.held.is_empty(), "a node that comes back does not get a lease taken over meanwhile");
    let held_by_a = s.heartbeat("a", "", LONG).await.unwrap().held;
    assert!(held_by_a.contains(&fence("w3", 2)), "one heartbeat renews all of a node's leases: {held_by_a:?}");
    // Epochs outlive the registration.
    assert!(s.delete_webhook("w3", 8_000).await.unwrap());
    assert!(claim(&s, "a", &["w3"], LONG).await.is_empty(), "no lease for a deleted webhook");
    register(&s, &["w3"]).await;
    assert_eq!(claim(&s, "a", &["w3"], LONG).await, vec![fence("w3", 3)]);
    assert!(claim(&s, "a", &[], LONG).await.is_empty());
    s.close().await;
}

async fn release_and_leave(b: &Backend) {
    let s = b.open("a").await;
    let mut notices = s.take_notices();
    register(&s, &["w1", "w2"]).await;
    s.heartbeat("a", "", LONG).await.unwrap();
    claim(&s, "a", &["w1", "w2"], LONG).await;
    s.release_leases("a", vec![fence("w1", 99)]).await.unwrap();
    assert_eq!(
        s.get_webhook("w1").await.unwrap().unwrap().owner.map(|o| o.node_id),
        Some("a".into()),
        "epoch moved on: kept"
    );
    s.release_leases("a", vec![fence("w1", 1)]).await.unwrap();
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().owner, None);
    if let Some(rx) = notices.as_mut() {
        notice_matching(rx, |n| matches!(n, Notice::Cluster { .. })).await;
    }
    assert_eq!(
        claim(&s, "b", &["w1"], LONG).await,
        vec![fence("w1", 2)],
        "released: claimed at once, epoch kept growing"
    );
    s.leave("a").await.unwrap();
    assert_eq!(s.get_webhook("w2").await.unwrap().unwrap().owner, None);
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().owner.map(|o| o.node_id), Some("b".into()));
    assert!(s.nodes().await.unwrap().iter().all(|n| n.id != "a"));
    assert_eq!(s.heartbeat("a", "", LONG).await.unwrap().held, vec![], "left: holds nothing");
    s.close().await;
}

async fn due_summary_and_pending_counts(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2", "w3"]).await;
    publish(
        &s,
        vec![event_at(&["w1"], None, 3_000), event_at(&["w1", "w2"], None, 1_000), event_at(&["w2"], None, 2_000)],
    )
    .await;
    let ask = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let summary = s.due_summary(ask(&["w3", "w1", "w2", "ghost"])).await.unwrap();
    let got: Vec<(&str, Option<i64>)> = summary.iter().map(|p| (p.webhook_id.as_str(), p.earliest_due_ms)).collect();
    assert_eq!(got, [("w3", None), ("w1", Some(1_000)), ("w2", Some(1_000)), ("ghost", None)]);
    assert_eq!(
        s.pending_counts(ask(&["w3", "w2", "w1"])).await.unwrap(),
        vec![("w1".to_string(), 2), ("w2".to_string(), 2)]
    );
    assert!(s.due_summary(vec![]).await.unwrap().is_empty());
    assert!(s.pending_counts(vec![]).await.unwrap().is_empty());
    s.close().await;
}

async fn health_round_trip_disable_and_reenable(b: &Backend) {
    let s = b.open("a").await;
    let mut notices = s.take_notices();
    register(&s, &["w1", "w2"]).await;
    let f = claim(&s, "a", &["w1"], LONG).await.pop().unwrap();
    publish(&s, vec![event(&["w1", "w2"], None), event(&["w1"], None)]).await;
    let health = StoredHealth {
        state: EndpointState::Paused,
        consecutive_failures: 7,
        failing_since_ms: Some(100),
        last_success_ms: None,
        last_failure_ms: Some(200),
        breaker: Some(BreakerRecord { probe_at_ms: 300, cooldown_ms: 400 }),
    };
    let writes = vec![
        HealthWrite { fence: f.clone(), health: StoredHealth::default() },
        HealthWrite { fence: f.clone(), health },
    ];
    apply(&s, WriteBatch { health: writes, ..Default::default() }).await;
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().health, Some(health), "last write wins");
    assert_eq!(s.get_webhook("w2").await.unwrap().unwrap().health, None);
    let many = s.stored_health(vec!["w2".into(), "w1".into(), "nope".into()]).await.unwrap();
    assert_eq!(many, vec![("w1".to_string(), health)], "only webhooks with a record");

    let before = s.registry_changes(0).await.unwrap().revision;
    let disabled = StoredHealth { state: EndpointState::Disabled, ..health };
    let out = apply(
        &s,
        WriteBatch {
            disables: vec![DisableWebhook { fence: f.clone(), reason: "HTTP 410 Gone".into(), at_ms: 7_000 }],
            health: vec![HealthWrite { fence: f.clone(), health: disabled }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.disabled, vec![("w1".to_string(), 2)]);
    let v = s.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!((v.record.disabled_at_ms, v.record.disabled_reason.as_deref()), (Some(7_000), Some("HTTP 410 Gone")));
    assert_eq!((v.record.revision, v.health), (before + 1, Some(disabled)));
    let changes = s.registry_changes(before).await.unwrap();
    assert_eq!(changes.upserted.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w1"]);
    assert!(s.load_due("w1", i64::MAX, vec![], 10).await.unwrap().items.is_empty());
    let failed = s
        .list_deliveries(
            DeliveryFilter {
                webhook_id: Some("w1".into()),
                status: Some(DeliveryStatus::Failed),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|d| d.last_error.as_deref() == Some("HTTP 410 Gone") && d.completed_at_ms == Some(7_000))
    );
    assert_eq!(s.pending_counts(vec!["w2".into()]).await.unwrap(), vec![("w2".to_string(), 1)], "others untouched");
    if let Some(rx) = notices.as_mut() {
        notice_matching(rx, |n| matches!(n, Notice::Registry { .. })).await;
    }

    // Re-registering re-enables it and starts its health over.
    s.upsert_webhook(webhook("w1")).await.unwrap();
    let v = s.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!((v.record.disabled_at_ms, v.health), (None, Some(StoredHealth::default())));
    // Deleting forgets it; a health write for a deleted webhook is not stored.
    assert!(s.delete_webhook("w1", 8_000).await.unwrap());
    apply(&s, WriteBatch { health: vec![HealthWrite { fence: f.clone(), health }], ..Default::default() }).await;
    register(&s, &["w1"]).await;
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().health, None);
    s.close().await;
}

async fn delivery_listing_filters_and_cursors(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let events: Vec<NewEvent> = (0..3).map(|_| event(&["w1", "w2"], None)).collect();
    let failed_id = events[1].deliveries[0].id.clone();
    publish(&s, events).await;
    let all = s.list_deliveries(DeliveryFilter::default(), None, 10).await.unwrap();
    assert_eq!(all.len(), 6);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    // Pages of two, by cursor, cover everything once.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s.list_deliveries(DeliveryFilter::default(), before.clone(), 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|d| d.id.clone());
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let w1 = s
        .list_deliveries(DeliveryFilter { webhook_id: Some("w1".into()), status: None, ..Default::default() }, None, 10)
        .await
        .unwrap();
    assert_eq!(w1.len(), 3);
    assert!(w1.iter().all(|d| d.webhook_id == "w1"));
    apply(
        &s,
        WriteBatch {
            failures: vec![FailDelivery { delivery_id: failed_id.clone(), reason: "nope".into(), fence: None }],
            ..Default::default()
        },
    )
    .await;
    let failed = s
        .list_deliveries(
            DeliveryFilter { webhook_id: None, status: Some(DeliveryStatus::Failed), ..Default::default() },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(failed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), [failed_id.as_str()]);
    assert_eq!(failed[0].last_error.as_deref(), Some("nope"));
    let pending =
        DeliveryFilter { webhook_id: Some("w1".into()), status: Some(DeliveryStatus::Pending), ..Default::default() };
    let older = s.list_deliveries(pending, Some(w1[0].id.clone()), 10).await.unwrap();
    assert_eq!(older.len(), 1, "w1's pending older than its newest: the oldest (the middle one failed)");
    assert!(
        s.list_deliveries(
            DeliveryFilter { webhook_id: Some("none".into()), status: None, ..Default::default() },
            None,
            10
        )
        .await
        .unwrap()
        .is_empty()
    );
    s.close().await;
}

async fn closed_store_refuses_calls(b: &Backend) {
    let s = b.open("a").await;
    s.ping().await.unwrap();
    s.close().await;
    let batch = WriteBatch {
        failures: vec![FailDelivery { delivery_id: "x".into(), reason: "y".into(), fence: None }],
        ..Default::default()
    };
    assert!(matches!(s.apply(Arc::new(batch)).await, Err(StoreError::Closed)));
    assert!(matches!(s.get_webhook("x").await, Err(StoreError::Closed)));
    assert!(matches!(s.heartbeat("a", "", LONG).await, Err(StoreError::Closed)));
    s.close().await;
}

// ----- replay -----

async fn retry_requeues_with_a_fresh_budget(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let f = claim(&s, "a", &["w1"], LONG).await.remove(0);
    let ev = event(&["w1", "w1", "w1"], None);
    let ids: Vec<String> = ev.deliveries.iter().map(|d| d.id.clone()).collect();
    publish(&s, vec![ev]).await;
    // ids[0]: failed after two attempts; ids[1]: pending, retrying later; ids[2]: delivered.
    apply(
        &s,
        WriteBatch {
            attempts: vec![
                update(&f, &ids[0], attempt(1, 500), NextStep::RetryAt(7_000)),
                update(&f, &ids[0], attempt(2, 500), NextStep::Failed),
                update(&f, &ids[1], attempt(1, 503), NextStep::RetryAt(9_999_999_999_999)),
                update(&f, &ids[2], attempt(1, 200), NextStep::Succeeded),
            ],
            ..Default::default()
        },
    )
    .await;
    let listener = if b.postgres { Some(b.open("b").await) } else { None };
    let mut notices = listener.as_ref().and_then(|l| l.take_notices());

    let out = s.retry_delivery(&ids[0], 50_000).await.unwrap();
    let RetryOutcome::Requeued { delivery: d, was_failed: true } = out else { panic!("{out:?}") };
    assert_eq!(
        (d.status, d.attempts, d.next_attempt_at_ms, d.completed_at_ms),
        (DeliveryStatus::Pending, 2, Some(50_000), None)
    );
    let due = s.load_due("w1", 50_000, vec![], 10).await.unwrap().items;
    let again = due.iter().find(|p| p.id == ids[0]).expect("due now");
    assert_eq!((again.attempts, again.probes), (2, 2), "the earlier attempts no longer count against the budget");
    // The attempt log goes on after the earlier attempts.
    apply(
        &s,
        WriteBatch { attempts: vec![update(&f, &ids[0], attempt(3, 200), NextStep::Succeeded)], ..Default::default() },
    )
    .await;
    let (d, log) = delivery(&s, &ids[0]).await;
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(
        log.iter().map(|a| (a.attempt, a.status_code)).collect::<Vec<_>>(),
        [(1, Some(500)), (2, Some(500)), (3, Some(200))]
    );
    if let Some(rx) = notices.as_mut() {
        let n = notice_matching(rx, |n| matches!(n, Notice::Requeued { .. })).await;
        assert_eq!(
            n,
            Notice::Requeued {
                origin: "a".into(),
                webhook_id: "w1".into(),
                ids: vec![ids[0].clone()],
                were_failed: true
            }
        );
    }

    // A pending one is due now and keeps its attempts and budget.
    let out = s.retry_delivery(&ids[1], 60_000).await.unwrap();
    let RetryOutcome::Requeued { delivery: d, was_failed: false } = out else { panic!("{out:?}") };
    assert_eq!((d.status, d.attempts, d.next_attempt_at_ms), (DeliveryStatus::Pending, 1, Some(60_000)));
    let due = s.load_due("w1", 60_000, vec![], 10).await.unwrap().items;
    assert_eq!(due.iter().find(|p| p.id == ids[1]).map(|p| (p.attempts, p.probes)), Some((1, 0)));
    if let Some(rx) = notices.as_mut() {
        let n = notice_matching(rx, |n| matches!(n, Notice::Requeued { .. })).await;
        assert!(matches!(n, Notice::Requeued { were_failed: false, ref ids, .. } if ids.len() == 1), "{n:?}");
    }

    assert_eq!(s.retry_delivery(&ids[2], 1).await.unwrap(), RetryOutcome::Succeeded);
    assert_eq!(s.retry_delivery("dlv_nope", 1).await.unwrap(), RetryOutcome::NotFound);
    // A delivery of a deleted webhook stays failed.
    let ev = event(&["w2"], None);
    let gone = ev.deliveries[0].id.clone();
    publish(&s, vec![ev]).await;
    assert!(s.delete_webhook("w2", 8_000).await.unwrap());
    assert_eq!(s.retry_delivery(&gone, 9_000).await.unwrap(), RetryOutcome::WebhookGone);
    assert_eq!(delivery(&s, &gone).await.0.status, DeliveryStatus::Failed);
    if let Some(l) = listener {
        l.close().await;
    }
    s.close().await;
}

/// Fails every given delivery of `w` (no attempt), as a disable would.
async fn fail_all(s: &Arc<dyn Store>, ids: &[String]) {
    let failures =
        ids.iter().map(|id| FailDelivery { delivery_id: id.clone(), reason: "HTTP 500".into(), fence: None }).collect();
    apply(s, WriteBatch { failures, ..Default::default() }).await;
}

async fn recovery_runs_in_batches_over_its_window(b: &Backend) {
    let s = b.open("a").await;
    s.heartbeat("a", "", LONG).await.unwrap();
    register(&s, &["w1"]).await;
    // Five failed in [10 000, 20 000), one before and one at its end (outside), one pending inside.
    let times = [9_999, 10_000, 12_000, 14_000, 16_000, 19_999, 20_000];
    let events: Vec<NewEvent> = times.iter().map(|t| event_at(&["w1"], None, *t)).collect();
    let ids: Vec<String> = events.iter().map(|e| e.deliveries[0].id.clone()).collect();
    publish(&s, events).await;
    publish(&s, vec![event_at(&["w1"], None, 15_000)]).await;
    fail_all(&s, &ids).await;

    let start = s.start_recovery("w1", "a", 10_000, 20_000, 30_000).await.unwrap();
    let RecoveryStart::Started(r) = start else { panic!("{start:?}") };
    assert_eq!(
        (r.queued, r.requeued, r.state, r.started_at_ms, r.finished_at_ms),
        (5, 0, RecoveryState::Running, 30_000, None)
    );
    let again = s.start_recovery("w1", "a", 0, 1, 30_001).await.unwrap();
    assert!(matches!(again, RecoveryStart::Running(ref r) if r.queued == 5), "one at a time: {again:?}");
    assert_eq!(
        s.recover_batch("w1", "b", 2, 30_002).await.unwrap(),
        RecoverBatch { ids: vec![], finished: true },
        "not b's to run"
    );

    let mut batches = Vec::new();
    loop {
        let batch = s.recover_batch("w1", "a", 2, 31_000).await.unwrap();
        batches.push(batch.ids.clone());
        let view = s.get_webhook("w1").await.unwrap().unwrap().recovery.unwrap();
        assert_eq!(view.requeued, batches.iter().map(Vec::len).sum::<usize>() as u64);
        if batch.finished {
            assert_eq!((view.state, view.finished_at_ms), (RecoveryState::Done, Some(31_000)));
            break;
        }
        assert_eq!(view.state, RecoveryState::Running);
        assert!(batches.len() < 10, "batches end");
    }
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(batches.concat(), ids[1..6].to_vec(), "the window's failed ones, in id order, each once");
    for (i, id) in ids.iter().enumerate() {
        let (d, _) = delivery(&s, id).await;
        let inside = (1..6).contains(&i);
        assert_eq!(d.status, if inside { DeliveryStatus::Pending } else { DeliveryStatus::Failed }, "{i}");
        if inside {
            assert_eq!((d.next_attempt_at_ms, d.completed_at_ms), (Some(31_000), None));
        }
    }
    let due = s.load_due("w1", 31_000, vec![], 20).await.unwrap().items;
    assert_eq!(due.len(), 6, "the five re-queued and the one that was pending");
    assert_eq!(
        s.list_webhooks(None, 10).await.unwrap()[0].recovery.as_ref().map(|r| r.state),
        Some(RecoveryState::Done)
    );
    s.close().await;
}

async fn recovery_states_running_interrupted_and_replaced(b: &Backend) {
    let s = b.open("a").await;
    s.heartbeat("a", "", LONG).await.unwrap();
    register(&s, &["w1", "w2"]).await;
    assert_eq!(s.start_recovery("nope", "a", 0, 1, 5).await.unwrap(), RecoveryStart::NotFound);
    assert!(s.get_webhook("w1").await.unwrap().unwrap().recovery.is_none());

    // A node that starts again interrupts what its previous run left running.
    assert!(matches!(s.start_recovery("w1", "a", 0, 100, 5).await.unwrap(), RecoveryStart::Started(_)));
    assert_eq!(s.interrupt_recoveries("other", 6).await.unwrap(), 0);
    assert_eq!(s.interrupt_recoveries("a", 7).await.unwrap(), 1);
    let r = s.get_webhook("w1").await.unwrap().unwrap().recovery.unwrap();
    assert_eq!((r.state, r.finished_at_ms), (RecoveryState::Interrupted, Some(7)));
    assert_eq!(s.recover_batch("w1", "a", 10, 8).await.unwrap(), RecoverBatch { ids: vec![], finished: true });
    // An interrupted (or done) one is replaced by the next.
    let RecoveryStart::Started(r) = s.start_recovery("w1", "a", 50, 60, 9).await.unwrap() else { panic!() };
    assert_eq!((r.since_ms, r.until_ms, r.state), (50, 60, RecoveryState::Running));

    // A running recovery of a node that is not live reads interrupted, and does not block the next.
    assert!(matches!(s.start_recovery("w2", "ghost", 0, 100, 5).await.unwrap(), RecoveryStart::Started(_)));
    assert_eq!(s.get_webhook("w2").await.unwrap().unwrap().recovery.unwrap().state, RecoveryState::Interrupted);
    assert!(matches!(s.start_recovery("w2", "a", 0, 100, 6).await.unwrap(), RecoveryStart::Started(_)));

    // A disabled webhook is refused, and so is a retry of its (failed) deliveries.
    register(&s, &["off"]).await;
    let ev = event(&["off"], None);
    let off_delivery = ev.deliveries[0].id.clone();
    publish(&s, vec![ev]).await;
    let f = claim(&s, "a", &["off"], LONG).await.remove(0);
    let disable = DisableWebhook { fence: f, reason: "HTTP 410 Gone".into(), at_ms: 12 };
    apply(&s, WriteBatch { disables: vec![disable], ..Default::default() }).await;
    assert_eq!(s.start_recovery("off", "a", 0, 100, 13).await.unwrap(), RecoveryStart::WebhookDisabled);
    assert_eq!(s.retry_delivery(&off_delivery, 13).await.unwrap(), RetryOutcome::WebhookDisabled);
    assert_eq!(delivery(&s, &off_delivery).await.0.status, DeliveryStatus::Failed);

    // Deleting the webhook ends its recovery: no batch runs, a new registration starts clean.
    assert!(s.delete_webhook("w2", 10).await.unwrap());
    assert_eq!(s.recover_batch("w2", "a", 10, 11).await.unwrap(), RecoverBatch { ids: vec![], finished: true });
    register(&s, &["w2"]).await;
    assert!(s.get_webhook("w2").await.unwrap().unwrap().recovery.is_none());
    s.close().await;
}

async fn delivery_listing_by_event_and_creation_time(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let mut updated = event_at(&["w1", "w2"], None, 2_000);
    updated.event_type = "order.updated".into();
    publish(&s, vec![event_at(&["w1", "w2"], None, 1_000), updated, event_at(&["w1"], None, 3_000)]).await;
    let list = |filter: DeliveryFilter| {
        let s = s.clone();
        async move {
            let mut out = Vec::new();
            let mut before = None;
            loop {
                let page = s.list_deliveries(filter.clone(), before.clone(), 1).await.unwrap();
                let Some(last) = page.last() else { break };
                before = Some(last.id.clone());
                out.extend(page.into_iter().map(|d| (d.event_type, d.created_at_ms, d.webhook_id)));
            }
            out
        }
    };
    let f = |event: Option<&str>, since: Option<i64>, until: Option<i64>| DeliveryFilter {
        event_type: event.map(str::to_string),
        since_ms: since,
        until_ms: until,
        ..Default::default()
    };
    assert_eq!(list(f(Some("order.updated"), None, None)).await.len(), 2);
    assert!(list(f(Some("order.updated"), None, None)).await.iter().all(|d| d.0 == "order.updated"));
    assert_eq!(list(f(Some("order.deleted"), None, None)).await, vec![]);
    let times = |v: Vec<(String, i64, String)>| v.into_iter().map(|d| d.1).collect::<Vec<_>>();
    assert_eq!(times(list(f(None, Some(2_000), None)).await), [3_000, 2_000, 2_000], "since is inclusive");
    assert_eq!(times(list(f(None, None, Some(2_000))).await), [1_000, 1_000], "until is exclusive");
    assert_eq!(times(list(f(None, Some(1_500), Some(3_000))).await), [2_000, 2_000]);
    let both = DeliveryFilter { webhook_id: Some("w1".into()), ..f(Some("order.created"), Some(0), Some(10_000)) };
    assert_eq!(times(list(both).await), [3_000, 1_000], "combined with the webhook filter");
    assert_eq!(list(f(None, Some(5_000), Some(1_000))).await, vec![], "an empty window");
    s.close().await;
}

// ----- PostgreSQL only -----

#[actix_web::test]
async fn pg_notices_reach_other_stores() {
    let Some(b) = Backend::postgres().await else { return };
    let a = b.open("node-a").await;
    let other = b.open("node-b").await;
    let mut rx = other.take_notices().expect("notices");
    register(&a, &["w1", "w2"]).await;
    assert_eq!(
        notice_matching(&mut rx, |n| matches!(n, Notice::Registry { .. })).await,
        Notice::Registry { origin: "node-a".into() }
    );
    publish(&a, vec![event(&["w1", "w2"], None), event(&["w1", "ghost"], None)]).await;
    let work = notice_matching(&mut rx, |n| matches!(n, Notice::Work { .. })).await;
    assert_eq!(work, Notice::Work { origin: "node-a".into(), webhooks: vec![("w1".into(), 2), ("w2".into(), 1)] });
    a.heartbeat("node-a", "", LONG).await.unwrap();
    assert_eq!(
        notice_matching(&mut rx, |n| matches!(n, Notice::Cluster { .. })).await,
        Notice::Cluster { origin: "node-a".into() }
    );
    assert!(a.delete_webhook("w2", 1).await.unwrap());
    notice_matching(&mut rx, |n| matches!(n, Notice::Registry { .. })).await;
    // Another schema on the same database hears nothing of this one.
    let c = Backend::postgres().await.unwrap();
    let elsewhere = c.open("node-c").await;
    let mut quiet = elsewhere.take_notices().unwrap();
    register(&a, &["w3"]).await;
    notice_matching(&mut rx, |n| matches!(n, Notice::Registry { .. })).await;
    assert!(tokio::time::timeout(Duration::from_millis(300), quiet.recv()).await.is_err());
    for s in [a, other, elsewhere] {
        s.close().await;
    }
}

#[actix_web::test]
async fn pg_concurrent_opens_migrate_once() {
    let Some(b) = Backend::postgres().await else { return };
    let options = StoreOptions::default();
    let (x, y, z) =
        tokio::join!(store::open(&b.url, &options), store::open(&b.url, &options), store::open(&b.url, &options),);
    let stores = [x.unwrap(), y.unwrap(), z.unwrap()];
    stores[0].upsert_webhook(webhook("w1")).await.unwrap();
    assert!(stores[2].get_webhook("w1").await.unwrap().is_some());
    for s in stores {
        s.close().await;
    }
    // The schema (chosen by the URL's search_path) holds one record of each migration.
    let (client, conn) = tokio_postgres::connect(&pg::base_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let schema = &b._schema.as_ref().unwrap().name;
    let n: i64 =
        client.query_one(&format!("SELECT count(*) FROM {schema}.schema_migrations"), &[]).await.unwrap().get(0);
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres")).unwrap().count();
    assert_eq!(n as usize, files, "one record per migration file");
    // A schema from a newer binary is refused.
    client.batch_execute(&format!("INSERT INTO {schema}.schema_migrations VALUES (99, 'future', 0)")).await.unwrap();
    let err = store::open(&b.url, &StoreOptions::default()).await.err().expect("newer schema refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

#[actix_web::test]
async fn pg_open_errors_hide_the_password() {
    let err = store::open("postgres://u:hunter2@127.0.0.1:1/db?connect_timeout=2", &StoreOptions::default())
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

// ----- SQLite only -----

#[actix_web::test]
async fn sqlite_store_reopens_and_refuses_newer_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url, &StoreOptions::default()).await.unwrap();
    store.upsert_webhook(webhook("kept")).await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&url, &StoreOptions::default()).await.unwrap();
    assert!(store.get_webhook("kept").await.unwrap().is_some(), "data survives reopen; migrations are not re-run");
    store.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    assert_eq!(page_size, 16 * 1024, "a new file gets 16 KiB pages");
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&url, &StoreOptions::default()).await.err().expect("newer schema refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// The writer takes the write lock when its transaction begins, where SQLite waits for it: a lock
/// another connection holds for a moment delays a write instead of failing it. A deferred
/// transaction read first (an upsert does) and then asked for the lock, and SQLite refuses that
/// at once with SQLITE_BUSY: under concurrent registrations, writes failed with "database is
/// locked" about one run in twelve of `fleet --webhooks 30000`.
#[actix_web::test]
async fn sqlite_writes_wait_for_a_write_lock_held_for_a_moment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::open(&url, &StoreOptions::default()).await.unwrap();
    store.upsert_webhook(webhook("a")).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let held = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        other.execute_batch("COMMIT").unwrap();
    });
    let written = store.upsert_webhook(WebhookRecord { url: "https://example.com/b".into(), ..webhook("a") }).await;
    held.join().unwrap();
    assert!(written.is_ok(), "the write waits for the lock: {written:?}");
    let read = store.get_webhook("a").await.unwrap().unwrap().record;
    assert_eq!(read.url, "https://example.com/b");
    store.close().await;
}

#[actix_web::test]
async fn sqlite_version_1_databases_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(include_str!("../../migrations/sqlite/0001_init.sql")).unwrap();
    conn.execute_batch(
        "PRAGMA user_version = 1;
         INSERT INTO webhooks (id, url, secret, events, headers, retry_config, created_at, updated_at)
           VALUES ('old', 'https://example.com/', 's', NULL, '{}', '{}', 1, 2);
         INSERT INTO events (id, event_type, payload, timestamp, created_at) VALUES ('evt_1', 't', '{}', 'ts', 10);
         INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at)
           VALUES ('dlv_1', 'evt_1', 'old', 'pending', 0, 10, 10);",
    )
    .unwrap();
    drop(conn);
    let url = format!("sqlite://{}", path.display());
    let s: Arc<dyn Store> = Arc::new(SqliteStore::open(&url, &StoreOptions::default()).await.unwrap());
    let changes = s.registry_changes(0).await.unwrap();
    assert_eq!((changes.revision, changes.upserted.len(), changes.upserted[0].revision), (1, 1, 1));
    assert_eq!(s.load_due("old", 10, vec![], 10).await.unwrap().items.len(), 1);
    assert_eq!(claim(&s, "local", &["old"], LONG).await, vec![fence("old", 1)]);
    s.upsert_webhook(webhook("old")).await.unwrap();
    assert_eq!(s.registry_changes(1).await.unwrap().upserted[0].revision, 2);
    s.close().await;
}

#[actix_web::test]
async fn pg_listener_reconnects_and_resyncs() {
    let Some(b) = Backend::postgres().await else { return };
    let s = b.open("a").await;
    let mut rx = s.take_notices().unwrap();
    let schema = b._schema.as_ref().unwrap().name.clone();
    let (client, conn) = tokio_postgres::connect(&pg::base_url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let killed: i64 = client
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
            &[&format!("LISTEN \"servio_webhooks:{schema}\"")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "this store's listener connection");
    assert_eq!(notice_matching(&mut rx, |n| *n == Notice::Resync).await, Notice::Resync);
    register(&s, &["w1"]).await;
    notice_matching(&mut rx, |n| matches!(n, Notice::Registry { .. })).await;
    s.close().await;
}

#[actix_web::test]
async fn pg_races_between_nodes_resolve_cleanly() {
    let Some(b) = Backend::postgres().await else { return };
    let a = b.open("node-a").await;
    let other = b.open("node-b").await;
    // Both live: a lease is protected only while its node is.
    a.heartbeat("node-a", "", LONG).await.unwrap();
    other.heartbeat("node-b", "", LONG).await.unwrap();
    for round in 0..5 {
        // Two nodes claim the same unowned webhook at once: exactly one gets it.
        let id = format!("w{round}");
        register(&a, &[&id]).await;
        let ids = [id.as_str()];
        let (x, y) = tokio::join!(claim(&a, "node-a", &ids, LONG), claim(&other, "node-b", &ids, LONG));
        assert_eq!(x.len() + y.len(), 1, "round {round}: {x:?} {y:?}");
        // A publish and a delete at once: the delivery is either dropped or failed, never
        // left pending for a webhook that is gone.
        let e = event(&[&id], None);
        let d = e.deliveries[0].id.clone();
        let (out, deleted) = tokio::join!(publish(&a, vec![e]), other.delete_webhook(&id, 9_000));
        assert!(deleted.unwrap());
        match &out.events[0] {
            EventWrite::Created { dropped } if dropped.is_empty() => {
                assert_eq!(delivery(&a, &d).await.0.status, DeliveryStatus::Failed, "round {round}");
            }
            EventWrite::Created { dropped } => assert_eq!(dropped, &vec![d.clone()]),
            other => panic!("{other:?}"),
        }
        assert!(a.pending_counts(vec![id]).await.unwrap().is_empty());
    }
    a.close().await;
    other.close().await;
}

// ----- retention (part: retention) -----

contract!(prune_takes_what_outlived_its_retention_in_bounded_batches, prune_keeps_everything_without_cutoffs);

const DAY: i64 = 86_400_000;

/// An attempt at `at_ms` (3 ms long).
fn attempt_at(n: u32, code: u16, at_ms: i64) -> AttemptRecord {
    AttemptRecord { at_ms, ..attempt(n, code) }
}

/// Prunes batch after batch until caught up; returns the totals and the batches it took.
async fn prune_all(s: &Arc<dyn Store>, batch: PruneBatch) -> (PruneCounts, u32) {
    let (total, batches, _) = prune_all_kept(s, batch).await;
    (total, batches)
}

/// [`prune_all`], and the earliest time a delivery the walk passed over could go.
async fn prune_all_kept(s: &Arc<dyn Store>, mut batch: PruneBatch) -> (PruneCounts, u32, Option<i64>) {
    let (mut total, mut batches, mut kept_until) = (PruneCounts::default(), 0, None::<i64>);
    loop {
        let out = s.prune(batch.clone()).await.expect("prune batch commits");
        assert!(!out.busy);
        batches += 1;
        let p = out.pruned;
        assert!(p.deliveries_success <= batch.limit.into() && p.deliveries_failed <= batch.limit.into(), "{p:?}");
        total += p;
        if let Some(until) = out.kept_until_ms {
            kept_until = Some(kept_until.map_or(until, |k| k.min(until)));
        }
        batch.events_after = out.events_cursor;
        batch.deliveries_after = out.deliveries_cursor;
        if !out.more {
            return (total, batches, kept_until);
        }
        assert!(batches < 50, "pruning does not end");
    }
}

/// Old successful and failed deliveries go with their attempt log after their own retentions,
/// events go with their last delivery (and their idempotency keys with them, so a key is free
/// again), events nobody subscribed to go after the retention; pending deliveries, recent rows
/// and events a delivery still needs stay.
async fn prune_takes_what_outlived_its_retention_in_bounded_batches(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let f = claim(&s, "a", &["w1", "w2"], LONG).await;
    let (f1, f2) = (&f[0], &f[1]);
    // Published in time order (ids are time-ordered, as the sweep expects).
    let old_ok = event_at(&["w1"], Some("k-old"), 10 * DAY);
    let old_failed = event_at(&["w1"], None, 10 * DAY);
    let mixed = event_at(&["w1", "w2"], None, 10 * DAY);
    let nobody = event_at(&[], Some("k-nobody"), 10 * DAY);
    let old_pending = event_at(&["w2"], None, 10 * DAY);
    let late_ok = event_at(&["w1"], None, 10 * DAY);
    let more_old: Vec<NewEvent> = (0..5).map(|_| event_at(&["w1"], None, 11 * DAY)).collect();
    let recent_failed = event_at(&["w1"], None, 95 * DAY);
    let recent_ok = event_at(&["w1"], Some("k-recent"), 99 * DAY);
    let nobody_recent = event_at(&[], None, 99 * DAY);
    let id = |e: &NewEvent, i: usize| e.deliveries[i].id.clone();
    let (d_old_ok, d_old_failed, d_mixed_ok, d_mixed_pending, d_old_pending) =
        (id(&old_ok, 0), id(&old_failed, 0), id(&mixed, 0), id(&mixed, 1), id(&old_pending, 0));
    let (d_recent_failed, d_recent_ok, d_late_ok) = (id(&recent_failed, 0), id(&recent_ok, 0), id(&late_ok, 0));
    let more_old_ids: Vec<String> = more_old.iter().map(|e| id(e, 0)).collect();
    let event_ids: Vec<String> = [&old_ok, &old_failed, &mixed, &nobody, &old_pending, &recent_ok, &nobody_recent]
        .iter()
        .map(|e| e.id.clone())
        .collect();
    let mut events = vec![old_ok, old_failed, mixed, nobody, old_pending, late_ok];
    events.extend(more_old);
    events.extend([recent_failed, recent_ok, nobody_recent]);
    publish(&s, events).await;
    let mut attempts = vec![
        update(f1, &d_old_ok, attempt_at(1, 500, 10 * DAY), NextStep::RetryAt(10 * DAY + 1)),
        update(f1, &d_old_ok, attempt_at(2, 200, 10 * DAY + 5), NextStep::Succeeded),
        update(f1, &d_old_failed, attempt_at(1, 400, 10 * DAY), NextStep::Failed),
        update(f1, &d_mixed_ok, attempt_at(1, 200, 10 * DAY), NextStep::Succeeded),
        update(f2, &d_mixed_pending, attempt_at(1, 503, 10 * DAY), NextStep::RetryAt(200 * DAY)),
        update(f1, &d_recent_failed, attempt_at(1, 410, 95 * DAY), NextStep::Failed),
        update(f1, &d_recent_ok, attempt_at(1, 200, 99 * DAY), NextStep::Succeeded),
        // Retried for a long time: created before the success cutoff, completed after it.
        update(f1, &d_late_ok, attempt_at(1, 200, 80 * DAY), NextStep::Succeeded),
    ];
    attempts.extend(more_old_ids.iter().map(|d| update(f1, d, attempt_at(1, 200, 11 * DAY), NextStep::Succeeded)));
    assert!(apply(&s, WriteBatch { attempts, ..Default::default() }).await.fenced.is_empty());

    // As of day 100: successes kept 30 days, failures 10; two rows per statement.
    let batch = PruneBatch {
        now_ms: 100 * DAY,
        success_before_ms: Some(70 * DAY),
        failed_before_ms: Some(90 * DAY),
        limit: 2,
        deliveries_after: None,
        events_after: None,
    };
    let (pruned, batches, kept_until) = prune_all_kept(&s, batch.clone()).await;
    // What the walk passed over: two pending deliveries (they could go ten days from now at the
    // earliest: completed now, then the shorter retention) and the late success (completed on
    // day 80, kept 30 days).
    assert_eq!(kept_until, Some(110 * DAY), "the earliest any of them can go");
    let expected = PruneCounts {
        deliveries_success: 7, // old_ok, mixed's first, the five more_old
        deliveries_failed: 1,  // old_failed
        attempts: 2,           // old_ok's failed first attempt, old_failed's
        events: 8,             // old_ok, old_failed, nobody, more_old
        idempotency_keys: 2,   // k-old, k-nobody
    };
    assert_eq!(pruned, expected);
    assert!(batches >= 4, "bounded batches: 7 successes at 2 per statement took {batches}");
    for gone in [&d_old_ok, &d_old_failed, &d_mixed_ok].into_iter().chain(&more_old_ids) {
        assert_eq!(s.get_delivery(gone).await.unwrap(), None, "{gone} pruned");
    }
    // Pending deliveries stay, however old, with the event they need.
    let (pending, log) = delivery(&s, &d_mixed_pending).await;
    assert_eq!((pending.status, log.len()), (DeliveryStatus::Pending, 1));
    assert!(pending.payload.contains(&event_ids[2]), "its event (payload) is still there");
    assert_eq!(delivery(&s, &d_old_pending).await.0.status, DeliveryStatus::Pending);
    // Recent ones stay, a failure within its own retention too.
    assert_eq!(delivery(&s, &d_recent_failed).await.0.status, DeliveryStatus::Failed);
    assert_eq!(delivery(&s, &d_recent_ok).await.0.status, DeliveryStatus::Success);
    // Retention counts from completion: a success created before the cutoff but completed after
    // it stays (the walk passes over it).
    assert_eq!(delivery(&s, &d_late_ok).await.0.status, DeliveryStatus::Success);
    let listed = s.list_deliveries(DeliveryFilter::default(), None, 100).await.unwrap();
    assert_eq!(listed.len(), 5, "{listed:?}");

    // Keys expire with their event: k-old and k-nobody publish anew, k-recent is still taken.
    let out =
        publish(&s, vec![event_at(&["w1"], Some("k-old"), 100 * DAY), event_at(&[], Some("k-nobody"), 100 * DAY)])
            .await;
    assert!(out.events.iter().all(|e| matches!(e, EventWrite::Created { .. })), "{:?}", out.events);
    let out = publish(&s, vec![event_at(&["w1"], Some("k-recent"), 100 * DAY)]).await;
    assert!(matches!(&out.events[0], EventWrite::Duplicate(e) if e.id == event_ids[5]), "{:?}", out.events);

    // Again: nothing more is due; the same cutoffs take nothing.
    let (again, _) = prune_all(&s, batch.clone()).await;
    assert_eq!(again, PruneCounts::default());
    // Once the pending delivery fails and its time comes, it goes, and its event with it.
    apply(
        &s,
        WriteBatch {
            attempts: vec![update(f2, &d_mixed_pending, attempt_at(2, 400, 20 * DAY), NextStep::Failed)],
            ..Default::default()
        },
    )
    .await;
    let (later, _) = prune_all(&s, batch).await;
    assert_eq!((later.deliveries_failed, later.attempts, later.events), (1, 2, 1), "{later:?}");

    if b.postgres {
        // One node prunes at a time: while another holds the schema's prune lock, a batch is busy.
        let schema = b._schema.as_ref().unwrap();
        let (client, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        client
            .execute("SELECT pg_advisory_lock(hashtext('servio_webhooks:prune'), hashtext(current_schema()))", &[])
            .await
            .unwrap();
        let busy = s
            .prune(PruneBatch {
                now_ms: 230 * DAY,
                success_before_ms: Some(200 * DAY),
                failed_before_ms: None,
                limit: 10,
                deliveries_after: None,
                events_after: None,
            })
            .await
            .unwrap();
        assert!(busy.busy && busy.pruned == PruneCounts::default() && !busy.more, "{busy:?}");
        drop(client);
    }
    let size = s.reclaim(1 << 20).await.unwrap();
    assert!(size.bytes > 0, "{size:?}");
    assert_eq!(size.free_bytes.is_some(), !b.postgres);
    s.close().await;
}

/// Without cutoffs nothing goes, however old.
async fn prune_keeps_everything_without_cutoffs(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1"]).await;
    let f = claim(&s, "a", &["w1"], LONG).await.pop().unwrap();
    let e = event_at(&["w1"], Some("k"), 1);
    let d = e.deliveries[0].id.clone();
    publish(&s, vec![e, event_at(&[], None, 1)]).await;
    apply(
        &s,
        WriteBatch { attempts: vec![update(&f, &d, attempt_at(1, 200, 2), NextStep::Succeeded)], ..Default::default() },
    )
    .await;
    let out = s
        .prune(PruneBatch {
            now_ms: 100 * DAY,
            success_before_ms: None,
            failed_before_ms: None,
            limit: 10,
            deliveries_after: None,
            events_after: None,
        })
        .await
        .unwrap();
    assert_eq!((out.pruned, out.more, out.busy), (PruneCounts::default(), false, false));
    assert_eq!(delivery(&s, &d).await.0.status, DeliveryStatus::Success);
    s.close().await;
}

// ----- pacing -----

async fn pacing_fields_round_trip(b: &Backend) {
    let s = b.open("a").await;
    let paced = WebhookRecord { rate_limit_per_second: Some(2.5), ordered: true, ..webhook("p1") };
    s.upsert_webhook(paced.clone()).await.unwrap();
    s.upsert_webhook(webhook("p2")).await.unwrap();
    let read = s.get_webhook("p1").await.unwrap().unwrap().record;
    assert_eq!((read.rate_limit_per_second, read.ordered), (Some(2.5), true));
    let listed = s.list_webhooks(None, 10).await.unwrap();
    let pacing: Vec<_> = listed.iter().map(|v| (v.record.rate_limit_per_second, v.record.ordered)).collect();
    assert_eq!(pacing, [(Some(2.5), true), (None, false)]);
    let changes = s.registry_changes(0).await.unwrap();
    assert_eq!((changes.upserted[0].rate_limit_per_second, changes.upserted[0].ordered), (Some(2.5), true));
    // A replacement takes the new values, a tiny rate included.
    let tiny = WebhookRecord { rate_limit_per_second: Some(1e-3), ordered: false, ..webhook("p1") };
    s.upsert_webhook(tiny).await.unwrap();
    let read = s.get_webhook("p1").await.unwrap().unwrap().record;
    assert_eq!((read.rate_limit_per_second, read.ordered), (Some(1e-3), false));
    s.upsert_webhook(webhook("p1")).await.unwrap();
    let since = changes.revision;
    let changed = s.registry_changes(since).await.unwrap();
    let p1 = changed.upserted.iter().find(|w| w.id == "p1").expect("p1 changed");
    assert_eq!((p1.rate_limit_per_second, p1.ordered), (None, false));
    s.close().await;
}

async fn load_in_order_follows_publish_order_whatever_the_due_times(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["o1", "o2"]).await;
    let f = claim(&s, "a", &["o1"], LONG).await.pop().expect("granted");
    // Published in this order (two commits), due in another.
    let first = vec![event_at(&["o1"], None, 4_000), event_at(&["o1", "o2"], None, 1_000)];
    let second = vec![event_at(&["o1"], None, 3_000), event_at(&["o1"], None, 2_000), event_at(&["o1"], None, 500)];
    let d: Vec<String> = first.iter().chain(&second).map(|e| e.deliveries[0].id.clone()).collect();
    publish(&s, first).await;
    publish(&s, second).await;
    let order = |page: &DuePage| page.items.iter().map(|p| p.id.clone()).collect::<Vec<_>>();

    let page = s.load_in_order("o1", vec![], 10).await.unwrap();
    assert_eq!(order(&page), d, "publish order, not due order");
    assert_eq!(page.next_due_at_ms, None);
    assert_eq!(page.items[1].next_attempt_at_ms, 1_000, "each with its own due time");
    let by_due = s.load_due("o1", 5_000, vec![], 10).await.unwrap();
    assert_eq!(order(&by_due)[0], d[4], "load_due goes by due time instead");

    assert_eq!(order(&s.load_in_order("o1", vec![], 2).await.unwrap()), d[..2]);
    assert_eq!(
        order(&s.load_in_order("o1", vec![d[0].clone(), d[2].clone()], 2).await.unwrap()),
        [d[1].clone(), d[3].clone()]
    );

    // The head retrying later stays the head; a finished delivery leaves the queue.
    apply(
        &s,
        WriteBatch {
            attempts: vec![
                update(&f, &d[0], attempt(1, 503), NextStep::RetryAt(99_000)),
                update(&f, &d[1], attempt(1, 200), NextStep::Succeeded),
                update(&f, &d[2], attempt(1, 400), NextStep::Failed),
            ],
            ..Default::default()
        },
    )
    .await;
    let page = s.load_in_order("o1", vec![], 10).await.unwrap();
    assert_eq!(order(&page), [d[0].clone(), d[3].clone(), d[4].clone()]);
    assert_eq!((page.items[0].attempts, page.items[0].next_attempt_at_ms), (1, 99_000));
    assert_eq!(s.load_in_order("o2", vec![], 10).await.unwrap().items.len(), 1, "per webhook");
    assert!(s.load_in_order("nope", vec![], 10).await.unwrap().items.is_empty());
    s.close().await;
}

/// On PostgreSQL, publish order is the order the publishing transactions took their sequence
/// numbers in, not the order of the ids (minted on each node's own clock).
#[actix_web::test]
async fn pg_publish_order_is_the_database_sequence_not_the_id() {
    let Some(backend) = Backend::postgres().await else { return };
    let a = backend.open("node-a").await;
    let b = backend.open("node-b").await;
    register(&a, &["o1"]).await;
    // Minted first (a node whose clock is behind), committed second.
    let early_id = event_at(&["o1"], None, 1_000);
    let later_id = event_at(&["o1"], None, 1_000);
    let (early, later) = (early_id.deliveries[0].id.clone(), later_id.deliveries[0].id.clone());
    assert!(early < later);
    publish(&b, vec![later_id]).await;
    publish(&a, vec![early_id]).await;
    let page = a.load_in_order("o1", vec![], 10).await.unwrap();
    assert_eq!(page.items.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), [later.as_str(), early.as_str()]);
    a.close().await;
    b.close().await;
}

// ----- lifecycle -----

async fn lifecycle_update_is_compare_and_set(b: &Backend) {
    let s = b.open("a").await;
    let (_, r1) = s.upsert_webhook(webhook("w1")).await.unwrap();
    let mut changed = s.get_webhook("w1").await.unwrap().unwrap().record;
    changed.url = "https://example.org/patched".into();
    changed.secret = "whsec_bmV3LXNlY3JldA==".into();
    changed.previous_secret = Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into());
    changed.previous_secret_until_ms = Some(9_000);
    changed.updated_at_ms = 3_000;
    let r2 = s.update_webhook(changed.clone(), r1).await.unwrap().expect("revision matched");
    assert!(r2 > r1);
    let stored = s.get_webhook("w1").await.unwrap().unwrap().record;
    assert_eq!(stored, WebhookRecord { revision: r2, ..changed.clone() }, "every field round-trips");
    let listed = s.list_webhooks(None, 10).await.unwrap();
    assert_eq!(listed[0].record.previous_secret_until_ms, Some(9_000), "listings carry the rotation");
    let changes = s.registry_changes(r1).await.unwrap();
    assert_eq!(changes.upserted.len(), 1);
    assert_eq!(changes.upserted[0].previous_secret.as_deref(), changed.previous_secret.as_deref());

    // A writer that read revision r1 lost the race: nothing changes.
    let mut stale = changed.clone();
    stale.url = "https://example.org/stale".into();
    assert_eq!(s.update_webhook(stale, r1).await.unwrap(), None);
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().record.url, "https://example.org/patched");
    assert_eq!(s.update_webhook(webhook("nope"), r2).await.unwrap(), None, "unknown webhook");

    // A replace keeps what it is given, the rotation included.
    let mut replaced = webhook("w1");
    replaced.previous_secret = Some("old".into());
    replaced.previous_secret_until_ms = Some(5);
    s.upsert_webhook(replaced).await.unwrap();
    let r = s.get_webhook("w1").await.unwrap().unwrap().record;
    assert_eq!((r.previous_secret.as_deref(), r.previous_secret_until_ms), (Some("old"), Some(5)));
    s.close().await;
}

async fn lifecycle_disable_fails_pending_and_enable_resets_health(b: &Backend) {
    let s = b.open("a").await;
    register(&s, &["w1", "w2"]).await;
    let f = claim(&s, "a", &["w1"], LONG).await.remove(0);
    publish(&s, vec![event(&["w1", "w2"], None)]).await;
    let health = StoredHealth { consecutive_failures: 3, failing_since_ms: Some(1), ..StoredHealth::default() };
    apply(&s, WriteBatch { health: vec![HealthWrite { fence: f.clone(), health }], ..WriteBatch::default() }).await;

    let view = s.get_webhook("w1").await.unwrap().unwrap();
    let mut disabled = view.record.clone();
    disabled.disabled_at_ms = Some(7_000);
    disabled.disabled_reason = Some("disabled by operator: maintenance".into());
    let r = s.update_webhook(disabled, view.record.revision).await.unwrap().expect("applied");
    let v = s.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!(v.record.disabled_at_ms, Some(7_000));
    assert_eq!(v.record.disabled_reason.as_deref(), Some("disabled by operator: maintenance"));
    let failed = s
        .list_deliveries(DeliveryFilter { webhook_id: Some("w1".into()), ..DeliveryFilter::default() }, None, 10)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, DeliveryStatus::Failed);
    assert_eq!(failed[0].last_error.as_deref(), Some("disabled by operator: maintenance"));
    let other = s
        .list_deliveries(DeliveryFilter { webhook_id: Some("w2".into()), ..DeliveryFilter::default() }, None, 10)
        .await
        .unwrap();
    assert_eq!(other[0].status, DeliveryStatus::Pending, "other webhooks keep theirs");

    // Published while disabled (a node that had not heard yet): stays pending until enabled.
    publish(&s, vec![event(&["w1"], None)]).await;
    let mut enabled = v.record.clone();
    enabled.disabled_at_ms = None;
    enabled.disabled_reason = None;
    s.update_webhook(enabled, r).await.unwrap().expect("applied");
    let v = s.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!(v.record.disabled_at_ms, None);
    let h = v.health.expect("health row kept");
    assert_eq!((h.consecutive_failures, h.failing_since_ms), (0, None), "health starts over");
    assert_eq!(s.load_due("w1", i64::MAX / 2, vec![], 10).await.unwrap().items.len(), 1, "still pending");
    s.close().await;
}

/// A PostgreSQL schema from before pacing keeps its pending deliveries' order: they are numbered
/// in id order by the migration, and new publishes come after them.
#[actix_web::test]
async fn pg_pacing_migration_numbers_existing_pending_deliveries_in_id_order() {
    let Some(schema) = pg::schema().await else { return };
    let (client, conn) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let mut sql = String::from(
        "CREATE TABLE schema_migrations (version INT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL);",
    );
    for (version, name, file) in [
        (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
        (2, "node_leases", include_str!("../../migrations/postgres/0002_node_leases.sql")),
        (3, "probes", include_str!("../../migrations/postgres/0003_probes.sql")),
    ] {
        sql.push_str(file);
        sql.push_str(&format!("\nINSERT INTO schema_migrations VALUES ({version}, '{name}', 0);\n"));
    }
    sql.push_str(
        "INSERT INTO webhooks (id, url, secret, events, headers, retry_config, created_at, updated_at, revision)
           VALUES ('old', 'https://example.com/', 's', NULL, '{}', '{}', 1, 2, 1);
         INSERT INTO events (id, event_type, payload, timestamp, created_at) VALUES ('evt_1', 't', '{}', 'ts', 10);
         INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) VALUES
           ('dlv_3', 'evt_1', 'old', 'pending', 0, 10, 10),
           ('dlv_1', 'evt_1', 'old', 'pending', 0, 30, 10),
           ('dlv_0', 'evt_1', 'old', 'success', 1, NULL, 10),
           ('dlv_2', 'evt_1', 'old', 'pending', 0, 20, 10);",
    );
    client.batch_execute(&sql).await.unwrap();
    let s = store::open(&schema.url, &StoreOptions::default()).await.unwrap();
    let old = s.get_webhook("old").await.unwrap().unwrap().record;
    assert_eq!((old.rate_limit_per_second, old.ordered), (None, false));
    publish(&s, vec![event(&["old"], None)]).await;
    let page = s.load_in_order("old", vec![], 10).await.unwrap();
    let got: Vec<&str> = page.items.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got[..3], ["dlv_1", "dlv_2", "dlv_3"], "existing pending ones in id order, then the new one");
    assert_eq!(got.len(), 4);
    // By id the new one (`dlv_0…`) would sort first: the sequence puts it last.
    assert!(got[3].starts_with("dlv_0") && got[3].len() > 10);
    s.close().await;
}
