//! Name lookups: host, domain, address and body-domain patterns, and countries, of every list
//! and scope in one index.
//!
//! One hash map is keyed by the domain of each pattern (`*.example.com` and `example.com` are
//! both kept under `example.com`, the first flagged as covering subdomains). Address patterns
//! with a local part (`bob@example.com`) are kept under their domain too, beside its other
//! patterns, so that a sender costs one probe per suffix, however its entries are spelled. A
//! name is looked up once per suffix on label boundaries (`a.b.example.com`, `b.example.com`,
//! `example.com`; single labels such as `com` only if an entry names one), borrowing the text
//! it is given: a lookup allocates nothing. Keys are stored inline when short, so that
//! comparing one reads the table's cache line and no other allocation. Each key holds its
//! postings, which carry the entry's list and scope so that most of them are filtered without
//! touching the entry itself.

use allowgate_types::{CountryCode, Domain, EmailAddress, EntryKind, List};
use hashbrown::HashMap;
use smallvec::SmallVec;

/// One entry under one key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Posting {
    /// The entry's label (index in the snapshot).
    pub label: u32,
    /// Its scope: 0 = global, n = tenant n-1.
    pub scope: u32,
    /// Its list.
    pub list: List,
    /// Its kind: `host`, `domain`, `email` (under the domain map: `*@domain`), `body-domain`
    /// or `country`.
    pub kind: EntryKind,
    /// Whether the pattern covers subdomains (`*.`).
    pub subdomains: bool,
}

impl Posting {
    /// Whether the posting matches a name found at suffix position `depth` (0 = the whole
    /// name): exact patterns only match the whole name.
    #[inline]
    fn covers(&self, depth: usize) -> bool {
        depth == 0 || self.subdomains
    }
}

/// Postings of one key; most keys have one.
type Postings = SmallVec<[Posting; 1]>;

/// A domain or local part as a key: its bytes, inline when short. It hashes and compares as
/// `[u8]`, so a borrowed `&[u8]` finds it.
type Key<const N: usize> = SmallVec<[u8; N]>;

/// Local parts under one domain that are scanned rather than hashed.
const LOCALS_SCANNED: usize = 8;

/// An address pattern under its domain.
#[derive(Debug)]
struct LocalPosting {
    local: Key<16>,
    posting: Posting,
}

/// The address patterns under one domain.
#[derive(Debug)]
enum Locals {
    /// A few, scanned (most domains have none or one).
    Few(SmallVec<[LocalPosting; 1]>),
    /// Many (a company's whole staff), by local part.
    Many(Box<HashMap<Key<16>, Postings>>),
}

impl Default for Locals {
    fn default() -> Self {
        Locals::Few(SmallVec::new())
    }
}

impl Locals {
    fn push(&mut self, local: &str, posting: Posting) {
        match self {
            Locals::Few(few) if few.len() < LOCALS_SCANNED => few.push(LocalPosting {
                local: Key::from_slice(local.as_bytes()),
                posting,
            }),
            Locals::Few(few) => {
                let mut map: HashMap<Key<16>, Postings> = HashMap::new();
                for lp in few.drain(..) {
                    map.entry(lp.local).or_default().push(lp.posting);
                }
                map.entry(Key::from_slice(local.as_bytes()))
                    .or_default()
                    .push(posting);
                *self = Locals::Many(Box::new(map));
            }
            Locals::Many(map) => map
                .entry(Key::from_slice(local.as_bytes()))
                .or_default()
                .push(posting),
        }
    }

    #[inline]
    fn find(&self, local: &str, mut found: impl FnMut(&Posting)) {
        match self {
            Locals::Few(few) => {
                for lp in few {
                    if lp.local.as_slice() == local.as_bytes() {
                        found(&lp.posting);
                    }
                }
            }
            Locals::Many(map) => {
                if let Some(postings) = map.get(local.as_bytes()) {
                    postings.iter().for_each(found);
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        match self {
            Locals::Few(few) if few.spilled() => few.capacity() * size_of::<LocalPosting>(),
            Locals::Few(_) => 0,
            Locals::Many(map) => {
                map.capacity() * (size_of::<Key<16>>() + size_of::<Postings>() + 1)
                    + map.values().map(spilled).sum::<usize>()
            }
        }
    }
}

/// What is kept under one domain.
#[derive(Debug, Default)]
struct DomainEntry {
    /// Patterns on the domain itself: host, domain, `*@domain` and body-domain.
    postings: Postings,
    /// Address patterns with a local part.
    locals: Locals,
}

/// Heap bytes of postings that spilled out of line.
fn spilled(p: &Postings) -> usize {
    if p.spilled() {
        p.capacity() * std::mem::size_of::<Posting>()
    } else {
        0
    }
}

/// The name index of a snapshot.
#[derive(Default)]
pub(crate) struct NameIndex {
    /// Every host, domain, address and body-domain pattern, by its domain.
    domains: HashMap<Key<32>, DomainEntry>,
    /// Country entries.
    countries: HashMap<CountryCode, Postings>,
    /// Whether a key of `domains` is a single label (a forced `com`): else single-label
    /// suffixes are not looked up.
    single_label_keys: bool,
}

impl NameIndex {
    fn entry(&mut self, domain: &Domain) -> &mut DomainEntry {
        self.single_label_keys |= !domain.as_str().contains('.');
        self.domains
            .entry(Key::from_slice(domain.as_str().as_bytes()))
            .or_default()
    }

    /// Adds a pattern on `domain` (host, domain, `*@` address or body-domain entry).
    pub(crate) fn insert_domain(&mut self, domain: &Domain, posting: Posting) {
        self.entry(domain).postings.push(posting);
    }

    /// Adds an address pattern with a local part.
    pub(crate) fn insert_address(&mut self, local: &str, domain: &Domain, posting: Posting) {
        self.entry(domain).locals.push(local, posting);
    }

    /// Adds a country entry.
    pub(crate) fn insert_country(&mut self, country: CountryCode, posting: Posting) {
        self.countries.entry(country).or_default().push(posting);
    }

    /// Calls `found` for every posting matching `domain` on label boundaries: patterns of
    /// `kinds` on the domain, and, with a `local` part, address patterns.
    #[inline]
    fn matches(
        &self,
        domain: &Domain,
        local: Option<&str>,
        kinds: &[EntryKind],
        mut found: impl FnMut(&Posting),
    ) {
        if self.domains.is_empty() {
            return;
        }
        for (depth, suffix) in domain.suffixes().enumerate() {
            if !self.single_label_keys && depth > 0 && !suffix.contains('.') {
                break;
            }
            let Some(entry) = self.domains.get(suffix.as_bytes()) else {
                continue;
            };
            for p in &entry.postings {
                if p.covers(depth) && kinds.contains(&p.kind) {
                    found(p);
                }
            }
            if let Some(local) = local {
                entry.locals.find(local, |p| {
                    if p.covers(depth) {
                        found(p);
                    }
                });
            }
        }
    }

    /// Calls `found` for every posting of `kinds` matching `domain` on label boundaries.
    #[inline]
    pub(crate) fn domain_matches(
        &self,
        domain: &Domain,
        kinds: &[EntryKind],
        found: impl FnMut(&Posting),
    ) {
        self.matches(domain, None, kinds, found);
    }

    /// Calls `found` for every address, `*@domain` and domain posting matching a sender
    /// address.
    #[inline]
    pub(crate) fn sender_matches(&self, address: &EmailAddress, found: impl FnMut(&Posting)) {
        self.matches(
            address.domain(),
            Some(address.local()),
            &[EntryKind::Domain, EntryKind::Email],
            found,
        );
    }

    /// The postings of a country.
    #[inline]
    pub(crate) fn country(&self, country: CountryCode) -> &[Posting] {
        self.countries.get(&country).map_or(&[], |p| p.as_slice())
    }

    /// Approximate heap bytes (table slots, keys and postings out of line).
    pub(crate) fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.domains.capacity() * (size_of::<Key<32>>() + size_of::<DomainEntry>() + 1)
            + self
                .domains
                .iter()
                .map(|(k, e)| {
                    (if k.spilled() { k.capacity() } else { 0 })
                        + spilled(&e.postings)
                        + e.locals.heap_bytes()
                })
                .sum::<usize>()
            + self.countries.capacity() * (size_of::<CountryCode>() + size_of::<Postings>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn posting(label: u32, kind: EntryKind, subdomains: bool) -> Posting {
        Posting {
            label,
            scope: 0,
            list: List::Block,
            kind,
            subdomains,
        }
    }

    #[test]
    fn suffixes_on_label_boundaries_and_kinds() {
        let mut index = NameIndex::default();
        index.insert_domain(&d("example.com"), posting(1, EntryKind::Domain, true));
        index.insert_domain(&d("example.com"), posting(2, EntryKind::Host, false));
        index.insert_address("bob", &d("example.com"), posting(3, EntryKind::Email, true));
        index.insert_domain(&d("mail.example.com"), posting(4, EntryKind::Email, false));
        let labels = |index: &NameIndex, a: &str| {
            let mut out = Vec::new();
            let address = EmailAddress::parse(a).unwrap_or_else(|e| panic!("{e}"));
            index.sender_matches(&address, |p| out.push(p.label));
            out
        };
        assert_eq!(labels(&index, "x@example.com"), [1]);
        assert_eq!(labels(&index, "bob@example.com"), [1, 3]);
        assert_eq!(labels(&index, "bob@mail.example.com"), [4, 1, 3]);
        // Many addresses under one domain move to a map; matching is the same.
        for i in 0..20u32 {
            let p = posting(10 + i, EntryKind::Email, false);
            index.insert_address(&format!("u{i}"), &d("example.com"), p);
        }
        assert_eq!(labels(&index, "u7@example.com"), [1, 17]);
        assert_eq!(labels(&index, "bob@example.com"), [1, 3]);
        assert_eq!(labels(&index, "bob@x.example.com"), [1, 3]);
        assert_eq!(labels(&index, "u7@x.example.com"), [1]);
        assert_eq!(labels(&index, "bob@badexample.com"), Vec::<u32>::new());
        let mut hosts = Vec::new();
        index.domain_matches(&d("example.com"), &[EntryKind::Host], |p| {
            hosts.push(p.label)
        });
        index.domain_matches(&d("a.example.com"), &[EntryKind::Host], |p| {
            hosts.push(p.label)
        });
        assert_eq!(hosts, [2]);
    }
}
