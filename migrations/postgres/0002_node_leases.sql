-- Leases are valid while their node's heartbeat is: a heartbeat writes one row (the node's)
-- however many webhooks it owns. `leases.expires_at` now records when a lease was last granted
-- plus the lease time, for information only.
CREATE INDEX leases_by_node ON leases (node_id) WHERE node_id IS NOT NULL;
