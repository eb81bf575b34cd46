//! When an owner may still start attempts, as a pure value over a monotonic clock.
//!
//! Leases run on the store's clock (PostgreSQL's, so nodes with skewed clocks agree), but a node
//! must decide on its own clock whether its leases are still good, including while the database
//! does not answer. It counts from the moment it *sent* the last heartbeat that renewed them:
//! the store set their expiry to its own `now + ttl` after that moment, so
//! `sent + ttl` on the node's monotonic clock is never later than the real expiry.
//!
//! - Before `sent + ttl − margin` the node starts attempts freely.
//! - From then on it starts none (an attempt started now could outlive the lease).
//! - At `sent + ttl` its leases may be taken by another node: it abandons everything it was
//!   doing for them (on a shared store), so two nodes never send one webhook's deliveries at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The lease timing of one node: renewed by each successful heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LeaseTimes {
    /// Send time of the last heartbeat that renewed the leases.
    pub(crate) renewed_at: Instant,
    /// Lease time granted by each renewal.
    pub(crate) ttl: Duration,
    /// How long before the end no new attempt starts.
    pub(crate) margin: Duration,
}

impl LeaseTimes {
    /// The margin for a lease time: a quarter of it, so a node that misses renewals for three
    /// quarters of the lease time stops starting attempts and has the last quarter to finish.
    pub(crate) fn margin_for(ttl: Duration) -> Duration {
        ttl / 4
    }

    /// From this instant on, no attempt may start.
    pub(crate) fn stop_starting_at(&self) -> Instant {
        self.renewed_at + self.ttl.saturating_sub(self.margin)
    }

    /// From this instant on, other nodes may hold the leases.
    pub(crate) fn expires_at(&self) -> Instant {
        self.renewed_at + self.ttl
    }

    /// Whether the leases may already belong to someone else at `now`.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        now >= self.expires_at()
    }

    /// A renewal sent at `sent` succeeded. A reply to an older heartbeat never moves it back.
    pub(crate) fn renewed(&mut self, sent: Instant) {
        if sent > self.renewed_at {
            self.renewed_at = sent;
        }
    }
}

/// [`LeaseTimes::stop_starting_at`] shared lock-free with every endpoint actor of the node, which
/// checks it before each attempt. Stored as nanoseconds after a fixed origin instant.
#[derive(Debug)]
pub(crate) struct LeaseGuard {
    origin: Instant,
    stop_starting_at_ns: AtomicU64,
}

impl LeaseGuard {
    /// A guard that lets attempts start until `times` says otherwise.
    pub(crate) fn new(times: &LeaseTimes) -> Self {
        let origin = times.renewed_at;
        let guard = Self { origin, stop_starting_at_ns: AtomicU64::new(0) };
        guard.update(times);
        guard
    }

    /// Publishes new lease times.
    pub(crate) fn update(&self, times: &LeaseTimes) {
        let ns = times.stop_starting_at().saturating_duration_since(self.origin).as_nanos() as u64;
        self.stop_starting_at_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Whether an attempt may start now.
    pub(crate) fn may_start(&self) -> bool {
        let now = Instant::now().saturating_duration_since(self.origin).as_nanos() as u64;
        now < self.stop_starting_at_ns.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(at: Instant) -> LeaseTimes {
        LeaseTimes {
            renewed_at: at,
            ttl: Duration::from_secs(10),
            margin: LeaseTimes::margin_for(Duration::from_secs(10)),
        }
    }

    #[test]
    fn attempts_stop_a_margin_before_the_lease_ends() {
        let t0 = Instant::now();
        let l = times(t0);
        assert!(t0 < l.stop_starting_at());
        assert!(t0 + Duration::from_millis(7_499) < l.stop_starting_at());
        assert_eq!(l.stop_starting_at(), t0 + Duration::from_millis(7_500), "three quarters in, nothing new starts");
        assert!(!l.expired(t0 + Duration::from_millis(9_999)));
        assert!(l.expired(t0 + Duration::from_secs(10)), "at the lease time others may hold it");
    }

    #[test]
    fn renewal_counts_from_the_send_time_and_never_goes_back() {
        let t0 = Instant::now();
        let mut l = times(t0);
        l.renewed(t0 + Duration::from_secs(5));
        assert!(t0 + Duration::from_millis(12_000) < l.stop_starting_at());
        l.renewed(t0 + Duration::from_secs(1)); // a late reply to an older heartbeat
        assert_eq!(l.renewed_at, t0 + Duration::from_secs(5));
    }

    #[test]
    fn the_shared_guard_follows_renewals() {
        let ttl = Duration::from_secs(10);
        let margin = LeaseTimes::margin_for(ttl);
        let long_ago = Instant::now().checked_sub(Duration::from_secs(8)).expect("uptime over 8 s");
        let mut l = LeaseTimes { renewed_at: long_ago, ttl, margin };
        let g = LeaseGuard::new(&l);
        assert!(!g.may_start(), "8 s without renewal of a 10 s lease: attempts stop");
        l.renewed(Instant::now());
        g.update(&l);
        assert!(g.may_start(), "a renewal lets them start again");
    }
}
