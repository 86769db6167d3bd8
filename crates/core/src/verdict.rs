//! The result of evaluating a message: a decision that explains itself.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use allowgate_types::{
    CheckId, CheckSet, CountryCode, Domain, EmailAddress, EntryId, EntryKind, EntryValue, List,
    Scope, SenderSource, TenantName,
};
use serde::Serialize;

/// Implements `Display` as the same keyword serde writes.
macro_rules! display_keywords {
    ($t:ty { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $t {
            /// The keyword (as in JSON and headers).
            pub fn as_str(self) -> &'static str {
                match self { $(<$t>::$variant => $text),* }
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// What to do with the message (or recipient). Ordered from mildest to harshest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver.
    Accept,
    /// Deliver marked as spam.
    Tag,
    /// Hold in quarantine.
    Quarantine,
    /// Refuse for now (greylisting): a real sender retries.
    Defer,
    /// Refuse.
    Reject,
}

display_keywords!(Action {
    Accept => "accept",
    Tag => "tag",
    Quarantine => "quarantine",
    Defer => "defer",
    Reject => "reject",
});

/// The status shown in email history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Delivered because an allow entry exempted it.
    Clean,
    /// Delivered; no exemption applied.
    Pass,
    /// Refused by a block entry.
    Blocked,
    /// Temporarily refused by greylisting.
    Greylisted,
    /// Delivered marked as spam.
    Spam,
    /// Held in quarantine.
    Quarantined,
    /// Refused because a check failed.
    Rejected,
}

display_keywords!(Status {
    Clean => "clean",
    Pass => "pass",
    Blocked => "blocked",
    Greylisted => "greylisted",
    Spam => "spam",
    Quarantined => "quarantined",
    Rejected => "rejected",
});

impl Status {
    /// The status as history shows it: `Clean`, `Blocked`, …
    pub fn title(self) -> &'static str {
        match self {
            Status::Clean => "Clean",
            Status::Pass => "Pass",
            Status::Blocked => "Blocked",
            Status::Greylisted => "Greylisted",
            Status::Spam => "Spam",
            Status::Quarantined => "Quarantined",
            Status::Rejected => "Rejected",
        }
    }
}

/// The outcome of one check. For `spf` the names are exactly RFC 7208's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Bypassed by allow entries.
    Bypassed,
    /// Ran and passed.
    Pass,
    /// Ran and failed.
    Fail,
    /// SPF `softfail`.
    #[serde(rename = "softfail")]
    SoftFail,
    /// SPF `neutral`.
    Neutral,
    /// Ran and found nothing to judge (no SPF record, no DKIM signature, …).
    None,
    /// A temporary error (DNS timeout, …).
    #[serde(rename = "temperror")]
    TempError,
    /// A permanent error (a broken record, …).
    #[serde(rename = "permerror")]
    PermError,
    /// Listed (an RBL lists the client).
    Listed,
    /// Greylisted: deferred until the sender retries.
    Greylisted,
    /// Not run because an ignore entry covers the sender (RBLs for an ignored client).
    Skipped,
    /// Not run (needs the network, a content scanner or data not configured here).
    NotRun,
}

display_keywords!(Outcome {
    Bypassed => "bypassed",
    Pass => "pass",
    Fail => "fail",
    SoftFail => "softfail",
    Neutral => "neutral",
    None => "none",
    TempError => "temperror",
    PermError => "permerror",
    Listed => "listed",
    Greylisted => "greylisted",
    Skipped => "skipped",
    NotRun => "not_run",
});

impl Outcome {
    /// How bad the outcome is, for combining tenants (the worst wins): bypassed < passing and
    /// inconclusive results < not run < failures.
    pub fn severity(self) -> u8 {
        match self {
            Outcome::Bypassed => 0,
            Outcome::Pass => 1,
            Outcome::None => 2,
            Outcome::Neutral => 3,
            Outcome::Skipped => 4,
            Outcome::NotRun => 5,
            Outcome::SoftFail => 6,
            Outcome::TempError => 7,
            Outcome::PermError => 8,
            Outcome::Greylisted => 9,
            Outcome::Listed => 10,
            Outcome::Fail => 11,
        }
    }

    /// Whether the outcome is a failure a policy can act on (`fail`, `listed`).
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Fail | Outcome::Listed)
    }
}

/// A check's result as the checks crate (or rspamd) reports it: an outcome and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The outcome.
    pub outcome: Outcome,
    /// Why, in words (`203.0.113.9 is not permitted by example.com`, `listed by zen.example`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl CheckResult {
    /// A result without a reason.
    pub fn new(outcome: Outcome) -> CheckResult {
        CheckResult {
            outcome,
            reason: None,
        }
    }

    /// A result with its reason.
    pub fn because(outcome: Outcome, reason: impl Into<String>) -> CheckResult {
        CheckResult {
            outcome,
            reason: Some(reason.into()),
        }
    }
}

/// Which fact of the message an entry matched: typed provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum MatchedOn {
    /// The effective client IP.
    ClientIp {
        /// The address.
        ip: IpAddr,
    },
    /// A relay in `Received:` walked past as our own infrastructure.
    InternalRelay {
        /// The relay's address.
        ip: IpAddr,
    },
    /// The client IP, through the SPF record of an `spf-domain` entry's domain.
    SpfDomain {
        /// The client IP.
        ip: IpAddr,
        /// The domain whose SPF record authorises it.
        domain: Domain,
    },
    /// The forward-confirmed client host name.
    ClientHost {
        /// The name.
        host: Domain,
    },
    /// The GeoIP country of the client.
    Country {
        /// The country.
        country: CountryCode,
        /// The client IP.
        ip: IpAddr,
    },
    /// A sender address.
    Sender {
        /// The address.
        address: EmailAddress,
        /// Where it was found.
        source: SenderSource,
    },
    /// The domain of a sender address whose local part could not be read.
    SenderDomain {
        /// The domain.
        domain: Domain,
        /// Where it was found.
        source: SenderSource,
    },
    /// A domain in the message body.
    BodyDomain {
        /// The domain.
        domain: Domain,
    },
    /// An IP literal in the message body.
    BodyIp {
        /// The address.
        ip: IpAddr,
    },
}

impl fmt::Display for MatchedOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchedOn::ClientIp { ip } => write!(f, "client ip {ip}"),
            MatchedOn::InternalRelay { ip } => write!(f, "internal relay {ip} in Received:"),
            MatchedOn::SpfDomain { ip, domain } => {
                write!(f, "client ip {ip} (authorised by SPF of {domain})")
            }
            MatchedOn::ClientHost { host } => write!(f, "client host {host}"),
            MatchedOn::Country { country, ip } => write!(f, "country {country} of {ip}"),
            MatchedOn::Sender { address, source } => write!(f, "sender {address} ({source})"),
            MatchedOn::SenderDomain { domain, source } => {
                write!(
                    f,
                    "sender domain {domain} ({source}; local part unreadable)"
                )
            }
            MatchedOn::BodyDomain { domain } => write!(f, "body domain {domain}"),
            MatchedOn::BodyIp { ip } => write!(f, "body ip {ip}"),
        }
    }
}

/// An entry that matched, and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MatchedEntry {
    /// Its id.
    pub id: EntryId,
    /// Its list.
    pub list: List,
    /// Its kind.
    pub kind: EntryKind,
    /// Its value.
    pub value: EntryValue,
    /// Its scope.
    pub scope: Scope,
    /// Checks it bypasses (resolved; empty for block and ignore entries).
    pub checks: CheckSet,
    /// What it matched, in words: `client ip 192.0.2.7`, `sender alice@example.com (MAIL FROM)`.
    pub matched_on: String,
    /// What it matched, typed.
    pub on: MatchedOn,
    /// Whether it took effect (an allow entry needing authentication may match but not apply).
    pub applied: bool,
    /// Why it did not apply, or a remark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The decision for the recipients of one tenant (or of no tenant).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantVerdict {
    /// The tenant, or `None` when the recipient domains belong to no tenant (global entries only).
    pub tenant: Option<TenantName>,
    /// Its recipients.
    pub recipients: Vec<EmailAddress>,
    /// The effective client IP after walking `Received:` past internal relays.
    pub client_ip: IpAddr,
    /// Checks bypassed for this tenant.
    pub bypass: CheckSet,
    /// For every bypassed check, the entries that bypass it.
    pub bypassed_by: BTreeMap<CheckId, Vec<EntryId>>,
    /// Every entry that matched.
    pub matched: Vec<MatchedEntry>,
    /// Block entries that block the message (not bypassed).
    pub blocked_by: Vec<EntryId>,
    /// Ignore entries that matched.
    pub ignored_by: Vec<EntryId>,
    /// Outcome of every check.
    pub checks: BTreeMap<CheckId, Outcome>,
    /// What to do.
    pub action: Action,
    /// History status.
    pub status: Status,
}

/// Per-recipient decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientVerdict {
    /// The recipient.
    pub address: EmailAddress,
    /// Its tenant.
    pub tenant: Option<TenantName>,
    /// What to do for this recipient.
    pub action: Action,
    /// Its status.
    pub status: Status,
}

/// The whole decision, explaining itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// What to do with the message (a reject applies only if every recipient is rejected;
    /// otherwise see `recipients` for per-recipient rejects at RCPT time).
    pub action: Action,
    /// History status.
    pub status: Status,
    /// The tenant when the recipients belong to exactly one; `None` otherwise.
    pub tenant: Option<TenantName>,
    /// Every tenant involved (`None` for recipients of no tenant).
    pub tenants: Vec<Option<TenantName>>,
    /// The effective client IP (of the first tenant group; see `groups` for each).
    pub client_ip: IpAddr,
    /// The connecting IP as given.
    pub connecting_ip: IpAddr,
    /// The one sender address used for allow matching.
    pub sender: Option<EmailAddress>,
    /// Where that address came from.
    pub sender_source: Option<SenderSource>,
    /// Checks bypassed for the whole message (intersection over tenants).
    pub bypassed: Vec<CheckId>,
    /// For every bypassed check, the entries that bypass it.
    pub bypassed_by: BTreeMap<CheckId, Vec<EntryId>>,
    /// Every entry that matched, for any tenant.
    pub matched: Vec<MatchedEntry>,
    /// Block entries that block the message for at least one tenant.
    pub blocked_by: Vec<EntryId>,
    /// Ignore entries that matched.
    pub ignored_by: Vec<EntryId>,
    /// Outcome of every check for the message as a whole.
    pub checks: BTreeMap<CheckId, Outcome>,
    /// Why a check came out as it did, where the check said.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub check_reasons: BTreeMap<CheckId, String>,
    /// Per-recipient decisions.
    pub recipients: Vec<RecipientVerdict>,
    /// Per-tenant details.
    pub groups: Vec<TenantVerdict>,
    /// Human explanations.
    pub notes: Vec<String>,
    /// The configuration revision that decided.
    pub revision: i64,
}

impl Verdict {
    /// A one-line reason for history: `Clean: exempted by entry #12`.
    pub fn reason(&self) -> String {
        let ids = |v: &mut dyn Iterator<Item = EntryId>| {
            v.map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
        };
        match self.status {
            Status::Clean => {
                let mut all: Vec<EntryId> = self.bypassed_by.values().flatten().copied().collect();
                all.sort_unstable();
                all.dedup();
                format!("Clean: exempted by entry {}", ids(&mut all.into_iter()))
            }
            Status::Blocked | Status::Quarantined | Status::Spam | Status::Rejected
                if !self.blocked_by.is_empty() =>
            {
                format!(
                    "{}: blocked by entry {}",
                    self.status.title(),
                    ids(&mut self.blocked_by.iter().copied())
                )
            }
            other => other.title().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_json() {
        for o in [
            Outcome::Bypassed,
            Outcome::SoftFail,
            Outcome::TempError,
            Outcome::PermError,
            Outcome::NotRun,
        ] {
            assert_eq!(
                serde_json::to_value(o).ok(),
                Some(serde_json::Value::String(o.to_string()))
            );
        }
        for a in [Action::Accept, Action::Defer, Action::Reject] {
            assert_eq!(
                serde_json::to_value(a).ok(),
                Some(serde_json::Value::String(a.to_string()))
            );
        }
        assert_eq!(Status::Quarantined.to_string(), "quarantined");
    }
}
