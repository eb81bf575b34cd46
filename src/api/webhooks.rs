//! `/v1/webhooks`: register (generated or caller-chosen id), list, get, replace, delete.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorResponse;
use super::principal::Principal;
use super::{ApiError, decode_cursor, page_limit, paginate, rules, time};
use crate::app::{WebhookInfo, Webhooks};
use crate::delivery::health::EndpointState;
use crate::model::WebhookSpec;
use crate::retry::RetryConfig;
use crate::store::Upserted;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/webhooks").post(create).get(list).default_service(web::to(super::allow("GET, POST"))))
        .service(
            web::resource("/webhooks/{id}")
                .get(get)
                .put(replace)
                .patch(super::lifecycle::patch)
                .delete(delete)
                .default_service(web::to(super::allow("GET, PUT, DELETE, PATCH"))),
        );
}

/// Request body of `POST /v1/webhooks` and `PUT /v1/webhooks/{id}`.
///
/// `retryConfig` is taken raw and parsed separately so that a bad one gets its own error code.
/// Unknown fields are refused (400 `invalid_request` naming the field).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://example.com/hooks",
    "events": ["order.created"],
    "retryConfig": {"maxRetries": 3}
}))]
pub struct WebhookIn {
    /// Target URL, at most 2048 characters: `http` or `https`, a host name (ASCII letters, digits
    /// and `-`; the last label starts with a letter; no `xn--` labels), a dotted-quad IPv4 or a
    /// bracketed IPv6 address, an optional port (1 to 65535), then optionally a path, query or
    /// fragment of visible ASCII (no spaces, no user info; percent-encode anything else) (400
    /// `invalid_url`). Loopback, private and other non-public targets are refused (400
    /// `private_target_not_allowed`) unless the server allows them.
    url: String,
    /// `whsec_` and base64 of at least one byte (Standard Webhooks), or any other string of 1 to 512
    /// characters without NUL that does not start with `whsec_` (400 `invalid_secret`). Generated
    /// when absent (or `null`) on create; kept when absent on replace.
    #[serde(default)]
    secret: Option<String>,
    /// Subscribed event types (see `GET /v1/event-types`), at least one; `"*"` in the list, or no
    /// list at all (absent or `null`), subscribes to every event type, including ones added
    /// later. An empty list is refused (400 `invalid_request`): omit the field or send `["*"]`.
    #[serde(default)]
    events: Option<Vec<String>>,
    /// Extra headers sent with every attempt, at most 32. Names are HTTP tokens of at most 256
    /// characters and may not be ones the sender sets (`content-type`, the signature headers…),
    /// hop-by-hop headers or credentials; values are at most 4096 characters without control
    /// characters other than tab (400 `invalid_header`).
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    /// Retry schedule; absent fields take the defaults, so `{"maxRetries": 3}` is complete. Taken as
    /// raw JSON and checked separately, so that a bad one is answered with `invalid_retry_config`.
    #[serde(default)]
    #[schema(value_type = Option<RetryConfig>)]
    retry_config: Option<serde_json::Value>,
    /// Free text for admins, at most 1024 characters, without NUL.
    #[serde(default)]
    description: Option<String>,
    /// Concurrent attempts to this endpoint, 1 to 1024 (default from the server's settings, 16).
    #[serde(default, deserialize_with = "whole_number")]
    #[schema(minimum = 1, maximum = 1024)]
    max_in_flight: Option<u32>,
    // ----- tenants part -----
    /// The tenant (a Servio venue) the webhook belongs to: 1 to 128 characters of
    /// `[A-Za-z0-9._:-]` (400 `invalid_tenant`). It then receives that tenant's events and events
    /// without a tenant; `null` (or absent on create): only events without a tenant. Absent on
    /// replace keeps the current tenant. With a tenant token it is that token's tenant: another one
    /// (or `null`) is 403 `tenant_mismatch`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    tenant: Option<Option<String>>,
    // ----- pacing -----
    /// Attempts per second to this endpoint, more than 0 and at most 10000 (fractions allowed:
    /// `0.5` is one attempt every 2 s); absent or `null`: no limit. A token bucket holding
    /// `max(1, ceil(rate))` tokens: deliveries wait for a token, they are never failed for it
    /// (400 `invalid_request` outside the range).
    #[serde(default, deserialize_with = "rate_limit")]
    #[schema(exclusive_minimum = 0, maximum = 10000)]
    rate_limit_per_second: Option<f64>,
    /// `true`: one attempt at a time, in publish order. A delivery that is retrying holds the
    /// later ones back until it is delivered or fails for good. Absent or `null`: `false`.
    #[serde(default, deserialize_with = "ordered_flag")]
    ordered: Option<bool>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or set.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The tenant a registration gets (tenants part): `given` in the body (absent, `null` or a name),
/// checked against the caller; `existing` is the current registration's tenant on a replace.
fn webhook_tenant(
    principal: &Principal,
    given: Option<Option<String>>,
    existing: Option<Option<String>>,
) -> Result<Option<String>, ApiError> {
    if let Some(Some(t)) = &given
        && !crate::model::valid_tenant(t)
    {
        return Err(ApiError::bad_request(
            "invalid_tenant",
            "invalid tenant: use 1 to 128 characters of letters, digits, `.`, `_`, `:`, `-`",
        ));
    }
    match (principal, given) {
        (Principal::Admin, Some(t)) => Ok(t),
        (Principal::Admin, None) => Ok(existing.flatten()),
        (Principal::Tenant { tenant, .. }, Some(None)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "tenant_mismatch",
            format!("this token belongs to tenant `{tenant}`: its webhooks belong to that tenant, not to none"),
        )),
        (p, Some(Some(t))) => p.tenant_for(Some(&t)),
        (p, None) => p.tenant_for(None),
    }
}

// ----- pacing -----

/// `rateLimitPerSecond`: a JSON number or `null`; anything else is refused naming the field
/// (the range is checked with the rest of the registration).
fn rate_limit<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "rateLimitPerSecond must be a number above 0 and at most {} (or null), not {v}",
                crate::model::spec_limits::RATE_LIMIT_PER_SECOND
            ))
        }),
    }
}

/// `ordered`: `true`, `false` or `null`; anything else is refused naming the field.
fn ordered_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b)),
        Some(v) => Err(serde::de::Error::custom(format!("ordered must be true or false (or null), not {v}"))),
    }
}

impl WebhookIn {
    /// The tenant this body gives its registration, checked against the caller (tenants part);
    /// `existing` is the current registration's tenant when there is one.
    pub(crate) fn tenant_for(
        &mut self,
        principal: &Principal,
        existing: Option<Option<String>>,
    ) -> Result<Option<String>, ApiError> {
        webhook_tenant(principal, self.tenant.take(), existing)
    }

    /// A URL given in a request body is held to the documented length, even when it is a
    /// registration's stored URL: normalization (a `/` after the host, percent-encoding) can make
    /// that longer than what was given, and the registration keeps it only while a change leaves
    /// it out (a merge patch without `url`).
    pub(crate) fn given_url_fits(url: &str, webhooks: &Webhooks) -> Result<(), ApiError> {
        if url.len() > rules::URL_LEN {
            crate::model::validate_url(url, &webhooks.settings().target_policy())?;
        }
        Ok(())
    }

    /// The registration, after the checks that make the API accept exactly what its document
    /// describes (see [`super::rules`]); the rest is [`WebhookSpec::into_record`]'s.
    pub(crate) fn into_spec(self, webhooks: &Webhooks, tenant: Option<String>) -> Result<WebhookSpec, ApiError> {
        if !rules::url_ok(&self.url) {
            // The registration's own check names a refused target more precisely.
            let policy = webhooks.settings().target_policy();
            crate::model::validate_url(&self.url, &policy)?;
            return Err(ApiError::bad_request(
                "invalid_url",
                "invalid url: use http(s)://host[:port][/path][?query] with an ASCII host name, a dotted-quad \
                 IPv4 or a bracketed IPv6 address, no user info and no spaces (percent-encode other characters)",
            ));
        }
        if self.secret.as_deref().is_some_and(|s| s.contains('\0')) {
            return Err(ApiError::bad_request("invalid_secret", "invalid secret: it contains NUL"));
        }
        if self.description.as_deref().is_some_and(|d| d.contains('\0')) {
            return Err(ApiError::bad_request("invalid_request", "description contains NUL"));
        }
        for (name, value) in self.headers.iter().flatten() {
            if !rules::header_name_ok(name) {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    format!(
                        "invalid header: `{name}` is not a header name (an HTTP token of 1 to {} characters)",
                        rules::HEADER_NAME_LEN
                    ),
                ));
            }
            if !rules::header_value_ok(value) {
                return Err(ApiError::bad_request(
                    "invalid_header",
                    format!(
                        "invalid header: the value of `{name}` must be at most {} characters without control \
                         characters other than tab",
                        rules::HEADER_VALUE_LEN
                    ),
                ));
            }
        }
        let retry_config = match self.retry_config {
            None | Some(serde_json::Value::Null) => None,
            Some(v) if !v.is_object() => {
                return Err(ApiError::bad_request("invalid_retry_config", "invalid retryConfig: expected an object"));
            }
            Some(v) if v.get("jitter").and_then(|j| j.as_str()).is_some_and(|j| !JITTER_STRINGS.contains(&j)) => {
                return Err(ApiError::bad_request(
                    "invalid_retry_config",
                    "invalid retryConfig: jitter must be true, false, \"none\", \"proportional\" or \"full\"",
                ));
            }
            Some(mut v) => Some(
                serde_json::from_value::<RetryConfig>({
                    for field in ["maxRetries", "initialDelay", "maxDelay"] {
                        if let Some(n) = v.get_mut(field) {
                            *n = whole(n.take());
                        }
                    }
                    v
                })
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
            tenant,
            rate_limit_per_second: self.rate_limit_per_second,
            ordered: self.ordered,
        })
    }
}

/// A JSON number with no fraction (`487.0`) as the integer it is: JSON Schema's `integer` takes it,
/// so the API does too. Anything else is returned as it was, for serde to judge.
fn whole(v: serde_json::Value) -> serde_json::Value {
    match v.as_f64() {
        Some(f) if !v.is_u64() && !v.is_i64() && f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f) => {
            serde_json::Value::from(f as u64)
        }
        _ => v,
    }
}

/// Deserializes an optional integer field from any JSON number without a fraction (see [`whole`]).
pub(crate) fn whole_number<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let v = Option::<serde_json::Value>::deserialize(d)?;
    v.map(|v| serde_json::from_value(whole(v)).map_err(serde::de::Error::custom)).transpose()
}

/// The strings `jitter` takes (besides `true` and `false`), exactly as written.
const JITTER_STRINGS: &[&str] = &["none", "proportional", "full"];

/// A webhook as the API returns it: the registration plus live endpoint health.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    /// Generated (`wh_…`) or caller-chosen id.
    id: String,
    /// Target URL.
    url: String,
    /// Subscribed event types; `null` = every event type.
    #[schema(required = true)]
    events: Option<Vec<String>>,
    /// Custom headers sent with every attempt.
    headers: BTreeMap<String, String>,
    /// The effective retry schedule, defaults filled in.
    retry_config: RetryConfig,
    /// Free text for admins.
    #[schema(required = true)]
    description: Option<String>,
    /// Per-endpoint concurrency override; `null` = the server's default.
    #[schema(required = true)]
    max_in_flight: Option<u32>,
    // ----- pacing -----
    /// Attempts per second to this endpoint; `null` = no limit.
    #[schema(required = true, exclusive_minimum = 0, maximum = 10000)]
    rate_limit_per_second: Option<f64>,
    /// One attempt at a time, in publish order.
    ordered: bool,
    /// What the endpoint is doing now.
    state: EndpointState,
    /// Failed attempts since the last success.
    consecutive_failures: u32,
    /// Last successful attempt, RFC 3339.
    #[schema(required = true, format = DateTime)]
    last_success_at: Option<String>,
    /// Last failed attempt, RFC 3339.
    #[schema(required = true, format = DateTime)]
    last_failure_at: Option<String>,
    /// The node whose lease covers this webhook (it runs its deliveries); `null` while no node
    /// holds it (e.g. during a hand-over).
    #[schema(required = true)]
    owner_node: Option<String>,
    /// When the endpoint was disabled (410 Gone, or failing too long), RFC 3339.
    #[schema(required = true, format = DateTime)]
    disabled_at: Option<String>,
    /// Why it was disabled.
    #[schema(required = true)]
    disabled_reason: Option<String>,
    /// Registration time, RFC 3339 (kept across replacements).
    #[schema(format = DateTime)]
    created_at: String,
    /// Last registration change, RFC 3339.
    #[schema(format = DateTime)]
    updated_at: String,
    // ----- replay -----
    /// The last recovery (`POST /v1/webhooks/{id}/recover`): its progress while it runs, and
    /// how it ended; `null` if there never was one.
    #[schema(required = true)]
    recovery: Option<super::replay::RecoveryOut>,
    /// The tenant it belongs to; `null`: none (it receives only events without a tenant).
    #[schema(required = true)]
    tenant: Option<String>,
}

impl From<WebhookInfo> for WebhookOut {
    fn from(info: WebhookInfo) -> Self {
        let r = info.record;
        let h = info.health;
        Self {
            state: h.state,
            consecutive_failures: h.consecutive_failures,
            last_success_at: time(h.last_success_ms),
            last_failure_at: time(h.last_failure_ms),
            owner_node: info.owner.map(|o| o.node_id),
            disabled_at: time(r.disabled_at_ms),
            disabled_reason: r.disabled_reason,
            created_at: crate::model::rfc3339(r.created_at_ms),
            updated_at: crate::model::rfc3339(r.updated_at_ms),
            tenant: r.tenant,
            id: r.id,
            url: r.url,
            events: r.events,
            headers: r.headers,
            retry_config: r.retry_config,
            description: r.description,
            max_in_flight: r.max_in_flight,
            recovery: info.recovery.map(Into::into),
            rate_limit_per_second: r.rate_limit_per_second,
            ordered: r.ordered,
        }
    }
}

/// A webhook as its creation returns it: the resource plus its signing secret, shown this once
/// (later: `GET /v1/webhooks/{id}/secret`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    /// The webhook.
    #[serde(flatten)]
    webhook: WebhookOut,
    /// Signing secret, as given or generated (`whsec_…`).
    secret: String,
}

impl From<WebhookInfo> for WebhookCreated {
    fn from(info: WebhookInfo) -> Self {
        let secret = info.record.secret.clone();
        Self { webhook: info.into(), secret }
    }
}

/// `{data, nextCursor}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// This page.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Query of list routes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    pub(crate) limit: Option<u32>,
    /// `nextCursor` of the previous page: opaque, canonical unpadded base64url of at most 512
    /// characters (else 400 `invalid_cursor`).
    pub(crate) cursor: Option<String>,
}

/// Registers a webhook with a generated id.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "createWebhook",
    request_body = WebhookIn,
    responses(
        (status = 201, description = "Registered; the response holds the generated `id` and the `secret` (shown only here and by `GET /v1/webhooks/{id}/secret`).", body = WebhookCreated),
        (status = 400, description = "Invalid registration: `invalid_json`, `invalid_request`, `invalid_url`, `private_target_not_allowed`, `invalid_secret`, `invalid_header`, `invalid_retry_config`, `unknown_event_type`, `invalid_event_type`, `invalid_tenant`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token registering for another tenant or none (`tenant_mismatch`).", body = ErrorResponse),
        (status = 413, description = "Request body too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn create(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    body: super::JsonObject<WebhookIn>,
) -> Result<HttpResponse, ApiError> {
    let mut body = body.0;
    WebhookIn::given_url_fits(&body.url, &webhooks)?;
    let tenant = body.tenant_for(&principal, None)?;
    let spec = body.into_spec(&webhooks, tenant)?;
    let (info, _) = webhooks.register(None, spec).await?;
    Ok(HttpResponse::Created().json(WebhookCreated::from(info)))
}

/// Registers or replaces the webhook with a caller-chosen id; re-enables a disabled one.
#[utoipa::path(
    put,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "putWebhook",
    params(("id" = String, Path, description = "Caller-chosen id: 1 to 128 characters of `[A-Za-z0-9_.:-]`, not `.` or `..` (400 `invalid_request`).")),
    request_body = WebhookIn,
    responses(
        (status = 200, description = "Replaced; the secret is kept unless one is given (it is not in the response).", body = WebhookOut),
        (status = 201, description = "Created; the response shows the `secret` this once.", body = WebhookCreated),
        (status = 400, description = "Invalid id or registration (same codes as `POST /v1/webhooks`).", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token registering for another tenant or none (`tenant_mismatch`).", body = ErrorResponse),
        (status = 404, description = "With a tenant token: the id is taken by a webhook of another tenant, or one without a tenant (`not_found`).", body = ErrorResponse),
        (status = 413, description = "Request body too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn replace(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
    body: super::JsonObject<WebhookIn>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if id == "." || id == ".." {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("invalid webhook id `{id}`: `.` and `..` are path segments, not ids"),
        ));
    }
    let mut body = body.0;
    WebhookIn::given_url_fits(&body.url, &webhooks)?;
    // tenants part: another tenant's (or an untenanted) webhook is not there for a tenant token.
    let existing = match crate::model::validate_webhook_id(&id) {
        Ok(()) => webhooks.store().get_webhook(&id).await?.map(|v| v.record.tenant),
        Err(_) => None,
    };
    if existing.as_ref().is_some_and(|owner| !principal.sees(owner.as_deref())) {
        return Err(ApiError::not_found(&format!("webhook `{id}`")));
    }
    let tenant = body.tenant_for(&principal, existing)?;
    let spec = body.into_spec(&webhooks, tenant)?;
    let (info, upserted) = webhooks.register(Some(id), spec).await?;
    Ok(match upserted {
        Upserted::Created => HttpResponse::Created().json(WebhookCreated::from(info)),
        Upserted::Replaced => HttpResponse::Ok().json(WebhookOut::from(info)),
    })
}

/// Lists webhooks in id order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "listWebhooks",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of webhooks (with a tenant token: that tenant's only).", body = Page<WebhookOut>),
        (status = 400, description = "`invalid_query` or `invalid_cursor`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn list(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = match principal.tenant() {
        None => webhooks.webhooks(after, limit + 1).await?,
        Some(tenant) => webhooks.tenant_webhooks(tenant, after, limit + 1).await?,
    };
    let (rows, next_cursor) = paginate(rows, limit, |w| &w.record.id);
    let data = rows.into_iter().map(WebhookOut::from).collect();
    Ok(HttpResponse::Ok().json(Page { data, next_cursor }))
}

/// One webhook, with its live health.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "getWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    responses(
        (status = 200, description = "The webhook.", body = WebhookOut),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn get(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if crate::model::validate_webhook_id(&id).is_err() {
        return Err(ApiError::not_found(&format!("webhook `{id}`")));
    }
    match webhooks.webhook(&id).await? {
        Some(info) if principal.sees(info.record.tenant.as_deref()) => {
            Ok(HttpResponse::Ok().json(WebhookOut::from(info)))
        }
        _ => Err(ApiError::not_found(&format!("webhook `{id}`"))),
    }
}

/// Deletes a webhook; its pending deliveries fail with "webhook deleted".
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "deleteWebhook",
    params(("id" = String, Path, description = "Webhook id.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 404, description = "No such webhook (`not_found`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable` or `shutting_down`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn delete(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let valid = crate::model::validate_webhook_id(&id).is_ok();
    // tenants part: a tenant token deletes only its tenant's webhooks (others are not there).
    let visible = match principal {
        Principal::Admin => true,
        _ if !valid => false,
        _ => webhooks.store().get_webhook(&id).await?.is_some_and(|v| principal.sees(v.record.tenant.as_deref())),
    };
    if valid && visible && webhooks.unregister(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(&format!("webhook `{id}`")))
    }
}
