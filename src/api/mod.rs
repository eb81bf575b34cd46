//! The REST API (docs/architecture.md, "REST"): admin routes under a prefix (`/v1` by default)
//! behind [`guard`]'s checks (cross-origin requests, `Host` names, the admin-token policy, JSON
//! bodies), plus `/metrics`, `/healthz`, `/openapi.json` and the `/docs` page, which the host
//! decides whether and where to mount ([`Routes`]). One module per resource, each with its DTOs and `configure`;
//! [`openapi`] describes them all, as mounted.

pub mod deliveries;
pub mod docs;
pub mod error;
pub mod events;
pub mod guard;
pub mod lifecycle;
pub mod merge_patch;
pub mod nodes;
pub mod openapi;
pub mod ops;
pub mod principal;
pub mod replay;
pub mod rules;
pub mod tokens;
pub mod webhooks;

use actix_web::http::StatusCode;
use actix_web::http::header;
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

/// Where the subsystem's routes go in a host's `App`: what [`Webhooks::routes`] returns.
///
/// Everything the subsystem mounts (the admin API under [`Routes::prefix`], and `/metrics`,
/// `/healthz` and `/openapi.json` where [`Routes::metrics`], [`Routes::healthz`] and
/// [`Routes::openapi`] say) carries its own handle, JSON and query settings, error handlers and
/// middleware; nothing is registered App-wide, so the host's own routes keep actix's defaults and
/// their own error format. The served OpenAPI document names the paths as mounted.
///
/// ```no_run
/// # use actix_web::App;
/// # async fn f(webhooks: servio_webhooks::Webhooks) {
/// let routes = webhooks
///     .routes()
///     .prefix("/hooks-admin")                  // the admin API: /hooks-admin/webhooks, …
///     .metrics(Some("/internal/metrics"))      // Prometheus text here
///     .healthz(None)                           // the host has its own health check
///     .openapi(Some("/hooks-admin/openapi.json"))
///     .into_configure();
/// let app = App::new().configure(routes);
/// # }
/// ```
#[derive(Clone)]
pub struct Routes {
    webhooks: Webhooks,
    prefix: String,
    metrics: Option<String>,
    healthz: Option<String>,
    openapi: Option<String>,
    docs: Option<String>,
}

/// The paths a [`Routes`] mounts, as the OpenAPI document describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// The admin API's prefix, e.g. `/v1`.
    pub prefix: String,
    /// Where `GET` answers with the Prometheus exposition, if anywhere.
    pub metrics: Option<String>,
    /// Where the health check is, if anywhere.
    pub healthz: Option<String>,
    /// Where the OpenAPI document is served, if anywhere.
    pub openapi: Option<String>,
    /// Where the browsable reference (Swagger UI) is, if anywhere.
    pub docs: Option<String>,
}

impl Default for Mounts {
    /// `/v1`, `/metrics`, `/healthz`, `/openapi.json`, `/docs`: what `servio-webhooks serve` mounts.
    fn default() -> Self {
        Self {
            prefix: "/v1".into(),
            metrics: Some("/metrics".into()),
            healthz: Some("/healthz".into()),
            openapi: Some("/openapi.json".into()),
            docs: Some("/docs".into()),
        }
    }
}

/// A mount path: leading `/`, no trailing `/` (unless it is `/` itself), no `{`, `}` or whitespace.
fn mount_path(what: &str, path: &str) -> String {
    let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    assert!(
        trimmed.starts_with('/') && !trimmed.contains(['{', '}', '?', '#']) && !trimmed.contains(char::is_whitespace),
        "servio-webhooks: the {what} path `{path}` must start with `/` and hold no `{{`, `}}`, `?`, `#` or spaces"
    );
    trimmed.to_string()
}

impl Routes {
    /// The default mounting: the admin API under `/v1`, and `/metrics`, `/healthz`,
    /// `/openapi.json` at the root.
    pub fn new(webhooks: Webhooks) -> Self {
        let m = Mounts::default();
        Self { webhooks, prefix: m.prefix, metrics: m.metrics, healthz: m.healthz, openapi: m.openapi, docs: m.docs }
    }

    /// Mounts the admin API under `prefix` (default `/v1`): `{prefix}/webhooks`, `{prefix}/events`…
    /// Everything under the prefix belongs to the subsystem (unknown paths there get its JSON 404).
    ///
    /// # Panics
    /// When `prefix` is `/` or empty (the subsystem would take every path of the host), does not
    /// start with `/`, or holds `{`, `}`, `?`, `#` or whitespace.
    pub fn prefix(mut self, prefix: &str) -> Self {
        let p = mount_path("admin API prefix", prefix);
        assert!(p != "/", "servio-webhooks: the admin API needs a prefix other than `/`");
        self.prefix = p;
        self
    }

    /// Where `GET` serves the Prometheus text exposition (default `/metrics`); `None` mounts it
    /// nowhere (the host may serve [`crate::metrics::render`] itself).
    ///
    /// # Panics
    /// When the path does not start with `/` or holds `{`, `}`, `?`, `#` or whitespace.
    pub fn metrics(mut self, path: Option<&str>) -> Self {
        self.metrics = path.map(|p| mount_path("metrics", p));
        self
    }

    /// Where `GET` answers the health check (default `/healthz`); `None` mounts it nowhere.
    ///
    /// # Panics
    /// As [`Routes::metrics`].
    pub fn healthz(mut self, path: Option<&str>) -> Self {
        self.healthz = path.map(|p| mount_path("health check", p));
        self
    }

    /// Where `GET` serves the OpenAPI document (default `/openapi.json`); `None` mounts it nowhere.
    ///
    /// # Panics
    /// As [`Routes::metrics`].
    pub fn openapi(mut self, path: Option<&str>) -> Self {
        self.openapi = path.map(|p| mount_path("OpenAPI document", p));
        self
    }

    /// Where the browsable API reference is (default `/docs`): Swagger UI, embedded in the binary,
    /// rendering this mounting's OpenAPI document (served beside it, at `{path}/openapi.json`).
    /// `None` mounts it nowhere.
    ///
    /// # Panics
    /// As [`Routes::metrics`], and when `path` is `/`.
    pub fn docs(mut self, path: Option<&str>) -> Self {
        self.docs = path.map(|p| mount_path("docs", p));
        assert!(self.docs.as_deref() != Some("/"), "servio-webhooks: the docs need a path other than `/`");
        self
    }

    /// The paths this mounting uses.
    pub fn mounts(&self) -> Mounts {
        Mounts {
            prefix: self.prefix.clone(),
            metrics: self.metrics.clone(),
            healthz: self.healthz.clone(),
            openapi: self.openapi.clone(),
            docs: self.docs.clone(),
        }
    }

    /// The OpenAPI document of the API as this mounting serves it (paths, security, event types).
    pub fn openapi_document(&self) -> String {
        openapi::document_json(self.webhooks.settings(), self.webhooks.catalog(), &self.mounts())
    }

    /// The function to pass to `App::configure` (or `ServiceConfig::configure`).
    ///
    /// # Panics
    /// When two of the mounted paths are equal.
    pub fn into_configure(self) -> impl Fn(&mut web::ServiceConfig) + Clone + 'static {
        let mounts = self.mounts();
        let singles: Vec<&String> =
            [&mounts.metrics, &mounts.healthz, &mounts.openapi, &mounts.docs].into_iter().flatten().collect();
        for (i, a) in singles.iter().enumerate() {
            assert!(!singles[i + 1..].contains(a), "servio-webhooks: `{a}` is mounted twice");
        }
        let doc = web::Bytes::from(self.openapi_document());
        let webhooks = self.webhooks;
        move |cfg: &mut web::ServiceConfig| configure(cfg, webhooks.clone(), &mounts, doc.clone())
    }
}

/// Mounts every route of `mounts` into `cfg` (see [`Routes`]).
///
/// The admin API is one scope behind [`guard`]'s checks (cross-origin requests, `Host` names when
/// there is no admin token, the admin-token policy, JSON bodies); its data, JSON and query settings
/// and error handlers are scoped to it, and so are those of the single routes, so a host
/// application's own routes keep theirs.
fn configure(cfg: &mut web::ServiceConfig, webhooks: Webhooks, mounts: &Mounts, doc: web::Bytes) {
    let max_body = webhooks.settings().max_payload_bytes + 4096;
    let guard = web::Data::new(guard::AdminGuard::new(webhooks.settings()));
    let data = web::Data::new(webhooks);
    if let Some(path) = &mounts.healthz {
        cfg.service(single(path, data.clone()).route(web::get().to(ops::healthz)));
    }
    if let Some(path) = &mounts.metrics {
        cfg.service(single(path, data.clone()).route(web::get().to(ops::metrics)));
    }
    if let Some(path) = &mounts.openapi {
        cfg.service(
            single(path, data.clone())
                .app_data(web::Data::new(openapi::Served(doc.clone())))
                .route(web::get().to(openapi::openapi_json)),
        );
    }
    if let Some(path) = &mounts.docs {
        docs::configure(cfg, path, docs::DocsPage::new(path, doc.clone()));
    }
    cfg.service(
        web::scope(&mounts.prefix)
            .app_data(data)
            .app_data(guard)
            .app_data(
                web::JsonConfig::default()
                    .limit(max_body)
                    .content_type_required(true)
                    .content_type(|m| guard::is_json_mime(&m))
                    .error_handler(|err, _| error::json_error(err).into()),
            )
            .app_data(web::QueryConfig::default().error_handler(|err, _| error::query_error(err).into()))
            // Outermost last: the guard lets a request in, then its principal is resolved.
            .wrap(from_fn(principal::scope_principal))
            .wrap(from_fn(guard::admin_guard))
            // Publishing first: actix tries resources in order, and each one with a `{param}`
            // costs a regex match (seven of them, `/webhooks/{id}…`, came before `/events`).
            .configure(events::configure)
            .configure(webhooks::configure)
            .configure(lifecycle::configure)
            .configure(deliveries::configure)
            .configure(replay::configure)
            .configure(nodes::configure)
            .configure(tokens::configure)
            .configure(ops::configure_v1)
            .default_service(web::to(not_found)),
    );
}

/// A `GET`-only resource outside the admin scope, with the subsystem's handle and a 405 with
/// `Allow: GET` for other methods.
fn single(path: &str, data: web::Data<Webhooks>) -> actix_web::Resource {
    web::resource(path).app_data(data).default_service(web::to(allow("GET")))
}

/// JSON 404 for unknown paths.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no route for {} {}", req.method(), req.path()))
        .error_response()
}

/// A handler answering 405 `method_not_allowed` with `Allow: {methods}`: the default service of a
/// resource whose routes serve `methods`.
pub(crate) fn allow(
    methods: &'static str,
) -> impl Fn(HttpRequest) -> std::future::Ready<HttpResponse> + Clone + 'static {
    move |req: HttpRequest| {
        let mut resp = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{} is not allowed on {}; allowed: {methods}", req.method(), req.path()),
        )
        .error_response();
        resp.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static(methods));
        std::future::ready(resp)
    }
}

/// Opaque cursor from the last id of a page: the id in unpadded base64url.
pub fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The position inside a cursor, or a 400 `invalid_cursor`: any canonical unpadded base64url
/// string of at most [`rules::CURSOR_LEN`] characters is one (see [`rules::CURSOR_PATTERN`]); one
/// this API did not return just positions the page somewhere.
pub fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "invalid_cursor",
            format!(
                "cursor is not one this API returned (unpadded base64url, at most {} characters)",
                rules::CURSOR_LEN
            ),
        )
    };
    if cursor.len() > rules::CURSOR_LEN {
        return Err(refuse());
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refuse())?;
    // Ids are ASCII: a position that is not UTF-8, or holds NUL (which PostgreSQL's text refuses),
    // sorts as well with replacement characters.
    Ok(String::from_utf8_lossy(&bytes).replace('\0', "\u{fffd}"))
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

/// A JSON request body that must be an object: serde would also build a struct from an array of
/// its fields (`["https://…"]` as a webhook), which the document does not allow.
///
/// The body is checked as JSON by actix (content type, size, syntax: the usual errors) without
/// building a tree, then deserialized from its text, so that a `RawValue` field keeps the bytes as
/// sent: an event's `data` goes out byte for byte (through a `serde_json::Value` its keys came out
/// sorted, `25.070` as `25.07`, and integers beyond 64 bits as rounded floats).
pub(crate) struct JsonObject<T>(pub(crate) T);

impl<T: serde::de::DeserializeOwned> actix_web::FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = futures_util::future::LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut actix_web::dev::Payload) -> Self::Future {
        let json = web::Json::<Box<serde_json::value::RawValue>>::from_request(req, payload);
        Box::pin(async move {
            let raw = json.await?.into_inner();
            from_object_text(raw.get()).map(JsonObject).map_err(Into::into)
        })
    }
}

/// A request body's text as `T`, if it is a JSON object (see [`JsonObject`]); `text` is valid JSON.
pub(crate) fn from_object_text<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("invalid_request", "the request body must be a JSON object"));
    }
    serde_json::from_str(text)
        .map_err(|e| ApiError::bad_request("invalid_request", format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths_are_normalised_or_refused() {
        assert_eq!(mount_path("x", "/hooks-admin/"), "/hooks-admin");
        assert_eq!(mount_path("x", "/a/b"), "/a/b");
        assert_eq!(mount_path("x", "/"), "/");
        for bad in ["", "hooks", "/a b", "/{id}", "/a?b", "/a#b"] {
            assert!(std::panic::catch_unwind(|| mount_path("x", bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_take_any_position() {
        assert_eq!(decode_cursor(&encode_cursor("wh_1")).unwrap(), "wh_1");
        assert_eq!(decode_cursor("AAA").unwrap(), "\u{fffd}\u{fffd}");
        assert!(decode_cursor("A").is_err());
        assert!(decode_cursor("AB").is_err(), "not canonical");
        assert!(decode_cursor("AA==").is_err(), "padded");
        assert!(decode_cursor(&"A".repeat(rules::CURSOR_LEN + 4)).is_err());
    }
}
