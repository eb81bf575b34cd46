//! `POST /v1/events`: publish. Answers 202 once the event and its deliveries are committed.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::ApiError;
use super::error::ErrorResponse;
use super::principal::Principal;
use crate::app::{PublishOptions, Webhooks};
use crate::delivery::dispatcher::PublishReceipt;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/events").post(publish).default_service(web::to(super::allow("POST"))));
}

/// Request body of `POST /v1/events`. `data` is kept as raw JSON: it goes on the wire byte for byte.
/// Unknown fields are refused (400 `invalid_request` naming the field).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"event": "order.created", "data": {"orderId": "ord_1", "total": 25.07, "currency": "EUR"}}))]
pub struct PublishIn {
    /// A known event type (see `GET /v1/event-types`).
    event: String,
    /// The event's data, a JSON object of at most 256 KiB (configurable); sent byte for byte.
    #[serde(default)]
    #[schema(value_type = Object, required = true)]
    data: Option<Box<RawValue>>,
    /// Deduplicates publishes: a repeated key returns the first receipt with `"duplicate": true`.
    /// 1 to 255 visible ASCII characters, spaces allowed inside only (else 400
    /// `invalid_idempotency_key`). The `Idempotency-Key` header works too; this field wins when
    /// both are given.
    #[serde(default)]
    idempotency_key: Option<String>,
    /// The tenant (a Servio venue) the event is for: 1 to 128 characters of `[A-Za-z0-9._:-]` (400
    /// `invalid_tenant`). It goes to that tenant's webhooks and to webhooks without a tenant.
    /// Absent (or `null`): `data.venueId` when that is a string and a valid tenant name, else no
    /// tenant (only webhooks without a tenant get it). With a tenant token it is that token's
    /// tenant: another one is 403 `tenant_mismatch`.
    #[serde(default)]
    tenant: Option<String>,
}

/// Publishes an event to every subscribed, enabled webhook.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    operation_id = "publishEvent",
    request_body = PublishIn,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, description = "Alternative to the `idempotencyKey` body field: 1 to 255 visible ASCII characters (spaces allowed inside); anything else is refused with `invalid_idempotency_key`.")),
    responses(
        (status = 202, description = "The event and its deliveries are committed and will be delivered.", body = PublishReceipt),
        (status = 400, description = "`unknown_event_type`, `invalid_event_type`, `invalid_data`, `invalid_json`, `invalid_request`, `invalid_tenant`, or `invalid_idempotency_key` (an `Idempotency-Key` header that is not 1 to 255 visible ASCII characters).", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token publishing for another tenant (`tenant_mismatch`).", body = ErrorResponse),
        (status = 413, description = "`data` or the request body is too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`; nothing was committed.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn publish(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    req: HttpRequest,
    body: super::JsonObject<PublishIn>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let data = body
        .data
        .filter(|d| d.get() != "null")
        .ok_or_else(|| ApiError::bad_request("invalid_data", "`data` is required and must be a JSON object"))?;
    // Stripe's header works too; the body field wins when both are given. A header that is there
    // but unusable is refused rather than ignored: ignoring it would turn a retry into a duplicate.
    let header = idempotency_header(&req)?;
    let key = body.idempotency_key.or(header);
    // tenants part: a tenant token publishes for its own tenant only.
    let tenant = principal.tenant_for(body.tenant.as_deref())?;
    let receipt = webhooks.publish_with(&body.event, data, PublishOptions { idempotency_key: key, tenant }).await?;
    Ok(HttpResponse::Accepted().json(receipt))
}

use super::rules::IDEMPOTENCY_KEY_LEN;

/// The `Idempotency-Key` header, if given: exactly one, 1 to 255 visible ASCII characters (spaces
/// allowed between them; HTTP strips them at the ends).
fn idempotency_header(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let refuse = |why: &str| {
        Err(ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key header {why}: use 1 to {IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        ))
    };
    if values.next().is_some() {
        return refuse("is given more than once");
    }
    let bytes = value.as_bytes().trim_ascii();
    if bytes.is_empty() {
        return refuse("is empty");
    }
    if bytes.len() > IDEMPOTENCY_KEY_LEN {
        return refuse("is too long");
    }
    if !bytes.iter().all(|&b| b.is_ascii_graphic() || b == b' ') {
        return refuse("has characters that are not visible ASCII");
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}
