//! One cache line per lookup: the map behind the snapshot's IPv4 hot path.
//!
//! A [`LineMap`] maps every `u32` key to a `u32` value. It is built from *boundaries*
//! `(key, value)`: the value holds from that key up to the next boundary, and a default holds
//! below the first. Adjacent boundaries with the same value are merged, so a `/16` and a
//! nested `/24` that grant the same checks cost nothing extra.
//!
//! # Why it exists
//!
//! [`IntervalMap`](crate::ipmap::IntervalMap) answers "which entries cover this address", which
//! the full evaluation needs. The hot path (is this connecting IP allowed, and which checks may
//! it skip) needs only a summary per address, and gets this map, shaped by what was measured on
//! this project's VM (`BENCHMARKS.md`, `crates/bench`):
//!
//! * Independent random lookups into tens of megabytes are bounded by how many of them the CPU
//!   keeps in flight, and what fills its scheduler is the instructions that wait on a lookup's
//!   cache miss. Loading one random line costs ~12 ns per lookup here; each instruction that
//!   waits on it adds roughly half a nanosecond.
//! * A mispredicted branch that waits on a missing line throws away every lookup issued after
//!   it: with 2% of lookups taking such a branch, the cost rose by a fifth.
//!
//! So a lookup reads one 64-byte line of the big array and picks the value inside it with a
//! branch-free binary search over 16-bit keys; its only branch on the line's contents (is it a
//! B-tree node?) is taken by well under 1% of lookups on the benchmark data.
//!
//! # Layout
//!
//! * Keys spread evenly enough get one table of lines of `2^shift` addresses
//!   (`shift <= 16`) from one below the first key: a key's distance from the table start gives
//!   its line and its 16-bit offset into the line before the line is loaded. The line count
//!   follows the density (about 5 keys per line, sparser where that leaves lines overflowing).
//! * Clustered keys get a small *directory* first (a few thousand slots, so it stays in cache;
//!   a key's slot is a shift of its distance from the start) that cuts the key space into
//!   regions of about 256 keys, nested where keys cluster, each with its own line table.
//! * A leaf line holds up to 15 sorted key offsets and 16 value ids (the value below, between
//!   and above the keys).
//! * A line with more than 15 keys is a B-tree node over leaves of the same line's offsets,
//!   found on a cold path.
//! * Value ids index a small table of values.
//!
//! [`LineMap::build`] returns `None` when there are more than 65,536 distinct values, or when
//! the keys are too sparse for 16-bit offsets (the lines would take more than 32 bytes per
//! key); the snapshot then keeps a table of summaries by interval set for that index. At a
//! million benchmark entries the map is one flat table of 524,384 lines (33.6 MB, about 25
//! bytes per IPv4 boundary).
//!
//! # Wide lines
//!
//! The same directory and line tables also come with *wide* lines (crate-internal, used by
//! [`V6Map`](crate::v6map::V6Map)): 7 keys of 32 bits per line and lines up to 2^31 keys
//! wide, for keys spread too thinly for 16-bit offsets (IPv6 networks under a `/32`), at
//! about 2.5 keys per line or fewer. One store (`Lines`) can hold many maps, each known by
//! its root table.
//!
//! # Example
//!
//! ```
//! use allowgate_core_baseline::linemap::LineMap;
//!
//! // 0 below 10, 7 on [10, 20), 0 from 20.
//! let map = LineMap::build(&[(10, 7), (20, 0)], 0).unwrap();
//! assert_eq!(map.get(9), 0);
//! assert_eq!(map.get(10), 7);
//! assert_eq!(map.get(19), 7);
//! assert_eq!(map.get(20), 0);
//! ```

use std::collections::HashMap;
use std::fmt::Debug;

/// Boundaries per directory region aimed at.
const DIR_SPAN: usize = 256;
/// A region with more boundaries than this is cut again by a nested directory table.
const DIR_MAX: usize = 4 * DIR_SPAN;
/// Most slots of one directory table.
const DIR_SLOTS: usize = 1 << 13;
/// Most lines of one table (2^22 lines, 256 MiB).
const MAX_TABLE_LINES: usize = 1 << 22;
/// Separators a node line holds (it has one child more).
const NODE_KEYS: usize = 7;
/// A table offset with this bit set indexes directory slots, not lines.
const DIR: u32 = 1 << 31;

mod sealed {
    /// Prevents implementations of [`super::Format`] outside this module.
    pub trait Sealed {}
    impl Sealed for super::Narrow {}
    impl Sealed for super::Wide {}
}

/// The line format of a [`Lines`] store: [`Narrow`] or [`Wide`]. Keys are `u32` either way;
/// a key's offset into its line is handled as a `u32` below `2^LINE_BITS`.
pub(crate) trait Format: sealed::Sealed + Copy + Debug + Send + Sync + 'static {
    /// The 64-byte line.
    type Line: Copy + Debug + Send + Sync + 'static;
    /// Keys a leaf line holds.
    const LEAF_KEYS: usize;
    /// Widest line of a line table, as a power of two.
    const LINE_BITS: u32;
    /// Keys per line tried for a line table, densest first (see [`LinesBuilder::line_table`]).
    const PER_LINE: [f64; 4];
    /// Whether lines hold 16-bit ids into a table of values (else the values themselves).
    const INTERNED: bool;
    /// A leaf with key `offsets` (sorted, at most `LEAF_KEYS`) and `ids` (one more).
    fn leaf(offsets: &[u32], ids: &[u32]) -> Self::Line;
    /// A node with separator `offsets` (sorted, at most 7) and `children` (one more).
    fn node(offsets: &[u32], children: &[u32]) -> Self::Line;
    /// Whether `line` is a node.
    fn is_node(line: &Self::Line) -> bool;
    /// The value id at `offset` in a leaf.
    fn pick(line: &Self::Line, offset: u32) -> u32;
    /// The child of a node to follow for `offset`.
    fn child(line: &Self::Line, offset: u32) -> u32;
}

/// Lines of up to 2^16 keys: 16-bit offsets, 15 keys per line (the IPv4 hot path).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Narrow;

/// Lines of up to 2^31 keys: 32-bit offsets, 7 keys per line (keys spread thinly, as IPv6
/// networks under a `/32`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wide;

/// A [`Narrow`] line.
///
/// A leaf: `keys[0..15]` are the offsets into the line of up to 15 sorted keys, then `0xFFFF`
/// padding, and `vals[i]` is the value id for an address with `i` keys at or below it (padding
/// repeats the last value, so counting padding changes nothing). `keys[15]` is `0xFFFF`.
///
/// A node (`keys[15] == 0`), for a line with more than 15 keys: up to 7 sorted separators
/// (offsets into the line, padded with `0xFFFF`) in `keys[0..7]`, and 8 children (line
/// indices, the last repeated as padding) as pairs of `vals`. Its children are leaves or nodes
/// over the same line's offsets.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct NarrowLine {
    keys: [u16; 16],
    vals: [u16; 16],
}

/// A [`Wide`] line: as a [`NarrowLine`] with 7 keys of 32 bits (`marker` is `u32::MAX` in a
/// leaf, 0 in a node) and 8 values themselves, not ids (one load fewer after the miss); a
/// node's 8 children are `vals`.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
pub(crate) struct WideLine {
    keys: [u32; 7],
    marker: u32,
    vals: [u32; 8],
}

/// How many of 7 sorted `keys` are at or below `x`: a branch-free binary search (the last
/// step's index is at most 6; a count of all comparisons takes more instructions, and those
/// wait on the line's miss).
#[inline(always)]
pub(crate) fn rank7(keys: &[u32; 7], x: u32) -> usize {
    let mut i = if keys[3] <= x { 4 } else { 0 };
    i += if keys[i + 1] <= x { 2 } else { 0 };
    i + usize::from(keys[i] <= x)
}

/// The two 16-bit halves of `value`, low first.
fn halves(value: u32) -> [u16; 2] {
    [(value & 0xFFFF) as u16, (value >> 16) as u16]
}

/// Copies `from` into the front of `to` and fills the rest with `pad`.
fn fill<T: Copy>(to: &mut [T], from: &[T], pad: T) {
    for (i, slot) in to.iter_mut().enumerate() {
        *slot = from.get(i).copied().unwrap_or(pad);
    }
}

/// The number of `keys` at or below `offset` (for nodes, off the hot path).
fn count_at_or_below<T: Copy + PartialOrd>(keys: &[T], offset: T) -> usize {
    keys.iter().filter(|&&k| k <= offset).count()
}

impl Format for Narrow {
    type Line = NarrowLine;
    const LEAF_KEYS: usize = 15;
    const LINE_BITS: u32 = 16;
    const PER_LINE: [f64; 4] = [5.0, 3.5, 2.5, 1.75];
    const INTERNED: bool = true;

    fn leaf(offsets: &[u32], ids: &[u32]) -> NarrowLine {
        let mut line = NarrowLine {
            keys: [0xFFFF; 16],
            vals: [0; 16],
        };
        for (slot, &k) in line.keys.iter_mut().zip(offsets.iter().take(15)) {
            *slot = narrow(k);
        }
        // Narrow ids are value indices below 65,536.
        let ids: Vec<u16> = ids.iter().map(|&id| narrow(id)).collect();
        fill(&mut line.vals, &ids, ids.last().copied().unwrap_or(0));
        line
    }

    fn node(offsets: &[u32], children: &[u32]) -> NarrowLine {
        let mut line = NarrowLine {
            keys: [0xFFFF; 16],
            vals: [0xFFFF; 16],
        };
        for (slot, &k) in line.keys.iter_mut().zip(offsets.iter().take(NODE_KEYS)) {
            *slot = narrow(k);
        }
        let last = children.last().copied().unwrap_or(0);
        for i in 0..=NODE_KEYS {
            let [low, high] = halves(children.get(i).copied().unwrap_or(last));
            line.vals[2 * i] = low;
            line.vals[2 * i + 1] = high;
        }
        line.keys[15] = 0;
        line
    }

    #[inline(always)]
    fn is_node(line: &NarrowLine) -> bool {
        line.keys[15] == 0
    }

    #[inline(always)]
    fn pick(line: &NarrowLine, offset: u32) -> u32 {
        // Branch-free binary search over keys[0..15]: i = number of keys <= offset. (A count
        // of all comparisons takes more instructions, and those wait on the line's miss.)
        let offset = narrow(offset);
        let k = &line.keys;
        let mut i = if k[7] <= offset { 8 } else { 0 };
        i += if k[i + 3] <= offset { 4 } else { 0 };
        i += if k[i + 1] <= offset { 2 } else { 0 };
        i += usize::from(k[i] <= offset);
        u32::from(line.vals[i & 15])
    }

    fn child(line: &NarrowLine, offset: u32) -> u32 {
        let below = count_at_or_below(&line.keys[..NODE_KEYS], narrow(offset)) & 7;
        u32::from(line.vals[2 * below]) | u32::from(line.vals[2 * below + 1]) << 16
    }
}

/// A narrow line's offset (below 2^16) as stored.
#[inline(always)]
fn narrow(offset: u32) -> u16 {
    // Narrow offsets are masked to 16 bits by their table: the truncation is exact.
    #[allow(clippy::cast_possible_truncation)]
    let offset = offset as u16;
    offset
}

impl Format for Wide {
    type Line = WideLine;
    const LEAF_KEYS: usize = 7;
    const LINE_BITS: u32 = 31;
    const PER_LINE: [f64; 4] = [2.5, 1.75, 1.25, 0.9];
    const INTERNED: bool = false;

    fn leaf(offsets: &[u32], ids: &[u32]) -> WideLine {
        let mut line = WideLine {
            keys: [u32::MAX; 7],
            marker: u32::MAX,
            vals: [0; 8],
        };
        fill(&mut line.keys, offsets, u32::MAX);
        fill(&mut line.vals, ids, ids.last().copied().unwrap_or(0));
        line
    }

    fn node(offsets: &[u32], children: &[u32]) -> WideLine {
        let mut line = WideLine {
            keys: [u32::MAX; 7],
            marker: 0,
            vals: [0; 8],
        };
        fill(&mut line.keys, offsets, u32::MAX);
        fill(
            &mut line.vals,
            children,
            children.last().copied().unwrap_or(0),
        );
        line
    }

    #[inline(always)]
    fn is_node(line: &WideLine) -> bool {
        line.marker == 0
    }

    #[inline(always)]
    fn pick(line: &WideLine, offset: u32) -> u32 {
        line.vals[rank7(&line.keys, offset) & 7]
    }

    fn child(line: &WideLine, offset: u32) -> u32 {
        line.vals[count_at_or_below(&line.keys, offset) & 7]
    }
}

/// A table of slots from `offset`: directory slots if `offset` has [`DIR`], else lines.
///
/// A directory table has `limit + 1` slots of `2^shift` keys over the keys `lo..=hi`: the slot
/// of a key is its distance from `lo` shifted right (keys outside get the first or last slot).
///
/// A line table has lines of `2^shift` keys (`shift <= LINE_BITS`) from `lo`, and `limit` is
/// its last distance from `lo`: a key's distance `d` (0 below `lo`, at most `limit`) gives its
/// line, `d >> shift`, and its offset into the line, `d & mask`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Table {
    lo: u32,
    shift: u32,
    /// Directory: unused. Lines: the offset mask.
    mult: u32,
    /// Directory: the last slot. Lines: the largest distance.
    limit: u32,
    offset: u32,
}

impl Table {
    /// A directory table of `count` slots from directory slot `offset` over `lo..=hi`.
    fn dir(lo: u32, hi: u32, count: usize, offset: usize) -> Table {
        // Slots of a power-of-two width, so a key's slot is a shift (no multiplication): at most
        // `count` of them (at least 2 when lo < hi and count >= 2: the width is below the span).
        let span = u64::from(hi - lo) + 1;
        let width = span.div_ceil(count.max(1) as u64).next_power_of_two();
        let slots = span.div_ceil(width);
        Table {
            lo,
            shift: width.trailing_zeros(),
            mult: 0,
            limit: u32::try_from(slots - 1).unwrap_or(0),
            offset: DIR | u32::try_from(offset).unwrap_or(0),
        }
    }

    /// Number of slots of a directory table.
    fn slots(&self) -> usize {
        self.limit as usize + 1
    }

    /// A line table from line `offset`: `count` lines of `2^shift` keys from `lo`
    /// (`shift <= 31`).
    fn lines(lo: u32, shift: u32, count: u64, offset: u32) -> Table {
        let limit = (count << shift).saturating_sub(1).min(u64::from(u32::MAX));
        Table {
            lo,
            shift,
            mult: (1 << shift) - 1,
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            offset,
        }
    }

    /// The slot of `key` in a directory table.
    #[inline(always)]
    fn slot(&self, key: u32) -> usize {
        // At most `limit`, a u32.
        (u64::from(key.saturating_sub(self.lo)) >> self.shift).min(u64::from(self.limit)) as usize
    }

    /// The line index and offset into it of `key` in a line table.
    #[inline(always)]
    fn line(&self, key: u32) -> (usize, u32) {
        let distance = key.saturating_sub(self.lo).min(self.limit);
        (
            self.offset as usize + (distance >> self.shift) as usize,
            distance & self.mult,
        )
    }
}

/// The line table shape for `bounds` (keys from `lo + 1`) at about `per_line` keys per line,
/// with lines at most `2^line_bits` wide: (shift, count).
fn line_shape(lo: u32, hi: u32, keys: usize, per_line: f64, line_bits: u32) -> (u32, u64) {
    let span = u64::from(hi - lo) + 1;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let wanted = ((keys as f64 / per_line).ceil() as u64).max(1);
    // The narrowest power-of-two width giving at most `wanted` lines, but at most 2^line_bits.
    let width = span.div_ceil(wanted).next_power_of_two();
    let shift = width.trailing_zeros().min(line_bits);
    (shift, span.div_ceil(1 << shift))
}

/// An even slot count of about `len / per_slot`, between 2 and `max`.
fn slot_count(len: usize, per_slot: f64, max: usize) -> usize {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let wanted = (len as f64 / per_slot).ceil() as usize;
    wanted.clamp(2, max).next_multiple_of(2)
}

/// Most lines a [`LineMap`] may have per boundary (one line is 64 bytes); a map that would need
/// more (keys too sparse for 16-bit offsets) is not built.
const MAX_LINES_PER_KEY: f64 = 0.5;

/// Sorts `boundaries` by key and keeps the last value given for each key.
pub(crate) fn sorted_boundaries<K: Copy + Ord>(boundaries: &[(K, u32)]) -> Vec<(K, u32)> {
    let mut sorted = boundaries.to_vec();
    if !sorted.windows(2).all(|w| w[0].0 < w[1].0) {
        // A stable sort keeps the given order of equal keys; keep the last of each run.
        sorted.sort_by_key(|&(k, _)| k);
        sorted.reverse();
        sorted.dedup_by_key(|&mut (k, _)| k);
        sorted.reverse();
    }
    sorted
}

/// The value at `key` of `sorted` boundaries (keys sorted and unique): the last boundary's at
/// or below it, `default` below the first. The reference the line maps are built and checked
/// against.
pub(crate) fn value_at<K: Copy + Ord>(sorted: &[(K, u32)], default: u32, key: K) -> u32 {
    match sorted.partition_point(|&(k, _)| k <= key) {
        0 => default,
        n => sorted.get(n - 1).map_or(default, |&(_, v)| v),
    }
}

/// An immutable map from every `u32` to a `u32`. See the [module documentation](self).
#[derive(Clone, Debug)]
pub struct LineMap {
    /// The top table (a directory table, or the only line table), over all keys.
    root: Table,
    /// The directory, lines and values.
    lines: Lines<Narrow>,
}

impl LineMap {
    /// Builds the map from `boundaries`: `default` holds below the first boundary, and each
    /// boundary's value from its key up to the next one. Unsorted or duplicate keys are sorted
    /// and deduplicated (the last value given for a key wins).
    ///
    /// Returns `None` if there are more than 65,536 distinct values, or if the keys are so
    /// sparse that the lines would take more than 32 bytes per key (then a search over the
    /// keys is about as fast).
    #[must_use]
    pub fn build(boundaries: &[(u32, u32)], default: u32) -> Option<LineMap> {
        let sorted = sorted_boundaries(boundaries);
        let mut builder = LinesBuilder::new();
        let root = builder.add(&sorted, default)?;
        #[allow(clippy::cast_precision_loss)]
        if builder.lines.len() > 16
            && builder.lines.len() as f64 > MAX_LINES_PER_KEY * builder.keys as f64
        {
            return None;
        }
        Some(LineMap {
            root,
            lines: builder.finish(),
        })
    }

    /// The value of `key`.
    #[inline(always)]
    #[must_use]
    pub fn get(&self, key: u32) -> u32 {
        self.lines.get(&self.root, key)
    }

    /// Number of lines a lookup of `key` reads (1, or more behind a B-tree node).
    #[must_use]
    pub fn lines_read(&self, key: u32) -> usize {
        self.lines.lines_read(&self.root, key)
    }

    /// Heap bytes owned by the map.
    #[must_use]
    pub fn heap_bytes(&self) -> usize {
        self.lines.heap_bytes()
    }

    /// Number of lines.
    #[must_use]
    pub fn line_count(&self) -> usize {
        self.lines.lines.len()
    }

    /// Number of directory slots.
    #[must_use]
    pub fn dir_count(&self) -> usize {
        self.lines.dir.len()
    }
}

/// The directory tables, lines and values of one or more line maps (each known by its root
/// [`Table`]), in one format.
#[derive(Clone, Debug)]
pub(crate) struct Lines<F: Format> {
    /// Directory slots: the tables of the regions.
    dir: Vec<Table>,
    /// Lines of all line tables and B-tree nodes and their leaves.
    lines: Vec<F::Line>,
    /// Values by id.
    values: Vec<u32>,
}

impl<F: Format> Lines<F> {
    /// The line table for `key` under `root`.
    #[inline(always)]
    fn table<'a>(&'a self, root: &'a Table, key: u32) -> &'a Table {
        let mut table = root;
        while table.offset & DIR != 0 {
            match self
                .dir
                .get((table.offset & !DIR) as usize + table.slot(key))
            {
                Some(next) => table = next,
                None => break, // unreachable: a directory table's slots exist
            }
        }
        table
    }

    /// The value of `key` in the map with `root`.
    #[inline(always)]
    pub(crate) fn get(&self, root: &Table, key: u32) -> u32 {
        self.in_lines(self.table(root, key), key)
    }

    /// The value of `key` in the line table `table`.
    #[inline(always)]
    fn in_lines(&self, table: &Table, key: u32) -> u32 {
        let (index, offset) = table.line(key);
        let Some(line) = self.lines.get(index) else {
            return 0; // unreachable: a table's lines exist
        };
        let id = if F::is_node(line) {
            self.descend(line, offset)
        } else {
            F::pick(line, offset)
        };
        if F::INTERNED {
            self.values.get(id as usize).copied().unwrap_or(0)
        } else {
            id
        }
    }

    /// The cold path of [`Lines::get`]: down a B-tree node to the leaf of `offset`.
    #[inline(never)]
    fn descend<'a>(&'a self, mut line: &'a F::Line, offset: u32) -> u32 {
        while F::is_node(line) {
            match self.lines.get(F::child(line, offset) as usize) {
                Some(child) => line = child,
                None => return 0,
            }
        }
        F::pick(line, offset)
    }

    /// Number of lines a lookup of `key` under `root` reads.
    pub(crate) fn lines_read(&self, root: &Table, key: u32) -> usize {
        let (mut index, offset) = self.table(root, key).line(key);
        let mut read = 0;
        while let Some(line) = self.lines.get(index) {
            read += 1;
            if !F::is_node(line) {
                break;
            }
            index = F::child(line, offset) as usize;
        }
        read
    }

    /// Heap bytes owned.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.lines.capacity() * std::mem::size_of::<F::Line>()
            + self.dir.capacity() * std::mem::size_of::<Table>()
            + self.values.capacity() * std::mem::size_of::<u32>()
    }
}

/// Builds a [`Lines`] store, one map at a time.
pub(crate) struct LinesBuilder<F: Format> {
    dir: Vec<Table>,
    lines: Vec<F::Line>,
    values: Vec<u32>,
    ids: HashMap<u32, u32>,
    /// The blank line table made for the last empty region, and its value id: consecutive
    /// empty regions share it.
    blank: Option<(u32, Table)>,
    /// Keys added so far (changes of value only).
    keys: usize,
}

impl<F: Format> LinesBuilder<F> {
    /// An empty store.
    pub(crate) fn new() -> Self {
        Self {
            dir: Vec::new(),
            lines: Vec::new(),
            values: Vec::new(),
            ids: HashMap::new(),
            blank: None,
            keys: 0,
        }
    }

    /// Adds the map over `sorted` boundaries (keys sorted and unique): `default` holds below
    /// the first, each boundary's value from its key up to the next one. Returns its root, or
    /// `None` past 65,536 distinct values in the store.
    pub(crate) fn add(&mut self, sorted: &[(u32, u32)], default: u32) -> Option<Table> {
        // A boundary at 0 replaces the default: then every key is at least 1, and a line
        // table can start one below its first key.
        let default = match sorted.first() {
            Some(&(0, value)) => value,
            _ => default,
        };
        // Keep only changes of value, and replace values by ids.
        let default_id = self.id(default)?;
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
        let mut current = default;
        for &(k, v) in sorted {
            if v != current && k != 0 {
                merged.push((k, self.id(v)?));
                current = v;
            }
        }
        self.keys += merged.len();
        Some(self.region(&merged, default_id))
    }

    /// The store of every map added.
    pub(crate) fn finish(self) -> Lines<F> {
        let LinesBuilder {
            mut dir,
            mut lines,
            mut values,
            ..
        } = self;
        dir.shrink_to_fit();
        lines.shrink_to_fit();
        values.shrink_to_fit();
        Lines { dir, lines, values }
    }

    /// The id of `value`: its index in the values (`None` past 65,536 distinct values) for
    /// formats with value ids, else the value itself.
    fn id(&mut self, value: u32) -> Option<u32> {
        if !F::INTERNED {
            return Some(value);
        }
        if let Some(&id) = self.ids.get(&value) {
            return Some(id);
        }
        let id = u16::try_from(self.values.len()).ok()?;
        self.values.push(value);
        self.ids.insert(value, u32::from(id));
        Some(u32::from(id))
    }

    /// Index the next pushed line gets.
    fn next_line(&self) -> u32 {
        u32::try_from(self.lines.len()).unwrap_or(u32::MAX)
    }

    /// The table of a region holding `bounds` (sorted unique keys, all at least 1, value ids,
    /// each differing from the one before), where id `carry` holds below the first key.
    fn region(&mut self, bounds: &[(u32, u32)], carry: u32) -> Table {
        let (Some(&(lo, _)), Some(&(hi, _))) = (bounds.first(), bounds.last()) else {
            return self.blank(carry);
        };
        if bounds.len() <= DIR_MAX {
            return self.line_table(bounds, carry);
        }
        // Evenly spread keys need no directory: one line table over them all saves lookups a
        // directory step, if it leaves as few keys in node lines as a region's table may and
        // is about as dense (else regions adapt to the keys better).
        let (flat, overflow) = self.shape(bounds);
        let lines = (flat.limit >> flat.shift) as usize + 1;
        #[allow(clippy::cast_precision_loss)]
        if overflow * 400 <= bounds.len() && lines as f64 * F::PER_LINE[2] <= bounds.len() as f64 {
            return self.fill(bounds, carry, flat);
        }
        #[allow(clippy::cast_precision_loss)]
        let count = slot_count(bounds.len(), DIR_SPAN as f64, DIR_SLOTS);
        let offset = self.dir.len();
        let table = Table::dir(lo, hi, count, offset);
        let count = table.slots();
        self.dir
            .extend(std::iter::repeat_n(Table::lines(0, 0, 1, 0), count));
        let mut carry = carry;
        let mut i = 0;
        for slot in 0..count {
            let mut end = i;
            while bounds.get(end).is_some_and(|&(k, _)| table.slot(k) == slot) {
                end += 1;
            }
            let run = bounds.get(i..end).unwrap_or(&[]);
            // Every run is shorter than `bounds` (the first key gets slot 0, the last a later
            // one), so the recursion ends.
            let sub = self.region(run, carry);
            if let Some(s) = self.dir.get_mut(offset + slot) {
                *s = sub;
            }
            carry = run.last().map_or(carry, |&(_, v)| v);
            i = end;
        }
        table
    }

    /// A line table of one blank line holding id `carry` (shared by consecutive calls).
    fn blank(&mut self, carry: u32) -> Table {
        if let Some((id, table)) = self.blank
            && id == carry
        {
            return table;
        }
        let table = Table::lines(0, 0, 1, self.next_line());
        self.lines.push(F::leaf(&[], &[carry]));
        self.blank = Some((carry, table));
        table
    }

    /// A table of lines over `bounds` (at least one key, all at least 1), from one below the
    /// first key (so that keys below the table, which get offset 0 of its first line, count
    /// none of its keys).
    fn line_table(&mut self, bounds: &[(u32, u32)], carry: u32) -> Table {
        let (table, _) = self.shape(bounds);
        self.fill(bounds, carry, table)
    }

    /// The shape of a line table over `bounds` (at least one key, all at least 1), from one
    /// below the first key, and how many keys it leaves in lines that need a node.
    fn shape(&self, bounds: &[(u32, u32)]) -> (Table, usize) {
        let (lo, hi) = match (bounds.first(), bounds.last()) {
            (Some(&(first, _)), Some(&(last, _))) => (first.saturating_sub(1), last),
            _ => (0, 0),
        };
        let offset = self.next_line();
        // The densest shape with at most 1/400 of the keys in lines that need a node, else
        // the one with the fewest such keys (the densest of those within 20% of the fewest: a
        // cluster of keys in one spot stays crowded however many lines there are, and nodes
        // take care of it).
        let mut shapes: Vec<(Table, usize)> = Vec::with_capacity(F::PER_LINE.len());
        for per_line in F::PER_LINE {
            let (shift, count) = line_shape(lo, hi, bounds.len(), per_line, F::LINE_BITS);
            let candidate = Table::lines(lo, shift, count.min(MAX_TABLE_LINES as u64), offset);
            let overflow = Self::overflow(&candidate, bounds);
            shapes.push((candidate, overflow));
            if overflow * 400 <= bounds.len() {
                break;
            }
        }
        let fewest = shapes.iter().map(|&(_, o)| o).min().unwrap_or(0);
        shapes
            .iter()
            .find(|&&(_, o)| o * 400 <= bounds.len() || o * 5 <= fewest * 6)
            .copied()
            .unwrap_or((Table::lines(lo, F::LINE_BITS, 1, offset), bounds.len()))
    }

    /// Fills the line table `table` (from [`LinesBuilder::shape`]) over `bounds`.
    fn fill(&mut self, bounds: &[(u32, u32)], carry: u32, table: Table) -> Table {
        let offset = table.offset;
        let count = (table.limit >> table.shift) as usize + 1;
        let base = offset as usize;
        self.lines
            .extend(std::iter::repeat_n(F::leaf(&[], &[carry]), count));
        let mut carry = carry;
        let mut i = 0;
        let mut offsets: Vec<(u32, u32)> = Vec::new();
        while let Some(&(first, _)) = bounds.get(i) {
            let (index, _) = table.line(first);
            offsets.clear();
            let mut end = i;
            while let Some(&(k, v)) = bounds.get(end) {
                let (at, offset) = table.line(k);
                if at != index {
                    break;
                }
                offsets.push((offset, v));
                end += 1;
            }
            let line = if offsets.len() <= F::LEAF_KEYS {
                Self::leaf(&offsets, carry)
            } else {
                self.node(&offsets, carry)
            };
            if let Some(slot) = self.lines.get_mut(index) {
                *slot = line;
            }
            carry = offsets.last().map_or(carry, |&(_, v)| v);
            // Lines between this run and the next hold no key: they carry the new value.
            let next = bounds
                .get(end)
                .map_or(base + count, |&(k, _)| table.line(k).0);
            let blank = F::leaf(&[], &[carry]);
            for slot in self
                .lines
                .iter_mut()
                .skip(index + 1)
                .take(next.saturating_sub(index + 1))
            {
                *slot = blank;
            }
            i = end;
        }
        table
    }

    /// Number of `bounds` in lines of `table` with more than `LEAF_KEYS` keys.
    fn overflow(table: &Table, bounds: &[(u32, u32)]) -> usize {
        let mut overflow = 0;
        let mut run = 0;
        let mut previous = None;
        for &(k, _) in bounds {
            let line = Some(table.line(k).0);
            if line == previous {
                run += 1;
            } else {
                if run > F::LEAF_KEYS {
                    overflow += run;
                }
                run = 1;
                previous = line;
            }
        }
        if run > F::LEAF_KEYS {
            overflow += run;
        }
        overflow
    }

    /// A node over `run` (offsets into one line and ids; id `carry` below the first): leaves
    /// of up to `LEAF_KEYS` keys (pushed now) under nodes of up to 8 children, up to one node, which
    /// is returned.
    fn node(&mut self, run: &[(u32, u32)], carry: u32) -> F::Line {
        // Each level keeps (first offset, line index) per line.
        let mut level: Vec<(u32, u32)> = Vec::new();
        let mut carry_here = carry;
        for part in run.chunks(F::LEAF_KEYS) {
            let index = self.next_line();
            self.lines.push(Self::leaf(part, carry_here));
            level.push((part.first().map_or(0, |&(k, _)| k), index));
            carry_here = part.last().map_or(carry_here, |&(_, v)| v);
        }
        loop {
            let nodes: Vec<(u32, F::Line)> = level
                .chunks(NODE_KEYS + 1)
                .map(|group| {
                    let separators: Vec<u32> = group.iter().skip(1).map(|&(k, _)| k).collect();
                    let children: Vec<u32> = group.iter().map(|&(_, i)| i).collect();
                    let first = group.first().map_or(0, |&(k, _)| k);
                    (first, F::node(&separators, &children))
                })
                .collect();
            if let [(_, node)] = nodes.as_slice() {
                return *node;
            }
            level = nodes
                .into_iter()
                .map(|(first, node)| {
                    let index = self.next_line();
                    self.lines.push(node);
                    (first, index)
                })
                .collect();
        }
    }

    /// A leaf over `run` (offsets and ids, at most `LEAF_KEYS`), with id `carry` below the first.
    fn leaf(run: &[(u32, u32)], carry: u32) -> F::Line {
        let offsets: Vec<u32> = run.iter().map(|&(k, _)| k).collect();
        let ids: Vec<u32> = std::iter::once(carry)
            .chain(run.iter().map(|&(_, v)| v))
            .collect();
        F::leaf(&offsets, &ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds the map; if it is built, checks it against the naive answer on `keys`.
    fn check(bounds: &[(u32, u32)], default: u32, keys: &[u32]) -> Option<LineMap> {
        let map = LineMap::build(bounds, default)?;
        for &k in keys {
            assert_eq!(map.get(k), value_at(bounds, default, k), "key {k}");
        }
        Some(map)
    }

    /// Every boundary, its neighbours, the extremes and `extra` random keys.
    fn probes(bounds: &[(u32, u32)], x: &mut u64, extra: usize) -> Vec<u32> {
        let mut keys: Vec<u32> = (0..extra).map(|_| xorshift(x) as u32).collect();
        for &(k, _) in bounds {
            keys.extend([k.wrapping_sub(1), k, k.wrapping_add(1)]);
        }
        keys.extend([0, 1, u32::MAX - 1, u32::MAX]);
        keys
    }

    fn xorshift(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    #[test]
    fn line_is_64_bytes() {
        assert_eq!(std::mem::size_of::<NarrowLine>(), 64);
        assert_eq!(std::mem::align_of::<NarrowLine>(), 64);
        assert_eq!(std::mem::size_of::<WideLine>(), 64);
        assert_eq!(std::mem::align_of::<WideLine>(), 64);
    }

    #[test]
    fn empty_single_and_extremes() {
        let keys = [0, 1, 6, 7, 8, u32::MAX - 1, u32::MAX];
        let m = check(&[], 5, &keys).unwrap();
        assert_eq!(m.line_count(), 1);
        check(&[(0, 3)], 5, &keys).unwrap();
        check(&[(0, 3), (1, 4)], 5, &keys).unwrap();
        check(&[(u32::MAX, 3)], 5, &keys).unwrap();
        check(&[(u32::MAX - 1, 3), (u32::MAX, 4)], 5, &keys).unwrap();
        check(&[(7, 3), (8, 4)], 5, &keys).unwrap();
    }

    #[test]
    fn a_few_keys_far_apart_are_refused_not_wrong() {
        // Two keys 2^32 apart would need 65,536 lines of 16-bit offsets.
        assert!(LineMap::build(&[(7, 3), (u32::MAX, 4)], 5).is_none());
    }

    #[test]
    fn equal_values_merge() {
        let m = check(
            &[(10, 1), (20, 1), (30, 0), (40, 1)],
            0,
            &[9, 10, 25, 30, 45],
        )
        .unwrap();
        assert_eq!(m.line_count(), 1);
    }

    #[test]
    fn unsorted_input_last_value_wins() {
        // (check() wants sorted input: this one is not.)
        let m = LineMap::build(&[(30, 3), (10, 1), (10, 2)], 0).unwrap();
        assert_eq!(m.get(10), 2);
        assert_eq!(m.get(35), 3);
    }

    #[test]
    fn too_many_distinct_values_is_refused() {
        let bounds: Vec<(u32, u32)> = (0..70_000).map(|i| (i * 10, i + 1)).collect();
        assert!(LineMap::build(&bounds, 0).is_none());
        let bounds: Vec<(u32, u32)> = (0..65_535).map(|i| (i * 10, i + 1)).collect();
        check(&bounds, 0, &[0, 5, 10, 654_339, 654_340, u32::MAX]).unwrap();
    }

    #[test]
    fn crowded_lines_use_nodes() {
        // 900 consecutive keys among 100 others spread over 2^20: one line table whose
        // crowded lines become B-trees.
        let mut bounds: Vec<(u32, u32)> = (0..900).map(|i| (500_000 + i, i % 3)).collect();
        bounds.extend((0..100).map(|i| (i * 10_000 + 3, 5 + i % 2)));
        bounds.sort_unstable();
        bounds.dedup_by_key(|b| b.0);
        let mut x = 7;
        let keys = probes(&bounds, &mut x, 1000);
        let map = check(&bounds, 9, &keys).unwrap();
        assert_eq!(map.dir_count(), 0);
        assert!(
            keys.iter().any(|&k| map.lines_read(k) >= 3),
            "expected a deep B-tree"
        );
    }

    #[test]
    fn dense_random_keys_are_built_and_agree() {
        let mut x = 0x1234_5678_9abc_def0;
        for round in 0..12 {
            let n = [20, 1000, 5000, 40_000][round % 4];
            // Keys over 2^22 .. 2^26 addresses, some in clusters.
            let range = 1u64 << (22 + round % 5);
            let mut bounds: Vec<(u32, u32)> = (0..n)
                .map(|i| {
                    let r = xorshift(&mut x);
                    let k = if i % 5 == 0 {
                        (r >> 8) % 4096 + 77_777
                    } else {
                        r % range
                    };
                    (k as u32, (r >> 40) as u32 % 7)
                })
                .collect();
            bounds.sort_unstable_by_key(|b| b.0);
            bounds.dedup_by_key(|b| b.0);
            let keys = probes(&bounds, &mut x, 3000);
            let map = check(&bounds, 9, &keys);
            // Built whenever 16-bit offsets need at most a line per two keys.
            let dense = range <= (n as u64) * (1 << 15);
            assert!(
                map.is_some() || !dense,
                "round {round}: {n} keys over {range}"
            );
        }
    }

    #[test]
    fn random_keys_anywhere_agree_when_built() {
        let mut x = 0x0bad_5eed;
        for round in 0..24 {
            let n = [0, 1, 2, 15, 16, 50, 1000, 5000][round % 8];
            let mut bounds: Vec<(u32, u32)> = (0..n)
                .map(|_| {
                    let r = xorshift(&mut x);
                    let k = if round % 2 == 0 {
                        r as u32
                    } else {
                        ((r as u32) & 0x0300_0000) | ((r >> 32) as u32 & 0xFFF)
                    };
                    (k, (r >> 40) as u32 % 5)
                })
                .collect();
            bounds.sort_unstable_by_key(|b| b.0);
            bounds.dedup_by_key(|b| b.0);
            let keys = probes(&bounds, &mut x, 2000);
            check(&bounds, 9, &keys);
        }
    }
}
