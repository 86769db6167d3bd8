//! `allowgate-bench decide`: the product's decision path at the policy stage (client IP,
//! `MAIL FROM`, the recipient's tenant), on the same data as `lookup`, beside the engine it
//! replaced, in the same run.
//!
//! ```text
//! cargo run --release -p allowgate-bench -- decide [--sizes 100000,1000000] [--rounds 5]
//!     [--queries 100000] [--staged-only]
//! ```
//!
//! Entries: 90% IP entries (the `lookup` data: IPv4 CIDRs and ranges, IPv6 CIDRs) and 10%
//! sender entries (addresses, `*@domain`, domains, `*.domains`); 85% allow / 10% block / 5%
//! ignore for IPs, 80% allow / 20% block for senders; one in five scoped to one of 100 tenants.
//! Queries: **hit** — the client IP inside a random entry, the recipient in that entry's tenant
//! (or any), and `MAIL FROM` an address of a sender entry half the time; **miss** — a client IP
//! no entry covers and a sender no entry names.
//!
//! Engines, each timed per decision (`Instant` around one call; the timer's own cost is
//! printed):
//! - **staged** (the product's path): `exemptions` → `decide` → the `X-Allowgate` header into
//!   a reused buffer, what the policy server does at RCPT;
//! - **evaluate** (new): the same plus the whole `Verdict` (explanations), what `check` prints;
//! - **baseline**: the previous engine's `evaluate()` (`allowgate-core-baseline`, a frozen copy),
//!   which built the whole verdict for every decision.
//!
//! Also per engine: `Snapshot::compile` time, the snapshot's heap bytes per entry (live bytes
//! after compiling, by the counting allocator), and allocations per decision. Every query's
//! action and bypass set must agree between the engines, or the run fails.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use allowgate_core::ipmap::IntervalMap;
use allowgate_core::{CheckResults, Context, PolicyConfig, Snapshot, decide, exemptions};
use allowgate_core_baseline as baseline;
use allowgate_types::{
    CheckId, CheckSet, Domain, DomainPattern, EmailAddress, EmailPattern, Entry, EntryId,
    EntryValue, IpRange, List, NewEntry, Scope, Tenant, TenantName,
};
use chrono::{DateTime, Utc};

use crate::alloc;
use crate::data::{self, Family, Rng};
use crate::median;

/// Tenants in the data.
const TENANTS: usize = 100;

struct Options {
    sizes: Vec<usize>,
    rounds: usize,
    queries: usize,
    /// Only the staged path, no checks (for profiling).
    staged_only: bool,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        sizes: vec![100_000, 1_000_000],
        rounds: 5,
        queries: 100_000,
        staged_only: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--staged-only" {
            o.staged_only = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |s: &str| crate::number(flag, s);
        match flag.as_str() {
            "--sizes" => o.sizes = value.split(',').map(number).collect::<Result<_, _>>()?,
            "--rounds" => o.rounds = number(value)?,
            "--queries" => o.queries = number(value)?,
            other => {
                return Err(format!(
                    "unknown flag {other}\nusage: allowgate-bench decide [--sizes 100000,1000000] \
                     [--rounds 5] [--queries 100000] [--staged-only]"
                ));
            }
        }
    }
    if o.rounds == 0 || o.queries == 0 || o.sizes.contains(&0) {
        return Err("sizes, rounds and queries must be positive".into());
    }
    Ok(o)
}

/// The generated world: tenants, entries, and what the queries need to know of them.
pub struct World {
    pub tenants: Vec<Tenant>,
    pub entries: Vec<Entry>,
    /// Each IP entry's range and tenant (`None` = global).
    ips: Vec<(data::Entry, Option<usize>)>,
    /// Each sender entry with a local part: its address and tenant.
    addresses: Vec<(String, Option<usize>)>,
}

fn tenant_name(t: usize) -> TenantName {
    TenantName::parse(&format!("t{t}")).unwrap_or_else(|e| panic!("{e}"))
}

/// Benchmark data is generated valid; a failure here is a bug in the generator.
fn valid<T, E: std::fmt::Debug>(r: Result<T, E>) -> T {
    r.unwrap_or_else(|e| panic!("benchmark data: {e:?}"))
}

fn new_entry(id: usize, list: List, scope: Option<usize>, value: EntryValue) -> Entry {
    let checks = if list == List::Allow {
        // Every check except blocklist, so that block entries keep blocking.
        let all = CheckId::ALL.len() - 1;
        let check = CheckId::ALL[id % all];
        CheckSet::one(if check == CheckId::Blocklist {
            CheckId::Spam
        } else {
            check
        })
    } else {
        CheckSet::EMPTY
    };
    Entry {
        id: EntryId(i64::try_from(id).unwrap_or(i64::MAX) + 1),
        entry: NewEntry {
            list,
            scope: scope.map_or(Scope::Global, |t| Scope::Tenant(tenant_name(t))),
            value,
            checks,
            comment: None,
            require_auth: false,
            internal: false,
            starts_at: None,
            expires_at: None,
            enabled: true,
        },
        created_at: Utc::now(),
        created_by: "bench".into(),
    }
}

/// `n` entries as described in the module documentation (deterministic).
pub fn world(n: usize, seed: u64) -> World {
    let tenants: Vec<Tenant> = (0..TENANTS)
        .map(|t| Tenant {
            name: tenant_name(t),
            domains: vec![valid(Domain::parse(&format!("t{t}.example")))],
        })
        .collect();
    let n_ip = n * 9 / 10;
    let mut rng = Rng::new(seed);
    let mut entries = Vec::with_capacity(n);
    let mut ips = Vec::with_capacity(n_ip);
    for (i, e) in data::entries(n_ip, seed).into_iter().enumerate() {
        let list = match i % 20 {
            0..17 => List::Allow,
            17 | 18 => List::Block,
            _ => List::Ignore,
        };
        let scope = (i % 5 == 4).then(|| rng.below(TENANTS as u64) as usize);
        let text = data::entry_text(&e);
        let (range, _) = valid(IpRange::parse(&text, true));
        entries.push(new_entry(entries.len(), list, scope, EntryValue::Ip(range)));
        ips.push((e, scope));
    }
    let mut addresses = Vec::new();
    for j in 0..n - n_ip {
        let list = if j % 5 == 4 { List::Block } else { List::Allow };
        let scope = (j % 5 == 3).then(|| rng.below(TENANTS as u64) as usize);
        let domain = format!("d{}.example", j / 4);
        let value = match j % 4 {
            0 => {
                let address = format!("u{j}@{domain}");
                addresses.push((address.clone(), scope));
                EntryValue::Email(valid(EmailPattern::parse(&address, false)).0)
            }
            1 => EntryValue::Email(valid(EmailPattern::parse(&format!("*@{domain}"), false)).0),
            2 => EntryValue::Domain(valid(DomainPattern::parse(&domain, false)).0),
            _ => EntryValue::Domain(valid(DomainPattern::parse(&format!("*.s.{domain}"), false)).0),
        };
        entries.push(new_entry(entries.len(), list, scope, value));
    }
    World {
        tenants,
        entries,
        ips,
        addresses,
    }
}

/// A query as both engines take it.
struct Query {
    ip: IpAddr,
    mail_from: EmailAddress,
    rcpt: EmailAddress,
}

fn recipient(rng: &mut Rng, tenant: Option<usize>) -> EmailAddress {
    let t = tenant.or_else(|| (!rng.percent(10)).then(|| rng.below(TENANTS as u64) as usize));
    let text = match t {
        Some(t) => format!("r{}@t{t}.example", rng.below(1000)),
        None => "r@elsewhere.test".to_string(),
    };
    valid(EmailAddress::parse(&text))
}

fn stranger(rng: &mut Rng) -> EmailAddress {
    valid(EmailAddress::parse(&format!(
        "x{}@miss{}.test",
        rng.below(1_000_000),
        rng.below(1_000_000)
    )))
}

fn hit_queries(world: &World, n: usize, seed: u64) -> Vec<Query> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let (e, tenant) = &world.ips[rng.below(world.ips.len() as u64) as usize];
            let ip = data::to_ip(e.family, rng.in_range(e.start, e.end));
            let mail_from = if rng.percent(50) && !world.addresses.is_empty() {
                let (a, _) = &world.addresses[rng.below(world.addresses.len() as u64) as usize];
                valid(EmailAddress::parse(a))
            } else {
                stranger(&mut rng)
            };
            Query {
                ip,
                mail_from,
                rcpt: recipient(&mut rng, *tenant),
            }
        })
        .collect()
}

fn miss_queries(world: &World, n: usize, seed: u64) -> Vec<Query> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for (i, (e, _)) in world.ips.iter().enumerate() {
        match e.family {
            Family::V4 => v4.push((e.start as u32, e.end as u32, i as u32)),
            Family::V6 => v6.push((e.start, e.end, i as u32)),
        }
    }
    let (v4, v6) = (IntervalMap::build(v4), IntervalMap::build(v6));
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n);
    let mut candidates = data::random_queries(n * 4, seed).into_iter();
    while out.len() < n {
        let Some(ip) = candidates.next() else { break };
        let covered = match ip {
            IpAddr::V4(a) => !v4.lookup(u32::from(a)).is_empty(),
            IpAddr::V6(a) => !v6.lookup(u128::from(a)).is_empty(),
        };
        if !covered {
            out.push(Query {
                ip,
                mail_from: stranger(&mut rng),
                rcpt: recipient(&mut rng, None),
            });
        }
    }
    out
}

/// One engine's figures over the rounds.
#[derive(Default)]
struct Samples {
    compile_ms: Vec<f64>,
    heap_bytes: i64,
    /// Heap bytes of the lookup structures alone (IP maps, name index, per-entry metadata for
    /// the new engine; IP interval and line maps for the previous one, which kept its name
    /// index in std hash maps it could not measure).
    index_bytes: usize,
    /// Per round: median and p99 ns of hit decisions, then of miss decisions.
    hit_median: Vec<f64>,
    hit_p99: Vec<f64>,
    miss_median: Vec<f64>,
    miss_p99: Vec<f64>,
    hit_allocs: f64,
    miss_allocs: f64,
}

/// Times `decide_one` once per query; returns (median ns, p99 ns, allocations per decision).
fn time_each<Q>(queries: &[Q], mut decide_one: impl FnMut(&Q) -> u64) -> (f64, f64, f64) {
    let mut ns: Vec<u64> = Vec::with_capacity(queries.len());
    // Warm-up pass: first touches of the snapshot's memory are not what is measured.
    for q in queries.iter().take(1000) {
        black_box(decide_one(q));
    }
    let allocs_before = alloc::allocations();
    for q in queries {
        let start = Instant::now();
        let r = decide_one(black_box(q));
        let elapsed = start.elapsed();
        black_box(r);
        ns.push(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    let allocs = alloc::allocations() - allocs_before;
    ns.sort_unstable();
    let at = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)] as f64;
    (at(0.5), at(0.99), allocs as f64 / queries.len() as f64)
}

fn record(samples: &mut Samples, hit: (f64, f64, f64), miss: (f64, f64, f64)) {
    samples.hit_median.push(hit.0);
    samples.hit_p99.push(hit.1);
    samples.hit_allocs = hit.2;
    samples.miss_median.push(miss.0);
    samples.miss_p99.push(miss.1);
    samples.miss_allocs = miss.2;
}

struct SizeReport {
    entries: usize,
    staged: Samples,
    evaluate: Samples,
    baseline: Samples,
    timer_ns: f64,
    disagreements: usize,
    checked: usize,
    hit_matched: f64,
}

fn new_contexts(queries: &[Query], now: DateTime<Utc>) -> Vec<Context> {
    queries
        .iter()
        .map(|q| {
            let mut c = Context::new(now, q.ip, vec![q.rcpt.clone()]);
            c.mail_from = Some(q.mail_from.clone());
            c
        })
        .collect()
}

fn old_contexts(queries: &[Query], now: DateTime<Utc>) -> Vec<baseline::Context> {
    queries
        .iter()
        .map(|q| {
            let mut c = baseline::Context::new(now, q.ip, vec![q.rcpt.clone()]);
            c.mail_from = Some(q.mail_from.clone());
            c
        })
        .collect()
}

/// The snapshot, its compile time and the heap bytes it holds: live bytes after compiling
/// minus before the entries were cloned for it (what it keeps of them counts, what it drops
/// does not).
fn compile_new(world: &World) -> (Snapshot, f64, i64) {
    let before = alloc::live_bytes();
    let entries = world.entries.clone();
    let start = Instant::now();
    let (snapshot, _) = Snapshot::compile(
        1,
        PolicyConfig::default(),
        &world.tenants,
        entries,
        &Default::default(),
    );
    let ms = start.elapsed().as_secs_f64() * 1e3;
    (snapshot, ms, alloc::live_bytes() - before)
}

/// [`compile_new`] for the previous engine.
fn compile_old(world: &World) -> (baseline::Snapshot, f64, i64) {
    let before = alloc::live_bytes();
    let entries = world.entries.clone();
    let start = Instant::now();
    let (snapshot, _) = baseline::Snapshot::compile(
        1,
        baseline::PolicyConfig::default(),
        &world.tenants,
        entries,
        &Default::default(),
    );
    let ms = start.elapsed().as_secs_f64() * 1e3;
    (snapshot, ms, alloc::live_bytes() - before)
}

fn run_size(n: usize, o: &Options) -> SizeReport {
    let seed = 0xDEC1_DE00_u64 ^ n as u64;
    eprintln!("[{n} entries] generating");
    let world = world(n, seed);
    let hits = hit_queries(&world, o.queries, seed + 1);
    let misses = miss_queries(&world, o.queries, seed + 2);
    let now = Utc::now();
    let (new_hit, new_miss) = (new_contexts(&hits, now), new_contexts(&misses, now));
    let (old_hit, old_miss) = (old_contexts(&hits, now), old_contexts(&misses, now));
    let results = CheckResults::new();
    let mut report = SizeReport {
        entries: n,
        staged: Samples::default(),
        evaluate: Samples::default(),
        baseline: Samples::default(),
        timer_ns: 0.0,
        disagreements: 0,
        checked: 0,
        hit_matched: 0.0,
    };
    let timer = time_each(&new_hit, |_| 0);
    report.timer_ns = timer.0;
    for round in 0..o.rounds {
        eprintln!("[{n} entries] round {}/{}", round + 1, o.rounds);
        {
            let (snapshot, ms, heap) = compile_new(&world);
            for s in [&mut report.staged, &mut report.evaluate] {
                s.compile_ms.push(ms);
                s.heap_bytes = heap;
                s.index_bytes = snapshot.index_heap_bytes();
            }
            let mut header = String::with_capacity(256);
            let mut staged = |c: &Context| {
                let found = exemptions(&snapshot, c);
                let d = decide(&found, &results);
                header.clear();
                // Infallible: writing into a String.
                let _ = d.write_header(&mut header);
                u64::from(d.bypassed().bits()) ^ header.len() as u64
            };
            let hit = time_each(&new_hit, &mut staged);
            let miss = time_each(&new_miss, &mut staged);
            record(&mut report.staged, hit, miss);
            if o.staged_only {
                continue;
            }
            let evaluate = |c: &Context| {
                let v = allowgate_core::evaluate(&snapshot, c);
                v.bypassed.len() as u64 + v.matched.len() as u64
            };
            let hit = time_each(&new_hit, evaluate);
            let miss = time_each(&new_miss, evaluate);
            record(&mut report.evaluate, hit, miss);
            if round == 0 {
                report.hit_matched = new_hit
                    .iter()
                    .filter(|c| !exemptions(&snapshot, c).is_empty())
                    .count() as f64
                    / new_hit.len() as f64;
                report.checked = new_hit.len() + new_miss.len();
                let (old_snapshot, _, _) = compile_old(&world);
                for (new, old) in new_hit
                    .iter()
                    .zip(&old_hit)
                    .chain(new_miss.iter().zip(&old_miss))
                {
                    let found = exemptions(&snapshot, new);
                    let d = decide(&found, &results);
                    let v = baseline::evaluate(&old_snapshot, old);
                    let old_bypass: CheckSet = v.bypassed.iter().copied().collect();
                    if d.bypassed() != old_bypass
                        || d.action().as_str() != format!("{:?}", v.action).to_lowercase()
                    {
                        report.disagreements += 1;
                    }
                }
            }
        }
        let (snapshot, ms, heap) = compile_old(&world);
        report.baseline.compile_ms.push(ms);
        report.baseline.heap_bytes = heap;
        report.baseline.index_bytes = snapshot.ip_heap_bytes();
        let old = |c: &baseline::Context| {
            let v = baseline::evaluate(&snapshot, c);
            v.bypassed.len() as u64 + v.matched.len() as u64
        };
        let hit = time_each(&old_hit, old);
        let miss = time_each(&old_miss, old);
        record(&mut report.baseline, hit, miss);
    }
    report
}

fn print(reports: &[SizeReport], o: &Options) {
    println!(
        "### Decision path (median of {} rounds; {} hit and {} miss queries per round, each \
         decision timed alone)\n",
        o.rounds, o.queries, o.queries
    );
    println!(
        "| entries | engine | hit median ns | hit p99 ns | miss median ns | miss p99 ns | \
         allocs/hit | allocs/miss | compile ms | heap B/entry | index B/entry | \
         baseline/this (hit median) | baseline/this (miss median) | baseline/this (compile) |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let base_hit = median(&r.baseline.hit_median);
        let base_miss = median(&r.baseline.miss_median);
        let base_ms = median(&r.baseline.compile_ms);
        for (name, s) in [
            ("**staged** (exemptions + decide + header)", &r.staged),
            ("evaluate (new, whole verdict)", &r.evaluate),
            ("baseline evaluate (previous engine)", &r.baseline),
        ] {
            let (hit, miss, ms) = (
                median(&s.hit_median),
                median(&s.miss_median),
                median(&s.compile_ms),
            );
            println!(
                "| {} | {name} | {hit:.0} | {:.0} | {miss:.0} | {:.0} | {:.2} | {:.2} | {ms:.0} | \
                 {:.1} | {:.1} | {:.2}× | {:.2}× | {:.2}× |",
                r.entries,
                median(&s.hit_p99),
                median(&s.miss_p99),
                s.hit_allocs,
                s.miss_allocs,
                s.heap_bytes as f64 / r.entries as f64,
                s.index_bytes as f64 / r.entries as f64,
                base_hit / hit,
                base_miss / miss,
                base_ms / ms,
            );
        }
    }
    println!("\n### Checks\n");
    println!(
        "| entries | hit queries where an entry matched | queries compared (action + bypass set) | disagreements | timer overhead ns (median, included above) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for r in reports {
        println!(
            "| {} | {:.1}% | {} | {} | {:.0} |",
            r.entries,
            r.hit_matched * 100.0,
            r.checked,
            r.disagreements,
            r.timer_ns
        );
    }
}

/// Runs the benchmark; `Err` on bad arguments or disagreement between the engines.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let reports: Vec<SizeReport> = o.sizes.iter().map(|&n| run_size(n, &o)).collect();
    print(&reports, &o);
    let disagreements: usize = reports.iter().map(|r| r.disagreements).sum();
    if disagreements > 0 {
        return Err(format!(
            "{disagreements} queries were decided differently by the two engines"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_agrees_and_hits() {
        let o = Options {
            sizes: vec![5_000],
            rounds: 1,
            queries: 2_000,
            staged_only: false,
        };
        let r = run_size(5_000, &o);
        assert_eq!(r.disagreements, 0);
        assert!(r.hit_matched > 0.9, "{}", r.hit_matched);
        assert_eq!(r.staged.miss_allocs, 0.0);
        assert!(r.staged.heap_bytes > 0 && r.baseline.heap_bytes > 0);
    }
}
