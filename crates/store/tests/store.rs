//! Integration tests of the store over real SQLite files.

// Test helpers outside `#[test]` functions panic on purpose when set-up fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use allowgate_store::{
    EntryFilter, ExportFormat, ImportError, ImportFamily, ImportFormat, ImportMode, ImportRequest,
    Store, StoreError,
};
use allowgate_types::{
    CheckSet, Domain, Entry, EntryId, EntryKind, EntrySpec, List, NewEntry, Scope, TenantName,
    parse_time,
};
use tempfile::TempDir;

struct Db {
    _dir: TempDir,
    path: PathBuf,
    url: String,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allowgate.db");
    let url = format!("sqlite://{}", path.display());
    Db {
        _dir: dir,
        path,
        url,
    }
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

fn domain(name: &str) -> Domain {
    Domain::parse(name).unwrap()
}

fn acme() -> Scope {
    Scope::Tenant(tenant("acme"))
}

fn spec(list: List, kind: EntryKind, value: &str) -> EntrySpec {
    let checks = (list == List::Allow).then(|| "spf,dkim".parse().unwrap());
    EntrySpec {
        list: Some(list),
        kind: Some(kind),
        value: value.into(),
        checks,
        ..Default::default()
    }
}

fn valid(spec: EntrySpec) -> NewEntry {
    spec.validate().unwrap().0
}

fn new(list: List, kind: EntryKind, value: &str) -> NewEntry {
    valid(spec(list, kind, value))
}

fn no_progress(_: u64, _: u64) {}

fn request(list: List, family: ImportFamily, format: ImportFormat) -> ImportRequest {
    let mut req = ImportRequest::new(list, family);
    req.format = format;
    if list == List::Allow {
        req.checks = Some("spam".parse().unwrap());
    }
    req
}

fn values(entries: &[Entry]) -> Vec<String> {
    entries.iter().map(|e| e.entry.value.to_string()).collect()
}

fn all() -> EntryFilter {
    EntryFilter::default()
}

fn wal(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

#[tokio::test]
async fn open_creates_the_file_and_in_memory_works() {
    let db = db();
    assert!(!db.path.exists());
    let store = Store::open(&db.url).await.unwrap();
    assert!(db.path.exists());
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.entries(&all()).await.unwrap().is_empty());
    store.close().await;

    let memory = Store::open("sqlite::memory:").await.unwrap();
    memory
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), "t")
        .await
        .unwrap();
    assert_eq!(memory.entries(&all()).await.unwrap().len(), 1);
    memory.close().await;

    let err = Store::open("postgres://user:secret@db/allowgate")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }));
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn tenants() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    let added = store
        .add_tenant(
            &tenant("acme"),
            &[
                domain("acme.example"),
                domain("Acme.NET."),
                domain("acme.example"),
            ],
            "alice",
        )
        .await
        .unwrap();
    assert_eq!(added.domains, [domain("acme.example"), domain("acme.net")]);
    store
        .add_tenant(&tenant("beta"), &[domain("beta.example")], "alice")
        .await
        .unwrap();

    let err = store
        .add_tenant(&tenant("acme"), &[domain("other.example")], "alice")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TenantExists { name } if name == "acme"),
        "{err:?}"
    );
    assert!(err.to_string().contains("acme"));

    let err = store
        .add_tenant(
            &tenant("gamma"),
            &[domain("g.example"), domain("acme.net")],
            "alice",
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DomainTaken { domain, tenant } if domain == "acme.net" && tenant == "acme"),
        "{err:?}"
    );
    assert!(err.to_string().contains("acme.net"));

    let tenants = store.tenants().await.unwrap();
    assert_eq!(tenants.len(), 2, "a refused tenant leaves nothing behind");
    assert_eq!(tenants[0], added);
    assert_eq!(tenants[1].name, tenant("beta"));
    assert_eq!(store.revision().await.unwrap(), 2);
    let audit = store.audit(10).await.unwrap();
    assert_eq!(audit[0].object, "tenant");
    assert_eq!(
        audit[0].after.as_ref().unwrap()["domains"],
        serde_json::json!(["beta.example"])
    );
    store.close().await;
}

#[tokio::test]
async fn entries_add_list_filter_remove() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "alice")
        .await
        .unwrap();
    let a = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.0/24"), "alice")
        .await
        .unwrap();
    let b = store
        .add_entry(
            &new(List::Allow, EntryKind::Host, "*.partner.example"),
            "alice",
        )
        .await
        .unwrap();
    let mut tenant_spec = spec(List::Block, EntryKind::Email, "spam@bad.example");
    tenant_spec.scope = acme();
    let c = store.add_entry(&valid(tenant_spec), "bob").await.unwrap();
    assert!(a.id < b.id && b.id < c.id);

    assert_eq!(
        store.entries(&all()).await.unwrap(),
        vec![a.clone(), b.clone(), c.clone()]
    );
    let blocks = EntryFilter {
        list: Some(List::Block),
        ..all()
    };
    assert_eq!(
        store.entries(&blocks).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    let global = EntryFilter {
        scope: Some(Scope::Global),
        ..all()
    };
    assert_eq!(
        store.entries(&global).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    let tenant_only = EntryFilter {
        scope: Some(acme()),
        ..all()
    };
    assert_eq!(store.entries(&tenant_only).await.unwrap(), vec![c.clone()]);
    let hosts = EntryFilter {
        kind: Some(EntryKind::Host),
        ..all()
    };
    assert_eq!(store.entries(&hosts).await.unwrap(), vec![b.clone()]);
    let unknown = EntryFilter {
        scope: Some(Scope::Tenant(tenant("nobody"))),
        ..all()
    };
    assert!(matches!(
        store.entries(&unknown).await,
        Err(StoreError::UnknownTenant { .. })
    ));

    let removed = store.remove_entry(b.id, "carol").await.unwrap();
    assert_eq!(removed, b);
    assert_eq!(
        store.entries(&all()).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    assert!(matches!(
        store.remove_entry(b.id, "carol").await,
        Err(StoreError::NotFound { id }) if id == b.id
    ));
    // Ids are never reused.
    let d = store
        .add_entry(
            &new(List::Allow, EntryKind::Host, "*.partner.example"),
            "alice",
        )
        .await
        .unwrap();
    assert!(d.id > c.id);
    store.close().await;
}

#[tokio::test]
async fn duplicates_and_unknown_tenants_are_refused() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    let first = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.7"), "a")
        .await
        .unwrap();
    // Same identity after normalisation.
    let err = store
        .add_entry(&new(List::Block, EntryKind::Ip, "::ffff:192.0.2.7"), "a")
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate { existing } if existing == first.id),
        "{err:?}"
    );
    assert!(err.to_string().contains(&first.id.to_string()));
    // Another list, or another scope, is another entry.
    store
        .add_entry(&new(List::Ignore, EntryKind::Ip, "192.0.2.7"), "a")
        .await
        .unwrap();
    store.add_tenant(&tenant("acme"), &[], "a").await.unwrap();
    let mut scoped = new(List::Block, EntryKind::Ip, "192.0.2.7");
    scoped.scope = acme();
    store.add_entry(&scoped, "a").await.unwrap();
    let err = store.add_entry(&scoped, "a").await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }));

    scoped.scope = Scope::Tenant(tenant("nobody"));
    let err = store.add_entry(&scoped, "a").await.unwrap_err();
    assert!(
        matches!(&err, StoreError::UnknownTenant { name } if name == "nobody"),
        "{err:?}"
    );
    assert_eq!(
        store.revision().await.unwrap(),
        4,
        "refused changes create no revision"
    );
    store.close().await;
}

fn every_field_entry() -> NewEntry {
    let mut s = spec(List::Allow, EntryKind::Email, "Partner@Bücher.example");
    s.scope = acme();
    s.checks = Some(CheckSet::ALL);
    s.force = true;
    s.comment = Some("  supplier — invoices  ".into());
    s.require_auth = true;
    s.starts_at = Some(parse_time("2026-12-01T08:30:00.123456Z").unwrap());
    s.expires_at = Some(parse_time("2027-01-01").unwrap());
    s.disabled = true;
    valid(s)
}

#[tokio::test]
async fn every_field_round_trips() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "alice")
        .await
        .unwrap();
    let wanted = every_field_entry();
    let stored = store.add_entry(&wanted, "alice").await.unwrap();
    let mut internal = spec(List::Ignore, EntryKind::Ip, "2001:db8::/48");
    internal.internal = true;
    let internal = store.add_entry(&valid(internal), "alice").await.unwrap();
    store.close().await;

    let store = Store::open(&db.url).await.unwrap();
    let read = store.entries(&all()).await.unwrap();
    assert_eq!(read, vec![stored.clone(), internal]);
    let e = &read[0].entry;
    assert_eq!(e.value.to_string(), "partner@xn--bcher-kva.example");
    assert_eq!(e.checks.to_string(), "all");
    assert_eq!(e.comment.as_ref().unwrap().as_str(), "supplier — invoices");
    assert!(e.require_auth && !e.enabled);
    assert_eq!(read[0].created_by, "alice");

    // The audit record (built by the database) is the JSON form of the entry.
    let audit = store.audit(10).await.unwrap();
    assert_eq!(
        audit[1].after.as_ref(),
        Some(&allowgate_store::entry_to_json(&stored))
    );
    assert_eq!(
        audit[0].after.as_ref(),
        Some(&allowgate_store::entry_to_json(&read[1]))
    );
    let after = audit[1].after.as_ref().unwrap();
    assert_eq!(after["checks"], serde_json::json!(["all"]));
    assert_eq!(after["scope"], "acme");
    assert_eq!(after["require_auth"], true);
    assert_eq!(after["enabled"], false);
    assert_eq!(after["starts_at"], "2026-12-01T08:30:00.123456+00:00");
    store.close().await;
}

#[tokio::test]
async fn revisions_and_audit() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.audit(10).await.unwrap().is_empty());
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "alice")
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), 1);
    let e = store
        .add_entry(&new(List::Block, EntryKind::Domain, "bad.example"), "bob")
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), 2);
    store.remove_entry(e.id, "carol").await.unwrap();
    assert_eq!(store.revision().await.unwrap(), 3);

    let audit = store.audit(10).await.unwrap();
    assert_eq!(audit.len(), 3);
    let (remove, add, tenant_add) = (&audit[0], &audit[1], &audit[2]);
    assert_eq!(
        (
            remove.revision,
            remove.actor.as_str(),
            remove.action.as_str()
        ),
        (3, "carol", "remove")
    );
    assert_eq!(
        (remove.object.as_str(), remove.object_id),
        ("entry", Some(e.id.0))
    );
    assert!(remove.after.is_none());
    assert_eq!(remove.before, add.after);
    let after = add.after.as_ref().unwrap();
    assert_eq!(after["value"], "bad.example");
    assert_eq!(after["list"], "block");
    assert_eq!(after["scope"], "global");
    assert_eq!(after["id"], e.id.0);
    assert_eq!(after["checks"], serde_json::json!([]));
    assert_eq!(after["comment"], serde_json::Value::Null);
    assert_eq!(after["created_by"], "bob");
    assert!(add.before.is_none());
    assert_eq!((add.revision, add.action.as_str()), (2, "add"));
    assert_eq!(
        (tenant_add.revision, tenant_add.object.as_str()),
        (1, "tenant")
    );
    assert!(tenant_add.at <= add.at && add.at <= remove.at);
    assert_eq!(store.audit(1).await.unwrap(), vec![remove.clone()]);
    store.close().await;
}

#[tokio::test]
async fn import_text_merge_counts_duplicates() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), "a")
        .await
        .unwrap();
    let before = store.revision().await.unwrap();
    let data = "# scanners\n192.0.2.1\n192.0.2.2 # second\n198.51.100.0/24, mx.bad.example;2001:db8::1\n\n192.0.2.2\n";
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let progress = std::sync::Mutex::new(Vec::new());
    let report = store
        .import(&req, data.as_bytes(), "importer", &|d, t| {
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
        .filter(|a| a.revision == report.revision)
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
        .import(&req, data.as_bytes(), "importer", &no_progress)
        .await
        .unwrap();
    assert_eq!(
        (again.added, again.duplicates, again.revision),
        (0, 6, report.revision)
    );
    assert_eq!(store.revision().await.unwrap(), report.revision);
    store.close().await;
}

#[tokio::test]
async fn import_csv_and_json_into_a_tenant() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "a")
        .await
        .unwrap();
    let mut req = request(List::Allow, ImportFamily::Email, ImportFormat::Csv);
    req.scope = acme();
    req.require_auth = true;
    let csv = "value,comment,checks,require_auth\nceo@partner.example,\"CEO, partner\",,\n*.supplier.example,,\"spf;dkim\",false\n";
    let report = store
        .import(&req, csv.as_bytes(), "a", &no_progress)
        .await
        .unwrap();
    assert_eq!(report.added, 2);
    assert_eq!(
        report.warnings.len(),
        1,
        "only the entry without require_auth warns: {:?}",
        report.warnings
    );
    assert_eq!(report.warnings[0].0, 3);

    req.format = ImportFormat::Json;
    let json = r#"[{"value": "ops@partner.example", "checks": ["greylisting"], "enabled": false},
                   {"value": "ceo@partner.example"}]"#;
    let report = store
        .import(&req, json.as_bytes(), "a", &no_progress)
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
        .import(&req, json.as_bytes(), "a", &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::Store(StoreError::UnknownTenant { .. })),
        "{err:?}"
    );
    store.close().await;
}

#[tokio::test]
async fn import_replace_swaps_the_family_only() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    let old_ip = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), "a")
        .await
        .unwrap();
    store
        .add_entry(&new(List::Block, EntryKind::Host, "old.example"), "a")
        .await
        .unwrap();
    let kept_domain = store
        .add_entry(&new(List::Block, EntryKind::Domain, "keep.example"), "a")
        .await
        .unwrap();
    let kept_ignore = store
        .add_entry(&new(List::Ignore, EntryKind::Ip, "192.0.2.1"), "a")
        .await
        .unwrap();

    let mut req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    req.mode = ImportMode::Replace;
    let report = store
        .import(
            &req,
            b"192.0.2.1\n203.0.113.9\nnew.example\n",
            "b",
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
        .filter(|a| a.revision == report.revision)
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

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn a_bad_import_line_leaves_the_database_file_byte_for_byte_unchanged() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "a")
        .await
        .unwrap();
    for ip in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
        store
            .add_entry(&new(List::Block, EntryKind::Ip, ip), "a")
            .await
            .unwrap();
    }
    store.close().await;
    assert!(!wal(&db.path).exists() || std::fs::metadata(wal(&db.path)).unwrap().len() == 0);
    let before = file_bytes(&db.path);

    let store = Store::open(&db.url).await.unwrap();
    let data = "203.0.113.1\n203.0.113.2\n203.0.113.300\n203.0.113.4 # fine\n# comment\n\nnot a host!\n203.0.113.8\n";
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    let err = store
        .import(&req, data.as_bytes(), "a", &no_progress)
        .await
        .unwrap_err();
    let ImportError::Invalid(lines) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        lines.iter().map(|l| l.line).collect::<Vec<_>>(),
        [3, 7],
        "{lines:#?}"
    );
    assert_eq!(lines[0].value, "203.0.113.300");
    assert!(
        lines[0].reason.contains("not a valid IP"),
        "{}",
        lines[0].reason
    );
    assert_eq!(lines[1].value, "not a host!");
    assert!(!lines[1].reason.is_empty());
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
            .import(&unknown, b"203.0.113.1", "a", &no_progress)
            .await
            .is_err()
    );
    assert_eq!(store.revision().await.unwrap(), 4);
    store.close().await;

    assert!(!wal(&db.path).exists() || std::fs::metadata(wal(&db.path)).unwrap().len() == 0);
    assert!(file_bytes(&db.path) == before, "the database file changed");
}

#[tokio::test]
async fn import_caps_are_checked_before_parsing() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    let req = request(List::Block, ImportFamily::Server, ImportFormat::Text);
    // Invalid values everywhere: the cap is reported, not the values.
    let big = "x".repeat(2 * 1024 * 1024 + 1);
    let err = store
        .import(&req, big.as_bytes(), "a", &no_progress)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImportError::TooLarge { bytes } if bytes == 2 * 1024 * 1024 + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("2 MB"));
    let many = "x;".repeat(100_001);
    let err = store
        .import(&req, many.as_bytes(), "a", &no_progress)
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
        .import(&req, exact.as_bytes(), "a", &no_progress)
        .await
        .unwrap();
    assert_eq!(report.added, 100_000);

    let err = store
        .import(&req, b"192.0.2.1\r\n\xfe\xff192.0.2.2", "a", &no_progress)
        .await
        .unwrap_err();
    assert!(matches!(err, ImportError::NotUtf8 { line: 2 }), "{err:?}");
    store.close().await;
}

async fn seeded() -> (Db, Store) {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], "a")
        .await
        .unwrap();
    let mut ip = spec(List::Allow, EntryKind::Ip, "192.0.2.0/24");
    ip.comment = Some("relay, \"main\" # 1".into());
    ip.starts_at = Some(parse_time("2026-01-01T10:00:00.5Z").unwrap());
    ip.expires_at = Some(parse_time("2026-06-01").unwrap());
    store.add_entry(&valid(ip), "a").await.unwrap();
    let mut host = spec(List::Allow, EntryKind::Host, "*.mx.partner.example");
    host.checks = Some(CheckSet::ALL);
    host.force = true;
    host.disabled = true;
    store.add_entry(&valid(host), "a").await.unwrap();
    store
        .add_entry(
            &new(List::Allow, EntryKind::Ip, "2001:db8::10-2001:db8::20"),
            "a",
        )
        .await
        .unwrap();
    let mut email = spec(List::Allow, EntryKind::Email, "ceo@partner.example");
    email.require_auth = true;
    email.scope = acme();
    store.add_entry(&valid(email), "a").await.unwrap();
    let mut domain_entry = spec(List::Allow, EntryKind::Domain, "*.partner.example");
    domain_entry.scope = acme();
    domain_entry.comment = Some("all of partner".into());
    store.add_entry(&valid(domain_entry), "a").await.unwrap();
    store
        .add_entry(&new(List::Block, EntryKind::Ip, "203.0.113.0/24"), "a")
        .await
        .unwrap();
    (db, store)
}

fn contents(entries: &[Entry]) -> Vec<NewEntry> {
    entries.iter().map(|e| e.entry.clone()).collect()
}

#[tokio::test]
async fn export_round_trips_csv_and_json() {
    let (db, store) = seeded().await;
    let groups = [
        (List::Allow, Scope::Global, ImportFamily::Server),
        (List::Allow, acme(), ImportFamily::Email),
        (List::Block, Scope::Global, ImportFamily::Server),
    ];
    for (format, import_format) in [
        (ExportFormat::Csv, ImportFormat::Csv),
        (ExportFormat::Json, ImportFormat::Json),
    ] {
        let fresh = self::db();
        let target = Store::open(&fresh.url).await.unwrap();
        target
            .add_tenant(&tenant("acme"), &[domain("acme.example")], "a")
            .await
            .unwrap();
        for (list, scope, family) in &groups {
            let filter = EntryFilter {
                list: Some(*list),
                scope: Some(scope.clone()),
                kind: None,
            };
            let text = store.export(&filter, format).await.unwrap();
            let mut req = ImportRequest::new(*list, *family);
            req.scope = scope.clone();
            req.format = import_format;
            req.force = true;
            let report = target
                .import(&req, text.as_bytes(), "b", &no_progress)
                .await
                .unwrap();
            assert_eq!(
                report.added as usize,
                store.entries(&filter).await.unwrap().len(),
                "{format}: {text}"
            );
            assert_eq!(
                contents(&target.entries(&filter).await.unwrap()),
                contents(&store.entries(&filter).await.unwrap()),
                "{format} round trip of {list} {scope}:\n{text}"
            );
        }
        assert_eq!(contents(&target.entries(&all()).await.unwrap()).len(), 6);
        // Exporting the copy gives the same text.
        assert_eq!(
            target.export(&all(), format).await.unwrap(),
            store.export(&all(), format).await.unwrap()
        );
        target.close().await;
    }
    store.close().await;
    drop(db);
}

#[tokio::test]
async fn export_round_trips_text_values_and_comments() {
    let (_db, store) = seeded().await;
    let text = store.export(&all(), ExportFormat::Text).await.unwrap();
    assert!(
        text.contains("# list: allow, scope: acme, kind: email"),
        "{text}"
    );
    assert!(
        text.contains("192.0.2.0/24 # relay, \"main\" # 1"),
        "{text}"
    );

    let filter = EntryFilter {
        list: Some(List::Allow),
        scope: Some(Scope::Global),
        kind: None,
    };
    let text = store.export(&filter, ExportFormat::Text).await.unwrap();
    let fresh = db();
    let target = Store::open(&fresh.url).await.unwrap();
    let mut req = request(List::Allow, ImportFamily::Server, ImportFormat::Text);
    req.checks = Some("spf".parse().unwrap());
    target
        .import(&req, text.as_bytes(), "b", &no_progress)
        .await
        .unwrap();
    let pairs = |entries: Vec<Entry>| {
        let mut v: Vec<(String, Option<String>)> = entries
            .iter()
            .map(|e| {
                (
                    e.entry.value.to_string(),
                    e.entry.comment.as_ref().map(|c| c.as_str().to_string()),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        pairs(target.entries(&all()).await.unwrap()),
        pairs(store.entries(&filter).await.unwrap())
    );
    target.close().await;
    store.close().await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_with_their_id() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
    let e = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), "a")
        .await
        .unwrap();
    store.close().await;
    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query("UPDATE entries SET value = 'not-an-ip' WHERE id = ?")
            .bind(e.id.0)
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }
    let store = Store::open(&db.url).await.unwrap();
    let err = store.entries(&all()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "entries", id, .. } if *id == e.id.0),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&format!("row {}", e.id.0)),
        "{err}"
    );
    assert!(matches!(
        store.remove_entry(EntryId(e.id.0), "a").await,
        Err(StoreError::Corrupt { .. })
    ));
    store.close().await;
}

/// 100,000 entries, about 2 MB of text, imported end to end. Run in release to see the real
/// figure: `cargo test --release -p allowgate-store -- --nocapture import_speed`.
#[tokio::test]
async fn import_speed() {
    let db = db();
    let store = Store::open(&db.url).await.unwrap();
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
        .import(&req, text.as_bytes(), "bench", &no_progress)
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
        .import(&req, text.as_bytes(), "bench", &no_progress)
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

/// The store's futures can be spawned on a multi-threaded runtime (the server does that).
#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let store = async { Store::open("sqlite::memory:").await.unwrap() };
    assert_send(&store);
    let whole = async {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let req = ImportRequest::new(List::Block, ImportFamily::Server);
        let filter = all();
        let import = store.import(&req, b"192.0.2.1", "a", &|_, _| {});
        assert_send(&import);
        let export = store.export(&filter, ExportFormat::Json);
        assert_send(&export);
        let entries = store.entries(&filter);
        assert_send(&entries);
        import.await.unwrap();
    };
    assert_send(&whole);
}
