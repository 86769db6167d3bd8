//! Errors and warnings produced while parsing values and entries.
//!
//! Every message that quotes user input prints it through [`Printable`], so that a value holding
//! ESC, CR or a newline cannot rewrite a terminal line or forge a log line.

use std::fmt;

use crate::text::Printable;

/// Why a value could not be accepted. Every variant names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The value is empty (after trimming).
    #[error("empty value")]
    Empty,
    /// The value is longer than the hard cap.
    #[error("value is {len} characters long; the limit is {max}")]
    TooLong {
        /// Length of the input in characters.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not an IP address, CIDR network or range.
    #[error("`{}` is not a valid IP address, CIDR or range: {}", Printable(.input), Printable(.reason))]
    Ip {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a valid domain or host name.
    #[error("`{}` is not a valid domain name: {}", Printable(.input), Printable(.reason))]
    Domain {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a valid e-mail address or address pattern.
    #[error("`{}` is not a valid e-mail address: {}", Printable(.input), Printable(.reason))]
    Email {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not an ISO 3166-1 alpha-2 country code.
    #[error("`{}` is not an ISO 3166-1 alpha-2 country code (e.g. CN, DE, US)", Printable(.input))]
    Country {
        /// The offending input.
        input: String,
    },
    /// A body domain that does not end in a public suffix known to the public suffix list.
    #[error("`{}` does not end in a real public suffix (top-level domain)", Printable(.input))]
    NoPublicSuffix {
        /// The offending input.
        input: String,
    },
    /// The value would match far too much; it is refused unless forced.
    #[error("`{}` is over-broad ({}); refused unless forced (--force)", Printable(.input), Printable(.reason))]
    OverBroad {
        /// The offending input.
        input: String,
        /// Why it is considered over-broad.
        reason: String,
    },
    /// An unknown check id or group name.
    #[error("unknown check `{}`; known: {known}", Printable(.input))]
    UnknownCheck {
        /// The offending token.
        input: String,
        /// The accepted names.
        known: String,
    },
    /// An actor name (who makes a change) that is not acceptable.
    #[error("`{}` is not a valid actor name: {}", Printable(.input), Printable(.reason))]
    Actor {
        /// The offending input (printable, cut to 80 characters).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tenant name that is not acceptable.
    #[error("`{}` is not a valid tenant name: {}", Printable(.input), Printable(.reason))]
    TenantName {
        /// The offending input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A timestamp that could not be parsed.
    #[error(
        "`{}` is not a valid time: use RFC 3339 (2026-12-01T00:00:00Z) or a date (2026-12-01)",
        Printable(.input)
    )]
    Time {
        /// The offending input.
        input: String,
    },
    /// A comment longer than 128 characters.
    #[error("comment is {len} characters long; the limit is 128")]
    CommentTooLong {
        /// Length in characters.
        len: usize,
    },
    /// A comment with control characters.
    #[error("comment contains control characters")]
    CommentControl,
    /// An unknown list, kind or scope keyword.
    #[error("unknown {what} `{}`; expected one of: {expected}", Printable(.input))]
    Keyword {
        /// What was being parsed (list, kind, …).
        what: &'static str,
        /// The offending input.
        input: String,
        /// Accepted values.
        expected: &'static str,
    },
}

/// Why an entry (as a whole) could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A field value is invalid.
    #[error(transparent)]
    Value(#[from] ValueError),
    /// Allow entries must say which checks they bypass.
    #[error(
        "allow entries need a set of checks to bypass (e.g. --bypass spf,dkim or --bypass all)"
    )]
    MissingChecks,
    /// Checks given for a block or ignore entry.
    #[error("only allow entries bypass checks; a {list} entry cannot carry checks")]
    ChecksNotAllowed {
        /// The list of the entry.
        list: &'static str,
    },
    /// `require_auth` on an entry that is not an allow entry of kind email/domain.
    #[error(
        "require_auth applies only to allow entries of kind email or domain, not {list} {kind}"
    )]
    RequireAuthNotApplicable {
        /// The list of the entry.
        list: &'static str,
        /// The kind of the entry.
        kind: &'static str,
    },
    /// `internal` on an entry that is not an ignore entry of kind ip.
    #[error("internal applies only to ignore entries of kind ip, not {list} {kind}")]
    InternalNotApplicable {
        /// The list of the entry.
        list: &'static str,
        /// The kind of the entry.
        kind: &'static str,
    },
    /// A kind that makes no sense on this list.
    #[error("{kind} entries cannot be on the {list} list: {reason}")]
    KindNotOnList {
        /// The list of the entry.
        list: &'static str,
        /// The kind of the entry.
        kind: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// Bypassing malware needs an explicit confirmation.
    #[error(
        "this entry bypasses the malware check (infected files may be delivered); confirm with --force"
    )]
    MalwareNeedsForce,
    /// The entry names no list (allow, block or ignore).
    #[error("the entry names no list: say allow, block or ignore (--list)")]
    MissingList,
    /// The entry names no kind of value.
    #[error(
        "the entry names no kind: say ip, host, email, domain, spf-domain, country, body-domain or body-ip (--kind)"
    )]
    MissingKind,
    /// `starts_at` is not before `expires_at`.
    #[error("the entry would never be valid: starts {starts} is not before expires {expires}")]
    EmptyWindow {
        /// Start of the window.
        starts: String,
        /// End of the window.
        expires: String,
    },
}

/// Something accepted but worth telling the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// CIDR host bits were set and have been cleared.
    HostBitsCleared {
        /// As given.
        input: String,
        /// As stored.
        normalized: String,
    },
    /// A range that is exactly one CIDR block is stored as that block.
    RangeIsCidr {
        /// As given.
        input: String,
        /// As stored.
        normalized: String,
    },
    /// The entry's validity window ended before it was added: it will never match.
    AlreadyExpired {
        /// When it expired (RFC 3339).
        expires: String,
    },
    /// An allow entry for a freemail domain without `require_auth`: anyone can use such an address.
    FreemailWithoutAuth {
        /// The freemail domain.
        domain: String,
    },
    /// A From-address allow entry without `require_auth` can be spoofed.
    SenderWithoutAuth {
        /// The value of the entry.
        value: String,
    },
    /// The entry bypasses malware scanning.
    BypassesMalware,
    /// The entry names checks this deployment never bypasses; they are ignored.
    NeverBypassed {
        /// The checks concerned.
        checks: String,
    },
    /// An over-broad value was accepted because it was forced.
    ForcedOverBroad {
        /// The value.
        input: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::HostBitsCleared { input, normalized } => write!(
                f,
                "host bits of `{}` cleared: stored as `{}`",
                Printable(input),
                Printable(normalized)
            ),
            Warning::RangeIsCidr { input, normalized } => write!(
                f,
                "range `{}` is exactly one CIDR block: stored as `{}`",
                Printable(input),
                Printable(normalized)
            ),
            Warning::AlreadyExpired { expires } => write!(
                f,
                "already expired on {}: it will never match",
                Printable(expires)
            ),
            Warning::FreemailWithoutAuth { domain } => write!(
                f,
                "`{}` is a freemail domain: anyone can send as it; add --require-auth",
                Printable(domain)
            ),
            Warning::SenderWithoutAuth { value } => write!(
                f,
                "sender allow entry `{}` without --require-auth can be spoofed by anyone",
                Printable(value)
            ),
            Warning::BypassesMalware => {
                write!(
                    f,
                    "this entry bypasses malware scanning: infected files may be delivered"
                )
            }
            Warning::NeverBypassed { checks } => {
                write!(
                    f,
                    "this deployment never bypasses {checks}; the entry will not bypass it"
                )
            }
            Warning::ForcedOverBroad { input } => {
                write!(
                    f,
                    "over-broad value `{}` accepted because it was forced",
                    Printable(input)
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use crate::{
        Actor, CheckId, CheckSet, CountryCode, Domain, DomainPattern, EmailAddress, EmailPattern,
        EntryKind, EntrySpec, EntryValue, IpRange, List, Scope, TenantName, parse_ip, parse_time,
    };

    /// Input with ESC (a terminal colour / clear-screen sequence), CR and LF in the middle, and a
    /// right-to-left override.
    const NASTY: &str = "a\u{1b}[2J\r\nb\u{202e}c";

    #[test]
    fn control_bytes_in_values_are_escaped_in_errors() {
        let email_kind = |s: &str| EntryValue::parse(EntryKind::Email, s, false).map(|_| ());
        let mut messages: Vec<(&str, String)> = vec![
            ("ip", IpRange::parse(NASTY, false).unwrap_err().to_string()),
            (
                "ip range",
                IpRange::parse(&format!("192.0.2.1-{NASTY}"), false)
                    .unwrap_err()
                    .to_string(),
            ),
            ("parse_ip", parse_ip(NASTY).unwrap_err().to_string()),
            ("domain", Domain::parse(NASTY).unwrap_err().to_string()),
            (
                "domain label",
                Domain::parse(&format!("{NASTY}.com"))
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "domain pattern",
                DomainPattern::parse(&format!("*.{NASTY}"), false)
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "address",
                EmailAddress::parse(&format!("{NASTY}@example.com"))
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "address domain",
                EmailAddress::parse(&format!("x@{NASTY}"))
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "pattern",
                EmailPattern::parse(&format!("{NASTY}@example.com"), false)
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "email kind",
                email_kind(&format!("\"{NASTY}\"@example.com"))
                    .unwrap_err()
                    .to_string(),
            ),
            (
                "country",
                CountryCode::parse(NASTY).unwrap_err().to_string(),
            ),
            ("tenant", TenantName::parse(NASTY).unwrap_err().to_string()),
            ("scope", Scope::from_str(NASTY).unwrap_err().to_string()),
            ("list", List::from_str(NASTY).unwrap_err().to_string()),
            ("kind", EntryKind::from_str(NASTY).unwrap_err().to_string()),
            ("check", CheckId::from_str(NASTY).unwrap_err().to_string()),
            (
                "checks",
                CheckSet::from_str(&format!("spf,{NASTY}"))
                    .unwrap_err()
                    .to_string(),
            ),
            ("time", parse_time(NASTY).unwrap_err().to_string()),
            ("actor", Actor::parse(NASTY).unwrap_err().to_string()),
        ];
        for kind in EntryKind::ALL {
            let spec = EntrySpec {
                list: Some(List::Block),
                kind: Some(*kind),
                value: NASTY.into(),
                ..Default::default()
            };
            for e in spec.validate().unwrap_err() {
                messages.push((kind.as_str(), e.to_string()));
            }
        }
        for (what, message) in messages {
            assert!(
                !message.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{what}: {message:?}"
            );
            assert!(
                message.contains("\\u{1b}") || message.contains("\\u{202e}"),
                "{what}: the input is not quoted (escaped): {message:?}"
            );
        }
    }
}
