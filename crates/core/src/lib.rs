//! allowgate's policy engine.
//!
//! Entries are compiled into an immutable [`Snapshot`]. A message is then evaluated in three
//! stages, so that a server knows what is exempted before it runs any check:
//!
//! 1. [`exemptions`]: match every list of the global and tenant scopes against the message's
//!    facts ([`Context`]). The [`Exemptions`] say, per tenant, which checks are bypassed and
//!    by which entries, which block entries hit, which ignore entries apply, and which
//!    `require_auth` entries wait for the sender's authentication.
//! 2. The caller runs the checks that are not bypassed ([`Exemptions::checks_to_run`]) and
//!    records their results, each with its reason, in [`CheckResults`].
//! 3. [`decide`]: the [`Decision`] (action, status, the `X-Allowgate` header) from both; its
//!    [`Decision::verdict`] explains everything when something asks.
//!
//! [`evaluate`] runs the three stages with no check results (every network check `not_run`).
//! No I/O happens here: the store loads entries, the checks crate supplies results.
//!
//! ```
//! use allowgate_core::{CheckResults, Context, PolicyConfig, Snapshot, decide, exemptions};
//! use allowgate_types::{EntryId, Entry, EntryKind, EntrySpec, List, EmailAddress};
//!
//! let spec = EntrySpec {
//!     list: Some(List::Allow),
//!     kind: Some(EntryKind::Ip),
//!     value: "192.0.2.0/24".into(),
//!     checks: Some("spf,rbl".parse().unwrap()),
//!     ..Default::default()
//! };
//! let (entry, _) = spec.validate().unwrap();
//! let entry = Entry { id: EntryId(12), entry, created_at: chrono::Utc::now(), created_by: "doc".into() };
//! let (snapshot, _) = Snapshot::compile(1, PolicyConfig::default(), &[], [entry], &Default::default());
//! let ctx = Context::new(chrono::Utc::now(), "192.0.2.7".parse().unwrap(),
//!                        vec![EmailAddress::parse("bob@example.com").unwrap()]);
//! let found = exemptions(&snapshot, &ctx);
//! assert_eq!(found.bypass().to_string(), "spf,rbl");
//! let results = CheckResults::new(); // stage two would run DKIM, DMARC, … here
//! let decision = decide(&found, &results);
//! let mut header = String::new();
//! decision.write_header(&mut header).unwrap();
//! assert_eq!(header, "status=clean; bypass=spf,rbl; entries=12");
//! assert_eq!(decision.verdict().reason(), "Clean: exempted by entry #12");
//! ```
#![deny(missing_docs)]

mod context;
mod decide;
mod exempt;
pub mod ipmap;
mod message;
mod names;
mod snapshot;
mod verdict;

pub use context::Context;
pub use decide::{CheckResults, Decision, decide};
pub use exempt::{Exemptions, exemptions};
pub use message::{
    HeaderSender, MAX_BODY_ITEMS, MAX_HEADER_SENDERS, MAX_MESSAGE_BYTES, MAX_RECEIVED,
    MessageFacts, SenderAddress,
};
pub use snapshot::{BlockAction, CompileWarning, PolicyConfig, Snapshot, SpfExpansion};
pub use verdict::{
    Action, CheckResult, MatchedEntry, MatchedOn, Outcome, RecipientVerdict, Status, TenantVerdict,
    Verdict,
};

/// All three stages with no check results: every check allowgate does not decide itself is
/// reported `not_run`, and `require_auth` entries do not apply. The whole explanation is built.
pub fn evaluate(snapshot: &Snapshot, ctx: &Context) -> Verdict {
    let results = CheckResults::new();
    let found = exemptions(snapshot, ctx);
    decide(&found, &results).verdict()
}
