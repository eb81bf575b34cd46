//! The OpenAPI 3.1 document of the REST API, generated from the handlers' `#[utoipa::path]`
//! attributes and the DTOs' `ToSchema` derives, then fitted to the running server by [`document`]:
//! the paths where [`super::Routes`] mounts them, the security the admin-token policy makes (none
//! when the API is open without a token), the configured event types, and the exact shapes
//! [`super::rules`] checks. Served wherever the host mounts it (`GET /openapi.json` by default).
//!
//! `docs/openapi.json` is the document of the default test configuration (`/v1`, no token, the
//! API opened explicitly); a test fails when the two differ (`UPDATE_OPENAPI=1 cargo test --test
//! it openapi` rewrites the file).

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};
use utoipa::openapi::header::Header;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayItems, Schema};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::deliveries::{self, AttemptOut, DeliveryOut};
use super::error::{ErrorDetail, ErrorResponse};
use super::events::{self, PublishIn};
use super::lifecycle::{self, DisableIn, EnableIn, RotateIn, SecretOut, TestAccepted, TestIn, TestOut};
use super::nodes::{self, NodeList, NodeOut};
use super::ops::{self, EventTypeList, HealthOut};
use super::replay::{self, RecoverIn, RecoverOut, RecoveryOut, RecoveryStateOut};
use super::tokens::{self, TokenCreated, TokenIn, TokenOut};
use super::webhooks::{self, WebhookCreated, WebhookIn, WebhookOut};
use super::{Mounts, rules};
use crate::catalog::{EventCatalog, EventType};
use crate::config::Settings;
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
            `{\"error\": {\"code\", \"message\"}}`; request bodies with unknown fields are refused \
            (400 `invalid_request`). The admin API refuses cross-origin browser requests (403 \
            `cross_origin_refused`), answers only the server's own or allowed `Host` names when no \
            token is set (403 `host_not_allowed`), takes only JSON bodies (415 \
            `unsupported_media_type`), and answers other methods with 405 and `Allow`; \
            `/metrics`, `/healthz` and `/openapi.json` are open. A tenant token (`POST /v1/tokens`) \
            is a bearer token too: it reaches only its tenant's webhooks, deliveries and publishes \
            (another tenant's are 404), and other routes answer it 403 `forbidden`."
    ),
    paths(
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::replace,
        webhooks::delete,
        lifecycle::patch,
        lifecycle::disable,
        lifecycle::enable,
        lifecycle::secret,
        lifecycle::rotate_secret,
        lifecycle::test,
        events::publish,
        deliveries::list,
        deliveries::get,
        replay::retry,
        replay::recover,
        nodes::list,
        tokens::create,
        tokens::list,
        tokens::delete,
        ops::event_types,
        ops::metrics,
        ops::healthz,
        openapi_json,
    ),
    components(schemas(
        WebhookIn,
        WebhookOut,
        WebhookCreated,
        DisableIn,
        EnableIn,
        RotateIn,
        SecretOut,
        TestIn,
        TestOut,
        TestAccepted,
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
        TokenIn,
        TokenOut,
        TokenCreated,
        HealthOut,
        ErrorResponse,
        ErrorDetail,
        RecoverIn,
        RecoverOut,
        RecoveryOut,
        RecoveryStateOut,
    )),
    modifiers(&BearerAuth, &RefPageItems, &AdminGuardResponses),
    tags(
        (name = "webhooks", description = "Endpoint registrations and their live health."),
        (name = "events", description = "Publishing."),
        (name = "deliveries", description = "Delivery history and attempt logs."),
        (name = "tokens", description = "Tenant-scoped API tokens (admin only)."),
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
            "`Authorization: Bearer <WEBHOOKS_ADMIN_TOKEN>`; required on `/v1` only when the server has an admin token. \
             A tenant token (`swt_…`, from `POST /v1/tokens`) is accepted too, scoped to its tenant: its own webhooks, \
             deliveries and publishes; other routes answer it 403 `forbidden`."
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
                 `Sec-Fetch-Site: cross-site`), `host_not_allowed` (no admin token is set and the `Host` is not \
                 the server's address, `localhost` or an allowed host), or `forbidden` (a tenant token on a route \
                 only the admin may use).",
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
                // A handler's own 403 (tenants: `tenant_mismatch`) is added to the guard's.
                let mut refused = forbidden.clone();
                if let Some(RefOr::T(own)) = responses.get("403") {
                    refused.description = format!("{} Or, from the handler: {}", refused.description, own.description);
                }
                responses.insert("403".into(), RefOr::T(refused));
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

/// How the admin API is guarded, as the document describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// An admin token is set: bearer authentication.
    Bearer,
    /// No token, opened explicitly (`Settings::open_admin_api`): no authentication.
    Open,
    /// No token and not opened: every request is refused with 401.
    Closed,
}

/// The document for a server running with `settings` and `catalog`, mounted as `mounts`.
pub fn document(settings: &Settings, catalog: &EventCatalog, mounts: &Mounts) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes");
    apply_rules(&mut doc, catalog);
    let access = match (&settings.admin_token, settings.open_admin_api) {
        (Some(_), _) => Access::Bearer,
        (None, true) => Access::Open,
        (None, false) => Access::Closed,
    };
    apply_access(&mut doc, access);
    apply_mounts(&mut doc, mounts);
    doc
}

/// [`document`], pretty-printed.
pub fn document_json(settings: &Settings, catalog: &EventCatalog, mounts: &Mounts) -> String {
    serde_json::to_string_pretty(&document(settings, catalog, mounts)).expect("the OpenAPI document serializes")
}

/// The JSON object at `pointer`, which the generated document must have.
fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut serde_json::Map<String, Value> {
    doc.pointer_mut(pointer)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the generated OpenAPI document has no object at {pointer}"))
}

/// Merges `fields` into the object at `pointer`.
fn set(doc: &mut Value, pointer: &str, fields: Value) {
    let object = at(doc, pointer);
    for (k, v) in fields.as_object().expect("fields are an object") {
        object.insert(k.clone(), v.clone());
    }
}

/// The schema of the parameter `name` of the operation at `op` (`/paths/~1v1~1…/get`).
fn param_schema(doc: &mut Value, op: &str, name: &str, fields: Value) {
    let params = doc
        .pointer_mut(&format!("{op}/parameters"))
        .and_then(Value::as_array_mut)
        .unwrap_or_else(|| panic!("{op} has no parameters"));
    let index = params.iter().position(|p| p["name"] == name).unwrap_or_else(|| panic!("{op} has no `{name}`"));
    set(doc, &format!("{op}/parameters/{index}/schema"), fields);
}

/// Writes into the document the shapes the handlers check (see [`super::rules`]) and the bounds
/// of types the schemas derive from elsewhere.
fn apply_rules(doc: &mut Value, catalog: &EventCatalog) {
    let names: Vec<Value> = catalog.types().iter().map(|t| json!(t.name)).collect();
    let mut subscribable = names.clone();
    subscribable.push(json!("*"));
    subscribable.push(json!(crate::catalog::TEST_EVENT_TYPE));
    // tenants part: the wildcards `<known prefix>.*`.
    subscribable.extend(catalog.patterns().into_iter().map(Value::from));
    let limits = |n: usize| json!(n);

    let webhook = "/components/schemas/WebhookIn";
    set(doc, webhook, json!({"additionalProperties": false}));
    set(
        doc,
        &format!("{webhook}/properties/url"),
        json!({"pattern": rules::url_pattern(), "maxLength": limits(rules::URL_LEN)}),
    );
    set(
        doc,
        &format!("{webhook}/properties/secret"),
        json!({"pattern": rules::SECRET_PATTERN, "minLength": 1, "maxLength": limits(rules::SECRET_LEN)}),
    );
    set(
        doc,
        &format!("{webhook}/properties/events"),
        json!({"minItems": 1, "items": {"type": "string", "enum": subscribable}}),
    );
    set(
        doc,
        &format!("{webhook}/properties/headers"),
        json!({
            "maxProperties": limits(crate::model::spec_limits::HEADERS),
            "propertyNames": {"type": "string", "pattern": rules::header_name_pattern()},
            "additionalProperties": {
                "type": "string",
                "pattern": rules::HEADER_VALUE_PATTERN,
                "maxLength": limits(rules::HEADER_VALUE_LEN),
            },
        }),
    );
    set(
        doc,
        &format!("{webhook}/properties/description"),
        json!({"pattern": rules::NO_NUL_PATTERN, "maxLength": limits(crate::model::spec_limits::DESCRIPTION_LEN)}),
    );

    // tenants part
    let tenant = json!({"pattern": rules::TENANT_PATTERN, "minLength": 1, "maxLength": limits(crate::model::spec_limits::TENANT_LEN)});
    set(doc, &format!("{webhook}/properties/tenant"), tenant.clone());
    set(doc, "/components/schemas/PublishIn/properties/tenant", tenant.clone());
    let token = "/components/schemas/TokenIn";
    set(doc, token, json!({"additionalProperties": false}));
    set(doc, &format!("{token}/properties/tenant"), tenant);
    set(
        doc,
        &format!("{token}/properties/description"),
        json!({"pattern": rules::NO_NUL_PATTERN, "maxLength": limits(crate::model::spec_limits::DESCRIPTION_LEN)}),
    );
    param_schema(
        doc,
        "/paths/~1v1~1tokens/get",
        "cursor",
        json!({"pattern": rules::CURSOR_PATTERN, "maxLength": limits(rules::CURSOR_LEN)}),
    );

    let publish = "/components/schemas/PublishIn";
    set(doc, publish, json!({"additionalProperties": false}));
    set(doc, &format!("{publish}/properties/event"), json!({"enum": names}));
    let key = json!({
        "pattern": rules::IDEMPOTENCY_KEY_PATTERN,
        "minLength": 1,
        "maxLength": limits(rules::IDEMPOTENCY_KEY_LEN),
    });
    set(doc, &format!("{publish}/properties/idempotencyKey"), key.clone());
    param_schema(doc, "/paths/~1v1~1events/post", "Idempotency-Key", key);

    set(
        doc,
        "/components/schemas/EventType/properties/name",
        json!({"pattern": rules::EVENT_NAME_PATTERN, "maxLength": 128}),
    );

    let id = json!({"pattern": rules::WEBHOOK_ID_PATTERN, "maxLength": limits(crate::model::spec_limits::ID_LEN)});
    for method in ["get", "put", "patch", "delete"] {
        param_schema(doc, &format!("/paths/~1v1~1webhooks~1{{id}}/{method}"), "id", id.clone());
    }
    // ----- lifecycle -----
    param_schema(doc, "/paths/~1v1~1webhooks~1{id}~1secret/get", "id", id.clone());
    for action in ["disable", "enable", "rotate-secret", "test"] {
        param_schema(doc, &format!("/paths/~1v1~1webhooks~1{{id}}~1{action}/post"), "id", id.clone());
    }
    for input in ["DisableIn", "EnableIn", "RotateIn", "TestIn"] {
        set(doc, &format!("/components/schemas/{input}"), json!({"additionalProperties": false}));
    }
    set(
        doc,
        "/components/schemas/RotateIn/properties/secret",
        json!({"pattern": rules::SECRET_PATTERN, "minLength": 1, "maxLength": limits(rules::SECRET_LEN)}),
    );
    patch_schemas(doc);
    let cursor = json!({"pattern": rules::CURSOR_PATTERN, "maxLength": limits(rules::CURSOR_LEN)});
    param_schema(doc, "/paths/~1v1~1webhooks/get", "cursor", cursor.clone());
    param_schema(doc, "/paths/~1v1~1deliveries/get", "cursor", cursor);
    // replay
    param_schema(doc, "/paths/~1v1~1webhooks~1{id}~1recover/post", "id", id.clone());
    set(doc, "/components/schemas/RecoverIn", json!({"additionalProperties": false}));
    param_schema(
        doc,
        "/paths/~1v1~1deliveries/get",
        "event",
        json!({"pattern": rules::EVENT_NAME_PATTERN, "maxLength": 128}),
    );
    param_schema(
        doc,
        "/paths/~1v1~1deliveries/get",
        "status",
        json!({"enum": ["pending", "success", "failed", "succeeded", "delivered", "failure"]}),
    );
}

/// Lifecycle: the `PATCH /v1/webhooks/{id}` body, a JSON merge patch of a `WebhookIn`: the same
/// fields, none required, `null` allowed for every optional one (it removes it), header values
/// and retry fields included (`RetryConfigPatch`). Derived from the finished `WebhookIn` and
/// `RetryConfig` schemas, so their rules hold in the patch too.
fn patch_schemas(doc: &mut Value) {
    fn nullable(prop: &mut Value) {
        let Some(p) = prop.as_object_mut() else { return };
        match p.get("type").cloned() {
            Some(Value::String(t)) => {
                p.insert("type".into(), json!([t, "null"]));
            }
            Some(Value::Array(_)) => {}
            _ if p.contains_key("oneOf") => {}
            _ => {
                let inner = std::mem::take(p);
                p.insert("oneOf".into(), json!([Value::Object(inner), {"type": "null"}]));
            }
        }
    }
    let mut retry = at(doc, "/components/schemas/RetryConfig").clone();
    for prop in retry.get_mut("properties").and_then(Value::as_object_mut).into_iter().flat_map(|p| p.values_mut()) {
        if let Some(p) = prop.as_object_mut() {
            p.remove("default");
        }
        nullable(prop);
    }
    retry.insert(
        "description".into(),
        json!("A merge patch of a webhook's retry schedule: the fields to change; `null` resets one to its default."),
    );
    let mut webhook = at(doc, "/components/schemas/WebhookIn").clone();
    webhook.remove("required");
    webhook.remove("example");
    webhook.insert(
        "description".into(),
        json!(
            "A JSON merge patch (RFC 7396) of a webhook's registration: any of the `WebhookIn` fields; \
               `null` removes an optional one (its default applies); objects (`headers`, `retryConfig`) \
               merge member by member; lists are replaced. The result is checked as a `PUT` body."
        ),
    );
    let props = webhook.get_mut("properties").and_then(Value::as_object_mut).expect("WebhookIn has properties");
    if let Some(values) = props.get_mut("headers").and_then(|h| h.get_mut("additionalProperties")) {
        nullable(values);
    }
    props.insert(
        "retryConfig".into(),
        json!({"oneOf": [{"$ref": "#/components/schemas/RetryConfigPatch"}, {"type": "null"}]}),
    );
    let schemas = at(doc, "/components/schemas");
    schemas.insert("RetryConfigPatch".into(), Value::Object(retry));
    schemas.insert("WebhookPatch".into(), Value::Object(webhook));
    let body = at(doc, "/paths/~1v1~1webhooks~1{id}/patch/requestBody/content");
    let schema = json!({"schema": {"$ref": "#/components/schemas/WebhookPatch"}});
    body.insert("application/merge-patch+json".into(), schema.clone());
    body.insert("application/json".into(), schema);
}

/// Security as configured: the bearer scheme with a token, none when the API is open without one,
/// and a scheme nobody can satisfy when it is closed.
fn apply_access(doc: &mut Value, access: Access) {
    match access {
        Access::Bearer => {}
        Access::Closed => {
            set(
                doc,
                "/components/securitySchemes/bearer",
                json!({"description": "This server has no admin token and its admin API is not open \
                    (`WEBHOOKS_OPEN_ADMIN_API`, `Settings::open_admin_api`): every admin request is refused with 401 `unauthorized`."}),
            );
        }
        Access::Open => {
            if let Some(components) = doc.pointer_mut("/components").and_then(Value::as_object_mut) {
                components.remove("securitySchemes");
            }
            for item in at(doc, "/paths").values_mut() {
                for op in item.as_object_mut().into_iter().flat_map(|i| i.values_mut()) {
                    if let Some(op) = op.as_object_mut() {
                        op.remove("security");
                        if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                            responses.remove("401");
                        }
                    }
                }
            }
        }
    }
    let sentence = match access {
        Access::Bearer => "This server requires `Authorization: Bearer <admin token>` on the admin API.",
        Access::Open => {
            "This server has no admin token and answers the admin API without authentication (opened \
             explicitly for loopback callers; still guarded against cross-site use and DNS rebinding)."
        }
        Access::Closed => {
            "This server has no admin token and its admin API is closed: every admin request gets 401 \
             `unauthorized` until a token is set or the API is opened explicitly."
        }
    };
    let description = at(doc, "/info").entry("description").or_insert(json!(""));
    *description = json!(format!("{} {sentence}", description.as_str().unwrap_or_default()));
}

/// Moves the paths to where they are mounted, and drops the routes that are not.
fn apply_mounts(doc: &mut Value, mounts: &Mounts) {
    let paths = std::mem::take(at(doc, "/paths"));
    let mut mounted = serde_json::Map::new();
    for (path, item) in paths {
        let to = if let Some(rest) = path.strip_prefix("/v1/") {
            Some(format!("{}/{rest}", mounts.prefix))
        } else {
            match path.as_str() {
                "/metrics" => mounts.metrics.clone(),
                "/healthz" => mounts.healthz.clone(),
                "/openapi.json" => mounts.openapi.clone(),
                other => Some(other.to_string()),
            }
        };
        if let Some(to) = to {
            mounted.insert(to, item);
        }
    }
    *at(doc, "/paths") = mounted;
    if mounts.prefix != "/v1" {
        let description = at(doc, "/info").entry("description").or_insert(json!(""));
        *description = json!(format!(
            "{} The admin API is mounted under `{}`: descriptions that say `/v1` mean that prefix.",
            description.as_str().unwrap_or_default(),
            mounts.prefix
        ));
    }
}

/// The document a route serves (app data of the `/openapi.json` resource).
pub(crate) struct Served(pub(crate) web::Bytes);

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API, as this server is configured and mounted.", body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn openapi_json(doc: web::Data<Served>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(doc.0.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec_limits;
    use crate::retry::policy::limits;

    /// The document of the default test configuration (no token, the API opened).
    fn doc() -> Value {
        let settings = Settings { open_admin_api: true, ..Settings::default() };
        document(&settings, &EventCatalog::default(), &Mounts::default())
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
        // pacing
        for schema in ["WebhookIn", "WebhookOut"] {
            let rate = &schemas[schema]["properties"]["rateLimitPerSecond"];
            assert_eq!(rate["maximum"].as_f64(), Some(spec_limits::RATE_LIMIT_PER_SECOND), "{schema}");
            assert_eq!(rate["exclusiveMinimum"], json!(0), "{schema}");
        }
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

    /// The shapes the handlers check are in the document, where clients and schemathesis read them.
    #[test]
    fn documented_shapes_are_the_checked_ones() {
        let doc = doc();
        let webhook = &doc["components"]["schemas"]["WebhookIn"];
        assert_eq!(webhook["additionalProperties"], json!(false));
        assert_eq!(doc["components"]["schemas"]["PublishIn"]["additionalProperties"], json!(false));
        let props = &webhook["properties"];
        assert_eq!(props["url"]["pattern"], json!(rules::url_pattern()));
        assert_eq!(props["secret"]["pattern"], json!(rules::SECRET_PATTERN));
        assert_eq!(props["events"]["minItems"], json!(1));
        let events = props["events"]["items"]["enum"].as_array().unwrap();
        let catalog = EventCatalog::default();
        assert_eq!(
            events.len(),
            catalog.types().len() + 2 + catalog.patterns().len(),
            "the types, `*`, `webhook.test` and the wildcards"
        );
        // Every documented entry is one a registration accepts (wildcards included).
        let entries: Vec<String> = events.iter().map(|e| e.as_str().unwrap().to_string()).collect();
        assert!(catalog.subscription(Some(&entries)).is_ok());
        assert!(entries.contains(&"order.*".to_string()));
        // tenants part: the tenant fields share one pattern, and token bodies are closed.
        for schema in ["WebhookIn", "PublishIn", "TokenIn"] {
            let tenant = &doc["components"]["schemas"][schema]["properties"]["tenant"];
            assert_eq!(tenant["pattern"], json!(rules::TENANT_PATTERN), "{schema}");
            assert_eq!(tenant["maxLength"], json!(crate::model::spec_limits::TENANT_LEN), "{schema}");
        }
        assert_eq!(doc["components"]["schemas"]["TokenIn"]["additionalProperties"], json!(false));
        // The PATCH body: WebhookIn's rules, nothing required, optional fields nullable.
        let patch = &doc["components"]["schemas"]["WebhookPatch"];
        assert!(patch.get("required").is_none(), "{patch}");
        assert_eq!(patch["additionalProperties"], json!(false));
        assert_eq!(patch["properties"]["url"]["pattern"], json!(rules::url_pattern()));
        assert_eq!(patch["properties"]["url"]["type"], json!("string"), "url cannot be removed");
        assert_eq!(patch["properties"]["headers"]["additionalProperties"]["type"], json!(["string", "null"]));
        let retry = &doc["components"]["schemas"]["RetryConfigPatch"]["properties"];
        assert_eq!(retry["maxRetries"]["type"], json!(["integer", "null"]));
        assert_eq!(retry["jitter"]["oneOf"][1], json!({"type": "null"}));
        let body = &doc["paths"]["/v1/webhooks/{id}"]["patch"]["requestBody"]["content"];
        assert_eq!(body["application/merge-patch+json"]["schema"]["$ref"], "#/components/schemas/WebhookPatch");
        assert_eq!(props["headers"]["propertyNames"]["pattern"], json!(rules::header_name_pattern()));
        assert_eq!(props["headers"]["maxProperties"], json!(crate::model::spec_limits::HEADERS));
        let status = doc["paths"]["/v1/deliveries"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "status")
            .unwrap()["schema"]["enum"]
            .clone();
        for s in status.as_array().unwrap() {
            assert!(crate::model::DeliveryStatus::parse(s.as_str().unwrap()).is_some(), "{s}");
        }
        let header = &doc["paths"]["/v1/events"]["post"]["parameters"][0];
        assert_eq!(header["name"], "Idempotency-Key");
        assert_eq!(header["schema"]["pattern"], json!(rules::IDEMPOTENCY_KEY_PATTERN));
        // The default test configuration (no token, opened) asks for no credentials.
        assert!(doc["components"].get("securitySchemes").is_none());
        assert!(doc["paths"]["/v1/webhooks"]["post"].get("security").is_none());
    }

    /// Every mount is where the builder put it; a closed API keeps the bearer scheme, explained.
    #[test]
    fn mounts_and_access_shape_the_document() {
        let mounts = Mounts {
            prefix: "/admin".into(),
            metrics: None,
            healthz: Some("/health".into()),
            openapi: Some("/admin/openapi.json".into()),
            docs: None,
        };
        let settings = Settings { open_admin_api: false, ..Settings::default() };
        let doc = document(&settings, &EventCatalog::default(), &mounts);
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        assert!(paths.iter().all(|p| p.starts_with("/admin/") || *p == "/health"), "{paths:?}");
        assert_eq!(doc["paths"]["/admin/webhooks"]["get"]["security"], json!([{"bearer": []}]));
        let scheme = doc["components"]["securitySchemes"]["bearer"]["description"].as_str().unwrap();
        assert!(scheme.contains("refused"), "{scheme}");
    }
}
