//! Tenants (Servio venues): the pure parts, free of HTTP and storage.
//!
//! - An event's default tenant: `data.venueId` when it is a string that is a valid tenant name
//!   ([`venue_id`]).
//! - Tenant-scoped API tokens: their format, generation, and the check of a presented token
//!   against the stored hash ([`ApiToken`], [`PresentedToken`]).
//!
//! A token reads `swt_<32 hex>_<43 base64url>`. The hex part is the token's id (`tok_<hex>`), so a
//! request finds its row by primary key; the base64url part is 256 random bits, of which the store
//! keeps only the SHA-256. The presented secret's digest is compared with the stored one in
//! constant time ([`PresentedToken::matches`]), so neither the secret nor how much of it was right
//! leaks through timing, and a stolen database does not hold usable tokens.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::valid_tenant;

/// What every tenant token starts with: tells it from the admin token without a lookup.
pub const TOKEN_PREFIX: &str = "swt_";
/// Hex digits of a token id.
const ID_HEX: usize = 32;
/// Random bytes of a token's secret part (256 bits).
const SECRET_BYTES: usize = 32;
/// Characters of the secret part: unpadded base64url of [`SECRET_BYTES`].
const SECRET_CHARS: usize = 43;

/// The tenant an event's data names: `data.venueId` when it is a JSON string that is a valid
/// tenant name; `None` otherwise (absent, another type, an invalid name, or a repeated key).
///
/// Data without the literal text `venueId` is not parsed at all (the common case costs a substring
/// search); a key spelt with escapes (`"venue\u0049d"`) is therefore not read as one.
pub fn venue_id(data: &RawValue) -> Option<String> {
    if !data.get().contains("venueId") {
        return None;
    }
    #[derive(Deserialize)]
    struct Venue<'a> {
        #[serde(rename = "venueId", borrow)]
        venue_id: Option<&'a RawValue>,
    }
    let venue: Venue<'_> = serde_json::from_str(data.get()).ok()?;
    let raw = venue.venue_id?;
    let name: Cow<'_, str> = serde_json::from_str(raw.get()).ok()?;
    valid_tenant(&name).then(|| name.into_owned())
}

/// A newly minted token: what `POST /v1/tokens` shows once, and what is stored of it.
#[derive(Debug, Clone)]
pub struct ApiToken {
    /// `tok_<hex>`.
    pub id: String,
    /// The whole token, `swt_<hex>_<secret>`: shown once, never stored.
    pub token: String,
    /// SHA-256 of the secret part: what is stored.
    pub secret_hash: [u8; 32],
}

impl ApiToken {
    /// A fresh token with a time-ordered id and 256 random bits of secret.
    pub fn generate() -> Self {
        let hex = uuid::Uuid::now_v7().simple().to_string();
        let secret_bytes: [u8; SECRET_BYTES] = rand::random();
        let secret = URL_SAFE_NO_PAD.encode(secret_bytes);
        Self {
            id: format!("tok_{hex}"),
            token: format!("{TOKEN_PREFIX}{hex}_{secret}"),
            secret_hash: digest(secret.as_bytes()),
        }
    }
}

/// A bearer value that has the shape of a tenant token, split into the id it names and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    /// The id of the row to look up, `tok_<hex>`.
    pub id: String,
    secret: &'a str,
}

impl<'a> PresentedToken<'a> {
    /// Splits `swt_<32 lowercase hex>_<43 base64url>`; `None` for anything else.
    pub fn parse(bearer: &'a str) -> Option<Self> {
        let rest = bearer.strip_prefix(TOKEN_PREFIX)?;
        let (hex, secret) = (rest.get(..ID_HEX)?, rest.get(ID_HEX..)?.strip_prefix('_')?);
        let hex_ok = hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let secret_ok =
            secret.len() == SECRET_CHARS && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        (hex_ok && secret_ok).then(|| Self { id: format!("tok_{hex}"), secret })
    }

    /// Whether the secret's SHA-256 equals `stored`, compared in constant time.
    pub fn matches(&self, stored: &[u8]) -> bool {
        stored.len() == 32 && bool::from(digest(self.secret.as_bytes()).ct_eq(stored))
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn venue_id_is_the_default_tenant_when_it_is_a_valid_name() {
        assert_eq!(venue_id(&raw(r#"{"orderId":"o","venueId":"venue-7"}"#)).as_deref(), Some("venue-7"));
        assert_eq!(venue_id(&raw(r#"{"venueId":"v\u0031"}"#)).as_deref(), Some("v1"));
        for none in [
            r#"{"orderId":"o"}"#,
            r#"{"venueId":7}"#,
            r#"{"venueId":null}"#,
            r#"{"venueId":"has space"}"#,
            r#"{"venueId":""}"#,
            r#"{"venueId":"a","venueId":"b"}"#,
            r#"{"nested":{"venueId":"v"}}"#,
        ] {
            assert_eq!(venue_id(&raw(none)), None, "{none}");
        }
    }

    #[test]
    fn tokens_round_trip_and_only_their_secret_matches() {
        let t = ApiToken::generate();
        assert!(t.token.starts_with(TOKEN_PREFIX));
        assert_eq!(t.token.len(), TOKEN_PREFIX.len() + ID_HEX + 1 + SECRET_CHARS);
        let p = PresentedToken::parse(&t.token).unwrap();
        assert_eq!(p.id, t.id);
        assert!(p.matches(&t.secret_hash));
        assert!(!p.matches(&ApiToken::generate().secret_hash));
        assert!(!p.matches(&t.secret_hash[..31]));
        // Another secret under the same id does not match.
        let mut forged = t.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(!PresentedToken::parse(&forged).unwrap().matches(&t.secret_hash));
        assert_ne!(ApiToken::generate().token, t.token);
    }

    #[test]
    fn other_bearer_values_are_not_tenant_tokens() {
        let t = ApiToken::generate();
        let (head, secret) = t.token.split_at(TOKEN_PREFIX.len() + ID_HEX + 1);
        for bad in [
            "change-me".to_string(),
            "swt_".to_string(),
            t.token[..t.token.len() - 1].to_string(),
            format!("{}x", t.token),
            t.token.to_uppercase(),
            format!("{head}{}", secret.replace(|c: char| c.is_ascii_alphanumeric(), "+")),
            t.token.replacen("swt_", "swx_", 1),
            format!("swt_{}_{secret}", "g".repeat(32)),
            format!("swt_{}é_{secret}", "a".repeat(31)),
        ] {
            assert_eq!(PresentedToken::parse(&bad), None, "{bad}");
        }
    }
}
