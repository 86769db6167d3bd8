//! Deterministic benchmark data: a mixed IPv4/IPv6 entry set and query batches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// SplitMix64: a tiny, fast, deterministic generator (quality is ample for test data).
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        // The high half of a 64-bit draw.
        (self.next_u64() >> 32) as u32
    }

    /// Next 128 random bits.
    pub fn next_u128(&mut self) -> u128 {
        (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64())
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.below(u64::from(hi - lo) + 1) as u32)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Uniform in `start..=end` for a u128 range.
    pub fn in_range(&mut self, start: u128, end: u128) -> u128 {
        match (end - start).checked_add(1) {
            Some(span) => start + self.next_u128() % span,
            None => self.next_u128(),
        }
    }
}

/// Address family of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// IPv4: keys are `u32` values widened to `u128`.
    V4,
    /// IPv6.
    V6,
}

/// One allow-list entry: a closed address range, possibly a CIDR.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    /// Address family.
    pub family: Family,
    /// First address.
    pub start: u128,
    /// Last address (inclusive).
    pub end: u128,
    /// Prefix length if the entry is a CIDR; `None` for an arbitrary range.
    pub prefix_len: Option<u8>,
}

/// The popular IPv6 /32s most IPv6 entries live under.
pub const V6_HOMES: [u128; 8] = [
    0x2001_0db8 << 96,
    0x2a00_1450 << 96,
    0x2606_4700 << 96,
    0x2620_0000 << 96,
    0x2a01_04f8 << 96,
    0x2404_6800 << 96,
    0x2001_4860 << 96,
    0x2c0f_f248 << 96,
];

fn cidr(family: Family, addr: u128, len: u32) -> Entry {
    let bits = match family {
        Family::V4 => 32,
        Family::V6 => 128,
    };
    let host = bits - len;
    let host_mask = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    let start = addr & !host_mask;
    let start = if family == Family::V4 {
        start & u128::from(u32::MAX)
    } else {
        start
    };
    Entry {
        family,
        start,
        end: start | host_mask,
        prefix_len: Some(len as u8),
    }
}

fn v4_cidr(rng: &mut Rng) -> Entry {
    let len = match rng.below(1000) {
        0..575 => 32,
        575..775 => rng.between(25, 31),
        775..975 => 24,
        975..995 => rng.between(20, 23),
        _ => rng.between(16, 19),
    };
    cidr(Family::V4, u128::from(rng.next_u32()), len)
}

fn v4_range(rng: &mut Rng) -> Entry {
    let start = rng.next_u32();
    // Log-uniform length from 2 to ~4k addresses, not aligned to anything.
    let magnitude = rng.between(1, 12);
    let len = 1 + rng.below(1 << magnitude) as u32;
    let end = start.saturating_add(len);
    Entry {
        family: Family::V4,
        start: u128::from(start),
        end: u128::from(end),
        prefix_len: None,
    }
}

fn v6_cidr(rng: &mut Rng) -> Entry {
    if rng.percent(85) {
        let home = V6_HOMES[rng.below(V6_HOMES.len() as u64) as usize];
        let len = match rng.below(100) {
            0..15 => 48,
            15..35 => 56,
            35..80 => 64,
            _ => 128,
        };
        let inside = rng.next_u128() & ((1u128 << 96) - 1);
        cidr(Family::V6, home | inside, len)
    } else {
        // Anywhere in 2000::/3.
        let addr = (0x2u128 << 124) | (rng.next_u128() >> 3);
        cidr(Family::V6, addr, rng.between(32, 64))
    }
}

/// An entry overlapping `parent`: a sub-CIDR (possibly identical) of a CIDR parent, or a range
/// inside or straddling the end of a range parent.
fn overlapping(rng: &mut Rng, parent: &Entry) -> Entry {
    match parent.prefix_len {
        Some(len) => {
            let max = if parent.family == Family::V4 { 32 } else { 128 };
            let child_len = rng.between(u32::from(len), max.min(u32::from(len) + 16));
            let addr = rng.in_range(parent.start, parent.end);
            cidr(parent.family, addr, child_len)
        }
        None => {
            let start = rng.in_range(parent.start, parent.end);
            let end = if rng.percent(50) {
                rng.in_range(start, parent.end)
            } else {
                (start + rng.below(1 << 12) as u128 + (parent.end - start))
                    .min(u128::from(u32::MAX))
            };
            Entry {
                family: parent.family,
                start,
                end,
                prefix_len: None,
            }
        }
    }
}

/// `n` entries: ~55% IPv4 CIDRs (/16../32, mostly /24 and longer), ~15% IPv4 ranges (2 to 4k
/// addresses), ~30% IPv6 CIDRs (/32../128, 85% under the eight [`V6_HOMES`]); 5% of entries are
/// made to overlap an earlier entry (so ~10% of entries overlap another), on top of chance
/// overlaps.
pub fn entries(n: usize, seed: u64) -> Vec<Entry> {
    let mut rng = Rng::new(seed);
    let mut out: Vec<Entry> = Vec::with_capacity(n);
    for _ in 0..n {
        let entry = if !out.is_empty() && rng.percent(5) {
            let parent = out[rng.below(out.len() as u64) as usize];
            overlapping(&mut rng, &parent)
        } else {
            match rng.below(100) {
                0..55 => v4_cidr(&mut rng),
                55..70 => v4_range(&mut rng),
                _ => v6_cidr(&mut rng),
            }
        };
        out.push(entry);
    }
    out
}

/// Fraction of entries that share at least one address with another entry of their family.
pub fn overlap_fraction(entries: &[Entry]) -> f64 {
    let mut overlapping = 0usize;
    for family in [Family::V4, Family::V6] {
        let mut spans: Vec<(u128, u128)> = entries
            .iter()
            .filter(|e| e.family == family)
            .map(|e| (e.start, e.end))
            .collect();
        spans.sort_unstable();
        let mut max_end_before: Option<u128> = None;
        for (i, &(start, end)) in spans.iter().enumerate() {
            let with_earlier = max_end_before.is_some_and(|m| m >= start);
            let with_later = spans.get(i + 1).is_some_and(|&(next, _)| next <= end);
            if with_earlier || with_later {
                overlapping += 1;
            }
            max_end_before = Some(max_end_before.map_or(end, |m| m.max(end)));
        }
    }
    overlapping as f64 / entries.len().max(1) as f64
}

/// The address `key` of `family`.
pub fn to_ip(family: Family, key: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(key as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(key)),
    }
}

/// `n` addresses each inside a random entry (so every query hits), in random order; IPv4 and
/// IPv6 are mixed in the proportion of the entries.
pub fn hit_queries(entries: &[Entry], n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let e = &entries[rng.below(entries.len() as u64) as usize];
            to_ip(e.family, rng.in_range(e.start, e.end))
        })
        .collect()
}

/// `n` addresses drawn without regard to the entries (mostly misses), for the agreement check.
pub fn random_queries(n: usize, seed: u64) -> Vec<IpAddr> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| match rng.below(3) {
            0 => to_ip(Family::V4, u128::from(rng.next_u32())),
            1 => {
                let home = V6_HOMES[rng.below(V6_HOMES.len() as u64) as usize];
                to_ip(Family::V6, home | (rng.next_u128() & ((1u128 << 96) - 1)))
            }
            _ => to_ip(Family::V6, rng.next_u128()),
        })
        .collect()
}

/// An entry as an admin would type it: `192.0.2.0/24`, `192.0.2.10-192.0.2.99`, `2001:db8::/48`.
pub fn entry_text(e: &Entry) -> String {
    match (e.family, e.prefix_len) {
        (Family::V4, Some(len)) => format!("{}/{len}", Ipv4Addr::from(e.start as u32)),
        (Family::V4, None) => format!(
            "{}-{}",
            Ipv4Addr::from(e.start as u32),
            Ipv4Addr::from(e.end as u32)
        ),
        (Family::V6, Some(len)) => format!("{}/{len}", Ipv6Addr::from(e.start)),
        (Family::V6, None) => format!("{}-{}", Ipv6Addr::from(e.start), Ipv6Addr::from(e.end)),
    }
}
