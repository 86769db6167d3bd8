//! allowgate's policy engine.
//!
//! Entries are compiled into an immutable [`Snapshot`]; [`evaluate`] matches a message
//! [`Context`] against it and returns a [`Verdict`] that explains itself. No I/O happens here:
//! the store loads entries, the checks crate supplies network results.
//!
//! ```
//! use allowgate_core::{Context, PolicyConfig, Snapshot, evaluate};
//! use allowgate_types::{EntryId, Entry, EntryKind, EntrySpec, List, EmailAddress, CheckSet};
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
//! let verdict = evaluate(&snapshot, &ctx);
//! assert_eq!(verdict.reason(), "Clean: exempted by entry #12");
//! ```
#![deny(missing_docs)]

mod evaluate;
pub mod ipmap;
pub mod linemap;
mod message;
mod snapshot;
pub mod v6map;
mod verdict;

pub use evaluate::{Context, evaluate};
pub use message::MessageFacts;
pub use snapshot::{
    BlockAction, CompileWarning, CompiledEntry, PolicyConfig, Snapshot, SpfExpansion,
};
pub use verdict::{
    Action, CheckOutcome, MatchedEntry, RecipientVerdict, Status, TenantVerdict, Verdict,
};
