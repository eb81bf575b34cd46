-- Pacing (issue 9): per-webhook rate limit and ordered delivery.
-- Attempts per second to the endpoint (a token bucket in its owner's endpoint actor); NULL: no limit.
ALTER TABLE webhooks ADD COLUMN rate_limit_per_second REAL;
-- 1: one attempt at a time, in publish order. SQLite's publish order is the delivery id (time-ordered
-- ids minted by the one process that owns the file); ordered pages read the `deliveries_due`
-- partial index and sort its entries for the webhook by id, so no index is added for them.
ALTER TABLE webhooks ADD COLUMN ordered INTEGER NOT NULL DEFAULT 0;
