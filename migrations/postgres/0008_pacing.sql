-- Pacing (issue 9): per-webhook rate limit and ordered delivery.
-- Attempts per second to the endpoint (a token bucket in its owner's endpoint actor); NULL: no limit.
ALTER TABLE webhooks ADD COLUMN rate_limit_per_second DOUBLE PRECISION;
-- One attempt at a time, in publish order.
ALTER TABLE webhooks ADD COLUMN ordered BOOLEAN NOT NULL DEFAULT false;

-- Publish order across nodes: a database sequence, taken by the publishing transaction (delivery
-- ids are minted on each node's clock, which may be skewed). Pending deliveries that exist now
-- are numbered in id order; new rows take the sequence (set as a default after the backfill, so
-- adding the column does not rewrite the table). Ordered pages read the `deliveries_due` partial
-- index for the webhook and sort by it.
CREATE SEQUENCE deliveries_seq;
ALTER TABLE deliveries ADD COLUMN seq BIGINT;
UPDATE deliveries d SET seq = n.rn
  FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM deliveries WHERE status = 'pending') n
  WHERE d.id = n.id;
SELECT setval('deliveries_seq', coalesce((SELECT max(seq) FROM deliveries), 0) + 1, false);
ALTER TABLE deliveries ALTER COLUMN seq SET DEFAULT nextval('deliveries_seq');
ALTER SEQUENCE deliveries_seq OWNED BY deliveries.seq;
