//! The REST API (docs/architecture.md, "REST"): admin routes under `/v1` behind [`guard`]'s checks
//! (cross-origin requests, `Host` names, an optional bearer token, JSON bodies), plus
//! open `/metrics`, `/healthz` and `/openapi.json`. One module per resource, each with its DTOs and
//! `configure`; [`openapi`] describes them all.

pub mod deliveries;
pub mod error;
pub mod events;
pub mod guard;
pub mod nodes;
pub mod openapi;
pub mod ops;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
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
///
/// `/v1` is behind [`guard`]'s checks (cross-origin requests, `Host` names when there is no admin
/// token, the bearer token when there is one, JSON bodies). Its JSON and query settings are
/// scoped to `/v1`, so a host application's own routes keep theirs.
pub fn configure(cfg: &mut web::ServiceConfig, webhooks: Webhooks) {
    let max_body = webhooks.settings().max_payload_bytes + 4096;
    let guard = web::Data::new(guard::AdminGuard::new(webhooks.settings()));
    cfg.app_data(web::Data::new(webhooks)).configure(ops::configure).service(
        web::scope("/v1")
            .app_data(guard)
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .content_type_required(true)
                    .content_type(|m| guard::is_json_mime(&m))
                    .error_handler(|err, _| error::json_error(err).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|err, _| error::query_error(err).into()))
            .wrap(from_fn(guard::admin_guard))
            .configure(webhooks::configure)
            .configure(events::configure)
            .configure(deliveries::configure)
            .configure(nodes::configure)
            .configure(ops::configure_v1)
            .default_service(web::to(not_found)),
    );
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
