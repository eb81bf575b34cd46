//! Tenants and wildcards against real receivers: tenant routing (and the `data.venueId` default),
//! on one node and across two nodes sharing PostgreSQL; tenant-scoped API tokens (created, listed
//! and deleted by the admin only; a tenant sees and manages only its own webhooks and deliveries,
//! others' are 404; deleted tokens stop at once); wildcard subscriptions; bad input.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::config::Settings;

use crate::helpers::*;
use crate::pg;

const WAIT: Duration = Duration::from_secs(10);
const ADMIN: &str = "admin-secret-token";

/// The webhook ids a publish receipt created deliveries for.
fn targets(receipt: &Value) -> BTreeSet<String> {
    receipt["deliveries"].as_array().unwrap().iter().map(|d| d["webhookId"].as_str().unwrap().to_string()).collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

async fn put_webhook(app: &TestApp, id: &str, body: Value) {
    let (status, json) = app.request("PUT", &format!("/v1/webhooks/{id}"), Some(&body.to_string())).await;
    assert_eq!(status, 201, "{json}");
}

#[actix_web::test]
async fn tenant_events_reach_their_tenants_and_untenanted_webhooks_only() {
    let app = TestApp::start().await;
    let (a, b, u) = (TestReceiver::ok(), TestReceiver::ok(), TestReceiver::ok());
    put_webhook(&app, "venue-a-pos", json!({"url": a.url, "tenant": "venue-a"})).await;
    put_webhook(&app, "venue-b-pos", json!({"url": b.url, "tenant": "venue-b"})).await;
    put_webhook(&app, "analytics", json!({"url": u.url})).await;

    // An event for venue A: A's webhook and the untenanted one, not B's.
    let (status, receipt) = app
        .post("/v1/events", json!({"event": "order.created", "data": {"orderId": "o-1"}, "tenant": "venue-a"}))
        .await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["tenant"], "venue-a");
    assert_eq!(targets(&receipt), set(&["venue-a-pos", "analytics"]));
    let got = a.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["data"]["orderId"], "o-1");
    assert_eq!(got[0].json().as_object().unwrap().len(), 4, "the wire body is unchanged: {}", got[0].json());
    u.wait_for(1, WAIT).await;

    // Without a tenant (and no venueId): only the untenanted webhook.
    let receipt = app.publish("order.created", json!({"orderId": "o-2"})).await;
    assert_eq!(receipt["tenant"], Value::Null);
    assert_eq!(targets(&receipt), set(&["analytics"]));
    u.wait_for(2, WAIT).await;

    // `data.venueId` is the default tenant.
    let receipt = app.publish("order.updated", json!({"orderId": "o-3", "venueId": "venue-b"})).await;
    assert_eq!(receipt["tenant"], "venue-b");
    assert_eq!(targets(&receipt), set(&["venue-b-pos", "analytics"]));
    let got = b.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["data"]["venueId"], "venue-b");
    u.wait_for(3, WAIT).await;
    // A given tenant wins over venueId; a venueId that is no tenant name is ignored.
    let (_, receipt) = app
        .post("/v1/events", json!({"event": "order.updated", "data": {"venueId": "venue-b"}, "tenant": "venue-a"}))
        .await;
    assert_eq!(targets(&receipt), set(&["venue-a-pos", "analytics"]));
    let receipt = app.publish("order.updated", json!({"venueId": "not a tenant"})).await;
    assert_eq!((receipt["tenant"].clone(), targets(&receipt)), (Value::Null, set(&["analytics"])));
    // Idempotent repeats answer with the first publish's tenant.
    let body = json!({"event": "table.updated", "data": {"venueId": "venue-a"}, "idempotencyKey": "k-1"});
    let (_, first) = app.post("/v1/events", body.clone()).await;
    let (_, again) = app.post("/v1/events", body).await;
    assert_eq!((again["duplicate"].clone(), again["tenant"].clone()), (json!(true), first["tenant"].clone()));

    // Everything arrives where the receipts said, and B got nothing of A's.
    a.wait_for(3, WAIT).await;
    u.wait_for(6, WAIT).await;
    b.wait_for(1, WAIT).await;
    assert_eq!(b.count(), 1, "venue B's webhook got only venue B's event");

    // The webhook resource shows its tenant; a replace without `tenant` keeps it, `null` clears it.
    let (_, w) = app.get("/v1/webhooks/venue-a-pos").await;
    assert_eq!(w["tenant"], "venue-a");
    let (status, w) = app.request("PUT", "/v1/webhooks/venue-a-pos", Some(&json!({"url": a.url}).to_string())).await;
    assert_eq!((status, w["tenant"].clone()), (200, json!("venue-a")));
    let body = json!({"url": a.url, "tenant": null}).to_string();
    let (status, w) = app.request("PUT", "/v1/webhooks/venue-a-pos", Some(&body)).await;
    assert_eq!((status, w["tenant"].clone()), (200, Value::Null));
    let receipt = app.publish("order.created", json!({"orderId": "o-4"})).await;
    assert_eq!(targets(&receipt), set(&["venue-a-pos", "analytics"]), "untenanted now, so it takes untenanted events");
}

#[actix_web::test]
async fn the_library_publishes_for_a_tenant() {
    let app = TestApp::start().await;
    let (a, u) = (TestReceiver::ok(), TestReceiver::ok());
    put_webhook(&app, "a", json!({"url": a.url, "tenant": "venue-a"})).await;
    put_webhook(&app, "u", json!({"url": u.url})).await;
    let receipt = app.webhooks.publish_for("venue-a", "order.created", json!({"orderId": "o"})).await.unwrap();
    assert_eq!(receipt.tenant.as_deref(), Some("venue-a"));
    assert_eq!(receipt.deliveries.len(), 2);
    let receipt = app.webhooks.publish("order.created", json!({"venueId": "venue-a"})).await.unwrap();
    assert_eq!(receipt.tenant.as_deref(), Some("venue-a"));
    let err = app.webhooks.publish_for("bad tenant", "order.created", json!({})).await.unwrap_err();
    assert!(err.is_client_error(), "{err}");
    a.wait_for(2, WAIT).await;
    u.wait_for(2, WAIT).await;
}

#[actix_web::test]
async fn wildcard_subscriptions_match_the_types_under_their_prefix() {
    let app = TestApp::start().await;
    let orders = TestReceiver::ok();
    let w = app.register(json!({"url": orders.url, "events": ["order.*", "inventory.low"]})).await;
    assert_eq!(w["events"], json!(["order.*", "inventory.low"]));
    let id = w["id"].as_str().unwrap().to_string();
    for (event, subscribed) in [
        ("order.created", true),
        ("order.updated", true),
        ("order.deleted", true),
        ("inventory.low", true),
        ("table.updated", false),
    ] {
        let receipt = app.publish(event, json!({})).await;
        assert_eq!(targets(&receipt).contains(&id), subscribed, "{event}");
    }
    let got = orders.wait_for(4, WAIT).await;
    let events: BTreeSet<String> = got.iter().map(|r| r.json()["event"].as_str().unwrap().to_string()).collect();
    assert_eq!(events, set(&["order.created", "order.updated", "order.deleted", "inventory.low"]));

    // Unknown patterns are refused like unknown types, and change nothing.
    for bad in ["foo.*", "order.cr*", "*.created", "order.created.*", "order.**"] {
        let (status, err) = app.post("/v1/webhooks", json!({"url": orders.url, "events": [bad]})).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "unknown_event_type", "{bad}");
        assert!(err["error"]["message"].as_str().unwrap().contains(bad), "{err}");
    }
    let (status, err) = app.post("/v1/events", json!({"event": "order.*", "data": {}})).await;
    assert_eq!((status, err["error"]["code"].clone()), (400, json!("invalid_event_type")), "patterns are not types");
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    // The document lists the wildcards among the subscribable values.
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200);
    let entries = &doc["components"]["schemas"]["WebhookIn"]["properties"]["events"]["items"]["enum"];
    assert!(entries.as_array().unwrap().contains(&json!("order.*")), "{entries}");
}

/// A server with an admin token, and requests as the admin or as a tenant token.
struct Tokens {
    app: TestApp,
}

impl Tokens {
    async fn start() -> Self {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let settings = Settings { admin_token: Some(ADMIN.into()), open_admin_api: false, ..settings(&dir) };
        Self { app: TestApp::start_with(dir, settings).await }
    }

    async fn call(&self, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let auth = format!("Bearer {token}");
        let body = body.map(|b| b.to_string());
        self.app.request_with(method, path, body.as_deref(), &[("authorization", &auth)]).await
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(ADMIN, method, path, body).await
    }

    /// Creates a token for `tenant` and returns (id, token).
    async fn token(&self, tenant: &str) -> (String, String) {
        let (status, t) = self.admin("POST", "/v1/tokens", Some(json!({"tenant": tenant}))).await;
        assert_eq!(status, 201, "{t}");
        (t["id"].as_str().unwrap().to_string(), t["token"].as_str().unwrap().to_string())
    }
}

fn ids(page: &Value) -> BTreeSet<String> {
    page["data"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect()
}

#[actix_web::test]
async fn tenant_tokens_are_managed_by_the_admin_and_deleted_ones_stop_at_once() {
    let t = Tokens::start().await;
    let (status, created) =
        t.admin("POST", "/v1/tokens", Some(json!({"tenant": "venue-a", "description": "POS of venue A"}))).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(id.starts_with("tok_") && token.starts_with("swt_"), "{created}");
    assert_eq!(created["tenant"], "venue-a");
    assert_eq!(created["description"], "POS of venue A");
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));
    let (_, second) = t.admin("POST", "/v1/tokens", Some(json!({"tenant": "venue-a"}))).await;
    assert_ne!(second["token"], created["token"]);

    // Listed without their values.
    let (status, list) = t.admin("GET", "/v1/tokens", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["data"][0]["id"], json!(id));
    assert!(list["data"][0].get("token").is_none(), "{list}");
    assert!(!list.to_string().contains(&token));
    let (_, page) = t.admin("GET", "/v1/tokens?limit=1", None).await;
    let cursor = page["nextCursor"].as_str().unwrap().to_string();
    let (_, next) = t.admin("GET", &format!("/v1/tokens?limit=1&cursor={cursor}"), None).await;
    assert_eq!(next["data"][0]["id"], second["id"]);

    // The tenant token works, but manages no tokens and reads no admin routes.
    let (status, _) = t.call(&token, "GET", "/v1/webhooks", None).await;
    assert_eq!(status, 200);
    for (method, path, body) in [
        ("GET", "/v1/tokens", None),
        ("POST", "/v1/tokens", Some(json!({"tenant": "venue-a"}))),
        ("DELETE", &format!("/v1/tokens/{id}") as &str, None),
        ("GET", "/v1/nodes", None),
    ] {
        let (status, err) = t.call(&token, method, path, body).await;
        assert_eq!((status, err["error"]["code"].clone()), (403, json!("forbidden")), "{method} {path}: {err}");
    }
    let (status, _) = t.call(&token, "GET", "/v1/event-types", None).await;
    assert_eq!(status, 200);

    // Deleted: 401 at once; deleting again is 404.
    let (status, _) = t.admin("DELETE", &format!("/v1/tokens/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, err) = t.call(&token, "GET", "/v1/webhooks", None).await;
    assert_eq!((status, err["error"]["code"].clone()), (401, json!("unauthorized")), "{err}");
    let (status, _) = t.admin("DELETE", &format!("/v1/tokens/{id}"), None).await;
    assert_eq!(status, 404);
    let (_, list) = t.admin("GET", "/v1/tokens", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);

    // A well-formed token nobody issued, and the other token's id with a forged secret: 401.
    let (_, other) = t.token("venue-b").await;
    let forged = format!("{}{}", &other[..other.len() - 43], "A".repeat(43));
    for bad in [forged.as_str(), "swt_0123456789abcdef0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, _) = t.call(bad, "GET", "/v1/webhooks", None).await;
        assert_eq!(status, 401, "{bad}");
    }
    let (status, _) = t.call(&other, "GET", "/v1/webhooks", None).await;
    assert_eq!(status, 200);
    // Without any token: 401 as before.
    let (status, _) = t.app.get("/v1/tokens").await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn a_tenant_token_sees_and_manages_only_its_tenants_webhooks_and_deliveries() {
    let t = Tokens::start().await;
    let (_, token) = t.token("venue-a").await;
    let (mine_rx, theirs_rx, shared_rx) = (TestReceiver::ok(), TestReceiver::ok(), TestReceiver::ok());

    // Created by the tenant: its tenant's, whatever the body leaves out.
    let (status, mine) = t.call(&token, "POST", "/v1/webhooks", Some(json!({"url": mine_rx.url}))).await;
    assert_eq!(status, 201, "{mine}");
    assert_eq!(mine["tenant"], "venue-a");
    let mine_id = mine["id"].as_str().unwrap().to_string();
    let (status, same) =
        t.call(&token, "PUT", "/v1/webhooks/a-2", Some(json!({"url": mine_rx.url, "tenant": "venue-a"}))).await;
    assert_eq!((status, same["tenant"].clone()), (201, json!("venue-a")));
    for tenant in [json!("venue-b"), Value::Null] {
        let (status, err) =
            t.call(&token, "POST", "/v1/webhooks", Some(json!({"url": mine_rx.url, "tenant": tenant}))).await;
        assert_eq!((status, err["error"]["code"].clone()), (403, json!("tenant_mismatch")), "{tenant}: {err}");
    }
    // The admin's: one of venue B, one without a tenant.
    let (status, _) =
        t.admin("PUT", "/v1/webhooks/b-1", Some(json!({"url": theirs_rx.url, "tenant": "venue-b"}))).await;
    assert_eq!(status, 201);
    let (status, _) = t.admin("PUT", "/v1/webhooks/shared", Some(json!({"url": shared_rx.url}))).await;
    assert_eq!(status, 201);

    // Lists are filtered; the admin sees everything.
    let (_, page) = t.call(&token, "GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&page), set(&[mine_id.as_str(), "a-2"]));
    let (_, page) = t.call(&token, "GET", "/v1/webhooks?limit=1", None).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_string());
    let (_, all) = t.admin("GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&all), set(&[mine_id.as_str(), "a-2", "b-1", "shared"]));

    // Another tenant's webhook, or one without a tenant, is not there: 404, and nothing changes.
    for other in ["b-1", "shared", "no-such-webhook"] {
        let path = format!("/v1/webhooks/{other}");
        let (status, err) = t.call(&token, "GET", &path, None).await;
        assert_eq!((status, err["error"]["code"].clone()), (404, json!("not_found")), "{other}");
        let (status, _) = t.call(&token, "DELETE", &path, None).await;
        assert_eq!(status, 404, "{other}");
    }
    let (status, _) = t.call(&token, "PUT", "/v1/webhooks/b-1", Some(json!({"url": mine_rx.url}))).await;
    assert_eq!(status, 404);
    let (_, b1) = t.admin("GET", "/v1/webhooks/b-1", None).await;
    assert_eq!((b1["url"].clone(), b1["tenant"].clone()), (json!(theirs_rx.url), json!("venue-b")));
    let (_, shared) = t.admin("GET", "/v1/webhooks/shared", None).await;
    assert_eq!(shared["tenant"], Value::Null);

    // Publishing: for its own tenant only, reaching its webhooks and the untenanted one.
    let body = json!({"event": "order.created", "data": {"orderId": "o"}, "tenant": "venue-b"});
    let (status, err) = t.call(&token, "POST", "/v1/events", Some(body)).await;
    assert_eq!((status, err["error"]["code"].clone()), (403, json!("tenant_mismatch")));
    let body = json!({"event": "order.created", "data": {"orderId": "o", "venueId": "venue-b"}});
    let (status, receipt) = t.call(&token, "POST", "/v1/events", Some(body)).await;
    assert_eq!(status, 202, "{receipt}");
    assert_eq!(receipt["tenant"], "venue-a", "the token decides, not venueId");
    assert_eq!(targets(&receipt), set(&[mine_id.as_str(), "a-2", "shared"]));
    let (_, admins) =
        t.admin("POST", "/v1/events", Some(json!({"event": "order.created", "data": {}, "tenant": "venue-b"}))).await;
    assert_eq!(targets(&admins), set(&["b-1", "shared"]));
    mine_rx.wait_for(2, WAIT).await;
    shared_rx.wait_for(2, WAIT).await;
    theirs_rx.wait_for(1, WAIT).await;

    // Deliveries: its own webhooks' only; the untenanted webhook's copy of its own event is not its.
    let (_, page) = t.call(&token, "GET", "/v1/deliveries", None).await;
    let seen: BTreeSet<String> =
        page["data"].as_array().unwrap().iter().map(|d| d["webhookId"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, set(&[mine_id.as_str(), "a-2"]));
    let (_, page) = t.call(&token, "GET", "/v1/deliveries?webhookId=b-1", None).await;
    assert!(page["data"].as_array().unwrap().is_empty());
    for d in receipt["deliveries"].as_array().unwrap().iter().chain(admins["deliveries"].as_array().unwrap()) {
        let (id, webhook) = (d["id"].as_str().unwrap(), d["webhookId"].as_str().unwrap());
        let (status, got) = t.call(&token, "GET", &format!("/v1/deliveries/{id}"), None).await;
        let own = webhook == mine_id || webhook == "a-2";
        assert_eq!(status, if own { 200 } else { 404 }, "{webhook}: {got}");
        let (status, _) = t.admin("GET", &format!("/v1/deliveries/{id}"), None).await;
        assert_eq!(status, 200, "the admin sees every delivery");
    }
    let (_, all) = t.admin("GET", "/v1/deliveries", None).await;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);

    // Deleting its own webhook works.
    let (status, _) = t.call(&token, "DELETE", "/v1/webhooks/a-2", None).await;
    assert_eq!(status, 204);
    let (_, all) = t.admin("GET", "/v1/webhooks", None).await;
    assert_eq!(ids(&all), set(&[mine_id.as_str(), "b-1", "shared"]));
}

#[actix_web::test]
async fn bad_tenant_and_token_input_is_a_clear_4xx_changing_nothing() {
    let t = Tokens::start().await;
    let long = "x".repeat(129);
    for (body, code) in [
        (json!({"tenant": "has space"}), "invalid_tenant"),
        (json!({"tenant": ""}), "invalid_tenant"),
        (json!({"tenant": long}), "invalid_tenant"),
        (json!({"tenant": "venue-a", "scope": "all"}), "invalid_request"),
        (json!({}), "invalid_request"),
        (json!({"tenant": 7}), "invalid_request"),
        (json!({"tenant": "venue-a", "description": "nul\u{0}"}), "invalid_request"),
    ] {
        let (status, err) = t.admin("POST", "/v1/tokens", Some(body.clone())).await;
        assert_eq!((status, err["error"]["code"].clone()), (400, json!(code)), "{body}: {err}");
    }
    let (status, err) =
        t.app.request_with("POST", "/v1/tokens", Some("{"), &[("authorization", &format!("Bearer {ADMIN}"))]).await;
    assert_eq!((status, err["error"]["code"].clone()), (400, json!("invalid_json")));
    let (_, list) = t.admin("GET", "/v1/tokens", None).await;
    assert!(list["data"].as_array().unwrap().is_empty(), "nothing was created: {list}");
    let (status, _) = t.admin("GET", "/v1/tokens?limit=0", None).await;
    assert_eq!(status, 400);
    let (status, _) = t.admin("GET", "/v1/tokens?cursor=!", None).await;
    assert_eq!(status, 400);
    let (status, err) = t.admin("PATCH", "/v1/tokens", None).await;
    assert_eq!((status, err["error"]["code"].clone()), (405, json!("method_not_allowed")));

    let rx = TestReceiver::ok();
    for bad in [json!("a b"), json!(""), json!(long), json!(3)] {
        let (status, err) = t.admin("POST", "/v1/webhooks", Some(json!({"url": rx.url, "tenant": bad}))).await;
        assert_eq!(status, 400, "{bad}: {err}");
        let (status, err) =
            t.admin("POST", "/v1/events", Some(json!({"event": "order.created", "data": {}, "tenant": bad}))).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    let (status, err) = t.admin("POST", "/v1/webhooks", Some(json!({"url": rx.url, "tenant": "a/b"}))).await;
    assert_eq!((status, err["error"]["code"].clone()), (400, json!("invalid_tenant")));
    let (status, err) =
        t.admin("POST", "/v1/events", Some(json!({"event": "order.created", "data": {}, "tenant": "a/b"}))).await;
    assert_eq!((status, err["error"]["code"].clone()), (400, json!("invalid_tenant")));
    let (_, all) = t.admin("GET", "/v1/webhooks", None).await;
    assert!(all["data"].as_array().unwrap().is_empty());
}

/// Every node holds the registry with the tenant: a publish on a node that did not register the
/// webhooks routes by tenant as the registering node would.
#[actix_web::test]
async fn tenant_routing_holds_on_every_node() {
    let Some(db) = pg::schema().await else { return };
    let mut nodes = Vec::new();
    for name in ["tenant-node-a", "tenant-node-b"] {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut s = settings(&dir);
        s.database_url = db.url.clone();
        s.node_id = Some(name.into());
        s.cluster.heartbeat_interval = Duration::from_millis(250);
        s.cluster.lease_ttl = Duration::from_millis(2_000);
        s.cluster.poll_interval = Duration::from_millis(500);
        nodes.push(TestApp::start_with(dir, s).await);
    }
    let (a, b) = (TestReceiver::ok(), TestReceiver::ok());
    put_webhook(&nodes[0], "na", json!({"url": a.url, "tenant": "venue-a", "events": ["order.created"]})).await;
    put_webhook(&nodes[0], "nb", json!({"url": b.url, "tenant": "venue-b", "events": ["order.created"]})).await;
    // Node B learns of both from the registry; until then its receipts name fewer webhooks.
    let receipt = wait_until(WAIT, "node B routes venue A's events to venue A's webhook", || {
        let node = &nodes[1];
        async move {
            let r = node.publish("order.created", json!({"venueId": "venue-a"})).await;
            targets(&r).contains("na").then_some(r)
        }
    })
    .await;
    assert_eq!(targets(&receipt), set(&["na"]), "venue B's webhook is not venue A's: {receipt}");
    let receipt = nodes[1].publish("order.created", json!({"venueId": "venue-b"})).await;
    assert_eq!(targets(&receipt), set(&["nb"]));
    let receipt = nodes[1].publish("order.created", json!({})).await;
    assert!(targets(&receipt).is_empty(), "{receipt}");
    b.wait_for(1, WAIT).await;
    a.wait_for(1, WAIT).await;
    // A change of tenant reaches node B too.
    let (status, _) = nodes[0]
        .request(
            "PUT",
            "/v1/webhooks/nb",
            Some(&json!({"url": b.url, "tenant": "venue-a", "events": ["order.created"]}).to_string()),
        )
        .await;
    assert_eq!(status, 200);
    wait_until(WAIT, "node B sees nb moved to venue A", || {
        let node = &nodes[1];
        async move {
            let r = node.publish("order.created", json!({"venueId": "venue-a"})).await;
            (targets(&r) == set(&["na", "nb"])).then_some(())
        }
    })
    .await;
    for node in nodes {
        node.stop().await;
    }
}

/// The lifecycle and replay routes are the tenant's for its own webhooks and deliveries, and 404
/// (changing nothing) for another tenant's or an untenanted one; a patch cannot move a webhook to
/// another tenant.
#[actix_web::test]
async fn a_tenant_token_manages_the_lifecycle_and_replay_of_its_own_webhooks_only() {
    let t = Tokens::start().await;
    let (_, token) = t.token("venue-a").await;
    let rx = TestReceiver::ok();
    let (status, _) = t.call(&token, "PUT", "/v1/webhooks/a-1", Some(json!({"url": rx.url}))).await;
    assert_eq!(status, 201);
    let (status, _) = t.admin("PUT", "/v1/webhooks/b-1", Some(json!({"url": rx.url, "tenant": "venue-b"}))).await;
    assert_eq!(status, 201);
    let (status, _) = t.admin("PUT", "/v1/webhooks/shared", Some(json!({"url": rx.url}))).await;
    assert_eq!(status, 201);
    let (_, b_receipt) =
        t.admin("POST", "/v1/events", Some(json!({"event": "order.created", "data": {}, "tenant": "venue-b"}))).await;
    let b_delivery =
        b_receipt["deliveries"].as_array().unwrap().iter().find(|d| d["webhookId"] == "b-1").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let since = "2020-01-01T00:00:00Z";

    // Another tenant's, or an untenanted, webhook: 404 on every route, nothing changed.
    for other in ["b-1", "shared"] {
        let calls: [(&str, String, Option<Value>); 7] = [
            ("PATCH", format!("/v1/webhooks/{other}"), Some(json!({"description": "mine now"}))),
            ("POST", format!("/v1/webhooks/{other}/disable"), None),
            ("POST", format!("/v1/webhooks/{other}/enable"), None),
            ("GET", format!("/v1/webhooks/{other}/secret"), None),
            ("POST", format!("/v1/webhooks/{other}/rotate-secret"), None),
            ("POST", format!("/v1/webhooks/{other}/test"), None),
            ("POST", format!("/v1/webhooks/{other}/recover"), Some(json!({"since": since}))),
        ];
        for (method, path, body) in calls {
            let (status, err) = t.call(&token, method, &path, body).await;
            assert_eq!((status, err["error"]["code"].clone()), (404, json!("not_found")), "{method} {path}: {err}");
        }
        let (_, w) = t.admin("GET", &format!("/v1/webhooks/{other}"), None).await;
        assert_eq!((w["state"].as_str() != Some("disabled"), w["description"].clone()), (true, Value::Null), "{w}");
    }
    let (status, err) = t.call(&token, "POST", &format!("/v1/deliveries/{b_delivery}/retry"), None).await;
    assert_eq!((status, err["error"]["code"].clone()), (404, json!("not_found")), "{err}");

    // Its own: the same routes work.
    let (status, patched) = t.call(&token, "PATCH", "/v1/webhooks/a-1", Some(json!({"description": "POS"}))).await;
    assert_eq!(
        (status, patched["description"].clone(), patched["tenant"].clone()),
        (200, json!("POS"), json!("venue-a"))
    );
    let (status, err) = t.call(&token, "PATCH", "/v1/webhooks/a-1", Some(json!({"tenant": "venue-b"}))).await;
    assert_eq!((status, err["error"]["code"].clone()), (403, json!("tenant_mismatch")), "{err}");
    let (status, secret) = t.call(&token, "GET", "/v1/webhooks/a-1/secret", None).await;
    assert_eq!(status, 200);
    assert!(secret["secret"].as_str().unwrap().starts_with("whsec_"), "{secret}");
    let (status, rotated) = t.call(&token, "POST", "/v1/webhooks/a-1/rotate-secret", None).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], secret["secret"]);
    let (status, ping) = t.call(&token, "POST", "/v1/webhooks/a-1/test", None).await;
    assert!(status == 200 || status == 202, "{status} {ping}");
    let (status, recovered) = t.call(&token, "POST", "/v1/webhooks/a-1/recover", Some(json!({"since": since}))).await;
    assert_eq!((status, recovered["queued"].clone()), (202, json!(0)), "{recovered}");
    let (status, w) = t.call(&token, "POST", "/v1/webhooks/a-1/disable", None).await;
    assert_eq!((status, w["state"].clone()), (200, json!("disabled")), "{w}");
    let (status, w) = t.call(&token, "POST", "/v1/webhooks/a-1/enable", None).await;
    assert_eq!(status, 200, "{w}");
    assert_ne!(w["state"], "disabled");
}
