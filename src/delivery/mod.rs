//! The actor topology that moves events from `publish` to every subscribed endpoint.
//!
//! ```text
//! publish ──► DispatcherActor ──PersistEvent──► LedgerActor ──group commit──► Store ──► other nodes
//!                  ▲                                │                              (NOTIFY: new work)
//!                  └──────────── Committed ◄────────┘
//!                  │ Deliver (one batch per endpoint this node owns)
//!                  ▼
//!   EndpointActor × owned webhooks (supervised, spread over arbiters)
//!     window of due deliveries → signed attempts (≤ maxInFlight) → decide → retry timer
//!     └── outcomes (fenced by the lease epoch) ──► per-thread outbox ──LedgerOps──► LedgerActor
//! ```
//!
//! Which webhooks this node owns is decided by `crate::cluster`'s node actor, which tells the
//! dispatcher (own, release, lost) and wakes endpoints when the store holds work for them.
//!
//! - [`dispatcher`]: the registry (every webhook, and an endpoint actor for those this node owns)
//!   and fan-out. It never waits on an endpoint: once the ledger has committed, fan-out is one
//!   message per endpoint.
//! - [`endpoint`]: the only code that talks to one endpoint; owns its in-flight limit, retry timer,
//!   breaker, and a bounded window of its due deliveries (the rest wait in the store).
//! - [`ledger`]: batches every write of the delivery path into group commits.
//! - `outbox`: the endpoints' records for the ledger, gathered per arbiter thread into one message
//!   per turn of its runtime.
//! - [`client`]: one HTTP attempt, reduced to an [`crate::retry::AttemptOutcome`].
//! - [`breaker`]: the pure pause/probe state machine.
//! - [`health`]: endpoint state shared lock-free with the REST API.

pub mod breaker;
pub mod client;
pub mod dispatcher;
pub mod endpoint;
pub mod faults;
pub mod health;
pub mod ledger;
pub(crate) mod outbox;
pub mod write_health;

use std::sync::Arc;

use actix::Addr;
use bytes::Bytes;
use http::header::HeaderValue;

use crate::config::Settings;
use crate::store::Store;

/// What every actor shares: settings, the store and the ledger.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    /// This node's id.
    pub(crate) node_id: Arc<str>,
    /// Whether this node's leases are fresh enough to start attempts (see [`crate::cluster::lease`]).
    pub(crate) lease: Arc<crate::cluster::lease::LeaseGuard>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ledger: Addr<ledger::LedgerActor>,
    /// Permits for attempts in flight across all endpoints (`max_total_in_flight`).
    pub(crate) attempt_permits: Arc<tokio::sync::Semaphore>,
    /// Permits failing endpoints need besides a global one: half as many, so hanging endpoints
    /// can never take every permit from healthy ones.
    pub(crate) suspect_permits: Arc<tokio::sync::Semaphore>,
    /// Opens delivery connections (DNS guard, TLS).
    pub(crate) connector: Arc<client::Connector>,
    /// Test hooks (nothing armed in production).
    pub(crate) faults: Arc<faults::Faults>,
    /// Whether the write side keeps up (publishes and attempts back off while it does not).
    pub(crate) writes: Arc<write_health::WriteHealth>,
    /// Body bytes held in all endpoint windows of this node, against `delivery.window_bytes`.
    pub(crate) window_bytes: Arc<endpoint::window::ByteBudget>,
    /// One envelope (body and header values) per event, shared by the windows holding it.
    pub(crate) envelopes: Envelopes,
    /// The headers every attempt carries (see [`endpoint::base_headers`]).
    pub(crate) base_headers: Arc<http::HeaderMap>,
    /// The unlabelled pending series, when the webhook label is off.
    pub(crate) pending_series: crate::metrics::PendingSeries,
}

/// One published event as the endpoint actors hold it, shared by all its deliveries.
/// Header values are built once here rather than once per attempt.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub(crate) id: Box<str>,
    pub(crate) body: Bytes,
    pub(crate) created_at_ms: i64,
    pub(crate) h_id: HeaderValue,
    pub(crate) h_event: HeaderValue,
    pub(crate) h_timestamp: HeaderValue,
}

impl Envelope {
    pub(crate) fn new(id: &str, event_type: &str, timestamp: &str, body: Bytes, created_at_ms: i64) -> Self {
        let hv = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""));
        Self { id: id.into(), body, created_at_ms, h_id: hv(id), h_event: hv(event_type), h_timestamp: hv(timestamp) }
    }
}

/// A pending delivery in an endpoint actor's window.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: Box<str>,
    pub(crate) envelope: Arc<Envelope>,
    /// Attempts already made.
    pub(crate) attempts: u32,
    /// Of those, failed breaker probes (not counted against the retry budget).
    pub(crate) probes: u32,
    /// When the next attempt is due, Unix ms.
    pub(crate) due_ms: i64,
}

/// The envelopes of events held in windows, by event id, so that the deliveries of one event
/// paged in by different endpoints share one copy of its body.
#[derive(Debug, Default)]
pub(crate) struct Envelopes {
    map: std::sync::Mutex<std::collections::HashMap<Box<str>, std::sync::Weak<Envelope>>>,
}

impl Envelopes {
    /// A pending delivery as loaded from the store, sharing its event's envelope if another
    /// window holds it already.
    pub(crate) fn pending(&self, p: crate::store::PendingDelivery) -> Pending {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let envelope = match map.get(p.event_id.as_str()).and_then(std::sync::Weak::upgrade) {
            Some(env) => env,
            None => {
                let env = Arc::new(Envelope::new(&p.event_id, &p.event_type, &p.timestamp, p.payload, p.created_at_ms));
                if map.len() >= 4096 {
                    map.retain(|_, w| w.strong_count() > 0); // forget events nobody holds
                }
                map.insert(p.event_id.into_boxed_str(), Arc::downgrade(&env));
                env
            }
        };
        Pending { id: p.id.into(), envelope, attempts: p.attempts, probes: p.probes, due_ms: p.next_attempt_at_ms }
    }
}
