//! What an embedding host hears through `tracing`: start and stop, a breaker pausing and resuming
//! an endpoint, an endpoint disabled, and the store refusing writes and taking them again, each
//! once, at a fitting level, with the node and webhook named.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::json;
use servio_webhooks::Webhooks;
use servio_webhooks::store::{StoreOptions, open};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::{Layer, Registry};

use crate::helpers::*;
use crate::storage_faults::{FAIL, FaultyStore, NORMAL};

const WAIT: Duration = Duration::from_secs(20);

/// One event as a host's subscriber sees it.
#[derive(Debug, Clone)]
struct Line {
    level: Level,
    message: String,
    fields: Vec<(String, String)>,
}

impl Line {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push((field.name().to_string(), value.to_string()));
        }
    }
}

/// A subscriber layer keeping every event of this crate at INFO or above.
struct Capture(Arc<Mutex<Vec<Line>>>);

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() > Level::INFO || !meta.target().starts_with("servio_webhooks") {
            return;
        }
        let mut line = Line { level: *meta.level(), message: String::new(), fields: Vec::new() };
        event.record(&mut line);
        self.0.lock().unwrap().push(line);
    }
}

/// The process-wide capture (the host's global subscriber: the subsystem's actors run on threads
/// of their own), read per node.
fn lines_of(node: &str) -> Vec<Line> {
    static LINES: OnceLock<Arc<Mutex<Vec<Line>>>> = OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        tracing::subscriber::set_global_default(Registry::default().with(Capture(lines.clone())))
            .expect("no other global subscriber in the test binary");
        lines
    });
    lines.lock().unwrap().iter().filter(|l| l.field("node") == Some(node)).cloned().collect()
}

async fn heard(node: &str, level: Level, message: &str) -> Line {
    wait_until(WAIT, &format!("{level} `{message}` logged"), || {
        let found = lines_of(node).into_iter().find(|l| l.level == level && l.message.contains(message));
        async move { found }
    })
    .await
}

#[actix_web::test]
async fn an_embedded_host_hears_what_the_subsystem_does() {
    let node = format!("log-{}", rand::random::<u32>());
    lines_of(&node);
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut s = settings(&dir);
    s.node_id = Some(node.clone());
    s.breaker.failure_threshold = 2;
    s.breaker.cooldown = Duration::from_millis(100);
    s.breaker.max_cooldown = Duration::from_millis(200);
    s.write_stall_timeout = Duration::from_secs(5);
    let (store, mode) = FaultyStore::wrap(open(&s.database_url, &StoreOptions::default()).await.unwrap());
    let app = TestApp::serve(Webhooks::start_with_store(s, store).await.unwrap(), dir);
    heard(&node, Level::INFO, "webhook subsystem started").await;

    // Two failures pause the endpoint (once), a probe that works resumes it.
    let flaky = TestReceiver::with(|i, _| Reply::Status(if i < 4 { 503 } else { 200 }));
    let id = app.register(json!({"url": flaky.url, "retryConfig": fast_retry(10, 20)})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.publish("order.created", json!({"n": 1})).await;
    let delivery = r["deliveries"][0]["id"].as_str().unwrap().to_string();
    app.wait_delivery(&delivery, WAIT, |d| d["status"] == "success").await;
    let paused = heard(&node, Level::WARN, "endpoint paused").await;
    assert_eq!(paused.field("webhook"), Some(id.as_str()));
    let resumed = heard(&node, Level::INFO, "endpoint resumed").await;
    assert_eq!(resumed.field("webhook"), Some(id.as_str()));
    let pauses = lines_of(&node).iter().filter(|l| l.message.contains("endpoint paused")).count();
    assert_eq!(pauses, 1, "one line per pause, not per failed probe");

    // 410 Gone disables the endpoint.
    let gone = TestReceiver::with(|_, _| Reply::Status(410));
    let gone_id = app.register(json!({"url": gone.url})).await["id"].as_str().unwrap().to_string();
    app.publish("order.created", json!({"n": 2})).await;
    let disabled = heard(&node, Level::WARN, "disabling endpoint").await;
    assert_eq!(disabled.field("webhook"), Some(gone_id.as_str()));
    assert!(disabled.field("reason").unwrap().contains("410"), "{disabled:?}");

    // The store refusing writes: one ERROR when it starts, one INFO when it ends.
    mode.store(FAIL, Ordering::SeqCst);
    let _ = app.post("/v1/events", json!({"event": "order.created", "data": {"n": 3}})).await;
    for n in 4..10 {
        let (status, _) = app.post("/v1/events", json!({"event": "order.created", "data": {"n": n}})).await;
        assert_eq!(status, 503);
    }
    heard(&node, Level::ERROR, "the store refuses writes").await;
    mode.store(NORMAL, Ordering::SeqCst);
    heard(&node, Level::INFO, "the store takes writes again").await;
    let refusals = lines_of(&node).iter().filter(|l| l.message.contains("the store refuses writes")).count();
    assert_eq!(refusals, 1, "one line per outage");

    app.stop().await;
    heard(&node, Level::INFO, "webhook subsystem stopped").await;
}
