//! Stage three of an evaluation: the decision, from the exemptions and the checks' results.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use allowgate_types::{CheckId, CheckSet, Domain, EntryId, List};
use smallvec::SmallVec;

use crate::exempt::{Exemptions, Group};
use crate::snapshot::{BlockAction, REQUIRE_AUTH};
use crate::verdict::{
    Action, CheckResult, MatchedEntry, Outcome, RecipientVerdict, Status, TenantVerdict, Verdict,
};

/// What the checks the caller ran (stage two) found: one result per check run, and the domains
/// sender authentication vouched for. A check with no result is reported `not_run`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckResults {
    results: BTreeMap<CheckId, CheckResult>,
    authenticated: Option<Vec<Domain>>,
}

impl CheckResults {
    /// No results: nothing ran.
    pub fn new() -> CheckResults {
        CheckResults::default()
    }

    /// Record a check's result.
    pub fn set(&mut self, check: CheckId, result: CheckResult) {
        self.results.insert(check, result);
    }

    /// A check's result, if it ran.
    pub fn get(&self, check: CheckId) -> Option<&CheckResult> {
        self.results.get(&check)
    }

    /// Record that sender authentication ran and vouched for these domains (aligned SPF pass,
    /// aligned DKIM pass or DMARC pass); an empty list means it ran and vouched for none.
    /// `require_auth` entries apply only when the allow sender's domain is (below) one of them.
    pub fn set_authenticated(&mut self, domains: Vec<Domain>) {
        self.authenticated = Some(domains);
    }

    /// The authenticated domains, `None` when sender authentication has not run.
    pub fn authenticated(&self) -> Option<&[Domain]> {
        self.authenticated.as_deref()
    }
}

/// Whether the `require_auth` entries of a group apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// Sender authentication has not run.
    NotRun,
    /// There is no allow sender to authenticate.
    NoSender,
    /// The allow sender's domain is not authenticated.
    Failed,
    /// It is.
    Passed,
}

/// The decision for one tenant group.
#[derive(Debug, Clone, Copy)]
struct GroupDecision {
    bypass: CheckSet,
    auth: Auth,
    blocked: bool,
    country_blocked: bool,
    action: Action,
    status: Status,
}

/// Stage three's result: what to do, and why when asked. Cheap: it holds the groups' actions
/// and bypass sets; [`Decision::verdict`] builds the full explanation.
#[derive(Debug)]
pub struct Decision<'e> {
    ex: &'e Exemptions<'e>,
    results: &'e CheckResults,
    groups: SmallVec<[GroupDecision; 1]>,
    bypass: CheckSet,
    action: Action,
    status: Status,
}

/// Stage three: decide from the exemptions (stage one) and what the checks the caller ran
/// found (stage two). Pure and infallible; when unsure, no exemption.
pub fn decide<'e>(ex: &'e Exemptions<'e>, results: &'e CheckResults) -> Decision<'e> {
    let config = ex.snapshot.config();
    let auth = authentication(ex, results);
    let groups: SmallVec<[GroupDecision; 1]> = ex
        .groups
        .iter()
        .map(|g| {
            let bypass = if auth == Auth::Passed {
                g.bypass.union(g.pending)
            } else {
                g.bypass
            };
            let mut d = GroupDecision {
                bypass,
                auth,
                blocked: g.blocked && !bypass.contains(CheckId::Blocklist),
                country_blocked: g.country_blocked && !bypass.contains(CheckId::Country),
                action: Action::Accept,
                status: Status::Pass,
            };
            (d.action, d.status) = group_action(ex, results, g, &d, config);
            d
        })
        .collect();
    let bypass = groups
        .iter()
        .map(|g| g.bypass)
        .reduce(CheckSet::intersection)
        .unwrap_or(CheckSet::EMPTY);
    let accepted = groups.iter().filter(|g| g.action != Action::Reject);
    let (action, status) = match accepted.clone().map(|g| g.action).max() {
        None => (
            Action::Reject,
            groups.first().map_or(Status::Blocked, |g| g.status),
        ),
        Some(Action::Accept) if !bypass.is_empty() => (Action::Accept, Status::Clean),
        Some(Action::Accept) => (Action::Accept, Status::Pass),
        Some(a) => (
            a,
            accepted
                .clone()
                .find(|g| g.action == a)
                .map_or(Status::Pass, |g| g.status),
        ),
    };
    Decision {
        ex,
        results,
        groups,
        bypass,
        action,
        status,
    }
}

fn authentication(ex: &Exemptions<'_>, results: &CheckResults) -> Auth {
    let Some(domains) = results.authenticated() else {
        return Auth::NotRun;
    };
    let Some((_, sender)) = ex.allow_sender() else {
        return Auth::NoSender;
    };
    if domains
        .iter()
        .any(|a| sender.domain().suffixes().any(|s| s == a.as_str()))
    {
        Auth::Passed
    } else {
        Auth::Failed
    }
}

/// The outcome of check `c` for a group.
fn outcome(
    ex: &Exemptions<'_>,
    results: &CheckResults,
    g: &Group,
    d: &GroupDecision,
    c: CheckId,
) -> Outcome {
    if d.bypass.contains(c) {
        return Outcome::Bypassed;
    }
    match c {
        CheckId::Blocklist if d.blocked => Outcome::Fail,
        CheckId::Blocklist => Outcome::Pass,
        CheckId::Country if d.country_blocked => Outcome::Fail,
        CheckId::Rbl if g.rbl_ignored => Outcome::Skipped,
        _ => match results.get(c) {
            Some(r) => r.outcome,
            None if c == CheckId::Country && ex.ctx.country.is_some() => Outcome::Pass,
            None => Outcome::NotRun,
        },
    }
}

fn group_action(
    ex: &Exemptions<'_>,
    results: &CheckResults,
    g: &Group,
    d: &GroupDecision,
    config: &crate::PolicyConfig,
) -> (Action, Status) {
    if d.blocked {
        return block(config.block_action);
    }
    if d.country_blocked {
        return block(config.spam_action);
    }
    let mut greylisted = false;
    let mut rejected = false;
    for c in CheckId::ALL.iter().copied() {
        if d.bypass.contains(c) || results.get(c).is_none() {
            continue;
        }
        let o = outcome(ex, results, g, d, c);
        greylisted |= o == Outcome::Greylisted;
        rejected |= o.is_failure() && config.reject_on_fail.contains(c);
    }
    if rejected {
        return (Action::Reject, Status::Rejected);
    }
    if greylisted {
        return (Action::Defer, Status::Greylisted);
    }
    if !d.bypass.contains(CheckId::Spam)
        && results
            .get(CheckId::Spam)
            .is_some_and(|r| r.outcome.is_failure())
    {
        return match config.spam_action {
            BlockAction::Reject => (Action::Reject, Status::Rejected),
            BlockAction::Quarantine => (Action::Quarantine, Status::Quarantined),
            BlockAction::Tag => (Action::Tag, Status::Spam),
        };
    }
    if d.bypass.is_empty() {
        (Action::Accept, Status::Pass)
    } else {
        (Action::Accept, Status::Clean)
    }
}

fn block(action: BlockAction) -> (Action, Status) {
    match action {
        BlockAction::Reject => (Action::Reject, Status::Blocked),
        BlockAction::Quarantine => (Action::Quarantine, Status::Quarantined),
        BlockAction::Tag => (Action::Tag, Status::Spam),
    }
}

impl<'e> Decision<'e> {
    /// What to do with the message.
    pub fn action(&self) -> Action {
        self.action
    }

    /// The history status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Checks bypassed for the whole message (every tenant's recipients).
    pub fn bypassed(&self) -> CheckSet {
        self.bypass
    }

    /// What to do for the recipient at `index` in the context's recipients (its tenant's
    /// decision); the message's decision when there is no such recipient.
    pub fn recipient(&self, index: usize) -> (Action, Status) {
        self.ex
            .groups
            .iter()
            .zip(&self.groups)
            .find(|(g, _)| g.recipients.iter().any(|r| *r as usize == index))
            .map_or((self.action, self.status), |(_, d)| (d.action, d.status))
    }

    /// The entries that bypass a check bypassed for the whole message, sorted, each once.
    pub fn exempted_by(&self) -> SmallVec<[EntryId; 4]> {
        self.ids_where(|meta, d| {
            meta.list == List::Allow
                && applies(meta.flags, d.auth)
                && !meta.bypass.intersection(self.bypass).is_empty()
        })
    }

    /// The block entries that block the message for at least one tenant, sorted, each once.
    pub fn blocked_by(&self) -> SmallVec<[EntryId; 4]> {
        self.ids_where(|meta, d| {
            let country = meta.kind == allowgate_types::EntryKind::Country;
            meta.list == List::Block && ((country && d.country_blocked) || (!country && d.blocked))
        })
    }

    /// The ids of the matching entries that `keep` accepts in their group, sorted, each once.
    fn ids_where(
        &self,
        keep: impl Fn(&crate::snapshot::Meta, &GroupDecision) -> bool,
    ) -> SmallVec<[EntryId; 4]> {
        let c = &self.ex.snapshot.compiled;
        let mut ids: SmallVec<[EntryId; 4]> = SmallVec::new();
        for (g, d) in self.ex.groups.iter().zip(&self.groups) {
            for h in &g.hits {
                let meta = &c.meta[h.label as usize];
                if keep(meta, d) {
                    ids.push(meta.id);
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The tenant of every recipient when there is exactly one.
    pub fn tenant(&self) -> Option<&'e allowgate_types::TenantName> {
        match &self.ex.groups[..] {
            [g] => g
                .tenant
                .and_then(|t| self.ex.snapshot.compiled.tenants.get(t as usize)),
            _ => None,
        }
    }

    /// The `X-Allowgate` header value: `status=clean; bypass=spf,dkim; entries=12,57;
    /// tenant=acme` (empty fields are left out). Allocation-free apart from what `out` does.
    pub fn write_header(&self, out: &mut impl fmt::Write) -> fmt::Result {
        write!(out, "status={}", self.status)?;
        if !self.bypass.is_empty() {
            out.write_str("; bypass=")?;
            for (i, c) in self.bypass.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_str(c.id())?;
            }
        }
        let ids = if self.status == Status::Clean {
            self.exempted_by()
        } else {
            self.blocked_by()
        };
        if !ids.is_empty() {
            out.write_str("; entries=")?;
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                write!(out, "{}", id.0)?;
            }
        }
        if let Some(t) = self.tenant() {
            write!(out, "; tenant={t}")?;
        }
        Ok(())
    }

    /// The whole explanation: every matched entry with what it matched and whether it applied,
    /// every check's outcome, per tenant and for the message, and notes.
    pub fn verdict(&self) -> Verdict {
        let ex = self.ex;
        let ctx = ex.ctx;
        let c = &ex.snapshot.compiled;
        let groups: Vec<TenantVerdict> = ex
            .groups
            .iter()
            .zip(&self.groups)
            .map(|(g, d)| self.tenant_verdict(g, d))
            .collect();
        let mut checks: BTreeMap<CheckId, Outcome> = BTreeMap::new();
        for g in &groups {
            for (check, o) in &g.checks {
                let o = if self.bypass.contains(*check) {
                    Outcome::Bypassed
                } else {
                    *o
                };
                checks
                    .entry(*check)
                    .and_modify(|cur| {
                        if o.severity() > cur.severity() {
                            *cur = o;
                        }
                    })
                    .or_insert(o);
            }
        }
        let check_reasons = CheckId::ALL
            .iter()
            .filter(|id| checks.get(id) != Some(&Outcome::Bypassed))
            .filter_map(|id| {
                let reason = self.results.get(*id)?.reason.clone()?;
                Some((*id, reason))
            })
            .collect();
        let mut bypassed_by: BTreeMap<CheckId, Vec<EntryId>> = BTreeMap::new();
        for g in &groups {
            for (check, ids) in &g.bypassed_by {
                if self.bypass.contains(*check) {
                    bypassed_by.entry(*check).or_default().extend(ids);
                }
            }
        }
        for ids in bypassed_by.values_mut() {
            ids.sort_unstable();
            ids.dedup();
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
            let set: BTreeSet<EntryId> = groups.iter().flat_map(|g| f(g).iter().copied()).collect();
            set.into_iter().collect::<Vec<_>>()
        };
        let blocked_by = collect(|g| &g.blocked_by);
        let ignored_by = collect(|g| &g.ignored_by);
        let notes = self.notes();
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
        let tenants: Vec<_> = groups.iter().map(|g| g.tenant.clone()).collect();
        let allow = ex.allow_sender();
        Verdict {
            action: self.action,
            status: self.status,
            tenant: match &tenants[..] {
                [Some(t)] => Some(t.clone()),
                _ => None,
            },
            tenants,
            client_ip: groups.first().map_or(ex.connecting_ip, |g| g.client_ip),
            connecting_ip: ctx.client_ip,
            sender: allow.map(|(_, a)| a.clone()),
            sender_source: allow.map(|(s, _)| s),
            bypassed: self.bypass.iter().collect(),
            bypassed_by,
            matched,
            blocked_by,
            ignored_by,
            checks,
            check_reasons,
            recipients,
            groups,
            notes,
            revision: c.revision,
        }
    }

    fn tenant_verdict(&self, g: &Group, d: &GroupDecision) -> TenantVerdict {
        let ex = self.ex;
        let c = &ex.snapshot.compiled;
        let mut matched = Vec::with_capacity(g.hits.len());
        let mut bypassed_by: BTreeMap<CheckId, Vec<EntryId>> = BTreeMap::new();
        let mut blocked_by = Vec::new();
        let mut ignored_by = Vec::new();
        for h in &g.hits {
            let meta = &c.meta[h.label as usize];
            let id = meta.id;
            let (applied, note) = match meta.list {
                List::Allow if !applies(meta.flags, d.auth) => (false, Some(auth_note(ex, d.auth))),
                List::Allow => {
                    for check in meta.bypass.iter() {
                        bypassed_by.entry(check).or_default().push(id);
                    }
                    (true, None)
                }
                List::Block => {
                    let check = if meta.kind == allowgate_types::EntryKind::Country {
                        CheckId::Country
                    } else {
                        CheckId::Blocklist
                    };
                    if d.bypass.contains(check) {
                        let note = format!(
                            "not applied: `{}` is bypassed by an allow entry",
                            check.id()
                        );
                        (false, Some(note))
                    } else {
                        blocked_by.push(id);
                        (true, None)
                    }
                }
                List::Ignore => {
                    ignored_by.push(id);
                    (true, None)
                }
            };
            let on = ex.matched_on(g, h);
            matched.push(MatchedEntry {
                id,
                list: meta.list,
                kind: meta.kind,
                value: c.values[h.label as usize].clone(),
                scope: c.scope(meta.scope),
                checks: meta.bypass,
                matched_on: on.to_string(),
                on,
                applied,
                note,
            });
        }
        // Block entries first in the list of blockers for a country block, as before.
        blocked_by.sort_unstable();
        ignored_by.sort_unstable();
        let checks = CheckId::ALL
            .iter()
            .map(|check| (*check, outcome(ex, self.results, g, d, *check)))
            .collect();
        TenantVerdict {
            tenant: g.tenant.and_then(|t| c.tenants.get(t as usize)).cloned(),
            recipients: g
                .recipients
                .iter()
                .filter_map(|i| ex.ctx.recipients.get(*i as usize))
                .cloned()
                .collect(),
            client_ip: g.client_ip,
            bypass: d.bypass,
            bypassed_by,
            matched,
            blocked_by,
            ignored_by,
            checks,
            action: d.action,
            status: d.status,
        }
    }

    fn notes(&self) -> Vec<String> {
        let ex = self.ex;
        let c = &ex.snapshot.compiled;
        let mut notes = Vec::new();
        let rejected = self
            .groups
            .iter()
            .filter(|g| g.action == Action::Reject)
            .count();
        if rejected > 0 && rejected < self.groups.len() {
            notes.push(format!(
                "{rejected} of {} tenant groups are rejected: reject their recipients at RCPT time, accept the rest",
                self.groups.len()
            ));
        }
        if self.groups.len() > 1 {
            notes.push(
                "recipients of several tenants: a check is bypassed only if every tenant bypasses it"
                    .into(),
            );
        }
        if let Some(g) = ex.groups.iter().find(|g| g.client_ip != ex.connecting_ip) {
            notes.push(format!(
                "client {} is an internal relay; effective client {} found in Received:",
                ex.ctx.client_ip, g.client_ip
            ));
        }
        let unresolved: Vec<String> = ex
            .snapshot
            .spf
            .unresolved
            .iter()
            .filter(|l| {
                let scope = c.meta[**l as usize].scope;
                ex.groups
                    .iter()
                    .any(|g| scope == 0 || g.tenant.is_some_and(|t| t + 1 == scope))
            })
            .map(|l| c.meta[*l as usize].id.to_string())
            .collect();
        if !unresolved.is_empty() {
            notes.push(format!(
                "spf-domain entries {} are not expanded (no DNS in this evaluation) and matched nothing",
                unresolved.join(", ")
            ));
        }
        if let (Some((src, _)), true) = (ex.allow_sender(), ex.ctx.mail_from.is_none()) {
            notes.push(format!(
                "no MAIL FROM: the allow sender was taken from {src}"
            ));
        }
        if let Some(m) = &ex.ctx.message {
            for h in &m.header_senders {
                if let crate::message::SenderAddress::Unreadable(text) = &h.address {
                    notes.push(format!(
                        "the {} address `{text}` could not be read: no entry could be matched against it",
                        h.source
                    ));
                }
            }
        }
        notes
    }
}

/// Whether an allow entry with `flags` applies given the sender's authentication.
fn applies(flags: u8, auth: Auth) -> bool {
    flags & REQUIRE_AUTH == 0 || auth == Auth::Passed
}

fn auth_note(ex: &Exemptions<'_>, auth: Auth) -> String {
    match auth {
        Auth::NotRun | Auth::Passed => {
            "not applied: requires an authenticated sender, and sender authentication has not run"
                .into()
        }
        Auth::NoSender => {
            "not applied: requires an authenticated sender, and there is no sender".into()
        }
        Auth::Failed => format!(
            "not applied: sender domain {} is not authenticated",
            ex.allow_sender()
                .map_or_else(String::new, |(_, a)| a.domain().to_string())
        ),
    }
}
