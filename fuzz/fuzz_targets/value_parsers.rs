//! Every parser of `allowgate_types`, fed arbitrary text.
//!
//! Properties, for each parser:
//! - it never panics;
//! - a successful parse's `Display` re-parses to an equal value (round trip), and printing that
//!   value again gives the same text (normalisation is idempotent);
//! - the normalised text parses without a "we changed your input" warning;
//! - whatever parses without `force` also parses with it, to the same value;
//! - an IP value has one canonical text per interval: its bounds spelled as a range parse to the
//!   same value and print the same text;
//! - an address's local part, however it was spelled (quoted or not), prints so that it parses
//!   back, also written always-quoted, and as an entry pattern the canonical text matches the
//!   address; `sender_domain_of` finds the domain of every address that parses;
//! - a domain with A-labels (`xn--`) decodes to Unicode without error, and that Unicode form
//!   parses back to the same domain; `Domain::parse_from_mail` accepts whatever `Domain::parse`
//!   does, to the same value;
//! - the store's user names, token labels and roles keep their rules and normalise once.
#![no_main]

use std::fmt::{Debug, Display};
use std::net::IpAddr;

use allowgate_types::{
    CheckId, CheckSet, Comment, CountryCode, Domain, DomainPattern, EmailAddress, EmailPattern,
    EntryKind, EntryValue, IpBounds, IpRange, List, Scope, TenantName, ValueError, Warning,
    parse_ip, parse_time, sender_domain_of,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    for &kind in EntryKind::ALL {
        entry_value(kind, s);
    }
    ip_range(s);
    domain(s);
    domain_pattern(s);
    email_address(s);
    email_pattern(s);
    check_set(s);
    keywords(s);
    round_trip("CountryCode::parse", s, CountryCode::parse);
    round_trip("TenantName::parse", s, TenantName::parse);
    round_trip("parse_ip", s, parse_ip);
    if let Ok(ip) = parse_ip(s) {
        assert_eq!(ip, ip.to_canonical(), "parse_ip({s:?}) is not canonical");
    }
    comment(s);
    time(s);
    admin_values(s);
});

/// The store's user names, roles and token labels (`allowgate user add`, `token add`): a name
/// is 1 to 64 of `a-z 0-9 . _ @ -` starting with a letter or digit and normalises once; a label
/// keeps no control or direction character; a role is exactly one of its three names (spaces
/// around it aside).
fn admin_values(s: &str) {
    use allowgate_store::{Role, TokenLabel, UserName};
    if let Ok(name) = UserName::parse(s) {
        let n = name.as_str();
        assert!(
            !n.is_empty() && n.len() <= 64,
            "UserName::parse({s:?}) = {n:?}"
        );
        assert!(
            n.bytes().all(|b| b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'@' | b'-')),
            "UserName::parse({s:?}) = {n:?}"
        );
        assert!(n.as_bytes()[0].is_ascii_alphanumeric(), "{n:?}");
        assert_eq!(UserName::parse(n).ok().as_ref(), Some(&name), "{s:?}");
    }
    if let Ok(label) = TokenLabel::parse(s) {
        let l = label.as_str();
        assert!(!l.is_empty() && l.chars().count() <= 64, "{s:?}");
        assert!(
            !l.chars().any(char::is_control),
            "TokenLabel::parse({s:?}) = {l:?}"
        );
        assert_eq!(TokenLabel::parse(l).ok().as_ref(), Some(&label), "{s:?}");
    }
    if let Ok(role) = s.parse::<Role>() {
        assert_eq!(role.as_str(), s.trim(), "Role::from_str({s:?})");
    }
}

/// `parse(s)` succeeded: its display must parse back to the same value and print the same text.
fn round_trip<T, E>(what: &str, input: &str, parse: impl Fn(&str) -> Result<T, E>) -> Option<T>
where
    T: PartialEq + Debug + Display,
    E: Debug,
{
    let value = parse(input).ok()?;
    let shown = value.to_string();
    let again = parse(&shown).unwrap_or_else(|e| {
        panic!(
            "{what}: {input:?} parsed to {value:?}, whose display {shown:?} does not parse: {e:?}"
        )
    });
    assert_eq!(
        again, value,
        "{what}: {input:?} → {shown:?} re-parses to a different value"
    );
    assert_eq!(
        again.to_string(),
        shown,
        "{what}: {input:?} → {shown:?}: display not idempotent"
    );
    Some(value)
}

/// The normalised text of a value must not produce warnings that say "your input was changed".
fn assert_no_rewrite_warning(what: &str, shown: &str, warnings: &[Warning]) {
    let rewrite = warnings.iter().find(|w| {
        matches!(
            w,
            Warning::HostBitsCleared { .. } | Warning::RangeIsCidr { .. }
        )
    });
    assert!(
        rewrite.is_none(),
        "{what}: normalised text {shown:?} still warns {rewrite:?}"
    );
}

fn entry_value(kind: EntryKind, s: &str) {
    let mut strict_value = None;
    for force in [false, true] {
        let what = format!("EntryValue::parse({kind}, force={force})");
        let Ok((value, _)) = EntryValue::parse(kind, s, force) else {
            continue;
        };
        assert_eq!(
            value.kind(),
            kind,
            "{what}: {s:?} → {value:?} has another kind"
        );
        let shown = value.to_string();
        let (again, warnings) = EntryValue::parse(kind, &shown, force).unwrap_or_else(|e| {
            panic!("{what}: {s:?} → {value:?}, whose display {shown:?} does not parse: {e:?}")
        });
        assert_eq!(
            again, value,
            "{what}: {s:?} → {shown:?} re-parses to a different value"
        );
        assert_eq!(
            again.to_string(),
            shown,
            "{what}: {s:?} → {shown:?}: display not idempotent"
        );
        assert_no_rewrite_warning(&what, &shown, &warnings);
        match (force, &strict_value) {
            (false, _) => strict_value = Some(value),
            (true, Some(strict)) => {
                assert_eq!(
                    &value, strict,
                    "{what}: {s:?} parses differently with and without force"
                )
            }
            (true, None) => {}
        }
    }
    if let (Some(_), Err(e)) = (&strict_value, EntryValue::parse(kind, s, true)) {
        panic!("EntryValue::parse({kind}): {s:?} parses without force but not with it: {e:?}");
    }
}

fn ip_range(s: &str) {
    for force in [false, true] {
        let what = format!("IpRange::parse(force={force})");
        let Ok((range, _)) = IpRange::parse(s, force) else {
            continue;
        };
        let shown = range.to_string();
        let (again, warnings) = IpRange::parse(&shown, force).unwrap_or_else(|e| {
            panic!("{what}: {s:?} → {range:?}, whose display {shown:?} does not parse: {e:?}")
        });
        assert_eq!(
            again, range,
            "{what}: {s:?} → {shown:?} re-parses to a different value"
        );
        assert_eq!(
            again.to_string(),
            shown,
            "{what}: {s:?} → {shown:?}: display not idempotent"
        );
        assert_no_rewrite_warning(&what, &shown, &warnings);
        let (start, end): (IpAddr, IpAddr) = match range.bounds() {
            IpBounds::V4(a, b) => {
                assert!(a <= b, "{what}: {s:?} has bounds {a} > {b}");
                assert!(range.is_ipv4());
                (IpAddr::from(a.to_be_bytes()), IpAddr::from(b.to_be_bytes()))
            }
            IpBounds::V6(a, b) => {
                assert!(a <= b, "{what}: {s:?} has bounds {a} > {b}");
                assert!(!range.is_ipv4());
                (IpAddr::from(a.to_be_bytes()), IpAddr::from(b.to_be_bytes()))
            }
        };
        assert!(
            range.contains(start) && range.contains(end),
            "{what}: {s:?} misses its own bounds"
        );
        // One canonical text per interval: the bounds spelled as a range give the same value
        // and the same text.
        let spelled = format!("{start}-{end}");
        let (same, _) = IpRange::parse(&spelled, force).unwrap_or_else(|e| {
            panic!("{what}: {s:?} → {shown:?}: its bounds {spelled:?} do not parse: {e:?}")
        });
        assert_eq!(
            same, range,
            "{what}: {s:?} → {shown:?}: the range {spelled:?} is another value"
        );
        assert_eq!(
            same.to_string(),
            shown,
            "{what}: {s:?}: the range {spelled:?} prints differently from {shown:?}"
        );
        if let Ok(ip) = parse_ip(s) {
            assert!(range.contains(ip), "{what}: {s:?} does not contain itself");
            assert_eq!(
                IpRange::single(ip),
                range,
                "{what}: {s:?}: single address differs"
            );
        }
    }
}

fn domain(s: &str) {
    // Names seen in mail: the same normalisation, only kinder to invalid IDNA.
    let seen = round_trip("Domain::parse_from_mail", s, Domain::parse_from_mail);
    let Some(d) = round_trip("Domain::parse", s, Domain::parse) else {
        return;
    };
    assert_eq!(
        seen.as_ref(),
        Some(&d),
        "Domain::parse_from_mail({s:?}) differs from Domain::parse"
    );
    let text = d.as_str();
    assert!(
        text.is_ascii() && !text.ends_with('.'),
        "Domain::parse: {s:?} → {text:?}"
    );
    assert!(
        !text.bytes().any(|b| b.is_ascii_uppercase()),
        "Domain::parse: {s:?} → {text:?}"
    );
    assert!(
        text.len() <= 253,
        "Domain::parse: {s:?} → {} octets",
        text.len()
    );
    let suffixes: Vec<&str> = d.suffixes().collect();
    assert_eq!(
        suffixes.first(),
        Some(&text),
        "Domain::suffixes of {text:?}"
    );
    // A-labels are real IDNA: the Unicode form decodes without error and parses back to the
    // same domain.
    if text.split('.').any(|label| label.starts_with("xn--")) {
        let (unicode, decoded) = idna::domain_to_unicode(text);
        assert!(
            decoded.is_ok(),
            "Domain::parse: {s:?} → {text:?}, whose A-labels do not decode: {unicode:?}"
        );
        assert_eq!(
            Domain::parse(&unicode).as_ref(),
            Ok(&d),
            "Domain::parse: {s:?} → {text:?} → Unicode {unicode:?} parses to another domain"
        );
    }
    // Every suffix of a valid name is itself a valid name (unless it is all digits, which is an
    // IP-like label and refused on purpose).
    for suffix in &suffixes[1..] {
        if !suffix.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            Domain::parse(suffix).unwrap_or_else(|e| {
                panic!("Domain: suffix {suffix:?} of {text:?} is invalid: {e:?}")
            });
        }
    }
}

fn domain_pattern(s: &str) {
    for force in [false, true] {
        let what = format!("DomainPattern::parse(force={force})");
        let Ok((p, _)) = DomainPattern::parse(s, force) else {
            continue;
        };
        let shown = p.to_string();
        let (again, _) = DomainPattern::parse(&shown, force).unwrap_or_else(|e| {
            panic!("{what}: {s:?} → {p:?}, whose display {shown:?} does not parse: {e:?}")
        });
        assert_eq!(
            again, p,
            "{what}: {s:?} → {shown:?} re-parses to a different value"
        );
        assert_eq!(
            again.to_string(),
            shown,
            "{what}: {s:?} → {shown:?}: display not idempotent"
        );
        assert!(
            p.matches(p.domain()),
            "{what}: {shown:?} does not match its own domain"
        );
        if p.includes_subdomains()
            && let Ok(sub) = Domain::parse(&format!("x.{}", p.domain()))
        {
            assert!(p.matches(&sub), "{what}: {shown:?} does not match {sub}");
        }
    }
}

fn email_address(s: &str) {
    let Some(a) = round_trip("EmailAddress::parse", s, EmailAddress::parse) else {
        return;
    };
    assert_eq!(
        EmailAddress::parse(&format!("<{a}>")).ok().as_ref(),
        Some(&a),
        "EmailAddress::parse: <{a}> differs from {a}"
    );
    let shown = a.to_string();
    for force in [false, true] {
        if let Ok((p, _)) = EmailPattern::parse(&shown, force) {
            assert!(
                p.matches(&a),
                "EmailPattern {shown:?} does not match the address {a:?}"
            );
            assert_eq!(
                p.to_string(),
                shown,
                "EmailPattern {shown:?} prints differently from the address"
            );
        }
    }
    // The local part written always-quoted is the same address.
    let mut quoted = String::from("\"");
    for c in a.local().chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push_str("\"@");
    quoted.push_str(a.domain().as_str());
    if quoted.len() <= 320 {
        assert_eq!(
            EmailAddress::parse(&quoted).as_ref(),
            Ok(&a),
            "EmailAddress::parse: {s:?} → {a:?}, but the quoted form {quoted:?} differs"
        );
    }
    // The fallback for header addresses that do not parse agrees with the parser.
    assert_eq!(
        sender_domain_of(s).as_ref(),
        Some(a.domain()),
        "sender_domain_of({s:?}) differs from the domain of {a:?}"
    );
}

fn email_pattern(s: &str) {
    for force in [false, true] {
        let what = format!("EmailPattern::parse(force={force})");
        let Ok((p, _)) = EmailPattern::parse(s, force) else {
            continue;
        };
        let shown = p.to_string();
        let (again, _) = EmailPattern::parse(&shown, force).unwrap_or_else(|e| {
            panic!("{what}: {s:?} → {p:?}, whose display {shown:?} does not parse: {e:?}")
        });
        assert_eq!(
            again, p,
            "{what}: {s:?} → {shown:?} re-parses to a different value"
        );
        assert_eq!(
            again.to_string(),
            shown,
            "{what}: {s:?} → {shown:?}: display not idempotent"
        );
        // The canonical text of a pattern for one domain is an address it matches.
        if !p.domain().includes_subdomains() {
            let a = EmailAddress::parse(&shown)
                .unwrap_or_else(|e| panic!("{what}: {s:?} → {shown:?} is not an address: {e:?}"));
            assert!(p.matches(&a), "{what}: {shown:?} does not match itself");
        }
    }
}

fn check_set(s: &str) {
    let Some(set) = round_trip("CheckSet::from_str", s, str::parse::<CheckSet>) else {
        return;
    };
    let never = CheckSet::one(CheckId::Malware);
    let resolved = set.resolve(never);
    assert!(
        !resolved.is_all() && !resolved.contains(CheckId::Malware),
        "{s:?}: resolve"
    );
    assert_eq!(
        CheckSet::from_bits(set.bits()),
        set,
        "CheckSet bits of {s:?}"
    );
    for c in set.iter() {
        assert!(set.contains(c));
    }
    if let Ok(c) = s.parse::<CheckId>() {
        assert_eq!(c.id().parse::<CheckId>().ok(), Some(c), "CheckId {s:?}");
        assert!(set.contains(c), "CheckSet {s:?} lacks the check {c}");
    }
}

fn keywords(s: &str) {
    round_trip("List::from_str", s, str::parse::<List>);
    round_trip("EntryKind::from_str", s, str::parse::<EntryKind>);
    round_trip("Scope::from_str", s, str::parse::<Scope>);
}

fn comment(s: &str) {
    match Comment::parse(s) {
        Ok(Some(c)) => {
            let again = Comment::parse(c.as_str());
            assert_eq!(again, Ok(Some(c.clone())), "Comment::parse: {s:?} → {c:?}");
            assert!(c.as_str().chars().count() <= allowgate_types::MAX_COMMENT);
        }
        Ok(None) => assert!(s.trim().is_empty(), "Comment::parse: {s:?} → None"),
        Err(ValueError::CommentTooLong { .. } | ValueError::CommentControl) => {}
        Err(e) => panic!("Comment::parse: {s:?}: unexpected error {e:?}"),
    }
}

/// Times are stored and exported as RFC 3339, so that is the text that must round-trip.
fn time(s: &str) {
    let Ok(t) = parse_time(s) else { return };
    let shown = t.to_rfc3339();
    let again = parse_time(&shown).unwrap_or_else(|e| {
        panic!("parse_time: {s:?} → {t:?}, whose RFC 3339 form {shown:?} does not parse: {e:?}")
    });
    assert_eq!(
        again, t,
        "parse_time: {s:?} → {shown:?} re-parses to a different time"
    );
}
