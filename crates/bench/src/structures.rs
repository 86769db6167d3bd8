//! The structures under test, each built from the same entries and asked the same queries.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowgate_core::ipmap::IntervalMap;
use ip_network::{Ipv4Network, Ipv6Network};
use ip_network_table::IpNetworkTable;
use ipnet::Ipv4Subnets;
use iptrie::map::{LCTrieMap, RTrieMap};
use iptrie::{Ipv4Prefix, Ipv6Prefix};

use crate::data::{Entry, Family};

/// Value the tries return for "no entry covers this address" (their root value).
pub const MISS: u32 = u32::MAX;

/// Input of our build: one item list per family, labelled with the entry index.
#[derive(Clone, Default)]
pub struct OursInput {
    v4: Vec<(u32, u32, u32)>,
    v6: Vec<(u128, u128, u32)>,
}

impl OursInput {
    /// Items of all entries (ranges are used as they are).
    pub fn new(entries: &[Entry]) -> Self {
        let mut input = Self::default();
        for (label, e) in entries.iter().enumerate() {
            let label = label as u32;
            match e.family {
                Family::V4 => input.v4.push((e.start as u32, e.end as u32, label)),
                Family::V6 => input.v6.push((e.start, e.end, label)),
            }
        }
        input
    }
}

/// Our flattened interval maps, one per family.
pub struct Ours {
    /// IPv4 map.
    pub v4: IntervalMap<u32>,
    /// IPv6 map.
    pub v6: IntervalMap<u128>,
}

impl Ours {
    /// Builds both maps.
    pub fn build(input: OursInput) -> Self {
        Self {
            v4: IntervalMap::build(input.v4),
            v6: IntervalMap::build(input.v6),
        }
    }

    /// The first (lowest) label covering `ip`, or [`MISS`]: like the tries, one value read.
    #[inline]
    pub fn lookup(&self, ip: &IpAddr) -> u32 {
        self.labels_of(ip).first().copied().unwrap_or(MISS)
    }

    /// Every label covering `ip`, sorted.
    #[inline]
    fn labels_of(&self, ip: &IpAddr) -> &[u32] {
        match *ip {
            IpAddr::V4(a) => self.v4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.v6.lookup(u128::from(a)),
        }
    }

    /// Sorted entry indices covering `ip`.
    pub fn labels(&self, ip: IpAddr) -> Vec<u32> {
        self.labels_of(&ip).to_vec()
    }

    /// Heap bytes of both maps.
    pub fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
    }
}

/// Input of the prefix-only baselines: every entry as CIDRs (ranges decomposed), labelled with
/// the entry index.
#[derive(Clone, Default)]
pub struct PrefixInput {
    /// (network address, prefix length, label).
    pub v4: Vec<(Ipv4Addr, u8, u32)>,
    /// (network address, prefix length, label).
    pub v6: Vec<(Ipv6Addr, u8, u32)>,
}

impl PrefixInput {
    /// Decomposes ranges into the minimal list of covering CIDRs.
    pub fn new(entries: &[Entry]) -> Self {
        let mut input = Self::default();
        for (label, e) in entries.iter().enumerate() {
            let label = label as u32;
            match (e.family, e.prefix_len) {
                (Family::V4, Some(len)) => {
                    input.v4.push((Ipv4Addr::from(e.start as u32), len, label));
                }
                (Family::V4, None) => {
                    let start = Ipv4Addr::from(e.start as u32);
                    let end = Ipv4Addr::from(e.end as u32);
                    for net in Ipv4Subnets::new(start, end, 0) {
                        input.v4.push((net.network(), net.prefix_len(), label));
                    }
                }
                (Family::V6, Some(len)) => {
                    input.v6.push((Ipv6Addr::from(e.start), len, label));
                }
                (Family::V6, None) => {
                    for net in
                        ipnet::Ipv6Subnets::new(Ipv6Addr::from(e.start), Ipv6Addr::from(e.end), 0)
                    {
                        input.v6.push((net.network(), net.prefix_len(), label));
                    }
                }
            }
        }
        input
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// `iptrie`'s level-compressed tries (its fastest lookup structure).
pub struct IpTrie {
    v4: LCTrieMap<Ipv4Prefix, u32>,
    v6: LCTrieMap<Ipv6Prefix, u32>,
}

impl IpTrie {
    /// Builds a radix trie per family, then compresses it into an LC-trie.
    pub fn build(input: &PrefixInput) -> Self {
        let mut v4 = RTrieMap::with_root_and_capacity(MISS, input.v4.len());
        for &(addr, len, label) in &input.v4 {
            if let Ok(prefix) = Ipv4Prefix::new(addr, len) {
                v4.insert(prefix, label);
            }
        }
        let mut v6 = RTrieMap::with_root_and_capacity(MISS, input.v6.len());
        for &(addr, len, label) in &input.v6 {
            if let Ok(prefix) = Ipv6Prefix::new(addr, len) {
                v6.insert(prefix, label);
            }
        }
        Self {
            v4: v4.compress(),
            v6: v6.compress(),
        }
    }

    /// Label of the longest matching prefix, or [`MISS`].
    #[inline]
    pub fn lookup(&self, ip: &IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => *self.v4.lookup(a).1,
            IpAddr::V6(a) => *self.v6.lookup(a).1,
        }
    }
}

/// `ip_network_table` (a tree-bitmap).
pub struct NetworkTable(IpNetworkTable<u32>);

impl NetworkTable {
    /// Inserts every prefix.
    pub fn build(input: &PrefixInput) -> Self {
        let mut table = IpNetworkTable::with_capacity(input.v4.len(), input.v6.len());
        for &(addr, len, label) in &input.v4 {
            if let Ok(net) = Ipv4Network::new(addr, len) {
                table.insert(net, label);
            }
        }
        for &(addr, len, label) in &input.v6 {
            if let Ok(net) = Ipv6Network::new(addr, len) {
                table.insert(net, label);
            }
        }
        Self(table)
    }

    /// Label of the longest matching prefix, or [`MISS`].
    #[inline]
    pub fn lookup(&self, ip: &IpAddr) -> u32 {
        let found = match *ip {
            IpAddr::V4(a) => self.0.longest_match_ipv4(a).map(|(_, v)| *v),
            IpAddr::V6(a) => self.0.longest_match_ipv6(a).map(|(_, v)| *v),
        };
        found.unwrap_or(MISS)
    }
}

/// The naive reference: scan every entry.
pub struct LinearScan {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl LinearScan {
    /// Copies the ranges.
    pub fn build(entries: &[Entry]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for e in entries {
            match e.family {
                Family::V4 => v4.push((e.start as u32, e.end as u32)),
                Family::V6 => v6.push((e.start, e.end)),
            }
        }
        Self { v4, v6 }
    }

    /// Position (within its family) of the first range containing `ip`, or [`MISS`]. Stops at
    /// the first hit, which flatters it: the others report every matching entry's set.
    #[inline]
    pub fn lookup(&self, ip: &IpAddr) -> u32 {
        let found = match *ip {
            IpAddr::V4(a) => {
                let k = u32::from(a);
                self.v4.iter().position(|&(s, e)| s <= k && k <= e)
            }
            IpAddr::V6(a) => {
                let k = u128::from(a);
                self.v6.iter().position(|&(s, e)| s <= k && k <= e)
            }
        };
        found.map_or(MISS, |p| p as u32)
    }

    /// Sorted entry indices covering `ip` (the reference for agreement checks).
    pub fn labels(entries: &[Entry], ip: IpAddr) -> Vec<u32> {
        let (family, key) = match ip {
            IpAddr::V4(a) => (Family::V4, u128::from(u32::from(a))),
            IpAddr::V6(a) => (Family::V6, u128::from(a)),
        };
        entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.family == family && e.start <= key && key <= e.end)
            .map(|(i, _)| i as u32)
            .collect()
    }
}
