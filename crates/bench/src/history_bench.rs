//! `allowgate-bench history`: the email history on a real SQLite file, through the store's API.
//!
//! ```text
//! cargo run --release -p allowgate-bench -- history [--rows 1000000] [--batch 500]
//!     [--write 10000] [--runs 7] [--dir DIR]
//! ```
//!
//! 1. **Write, empty table**: `--write` records in batches of `--batch` into a fresh file,
//!    each batch timed (`Store::record_history`: one transaction, multi-row inserts, the
//!    `entry_hits` upserts).
//! 2. **Fill** the file to `--rows` records (the same way, timed as a whole), then `ANALYZE`.
//! 3. **Write, full table**: step 1 again on top of `--rows` records.
//! 4. **Queries** (`Store::history`, limit 100), each run `--runs` times: median and slowest,
//!    with the rows it selects (`COUNT(*)`) and SQLite's plan. For the CIDR filters, the
//!    store's two-step query against one step over the same index and against no address
//!    index at all (newest first over the time index, testing every row): the plan a
//!    text-only client IP column leaves.
//! 5. **Admin changes during history writes**: `add_entry` timed while a writer writes
//!    batches back to back (how long history writes hold admin changes up).
//! 6. **Purge** of the oldest 10% of rows, while a writer keeps writing batches: the purge's
//!    time and the slowest batch meanwhile (how long a purge holds history writes up).
//!
//! Data (deterministic): 30 days of decisions in time order; 20,000 client hosts (10% IPv6),
//! half the traffic from the 200 busiest; 100,000 senders at 10,000 domains (a quarter below
//! a subdomain), half the traffic from the 1,000 busiest; statuses 70% pass, 15% clean, 5%
//! spam, 4% blocked, 3% greylisted, 2% rejected, 1% quarantined; 100 tenants and 10% none;
//! 1–3 recipients; every check's outcome (19), as a verdict carries them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use allowgate_store::{HistoryFilter, HistoryMatch, HistoryRecord, Store};
use allowgate_types::CheckId;
use chrono::{DateTime, TimeZone, Utc};

use crate::data::Rng;
use crate::median;

struct Options {
    rows: usize,
    batch: usize,
    write: usize,
    runs: usize,
    dir: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        rows: 1_000_000,
        batch: 500,
        write: 10_000,
        runs: 7,
        dir: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => o.rows = crate::number(flag, value)?,
            "--batch" => o.batch = crate::number(flag, value)?,
            "--write" => o.write = crate::number(flag, value)?,
            "--runs" => o.runs = crate::number(flag, value)?,
            "--dir" => o.dir = Some(PathBuf::from(value)),
            other => {
                return Err(format!(
                    "unknown flag {other}\nusage: allowgate-bench history [--rows 1000000] \
                     [--batch 500] [--write 10000] [--runs 7] [--dir DIR]"
                ));
            }
        }
    }
    if o.batch == 0 || o.runs == 0 || o.rows < 10 {
        return Err("--batch and --runs must be positive, --rows at least 10".into());
    }
    Ok(o)
}

/// The generated traffic: who sends, from where.
struct Traffic {
    rng: Rng,
    hosts: Vec<IpAddr>,
    senders: Vec<String>,
    start: DateTime<Utc>,
    /// Microseconds between two records.
    step: i64,
    next: i64,
}

const DAYS: i64 = 30;
const HOSTS: usize = 20_000;
const BUSY_HOSTS: usize = 200;
const SENDERS: usize = 100_000;
const BUSY_SENDERS: usize = 1_000;
const DOMAINS: u64 = 10_000;
const TENANTS: u64 = 100;

impl Traffic {
    fn new(rows: usize) -> Traffic {
        let mut rng = Rng::new(20_261_201);
        let hosts = (0..HOSTS)
            .map(|i| {
                if i % 10 == 9 {
                    let net = 0x2001_0db8_u128 << 96 | u128::from(rng.below(500)) << 80;
                    IpAddr::V6(Ipv6Addr::from(net | u128::from(rng.next_u64())))
                } else {
                    // 400 /16 networks, as mail comes from a few providers' ranges.
                    let net = (rng.between(11, 223) << 24) | (rng.between(0, 1) << 16);
                    let net = net ^ ((rng.below(200) as u32) << 16);
                    IpAddr::V4(Ipv4Addr::from(net | (rng.next_u32() & 0xffff)))
                }
            })
            .collect();
        let senders = (0..SENDERS)
            .map(|i| {
                let domain = rng.below(DOMAINS);
                if domain.is_multiple_of(4) {
                    format!("u{i}@mail.d{domain}.example")
                } else {
                    format!("u{i}@d{domain}.example")
                }
            })
            .collect();
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single();
        Traffic {
            rng,
            hosts,
            senders,
            start: start.unwrap_or_default(),
            step: (DAYS * 86_400 * 1_000_000 / rows.max(1) as i64).max(1),
            next: 0,
        }
    }

    /// Half from the busy few, half from everyone.
    fn skewed(&mut self, all: usize, busy: usize) -> usize {
        if self.rng.percent(50) {
            self.rng.below(busy as u64) as usize
        } else {
            self.rng.below(all as u64) as usize
        }
    }

    fn record(&mut self) -> HistoryRecord {
        let time = self.start + chrono::Duration::microseconds(self.next * self.step);
        self.next += 1;
        let host_index = self.skewed(HOSTS, BUSY_HOSTS);
        let host = self.hosts[host_index];
        let sender_index = self.skewed(SENDERS, BUSY_SENDERS);
        let sender = self.senders[sender_index].clone();
        let (status, action) = match self.rng.below(100) {
            0..70 => ("pass", "accept"),
            70..85 => ("clean", "accept"),
            85..90 => ("spam", "tag"),
            90..94 => ("blocked", "reject"),
            94..97 => ("greylisted", "defer"),
            97..99 => ("rejected", "reject"),
            _ => ("quarantined", "quarantine"),
        };
        let tenant = self.rng.below(TENANTS + TENANTS / 9);
        let tenant = (tenant < TENANTS).then(|| format!("tenant{tenant}"));
        let recipients = (0..self.rng.between(1, 3))
            .map(|i| format!("user{i}@{}.example", tenant.as_deref().unwrap_or("other")))
            .collect();
        let mut matched = Vec::new();
        let mut bypassed = Vec::new();
        if status == "clean" {
            let id = 1 + self.rng.below(5_000) as i64;
            matched.push(HistoryMatch {
                id,
                list: "allow".into(),
                kind: "ip".into(),
                value: format!("{host}"),
                scope: "global".into(),
                checks: vec!["spf".into(), "rbl".into()],
                matched_on: format!("client ip {host}"),
                applied: true,
            });
            bypassed = vec!["spf".into(), "rbl".into()];
        } else if status == "blocked" {
            let id = 5_001 + self.rng.below(1_000) as i64;
            matched.push(HistoryMatch {
                id,
                list: "block".into(),
                kind: "domain".into(),
                value: sender.rsplit('@').next().unwrap_or_default().to_string(),
                scope: "global".into(),
                checks: vec![],
                matched_on: format!("sender {sender} (MAIL FROM)"),
                applied: true,
            });
        }
        let checks: BTreeMap<String, String> = CheckId::ALL
            .iter()
            .map(|c| {
                let outcome = if bypassed.iter().any(|b| b == c.id()) {
                    "bypassed"
                } else {
                    "not_run"
                };
                (c.id().to_string(), outcome.to_string())
            })
            .collect();
        let reason = match (status, matched.first()) {
            ("clean", Some(m)) => format!("Clean: exempted by entry #{}", m.id),
            ("blocked", Some(m)) => format!("Blocked: blocked by entry #{}", m.id),
            _ => {
                let mut title = status.to_string();
                title[..1].make_ascii_uppercase();
                title
            }
        };
        HistoryRecord {
            time,
            node: "gw1".into(),
            queue_id: Some(format!("{:X}", self.rng.next_u64() >> 20)),
            tenant,
            client_ip: host.to_string(),
            sender: Some(sender),
            sender_source: Some("MAIL FROM".into()),
            recipients,
            status: status.into(),
            action: action.into(),
            stage: "message".into(),
            bypassed,
            matched,
            checks,
            reason,
            revision: 7,
        }
    }

    fn batch(&mut self, n: usize) -> Vec<HistoryRecord> {
        (0..n).map(|_| self.record()).collect()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Writes `n` records in batches; returns each batch's time.
async fn write(
    store: &Store,
    traffic: &mut Traffic,
    n: usize,
    batch: usize,
) -> Result<Vec<Duration>, String> {
    let mut times = Vec::with_capacity(n / batch + 1);
    let mut left = n;
    while left > 0 {
        let records = traffic.batch(left.min(batch));
        left -= records.len();
        let start = Instant::now();
        store
            .record_history(&records)
            .await
            .map_err(|e| format!("record_history: {e}"))?;
        times.push(start.elapsed());
    }
    Ok(times)
}

fn write_row(what: &str, n: usize, batch: usize, times: &[Duration]) -> String {
    let total: Duration = times.iter().sum();
    let per: Vec<f64> = times.iter().map(|d| ms(*d)).collect();
    let mut sorted = per.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get((sorted.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN);
    format!(
        "| {what} | {n} | {batch} | {:.1} | {:.2} | {p99:.2} | {:.2} | {:.0} |",
        ms(total),
        median(&per),
        sorted.last().copied().unwrap_or(f64::NAN),
        n as f64 / total.as_secs_f64()
    )
}

/// A query of the table: the filter, and the same selection in SQL (for its count and plan).
struct Query {
    name: String,
    filter: HistoryFilter,
}

async fn time_query(
    store: &Store,
    filter: &HistoryFilter,
    runs: usize,
) -> Result<(f64, f64, usize), String> {
    let mut times = Vec::with_capacity(runs);
    let mut found = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let records = store
            .history(filter)
            .await
            .map_err(|e| format!("history: {e}"))?;
        times.push(ms(start.elapsed()));
        found = records.len();
    }
    let slowest = times.iter().copied().fold(0.0, f64::max);
    Ok((median(&times), slowest, found))
}

/// SQL helpers over a second connection to the same file.
struct Raw {
    pool: sqlx::SqlitePool,
}

impl Raw {
    async fn scalar(&self, sql: &str) -> Result<i64, String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| format!("{sql}: {e}"))
    }

    async fn execute(&self, sql: &str) -> Result<(), String> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| format!("{sql}: {e}"))
    }

    async fn plan(&self, sql: &str) -> Result<String, String> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| format!("plan of {sql}: {e}"))?;
        Ok(rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; "))
    }

    /// Median and slowest ms of `sql` (rows fetched and dropped).
    async fn time(&self, sql: &str, runs: usize) -> Result<(f64, f64), String> {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| format!("{sql}: {e}"))?;
            times.push(ms(start.elapsed()));
            drop(rows);
        }
        Ok((median(&times), times.iter().copied().fold(0.0, f64::max)))
    }
}

/// `x'04c0000200'`: a blob literal of an `ip_key`.
fn key_literal(family: u8, bytes: &[u8]) -> String {
    let mut s = format!("x'{family:02x}");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('\'');
    s
}

/// `(first key, last key)` literals of an IPv4 CIDR.
fn v4_cidr_keys(net: Ipv4Addr, prefix: u32) -> (String, String) {
    let host = u32::MAX.checked_shr(prefix).unwrap_or(0);
    let start = u32::from(net) & !host;
    (
        key_literal(4, &start.to_be_bytes()),
        key_literal(4, &(start | host).to_be_bytes()),
    )
}

fn reversed(domain: &str) -> String {
    let mut s: String = domain.rsplit('.').collect::<Vec<_>>().join(".");
    s.push('.');
    s
}

const HISTORY_COLUMNS: &str = "id, time, node, queue_id, tenant, client_ip, sender, \
     sender_source, recipients, status, action, bypassed, matched, checks, reason, revision";

pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(run_async(o))
}

async fn run_async(o: Options) -> Result<(), String> {
    let dir = o.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("allowgate-history-bench-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fresh_path = dir.join("fresh.db");
    let full_path = dir.join("history.db");
    for p in [&fresh_path, &full_path] {
        for suffix in ["", "-wal", "-shm", "-migrate.lock"] {
            let mut q = p.as_os_str().to_owned();
            q.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(q));
        }
    }
    let mut out = String::new();
    out.push_str("#### Writes (`Store::record_history`, one transaction per batch)\n\n");
    out.push_str("| table before | records | batch | total ms | median ms/batch | p99 ms/batch | slowest ms/batch | records/s |\n|---|---|---|---|---|---|---|---|\n");

    // 1. Fresh file.
    let fresh = Store::open(&format!("sqlite://{}", fresh_path.display()))
        .await
        .map_err(|e| e.to_string())?;
    let mut traffic = Traffic::new(o.write);
    let times = write(&fresh, &mut traffic, o.write, o.batch).await?;
    out.push_str(&write_row("empty", o.write, o.batch, &times));
    out.push('\n');
    fresh.close().await;
    eprintln!("fresh write done");

    // 2. Fill.
    let url = format!("sqlite://{}", full_path.display());
    let store = Store::open(&url).await.map_err(|e| e.to_string())?;
    let mut traffic = Traffic::new(o.rows);
    let start = Instant::now();
    let mut written = 0;
    while written < o.rows {
        let n = (o.rows - written).min(o.batch);
        store
            .record_history(&traffic.batch(n))
            .await
            .map_err(|e| e.to_string())?;
        written += n;
        if written % 100_000 < o.batch {
            eprintln!("filled {written}");
        }
    }
    let fill = start.elapsed();
    let raw = Raw {
        pool: sqlx::SqlitePool::connect(&url)
            .await
            .map_err(|e| e.to_string())?,
    };
    let start = Instant::now();
    raw.execute("ANALYZE").await?;
    let analyze = start.elapsed();

    // 3. Writes on top of the full table.
    let times = write(&store, &mut traffic, o.write, o.batch).await?;
    out.push_str(&write_row(
        &format!("{} rows", o.rows),
        o.write,
        o.batch,
        &times,
    ));
    out.push('\n');
    let rows = raw.scalar("SELECT COUNT(*) FROM history").await?;
    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
    let size = std::fs::metadata(&full_path).map(|m| m.len()).unwrap_or(0);
    out.push_str(&format!(
        "\nFill: {} records in {:.1} s ({:.0} records/s, batches of {}); `ANALYZE` {:.0} ms; file {:.0} MB for {rows} rows ({:.0} bytes/row, indexes included).\n",
        o.rows,
        fill.as_secs_f64(),
        o.rows as f64 / fill.as_secs_f64(),
        o.batch,
        ms(analyze),
        size as f64 / 1e6,
        size as f64 / rows as f64
    ));

    // 4. Queries. Parameters from the data: the busiest sender and host, a rare sender, …
    let busy_sender = traffic.senders[0].clone();
    let rare_sender = traffic.senders[SENDERS - 1].clone();
    let busy_domain = busy_sender
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let busy_host = traffic.hosts[0];
    let IpAddr::V4(v4) = traffic.hosts[1] else {
        return Err("host 1 is not IPv4".into());
    };
    let rare_v4 = traffic.hosts[HOSTS - 2];
    let since = traffic.start + chrono::Duration::days(DAYS - 1);
    let q = |name: String, edit: &dyn Fn(&mut HistoryFilter)| {
        let mut filter = HistoryFilter::default();
        edit(&mut filter);
        Query { name, filter }
    };
    // The busiest sender at a `mail.` subdomain: its parent and all below it.
    let parent = traffic.senders[..BUSY_SENDERS]
        .iter()
        .find_map(|s| s.split_once("@mail.").map(|(_, d)| d.to_string()))
        .unwrap_or_default();
    let queries = vec![
        q("no filter".into(), &|_| {}),
        q(format!("sender, busiest address `{busy_sender}`"), &|f| {
            f.sender = Some(busy_sender.clone())
        }),
        q(format!("sender, rare address `{rare_sender}`"), &|f| {
            f.sender = Some(rare_sender.clone())
        }),
        q(format!("sender, domain `{busy_domain}`"), &|f| {
            f.sender = Some(busy_domain.clone())
        }),
        q(format!("sender, `*.{parent}` (domain and below)"), &|f| {
            f.sender = Some(format!("*.{parent}"))
        }),
        q(format!("ip, busiest host `{busy_host}`"), &|f| {
            f.ip = Some(busy_host.to_string())
        }),
        q(format!("ip, rare host `{rare_v4}`"), &|f| {
            f.ip = Some(rare_v4.to_string())
        }),
        q(format!("ip, CIDR `{v4}/24`"), &|f| {
            f.ip = Some(format!("{v4}/24"))
        }),
        q(format!("ip, CIDR `{v4}/16`"), &|f| {
            f.ip = Some(format!("{v4}/16"))
        }),
        q(format!("ip, CIDR `{v4}/8`"), &|f| {
            f.ip = Some(format!("{v4}/8"))
        }),
        q("ip, CIDR `2001:db8::/32` (every IPv6 host)".into(), &|f| {
            f.ip = Some("2001:db8::/32".into())
        }),
        q("status `quarantined` (1%)".into(), &|f| {
            f.status = Some("quarantined".into())
        }),
        q("status `pass` (70%)".into(), &|f| {
            f.status = Some("pass".into())
        }),
        q("tenant `tenant7`".into(), &|f| {
            f.tenant = Some("tenant7".into())
        }),
        q("since the last day".into(), &|f| f.since = Some(since)),
        q("busiest sender + since the last day".into(), &|f| {
            f.sender = Some(busy_sender.clone());
            f.since = Some(since);
        }),
        q(format!("CIDR `{v4}/16` + status `blocked`"), &|f| {
            f.ip = Some(format!("{v4}/16"));
            f.status = Some("blocked".into());
        }),
        q("limit 10,000, no filter".into(), &|f| f.limit = 10_000),
    ];
    out.push_str(&format!(
        "\n#### Queries on {rows} rows (`Store::history`, limit 100 unless said; {} runs each)\n\n",
        o.runs
    ));
    out.push_str("| filter | rows selected | returned | median ms | slowest ms | SQLite's plan |\n|---|---|---|---|---|---|\n");
    for query in &queries {
        let (median_ms, slowest, found) = time_query(&store, &query.filter, o.runs).await?;
        let (selected, plan) = sql_of(&raw, &query.filter).await?;
        out.push_str(&format!(
            "| {} | {selected} | {found} | {median_ms:.2} | {slowest:.2} | {plan} |\n",
            query.name
        ));
        eprintln!("{}: {median_ms:.2} ms", query.name);
    }

    // The CIDR filters three ways, on the same rows: the store's query (ids from the
    // (ip_key, time) index alone, then the rows); one step over the same index (every matching
    // row read, then sorted); and newest first over the time index testing every row until 100
    // match — the only plan a text-only client_ip column leaves.
    out.push_str(
        "\n#### CIDR filters: the store's two-step query, one step, and no address index\n\n",
    );
    out.push_str(
        "| filter | rows selected | store (two steps) median / slowest ms | one step over history_ip | no address index (time-index scan) |\n|---|---|---|---|---|\n",
    );
    let v6_keys = (
        key_literal(6, &(0x2001_0db8_u128 << 96).to_be_bytes()),
        key_literal(
            6,
            &(0x2001_0db8_u128 << 96 | (u128::MAX >> 32)).to_be_bytes(),
        ),
    );
    let IpAddr::V4(rare_v4) = rare_v4 else {
        return Err("the rare host is not IPv4".into());
    };
    let cidrs = [
        (format!("{v4}/24"), v4_cidr_keys(v4, 24)),
        (format!("{v4}/16"), v4_cidr_keys(v4, 16)),
        (format!("{v4}/8"), v4_cidr_keys(v4, 8)),
        (format!("{rare_v4}/24"), v4_cidr_keys(rare_v4, 24)),
        ("2001:db8::/32".to_string(), v6_keys),
    ];
    for (name, (first, last)) in &cidrs {
        let condition = format!("ip_key BETWEEN {first} AND {last}");
        let selected = raw
            .scalar(&format!("SELECT COUNT(*) FROM history WHERE {condition}"))
            .await?;
        let two_step = format!(
            "SELECT {HISTORY_COLUMNS} FROM history WHERE id IN (SELECT id FROM history \
             WHERE {condition} ORDER BY time DESC, id DESC LIMIT 100) ORDER BY time DESC, id DESC"
        );
        let one_step = format!(
            "SELECT {HISTORY_COLUMNS} FROM history INDEXED BY history_ip \
             WHERE {condition} ORDER BY time DESC, id DESC LIMIT 100"
        );
        let scan = format!(
            "SELECT {HISTORY_COLUMNS} FROM history INDEXED BY history_time \
             WHERE {condition} ORDER BY time DESC, id DESC LIMIT 100"
        );
        let (a, a_max) = raw.time(&two_step, o.runs).await?;
        let (b, b_max) = raw.time(&one_step, o.runs).await?;
        let (c, c_max) = raw.time(&scan, o.runs).await?;
        out.push_str(&format!(
            "| `{name}` | {selected} | {a:.2} / {a_max:.2} | {b:.2} / {b_max:.2} | {c:.2} / {c_max:.2} |\n"
        ));
    }

    // Admin changes while the server writes history: each change's time, with a writer
    // writing batches back to back meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let stop = stop.clone();
        let mut traffic = Traffic::new(o.rows);
        traffic.next = 2 * o.rows as i64;
        let batch = o.batch;
        tokio::spawn(async move {
            let mut times = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let records = traffic.batch(batch);
                let start = Instant::now();
                if let Err(e) = store.record_history(&records).await {
                    return Err(format!("record_history: {e}"));
                }
                times.push(start.elapsed());
            }
            Ok(times)
        })
    };
    let admin = allowgate_types::Actor::parse("bench").map_err(|e| e.to_string())?;
    let mut changes = Vec::new();
    for i in 0..50u32 {
        let spec = allowgate_types::EntrySpec {
            list: Some(allowgate_types::List::Block),
            kind: Some(allowgate_types::EntryKind::Ip),
            value: format!("198.18.{}.{}", i / 200, i % 200),
            ..Default::default()
        };
        let (entry, _) = spec.validate().map_err(|e| format!("{e:?}"))?;
        let start = Instant::now();
        store
            .add_entry(&entry, &admin)
            .await
            .map_err(|e| format!("add_entry: {e}"))?;
        changes.push(ms(start.elapsed()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let batches = writer.await.map_err(|e| e.to_string())??;
    let per: Vec<f64> = batches.iter().map(|d| ms(*d)).collect();
    out.push_str(&format!(
        "\n#### Admin changes during history writes\n\n{} `add_entry` calls (20 ms apart) while {} batches of {} were written back to back: change median {:.2} ms, slowest {:.2} ms; batch median {:.2} ms, slowest {:.2} ms.\n",
        changes.len(),
        batches.len(),
        o.batch,
        median(&changes),
        changes.iter().copied().fold(0.0, f64::max),
        median(&per),
        per.iter().copied().fold(0.0, f64::max),
    ));

    // 6. Purge the oldest 10% while a writer keeps writing.
    let cut = traffic.start + chrono::Duration::microseconds(traffic.step * (o.rows as i64 / 10));
    let purging = {
        let store = store.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let n = store.purge_history(cut).await;
            (n, start.elapsed())
        })
    };
    let mut during = Vec::new();
    while !purging.is_finished() {
        let records = traffic.batch(o.batch);
        let start = Instant::now();
        store
            .record_history(&records)
            .await
            .map_err(|e| format!("record_history during purge: {e}"))?;
        during.push(start.elapsed());
    }
    let (purged, purge_time) = purging.await.map_err(|e| e.to_string())?;
    let purged = purged.map_err(|e| e.to_string())?;
    let slowest = during.iter().max().copied().unwrap_or_default();
    let per: Vec<f64> = during.iter().map(|d| ms(*d)).collect();
    out.push_str(&format!(
        "\n#### Purge\n\n`purge_history` of the oldest {purged} rows: {:.0} ms. Meanwhile {} batches of {} were written: median {:.2} ms, slowest {:.2} ms.\n",
        ms(purge_time),
        during.len(),
        o.batch,
        median(&per),
        ms(slowest)
    ));

    raw.pool.close().await;
    store.close().await;
    println!("{out}");
    if o.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// The rows a filter selects (`COUNT(*)`) and SQLite's plan for the store's query, from the
/// same conditions written out in SQL.
async fn sql_of(raw: &Raw, f: &HistoryFilter) -> Result<(i64, String), String> {
    let mut conditions = vec!["1 = 1".to_string()];
    if let Some(sender) = &f.sender {
        if let Some(domain) = sender.strip_prefix("*.") {
            let start = reversed(domain);
            let end = format!("{}/", &start[..start.len() - 1]);
            conditions.push(format!(
                "sender_rdomain >= '{start}' AND sender_rdomain < '{end}'"
            ));
        } else if sender.contains('@') {
            conditions.push(format!("sender = '{sender}'"));
        } else {
            conditions.push(format!("sender_rdomain = '{}'", reversed(sender)));
        }
    }
    if let Some(ip) = &f.ip {
        let (first, last) = match ip.split_once('/') {
            Some((net, prefix)) => {
                let prefix: u32 = prefix.parse().map_err(|_| "prefix")?;
                match net.parse::<IpAddr>() {
                    Ok(IpAddr::V4(a)) => v4_cidr_keys(a, prefix),
                    Ok(IpAddr::V6(a)) => {
                        let host = u128::MAX.checked_shr(prefix).unwrap_or(0);
                        let start = u128::from(a) & !host;
                        (
                            key_literal(6, &start.to_be_bytes()),
                            key_literal(6, &(start | host).to_be_bytes()),
                        )
                    }
                    Err(_) => return Err(format!("bad CIDR {ip}")),
                }
            }
            None => match ip.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => v4_cidr_keys(a, 32),
                Ok(IpAddr::V6(a)) => {
                    let k = key_literal(6, &a.octets());
                    (k.clone(), k)
                }
                Err(_) => return Err(format!("bad IP {ip}")),
            },
        };
        if first == last {
            conditions.push(format!("ip_key = {first}"));
        } else {
            conditions.push(format!("ip_key BETWEEN {first} AND {last}"));
        }
    }
    if let Some(s) = &f.status {
        conditions.push(format!("status = '{s}'"));
    }
    if let Some(t) = &f.tenant {
        conditions.push(format!("tenant = '{t}'"));
    }
    if let Some(t) = f.since {
        conditions.push(format!("time >= {}", t.timestamp_micros()));
    }
    let condition = conditions.join(" AND ");
    let count = raw
        .scalar(&format!("SELECT COUNT(*) FROM history WHERE {condition}"))
        .await?;
    let plan = raw
        .plan(&format!(
            "SELECT {HISTORY_COLUMNS} FROM history WHERE id IN (SELECT id FROM history \
             WHERE {condition} ORDER BY time DESC, id DESC LIMIT {}) ORDER BY time DESC, id DESC",
            f.limit
        ))
        .await?;
    Ok((count, plan))
}
