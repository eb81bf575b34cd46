-- Retention finds old deliveries by a walk in id order (ids are time-ordered; see
-- src/store/prune.rs) instead of an index on completion time, which every delivery paid for
-- when it completed (an index entry written per delivery, about a fifth of the file).
DROP INDEX IF EXISTS deliveries_completed;
