//! `/v1/deliveries`: delivery history and each delivery's attempt log.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::webhooks::Page;
use super::{ApiError, decode_cursor, encode_cursor, page_limit, time};
use crate::app::Webhooks;
use crate::model::DeliveryStatus;
use crate::store::{AttemptRecord, DeliveryFilter, DeliveryRecord};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/deliveries").get(list).default_service(web::to(super::method_not_allowed)))
        .service(web::resource("/deliveries/{id}").get(get).default_service(web::to(super::method_not_allowed)));
}

/// A delivery: the seed's `WebhookDelivery` fields, plus `attemptLog` on the single-delivery route.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    id: String,
    webhook_id: String,
    event_id: String,
    event: String,
    /// The body as sent: `{id, event, data, timestamp}`.
    payload: Box<RawValue>,
    status: DeliveryStatus,
    attempts: u32,
    created_at: String,
    last_attempt_at: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    next_retry_at: Option<String>,
    completed_at: Option<String>,
    last_status_code: Option<u16>,
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_log: Option<Vec<AttemptOut>>,
}

/// One attempt of the attempt log.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    attempt: u32,
    at: String,
    duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    response_body: Option<String>,
}

impl DeliveryOut {
    fn new(d: DeliveryRecord, log: Option<Vec<AttemptRecord>>) -> Self {
        let payload = RawValue::from_string(d.payload)
            .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("static JSON"));
        Self {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event: d.event_type,
            payload,
            status: d.status,
            attempts: d.attempts,
            created_at: crate::model::rfc3339(d.created_at_ms),
            last_attempt_at: time(d.last_attempt_at_ms),
            next_retry_at: time(d.next_attempt_at_ms),
            completed_at: time(d.completed_at_ms),
            last_status_code: d.last_status_code,
            error: d.last_error,
            attempt_log: log.map(|l| {
                l.into_iter()
                    .map(|a| AttemptOut {
                        attempt: a.attempt,
                        at: crate::model::rfc3339(a.at_ms),
                        duration_ms: a.duration_ms,
                        status_code: a.status_code,
                        error: a.error,
                        response_body: a.response_body,
                    })
                    .collect()
            }),
        }
    }
}

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQuery {
    webhook_id: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(webhooks: web::Data<Webhooks>, query: web::Query<DeliveryQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = page_limit(q.limit)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown status `{s}`: use pending, success or failed"))
        })?),
    };
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let filter = DeliveryFilter { webhook_id: q.webhook_id.filter(|w| !w.is_empty()), status };
    let mut rows = webhooks.deliveries(filter, before, limit + 1).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|d| encode_cursor(&d.id))
    } else {
        None
    };
    let data = rows.into_iter().map(|d| DeliveryOut::new(d, None)).collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

async fn get(webhooks: web::Data<Webhooks>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match webhooks.delivery(&id).await? {
        Some((d, log)) => Ok(HttpResponse::Ok().json(DeliveryOut::new(d, Some(log)))),
        None => Err(ApiError::not_found(&format!("delivery `{id}`"))),
    }
}
