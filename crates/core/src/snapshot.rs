//! Compiling entries into an immutable [`Snapshot`].

use std::net::IpAddr;
use std::sync::Arc;

use allowgate_types::{
    CheckSet, Domain, Entry, EntryId, EntryKind, EntryValue, IpBounds, IpRange, List, Scope,
    Tenant, TenantName,
};
use chrono::{DateTime, Utc};
use hashbrown::HashMap;

use crate::ipmap::IntervalMap;
use crate::names::{NameIndex, Posting};

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

/// Deployment-wide policy settings that shape compilation and decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Checks no entry can ever bypass (`all` excludes them, named ones are dropped). Empty by
    /// default: every check can be bypassed, malware only with an explicit confirmation.
    pub never_bypass: CheckSet,
    /// What a block-list match does (default `reject`).
    pub block_action: BlockAction,
    /// What a spam verdict does, which is also what a country block does (default `quarantine`).
    pub spam_action: BlockAction,
    /// Checks whose failure (`fail`, or `listed` for RBLs) rejects the message when they are not
    /// bypassed. Empty by default: installing allowgate rejects nothing the lists do not say.
    pub reject_on_fail: CheckSet,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            never_bypass: CheckSet::EMPTY,
            block_action: BlockAction::Reject,
            spam_action: BlockAction::Quarantine,
            reject_on_fail: CheckSet::EMPTY,
        }
    }
}

/// Entry flag: counts only for an authenticated sender.
pub(crate) const REQUIRE_AUTH: u8 = 1;
/// Entry flag: an `internal` ignore entry (a trusted relay).
pub(crate) const INTERNAL: u8 = 2;
/// Entry flag: has a validity window, checked at evaluation time.
pub(crate) const WINDOWED: u8 = 4;

/// What matching and deciding need to know of an entry, in 24 bytes (one cache line holds
/// two and a half).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    /// Its id.
    pub id: EntryId,
    /// Its bypass set with `all` and `never_bypass` resolved (empty unless allow).
    pub bypass: CheckSet,
    /// 0 = global, n = tenant n-1.
    pub scope: u32,
    /// Its list.
    pub list: List,
    /// Its kind.
    pub kind: EntryKind,
    /// [`REQUIRE_AUTH`], [`INTERNAL`], [`WINDOWED`].
    pub flags: u8,
}

/// The validity window of a windowed entry.
#[derive(Debug, Clone, Copy)]
struct Window {
    starts: Option<DateTime<Utc>>,
    expires: Option<DateTime<Utc>>,
}

/// The IPv4 and IPv6 interval maps of one set of IP entries.
#[derive(Default)]
pub(crate) struct IpMaps {
    v4: IntervalMap<u32>,
    v6: IntervalMap<u128>,
}

impl IpMaps {
    /// Labels of the entries covering `ip` (normalised: IPv4-mapped addresses are IPv4).
    #[inline]
    pub(crate) fn lookup(&self, ip: IpAddr) -> &[u32] {
        match ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }

    fn is_empty(&self) -> bool {
        self.v4.interval_count() == 0 && self.v6.interval_count() == 0
    }
}

/// Where each scope's labels are: labels are numbered scope by scope (global first, then each
/// tenant in order), so a sorted label set splits into scopes by binary search, without
/// reading any entry.
#[derive(Debug, Default)]
pub(crate) struct ScopeRanges {
    /// `starts[s]..starts[s + 1]` are the labels of scope `s` (0 = global, n = tenant n-1).
    starts: Vec<u32>,
}

impl ScopeRanges {
    /// The labels of `labels` (sorted) that belong to scope `scope`.
    #[inline]
    pub(crate) fn of<'l>(&self, labels: &'l [u32], scope: usize) -> &'l [u32] {
        let (Some(&lo), Some(&hi)) = (self.starts.get(scope), self.starts.get(scope + 1)) else {
            return &[];
        };
        if labels.len() == 1 {
            // The common case: one entry covers the address.
            return if (lo..hi).contains(&labels[0]) {
                labels
            } else {
                &[]
            };
        }
        let a = labels.partition_point(|l| *l < lo);
        let b = labels.partition_point(|l| *l < hi);
        &labels[a..b]
    }
}

/// Lists with at least this many IP entries build their IPv4 and IPv6 maps on two threads.
const PARALLEL_ITEMS: usize = 20_000;

/// IP items by family, before the maps are built.
#[derive(Default)]
struct PendingIps {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl PendingIps {
    fn push(&mut self, bounds: IpBounds, label: u32) {
        match bounds {
            IpBounds::V4(s, e) => self.v4.push((s, e, label)),
            IpBounds::V6(s, e) => self.v6.push((s, e, label)),
        }
    }

    fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// A name entry's key, borrowed from the entry, until the name index is built.
enum NameKey<'a> {
    Domain(&'a Domain),
    Address(&'a str, &'a Domain),
    Country(allowgate_types::CountryCode),
}

/// Builds the maps of the client and body IP items; with many items, the IPv4 maps on one
/// thread and the IPv6 maps on another, while this thread also runs `side`.
fn build_ip_maps<T: Send>(
    pending: [PendingIps; 2],
    side: impl FnOnce() -> T + Send,
) -> (IpMaps, IpMaps, T) {
    let total: usize = pending.iter().map(PendingIps::len).sum();
    let [client, body] = pending;
    let build_v4 = move || (IntervalMap::build(client.v4), IntervalMap::build(body.v4));
    let build_v6 = move || (IntervalMap::build(client.v6), IntervalMap::build(body.v6));
    let ((c4, b4), (c6, b6), side) = if total >= PARALLEL_ITEMS {
        std::thread::scope(|scope| {
            let v4 = scope.spawn(build_v4);
            let v6 = scope.spawn(build_v6);
            let side = side();
            let v4 = v4.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            let v6 = v6.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            (v4, v6, side)
        })
    } else {
        (build_v4(), build_v6(), side())
    };
    (IpMaps { v4: c4, v6: c6 }, IpMaps { v4: b4, v6: b6 }, side)
}

/// The IP addresses each `spf-domain` entry's domain authorises, as expanded by the caller
/// (the checks crate resolves them; compiling does no I/O).
pub type SpfExpansion = std::collections::HashMap<Domain, Vec<IpRange>>;

/// The client-IP index of the `spf-domain` entries, built from an [`SpfExpansion`] apart from
/// the rest of the snapshot so that refreshing the expansion (its DNS TTLs run out) rebuilds
/// only this.
#[derive(Default)]
pub(crate) struct SpfIndex {
    /// The expanded networks of every resolved entry, labelled with the entry.
    pub maps: IpMaps,
    /// Labels of `spf-domain` entries with no expansion: they match nothing.
    pub unresolved: Vec<u32>,
}

impl SpfIndex {
    fn build(compiled: &Compiled, spf: &SpfExpansion) -> SpfIndex {
        let mut items = PendingIps::default();
        let mut unresolved = Vec::new();
        for &label in &compiled.spf_labels {
            let ranges = match &compiled.values[label as usize] {
                EntryValue::SpfDomain(d) => spf.get(d),
                _ => None,
            };
            match ranges {
                Some(ranges) => ranges.iter().for_each(|r| items.push(r.bounds(), label)),
                None => unresolved.push(label),
            }
        }
        let (maps, _, ()) = build_ip_maps([items, PendingIps::default()], || ());
        SpfIndex { maps, unresolved }
    }
}

/// The compiled entries and their indexes (everything but the SPF expansion).
pub(crate) struct Compiled {
    pub revision: i64,
    pub config: PolicyConfig,
    /// Whether any `body-domain` or `body-ip` entry exists: else a message's body need not
    /// be read.
    pub reads_body: bool,
    /// By label.
    pub meta: Vec<Meta>,
    /// Each entry's value (for explanations), by label.
    pub values: Vec<EntryValue>,
    /// Windows of the windowed entries, by label.
    windows: HashMap<u32, Window>,
    /// Bit `label` is set when the entry has a window.
    windowed: Vec<u64>,
    pub tenants: Vec<TenantName>,
    /// Recipient domain → tenant index (keys inline when short: a miss fewer per lookup).
    tenant_of_domain: HashMap<smallvec::SmallVec<[u8; 32]>, u32>,
    /// Which labels belong to which scope.
    pub scopes: ScopeRanges,
    /// `ip` entries of every list and scope, matched against the effective client IP.
    pub client_ip: IpMaps,
    /// `body-ip` entries of every list and scope.
    pub body_ip: IpMaps,
    pub names: NameIndex,
    /// Labels of the `spf-domain` entries.
    spf_labels: Vec<u32>,
}

/// An immutable compiled policy: every enabled entry of every scope, indexed for lookups.
/// Build it with [`Snapshot::compile`], share it behind an `Arc`, swap it atomically; refresh
/// its SPF expansions with [`Snapshot::with_spf`].
#[derive(Clone)]
pub struct Snapshot {
    pub(crate) compiled: Arc<Compiled>,
    pub(crate) spf: Arc<SpfIndex>,
}

/// A problem found while compiling (the entry is left out; nothing else is affected).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileWarning {
    /// The entry concerned.
    pub entry: EntryId,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("revision", &self.revision())
            .field("entries", &self.entry_count())
            .field("tenants", &self.compiled.tenants.len())
            .finish_non_exhaustive()
    }
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
        let (compiled, warnings) = Compiled::build(revision, config, tenants, entries);
        let spf = SpfIndex::build(&compiled, spf);
        let snapshot = Snapshot {
            compiled: Arc::new(compiled),
            spf: Arc::new(spf),
        };
        (snapshot, warnings)
    }

    /// The same snapshot with another SPF expansion. Only the `spf-domain` entries' index is
    /// rebuilt; the rest is shared with `self`.
    pub fn with_spf(&self, spf: &SpfExpansion) -> Snapshot {
        Snapshot {
            compiled: Arc::clone(&self.compiled),
            spf: Arc::new(SpfIndex::build(&self.compiled, spf)),
        }
    }

    /// Whether any entry matches on a message's body (`body-domain`, `body-ip`). When none
    /// does, a caller may leave the body out of [`MessageFacts`](crate::MessageFacts): the
    /// verdict is the same.
    pub fn reads_body(&self) -> bool {
        self.compiled.reads_body
    }

    /// The domains of the `spf-domain` entries, each once: what an [`SpfExpansion`] should
    /// cover.
    pub fn spf_domains(&self) -> Vec<&Domain> {
        let mut domains: Vec<&Domain> = self
            .compiled
            .spf_labels
            .iter()
            .filter_map(|l| match &self.compiled.values[*l as usize] {
                EntryValue::SpfDomain(d) => Some(d),
                _ => None,
            })
            .collect();
        domains.sort_unstable();
        domains.dedup();
        domains
    }

    /// The configuration revision this snapshot was compiled from.
    pub fn revision(&self) -> i64 {
        self.compiled.revision
    }

    /// The policy configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.compiled.config
    }

    /// Number of compiled (enabled, known-scope) entries.
    pub fn entry_count(&self) -> usize {
        self.compiled.meta.len()
    }

    /// The tenant owning a recipient domain.
    pub fn tenant_of(&self, domain: &Domain) -> Option<&TenantName> {
        self.compiled
            .tenant_index(domain)
            .map(|i| &self.compiled.tenants[i as usize])
    }

    /// Heap bytes of the indexes (IP maps, name index, per-entry metadata), for the
    /// bytes-per-entry figure; the entries' own values are not counted.
    pub fn index_heap_bytes(&self) -> usize {
        let c = &self.compiled;
        c.client_ip.heap_bytes()
            + c.body_ip.heap_bytes()
            + self.spf.maps.heap_bytes()
            + c.names.heap_bytes()
            + c.meta.capacity() * std::mem::size_of::<Meta>()
    }
}

impl Compiled {
    fn build(
        revision: i64,
        config: PolicyConfig,
        tenants: &[Tenant],
        entries: impl IntoIterator<Item = Entry>,
    ) -> (Compiled, Vec<CompileWarning>) {
        let mut warnings = Vec::new();
        let tenant_names: Vec<TenantName> = tenants.iter().map(|t| t.name.clone()).collect();
        let mut tenant_of_domain = HashMap::new();
        for (i, t) in tenants.iter().enumerate() {
            for d in &t.domains {
                tenant_of_domain.insert(
                    smallvec::SmallVec::from_slice(d.as_str().as_bytes()),
                    u32_index(i),
                );
            }
        }
        let scope_of: HashMap<&TenantName, u32> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (&t.name, u32_index(i) + 1))
            .collect();

        // Labels are numbered scope by scope (see `ScopeRanges`), in the given order within a
        // scope: find each entry's scope, then visit the entries in label order by index (the
        // entries themselves are not moved: they are large).
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut scope_of_entry: Vec<u32> = Vec::with_capacity(entries.len());
        let mut counts = vec![0u32; tenants.len() + 1];
        for entry in &entries {
            let scope = if !entry.entry.enabled {
                None
            } else {
                match &entry.entry.scope {
                    Scope::Global => Some(0),
                    Scope::Tenant(t) => {
                        let scope = scope_of.get(t).copied();
                        if scope.is_none() {
                            warnings.push(CompileWarning {
                                entry: entry.id,
                                message: format!("scoped to unknown tenant `{t}`; left out"),
                            });
                        }
                        scope
                    }
                }
            };
            if let Some(s) = scope {
                counts[s as usize] += 1;
            }
            scope_of_entry.push(scope.unwrap_or(u32::MAX));
        }
        let mut starts = Vec::with_capacity(counts.len() + 1);
        starts.push(0u32);
        for c in &counts {
            starts.push(starts.last().copied().unwrap_or(0) + c);
        }
        let count = starts.last().copied().unwrap_or(0) as usize;
        // Counting sort of entry indexes by scope, stable.
        let mut next: Vec<u32> = starts[..starts.len() - 1].to_vec();
        let mut order = vec![0u32; count];
        for (i, scope) in scope_of_entry.iter().enumerate() {
            if let Some(slot) = next.get_mut(*scope as usize) {
                order[*slot as usize] = u32_index(i);
                *slot += 1;
            }
        }
        drop(scope_of_entry);

        let mut meta = Vec::with_capacity(count);
        let mut values = Vec::with_capacity(count);
        let mut windows = HashMap::new();
        let mut names: Vec<(NameKey<'_>, Posting)> = Vec::new();
        let mut spf_labels = Vec::new();
        let mut client_ips = PendingIps::default();
        let mut body_ips = PendingIps::default();
        let mut reads_body = false;
        for (label, &i) in order.iter().enumerate() {
            let label = u32_index(label);
            let entry = &entries[i as usize];
            let e = &entry.entry;
            let scope = match &e.scope {
                Scope::Global => 0,
                Scope::Tenant(t) => scope_of.get(t).copied().unwrap_or(0),
            };
            let windowed = e.starts_at.is_some() || e.expires_at.is_some();
            if windowed {
                windows.insert(
                    label,
                    Window {
                        starts: e.starts_at,
                        expires: e.expires_at,
                    },
                );
            }
            let kind = e.kind();
            meta.push(Meta {
                id: entry.id,
                bypass: if e.list == List::Allow {
                    e.checks.resolve(config.never_bypass)
                } else {
                    CheckSet::EMPTY
                },
                scope,
                list: e.list,
                kind,
                flags: (if e.require_auth { REQUIRE_AUTH } else { 0 })
                    | (if e.internal { INTERNAL } else { 0 })
                    | (if windowed { WINDOWED } else { 0 }),
            });
            let posting = |subdomains| Posting {
                label,
                scope,
                list: e.list,
                kind,
                subdomains,
            };
            reads_body |= matches!(e.value, EntryValue::BodyIp(_) | EntryValue::BodyDomain(_));
            match &e.value {
                EntryValue::Ip(r) => client_ips.push(r.bounds(), label),
                EntryValue::BodyIp(r) => body_ips.push(r.bounds(), label),
                EntryValue::SpfDomain(_) => spf_labels.push(label),
                EntryValue::Host(p) | EntryValue::Domain(p) | EntryValue::BodyDomain(p) => names
                    .push((
                        NameKey::Domain(p.domain()),
                        posting(p.includes_subdomains()),
                    )),
                EntryValue::Email(p) => {
                    let d = p.domain();
                    let key = match p.local() {
                        Some(local) => NameKey::Address(local, d.domain()),
                        None => NameKey::Domain(d.domain()),
                    };
                    names.push((key, posting(d.includes_subdomains())));
                }
                EntryValue::Country(c) => names.push((NameKey::Country(*c), posting(false))),
            }
            values.push(e.value.clone());
        }
        // The IP maps build on their own threads while this one indexes the names.
        let (client_ip, body_ip, names) = build_ip_maps([client_ips, body_ips], || {
            let mut index = NameIndex::default();
            for (key, posting) in names {
                match key {
                    NameKey::Domain(d) => index.insert_domain(d, posting),
                    NameKey::Address(local, d) => index.insert_address(local, d, posting),
                    NameKey::Country(c) => index.insert_country(c, posting),
                }
            }
            index
        });
        drop(entries);
        let compiled = Compiled {
            revision,
            config,
            reads_body,
            meta,
            values,
            windowed: {
                let mut bits = vec![0u64; count.div_ceil(64)];
                for l in windows.keys() {
                    bits[*l as usize / 64] |= 1 << (l % 64);
                }
                bits
            },
            windows,
            tenants: tenant_names,
            tenant_of_domain,
            scopes: ScopeRanges { starts },
            client_ip,
            body_ip,
            names,
            spf_labels,
        };
        (compiled, warnings)
    }

    /// The tenant (index) owning a recipient domain.
    #[inline]
    pub(crate) fn tenant_index(&self, domain: &Domain) -> Option<u32> {
        self.tenant_of_domain
            .get(domain.as_str().as_bytes())
            .copied()
    }

    /// Whether the entry behind `label` takes part in matching at `now`.
    #[inline]
    pub(crate) fn active(&self, label: u32, now: DateTime<Utc>) -> bool {
        // A bit per entry says whether it has a window (128 KiB per million entries: it stays in
        // cache, where the entry's metadata would be a miss better taken later, beside the other
        // entries').
        let windowed = self
            .windowed
            .get(label as usize / 64)
            .is_some_and(|w| w >> (label % 64) & 1 != 0);
        if !windowed {
            return (label as usize) < self.meta.len();
        }
        self.windows
            .get(&label)
            .is_some_and(|w| w.starts.is_none_or(|s| s <= now) && w.expires.is_none_or(|e| now < e))
    }

    /// The scope of a label as an entry scope.
    pub(crate) fn scope(&self, scope: u32) -> Scope {
        match scope.checked_sub(1) {
            None => Scope::Global,
            Some(t) => self
                .tenants
                .get(t as usize)
                .map_or(Scope::Global, |t| Scope::Tenant(t.clone())),
        }
    }

    /// Whether any body IP entries exist (else body IPs need no lookups).
    pub(crate) fn has_body_ips(&self) -> bool {
        !self.body_ip.is_empty()
    }
}

/// An index as a `u32` label or tenant number. Snapshots hold far fewer than 2^32 entries (an
/// import is capped at 100,000 entries); a larger count saturates, which only mislabels entries
/// past the four billionth.
#[inline]
fn u32_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use allowgate_types::EntrySpec;

    fn entry(id: i64, list: List, kind: EntryKind, value: &str) -> Entry {
        let spec = EntrySpec {
            list: Some(list),
            kind: Some(kind),
            value: value.into(),
            checks: (list == List::Allow).then(|| CheckSet::from_bits(1)),
            force: true,
            ..Default::default()
        };
        let (entry, _) = spec.validate().unwrap_or_else(|e| panic!("{e:?}"));
        Entry {
            id: EntryId(id),
            entry,
            created_at: Utc::now(),
            created_by: "test".into(),
        }
    }

    #[test]
    fn large_lists_build_both_families_on_two_threads() {
        let n = PARALLEL_ITEMS as i64 + 5000;
        let entries = (0..n).map(|i| {
            let value = if i % 2 == 0 {
                format!("10.{}.{}.0/24", i >> 16 & 0xFF, i >> 8 & 0xFF)
            } else {
                format!("2001:db8:{:x}::/48", i)
            };
            entry(i + 1, List::Allow, EntryKind::Ip, &value)
        });
        let (snap, _) = Snapshot::compile(
            1,
            PolicyConfig::default(),
            &[],
            entries,
            &Default::default(),
        );
        let global = &snap.compiled.client_ip;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{e}"));
        // Every even i below 25,000 with the same bits 8..24 shares a /24.
        assert_eq!(global.lookup(ip("10.0.2.9")).len(), 128);
        assert_eq!(global.lookup(ip("2001:db8:3::1")), [3]);
        assert!(global.lookup(ip("2001:db8:2::1")).is_empty());
        assert!(global.lookup(ip("11.0.0.1")).is_empty());
    }

    #[test]
    fn reads_body_only_with_a_body_entry() {
        let compile = |entries: Vec<Entry>| {
            Snapshot::compile(
                1,
                PolicyConfig::default(),
                &[],
                entries,
                &Default::default(),
            )
            .0
        };
        let others = || {
            vec![
                entry(1, List::Allow, EntryKind::Ip, "192.0.2.1"),
                entry(2, List::Block, EntryKind::Domain, "*.sender.test"),
                entry(3, List::Allow, EntryKind::Email, "a@sender.test"),
            ]
        };
        assert!(!compile(others()).reads_body());
        for (kind, value) in [
            (EntryKind::BodyDomain, "*.link-site.com"),
            (EntryKind::BodyIp, "198.51.100.0/24"),
        ] {
            let mut entries = others();
            entries.push(entry(4, List::Block, kind, value));
            assert!(compile(entries).reads_body(), "{kind:?}");
        }
    }

    #[test]
    fn spf_refresh_rebuilds_only_the_spf_index() {
        let entries = vec![
            entry(1, List::Allow, EntryKind::SpfDomain, "partner.test"),
            entry(2, List::Allow, EntryKind::Ip, "192.0.2.1"),
        ];
        let (snap, _) = Snapshot::compile(
            1,
            PolicyConfig::default(),
            &[],
            entries,
            &Default::default(),
        );
        assert_eq!(snap.spf.unresolved, [0]);
        let partner = Domain::parse("partner.test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(snap.spf_domains(), [&partner]);
        let mut expansion = SpfExpansion::new();
        let (net, _) = IpRange::parse("198.51.100.0/24", false).unwrap_or_else(|e| panic!("{e}"));
        expansion.insert(partner, vec![net]);
        let refreshed = snap.with_spf(&expansion);
        assert!(Arc::ptr_eq(&snap.compiled, &refreshed.compiled));
        assert!(refreshed.spf.unresolved.is_empty());
        let ip = "198.51.100.7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refreshed.spf.maps.lookup(ip), [0]);
        assert!(snap.spf.maps.lookup(ip).is_empty());
    }
}
