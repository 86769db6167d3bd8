//! Loading the policy: one consistent read of the store, compiled into a [`Snapshot`].

use std::time::{Duration, Instant};

use allowgate_core::{CompileWarning, PolicyConfig, Snapshot, SpfExpansion};
use allowgate_store::{Store, StoreError, UnreadableEntry};

/// A compiled policy and what it took to make it.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The snapshot, at the store's revision when it was read.
    pub snapshot: Snapshot,
    /// Entries left out while compiling, and why.
    pub warnings: Vec<CompileWarning>,
    /// Entry rows left out because they do not validate any more (each names its row).
    pub unreadable: Vec<UnreadableEntry>,
    /// Time spent reading the store.
    pub read: Duration,
    /// Time spent compiling.
    pub compile: Duration,
}

/// Read the revision, the tenants and every entry in one read transaction (so the snapshot
/// never mixes revisions) and compile them with `config` and the SPF expansions `spf`.
pub async fn load(
    store: &Store,
    config: &PolicyConfig,
    spf: &SpfExpansion,
) -> Result<LoadedPolicy, StoreError> {
    let started = Instant::now();
    let policy = store.load_policy().await?;
    let read = started.elapsed();
    let started = Instant::now();
    let (snapshot, warnings) = Snapshot::compile(
        policy.revision,
        config.clone(),
        &policy.tenants,
        policy.entries,
        spf,
    );
    Ok(LoadedPolicy {
        snapshot,
        warnings,
        unreadable: policy.unreadable,
        read,
        compile: started.elapsed(),
    })
}
