//! Prometheus metrics: names in one place, the recorder installed once per process, and
//! per-endpoint handles resolved once so the hot path only touches atomics.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
    counter, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_util::MetricKindMask;

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
    /// Counter `{webhook}`: attempts whose start waited for the webhook's rate limit
    /// (`rateLimitPerSecond`): the limit held them back, it did not fail them. Only webhooks
    /// that waited have the series.
    pub const RATE_LIMITED: &str = "webhook_rate_limited_attempts_total";
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
    // ----- retention (part: retention) -----
    /// Counter `{node,kind}`: rows the retention pruner deleted on this node, by `kind`
    /// (`delivery_success`, `delivery_failed`, `attempt`, `event`, `idempotency_key`).
    pub const PRUNED_ROWS: &str = "webhook_pruned_rows_total";
    /// Gauge `{node}`: the database's size in bytes after the last prune cycle (SQLite: page
    /// count × page size of the main file; PostgreSQL: the schema's tables with indexes and TOAST).
    pub const DATABASE_SIZE: &str = "webhook_database_size_bytes";
    /// Gauge `{node}`: when this node's last prune cycle finished, Unix seconds.
    pub const LAST_PRUNE: &str = "webhook_last_prune_timestamp_seconds";
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// How long a series nobody updates (and, for per-webhook series, no running endpoint holds)
/// stays in `/metrics`; `None` keeps every series forever.
static IDLE_TIMEOUT: OnceLock<Option<Duration>> = OnceLock::new();
/// The per-webhook series tracker, when our expiring recorder is the process's recorder.
static TRACKER: OnceLock<Arc<Tracker>> = OnceLock::new();

/// Default of [`set_series_idle_timeout`]: long enough for any scrape interval to see a deleted
/// webhook's last values, short enough that churn does not accumulate.
pub const DEFAULT_SERIES_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Sets how long a per-webhook series stays in `/metrics` once its webhook's endpoint is no longer
/// running on this node (deleted, moved to another node, or idle and hibernated) and the series is
/// not updated (`WEBHOOKS_METRICS_IDLE_TIMEOUT_SECS`; default [`DEFAULT_SERIES_IDLE_TIMEOUT`];
/// `None` or zero keeps every series forever, the behaviour before this setting existed).
/// Histograms not recorded to for that long are dropped too and start again empty.
/// Series without a `webhook` label other than histograms never expire.
///
/// The recorder is per process: call this before the first [`crate::Webhooks::start`]. Returns
/// false when it is too late (the recorder is installed; the setting in force is unchanged).
pub fn set_series_idle_timeout(timeout: Option<Duration>) -> bool {
    IDLE_TIMEOUT.set(timeout.filter(|t| !t.is_zero())).is_ok() && HANDLE.get().is_none()
}

/// The process's Prometheus handle, installing the recorder on first use.
///
/// If the host application already installed a different global recorder, ours cannot be, and
/// `/metrics` stays empty: the metrics then go to the host's recorder instead.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let idle_timeout = *IDLE_TIMEOUT.get_or_init(|| Some(DEFAULT_SERIES_IDLE_TIMEOUT));
            let mut builder = builder();
            if let Some(t) = idle_timeout {
                builder = builder.idle_timeout(MetricKindMask::ALL, Some(t));
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let installed = match idle_timeout {
                None => metrics::set_global_recorder(recorder).is_ok(),
                Some(t) => {
                    let tracker = Tracker::new(recorder, t);
                    let ok = metrics::set_global_recorder(ExpiringRecorder(tracker.clone())).is_ok();
                    if ok {
                        let _ = TRACKER.set(tracker);
                    }
                    ok
                }
            };
            if !installed {
                tracing::warn!("a global metrics recorder is already installed; /metrics will be empty");
            }
            describe();
            // Histograms keep raw samples until upkeep drains them; nobody else runs it for us. The
            // tracker's touch keeps live series from expiring, so it runs well within the timeout.
            let upkeep = handle.clone();
            let every = idle_timeout.map_or(UPKEEP, |t| (t / 4).clamp(Duration::from_millis(10), UPKEEP));
            std::thread::Builder::new()
                .name("webhooks-metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(every);
                        let _one_at_a_time = EXPORT.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(tracker) = TRACKER.get() {
                            tracker.touch();
                        }
                        upkeep.run_upkeep();
                    }
                })
                .ok();
            handle
        })
        .clone()
}

/// Held by every render and upkeep. The exporter (0.18) is not safe to run both at once: an
/// upkeep moves every registered histogram into the rendered set, so one that runs beside a
/// render which is expiring a histogram can put it back after the render removed it from the
/// registry, and it then stays in `/metrics` for good (an empty `_sum`/`_count` pair). The same
/// holds for two renders at once.
static EXPORT: Mutex<()> = Mutex::new(());

/// The Prometheus text exposition of `handle` (what `GET /metrics` serves), with live series
/// refreshed first so that none of them can expire at this render. Renders and the upkeep run
/// one at a time (the exporter is not safe otherwise): a host serving `/metrics` itself should
/// call this rather than `handle.render()`.
pub fn render(handle: &PrometheusHandle) -> String {
    let _one_at_a_time = EXPORT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tracker) = TRACKER.get() {
        tracker.touch();
    }
    handle.render()
}

const UPKEEP: Duration = Duration::from_secs(5);

fn builder() -> PrometheusBuilder {
    let latency = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
    PrometheusBuilder::new()
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
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full(names::LEDGER_COMMIT_DURATION.into()), &latency[..10]))
        .expect("static bucket lists are non-empty")
}

/// Forgets the series of webhooks that are gone, on top of the exporter's idle timeout.
///
/// The exporter alone (`PrometheusBuilder::idle_timeout`) drops any series not updated for the
/// timeout, which would also drop, say, the failure counter of a busy endpoint that has not failed
/// lately, while its endpoint actor keeps incrementing the dropped handle, unseen. This tracker
/// keeps three promises instead:
///
/// - a series without a `webhook` label (event, node, ledger counters and gauges) never expires:
///   it is touched (a zero increment) before every render and every upkeep;
/// - a webhook's counters and gauges are touched the same way while anything holds one of that
///   webhook's handles (its endpoint actor runs on this node), and expire the timeout after the
///   last one is dropped: a deleted webhook leaves `/metrics` by itself;
/// - a histogram handle looks its series up again when it was not recorded to for half the
///   timeout, so it never records into a series the exporter dropped (it starts again empty).
pub(crate) struct Tracker {
    inner: PrometheusRecorder,
    idle_timeout: Duration,
    series: Mutex<Series>,
}

#[derive(Default)]
struct Series {
    /// Counters and gauges without a `webhook` label.
    pinned: HashMap<Key, Touch>,
    /// Per webhook id: the counters and gauges seen with its label, and a token every handle
    /// given out for it holds (more than one strong reference = the webhook is in use).
    webhooks: HashMap<String, Group>,
}

#[derive(Default)]
struct Group {
    alive: Arc<()>,
    series: HashMap<Key, Touch>,
}

enum Touch {
    Counter(Counter),
    Gauge(Gauge),
}

impl Touch {
    fn touch(&self) {
        match self {
            Touch::Counter(c) => c.increment(0),
            Touch::Gauge(g) => g.increment(0.0),
        }
    }
}

impl Tracker {
    pub(crate) fn new(inner: PrometheusRecorder, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self { inner, idle_timeout, series: Mutex::new(Series::default()) })
    }

    /// Marks every series that must not expire as updated, and forgets webhooks nobody holds.
    pub(crate) fn touch(&self) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series.pinned.values().for_each(Touch::touch);
        series.webhooks.retain(|_, g| Arc::strong_count(&g.alive) > 1);
        for group in series.webhooks.values() {
            group.series.values().for_each(Touch::touch);
        }
    }

    /// Remembers a freshly registered counter or gauge; returns the token of its webhook, if any.
    fn remember(&self, key: &Key, touch: Touch) -> Option<Arc<()>> {
        // Updated now, so that a render racing this registration cannot drop what we hand out.
        touch.touch();
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        match webhook_of(key) {
            None => {
                series.pinned.insert(key.clone(), touch);
                None
            }
            Some(id) => {
                let group = series.webhooks.entry(id).or_default();
                group.series.insert(key.clone(), touch);
                Some(group.alive.clone())
            }
        }
    }

    fn token(&self, key: &Key) -> Option<Arc<()>> {
        let id = webhook_of(key)?;
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        Some(series.webhooks.entry(id).or_default().alive.clone())
    }
}

fn webhook_of(key: &Key) -> Option<String> {
    key.labels().find(|l| l.key() == "webhook").map(|l| l.value().to_string())
}

const METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// The process's recorder when series expire: the exporter's, behind a [`Tracker`].
pub(crate) struct ExpiringRecorder(pub(crate) Arc<Tracker>);

/// A counter or gauge handle that keeps its webhook in use while it exists.
struct Held<T> {
    inner: T,
    _alive: Option<Arc<()>>,
}

impl CounterFn for Held<Counter> {
    fn increment(&self, value: u64) {
        self.inner.increment(value);
    }
    fn absolute(&self, value: u64) {
        self.inner.absolute(value);
    }
}

impl GaugeFn for Held<Gauge> {
    fn increment(&self, value: f64) {
        self.inner.increment(value);
    }
    fn decrement(&self, value: f64) {
        self.inner.decrement(value);
    }
    fn set(&self, value: f64) {
        self.inner.set(value);
    }
}

/// A histogram handle that looks its series up again when it may have expired.
struct Resolving {
    tracker: Arc<Tracker>,
    key: Key,
    current: Mutex<(Histogram, Instant)>,
    _alive: Option<Arc<()>>,
}

impl HistogramFn for Resolving {
    fn record(&self, value: f64) {
        let now = Instant::now();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // The exporter drops a series only after a whole timeout without records; half of it
        // without one through this handle means it may be gone soon, so look it up again.
        if now.duration_since(current.1) >= self.tracker.idle_timeout / 2 {
            current.0 = self.tracker.inner.register_histogram(&self.key, &METADATA);
        }
        current.0.record(value);
        current.1 = now;
    }
}

impl Recorder for ExpiringRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let inner = self.0.inner.register_counter(key, metadata);
        let alive = self.0.remember(key, Touch::Counter(inner.clone()));
        Counter::from_arc(Arc::new(Held { inner, _alive: alive }))
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        let inner = self.0.inner.register_gauge(key, metadata);
        let alive = self.0.remember(key, Touch::Gauge(inner.clone()));
        Gauge::from_arc(Arc::new(Held { inner, _alive: alive }))
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        let inner = self.0.inner.register_histogram(key, metadata);
        Histogram::from_arc(Arc::new(Resolving {
            tracker: self.0.clone(),
            key: key.clone(),
            current: Mutex::new((inner, Instant::now())),
            _alive: self.0.token(key),
        }))
    }
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
    describe_counter!(names::RATE_LIMITED, "Attempts whose start waited for the webhook's rate limit");
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
    describe_counter!(names::PRUNED_ROWS, "Rows deleted by the retention pruner, by kind");
    describe_gauge!(names::DATABASE_SIZE, metrics::Unit::Bytes, "Database size after the last prune cycle");
    describe_gauge!(names::LAST_PRUNE, metrics::Unit::Seconds, "When the last prune cycle finished, Unix time");
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
    fn pending(&self) -> Gauge {
        gauge!(names::PENDING, self.labels(None))
    }

    /// Counts an attempt that started after waiting for the rate limit; off the hot path of
    /// unlimited webhooks, so resolved per call (and only webhooks that waited get the series).
    pub(crate) fn rate_limited(&self) {
        counter!(names::RATE_LIMITED, self.labels(None)).increment(1);
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
            label,
        }
    }
}

/// The one `webhook_pending_deliveries` series of a subsystem whose webhook label is off, resolved
/// once: every webhook's [`PendingGauge`] holds a clone of the handle rather than registering the
/// series again (which cost a fleet of idle webhooks about 70 bytes each).
#[derive(Default)]
pub(crate) struct PendingSeries(OnceLock<Gauge>);

/// `webhook_pending_deliveries` for one webhook on the node that owns it: the webhook's own
/// series, or with the label switched off its share of the node's single series. Every change
/// goes through here and is kept beside the gauge, so that letting go of the webhook takes away
/// exactly what it added (setting the shared series would overwrite the other webhooks' counts).
/// Clones share the count (the dispatcher's entry, the endpoint actor, the ledger).
#[derive(Clone)]
pub(crate) struct PendingGauge {
    gauge: Gauge,
    labelled: bool,
    /// What this webhook contributes; [`RELEASED`] once let go (later changes are dropped).
    own: Arc<AtomicI64>,
}

const RELEASED: i64 = i64::MIN;

impl PendingGauge {
    /// The gauge of a webhook this node starts owning, with `pending` deliveries in the store;
    /// `series`: the subsystem's unlabelled series, used when the label is off.
    pub(crate) fn claimed(label: &WebhookLabel, pending: u64, series: &PendingSeries) -> Self {
        let labelled = label.0.is_some();
        let gauge = if labelled { label.pending() } else { series.0.get_or_init(|| label.pending()).clone() };
        if labelled {
            gauge.set(pending as f64);
        } else {
            gauge.increment(pending as f64);
        }
        Self { gauge, labelled, own: Arc::new(AtomicI64::new(pending as i64)) }
    }

    /// `n` more pending deliveries (fewer when negative).
    pub(crate) fn add(&self, n: i64) {
        let updated = self
            .own
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| (v != RELEASED).then(|| v.saturating_add(n)));
        if updated.is_ok() {
            self.gauge.increment(n as f64);
        }
    }

    /// The node no longer owns the webhook: its count leaves the series (the new owner reports it).
    pub(crate) fn release(&self) {
        let own = self.own.swap(RELEASED, Ordering::Relaxed);
        if own == RELEASED {
            return;
        }
        if self.labelled {
            self.gauge.set(0.0);
        } else {
            self.gauge.decrement(own as f64);
        }
    }
}

impl std::fmt::Debug for PendingGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingGauge").field("own", &self.own).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(300);

    /// A private recorder like the global one, with a short idle timeout.
    fn recorder() -> (ExpiringRecorder, PrometheusHandle) {
        let inner = builder().idle_timeout(MetricKindMask::ALL, Some(T)).build_recorder();
        let handle = inner.handle();
        (ExpiringRecorder(Tracker::new(inner, T)), handle)
    }

    fn render(rec: &ExpiringRecorder, handle: &PrometheusHandle) -> String {
        rec.0.touch();
        handle.render()
    }

    fn value(text: &str, prefix: &str) -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok())
    }

    /// With the `webhook` label off, all webhooks share one pending series: claiming adds a
    /// webhook's count, letting go takes exactly that count away, and a released handle (an actor
    /// still finishing after the hand-off) changes nothing.
    #[test]
    fn the_unlabelled_pending_gauge_is_the_sum_of_the_owned_webhooks() {
        let (rec, handle) = recorder();
        metrics::with_local_recorder(&rec, || {
            let total = || value(&render(&rec, &handle), "webhook_pending_deliveries ");
            let shared = PendingSeries::default();
            let a = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_a"), false), 5, &shared);
            let b = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_b"), false), 3, &shared);
            assert_eq!(total(), Some(8.0), "a claim adds, it does not overwrite");
            let c = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_c"), false), 0, &shared);
            assert_eq!(total(), Some(8.0), "a new webhook with nothing pending leaves the others' counts");
            a.add(-2);
            b.add(4);
            assert_eq!(total(), Some(10.0));
            let b_in_actor = b.clone();
            b.release();
            assert_eq!(total(), Some(3.0), "letting go of b takes away its 7");
            b_in_actor.add(-1);
            b.release();
            assert_eq!(total(), Some(3.0), "a released handle changes nothing");
            a.release();
            c.release();
            assert_eq!(total(), Some(0.0));
        });
    }

    /// With the label on, each webhook has its own series, set on claim and zeroed on release.
    #[test]
    fn the_labelled_pending_gauge_is_the_webhook_s_own_count() {
        let (rec, handle) = recorder();
        metrics::with_local_recorder(&rec, || {
            let series =
                |id: &str| value(&render(&rec, &handle), &format!("webhook_pending_deliveries{{webhook=\"{id}\"}}"));
            let shared = PendingSeries::default();
            let a = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_a"), true), 5, &shared);
            let b = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_b"), true), 2, &shared);
            a.add(-1);
            assert_eq!((series("wh_a"), series("wh_b")), (Some(4.0), Some(2.0)));
            a.release();
            a.add(3);
            assert_eq!((series("wh_a"), series("wh_b")), (Some(0.0), Some(2.0)));
            // Claimed again (a new tenure): the store's count, whatever the series showed.
            let _a = PendingGauge::claimed(&WebhookLabel::new(&Arc::from("wh_a"), true), 7, &shared);
            assert_eq!(series("wh_a"), Some(7.0));
            b.release();
        });
    }

    /// 300 webhooks come and go next to one that stays: theirs leave `/metrics` after the timeout,
    /// the live one's and the global series stay, and nothing recorded through a held handle is
    /// lost (no handle is left pointing at a dropped series).
    #[test]
    fn gone_webhooks_leave_metrics_and_live_ones_stay() {
        let (rec, handle) = recorder();
        metrics::with_local_recorder(&rec, || {
            let published = counter!(names::EVENTS_PUBLISHED, "event" => "order.created");
            published.increment(1);
            let live = EndpointMetrics::new(WebhookLabel::new(&Arc::from("wh_live"), true));
            live.delivered.increment(1);
            live.failed.increment(0);
            live.attempt_duration.record(0.1);
            for i in 0..300 {
                let m = EndpointMetrics::new(WebhookLabel::new(&Arc::from(format!("wh_gone_{i}")), true));
                m.attempts_success.increment(1);
                m.delivered.increment(1);
                m.attempt_duration.record(0.2);
                m.delivery_latency.record(0.3);
                m.attempts_per_delivery.record(1.0);
                PendingGauge::claimed(&m.label, 0, &PendingSeries::default());
                m.label.error("timeout");
            }
            let before = render(&rec, &handle);
            assert!(before.contains("wh_gone_299"), "the gone webhooks were recorded");
            std::thread::sleep(T + T / 2);
            let after = render(&rec, &handle);
            println!(
                "exposition with 300 gone webhooks: {} bytes; after the idle timeout: {} bytes",
                before.len(),
                after.len()
            );
            assert!(before.len() > 300 * 2000, "{} bytes before", before.len());
            assert!(!after.contains("wh_gone_"), "gone webhooks' series remain");
            assert!(after.len() < 8 * 1024, "{} bytes after: {after}", after.len());
            assert_eq!(value(&after, "webhook_events_published_total{event=\"order.created\"}"), Some(1.0));
            let delivered = "webhook_deliveries_total{webhook=\"wh_live\",status=\"success\"}";
            assert_eq!(value(&after, delivered), Some(1.0), "{after}");
            assert_eq!(value(&after, "webhook_deliveries_total{webhook=\"wh_live\",status=\"failed\"}"), Some(0.0));

            // Held handles keep writing to live series, however long they were quiet.
            live.delivered.increment(1);
            live.failed.increment(1);
            published.increment(1);
            live.attempt_duration.record(0.4);
            let later = render(&rec, &handle);
            assert_eq!(value(&later, delivered), Some(2.0), "{later}");
            assert_eq!(value(&later, "webhook_deliveries_total{webhook=\"wh_live\",status=\"failed\"}"), Some(1.0));
            assert_eq!(value(&later, "webhook_events_published_total{event=\"order.created\"}"), Some(2.0));
            // The histogram was quiet longer than the timeout: it starts again, with this sample.
            assert_eq!(
                value(&later, "webhook_attempt_duration_seconds_count{webhook=\"wh_live\"}"),
                Some(1.0),
                "{later}"
            );

            // Once its endpoint stops, the live webhook's series go too.
            drop(live);
            render(&rec, &handle);
            std::thread::sleep(T + T / 2);
            let last = render(&rec, &handle);
            assert!(!last.contains("wh_live"), "{last}");
            assert!(last.contains("webhook_events_published_total"));
        });
    }

    /// A counter registered per call (errors, restarts) of a webhook whose endpoint runs is kept.
    #[test]
    fn per_call_series_of_a_running_endpoint_are_kept() {
        let (rec, handle) = recorder();
        metrics::with_local_recorder(&rec, || {
            let running = EndpointMetrics::new(WebhookLabel::new(&Arc::from("wh_run"), true));
            running.label.error("timeout");
            render(&rec, &handle);
            std::thread::sleep(T + T / 2);
            let text = render(&rec, &handle);
            assert_eq!(
                value(&text, "webhook_errors_total{webhook=\"wh_run\",error_type=\"timeout\"}"),
                Some(1.0),
                "{text}"
            );
            running.label.error("timeout");
            let text = render(&rec, &handle);
            assert_eq!(
                value(&text, "webhook_errors_total{webhook=\"wh_run\",error_type=\"timeout\"}"),
                Some(2.0),
                "{text}"
            );
        });
    }
}
