//! Semantics of `evaluate`: one HIT and one MISS per entry kind, and every rule of DESIGN §2–3.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::IpAddr;

use allowgate_core::{
    Action, CheckResult, CheckResults, Context, MessageFacts, Outcome, PolicyConfig, Snapshot,
    Status, Verdict, decide, evaluate, exemptions,
};
use allowgate_types::{
    CheckId, CheckSet, Domain, EmailAddress, Entry, EntryId, EntryKind, EntrySpec, IpRange, List,
    Scope, Tenant, TenantName, parse_time,
};
use chrono::{DateTime, Utc};

struct World {
    entries: Vec<Entry>,
    tenants: Vec<Tenant>,
    spf: HashMap<Domain, Vec<IpRange>>,
    config: PolicyConfig,
}

fn now() -> DateTime<Utc> {
    parse_time("2026-11-22T12:00:00Z").unwrap()
}

impl World {
    fn new() -> World {
        World {
            entries: Vec::new(),
            tenants: vec![
                Tenant {
                    name: TenantName::parse("acme").unwrap(),
                    domains: vec![Domain::parse("acme.test").unwrap()],
                },
                Tenant {
                    name: TenantName::parse("beta").unwrap(),
                    domains: vec![Domain::parse("beta.test").unwrap()],
                },
            ],
            spf: HashMap::new(),
            config: PolicyConfig::default(),
        }
    }

    /// Add an entry from a spec tweak; returns its id (ids count from 1).
    fn add(
        &mut self,
        list: List,
        kind: EntryKind,
        value: &str,
        checks: &str,
        tweak: impl FnOnce(&mut EntrySpec),
    ) -> i64 {
        let mut spec = EntrySpec {
            list: Some(list),
            kind: Some(kind),
            value: value.into(),
            checks: (!checks.is_empty()).then(|| checks.parse().unwrap()),
            force: true,
            ..Default::default()
        };
        tweak(&mut spec);
        let (entry, _) = spec.validate().unwrap_or_else(|e| panic!("{value}: {e:?}"));
        let id = self.entries.len() as i64 + 1;
        self.entries.push(Entry {
            id: EntryId(id),
            entry,
            created_at: now(),
            created_by: "test".into(),
        });
        id
    }

    fn allow(&mut self, kind: EntryKind, value: &str, checks: &str) -> i64 {
        self.add(List::Allow, kind, value, checks, |_| {})
    }

    fn block(&mut self, kind: EntryKind, value: &str) -> i64 {
        self.add(List::Block, kind, value, "", |_| {})
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::compile(
            7,
            self.config.clone(),
            &self.tenants,
            self.entries.clone(),
            &self.spf,
        )
        .0
    }

    fn check(&self, ctx: &Context) -> Verdict {
        evaluate(&self.snapshot(), ctx)
    }
}

fn ctx(ip: &str, rcpts: &[&str]) -> Context {
    Context::new(
        now(),
        ip.parse().unwrap(),
        rcpts
            .iter()
            .map(|r| EmailAddress::parse(r).unwrap())
            .collect(),
    )
}

fn ids(v: &[EntryId]) -> Vec<i64> {
    v.iter().map(|e| e.0).collect()
}

fn bypassed(v: &Verdict) -> String {
    v.bypassed
        .iter()
        .map(|c| c.id())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn ip_hit_and_miss() {
    let mut w = World::new();
    let id = w.allow(EntryKind::Ip, "192.0.2.0/24", "spf,rbl");
    let v = w.check(&ctx("192.0.2.7", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "spf,rbl");
    assert_eq!(v.status, Status::Clean);
    assert_eq!(v.reason(), format!("Clean: exempted by entry #{id}"));
    assert_eq!(v.checks[&CheckId::Spf], Outcome::Bypassed);
    assert_eq!(v.checks[&CheckId::Dkim], Outcome::NotRun);
    let v = w.check(&ctx("192.0.3.7", &["bob@acme.test"]));
    assert!(v.bypassed.is_empty());
    assert_eq!(v.status, Status::Pass);
    assert!(v.matched.is_empty());
}

#[test]
fn overlapping_cidr_and_range_add_their_checks() {
    let mut w = World::new();
    let a = w.allow(EntryKind::Ip, "192.0.2.124-192.0.2.255", "spf,dkim");
    let b = w.allow(EntryKind::Ip, "192.0.2.160/27", "greylisting");
    let c = w.allow(EntryKind::Ip, "192.0.2.164-192.0.2.192", "rbl");
    let v = w.check(&ctx("192.0.2.170", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "spf,dkim,rbl,greylisting");
    assert_eq!(ids(&v.bypassed_by[&CheckId::Spf]), [a]);
    assert_eq!(ids(&v.bypassed_by[&CheckId::Greylisting]), [b]);
    assert_eq!(
        v.matched.iter().map(|m| m.id.0).collect::<Vec<_>>(),
        [a, b, c]
    );
    let v = w.check(&ctx("192.0.2.193", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "spf,dkim");
}

#[test]
fn ipv4_mapped_matches_ipv4_entry() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "192.0.2.0/24", "spf");
    w.allow(EntryKind::Ip, "::ffff:198.51.100.0/120", "dkim");
    let v = w.check(&ctx("::ffff:192.0.2.9", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "spf");
    assert_eq!(v.client_ip.to_string(), "192.0.2.9");
    let v = w.check(&ctx("198.51.100.3", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "dkim");
}

#[test]
fn ipv6_hit_and_miss() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "2001:db8::/64", "spf");
    w.allow(EntryKind::Ip, "2001:db8::10-2001:db8::20", "dkim");
    assert_eq!(
        bypassed(&w.check(&ctx("2001:db8::15", &["b@acme.test"]))),
        "spf,dkim"
    );
    assert_eq!(
        bypassed(&w.check(&ctx("2001:db8::21", &["b@acme.test"]))),
        "spf"
    );
    assert_eq!(
        bypassed(&w.check(&ctx("2001:db8:1::1", &["b@acme.test"]))),
        ""
    );
}

#[test]
fn host_matches_forward_confirmed_name_on_label_boundaries() {
    let mut w = World::new();
    w.allow(EntryKind::Host, "*.example.com", "greylisting");
    let mut c = ctx("203.0.113.5", &["bob@acme.test"]);
    c.client_host = Some(Domain::parse("mail.example.com").unwrap());
    assert_eq!(bypassed(&w.check(&c)), "greylisting");
    c.client_host = Some(Domain::parse("badexample.com").unwrap());
    assert_eq!(bypassed(&w.check(&c)), "");
    c.client_host = None;
    assert_eq!(bypassed(&w.check(&c)), "");
}

#[test]
fn domain_pattern_label_boundaries_and_case() {
    let mut w = World::new();
    w.allow(EntryKind::Domain, "*.example.com", "spam");
    w.allow(EntryKind::Domain, "EXAMPLE.ORG.", "graymail");
    let mut c = ctx("203.0.113.5", &["bob@acme.test"]);
    for (from, want) in [
        ("a@mail.example.com", "spam"),
        ("a@example.com", "spam"),
        ("a@badexample.com", ""),
        ("a@example.org", "graymail"),
        ("a@Example.Org.", "graymail"),
        ("a@sub.example.org", ""),
    ] {
        c.mail_from = Some(EmailAddress::parse(from).unwrap());
        assert_eq!(bypassed(&w.check(&c)), want, "{from}");
    }
}

#[test]
fn email_patterns() {
    let mut w = World::new();
    w.allow(EntryKind::Email, "alice@example.com", "spf");
    w.allow(EntryKind::Email, "*@example.net", "dkim");
    w.allow(EntryKind::Email, "bob@*.example.org", "dmarc");
    let mut c = ctx("203.0.113.5", &["x@acme.test"]);
    for (from, want) in [
        ("Alice@EXAMPLE.com", "spf"),
        ("carol@example.com", ""),
        ("any@example.net", "dkim"),
        ("any@sub.example.net", ""),
        ("bob@mx.example.org", "dmarc"),
        ("bob@example.org", "dmarc"),
        ("bob@badexample.org", ""),
    ] {
        c.mail_from = Some(EmailAddress::parse(from).unwrap());
        assert_eq!(bypassed(&w.check(&c)), want, "{from}");
    }
}

#[test]
fn spf_domain_uses_expanded_ips() {
    let mut w = World::new();
    let id = w.allow(EntryKind::SpfDomain, "partner.example", "spf,greylisting");
    let unresolved = w.allow(EntryKind::SpfDomain, "other.example", "rbl");
    w.spf.insert(
        Domain::parse("partner.example").unwrap(),
        vec![IpRange::parse("198.51.100.0/28", false).unwrap().0],
    );
    let v = w.check(&ctx("198.51.100.5", &["bob@acme.test"]));
    assert_eq!(bypassed(&v), "spf,greylisting");
    assert_eq!(ids(&v.bypassed_by[&CheckId::Spf]), [id]);
    assert!(
        v.notes
            .iter()
            .any(|n| n.contains(&format!("#{unresolved}"))),
        "{:?}",
        v.notes
    );
    assert_eq!(
        bypassed(&w.check(&ctx("198.51.100.16", &["bob@acme.test"]))),
        ""
    );
}

#[test]
fn country_block_follows_spam_action_and_allow_by_country() {
    let mut w = World::new();
    let b = w.block(EntryKind::Country, "CN");
    w.allow(EntryKind::Country, "DE", "greylisting");
    let mut c = ctx("203.0.113.5", &["bob@acme.test"]);
    c.country = Some(allowgate_types::CountryCode::parse("cn").unwrap());
    let v = w.check(&c);
    assert_eq!(v.action, Action::Quarantine);
    assert_eq!(v.status, Status::Quarantined);
    assert_eq!(ids(&v.blocked_by), [b]);
    assert_eq!(v.checks[&CheckId::Country], Outcome::Fail);
    c.country = Some(allowgate_types::CountryCode::parse("DE").unwrap());
    let v = w.check(&c);
    assert_eq!(
        (v.action, bypassed(&v).as_str()),
        (Action::Accept, "greylisting")
    );
    assert_eq!(v.checks[&CheckId::Country], Outcome::Pass);
    c.country = None;
    assert_eq!(w.check(&c).checks[&CheckId::Country], Outcome::NotRun);
}

#[test]
fn block_entries_reject_unless_blocklist_bypassed() {
    let mut w = World::new();
    let b = w.block(EntryKind::Ip, "203.0.113.0/24");
    let v = w.check(&ctx("203.0.113.5", &["bob@acme.test"]));
    assert_eq!((v.action, v.status), (Action::Reject, Status::Blocked));
    assert_eq!(ids(&v.blocked_by), [b]);
    assert_eq!(v.checks[&CheckId::Blocklist], Outcome::Fail);
    assert_eq!(v.reason(), format!("Blocked: blocked by entry #{b}"));
    // An allow entry that bypasses `blocklist` wins; one that does not, does not.
    w.allow(EntryKind::Ip, "203.0.113.5", "spf");
    assert_eq!(
        w.check(&ctx("203.0.113.5", &["bob@acme.test"])).action,
        Action::Reject
    );
    w.allow(EntryKind::Ip, "203.0.113.5", "blocklist");
    let v = w.check(&ctx("203.0.113.5", &["bob@acme.test"]));
    assert_eq!((v.action, v.status), (Action::Accept, Status::Clean));
    assert!(v.blocked_by.is_empty());
    assert!(v.matched.iter().any(|m| m.id.0 == b && !m.applied));
    // The block action is configurable.
    w.config.block_action = allowgate_core::BlockAction::Tag;
    let v = w.check(&ctx("203.0.113.6", &["bob@acme.test"]));
    assert_eq!((v.action, v.status), (Action::Tag, Status::Spam));
}

fn message(headers: &str) -> MessageFacts {
    MessageFacts::parse(format!("{headers}Subject: t\r\n\r\nbody\r\n").as_bytes())
}

#[test]
fn allow_uses_one_sender_by_priority_block_uses_all() {
    let mut w = World::new();
    w.allow(EntryKind::Email, "friend@partner.test", "spam");
    w.allow(EntryKind::Email, "boss@partner.test", "graymail");
    let blocked = w.block(EntryKind::Email, "evil@bad.test");
    let mut c = ctx("203.0.113.5", &["bob@acme.test"]);
    c.mail_from = Some(EmailAddress::parse("friend@partner.test").unwrap());
    c.message = Some(message(
        "From: boss@partner.test\r\nSender: evil@bad.test\r\n",
    ));
    let v = w.check(&c);
    // Allow: only MAIL FROM is used, not From:.
    assert_eq!(bypassed(&v), "spam");
    assert_eq!(
        v.sender.as_ref().unwrap().to_string(),
        "friend@partner.test"
    );
    // Block: Sender: counts.
    assert_eq!(ids(&v.blocked_by), [blocked]);
    assert_eq!(v.action, Action::Reject);
    // Without MAIL FROM, Return-Path comes before From.
    c.mail_from = None;
    c.message = Some(message(
        "From: boss@partner.test\r\nReturn-Path: <friend@partner.test>\r\n",
    ));
    let v = w.check(&c);
    assert_eq!(bypassed(&v), "spam");
    assert_eq!(
        v.sender_source,
        Some(allowgate_types::SenderSource::ReturnPath)
    );
    // Only From: present.
    c.message = Some(message("From: \"Boss\" <boss@partner.test>\r\n"));
    assert_eq!(bypassed(&w.check(&c)), "graymail");
    // X-Env-Sender beats From:.
    c.message = Some(message(
        "From: boss@partner.test\r\nX-Env-Sender: friend@partner.test\r\n",
    ));
    assert_eq!(bypassed(&w.check(&c)), "spam");
}

#[test]
fn global_entry_applies_to_every_tenant_tenant_entry_to_its_own() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "192.0.2.1", "spf");
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "dkim", |s| {
        s.scope = "acme".parse::<Scope>().unwrap()
    });
    let v = w.check(&ctx("192.0.2.1", &["x@acme.test"]));
    assert_eq!(
        (bypassed(&v).as_str(), v.tenant.as_ref().map(|t| t.as_str())),
        ("spf,dkim", Some("acme"))
    );
    let v = w.check(&ctx("192.0.2.1", &["x@beta.test"]));
    assert_eq!(
        (bypassed(&v).as_str(), v.tenant.as_ref().map(|t| t.as_str())),
        ("spf", Some("beta"))
    );
    let v = w.check(&ctx("192.0.2.1", &["x@nobody.test"]));
    assert_eq!((bypassed(&v).as_str(), v.tenant.is_none()), ("spf", true));
}

#[test]
fn several_tenants_intersect_bypass_and_block_per_recipient() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "192.0.2.1", "spf");
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "dkim", |s| {
        s.scope = "acme".parse().unwrap()
    });
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "dkim,rbl", |s| {
        s.scope = "beta".parse().unwrap()
    });
    let v = w.check(&ctx("192.0.2.1", &["x@acme.test", "y@beta.test"]));
    assert_eq!(bypassed(&v), "spf,dkim");
    assert_eq!(v.tenant, None);
    assert_eq!(v.tenants.len(), 2);
    let b = w.add(List::Block, EntryKind::Ip, "192.0.2.1", "", |s| {
        s.scope = "beta".parse().unwrap()
    });
    let v = w.check(&ctx("192.0.2.1", &["x@acme.test", "y@beta.test"]));
    assert_eq!(v.action, Action::Accept);
    assert_eq!(ids(&v.blocked_by), [b]);
    let per: Vec<(String, Action)> = v
        .recipients
        .iter()
        .map(|r| (r.address.to_string(), r.action))
        .collect();
    assert_eq!(
        per,
        [
            ("x@acme.test".to_string(), Action::Accept),
            ("y@beta.test".to_string(), Action::Reject)
        ]
    );
    // Every recipient rejected → the message is rejected.
    assert_eq!(
        w.check(&ctx("192.0.2.1", &["y@beta.test"])).action,
        Action::Reject
    );
}

#[test]
fn expired_and_future_entries_match_nothing() {
    let mut w = World::new();
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "spf", |s| {
        s.expires_at = Some(parse_time("2026-11-01").unwrap())
    });
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "dkim", |s| {
        s.starts_at = Some(parse_time("2026-12-01").unwrap())
    });
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "rbl", |s| {
        s.starts_at = Some(parse_time("2026-11-01").unwrap());
        s.expires_at = Some(parse_time("2026-12-01").unwrap());
    });
    w.add(List::Allow, EntryKind::Ip, "192.0.2.1", "spam", |s| {
        s.disabled = true
    });
    let v = w.check(&ctx("192.0.2.1", &["x@acme.test"]));
    assert_eq!(bypassed(&v), "rbl");
    assert_eq!(v.matched.len(), 1);
}

#[test]
fn require_auth_entries_apply_only_to_authenticated_senders() {
    let mut w = World::new();
    let id = w.add(
        List::Allow,
        EntryKind::Domain,
        "partner.test",
        "spam",
        |s| s.require_auth = true,
    );
    let mut c = ctx("203.0.113.5", &["x@acme.test"]);
    c.mail_from = Some(EmailAddress::parse("a@partner.test").unwrap());
    let v = w.check(&c);
    assert_eq!(bypassed(&v), "");
    let m = v.matched.iter().find(|m| m.id.0 == id).unwrap();
    assert!(!m.applied && m.note.as_deref().unwrap().contains("has not run"));
    let snapshot = w.snapshot();
    let found = exemptions(&snapshot, &c);
    assert!(found.pending_authentication());
    assert_eq!(found.bypass().to_string(), "");
    let mut results = CheckResults::new();
    results.set_authenticated(vec![Domain::parse("other.test").unwrap()]);
    let v = decide(&found, &results).verdict();
    assert_eq!(bypassed(&v), "");
    let m = v.matched.iter().find(|m| m.id.0 == id).unwrap();
    assert!(
        m.note
            .as_deref()
            .unwrap()
            .contains("partner.test is not authenticated")
    );
    results.set_authenticated(vec![Domain::parse("partner.test").unwrap()]);
    let v = decide(&found, &results).verdict();
    assert_eq!(bypassed(&v), "spam");
    assert_eq!(v.status, Status::Clean);
}

#[test]
fn all_respects_never_bypass() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "192.0.2.1", "all");
    w.config.never_bypass = CheckSet::one(CheckId::Malware);
    let v = w.check(&ctx("192.0.2.1", &["x@acme.test"]));
    assert!(!v.bypassed.contains(&CheckId::Malware));
    assert!(v.bypassed.contains(&CheckId::Spam));
    assert_eq!(v.bypassed.len(), CheckId::ALL.len() - 1);
    w.config.never_bypass = CheckSet::EMPTY;
    assert_eq!(
        w.check(&ctx("192.0.2.1", &["x@acme.test"])).bypassed.len(),
        CheckId::ALL.len()
    );
}

#[test]
fn internal_relays_are_walked_in_received() {
    let mut w = World::new();
    let internal = w.add(List::Ignore, EntryKind::Ip, "10.0.0.0/8", "", |s| {
        s.internal = true
    });
    w.add(List::Ignore, EntryKind::Ip, "172.16.0.1", "", |_| {});
    let allow = w.allow(EntryKind::Ip, "203.0.113.9", "spf");
    let mut c = ctx("10.0.0.5", &["x@acme.test"]);
    c.message = Some(MessageFacts::parse(
        b"Received: from relay (relay [10.0.0.5]) by gw\r\n\
Received: from relay2 (relay2 [10.1.1.1]) by relay\r\n\
Received: from mail.sender.test (mail.sender.test [203.0.113.9]) by relay2\r\n\
Received: from client (client [198.51.100.1]) by mail.sender.test\r\n\r\nx\r\n",
    ));
    let v = w.check(&c);
    assert_eq!(v.client_ip.to_string(), "203.0.113.9");
    assert_eq!(bypassed(&v), "spf");
    assert_eq!(ids(&v.bypassed_by[&CheckId::Spf]), [allow]);
    assert!(ids(&v.ignored_by).contains(&internal));
    // The internal relay is ignored, the real client is not: RBLs still apply to it.
    assert_eq!(v.checks[&CheckId::Rbl], Outcome::NotRun);
    // A non-internal ignore entry is not walked past.
    c.client_ip = "172.16.0.1".parse().unwrap();
    let v = w.check(&c);
    assert_eq!(v.client_ip.to_string(), "172.16.0.1");
    assert_eq!(v.checks[&CheckId::Rbl], Outcome::Skipped);
}

#[test]
fn body_lists_block_and_ignore() {
    let mut w = World::new();
    let bd = w.block(EntryKind::BodyDomain, "*.evil.com");
    w.add(
        List::Ignore,
        EntryKind::BodyDomain,
        "safe.evil.com",
        "",
        |_| {},
    );
    let bi = w.block(EntryKind::BodyIp, "192.0.2.0/24");
    let mut c = ctx("203.0.113.5", &["x@acme.test"]);
    c.message = Some(MessageFacts::parse(
        b"Subject: x\r\n\r\nsee https://safe.evil.com/a and nothing else\r\n",
    ));
    let v = w.check(&c);
    assert_eq!(v.action, Action::Accept, "{:?}", v.matched);
    c.message = Some(MessageFacts::parse(
        b"Subject: x\r\n\r\nsee https://www.evil.com/a\r\n",
    ));
    assert_eq!(ids(&w.check(&c).blocked_by), [bd]);
    c.message = Some(MessageFacts::parse(
        b"Subject: x\r\n\r\nsee http://192.0.2.77/x\r\n",
    ));
    assert_eq!(ids(&w.check(&c).blocked_by), [bi]);
    c.message = Some(MessageFacts::parse(
        b"Subject: x\r\n\r\nsee http://198.51.100.1/x notevil.com\r\n",
    ));
    assert!(w.check(&c).blocked_by.is_empty());
}

#[test]
fn verdict_serialises_the_cli_contract() {
    let mut w = World::new();
    w.allow(EntryKind::Ip, "192.0.2.0/24", "spf");
    let v = w.check(&ctx("192.0.2.7", &["bob@acme.test"]));
    let json = serde_json::to_value(&v).unwrap();
    for key in [
        "action",
        "status",
        "tenant",
        "client_ip",
        "sender",
        "bypassed",
        "matched",
        "blocked_by",
        "checks",
    ] {
        assert!(json.get(key).is_some(), "{key} missing: {json}");
    }
    assert_eq!(json["bypassed"], serde_json::json!(["spf"]));
    assert_eq!(json["matched"][0]["value"], "192.0.2.0/24");
    assert_eq!(json["matched"][0]["checks"], serde_json::json!(["spf"]));
    assert_eq!(json["checks"]["dkim"], "not_run");
    assert_eq!(json["tenant"], "acme");
}

#[test]
fn no_recipients_and_null_sender_are_fine() {
    let w = World::new();
    let v = w.check(&ctx("192.0.2.7", &[]));
    assert_eq!(v.action, Action::Accept);
    assert!(v.sender.is_none());
    let _unused: IpAddr = v.client_ip;
}

/// Stage one tells a server what to skip before any check runs; stage three acts on what the
/// checks the server ran found, each result with its reason.
#[test]
fn staged_evaluation_checks_to_run_and_results_with_reasons() {
    let mut w = World::new();
    let id = w.allow(EntryKind::Ip, "192.0.2.0/24", "spf,greylisting,rbl");
    w.config.reject_on_fail = CheckSet::one(CheckId::Dkim);
    let snapshot = w.snapshot();
    let c = ctx("192.0.2.7", &["bob@acme.test"]);
    let found = exemptions(&snapshot, &c);
    let run = found.checks_to_run();
    assert!(!run.contains(CheckId::Spf) && !run.contains(CheckId::Greylisting));
    assert!(run.contains(CheckId::Dkim) && !run.contains(CheckId::Blocklist));

    let mut results = CheckResults::new();
    results.set(
        CheckId::Dkim,
        CheckResult::because(Outcome::Pass, "d=partner.test"),
    );
    // A result for a bypassed check is not acted on: greylisting was bypassed.
    results.set(CheckId::Greylisting, CheckResult::new(Outcome::Greylisted));
    let d = decide(&found, &results);
    assert_eq!((d.action(), d.status()), (Action::Accept, Status::Clean));
    let mut header = String::new();
    d.write_header(&mut header).unwrap();
    assert_eq!(
        header,
        format!("status=clean; bypass=spf,rbl,greylisting; entries={id}; tenant=acme")
    );
    let v = d.verdict();
    assert_eq!(v.checks[&CheckId::Dkim], Outcome::Pass);
    assert_eq!(v.checks[&CheckId::Greylisting], Outcome::Bypassed);
    assert_eq!(v.check_reasons[&CheckId::Dkim], "d=partner.test");

    // An enforced failure rejects; greylisting defers where it is not bypassed.
    results.set(
        CheckId::Dkim,
        CheckResult::because(Outcome::Fail, "body hash mismatch"),
    );
    let d = decide(&found, &results);
    assert_eq!((d.action(), d.status()), (Action::Reject, Status::Rejected));
    let other = ctx("203.0.113.1", &["bob@acme.test"]);
    let found = exemptions(&snapshot, &other);
    let mut results = CheckResults::new();
    results.set(CheckId::Greylisting, CheckResult::new(Outcome::Greylisted));
    let d = decide(&found, &results);
    assert_eq!(
        (d.action(), d.status()),
        (Action::Defer, Status::Greylisted)
    );
    let mut header = String::new();
    d.write_header(&mut header).unwrap();
    assert_eq!(header, "status=greylisted; tenant=acme");
}

#[test]
fn exemptions_explain_typed_provenance() {
    let mut w = World::new();
    let a = w.allow(EntryKind::Email, "*@partner.test", "spam");
    let b = w.block(EntryKind::Domain, "*.evil.test");
    let mut c = ctx("203.0.113.9", &["x@acme.test"]);
    c.mail_from = Some(EmailAddress::parse("news@partner.test").unwrap());
    c.message = Some(message("From: boss@mail.evil.test\r\n"));
    let v = w.check(&c);
    let on = |id: i64| {
        let m = v.matched.iter().find(|m| m.id.0 == id).unwrap();
        (serde_json::to_value(&m.on).unwrap(), m.matched_on.clone())
    };
    assert_eq!(
        on(a),
        (
            serde_json::json!({"fact": "sender", "address": "news@partner.test", "source": "MAIL FROM"}),
            "sender news@partner.test (MAIL FROM)".to_string()
        )
    );
    assert_eq!(on(b).0["source"], "From");
    assert_eq!(v.status, Status::Blocked);
}

/// DESIGN §2: block matching sees every sender the message carries. `"x y"@evil.test` reaches
/// us as `@evil.test` from the header parser; its domain must still meet the block entry.
#[test]
fn quoted_local_part_slips_past_block_entries_regression() {
    let mut w = World::new();
    let b = w.block(EntryKind::Domain, "*.evil.test");
    let mut c = ctx("203.0.113.9", &["x@acme.test"]);
    c.mail_from = Some(EmailAddress::parse("bounce@lists.example").unwrap());
    c.message = Some(message("From: \"x y\"@evil.test\r\n"));
    let v = w.check(&c);
    assert_eq!((v.action, ids(&v.blocked_by)), (Action::Reject, vec![b]));
    let m = v.matched.iter().find(|m| m.id.0 == b).unwrap();
    assert_eq!(
        m.matched_on,
        "sender domain evil.test (From; local part unreadable)"
    );
    // A sender that cannot be read at all is named in the notes, not silently dropped.
    c.message = Some(message("From: nobody@@\r\n"));
    let v = w.check(&c);
    assert!(
        v.notes.iter().any(|n| n.contains("could not be read")),
        "{:?}",
        v.notes
    );
}
