//! `servio-webhooks serve`: the standalone server. Flags mirror the `WEBHOOKS_*` environment
//! variables; the seed's `WEBHOOK_URLS` registry is read from the environment at start.

use std::io::IsTerminal as _;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};

use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, bail};
use clap::{ArgAction, ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use servio_webhooks::Webhooks;
use servio_webhooks::config::Settings;
use servio_webhooks::config::vars::{Kind, VARS};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// mimalloc: a quarter less CPU per delivery than glibc's allocator on the load harness
/// (BENCHMARKS.md). The library does not choose an allocator; an embedding host does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc marks its arenas for transparent huge pages (`MADV_HUGEPAGE`), which a kernel set to
/// `madvise` honours: the RSS then grows in 2 MiB steps and keeps pages that are only partly used.
/// A fleet of 100 000 idle webhooks took about 3.8 KB each with them and 2.7 KB without, with no
/// CPU difference on the load harness (BENCHMARKS.md, "Receipts, memory and retention's index").
/// So the server turns them off for its process, unless `MIMALLOC_ALLOW_THP` is set (mimalloc's
/// own switch, which then decides).
fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // Best effort: a kernel without the prctl keeps its default.
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}

#[derive(Parser)]
#[command(name = "servio-webhooks", version, about = "Durable, signed, retried outgoing webhooks for Servio")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the webhook server (admin REST API, /metrics, /healthz, delivery). Every setting is a
    /// flag and a `WEBHOOKS_*` variable; an embedding host reads the same variables with
    /// `Settings::from_env()`.
    Serve(ServeArgs),
}

/// The flags of `serve` alone; the settings' flags are added from [`VARS`] by [`setting_args`].
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WEBHOOKS_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// HTTP worker threads for the API (default: one per core).
    #[arg(long, env = "WEBHOOKS_HTTP_WORKERS")]
    http_workers: Option<usize>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `servio_webhooks=debug`. Unless it is
    /// `debug` or `trace` or names `actix_http`, actix-http's per-connection errors (a malformed
    /// request is logged at ERROR) are left out.
    #[arg(long, env = "WEBHOOKS_LOG", default_value = "info")]
    log: String,
    /// `text` (colored on a terminal) or `json` (one object per line, for log collectors).
    #[arg(long, env = "WEBHOOKS_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

/// One flag per setting variable, reading the variable when the flag is absent.
fn setting_args(serve: clap::Command) -> clap::Command {
    serve.args(VARS.iter().map(|var| {
        let arg = clap::Arg::new(var.flag).long(var.flag).env(var.name).help(var.help).action(ArgAction::Set);
        match var.kind {
            Kind::Bool => arg.num_args(0..=1).default_missing_value("true").value_name("BOOL"),
            Kind::List => arg.value_name("LIST"),
            Kind::Secret => arg.hide_env_values(true).value_name("SECRET"),
            Kind::Value => arg.value_name("VALUE"),
        }
    }))
}

/// The settings from the flags (or their variables) over the defaults, through the same table as
/// `Settings::from_env`; the seed's `WEBHOOK_URLS` registry from the environment.
/// An error about a value given as a flag names the flag.
fn settings(matches: &ArgMatches) -> anyhow::Result<Settings> {
    let var = |name: &str| VARS.iter().find(|v| v.name == name);
    Settings::from_vars(|name| match var(name) {
        Some(var) => matches.get_one::<String>(var.flag).cloned(),
        None => std::env::var(name).ok(),
    })
    .map_err(|mut e| {
        if let Some(v) = var(&e.name)
            && matches.value_source(v.flag) == Some(clap::parser::ValueSource::CommandLine)
        {
            e.name = format!("--{}", v.flag);
        }
        e.into()
    })
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

fn init_logging(args: &ServeArgs) -> anyhow::Result<()> {
    let filter = log_filter(&args.log)?;
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if args.log_format == "json" {
        logs.json().flatten_event(true).with_current_span(false).init();
    } else {
        logs.with_ansi(std::io::stdout().is_terminal()).init();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    without_transparent_huge_pages();
    let matches = Cli::command().mut_subcommand("serve", setting_args).get_matches();
    let Command::Serve(args) = Cli::from_arg_matches(&matches)?.command;
    let serve_matches = matches.subcommand_matches("serve").context("no subcommand")?;
    init_logging(&args)?;
    let mut settings = settings(serve_matches)?;
    let addrs: Vec<SocketAddr> =
        args.bind.to_socket_addrs().with_context(|| format!("cannot resolve bind address `{}`", args.bind))?.collect();
    if settings.admin_token.is_none() && addrs.iter().any(|a| !a.ip().is_loopback()) {
        bail!("WEBHOOKS_ADMIN_TOKEN is required when binding beyond loopback ({})", args.bind);
    }
    // Loopback only and no token: the admin API is open to local callers (the curl walk-through).
    if settings.admin_token.is_none() && serve_matches.value_source("open-admin-api").is_none() {
        settings.open_admin_api = true;
    }
    // Listen before the store is opened: a taken port fails at once and touches nothing.
    let listeners = addrs
        .iter()
        .map(|a| TcpListener::bind(a).with_context(|| format!("cannot listen on {a}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let workers = args.http_workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    actix_web::rt::System::new().block_on(async move {
        let webhooks = Webhooks::start(settings).await.context("could not start the webhook subsystem")?;
        let routes = webhooks.configure();
        let mut server = HttpServer::new(move || {
            App::new().configure(routes.clone()).default_service(web::to(servio_webhooks::api::not_found))
        })
        .workers(workers)
        .shutdown_timeout(5)
        // actix-server's own signal handling stops the whole actix System, which would kill the
        // delivery actors before they drain; we handle the signals ourselves below.
        .disable_signals();
        for listener in listeners {
            server = server.listen(listener).context("cannot serve on the listener")?;
        }
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
