-- servio-webhooks PostgreSQL schema, version 1 (the whole model).
-- Times are BIGINT Unix milliseconds. Text ids that are compared or paged use COLLATE "C" so
-- that they order by bytes, as on SQLite.

-- Registry revision: every registry change takes the next value of this single-row counter.
-- Its row lock makes commit order equal revision order (a SEQUENCE would not).
CREATE TABLE registry_clock (
    id             INT PRIMARY KEY CHECK (id = 1),
    revision       BIGINT NOT NULL,
    -- Highest revision among pruned tombstones: callers behind it get the full registry.
    pruned_through BIGINT NOT NULL DEFAULT 0
);
-- Starts at 1 (as on SQLite), so that `since = 0` always means "nothing known yet".
INSERT INTO registry_clock (id, revision, pruned_through) VALUES (1, 1, 0);

CREATE TABLE webhooks (
    id              TEXT COLLATE "C" PRIMARY KEY,
    url             TEXT NOT NULL,
    secret          TEXT NOT NULL,
    events          TEXT,               -- JSON array of event types; NULL = all
    headers         TEXT NOT NULL,      -- JSON object
    retry_config    TEXT NOT NULL,      -- JSON RetryConfig
    max_in_flight   BIGINT,
    description     TEXT,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    revision        BIGINT NOT NULL
);
CREATE INDEX webhooks_revision ON webhooks (revision);

-- Deleted registrations (one row per id; a re-registration removes it).
CREATE TABLE webhook_deletions (
    id         TEXT COLLATE "C" PRIMARY KEY,
    revision   BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL
);
CREATE INDEX webhook_deletions_revision ON webhook_deletions (revision);
CREATE INDEX webhook_deletions_deleted_at ON webhook_deletions (deleted_at);

CREATE TABLE events (
    id         TEXT COLLATE "C" PRIMARY KEY,
    event_type TEXT NOT NULL,
    payload    BYTEA NOT NULL,          -- the exact body bytes sent
    timestamp  TEXT NOT NULL,           -- the payload's RFC 3339 timestamp
    created_at BIGINT NOT NULL
);

CREATE TABLE idempotency_keys (
    key      TEXT COLLATE "C" PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL
);

CREATE TABLE deliveries (
    id                 TEXT COLLATE "C" PRIMARY KEY,
    event_id           TEXT COLLATE "C" NOT NULL,
    webhook_id         TEXT COLLATE "C" NOT NULL,
    status             TEXT NOT NULL,   -- pending | success | failed
    attempts           INT NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT,
    created_at         BIGINT NOT NULL,
    last_attempt_at    BIGINT,
    completed_at       BIGINT,
    last_status_code   INT,
    last_error         TEXT,
    -- The successful attempt lives here rather than in `attempts`.
    last_duration_ms   BIGINT,
    last_response_body TEXT
);
-- Due work per webhook; partial, so it holds only what is still pending.
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at, id) WHERE status = 'pending';
-- GET /v1/deliveries?webhookId=
CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);

-- Every attempt that did not succeed (the successful one is on its delivery row).
CREATE TABLE attempts (
    delivery_id   TEXT COLLATE "C" NOT NULL,
    attempt       INT NOT NULL,
    at            BIGINT NOT NULL,
    duration_ms   BIGINT NOT NULL,
    status_code   INT,
    error         TEXT,
    response_body TEXT,
    PRIMARY KEY (delivery_id, attempt)
);

-- One lease per webhook; kept after the webhook is deleted so that epochs keep growing.
CREATE TABLE leases (
    webhook_id TEXT COLLATE "C" PRIMARY KEY,
    node_id    TEXT COLLATE "C",        -- NULL: released
    epoch      BIGINT NOT NULL,
    expires_at BIGINT NOT NULL          -- database clock
);
CREATE INDEX leases_node ON leases (node_id) WHERE node_id IS NOT NULL;

CREATE TABLE nodes (
    id           TEXT COLLATE "C" PRIMARY KEY,
    info         TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);

-- Endpoint health as its owner last stored it.
CREATE TABLE webhook_state (
    webhook_id           TEXT COLLATE "C" PRIMARY KEY,
    state                TEXT NOT NULL,  -- healthy | backing_off | paused | disabled
    consecutive_failures BIGINT NOT NULL,
    failing_since        BIGINT,
    last_success_at      BIGINT,
    last_failure_at      BIGINT,
    breaker_probe_at     BIGINT,
    breaker_cooldown_ms  BIGINT,
    updated_at           BIGINT NOT NULL
);
