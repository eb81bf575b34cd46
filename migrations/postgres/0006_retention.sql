-- Retention: the pruner finds finished deliveries by completion time, and an event's
-- idempotency keys by event. Pending deliveries (completed_at NULL) stay out of the index.
-- (Built in the migration's transaction: writes to these tables wait while it builds, once.)
CREATE INDEX deliveries_completed ON deliveries (status, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX idempotency_keys_event ON idempotency_keys (event_id);
