//! The values of retention pruning ([`super::Store::prune`], [`super::Store::reclaim`]): what one
//! bounded batch may delete, what it deleted, and the database's size.

use std::ops::AddAssign;

/// One prune batch: each kind is deleted in at most `limit` rows per statement, in one short
/// transaction, so that publishes never wait long behind it.
///
/// What goes:
/// - `success` deliveries completed before `success_before_ms`, with their attempt log;
/// - `failed` deliveries completed before `failed_before_ms`, with their attempt log;
/// - the events of the deliveries deleted here that no delivery is left for, with their
///   idempotency keys (keys expire with their event);
/// - events created before `success_before_ms` that have no delivery at all (published while
///   nothing subscribed), found by a sweep in id order from `events_after`.
///
/// Pending deliveries, and events any delivery still refers to, are never deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneBatch {
    /// Successful deliveries completed before this Unix ms go; `None` keeps them all.
    pub success_before_ms: Option<i64>,
    /// Failed deliveries completed before this Unix ms go; `None` keeps them all.
    pub failed_before_ms: Option<i64>,
    /// Most rows of each kind one statement deletes (and events the sweep looks at).
    pub limit: u32,
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

    #[test]
    fn counts_add_up_by_kind() {
        let mut a = PruneCounts { deliveries_success: 2, attempts: 3, ..PruneCounts::default() };
        a += PruneCounts { deliveries_failed: 1, events: 4, idempotency_keys: 1, ..PruneCounts::default() };
        assert_eq!(a.total(), 11);
        assert_eq!(a.by_kind()[1], ("delivery_failed", 1));
        assert_eq!(a.by_kind()[3], ("event", 4));
    }
}
