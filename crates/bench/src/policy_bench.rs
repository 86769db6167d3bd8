//! `allowgate-bench policy`: the Postfix policy server end to end — TCP on loopback, the
//! protocol codec, the staged engine — with a load generator in the same process sharing the
//! machine's two cores, as a real deployment's Postfix would.
//!
//! ```text
//! cargo run --release -p allowgate-bench -- policy [--entries 100000] [--connections 100]
//!     [--seconds 10] [--rate 5000] [--no-rspamd] [--soak SECONDS] [--server-threads N]
//! ```
//!
//! The entries (the `decide` benchmark's IP entries: 85% allow, 10% block, 5% ignore, global)
//! are imported into a fresh SQLite file through the store, as `allowgate import` does, and
//! `allowgate_server::serve::start` serves them. Queries are RCPT requests as Postfix 3.7
//! sends them, half from clients inside an entry, half from clients no entry covers.
//!
//! - **Closed loop**: `--connections` persistent connections, each sending its next request
//!   as soon as the previous reply arrives, for `--seconds`: decisions per second and latency.
//! - **Open loop**: requests at a fixed `--rate`, spread over the connections; latency is
//!   measured from each request's scheduled time (a late send counts against the server, so a
//!   stall cannot hide behind the requests it delayed).
//! - **Baseline** (unless `--no-rspamd`): after allowgate has stopped, Debian's rspamd on
//!   loopback with only an IP-list rule over the same entries (see `rspamd.rs`), asked
//!   `/checkv2` about the same clients over `--connections` keep-alive connections, closed
//!   loop: the ratio of the two request rates.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allowgate_store::Store;
use allowgate_store::import::{ImportFamily, ImportRequest};
use allowgate_types::{Actor, List};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::data::{self, Rng};
use crate::rspamd;
use crate::serve_process::Serve;

struct Options {
    entries: usize,
    connections: usize,
    seconds: u64,
    rate: u64,
    /// Run the rspamd baseline.
    rspamd: bool,
    /// `runtime.worker_threads` of the server (0: one per core).
    server_threads: usize,
    /// Instead of the runs, an open loop at `rate` for this many seconds, with the server's
    /// memory sampled.
    soak: Option<u64>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        entries: 100_000,
        connections: 100,
        seconds: 10,
        rate: 5_000,
        rspamd: true,
        server_threads: 0,
        soak: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-rspamd" {
            o.rspamd = false;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n = crate::number(flag, value)?;
        match flag.as_str() {
            "--entries" => o.entries = n,
            "--connections" => o.connections = n,
            "--seconds" => o.seconds = n as u64,
            "--rate" => o.rate = n as u64,
            "--soak" => o.soak = Some(n as u64),
            "--server-threads" => o.server_threads = n,
            other => {
                return Err(format!(
                    "unknown flag {other}\nusage: allowgate-bench policy [--entries 100000] \
                     [--connections 100] [--seconds 10] [--rate 5000] [--no-rspamd] [--soak SECONDS] [--server-threads N]"
                ));
            }
        }
    }
    if o.entries == 0 || o.connections == 0 || o.seconds == 0 || o.rate == 0 {
        return Err("every number must be positive".into());
    }
    Ok(o)
}

/// Import the entries: one import per list (the import cap is 100,000 entries and 2 MB).
pub(crate) async fn fill(store: &Store, entries: &[data::Entry]) -> Result<(), String> {
    let actor = Actor::parse("bench").map_err(|e| e.to_string())?;
    for (list, pick) in [
        (List::Allow, 0..17),
        (List::Block, 17..19),
        (List::Ignore, 19..20),
    ] {
        let mut chunk = String::new();
        let mut count = 0;
        for (i, e) in entries.iter().enumerate() {
            if pick.contains(&(i % 20)) {
                let _ = writeln!(chunk, "{}", data::entry_text(e));
                count += 1;
            }
            let full = count == 100_000 || chunk.len() > 1_900_000;
            if full || i + 1 == entries.len() {
                let mut req = ImportRequest::new(list, ImportFamily::Server);
                req.force = true;
                if list == List::Allow {
                    req.checks = Some("spf,greylisting,rbl".parse().map_err(|e| format!("{e}"))?);
                }
                store
                    .import(&req, chunk.as_bytes(), &actor, &|_, _| {})
                    .await
                    .map_err(|e| e.to_string())?;
                chunk.clear();
                count = 0;
            }
        }
    }
    Ok(())
}

/// Client addresses: `n` inside an entry and `n` outside every entry, interleaved.
fn clients(entries: &[data::Entry], n: usize, seed: u64) -> Vec<IpAddr> {
    let hits = data::hit_queries(entries, n, seed);
    let mut misses = Vec::with_capacity(n);
    let mut rng = Rng::new(seed ^ 0x5eed);
    while misses.len() < n {
        // Addresses in TEST-NET-2, where the generated entries never are.
        let ip = std::net::Ipv4Addr::new(198, 18, rng.below(256) as u8, rng.below(256) as u8);
        misses.push(IpAddr::V4(ip));
    }
    hits.into_iter()
        .zip(misses)
        .flat_map(|(h, m)| [h, m])
        .collect()
}

/// RCPT requests as Postfix 3.7 sends them, one per client.
fn requests(clients: &[IpAddr]) -> Vec<Vec<u8>> {
    clients
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            format!(
                "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
                 helo_name=mx{i}.sender.test\nqueue_id=\nsender=news{i}@sender.test\n\
                 recipient=bob@example.test\nrecipient_count=0\nclient_address={ip}\n\
                 client_name=unknown\nreverse_client_name=unknown\ninstance={i}.1\nsasl_method=\n\
                 sasl_username=\nsasl_sender=\nsize=0\nccert_subject=\nccert_issuer=\n\
                 ccert_fingerprint=\nencryption_protocol=TLSv1.3\nencryption_cipher=\n\
                 encryption_keysize=256\netrn_domain=\nstress=\n\n"
            )
            .into_bytes()
        })
        .collect()
}

/// What the load generator speaks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Postfix's policy delegation (allowgate).
    Policy,
    /// HTTP/1.1 `/checkv2` with keep-alive (the rspamd baseline).
    Checkv2,
}

/// A connection of the load generator: connected again when the server closed it after a
/// reply (rspamd does unless it keeps the connection alive); the connect is then part of the
/// next request's time, as it is for a real client.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            addr,
            stream: Some(stream),
        })
    }

    fn stream(&mut self) -> Result<&mut TcpStream, String> {
        self.stream.as_mut().ok_or_else(|| "not connected".into())
    }
}

/// One request and its reply; `Err` for a reply that is not one.
async fn ask(
    proto: Protocol,
    conn: &mut Conn,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    if conn.stream.is_none() {
        let stream = TcpStream::connect(conn.addr)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        conn.stream = Some(stream);
    }
    let stream = conn.stream()?;
    match proto {
        Protocol::Policy => ask_policy(stream, request, buf).await,
        Protocol::Checkv2 => {
            if !ask_checkv2(stream, request, buf).await? {
                conn.stream = None;
            }
            Ok(())
        }
    }
}

/// One `/checkv2` request and its reply: HTTP 200 with a JSON body naming an action. `Ok`
/// says whether the connection stays open.
async fn ask_checkv2(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<bool, String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some((body, keep_alive)) = rspamd::complete_response(buf)? {
            if !body.windows(8).any(|w| w == b"\"action\"") {
                return Err(format!("no action in {:?}", String::from_utf8_lossy(body)));
            }
            return Ok(keep_alive);
        }
    }
}

/// One policy request and its reply; `Err` if the reply is not `action=…\n\n`.
async fn ask_policy(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    buf.clear();
    let mut chunk = [0u8; 512];
    while !buf.ends_with(b"\n\n") {
        let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if !buf.starts_with(b"action=") {
        return Err(format!("bad reply {:?}", String::from_utf8_lossy(buf)));
    }
    Ok(())
}

/// Latencies in microseconds: (p50, p99, p99.9, max).
fn percentiles(mut us: Vec<u64>) -> (u64, u64, u64, u64) {
    us.sort_unstable();
    let at = |p: f64| {
        us.get(((us.len() as f64 * p) as usize).min(us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    (
        at(0.5),
        at(0.99),
        at(0.999),
        us.last().copied().unwrap_or(0),
    )
}

struct LoopResult {
    done: u64,
    errors: u64,
    seconds: f64,
    /// From the scheduled time (open loop) or the send (closed loop) to the reply.
    latency_us: Vec<u64>,
    /// From the send to the reply (open loop; the scheduled time also counts the timer's
    /// lateness, up to a millisecond with tokio's timer wheel).
    service_us: Vec<u64>,
}

/// What one connection's task returns: latencies, service times, errors.
type ConnectionResult = (Vec<u64>, Vec<u64>, u64);

impl LoopResult {
    /// The connections' results together (`seconds` left for the caller).
    async fn collect(tasks: Vec<tokio::task::JoinHandle<ConnectionResult>>) -> LoopResult {
        let mut result = LoopResult {
            done: 0,
            errors: 0,
            seconds: 0.0,
            latency_us: Vec::new(),
            service_us: Vec::new(),
        };
        for t in tasks {
            if let Ok((lat, service, errors)) = t.await {
                result.done += lat.len() as u64;
                result.errors += errors;
                result.latency_us.extend(lat);
                result.service_us.extend(service);
            }
        }
        result
    }
}

/// Closed loop: every connection sends its next request as soon as its reply arrives.
async fn closed_loop(
    proto: Protocol,
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    o: &Options,
) -> LoopResult {
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let reqs = Arc::clone(&reqs);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let Ok(mut stream) = Conn::connect(addr).await else {
                return (Vec::new(), lat, 1);
            };
            let mut buf = Vec::with_capacity(256);
            let mut i = c * 7919;
            while Instant::now() < deadline {
                let t = Instant::now();
                match ask(proto, &mut stream, &reqs[i % reqs.len()], &mut buf).await {
                    Ok(()) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
                i += 1;
            }
            (lat.clone(), lat, errors)
        }));
    }
    let mut result = LoopResult::collect(tasks).await;
    result.seconds = started.elapsed().as_secs_f64();
    result
}

/// Open loop: request `k` of connection `c` is due at `start + (k * connections + c) / rate`.
async fn open_loop(
    proto: Protocol,
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    o: &Options,
) -> LoopResult {
    let total = o.rate * o.seconds;
    let per_conn = total / o.connections as u64;
    let interval = Duration::from_secs_f64(o.connections as f64 / o.rate as f64);
    let start = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for c in 0..o.connections {
        let reqs = Arc::clone(&reqs);
        let offset = Duration::from_secs_f64(c as f64 / o.rate as f64);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_conn as usize);
            let mut service = Vec::with_capacity(per_conn as usize);
            let mut errors = 0u64;
            let Ok(mut stream) = Conn::connect(addr).await else {
                return (lat, service, per_conn);
            };
            let mut buf = Vec::with_capacity(256);
            for k in 0..per_conn {
                let due = start + offset + interval * k as u32;
                tokio::time::sleep_until(due.into()).await;
                let i = (c + k as usize * 7919) % reqs.len();
                let sent = Instant::now();
                match ask(proto, &mut stream, &reqs[i], &mut buf).await {
                    Ok(()) => {
                        lat.push(due.elapsed().as_micros() as u64);
                        service.push(sent.elapsed().as_micros() as u64);
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, service, errors)
        }));
    }
    let mut result = LoopResult::collect(tasks).await;
    result.seconds = start.elapsed().as_secs_f64();
    result
}

/// The soak: an open loop at `o.rate` for `seconds`, in slices of a minute (each slice's
/// requests, errors and p99), the server's resident memory sampled after each slice.
async fn soak(
    server: &Serve,
    addr: SocketAddr,
    reqs: Arc<Vec<Vec<u8>>>,
    o: &Options,
    seconds: u64,
) -> Result<(), String> {
    let slice = 60.min(seconds);
    let slices = seconds.div_ceil(slice);
    let rss_start = server.rss_kib().ok_or("cannot read the server's VmRSS")?;
    println!(
        "### Soak: open loop at {} req/s for {seconds} s, {} connections, {} entries (release `allowgate serve`, pid {})\n",
        o.rate,
        o.connections,
        o.entries,
        server.pid()
    );
    println!("| minute | requests | errors | p50 µs | p99 µs | max µs | server RSS after (KiB) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!("| start | | | | | | {rss_start} |");
    let (mut total, mut errors, mut rss_max) = (0u64, 0u64, rss_start);
    let mut rss_end = rss_start;
    for k in 0..slices {
        let part = Options {
            seconds: slice.min(seconds - k * slice),
            soak: None,
            ..*o
        };
        let r = open_loop(Protocol::Policy, addr, Arc::clone(&reqs), &part).await;
        rss_end = server.rss_kib().ok_or("the server is gone")?;
        rss_max = rss_max.max(rss_end);
        total += r.done;
        errors += r.errors;
        let (p50, p99, _, max) = percentiles(r.latency_us);
        println!(
            "| {} | {} | {} | {p50} | {p99} | {max} | {rss_end} |",
            k + 1,
            r.done,
            r.errors
        );
    }
    println!(
        "\n{total} requests, **{errors} errors**; server RSS {rss_start} KiB at the start, {rss_end} KiB at the end, {rss_max} KiB at most."
    );
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}

/// Runs the benchmark; `Err` on bad arguments, a failed set-up or any failed request.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let dir = std::env::temp_dir().join(format!("allowgate-policy-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let url = format!("sqlite://{}", dir.join("allowgate.db").display());
        let entries = data::entries(o.entries, 0xB01C_0001);
        eprintln!("[policy] importing {} entries", entries.len());
        let store = Store::open(&url).await.map_err(|e| e.to_string())?;
        fill(&store, &entries).await?;
        store.close().await;
        let server =
            tokio::task::block_in_place(|| Serve::start_with_threads(&url, o.server_threads, &dir))?;
        let addr = server.policy;
        let clients = clients(&entries, 50_000, 0xB01C_0002);
        let reqs = Arc::new(requests(&clients));
        if let Some(seconds) = o.soak {
            let result = soak(&server, addr, reqs, &o, seconds).await;
            tokio::task::block_in_place(|| drop(server));
            let _ = std::fs::remove_dir_all(&dir);
            return result;
        }
        eprintln!("[policy] closed loop: {} connections, {} s", o.connections, o.seconds);
        let closed = closed_loop(Protocol::Policy, addr, Arc::clone(&reqs), &o).await;
        eprintln!("[policy] open loop: {} req/s, {} s", o.rate, o.seconds);
        let open = open_loop(Protocol::Policy, addr, Arc::clone(&reqs), &o).await;
        let decisions = tokio::task::block_in_place(|| server.metrics())?;
        tokio::task::block_in_place(|| drop(server));
        let baseline = if o.rspamd {
            let (allow, block): (Vec<_>, Vec<_>) = entries
                .iter()
                .enumerate()
                .partition(|(i, _)| !(17..19).contains(&(i % 20)));
            let allow: Vec<data::Entry> = allow.into_iter().map(|(_, e)| *e).collect();
            let block: Vec<data::Entry> = block.into_iter().map(|(_, e)| *e).collect();
            eprintln!("[policy] rspamd baseline: starting rspamd with the same entries");
            let server = tokio::task::block_in_place(|| {
                rspamd::start(&dir.join("rspamd"), &allow, &block)
            })?;
            let checks: Vec<Vec<u8>> = clients
                .iter()
                .enumerate()
                .map(|(i, ip)| rspamd::request(*ip, i))
                .collect();
            eprintln!("[policy] rspamd closed loop: {} connections, {} s", o.connections, o.seconds);
            let result = closed_loop(Protocol::Checkv2, server.addr, Arc::new(checks), &o).await;
            tokio::task::block_in_place(|| drop(server));
            Some(result)
        } else {
            None
        };
        let _ = std::fs::remove_dir_all(&dir);

        println!(
            "### Policy server end to end ({} entries; the release `allowgate serve` ({}) and the load generator on the same 2 cores)\n",
            o.entries,
            if o.server_threads == 0 { "one worker thread per core".to_string() } else { format!("{} worker thread(s)", o.server_threads) }
        );
        println!(
            "| run | requests | errors | decisions/s | p50 µs | p99 µs | p99.9 µs | max µs | \
             p50 / p99 µs from the send |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let allowgate_rate = closed.done as f64 / closed.seconds;
        let mut runs = vec![
            (format!("allowgate, closed loop, {} connections", o.connections), closed),
            (format!("allowgate, open loop at {} req/s, {} connections", o.rate, o.connections), open),
        ];
        let mut rspamd_rate = None;
        if let Some(r) = baseline {
            rspamd_rate = Some(r.done as f64 / r.seconds);
            runs.push((
                format!("rspamd /checkv2 (IP-list rule only), closed loop, {} connections", o.connections),
                r,
            ));
        }
        for (name, r) in runs {
            let rate = r.done as f64 / r.seconds;
            let errors = r.errors;
            let (p50, p99, p999, max) = percentiles(r.latency_us);
            let (s50, s99, _, _) = percentiles(r.service_us);
            println!(
                "| {name} | {} | {errors} | {rate:.0} | {p50} | {p99} | {p999} | {max} | {s50} / {s99} |",
                r.done
            );
            if errors > 0 {
                return Err(format!("{name}: {errors} requests failed"));
            }
        }
        let statuses: Vec<&str> = decisions
            .lines()
            .filter(|l| l.starts_with("allowgate_decisions_total{"))
            .collect();
        println!("\nDecisions by status (server counters): {}", statuses.join(", "));
        if let Some(baseline) = rspamd_rate {
            println!(
                "\nallowgate / rspamd, closed loop: **{:.1}×** ({allowgate_rate:.0} vs {baseline:.0} per second)",
                allowgate_rate / baseline
            );
        }
        Ok(())
    })
}
