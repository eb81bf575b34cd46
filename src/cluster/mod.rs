//! Who owns what: the one place that knows about nodes.
//!
//! Several nodes (replicas of the host app, or standalone servers) share one PostgreSQL database;
//! SQLite is the same model with a single node. This is cluster sharding over the database, with no
//! protocol between the nodes themselves:
//!
//! - **Membership.** Each node has an id (`WEBHOOKS_NODE_ID`, generated when unset) and heartbeats
//!   into the store every `heartbeat_interval`; it counts as live until `lease_ttl` after its last
//!   heartbeat (by the store's clock).
//! - **One owner per webhook.** Only the node holding a webhook's lease runs its endpoint actor, so
//!   `maxInFlight`, the breaker and ordering hold cluster-wide. Every node computes the same
//!   assignment of webhooks to live nodes ([`balance`]: rendezvous hashing with exact capacities,
//!   within one webhook of even, little movement when a node joins or leaves), claims what it should
//!   own, and hands over what it should not: it drains the endpoint first (no new attempts, the ones
//!   in flight finish and are committed), then releases the lease, so two nodes never send one
//!   webhook's deliveries at the same time.
//! - **Fencing.** Every grant increments the lease's epoch, and every write an owner makes for its
//!   webhook carries that epoch; the store refuses writes under an epoch that has moved on. A node
//!   that could not renew stops starting attempts a margin before its leases run out
//!   ([`lease`]), and once they may have run out it abandons them. A node frozen past its lease
//!   (GC pause, SIGSTOP, partition) comes back to find its writes refused; it drops those webhooks
//!   and rejoins, and the balance gives it a share again.
//! - **Due work lives in the store.** An owner pages its webhook's due deliveries in by due time;
//!   new ones are announced from the publishing transaction (PostgreSQL `NOTIFY`), with a poll
//!   every `poll_interval` as the safety net. Nothing depends on ids minted by one process.
//! - **Registry and health are cluster state**: registrations, disables, breaker state and failure
//!   streaks are stored; every node keeps a copy of the registry (changes announced, and polled
//!   every heartbeat), so any node can publish and answer the API for every webhook.
//!
//! Modules: [`balance`] and [`lease`] are pure decisions with unit tests; [`node`] is the actor that
//! sequences the store calls and tells the dispatcher what to start and stop.

pub(crate) mod balance;
pub(crate) mod lease;
pub(crate) mod node;
