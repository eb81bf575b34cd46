//! `POST /v1/events`: publish. Answers 202 once the event and its deliveries are committed.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ApiError;
use crate::app::Webhooks;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/events").post(publish).default_service(web::to(super::method_not_allowed)));
}

/// Request body of `POST /v1/events`. `data` is kept as raw JSON: it goes on the wire byte for byte.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishIn {
    event: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    idempotency_key: Option<String>,
}

async fn publish(
    webhooks: web::Data<Webhooks>,
    req: HttpRequest,
    body: web::Json<PublishIn>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let data = body
        .data
        .filter(|d| d.get() != "null")
        .ok_or_else(|| ApiError::bad_request("invalid_data", "`data` is required and must be a JSON object"))?;
    // Stripe's header works too; the body field wins when both are given.
    let key = body
        .idempotency_key
        .or_else(|| req.headers().get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string));
    let receipt = webhooks.publish_raw(&body.event, data, key).await?;
    Ok(HttpResponse::Accepted().json(receipt))
}
