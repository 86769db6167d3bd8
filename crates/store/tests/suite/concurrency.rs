//! Several writers and readers at once: bounded waiting for the write lock, consistent loads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allowgate_store::{ErrorKind, ImportFamily, ImportFormat, Store, StoreError, StoreOptions};
use allowgate_types::{EntryKind, List};

use super::*;

async fn open_with_timeout(db: &TestDb, busy_timeout: Duration) -> Store {
    Store::open_with(&db.url, &StoreOptions { busy_timeout })
        .await
        .unwrap()
}

/// Start an import on `store` that holds the write lock for `hold` (its progress callback
/// sleeps inside the transaction); returns once the lock is held, with the import's task.
async fn import_holding_the_lock(
    store: &Store,
    hold: Duration,
) -> tokio::task::JoinHandle<Result<allowgate_store::ImportReport, allowgate_store::ImportError>> {
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let store = store.clone();
    let task = tokio::spawn(async move {
        let locked = Mutex::new(Some(locked));
        let slept = AtomicBool::new(false);
        let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
        // The first call with done == total is the last chunk's, inside the transaction; the
        // second comes after the commit.
        let progress = |done: u64, total: u64| {
            if done == total && !slept.swap(true, Ordering::SeqCst) {
                if let Some(tx) = locked.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                std::thread::sleep(hold);
            }
        };
        store
            .import(
                &req,
                b"198.51.100.1\n198.51.100.2\n",
                &actor("slow-importer"),
                &progress,
            )
            .await
    });
    is_locked.await.unwrap();
    task
}

pub async fn a_change_waits_for_another_up_to_the_busy_timeout<B: Backend>(b: &B) {
    let db = b.fresh();
    let first = open_with_timeout(&db, Duration::from_secs(10)).await;
    let quick = open_with_timeout(&db, Duration::from_millis(200)).await;
    let patient = open_with_timeout(&db, Duration::from_secs(10)).await;

    // A writer that gives up after 200 ms while another holds the lock for 2 s: Busy.
    let holder = import_holding_the_lock(&first, Duration::from_secs(2)).await;
    let started = Instant::now();
    let err = quick
        .add_entry(
            &new(List::Block, EntryKind::Ip, "192.0.2.1"),
            &actor("quick"),
        )
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, StoreError::Busy { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Busy);
    let message = err.to_string();
    assert!(
        message.contains("another change is in progress") && message.contains("retry"),
        "{message}"
    );
    assert!(!message.contains("locked"), "{message}");
    assert!(std::error::Error::source(&err).is_some());
    assert!(
        waited >= Duration::from_millis(150) && waited < Duration::from_millis(1900),
        "gave up after {waited:?}"
    );
    // The same for an import, which reports it as a store error.
    let err = quick
        .import(
            &request(List::Block, ImportFamily::Server, ImportFormat::Text),
            b"192.0.2.9",
            &actor("quick"),
            &no_progress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            allowgate_store::ImportError::Store(StoreError::Busy { .. })
        ),
        "{err:?}"
    );
    assert_eq!(holder.await.unwrap().unwrap().added, 2);

    // A writer with the default timeout waits for the holder and then succeeds.
    let holder = import_holding_the_lock(&first, Duration::from_millis(500)).await;
    let started = Instant::now();
    patient
        .add_entry(
            &new(List::Block, EntryKind::Ip, "192.0.2.1"),
            &actor("patient"),
        )
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    holder.await.unwrap().unwrap();

    // Refused changes left nothing behind: two imports (one revision each, the second adding
    // nothing) and the patient entry.
    let entries = quick.entries(&all()).await.unwrap();
    assert_eq!(
        values(&entries),
        ["198.51.100.1", "198.51.100.2", "192.0.2.1"]
    );
    assert_eq!(quick.revision().await.unwrap(), 2);
    for store in [first, quick, patient] {
        store.close().await;
    }
}

pub async fn concurrent_imports_all_succeed_one_after_another<B: Backend>(b: &B) {
    let db = b.fresh();
    let stores = [
        open_with_timeout(&db, Duration::from_secs(30)).await,
        open_with_timeout(&db, Duration::from_secs(30)).await,
    ];
    let mut tasks = Vec::new();
    for i in 0..6u32 {
        let store = stores[i as usize % 2].clone();
        tasks.push(tokio::spawn(async move {
            let text: String = (0..2000u32)
                .map(|j| format!("10.{i}.{}.{}\n", j >> 8, j & 255))
                .collect();
            let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
            store
                .import(
                    &req,
                    text.as_bytes(),
                    &actor(&format!("importer-{i}")),
                    &no_progress,
                )
                .await
        }));
    }
    let mut revisions = Vec::new();
    for task in tasks {
        let report = task.await.unwrap().unwrap();
        assert_eq!(report.added, 2000);
        revisions.push(report.revision);
    }
    revisions.sort();
    assert_eq!(revisions, [1, 2, 3, 4, 5, 6]);
    let policy = stores[0].load_policy().await.unwrap();
    assert_eq!((policy.revision, policy.entries.len()), (6, 12_000));
    // Every import audited exactly its own rows.
    let audit = stores[0].audit(20_000).await.unwrap();
    assert_eq!(audit.len(), 12_000);
    for e in &policy.entries {
        let row = audit.iter().find(|a| a.object_id == Some(e.id.0)).unwrap();
        assert_eq!(row.actor, e.created_by);
    }
    for store in stores {
        store.close().await;
    }
}

pub async fn a_policy_load_never_mixes_revisions<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("a"))
        .await
        .unwrap();
    // The writer adds one entry per revision: a consistent load of revision r holds exactly
    // r - 1 entries, the newest with the highest id.
    let writer = tokio::spawn({
        let store = store.clone();
        async move {
            for i in 0..300u32 {
                let value = format!("10.0.{}.{}", i >> 8, i & 255);
                store
                    .add_entry(&new(List::Block, EntryKind::Ip, &value), &actor("writer"))
                    .await
                    .unwrap();
            }
        }
    });
    let mut loads = 0;
    let mut revisions_seen = std::collections::BTreeSet::new();
    while !writer.is_finished() {
        let policy = store.load_policy().await.unwrap();
        assert_eq!(
            policy.entries.len() as i64,
            policy.revision - 1,
            "revision {} with {} entries",
            policy.revision,
            policy.entries.len()
        );
        assert_eq!(policy.tenants.len(), 1);
        revisions_seen.insert(policy.revision);
        loads += 1;
    }
    writer.await.unwrap();
    let last = store.load_policy().await.unwrap();
    assert_eq!((last.revision, last.entries.len()), (301, 300));
    assert!(
        loads >= 5 && revisions_seen.len() >= 3,
        "{loads} loads saw only {revisions_seen:?}"
    );
    store.close().await;
}
