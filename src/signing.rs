//! Standard Webhooks signing (symmetric `v1`) and the seed's hex body signature.
//!
//! The sender signs every attempt afresh (the timestamp is the attempt's), so a receiver can reject
//! replays older than its tolerance while deduplicating on the stable `webhook-id`. [`verify`] is
//! what a Rust receiver calls; it follows the reference libraries: all three headers required,
//! ±5 minutes of tolerance, any matching `v1` token accepted, constant-time comparison.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::block_api::HmacCore;
use hmac::digest::block_api::CoreProxy;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Prefix of Standard Webhooks secrets; what follows it is the base64 key.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a `webhook-timestamp` may be from now before [`verify`] rejects it (the spec's 5 minutes).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Header names on the wire. Standard Webhooks first, then the seed's names kept for existing consumers.
pub mod headers {
    /// Stable message id (the event id), the receiver's deduplication key.
    pub const WEBHOOK_ID: &str = "webhook-id";
    /// Unix seconds of this attempt.
    pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
    /// `v1,<base64>` tokens, space separated.
    pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";
    /// Seed: event id.
    pub const X_WEBHOOK_ID: &str = "x-webhook-id";
    /// Seed: event type.
    pub const X_WEBHOOK_EVENT: &str = "x-webhook-event";
    /// Seed: the payload's RFC 3339 timestamp.
    pub const X_WEBHOOK_TIMESTAMP: &str = "x-webhook-timestamp";
    /// Seed: hex HMAC-SHA256 of the exact body bytes.
    pub const X_WEBHOOK_SIGNATURE: &str = "x-webhook-signature";
}

/// Why a secret cannot be used as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// `whsec_` followed by nothing, or an empty plain secret: HMAC with an empty key protects nothing.
    #[error("secret is empty")]
    Empty,
    /// `whsec_` followed by something that is not base64.
    #[error("secret after `whsec_` is not valid base64")]
    NotBase64,
}

/// The HMAC key behind a secret; parsed once per endpoint, not per attempt.
///
/// Holds the two key-derived SHA-256 states (inner and outer pad already hashed, 80 bytes), not a
/// whole `Hmac` with its 64-byte block buffer: every registered webhook keeps one, and a fleet of
/// idle ones pays for each byte. Signing starts from a copy of the states and an empty buffer.
#[derive(Clone)]
pub struct SigningKey {
    core: HmacCore<Sha256>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// `whsec_<base64>` decodes to the key bytes; anything else is used as raw key bytes, so the
    /// seed's plain-string secrets keep working.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let bytes = match secret.strip_prefix(SECRET_PREFIX) {
            Some(b64) => {
                let trimmed = b64.trim_end_matches('=');
                STANDARD_NO_PAD.decode(trimmed).map_err(|_| SecretError::NotBase64)?
            }
            None => secret.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(SecretError::Empty);
        }
        let core = HmacCore::<Sha256>::new_from_slice(&bytes).map_err(|_| SecretError::Empty)?;
        Ok(Self { core })
    }

    /// A MAC keyed with this key, ready for its message.
    fn mac(&self) -> HmacSha256 {
        HmacSha256::compose(self.core.clone(), Default::default())
    }

    fn mac_v1(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` token over `{msg_id}.{timestamp}.{body}`.
    pub fn sign_v1(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac_v1(msg_id, timestamp, body).finalize().into_bytes();
        let mut out = String::with_capacity(3 + 44);
        out.push_str("v1,");
        STANDARD.encode_string(tag, &mut out);
        out
    }

    /// The seed's `X-Webhook-Signature`: lowercase hex HMAC-SHA256 of the body alone.
    pub fn sign_body_hex(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        let mut hex = String::new();
        crate::model::push_hex(&mut hex, &mac.finalize().into_bytes());
        hex
    }

    fn verify_v1_token(&self, msg_id: &str, timestamp: i64, body: &[u8], b64: &str) -> bool {
        let Ok(tag) = STANDARD.decode(b64) else {
            return false;
        };
        self.mac_v1(msg_id, timestamp, body).verify_slice(&tag).is_ok()
    }
}

/// A new random secret in Standard Webhooks form (`whsec_` + 24 random bytes, base64).
pub fn generate_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header value for one or more keys (several during a secret rotation).
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut out = String::with_capacity(keys.len() * 48);
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&key.sign_v1(msg_id, timestamp, body));
    }
    out
}

/// Why a request failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The secret itself is unusable.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// `webhook-id`, `webhook-timestamp` or `webhook-signature` is absent.
    #[error("missing header `{0}`")]
    MissingHeader(&'static str),
    /// `webhook-timestamp` is not an integer.
    #[error("invalid webhook-timestamp")]
    InvalidTimestamp,
    /// The timestamp is older than the tolerance: possibly a replay.
    #[error("message timestamp too old")]
    TooOld,
    /// The timestamp is further in the future than the tolerance.
    #[error("message timestamp too new")]
    TooNew,
    /// No `v1` token matched.
    #[error("no matching signature")]
    NoMatch,
}

/// Verifies a received webhook the way the Standard Webhooks reference libraries do.
///
/// `header` looks up a header by its lowercase name, so any HTTP library's header map fits:
/// `|name| req.headers().get(name).and_then(|v| v.to_str().ok())`.
pub fn verify<'a>(secret: &str, header: impl Fn(&str) -> Option<&'a str>, body: &[u8]) -> Result<(), VerifyError> {
    verify_at(secret, header, body, SystemTime::now(), DEFAULT_TOLERANCE)
}

/// [`verify`] with an explicit clock and tolerance, for tests and for receivers with other policies.
pub fn verify_at<'a>(
    secret: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), VerifyError> {
    let key = SigningKey::from_secret(secret)?;
    let msg_id = header(headers::WEBHOOK_ID).ok_or(VerifyError::MissingHeader(headers::WEBHOOK_ID))?;
    let ts_raw = header(headers::WEBHOOK_TIMESTAMP).ok_or(VerifyError::MissingHeader(headers::WEBHOOK_TIMESTAMP))?;
    let sigs = header(headers::WEBHOOK_SIGNATURE).ok_or(VerifyError::MissingHeader(headers::WEBHOOK_SIGNATURE))?;
    let ts: i64 = ts_raw.trim().parse().map_err(|_| VerifyError::InvalidTimestamp)?;
    let now_s = unix_seconds(now);
    let tol = tolerance.as_secs() as i64;
    if now_s - ts > tol {
        return Err(VerifyError::TooOld);
    }
    if ts > now_s + tol {
        return Err(VerifyError::TooNew);
    }
    let matched = sigs
        .split(' ')
        .filter_map(|token| token.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .any(|(_, sig)| key.verify_v1_token(msg_id, ts, body, sig));
    if matched { Ok(()) } else { Err(VerifyError::NoMatch) }
}

/// Seconds since the Unix epoch (0 for clocks before it).
pub fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Vector {
        secret: &'static str,
        msg_id: &'static str,
        ts: i64,
        payload: &'static str,
        expected: &'static str,
    }

    const TV1: Vector = Vector {
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id: "msg_p5jXN8AQM9LWM0D4loKWxJek",
        ts: 1614265330,
        payload: r#"{"test": 2432232314}"#,
        expected: "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    };
    const TV2: Vector = Vector {
        secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        msg_id: "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
        ts: 1649367553,
        payload: r#"{"email":"test@example.com","username":"test_user"}"#,
        expected: "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
    };

    fn at(ts: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(ts as u64)
    }

    fn check(v: &Vector, sig: &str, now: SystemTime) -> Result<(), VerifyError> {
        let ts = v.ts.to_string();
        let lookup = |name: &str| match name {
            headers::WEBHOOK_ID => Some(v.msg_id),
            headers::WEBHOOK_TIMESTAMP => Some(ts.as_str()),
            headers::WEBHOOK_SIGNATURE => Some(sig),
            _ => None,
        };
        verify_at(v.secret, lookup, v.payload.as_bytes(), now, DEFAULT_TOLERANCE)
    }

    /// The key keeps the two key-derived hash states only: a fleet of idle webhooks holds one each.
    #[test]
    fn a_signing_key_is_its_two_hash_states() {
        assert!(std::mem::size_of::<SigningKey>() <= 80, "{}", std::mem::size_of::<SigningKey>());
    }

    #[test]
    fn signs_the_published_vectors() {
        for v in [&TV1, &TV2] {
            let key = SigningKey::from_secret(v.secret).unwrap();
            assert_eq!(key.sign_v1(v.msg_id, v.ts, v.payload.as_bytes()), v.expected);
        }
    }

    #[test]
    fn verifies_the_published_vectors() {
        for v in [&TV1, &TV2] {
            assert_eq!(check(v, v.expected, at(v.ts)), Ok(()));
        }
    }

    #[test]
    fn rejects_wrong_and_decoy_signatures() {
        let now = at(TV2.ts);
        assert_eq!(check(&TV2, "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=", now), Err(VerifyError::NoMatch));
        let decoys = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE=";
        assert_eq!(check(&TV2, decoys, now), Err(VerifyError::NoMatch));
        let with_valid = format!("{decoys} {} v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", TV2.expected);
        assert_eq!(check(&TV2, &with_valid, now), Ok(()));
        assert_eq!(check(&TV2, "v1,", now), Err(VerifyError::NoMatch));
        assert_eq!(check(&TV2, &TV2.expected[..20], now), Err(VerifyError::NoMatch));
        let tampered = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(check(&TV1, tampered, at(TV1.ts)), Err(VerifyError::NoMatch));
        // A valid signature under another version tag is ignored.
        let other_version = TV2.expected.replacen("v1,", "v2,", 1);
        assert_eq!(check(&TV2, &other_version, now), Err(VerifyError::NoMatch));
    }

    #[test]
    fn enforces_timestamp_tolerance() {
        assert_eq!(check(&TV2, TV2.expected, at(TV2.ts + 301)), Err(VerifyError::TooOld));
        assert_eq!(check(&TV2, TV2.expected, at(TV2.ts - 301)), Err(VerifyError::TooNew));
        assert_eq!(check(&TV2, TV2.expected, at(TV2.ts + 300)), Ok(()));
    }

    #[test]
    fn requires_all_three_headers() {
        let body = TV2.payload.as_bytes();
        let ts = TV2.ts.to_string();
        for missing in [headers::WEBHOOK_ID, headers::WEBHOOK_TIMESTAMP, headers::WEBHOOK_SIGNATURE] {
            let lookup = |name: &str| {
                if name == missing {
                    return None;
                }
                match name {
                    headers::WEBHOOK_ID => Some(TV2.msg_id),
                    headers::WEBHOOK_TIMESTAMP => Some(ts.as_str()),
                    headers::WEBHOOK_SIGNATURE => Some(TV2.expected),
                    _ => None,
                }
            };
            let err = verify_at(TV2.secret, lookup, body, at(TV2.ts), DEFAULT_TOLERANCE).unwrap_err();
            assert_eq!(err, VerifyError::MissingHeader(missing));
        }
    }

    #[test]
    fn rejects_empty_and_malformed_secrets() {
        assert_eq!(SigningKey::from_secret("whsec_").unwrap_err(), SecretError::Empty);
        assert_eq!(SigningKey::from_secret("").unwrap_err(), SecretError::Empty);
        assert_eq!(SigningKey::from_secret("whsec_!!!").unwrap_err(), SecretError::NotBase64);
    }

    #[test]
    fn plain_secrets_are_raw_key_bytes() {
        // RustCrypto README vector: key "my secret and secure key", message "input message".
        let key = SigningKey::from_secret("my secret and secure key").unwrap();
        assert_eq!(
            key.sign_body_hex(b"input message"),
            "97d2a569059bbcd8ead4444ff99071f4c01d005bcefe0d3567e1be628e5fdcd9"
        );
    }

    #[test]
    fn generated_secrets_round_trip() {
        let secret = generate_secret();
        assert!(secret.starts_with(SECRET_PREFIX));
        assert_ne!(secret, generate_secret());
        let key = SigningKey::from_secret(&secret).unwrap();
        let header = signature_header(&[key.clone(), key], "evt_1", 1_700_000_000, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        let ts = "1700000000";
        let lookup = |name: &str| match name {
            headers::WEBHOOK_ID => Some("evt_1"),
            headers::WEBHOOK_TIMESTAMP => Some(ts),
            headers::WEBHOOK_SIGNATURE => Some(header.as_str()),
            _ => None,
        };
        assert_eq!(verify_at(&secret, lookup, b"{}", at(1_700_000_000), DEFAULT_TOLERANCE), Ok(()));
    }
}

/// The receiver guide's Rust example compiles (`docs/receiving.md`).
#[cfg(doctest)]
#[doc = include_str!("../docs/receiving.md")]
pub struct ReceivingGuide;
