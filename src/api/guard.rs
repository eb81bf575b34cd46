//! The checks every `/v1` request passes before its handler runs, in this order:
//!
//! 1. **Cross-origin requests** (403 `cross_origin_refused`): a browser's `Sec-Fetch-Site:
//!    cross-site`, or an `Origin` header that is not this server's own origin (scheme, host and port
//!    of the `Host` the request was sent to; `Origin: null` included). A page on another site can
//!    make a browser send a request but cannot hide where it comes from.
//! 2. **`Host` names** (403 `host_not_allowed`), only when no admin token is set: `localhost`,
//!    `127.0.0.1`, `[::1]` and the listener's own address (from the actix `AppConfig` of the
//!    listener that accepted the connection, so it works the same embedded and standalone), with
//!    the port the listener is bound to or no port, plus `Settings::allowed_hosts`. This stops DNS
//!    rebinding: a page on `attacker.example` whose name is re-pointed at 127.0.0.1 is same-origin
//!    for the browser, but its requests carry `Host: attacker.example`. A request without `Host`
//!    (HTTP/1.0 tools) is not from a browser and passes.
//! 3. **The admin-token policy** (401 `unauthorized` with `WWW-Authenticate: Bearer …`): with a
//!    token, `Authorization: Bearer <token>` with the scheme in any case and any spaces or tabs
//!    after it, compared as SHA-256 digests in constant time, so neither the content nor the length
//!    of the token leaks through timing. Without a token, only a server that opened its admin API
//!    explicitly (`Settings::open_admin_api`) answers; otherwise every request is refused, telling
//!    to set a token or open the API, so that a host app bound on a public address never exposes
//!    it by accident. A bearer value shaped like a tenant token (`swt_…`, see
//!    [`crate::tenants`]) that is not the admin token is let through as `Pass::Presented`: the
//!    next layer ([`super::principal`]) looks it up and answers 401 if it is not a live token.
//! 4. **JSON bodies** (415 `unsupported_media_type`): any request with a body needs
//!    `Content-Type: application/json` or an `application/*+json` type, with an optional
//!    `charset=utf-8`. Form posts and `text/plain`, which a browser sends cross-site without asking,
//!    are refused before anything reads the body. A `POST` or `PUT` without any content type is
//!    left to the scope's JSON extractor settings (the same 415, after routing), so that a method
//!    the path does not take gets its 405 first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse, ResponseError, mime, web};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ApiError;
use crate::config::Settings;

/// The realm named in `WWW-Authenticate`.
const REALM: &str = "servio-webhooks";
/// The challenge of a 401 without a token given.
const CHALLENGE: &str = "Bearer realm=\"servio-webhooks\"";

/// A host in a `Host` header or an allowed-hosts entry: an address or a lower-case name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostName {
    Ip(IpAddr),
    Name(String),
}

/// `host[:port]` as in a `Host` header (`[v6]:port` for IPv6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    pub(crate) host: HostName,
    pub(crate) port: Option<u16>,
}

impl HostPattern {
    /// Parses `name`, `name:port`, `1.2.3.4[:port]` or `[v6][:port]`; names are lower-cased and
    /// lose a trailing dot.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| Err(format!("`{s}` is not a host (`name`, `name:port` or `[v6]:port`): {why}"));
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let Some((v6, after)) = rest.split_once(']') else { return bad("missing `]`") };
            let Ok(ip) = v6.parse::<Ipv6Addr>() else { return bad("not an IPv6 address in brackets") };
            let port = match after {
                "" => None,
                p => match p.strip_prefix(':') {
                    Some(p) => Some(p),
                    None => return bad("junk after `]`"),
                },
            };
            (HostName::Ip(IpAddr::V6(ip)), port)
        } else {
            if s.matches(':').count() > 1 {
                return bad("IPv6 addresses go in brackets");
            }
            let (h, port) = match s.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (s, None),
            };
            let host = match h.parse::<Ipv4Addr>() {
                Ok(ip) => HostName::Ip(IpAddr::V4(ip)),
                Err(_) => {
                    let name = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
                    let ok = !name.is_empty()
                        && name.len() <= 253
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
                    if !ok {
                        return bad("a name has letters, digits, `-`, `_` and `.` only");
                    }
                    HostName::Name(name)
                }
            };
            (host, port)
        };
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return bad("the port is not a number from 1 to 65535"),
            },
        };
        Ok(Self { host, port })
    }
}

/// The parsed guard settings, kept in the `/v1` scope's data so requests do not re-parse them.
#[derive(Debug)]
pub(crate) struct AdminGuard {
    token_digest: Option<[u8; 32]>,
    /// Answer without a token (`Settings::open_admin_api`); only read when there is none.
    open: bool,
    allowed_hosts: Vec<HostPattern>,
}

impl AdminGuard {
    pub(crate) fn new(settings: &Settings) -> Self {
        Self {
            token_digest: settings.admin_token.as_deref().map(|t| digest(t.as_bytes())),
            open: settings.open_admin_api,
            // Entries that do not parse were refused by `Settings::validate` at start.
            allowed_hosts: settings.allowed_hosts.iter().filter_map(|h| HostPattern::parse(h).ok()).collect(),
        }
    }

    /// Everything but the response: the first check that fails, or who may pass.
    fn check<'h>(
        &self,
        headers: &'h HeaderMap,
        method: &Method,
        authority: Option<&str>,
        local: SocketAddr,
    ) -> Result<Pass<&'h str>, Refusal> {
        // `Err` for a `Host` that is not a host at all: no origin can match it, and it is not allowed.
        let host = match headers.get(header::HOST).map(|v| v.to_str().ok()).or(authority.map(Some)) {
            None => Ok(None),
            Some(v) => v.and_then(|v| HostPattern::parse(v).ok()).map(Some).ok_or(()),
        };
        if headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("cross-site"))
        {
            return Err(Refusal::CrossOrigin("cross-site requests (`Sec-Fetch-Site: cross-site`) are refused".into()));
        }
        let mut origins = headers.get_all(header::ORIGIN);
        if let Some(origin) = origins.next() {
            if origins.next().is_some() {
                return Err(Refusal::CrossOrigin("more than one `Origin` header".into()));
            }
            let origin = origin.to_str().unwrap_or("?");
            if !host.as_ref().is_ok_and(|h| h.as_ref().is_some_and(|h| same_origin(origin, h))) {
                return Err(Refusal::CrossOrigin(format!(
                    "requests from origin `{origin}` are refused: only the server's own origin may call /v1"
                )));
            }
        }
        let tenant_token = |c: &Credentials<'h>| match c {
            Credentials::Bearer(t) if crate::tenants::PresentedToken::parse(t).is_some() => Some(*t),
            _ => None,
        };
        let pass = match &self.token_digest {
            None if !self.open => return Err(Refusal::Closed),
            None => match &host {
                Ok(Some(h)) if !host_allowed(h, local, &self.allowed_hosts) => return Err(Refusal::BadHost),
                Err(()) => return Err(Refusal::BadHost),
                Ok(_) => tenant_token(&credentials(headers)).map_or(Pass::Admin, Pass::Presented),
            },
            Some(expected) => match credentials(headers) {
                Credentials::Bearer(token) if bool::from(digest(token.as_bytes()).ct_eq(expected)) => Pass::Admin,
                Credentials::Bearer(token) if crate::tenants::PresentedToken::parse(token).is_some() => {
                    Pass::Presented(token)
                }
                Credentials::Bearer(_) | Credentials::Malformed => {
                    return Err(Refusal::Unauthorized { token_given: true });
                }
                Credentials::Missing | Credentials::OtherScheme => {
                    return Err(Refusal::Unauthorized { token_given: false });
                }
            },
        };
        let has_body = headers.contains_key(header::TRANSFER_ENCODING)
            || headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
        let takes_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        match headers.get(header::CONTENT_TYPE) {
            Some(ct) if (has_body || takes_body) && !is_json_content_type(ct) => return Err(Refusal::MediaType),
            // A `POST`, `PUT` or `PATCH` without a content type is the JSON extractor's to refuse (the same
            // 415, before it reads anything), so that a method the path does not take gets its 405.
            None if has_body && !takes_body => return Err(Refusal::MediaType),
            _ => {}
        }
        Ok(pass)
    }
}

/// Who passed the door: the admin (the admin token, or the opened admin API), or a bearer value
/// shaped like a tenant token, still to be looked up ([`super::principal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pass<T> {
    /// Full access.
    Admin,
    /// A tenant token as presented.
    Presented(T),
}

impl Pass<&str> {
    /// The same, holding its own copy of the token (for the request's extensions).
    pub(crate) fn into_owned(self) -> Pass<String> {
        match self {
            Pass::Admin => Pass::Admin,
            Pass::Presented(t) => Pass::Presented(t.to_string()),
        }
    }
}

/// Why a request was stopped at the door.
#[derive(Debug, PartialEq)]
enum Refusal {
    CrossOrigin(String),
    BadHost,
    Unauthorized {
        token_given: bool,
    },
    /// No token and not opened explicitly.
    Closed,
    MediaType,
}

impl Refusal {
    fn response(&self) -> HttpResponse {
        match self {
            Refusal::CrossOrigin(message) => {
                ApiError::new(StatusCode::FORBIDDEN, "cross_origin_refused", message.clone()).error_response()
            }
            Refusal::BadHost => ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                "the Host header names neither this server's address nor an allowed host \
                 (WEBHOOKS_ALLOWED_HOSTS); without an admin token only those are answered",
            )
            .error_response(),
            Refusal::Unauthorized { token_given } => {
                let (message, challenge) = if *token_given {
                    ("wrong or malformed bearer token", format!("Bearer realm=\"{REALM}\", error=\"invalid_token\""))
                } else {
                    (
                        "missing bearer token (Authorization: Bearer <WEBHOOKS_ADMIN_TOKEN>)",
                        format!("Bearer realm=\"{REALM}\""),
                    )
                };
                let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).error_response();
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                }
                resp
            }
            Refusal::Closed => {
                let mut resp = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the admin API is closed: no admin token is set; set one (WEBHOOKS_ADMIN_TOKEN, \
                     Settings::admin_token) and send it as `Authorization: Bearer <token>`, or open the API \
                     explicitly for loopback callers (WEBHOOKS_OPEN_ADMIN_API=true, Settings::open_admin_api)",
                )
                .error_response();
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
                resp
            }
            Refusal::MediaType => media_type_error().error_response(),
        }
    }
}

/// 415 for a body that is not declared as JSON.
pub(crate) fn media_type_error() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "request body must be JSON: content-type application/json (or application/*+json), charset utf-8 if given",
    )
}

/// The middleware around `/v1` (see the module documentation).
pub(crate) async fn admin_guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let verdict = match req.app_data::<web::Data<AdminGuard>>() {
        Some(guard) => guard
            .check(
                req.headers(),
                req.method(),
                req.uri().authority().map(|a| a.as_str()),
                req.app_config().local_addr(),
            )
            .map(Pass::into_owned),
        None => Ok(Pass::Admin),
    };
    match verdict {
        Ok(pass) => {
            req.extensions_mut().insert(pass);
            Ok(next.call(req).await?.map_into_left_body())
        }
        Err(refusal) => Ok(req.into_response(refusal.response()).map_into_right_body()),
    }
}

/// Whether a content type is JSON: `application/json` or `application/<anything>+json`, with
/// `charset=utf-8` (any case) if a charset is given.
pub(crate) fn is_json_mime(m: &mime::Mime) -> bool {
    m.type_() == mime::APPLICATION
        && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
        && m.get_param(mime::CHARSET).is_none_or(|c| c.as_str().eq_ignore_ascii_case("utf-8"))
}

fn is_json_content_type(v: &HeaderValue) -> bool {
    v.to_str().ok().and_then(|s| s.parse::<mime::Mime>().ok()).is_some_and(|m| is_json_mime(&m))
}

/// Whether `origin` (a browser's `Origin` header) is the origin of requests sent to `host`.
fn same_origin(origin: &str, host: &HostPattern) -> bool {
    let Ok(url) = url::Url::parse(origin) else { return false };
    if !matches!(url.scheme(), "http" | "https") || (url.path() != "/" && !url.path().is_empty()) {
        return false;
    }
    let origin_host = match url.host() {
        Some(url::Host::Ipv4(ip)) => HostName::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => HostName::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => HostName::Name(d.strip_suffix('.').unwrap_or(d).to_ascii_lowercase()),
        None => return false,
    };
    let default_port = if url.scheme() == "https" { 443 } else { 80 };
    origin_host == host.host && url.port_or_known_default() == Some(host.port.unwrap_or(default_port))
}

/// Whether a `Host` may reach the open (token-less) admin API through the listener at `local`.
fn host_allowed(host: &HostPattern, local: SocketAddr, allowed: &[HostPattern]) -> bool {
    let builtin = match &host.host {
        HostName::Name(n) => n == "localhost",
        HostName::Ip(ip) => {
            *ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
                || *ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
                || (!local.ip().is_unspecified() && *ip == local.ip())
        }
    };
    if builtin && host.port.is_none_or(|p| p == local.port()) {
        return true;
    }
    allowed.iter().any(|a| a.host == host.host && (a.port.is_none() || a.port == host.port))
}

/// What the `Authorization` header holds.
#[derive(Debug, PartialEq)]
enum Credentials<'a> {
    Missing,
    OtherScheme,
    Malformed,
    Bearer(&'a str),
}

/// Reads `Authorization: Bearer <token>` (RFC 6750 §2.1): the scheme in any case, then one or more
/// spaces or tabs, then one token without whitespace. Several headers, non-ASCII bytes or anything
/// after the token are malformed.
fn credentials(headers: &HeaderMap) -> Credentials<'_> {
    let mut all = headers.get_all(header::AUTHORIZATION);
    let Some(value) = all.next() else { return Credentials::Missing };
    if all.next().is_some() {
        return Credentials::Malformed;
    }
    let Ok(value) = value.to_str() else { return Credentials::Malformed };
    let lws = |c: char| c == ' ' || c == '\t';
    let value = value.trim_matches(lws);
    let (scheme, rest) = value.split_once(lws).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::OtherScheme;
    }
    let token = rest.trim_start_matches(lws);
    if token.is_empty() || token.contains(lws) {
        return Credentials::Malformed;
    }
    Credentials::Bearer(token)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderName;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn pattern(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }

    #[test]
    fn host_patterns_parse() {
        assert_eq!(
            pattern("LocalHost.:8080"),
            HostPattern { host: HostName::Name("localhost".into()), port: Some(8080) }
        );
        assert_eq!(pattern("127.0.0.1"), HostPattern { host: HostName::Ip([127, 0, 0, 1].into()), port: None });
        assert_eq!(
            pattern("[0:0::1]:80"),
            HostPattern { host: HostName::Ip(Ipv6Addr::LOCALHOST.into()), port: Some(80) }
        );
        for bad in ["", "::1", "[::1", "[::1]x", "a b", "h:0", "h:+80", "h:65536", "h:", "http://h", "h/x", "ä.example"]
        {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_are_loopback_the_listener_or_configured() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let allowed = vec![pattern("webhooks.internal"), pattern("admin.example:9000")];
        for ok in [
            "localhost:8080",
            "localhost",
            "127.0.0.1:8080",
            "127.0.0.1",
            "[::1]:8080",
            "webhooks.internal:1234",
            "admin.example:9000",
        ] {
            assert!(host_allowed(&pattern(ok), local, &allowed), "{ok}");
        }
        for bad in [
            "attacker.example:8080",
            "localhost:8081",
            "127.0.0.2:8080",
            "admin.example:9001",
            "admin.example",
            "10.0.0.1:8080",
        ] {
            assert!(!host_allowed(&pattern(bad), local, &allowed), "{bad}");
        }
        // The listener's own address counts, unless it is the unspecified one.
        assert!(host_allowed(&pattern("10.0.0.1:8080"), "10.0.0.1:8080".parse().unwrap(), &[]));
        assert!(!host_allowed(&pattern("0.0.0.0:8080"), "0.0.0.0:8080".parse().unwrap(), &[]));
        assert!(!host_allowed(&pattern("10.0.0.1:8080"), "0.0.0.0:8080".parse().unwrap(), &[]));
    }

    #[test]
    fn origins_must_match_the_host() {
        let h = pattern("localhost:8080");
        assert!(same_origin("http://localhost:8080", &h));
        assert!(same_origin("http://LOCALHOST:8080", &h));
        assert!(!same_origin("http://localhost:3000", &h));
        assert!(!same_origin("http://attacker.example:8080", &h));
        assert!(!same_origin("null", &h));
        assert!(!same_origin("file://", &h));
        assert!(!same_origin("http://localhost:8080/path", &h));
        let h = pattern("admin.example");
        assert!(same_origin("https://admin.example", &h));
        assert!(same_origin("http://admin.example", &h));
        assert!(!same_origin("https://admin.example:8443", &h));
        assert!(same_origin("https://admin.example:8443", &pattern("admin.example:8443")));
        assert!(same_origin("http://[::1]:8080", &pattern("[::1]:8080")));
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON;charset=UTF-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_content_type(&HeaderValue::from_static(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/json; charset=latin1",
            "",
            "json",
        ] {
            assert!(!is_json_content_type(&HeaderValue::from_static(bad)), "{bad}");
        }
    }

    #[test]
    fn bearer_credentials() {
        let cases: &[(&[(&str, &str)], Credentials<'_>)] = &[
            (&[], Credentials::Missing),
            (&[("authorization", "Bearer abc")], Credentials::Bearer("abc")),
            (&[("authorization", "bearer abc")], Credentials::Bearer("abc")),
            (&[("authorization", "BEARER abc")], Credentials::Bearer("abc")),
            (&[("authorization", "BeArEr \t  abc")], Credentials::Bearer("abc")),
            (&[("authorization", "Bearer\tabc")], Credentials::Bearer("abc")),
            (&[("authorization", "Basic YWJj")], Credentials::OtherScheme),
            (&[("authorization", "Bearerabc")], Credentials::OtherScheme),
            (&[("authorization", "Bearer")], Credentials::Malformed),
            (&[("authorization", "Bearer a b")], Credentials::Malformed),
            (&[("authorization", "Bearer abc"), ("authorization", "Bearer abc")], Credentials::Malformed),
        ];
        for (h, want) in cases {
            assert_eq!(credentials(&headers(h)), *want, "{h:?}");
        }
    }

    #[test]
    fn checks_run_in_order() {
        let settings = Settings { admin_token: Some("tok".into()), ..Settings::default() };
        let guard = AdminGuard::new(&settings);
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let check = |h: &[(&str, &str)], m: Method| guard.check(&headers(h), &m, None, local).map(Pass::into_owned);
        let auth = ("authorization", "Bearer tok");
        let json = ("content-type", "application/json");
        assert_eq!(check(&[auth, json], Method::POST), Ok(Pass::Admin));
        assert_eq!(check(&[auth], Method::GET), Ok(Pass::Admin));
        // POST and PUT without a content type are left to the JSON extractor (415 after routing,
        // 405 for paths that do not take them); with another content type they are refused here.
        assert_eq!(check(&[auth], Method::POST), Ok(Pass::Admin));
        assert_eq!(check(&[auth, ("content-type", "text/plain")], Method::PUT), Err(Refusal::MediaType));
        assert_eq!(check(&[auth, ("content-type", "text/json")], Method::POST), Err(Refusal::MediaType));
        assert_eq!(check(&[auth, ("content-length", "3")], Method::DELETE), Err(Refusal::MediaType));
        assert_eq!(check(&[json], Method::POST), Err(Refusal::Unauthorized { token_given: false }));
        assert_eq!(
            check(&[("authorization", "Bearer tok2")], Method::GET),
            Err(Refusal::Unauthorized { token_given: true })
        );
        assert_eq!(
            check(&[("authorization", "Bearer to")], Method::GET),
            Err(Refusal::Unauthorized { token_given: true })
        );
        assert!(matches!(
            check(&[auth, json, ("host", "localhost:8080"), ("origin", "http://evil.example")], Method::POST),
            Err(Refusal::CrossOrigin(_))
        ));
        assert!(matches!(check(&[auth, ("sec-fetch-site", "cross-site")], Method::GET), Err(Refusal::CrossOrigin(_))));
        // With a token, any Host is fine (behind a proxy, say); without one it is checked.
        assert_eq!(check(&[auth, ("host", "webhooks.example.com")], Method::GET), Ok(Pass::Admin));
        let closed = AdminGuard::new(&Settings::default());
        for h in [&[][..], &[("host", "localhost:8080")], &[auth]] {
            assert_eq!(closed.check(&headers(h), &Method::GET, None, local), Err(Refusal::Closed), "{h:?}");
        }
        // Cross-origin refusals still come first.
        assert!(matches!(
            closed.check(&headers(&[("sec-fetch-site", "cross-site")]), &Method::GET, None, local),
            Err(Refusal::CrossOrigin(_))
        ));
        let open = AdminGuard::new(&Settings { open_admin_api: true, ..Settings::default() });
        let check = |h: &[(&str, &str)]| open.check(&headers(h), &Method::GET, None, local).map(Pass::into_owned);
        assert_eq!(check(&[("host", "webhooks.example.com")]), Err(Refusal::BadHost));
        assert_eq!(check(&[("host", "localhost:8080"), ("origin", "http://localhost:8080")]), Ok(Pass::Admin));
        assert_eq!(check(&[]), Ok(Pass::Admin));
        assert_eq!(check(&[("host", "bad host")]), Err(Refusal::BadHost));
        assert_eq!(guard.check(&headers(&[auth, ("host", "bad host")]), &Method::GET, None, local), Ok(Pass::Admin));
    }

    #[test]
    fn tenant_shaped_tokens_pass_to_the_lookup() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let token = crate::tenants::ApiToken::generate().token;
        let bearer = format!("Bearer {token}");
        let h = headers(&[("authorization", bearer.as_str())]);
        let with_token = AdminGuard::new(&Settings { admin_token: Some("tok".into()), ..Settings::default() });
        assert_eq!(with_token.check(&h, &Method::GET, None, local), Ok(Pass::Presented(token.as_str())));
        let open = AdminGuard::new(&Settings { open_admin_api: true, ..Settings::default() });
        assert_eq!(open.check(&h, &Method::GET, None, local), Ok(Pass::Presented(token.as_str())));
        // A closed API stays closed; a value that is not tenant-shaped is a wrong admin token.
        assert_eq!(AdminGuard::new(&Settings::default()).check(&h, &Method::GET, None, local), Err(Refusal::Closed));
        let wrong = headers(&[("authorization", "Bearer swt_nope")]);
        assert_eq!(
            with_token.check(&wrong, &Method::GET, None, local),
            Err(Refusal::Unauthorized { token_given: true })
        );
    }
}
