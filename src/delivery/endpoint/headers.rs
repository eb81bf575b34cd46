//! An endpoint's registration pre-parsed for the hot path (target, signing keys, static headers),
//! and the headers of one attempt.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};

use crate::config::Settings;
use crate::delivery::Pending;
use crate::delivery::client::Target;
use crate::model::{WebhookRecord, check_url};
use crate::retry::RetryConfig;
use crate::signing::{self, SigningKey, signature_header};

const H_WEBHOOK_ID: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_ID);
const H_WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_TIMESTAMP);
const H_WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static(signing::headers::WEBHOOK_SIGNATURE);
const H_X_ID: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_ID);
const H_X_EVENT: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_EVENT);
const H_X_TIMESTAMP: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_TIMESTAMP);
const H_X_SIGNATURE: HeaderName = HeaderName::from_static(signing::headers::X_WEBHOOK_SIGNATURE);

/// An endpoint's registration, pre-parsed for the hot path (URL, keys, static headers).
#[derive(Debug)]
pub(crate) struct EndpointConfig {
    pub(crate) id: Arc<str>,
    pub(crate) target: Arc<Target>,
    /// The signing key (`None` only when the stored secret is unusable: `refused` says so).
    key: Option<SigningKey>,
    /// During a secret rotation: the previous key, signing beside the current one until the end
    /// of the overlap window (Unix ms). Boxed: rare, and a fleet of idle endpoints pays for
    /// every byte kept inline.
    previous: Option<Box<(SigningKey, i64)>>,
    /// The static headers: the node's [`base_headers`] itself when the registration adds none.
    headers: Arc<HeaderMap>,
    pub(crate) retry: RetryConfig,
    pub(crate) max_in_flight: usize,
    // ----- pacing -----
    /// Attempts per second; `None`: no limit.
    pub(crate) rate_limit_per_second: Option<f64>,
    /// One attempt at a time, in publish order.
    pub(crate) ordered: bool,
    /// Set when attempts must not go out (bad stored URL or secret, private target not allowed).
    refused: Option<String>,
}

/// The headers every attempt carries (content type, user agent): one map per node, shared by
/// every endpoint whose registration adds no headers of its own.
pub(crate) fn base_headers(settings: &Settings) -> Arc<HeaderMap> {
    let mut headers = HeaderMap::with_capacity(2);
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(ua) = HeaderValue::from_str(&settings.delivery.user_agent) {
        headers.insert(USER_AGENT, ua);
    }
    Arc::new(headers)
}

impl EndpointConfig {
    /// `base`: the node's [`base_headers`].
    pub(crate) fn from_record(r: &WebhookRecord, settings: &Settings, base: &Arc<HeaderMap>) -> Self {
        let mut refused = None;
        let placeholder =
            || Target::new(&url::Url::parse("http://invalid.invalid/").expect("static url")).expect("valid");
        // The stored URL, under today's target policy (an earlier version may have stored one
        // longer than the limit once normalized: it was accepted, so it is not refused for that).
        let target =
            match check_url(&r.url, &settings.target_policy()).map_err(|e| e.to_string()).and_then(|u| Target::new(&u))
            {
                Ok(t) => t,
                Err(e) => {
                    refused = Some(e);
                    placeholder()
                }
            };
        let key = match SigningKey::from_secret(&r.secret) {
            Ok(k) => Some(k),
            Err(e) => {
                refused.get_or_insert(format!("unusable secret: {e}"));
                None
            }
        };
        let previous = match (&r.previous_secret, r.previous_secret_until_ms) {
            (Some(secret), Some(until)) => SigningKey::from_secret(secret).ok().map(|k| Box::new((k, until))),
            _ => None,
        };
        // Registrations stored before a header was reserved keep it in the store; it is not sent.
        let own: Vec<(HeaderName, HeaderValue)> = r
            .headers
            .iter()
            .filter(|(k, _)| !crate::model::is_reserved_header(k))
            .filter_map(|(k, v)| Some((HeaderName::from_bytes(k.as_bytes()).ok()?, HeaderValue::from_str(v).ok()?)))
            .collect();
        let headers = if own.is_empty() {
            base.clone()
        } else {
            // Sized for what it holds: an idle endpoint should cost little memory (fleets of 100k).
            let mut headers = HeaderMap::with_capacity(base.len() + own.len());
            headers.extend(base.iter().map(|(k, v)| (k.clone(), v.clone())));
            for (name, value) in own {
                headers.insert(name, value);
            }
            Arc::new(headers)
        };
        Self {
            id: Arc::from(r.id.as_str()),
            target: Arc::new(target),
            key,
            previous,
            headers,
            retry: r.retry_config,
            max_in_flight: r.max_in_flight.unwrap_or(settings.delivery.max_in_flight).max(1) as usize,
            rate_limit_per_second: r.rate_limit_per_second,
            ordered: r.ordered,
            refused,
        }
    }

    /// The headers of one attempt started at `started`: the static ones plus id, timestamp
    /// and signatures (the current key's, then during a rotation's overlap window the previous
    /// key's); or why the attempt may not go out.
    pub(crate) fn attempt_headers(&self, p: &Pending, started: SystemTime) -> Result<HeaderMap, String> {
        let timestamp = signing::unix_seconds(started);
        if let Some(reason) = &self.refused {
            return Err(reason.clone());
        }
        let Some(key) = &self.key else { return Err("no usable signing secret".into()) };
        let env = &p.envelope;
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 8);
        for (name, value) in self.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        let mut signature = signature_header(std::slice::from_ref(key), &env.id, timestamp, &env.body);
        if let Some(previous) = &self.previous
            && crate::model::to_ms(started) < previous.1
        {
            signature.push(' ');
            signature.push_str(&previous.0.sign_v1(&env.id, timestamp, &env.body));
        }
        // The signature strings become the header values without a copy (`Bytes` takes the
        // allocation over); they are still checked.
        let hv = |s: String| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(s)).map_err(|e| format!("bad header value: {e}"))
        };
        headers.insert(H_WEBHOOK_ID, env.h_id.clone());
        headers.insert(H_WEBHOOK_TIMESTAMP, HeaderValue::from(timestamp));
        headers.insert(H_WEBHOOK_SIGNATURE, hv(signature)?);
        headers.insert(H_X_ID, env.h_id.clone());
        headers.insert(H_X_EVENT, env.h_event.clone());
        headers.insert(H_X_TIMESTAMP, env.h_timestamp.clone());
        headers.insert(H_X_SIGNATURE, hv(key.sign_body_hex(&env.body))?);
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::delivery::Envelope;
    use crate::signing::verify_at;

    const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NEW: &str = "whsec_bmV3LXNlY3JldC1mb3ItdGhlLXJvdGF0aW9u";

    fn record(previous_until_ms: Option<i64>) -> WebhookRecord {
        WebhookRecord {
            id: "w".into(),
            url: "https://example.com/hook".into(),
            secret: NEW.into(),
            events: None,
            headers: BTreeMap::new(),
            retry_config: RetryConfig::default(),
            max_in_flight: None,
            description: None,
            disabled_at_ms: None,
            disabled_reason: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            revision: 1,
            previous_secret: previous_until_ms.map(|_| OLD.to_string()),
            previous_secret_until_ms: previous_until_ms,
            tenant: None,
            rate_limit_per_second: None,
            ordered: false,
        }
    }

    fn config(r: &WebhookRecord) -> EndpointConfig {
        let settings = Settings::default();
        EndpointConfig::from_record(r, &settings, &base_headers(&settings))
    }

    fn pending() -> Pending {
        let body = bytes::Bytes::from_static(br#"{"id":"evt_1","event":"order.created","data":{},"timestamp":"t"}"#);
        let envelope = Arc::new(Envelope::new("evt_1", "order.created", "t", body, 0));
        Pending { id: "dlv_1".into(), envelope, attempts: 0, probes: 0, due_ms: 0 }
    }

    /// Which of the two secrets verify an attempt started at `at_ms`.
    fn verifying(r: &WebhookRecord, at_ms: u64) -> (bool, bool, usize) {
        let started = UNIX_EPOCH + Duration::from_millis(at_ms);
        let cfg = config(r);
        let p = pending();
        let h = cfg.attempt_headers(&p, started).unwrap();
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        let ok = |s: &str| verify_at(s, get, &p.envelope.body, started, Duration::from_secs(300)).is_ok();
        let tokens = get("webhook-signature").unwrap().split(' ').count();
        (ok(OLD), ok(NEW), tokens)
    }

    /// A URL accepted at registration is stored normalized, which can make it longer than the
    /// 2048 characters the API takes (percent-encoding); the endpoint must still send to it.
    #[test]
    fn a_stored_url_longer_than_the_given_limit_is_not_refused() {
        let mut r = record(None);
        r.url = url::Url::parse(&format!("https://example.com/{}", "\"".repeat(2020))).unwrap().to_string();
        assert!(r.url.len() > 2048, "{}", r.url.len());
        let cfg = config(&r);
        assert_eq!(cfg.refused, None);
    }

    #[test]
    fn endpoints_without_headers_of_their_own_share_the_node_s_map() {
        let settings = Settings::default();
        let base = base_headers(&settings);
        let plain = EndpointConfig::from_record(&record(None), &settings, &base);
        assert!(Arc::ptr_eq(&plain.headers, &base));
        let mut r = record(None);
        r.headers.insert("X-Venue".into(), "t4".into());
        r.headers.insert("webhook-id".into(), "stored before it was reserved".into());
        let own = EndpointConfig::from_record(&r, &settings, &base);
        assert!(!Arc::ptr_eq(&own.headers, &base));
        let h = own.attempt_headers(&pending(), UNIX_EPOCH + Duration::from_secs(1_700_000_000)).unwrap();
        assert_eq!(h["x-venue"], "t4");
        assert_eq!(h[CONTENT_TYPE], "application/json");
        assert_eq!(h[USER_AGENT], settings.delivery.user_agent.as_str());
        assert_eq!(h["webhook-id"], "evt_1", "a reserved header is not sent from the registration");
        assert_eq!(base.len(), 2, "the shared map is not changed");
    }

    #[test]
    fn the_previous_key_signs_until_the_overlap_ends() {
        let until = 1_700_000_000_500;
        assert_eq!(verifying(&record(Some(until)), 1_700_000_000_000), (true, true, 2), "during the overlap");
        assert_eq!(verifying(&record(Some(until)), 1_700_000_000_499), (true, true, 2));
        assert_eq!(verifying(&record(Some(until)), 1_700_000_000_500), (false, true, 1), "after it");
        assert_eq!(verifying(&record(None), 1_700_000_000_000), (false, true, 1), "no rotation");
        let cfg = config(&record(Some(until)));
        let p = pending();
        let h = cfg.attempt_headers(&p, UNIX_EPOCH + Duration::from_millis(1_700_000_000_000)).unwrap();
        let hex = SigningKey::from_secret(NEW).unwrap().sign_body_hex(&p.envelope.body);
        assert_eq!(h[H_X_SIGNATURE], hex.as_str(), "the seed's header uses the new key");
    }
}
