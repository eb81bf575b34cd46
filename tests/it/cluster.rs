//! Several nodes on one PostgreSQL database (a fresh schema per test), with real HTTP receivers:
//! in-process nodes for sharing, registry changes, polling and graceful hand-over; the real binary
//! for kill -9, SIGSTOP past the lease (fencing) and a rolling restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use servio_webhooks::config::{ClusterSettings, Settings};

use crate::helpers::*;
use crate::pg;
use crate::process::{ServerProcess, free_port};

const WAIT: Duration = Duration::from_secs(30);
const HEARTBEAT_MS: u64 = 250;
const LEASE_MS: u64 = 2_000;
const POLL_MS: u64 = 500;

fn cluster_settings() -> ClusterSettings {
    ClusterSettings {
        heartbeat_interval: Duration::from_millis(HEARTBEAT_MS),
        lease_ttl: Duration::from_millis(LEASE_MS),
        poll_interval: Duration::from_millis(POLL_MS),
    }
}

fn node_settings(url: &str, node: &str) -> Settings {
    let mut s = Settings {
        database_url: url.to_string(),
        node_id: Some(node.to_string()),
        allow_private_targets: true,
        open_admin_api: true,
        arbiters: 1,
        shutdown_grace: Duration::from_secs(5),
        cluster: cluster_settings(),
        ..Settings::default()
    };
    s.delivery.request_timeout = Duration::from_secs(5);
    s.delivery.connect_timeout = Duration::from_secs(1);
    s.breaker.failure_threshold = 1000;
    s
}

async fn start_nodes(url: &str, names: &[&str]) -> Vec<TestApp> {
    let mut nodes = Vec::new();
    for name in names {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        nodes.push(TestApp::start_with(dir, node_settings(url, name)).await);
    }
    nodes
}

/// Owned-webhook counts of the live nodes, sorted, as one node's `GET /v1/nodes` shows them.
async fn owned_counts(base: &str) -> Vec<u64> {
    let http = http_client();
    let Ok(resp) = http.get(format!("{base}/v1/nodes")).send().await else { return Vec::new() };
    let v: Value = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or_default();
    let mut counts: Vec<u64> = v["data"]
        .as_array()
        .map(|a| a.iter().filter(|n| n["live"] == true).map(|n| n["ownedWebhooks"].as_u64().unwrap_or(0)).collect())
        .unwrap_or_default();
    counts.sort();
    counts
}

async fn wait_owned(base: &str, expected: &[u64]) {
    let http_base = base.to_string();
    eventually(WAIT, &format!("ownership settles at {expected:?}"), || {
        let b = http_base.clone();
        async move { owned_counts(&b).await == expected }
    })
    .await;
}

/// (x-hook header, webhook-id) of every request: one webhook's copy of one event.
fn copies(got: &[Received]) -> HashMap<(String, String), usize> {
    let mut m = HashMap::new();
    for r in got {
        *m.entry((r.header("x-hook").unwrap_or_default().to_string(), r.event_id())).or_insert(0) += 1;
    }
    m
}

#[actix_web::test]
async fn three_nodes_share_the_webhooks_and_send_each_delivery_once() {
    let Some(db) = pg::schema().await else { return };
    // Node ids unique to this test: the metrics recorder is shared by every test in the process.
    let nodes = start_nodes(&db.url, &["share-a", "share-b", "share-c"]).await;
    let receiver = TestReceiver::ok();
    for i in 0..6 {
        nodes[0].register(json!({"url": receiver.url, "headers": {"x-hook": i.to_string()}})).await;
    }
    wait_owned(&nodes[2].base, &[2, 2, 2]).await;

    let mut published = HashSet::new();
    for i in 0..60 {
        let r = nodes[i % 3].publish("order.created", json!({"n": i})).await;
        assert_eq!(r["deliveries"].as_array().unwrap().len(), 6, "every node knows every webhook: {r}");
        published.insert(r["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(360, WAIT).await;
    // A duplicate would come from a second node sending the same delivery: give one a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.received();
    let c = copies(&got);
    assert_eq!(c.len(), 360, "every webhook got every event");
    assert!(c.values().all(|n| *n == 1), "no delivery was sent by two nodes");
    assert_eq!(got.iter().map(Received::event_id).collect::<HashSet<_>>(), published);

    // Every webhook names its owner, and the owners are the three nodes, two webhooks each.
    let (_, list) = nodes[1].get("/v1/webhooks").await;
    let mut per_owner: HashMap<String, usize> = HashMap::new();
    for w in list["data"].as_array().unwrap() {
        *per_owner.entry(w["ownerNode"].as_str().expect("owned").to_string()).or_insert(0) += 1;
    }
    assert_eq!(per_owner.len(), 3, "{per_owner:?}");
    assert!(per_owner.values().all(|n| *n == 2), "{per_owner:?}");
    let m = nodes[0].metrics().await;
    assert_eq!(metric(&m, "webhook_owned_endpoints", &[("node", "share-a")]), Some(2.0));
    for n in nodes {
        n.stop().await;
    }
}

#[actix_web::test]
async fn a_change_made_on_any_node_is_what_the_owner_does() {
    let Some(db) = pg::schema().await else { return };
    let nodes = start_nodes(&db.url, &["node-a", "node-b", "node-c"]).await;
    let old = TestReceiver::ok();
    let new = TestReceiver::ok();
    let (status, _) = nodes[0].request("PUT", "/v1/webhooks/moving", Some(&json!({"url": old.url}).to_string())).await;
    assert_eq!(status, 201);
    let owner = wait_until(WAIT, "an owner", || async {
        nodes[2].get("/v1/webhooks/moving").await.1["ownerNode"].as_str().map(str::to_string)
    })
    .await;
    // Change it on a node that does not own it, publish on another one.
    let other = nodes.iter().position(|n| n.webhooks.node_id() != owner).unwrap();
    let (status, body) =
        nodes[other].request("PUT", "/v1/webhooks/moving", Some(&json!({"url": new.url}).to_string())).await;
    assert_eq!(status, 200, "{body}");
    let third = (other + 1) % 3;
    let r = nodes[third].publish("order.created", json!({"n": 1})).await;
    new.wait_for(1, WAIT).await;
    assert_eq!(old.count(), 0, "the owner used the new URL");
    let d =
        nodes[0].wait_delivery(r["deliveries"][0]["id"].as_str().unwrap(), WAIT, |d| d["status"] == "success").await;
    assert_eq!(d["attempts"], 1);

    // Deleted on one node: no node plans deliveries for it any more.
    let (status, _) = nodes[third].request("DELETE", "/v1/webhooks/moving", None).await;
    assert_eq!(status, 204);
    for n in &nodes {
        eventually(WAIT, "the deletion reaches every node", || async {
            n.publish("order.created", json!({})).await["deliveries"] == json!([])
        })
        .await;
    }
    for n in nodes {
        n.stop().await;
    }
}

#[actix_web::test]
async fn a_node_that_leaves_hands_its_webhooks_over_without_loss_or_duplicates() {
    let Some(db) = pg::schema().await else { return };
    let mut nodes = start_nodes(&db.url, &["leave-a", "leave-b", "leave-c"]).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(20), 200));
    for i in 0..6 {
        nodes[0].register(json!({"url": receiver.url, "headers": {"x-hook": i.to_string()}})).await;
    }
    wait_owned(&nodes[0].base, &[2, 2, 2]).await;
    let mut published = HashSet::new();
    for i in 0..40 {
        published
            .insert(nodes[i % 2].publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
    }
    // Graceful stop of node-c with its deliveries in flight: it drains, then releases.
    let leaving = nodes.pop().unwrap();
    leaving.stop().await;
    for i in 40..80 {
        published
            .insert(nodes[i % 2].publish("order.created", json!({"n": i})).await["id"].as_str().unwrap().to_string());
    }
    receiver.wait_for(480, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.received();
    let c = copies(&got);
    assert_eq!(c.len(), 480, "nothing lost");
    assert!(c.values().all(|n| *n == 1), "a drained hand-over sends nothing twice");
    wait_owned(&nodes[0].base, &[3, 3]).await;
    let m = nodes[0].metrics().await;
    let claimed = metric(&m, "webhook_lease_handoffs_total", &[("node", "leave-a"), ("reason", "claimed")]).unwrap();
    assert!(claimed >= 3.0, "leave-a took over a share: {claimed}");
    for n in nodes {
        n.stop().await;
    }
}

/// Environment of one standalone node on the test database.
fn node_env(url: &str, node: &str) -> Vec<(&'static str, String)> {
    vec![
        ("WEBHOOKS_DATABASE_URL", url.to_string()),
        ("WEBHOOKS_NODE_ID", node.to_string()),
        ("WEBHOOKS_HEARTBEAT_INTERVAL_MS", HEARTBEAT_MS.to_string()),
        ("WEBHOOKS_LEASE_TTL_MS", LEASE_MS.to_string()),
        ("WEBHOOKS_POLL_INTERVAL_MS", POLL_MS.to_string()),
        // Lets the receiver tell the nodes apart.
        ("WEBHOOKS_USER_AGENT", format!("servio-test/{node}")),
        ("WEBHOOKS_SHUTDOWN_GRACE_SECS", "5".to_string()),
    ]
}

async fn start_process_nodes(url: &str, names: &[&str]) -> Vec<ServerProcess> {
    let mut out = Vec::new();
    for name in names {
        out.push(ServerProcess::start(free_port(), &node_env(url, name)).await);
    }
    out
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("answers");
    let status = resp.status().as_u16();
    (status, serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> Value {
    let resp = http_client().get(format!("{base}{path}")).send().await.expect("answers");
    serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null)
}

/// Publishes `n` events spread over the given nodes; returns the accepted event ids.
async fn publish_spread(bases: &[String], from: usize, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for i in from..from + n {
        let (status, r) =
            post(&bases[i % bases.len()], "/v1/events", json!({"event": "order.created", "data": {"n": i}})).await;
        assert_eq!(status, 202, "{r}");
        ids.insert(r["id"].as_str().unwrap().to_string());
    }
    ids
}

#[actix_web::test]
async fn kill_9_of_a_node_under_load_moves_its_webhooks_and_loses_nothing() {
    let Some(db) = pg::schema().await else { return };
    let mut nodes = start_process_nodes(&db.url, &["node-a", "node-b", "node-c"]).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(10), 200));
    let max_in_flight = 4;
    for i in 0..6 {
        let (s, _) = post(
            &nodes[0].base,
            "/v1/webhooks",
            json!({"url": receiver.url, "headers": {"x-hook": i.to_string()}, "maxInFlight": max_in_flight,
                   "retryConfig": {"initialDelay": 100, "maxDelay": 500, "maxRetries": 50}}),
        )
        .await;
        assert_eq!(s, 201);
    }
    wait_owned(&nodes[0].base, &[2, 2, 2]).await;
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let mut published = publish_spread(&bases, 0, 60).await;
    let mut victim = nodes.remove(2);
    victim.kill9();
    let survivors: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    published.extend(publish_spread(&survivors, 60, 60).await);
    // Its two webhooks move once its lease runs out, and everything accepted arrives.
    wait_owned(&nodes[0].base, &[3, 3]).await;
    eventually(WAIT, "every accepted event reached all six webhooks", || {
        let c = copies(&receiver.received());
        let all = published.iter().all(|e| (0..6).all(|h| c.contains_key(&(h.to_string(), e.clone()))));
        async move { all }
    })
    .await;
    let c = copies(&receiver.received());
    let duplicates: usize = c.values().map(|n| n - 1).sum();
    // Only what node-c had in flight when it died may be sent again: at most maxInFlight for each
    // of its two webhooks.
    assert!(duplicates <= 2 * max_in_flight, "{duplicates} duplicates");
}

#[actix_web::test]
async fn a_node_frozen_past_its_lease_cannot_overwrite_the_new_owner_and_rejoins() {
    let Some(db) = pg::schema().await else { return };
    let nodes = start_process_nodes(&db.url, &["node-a", "node-b"]).await;
    // Requests from node-a are answered slowly with 410 Gone, which would disable the webhook
    // and fail its deliveries if node-a's outcome were recorded; node-b's get a 200.
    let receiver = TestReceiver::with(|_, r| {
        if r.header("user-agent") == Some("servio-test/node-a") {
            Reply::Delayed(Duration::from_millis(1500), 410)
        } else {
            Reply::Status(200)
        }
    });
    let hook = post(&nodes[0].base, "/v1/webhooks", json!({"url": receiver.url, "maxInFlight": 1})).await.1;
    // Find a webhook that node-a owns (the hash decides; register more until one lands there).
    let mut target = hook["id"].as_str().unwrap().to_string();
    let mut registered = 1;
    for i in 0.. {
        let owner = wait_until(WAIT, "an owner", || async {
            get(&nodes[1].base, &format!("/v1/webhooks/{target}")).await["ownerNode"].as_str().map(str::to_string)
        })
        .await;
        if owner == "node-a" {
            break;
        }
        assert!(i < 20, "no webhook landed on node-a");
        target = post(&nodes[0].base, "/v1/webhooks", json!({"url": receiver.url, "maxInFlight": 1})).await.1["id"]
            .as_str()
            .unwrap()
            .to_string();
        registered += 1;
    }
    let sent_to_a = receiver.count();
    let r = post(&nodes[1].base, "/v1/events", json!({"event": "order.created", "data": {"n": 1}})).await.1;
    let delivery =
        r["deliveries"].as_array().unwrap().iter().find(|d| d["webhookId"] == target.as_str()).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    receiver.wait_for(sent_to_a + 1, WAIT).await; // node-a's attempt is in flight
    nodes[0].freeze();
    // node-b takes the webhook over after the lease time and delivers.
    let d = wait_until(WAIT, "node-b delivers", || async {
        let d = get(&nodes[1].base, &format!("/v1/deliveries/{delivery}")).await;
        (d["status"] == "success").then_some(d)
    })
    .await;
    nodes[0].thaw();
    // node-a notices it lost the lease: either its own clock says the lease ran out, or it reads
    // its 410 first and the store refuses the write (and the disable) as fenced. Either way it
    // drops the webhook.
    eventually(WAIT, "node-a notices it lost its lease", || async {
        let m = http_client().get(format!("{}/metrics", nodes[0].base)).send().await;
        match m {
            Ok(m) => metric(
                &m.text().await.unwrap_or_default(),
                "webhook_lease_handoffs_total",
                &[("node", "node-a"), ("reason", "lost")],
            )
            .is_some_and(|v| v >= 1.0),
            Err(_) => false,
        }
    })
    .await;
    let after = get(&nodes[1].base, &format!("/v1/deliveries/{delivery}")).await;
    assert_eq!(after["status"], "success", "still what node-b recorded: {after}");
    assert_eq!(after["attemptLog"], d["attemptLog"], "no attempt of node-a's was added");
    let w = get(&nodes[1].base, &format!("/v1/webhooks/{target}")).await;
    assert_ne!(w["state"], "disabled", "node-a's 410 did not disable it: {w}");
    // node-a rejoins: live again, and given its share back.
    let share = [registered / 2, registered - registered / 2].map(|n| n as u64);
    wait_owned(&nodes[1].base, &share).await;
}

#[actix_web::test]
async fn a_rolling_restart_of_every_node_under_load_loses_nothing() {
    let Some(db) = pg::schema().await else { return };
    let names = ["node-a", "node-b", "node-c"];
    let mut nodes = start_process_nodes(&db.url, &names).await;
    let receiver = TestReceiver::with(|_, _| Reply::Delayed(Duration::from_millis(5), 200));
    for i in 0..6 {
        let (s, _) =
            post(&nodes[0].base, "/v1/webhooks", json!({"url": receiver.url, "headers": {"x-hook": i.to_string()}}))
                .await;
        assert_eq!(s, 201);
    }
    wait_owned(&nodes[0].base, &[2, 2, 2]).await;
    let mut published = HashSet::new();
    let mut from = 0;
    for i in 0..names.len() {
        let others: Vec<String> =
            nodes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, n)| n.base.clone()).collect();
        published.extend(publish_spread(&others, from, 20).await);
        from += 20;
        let exit = nodes[i].terminate();
        assert!(exit.success(), "{} drains and exits: {exit:?}", names[i]);
        published.extend(publish_spread(&others, from, 20).await);
        from += 20;
        let port = nodes[i].port;
        nodes[i] = ServerProcess::start(port, &node_env(&db.url, names[i])).await;
    }
    wait_owned(&nodes[0].base, &[2, 2, 2]).await;
    eventually(WAIT, "every accepted event reached all six webhooks", || {
        let c = copies(&receiver.received());
        let all = published.iter().all(|e| (0..6).all(|h| c.contains_key(&(h.to_string(), e.clone()))));
        async move { all }
    })
    .await;
}

#[actix_web::test]
async fn work_nobody_announced_is_found_by_the_owners_poll() {
    let Some(db) = pg::schema().await else { return };
    let nodes = start_nodes(&db.url, &["node-a", "node-b"]).await;
    let receiver = TestReceiver::ok();
    let hook = nodes[0].register(json!({"url": receiver.url})).await;
    let hook_id = hook["id"].as_str().unwrap().to_string();
    wait_owned(&nodes[0].base, &[0, 1]).await;
    // A delivery written behind the nodes' backs: no NOTIFY, no local fan-out (as after a missed
    // notification, or a node that died between its commit and its announcement).
    let (client, conn) =
        tokio_postgres::connect(&pg::url_with_schema(&pg::base_url(), &db.name), tokio_postgres::NoTls).await.unwrap();
    actix_web::rt::spawn(conn);
    let event_id = servio_webhooks::model::new_event_id();
    let delivery = servio_webhooks::model::delivery_id(&event_id, 0);
    let now = servio_webhooks::model::now_ms();
    let body = format!(r#"{{"id":"{event_id}","event":"order.created","data":{{}},"timestamp":"t"}}"#);
    client
        .execute(
            "INSERT INTO events (id, event_type, payload, timestamp, created_at) VALUES ($1, 'order.created', $2, 't', $3)",
            &[&event_id, &body.as_bytes(), &now],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
            &[&delivery, &event_id, &hook_id, &now],
        )
        .await
        .unwrap();
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].event_id(), event_id);
    let d = nodes[1].wait_delivery(&delivery, WAIT, |d| d["status"] == "success").await;
    assert_eq!(d["attempts"], 1);
    for n in nodes {
        n.stop().await;
    }
}
