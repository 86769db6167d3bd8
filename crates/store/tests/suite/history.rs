//! The email history: batches written and read back, filters, entry hit counts, retention,
//! refusals.

use std::collections::BTreeMap;

use allowgate_store::history::{MAX_HISTORY_BATCH, MAX_RECIPIENTS, MAX_RECORD_BYTES};
use allowgate_store::{ErrorKind, HistoryFilter, HistoryMatch, HistoryRecord, Store, StoreError};
use allowgate_types::{EntryId, EntryKind, List};
use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;

/// A moment of the test's day: `t(90)` is 01:30:00 on 2026-12-01, UTC.
fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() + Duration::minutes(minutes)
}

/// A plain `pass` record at `time` from `ip`, sent by `sender`.
fn record(time: DateTime<Utc>, ip: &str, sender: Option<&str>) -> HistoryRecord {
    HistoryRecord {
        time,
        node: "gw1".into(),
        queue_id: Some(format!("Q{}", time.timestamp())),
        tenant: None,
        client_ip: ip.into(),
        sender: sender.map(Into::into),
        sender_source: sender.map(|_| "MAIL FROM".into()),
        recipients: vec!["bob@acme.example".into()],
        status: "pass".into(),
        action: "accept".into(),
        stage: "message".into(),
        bypassed: vec![],
        matched: vec![],
        checks: BTreeMap::from([("spf".into(), "not_run".into())]),
        reason: "Pass".into(),
        revision: 1,
    }
}

/// An allow entry that matched (and applied, or not).
fn allow_match(id: i64, applied: bool) -> HistoryMatch {
    HistoryMatch {
        id,
        list: "allow".into(),
        kind: "ip".into(),
        value: "192.0.2.0/24".into(),
        scope: "global".into(),
        checks: vec!["spf".into(), "dkim".into()],
        matched_on: "client ip 192.0.2.7".into(),
        applied,
    }
}

/// A record with every field set, exempted by entries 12 and 57.
fn full_record(time: DateTime<Utc>) -> HistoryRecord {
    HistoryRecord {
        time,
        node: "gw-east-2".into(),
        queue_id: Some("4FJK2Q1xyz".into()),
        tenant: Some("acme".into()),
        client_ip: "2001:db8::34f4".into(),
        sender: Some("\"x y\"@partner.example".into()),
        sender_source: Some("Return-Path".into()),
        recipients: vec![
            "bob@acme.example".into(),
            "carol@acme.example".into(),
            "ünïcode@acme.example".into(),
        ],
        status: "clean".into(),
        action: "accept".into(),
        stage: "message".into(),
        bypassed: vec!["spf".into(), "dkim".into(), "greylisting".into()],
        matched: vec![
            allow_match(12, true),
            HistoryMatch {
                id: 57,
                list: "allow".into(),
                kind: "email".into(),
                value: "*@partner.example".into(),
                scope: "acme".into(),
                checks: vec!["greylisting".into()],
                matched_on: "sender \"x y\"@partner.example (Return-Path)".into(),
                applied: true,
            },
            HistoryMatch {
                id: 3,
                list: "block".into(),
                kind: "country".into(),
                value: "CN".into(),
                scope: "global".into(),
                checks: vec![],
                matched_on: "country CN of 2001:db8::34f4\n\u{1b}[2J".into(),
                applied: false,
            },
        ],
        checks: BTreeMap::from([
            ("dkim".into(), "bypassed".into()),
            ("dmarc".into(), "none".into()),
            ("greylisting".into(), "bypassed".into()),
            ("rbl".into(), "not_run".into()),
            ("spf".into(), "bypassed".into()),
        ]),
        reason: "Clean: exempted by entry #12, #57".into(),
        revision: 42,
    }
}

fn filter() -> HistoryFilter {
    HistoryFilter::default()
}

/// The queue ids of `records`, in order.
fn queue_ids(records: &[HistoryRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.queue_id.clone().unwrap_or_default())
        .collect()
}

async fn read(store: &Store, filter: &HistoryFilter) -> Vec<String> {
    queue_ids(&store.history(filter).await.unwrap())
}

pub async fn history_records_read_back_identical<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let full = full_record(t(10));
    let mut bare = record(t(5), "192.0.2.7", None);
    bare.queue_id = None;
    bare.recipients = vec![];
    bare.checks = BTreeMap::new();
    let mut microseconds = record(t(7) + Duration::microseconds(123_457), "10.1.2.3", None);
    microseconds.queue_id = Some("micro".into());
    store
        .record_history(&[bare.clone(), full.clone(), microseconds.clone()])
        .await
        .unwrap();
    let read = store.history(&filter()).await.unwrap();
    assert_eq!(read, vec![full.clone(), microseconds, bare]);

    // The JSON form has the design's fields.
    let json = serde_json::to_value(&read[0]).unwrap();
    for field in [
        "time",
        "queue_id",
        "node",
        "tenant",
        "client_ip",
        "sender",
        "recipients",
        "status",
        "action",
        "bypassed",
        "matched",
        "checks",
        "reason",
        "revision",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }
    for field in [
        "id",
        "list",
        "kind",
        "value",
        "scope",
        "checks",
        "matched_on",
    ] {
        assert!(json["matched"][0].get(field).is_some(), "matched.{field}");
    }

    // A record survives closing and reopening the file.
    store.close().await;
    let store = open(&db).await;
    assert_eq!(store.history(&filter()).await.unwrap()[0], full);
    store.close().await;
}

pub async fn history_stores_addresses_normalised_and_times_to_the_microsecond<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let mut given = record(
        t(1) + Duration::nanoseconds(123_456_789),
        "::ffff:192.0.2.7",
        Some("<Alice@Example.COM.>"),
    );
    given.tenant = Some(" acme ".into());
    store.record_history(&[given.clone()]).await.unwrap();
    let stored = store.history(&filter()).await.unwrap().remove(0);
    assert_eq!(stored.client_ip, "192.0.2.7");
    assert_eq!(stored.sender.as_deref(), Some("alice@example.com"));
    assert_eq!(stored.tenant.as_deref(), Some("acme"));
    assert_eq!(stored.time, t(1) + Duration::microseconds(123_456));
    // Found by the normalised forms.
    for f in [
        HistoryFilter {
            ip: Some("192.0.2.7".into()),
            ..filter()
        },
        HistoryFilter {
            sender: Some("ALICE@example.com".into()),
            ..filter()
        },
        HistoryFilter {
            tenant: Some("acme".into()),
            ..filter()
        },
    ] {
        assert_eq!(store.history(&f).await.unwrap().len(), 1, "{f:?}");
    }
    store.close().await;
}

/// Twelve records, one a minute, from assorted senders, IPs, statuses and tenants.
fn assorted() -> Vec<HistoryRecord> {
    let rows: [(&str, Option<&str>, &str, Option<&str>); 12] = [
        (
            "192.0.2.7",
            Some("alice@partner.example"),
            "clean",
            Some("acme"),
        ),
        (
            "192.0.2.8",
            Some("bob@partner.example"),
            "pass",
            Some("acme"),
        ),
        (
            "192.0.2.200",
            Some("alice@mail.partner.example"),
            "pass",
            None,
        ),
        (
            "198.51.100.1",
            Some("eve@badpartner.example"),
            "blocked",
            Some("acme"),
        ),
        (
            "2001:db8::1",
            Some("alice@partner.example"),
            "clean",
            Some("other"),
        ),
        ("2001:db8:0:1::9", None, "greylisted", Some("other")),
        (
            "203.0.113.9",
            Some("carol@a.b.partner.example"),
            "spam",
            None,
        ),
        (
            "192.0.3.1",
            Some("dave@partner.example.net"),
            "pass",
            Some("acme"),
        ),
        (
            "::ffff:192.0.2.9",
            Some("alice@partner.example"),
            "rejected",
            Some("acme"),
        ),
        ("10.0.0.1", Some("x@partner.example"), "quarantined", None),
        (
            "192.0.2.7",
            Some("alice@partner.example"),
            "pass",
            Some("acme"),
        ),
        (
            "192.0.2.7",
            Some("mallory@example.org"),
            "clean",
            Some("other"),
        ),
    ];
    rows.iter()
        .enumerate()
        .map(|(i, (ip, sender, status, tenant))| {
            let mut r = record(t(i as i64), ip, *sender);
            r.queue_id = Some(format!("q{i}"));
            r.status = (*status).into();
            r.tenant = tenant.map(Into::into);
            r
        })
        .collect()
}

pub async fn history_filters_alone_and_combined<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let records = assorted();
    // Written in two batches, the newer one first: order comes from the time.
    store.record_history(&records[6..]).await.unwrap();
    store.record_history(&records[..6]).await.unwrap();
    let q = |ids: &[usize]| ids.iter().map(|i| format!("q{i}")).collect::<Vec<_>>();
    let f = |edit: &dyn Fn(&mut HistoryFilter)| {
        let mut f = filter();
        edit(&mut f);
        f
    };
    let cases: Vec<(&str, HistoryFilter, Vec<String>)> = vec![
        (
            "everything, newest first",
            filter(),
            q(&[11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]),
        ),
        (
            "an address",
            f(&|f| f.sender = Some("alice@partner.example".into())),
            q(&[10, 8, 4, 0]),
        ),
        (
            "a domain alone",
            f(&|f| f.sender = Some("partner.example".into())),
            q(&[10, 9, 8, 4, 1, 0]),
        ),
        (
            "@domain is the domain alone",
            f(&|f| f.sender = Some("@partner.example".into())),
            q(&[10, 9, 8, 4, 1, 0]),
        ),
        (
            "a domain and below, on label boundaries",
            f(&|f| f.sender = Some("*.partner.example".into())),
            q(&[10, 9, 8, 6, 4, 2, 1, 0]),
        ),
        (
            "an IPv4 address (and its mapped form)",
            f(&|f| f.ip = Some("::ffff:192.0.2.7".into())),
            q(&[11, 10, 0]),
        ),
        (
            "an IPv4 CIDR",
            f(&|f| f.ip = Some("192.0.2.0/24".into())),
            q(&[11, 10, 8, 2, 1, 0]),
        ),
        (
            "an IPv4 range",
            f(&|f| f.ip = Some("192.0.2.8-192.0.2.200".into())),
            q(&[8, 2, 1]),
        ),
        (
            "an IPv6 CIDR",
            f(&|f| f.ip = Some("2001:db8::/48".into())),
            q(&[5, 4]),
        ),
        (
            "an IPv6 address",
            f(&|f| f.ip = Some("[2001:DB8::1]".into())),
            q(&[4]),
        ),
        (
            "a status",
            f(&|f| f.status = Some("clean".into())),
            q(&[11, 4, 0]),
        ),
        (
            "a status in capitals",
            f(&|f| f.status = Some("Blocked".into())),
            q(&[3]),
        ),
        (
            "a tenant",
            f(&|f| f.tenant = Some("other".into())),
            q(&[11, 5, 4]),
        ),
        (
            "since (inclusive)",
            f(&|f| f.since = Some(t(9))),
            q(&[11, 10, 9]),
        ),
        ("a limit", f(&|f| f.limit = 2), q(&[11, 10])),
        (
            "sender and status",
            f(&|f| {
                f.sender = Some("alice@partner.example".into());
                f.status = Some("pass".into());
            }),
            q(&[10]),
        ),
        (
            "domain and below, CIDR, tenant",
            f(&|f| {
                f.sender = Some("@*.partner.example".into());
                f.ip = Some("192.0.2.0/24".into());
                f.tenant = Some("acme".into());
            }),
            q(&[10, 8, 1, 0]),
        ),
        (
            "ip, since and limit",
            f(&|f| {
                f.ip = Some("192.0.0.0/16".into());
                f.since = Some(t(1));
                f.limit = 3;
            }),
            q(&[11, 10, 8]),
        ),
        (
            "nothing matches",
            f(&|f| f.sender = Some("nobody@partner.example".into())),
            q(&[]),
        ),
        (
            "a tenant nobody has",
            f(&|f| f.tenant = Some("ghost".into())),
            q(&[]),
        ),
    ];
    for (what, filter, want) in cases {
        assert_eq!(read(&store, &filter).await, want, "{what}: {filter:?}");
    }
    store.close().await;
}

pub async fn records_of_the_same_time_come_newest_written_first<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let mut a = record(t(0), "192.0.2.1", None);
    a.queue_id = Some("first".into());
    let mut b_ = a.clone();
    b_.queue_id = Some("second".into());
    store.record_history(&[a]).await.unwrap();
    store.record_history(&[b_]).await.unwrap();
    assert_eq!(read(&store, &filter()).await, ["second", "first"]);
    store.close().await;
}

pub async fn bad_history_filters_are_refused_naming_the_field<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let cases: [(&str, HistoryFilter, &str); 9] = [
        (
            "sender",
            HistoryFilter {
                sender: Some("alice@".into()),
                ..filter()
            },
            "alice@",
        ),
        (
            "sender",
            HistoryFilter {
                sender: Some("not a domain".into()),
                ..filter()
            },
            "not a domain",
        ),
        (
            "ip",
            HistoryFilter {
                ip: Some("192.0.2.300".into()),
                ..filter()
            },
            "192.0.2.300",
        ),
        (
            "ip",
            HistoryFilter {
                ip: Some("192.0.2.0/33".into()),
                ..filter()
            },
            "192.0.2.0/33",
        ),
        (
            "status",
            HistoryFilter {
                status: Some("delivered".into()),
                ..filter()
            },
            "delivered",
        ),
        (
            "tenant",
            HistoryFilter {
                tenant: Some("Not A Tenant".into()),
                ..filter()
            },
            "Not A Tenant",
        ),
        (
            "limit",
            HistoryFilter {
                limit: 0,
                ..filter()
            },
            "0",
        ),
        (
            "limit",
            HistoryFilter {
                limit: 10_001,
                ..filter()
            },
            "10000",
        ),
        (
            "status",
            HistoryFilter {
                status: Some("pass\u{1b}[2J".into()),
                ..filter()
            },
            "pass\\u{1b}[2J",
        ),
    ];
    for (field, f, quoted) in cases {
        let err = store.history(&f).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidHistoryFilter { field: got, .. } if *got == field),
            "{f:?}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("{field}: ")) && message.contains(quoted),
            "{message}"
        );
        assert!(!message.contains('\u{1b}'), "{message}");
    }
    // The caps themselves are fine.
    for limit in [1, 10_000] {
        let f = HistoryFilter { limit, ..filter() };
        assert!(store.history(&f).await.unwrap().is_empty());
    }
    store.close().await;
}

pub async fn entry_hits_count_applied_matches_across_batches<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let hit = |time: DateTime<Utc>, matched: Vec<HistoryMatch>| HistoryRecord {
        matched,
        ..record(time, "192.0.2.7", None)
    };
    assert_eq!(store.entry_hits(EntryId(12)).await.unwrap(), None);
    store
        .record_history(&[
            hit(t(10), vec![allow_match(12, true), allow_match(57, false)]),
            // Listed twice in one record: one hit.
            hit(t(20), vec![allow_match(12, true), allow_match(12, true)]),
            hit(t(15), vec![allow_match(99, true)]),
        ])
        .await
        .unwrap();
    let hits = store.entry_hits(EntryId(12)).await.unwrap().unwrap();
    assert_eq!((hits.hits, hits.last_hit), (2, t(20)));
    // Matched but not applied: no hit.
    assert_eq!(store.entry_hits(EntryId(57)).await.unwrap(), None);
    // A later batch adds up; an older decision written late does not move last_hit back.
    store
        .record_history(&[hit(t(5), vec![allow_match(12, true)])])
        .await
        .unwrap();
    store
        .record_history(&[hit(
            t(30),
            vec![allow_match(12, true), allow_match(99, true)],
        )])
        .await
        .unwrap();
    let hits = store.entry_hits(EntryId(12)).await.unwrap().unwrap();
    assert_eq!((hits.hits, hits.last_hit), (4, t(30)));
    let hits = store.entry_hits(EntryId(99)).await.unwrap().unwrap();
    assert_eq!((hits.hits, hits.last_hit), (2, t(30)));
    // Purging history leaves the counts alone.
    assert_eq!(store.purge_history(t(100)).await.unwrap(), 5);
    assert_eq!(
        store.entry_hits(EntryId(12)).await.unwrap().unwrap().hits,
        4
    );
    store.close().await;
}

pub async fn entry_shows_one_entry_and_its_hits<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let added = store
        .add_entry(
            &new(List::Allow, EntryKind::Ip, "192.0.2.0/24"),
            &actor("a"),
        )
        .await
        .unwrap();
    assert_eq!(store.entry(added.id).await.unwrap(), added);
    let err = store.entry(EntryId(added.id.0 + 1)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err:?}");
    let mut r = record(t(1), "192.0.2.7", None);
    r.matched = vec![allow_match(added.id.0, true)];
    store.record_history(&[r]).await.unwrap();
    let hits = store.entry_hits(added.id).await.unwrap().unwrap();
    assert_eq!((hits.hits, hits.last_hit), (1, t(1)));
    store.close().await;
}

pub async fn purge_deletes_only_older_records_in_chunks<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    // 12,001 old records (more than two purge chunks), and 3 at or after the cut.
    let old: Vec<HistoryRecord> = (0..12_001)
        .map(|i| record(t(0) + Duration::milliseconds(i), "192.0.2.7", None))
        .collect();
    for batch in old.chunks(1000) {
        store.record_history(batch).await.unwrap();
    }
    let cut = t(60);
    let young: Vec<HistoryRecord> = [0, 1, 2]
        .iter()
        .map(|m| {
            let mut r = record(cut + Duration::minutes(*m), "192.0.2.7", None);
            r.queue_id = Some(format!("young{m}"));
            r
        })
        .collect();
    store.record_history(&young).await.unwrap();
    assert_eq!(store.purge_history(cut).await.unwrap(), 12_001);
    let all = HistoryFilter {
        limit: 10_000,
        ..filter()
    };
    assert_eq!(read(&store, &all).await, ["young2", "young1", "young0"]);
    assert_eq!(store.purge_history(cut).await.unwrap(), 0);
    assert_eq!(
        store
            .purge_history(cut + Duration::minutes(2))
            .await
            .unwrap(),
        2
    );
    assert_eq!(read(&store, &all).await, ["young2"]);
    store.close().await;
}

pub async fn an_empty_history_batch_changes_nothing<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .record_history(&[record(t(0), "192.0.2.7", None)])
        .await
        .unwrap();
    store.close().await;
    let before = b.state(&db).await;
    let store = open(&db).await;
    store.record_history(&[]).await.unwrap();
    store.close().await;
    assert!(
        b.state(&db).await == before,
        "an empty batch changed the database"
    );
}

pub async fn a_bad_history_record_refuses_the_whole_batch<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    store
        .record_history(&[record(t(0), "192.0.2.7", None)])
        .await
        .unwrap();
    store.close().await;
    let before = b.state(&db).await;

    let good = || {
        let mut r = record(t(1), "192.0.2.8", Some("alice@example.com"));
        r.matched = vec![allow_match(12, true)];
        r
    };
    let bad: Vec<(&str, HistoryRecord)> = vec![
        (
            "recipients",
            HistoryRecord {
                recipients: (0..=MAX_RECIPIENTS)
                    .map(|i| format!("r{i}@acme.example"))
                    .collect(),
                ..good()
            },
        ),
        (
            "record",
            HistoryRecord {
                reason: "x".repeat(MAX_RECORD_BYTES),
                ..good()
            },
        ),
        (
            "client_ip",
            HistoryRecord {
                client_ip: "192.0.2.300".into(),
                ..good()
            },
        ),
        (
            "client_ip",
            HistoryRecord {
                client_ip: "192.0.2.0/24".into(),
                ..good()
            },
        ),
        (
            "sender",
            HistoryRecord {
                sender: Some("no at sign".into()),
                ..good()
            },
        ),
        (
            "tenant",
            HistoryRecord {
                tenant: Some("ACME!".into()),
                ..good()
            },
        ),
        (
            "status",
            HistoryRecord {
                status: "delivered".into(),
                ..good()
            },
        ),
        (
            "action",
            HistoryRecord {
                action: "drop".into(),
                ..good()
            },
        ),
        (
            "stage",
            HistoryRecord {
                stage: "data".into(),
                ..good()
            },
        ),
        (
            "node",
            HistoryRecord {
                node: String::new(),
                ..good()
            },
        ),
        (
            "queue_id",
            HistoryRecord {
                queue_id: Some("q".repeat(256)),
                ..good()
            },
        ),
        (
            "revision",
            HistoryRecord {
                revision: -1,
                ..good()
            },
        ),
    ];
    let store = open(&db).await;
    for (field, record) in bad {
        assert_eq!(record.validate().map_err(|e| e.field), Err(field));
        let batch = [good(), good(), record, good()];
        let err = store.record_history(&batch).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::InvalidHistoryRecord { index: 2, problem } if problem.field == field),
            "{field}: {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("nothing was written"), "{err}");
    }
    // At the caps exactly: fine (checked, not written).
    let mut at_caps = good();
    at_caps.recipients = (0..MAX_RECIPIENTS)
        .map(|i| format!("r{i}@a.example"))
        .collect();
    at_caps.validate().unwrap();

    let too_many = vec![good(); MAX_HISTORY_BATCH + 1];
    let err = store.record_history(&too_many).await.unwrap_err();
    assert!(
        matches!(err, StoreError::HistoryBatchTooLarge { records } if records == MAX_HISTORY_BATCH + 1)
    );
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(store.entry_hits(EntryId(12)).await.unwrap(), None);
    store.close().await;
    assert!(
        b.state(&db).await == before,
        "a refused batch changed the database"
    );
}

/// The server writes history while admins change entries: both go through, neither fails.
pub async fn history_batches_and_admin_changes_interleave<B: Backend>(b: &B) {
    let db = b.fresh();
    let store = open(&db).await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for n in 0..20 {
                let batch: Vec<HistoryRecord> = (0..500)
                    .map(|i| record(t(n) + Duration::milliseconds(i), "192.0.2.7", None))
                    .collect();
                store.record_history(&batch).await.unwrap();
            }
        })
    };
    for i in 0..20 {
        store
            .add_entry(
                &new(List::Block, EntryKind::Ip, &format!("198.51.100.{i}")),
                &actor("admin"),
            )
            .await
            .unwrap();
    }
    writer.await.unwrap();
    assert_eq!(store.revision().await.unwrap(), 20);
    let all = HistoryFilter {
        limit: 10_000,
        ..filter()
    };
    assert_eq!(store.history(&all).await.unwrap().len(), 10_000);
    store.close().await;
}
