//! Nothing committed is lost: across a restart on the same SQLite file, past the in-memory window,
//! and across kill -9 of the real binary.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;
use crate::process::{ServerProcess, free_port};

const WAIT: Duration = Duration::from_secs(30);

fn distinct_ids(got: &[Received]) -> HashSet<String> {
    got.iter().map(Received::event_id).collect()
}

#[actix_web::test]
async fn pending_deliveries_survive_a_restart_on_the_same_file() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    let receiver = TestReceiver::with(|_, _| Reply::Status(500));
    app.register(json!({"url": receiver.url, "retryConfig": fast_retry(10, 300)})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = app.publish("order.created", json!({"n": i})).await;
        ids.push(r["deliveries"][0]["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(5, WAIT).await;
    let dir = app.stop().await;

    receiver.set(|_, _| Reply::Status(200));
    let app = TestApp::start_with(dir.clone(), settings(&dir)).await;
    for id in &ids {
        let d = app.wait_delivery(id, WAIT, |d| d["status"] == "success").await;
        let log = d["attemptLog"].as_array().unwrap();
        assert!(log.len() >= 2, "attempt numbering continues across the restart: {d}");
        assert_eq!(log[0]["statusCode"], 500);
        assert_eq!(log.last().unwrap()["statusCode"], 200);
    }
    assert_eq!(distinct_ids(&receiver.received()).len(), 5);
    app.stop().await;
}

#[actix_web::test]
async fn backlog_beyond_the_window_waits_in_the_store_and_drains() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.window = 4;
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(5), 200));
    app.register(json!({"url": receiver.url, "maxInFlight": 1})).await;
    let mut published = HashSet::new();
    for i in 0..60 {
        published.insert(app.publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
    }
    let got = receiver.wait_for(60, WAIT).await;
    assert_eq!(distinct_ids(&got), published, "every event delivered");
    assert_eq!(got.len(), 60, "and none twice");
    eventually(WAIT, "no delivery left pending", || async {
        app.get("/v1/deliveries?status=pending").await.1["data"] == json!([])
    })
    .await;
    let (_, done) = app.get("/v1/deliveries?status=success&limit=100").await;
    assert_eq!(done["data"].as_array().unwrap().len(), 60);
    app.stop().await;
}

/// The real binary on a SQLite file, with the seed's `WEBHOOK_URLS` registering `webhook-0`.
async fn start_server(db: &std::path::Path, port: u16, receiver_url: &str) -> ServerProcess {
    let env = [
        ("WEBHOOKS_DATABASE_URL", format!("sqlite://{}", db.display())),
        ("WEBHOOKS_SQLITE_SYNCHRONOUS", "normal".to_string()),
        ("WEBHOOK_URLS", receiver_url.to_string()),
        ("WEBHOOK_0_SECRET", "seed-secret".to_string()),
        ("WEBHOOK_0_MAX_RETRIES", "50".to_string()),
        ("WEBHOOK_0_INITIAL_DELAY", "100".to_string()),
        ("WEBHOOK_0_MAX_DELAY", "300".to_string()),
        ("WEBHOOK_0_JITTER", "false".to_string()),
    ];
    ServerProcess::start(port, &env).await
}

#[actix_web::test]
async fn kill_9_loses_nothing_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("webhooks.db");
    let receiver = TestReceiver::with(|_, _| Reply::Status(503));
    let port = free_port();
    let mut server = start_server(&db, port, &receiver.url).await;
    let http = http_client();

    // The seed's WEBHOOK_URLS registry registered webhook-0.
    let w: serde_json::Value = serde_json::from_str(
        &http.get(format!("{}/v1/webhooks/webhook-0", server.base)).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(w["url"], receiver.url.as_str());
    assert_eq!(w["secret"], "seed-secret");
    assert_eq!(w["retryConfig"]["maxRetries"], 50);

    let mut published = HashSet::new();
    for i in 0..20 {
        let resp = http
            .post(format!("{}/v1/events", server.base))
            .header("content-type", "application/json")
            .body(json!({"event": "order.created", "data": {"n": i}}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
        let r: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        published.insert(r["id"].as_str().unwrap().to_string());
    }
    server.kill9();
    drop(server);

    receiver.set(|_, _| Reply::Status(200));
    let mut server = start_server(&db, port, &receiver.url).await;
    eventually(WAIT, "every acknowledged event delivered after kill -9", || {
        let delivered: HashSet<String> =
            receiver.received().iter().filter(|r| r.at.elapsed() < WAIT).map(Received::event_id).collect();
        let all = published.is_subset(&delivered);
        async move { all }
    })
    .await;
    for r in receiver.received() {
        servio_webhooks::signing::verify("seed-secret", |n| r.header(n), &r.body).expect("signed with the seed secret");
    }

    // SIGTERM: an attempt in flight finishes during the drain and is recorded, not re-sent.
    receiver.set(|_, _| Reply::Delayed(Duration::from_millis(700), 200));
    let before = receiver.count();
    let resp = http
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/json")
        .body(r#"{"event":"order.updated","data":{"late":true}}"#)
        .send()
        .await
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let delivery = r["deliveries"][0]["id"].as_str().unwrap().to_string();
    receiver.wait_for(before + 1, WAIT).await;
    let exit = server.terminate();
    assert!(exit.success(), "graceful exit on SIGTERM: {exit:?}");
    drop(server);

    let server = start_server(&db, port, &receiver.url).await;
    let d: serde_json::Value = serde_json::from_str(
        &http.get(format!("{}/v1/deliveries/{delivery}", server.base)).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(d["status"], "success", "the in-flight attempt was finished and recorded during shutdown: {d}");
    assert_eq!(d["attempts"], 1);
}

#[actix_web::test]
async fn idle_endpoint_actors_hibernate_and_wake_without_losing_a_delivery() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.idle_timeout = Duration::from_millis(1);
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::ok();
    for _ in 0..3 {
        app.register(json!({"url": receiver.url})).await;
    }
    assert_eq!(app.webhooks.running_endpoint_actors().await, 0, "registering starts no actor");
    // Actors hibernate after 1 ms idle while events keep coming: the handshake must not lose any.
    let mut published = HashSet::new();
    for i in 0..60 {
        published.insert(app.publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
        if i % 7 == 0 {
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    let got = receiver.wait_for(180, WAIT).await;
    assert_eq!(got.len(), 180);
    let mut per_event = std::collections::HashMap::new();
    for r in &got {
        *per_event.entry(r.event_id()).or_insert(0) += 1;
    }
    assert!(per_event.values().all(|n| *n == 3), "each event reached each of the 3 webhooks exactly once");
    assert_eq!(per_event.keys().cloned().collect::<HashSet<_>>(), published);
    eventually(WAIT, "idle actors hibernate", || async { app.webhooks.running_endpoint_actors().await == 0 }).await;
    app.stop().await;
}

#[actix_web::test]
async fn a_restart_after_kill_9_with_a_new_node_id_delivers_at_once() {
    // The server generates a node id per run (WEBHOOKS_NODE_ID unset). The killed run's row says
    // it is live for the lease time; on SQLite (one process per file) it must not be given work.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("webhooks.db");
    let receiver = TestReceiver::ok();
    let port = free_port();
    let env = [("WEBHOOKS_DATABASE_URL", format!("sqlite://{}", db.display())), ("WEBHOOK_URLS", receiver.url.clone())];
    let mut server = ServerProcess::start(port, &env).await;
    server.kill9();
    drop(server);
    let server = ServerProcess::start(port, &env).await;
    let http = http_client();
    let nodes: serde_json::Value = serde_json::from_str(
        &http.get(format!("{}/v1/nodes", server.base)).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let live: Vec<&serde_json::Value> =
        nodes["data"].as_array().unwrap().iter().filter(|n| n["live"] == true).collect();
    assert_eq!(live.len(), 1, "only this run is live: {nodes}");
    assert_eq!(live[0]["current"], true);
    assert_eq!(live[0]["ownedWebhooks"], 1, "it owns the webhook at once: {nodes}");
    let resp = http
        .post(format!("{}/v1/events", server.base))
        .header("content-type", "application/json")
        .body(r#"{"event":"order.created","data":{"after":"restart"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    receiver.wait_for(1, WAIT).await;
}
