//! Who is calling `/v1`, once [`super::guard`] has let the request in: the admin (the admin token,
//! or the opened admin API) or a tenant (a tenant-scoped API token), and what a tenant may reach.
//!
//! A presented tenant token is looked up in the store on every request (one primary-key read), so
//! a deleted token stops working at once on every node; its secret is checked against the stored
//! hash in constant time ([`crate::tenants::PresentedToken::matches`]). An unknown, deleted or
//! forged token is 401 `unauthorized`.
//!
//! Tenants are confined twice. Here, by route: a tenant token may call only the routes that scope
//! what they show by tenant (`tenant_may_call`: webhooks, publish, deliveries, event types);
//! anything else (tokens, nodes, routes added later) is 403 `forbidden` until it learns tenants.
//! In the handlers, by row: [`Principal::sees`] makes another tenant's (or an untenanted) webhook
//! or delivery a 404, exactly like one that does not exist, so ids do not leak.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, ResponseError, web};

use super::ApiError;
use super::guard::Pass;
use crate::app::Webhooks;
use crate::store::StoreError;
use crate::tenants::PresentedToken;

/// The caller of a `/v1` request, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token or the opened admin API: sees and manages everything.
    Admin,
    /// A tenant token: sees and manages only its tenant's webhooks and deliveries.
    Tenant {
        /// The tenant the token is scoped to.
        tenant: String,
        /// The token's id (`tok_…`).
        token_id: String,
    },
}

impl Principal {
    /// The tenant a tenant token is scoped to; `None` for the admin.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Principal::Admin => None,
            Principal::Tenant { tenant, .. } => Some(tenant),
        }
    }

    /// Whether the caller may see a webhook (or a delivery to one) of tenant `owner`: the admin
    /// sees all; a tenant only its own (not untenanted ones).
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant { tenant, .. } => owner == Some(tenant.as_str()),
        }
    }

    /// Whether the caller may see webhook `id` and what belongs to it: the admin always; a tenant
    /// when the webhook exists and is its tenant's.
    pub(crate) async fn sees_webhook(&self, webhooks: &Webhooks, id: &str) -> Result<bool, ApiError> {
        if *self == Principal::Admin {
            return Ok(true);
        }
        let owner = webhooks.store().get_webhook(id).await?.map(|v| v.record.tenant);
        Ok(owner.is_some_and(|t| self.sees(t.as_deref())))
    }

    /// 404 (as if it did not exist) unless the caller may see webhook `id`
    /// ([`Principal::sees_webhook`]).
    pub(crate) async fn reach_webhook(&self, webhooks: &Webhooks, id: &str) -> Result<(), ApiError> {
        if self.sees_webhook(webhooks, id).await? {
            Ok(())
        } else {
            Err(ApiError::not_found(&format!("webhook `{id}`")))
        }
    }

    /// 404 unless the caller may see delivery `id`, through its webhook.
    pub(crate) async fn reach_delivery(&self, webhooks: &Webhooks, id: &str) -> Result<(), ApiError> {
        if *self == Principal::Admin {
            return Ok(());
        }
        match webhooks.delivery(id).await? {
            Some((d, _)) if self.sees_webhook(webhooks, &d.webhook_id).await? => Ok(()),
            _ => Err(ApiError::not_found(&format!("delivery `{id}`"))),
        }
    }

    /// 403 `forbidden` unless the caller is the admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Tenant { .. } => {
                Err(forbidden("this route needs the admin token; a tenant token cannot use it"))
            }
        }
    }

    /// The tenant a tenant caller's request must name, when it names one (403 `tenant_mismatch`
    /// for another). Returns the tenant to use: the caller's own for a tenant, `given` for the admin.
    pub fn tenant_for(&self, given: Option<&str>) -> Result<Option<String>, ApiError> {
        match (self, given) {
            (Principal::Admin, given) => Ok(given.map(str::to_string)),
            (Principal::Tenant { tenant, .. }, Some(g)) if g != tenant => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "tenant_mismatch",
                format!("this token belongs to tenant `{tenant}`: it cannot act for tenant `{g}`"),
            )),
            (Principal::Tenant { tenant, .. }, _) => Ok(Some(tenant.clone())),
        }
    }
}

fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

impl FromRequest for Principal {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    /// What `scope_principal` decided; the admin where nothing was decided (no guard mounted).
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(req.extensions().get::<Principal>().cloned().unwrap_or(Principal::Admin)))
    }
}

/// Whether a tenant token may call `method` on `path` (the part after the admin prefix): the
/// routes that know tenants. Everything else is the admin's.
pub(crate) fn tenant_may_call(method: &Method, path: &str) -> bool {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["webhooks"] | ["webhooks", _] | ["deliveries"] | ["deliveries", _] => true,
        // Lifecycle and replay of its own webhooks and deliveries (the handlers check the row).
        ["webhooks", _, "disable" | "enable" | "secret" | "rotate-secret" | "test" | "recover"] => true,
        ["deliveries", _, "retry"] => true,
        ["events"] => *method == Method::POST,
        ["event-types"] => *method == Method::GET,
        _ => false,
    }
}

/// Looks a presented token up: the principal it stands for, or `None` when no live token has it.
pub(crate) async fn resolve(webhooks: &Webhooks, presented: &str) -> Result<Option<Principal>, StoreError> {
    let Some(token) = PresentedToken::parse(presented) else { return Ok(None) };
    let Some(stored) = webhooks.store().api_token(&token.id).await? else { return Ok(None) };
    let principal = Principal::Tenant { tenant: stored.tenant, token_id: stored.id };
    Ok(token.matches(&stored.secret_hash).then_some(principal))
}

/// The middleware inside the guard: turns what the guard let in into a [`Principal`] (see the
/// module documentation), or answers 401 / 403 / 503.
pub(crate) async fn scope_principal(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let pass = req.extensions_mut().remove::<Pass<String>>().unwrap_or(Pass::Admin);
    let principal = match pass {
        Pass::Admin => Principal::Admin,
        Pass::Presented(token) => {
            let Some(webhooks) = req.app_data::<web::Data<Webhooks>>().cloned() else {
                return Ok(req.into_response(unknown_token()).map_into_right_body());
            };
            match resolve(&webhooks, &token).await {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(req.into_response(unknown_token()).map_into_right_body()),
                Err(e) => return Ok(req.into_response(ApiError::from(e).error_response()).map_into_right_body()),
            }
        }
    };
    if principal != Principal::Admin && !tenant_may_call(req.method(), req.match_info().unprocessed()) {
        let refusal = forbidden("a tenant token can use only /webhooks, /events, /deliveries and /event-types");
        return Ok(req.into_response(refusal.error_response()).map_into_right_body());
    }
    req.extensions_mut().insert(principal);
    Ok(next.call(req).await?.map_into_left_body())
}

/// 401 for a tenant-shaped token that is not a live one (unknown, deleted or forged).
fn unknown_token() -> actix_web::HttpResponse {
    let mut resp =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or deleted tenant token").error_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"servio-webhooks\", error=\"invalid_token\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_reach_only_the_routes_that_scope_by_tenant() {
        for (m, p) in [
            (Method::GET, "/webhooks"),
            (Method::POST, "/webhooks"),
            (Method::PUT, "/webhooks/wh_1"),
            (Method::DELETE, "/webhooks/wh_1"),
            (Method::GET, "/deliveries"),
            (Method::GET, "/deliveries/dlv_1"),
            (Method::POST, "/events"),
            (Method::GET, "/event-types"),
            (Method::GET, "/webhooks/wh_1/secret"),
            (Method::POST, "/webhooks/wh_1/rotate-secret"),
            (Method::POST, "/webhooks/wh_1/disable"),
            (Method::POST, "/webhooks/wh_1/recover"),
            (Method::POST, "/deliveries/dlv_1/retry"),
        ] {
            assert!(tenant_may_call(&m, p), "{m} {p}");
        }
        for (m, p) in [
            (Method::GET, "/tokens"),
            (Method::POST, "/tokens"),
            (Method::DELETE, "/tokens/tok_1"),
            (Method::GET, "/nodes"),
            (Method::GET, "/webhooks/wh_1/deliveries"),
            (Method::POST, "/deliveries/dlv_1/other"),
            (Method::GET, "/"),
            (Method::GET, ""),
        ] {
            assert!(!tenant_may_call(&m, p), "{m} {p}");
        }
    }

    #[test]
    fn tenants_see_only_their_own_rows_and_act_only_for_themselves() {
        let admin = Principal::Admin;
        let a = Principal::Tenant { tenant: "a".into(), token_id: "tok_1".into() };
        assert!(admin.sees(None) && admin.sees(Some("b")));
        assert!(a.sees(Some("a")));
        assert!(!a.sees(Some("b")) && !a.sees(None));
        assert_eq!(a.tenant_for(None).unwrap().as_deref(), Some("a"));
        assert_eq!(a.tenant_for(Some("a")).unwrap().as_deref(), Some("a"));
        assert_eq!(a.tenant_for(Some("b")).unwrap_err().code, "tenant_mismatch");
        assert_eq!(admin.tenant_for(Some("b")).unwrap().as_deref(), Some("b"));
        assert_eq!(admin.tenant_for(None).unwrap(), None);
        assert!(admin.require_admin().is_ok() && a.require_admin().is_err());
    }
}
