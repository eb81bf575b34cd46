//! A delivery id as an endpoint's window keys it: the 20 bytes its hex digits stand for, held
//! inline.
//!
//! The window touches its id maps several times per attempt (taken, held, finished, remembered
//! for a while, forgotten). Keyed by the id's text, each of those hashes and compares 44 bytes
//! behind a pointer, and remembering a finished delivery copies its id into a new allocation; the
//! oldest remembered ids are long out of cache when they are forgotten. Packed, a key is a plain
//! value: no allocation, no pointer to follow, half the bytes to hash.
//!
//! Ids minted here ([`crate::model::delivery_id`]) are `dlv_` and 40 lower-case hex digits; they
//! pack. Anything else (an id from an older version, a test's `"d1"`) is kept as text, so keys
//! are equal exactly when the ids are: only the lower-case form packs, so no two texts share a
//! packed key, and a packed key never equals a text one.

use std::fmt;

const PREFIX: &str = "dlv_";
const HEX_DIGITS: usize = 40;

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum DeliveryKey {
    /// `dlv_` and 40 lower-case hex digits, as bytes.
    Packed([u8; HEX_DIGITS / 2]),
    /// Any other id, as it is.
    Text(Box<str>),
}

impl DeliveryKey {
    /// The key of `id`.
    pub(crate) fn of(id: &str) -> Self {
        match pack(id) {
            Some(bytes) => Self::Packed(bytes),
            None => Self::Text(id.into()),
        }
    }

    /// The id the key was made from (a page request writes out every id its window holds).
    pub(crate) fn to_id(&self) -> String {
        match self {
            Self::Packed(bytes) => {
                let mut id = String::with_capacity(PREFIX.len() + HEX_DIGITS);
                id.push_str(PREFIX);
                crate::model::push_hex(&mut id, bytes);
                id
            }
            Self::Text(id) => id.to_string(),
        }
    }
}

fn pack(id: &str) -> Option<[u8; HEX_DIGITS / 2]> {
    let hex = id.strip_prefix(PREFIX)?.as_bytes();
    if hex.len() != HEX_DIGITS {
        return None;
    }
    let mut out = [0u8; HEX_DIGITS / 2];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// A lower-case hex digit's value (upper case does not pack: see the module documentation).
fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for DeliveryKey {
    /// The id the key was made from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Packed(_) => f.write_str(&self.to_id()),
            Self::Text(id) => f.write_str(id),
        }
    }
}

impl fmt::Debug for DeliveryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_pack_and_print_as_they_were() {
        let event = crate::model::new_event_id();
        for seq in [0, 1, 9, u32::MAX] {
            let id = crate::model::delivery_id(&event, seq);
            let key = DeliveryKey::of(&id);
            assert!(matches!(key, DeliveryKey::Packed(_)), "{id} packs");
            assert_eq!(key.to_string(), id);
        }
    }

    #[test]
    fn other_ids_are_kept_as_text() {
        let upper = format!("dlv_{}", "AB".repeat(20));
        let short = format!("dlv_{}", "ab".repeat(19));
        let long = format!("dlv_{}", "ab".repeat(21));
        let not_hex = format!("dlv_{}g", "a".repeat(39));
        for id in ["d1", "", "dlv_", upper.as_str(), short.as_str(), long.as_str(), not_hex.as_str()] {
            let key = DeliveryKey::of(id);
            assert!(matches!(key, DeliveryKey::Text(_)), "{id:?} stays text");
            assert_eq!(key.to_string(), id);
        }
    }

    #[test]
    fn keys_are_equal_exactly_when_ids_are() {
        let lower = format!("dlv_{}", "ab".repeat(20));
        let upper = format!("dlv_{}", "AB".repeat(20));
        let other = format!("dlv_{}", "ac".repeat(20));
        assert_eq!(DeliveryKey::of(&lower), DeliveryKey::of(&lower.clone()));
        assert_ne!(DeliveryKey::of(&lower), DeliveryKey::of(&upper), "case matters, as in the id");
        assert_ne!(DeliveryKey::of(&lower), DeliveryKey::of(&other));
        assert_ne!(DeliveryKey::of("d1"), DeliveryKey::of("d2"));
    }

    #[test]
    fn a_key_is_small() {
        assert!(std::mem::size_of::<DeliveryKey>() <= 24);
    }
}
