//! Stage one of an evaluation: which entries match, per tenant, and what they exempt.
//!
//! DESIGN §3 steps 1–4: the recipients' tenants, the effective client IP, the sender
//! addresses, and every list of the global and tenant scopes matched against them. The result,
//! [`Exemptions`], says before any check runs which checks are bypassed, which block entries
//! hit, which ignore entries apply and which `require_auth` entries wait for the sender's
//! authentication. It holds entry labels and small fact tags, not text: explanations are built
//! only when something asks for them, and a lookup that matches nothing allocates nothing.

use std::net::IpAddr;

use allowgate_types::{
    CheckSet, Domain, EmailAddress, EntryKind, List, SenderSource, normalize_ip,
};
use smallvec::SmallVec;

use crate::context::Context;
use crate::message::SenderAddress;
use crate::names::Posting;
use crate::snapshot::{Compiled, INTERNAL, REQUIRE_AUTH, Snapshot};
use crate::verdict::MatchedOn;

/// The fact of the message an entry matched, as a small tag; [`Exemptions::matched_on`] turns
/// it into a [`MatchedOn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fact {
    /// The group's effective client IP.
    ClientIp,
    /// The effective client IP, through an SPF expansion.
    SpfIp,
    /// The `n`th hop of the `Received:` chain (0 = the connecting client), walked past.
    InternalRelay(u8),
    /// The forward-confirmed client host name.
    ClientHost,
    /// The client's GeoIP country.
    Country,
    /// The `n`th sender of [`Exemptions::senders`].
    Sender(u8),
    /// The `n`th body domain.
    BodyDomain(u32),
    /// The `n`th body IP.
    BodyIp(u32),
}

/// One matching entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    /// The entry's label.
    pub label: u32,
    /// What it matched.
    pub fact: Fact,
}

/// Where a sender address of [`Exemptions::senders`] is in the context (an index, so that
/// `Exemptions` stays covariant in its lifetime).
#[derive(Debug, Clone, Copy)]
pub(crate) enum SenderRef {
    /// `MAIL FROM`.
    MailFrom,
    /// The `n`th header sender of the message.
    Header(u32),
}

/// A sender address the lists are matched against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sender<'a> {
    /// A whole address.
    Address(SenderSource, &'a EmailAddress),
    /// Only the domain is known.
    Domain(SenderSource, &'a Domain),
}

/// The most senders matched: `MAIL FROM` and, per header, a few addresses. More are left out
/// of matching, as a note says.
const MAX_SENDERS: usize = 64;
/// The most `Received:` hops walked past internal relays.
const MAX_HOPS: usize = 64;

/// What the entries of one tenant's scopes (global plus its own) say about the message.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// Tenant index, `None` for recipients of no tenant.
    pub tenant: Option<u32>,
    /// Indexes of its recipients in the context.
    pub recipients: SmallVec<[u32; 2]>,
    /// The effective client IP.
    pub client_ip: IpAddr,
    /// Every matching entry, by label, each once.
    pub hits: SmallVec<[Hit; 4]>,
    /// Checks bypassed by allow entries that apply without conditions.
    pub bypass: CheckSet,
    /// Checks that `require_auth` allow entries would add once the sender is authenticated.
    pub pending: CheckSet,
    /// A block entry (not `country`) matched.
    pub blocked: bool,
    /// A `country` block entry matched.
    pub country_blocked: bool,
    /// An ignore entry covers the client or a sender: RBLs are not consulted.
    pub rbl_ignored: bool,
}

/// Stage one's result: per tenant group, what matched and what it exempts. Borrows the snapshot
/// and the context; cheap to build (no allocation when nothing matches).
#[derive(Debug)]
pub struct Exemptions<'a> {
    pub(crate) snapshot: &'a Snapshot,
    pub(crate) ctx: &'a Context,
    /// The connecting IP, normalised once.
    pub(crate) connecting_ip: IpAddr,
    /// Every sender address: `MAIL FROM`, then header senders by priority.
    pub(crate) senders: SmallVec<[SenderRef; 2]>,
    /// Index in `senders` of the one address used for allow matching.
    pub(crate) allow_sender: Option<u8>,
    /// Tenant groups, `None` first, then by tenant index.
    pub(crate) groups: SmallVec<[Group; 1]>,
}

/// Stage one: match every list of every scope concerned against the message's facts.
pub fn exemptions<'a>(snapshot: &'a Snapshot, ctx: &'a Context) -> Exemptions<'a> {
    let compiled = &*snapshot.compiled;
    let connecting_ip = normalize_ip(ctx.client_ip);
    let mut senders: SmallVec<[SenderRef; 2]> = SmallVec::new();
    let mut allow_sender = None;
    if ctx.mail_from.is_some() {
        senders.push(SenderRef::MailFrom);
        allow_sender = Some(0);
    }
    if let Some(m) = &ctx.message {
        for (i, h) in m.header_senders.iter().enumerate() {
            if senders.len() >= MAX_SENDERS {
                break;
            }
            match &h.address {
                // Header senders are in priority order already, after MAIL FROM.
                SenderAddress::Address(_) => {
                    allow_sender = allow_sender.or(u8::try_from(senders.len()).ok());
                }
                SenderAddress::DomainOnly(_) => {}
                SenderAddress::Unreadable(_) => continue,
            }
            senders.push(SenderRef::Header(u32::try_from(i).unwrap_or(u32::MAX)));
        }
    }

    let mut groups: SmallVec<[Group; 1]> = SmallVec::new();
    for (i, rcpt) in ctx.recipients.iter().enumerate() {
        let tenant = compiled.tenant_index(rcpt.domain());
        let index = u32::try_from(i).unwrap_or(u32::MAX);
        match groups.iter_mut().find(|g| g.tenant == tenant) {
            Some(g) => g.recipients.push(index),
            None => {
                let mut g = Group::new(tenant, connecting_ip);
                g.recipients.push(index);
                groups.push(g);
            }
        }
    }
    if groups.is_empty() {
        groups.push(Group::new(None, connecting_ip));
    }
    groups.sort_by_key(|g| g.tenant);
    let mut ex = Exemptions {
        snapshot,
        ctx,
        connecting_ip,
        senders,
        allow_sender,
        groups,
    };
    let mut groups = std::mem::take(&mut ex.groups);
    for g in &mut groups {
        ex.fill(g);
    }
    ex.groups = groups;
    ex
}

impl Group {
    fn new(tenant: Option<u32>, client_ip: IpAddr) -> Group {
        Group {
            tenant,
            recipients: SmallVec::new(),
            client_ip,
            hits: SmallVec::new(),
            bypass: CheckSet::EMPTY,
            pending: CheckSet::EMPTY,
            blocked: false,
            country_blocked: false,
            rbl_ignored: false,
        }
    }

    /// Whether an entry of `scope` applies to this group.
    #[inline]
    fn in_scope(&self, scope: u32) -> bool {
        scope == 0 || self.tenant.is_some_and(|t| t + 1 == scope)
    }

    /// The scope indexes that apply: global, and the tenant's own.
    fn scopes(&self) -> impl Iterator<Item = usize> {
        std::iter::once(0).chain(self.tenant.map(|t| t as usize + 1))
    }
}

impl<'a> Exemptions<'a> {
    fn compiled(&self) -> &'a Compiled {
        &self.snapshot.compiled
    }

    /// Labels of active entries of the group's scopes covering `ip` in the client-IP maps.
    fn client_ip_labels(&self, g: &Group, ip: IpAddr, found: impl FnMut(u32)) {
        let c = self.compiled();
        self.in_scopes(g, c.client_ip.lookup(ip), found);
    }

    /// The active entries among `labels` (sorted) of the group's scopes.
    #[inline]
    fn in_scopes(&self, g: &Group, labels: &[u32], mut found: impl FnMut(u32)) {
        if labels.is_empty() {
            return;
        }
        let c = self.compiled();
        for s in g.scopes() {
            for &l in c.scopes.of(labels, s) {
                if c.active(l, self.ctx.now) {
                    found(l);
                }
            }
        }
    }

    /// Step 2: walk `Received:` hops while the current hop is an `internal` ignore entry.
    fn effective_ip(&self, g: &mut Group) {
        let Some(m) = &self.ctx.message else {
            return;
        };
        let c = self.compiled();
        let mut current = self.connecting_ip;
        let mut hop = 0u8;
        let mut rest = m.received_ips.iter().take(MAX_HOPS);
        loop {
            let mut internal = false;
            let mut hits: SmallVec<[Hit; 2]> = SmallVec::new();
            self.client_ip_labels(g, current, |l| {
                let meta = &c.meta[l as usize];
                if meta.list == List::Ignore
                    && meta.kind == EntryKind::Ip
                    && meta.flags & INTERNAL != 0
                {
                    internal = true;
                    hits.push(Hit {
                        label: l,
                        fact: Fact::InternalRelay(hop),
                    });
                }
            });
            if !internal {
                break;
            }
            // The next hop that is not the same address again.
            let Some(next) = rest.by_ref().find(|ip| **ip != current) else {
                break;
            };
            g.hits.extend(hits);
            current = *next;
            hop = hop.saturating_add(1);
        }
        g.client_ip = current;
    }

    /// Steps 2–4 for one group.
    fn fill(&self, g: &mut Group) {
        let c = self.compiled();
        let now = self.ctx.now;
        self.effective_ip(g);
        let ip = g.client_ip;
        let mut hits = std::mem::take(&mut g.hits);
        let mut posting = |p: &Posting, fact: Fact, allowed: bool| {
            if g.in_scope(p.scope) && (allowed || p.list != List::Allow) && c.active(p.label, now) {
                hits.push(Hit {
                    label: p.label,
                    fact,
                });
            }
        };
        // A host name is forward-confirmed for the connecting client only.
        if ip == self.connecting_ip
            && let Some(host) = &self.ctx.client_host
        {
            c.names.domain_matches(host, &[EntryKind::Host], |p| {
                posting(p, Fact::ClientHost, true)
            });
        }
        if let Some(country) = self.ctx.country {
            for p in c.names.country(country) {
                posting(p, Fact::Country, true);
            }
        }
        // Allow entries see the one allow sender; block and ignore entries see every sender.
        for i in 0..self.senders.len() {
            let fact = Fact::Sender(u8::try_from(i).unwrap_or(u8::MAX));
            let allowed = self.allow_sender.is_some_and(|a| usize::from(a) == i);
            match self.sender(i) {
                None => {}
                Some(Sender::Address(_, a)) => {
                    c.names.sender_matches(a, |p| posting(p, fact, allowed))
                }
                Some(Sender::Domain(_, d)) => {
                    c.names
                        .domain_matches(d, &[EntryKind::Domain, EntryKind::Email], |p| {
                            posting(p, fact, false)
                        })
                }
            }
        }
        // The client IP after the names: the two kinds of lookups are independent, and the
        // names' cache misses then overlap the interval map's.
        self.client_ip_labels(g, ip, |l| {
            hits.push(Hit {
                label: l,
                fact: Fact::ClientIp,
            })
        });
        self.in_scopes(g, self.snapshot.spf.maps.lookup(ip), |l| {
            hits.push(Hit {
                label: l,
                fact: Fact::SpfIp,
            })
        });
        if let Some(m) = &self.ctx.message {
            self.match_body(g, m, &mut hits);
        }
        // Each entry once, with the first fact it matched (facts come in priority order).
        if hits.len() > 1 {
            hits.sort_by_key(|h| h.label);
            hits.dedup_by_key(|h| h.label);
        }
        for h in &hits {
            let meta = &c.meta[h.label as usize];
            match meta.list {
                List::Allow if meta.flags & REQUIRE_AUTH != 0 => {
                    g.pending = g.pending.union(meta.bypass);
                }
                List::Allow => g.bypass = g.bypass.union(meta.bypass),
                List::Block if meta.kind == EntryKind::Country => g.country_blocked = true,
                List::Block => g.blocked = true,
                List::Ignore => {
                    if !matches!(
                        h.fact,
                        Fact::InternalRelay(_) | Fact::BodyDomain(_) | Fact::BodyIp(_)
                    ) {
                        g.rbl_ignored = true;
                    }
                }
            }
        }
        g.hits = hits;
    }

    /// Body domains and IPs: ignored ones are left out of block matching.
    fn match_body(&self, g: &Group, m: &crate::MessageFacts, hits: &mut SmallVec<[Hit; 4]>) {
        let c = self.compiled();
        let now = self.ctx.now;
        let mut found: SmallVec<[u32; 4]> = SmallVec::new();
        let mut add = |found: &mut SmallVec<[u32; 4]>, fact: Fact| {
            let ignored = found
                .iter()
                .any(|l| c.meta[*l as usize].list == List::Ignore);
            for &l in found.iter() {
                // An ignored item is left out of classification: only its ignore entries count.
                if !ignored || c.meta[l as usize].list == List::Ignore {
                    hits.push(Hit { label: l, fact });
                }
            }
            found.clear();
        };
        for (i, d) in m.body_domains.iter().enumerate() {
            c.names.domain_matches(d, &[EntryKind::BodyDomain], |p| {
                if g.in_scope(p.scope) && c.active(p.label, now) {
                    found.push(p.label);
                }
            });
            add(
                &mut found,
                Fact::BodyDomain(u32::try_from(i).unwrap_or(u32::MAX)),
            );
        }
        if !c.has_body_ips() {
            return;
        }
        for (i, ip) in m.body_ips.iter().enumerate() {
            self.in_scopes(g, c.body_ip.lookup(*ip), |l| found.push(l));
            add(
                &mut found,
                Fact::BodyIp(u32::try_from(i).unwrap_or(u32::MAX)),
            );
        }
    }

    /// The snapshot matched against.
    pub fn snapshot(&self) -> &'a Snapshot {
        self.snapshot
    }

    /// The context matched.
    pub fn context(&self) -> &'a Context {
        self.ctx
    }

    /// Checks bypassed for the whole message without conditions: for every tenant of its
    /// recipients (the intersection). `require_auth` entries are not counted: see
    /// [`Exemptions::pending_authentication`].
    pub fn bypass(&self) -> CheckSet {
        self.groups
            .iter()
            .map(|g| g.bypass)
            .reduce(CheckSet::intersection)
            .unwrap_or(CheckSet::EMPTY)
    }

    /// The checks the caller must run (stage two): every check not bypassed for the whole
    /// message. `blocklist` is decided here and is never in the set.
    pub fn checks_to_run(&self) -> CheckSet {
        let bypass = self.bypass();
        CheckSet::every()
            .iter()
            .filter(|c| !bypass.contains(*c) && *c != allowgate_types::CheckId::Blocklist)
            .collect()
    }

    /// Whether `require_auth` allow entries matched and wait for the sender's authentication
    /// (aligned SPF pass, aligned DKIM pass or DMARC pass): the caller should authenticate the
    /// sender and pass the result to [`decide`](crate::decide) even if SPF, DKIM and DMARC are
    /// bypassed.
    pub fn pending_authentication(&self) -> bool {
        self.groups.iter().any(|g| !g.pending.is_empty())
    }

    /// Whether any block entry matched (whether or not an allow entry bypasses it).
    pub fn block_matched(&self) -> bool {
        self.groups.iter().any(|g| g.blocked || g.country_blocked)
    }

    /// Whether any entry matched at all.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.hits.is_empty())
    }

    /// The one sender address used for allow matching, and where it came from.
    pub fn allow_sender(&self) -> Option<(SenderSource, &'a EmailAddress)> {
        match self.sender(usize::from(self.allow_sender?))? {
            Sender::Address(src, a) => Some((src, a)),
            Sender::Domain(..) => None,
        }
    }

    /// The `i`th sender address matched.
    fn sender(&self, i: usize) -> Option<Sender<'a>> {
        let ctx: &'a Context = self.ctx;
        match *self.senders.get(i)? {
            SenderRef::MailFrom => ctx
                .mail_from
                .as_ref()
                .map(|a| Sender::Address(SenderSource::MailFrom, a)),
            SenderRef::Header(h) => {
                let h = ctx.message.as_ref()?.header_senders.get(h as usize)?;
                match &h.address {
                    SenderAddress::Address(a) => Some(Sender::Address(h.source, a)),
                    SenderAddress::DomainOnly(d) => Some(Sender::Domain(h.source, d)),
                    SenderAddress::Unreadable(_) => None,
                }
            }
        }
    }

    /// The fact behind a hit, typed (this is where explanation text starts: it clones names).
    pub(crate) fn matched_on(&self, g: &Group, hit: &Hit) -> MatchedOn {
        let c = self.compiled();
        let message = self.ctx.message.as_ref();
        match hit.fact {
            Fact::ClientIp => MatchedOn::ClientIp { ip: g.client_ip },
            Fact::SpfIp => match &c.values[hit.label as usize] {
                allowgate_types::EntryValue::SpfDomain(d) => MatchedOn::SpfDomain {
                    ip: g.client_ip,
                    domain: d.clone(),
                },
                _ => MatchedOn::ClientIp { ip: g.client_ip },
            },
            Fact::InternalRelay(hop) => {
                let ip = (hop > 0)
                    .then(|| {
                        message.and_then(|m| relay_hop(self.connecting_ip, &m.received_ips, hop))
                    })
                    .flatten()
                    .unwrap_or(self.connecting_ip);
                MatchedOn::InternalRelay { ip }
            }
            Fact::ClientHost => match &self.ctx.client_host {
                Some(host) => MatchedOn::ClientHost { host: host.clone() },
                None => MatchedOn::ClientIp { ip: g.client_ip },
            },
            Fact::Country => match self.ctx.country {
                Some(country) => MatchedOn::Country {
                    country,
                    ip: self.connecting_ip,
                },
                None => MatchedOn::ClientIp { ip: g.client_ip },
            },
            Fact::Sender(i) => match self.sender(usize::from(i)) {
                Some(Sender::Address(source, a)) => MatchedOn::Sender {
                    address: a.clone(),
                    source,
                },
                Some(Sender::Domain(source, d)) => MatchedOn::SenderDomain {
                    domain: d.clone(),
                    source,
                },
                None => MatchedOn::ClientIp { ip: g.client_ip },
            },
            Fact::BodyDomain(i) => message
                .and_then(|m| m.body_domains.get(i as usize))
                .map_or(MatchedOn::ClientIp { ip: g.client_ip }, |d| {
                    MatchedOn::BodyDomain { domain: d.clone() }
                }),
            Fact::BodyIp(i) => message
                .and_then(|m| m.body_ips.get(i as usize))
                .map_or(MatchedOn::ClientIp { ip: g.client_ip }, |ip| {
                    MatchedOn::BodyIp { ip: *ip }
                }),
        }
    }
}

/// The address of hop `hop` of the `Received:` walk (0 = the connecting client), skipping
/// repeats as the walk does.
fn relay_hop(connecting: IpAddr, received: &[IpAddr], hop: u8) -> Option<IpAddr> {
    let mut current = connecting;
    let mut rest = received.iter();
    for _ in 0..hop {
        current = *rest.find(|ip| **ip != current)?;
    }
    Some(current)
}
