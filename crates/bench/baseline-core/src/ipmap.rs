//! Flattened interval map: which entries cover an IP, in a compiled snapshot.
//!
//! Full evaluation reads the label sets from here. The allow-list hot path, which needs only
//! the union of the covering entries' bypass sets, reads summaries built from these intervals
//! into [`LineMap`](crate::linemap::LineMap) (IPv4) and [`V6Map`](crate::v6map::V6Map) (IPv6).
//!
//! An [`IntervalMap`] is built once from many closed intervals `[start, end]`, each carrying a
//! `u32` label (typically an entry index). Intervals may overlap arbitrarily and overlaps are
//! *additive*: a key gets every label whose interval contains it. The build flattens the whole
//! key space into disjoint *elementary intervals*, each labelled with an interned, sorted,
//! deduplicated set of labels (or with "no set" where nothing matches).
//!
//! The same generic code serves IPv4 (`u32` keys) and IPv6 (`u128` keys).
//!
//! # Layout
//!
//! * `intervals` — one sorted array of `(start, set)` pairs, one per elementary interval;
//!   the first start is always `K::MIN`, so the intervals tile the whole key space, and adjacent
//!   intervals with the same set are merged. `set` is the interned [`SetId`] or a sentinel for
//!   "no set". The pair is packed (8 bytes for `u32`, 20 for `u128`) so that the answer sits in
//!   the cache line that the search just read.
//! * A radix bucket index in front of `intervals`: the common prefix of all boundaries is
//!   skipped and the next bits (about 18 for a million IPv4 boundaries, at most 20) select a
//!   bucket, which holds the position of its first boundary; a linear, branch-free count over
//!   the bucket's boundaries (about one cache line of pairs: 8 for `u32`, 3 for `u128`; at most
//!   twice that) finishes the lookup. A bucket that still holds many boundaries
//!   (clustered data, e.g. IPv6 tables under a few `/32`s) gets its own sub-table over *its*
//!   common prefix, recursively, so lookups stay short whatever the distribution.
//! * Interned sets live in flat arenas. Sets with a single label (the common case: most entries
//!   do not overlap) get the low ids and cost 4 bytes each; larger sets are stored once each as
//!   `offsets` + `labels`. Note that `k` nested intervals produce sets of up to `k` labels.
//!
//! This deliberately departs from separate `starts`/`sets` arrays searched by binary search:
//! in A/B runs on the benchmark data (`crates/bench`, `BENCHMARKS.md`; 1M entries) that layout,
//! with ~4 boundaries per bucket, measured 90–105 ns per lookup (320–380 ns as a dependent
//! chain) against 60–80 ns (215–230 ns) for this one. Lookups are dominated by cache and TLB
//! misses; here a lookup makes one dependent miss into the big array, and its answer is in the
//! lines just read.
//!
//! # Example
//!
//! ```
//! use allowgate_core_baseline::ipmap::IntervalMap;
//!
//! // 10.0.0.0/8 is entry 0, 10.1.0.0-10.1.0.255 is entry 7.
//! let map = IntervalMap::<u32>::build(vec![
//!     (0x0A00_0000, 0x0AFF_FFFF, 0),
//!     (0x0A01_0000, 0x0A01_00FF, 7),
//! ]);
//! let set = map.lookup(0x0A01_0005).unwrap();
//! assert_eq!(map.labels(set), &[0, 7]);
//! assert_eq!(map.labels(map.lookup(0x0A02_0000).unwrap()), &[0]);
//! assert_eq!(map.lookup(0x0B00_0000), None);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;

mod sealed {
    /// Prevents implementations of [`super::IntervalKey`] outside this module.
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for u128 {}
}

/// An unsigned integer key usable in an [`IntervalMap`]: `u32` (IPv4) or `u128` (IPv6).
///
/// The trait is sealed; its methods are the few integer operations the map needs.
pub trait IntervalKey:
    sealed::Sealed + Copy + Ord + Eq + Hash + Debug + Send + Sync + 'static
{
    /// Width of the key in bits.
    const BITS: u32;
    /// The smallest key (zero).
    const MIN: Self;
    /// The largest key (all ones).
    const MAX: Self;

    /// Widens the key to `u128` without changing its value.
    fn to_u128(self) -> u128;
    /// Narrows a `u128` to this key type, keeping the low [`Self::BITS`] bits.
    fn from_u128_truncating(value: u128) -> Self;
    /// `self + 1`, or `None` at [`Self::MAX`].
    fn checked_next(self) -> Option<Self>;
    /// `self - rhs`, wrapping around at the type's boundary.
    fn wrapping_sub(self, rhs: Self) -> Self;
    /// Number of leading zero bits.
    fn leading_zeros(self) -> u32;
    /// Bitwise exclusive or.
    fn xor(self, rhs: Self) -> Self;
    /// Clears the low `low_bits` bits (`low_bits >= BITS` clears everything).
    fn clear_low_bits(self, low_bits: u32) -> Self;
    /// `self >> shift`, saturated to `u64::MAX` if it does not fit (`shift >= BITS` gives 0).
    fn shr_saturating_u64(self, shift: u32) -> u64;
}

impl IntervalKey for u32 {
    const BITS: u32 = u32::BITS;
    const MIN: Self = u32::MIN;
    const MAX: Self = u32::MAX;

    #[inline]
    fn to_u128(self) -> u128 {
        u128::from(self)
    }
    #[inline]
    fn from_u128_truncating(value: u128) -> Self {
        // Truncation is the documented behaviour.
        value as u32
    }
    #[inline]
    fn checked_next(self) -> Option<Self> {
        self.checked_add(1)
    }
    #[inline]
    fn wrapping_sub(self, rhs: Self) -> Self {
        u32::wrapping_sub(self, rhs)
    }
    #[inline]
    fn leading_zeros(self) -> u32 {
        u32::leading_zeros(self)
    }
    #[inline]
    fn xor(self, rhs: Self) -> Self {
        self ^ rhs
    }
    #[inline]
    fn clear_low_bits(self, low_bits: u32) -> Self {
        self.checked_shr(low_bits)
            .and_then(|high| high.checked_shl(low_bits))
            .unwrap_or(0)
    }
    #[inline]
    fn shr_saturating_u64(self, shift: u32) -> u64 {
        u64::from(self.checked_shr(shift).unwrap_or(0))
    }
}

impl IntervalKey for u128 {
    const BITS: u32 = u128::BITS;
    const MIN: Self = u128::MIN;
    const MAX: Self = u128::MAX;

    #[inline]
    fn to_u128(self) -> u128 {
        self
    }
    #[inline]
    fn from_u128_truncating(value: u128) -> Self {
        value
    }
    #[inline]
    fn checked_next(self) -> Option<Self> {
        self.checked_add(1)
    }
    #[inline]
    fn wrapping_sub(self, rhs: Self) -> Self {
        u128::wrapping_sub(self, rhs)
    }
    #[inline]
    fn leading_zeros(self) -> u32 {
        u128::leading_zeros(self)
    }
    #[inline]
    fn xor(self, rhs: Self) -> Self {
        self ^ rhs
    }
    #[inline]
    fn clear_low_bits(self, low_bits: u32) -> Self {
        self.checked_shr(low_bits)
            .and_then(|high| high.checked_shl(low_bits))
            .unwrap_or(0)
    }
    #[inline]
    fn shr_saturating_u64(self, shift: u32) -> u64 {
        u64::try_from(self.checked_shr(shift).unwrap_or(0)).unwrap_or(u64::MAX)
    }
}

/// Opaque id of an interned label set.
///
/// Ids are dense: they are `0..map.set_count()`, so callers can keep per-set data in a `Vec`
/// indexed by [`SetId::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SetId(u32);

impl SetId {
    /// The id as an index into a `Vec` of length [`IntervalMap::set_count`].
    #[inline]
    #[must_use]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// [`Interval::set`] of an elementary interval covered by no input interval.
const NO_SET: u32 = u32::MAX;
/// Index entry flag: the bucket is resolved by the sub-table whose id is in the low bits.
const SUBTABLE: u32 = 1 << 31;
/// Most input items accepted; more would overflow the 31-bit positions of the index.
const MAX_ITEMS: usize = (1 << 29) - 1;
/// Widest table (2^20 buckets, 4 MiB of index).
const MAX_TABLE_BITS: u32 = 20;
/// Extra bits a table may take beyond its target width to keep buckets from overflowing.
const MAX_EXTRA_BITS: u32 = 2;

/// Start and set of one elementary interval, packed so that a `u128` pair takes 20 bytes.
///
/// Fields are only ever read by value (never borrowed), which packed structs allow.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed(4))]
struct Interval<K: Copy> {
    /// First key of the interval.
    start: K,
    /// Interned set id, or [`NO_SET`].
    set: u32,
}

/// Aimed-for average number of boundaries per bucket: one cache line of pairs (8 for `u32`,
/// 3 for `u128`).
const fn bucket_target<K: Copy>() -> usize {
    let pair = std::mem::size_of::<Interval<K>>();
    if pair >= 32 { 2 } else { 64 / pair }
}

/// A bucket holding more boundaries than this gets its own sub-table.
const fn bucket_max<K: Copy>() -> usize {
    2 * bucket_target::<K>()
}

/// One radix table of the bucket index.
///
/// It covers the boundaries `intervals[lo..hi]`, which all share the prefix `base` (low bits zero)
/// of `BITS - shift - bits` bits. Bucket `j` covers keys `base + (j << shift) ..` and maps to the
/// entry `index[offset + j]`; `index[offset + (1 << bits)]` is `hi`.
#[derive(Clone, Copy, Debug)]
struct Table<K> {
    /// Common prefix of the covered boundaries, low bits cleared.
    base: K,
    /// Bits below the bucket number.
    shift: u32,
    /// Number of buckets (a power of two).
    buckets: u64,
    /// Position of this table's entries in `index`.
    offset: u32,
    /// First covered position in `intervals`.
    lo: u32,
    /// One past the last covered position in `intervals`.
    hi: u32,
}

/// An immutable map from keys to interned label sets, built from possibly overlapping closed
/// intervals. See the [module documentation](self) for the layout.
#[derive(Clone, Debug)]
pub struct IntervalMap<K: IntervalKey> {
    /// Elementary intervals sorted by start; the first starts at `K::MIN` (unless empty).
    intervals: Vec<Interval<K>>,
    /// Bucket entries of all tables: a position in `intervals`, or [`SUBTABLE`] | table id.
    index: Vec<u32>,
    /// Radix tables; `tables[0]` is the root.
    tables: Vec<Table<K>>,
    /// Label of each singleton set; singleton `SetId`s are `0..singles.len()`.
    singles: Vec<u32>,
    /// Arena offsets of the larger sets (`SetId` `singles.len() + m` is set `m`).
    multi_offsets: Vec<u32>,
    /// Arena of the labels of the larger sets.
    multi_labels: Vec<u32>,
}

impl<K: IntervalKey> Default for IntervalMap<K> {
    /// The empty map: every lookup is `None`.
    fn default() -> Self {
        Self {
            intervals: Vec::new(),
            index: Vec::new(),
            tables: Vec::new(),
            singles: Vec::new(),
            multi_offsets: vec![0],
            multi_labels: Vec::new(),
        }
    }
}

/// Tag bit of the temporary id of a larger set during the sweep (see [`Interner`]).
const MULTI_TAG: u32 = 1 << 31;

/// Interns label sets during the sweep. Singletons get temporary ids `0..`, larger sets
/// `MULTI_TAG | 0..`; [`IntervalMap::build`] renumbers the latter after the singletons.
struct Interner {
    singles: Vec<u32>,
    single_ids: HashMap<u32, u32>,
    multi_offsets: Vec<u32>,
    multi_labels: Vec<u32>,
    multi_ids: HashMap<Box<[u32]>, u32>,
    scratch: Vec<u32>,
}

impl Interner {
    fn new() -> Self {
        Self {
            singles: Vec::new(),
            single_ids: HashMap::new(),
            multi_offsets: vec![0],
            multi_labels: Vec::new(),
            multi_ids: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Temporary id of the set of labels currently active, `NO_SET` if there are none.
    fn intern(&mut self, active: &BTreeMap<u32, u32>) -> u32 {
        let mut labels = active.keys();
        match (labels.next(), labels.next()) {
            (None, _) => NO_SET,
            (Some(&label), None) => *self.single_ids.entry(label).or_insert_with(|| {
                self.singles.push(label);
                u32_len(self.singles.len() - 1)
            }),
            (Some(_), Some(_)) => {
                self.scratch.clear();
                self.scratch.extend(active.keys().copied());
                if let Some(&id) = self.multi_ids.get(self.scratch.as_slice()) {
                    return id;
                }
                let id = MULTI_TAG | u32_len(self.multi_offsets.len() - 1);
                self.multi_labels.extend_from_slice(&self.scratch);
                self.multi_offsets.push(u32_len(self.multi_labels.len()));
                self.multi_ids
                    .insert(self.scratch.clone().into_boxed_slice(), id);
                id
            }
        }
    }
}

/// `usize` → `u32` for lengths bounded by [`MAX_ITEMS`]-derived limits.
#[inline]
fn u32_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl<K: IntervalKey> IntervalMap<K> {
    /// Builds the map from `(start, end_inclusive, label)` items.
    ///
    /// Items with `start > end` are ignored. Labels are arbitrary `u32`; a label given several
    /// times for overlapping ranges appears once in a set. At most 2^29 − 1 items are used;
    /// any beyond that are ignored (over 6 GiB of `u32` input, far above any real list).
    #[must_use]
    pub fn build(mut items: Vec<(K, K, u32)>) -> Self {
        items.truncate(MAX_ITEMS);
        items.retain(|&(start, end, _)| start <= end);
        if items.is_empty() {
            return Self::default();
        }

        // Boundary events: (key, label, opens). Closing events sort before opening ones at the
        // same key; it does not matter for correctness since the set is read after all events
        // at a key, but it keeps the active counts small.
        let mut events: Vec<(K, bool, u32)> = Vec::with_capacity(items.len() * 2);
        for &(start, end, label) in &items {
            events.push((start, true, label));
            if let Some(after) = end.checked_next() {
                events.push((after, false, label));
            }
        }
        drop(items);
        events.sort_unstable();

        let mut starts: Vec<K> = Vec::with_capacity(events.len() + 1);
        let mut sets: Vec<u32> = Vec::with_capacity(events.len() + 1);
        starts.push(K::MIN);
        sets.push(NO_SET);

        let mut active: BTreeMap<u32, u32> = BTreeMap::new();
        let mut interner = Interner::new();
        let mut i = 0;
        while let Some(&(key, _, _)) = events.get(i) {
            while let Some(&(k, opens, label)) = events.get(i) {
                if k != key {
                    break;
                }
                if opens {
                    *active.entry(label).or_insert(0) += 1;
                } else if let Some(count) = active.get_mut(&label) {
                    *count -= 1;
                    if *count == 0 {
                        active.remove(&label);
                    }
                }
                i += 1;
            }
            let set = interner.intern(&active);
            if sets.last() == Some(&set) {
                continue; // merge with the previous elementary interval
            }
            if starts.last() == Some(&key) {
                // Only possible at K::MIN: replace the initial "no set" interval.
                if let Some(last) = sets.last_mut() {
                    *last = set;
                }
            } else {
                starts.push(key);
                sets.push(set);
            }
        }
        drop(events);

        // Renumber: singletons keep 0..n, larger sets follow.
        let n_single = u32_len(interner.singles.len());
        for set in &mut sets {
            if *set != NO_SET && *set & MULTI_TAG != 0 {
                *set = n_single + (*set & !MULTI_TAG);
            }
        }
        let Interner {
            mut singles,
            mut multi_offsets,
            mut multi_labels,
            ..
        } = interner;
        singles.shrink_to_fit();
        multi_offsets.shrink_to_fit();
        multi_labels.shrink_to_fit();

        let mut index = IndexBuilder {
            starts: &starts,
            index: Vec::new(),
            tables: Vec::new(),
        };
        // starts[0] == K::MIN needs no search: it is the answer for keys below every table.
        index.add_table(1, starts.len());
        let IndexBuilder {
            mut index,
            mut tables,
            ..
        } = index;
        index.shrink_to_fit();
        tables.shrink_to_fit();

        let intervals = starts
            .iter()
            .zip(&sets)
            .map(|(&start, &set)| Interval { start, set })
            .collect();
        Self {
            intervals,
            index,
            tables,
            singles,
            multi_offsets,
            multi_labels,
        }
    }

    /// Position in `intervals` of the elementary interval containing `key`.
    #[inline]
    fn position(&self, key: K) -> Option<usize> {
        let mut table = self.tables.first()?;
        loop {
            let bucket = key.wrapping_sub(table.base).shr_saturating_u64(table.shift);
            if bucket >= table.buckets {
                // Outside the table's prefix: before all or after all of its boundaries.
                let pos = if key < table.base { table.lo } else { table.hi };
                return Some(pos as usize - 1);
            }
            // bucket < buckets <= 2^20, so it fits in usize.
            let at = table.offset as usize + bucket as usize;
            let entry = *self.index.get(at)?;
            if entry & SUBTABLE != 0 {
                table = self.tables.get((entry & !SUBTABLE) as usize)?;
                continue;
            }
            let next = *self.index.get(at + 1)?;
            let end = if next & SUBTABLE != 0 {
                self.tables.get((next & !SUBTABLE) as usize)?.lo
            } else {
                next
            };
            let bucket = self.intervals.get(entry as usize..end as usize)?;
            // Count the bucket's boundaries <= key. A linear, branch-free count over at most
            // `bucket_max` pairs: its cache lines load in parallel, unlike a binary search's.
            // The interval before the bucket's first boundary is at `entry - 1` (entry >= 1:
            // position 0 is never indexed).
            let below: usize = bucket
                .iter()
                .map(|interval| {
                    let start = interval.start;
                    usize::from(start <= key)
                })
                .sum();
            return Some(entry as usize + below - 1);
        }
    }

    /// The set of labels covering `key`, or `None` if no interval covers it.
    #[inline]
    #[must_use]
    pub fn lookup(&self, key: K) -> Option<SetId> {
        let pos = self.position(key)?;
        match self.intervals.get(pos)?.set {
            NO_SET => None,
            id => Some(SetId(id)),
        }
    }

    /// The elementary intervals in key order: each start with its set, or `None` where no
    /// input interval covers the keys. The first start is `K::MIN` (unless the map is empty).
    pub fn intervals(&self) -> impl Iterator<Item = (K, Option<SetId>)> + '_ {
        self.intervals.iter().map(|interval| {
            let start = interval.start;
            match interval.set {
                NO_SET => (start, None),
                id => (start, Some(SetId(id))),
            }
        })
    }

    /// Labels of a set, sorted ascending and deduplicated.
    ///
    /// Returns an empty slice for a `SetId` that does not belong to this map.
    #[must_use]
    pub fn labels(&self, set: SetId) -> &[u32] {
        let i = set.index();
        if let Some(label) = self.singles.get(i) {
            return std::slice::from_ref(label);
        }
        let m = i - self.singles.len();
        match (self.multi_offsets.get(m), self.multi_offsets.get(m + 1)) {
            (Some(&a), Some(&b)) => self.multi_labels.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Labels of the set with index `index` (`0..set_count()`), for per-set precomputation.
    #[must_use]
    pub fn labels_at(&self, index: usize) -> &[u32] {
        u32::try_from(index).map_or(&[], |i| self.labels(SetId(i)))
    }

    /// Number of interned sets; [`SetId`]s are `0..set_count()`.
    #[must_use]
    pub fn set_count(&self) -> usize {
        self.singles.len() + self.multi_offsets.len() - 1
    }

    /// Number of elementary intervals (including those covered by no input interval).
    #[must_use]
    pub fn interval_count(&self) -> usize {
        self.intervals.len()
    }

    /// Heap bytes owned by the map (allocated capacity of its buffers).
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.intervals.capacity() * size_of::<Interval<K>>()
            + self.index.capacity() * size_of::<u32>()
            + self.tables.capacity() * size_of::<Table<K>>()
            + self.singles.capacity() * size_of::<u32>()
            + self.multi_offsets.capacity() * size_of::<u32>()
            + self.multi_labels.capacity() * size_of::<u32>()
    }
}

/// Builds the radix tables over a sorted, duplicate-free array of interval starts.
struct IndexBuilder<'a, K: IntervalKey> {
    starts: &'a [K],
    index: Vec<u32>,
    tables: Vec<Table<K>>,
}

impl<K: IntervalKey> IndexBuilder<'_, K> {
    /// Adds a table covering `starts[lo..hi]` (and, recursively, sub-tables for its crowded
    /// buckets) and returns its id.
    fn add_table(&mut self, lo: usize, hi: usize) -> u32 {
        let id = u32_len(self.tables.len());
        let covered = self.starts.get(lo..hi).unwrap_or(&[]);
        let count = covered.len();
        // Starts are sorted, so the common prefix of all is that of the first and the last.
        let (base, free_bits) = match (covered.first(), covered.last()) {
            (Some(&first), Some(&last)) => {
                let free_bits = K::BITS - first.xor(last).leading_zeros();
                (first.clear_low_bits(free_bits), free_bits)
            }
            _ => (K::MIN, 0),
        };
        let bits = Self::table_bits(covered, base, free_bits);
        let shift = free_bits - bits;
        let buckets = 1u64 << bits;
        let offset = u32_len(self.index.len());
        self.tables.push(Table {
            base,
            shift,
            buckets,
            offset,
            lo: u32_len(lo),
            hi: u32_len(hi),
        });

        // Bucket j starts at the first boundary >= base + (j << shift); a last entry holds hi.
        let mut entries: Vec<u32> = Vec::with_capacity((1usize << bits) + 1);
        let mut pos = 0;
        for j in 0..buckets {
            while covered
                .get(pos)
                .is_some_and(|s| s.wrapping_sub(base).shr_saturating_u64(shift) < j)
            {
                pos += 1;
            }
            entries.push(u32_len(lo + pos));
        }
        entries.push(u32_len(hi));
        self.index.extend_from_slice(&entries);

        // Crowded buckets get sub-tables. Each bucket has fewer boundaries than the table (the
        // common prefix is maximal, so the first bucket bit splits them), so this terminates.
        for (j, pair) in entries.windows(2).enumerate() {
            let (b_lo, b_hi) = (pair[0] as usize, pair[1] as usize);
            if b_hi - b_lo > bucket_max::<K>() && b_hi - b_lo < count {
                let sub = self.add_table(b_lo, b_hi);
                if let Some(slot) = self.index.get_mut(offset as usize + j) {
                    *slot = SUBTABLE | sub;
                }
            }
        }
        id
    }

    /// Width of a table over `covered`: enough buckets for about [`bucket_target`] boundaries
    /// each, plus up to [`MAX_EXTRA_BITS`] more while over 1/16 of the boundaries would sit in
    /// crowded buckets (which cost a sub-table hop) and each extra bit clearly helps (a cluster
    /// such as an IPv6 `/32` stays crowded however wide a table above it gets).
    fn table_bits(covered: &[K], base: K, free_bits: u32) -> u32 {
        let count = covered.len();
        let cap = MAX_TABLE_BITS.min(free_bits);
        let wanted = (count / bucket_target::<K>())
            .max(2)
            .next_power_of_two()
            .trailing_zeros();
        let mut bits = wanted.min(cap);
        let mut crowded = Self::crowded(covered, base, free_bits - bits);
        while crowded * 16 > count && bits < cap && bits < wanted + MAX_EXTRA_BITS {
            let wider = Self::crowded(covered, base, free_bits - bits - 1);
            if wider * 4 > crowded * 3 {
                break; // less than a quarter better: not worth doubling the table
            }
            bits += 1;
            crowded = wider;
        }
        bits
    }

    /// Number of boundaries in buckets of more than [`bucket_max`] for a table with `shift`.
    fn crowded(covered: &[K], base: K, shift: u32) -> usize {
        let mut crowded = 0;
        let mut run = 0;
        let mut previous = None;
        for &s in covered {
            let bucket = Some(s.wrapping_sub(base).shr_saturating_u64(shift));
            if bucket == previous {
                run += 1;
            } else {
                if run > bucket_max::<K>() {
                    crowded += run;
                }
                run = 1;
                previous = bucket;
            }
        }
        if run > bucket_max::<K>() {
            crowded += run;
        }
        crowded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive<K: IntervalKey>(items: &[(K, K, u32)], key: K) -> Vec<u32> {
        let mut v: Vec<u32> = items
            .iter()
            .filter(|&&(s, e, _)| s <= key && key <= e)
            .map(|&(_, _, l)| l)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn got<K: IntervalKey>(map: &IntervalMap<K>, key: K) -> Vec<u32> {
        map.lookup(key)
            .map(|s| map.labels(s).to_vec())
            .unwrap_or_default()
    }

    fn check<K: IntervalKey>(items: &[(K, K, u32)], keys: &[K]) {
        let map = IntervalMap::build(items.to_vec());
        for &k in keys {
            assert_eq!(got(&map, k), naive(items, k), "key {k:?} items {items:?}");
        }
    }

    #[test]
    fn empty_map_finds_nothing() {
        let map = IntervalMap::<u32>::build(Vec::new());
        assert_eq!(map.lookup(0), None);
        assert_eq!(map.lookup(u32::MAX), None);
        assert_eq!(map.set_count(), 0);
        assert_eq!(map.interval_count(), 0);
        let default = IntervalMap::<u128>::default();
        assert_eq!(default.lookup(7), None);
        assert_eq!(default.set_count(), 0);
    }

    #[test]
    fn inverted_items_are_ignored() {
        let map = IntervalMap::<u32>::build(vec![(10, 5, 1)]);
        assert_eq!(map.lookup(7), None);
        assert_eq!(map.set_count(), 0);
    }

    #[test]
    fn full_range_and_end_at_max() {
        check::<u32>(
            &[(0, u32::MAX, 1), (u32::MAX - 3, u32::MAX, 2), (0, 0, 3)],
            &[0, 1, u32::MAX - 4, u32::MAX - 3, u32::MAX - 1, u32::MAX],
        );
        check::<u128>(
            &[(0, u128::MAX, 1), (u128::MAX, u128::MAX, 2)],
            &[0, 1, u128::MAX - 1, u128::MAX],
        );
        let map = IntervalMap::<u32>::build(vec![(0, u32::MAX, 9)]);
        assert_eq!(map.interval_count(), 1);
        assert_eq!(got(&map, 12345), vec![9]);
    }

    #[test]
    fn intervals_tile_the_key_space() {
        let map = IntervalMap::<u32>::build(vec![(10, 20, 1), (15, 30, 2)]);
        let got: Vec<(u32, Vec<u32>)> = map
            .intervals()
            .map(|(start, set)| (start, set.map_or(vec![], |s| map.labels(s).to_vec())))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, vec![]),
                (10, vec![1]),
                (15, vec![1, 2]),
                (21, vec![2]),
                (31, vec![])
            ]
        );
    }

    #[test]
    fn duplicate_labels_and_identical_intervals() {
        let items = [
            (100u32, 200, 1),
            (100, 200, 1),
            (150, 250, 1),
            (100, 200, 2),
            (100, 200, 3),
        ];
        check(&items, &[99, 100, 149, 150, 200, 201, 250, 251]);
        let map = IntervalMap::build(items.to_vec());
        assert_eq!(got(&map, 220), vec![1]);
        assert_eq!(got(&map, 120), vec![1, 2, 3]);
    }

    #[test]
    fn adjacent_intervals_with_the_same_set_merge() {
        let map = IntervalMap::<u32>::build(vec![(10, 19, 4), (20, 29, 4), (30, 39, 5)]);
        // [0,10) none, [10,30) {4}, [30,40) {5}, [40,MAX] none
        assert_eq!(map.interval_count(), 4);
        assert_eq!(map.set_count(), 2);
        assert_eq!(got(&map, 29), vec![4]);
        assert_eq!(got(&map, 30), vec![5]);
    }

    #[test]
    fn set_ids_are_dense_and_singletons_come_first() {
        let map = IntervalMap::<u32>::build(vec![(0, 10, 7), (5, 20, 8), (30, 40, 9)]);
        assert_eq!(map.set_count(), 4); // {7}, {7,8}, {8}, {9}
        let mut seen: Vec<Vec<u32>> = (0..map.set_count())
            .map(|i| map.labels(SetId(u32::try_from(i).unwrap())).to_vec())
            .collect();
        assert_eq!(seen.pop(), Some(vec![7, 8]));
        seen.sort();
        assert_eq!(seen, vec![vec![7], vec![8], vec![9]]);
        assert_eq!(map.labels(SetId(99)), &[] as &[u32]);
    }

    #[test]
    fn ipv6_under_one_prefix_and_in_several_clusters() {
        // Many small prefixes in three /32s: exercises sub-tables.
        let clusters = [
            0x2001_0db8_u128 << 96,
            0x2a00_1450_u128 << 96,
            0x2606_4700_u128 << 96,
        ];
        let mut items = Vec::new();
        let mut keys = Vec::new();
        let mut x: u128 = 0x1234_5678_9abc_def0_1122_3344_5566_7788;
        for label in 0..3000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = clusters[label as usize % 3];
            let start = base | ((x >> 32) & ((1u128 << 96) - 1) & !((1u128 << 64) - 1));
            let end = start | ((1u128 << 64) - 1);
            items.push((start, end, label));
            keys.extend([start.wrapping_sub(1), start, end, end.wrapping_add(1)]);
        }
        check(&items, &keys);
        let map = IntervalMap::build(items);
        assert!(map.tables.len() > 1, "clustered data should use sub-tables");
        assert!(map.heap_bytes() < 3000 * 80, "{}", map.heap_bytes());
    }

    #[test]
    fn dense_random_u32_matches_naive() {
        let mut x: u32 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let mut items = Vec::new();
        for label in 0..2000 {
            let s = next() % 100_000;
            let len = next() % 300;
            items.push((s, s + len, label % 1500));
        }
        let mut keys: Vec<u32> = (0..5000).map(|_| next() % 101_000).collect();
        for &(s, e, _) in &items {
            keys.extend([s.wrapping_sub(1), s, e, e + 1]);
        }
        check(&items, &keys);
    }

    #[test]
    fn heap_bytes_counts_buffers() {
        let map = IntervalMap::<u128>::build(vec![(1, 2, 0), (10, 20, 1)]);
        assert!(map.heap_bytes() >= map.interval_count() * 20);
    }
}
