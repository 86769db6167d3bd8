//! A frozen copy of `allowgate-core`'s engine as it was before the staged evaluation (commit
//! `1477805`): `Snapshot::compile` with the IPv4/IPv6 line maps, and the one-call `evaluate()`
//! that builds a whole `Verdict`. `allowgate-bench decide` runs it beside the product's path on
//! the same data, in the same run, as the baseline the new path is measured against. Nothing
//! here is used by allowgate.
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
