//! The compiled snapshot and the staged evaluation agree with a naive linear scan over the same
//! entries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use allowgate_core::{Context, PolicyConfig, Snapshot, evaluate, exemptions};
use allowgate_types::{
    CheckId, CheckSet, Domain, EmailAddress, Entry, EntryId, EntryKind, EntrySpec, EntryValue,
    List, parse_time,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

fn now() -> DateTime<Utc> {
    parse_time("2026-11-22T12:00:00Z").unwrap()
}

#[derive(Debug, Clone)]
enum Window {
    None,
    Expired,
    Future,
    Current,
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![6 => Just(Window::None), 1 => Just(Window::Expired), 1 => Just(Window::Future), 1 => Just(Window::Current)]
}

/// An IP entry value clustered in a small space so overlaps are common.
fn ip_value() -> impl Strategy<Value = String> {
    let v4_base = 0x0A00_0000u32;
    let v6_base: u128 = 0x2001_0db8 << 96;
    prop_oneof![
        (0u32..4096, 20u32..=32)
            .prop_map(move |(off, p)| format!("{}/{p}", Ipv4Addr::from(v4_base + off))),
        (0u32..4096, 0u32..300).prop_map(move |(off, len)| {
            let s = v4_base + off;
            format!("{}-{}", Ipv4Addr::from(s), Ipv4Addr::from(s + len))
        }),
        (0u32..4096).prop_map(move |off| format!("::ffff:{}", Ipv4Addr::from(v4_base + off))),
        (0u128..4096, 116u32..=128)
            .prop_map(move |(off, p)| format!("{}/{p}", Ipv6Addr::from(v6_base + off))),
        (0u128..4096, 0u128..300).prop_map(move |(off, len)| {
            let s = v6_base + off;
            format!("{}-{}", Ipv6Addr::from(s), Ipv6Addr::from(s + len))
        }),
    ]
}

fn query() -> impl Strategy<Value = IpAddr> {
    let v4_base = 0x0A00_0000u32;
    let v6_base: u128 = 0x2001_0db8 << 96;
    prop_oneof![
        (0u32..4400).prop_map(move |o| IpAddr::V4(Ipv4Addr::from(v4_base + o))),
        (0u32..4400).prop_map(move |o| IpAddr::V6(Ipv4Addr::from(v4_base + o).to_ipv6_mapped())),
        (0u128..4400).prop_map(move |o| IpAddr::V6(Ipv6Addr::from(v6_base + o))),
        any::<u32>().prop_map(|x| IpAddr::V4(Ipv4Addr::from(x))),
    ]
}

fn checks() -> impl Strategy<Value = CheckSet> {
    (1u32..(1 << 19)).prop_map(CheckSet::from_bits)
}

fn entry(id: i64, list: List, kind: EntryKind, value: &str, checks: CheckSet, w: &Window) -> Entry {
    let (starts_at, expires_at) = match w {
        Window::None => (None, None),
        Window::Expired => (None, Some(parse_time("2026-01-01").unwrap())),
        Window::Future => (Some(parse_time("2027-01-01").unwrap()), None),
        Window::Current => (
            Some(parse_time("2026-01-01").unwrap()),
            Some(parse_time("2027-01-01").unwrap()),
        ),
    };
    let spec = EntrySpec {
        list: Some(list),
        kind: Some(kind),
        value: value.into(),
        checks: (list == List::Allow).then_some(checks),
        starts_at,
        expires_at,
        force: true,
        ..Default::default()
    };
    let (entry, _) = spec.validate().unwrap();
    Entry {
        id: EntryId(id),
        entry,
        created_at: now(),
        created_by: "prop".into(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn ip_snapshot_agrees_with_linear_scan(
        items in proptest::collection::vec((ip_value(), checks(), window(), any::<bool>()), 0..60),
        queries in proptest::collection::vec(query(), 1..40),
    ) {
        let entries: Vec<Entry> = items.iter().enumerate().map(|(i, (v, c, w, block))| {
            let list = if *block { List::Block } else { List::Allow };
            entry(i as i64 + 1, list, EntryKind::Ip, v, *c, w)
        }).collect();
        let config = PolicyConfig::default();
        let (snapshot, _) = Snapshot::compile(1, config.clone(), &[], entries.clone(), &Default::default());
        for q in queries {
            let ctx = Context::new(now(), q, vec![EmailAddress::parse("x@example.com").unwrap()]);
            let verdict = evaluate(&snapshot, &ctx);
            let hits: Vec<&Entry> = entries.iter().filter(|e| {
                let EntryValue::Ip(r) = &e.entry.value else { return false };
                r.contains(q) && e.entry.is_active_at(now())
            }).collect();
            let want_bypass = hits.iter().filter(|e| e.entry.list == List::Allow)
                .fold(CheckSet::EMPTY, |acc, e| acc.union(e.entry.checks.resolve(config.never_bypass)));
            let want_ids: Vec<i64> = hits.iter().map(|e| e.id.0).collect();
            let got_ids: Vec<i64> = verdict.matched.iter().map(|m| m.id.0).collect();
            prop_assert_eq!(got_ids, want_ids, "query {}", q);
            let got_bypass: CheckSet = verdict.bypassed.iter().copied().collect();
            prop_assert_eq!(got_bypass, want_bypass, "query {}", q);
            prop_assert_eq!(bypass_at(&snapshot, q), want_bypass);
            let blocked = hits.iter().any(|e| e.entry.list == List::Block) && !want_bypass.contains(CheckId::Blocklist);
            prop_assert_eq!(!verdict.blocked_by.is_empty(), blocked);
        }
    }

    #[test]
    fn domain_snapshot_agrees_with_linear_scan(
        items in proptest::collection::vec((0usize..6, any::<bool>(), checks()), 0..20),
        queries in proptest::collection::vec(0usize..6, 1..10),
    ) {
        let names = ["example.com", "mail.example.com", "a.mail.example.com", "badexample.com", "example.org", "x.example.org"];
        let entries: Vec<Entry> = items.iter().enumerate().map(|(i, (n, sub, c))| {
            let value = if *sub { format!("*.{}", names[*n]) } else { names[*n].to_string() };
            entry(i as i64 + 1, List::Allow, EntryKind::Domain, &value, *c, &Window::None)
        }).collect();
        let (snapshot, _) = Snapshot::compile(1, PolicyConfig::default(), &[], entries.clone(), &Default::default());
        for q in queries {
            let from = EmailAddress::parse(&format!("u@{}", names[q])).unwrap();
            let mut ctx = Context::new(now(), "192.0.2.1".parse().unwrap(), vec![]);
            ctx.mail_from = Some(from.clone());
            let verdict = evaluate(&snapshot, &ctx);
            let want: Vec<i64> = entries.iter().filter(|e| match &e.entry.value {
                EntryValue::Domain(p) => p.matches(&Domain::parse(names[q]).unwrap()),
                _ => false,
            }).map(|e| e.id.0).collect();
            let got: Vec<i64> = verdict.matched.iter().map(|m| m.id.0).collect();
            prop_assert_eq!(got, want, "{}", from);
        }
    }
}

/// A deterministic xorshift for the larger, non-proptest cases below.
fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// IP allow entry number `i + 1` with `value`, one check to bypass and, one time in five each,
/// an expired or a current validity window, all chosen by the random `r`.
fn random_ip_allow(i: u64, value: &str, r: u64) -> Entry {
    let windows = [
        Window::None,
        Window::None,
        Window::None,
        Window::Expired,
        Window::Current,
    ];
    let checks = CheckSet::from_bits(1 << ((r >> 50) % 19));
    let w = &windows[(r >> 20) as usize % windows.len()];
    entry(i as i64 + 1, List::Allow, EntryKind::Ip, value, checks, w)
}

/// What stage one says is bypassed for a message from `q` with no recipient and no sender.
fn bypass_at(snapshot: &Snapshot, q: IpAddr) -> CheckSet {
    let ctx = Context::new(now(), q, vec![]);
    exemptions(snapshot, &ctx).bypass()
}

/// The snapshot of the IP allow `entries`, and the naive answer of [`bypass_at`] at `now()`:
/// the union of the bypass sets of the active entries covering an address.
fn compile_with_naive(entries: &[Entry]) -> (Snapshot, impl Fn(IpAddr) -> CheckSet) {
    let config = PolicyConfig::default();
    let (snapshot, _) = Snapshot::compile(
        1,
        config.clone(),
        &[],
        entries.to_vec(),
        &Default::default(),
    );
    let ranges: Vec<(allowgate_types::IpRange, CheckSet, bool)> = entries
        .iter()
        .map(|e| {
            let EntryValue::Ip(r) = &e.entry.value else {
                unreachable!()
            };
            let bypass = e.entry.checks.resolve(config.never_bypass);
            (*r, bypass, e.entry.is_active_at(now()))
        })
        .collect();
    let naive = move |q: IpAddr| {
        ranges
            .iter()
            .filter(|(range, _, active)| *active && range.contains(q))
            .fold(CheckSet::EMPTY, |acc, (_, bypass, _)| acc.union(*bypass))
    };
    (snapshot, naive)
}

/// Thousands of IPv4 entries, dense (all in 10.0.0.0/12) or spread over the whole space, some
/// windowed: stage one's bypass set equals the naive union at every probe.
#[test]
fn exemptions_agree_on_dense_and_sparse_ipv4() {
    for (seed, dense) in [(1u64, true), (2, false)] {
        let mut x = 0x9e37_79b9_7f4a_7c15 ^ seed;
        let mut entries = Vec::new();
        for i in 0..3000u64 {
            let r = xorshift(&mut x);
            let base = if dense {
                0x0A00_0000 | (r as u32 & 0x000F_FFFF)
            } else {
                r as u32
            };
            let value = match i % 3 {
                0 => format!("{}", Ipv4Addr::from(base)),
                1 => format!("{}/{}", Ipv4Addr::from(base), 20 + (r >> 40) % 13),
                _ => format!(
                    "{}-{}",
                    Ipv4Addr::from(base),
                    Ipv4Addr::from(base.saturating_add((r >> 32) as u32 % 5000))
                ),
            };
            entries.push(random_ip_allow(i, &value, r));
        }
        let (snapshot, naive) = compile_with_naive(&entries);
        for probe in 0..6000 {
            let r = xorshift(&mut x);
            let q = if probe % 2 == 0 {
                // Near an entry's start: inside, at or just outside its edges.
                let EntryValue::Ip(range) = &entries[r as usize % entries.len()].entry.value else {
                    unreachable!()
                };
                let allowgate_types::IpBounds::V4(start, _) = range.bounds() else {
                    unreachable!()
                };
                let delta = (r >> 32) as u32 % 300;
                IpAddr::V4(Ipv4Addr::from(start.wrapping_add(delta).wrapping_sub(2)))
            } else if dense {
                IpAddr::V4(Ipv4Addr::from(0x0A00_0000 | (r as u32 & 0x000F_FFFF)))
            } else {
                IpAddr::V4(Ipv4Addr::from(r as u32))
            };
            let want = naive(q);
            assert_eq!(bypass_at(&snapshot, q), want, "dense {dense} query {q}");
        }
    }
}

/// Thousands of IPv6 entries, most under a few `/32`s and the rest anywhere, of every size from
/// `/20` to single addresses, some ranges, some windowed: stage one's bypass set equals the
/// naive union at every probe, including IPv4-mapped addresses and `::/32`.
#[test]
fn exemptions_agree_on_ipv6() {
    let homes = [
        0x2001_0db8_u128 << 96,
        0x2a00_1450_u128 << 96,
        0x2606_4700_u128 << 96,
    ];
    let host_bits = |len: u32| u128::MAX.checked_shr(len).unwrap_or(0);
    let mut x = 0x5eed_1234_u64;
    let random = |x: &mut u64| u128::from(xorshift(x)) << 64 | u128::from(xorshift(x));
    let mut entries = Vec::new();
    for i in 0..4000u64 {
        let r = random(&mut x);
        let base = match i % 10 {
            0 => r,
            1 => r >> 96, // ::/32
            n => homes[n as usize % homes.len()] | (r >> 32),
        };
        let len = [128u32, 64, 56, 48, 128, 64, 40, 20, 100, 64][(r >> 7) as usize % 10];
        let start = base & !host_bits(len);
        let value = if i % 13 == 0 {
            let end = start.saturating_add(r >> 70);
            format!("{}-{}", Ipv6Addr::from(start), Ipv6Addr::from(end))
        } else {
            format!("{}/{len}", Ipv6Addr::from(start))
        };
        entries.push(random_ip_allow(i, &value, r as u64));
    }
    // Crowd one /64 with hosts.
    for j in 0..8u32 {
        let addr = homes[0] | 0x77_0000_0000_0000_0000 | u128::from(j * 3);
        entries.push(entry(
            5000 + i64::from(j),
            List::Allow,
            EntryKind::Ip,
            &format!("{}", Ipv6Addr::from(addr)),
            CheckSet::from_bits(1 << j),
            &Window::None,
        ));
    }
    let (snapshot, naive) = compile_with_naive(&entries);
    for probe in 0..12_000 {
        let r = random(&mut x);
        let q: u128 = match probe % 4 {
            0 | 1 => {
                // At, just before, just after or shortly inside an entry's ends.
                let EntryValue::Ip(range) = &entries[r as usize % entries.len()].entry.value else {
                    unreachable!()
                };
                let allowgate_types::IpBounds::V6(start, end) = range.bounds() else {
                    unreachable!()
                };
                let edge = if probe % 4 == 0 { start } else { end };
                edge.wrapping_add((r >> 100) % 5).wrapping_sub(2)
            }
            2 => homes[(r >> 3) as usize % homes.len()] | (r >> 64 << 32),
            _ => r,
        };
        let q = if probe % 97 == 0 {
            // An IPv4-mapped address: answered as IPv4 (no IPv4 entries here).
            IpAddr::V6(Ipv4Addr::from(q as u32).to_ipv6_mapped())
        } else {
            IpAddr::V6(Ipv6Addr::from(q))
        };
        assert_eq!(bypass_at(&snapshot, q), naive(q), "query {q}");
    }
}
