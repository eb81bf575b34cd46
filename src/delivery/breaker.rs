//! The per-endpoint circuit breaker as a pure state machine (times in Unix ms, passed in).
//!
//! Closed: attempts flow up to the in-flight limit. After `failure_threshold` consecutive failed
//! attempts it opens: deliveries wait without spending attempts, and one probe goes out once the
//! cool-down has passed. A successful probe (or any success) closes it; a failed probe doubles the
//! cool-down up to `max_cooldown`. Failing without a success for `disable_after` means disable.

use std::time::Duration;

use crate::config::BreakerSettings;
use crate::store::{BreakerRecord, StoredHealth};

/// What the breaker allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    /// Normal attempts.
    Flow,
    /// Exactly one probe attempt.
    Probe,
    /// Nothing until `retry_at_ms`.
    Wait { retry_at_ms: i64 },
}

/// Breaker state for one endpoint.
#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    consecutive_failures: u32,
    failing_since_ms: Option<i64>,
    open: Option<Open>,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    cooldown: Duration,
    probe_at_ms: i64,
    probing: bool,
}

impl Breaker {
    pub(crate) fn new(settings: BreakerSettings) -> Self {
        Self { settings, consecutive_failures: 0, failing_since_ms: None, open: None }
    }

    /// The breaker as an earlier owner (or run) left it in the store: a paused endpoint stays
    /// paused and a failing streak keeps counting towards `disable_after`.
    pub(crate) fn restore(settings: BreakerSettings, stored: &StoredHealth) -> Self {
        let open = stored.breaker.map(|b| Open {
            cooldown: Duration::from_millis(b.cooldown_ms)
                .clamp(settings.cooldown.min(settings.max_cooldown), settings.max_cooldown),
            probe_at_ms: b.probe_at_ms,
            probing: false,
        });
        Self {
            settings,
            consecutive_failures: stored.consecutive_failures,
            failing_since_ms: stored.failing_since_ms,
            open,
        }
    }

    /// The open breaker as stored, if open.
    pub(crate) fn record(&self) -> Option<BreakerRecord> {
        self.open.map(|o| BreakerRecord { probe_at_ms: o.probe_at_ms, cooldown_ms: o.cooldown.as_millis() as u64 })
    }

    /// When the next probe may go out, while open.
    pub(crate) fn probe_at_ms(&self) -> Option<i64> {
        self.open.map(|o| o.probe_at_ms)
    }

    /// First failure of the current streak, Unix ms.
    pub(crate) fn failing_since_ms(&self) -> Option<i64> {
        self.failing_since_ms
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether an attempt may start now, given how many are in flight.
    pub(crate) fn permit(&self, now_ms: i64, in_flight: usize) -> Permit {
        match self.open {
            None => Permit::Flow,
            Some(o) if o.probing || in_flight > 0 => Permit::Wait { retry_at_ms: i64::MAX },
            Some(o) if now_ms >= o.probe_at_ms => Permit::Probe,
            Some(o) => Permit::Wait { retry_at_ms: o.probe_at_ms },
        }
    }

    /// Marks the probe as started.
    pub(crate) fn probe_started(&mut self) {
        if let Some(o) = &mut self.open {
            o.probing = true;
        }
    }

    /// A 2xx: close and forget the streak.
    pub(crate) fn on_success(&mut self) {
        self.consecutive_failures = 0;
        self.failing_since_ms = None;
        self.open = None;
    }

    /// A failed attempt (`was_probe` if it was the probe). Returns true when this opened the breaker.
    pub(crate) fn on_failure(&mut self, now_ms: i64, was_probe: bool) -> bool {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failing_since_ms.get_or_insert(now_ms);
        match &mut self.open {
            Some(o) => {
                if was_probe {
                    o.probing = false;
                    o.cooldown = (o.cooldown * 2).min(self.settings.max_cooldown);
                    o.probe_at_ms = now_ms + o.cooldown.as_millis() as i64;
                }
                false
            }
            None if self.consecutive_failures >= self.settings.failure_threshold.max(1) => {
                let cooldown = self.settings.cooldown;
                self.open = Some(Open { cooldown, probe_at_ms: now_ms + cooldown.as_millis() as i64, probing: false });
                true
            }
            None => false,
        }
    }

    /// A probe that ended without a verdict on the endpoint (e.g. cancelled): allow another.
    pub(crate) fn probe_abandoned(&mut self) {
        if let Some(o) = &mut self.open {
            o.probing = false;
        }
    }

    /// Whether the endpoint has failed, without a success, for longer than `disable_after`.
    pub(crate) fn should_disable(&self, now_ms: i64) -> bool {
        match self.failing_since_ms {
            Some(since) => now_ms - since >= self.settings.disable_after.as_millis() as i64,
            None => false,
        }
    }

    /// Forgets everything (re-registration).
    pub(crate) fn reset(&mut self, settings: BreakerSettings) {
        *self = Self::new(settings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_threshold: 3,
            cooldown: Duration::from_millis(100),
            max_cooldown: Duration::from_millis(300),
            disable_after: Duration::from_millis(10_000),
        }
    }

    #[test]
    fn opens_after_threshold_and_probes_after_cooldown() {
        let mut b = Breaker::new(settings());
        assert!(!b.on_failure(0, false));
        assert!(!b.on_failure(1, false));
        assert_eq!(b.permit(1, 0), Permit::Flow);
        assert!(b.on_failure(2, false));
        assert!(b.is_open());
        assert_eq!(b.permit(50, 0), Permit::Wait { retry_at_ms: 102 });
        assert_eq!(b.permit(102, 1), Permit::Wait { retry_at_ms: i64::MAX }, "no probe while attempts are in flight");
        assert_eq!(b.permit(102, 0), Permit::Probe);
        b.probe_started();
        assert_eq!(b.permit(103, 0), Permit::Wait { retry_at_ms: i64::MAX }, "one probe at a time");
    }

    #[test]
    fn failed_probes_back_off_up_to_max_and_success_closes() {
        let mut b = Breaker::new(settings());
        for t in 0..3 {
            b.on_failure(t, false);
        }
        b.probe_started();
        b.on_failure(200, true);
        assert_eq!(b.permit(200, 0), Permit::Wait { retry_at_ms: 400 });
        b.probe_started();
        b.on_failure(400, true);
        assert_eq!(b.permit(400, 0), Permit::Wait { retry_at_ms: 700 }, "capped at max_cooldown");
        b.on_success();
        assert!(!b.is_open());
        assert_eq!(b.consecutive_failures(), 0);
        assert_eq!(b.permit(701, 0), Permit::Flow);
    }

    #[test]
    fn a_restored_breaker_stays_paused_and_keeps_its_streak() {
        let mut b = Breaker::new(settings());
        for t in 0..3 {
            b.on_failure(1_000 + t, false);
        }
        let stored = StoredHealth {
            consecutive_failures: b.consecutive_failures(),
            failing_since_ms: b.failing_since_ms(),
            breaker: b.record(),
            ..StoredHealth::default()
        };
        let r = Breaker::restore(settings(), &stored);
        assert!(r.is_open());
        assert_eq!(r.permit(1_050, 0), Permit::Wait { retry_at_ms: 1_102 }, "the probe time carries over");
        assert_eq!(r.consecutive_failures(), 3);
        assert!(r.should_disable(11_000), "failing since 1 000 still counts");
        let fresh = Breaker::restore(settings(), &StoredHealth::default());
        assert!(!fresh.is_open());
        assert_eq!(fresh.permit(0, 0), Permit::Flow);
    }

    #[test]
    fn disables_only_after_failing_long_enough() {
        let mut b = Breaker::new(settings());
        b.on_failure(1_000, false);
        assert!(!b.should_disable(10_999));
        assert!(b.should_disable(11_000));
        b.on_success();
        assert!(!b.should_disable(50_000));
    }
}
