-- servio-webhooks SQLite schema, version 2: the multi-node model (one node here).
-- Registry revisions and tombstones, leases with epochs, node rows, stored endpoint health,
-- and due-time ordering of pending work. Times are Unix milliseconds.

-- Registry revision: every registry change takes the next value of this single-row counter.
CREATE TABLE registry_clock (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    revision       INTEGER NOT NULL,
    -- Highest revision among pruned tombstones: callers behind it get the full registry.
    pruned_through INTEGER NOT NULL DEFAULT 0
);
INSERT INTO registry_clock (id, revision, pruned_through) VALUES (1, 1, 0);

-- Existing registrations count as changed at revision 1.
ALTER TABLE webhooks ADD COLUMN revision INTEGER NOT NULL DEFAULT 1;
CREATE INDEX webhooks_revision ON webhooks (revision);

-- Deleted registrations, for incremental registry changes (one row per id: a re-registration
-- removes it, since the new row carries a later revision).
CREATE TABLE webhook_deletions (
    id         TEXT PRIMARY KEY,
    revision   INTEGER NOT NULL,
    deleted_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX webhook_deletions_revision ON webhook_deletions (revision);
CREATE INDEX webhook_deletions_deleted_at ON webhook_deletions (deleted_at);

-- One lease per webhook; kept after the webhook is deleted so that epochs keep growing.
CREATE TABLE leases (
    webhook_id TEXT PRIMARY KEY,
    node_id    TEXT,                    -- NULL: released
    epoch      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX leases_node ON leases (node_id);

CREATE TABLE nodes (
    id           TEXT PRIMARY KEY,
    info         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) WITHOUT ROWID;

-- Endpoint health as its owner last stored it.
CREATE TABLE webhook_state (
    webhook_id           TEXT PRIMARY KEY,
    state                TEXT NOT NULL,  -- healthy | backing_off | paused | disabled
    consecutive_failures INTEGER NOT NULL,
    failing_since        INTEGER,
    last_success_at      INTEGER,
    last_failure_at      INTEGER,
    breaker_probe_at     INTEGER,
    breaker_cooldown_ms  INTEGER,
    updated_at           INTEGER NOT NULL
) WITHOUT ROWID;

-- Due work by time: replaces the id-ordered backlog index.
UPDATE deliveries SET next_attempt_at = created_at WHERE status = 'pending' AND next_attempt_at IS NULL;
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at, id) WHERE status = 'pending';
