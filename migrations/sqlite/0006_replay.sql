-- servio-webhooks SQLite schema: replay (retry one delivery, recover a window of failed ones).
-- Times are Unix milliseconds.

-- The last recovery of each webhook (`POST /v1/webhooks/{id}/recover`), shown on the webhook
-- until the next one replaces it. `cursor` is the last delivery id re-queued: batches go on
-- from there. A `running` row whose node is no longer live reads as `interrupted`.
CREATE TABLE recoveries (
    webhook_id  TEXT PRIMARY KEY,
    since       INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    queued      INTEGER NOT NULL,
    requeued    INTEGER NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,        -- running | done | interrupted
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    node_id     TEXT NOT NULL,        -- the node running the batches
    cursor      TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;

-- Counting and re-queueing a webhook's failed deliveries by creation time.
CREATE INDEX deliveries_failed ON deliveries (webhook_id, created_at) WHERE status = 'failed';
