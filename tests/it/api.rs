//! The REST contract: status codes, field names, pagination, and that bad input is refused with a
//! clear 4xx JSON error and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

#[actix_web::test]
async fn webhook_lifecycle() {
    let app = TestApp::start().await;
    let created = app
        .register(json!({
            "url": "https://example.com/hooks",
            "events": ["order.created", "table.updated"],
            "headers": {"X-Tenant": "servio-1"},
            "retryConfig": {"maxRetries": 3, "jitter": "full"},
            "description": "kitchen display"
        }))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wh_"));
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"), "secret generated: {created}");
    assert_eq!(created["events"], json!(["order.created", "table.updated"]));
    assert_eq!(
        created["retryConfig"],
        json!({"maxRetries": 3, "initialDelay": 1000, "maxDelay": 60000, "backoffMultiplier": 2.0, "jitter": "full"})
    );
    assert_eq!(created["headers"]["X-Tenant"], "servio-1");
    assert_eq!(created["state"], "healthy");
    assert_eq!(created["consecutiveFailures"], 0);

    let (status, got) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["secret"], created["secret"]);
    assert_eq!(got["description"], "kitchen display");

    // PUT with a caller-chosen id: 201 the first time, 200 when replacing; the secret is kept.
    let (status, put) = app
        .request("PUT", "/v1/webhooks/pos-1", Some(r#"{"url":"https://example.com/a","secret":"plain-old-secret"}"#))
        .await;
    assert_eq!(status, 201, "{put}");
    assert_eq!(put["id"], "pos-1");
    assert_eq!(put["secret"], "plain-old-secret");
    assert_eq!(put["events"], Value::Null, "no events = all");
    let (status, put2) = app.request("PUT", "/v1/webhooks/pos-1", Some(r#"{"url":"https://example.com/b"}"#)).await;
    assert_eq!(status, 200);
    assert_eq!(put2["url"], "https://example.com/b");
    assert_eq!(put2["secret"], "plain-old-secret");
    assert_eq!(put2["createdAt"], put["createdAt"]);

    let (status, list) = app.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["nextCursor"], Value::Null);

    let (status, _) = app.request("DELETE", &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, err) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(err["error"]["code"], "not_found");
    let (status, _) = app.request("DELETE", &format!("/v1/webhooks/{id}"), None).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[actix_web::test]
async fn webhook_list_paginates_with_opaque_cursors() {
    let app = TestApp::start().await;
    for i in 0..5 {
        let (s, _) = app.request("PUT", &format!("/v1/webhooks/w{i}"), Some(r#"{"url":"https://example.com"}"#)).await;
        assert_eq!(s, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/webhooks?limit=2&cursor={c}"),
            None => "/v1/webhooks?limit=2".to_string(),
        };
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for w in page["data"].as_array().unwrap() {
            seen.push(w["id"].as_str().unwrap().to_string());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["w0", "w1", "w2", "w3", "w4"]);
    app.stop().await;
}

async fn expect_error(app: &TestApp, method: &str, path: &str, body: &str, status: u16, code: &str) {
    let (s, json) = app.request(method, path, Some(body)).await;
    assert_eq!(s, status, "{method} {path} {body} -> {json}");
    assert_eq!(json["error"]["code"], code, "{method} {path} {body} -> {json}");
    assert!(json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[actix_web::test]
async fn bad_webhook_registrations_are_refused_and_store_nothing() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.allow_private_targets = false;
    let app = TestApp::start_with(dir, s).await;
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"url":"not a url"}"#, 400, "invalid_url"),
        (r#"{"url":"ftp://example.com"}"#, 400, "invalid_url"),
        (r#"{"url":"http://127.0.0.1:9/x"}"#, 400, "private_target_not_allowed"),
        (r#"{"url":"http://localhost/x"}"#, 400, "private_target_not_allowed"),
        (r#"{"url":"http://10.0.0.8/x"}"#, 400, "private_target_not_allowed"),
        (r#"{"url":"https://example.com","events":["order.shipped"]}"#, 400, "unknown_event_type"),
        (r#"{"url":"https://example.com","events":"order.created"}"#, 400, "invalid_request"),
        (r#"{"url":"https://example.com","retryConfig":{"maxRetries":-1}}"#, 400, "invalid_retry_config"),
        (r#"{"url":"https://example.com","retryConfig":{"maxRetries":"3"}}"#, 400, "invalid_retry_config"),
        (r#"{"url":"https://example.com","retryConfig":{"backoffMultiplier":0.5}}"#, 400, "invalid_retry_config"),
        (
            r#"{"url":"https://example.com","retryConfig":{"initialDelay":5000,"maxDelay":10}}"#,
            400,
            "invalid_retry_config",
        ),
        (r#"{"url":"https://example.com","retryConfig":{"jitter":"sometimes"}}"#, 400, "invalid_retry_config"),
        (r#"{"url":"https://example.com","retryConfig":{"retries":3}}"#, 400, "invalid_retry_config"),
        (r#"{"url":"https://example.com","retryConfig":[]}"#, 400, "invalid_retry_config"),
        (r#"{"url":"https://example.com","headers":{"webhook-signature":"x"}}"#, 400, "invalid_header"),
        (r#"{"url":"https://example.com","headers":{"bad header":"x"}}"#, 400, "invalid_header"),
        (r#"{"url":"https://example.com","secret":"whsec_"}"#, 400, "invalid_secret"),
        (r#"{"url":"https://example.com","maxInFlight":0}"#, 400, "invalid_request"),
        (r#"{"url":"https://example.com""#, 400, "invalid_json"),
        (r#"{"secret":"x"}"#, 400, "invalid_request"),
        (r#"[1,2]"#, 400, "invalid_request"),
        (r#"{"url":42}"#, 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        expect_error(&app, "POST", "/v1/webhooks", body, *status, code).await;
    }
    expect_error(&app, "PUT", "/v1/webhooks/has%20space", r#"{"url":"https://example.com"}"#, 400, "invalid_request")
        .await;
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
    app.stop().await;
}

#[actix_web::test]
async fn bad_publishes_are_refused_and_create_no_deliveries() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.max_payload_bytes = 1024;
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url})).await;
    let big = format!(r#"{{"event":"order.created","data":{{"blob":"{}"}}}}"#, "x".repeat(10_000));
    let cases: Vec<(String, u16, &str)> = vec![
        (r#"{"event":"order.shipped","data":{}}"#.into(), 400, "unknown_event_type"),
        (r#"{"event":"Order Created","data":{}}"#.into(), 400, "invalid_event_type"),
        (r#"{"event":"order.created"}"#.into(), 400, "invalid_data"),
        (r#"{"event":"order.created","data":null}"#.into(), 400, "invalid_data"),
        (r#"{"event":"order.created","data":"text"}"#.into(), 400, "invalid_data"),
        (r#"{"event":"order.created","data":[1]}"#.into(), 400, "invalid_data"),
        (r#"{"event":7,"data":{}}"#.into(), 400, "invalid_request"),
        (r#"{"data":{}}"#.into(), 400, "invalid_request"),
        (r#"{"event":"order.created","data":{}"#.into(), 400, "invalid_json"),
        ("".into(), 400, "invalid_json"),
        (r#"{"event":"order.created","data":{},"idempotencyKey":""}"#.into(), 400, "invalid_idempotency_key"),
        (big, 413, "payload_too_large"),
    ];
    for (body, status, code) in &cases {
        expect_error(&app, "POST", "/v1/events", body, *status, code).await;
    }
    let (_, deliveries) = app.get("/v1/deliveries").await;
    assert_eq!(deliveries["data"], json!([]), "nothing was stored");
    assert_eq!(receiver.count(), 0);
    app.stop().await;
}

#[actix_web::test]
async fn bad_queries_and_unknown_routes_get_json_errors() {
    let app = TestApp::start().await;
    for (path, status, code) in [
        ("/v1/deliveries?status=done", 400, "invalid_query"),
        ("/v1/deliveries?limit=0", 400, "invalid_query"),
        ("/v1/deliveries?limit=abc", 400, "invalid_query"),
        ("/v1/webhooks?limit=100000", 400, "invalid_query"),
        ("/v1/webhooks?cursor=%%%", 400, "invalid_cursor"),
        ("/v1/webhooks?cursor=not*base64", 400, "invalid_cursor"),
        ("/v1/deliveries/dlv_nope", 404, "not_found"),
        ("/v1/nothing-here", 404, "not_found"),
    ] {
        let (s, json) = app.get(path).await;
        assert_eq!(s, status, "{path}: {json}");
        assert_eq!(json["error"]["code"], code, "{path}: {json}");
    }
    let (s, json) = app.request("PATCH", "/v1/webhooks", None).await;
    assert_eq!((s, json["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    app.stop().await;
}

#[actix_web::test]
async fn admin_token_guards_v1_only() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.admin_token = Some("s3cret-token".into());
    let app = TestApp::start_with(dir, s).await;
    let (status, json) = app.get("/v1/webhooks").await;
    assert_eq!(status, 401);
    assert_eq!(json["error"]["code"], "unauthorized");
    let (status, _) = app.request_with("GET", "/v1/webhooks", None, &[("authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
    let (status, _) = app.request_with("GET", "/v1/webhooks", None, &[("authorization", "Bearer s3cret-token")]).await;
    assert_eq!(status, 200);
    let (status, json) = app.get("/healthz").await;
    assert_eq!((status, json["status"].as_str()), (200, Some("ok")));
    let resp = app.http.get(format!("{}/metrics", app.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    app.stop().await;
}

#[actix_web::test]
async fn event_types_include_configured_extras() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.event_types = vec!["reservation.created:A table was booked".into()];
    let app = TestApp::start_with(dir, s).await;
    let (status, json) = app.get("/v1/event-types").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = json["data"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["order.created", "order.updated", "order.deleted", "table.updated", "inventory.low", "reservation.created"]
    );
    assert_eq!(json["data"][5]["description"], "A table was booked");
    // The extra type can be subscribed to and published.
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url, "events": ["reservation.created"]})).await;
    app.publish("reservation.created", json!({"tableId": "t-4"})).await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json()["event"], "reservation.created");
    app.stop().await;
}

#[actix_web::test]
async fn idempotency_key_returns_the_first_publish() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    app.register(json!({"url": receiver.url})).await;
    let body = json!({"event": "order.created", "data": {"orderId": "o-9"}, "idempotencyKey": "order-o-9-created"});
    let (s1, first) = app.post("/v1/events", body.clone()).await;
    let (s2, second) = app.post("/v1/events", body).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["deliveries"], second["deliveries"]);
    assert_eq!(second["duplicate"], true);
    assert_eq!(first.get("duplicate"), None);
    // The header form is honoured too.
    let (_, third) = app
        .request_with(
            "POST",
            "/v1/events",
            Some(r#"{"event":"order.created","data":{"orderId":"o-9"}}"#),
            &[("idempotency-key", "order-o-9-created")],
        )
        .await;
    assert_eq!(third["id"], first["id"]);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let (_, list) = app.get("/v1/deliveries").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one event, one delivery");
    app.stop().await;
}

/// Every route the router serves, with its methods: what `/openapi.json` must describe.
const ROUTES: &[(&str, &[&str])] = &[
    ("/v1/webhooks", &["get", "post"]),
    ("/v1/webhooks/{id}", &["get", "put", "delete"]),
    ("/v1/events", &["post"]),
    ("/v1/deliveries", &["get"]),
    ("/v1/deliveries/{id}", &["get"]),
    ("/v1/event-types", &["get"]),
    ("/v1/nodes", &["get"]),
    ("/metrics", &["get"]),
    ("/healthz", &["get"]),
    ("/openapi.json", &["get"]),
];

const METHODS: &[&str] = &["get", "post", "put", "delete", "patch"];

#[actix_web::test]
async fn openapi_document_describes_every_route() {
    let app = TestApp::start().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, 200, "{doc}");
    assert!(doc.is_object(), "/openapi.json is not a JSON object: {doc}");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "openapi version: {}", doc["openapi"]);
    assert_eq!(doc["info"]["title"], "servio-webhooks");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    let paths = doc["paths"].as_object().expect("paths");
    for (path, methods) in ROUTES {
        let item = paths.get(*path).unwrap_or_else(|| panic!("{path} is missing from /openapi.json"));
        let documented: Vec<&str> = METHODS.iter().copied().filter(|m| item.get(*m).is_some()).collect();
        assert_eq!(&documented, methods, "methods of {path}");
        for m in *methods {
            let op = &item[*m];
            let secured = op["security"].as_array().is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            assert_eq!(secured, path.starts_with("/v1/"), "bearer security of {m} {path}");
        }
    }
    let extra: Vec<&String> = paths.keys().filter(|p| !ROUTES.iter().any(|(r, _)| r == p)).collect();
    assert!(extra.is_empty(), "documented but not in ROUTES: {extra:?}");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");

    let webhook = &doc["components"]["schemas"]["WebhookOut"]["properties"];
    for field in
        ["id", "url", "secret", "events", "headers", "retryConfig", "state", "consecutiveFailures", "lastSuccessAt"]
    {
        assert!(webhook.get(field).is_some(), "WebhookOut.{field} is missing: {webhook}");
    }
    for (page, item) in [("Page_WebhookOut", "WebhookOut"), ("Page_DeliveryOut", "DeliveryOut")] {
        let items = &doc["components"]["schemas"][page]["properties"]["data"]["items"];
        assert_eq!(items["$ref"], format!("#/components/schemas/{item}"), "{page}.data.items");
    }
    let error = &doc["components"]["schemas"]["ErrorDetail"]["properties"];
    assert!(error.get("code").is_some() && error.get("message").is_some(), "{error}");

    // The other way round: each documented operation is served and answers with a documented
    // status (probed with an unknown id and an empty body, which change nothing), and each
    // undocumented method on a documented path is refused.
    for (path, item) in paths {
        let url = path.replace("{id}", "openapi-probe");
        for m in METHODS {
            let body = matches!(*m, "post" | "put").then_some("{}");
            let (status, json) = app.request(&m.to_uppercase(), &url, body).await;
            match item.get(*m) {
                Some(op) => assert!(
                    op["responses"].get(status.to_string()).is_some(),
                    "{m} {url} answered {status}, which /openapi.json does not document: {json}"
                ),
                None => assert!(
                    status == 404 || status == 405,
                    "{m} {url} answered {status}, but /openapi.json does not document it"
                ),
            }
        }
    }
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "the probes stored nothing");
    app.stop().await;
}

/// `docs/openapi.json` is the served document, pretty-printed; `UPDATE_OPENAPI=1` rewrites it.
#[actix_web::test]
async fn openapi_doc_file_is_up_to_date() {
    let app = TestApp::start().await;
    let (status, served) = app.get("/openapi.json").await;
    assert_eq!(status, 200, "{served}");
    app.stop().await;
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some_and(|v| v == "1") {
        std::fs::write(&file, serde_json::to_string_pretty(&served).unwrap() + "\n").unwrap();
        return;
    }
    let stored: Value =
        std::fs::read_to_string(&file).ok().and_then(|text| serde_json::from_str(&text).ok()).unwrap_or(Value::Null);
    assert!(
        stored == served,
        "{} is missing or differs from what GET /openapi.json serves; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test --test it openapi_doc_file_is_up_to_date` and commit it",
        file.display()
    );
}

#[actix_web::test]
async fn unusable_idempotency_keys_in_the_body_are_refused() {
    let app = TestApp::start().await;
    for key in ["", "é-non-ascii", " padded ", &"k".repeat(256)] {
        let (status, body) = app
            .post("/v1/events", serde_json::json!({"event": "order.created", "data": {}, "idempotencyKey": key}))
            .await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")), "{key:?}: {body}");
    }
    let (status, _) = app
        .post(
            "/v1/events",
            serde_json::json!({"event": "order.created", "data": {}, "idempotencyKey": "order 42 / v1"}),
        )
        .await;
    assert_eq!(status, 202, "visible ASCII with inner spaces is fine");
    app.stop().await;
}

#[actix_web::test]
async fn delivery_lists_leave_payloads_out_so_parallel_pages_stay_small() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    app.register(serde_json::json!({"url": receiver.url})).await;
    let big = "x".repeat(250 * 1024);
    for i in 0..60 {
        app.publish("order.created", serde_json::json!({"n": i, "blob": big})).await;
    }
    receiver.wait_for(60, std::time::Duration::from_secs(30)).await;
    let (_, page) = app.get("/v1/deliveries?limit=250").await;
    let rows = page["data"].as_array().unwrap();
    assert_eq!(rows.len(), 60);
    assert!(rows.iter().all(|d| d.get("payload").is_none()), "lists carry no payload");
    let one = app.delivery(rows[0]["id"].as_str().unwrap()).await;
    assert_eq!(one["payload"]["data"]["blob"].as_str().map(str::len), Some(big.len()), "the single route has it");
    // 20 pages at once: about 15 MB of payloads each if they were included.
    let before = rss_bytes();
    let pages = futures_util::future::join_all((0..20).map(|_| app.get("/v1/deliveries?limit=250"))).await;
    assert!(pages.iter().all(|(s, p)| *s == 200 && p["data"].as_array().map(Vec::len) == Some(60)));
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < 64 * 1024 * 1024, "20 parallel pages grew the process by {} MiB", grown / (1024 * 1024));
    app.stop().await;
}
