//! # servio-webhooks
//!
//! The outgoing-webhook runtime of the Servio restaurant platform: every published order, table
//! and inventory event reaches every endpoint that subscribed to it, durably (committed before
//! `publish` returns), signed (Standard Webhooks), retried with exponential backoff and jitter,
//! and without one slow or dead endpoint holding back the others.
//!
//! It runs embedded in an actix-web application ([`Webhooks::start`], [`Webhooks::publish`],
//! [`Webhooks::configure`]) or standalone (`servio-webhooks serve`).
//!
//! ## Module map
//! - [`app`]: the [`Webhooks`] handle: start, publish, register, mount routes, shut down.
//! - [`delivery`]: the actors: dispatcher (registry, fan-out), one supervised endpoint actor per
//!   webhook (attempts, retry timer, breaker, bounded window), ledger (group commit).
//! - `cluster`: which node owns which webhook (membership, leases, balancing, fencing).
//! - [`store`]: the persistence trait and its SQLite (embedded, one node) and PostgreSQL (several
//!   nodes) implementations.
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
pub mod retry;
pub mod signing;
pub mod store;

pub use app::{PublishError, PublishReceipt, RegisterError, StartError, WebhookInfo, Webhooks};
pub use config::Settings;
pub use model::WebhookSpec;
pub use retry::{Jitter, RetryConfig};
pub use signing::{VerifyError, verify};
