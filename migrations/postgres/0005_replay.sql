-- servio-webhooks PostgreSQL schema: replay (retry one delivery, recover a window of failed ones).
-- Times are BIGINT Unix milliseconds.

-- The last recovery of each webhook (`POST /v1/webhooks/{id}/recover`), shown on the webhook
-- until the next one replaces it. `cursor` is the last delivery id re-queued: batches go on
-- from there. A `running` row whose node is no longer live reads as `interrupted`.
CREATE TABLE recoveries (
    webhook_id  TEXT COLLATE "C" PRIMARY KEY,
    since       BIGINT NOT NULL,
    until       BIGINT NOT NULL,
    queued      BIGINT NOT NULL,
    requeued    BIGINT NOT NULL DEFAULT 0,
    state       TEXT NOT NULL,        -- running | done | interrupted
    started_at  BIGINT NOT NULL,
    finished_at BIGINT,
    node_id     TEXT COLLATE "C" NOT NULL,
    cursor      TEXT COLLATE "C" NOT NULL DEFAULT ''
);

-- Counting and re-queueing a webhook's failed deliveries by creation time.
CREATE INDEX deliveries_failed ON deliveries (webhook_id, created_at) WHERE status = 'failed';
