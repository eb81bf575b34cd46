//! An endpoint's rate limit (`rateLimitPerSecond`): a token bucket, as a pure type, and the
//! [`Pacer`] that keeps one bucket per lease tenure.
//!
//! Every attempt (first tries, retries and breaker probes alike: the receiver sees requests)
//! takes one token. The bucket holds at most `burst = max(1, ceil(rate))` tokens and refills at
//! `rate` tokens a second, so over any interval of `t` seconds at most `burst + rate × t`
//! attempts start. An attempt without a token waits for one; it is never failed for it.
//!
//! Times are milliseconds of a monotonic clock, passed in ([`monotonic_ms`] in production, any
//! numbers in tests): nothing here reads a clock.
//!
//! Across nodes: only the node holding a webhook's lease runs its endpoint actor, and the
//! previous holder's attempts have all ended before the lease moves (hand-over drains; a node that
//! cannot renew stops starting attempts before its lease can run out). A [`Pacer`] is created
//! when this node takes the lease and its bucket starts *empty* at that moment, so whatever the
//! previous owner sent just before, the limit holds across the move. It lives in the
//! dispatcher's entry, not in the actor: hibernating and waking, or a supervised restart, keep the
//! bucket (a restart must not be a way to burst).

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

/// Milliseconds of this process's monotonic clock (immune to wall-clock steps).
pub(crate) fn monotonic_ms() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// Tokens an endpoint limited to `rate` attempts a second may save up: `max(1, ceil(rate))`.
pub(crate) fn burst_for(rate: f64) -> f64 {
    rate.ceil().max(1.0)
}

/// The longest single wait reported; a longer one (a rate far below one a day) is waited out in
/// steps of this, so no timer arithmetic can overflow.
const MAX_WAIT_MS: i64 = 24 * 3600 * 1000;

/// Float slack for token counts and waits (refills are computed from whole milliseconds), far
/// below one token.
const EPSILON: f64 = 1e-6;

/// A token bucket: `rate` tokens a second, at most `burst` saved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at_ms: i64,
}

impl TokenBucket {
    /// An empty bucket at `now_ms`: its first token comes `1 / rate` seconds later.
    pub(crate) fn empty(rate: f64, now_ms: i64) -> Self {
        Self { rate, burst: burst_for(rate), tokens: 0.0, at_ms: now_ms }
    }

    /// The configured rate, tokens per second.
    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// Adds what `now_ms` brings. A clock that went back refills nothing (and restarts the count
    /// from there).
    fn refill(&mut self, now_ms: i64) {
        let elapsed = (now_ms - self.at_ms).max(0);
        self.tokens = (self.tokens + elapsed as f64 * self.rate / 1000.0).min(self.burst);
        self.at_ms = now_ms;
    }

    /// Changes the rate from `now_ms` on: what was saved at the old rate is kept, up to the new
    /// burst.
    pub(crate) fn set_rate(&mut self, rate: f64, now_ms: i64) {
        self.refill(now_ms);
        self.rate = rate;
        self.burst = burst_for(rate);
        self.tokens = self.tokens.min(self.burst);
    }

    /// Takes a token at `now_ms`; or, when there is none, `Err` with when the next one will be
    /// there (at most [`MAX_WAIT_MS`] ahead).
    pub(crate) fn try_take(&mut self, now_ms: i64) -> Result<(), i64> {
        self.refill(now_ms);
        if self.tokens + EPSILON >= 1.0 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait_ms = ((1.0 - self.tokens) * 1000.0 / self.rate - EPSILON).ceil();
        let wait_ms = if wait_ms.is_finite() { (wait_ms as i64).clamp(1, MAX_WAIT_MS) } else { MAX_WAIT_MS };
        Err(now_ms.saturating_add(wait_ms))
    }

    /// Gives back a token taken for an attempt that did not start after all.
    pub(crate) fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(self.burst);
    }
}

/// One lease tenure's rate limiting for an endpoint, shared by the dispatcher's entry and the
/// endpoint actor (see the module documentation). The bucket is made at the first attempt under
/// a limit, empty as of the moment the tenure began (or the last attempt made without a limit)
/// and refilled since; a changed limit carries on from the bucket there is.
#[derive(Debug)]
pub(crate) struct Pacer(Mutex<PacerState>);

#[derive(Debug)]
struct PacerState {
    /// Nothing was sent unlimited after this: a new bucket starts empty here.
    since_ms: i64,
    /// Boxed: most endpoints have no limit, and every endpoint of a fleet keeps a pacer (48
    /// bytes allocated for it instead of 80).
    bucket: Option<Box<TokenBucket>>,
}

impl Pacer {
    /// A tenure that began at `now_ms`.
    pub(crate) fn new(now_ms: i64) -> Self {
        Self(Mutex::new(PacerState { since_ms: now_ms, bucket: None }))
    }

    /// A token for an attempt at `now_ms` under `rate` (`None`: no limit, and any bucket is
    /// forgotten, so a limit set again later starts empty); `Err` with when to ask again.
    pub(crate) fn take(&self, rate: Option<f64>, now_ms: i64) -> Result<(), i64> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rate) = rate else {
            state.bucket = None;
            state.since_ms = now_ms;
            return Ok(());
        };
        let since = state.since_ms.min(now_ms);
        let bucket = state.bucket.get_or_insert_with(|| Box::new(TokenBucket::empty(rate, since)));
        if bucket.rate() != rate {
            bucket.set_rate(rate, now_ms);
        }
        bucket.try_take(now_ms)
    }

    /// Gives back the token of an attempt that did not start.
    pub(crate) fn refund(&self) {
        if let Some(b) = self.0.lock().unwrap_or_else(|e| e.into_inner()).bucket.as_mut() {
            b.refund();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes tokens every millisecond from `from` to `to` (exclusive) and returns when each was
    /// granted.
    fn drain(b: &mut TokenBucket, from: i64, to: i64) -> Vec<i64> {
        (from..to).filter(|&t| b.try_take(t).is_ok()).collect()
    }

    #[test]
    fn burst_is_the_rate_rounded_up_and_at_least_one() {
        assert_eq!(burst_for(0.2), 1.0);
        assert_eq!(burst_for(1.0), 1.0);
        assert_eq!(burst_for(4.0), 4.0);
        assert_eq!(burst_for(2.5), 3.0);
        assert_eq!(burst_for(10_000.0), 10_000.0);
    }

    #[test]
    fn an_empty_bucket_grants_at_the_rate_and_says_when() {
        let mut b = TokenBucket::empty(4.0, 0);
        assert_eq!(b.try_take(0), Err(250), "empty: the first token after 1/rate");
        assert_eq!(b.try_take(249), Err(250));
        assert_eq!(b.try_take(250), Ok(()));
        assert_eq!(b.try_take(250), Err(500));
        assert_eq!(drain(&mut b, 251, 1_251), [500, 750, 1_000, 1_250]);
    }

    #[test]
    fn no_interval_grants_more_than_burst_plus_rate_times_its_length() {
        for rate in [0.5, 1.0, 3.0, 4.0, 7.5, 50.0] {
            let mut b = TokenBucket::empty(rate, 0);
            // Idle long enough to fill up, then ask every millisecond.
            let grants = drain(&mut b, 10_000, 20_000);
            let bound = (burst_for(rate) + rate).floor() as usize;
            for (i, &start) in grants.iter().enumerate() {
                let in_window = grants[i..].iter().take_while(|&&t| t < start + 1_000).count();
                assert!(in_window <= bound, "rate {rate}: {in_window} grants in 1 s from {start}, bound {bound}");
            }
            // And the long-run rate is the configured one.
            let expected = burst_for(rate) + rate * 10.0;
            assert!((grants.len() as f64 - expected).abs() <= 1.0, "rate {rate}: {} grants", grants.len());
        }
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_the_rate() {
        let mut b = TokenBucket::empty(2.5, 0);
        assert_eq!(drain(&mut b, 5_000, 5_001).len(), 1, "one per millisecond asked");
        let mut b = TokenBucket::empty(2.5, 0);
        let burst: Vec<_> = (0..5).map(|_| b.try_take(5_000).is_ok()).collect();
        assert_eq!(burst, [true, true, true, false, false], "burst 3 = ceil(2.5)");
        assert_eq!(b.try_take(5_000), Err(5_400));
    }

    #[test]
    fn rate_changes_keep_savings_up_to_the_new_burst_and_refunds_return_a_token() {
        let mut b = TokenBucket::empty(10.0, 0);
        b.refill(10_000);
        assert_eq!(b.tokens, 10.0);
        b.set_rate(2.0, 10_000);
        assert_eq!(b.tokens, 2.0, "clamped to the new burst");
        assert!(b.try_take(10_000).is_ok() && b.try_take(10_000).is_ok());
        assert_eq!(b.try_take(10_000), Err(10_500));
        b.refund();
        assert!(b.try_take(10_000).is_ok(), "a refunded token can be taken again");
    }

    #[test]
    fn a_clock_going_back_refills_nothing_and_tiny_rates_do_not_overflow() {
        let mut b = TokenBucket::empty(1.0, 5_000);
        assert_eq!(b.try_take(1_000), Err(2_000), "counted from the earlier time");
        assert_eq!(b.try_take(2_000), Ok(()));
        let mut slow = TokenBucket::empty(1e-300, 0);
        assert_eq!(slow.try_take(0), Err(MAX_WAIT_MS));
        let mut slow = TokenBucket::empty(1e-300, i64::MAX - 5);
        assert_eq!(slow.try_take(i64::MAX - 5), Err(i64::MAX), "saturates");
    }

    /// Every endpoint of a fleet keeps a pacer; the bucket only limited ones need is out of line.
    #[test]
    fn a_pacer_without_a_limit_is_small() {
        assert!(std::mem::size_of::<Pacer>() <= 24, "{} bytes", std::mem::size_of::<Pacer>());
        let p = Pacer::new(0);
        assert_eq!(p.take(None, 5), Ok(()));
        assert!(p.0.lock().unwrap().bucket.is_none(), "no bucket without a limit");
        assert_eq!(p.take(Some(1.0), 5), Err(1_005));
        assert!(p.0.lock().unwrap().bucket.is_some());
    }

    #[test]
    fn a_pacer_starts_empty_at_its_tenure_and_forgets_a_removed_limit() {
        let p = Pacer::new(1_000);
        assert_eq!(p.take(None, 1_000), Ok(()), "no limit");
        assert_eq!(p.take(Some(2.0), 1_200), Err(1_500), "empty as of the tenure's start");
        assert_eq!(p.take(Some(2.0), 1_500), Ok(()));
        assert_eq!(p.take(Some(2.0), 1_500), Err(2_000));
        p.refund();
        assert_eq!(p.take(Some(2.0), 1_500), Ok(()));
        // Unlimited, then limited again: no saved tokens from before.
        assert_eq!(p.take(None, 60_000), Ok(()));
        assert_eq!(p.take(Some(1.0), 60_000), Err(61_000), "empty as of the last unlimited attempt");
    }
}
