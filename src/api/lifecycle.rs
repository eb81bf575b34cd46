//! Endpoint lifecycle routes: `PATCH /v1/webhooks/{id}` (JSON merge patch), disable and enable,
//! the secret (`GET …/secret`, `POST …/rotate-secret`) and the test ping (`POST …/test`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::error::ErrorResponse;
use super::principal::Principal;
use super::webhooks::{WebhookIn, WebhookOut, whole_number};
use super::{ApiError, merge_patch};
use crate::app::{LifecycleError, Webhooks};
use crate::model::{DeliveryStatus, validate_webhook_id};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let post = |path: &str, handler| web::resource(path).route(handler).default_service(web::to(super::allow("POST")));
    cfg.service(web::resource("/webhooks/{id}/secret").get(secret).default_service(web::to(super::allow("GET"))))
        .service(post("/webhooks/{id}/disable", web::post().to(disable)))
        .service(post("/webhooks/{id}/enable", web::post().to(enable)))
        .service(post("/webhooks/{id}/rotate-secret", web::post().to(rotate_secret)))
        .service(post("/webhooks/{id}/test", web::post().to(test)));
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(id) => ApiError::not_found(&format!("webhook `{id}`")),
            LifecycleError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            LifecycleError::Disabled(_) => ApiError::new(StatusCode::CONFLICT, "webhook_disabled", e.to_string()),
            LifecycleError::Invalid(s) => s.into(),
            LifecycleError::Publish(p) => p.into(),
            LifecycleError::Store(s) => s.into(),
            LifecycleError::ShuttingDown => crate::app::RegisterError::ShuttingDown.into(),
        }
    }
}

/// The id of a path, or 404: an id that cannot be registered names no webhook.
fn known_id(id: web::Path<String>) -> Result<String, ApiError> {
    let id = id.into_inner();
    validate_webhook_id(&id).map_err(|_| ApiError::not_found(&format!("webhook `{id}`")))?;
    Ok(id)
}

/// An optional JSON body: `None` when there is none; otherwise it must be declared JSON and parse
/// into `T` (unknown fields refused), with the errors of a required body.
fn optional_body<T: DeserializeOwned>(req: &HttpRequest, body: &web::Bytes) -> Result<Option<T>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let json = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<actix_web::mime::Mime>().ok())
        .is_some_and(|m| super::guard::is_json_mime(&m));
    if !json {
        return Err(super::guard::media_type_error());
    }
    let raw: Box<serde_json::value::RawValue> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")))?;
    // `null` is no body too (the document describes the body as the object or `null`).
    if raw.get() == "null" { Ok(None) } else { super::from_object_text(raw.get()).map(Some) }
}

/// Partially updates a webhook with a JSON merge patch (RFC 7396) over its registration.
///
/// The patch is applied to the webhook's spec (the `WebhookIn` fields it has now, without its
/// secret), and the result is validated exactly as a `PUT` body: unknown fields are refused, `null`
/// removes an optional field (its default applies), `url` cannot be removed. Nested objects merge
/// (`{"retryConfig": {"maxRetries": 3}}` keeps the other retry fields; `{"headers": {"X-A": null}}`
/// removes one header); arrays are replaced. A `secret` replaces the key at once (use
/// `rotate-secret` for an overlap). The disabled state is kept. Applied live for the next attempt.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "patchWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body(
        content = WebhookIn,
        description = "A JSON merge patch (RFC 7396) of the registration: any subset of its fields; `null` removes an optional one. `application/json` or `application/merge-patch+json`.",
        content_type = "application/merge-patch+json",
    ),
    responses(
        (status = 200, description = "Updated (or unchanged); the webhook without its secret.", body = WebhookOut),
        (status = 400, description = "The patched registration is invalid (same codes as `PUT /v1/webhooks/{id}`), or the patch is not a JSON object (`invalid_request`).", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "The webhook kept changing concurrently (`conflict`); nothing was changed, try again.", body = ErrorResponse),
        (status = 413, description = "Request body too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn patch(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    let patch = body.into_inner();
    if !patch.is_object() {
        return Err(ApiError::bad_request("invalid_request", "a merge patch must be a JSON object"));
    }
    if let Some(url) = patch.get("url").and_then(serde_json::Value::as_str) {
        WebhookIn::given_url_fits(url, &webhooks)?;
    }
    let info = webhooks
        .update(&id, |current| {
            let mut spec = serde_json::to_value(current.to_spec())
                .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid patch: {e}")))?;
            merge_patch::apply(&mut spec, &patch);
            let mut patched: WebhookIn = serde_json::from_value(spec)
                .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid request body: {e}")))?;
            let tenant = patched.tenant_for(&principal, Some(current.tenant.clone()))?;
            patched.into_spec(&webhooks, tenant)
        })
        .await?;
    Ok(HttpResponse::Ok().json(WebhookOut::from(info)))
}

/// Body of `POST /v1/webhooks/{id}/disable` (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DisableIn {
    /// Shown as the webhook's `disabledReason` and as the `error` of the deliveries the disable
    /// fails: 1 to 1024 characters without ASCII control characters (default `disabled by an
    /// operator`).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 1024, pattern = r"^[^\x00-\x1f\x7f]*$")]
    reason: Option<String>,
}

/// Disables a webhook: it sends nothing more, and its pending deliveries fail with the reason
/// (as when it is disabled automatically). Idempotent.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/disable",
    tag = "webhooks",
    operation_id = "disableWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body(content = Option<DisableIn>, description = "Optional."),
    responses(
        (status = 200, description = "Disabled (`state` is `disabled`); an already disabled webhook keeps its reason.", body = WebhookOut),
        (status = 400, description = "`invalid_request` (bad reason or unknown field) or `invalid_json`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "The webhook kept changing concurrently (`conflict`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn disable(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    let body: Option<DisableIn> = optional_body(&req, &body)?;
    let info = webhooks.disable(&id, body.and_then(|b| b.reason)).await?;
    Ok(HttpResponse::Ok().json(WebhookOut::from(info)))
}

/// Body of `POST /v1/webhooks/{id}/enable` (optional; no fields).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableIn {}

/// Enables a disabled webhook: its health starts over, new events reach it, and deliveries still
/// pending for it go out. Idempotent.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/enable",
    tag = "webhooks",
    operation_id = "enableWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body(content = Option<EnableIn>, description = "Optional; no fields."),
    responses(
        (status = 200, description = "Enabled.", body = WebhookOut),
        (status = 400, description = "`invalid_request` (unknown field) or `invalid_json`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "The webhook kept changing concurrently (`conflict`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn enable(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    let _: Option<EnableIn> = optional_body(&req, &body)?;
    let info = webhooks.enable(&id).await?;
    Ok(HttpResponse::Ok().json(WebhookOut::from(info)))
}

/// `{secret}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// The signing secret (`whsec_…`, or the plain string given).
    secret: String,
}

/// A webhook's signing secret (not part of webhook reads).
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/secret",
    tag = "webhooks",
    operation_id = "getWebhookSecret",
    params(("id" = String, Path, description = "Webhook id.")),
    responses(
        (status = 200, description = "The current secret.", body = SecretOut),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn secret(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    match webhooks.secret(&id).await? {
        Some(secret) => Ok(HttpResponse::Ok().json(SecretOut { secret })),
        None => Err(ApiError::not_found(&format!("webhook `{id}`"))),
    }
}

/// Body of `POST /v1/webhooks/{id}/rotate-secret` (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateIn {
    /// The new secret, checked as on create (400 `invalid_secret`); generated (`whsec_…`) when
    /// absent or `null`.
    #[serde(default)]
    secret: Option<String>,
    /// How long the previous secret keeps signing beside the new one, s: 0 to 2592000 (30 days);
    /// default the server's `WEBHOOKS_SECRET_ROTATION_OVERLAP` (24 h).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 0, maximum = 2592000)]
    overlap_seconds: Option<u64>,
}

/// Rotates a webhook's signing secret. During the overlap every attempt carries two `v1,`
/// signatures in `webhook-signature` (the new key's, then the previous key's); after it only the
/// new key signs. `X-Webhook-Signature` uses the new key at once.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    operation_id = "rotateWebhookSecret",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body(content = Option<RotateIn>, description = "Optional."),
    responses(
        (status = 200, description = "Rotated; the new secret.", body = SecretOut),
        (status = 400, description = "`invalid_secret`, `invalid_request` (bad `overlapSeconds`, unknown field) or `invalid_json`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "The webhook kept changing concurrently (`conflict`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn rotate_secret(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    let body: Option<RotateIn> = optional_body(&req, &body)?;
    let (secret, overlap) = match body {
        Some(b) => (b.secret, b.overlap_seconds),
        None => (None, None),
    };
    if let Some(s) = overlap
        && s > crate::config::MAX_SECRET_ROTATION_OVERLAP.as_secs()
    {
        return Err(ApiError::bad_request("invalid_request", "overlapSeconds must be from 0 to 2592000 (30 days)"));
    }
    if secret.as_deref().is_some_and(|s| s.contains('\0')) {
        return Err(ApiError::bad_request("invalid_secret", "invalid secret: it contains NUL"));
    }
    let secret = webhooks.rotate_secret(&id, secret, overlap.map(std::time::Duration::from_secs)).await?;
    Ok(HttpResponse::Ok().json(SecretOut { secret }))
}

/// Body of `POST /v1/webhooks/{id}/test` (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestIn {
    /// The test event's `data`, a JSON object (default `{"webhookId": "<id>"}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    data: Option<Box<RawValue>>,
}

/// The outcome of the test ping's attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestOut {
    /// The stored delivery (see `GET /v1/deliveries/{id}`).
    delivery_id: String,
    /// The delivery's status after the attempt: `success` or `failed` (a test is never retried;
    /// `pending` only when the attempt was a breaker probe of a paused endpoint).
    status: DeliveryStatus,
    /// HTTP status of the response, when one came.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 100, maximum = 999)]
    status_code: Option<u16>,
    /// Time to the response or failure, ms.
    #[schema(minimum = 0)]
    duration_ms: u64,
    /// Why the attempt failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// The first KiB of the response body (invalid UTF-8 replaced), `null` without a response.
    #[schema(required = true)]
    response_body: Option<String>,
}

/// The test ping did not finish in time; it still goes out, once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestAccepted {
    /// The stored delivery: its attempt shows in `GET /v1/deliveries/{id}`.
    delivery_id: String,
}

/// Sends a `webhook.test` event to this webhook alone, whatever it subscribes to, through the
/// normal path (a stored delivery, signed, in the attempt log; attempted once, never retried),
/// and waits for the attempt's outcome (up to the attempt timeout plus 2 s).
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/test",
    tag = "webhooks",
    operation_id = "testWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    request_body(content = Option<TestIn>, description = "Optional."),
    responses(
        (status = 200, description = "The attempt's outcome, whatever the receiver answered.", body = TestOut),
        (status = 202, description = "No outcome in time; the delivery still goes out once.", body = TestAccepted),
        (status = 400, description = "`invalid_data` (data not an object), `invalid_request` or `invalid_json`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 409, description = "The webhook is disabled (`webhook_disabled`): enable it first.", body = ErrorResponse),
        (status = 413, description = "`data` or the request body is too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn test(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = known_id(id)?;
    principal.reach_webhook(&webhooks, &id).await?;
    let body: Option<TestIn> = optional_body(&req, &body)?;
    let data = body.and_then(|b| b.data).filter(|d| d.get() != "null");
    let result = webhooks.test_delivery(&id, data).await?;
    Ok(match result.outcome {
        Some((status, attempt)) => HttpResponse::Ok().json(TestOut {
            delivery_id: result.delivery_id,
            status,
            status_code: attempt.status_code,
            duration_ms: attempt.duration_ms,
            error: attempt.error,
            response_body: attempt.response_body,
        }),
        None => HttpResponse::Accepted().json(TestAccepted { delivery_id: result.delivery_id }),
    })
}
