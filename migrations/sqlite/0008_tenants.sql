-- Tenants (Servio venues): a webhook may belong to one, an event records the one it was published
-- for, and tenant-scoped API tokens (only the SHA-256 of their secret part is stored).
ALTER TABLE webhooks ADD COLUMN tenant TEXT;
CREATE INDEX webhooks_tenant ON webhooks (tenant, id) WHERE tenant IS NOT NULL;
ALTER TABLE events ADD COLUMN tenant TEXT;

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    description TEXT,
    created_at  INTEGER NOT NULL
) WITHOUT ROWID;
