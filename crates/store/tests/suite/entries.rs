//! Entries one at a time: add, list, filter, remove; revisions, audit, errors.

use allowgate_store::{ErrorKind, Store, StoreError};
use allowgate_types::{CheckSet, EntryId, EntryKind, List, NewEntry, Scope, parse_time};

use super::*;

pub async fn a_fresh_store_is_empty<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.entries(&all()).await.unwrap().is_empty());
    assert!(store.tenants().await.unwrap().is_empty());
    assert!(store.audit(10).await.unwrap().is_empty());
    let policy = store.load_policy().await.unwrap();
    assert_eq!(
        (policy.revision, policy.tenants.len(), policy.entries.len()),
        (0, 0, 0)
    );
    store.close().await;
}

/// What every backend says about URLs it cannot use: the kind, a hint, and no secret.
pub async fn unusable_urls_are_refused_without_repeating_secrets<B: Backend>(_: &B) {
    let err = Store::open("postgres://user:secret@db/allowgate")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::UnsupportedUrl { scheme, .. } if scheme == "postgres"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("later"), "{err}");
    let err = Store::open("mysql://user:secret@db/allowgate")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sqlite://"), "{err}");

    // A bare path: the URL it probably meant.
    let err = Store::open("plain.db").await.unwrap_err();
    assert!(matches!(err, StoreError::NotAUrl { .. }), "{err:?}");
    assert!(err.to_string().contains("sqlite://plain.db"), "{err}");

    // A malformed SQLite URL: invalid input, its reason kept.
    let err = Store::open("sqlite://x.db?mode=bogus").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err:?}");
    for e in [
        Store::open("postgres://user:secret@db/allowgate")
            .await
            .unwrap_err(),
        Store::open("user:secret@db").await.unwrap_err(),
    ] {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!text.contains("secret"), "{text}");
    }
}

pub async fn entries_add_list_filter_remove<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let alice = actor("alice");
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &alice)
        .await
        .unwrap();
    let a = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.0/24"), &alice)
        .await
        .unwrap();
    let b_ = store
        .add_entry(
            &new(List::Allow, EntryKind::Host, "*.partner.example"),
            &alice,
        )
        .await
        .unwrap();
    let mut tenant_spec = spec(List::Block, EntryKind::Email, "spam@bad.example");
    tenant_spec.scope = acme();
    let c = store
        .add_entry(&valid(tenant_spec), &actor("bob"))
        .await
        .unwrap();
    assert!(a.id < b_.id && b_.id < c.id);

    assert_eq!(
        store.entries(&all()).await.unwrap(),
        vec![a.clone(), b_.clone(), c.clone()]
    );
    let blocks = allowgate_store::EntryFilter {
        list: Some(List::Block),
        ..all()
    };
    assert_eq!(
        store.entries(&blocks).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    let global = allowgate_store::EntryFilter {
        scope: Some(Scope::Global),
        ..all()
    };
    assert_eq!(
        store.entries(&global).await.unwrap(),
        vec![a.clone(), b_.clone()]
    );
    let tenant_only = allowgate_store::EntryFilter {
        scope: Some(acme()),
        ..all()
    };
    assert_eq!(store.entries(&tenant_only).await.unwrap(), vec![c.clone()]);
    let hosts = allowgate_store::EntryFilter {
        kind: Some(EntryKind::Host),
        ..all()
    };
    assert_eq!(store.entries(&hosts).await.unwrap(), vec![b_.clone()]);
    let unknown = allowgate_store::EntryFilter {
        scope: Some(Scope::Tenant(tenant("nobody"))),
        ..all()
    };
    let err = store.entries(&unknown).await.unwrap_err();
    assert!(matches!(err, StoreError::UnknownTenant { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let carol = actor("carol");
    let removed = store.remove_entry(b_.id, &carol).await.unwrap();
    assert_eq!(removed, b_);
    assert_eq!(
        store.entries(&all()).await.unwrap(),
        vec![a.clone(), c.clone()]
    );
    let err = store.remove_entry(b_.id, &carol).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { id } if id == b_.id),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // Ids are never reused.
    let d = store
        .add_entry(
            &new(List::Allow, EntryKind::Host, "*.partner.example"),
            &alice,
        )
        .await
        .unwrap();
    assert!(d.id > c.id);
    store.close().await;
}

pub async fn duplicates_and_unknown_tenants_are_refused<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let a = actor("a");
    let first = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.7"), &a)
        .await
        .unwrap();
    // Same identity after normalisation.
    let err = store
        .add_entry(&new(List::Block, EntryKind::Ip, "::ffff:192.0.2.7"), &a)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Duplicate { existing } if existing == first.id),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains(&first.id.to_string()));
    // Another list, or another scope, is another entry.
    store
        .add_entry(&new(List::Ignore, EntryKind::Ip, "192.0.2.7"), &a)
        .await
        .unwrap();
    store.add_tenant(&tenant("acme"), &[], &a).await.unwrap();
    let mut scoped = new(List::Block, EntryKind::Ip, "192.0.2.7");
    scoped.scope = acme();
    store.add_entry(&scoped, &a).await.unwrap();
    let err = store.add_entry(&scoped, &a).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { .. }));

    scoped.scope = Scope::Tenant(tenant("nobody"));
    let err = store.add_entry(&scoped, &a).await.unwrap_err();
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

pub async fn every_field_round_trips<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let alice = actor("alice");
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &alice)
        .await
        .unwrap();
    let wanted = every_field_entry();
    let stored = store.add_entry(&wanted, &alice).await.unwrap();
    let mut internal = spec(List::Ignore, EntryKind::Ip, "2001:db8::/48");
    internal.internal = true;
    let internal = store.add_entry(&valid(internal), &alice).await.unwrap();
    store.close().await;

    let store = open(&db).await;
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
        Some(&allowgate_store::entry_to_json(&stored).unwrap())
    );
    assert_eq!(
        audit[0].after.as_ref(),
        Some(&allowgate_store::entry_to_json(&read[1]).unwrap())
    );
    let after = audit[1].after.as_ref().unwrap();
    assert_eq!(after["checks"], serde_json::json!(["all"]));
    assert_eq!(after["scope"], "acme");
    assert_eq!(after["require_auth"], true);
    assert_eq!(after["enabled"], false);
    assert_eq!(after["starts_at"], "2026-12-01T08:30:00.123456+00:00");
    store.close().await;
}

pub async fn revisions_and_audit<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    assert_eq!(store.revision().await.unwrap(), 0);
    assert!(store.audit(10).await.unwrap().is_empty());
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("alice"))
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), 1);
    let e = store
        .add_entry(
            &new(List::Block, EntryKind::Domain, "bad.example"),
            &actor("bob"),
        )
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), 2);
    store.remove_entry(e.id, &actor("carol")).await.unwrap();
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
        (Some(3), "carol", "remove")
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
    assert_eq!((add.revision, add.action.as_str()), (Some(2), "add"));
    assert_eq!(
        (tenant_add.revision, tenant_add.object.as_str()),
        (Some(1), "tenant")
    );
    assert!(tenant_add.at <= add.at && add.at <= remove.at);
    assert_eq!(store.audit(1).await.unwrap(), vec![remove.clone()]);
    store.close().await;
}

pub async fn corrupt_rows_are_reported_with_their_id<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let e = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), &actor("a"))
        .await
        .unwrap();
    store.close().await;
    b.execute_raw(
        &db,
        "UPDATE entries SET value = 'not-an-ip' WHERE id = $1",
        e.id.0,
    )
    .await;
    let store = open(&db).await;
    let err = store.entries(&all()).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { table: "entries", id, .. } if *id == e.id.0),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(
        err.to_string().contains(&format!("row {}", e.id.0)),
        "{err}"
    );
    // A policy load leaves the row out and names it, so that one bad row does not stop every
    // decision; the other entries are served.
    let good = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.2"), &actor("a"))
        .await
        .unwrap();
    let policy = store.load_policy().await.unwrap();
    assert_eq!(policy.entries, vec![good]);
    assert_eq!(policy.unreadable.len(), 1);
    assert_eq!(policy.unreadable[0].id, e.id);
    assert!(
        policy.unreadable[0].to_string().contains("not-an-ip"),
        "{}",
        policy.unreadable[0]
    );
    assert!(matches!(
        store.remove_entry(EntryId(e.id.0), &actor("a")).await,
        Err(StoreError::Corrupt { .. })
    ));
    store.close().await;
}
