-- Leases are valid while their node's heartbeat is (see the PostgreSQL migration of the same name).
CREATE INDEX leases_by_node ON leases (node_id) WHERE node_id IS NOT NULL;
