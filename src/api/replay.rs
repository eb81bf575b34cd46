//! Replay routes: `POST /v1/deliveries/{id}/retry` (one delivery, an attempt now) and
//! `POST /v1/webhooks/{id}/recover` (every failed delivery of a webhook in a time window,
//! re-queued in the background; progress on the webhook's `recovery`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiError;
use super::deliveries::DeliveryOut;
use super::error::ErrorResponse;
use super::principal::Principal;
use crate::app::Webhooks;
use crate::model::now_ms;
use crate::replay::rfc3339;
use crate::store::{RecoveryRecord, RecoveryStart, RecoveryState, RetryOutcome};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/deliveries/{id}/retry").post(retry).default_service(web::to(super::allow("POST"))))
        .service(web::resource("/webhooks/{id}/recover").post(recover).default_service(web::to(super::allow("POST"))));
}

/// An RFC 3339 time of a request field or query parameter as Unix ms, or a 400 with `code`
/// naming the field.
pub(crate) fn parse_time(code: &'static str, field: &str, value: &str) -> Result<i64, ApiError> {
    rfc3339::parse_ms(value).ok_or_else(|| {
        ApiError::bad_request(
            code,
            format!(
                "`{field}` is not an RFC 3339 date-time (e.g. 2026-11-29T06:00:00Z or 2026-11-29T08:00:00+02:00): `{}`",
                value.escape_debug()
            ),
        )
    })
}

fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// Puts a delivery back in the queue for an attempt now.
///
/// A `pending` delivery is due now and keeps its attempt count; a `failed` one is `pending` again
/// with a fresh attempt budget (its retry schedule starts over). The new attempts follow the
/// earlier ones in the attempt log. An endpoint paused by its breaker still waits for its next
/// probe.
#[utoipa::path(
    post,
    path = "/v1/deliveries/{id}/retry",
    tag = "deliveries",
    operation_id = "retryDelivery",
    params(("id" = String, Path, description = "Delivery id.")),
    responses(
        (status = 202, description = "Queued for an attempt now: the delivery (without `payload` and `attemptLog`).", body = DeliveryOut),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such delivery (`not_found`).", body = ErrorResponse),
        (status = 409, description = "`delivery_succeeded` (nothing to retry), `webhook_deleted` or `webhook_disabled`.", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn retry(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Delivery ids are ASCII; a NUL would only upset the store.
    if id.contains('\0') {
        return Err(ApiError::not_found(&format!("delivery `{}`", id.escape_debug())));
    }
    principal.reach_delivery(&webhooks, &id).await?;
    match webhooks.retry_delivery(&id).await? {
        RetryOutcome::Requeued { delivery, .. } => Ok(HttpResponse::Accepted().json(DeliveryOut::new(*delivery, None))),
        RetryOutcome::NotFound => Err(ApiError::not_found(&format!("delivery `{id}`"))),
        RetryOutcome::Succeeded => {
            Err(conflict("delivery_succeeded", format!("delivery `{id}` succeeded already: there is nothing to retry")))
        }
        RetryOutcome::WebhookGone => {
            Err(conflict("webhook_deleted", format!("the webhook of delivery `{id}` has been deleted")))
        }
        RetryOutcome::WebhookDisabled => Err(conflict(
            "webhook_disabled",
            format!("the webhook of delivery `{id}` is disabled: re-enable it (PUT) before retrying"),
        )),
    }
}

/// Request body of `POST /v1/webhooks/{id}/recover`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"since": "2026-11-29T06:00:00Z", "until": "2026-11-29T07:00:00Z"}))]
pub struct RecoverIn {
    /// Window start, RFC 3339: deliveries created at or after it.
    #[schema(format = DateTime)]
    since: String,
    /// Window end, RFC 3339: deliveries created before it; after `since`. Absent or `null`: now.
    #[serde(default)]
    #[schema(format = DateTime)]
    until: Option<String>,
}

/// Answer of `POST /v1/webhooks/{id}/recover`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoverOut {
    /// Failed deliveries in the window now: the ones the recovery re-queues.
    queued: u64,
}

/// Where a recovery stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryStateOut {
    /// Batches are being re-queued.
    Running,
    /// Every batch is re-queued.
    Done,
    /// Its node stopped mid-way: what was re-queued stays queued, the rest stays failed; recover
    /// the same window again to re-queue the rest.
    Interrupted,
}

impl From<RecoveryState> for RecoveryStateOut {
    fn from(s: RecoveryState) -> Self {
        match s {
            RecoveryState::Running => Self::Running,
            RecoveryState::Done => Self::Done,
            RecoveryState::Interrupted => Self::Interrupted,
        }
    }
}

/// A webhook's last recovery, as `recovery` on the webhook resource.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryOut {
    /// Window start, RFC 3339.
    #[schema(format = DateTime)]
    since: String,
    /// Window end, RFC 3339.
    #[schema(format = DateTime)]
    until: String,
    /// Failed deliveries in the window when it started.
    queued: u64,
    /// Re-queued so far (it can differ from `queued` when deliveries in the window fail, are
    /// retried or are deleted meanwhile).
    requeued: u64,
    /// Where it stands.
    state: RecoveryStateOut,
    /// When it started, RFC 3339.
    #[schema(format = DateTime)]
    started_at: String,
    /// When it ended (done or interrupted), RFC 3339; `null` while running.
    #[schema(required = true, format = DateTime)]
    finished_at: Option<String>,
}

impl From<RecoveryRecord> for RecoveryOut {
    fn from(r: RecoveryRecord) -> Self {
        Self {
            since: crate::model::rfc3339(r.since_ms),
            until: crate::model::rfc3339(r.until_ms),
            queued: r.queued,
            requeued: r.requeued,
            state: r.state.into(),
            started_at: crate::model::rfc3339(r.started_at_ms),
            finished_at: super::time(r.finished_at_ms),
        }
    }
}

/// Re-queues every failed delivery of a webhook created in a time window.
///
/// Counts them now (`queued`) and re-queues them in the background in bounded batches, each with
/// a fresh attempt budget, as a retry does; progress is the webhook's `recovery`. One recovery
/// per webhook at a time.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/recover",
    tag = "webhooks",
    operation_id = "recoverWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body = RecoverIn,
    responses(
        (status = 202, description = "Started: how many deliveries it re-queues.", body = RecoverOut),
        (status = 400, description = "`invalid_json`, `invalid_request` (unknown field, or `since`/`until` not RFC 3339, or `since` not before `until`).", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "`recovery_running` (one recovery per webhook at a time) or `webhook_disabled`.", body = ErrorResponse),
        (status = 413, description = "Request body too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn recover(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    body: super::JsonObject<RecoverIn>,
) -> Result<HttpResponse, ApiError> {
    if crate::model::validate_webhook_id(&id).is_err() {
        return Err(ApiError::not_found(&format!("webhook `{id}`")));
    }
    principal.reach_webhook(&webhooks, &id).await?;
    // An unknown webhook is a 404 whatever the window (a valid-looking request for nothing).
    if webhooks.webhook(&id).await?.is_none() {
        return Err(ApiError::not_found(&format!("webhook `{id}`")));
    }
    let body = body.0;
    let since = parse_time("invalid_request", "since", &body.since)?;
    let until = match body.until.as_deref() {
        Some(u) => parse_time("invalid_request", "until", u)?,
        None => now_ms(),
    };
    if since >= until {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!(
                "`since` ({}) must be before `until` ({}{})",
                body.since,
                crate::model::rfc3339(until),
                if body.until.is_none() { ", now" } else { "" }
            ),
        ));
    }
    match webhooks.recover(&id, since, until).await? {
        RecoveryStart::Started(r) => Ok(HttpResponse::Accepted().json(RecoverOut { queued: r.queued })),
        RecoveryStart::NotFound => Err(ApiError::not_found(&format!("webhook `{id}`"))),
        RecoveryStart::WebhookDisabled => Err(conflict(
            "webhook_disabled",
            format!("webhook `{id}` is disabled: re-enable it (PUT) before recovering its deliveries"),
        )),
        RecoveryStart::Running(r) => {
            debug_assert_eq!(r.state, RecoveryState::Running);
            Err(conflict(
                "recovery_running",
                format!(
                    "a recovery of webhook `{id}` is running ({} of {} re-queued): wait until its state is done",
                    r.requeued, r.queued
                ),
            ))
        }
    }
}
