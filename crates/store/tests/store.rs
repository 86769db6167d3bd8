//! The store's integration tests: one behaviour suite (`suite/`), run against every backend,
//! and the few tests that only make sense for SQLite files.

// Test helpers outside `#[test]` functions panic on purpose when set-up fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

/// Instantiate every behaviour test of `suite` for one backend: `behaviour_tests!(name,
/// factory)` makes a module `name` with one `#[tokio::test]` per test, each calling the suite's
/// function with `factory` (a [`suite::Backend`]). A new backend is one more line below; a new
/// behaviour test is one more name in the list.
macro_rules! behaviour_tests {
    ($backend:ident, $factory:expr) => {
        mod $backend {
            use super::suite;
            behaviour_tests!(@each $factory;
                entries::a_fresh_store_is_empty,
                entries::unusable_urls_are_refused_without_repeating_secrets,
                entries::entries_add_list_filter_remove,
                entries::duplicates_and_unknown_tenants_are_refused,
                entries::every_field_round_trips,
                entries::revisions_and_audit,
                entries::corrupt_rows_are_reported_with_their_id,
                tenants::tenants_are_added_and_listed,
                tenants::tenant_domains_are_added_and_removed,
                tenants::a_tenant_with_entries_is_removed_only_together_with_them,
                imports::import_text_merge_counts_duplicates,
                imports::import_csv_and_json_into_a_tenant,
                imports::import_replace_swaps_the_family_only,
                imports::a_bad_import_line_leaves_the_database_byte_for_byte_unchanged,
                imports::import_caps_are_checked_before_parsing,
                imports::import_speed,
                imports::an_import_audits_exactly_the_rows_it_inserted,
                imports::a_replace_that_would_empty_the_list_needs_confirming,
                imports::a_text_export_imports_only_into_its_own_list,
                export::export_round_trips_csv_and_json,
                export::export_round_trips_text_values_and_comments,
                concurrency::a_change_waits_for_another_up_to_the_busy_timeout,
                concurrency::concurrent_imports_all_succeed_one_after_another,
                concurrency::a_policy_load_never_mixes_revisions,
                history::history_records_read_back_identical,
                history::history_stores_addresses_normalised_and_times_to_the_microsecond,
                history::history_filters_alone_and_combined,
                history::records_of_the_same_time_come_newest_written_first,
                history::bad_history_filters_are_refused_naming_the_field,
                history::entry_hits_count_applied_matches_across_batches,
                history::entry_shows_one_entry_and_its_hits,
                history::purge_deletes_only_older_records_in_chunks,
                history::an_empty_history_batch_changes_nothing,
                history::a_bad_history_record_refuses_the_whole_batch,
                history::history_batches_and_admin_changes_interleave,
                users::users_are_added_listed_and_their_passwords_verified,
                users::bad_user_and_token_requests_are_refused_and_change_nothing,
                users::passwords_and_tokens_are_never_stored_in_clear,
                users::tokens_authenticate_until_revoked,
                users::a_locked_users_password_is_refused,
                users::a_tenant_with_users_cannot_be_removed,
                users::users_and_active_tokens_are_capped,
                users::an_unknown_user_costs_as_much_to_refuse_as_a_wrong_password,
            );
        }
    };
    (@each $factory:expr; $($module:ident :: $test:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                suite::$module::$test(&$factory).await
            }
        )*
    };
}

behaviour_tests!(sqlite, suite::SqliteFiles);

/// What only SQLite has: files, `sqlite::memory:`, WAL.
mod sqlite_files {
    use allowgate_store::{ErrorKind, Store, StoreError};
    use allowgate_types::{EntryKind, List};

    use super::suite::*;

    #[tokio::test]
    async fn open_creates_the_file_and_in_memory_works() {
        let db = SqliteFiles.fresh();
        let path = db.path.as_deref().unwrap();
        assert!(!path.exists());
        let store = open(&db).await;
        assert!(path.exists());
        store.close().await;
        assert!(!wal(path).exists() || std::fs::metadata(wal(path)).unwrap().len() == 0);

        let memory = Store::open("sqlite::memory:").await.unwrap();
        memory
            .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), &actor("t"))
            .await
            .unwrap();
        assert_eq!(memory.entries(&all()).await.unwrap().len(), 1);
        memory.close().await;
    }

    /// The CLI and the server opening a new file at the same moment both migrate it; neither
    /// may fail with "database is locked" (found by the server's tests).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_processes_opening_a_new_file_at_once_all_succeed_regression() {
        for _ in 0..5 {
            let db = SqliteFiles.fresh();
            let opens: Vec<_> = (0..8)
                .map(|_| {
                    let url = db.url.clone();
                    tokio::spawn(async move { Store::open(&url).await })
                })
                .collect();
            for open in opens {
                let store = open.await.unwrap().unwrap_or_else(|e| panic!("{e:?}"));
                store.close().await;
            }
        }
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_opened_is_unavailable() {
        let err = Store::open("sqlite:///nonexistent-dir/x/y.db")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(std::error::Error::source(&err).is_some());

        let dir = tempfile::tempdir().unwrap();
        let not_a_db = dir.path().join("notes.txt");
        std::fs::write(&not_a_db, "x".repeat(4096)).unwrap();
        let err = Store::open(&format!("sqlite://{}", not_a_db.display()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err:?}");
    }

    /// A database of schema version 3 (before users) keeps its audit log when it is upgraded:
    /// every row, and ids that keep growing where they were, also past a row that was deleted
    /// (the audit table is rebuilt with its AUTOINCREMENT counter).
    #[tokio::test]
    async fn upgrading_a_version_3_database_keeps_its_audit_log() {
        use sqlx::Connection;
        let db = SqliteFiles.fresh();
        let old = tempfile::tempdir().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
        for file in [
            "0001_init.sql",
            "0002_history.sql",
            "0003_history_stage.sql",
        ] {
            std::fs::copy(format!("{dir}/{file}"), old.path().join(file)).unwrap();
        }
        let migrator = sqlx::migrate::Migrator::new(old.path()).await.unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(db.path.as_deref().unwrap())
            .create_if_missing(true);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .unwrap();
        migrator.run(&mut conn).await.unwrap();
        for sql in [
            "INSERT INTO revisions (created_at, actor, summary)              VALUES ('2026-01-01T00:00:00+00:00', 'cli:a', 'add tenant acme')",
            "INSERT INTO audit (revision_id, at, actor, action, object, object_id, after)              VALUES (1, '2026-01-01T00:00:00+00:00', 'cli:a', 'add', 'tenant', 1, '{\"name\":\"acme\"}')",
            "INSERT INTO audit (revision_id, at, actor, action, object, object_id, after)              VALUES (1, '2026-01-01T00:00:00+00:00', 'cli:a', 'add', 'entry', 7, '{}')",
            "DELETE FROM audit WHERE id = 2",
        ] {
            sqlx::query(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();

        let store = open(&db).await;
        let audit = store.audit(10).await.unwrap();
        assert_eq!(audit.len(), 1);
        assert_eq!(
            (audit[0].id, audit[0].revision, audit[0].object.as_str()),
            (1, Some(1), "tenant")
        );
        assert_eq!(audit[0].after.as_ref().unwrap()["name"], "acme");
        let name = allowgate_store::UserName::parse("alice").unwrap();
        store
            .add_user(&name, allowgate_store::Role::Admin, None, &actor("b"))
            .await
            .unwrap();
        let audit = store.audit(10).await.unwrap();
        assert_eq!(
            (audit[0].id, audit[0].revision, audit[0].object.as_str()),
            (3, None, "user")
        );
        store.close().await;
    }

    /// The store's futures can be spawned on a multi-threaded runtime (the server does that).
    #[test]
    fn futures_are_send() {
        fn assert_send<T: Send>(_: &T) {}
        let store = async { Store::open("sqlite::memory:").await.unwrap() };
        assert_send(&store);
        let whole = async {
            let store = Store::open("sqlite::memory:").await.unwrap();
            let req = allowgate_store::ImportRequest::new(
                List::Block,
                allowgate_store::ImportFamily::Server,
            );
            let filter = all();
            let a = actor("a");
            let import = store.import(&req, b"192.0.2.1", &a, &|_, _| {});
            assert_send(&import);
            let export = store.export(&filter, allowgate_store::ExportFormat::Json);
            assert_send(&export);
            let entries = store.entries(&filter);
            assert_send(&entries);
            let policy = store.load_policy();
            assert_send(&policy);
            let history_filter = allowgate_store::HistoryFilter::default();
            let history = store.history(&history_filter);
            assert_send(&history);
            let batch = store.record_history(&[]);
            assert_send(&batch);
            let purge = store.purge_history(chrono::Utc::now());
            assert_send(&purge);
            let name = allowgate_store::UserName::parse("alice").unwrap();
            let add_user = store.add_user(&name, allowgate_store::Role::Admin, None, &a);
            assert_send(&add_user);
            let verify = store.verify_password("alice", "x");
            assert_send(&verify);
            let add_token = store.add_token(&name, None, &a);
            assert_send(&add_token);
            let authenticate = store.authenticate_token("ag_x");
            assert_send(&authenticate);
            let revoke = store.revoke_token(allowgate_store::TokenId(1), &a);
            assert_send(&revoke);
            let tokens = store.list_tokens(None);
            assert_send(&tokens);
            import.await.unwrap();
        };
        assert_send(&whole);
    }
}
