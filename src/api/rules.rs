//! The exact shapes the REST API accepts, twice: as the JSON Schema patterns the OpenAPI document
//! publishes, and as the checks the handlers run. Each pattern here and its check accept the same
//! strings; `tests/it/contract.rs` drives the server with values generated from the document
//! (schema-valid ones must be accepted, invalid ones refused) to keep them in step.
//!
//! The patterns are ECMA-262 regular expressions (what JSON Schema uses) without flags, so
//! case-insensitive parts are spelled out (`[Hh][Tt][Tt][Pp]`).

use std::net::Ipv6Addr;

/// Longest webhook URL.
pub const URL_LEN: usize = crate::model::spec_limits::URL_LEN;
/// Longest secret, in characters.
pub const SECRET_LEN: usize = crate::model::spec_limits::SECRET_LEN;
/// Longest custom header name.
pub const HEADER_NAME_LEN: usize = 256;
/// Longest custom header value.
pub const HEADER_VALUE_LEN: usize = 4096;
/// Longest cursor.
pub const CURSOR_LEN: usize = 512;
/// Longest idempotency key.
pub const IDEMPOTENCY_KEY_LEN: usize = 255;

/// A caller-chosen webhook id: 1 to 128 of `[A-Za-z0-9_.:-]`, but not `.` or `..` (which HTTP
/// clients turn into other paths).
pub const WEBHOOK_ID_PATTERN: &str = "^(?!\\.{1,2}$)[A-Za-z0-9_.:-]{1,128}$";

/// A tenant name (tenants part): 1 to 128 of `[A-Za-z0-9._:-]` (see [`crate::model::valid_tenant`]).
pub const TENANT_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

/// An event type name: two or more dot-separated segments of `[a-z0-9_-]`, at most 128 bytes.
pub const EVENT_NAME_PATTERN: &str = "^[a-z0-9_-]+(?:\\.[a-z0-9_-]+)+$";

/// An idempotency key: 1 to 255 visible ASCII characters, spaces allowed inside only.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~](?:[ -~]{0,253}[!-~])?$";

/// A cursor: canonical unpadded base64url (what `nextCursor` holds).
pub const CURSOR_PATTERN: &str = "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-][AQgw]|[A-Za-z0-9_-]{2}[AEIMQUYcgkosw048])?$";

/// A custom header value: no control characters but tab (what an HTTP field value may hold).
pub const HEADER_VALUE_PATTERN: &str = "^[^\\x00-\\x08\\x0A-\\x1F\\x7F]*$";

/// Free text without NUL (which PostgreSQL's text columns refuse).
pub const NO_NUL_PATTERN: &str = "^[^\\x00]*$";

/// A secret: `whsec_` and canonical base64 of at least one byte (padding optional), or any other
/// non-empty string without NUL that does not start with `whsec_`.
pub const SECRET_PATTERN: &str = "^(?:whsec_(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{4}|[A-Za-z0-9+/][AQgw]|\
     [A-Za-z0-9+/]{2}[AEIMQUYcgkosw048])=*|(?!whsec_)[^\\x00]+)$";

const HEX: &str = "[0-9A-Fa-f]{1,4}";
const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
const PORT: &str = "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
const LABEL: &str = "(?![Xx][Nn]--)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
const TOP_LABEL: &str = "(?![Xx][Nn]--)[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

/// A dotted-quad IPv4 address without leading zeros.
fn ipv4_pattern() -> String {
    format!("{OCTET}(?:\\.{OCTET}){{3}}")
}

/// Every textual IPv6 address (RFC 4291 §2.2) without a zone: eight groups, or six and an IPv4
/// address, with at most one `::` standing for one or more zero groups.
fn ipv6_pattern() -> String {
    let v4 = ipv4_pattern();
    let head = |a: usize| if a == 0 { String::new() } else { format!("{HEX}(?::{HEX}){{{}}}", a - 1) };
    let mut alternatives = vec![format!("(?:{HEX}:){{7}}{HEX}"), format!("(?:{HEX}:){{6}}{v4}")];
    for a in 0..=7 {
        let tail = if a == 7 { String::new() } else { format!("(?:{HEX}(?::{HEX}){{0,{}}})?", 6 - a) };
        alternatives.push(format!("{}::{tail}", head(a)));
    }
    for a in 0..=5 {
        alternatives.push(format!("{}::(?:{HEX}:){{0,{}}}{v4}", head(a), 5 - a));
    }
    format!("(?:{})", alternatives.join("|"))
}

/// A webhook URL: `http` or `https` (any case), `://`, a host name (letters, digits and `-`,
/// dot-separated labels of at most 63 characters, the last one starting with a letter, no
/// `xn--` labels), a dotted-quad IPv4 address or a bracketed IPv6 address, an optional port from 1
/// to 65535 without leading zeros, then optionally a path, query or fragment of visible ASCII.
/// No user info, no spaces, no other characters: percent-encode them.
pub fn url_pattern() -> String {
    format!(
        "^[Hh][Tt][Tt][Pp][Ss]?://(?:(?:{LABEL}\\.)*{TOP_LABEL}\\.?|{}|\\[{}\\])(?::{PORT})?(?:[/?#][!-~]*)?$",
        ipv4_pattern(),
        ipv6_pattern()
    )
}

/// Whether `url` has the shape of [`url_pattern`].
pub fn url_ok(url: &str) -> bool {
    let Some((scheme, rest)) = url.split_once("://") else { return false };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.bytes().all(|b| b.is_ascii_graphic()) {
        return false;
    }
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let Some((v6, after)) = inner.split_once(']') else { return false };
        if !ipv6_ok(v6) {
            return false;
        }
        (None, after)
    } else {
        match authority.find(':') {
            Some(i) => (Some(&authority[..i]), &authority[i..]),
            None => (Some(authority), ""),
        }
    };
    if let Some(host) = host
        && !ipv4_ok(host)
        && !domain_ok(host)
    {
        return false;
    }
    match port {
        "" => true,
        p => p.strip_prefix(':').is_some_and(port_ok),
    }
}

fn port_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && !p.starts_with('0')
        && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
}

fn octet_ok(o: &str) -> bool {
    !o.is_empty()
        && o.len() <= 3
        && o.bytes().all(|b| b.is_ascii_digit())
        && (o == "0" || !o.starts_with('0'))
        && o.parse::<u16>().is_ok_and(|n| n <= 255)
}

fn ipv4_ok(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| octet_ok(p))
}

fn ipv6_ok(s: &str) -> bool {
    // Dotted quads inside follow the same rule as on their own (std's parser agrees today, but
    // the pattern is the contract).
    if let Some(i) = s.rfind(':')
        && s[i + 1..].contains('.')
        && !ipv4_ok(&s[i + 1..])
    {
        return false;
    }
    s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.') && s.parse::<Ipv6Addr>().is_ok()
}

fn label_ok(l: &str, top: bool) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && (!top || b[0].is_ascii_alphabetic())
        && !(b.len() >= 4 && b[..2].eq_ignore_ascii_case(b"xn") && &b[2..4] == b"--")
}

fn domain_ok(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    let (top, rest) = labels.split_last().expect("split yields one item at least");
    label_ok(top, true) && rest.iter().all(|l| label_ok(l, false))
}

/// Custom header names: an HTTP token (RFC 9110 §5.6.2) of at most [`HEADER_NAME_LEN`]
/// characters, other than the names the sender owns or refuses (any case).
pub fn header_name_pattern() -> String {
    let reserved: Vec<String> = crate::model::RESERVED_HEADERS
        .iter()
        .map(|name| {
            name.chars()
                .map(|c| {
                    if c.is_ascii_alphabetic() {
                        format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
                    } else {
                        c.to_string() // digits and `-`, literal outside a class
                    }
                })
                .collect()
        })
        .collect();
    format!("^(?!(?:{})$)[!#$%&'*+.^_`|~0-9A-Za-z-]{{1,{HEADER_NAME_LEN}}}$", reserved.join("|"))
}

/// Whether a custom header name has the shape of [`header_name_pattern`] (leaving the reserved
/// names to the registration's own check, which says why).
pub fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= HEADER_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+.^_`|~-".contains(&b))
}

/// Whether a custom header value has the shape of [`HEADER_VALUE_PATTERN`] and is at most
/// [`HEADER_VALUE_LEN`] characters.
pub fn header_value_ok(value: &str) -> bool {
    value.chars().count() <= HEADER_VALUE_LEN && value.chars().all(|c| c == '\t' || !c.is_ascii_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for ok in [
            "http://example.com",
            "HTTPS://Example.COM./a/b?c=d#e",
            "http://a",
            "http://a-b.c1:65535/",
            "http://1.2.3.a/",
            "http://255.255.255.255:1",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[::1]:8080/x",
            "http://[1:2:3:4:5:6:7:8]/",
            "http://[1:2:3:4:5:6:7::]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[1:2:3:4:5:6:1.2.3.4]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://example.com/%zz\\x@y",
        ] {
            assert!(url_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com",
            "http:/example.com",
            "http://",
            "http://example.com:0/",
            "http://example.com:080/",
            "http://example.com:65536/",
            "http://example.com:/",
            "http://user@example.com/",
            "http://a.1/",
            "http://1/",
            "http://01.2.3.4/",
            "http://1.2.3.4.5/",
            "http://256.1.1.1/",
            "http://-a.com/",
            "http://a-.com/",
            "http://a..b/",
            "http://xn--nxasmq6b.com/",
            "http://a.XN--abc/",
            "http://a_b.com/",
            "http://exa mple.com/",
            "http://example.com/a b",
            "http://bücher.example/",
            "http://[1:2:3:4:5:6:7:8::]/",
            "http://[1:2:3:4:5:6:7:1.2.3.4]/",
            "http://[::01.2.3.4]/",
            "http://[fe80::1%eth0]/",
            "http://[12345::]/",
            "http://example.com\\x",
        ] {
            assert!(!url_ok(bad), "{bad}");
        }
        assert!(url_ok(&format!("http://{}.com", "a".repeat(63))));
        assert!(!url_ok(&format!("http://{}.com", "a".repeat(64))));
    }

    #[test]
    fn header_names() {
        assert!(header_name_ok("X-Tenant"));
        assert!(!header_name_ok("bad header"));
        assert!(!header_name_ok(""));
        assert!(!header_name_ok(&"x".repeat(HEADER_NAME_LEN + 1)));
        let p = header_name_pattern();
        assert!(p.contains("[Tt][Ee]") && p.contains("[Cc][Oo][Nn][Tt][Ee][Nn][Tt]-[Tt]"), "{p}");
        assert!(header_value_ok("a\tb c~é"));
        assert!(!header_value_ok("a\u{7f}"));
        assert!(!header_value_ok("a\nb"));
    }
}
