//! Runtime settings with documented defaults, and the seed's `WEBHOOK_URLS` environment registry.
//!
//! The library takes a [`Settings`] value (tests shrink its delays to milliseconds). Hosts and the
//! binary fill it from the `WEBHOOKS_*` environment variables with one parser, [`vars`]:
//! [`Settings::from_env`] for an embedded subsystem, and `serve`, whose flags mirror the same
//! variables, so every variable means the same in both.

pub mod vars;

use std::time::Duration;

use crate::model::{TargetPolicy, WebhookSpec};
use crate::retry::{Jitter, RetryConfig};

/// Everything the subsystem needs to run; `Settings::default()` is the documented default.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `sqlite://path` (default `sqlite://webhooks.db`, one node), or `postgres://…` (several
    /// nodes sharing one database).
    pub database_url: String,
    /// Bearer token for `/v1` (1 to 4096 visible ASCII characters). Without one, `/v1` answers only
    /// if [`Settings::open_admin_api`] says so.
    pub admin_token: Option<String>,
    /// Answer `/v1` without a bearer token (`WEBHOOKS_OPEN_ADMIN_API`): a deliberate choice for a
    /// server reachable only from loopback (still guarded against cross-site use and DNS
    /// rebinding). Default `false`: an embedded subsystem without a token refuses `/v1`, so a host
    /// bound on a public address never exposes it by accident. `serve` opens it when it binds to
    /// loopback only and no token is set.
    pub open_admin_api: bool,
    /// Without an admin token, the `Host` names (`WEBHOOKS_ALLOWED_HOSTS`) besides loopback under
    /// which `/v1` answers: `name` (any port) or `name:port`, e.g. `webhooks.internal:8080`.
    /// `localhost`, `127.0.0.1`, `[::1]` and the listener's own address, with the port the request
    /// came in on (or none), are always allowed; other names get 403 `host_not_allowed`, which stops
    /// DNS rebinding. Not checked when a token is set.
    pub allowed_hosts: Vec<String>,
    /// Allow targets on loopback/private networks (development and tests).
    pub allow_private_targets: bool,
    /// Non-public address blocks deliveries may go to even when private targets are not allowed
    /// (`WEBHOOKS_ALLOWED_PRIVATE_CIDRS`): deliberate internal targets, e.g. `10.20.0.0/16`,
    /// `fd00:1::/64` or a single address. Checked at registration and at connect time.
    pub allowed_private_cidrs: Vec<String>,
    /// Extra event types, `name` or `name:description`, added to the seed's five.
    pub event_types: Vec<String>,
    /// Largest accepted `POST /v1/events` body, bytes.
    pub max_payload_bytes: usize,
    /// Attempts, timeouts and windows.
    pub delivery: DeliverySettings,
    /// When a failing endpoint is paused and when it is disabled.
    pub breaker: BreakerSettings,
    /// Label every delivery metric with the webhook id (switch off for large fleets).
    pub metrics_webhook_label: bool,
    /// SQLite: fsync each commit (`FULL`); `false` = `NORMAL` (safe against crashes, not power loss).
    pub sqlite_full_sync: bool,
    /// Least time between the starts of two ledger commits. Zero commits as soon as the previous
    /// commit returns; a few milliseconds let each commit carry more (fewer page rewrites and
    /// fsyncs per delivery) at the price of that much publish latency. Under heavy load (commits of
    /// 64 operations or more) the spacing grows in proportion to the last commit, up to 4 × this,
    /// while no publish waits for the next commit (a waiting publish gets this interval).
    pub commit_interval: Duration,
    /// Arbiters (threads) the endpoint actors are spread over; default one per core.
    pub arbiters: usize,
    /// How long shutdown waits for in-flight attempts before handing them back to the store.
    pub shutdown_grace: Duration,
    /// How long a webhook's metric series stay in `/metrics` after its endpoint stopped running on
    /// this node (deleted, moved, or idle) without updates; `None` keeps every series. The
    /// recorder is one per process: the first subsystem started in a process sets it.
    pub metrics_idle_timeout: Option<Duration>,
    /// A commit running this long counts as a stalled store: publishes are refused (503) and
    /// endpoints start no attempt until it returns.
    pub write_stall_timeout: Duration,
    /// Most operations (publishes, attempt outcomes) that may wait for the store; past it,
    /// publishes are refused (503) and endpoints start no attempt.
    pub max_pending_writes: usize,
    /// Webhooks registered at start (from the seed's `WEBHOOK_URLS`), as `(id, spec)`.
    pub seed_webhooks: Vec<(String, WebhookSpec)>,
    /// This node's id in the cluster (`WEBHOOKS_NODE_ID`): shown in logs, metrics, `GET /v1/nodes`
    /// and on each webhook it owns. Generated (`node-` and 8 hex digits) when `None`. Ids must be
    /// unique among nodes sharing a database; a node restarted with the same id takes its leases
    /// back at once instead of waiting for them to run out.
    pub node_id: Option<String>,
    /// Heartbeats, leases and polling (several nodes on one PostgreSQL database).
    pub cluster: ClusterSettings,
    // ----- lifecycle -----
    /// How long the previous secret keeps signing beside the new one after
    /// `POST /v1/webhooks/{id}/rotate-secret` without `overlapSeconds`
    /// (`WEBHOOKS_SECRET_ROTATION_OVERLAP`, whole seconds, default 86400 = 24 h, at most 30 days).
    pub secret_rotation_overlap: Duration,
    // ----- retention (part: retention) -----
    /// How long finished deliveries, their attempt log and their events are kept, and how the
    /// background pruner runs (see [`crate::retention`]).
    pub retention: RetentionSettings,
}

/// How long finished work is kept (`WEBHOOKS_RETENTION`, `WEBHOOKS_RETENTION_FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Keep it forever (`0`): nothing is pruned.
    KeepAll,
    /// Prune it once it is older than this (`Duration::ZERO`: at the next cycle after it
    /// finished; the variables' `0` means [`Retention::KeepAll`] instead).
    For(Duration),
}

impl Retention {
    /// `0` keeps everything; anything else is a duration with a unit (`30d`, `12h`, `90m`,
    /// `45s`, `1h 30m`: the `humantime` format). A bare number other than `0` is refused: its unit
    /// would be a guess.
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v == "0" {
            return Ok(Retention::KeepAll);
        }
        let d = humantime::parse_duration(v)
            .map_err(|e| format!("expected `0` (keep everything) or a duration such as `30d`, `12h`, `90s`: {e}"))?;
        if d.is_zero() {
            return Ok(Retention::KeepAll);
        }
        Ok(Retention::For(d))
    }

    /// The duration, unless everything is kept.
    pub fn duration(self) -> Option<Duration> {
        match self {
            Retention::KeepAll => None,
            Retention::For(d) => Some(d),
        }
    }
}

/// What the retention pruner keeps and how it works (see [`crate::retention`]).
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Successful deliveries (with their attempt log), and events that never had a delivery, are
    /// pruned this long after they completed (`WEBHOOKS_RETENTION`, default 30 days).
    pub completed: Retention,
    /// Failed deliveries are pruned this long after they failed (`WEBHOOKS_RETENTION_FAILED`);
    /// `None`: the same as [`RetentionSettings::completed`].
    pub failed: Option<Retention>,
    /// How often the pruner runs when it has caught up (`WEBHOOKS_PRUNE_INTERVAL`, default 1
    /// minute); while its batches come back full it keeps going.
    pub interval: Duration,
    /// Most deliveries (and events) one prune statement deletes: each batch is one short
    /// transaction, so publishes never wait long behind it.
    pub batch_rows: u32,
}

impl RetentionSettings {
    /// The retention of failed deliveries, the completed one unless set.
    pub fn failed(&self) -> Retention {
        self.failed.unwrap_or(self.completed)
    }

    /// Whether anything is ever pruned.
    pub fn prunes(&self) -> bool {
        self.completed != Retention::KeepAll || self.failed() != Retention::KeepAll
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            completed: Retention::For(Duration::from_secs(30 * 24 * 3600)),
            failed: None,
            interval: Duration::from_secs(60),
            batch_rows: 500,
        }
    }
}

/// The longest secret-rotation overlap (per call or by setting): 30 days.
pub const MAX_SECRET_ROTATION_OVERLAP: Duration = Duration::from_secs(30 * 24 * 3600);

/// How nodes sharing a database keep track of each other and of who owns which webhook.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// How often a node heartbeats, renews its leases, syncs the registry and rebalances
    /// (`WEBHOOKS_HEARTBEAT_INTERVAL_MS`, default 1 s).
    pub heartbeat_interval: Duration,
    /// How long a lease (and a node's liveness) lasts without renewal (`WEBHOOKS_LEASE_TTL_MS`,
    /// default 10 s; at least 3 heartbeats). A dead node's webhooks move after about this long; a
    /// node that cannot renew stops starting attempts after three quarters of it.
    pub lease_ttl: Duration,
    /// How often an owner looks in the store for due work it was not told about (a missed
    /// notification, a stranded delivery) (`WEBHOOKS_POLL_INTERVAL_MS`, default 5 s).
    pub poll_interval: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
        }
    }
}

impl Settings {
    /// The settings the `WEBHOOKS_*` environment variables (and the seed's `WEBHOOK_URLS`) give,
    /// on top of the defaults, checked: what `servio-webhooks serve` runs with, for a host that
    /// embeds the subsystem. Errors name the variable.
    pub fn from_env() -> Result<Settings, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`Settings::from_env`] with the variables looked up by `var` (tests, or a host with its
    /// own configuration source).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut s = Settings::default();
        for v in vars::VARS {
            if let Some(value) = var(v.name) {
                (v.apply)(&mut s, &value).map_err(|message| config_error(v.name, message))?;
            }
        }
        s.seed_webhooks = seed_webhooks_from_env(&var)?;
        s.validate()?;
        Ok(s)
    }

    /// Checks the settings that cannot be checked by their types.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.admin_token
            && (token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(config_error(
                "WEBHOOKS_ADMIN_TOKEN",
                "use 1 to 4096 visible ASCII characters (no spaces): it is sent as `Authorization: Bearer <token>`",
            ));
        }
        for host in &self.allowed_hosts {
            crate::api::guard::HostPattern::parse(host).map_err(|e| config_error("WEBHOOKS_ALLOWED_HOSTS", e))?;
        }
        for cidr in &self.allowed_private_cidrs {
            crate::model::address::parse_cidr(cidr).map_err(|e| config_error("WEBHOOKS_ALLOWED_PRIVATE_CIDRS", e))?;
        }
        if let Some(id) = &self.node_id {
            let ok = !id.is_empty()
                && id.len() <= 64
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
            if !ok {
                return Err(config_error(
                    "WEBHOOKS_NODE_ID",
                    "use 1 to 64 characters of letters, digits, `_`, `-`, `.`, `:`",
                ));
            }
        }
        if self.secret_rotation_overlap > MAX_SECRET_ROTATION_OVERLAP {
            return Err(config_error("WEBHOOKS_SECRET_ROTATION_OVERLAP", "must be at most 2592000 s (30 days)"));
        }
        let c = &self.cluster;
        if c.heartbeat_interval.is_zero() {
            return Err(config_error("WEBHOOKS_HEARTBEAT_INTERVAL_MS", "must be positive"));
        }
        if c.lease_ttl < c.heartbeat_interval * 3 {
            return Err(config_error(
                "WEBHOOKS_LEASE_TTL_MS",
                format!("must be at least 3 heartbeat intervals ({} ms)", (c.heartbeat_interval * 3).as_millis()),
            ));
        }
        if c.poll_interval.is_zero() {
            return Err(config_error("WEBHOOKS_POLL_INTERVAL_MS", "must be positive"));
        }
        if self.retention.interval.is_zero() {
            return Err(config_error("WEBHOOKS_PRUNE_INTERVAL", "must be positive"));
        }
        if self.retention.batch_rows == 0 {
            return Err(config_error("WEBHOOKS_RETENTION", "the prune batch (batch_rows) must be at least 1 row"));
        }
        Ok(())
    }

    /// Which targets deliveries may go to: `allow_private_targets` and `allowed_private_cidrs`
    /// (entries that do not parse are left out; [`Settings::validate`] refuses them).
    pub fn target_policy(&self) -> TargetPolicy {
        TargetPolicy {
            allow_private: self.allow_private_targets,
            allowed: self
                .allowed_private_cidrs
                .iter()
                .filter_map(|c| crate::model::address::parse_cidr(c).ok())
                .collect(),
        }
    }

    /// The node id: the configured one, or a fresh `node-xxxxxxxx`.
    pub fn node_id_or_generate(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let hex = uuid::Uuid::now_v7().simple().to_string();
            format!("node-{}", &hex[hex.len() - 8..])
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://webhooks.db".into(),
            admin_token: None,
            open_admin_api: false,
            allowed_hosts: Vec::new(),
            allow_private_targets: false,
            allowed_private_cidrs: Vec::new(),
            event_types: Vec::new(),
            max_payload_bytes: 256 * 1024,
            delivery: DeliverySettings::default(),
            breaker: BreakerSettings::default(),
            metrics_webhook_label: true,
            sqlite_full_sync: true,
            commit_interval: Duration::from_millis(5),
            arbiters: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
            shutdown_grace: Duration::from_secs(10),
            metrics_idle_timeout: Some(Duration::from_secs(600)),
            write_stall_timeout: Duration::from_secs(5),
            max_pending_writes: 50_000,
            seed_webhooks: Vec::new(),
            node_id: None,
            cluster: ClusterSettings::default(),
            retention: RetentionSettings::default(),
            secret_rotation_overlap: Duration::from_secs(24 * 3600),
        }
    }
}

/// How attempts are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Whole-attempt timeout (default 15 s).
    pub request_timeout: Duration,
    /// TCP/TLS connect timeout (default 5 s).
    pub connect_timeout: Duration,
    /// Default concurrent attempts per endpoint (default 16); a webhook's `maxInFlight` overrides it.
    pub max_in_flight: u32,
    /// Attempts in flight across all endpoints: bounds sockets and memory when a huge fleet fires
    /// at once. Large by default so that no realistic number of hanging endpoints can use it up.
    pub max_total_in_flight: usize,
    /// Pending deliveries an endpoint actor holds in memory; the rest wait in the store.
    pub window: usize,
    /// Body bytes held in memory across all endpoint windows of the node (default 256 MiB); past
    /// it, deliveries wait in the store (an endpoint with nothing in memory always takes one).
    pub window_bytes: usize,
    /// An endpoint actor with nothing to do for this long stops; the next delivery starts it
    /// again. Keeps a fleet of mostly idle webhooks small in memory.
    pub idle_timeout: Duration,
    /// Upper bound on an honoured `Retry-After` (default 1 hour).
    pub retry_after_cap: Duration,
    /// Response body bytes kept in the attempt log (default first KiB).
    pub response_body_limit: usize,
    /// `User-Agent` of every attempt.
    pub user_agent: String,
    /// Extra trusted CA certificates (DER) for `https` endpoints, on top of the platform's store:
    /// for endpoints behind a private CA.
    pub extra_root_certs: Vec<Vec<u8>>,
    /// Egress proxy for every attempt (`WEBHOOKS_PROXY_URL`): `http://host:port` (or `https://`,
    /// credentials as `http://user:password@host:port`). `http` targets are sent to it in absolute
    /// form, `https` targets through a `CONNECT` tunnel (TLS stays end to end). Target names are
    /// then resolved by the proxy, so the connect-time address guard cannot see where they lead:
    /// the proxy must enforce egress rules. Literal addresses and `localhost` are still refused here.
    /// Without it no proxy is used, whatever `HTTP_PROXY`/`HTTPS_PROXY` say.
    pub proxy_url: Option<String>,
    /// Client certificate presented to receivers that ask for one (mutual TLS;
    /// `WEBHOOKS_CLIENT_CERT_FILE` and `WEBHOOKS_CLIENT_KEY_FILE`).
    pub client_identity: Option<ClientIdentity>,
    /// Local address outgoing connections are bound to (`WEBHOOKS_LOCAL_ADDRESS`): picks the
    /// interface or source address receivers see (e.g. one they allow-list).
    pub local_address: Option<std::net::IpAddr>,
    /// Names answered from this table instead of DNS, like `/etc/hosts` entries (tests, split
    /// horizons). The addresses are screened like resolved ones.
    pub resolve_overrides: Vec<(String, Vec<std::net::IpAddr>)>,
    /// One HTTP client (and connection pool) shared by every delivery thread, instead of one per
    /// thread (the default, measured faster; see BENCHMARKS.md).
    pub shared_client: bool,
}

/// A client certificate chain and its private key, as PEM text: `CERTIFICATE` blocks (leaf
/// first) and one `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` or `EC PRIVATE KEY` block. Checked
/// when the subsystem starts. Its `Debug` output leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pem: Vec<u8>,
}

impl ClientIdentity {
    /// The identity in `pem` (certificates and key, in one text or concatenated files).
    pub fn from_pem(pem: impl Into<Vec<u8>>) -> Self {
        Self { pem: pem.into() }
    }

    /// The PEM text.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientIdentity({} bytes of PEM, redacted)", self.pem.len())
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_in_flight: 16,
            max_total_in_flight: 8192,
            window: 1024,
            window_bytes: 256 * 1024 * 1024,
            idle_timeout: Duration::from_secs(30),
            retry_after_cap: Duration::from_secs(3600),
            response_body_limit: 1024,
            user_agent: "Servio-Webhook/1.0".into(),
            extra_root_certs: Vec::new(),
            proxy_url: None,
            client_identity: None,
            local_address: None,
            resolve_overrides: Vec::new(),
            shared_client: false,
        }
    }
}

/// The per-endpoint circuit breaker.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    /// Consecutive failed attempts that pause an endpoint (default 5).
    pub failure_threshold: u32,
    /// First wait before a paused endpoint gets a probe; doubles per failed probe.
    pub cooldown: Duration,
    /// Longest wait between probes.
    pub max_cooldown: Duration,
    /// An endpoint failing without a success for this long is disabled (Svix: 5 days).
    pub disable_after: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(300),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}

/// A malformed setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{name}: {message}")]
pub struct ConfigError {
    /// The variable or flag.
    pub name: String,
    /// What is wrong with it.
    pub message: String,
}

pub(crate) fn config_error(name: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { name: name.to_string(), message: message.into() }
}

/// Reads the seed's environment registry: `WEBHOOK_URLS` (comma separated, trimmed, empties
/// skipped) registers `webhook-{i}` (0-based, in list order) with `WEBHOOK_{i}_SECRET`,
/// `_MAX_RETRIES`, `_INITIAL_DELAY`, `_MAX_DELAY`, `_BACKOFF_MULTIPLIER` and `_JITTER`.
pub fn seed_webhooks_from_env(var: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, WebhookSpec)>, ConfigError> {
    let Some(urls) = var("WEBHOOK_URLS") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, url) in urls.split(',').map(str::trim).filter(|u| !u.is_empty()).enumerate() {
        let key = |suffix: &str| format!("WEBHOOK_{i}_{suffix}");
        let mut retry = RetryConfig::default();
        if let Some(v) = var(&key("MAX_RETRIES")) {
            retry.max_retries =
                v.trim().parse().map_err(|_| config_error(&key("MAX_RETRIES"), "expected a non-negative integer"))?;
        }
        if let Some(v) = var(&key("INITIAL_DELAY")) {
            retry.initial_delay =
                v.trim().parse().map_err(|_| config_error(&key("INITIAL_DELAY"), "expected milliseconds"))?;
        }
        if let Some(v) = var(&key("MAX_DELAY")) {
            retry.max_delay = v.trim().parse().map_err(|_| config_error(&key("MAX_DELAY"), "expected milliseconds"))?;
        }
        if let Some(v) = var(&key("BACKOFF_MULTIPLIER")) {
            retry.backoff_multiplier =
                v.trim().parse().map_err(|_| config_error(&key("BACKOFF_MULTIPLIER"), "expected a number"))?;
        }
        if let Some(v) = var(&key("JITTER")) {
            retry.jitter = v.parse::<Jitter>().map_err(|e| config_error(&key("JITTER"), e))?;
        }
        retry.validate().map_err(|e| config_error(&format!("WEBHOOK_{i}_*"), e.to_string()))?;
        let spec = WebhookSpec {
            url: url.to_string(),
            secret: var(&key("SECRET")).filter(|s| !s.is_empty()),
            retry_config: Some(retry),
            description: Some("registered from WEBHOOK_URLS".into()),
            ..WebhookSpec::default()
        };
        out.push((format!("webhook-{i}"), spec));
    }
    Ok(out)
}

/// Parses a boolean setting the way operators write them.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(config_error(name, format!("expected true or false, got `{value}`"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn no_urls_no_seed_webhooks() {
        assert!(seed_webhooks_from_env(env(&[])).unwrap().is_empty());
    }

    #[test]
    fn seed_registry_reads_urls_and_per_index_settings() {
        let seeds = seed_webhooks_from_env(env(&[
            ("WEBHOOK_URLS", " https://a.example/hook , ,https://b.example/x "),
            ("WEBHOOK_0_SECRET", "s3cret"),
            ("WEBHOOK_0_MAX_RETRIES", "3"),
            ("WEBHOOK_0_INITIAL_DELAY", "500"),
            ("WEBHOOK_0_MAX_DELAY", "8000"),
            ("WEBHOOK_0_BACKOFF_MULTIPLIER", "3"),
            ("WEBHOOK_0_JITTER", "false"),
        ]))
        .unwrap();
        assert_eq!(seeds.len(), 2);
        let (id0, s0) = &seeds[0];
        assert_eq!(id0, "webhook-0");
        assert_eq!(s0.url, "https://a.example/hook");
        assert_eq!(s0.secret.as_deref(), Some("s3cret"));
        let r = s0.retry_config.unwrap();
        assert_eq!(
            (r.max_retries, r.initial_delay, r.max_delay, r.backoff_multiplier, r.jitter),
            (3, 500, 8000, 3.0, Jitter::None)
        );
        let (id1, s1) = &seeds[1];
        assert_eq!(id1, "webhook-1");
        assert_eq!(s1.url, "https://b.example/x");
        assert_eq!(s1.secret, None);
        assert_eq!(s1.retry_config, Some(RetryConfig::default()));
    }

    #[test]
    fn bad_seed_values_name_the_variable() {
        let err = seed_webhooks_from_env(env(&[("WEBHOOK_URLS", "https://a"), ("WEBHOOK_0_MAX_RETRIES", "many")]))
            .unwrap_err();
        assert_eq!(err.name, "WEBHOOK_0_MAX_RETRIES");
        let err =
            seed_webhooks_from_env(env(&[("WEBHOOK_URLS", "https://a"), ("WEBHOOK_0_JITTER", "maybe")])).unwrap_err();
        assert_eq!(err.name, "WEBHOOK_0_JITTER");
        let err = seed_webhooks_from_env(env(&[
            ("WEBHOOK_URLS", "https://a"),
            ("WEBHOOK_0_INITIAL_DELAY", "9000"),
            ("WEBHOOK_0_MAX_DELAY", "10"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "WEBHOOK_0_*");
    }

    #[test]
    fn cluster_settings_are_checked() {
        assert!(Settings::default().validate().is_ok());
        let mut s = Settings { node_id: Some("node a".into()), ..Settings::default() };
        assert_eq!(s.validate().unwrap_err().name, "WEBHOOKS_NODE_ID");
        s.node_id = Some("node-a".into());
        s.cluster.lease_ttl = Duration::from_millis(2500);
        assert_eq!(s.validate().unwrap_err().name, "WEBHOOKS_LEASE_TTL_MS");
        let generated = Settings::default().node_id_or_generate();
        assert!(generated.starts_with("node-") && generated.len() == 13, "{generated}");
        assert_ne!(generated, Settings::default().node_id_or_generate());
    }

    #[test]
    fn security_settings_are_checked_at_start() {
        let ok = Settings {
            admin_token: Some("s3cret-Token_1".into()),
            allowed_hosts: vec!["webhooks.internal".into(), "Admin.Example:8443".into(), "[fd00::1]:80".into()],
            allowed_private_cidrs: vec!["10.20.0.0/16".into(), " fd00:1::/64".into(), "192.168.1.7".into()],
            ..Settings::default()
        };
        assert_eq!(ok.validate(), Ok(()));
        let policy = ok.target_policy();
        assert_eq!(policy.allowed.len(), 3);
        assert!(policy.check("10.20.1.1".parse().unwrap()).is_ok());
        assert!(policy.check("10.21.1.1".parse().unwrap()).is_err());
        for (bad, name) in [
            (Settings { admin_token: Some("has space".into()), ..Settings::default() }, "WEBHOOKS_ADMIN_TOKEN"),
            (Settings { admin_token: Some("tökén".into()), ..Settings::default() }, "WEBHOOKS_ADMIN_TOKEN"),
            (
                Settings { allowed_hosts: vec!["http://x.example".into()], ..Settings::default() },
                "WEBHOOKS_ALLOWED_HOSTS",
            ),
            (
                Settings { allowed_hosts: vec!["x.example:99999".into()], ..Settings::default() },
                "WEBHOOKS_ALLOWED_HOSTS",
            ),
            (Settings { allowed_hosts: vec!["".into()], ..Settings::default() }, "WEBHOOKS_ALLOWED_HOSTS"),
            (
                Settings { allowed_private_cidrs: vec!["10.0.0.1/8".into()], ..Settings::default() },
                "WEBHOOKS_ALLOWED_PRIVATE_CIDRS",
            ),
            (
                Settings { allowed_private_cidrs: vec!["intranet".into()], ..Settings::default() },
                "WEBHOOKS_ALLOWED_PRIVATE_CIDRS",
            ),
        ] {
            let err = bad.validate().unwrap_err();
            assert_eq!(err.name, name, "{err}");
            assert!(!err.message.is_empty());
        }
    }

    #[test]
    fn booleans_parse_leniently_but_not_blindly() {
        assert!(parse_bool("X", "TRUE").unwrap());
        assert!(!parse_bool("X", "0").unwrap());
        assert!(parse_bool("X", "maybe").is_err());
    }
}
