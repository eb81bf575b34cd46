//! `servio-webhooks serve`: the standalone server. Flags mirror the `WEBHOOKS_*` environment
//! variables; the seed's `WEBHOOK_URLS` registry is read from the environment at start.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, bail};
use clap::builder::BoolishValueParser;
use clap::{Parser, Subcommand};
use servio_webhooks::Webhooks;
use servio_webhooks::config::{Settings, seed_webhooks_from_env};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// mimalloc: a quarter less CPU per delivery than glibc's allocator on the load harness
/// (BENCHMARKS.md). The library does not choose an allocator; an embedding host does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "servio-webhooks", version, about = "Durable, signed, retried outgoing webhooks for Servio")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook server (admin REST API, /metrics, /healthz, delivery).
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WEBHOOKS_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// `sqlite://path` (created if missing; one node), or `postgres://user@host/db` (several nodes
    /// sharing one database).
    #[arg(long, env = "WEBHOOKS_DATABASE_URL", default_value = "sqlite://webhooks.db", hide_env_values = true)]
    database_url: String,
    /// This node's id in the cluster (unique per node); generated when unset.
    #[arg(long, env = "WEBHOOKS_NODE_ID")]
    node_id: Option<String>,
    /// How often the node heartbeats, renews its leases and rebalances, ms.
    #[arg(long, env = "WEBHOOKS_HEARTBEAT_INTERVAL_MS", default_value_t = 1_000)]
    heartbeat_interval_ms: u64,
    /// How long a lease lasts without renewal, ms: a dead node's webhooks move after about this long.
    #[arg(long, env = "WEBHOOKS_LEASE_TTL_MS", default_value_t = 10_000)]
    lease_ttl_ms: u64,
    /// How often an owner polls the store for due work it was not told about, ms.
    #[arg(long, env = "WEBHOOKS_POLL_INTERVAL_MS", default_value_t = 5_000)]
    poll_interval_ms: u64,
    /// Bearer token for /v1; required when binding beyond loopback.
    #[arg(long, env = "WEBHOOKS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Without an admin token: Host names besides localhost, 127.0.0.1 and [::1] under which /v1
    /// answers (`name` for any port, or `name:port`), comma separated.
    #[arg(long, env = "WEBHOOKS_ALLOWED_HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,
    /// Allow deliveries to loopback and private addresses (development, tests).
    #[arg(long, env = "WEBHOOKS_ALLOW_PRIVATE_TARGETS", value_parser = BoolishValueParser::new(),
          default_value = "false", num_args = 0..=1, default_missing_value = "true")]
    allow_private_targets: bool,
    /// Non-public address blocks deliveries may go to anyway (deliberate internal targets), comma
    /// separated: `10.20.0.0/16`, `fd00:1::/64`, or single addresses.
    #[arg(long, env = "WEBHOOKS_ALLOWED_PRIVATE_CIDRS", value_delimiter = ',')]
    allowed_private_cidrs: Vec<String>,
    /// Extra event types, comma separated, each `name` or `name:description`.
    #[arg(long, env = "WEBHOOKS_EVENT_TYPES", value_delimiter = ',')]
    event_types: Vec<String>,
    /// User-Agent of every delivery attempt.
    #[arg(long, env = "WEBHOOKS_USER_AGENT", default_value = "Servio-Webhook/1.0")]
    user_agent: String,
    /// Default concurrent attempts per endpoint (a webhook's maxInFlight overrides it).
    #[arg(long, env = "WEBHOOKS_MAX_IN_FLIGHT", default_value_t = 16)]
    max_in_flight: u32,
    /// Attempts in flight across all endpoints (bounds sockets and memory for huge fleets).
    #[arg(long, env = "WEBHOOKS_MAX_TOTAL_IN_FLIGHT", default_value_t = 8192)]
    max_total_in_flight: usize,
    /// Whole-attempt timeout, ms.
    #[arg(long, env = "WEBHOOKS_REQUEST_TIMEOUT_MS", default_value_t = 15_000)]
    request_timeout_ms: u64,
    /// Connect timeout, ms.
    #[arg(long, env = "WEBHOOKS_CONNECT_TIMEOUT_MS", default_value_t = 5_000)]
    connect_timeout_ms: u64,
    /// Consecutive failed attempts that pause an endpoint.
    #[arg(long, env = "WEBHOOKS_BREAKER_THRESHOLD", default_value_t = 5)]
    breaker_threshold: u32,
    /// Disable an endpoint failing without success for this many seconds (default 5 days).
    #[arg(long, env = "WEBHOOKS_DISABLE_AFTER_SECS", default_value_t = 5 * 24 * 3600)]
    disable_after_secs: u64,
    /// Largest accepted event payload, bytes.
    #[arg(long, env = "WEBHOOKS_MAX_PAYLOAD_BYTES", default_value_t = 256 * 1024)]
    max_payload_bytes: usize,
    /// Label delivery metrics with the webhook id (switch off for large fleets).
    #[arg(long, env = "WEBHOOKS_METRICS_WEBHOOK_LABEL", value_parser = BoolishValueParser::new(),
          default_value = "true", num_args = 0..=1, default_missing_value = "true")]
    metrics_webhook_label: bool,
    /// Seconds a webhook's metric series stay in /metrics after its endpoint stops running on
    /// this node (deleted, moved, or idle) without updates; 0 keeps every series forever.
    #[arg(long, env = "WEBHOOKS_METRICS_IDLE_TIMEOUT_SECS", default_value_t = 600)]
    metrics_idle_timeout_secs: u64,
    /// SQLite durability: `full` (fsync per commit, survives power loss) or `normal` (survives crashes).
    #[arg(long, env = "WEBHOOKS_SQLITE_SYNCHRONOUS", default_value = "full", value_parser = ["full", "normal"])]
    sqlite_synchronous: String,
    /// Least milliseconds between two ledger commits under load (batching vs publish latency).
    #[arg(long, env = "WEBHOOKS_COMMIT_INTERVAL_MS", default_value_t = 5)]
    commit_interval_ms: u64,
    /// HTTP worker threads for the API (default: one per core).
    #[arg(long, env = "WEBHOOKS_HTTP_WORKERS")]
    http_workers: Option<usize>,
    /// Seconds shutdown waits for in-flight attempts.
    #[arg(long, env = "WEBHOOKS_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// A commit running this long counts as a stalled store (publishes get 503, attempts wait), ms.
    #[arg(long, env = "WEBHOOKS_WRITE_STALL_MS", default_value_t = 5_000)]
    write_stall_ms: u64,
    /// Most operations that may wait for the store before publishes get 503.
    #[arg(long, env = "WEBHOOKS_MAX_PENDING_WRITES", default_value_t = 50_000)]
    max_pending_writes: usize,
    /// Body bytes held in memory across all endpoint windows (the rest waits in the store).
    #[arg(long, env = "WEBHOOKS_WINDOW_BYTES", default_value_t = 256 * 1024 * 1024)]
    window_bytes: usize,
    /// PEM file of extra CA certificates trusted for https endpoints (private CAs).
    #[arg(long, env = "WEBHOOKS_EXTRA_CA_FILE")]
    extra_ca_file: Option<std::path::PathBuf>,
    /// Egress proxy for every delivery, `http://[user:password@]host:port`: http targets in absolute
    /// form, https targets through CONNECT. The proxy then resolves target names and must enforce
    /// egress rules (only literal addresses are still screened here).
    #[arg(long, env = "WEBHOOKS_PROXY_URL", hide_env_values = true)]
    proxy_url: Option<String>,
    /// PEM file with the client certificate chain (and its private key, unless
    /// WEBHOOKS_CLIENT_KEY_FILE is set) presented to receivers that require mutual TLS.
    #[arg(long, env = "WEBHOOKS_CLIENT_CERT_FILE")]
    client_cert_file: Option<std::path::PathBuf>,
    /// PEM file with the private key of WEBHOOKS_CLIENT_CERT_FILE, when it is kept apart.
    #[arg(long, env = "WEBHOOKS_CLIENT_KEY_FILE", requires = "client_cert_file")]
    client_key_file: Option<std::path::PathBuf>,
    /// Local IP address delivery connections are made from (source address receivers see).
    #[arg(long, env = "WEBHOOKS_LOCAL_ADDRESS")]
    local_address: Option<std::net::IpAddr>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `servio_webhooks=debug`. Unless it is
    /// `debug` or `trace` or names `actix_http`, actix-http's per-connection errors (a malformed
    /// request is logged at ERROR) are left out.
    #[arg(long, env = "WEBHOOKS_LOG", default_value = "info")]
    log: String,
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings {
            database_url: self.database_url.clone(),
            admin_token: self.admin_token.clone().filter(|t| !t.is_empty()),
            allowed_hosts: entries(&self.allowed_hosts),
            allow_private_targets: self.allow_private_targets,
            allowed_private_cidrs: entries(&self.allowed_private_cidrs),
            event_types: self.event_types.clone(),
            max_payload_bytes: self.max_payload_bytes,
            metrics_webhook_label: self.metrics_webhook_label,
            sqlite_full_sync: self.sqlite_synchronous == "full",
            commit_interval: Duration::from_millis(self.commit_interval_ms),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            write_stall_timeout: Duration::from_millis(self.write_stall_ms.max(1)),
            max_pending_writes: self.max_pending_writes.max(1),
            seed_webhooks: seed_webhooks_from_env(|k| std::env::var(k).ok())?,
            node_id: self.node_id.clone().filter(|n| !n.is_empty()),
            ..Settings::default()
        };
        s.cluster.heartbeat_interval = Duration::from_millis(self.heartbeat_interval_ms);
        s.cluster.lease_ttl = Duration::from_millis(self.lease_ttl_ms);
        s.cluster.poll_interval = Duration::from_millis(self.poll_interval_ms);
        s.validate()?;
        s.delivery.user_agent = self.user_agent.clone();
        s.delivery.max_in_flight = self.max_in_flight.max(1);
        s.delivery.max_total_in_flight = self.max_total_in_flight.max(1);
        s.delivery.window_bytes = self.window_bytes.max(1);
        s.delivery.request_timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        s.delivery.connect_timeout = Duration::from_millis(self.connect_timeout_ms.max(1));
        s.breaker.failure_threshold = self.breaker_threshold.max(1);
        if let Some(path) = &self.extra_ca_file {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let certs = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("cannot read WEBHOOKS_EXTRA_CA_FILE {}", path.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("invalid PEM in {}", path.display()))?;
            anyhow::ensure!(!certs.is_empty(), "no certificate in {}", path.display());
            s.delivery.extra_root_certs = certs.into_iter().map(|c| c.to_vec()).collect();
        }
        s.delivery.proxy_url = self.proxy_url.clone().filter(|u| !u.trim().is_empty());
        s.delivery.local_address = self.local_address;
        if let Some(path) = &self.client_cert_file {
            let mut pem = std::fs::read(path)
                .with_context(|| format!("cannot read WEBHOOKS_CLIENT_CERT_FILE {}", path.display()))?;
            if let Some(key) = &self.client_key_file {
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key)
                        .with_context(|| format!("cannot read WEBHOOKS_CLIENT_KEY_FILE {}", key.display()))?,
                );
            }
            s.delivery.client_identity = Some(servio_webhooks::config::ClientIdentity::from_pem(pem));
        }
        s.breaker.disable_after = Duration::from_secs(self.disable_after_secs);
        Ok(s)
    }
}

/// Comma-separated entries, trimmed, empty ones dropped.
fn entries(list: &[String]) -> Vec<String> {
    list.iter().map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect()
}

/// Where actix-http logs, at ERROR, what a client can cause at will: a malformed request
/// ("stream error: …"), an oversized head, a payload cut short. Anyone who can connect could flood
/// the log with them, so they stay out of it unless the filter asks for debug output or names
/// `actix_http` itself. Errors of the service itself are logged under `servio_webhooks`.
const CLIENT_ERROR_TARGETS: &[&str] = &["actix_http::h1::dispatcher", "actix_http::h1::decoder"];

/// The log filter `serve` runs with: `spec` plus [`CLIENT_ERROR_TARGETS`] switched off, unless
/// `spec`'s default level is debug or trace, or `spec` says something about `actix_http`.
fn log_filter(spec: &str) -> anyhow::Result<EnvFilter> {
    let mut filter = EnvFilter::try_new(spec).context("invalid WEBHOOKS_LOG filter")?;
    let default_level = spec
        .split(',')
        .filter(|d| !d.contains('='))
        .filter_map(|d| d.trim().parse::<LevelFilter>().ok())
        .next_back()
        .unwrap_or(LevelFilter::ERROR);
    if default_level < LevelFilter::DEBUG && !spec.contains("actix_http") {
        for target in CLIENT_ERROR_TARGETS {
            filter = filter.add_directive(format!("{target}=off").parse()?);
        }
    }
    Ok(filter)
}

fn main() -> anyhow::Result<()> {
    let Command::Serve(args) = Cli::parse().command;
    tracing_subscriber::fmt().with_env_filter(log_filter(&args.log)?).init();
    let mut settings = args.settings()?;
    let idle = Duration::from_secs(args.metrics_idle_timeout_secs);
    servio_webhooks::metrics::set_series_idle_timeout((!idle.is_zero()).then_some(idle));
    let addrs: Vec<SocketAddr> =
        args.bind.to_socket_addrs().with_context(|| format!("cannot resolve bind address `{}`", args.bind))?.collect();
    if settings.admin_token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!("WEBHOOKS_ADMIN_TOKEN is required when binding beyond loopback ({})", args.bind);
    }
    // Loopback only and no token: the admin API is open to local callers (the curl walk-through).
    settings.open_admin_api = settings.admin_token.is_none();
    let workers = args.http_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    actix_web::rt::System::new().block_on(async move {
        let webhooks = Webhooks::start(settings).await.context("could not start the webhook subsystem")?;
        let routes = webhooks.configure();
        let server = HttpServer::new(move || {
            App::new().configure(routes.clone()).default_service(web::to(servio_webhooks::api::not_found))
        })
        .workers(workers)
        .shutdown_timeout(5)
        // actix-server's own signal handling stops the whole actix System, which would kill the
        // delivery actors before they drain; we handle the signals ourselves below.
        .disable_signals()
        .bind(&addrs[..])
        .with_context(|| format!("cannot listen on {}", args.bind))?;
        for a in server.addrs() {
            tracing::info!(address = %a, "listening");
        }
        let server = server.run();
        let handle = server.handle();
        let mut server_task = actix_web::rt::spawn(server);
        tokio::select! {
            signal = servio_webhooks::app::shutdown_signal() => tracing::info!(signal, "stopping: finishing API requests"),
            res = &mut server_task => {
                res.context("HTTP server task failed")?.context("HTTP server failed")?;
            }
        }
        handle.stop(true).await;
        tracing::info!("draining in-flight attempts");
        webhooks.shutdown().await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing::subscriber::with_default;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Whether an event at `level` for `target` gets through the filter built from `spec`.
    fn enabled(spec: &str, target: &'static str, level: Level) -> bool {
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = seen.clone();
        let probe = tracing_subscriber::fmt::layer().with_writer(move || {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            std::io::sink()
        });
        let subscriber = tracing_subscriber::registry().with(probe).with(log_filter(spec).unwrap());
        with_default(subscriber, || match (target, level) {
            ("actix_http::h1::dispatcher", Level::ERROR) => {
                tracing::error!(target: "actix_http::h1::dispatcher", "stream error: probe")
            }
            ("servio_webhooks::app", Level::ERROR) => tracing::error!(target: "servio_webhooks::app", "probe"),
            ("actix_server::worker", Level::ERROR) => tracing::error!(target: "actix_server::worker", "probe"),
            _ => unreachable!(),
        });
        seen.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn serve_settings(args: &[&str]) -> anyhow::Result<Settings> {
        let cli = Cli::try_parse_from([&["servio-webhooks", "serve"], args].concat())?;
        let Command::Serve(serve) = cli.command;
        serve.settings()
    }

    #[test]
    fn egress_flags_reach_the_delivery_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let s = serve_settings(&[
            "--proxy-url",
            "http://egress.internal:3128",
            "--local-address",
            "127.0.0.2",
            "--client-cert-file",
            cert.to_str().unwrap(),
            "--client-key-file",
            key.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(s.delivery.proxy_url.as_deref(), Some("http://egress.internal:3128"));
        assert_eq!(s.delivery.local_address, Some("127.0.0.2".parse().unwrap()));
        let pem = String::from_utf8(s.delivery.client_identity.unwrap().pem().to_vec()).unwrap();
        assert!(pem.contains("CERTIFICATE") && pem.contains("PRIVATE KEY"), "{pem}");
        let none = serve_settings(&[]).unwrap();
        assert!(none.delivery.proxy_url.is_none() && none.delivery.client_identity.is_none());
        assert!(serve_settings(&["--client-key-file", key.to_str().unwrap()]).is_err(), "a key needs its certificate");
        assert!(serve_settings(&["--local-address", "not-an-ip"]).is_err());
        assert!(serve_settings(&["--client-cert-file", "/nonexistent/client.pem"]).is_err());
    }

    #[test]
    fn client_caused_actix_errors_stay_out_of_the_log_unless_asked_for() {
        for spec in ["info", "warn", "error", "info,servio_webhooks=debug"] {
            assert!(!enabled(spec, "actix_http::h1::dispatcher", Level::ERROR), "{spec}");
            assert!(enabled(spec, "servio_webhooks::app", Level::ERROR), "{spec}");
            assert!(enabled(spec, "actix_server::worker", Level::ERROR), "{spec}");
        }
        for spec in ["debug", "trace", "info,actix_http=error", "warn,actix_http::h1::dispatcher=error"] {
            assert!(enabled(spec, "actix_http::h1::dispatcher", Level::ERROR), "{spec}");
        }
        assert!(log_filter("info,servio_webhooks=loud").is_err());
    }
}
