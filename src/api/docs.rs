//! `/docs`: a browsable reference of the admin API, rendered in the browser by Swagger UI from the
//! same OpenAPI document `/openapi.json` serves. Everything the page loads comes from this binary
//! (`assets/swagger-ui/`, embedded): nothing is fetched at build or run time, and the page's
//! Content-Security-Policy allows no other origin.
//!
//! Routes under the docs path (default `/docs`): the page itself, `init.js` (the page's only
//! script of ours: where the document is, no validator badge), the two Swagger UI files, and
//! `openapi.json` (a copy of the document, so the page works when the host mounts
//! `/openapi.json` elsewhere or not at all). The page is readable without a token, as the document
//! is; "Try it out" sends requests with the token entered under "Authorize".

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

/// The vendored Swagger UI release (see `assets/swagger-ui/README.md`).
pub const SWAGGER_UI_VERSION: &str = "5.35.0";

const BUNDLE_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

/// Only this origin; inline styles because Swagger UI sets `style` attributes; images and fonts it
/// inlines as `data:` URLs.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// What the docs routes serve, built once per mounting.
#[derive(Clone)]
pub(crate) struct DocsPage {
    html: web::Bytes,
    init: web::Bytes,
    document: web::Bytes,
}

impl DocsPage {
    /// The page mounted at `path`, rendering `document`.
    pub(crate) fn new(path: &str, document: web::Bytes) -> Self {
        let base = path.trim_end_matches('/');
        let html = format!(
            r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>servio-webhooks admin API</title>
<link rel="stylesheet" href="{base}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{base}/swagger-ui-bundle.js"></script>
<script src="{base}/init.js"></script>
</body>
</html>
"#
        );
        let document_url = serde_json::to_string(&format!("{base}/openapi.json")).expect("a string serialises");
        let init = format!(
            "window.ui = SwaggerUIBundle({{\n  url: {document_url},\n  dom_id: '#swagger-ui',\n  \
             deepLinking: true,\n  validatorUrl: null,\n  persistAuthorization: false,\n  \
             tryItOutEnabled: false\n}});\n"
        );
        Self { html: html.into(), init: init.into(), document }
    }
}

/// Mounts the docs routes under `path`.
pub(crate) fn configure(cfg: &mut web::ServiceConfig, path: &str, page: DocsPage) {
    let base = path.trim_end_matches('/');
    let page = web::Data::new(page);
    cfg.service(
        web::scope(base)
            .app_data(page)
            .service(resource("").route(web::get().to(html)))
            .service(resource("/").route(web::get().to(html)))
            .service(resource("/init.js").route(web::get().to(init)))
            .service(resource("/openapi.json").route(web::get().to(document)))
            .service(resource("/swagger-ui-bundle.js").route(web::get().to(bundle)))
            .service(resource("/swagger-ui.css").route(web::get().to(css)))
            .default_service(web::to(super::not_found)),
    );
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(super::allow("GET")))
}

/// A response with the page's security headers; `cache` for the immutable vendored files.
fn respond(content_type: &'static str, body: web::Bytes, cache: bool) -> HttpResponse {
    let mut resp = HttpResponse::Ok().content_type(content_type).body(body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if cache { "public, max-age=86400" } else { "no-cache" }),
    );
    resp
}

async fn html(page: web::Data<DocsPage>) -> HttpResponse {
    respond("text/html; charset=utf-8", page.html.clone(), false)
}

async fn init(page: web::Data<DocsPage>) -> HttpResponse {
    respond("text/javascript; charset=utf-8", page.init.clone(), false)
}

async fn document(page: web::Data<DocsPage>) -> HttpResponse {
    respond("application/json", page.document.clone(), false)
}

async fn bundle() -> HttpResponse {
    respond("text/javascript; charset=utf-8", web::Bytes::from_static(BUNDLE_JS), true)
}

async fn css() -> HttpResponse {
    respond("text/css; charset=utf-8", web::Bytes::from_static(CSS), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_from_where_it_is_mounted() {
        let page = DocsPage::new("/admin/docs", web::Bytes::from_static(b"{}"));
        let html = std::str::from_utf8(&page.html).unwrap();
        assert!(html.contains(r#"href="/admin/docs/swagger-ui.css""#));
        assert!(html.contains(r#"src="/admin/docs/swagger-ui-bundle.js""#));
        assert!(html.contains(r#"src="/admin/docs/init.js""#));
        assert!(!html.contains("http:") && !html.contains("https:") && !html.contains("//cdn"), "{html}");
        let init = std::str::from_utf8(&page.init).unwrap();
        assert!(init.contains(r#"url: "/admin/docs/openapi.json""#), "{init}");
        assert!(init.contains("validatorUrl: null"), "no badge fetched from validator.swagger.io");
        assert!(!CSP.contains("http") && !CSP.contains('*'), "no other origin");
    }
}
