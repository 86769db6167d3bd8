//! `allowgate-bench postfix`: the throughput of a real Postfix with allowgate's policy server
//! and milter in its path, against the same Postfix without them, in the same run.
//!
//! ```text
//! cargo build --release -p allowgate -p allowgate-bench
//! target/release/allowgate-bench postfix [--messages 2000] [--sessions 20] [--size 10240]
//!     [--rounds 3] [--entries 100000] [--with both|policy|milter] [--no-noop] [--lean-macros]
//!     [--server-threads N]
//! ```
//!
//! One private Postfix on loopback (allowgate-testkit: the Debian package, smtp-sink behind
//! it; needs root) and the release `allowgate serve` binary beside this one, on a fresh SQLite
//! file with `--entries` IP entries imported (as `allowgate-bench policy` does) plus an allow
//! entry for 127.0.0.0/8 that bypasses `spam`: every message is exempted, so every message
//! takes the whole path — the policy server's `PREPEND` at RCPT, the milter's final
//! decision on the whole message (its `X-Allowgate` is the one the policy server prepended, so
//! no header edit is needed), a history record.
//!
//! Postfix is set up as docs/postfix.md recommends (the policy service after
//! `reject_unauth_destination`, the milter with `milter_default_action = accept`), with
//! `--lean-macros` sending only the macros allowgate reads.
//!
//! Each round sends `--messages` messages of `--size` bytes with Postfix's `smtp-source`
//! over `--sessions` parallel sessions (one message per SMTP session, as mail from the
//! Internet mostly comes) three times: without anything in Postfix's path; with a policy
//! service and a milter that decide nothing (`noop.rs`, unless `--no-noop`: the cost of the two
//! protocols to Postfix itself); with allowgate (`--with` picks the policy server, the milter or
//! both). Postfix is reloaded between runs. Measured per run: the time until smtp-source has
//! had every message accepted (`250 queued`) and the time until the sink has received all of
//! them. The table gives the medians over the rounds and the ratios.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use allowgate_store::Store;
use allowgate_testkit::{Postfix, PostfixConfig};
use allowgate_types::{Actor, EntryKind, EntrySpec, List};

use crate::data;
use crate::median;
use crate::serve_process::Serve;

struct Options {
    messages: usize,
    sessions: usize,
    size: usize,
    rounds: usize,
    entries: usize,
    /// What is in the path in the "with" runs: the policy server, the milter, or both.
    policy: bool,
    milter: bool,
    /// Also run with the do-nothing policy service and milter (`noop.rs`).
    noop: bool,
    /// Postfix sends only the macros allowgate reads.
    lean_macros: bool,
    /// `runtime.worker_threads` of allowgate (0: one per core).
    server_threads: usize,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        messages: 2000,
        sessions: 20,
        size: 10 * 1024,
        rounds: 3,
        entries: 100_000,
        policy: true,
        milter: true,
        noop: true,
        lean_macros: false,
        server_threads: 0,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if flag == "--no-noop" {
            o.noop = false;
            continue;
        }
        if flag == "--lean-macros" {
            o.lean_macros = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--with" {
            (o.policy, o.milter) = match value.as_str() {
                "both" => (true, true),
                "policy" => (true, false),
                "milter" => (false, true),
                other => return Err(format!("--with {other}: both, policy or milter")),
            };
            continue;
        }
        let n = crate::number(flag, value)?;
        match flag.as_str() {
            "--messages" => o.messages = n,
            "--sessions" => o.sessions = n,
            "--size" => o.size = n,
            "--rounds" => o.rounds = n,
            "--entries" => o.entries = n,
            "--server-threads" => o.server_threads = n,
            other => {
                return Err(format!(
                    "unknown flag {other}\nusage: allowgate-bench postfix [--messages 2000] \
                     [--sessions 20] [--size 10240] [--rounds 3] [--entries 100000] \
                     [--with both|policy|milter] [--no-noop] [--lean-macros] [--server-threads N]"
                ));
            }
        }
    }
    if o.messages == 0 || o.sessions == 0 || o.rounds == 0 || o.size < 100 {
        return Err("every number must be positive, --size at least 100".into());
    }
    Ok(o)
}

/// The macro settings docs/postfix.md recommends: only the queue id, at the end of the
/// message (allowgate reads nothing else from macros).
pub const LEAN_MACROS: &[(&str, &str)] = &[
    ("milter_connect_macros", ""),
    ("milter_helo_macros", ""),
    ("milter_mail_macros", ""),
    ("milter_rcpt_macros", ""),
    ("milter_data_macros", ""),
    ("milter_end_of_header_macros", ""),
    ("milter_unknown_command_macros", ""),
    ("milter_end_of_data_macros", "i"),
];

/// Files in the sink's directory: messages received (or being received).
fn sink_count(sink: &Path) -> usize {
    std::fs::read_dir(sink).map_or(0, |d| d.count())
}

/// One run: smtp-source's time, and the time until the sink holds `before + messages`.
fn one_run(
    postfix: &Postfix,
    smtp_source: &Path,
    o: &Options,
) -> Result<(Duration, Duration), String> {
    let sink = postfix.dir().join("sink");
    let before = sink_count(&sink);
    let started = Instant::now();
    let out = Command::new(smtp_source)
        .args(["-c", "-m", &o.messages.to_string()])
        .args(["-s", &o.sessions.to_string()])
        .args(["-l", &o.size.to_string()])
        .args(["-f", "news@sender.test", "-t", "bob@example.test"])
        .arg(postfix.smtp_addr().to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run smtp-source: {e}"))?;
    let accepted = started.elapsed();
    if !out.status.success() {
        return Err(format!(
            "smtp-source failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            postfix.diagnostics()
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while sink_count(&sink) < before + o.messages {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {} messages delivered after 10 minutes\n{}",
                sink_count(&sink) - before,
                o.messages,
                postfix.diagnostics()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((accepted, started.elapsed()))
}

fn find_smtp_source() -> Result<PathBuf, String> {
    ["/usr/sbin/smtp-source", "/usr/bin/smtp-source"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| "smtp-source is missing (apt-get install postfix)".into())
}

/// Runs the benchmark; `Err` on bad arguments or a failed set-up or run.
pub fn run(args: &[String]) -> Result<(), String> {
    let o = parse_args(args)?;
    let smtp_source = find_smtp_source()?;
    let dir = std::env::temp_dir().join(format!("allowgate-postfix-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = format!("sqlite://{}", dir.join("allowgate.db").display());
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let store = Store::open(&db).await.map_err(|e| e.to_string())?;
        let entries = data::entries(o.entries, 0xB01C_0001);
        eprintln!("[postfix] importing {} entries", entries.len());
        crate::policy_bench::fill(&store, &entries).await?;
        let spec = EntrySpec {
            list: Some(List::Allow),
            kind: Some(EntryKind::Ip),
            value: "127.0.0.0/8".into(),
            checks: Some("spam".parse().map_err(|e| format!("{e}"))?),
            ..Default::default()
        };
        let (entry, _) = spec.validate().map_err(|e| format!("{e:?}"))?;
        let actor = Actor::parse("bench").map_err(|e| e.to_string())?;
        store
            .add_entry(&entry, &actor)
            .await
            .map_err(|e| e.to_string())?;
        store.close().await;
        Ok::<(), String>(())
    })?;
    drop(runtime);

    let serve = Serve::start_with_threads(&db, o.server_threads, &dir)?;
    // The setup docs/postfix.md recommends: the policy service among the recipient
    // restrictions only (the test harness also asks it at END-OF-DATA).
    let mut config = PostfixConfig::default().with_main_cf("smtpd_end_of_data_restrictions", "");
    if o.lean_macros {
        for (name, value) in LEAN_MACROS {
            config = config.with_main_cf(*name, *value);
        }
    }
    let mut postfix = Postfix::start(config).map_err(|e| format!("cannot start Postfix: {e}"))?;
    let mut without = Vec::new();
    let mut with = Vec::new();
    let noop = if o.noop {
        Some(crate::noop::start()?)
    } else {
        None
    };
    let mut floor = Vec::new();
    for round in 0..o.rounds {
        // Without, with the do-nothing services, with allowgate (last: checked below).
        for mode in 0..3 {
            let (policy, milter) = match (mode, &noop) {
                (0, _) => (None, None),
                (1, None) => continue,
                (1, Some(n)) => (o.policy.then_some(n.policy), o.milter.then_some(n.milter)),
                _ => (
                    o.policy.then_some(serve.policy),
                    o.milter.then_some(serve.milter),
                ),
            };
            postfix
                .set_policy(policy)
                .and_then(|()| postfix.set_milter(milter))
                .map_err(|e| format!("reconfiguring Postfix: {e}"))?;
            let (accepted, delivered) = one_run(&postfix, &smtp_source, &o)?;
            eprintln!(
                "[postfix] round {} {}: accepted in {:.2} s, delivered in {:.2} s",
                round + 1,
                ["without", "with the do-nothing services", "with allowgate"][mode],
                accepted.as_secs_f64(),
                delivered.as_secs_f64()
            );
            [&mut without, &mut floor, &mut with][mode].push((accepted, delivered));
        }
    }
    // What arrived with allowgate in the path carries its header (the milter's, or the
    // policy server's PREPEND).
    let last = postfix
        .delivered()
        .into_iter()
        .last()
        .ok_or("nothing was delivered")?;
    let headers = last.header_all("X-Allowgate");
    if !matches!(headers.as_slice(), [one] if one.starts_with("status=clean; bypass=spam;")) {
        return Err(format!(
            "the last message (sent with allowgate in the path) has X-Allowgate {headers:?}"
        ));
    }
    drop(postfix);
    drop(noop);
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);

    let rate = |runs: &[(Duration, Duration)], pick: fn(&(Duration, Duration)) -> Duration| {
        let rates: Vec<f64> = runs
            .iter()
            .map(|r| o.messages as f64 / pick(r).as_secs_f64())
            .collect();
        median(&rates)
    };
    println!(
        "### Postfix with and without allowgate ({} messages of {} bytes, {} sessions, {} rounds, {} entries, {} macros, allowgate worker threads: {})\n",
        o.messages,
        o.size,
        o.sessions,
        o.rounds,
        o.entries,
        if o.lean_macros {
            "lean"
        } else {
            "Postfix's default"
        },
        if o.server_threads == 0 {
            "one per core".to_string()
        } else {
            o.server_threads.to_string()
        }
    );
    let with_what = match (o.policy, o.milter) {
        (true, true) => "policy server + milter",
        (true, false) => "the policy server only",
        _ => "the milter only",
    };
    println!(
        "| measured | without (msg/s) | do-nothing services (msg/s) | allowgate: {with_what} (msg/s) | do-nothing / without | **allowgate / without** | allowgate / do-nothing |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, pick) in [
        (
            "accepted (smtp-source done)",
            (|r: &(Duration, Duration)| r.0) as fn(&_) -> _,
        ),
        ("delivered to the sink", |r: &(Duration, Duration)| r.1),
    ] {
        let a = rate(&without, pick);
        let n = rate(&floor, pick);
        let b = rate(&with, pick);
        println!(
            "| {name} | {a:.0} | {n:.0} | {b:.0} | {:.0}% | **{:.0}%** | {:.0}% |",
            100.0 * n / a,
            100.0 * b / a,
            100.0 * b / n
        );
    }
    Ok(())
}
