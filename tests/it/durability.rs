//! Nothing committed is lost: across a restart on the same SQLite file, past the in-memory window,
//! and across kill -9 of the real binary.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    start_server_with(db, port, receiver_url, &[]).await
}

/// [`start_server`] with more environment on top.
async fn start_server_with(
    db: &std::path::Path,
    port: u16,
    receiver_url: &str,
    extra: &[(&str, String)],
) -> ServerProcess {
    let mut env = vec![
        ("WEBHOOKS_DATABASE_URL", format!("sqlite://{}", db.display())),
        ("WEBHOOKS_SQLITE_SYNCHRONOUS", "normal".to_string()),
        ("WEBHOOK_URLS", receiver_url.to_string()),
        ("WEBHOOK_0_SECRET", "seed-secret".to_string()),
        ("WEBHOOK_0_MAX_RETRIES", "50".to_string()),
        ("WEBHOOK_0_INITIAL_DELAY", "100".to_string()),
        ("WEBHOOK_0_MAX_DELAY", "300".to_string()),
        ("WEBHOOK_0_JITTER", "false".to_string()),
    ];
    env.extend(extra.iter().cloned());
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
    let secret: serde_json::Value = serde_json::from_str(
        &http.get(format!("{}/v1/webhooks/webhook-0/secret", server.base)).send().await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(secret["secret"], "seed-secret");
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
    // Every event is pending, its attempts so far answered 503, when the process dies.
    receiver.wait_for(1, WAIT).await;
    server.kill9();
    drop(server);

    // From `answering_200` on, every request is answered 200: only receipts after it count as
    // delivered (the ones before got 503).
    receiver.set(|_, _| Reply::Status(200));
    let answering_200 = Instant::now();
    let mut server = start_server(&db, port, &receiver.url).await;
    eventually(WAIT, "every acknowledged event answered 200 after kill -9", || {
        let delivered: HashSet<String> =
            receiver.received().iter().filter(|r| r.at > answering_200).map(Received::event_id).collect();
        let all = published.is_subset(&delivered);
        async move { all }
    })
    .await;
    // And the store agrees: each of them succeeded, none is left pending.
    let api = |path: String| {
        let req = http.get(format!("{}{path}", server.base)).send();
        async move { serde_json::from_str::<serde_json::Value>(&req.await.unwrap().text().await.unwrap()).unwrap() }
    };
    eventually(WAIT, "the store records every delivery as succeeded", || {
        let (succeeded, pending) =
            (api("/v1/deliveries?status=success&limit=250".into()), api("/v1/deliveries?status=pending".into()));
        let published = &published;
        async move {
            let done: HashSet<String> = succeeded.await["data"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["lastStatusCode"] == 200)
                .map(|d| d["eventId"].as_str().unwrap().to_string())
                .collect();
            pending.await["data"] == json!([]) && done == *published
        }
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

/// Events acknowledged (202) by the server, published continuously over REST by [`publisher`].
#[derive(Default)]
struct Published {
    /// `(event id, acknowledged at)`.
    acked: Mutex<Vec<(String, Instant)>>,
    refused: AtomicUsize,
    stop: AtomicBool,
}

/// Publishes one event after another until told to stop; a publish that gets no 202 (the server
/// is dead or restarting) is not acknowledged, and the next one goes after a short pause.
async fn publisher(http: reqwest::Client, base: String, out: Arc<Published>) {
    let mut n = 0u64;
    while !out.stop.load(Ordering::SeqCst) {
        n += 1;
        let resp = http
            .post(format!("{base}/v1/events"))
            .header("content-type", "application/json")
            .body(json!({"event": "order.created", "data": {"n": n}}).to_string())
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        let acked = match resp {
            Ok(r) if r.status().as_u16() == 202 => r.text().await.ok().and_then(|t| {
                let v: serde_json::Value = serde_json::from_str(&t).ok()?;
                v["id"].as_str().map(str::to_string)
            }),
            _ => None,
        };
        match acked {
            Some(id) => out.acked.lock().unwrap().push((id, Instant::now())),
            None => {
                out.refused.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
}

const KILL_ROUNDS: usize = 20;
const MAX_IN_FLIGHT: usize = 16;

/// 20 times: publish continuously, kill -9 the real binary at a random moment (seeded), restart
/// it on the same SQLite file. Every acknowledged event must arrive, answered 200; duplicates are
/// bounded by the attempts that can be in flight at each kill.
///
/// The node id is generated by each run (`WEBHOOKS_NODE_ID` unset), so every restart is a new
/// node on a store the killed one still appears to hold.
#[actix_web::test]
async fn kill_9_at_random_moments_under_load_loses_no_acknowledged_event() {
    let seed: u64 = std::env::var("KILL9_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    println!("kill -9 under load: seed {seed} (KILL9_SEED={seed} repeats the kill moments)");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("webhooks.db");
    let receiver = TestReceiver::ok();
    let port = free_port();
    let env = vec![("WEBHOOKS_MAX_IN_FLIGHT", MAX_IN_FLIGHT.to_string())];
    let mut server = start_server_with(&db, port, &receiver.url, &env).await;
    let http = http_client();
    let published = Arc::new(Published::default());
    let publishers: Vec<_> =
        (0..3).map(|_| actix_web::rt::spawn(publisher(http.clone(), server.base.clone(), published.clone()))).collect();

    // (killed at, answering /healthz again at)
    let mut kills = Vec::new();
    for _ in 0..KILL_ROUNDS {
        tokio::time::sleep(Duration::from_millis(rng.random_range(50..=600))).await;
        server.kill9();
        let killed = Instant::now();
        // Killed and reaped: its Drop would only signal a pid that no longer exists (and print
        // `kill: No such process` 20 times).
        std::mem::forget(server);
        server = start_server_with(&db, port, &receiver.url, &env).await;
        kills.push((killed, Instant::now()));
    }
    // Some load on the last incarnation too, then stop publishing.
    tokio::time::sleep(Duration::from_millis(200)).await;
    published.stop.store(true, Ordering::SeqCst);
    for p in publishers {
        p.await.unwrap();
    }
    let acks = published.acked.lock().unwrap().clone();
    let acked: HashSet<String> = acks.iter().map(|(id, _)| id.clone()).collect();
    assert!(acked.len() > KILL_ROUNDS * 5, "the load was light: {} events acknowledged", acked.len());

    // Every acknowledged event reaches the receiver (which answers 200 to everything)...
    eventually(WAIT, "every acknowledged event delivered", || {
        let delivered: HashSet<String> = receiver.received().iter().map(Received::event_id).collect();
        let all = acked.is_subset(&delivered);
        async move { all }
    })
    .await;
    // ... and the store knows: nothing left pending, nothing failed.
    let base = server.base.clone();
    eventually(WAIT, "no delivery left pending", || {
        let req = http.get(format!("{base}/v1/deliveries?status=pending")).send();
        async move {
            let text = req.await.unwrap().text().await.unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["data"] == json!([])
        }
    })
    .await;
    let failed = http.get(format!("{base}/v1/deliveries?status=failed")).send().await.unwrap().text().await.unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&failed).unwrap()["data"], json!([]), "no delivery failed");

    let got = receiver.received();
    let mut per_event: HashMap<String, usize> = HashMap::new();
    for r in &got {
        *per_event.entry(r.event_id()).or_default() += 1;
    }
    let lost = acked.iter().filter(|id| !per_event.contains_key(*id)).count();
    let duplicates: usize = per_event.values().map(|n| n - 1).sum();
    // Each repeat receipt is charged to the last kill before it.
    let mut per_kill = [0usize; KILL_ROUNDS];
    let mut seen = HashSet::new();
    for r in &got {
        if !seen.insert(r.event_id())
            && let Some(k) = kills.iter().rposition(|(killed, _)| *killed < r.at)
        {
            per_kill[k] += 1;
        }
    }
    // Recovery: from the kill to the first delivery by the restarted process.
    let mut recoveries = Vec::new();
    for (i, (killed, back)) in kills.iter().enumerate() {
        let next = kills.get(i + 1).map_or_else(Instant::now, |k| k.0);
        let first = got.iter().filter(|r| r.at > *back).map(|r| r.at.duration_since(*killed)).min();
        let recovery = first.expect("a delivery after each restart");
        recoveries.push(recovery);
        println!(
            "round {i}: restart {} ms, first delivery {} ms after the kill; then up {} ms: {} acknowledged, {} received",
            back.duration_since(*killed).as_millis(),
            recovery.as_millis(),
            next.duration_since(*back).as_millis(),
            acks.iter().filter(|(_, t)| t > back && *t < next).count(),
            got.iter().filter(|r| r.at > *back && r.at < next).count(),
        );
    }
    let worst = recoveries.iter().max().unwrap();
    println!(
        "kill -9 under load: seed {seed}, {KILL_ROUNDS} rounds, {} events acknowledged ({} publishes refused while \
         down), {} received ({} distinct), lost {lost}, duplicates {duplicates} (bound {}; at most {} after one \
         kill), worst recovery {} ms (kill -> first delivery after restart), test took {} ms",
        acked.len(),
        published.refused.load(Ordering::SeqCst),
        got.len(),
        per_event.len(),
        KILL_ROUNDS * MAX_IN_FLIGHT,
        per_kill.iter().max().unwrap(),
        worst.as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(lost, 0, "acknowledged events lost (seed {seed})");
    assert!(
        duplicates <= KILL_ROUNDS * MAX_IN_FLIGHT,
        "{duplicates} duplicates: more than the {MAX_IN_FLIGHT} attempts in flight per kill (seed {seed})"
    );
    for r in &got {
        servio_webhooks::signing::verify("seed-secret", |n| r.header(n), &r.body).expect("signed with the seed secret");
    }
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

#[actix_web::test]
async fn windows_of_all_endpoints_together_stay_within_the_byte_budget() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.delivery.window_bytes = 300 * 1024;
    let app = TestApp::start_with(dir, s).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(20), 200));
    for i in 0..4 {
        app.register(json!({"url": receiver.url, "maxInFlight": 1, "headers": {"x-hook": i.to_string()}})).await;
    }
    let blob = "x".repeat(64 * 1024);
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (w, p) = (app.webhooks.clone(), peak.clone());
    let sampler = actix_web::rt::spawn(async move {
        loop {
            p.fetch_max(w.window_bytes(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    for i in 0..20 {
        app.publish("order.created", json!({"n": i, "blob": blob})).await;
    }
    receiver.wait_for(80, WAIT).await; // every delivery of every endpoint: nobody starved
    sampler.abort();
    let peak = peak.load(Ordering::Relaxed);
    // The budget, plus at most one delivery per endpoint that had nothing else in memory.
    let bound = 300 * 1024 + 4 * (blob.len() + 200);
    assert!(peak <= bound, "windows held {peak} bytes at the peak, more than {bound}");
    assert!(peak >= 200 * 1024, "and they did fill up to near the budget: {peak}");
    eventually(WAIT, "all bytes given back", || async { app.webhooks.window_bytes() == 0 }).await;
    app.stop().await;
}
