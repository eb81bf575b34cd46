//! The tenants part of the `Store` contract, on both backends: the webhook's tenant (stored,
//! replaced, carried by registry changes so every node routes by it), the event's tenant (and a
//! duplicate's), tenant-filtered webhook and delivery listings, and API tokens.

use super::*;

contract!(
    tenant_is_stored_replaced_and_in_registry_changes,
    events_record_their_tenant,
    tenant_listings_are_filtered,
    api_tokens_round_trip,
);

fn tenanted(id: &str, tenant: Option<&str>) -> WebhookRecord {
    WebhookRecord { tenant: tenant.map(str::to_string), ..webhook(id) }
}

async fn tenant_is_stored_replaced_and_in_registry_changes(b: &Backend) {
    let s = b.open("n1").await;
    s.upsert_webhook(tenanted("w1", Some("venue-a"))).await.unwrap();
    s.upsert_webhook(tenanted("w2", None)).await.unwrap();
    let got = s.get_webhook("w1").await.unwrap().unwrap();
    assert_eq!(got.record.tenant.as_deref(), Some("venue-a"));
    assert_eq!(s.get_webhook("w2").await.unwrap().unwrap().record.tenant, None);
    let full = s.registry_changes(0).await.unwrap();
    let tenants: Vec<_> = full.upserted.iter().map(|w| (w.id.as_str(), w.tenant.as_deref())).collect();
    assert_eq!(tenants, [("w1", Some("venue-a")), ("w2", None)]);
    // A replacement changes it, and the change reaches other nodes' registries.
    let (_, rev) = s.upsert_webhook(tenanted("w1", Some("venue-b"))).await.unwrap();
    let other = b.other(&s, "n2").await;
    let changes = other.registry_changes(full.revision).await.unwrap();
    assert_eq!(changes.revision, rev);
    assert_eq!(changes.upserted.len(), 1);
    assert_eq!(changes.upserted[0].tenant.as_deref(), Some("venue-b"));
    s.upsert_webhook(tenanted("w1", None)).await.unwrap();
    assert_eq!(s.get_webhook("w1").await.unwrap().unwrap().record.tenant, None);
}

async fn events_record_their_tenant(b: &Backend) {
    let s = b.open("n1").await;
    register(&s, &["w1"]).await;
    let first = NewEvent { tenant: Some("venue-a".into()), ..event(&["w1"], Some("tk-1")) };
    let first_id = first.id.clone();
    assert_eq!(publish(&s, vec![first]).await.events[0], EventWrite::Created { dropped: vec![] });
    // A repeat of the key answers with the first event's tenant, not its own.
    let again = NewEvent { tenant: None, ..event(&["w1"], Some("tk-1")) };
    match &publish(&s, vec![again]).await.events[0] {
        EventWrite::Duplicate(existing) => {
            assert_eq!(existing.id, first_id);
            assert_eq!(existing.tenant.as_deref(), Some("venue-a"));
        }
        other => panic!("expected a duplicate, got {other:?}"),
    }
    // Within one batch too.
    let a = NewEvent { tenant: Some("venue-b".into()), ..event(&["w1"], Some("tk-2")) };
    let b2 = NewEvent { tenant: None, ..event(&["w1"], Some("tk-2")) };
    let out = publish(&s, vec![a, b2]).await;
    match &out.events[1] {
        EventWrite::Duplicate(existing) => assert_eq!(existing.tenant.as_deref(), Some("venue-b")),
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

async fn tenant_listings_are_filtered(b: &Backend) {
    let s = b.open("n1").await;
    for (id, t) in [("a1", Some("venue-a")), ("a2", Some("venue-a")), ("b1", Some("venue-b")), ("u1", None)] {
        s.upsert_webhook(tenanted(id, t)).await.unwrap();
    }
    let a = s.list_tenant_webhooks("venue-a", None, 10).await.unwrap();
    assert_eq!(ids(&a), ["a1", "a2"]);
    let page = s.list_tenant_webhooks("venue-a", Some("a1".into()), 10).await.unwrap();
    assert_eq!(ids(&page), ["a2"]);
    assert_eq!(ids(&s.list_tenant_webhooks("venue-a", None, 1).await.unwrap()), ["a1"]);
    assert!(s.list_tenant_webhooks("venue-z", None, 10).await.unwrap().is_empty());
    assert_eq!(ids(&s.list_webhooks(None, 10).await.unwrap()), ["a1", "a2", "b1", "u1"]);

    publish(&s, vec![event(&["a1", "b1", "u1"], None), event(&["a2"], None)]).await;
    let of = |tenant: &str| DeliveryFilter { tenant: Some(tenant.into()), ..Default::default() };
    let a = s.list_deliveries(of("venue-a"), None, 10).await.unwrap();
    let mut hooks: Vec<_> = a.iter().map(|d| d.webhook_id.as_str()).collect();
    hooks.sort();
    assert_eq!(hooks, ["a1", "a2"]);
    let b_only = s.list_deliveries(of("venue-b"), None, 10).await.unwrap();
    assert_eq!(b_only.iter().map(|d| d.webhook_id.as_str()).collect::<Vec<_>>(), ["b1"]);
    // Combined with the other filters; a webhook of another tenant yields nothing.
    let f = DeliveryFilter { webhook_id: Some("b1".into()), ..of("venue-a") };
    assert!(s.list_deliveries(f, None, 10).await.unwrap().is_empty());
    let f = DeliveryFilter { status: Some(DeliveryStatus::Pending), ..of("venue-a") };
    assert_eq!(s.list_deliveries(f, None, 10).await.unwrap().len(), 2);
    assert_eq!(s.list_deliveries(DeliveryFilter::default(), None, 10).await.unwrap().len(), 4);
    // A deleted webhook's deliveries belong to no tenant any more.
    assert!(s.delete_webhook("a1", now_ms()).await.unwrap());
    let a = s.list_deliveries(of("venue-a"), None, 10).await.unwrap();
    assert_eq!(a.iter().map(|d| d.webhook_id.as_str()).collect::<Vec<_>>(), ["a2"]);
}

async fn api_tokens_round_trip(b: &Backend) {
    let s = b.open("n1").await;
    let token = |id: &str, tenant: &str| ApiTokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        secret_hash: vec![7u8; 32],
        description: Some(format!("for {tenant}")),
        created_at_ms: 1_234,
    };
    assert_eq!(s.api_token("tok_1").await.unwrap(), None);
    s.create_api_token(token("tok_1", "venue-a")).await.unwrap();
    s.create_api_token(ApiTokenRecord { description: None, ..token("tok_2", "venue-b") }).await.unwrap();
    assert!(s.create_api_token(token("tok_1", "venue-z")).await.is_err(), "ids are unique");
    assert_eq!(s.api_token("tok_1").await.unwrap(), Some(token("tok_1", "venue-a")));
    // Seen at once by another node.
    let other = b.other(&s, "n2").await;
    assert_eq!(other.api_token("tok_2").await.unwrap().unwrap().description, None);
    let all = s.list_api_tokens(None, 10).await.unwrap();
    assert_eq!(all.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["tok_1", "tok_2"]);
    let after = s.list_api_tokens(Some("tok_1".into()), 10).await.unwrap();
    assert_eq!(after.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["tok_2"]);
    assert_eq!(s.list_api_tokens(None, 1).await.unwrap().len(), 1);
    assert!(s.delete_api_token("tok_1").await.unwrap());
    assert!(!s.delete_api_token("tok_1").await.unwrap());
    assert_eq!(other.api_token("tok_1").await.unwrap(), None, "deleted for every node");
    assert_eq!(s.list_api_tokens(None, 10).await.unwrap().len(), 1);
}
