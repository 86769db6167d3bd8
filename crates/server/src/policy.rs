//! Loading the policy: one consistent read of the store, compiled into a [`Snapshot`].

use std::time::{Duration, Instant};

use allowgate_core::{CompileWarning, PolicyConfig, Snapshot, SpfExpansion};
use allowgate_store::{Store, StoreError};

/// A compiled policy and what it took to make it.
#[derive(Debug)]
pub struct LoadedPolicy {
    /// The snapshot, at the store's revision when it was read.
    pub snapshot: Snapshot,
    /// Entries left out while compiling, and why.
    pub warnings: Vec<CompileWarning>,
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
    let revision = store.revision().await?;
    let tenants = store.tenants().await?;
    let entries = store.entries(&Default::default()).await?;
    let read = started.elapsed();
    let started = Instant::now();
    let (snapshot, warnings) = Snapshot::compile(revision, config.clone(), &tenants, entries, spf);
    Ok(LoadedPolicy {
        snapshot,
        warnings,
        read,
        compile: started.elapsed(),
    })
}
