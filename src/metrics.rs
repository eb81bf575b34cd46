//! Prometheus metrics: names in one place, the recorder installed once per process, and
//! per-endpoint handles resolved once so the hot path only touches atomics.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Metric names, the seed's CloudWatch metrics in Prometheus form (see docs/architecture.md).
pub mod names {
    /// Counter `{event}`: events accepted by publish.
    pub const EVENTS_PUBLISHED: &str = "webhook_events_published_total";
    /// Counter `{webhook,status}`: deliveries finished as `success` or `failed`.
    pub const DELIVERIES: &str = "webhook_deliveries_total";
    /// Counter `{webhook,result}`: attempts, `success` or `failure`.
    pub const ATTEMPTS: &str = "webhook_attempts_total";
    /// Counter `{webhook,error_type}`: failed attempts by cause.
    pub const ERRORS: &str = "webhook_errors_total";
    /// Histogram: attempts a finished delivery took.
    pub const ATTEMPTS_PER_DELIVERY: &str = "webhook_attempts_per_delivery";
    /// Histogram: one attempt's duration, seconds.
    pub const ATTEMPT_DURATION: &str = "webhook_attempt_duration_seconds";
    /// Histogram: publish to successful delivery, seconds.
    pub const DELIVERY_LATENCY: &str = "webhook_delivery_latency_seconds";
    /// Gauge `{webhook}`: deliveries not yet finished.
    pub const PENDING: &str = "webhook_pending_deliveries";
    /// Counter `{webhook}`: supervised restarts of an endpoint actor.
    pub const ENDPOINT_RESTARTS: &str = "webhook_endpoint_restarts_total";
    /// Counter `{webhook,reason}`: endpoints disabled (410 Gone, failing too long).
    pub const ENDPOINTS_DISABLED: &str = "webhook_endpoints_disabled_total";
    /// Histogram: operations per ledger group commit.
    pub const LEDGER_BATCH_SIZE: &str = "webhook_ledger_batch_size";
    /// Histogram: ledger commit duration, seconds.
    pub const LEDGER_COMMIT_DURATION: &str = "webhook_ledger_commit_seconds";
    /// Counter: ledger commits that failed (and were retried).
    pub const LEDGER_COMMIT_ERRORS: &str = "webhook_ledger_commit_errors_total";
    /// Gauge `{node}`: operations waiting for the next commit (bounded: past
    /// `max_pending_writes` publishes are refused).
    pub const LEDGER_PENDING: &str = "webhook_ledger_pending_operations";
    /// Counter `{node}`: writes the store refused because the lease they were made under had
    /// passed to another node (fencing).
    pub const FENCED_WRITES: &str = "webhook_fenced_writes_total";
    /// Gauge `{node}`: webhooks whose lease this node holds.
    pub const OWNED_ENDPOINTS: &str = "webhook_owned_endpoints";
    /// Counter `{node,reason}`: leases gained (`claimed`), given up after draining (`released`),
    /// or lost to another node or to expiry (`lost`).
    pub const LEASE_HANDOFFS: &str = "webhook_lease_handoffs_total";
    /// Gauge `{node}`: age of the oldest delivery due but not yet sent among this node's webhooks,
    /// seconds (how far behind the cluster is).
    pub const OLDEST_DUE: &str = "webhook_oldest_due_seconds";
    /// Gauge `{node}`: live nodes this node sees (itself included).
    pub const CLUSTER_NODES: &str = "webhook_cluster_nodes";
    /// Counter `{node}`: heartbeats that failed (the store did not answer in time).
    pub const HEARTBEAT_FAILURES: &str = "webhook_heartbeat_failures_total";
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use.
///
/// If the host application already installed a different global recorder, ours cannot be, and
/// `/metrics` stays empty: the metrics then go to the host's recorder instead.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(names::ATTEMPT_DURATION.into()), &latency[..12])
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::DELIVERY_LATENCY.into()), &latency))
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::ATTEMPTS_PER_DELIVERY.into()),
                        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 11.0, 16.0, 21.0, 51.0, 101.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::LEDGER_BATCH_SIZE.into()),
                        &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(names::LEDGER_COMMIT_DURATION.into()), &latency[..10])
                })
                .expect("static bucket lists are non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a global metrics recorder is already installed; /metrics will be empty");
            }
            describe();
            // Histograms keep raw samples until upkeep drains them; nobody else runs it for us.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("webhooks-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(names::EVENTS_PUBLISHED, "Events accepted by publish");
    describe_counter!(names::DELIVERIES, "Deliveries finished, by final status");
    describe_counter!(names::ATTEMPTS, "Delivery attempts, by result");
    describe_counter!(names::ERRORS, "Failed attempts, by cause");
    describe_histogram!(names::ATTEMPTS_PER_DELIVERY, "Attempts a finished delivery took");
    describe_histogram!(names::ATTEMPT_DURATION, metrics::Unit::Seconds, "Duration of one attempt");
    describe_histogram!(names::DELIVERY_LATENCY, metrics::Unit::Seconds, "Publish to successful delivery");
    describe_gauge!(names::PENDING, "Deliveries not yet finished");
    describe_counter!(names::ENDPOINT_RESTARTS, "Supervised restarts of endpoint actors");
    describe_counter!(names::ENDPOINTS_DISABLED, "Endpoints disabled");
    describe_histogram!(names::LEDGER_BATCH_SIZE, "Operations per ledger group commit");
    describe_histogram!(names::LEDGER_COMMIT_DURATION, metrics::Unit::Seconds, "Ledger commit duration");
    describe_counter!(names::LEDGER_COMMIT_ERRORS, "Failed ledger commits");
    describe_gauge!(names::LEDGER_PENDING, "Operations waiting for the next ledger commit");
    describe_counter!(names::FENCED_WRITES, "Writes refused because their lease had moved to another node");
    describe_gauge!(names::OWNED_ENDPOINTS, "Webhooks whose lease this node holds");
    describe_counter!(names::LEASE_HANDOFFS, "Leases claimed, released after draining, or lost");
    describe_gauge!(
        names::OLDEST_DUE,
        metrics::Unit::Seconds,
        "Age of the oldest due, unsent delivery of this node's webhooks"
    );
    describe_gauge!(names::CLUSTER_NODES, "Live nodes this node sees");
    describe_counter!(names::HEARTBEAT_FAILURES, "Heartbeats that failed");
}

/// The label set for one webhook: `webhook=<id>`, or nothing when the label is switched off.
#[derive(Debug, Clone)]
pub(crate) struct WebhookLabel(Option<Arc<str>>);

impl WebhookLabel {
    pub(crate) fn new(webhook_id: &Arc<str>, enabled: bool) -> Self {
        Self(enabled.then(|| webhook_id.clone()))
    }

    fn labels(&self, extra: Option<(&'static str, &'static str)>) -> Vec<metrics::Label> {
        let mut v = Vec::with_capacity(2);
        if let Some(id) = &self.0 {
            v.push(metrics::Label::new("webhook", id.to_string()));
        }
        if let Some((k, val)) = extra {
            v.push(metrics::Label::new(k, val));
        }
        v
    }

    /// `webhook_errors_total{webhook, error_type}`; off the hot path, so resolved per call.
    pub(crate) fn error(&self, error_type: &'static str) {
        counter!(names::ERRORS, self.labels(Some(("error_type", error_type)))).increment(1);
    }

    /// The pending gauge of this webhook.
    pub(crate) fn pending(&self) -> Gauge {
        gauge!(names::PENDING, self.labels(None))
    }

    /// Counts a supervised restart.
    pub(crate) fn restarted(&self) {
        counter!(names::ENDPOINT_RESTARTS, self.labels(None)).increment(1);
    }

    /// Counts a disable.
    pub(crate) fn disabled(&self, reason: &'static str) {
        counter!(names::ENDPOINTS_DISABLED, self.labels(Some(("reason", reason)))).increment(1);
    }

    /// Counts `n` deliveries failed in bulk (disable).
    pub(crate) fn deliveries_failed(&self, n: u64) {
        counter!(names::DELIVERIES, self.labels(Some(("status", "failed")))).increment(n);
    }
}

/// Per-endpoint metric handles, resolved once when the endpoint actor starts.
pub(crate) struct EndpointMetrics {
    pub(crate) label: WebhookLabel,
    pub(crate) attempts_success: Counter,
    pub(crate) attempts_failure: Counter,
    pub(crate) delivered: Counter,
    pub(crate) failed: Counter,
    pub(crate) attempt_duration: Histogram,
    pub(crate) delivery_latency: Histogram,
    pub(crate) attempts_per_delivery: Histogram,
    pub(crate) pending: Gauge,
}

impl EndpointMetrics {
    pub(crate) fn new(label: WebhookLabel) -> Self {
        Self {
            attempts_success: counter!(names::ATTEMPTS, label.labels(Some(("result", "success")))),
            attempts_failure: counter!(names::ATTEMPTS, label.labels(Some(("result", "failure")))),
            delivered: counter!(names::DELIVERIES, label.labels(Some(("status", "success")))),
            failed: counter!(names::DELIVERIES, label.labels(Some(("status", "failed")))),
            attempt_duration: histogram!(names::ATTEMPT_DURATION, label.labels(None)),
            delivery_latency: histogram!(names::DELIVERY_LATENCY, label.labels(None)),
            attempts_per_delivery: histogram!(names::ATTEMPTS_PER_DELIVERY, label.labels(None)),
            pending: label.pending(),
            label,
        }
    }
}
