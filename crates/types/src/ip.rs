//! IP addresses, CIDR networks and ranges, IPv4 and IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::{ValueError, Warning};

/// The longest accepted textual IP value (a full IPv6 range is 79 characters).
const MAX_IP_TEXT: usize = 100;

/// Normalise an address from a message or a connection: IPv4-mapped IPv6 (`::ffff:a.b.c.d`)
/// becomes IPv4. Used for stored values and message data alike.
#[inline]
pub fn normalize_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Parse one IP address as it appears in mail data: brackets and an `IPv6:` tag removed,
/// IPv4-mapped addresses turned into IPv4.
pub fn parse_ip(input: &str) -> Result<IpAddr, ValueError> {
    let text = strip_brackets(input.trim());
    if text.is_empty() {
        return Err(ValueError::Empty);
    }
    if text.len() > MAX_IP_TEXT {
        return Err(ValueError::TooLong {
            len: text.len(),
            max: MAX_IP_TEXT,
        });
    }
    IpAddr::from_str(text)
        .map(normalize_ip)
        .map_err(|_| ValueError::Ip {
            input: input.to_string(),
            reason: "not an IPv4 or IPv6 address".into(),
        })
}

fn strip_brackets(text: &str) -> &str {
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.strip_prefix("IPv6:")
        .or_else(|| text.strip_prefix("ipv6:"))
        .unwrap_or(text)
}

/// An address family and the inclusive numeric bounds of a set of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpBounds {
    /// IPv4 `[start, end]`.
    V4(u32, u32),
    /// IPv6 `[start, end]`.
    V6(u128, u128),
}

/// A validated set of IP addresses: one family, one inclusive interval. IPv4-mapped IPv6 values
/// are IPv4.
///
/// The canonical text is unique per interval, whatever the spelling it was parsed from: one
/// address prints as that address, an interval that is exactly a CIDR block prints as that block
/// (`192.0.2.0-192.0.2.255` → `192.0.2.0/24`, with a [`Warning::RangeIsCidr`]), anything else as
/// `start-end`. So two spellings of the same set display identically.
///
/// ```
/// use allowgate_types::IpRange;
/// let (r, warnings) = IpRange::parse("192.0.2.77/24", false).unwrap();
/// assert_eq!(r.to_string(), "192.0.2.0/24");
/// assert_eq!(warnings.len(), 1);
/// assert!(r.contains("192.0.2.200".parse().unwrap()));
/// let (same, _) = IpRange::parse("192.0.2.0-192.0.2.255", false).unwrap();
/// assert_eq!(same, r);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    /// The family and the bounds, `start <= end`. Each variant holds one family, so a
    /// mixed-family value cannot be represented.
    bounds: IpBounds,
}

impl IpRange {
    /// Parse `192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`, `192.0.2.0/24`, `2001:db8::/64` or
    /// `192.0.2.10-192.0.2.99`. Over-broad values (shorter than /8 for IPv4 or /16 for IPv6, or a
    /// range as large) are refused unless `force`. A CIDR with host bits set warns
    /// ([`Warning::HostBitsCleared`]), and so does a range that is exactly a CIDR block
    /// ([`Warning::RangeIsCidr`]): both are stored in the canonical form.
    pub fn parse(input: &str, force: bool) -> Result<(IpRange, Vec<Warning>), ValueError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > MAX_IP_TEXT {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: MAX_IP_TEXT,
            });
        }
        let bad = |reason: &str| ValueError::Ip {
            input: text.to_string(),
            reason: reason.into(),
        };
        let mut warnings = Vec::new();
        let range = if let Some((a, b)) = text.split_once('-') {
            let start = parse_ip(a).map_err(|_| bad("the start of the range is not an address"))?;
            let end = parse_ip(b).map_err(|_| bad("the end of the range is not an address"))?;
            let bounds = match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => IpBounds::V4(u32::from(s), u32::from(e)),
                (IpAddr::V6(s), IpAddr::V6(e)) => IpBounds::V6(u128::from(s), u128::from(e)),
                _ => return Err(bad("the two ends are of different address families")),
            };
            let range = IpRange::from_bounds(bounds)
                .ok_or_else(|| bad("the start of the range is above its end"))?;
            if start != end && range.cidr_prefix().is_some() {
                warnings.push(Warning::RangeIsCidr {
                    input: text.to_string(),
                    normalized: range.to_string(),
                });
            }
            range
        } else if let Some((a, p)) = text.split_once('/') {
            let addr = IpAddr::from_str(strip_brackets(a.trim()))
                .map_err(|_| bad("the network part is not an address"))?;
            let prefix: u8 = p
                .trim()
                .parse()
                .map_err(|_| bad("the prefix length is not a number"))?;
            let (addr, prefix) = match addr {
                IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                    (normalize_ip(addr), prefix - 96)
                }
                _ => (addr, prefix),
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(bad(&format!(
                    "prefix length /{prefix} is longer than /{max}"
                )));
            }
            let range = IpRange::cidr(addr, prefix);
            if range.start() != addr {
                warnings.push(Warning::HostBitsCleared {
                    input: text.to_string(),
                    normalized: range.to_string(),
                });
            }
            range
        } else {
            IpRange::single(parse_ip(text).map_err(|_| bad("not an IPv4 or IPv6 address"))?)
        };
        if let Some(reason) = range.over_broad() {
            if !force {
                return Err(ValueError::OverBroad {
                    input: text.to_string(),
                    reason,
                });
            }
            warnings.push(Warning::ForcedOverBroad {
                input: text.to_string(),
            });
        }
        Ok((range, warnings))
    }

    /// One address.
    pub fn single(ip: IpAddr) -> IpRange {
        let bounds = match normalize_ip(ip) {
            IpAddr::V4(a) => IpBounds::V4(u32::from(a), u32::from(a)),
            IpAddr::V6(a) => IpBounds::V6(u128::from(a), u128::from(a)),
        };
        IpRange { bounds }
    }

    /// The interval with these bounds, or `None` when the start is above the end. The caller
    /// passes normalised addresses (no IPv4-mapped IPv6 bound), as [`parse_ip`] returns them.
    fn from_bounds(bounds: IpBounds) -> Option<IpRange> {
        let ordered = match bounds {
            IpBounds::V4(s, e) => s <= e,
            IpBounds::V6(s, e) => s <= e,
        };
        ordered.then_some(IpRange { bounds })
    }

    /// The network `addr/prefix`, host bits cleared; `prefix` at most the family's width.
    fn cidr(addr: IpAddr, prefix: u8) -> IpRange {
        let bounds = match addr {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let start = u32::from(a) & !host;
                IpBounds::V4(start, start | host)
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let start = u128::from(a) & !host;
                IpBounds::V6(start, start | host)
            }
        };
        IpRange { bounds }
    }

    /// The first address.
    fn start(&self) -> IpAddr {
        match self.bounds {
            IpBounds::V4(s, _) => IpAddr::V4(Ipv4Addr::from(s)),
            IpBounds::V6(s, _) => IpAddr::V6(Ipv6Addr::from(s)),
        }
    }

    /// The prefix length when the interval is exactly one CIDR block (a single address is a
    /// block of the family's full width).
    fn cidr_prefix(&self) -> Option<u8> {
        let (start, span, width) = match self.bounds {
            IpBounds::V4(s, e) => (u128::from(s), u128::from(e - s), 32),
            IpBounds::V6(s, e) => (s, e - s, 128),
        };
        // A block spans 2^k - 1 past its start, and its start has the k low bits clear.
        let block = span & span.wrapping_add(1) == 0 && start & span == 0;
        block.then(|| width - u8::try_from(span.count_ones()).unwrap_or(width))
    }

    fn over_broad(&self) -> Option<String> {
        let (size_bits, limit, family) = match self.bounds {
            IpBounds::V4(s, e) => (bit_len(u128::from(e - s)), 24, "IPv4"),
            IpBounds::V6(s, e) => (bit_len(e - s), 112, "IPv6"),
        };
        (size_bits > limit).then(|| {
            let shortest = if family == "IPv4" { "/8" } else { "/16" };
            format!("covers more than an {family} {shortest}")
        })
    }

    /// The family and inclusive numeric bounds.
    pub fn bounds(&self) -> IpBounds {
        self.bounds
    }

    /// Whether the (normalised) address lies in this set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.bounds, normalize_ip(ip)) {
            (IpBounds::V4(s, e), IpAddr::V4(a)) => (s..=e).contains(&u32::from(a)),
            (IpBounds::V6(s, e), IpAddr::V6(a)) => (s..=e).contains(&u128::from(a)),
            _ => false,
        }
    }

    /// Whether this is an IPv4 value.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.bounds, IpBounds::V4(..))
    }
}

fn bit_len(x: u128) -> u32 {
    128 - x.leading_zeros()
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let single = match self.bounds {
            IpBounds::V4(s, e) => s == e,
            IpBounds::V6(s, e) => s == e,
        };
        if single {
            return write!(f, "{}", self.start());
        }
        if let Some(prefix) = self.cidr_prefix() {
            return write!(f, "{}/{prefix}", self.start());
        }
        match self.bounds {
            IpBounds::V4(s, e) => write!(f, "{}-{}", Ipv4Addr::from(s), Ipv4Addr::from(e)),
            IpBounds::V6(s, e) => write!(f, "{}-{}", Ipv6Addr::from(s), Ipv6Addr::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        IpRange::parse(input, false)
            .map(|(r, _)| r.to_string())
            .unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn forms_normalise() {
        let cases = [
            ("192.0.2.7", "192.0.2.7"),
            (" 192.0.2.7 ", "192.0.2.7"),
            ("[2001:db8::1]", "2001:db8::1"),
            ("2001:DB8::34F4", "2001:db8::34f4"),
            ("::ffff:192.0.2.7", "192.0.2.7"),
            ("::ffff:192.0.2.0/120", "192.0.2.0/24"),
            ("192.0.2.0/24", "192.0.2.0/24"),
            ("192.0.2.7/32", "192.0.2.7"),
            ("192.0.2.77/24", "192.0.2.0/24"),
            ("2001:db8::34f4:0:0:f3dd/64", "2001:db8::/64"),
            ("192.0.2.10-192.0.2.99", "192.0.2.10-192.0.2.99"),
            ("192.0.2.10 - 192.0.2.10", "192.0.2.10"),
            ("2001:db8::1-2001:db8::ff", "2001:db8::1-2001:db8::ff"),
            ("192.0.2.0-192.0.2.255", "192.0.2.0/24"),
            ("192.0.2.0-192.0.2.1", "192.0.2.0/31"),
            ("192.0.2.1-192.0.2.2", "192.0.2.1-192.0.2.2"),
            ("192.0.2.0-192.0.2.254", "192.0.2.0-192.0.2.254"),
            ("::ffff:192.0.2.0-::ffff:192.0.2.127", "192.0.2.0/25"),
            ("2001:db8::-2001:db8::ffff", "2001:db8::/112"),
            (
                "2001:db8::-2001:db8:0:0:ffff:ffff:ffff:ffff",
                "2001:db8::/64",
            ),
            ("2001:db8::1-2001:db8::2", "2001:db8::1-2001:db8::2"),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "{input}");
        }
    }

    #[test]
    fn host_bits_warn() {
        let (_, w) = IpRange::parse("192.0.2.77/24", false).unwrap();
        assert!(
            matches!(&w[..], [Warning::HostBitsCleared { normalized, .. }] if normalized == "192.0.2.0/24")
        );
        let (_, w) = IpRange::parse("192.0.2.0/24", false).unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn range_equal_to_existing_cidr_is_not_a_duplicate_regression() {
        // Duplicates are found by comparing displayed values: every spelling of one interval
        // must display the same.
        let spellings = [
            &["192.0.2.0/24", "192.0.2.0-192.0.2.255", "192.0.2.77/24"][..],
            &["10.0.0.0/8", "10.0.0.0-10.255.255.255"],
            &[
                "192.0.2.7",
                "192.0.2.7/32",
                "192.0.2.7-192.0.2.7",
                "::ffff:192.0.2.7",
            ],
            &["2001:db8::/64", "2001:db8::-2001:db8::ffff:ffff:ffff:ffff"],
            &[
                "2001:db8::1",
                "2001:db8::1/128",
                "[2001:db8::1]-2001:db8::1",
            ],
        ];
        for group in spellings {
            let shown: Vec<String> = group.iter().map(|s| ok(s)).collect();
            assert!(
                shown.iter().all(|s| s == &shown[0]),
                "{group:?} → {shown:?}"
            );
            let values: Vec<IpRange> = group
                .iter()
                .map(|s| IpRange::parse(s, false).unwrap().0)
                .collect();
            assert!(values.iter().all(|v| v == &values[0]), "{group:?}");
        }
        let (_, w) = IpRange::parse("192.0.2.0-192.0.2.255", false).unwrap();
        assert_eq!(
            w,
            vec![Warning::RangeIsCidr {
                input: "192.0.2.0-192.0.2.255".into(),
                normalized: "192.0.2.0/24".into(),
            }]
        );
        let (_, w) = IpRange::parse("2001:db8::-2001:db8::ffff", false).unwrap();
        assert!(
            matches!(&w[..], [Warning::RangeIsCidr { normalized, .. }] if normalized == "2001:db8::/112")
        );
        for quiet in [
            "192.0.2.10-192.0.2.99",
            "192.0.2.7-192.0.2.7",
            "192.0.2.0/24",
        ] {
            assert!(
                IpRange::parse(quiet, false).unwrap().1.is_empty(),
                "{quiet}"
            );
        }
    }

    #[test]
    fn bounds_have_no_mixed_family_fallback_regression() {
        // `bounds()` used to turn an (unreachable) mixed-family form into a one-address IPv4
        // range; the representation now holds one family per variant. Every form keeps its
        // family and its exact bounds.
        let cases = [
            ("192.0.2.9", IpBounds::V4(0xC000_0209, 0xC000_0209)),
            ("192.0.2.0/31", IpBounds::V4(0xC000_0200, 0xC000_0201)),
            (
                "192.0.2.1-192.0.2.2",
                IpBounds::V4(0xC000_0201, 0xC000_0202),
            ),
            ("::ffff:192.0.2.9", IpBounds::V4(0xC000_0209, 0xC000_0209)),
            ("::1", IpBounds::V6(1, 1)),
            ("::/127", IpBounds::V6(0, 1)),
            ("::1-::3", IpBounds::V6(1, 3)),
        ];
        for (input, want) in cases {
            let (r, _) = IpRange::parse(input, false).unwrap();
            assert_eq!(r.bounds(), want, "{input}");
            assert_eq!(r.is_ipv4(), matches!(want, IpBounds::V4(..)), "{input}");
        }
    }

    #[test]
    fn invalid_values_say_why() {
        for input in [
            "",
            "192.0.2",
            "192.0.2.1/33",
            "2001:db8::/129",
            "192.0.2.9-192.0.2.1",
            "192.0.2.1-2001:db8::1",
            "192.0.2.1/x",
            "example.com",
            "1.2.3.4.5",
        ] {
            assert!(IpRange::parse(input, false).is_err(), "{input} accepted");
        }
    }

    #[test]
    fn over_broad_needs_force() {
        for input in [
            "0.0.0.0/0",
            "::/0",
            "10.0.0.0/7",
            "2001::/15",
            "1.0.0.0-3.0.0.0",
        ] {
            assert!(
                matches!(
                    IpRange::parse(input, false),
                    Err(ValueError::OverBroad { .. })
                ),
                "{input}"
            );
            let (_, w) = IpRange::parse(input, true).unwrap();
            assert!(
                w.iter()
                    .any(|w| matches!(w, Warning::ForcedOverBroad { .. }))
            );
        }
        for input in ["10.0.0.0/8", "2001::/16", "1.0.0.0-1.255.255.255"] {
            assert!(IpRange::parse(input, false).is_ok(), "{input}");
        }
    }

    #[test]
    fn bounds_and_contains() {
        let (r, _) = IpRange::parse("192.0.2.0/24", false).unwrap();
        assert_eq!(r.bounds(), IpBounds::V4(0xC000_0200, 0xC000_02FF));
        assert!(r.contains("::ffff:192.0.2.9".parse().unwrap()));
        assert!(!r.contains("192.0.3.0".parse().unwrap()));
        let (r, _) = IpRange::parse("255.255.255.0/24", false).unwrap();
        assert_eq!(r.bounds(), IpBounds::V4(0xFFFF_FF00, u32::MAX));
    }

    proptest::proptest! {
        /// Any interval: its display parses back to it, with no "rewritten" warning, and the
        /// range spelling of the same interval displays the same.
        #[test]
        fn canonical_display_is_unique_per_interval(
            v4 in proptest::prelude::any::<bool>(),
            a in proptest::prelude::any::<u128>(),
            b in proptest::prelude::any::<u128>(),
            prefix in 0u8..=128,
        ) {
            let (start, end, cidr) = if v4 {
                let (a, b) = ((a as u32).min(b as u32), (a as u32).max(b as u32));
                let p = prefix % 33;
                (
                    IpAddr::from(Ipv4Addr::from(a)),
                    IpAddr::from(Ipv4Addr::from(b)),
                    format!("{}/{p}", Ipv4Addr::from(a)),
                )
            } else {
                (
                    IpAddr::from(Ipv6Addr::from(a.min(b))),
                    IpAddr::from(Ipv6Addr::from(a.max(b))),
                    format!("{}/{prefix}", Ipv6Addr::from(a)),
                )
            };
            for text in [format!("{start}-{end}"), cidr] {
                let (r, _) = IpRange::parse(&text, true).unwrap();
                let shown = r.to_string();
                let (again, w) = IpRange::parse(&shown, true).unwrap();
                proptest::prop_assert_eq!(again, r, "{} → {}", text, shown);
                proptest::prop_assert_eq!(again.to_string(), shown.clone());
                let rewritten = w.iter().any(|w| {
                    matches!(w, Warning::HostBitsCleared { .. } | Warning::RangeIsCidr { .. })
                });
                proptest::prop_assert!(!rewritten, "{} still warns {:?}", shown, w);
                // The same interval spelled as a range displays the same.
                let spelled = match r.bounds() {
                    IpBounds::V4(s, e) => format!("{}-{}", Ipv4Addr::from(s), Ipv4Addr::from(e)),
                    IpBounds::V6(s, e) => format!("{}-{}", Ipv6Addr::from(s), Ipv6Addr::from(e)),
                };
                let (same, _) = IpRange::parse(&spelled, true).unwrap();
                proptest::prop_assert_eq!(same.to_string(), shown);
            }
        }
    }
}
