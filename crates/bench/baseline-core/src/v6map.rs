//! Two cache lines read at once: the map behind the snapshot's IPv6 hot path.
//!
//! A [`V6Map`] maps every IPv6 address (`u128`) to a `u32`, built like a
//! [`LineMap`](crate::linemap::LineMap) from boundaries. Its keys do not fit one line map: a
//! `/32` of customers spans 2^96 addresses. But IPv6 boundaries are sparse at each level: a
//! `/32` holds networks on `/64` boundaries, and single addresses or longer prefixes fall
//! inside a few `/64`s. So the map has three levels, each answering where the one below has
//! nothing to say:
//!
//! * **fine**: for each `/64` with boundaries inside it, one line with that `/64`, up to
//!   [`FINE_KEYS`] boundaries (lower 64 bits) and the values between them, found through a
//!   perfect hash of the `/64`;
//! * **mid**: for each `/32` with boundaries inside it, its `/64` boundaries (bits 32..63):
//!   up to 7 in one line found through a perfect hash of the `/32` (*small*), more in a wide
//!   line map (7 keys of 32 bits per line) whose root is found through a second perfect hash
//!   whose table is small enough to stay in cache (*big*, as a provider's `/32` holding
//!   thousands of customers);
//! * **top**: a wide line map over the upper 32 bits, for boundaries on a `/32`, read only for
//!   `/32`s that are not big.
//!
//! Whether a `/32` is big is known before any line arrives. A lookup then reads the fine line
//! and the mid line (plus the top line, for a small `/32`) at once, all addressed before any
//! of them arrives, and chooses the answer by selects, not branches: the fine line's if its
//! `/64` is the address's, else the mid line's if its `/32` is, else the top map's.
//!
//! What limits lookups on this VM is the instructions each lookup keeps in flight while its
//! lines are missing, and branches that wait on a miss (see [`crate::linemap`]). Hence the
//! perfect hashes are multiplicative (two multiplications and a displacement each, not a
//! mixing function: that alone took IPv6 lookups from about 95 to about 55 ns in isolation),
//! and the interval map's IPv6 path, with its sub-table hop and variable-length bucket scan
//! (branches on memory), is left to the cold cases.
//!
//! [`V6Map::get`] returns `None`, for the caller to answer another way, in `::/32` (which the
//! hashes use as their empty tag) and in a `/64` with more than [`FINE_KEYS`] inner
//! boundaries. [`V6Map::build`] returns `None` when no perfect hash is found, or if an answer
//! disagrees with the boundaries at any point where a level changes value (which the tests say
//! does not happen). Its lines hold the values themselves, so any number of distinct values
//! fits.
//!
//! ```
//! use allowgate_core_baseline::v6map::V6Map;
//!
//! let net = 0x2001_0db8_u128 << 96; // 2001:db8::/32
//! let host = net | 5; // 2001:db8::5
//! let map = V6Map::build(&[(net, 1), (net + (1 << 96), 0), (host, 3), (host + 1, 1)], 0).unwrap();
//! assert_eq!(map.get(net), Some(1));
//! assert_eq!(map.get(host), Some(3));
//! assert_eq!(map.get(host + 1), Some(1));
//! assert_eq!(map.get(net - 1), Some(0));
//! ```

use std::hint::select_unpredictable;

use crate::linemap::{Lines, LinesBuilder, Table, Wide, rank7, sorted_boundaries, value_at};

/// Inner boundaries a fine line holds.
pub const FINE_KEYS: usize = 4;
/// Seeds tried for a perfect hash.
const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0x27D4_EB2F_1656_67C5,
];
/// Bits below a `/32`.
const BELOW_32: u32 = 96;
/// `/64` boundaries a small mid line holds.
const MID_KEYS: usize = 7;

/// Odd multipliers for the perfect hashes.
const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xBF58_476D_1CE4_E5B9;
const K3: u64 = 0x94D0_49BB_1331_11EB;

/// `x * n >> 64`: `x` scaled into `0..n`.
#[inline(always)]
fn scale(x: u64, n: usize) -> usize {
    // The high half of a 64x64 product is below n, a usize.
    #[allow(clippy::cast_possible_truncation)]
    let high = ((u128::from(x) * n as u128) >> 64) as usize;
    high
}

/// A perfect hash of distinct `u64` keys onto `0..slots` (hash and displace: a key's bucket
/// gives a displacement, which gives its slot). Both steps are multiplicative hashes, whose
/// high bits depend on every bit of the key; `slots` is about 1.125 times the key count.
#[derive(Clone, Debug)]
struct PerfectHash {
    seed: u64,
    /// Displacement of each bucket.
    /// (16 bits: the table stays small enough for the L1 cache.)
    disp: Vec<u16>,
    slots: usize,
}

impl PerfectHash {
    /// The slot of `key` (below `slots`; unique among the keys built with).
    #[inline(always)]
    fn slot(&self, key: u64) -> usize {
        // Multiplicative hashing: the high bits of a product depend on every bit of the key.
        let d = self.disp.get(self.bucket(key)).copied().unwrap_or(0);
        let h = (key ^ u64::from(d).wrapping_mul(K3))
            .wrapping_add(self.seed)
            .wrapping_mul(K2);
        scale(h, self.slots)
    }

    /// The bucket of `key`.
    #[inline(always)]
    fn bucket(&self, key: u64) -> usize {
        scale((key ^ self.seed).wrapping_mul(K1), self.disp.len())
    }

    /// A perfect hash of `keys` (distinct) and each key's slot, or `None` if no seed gives one.
    /// There is always at least one slot.
    fn build(keys: &[u64]) -> Option<(PerfectHash, Vec<usize>)> {
        let n = keys.len();
        let slots = n + n / 8 + 1;
        let buckets = n.div_ceil(4).max(1);
        for seed in SEEDS {
            let mut hash = PerfectHash {
                seed,
                disp: vec![0; buckets],
                slots,
            };
            let mut by_bucket: Vec<Vec<usize>> = vec![Vec::new(); buckets];
            for (i, &key) in keys.iter().enumerate() {
                by_bucket[hash.bucket(key)].push(i);
            }
            let mut order: Vec<usize> = (0..buckets).collect();
            order.sort_by_key(|&b| std::cmp::Reverse(by_bucket[b].len()));
            let mut taken = vec![false; slots];
            let mut slot_of = vec![0; n];
            let mut chosen: Vec<usize> = Vec::new();
            let placed = order.iter().all(|&b| {
                let members = &by_bucket[b];
                (0..=u16::MAX).any(|d| {
                    hash.disp[b] = d;
                    chosen.clear();
                    for &i in members {
                        let s = hash.slot(keys[i]);
                        if taken[s] || chosen.contains(&s) {
                            return false;
                        }
                        chosen.push(s);
                    }
                    for (&i, &s) in members.iter().zip(&chosen) {
                        taken[s] = true;
                        slot_of[i] = s;
                    }
                    true
                })
            });
            if placed {
                return Some((hash, slot_of));
            }
        }
        None
    }

    fn heap_bytes(&self) -> usize {
        self.disp.capacity() * std::mem::size_of::<u16>()
    }
}

/// The values of one `/64`: `vals[i]` holds for lower halves with `i` of `keys` at or below
/// them (`keys` sorted, padded with `u64::MAX`, padding values repeating the last). All `keys`
/// 0 mark a `/64` with more inner boundaries than a line holds.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct FineLine {
    upper: u64,
    keys: [u64; FINE_KEYS],
    vals: [u32; FINE_KEYS + 1],
}

impl FineLine {
    /// Whether this `/64` has more inner boundaries than a line holds (`keys[0]` is 0, which
    /// no inner boundary is).
    #[inline(always)]
    fn crowded(&self) -> bool {
        self.keys[0] == 0
    }

    /// The value for the lower half `lower`.
    #[inline(always)]
    fn pick(&self, lower: u64) -> u32 {
        let below: usize = self.keys.iter().map(|&k| usize::from(k <= lower)).sum();
        self.vals[below.min(FINE_KEYS)]
    }
}

/// The `/64` boundaries of a `/32` that has at most [`MID_KEYS`]: its bits 32..63, sorted and
/// padded with `u32::MAX`, and `vals[i]` for `/64`s with `i` keys at or below them (padding
/// values repeating the last). Unused slots have tag 0 (`::/32`, never looked up here).
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct MidLine {
    tag: u32,
    keys: [u32; MID_KEYS],
    vals: [u32; MID_KEYS + 1],
}

impl MidLine {
    /// The value for the `/64` with bits 32..63 `mid`.
    #[inline(always)]
    fn pick(&self, mid: u32) -> u32 {
        self.vals[rank7(&self.keys, mid) & 7]
    }
}

/// A `/32` with more `/64` boundaries than a mid line holds (tag 0 if unused), and the root of
/// its wide line map.
#[derive(Clone, Copy, Debug)]
struct BigRoot {
    tag: u32,
    table: Table,
}

/// An immutable map from every `u128` to a `u32`. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct V6Map {
    /// Root of the top map in `lines`.
    top_root: Table,
    /// `/32`s with a few `/64` boundaries.
    small_hash: PerfectHash,
    small: Vec<MidLine>,
    /// `/32`s with many, and their maps in `lines`.
    big_hash: PerfectHash,
    big: Vec<BigRoot>,
    /// The top map and the big `/32`s' maps.
    lines: Lines<Wide>,
    fine_hash: PerfectHash,
    fine: Vec<FineLine>,
}

/// Bits 0..31 of `key` (its `/32`).
#[inline(always)]
fn slash32(key: u128) -> u32 {
    // Truncation after the shift is exact.
    #[allow(clippy::cast_possible_truncation)]
    let high = (key >> BELOW_32) as u32;
    high
}

/// Bits 0..63 of `key` (its `/64`).
#[inline(always)]
fn upper(key: u128) -> u64 {
    // Truncation after the shift is exact.
    #[allow(clippy::cast_possible_truncation)]
    let upper = (key >> 64) as u64;
    upper
}

/// Bits 64..127 of `key`.
#[inline(always)]
fn lower(key: u128) -> u64 {
    // Truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let lower = key as u64;
    lower
}

/// Bits 32..63 of `key` (its `/64` within its `/32`).
#[inline(always)]
fn mid32(key: u128) -> u32 {
    // Truncation is the point.
    #[allow(clippy::cast_possible_truncation)]
    let mid = upper(key) as u32;
    mid
}

/// Whether `key` lies strictly inside its `/32`.
fn inside_32(key: u128) -> bool {
    key & ((1 << BELOW_32) - 1) != 0
}

impl V6Map {
    /// Builds the map from `boundaries`: `default` holds below the first boundary, and each
    /// boundary's value from its key up to the next one. Unsorted or duplicate keys are sorted
    /// and deduplicated (the last value given for a key wins). `None` if the boundaries do not
    /// fit this layout (see the [module documentation](self)).
    #[must_use]
    pub fn build(boundaries: &[(u128, u32)], default: u32) -> Option<V6Map> {
        // Keep only changes of value.
        let mut merged: Vec<(u128, u32)> = Vec::new();
        let mut current = default;
        for (k, v) in sorted_boundaries(boundaries) {
            if v != current {
                merged.push((k, v));
                current = v;
            }
        }
        let value_at = |key: u128| value_at(&merged, default, key);

        // Fine: /64s with inner boundaries (not in ::/32, whose lookups are not answered).
        let inner: Vec<(u128, u32)> = merged
            .iter()
            .copied()
            .filter(|&(k, _)| lower(k) != 0 && slash32(k) != 0)
            .collect();
        let fine_lines: Vec<FineLine> = inner
            .chunk_by(|a, b| upper(a.0) == upper(b.0))
            .map(|group| {
                let up = upper(group[0].0);
                let mut line = FineLine {
                    upper: up,
                    keys: [u64::MAX; FINE_KEYS],
                    vals: [value_at(u128::from(up) << 64); FINE_KEYS + 1],
                };
                for (i, &(k, v)) in group.iter().enumerate().take(FINE_KEYS) {
                    line.keys[i] = lower(k);
                    line.vals[i + 1..].fill(v);
                }
                if group.len() > FINE_KEYS {
                    line.keys = [0; FINE_KEYS];
                }
                line
            })
            .collect();

        // Mid: /32s with boundaries inside, over their /64 boundaries and the /64s after the
        // fine ones (whose last inner boundary may leave a value no /64 boundary has).
        let in_32: Vec<(u128, u32)> = merged
            .iter()
            .copied()
            .filter(|&(k, _)| inside_32(k))
            .collect();
        let mut lines = LinesBuilder::<Wide>::new();
        let mut small_lines: Vec<MidLine> = Vec::new();
        let mut big_roots: Vec<BigRoot> = Vec::new();
        for group in in_32.chunk_by(|a, b| slash32(a.0) == slash32(b.0)) {
            let hi = slash32(group[0].0);
            if hi == 0 {
                continue;
            }
            let mut keys: Vec<u32> = group
                .iter()
                .filter_map(|&(k, _)| {
                    if lower(k) == 0 {
                        Some(mid32(k))
                    } else {
                        mid32(k).checked_add(1)
                    }
                })
                .collect();
            keys.dedup();
            let base = u128::from(hi) << BELOW_32;
            let bounds: Vec<(u32, u32)> = keys
                .iter()
                .map(|&m| (m, value_at(base | u128::from(m) << 64)))
                .collect();
            if bounds.len() <= MID_KEYS {
                let mut line = MidLine {
                    tag: hi,
                    keys: [u32::MAX; MID_KEYS],
                    vals: [value_at(base); MID_KEYS + 1],
                };
                for (i, &(m, v)) in bounds.iter().enumerate() {
                    line.keys[i] = m;
                    line.vals[i + 1..].fill(v);
                }
                small_lines.push(line);
            } else {
                let table = lines.add(&bounds, value_at(base))?;
                big_roots.push(BigRoot { tag: hi, table });
            }
        }

        // Top: the /32 boundaries and the /32s after those with boundaries inside.
        let mut top_keys: Vec<u32> = merged
            .iter()
            .filter_map(|&(k, _)| {
                if inside_32(k) {
                    slash32(k).checked_add(1)
                } else {
                    Some(slash32(k))
                }
            })
            .collect();
        top_keys.dedup();
        let top_bounds: Vec<(u32, u32)> = top_keys
            .iter()
            .map(|&h| (h, value_at(u128::from(h) << BELOW_32)))
            .collect();
        let top_root = lines.add(&top_bounds, default)?;

        let (small_hash, small) = hashed(
            &small_lines,
            |l| u64::from(l.tag),
            MidLine {
                tag: 0,
                keys: [u32::MAX; MID_KEYS],
                vals: [0; MID_KEYS + 1],
            },
        )?;
        let (big_hash, big) = hashed(
            &big_roots,
            |r| u64::from(r.tag),
            BigRoot {
                tag: 0,
                table: top_root,
            },
        )?;
        // Unused slots hold a line of ::/64, which no lookup compares with.
        let (fine_hash, fine) = hashed(
            &fine_lines,
            |l| l.upper,
            FineLine {
                upper: 0,
                keys: [u64::MAX; FINE_KEYS],
                vals: [0; FINE_KEYS + 1],
            },
        )?;

        let map = V6Map {
            top_root,
            small_hash,
            small,
            big_hash,
            big,
            lines: lines.finish(),
            fine_hash,
            fine,
        };
        // The map's answer changes only at the boundaries, where a fine /64 or a mid /32 starts
        // or ends, and at top and mid keys (which are among those); the true value only at the
        // boundaries. Equal at all these keys (and just before), equal everywhere the map
        // answers.
        let fine_spans = fine_lines.iter().map(|l| (u128::from(l.upper) << 64, 64));
        let mid_spans = small_lines
            .iter()
            .map(|l| l.tag)
            .chain(big_roots.iter().map(|r| r.tag))
            .map(|hi| (u128::from(hi) << BELOW_32, BELOW_32));
        let mut checks = merged.iter().map(|&(k, _)| k).chain(
            fine_spans
                .chain(mid_spans)
                .flat_map(|(start, bits)| [start, start.wrapping_add(1 << bits)]),
        );
        checks
            .all(|k| {
                [k, k.wrapping_sub(1)]
                    .iter()
                    .all(|&k| map.get(k).is_none_or(|v| v == value_at(k)))
            })
            .then_some(map)
    }

    /// The value of `key`, or `None` in `::/32` and in a `/64` with more than [`FINE_KEYS`]
    /// inner boundaries (the caller answers those another way).
    #[inline(always)]
    #[must_use]
    pub fn get(&self, key: u128) -> Option<u32> {
        let hi = slash32(key);
        if hi == 0 {
            return None;
        }
        let up = upper(key);
        // Whether the /32 is big is known from a small table before any line arrives; a big
        // /32's map answers for all of it.
        let big = self.big.get(self.big_hash.slot(u64::from(hi)))?;
        let coarse = if big.tag == hi {
            self.lines.get(&big.table, mid32(key))
        } else {
            let line = self.small.get(self.small_hash.slot(u64::from(hi)))?;
            let top = self.lines.get(&self.top_root, hi);
            select_unpredictable(line.tag == hi, line.pick(mid32(key)), top)
        };
        let line = self.fine.get(self.fine_hash.slot(up))?;
        let fine = line.pick(lower(key));
        let fine_here = line.upper == up;
        // One rarely taken branch, not one on `fine_here` (unpredictable, and it waits on the
        // line's miss).
        if u8::from(fine_here) & u8::from(line.crowded()) != 0 {
            return None;
        }
        Some(select_unpredictable(fine_here, fine, coarse))
    }

    /// Heap bytes owned by the map.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.lines.heap_bytes()
            + self.small_hash.heap_bytes()
            + self.small.capacity() * std::mem::size_of::<MidLine>()
            + self.big_hash.heap_bytes()
            + self.big.capacity() * std::mem::size_of::<BigRoot>()
            + self.fine_hash.heap_bytes()
            + self.fine.capacity() * std::mem::size_of::<FineLine>()
    }

    /// Number of `/32`s with a mid line, with a wide line map, and of `/64`s with a fine line.
    #[must_use]
    pub fn level_counts(&self) -> (usize, usize, usize) {
        (
            self.small.iter().filter(|l| l.tag != 0).count(),
            self.big.iter().filter(|r| r.tag != 0).count(),
            self.fine.iter().filter(|l| l.upper != 0).count(),
        )
    }
}

/// `items` placed by a perfect hash of their `key`s (distinct), unused slots holding `unused`.
fn hashed<T: Copy>(
    items: &[T],
    key: impl Fn(&T) -> u64,
    unused: T,
) -> Option<(PerfectHash, Vec<T>)> {
    let keys: Vec<u64> = items.iter().map(&key).collect();
    let (hash, slots) = PerfectHash::build(&keys)?;
    let mut placed = vec![unused; hash.slots];
    for (item, &slot) in items.iter().zip(&slots) {
        placed[slot] = *item;
    }
    Some((hash, placed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// The host bits of a `/len`.
    fn host_bits(len: u32) -> u128 {
        u128::MAX.checked_shr(len).unwrap_or(0)
    }

    fn random_u128(x: &mut u64) -> u128 {
        u128::from(xorshift(x)) << 64 | u128::from(xorshift(x))
    }

    /// Boundaries of possibly overlapping CIDR entries `(start, len, value)`: the value of a
    /// key is the OR of the values of the entries covering it (a sweep counting each bit).
    fn cidr_bounds(entries: &[(u128, u32, u32)]) -> Vec<(u128, u32)> {
        let mut events: Vec<(u128, bool, u32)> = Vec::new();
        for &(start, len, v) in entries {
            events.push((start, true, v));
            let end = start | host_bits(len);
            if let Some(after) = end.checked_add(1) {
                events.push((after, false, v));
            }
        }
        events.sort_unstable();
        let mut counts = [0i32; 32];
        let mut out: Vec<(u128, u32)> = Vec::new();
        for group in events.chunk_by(|a, b| a.0 == b.0) {
            for &(_, opens, v) in group {
                for (bit, count) in counts.iter_mut().enumerate() {
                    if v >> bit & 1 == 1 {
                        *count += if opens { 1 } else { -1 };
                    }
                }
            }
            let value = (0..32)
                .filter(|&b| counts[b] > 0)
                .fold(0, |acc, b| acc | 1 << b);
            out.push((group[0].0, value));
        }
        out
    }

    /// Checks every answer on `probes`; returns how many were answered.
    fn check(map: &V6Map, bounds: &[(u128, u32)], default: u32, probes: &[u128]) -> usize {
        let mut answered = 0;
        for &q in probes {
            if let Some(v) = map.get(q) {
                assert_eq!(v, value_at(bounds, default, q), "key {q:#x}");
                answered += 1;
            }
        }
        answered
    }

    /// Each boundary and its neighbours at the three levels' granularities.
    fn probes_around(bounds: &[(u128, u32)]) -> Vec<u128> {
        bounds
            .iter()
            .flat_map(|&(k, _)| {
                [
                    k.wrapping_sub(1),
                    k,
                    k.wrapping_add(1),
                    k.wrapping_add(1 << 64),
                    k.wrapping_sub(1 << 64),
                    k.wrapping_add(1 << 96),
                    k | u128::from(u64::MAX),
                ]
            })
            .collect()
    }

    #[test]
    fn networks_and_hosts_under_a_few_prefixes_and_anywhere_agree() {
        let homes = [
            0x2001_0db8_u128 << 96,
            0x2a00_1450_u128 << 96,
            0x2606_4700 << 96,
        ];
        let mut x = 0x5eed;
        for round in 0..9 {
            let mut entries: Vec<(u128, u32, u32)> = Vec::new();
            for i in 0..[10, 300, 3000][round % 3] {
                let r = random_u128(&mut x);
                let len = [48u32, 56, 64, 128, 128, 36, 32, 20, 100][i % 9];
                let base = if i % 7 == 0 {
                    r
                } else {
                    homes[i % 3] | (r >> 32)
                };
                let start = base & !host_bits(len);
                entries.push((start, len, 1 << (i % 20)));
                if i % 11 == 0 {
                    // A longer prefix inside this one (up to /80 inside a /64).
                    let child = (len + 16).min(128);
                    let inside = start | (r & host_bits(len));
                    entries.push((inside & !host_bits(child), child, 1 << 21));
                }
            }
            let bounds = cidr_bounds(&entries);
            let map = V6Map::build(&bounds, 0).expect("CIDR entries fit");
            let mut probes = probes_around(&bounds);
            for _ in 0..3000 {
                let h = homes[(xorshift(&mut x) % 3) as usize];
                probes.push(h | u128::from(xorshift(&mut x)) << 40);
                probes.push(random_u128(&mut x));
            }
            let answered = check(&map, &bounds, 0, &probes);
            // Only ::/32 and crowded /64s are left to the caller.
            assert!(
                answered * 10 > probes.len() * 9,
                "round {round}: {answered} of {}",
                probes.len()
            );
        }
    }

    #[test]
    fn crowded_slash_64s_ranges_and_extremes() {
        let net = 0x2001_0db8_u128 << 96;
        // Five inner boundaries in one /64: left to the caller there, answered elsewhere.
        let crowded: Vec<(u128, u32)> = (1..=5).map(|i| (net + i, i as u32 % 2)).collect();
        let map = V6Map::build(&crowded, 0).unwrap();
        assert_eq!(
            (map.get(net + 3), map.get(net + (1 << 64))),
            (None, Some(1))
        );
        // A range whose inner ends are in different /64s and /32s.
        let range = [(net + 5, 1), (net + (3 << 96) + (2 << 64) + 7, 0)];
        let map = V6Map::build(&range, 0).unwrap();
        for (key, want) in [
            (net + 4, 0),
            (net + 5, 1),
            (net + (2 << 64), 1),
            (net + (1 << 96), 1),
            (net + (3 << 96) + (2 << 64) + 6, 1),
            (net + (3 << 96) + (2 << 64) + 7, 0),
            (u128::MAX, 0),
        ] {
            assert_eq!(map.get(key), Some(want), "{key:#x}");
        }
        // Empty, a single network, everything, and the very ends.
        assert_eq!(V6Map::build(&[], 4).unwrap().get(net), Some(4));
        let one = V6Map::build(&[(net, 1), (net + (1 << 96), 0)], 0).unwrap();
        let got = (
            one.get(net - 1),
            one.get(net + 77),
            one.get(net + (1 << 96)),
        );
        assert_eq!(got, (Some(0), Some(1), Some(0)));
        assert_eq!(one.level_counts(), (0, 0, 0));
        let all = V6Map::build(&[(0, 9)], 0).unwrap();
        assert_eq!((all.get(1 << 96), all.get(u128::MAX)), (Some(9), Some(9)));
        let last_32 = u128::from(u32::MAX) << 96;
        let ends = [(u128::MAX, 3), (last_32, 2), (1 << 96, 1)];
        let map = V6Map::build(&ends, 0).unwrap();
        for (key, want) in [
            (1 << 96, 1),
            (last_32 - 1, 1),
            (last_32, 2),
            (u128::MAX - 1, 2),
            (u128::MAX, 3),
        ] {
            assert_eq!(map.get(key), Some(want), "{key:#x}");
        }
        // ::/32 is left to the caller.
        assert_eq!(map.get(1), None);
    }

    #[test]
    fn many_slash_64s_under_one_slash_32_use_wide_lines() {
        // 20,000 /64s spread over one /32 (as a home of the benchmark), some with hosts.
        let net = 0x2a00_1450_u128 << 96;
        let mut x = 99;
        let mut entries: Vec<(u128, u32, u32)> = (0..20_000)
            .map(|i| {
                let r = random_u128(&mut x);
                let len = if i % 5 == 0 { 128 } else { 64 };
                ((net | r >> 32) & !host_bits(len), len, 1 << (i % 3))
            })
            .collect();
        // A dense run of consecutive /64s.
        entries.extend((0..3000).map(|i| (net | (0x77_0000 + i) << 64, 64, 8)));
        let bounds = cidr_bounds(&entries);
        let map = V6Map::build(&bounds, 0).unwrap();
        let (small, big, fines) = map.level_counts();
        assert_eq!((small, big), (0, 1));
        assert!(fines > 3000, "{fines}");
        let probes = probes_around(&bounds);
        assert_eq!(check(&map, &bounds, 0, &probes), probes.len());
    }
}
