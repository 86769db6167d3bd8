//! Compiling entries into an immutable [`Snapshot`].

use std::collections::HashMap;
use std::net::IpAddr;

use allowgate_types::{
    CheckSet, CountryCode, Domain, EmailAddress, Entry, EntryId, EntryValue, IpBounds, IpRange,
    List, Scope, Tenant, TenantName,
};
use chrono::{DateTime, Utc};

use crate::ipmap::{IntervalKey, IntervalMap, SetId};
use crate::linemap::LineMap;
use crate::v6map::V6Map;

/// What a block match does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAction {
    /// Refuse it at SMTP time.
    Reject,
    /// Accept it into quarantine.
    Quarantine,
    /// Deliver it marked as spam.
    Tag,
}

/// Deployment-wide policy settings that shape compilation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Checks no entry can ever bypass (`all` excludes them, named ones are dropped). Empty by
    /// default: every check can be bypassed, malware only with an explicit confirmation.
    pub never_bypass: CheckSet,
    /// What a block-list match does (default `reject`).
    pub block_action: BlockAction,
    /// What a spam verdict does, which is also what a country block does (default `quarantine`).
    pub spam_action: BlockAction,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            never_bypass: CheckSet::EMPTY,
            block_action: BlockAction::Reject,
            spam_action: BlockAction::Quarantine,
        }
    }
}

/// One entry as the snapshot keeps it.
#[derive(Debug, Clone)]
pub struct CompiledEntry {
    /// The stored entry.
    pub entry: Entry,
    /// Its bypass set with `all` and `never_bypass` resolved.
    pub bypass: CheckSet,
    /// Scope index: 0 = global, n = tenant n-1.
    pub(crate) scope: usize,
    /// Whether the entry has a validity window (must be checked at evaluation time).
    pub(crate) windowed: bool,
}

impl CompiledEntry {
    /// The id.
    pub fn id(&self) -> EntryId {
        self.entry.id
    }

    /// Whether it takes part in matching at `now`.
    pub fn is_active_at(&self, now: DateTime<Utc>) -> bool {
        !self.windowed || self.entry.entry.is_active_at(now)
    }
}

/// Payload bit (beside the check bits) saying a set has an entry with a validity window, so its
/// bypass union must be recomputed at `now`.
const WINDOWED: u32 = 1 << 30;

/// Flattened IP lookups of one family pair. For [`Snapshot::allow_bypass_for_ip`], the union of
/// the bypass sets of the entries covering each address (and [`WINDOWED`]) also sits in a
/// [`LineMap`] for IPv4 (one cache line per lookup) and a [`V6Map`] for IPv6 (two or three
/// read at once), or, where one is not built, in a table by interval set.
#[derive(Default)]
pub(crate) struct IpIndex {
    v4: IntervalMap<u32>,
    v6: IntervalMap<u128>,
    /// `None` when the summaries have more distinct values than a line map takes, or the keys
    /// are too sparse for it, and for indexes nobody asks for summaries (tenants' lists, block
    /// and ignore lists, body IPs).
    summary_v4: Option<LineMap>,
    /// The IPv6 counterpart, `None` likewise (or when the boundaries do not fit its layout).
    summary_v6: Option<V6Map>,
    /// The summary of each IPv4 interval set, where the summaries are asked for but there is no
    /// line map (else empty).
    set_summaries_v4: Vec<u32>,
    /// The IPv6 counterpart.
    set_summaries_v6: Vec<u32>,
    /// Whether any entry here has a validity window (then summaries may carry [`WINDOWED`]).
    windowed: bool,
}

/// Each elementary interval's start and summary (0 where no entry covers it), given the
/// summary of each set.
fn summary_boundaries<K: IntervalKey>(map: &IntervalMap<K>, sums: &[u32]) -> Vec<(K, u32)> {
    map.intervals()
        .map(|(start, set)| {
            (
                start,
                set.map_or(0, |s| sums.get(s.index()).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// The summary of `set` from a table by set, `None` without one.
fn set_summary(sums: &[u32], set: Option<SetId>) -> Option<u32> {
    match set {
        Some(s) => sums.get(s.index()).copied(),
        None => Some(0),
    }
}

/// Lists with at least this many IP entries build their IPv4 and IPv6 maps on two threads.
const PARALLEL_ITEMS: usize = 20_000;

/// The maps of one address family in an [`IpIndex`].
struct Family<K: IntervalKey, M> {
    intervals: IntervalMap<K>,
    /// The line map of bypass summaries, if asked for and built.
    lines: Option<M>,
    /// The summary of each interval set, if asked for and there is no line map.
    set_summaries: Vec<u32>,
}

impl<K: IntervalKey, M> Family<K, M> {
    /// Builds the interval map of `items` and, with `summaries`, the line map that `line`
    /// builds from the boundaries of the summaries (or, if it builds none, a table by set).
    fn build(
        items: Vec<(K, K, u32)>,
        summaries: bool,
        summary: &(impl Fn(&[u32]) -> u32 + Sync),
        line: impl FnOnce(&[(K, u32)]) -> Option<M>,
    ) -> Self {
        let intervals = IntervalMap::build(items);
        let mut family = Family {
            lines: None,
            set_summaries: Vec::new(),
            intervals,
        };
        if summaries {
            let sums: Vec<u32> = (0..family.intervals.set_count())
                .map(|i| summary(family.intervals.labels_at(i)))
                .collect();
            family.lines = line(&summary_boundaries(&family.intervals, &sums));
            if family.lines.is_none() {
                family.set_summaries = sums;
            }
        }
        family
    }
}

/// The entries matching one IP.
pub(crate) struct IpHit<'a> {
    /// Labels (indices into the snapshot's entries), sorted.
    pub labels: &'a [u32],
}

impl IpIndex {
    /// Builds the index; with `summaries`, also the IPv4 line map of bypass summaries.
    fn build(items: Vec<(IpBounds, u32)>, entries: &[CompiledEntry], summaries: bool) -> IpIndex {
        let items_windowed = items
            .iter()
            .any(|&(_, label)| entries.get(label as usize).is_some_and(|e| e.windowed));
        let parallel = items.len() >= PARALLEL_ITEMS;
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (b, label) in items {
            match b {
                IpBounds::V4(s, e) => v4.push((s, e, label)),
                IpBounds::V6(s, e) => v6.push((s, e, label)),
            }
        }
        let summary = |labels: &[u32]| {
            labels.iter().fold(0, |acc, l| {
                let e = &entries[*l as usize];
                acc | e.bypass.bits() | if e.windowed { WINDOWED } else { 0 }
            })
        };
        let build_v4 = || Family::build(v4, summaries, &summary, |b| LineMap::build(b, 0));
        let build_v6 = || Family::build(v6, summaries, &summary, |b| V6Map::build(b, 0));
        // The families are independent: on a large list, one each per core.
        let (v4, v6) = if parallel {
            std::thread::scope(|scope| {
                let v6 = scope.spawn(build_v6);
                let v4 = build_v4();
                (
                    v4,
                    v6.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                )
            })
        } else {
            (build_v4(), build_v6())
        };
        IpIndex {
            v4: v4.intervals,
            v6: v6.intervals,
            summary_v4: v4.lines,
            summary_v6: v6.lines,
            set_summaries_v4: v4.set_summaries,
            set_summaries_v6: v6.set_summaries,
            windowed: items_windowed,
        }
    }

    /// The bypass union (and windowed flag) of the entries covering an address, without
    /// touching the label sets; `None` where neither a line map nor a table by set answers (then
    /// the caller unions the entries).
    /// Takes the address by reference and never builds a new `IpAddr`: copying the 17-byte enum
    /// through the stack defeats store forwarding and serialises consecutive lookups.
    #[inline(always)]
    fn bypass(&self, ip: &IpAddr) -> Option<u32> {
        match ip {
            IpAddr::V4(a) => self.bypass_v4(u32::from(*a)),
            IpAddr::V6(a) => {
                let key = u128::from(*a);
                // `::ffff:a.b.c.d` is IPv4 (as `Ipv6Addr::to_ipv4_mapped` says, which compiles
                // to some 35 instructions here, against two).
                if key >> 32 == 0xFFFF {
                    #[allow(clippy::cast_possible_truncation)]
                    self.bypass_v4(key as u32)
                } else {
                    self.bypass_v6(key)
                }
            }
        }
    }

    /// The summary for an IPv4 address, from the line map if there is one.
    #[inline(always)]
    fn bypass_v4(&self, key: u32) -> Option<u32> {
        match &self.summary_v4 {
            Some(map) => Some(map.get(key)),
            None => set_summary(&self.set_summaries_v4, self.v4.lookup(key)),
        }
    }

    /// The summary for an IPv6 address, from the IPv6 line maps if there are.
    #[inline(always)]
    fn bypass_v6(&self, key: u128) -> Option<u32> {
        match &self.summary_v6 {
            Some(map) => map.get(key),
            None => set_summary(&self.set_summaries_v6, self.v6.lookup(key)),
        }
    }

    /// Look an address up. `ip` must already be normalised (IPv4-mapped → IPv4).
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<IpHit<'_>> {
        let labels = match ip {
            IpAddr::V4(a) => self.v4.labels(self.v4.lookup(u32::from(a))?),
            IpAddr::V6(a) => self.v6.labels(self.v6.lookup(u128::from(a))?),
        };
        Some(IpHit { labels })
    }

    fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes()
            + self.v6.heap_bytes()
            + self.summary_v4.as_ref().map_or(0, LineMap::heap_bytes)
            + self.summary_v6.as_ref().map_or(0, V6Map::heap_bytes)
    }
}

/// Exact names plus label-boundary suffixes (`*.example.com`).
#[derive(Default)]
pub(crate) struct NameIndex {
    exact: HashMap<Box<str>, Vec<u32>>,
    suffix: HashMap<Box<str>, Vec<u32>>,
}

impl NameIndex {
    fn insert(&mut self, key: String, subdomains: bool, label: u32) {
        let map = if subdomains {
            &mut self.suffix
        } else {
            &mut self.exact
        };
        map.entry(key.into_boxed_str()).or_default().push(label);
    }

    /// Labels of entries matching `domain`, prefixed by `prefix` (e.g. `user@`), on label
    /// boundaries.
    pub(crate) fn lookup(&self, prefix: &str, domain: &Domain, out: &mut Vec<u32>) {
        if self.exact.is_empty() && self.suffix.is_empty() {
            return;
        }
        let mut key = String::with_capacity(prefix.len() + domain.as_str().len());
        key.push_str(prefix);
        key.push_str(domain.as_str());
        if let Some(v) = self.exact.get(key.as_str()) {
            out.extend_from_slice(v);
        }
        if self.suffix.is_empty() {
            return;
        }
        for s in domain.suffixes() {
            key.truncate(prefix.len());
            key.push_str(s);
            if let Some(v) = self.suffix.get(key.as_str()) {
                out.extend_from_slice(v);
            }
        }
    }
}

/// The compiled lists of one list kind (allow, block or ignore) in one scope.
#[derive(Default)]
pub(crate) struct ListIndex {
    /// `ip` and resolved `spf-domain` entries, matched against the client IP.
    pub client_ip: IpIndex,
    /// `host` entries.
    pub host: NameIndex,
    /// `email` entries with a local part (`user@…`), keyed `user@domain`.
    pub email: NameIndex,
    /// `email` entries `*@…`.
    pub email_any: NameIndex,
    /// `domain` entries.
    pub domain: NameIndex,
    /// `country` entries.
    pub country: HashMap<CountryCode, Vec<u32>>,
    /// `body-domain` entries.
    pub body_domain: NameIndex,
    /// `body-ip` entries.
    pub body_ip: IpIndex,
    /// `spf-domain` entries whose SPF record has not been expanded (they match nothing).
    pub unresolved_spf: Vec<u32>,
}

impl ListIndex {
    /// Labels of entries matching a sender address (`email` and `domain` kinds).
    pub(crate) fn sender(&self, address: &EmailAddress, out: &mut Vec<u32>) {
        let mut prefix = String::with_capacity(address.local().len() + 1);
        prefix.push_str(address.local());
        prefix.push('@');
        self.email.lookup(&prefix, address.domain(), out);
        self.email_any.lookup("", address.domain(), out);
        self.domain.lookup("", address.domain(), out);
    }
}

/// All lists of one scope.
#[derive(Default)]
pub(crate) struct ScopeIndex {
    pub lists: [ListIndex; 3],
}

impl ScopeIndex {
    pub(crate) fn list(&self, list: List) -> &ListIndex {
        &self.lists[list_slot(list)]
    }
}

fn list_slot(list: List) -> usize {
    match list {
        List::Allow => 0,
        List::Block => 1,
        List::Ignore => 2,
    }
}

/// The IP addresses a `spf-domain` entry's SPF record authorises, as expanded by the caller
/// (the checks crate resolves them; compile does no I/O).
pub type SpfExpansion = HashMap<Domain, Vec<IpRange>>;

/// An immutable compiled policy: every enabled entry of every scope, indexed for lookups.
/// Build it with [`Snapshot::compile`], share it behind an `Arc`, swap it atomically.
pub struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) config: PolicyConfig,
    pub(crate) entries: Vec<CompiledEntry>,
    pub(crate) tenants: Vec<TenantName>,
    pub(crate) tenant_of_domain: HashMap<Domain, usize>,
    /// Index 0 = global; index n = tenant n-1.
    pub(crate) scopes: Vec<ScopeIndex>,
}

/// A problem found while compiling (the entry is left out; nothing else is affected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileWarning {
    /// The entry concerned.
    pub entry: EntryId,
    /// What is wrong.
    pub message: String,
}

impl Snapshot {
    /// Compile `entries` for `tenants` at configuration `revision`. Disabled entries are left out;
    /// entries scoped to an unknown tenant are left out with a warning; `spf-domain` entries use
    /// `spf` for their IP addresses (missing ones match nothing and are reported in verdicts).
    pub fn compile(
        revision: i64,
        config: PolicyConfig,
        tenants: &[Tenant],
        entries: impl IntoIterator<Item = Entry>,
        spf: &SpfExpansion,
    ) -> (Snapshot, Vec<CompileWarning>) {
        let mut warnings = Vec::new();
        let tenant_names: Vec<TenantName> = tenants.iter().map(|t| t.name.clone()).collect();
        let mut tenant_of_domain = HashMap::new();
        for (i, t) in tenants.iter().enumerate() {
            for d in &t.domains {
                tenant_of_domain.insert(d.clone(), i);
            }
        }
        let scope_of: HashMap<&TenantName, usize> = tenant_names
            .iter()
            .enumerate()
            .map(|(i, t)| (t, i + 1))
            .collect();

        let mut compiled = Vec::new();
        for entry in entries {
            if !entry.entry.enabled {
                continue;
            }
            let scope = match &entry.entry.scope {
                Scope::Global => 0,
                Scope::Tenant(t) => match scope_of.get(t) {
                    Some(i) => *i,
                    None => {
                        warnings.push(CompileWarning {
                            entry: entry.id,
                            message: format!("scoped to unknown tenant `{t}`; left out"),
                        });
                        continue;
                    }
                },
            };
            let bypass = if entry.entry.list == List::Allow {
                entry.entry.checks.resolve(config.never_bypass)
            } else {
                CheckSet::EMPTY
            };
            let windowed = entry.entry.starts_at.is_some() || entry.entry.expires_at.is_some();
            compiled.push(CompiledEntry {
                entry,
                bypass,
                scope,
                windowed,
            });
        }

        #[derive(Default)]
        struct Pending {
            client_ip: Vec<(IpBounds, u32)>,
            body_ip: Vec<(IpBounds, u32)>,
        }
        let mut scopes: Vec<ScopeIndex> =
            (0..=tenants.len()).map(|_| ScopeIndex::default()).collect();
        let mut pending: Vec<[Pending; 3]> =
            (0..=tenants.len()).map(|_| Default::default()).collect();
        for (label, ce) in compiled.iter().enumerate() {
            let label = label as u32;
            let slot = list_slot(ce.entry.entry.list);
            let idx = &mut scopes[ce.scope].lists[slot];
            let pend = &mut pending[ce.scope][slot];
            match &ce.entry.entry.value {
                EntryValue::Ip(r) => pend.client_ip.push((r.bounds(), label)),
                EntryValue::BodyIp(r) => pend.body_ip.push((r.bounds(), label)),
                EntryValue::SpfDomain(d) => match spf.get(d) {
                    Some(ranges) => pend
                        .client_ip
                        .extend(ranges.iter().map(|r| (r.bounds(), label))),
                    None => idx.unresolved_spf.push(label),
                },
                EntryValue::Host(p) => {
                    idx.host
                        .insert(p.domain().to_string(), p.includes_subdomains(), label)
                }
                EntryValue::Domain(p) => {
                    idx.domain
                        .insert(p.domain().to_string(), p.includes_subdomains(), label)
                }
                EntryValue::BodyDomain(p) => {
                    idx.body_domain
                        .insert(p.domain().to_string(), p.includes_subdomains(), label)
                }
                EntryValue::Email(p) => match p.local() {
                    Some(local) => idx.email.insert(
                        format!("{local}@{}", p.domain().domain()),
                        p.domain().includes_subdomains(),
                        label,
                    ),
                    None => idx.email_any.insert(
                        p.domain().domain().to_string(),
                        p.domain().includes_subdomains(),
                        label,
                    ),
                },
                EntryValue::Country(c) => idx.country.entry(*c).or_default().push(label),
            }
        }
        for (scope, lists) in pending.into_iter().enumerate() {
            for (slot, p) in lists.into_iter().enumerate() {
                let idx = &mut scopes[scope].lists[slot];
                // Only the global allow list is asked for bypass summaries by client IP
                // (`allow_bypass_for_ip`); tenants' lists would build line maps nobody reads.
                let summaries = scope == 0 && slot == list_slot(List::Allow);
                idx.client_ip = IpIndex::build(p.client_ip, &compiled, summaries);
                idx.body_ip = IpIndex::build(p.body_ip, &compiled, false);
            }
        }
        let snapshot = Snapshot {
            revision,
            config,
            entries: compiled,
            tenants: tenant_names,
            tenant_of_domain,
            scopes,
        };
        (snapshot, warnings)
    }

    /// The configuration revision this snapshot was compiled from.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The policy configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// Number of compiled (enabled, known-scope) entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The compiled entry behind a label.
    pub(crate) fn entry(&self, label: u32) -> &CompiledEntry {
        &self.entries[label as usize]
    }

    /// The tenant owning a recipient domain.
    pub fn tenant_of(&self, domain: &Domain) -> Option<&TenantName> {
        self.tenant_of_domain.get(domain).map(|i| &self.tenants[*i])
    }

    /// Bypass set of the global allow entries matching a client IP at `now` (the hot path that
    /// the benchmark measures): the union of their bypass sets from the IPv4 [`LineMap`] (one
    /// cache line) or the [`V6Map`] (two or three read at once); no allocation. Only addresses
    /// covered by windowed entries, and the few the line maps leave out, look at the entries.
    #[inline(always)]
    pub fn allow_bypass_for_ip(&self, ip: IpAddr, now: DateTime<Utc>) -> CheckSet {
        let index = &self.scopes[0].list(List::Allow).client_ip;
        match index.bypass(&ip) {
            // The flag is known before the lookup's cache miss, so without windowed entries the
            // answer needs no test of its own.
            Some(summary) if !(index.windowed && summary & WINDOWED != 0) => {
                CheckSet::from_bits(summary)
            }
            _ => self.windowed_bypass(index, allowgate_types::normalize_ip(ip), now),
        }
    }

    /// The slow path of [`Snapshot::allow_bypass_for_ip`]: union the bypass sets of the
    /// entries covering `ip`, checking each one's window.
    #[inline(never)]
    fn windowed_bypass(&self, index: &IpIndex, ip: IpAddr, now: DateTime<Utc>) -> CheckSet {
        index.lookup(ip).map_or(CheckSet::EMPTY, |hit| {
            hit.labels
                .iter()
                .map(|l| self.entry(*l))
                .filter(|e| e.is_active_at(now))
                .fold(CheckSet::EMPTY, |acc, e| acc.union(e.bypass))
        })
    }

    /// Heap bytes used by the IP indexes (for the bytes-per-entry figure).
    pub fn ip_heap_bytes(&self) -> usize {
        self.scopes
            .iter()
            .flat_map(|s| s.lists.iter())
            .map(|l| l.client_ip.heap_bytes() + l.body_ip.heap_bytes())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowgate_types::{EntryKind, EntrySpec};

    fn snapshot(values: impl Iterator<Item = String>) -> Snapshot {
        let entries: Vec<Entry> = values
            .enumerate()
            .map(|(i, value)| {
                let spec = EntrySpec {
                    list: Some(List::Allow),
                    kind: Some(EntryKind::Ip),
                    value,
                    checks: Some(CheckSet::from_bits(1)),
                    force: true,
                    ..Default::default()
                };
                let (entry, _) = spec.validate().unwrap_or_else(|e| panic!("{e:?}"));
                Entry {
                    id: EntryId(i64::try_from(i).unwrap_or(0) + 1),
                    entry,
                    created_at: chrono::Utc::now(),
                    created_by: "test".into(),
                }
            })
            .collect();
        Snapshot::compile(
            1,
            PolicyConfig::default(),
            &[],
            entries,
            &Default::default(),
        )
        .0
    }

    /// The IPv4 hot path uses a line map where keys are dense enough for 16-bit offsets, and
    /// a table of summaries by interval set elsewhere (`tests/snapshot_prop.rs` checks both).
    #[test]
    fn line_map_is_used_for_dense_ipv4_only() {
        let dense = snapshot((0..2000u32).map(|i| format!("10.0.{}.{}", i / 200, i % 200)));
        assert!(
            dense.scopes[0]
                .list(List::Allow)
                .client_ip
                .summary_v4
                .is_some()
        );
        let sparse = snapshot((0..2000u32).map(|i| {
            format!(
                "{}",
                std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761))
            )
        }));
        assert!(
            sparse.scopes[0]
                .list(List::Allow)
                .client_ip
                .summary_v4
                .is_none()
        );
    }

    #[test]
    fn large_lists_build_both_families_on_two_threads() {
        let n = PARALLEL_ITEMS as u32 + 5000;
        let big = snapshot((0..n).map(|i| {
            if i % 2 == 0 {
                format!("10.{}.{}.0/24", i >> 16 & 0xFF, i >> 8 & 0xFF)
            } else {
                format!("2001:db8:{:x}::/48", i)
            }
        }));
        let index = &big.scopes[0].list(List::Allow).client_ip;
        assert!(index.summary_v4.is_some() && index.summary_v6.is_some());
        let now = chrono::Utc::now();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(big.allow_bypass_for_ip(ip("10.0.2.9"), now).bits(), 1);
        assert_eq!(big.allow_bypass_for_ip(ip("2001:db8:3::1"), now).bits(), 1);
        assert_eq!(big.allow_bypass_for_ip(ip("2001:db8:2::1"), now).bits(), 0);
        assert_eq!(big.allow_bypass_for_ip(ip("11.0.0.1"), now).bits(), 0);
    }

    #[test]
    fn only_the_global_allow_list_gets_line_maps() {
        let acme = TenantName::parse("acme").unwrap_or_else(|e| panic!("{e:?}"));
        let entries: Vec<Entry> = (0..2000u32)
            .map(|i| {
                let spec = EntrySpec {
                    list: Some(List::Allow),
                    kind: Some(EntryKind::Ip),
                    value: format!("10.0.{}.{}", i / 200, i % 200),
                    checks: Some(CheckSet::from_bits(1)),
                    scope: if i % 2 == 0 {
                        Scope::Global
                    } else {
                        Scope::Tenant(acme.clone())
                    },
                    ..Default::default()
                };
                let (entry, _) = spec.validate().unwrap_or_else(|e| panic!("{e:?}"));
                Entry {
                    id: EntryId(i64::from(i) + 1),
                    entry,
                    created_at: chrono::Utc::now(),
                    created_by: "test".into(),
                }
            })
            .collect();
        let tenants = [Tenant {
            name: acme,
            domains: vec![Domain::parse("acme.test").unwrap_or_else(|e| panic!("{e:?}"))],
        }];
        let (snap, _) = Snapshot::compile(
            1,
            PolicyConfig::default(),
            &tenants,
            entries,
            &Default::default(),
        );
        let global = &snap.scopes[0].list(List::Allow).client_ip;
        let tenant = &snap.scopes[1].list(List::Allow).client_ip;
        assert!(global.summary_v4.is_some() && global.summary_v6.is_some());
        assert!(tenant.summary_v4.is_none() && tenant.summary_v6.is_none());
        assert!(tenant.set_summaries_v4.is_empty());
    }

    #[test]
    fn v6_line_maps_are_built_for_allow_lists() {
        // Networks and hosts under one /32 and a few elsewhere: the IPv6 line maps answer.
        let v6 = snapshot((0..3000u32).map(|i| match i % 3 {
            0 => format!("2001:db8:{:x}:{:x}::/64", i, i * 7),
            1 => format!("2001:db8:{:x}::{:x}", i * 3, i),
            _ => format!("2a00:{:x}::/48", i),
        }));
        let index = &v6.scopes[0].list(List::Allow).client_ip;
        assert!(index.summary_v6.is_some());
    }
}
