//! Endpoint lifecycle against real receivers: PATCH applied live, disable and enable, the secret
//! out of reads, rotation with an overlap window, and the test ping.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::signing::{self, SigningKey};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(15);
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NEW: &str = "whsec_bmV3LXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u";

async fn patch(app: &TestApp, id: &str, body: &str) -> (u16, Value) {
    let resp = app
        .http
        .patch(format!("{}/v1/webhooks/{id}", app.base))
        .header("content-type", "application/merge-patch+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null))
}

fn verifies(secret: &str, r: &Received) -> bool {
    signing::verify(secret, |n| r.header(n), &r.body).is_ok()
}

#[actix_web::test]
async fn patch_is_applied_to_the_live_endpoint() {
    let app = TestApp::start().await;
    let first = TestReceiver::ok();
    let second = TestReceiver::ok();
    let hook = app
        .register(json!({
            "url": first.url,
            "events": ["order.created"],
            "headers": {"X-Keep": "1", "X-Drop": "2"},
            "retryConfig": {"maxRetries": 4, "jitter": "full"},
            "description": "pos"
        }))
        .await;
    let id = hook["id"].as_str().unwrap();
    app.publish("order.created", json!({"n": 1})).await;
    first.wait_for(1, WAIT).await;

    let (status, patched) = patch(
        &app,
        id,
        &json!({
            "url": second.url,
            "events": ["order.created", "order.updated"],
            "headers": {"X-Drop": null, "X-New": "3"},
            "retryConfig": {"maxRetries": 2},
            "description": null
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["url"], second.url.as_str());
    assert_eq!(patched["events"], json!(["order.created", "order.updated"]));
    assert_eq!(patched["headers"], json!({"X-Keep": "1", "X-New": "3"}), "objects merge, null removes");
    assert_eq!(patched["retryConfig"]["maxRetries"], 2);
    assert_eq!(patched["retryConfig"]["jitter"], "full", "the other retry fields are kept");
    assert_eq!(patched["description"], Value::Null);
    assert_eq!(patched["createdAt"], hook["createdAt"]);
    assert!(patched.get("secret").is_none(), "{patched}");
    assert_eq!(app.get(&format!("/v1/webhooks/{id}/secret")).await.1["secret"], hook["secret"], "secret kept");

    // The running endpoint actor uses the new registration for the next attempt.
    let receipt = app.publish("order.updated", json!({"n": 2})).await;
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-webhook-event"), Some("order.updated"));
    assert_eq!(got[0].header("x-new"), Some("3"));
    assert_eq!(got[0].header("x-drop"), None);
    let delivery = receipt["deliveries"][0]["id"].as_str().unwrap();
    app.wait_delivery(delivery, WAIT, |d| d["status"] == "success").await;
    assert_eq!(first.count(), 1, "the old URL gets nothing more");

    // `application/json` works as well; an empty patch changes nothing.
    let (status, same) = app.request("PATCH", &format!("/v1/webhooks/{id}"), Some("{}")).await;
    assert_eq!(status, 200);
    assert_eq!(same["url"], second.url.as_str());
    app.stop().await;
}

#[actix_web::test]
async fn bad_patches_are_refused_and_change_nothing() {
    let app = TestApp::start().await;
    let hook = app.register(json!({"url": "https://example.com/a", "events": ["order.created"]})).await;
    let id = hook["id"].as_str().unwrap();
    let before = app.get(&format!("/v1/webhooks/{id}")).await.1;
    for (body, code, mention) in [
        (r#"{"evnts": ["order.created"]}"#, "invalid_request", "evnts"),
        (r#"{"id": "other"}"#, "invalid_request", "id"),
        (r#"{"url": null}"#, "invalid_request", "url"),
        (r#"{"url": "ftp://example.com"}"#, "invalid_url", ""),
        (r#"{"events": []}"#, "invalid_request", "events"),
        (r#"{"events": ["order.nope"]}"#, "unknown_event_type", "order.nope"),
        (r#"{"maxInFlight": 0}"#, "invalid_request", "maxInFlight"),
        (r#"{"retryConfig": {"maxRetries": -1}}"#, "invalid_retry_config", ""),
        (r#"{"headers": {"Authorization": "x"}}"#, "invalid_header", "Authorization"),
        (r#"{"secret": "whsec_"}"#, "invalid_secret", ""),
        ("[1]", "invalid_request", "object"),
        ("\"x\"", "invalid_request", "object"),
        ("{", "invalid_json", ""),
    ] {
        let (status, err) = patch(&app, id, body).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], code, "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(mention), "{body}: {err}");
    }
    let (status, err) =
        app.request_with("PATCH", &format!("/v1/webhooks/{id}"), None, &[("content-type", "text/plain")]).await;
    assert_eq!((status, err["error"]["code"].as_str()), (415, Some("unsupported_media_type")));
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.1, before, "nothing changed");
    let (status, err) = patch(&app, "wh_nope", "{}").await;
    assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")));
    app.stop().await;
}

#[actix_web::test]
async fn concurrent_patches_are_not_lost() {
    let app = Arc::new(TestApp::start().await);
    let hook = app.register(json!({"url": "https://example.com/a"})).await;
    let id = hook["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (app, id) = (app.clone(), id.clone());
        tasks.push(actix_web::rt::spawn(async move {
            patch(&app, &id, &json!({"headers": {format!("X-H{i}"): i.to_string()}}).to_string()).await
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let headers = app.get(&format!("/v1/webhooks/{id}")).await.1["headers"].clone();
    assert_eq!(headers.as_object().unwrap().len(), 6, "every patch landed: {headers}");
}

#[actix_web::test]
async fn disable_fails_pending_and_enable_resumes() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    let hook = app
        .register(json!({"url": receiver.url, "retryConfig": {"maxRetries": 5, "initialDelay": 600000, "maxDelay": 600000, "jitter": false}}))
        .await;
    let id = hook["id"].as_str().unwrap();
    let receipt = app.publish("order.created", json!({})).await;
    let delivery = receipt["deliveries"][0]["id"].as_str().unwrap().to_string();
    app.wait_delivery(&delivery, WAIT, |d| d["attempts"] == 1).await;

    let (status, disabled) = app.post(&format!("/v1/webhooks/{id}/disable"), json!({"reason": "maintenance"})).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["state"], "disabled");
    assert_eq!(disabled["disabledReason"], "maintenance");
    assert!(disabled["disabledAt"].is_string());
    let d = app.wait_delivery(&delivery, WAIT, |d| d["status"] == "failed").await;
    assert_eq!(d["error"], "maintenance", "pending deliveries fail, as on an automatic disable");
    assert_eq!(d["attempts"], 1);

    // Disabled: publishes skip it; a second disable changes nothing (idempotent).
    let skipped = app.publish("order.created", json!({})).await;
    assert_eq!(skipped["deliveries"], json!([]));
    let (status, again) = app.request("POST", &format!("/v1/webhooks/{id}/disable"), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (again["disabledReason"].clone(), again["disabledAt"].clone()),
        (json!("maintenance"), disabled["disabledAt"].clone())
    );
    let (status, err) = app.post(&format!("/v1/webhooks/{id}/test"), json!({})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("webhook_disabled")), "{err}");
    assert_eq!(receiver.count(), 1, "a disabled endpoint sends nothing");

    // A PATCH keeps it disabled.
    let (status, patched) = patch(&app, id, r#"{"description": "down"}"#).await;
    assert_eq!((status, patched["state"].as_str()), (200, Some("disabled")));

    receiver.set(|_, _| Reply::Status(200));
    let (status, enabled) = app.request("POST", &format!("/v1/webhooks/{id}/enable"), None).await;
    assert_eq!(status, 200, "{enabled}");
    assert_eq!(enabled["state"], "healthy");
    assert_eq!((enabled["disabledAt"].clone(), enabled["disabledReason"].clone()), (Value::Null, Value::Null));
    assert_eq!(enabled["consecutiveFailures"], 0, "health starts over");
    let (status, _) = app.post(&format!("/v1/webhooks/{id}/enable"), json!({})).await;
    assert_eq!(status, 200, "idempotent");
    let receipt = app.publish("order.created", json!({})).await;
    let delivery = receipt["deliveries"][0]["id"].as_str().unwrap();
    app.wait_delivery(delivery, WAIT, |d| d["status"] == "success").await;

    // Bad input.
    for (path, body, code) in [
        ("disable", r#"{"reason": ""}"#, "invalid_request"),
        ("disable", r#"{"reason": "a\u0001b"}"#, "invalid_request"),
        ("disable", r#"{"why": "x"}"#, "invalid_request"),
        ("disable", "{", "invalid_json"),
        ("enable", r#"{"force": true}"#, "invalid_request"),
    ] {
        let (status, err) = app.request("POST", &format!("/v1/webhooks/{id}/{path}"), Some(body)).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{path} {body}: {err}");
    }
    // `null` is no body, as the document says.
    for path in ["disable", "enable"] {
        let (status, body) = app.request("POST", &format!("/v1/webhooks/{id}/{path}"), Some("null")).await;
        assert_eq!(status, 200, "{path} null: {body}");
    }
    for path in ["disable", "enable"] {
        let (status, err) = app.request("POST", &format!("/v1/webhooks/wh_nope/{path}"), None).await;
        assert_eq!((status, err["error"]["code"].as_str()), (404, Some("not_found")));
    }
    let (status, _) = app.get(&format!("/v1/webhooks/{id}/disable")).await;
    assert_eq!(status, 405);
    app.stop().await;
}

#[actix_web::test]
async fn secrets_are_read_apart_and_rotation_signs_with_both_keys_during_the_overlap() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url, "secret": OLD})).await;
    assert_eq!(hook["secret"], OLD, "the create response shows the secret");
    let id = hook["id"].as_str().unwrap().to_string();
    let (_, list) = app.get("/v1/webhooks").await;
    assert!(list["data"][0].get("secret").is_none() && !list.to_string().contains(OLD), "{list}");

    // Rotation with the default overlap (24 h): both keys sign, the seed's header uses the new one.
    let (status, rotated) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"secret": NEW})).await;
    assert_eq!((status, rotated.clone()), (200, json!({"secret": NEW})));
    assert_eq!(app.get(&format!("/v1/webhooks/{id}/secret")).await.1["secret"], NEW);
    app.publish("order.created", json!({"n": 1})).await;
    let got = receiver.wait_for(1, WAIT).await;
    let sigs = got[0].header("webhook-signature").unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(sigs.split(' ').all(|s| s.starts_with("v1,")), "{sigs}");
    assert!(verifies(OLD, &got[0]), "a receiver holding only the old secret verifies");
    assert!(verifies(NEW, &got[0]), "a receiver holding only the new secret verifies");
    let hex = SigningKey::from_secret(NEW).unwrap().sign_body_hex(&got[0].body);
    assert_eq!(got[0].header("x-webhook-signature"), Some(hex.as_str()));

    // Stored durably: the overlap survives a restart.
    let dir = app.stop().await;
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    app.publish("order.created", json!({"n": 2})).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert!(verifies(OLD, &got[1]) && verifies(NEW, &got[1]), "both still verify after a restart");

    // A generated secret with a 1 s overlap: both during it, only the new one after it.
    let (status, rotated) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"overlapSeconds": 1})).await;
    assert_eq!(status, 200, "{rotated}");
    let newest = rotated["secret"].as_str().unwrap().to_string();
    assert!(newest.starts_with("whsec_"));
    let until = std::time::Instant::now() + Duration::from_secs(1);
    app.publish("order.created", json!({"n": 3})).await;
    let got = receiver.wait_for(3, WAIT).await;
    if std::time::Instant::now() < until {
        assert!(verifies(NEW, &got[2]) && verifies(&newest, &got[2]), "both during the overlap");
    }
    tokio::time::sleep(until.saturating_duration_since(std::time::Instant::now())).await;
    app.publish("order.created", json!({"n": 4})).await;
    let got = receiver.wait_for(4, WAIT).await;
    assert!(verifies(&newest, &got[3]), "the new secret verifies after the overlap");
    assert!(!verifies(NEW, &got[3]), "the old one no longer does");
    assert_eq!(got[3].header("webhook-signature").unwrap().split(' ').count(), 1);

    // No overlap at all (and no body: a generated secret, the default overlap would apply).
    let (status, rotated) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"overlapSeconds": 0})).await;
    assert_eq!(status, 200);
    let last = rotated["secret"].as_str().unwrap().to_string();
    app.publish("order.created", json!({"n": 5})).await;
    let got = receiver.wait_for(5, WAIT).await;
    assert!(verifies(&last, &got[4]) && !verifies(&newest, &got[4]));

    // Bad input changes nothing.
    for (body, code) in [
        (json!({"overlapSeconds": -1}), "invalid_request"),
        (json!({"overlapSeconds": 1.5}), "invalid_request"),
        (json!({"overlapSeconds": 2592001}), "invalid_request"),
        (json!({"overlapSeconds": "60"}), "invalid_request"),
        (json!({"secret": "whsec_"}), "invalid_secret"),
        (json!({"secret": "a\u{0}b"}), "invalid_secret"),
        (json!({"secret": "x".repeat(513)}), "invalid_request"),
        (json!({"secrets": "x"}), "invalid_request"),
    ] {
        let (status, err) = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), body.clone()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body}: {err}");
    }
    assert_eq!(app.get(&format!("/v1/webhooks/{id}/secret")).await.1["secret"], last.as_str());
    let (status, _) = app.request("POST", "/v1/webhooks/wh_nope/rotate-secret", None).await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/v1/webhooks/wh_nope/secret").await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[actix_web::test]
async fn test_ping_goes_to_that_webhook_alone_and_reports_the_outcome() {
    let app = TestApp::start().await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(201));
    let bystander = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url, "secret": OLD, "events": ["order.created"]})).await;
    app.register(json!({"url": bystander.url})).await;
    let id = hook["id"].as_str().unwrap();

    let (status, out) = app.request("POST", &format!("/v1/webhooks/{id}/test"), None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["status"], "success");
    assert_eq!(out["statusCode"], 201);
    assert_eq!(out["responseBody"], "status 201");
    assert!(out["durationMs"].is_u64() && out.get("error").is_none(), "{out}");
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-webhook-event"), Some("webhook.test"));
    assert_eq!(got[0].json()["data"], json!({"webhookId": id}));
    assert!(verifies(OLD, &got[0]), "signed like any delivery");
    let d = app.delivery(out["deliveryId"].as_str().unwrap()).await;
    assert_eq!((d["event"].as_str(), d["webhookId"].as_str()), (Some("webhook.test"), Some(id)));
    assert_eq!(d["attemptLog"].as_array().unwrap().len(), 1);

    // A failing receiver: one attempt, failed, not retried (the webhook has retries left).
    receiver.set(|_, _| Reply::Status(500));
    let (status, out) = app.post(&format!("/v1/webhooks/{id}/test"), json!({"data": {"ping": 1}})).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!((out["status"].as_str(), out["statusCode"].as_u64()), (Some("failed"), Some(500)));
    assert!(out["error"].is_string(), "{out}");
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["data"], json!({"ping": 1}));
    let d = app.delivery(out["deliveryId"].as_str().unwrap()).await;
    assert_eq!((d["status"].as_str(), d["attempts"].as_u64()), (Some("failed"), Some(1)));
    assert_eq!(bystander.count(), 0, "the test goes to that webhook alone");

    // `webhook.test` is reserved: not publishable, but subscribable without counting as unknown.
    let (status, err) = app.post("/v1/events", json!({"event": "webhook.test", "data": {}})).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("reserved_event_type")), "{err}");
    let (status, _) = app.post("/v1/webhooks", json!({"url": bystander.url, "events": ["webhook.test"]})).await;
    assert_eq!(status, 201);

    for (body, code) in [
        (json!({"data": [1]}), "invalid_data"),
        (json!({"data": "x"}), "invalid_data"),
        (json!({"event": "order.created"}), "invalid_request"),
    ] {
        let (status, err) = app.post(&format!("/v1/webhooks/{id}/test"), body.clone()).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body}: {err}");
    }
    let (status, _) = app.request("POST", "/v1/webhooks/wh_nope/test", None).await;
    assert_eq!(status, 404);
    assert_eq!(receiver.count(), 2, "bad requests sent nothing");
    app.stop().await;
}

/// A test ping whose attempt cannot start in time (here: an empty token bucket at one attempt
/// per 100 s) answers 202 with its delivery, which still goes out once it can, once.
#[actix_web::test]
async fn a_test_ping_without_an_outcome_in_time_answers_202_and_goes_out_once_later() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.request_timeout = Duration::from_millis(300); // the ping waits 0.3 s + 2 s
    let app = TestApp::start_with(dir.clone(), s).await;
    let receiver = TestReceiver::ok();
    let body = json!({"url": receiver.url, "rateLimitPerSecond": 0.01});
    let (status, hook) = app.request("PUT", "/v1/webhooks/slow", Some(&body.to_string())).await;
    assert_eq!(status, 201, "{hook}");

    let (status, out) = app.request("POST", "/v1/webhooks/slow/test", None).await;
    assert_eq!(status, 202, "{out}");
    assert!(out.get("status").is_none(), "no outcome yet: {out}");
    let id = out["deliveryId"].as_str().expect("the stored delivery").to_string();
    let d = app.delivery(&id).await;
    assert_eq!((d["status"].as_str(), d["attempts"].as_u64()), (Some("pending"), Some(0)), "{d}");
    assert_eq!(d["event"], "webhook.test");
    assert_eq!(receiver.count(), 0);

    // Lifting the limit lets it go: once, recorded like any attempt.
    let body = json!({"url": receiver.url});
    let (status, _) = app.request("PUT", "/v1/webhooks/slow", Some(&body.to_string())).await;
    assert_eq!(status, 200);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("x-webhook-event"), Some("webhook.test"));
    eventually(WAIT, "the ping's attempt recorded", || async { app.delivery(&id).await["status"] == "success" }).await;
    assert_eq!(app.delivery(&id).await["attempts"], 1);
    assert_eq!(receiver.count(), 1, "sent once");
    app.stop().await;
}

/// A delivery committed for a disabled webhook (a node that had not heard of the disable yet)
/// stays pending, and goes out once the webhook is enabled.
#[actix_web::test]
async fn enable_delivers_what_is_still_pending() {
    use servio_webhooks::model::{delivery_id, new_event_id, now_ms};
    use servio_webhooks::store::{NewDelivery, NewEvent, WriteBatch};

    let app = TestApp::start().await;
    let receiver = TestReceiver::ok();
    let hook = app.register(json!({"url": receiver.url})).await;
    let id = hook["id"].as_str().unwrap();
    let (status, _) = app.request("POST", &format!("/v1/webhooks/{id}/disable"), None).await;
    assert_eq!(status, 200);
    let event = new_event_id();
    let body = format!(r#"{{"id":"{event}","event":"order.created","data":{{}},"timestamp":"t"}}"#);
    let delivery = delivery_id(&event, 0);
    let batch = WriteBatch {
        events: vec![NewEvent {
            id: event.clone(),
            event_type: "order.created".into(),
            payload: body.into(),
            timestamp: "t".into(),
            created_at_ms: now_ms(),
            idempotency_key: None,
            deliveries: vec![NewDelivery { id: delivery.clone(), webhook_id: Arc::from(id) }],
            tenant: None,
        }],
        ..WriteBatch::default()
    };
    app.webhooks.store().apply(Arc::new(batch)).await.unwrap();
    assert_eq!(app.delivery(&delivery).await["status"], "pending");
    assert_eq!(receiver.count(), 0);

    let (status, _) = app.request("POST", &format!("/v1/webhooks/{id}/enable"), None).await;
    assert_eq!(status, 200);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("webhook-id"), Some(event.as_str()));
    app.wait_delivery(&delivery, WAIT, |d| d["status"] == "success").await;
    app.stop().await;
}
