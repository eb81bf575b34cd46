//! The values of retention pruning ([`super::Store::prune`], [`super::Store::reclaim`]): what one
//! bounded batch may delete, what it deleted, and the database's size.

use std::ops::AddAssign;

use crate::model::DeliveryStatus;

/// One prune batch, in one short transaction so that publishes never wait long behind it.
///
/// What goes:
/// - `success` deliveries completed before `success_before_ms`, with their attempt log;
/// - `failed` deliveries completed before `failed_before_ms`, with their attempt log;
/// - the events of the deliveries deleted here that no delivery is left for, with their
///   idempotency keys (keys expire with their event);
/// - events created before `success_before_ms` that have no delivery at all (published while
///   nothing subscribed), found by a sweep in id order from `events_after`.
///
/// Deliveries are found by a walk in id order (ids are time-ordered, see
/// [`crate::model::delivery_id`]) from `deliveries_after`, at most `limit` of them a batch, up to
/// the first one created at or after the later cutoff: a delivery created after a cutoff cannot
/// have completed before it. This needs no index on completion time, which every delivery would
/// otherwise pay for when it completes. The walk passes over what stays (pending deliveries,
/// failures kept longer than successes, deliveries that completed after the cutoff) and says
/// when the earliest of those could go ([`PruneOutcome::kept_until_ms`]), so the pruner's later
/// cycles start after them until then instead of reading them again each cycle.
///
/// Pending deliveries, and events any delivery still refers to, are never deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneBatch {
    /// When the batch runs (Unix ms): the cutoffs are this minus each retention.
    pub now_ms: i64,
    /// Successful deliveries completed before this Unix ms go; `None` keeps them all.
    pub success_before_ms: Option<i64>,
    /// Failed deliveries completed before this Unix ms go; `None` keeps them all.
    pub failed_before_ms: Option<i64>,
    /// Most deliveries the walk looks at (and events the sweep looks at) in this batch.
    pub limit: u32,
    /// Where the walk over deliveries resumes: ids after this one (`None`: from the first).
    pub deliveries_after: Option<String>,
    /// Where the sweep for events without deliveries resumes: ids after this one (`None`: from
    /// the first). The sweep stops at the first event created at or after `success_before_ms`.
    pub events_after: Option<String>,
}

/// What one prune batch deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOutcome {
    /// Rows deleted, by kind.
    pub pruned: PruneCounts,
    /// Where the event sweep got to: pass it as the next batch's `events_after`.
    pub events_cursor: Option<String>,
    /// Where the walk over deliveries got to: pass it as the next batch's `deliveries_after`
    /// within the same cycle.
    pub deliveries_cursor: Option<String>,
    /// When the walk moved on: no delivery up to `deliveries_cursor` that this batch passed over
    /// can go before this Unix ms (a pending one completes at the earliest now, then waits out
    /// the shorter retention; a kept completed one waits out its own). `None`: the walk did not
    /// move.
    pub kept_until_ms: Option<i64>,
    /// Some kind hit its limit: there is more to prune now.
    pub more: bool,
    /// Nothing was done because another node is pruning this database right now (PostgreSQL:
    /// one node prunes at a time).
    pub busy: bool,
}

/// Rows deleted, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    /// Successful deliveries.
    pub deliveries_success: u64,
    /// Failed deliveries.
    pub deliveries_failed: u64,
    /// Attempt-log entries of those deliveries.
    pub attempts: u64,
    /// Events.
    pub events: u64,
    /// Idempotency keys (they expire with their event).
    pub idempotency_keys: u64,
}

impl PruneCounts {
    /// Every kind with its count, as the `kind` label of `webhook_pruned_rows_total` names it.
    pub fn by_kind(&self) -> [(&'static str, u64); 5] {
        [
            ("delivery_success", self.deliveries_success),
            ("delivery_failed", self.deliveries_failed),
            ("attempt", self.attempts),
            ("event", self.events),
            ("idempotency_key", self.idempotency_keys),
        ]
    }

    /// Counts one deleted delivery of this stored status (`success` or `failed`).
    pub(crate) fn count_delivery(&mut self, status: &str) {
        if DeliveryStatus::parse(status) == Some(DeliveryStatus::Success) {
            self.deliveries_success += 1;
        } else {
            self.deliveries_failed += 1;
        }
    }

    /// All rows deleted.
    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }
}

impl AddAssign for PruneCounts {
    fn add_assign(&mut self, o: Self) {
        self.deliveries_success += o.deliveries_success;
        self.deliveries_failed += o.deliveries_failed;
        self.attempts += o.attempts;
        self.events += o.events;
        self.idempotency_keys += o.idempotency_keys;
    }
}

/// One delivery as the prune walk reads it, in id order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WalkedDelivery {
    pub(crate) id: String,
    pub(crate) event_id: String,
    /// `pending`, `success` or `failed`, as stored.
    pub(crate) status: String,
    pub(crate) completed_at_ms: Option<i64>,
    pub(crate) created_at_ms: i64,
}

/// What one batch of the walk decided (see [`PruneBatch`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The deliveries to delete, with their event and status.
    pub(crate) delete: Vec<WalkedDelivery>,
    /// The last delivery looked at: the next batch resumes after it.
    pub(crate) cursor: Option<String>,
    /// The batch read as many as it could take and did not reach the cutoff: there may be more.
    pub(crate) more: bool,
    /// See [`PruneOutcome::kept_until_ms`].
    pub(crate) kept_until_ms: Option<i64>,
}

impl PruneBatch {
    /// The later of the two cutoffs: no delivery created at or after it can be due to go.
    /// `None`: nothing of either kind goes.
    pub(crate) fn walk_bound(&self) -> Option<i64> {
        self.success_before_ms.max(self.failed_before_ms)
    }

    /// Decides over `rows`, the next at most `limit` deliveries after `deliveries_after` in id
    /// order: which go, and where the walk stands.
    pub(crate) fn walk(&self, rows: Vec<WalkedDelivery>) -> Walk {
        let mut walk = Walk { cursor: self.deliveries_after.clone(), ..Walk::default() };
        let Some(bound) = self.walk_bound() else { return walk };
        let full = rows.len() >= self.limit.max(1) as usize;
        // Nothing passed over goes before the shorter retention has run from now: a delivery
        // still pending completes now at the earliest (and one created before the cursor by a
        // node whose clock is behind is younger still).
        let soonest = self.now_ms.saturating_add(self.now_ms.saturating_sub(bound));
        let mut kept_until = soonest;
        let mut reached_young = false;
        for row in rows {
            if row.created_at_ms >= bound {
                reached_young = true; // everything after it is younger still
                break;
            }
            walk.cursor = Some(row.id.clone());
            let cutoff = match DeliveryStatus::parse(&row.status) {
                Some(DeliveryStatus::Success) => self.success_before_ms,
                Some(DeliveryStatus::Failed) => self.failed_before_ms,
                _ => None, // pending: never
            };
            if let (Some(cutoff), Some(completed)) = (cutoff, row.completed_at_ms) {
                if completed < cutoff {
                    walk.delete.push(row);
                } else {
                    // Kept: it goes once its retention has run from its completion.
                    kept_until = kept_until.min(completed.saturating_add(self.now_ms.saturating_sub(cutoff)));
                }
            }
        }
        walk.kept_until_ms = (walk.cursor != self.deliveries_after).then_some(kept_until);
        walk.more = full && !reached_young;
        walk
    }
}

/// The database's size, as [`super::Store::reclaim`] leaves it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageSize {
    /// Bytes the database takes: SQLite `page_count × page_size` (the main file, without its
    /// WAL); PostgreSQL the schema's tables with their indexes and TOAST.
    pub bytes: u64,
    /// Of those, bytes free inside the file for reuse (SQLite's freelist); `None` where the
    /// backend does not say (PostgreSQL: autovacuum marks dead rows reusable).
    pub free_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, status: &str, created: i64, completed: Option<i64>) -> WalkedDelivery {
        WalkedDelivery {
            id: id.into(),
            event_id: format!("evt_{id}"),
            status: status.into(),
            completed_at_ms: completed,
            created_at_ms: created,
        }
    }

    fn batch(success: Option<i64>, failed: Option<i64>, limit: u32) -> PruneBatch {
        PruneBatch {
            now_ms: 200,
            success_before_ms: success,
            failed_before_ms: failed,
            limit,
            deliveries_after: Some("a".into()),
            events_after: None,
        }
    }

    fn ids(walk: &Walk) -> Vec<&str> {
        walk.delete.iter().map(|r| r.id.as_str()).collect()
    }

    #[test]
    fn the_walk_takes_what_completed_before_its_kind_s_cutoff_and_passes_over_the_rest() {
        let b = batch(Some(100), Some(50), 6);
        let walk = b.walk(vec![
            row("b", "success", 10, Some(20)),  // goes
            row("c", "failed", 10, Some(40)),   // goes: failed before 50
            row("d", "failed", 10, Some(60)),   // stays: failures are kept until 50
            row("e", "pending", 10, None),      // stays: pending
            row("f", "success", 20, Some(150)), // stays: completed after the cutoff (retried)
            row("g", "success", 90, Some(99)),  // goes
        ]);
        assert_eq!(ids(&walk), ["b", "c", "g"]);
        assert_eq!((walk.cursor.as_deref(), walk.more), (Some("g"), true), "a full batch: there may be more");
        let short = b.walk(vec![row("h", "success", 95, Some(96))]);
        assert_eq!((ids(&short), short.cursor.as_deref(), short.more), (vec!["h"], Some("h"), false));
    }

    #[test]
    fn the_walk_says_when_the_earliest_delivery_it_passed_over_can_go() {
        // As of 200: successes kept 100, failures 150; so nothing passed over goes before
        // 200 + 100 (a pending delivery completes now at the earliest).
        let b = batch(Some(100), Some(50), 6);
        let walk = b.walk(vec![
            row("b", "success", 10, Some(20)),  // goes
            row("d", "failed", 10, Some(60)),   // kept: goes at 60 + 150
            row("e", "pending", 10, None),      // kept: 300 at the earliest
            row("f", "success", 20, Some(150)), // kept: goes at 150 + 100
        ]);
        assert_eq!(ids(&walk), ["b"]);
        assert_eq!(walk.kept_until_ms, Some(210));
        let only_pending = b.walk(vec![row("e", "pending", 10, None)]);
        assert_eq!(only_pending.kept_until_ms, Some(300));
        let all_gone = b.walk(vec![row("b", "success", 10, Some(20))]);
        assert_eq!(all_gone.kept_until_ms, Some(300), "the walk moved: what lands behind it is younger");
        let young = b.walk(vec![row("y", "success", 150, Some(160))]);
        assert_eq!((young.kept_until_ms, young.cursor.as_deref()), (None, Some("a")), "the walk did not move");
    }

    #[test]
    fn the_walk_stops_at_the_first_delivery_created_after_the_later_cutoff() {
        let b = batch(Some(100), Some(50), 3);
        let walk = b.walk(vec![
            row("b", "success", 99, Some(99)),
            row("c", "success", 100, Some(100)),
            row("d", "x", 1, None),
        ]);
        assert_eq!((ids(&walk), walk.cursor.as_deref(), walk.more), (vec!["b"], Some("b"), false));
        let none = b.walk(vec![row("b", "success", 100, Some(100))]);
        assert_eq!((none.delete.len(), none.cursor.as_deref(), none.more), (0, Some("a"), false), "stays where it was");
    }

    #[test]
    fn a_kind_without_cutoff_stays_and_without_any_cutoff_the_walk_reads_nothing() {
        let failed_only = batch(None, Some(50), 10);
        assert_eq!(failed_only.walk_bound(), Some(50));
        let walk = failed_only.walk(vec![row("b", "success", 10, Some(11)), row("c", "failed", 10, Some(11))]);
        assert_eq!(ids(&walk), ["c"]);
        let keep_all = batch(None, None, 10);
        assert_eq!(keep_all.walk_bound(), None);
        assert_eq!(keep_all.walk(vec![row("b", "failed", 1, Some(1))]).delete.len(), 0);
    }

    #[test]
    fn counts_add_up_by_kind() {
        let mut a = PruneCounts { deliveries_success: 2, attempts: 3, ..PruneCounts::default() };
        a += PruneCounts { deliveries_failed: 1, events: 4, idempotency_keys: 1, ..PruneCounts::default() };
        assert_eq!(a.total(), 11);
        assert_eq!(a.by_kind()[1], ("delivery_failed", 1));
        assert_eq!(a.by_kind()[3], ("event", 4));
    }
}
