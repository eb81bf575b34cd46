//! Operational routes: `/healthz`, `/metrics` (open by default) and `/v1/event-types`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use super::ApiError;
use crate::app::Webhooks;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/metrics", web::get().to(metrics));
}

pub(crate) fn configure_v1(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/event-types").get(event_types).default_service(web::to(super::method_not_allowed)));
}

/// 200 when the store answers, 503 otherwise.
async fn healthz(webhooks: web::Data<Webhooks>) -> Result<HttpResponse, ApiError> {
    match webhooks.store().ping().await {
        Ok(()) => Ok(HttpResponse::Ok().json(json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store does not answer"))
        }
    }
}

/// Prometheus text exposition.
async fn metrics(webhooks: web::Data<Webhooks>) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(webhooks.metrics().render())
}

/// The event catalog.
async fn event_types(webhooks: web::Data<Webhooks>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "data": webhooks.catalog().types() }))
}
