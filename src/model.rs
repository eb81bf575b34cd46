//! Domain values shared by the store, the actors and the REST layer: ids, clocks, webhook
//! registrations and their validation, delivery statuses.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::catalog::{CatalogError, EventCatalog, Subscription};
use crate::retry::{RetryConfig, RetryConfigError};
use crate::signing::{SecretError, SigningKey, generate_secret};

pub mod address;

pub use address::{TargetPolicy, is_private_ip};

/// Milliseconds since the Unix epoch: the store's clock unit.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// A `SystemTime` in Unix milliseconds.
pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 with millisecond precision, the format of every API timestamp.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// A fresh event id: `evt_` + a time-ordered UUIDv7 in hex, so ids sort by creation.
pub fn new_event_id() -> String {
    format!("evt_{}", uuid::Uuid::now_v7().simple())
}

/// A fresh webhook id for `POST /v1/webhooks`.
pub fn new_webhook_id() -> String {
    format!("wh_{}", uuid::Uuid::now_v7().simple())
}

/// The id of the `seq`-th delivery of an event: the event's hex plus 8 hex digits.
///
/// Deriving it keeps ids time-ordered (the endpoint actors page backlog by id) and puts all
/// deliveries of an event in one key range, so no extra index on `event_id` is needed.
pub fn delivery_id(event_id: &str, seq: u32) -> String {
    let hex = event_id.strip_prefix("evt_").unwrap_or(event_id);
    // One per delivery on the publish path: written directly rather than through `format!`'s
    // padding machinery.
    let mut id = String::with_capacity(4 + hex.len() + 8);
    id.push_str("dlv_");
    id.push_str(hex);
    push_hex(&mut id, &seq.to_be_bytes());
    id
}

/// Appends `bytes` as lower-case hex, the form of every id's digits and of the seed's
/// `X-Webhook-Signature`.
pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The key range `[lo, hi)` holding every delivery of an event (see [`delivery_id`]).
pub fn delivery_id_range(event_id: &str) -> (String, String) {
    let hex = event_id.strip_prefix("evt_").unwrap_or(event_id);
    (format!("dlv_{hex}"), format!("dlv_{hex}g"))
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet delivered; an attempt is due now or later.
    Pending,
    /// A 2xx was received.
    Success,
    /// Given up: attempts exhausted, a non-retryable answer, or the endpoint disabled or deleted.
    Failed,
}

impl DeliveryStatus {
    /// The stored and serialized name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a status filter; `succeeded` and `delivered` are accepted for `success`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "success" | "succeeded" | "delivered" => Some(Self::Success),
            "failed" | "failure" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A webhook registration as submitted: the body of `POST /v1/webhooks` and `PUT /v1/webhooks/{id}`,
/// and what the seed's `WEBHOOK_URLS` environment registry produces.
///
/// Unknown fields are refused (`deny_unknown_fields`): a misspelt `evnts` would otherwise register
/// a webhook for every event type.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookSpec {
    /// Target URL, `http` or `https`.
    pub url: String,
    /// `whsec_…` or a plain string; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Subscribed event types; absent (or `null`) or containing `"*"` means all. An empty list is
    /// refused: it reads as "none" but used to mean "all".
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Extra headers sent with every attempt; they may not override the signed ones.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Retry schedule; absent fields take the seed's defaults.
    #[serde(default)]
    pub retry_config: Option<RetryConfig>,
    /// Free text for admins.
    #[serde(default)]
    pub description: Option<String>,
    /// Concurrent attempts to this endpoint (default from settings, 16).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    // ----- tenants part -----
    /// The tenant (a Servio venue) the webhook belongs to: it receives that tenant's events and
    /// untenanted ones. `None`: it receives only untenanted events. See [`validate_tenant`].
    #[serde(default)]
    pub tenant: Option<String>,
    // ----- pacing -----
    /// Attempts per second to this endpoint (a token bucket), more than 0 and at most
    /// [`spec_limits::RATE_LIMIT_PER_SECOND`]; absent or `null`: no limit.
    #[serde(default)]
    pub rate_limit_per_second: Option<f64>,
    /// One attempt at a time, in publish order (absent: `false`).
    #[serde(default)]
    pub ordered: Option<bool>,
    // ----- end pacing -----
}

/// A stored webhook registration.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRecord {
    /// Caller-chosen or generated id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Signing secret, as given or generated.
    pub secret: String,
    /// Subscribed types; `None` means all.
    pub events: Option<Vec<String>>,
    /// Custom headers.
    pub headers: BTreeMap<String, String>,
    /// Effective retry schedule.
    pub retry_config: RetryConfig,
    /// Per-endpoint concurrency override.
    pub max_in_flight: Option<u32>,
    // ----- pacing -----
    /// Attempts per second to this endpoint; `None`: no limit.
    pub rate_limit_per_second: Option<f64>,
    /// One attempt at a time, in publish order.
    pub ordered: bool,
    // ----- end pacing -----
    /// Free text.
    pub description: Option<String>,
    /// When the endpoint was disabled (410 Gone or failing too long), if it is.
    pub disabled_at_ms: Option<i64>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Creation time (kept across replacements).
    pub created_at_ms: i64,
    /// Last registration change.
    pub updated_at_ms: i64,
    /// Registry revision of the last change (disable included), set by the store: tells a newer
    /// copy of a registration from an older one on every node. Ignored on write.
    pub revision: u64,
    // ----- tenants part -----
    /// The tenant it belongs to (see [`WebhookSpec::tenant`]).
    pub tenant: Option<String>,
    // ----- lifecycle: secret rotation -----
    /// The secret before the last rotation: it signs too, beside `secret`, until
    /// `previous_secret_until_ms`.
    pub previous_secret: Option<String>,
    /// End of the rotation's overlap window, Unix ms.
    pub previous_secret_until_ms: Option<i64>,
}

impl WebhookRecord {
    /// The registration as a spec (without its secret): what `PATCH` applies a merge patch to.
    /// Every field of [`WebhookSpec`] but the secret is filled from the record, so a field added to
    /// both is patchable as soon as it is here.
    pub fn to_spec(&self) -> WebhookSpec {
        WebhookSpec {
            url: self.url.clone(),
            secret: None,
            events: self.events.clone(),
            headers: (!self.headers.is_empty()).then(|| self.headers.clone()),
            retry_config: Some(self.retry_config),
            description: self.description.clone(),
            max_in_flight: self.max_in_flight,
            tenant: self.tenant.clone(),
            rate_limit_per_second: self.rate_limit_per_second,
            ordered: self.ordered.then_some(true),
        }
    }

    /// The previous secret while its overlap window is open at `now_ms`.
    pub fn previous_secret_at(&self, now_ms: i64) -> Option<&str> {
        match (&self.previous_secret, self.previous_secret_until_ms) {
            (Some(s), Some(until)) if now_ms < until => Some(s),
            _ => None,
        }
    }
}

/// Why a registration was refused; each maps to a 400 with its own error code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// Not an absolute http(s) URL, or too long.
    #[error("invalid url: {0}")]
    Url(String),
    /// A loopback, private, link-local or other non-public target the policy does not allow.
    #[error(
        "url targets a non-public address ({0}); an operator can allow it with \
         WEBHOOKS_ALLOWED_PRIVATE_CIDRS (Settings::allowed_private_cidrs when embedded) or \
         WEBHOOKS_ALLOW_PRIVATE_TARGETS=true (Settings::allow_private_targets)"
    )]
    PrivateTarget(String),
    /// Unusable secret.
    #[error("invalid secret: {0}")]
    Secret(#[from] SecretError),
    /// Subscription to an unknown or malformed event type.
    #[error(transparent)]
    Events(#[from] CatalogError),
    /// Bad retry config.
    #[error("invalid retryConfig: {0}")]
    Retry(#[from] RetryConfigError),
    /// A header that is malformed or would override a signed header.
    #[error("invalid header: {0}")]
    Header(String),
    /// Something else out of range.
    #[error("{0}")]
    Invalid(String),
}

/// Limits on registration fields.
pub mod spec_limits {
    /// Longest accepted URL.
    pub const URL_LEN: usize = 2048;
    /// Longest description.
    pub const DESCRIPTION_LEN: usize = 1024;
    /// Most custom headers.
    pub const HEADERS: usize = 32;
    /// Highest per-endpoint concurrency.
    pub const MAX_IN_FLIGHT: u32 = 1024;
    /// Longest caller-chosen id.
    pub const ID_LEN: usize = 128;
    /// Longest secret, in characters.
    pub const SECRET_LEN: usize = 512;
    /// Longest tenant name (tenants part).
    pub const TENANT_LEN: usize = 128;
    /// Highest `rateLimitPerSecond` (pacing).
    pub const RATE_LIMIT_PER_SECOND: f64 = 10_000.0;
}

/// Headers a webhook's custom headers may not set: the ones the sender owns (framing, the
/// signature, the seed's `X-Webhook-*`), hop-by-hop headers (RFC 9110 §7.6.1, plus the
/// non-standard `keep-alive` and `proxy-connection`), `content-encoding` (the body is sent as is),
/// `expect`, and credentials: `authorization`, `proxy-authorization` and `cookie` would be stored
/// with the registration and shown in every `GET` of it; receivers authenticate the sender by the
/// signature instead.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "user-agent",
    "host",
    "expect",
    "authorization",
    "proxy-authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-webhook-id",
    "x-webhook-event",
    "x-webhook-timestamp",
    "x-webhook-signature",
];

/// Whether a custom header name is one the sender owns or refuses (see `RESERVED_HEADERS`).
pub(crate) fn is_reserved_header(name: &str) -> bool {
    RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// Whether an idempotency key is usable: 1 to 255 visible ASCII characters, spaces allowed
/// inside but not at either end (the same rule for the body field and the header).
pub fn valid_idempotency_key(key: &str) -> bool {
    (1..=255).contains(&key.len())
        && key.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && !key.starts_with(' ')
        && !key.ends_with(' ')
}

/// Checks a caller-chosen webhook id: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_webhook_id(id: &str) -> Result<(), SpecError> {
    let ok = !id.is_empty()
        && id.len() <= spec_limits::ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "invalid webhook id `{id}`: use 1 to {} characters of letters, digits, `_`, `-`, `.`, `:`",
            spec_limits::ID_LEN
        )))
    }
}

/// Checks a tenant name (tenants part): 1 to 128 characters of `[A-Za-z0-9._:-]`.
pub fn validate_tenant(tenant: &str) -> Result<(), SpecError> {
    if valid_tenant(tenant) {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "invalid tenant `{}`: use 1 to {} characters of letters, digits, `.`, `_`, `:`, `-`",
            tenant.escape_debug(),
            spec_limits::TENANT_LEN
        )))
    }
}

/// Whether a tenant name is 1 to 128 characters of `[A-Za-z0-9._:-]` (tenants part).
pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= spec_limits::TENANT_LEN
        && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Parses and checks a target URL. Literal addresses the policy refuses (see [`address`]) and
/// `localhost` names are refused here; names resolving to refused addresses are refused when
/// the connection is made.
pub fn validate_url(raw: &str, policy: &TargetPolicy) -> Result<url::Url, SpecError> {
    if raw.len() > spec_limits::URL_LEN {
        return Err(SpecError::Url(format!("longer than {} characters", spec_limits::URL_LEN)));
    }
    check_url(raw, policy)
}

/// [`validate_url`] without the length limit: for a registration's stored URL, kept as it is
/// (its normalized form, percent-encoding included, may be longer than what was given).
pub(crate) fn check_url(raw: &str, policy: &TargetPolicy) -> Result<url::Url, SpecError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| SpecError::Url(format!("{e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(SpecError::Url(format!("scheme must be http or https, not `{}`", url.scheme())));
    }
    let Some(host) = url.host() else {
        return Err(SpecError::Url("missing host".into()));
    };
    let refused = match host {
        url::Host::Ipv4(ip) => policy.check(ip.into()).err().map(|why| why.to_string()),
        url::Host::Ipv6(ip) => policy.check(ip.into()).err().map(|why| why.to_string()),
        url::Host::Domain(d) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            let local = d == "localhost" || d.ends_with(".localhost");
            (local && !policy.allows_localhost())
                .then(|| "`localhost` names resolve to loopback (RFC 6761)".to_string())
        }
    };
    if let Some(why) = refused {
        return Err(SpecError::PrivateTarget(format!("{host}: {why}")));
    }
    Ok(url)
}

impl WebhookSpec {
    /// Validates the spec and turns it into a record for `id`. `existing` is the registration being
    /// replaced: its secret and creation time are kept when the spec does not give a secret.
    pub fn into_record(
        self,
        id: String,
        catalog: &EventCatalog,
        policy: &TargetPolicy,
        existing: Option<&WebhookRecord>,
    ) -> Result<WebhookRecord, SpecError> {
        validate_webhook_id(&id)?;
        let url = match existing {
            Some(e) if e.url == self.url => check_url(&self.url, policy)?,
            _ => validate_url(&self.url, policy)?,
        };
        // A rotation's previous secret keeps signing while the secret stays; a new one given
        // here replaces the key at once.
        let (secret, previous_secret, previous_secret_until_ms) = match (self.secret, existing) {
            (Some(s), _) => (validate_secret(s)?, None, None),
            (None, Some(e)) => (e.secret.clone(), e.previous_secret.clone(), e.previous_secret_until_ms),
            (None, None) => (generate_secret(), None, None),
        };
        if self.events.as_ref().is_some_and(Vec::is_empty) {
            return Err(SpecError::Invalid(
                "events is empty: omit it (or use [\"*\"]) to subscribe to every event type, or list the types".into(),
            ));
        }
        // Every name must be a known type or wildcard, `"*"` among them or not.
        for name in self.events.iter().flatten().filter(|e| *e != "*") {
            catalog.resolve_entry(name)?;
        }
        if let Some(t) = &self.tenant {
            validate_tenant(t)?;
        }
        let events = match catalog.subscription(self.events.as_deref())? {
            Subscription::All => None,
            Subscription::Only(names) => Some(names.iter().map(|n| n.to_string()).collect()),
        };
        let headers = self.headers.unwrap_or_default();
        validate_headers(&headers)?;
        let retry_config = self.retry_config.unwrap_or_default();
        retry_config.validate()?;
        if let Some(n) = self.max_in_flight
            && (n == 0 || n > spec_limits::MAX_IN_FLIGHT)
        {
            return Err(SpecError::Invalid(format!("maxInFlight must be from 1 to {}", spec_limits::MAX_IN_FLIGHT)));
        }
        validate_rate_limit(self.rate_limit_per_second)?;
        if let Some(d) = &self.description
            && d.chars().count() > spec_limits::DESCRIPTION_LEN
        {
            return Err(SpecError::Invalid(format!(
                "description is longer than {} characters",
                spec_limits::DESCRIPTION_LEN
            )));
        }
        let now = now_ms();
        Ok(WebhookRecord {
            id,
            url: url.to_string(),
            secret,
            events,
            headers,
            retry_config,
            max_in_flight: self.max_in_flight,
            rate_limit_per_second: self.rate_limit_per_second,
            ordered: self.ordered.unwrap_or(false),
            description: self.description,
            disabled_at_ms: None,
            disabled_reason: None,
            created_at_ms: existing.map(|e| e.created_at_ms).unwrap_or(now),
            updated_at_ms: now,
            revision: 0,
            tenant: self.tenant,
            previous_secret,
            previous_secret_until_ms,
        })
    }
}

/// Checks `rateLimitPerSecond` (pacing): a finite number above 0 and at most
/// [`spec_limits::RATE_LIMIT_PER_SECOND`], or none.
pub fn validate_rate_limit(rate: Option<f64>) -> Result<(), SpecError> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0 && r <= spec_limits::RATE_LIMIT_PER_SECOND) => {
            Err(SpecError::Invalid(format!(
                "rateLimitPerSecond must be a number above 0 and at most {} (or null for no limit), not {r}",
                spec_limits::RATE_LIMIT_PER_SECOND
            )))
        }
        _ => Ok(()),
    }
}

/// Checks a given secret (create, replace, rotation): at most 512 characters, a usable key.
pub fn validate_secret(s: String) -> Result<String, SpecError> {
    if s.chars().count() > spec_limits::SECRET_LEN {
        return Err(SpecError::Invalid(format!("secret is longer than {} characters", spec_limits::SECRET_LEN)));
    }
    SigningKey::from_secret(&s)?;
    Ok(s)
}

fn validate_headers(headers: &BTreeMap<String, String>) -> Result<(), SpecError> {
    if headers.len() > spec_limits::HEADERS {
        return Err(SpecError::Header(format!("at most {} custom headers", spec_limits::HEADERS)));
    }
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(SpecError::Header(format!(
                "`{name}` cannot be set: it is owned by the sender, hop-by-hop, or a credential"
            )));
        }
        http::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| SpecError::Header(format!("`{name}` is not a valid header name")))?;
        http::header::HeaderValue::from_str(value)
            .map_err(|_| SpecError::Header(format!("value of `{name}` is not a valid header value")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str) -> WebhookSpec {
        WebhookSpec { url: url.into(), ..Default::default() }
    }

    #[test]
    fn ids_sort_by_time_and_deliveries_share_their_events_range() {
        let a = new_event_id();
        let b = new_event_id();
        assert!(a < b);
        let (lo, hi) = delivery_id_range(&a);
        for seq in [0, 1, 255, u32::MAX] {
            let d = delivery_id(&a, seq);
            assert!(d >= lo && d < hi, "{d}");
        }
        assert!(delivery_id(&a, 1) < delivery_id(&a, 2));
        assert!(delivery_id(&a, u32::MAX) < delivery_id(&b, 0));
        for seq in [0, 9, 10, 0xabc, 0x8000_0001, u32::MAX] {
            assert_eq!(delivery_id("evt_0123", seq), format!("dlv_0123{seq:08x}"));
        }
        assert_eq!(delivery_id("legacy", 1), "dlv_legacy00000001", "an id without the prefix is kept whole");
    }

    #[test]
    fn urls_must_be_public_http_unless_allowed() {
        let strict = TargetPolicy::default();
        assert!(validate_url("https://example.com/hook", &strict).is_ok());
        assert!(matches!(validate_url("ftp://example.com", &strict), Err(SpecError::Url(_))));
        assert!(matches!(validate_url("not a url", &strict), Err(SpecError::Url(_))));
        for private in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://LOCALHOST./x",
            "http://api.localhost/x",
            "http://10.1.2.3/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://192.168.0.1",
            "http://100.64.0.1",
            "http://[::127.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[2001::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://224.0.0.1/",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
            "http://192.0.0.8/",
            "http://0x7f.1/",
            "http://2130706433/",
        ] {
            let err = validate_url(private, &strict).unwrap_err();
            assert!(matches!(err, SpecError::PrivateTarget(_)), "{private}: {err}");
            assert!(err.to_string().contains("WEBHOOKS_ALLOWED_PRIVATE_CIDRS"), "{err}");
            assert!(validate_url(private, &true.into()).is_ok(), "{private}");
        }
        for public in
            ["http://8.8.8.8/", "http://[2606:4700::1111]/", "http://[::ffff:8.8.8.8]/", "http://[64:ff9b::808:808]/"]
        {
            assert!(validate_url(public, &strict).is_ok(), "{public}");
        }
        // The operator's allowed blocks let matching literals (and localhost, when loopback is
        // allowed) through, and nothing else.
        let internal =
            TargetPolicy { allow_private: false, allowed: vec![address::parse_cidr("10.1.0.0/16").unwrap()] };
        assert!(validate_url("http://10.1.2.3/", &internal).is_ok());
        assert!(validate_url("http://10.2.0.1/", &internal).is_err());
        assert!(validate_url("http://localhost/", &internal).is_err());
        let loopback =
            TargetPolicy { allow_private: false, allowed: vec![address::parse_cidr("127.0.0.0/8").unwrap()] };
        assert!(validate_url("http://localhost:9000/", &loopback).is_ok());
        assert!(validate_url("http://127.0.0.2/", &loopback).is_ok());
    }

    #[test]
    fn credential_and_hop_by_hop_headers_are_refused() {
        let c = EventCatalog::default();
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "Connection",
            "keep-alive",
            "TE",
            "trailer",
            "Upgrade",
            "proxy-connection",
            "Transfer-Encoding",
            "content-encoding",
            "Host",
            "expect",
            "content-length",
            "x-webhook-signature",
        ] {
            let mut s = spec("https://example.com");
            s.headers = Some(BTreeMap::from([(name.to_string(), "x".to_string())]));
            let err = s.into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap_err();
            assert!(matches!(err, SpecError::Header(_)), "{name}: {err}");
        }
        let mut s = spec("https://example.com");
        s.headers =
            Some(BTreeMap::from([("X-Tenant".into(), "servio-1".into()), ("X-Api-Version".into(), "2".into())]));
        assert!(s.into_record("a".into(), &c, &TargetPolicy::default(), None).is_ok());
    }

    #[test]
    fn specs_are_validated_into_records() {
        let c = EventCatalog::default();
        let r = spec("https://example.com").into_record("wh_1".into(), &c, &TargetPolicy::default(), None).unwrap();
        assert!(r.secret.starts_with("whsec_"));
        assert_eq!(r.events, None);
        assert_eq!(r.retry_config, RetryConfig::default());

        let mut s = spec("https://example.com");
        s.headers = Some(BTreeMap::from([("Webhook-Signature".into(), "x".into())]));
        assert!(matches!(s.into_record("a".into(), &c, &TargetPolicy::default(), None), Err(SpecError::Header(_))));

        let mut s = spec("https://example.com");
        s.events = Some(vec!["order.nope".into()]);
        assert!(matches!(s.into_record("a".into(), &c, &TargetPolicy::default(), None), Err(SpecError::Events(_))));

        let mut s = spec("https://example.com");
        s.events = Some(vec!["*".into(), "order.nope".into()]);
        assert!(matches!(s.into_record("a".into(), &c, &TargetPolicy::default(), None), Err(SpecError::Events(_))));

        let mut s = spec("https://example.com");
        s.events = Some(vec![]);
        let err = s.into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap_err();
        assert!(matches!(&err, SpecError::Invalid(m) if m.contains(r#"["*"]"#)), "{err}");

        // Unknown fields are refused, naming the field.
        let err = serde_json::from_str::<WebhookSpec>(r#"{"url":"https://example.com","evnts":[]}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `evnts`"), "{err}");

        let mut s = spec("https://example.com");
        s.secret = Some("whsec_".into());
        assert!(matches!(s.into_record("a".into(), &c, &TargetPolicy::default(), None), Err(SpecError::Secret(_))));

        let mut s = spec("https://example.com");
        s.max_in_flight = Some(0);
        assert!(s.into_record("a".into(), &c, &TargetPolicy::default(), None).is_err());

        assert!(spec("https://example.com").into_record("bad id".into(), &c, &TargetPolicy::default(), None).is_err());
    }

    #[test]
    fn replacing_keeps_the_secret_unless_given() {
        let c = EventCatalog::default();
        let first = spec("https://example.com").into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap();
        let again =
            spec("https://example.org").into_record("a".into(), &c, &TargetPolicy::default(), Some(&first)).unwrap();
        assert_eq!(again.secret, first.secret);
        assert_eq!(again.created_at_ms, first.created_at_ms);
        let mut s = spec("https://example.org");
        s.secret = Some("plain-secret".into());
        assert_eq!(
            s.into_record("a".into(), &c, &TargetPolicy::default(), Some(&first)).unwrap().secret,
            "plain-secret"
        );
    }

    #[test]
    fn tenants_and_wildcards_are_checked() {
        let c = EventCatalog::default();
        let mut s = spec("https://example.com");
        s.tenant = Some("venue-1:A.b_c".into());
        s.events = Some(vec!["order.*".into(), "inventory.low".into()]);
        let r = s.into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap();
        assert_eq!(r.tenant.as_deref(), Some("venue-1:A.b_c"));
        assert_eq!(r.events, Some(vec!["order.*".to_string(), "inventory.low".to_string()]));
        for bad in ["", "a b", "ä", "a/b", &"x".repeat(129)] {
            let mut s = spec("https://example.com");
            s.tenant = Some(bad.to_string());
            let err = s.into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap_err();
            assert!(matches!(&err, SpecError::Invalid(m) if m.contains("tenant")), "{bad}: {err}");
        }
        assert!(valid_tenant(&"x".repeat(128)));
        let mut s = spec("https://example.com");
        s.events = Some(vec!["foo.*".into()]);
        assert!(matches!(
            s.into_record("a".into(), &c, &TargetPolicy::default(), None),
            Err(SpecError::Events(CatalogError::UnknownPattern(_)))
        ));
    }

    #[test]
    fn pacing_fields_are_validated_and_default_to_no_limit_unordered() {
        let c = EventCatalog::default();
        let p = TargetPolicy::default();
        let r = spec("https://example.com").into_record("a".into(), &c, &p, None).unwrap();
        assert_eq!((r.rate_limit_per_second, r.ordered), (None, false));
        let mut s = spec("https://example.com");
        s.rate_limit_per_second = Some(0.5);
        s.ordered = Some(true);
        let r = s.into_record("a".into(), &c, &p, None).unwrap();
        assert_eq!((r.rate_limit_per_second, r.ordered), (Some(0.5), true));
        for bad in [0.0, -1.0, 1e9, 10_000.5, f64::NAN, f64::INFINITY] {
            let mut s = spec("https://example.com");
            s.rate_limit_per_second = Some(bad);
            let err = s.into_record("a".into(), &c, &p, None).unwrap_err();
            assert!(err.to_string().contains("rateLimitPerSecond"), "{bad}: {err}");
        }
        assert!(validate_rate_limit(Some(spec_limits::RATE_LIMIT_PER_SECOND)).is_ok());
        assert!(validate_rate_limit(Some(1e-3)).is_ok());
    }

    #[test]
    fn a_record_as_spec_round_trips_and_keeps_a_rotation() {
        let c = EventCatalog::default();
        let mut s = spec("https://example.com");
        s.events = Some(vec!["order.created".into()]);
        s.headers = Some(BTreeMap::from([("X-A".into(), "1".into())]));
        s.description = Some("d".into());
        s.max_in_flight = Some(3);
        let mut first = s.into_record("a".into(), &c, &TargetPolicy::default(), None).unwrap();
        first.previous_secret = Some("old-secret".into());
        first.previous_secret_until_ms = Some(5_000);
        let json = serde_json::to_value(first.to_spec()).unwrap();
        assert!(json.get("secret").is_none(), "{json}");
        let again: WebhookSpec = serde_json::from_value(json).unwrap();
        let second = again.into_record("a".into(), &c, &TargetPolicy::default(), Some(&first)).unwrap();
        assert_eq!(
            WebhookRecord { updated_at_ms: first.updated_at_ms, ..second.clone() },
            first,
            "every field survives, the secret and the rotation included"
        );
        assert_eq!(first.previous_secret_at(4_999), Some("old-secret"));
        assert_eq!(first.previous_secret_at(5_000), None, "the overlap is over");
        // A secret given in a spec replaces the key at once: no overlap.
        let mut s = spec("https://example.com");
        s.secret = Some("new-plain-secret".into());
        let third = s.into_record("a".into(), &c, &TargetPolicy::default(), Some(&first)).unwrap();
        assert_eq!((third.secret.as_str(), third.previous_secret), ("new-plain-secret", None));
        assert!(matches!(validate_secret("x".repeat(513)), Err(SpecError::Invalid(_))));
        assert!(matches!(validate_secret("whsec_".into()), Err(SpecError::Secret(_))));
    }

    #[test]
    fn a_kept_url_is_not_held_to_the_length_of_a_given_one() {
        let c = EventCatalog::default();
        let p = TargetPolicy::default();
        // 2040 bytes given; its normalized form percent-encodes the quotes, past 2048.
        let raw = format!("https://example.com/{}", "\"".repeat(2020));
        let first = spec(&raw).into_record("a".into(), &c, &p, None).unwrap();
        assert!(first.url.len() > spec_limits::URL_LEN, "{}", first.url.len());
        let again = spec(&first.url).into_record("a".into(), &c, &p, Some(&first)).unwrap();
        assert_eq!(again.url, first.url);
        assert!(matches!(spec(&first.url).into_record("b".into(), &c, &p, None), Err(SpecError::Url(_))));
    }

    #[test]
    fn status_filters_accept_aliases() {
        assert_eq!(DeliveryStatus::parse("succeeded"), Some(DeliveryStatus::Success));
        assert_eq!(DeliveryStatus::parse("pending"), Some(DeliveryStatus::Pending));
        assert_eq!(DeliveryStatus::parse("nope"), None);
    }
}
