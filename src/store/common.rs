//! Pieces both backends share: how registrations and health are encoded in rows, and the
//! fencing check of a [`WriteBatch`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{BreakerRecord, Fence, RecoveryRecord, RecoveryState, StoreError, StoreResult, StoredHealth, WriteBatch};
use crate::delivery::health::EndpointState;
use crate::model::WebhookRecord;
use crate::retry::RetryConfig;

/// Tombstones of deleted registrations are kept this long (ms); a `registry_changes` caller
/// further behind than that gets the full registry.
pub(crate) const TOMBSTONE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;

/// Node rows expired for longer than this (ms) are removed by the next heartbeat.
pub(crate) const DEAD_NODE_TTL_MS: i64 = 3600 * 1000;

/// Reason stored on the pending deliveries of a deleted webhook.
pub(crate) const DELETED_REASON: &str = "webhook deleted";

pub(crate) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// The JSON-encoded columns of a registration.
pub(crate) struct EncodedWebhook {
    pub(crate) events: Option<String>,
    pub(crate) headers: String,
    pub(crate) retry: String,
}

impl EncodedWebhook {
    pub(crate) fn new(w: &WebhookRecord) -> StoreResult<Self> {
        Ok(Self {
            events: w.events.as_ref().map(serde_json::to_string).transpose().map_err(corrupt)?,
            headers: serde_json::to_string(&w.headers).map_err(corrupt)?,
            retry: serde_json::to_string(&w.retry_config).map_err(corrupt)?,
        })
    }
}

/// A `webhooks` row as read, before its JSON columns are decoded.
pub(crate) struct RawWebhook {
    pub(crate) id: String,
    pub(crate) url: String,
    pub(crate) secret: String,
    pub(crate) events: Option<String>,
    pub(crate) headers: String,
    pub(crate) retry: String,
    pub(crate) max_in_flight: Option<i64>,
    pub(crate) description: Option<String>,
    pub(crate) disabled_at: Option<i64>,
    pub(crate) disabled_reason: Option<String>,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) revision: i64,
}

impl RawWebhook {
    pub(crate) fn decode(self) -> StoreResult<WebhookRecord> {
        Ok(WebhookRecord {
            events: self.events.as_deref().map(serde_json::from_str).transpose().map_err(corrupt)?,
            headers: serde_json::from_str(&self.headers).map_err(corrupt)?,
            retry_config: serde_json::from_str::<RetryConfig>(&self.retry).map_err(corrupt)?,
            max_in_flight: self.max_in_flight.map(|n| n.clamp(0, i64::from(u32::MAX)) as u32),
            id: self.id,
            url: self.url,
            secret: self.secret,
            description: self.description,
            disabled_at_ms: self.disabled_at,
            disabled_reason: self.disabled_reason,
            created_at_ms: self.created_at,
            updated_at_ms: self.updated_at,
            revision: self.revision.max(0) as u64,
        })
    }
}

/// A `webhook_state` row as read (all columns NULL when there is none).
pub(crate) struct RawHealth {
    pub(crate) state: Option<String>,
    pub(crate) consecutive_failures: Option<i64>,
    pub(crate) failing_since: Option<i64>,
    pub(crate) last_success_at: Option<i64>,
    pub(crate) last_failure_at: Option<i64>,
    pub(crate) breaker_probe_at: Option<i64>,
    pub(crate) breaker_cooldown_ms: Option<i64>,
}

impl RawHealth {
    pub(crate) fn decode(self) -> StoreResult<Option<StoredHealth>> {
        let Some(state) = self.state else { return Ok(None) };
        Ok(Some(StoredHealth {
            state: parse_state(&state)?,
            consecutive_failures: self.consecutive_failures.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            failing_since_ms: self.failing_since,
            last_success_ms: self.last_success_at,
            last_failure_ms: self.last_failure_at,
            breaker: self.breaker_probe_at.map(|probe_at_ms| BreakerRecord {
                probe_at_ms,
                cooldown_ms: self.breaker_cooldown_ms.unwrap_or(0).max(0) as u64,
            }),
        }))
    }
}

/// The stored name of an endpoint state.
pub(crate) fn state_name(s: EndpointState) -> &'static str {
    match s {
        EndpointState::Healthy => "healthy",
        EndpointState::BackingOff => "backing_off",
        EndpointState::Paused => "paused",
        EndpointState::Disabled => "disabled",
    }
}

fn parse_state(s: &str) -> StoreResult<EndpointState> {
    Ok(match s {
        "healthy" => EndpointState::Healthy,
        "backing_off" => EndpointState::BackingOff,
        "paused" => EndpointState::Paused,
        "disabled" => EndpointState::Disabled,
        other => return Err(StoreError::Corrupt(format!("unknown endpoint state `{other}`"))),
    })
}

/// The webhooks whose leases a batch's fenced operations name: sorted, distinct.
pub(crate) fn fenced_webhooks(batch: &WriteBatch) -> Vec<String> {
    let ids: BTreeSet<&str> = batch
        .attempts
        .iter()
        .map(|a| &*a.fence.webhook_id)
        .chain(batch.failures.iter().filter_map(|f| f.fence.as_ref().map(|f| &*f.webhook_id)))
        .chain(batch.disables.iter().map(|d| &*d.fence.webhook_id))
        .chain(batch.health.iter().map(|h| &*h.fence.webhook_id))
        .collect();
    ids.into_iter().map(str::to_string).collect()
}

/// Decides which fenced operations of a batch apply, given the lease epochs read inside the
/// transaction, and remembers the fences that did not.
pub(crate) struct FenceCheck {
    epochs: HashMap<Arc<str>, u64>,
    fenced: BTreeSet<Fence>,
}

impl FenceCheck {
    /// `epochs`: the current epoch of each lease the batch names (absent: no lease row).
    pub(crate) fn new(epochs: impl IntoIterator<Item = (String, i64)>) -> Self {
        let epochs = epochs.into_iter().map(|(w, e)| (Arc::from(w), e.max(0) as u64)).collect();
        Self { epochs, fenced: BTreeSet::new() }
    }

    /// Whether an operation under `fence` may be applied (remembered as fenced if not).
    pub(crate) fn allows(&mut self, fence: &Fence) -> bool {
        if self.epochs.get(&fence.webhook_id) == Some(&fence.epoch) {
            return true;
        }
        if !self.fenced.contains(fence) {
            self.fenced.insert(fence.clone());
        }
        false
    }

    /// The same for an optional fence (`None`: unfenced, always applied).
    pub(crate) fn allows_opt(&mut self, fence: Option<&Fence>) -> bool {
        fence.is_none_or(|f| self.allows(f))
    }

    /// The fences that stopped an operation, distinct and sorted.
    pub(crate) fn into_fenced(self) -> Vec<Fence> {
        self.fenced.into_iter().collect()
    }
}

// ----- replay -----

/// The `SET` list that puts a failed delivery back in the queue, due at `now` (a placeholder):
/// pending, with a fresh retry budget. Its attempts keep their numbers (the attempt log goes on
/// after them); `probes` counts the attempts that do not spend the budget, so setting it to
/// `attempts` makes the retry schedule start over.
pub(crate) fn requeue_failed_set(now: &str) -> String {
    format!("status = 'pending', next_attempt_at = {now}, probes = attempts, completed_at = NULL")
}

/// A `recoveries` row as read, with whether its node is live.
pub(crate) struct RawRecovery {
    pub(crate) since: i64,
    pub(crate) until: i64,
    pub(crate) queued: i64,
    pub(crate) requeued: i64,
    pub(crate) state: String,
    pub(crate) started_at: i64,
    pub(crate) finished_at: Option<i64>,
    pub(crate) node_id: String,
    pub(crate) node_live: bool,
}

impl RawRecovery {
    /// The record; a `running` one whose node is not live reads `interrupted`.
    pub(crate) fn decode(self) -> StoreResult<RecoveryRecord> {
        let mut state = RecoveryState::parse(&self.state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown recovery state `{}`", self.state)))?;
        if state == RecoveryState::Running && !self.node_live {
            state = RecoveryState::Interrupted;
        }
        Ok(RecoveryRecord {
            since_ms: self.since,
            until_ms: self.until,
            queued: self.queued.max(0) as u64,
            requeued: self.requeued.max(0) as u64,
            state,
            started_at_ms: self.started_at,
            finished_at_ms: self.finished_at,
            node_id: self.node_id,
        })
    }
}

/// Splits attempt updates into rounds in which each delivery appears at most once, keeping each
/// delivery's updates in batch order across rounds (round k holds the k-th update of each).
pub(crate) fn attempt_rounds<'a, T>(items: impl IntoIterator<Item = (&'a str, T)>) -> Vec<Vec<T>> {
    let mut seen: HashMap<&'a str, usize> = HashMap::new();
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for (id, item) in items {
        let k = seen.entry(id).or_insert(0);
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(item);
        *k += 1;
    }
    rounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_keep_each_deliverys_order() {
        let rounds = attempt_rounds([("a", 1), ("b", 2), ("a", 3), ("a", 4), ("c", 5)]);
        assert_eq!(rounds, vec![vec![1, 2, 5], vec![3], vec![4]]);
    }

    #[test]
    fn fence_check_reports_each_stale_fence_once() {
        let mut check = FenceCheck::new([("w1".to_string(), 2)]);
        let ok = Fence { webhook_id: "w1".into(), epoch: 2 };
        let stale = Fence { webhook_id: "w1".into(), epoch: 1 };
        let none = Fence { webhook_id: "w2".into(), epoch: 1 };
        assert!(check.allows(&ok));
        assert!(!check.allows(&stale));
        assert!(!check.allows(&stale));
        assert!(!check.allows(&none));
        assert!(check.allows_opt(None));
        assert_eq!(check.into_fenced(), vec![stale, none]);
    }

    fn raw(state: &str, node_live: bool) -> RawRecovery {
        RawRecovery {
            since: 1,
            until: 2,
            queued: 3,
            requeued: -1,
            state: state.into(),
            started_at: 4,
            finished_at: None,
            node_id: "n".into(),
            node_live,
        }
    }

    #[test]
    fn a_running_recovery_of_a_dead_node_reads_interrupted() {
        assert_eq!(raw("running", true).decode().unwrap().state, RecoveryState::Running);
        assert_eq!(raw("running", false).decode().unwrap().state, RecoveryState::Interrupted);
        assert_eq!(raw("done", false).decode().unwrap().state, RecoveryState::Done);
        assert_eq!(raw("done", true).decode().unwrap().requeued, 0, "negative counts read as 0");
        assert!(raw("nope", true).decode().is_err());
    }

    #[test]
    fn health_states_round_trip() {
        for s in [EndpointState::Healthy, EndpointState::BackingOff, EndpointState::Paused, EndpointState::Disabled] {
            assert_eq!(parse_state(state_name(s)).unwrap(), s);
        }
        assert!(parse_state("nope").is_err());
    }
}
