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
    assert!(got.get("secret").is_none(), "reads carry no secret: {got}");
    let (status, secret) = app.get(&format!("/v1/webhooks/{id}/secret")).await;
    assert_eq!(status, 200);
    assert_eq!(secret, json!({"secret": created["secret"]}));
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
    assert!(put2.get("secret").is_none(), "a replace does not show the secret: {put2}");
    assert_eq!(app.get("/v1/webhooks/pos-1/secret").await.1["secret"], "plain-old-secret");
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
    // A method the path does not take is 405 (with `Allow`) before any content-type question.
    for (method, path, allow) in [("PUT", "/v1/nodes", "GET"), ("POST", "/v1/webhooks/x", "GET, PUT, DELETE, PATCH")] {
        let resp = app
            .http
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
    }
    let (s, json) = app.request_with("POST", "/v1/webhooks", None, &[("content-type", "text/plain")]).await;
    assert_eq!((s, json["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    let (s, json) = app.request("POST", "/v1/webhooks", None).await;
    assert_eq!((s, json["error"]["code"].as_str()), (415, Some("unsupported_media_type")), "no content type");
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
    ("/v1/webhooks/{id}", &["get", "put", "delete", "patch"]),
    ("/v1/webhooks/{id}/secret", &["get"]),
    ("/v1/webhooks/{id}/disable", &["post"]),
    ("/v1/webhooks/{id}/enable", &["post"]),
    ("/v1/webhooks/{id}/rotate-secret", &["post"]),
    ("/v1/webhooks/{id}/test", &["post"]),
    ("/v1/webhooks/{id}/recover", &["post"]),
    ("/v1/events", &["post"]),
    ("/v1/deliveries", &["get"]),
    ("/v1/deliveries/{id}", &["get"]),
    ("/v1/deliveries/{id}/retry", &["post"]),
    ("/v1/event-types", &["get"]),
    ("/v1/nodes", &["get"]),
    ("/v1/tokens", &["get", "post"]),
    ("/v1/tokens/{id}", &["delete"]),
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
            // The test server has no token and opens its admin API explicitly: the document asks
            // for no credentials (see `openapi_document_follows_the_configuration`).
            assert!(item[*m].get("security").is_none(), "security of {m} {path}: {}", item[*m]);
            assert!(item[*m]["responses"].get("401").is_none(), "401 of {m} {path}");
        }
    }
    let extra: Vec<&String> = paths.keys().filter(|p| !ROUTES.iter().any(|(r, _)| r == p)).collect();
    assert!(extra.is_empty(), "documented but not in ROUTES: {extra:?}");
    assert!(doc["components"].get("securitySchemes").is_none(), "{}", doc["components"]["securitySchemes"]);

    let webhook = &doc["components"]["schemas"]["WebhookOut"]["properties"];
    for field in ["id", "url", "events", "headers", "retryConfig", "state", "consecutiveFailures", "lastSuccessAt"] {
        assert!(webhook.get(field).is_some(), "WebhookOut.{field} is missing: {webhook}");
    }
    assert!(webhook.get("secret").is_none(), "reads carry no secret");
    assert!(doc["components"]["schemas"]["WebhookCreated"].to_string().contains("secret"));
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
                None => {
                    assert_eq!(status, 405, "{m} {url} answered {status}, but /openapi.json does not document it");
                    let documented: Vec<String> =
                        METHODS.iter().filter(|d| item.get(**d).is_some()).map(|d| d.to_uppercase()).collect();
                    let mut req = app.http.request(
                        reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap(),
                        format!("{}{url}", app.base),
                    );
                    if let Some(b) = body {
                        req = req.header("content-type", "application/json").body(b);
                    }
                    let resp = req.send().await.unwrap();
                    let allow = resp.headers().get("allow").map(|v| v.to_str().unwrap().to_string());
                    assert_eq!(allow, Some(documented.join(", ")), "Allow of {m} {url}");
                }
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

/// The document describes the server as configured: the bearer scheme with a token, none when the
/// API is open without one, a scheme nobody can satisfy when it is closed; the paths where the host
/// mounted the routes; the configured event types.
#[actix_web::test]
async fn openapi_document_follows_the_configuration() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.admin_token = Some("tok".into());
    s.event_types = vec!["reservation.created".into()];
    let app = TestApp::start_with(dir, s).await;
    let doc: Value = serde_json::from_str(&app.webhooks.routes().openapi_document()).unwrap();
    let op = &doc["paths"]["/v1/webhooks"]["post"];
    assert_eq!(op["security"], json!([{"bearer": []}]));
    assert!(op["responses"].get("401").is_some());
    assert!(doc["paths"]["/healthz"]["get"].get("security").is_none());
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let subscribable = &doc["components"]["schemas"]["WebhookIn"]["properties"]["events"]["items"]["enum"];
    assert!(subscribable.as_array().unwrap().contains(&json!("reservation.created")), "{subscribable}");
    assert!(subscribable.as_array().unwrap().contains(&json!("*")), "{subscribable}");
    // What /openapi.json serves is the same document.
    let served: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert_eq!(served, doc);

    let mounted: Value = serde_json::from_str(
        &app.webhooks
            .routes()
            .prefix("/hooks-admin/")
            .metrics(Some("/internal/metrics"))
            .healthz(None)
            .openapi(Some("/hooks-admin/openapi.json"))
            .openapi_document(),
    )
    .unwrap();
    let paths: Vec<&String> = mounted["paths"].as_object().unwrap().keys().collect();
    for p in ["/hooks-admin/webhooks", "/hooks-admin/webhooks/{id}", "/hooks-admin/events", "/internal/metrics"] {
        assert!(paths.contains(&&p.to_string()), "{p} missing from {paths:?}");
    }
    for p in ["/v1/webhooks", "/metrics", "/healthz", "/openapi.json"] {
        assert!(!paths.contains(&&p.to_string()), "{p} still in {paths:?}");
    }
    app.stop().await;

    // Closed: no token, not opened.
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.open_admin_api = false;
    let app = TestApp::start_with(dir, s).await;
    let doc: Value = serde_json::from_str(&app.webhooks.routes().openapi_document()).unwrap();
    assert_eq!(doc["paths"]["/v1/webhooks"]["get"]["security"], json!([{"bearer": []}]));
    let scheme = doc["components"]["securitySchemes"]["bearer"]["description"].as_str().unwrap();
    assert!(scheme.contains("refused"), "{scheme}");
    app.stop().await;
}

/// `Settings::open_admin_api` holds wherever the routes are mounted: without a token and without
/// opening the API, every admin request is refused with a 401 that says what to do; the open routes
/// stay open.
#[actix_web::test]
async fn admin_api_without_token_is_closed_unless_opened() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.open_admin_api = false;
    let app = TestApp::start_with(dir, s).await;
    for (method, path, body) in [
        ("GET", "/v1/webhooks", None),
        ("POST", "/v1/webhooks", Some(r#"{"url":"https://example.com"}"#)),
        ("POST", "/v1/events", Some(r#"{"event":"order.created","data":{}}"#)),
        ("GET", "/v1/deliveries", None),
        ("DELETE", "/v1/webhooks/x", None),
        ("GET", "/v1/nothing-here", None),
    ] {
        let mut req =
            app.http.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}{path}", app.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path}");
        assert_eq!(
            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer realm=\"servio-webhooks\""),
            "{method} {path}"
        );
        let json: Value = resp.text().await.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap();
        assert_eq!(json["error"]["code"], "unauthorized", "{method} {path}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("admin token") && message.contains("open_admin_api"), "{message}");
    }
    // A bearer token does not open it either: there is none to compare with.
    let (status, _) = app.request_with("GET", "/v1/webhooks", None, &[("authorization", "Bearer x")]).await;
    assert_eq!(status, 401);
    for path in ["/healthz", "/metrics", "/openapi.json"] {
        let resp = app.http.get(format!("{}{path}", app.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    assert!(app.webhooks.webhooks(None, 10).await.unwrap().is_empty(), "nothing was registered");
    app.stop().await;

    // Opened explicitly (what `settings()` does): loopback callers are answered, other Host names
    // are not.
    let app = TestApp::start().await;
    let (status, _) = app.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    let (status, json) = app.request_with("GET", "/v1/webhooks", None, &[("host", "attacker.example")]).await;
    assert_eq!((status, json["error"]["code"].as_str()), (403, Some("host_not_allowed")));
    app.stop().await;
}

#[actix_web::test]
async fn unknown_fields_are_refused_naming_the_field() {
    let app = TestApp::start().await;
    for (method, path, body, field) in [
        ("POST", "/v1/webhooks", r#"{"url":"https://example.com","evnts":["order.created"]}"#, "evnts"),
        ("PUT", "/v1/webhooks/pos-1", r#"{"url":"https://example.com","secrets":"x"}"#, "secrets"),
        ("POST", "/v1/events", r#"{"event":"order.created","data":{},"idempotency_key":"k-1"}"#, "idempotency_key"),
    ] {
        let (status, json) = app.request(method, path, Some(body)).await;
        assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_request")), "{path}: {json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("unknown field `{field}`")), "{message}");
    }
    // Inside retryConfig, as before, with its own code.
    let (status, json) =
        app.post("/v1/webhooks", json!({"url": "https://example.com", "retryConfig": {"retries": 3}})).await;
    assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_retry_config")), "{json}");
    assert!(json["error"]["message"].as_str().unwrap().contains("unknown field `retries`"), "{json}");
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
    let (_, deliveries) = app.get("/v1/deliveries").await;
    assert_eq!(deliveries["data"], json!([]));
    app.stop().await;
}

/// `events: []` used to subscribe to everything; it is refused now, with what to send instead.
#[actix_web::test]
async fn an_empty_event_list_is_refused() {
    let app = TestApp::start().await;
    for (method, path) in [("POST", "/v1/webhooks"), ("PUT", "/v1/webhooks/pos-1")] {
        let (status, json) = app.request(method, path, Some(r#"{"url":"https://example.com","events":[]}"#)).await;
        assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_request")), "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("omit") && message.contains(r#"["*"]"#), "{message}");
    }
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
    let all = app.register(json!({"url": "https://example.com", "events": ["*"]})).await;
    assert_eq!(all["events"], Value::Null, "[\"*\"] = every event type");
    let all = app.register(json!({"url": "https://example.com", "events": null})).await;
    assert_eq!(all["events"], Value::Null);
    app.stop().await;
}

/// Values outside what the document describes are refused even where the lower layers would have
/// taken them; values inside it are taken.
#[actix_web::test]
async fn registrations_are_held_to_the_documented_shapes() {
    let app = TestApp::start().await;
    for (body, code) in [
        (json!({"url": "https://exa mple.com/"}), "invalid_url"),
        (json!({"url": "https://example.com/a b"}), "invalid_url"),
        (json!({"url": "https://user:pw@example.com/"}), "invalid_url"),
        (json!({"url": "https://example.com:0/"}), "invalid_url"),
        (json!({"url": "HTTP:example.com"}), "invalid_url"),
        (json!({"url": "https://example.com", "secret": "a\u{0}b"}), "invalid_secret"),
        (json!({"url": "https://example.com", "description": "a\u{0}b"}), "invalid_request"),
        (json!({"url": "https://example.com", "headers": {"X-Long": "v".repeat(4097)}}), "invalid_header"),
        (json!({"url": "https://example.com", "headers": {"x".repeat(257): "v"}}), "invalid_header"),
        (json!({"url": "https://example.com", "headers": {"X-Ctl": "a\u{1}"}}), "invalid_header"),
        (json!({"url": "https://example.com", "retryConfig": {"jitter": "FULL"}}), "invalid_retry_config"),
        (json!({"url": "https://example.com", "retryConfig": {"jitter": "true"}}), "invalid_retry_config"),
    ] {
        let (status, json) = app.post("/v1/webhooks", body.clone()).await;
        assert_eq!((status, json["error"]["code"].as_str()), (400, Some(code)), "{body}: {json}");
    }
    // HTTP clients turn `.` and `..` into other paths, so send them as they are.
    for id in [".", ".."] {
        let body = r#"{"url":"https://example.com"}"#;
        let request = format!(
            "PUT /v1/webhooks/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = raw_exchange(&app.base, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{id}: {response}");
        assert!(response.contains("invalid_request"), "{id}: {response}");
    }
    let (status, json) = app.get("/v1/deliveries?status=").await;
    assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_query")), "{json}");
    // Any canonical unpadded base64url is a cursor, UTF-8 or not.
    let (status, json) = app.get("/v1/webhooks?cursor=__8").await;
    assert_eq!(status, 200, "{json}");
    let (status, json) = app.get(&format!("/v1/webhooks?cursor={}", "A".repeat(516))).await;
    assert_eq!((status, json["error"]["code"].as_str()), (400, Some("invalid_cursor")), "{json}");
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["data"], json!([]), "nothing was stored");
    let ok = app
        .register(json!({
            "url": "HTTPS://Example.COM.:8443/hook?x=1#f",
            "secret": "whsec_AAAA==",
            "headers": {"X-Tenant": "servio-1 \t é"},
            "retryConfig": {"jitter": "none"},
            "description": "",
        }))
        .await;
    assert_eq!(ok["retryConfig"]["jitter"], false);
    app.stop().await;
}

/// Sends `request` as is to `base` (`http://127.0.0.1:port`) and returns the whole response.
async fn raw_exchange(base: &str, request: String) -> String {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    })
    .await
    .unwrap()
}

/// A host app's own route: a JSON body and a query, with actix's extractor defaults.
async fn host_orders(body: actix_web::web::Json<Value>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Created().json(json!({"bytes": body.to_string().len()}))
}

/// Serves `configure` next to the host's own `POST /orders`, as a host app would.
fn host_app(
    configure: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
) -> (String, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpServer, web};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(move || {
        // The host's own JSON error format, App-wide; its limit stays actix's default.
        let json = web::JsonConfig::default().error_handler(|err, _| {
            let body = json!({"hostError": err.to_string()});
            actix_web::error::InternalError::from_response(
                err,
                actix_web::HttpResponse::UnprocessableEntity().json(body),
            )
            .into()
        });
        App::new().app_data(json).route("/orders", web::post().to(host_orders)).configure(configure.clone())
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (base, handle)
}

/// Mounting the subsystem changes none of the host's own routes: they keep actix's extractor
/// defaults (a 2 MiB JSON limit in actix-web 4.18) and its error format, while the subsystem's
/// routes, under the prefix the host chose, keep their limit and JSON errors; `/metrics`,
/// `/healthz` and `/openapi.json` are where the host put them, or nowhere.
#[actix_web::test]
async fn mounting_leaves_the_hosts_routes_alone() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let webhooks = servio_webhooks::Webhooks::start(settings(&dir)).await.unwrap();
    let http = http_client();
    let routes = webhooks
        .routes()
        .prefix("/hooks-admin")
        .metrics(Some("/internal/metrics"))
        .healthz(None)
        .openapi(Some("/hooks-admin/openapi.json"))
        .into_configure();
    let (base, server) = host_app(routes);
    let post = |path: &str, body: String| {
        http.post(format!("{base}{path}")).header("content-type", "application/json").body(body).send()
    };

    // 300 KB to the host's route: above the subsystem's limit (max_payload_bytes + 4 KiB), below
    // actix's default.
    let big = json!({"blob": "x".repeat(300 * 1024)}).to_string();
    let resp = post("/orders", big.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201, "{}", resp.text().await.unwrap());
    // The host's errors are its own, not the subsystem's.
    let resp = post("/orders", "{not json".into()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let text = resp.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body.get("hostError").is_some() && body.get("error").is_none(), "{text}");
    let resp = http.get(format!("{base}/no-such-host-route")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(resp.text().await.unwrap(), "", "actix's own 404");

    // The subsystem's routes under its prefix keep theirs.
    let publish = json!({"event": "order.created", "data": {"blob": "x".repeat(300 * 1024)}}).to_string();
    let resp = post("/hooks-admin/events", publish).await.unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let json: Value = resp.text().await.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap();
    assert_eq!(json["error"]["code"], "payload_too_large", "{json}");
    let resp = post("/hooks-admin/webhooks", "{not json".into()).await.unwrap();
    let json: Value = resp.text().await.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap();
    assert_eq!(json["error"]["code"], "invalid_json", "{json}");
    let resp = http.get(format!("{base}/hooks-admin/deliveries?limit=x")).send().await.unwrap();
    let json: Value = resp.text().await.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap();
    assert_eq!(json["error"]["code"], "invalid_query", "{json}");
    let resp = post("/hooks-admin/webhooks", json!({"url": "https://example.com"}).to_string()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let resp = http.get(format!("{base}/hooks-admin/webhooks")).send().await.unwrap();
    let list: Value = resp.text().await.map(|t| serde_json::from_str::<Value>(&t).unwrap()).unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");

    // The single routes are where the host put them, and only there.
    let resp = http.get(format!("{base}/internal/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let resp = http.post(format!("{base}/internal/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET");
    for path in ["/metrics", "/healthz", "/openapi.json", "/v1/webhooks"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
        assert_eq!(resp.text().await.unwrap(), "", "{path} is the host's 404");
    }
    let doc: Value = http
        .get(format!("{base}/hooks-admin/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str::<Value>(&t).unwrap())
        .unwrap();
    assert!(doc["paths"].get("/hooks-admin/events").is_some() && doc["paths"].get("/internal/metrics").is_some());
    assert!(doc["paths"].get("/healthz").is_none());
    server.stop(false).await;

    // The default mounting, next to the same host route: unchanged for the host too.
    let (base, server) = host_app(webhooks.configure());
    let resp =
        http.post(format!("{base}/orders")).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    for path in ["/metrics", "/healthz", "/openapi.json", "/v1/webhooks"] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
    server.stop(false).await;

    // No metrics and no document at all, the health check elsewhere.
    let routes = webhooks.routes().metrics(None).openapi(None).healthz(Some("/ops/webhooks-health"));
    let (base, server) = host_app(routes.into_configure());
    for (path, status) in [
        ("/metrics", 404),
        ("/openapi.json", 404),
        ("/healthz", 404),
        ("/ops/webhooks-health", 200),
        ("/v1/webhooks", 200),
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
    }
    server.stop(false).await;
    webhooks.shutdown().await;
}

/// `/docs` is a browsable reference served entirely from the binary: the page, its script and
/// styles, and the document it renders, with a policy that lets the browser load nothing else.
#[actix_web::test]
async fn docs_are_served_from_the_binary_alone() {
    let app = TestApp::start().await;
    let get = |path: &str| app.http.get(format!("{}{path}", app.base)).send();
    let page = get("/docs").await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("http"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains("http:") && !html.contains("https:"), "nothing from another origin: {html}");
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/init.js", "text/javascript"),
    ] {
        assert!(html.contains(asset), "{asset} is loaded by the page");
        let resp = get(asset).await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{asset}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with(kind), "{asset}");
        assert!(!resp.bytes().await.unwrap().is_empty(), "{asset}");
    }
    let bundle = get("/docs/swagger-ui-bundle.js").await.unwrap().bytes().await.unwrap();
    assert_eq!(bundle.as_ref(), include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"), "the vendored file");
    let init = get("/docs/init.js").await.unwrap().text().await.unwrap();
    assert!(init.contains(r#"url: "/docs/openapi.json""#) && init.contains("validatorUrl: null"), "{init}");
    // The page renders the document the API serves.
    let beside = get("/docs/openapi.json").await.unwrap().text().await.unwrap();
    let served = get("/openapi.json").await.unwrap().text().await.unwrap();
    assert_eq!(beside, served);
    let post = app.http.post(format!("{}/docs", app.base)).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);
    assert_eq!(post.headers()["allow"], "GET");
    assert_eq!(get("/docs/nothing-here").await.unwrap().status().as_u16(), 404);
    app.stop().await;
}

/// The host chooses where the docs go, or leaves them out.
#[actix_web::test]
async fn docs_follow_the_mounting() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let webhooks = servio_webhooks::Webhooks::start(settings(&dir)).await.unwrap();
    let routes =
        webhooks.routes().prefix("/hooks-admin").openapi(None).docs(Some("/hooks-admin-docs")).into_configure();
    let (base, server) = host_app(routes);
    let http = http_client();
    let init = http.get(format!("{base}/hooks-admin-docs/init.js")).send().await.unwrap().text().await.unwrap();
    assert!(init.contains(r#"url: "/hooks-admin-docs/openapi.json""#), "{init}");
    let doc: Value = serde_json::from_str(
        &http.get(format!("{base}/hooks-admin-docs/openapi.json")).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert!(
        doc["paths"].get("/hooks-admin/webhooks").is_some(),
        "the document of this mounting, though /openapi.json is not mounted"
    );
    assert_eq!(http.get(format!("{base}/docs")).send().await.unwrap().status().as_u16(), 404);
    server.stop(true).await;
    let none = webhooks.routes().docs(None).into_configure();
    let (base, server) = host_app(none);
    assert_eq!(http.get(format!("{base}/docs")).send().await.unwrap().status().as_u16(), 404);
    server.stop(true).await;
    webhooks.shutdown().await;
}

/// A URL of 2048 characters (the documented limit) can be stored longer once normalized, here
/// with the `/` added after the host. Given back in a body it is held to the limit like any URL,
/// as the OpenAPI document says; a merge patch that leaves it out keeps it.
#[actix_web::test]
async fn a_stored_url_normalized_past_the_limit_is_kept_but_not_taken_back_in_a_body() {
    let app = TestApp::start().await;
    let prefix = "http://127.0.0.1:9?q=";
    let given = format!("{prefix}{}", "0".repeat(2048 - prefix.len()));
    assert_eq!(given.len(), 2048);
    let (status, hook) = app.request("PUT", "/v1/webhooks/long", Some(&json!({"url": given}).to_string())).await;
    assert_eq!(status, 201, "{hook}");
    let stored = hook["url"].as_str().unwrap().to_string();
    assert_eq!(stored.len(), 2049, "normalized with a `/` after the host");

    let (status, err) = app.request("PUT", "/v1/webhooks/long", Some(&json!({"url": stored}).to_string())).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_url")), "{err}");
    let (status, err) = app.request("PATCH", "/v1/webhooks/long", Some(&json!({"url": stored}).to_string())).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_url")), "{err}");
    let (status, err) = app.request("POST", "/v1/webhooks", Some(&json!({"url": stored}).to_string())).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("invalid_url")), "{err}");

    // Leaving it out keeps it; giving it as first given works too.
    let (status, hook) =
        app.request("PATCH", "/v1/webhooks/long", Some(&json!({"description": "kept"}).to_string())).await;
    assert_eq!(status, 200, "{hook}");
    assert_eq!((hook["url"].as_str(), hook["description"].as_str()), (Some(stored.as_str()), Some("kept")));
    let (status, _) = app.request("PUT", "/v1/webhooks/long", Some(&json!({"url": given}).to_string())).await;
    assert_eq!(status, 200);
    app.stop().await;
}
