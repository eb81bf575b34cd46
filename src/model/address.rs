//! Which addresses a webhook may be delivered to: the SSRF guard's classification of IP addresses,
//! applied at registration (literal addresses, `localhost`) and again at connect time (every
//! address a name resolves to; see `delivery::client`).
//!
//! The tables are the IANA IPv4 and IPv6 Special-Purpose Address Registries (plus multicast,
//! site-local and the IPv6 space outside global unicast), each row with its RFC. An address is
//! refused when the most specific row containing it is not globally reachable. IPv6 forms that
//! carry an IPv4 address are judged by that address where they are routable (IPv4-mapped, the
//! NAT64 well-known prefix) and refused outright where they are deprecated or local (IPv4-compatible,
//! 6to4, Teredo, NAT64 local-use); the refusal names the embedded address.
//!
//! Deliberately stricter than the registries in one place: the anycast service addresses that
//! IANA marks globally reachable but that are answered by the nearest, usually on-premises, server
//! (PCP 192.0.0.9 and 2001:1::1, TURN 192.0.0.10 and 2001:1::2, DNS-SD SRP 2001:1::3) are refused
//! with their covering block.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// One row of the special-purpose tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialRange {
    /// The block.
    pub net: IpNet,
    /// The registry's name for it.
    pub name: &'static str,
    /// Where it is defined.
    pub rfc: &'static str,
    /// Whether packets to it may go to the public internet (the registry's "Globally Reachable").
    pub globally_reachable: bool,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8, name: &'static str, rfc: &'static str) -> SpecialRange {
    SpecialRange {
        net: IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)),
        name,
        rfc,
        globally_reachable: false,
    }
}

const fn v6(s: [u16; 8], len: u8, name: &'static str, rfc: &'static str, global: bool) -> SpecialRange {
    SpecialRange {
        net: IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]), len)),
        name,
        rfc,
        globally_reachable: global,
    }
}

/// IPv4: the IANA IPv4 Special-Purpose Address Registry, plus multicast. Every row here is refused.
pub const IPV4_SPECIAL: &[SpecialRange] = &[
    v4(0, 0, 0, 0, 8, "\"this network\"", "RFC 791 §3.2"),
    v4(0, 0, 0, 0, 32, "\"this host on this network\"", "RFC 1122 §3.2.1.3"),
    v4(10, 0, 0, 0, 8, "private-use", "RFC 1918"),
    v4(100, 64, 0, 0, 10, "shared address space (carrier-grade NAT)", "RFC 6598"),
    v4(127, 0, 0, 0, 8, "loopback", "RFC 1122 §3.2.1.3"),
    v4(169, 254, 0, 0, 16, "link-local", "RFC 3927"),
    v4(172, 16, 0, 0, 12, "private-use", "RFC 1918"),
    v4(192, 0, 0, 0, 24, "IETF protocol assignments", "RFC 6890 §2.1"),
    v4(192, 0, 0, 0, 29, "IPv4 service continuity prefix (DS-Lite)", "RFC 7335"),
    v4(192, 0, 0, 8, 32, "IPv4 dummy address", "RFC 7600"),
    // Globally reachable in the registry, refused here: anycast answered by the nearest server.
    v4(192, 0, 0, 9, 32, "Port Control Protocol anycast", "RFC 7723"),
    v4(192, 0, 0, 10, 32, "TURN relay anycast", "RFC 8155"),
    v4(192, 0, 0, 170, 32, "NAT64/DNS64 discovery", "RFC 8880, RFC 7050"),
    v4(192, 0, 0, 171, 32, "NAT64/DNS64 discovery", "RFC 8880, RFC 7050"),
    v4(192, 0, 2, 0, 24, "documentation (TEST-NET-1)", "RFC 5737"),
    v4(192, 88, 99, 0, 24, "deprecated 6to4 relay anycast", "RFC 7526"),
    v4(192, 168, 0, 0, 16, "private-use", "RFC 1918"),
    v4(198, 18, 0, 0, 15, "benchmarking", "RFC 2544"),
    v4(198, 51, 100, 0, 24, "documentation (TEST-NET-2)", "RFC 5737"),
    v4(203, 0, 113, 0, 24, "documentation (TEST-NET-3)", "RFC 5737"),
    v4(224, 0, 0, 0, 4, "multicast", "RFC 5771"),
    v4(240, 0, 0, 0, 4, "reserved", "RFC 1112 §4"),
    v4(255, 255, 255, 255, 32, "limited broadcast", "RFC 8190, RFC 919 §7"),
];

/// IPv6: the IANA IPv6 Special-Purpose Address Registry, plus multicast, site-local and the space
/// outside global unicast (2000::/3). The most specific row decides; a few globally reachable rows
/// are listed because they sit inside refused blocks. IPv4-mapped (`::ffff:0:0/96`) and the NAT64
/// well-known prefix (`64:ff9b::/96`) are not rows: they are judged by their IPv4 address.
pub const IPV6_SPECIAL: &[SpecialRange] = &[
    // Outside 2000::/3: not IANA-allocated global unicast.
    v6([0, 0, 0, 0, 0, 0, 0, 0], 3, "outside global unicast 2000::/3", "RFC 4291 §2.4", false),
    v6([0x4000, 0, 0, 0, 0, 0, 0, 0], 2, "outside global unicast 2000::/3", "RFC 4291 §2.4", false),
    v6([0x8000, 0, 0, 0, 0, 0, 0, 0], 1, "outside global unicast 2000::/3", "RFC 4291 §2.4", false),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", "RFC 4291 §2.5.2", false),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", "RFC 4291 §2.5.3", false),
    v6([0, 0, 0, 0, 0, 0, 0, 0], 96, "IPv4-compatible (deprecated)", "RFC 4291 §2.5.5.1", false),
    v6([0, 0, 0, 0, 0xffff, 0, 0, 0], 96, "IPv4-translated", "RFC 2765 §2.1", false),
    v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "IPv4-IPv6 translation, local-use", "RFC 8215", false),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", "RFC 6666", false),
    v6([0x100, 0, 0, 1, 0, 0, 0, 0], 64, "dummy IPv6 prefix", "RFC 9780", false),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, "IETF protocol assignments", "RFC 2928", false),
    v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", "RFC 4380, RFC 8190", false),
    // Globally reachable in the registry, refused here: anycast answered by the nearest server.
    v6([0x2001, 1, 0, 0, 0, 0, 0, 1], 128, "Port Control Protocol anycast", "RFC 7723", false),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 2], 128, "TURN relay anycast", "RFC 8155", false),
    v6([0x2001, 1, 0, 0, 0, 0, 0, 3], 128, "DNS-SD service registration protocol anycast", "RFC 9665", false),
    v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", "RFC 5180, RFC Errata 1752", false),
    v6([0x2001, 3, 0, 0, 0, 0, 0, 0], 32, "AMT", "RFC 7450", true),
    v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0], 48, "AS112-v6", "RFC 7535", true),
    v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "deprecated ORCHID", "RFC 4843", false),
    v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0], 28, "ORCHIDv2", "RFC 7343", true),
    v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0], 28, "drone remote ID entity tags", "RFC 9374", true),
    v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation", "RFC 3849", false),
    v6([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4", "RFC 3056", false),
    v6([0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0], 48, "direct delegation AS112 service", "RFC 7534", true),
    v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", "RFC 9637", false),
    v6([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, "segment routing (SRv6) SIDs", "RFC 9602", false),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local", "RFC 4193, RFC 8190", false),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local unicast", "RFC 4291 §2.5.6", false),
    v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (deprecated)", "RFC 3879", false),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", "RFC 4291 §2.7", false),
];

/// The IPv4-mapped block (`::ffff:0:0/96`, RFC 4291 §2.5.5.2): the kernel dials the IPv4 address.
const MAPPED: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
/// The NAT64 well-known prefix (`64:ff9b::/96`, RFC 6052): a translator dials the IPv4 address.
const NAT64_WELL_KNOWN: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);

/// Why an address is not a public target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonPublic {
    /// The most specific special-purpose row that refuses it.
    pub range: &'static SpecialRange,
    /// The IPv4 address an IPv6 form carries, and the form, when that is what was judged or is
    /// worth naming.
    pub embedded: Option<(&'static str, Ipv4Addr)>,
}

impl fmt::Display for NonPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((form, v4)) = self.embedded {
            write!(f, "{form} address embedding {v4}, ")?;
        }
        write!(f, "{} {} ({})", self.range.net, self.range.name, self.range.rfc)
    }
}

fn most_specific(table: &'static [SpecialRange], ip: IpAddr) -> Option<&'static SpecialRange> {
    table.iter().filter(|r| r.net.contains(&ip)).max_by_key(|r| r.net.prefix_len())
}

fn low32(ip: Ipv6Addr) -> Ipv4Addr {
    let o = ip.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static SpecialRange> {
    most_specific(IPV4_SPECIAL, IpAddr::V4(ip)).filter(|r| !r.globally_reachable)
}

/// The reason `ip` is not a public target, or `None` for a globally reachable unicast address.
pub fn classify(ip: IpAddr) -> Option<NonPublic> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4).map(|range| NonPublic { range, embedded: None }),
        IpAddr::V6(v6) => {
            for (form, block) in [("IPv4-mapped", MAPPED), ("NAT64", NAT64_WELL_KNOWN)] {
                if block.contains(&v6) {
                    let inner = low32(v6);
                    return classify_v4(inner).map(|range| NonPublic { range, embedded: Some((form, inner)) });
                }
            }
            let range = most_specific(IPV6_SPECIAL, IpAddr::V6(v6)).filter(|r| !r.globally_reachable)?;
            let s = v6.segments();
            let embedded = match (s[0], s[1]) {
                (0x2002, _) => Some(("6to4", Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))),
                // Teredo: the client's address, obfuscated (RFC 4380 §4).
                (0x2001, 0) => Some(("Teredo", Ipv4Addr::from(!u32::from(low32(v6))))),
                (0, 0) if s[2..6] == [0, 0, 0, 0] && !v6.is_unspecified() && !v6.is_loopback() => {
                    Some(("IPv4-compatible", low32(v6)))
                }
                _ => None,
            };
            Some(NonPublic { range, embedded })
        }
    }
}

/// Whether an IP address is loopback, private, link-local or otherwise not a globally reachable
/// unicast address (see [`classify`]).
pub fn is_private_ip(ip: IpAddr) -> bool {
    classify(ip).is_some()
}

/// Which targets deliveries may go to: public addresses always; non-public ones when private
/// targets are allowed (`WEBHOOKS_ALLOW_PRIVATE_TARGETS`) or when they are inside one of the
/// operator's allowed blocks (`WEBHOOKS_ALLOWED_PRIVATE_CIDRS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Every address is allowed (development and tests).
    pub allow_private: bool,
    /// Non-public blocks allowed anyway: deliberate internal targets.
    pub allowed: Vec<IpNet>,
}

impl From<bool> for TargetPolicy {
    fn from(allow_private: bool) -> Self {
        Self { allow_private, allowed: Vec::new() }
    }
}

impl TargetPolicy {
    /// `Ok` when deliveries may go to `ip`, else why not. An IPv4-mapped address is matched
    /// against the allowed blocks as the IPv4 address the kernel dials.
    pub fn check(&self, ip: IpAddr) -> Result<(), NonPublic> {
        if self.allow_private {
            return Ok(());
        }
        let Some(why) = classify(ip) else {
            return Ok(());
        };
        let dialed = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if self.allowed.iter().any(|net| net.contains(&ip) || net.contains(&dialed)) {
            return Ok(());
        }
        Err(why)
    }

    /// Whether a `localhost` name (which resolves to loopback) may be a target.
    pub fn allows_localhost(&self) -> bool {
        self.check(Ipv4Addr::LOCALHOST.into()).is_ok() || self.check(Ipv6Addr::LOCALHOST.into()).is_ok()
    }

    /// The connect-time guard: of the addresses `host` resolved to, the ones deliveries may go
    /// to, in order; an error naming what was refused when none may.
    pub fn screen(&self, host: &str, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, String> {
        let mut refused = Vec::new();
        let mut kept = Vec::new();
        for addr in addrs {
            match self.check(addr.ip()) {
                Ok(()) => kept.push(addr),
                Err(why) => refused.push(format!("{}: {why}", addr.ip())),
            }
        }
        if kept.is_empty() {
            if refused.is_empty() {
                return Err(format!("{host} resolves to no address"));
            }
            return Err(format!(
                "{host} resolves only to non-public addresses ({}); allow them with \
                 WEBHOOKS_ALLOWED_PRIVATE_CIDRS or WEBHOOKS_ALLOW_PRIVATE_TARGETS",
                refused.join("; ")
            ));
        }
        Ok(kept)
    }
}

/// Parses one allowed block: `10.20.0.0/16`, `fd00::/8`, or a single address (`10.20.0.5`).
/// Host bits set under the prefix (`10.20.0.5/16`) are refused as a likely typo.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(ip) => IpNet::from(ip),
            Err(_) => return Err(format!("`{s}` is not an address block such as 10.20.0.0/16 or fd00::/8")),
        },
    };
    if net.trunc() != net {
        return Err(format!("`{s}` has bits set below its prefix; did you mean {}?", net.trunc()));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Every refused class, with an address inside it and one just outside it.
    #[test]
    fn classification_table() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            // (address, the refusing row's name or None for public, why)
            ("0.0.0.0", Some("\"this host on this network\""), "unspecified"),
            ("0.255.255.255", Some("\"this network\""), "this network"),
            ("1.0.0.0", None, "just after 0/8"),
            ("10.0.0.0", Some("private-use"), "10/8"),
            ("10.255.255.255", Some("private-use"), "10/8 end"),
            ("11.0.0.0", None, "after 10/8"),
            ("9.255.255.255", None, "before 10/8"),
            ("100.63.255.255", None, "before CGNAT"),
            ("100.64.0.0", Some("shared address space (carrier-grade NAT)"), "CGNAT"),
            ("100.127.255.255", Some("shared address space (carrier-grade NAT)"), "CGNAT end"),
            ("100.128.0.0", None, "after CGNAT"),
            ("127.0.0.1", Some("loopback"), "loopback"),
            ("127.255.255.254", Some("loopback"), "loopback end"),
            ("128.0.0.0", None, "after loopback"),
            ("126.255.255.255", None, "before loopback"),
            ("169.254.169.254", Some("link-local"), "cloud metadata"),
            ("169.253.255.255", None, "before link-local"),
            ("169.255.0.0", None, "after link-local"),
            ("172.16.0.1", Some("private-use"), "172.16/12"),
            ("172.31.255.255", Some("private-use"), "172.16/12 end"),
            ("172.15.255.255", None, "before 172.16/12"),
            ("172.32.0.0", None, "after 172.16/12"),
            ("192.0.0.1", Some("IPv4 service continuity prefix (DS-Lite)"), "192.0.0/29"),
            ("192.0.0.8", Some("IPv4 dummy address"), "dummy"),
            ("192.0.0.9", Some("Port Control Protocol anycast"), "PCP anycast"),
            ("192.0.0.10", Some("TURN relay anycast"), "TURN anycast"),
            ("192.0.0.170", Some("NAT64/DNS64 discovery"), "NAT64 discovery"),
            ("192.0.0.255", Some("IETF protocol assignments"), "192.0.0/24 end"),
            ("192.0.1.0", None, "after 192.0.0/24"),
            ("191.255.255.255", None, "before 192.0.0/24"),
            ("192.0.2.1", Some("documentation (TEST-NET-1)"), "TEST-NET-1"),
            ("192.0.3.0", None, "after TEST-NET-1"),
            ("192.88.99.1", Some("deprecated 6to4 relay anycast"), "6to4 relay"),
            ("192.88.100.0", None, "after 6to4 relay"),
            ("192.168.1.1", Some("private-use"), "192.168/16"),
            ("192.169.0.0", None, "after 192.168/16"),
            ("192.167.255.255", None, "before 192.168/16"),
            ("198.18.0.0", Some("benchmarking"), "198.18/15"),
            ("198.19.255.255", Some("benchmarking"), "198.18/15 end"),
            ("198.17.255.255", None, "before 198.18/15"),
            ("198.20.0.0", None, "after 198.18/15"),
            ("198.51.100.7", Some("documentation (TEST-NET-2)"), "TEST-NET-2"),
            ("203.0.113.7", Some("documentation (TEST-NET-3)"), "TEST-NET-3"),
            ("203.0.114.0", None, "after TEST-NET-3"),
            ("224.0.0.1", Some("multicast"), "multicast"),
            ("239.255.255.255", Some("multicast"), "multicast end"),
            ("223.255.255.255", None, "before multicast"),
            ("240.0.0.1", Some("reserved"), "class E"),
            ("255.255.255.254", Some("reserved"), "class E end"),
            ("255.255.255.255", Some("limited broadcast"), "broadcast"),
            ("8.8.8.8", None, "public"),
            ("192.31.196.1", None, "AS112 is globally reachable"),
            // IPv6
            ("::", Some("unspecified"), "unspecified"),
            ("::1", Some("loopback"), "loopback"),
            ("::2", Some("IPv4-compatible (deprecated)"), "::/96"),
            ("::127.0.0.1", Some("IPv4-compatible (deprecated)"), "IPv4-compatible"),
            ("::8.8.8.8", Some("IPv4-compatible (deprecated)"), "IPv4-compatible, public inside"),
            ("::1:0:0", Some("outside global unicast 2000::/3"), "just past ::/96"),
            ("::ffff:0:808:808", Some("IPv4-translated"), "SIIT"),
            ("64:ff9b:1::1", Some("IPv4-IPv6 translation, local-use"), "NAT64 local-use"),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", Some("IPv4-IPv6 translation, local-use"), "NAT64 local end"),
            ("100::1", Some("discard-only"), "discard"),
            ("100:0:0:1::1", Some("dummy IPv6 prefix"), "dummy"),
            ("2001::1", Some("Teredo"), "Teredo"),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", Some("Teredo"), "Teredo end"),
            ("2001:1::1", Some("Port Control Protocol anycast"), "PCP anycast"),
            ("2001:1::4", Some("IETF protocol assignments"), "2001::/23 rest"),
            ("2001:2::1", Some("benchmarking"), "benchmarking"),
            ("2001:3::1", None, "AMT is globally reachable"),
            ("2001:4:112::1", None, "AS112-v6 is globally reachable"),
            ("2001:10::1", Some("deprecated ORCHID"), "ORCHID"),
            ("2001:20::1", None, "ORCHIDv2 is globally reachable"),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", Some("IETF protocol assignments"), "2001::/23 end"),
            ("2001:200::1", None, "just after 2001::/23"),
            ("2001:db8::1", Some("documentation"), "documentation"),
            ("2001:db9::1", None, "after documentation"),
            ("2002::1", Some("6to4"), "6to4"),
            ("2002:0808:0808::1", Some("6to4"), "6to4 embedding a public address"),
            ("2003::1", None, "after 6to4"),
            ("2001:ffff::1", None, "before 6to4"),
            ("3fff::1", Some("documentation"), "3fff::/20"),
            ("3fff:1000::", None, "after 3fff::/20"),
            ("5f00::1", Some("segment routing (SRv6) SIDs"), "SRv6"),
            ("fc00::1", Some("unique-local"), "ULA"),
            ("fdff:ffff::1", Some("unique-local"), "ULA end"),
            ("fe80::1", Some("link-local unicast"), "link-local"),
            ("febf::1", Some("link-local unicast"), "link-local end"),
            ("fec0::1", Some("site-local (deprecated)"), "site-local"),
            ("ff02::1", Some("multicast"), "multicast"),
            ("4000::1", Some("outside global unicast 2000::/3"), "past 2000::/3"),
            ("1fff:ffff::1", Some("outside global unicast 2000::/3"), "before 2000::/3"),
            ("2000::1", None, "start of 2000::/3"),
            ("2606:4700::1111", None, "public"),
            ("2620:4f:8000::1", None, "AS112 delegation is globally reachable"),
        ];
        for (addr, want, why) in cases {
            let got = classify(ip(addr)).map(|n| n.range.name);
            assert_eq!(got, *want, "{addr} ({why})");
            assert_eq!(is_private_ip(ip(addr)), want.is_some(), "{addr}");
        }
    }

    /// IPv6 forms carrying an IPv4 address: judged by it where they are routable, refused where not.
    #[test]
    fn embedded_ipv4_forms() {
        /// (address, None = public, or (refusing row, form, embedded IPv4))
        type Case = (&'static str, Option<(&'static str, &'static str, &'static str)>);
        let cases: &[Case] = &[
            ("::ffff:127.0.0.1", Some(("loopback", "IPv4-mapped", "127.0.0.1"))),
            ("::ffff:169.254.169.254", Some(("link-local", "IPv4-mapped", "169.254.169.254"))),
            ("::ffff:10.1.2.3", Some(("private-use", "IPv4-mapped", "10.1.2.3"))),
            ("::ffff:8.8.8.8", None),
            ("64:ff9b::a9fe:a9fe", Some(("link-local", "NAT64", "169.254.169.254"))),
            ("64:ff9b::7f00:1", Some(("loopback", "NAT64", "127.0.0.1"))),
            ("64:ff9b::c612:1", Some(("benchmarking", "NAT64", "198.18.0.1"))),
            ("64:ff9b::808:808", None),
            ("::127.0.0.1", Some(("IPv4-compatible (deprecated)", "IPv4-compatible", "127.0.0.1"))),
            ("2002:a9fe:a9fe::1", Some(("6to4", "6to4", "169.254.169.254"))),
            ("2002:7f00:1::", Some(("6to4", "6to4", "127.0.0.1"))),
            // Teredo client 10.0.0.1 is stored inverted: !0x0a000001 = 0xf5fffffe.
            ("2001:0:4136:e378:8000:63bf:f5ff:fffe", Some(("Teredo", "Teredo", "10.0.0.1"))),
        ];
        for (addr, want) in cases {
            let got = classify(ip(addr));
            match want {
                None => assert_eq!(got, None, "{addr}"),
                Some((row, form, inner)) => {
                    let got = got.unwrap_or_else(|| panic!("{addr} was not refused"));
                    assert_eq!(got.range.name, *row, "{addr}");
                    assert_eq!(got.embedded, Some((*form, inner.parse().unwrap())), "{addr}");
                    assert!(got.to_string().contains(inner), "{addr}: {got}");
                }
            }
        }
    }

    #[test]
    fn rows_name_their_rfc_and_are_normalised_blocks() {
        for r in IPV4_SPECIAL.iter().chain(IPV6_SPECIAL) {
            assert!(r.rfc.starts_with("RFC "), "{}", r.net);
            assert_eq!(r.net, r.net.trunc(), "{} has host bits", r.net);
        }
    }

    #[test]
    fn allowed_blocks_let_matching_addresses_through() {
        let policy = TargetPolicy {
            allow_private: false,
            allowed: vec![parse_cidr("10.20.0.0/16").unwrap(), parse_cidr("fd00::5").unwrap()],
        };
        assert!(policy.check(ip("10.20.3.4")).is_ok());
        assert!(policy.check(ip("::ffff:10.20.3.4")).is_ok(), "mapped form dials the IPv4 address");
        assert!(policy.check(ip("fd00::5")).is_ok());
        assert!(policy.check(ip("fd00::6")).is_err());
        assert!(policy.check(ip("10.21.0.1")).is_err());
        assert!(policy.check(ip("127.0.0.1")).is_err());
        assert!(policy.check(ip("64:ff9b::a14:304")).is_err(), "NAT64 of an allowed address is not that address");
        assert!(!policy.allows_localhost());
        assert!(
            TargetPolicy { allow_private: false, allowed: vec![parse_cidr("127.0.0.1").unwrap()] }.allows_localhost()
        );
        assert!(TargetPolicy::from(true).check(ip("127.0.0.1")).is_ok());
        assert!(TargetPolicy::from(false).check(ip("8.8.8.8")).is_ok());
    }

    #[test]
    fn cidrs_parse_strictly() {
        assert_eq!(parse_cidr(" 10.0.0.0/8 ").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("10.0.0.7").unwrap().to_string(), "10.0.0.7/32");
        assert_eq!(parse_cidr("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_cidr("10.0.0.7/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("intranet").is_err());
        assert!(parse_cidr("").is_err());
    }

    /// The connect-time filter applied to what a name resolved to (no real resolution).
    #[test]
    fn resolved_names_are_screened() {
        let sa = |s: &str| SocketAddr::new(ip(s), 443);
        let strict = TargetPolicy::default();
        for bad in ["169.254.169.254", "64:ff9b::a9fe:a9fe", "::127.0.0.1", "2002:a00:1::1", "fec0::1", "198.18.0.1"] {
            let err = strict.screen("rebind.example", [sa(bad)]).unwrap_err();
            assert!(err.contains("rebind.example") && err.contains("non-public"), "{bad}: {err}");
        }
        // Mixed answers keep only the public addresses, in order.
        let kept = strict.screen("mixed.example", [sa("10.0.0.1"), sa("93.184.216.34"), sa("::1"), sa("2606:4700::1")]);
        assert_eq!(kept.unwrap(), vec![sa("93.184.216.34"), sa("2606:4700::1")]);
        assert!(strict.screen("empty.example", []).unwrap_err().contains("no address"));
        let allowed = TargetPolicy { allow_private: false, allowed: vec![parse_cidr("10.0.0.0/8").unwrap()] };
        assert_eq!(
            allowed.screen("internal.example", [sa("10.9.8.7"), sa("127.0.0.1")]).unwrap(),
            vec![sa("10.9.8.7")]
        );
    }
}
