-- Retention finds old deliveries by a walk in id order (ids are time-ordered; see
-- src/store/prune.rs) instead of an index on completion time, which every delivery paid for
-- when it completed (one more index entry, and its WAL, per delivery).
DROP INDEX IF EXISTS deliveries_completed;
