//! `allowgate-bench`: measures the IP hot path (`allowgate_core::ipmap::IntervalMap`) against
//! prefix-trie crates on the same deterministic data, in the same run.
//!
//! ```text
//! cargo run --release -p allowgate-bench -- lookup [--sizes 10000,100000,1000000] [--rounds 7]
//!     [--queries 1000000] [--ours-only]
//! ```
//!
//! For each size it generates a deterministic mixed entry set (see `data::entries`), builds
//! every structure once per round (timed), times a fixed batch of hit queries as independent
//! lookups (throughput) and as a dependent chain (latency), and checks that every structure
//! agrees with ours on which addresses are covered. Prints markdown tables to stdout (progress
//! goes to stderr); exits non-zero if any check fails. `--ours-only` skips the baselines and
//! the checks (for profiling).

mod alloc;
mod data;
mod decide_bench;
mod history_bench;
mod import_bench;
mod noop;
mod policy_bench;
mod postfix_bench;
mod rspamd;
mod serve_process;
mod structures;

/// Counts allocations and live heap bytes for `decide` (a relaxed atomic add per call).
#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

use std::hint::black_box;
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use data::{Entry, Family};
use structures::{IpTrie, LinearScan, MISS, NetworkTable, Ours, OursInput, PrefixInput};

/// Largest entry count for which the linear scan is measured.
const LINEAR_MAX_ENTRIES: usize = 10_000;
/// Queries the linear scan is timed on (it is far too slow for the whole batch).
const LINEAR_QUERIES: usize = 20_000;
/// Hit queries in the agreement check (plus as many random, mostly missing, addresses).
const CHECK_QUERIES: usize = 100_000;
/// Queries whose full label sets are compared with a linear scan.
const LABEL_CHECK_QUERIES: usize = 2_000;

/// Command-line options of `lookup`.
struct Options {
    sizes: Vec<usize>,
    rounds: usize,
    queries: usize,
    /// Only run ours (for profiling with `perf`).
    ours_only: bool,
}

fn usage() -> &'static str {
    "usage: allowgate-bench lookup [--sizes 10000,100000,1000000] [--rounds 7] [--queries 1000000] \
     [--ours-only]"
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        sizes: vec![10_000, 100_000, 1_000_000],
        rounds: 7,
        queries: 1_000_000,
        ours_only: false,
    };
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("lookup") => {}
        Some(other) => return Err(format!("unknown command {other:?}\n{}", usage())),
        None => return Err(usage().to_owned()),
    }
    while let Some(flag) = it.next() {
        if flag == "--ours-only" {
            options.ours_only = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let number = |s: &str| number(flag, s);
        match flag.as_str() {
            "--sizes" => {
                options.sizes = value.split(',').map(number).collect::<Result<_, _>>()?;
            }
            "--rounds" => options.rounds = number(value)?,
            "--queries" => options.queries = number(value)?,
            _ => return Err(format!("unknown option {flag:?}\n{}", usage())),
        }
    }
    if options.rounds == 0 || options.queries == 0 || options.sizes.contains(&0) {
        return Err("sizes, rounds and queries must be positive".to_owned());
    }
    Ok(options)
}

/// A count given to `flag` (`1_000_000` allowed).
fn number(flag: &str, s: &str) -> Result<usize, String> {
    s.trim()
        .replace('_', "")
        .parse::<usize>()
        .map_err(|e| format!("{flag}: bad number {s:?}: {e}"))
}

/// Times `lookup` over `queries`; returns ns per lookup and the number of hits.
fn time_lookups(queries: &[IpAddr], lookup: impl Fn(&IpAddr) -> u32) -> (f64, usize) {
    let start = Instant::now();
    let mut hits = 0usize;
    for q in queries {
        // Addresses are passed by reference, never copied: a copy of an `IpAddr` goes through
        // the stack, and reloading its 16-byte IPv6 payload from smaller stores defeats store
        // forwarding, which serialises the lookups (measured: +80-100 ns per IPv6 lookup).
        if black_box(lookup(black_box(q))) != MISS {
            hits += 1;
        }
    }
    let elapsed = start.elapsed();
    (
        elapsed.as_nanos() as f64 / queries.len() as f64,
        black_box(hits),
    )
}

/// Times `lookup` over `queries` as a dependent chain: which query comes next depends on the
/// previous result, so lookups cannot overlap. Returns ns per lookup (latency, not throughput).
fn time_chain(queries: &[IpAddr], lookup: impl Fn(&IpAddr) -> u32) -> f64 {
    // Never returned by a lookup in practice, but the compiler cannot know that.
    let never = black_box(u32::MAX - 1);
    let start = Instant::now();
    let mut i = 0usize;
    for _ in 0..queries.len() {
        let Some(q) = queries.get(i) else { break };
        let result = lookup(q);
        i += 1 + usize::from(result == never);
    }
    let elapsed = start.elapsed();
    black_box(i);
    elapsed.as_nanos() as f64 / queries.len() as f64
}

/// Runs `build` and returns its result with the elapsed time.
fn timed<T>(build: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let built = black_box(build());
    (built, start.elapsed())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Per-structure measurements over the rounds.
#[derive(Default)]
struct Samples {
    /// ns per lookup over the mixed batch, per round.
    lookup_ns: Vec<f64>,
    /// ns per lookup over the batch's IPv4 queries alone, per round.
    v4_ns: Vec<f64>,
    /// ns per lookup over the batch's IPv6 queries alone, per round.
    v6_ns: Vec<f64>,
    /// ns per lookup over the mixed batch as a dependent chain (latency), per round.
    chain_ns: Vec<f64>,
    build_ms: Vec<f64>,
}

/// The query batch, mixed and split by family.
struct Batches {
    mixed: Vec<IpAddr>,
    v4: Vec<IpAddr>,
    v6: Vec<IpAddr>,
}

/// Times the mixed batch, then each family alone, then the dependent chain; returns the mixed
/// batch's hits. An untimed pass over the mixed batch comes first, so that no structure pays
/// for first touches of freshly built memory.
fn measure(samples: &mut Samples, batches: &Batches, lookup: impl Fn(&IpAddr) -> u32) -> usize {
    black_box(time_lookups(&batches.mixed, &lookup));
    let (ns, hits) = time_lookups(&batches.mixed, &lookup);
    samples.lookup_ns.push(ns);
    samples.v4_ns.push(time_lookups(&batches.v4, &lookup).0);
    samples.v6_ns.push(time_lookups(&batches.v6, &lookup).0);
    samples.chain_ns.push(time_chain(&batches.mixed, &lookup));
    hits
}

/// Everything reported for one entry count.
struct SizeReport {
    entries: usize,
    v4_cidrs: usize,
    v4_ranges: usize,
    v6_cidrs: usize,
    overlap: f64,
    prefixes: usize,
    intervals: (usize, usize),
    sets: (usize, usize),
    heap_bytes: usize,
    queries: usize,
    ours: Samples,
    iptrie: Samples,
    table: Samples,
    linear: Option<Samples>,
    mismatches: Vec<(&'static str, usize, usize)>,
    missed_hits: usize,
}

/// Agreement on "some entry covers this address" between ours and a baseline.
fn count_mismatches(queries: &[IpAddr], ours: &Ours, baseline: impl Fn(&IpAddr) -> u32) -> usize {
    queries
        .iter()
        .filter(|&q| (ours.lookup(q) != MISS) != (baseline(q) != MISS))
        .count()
}

fn run_size(n: usize, options: &Options) -> SizeReport {
    let seed = 0xA110_6A7E_u64 ^ (n as u64);
    let entries: Vec<Entry> = data::entries(n, seed);
    let count = |f: Family, cidr: bool| {
        entries
            .iter()
            .filter(|e| e.family == f && e.prefix_len.is_some() == cidr)
            .count()
    };
    let ours_input = OursInput::new(&entries);
    let prefix_input = PrefixInput::new(&entries);
    let queries = data::hit_queries(&entries, options.queries, seed.wrapping_add(1));
    let linear_queries = &queries[..queries.len().min(LINEAR_QUERIES)];
    let batches = Batches {
        mixed: queries.clone(),
        v4: queries.iter().copied().filter(IpAddr::is_ipv4).collect(),
        v6: queries.iter().copied().filter(IpAddr::is_ipv6).collect(),
    };
    let mut check_queries: Vec<IpAddr> = queries[..queries.len().min(CHECK_QUERIES)].to_vec();
    check_queries.extend(data::random_queries(CHECK_QUERIES, seed.wrapping_add(2)));

    let mut report = SizeReport {
        entries: n,
        v4_cidrs: count(Family::V4, true),
        v4_ranges: count(Family::V4, false),
        v6_cidrs: count(Family::V6, true),
        overlap: data::overlap_fraction(&entries),
        prefixes: prefix_input.len(),
        intervals: (0, 0),
        sets: (0, 0),
        heap_bytes: 0,
        queries: queries.len(),
        ours: Samples::default(),
        iptrie: Samples::default(),
        table: Samples::default(),
        linear: (n <= LINEAR_MAX_ENTRIES).then(Samples::default),
        mismatches: Vec::new(),
        missed_hits: 0,
    };

    for round in 0..options.rounds {
        eprintln!("[{n} entries] round {}/{}", round + 1, options.rounds);
        let input = ours_input.clone();
        let (ours, build) = timed(|| Ours::build(input));
        report.ours.build_ms.push(build.as_secs_f64() * 1e3);
        let hits = measure(&mut report.ours, &batches, |q| ours.lookup(q));
        if options.ours_only {
            continue;
        }

        let (trie, build) = timed(|| IpTrie::build(&prefix_input));
        report.iptrie.build_ms.push(build.as_secs_f64() * 1e3);
        measure(&mut report.iptrie, &batches, |q| trie.lookup(q));

        let (table, build) = timed(|| NetworkTable::build(&prefix_input));
        report.table.build_ms.push(build.as_secs_f64() * 1e3);
        measure(&mut report.table, &batches, |q| table.lookup(q));

        let linear = report.linear.as_mut().map(|samples| {
            let (scan, build) = timed(|| LinearScan::build(&entries));
            samples.build_ms.push(build.as_secs_f64() * 1e3);
            let (ns, _) = time_lookups(linear_queries, |q| scan.lookup(q));
            samples.lookup_ns.push(ns);
            samples
                .chain_ns
                .push(time_chain(linear_queries, |q| scan.lookup(q)));
            scan
        });

        if round == 0 {
            report.intervals = (ours.v4.interval_count(), ours.v6.interval_count());
            report.sets = (ours.v4.multi_set_count(), ours.v6.multi_set_count());
            report.heap_bytes = ours.heap_bytes();
            report.missed_hits = queries.len() - hits;
            let sample = check_queries.len();
            report.mismatches.push((
                "iptrie",
                sample,
                count_mismatches(&check_queries, &ours, |q| trie.lookup(q)),
            ));
            report.mismatches.push((
                "ip_network_table",
                sample,
                count_mismatches(&check_queries, &ours, |q| table.lookup(q)),
            ));
            if let Some(scan) = &linear {
                report.mismatches.push((
                    "linear scan",
                    sample,
                    count_mismatches(&check_queries, &ours, |q| scan.lookup(q)),
                ));
            }
            // Full label sets against the reference, on a stride of hits and misses.
            let stride = (check_queries.len() / LABEL_CHECK_QUERIES).max(1);
            let label_sample: Vec<IpAddr> = check_queries.iter().step_by(stride).copied().collect();
            let wrong_sets = label_sample
                .iter()
                .filter(|&&q| ours.labels(q) != LinearScan::labels(&entries, q))
                .count();
            report.mismatches.push((
                "linear scan, full label sets",
                label_sample.len(),
                wrong_sets,
            ));
        }
    }
    report
}

fn print_reports(reports: &[SizeReport], options: &Options) {
    println!("### Data\n");
    println!(
        "| entries | IPv4 CIDRs | IPv4 ranges | IPv6 CIDRs | overlapping entries | \
         prefixes for baselines | our elementary intervals (v4 + v6) | our interned sets of 2+ labels |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        println!(
            "| {} | {} | {} | {} | {:.1}% | {} | {} + {} | {} |",
            r.entries,
            r.v4_cidrs,
            r.v4_ranges,
            r.v6_cidrs,
            r.overlap * 100.0,
            r.prefixes,
            r.intervals.0,
            r.intervals.1,
            r.sets.0 + r.sets.1,
        );
    }

    println!(
        "\n### Results (median of {} rounds; {} hit queries per round, linear scan timed on the \
         first {})\n",
        options.rounds,
        reports.first().map_or(0, |r| r.queries),
        LINEAR_QUERIES,
    );
    println!(
        "| entries | structure | ns/lookup | baseline/ours | ns/lookup, dependent chain | \
         baseline/ours | build ms | baseline/ours | heap B/entry |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in reports {
        let ours_ns = median(&r.ours.lookup_ns);
        let ours_chain = median(&r.ours.chain_ns);
        let ours_ms = median(&r.ours.build_ms);
        println!(
            "| {} | **allowgate IntervalMap** | {ours_ns:.1} | 1.00× | {ours_chain:.1} | 1.00× | \
             {ours_ms:.1} | 1.00× | {:.1} |",
            r.entries,
            r.heap_bytes as f64 / r.entries as f64,
        );
        let mut rows = vec![
            ("iptrie LCTrieMap", &r.iptrie),
            ("ip_network_table", &r.table),
        ];
        if let Some(linear) = &r.linear {
            rows.push(("linear scan", linear));
        }
        for (name, samples) in rows {
            let ns = median(&samples.lookup_ns);
            let chain = median(&samples.chain_ns);
            let ms = median(&samples.build_ms);
            println!(
                "| {} | {name} | {ns:.1} | {:.2}× | {chain:.1} | {:.2}× | {ms:.1} | {:.2}× | n/a |",
                r.entries,
                ns / ours_ns,
                chain / ours_chain,
                ms / ours_ms,
            );
        }
    }

    println!("\n### Lookup by address family (same batch split; median ns/lookup)\n");
    println!(
        "| entries | structure | IPv4 ns | IPv6 ns | IPv4: baseline/ours | IPv6: baseline/ours |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for r in reports {
        let (v4, v6) = (median(&r.ours.v4_ns), median(&r.ours.v6_ns));
        println!(
            "| {} | **allowgate IntervalMap** | {v4:.1} | {v6:.1} | 1.00× | 1.00× |",
            r.entries
        );
        for (name, samples) in [
            ("iptrie LCTrieMap", &r.iptrie),
            ("ip_network_table", &r.table),
        ] {
            let (b4, b6) = (median(&samples.v4_ns), median(&samples.v6_ns));
            println!(
                "| {} | {name} | {b4:.1} | {b6:.1} | {:.2}× | {:.2}× |",
                r.entries,
                b4 / v4,
                b6 / v6
            );
        }
    }

    println!("\n### Agreement (\"ours has a non-empty set\" iff \"baseline finds a match\")\n");
    println!("| entries | compared with | queries checked | mismatches |");
    println!("|---:|---|---:|---:|");
    for r in reports {
        for (name, sample, mismatches) in &r.mismatches {
            println!("| {} | {} | {} | {} |", r.entries, name, sample, mismatches);
        }
        println!(
            "| {} | hit batch: queries ours missed | {} | {} |",
            r.entries, r.queries, r.missed_hits
        );
    }
    println!(
        "\nns/lookup: independent lookups over the batch (throughput; the CPU overlaps their \
         cache misses). Dependent chain: each lookup chooses the next query, so nothing overlaps \
         (latency). Baselines only store prefixes: IPv4 ranges are decomposed into CIDRs for them \
         (outside the timed build), so they hold more items than there are entries. The \
         linear scan stops at the first matching entry; the others find every covering entry \
         (ours) or the longest matching prefix (tries). Heap bytes are only measured for ours."
    );
}

/// A subcommand other than `lookup`: its arguments in, an error message out.
type Subcommand = fn(&[String]) -> Result<(), String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sub: Option<Subcommand> = match args.first().map(String::as_str) {
        Some("import") => Some(import_bench::run),
        Some("decide") => Some(decide_bench::run),
        Some("policy") => Some(policy_bench::run),
        Some("history") => Some(history_bench::run),
        Some("postfix") => Some(postfix_bench::run),
        _ => None,
    };
    if let Some(run) = sub {
        return match run(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => {
                eprintln!("{message}");
                ExitCode::FAILURE
            }
        };
    }
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let reports: Vec<SizeReport> = options
        .sizes
        .iter()
        .map(|&n| run_size(n, &options))
        .collect();
    print_reports(&reports, &options);
    let failed = reports
        .iter()
        .any(|r| r.missed_hits > 0 || r.mismatches.iter().any(|m| m.2 > 0));
    if failed {
        eprintln!("correctness check FAILED: see the agreement table");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn parses_defaults_and_options() {
        let o = parse_args(&args("lookup")).unwrap();
        assert_eq!(o.sizes, vec![10_000, 100_000, 1_000_000]);
        assert_eq!((o.rounds, o.queries, o.ours_only), (7, 1_000_000, false));
        let o = parse_args(&args("lookup --sizes 1_000,20 --rounds 3 --ours-only")).unwrap();
        assert_eq!((o.sizes, o.rounds, o.ours_only), (vec![1_000, 20], 3, true));
        assert!(parse_args(&args("lookup --rounds")).is_err());
        assert!(parse_args(&args("lookup --rounds 0")).is_err());
        assert!(parse_args(&args("lookup --bogus 1")).is_err());
        assert!(parse_args(&args("build")).is_err());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn small_run_agrees_everywhere() {
        let options = Options {
            sizes: vec![3_000],
            rounds: 1,
            queries: 5_000,
            ours_only: false,
        };
        let report = run_size(3_000, &options);
        assert_eq!(report.missed_hits, 0);
        assert!(report.mismatches.len() >= 4);
        for (name, checked, mismatches) in &report.mismatches {
            assert!(*checked > 0, "{name}");
            assert_eq!(*mismatches, 0, "{name}");
        }
    }

    #[test]
    fn data_is_deterministic_and_well_formed() {
        let a = data::entries(5_000, 42);
        let b = data::entries(5_000, 42);
        assert_eq!(a.len(), 5_000);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (x.family, x.start, x.end, x.prefix_len),
                (y.family, y.start, y.end, y.prefix_len)
            );
            assert!(x.start <= x.end);
            if x.family == Family::V4 {
                assert!(x.end <= u128::from(u32::MAX));
            }
            if let Some(len) = x.prefix_len {
                let bits = if x.family == Family::V4 { 32 } else { 128 };
                let host = u128::MAX
                    .checked_shr(128 - bits + u32::from(len))
                    .unwrap_or(0);
                assert_eq!(x.start & host, 0, "{x:?}");
                assert_eq!(x.end - x.start, host, "{x:?}");
            }
        }
        let overlap = data::overlap_fraction(&a);
        assert!((0.05..0.25).contains(&overlap), "{overlap}");
    }

    #[test]
    fn ranges_decompose_into_exactly_covering_prefixes() {
        let entries = data::entries(2_000, 7);
        let prefixes = PrefixInput::new(&entries);
        for (label, e) in entries.iter().enumerate() {
            if e.family != Family::V4 || e.prefix_len.is_some() {
                continue;
            }
            let mut nets: Vec<(u128, u128)> = prefixes
                .v4
                .iter()
                .filter(|p| p.2 as usize == label)
                .map(|&(addr, len, _)| {
                    let start = u128::from(u32::from(addr));
                    (start, start + (1u128 << (32 - u32::from(len))) - 1)
                })
                .collect();
            nets.sort_unstable();
            assert_eq!(nets.first().map(|n| n.0), Some(e.start));
            assert_eq!(nets.last().map(|n| n.1), Some(e.end));
            assert!(nets.windows(2).all(|w| w[0].1 + 1 == w[1].0));
        }
    }
}
