//! The REST API (docs/architecture.md, "REST"): admin routes under `/v1` behind an optional bearer token, plus
//! open `/metrics`, `/healthz` and `/openapi.json`. One module per resource, each with its DTOs and
//! `configure`; [`openapi`] describes them all.

pub mod deliveries;
pub mod error;
pub mod events;
pub mod nodes;
pub mod openapi;
pub mod ops;
pub mod webhooks;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub use error::ApiError;

use crate::app::Webhooks;

/// Default and largest page size of list routes.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 250;

/// Mounts every route into `cfg` (what [`Webhooks::configure`] returns).
pub fn configure(cfg: &mut web::ServiceConfig, webhooks: Webhooks) {
    let max_body = webhooks.settings().max_payload_bytes + 4096;
    cfg.app_data(web::Data::new(webhooks))
        .app_data(
            web::JsonConfig::default()
                .limit(max_body)
                .content_type_required(false)
                .error_handler(|err, _| error::json_error(err).into()),
        )
        .app_data(web::QueryConfig::default().error_handler(|err, _| error::query_error(err).into()))
        .configure(ops::configure)
        .service(
            web::scope("/v1")
                .wrap(from_fn(require_admin_token))
                .configure(webhooks::configure)
                .configure(events::configure)
                .configure(deliveries::configure)
                .configure(nodes::configure)
                .configure(ops::configure_v1)
                .default_service(web::to(not_found)),
        );
}

/// Checks `Authorization: Bearer <token>` when an admin token is configured.
async fn require_admin_token(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let expected = req.app_data::<web::Data<Webhooks>>().and_then(|w| w.settings().admin_token.clone());
    if let Some(expected) = expected {
        let given = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), expected.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or wrong bearer token (Authorization: Bearer <WEBHOOKS_ADMIN_TOKEN>)",
            )
            .into());
        }
    }
    next.call(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// JSON 404 for unknown paths.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {} {}", req.method(), req.path()))
        .error_response()
}

/// JSON 405 for known paths with another method.
pub async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
    .error_response()
}

/// Opaque cursor from the last id of a page.
pub fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The id inside a cursor, or a 400.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned"))
}

/// Turns `limit + 1` fetched rows into one page and the cursor of the next (none on the last page):
/// the extra row only tells whether there is more.
pub(crate) fn paginate<T>(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> &str) -> (Vec<T>, Option<String>) {
    if rows.len() <= limit as usize {
        return (rows, None);
    }
    rows.truncate(limit as usize);
    let next = rows.last().map(|r| encode_cursor(id(r)));
    (rows, next)
}

/// Validates a `limit` query parameter.
pub fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request("invalid_query", format!("limit must be from 1 to {MAX_LIMIT}"))),
    }
}

/// Formats optional Unix ms as RFC 3339.
pub(crate) fn time(ms: Option<i64>) -> Option<String> {
    ms.map(crate::model::rfc3339)
}
