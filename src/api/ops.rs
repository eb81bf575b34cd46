//! Operational routes: `/healthz` and `/metrics` (open, mounted where the host says; see
//! [`super::Routes`]) and `/v1/event-types`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use super::error::ErrorResponse;
use crate::app::Webhooks;
use crate::catalog::EventType;

pub(crate) fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/event-types").get(event_types).default_service(web::to(super::allow("GET"))));
}

/// Body of a healthy `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthOut {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// This node's id.
    pub node: String,
    /// Operations waiting for the next commit.
    pub pending_writes: u64,
}

/// Body of `GET /v1/event-types`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList<'a> {
    /// Every known event type, in catalog order.
    pub data: &'a [EventType],
}

/// 200 when the store answers reads and takes writes, 503 otherwise.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The store answers reads and takes writes.", body = HealthOut),
        (status = 503, description = "The store does not answer, refuses writes, or is behind (`store_unavailable`; `Retry-After` says when to look again).", body = ErrorResponse),
    )
)]
pub(crate) async fn healthz(webhooks: web::Data<Webhooks>) -> Result<HttpResponse, ApiError> {
    if let Err(e) = webhooks.store().ping().await {
        tracing::warn!(error = %e, "health check: the store does not answer");
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store does not answer")
            .with_retry_after(std::time::Duration::from_secs(1)));
    }
    if let Some(refusal) = webhooks.write_refusal() {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", refusal.reason)
            .with_retry_after(refusal.retry_after));
    }
    Ok(HttpResponse::Ok().json(HealthOut {
        status: "ok",
        node: webhooks.node_id().to_string(),
        pending_writes: webhooks.pending_writes() as u64,
    }))
}

/// Prometheus text exposition.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    operation_id = "metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4 (`webhook_*` metrics).", body = String, content_type = "text/plain; version=0.0.4"),
    )
)]
pub(crate) async fn metrics(webhooks: web::Data<Webhooks>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render(webhooks.metrics()))
}

/// The event catalog.
#[utoipa::path(
    get,
    path = "/v1/event-types",
    tag = "ops",
    operation_id = "listEventTypes",
    responses(
        (status = 200, description = "Every event type that can be published and subscribed to.", body = EventTypeList),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn event_types(webhooks: web::Data<Webhooks>) -> HttpResponse {
    HttpResponse::Ok().json(EventTypeList { data: webhooks.catalog().types() })
}
