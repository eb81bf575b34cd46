//! `/v1/deliveries`: delivery history and each delivery's attempt log.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorResponse;
use super::principal::Principal;
use super::webhooks::Page;
use super::{ApiError, decode_cursor, page_limit, paginate, time};
use crate::app::Webhooks;
use crate::model::DeliveryStatus;
use crate::store::{AttemptRecord, DeliveryFilter, DeliveryRecord};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/deliveries").get(list).default_service(web::to(super::allow("GET"))))
        .service(web::resource("/deliveries/{id}").get(get).default_service(web::to(super::allow("GET"))));
}

/// A delivery: the seed's `WebhookDelivery` fields, plus `attemptLog` on the single-delivery route.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOut {
    /// Delivery id (`dlv_…`).
    id: String,
    /// Target webhook.
    webhook_id: String,
    /// Event id (`evt_…`), the `webhook-id` header of every attempt.
    event_id: String,
    /// Event type.
    event: String,
    /// The body as sent: `{id, event, data, timestamp}` (`GET /v1/deliveries/{id}` only: lists
    /// leave it out, so that a page of large events stays small).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    payload: Option<Box<RawValue>>,
    /// Where the delivery stands.
    status: DeliveryStatus,
    /// Attempts made so far.
    attempts: u32,
    /// Creation time (the publish), RFC 3339.
    #[schema(format = DateTime)]
    created_at: String,
    /// Start of the last attempt, RFC 3339.
    #[schema(required = true, format = DateTime)]
    last_attempt_at: Option<String>,
    /// When the next attempt is due (pending deliveries only), RFC 3339.
    #[schema(required = true, format = DateTime)]
    next_retry_at: Option<String>,
    /// When it succeeded or failed for good, RFC 3339.
    #[schema(required = true, format = DateTime)]
    completed_at: Option<String>,
    /// HTTP status of the last answered attempt.
    #[schema(required = true)]
    last_status_code: Option<u16>,
    /// Why the last attempt failed, or why the delivery was given up.
    #[schema(required = true)]
    error: Option<String>,
    /// One entry per attempt, oldest first (`GET /v1/deliveries/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    attempt_log: Option<Vec<AttemptOut>>,
}

/// One attempt of the attempt log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptOut {
    /// 1-based attempt number.
    attempt: u32,
    /// When the attempt started, RFC 3339.
    #[schema(format = DateTime)]
    at: String,
    /// How long it took.
    duration_ms: u64,
    /// HTTP status, when a response came.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    status_code: Option<u16>,
    /// Transport error or reason, when no 2xx came.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
    /// The first KiB of the response body.
    #[schema(required = true)]
    response_body: Option<String>,
}

impl DeliveryOut {
    pub(crate) fn new(d: DeliveryRecord, log: Option<Vec<AttemptRecord>>) -> Self {
        // Lists come without payload (the store leaves it out); the single route has it.
        let payload = log.as_ref().map(|_| {
            RawValue::from_string(d.payload)
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("static JSON"))
        });
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
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Only deliveries to this webhook (empty: all webhooks).
    webhook_id: Option<String>,
    /// Only deliveries in this status: `pending`, `success` or `failed` (`succeeded` and
    /// `delivered` are accepted for `success`, `failure` for `failed`); anything else is 400
    /// `invalid_query`.
    status: Option<String>,
    /// Only deliveries of this event type (exact name; else 400 `invalid_query`).
    event: Option<String>,
    /// Only deliveries created at or after this time, RFC 3339 (else 400 `invalid_query`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only deliveries created before this time, RFC 3339 (else 400 `invalid_query`).
    #[param(format = DateTime)]
    until: Option<String>,
    /// Page size, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    limit: Option<u32>,
    /// `nextCursor` of the previous page: opaque, canonical unpadded base64url of at most 512
    /// characters (else 400 `invalid_cursor`).
    cursor: Option<String>,
}

/// Lists deliveries, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/deliveries",
    tag = "deliveries",
    operation_id = "listDeliveries",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "One page of deliveries (without `attemptLog`; with a tenant token, only deliveries to that tenant's webhooks).", body = Page<DeliveryOut>),
        (status = 400, description = "`invalid_query` (a bad `status`, `event`, `since` or `until`) or `invalid_cursor`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn list(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    query: web::Query<DeliveryQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = page_limit(q.limit)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("unknown status `{s}`: use pending, success or failed"))
        })?),
    };
    let before = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let webhook_id = q.webhook_id.filter(|w| !w.is_empty());
    // No webhook has an id that is not one: nothing to ask the store (which may not take every string).
    if webhook_id.as_deref().is_some_and(|w| crate::model::validate_webhook_id(w).is_err()) {
        return Ok(HttpResponse::Ok().json(Page::<DeliveryOut> { data: Vec::new(), next_cursor: None }));
    }
    // replay: by event type and creation time
    let event_type = match q.event {
        Some(e) if crate::catalog::validate_name(&e).is_err() => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "`event` is not an event type name (lowercase dotted segments like order.created): `{}`",
                    e.escape_debug()
                ),
            ));
        }
        e => e,
    };
    let since_ms = q.since.as_deref().map(|s| super::replay::parse_time("invalid_query", "since", s)).transpose()?;
    let until_ms = q.until.as_deref().map(|u| super::replay::parse_time("invalid_query", "until", u)).transpose()?;
    // tenants part: a tenant token sees only deliveries to its tenant's webhooks.
    let tenant = principal.tenant().map(str::to_string);
    let filter = DeliveryFilter { webhook_id, status, event_type, since_ms, until_ms, tenant };
    let rows = webhooks.deliveries(filter, before, limit + 1).await?;
    let (rows, next_cursor) = paginate(rows, limit, |d| &d.id);
    let data = rows.into_iter().map(|d| DeliveryOut::new(d, None)).collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

/// One delivery with its attempt log.
#[utoipa::path(
    get,
    path = "/v1/deliveries/{id}",
    tag = "deliveries",
    operation_id = "getDelivery",
    params(("id" = String, Path, description = "Delivery id.")),
    responses(
        (status = 200, description = "The delivery, with `attemptLog`.", body = DeliveryOut),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such delivery (`not_found`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn get(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Delivery ids are ASCII; a NUL would only upset the store.
    if id.contains('\0') {
        return Err(ApiError::not_found(&format!("delivery `{}`", id.escape_debug())));
    }
    match webhooks.delivery(&id).await? {
        Some((d, log)) if principal.sees_webhook(&webhooks, &d.webhook_id).await? => {
            Ok(HttpResponse::Ok().json(DeliveryOut::new(d, Some(log))))
        }
        _ => Err(ApiError::not_found(&format!("delivery `{id}`"))),
    }
}
