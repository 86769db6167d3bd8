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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Form {
    Single(IpAddr),
    Cidr(IpAddr, u8),
    Range(IpAddr, IpAddr),
}

/// A validated set of IP addresses in the form the admin gave it: a single address, a CIDR network
/// (host bits cleared) or an inclusive range, of one family. IPv4-mapped IPv6 values are IPv4.
///
/// ```
/// use allowgate_types::IpRange;
/// let (r, warnings) = IpRange::parse("192.0.2.77/24", false).unwrap();
/// assert_eq!(r.to_string(), "192.0.2.0/24");
/// assert_eq!(warnings.len(), 1);
/// assert!(r.contains("192.0.2.200".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    form: Form,
}

impl IpRange {
    /// Parse `192.0.2.7`, `2001:db8::1`, `[2001:db8::1]`, `192.0.2.0/24`, `2001:db8::/64` or
    /// `192.0.2.10-192.0.2.99`. Over-broad values (shorter than /8 for IPv4 or /16 for IPv6, or a
    /// range as large) are refused unless `force`.
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
        let form = if let Some((a, b)) = text.split_once('-') {
            let start = parse_ip(a).map_err(|_| bad("the start of the range is not an address"))?;
            let end = parse_ip(b).map_err(|_| bad("the end of the range is not an address"))?;
            let (s, e) = match (start, end) {
                (IpAddr::V4(s), IpAddr::V4(e)) => {
                    (u128::from(u32::from(s)), u128::from(u32::from(e)))
                }
                (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(s), u128::from(e)),
                _ => return Err(bad("the two ends are of different address families")),
            };
            if s > e {
                return Err(bad("the start of the range is above its end"));
            }
            if s == e {
                Form::Single(start)
            } else {
                Form::Range(start, end)
            }
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
            let network = mask(addr, prefix);
            if network != addr {
                let normalized = if prefix == max {
                    network.to_string()
                } else {
                    format!("{network}/{prefix}")
                };
                warnings.push(Warning::HostBitsCleared {
                    input: text.to_string(),
                    normalized,
                });
            }
            if prefix == max {
                Form::Single(network)
            } else {
                Form::Cidr(network, prefix)
            }
        } else {
            Form::Single(parse_ip(text).map_err(|_| bad("not an IPv4 or IPv6 address"))?)
        };
        let range = IpRange { form };
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
        IpRange {
            form: Form::Single(normalize_ip(ip)),
        }
    }

    fn over_broad(&self) -> Option<String> {
        let (size_bits, limit, family) = match self.bounds() {
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
        let (start, end) = match self.form {
            Form::Single(ip) => (ip, ip),
            Form::Cidr(net, prefix) => (net, last(net, prefix)),
            Form::Range(s, e) => (s, e),
        };
        match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => IpBounds::V4(u32::from(s), u32::from(e)),
            (IpAddr::V6(s), IpAddr::V6(e)) => IpBounds::V6(u128::from(s), u128::from(e)),
            // Forms are built from one family only.
            (IpAddr::V4(s), IpAddr::V6(_)) | (IpAddr::V6(_), IpAddr::V4(s)) => {
                IpBounds::V4(u32::from(s), u32::from(s))
            }
        }
    }

    /// Whether the (normalised) address lies in this set.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.bounds(), normalize_ip(ip)) {
            (IpBounds::V4(s, e), IpAddr::V4(a)) => (s..=e).contains(&u32::from(a)),
            (IpBounds::V6(s, e), IpAddr::V6(a)) => (s..=e).contains(&u128::from(a)),
            _ => false,
        }
    }

    /// Whether this is an IPv4 value.
    pub fn is_ipv4(&self) -> bool {
        matches!(self.bounds(), IpBounds::V4(..))
    }
}

fn bit_len(x: u128) -> u32 {
    128 - x.leading_zeros()
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
        }
    }
}

fn last(net: IpAddr, prefix: u8) -> IpAddr {
    match net {
        IpAddr::V4(a) => {
            let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) | host))
        }
        IpAddr::V6(a) => {
            let host = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) | host))
        }
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.form {
            Form::Single(ip) => write!(f, "{ip}"),
            Form::Cidr(net, prefix) => write!(f, "{net}/{prefix}"),
            Form::Range(s, e) => write!(f, "{s}-{e}"),
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
}
