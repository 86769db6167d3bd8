//! `allowgate serve` in a real mail flow: the real binary on a real SQLite file, answering a
//! real Postfix on loopback (allowgate-testkit) that relays to smtp-sink. The client address
//! Postfix sees is set per message with XCLIENT.
//!
//! One Postfix and one sequence of steps, because each step builds on the one before (an
//! entry added while everything runs, allowgate killed and restarted).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allowgate_testkit::{DeliveredMessage, Mail, Postfix, PostfixConfig, SendResult};

const REFUSAL: &str = "Message refused by the recipient's mail policy";

/// `allowgate serve` as a child process; killed (by PID) when dropped.
struct Serve {
    child: Child,
    policy: SocketAddr,
    milter: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Start `allowgate serve` on `db`, its policy server on `policy` and its milter on
    /// `milter` (port 0: a free one), with `extra` arguments; wait for its `listening` line.
    fn start(db: &str, (policy, milter): (SocketAddr, SocketAddr), extra: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_allowgate"))
            .args(["--db", db, "serve", "--http", "127.0.0.1:0"])
            .args(["--policy", &policy.to_string()])
            .args(["--milter", &milter.to_string()])
            .args(extra)
            .env_remove("ALLOWGATE_DB")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run allowgate serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(name))
                        .map(str::to_string)
                };
                if line.contains("listening")
                    && let (Some(p), Some(m)) = (field("policy="), field("milter="))
                {
                    let _ = tx.send((p, m));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let (policy, milter) = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((p, m)) => (p.parse().unwrap(), m.parse().unwrap()),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "allowgate serve did not start:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Serve {
            child,
            policy,
            milter,
            log,
        }
    }

    fn addrs(&self) -> (SocketAddr, SocketAddr) {
        (self.policy, self.milter)
    }

    /// Kill it at once (SIGKILL), as a crash would.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stop it with SIGTERM and wait for a clean exit.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "allowgate serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI on the same database, expected to succeed.
fn cli(db: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .args(["--db", db])
        .args(args)
        .env_remove("ALLOWGATE_DB")
        .env("ALLOWGATE_ACTOR", "e2e")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "allowgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CLI on the same database: its standard output, expected to succeed.
fn cli_out(db: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_allowgate"))
        .args(["--db", db])
        .args(args)
        .env_remove("ALLOWGATE_DB")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "allowgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `allowgate history --json`'s records, waited for (up to 10 s) until `done` says they are
/// all there: the server writes its history off the mail path, in batches.
fn history_until(db: &str, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out: serde_json::Value =
            serde_json::from_str(&cli_out(db, &["history", "--json"])).unwrap();
        let records = out["records"].as_array().unwrap().clone();
        if done(&records) {
            return records;
        }
        assert!(
            Instant::now() < deadline,
            "history incomplete after 10 s: {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The record whose client IP and first recipient are these.
fn record_for<'a>(
    records: &'a [serde_json::Value],
    ip: &str,
    rcpt: &str,
) -> Option<&'a serde_json::Value> {
    records
        .iter()
        .find(|r| r["client_ip"] == ip && r["recipients"][0] == rcpt)
}

/// `allowgate entry add --list block --kind ip --value IP`.
fn block_ip(db: &str, ip: &str) {
    cli(
        db,
        &[
            "entry", "add", "--list", "block", "--kind", "ip", "--value", ip,
        ],
    );
}

fn mail(client: &str, to: &str) -> Mail {
    Mail::new("alice@sender.test", [to])
        .client(client.parse().unwrap())
        .helo("mx.sender.test")
        .header("Subject", "allowgate end to end")
}

/// The message delivered to `rcpt`, waited for up to 20 s.
fn delivered_to(postfix: &Postfix, rcpt: &str) -> DeliveredMessage {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = postfix.delivered();
        if let Some(m) = all
            .iter()
            .find(|m| m.rcpt_to.iter().any(|t| t.trim_matches(['<', '>']) == rcpt))
        {
            return m.clone();
        }
        if Instant::now() > deadline {
            let seen: Vec<&Vec<String>> = all.iter().map(|m| &m.rcpt_to).collect();
            panic!(
                "nothing delivered to {rcpt}; delivered to {seen:?}\n{}",
                postfix.diagnostics()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn refused_at_rcpt(r: &SendResult) -> bool {
    r.rcpt_reply()
        .is_some_and(|reply| reply.code == 554 && reply.text.contains(REFUSAL))
}

fn db_url(dir: &Path) -> (String, PathBuf) {
    let path = dir.join("allowgate.db");
    (format!("sqlite://{}", path.display()), path)
}

#[test]
fn mail_through_a_real_postfix() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = db_url(dir.path());
    cli(&db, &["tenant", "add", "acme", "--domain", "example.test"]);
    block_ip(&db, "203.0.113.66");
    cli(
        &db,
        &[
            "entry",
            "add",
            "--list",
            "allow",
            "--kind",
            "ip",
            "--value",
            "198.51.100.0/24",
            "--bypass",
            "spf,greylisting",
        ],
    );
    cli(
        &db,
        &[
            "entry",
            "add",
            "--list",
            "block",
            "--kind",
            "domain",
            "--value",
            "*.evil.test",
        ],
    );
    let free = "127.0.0.1:0".parse().unwrap();
    let serve = Serve::start(&db, (free, free), &[]);
    let addrs = serve.addrs();
    let postfix = Postfix::require(
        PostfixConfig::default()
            .with_policy(serve.policy)
            .with_milter(serve.milter),
    );

    // A blocked client is refused at RCPT, with a text that names no entry.
    let r = postfix.send(&mail("203.0.113.66", "bob@example.test"));
    assert!(refused_at_rcpt(&r), "blocked client not refused:\n{r}");

    // An exempted client's mail is delivered with exactly one X-Allowgate header: the milter
    // deletes the ones the policy server prepended (one per recipient) and any forged copy,
    // and adds the final decision's.
    let forged = Mail::new(
        "alice@sender.test",
        ["bob@example.test", "zoe@example.test"],
    )
    .client("198.51.100.7".parse().unwrap())
    .helo("mx.sender.test")
    .header("X-Allowgate", "status=clean; bypass=all; entries=1");
    let r = postfix.send(&forged);
    assert!(r.is_queued(), "exempted mail not accepted:\n{r}");
    let forged_queue_id = r.queue_id().expect("no queue id").to_string();
    let bob = delivered_to(&postfix, "bob@example.test");
    assert_eq!(
        bob.header_all("X-Allowgate"),
        ["status=clean; bypass=spf,greylisting; entries=2; tenant=acme"],
        "{}",
        bob.raw
    );

    // An outsider's forged header does not survive: mail nothing exempts says `pass`.
    let outsider = Mail::new("mallory@sender.test", ["yann@example.test"])
        .client("192.0.2.50".parse().unwrap())
        .helo("mx.sender.test")
        .header("X-Allowgate", "status=clean; bypass=all; entries=1")
        .header("X-MS-Exchange-Organization-SCL", "-1");
    let r = postfix.send(&outsider);
    assert!(r.is_queued(), "{r}");
    let yann = delivered_to(&postfix, "yann@example.test");
    assert_eq!(
        yann.header_all("X-Allowgate"),
        ["status=pass; tenant=acme"],
        "{}",
        yann.raw
    );
    assert!(
        yann.header("X-MS-Exchange-Organization-SCL").is_none(),
        "{}",
        yann.raw
    );

    // A From header on the block list: the envelope is clean, the milter refuses the message.
    let evil = Mail::new("bounce@lists.sender.test", ["bob@example.test"])
        .client("192.0.2.51".parse().unwrap())
        .helo("mx.sender.test")
        .header("From", "\"Boss\" <boss@mail.evil.test>");
    let r = postfix.send(&evil);
    let end = r.end_of_data.as_ref().expect("no reply after the data");
    assert!(
        end.code == 550 && end.text.contains(REFUSAL),
        "a blocked From header was not refused by the milter:\n{r}"
    );

    // Stuffing a message with more headers than the milter keeps (1000 by default) neither
    // hides a blocked From header nor a forged X-Allowgate behind them.
    let stuffed = |from: &str, client: &str, to: &str| {
        let mut m = Mail::new(from, [to])
            .client(client.parse().unwrap())
            .helo("mx.sender.test");
        for i in 0..1100 {
            m = m.header(format!("X-Filler-{i}"), "stuffing");
        }
        m
    };
    let r = postfix.send(
        &stuffed("bounce@lists.sender.test", "192.0.2.52", "bob@example.test")
            .header("From", "<boss@mail.evil.test>"),
    );
    let end = r.end_of_data.as_ref().expect("no reply after the data");
    assert!(
        end.code == 550 && end.text.contains(REFUSAL),
        "a blocked From header behind 1100 headers was not refused:\n{r}"
    );
    let r = postfix.send(
        &stuffed("mallory@sender.test", "192.0.2.53", "uma@example.test")
            .header("X-Allowgate", "status=clean; bypass=all; entries=1"),
    );
    assert!(r.is_queued(), "{r}");
    let uma = delivered_to(&postfix, "uma@example.test");
    assert_eq!(
        uma.header_all("X-Allowgate"),
        ["status=pass; tenant=acme"],
        "a forged header behind 1100 headers survived"
    );

    // A link in the body to a domain on the block list: refused by the milter. (Until such an
    // entry exists the milter does not parse bodies at all.)
    cli(
        &db,
        &[
            "entry",
            "add",
            "--list",
            "block",
            "--kind",
            "body-domain",
            "--value",
            "*.phish-link.com",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = postfix.send(
            &mail("192.0.2.54", "bob@example.test")
                .body("Please log in at https://account.phish-link.com/verify today.\n"),
        );
        let end = r.end_of_data.as_ref().expect("no reply after the data");
        if end.code == 550 && end.text.contains(REFUSAL) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a blocked body domain was not refused:\n{r}"
        );
    }

    // Mail nothing matches is delivered with `status=pass`.
    let r = postfix.send(&mail("192.0.2.44", "carol@example.test"));
    assert!(r.is_queued(), "{r}");
    let plain = delivered_to(&postfix, "carol@example.test");
    assert_eq!(
        plain.header_all("X-Allowgate"),
        ["status=pass; tenant=acme"],
        "{}",
        plain.raw
    );

    // The email history, written while mail flows, says why each message was or was not
    // delivered: the refusal at RCPT by the policy server, the others once per message by
    // the milter, with Postfix's queue id.
    let records = history_until(&db, |records| {
        record_for(records, "198.51.100.7", "bob@example.test").is_some()
            && record_for(records, "192.0.2.44", "carol@example.test").is_some()
            && record_for(records, "192.0.2.51", "bob@example.test").is_some()
            && record_for(records, "203.0.113.66", "bob@example.test").is_some()
    });
    let refused = record_for(&records, "203.0.113.66", "bob@example.test").unwrap();
    assert_eq!(refused["stage"], "rcpt", "{refused:#}");
    assert_eq!(refused["status"], "blocked", "{refused:#}");
    assert_eq!(refused["action"], "reject", "{refused:#}");
    assert_eq!(refused["tenant"], "acme", "{refused:#}");
    let clean = record_for(&records, "198.51.100.7", "bob@example.test").unwrap();
    assert_eq!(clean["stage"], "message", "{clean:#}");
    assert_eq!(clean["status"], "clean", "{clean:#}");
    assert_eq!(clean["queue_id"], forged_queue_id.as_str(), "{clean:#}");
    assert_eq!(
        clean["recipients"],
        serde_json::json!(["bob@example.test", "zoe@example.test"])
    );
    assert_eq!(clean["bypassed"], serde_json::json!(["spf", "greylisting"]));
    assert_eq!(clean["matched"][0]["id"], 2, "{clean:#}");
    assert_eq!(clean["reason"], "Clean: exempted by entry #2", "{clean:#}");
    let evil = record_for(&records, "192.0.2.51", "bob@example.test").unwrap();
    assert_eq!(
        (&evil["stage"], &evil["status"], &evil["action"]),
        (
            &serde_json::json!("message"),
            &serde_json::json!("blocked"),
            &serde_json::json!("reject")
        ),
        "{evil:#}"
    );
    assert_eq!(evil["reason"], "Blocked: blocked by entry #3", "{evil:#}");
    let plain = record_for(&records, "192.0.2.44", "carol@example.test").unwrap();
    assert_eq!(
        (&plain["status"], &plain["reason"]),
        (&"pass".into(), &"Pass".into())
    );
    // Each message once: the accepted recipients are not recorded again at RCPT.
    assert_eq!(
        records
            .iter()
            .filter(|r| r["client_ip"] == "198.51.100.7")
            .count(),
        1,
        "{records:#?}"
    );
    // The same, one line per message, filtered; and the entry's hit count.
    let lines = cli_out(&db, &["history", "--status", "clean"]);
    assert_eq!(lines.lines().count(), 1, "{lines}");
    assert!(
        lines.contains(&forged_queue_id)
            && lines.contains("198.51.100.7")
            && lines.contains("alice@sender.test → bob@example.test (+1 more)")
            && lines.contains("Clean: exempted by entry #2"),
        "{lines}"
    );
    let lines = cli_out(&db, &["history", "--ip", "203.0.113.0/24"]);
    assert!(
        lines.contains("Blocked: blocked by entry #1 (at RCPT)"),
        "{lines}"
    );
    let shown = cli_out(&db, &["entry", "show", "2"]);
    assert!(shown.contains("hits:     1, last "), "{shown}");

    // An exempted client still cannot relay to a foreign domain: relay control is Postfix's.
    let r = postfix.send(&mail("198.51.100.7", "someone@foreign.test"));
    let reply = r.rcpt_reply().expect("no RCPT reply");
    assert!(
        reply.code == 554 && reply.text.contains("Relay access denied"),
        "exempted client relayed:\n{r}"
    );

    // An entry added with the CLI while everything runs takes effect within 1 s of the
    // command's exit.
    block_ip(&db, "203.0.113.77");
    let added = Instant::now();
    loop {
        let r = postfix.send(&mail("203.0.113.77", "bob@example.test"));
        if refused_at_rcpt(&r) {
            break;
        }
        assert!(
            added.elapsed() < Duration::from_secs(1),
            "the new block entry was not in effect within 1 s:\n{r}"
        );
    }

    // allowgate killed: mail flows under Postfix's default action (DUNNO), nothing is lost.
    serve.kill();
    let r = postfix.send(&mail("203.0.113.66", "dave@example.test"));
    assert!(r.is_queued(), "mail did not flow with allowgate down:\n{r}");
    delivered_to(&postfix, "dave@example.test");

    // Restarted on the same address, blocking works again.
    let serve = Serve::start(&db, addrs, &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = postfix.send(&mail("203.0.113.66", "bob@example.test"));
        if refused_at_rcpt(&r) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "blocking did not come back:\n{r}"
        );
    }
    let log = serve.terminate();
    assert!(
        log.contains("shutting down") && log.contains("stopped"),
        "{log}"
    );

    // With blocks quarantining, a blocked client's message goes to the hold queue; with the
    // `exchange` header profile, a bypass of `spam` shows as SCL -1.
    let config = dir.path().join("quarantine.toml");
    std::fs::write(
        &config,
        "[policy]\nblock_action = \"quarantine\"\n[milter]\nheader_profile = \"exchange\"\n",
    )
    .unwrap();
    cli(
        &db,
        &[
            "entry",
            "add",
            "--list",
            "allow",
            "--kind",
            "ip",
            "--value",
            "198.51.100.99",
            "--bypass",
            "spam,graymail",
        ],
    );
    let serve = Serve::start(&db, addrs, &["--config", config.to_str().unwrap()]);
    // The new server loaded its snapshot before it said `listening`.
    let r = postfix.send(&mail("198.51.100.99", "vip@example.test"));
    assert!(r.is_queued(), "{r}");
    let vip = delivered_to(&postfix, "vip@example.test");
    assert_eq!(
        vip.header_all("X-MS-Exchange-Organization-SCL"),
        ["-1"],
        "{}",
        vip.raw
    );
    assert_eq!(
        vip.header_all("X-MS-Exchange-Organization-BypassClutter"),
        ["true"],
        "{}",
        vip.raw
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = postfix.send(&mail("203.0.113.66", "erin@example.test"));
        if r.is_queued() && !postfix.hold_queue().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no message reached the hold queue:\n{r}\n{}",
            postfix.diagnostics()
        );
    }
    // Stopped with SIGTERM, it writes the history it has queued: the quarantined message is
    // there at once.
    serve.terminate();
    let out: serde_json::Value = serde_json::from_str(&cli_out(
        &db,
        &["history", "--json", "--status", "quarantined"],
    ))
    .unwrap();
    let held = record_for(
        out["records"].as_array().unwrap(),
        "203.0.113.66",
        "erin@example.test",
    )
    .unwrap_or_else(|| panic!("no quarantine record: {out:#}"));
    assert_eq!(held["action"], "quarantine", "{held:#}");
    assert_eq!(held["stage"], "message", "{held:#}");
}
