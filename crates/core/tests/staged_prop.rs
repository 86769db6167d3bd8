//! The staged evaluation (`exemptions` → `decide`) agrees with a naive scan of every entry, for
//! every entry kind matched at the policy and message stages, all three lists, global and tenant
//! scopes, validity windows, `require_auth`, several tenants per message and header senders.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use allowgate_core::{
    CheckResults, Context, HeaderSender, MessageFacts, PolicyConfig, SenderAddress, Snapshot,
    decide, exemptions,
};
use allowgate_types::{
    CheckId, CheckSet, CountryCode, Domain, EmailAddress, Entry, EntryId, EntryKind, EntrySpec,
    EntryValue, List, Scope, SenderSource, Tenant, TenantName, parse_time,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

fn now() -> DateTime<Utc> {
    parse_time("2026-11-22T12:00:00Z").unwrap()
}

const NAMES: [&str; 5] = [
    "example.com",
    "mail.example.com",
    "a.mail.example.com",
    "badexample.com",
    "example.net",
];
const LOCALS: [&str; 3] = ["bob", "alice", "x"];
const TENANTS: [(&str, &str); 2] = [("acme", "acme.test"), ("beta", "beta.test")];
const RECIPIENTS: [&str; 3] = ["r@acme.test", "r@beta.test", "r@nobody.test"];
const COUNTRIES: [&str; 2] = ["CN", "DE"];

/// One random entry, as the generator describes it.
#[derive(Debug, Clone)]
struct Spec {
    list: u8,
    kind: u8,
    value: u16,
    scope: u8,
    window: u8,
    require_auth: bool,
    checks: u32,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        0u8..3,
        0u8..5,
        any::<u16>(),
        0u8..3,
        0u8..6,
        any::<bool>(),
        1u32..(1 << 19),
    )
        .prop_map(
            |(list, kind, value, scope, window, require_auth, checks)| Spec {
                list,
                kind,
                value,
                scope,
                window,
                require_auth,
                checks,
            },
        )
}

fn ip(n: u16) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0xC000_0200 | u32::from(n % 64)))
}

/// The entry a spec describes, or `None` where validation refuses the combination (allow
/// entries on body kinds, ignore entries on addresses and countries, …).
fn entry(id: i64, s: &Spec) -> Option<Entry> {
    let list = [List::Allow, List::Block, List::Ignore][usize::from(s.list)];
    let v = usize::from(s.value);
    let (kind, value) = match s.kind {
        0 => {
            let base = ip(s.value);
            let value = match v % 3 {
                0 => base.to_string(),
                1 => format!("{base}/{}", 28 + v % 5),
                _ => format!("{base}-{}", ip(s.value.wrapping_add(5))),
            };
            (EntryKind::Ip, value)
        }
        1 => {
            let name = NAMES[v % NAMES.len()];
            let star = if v / 7 % 2 == 0 { "*." } else { "" };
            (EntryKind::Host, format!("{star}{name}"))
        }
        2 => {
            let name = NAMES[v % NAMES.len()];
            let star = if v / 7 % 2 == 0 { "*." } else { "" };
            let local = match v / 11 % 4 {
                3 => "*",
                i => LOCALS[i],
            };
            (EntryKind::Email, format!("{local}@{star}{name}"))
        }
        // A forced bare suffix now and then: single-label keys must still be looked up.
        3 if v % 13 == 0 => (EntryKind::Domain, "*.com".to_string()),
        3 => {
            let name = NAMES[v % NAMES.len()];
            let star = if v / 7 % 2 == 0 { "*." } else { "" };
            (EntryKind::Domain, format!("{star}{name}"))
        }
        _ => (EntryKind::Country, COUNTRIES[v % 2].to_string()),
    };
    let (starts_at, expires_at) = match s.window {
        0 => (None, Some(parse_time("2026-01-01").unwrap())),
        1 => (Some(parse_time("2027-01-01").unwrap()), None),
        2 => (
            Some(parse_time("2026-01-01").unwrap()),
            Some(parse_time("2027-01-01").unwrap()),
        ),
        _ => (None, None),
    };
    let spec = EntrySpec {
        list: Some(list),
        kind: Some(kind),
        value,
        scope: match s.scope {
            0 => Scope::Global,
            t => Scope::Tenant(TenantName::parse(TENANTS[usize::from(t) - 1].0).unwrap()),
        },
        checks: (list == List::Allow).then(|| CheckSet::from_bits(s.checks)),
        require_auth: s.require_auth
            && list == List::Allow
            && matches!(kind, EntryKind::Email | EntryKind::Domain),
        starts_at,
        expires_at,
        force: true,
        ..Default::default()
    };
    let (entry, _) = spec.validate().ok()?;
    Some(Entry {
        id: EntryId(id),
        entry,
        created_at: now(),
        created_by: "prop".into(),
    })
}

/// A random message context.
#[derive(Debug, Clone)]
struct Query {
    ip: u16,
    host: Option<u16>,
    mail_from: Option<u16>,
    headers: Vec<(u8, u16, bool)>,
    recipients: Vec<u8>,
    country: Option<u8>,
}

fn query() -> impl Strategy<Value = Query> {
    (
        any::<u16>(),
        proptest::option::of(any::<u16>()),
        proptest::option::of(any::<u16>()),
        proptest::collection::vec((0u8..5, any::<u16>(), any::<bool>()), 0..3),
        proptest::collection::vec(0u8..3, 0..4),
        proptest::option::of(0u8..2),
    )
        .prop_map(
            |(ip, host, mail_from, headers, recipients, country)| Query {
                ip,
                host,
                mail_from,
                headers,
                recipients,
                country,
            },
        )
}

fn address(n: u16) -> EmailAddress {
    let n = usize::from(n);
    let local = LOCALS[n % LOCALS.len()];
    EmailAddress::parse(&format!("{local}@{}", NAMES[n / 3 % NAMES.len()])).unwrap()
}

fn context(q: &Query) -> Context {
    let mut ctx = Context::new(
        now(),
        ip(q.ip),
        q.recipients
            .iter()
            .map(|r| EmailAddress::parse(RECIPIENTS[usize::from(*r)]).unwrap())
            .collect(),
    );
    ctx.client_host = q
        .host
        .map(|h| Domain::parse(NAMES[usize::from(h) % NAMES.len()]).unwrap());
    ctx.mail_from = q.mail_from.map(address);
    ctx.country = q
        .country
        .map(|c| CountryCode::parse(COUNTRIES[usize::from(c)]).unwrap());
    if !q.headers.is_empty() {
        let sources = [
            SenderSource::ReturnPath,
            SenderSource::XEnvSender,
            SenderSource::From,
            SenderSource::Sender,
            SenderSource::XApparentlyFrom,
        ];
        let mut headers: Vec<(u8, u16, bool)> = q.headers.clone();
        headers.sort_by_key(|h| h.0);
        ctx.message = Some(MessageFacts {
            header_senders: headers
                .iter()
                .map(|(s, a, whole)| HeaderSender {
                    source: sources[usize::from(*s)],
                    address: if *whole {
                        SenderAddress::Address(address(*a))
                    } else {
                        SenderAddress::DomainOnly(address(*a).domain().clone())
                    },
                })
                .collect(),
            ..MessageFacts::default()
        });
    }
    ctx
}

/// What one tenant group should see, by a scan of every entry.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    matched: BTreeSet<i64>,
    bypass: CheckSet,
    blocked: BTreeSet<i64>,
    ignored: BTreeSet<i64>,
}

fn naive(entries: &[Entry], ctx: &Context, tenant: Option<&str>) -> Expected {
    let config = PolicyConfig::default();
    // The one allow sender: MAIL FROM, else the first whole header address by priority.
    let headers: Vec<&HeaderSender> = ctx
        .message
        .iter()
        .flat_map(|m| m.header_senders.iter())
        .collect();
    let allow_sender = ctx.mail_from.clone().or_else(|| {
        headers.iter().find_map(|h| match &h.address {
            SenderAddress::Address(a) => Some(a.clone()),
            _ => None,
        })
    });
    let mut addresses: Vec<EmailAddress> = ctx.mail_from.iter().cloned().collect();
    let mut domains: Vec<Domain> = Vec::new();
    for h in &headers {
        match &h.address {
            SenderAddress::Address(a) => addresses.push(a.clone()),
            SenderAddress::DomainOnly(d) => domains.push(d.clone()),
            SenderAddress::Unreadable(_) => {}
        }
    }
    let client = allowgate_types::normalize_ip(ctx.client_ip);
    let mut out = Expected {
        matched: BTreeSet::new(),
        bypass: CheckSet::EMPTY,
        blocked: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for e in entries {
        let n = &e.entry;
        let in_scope = match &n.scope {
            Scope::Global => true,
            Scope::Tenant(t) => Some(t.as_str()) == tenant,
        };
        if !in_scope || !n.is_active_at(now()) {
            continue;
        }
        let sender_matches = |a: &EmailAddress| match &n.value {
            EntryValue::Email(p) => p.matches(a),
            EntryValue::Domain(p) => p.matches(a.domain()),
            _ => false,
        };
        let domain_matches = |d: &Domain| match &n.value {
            EntryValue::Email(p) => p.local().is_none() && p.domain().matches(d),
            EntryValue::Domain(p) => p.matches(d),
            _ => false,
        };
        let client_matches = match &n.value {
            EntryValue::Ip(r) => r.contains(client),
            EntryValue::Host(p) => ctx.client_host.as_ref().is_some_and(|h| p.matches(h)),
            EntryValue::Country(c) => ctx.country == Some(*c),
            _ => false,
        };
        let hit = client_matches
            || match n.list {
                List::Allow => allow_sender.as_ref().is_some_and(sender_matches),
                _ => addresses.iter().any(sender_matches) || domains.iter().any(domain_matches),
            };
        if !hit {
            continue;
        }
        out.matched.insert(e.id.0);
        match n.list {
            // No sender authentication ran: `require_auth` entries do not apply.
            List::Allow if !n.require_auth => {
                out.bypass = out.bypass.union(n.checks.resolve(config.never_bypass));
            }
            List::Allow => {}
            List::Block => {
                out.blocked.insert(e.id.0);
            }
            List::Ignore => {
                out.ignored.insert(e.id.0);
            }
        }
    }
    // Block entries bypassed by `blocklist` (or `country` for country entries) do not block.
    let by_kind = |id: &i64| {
        let e = entries.iter().find(|e| e.id.0 == *id).unwrap();
        let check = if e.entry.kind() == EntryKind::Country {
            CheckId::Country
        } else {
            CheckId::Blocklist
        };
        !out.bypass.contains(check)
    };
    out.blocked = out.blocked.iter().copied().filter(by_kind).collect();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn staged_path_agrees_with_naive_scan(
        specs in proptest::collection::vec(spec(), 0..80),
        queries in proptest::collection::vec(query(), 1..12),
    ) {
        let entries: Vec<Entry> = specs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| entry(i as i64 + 1, s))
            .collect();
        let tenants: Vec<Tenant> = TENANTS
            .iter()
            .map(|(n, d)| Tenant {
                name: TenantName::parse(n).unwrap(),
                domains: vec![Domain::parse(d).unwrap()],
            })
            .collect();
        let (snapshot, warnings) = Snapshot::compile(
            1,
            PolicyConfig::default(),
            &tenants,
            entries.clone(),
            &Default::default(),
        );
        prop_assert!(warnings.is_empty());
        for q in &queries {
            let ctx = context(q);
            let found = exemptions(&snapshot, &ctx);
            let results = CheckResults::new();
            let decision = decide(&found, &results);
            let verdict = decision.verdict();
            let mut message_bypass: Option<CheckSet> = None;
            for group in &verdict.groups {
                let tenant = group.tenant.as_ref().map(TenantName::as_str);
                let want = naive(&entries, &ctx, tenant);
                let got = Expected {
                    matched: group.matched.iter().map(|m| m.id.0).collect(),
                    bypass: group.bypass,
                    blocked: group.blocked_by.iter().map(|id| id.0).collect(),
                    ignored: group.ignored_by.iter().map(|id| id.0).collect(),
                };
                prop_assert_eq!(&got, &want, "tenant {:?}, query {:?}", tenant, q);
                message_bypass = Some(match message_bypass {
                    None => want.bypass,
                    Some(b) => b.intersection(want.bypass),
                });
            }
            let message_bypass = message_bypass.unwrap_or(CheckSet::EMPTY);
            prop_assert_eq!(found.bypass(), message_bypass);
            prop_assert_eq!(decision.bypassed(), message_bypass);
            let bypassed: CheckSet = verdict.bypassed.iter().copied().collect();
            prop_assert_eq!(bypassed, message_bypass);
            // The recipients' groups: one per tenant (recipients of no tenant together).
            let want_groups: BTreeSet<Option<&str>> = ctx
                .recipients
                .iter()
                .map(|r| TENANTS.iter().find(|(_, d)| r.domain().as_str() == *d).map(|(n, _)| *n))
                .collect();
            let got_groups: BTreeSet<Option<&str>> = verdict
                .groups
                .iter()
                .map(|g| g.tenant.as_ref().map(TenantName::as_str))
                .collect();
            if !ctx.recipients.is_empty() {
                prop_assert_eq!(got_groups, want_groups);
            }
        }
    }
}
