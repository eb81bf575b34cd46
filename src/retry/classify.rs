//! Maps what happened to one attempt onto a [`Verdict`]: delivered, retry (perhaps not before a
//! `Retry-After`), fail now, or fail and disable the endpoint (410 Gone).

use std::time::{Duration, SystemTime};

/// What one HTTP attempt produced, reduced to what the retry decision needs.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    /// The endpoint answered with this status; `retry_after` is its parsed `Retry-After`, if any.
    Response {
        /// HTTP status code.
        status: u16,
        /// Parsed `Retry-After` header.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the attempt timeout.
    Timeout,
    /// The TCP/TLS connection could not be made (refused, reset, DNS, TLS).
    Connect(String),
    /// Any other transport failure (e.g. the connection dropped mid-response).
    Transport(String),
    /// The target was refused before sending (e.g. a private address without permission).
    Refused(String),
}

/// The decision for a delivery after one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// 2xx: done.
    Delivered,
    /// Worth another attempt; `not_before` is the endpoint's `Retry-After`, honoured on 429/503.
    Retry {
        /// Earliest wait the endpoint asked for.
        not_before: Option<Duration>,
        /// Human-readable reason for the attempt log.
        reason: String,
    },
    /// Will not succeed by retrying (most 4xx, 3xx): fail the delivery now.
    Fail {
        /// Human-readable reason.
        reason: String,
    },
    /// 410 Gone: fail the delivery and disable the endpoint.
    Gone,
}

/// Retry 408, 425, 429, 5xx, timeouts and connection errors; fail other 4xx and 3xx at once;
/// 410 also disables the endpoint. Redirects are never followed, so a 3xx is final.
///
/// A final status that HTTP does not have (600-999, which hyper parses as three digits) or a 1xx
/// as the final answer (a 101 nobody asked for) is invalid HTTP: retried, like a garbage status
/// line, rather than failing the delivery on one broken answer.
pub fn classify(outcome: &AttemptOutcome) -> Verdict {
    match outcome {
        AttemptOutcome::Response { status, retry_after } => match *status {
            200..=299 => Verdict::Delivered,
            410 => Verdict::Gone,
            429 | 503 => Verdict::Retry { not_before: *retry_after, reason: format!("HTTP {status}") },
            408 | 425 | 500..=599 => Verdict::Retry { not_before: None, reason: format!("HTTP {status}") },
            300..=399 => Verdict::Fail { reason: format!("HTTP {status} (redirects are not followed)") },
            400..=499 => Verdict::Fail { reason: format!("HTTP {status}") },
            s => Verdict::Retry { not_before: None, reason: format!("invalid HTTP status {s}") },
        },
        AttemptOutcome::Timeout => Verdict::Retry { not_before: None, reason: "timeout".into() },
        AttemptOutcome::Connect(e) => Verdict::Retry { not_before: None, reason: format!("connection failed: {e}") },
        AttemptOutcome::Transport(e) => Verdict::Retry { not_before: None, reason: format!("transport error: {e}") },
        AttemptOutcome::Refused(e) => Verdict::Fail { reason: e.clone() },
    }
}

/// Parses `Retry-After` as delta-seconds or an HTTP date (relative to `now`; past dates give zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: u16) -> Verdict {
        classify(&AttemptOutcome::Response { status: s, retry_after: None })
    }

    #[test]
    fn status_table() {
        for s in [200, 201, 202, 204, 299] {
            assert_eq!(status(s), Verdict::Delivered, "{s}");
        }
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert!(matches!(status(s), Verdict::Retry { .. }), "{s}");
        }
        for s in [300, 301, 302, 307, 308, 400, 401, 403, 404, 405, 413, 422] {
            assert!(matches!(status(s), Verdict::Fail { .. }), "{s}");
        }
        assert_eq!(status(410), Verdict::Gone);
        for s in [100, 101, 199, 600, 999] {
            assert_eq!(status(s), Verdict::Retry { not_before: None, reason: format!("invalid HTTP status {s}") });
        }
    }

    #[test]
    fn transport_failures_are_retried_and_refusals_are_not() {
        assert!(matches!(classify(&AttemptOutcome::Timeout), Verdict::Retry { not_before: None, .. }));
        assert!(matches!(classify(&AttemptOutcome::Connect("refused".into())), Verdict::Retry { .. }));
        assert!(matches!(classify(&AttemptOutcome::Transport("reset".into())), Verdict::Retry { .. }));
        assert!(matches!(classify(&AttemptOutcome::Refused("private".into())), Verdict::Fail { .. }));
    }

    #[test]
    fn retry_after_only_counts_on_429_and_503() {
        let ra = Some(Duration::from_secs(7));
        for s in [429, 503] {
            let v = classify(&AttemptOutcome::Response { status: s, retry_after: ra });
            assert_eq!(v, Verdict::Retry { not_before: ra, reason: format!("HTTP {s}") });
        }
        let v = classify(&AttemptOutcome::Response { status: 500, retry_after: ra });
        assert!(matches!(v, Verdict::Retry { not_before: None, .. }));
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
