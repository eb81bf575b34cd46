//! Operational routes: `/healthz`, `/metrics`, `/openapi.json` (open by default) and `/v1/event-types`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiError;
use super::error::ErrorResponse;
use crate::app::Webhooks;
use crate::catalog::EventType;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(super::openapi::openapi_json));
}

pub(crate) fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/event-types").get(event_types).default_service(web::to(super::method_not_allowed)));
}

/// Body of a healthy `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthOut {
    /// Always `ok`.
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Body of `GET /v1/event-types`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList<'a> {
    /// Every known event type, in catalog order.
    pub data: &'a [EventType],
}

/// 200 when the store answers, 503 otherwise.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "ops",
    operation_id = "healthz",
    responses(
        (status = 200, description = "The store answers.", body = HealthOut),
        (status = 503, description = "The store does not answer (`store_unavailable`).", body = ErrorResponse),
    )
)]
async fn healthz(webhooks: web::Data<Webhooks>) -> Result<HttpResponse, ApiError> {
    match webhooks.store().ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(HealthOut { status: "ok" })),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store does not answer"))
        }
    }
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
async fn metrics(webhooks: web::Data<Webhooks>) -> HttpResponse {
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
