//! `/v1/webhooks`: register (generated or caller-chosen id), list, get, replace, delete.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::{ApiError, decode_cursor, encode_cursor, page_limit, time};
use crate::app::{WebhookInfo, Webhooks};
use crate::delivery::health::EndpointState;
use crate::model::WebhookSpec;
use crate::retry::RetryConfig;
use crate::store::Upserted;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/webhooks").post(create).get(list).default_service(web::to(super::method_not_allowed)))
        .service(
            web::resource("/webhooks/{id}")
                .get(get)
                .put(replace)
                .delete(delete)
                .default_service(web::to(super::method_not_allowed)),
        );
}

/// Request body of `POST /v1/webhooks` and `PUT /v1/webhooks/{id}`.
///
/// `retryConfig` is taken raw and parsed separately so that a bad one gets its own error code.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookIn {
    url: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    retry_config: Option<serde_json::Value>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

impl WebhookIn {
    fn into_spec(self) -> Result<WebhookSpec, ApiError> {
        let retry_config = match self.retry_config {
            None | Some(serde_json::Value::Null) => None,
            Some(v) if !v.is_object() => {
                return Err(ApiError::bad_request("invalid_retry_config", "invalid retryConfig: expected an object"));
            }
            Some(v) => Some(
                serde_json::from_value::<RetryConfig>(v)
                    .map_err(|e| ApiError::bad_request("invalid_retry_config", format!("invalid retryConfig: {e}")))?,
            ),
        };
        Ok(WebhookSpec {
            url: self.url,
            secret: self.secret,
            events: self.events,
            headers: self.headers,
            retry_config,
            description: self.description,
            max_in_flight: self.max_in_flight,
        })
    }
}

/// A webhook as the API returns it: the registration plus live endpoint health.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    id: String,
    url: String,
    secret: String,
    /// `null` = every event type.
    events: Option<Vec<String>>,
    headers: BTreeMap<String, String>,
    retry_config: RetryConfig,
    description: Option<String>,
    max_in_flight: Option<u32>,
    state: EndpointState,
    consecutive_failures: u32,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    disabled_at: Option<String>,
    disabled_reason: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<WebhookInfo> for WebhookOut {
    fn from(info: WebhookInfo) -> Self {
        let r = info.record;
        let h = info.health;
        let stored_disabled = r.disabled_at_ms.is_some();
        let state = match h {
            Some(h) => h.state,
            None if stored_disabled => EndpointState::Disabled,
            None => EndpointState::Healthy,
        };
        Self {
            state,
            consecutive_failures: h.map(|h| h.consecutive_failures).unwrap_or(0),
            last_success_at: time(h.and_then(|h| h.last_success_ms)),
            last_failure_at: time(h.and_then(|h| h.last_failure_ms)),
            disabled_at: time(r.disabled_at_ms),
            disabled_reason: r.disabled_reason,
            created_at: crate::model::rfc3339(r.created_at_ms),
            updated_at: crate::model::rfc3339(r.updated_at_ms),
            id: r.id,
            url: r.url,
            secret: r.secret,
            events: r.events,
            headers: r.headers,
            retry_config: r.retry_config,
            description: r.description,
            max_in_flight: r.max_in_flight,
        }
    }
}

/// `{data, nextCursor}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Query of list routes.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn create(webhooks: web::Data<Webhooks>, body: web::Json<WebhookIn>) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner().into_spec()?;
    let (info, _) = webhooks.register(None, spec).await?;
    Ok(HttpResponse::Created().json(WebhookOut::from(info)))
}

async fn replace(
    webhooks: web::Data<Webhooks>,
    id: web::Path<String>,
    body: web::Json<WebhookIn>,
) -> Result<HttpResponse, ApiError> {
    let spec = body.into_inner().into_spec()?;
    let (info, upserted) = webhooks.register(Some(id.into_inner()), spec).await?;
    let status = if upserted == Upserted::Created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(HttpResponse::build(status).json(WebhookOut::from(info)))
}

async fn list(webhooks: web::Data<Webhooks>, query: web::Query<ListQuery>) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let mut rows = webhooks.webhooks(after, limit + 1).await?;
    let next_cursor = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|w| encode_cursor(&w.record.id))
    } else {
        None
    };
    let data = rows.into_iter().map(WebhookOut::from).collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

async fn get(webhooks: web::Data<Webhooks>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    match webhooks.webhook(&id).await? {
        Some(info) => Ok(HttpResponse::Ok().json(WebhookOut::from(info))),
        None => Err(ApiError::not_found(&format!("webhook `{id}`"))),
    }
}

async fn delete(webhooks: web::Data<Webhooks>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    if webhooks.unregister(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(&format!("webhook `{id}`")))
    }
}
