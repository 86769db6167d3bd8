//! Imports: merge, replace, formats, caps, all-or-nothing, audit of exactly the rows added.

use std::time::Instant;

use allowgate_store::{ImportError, ImportFamily, ImportFormat, ImportMode, StoreError};
use allowgate_types::{EntryKind, List, NewEntry, Scope};

use super::*;

pub async fn import_text_merge_counts_duplicates<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), &actor("a"))
        .await
        .unwrap();
    let before = store.revision().await.unwrap();
    let data = "# scanners\n192.0.2.1\n192.0.2.2 # second\n198.51.100.0/24, mx.bad.example;2001:db8::1\n\n192.0.2.2\n";
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let progress = std::sync::Mutex::new(Vec::new());
    let report = store
        .import(&req, data.as_bytes(), &actor("importer"), &|d, t| {
            progress.lock().unwrap().push((d, t))
        })
        .await
        .unwrap();
    assert_eq!((report.added, report.duplicates, report.removed), (4, 2, 0));
    assert_eq!(report.revision, before + 1);
    let progress = progress.into_inner().unwrap();
    assert_eq!(progress.last(), Some(&(12, 12)));
    assert!(
        progress.windows(2).all(|w| w[0].0 <= w[1].0),
        "{progress:?}"
    );

    let entries = store.entries(&all()).await.unwrap();
    assert_eq!(
        values(&entries),
        [
            "192.0.2.1",
            "192.0.2.2",
            "198.51.100.0/24",
            "mx.bad.example",
            "2001:db8::1"
        ]
    );
    assert_eq!(
        entries[1].entry.comment.as_ref().unwrap().as_str(),
        "second"
    );
    assert_eq!(entries[3].entry.kind(), EntryKind::Host);
    assert_eq!(entries[1].created_by, "importer");

    // One audit row per added entry, all in the import's revision.
    let audit = store.audit(100).await.unwrap();
    let import_rows: Vec<_> = audit
        .iter()
        .filter(|a| a.revision == Some(report.revision))
        .collect();
    assert_eq!(import_rows.len(), 4);
    assert!(
        import_rows
            .iter()
            .all(|a| a.action == "add" && a.before.is_none())
    );
    let mut audited: Vec<i64> = import_rows.iter().filter_map(|a| a.object_id).collect();
    audited.sort();
    assert_eq!(
        audited,
        entries[1..].iter().map(|e| e.id.0).collect::<Vec<_>>()
    );
    for row in &import_rows {
        let id = row.object_id.unwrap();
        let entry = entries.iter().find(|e| e.id.0 == id).unwrap();
        assert_eq!(
            row.after.as_ref().unwrap()["value"],
            entry.entry.value.to_string()
        );
    }

    // Importing the same file again changes nothing and creates no revision.
    let again = store
        .import(&req, data.as_bytes(), &actor("importer"), &no_progress)
        .await
        .unwrap();
    assert_eq!(
        (again.added, again.duplicates, again.revision),
        (0, 6, report.revision)
    );
    assert_eq!(store.revision().await.unwrap(), report.revision);
    store.close().await;
}

pub async fn import_csv_and_json_into_a_tenant<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("a"))
        .await
        .unwrap();
    let mut req = request(List::Allow, ImportFamily::Email, ImportFormat::Csv);
    req.scope = acme();
    req.require_auth = true;
    let csv = "value,comment,checks,require_auth\nceo@partner.example,\"CEO, partner\",,\n*.supplier.example,,\"spf;dkim\",false\n";
    let report = store
        .import(&req, csv.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap();
    assert_eq!(report.added, 2);
    assert_eq!(
        report.warnings.len(),
        1,
        "only the entry without require_auth warns: {:?}",
        report.warnings
    );
    assert_eq!(report.warnings[0].lines.ranges(), [(3, 3)]);

    req.format = ImportFormat::Json;
    let json = r#"[{"value": "ops@partner.example", "checks": ["greylisting"], "enabled": false},
                   {"value": "ceo@partner.example"}]"#;
    let report = store
        .import(&req, json.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap();
    assert_eq!((report.added, report.duplicates), (1, 1));

    let entries = store
        .entries(&EntryFilter {
            scope: Some(acme()),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(
        values(&entries),
        [
            "ceo@partner.example",
            "*.supplier.example",
            "ops@partner.example"
        ]
    );
    let e: Vec<&NewEntry> = entries.iter().map(|e| &e.entry).collect();
    assert_eq!(e[0].checks.to_string(), "spam");
    assert_eq!(e[0].comment.as_ref().unwrap().as_str(), "CEO, partner");
    assert!(e[0].require_auth);
    assert_eq!(e[1].kind(), EntryKind::Domain);
    assert_eq!(e[1].checks.to_string(), "spf,dkim");
    assert!(!e[1].require_auth);
    assert_eq!(e[2].checks.to_string(), "greylisting");
    assert!(!e[2].enabled);
    assert!(e.iter().all(|e| e.scope == acme()));

    req.scope = Scope::Tenant(tenant("nobody"));
    let err = store
        .import(&req, json.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::Store(StoreError::UnknownTenant { .. })),
        "{err:?}"
    );
    store.close().await;
}

pub async fn import_replace_swaps_the_family_only<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let old_ip = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), &actor("a"))
        .await
        .unwrap();
    store
        .add_entry(
            &new(List::Block, EntryKind::Host, "old.example"),
            &actor("a"),
        )
        .await
        .unwrap();
    let kept_domain = store
        .add_entry(
            &new(List::Block, EntryKind::Domain, "keep.example"),
            &actor("a"),
        )
        .await
        .unwrap();
    let kept_ignore = store
        .add_entry(&new(List::Ignore, EntryKind::Ip, "192.0.2.1"), &actor("a"))
        .await
        .unwrap();

    let mut req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    req.mode = ImportMode::Replace;
    let report = store
        .import(
            &req,
            b"192.0.2.1\n203.0.113.9\nnew.example\n",
            &actor("b"),
            &no_progress,
        )
        .await
        .unwrap();
    assert_eq!((report.added, report.removed, report.duplicates), (3, 2, 0));

    let entries = store.entries(&all()).await.unwrap();
    assert_eq!(
        values(&entries),
        [
            "keep.example",
            "192.0.2.1",
            "192.0.2.1",
            "203.0.113.9",
            "new.example"
        ]
    );
    assert_eq!(entries[0], kept_domain);
    assert_eq!(entries[1], kept_ignore);
    assert!(entries[2].id > old_ip.id);

    let audit = store.audit(100).await.unwrap();
    let rows: Vec<_> = audit
        .iter()
        .filter(|a| a.revision == Some(report.revision))
        .collect();
    assert_eq!(rows.iter().filter(|a| a.action == "remove").count(), 2);
    assert_eq!(rows.iter().filter(|a| a.action == "add").count(), 3);
    let removed_old = rows
        .iter()
        .find(|a| a.object_id == Some(old_ip.id.0))
        .unwrap();
    assert_eq!(removed_old.before.as_ref().unwrap()["value"], "192.0.2.1");
    store.close().await;
}

pub async fn a_bad_import_line_leaves_the_database_byte_for_byte_unchanged<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("a"))
        .await
        .unwrap();
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        store
            .add_entry(&new(List::Block, EntryKind::Ip, ip), &actor("a"))
            .await
            .unwrap();
    }
    store.close().await;
    let before = b.state(&db).await;

    let store = open(&db).await;
    let data = "203.0.113.1\n203.0.113.2\n203.0.113.300\n203.0.113.4 # fine\n# comment\n\nnot a host!\n203.0.113.8\n";
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let err = store
        .import(&req, data.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap_err();
    let ImportError::Invalid(problems) = &err else {
        panic!("{err:?}")
    };
    let lines = &problems.problems;
    assert_eq!(problems.bad_lines, 2);
    assert_eq!(
        lines.iter().map(|l| l.lines.first()).collect::<Vec<_>>(),
        [Some(3), Some(7)],
        "{lines:#?}"
    );
    assert_eq!(lines[0].value.as_deref(), Some("203.0.113.300"));
    assert!(
        lines[0].message.contains("not a valid IP"),
        "{}",
        lines[0].message
    );
    assert_eq!(lines[1].value.as_deref(), Some("not a host!"));
    assert!(!lines[1].message.is_empty());
    let message = err.to_string();
    assert!(
        message.contains("line 3")
            && message.contains("line 7")
            && message.contains("nothing changed"),
        "{message}"
    );

    // A valid file for a tenant that does not exist is refused too, also without a trace.
    let mut unknown = req.clone();
    unknown.scope = Scope::Tenant(tenant("nobody"));
    assert!(
        store
            .import(&unknown, b"203.0.113.1", &actor("a"), &no_progress)
            .await
            .is_err()
    );
    assert_eq!(store.revision().await.unwrap(), 4);
    store.close().await;

    assert!(b.state(&db).await == before, "the stored state changed");
}

pub async fn import_caps_are_checked_before_parsing<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    // Invalid values everywhere: the cap is reported, not the values.
    let big = "x".repeat(2 * 1024 * 1024 + 1);
    let err = store
        .import(&req, big.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::TooLarge { bytes } if bytes == 2 * 1024 * 1024 + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 MB"));
    let many = "x;".repeat(100_001);
    let err = store
        .import(&req, many.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::TooManyEntries { count: 100_001 }),
        "{err:?}"
    );
    // Exactly at the cap is fine.
    let exact: String = (0..100_000u32)
        .map(|i| format!("10.{}.{}.{};", i >> 16, (i >> 8) & 255, i & 255))
        .collect();
    assert!(exact.len() <= 2 * 1024 * 1024);
    let report = store
        .import(&req, exact.as_bytes(), &actor("a"), &no_progress)
        .await
        .unwrap();
    assert_eq!(report.added, 100_000);

    let err = store
        .import(
            &req,
            b"192.0.2.1\r\n\xfe\xff192.0.2.2",
            &actor("a"),
            &no_progress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ImportError::NotUtf8 { lines } if lines.ranges() == [(2, 2)]),
        "{err:?}"
    );
    store.close().await;
}

/// 100,000 entries, about 2 MB of text, imported end to end. Run in release to see the real
/// figure: `cargo test --release -p allowgate-store -- --nocapture import_speed`.
pub async fn import_speed<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let mut text = String::with_capacity(2 * 1024 * 1024);
    for i in 0..100_000u32 {
        if i % 3 == 0 {
            text.push_str(&format!("h{i}.mail.example.com # host {i}\n"));
        } else {
            text.push_str(&format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
        }
    }
    assert!(text.len() <= 2 * 1024 * 1024, "{}", text.len());
    let mut req = request(List::Allow, ImportFamily::Server, ImportFormat::Text);
    req.checks = Some("rbl,greylisting".parse().unwrap());
    let started = Instant::now();
    let report = store
        .import(&req, text.as_bytes(), &actor("bench"), &no_progress)
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(report.added, 100_000);
    println!(
        "import_speed: 100000 entries, {} bytes, imported in {elapsed:?}",
        text.len()
    );

    let started = Instant::now();
    let entries = store.entries(&all()).await.unwrap();
    println!(
        "import_speed: read back and validated {} entries in {:?}",
        entries.len(),
        started.elapsed()
    );
    let started = Instant::now();
    req.mode = ImportMode::Replace;
    let report = store
        .import(&req, text.as_bytes(), &actor("bench"), &no_progress)
        .await
        .unwrap();
    assert_eq!((report.added, report.removed), (100_000, 100_000));
    println!(
        "import_speed: replace of 100000 by 100000 in {:?}",
        started.elapsed()
    );
    store.close().await;
    if !cfg!(debug_assertions) {
        assert!(elapsed.as_secs_f64() < 2.0, "import took {elapsed:?}");
    }
}

/// The audit rows of an import are those of the rows its inserts returned: none for values
/// that were there already, one for each new one, across several insert statements.
pub async fn an_import_audits_exactly_the_rows_it_inserted<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let value = |i: u32| format!("10.1.{}.{}", i >> 8, i & 255);
    // Every seventh value exists already (added one by one, so ids interleave with nothing).
    let mut existing = Vec::new();
    for i in (0..7000u32).step_by(7) {
        let e = store
            .add_entry(&new(List::Block, EntryKind::Ip, &value(i)), &actor("early"))
            .await
            .unwrap();
        existing.push(e.id.0);
    }
    let text: String = (0..7000u32).map(|i| value(i) + "\n").collect();
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let report = store
        .import(&req, text.as_bytes(), &actor("importer"), &no_progress)
        .await
        .unwrap();
    assert_eq!((report.added, report.duplicates), (6000, 1000));
    let entries = store.entries(&all()).await.unwrap();
    assert_eq!(entries.len(), 7000);
    let mut new_ids: Vec<i64> = entries
        .iter()
        .filter(|e| e.created_by == "importer")
        .map(|e| e.id.0)
        .collect();
    new_ids.sort();
    let audit = store.audit(20_000).await.unwrap();
    let mut audited: Vec<i64> = audit
        .iter()
        .filter(|a| a.revision == Some(report.revision))
        .map(|a| {
            assert_eq!((a.action.as_str(), a.actor.as_str()), ("add", "importer"));
            a.object_id.unwrap()
        })
        .collect();
    audited.sort();
    assert_eq!(audited, new_ids);
    assert!(audited.iter().all(|id| !existing.contains(id)));
    store.close().await;
}

/// Regression: `import --replace` of an empty or comments-only file emptied the list.
pub async fn a_replace_that_would_empty_the_list_needs_confirming<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let a = actor("a");
    for value in ["192.0.2.1", "mx.example.net"] {
        let kind = if value.starts_with('1') {
            EntryKind::Ip
        } else {
            EntryKind::Host
        };
        store
            .add_entry(&new(List::Block, kind, value), &a)
            .await
            .unwrap();
    }
    let kept = store
        .add_entry(&new(List::Block, EntryKind::Domain, "keep.example"), &a)
        .await
        .unwrap();
    let before = store.entries(&all()).await.unwrap();
    let revision = store.revision().await.unwrap();

    let mut req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    req.mode = ImportMode::Replace;
    for file in [&b""[..], b"# nothing here yet\n\n# (comments only)\n"] {
        let err = store
            .import(&req, file, &a, &no_progress)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ImportError::WouldEmpty { existing: 2, .. }),
            "{err:?}"
        );
        assert_eq!(err.kind(), allowgate_store::ErrorKind::InvalidInput);
        let message = err.to_string();
        assert!(
            message.contains("remove all 2") && message.contains("--allow-empty"),
            "{message}"
        );
        assert_eq!(store.entries(&all()).await.unwrap(), before);
        assert_eq!(store.revision().await.unwrap(), revision);
    }

    // Confirmed, it empties the server kinds of the list, nothing else.
    req.allow_empty = true;
    let report = store.import(&req, b"", &a, &no_progress).await.unwrap();
    assert_eq!((report.added, report.removed), (0, 2));
    assert_eq!(report.revision, revision + 1);
    assert_eq!(store.entries(&all()).await.unwrap(), vec![kept]);

    // Nothing to remove: nothing to confirm, nothing changes.
    req.allow_empty = false;
    let report = store.import(&req, b"", &a, &no_progress).await.unwrap();
    assert_eq!(
        (report.added, report.removed, report.revision),
        (0, 0, revision + 1)
    );
    store.close().await;
}

/// Regression: a text export of one list re-imported into another turned its entries into
/// entries of that list. Now only the list, scope and kinds the sections name take it.
pub async fn a_text_export_imports_only_into_its_own_list<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let a = actor("a");
    store
        .add_entry(&new(List::Block, EntryKind::Ip, "203.0.113.0/24"), &a)
        .await
        .unwrap();
    store
        .add_entry(&new(List::Block, EntryKind::Host, "mx.bad.example"), &a)
        .await
        .unwrap();
    let text = store
        .export(&all(), allowgate_store::ExportFormat::Text)
        .await
        .unwrap();

    let fresh = b.fresh();
    let target = open(&fresh).await;
    let allow = request(List::Allow, ImportFamily::Server, ImportFormat::Text);
    let err = target
        .import(&allow, text.as_bytes(), &a, &no_progress)
        .await
        .unwrap_err();
    let ImportError::Invalid(problems) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problems.bad_lines, 2, "{err}");
    assert!(err.to_string().contains("is for the block list"), "{err}");
    assert!(target.entries(&all()).await.unwrap().is_empty());

    let block = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let report = target
        .import(&block, text.as_bytes(), &a, &no_progress)
        .await
        .unwrap();
    assert_eq!(report.added, 2);
    let entries = target.entries(&all()).await.unwrap();
    assert!(entries.iter().all(|e| e.entry.list == List::Block));
    target.close().await;
    store.close().await;
}
