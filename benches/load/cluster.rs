//! The several-nodes scenario: `k` real `servio-webhooks serve` processes on one PostgreSQL schema,
//! webhooks spread over them by their leases, events published over REST to all of them, against
//! the same receiver and ceiling as the single-node scenarios. Reports throughput, CPU per
//! delivery of each node process, and what PostgreSQL spent (CPU, WAL, commits, rows).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::harness::{self, CONCURRENCY, Run, ceiling, p50_p99, rest_publish, ticks};
use super::pg::{self, PgSchema};
use super::receiver::{Receiver, now_ns, wait_until};

/// One node process.
struct Node {
    child: Child,
    addr: SocketAddr,
}

impl Node {
    fn start(url: &str, name: &str) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(env!("CARGO_BIN_EXE_servio-webhooks"))
            .arg("serve")
            .env("WEBHOOKS_BIND", format!("127.0.0.1:{port}"))
            .env("WEBHOOKS_DATABASE_URL", url)
            .env("WEBHOOKS_NODE_ID", name)
            .env("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")
            .env("WEBHOOKS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the servio-webhooks binary starts");
        Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) }
    }

    /// CPU seconds the process has used.
    fn cpu_secs(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|s| ticks(&s))
            .map_or(0.0, |t| t.1)
    }

    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("load-gen").enable_all().build().unwrap()
}

async fn get_json(http: &reqwest::Client, url: String) -> Option<Value> {
    let resp = http.get(url).send().await.ok()?;
    serde_json::from_str(&resp.text().await.ok()?).ok()
}

/// Starts the nodes, registers `fanout` webhooks and waits until each node owns its share.
async fn prepare(nodes: &[Node], recv: &Receiver, fanout: usize, per_endpoint: usize) {
    let http = reqwest::Client::new();
    for n in nodes {
        let up = Instant::now();
        while get_json(&http, format!("http://{}/healthz", n.addr)).await.is_none() {
            assert!(up.elapsed() < Duration::from_secs(60), "node did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for i in 0..fanout {
        let body = json!({"url": recv.url(&format!("/ok/{i}")), "maxInFlight": per_endpoint});
        let resp = http
            .post(format!("http://{}/v1/webhooks", nodes[0].addr))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }
    let k = nodes.len();
    let settled = Instant::now();
    loop {
        let v = get_json(&http, format!("http://{}/v1/nodes", nodes[0].addr)).await.unwrap_or_default();
        let owned: Vec<u64> = v["data"]
            .as_array()
            .map(|a| a.iter().filter(|n| n["live"] == true).map(|n| n["ownedWebhooks"].as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        let balanced = owned.len() == k
            && owned.iter().sum::<u64>() == fanout as u64
            && owned.iter().max().unwrap_or(&0) - owned.iter().min().unwrap_or(&0) <= 1;
        if balanced {
            return;
        }
        assert!(settled.elapsed() < Duration::from_secs(60), "ownership did not settle: {owned:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `events` × `fanout` over REST spread across the nodes and waits for every delivery.
fn publish_and_wait(
    rt: &tokio::runtime::Runtime,
    recv: &Receiver,
    addrs: &[SocketAddr],
    events: u64,
    fanout: u32,
) -> Run {
    recv.stats.reset();
    let permits = harness::flow_control(recv);
    let expected = events * fanout as u64;
    let t0 = now_ns();
    rt.block_on(async {
        rest_publish(rt, addrs.to_vec(), "order.created", events, fanout, Some(permits)).await.expect("publishers");
        assert!(wait_until(Duration::from_secs(1800), || recv.stats.ok.load(Ordering::SeqCst) >= expected).await);
    });
    let t1 = recv.stats.last_ns.load(Ordering::SeqCst);
    *recv.stats.permits.lock().unwrap() = None;
    let (p50_ms, p99_ms) = p50_p99(recv.stats.latencies());
    Run { deliveries: expected, secs: (t1 - t0) as f64 / 1e9, sender_cpu: 0.0, p50_ms, p99_ms }
}

/// One run of `k` nodes: throughput, node CPU per delivery (each, and summed), PostgreSQL's cost.
fn run(recv: &Receiver, k: usize, fanout: usize, events: u64) -> (Run, Vec<f64>, Value) {
    let schema = PgSchema::create();
    let nodes: Vec<Node> = (0..k).map(|i| Node::start(&schema.url, &format!("node-{i}"))).collect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let rt = runtime();
    let per_endpoint = CONCURRENCY.div_ceil(fanout);
    rt.block_on(prepare(&nodes, recv, fanout, per_endpoint));
    publish_and_wait(&rt, recv, &addrs, (events / 10).max(10), fanout as u32);
    let cpu0: Vec<f64> = nodes.iter().map(Node::cpu_secs).collect();
    let pg0 = pg::sample();
    let mut run = publish_and_wait(&rt, recv, &addrs, events, fanout as u32);
    let cpu1: Vec<f64> = nodes.iter().map(Node::cpu_secs).collect();
    std::thread::sleep(Duration::from_secs(2)); // the statistics views lag
    let cost = pg::cost(&pg0, &pg::sample(), run.deliveries);
    let per_node: Vec<f64> = cpu0.iter().zip(&cpu1).map(|(a, b)| (b - a) * 1e6 / run.deliveries as f64).collect();
    run.sender_cpu = (cpu1.iter().sum::<f64>() - cpu0.iter().sum::<f64>()).max(0.0);
    rt.shutdown_background();
    for n in nodes {
        n.stop();
    }
    (run, per_node, cost)
}

/// The scenario: `nodes` processes, fan-out `fanout`, `deliveries` measured, alternating with
/// the ceiling for `rounds` rounds.
pub fn cluster(nodes: usize, fanout: usize, deliveries: u64, rounds: usize) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let recv = Receiver::start(2);
    let events = (deliveries / fanout as u64).max(1);
    let mut ceilings = Vec::new();
    let mut runs = Vec::new();
    let mut per_node = Vec::new();
    let mut costs = Vec::new();
    for _ in 0..rounds.max(1) {
        ceilings.push(ceiling(&recv, deliveries, CONCURRENCY));
        let (r, n, c) = run(&recv, nodes, fanout, events);
        runs.push(r);
        per_node.push(n);
        costs.push(c);
    }
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut rates: Vec<f64> = runs.iter().map(Run::per_sec).collect();
    let mut ceil_rates: Vec<f64> = ceilings.iter().map(Run::per_sec).collect();
    let mut node_cpu: Vec<f64> = runs.iter().map(Run::cpu_us).collect();
    let mut ceil_cpu: Vec<f64> = ceilings.iter().map(Run::cpu_us).collect();
    let ratios: Vec<f64> = runs.iter().zip(&ceilings).map(|(r, c)| round(r.per_sec() / c.per_sec(), 2)).collect();
    let mut p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
    let (rate, ceil) = (mid(&mut rates), mid(&mut ceil_rates));
    json!({
        "scenario": "cluster", "nodes": nodes, "fanout": fanout, "deliveries": events * fanout as u64,
        "rounds": runs.len(),
        "per_sec": round(rate, 0), "ceiling_per_sec": round(ceil, 0), "ratio": round(rate / ceil, 3),
        "round_ratios": ratios,
        "nodes_cpu_us": round(mid(&mut node_cpu), 1), "ceiling_cpu_us": round(mid(&mut ceil_cpu), 1),
        "per_node_cpu_us": per_node.last().map(|v| v.iter().map(|x| round(*x, 1)).collect::<Vec<_>>()),
        "p99_ms": round(mid(&mut p99), 1),
        "pg": pg::mean_cost(&costs),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}
