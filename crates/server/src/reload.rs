//! The snapshot being served, and the task that keeps it current.
//!
//! Decisions read the snapshot through an [`ArcSwap`]: a load is a few atomic instructions and
//! never waits for a lock, while the reload task compiles a new snapshot off the decision path
//! and swaps it in whole. The task reads the store's revision every poll interval (a change
//! made by the CLI or another node is served within that interval plus the compile time); when
//! the revision moved it loads the whole policy in one read transaction and compiles it on a
//! blocking thread. When the store cannot be reached, the last snapshot stays in service and
//! the health endpoint says `stale`; when there has never been a store, the empty snapshot
//! (no exemption, no block) answers at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use allowgate_core::{PolicyConfig, Snapshot};
use allowgate_store::{Store, StoreOptions};
use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::metrics::Metrics;

/// What every part of a running server shares.
#[derive(Debug)]
pub struct Shared {
    /// The snapshot decisions are made with.
    pub snapshot: ArcSwap<Snapshot>,
    /// When the snapshot was last confirmed current (ms since the Unix epoch), 0 never.
    confirmed_ms: AtomicU64,
    /// Whether the store answered the last poll.
    store_ok: AtomicBool,
    /// Counters.
    pub metrics: Metrics,
    /// Where decisions are recorded.
    pub history: crate::history::History,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Shared {
    /// A server's shared state, serving `snapshot` until the first reload and recording
    /// decisions into `history`.
    pub fn new(snapshot: Snapshot, history: crate::history::History) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            confirmed_ms: AtomicU64::new(0),
            store_ok: AtomicBool::new(false),
            metrics: Metrics::default(),
            history,
        }
    }

    /// Whether the store answered the last poll.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    /// Seconds since the snapshot was last confirmed current; `None` if it never was (no
    /// store has answered yet).
    pub fn snapshot_age_s(&self) -> Option<f64> {
        match self.confirmed_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_ms().saturating_sub(at) as f64 / 1000.0),
        }
    }

    /// Record that the snapshot is the store's current policy.
    pub(crate) fn confirm(&self) {
        self.store_ok.store(true, Ordering::Relaxed);
        self.confirmed_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn fail(&self) {
        self.store_ok.store(false, Ordering::Relaxed);
        self.metrics.reload_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the reload task gets its store from.
#[derive(Debug, Clone)]
pub struct StoreSource {
    /// The database URL.
    pub url: String,
    /// Store options.
    pub options: StoreOptions,
}

/// Compile a loaded policy on a blocking thread (it can take a quarter of a second for a
/// million entries), logging what was left out.
async fn compile(
    policy: allowgate_store::Policy,
    config: PolicyConfig,
) -> Result<Snapshot, tokio::task::JoinError> {
    for e in &policy.unreadable {
        tracing::warn!(entry = %e.id, reason = %e.reason, "entry left out: it does not validate any more");
    }
    tokio::task::spawn_blocking(move || {
        let (snapshot, warnings) = Snapshot::compile(
            policy.revision,
            config,
            &policy.tenants,
            policy.entries,
            &Default::default(),
        );
        for w in warnings {
            tracing::warn!(entry = %w.entry, "{}", w.message);
        }
        snapshot
    })
    .await
}

/// Keep `shared.snapshot` current until `shutdown` turns true. `store` is the store opened at
/// start-up, if it could be.
pub async fn run(
    shared: Arc<Shared>,
    source: StoreSource,
    mut store: Option<Store>,
    config: PolicyConfig,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => break,
        }
        if *shutdown.borrow() {
            break;
        }
        if store.is_none() {
            match Store::open_with(&source.url, &source.options).await {
                Ok(s) => store = Some(s),
                Err(e) => {
                    shared.fail();
                    if !failing {
                        tracing::warn!(error = %e, "store unavailable; serving the last snapshot");
                        failing = true;
                    }
                    continue;
                }
            }
        }
        let Some(s) = &store else { continue };
        let served = shared.snapshot.load().revision();
        let result = match s.revision().await {
            Ok(r) if r == served && shared.snapshot_age_s().is_some() => Ok(None),
            Ok(_) => reload(s, &config).await.map(Some),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(None) => shared.confirm(),
            Ok(Some((snapshot, took))) => {
                let revision = snapshot.revision();
                let entries = snapshot.entry_count();
                shared.snapshot.store(Arc::new(snapshot));
                shared.confirm();
                shared.metrics.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    revision,
                    entries,
                    took_ms = took.as_millis() as u64,
                    "serving"
                );
            }
            Err(e) => {
                shared.fail();
                if !failing {
                    tracing::warn!(error = %e, "cannot read the store; serving the last snapshot");
                }
            }
        }
        failing = !shared.store_ok();
    }
    if let Some(s) = store {
        s.close().await;
    }
}

/// Load and compile the current policy.
async fn reload(store: &Store, config: &PolicyConfig) -> Result<(Snapshot, Duration), String> {
    let started = Instant::now();
    let policy = store.load_policy().await.map_err(|e| e.to_string())?;
    let snapshot = compile(policy, config.clone())
        .await
        .map_err(|e| format!("compiling the snapshot failed: {e}"))?;
    Ok((snapshot, started.elapsed()))
}
