//! Whether the write side can keep up: shared lock-free by the ledger (which updates it), the
//! publish path and the endpoint actors (which back off while it refuses), and `/healthz`.
//!
//! Every queue on the write path is bounded by it: while the store refuses writes (a failed
//! commit), a commit stalls past `stall_after`, or more than `max_buffered` operations wait for
//! the ledger, publishes are answered 503 with `Retry-After` and endpoints start no attempt (their
//! outcomes could not be recorded). What is already in the ledger is retried until the store
//! takes it, and everything resumes by itself when it does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Why writes are refused right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// For logs, `/healthz` and the 503 message.
    pub reason: String,
    /// What to tell callers in `Retry-After`.
    pub retry_after: Duration,
}

/// What a commit's end changed, for the log: the trouble's start and end, not every retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushNews {
    /// Nothing worth a line.
    Quiet,
    /// The first failure of a streak.
    StartedFailing,
    /// A commit worked after a streak of failures this long.
    Recovered { failing_for: Duration },
    /// A commit worked but ran past the stall limit (publishes were refused meanwhile).
    Stalled { took: Duration },
}

/// The write side's state.
#[derive(Debug)]
pub(crate) struct WriteHealth {
    /// Unix ms of the first commit failure of the current streak; 0 when the last commit worked.
    failing_since_ms: AtomicI64,
    /// Unix ms when the running commit started; 0 when none runs.
    flushing_since_ms: AtomicI64,
    /// Operations buffered in the ledger or in its running commit.
    buffered: AtomicUsize,
    last_error: Mutex<Option<String>>,
    stall_after: Duration,
    max_buffered: usize,
}

impl WriteHealth {
    pub(crate) fn new(stall_after: Duration, max_buffered: usize) -> Self {
        Self {
            failing_since_ms: AtomicI64::new(0),
            flushing_since_ms: AtomicI64::new(0),
            buffered: AtomicUsize::new(0),
            last_error: Mutex::new(None),
            stall_after,
            max_buffered: max_buffered.max(1),
        }
    }

    /// Why writes are refused at `now_ms`, or `None` when they are taken.
    pub(crate) fn refusing(&self, now_ms: i64) -> Option<Refusal> {
        let failing = self.failing_since_ms.load(Relaxed);
        if failing != 0 {
            let error = self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default();
            let secs = (now_ms - failing).max(0) / 1000;
            return Some(Refusal {
                reason: format!("the store refuses writes (for {secs} s): {error}"),
                retry_after: Duration::from_secs(2),
            });
        }
        let flushing = self.flushing_since_ms.load(Relaxed);
        if flushing != 0 && now_ms - flushing >= self.stall_after.as_millis() as i64 {
            return Some(Refusal {
                reason: format!("a commit has been running for {} ms", now_ms - flushing),
                retry_after: Duration::from_secs(1),
            });
        }
        let buffered = self.buffered.load(Relaxed);
        if buffered > self.max_buffered {
            return Some(Refusal {
                reason: format!("{buffered} writes are waiting for the store"),
                retry_after: Duration::from_secs(1),
            });
        }
        None
    }

    /// Whether the last commit failed (the ledger then probes even with nothing to write).
    pub(crate) fn is_failing(&self) -> bool {
        self.failing_since_ms.load(Relaxed) != 0
    }

    /// Operations buffered (for the gauge and tests).
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Relaxed)
    }

    pub(crate) fn set_buffered(&self, n: usize) {
        self.buffered.store(n, Relaxed);
    }

    pub(crate) fn flush_started(&self, now_ms: i64) {
        self.flushing_since_ms.store(now_ms.max(1), Relaxed);
    }

    /// A commit ended; `error` when it failed.
    pub(crate) fn flush_ended(&self, now_ms: i64, error: Option<String>) -> FlushNews {
        let started = self.flushing_since_ms.swap(0, Relaxed);
        match error {
            None => {
                let failing = self.failing_since_ms.swap(0, Relaxed);
                let took = Duration::from_millis((now_ms - started).max(0) as u64);
                if failing != 0 {
                    FlushNews::Recovered { failing_for: Duration::from_millis((now_ms - failing).max(0) as u64) }
                } else if started != 0 && took >= self.stall_after {
                    FlushNews::Stalled { took }
                } else {
                    FlushNews::Quiet
                }
            }
            Some(e) => {
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                match self.failing_since_ms.compare_exchange(0, now_ms.max(1), Relaxed, Relaxed) {
                    Ok(_) => FlushNews::StartedFailing,
                    Err(_) => FlushNews::Quiet,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_while_failing_stalled_or_behind_and_recovers() {
        let h = WriteHealth::new(Duration::from_millis(500), 100);
        assert_eq!(h.refusing(1_000), None);
        h.flush_started(1_000);
        assert_eq!(h.refusing(1_499), None, "a commit may take a while");
        assert!(h.refusing(1_500).unwrap().reason.contains("running"), "stalled");
        assert_eq!(h.flush_ended(1_600, Some("disk full".into())), FlushNews::StartedFailing);
        let r = h.refusing(3_700).unwrap();
        assert!(r.reason.contains("disk full") && r.reason.contains("2 s"), "{r:?}");
        h.flush_started(3_800);
        assert_eq!(h.flush_ended(3_900, Some("disk full again".into())), FlushNews::Quiet, "one line per streak");
        assert!(h.refusing(3_900).unwrap().reason.contains("for 2 s"), "the streak's start is kept");
        assert_eq!(h.flush_ended(4_000, None), FlushNews::Recovered { failing_for: Duration::from_millis(2_400) });
        assert_eq!(h.refusing(4_000), None, "a commit that works ends it");
        h.flush_started(4_000);
        assert_eq!(h.flush_ended(4_499, None), FlushNews::Quiet);
        h.flush_started(5_000);
        assert_eq!(h.flush_ended(5_600, None), FlushNews::Stalled { took: Duration::from_millis(600) });
        h.set_buffered(101);
        assert!(h.refusing(4_000).unwrap().reason.contains("101 writes"));
        h.set_buffered(100);
        assert_eq!(h.refusing(4_000), None);
    }
}
