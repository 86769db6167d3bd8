//! Message facts (`allowgate_core::MessageFacts`) read from arbitrary bytes, then evaluated.
//!
//! Properties:
//! - parsing never panics, and the caps hold (header senders, `Received:` hops, body items);
//! - every fact is normalised: header addresses and domains print back to themselves (domains
//!   as seen in mail: an invalid `xn--` label is kept, so it still meets its parents' entries),
//!   `Received:` and body IPs are never IPv4-mapped;
//! - evaluating the facts never panics, and block matching sees every sender the message
//!   carries: a sender whose domain is under `evil.test`, whole or only by its domain, blocks.
#![no_main]

use std::net::IpAddr;

use allowgate_core::{
    Context, MAX_BODY_ITEMS, MAX_HEADER_SENDERS, MAX_RECEIVED, MessageFacts, PolicyConfig,
    SenderAddress, Snapshot, Status, evaluate,
};
use allowgate_types::{
    CheckSet, Domain, EmailAddress, Entry, EntryId, EntryKind, EntrySpec, List, parse_time,
};
use libfuzzer_sys::fuzz_target;

fn entry(id: i64, list: List, kind: EntryKind, value: &str, checks: &str) -> Option<Entry> {
    let spec = EntrySpec {
        list: Some(list),
        kind: Some(kind),
        value: value.into(),
        checks: (!checks.is_empty())
            .then(|| checks.parse::<CheckSet>().ok())
            .flatten(),
        ..Default::default()
    };
    let (entry, _) = spec.validate().ok()?;
    Some(Entry {
        id: EntryId(id),
        entry,
        created_at: parse_time("2026-01-01").ok()?,
        created_by: "fuzz".into(),
    })
}

fn snapshot() -> Option<Snapshot> {
    let entries = vec![
        entry(1, List::Block, EntryKind::Domain, "*.evil.test", "")?,
        entry(2, List::Allow, EntryKind::Domain, "*.partner.test", "spam")?,
        entry(3, List::Ignore, EntryKind::Ip, "10.0.0.0/8", "")?,
        entry(4, List::Block, EntryKind::BodyDomain, "*.bad.com", "")?,
        entry(5, List::Ignore, EntryKind::BodyDomain, "safe.bad.com", "")?,
    ];
    let (snapshot, _) = Snapshot::compile(
        1,
        PolicyConfig::default(),
        &[],
        entries,
        &Default::default(),
    );
    Some(snapshot)
}

fuzz_target!(|data: &[u8]| {
    let facts = MessageFacts::parse(data);
    assert!(facts.header_senders.len() <= MAX_HEADER_SENDERS);
    assert!(facts.received_ips.len() <= MAX_RECEIVED);
    assert!(facts.body_domains.len() <= MAX_BODY_ITEMS);
    assert!(facts.body_ips.len() <= MAX_BODY_ITEMS);
    let mut evil = false;
    for h in &facts.header_senders {
        let domain = match &h.address {
            SenderAddress::Address(a) => {
                let again = EmailAddress::parse(&a.to_string());
                assert_eq!(again.as_ref(), Ok(a), "{a} does not print back to itself");
                Some(a.domain())
            }
            SenderAddress::DomainOnly(d) => {
                assert_eq!(Domain::parse_from_mail(d.as_str()).as_ref(), Ok(d));
                Some(d)
            }
            SenderAddress::Unreadable(text) => {
                assert!(!text.chars().any(char::is_control), "unescaped: {text:?}");
                None
            }
        };
        evil |= domain.is_some_and(|d| d.suffixes().any(|s| s == "evil.test"));
    }
    for ip in facts.received_ips.iter().chain(&facts.body_ips) {
        assert!(
            !matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()),
            "{ip} is IPv4-mapped"
        );
    }
    let (Some(snapshot), Ok(rcpt), Ok(now)) = (
        snapshot(),
        EmailAddress::parse("bob@example.com"),
        parse_time("2026-06-01"),
    ) else {
        return;
    };
    let mut ctx = Context::new(now, IpAddr::from([10, 0, 0, 1]), vec![rcpt]);
    ctx.message = Some(facts);
    let verdict = evaluate(&snapshot, &ctx);
    if evil {
        assert_eq!(
            verdict.status,
            Status::Blocked,
            "an evil.test sender slipped through"
        );
    }
});
