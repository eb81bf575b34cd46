//! `/v1/tokens`: tenant-scoped API tokens, managed by the admin only (create, list, delete). The
//! token itself is shown once, in the create response; the store keeps the SHA-256 of its secret.

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ErrorResponse;
use super::principal::Principal;
use super::webhooks::{ListQuery, Page};
use super::{ApiError, decode_cursor, page_limit, paginate};
use crate::app::Webhooks;
use crate::model::{now_ms, rfc3339, spec_limits, valid_tenant};
use crate::store::ApiTokenRecord;
use crate::tenants::ApiToken;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/tokens").post(create).get(list).default_service(web::to(super::allow("GET, POST"))))
        .service(web::resource("/tokens/{id}").delete(delete).default_service(web::to(super::allow("DELETE"))));
}

/// Request body of `POST /v1/tokens`. Unknown fields are refused (400 `invalid_request`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"tenant": "venue-42", "description": "POS integration of venue 42"}))]
pub struct TokenIn {
    /// The tenant (venue) the token is scoped to: 1 to 128 characters of `[A-Za-z0-9._:-]` (400
    /// `invalid_tenant`).
    tenant: String,
    /// Free text for admins, at most 1024 characters, without NUL.
    #[serde(default)]
    description: Option<String>,
}

/// A token as listed: never the token itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenOut {
    /// Token id (`tok_…`).
    id: String,
    /// The tenant it is scoped to.
    tenant: String,
    /// Free text for admins.
    #[schema(required = true)]
    description: Option<String>,
    /// Creation time, RFC 3339.
    #[schema(format = DateTime)]
    created_at: String,
}

/// The create response: the token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenCreated {
    /// Token id (`tok_…`): what `DELETE /v1/tokens/{id}` takes.
    id: String,
    /// The tenant it is scoped to.
    tenant: String,
    /// The bearer token (`swt_…`), 256 random bits: shown only here; store it now.
    token: String,
    /// Free text for admins.
    #[schema(required = true)]
    description: Option<String>,
    /// Creation time, RFC 3339.
    #[schema(format = DateTime)]
    created_at: String,
}

impl From<ApiTokenRecord> for TokenOut {
    fn from(t: ApiTokenRecord) -> Self {
        Self { id: t.id, tenant: t.tenant, description: t.description, created_at: rfc3339(t.created_at_ms) }
    }
}

/// Creates a tenant-scoped token.
#[utoipa::path(
    post,
    path = "/v1/tokens",
    tag = "tokens",
    operation_id = "createToken",
    request_body = TokenIn,
    responses(
        (status = 201, description = "Created; `token` is shown only in this response.", body = TokenCreated),
        (status = 400, description = "`invalid_tenant`, `invalid_request` or `invalid_json`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token cannot manage tokens (`forbidden`).", body = ErrorResponse),
        (status = 413, description = "Request body too large (`payload_too_large`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn create(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    body: super::JsonObject<TokenIn>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let TokenIn { tenant, description } = body.0;
    if !valid_tenant(&tenant) {
        return Err(ApiError::bad_request(
            "invalid_tenant",
            format!(
                "invalid tenant: use 1 to {} characters of letters, digits, `.`, `_`, `:`, `-`",
                spec_limits::TENANT_LEN
            ),
        ));
    }
    if let Some(d) = &description
        && (d.contains('\0') || d.chars().count() > spec_limits::DESCRIPTION_LEN)
    {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("description must be at most {} characters without NUL", spec_limits::DESCRIPTION_LEN),
        ));
    }
    let minted = ApiToken::generate();
    let record = ApiTokenRecord {
        id: minted.id,
        tenant,
        secret_hash: minted.secret_hash.to_vec(),
        description,
        created_at_ms: now_ms(),
    };
    webhooks.store().create_api_token(record.clone()).await?;
    Ok(HttpResponse::Created().json(TokenCreated {
        id: record.id,
        tenant: record.tenant,
        token: minted.token,
        description: record.description,
        created_at: rfc3339(record.created_at_ms),
    }))
}

/// Lists tokens in id order (creation order), without their values.
#[utoipa::path(
    get,
    path = "/v1/tokens",
    tag = "tokens",
    operation_id = "listTokens",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of tokens (without the token values).", body = Page<TokenOut>),
        (status = 400, description = "`invalid_query` or `invalid_cursor`.", body = ErrorResponse),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token cannot manage tokens (`forbidden`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn list(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let limit = page_limit(query.limit)?;
    let after = query.cursor.as_deref().map(decode_cursor).transpose()?;
    let rows = webhooks.store().list_api_tokens(after, limit + 1).await?;
    let (rows, next_cursor) = paginate(rows, limit, |t| &t.id);
    Ok(HttpResponse::Ok().json(Page { data: rows.into_iter().map(TokenOut::from).collect(), next_cursor }))
}

/// Deletes a token: it stops working at once, on every node.
#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    tag = "tokens",
    operation_id = "deleteToken",
    params(("id" = String, Path, description = "Token id (`tok_…`).")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "Missing or wrong bearer token (`unauthorized`).", body = ErrorResponse),
        (status = 403, description = "A tenant token cannot manage tokens (`forbidden`).", body = ErrorResponse),
        (status = 404, description = "No such token (`not_found`).", body = ErrorResponse),
        (status = 503, description = "`store_unavailable`.", body = ErrorResponse),
    ),
    security(("bearer" = []))
)]
async fn delete(
    webhooks: web::Data<Webhooks>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    // Token ids are ASCII; a NUL would only upset the store.
    if !id.contains('\0') && webhooks.store().delete_api_token(&id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found(&format!("token `{}`", id.escape_debug())))
    }
}
