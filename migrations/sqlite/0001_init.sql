-- servio-webhooks SQLite schema, version 1.
-- Times are Unix milliseconds. Ids are time-ordered text (see src/model.rs).

CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    events          TEXT,               -- JSON array of event types; NULL = all
    headers         TEXT NOT NULL,      -- JSON object
    retry_config    TEXT NOT NULL,      -- JSON, the seed's RetryConfig
    max_in_flight   INTEGER,
    description     TEXT,
    disabled_at     INTEGER,
    disabled_reason TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,      -- the exact body bytes sent
    timestamp       TEXT NOT NULL,      -- the payload's RFC 3339 timestamp
    created_at      INTEGER NOT NULL
);

-- Only publishes that carry a key pay for this index.
CREATE TABLE idempotency_keys (
    key      TEXT PRIMARY KEY,
    event_id TEXT NOT NULL
) WITHOUT ROWID;

-- WITHOUT ROWID: rows are small and always reached by id, so one B-tree instead of two.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    webhook_id       TEXT NOT NULL,
    status           TEXT NOT NULL,     -- pending | success | failed
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,
    created_at       INTEGER NOT NULL,
    last_attempt_at  INTEGER,
    completed_at     INTEGER,
    last_status_code INTEGER,
    last_error       TEXT,
    -- The successful attempt lives here rather than in `attempts` (one write per delivery
    -- instead of two in the common case); the API puts it back at the end of the attempt log.
    last_duration_ms   INTEGER,
    last_response_body TEXT
) WITHOUT ROWID;

-- Backlog paging per endpoint; partial, so it holds only what is still pending.
CREATE INDEX deliveries_pending ON deliveries (webhook_id, id) WHERE status = 'pending';
-- GET /v1/deliveries?webhookId=
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);

-- Every attempt that did not succeed (the successful one is on its delivery row).
CREATE TABLE attempts (
    delivery_id   TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
