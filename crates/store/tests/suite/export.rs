//! Export, and export imported again.

use allowgate_store::{
    EntryFilter, ExportFormat, ImportFamily, ImportFormat, ImportRequest, Store,
};
use allowgate_types::{CheckSet, Entry, EntryKind, List, Scope, parse_time};

use super::*;

async fn seeded<B: Backend>(b: &B) -> (TestDb, Store) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("a"))
        .await
        .unwrap();
    let mut ip = spec(List::Allow, EntryKind::Ip, "192.0.2.0/24");
    ip.comment = Some("relay, \"main\" # 1".into());
    ip.starts_at = Some(parse_time("2026-01-01T10:00:00.5Z").unwrap());
    ip.expires_at = Some(parse_time("2026-06-01").unwrap());
    store.add_entry(&valid(ip), &actor("a")).await.unwrap();
    let mut host = spec(List::Allow, EntryKind::Host, "*.mx.partner.example");
    host.checks = Some(CheckSet::ALL);
    host.force = true;
    host.disabled = true;
    store.add_entry(&valid(host), &actor("a")).await.unwrap();
    store
        .add_entry(
            &new(List::Allow, EntryKind::Ip, "2001:db8::10-2001:db8::20"),
            &actor("a"),
        )
        .await
        .unwrap();
    let mut email = spec(List::Allow, EntryKind::Email, "ceo@partner.example");
    email.require_auth = true;
    email.scope = acme();
    store.add_entry(&valid(email), &actor("a")).await.unwrap();
    let mut domain_entry = spec(List::Allow, EntryKind::Domain, "*.partner.example");
    domain_entry.scope = acme();
    domain_entry.comment = Some("all of partner".into());
    store
        .add_entry(&valid(domain_entry), &actor("a"))
        .await
        .unwrap();
    store
        .add_entry(
            &new(List::Block, EntryKind::Ip, "203.0.113.0/24"),
            &actor("a"),
        )
        .await
        .unwrap();
    (db, store)
}

pub async fn export_round_trips_csv_and_json<B: Backend>(b: &B) {
    let (db, store) = seeded(b).await;
    let groups = [
        (List::Allow, Scope::Global, ImportFamily::Server),
        (List::Allow, acme(), ImportFamily::Email),
        (List::Block, Scope::Global, ImportFamily::Server),
    ];
    for (format, import_format) in [
        (ExportFormat::Csv, ImportFormat::Csv),
        (ExportFormat::Json, ImportFormat::Json),
    ] {
        let fresh = b.fresh();
        let target = open(&fresh).await;
        target
            .add_tenant(&tenant("acme"), &[domain("acme.example")], &actor("a"))
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
                .import(&req, text.as_bytes(), &actor("b"), &no_progress)
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

pub async fn export_round_trips_text_values_and_comments<B: Backend>(b: &B) {
    let (_db, store) = seeded(b).await;
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
    let fresh = b.fresh();
    let target = open(&fresh).await;
    let mut req = request(List::Allow, ImportFamily::Server, ImportFormat::Text);
    req.checks = Some("spf".parse().unwrap());
    target
        .import(&req, text.as_bytes(), &actor("b"), &no_progress)
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
