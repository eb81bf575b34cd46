//! The `WEBHOOKS_*` environment variables: one table, one parser per variable. Both
//! [`Settings::from_env`](super::Settings::from_env) and `servio-webhooks serve` (whose flags are
//! generated from this table and read the same variables) apply it, so a variable means the same
//! embedded and standalone. Variables of `serve` alone (bind address, HTTP workers, logging) are
//! in `main.rs`.

use std::time::Duration;

use super::{ClientIdentity, Retention, Settings, parse_bool};

/// How a variable's value is written, for the generated flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Any value.
    Value,
    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`); a bare flag means `true`.
    Bool,
    /// Comma separated, trimmed, empty entries skipped.
    List,
    /// A secret: never shown in help or errors.
    Secret,
}

/// One variable.
pub struct Var {
    /// The environment variable.
    pub name: &'static str,
    /// The `serve` flag, without the leading `--`.
    pub flag: &'static str,
    /// What it does, for `--help` and the README.
    pub help: &'static str,
    /// How it is written.
    pub kind: Kind,
    /// Sets it on the settings; the message names what is wrong with the value.
    pub apply: fn(&mut Settings, &str) -> Result<(), String>,
}

fn number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim().parse().map_err(|_| format!("expected a whole number, got `{v}`"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(v: &str) -> Result<T, String> {
    let n: T = number(v)?;
    if n > T::default() { Ok(n) } else { Err(format!("must be greater than 0, got `{v}`")) }
}

fn millis(v: &str) -> Result<Duration, String> {
    positive::<u64>(v).map(Duration::from_millis)
}

/// A duration with its unit (`30d`, `12h`, `90s`, `1m`); bare numbers are refused.
fn duration(v: &str) -> Result<Duration, String> {
    match Retention::parse(v)? {
        Retention::For(d) => Ok(d),
        Retention::KeepAll => Err(format!("must be greater than 0, got `{v}`")),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    parse_bool("", v).map_err(|e| e.message)
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// PEM certificates from a file, as DER.
fn pem_certificates(path: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM in {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {path}"));
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// Every setting variable, in the order `--help` lists them.
pub const VARS: &[Var] = &[
    Var {
        name: "WEBHOOKS_DATABASE_URL",
        flag: "database-url",
        help: "`sqlite://path` (created if missing; one node; default sqlite://webhooks.db) or \
               `postgres://user:pass@host/db` (several nodes sharing one database)",
        kind: Kind::Secret,
        apply: |s, v| {
            s.database_url = v.trim().to_string();
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_NODE_ID",
        flag: "node-id",
        help: "This node's id in the cluster, unique per node (generated when unset)",
        kind: Kind::Value,
        apply: |s, v| {
            s.node_id = Some(v.trim().to_string()).filter(|n| !n.is_empty());
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_HEARTBEAT_INTERVAL_MS",
        flag: "heartbeat-interval-ms",
        help: "How often a node heartbeats, renews its leases and rebalances, ms (default 1000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.cluster.heartbeat_interval = d),
    },
    Var {
        name: "WEBHOOKS_LEASE_TTL_MS",
        flag: "lease-ttl-ms",
        help: "How long a lease lasts without renewal, ms: a dead node's webhooks move after about this long \
               (default 10000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.cluster.lease_ttl = d),
    },
    Var {
        name: "WEBHOOKS_POLL_INTERVAL_MS",
        flag: "poll-interval-ms",
        help: "How often an owner polls the store for due work it was not told about, ms (default 5000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.cluster.poll_interval = d),
    },
    Var {
        name: "WEBHOOKS_ADMIN_TOKEN",
        flag: "admin-token",
        help: "Bearer token for /v1; required when binding beyond loopback",
        kind: Kind::Secret,
        apply: |s, v| {
            s.admin_token = Some(v.to_string()).filter(|t| !t.is_empty());
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_OPEN_ADMIN_API",
        flag: "open-admin-api",
        help: "Answer /v1 without a token (loopback callers only; `serve` does so by default when bound to \
               loopback without a token)",
        kind: Kind::Bool,
        apply: |s, v| boolean(v).map(|b| s.open_admin_api = b),
    },
    Var {
        name: "WEBHOOKS_ALLOWED_HOSTS",
        flag: "allowed-hosts",
        help: "Without a token: Host names besides localhost, 127.0.0.1 and [::1] under which /v1 answers \
               (`name` or `name:port`)",
        kind: Kind::List,
        apply: |s, v| {
            s.allowed_hosts = list(v);
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_ALLOW_PRIVATE_TARGETS",
        flag: "allow-private-targets",
        help: "Allow deliveries to loopback and private addresses (development, tests)",
        kind: Kind::Bool,
        apply: |s, v| boolean(v).map(|b| s.allow_private_targets = b),
    },
    Var {
        name: "WEBHOOKS_ALLOWED_PRIVATE_CIDRS",
        flag: "allowed-private-cidrs",
        help: "Non-public address blocks deliveries may go to anyway: `10.20.0.0/16`, `fd00:1::/64`, addresses",
        kind: Kind::List,
        apply: |s, v| {
            s.allowed_private_cidrs = list(v);
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_EVENT_TYPES",
        flag: "event-types",
        help: "Extra event types, each `name` or `name:description`",
        kind: Kind::List,
        apply: |s, v| {
            s.event_types = list(v);
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_USER_AGENT",
        flag: "user-agent",
        help: "User-Agent of every delivery attempt (default Servio-Webhook/1.0)",
        kind: Kind::Value,
        apply: |s, v| {
            s.delivery.user_agent = v.to_string();
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_MAX_IN_FLIGHT",
        flag: "max-in-flight",
        help: "Default concurrent attempts per endpoint; a webhook's maxInFlight overrides it (default 16)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.delivery.max_in_flight = n),
    },
    Var {
        name: "WEBHOOKS_MAX_TOTAL_IN_FLIGHT",
        flag: "max-total-in-flight",
        help: "Attempts in flight across all endpoints of a node (default 8192)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.delivery.max_total_in_flight = n),
    },
    Var {
        name: "WEBHOOKS_REQUEST_TIMEOUT_MS",
        flag: "request-timeout-ms",
        help: "Whole-attempt timeout, ms (default 15000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.delivery.request_timeout = d),
    },
    Var {
        name: "WEBHOOKS_CONNECT_TIMEOUT_MS",
        flag: "connect-timeout-ms",
        help: "Connect timeout, ms (default 5000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.delivery.connect_timeout = d),
    },
    Var {
        name: "WEBHOOKS_WINDOW_BYTES",
        flag: "window-bytes",
        help: "Event bytes held in memory across all endpoints' windows; the rest waits in the store \
               (default 268435456)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.delivery.window_bytes = n),
    },
    Var {
        name: "WEBHOOKS_EXTRA_CA_FILE",
        flag: "extra-ca-file",
        help: "PEM file of CA certificates trusted for https endpoints besides the platform's",
        kind: Kind::Value,
        apply: |s, v| pem_certificates(v.trim()).map(|c| s.delivery.extra_root_certs = c),
    },
    Var {
        name: "WEBHOOKS_PROXY_URL",
        flag: "proxy-url",
        help: "Egress proxy for every delivery, `http://[user:password@]host:port` (or `https://`): http targets \
               in absolute form, https through CONNECT; the proxy then resolves target names and must enforce \
               egress rules (only literal addresses are still screened here). Environment proxy variables are \
               never used",
        kind: Kind::Secret,
        apply: |s, v| {
            s.delivery.proxy_url = Some(v.trim().to_string()).filter(|u| !u.is_empty());
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_CLIENT_CERT_FILE",
        flag: "client-cert-file",
        help: "PEM file with the client certificate chain (leaf first) and, unless WEBHOOKS_CLIENT_KEY_FILE is \
               set, its private key, presented to receivers that require mutual TLS",
        kind: Kind::Value,
        apply: |s, v| {
            let path = v.trim();
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            s.delivery.client_identity = Some(ClientIdentity::from_pem(pem));
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_CLIENT_KEY_FILE",
        flag: "client-key-file",
        help: "PEM file with the private key of WEBHOOKS_CLIENT_CERT_FILE, when kept apart (PKCS#8, PKCS#1 or SEC1)",
        kind: Kind::Value,
        apply: |s, v| {
            let path = v.trim();
            let Some(identity) = &s.delivery.client_identity else {
                return Err("needs WEBHOOKS_CLIENT_CERT_FILE (the certificate the key belongs to)".into());
            };
            let mut pem = identity.pem().to_vec();
            pem.push(b'\n');
            pem.extend(std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?);
            s.delivery.client_identity = Some(ClientIdentity::from_pem(pem));
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_LOCAL_ADDRESS",
        flag: "local-address",
        help: "Local IP address delivery connections are made from (the source address receivers see)",
        kind: Kind::Value,
        apply: |s, v| {
            let ip = v.trim().parse().map_err(|_| format!("expected an IP address, got `{v}`"))?;
            s.delivery.local_address = Some(ip);
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_BREAKER_THRESHOLD",
        flag: "breaker-threshold",
        help: "Consecutive failed attempts that pause an endpoint (default 5)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.breaker.failure_threshold = n),
    },
    Var {
        name: "WEBHOOKS_DISABLE_AFTER_SECS",
        flag: "disable-after-secs",
        help: "Disable an endpoint failing without a success for this long, s (default 432000, 5 days)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.breaker.disable_after = Duration::from_secs(n)),
    },
    Var {
        name: "WEBHOOKS_MAX_PAYLOAD_BYTES",
        flag: "max-payload-bytes",
        help: "Largest accepted event data, bytes (default 262144)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.max_payload_bytes = n),
    },
    Var {
        name: "WEBHOOKS_METRICS_WEBHOOK_LABEL",
        flag: "metrics-webhook-label",
        help: "Label delivery metrics with the webhook id; switch off for large fleets (default true)",
        kind: Kind::Bool,
        apply: |s, v| boolean(v).map(|b| s.metrics_webhook_label = b),
    },
    Var {
        name: "WEBHOOKS_METRICS_IDLE_TIMEOUT_SECS",
        flag: "metrics-idle-timeout-secs",
        help: "How long a webhook's metric series stay after its endpoint stopped on this node, s; \
               0 keeps them (default 600)",
        kind: Kind::Value,
        apply: |s, v| number::<u64>(v).map(|n| s.metrics_idle_timeout = (n > 0).then(|| Duration::from_secs(n))),
    },
    Var {
        name: "WEBHOOKS_SQLITE_SYNCHRONOUS",
        flag: "sqlite-synchronous",
        help: "SQLite durability: `full` (fsync per commit; default) or `normal` (survives crashes, not power loss)",
        kind: Kind::Value,
        apply: |s, v| match v.trim().to_ascii_lowercase().as_str() {
            "full" => {
                s.sqlite_full_sync = true;
                Ok(())
            }
            "normal" => {
                s.sqlite_full_sync = false;
                Ok(())
            }
            _ => Err(format!("expected `full` or `normal`, got `{v}`")),
        },
    },
    Var {
        name: "WEBHOOKS_COMMIT_INTERVAL_MS",
        flag: "commit-interval-ms",
        help: "Least time between two ledger commits under load, ms: bigger commits against publish latency \
               (default 5; under heavy load, while no publish waits, up to 4 times this)",
        kind: Kind::Value,
        apply: |s, v| number::<u64>(v).map(|n| s.commit_interval = Duration::from_millis(n)),
    },
    Var {
        name: "WEBHOOKS_WRITE_STALL_MS",
        flag: "write-stall-ms",
        help: "A commit running this long counts as a stalled store: publishes get 503, attempts wait, ms \
               (default 5000)",
        kind: Kind::Value,
        apply: |s, v| millis(v).map(|d| s.write_stall_timeout = d),
    },
    Var {
        name: "WEBHOOKS_MAX_PENDING_WRITES",
        flag: "max-pending-writes",
        help: "Most operations waiting for the store before publishes get 503 (default 50000)",
        kind: Kind::Value,
        apply: |s, v| positive(v).map(|n| s.max_pending_writes = n),
    },
    Var {
        name: "WEBHOOKS_SECRET_ROTATION_OVERLAP",
        flag: "secret-rotation-overlap",
        help: "How long the previous secret keeps signing beside the new one after a rotation that does not \
               give overlapSeconds, s; 0 for none, at most 2592000 (default 86400, 24 h)",
        kind: Kind::Value,
        apply: |s, v| {
            let d = Duration::from_secs(number::<u64>(v)?);
            if d > super::MAX_SECRET_ROTATION_OVERLAP {
                return Err(format!("must be at most 2592000 (30 days), got `{v}`"));
            }
            s.secret_rotation_overlap = d;
            Ok(())
        },
    },
    Var {
        name: "WEBHOOKS_SHUTDOWN_GRACE_SECS",
        flag: "shutdown-grace-secs",
        help: "How long shutdown waits for attempts in flight, s (default 10)",
        kind: Kind::Value,
        apply: |s, v| number::<u64>(v).map(|n| s.shutdown_grace = Duration::from_secs(n)),
    },
    // ----- retention (part: retention) -----
    Var {
        name: "WEBHOOKS_RETENTION",
        flag: "retention",
        help: "How long successful deliveries, their attempt log and events no delivery needs are kept: a duration \
               such as `30d`, `12h`, `90s`; `0` keeps everything (default 30d)",
        kind: Kind::Value,
        apply: |s, v| Retention::parse(v).map(|r| s.retention.completed = r),
    },
    Var {
        name: "WEBHOOKS_RETENTION_FAILED",
        flag: "retention-failed",
        help: "How long failed deliveries and their attempt log are kept, same format; `0` keeps them \
               (default: WEBHOOKS_RETENTION)",
        kind: Kind::Value,
        apply: |s, v| Retention::parse(v).map(|r| s.retention.failed = Some(r)),
    },
    Var {
        name: "WEBHOOKS_PRUNE_INTERVAL",
        flag: "prune-interval",
        help: "How often the background pruner runs once caught up, a duration such as `1m` or `30s` (default 1m)",
        kind: Kind::Value,
        apply: |s, v| duration(v).map(|d| s.retention.interval = d),
    },
];

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn names_and_flags_are_unique_and_follow_one_pattern() {
        let names: HashSet<&str> = VARS.iter().map(|v| v.name).collect();
        let flags: HashSet<&str> = VARS.iter().map(|v| v.flag).collect();
        assert_eq!((names.len(), flags.len()), (VARS.len(), VARS.len()));
        for v in VARS {
            let expected = format!("WEBHOOKS_{}", v.flag.to_ascii_uppercase().replace('-', "_"));
            assert_eq!(v.name, expected, "the flag mirrors the variable");
        }
    }

    #[test]
    fn the_rotation_overlap_is_whole_seconds_up_to_30_days() {
        assert_eq!(Settings::default().secret_rotation_overlap, Duration::from_secs(86_400));
        let s = Settings::from_vars(env(&[("WEBHOOKS_SECRET_ROTATION_OVERLAP", "0")])).unwrap();
        assert_eq!(s.secret_rotation_overlap, Duration::ZERO);
        let s = Settings::from_vars(env(&[("WEBHOOKS_SECRET_ROTATION_OVERLAP", "2592000")])).unwrap();
        assert_eq!(s.secret_rotation_overlap, Duration::from_secs(2_592_000));
        for bad in ["2592001", "-1", "1h", "1.5"] {
            let err = Settings::from_vars(env(&[("WEBHOOKS_SECRET_ROTATION_OVERLAP", bad)])).unwrap_err();
            assert!(err.to_string().contains("WEBHOOKS_SECRET_ROTATION_OVERLAP"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_environment_fills_the_settings_and_errors_name_the_variable() {
        let s = Settings::from_vars(env(&[
            ("WEBHOOKS_DATABASE_URL", "postgres://u@db/servio"),
            ("WEBHOOKS_NODE_ID", "web-1"),
            ("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "yes"),
            ("WEBHOOKS_ALLOWED_HOSTS", " a.internal , ,b.internal:8080"),
            ("WEBHOOKS_REQUEST_TIMEOUT_MS", "2500"),
            ("WEBHOOKS_SQLITE_SYNCHRONOUS", "NORMAL"),
            ("WEBHOOKS_METRICS_IDLE_TIMEOUT_SECS", "0"),
            ("WEBHOOK_URLS", "https://pos.example.com/h"),
        ]))
        .unwrap();
        assert_eq!(s.database_url, "postgres://u@db/servio");
        assert_eq!(s.node_id.as_deref(), Some("web-1"));
        assert!(s.allow_private_targets);
        assert_eq!(s.allowed_hosts, ["a.internal", "b.internal:8080"]);
        assert_eq!(s.delivery.request_timeout, Duration::from_millis(2500));
        assert!(!s.sqlite_full_sync);
        assert_eq!(s.metrics_idle_timeout, None);
        assert_eq!(s.seed_webhooks.len(), 1);
        let d = Settings::from_vars(env(&[])).unwrap();
        assert_eq!((d.database_url, d.open_admin_api), (Settings::default().database_url, false), "defaults");
        for (name, value) in [
            ("WEBHOOKS_MAX_IN_FLIGHT", "0"),
            ("WEBHOOKS_REQUEST_TIMEOUT_MS", "soon"),
            ("WEBHOOKS_ALLOW_PRIVATE_TARGETS", "maybe"),
            ("WEBHOOKS_SQLITE_SYNCHRONOUS", "sometimes"),
            ("WEBHOOKS_EXTRA_CA_FILE", "/nonexistent.pem"),
            ("WEBHOOKS_LEASE_TTL_MS", "100"),
            ("WEBHOOKS_RETENTION", "30"),
            ("WEBHOOKS_RETENTION_FAILED", "a week"),
            ("WEBHOOKS_PRUNE_INTERVAL", "0"),
        ] {
            let err = Settings::from_vars(env(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{err}");
        }
    }

    #[test]
    fn egress_variables_reach_the_delivery_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").unwrap();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let s = Settings::from_vars(env(&[
            ("WEBHOOKS_PROXY_URL", "http://egress.internal:3128"),
            ("WEBHOOKS_LOCAL_ADDRESS", "127.0.0.2"),
            ("WEBHOOKS_CLIENT_CERT_FILE", cert),
            ("WEBHOOKS_CLIENT_KEY_FILE", key),
        ]))
        .unwrap();
        assert_eq!(s.delivery.proxy_url.as_deref(), Some("http://egress.internal:3128"));
        assert_eq!(s.delivery.local_address, Some("127.0.0.2".parse().unwrap()));
        let pem = String::from_utf8(s.delivery.client_identity.unwrap().pem().to_vec()).unwrap();
        assert!(pem.contains("CERTIFICATE") && pem.contains("PRIVATE KEY"), "{pem}");
        let none = Settings::from_vars(env(&[])).unwrap();
        assert!(none.delivery.proxy_url.is_none() && none.delivery.client_identity.is_none());
        for (vars, named) in [
            (vec![("WEBHOOKS_CLIENT_KEY_FILE", key)], "WEBHOOKS_CLIENT_KEY_FILE"),
            (vec![("WEBHOOKS_LOCAL_ADDRESS", "not-an-ip")], "WEBHOOKS_LOCAL_ADDRESS"),
            (vec![("WEBHOOKS_CLIENT_CERT_FILE", "/nonexistent/client.pem")], "WEBHOOKS_CLIENT_CERT_FILE"),
        ] {
            assert_eq!(Settings::from_vars(env(&vars)).unwrap_err().name, named);
        }
    }

    #[test]
    fn retention_takes_durations_with_units_and_zero_keeps_everything() {
        let d = Settings::from_vars(env(&[])).unwrap().retention;
        assert_eq!(d.completed, Retention::For(Duration::from_secs(30 * 86_400)));
        assert_eq!((d.failed(), d.interval, d.prunes()), (d.completed, Duration::from_secs(60), true));
        let s = Settings::from_vars(env(&[("WEBHOOKS_RETENTION", "12h"), ("WEBHOOKS_PRUNE_INTERVAL", "90s")]))
            .unwrap()
            .retention;
        assert_eq!(s.completed, Retention::For(Duration::from_secs(12 * 3600)));
        assert_eq!(s.failed(), s.completed, "failed follows the retention unless set");
        assert_eq!(s.interval, Duration::from_secs(90));
        let s = Settings::from_vars(env(&[("WEBHOOKS_RETENTION", "0"), ("WEBHOOKS_RETENTION_FAILED", " 7d ")]))
            .unwrap()
            .retention;
        assert_eq!((s.completed, s.failed()), (Retention::KeepAll, Retention::For(Duration::from_secs(7 * 86_400))));
        assert!(s.prunes());
        let s = Settings::from_vars(env(&[("WEBHOOKS_RETENTION", "0")])).unwrap().retention;
        assert_eq!((s.completed, s.failed(), s.prunes()), (Retention::KeepAll, Retention::KeepAll, false));
        for (value, expected) in [("1h 30m", 5400), ("45s", 45), ("2d", 172_800), ("90m", 5400)] {
            assert_eq!(Retention::parse(value), Ok(Retention::For(Duration::from_secs(expected))), "{value}");
        }
        for bad in ["30", "-1d", "soon", "", "1x"] {
            let err = Retention::parse(bad).unwrap_err();
            assert!(err.contains("30d"), "{bad}: {err}");
        }
    }
}
