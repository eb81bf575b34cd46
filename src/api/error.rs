//! The one error shape of the REST API: `{"error": {"code": "...", "message": "..."}}` with a
//! fitting status. Every rejection of input is a 4xx from here; a 5xx only means the store or the
//! subsystem itself is unavailable, and its details go to the log, not the client.

use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::RegisterError;
use crate::catalog::CatalogError;
use crate::delivery::dispatcher::PublishError;
use crate::model::SpecError;
use crate::retry::RetryConfigError;
use crate::store::StoreError;

/// An API error response.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `unknown_event_type`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// Sent as `Retry-After` (seconds) with a 503.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// The same error, telling the caller when to try again.
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
}

/// The body of every error response: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "webhook `wh_1` not found"}}))]
pub struct ErrorResponse<'a> {
    /// What went wrong.
    pub error: ErrorDetail<'a>,
}

/// The inside of [`ErrorResponse`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable machine-readable code, e.g. `unknown_event_type`, `invalid_request`, `unauthorized`,
    /// `cross_origin_refused`, `host_not_allowed`, `not_found`, `unsupported_media_type`,
    /// `payload_too_large`, `store_unavailable`.
    pub code: &'a str,
    /// Human-readable explanation.
    pub message: &'a str,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        if let Some(after) = self.retry_after {
            resp.insert_header((actix_web::http::header::RETRY_AFTER, after.as_secs().max(1).to_string()));
        }
        resp.json(ErrorResponse { error: ErrorDetail { code: self.code, message: &self.message } })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error while serving the API");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store is unavailable; try again")
            .with_retry_after(std::time::Duration::from_secs(1))
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::Unknown(_) | CatalogError::UnknownPattern(_) => {
                ApiError::bad_request("unknown_event_type", e.to_string())
            }
            CatalogError::InvalidName(_) => ApiError::bad_request("invalid_event_type", e.to_string()),
            CatalogError::Reserved(_) => ApiError::bad_request("reserved_event_type", e.to_string()),
        }
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        let code = match &e {
            SpecError::Url(_) => "invalid_url",
            SpecError::PrivateTarget(_) => "private_target_not_allowed",
            SpecError::Secret(_) => "invalid_secret",
            SpecError::Events(inner) => return inner.clone().into(),
            SpecError::Retry(_) => "invalid_retry_config",
            SpecError::Header(_) => "invalid_header",
            SpecError::Invalid(_) => "invalid_request",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

impl From<RetryConfigError> for ApiError {
    fn from(e: RetryConfigError) -> Self {
        ApiError::bad_request("invalid_retry_config", format!("invalid retryConfig: {e}"))
    }
}

impl From<RegisterError> for ApiError {
    fn from(e: RegisterError) -> Self {
        match e {
            RegisterError::Invalid(s) => s.into(),
            RegisterError::Store(s) => s.into(),
            RegisterError::ShuttingDown => shutting_down(),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::EventType(c) => c.into(),
            PublishError::InvalidData(m) => ApiError::bad_request("invalid_data", m),
            PublishError::InvalidIdempotencyKey => ApiError::bad_request("invalid_idempotency_key", e.to_string()),
            PublishError::InvalidTenant => ApiError::bad_request("invalid_tenant", e.to_string()),
            PublishError::PayloadTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", e.to_string())
            }
            PublishError::ShuttingDown => shutting_down(),
            PublishError::Store(s) => s.into(),
            PublishError::Unavailable(r) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                format!("not accepted: {}", r.reason),
            )
            .with_retry_after(r.retry_after),
        }
    }
}

fn shutting_down() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the webhook subsystem is shutting down")
}

/// Maps body parse failures to clear 4xx errors (used as the `JsonConfig` error handler).
pub fn json_error(err: JsonPayloadError) -> ApiError {
    match &err {
        JsonPayloadError::Overflow { limit } | JsonPayloadError::OverflowKnownLength { limit, .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is larger than {limit} bytes"),
        ),
        JsonPayloadError::ContentType => super::guard::media_type_error(),
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            ApiError::bad_request("invalid_request", format!("invalid request body: {e}"))
        }
        JsonPayloadError::Deserialize(e) => ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")),
        _ => ApiError::bad_request("invalid_request", format!("could not read the request body: {err}")),
    }
}

/// Maps query-string failures to 400.
pub fn query_error(err: QueryPayloadError) -> ApiError {
    ApiError::bad_request("invalid_query", format!("invalid query string: {err}"))
}
