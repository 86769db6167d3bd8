//! Property tests: [`IntervalMap`] agrees with a naive linear scan over the input items.

use allowgate_core::ipmap::{IntervalKey, IntervalMap};
use proptest::prelude::*;

/// Labels of all items containing `key`, sorted and deduplicated.
fn naive<K: IntervalKey>(items: &[(K, K, u32)], key: K) -> Vec<u32> {
    let mut labels: Vec<u32> = items
        .iter()
        .filter(|&&(start, end, _)| start <= key && key <= end)
        .map(|&(_, _, label)| label)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// Checks every query plus the boundaries (start-1, start, end, end+1) of every item.
fn agrees<K: IntervalKey>(
    items: &[(K, K, u32)],
    queries: &[K],
    step: impl Fn(K, bool) -> Option<K>,
) -> Result<(), TestCaseError> {
    let map = IntervalMap::build(items.to_vec());
    let mut keys = queries.to_vec();
    for &(start, end, _) in items {
        keys.extend(
            [Some(start), step(start, false), Some(end), step(end, true)]
                .into_iter()
                .flatten(),
        );
    }
    for key in keys {
        prop_assert_eq!(map.lookup(key).to_vec(), naive(items, key), "key {:?}", key);
    }
    // Every set is sorted and deduplicated.
    for key in queries {
        let labels = map.lookup(*key);
        prop_assert!(labels.windows(2).all(|w| w[0] < w[1]));
    }
    Ok(())
}

fn step_u32(k: u32, up: bool) -> Option<u32> {
    if up {
        k.checked_add(1)
    } else {
        k.checked_sub(1)
    }
}

fn step_u128(k: u128, up: bool) -> Option<u128> {
    if up {
        k.checked_add(1)
    } else {
        k.checked_sub(1)
    }
}

/// Items inside a small window so that they overlap a lot, plus a few anywhere (including the
/// extremes of the key space).
fn items_u32() -> impl Strategy<Value = Vec<(u32, u32, u32)>> {
    let clustered = (0u32..2_000, 0u32..300, 0u32..40).prop_map(|(s, len, label)| {
        let start = 1_000_000 + s;
        (start, start + len, label)
    });
    let anywhere =
        (any::<u32>(), any::<u32>(), 0u32..40).prop_map(|(a, b, l)| (a.min(b), a.max(b), l));
    let extremes = prop_oneof![
        Just((0u32, u32::MAX, 90u32)),
        Just((u32::MAX - 5, u32::MAX, 91)),
        Just((0, 5, 92)),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| (a, b, 93)), // often start > end
    ];
    prop::collection::vec(
        prop_oneof![8 => clustered, 2 => anywhere, 1 => extremes],
        0..120,
    )
}

/// IPv6-like items: prefixes and ranges under a few /32s, so tables need sub-tables.
fn items_u128() -> impl Strategy<Value = Vec<(u128, u128, u32)>> {
    let prefixes = [
        0x2001_0db8_u128 << 96,
        0x2a00_1450_u128 << 96,
        0x2606_4700_u128 << 96,
    ];
    let cidr =
        (0usize..3, any::<u128>(), 32u32..=128, 0u32..60).prop_map(move |(p, bits, len, label)| {
            let host_mask = u128::MAX.checked_shr(len).unwrap_or(0);
            let start = (prefixes[p] | (bits & ((1u128 << 96) - 1))) & !host_mask;
            let end = start | host_mask;
            (start, end, label)
        });
    let near =
        (0usize..3, 0u128..5_000, 0u128..800, 0u32..60).prop_map(move |(p, s, len, label)| {
            let start = prefixes[p] + s;
            (start, start + len, label)
        });
    let anywhere =
        (any::<u128>(), any::<u128>(), 0u32..60).prop_map(|(a, b, l)| (a.min(b), a.max(b), l));
    let extremes = prop_oneof![
        Just((0u128, u128::MAX, 90u32)),
        Just((u128::MAX, u128::MAX, 91)),
        Just((0, 0, 92)),
    ];
    prop::collection::vec(
        prop_oneof![4 => cidr, 5 => near, 1 => anywhere, 1 => extremes],
        0..150,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn u32_map_agrees_with_linear_scan(
        items in items_u32(),
        near in prop::collection::vec(999_000u32..1_003_500, 0..100),
        far in prop::collection::vec(any::<u32>(), 0..20),
    ) {
        let queries: Vec<u32> = near.into_iter().chain(far).chain([0, u32::MAX]).collect();
        agrees(&items, &queries, step_u32)?;
    }

    #[test]
    fn u128_map_agrees_with_linear_scan(
        items in items_u128(),
        offsets in prop::collection::vec((0usize..3, 0u128..6_000), 0..100),
        far in prop::collection::vec(any::<u128>(), 0..20),
    ) {
        let prefixes = [
            0x2001_0db8_u128 << 96,
            0x2a00_1450_u128 << 96,
            0x2606_4700_u128 << 96,
        ];
        let queries: Vec<u128> = offsets
            .into_iter()
            .map(|(p, o)| prefixes[p] + o)
            .chain(far)
            .chain([0, u128::MAX])
            .collect();
        agrees(&items, &queries, step_u128)?;
    }

    #[test]
    fn many_small_u32_items_use_sub_tables_correctly(
        starts in prop::collection::vec((0u32..1 << 16, 0u32..4), 50..600),
    ) {
        // Dense small intervals in a 64 Ki window: crowded buckets and deep sub-tables.
        let items: Vec<(u32, u32, u32)> = starts
            .iter()
            .enumerate()
            .map(|(i, &(s, len))| (0xC0A8_0000 + s, 0xC0A8_0000 + s + len, u32::try_from(i).unwrap_or(0)))
            .collect();
        let queries: Vec<u32> = (0..2_000u32).map(|i| 0xC0A8_0000 + i * 33).collect();
        agrees(&items, &queries, step_u32)?;
    }
}
