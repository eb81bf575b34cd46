//! The `Store` contract, written once against `Arc<dyn Store>` so that every backend runs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use servio_webhooks::RetryConfig;
use servio_webhooks::model::{DeliveryStatus, WebhookRecord, delivery_id, new_event_id};
use servio_webhooks::store::sqlite::SqliteStore;
use servio_webhooks::store::*;

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
    }
}

fn event(webhooks: &[&str], key: Option<&str>) -> NewEvent {
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
        created_at_ms: 5_000,
        idempotency_key: key.map(str::to_string),
    }
}

fn attempt(n: u32, code: u16) -> AttemptRecord {
    AttemptRecord {
        attempt: n,
        at_ms: 6_000 + n as i64,
        duration_ms: 3,
        status_code: Some(code),
        error: None,
        response_body: Some("ok".into()),
    }
}

async fn apply(store: &Arc<dyn Store>, batch: WriteBatch) -> BatchOutcome {
    store.apply(Arc::new(batch)).await.expect("batch commits")
}

/// The contract every backend must meet.
pub async fn contract(store: Arc<dyn Store>) {
    // Registrations.
    assert_eq!(store.upsert_webhook(webhook("w1")).await.unwrap(), Upserted::Created);
    assert_eq!(store.upsert_webhook(webhook("w2")).await.unwrap(), Upserted::Created);
    let mut changed = webhook("w1");
    changed.url = "https://example.org/new".into();
    changed.updated_at_ms = 2_000;
    assert_eq!(store.upsert_webhook(changed.clone()).await.unwrap(), Upserted::Replaced);
    assert_eq!(store.get_webhook("w1").await.unwrap(), Some(changed));
    assert_eq!(store.get_webhook("nope").await.unwrap(), None);
    let page = store.list_webhooks(None, 1).await.unwrap();
    assert_eq!(page.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w1"]);
    let page = store.list_webhooks(Some("w1".into()), 10).await.unwrap();
    assert_eq!(page.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w2"]);
    assert_eq!(store.load_webhooks().await.unwrap().len(), 2);

    // Events with deliveries, and idempotency.
    let e1 = event(&["w1", "w2"], None);
    let e2 = event(&["w1"], Some("key-1"));
    let e2_dup = event(&["w1"], Some("key-1"));
    let (e1_id, e2_id) = (e1.id.clone(), e2.id.clone());
    let out = apply(&store, WriteBatch { events: vec![e1, e2, e2_dup], ..Default::default() }).await;
    assert_eq!(out.events.len(), 3);
    assert_eq!(out.events[0], EventWrite::Created);
    assert_eq!(out.events[1], EventWrite::Created);
    match &out.events[2] {
        EventWrite::Duplicate(existing) => {
            assert_eq!(existing.id, e2_id);
            assert_eq!(existing.deliveries, vec![(delivery_id(&e2_id, 0), "w1".to_string())]);
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }

    // Backlog paging in id order.
    let all = store.load_pending("w1", PageStart::Beginning, 10).await.unwrap();
    let ids: Vec<_> = all.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids, [delivery_id(&e1_id, 0), delivery_id(&e2_id, 0)]);
    assert_eq!(all[0].attempts, 0);
    assert_eq!(all[0].next_attempt_at_ms, 5_000);
    assert_eq!(all[0].event_type, "order.created");
    assert!(all[0].payload.starts_with(b"{\"id\":\"evt_"));
    let after = store.load_pending("w1", PageStart::After(ids[0].clone()), 10).await.unwrap();
    assert_eq!(after.len(), 1);
    let from = store.load_pending("w1", PageStart::From(ids[1].clone()), 10).await.unwrap();
    assert_eq!(from[0].id, ids[1]);
    assert_eq!(store.load_pending("w1", PageStart::Beginning, 1).await.unwrap().len(), 1);

    // Attempt outcomes.
    apply(
        &store,
        WriteBatch {
            attempts: vec![AttemptUpdate {
                delivery_id: ids[0].clone(),
                attempt: attempt(1, 500),
                next: NextStep::RetryAt(9_000),
            }],
            ..Default::default()
        },
    )
    .await;
    let p = store.load_pending("w1", PageStart::Beginning, 10).await.unwrap();
    assert_eq!((p[0].attempts, p[0].next_attempt_at_ms), (1, 9_000));
    apply(
        &store,
        WriteBatch {
            attempts: vec![AttemptUpdate {
                delivery_id: ids[0].clone(),
                attempt: attempt(2, 200),
                next: NextStep::Succeeded,
            }],
            ..Default::default()
        },
    )
    .await;
    let (d, log) = store.get_delivery(&ids[0]).await.unwrap().unwrap();
    assert_eq!(d.status, DeliveryStatus::Success);
    assert_eq!(d.attempts, 2);
    assert_eq!(d.next_attempt_at_ms, None);
    assert_eq!(d.last_status_code, Some(200));
    assert_eq!(d.completed_at_ms, Some(6_002 + 3));
    assert_eq!(log, vec![attempt(1, 500), attempt(2, 200)]);
    // A finished delivery is not changed by a late update.
    apply(
        &store,
        WriteBatch {
            attempts: vec![AttemptUpdate {
                delivery_id: ids[0].clone(),
                attempt: attempt(3, 500),
                next: NextStep::Failed,
            }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(store.get_delivery(&ids[0]).await.unwrap().unwrap().0.status, DeliveryStatus::Success);
    assert_eq!(store.get_delivery("dlv_missing").await.unwrap(), None);

    // Listing: newest first, filters, cursor.
    let list = store.list_deliveries(DeliveryFilter::default(), None, 10).await.unwrap();
    assert_eq!(list.len(), 3);
    assert!(list.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let w1 = DeliveryFilter { webhook_id: Some("w1".into()), status: Some(DeliveryStatus::Pending) };
    let list = store.list_deliveries(w1, None, 10).await.unwrap();
    assert_eq!(list.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), [ids[1].clone()]);
    let older = store.list_deliveries(DeliveryFilter::default(), Some(ids[1].clone()), 10).await.unwrap();
    assert!(older.iter().all(|d| d.id < ids[1]));

    // Disable fails the webhook's pending deliveries; single failures too.
    let out = apply(
        &store,
        WriteBatch {
            disables: vec![DisableWebhook { webhook_id: "w2".into(), reason: "HTTP 410 Gone".into(), at_ms: 7_000 }],
            failures: vec![(ids[1].clone(), "webhook deleted".into())],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(out.disabled, vec![("w2".to_string(), 1)]);
    let w2 = store.get_webhook("w2").await.unwrap().unwrap();
    assert_eq!((w2.disabled_at_ms, w2.disabled_reason.as_deref()), (Some(7_000), Some("HTTP 410 Gone")));
    assert!(store.load_pending("w2", PageStart::Beginning, 10).await.unwrap().is_empty());
    let (d, _) = store.get_delivery(&ids[1]).await.unwrap().unwrap();
    assert_eq!((d.status, d.last_error.as_deref()), (DeliveryStatus::Failed, Some("webhook deleted")));
    // Re-registering clears the disable.
    store.upsert_webhook(webhook("w2")).await.unwrap();
    assert_eq!(store.get_webhook("w2").await.unwrap().unwrap().disabled_at_ms, None);

    // Recovery: counts per webhook; deliveries of vanished webhooks fail.
    let e3 = event(&["w1", "ghost"], None);
    let ghost_delivery = e3.deliveries[1].id.clone();
    apply(&store, WriteBatch { events: vec![e3], ..Default::default() }).await;
    let counts = store.recover(8_000).await.unwrap();
    assert_eq!(counts, vec![("w1".to_string(), 1)]);
    assert_eq!(store.get_delivery(&ghost_delivery).await.unwrap().unwrap().0.status, DeliveryStatus::Failed);

    // Delete fails pending deliveries and keeps history.
    assert!(store.delete_webhook("w1", 9_000).await.unwrap());
    assert!(!store.delete_webhook("w1", 9_000).await.unwrap());
    assert_eq!(store.get_webhook("w1").await.unwrap(), None);
    assert!(store.load_pending("w1", PageStart::Beginning, 10).await.unwrap().is_empty());
    assert_eq!(store.list_deliveries(DeliveryFilter::default(), None, 100).await.unwrap().len(), 5);

    store.ping().await.unwrap();
    store.close().await;
    assert!(matches!(
        store.apply(Arc::new(WriteBatch { failures: vec![("x".into(), "y".into())], ..Default::default() })).await,
        Err(StoreError::Closed)
    ));
}

#[actix_web::test]
async fn sqlite_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let store = SqliteStore::open(&url, &StoreOptions::default()).await.unwrap();
    contract(Arc::new(store)).await;
}

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
    rusqlite_set_version(&path, 99);
    let err = SqliteStore::open(&url, &StoreOptions::default()).await.err().expect("newer schema refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

fn rusqlite_set_version(path: &std::path::Path, v: i32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "user_version", v).unwrap();
}
