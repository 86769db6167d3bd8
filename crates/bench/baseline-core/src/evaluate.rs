//! `evaluate(&Snapshot, &Context) -> Verdict`: DESIGN §2 and §3 steps 1–4 and 6.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use allowgate_types::{
    CheckId, CheckSet, CountryCode, Domain, EmailAddress, EntryId, EntryKind, List, SenderSource,
    TenantName, normalize_ip,
};
use chrono::{DateTime, Utc};

use crate::message::MessageFacts;
use crate::snapshot::{BlockAction, ListIndex, Snapshot};
use crate::verdict::{
    Action, CheckOutcome, MatchedEntry, RecipientVerdict, Status, TenantVerdict, Verdict,
};

/// Everything known about a message at the point of evaluation.
#[derive(Debug, Clone)]
pub struct Context {
    /// The time validity windows are checked against.
    pub now: DateTime<Utc>,
    /// The connecting client's IP.
    pub client_ip: IpAddr,
    /// The client's host name, only if forward-confirmed (reverse and forward DNS agree).
    pub client_host: Option<Domain>,
    /// The HELO/EHLO name (informational).
    pub helo: Option<String>,
    /// SMTP `MAIL FROM`; `None` for the null sender `<>`.
    pub mail_from: Option<EmailAddress>,
    /// Envelope recipients.
    pub recipients: Vec<EmailAddress>,
    /// Facts from the message, once its headers and body are known (milter, `check --message`).
    pub message: Option<MessageFacts>,
    /// GeoIP country of the client IP, when a GeoIP database is configured.
    pub country: Option<CountryCode>,
    /// Domains authenticated for this message (aligned SPF pass, aligned DKIM pass or DMARC
    /// pass); `None` when sender authentication has not run. `require_auth` entries only apply
    /// when the allow sender's domain is here.
    pub authenticated_domains: Option<Vec<Domain>>,
}

impl Context {
    /// A context with only the connecting IP and recipients set.
    pub fn new(now: DateTime<Utc>, client_ip: IpAddr, recipients: Vec<EmailAddress>) -> Context {
        Context {
            now,
            client_ip,
            client_host: None,
            helo: None,
            mail_from: None,
            recipients,
            message: None,
            country: None,
            authenticated_domains: None,
        }
    }
}

/// Evaluate a message against a snapshot. Pure: no I/O, cannot fail. When unsure, no exemption.
pub fn evaluate(snapshot: &Snapshot, ctx: &Context) -> Verdict {
    // Step 1: tenants from recipient domains.
    let mut groups: BTreeMap<Option<usize>, Vec<EmailAddress>> = BTreeMap::new();
    for rcpt in &ctx.recipients {
        let tenant = snapshot.tenant_of_domain.get(rcpt.domain()).copied();
        groups.entry(tenant).or_default().push(rcpt.clone());
    }
    if groups.is_empty() {
        groups.insert(None, Vec::new());
    }
    let senders = Senders::of(ctx);
    let tenant_verdicts: Vec<TenantVerdict> = groups
        .into_iter()
        .map(|(tenant, recipients)| evaluate_tenant(snapshot, ctx, &senders, tenant, recipients))
        .collect();
    combine(snapshot, ctx, &senders, tenant_verdicts)
}

/// Step 3: the one allow sender and all block senders.
struct Senders {
    allow: Option<(SenderSource, EmailAddress)>,
    all: Vec<(SenderSource, EmailAddress)>,
}

impl Senders {
    fn of(ctx: &Context) -> Senders {
        let mut all: Vec<(SenderSource, EmailAddress)> = Vec::new();
        if let Some(a) = &ctx.mail_from {
            all.push((SenderSource::MailFrom, a.clone()));
        }
        if let Some(m) = &ctx.message {
            all.extend(m.header_senders.iter().cloned());
        }
        let allow = SenderSource::PRIORITY
            .iter()
            .find_map(|src| all.iter().find(|(s, _)| s == src))
            .cloned();
        let mut seen = BTreeSet::new();
        all.retain(|(_, a)| seen.insert(a.clone()));
        Senders { allow, all }
    }
}

/// Collects matches of one list, in label order, with what they matched on.
struct Matches {
    found: BTreeMap<u32, String>,
}

impl Matches {
    fn new() -> Matches {
        Matches {
            found: BTreeMap::new(),
        }
    }

    fn add(
        &mut self,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
        labels: &[u32],
        on: impl Fn() -> String,
    ) {
        for l in labels {
            if snapshot.entry(*l).is_active_at(now) {
                self.found.entry(*l).or_insert_with(&on);
            }
        }
    }
}

/// Lists of the scopes that apply: global, and the tenant's own.
fn scopes(
    snapshot: &Snapshot,
    tenant: Option<usize>,
    list: List,
) -> impl Iterator<Item = &ListIndex> {
    std::iter::once(0)
        .chain(tenant.map(|t| t + 1))
        .filter_map(move |s| snapshot.scopes.get(s))
        .map(move |s| s.list(list))
}

/// Step 2: walk `Received:` hops while the current hop is an `internal` ignore entry.
fn effective_ip(snapshot: &Snapshot, ctx: &Context, tenant: Option<usize>) -> (IpAddr, Vec<u32>) {
    let mut chain = vec![normalize_ip(ctx.client_ip)];
    if let Some(m) = &ctx.message {
        for ip in &m.received_ips {
            if chain.last() != Some(ip) {
                chain.push(*ip);
            }
        }
    }
    let mut used = Vec::new();
    let mut i = 0;
    while i + 1 < chain.len() {
        let internal: Vec<u32> = scopes(snapshot, tenant, List::Ignore)
            .filter_map(|l| l.client_ip.lookup(chain[i]))
            .flat_map(|hit| hit.labels.iter().copied())
            .filter(|l| {
                let e = snapshot.entry(*l);
                e.entry.entry.internal
                    && e.entry.entry.kind() == EntryKind::Ip
                    && e.is_active_at(ctx.now)
            })
            .collect();
        if internal.is_empty() {
            break;
        }
        used.extend(internal);
        i += 1;
    }
    (chain[i], used)
}

struct Facts<'a> {
    client_ip: IpAddr,
    host: Option<&'a Domain>,
    body_domains: Vec<&'a Domain>,
    body_ips: Vec<IpAddr>,
}

/// Match one list (all scopes) on the client: IP (and resolved SPF domains), host, country.
fn match_client(
    snapshot: &Snapshot,
    ctx: &Context,
    tenant: Option<usize>,
    list: List,
    facts: &Facts<'_>,
    m: &mut Matches,
) {
    let mut buf = Vec::new();
    for idx in scopes(snapshot, tenant, list) {
        if let Some(hit) = idx.client_ip.lookup(facts.client_ip) {
            m.add(snapshot, ctx.now, hit.labels, || {
                format!("client ip {}", facts.client_ip)
            });
        }
        if let Some(host) = facts.host {
            buf.clear();
            idx.host.lookup("", host, &mut buf);
            m.add(snapshot, ctx.now, &buf, || format!("client host {host}"));
        }
        if let Some(c) = ctx.country
            && let Some(v) = idx.country.get(&c)
        {
            m.add(snapshot, ctx.now, v, || {
                format!("country {c} of {}", facts.client_ip)
            });
        }
    }
}

fn match_sender(
    snapshot: &Snapshot,
    ctx: &Context,
    idx: &ListIndex,
    sender: &(SenderSource, EmailAddress),
    m: &mut Matches,
) {
    let mut buf = Vec::new();
    idx.sender(&sender.1, &mut buf);
    m.add(snapshot, ctx.now, &buf, || {
        format!("sender {} ({})", sender.1, sender.0)
    });
}

fn evaluate_tenant(
    snapshot: &Snapshot,
    ctx: &Context,
    senders: &Senders,
    tenant: Option<usize>,
    recipients: Vec<EmailAddress>,
) -> TenantVerdict {
    let (client_ip, internal_used) = effective_ip(snapshot, ctx, tenant);
    // A host name is forward-confirmed for the connecting client only.
    let host = (client_ip == normalize_ip(ctx.client_ip))
        .then_some(ctx.client_host.as_ref())
        .flatten();
    let mut facts = Facts {
        client_ip,
        host,
        body_domains: Vec::new(),
        body_ips: Vec::new(),
    };

    // Ignore list: client, sender domains, body.
    let mut ignore = Matches::new();
    match_client(snapshot, ctx, tenant, List::Ignore, &facts, &mut ignore);
    for idx in scopes(snapshot, tenant, List::Ignore) {
        for s in &senders.all {
            match_sender(snapshot, ctx, idx, s, &mut ignore);
        }
    }
    // RBLs are not consulted for an ignored client or sender domain. The internal relays walked
    // past are recorded too, but they do not exempt the effective client from RBLs.
    let ignores_sender = !ignore.found.is_empty();
    for l in &internal_used {
        ignore
            .found
            .entry(*l)
            .or_insert_with(|| "internal relay in Received:".to_string());
    }
    if let Some(msg) = &ctx.message {
        // Ignored body domains and IPs are left out of body classification.
        let mut buf = Vec::new();
        for d in &msg.body_domains {
            buf.clear();
            for idx in scopes(snapshot, tenant, List::Ignore) {
                idx.body_domain.lookup("", d, &mut buf);
            }
            buf.retain(|l| snapshot.entry(*l).is_active_at(ctx.now));
            if buf.is_empty() {
                facts.body_domains.push(d);
            } else {
                ignore.add(snapshot, ctx.now, &buf, || format!("body domain {d}"));
            }
        }
        for ip in &msg.body_ips {
            buf.clear();
            for idx in scopes(snapshot, tenant, List::Ignore) {
                buf.extend(idx.body_ip.lookup(*ip).map_or(&[][..], |hit| hit.labels));
            }
            buf.retain(|l| snapshot.entry(*l).is_active_at(ctx.now));
            if buf.is_empty() {
                facts.body_ips.push(*ip);
            } else {
                ignore.add(snapshot, ctx.now, &buf, || format!("body ip {ip}"));
            }
        }
    }

    // Allow list: client and the ONE allow sender.
    let mut allow = Matches::new();
    match_client(snapshot, ctx, tenant, List::Allow, &facts, &mut allow);
    if let Some(s) = &senders.allow {
        for idx in scopes(snapshot, tenant, List::Allow) {
            match_sender(snapshot, ctx, idx, s, &mut allow);
        }
    }

    // Block list: client, ALL senders, body.
    let mut block = Matches::new();
    match_client(snapshot, ctx, tenant, List::Block, &facts, &mut block);
    for idx in scopes(snapshot, tenant, List::Block) {
        for s in &senders.all {
            match_sender(snapshot, ctx, idx, s, &mut block);
        }
        let mut buf = Vec::new();
        for d in &facts.body_domains {
            buf.clear();
            idx.body_domain.lookup("", d, &mut buf);
            block.add(snapshot, ctx.now, &buf, || format!("body domain {d}"));
        }
        for ip in &facts.body_ips {
            if let Some(hit) = idx.body_ip.lookup(*ip) {
                block.add(snapshot, ctx.now, hit.labels, || format!("body ip {ip}"));
            }
        }
    }

    // Additive allow: union of every applied entry's checks.
    let mut matched = Vec::new();
    let mut bypass = CheckSet::EMPTY;
    let mut bypassed_by: BTreeMap<CheckId, Vec<EntryId>> = BTreeMap::new();
    for (label, on) in &allow.found {
        let ce = snapshot.entry(*label);
        let e = &ce.entry.entry;
        let note = if e.require_auth {
            require_auth_note(ctx, senders)
        } else {
            None
        };
        if note.is_none() {
            bypass = bypass.union(ce.bypass);
            for c in ce.bypass.iter() {
                bypassed_by.entry(c).or_default().push(ce.id());
            }
        }
        matched.push(matched_entry(snapshot, *label, on, note.is_none(), note));
    }
    let mut blocked_by = Vec::new();
    let mut country_blocked_by = Vec::new();
    for (label, on) in &block.found {
        let ce = snapshot.entry(*label);
        let (check, into) = if ce.entry.entry.kind() == EntryKind::Country {
            (CheckId::Country, &mut country_blocked_by)
        } else {
            (CheckId::Blocklist, &mut blocked_by)
        };
        let applied = !bypass.contains(check);
        let note = (!applied).then(|| {
            format!(
                "not applied: `{}` is bypassed by an allow entry",
                check.id()
            )
        });
        if applied {
            into.push(ce.id());
        }
        matched.push(matched_entry(snapshot, *label, on, applied, note));
    }
    let ignored_by: Vec<EntryId> = ignore
        .found
        .keys()
        .map(|l| snapshot.entry(*l).id())
        .collect();
    for (label, on) in &ignore.found {
        matched.push(matched_entry(snapshot, *label, on, true, None));
    }

    // Step 5 placeholder and step 6: outcomes of every check.
    let mut checks = BTreeMap::new();
    for c in CheckId::ALL.iter().copied() {
        let outcome = if bypass.contains(c) {
            CheckOutcome::Bypassed
        } else {
            match c {
                CheckId::Blocklist if blocked_by.is_empty() => CheckOutcome::Pass,
                CheckId::Blocklist => CheckOutcome::Fail,
                CheckId::Country if !country_blocked_by.is_empty() => CheckOutcome::Fail,
                CheckId::Country if ctx.country.is_some() => CheckOutcome::Pass,
                CheckId::Rbl if ignores_sender => CheckOutcome::Skipped,
                // SPF/DKIM/DMARC/spoof/greylisting/reputation need the checks crate, content
                // checks need rspamd: neither runs in this pure evaluation.
                _ => CheckOutcome::NotRun,
            }
        };
        checks.insert(c, outcome);
    }
    let (action, status) = if !blocked_by.is_empty() {
        decide(snapshot.config.block_action)
    } else if !country_blocked_by.is_empty() {
        decide(snapshot.config.spam_action)
    } else if !bypass.is_empty() {
        (Action::Accept, Status::Clean)
    } else {
        (Action::Accept, Status::Pass)
    };
    blocked_by.extend(country_blocked_by);
    TenantVerdict {
        tenant: tenant.map(|t| snapshot.tenants[t].clone()),
        recipients,
        client_ip,
        bypass,
        bypassed_by,
        matched,
        blocked_by,
        ignored_by,
        checks,
        action,
        status,
    }
}

fn decide(action: BlockAction) -> (Action, Status) {
    match action {
        BlockAction::Reject => (Action::Reject, Status::Blocked),
        BlockAction::Quarantine => (Action::Quarantine, Status::Quarantined),
        BlockAction::Tag => (Action::Tag, Status::Spam),
    }
}

/// `None` when a `require_auth` entry may apply; otherwise why not.
fn require_auth_note(ctx: &Context, senders: &Senders) -> Option<String> {
    let Some(auth) = &ctx.authenticated_domains else {
        return Some(
            "not applied: requires an authenticated sender, and sender authentication has not run"
                .into(),
        );
    };
    let Some((_, sender)) = &senders.allow else {
        return Some(
            "not applied: requires an authenticated sender, and there is no sender".into(),
        );
    };
    let ok = auth
        .iter()
        .any(|a| sender.domain().suffixes().any(|s| s == a.as_str()));
    (!ok).then(|| {
        format!(
            "not applied: sender domain {} is not authenticated",
            sender.domain()
        )
    })
}

fn matched_entry(
    snapshot: &Snapshot,
    label: u32,
    on: &str,
    applied: bool,
    note: Option<String>,
) -> MatchedEntry {
    let ce = snapshot.entry(label);
    let e = &ce.entry.entry;
    MatchedEntry {
        id: ce.id(),
        list: e.list,
        kind: e.kind(),
        value: e.value.clone(),
        scope: e.scope.clone(),
        checks: ce.bypass,
        matched_on: on.to_string(),
        applied,
        note,
    }
}

fn combine(
    snapshot: &Snapshot,
    ctx: &Context,
    senders: &Senders,
    groups: Vec<TenantVerdict>,
) -> Verdict {
    // A check is bypassed only if it is bypassed for every tenant.
    let bypass = groups
        .iter()
        .map(|g| g.bypass)
        .reduce(CheckSet::intersection)
        .unwrap_or(CheckSet::EMPTY);
    let mut bypassed_by: BTreeMap<CheckId, Vec<EntryId>> = BTreeMap::new();
    for g in &groups {
        for (c, ids) in &g.bypassed_by {
            if bypass.contains(*c) {
                bypassed_by.entry(*c).or_default().extend(ids);
            }
        }
    }
    for ids in bypassed_by.values_mut() {
        ids.sort_unstable();
        ids.dedup();
    }
    let mut checks: BTreeMap<CheckId, CheckOutcome> = BTreeMap::new();
    for g in &groups {
        for (c, o) in &g.checks {
            let o = if bypass.contains(*c) {
                CheckOutcome::Bypassed
            } else {
                *o
            };
            checks
                .entry(*c)
                .and_modify(|cur| *cur = (*cur).max(o))
                .or_insert(o);
        }
    }
    let mut matched: Vec<MatchedEntry> = Vec::new();
    for g in &groups {
        for m in &g.matched {
            if !matched.iter().any(|x| x.id == m.id) {
                matched.push(m.clone());
            }
        }
    }
    matched.sort_by_key(|m| m.id);
    let collect = |f: fn(&TenantVerdict) -> &Vec<EntryId>| {
        let mut v: Vec<EntryId> = groups.iter().flat_map(|g| f(g).iter().copied()).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let blocked_by = collect(|g| &g.blocked_by);
    let ignored_by = collect(|g| &g.ignored_by);

    let accepted: Vec<&TenantVerdict> = groups
        .iter()
        .filter(|g| g.action != Action::Reject)
        .collect();
    let (action, status) = match accepted.iter().map(|g| g.action).max() {
        None => (
            Action::Reject,
            groups.first().map_or(Status::Blocked, |g| g.status),
        ),
        Some(Action::Accept) if !bypass.is_empty() => (Action::Accept, Status::Clean),
        Some(Action::Accept) => (Action::Accept, Status::Pass),
        Some(a) => (
            a,
            accepted
                .iter()
                .find(|g| g.action == a)
                .map_or(Status::Pass, |g| g.status),
        ),
    };
    let mut notes = Vec::new();
    let rejected = groups.len() - accepted.len();
    if rejected > 0 && !accepted.is_empty() {
        notes.push(format!(
            "{rejected} of {} tenant groups are rejected: reject their recipients at RCPT time, accept the rest",
            groups.len()
        ));
    }
    if groups.len() > 1 {
        notes.push(
            "recipients of several tenants: a check is bypassed only if every tenant bypasses it"
                .into(),
        );
    }
    for g in &groups {
        if g.client_ip != normalize_ip(ctx.client_ip) {
            notes.push(format!(
                "client {} is an internal relay; effective client {} found in Received:",
                ctx.client_ip, g.client_ip
            ));
            break;
        }
    }
    let unresolved: Vec<String> = std::iter::once(0)
        .chain(
            groups
                .iter()
                .filter_map(|g| g.tenant.as_ref())
                .filter_map(|t| tenant_index(snapshot, t))
                .map(|i| i + 1),
        )
        .flat_map(|s| {
            snapshot.scopes[s]
                .lists
                .iter()
                .flat_map(|l| l.unresolved_spf.iter())
        })
        .map(|l| snapshot.entry(*l).id().to_string())
        .collect();
    if !unresolved.is_empty() {
        notes.push(format!(
            "spf-domain entries {} are not expanded (no DNS in this evaluation) and matched nothing",
            unresolved.join(", ")
        ));
    }
    if let (Some((src, _)), true) = (&senders.allow, ctx.mail_from.is_none()) {
        notes.push(format!(
            "no MAIL FROM: the allow sender was taken from {src}"
        ));
    }
    let recipients = groups
        .iter()
        .flat_map(|g| {
            g.recipients.iter().map(|r| RecipientVerdict {
                address: r.clone(),
                tenant: g.tenant.clone(),
                action: g.action,
                status: g.status,
            })
        })
        .collect();
    let tenants: Vec<Option<TenantName>> = groups.iter().map(|g| g.tenant.clone()).collect();
    Verdict {
        action,
        status,
        tenant: match &tenants[..] {
            [Some(t)] => Some(t.clone()),
            _ => None,
        },
        tenants,
        client_ip: groups
            .first()
            .map_or(normalize_ip(ctx.client_ip), |g| g.client_ip),
        connecting_ip: ctx.client_ip,
        sender: senders.allow.as_ref().map(|(_, a)| a.clone()),
        sender_source: senders.allow.as_ref().map(|(s, _)| *s),
        bypassed: bypass.iter().collect(),
        bypassed_by,
        matched,
        blocked_by,
        ignored_by,
        checks,
        recipients,
        groups,
        notes,
        revision: snapshot.revision,
    }
}

fn tenant_index(snapshot: &Snapshot, name: &TenantName) -> Option<usize> {
    snapshot.tenants.iter().position(|t| t == name)
}
