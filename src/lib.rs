//! # servio-webhooks
//!
//! The outgoing-webhook runtime of the Servio restaurant platform: every published order, table
//! and inventory event reaches every endpoint that subscribed to it, durably (committed before
//! `publish` returns), signed (Standard Webhooks), retried with exponential backoff and jitter,
//! and without one slow or dead endpoint holding back the others.
//!
//! It runs embedded in an actix-web application ([`Webhooks::start`], [`Webhooks::publish`],
//! [`Webhooks::configure`]) or standalone (`servio-webhooks serve`), as one node on SQLite or as
//! several nodes (the app's replicas) on one PostgreSQL database.
//!
//! ## Embedding
//!
//! ```no_run
//! use actix_web::{App, HttpResponse, HttpServer, web};
//! use servio_webhooks::{Settings, Webhooks};
//!
//! async fn create_order(webhooks: web::Data<Webhooks>) -> HttpResponse {
//!     // Returns once the event and one delivery per subscribed webhook are committed.
//!     match webhooks.publish("order.created", serde_json::json!({"orderId": "ord_1"})).await {
//!         Ok(receipt) => HttpResponse::Created().json(receipt),
//!         Err(e) if e.is_client_error() => HttpResponse::BadRequest().body(e.to_string()),
//!         Err(e) => HttpResponse::ServiceUnavailable().body(e.to_string()),
//!     }
//! }
//!
//! #[actix_web::main]
//! async fn main() -> anyhow::Result<()> {
//!     let settings = Settings {
//!         database_url: "sqlite://webhooks.db".into(),
//!         admin_token: Some("change-me".into()), // /v1 needs `Authorization: Bearer change-me`
//!         ..Settings::default()
//!     };
//!     let webhooks = Webhooks::start(settings).await?; // inside this app's actix System
//!     let routes = webhooks.configure(); // /v1/…, /metrics, /healthz, /openapi.json
//!     let data = web::Data::new(webhooks.clone());
//!     let server = HttpServer::new(move || {
//!         App::new().app_data(data.clone()).route("/orders", web::post().to(create_order)).configure(routes.clone())
//!     })
//!     .disable_signals() // let the subsystem drain on SIGTERM (see `app::shutdown_signal`)
//!     .bind(("127.0.0.1", 3000))?
//!     .run();
//!     let handle = server.handle();
//!     actix_web::rt::spawn(server);
//!     servio_webhooks::app::shutdown_signal().await;
//!     handle.stop(true).await;
//!     webhooks.shutdown().await; // in-flight attempts finish, everything is committed
//!     Ok(())
//! }
//! ```
//!
//! ## Module map
//! - [`app`]: the [`Webhooks`] handle: start, publish, register, mount routes, shut down.
//! - [`delivery`]: the actors: dispatcher (registry, fan-out), one supervised endpoint actor per
//!   webhook (attempts, retry timer, breaker, bounded window), ledger (group commit).
//! - `cluster`: which node owns which webhook (membership, leases, balancing, fencing).
//! - [`store`]: the persistence trait and its SQLite (embedded, one node) and PostgreSQL (several
//!   nodes) implementations.
//! - [`replay`]: retrying a delivery and recovering a window of failed ones (background batches).
//! - [`retry`]: the pure retry policy (schedule) and outcome classification (verdict).
//! - [`signing`]: Standard Webhooks signatures, and [`signing::verify`] for receivers.
//! - [`catalog`]: known event types and per-webhook subscriptions.
//! - [`model`]: ids, clocks, registrations and their validation.
//! - [`api`]: the REST routes, `/metrics` and `/healthz`.
//! - [`metrics`]: metric names and the Prometheus recorder.
//! - [`config`]: [`Settings`] and the seed's `WEBHOOK_URLS` registry.

pub mod api;
pub mod app;
pub mod catalog;
mod cluster;
pub mod config;
pub mod delivery;
pub mod metrics;
pub mod model;
pub mod replay;
pub mod retry;
pub mod signing;
pub mod store;

pub use app::{PublishError, PublishReceipt, RegisterError, StartError, WebhookInfo, Webhooks};
pub use config::Settings;
pub use model::WebhookSpec;
pub use retry::{Jitter, RetryConfig};
pub use signing::{VerifyError, verify};
