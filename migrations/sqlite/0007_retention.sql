-- Retention: the pruner finds finished deliveries by completion time, and an event's
-- idempotency keys by event. Pending deliveries (completed_at NULL) stay out of the index, so
-- only a delivery's completion adds an entry (appended: completion times grow).
CREATE INDEX deliveries_completed ON deliveries (status, completed_at) WHERE completed_at IS NOT NULL;
-- Only keyed publishes pay for this one.
CREATE INDEX idempotency_keys_event ON idempotency_keys (event_id);
