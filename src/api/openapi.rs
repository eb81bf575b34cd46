//! The OpenAPI 3.1 document of the REST API, generated from the handlers' `#[utoipa::path]`
//! attributes and the DTOs' `ToSchema` derives, and served at `GET /openapi.json`.
//!
//! `docs/openapi.json` is a copy of it for readers without a running server; a test fails when the
//! two differ (`UPDATE_OPENAPI=1 cargo test --test it openapi` rewrites the file).

use std::sync::OnceLock;

use actix_web::HttpResponse;
use utoipa::openapi::header::Header;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::deliveries::{self, AttemptOut, DeliveryOut};
use super::error::{ErrorDetail, ErrorResponse};
use super::events::{self, PublishIn};
use super::nodes::{self, NodeList, NodeOut};
use super::ops::{self, EventTypeList, HealthOut};
use super::webhooks::{self, WebhookIn, WebhookOut};
use crate::catalog::EventType;
use crate::delivery::dispatcher::{DeliveryRef, PublishReceipt};
use crate::delivery::health::EndpointState;
use crate::model::DeliveryStatus;
use crate::retry::{Jitter, RetryConfig};

/// The API description: every route the router serves, its DTOs, and the bearer scheme of `/v1`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "servio-webhooks",
        version = env!("CARGO_PKG_VERSION"),
        description = "Admin API of the Servio outgoing-webhook service: register endpoints, publish \
            events, inspect deliveries and their attempt logs. JSON with camelCase fields; errors are \
            `{\"error\": {\"code\", \"message\"}}`. `/v1` requires `Authorization: Bearer \
            <WEBHOOKS_ADMIN_TOKEN>` when a token is set, refuses cross-origin browser requests (403 \
            `cross_origin_refused`), answers only the server's own or allowed `Host` names when no \
            token is set (403 `host_not_allowed`), and takes only JSON bodies (415 \
            `unsupported_media_type`); `/metrics`, `/healthz` and `/openapi.json` are open."
    ),
    paths(
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::replace,
        webhooks::delete,
        events::publish,
        deliveries::list,
        deliveries::get,
        nodes::list,
        ops::event_types,
        ops::metrics,
        ops::healthz,
        openapi_json,
    ),
    components(schemas(
        WebhookIn,
        WebhookOut,
        PublishIn,
        PublishReceipt,
        DeliveryRef,
        DeliveryOut,
        AttemptOut,
        DeliveryStatus,
        RetryConfig,
        Jitter,
        EndpointState,
        EventType,
        EventTypeList,
        NodeList,
        NodeOut,
        HealthOut,
        ErrorResponse,
        ErrorDetail,
    )),
    modifiers(&BearerAuth, &RefPageItems, &AdminGuardResponses),
    tags(
        (name = "webhooks", description = "Endpoint registrations and their live health."),
        (name = "events", description = "Publishing."),
        (name = "deliveries", description = "Delivery history and attempt logs."),
        (name = "ops", description = "Event catalog, cluster nodes, health, metrics and this document."),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme that the `/v1` operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "`Authorization: Bearer <WEBHOOKS_ADMIN_TOKEN>`; required on `/v1` only when the server has an admin token."
                .into(),
        );
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Documents what every `/v1` operation may answer before its handler runs (`api::guard`): 403 for
/// cross-origin requests and, without a token, foreign `Host` names; 415 for a body that is not
/// JSON on `POST` and `PUT`; and the `WWW-Authenticate` challenge of 401.
struct AdminGuardResponses;

impl Modify for AdminGuardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let error = || Content::new(Some(Ref::from_schema_name("ErrorResponse")));
        let forbidden = ResponseBuilder::new()
            .description(
                "Refused before the handler: `cross_origin_refused` (an `Origin` other than the server's own, or \
                 `Sec-Fetch-Site: cross-site`), or `host_not_allowed` (no admin token is set and the `Host` is not \
                 the server's address, `localhost` or an allowed host).",
            )
            .content("application/json", error())
            .build();
        let media = ResponseBuilder::new()
            .description(
                "`unsupported_media_type`: the body is not declared as JSON (`Content-Type: application/json` \
                 or `application/*+json`, charset utf-8 if given).",
            )
            .content("application/json", error())
            .build();
        let mut challenge = Header::default();
        challenge.description =
            Some("`Bearer realm=\"servio-webhooks\"`, with `error=\"invalid_token\"` when a token was given.".into());
        for (_, item) in openapi.paths.paths.iter_mut().filter(|(p, _)| p.starts_with("/v1/")) {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.put, true),
                (&mut item.delete, false),
                (&mut item.patch, true),
            ];
            for (op, has_body) in ops {
                let Some(op) = op.as_mut() else { continue };
                let responses = &mut op.responses.responses;
                responses.insert("403".into(), RefOr::T(forbidden.clone()));
                if has_body {
                    responses.insert("415".into(), RefOr::T(media.clone()));
                }
                if let Some(RefOr::T(unauthorized)) = responses.get_mut("401") {
                    unauthorized.headers.insert("WWW-Authenticate".into(), RefOr::T(challenge.clone()));
                }
            }
        }
    }
}

/// Makes the items of each generic `Page_T` schema a reference to the `T` schema rather than a copy
/// of it (utoipa inlines generic arguments), so that clients generated from the document get one
/// type per DTO.
struct RefPageItems;

impl Modify for RefPageItems {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else { return };
        let pages: Vec<String> = components.schemas.keys().filter(|k| k.starts_with("Page_")).cloned().collect();
        for page in pages {
            let item = &page["Page_".len()..];
            if !components.schemas.contains_key(item) {
                continue;
            }
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&page)
                && let Some(RefOr::T(Schema::Array(data))) = object.properties.get_mut("data")
            {
                data.items = ArrayItems::RefOrSchema(Box::new(RefOr::Ref(Ref::from_schema_name(item))));
            }
        }
    }
}

/// The document as JSON, built once.
pub fn openapi_json_string() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_pretty_json().expect("the OpenAPI document serializes"))
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(openapi_json_string())
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::model::spec_limits;
    use crate::retry::policy::limits;

    fn doc() -> Value {
        serde_json::from_str(openapi_json_string()).unwrap()
    }

    /// The bounds written as literals in `#[schema(...)]` attributes are the ones the code enforces.
    #[test]
    fn documented_bounds_match_the_enforced_limits() {
        let doc = doc();
        let schemas = &doc["components"]["schemas"];
        let retry = &schemas["RetryConfig"]["properties"];
        assert_eq!(retry["maxRetries"]["maximum"], json!(limits::MAX_RETRIES));
        assert_eq!(retry["initialDelay"]["maximum"], json!(limits::MAX_DELAY_MS));
        assert_eq!(retry["maxDelay"]["maximum"], json!(limits::MAX_DELAY_MS));
        assert_eq!(retry["backoffMultiplier"]["maximum"].as_f64(), Some(limits::MAX_MULTIPLIER));
        assert_eq!(schemas["WebhookIn"]["properties"]["maxInFlight"]["maximum"], json!(spec_limits::MAX_IN_FLIGHT));
        for path in ["/v1/webhooks", "/v1/deliveries"] {
            let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
            let limit = params.iter().find(|p| p["name"] == "limit").unwrap();
            assert_eq!(limit["schema"]["maximum"], json!(crate::api::MAX_LIMIT), "{path}");
        }
    }

    /// What `Jitter` serializes to is one of the alternatives its schema lists, and so is every
    /// string it accepts.
    #[test]
    fn jitter_schema_covers_its_serde() {
        let doc = doc();
        let alternatives = doc["components"]["schemas"]["Jitter"]["oneOf"].as_array().unwrap().clone();
        let strings = alternatives.iter().find(|a| a["type"] == "string").unwrap()["enum"].as_array().unwrap();
        assert!(alternatives.iter().any(|a| a["type"] == "boolean"));
        for j in [Jitter::None, Jitter::Proportional, Jitter::Full] {
            match serde_json::to_value(j).unwrap() {
                Value::Bool(_) => {}
                s @ Value::String(_) => assert!(strings.contains(&s), "{s}"),
                other => panic!("unexpected jitter serialization {other}"),
            }
        }
        for s in strings {
            assert!(serde_json::from_value::<Jitter>(s.clone()).is_ok(), "{s}");
        }
    }
}
