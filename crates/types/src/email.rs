//! E-mail addresses (message data) and address patterns (entries).

use std::fmt;

use crate::domain::{Domain, DomainPattern};
use crate::error::ValueError;

/// Longest local part (RFC 5321).
const MAX_LOCAL: usize = 64;
/// Longest address text accepted.
const MAX_ADDRESS: usize = 320;

/// A normalised e-mail address: lower-case local part, canonical domain.
///
/// Local parts are compared case-insensitively, as mail administrators expect.
///
/// ```
/// use allowgate_types::EmailAddress;
/// let a = EmailAddress::parse("<Alice@Example.COM.>").unwrap();
/// assert_eq!(a.to_string(), "alice@example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    local: Box<str>,
    domain: Domain,
}

fn parse_local(local: &str, input: &str) -> Result<Box<str>, ValueError> {
    let bad = |reason: &str| ValueError::Email {
        input: input.to_string(),
        reason: reason.into(),
    };
    if local.is_empty() {
        return Err(bad("the part before `@` is empty"));
    }
    if local.starts_with('#') {
        return Err(bad(
            "a local part starting with `#` is not supported (list files read it as a comment)",
        ));
    }
    // Lower-case first: some characters grow (`İ` becomes `i̇`), and the cap must hold for the
    // stored form so that it parses again.
    let lowered = local.to_lowercase();
    if lowered.chars().count() > MAX_LOCAL {
        return Err(bad("the part before `@` is longer than 64 characters"));
    }
    if let Some(c) = local
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>' | '@' | ',' | ';'))
    {
        return Err(bad(&format!("character {c:?} is not allowed before `@`")));
    }
    Ok(lowered.into_boxed_str())
}

/// The cap on the whole normalised address (lower-casing can make text longer).
fn check_total(len: usize, input: &str) -> Result<(), ValueError> {
    if len > MAX_ADDRESS {
        return Err(ValueError::Email {
            input: input.trim().chars().take(80).collect(),
            reason: format!("longer than {MAX_ADDRESS} characters once normalised"),
        });
    }
    Ok(())
}

impl EmailAddress {
    /// Parse `local@domain`, optionally in angle brackets. The null sender `<>` is an error.
    pub fn parse(input: &str) -> Result<EmailAddress, ValueError> {
        let text = input.trim();
        if text.len() > MAX_ADDRESS {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: MAX_ADDRESS,
            });
        }
        let text = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(text)
            .trim();
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(|| ValueError::Email {
            input: input.trim().to_string(),
            reason: "no `@`".into(),
        })?;
        let local = parse_local(local, input.trim())?;
        let domain = Domain::parse(domain).map_err(|e| ValueError::Email {
            input: input.trim().to_string(),
            reason: format!("domain: {e}"),
        })?;
        let address = EmailAddress { local, domain };
        check_total(
            address.local.len() + 1 + address.domain.as_str().len(),
            input,
        )?;
        Ok(address)
    }

    /// The local part.
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// An address pattern: `user@example.com`, `*@example.com`, `user@*.example.com` or
/// `*@*.example.com`. `*.` covers the domain and every name below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailPattern {
    local: Option<Box<str>>,
    domain: DomainPattern,
}

impl EmailPattern {
    /// Parse a pattern. The flag says a forced over-broad domain was accepted.
    pub fn parse(input: &str, force: bool) -> Result<(EmailPattern, bool), ValueError> {
        let text = input.trim();
        if text.len() > MAX_ADDRESS {
            return Err(ValueError::TooLong {
                len: text.len(),
                max: MAX_ADDRESS,
            });
        }
        if text.is_empty() {
            return Err(ValueError::Empty);
        }
        let (local, domain) = text.rsplit_once('@').ok_or_else(|| ValueError::Email {
            input: text.to_string(),
            reason: "no `@` (for a whole domain use kind `domain`, or `*@example.com`)".into(),
        })?;
        let local = match local {
            "*" => None,
            l if l.contains('*') => {
                return Err(ValueError::Email {
                    input: text.to_string(),
                    reason: "`*` is only allowed as the whole local part (`*@example.com`)".into(),
                });
            }
            l => Some(parse_local(l, text)?),
        };
        let (domain, forced) = DomainPattern::parse(domain, force).map_err(|e| match e {
            ValueError::OverBroad { reason, .. } => ValueError::OverBroad {
                input: text.to_string(),
                reason,
            },
            other => ValueError::Email {
                input: text.to_string(),
                reason: format!("domain: {other}"),
            },
        })?;
        let pattern = EmailPattern { local, domain };
        check_total(pattern.to_string().len(), text)?;
        Ok((pattern, forced))
    }

    /// The local part, or `None` for `*`.
    pub fn local(&self) -> Option<&str> {
        self.local.as_deref()
    }

    /// The domain pattern.
    pub fn domain(&self) -> &DomainPattern {
        &self.domain
    }

    /// Whether an address matches.
    pub fn matches(&self, address: &EmailAddress) -> bool {
        self.local.as_deref().is_none_or(|l| l == address.local())
            && self.domain.matches(address.domain())
    }
}

impl fmt::Display for EmailPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}",
            self.local.as_deref().unwrap_or("*"),
            self.domain
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn p(s: &str) -> EmailPattern {
        EmailPattern::parse(s, false).unwrap().0
    }

    #[test]
    fn addresses_normalise() {
        assert_eq!(a("Bob@Example.COM").to_string(), "bob@example.com");
        assert_eq!(a(" <bob@example.com.> ").to_string(), "bob@example.com");
        assert_eq!(a("\"odd\"@example.com").local(), "\"odd\"");
        for bad in [
            "",
            "<>",
            "bob",
            "@example.com",
            "bob@",
            "bo b@example.com",
            "bob@exa mple.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn local_part_cap_holds_after_lower_casing() {
        // `İ` lower-cases to two characters; 64 of them must not be accepted as 64.
        let input = format!("{}@example.com", "İ".repeat(64));
        assert!(EmailAddress::parse(&input).is_err());
        let ok = format!("{}@example.com", "İ".repeat(32));
        let a = EmailAddress::parse(&ok).unwrap();
        assert_eq!(EmailAddress::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn regressions_from_fuzzing() {
        // A leading `#` would read as a comment in a text export.
        assert!(EmailAddress::parse("#b@x.com").is_err());
        assert!(EmailPattern::parse("#b@x.com", false).is_err());
        // 64 characters that grow when lower-cased, with a long domain: over 320 once normalised.
        let domain = format!(
            "{}.{}.{}.com",
            "a".repeat(60),
            "b".repeat(60),
            "c".repeat(50)
        );
        let input = format!("{}@{domain}", "Ⱥ".repeat(64));
        assert!(input.len() <= 320 + 64);
        if let Ok(a) = EmailAddress::parse(&input) {
            assert_eq!(EmailAddress::parse(&a.to_string()).unwrap(), a);
        }
    }

    #[test]
    fn patterns() {
        assert!(p("user@example.com").matches(&a("USER@example.com")));
        assert!(!p("user@example.com").matches(&a("other@example.com")));
        assert!(p("*@example.com").matches(&a("any@example.com")));
        assert!(!p("*@example.com").matches(&a("any@mail.example.com")));
        assert!(p("user@*.example.com").matches(&a("user@mail.example.com")));
        assert!(p("user@*.example.com").matches(&a("user@example.com")));
        assert!(!p("user@*.example.com").matches(&a("user@badexample.com")));
        assert!(p("*@*.example.com").matches(&a("x@a.b.example.com")));
        assert_eq!(p("*@*.Example.com").to_string(), "*@*.example.com");
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "example.com",
            "u*@example.com",
            "*@*",
            "*@com",
            "user@ex*.com",
        ] {
            assert!(EmailPattern::parse(bad, false).is_err(), "{bad} accepted");
        }
        assert!(EmailPattern::parse("*@com", true).unwrap().1);
    }
}
