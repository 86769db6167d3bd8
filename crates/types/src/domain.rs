//! Domain names and domain patterns (`example.com`, `*.example.com`).

use std::fmt;

use crate::error::ValueError;

/// Longest domain name (RFC 1035), in its ASCII form.
const MAX_DOMAIN: usize = 253;
/// Longest input accepted before IDNA processing.
const MAX_DOMAIN_INPUT: usize = 1024;

/// A syntactically valid domain name in its canonical form: IDNA A-labels, lower case, no trailing
/// dot. Built only through [`Domain::parse`].
///
/// ```
/// use allowgate_types::Domain;
/// assert_eq!(Domain::parse("EXAMPLE.COM.").unwrap().as_str(), "example.com");
/// assert_eq!(Domain::parse("bücher.de").unwrap().as_str(), "xn--bcher-kva.de");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(Box<str>);

/// How strictly internationalised names are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Idna {
    /// Entry values and configuration: the name must be valid IDNA (UTS #46) as a whole.
    Strict,
    /// Names seen in mail: an `xn--` label that is not a valid A-label is kept as written, and
    /// Unicode labels are converted one by one when the name as a whole breaks a cross-label
    /// IDNA rule, so that the name still matches the entries for its parent domains.
    AsSeen,
}

impl Domain {
    /// Normalise and validate a domain: trims white space, removes one trailing dot, converts IDN
    /// to A-labels, lower-cases; rejects empty labels, labels over 63 octets, names over 253
    /// octets, characters other than letters, digits, `-` and `_`, IP addresses, and names that
    /// are not valid IDNA (UTS #46): an `xn--` label must decode to a Unicode label and encode
    /// back to exactly the same A-label (`xn--zz.com` and `xn--a.com` are refused), and a name
    /// with A-labels is accepted exactly when its Unicode spelling is.
    ///
    /// This is the parser for values an admin gives (entries, tenant domains). Names read from
    /// mail go through [`Domain::parse_from_mail`].
    pub fn parse(input: &str) -> Result<Domain, ValueError> {
        Domain::parse_with(input, Idna::Strict)
    }

    /// Normalise a domain seen in mail (a sender's domain, a client host name, a body domain)
    /// the way [`Domain::parse`] does, but keep a name whose only fault is invalid IDNA: an
    /// `xn--` label that is not a real A-label stays as written (lower-cased), and Unicode labels
    /// are converted one by one when the name as a whole breaks a cross-label rule. Matching is
    /// on ASCII labels, so such a name still matches the entries of its parent domains: a sender
    /// at `xn--zz.evil.example` is not lost to a `*.evil.example` block entry. Whatever
    /// [`Domain::parse`] accepts, this accepts, to the same value.
    ///
    /// ```
    /// use allowgate_types::Domain;
    /// assert!(Domain::parse("xn--zz.evil.example").is_err());
    /// let seen = Domain::parse_from_mail("XN--ZZ.evil.example").unwrap();
    /// assert_eq!(seen.as_str(), "xn--zz.evil.example");
    /// ```
    pub fn parse_from_mail(input: &str) -> Result<Domain, ValueError> {
        Domain::parse_with(input, Idna::AsSeen)
    }

    fn parse_with(input: &str, idna: Idna) -> Result<Domain, ValueError> {
        let text = input.trim();
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        if text.len() > MAX_DOMAIN_INPUT {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: MAX_DOMAIN_INPUT,
            });
        }
        let bad = |reason: &str| ValueError::Domain {
            input: text.to_string(),
            reason: reason.into(),
        };
        let text_no_dot = text.strip_suffix('.').unwrap_or(text);
        if text_no_dot.is_empty() {
            return Err(bad("no labels"));
        }
        let ascii = if text_no_dot.is_ascii() {
            text_no_dot.to_ascii_lowercase()
        } else {
            match (idna::domain_to_ascii(text_no_dot), idna) {
                (Ok(ascii), _) => ascii,
                (Err(_), Idna::AsSeen) => labels_to_ascii(text_no_dot)
                    .ok_or_else(|| bad("not a valid internationalised name"))?,
                (Err(_), Idna::Strict) => return Err(bad("not a valid internationalised name")),
            }
        };
        if ascii.len() > MAX_DOMAIN {
            return Err(bad("longer than 253 characters"));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err(bad("empty label (two dots in a row, or a leading dot)"));
            }
            if label.len() > 63 {
                return Err(bad("a label is longer than 63 characters"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(bad(&format!("character `{c}` is not allowed")));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label starts or ends with `-`"));
            }
            if idna == Idna::Strict && label.starts_with("xn--") {
                check_a_label(label).map_err(|reason| bad(&reason))?;
            }
        }
        // No top-level domain is numeric; a name ending in one is an address (or an address
        // range whose invisible characters IDNA removed, as the fuzzer found: `192.0-0` from
        // `192.\u{feff}0-0`, which list files would then read as a range).
        let last = ascii.rsplit('.').next().unwrap_or_default();
        if ascii.parse::<std::net::IpAddr>().is_ok()
            || last.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        {
            return Err(bad(
                "the last label is numeric: this looks like an IP address, not a domain",
            ));
        }
        // Each A-label is valid on its own; the name as a whole must be too (the bidi rule
        // spans labels), so that the A-label and the Unicode spelling are accepted alike.
        if idna == Idna::Strict
            && ascii.split('.').any(|l| l.starts_with("xn--"))
            && !round_trips_through_unicode(&ascii)
        {
            return Err(bad(
                "its A-labels are valid one by one, but not together (IDNA bidirectional-text rules across labels)",
            ));
        }
        Ok(Domain(ascii.into_boxed_str()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This domain and each parent, longest first: `a.b.c` → `a.b.c`, `b.c`, `c`.
    pub fn suffixes(&self) -> impl Iterator<Item = &str> {
        let s: &str = &self.0;
        std::iter::once(s).chain(s.match_indices('.').map(move |(i, _)| &s[i + 1..]))
    }

    /// Whether the whole name is a public suffix (`com`, `co.uk`, `github.io`) or a single label.
    pub fn is_public_suffix(&self) -> bool {
        if !self.0.contains('.') {
            return true;
        }
        psl::suffix(self.0.as_bytes())
            .is_some_and(|s| s.is_known() && s.as_bytes() == self.0.as_bytes())
    }

    /// Whether the name ends in a public suffix known to the public suffix list.
    pub fn has_known_suffix(&self) -> bool {
        psl::suffix(self.0.as_bytes()).is_some_and(|s| s.is_known())
    }

    /// Whether this domain is a well-known free mail provider (or below one).
    pub fn is_freemail(&self) -> bool {
        self.suffixes().any(|s| FREEMAIL.binary_search(&s).is_ok())
    }
}

/// An `xn--` label must be a real A-label: UTS #46 decodes it without error, and the decoded
/// Unicode label encodes back to exactly the same text. Otherwise two spellings could name one
/// domain, or a name could hold a label that no mail system resolves the way we match it.
fn check_a_label(label: &str) -> Result<(), String> {
    let (unicode, decoded) = idna::domain_to_unicode(label);
    if decoded.is_err() {
        return Err(format!(
            "label `{label}` is not a valid IDNA A-label (its punycode does not decode to a valid Unicode label)"
        ));
    }
    match idna::domain_to_ascii(&unicode) {
        Ok(again) if again == label => Ok(()),
        Ok(again) => Err(format!(
            "label `{label}` is not the canonical A-label of `{unicode}` (that is `{again}`)"
        )),
        Err(_) => Err(format!(
            "label `{label}` decodes to `{unicode}`, which does not encode back to an A-label"
        )),
    }
}

/// Whether UTS #46 decodes the whole name without error and encodes it back to the same text.
fn round_trips_through_unicode(ascii: &str) -> bool {
    let (unicode, decoded) = idna::domain_to_unicode(ascii);
    decoded.is_ok() && idna::domain_to_ascii(&unicode).is_ok_and(|again| again == ascii)
}

/// A name read from mail that UTS #46 refuses as a whole, converted label by label (the label
/// separators IDNA knows are read as dots): ASCII labels are kept (lower-cased), others must
/// convert on their own.
fn labels_to_ascii(text: &str) -> Option<String> {
    let dotted = text.replace(['\u{3002}', '\u{ff0e}', '\u{ff61}'], ".");
    let mut out = String::with_capacity(dotted.len());
    for (i, label) in dotted.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if label.is_ascii() {
            out.push_str(&label.to_ascii_lowercase());
        } else {
            out.push_str(&idna::domain_to_ascii(label).ok()?);
        }
    }
    Some(out)
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free mail domains: anyone can get an address there, so an allow entry for them without
/// authentication lets the whole world in. Sorted for binary search.
const FREEMAIL: &[&str] = &[
    "aol.com",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hotmail.co.uk",
    "hotmail.com",
    "hotmail.de",
    "hotmail.fr",
    "icloud.com",
    "live.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "outlook.com",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "web.de",
    "yahoo.co.uk",
    "yahoo.com",
    "yahoo.de",
    "yahoo.fr",
    "yandex.com",
    "yandex.ru",
    "zoho.com",
];

/// A domain pattern: `example.com` (that domain only) or `*.example.com` (that domain and every
/// name below it, on label boundaries: never `badexample.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainPattern {
    domain: Domain,
    subdomains: bool,
}

impl DomainPattern {
    /// Parse `example.com` or `*.example.com`. A bare public suffix (`com`, `*.co.uk`) or `*` is
    /// refused unless `force`; the returned flag says a forced over-broad value was accepted.
    pub fn parse(input: &str, force: bool) -> Result<(DomainPattern, bool), ValueError> {
        let text = input.trim();
        if text == "*" || text == "*." {
            if !force {
                return Err(ValueError::OverBroad {
                    input: text.into(),
                    reason: "matches every domain".into(),
                });
            }
            return Err(ValueError::Domain {
                input: text.into(),
                reason: "`*` alone is not supported even when forced; name a domain".into(),
            });
        }
        let (rest, subdomains) = match text.strip_prefix("*.") {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        if rest.contains('*') {
            return Err(ValueError::Domain {
                input: text.into(),
                reason: "`*` is only allowed as the whole first label (`*.example.com`)".into(),
            });
        }
        let domain = Domain::parse(rest)?;
        let mut forced = false;
        if domain.is_public_suffix() {
            if !force {
                return Err(ValueError::OverBroad {
                    input: text.into(),
                    reason: format!("`{domain}` is a public suffix"),
                });
            }
            forced = true;
        }
        Ok((DomainPattern { domain, subdomains }, forced))
    }

    /// The domain part (without `*.`).
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// Whether the pattern also covers subdomains (`*.`).
    pub fn includes_subdomains(&self) -> bool {
        self.subdomains
    }

    /// Whether a (normalised) domain matches this pattern.
    pub fn matches(&self, domain: &Domain) -> bool {
        if self.subdomains {
            domain.suffixes().any(|s| s == self.domain.as_str())
        } else {
            domain == &self.domain
        }
    }
}

impl fmt::Display for DomainPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        write!(f, "{}", self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(d("EXAMPLE.COM."), d("example.com"));
        assert_eq!(d(" Mail.Example.Com ").as_str(), "mail.example.com");
        assert_eq!(d("bücher.de").as_str(), "xn--bcher-kva.de");
        assert_eq!(d("_dmarc.example.com").as_str(), "_dmarc.example.com");
    }

    #[test]
    fn invalid_domains() {
        for input in [
            "",
            ".",
            "a..b",
            ".example.com",
            "exa mple.com",
            "-a.com",
            "a-.com",
            "192.0.2.1",
            "192.0.2.\u{feff}10-5.62.01.99",
            "mail.example.123",
            "ex*ample.com",
        ] {
            assert!(Domain::parse(input).is_err(), "{input} accepted");
        }
        assert!(Domain::parse(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(Domain::parse(&"a.".repeat(130)).is_err());
    }

    #[test]
    fn host_name_exported_reads_back_as_ip_range_regression() {
        // Found by fuzzing the import: IDNA drops the BOM of `192.\u{feff}0-0`, and the host
        // `192.0-0` was exported as a line that the import reads as an IP range.
        for input in ["192.\u{feff}0-0", "192.0-0", "mail.example.1-2", "1-2"] {
            assert!(Domain::parse(input).is_err(), "{input:?}");
            assert!(Domain::parse_from_mail(input).is_err(), "{input:?}");
        }
        assert_eq!(d("a.0-0a").as_str(), "a.0-0a");
    }

    #[test]
    fn invalid_punycode_is_accepted_regression() {
        let invalid = [
            ("xn--zz.com", "A-label"),
            ("xn--a.com", "A-label"),
            ("XN--ZZ.com", "A-label"),
            ("mail.xn--a.com", "A-label"),
            ("xn--a-ecp.ru", "A-label"),
            ("xn--1ug.com", "A-label"),
            ("xn--zz", "A-label"),
            ("bücher.xn--zz", "not a valid internationalised name"),
            ("xn--.com", "ends with `-`"),
            ("xn--ab-.com", "ends with `-`"),
        ];
        for (input, reason) in invalid {
            let err = Domain::parse(input).expect_err(input);
            assert!(err.to_string().contains(reason), "{input}: {err}");
        }
        // Valid A-labels that break the bidi rule together (an RTL label next to one starting
        // with a digit): refused in the A-label spelling as in the Unicode one.
        for input in ["1.xn--ngbrx4e.com", "1.عربي.com"] {
            assert!(Domain::parse(input).is_err(), "{input}");
        }
        assert_eq!(d("a1.xn--ngbrx4e.com").as_str(), "a1.xn--ngbrx4e.com");
        // Names seen in mail keep such labels, so that the entries of the parent domains still
        // match them; whatever `parse` accepts, `parse_from_mail` accepts the same.
        let seen = [
            ("xn--zz.evil.example", "xn--zz.evil.example"),
            ("Mail.XN--A.evil.example.", "mail.xn--a.evil.example"),
            ("1.xn--ngbrx4e.com", "1.xn--ngbrx4e.com"),
            ("1.عربي.com", "1.xn--ngbrx4e.com"),
            ("1。عربي．com", "1.xn--ngbrx4e.com"),
            ("bücher.xn--zz.de", "xn--bcher-kva.xn--zz.de"),
            ("bücher.de", "xn--bcher-kva.de"),
        ];
        for (input, want) in seen {
            let domain = Domain::parse_from_mail(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(domain.as_str(), want, "{input}");
            assert_eq!(Domain::parse_from_mail(want), Ok(domain), "{input}");
        }
        for input in [
            "xn--.com",
            "a..b",
            "exa mple.com",
            "192.0.2.1",
            "x.\u{1b}.com",
        ] {
            assert!(Domain::parse_from_mail(input).is_err(), "{input}");
        }
        let valid = [
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
            ("bücher.de", "xn--bcher-kva.de"),
            ("xn--mnchen-3ya.de", "xn--mnchen-3ya.de"),
            ("xn--zca.com", "xn--zca.com"),
            (
                "xn--hxajbheg2az3al.xn--jxalpdlp",
                "xn--hxajbheg2az3al.xn--jxalpdlp",
            ),
            ("mail.xn--ngbrx4e.com", "mail.xn--ngbrx4e.com"),
        ];
        for (input, want) in valid {
            assert_eq!(d(input).as_str(), want, "{input}");
            assert_eq!(d(want).as_str(), want, "{input}: canonical form re-parses");
        }
    }

    #[test]
    fn suffixes_on_label_boundaries() {
        let got: Vec<_> = d("a.b.example.com")
            .suffixes()
            .map(str::to_string)
            .collect();
        assert_eq!(
            got,
            ["a.b.example.com", "b.example.com", "example.com", "com"]
        );
    }

    #[test]
    fn patterns_match_on_label_boundaries() {
        let (p, _) = DomainPattern::parse("*.example.com", false).unwrap();
        assert!(p.matches(&d("mail.example.com")));
        assert!(p.matches(&d("a.b.example.com")));
        assert!(p.matches(&d("example.com")));
        assert!(!p.matches(&d("badexample.com")));
        assert!(!p.matches(&d("example.com.evil.net")));
        let (p, _) = DomainPattern::parse("example.com", false).unwrap();
        assert!(p.matches(&d("EXAMPLE.COM.".trim_end_matches('.'))));
        assert!(!p.matches(&d("mail.example.com")));
    }

    #[test]
    fn public_suffixes_are_over_broad() {
        for input in ["com", "*.com", "co.uk", "*.co.uk", "*", "github.io"] {
            assert!(
                matches!(
                    DomainPattern::parse(input, false),
                    Err(ValueError::OverBroad { .. })
                ),
                "{input}"
            );
        }
        assert!(DomainPattern::parse("com", true).unwrap().1);
        assert!(DomainPattern::parse("example.co.uk", false).is_ok());
        assert!(DomainPattern::parse("*.ex*.com", false).is_err());
    }

    #[test]
    fn freemail() {
        assert!(d("gmail.com").is_freemail());
        assert!(d("mail.yahoo.com").is_freemail());
        assert!(!d("example.com").is_freemail());
        let mut sorted = FREEMAIL.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, FREEMAIL);
    }

    #[test]
    fn known_suffix() {
        assert!(d("example.com").has_known_suffix());
        assert!(!d("example.invalidtld").has_known_suffix());
    }
}
