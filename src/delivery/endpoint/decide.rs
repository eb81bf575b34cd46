//! What one attempt's outcome means for its delivery and its endpoint, as a pure function:
//! the attempt-log entry, the delivery's next step (retry at, delivered, failed), the breaker's
//! new state, and whether the endpoint must be disabled. The actor only carries it out.

use std::time::Duration;

use crate::delivery::breaker::Breaker;
use crate::delivery::health::EndpointState;
use crate::retry::{AttemptOutcome, RetryConfig, Verdict, classify};
use crate::store::NextStep;

/// Everything the decision depends on besides the outcome and the breaker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptContext<'a> {
    /// The endpoint's retry schedule.
    pub(crate) retry: &'a RetryConfig,
    /// Longest honoured `Retry-After`.
    pub(crate) retry_after_cap: Duration,
    /// The attempt's number (1-based).
    pub(crate) attempt: u32,
    /// Failed probes among the delivery's earlier attempts (they do not spend its retry budget).
    pub(crate) probes: u32,
    /// Whether it was the breaker's probe.
    pub(crate) probe: bool,
    /// When it ended, Unix ms.
    pub(crate) now_ms: i64,
    /// A uniform sample in [0, 1) for the jitter.
    pub(crate) jitter_sample: f64,
}

/// Why an endpoint is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disable {
    /// Shown in the API and on each failed delivery.
    pub(crate) reason: String,
    /// The `reason` label of the disabled metric.
    pub(crate) kind: &'static str,
}

/// The decision for one attempt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decision {
    /// Status for the attempt log, when a response came.
    pub(crate) status_code: Option<u16>,
    /// Error for the attempt log, when it did not succeed.
    pub(crate) error: Option<String>,
    /// The delivery's next step.
    pub(crate) next: NextStep,
    /// The endpoint's state after it.
    pub(crate) state: EndpointState,
    /// Set when the endpoint must be disabled (its pending deliveries fail).
    pub(crate) disable: Option<Disable>,
    /// The `error_type` label of a failed attempt.
    pub(crate) error_type: Option<&'static str>,
    /// A probe that failed and is retried at the next probe: it does not count against the
    /// delivery's retry budget.
    pub(crate) probe_failed: bool,
}

/// Decides, updating the breaker.
pub(crate) fn decide(outcome: &AttemptOutcome, ctx: AttemptContext<'_>, breaker: &mut Breaker) -> Decision {
    let verdict = classify(outcome);
    let status_code = match outcome {
        AttemptOutcome::Response { status, .. } => Some(*status),
        _ => None,
    };
    if verdict == Verdict::Delivered {
        breaker.on_success();
        return Decision {
            status_code,
            error: None,
            next: NextStep::Succeeded,
            state: EndpointState::Healthy,
            disable: None,
            error_type: None,
            probe_failed: false,
        };
    }
    let error = Some(match &verdict {
        Verdict::Gone => "HTTP 410 Gone".to_string(),
        Verdict::Retry { reason, .. } | Verdict::Fail { reason } => reason.clone(),
        Verdict::Delivered => unreachable!("handled above"),
    });
    breaker.on_failure(ctx.now_ms, ctx.probe);
    let disable = if verdict == Verdict::Gone {
        Some(Disable { reason: "endpoint answered 410 Gone".into(), kind: "gone" })
    } else if breaker.should_disable(ctx.now_ms) {
        Some(Disable { reason: "endpoint failing without a success for too long".into(), kind: "failing" })
    } else {
        None
    };
    // A failed probe tested the endpoint, not the delivery: it goes again with the next probe
    // and keeps its retry budget. Otherwise the schedule counts the attempts that were not probes.
    let probe_retry = match (&verdict, breaker.probe_at_ms()) {
        (Verdict::Retry { .. }, Some(at)) if ctx.probe && disable.is_none() => Some(at),
        _ => None,
    };
    let counted = ctx.attempt.saturating_sub(ctx.probes).max(1);
    let retry_in = match &verdict {
        Verdict::Retry { not_before, .. } if disable.is_none() && probe_retry.is_none() => {
            ctx.retry.delay(counted, ctx.jitter_sample).map(|d| {
                let asked = not_before.unwrap_or_default().min(ctx.retry_after_cap);
                d.max(asked)
            })
        }
        _ => None,
    };
    let next = match (probe_retry, retry_in) {
        (Some(at), _) => NextStep::RetryAt(at),
        (None, Some(delay)) => NextStep::RetryAt(ctx.now_ms + delay.as_millis() as i64),
        (None, None) => NextStep::Failed,
    };
    let state = if disable.is_some() {
        EndpointState::Disabled
    } else if breaker.is_open() {
        EndpointState::Paused
    } else {
        EndpointState::BackingOff
    };
    Decision {
        status_code,
        error,
        next,
        state,
        disable,
        error_type: Some(error_type(outcome)),
        probe_failed: probe_retry.is_some(),
    }
}

/// The `error_type` label of a failed attempt.
fn error_type(outcome: &AttemptOutcome) -> &'static str {
    match outcome {
        AttemptOutcome::Response { status, .. } => match status {
            300..=399 => "http_3xx",
            429 => "http_429",
            400..=499 => "http_4xx",
            500..=599 => "http_5xx",
            _ => "http_other",
        },
        AttemptOutcome::Timeout => "timeout",
        AttemptOutcome::Connect(_) => "connection",
        AttemptOutcome::Transport(_) => "transport",
        AttemptOutcome::Refused(_) => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BreakerSettings;
    use crate::retry::Jitter;

    fn retry() -> RetryConfig {
        RetryConfig {
            max_retries: 2,
            initial_delay: 1000,
            max_delay: 60_000,
            backoff_multiplier: 2.0,
            jitter: Jitter::None,
        }
    }

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(BreakerSettings {
            failure_threshold: threshold,
            cooldown: Duration::from_secs(5),
            max_cooldown: Duration::from_secs(60),
            disable_after: Duration::from_secs(3600),
        })
    }

    fn ctx(r: &RetryConfig, attempt: u32, now_ms: i64) -> AttemptContext<'_> {
        AttemptContext {
            retry: r,
            retry_after_cap: Duration::from_secs(30),
            attempt,
            probes: 0,
            probe: false,
            now_ms,
            jitter_sample: 0.5,
        }
    }

    fn status(s: u16) -> AttemptOutcome {
        AttemptOutcome::Response { status: s, retry_after: None }
    }

    #[test]
    fn a_2xx_delivers_and_closes_the_breaker() {
        let r = retry();
        let mut b = breaker(5);
        b.on_failure(0, false);
        let d = decide(&status(204), ctx(&r, 2, 10), &mut b);
        assert_eq!(d.next, NextStep::Succeeded);
        assert_eq!((d.status_code, d.error, d.state), (Some(204), None, EndpointState::Healthy));
        assert_eq!(b.consecutive_failures(), 0);
    }

    #[test]
    fn retryable_failures_follow_the_schedule_until_it_runs_out() {
        let r = retry();
        let mut b = breaker(5);
        let d = decide(&status(503), ctx(&r, 1, 1_000), &mut b);
        assert_eq!(d.next, NextStep::RetryAt(2_000), "first retry after initialDelay");
        assert_eq!(d.state, EndpointState::BackingOff);
        assert_eq!(d.error_type, Some("http_5xx"));
        let d = decide(&AttemptOutcome::Timeout, ctx(&r, 2, 5_000), &mut b);
        assert_eq!(d.next, NextStep::RetryAt(7_000), "then doubled");
        let d = decide(&status(500), ctx(&r, 3, 9_000), &mut b);
        assert_eq!(d.next, NextStep::Failed, "1 + maxRetries attempts in all");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let r = retry();
        let mut b = breaker(5);
        let asked = |secs| AttemptOutcome::Response { status: 429, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(decide(&asked(10), ctx(&r, 1, 0), &mut b).next, NextStep::RetryAt(10_000));
        assert_eq!(decide(&asked(3600), ctx(&r, 1, 0), &mut b).next, NextStep::RetryAt(30_000), "capped");
    }

    #[test]
    fn a_4xx_fails_at_once_and_a_410_disables() {
        let r = retry();
        let mut b = breaker(5);
        let d = decide(&status(400), ctx(&r, 1, 0), &mut b);
        assert_eq!((d.next, d.disable), (NextStep::Failed, None));
        let d = decide(&status(410), ctx(&r, 1, 0), &mut b);
        assert_eq!(d.next, NextStep::Failed);
        assert_eq!(d.state, EndpointState::Disabled);
        assert_eq!(d.disable.unwrap().kind, "gone");
    }

    #[test]
    fn a_failed_probe_waits_for_the_next_probe_and_keeps_the_retry_budget() {
        let r = retry(); // 1 + 2 attempts
        let mut b = breaker(2);
        decide(&status(500), ctx(&r, 1, 0), &mut b);
        decide(&status(500), ctx(&r, 2, 10), &mut b); // opens the breaker, probe at 5 010
        assert!(b.is_open());
        b.probe_started();
        let probe = AttemptContext { probe: true, ..ctx(&r, 3, 5_010) };
        let d = decide(&status(503), probe, &mut b);
        assert!(d.probe_failed);
        assert_eq!(d.next, NextStep::RetryAt(15_010), "the next probe, after a doubled cool-down");
        b.probe_started();
        let d = decide(&status(503), AttemptContext { probe: true, probes: 1, ..ctx(&r, 4, 15_010) }, &mut b);
        assert_eq!(d.next, NextStep::RetryAt(35_010), "probes never use the budget up");
        // Attempt 5 after two failed probes counts as the delivery's third: the last one allowed.
        let d = decide(&status(503), AttemptContext { probes: 2, ..ctx(&r, 5, 35_010) }, &mut b);
        assert_eq!(d.next, NextStep::Failed);
    }

    #[test]
    fn the_breaker_pauses_and_failing_too_long_disables() {
        let r = retry();
        let mut b = breaker(2);
        assert_eq!(decide(&status(500), ctx(&r, 1, 0), &mut b).state, EndpointState::BackingOff);
        assert_eq!(decide(&status(500), ctx(&r, 1, 1), &mut b).state, EndpointState::Paused);
        let d = decide(&status(500), ctx(&r, 1, 3_600_000), &mut b);
        assert_eq!(d.disable.unwrap().kind, "failing");
        assert_eq!(d.next, NextStep::Failed, "no retry for an endpoint being disabled");
    }
}
