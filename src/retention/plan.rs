//! The pruner's decisions as plain values: which batch to ask the store for at a given time,
//! and whether a cycle goes on after a batch. No I/O; unit-tested here.

use std::time::Duration;

use crate::config::{Retention, RetentionSettings};
use crate::store::{PruneBatch, PruneOutcome};

/// Free space one [`crate::store::Store::reclaim`] call gives back (16 MiB: 1 024 pages of a
/// SQLite file made by this version, 4 096 of an older one): bounded, like a prune batch, so it
/// never holds the writer for long.
pub const RECLAIM_BYTES: u64 = 16 << 20;

/// Most reclaim calls at the end of a cycle (while free pages remain): 1 GiB.
pub const MAX_RECLAIMS_PER_CYCLE: u32 = 64;

/// Pause between two batches of one cycle: the writer (and PostgreSQL's locks) go to others.
pub const PAUSE_BETWEEN_BATCHES: Duration = Duration::from_millis(10);

/// What to prune, from the settings.
#[derive(Debug, Clone)]
pub struct Plan {
    completed: Retention,
    failed: Retention,
    batch_rows: u32,
}

impl Plan {
    /// The plan the settings give.
    pub fn new(settings: &RetentionSettings) -> Self {
        Self { completed: settings.completed, failed: settings.failed(), batch_rows: settings.batch_rows.max(1) }
    }

    /// The batch to run at `now_ms`, resuming the walk over deliveries after `deliveries_after`
    /// (this cycle's) and the event sweep after `events_after`; `None` when everything is kept.
    pub fn batch(
        &self,
        now_ms: i64,
        deliveries_after: Option<String>,
        events_after: Option<String>,
    ) -> Option<PruneBatch> {
        let success_before_ms = cutoff(now_ms, self.completed);
        let failed_before_ms = cutoff(now_ms, self.failed);
        if success_before_ms.is_none() && failed_before_ms.is_none() {
            return None;
        }
        Some(PruneBatch {
            now_ms,
            success_before_ms,
            failed_before_ms,
            limit: self.batch_rows,
            deliveries_after,
            events_after,
        })
    }
}

/// Where the walk over deliveries may start: every delivery up to `after` was looked at by an
/// earlier cycle and either went or cannot go before `until` (Unix ms). Until then a cycle goes
/// on from there instead of reading again, from the first, what it kept (a backlog's pending
/// deliveries, failures kept longer than successes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Floor {
    after: Option<String>,
    until: i64,
}

impl Floor {
    /// Where a cycle at `now_ms` starts its walk (`None`: from the first delivery).
    pub fn start(&self, now_ms: i64) -> Option<String> {
        if now_ms < self.until { self.after.clone() } else { None }
    }

    /// A cycle at `now_ms` starts: where its walk begins. Once the floor's time has come it starts
    /// over, from the first delivery.
    pub fn begin(&mut self, now_ms: i64) -> Option<String> {
        let start = self.start(now_ms);
        if start.is_none() {
            *self = Floor { after: None, until: i64::MAX };
        }
        start
    }

    /// A batch walked up to `cursor`, and what it passed over cannot go before `kept_until_ms`.
    pub fn advance(&mut self, cursor: Option<String>, kept_until_ms: Option<i64>) {
        if let Some(until) = kept_until_ms {
            self.until = self.until.min(until);
        }
        if cursor.is_some() {
            self.after = cursor;
        }
    }
}

/// What a cycle does after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More is due now: another batch, after [`PAUSE_BETWEEN_BATCHES`].
    Continue,
    /// Caught up, or another node is pruning: wait for the next cycle.
    Done,
}

/// Whether a cycle goes on after `outcome`.
pub fn after(outcome: &PruneOutcome) -> Next {
    if outcome.more && !outcome.busy { Next::Continue } else { Next::Done }
}

/// Rows older than this (Unix ms) go; `None`: kept.
pub fn cutoff(now_ms: i64, retention: Retention) -> Option<i64> {
    let d = retention.duration()?;
    Some(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn settings(completed: Retention, failed: Option<Retention>) -> RetentionSettings {
        RetentionSettings { completed, failed, batch_rows: 500, ..RetentionSettings::default() }
    }

    #[test]
    fn cutoffs_follow_each_retention() {
        let now = 100 * 86_400_000;
        let plan = Plan::new(&settings(Retention::For(30 * DAY), Some(Retention::For(7 * DAY))));
        let b = plan.batch(now, Some("dlv_x".into()), Some("evt_x".into())).unwrap();
        assert_eq!(b.success_before_ms, Some(70 * 86_400_000));
        assert_eq!(b.failed_before_ms, Some(93 * 86_400_000));
        assert_eq!(
            (b.limit, b.deliveries_after.as_deref(), b.events_after.as_deref()),
            (500, Some("dlv_x"), Some("evt_x"))
        );
        let same = Plan::new(&settings(Retention::For(DAY), None)).batch(now, None, None).unwrap();
        assert_eq!(same.success_before_ms, same.failed_before_ms, "failed follows the retention unless set");
    }

    #[test]
    fn zero_keeps_everything_of_its_kind() {
        let now = 1_000_000;
        assert_eq!(Plan::new(&settings(Retention::KeepAll, None)).batch(now, None, None), None);
        let failed_only =
            Plan::new(&settings(Retention::KeepAll, Some(Retention::For(DAY)))).batch(now, None, None).unwrap();
        assert_eq!(failed_only.success_before_ms, None);
        assert_eq!(failed_only.failed_before_ms, Some(now - 86_400_000));
        let success_only =
            Plan::new(&settings(Retention::For(DAY), Some(Retention::KeepAll))).batch(now, None, None).unwrap();
        assert_eq!((success_only.success_before_ms.is_some(), success_only.failed_before_ms), (true, None));
    }

    #[test]
    fn huge_retentions_do_not_overflow() {
        assert_eq!(cutoff(5, Retention::For(Duration::from_secs(u64::MAX))), Some(5 - i64::MAX));
        assert_eq!(cutoff(i64::MIN + 1, Retention::For(DAY)), Some(i64::MIN));
    }

    #[test]
    fn the_walk_goes_on_after_what_it_kept_until_the_earliest_of_it_can_go() {
        let mut floor = Floor::default();
        assert_eq!(floor.start(0), None, "the first cycle starts from the first delivery");
        assert_eq!(floor.begin(1_000), None);
        floor.advance(Some("dlv_b".into()), Some(5_000));
        floor.advance(Some("dlv_d".into()), Some(4_000));
        floor.advance(None, None); // a batch that read nothing new
        assert_eq!(floor.start(3_999), Some("dlv_d".into()), "later cycles go on from there");
        assert_eq!(floor.start(4_000), None, "from the first again once something kept may go");
        // A cycle that goes on keeps the earlier bound, and lowers it by what it keeps now.
        let mut next = floor.clone();
        assert_eq!(next.begin(2_000), Some("dlv_d".into()));
        next.advance(Some("dlv_f".into()), Some(3_000));
        assert_eq!((next.start(2_999), next.start(3_000)), (Some("dlv_f".into()), None));
        // One whose time has come starts over and forgets the old bound.
        let mut rebuilt = floor.clone();
        assert_eq!(rebuilt.begin(4_000), None);
        assert_eq!(rebuilt.start(0), None);
        rebuilt.advance(Some("dlv_b".into()), Some(9_000));
        assert_eq!(rebuilt.start(8_999), Some("dlv_b".into()));
    }

    #[test]
    fn a_cycle_goes_on_while_batches_come_back_full() {
        let full = PruneOutcome { more: true, ..PruneOutcome::default() };
        assert_eq!(after(&full), Next::Continue);
        assert_eq!(after(&PruneOutcome::default()), Next::Done);
        assert_eq!(after(&PruneOutcome { busy: true, ..full }), Next::Done, "another node is on it");
    }
}
