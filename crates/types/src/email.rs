//! E-mail addresses (message data) and address patterns (entries).
//!
//! Local parts may be RFC 5321 quoted strings (`"x y"@example.com`, `"a\"b"@example.com`). They
//! are stored unquoted and lower-cased, and printed quoted whenever they are not a plain
//! dot-atom, so that `parse(display(a)) == a` always.

use std::fmt;

use crate::domain::{Domain, DomainPattern};
use crate::error::ValueError;

/// Longest local part (RFC 5321), in characters of the unquoted, lower-cased text.
const MAX_LOCAL: usize = 64;
/// Longest address text accepted, in bytes, as given and in its canonical (displayed) form.
const MAX_ADDRESS: usize = 320;

/// How strictly the text before the last `@` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LocalSyntax {
    /// An address from a message or a connection. mail_parser hands addresses over with the
    /// quotes of a quoted local part already removed (`x y@evil.example`), so any text without
    /// control characters is accepted: the domain after the last `@` decides, and a sender a block
    /// entry should see is never lost to a strange local part.
    Message,
    /// A value an admin typed or imported: anything but a plain local part must be quoted, and
    /// an unquoted `#` at the start is refused (list files read it as a comment).
    Entry,
}

/// Characters that need quoting in an entry's local part (besides white space): they delimit
/// addresses or separate values in the formats we read.
const NEEDS_QUOTES: &[char] = &['<', '>', '@', ',', ';'];

/// Parse the text before the last `@` into the stored local part: unquoted, lower-cased, at
/// most 64 characters, no control characters, not empty.
fn parse_local(raw: &str, input: &str, syntax: LocalSyntax) -> Result<Box<str>, ValueError> {
    let bad = |reason: &str| ValueError::Email {
        input: input.to_string(),
        reason: reason.into(),
    };
    if raw.is_empty() {
        return Err(bad("the part before `@` is empty"));
    }
    let local = if raw.starts_with('"') {
        match unquote(raw) {
            Ok(text) => text,
            // Quotes that do not form one quoted string are part of a message's local part.
            Err(_) if syntax == LocalSyntax::Message => raw.to_string(),
            Err(reason) => return Err(bad(reason)),
        }
    } else {
        if syntax == LocalSyntax::Entry {
            if raw.starts_with('#') {
                return Err(bad(
                    "an unquoted local part cannot start with `#` (list files read it as a comment); quote it: \"#…\"@example.com",
                ));
            }
            if let Some(c) = raw
                .chars()
                .find(|c| c.is_whitespace() || NEEDS_QUOTES.contains(c))
            {
                return Err(bad(&format!(
                    "character {c:?} is only allowed in a quoted local part (\"…\"@example.com)"
                )));
            }
        }
        raw.to_string()
    };
    if local.is_empty() {
        return Err(bad("the quoted local part is empty"));
    }
    if let Some(c) = local.chars().find(|c| c.is_control()) {
        return Err(bad(&format!(
            "control character {c:?} is not allowed before `@`"
        )));
    }
    // Lower-case first: some characters grow (`İ` becomes `i̇`), and the cap must hold for the
    // stored form so that it parses again.
    let lowered = local.to_lowercase();
    if lowered.chars().count() > MAX_LOCAL {
        return Err(bad("the part before `@` is longer than 64 characters"));
    }
    Ok(lowered.into_boxed_str())
}

/// The content of a quoted string that makes up all of `raw` (`"a\"b"` → `a"b`): a backslash
/// takes the next character literally; control characters are refused, escaped or not.
fn unquote(raw: &str) -> Result<String, &'static str> {
    let mut chars = raw.strip_prefix('"').unwrap_or(raw).chars();
    let mut out = String::with_capacity(raw.len());
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.as_str().is_empty() => return Ok(out),
            '"' => return Err("text after the closing quote of the local part"),
            '\\' => match chars.next() {
                Some(c) if !c.is_control() => out.push(c),
                Some(_) => return Err("a control character in the local part"),
                None => return Err("the quoted local part has no closing quote"),
            },
            c if c.is_control() => return Err("a control character in the local part"),
            c => out.push(c),
        }
    }
    Err("the quoted local part has no closing quote")
}

/// Whether a stored local part prints without quotes: a dot-atom (RFC 5321, with UTF-8 letters
/// as RFC 6531 allows) that contains no `*` (patterns read it as a wildcard) and does not start
/// with `#` (list files read it as a comment).
fn is_plain_local(local: &str) -> bool {
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || "!#$%&'+-/=?^_`{|}~".contains(c)
            || (!c.is_ascii() && !c.is_whitespace() && !c.is_control())
    };
    !local.starts_with('#')
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(atext))
}

/// Print a stored local part in its canonical form: as it is when plain, otherwise quoted with
/// `"` and `\` escaped.
fn write_local(f: &mut fmt::Formatter<'_>, local: &str) -> fmt::Result {
    if is_plain_local(local) {
        return f.write_str(local);
    }
    f.write_str("\"")?;
    for c in local.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

/// The cap on the whole address in its canonical form (lower-casing and quoting can make text
/// longer), so that the printed form parses again.
fn check_total(len: usize, input: &str) -> Result<(), ValueError> {
    if len > MAX_ADDRESS {
        return Err(ValueError::Email {
            input: input.trim().chars().take(80).collect(),
            reason: format!("longer than {MAX_ADDRESS} characters once normalised"),
        });
    }
    Ok(())
}

/// A normalised e-mail address: lower-case local part (stored unquoted), canonical domain.
///
/// Local parts are compared case-insensitively, as mail administrators expect. A quoted local
/// part is stored without its quotes and printed quoted whenever it is not a plain dot-atom.
///
/// ```
/// use allowgate_types::EmailAddress;
/// let a = EmailAddress::parse("<Alice@Example.COM.>").unwrap();
/// assert_eq!(a.to_string(), "alice@example.com");
/// let q = EmailAddress::parse("\"X Y\"@evil.example").unwrap();
/// assert_eq!(q.local(), "x y");
/// assert_eq!(q.to_string(), "\"x y\"@evil.example");
/// // mail_parser removes the quotes; the address is kept all the same.
/// assert_eq!(EmailAddress::parse("x y@evil.example").unwrap(), q);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    local: Box<str>,
    domain: Domain,
}

impl EmailAddress {
    /// Parse `local@domain`, optionally in angle brackets, split at the last `@`. The null
    /// sender `<>` is an error.
    ///
    /// The local part may be a quoted string (`"x y"`, `"a\"b"`, `"john..doe"`); as this reads
    /// message data, an unquoted local part may hold any character but a control character
    /// (`x y@evil.example`, as mail_parser hands over `"x y"@evil.example`). The domain must be
    /// valid as a name seen in mail ([`Domain::parse_from_mail`]: an invalid `xn--` label is
    /// kept, so that the entries of its parent domains still see the sender). Caps: 64
    /// characters of local part, 320 bytes of canonical address.
    pub fn parse(input: &str) -> Result<EmailAddress, ValueError> {
        let text = input.trim();
        let text = text
            .strip_prefix('<')
            .and_then(|t| t.strip_suffix('>'))
            .unwrap_or(text)
            .trim();
        // The cap is on the address, not its angle brackets: `<a>` parses whenever `a` does.
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
            input: input.trim().to_string(),
            reason: "no `@`".into(),
        })?;
        let local = parse_local(local, input.trim(), LocalSyntax::Message)?;
        let domain = Domain::parse_from_mail(domain).map_err(|e| ValueError::Email {
            input: input.trim().to_string(),
            reason: format!("domain: {e}"),
        })?;
        let address = EmailAddress { local, domain };
        check_total(address.to_string().len(), input)?;
        Ok(address)
    }

    /// The local part: unquoted and lower-cased (`"X Y"@example.com` → `x y`).
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
        write_local(f, &self.local)?;
        write!(f, "@{}", self.domain)
    }
}

/// The domain of a header address that does not parse as a whole, so that block-by-domain still
/// sees its sender: the text after the last `@`, from its first non-blank character up to white
/// space, `>` or other ASCII punctuation (but `-`, `.` and `_`), trailing dots removed, if that
/// is a valid domain as seen in mail ([`Domain::parse_from_mail`]).
///
/// ```
/// use allowgate_types::sender_domain_of;
/// let d = sender_domain_of("Bad Local (x)@Evil.Example> trailing junk").unwrap();
/// assert_eq!(d.as_str(), "evil.example");
/// assert!(sender_domain_of("no address here").is_none());
/// ```
pub fn sender_domain_of(raw: &str) -> Option<Domain> {
    let (_, after) = raw.rsplit_once('@')?;
    let after = after.trim_start();
    let end = after
        .find(|c: char| {
            c.is_whitespace()
                || c.is_control()
                || (c.is_ascii_punctuation() && !matches!(c, '-' | '.' | '_'))
        })
        .unwrap_or(after.len());
    let name = after[..end].trim_end_matches('.');
    if name.is_empty() {
        return None;
    }
    Domain::parse_from_mail(name).ok()
}

/// An address pattern: `user@example.com`, `*@example.com`, `user@*.example.com` or
/// `*@*.example.com`. `*.` covers the domain and every name below it.
///
/// The local part may be quoted (`"x y"@example.com`); it must be quoted when it holds white
/// space, one of `<>@,;`, a literal `*` (`"*"@example.com`), or starts with `#`
/// (`"#x"@example.com`: list files read an unquoted `#` as a comment, a quoted one is fine).
/// It is stored unquoted and printed as [`EmailAddress`] prints it.
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
            l if !l.starts_with('"') && l.contains('*') => {
                return Err(ValueError::Email {
                    input: text.to_string(),
                    reason: "`*` is only allowed as the whole local part (`*@example.com`); quote a literal `*`".into(),
                });
            }
            l => Some(parse_local(l, text, LocalSyntax::Entry)?),
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

    /// The local part (unquoted, lower-cased), or `None` for `*`.
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
        match self.local.as_deref() {
            Some(local) => write_local(f, local)?,
            None => f.write_str("*")?,
        }
        write!(f, "@{}", self.domain)
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
        let cases = [
            // (input, local part as stored, canonical text)
            ("Bob@Example.COM", "bob", "bob@example.com"),
            (" <bob@example.com.> ", "bob", "bob@example.com"),
            ("\"odd\"@example.com", "odd", "odd@example.com"),
            ("\"x y\"@evil.example", "x y", "\"x y\"@evil.example"),
            ("\"a\\\"b\"@x.example", "a\"b", "\"a\\\"b\"@x.example"),
            ("\"a\\\\b\"@x.example", "a\\b", "\"a\\\\b\"@x.example"),
            (
                "\"john..doe\"@x.example",
                "john..doe",
                "\"john..doe\"@x.example",
            ),
            ("\"a@b\"@x.example", "a@b", "\"a@b\"@x.example"),
            ("<\"X Y\"@Evil.Example>", "x y", "\"x y\"@evil.example"),
            ("\"#x\"@x.example", "#x", "\"#x\"@x.example"),
            ("\"*\"@x.example", "*", "\"*\"@x.example"),
            (".a@x.example", ".a", "\".a\"@x.example"),
            ("a.b+tag@x.example", "a.b+tag", "a.b+tag@x.example"),
            ("jörg@x.example", "jörg", "jörg@x.example"),
            // As mail_parser hands them over: quotes already removed.
            ("x y@evil.example", "x y", "\"x y\"@evil.example"),
            ("a\"b@x.example", "a\"b", "\"a\\\"b\"@x.example"),
            ("a@b@x.example", "a@b", "\"a@b\"@x.example"),
            (
                "\"unterminated@x.example",
                "\"unterminated",
                "\"\\\"unterminated\"@x.example",
            ),
            ("#b@x.com", "#b", "\"#b\"@x.com"),
        ];
        for (input, local, shown) in cases {
            let addr = a(input);
            assert_eq!(addr.local(), local, "{input}");
            assert_eq!(addr.to_string(), shown, "{input}");
            assert_eq!(a(shown), addr, "{input}: display re-parses");
        }
        for bad in [
            "",
            "<>",
            "bob",
            "@example.com",
            "\"\"@example.com",
            "bob@",
            "bob@exa mple.com",
            "x\u{1b}y@example.com",
            "\"x\u{7f}\"@example.com",
            "\"x\\\ny\"@example.com",
            "x\ty@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quoted_local_part_slips_past_block_entries_regression() {
        // `From: "x y"@evil.example` lost its address, and with it the `*.evil.example` block.
        let block = p("*@*.evil.example");
        for from in [
            "\"x y\"@evil.example",
            "x y@evil.example",
            "\"x y\"@mail.evil.example",
            "<\"a\\\"b\"@evil.example>",
            "\"john..doe\"@evil.example",
        ] {
            let addr = EmailAddress::parse(from).unwrap_or_else(|e| panic!("{from}: {e}"));
            assert!(block.matches(&addr), "{from}");
        }
        // Nor is a sender lost to an invalid A-label below the blocked domain.
        let odd = a("x@XN--ZZ.evil.example");
        assert_eq!(odd.to_string(), "x@xn--zz.evil.example");
        assert!(block.matches(&odd));
        assert_eq!(a(&odd.to_string()), odd);
        // A quoted entry matches the address however the message spelled it.
        let entry = p("\"X Y\"@evil.example");
        assert_eq!(entry.to_string(), "\"x y\"@evil.example");
        assert!(entry.matches(&a("x y@evil.example")));
        assert!(entry.matches(&a("\"x y\"@evil.example")));
        assert!(!entry.matches(&a("xy@evil.example")));
    }

    #[test]
    fn local_part_cap_holds_after_lower_casing() {
        // `İ` lower-cases to two characters; 64 of them must not be accepted as 64.
        let input = format!("{}@example.com", "İ".repeat(64));
        assert!(EmailAddress::parse(&input).is_err());
        let ok = format!("{}@example.com", "İ".repeat(32));
        let a = EmailAddress::parse(&ok).unwrap();
        assert_eq!(EmailAddress::parse(&a.to_string()).unwrap(), a);
        // The cap counts the unquoted text: 64 quotes are 64 characters, printed as 130.
        let quotes = format!("{}@example.com", "\"".repeat(64));
        let a = EmailAddress::parse(&quotes).unwrap();
        assert_eq!(EmailAddress::parse(&a.to_string()).unwrap(), a);
        assert!(EmailAddress::parse(&format!("{}@example.com", "\"".repeat(65))).is_err());
    }

    #[test]
    fn total_cap_holds_for_the_printed_form() {
        // 64 quotes print as 130 characters; with a 190-character domain that is 321 bytes,
        // although the unquoted form would fit.
        let domain = format!(
            "{}.{}.{}.com",
            "a".repeat(61),
            "b".repeat(60),
            "c".repeat(63)
        );
        assert_eq!(domain.len(), 190);
        let input = format!("{}@{domain}", "\"".repeat(64));
        assert!(input.len() <= MAX_ADDRESS);
        assert!(EmailAddress::parse(&input).is_err());
        let shorter = format!("{}@{domain}", "\"".repeat(63));
        let a = EmailAddress::parse(&shorter).unwrap();
        assert_eq!(a.to_string().len(), 128 + 1 + 190);
        assert_eq!(EmailAddress::parse(&a.to_string()).unwrap(), a);
    }

    #[test]
    fn address_of_320_bytes_is_refused_in_angle_brackets_regression() {
        // Found by fuzzing: the cap was applied before the brackets were removed, so the
        // canonical text of a 319-byte address parsed but `<…>` around it did not.
        let domain = format!(
            "{}.{}.{}.com",
            "a".repeat(61),
            "b".repeat(60),
            "c".repeat(63)
        );
        let a = EmailAddress::parse(&format!("{}@{domain}", "é".repeat(64))).unwrap();
        assert!(a.to_string().len() > MAX_ADDRESS - 2);
        assert_eq!(EmailAddress::parse(&format!("<{a}>")).unwrap(), a);
        assert_eq!(EmailAddress::parse(&format!(" < {a} > ")).unwrap(), a);
    }

    #[test]
    fn regressions_from_fuzzing() {
        // A leading `#` would read as a comment in a text export: an entry must quote it, and
        // every canonical text that starts with `#` is quoted.
        assert!(EmailPattern::parse("#b@x.com", false).is_err());
        assert_eq!(p("\"#b\"@x.com").to_string(), "\"#b\"@x.com");
        assert_eq!(a("#b@x.com").to_string(), "\"#b\"@x.com");
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
        // A quoted `*` is a literal star, not the wildcard.
        let star = p("\"*\"@example.com");
        assert_eq!(star.local(), Some("*"));
        assert_eq!(star.to_string(), "\"*\"@example.com");
        assert!(star.matches(&a("\"*\"@example.com")));
        assert!(!star.matches(&a("any@example.com")));
        let cases = [
            ("\"a\\\"b\"@x.example", "\"a\\\"b\"@x.example"),
            ("\"john..doe\"@x.example", "\"john..doe\"@x.example"),
            ("john..doe@x.example", "\"john..doe\"@x.example"),
            ("\"plain\"@x.example", "plain@x.example"),
            ("\"#x\"@x.example", "\"#x\"@x.example"),
            ("\"a,b\"@x.example", "\"a,b\"@x.example"),
        ];
        for (input, shown) in cases {
            assert_eq!(p(input).to_string(), shown, "{input}");
            assert_eq!(p(shown), p(input), "{input}");
        }
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "example.com",
            "u*@example.com",
            "*@*",
            "*@com",
            "user@ex*.com",
            "x y@example.com",
            "a@b@example.com",
            "#x@example.com",
            "\"x\"y@example.com",
            "\"x@example.com",
            "\"\"@example.com",
            "\"x\u{1b}\"@example.com",
        ] {
            assert!(EmailPattern::parse(bad, false).is_err(), "{bad:?} accepted");
        }
        assert!(EmailPattern::parse("*@com", true).unwrap().1);
    }

    #[test]
    fn sender_domain_of_garbage_addresses() {
        let cases = [
            ("x@evil.example", Some("evil.example")),
            ("<garbage\u{1}@Evil.Example>", Some("evil.example")),
            ("Name <a b c@evil.example> (comment)", Some("evil.example")),
            ("x@ evil.example.", Some("evil.example")),
            ("x@evil.example;junk", Some("evil.example")),
            ("x@evil.example,other@good.example", Some("good.example")),
            ("\"a@good.example\"@evil.example", Some("evil.example")),
            ("x@bücher.de>", Some("xn--bcher-kva.de")),
            ("x y@xn--zz.evil.example>", Some("xn--zz.evil.example")),
            ("x@[192.0.2.1]", None),
            ("x@192.0.2.1", None),
            ("x@", None),
            ("x@>", None),
            ("evil.example", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(
                sender_domain_of(raw).as_ref().map(Domain::as_str),
                want,
                "{raw:?}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever parses, its canonical text parses back to it, and prints the same again.
        #[test]
        fn address_display_round_trips(
            local in "[ -~]{1,20}|\"[ -~]{0,20}\"|[a-z.#*\"\\\\ ]{1,12}|\\PC{1,8}",
            domain in "[a-z]{1,10}\\.(example|com|de)",
        ) {
            let input = format!("{local}@{domain}");
            if let Ok(addr) = EmailAddress::parse(&input) {
                let shown = addr.to_string();
                let again = EmailAddress::parse(&shown);
                proptest::prop_assert_eq!(again.as_ref(), Ok(&addr), "{:?} → {:?}", input, shown);
                proptest::prop_assert_eq!(again.map(|a| a.to_string()), Ok(shown.clone()));
                // An entry written as the canonical text matches the address.
                if let Ok((pattern, _)) = EmailPattern::parse(&shown, true) {
                    proptest::prop_assert!(pattern.matches(&addr), "{:?}", shown);
                    proptest::prop_assert_eq!(pattern.to_string(), shown);
                }
            }
        }
    }
}
