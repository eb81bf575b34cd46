//! Endpoint health, written by the endpoint actor and read by the REST API and the dispatcher
//! without a message round trip (atomics, no locks).

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, Ordering::Relaxed};

use serde::Serialize;

/// What an endpoint is doing, as `GET /v1/webhooks/{id}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EndpointState {
    /// Nothing is held back (failures since the last success, if any, are in
    /// `consecutiveFailures`; with the breaker still open, the next delivery goes out as its probe).
    Healthy,
    /// Attempts failed and retries wait for their time.
    BackingOff,
    /// The breaker is open: deliveries wait without spending attempts while single probes test
    /// the endpoint (or its cool-down runs).
    Paused,
    /// 410 Gone or failing too long; receives nothing until re-registered.
    Disabled,
}

impl EndpointState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::BackingOff,
            2 => Self::Paused,
            3 => Self::Disabled,
            _ => Self::Healthy,
        }
    }
}

/// Live health of one endpoint.
#[derive(Debug, Default)]
pub struct Health {
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    last_success_ms: AtomicI64,
    last_failure_ms: AtomicI64,
    restarts: AtomicU32,
}

/// A point-in-time copy of [`Health`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Current state.
    pub state: EndpointState,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
    /// Last successful attempt, Unix ms.
    pub last_success_ms: Option<i64>,
    /// Last failed attempt, Unix ms.
    pub last_failure_ms: Option<i64>,
    /// Supervised restarts of the endpoint actor since the process started.
    pub restarts: u32,
}

impl Health {
    pub(crate) fn disabled() -> Self {
        let h = Self::default();
        h.state.store(3, Relaxed);
        h
    }

    pub(crate) fn set_state(&self, s: EndpointState) {
        self.state.store(s as u8, Relaxed);
    }

    pub(crate) fn is_disabled(&self) -> bool {
        self.state.load(Relaxed) == EndpointState::Disabled as u8
    }

    pub(crate) fn record_success(&self, at_ms: i64) {
        self.consecutive_failures.store(0, Relaxed);
        self.last_success_ms.store(at_ms, Relaxed);
    }

    pub(crate) fn record_failure(&self, at_ms: i64, consecutive: u32) {
        self.consecutive_failures.store(consecutive, Relaxed);
        self.last_failure_ms.store(at_ms, Relaxed);
    }

    pub(crate) fn clear_failures(&self) {
        self.consecutive_failures.store(0, Relaxed);
    }

    pub(crate) fn record_restart(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// Reads the current values.
    pub fn snapshot(&self) -> HealthSnapshot {
        let opt = |v: i64| (v != 0).then_some(v);
        HealthSnapshot {
            state: EndpointState::from_u8(self.state.load(Relaxed)),
            consecutive_failures: self.consecutive_failures.load(Relaxed),
            last_success_ms: opt(self.last_success_ms.load(Relaxed)),
            last_failure_ms: opt(self.last_failure_ms.load(Relaxed)),
            restarts: self.restarts.load(Relaxed),
        }
    }
}
