//! Tenants: add, list, domains added and removed, tenants removed.

use allowgate_store::{EntryFilter, ErrorKind, StoreError};
use allowgate_types::{EntryKind, List, Scope};

use super::*;

pub async fn tenants_are_added_and_listed<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let alice = actor("alice");
    let added = store
        .add_tenant(
            &tenant("acme"),
            &[
                domain("acme.example"),
                domain("Acme.NET."),
                domain("acme.example"),
            ],
            &alice,
        )
        .await
        .unwrap();
    assert_eq!(added.domains, [domain("acme.example"), domain("acme.net")]);
    store
        .add_tenant(&tenant("beta"), &[domain("beta.example")], &alice)
        .await
        .unwrap();

    let err = store
        .add_tenant(&tenant("acme"), &[domain("other.example")], &alice)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TenantExists { name } if name == "acme"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("acme"));

    let err = store
        .add_tenant(
            &tenant("gamma"),
            &[domain("g.example"), domain("acme.net")],
            &alice,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DomainTaken { domain, tenant } if domain == "acme.net" && tenant == "acme"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
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

pub async fn tenant_domains_are_added_and_removed<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let admin = actor("admin");
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &admin)
        .await
        .unwrap();
    store
        .add_tenant(&tenant("beta"), &[domain("beta.example")], &admin)
        .await
        .unwrap();
    let before = store.revision().await.unwrap();

    let acme = store
        .add_tenant_domains(
            &tenant("acme"),
            &[domain("acme.net"), domain("Acme.ORG"), domain("acme.net")],
            &actor("bob"),
        )
        .await
        .unwrap();
    assert_eq!(
        acme.domains,
        [
            domain("acme.example"),
            domain("acme.net"),
            domain("acme.org")
        ]
    );
    assert_eq!(store.revision().await.unwrap(), before + 1);
    assert_eq!(store.tenants().await.unwrap()[0], acme);
    let audit = &store.audit(1).await.unwrap()[0];
    assert_eq!(
        (
            audit.action.as_str(),
            audit.object.as_str(),
            audit.actor.as_str(),
            audit.revision
        ),
        ("update", "tenant", "bob", Some(before + 1))
    );
    assert_eq!(
        audit.before.as_ref().unwrap()["domains"],
        serde_json::json!(["acme.example"])
    );
    assert_eq!(
        audit.after.as_ref().unwrap()["domains"],
        serde_json::json!(["acme.example", "acme.net", "acme.org"])
    );

    // Refused, nothing changed: a domain of another tenant, one it has, an unknown tenant.
    for (name, d, owner) in [
        ("acme", "beta.example", "beta"),
        ("acme", "acme.net", "acme"),
    ] {
        let err = store
            .add_tenant_domains(&tenant(name), &[domain("new.example"), domain(d)], &admin)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::DomainTaken { domain, tenant } if domain == d && tenant == owner),
            "{err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }
    let err = store
        .add_tenant_domains(&tenant("nobody"), &[domain("n.example")], &admin)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TenantNotFound { name } if name == "nobody"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(store.revision().await.unwrap(), before + 1);

    // Remove one; it can then go to another tenant.
    let acme = store
        .remove_tenant_domain(&tenant("acme"), &domain("acme.net"), &admin)
        .await
        .unwrap();
    assert_eq!(acme.domains, [domain("acme.example"), domain("acme.org")]);
    assert_eq!(store.revision().await.unwrap(), before + 2);
    let audit = &store.audit(1).await.unwrap()[0];
    assert_eq!(audit.action, "update");
    assert_eq!(
        audit.after.as_ref().unwrap()["domains"],
        serde_json::json!(["acme.example", "acme.org"])
    );
    let err = store
        .remove_tenant_domain(&tenant("acme"), &domain("beta.example"), &admin)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::DomainNotOwned { domain, tenant } if domain == "beta.example" && tenant == "acme"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = store
        .remove_tenant_domain(&tenant("nobody"), &domain("beta.example"), &admin)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TenantNotFound { .. }), "{err:?}");
    store
        .add_tenant_domains(&tenant("beta"), &[domain("acme.net")], &admin)
        .await
        .unwrap();
    assert_eq!(store.revision().await.unwrap(), before + 3);
    store.close().await;
}

pub async fn a_tenant_with_entries_is_removed_only_together_with_them<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let admin = actor("admin");
    store
        .add_tenant(
            &tenant("acme"),
            &[domain("acme.example"), domain("acme.net")],
            &admin,
        )
        .await
        .unwrap();
    store
        .add_tenant(&tenant("empty"), &[], &admin)
        .await
        .unwrap();
    let global = store
        .add_entry(&new(List::Block, EntryKind::Ip, "192.0.2.1"), &admin)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for value in ["192.0.2.1", "192.0.2.2"] {
        let mut e = new(List::Block, EntryKind::Ip, value);
        e.scope = acme();
        ids.push(store.add_entry(&e, &admin).await.unwrap().id.0);
    }
    let before = store.revision().await.unwrap();

    let err = store
        .remove_tenant(&tenant("acme"), false, &admin)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::TenantHasEntries { name, entries: 2 } if name == "acme"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("--with-entries"), "{err}");
    assert_eq!(store.revision().await.unwrap(), before);
    assert_eq!(store.tenants().await.unwrap().len(), 2);

    let removed = store
        .remove_tenant(&tenant("acme"), true, &actor("carol"))
        .await
        .unwrap();
    assert_eq!(removed.entries_removed, 2);
    assert_eq!(removed.revision, before + 1);
    assert_eq!(
        removed.tenant.domains,
        [domain("acme.example"), domain("acme.net")]
    );
    assert_eq!(store.revision().await.unwrap(), before + 1);
    assert_eq!(store.entries(&all()).await.unwrap(), vec![global]);
    let tenants = store.tenants().await.unwrap();
    assert_eq!(tenants.len(), 1);
    assert_eq!(tenants[0].name, tenant("empty"));
    assert!(matches!(
        store
            .entries(&EntryFilter {
                scope: Some(acme()),
                ..all()
            })
            .await,
        Err(StoreError::UnknownTenant { .. })
    ));

    // One revision: an audit row per entry, then the tenant's.
    let audit: Vec<_> = store
        .audit(10)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.revision == Some(removed.revision))
        .collect();
    assert_eq!(audit.len(), 3, "{audit:#?}");
    assert!(
        audit
            .iter()
            .all(|a| a.action == "remove" && a.actor == "carol")
    );
    let mut entry_ids: Vec<i64> = audit
        .iter()
        .filter(|a| a.object == "entry")
        .map(|a| a.object_id.unwrap())
        .collect();
    entry_ids.sort();
    assert_eq!(entry_ids, ids);
    let tenant_row = audit.iter().find(|a| a.object == "tenant").unwrap();
    assert_eq!(tenant_row.before.as_ref().unwrap()["name"], "acme");
    assert!(tenant_row.after.is_none());

    // The name and the domains are free again; a tenant without entries needs no flag.
    store
        .add_tenant(&tenant("acme"), &[domain("acme.net")], &admin)
        .await
        .unwrap();
    store
        .remove_tenant(&tenant("empty"), false, &admin)
        .await
        .unwrap();
    let err = store
        .remove_tenant(&tenant("empty"), true, &admin)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TenantNotFound { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let scoped = store
        .entries(&EntryFilter {
            scope: Some(Scope::Tenant(tenant("acme"))),
            ..all()
        })
        .await
        .unwrap();
    assert!(
        scoped.is_empty(),
        "the new acme has none of the old entries"
    );
    store.close().await;
}
