//! The publish side of the dispatcher: its public result and error types, the wire body, and the
//! receipt built from what the store committed.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use crate::catalog::CatalogError;
use crate::delivery::Envelope;
use crate::store::{EventWrite, NewEvent, StoreError};

/// One delivery created by a publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRef {
    /// Delivery id.
    pub id: String,
    /// Target webhook.
    pub webhook_id: String,
}

/// What `publish` returns once the event and its deliveries are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishReceipt {
    /// Event id (the `webhook-id` header of every attempt).
    pub id: String,
    /// Event type.
    pub event: String,
    /// Payload timestamp, RFC 3339.
    pub timestamp: String,
    /// One per subscribed, enabled webhook.
    pub deliveries: Vec<DeliveryRef>,
    /// True when the idempotency key was seen before: this is the first publish's receipt.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
    /// The tenant the event was published for (given, or `data.venueId`); `null`: none, so it
    /// went only to webhooks without a tenant.
    #[schema(required = true)]
    pub tenant: Option<String>,
}

/// Why a publish was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Unknown or malformed event type.
    #[error(transparent)]
    EventType(#[from] CatalogError),
    /// `data` is not a JSON object, or the idempotency key is unusable.
    #[error("{0}")]
    InvalidData(String),
    /// The idempotency key is not 1 to 255 visible ASCII characters (spaces inside only).
    #[error("an idempotency key must be 1 to 255 visible ASCII characters, without spaces at either end")]
    InvalidIdempotencyKey,
    /// tenants part: the given tenant is not 1 to 128 characters of `[A-Za-z0-9._:-]`.
    #[error("invalid tenant: use 1 to 128 characters of letters, digits, `.`, `_`, `:`, `-`")]
    InvalidTenant,
    /// `data` is larger than `max_payload_bytes`.
    #[error("data is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The subsystem is shutting down.
    #[error("the webhook subsystem is shutting down")]
    ShuttingDown,
    /// Nothing was committed.
    #[error("could not persist the event: {0}")]
    Store(#[from] StoreError),
    /// The write side cannot take more right now (the store refuses writes, or is behind); try
    /// again after `retry_after`.
    #[error("not accepted: {}", .0.reason)]
    Unavailable(crate::delivery::write_health::Refusal),
}

impl PublishError {
    /// Whether the caller's input is at fault (answer 4xx: do not retry as is), as opposed to the
    /// subsystem being unavailable for now (answer 503: retry later, ideally with the same
    /// idempotency key).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            PublishError::EventType(_)
                | PublishError::InvalidData(_)
                | PublishError::InvalidIdempotencyKey
                | PublishError::InvalidTenant
                | PublishError::PayloadTooLarge { .. }
        )
    }

    /// When the caller may try again, for an unavailability (`None` for a client error).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            PublishError::Unavailable(r) => Some(r.retry_after),
            PublishError::ShuttingDown | PublishError::Store(_) => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }
}

/// Publish a validated event.
pub(crate) struct PublishRequest {
    pub(crate) event_type: Arc<str>,
    pub(crate) data: Box<RawValue>,
    pub(crate) idempotency_key: Option<String>,
    /// tenants part: the event's tenant, validated.
    pub(crate) tenant: Option<Arc<str>>,
    /// Lifecycle: a test event for this webhook alone, whatever it subscribes to (it must not be
    /// disabled); `None`: every subscribed, enabled webhook.
    pub(crate) only: Option<Arc<str>>,
    pub(crate) reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
}

/// What the dispatcher needs back after the commit of one event.
pub(crate) struct PublishTicket {
    pub(crate) reply: oneshot::Sender<Result<PublishReceipt, PublishError>>,
    pub(crate) envelope: Arc<Envelope>,
}

/// The receipt of one committed event.
pub(crate) fn receipt(event: &NewEvent, write: EventWrite) -> PublishReceipt {
    match write {
        EventWrite::Created { dropped } => PublishReceipt {
            id: event.id.clone(),
            event: event.event_type.clone(),
            timestamp: event.timestamp.clone(),
            deliveries: event
                .deliveries
                .iter()
                .filter(|d| !dropped.contains(&d.id))
                .map(|d| DeliveryRef { id: d.id.clone(), webhook_id: d.webhook_id.to_string() })
                .collect(),
            duplicate: false,
            tenant: event.tenant.clone(),
        },
        EventWrite::Duplicate(existing) => PublishReceipt {
            id: existing.id,
            event: existing.event_type,
            timestamp: existing.timestamp,
            deliveries: existing
                .deliveries
                .into_iter()
                .map(|(id, webhook_id)| DeliveryRef { id, webhook_id })
                .collect(),
            duplicate: true,
            tenant: existing.tenant,
        },
    }
}

/// The wire body: `{"id","event","data","timestamp"}`. Ids, types and timestamps are validated
/// ASCII without quotes or backslashes, and `data` is already valid JSON, so no escaping is needed.
pub(crate) fn build_body(id: &str, event_type: &str, data: &str, timestamp: &str) -> bytes::Bytes {
    let mut s = String::with_capacity(64 + id.len() + event_type.len() + data.len() + timestamp.len());
    s.push_str("{\"id\":\"");
    s.push_str(id);
    s.push_str("\",\"event\":\"");
    s.push_str(event_type);
    s.push_str("\",\"data\":");
    s.push_str(data);
    s.push_str(",\"timestamp\":\"");
    s.push_str(timestamp);
    s.push_str("\"}");
    bytes::Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::store::{ExistingEvent, NewDelivery};

    #[test]
    fn publish_errors_say_whether_the_caller_or_the_subsystem_is_at_fault() {
        let caller = [
            PublishError::InvalidData("x".into()),
            PublishError::InvalidIdempotencyKey,
            PublishError::PayloadTooLarge { limit: 1 },
            PublishError::EventType(crate::catalog::CatalogError::Unknown("x.y".into())),
        ];
        for e in caller {
            assert!(e.is_client_error() && e.retry_after().is_none(), "{e}");
        }
        let unavailable = [PublishError::ShuttingDown, PublishError::Store(StoreError::Closed)];
        for e in unavailable {
            assert!(!e.is_client_error() && e.retry_after().is_some(), "{e}");
        }
    }

    #[test]
    fn body_is_the_seeds_payload_shape() {
        let body = build_body("evt_1", "order.created", r#"{"orderId": "o-1"}"#, "2026-11-28T10:00:00.000Z");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["event"], "order.created");
        assert_eq!(v["data"]["orderId"], "o-1");
        assert_eq!(v["timestamp"], "2026-11-28T10:00:00.000Z");
        assert_eq!(v.as_object().unwrap().len(), 4);
    }

    #[test]
    fn receipts_leave_out_dropped_deliveries_and_repeat_duplicates() {
        let event = NewEvent {
            id: "evt_1".into(),
            event_type: "order.created".into(),
            payload: Bytes::from_static(b"{}"),
            timestamp: "t".into(),
            created_at_ms: 0,
            idempotency_key: None,
            deliveries: vec![
                NewDelivery { id: "dlv_a".into(), webhook_id: Arc::from("w1") },
                NewDelivery { id: "dlv_b".into(), webhook_id: Arc::from("w2") },
            ],
            tenant: Some("venue-a".into()),
        };
        let r = receipt(&event, EventWrite::Created { dropped: vec!["dlv_b".into()] });
        assert_eq!(r.deliveries, vec![DeliveryRef { id: "dlv_a".into(), webhook_id: "w1".into() }]);
        assert!(!r.duplicate);
        assert_eq!(r.tenant.as_deref(), Some("venue-a"));
        let first = ExistingEvent {
            id: "evt_0".into(),
            event_type: "order.created".into(),
            timestamp: "t0".into(),
            deliveries: vec![("dlv_x".into(), "w1".into())],
            tenant: None,
        };
        let r = receipt(&event, EventWrite::Duplicate(first));
        assert_eq!((r.id.as_str(), r.duplicate, r.deliveries.len()), ("evt_0", true, 1));
    }
}
