//! The result of evaluating a message: a decision that explains itself.

use std::collections::BTreeMap;
use std::net::IpAddr;

use allowgate_types::{
    CheckId, CheckSet, EmailAddress, EntryId, EntryKind, EntryValue, List, Scope, SenderSource,
    TenantName,
};
use serde::Serialize;

/// What to do with the message (or recipient).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Deliver.
    Accept,
    /// Deliver marked as spam.
    Tag,
    /// Hold in quarantine.
    Quarantine,
    /// Refuse.
    Reject,
}

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

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Bypassed by allow entries.
    Bypassed,
    /// Ran and passed.
    Pass,
    /// Not run because an ignore entry covers the sender (e.g. RBL for an ignored IP).
    Skipped,
    /// Not run (needs the network, a content scanner or data not configured here).
    NotRun,
    /// Ran and failed.
    Fail,
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
    /// What it matched: `client ip 192.0.2.7`, `sender alice@example.com (MAIL FROM)`, …
    pub matched_on: String,
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
    pub checks: BTreeMap<CheckId, CheckOutcome>,
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
    pub checks: BTreeMap<CheckId, CheckOutcome>,
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
        let ids = |v: &[EntryId]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match self.status {
            Status::Clean => {
                let mut all: Vec<EntryId> = self.bypassed_by.values().flatten().copied().collect();
                all.sort_unstable();
                all.dedup();
                format!("Clean: exempted by entry {}", ids(&all))
            }
            Status::Blocked | Status::Quarantined | Status::Spam | Status::Rejected
                if !self.blocked_by.is_empty() =>
            {
                format!(
                    "{:?}: blocked by entry {}",
                    self.status,
                    ids(&self.blocked_by)
                )
            }
            other => format!("{other:?}"),
        }
    }
}
