//! Check ids, their groups, and sets of checks.

use std::fmt;
use std::str::FromStr;

use crate::error::ValueError;

macro_rules! checks {
    ($( $variant:ident = $id:literal, $group:ident, $label:literal; )*) => {
        /// A check that an allow entry can let a sender bypass. The ids are stable.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum CheckId {
            $(
                #[doc = $label]
                $variant,
            )*
        }

        impl CheckId {
            /// Every check, in display order.
            pub const ALL: &'static [CheckId] = &[$(CheckId::$variant),*];

            /// The stable id (`spf`, `safe-links`, …).
            pub fn id(self) -> &'static str {
                match self { $(CheckId::$variant => $id),* }
            }

            /// The group admins see it in.
            pub fn group(self) -> CheckGroup {
                match self { $(CheckId::$variant => CheckGroup::$group),* }
            }

            /// A human label.
            pub fn label(self) -> &'static str {
                match self { $(CheckId::$variant => $label),* }
            }
        }
    };
}

checks! {
    Spf = "spf", SenderAuthentication, "SPF";
    Dkim = "dkim", SenderAuthentication, "DKIM";
    Dmarc = "dmarc", SenderAuthentication, "DMARC";
    Spoof = "spoof", SenderAuthentication, "Anti-spoof";
    Rbl = "rbl", Connection, "Real-time IP blocklists";
    Greylisting = "greylisting", Connection, "Greylisting";
    Reputation = "reputation", Connection, "Reputation";
    Country = "country", Connection, "Country";
    Blocklist = "blocklist", LocalLists, "Block list";
    Spam = "spam", Suspicious, "Spam";
    Graymail = "graymail", Suspicious, "Graymail";
    ExploitedDomains = "exploited-domains", Suspicious, "Frequently exploited domains";
    SuspiciousIntent = "suspicious-intent", Suspicious, "Suspicious intent";
    Phishing = "phishing", Malicious, "Phishing";
    Fraud = "fraud", Malicious, "Fraud";
    Malicious = "malicious", Malicious, "Malicious";
    Malware = "malware", Malicious, "Malware";
    SafeLinks = "safe-links", DeliveryProcessing, "Safe links";
    SafeAttachments = "safe-attachments", DeliveryProcessing, "Safe attachments";
}

impl fmt::Display for CheckId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for CheckId {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        CheckId::ALL
            .iter()
            .copied()
            .find(|c| c.id().eq_ignore_ascii_case(s))
            .ok_or_else(|| ValueError::UnknownCheck {
                input: s.to_string(),
                known: known_names(),
            })
    }
}

/// The groups checks are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CheckGroup {
    /// SPF, DKIM, DMARC, anti-spoof.
    SenderAuthentication,
    /// RBL, greylisting, reputation, country.
    Connection,
    /// Our own block list.
    LocalLists,
    /// Spam, graymail, …
    Suspicious,
    /// Phishing, fraud, malware, …
    Malicious,
    /// Downstream processing signalled in headers.
    DeliveryProcessing,
}

impl CheckGroup {
    /// Every group, in display order.
    pub const ALL: &'static [CheckGroup] = &[
        CheckGroup::SenderAuthentication,
        CheckGroup::Connection,
        CheckGroup::LocalLists,
        CheckGroup::Suspicious,
        CheckGroup::Malicious,
        CheckGroup::DeliveryProcessing,
    ];

    /// The stable id used in `--bypass` (`sender-authentication`, …).
    pub fn id(self) -> &'static str {
        match self {
            CheckGroup::SenderAuthentication => "sender-authentication",
            CheckGroup::Connection => "connection",
            CheckGroup::LocalLists => "local-lists",
            CheckGroup::Suspicious => "suspicious",
            CheckGroup::Malicious => "malicious-group",
            CheckGroup::DeliveryProcessing => "delivery-processing",
        }
    }

    /// The heading admins see.
    pub fn label(self) -> &'static str {
        match self {
            CheckGroup::SenderAuthentication => "Sender authentication",
            CheckGroup::Connection => "Connection",
            CheckGroup::LocalLists => "Local lists",
            CheckGroup::Suspicious => "Suspicious",
            CheckGroup::Malicious => "Malicious",
            CheckGroup::DeliveryProcessing => "Delivery processing",
        }
    }

    /// The checks of this group.
    pub fn checks(self) -> CheckSet {
        CheckId::ALL
            .iter()
            .filter(|c| c.group() == self)
            .copied()
            .collect()
    }
}

fn known_names() -> String {
    let mut names: Vec<&str> = vec!["all"];
    names.extend(CheckId::ALL.iter().map(|c| c.id()));
    names.extend(CheckGroup::ALL.iter().map(|g| g.id()));
    names.join(", ")
}

/// A set of checks. It may be the literal `all`, which means every check except those the
/// deployment can never bypass; [`CheckSet::resolve`] turns it into concrete checks.
///
/// ```
/// use allowgate_types::{CheckSet, CheckId};
/// let set: CheckSet = "spf, dkim".parse().unwrap();
/// assert!(set.contains(CheckId::Spf));
/// assert_eq!(set.to_string(), "spf,dkim");
/// let never: CheckSet = "malware".parse().unwrap();
/// assert!(!"all".parse::<CheckSet>().unwrap().resolve(never).contains(CheckId::Malware));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct CheckSet(u32);

const ALL_FLAG: u32 = 1 << 31;
/// Bits of every concrete check (check ids are `0..ALL.len()`, in declaration order).
const EVERY_BITS: u32 = (1 << CheckId::ALL.len()) - 1;

impl CheckSet {
    /// The empty set.
    pub const EMPTY: CheckSet = CheckSet(0);
    /// The literal `all`.
    pub const ALL: CheckSet = CheckSet(ALL_FLAG);

    /// The set with one check.
    pub fn one(check: CheckId) -> CheckSet {
        CheckSet(1 << check as u32)
    }

    /// Every concrete check.
    pub const fn every() -> CheckSet {
        CheckSet(EVERY_BITS)
    }

    /// Whether this is the literal `all`.
    pub fn is_all(self) -> bool {
        self.0 & ALL_FLAG != 0
    }

    /// Whether empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Concrete checks: `all` becomes every check minus `never_bypass`; named checks in
    /// `never_bypass` are removed too.
    pub fn resolve(self, never_bypass: CheckSet) -> CheckSet {
        let bits = if self.is_all() {
            CheckSet::every().0
        } else {
            self.0
        };
        CheckSet(bits & !never_bypass.resolve_bits())
    }

    fn resolve_bits(self) -> u32 {
        if self.is_all() {
            CheckSet::every().0
        } else {
            self.0
        }
    }

    /// Whether the concrete check is in the set (`all` contains every check).
    pub fn contains(self, check: CheckId) -> bool {
        self.resolve_bits() & (1 << check as u32) != 0
    }

    /// Add a check.
    pub fn insert(&mut self, check: CheckId) {
        self.0 |= 1 << check as u32;
    }

    /// Union.
    pub fn union(self, other: CheckSet) -> CheckSet {
        CheckSet(self.0 | other.0)
    }

    /// Intersection of concrete checks.
    pub fn intersection(self, other: CheckSet) -> CheckSet {
        CheckSet(self.resolve_bits() & other.resolve_bits())
    }

    /// The concrete checks, in display order.
    pub fn iter(self) -> impl Iterator<Item = CheckId> {
        CheckId::ALL
            .iter()
            .copied()
            .filter(move |c| self.contains(*c))
    }

    /// The raw bits (for compact storage in compiled snapshots).
    pub fn bits(self) -> u32 {
        self.0
    }

    /// From raw bits produced by [`CheckSet::bits`]; unknown bits are dropped.
    pub fn from_bits(bits: u32) -> CheckSet {
        CheckSet(bits & (CheckSet::every().0 | ALL_FLAG))
    }
}

impl FromIterator<CheckId> for CheckSet {
    fn from_iter<T: IntoIterator<Item = CheckId>>(iter: T) -> Self {
        let mut set = CheckSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl FromStr for CheckSet {
    type Err = ValueError;
    /// Check ids and group ids separated by commas, semicolons or white space; `all`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut set = CheckSet::EMPTY;
        for token in s
            .split([',', ';', ' ', '\t', '\n', '|'])
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            if token.eq_ignore_ascii_case("all") {
                set.0 |= ALL_FLAG;
            } else if let Some(g) = CheckGroup::ALL
                .iter()
                .find(|g| g.id().eq_ignore_ascii_case(token))
            {
                set = set.union(g.checks());
            } else {
                set.insert(token.parse()?);
            }
        }
        if set.is_all() {
            set = CheckSet::ALL;
        }
        Ok(set)
    }
}

impl fmt::Display for CheckSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        let mut first = true;
        for c in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(c.id())?;
        }
        Ok(())
    }
}

impl serde::Serialize for CheckSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(if self.is_all() {
            vec!["all"]
        } else {
            self.iter().map(CheckId::id).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        let collected: CheckSet = CheckId::ALL.iter().copied().collect();
        assert_eq!(collected, CheckSet::every());
        for c in CheckId::ALL {
            assert_eq!(c.id().parse::<CheckId>().unwrap(), *c);
        }
        assert_eq!(CheckId::ALL.len(), 19);
        assert!(CheckId::ALL.len() < 31);
    }

    #[test]
    fn parse_sets() {
        let s: CheckSet = "SPF;dkim  greylisting".parse().unwrap();
        assert_eq!(s.to_string(), "spf,dkim,greylisting");
        let s: CheckSet = "sender-authentication".parse().unwrap();
        assert_eq!(s.to_string(), "spf,dkim,dmarc,spoof");
        let s: CheckSet = "spf,all".parse().unwrap();
        assert_eq!(s, CheckSet::ALL);
        assert_eq!(s.to_string(), "all");
        assert!("spf,bogus".parse::<CheckSet>().is_err());
        assert!("".parse::<CheckSet>().unwrap().is_empty());
    }

    #[test]
    fn all_resolves_without_never_bypass() {
        let never = CheckSet::one(CheckId::Malware);
        let r = CheckSet::ALL.resolve(never);
        assert!(!r.contains(CheckId::Malware));
        assert!(r.contains(CheckId::Spam));
        assert!(!r.is_all());
        let named: CheckSet = "malware,spf".parse().unwrap();
        assert_eq!(named.resolve(never).to_string(), "spf");
        assert!(CheckSet::ALL.contains(CheckId::Malware));
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "spf",
            "all",
            "spf,dkim,dmarc",
            "safe-links,safe-attachments",
            "",
        ] {
            let set: CheckSet = s.parse().unwrap();
            assert_eq!(set.to_string(), s);
        }
    }
}
