//! Entries of the allow, block and ignore lists.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::check::{CheckId, CheckSet};
use crate::country::CountryCode;
use crate::domain::{Domain, DomainPattern};
use crate::email::EmailPattern;
use crate::error::{EntryError, ValueError, Warning};
use crate::ip::IpRange;

/// Longest comment, in characters.
pub const MAX_COMMENT: usize = 128;

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant ),* }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// The stable keyword.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                let s = s.trim();
                $name::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
                    ValueError::Keyword {
                        what: $what,
                        input: s.chars().take(40).collect(),
                        expected: concat!($($text, " "),*),
                    }
                })
            }
        }
    };
}

keyword_enum! {
    /// Which list an entry is on.
    List, "list" {
        /// Senders that may bypass checks.
        Allow = "allow",
        /// Senders that are blocked (the `blocklist` check).
        Block = "block",
        /// Senders neither allowed nor blocked, left out of RBL lookups / body classification.
        Ignore = "ignore",
    }
}

keyword_enum! {
    /// What an entry's value is and what it is matched against.
    EntryKind, "kind" {
        /// IP address, CIDR or range; the effective client IP.
        Ip = "ip",
        /// Host name pattern; the forward-confirmed client host name.
        Host = "host",
        /// Address pattern; the sender address(es).
        Email = "email",
        /// Domain pattern; the domain of the sender address(es).
        Domain = "domain",
        /// Domain whose SPF-authorised IPs are matched against the client IP.
        SpfDomain = "spf-domain",
        /// GeoIP country of the client IP.
        Country = "country",
        /// Domains in the message body.
        BodyDomain = "body-domain",
        /// IP literals in the message body.
        BodyIp = "body-ip",
    }
}

/// A tenant's name: lower-case letters, digits, `-`, `_` and `.`, 1–63 characters, not `global`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(Box<str>);

impl TenantName {
    /// Validate a tenant name.
    pub fn parse(input: &str) -> Result<TenantName, ValueError> {
        let text = input.trim();
        let bad = |reason: &str| ValueError::TenantName {
            input: text.chars().take(80).collect(),
            reason: reason.into(),
        };
        if text.is_empty() || text.len() > 63 {
            return Err(bad("must be 1 to 63 characters"));
        }
        if !text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        }) {
            return Err(bad("use lower-case letters, digits, `-`, `_` and `.`"));
        }
        if !text.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("must start with a letter or digit"));
        }
        if text == "global" {
            return Err(bad("`global` is the name of the MSP-wide scope"));
        }
        Ok(TenantName(text.into()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an entry applies: every tenant (the MSP level) or one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Scope {
    /// Every tenant.
    #[default]
    Global,
    /// One tenant.
    Tenant(TenantName),
}

impl FromStr for Scope {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        if s.trim() == "global" {
            Ok(Scope::Global)
        } else {
            TenantName::parse(s).map(Scope::Tenant)
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Tenant(t) => write!(f, "{t}"),
        }
    }
}

/// The identifier of a stored entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EntryId(pub i64);

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A validated comment: at most 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Comment(Box<str>);

impl Comment {
    /// Validate a comment; empty (after trimming) is `None`.
    pub fn parse(input: &str) -> Result<Option<Comment>, ValueError> {
        let text = input.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let len = text.chars().count();
        if len > MAX_COMMENT {
            return Err(ValueError::CommentTooLong { len });
        }
        if text.chars().any(char::is_control) {
            return Err(ValueError::CommentControl);
        }
        Ok(Some(Comment(text.into())))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Comment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated entry value of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EntryValue {
    /// `ip`.
    Ip(IpRange),
    /// `host`.
    Host(DomainPattern),
    /// `email`.
    Email(EmailPattern),
    /// `domain`.
    Domain(DomainPattern),
    /// `spf-domain`.
    SpfDomain(Domain),
    /// `country`.
    Country(CountryCode),
    /// `body-domain`.
    BodyDomain(DomainPattern),
    /// `body-ip`.
    BodyIp(IpRange),
}

/// Hard cap on any entry value's length.
pub const MAX_VALUE: usize = 1024;

impl EntryValue {
    /// Parse and normalise a value of `kind`. Over-broad values are refused unless `force`.
    pub fn parse(
        kind: EntryKind,
        input: &str,
        force: bool,
    ) -> Result<(EntryValue, Vec<Warning>), ValueError> {
        let len = input.chars().count();
        if len > MAX_VALUE {
            return Err(ValueError::TooLong {
                len,
                max: MAX_VALUE,
            });
        }
        let forced = |flag: bool| {
            if flag {
                vec![Warning::ForcedOverBroad {
                    input: input.trim().to_string(),
                }]
            } else {
                vec![]
            }
        };
        Ok(match kind {
            EntryKind::Ip => IpRange::parse(input, force).map(|(r, w)| (EntryValue::Ip(r), w))?,
            EntryKind::BodyIp => {
                IpRange::parse(input, force).map(|(r, w)| (EntryValue::BodyIp(r), w))?
            }
            EntryKind::Host => {
                DomainPattern::parse(input, force).map(|(p, f)| (EntryValue::Host(p), forced(f)))?
            }
            EntryKind::Domain => {
                let text = input.trim();
                let text = text.strip_prefix('@').unwrap_or(text);
                DomainPattern::parse(text, force)
                    .map(|(p, f)| (EntryValue::Domain(p), forced(f)))?
            }
            EntryKind::Email => {
                EmailPattern::parse(input, force).map(|(p, f)| (EntryValue::Email(p), forced(f)))?
            }
            EntryKind::SpfDomain => {
                let (p, f) = DomainPattern::parse(input, force)?;
                if p.includes_subdomains() {
                    return Err(ValueError::Domain {
                        input: input.trim().into(),
                        reason: "an SPF domain names one domain; `*.` is not allowed".into(),
                    });
                }
                (EntryValue::SpfDomain(p.domain().clone()), forced(f))
            }
            EntryKind::Country => (EntryValue::Country(CountryCode::parse(input)?), vec![]),
            EntryKind::BodyDomain => {
                let (p, f) = DomainPattern::parse(input, force)?;
                if !p.domain().has_known_suffix() {
                    return Err(ValueError::NoPublicSuffix {
                        input: input.trim().into(),
                    });
                }
                (EntryValue::BodyDomain(p), forced(f))
            }
        })
    }

    /// The kind of this value.
    pub fn kind(&self) -> EntryKind {
        match self {
            EntryValue::Ip(_) => EntryKind::Ip,
            EntryValue::Host(_) => EntryKind::Host,
            EntryValue::Email(_) => EntryKind::Email,
            EntryValue::Domain(_) => EntryKind::Domain,
            EntryValue::SpfDomain(_) => EntryKind::SpfDomain,
            EntryValue::Country(_) => EntryKind::Country,
            EntryValue::BodyDomain(_) => EntryKind::BodyDomain,
            EntryValue::BodyIp(_) => EntryKind::BodyIp,
        }
    }
}

impl fmt::Display for EntryValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryValue::Ip(v) | EntryValue::BodyIp(v) => v.fmt(f),
            EntryValue::Host(v) | EntryValue::Domain(v) | EntryValue::BodyDomain(v) => v.fmt(f),
            EntryValue::Email(v) => v.fmt(f),
            EntryValue::SpfDomain(v) => v.fmt(f),
            EntryValue::Country(v) => v.fmt(f),
        }
    }
}

/// An entry as an admin asks for it: raw text, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct EntrySpec {
    /// `allow`, `block` or `ignore`; required (`None` is reported as
    /// [`EntryError::MissingList`]).
    pub list: Option<List>,
    /// Global or a tenant.
    pub scope: Scope,
    /// The kind of the value; required (`None` is reported as [`EntryError::MissingKind`]).
    pub kind: Option<EntryKind>,
    /// The value as typed.
    pub value: String,
    /// Checks to bypass (allow entries only).
    pub checks: Option<CheckSet>,
    /// Optional comment.
    pub comment: Option<String>,
    /// Count only when the sender domain is authenticated.
    pub require_auth: bool,
    /// Our own infrastructure (ignore ip entries).
    pub internal: bool,
    /// Start of the validity window.
    pub starts_at: Option<DateTime<Utc>>,
    /// End of the validity window.
    pub expires_at: Option<DateTime<Utc>>,
    /// Disabled entries are stored but never match.
    pub disabled: bool,
    /// Accept over-broad values and malware bypasses.
    pub force: bool,
}

/// A validated entry that has not been stored yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// The list.
    pub list: List,
    /// The scope.
    pub scope: Scope,
    /// The value (its kind is `value.kind()`).
    pub value: EntryValue,
    /// Checks bypassed (empty for block and ignore entries).
    pub checks: CheckSet,
    /// Comment.
    pub comment: Option<Comment>,
    /// Count only when the sender domain is authenticated.
    pub require_auth: bool,
    /// Our own infrastructure.
    pub internal: bool,
    /// Start of the validity window.
    pub starts_at: Option<DateTime<Utc>>,
    /// End of the validity window.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether the entry takes part in matching.
    pub enabled: bool,
}

impl EntrySpec {
    /// Validate every field and the combination, for a deployment that can bypass every check.
    /// All problems are reported, not just the first: a missing `list` or `kind` is an error
    /// ([`EntryError::MissingList`], [`EntryError::MissingKind`]) next to the others. An
    /// `expires_at` that is already past draws [`Warning::AlreadyExpired`].
    pub fn validate(&self) -> Result<(NewEntry, Vec<Warning>), Vec<EntryError>> {
        self.validate_for(CheckSet::EMPTY)
    }

    /// Validate for a deployment whose `never_bypass` checks can never be bypassed: bypassing
    /// malware (by name or through `all`) needs `force` only where malware can be bypassed, and
    /// naming a never-bypassable check draws a warning.
    pub fn validate_for(
        &self,
        never_bypass: CheckSet,
    ) -> Result<(NewEntry, Vec<Warning>), Vec<EntryError>> {
        self.validate_at(never_bypass, Utc::now())
    }

    /// [`EntrySpec::validate_for`] as of `now` (which decides whether the entry has already
    /// expired).
    fn validate_at(
        &self,
        never_bypass: CheckSet,
        now: DateTime<Utc>,
    ) -> Result<(NewEntry, Vec<Warning>), Vec<EntryError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if self.list.is_none() {
            errors.push(EntryError::MissingList);
        }
        if self.kind.is_none() {
            errors.push(EntryError::MissingKind);
        }
        let value =
            self.kind.and_then(
                |kind| match EntryValue::parse(kind, &self.value, self.force) {
                    Ok((v, w)) => {
                        warnings.extend(w);
                        Some(v)
                    }
                    Err(e) => {
                        errors.push(e.into());
                        None
                    }
                },
            );
        let comment = match self.comment.as_deref().map(Comment::parse).transpose() {
            Ok(c) => c.flatten(),
            Err(e) => {
                errors.push(e.into());
                None
            }
        };
        let checks = match self.list {
            Some(list) => self.checks_for(list, never_bypass, &mut errors, &mut warnings),
            None => CheckSet::EMPTY,
        };
        if let (Some(list), Some(kind)) = (self.list, self.kind) {
            self.combination(list, kind, &mut errors);
        }
        if let (Some(s), Some(e)) = (self.starts_at, self.expires_at)
            && s >= e
        {
            errors.push(EntryError::EmptyWindow {
                starts: s.to_rfc3339(),
                expires: e.to_rfc3339(),
            });
        }
        if let Some(e) = self.expires_at
            && e <= now
        {
            warnings.push(Warning::AlreadyExpired {
                expires: e.to_rfc3339(),
            });
        }
        if self.list == Some(List::Allow) && !self.require_auth {
            let domain = match &value {
                Some(EntryValue::Email(p)) => Some(p.domain().domain()),
                Some(EntryValue::Domain(p)) => Some(p.domain()),
                _ => None,
            };
            if let Some(d) = domain {
                if d.is_freemail() {
                    warnings.push(Warning::FreemailWithoutAuth {
                        domain: d.to_string(),
                    });
                } else {
                    warnings.push(Warning::SenderWithoutAuth {
                        value: self.value.trim().to_string(),
                    });
                }
            }
        }
        match (self.list, value) {
            (Some(list), Some(value)) if errors.is_empty() => Ok((
                NewEntry {
                    list,
                    scope: self.scope.clone(),
                    value,
                    checks,
                    comment,
                    require_auth: self.require_auth,
                    internal: self.internal,
                    starts_at: self.starts_at,
                    expires_at: self.expires_at,
                    enabled: !self.disabled,
                },
                warnings,
            )),
            _ => Err(errors),
        }
    }

    /// The checks of an entry on `list`: required (and non-empty) for allow entries, refused for
    /// the others; bypassing malware needs `force`.
    fn checks_for(
        &self,
        list: List,
        never_bypass: CheckSet,
        errors: &mut Vec<EntryError>,
        warnings: &mut Vec<Warning>,
    ) -> CheckSet {
        let checks = match (list, self.checks) {
            (List::Allow, None) => {
                errors.push(EntryError::MissingChecks);
                CheckSet::EMPTY
            }
            (List::Allow, Some(c)) if c.is_empty() => {
                errors.push(EntryError::MissingChecks);
                c
            }
            (List::Allow, Some(c)) => c,
            (other, Some(c)) if !c.is_empty() => {
                errors.push(EntryError::ChecksNotAllowed {
                    list: other.as_str(),
                });
                CheckSet::EMPTY
            }
            _ => CheckSet::EMPTY,
        };
        let dropped =
            CheckSet::from_bits(checks.bits() & !CheckSet::ALL.bits()).intersection(never_bypass);
        if list == List::Allow && !dropped.is_empty() {
            warnings.push(Warning::NeverBypassed {
                checks: dropped.to_string(),
            });
        }
        if list == List::Allow && checks.resolve(never_bypass).contains(CheckId::Malware) {
            if self.force {
                warnings.push(Warning::BypassesMalware);
            } else {
                errors.push(EntryError::MalwareNeedsForce);
            }
        }
        checks
    }

    /// The rules that tie the kind to the list and to the `require_auth` / `internal` flags.
    fn combination(&self, list: List, kind: EntryKind, errors: &mut Vec<EntryError>) {
        if list == List::Allow && matches!(kind, EntryKind::BodyDomain | EntryKind::BodyIp) {
            errors.push(EntryError::KindNotOnList {
                list: list.as_str(),
                kind: kind.as_str(),
                reason: "anyone can put any domain or address into a message body, so it cannot exempt a sender",
            });
        }
        if list == List::Ignore && matches!(kind, EntryKind::Email | EntryKind::Country) {
            errors.push(EntryError::KindNotOnList {
                list: list.as_str(),
                kind: kind.as_str(),
                reason: "ignore entries are for infrastructure (ip, host, domain, spf-domain) and body lists",
            });
        }
        if self.require_auth
            && !(list == List::Allow && matches!(kind, EntryKind::Email | EntryKind::Domain))
        {
            errors.push(EntryError::RequireAuthNotApplicable {
                list: list.as_str(),
                kind: kind.as_str(),
            });
        }
        if self.internal && !(list == List::Ignore && kind == EntryKind::Ip) {
            errors.push(EntryError::InternalNotApplicable {
                list: list.as_str(),
                kind: kind.as_str(),
            });
        }
    }
}

impl NewEntry {
    /// The kind of the value.
    pub fn kind(&self) -> EntryKind {
        self.value.kind()
    }

    /// Whether the entry is within its validity window (and enabled) at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        self.enabled
            && self.starts_at.is_none_or(|s| s <= now)
            && self.expires_at.is_none_or(|e| now < e)
    }

    /// The identity that makes two entries duplicates: list, scope, kind and normalised value.
    pub fn identity(&self) -> (List, Scope, EntryKind, String) {
        (
            self.list,
            self.scope.clone(),
            self.kind(),
            self.value.to_string(),
        )
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: EntryId,
    /// What it is.
    pub entry: NewEntry,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
}

/// Parse a time: RFC 3339 (`2026-12-01T08:00:00Z`) or a date (`2026-12-01`, midnight UTC), in
/// the years 1970 to 9999 (so that it prints back as RFC 3339).
pub fn parse_time(input: &str) -> Result<DateTime<Utc>, ValueError> {
    let text = input.trim();
    let parsed = match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc()),
    };
    parsed
        .filter(|t| (1970..=9999).contains(&t.year()))
        .ok_or_else(|| ValueError::Time {
            input: text.chars().take(60).collect(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(list: List, kind: EntryKind, value: &str) -> EntrySpec {
        EntrySpec {
            list: Some(list),
            kind: Some(kind),
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_kind_parses_a_hit_value() {
        let cases = [
            (EntryKind::Ip, "192.0.2.0/24", "192.0.2.0/24"),
            (EntryKind::Host, "*.Example.com.", "*.example.com"),
            (EntryKind::Email, "User@Example.com", "user@example.com"),
            (EntryKind::Domain, "@example.com", "example.com"),
            (EntryKind::SpfDomain, "example.com", "example.com"),
            (EntryKind::Country, "cn", "CN"),
            (EntryKind::BodyDomain, "*.example.co.uk", "*.example.co.uk"),
            (EntryKind::BodyIp, "2001:db8::/64", "2001:db8::/64"),
        ];
        for (kind, input, want) in cases {
            let (v, _) = EntryValue::parse(kind, input, false).unwrap();
            assert_eq!(v.to_string(), want);
            assert_eq!(v.kind(), kind);
            let (again, _) = EntryValue::parse(kind, &v.to_string(), false).unwrap();
            assert_eq!(again, v, "display round-trips for {kind}");
        }
    }

    #[test]
    fn body_domain_needs_real_suffix() {
        assert!(matches!(
            EntryValue::parse(EntryKind::BodyDomain, "example.notatld", false),
            Err(ValueError::NoPublicSuffix { .. })
        ));
    }

    #[test]
    fn allow_needs_checks_block_refuses_them() {
        let errs = spec(List::Allow, EntryKind::Ip, "192.0.2.1")
            .validate()
            .unwrap_err();
        assert_eq!(errs, vec![EntryError::MissingChecks]);
        let mut s = spec(List::Block, EntryKind::Ip, "192.0.2.1");
        s.checks = Some(CheckSet::one(CheckId::Spf));
        assert!(s.validate().is_err());
    }

    #[test]
    fn all_errors_are_reported() {
        let mut s = spec(List::Block, EntryKind::Ip, "not-an-ip");
        s.comment = Some("x".repeat(129));
        s.internal = true;
        s.require_auth = true;
        let errs = s.validate().unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn malware_needs_force() {
        let mut s = spec(List::Allow, EntryKind::Ip, "192.0.2.1");
        s.checks = Some(CheckSet::ALL);
        assert_eq!(
            s.validate().unwrap_err(),
            vec![EntryError::MalwareNeedsForce]
        );
        s.force = true;
        let (_, w) = s.validate().unwrap();
        assert!(w.contains(&Warning::BypassesMalware));
        // Where malware can never be bypassed, `all` needs no confirmation and naming it warns.
        s.force = false;
        let never = CheckSet::one(CheckId::Malware);
        let (_, w) = s.validate_for(never).unwrap();
        assert!(w.is_empty(), "{w:?}");
        s.checks = Some("malware,spf".parse().unwrap());
        let (_, w) = s.validate_for(never).unwrap();
        assert_eq!(
            w,
            vec![Warning::NeverBypassed {
                checks: "malware".into()
            }]
        );
    }

    #[test]
    fn freemail_without_auth_warns() {
        let mut s = spec(List::Allow, EntryKind::Email, "someone@gmail.com");
        s.checks = Some(CheckSet::one(CheckId::Spam));
        let (_, w) = s.validate().unwrap();
        assert!(
            matches!(&w[..], [Warning::FreemailWithoutAuth { domain }] if domain == "gmail.com")
        );
        s.require_auth = true;
        let (_, w) = s.validate().unwrap();
        assert!(w.is_empty());
    }

    #[test]
    fn spec_without_list_or_kind_silently_became_allow_ip_regression() {
        let none = EntrySpec {
            value: "192.0.2.1".into(),
            ..Default::default()
        };
        assert_eq!(
            none.validate().unwrap_err(),
            vec![EntryError::MissingList, EntryError::MissingKind]
        );
        // Reported next to the other problems.
        type Case = (
            Option<List>,
            Option<EntryKind>,
            &'static str,
            Vec<EntryError>,
        );
        let cases: [Case; 3] = [
            (
                None,
                Some(EntryKind::Ip),
                "not-an-ip",
                vec![
                    EntryError::MissingList,
                    EntryError::Value(IpRange::parse("not-an-ip", false).unwrap_err()),
                ],
            ),
            (
                Some(List::Allow),
                None,
                "192.0.2.1",
                vec![EntryError::MissingKind, EntryError::MissingChecks],
            ),
            (Some(List::Block), Some(EntryKind::Ip), "192.0.2.1", vec![]),
        ];
        for (list, kind, value, want) in cases {
            let mut s = EntrySpec {
                list,
                kind,
                value: value.into(),
                comment: Some("ok".into()),
                ..Default::default()
            };
            assert_eq!(
                s.validate().err().unwrap_or_default(),
                want,
                "{list:?} {kind:?}"
            );
            s.comment = Some("x".repeat(129));
            let errs = s.validate().unwrap_err();
            assert!(
                errs.contains(&EntryError::Value(ValueError::CommentTooLong { len: 129 })),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn entry_added_already_expired_gets_no_warning_regression() {
        let now = parse_time("2026-06-01T12:00:00Z").unwrap();
        let mut s = spec(List::Block, EntryKind::Ip, "192.0.2.1");
        let cases = [
            (Some("2026-06-01T11:59:59Z"), true),
            (Some("2026-06-01T12:00:00Z"), true),
            (Some("2020-01-01"), true),
            (Some("2026-06-01T12:00:01Z"), false),
            (None, false),
        ];
        for (expires, warned) in cases {
            s.expires_at = expires.map(|t| parse_time(t).unwrap());
            let (_, w) = s.validate_at(CheckSet::EMPTY, now).unwrap();
            let want: Vec<Warning> = s
                .expires_at
                .filter(|_| warned)
                .map(|e| Warning::AlreadyExpired {
                    expires: e.to_rfc3339(),
                })
                .into_iter()
                .collect();
            assert_eq!(w, want, "{expires:?}");
        }
        // Through the public entry point, against the clock.
        s.expires_at = Some(parse_time("1999-12-31").unwrap());
        let (_, w) = s.validate().unwrap();
        assert_eq!(
            w.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["already expired on 1999-12-31T00:00:00+00:00: it will never match"]
        );
    }

    #[test]
    fn comment_cap() {
        assert!(Comment::parse(&"é".repeat(128)).unwrap().is_some());
        assert_eq!(
            Comment::parse(&"é".repeat(129)),
            Err(ValueError::CommentTooLong { len: 129 })
        );
        assert_eq!(Comment::parse("  "), Ok(None));
    }

    #[test]
    fn windows() {
        let mut s = spec(List::Block, EntryKind::Ip, "192.0.2.1");
        s.starts_at = Some(parse_time("2026-12-01").unwrap());
        s.expires_at = Some(parse_time("2026-11-01T00:00:00Z").unwrap());
        assert!(matches!(
            &s.validate().unwrap_err()[..],
            [EntryError::EmptyWindow { .. }]
        ));
        s.expires_at = Some(parse_time("2027-01-01").unwrap());
        let (e, _) = s.validate().unwrap();
        assert!(!e.is_active_at(parse_time("2026-11-30").unwrap()));
        assert!(e.is_active_at(parse_time("2026-12-01").unwrap()));
        assert!(!e.is_active_at(parse_time("2027-01-01").unwrap()));
    }

    #[test]
    fn times_stay_printable() {
        for bad in [
            "-999-12-31",
            "0999-12-31",
            "1969-12-31",
            "+10000-01-01",
            "2026-13-01",
            "x",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
        let t = parse_time("2026-12-01T08:00:00+02:00").unwrap();
        assert_eq!(parse_time(&t.to_rfc3339()).unwrap(), t);
    }

    #[test]
    fn tenant_names() {
        assert!(TenantName::parse("acme").is_ok());
        for bad in ["", "Acme", "global", "-x", "a b"] {
            assert!(TenantName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!("global".parse::<Scope>().unwrap(), Scope::Global);
    }
}
